//! The ingest: rows of any number of cells streamed through the upload slots into pooled
//! accumulators, one chunk at a time.

use bytemuck::Zeroable;

use crate::error::{Error, Result};
use crate::gpu::{buffer, storage_buffer_init, Gpu};
use crate::pool::accum::{AccumLayout, HeadStats};
use crate::pool::chunk::{max_chunk_bytes, ChunkTexture};
use crate::pool::dispatch::{pool_bind_group, pooling_bind_group};
use crate::pool::geometry::{bin_edges, CellGeometry};
use crate::pool::groups::{has_upper_triangle, CellGroup, PooledCells};
use crate::pool::options::{Causal, PoolOptions};
use crate::pool::pattern::PatternOptions;
use crate::pool::pattern_gpu::{head_bytes, PatternPass, PATTERN_ROWS};
use crate::pool::pipelines::{PieceParams, PoolPipelines};
use crate::pool::slots::{Filling, Slot, SLOT_USAGE};
use crate::pool::stats::head_stats;
use crate::pool::{LOOP_BUDGET, MAX_PIECES};
use crate::source::qk::HiddenKeys;
use crate::source::DType;

/// One head's rows inside an upload chunk.
#[derive(Clone, Copy, Debug)]
pub(super) struct Piece {
    pub(super) cell: usize,
    pub(super) row_start: usize,
    pub(super) rows: usize,
    /// Byte offset inside the chunk.
    pub(super) offset: usize,
    /// Elements from one row's start to the next's in the chunk: the keys, or more where a
    /// producer pads its rows ([`Ingest::pool_in_texture`]).
    pub(super) stride: usize,
}

/// What an ingest pools: `cells` heads of `queries` × `keys` entries of `dtype`, each into a
/// `geometry`-sized cell, uploaded in chunks of at most `chunk_target` bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct IngestShape {
    pub cells: usize,
    pub queries: usize,
    pub keys: usize,
    pub dtype: DType,
    pub geometry: CellGeometry,
    pub options: PoolOptions,
    pub chunk_target: u64,
}

/// Streams rows of any number of cells into pooled accumulators: rows are written into a mapped
/// upload chunk; a full chunk is unmapped, pooled by the GPU, and mapped again for reuse while
/// the other chunk fills. Callers push rows in any grouping; each cell's rows should arrive in
/// increasing order for the mean to be added in the documented order.
pub(crate) struct Ingest<'g> {
    pub(super) gpu: &'g Gpu,
    pub(super) pipes: &'g PoolPipelines,
    pub(super) geometry: CellGeometry,
    pub(super) queries: usize,
    pub(super) keys: usize,
    pub(super) dtype: DType,
    pub(super) options: PoolOptions,
    pub(super) row_bytes: usize,
    /// Rows of one cell per dispatch at most (see [`LOOP_BUDGET`]).
    pub(super) piece_rows: usize,
    /// Rows too long for one invocation's row maxima (see [`LOOP_BUDGET`]).
    pub(super) wide_rows: bool,
    pub(super) chunk_bytes: usize,
    pub(super) groups: Vec<CellGroup>,
    /// How `groups` hold their pixels.
    pub(super) layout: AccumLayout,
    pub(super) per_group: usize,
    pub(super) row_edges: Vec<u32>,
    /// Host upload slots, made on the first host push: producers that only pool resident
    /// rows never need them. Each chunk is copied from its slot into `chunk`, the texture the
    /// pool pass reads.
    pub(super) slots: Vec<Slot>,
    pub(super) slot_count: usize,
    pub(super) chunk: ChunkTexture,
    pub(super) params: Vec<PieceParams>,
    /// Per cell, the keys outside each row's sliding window (before it, and after it where
    /// the window is two-sided) or before its attention chunk, which are masked; empty where
    /// no cell hides any. Set by the Q/K paths for logits ([`Ingest::set_hidden`]), with the
    /// position of a row's first key (chunks' edges are positions).
    pub(super) hidden: Vec<HiddenKeys>,
    pub(super) key_position: u32,
    /// Per cell, where its layer's table of each position's keys starts in
    /// `PassBuffers::key_ranges` ([`Ingest::set_key_ranges`]: logits of a layer with
    /// bidirectional spans); empty where no cell has one.
    pub(super) range_base: Vec<Option<u32>>,
    /// The pool pass's bind group per accumulator group (also `fold_masked_zeros`').
    pub(super) bind_groups: Vec<wgpu::BindGroup>,
    /// Parameters, bin edges and row maxima, bound by every pool dispatch.
    pub(super) buffers: PassBuffers,
    pub(super) active: usize,
    pub(super) filling: Option<Filling>,
    pub(super) pieces: Vec<Piece>,
    pub(super) used: usize,
    /// Bytes pushed so far, for progress reports.
    pub consumed: u64,
    /// Whether any row was pushed: the statistics of accumulators nothing reached are known.
    pub(super) pushed: bool,
    /// `Causal::Auto`: the host saw an entry above the diagonal that is not ±0 in rows it
    /// pushed ([`upper_entry_in_first_row`]), so no head of the run is causal and later
    /// dispatches pool every entry as `Causal::Off` does, without setting zeros aside.
    pub(super) upper_seen: bool,
    /// Whether any dispatch pooled with `Causal::Auto`'s zeros set aside, which `finish`
    /// then folds back in for a run found not to be causal.
    pub(super) auto_dispatched: std::cell::Cell<bool>,
    /// Whether every group's zeros are cleared for `Causal::Auto` dispatches to set zeros
    /// aside in ([`Ingest::prepare_zeros`]).
    pub(super) zeros_ready: bool,
    /// Only the pattern statistics are wanted (`attnviz heads`): no pool pass is dispatched,
    /// and the accumulators stay empty ([`Ingest::set_pooled`]).
    pub(super) statistics_only: bool,
    /// Pattern statistics, when asked for, with their bind groups per group (reading the
    /// chunk texture, as the pool pass does).
    pub(super) pattern: Option<PatternPass>,
    pub(super) pattern_bind_groups: Vec<wgpu::BindGroup>,
    /// Per accumulator group, the pool pass's buffers as the profile kernel that pools reads
    /// them (`dispatch::pooling_bind_group`; empty where it does not pool: without statistics,
    /// with `Gpu::pool_with_profiles` off, or in slices).
    pub(super) pooling_bind_groups: Vec<wgpu::BindGroup>,
}

