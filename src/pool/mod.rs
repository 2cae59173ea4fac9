//! Ingest and pooling on the GPU: row blocks of each head are read from the source straight into
//! mapped GPU buffers (double-buffered, so the next block is read while the GPU pools the last),
//! pooled into per-cell accumulators, and reduced to per-head statistics. Memory on both sides is
//! bounded by the chunk size and the output, never by the input.

pub mod accum;
mod bench;
mod chunk;
mod coop_probe;
mod diff;
mod dispatch;
pub(crate) use dispatch::ResidentRows;
pub mod geometry;
mod groups;
mod ingest;
mod options;
pub mod pattern;
mod pattern_gpu;
mod pattern_qk;
mod pipelines;
mod pool_kernel;
pub mod qk;
mod slots;
mod stats;

pub(crate) use bench::resident_pool_seconds;
pub use bench::{FmaProbe, UploadBench};
pub use coop_probe::{CoopProbe, CoopRate};
pub use groups::{has_upper_triangle, CellGroup, PooledCells};
pub(crate) use ingest::{Ingest, IngestShape};
pub use options::{Causal, PoolOptions};
pub use pattern_qk::source as pattern_qk_source;
pub(crate) use pipelines::{PerLayout, PoolPipelines};
pub use pool_kernel::PoolKernel;
pub(crate) use stats::head_stats;

use crate::error::Result;
use crate::gpu::Gpu;
use crate::pool::geometry::CellGeometry;
use crate::pool::pattern::PatternOptions;
use crate::source::AttentionSource;

/// Default upper bound on one upload chunk: large enough to amortize a submission, small enough
/// that two of them stay cheap even on the smallest adapters. The Q/K paths size their blocks
/// by it (their one-pass states by `Gpu::qk_state_bytes`, this much on CPU adapters); stored
/// attention read from the host is further capped by [`UPLOAD_CHUNK_TARGET`].
pub const CHUNK_TARGET: u64 = 64 << 20;
/// Upper bound on one host upload chunk of stored attention (rows read into mapped slots, two
/// of them): large enough to amortize a submission (a 1 GiB input is 64 of them), small enough
/// that a fresh process pays little for its slots (new mapped memory is zero-filled by wgpu and
/// page-faulted in by the host, about 1 ms per MiB on a 2-core host), that the GPU starts on
/// the first chunk soon after the read does, and that it has little left to pool after the
/// last read. Chunking never changes a result: each cell's rows fold in row order whatever the
/// chunk boundaries.
pub const UPLOAD_CHUNK_TARGET: u64 = 16 << 20;
/// Iterations one pool invocation may loop through in one dispatch (rows of its bin in the
/// piece × 16-byte words per bin row): bounded so a dispatch stays short on every driver
/// (llvmpipe stops a shader's loops after 65535 iterations; display drivers have watchdogs).
const LOOP_BUDGET: usize = 16384;
/// Pieces (head row ranges) per chunk; the size of the parameter array in `shaders/pool.wgsl`.
const MAX_PIECES: usize = 256;

/// Which heads a pooling run reads and where they go: what every pooling entry point
/// (stored attention here, Q/K in [`qk`]) shares.
#[derive(Clone, Copy)]
pub(crate) struct PoolRun<'a> {
    /// (layer, head) of each cell, 0-based.
    pub cells: &'a [(usize, usize)],
    pub geometry: CellGeometry,
    pub options: PoolOptions,
    /// Upload chunk size in bytes at most.
    pub chunk_bytes: u64,
    /// The one-pass Q/K path's per-(row, column) states per chunk of rows, in bytes at most
    /// ([`Gpu::qk_state_bytes`](crate::Gpu)).
    pub state_bytes: u64,
    /// Hears (bytes consumed, bytes in total) as input is pooled.
    pub progress: Option<&'a (dyn Fn(u64, u64) + Send + Sync)>,
    /// Pattern statistics to accumulate in the same pass (stored attention only; `None` for
    /// plain renders, which then pay nothing).
    pub patterns: Option<PatternOptions>,
    /// Whether the pooled cells are wanted; false (with `patterns`): only the statistics are
    /// (`attnviz heads`), and stored attention skips the pool pass.
    pub pooled: bool,
}

/// Accumulators for `shape.cells` heads with nothing pooled into them: every pixel empty (drawn
/// as background), every head without statistics. What a window shows before the input is read.
pub(crate) fn unpooled_cells(
    gpu: &Gpu,
    pipes: &PoolPipelines,
    shape: IngestShape,
) -> Result<PooledCells> {
    let options = PoolOptions {
        causal: Causal::Off,
        ..shape.options
    };
    Ingest::new(gpu, pipes, IngestShape { options, ..shape })?.finish()
}

/// Pools `run.cells` of `source` into `run.geometry`-sized accumulators, reading each row block
/// straight into mapped GPU memory.
pub(crate) fn pool_cells(
    gpu: &Gpu,
    pipes: &PoolPipelines,
    source: &dyn AttentionSource,
    run: &PoolRun<'_>,
) -> Result<PooledCells> {
    if let Some(diff) = source.as_diff() {
        return diff::pool_diff(gpu, pipes, diff, run).map_err(|e| e.about(source.name()));
    }
    let cells = run.cells;
    gpu.scoped("pooling", || {
        let s = source.shape();
        let shape = IngestShape {
            cells: cells.len(),
            queries: s.queries,
            keys: s.keys,
            dtype: source.dtype(),
            geometry: run.geometry,
            options: run.options,
            chunk_target: run.chunk_bytes,
        };
        let mut ingest = Ingest::with_patterns(gpu, pipes, shape, run.patterns)
            .map_err(|e| e.about(source.name()))?;
        ingest.set_pooled(run.pooled);
        let total = (cells.len() * s.queries * s.keys * source.dtype().size()) as u64;
        let step = ingest.max_rows_per_fill();
        for (i, &(layer, head)) in cells.iter().enumerate() {
            let mut row = 0;
            while row < s.queries {
                let n = step.min(s.queries - row);
                ingest.push_with(i, row, n, |start, dst| {
                    let _span = tracing::info_span!("ingest.read").entered();
                    source.read_rows(layer, head, start, dst)
                })?;
                row += n;
                if let Some(p) = run.progress {
                    p(ingest.consumed, total);
                }
            }
        }
        ingest.finish()
    })
}
