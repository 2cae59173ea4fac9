//! Pooled attention from Q and K in one pass over the scores, with no probability ever stored
//! (shaders/qk_pool.wgsl): scores are computed a 64 × 64 tile at a time like a GEMM (Q and K
//! staged in workgroup memory 32 dimensions at a time, each of 64 invocations an 8 × 8 block
//! of scores in registers, so each loaded vec4 feeds 8 dot products), each tile is folded into per-(row, pooled column) states (max and min score, Σ exp2(s − max)),
//! and once a block of rows has seen all its keys, every row's log-sum-exp follows from its
//! states and every output pixel folds its rows into the pooled accumulators. Since
//! p = exp(s − lse) is monotone in s, a bin's largest and smallest probability are those of its
//! largest and smallest score: exact, up to the rounding of lse; the bin's sum is the same sum
//! in another order. The intermediate is rows × pooled columns per head (a block of rows at a
//! time), never N².
//!
//! Several heads go in each dispatch (workgroup z), sharing one upload of each key head among
//! the query heads of its GQA group. Tiles above a causal diagonal are never computed. On GPUs
//! the keys are also split among workgroups (workgroup y, whole pooled columns each,
//! [`cuts::split_keys`]), so that one dispatch per chunk fills the device instead of a dispatch per
//! window or segment of keys, one after another.
//!
//! Runs that need every probability (pattern statistics), and figures whose pooled columns are
//! so narrow that a state would stand for one or two probabilities ([`stores_narrow_columns`]),
//! use the same row kernel twice per chunk instead ([`pool_materialized`]): once for the rows'
//! lse, once to store the chunk's probabilities (`prob_rows`) for the ingest's pool pass, one
//! chunk of rows at a time.

mod buffers;
mod cuts;
mod one_pass;
mod patterns;
mod pipelines;
mod reader;
mod shape;
mod source;

pub(crate) use pipelines::TiledPipelines;
pub(crate) use reader::RowReader;
pub use shape::{row_kernel_shape, RowKernelShape};
pub use source::kernel_source;

use bytemuck::{Pod, Zeroable};

use crate::error::Result;
use crate::gpu::Gpu;
use crate::pool::chunk::max_chunk_bytes;
use crate::pool::geometry::CellGeometry;
use crate::pool::pattern_qk::window_rows;
use crate::pool::{Ingest, PoolRun, ResidentRows};
use crate::source::qk::{QkSource, Values};

use super::KernelLayer;
use cuts::{probability_rows, Output, MIN_SPLIT_KEYS};
use one_pass::OnePass;
use patterns::FusedPatterns;
use shape::{padded, window_keys};

/// Query rows and keys per workgroup tile (`TQ`, `TK` in the shader).
pub(super) const TQ: usize = 64;
const TK: usize = 64;
/// Invocations per `pool_scores` workgroup, and the workgroup memory it uses.
const WG: u32 = 64;
const WG_BYTES: u32 = 16384;
/// Keys per `pool_scores` dispatch: bounds each workgroup's loop (llvmpipe stops a shader's
/// loops after 65535 iterations; display drivers' watchdogs stop long dispatches).
const SEG_KEYS: usize = 8192;
/// Widest pooled cell this path takes: `pool_lse` walks a row's pooled columns in one loop.
const MAX_POOLED_W: u32 = 8192;
/// Storage buffers the one-pass module binds.
const STORAGE_BINDINGS: u32 = 10;

/// Mirrors `Params` in `shaders/qk_pool.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
struct Params {
    rows: u32,
    row_start: u32,
    q_rows: u32,
    keys: u32,
    flags: u32,
    diagonal: i32,
    scale: f32,
    seg_start: u32,
    seg_end: u32,
    pooled_w: u32,
    y_start: u32,
    px: u32,
    inter_rows: u32,
    window: u32,
    softcap: f32,
    member0: u32,
    row_perm: u32,
    splits: u32,
    split_cols: u32,
    part_stride: u32,
    split_len: u32,
    chunk: u32,
    _pad: [u32; 2],
}

