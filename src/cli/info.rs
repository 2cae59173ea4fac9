//! `attnviz info`: what a tensor file holds and per-head statistics, computed the way render
//! pools it, so the numbers match the figure's colour limits.

use std::path::Path;

use attnviz::figure::select::spans;
use attnviz::pool::geometry::CellGeometry;
use attnviz::source;
use attnviz::source::qk::{QkOptions, QkSource};
use attnviz::source::safetensors::is_capture;
use attnviz::{AttentionSource, Engine, HeadStats};

use super::args::InfoArgs;

/// `attnviz info`: the header lines, then one table row per head; for a Q/K capture, what it
/// holds and how its attention would be recomputed (its statistics would need that done).
pub fn info(args: &InfoArgs) -> anyhow::Result<()> {
    if !args.stored.named() && is_capture(&args.input) {
        return capture_info(&args.input);
    }
    let src = args.stored.open_file(&args.input)?;
    let s = src.shape();
    println!("file:    {}", src.name());
    println!("shape:   {} (layers, heads, queries, keys)", s);
    match src.stored() {
        source::Stored::F64 => println!("dtype:   f64 (read as f32)"),
        stored => println!("dtype:   {}", stored.name()),
    }
    let engine = args.backend.engine()?;
    println!(
        "adapter: {}",
        engine
            .as_ref()
            .map_or("none (CPU reference)".to_string(), |e| e.gpu.describe())
    );
    let stats = head_stats(&src, engine.as_ref())?;
    print_table(&stats, s.heads);
    Ok(())
}

/// A capture's shapes, model, tokens and per-layer settings, as `render --q` would resolve them.
fn capture_info(path: &Path) -> anyhow::Result<()> {
    let src = QkSource::open(path, None, &QkOptions::default())?;
    let s = src.shape();
    let kv_heads = (0..s.heads)
        .map(|h| src.kv_head(h))
        .max()
        .map_or(0, |h| h + 1);
    println!("file:    {}", path.display());
    println!(
        "holds:   queries and keys (a capture): render, view, heads and diff recompute its \
         attention from it as their input (attention: --q FILE)"
    );
    let n = attnviz::figure::counted;
    println!(
        "shape:   {}, {}, {}, {}, {}, head dimension {}",
        n(s.layers, "layer", "layers"),
        n(s.heads, "query head", "query heads"),
        n(kv_heads, "key head", "key heads"),
        n(s.queries, "query", "queries"),
        n(src.all_keys(), "key", "keys"),
        src.dim()
    );
    let numbers = src.layer_numbers();
    if !source::numbered_by_position(&numbers) {
        println!(
            "layers:  {} of the model (shown and selected by those numbers)",
            spans(&numbers)
        );
    }
    if let Some(meta) = src.meta() {
        if let Some(model) = &meta.model {
            println!("model:   {model}");
        }
        if let Some(tokens) = &meta.tokens {
            println!("tokens:  {}", tokens.len());
        }
        if let Some(p) = &meta.padding {
            println!(
                "padding: {} of the batch item's {} left out (its attention mask hid them)",
                n(p.length - p.positions.len(), "position", "positions"),
                p.length
            );
        }
    }
    // (the capture's own word on it, as `render --q` takes it)
    let says_bidirectional = src
        .meta()
        .is_some_and(|m| !m.layers.is_empty() && m.layers.iter().all(|l| l.causal == Some(false)));
    let mask = if src.causal() {
        "causal, as the capture says"
    } else if src.ranged() {
        // (drawn as a bidirectional layer whose hidden keys are probabilities of 0)
        "causal but for the bidirectional spans below, as the capture says"
    } else if says_bidirectional {
        "none: bidirectional, as the capture says (--causal masks it anyway)"
    } else {
        "none unless --causal is given"
    };
    println!("mask:    {mask}");
    let scales: Vec<String> = (0..s.layers)
        .map(|l| format!("{}", src.layer(l).scale))
        .collect();
    let same = scales.windows(2).all(|w| w[0] == w[1]);
    match (same, scales.first()) {
        (true, Some(scale)) => println!("scale:   {scale} in every layer"),
        _ => println!("scale:   {} (layers 1-{})", scales.join(", "), s.layers),
    }
    if let Some(applied) = src.applied() {
        println!("also:    {applied}");
    }
    Ok(())
}

/// Every head's statistics, on the GPU or, without an engine, by the CPU reference.
fn head_stats(
    src: &dyn AttentionSource,
    engine: Option<&Engine>,
) -> anyhow::Result<Vec<HeadStats>> {
    Ok(match engine {
        Some(e) => e.stats(src)?,
        None => {
            let s = src.shape();
            let cells: Vec<_> = (0..s.layers)
                .flat_map(|l| (0..s.heads).map(move |h| (l, h)))
                .collect();
            let g = CellGeometry::new(s.queries, s.keys, Some(64))?;
            attnviz::cpu::pool_cells(src, &cells, g, Default::default())?
                .iter()
                .map(|p| attnviz::cpu::head_stats(&p.accum))
                .collect()
        }
    })
}

/// One row per head, layer-major, 1-based; a head with no finite value says so.
fn print_table(stats: &[HeadStats], heads: usize) {
    println!(
        "{:>5} {:>5} {:>12} {:>12} {:>12}  note",
        "layer", "head", "min", "max", "mean"
    );
    for (i, st) in stats.iter().enumerate() {
        let (l, h) = (i / heads + 1, i % heads + 1);
        match st.range() {
            Some((lo, hi)) => {
                let note = if st.bad_pixels > 0 {
                    "has non-finite values"
                } else {
                    ""
                };
                println!(
                    "{l:>5} {h:>5} {lo:>12.6e} {hi:>12.6e} {:>12.6e}  {note}",
                    st.mean().unwrap_or(0.0)
                );
            }
            None => println!(
                "{l:>5} {h:>5} {:>12} {:>12} {:>12}  no finite value: drawn in the bad colour",
                "-", "-", "-"
            ),
        }
    }
}
