//! The compiled pooling and statistics pipelines, built once per engine, with the spare upload
//! slots and accumulator buffers they keep between ingests.

use std::sync::{Mutex, OnceLock};

use bytemuck::{Pod, Zeroable};

use crate::gpu::kernel::{Binding, Kernel};
use crate::gpu::shaders;
use crate::gpu::Gpu;
use crate::pool::accum::AccumLayout;
use crate::pool::chunk::ChunkTexture;
use crate::pool::diff::DiffPipeline;
use crate::pool::groups::SpareGroups;
use crate::pool::options::PoolOptions;
use crate::pool::pattern_gpu::PatternPipelines;
use crate::pool::pool_kernel::{PoolKernel, POOL_KERNELS};
use crate::pool::slots::Slot;
use crate::source::DType;

/// One entry point of a kernel that reads or writes accumulators, a pipeline per
/// [`AccumLayout`] (by [`AccumLayout::index`]), each compiled on first use.
pub(crate) struct PerLayout {
    entry: &'static str,
    slots: [OnceLock<wgpu::ComputePipeline>; 2],
}

impl PerLayout {
    pub(crate) fn new(entry: &'static str) -> PerLayout {
        PerLayout {
            entry,
            slots: Default::default(),
        }
    }

    /// The entry point of `kernel` specialized for accumulators in `layout`.
    pub(crate) fn get(
        &self,
        kernel: &Kernel,
        device: &wgpu::Device,
        layout: AccumLayout,
    ) -> &wgpu::ComputePipeline {
        self.slots[layout.index()]
            .get_or_init(|| kernel.specialized(device, self.entry, &[layout.constant()]))
    }
}

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
    /// The pattern statistics' rows a profile invocation walks (`Piece::slice_rows` in
    /// `shaders/pattern.wgsl`; 0: the whole piece); the pool pass reads nothing here.
    pub(super) slice_rows: u32,
    /// With `window` (`FLAG_WINDOW`): the attention chunks that also hide keys, and the
    /// position of a row's first key (a chunk's edges are positions).
    pub(super) chunk: u32,
    pub(super) key_position: u32,
}

/// The pooling pipelines of one dtype and set of flags.
pub(super) struct Specialized {
    /// The pool pipeline of each [`PoolKernel`] (by `PoolKernel::slot`), compiled on first
    /// use: a driver compiles in every process (Mesa's disk cache skips only LLVM), and a run
    /// needs one of them.
    pool: [OnceLock<wgpu::ComputePipeline>; POOL_KERNELS],
    constants: [(&'static str, f64); 3],
    /// `--norm row` only: the row maxima, one invocation per row (`row_maxima`) or one
    /// workgroup per row (`row_maxima_wide`, rows past [`LOOP_BUDGET`] words).
    pub(super) row_maxima: Option<(wgpu::ComputePipeline, wgpu::ComputePipeline)>,
}

/// The compiled pooling and statistics pipelines; built once per engine.
pub(crate) struct PoolPipelines {
    pub(super) kernel: Kernel,
    /// The pipelines specialized for each dtype, set of pooling flags and accumulator
    /// layout, indexed by `DType::shader_id` and `PoolOptions::flags` (plus 16 for
    /// [`AccumLayout::Single`]), compiled on first use so a run pays only for the mode it uses.
    pub(super) specialized: [[OnceLock<Specialized>; 32]; 3],
    /// `fold_masked_zeros` (of `kernel`) and the statistics' `block_stats` (of
    /// `stats_kernel`), for each accumulator layout.
    pub(super) fold: PerLayout,
    pub(super) stats_kernel: Kernel,
    pub(super) block_stats: PerLayout,
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
        // flags, zeros, the rows' key ranges
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
                BufReadOnly,
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
            fold: PerLayout::new("fold_masked_zeros"),
            specialized: Default::default(),
            block_stats: PerLayout::new("block_stats"),
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
    /// sliding window when `window`, into accumulators in `layout`.
    pub(super) fn specialized(
        &self,
        device: &wgpu::Device,
        dtype: DType,
        options: PoolOptions,
        window: bool,
        layout: AccumLayout,
    ) -> &Specialized {
        let flags = options.flags(window);
        let id = dtype.shader_id();
        let slot = flags as usize + 16 * layout.index();
        self.specialized[id as usize][slot].get_or_init(|| {
            let constants = [
                ("DTYPE", id as f64),
                ("FLAGS", flags as f64),
                layout.constant(),
            ];
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
    /// The pool pipeline of `kernel`, compiled on first use.
    pub(super) fn pool(
        &self,
        device: &wgpu::Device,
        shader: &Kernel,
        kernel: PoolKernel,
    ) -> &wgpu::ComputePipeline {
        self.pool[kernel.slot()].get_or_init(|| {
            let (entry, fixed) = kernel.entry();
            let [dtype, flags, layout] = self.constants;
            let constants = [dtype, flags, layout, ("FIXED_WORDS", f64::from(fixed))];
            shader.specialized(device, entry, &constants)
        })
    }
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
}
