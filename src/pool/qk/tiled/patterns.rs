//! Pattern statistics from Q and K fused into a pooling run (`pool::pattern_qk`): after each
//! chunk is pooled, the statistics' key kernel takes its rows again with their lse. Apart from
//! the run, which pools the same way with or without them.

use crate::gpu::Gpu;
use crate::pool::pattern_qk::QkPatternParams;
use crate::pool::qk::KernelLayer;
use crate::pool::Ingest;

use super::cuts::{Batch, Member};
use super::one_pass::OnePass;

/// A run's pattern statistics from Q and K (`pool::pattern_qk`): the parameters of a chunk's
/// `pattern_qk` dispatches, one per member and piece at `stride` bytes, and their group 1.
pub(super) struct FusedPatterns {
    params: wgpu::Buffer,
    stride: usize,
    bind_group: wgpu::BindGroup,
    /// Rows of a piece.
    rows: usize,
}

impl FusedPatterns {
    pub(super) fn new(
        gpu: &Gpu,
        pass: &OnePass<'_>,
        ingest: &Ingest,
        rows: usize,
    ) -> FusedPatterns {
        let stride = std::mem::size_of::<QkPatternParams>()
            .next_multiple_of(gpu.limits.min_uniform_buffer_offset_alignment as usize);
        let entries = pass.cuts.batch * pass.cuts.chunk_rows.div_ceil(rows);
        let params = crate::gpu::buffer(
            &gpu.device,
            "attnviz.pattern_qk.params",
            (entries * stride) as u64,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        );
        let b = &pass.buffers;
        let qp = ingest.qk_pattern_pass(pass.cuts.d4, false, false);
        let bind_group = qp.bind_group(&gpu.device, &params, &b.q, &b.k, &b.row_lse, &b.key_bin);
        FusedPatterns {
            params,
            stride,
            bind_group,
            rows,
        }
    }

    /// The statistics of the chunk of `len` rows from `start` of each member of `batch`, whose
    /// cells are consecutive from `first` (the chunk pooled: its rows' lse are in `row_lse`),
    /// into `ingest`.
    pub(super) fn chunk(
        &self,
        pass: &OnePass<'_>,
        ingest: &mut Ingest,
        batch: &Batch,
        first: usize,
        start: usize,
        len: usize,
    ) {
        // (members' accumulator indices are consecutive from the first cell's)
        let accum0 = batch.members.iter().map(|m| m.accum).min().unwrap_or(0);
        let cell = |m: &Member| first + (m.accum - accum0) as usize;
        let (src, cuts) = (pass.src, &pass.cuts);
        let k = KernelLayer::of(src, batch.layer);
        let qp = ingest.qk_pattern_pass(cuts.d4, k.softcap != 0.0, src.ranged());
        let pieces = len.div_ceil(self.rows);
        let mut bytes = vec![0u8; batch.members.len() * pieces * self.stride];
        let mut calls = Vec::with_capacity(batch.members.len() * pieces);
        for (z, m) in batch.members.iter().enumerate() {
            for j in 0..pieces {
                let e = z * pieces + j;
                let row0 = start + j * self.rows;
                let p = QkPatternParams {
                    scale: k.scale,
                    softcap: k.softcap,
                    diagonal: pass.base.diagonal,
                    causal: u32::from(src.causal()),
                    window: k.window,
                    chunk: k.chunk,
                    // (after the keys' columns: `OnePass::upload_batch`)
                    ranges: src.all_keys() as u32,
                    _pad: [0; 3],
                    kbase: (u64::from(m.kv_slot) * cuts.head_k / 16) as u32,
                    lse_row0: (z * cuts.chunk_rows + j * self.rows) as u32,
                };
                bytes[e * self.stride..][..std::mem::size_of::<QkPatternParams>()]
                    .copy_from_slice(bytemuck::bytes_of(&p));
                let q = z as u64 * cuts.head_q + (row0 * cuts.d4 as usize * 16) as u64;
                let n = self.rows.min(start + len - row0);
                calls.push(([(e * self.stride) as u32, q as u32], (cell(m), row0, n)));
            }
        }
        pass.gpu.queue.write_buffer(&self.params, 0, &bytes);
        for (offsets, piece) in calls {
            ingest.pattern_qk(&qp, &self.bind_group, offsets, piece);
        }
    }
}