/// Keys past the diagonal of a head's row 0 that [`Ingest::upper_entry_in_first_row`] reads.
const UPPER_PROBE: usize = 256;

/// How an ingest cuts its work, derived once from its shape and the adapter's limits.
struct Sizing {
    row_bytes: usize,
    /// Bytes of one upload chunk (a multiple of 16: the shader reads 16-byte words).
    chunk_bytes: usize,
    /// Bytes of the whole input, rows padded to 4 bytes.
    whole: usize,
    /// Rows of one cell per dispatch at most (see [`LOOP_BUDGET`]).
    piece_rows: usize,
    /// Rows too long for one invocation's row maxima (see [`LOOP_BUDGET`]).
    wide_rows: bool,
    /// Bytes of one cell's accumulators, and cells per accumulator group.
    cell_bytes: u64,
    per_group: usize,
}

impl Sizing {
    fn new(gpu: &Gpu, shape: &IngestShape, patterns: bool, layout: AccumLayout) -> Result<Sizing> {
        let IngestShape {
            cells,
            queries,
            keys,
            dtype,
            geometry,
            chunk_target,
            ..
        } = *shape;
        let row_bytes = keys * dtype.size();
        let max_binding = gpu.max_binding();
        // The shader reads 16-byte words. A chunk holds one row at least, whatever the target,
        // as long as the binding allows.
        // (a chunk fits one storage binding, for the pattern passes, and the chunk texture)
        let one_row = (row_bytes as u64).next_multiple_of(16);
        let limit = max_binding.min(max_chunk_bytes(gpu));
        let chunk_cap = (limit.min(chunk_target.max(one_row)).max(16) / 16 * 16) as usize;
        if row_bytes > chunk_cap {
            return Err(Error::BadOption(format!(
                "one row of {keys} keys ({row_bytes} bytes) exceeds the GPU's {chunk_cap}-byte chunk (storage binding and texture limits)"
            )));
        }
        if queries > u32::MAX as usize || keys > u32::MAX as usize {
            return Err(Error::BadOption(
                "heads of 2^32 or more rows or keys are not supported".into(),
            ));
        }
        // Never larger than the whole input needs.
        let whole = (cells * queries).saturating_mul(row_bytes.next_multiple_of(4));
        let chunk_bytes = chunk_cap.min(whole.max(row_bytes).next_multiple_of(16));
        // An invocation walks the rows of its bin inside the piece, a 16-byte word at a time.
        let elems_per_word = 16 / dtype.size();
        let words = keys
            .div_ceil(geometry.pooled_w as usize)
            .div_ceil(elems_per_word)
            + 1;
        let bin_rows = queries.div_ceil(geometry.pooled_h as usize);
        let mut piece_rows = if bin_rows * words <= LOOP_BUDGET {
            chunk_bytes / row_bytes
        } else {
            (LOOP_BUDGET / words).clamp(1, chunk_bytes / row_bytes)
        };
        // The pattern pass's columns and diagonals loop over a piece's rows.
        let cell_bytes = geometry.pooled_pixels() as u64 * layout.pixel_bytes();
        let mut group_bytes = cell_bytes;
        if patterns {
            piece_rows = piece_rows.min(PATTERN_ROWS);
            group_bytes = group_bytes.max(head_bytes(queries, keys));
        }
        if cell_bytes > max_binding {
            return Err(Error::BadOption(format!(
                "a {}x{} pooled cell needs {cell_bytes} bytes, over the GPU's {max_binding}-byte storage binding: use a smaller --cell",
                geometry.pooled_w, geometry.pooled_h
            )));
        }
        Ok(Sizing {
            row_bytes,
            chunk_bytes,
            whole,
            piece_rows,
            // `--norm row`: one invocation walks a whole row while that stays within the loop
            // budget; longer rows (few per chunk) get a workgroup each.
            wide_rows: keys.div_ceil(elems_per_word) > LOOP_BUDGET,
            cell_bytes,
            // A group's cells are one dispatch dimension of the statistics and colour passes.
            per_group: ((max_binding / group_bytes) as usize)
                .clamp(1, gpu.limits.max_compute_workgroups_per_dimension as usize),
        })
    }
}