/// The modes fixed per pipeline (`SOFTCAP`, `LOGITS`, `ROW_NORM`, `SPLIT`, `RANGED` in the
/// shader): a layer's softcap, and the run's values, normalization, split keys and table of
/// each row's keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Mode {
    softcap: bool,
    logits: bool,
    row_norm: bool,
    /// The run stores every probability (`prob_rows`, [`pool_materialized`]).
    materialize: bool,
    /// The score kernels take every key of a chunk in one dispatch, split among workgroups
    /// ([`cuts::Cuts::splits`]).
    split: bool,
    /// Each row's keys come from its table by position (bidirectional spans,
    /// [`QkSource::ranged`]).
    ranged: bool,
}

/// Whether [`pool_into`] takes `src` into `geometry` on `gpu`: every key is output (the
/// viewer's zoomed regions normalize over keys they do not show, and go the two-pass way), the
/// pooled width fits one loop, one head's Q and K fit a binding, and the adapter offers the
/// workgroup the kernel needs.
pub(crate) fn applies(gpu: &Gpu, src: &QkSource, geometry: CellGeometry) -> bool {
    let l = &gpu.limits;
    let (d4, _) = padded(src.dim());
    let head =
        |n: usize| (n * d4 as usize * 16) as u64 <= gpu.max_binding().min(max_chunk_bytes(gpu));
    src.out_keys() == (0..src.all_keys())
        && geometry.pooled_w <= MAX_POOLED_W
        && head(src.rows().len())
        && head(src.all_keys())
        && l.max_storage_buffers_per_shader_stage >= STORAGE_BINDINGS
        && l.max_compute_workgroup_storage_size >= WG_BYTES
        && l.max_compute_invocations_per_workgroup >= WG
        && l.max_compute_workgroup_size_x >= WG
}

/// Pools `run.cells` of `src` into `ingest`'s accumulators (see the module docs); `ingest`
/// must have been made for `src`'s shape, `run.geometry` and these cells. Masking follows the
/// source. False when Q or K holds a non-finite value: the accumulators are then incomplete,
/// and the caller takes the two-pass path instead.
pub(crate) fn pool_into(
    gpu: &Gpu,
    pipes: &TiledPipelines,
    src: &QkSource,
    run: &PoolRun<'_>,
    ingest: &mut Ingest,
) -> Result<bool> {
    pool_run(gpu, pipes, src, run, ingest, Output::Pooled, None)
}

/// Rows of each piece of the statistics from Q and K that [`pool_with_patterns`] takes for
/// `src` into `ingest` (made for its cells, with pattern statistics) on `gpu`, or `None` where
/// it does not: where [`pool_into`] takes `src` with the row kernel, its values are
/// probabilities (not logits), the head has [`Gpu::pattern_qk_min_keys`] keys at least (a
/// workgroup's worth), the K vectors of 16 keys fit [`Gpu::pattern_key_vec4s`], each
/// query head's rows start on a uniform offset of the Q buffer (a window of Q is bound at one)
/// and the ingest has statistics (`Ingest::qk_pattern_rows`).
pub(crate) fn pattern_rows(
    gpu: &Gpu,
    src: &QkSource,
    geometry: CellGeometry,
    ingest: &Ingest,
) -> Option<usize> {
    let (d4, _) = padded(src.dim());
    let head_q = (src.rows().len() * d4 as usize * 16) as u64;
    let aligned = head_q.is_multiple_of(u64::from(gpu.limits.min_uniform_buffer_offset_alignment))
        && (16 * d4 as usize * 16)
            .is_multiple_of(gpu.limits.min_uniform_buffer_offset_alignment as usize);
    let takes = applies(gpu, src, geometry)
        && src.all_keys() >= gpu.pattern_qk_min_keys as usize
        && window_keys(gpu, d4) > 0
        && src.values() == Values::Probs
        && 16 * d4 <= gpu.pattern_key_vec4s
        && aligned;
    if !takes {
        return None;
    }
    ingest.qk_pattern_rows(d4)
}

