//! The CPU twin of the pattern statistics (`shaders/pattern.wgsl`): the same sums in f64, row
//! by row, so the GPU's f32 sums are checked against exact-enough values.

use ndarray::{ArrayView2, Axis};

use crate::error::Result;
use crate::figure::plan::{Plan, RenderOptions};
use crate::pool::pattern::{CellPatterns, PatternOptions, PatternSums};
use crate::pool::{Causal, PoolOptions};
use crate::source::AttentionSource;

/// Rows read per block: bounds memory like the GPU path's chunks do.
const BLOCK_BYTES: usize = 8 << 20;

/// Pattern sums of one head, fed rows in any blocks.
pub struct PatternAccumulator {
    options: PatternOptions,
    /// Entries with `k > q + diagonal` are masked (`None`: no mask).
    diagonal: Option<i64>,
    pub sums: PatternSums,
}

impl PatternAccumulator {
    /// Sums for a `queries` × `keys` head; `pool` says whether the causal mask is on
    /// (`Causal::On`; `Auto` counts everything, exact zeros add nothing) and where.
    /// Rows sit at `pool.diagonal` (the source's; bottom-right aligned when `None`) and are
    /// numbered from `row0` in `argmax`.
    pub fn new(
        queries: usize,
        keys: usize,
        options: PatternOptions,
        pool: PoolOptions,
        row0: usize,
    ) -> Self {
        let position0 = pool.diagonal.unwrap_or(keys as i64 - queries as i64);
        PatternAccumulator {
            options,
            diagonal: (pool.causal == Causal::On).then_some(position0),
            sums: PatternSums::new(queries, keys).placed(position0, row0),
        }
    }

    /// Adds rows `row_start..row_start + rows.nrows()`.
    pub fn push_rows(&mut self, row_start: usize, rows: ArrayView2<'_, f32>) {
        for (r, row) in rows.axis_iter(Axis(0)).enumerate() {
            self.push_row(row_start + r, row.as_slice().expect("rows are contiguous"));
        }
    }

    fn push_row(&mut self, q: usize, row: &[f32]) {
        let s = &mut self.sums;
        let (keys, block) = (s.keys, s.block);
        let a = q as i64 + s.position0;
        let zero = s.zero_offset();
        let blocks_w = keys.div_ceil(block);
        let (sink_keys, window) = (self.options.sink_keys as usize, self.options.window as i64);
        for (k, &v) in row.iter().enumerate() {
            if self.diagonal.is_some_and(|d| k as i64 > q as i64 + d) {
                continue;
            }
            if !v.is_finite() {
                s.non_finite += 1;
                continue;
            }
            let p = v as f64;
            let dist = (a - k as i64).abs();
            s.row_sum += p;
            if k < sink_keys {
                s.sink += p;
            }
            if dist < window {
                s.local += p;
            }
            s.distance += p * dist as f64;
            if p > 0.0 {
                s.entropy -= p * p.ln();
            }
            if s.max.is_none_or(|m| v > m.0) {
                s.max = Some((v, q, k));
            }
            s.columns[k] += p;
            s.diagonals[(a - k as i64 + zero) as usize] += p;
            s.blocks[(q / block) * blocks_w + k / block] += p;
        }
    }
}

/// Pattern sums of `cells` ((layer, head), 0-based) of `source`, reading in bounded blocks.
pub fn pattern_cells(
    source: &dyn AttentionSource,
    cells: &[(usize, usize)],
    options: PatternOptions,
    pool: PoolOptions,
) -> Result<Vec<PatternSums>> {
    let shape = source.shape();
    let (queries, keys, dtype) = (shape.queries, shape.keys, source.dtype());
    let row_bytes = keys * dtype.size();
    let block_rows = (BLOCK_BYTES / row_bytes.max(1)).clamp(1, queries.max(1));
    let mut bytes = vec![0u8; block_rows * row_bytes];
    let mut values = vec![0f32; block_rows * keys];
    let mut out = Vec::with_capacity(cells.len());
    // (a head from Q and K masked as its source says, whatever the command line asked, as the
    // GPU's statistics are: a capture with bidirectional spans is drawn bidirectional under
    // `--causal on` too)
    let pool = pool.settled_for(source, cells)?.placed_at(source);
    for &(layer, head) in cells {
        let mut acc = PatternAccumulator::new(queries, keys, options, pool, source.first_query());
        let mut row = 0;
        while row < queries {
            let rows = block_rows.min(queries - row);
            source.read_rows(layer, head, row, &mut bytes[..rows * row_bytes])?;
            dtype.decode(&bytes[..rows * row_bytes], &mut values[..rows * keys]);
            let view =
                ArrayView2::from_shape((rows, keys), &values[..rows * keys]).expect("block shape");
            acc.push_rows(row, view);
            row += rows;
        }
        out.push(acc.sums);
    }
    Ok(out)
}

/// The CPU twin of `Engine::head_patterns`: the heads `options` selects, in plan order.
pub fn head_patterns_cpu(
    source: &dyn AttentionSource,
    options: &RenderOptions,
    patterns: PatternOptions,
) -> Result<CellPatterns> {
    let plan = Plan::new(source, &options.with_patterns(patterns))?;
    let sums = pattern_cells(source, &plan.cells, patterns, plan.pool)?;
    Ok((
        plan.named_cells(&plan.cells),
        sums.iter().map(PatternSums::finish).collect(),
    ))
}