/// The accumulator groups of `shape.cells` cells, their clearing on the GPU (recycled buffers
/// too) recorded into `encoder`: the shader treats a zero count as "no extremes yet", so
/// nothing the size of the output is staged on the host.
fn cleared_groups(
    gpu: &Gpu,
    pipes: &PoolPipelines,
    shape: &IngestShape,
    sizing: &Sizing,
    layout: AccumLayout,
    encoder: &mut wgpu::CommandEncoder,
) -> Vec<CellGroup> {
    let (cells, per_group) = (shape.cells, sizing.per_group);
    let groups: Vec<CellGroup> = (0..cells)
        .step_by(per_group)
        .map(|first| {
            let n = per_group.min(cells - first);
            let sizes = [n as u64 * sizing.cell_bytes, n as u64 * 4];
            CellGroup::new(gpu, pipes, first, n, layout, sizes)
        })
        .collect();
    for g in &groups {
        encoder.clear_buffer(&g.accum, 0, None);
        encoder.clear_buffer(&g.flags, 0, None);
    }
    groups
}

/// The small buffers every pool dispatch binds besides rows and accumulators.
pub(super) struct PassBuffers {
    pub(super) params: wgpu::Buffer,
    pub(super) row_edges: wgpu::Buffer,
    pub(super) col_edges: wgpu::Buffer,
    pub(super) row_max: wgpu::Buffer,
    /// The cells' layers' key ranges ([`Ingest::set_key_ranges`]), else 16 unread bytes.
    pub(super) key_ranges: wgpu::Buffer,
}

impl PassBuffers {
    fn new(gpu: &Gpu, shape: &IngestShape, sizing: &Sizing, row_edges: &[u32]) -> PassBuffers {
        let device = &gpu.device;
        let col_edges = bin_edges(shape.keys, shape.geometry.pooled_w);
        let max_rows = sizing.chunk_bytes / sizing.row_bytes;
        PassBuffers {
            params: buffer(
                device,
                "attnviz.pool.params",
                (std::mem::size_of::<PieceParams>() * MAX_PIECES) as u64,
                wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            ),
            row_edges: storage_buffer_init(
                device,
                "attnviz.pool.row_edges",
                bytemuck::cast_slice(row_edges),
                wgpu::BufferUsages::empty(),
            ),
            col_edges: storage_buffer_init(
                device,
                "attnviz.pool.col_edges",
                bytemuck::cast_slice(&col_edges),
                wgpu::BufferUsages::empty(),
            ),
            row_max: buffer(
                device,
                "attnviz.pool.row_max",
                if shape.options.row_norm {
                    (max_rows * 4) as u64
                } else {
                    4
                },
                wgpu::BufferUsages::STORAGE,
            ),
            key_ranges: buffer(
                device,
                "attnviz.pool.key_ranges",
                16,
                wgpu::BufferUsages::STORAGE,
            ),
        }
    }
}

