//! The pool pass's dispatches: piece parameters, bind groups, the row-maxima and pool passes,
//! rows already resident on the GPU, and the fold of masked zeros.

use bytemuck::Zeroable;

use crate::error::{Error, Result};
use crate::gpu::{dispatch_1d, Gpu};
use crate::pool::accum::AccumLayout;
use crate::pool::chunk::ChunkTexture;
use crate::pool::geometry::bin_of;
use crate::pool::groups::CellGroup;
use crate::pool::ingest::{Ingest, PassBuffers, Piece};
use crate::pool::options::{Causal, PoolOptions};
use crate::pool::pattern_gpu::{rows_on_words, PoolWithProfiles};
use crate::pool::pipelines::{PieceParams, PoolPipelines};
use crate::pool::pool_kernel::PoolKernel;
use crate::source::DType;

/// Where rows already on the GPU are ([`Ingest::pool_resident`], [`Ingest::pool_in_texture`]).
#[derive(Clone, Copy)]
enum Resident<'a> {
    /// In a buffer from this byte on: each piece is copied into the ingest's chunk texture.
    Buffer(&'a wgpu::Buffer, u64),
    /// In a chunk texture from its first word on, a row every so many elements, read where
    /// it is.
    Texture(&'a wgpu::TextureView, usize),
}

/// Rows of one cell a producer left in a buffer: [`Ingest::pool_resident_members`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct ResidentRows {
    pub(crate) cell: usize,
    pub(crate) row_start: usize,
    pub(crate) rows: usize,
    /// Where the first row starts in the buffer, in bytes (a multiple of 4).
    pub(crate) offset: u64,
}

/// Whether `data` can hand the pool pass `bytes` of rows from byte `offset` (a copy source,
/// whole 16-byte words, the rows inside it).
fn check_resident(data: &wgpu::Buffer, offset: u64, bytes: u64) -> Result<()> {
    let size = data.size();
    let fault = if !data.usage().contains(wgpu::BufferUsages::COPY_SRC) {
        Some("does not allow COPY_SRC".to_string())
    } else if !size.is_multiple_of(16) {
        Some(format!("is {size} bytes: needs a multiple of 16"))
    } else if !offset.is_multiple_of(4) || offset + bytes > size {
        Some(format!(
            "does not hold {bytes} bytes of rows at byte offset {offset} (a multiple of 4)"
        ))
    } else {
        None
    };
    match fault {
        Some(fault) => Err(Error::BadOption(format!(
            "resident rows: the buffer {fault}"
        ))),
        None => Ok(()),
    }
}

/// The bind group of the pool pass's buffers for group `g` as the profile kernel that pools
/// reads them (`PatternPipelines::pooling_kernel`'s layout): no chunk, no parameters (the
/// pattern's bind group has both).
pub(super) fn pooling_bind_group(
    gpu: &Gpu,
    pipes: &PoolPipelines,
    buffers: &PassBuffers,
    g: &CellGroup,
) -> wgpu::BindGroup {
    pipes.pattern.pooling_kernel(&gpu.device).bind_group(
        &gpu.device,
        &[
            buffers.row_edges.as_entire_binding(),
            g.accum.as_entire_binding(),
            buffers.row_max.as_entire_binding(),
            g.flags.as_entire_binding(),
            g.zeros.as_entire_binding(),
        ],
    )
}

/// The pool pass's bind group: rows read from the chunk texture `chunk` into group `g`'s
/// accumulators, with the ingest's parameters, bin edges and row maxima.
pub(super) fn pool_bind_group(
    gpu: &Gpu,
    pipes: &PoolPipelines,
    buffers: &PassBuffers,
    chunk: &wgpu::TextureView,
    g: &CellGroup,
) -> wgpu::BindGroup {
    pipes.kernel.bind_group(
        &gpu.device,
        &[
            buffers.params.as_entire_binding(),
            wgpu::BindingResource::TextureView(chunk),
            buffers.row_edges.as_entire_binding(),
            buffers.col_edges.as_entire_binding(),
            g.accum.as_entire_binding(),
            buffers.row_max.as_entire_binding(),
            g.flags.as_entire_binding(),
            g.zeros.as_entire_binding(),
            buffers.key_ranges.as_entire_binding(),
        ],
    )
}