/// Pools `run.cells` of `src` into `ingest`'s accumulators as [`pool_into`] does, and their
/// pattern statistics from the same run: after each chunk of rows is pooled, the statistics'
/// key kernel computes its scores again with the lse the row kernel left for each row
/// (`pool::pattern_qk`), pieces of `rows` rows (from [`pattern_rows`]). Two score passes, as
/// [`pool_materialized`], and no probability stored, copied or read back; the figure is the
/// one [`pool_into`] makes without the statistics. False, as [`pool_into`], for a non-finite
/// Q or K.
pub(crate) fn pool_with_patterns(
    gpu: &Gpu,
    pipes: &TiledPipelines,
    src: &QkSource,
    run: &PoolRun<'_>,
    ingest: &mut Ingest,
    rows: usize,
) -> Result<bool> {
    pool_run(gpu, pipes, src, run, ingest, Output::Pooled, Some(rows))
}

/// Whether [`pool_materialized`] takes `src` into `geometry` on `gpu`: where [`applies`] holds,
/// the row kernel computes the scores, and a workgroup's rows of probabilities fit a binding.
pub(crate) fn materializes(gpu: &Gpu, src: &QkSource, geometry: CellGeometry) -> bool {
    let (d4, _) = padded(src.dim());
    applies(gpu, src, geometry)
        && window_keys(gpu, d4) > 0
        && probability_rows(gpu, src.all_keys()) >= TQ
}

/// Whether a figure of `src` into `geometry` is pooled from stored probabilities
/// ([`pool_materialized`]) rather than in one pass ([`pool_into`]): where its pooled columns
/// are at most [`Gpu::qk_store_keys`] keys wide, so that a (row, column) state would stand for
/// one or two probabilities (a whole model at short context, drawn at its own width), and
/// [`materializes`] holds.
pub(crate) fn stores_narrow_columns(gpu: &Gpu, src: &QkSource, geometry: CellGeometry) -> bool {
    let widest = src.all_keys().div_ceil(geometry.pooled_w.max(1) as usize);
    widest <= gpu.qk_store_keys as usize && materializes(gpu, src, geometry)
}

/// Pools `run.cells` of `src` through `ingest` from every probability, for runs that need each
/// entry (pattern statistics) and figures of narrow columns ([`stores_narrow_columns`]): per
/// chunk of rows, the row kernel's scores give each row's lse as in [`pool_into`],
/// `prob_rows` stores the chunk's probabilities on the device (a batch of short heads side by
/// side), and the ingest's pool pass reads them from there, statistics and all. One score
/// pass more than [`pool_into`], no fold, and nothing read back to the host; the two-pass
/// path's kernels compute the same probabilities several times slower. False, as
/// [`pool_into`], for a non-finite Q or K; call only where [`materializes`] holds.
pub(crate) fn pool_materialized(
    gpu: &Gpu,
    pipes: &TiledPipelines,
    src: &QkSource,
    run: &PoolRun<'_>,
    ingest: &mut Ingest,
) -> Result<bool> {
    // The row kernel is run for the rows' lse only: one pooled column, so its per-column
    // states cost nothing (narrow columns cost it half its time); or, where the adapter splits
    // the keys among workgroups, up to 64 columns of MIN_SPLIT_KEYS keys or more, whole
    // columns a split.
    let keys = src.all_keys();
    let geometry = CellGeometry {
        pooled_w: if gpu.qk_split_workgroups > 0 {
            (keys / MIN_SPLIT_KEYS).clamp(1, 64) as u32
        } else {
            1
        },
        ..run.geometry
    };
    let run = PoolRun { geometry, ..*run };
    pool_run(gpu, pipes, src, &run, ingest, Output::Stored, None)
}