impl<'g> Ingest<'g> {
    pub(crate) fn new(
        gpu: &'g Gpu,
        pipes: &'g PoolPipelines,
        shape: IngestShape,
    ) -> Result<Ingest<'g>> {
        Ingest::with_patterns(gpu, pipes, shape, None)
    }

    /// An ingest that also accumulates pattern statistics with `patterns`, in the same pass.
    pub(crate) fn with_patterns(
        gpu: &'g Gpu,
        pipes: &'g PoolPipelines,
        shape: IngestShape,
        patterns: Option<PatternOptions>,
    ) -> Result<Ingest<'g>> {
        let layout = AccumLayout::for_bins(shape.queries, shape.keys, shape.geometry);
        Ingest::with_layout(gpu, pipes, shape, patterns, layout)
    }

    /// An ingest whose accumulators are in `layout`: producers that fold into them with
    /// shaders of their own (the one-pass Q/K path) ask for [`AccumLayout::Full`].
    pub(crate) fn with_layout(
        gpu: &'g Gpu,
        pipes: &'g PoolPipelines,
        shape: IngestShape,
        patterns: Option<PatternOptions>,
        layout: AccumLayout,
    ) -> Result<Ingest<'g>> {
        let sizing = Sizing::new(gpu, &shape, patterns.is_some(), layout)?;
        // Every buffer that starts cleared, in one submission: a second one right after would
        // wait for the first on drivers whose submit waits for the one before (lavapipe's,
        // clearing a whole model's accumulators for 0.1 s) instead of reading rows meanwhile.
        let mut clear = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("attnviz.pool.clear"),
            });
        let groups = cleared_groups(gpu, pipes, &shape, &sizing, layout, &mut clear);
        let group_cells: Vec<usize> = groups.iter().map(|g| g.cells).collect();
        let pattern = patterns
            .map(|options| {
                let max_rows = sizing.chunk_bytes / sizing.row_bytes;
                PatternPass::for_ingest(gpu, options, &shape, max_rows, &group_cells, &mut clear)
            })
            .transpose()?;
        gpu.submit([clear.finish()]);
        let row_edges = bin_edges(shape.queries, shape.geometry.pooled_h);
        let buffers = PassBuffers::new(gpu, &shape, &sizing, &row_edges);
        let chunk = pipes.take_chunk(gpu, sizing.chunk_bytes as u64);
        let bind_groups = groups
            .iter()
            .map(|g| pool_bind_group(gpu, pipes, &buffers, &chunk.view, g))
            .collect();
        let (pattern_bind_groups, pooling_bind_groups) = match &pattern {
            Some(p) => (
                (0..groups.len())
                    .map(|g| p.bind_group(gpu, &pipes.pattern, &buffers.params, &chunk.view, g))
                    .collect(),
                // (only where the profile kernel may pool: its module is parsed for them)
                if gpu.pool_with_profiles && p.slice_rows == 0 {
                    groups
                        .iter()
                        .map(|g| pooling_bind_group(gpu, pipes, &buffers, g))
                        .collect()
                } else {
                    Vec::new()
                },
            ),
            None => (Vec::new(), Vec::new()),
        };
        Ok(Ingest {
            gpu,
            pipes,
            geometry: shape.geometry,
            queries: shape.queries,
            keys: shape.keys,
            dtype: shape.dtype,
            options: shape.options,
            row_bytes: sizing.row_bytes,
            piece_rows: sizing.piece_rows,
            wide_rows: sizing.wide_rows,
            chunk_bytes: sizing.chunk_bytes,
            groups,
            layout,
            per_group: sizing.per_group,
            row_edges,
            slots: Vec::new(),
            slot_count: if sizing.whole > sizing.chunk_bytes {
                2
            } else {
                1
            },
            params: vec![PieceParams::zeroed(); MAX_PIECES],
            hidden: Vec::new(),
            key_position: 0,
            range_base: Vec::new(),
            bind_groups,
            chunk,
            buffers,
            active: 0,
            pushed: false,
            filling: None,
            pieces: Vec::new(),
            used: 0,
            consumed: 0,
            upper_seen: false,
            auto_dispatched: std::cell::Cell::new(false),
            zeros_ready: false,
            statistics_only: false,
            pattern,
            pattern_bind_groups,
            pooling_bind_groups,
        })
    }

    /// Masks the keys `hidden[cell]` hides from each of the cell's rows (its diagonal the
    /// ingest options'; `key_position` the position of a row's first key): pooled logits from
    /// Q and K, whose hidden entries have no value. The pool pass reads a window as two-sided
    /// where its pipeline is not causal, as a bidirectional layer's is.
    pub(crate) fn set_hidden(&mut self, hidden: Vec<HiddenKeys>, key_position: usize) {
        // (probabilities mask nothing: their default `HiddenKeys` say nothing of the mask)
        debug_assert!(hidden
            .iter()
            .filter(|h| h.window.is_some())
            .all(|h| h.two_sided == (self.options.causal != Causal::On)));
        self.hidden = if hidden.iter().any(HiddenKeys::any) {
            hidden
        } else {
            Vec::new()
        };
        self.key_position = key_position as u32;
    }

    /// Masks, instead of a window and chunks, the keys outside `tables[table_of[cell]]` (each
    /// position's first key and one past its last, `QkSource::mask_ranges`: logits of a layer
    /// with bidirectional spans) from each of the cell's rows, where the cell names a table
    /// (cells of one layer share theirs). The tables go into one buffer, the bind groups made
    /// again with it.
    pub(crate) fn set_key_ranges(&mut self, tables: &[Vec<[u32; 2]>], table_of: &[Option<usize>]) {
        if tables.is_empty() {
            return;
        }
        let bases: Vec<u32> = tables
            .iter()
            .scan(0, |at, t| {
                let base = *at;
                *at += t.len() as u32;
                Some(base)
            })
            .collect();
        self.range_base = table_of.iter().map(|t| t.map(|t| bases[t])).collect();
        let data = tables.concat();
        self.buffers.key_ranges = storage_buffer_init(
            &self.gpu.device,
            "attnviz.pool.key_ranges",
            bytemuck::cast_slice(&data),
            wgpu::BufferUsages::empty(),
        );
        self.bind_groups = (0..self.groups.len()).map(|g| self.bind_group(g)).collect();
    }

    /// Whether some cell masks keys besides the causal ones (a window, chunks or key ranges:
    /// the pool pass's `FLAG_WINDOW` pipelines).
    pub(super) fn masks_keys(&self) -> bool {
        !self.hidden.is_empty() || self.range_base.iter().any(Option::is_some)
    }

    /// The accumulator buffer holding `cell`'s pooled pixels, and the cell's index in it, for
    /// producers that fold into the accumulators themselves (the one-pass Q/K path,
    /// `pool::qk::tiled`); the cell then counts as pooled.
    pub(crate) fn resident_accum(&mut self, cell: usize) -> (wgpu::Buffer, usize) {
        self.pushed = true;
        let g = &self.groups[cell / self.per_group];
        (g.accum.clone(), cell % self.per_group)
    }

    /// Whether the caller reads the pooled cells (`PoolRun::pooled`). Where it does not and the
    /// ingest has statistics, its rows are read for the statistics only: each chunk goes to
    /// the profile kernel and not to the pool pass (on a CPU driver that pass costs about as
    /// much as the statistics). The result's accumulators then stay empty and its `causal` is
    /// the options' (nothing is detected). Every ingest of a run says so, whatever its source.
    pub(crate) fn set_pooled(&mut self, pooled: bool) {
        self.statistics_only = !pooled && self.pattern.is_some();
    }

    /// Rows per call of the `fill` callback at most: one chunk.
    pub(crate) fn max_rows_per_fill(&self) -> usize {
        self.piece_rows
    }

    /// Adds `rows` rows of `cell` starting at `row_start`; `fill` writes their raw bytes (in the
    /// ingest's dtype) into the slice it is given, which is mapped GPU memory, possibly several
    /// times with consecutive sub-ranges when the rows straddle chunks.
    pub(crate) fn push_with(
        &mut self,
        cell: usize,
        row_start: usize,
        rows: usize,
        mut fill: impl FnMut(usize, &mut [u8]) -> Result<()>,
    ) -> Result<()> {
        self.check_rows(cell, row_start, rows)?;
        self.pushed = true;
        let mut done = 0;
        while done < rows {
            if self.filling.is_none() {
                self.open()?;
            }
            let room = (self.chunk_bytes - self.used) / self.row_bytes;
            // The pieces of a chunk are pooled in one dispatch, so they must be of different
            // cells of one accumulator group; rows that continue the last piece extend it.
            let extends = self.pieces.last().is_some_and(|p| {
                p.cell == cell
                    && p.row_start + p.rows == row_start + done
                    && p.offset + p.rows * self.row_bytes == self.used
            });
            let conflicts = !extends
                && self
                    .pieces
                    .iter()
                    .any(|p| p.cell == cell || p.cell / self.per_group != cell / self.per_group);
            if room == 0 || conflicts || (!extends && self.pieces.len() == MAX_PIECES) {
                self.flush()?;
                continue;
            }
            // One piece (one cell's rows in this chunk) stays within the loop budget.
            let in_piece = if extends {
                self.pieces.last().map_or(0, |p| p.rows)
            } else {
                0
            };
            let room = room.min(self.piece_rows.saturating_sub(in_piece));
            if room == 0 {
                self.flush()?;
                continue;
            }
            let n = room.min(rows - done);
            let offset = self.used;
            let bytes = n * self.row_bytes;
            let f = self.filling.as_ref().expect("open chunk");
            debug_assert!(offset + bytes <= f.len);
            // SAFETY: `f.bytes` points at the `f.len` mapped bytes owned by `f.view`, which
            // lives until `flush`; pieces never overlap.
            let dst = unsafe { std::slice::from_raw_parts_mut(f.bytes.add(offset), bytes) };
            fill(row_start + done, dst)?;
            if self.options.causal == Causal::Auto && !self.upper_seen && row_start + done == 0 {
                self.upper_seen = self.upper_entry_in_first_row(dst);
            }
            match self.pieces.last_mut() {
                Some(p) if extends => p.rows += n,
                _ => self.pieces.push(Piece {
                    cell,
                    row_start: row_start + done,
                    rows: n,
                    offset,
                    stride: self.keys,
                }),
            }
            // Every piece starts on a 4-byte boundary, so f16 rows are addressable as
            // whole words plus a half.
            self.used += bytes.next_multiple_of(4);
            self.consumed += bytes as u64;
            done += n;
        }
        Ok(())
    }

    /// Whether a head's row 0, the first of the rows in `bytes` (as pushed), holds an entry
    /// above the diagonal that is not ±0 (NaN included, as the pool pass counts it) among the
    /// [`UPPER_PROBE`] keys right after it: then `Causal::Auto` has its answer for every head
    /// at once (not causal), and the pool pass need not test each entry for it. Attention that
    /// is not causal shows it there (each query's neighbours); where it does not, the pool pass
    /// still finds out. Read from the upload slot just written, which may be write-combined
    /// memory on a discrete GPU (slow to read): a few hundred keys a head at most.
    fn upper_entry_in_first_row(&self, bytes: &[u8]) -> bool {
        let first = (self.diagonal() + 1).clamp(0, self.keys as i64) as usize;
        let end = (first + UPPER_PROBE).min(self.keys);
        let size = self.dtype.size();
        crate::source::any_nonzero(&bytes[first * size..end * size], size)
    }

    /// Key `k` is above the diagonal in row `q` when `k > q + diagonal` (bottom-right aligned
    /// unless the options say otherwise): the pool pass's `causal_offset` and the host's look.
    pub(super) fn diagonal(&self) -> i64 {
        self.options
            .diagonal
            .unwrap_or(self.keys as i64 - self.queries as i64)
    }

    /// The options a dispatch pools with: the ingest's, `Causal::Auto` taken as `Causal::Off`
    /// once the host has seen the run is not causal ([`Ingest::upper_seen`]).
    pub(super) fn dispatch_options(&self) -> PoolOptions {
        if self.upper_seen && self.options.causal == Causal::Auto {
            PoolOptions {
                causal: Causal::Off,
                ..self.options
            }
        } else {
            self.options
        }
    }

    pub(super) fn check_rows(&self, cell: usize, row_start: usize, rows: usize) -> Result<()> {
        if cell >= self.groups.iter().map(|g| g.cells).sum::<usize>()
            || row_start + rows > self.queries
        {
            return Err(Error::BadOption(format!(
                "rows {row_start}..{} of cell {cell} are outside the {} rows of the head",
                row_start + rows,
                self.queries
            )));
        }
        Ok(())
    }

    /// Makes the host upload slots (reusing the engine's spares) and their bind groups, once.
    /// Mapped storage on unified memory; staging plus one device buffer otherwise.
    pub(super) fn ensure_slots(&mut self) {
        if !self.slots.is_empty() {
            return;
        }
        let gpu = self.gpu;
        let mut slots = self.pipes.take_slots(self.chunk_bytes, self.slot_count);
        while slots.len() < self.slot_count {
            slots.push(Slot::new(gpu, self.chunk_bytes as u64, SLOT_USAGE));
        }
        self.slots = slots;
    }

    pub(super) fn open(&mut self) -> Result<()> {
        let _span = tracing::info_span!("ingest.open").entered();
        self.ensure_slots();
        let slot = &mut self.slots[self.active];
        slot.wait_mapped(self.gpu)?;
        let mut view = slot
            .host
            .get_mapped_range_mut(..self.chunk_bytes as u64)
            .map_err(|e| Error::Gpu(format!("mapping an upload buffer: {e}")))?;
        let mut whole = view.slice(..);
        let bytes = whole.as_raw_ptr().as_ptr() as *mut u8;
        self.filling = Some(Filling {
            view,
            bytes,
            len: self.chunk_bytes,
        });
        self.used = 0;
        Ok(())
    }

    /// Submits the filled chunk for pooling and switches to the other slot.
    pub(super) fn flush(&mut self) -> Result<()> {
        let Some(filling) = self.filling.take() else {
            return Ok(());
        };
        let _span = tracing::info_span!("ingest.submit").entered();
        drop(filling.view);
        let s = self.active;
        self.slots[s].host.unmap();
        let pieces = std::mem::take(&mut self.pieces);
        self.prepare_zeros();
        self.write_params(&pieces);
        let gpu = self.gpu;
        let mut encoder = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("attnviz.pool.encoder"),
            });
        let host = &self.slots[s].host;
        self.chunk
            .copy_from(&mut encoder, host, 0, self.used.next_multiple_of(16) as u64);
        if let Some(first) = pieces.first() {
            let g = first.cell / self.per_group;
            let pattern = self.pattern_bind_groups.get(g);
            self.record(&mut encoder, &pieces, &self.bind_groups[g], pattern);
        }
        self.pieces = pieces;
        let submission = gpu.submit([encoder.finish()]);
        self.slots[s].remap(submission);
        self.pieces.clear();
        self.used = 0;
        self.active = (s + 1) % self.slots.len();
        Ok(())
    }

    /// Pools what is left and reduces every cell to its statistics.
    pub(crate) fn finish(mut self) -> Result<PooledCells> {
        let _span = tracing::info_span!("ingest.finish").entered();
        self.flush()?;
        let px = self.geometry.pooled_pixels();
        let causal =
            match self.options.causal {
                Causal::Off => false,
                Causal::On => true,
                Causal::Auto if self.statistics_only => false,
                Causal::Auto => {
                    // (the cells' flags only where the host has not seen it already)
                    let mut upper_seen = self.upper_seen;
                    if !upper_seen {
                        for g in &self.groups {
                            let flags: Vec<u32> = bytemuck::pod_collect_to_vec(
                                &self.gpu.read_buffer(&g.flags, 0, g.cells as u64 * 4)?,
                            );
                            upper_seen |= flags.iter().any(|&f| f != 0);
                        }
                    }
                    let detected = !upper_seen && has_upper_triangle(self.queries, self.keys);
                    if !detected && self.auto_dispatched.get() {
                        self.fold_masked_zeros()?;
                    }
                    detected
                }
            };
        let group_cells: Vec<usize> = self.groups.iter().map(|g| g.cells).collect();
        let patterns = match &self.pattern {
            Some(p) => p.read(
                self.gpu,
                &self.pipes.pattern,
                &self.pattern_bind_groups,
                &group_cells,
            )?,
            None => Vec::new(),
        };
        let stats = if self.pushed {
            head_stats(self.gpu, self.pipes, &self.groups, px)?
        } else {
            vec![HeadStats::EMPTY; self.groups.iter().map(|g| g.cells).sum()]
        };
        self.pipes.keep_slots(std::mem::take(&mut self.slots));
        let pooled = PooledCells {
            geometry: self.geometry,
            groups: std::mem::take(&mut self.groups),
            stats,
            causal,
            patterns,
        };
        self.pipes.keep_chunk(self.chunk);
        Ok(pooled)
    }
}