impl Ingest<'_> {
    /// The pool pass's bind group reading the chunk texture into group `g`'s accumulators.
    pub(super) fn bind_group(&self, g: usize) -> wgpu::BindGroup {
        pool_bind_group(
            self.gpu,
            self.pipes,
            &self.buffers,
            &self.chunk.view,
            &self.groups[g],
        )
    }

    /// Uploads the parameters of `pieces`, piece j at index j of the parameter array, their
    /// pattern statistics walked in the pattern pass's slices.
    pub(super) fn write_params(&mut self, pieces: &[Piece]) {
        let slice_rows = self.pattern.as_ref().map_or(0, |p| p.slice_rows);
        self.write_pieces(pieces, slice_rows);
    }

    /// [`Ingest::write_params`] with the pattern statistics' slices of `slice_rows` rows (0:
    /// whole pieces, as `pattern_qk` walks them).
    pub(super) fn write_pieces(&mut self, pieces: &[Piece], slice_rows: u32) {
        let px = self.geometry.pooled_pixels();
        let mut row_max_base = 0;
        for (j, p) in pieces.iter().enumerate() {
            let hidden = self.hidden.get(p.cell).copied().unwrap_or_default();
            // (a cell with key ranges: its table's first entry, `KEY_RANGES` in
            // shaders/pool_fold.wgsl)
            let (window, chunk) = match self.range_base.get(p.cell).copied().flatten() {
                Some(base) => (u32::MAX, base),
                None => hidden.kernel_params(),
            };
            self.params[j] = PieceParams {
                elem_offset: (p.offset / self.dtype.size()) as u32,
                row_start: p.row_start as u32,
                row_count: p.rows as u32,
                keys: self.keys as u32,
                accum_base: ((p.cell % self.per_group) * px) as u32,
                pooled_w: self.geometry.pooled_w,
                y_start: bin_of(&self.row_edges, p.row_start as u32),
                row_max_base,
                window,
                chunk,
                key_position: self.key_position,
                causal_offset: self.diagonal() as i32,
                cell: (p.cell % self.per_group) as u32,
                y_end: bin_of(&self.row_edges, (p.row_start + p.rows - 1) as u32) + 1,
                stride: p.stride as u32,
                slice_rows,
            };
            row_max_base += p.rows as u32;
        }
        self.gpu.queue.write_buffer(
            &self.buffers.params,
            0,
            bytemuck::cast_slice(&self.params[..pieces.len()]),
        );
    }

    /// Records the row-maxima and pool dispatches of `pieces` (parameters already written),
    /// reading rows through `bind_group`. All pieces go in one dispatch, piece j as workgroup
    /// z = j: they belong to different cells of one accumulator group (`push_with` keeps it
    /// so), so they never share an accumulator, and one large dispatch keeps a big GPU busy
    /// where a piece alone would not.
    pub(super) fn record(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        pieces: &[Piece],
        bind_group: &wgpu::BindGroup,
        pattern: Option<&wgpu::BindGroup>,
    ) {
        debug_assert!(pieces
            .windows(2)
            .all(|w| w[0].cell / self.per_group == w[1].cell / self.per_group));
        let mut pass = self.gpu.compute_pass(encoder, "attnviz.pool.pass");
        if self.statistics_only {
            if let (Some(stats), Some(bg)) = (&self.pattern, pattern) {
                stats.record(self.gpu, &self.pipes.pattern, &mut pass, pieces, bg);
            }
            return;
        }
        let options = self.dispatch_options();
        if options.causal == Causal::Auto {
            self.auto_dispatched.set(true);
        }
        let pipes = self.pipes.specialized(
            &self.gpu.device,
            self.dtype,
            options,
            self.masks_keys(),
            self.layout,
        );
        let n = pieces.len() as u32;
        pass.set_bind_group(0, bind_group, &[]);
        if let Some((narrow, wide)) = &pipes.row_maxima {
            let rows = pieces.iter().map(|p| p.rows).max().unwrap_or(0) as u32;
            if self.wide_rows {
                pass.set_pipeline(wide);
                pass.dispatch_workgroups(rows, 1, n);
            } else {
                pass.set_pipeline(narrow);
                pass.dispatch_workgroups(rows.div_ceil(64), 1, n);
            }
        }
        let bins = pieces
            .iter()
            .map(|p| {
                let y0 = bin_of(&self.row_edges, p.row_start as u32);
                let y1 = bin_of(&self.row_edges, (p.row_start + p.rows - 1) as u32);
                y1 - y0 + 1
            })
            .max()
            .unwrap_or(0);
        let on_words = pieces
            .iter()
            .all(|p| rows_on_words(p.stride, self.dtype, p.offset));
        let kernel = PoolKernel::choose(self.keys, self.geometry.pooled_w, self.dtype, on_words);
        // Where the profile kernel reads exactly the words the pool pass would, it pools them.
        if let (Some(stats), Some(bg), Some(pool)) =
            (&self.pattern, pattern, self.pool_with_profiles(kernel))
        {
            let g = pieces[0].cell / self.per_group;
            let pooling = &self.pooling_bind_groups[g];
            stats.record_pooling(
                self.gpu,
                &self.pipes.pattern,
                &mut pass,
                pieces,
                [bg, pooling],
                pool,
            );
            return;
        }
        pass.set_pipeline(pipes.pool(&self.gpu.device, &self.pipes.kernel, kernel));
        let invocations = self
            .geometry
            .pooled_w
            .div_ceil(kernel.pixels_per_invocation(self.dtype));
        pass.dispatch_workgroups(invocations.div_ceil(64), bins, n);
        // The pattern statistics read the same bound rows, right after the pool pass.
        if let (Some(stats), Some(bg)) = (&self.pattern, pattern) {
            stats.record(self.gpu, &self.pipes.pattern, &mut pass, pieces, bg);
        }
    }

    /// How the profile kernel pools this ingest's chunks, where the pool pass would take
    /// `kernel` and it can ([`PoolWithProfiles::choose`]; never with `Gpu::pool_with_profiles`
    /// off, with no statistics, or in slices).
    fn pool_with_profiles(&self, kernel: PoolKernel) -> Option<PoolWithProfiles> {
        // (its bind groups are made only where it may: `Ingest::with_layout`)
        if self.pooling_bind_groups.is_empty() {
            return None;
        }
        let flags = self.dispatch_options().flags(self.masks_keys());
        PoolWithProfiles::choose(self.keys, self.dtype, kernel, flags)
    }

    /// Pools `rows` rows of `cell` from `row_start` that are already on the GPU: `data` holds
    /// them in the ingest's dtype from byte `offset` (a multiple of 4) on, must allow
    /// `COPY_SRC` (each piece is copied on the device into the chunk texture the pool pass
    /// and the pattern statistics read), and its size must be a multiple of 16. Rows pushed
    /// before are pooled first, so each cell's rows still fold in order. This is the hook for
    /// producers that compute attention on the GPU: no host round trip.
    pub(crate) fn pool_resident(
        &mut self,
        cell: usize,
        row_start: usize,
        rows: usize,
        data: &wgpu::Buffer,
        offset: u64,
    ) -> Result<()> {
        self.resident(None, cell, row_start, rows, data, offset)
    }

    /// [`Ingest::pool_resident`] for rows of several cells in one buffer (a batch of heads side
    /// by side), each at its own byte offset, with the producer's commands that write them
    /// (`before`, not yet submitted) in the same submission, ahead of the copy and dispatch.
    /// Where the cells share an accumulator group, each cell's rows fit one piece and the span
    /// of them fits the chunk texture: one copy, one dispatch and one submission for all of
    /// them (a whole model's short heads took one each, 1,024 for a 32 × 32 model); otherwise
    /// one cell after another.
    pub(crate) fn pool_resident_members(
        &mut self,
        before: wgpu::CommandEncoder,
        members: &[ResidentRows],
        data: &wgpu::Buffer,
    ) -> Result<()> {
        for m in members {
            self.check_rows(m.cell, m.row_start, m.rows)?;
            check_resident(data, m.offset, (m.rows * self.row_bytes) as u64)?;
        }
        let Some(first) = members.first() else {
            self.gpu.submit([before.finish()]);
            return Ok(());
        };
        let word = members.iter().map(|m| m.offset).min().unwrap_or(0) / 16 * 16;
        let end = members
            .iter()
            .map(|m| m.offset + (m.rows * self.row_bytes) as u64)
            .max()
            .unwrap_or(0)
            .next_multiple_of(16);
        let g = first.cell / self.per_group;
        // (the row maxima of `--norm row` hold a chunk's rows)
        let rows: usize = members.iter().map(|m| m.rows).sum();
        let together = members.len() <= super::MAX_PIECES
            && members.iter().all(|m| m.cell / self.per_group == g)
            && members.iter().all(|m| m.rows <= self.max_rows_per_fill())
            && rows <= self.chunk_bytes / self.row_bytes
            && end - word <= self.chunk.capacity();
        if !together {
            // (one cell after another, `before` with the first; every member checked above)
            let mut before = Some(before);
            for m in members {
                let from = Resident::Buffer(data, m.offset);
                self.pool_pieces(m.cell, m.row_start, m.rows, from, before.take())?;
            }
            return Ok(());
        }
        self.flush()?;
        self.pushed = true;
        self.prepare_zeros();
        let mut encoder = before;
        self.chunk.copy_from(&mut encoder, data, word, end - word);
        let pieces: Vec<Piece> = members
            .iter()
            .map(|m| Piece {
                cell: m.cell,
                row_start: m.row_start,
                rows: m.rows,
                offset: (m.offset - word) as usize,
                stride: self.keys,
            })
            .collect();
        let (bind_group, pattern) = (self.bind_group(g), self.pattern_bind_groups.get(g).cloned());
        self.write_params(&pieces);
        self.record(&mut encoder, &pieces, &bind_group, pattern.as_ref());
        self.gpu.submit([encoder.finish()]);
        self.consumed += (rows * self.row_bytes) as u64;
        Ok(())
    }

    fn resident(
        &mut self,
        before: Option<wgpu::CommandEncoder>,
        cell: usize,
        row_start: usize,
        rows: usize,
        data: &wgpu::Buffer,
        offset: u64,
    ) -> Result<()> {
        self.check_rows(cell, row_start, rows)?;
        check_resident(data, offset, (rows * self.row_bytes) as u64)?;
        self.pool_pieces(
            cell,
            row_start,
            rows,
            Resident::Buffer(data, offset),
            before,
        )
    }

    /// Pools `rows` rows of `cell` from `row_start` that a producer on the GPU wrote into
    /// `texture` from its first word on, in the ingest's dtype, row after row, a row every
    /// `stride` elements (at least the keys; the elements past them are not read): see
    /// `pool::chunk`. The pool pass and the pattern statistics read them where they are, with
    /// no copy. Rows pushed before are pooled first. `before`, the producer's commands that
    /// write them (not yet submitted), go in the first piece's submission, as in
    /// [`Ingest::pool_resident_members`].
    pub(crate) fn pool_in_texture(
        &mut self,
        before: wgpu::CommandEncoder,
        cell: usize,
        row_start: usize,
        rows: usize,
        texture: &ChunkTexture,
        stride: usize,
    ) -> Result<()> {
        self.check_rows(cell, row_start, rows)?;
        let bytes = (rows * stride * self.dtype.size()) as u64;
        let fault = if stride < self.keys {
            Some(format!(
                "a row every {stride} elements is shorter than the {} keys",
                self.keys
            ))
        } else if bytes > texture.capacity() {
            Some(format!(
                "a {}-byte texture does not hold {bytes} bytes of rows",
                texture.capacity()
            ))
        } else {
            None
        };
        if let Some(fault) = fault {
            return Err(Error::BadOption(format!("resident rows: {fault}")));
        }
        self.pool_pieces(
            cell,
            row_start,
            rows,
            Resident::Texture(&texture.view, stride),
            Some(before),
        )
    }

    /// The dispatches of `rows` rows of `cell` from `row_start` where `from` holds them, once
    /// the rows pushed before are pooled: pieces of at most a chunk's rows (the row maxima
    /// buffer holds that many), one per submission (pieces of one cell must not share a
    /// dispatch), the first recorded after `before` where there is one.
    fn pool_pieces(
        &mut self,
        cell: usize,
        row_start: usize,
        rows: usize,
        from: Resident<'_>,
        mut before: Option<wgpu::CommandEncoder>,
    ) -> Result<()> {
        self.flush()?;
        self.pushed = true;
        self.prepare_zeros();
        let g = cell / self.per_group;
        let (bind_group, pattern) = match from {
            Resident::Buffer(..) => (self.bind_group(g), self.pattern_bind_groups.get(g).cloned()),
            Resident::Texture(view, _) => (
                pool_bind_group(self.gpu, self.pipes, &self.buffers, view, &self.groups[g]),
                self.pattern.as_ref().map(|p| {
                    p.bind_group(self.gpu, &self.pipes.pattern, &self.buffers.params, view, g)
                }),
            ),
        };
        let step = self.max_rows_per_fill();
        // (elements from one row's start to the next's where the rows are)
        let stride = match from {
            Resident::Buffer(..) => self.keys,
            Resident::Texture(_, stride) => stride,
        };
        let mut done = 0;
        while done < rows {
            let n = step.min(rows - done);
            let start = (done * stride * self.dtype.size()) as u64;
            let mut encoder = before.take().unwrap_or_else(|| {
                self.gpu
                    .device
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                        label: Some("attnviz.pool.resident"),
                    })
            });
            // (where the piece's first byte lands in the texture the pool pass reads)
            let offset = match from {
                Resident::Buffer(data, offset) => {
                    // Copies start at the 16-byte word holding the piece's first byte.
                    let start = offset + start;
                    let word = start / 16 * 16;
                    let len = (start + (n * self.row_bytes) as u64).next_multiple_of(16) - word;
                    self.chunk.copy_from(&mut encoder, data, word, len);
                    start - word
                }
                Resident::Texture(..) => start,
            };
            let piece = Piece {
                cell,
                row_start: row_start + done,
                rows: n,
                offset: offset as usize,
                stride,
            };
            done += n;
            self.write_params(&[piece]);
            self.record(&mut encoder, &[piece], &bind_group, pattern.as_ref());
            self.gpu.submit([encoder.finish()]);
        }
        if let Some(encoder) = before {
            // (no rows to pool: the producer's commands alone)
            self.gpu.submit([encoder.finish()]);
        }
        self.consumed += (rows * self.row_bytes) as u64;
        Ok(())
    }

    /// Before the first dispatch that sets zeros aside (`Causal::Auto`, not yet settled by
    /// the host): every group's zeros, cleared in a submission of their own (ahead of the
    /// dispatch's), and the pool pass's bind groups remade to bind them.
    pub(super) fn prepare_zeros(&mut self) {
        if self.zeros_ready
            || self.statistics_only
            || self.dispatch_options().causal != Causal::Auto
        {
            return;
        }
        let px = self.geometry.pooled_pixels();
        let gpu = self.gpu;
        let mut encoder = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("attnviz.pool.zeros"),
            });
        for g in &mut self.groups {
            g.set_aside_zeros(gpu, &mut encoder, (g.cells * px * 4) as u64);
        }
        gpu.submit([encoder.finish()]);
        self.bind_groups = (0..self.groups.len()).map(|g| self.bind_group(g)).collect();
        self.zeros_ready = true;
    }

    /// Puts the zeros set aside above the diagonal back into every accumulator.
    pub(super) fn fold_masked_zeros(&mut self) -> Result<()> {
        let px = self.geometry.pooled_pixels();
        let gpu = self.gpu;
        for (gi, g) in self.groups.iter().enumerate() {
            let total = (g.cells * px) as u32;
            let params = PieceParams {
                row_count: total,
                ..Zeroable::zeroed()
            };
            gpu.queue
                .write_buffer(&self.buffers.params, 0, bytemuck::bytes_of(&params));
            let mut encoder = gpu
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("attnviz.pool.fold_encoder"),
                });
            {
                let mut pass = gpu.compute_pass(&mut encoder, "attnviz.pool.fold_pass");
                pass.set_pipeline(self.pipes.fold.get(
                    &self.pipes.kernel,
                    &gpu.device,
                    self.layout,
                ));
                pass.set_bind_group(0, &self.bind_groups[gi], &[]);
                let (x, y) =
                    dispatch_1d(total, 256, gpu.limits.max_compute_workgroups_per_dimension);
                pass.dispatch_workgroups(x, y, 1);
            }
            gpu.submit([encoder.finish()]);
        }
        Ok(())
    }
}

