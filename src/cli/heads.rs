//! `attnviz heads`: which heads matter. Per-head pattern statistics from one pass over the
//! input, printed as a table and written as JSON or CSV; `render --stats-json` writes the same
//! JSON from the pass that draws the figure; `--figure` draws them as a summary figure.

use std::io::Write;
use std::path::Path;

use attnviz::figure::rank::Ranking;
use attnviz::figure::stats_json::{heads_doc, write_doc};
use attnviz::figure::summary::{summary_input, summary_options};
use attnviz::figure::svg::write_svg;
use attnviz::files::{
    check_figure_path, check_one_stdout, check_writable, is_stdout, shown, write_atomic, write_png,
    FigureFormat,
};
use attnviz::pool::pattern::HeadPattern;
use attnviz::pool::Causal;
use attnviz::{Engine, Error, RenderOptions};

use super::args::{HeadsArgs, PatternLabels};
use super::options::attention_source;

/// `attnviz heads`: the table on stdout, then the JSON and CSV files asked for.
pub fn heads(args: &HeadsArgs) -> anyhow::Result<()> {
    for path in [&args.json, &args.csv].into_iter().flatten() {
        check_writable(path)?;
    }
    if let Some(path) = &args.figure {
        check_figure_path(path)?;
    }
    let outputs = [
        ("--json", &args.json),
        ("--csv", &args.csv),
        ("--figure", &args.figure),
    ];
    let outputs = outputs
        .iter()
        .filter_map(|(flag, path)| Some((*flag, path.as_deref()?)));
    check_one_stdout(outputs.clone())?;
    // (an output written to stdout takes the table's place there)
    let table = !outputs.clone().any(|(_, path)| is_stdout(path));
    attnviz::figure::rank::check(args.sort_by, args.top)?;
    let options = args.selection.options();
    let causal = options.causal == Causal::On;
    let named = args.stored.named();
    let src = attention_source(&args.qk, causal, args.input.as_deref(), named, |input| {
        args.stored.open(input)
    })?;
    let patterns = args.patterns.options();
    let engine = args.backend.engine()?;
    let (cells, stats) = match &engine {
        Some(e) => e.head_patterns(src.as_ref(), &options, patterns)?,
        None => attnviz::cpu::pattern::head_patterns_cpu(src.as_ref(), &options, patterns)?,
    };
    // (the lists in the order asked for; the summary figure below has every head in its place)
    let labels = PatternLabels::of(&args.pattern);
    let ranking = Ranking {
        sort_by: args.sort_by,
        top: args.top,
        pattern: labels.as_deref(),
    };
    let (listed_cells, listed) = attnviz::figure::rank::listed(&cells, &stats, ranking);
    if table {
        print_table(&listed_cells, &listed);
    }
    // Below the table, on stderr, so the table and the files stay one record a line: how the
    // heads divide among the labels, which a 1024-line table does not show at a glance; or,
    // for a --pattern no head has, that (an empty list is the answer, not a failure).
    match attnviz::figure::rank::check_matched(&stats, ranking) {
        Err(e) => eprintln!("attnviz heads: {e}"),
        Ok(()) => eprintln!(
            "pattern labels of the {}: {}",
            attnviz::figure::counted(stats.len(), "head", "heads"),
            attnviz::figure::rank::label_counts(&stats)
        ),
    }
    if let Some(path) = &args.json {
        let doc = heads_doc(
            &listed_cells,
            &listed,
            patterns,
            options.causal,
            ranking,
            stats.len(),
        );
        write_doc(path, &doc)?;
    }
    if let Some(path) = &args.csv {
        write_csv(path, &listed_cells, &listed)?;
    }
    if let Some(path) = &args.figure {
        write_summary(path, &cells, &stats, args.title.as_deref(), engine.as_ref())?;
    }
    Ok(())
}

/// `--figure`: the summary, one layer × head heatmap per statistic, drawn by the same backend
/// (PNG, or SVG by extension).
fn write_summary(
    path: &Path,
    cells: &[(usize, usize)],
    stats: &[HeadPattern],
    title: Option<&str>,
    engine: Option<&Engine>,
) -> anyhow::Result<()> {
    let svg = FigureFormat::of(path)? == FigureFormat::Svg;
    let (src, summary) = summary_input(cells, stats)?;
    let options = RenderOptions {
        title: title.map(str::to_string),
        cell_colors: svg,
        ..summary_options(summary)
    };
    let figure = match engine {
        Some(e) => e.render(&src, &options)?,
        None => attnviz::render_cpu(&src, &options)?,
    };
    if svg {
        write_svg(path, &figure, options.colormap)?;
    } else {
        write_png(path, figure.width, figure.height, &figure.rgba)?;
    }
    eprintln!(
        "wrote {} ({}x{}, {} statistics of {})",
        shown(path),
        figure.width,
        figure.height,
        figure.plan.cells.len(),
        attnviz::figure::counted(cells.len(), "head", "heads")
    );
    Ok(())
}

/// `(index, mass)` pairs as `index:mass;…`, one CSV field.
fn pairs<T: std::fmt::Display>(v: &[(T, f64)]) -> String {
    let items: Vec<String> = v.iter().map(|(i, m)| format!("{i}:{m:.6e}")).collect();
    items.join(";")
}

/// One row per head, the same fields flat.
fn write_csv(path: &Path, cells: &[(usize, usize)], stats: &[HeadPattern]) -> anyhow::Result<()> {
    write_atomic(path, |w| {
        writeln!(
            w,
            "layer,head,sink_mass,local_mass,entropy,mean_distance,max,argmax_q,argmax_k,\
             row_sum_mean,pattern,recall_a_shape,recall_vertical_slash,recall_block_sparse,\
             non_finite,top_keys,top_offsets"
        )?;
        for (&(l, h), p) in cells.iter().zip(stats) {
            let opt = |v: Option<String>| v.unwrap_or_default();
            writeln!(
                w,
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                l + 1,
                h + 1,
                p.sink_mass,
                p.local_mass,
                p.entropy,
                p.mean_distance,
                opt(p.max.map(|m| m.to_string())),
                opt(p.argmax.map(|a| a[0].to_string())),
                opt(p.argmax.map(|a| a[1].to_string())),
                p.row_sum_mean,
                p.pattern,
                p.recalls.a_shape,
                p.recalls.vertical_slash,
                p.recalls.block_sparse,
                p.non_finite,
                pairs(&p.top_keys),
                pairs(&p.top_offsets),
            )?;
        }
        Ok(())
    })
    .map_err(|e: Error| e.into())
}

/// The scalar statistics, one line per head.
fn print_table(cells: &[(usize, usize)], stats: &[HeadPattern]) {
    println!(
        "{:>5} {:>4} {:>9} {:>9} {:>9} {:>10} {:>9} {:>13} {:>8} pattern",
        "layer", "head", "sink", "local", "entropy", "distance", "max", "argmax", "rowsum",
    );
    for (&(l, h), p) in cells.iter().zip(stats) {
        // (a head with no finite entry has neither: "-", as the CSV leaves them empty)
        let argmax = p.argmax.map_or("-".into(), |[q, k]| format!("[{q},{k}]"));
        let max = p.max.map_or("-".into(), |m| format!("{m:.4}"));
        println!(
            "{:>5} {:>4} {:>9.4} {:>9.4} {:>9.4} {:>10.2} {:>9} {:>13} {:>8.4} {}",
            l + 1,
            h + 1,
            p.sink_mass,
            p.local_mass,
            p.entropy,
            p.mean_distance,
            max,
            argmax,
            p.row_sum_mean,
            p.pattern
        );
    }
}
