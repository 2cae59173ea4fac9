//! `attnviz info`: what a tensor file holds and per-head statistics, computed the way render
//! pools it, so the numbers match the figure's colour limits.

use attnviz::pool::geometry::CellGeometry;
use attnviz::source::{self, OpenOptions};
use attnviz::{AttentionSource, Engine, HeadStats};

use super::args::InfoArgs;

/// `attnviz info`: the header lines, then one table row per head.
pub fn info(args: &InfoArgs) -> anyhow::Result<()> {
    let options = OpenOptions {
        tensor: args.tensor.clone(),
    };
    let src = source::open(&args.input, &options)?;
    let s = src.shape();
    println!("file:    {}", src.name());
    println!("shape:   {} (layers, heads, queries, keys)", s);
    println!("dtype:   {}", src.dtype().name());
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
