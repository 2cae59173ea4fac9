//! The device buffers of one run of the one-pass path, sized from its cuts, made once for all
//! its batches and zero-filled at once, so that the device fills them while the host compiles
//! the kernels.

use crate::gpu::{storage_buffer_init, Gpu};
use crate::pool::chunk::ChunkTexture;
use crate::pool::geometry::{bin_edges, bin_of, CellGeometry};
use crate::source::qk::QkSource;

use super::cuts::{Cuts, Output};
use super::{Params, SEG_KEYS};

/// The buffers of one pooling run, made once and reused by every batch.
pub(super) struct RunBuffers {
    /// The parameters of every dispatch of a chunk, one per `params_stride` bytes.
    pub(super) params: wgpu::Buffer,
    pub(super) params_stride: u64,
    pub(super) q: wgpu::Buffer,
    pub(super) k: wgpu::Buffer,
    /// Per member: (key head slot, accumulator index).
    pub(super) heads: wgpu::Buffer,
    pub(super) key_bin: wgpu::Buffer,
    pub(super) col_edges: wgpu::Buffer,
    pub(super) row_edges: wgpu::Buffer,
    /// Per (row, pooled column) of a chunk: max and min score, Σ exp2(s − max), count.
    pub(super) inter: wgpu::Buffer,
    pub(super) row_lse: wgpu::Buffer,
    /// The copy of `q` the row kernel reads.
    pub(super) q_tex: ChunkTexture,
    /// A chunk's probabilities, rows of every key (a [`Cuts::output`] that stores them, not
    /// into `probs_tex`; else a stub).
    pub(super) probs: wgpu::Buffer,
    /// The same, as the chunk texture the ingest's pool pass reads ([`Cuts::probs_texture`]).
    pub(super) probs_tex: Option<ChunkTexture>,
}

impl RunBuffers {
    /// `q_window`: bytes of Q the statistics' key kernel reads at once, where the run has it
    /// (`pool::pattern_qk`): `q` is then also a uniform buffer, with that much room past its
    /// last head for a window at its end.
    pub(super) fn new(
        gpu: &Gpu,
        src: &QkSource,
        geometry: CellGeometry,
        cuts: &Cuts,
        row_edges: &[u32],
        q_window: u64,
    ) -> Self {
        let device = &gpu.device;
        let keys = src.all_keys();
        let (batch, rows) = (cuts.batch as u64, cuts.chunk_rows as u64);
        let buffer = |label: &str, size: u64| {
            crate::gpu::buffer(
                device,
                label,
                size.max(16).next_multiple_of(16),
                wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_DST
                    | wgpu::BufferUsages::COPY_SRC,
            )
        };
        let init = |label: &str, data: &[u32]| {
            storage_buffer_init(
                device,
                label,
                bytemuck::cast_slice(data),
                wgpu::BufferUsages::empty(),
            )
        };
        // The most dispatches a chunk records: a window (or segment) per key head of the batch
        // over every key, the lse and fold passes, and prob_rows over split keys.
        let per_step = if cuts.window > 0 {
            cuts.window as usize
        } else {
            SEG_KEYS
        };
        let steps = ((keys.div_ceil(per_step) + 2) * cuts.batch + 2) as u64;
        let params_stride = (std::mem::size_of::<Params>() as u64)
            .next_multiple_of(u64::from(gpu.limits.min_uniform_buffer_offset_alignment));
        let inter_bytes = (batch * rows * geometry.pooled_w as u64 * 16).max(16);
        // (with split keys, each split's row states after the rows' lse)
        let parts = if cuts.splits > 1 {
            1 + u64::from(cuts.splits)
        } else {
            1
        };
        let lse_bytes = (batch * rows * 8 * parts).next_multiple_of(16);
        let col_edges = bin_edges(keys, geometry.pooled_w);
        let mut key_bin: Vec<u32> = (0..keys as u32).map(|k| bin_of(&col_edges, k)).collect();
        if src.ranged() {
            // (room for a layer's key ranges after the columns: `OnePass::upload_batch`)
            key_bin.resize(3 * keys, 0);
        }
        let in_buffer = cuts.output != Output::Pooled && !cuts.probs_texture;
        let stride = cuts.prob_stride(keys);
        let prob_bytes = (batch * rows * stride as u64 * 4).next_multiple_of(16);
        let buffers = RunBuffers {
            params: crate::gpu::buffer(
                device,
                "attnviz.qk_pool.params",
                params_stride * steps,
                wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            ),
            params_stride,
            q: crate::gpu::buffer(
                device,
                "attnviz.qk_pool.q",
                (batch * cuts.head_q + q_window).next_multiple_of(16),
                wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_DST
                    | wgpu::BufferUsages::COPY_SRC
                    | if q_window > 0 {
                        wgpu::BufferUsages::UNIFORM
                    } else {
                        wgpu::BufferUsages::empty()
                    },
            ),
            // read whole by the tiled kernel, a window at a time by the row kernel
            k: crate::gpu::buffer(
                device,
                "attnviz.qk_pool.k",
                batch * cuts.head_k,
                wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::UNIFORM
                    | wgpu::BufferUsages::COPY_DST,
            ),
            heads: buffer("attnviz.qk_pool.heads", batch * 16),
            key_bin: storage_buffer_init(
                device,
                "attnviz.qk_pool.key_bin",
                bytemuck::cast_slice(&key_bin),
                wgpu::BufferUsages::COPY_DST,
            ),
            col_edges: init("attnviz.qk_pool.col_edges", &col_edges),
            row_edges: init("attnviz.qk_pool.row_edges", row_edges),
            inter: buffer("attnviz.qk_pool.inter", inter_bytes),
            row_lse: buffer("attnviz.qk_pool.row_lse", lse_bytes),
            q_tex: ChunkTexture::new(gpu, batch * cuts.head_q),
            probs: crate::gpu::buffer(
                device,
                "attnviz.qk_pool.probs",
                if in_buffer { prob_bytes } else { 16 },
                // cleared before a chunk with a sliding window (or read as it is), read through
                // the pool pass's chunk texture or copied out
                wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_DST
                    | wgpu::BufferUsages::COPY_SRC,
            ),
            probs_tex: cuts
                .probs_texture
                .then(|| ChunkTexture::new(gpu, prob_bytes)),
        };
        buffers.initialize(gpu);
        buffers
    }

    /// Submits the zero-fill that wgpu would otherwise do in the first chunk's submission
    /// (storage it cannot prove written before read, textures before their first partial
    /// copy) now, before the pipelines are compiled: the device fills (and, on a CPU adapter,
    /// first touches: 64 MiB of states) while the host compiles.
    fn initialize(&self, gpu: &Gpu) {
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        encoder.clear_buffer(&self.inter, 0, None);
        encoder.clear_buffer(&self.row_lse, 0, None);
        for t in std::iter::once(&self.q_tex).chain(&self.probs_tex) {
            t.prime(&mut encoder, &self.inter);
        }
        gpu.submit([encoder.finish()]);
    }
}
