//! One run of the one-pass path: its batches of heads, their Q and K uploaded, and each chunk
//! of rows recorded as its score, lse and fold (or prob_rows) dispatches. The one engine that
//! pooling, the fused statistics and the row reader each drive.

use std::num::NonZeroU64;
use std::sync::Arc;

use crate::error::Result;
use crate::gpu::{spread_order, Gpu};
use crate::pool::geometry::{bin_edges, bin_of, CellGeometry};
use crate::pool::qk::KernelLayer;
use crate::pool::{Ingest, PoolRun};
use crate::source::qk::{F32Rows, QkSource, Values};

use super::buffers::RunBuffers;
use super::cuts::{Batch, Cuts, Member, Output};
use super::pipelines::{Kernels, Pipes, Then, TiledPipelines};
use super::{Mode, Params, SEG_KEYS, TK, TQ};

const FLAG_CAUSAL: u32 = 1;

/// One pooling run of the one-pass path: what every batch shares.
pub(super) struct OnePass<'a> {
    pub(super) gpu: &'a Gpu,
    pub(super) src: &'a QkSource,
    geometry: CellGeometry,
    kernels: Arc<Kernels>,
    /// The run's values are logits (no softmax), and rows are normalized (--norm row).
    logits: bool,
    row_norm: bool,
    pub(super) cuts: Cuts,
    pub(super) buffers: RunBuffers,
    row_edges: Vec<u32>,
    /// The pooled columns' first keys (and the keys' end).
    col_edges: Vec<u32>,
    /// The parameters every dispatch starts from.
    pub(super) base: Params,
    /// Host staging for heads whose dimension is padded, reused.
    scratch: Vec<f32>,
    /// A head's Q or K as read and as f32, reused by every upload: two fresh buffers a head,
    /// each faulted in, cost a fresh process more than the copies themselves.
    head_f32: F32Rows,
    /// Bytes of the batch's Q uploaded and not yet copied into the row kernel's texture: the
    /// copy goes into the batch's first chunk's submission rather than one of its own (a
    /// whole model at short context made one a batch).
    q_pending: u64,
    /// The layer whose key ranges `key_bin` holds after the columns (a source with
    /// bidirectional spans, [`QkSource::key_ranges`]).
    ranges_of: Option<usize>,
}

impl<'a> OnePass<'a> {
    pub(super) fn new(
        gpu: &'a Gpu,
        pipes: &TiledPipelines,
        src: &'a QkSource,
        run: &PoolRun<'_>,
        output: Output,
        q_window: u64,
    ) -> Self {
        let geometry = run.geometry;
        let cuts = Cuts::new(gpu, src, run, output);
        let rows = src.rows().len();
        let row_edges = bin_edges(rows, geometry.pooled_h);
        // (first: the device initializes them while the host compiles the kernels)
        let buffers = RunBuffers::new(gpu, src, geometry, &cuts, &row_edges, q_window);
        OnePass {
            gpu,
            src,
            geometry,
            buffers,
            kernels: pipes.kernels(&gpu.device, &cuts),
            logits: src.values() == Values::Logits,
            row_norm: run.options.row_norm,
            row_edges,
            col_edges: bin_edges(src.all_keys(), geometry.pooled_w),
            base: Params {
                q_rows: rows as u32,
                keys: src.all_keys() as u32,
                flags: if src.causal() { FLAG_CAUSAL } else { 0 },
                diagonal: src.key_diagonal() as i32,
                pooled_w: geometry.pooled_w,
                px: geometry.pooled_pixels() as u32,
                inter_rows: cuts.chunk_rows as u32,
                splits: cuts.splits,
                split_cols: cuts.split_cols,
                part_stride: (cuts.batch * cuts.chunk_rows) as u32,
                // (for the scores and the lse; prob_rows takes `Cuts::split_len`)
                ..Default::default()
            },
            cuts,
            scratch: Vec::new(),
            head_f32: F32Rows::default(),
            q_pending: 0,
            ranges_of: None,
        }
    }

    /// A batch of query head (`layer`, `head`) alone, its accumulators in `accum`.
    pub(super) fn single(&self, layer: usize, head: usize, accum: wgpu::Buffer) -> Batch {
        Batch {
            layer,
            members: vec![Member {
                head,
                kv_slot: 0,
                accum: 0,
            }],
            kv_heads: vec![self.src.kv_head(head)],
            accum,
        }
    }