impl<'g> Ingest<'g> {
    /// What compiles the pipelines the first dispatch of rows with a stride of `stride`
    /// elements will use (the pool pass's, and the pattern statistics' where the ingest has
    /// them), for a caller to run on another thread while it compiles its own kernels (a
    /// driver compiles on the calling thread). Nothing changes if a later dispatch needs
    /// another variant: that one is compiled when it is recorded.
    pub(crate) fn pipeline_warmer(&self, stride: usize) -> PipelineWarmer<'g> {
        PipelineWarmer {
            gpu: self.gpu,
            pipes: self.pipes,
            dtype: self.dtype,
            options: self.options,
            window: self.masks_keys(),
            layout: self.layout,
            pattern: self.pattern.is_some(),
            pool: !self.statistics_only,
            // (a dispatch's first piece starts on a word)
            aligned: rows_on_words(stride, self.dtype, 0),
            keys: self.keys,
            pooled_w: self.geometry.pooled_w,
        }
    }
}

/// An ingest's pipelines to compile ahead of its first dispatch ([`Ingest::pipeline_warmer`]).
pub(crate) struct PipelineWarmer<'a> {
    gpu: &'a Gpu,
    pipes: &'a PoolPipelines,
    dtype: DType,
    options: PoolOptions,
    window: bool,
    layout: AccumLayout,
    pattern: bool,
    /// The pool pass runs (not for an ingest of the statistics alone).
    pool: bool,
    aligned: bool,
    keys: usize,
    pooled_w: u32,
}

impl PipelineWarmer<'_> {
    /// Compiles them: each at most once per engine (the pipelines are `OnceLock`s, so a
    /// dispatch that needs one meanwhile waits for it rather than compiling it again).
    pub(crate) fn compile(&self) {
        let device = &self.gpu.device;
        if self.pool {
            let kernel = PoolKernel::choose(self.keys, self.pooled_w, self.dtype, self.aligned);
            self.pipes
                .specialized(device, self.dtype, self.options, self.window, self.layout)
                .pool(device, &self.pipes.kernel, kernel);
        }
        if self.pattern {
            self.pipes.pattern.warm(device, self.dtype, self.aligned);
        }
    }
}