/// [`pool_into`], [`pool_with_patterns`] (`pattern_rows`: its pieces' rows) and
/// [`pool_materialized`]: batch after batch, chunk after chunk of rows, the chunk's scores
/// pooled in place (and their statistics taken) or stored for `ingest` to pool.
fn pool_run(
    gpu: &Gpu,
    pipes: &TiledPipelines,
    src: &QkSource,
    run: &PoolRun<'_>,
    ingest: &mut Ingest,
    output: Output,
    pattern_rows: Option<usize>,
) -> Result<bool> {
    let cells = run.cells;
    let (rows, keys) = (src.rows().len(), src.all_keys());
    let (d4, _) = padded(src.dim());
    let q_window = pattern_rows.map_or(0, |_| (window_rows(gpu, d4) * d4 as usize * 16) as u64);
    let mut pass = OnePass::new(gpu, pipes, src, run, output, q_window);
    // The first layer's pipelines now, before any upload: the device does the buffers' first
    // fill meanwhile (a submission waits for the one before it on some drivers, llvmpipe's).
    // The ingest's pipelines for the stored rows beside them, on another thread.
    if let Some(&(layer, _)) = cells.first() {
        let stride = pass.cuts.prob_stride(keys);
        let warmer = (output == Output::Stored).then(|| ingest.pipeline_warmer(stride));
        let softcap = KernelLayer::of(src, layer).softcap != 0.0;
        std::thread::scope(|scope| {
            if let Some(w) = &warmer {
                scope.spawn(|| w.compile());
            }
            // (the statistics' key kernel beside them)
            if pattern_rows.is_some() {
                let (g, p) = (ingest.gpu, ingest.pipes);
                scope.spawn(move || {
                    p.pattern
                        .qk
                        .pass(g, d4, softcap, src.ranged())
                        .warm(&g.device, &p.pattern)
                });
            }
            pass.pipes(layer);
        });
    }
    let fused = pattern_rows.map(|r| FusedPatterns::new(gpu, &pass, ingest, r));
    let total = (cells.len() * rows * keys * 4) as u64;
    let mut first = 0;
    while first < cells.len() {
        let (batch, end) = pass.next_batch(cells, first, ingest);
        if !pass.upload_batch(&batch)? {
            return Ok(false);
        }
        let bind_group = pass.bind_group(&batch.accum);
        let members = batch.members.len();
        for start in (0..rows).step_by(pass.cuts.chunk_rows) {
            let len = pass.cuts.chunk_rows.min(rows - start);
            let encoder = pass.pool_chunk(&bind_group, &batch, start, len);
            // (the stored probabilities' pool pass in the chunk's submission)
            if let Some(tex) = &pass.buffers.probs_tex {
                // (one head per batch)
                let stride = pass.cuts.prob_stride(keys);
                ingest.pool_in_texture(encoder, first, start, len, tex, stride)?;
            } else if output == Output::Stored {
                // Member z's rows start at row z · chunk_rows of `probs`; its accumulators, and
                // so its cell, are the batch's first's plus its place among them (members are
                // ordered by key head).
                let accum0 = batch.members.iter().map(|m| m.accum).min().unwrap_or(0);
                let row_bytes = (keys * 4) as u64;
                let rows: Vec<ResidentRows> = batch
                    .members
                    .iter()
                    .enumerate()
                    .map(|(z, m)| ResidentRows {
                        cell: first + (m.accum - accum0) as usize,
                        row_start: start,
                        rows: len,
                        offset: (z * pass.cuts.chunk_rows) as u64 * row_bytes,
                    })
                    .collect();
                ingest.pool_resident_members(encoder, &rows, &pass.buffers.probs)?;
            } else {
                gpu.submit([encoder.finish()]);
                if let Some(f) = &fused {
                    f.chunk(&pass, ingest, &batch, first, start, len);
                }
                ingest.consumed += (members * len * keys * 4) as u64;
            }
            if let Some(p) = run.progress {
                p(ingest.consumed, total);
            }
        }
        first = end;
    }
    Ok(true)
}