    /// The batch starting at cell `first`, and the cell after it.
    pub(super) fn next_batch(
        &self,
        cells: &[(usize, usize)],
        first: usize,
        ingest: &mut Ingest,
    ) -> (Batch, usize) {
        let layer = cells[first].0;
        let (accum, accum0) = ingest.resident_accum(first);
        let mut batch = Batch {
            layer,
            members: Vec::new(),
            kv_heads: Vec::new(),
            accum,
        };
        let mut end = first;
        while end < cells.len() && batch.members.len() < self.cuts.batch && cells[end].0 == layer {
            let (_, idx) = ingest.resident_accum(end);
            if idx != accum0 + (end - first) {
                break;
            }
            let kv = self.src.kv_head(cells[end].1);
            let slot = match batch.kv_heads.iter().position(|&h| h == kv) {
                Some(s) => s,
                None => {
                    batch.kv_heads.push(kv);
                    batch.kv_heads.len() - 1
                }
            };
            batch.members.push(Member {
                head: cells[end].1,
                kv_slot: slot as u32,
                accum: idx as u32,
            });
            end += 1;
        }
        batch.members.sort_by_key(|m| m.kv_slot);
        (batch, end)
    }

    /// Writes `values` (rows of the head dimension) at `offset` of `target`, each row padded
    /// to the shader's vec4 count.
    fn upload(&mut self, target: &wgpu::Buffer, offset: u64, values: &[f32]) {
        let d = self.src.dim();
        let padded_d = self.cuts.d4 as usize * 4;
        let data: &[f32] = if padded_d == d {
            values
        } else {
            self.scratch.clear();
            self.scratch.resize(values.len() / d * padded_d, 0.0);
            for (dst, v) in self
                .scratch
                .chunks_exact_mut(padded_d)
                .zip(values.chunks_exact(d))
            {
                dst[..d].copy_from_slice(v);
            }
            &self.scratch
        };
        self.gpu
            .queue
            .write_buffer(target, offset, bytemuck::cast_slice(data));
    }

    /// Uploads the batch's query heads, its key heads once each, and its head table; false,
    /// with nothing pooled, when a value is not finite (the one-pass fold has no NaN rows).
    pub(super) fn upload_batch(&mut self, batch: &Batch) -> Result<bool> {
        let _span = tracing::info_span!("qk.upload").entered();
        let (src, layer) = (self.src, batch.layer);
        let (q, k) = (self.buffers.q.clone(), self.buffers.k.clone());
        let mut buf = std::mem::take(&mut self.head_f32);
        for (z, m) in batch.members.iter().enumerate() {
            let values = src.queries_into(layer, m.head, src.rows(), &mut buf)?;
            if !values.iter().all(|v| v.is_finite()) {
                return Ok(false);
            }
            self.upload(&q, z as u64 * self.cuts.head_q, values);
        }
        // (the row kernel reads Q through its texture copy, made by the first chunk's
        // submission)
        self.q_pending = batch.members.len() as u64 * self.cuts.head_q;
        for (slot, &kv) in batch.kv_heads.iter().enumerate() {
            // Any query head of the group names its key head.
            let head = batch
                .members
                .iter()
                .find(|m| m.kv_slot as usize == slot)
                .map_or(0, |m| m.head);
            debug_assert_eq!(src.kv_head(head), kv);
            let values = src.keys_into(layer, head, &mut buf)?;
            if !values.iter().all(|v| v.is_finite()) {
                return Ok(false);
            }
            self.upload(&k, slot as u64 * self.cuts.head_k, values);
        }
        self.head_f32 = buf;
        if src.ranged() && self.ranges_of != Some(layer) {
            let table = src.key_ranges(layer);
            let at = (src.all_keys() * 4) as u64;
            self.gpu
                .queue
                .write_buffer(&self.buffers.key_bin, at, bytemuck::cast_slice(&table));
            self.ranges_of = Some(layer);
        }
        // Sink logits in base 2; -f32::MAX (none) adds exp2(-MAX) = 0 to the denominator.
        let params = src.layer(layer);
        let table: Vec<[u32; 4]> = batch
            .members
            .iter()
            .map(|m| {
                let sink = params
                    .sink(m.head)
                    .map_or(-f32::MAX, |s| s * std::f32::consts::LOG2_E);
                [m.kv_slot, m.accum, sink.to_bits(), 0]
            })
            .collect();
        self.gpu
            .queue
            .write_buffer(&self.buffers.heads, 0, bytemuck::cast_slice(&table));
        Ok(true)
    }

