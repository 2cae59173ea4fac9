//! The compiled pooling and statistics pipelines, built once per engine, with the spare upload
//! slots and accumulator buffers they keep between ingests.

use std::sync::{Mutex, OnceLock};

use bytemuck::{Pod, Zeroable};

use crate::gpu::kernel::{Binding, Kernel};
use crate::gpu::shaders;
use crate::gpu::Gpu;
use crate::pool::chunk::ChunkTexture;
use crate::pool::diff::DiffPipeline;
use crate::pool::groups::SpareGroups;
use crate::pool::options::{PoolOptions, FLAG_WINDOW};
use crate::pool::pattern_gpu::PatternPipelines;
use crate::pool::slots::Slot;
use crate::source::DType;

/// Mirrors `Piece` in `shaders/pool.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub(super) struct PieceParams {
    pub(super) elem_offset: u32,
    pub(super) row_start: u32,
    pub(super) row_count: u32,
    pub(super) keys: u32,
    pub(super) accum_base: u32,
    pub(super) pooled_w: u32,
    pub(super) y_start: u32,
    pub(super) row_max_base: u32,
    pub(super) window: u32,
    pub(super) causal_offset: i32,
    pub(super) cell: u32,
    pub(super) y_end: u32,
    pub(super) stride: u32,
    pub(super) _pad: [u32; 3],
}

