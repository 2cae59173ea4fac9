//! `attnviz render` and `attnviz demo`: one figure (PNG or SVG) from a source, with its optional
//! layout JSON and per-head tiles. Both commands end in [`render_to`], so the demo exercises
//! exactly the path real tensors take.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use attnviz::files::{
    check_figure_path, check_folder, check_one_stdout, check_writable, shown, write_png,
    write_png_streamed, FigureFormat, RowSink,
};
use attnviz::pool::Causal;
use attnviz::source::DemoModel;
use attnviz::{AttentionSource, Engine, Error, Figure, RenderOptions};

use super::args::{DemoArgs, Output, RenderArgs};
use super::options::{attention_source, read_tokens};
use super::progress::ProgressBar;

/// `attnviz render`: a tensor file, a raw dump, or attention recomputed from Q and K.
pub fn render(args: &RenderArgs) -> anyhow::Result<()> {
    check_figure_path(&args.out.output)?;
    let mut options = args.style.options();
    if let Some(path) = &args.tokens {
        options.tokens = Some(read_tokens(path)?);
    }
    let causal = options.causal == Causal::On;
    let named = args.stored.named();
    let src = attention_source(&args.qk, causal, args.input.as_deref(), named, |input| {
        args.stored.open(input)
    })?;
    if let (Some(path), Some(tokens)) = (&args.tokens, &options.tokens) {
        check_tokens(path, tokens, src.as_ref())?;
    }
    let stats_json = args.stats_json.as_deref().map(|p| ("--stats-json", p));
    check_one_stdout(outputs(&args.out).chain(stats_json))?;
    if let Some(path) = &args.stats_json {
        check_writable(path)?;
    }
    // (--sort-by ranks by the statistics --sink-keys and --window define, as --stats-json
    // writes them; --pattern by the labels they give)
    let wanted = args.stats_json.is_some() || options.ranking().ranks();
    options.patterns =
        args.patterns
            .for_figure(wanted, "render", "--stats-json, --sort-by or --pattern")?;
    let figure = render_to(src.as_ref(), &options, &args.out, args.tiles.as_deref())?;
    if let Some(path) = &args.stats_json {
        attnviz::figure::stats_json::write_figure_stats(path, &figure, &options)?;
    }
    Ok(())
}

/// A token file that does not fit the input is the file's fault: it is named by its path and
/// ends in exit code 2, like any other bad input.
pub(super) fn check_tokens(
    path: &Path,
    tokens: &[String],
    src: &dyn AttentionSource,
) -> anyhow::Result<()> {
    let shape = src.shape();
    if let Err(e) =
        attnviz::figure::axes::split_tokens(tokens, shape.queries, shape.keys, src.diagonal())
    {
        let message = e.to_string().trim_start_matches("--tokens: ").to_string();
        return Err(Error::BadInput {
            path: path.to_path_buf(),
            message,
        }
        .into());
    }
    Ok(())
}

/// `attnviz demo`: the built-in model, layers 1 and 8 unless `--layers` says otherwise.
pub fn demo(args: &DemoArgs) -> anyhow::Result<()> {
    check_figure_path(&args.out.output)?;
    let mut options = args.style.options();
    if options.layers.is_none() {
        options.layers = Some("1,8".into());
    }
    render_to(
        &DemoModel::new(args.tokens.clamp(16, 4096)),
        &options,
        &args.out,
        None,
    )?;
    Ok(())
}

/// Renders `src` to `out` (PNG, or SVG by extension), then the layout JSON and tiles when
/// asked, and reports the figure on stderr. Returns the figure (its statistics).
pub fn render_to(
    src: &dyn AttentionSource,
    options: &RenderOptions,
    out: &Output,
    tiles: Option<&Path>,
) -> anyhow::Result<Figure> {
    let start = Instant::now();
    let svg = FigureFormat::of(&out.output)? == FigureFormat::Svg;
    let options = RenderOptions {
        cell_colors: svg,
        ..options.clone()
    };
    check_one_stdout(outputs(out))?;
    if let Some(path) = &out.layout_json {
        check_writable(path)?;
    }
    if let Some(dir) = tiles {
        check_folder(dir)?;
    }
    let job = Job::new(src, options, out)?;
    // (a PNG is encoded from the rows as they are read back: no copy of the whole figure)
    let figure = if svg {
        let figure = job.figure(None)?;
        attnviz::figure::svg::write_svg(&out.output, &figure, job.options.colormap)?;
        figure
    } else {
        write_png_streamed(&out.output, |rows| job.figure(Some(rows)))?
    };
    if let Some(path) = &out.layout_json {
        attnviz::figure::layout_json::write_layout_json(path, &figure, &job.options)?;
    }
    if let Some(dir) = tiles {
        job.write_tiles(&figure, dir)?;
    }
    eprintln!("{}", job.summary(&out.output, &figure, start));
    Ok(figure)
}