    pub(super) fn bind_group(&self, accum: &wgpu::Buffer) -> wgpu::BindGroup {
        let b = &self.buffers;
        self.kernels.kernel.bind_group(
            &self.gpu.device,
            &[
                wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &b.params,
                    offset: 0,
                    size: NonZeroU64::new(std::mem::size_of::<Params>() as u64),
                }),
                b.q.as_entire_binding(),
                b.k.as_entire_binding(),
                b.heads.as_entire_binding(),
                b.key_bin.as_entire_binding(),
                b.col_edges.as_entire_binding(),
                b.row_edges.as_entire_binding(),
                b.inter.as_entire_binding(),
                b.row_lse.as_entire_binding(),
                accum.as_entire_binding(),
                wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &b.k,
                    offset: 0,
                    size: NonZeroU64::new(self.window_bytes()),
                }),
                wgpu::BindingResource::TextureView(&b.q_tex.view),
                match &b.probs_tex {
                    Some(t) => wgpu::BindingResource::TextureView(&t.view),
                    None => b.probs.as_entire_binding(),
                },
            ],
        )
    }

    /// Bytes of the row kernel's window binding (one window of the tiled kernel's `head_k`
    /// when the tiled kernel computes the scores: the binding is then never read).
    fn window_bytes(&self) -> u64 {
        u64::from(self.cuts.window.max(16)) * 16 * u64::from(self.cuts.d4)
    }

    /// The pipelines of `layer`'s heads, compiled on first use.
    pub(super) fn pipes(&self, layer: usize) -> Arc<Pipes> {
        let k = KernelLayer::of(self.src, layer);
        self.kernels.pipes(
            &self.gpu.device,
            Mode {
                softcap: k.softcap > 0.0,
                logits: self.logits,
                // (stored probabilities are normalized by the pool pass that reads them)
                row_norm: self.row_norm && self.cuts.output == Output::Pooled,
                materialize: self.cuts.output != Output::Pooled,
                split: self.cuts.splits > 1,
                ranged: self.src.ranged(),
            },
        )
    }

    /// The scores, lse and fold (or probability) passes of rows `start..start + len` for every
    /// member, recorded into one encoder for the caller to submit (with the pool pass of the
    /// stored probabilities after them, where there are some): keys in segments of
    /// [`SEG_KEYS`] (short dispatches) or windows of the row kernel, only as far as the chunk's
    /// last row sees. Each dispatch reads its own parameters at a dynamic offset of one buffer
    /// written once: a submission per window cost the queue about a millisecond each on
    /// llvmpipe, with both workers idle.
    #[must_use = "the chunk's passes run only once the encoder is submitted"]
    pub(super) fn pool_chunk(
        &mut self,
        bind_group: &wgpu::BindGroup,
        batch: &Batch,
        start: usize,
        len: usize,
    ) -> wgpu::CommandEncoder {
        let (layer, members) = (batch.layer, batch.members.len() as u32);
        let (src, keys) = (self.src, self.src.all_keys());
        let k = KernelLayer::of(src, layer);
        let chunk = Params {
            rows: len as u32,
            row_start: start as u32,
            scale: k.scale,
            window: k.window,
            chunk: k.chunk,
            softcap: k.softcap,
            ..self.base
        };
        let pipes = self.pipes(layer);
        // The oldest key the chunk's first row sees (a sliding window), on the tile grid:
        // segments before it are skipped.
        let oldest = src.visible(layer, start).start;
        // Keys the chunk's last row sees, the most of any of its rows.
        let seen = src.visible(layer, start + len - 1).end;
        let groups = len.div_ceil(TQ) as u32;
        // (the row kernels take `rows` query rows per invocation)
        let row_groups = len.div_ceil(TQ * self.cuts.shape.rows as usize) as u32;
        let window = self.cuts.window as usize;
        let score_groups = if window > 0 { row_groups } else { groups };
        let chunk = Params {
            row_perm: spread_order(score_groups),
            ..chunk
        };
        // Each score dispatch: its parameters, the byte of K its window starts at, and the
        // heads it takes.
        let mut steps: Vec<(Params, u32, u32)> = Vec::new();
        // (split keys: one dispatch, the splits up to the last row's keys; the workgroups of
        // splits before a sliding window find nothing to do)
        let split_groups = if self.cuts.splits > 1 {
            seen.checked_sub(1).map_or(0, |last| {
                bin_of(&self.col_edges, last as u32) / self.cuts.split_cols + 1
            })
        } else {
            1
        };
        if self.cuts.splits > 1 {
            // (every head of the batch: each workgroup finds its key head in `k`)
            let p = Params {
                seg_start: 0,
                seg_end: keys as u32,
                ..chunk
            };
            steps.push((p, 0, members));
        } else if let Some(first) = oldest.checked_div(window) {
            let key_bytes = 16 * u64::from(self.cuts.d4);
            for ws in (first * window..seen).step_by(window) {
                for (slot, member0, count) in batch.groups() {
                    let p = Params {
                        seg_start: ws as u32,
                        seg_end: (ws + window).min(keys) as u32,
                        member0,
                        ..chunk
                    };
                    let offset = u64::from(slot) * self.cuts.head_k + ws as u64 * key_bytes;
                    steps.push((p, offset as u32, count));
                }
            }
        } else {
            for seg in (oldest / TK * TK..seen).step_by(SEG_KEYS) {
                let p = Params {
                    seg_start: seg as u32,
                    seg_end: (seg + SEG_KEYS).min(keys) as u32,
                    ..chunk
                };
                steps.push((p, 0, members));
            }
        }
        let y0 = bin_of(&self.row_edges, start as u32);
        let y1 = bin_of(&self.row_edges, (start + len - 1) as u32);
        let last = Params {
            y_start: y0,
            ..chunk
        };
        // prob_rows' splits in a stored run: whole texels each (`Cuts::split_len`).
        let probs = Params {
            split_len: self.cuts.split_len,
            ..steps.first().map_or(chunk, |s| s.0)
        };
        // Every dispatch's parameters, one per `params_stride` bytes, the lse and fold's next
        // to last, prob_rows' with split keys last.
        let stride = self.buffers.params_stride as usize;
        let mut bytes = vec![0u8; (steps.len() + 2) * stride];
        for (i, p) in steps
            .iter()
            .map(|s| &s.0)
            .chain([&last, &probs])
            .enumerate()
        {
            bytes[i * stride..][..std::mem::size_of::<Params>()]
                .copy_from_slice(bytemuck::bytes_of(p));
        }
        let gpu = self.gpu;
        gpu.queue.write_buffer(&self.buffers.params, 0, &bytes);
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        if self.q_pending > 0 {
            let q = &self.buffers.q;
            self.buffers
                .q_tex
                .copy_from(&mut encoder, q, 0, self.q_pending);
            self.q_pending = 0;
        }
        {
            let mut pass = gpu.compute_pass(&mut encoder, "attnviz.qk.scores");
            pass.set_pipeline(&pipes.scores);
            for (i, (_, offset, count)) in steps.iter().enumerate() {
                pass.set_bind_group(0, bind_group, &[(i * stride) as u32, *offset]);
                pass.dispatch_workgroups(score_groups, split_groups, *count);
            }
        }
        let offsets = [(steps.len() * stride) as u32, 0];
        if !self.logits {
            // (logits need no softmax denominator; the row kernel kept each row's running
            // sum, the tiled one left it in the columns' states)
            let mut pass = gpu.compute_pass(&mut encoder, "attnviz.qk.lse");
            pass.set_bind_group(0, bind_group, &offsets);
            pass.set_pipeline(&pipes.lse);
            pass.dispatch_workgroups(groups, 1, members);
        }
        let b = &self.buffers;
        let fold = match &pipes.then {
            Then::Fold(fold) => fold,
            Then::Probs(probs) => {
                // Every probability instead of the fold: the same windows, the same parameters.
                // Keys a workgroup's rows do not see are not written: past the diagonal they are
                // masked by every pass that reads the chunk (stale values included), but keys
                // outside a sliding window or before a chunk (`HiddenKeys`) must read 0 (the
                // statistics count them as entries), and so must every masked entry read as it
                // is.
                // (a chunk texture is only written where no layer has a window, see
                // `stores_in_texture`)
                if src.hidden(layer).any() || src.ranged() || self.cuts.output == Output::Exact {
                    // (the chunk's rows only, of each head of the batch: a reader's blocks are
                    // often far smaller than the buffer)
                    let rows = (members as usize - 1) * self.cuts.chunk_rows + len;
                    let bytes = (rows * keys * 4) as u64;
                    encoder.clear_buffer(&b.probs, 0, Some(bytes));
                }
                let mut pass = gpu.compute_pass(&mut encoder, "attnviz.qk.probs");
                pass.set_pipeline(probs);
                if self.cuts.split_len > 0 {
                    // (the splits up to the chunk's last row's keys)
                    let at = ((steps.len() + 1) * stride) as u32;
                    pass.set_bind_group(0, bind_group, &[at, 0]);
                    let y = seen.div_ceil(self.cuts.split_len as usize) as u32;
                    pass.dispatch_workgroups(row_groups, y, members);
                } else {
                    for (i, (_, offset, count)) in steps.iter().enumerate() {
                        pass.set_bind_group(0, bind_group, &[(i * stride) as u32, *offset]);
                        pass.dispatch_workgroups(row_groups, split_groups, *count);
                    }
                }
                drop(pass);
                return encoder;
            }
        };
        // (the fold reads the states and row lse where they are, shaders/qk_pool.wgsl says why)
        {
            let mut pass = gpu.compute_pass(&mut encoder, "attnviz.qk.fold");
            pass.set_bind_group(0, bind_group, &offsets);
            pass.set_pipeline(fold);
            pass.dispatch_workgroups(self.geometry.pooled_w.div_ceil(64), y1 - y0 + 1, members);
        }
        encoder
    }
}