/// The pooling pipelines of one dtype and set of flags.
pub(super) struct Specialized {
    /// `pool`, and `pool_lanes1`, `2` and `4` (shaders/pool.wgsl: bins of 1, 2 and 4 whole
    /// words, several a lane), each compiled on first use: a driver compiles in every process
    /// (Mesa's disk cache skips only LLVM), and a run needs one of them.
    pool: [OnceLock<wgpu::ComputePipeline>; 4],
    constants: [(&'static str, f64); 2],
    /// `--norm row` only: the row maxima, one invocation per row (`row_maxima`) or one
    /// workgroup per row (`row_maxima_wide`, rows past [`LOOP_BUDGET`] words).
    pub(super) row_maxima: Option<(wgpu::ComputePipeline, wgpu::ComputePipeline)>,
}

/// The compiled pooling and statistics pipelines; built once per engine.
pub(crate) struct PoolPipelines {
    pub(super) kernel: Kernel,
    /// The pipelines specialized for each dtype and set of pooling flags, indexed by
    /// `DType::shader_id` and `PoolOptions::flags`, compiled on first use so a run pays only
    /// for the mode it uses.
    pub(super) specialized: [[OnceLock<Specialized>; 16]; 3],
    pub(super) fold: wgpu::ComputePipeline,
    pub(super) stats_kernel: Kernel,
    pub(super) block_stats: wgpu::ComputePipeline,
    pub(super) head_stats: wgpu::ComputePipeline,
    /// Upload slots of the last ingest, kept for the next one of the same chunk size: fresh
    /// mapped buffers are zero-filled by wgpu and page-faulted in by the host, which costs as
    /// much as pooling a small input. At most two chunks stay alive.
    pub(super) spare_slots: Mutex<Vec<Slot>>,
    /// The chunk texture of the last ingest, reused by the next one of the same size.
    spare_chunk: Mutex<Option<ChunkTexture>>,
    /// Accumulator buffers of dropped results, reused (cleared) by the next ingest of the
    /// same sizes, for the same reason; at most `SPARE_GROUP_BYTES`.
    pub(super) spare_groups: SpareGroups,
    /// The pattern statistics' pipelines, compiled on first use.
    pub(super) pattern: PatternPipelines,
    /// `attnviz diff`'s subtraction, compiled on first use.
    diff: OnceLock<DiffPipeline>,
}

impl PoolPipelines {
    pub(crate) fn new(device: &wgpu::Device) -> PoolPipelines {
        use Binding::*;
        // params, the chunk texture, row edges, column edges, accumulators, row maxima, cell
        // flags, zeros
        let kernel = Kernel::compute(
            device,
            "attnviz.pool",
            shaders::POOL,
            &[
                Uniform,
                Chunk,
                BufReadOnly,
                BufReadOnly,
                Buffer,
                Buffer,
                Buffer,
                Buffer,
            ],
        );
        // params, accumulators, statistics out, per-block partials
        let stats_kernel = Kernel::compute(
            device,
            "attnviz.stats",
            shaders::STATS,
            &[Uniform, BufReadOnly, Buffer, Buffer],
        );
        PoolPipelines {
            fold: kernel.pipeline(device, "fold_masked_zeros"),
            specialized: Default::default(),
            block_stats: stats_kernel.pipeline(device, "block_stats"),
            head_stats: stats_kernel.pipeline(device, "head_stats"),
            kernel,
            stats_kernel,
            spare_slots: Mutex::new(Vec::new()),
            spare_chunk: Mutex::new(None),
            spare_groups: SpareGroups::default(),
            pattern: PatternPipelines::default(),
            diff: OnceLock::new(),
        }
    }

    pub(super) fn diff(&self, device: &wgpu::Device) -> &DiffPipeline {
        self.diff.get_or_init(|| DiffPipeline::new(device))
    }

    /// Up to `n` spare upload slots of exactly `size` bytes.
    pub(super) fn take_slots(&self, size: usize, n: usize) -> Vec<Slot> {
        let mut spare = self.spare_slots.lock().expect("spare slots");
        let mut out = Vec::new();
        while out.len() < n {
            match spare.iter().position(|s| s.host.size() == size as u64) {
                Some(i) => out.push(spare.swap_remove(i)),
                None => break,
            }
        }
        out
    }

    pub(super) fn keep_slots(&self, slots: Vec<Slot>) {
        let mut spare = self.spare_slots.lock().expect("spare slots");
        spare.extend(slots);
        let excess = spare.len().saturating_sub(2);
        spare.drain(..excess);
    }

    /// A chunk texture holding `bytes` bytes: the spare one when it is large enough.
    pub(super) fn take_chunk(&self, gpu: &Gpu, bytes: u64) -> ChunkTexture {
        let spare = self.spare_chunk.lock().expect("spare chunk").take();
        match spare {
            Some(c) if c.capacity() >= bytes + 16 && c.capacity() <= 2 * bytes + (64 << 10) => c,
            _ => ChunkTexture::new(gpu, bytes),
        }
    }

    pub(super) fn keep_chunk(&self, chunk: ChunkTexture) {
        *self.spare_chunk.lock().expect("spare chunk") = Some(chunk);
    }

    /// The pool (and row-maxima) pipelines for `dtype` and `options`, masking each piece's
    /// sliding window when `window`.
    pub(super) fn specialized(
        &self,
        device: &wgpu::Device,
        dtype: DType,
        options: PoolOptions,
        window: bool,
    ) -> &Specialized {
        let flags = options.flags() | if window { FLAG_WINDOW } else { 0 };
        let id = dtype.shader_id();
        self.specialized[id as usize][flags as usize].get_or_init(|| {
            let constants = [("DTYPE", id as f64), ("FLAGS", flags as f64)];
            let pipeline = |entry: &str| self.kernel.specialized(device, entry, &constants);
            Specialized {
                pool: Default::default(),
                constants,
                row_maxima: options
                    .row_norm
                    .then(|| (pipeline("row_maxima"), pipeline("row_maxima_wide"))),
            }
        })
    }
}

impl Specialized {
    /// The pool pipeline for bins of `bin_words` whole words ([`lane_bin_words`]; 0: the
    /// general kernel).
    pub(super) fn pool(
        &self,
        device: &wgpu::Device,
        kernel: &Kernel,
        bin_words: u32,
    ) -> &wgpu::ComputePipeline {
        let (slot, entry) = match bin_words {
            0 => (0, "pool"),
            1 => (1, "pool_lanes1"),
            2 => (2, "pool_lanes2"),
            4 => (3, "pool_lanes4"),
            _ => unreachable!("bins of {bin_words} words"),
        };
        self.pool[slot].get_or_init(|| kernel.specialized(device, entry, &self.constants))
    }
}

/// Words of a row one invocation of a `pool_lanes` entry point reads (`LANE_WORDS` in
/// shaders/pool.wgsl).
const LANE_WORDS: u32 = 4;

/// Which pool entry point pools `keys` keys of `dtype` into `pooled_w` columns: the 16-byte
/// words each bin spans (1, 2 or 4: `pool_lanes1`, `2`, `4`) when every bin is the same whole
/// number of words and the pooled width a multiple of the pixels an invocation takes; 0 (the
/// general `pool`) otherwise. Uniform bins from key 0 are what [`bin_edges`] makes when the
/// width divides the keys, so the lane kernels compute them instead of reading `col_edges`.
/// The rows must also start on words (`rows_on_words`), which the dispatch checks.
///
/// [`bin_edges`]: crate::pool::geometry::bin_edges
pub fn lane_bin_words(keys: usize, pooled_w: u32, dtype: DType) -> u32 {
    let w = pooled_w as usize;
    if w == 0 || !keys.is_multiple_of(w) {
        return 0;
    }
    let bytes = keys / w * dtype.size();
    let words = match bytes {
        16 => 1,
        32 => 2,
        64 => 4,
        _ => return 0,
    };
    if pooled_w.is_multiple_of(LANE_WORDS / words) {
        words
    } else {
        0
    }
}

/// Pixels of a pooled row one invocation of the pool kernel takes.
pub(super) fn pixels_per_lane(bin_words: u32) -> u32 {
    LANE_WORDS.checked_div(bin_words).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::has_upper_triangle;

    #[test]
    pub(super) fn dtype_ids_match_the_shader() {
        assert_eq!(DType::F32.shader_id(), 0);
        assert_eq!(DType::F16.shader_id(), 1);
        assert_eq!(DType::BF16.shader_id(), 2);
        assert_eq!(std::mem::size_of::<PieceParams>(), 64);
        assert!(has_upper_triangle(4, 4));
        assert!(!has_upper_triangle(1, 4));
        assert!(has_upper_triangle(2, 4));
    }

    #[test]
    fn bins_of_whole_words_take_the_lane_kernel() {
        // a 2048-token head into 256-, 128- and 512-px cells
        assert_eq!(lane_bin_words(2048, 256, DType::F32), 2);
        assert_eq!(lane_bin_words(2048, 128, DType::F32), 4);
        assert_eq!(lane_bin_words(2048, 512, DType::F32), 1);
        assert_eq!(lane_bin_words(2048, 256, DType::F16), 1);
        assert_eq!(lane_bin_words(32768, 1024, DType::BF16), 4);
        // bins of 32 f32 keys (8 words), uneven bins, half-word bins
        assert_eq!(lane_bin_words(4096, 128, DType::F32), 0);
        assert_eq!(lane_bin_words(2000, 250, DType::F32), 2);
        assert_eq!(lane_bin_words(2000, 256, DType::F32), 0);
        assert_eq!(lane_bin_words(2048, 1024, DType::F32), 0);
        // 3 pixels of one word: not a multiple of the lane's 4
        assert_eq!(lane_bin_words(12, 3, DType::F32), 0);
        assert_eq!(pixels_per_lane(0), 1);
        assert_eq!(pixels_per_lane(1), 4);
        assert_eq!(pixels_per_lane(4), 1);
    }
}
