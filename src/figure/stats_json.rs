//! `render --stats-json` and `attnviz heads --json`: every drawn head's pattern statistics as
//! JSON. In the library so the CLI and the Python package (`stats_json=`) write the same file.

use std::io::Write;
use std::path::Path;

use serde_json::{json, Value};

use crate::error::Result;
use crate::figure::plan::{Figure, RenderOptions};
use crate::figure::rank::Ranking;
use crate::files::write_atomic;
use crate::pool::pattern::{HeadPattern, PatternOptions, RECALL_THRESHOLD, SIMPLER_MARGIN, TOP};
use crate::pool::Causal;

fn causal_name(causal: Causal) -> &'static str {
    match causal {
        Causal::On => "on",
        Causal::Off => "off",
        Causal::Auto => "auto",
    }
}

/// One head as JSON (layer and head 1-based).
fn head_json(&(layer, head): &(usize, usize), p: &HeadPattern) -> Value {
    json!({
        "layer": layer + 1,
        "head": head + 1,
        "sink_mass": p.sink_mass,
        "local_mass": p.local_mass,
        "entropy": p.entropy,
        "mean_distance": p.mean_distance,
        "max": p.max,
        "argmax": p.argmax,
        "top_keys": p.top_keys.iter().map(|&(k, m)| json!([k, m])).collect::<Vec<_>>(),
        "top_offsets": p.top_offsets.iter().map(|&(d, m)| json!([d, m])).collect::<Vec<_>>(),
        "row_sum_mean": p.row_sum_mean,
        "pattern": p.pattern,
        "recalls": {
            "a_shape": p.recalls.a_shape,
            "vertical_slash": p.recalls.vertical_slash,
            "block_sparse": p.recalls.block_sparse,
        },
        "non_finite": p.non_finite,
    })
}

/// `{"heads": [...], "options": {...}}`, replaced atomically.
pub fn write_stats_json(
    path: &Path,
    cells: &[(usize, usize)],
    stats: &[HeadPattern],
    patterns: PatternOptions,
    causal: Causal,
) -> Result<()> {
    write_doc(path, &stats_doc(cells, stats, patterns, causal))
}

/// A statistics document (as [`stats_doc`] makes it, perhaps with more options), pretty,
/// replaced atomically.
pub fn write_doc(path: &Path, doc: &Value) -> Result<()> {
    write_atomic(path, |w| {
        serde_json::to_writer_pretty(&mut *w, doc)?;
        writeln!(w)
    })
}

/// `--stats-json` of a rendered figure: its heads' statistics from the pass that drew it
/// (nothing is written when `options` asked for none).
pub fn write_figure_stats(path: &Path, figure: &Figure, options: &RenderOptions) -> Result<()> {
    match options.patterns {
        Some(patterns) => write_stats_json(
            path,
            &figure.plan.named_cells(&figure.plan.cells),
            &figure.patterns,
            patterns,
            options.causal,
        ),
        None => Ok(()),
    }
}

/// `attnviz heads`' document (what Python's `attnviz.heads` returns) of the heads it lists
/// ([`crate::figure::rank::listed`]): [`stats_doc`], and when they are ranked, what the list is,
/// so that a file listing some heads in another order says so (`sort_by`, `pattern`, `heads_listed` of
/// `heads_computed`).
pub fn heads_doc(
    listed_cells: &[(usize, usize)],
    listed: &[HeadPattern],
    patterns: PatternOptions,
    causal: Causal,
    ranking: Ranking,
    computed: usize,
) -> Value {
    let mut doc = stats_doc(listed_cells, listed, patterns, causal);
    if let Some(key) = ranking.sort_by {
        doc["options"]["sort_by"] = key.name().into();
    }
    if let Some(labels) = ranking.pattern {
        doc["options"]["pattern"] = labels.into();
    }
    if ranking.ranks() {
        doc["options"]["heads_listed"] = listed.len().into();
        doc["options"]["heads_computed"] = computed.into();
    }
    doc
}

/// The document [`write_stats_json`] writes (what Python's `attnviz.heads` returns).
pub fn stats_doc(
    cells: &[(usize, usize)],
    stats: &[HeadPattern],
    patterns: PatternOptions,
    causal: Causal,
) -> Value {
    let heads: Vec<Value> = cells
        .iter()
        .zip(stats)
        .map(|(c, p)| head_json(c, p))
        .collect();
    json!({
        "heads": heads,
        "options": {
            "sink_keys": patterns.sink_keys,
            "window": patterns.window,
            "causal": causal_name(causal),
            // (how long `top_keys` and `top_offsets` are; not `--top`, which `heads_listed`
            // reports)
            "top_lists": TOP,
            "pattern_rule": {
                "budget": "m = ceil(K/16): A-shape the first m keys and |a - k| < m, vertical-slash the m heaviest columns and diagonals, block-sparse the heaviest 1/8 of the blocks (rounded down), 64 tokens a side (32 or 16 for heads under 512 tokens, larger past 65536 blocks a head)",
                "recall_threshold": RECALL_THRESHOLD,
                "simpler_margin": SIMPLER_MARGIN,
            },
        },
    })
}