/// The files `out` names, with their flags.
fn outputs(out: &Output) -> impl Iterator<Item = (&'static str, &Path)> + Clone {
    let layout = out.layout_json.as_deref().map(|p| ("--layout-json", p));
    [("-o", out.output.as_path())].into_iter().chain(layout)
}

/// One render: the source, its options and the backend that draws every output of it (the
/// figure, then the tiles), with the progress bar the GPU engine reports to.
struct Job<'a> {
    src: &'a dyn AttentionSource,
    options: RenderOptions,
    /// `None`: the CPU renders.
    engine: Option<Engine>,
    bar: Arc<ProgressBar>,
    /// `--gpu-times`: stamp the figure's passes and print their device time.
    gpu_times: bool,
}

impl<'a> Job<'a> {
    fn new(
        src: &'a dyn AttentionSource,
        options: RenderOptions,
        out: &Output,
    ) -> anyhow::Result<Job<'a>> {
        let mut engine = out.backend.engine()?;
        let bar = Arc::new(ProgressBar::new(out.quiet, "pooling"));
        if let Some(e) = &mut engine {
            let b = bar.clone();
            e.progress = Some(Box::new(move |done, total| b.update(done, total)));
        }
        Ok(Job {
            src,
            options,
            engine,
            bar,
            gpu_times: out.gpu_times,
        })
    }

    /// The figure, its rows handed to `rows` as they come where given (its `rgba` then empty,
    /// except from the CPU renderer, which hands them over from it).
    fn figure(&self, rows: Option<&mut dyn RowSink>) -> attnviz::Result<Figure> {
        let (figure, line) = match &self.engine {
            Some(e) => {
                let (src, options) = (self.src, &self.options);
                let render = || match rows {
                    Some(rows) => e.render_into(src, options, rows),
                    None => e.render(src, options),
                };
                let (figure, times) = match self.gpu_times {
                    true => e.timed(render)?,
                    false => (render()?, None),
                };
                let line = self.gpu_times.then(|| {
                    times.map_or_else(
                        || format!("{} has no timestamp queries", e.gpu.info.name),
                        |t| t.summary(),
                    )
                });
                (figure, line)
            }
            None => {
                let figure = attnviz::render_cpu(self.src, &self.options)?;
                if let Some(rows) = rows {
                    rows.whole(figure.width, figure.height, &figure.rgba)?;
                }
                let line = self
                    .gpu_times
                    .then(|| "the CPU renderer ran no GPU pass".to_string());
                (figure, line)
            }
        };
        self.bar.finish();
        if let Some(line) = line {
            eprintln!("GPU time by pass: {line}");
        }
        Ok(figure)
    }

    /// Every head of `figure` as `dir/l{l}_h{h}.png` at native resolution.
    fn write_tiles(&self, figure: &Figure, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create the tiles folder", dir.display()))?;
        let tiles = match &self.engine {
            Some(e) => e.tiles(self.src, figure, &self.options)?,
            None => attnviz::tiles_cpu(self.src, figure, &self.options)?,
        };
        for t in &tiles {
            let path = dir.join(t.file_name(&figure.plan));
            write_png(&path, t.width, t.height, &t.rgba)?;
        }
        Ok(())
    }

    /// The `wrote …` line: size, cells, a detected causal mask, the adapter and the time.
    fn summary(&self, output: &Path, figure: &Figure, start: Instant) -> String {
        // (`--top` draws some of the cells it pooled and ranked: the others are placed empty)
        let pooled = figure.plan.cells.len();
        let drawn = figure
            .plan
            .layout
            .cells
            .iter()
            .filter(|c| c.is_drawn())
            .count();
        let cells = if drawn < pooled {
            format!("{drawn} of {pooled} cells")
        } else {
            attnviz::figure::counted(pooled, "cell", "cells")
        };
        // A difference of zeros only is the one thing to say about it: A and B agree in every
        // head drawn (the figure is then a single colour, and `--causal auto` finds the zeros
        // above the diagonal that a mask would be detected from).
        let all_zero = self.src.as_diff().is_some()
            && self.options.scale.exclude_keys == 0
            && figure.stats.iter().any(|s| s.count > 0)
            && figure
                .stats
                .iter()
                .all(|s| s.bad_pixels == 0 && s.range().is_none_or(|r| r == (0.0, 0.0)));
        format!(
            "wrote {} ({}x{}, {cells}{}, {}) in {:.2} s",
            shown(output),
            figure.width,
            figure.height,
            if all_zero {
                ", every difference is 0: A and B are equal in every head compared"
            } else if figure.causal && self.options.causal == Causal::Auto {
                ", causal mask detected"
            } else {
                ""
            },
            self.engine
                .as_ref()
                .map_or("CPU".to_string(), |e| e.gpu.info.name.clone()),
            start.elapsed().as_secs_f64()
        )
    }
}
