//! Ingest and pooling on the GPU: row blocks of each head are read from the source straight into
//! mapped GPU buffers (double-buffered, so the next block is read while the GPU pools the last),
//! pooled into per-cell accumulators, and reduced to per-head statistics. Memory on both sides is
//! bounded by the chunk size and the output, never by the input.

use std::sync::{Arc, Mutex, OnceLock};

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::geometry::{bin_edges, bin_of, CellGeometry};
use crate::gpu::{dispatch_1d, storage_buffer_init, Gpu};
use crate::norm::{Accum, HeadStats};
use crate::source::{AttentionSource, DType};

/// Default upper bound on one upload chunk: large enough to amortize a submission, small enough
/// that two of them stay cheap even on the smallest adapters.
pub const CHUNK_TARGET: u64 = 64 << 20;
/// Iterations one pool invocation may loop through in one dispatch (rows of its bin in the
/// piece × 16-byte words per bin row): bounded so a dispatch stays short on every driver
/// (llvmpipe stops a shader's loops after 65535 iterations; display drivers have watchdogs).
const LOOP_BUDGET: usize = 16384;
/// Pieces (head row ranges) per chunk; the size of the parameter array in `shaders/pool.wgsl`.
const MAX_PIECES: usize = 256;

const POOL_WGSL: &str = concat!(
    include_str!("../shaders/common.wgsl"),
    include_str!("../shaders/pool.wgsl")
);
const STATS_WGSL: &str = concat!(
    include_str!("../shaders/common.wgsl"),
    include_str!("../shaders/stats.wgsl")
);

/// Mirrors `Piece` in `shaders/pool.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
struct PieceParams {
    elem_offset: u32,
    row_start: u32,
    row_count: u32,
    keys: u32,
    accum_base: u32,
    pooled_w: u32,
    y_start: u32,
    row_max_base: u32,
    _flags: u32,
    causal_offset: i32,
    cell: u32,
    y_end: u32,
}

const FLAG_ROW_NORM: u32 = 1;
const FLAG_CAUSAL: u32 = 2;
const FLAG_AUTO_CAUSAL: u32 = 4;

/// Whether entries above the diagonal (bottom-right aligned when Q < K) are attention at all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Causal {
    /// Every entry counts.
    #[default]
    Off,
    /// Entries above the diagonal are masked: out of the statistics, drawn as background.
    On,
    /// Masked when every selected head is exactly zero above the diagonal, detected in the
    /// same single pass.
    Auto,
}

/// Mirrors `StatsParams` in `shaders/stats.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
struct StatsParams {
    pixels_per_head: u32,
    first_head: u32,
    blocks_per_head: u32,
    _pad: u32,
}

/// Pixels one `block_stats` workgroup reduces (`BLOCK` in `shaders/stats.wgsl`).
const STATS_BLOCK: usize = 8192;

/// What pooling does besides reducing: options that change which entries count and how.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolOptions {
    /// Divide each query row by its own maximum before pooling (`--norm row`).
    pub row_norm: bool,
    pub causal: Causal,
    /// Key `k` is above the diagonal in row `q` when `k > q + diagonal`; `None` for bottom-right
    /// alignment (`keys - queries`), see [`AttentionSource::diagonal`].
    pub diagonal: Option<i64>,
}

impl PoolOptions {
    fn flags(&self) -> u32 {
        (if self.row_norm { FLAG_ROW_NORM } else { 0 })
            | match self.causal {
                Causal::Off => 0,
                Causal::On => FLAG_CAUSAL,
                Causal::Auto => FLAG_AUTO_CAUSAL,
            }
    }
}

/// The pooling pipelines of one dtype and set of flags.
struct Specialized {
    pool: wgpu::ComputePipeline,
    /// `--norm row` only: the row maxima, one invocation per row (`row_maxima`) or one
    /// workgroup per row (`row_maxima_wide`, rows past [`LOOP_BUDGET`] words).
    row_maxima: Option<(wgpu::ComputePipeline, wgpu::ComputePipeline)>,
}

/// The compiled pooling and statistics pipelines; built once per engine.
pub(crate) struct PoolPipelines {
    layout: wgpu::BindGroupLayout,
    module: wgpu::ShaderModule,
    /// The pipelines specialized for each dtype and set of pooling flags, indexed by
    /// `DType::shader_id` and `PoolOptions::flags`, compiled on first use so a run pays only
    /// for the mode it uses.
    specialized: [[OnceLock<Specialized>; 8]; 3],
    fold: wgpu::ComputePipeline,
    stats_layout: wgpu::BindGroupLayout,
    block_stats: wgpu::ComputePipeline,
    stats: wgpu::ComputePipeline,
    /// Upload slots of the last ingest, kept for the next one of the same chunk size: fresh
    /// mapped buffers are zero-filled by wgpu and page-faulted in by the host, which costs as
    /// much as pooling a small input. At most two chunks stay alive.
    spare_slots: Mutex<Vec<Slot>>,
    /// Accumulator buffers of dropped results, reused (cleared) by the next ingest of the
    /// same sizes, for the same reason; at most `SPARE_GROUP_BYTES`.
    spare_groups: SpareGroups,
}

pub(crate) fn storage_entry(
    binding: u32,
    read_only: bool,
    vis: wgpu::ShaderStages,
) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: vis,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only },
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }
}

pub(crate) fn uniform_entry(
    binding: u32,
    dynamic: bool,
    vis: wgpu::ShaderStages,
) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: vis,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: dynamic,
            min_binding_size: None,
        },
        count: None,
    }
}

pub(crate) fn compute_pipeline(
    device: &wgpu::Device,
    label: &str,
    layout: &wgpu::BindGroupLayout,
    module: &wgpu::ShaderModule,
    entry: &str,
) -> wgpu::ComputePipeline {
    specialized_pipeline(device, label, layout, module, entry, &[])
}

pub(crate) fn specialized_pipeline(
    device: &wgpu::Device,
    label: &str,
    layout: &wgpu::BindGroupLayout,
    module: &wgpu::ShaderModule,
    entry: &str,
    constants: &[(&str, f64)],
) -> wgpu::ComputePipeline {
    let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(label),
        bind_group_layouts: &[Some(layout)],
        immediate_size: 0,
    });
    device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(label),
        layout: Some(&pl),
        module,
        entry_point: Some(entry),
        compilation_options: wgpu::PipelineCompilationOptions {
            constants,
            ..Default::default()
        },
        cache: None,
    })
}

impl PoolPipelines {
    pub(crate) fn new(device: &wgpu::Device) -> PoolPipelines {
        let c = wgpu::ShaderStages::COMPUTE;
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("attnviz.pool.layout"),
            entries: &[
                uniform_entry(0, false, c),
                storage_entry(1, true, c),
                storage_entry(2, true, c),
                storage_entry(3, true, c),
                storage_entry(4, false, c),
                storage_entry(5, false, c),
                storage_entry(6, false, c),
                storage_entry(7, false, c),
            ],
        });
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("attnviz.pool.shader"),
            source: wgpu::ShaderSource::Wgsl(POOL_WGSL.into()),
        });
        let stats_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("attnviz.stats.layout"),
            entries: &[
                uniform_entry(0, false, c),
                storage_entry(1, true, c),
                storage_entry(2, false, c),
                storage_entry(3, false, c),
            ],
        });
        let stats_module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("attnviz.stats.shader"),
            source: wgpu::ShaderSource::Wgsl(STATS_WGSL.into()),
        });
        PoolPipelines {
            fold: compute_pipeline(
                device,
                "attnviz.pool.fold_masked_zeros",
                &layout,
                &module,
                "fold_masked_zeros",
            ),
            specialized: Default::default(),
            block_stats: compute_pipeline(
                device,
                "attnviz.stats.block_stats",
                &stats_layout,
                &stats_module,
                "block_stats",
            ),
            stats: compute_pipeline(
                device,
                "attnviz.stats.head_stats",
                &stats_layout,
                &stats_module,
                "head_stats",
            ),
            layout,
            module,
            stats_layout,
            spare_slots: Mutex::new(Vec::new()),
            spare_groups: SpareGroups::default(),
        }
    }

    /// Up to `n` spare upload slots of exactly `size` bytes.
    fn take_slots(&self, size: usize, n: usize) -> Vec<Slot> {
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

    fn keep_slots(&self, slots: Vec<Slot>) {
        let mut spare = self.spare_slots.lock().expect("spare slots");
        spare.extend(slots);
        let excess = spare.len().saturating_sub(2);
        spare.drain(..excess);
    }

    /// The pool (and row-maxima) pipelines for `dtype` and `options`.
    fn specialized(
        &self,
        device: &wgpu::Device,
        dtype: DType,
        options: PoolOptions,
    ) -> &Specialized {
        let (id, flags) = (dtype.shader_id(), options.flags());
        self.specialized[id as usize][flags as usize].get_or_init(|| {
            let constants = [("DTYPE", id as f64), ("FLAGS", flags as f64)];
            let pipeline = |label: &str, entry: &str| {
                specialized_pipeline(device, label, &self.layout, &self.module, entry, &constants)
            };
            Specialized {
                pool: pipeline("attnviz.pool.pipeline", "pool"),
                row_maxima: options.row_norm.then(|| {
                    (
                        pipeline("attnviz.pool.row_maxima", "row_maxima"),
                        pipeline("attnviz.pool.row_maxima_wide", "row_maxima_wide"),
                    )
                }),
            }
        })
    }
}

/// Accumulators of a run of consecutive cells, in one buffer that fits a storage binding.
pub struct CellGroup {
    pub first_cell: usize,
    pub cells: usize,
    pub accum: wgpu::Buffer,
    /// Per cell: 1 once a non-zero value was seen above the diagonal.
    flags: wgpu::Buffer,
    /// Per pooled pixel, with `Causal::Auto`: zeros set aside above the diagonal (a 16-byte
    /// stand-in otherwise).
    zeros: wgpu::Buffer,
    /// Where the buffers go when the group is dropped.
    spares: Option<SpareGroups>,
}

/// The buffers of a dropped [`CellGroup`], for the next ingest that needs the same sizes.
struct GroupBuffers {
    accum: wgpu::Buffer,
    flags: wgpu::Buffer,
    zeros: wgpu::Buffer,
}

/// Spare accumulator buffers, shared by the pipelines and the groups that return to them.
type SpareGroups = Arc<Mutex<Vec<GroupBuffers>>>;

/// Bytes of spare accumulator buffers kept at most.
const SPARE_GROUP_BYTES: u64 = 256 << 20;

impl CellGroup {
    /// A group of `cells` cells from `first_cell` whose (accum, flags, zeros) buffers have
    /// `sizes` bytes: recycled from a dropped group when one matches (fresh buffers cost the
    /// host page faults and zero-filling on unified-memory adapters, every render), else new.
    fn new(
        gpu: &Gpu,
        pipes: &PoolPipelines,
        first_cell: usize,
        cells: usize,
        sizes: [u64; 3],
    ) -> CellGroup {
        let spare = {
            let mut spares = pipes.spare_groups.lock().expect("spare groups");
            let found = spares
                .iter()
                .position(|b| [b.accum.size(), b.flags.size(), b.zeros.size()] == sizes);
            found.map(|i| spares.swap_remove(i))
        };
        let buffers = spare.unwrap_or_else(|| {
            let buffer = |label, size| {
                gpu.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(label),
                    size,
                    usage: wgpu::BufferUsages::STORAGE
                        | wgpu::BufferUsages::COPY_SRC
                        | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            };
            GroupBuffers {
                accum: buffer("attnviz.pool.accum", sizes[0]),
                flags: buffer("attnviz.pool.cell_flags", sizes[1]),
                zeros: buffer("attnviz.pool.zeros", sizes[2]),
            }
        });
        CellGroup {
            first_cell,
            cells,
            accum: buffers.accum,
            flags: buffers.flags,
            zeros: buffers.zeros,
            spares: Some(pipes.spare_groups.clone()),
        }
    }
}

impl Drop for CellGroup {
    fn drop(&mut self) {
        let Some(spares) = self.spares.take() else {
            return;
        };
        let mut spares = spares.lock().expect("spare groups");
        spares.push(GroupBuffers {
            accum: self.accum.clone(),
            flags: self.flags.clone(),
            zeros: self.zeros.clone(),
        });
        // Newest last; drop the oldest past the byte budget.
        let bytes = |b: &GroupBuffers| b.accum.size() + b.flags.size() + b.zeros.size();
        while spares.iter().map(bytes).sum::<u64>() > SPARE_GROUP_BYTES && !spares.is_empty() {
            spares.remove(0);
        }
    }
}

/// Every selected head pooled to its cell, resident on the GPU, with its statistics.
pub struct PooledCells {
    pub geometry: CellGeometry,
    pub groups: Vec<CellGroup>,
    /// One per cell, in cell order.
    pub stats: Vec<HeadStats>,
    /// Entries above the diagonal were left out (asked for, or detected).
    pub causal: bool,
}

impl PooledCells {
    pub fn cells(&self) -> usize {
        self.stats.len()
    }

    /// Group holding `cell`, and the cell's index inside it.
    pub fn locate(&self, cell: usize) -> (usize, usize) {
        let g = self
            .groups
            .partition_point(|g| g.first_cell + g.cells <= cell);
        (g, cell - self.groups[g].first_cell)
    }

    /// Replaces every cell's accumulators (cell order, `pooled_pixels` each): lets tests put
    /// states into the reductions that no test-sized input reaches, e.g. counts past 2^32.
    #[doc(hidden)]
    pub fn overwrite_accums(&self, gpu: &Gpu, accums: &[Vec<Accum>]) {
        let mut cells = accums.iter();
        for g in &self.groups {
            let words: Vec<Accum> = cells.by_ref().take(g.cells).flatten().copied().collect();
            gpu.queue
                .write_buffer(&g.accum, 0, bytemuck::cast_slice(&words));
        }
    }

    /// Copies every cell's accumulators back (tests and the CPU comparison).
    pub fn read_accums(&self, gpu: &Gpu) -> Result<Vec<Vec<Accum>>> {
        let px = self.geometry.pooled_pixels();
        let mut out = Vec::with_capacity(self.cells());
        for g in &self.groups {
            let bytes = gpu.read_buffer(&g.accum, 0, (g.cells * px * 16) as u64)?;
            let all: Vec<Accum> = bytemuck::pod_collect_to_vec(&bytes);
            out.extend(all.chunks(px).map(|c| c.to_vec()));
        }
        Ok(out)
    }
}

/// Whether a Q×K head has entries above its (bottom-right aligned) diagonal at all.
pub fn has_upper_triangle(queries: usize, keys: usize) -> bool {
    // Row 0 sees keys 0..=K-Q; anything right of that is above the diagonal.
    keys > 1 && (keys as i64 - queries as i64) < keys as i64 - 1
}

/// One head's rows inside an upload chunk.
#[derive(Clone, Copy, Debug)]
struct Piece {
    cell: usize,
    row_start: usize,
    rows: usize,
    /// Byte offset inside the chunk.
    offset: usize,
}

type MapState = Arc<Mutex<Option<std::result::Result<(), wgpu::BufferAsyncError>>>>;

/// A host-writable upload buffer and whether it is currently mapped.
struct Slot {
    /// Mapped for writing by the host: the bound storage buffer itself on unified-memory
    /// adapters, a staging buffer otherwise.
    host: wgpu::Buffer,
    mapped: MapState,
    submission: Option<wgpu::SubmissionIndex>,
}

/// Usage of a host upload slot: mapped storage the shaders read directly on unified memory,
/// a staging buffer copied into [`device_copy`] otherwise.
fn slot_usage(gpu: &Gpu) -> wgpu::BufferUsages {
    if gpu.mappable_storage {
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::MAP_WRITE
    } else {
        wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::MAP_WRITE
    }
}

/// The device buffer the upload slots are copied into, where slots cannot be bound directly.
fn device_copy(gpu: &Gpu, size: u64) -> Option<wgpu::Buffer> {
    (!gpu.mappable_storage).then(|| {
        gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("attnviz.pool.data"),
            size,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    })
}

impl Slot {
    fn new(gpu: &Gpu, size: u64, usage: wgpu::BufferUsages) -> Slot {
        let host = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("attnviz.pool.upload"),
            size,
            usage,
            mapped_at_creation: true,
        });
        Slot {
            host,
            mapped: Arc::new(Mutex::new(Some(Ok(())))),
            submission: None,
        }
    }

    /// Waits until the GPU is done with this slot's last chunk and the buffer is mapped.
    fn wait_mapped(&mut self, gpu: &Gpu) -> Result<()> {
        for attempt in 0..2 {
            if let Some(state) = self.mapped.lock().expect("map state").clone() {
                return state.map_err(|e| Error::Gpu(format!("mapping an upload buffer: {e}")));
            }
            let poll = match (&self.submission, attempt) {
                (Some(s), 0) => wgpu::PollType::Wait {
                    submission_index: Some(s.clone()),
                    timeout: None,
                },
                _ => wgpu::PollType::wait_indefinitely(),
            };
            gpu.device
                .poll(poll)
                .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))?;
        }
        Err(Error::Gpu("upload buffer was never mapped back".into()))
    }

    fn remap(&mut self, submission: wgpu::SubmissionIndex) {
        *self.mapped.lock().expect("map state") = None;
        let flag = self.mapped.clone();
        self.host.map_async(wgpu::MapMode::Write, .., move |r| {
            *flag.lock().expect("map state") = Some(r);
        });
        self.submission = Some(submission);
    }
}

/// The open mapping of the slot being filled.
struct Filling {
    view: wgpu::BufferViewMut,
    /// The view's bytes; valid while `view` lives.
    bytes: *mut u8,
    len: usize,
}

/// Streams rows of any number of cells into pooled accumulators: rows are written into a mapped
/// upload chunk; a full chunk is unmapped, pooled by the GPU, and mapped again for reuse while
/// the other chunk fills. Callers push rows in any grouping; each cell's rows should arrive in
/// increasing order for the mean to be added in the documented order.
pub(crate) struct Ingest<'g> {
    gpu: &'g Gpu,
    pipes: &'g PoolPipelines,
    geometry: CellGeometry,
    queries: usize,
    keys: usize,
    dtype: DType,
    options: PoolOptions,
    row_bytes: usize,
    /// Rows of one cell per dispatch at most (see [`LOOP_BUDGET`]).
    piece_rows: usize,
    /// Rows too long for one invocation's row maxima (see [`LOOP_BUDGET`]).
    wide_rows: bool,
    chunk_bytes: usize,
    groups: Vec<CellGroup>,
    per_group: usize,
    row_edges: Vec<u32>,
    /// Host upload slots (and, on discrete GPUs, the device buffer they are copied into),
    /// made on the first host push: producers that only pool resident rows never need them.
    slots: Vec<Slot>,
    slot_count: usize,
    device_data: Option<wgpu::Buffer>,
    params_buf: wgpu::Buffer,
    params: Vec<PieceParams>,
    /// bind_groups[slot][group], made with the slots.
    bind_groups: Vec<Vec<wgpu::BindGroup>>,
    /// per group, for `fold_masked_zeros`
    fold_bind_groups: Vec<wgpu::BindGroup>,
    row_edges_buf: wgpu::Buffer,
    col_edges_buf: wgpu::Buffer,
    row_max_buf: wgpu::Buffer,
    active: usize,
    filling: Option<Filling>,
    pieces: Vec<Piece>,
    used: usize,
    /// Bytes pushed so far, for progress reports.
    pub consumed: u64,
    /// Whether any row was pushed: the statistics of accumulators nothing reached are known.
    pushed: bool,
}

/// The pool pass's bind group: `buffers` are the parameters, the rows, the row and column bin
/// edges, and the row maxima; `g` the accumulators written.
fn pool_bind_group(
    gpu: &Gpu,
    pipes: &PoolPipelines,
    buffers: [&wgpu::Buffer; 5],
    g: &CellGroup,
) -> wgpu::BindGroup {
    fn entry(binding: u32, buffer: &wgpu::Buffer) -> wgpu::BindGroupEntry<'_> {
        wgpu::BindGroupEntry {
            binding,
            resource: buffer.as_entire_binding(),
        }
    }
    let [params, data, row_edges, col_edges, row_max] = buffers;
    gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("attnviz.pool.bind_group"),
        layout: &pipes.layout,
        entries: &[
            entry(0, params),
            entry(1, data),
            entry(2, row_edges),
            entry(3, col_edges),
            entry(4, &g.accum),
            entry(5, row_max),
            entry(6, &g.flags),
            entry(7, &g.zeros),
        ],
    })
}

impl<'g> Ingest<'g> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        gpu: &'g Gpu,
        pipes: &'g PoolPipelines,
        cells: usize,
        queries: usize,
        keys: usize,
        dtype: DType,
        geometry: CellGeometry,
        options: PoolOptions,
        chunk_target: u64,
    ) -> Result<Ingest<'g>> {
        let device = &gpu.device;
        let row_bytes = keys * dtype.size();
        let max_binding = gpu.max_binding();
        // The shader reads 16-byte words.
        let chunk_cap = (max_binding.min(chunk_target).max(16) / 16 * 16) as usize;
        if row_bytes > chunk_cap {
            return Err(Error::BadOption(format!(
                "one row of {keys} keys ({row_bytes} bytes) exceeds the GPU's {chunk_cap}-byte storage binding"
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
        // `--norm row`: one invocation walks a whole row while that stays within the loop
        // budget; longer rows (few per chunk) get a workgroup each.
        let wide_rows = keys.div_ceil(elems_per_word) > LOOP_BUDGET;
        let bin_rows = queries.div_ceil(geometry.pooled_h as usize);
        let piece_rows = if bin_rows * words <= LOOP_BUDGET {
            chunk_bytes / row_bytes
        } else {
            (LOOP_BUDGET / words).clamp(1, chunk_bytes / row_bytes)
        };

        let px = geometry.pooled_pixels();
        let cell_bytes = (px * std::mem::size_of::<Accum>()) as u64;
        if cell_bytes > max_binding {
            return Err(Error::BadOption(format!(
                "a {}x{} pooled cell needs {cell_bytes} bytes, over the GPU's {max_binding}-byte storage binding: use a smaller --cell",
                geometry.pooled_w, geometry.pooled_h
            )));
        }
        // A group's cells are one dispatch dimension of the statistics and colour passes.
        let per_group = ((max_binding / cell_bytes) as usize)
            .clamp(1, gpu.limits.max_compute_workgroups_per_dimension as usize);
        // Cleared on the GPU (recycled buffers too); the shader treats a zero count as "no
        // extremes yet", so nothing the size of the output is staged on the host.
        let zeros_per_px = if options.causal == Causal::Auto { 4 } else { 0 };
        let groups: Vec<CellGroup> = (0..cells)
            .step_by(per_group)
            .map(|first| {
                let n = per_group.min(cells - first);
                let sizes = [
                    n as u64 * cell_bytes,
                    n as u64 * 4,
                    ((n * px * zeros_per_px) as u64).max(16),
                ];
                CellGroup::new(gpu, pipes, first, n, sizes)
            })
            .collect();
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("attnviz.pool.clear"),
        });
        for g in &groups {
            encoder.clear_buffer(&g.accum, 0, None);
            encoder.clear_buffer(&g.flags, 0, None);
            encoder.clear_buffer(&g.zeros, 0, None);
        }
        gpu.queue.submit([encoder.finish()]);

        let row_edges = bin_edges(queries, geometry.pooled_h);
        let col_edges = bin_edges(keys, geometry.pooled_w);
        let row_edges_buf = storage_buffer_init(
            device,
            "attnviz.pool.row_edges",
            bytemuck::cast_slice(&row_edges),
            wgpu::BufferUsages::empty(),
        );
        let col_edges_buf = storage_buffer_init(
            device,
            "attnviz.pool.col_edges",
            bytemuck::cast_slice(&col_edges),
            wgpu::BufferUsages::empty(),
        );
        let max_rows = chunk_bytes / row_bytes;
        let row_max_buf = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("attnviz.pool.row_max"),
            size: if options.row_norm {
                (max_rows * 4) as u64
            } else {
                4
            },
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });

        let slot_count = if whole > chunk_bytes { 2 } else { 1 };
        let params_buf = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("attnviz.pool.params"),
            size: (std::mem::size_of::<PieceParams>() * MAX_PIECES) as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        // The fold pass runs after the last chunk, when the upload slots are mapped again: it
        // binds a stand-in for the data it never reads.
        let no_data = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("attnviz.pool.no_data"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let fold_bind_groups = groups
            .iter()
            .map(|g| {
                pool_bind_group(
                    gpu,
                    pipes,
                    [
                        &params_buf,
                        &no_data,
                        &row_edges_buf,
                        &col_edges_buf,
                        &row_max_buf,
                    ],
                    g,
                )
            })
            .collect();
        Ok(Ingest {
            gpu,
            pipes,
            geometry,
            queries,
            keys,
            dtype,
            options,
            row_bytes,
            piece_rows,
            wide_rows,
            chunk_bytes,
            groups,
            per_group,
            row_edges,
            slots: Vec::new(),
            slot_count,
            device_data: None,
            params_buf,
            params: vec![PieceParams::zeroed(); MAX_PIECES],
            bind_groups: Vec::new(),
            fold_bind_groups,
            row_edges_buf,
            col_edges_buf,
            row_max_buf,
            active: 0,
            pushed: false,
            filling: None,
            pieces: Vec::new(),
            used: 0,
            consumed: 0,
        })
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
            match self.pieces.last_mut() {
                Some(p) if extends => p.rows += n,
                _ => self.pieces.push(Piece {
                    cell,
                    row_start: row_start + done,
                    rows: n,
                    offset,
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

    fn check_rows(&self, cell: usize, row_start: usize, rows: usize) -> Result<()> {
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

    /// The pool pass's bind group reading `data` into group `g`'s accumulators.
    fn bind_group(&self, data: &wgpu::Buffer, g: &CellGroup) -> wgpu::BindGroup {
        pool_bind_group(
            self.gpu,
            self.pipes,
            [
                &self.params_buf,
                data,
                &self.row_edges_buf,
                &self.col_edges_buf,
                &self.row_max_buf,
            ],
            g,
        )
    }

    /// Makes the host upload slots (reusing the engine's spares) and their bind groups, once.
    /// Mapped storage on unified memory; staging plus one device buffer otherwise.
    fn ensure_slots(&mut self) {
        if !self.slots.is_empty() {
            return;
        }
        let gpu = self.gpu;
        let mut slots = self.pipes.take_slots(self.chunk_bytes, self.slot_count);
        while slots.len() < self.slot_count {
            slots.push(Slot::new(gpu, self.chunk_bytes as u64, slot_usage(gpu)));
        }
        self.device_data = device_copy(gpu, self.chunk_bytes as u64);
        self.bind_groups = slots
            .iter()
            .map(|slot| {
                let data = self.device_data.as_ref().unwrap_or(&slot.host);
                self.groups
                    .iter()
                    .map(|g| self.bind_group(data, g))
                    .collect()
            })
            .collect();
        self.slots = slots;
    }

    fn open(&mut self) -> Result<()> {
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
    fn flush(&mut self) -> Result<()> {
        let Some(filling) = self.filling.take() else {
            return Ok(());
        };
        drop(filling.view);
        let s = self.active;
        self.slots[s].host.unmap();
        let pieces = std::mem::take(&mut self.pieces);
        self.write_params(&pieces);
        let gpu = self.gpu;
        let mut encoder = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("attnviz.pool.encoder"),
            });
        if let Some(data) = &self.device_data {
            encoder.copy_buffer_to_buffer(
                &self.slots[s].host,
                0,
                data,
                0,
                self.used.next_multiple_of(4) as u64,
            );
        }
        if let Some(first) = pieces.first() {
            self.record(
                &mut encoder,
                &pieces,
                &self.bind_groups[s][first.cell / self.per_group],
            );
        }
        self.pieces = pieces;
        let submission = gpu.queue.submit([encoder.finish()]);
        self.slots[s].remap(submission);
        self.pieces.clear();
        self.used = 0;
        self.active = (s + 1) % self.slots.len();
        Ok(())
    }

    /// Uploads the parameters of `pieces`, piece j at index j of the parameter array.
    fn write_params(&mut self, pieces: &[Piece]) {
        let px = self.geometry.pooled_pixels();
        let mut row_max_base = 0;
        for (j, p) in pieces.iter().enumerate() {
            self.params[j] = PieceParams {
                elem_offset: (p.offset / self.dtype.size()) as u32,
                row_start: p.row_start as u32,
                row_count: p.rows as u32,
                keys: self.keys as u32,
                accum_base: ((p.cell % self.per_group) * px) as u32,
                pooled_w: self.geometry.pooled_w,
                y_start: bin_of(&self.row_edges, p.row_start as u32),
                row_max_base,
                _flags: 0,
                causal_offset: self
                    .options
                    .diagonal
                    .unwrap_or(self.keys as i64 - self.queries as i64)
                    as i32,
                cell: (p.cell % self.per_group) as u32,
                y_end: bin_of(&self.row_edges, (p.row_start + p.rows - 1) as u32) + 1,
            };
            row_max_base += p.rows as u32;
        }
        self.gpu.queue.write_buffer(
            &self.params_buf,
            0,
            bytemuck::cast_slice(&self.params[..pieces.len()]),
        );
    }

    /// Records the row-maxima and pool dispatches of `pieces` (parameters already written),
    /// reading rows through `bind_group`. All pieces go in one dispatch, piece j as workgroup
    /// z = j: they belong to different cells of one accumulator group (`push_with` keeps it
    /// so), so they never share an accumulator, and one large dispatch keeps a big GPU busy
    /// where a piece alone would not.
    fn record(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        pieces: &[Piece],
        bind_group: &wgpu::BindGroup,
    ) {
        debug_assert!(pieces
            .windows(2)
            .all(|w| w[0].cell / self.per_group == w[1].cell / self.per_group));
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("attnviz.pool.pass"),
            timestamp_writes: None,
        });
        let pipes = self
            .pipes
            .specialized(&self.gpu.device, self.dtype, self.options);
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
        pass.set_pipeline(&pipes.pool);
        pass.dispatch_workgroups(self.geometry.pooled_w.div_ceil(64), bins, n);
    }

    /// The accumulator buffer holding `cell`'s pooled pixels, and the cell's index in it, for
    /// producers that fold into the accumulators themselves (src/qk/tiled.rs); the cell then
    /// counts as pooled.
    pub(crate) fn resident_accum(&mut self, cell: usize) -> (wgpu::Buffer, usize) {
        self.pushed = true;
        let g = &self.groups[cell / self.per_group];
        (g.accum.clone(), cell % self.per_group)
    }

    /// Pools `rows` rows of `cell` from `row_start` that are already on the GPU: `data` holds
    /// them in the ingest's dtype from byte `offset` (a multiple of 4) on, and must be a
    /// STORAGE buffer whose size is a multiple of 16 (the shader reads 16-byte words) and fits
    /// one storage binding. Rows pushed before are pooled first, so each cell's rows still fold
    /// in order. This is the hook for producers that compute attention on the GPU: no copy, no
    /// host round trip.
    pub(crate) fn pool_resident(
        &mut self,
        cell: usize,
        row_start: usize,
        rows: usize,
        data: &wgpu::Buffer,
        offset: u64,
    ) -> Result<()> {
        self.check_rows(cell, row_start, rows)?;
        self.pushed = true;
        let bytes = (rows * self.row_bytes) as u64;
        let size = data.size();
        let fault = if !data.usage().contains(wgpu::BufferUsages::STORAGE) {
            Some("is not a STORAGE buffer".to_string())
        } else if !size.is_multiple_of(16) || size > self.gpu.max_binding() {
            Some(format!(
                "is {size} bytes: needs a multiple of 16, at most {}",
                self.gpu.max_binding()
            ))
        } else if !offset.is_multiple_of(4) || offset + bytes > size {
            Some(format!(
                "does not hold {bytes} bytes of rows at byte offset {offset} (a multiple of 4)"
            ))
        } else {
            None
        };
        if let Some(fault) = fault {
            return Err(Error::BadOption(format!(
                "resident rows: the buffer {fault}"
            )));
        }
        self.flush()?;
        let bind_group = self.bind_group(data, &self.groups[cell / self.per_group]);
        // Pieces of at most a chunk's rows (the row maxima buffer holds that many), one per
        // submission: pieces of one cell must not share a dispatch.
        let step = self.max_rows_per_fill();
        let mut done = 0;
        while done < rows {
            let n = step.min(rows - done);
            let piece = Piece {
                cell,
                row_start: row_start + done,
                rows: n,
                offset: offset as usize + done * self.row_bytes,
            };
            done += n;
            self.write_params(&[piece]);
            let mut encoder =
                self.gpu
                    .device
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                        label: Some("attnviz.pool.resident"),
                    });
            self.record(&mut encoder, &[piece], &bind_group);
            self.gpu.queue.submit([encoder.finish()]);
        }
        self.consumed += bytes;
        Ok(())
    }

    /// Pools what is left and reduces every cell to its statistics.
    pub(crate) fn finish(mut self) -> Result<PooledCells> {
        self.flush()?;
        let px = self.geometry.pooled_pixels();
        let causal = match self.options.causal {
            Causal::Off => false,
            Causal::On => true,
            Causal::Auto => {
                let mut upper_seen = false;
                for g in &self.groups {
                    let flags: Vec<u32> = bytemuck::pod_collect_to_vec(&self.gpu.read_buffer(
                        &g.flags,
                        0,
                        g.cells as u64 * 4,
                    )?);
                    upper_seen |= flags.iter().any(|&f| f != 0);
                }
                let detected = !upper_seen && has_upper_triangle(self.queries, self.keys);
                if !detected {
                    self.fold_masked_zeros()?;
                }
                detected
            }
        };
        let stats = if self.pushed {
            head_stats(self.gpu, self.pipes, &self.groups, px)?
        } else {
            vec![HeadStats::EMPTY; self.groups.iter().map(|g| g.cells).sum()]
        };
        self.pipes.keep_slots(std::mem::take(&mut self.slots));
        Ok(PooledCells {
            geometry: self.geometry,
            groups: std::mem::take(&mut self.groups),
            stats,
            causal,
        })
    }

    /// Puts the zeros set aside above the diagonal back into every accumulator.
    fn fold_masked_zeros(&mut self) -> Result<()> {
        let px = self.geometry.pooled_pixels();
        let gpu = self.gpu;
        for (gi, g) in self.groups.iter().enumerate() {
            let total = (g.cells * px) as u32;
            let params = PieceParams {
                row_count: total,
                ..Zeroable::zeroed()
            };
            gpu.queue
                .write_buffer(&self.params_buf, 0, bytemuck::bytes_of(&params));
            let mut encoder = gpu
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("attnviz.pool.fold_encoder"),
                });
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("attnviz.pool.fold_pass"),
                    timestamp_writes: None,
                });
                pass.set_pipeline(&self.pipes.fold);
                pass.set_bind_group(0, &self.fold_bind_groups[gi], &[]);
                let (x, y) =
                    dispatch_1d(total, 256, gpu.limits.max_compute_workgroups_per_dimension);
                pass.dispatch_workgroups(x, y, 1);
            }
            gpu.queue.submit([encoder.finish()]);
        }
        Ok(())
    }
}

/// Accumulators for `cells` heads with nothing pooled into them: every pixel empty (drawn as
/// background), every head without statistics. What a window shows before the input is read.
#[allow(clippy::too_many_arguments)]
pub(crate) fn unpooled_cells(
    gpu: &Gpu,
    pipes: &PoolPipelines,
    cells: usize,
    queries: usize,
    keys: usize,
    dtype: DType,
    geometry: CellGeometry,
    options: PoolOptions,
    chunk_target: u64,
) -> Result<PooledCells> {
    let options = PoolOptions {
        causal: Causal::Off,
        ..options
    };
    Ingest::new(
        gpu,
        pipes,
        cells,
        queries,
        keys,
        dtype,
        geometry,
        options,
        chunk_target,
    )?
    .finish()
}

/// Pools `cells` (each a 0-based (layer, head) of `source`) into `geometry`-sized accumulators,
/// reading each row block straight into mapped GPU memory. `progress` hears bytes consumed.
#[allow(clippy::too_many_arguments)]
pub(crate) fn pool_cells(
    gpu: &Gpu,
    pipes: &PoolPipelines,
    source: &dyn AttentionSource,
    cells: &[(usize, usize)],
    geometry: CellGeometry,
    options: PoolOptions,
    chunk_target: u64,
    progress: Option<&(dyn Fn(u64, u64) + Send + Sync)>,
) -> Result<PooledCells> {
    gpu.scoped("pooling", || {
        let s = source.shape();
        let mut ingest = Ingest::new(
            gpu,
            pipes,
            cells.len(),
            s.queries,
            s.keys,
            source.dtype(),
            geometry,
            options,
            chunk_target,
        )
        .map_err(|e| e.about(source.name()))?;
        let total = (cells.len() * s.queries * s.keys * source.dtype().size()) as u64;
        let step = ingest.max_rows_per_fill();
        for (i, &(layer, head)) in cells.iter().enumerate() {
            let mut row = 0;
            while row < s.queries {
                let n = step.min(s.queries - row);
                ingest.push_with(i, row, n, |start, dst| {
                    source.read_rows(layer, head, start, dst)
                })?;
                row += n;
                if let Some(p) = progress {
                    p(ingest.consumed, total);
                }
            }
        }
        ingest.finish()
    })
}

impl crate::render::Engine {
    /// The statistics pass again on resident pooled cells (pooling already ran it once): lets
    /// benchmarks time the reduction without the input.
    pub fn pooled_stats(&self, pooled: &PooledCells) -> Result<Vec<HeadStats>> {
        let (gpu, pipes) = self.parts();
        head_stats(gpu, pipes, &pooled.groups, pooled.geometry.pooled_pixels())
    }
}

/// Reduces every cell's accumulators to its [`HeadStats`] and reads them back.
fn head_stats(
    gpu: &Gpu,
    pipes: &PoolPipelines,
    groups: &[CellGroup],
    px: usize,
) -> Result<Vec<HeadStats>> {
    let device = &gpu.device;
    let cells: usize = groups.iter().map(|g| g.cells).sum();
    let stats_buf = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("attnviz.stats.out"),
        size: (cells.max(1) * std::mem::size_of::<HeadStats>()) as u64,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let blocks = px.div_ceil(STATS_BLOCK);
    let max_cells = groups.iter().map(|g| g.cells).max().unwrap_or(1);
    let partials = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("attnviz.stats.partials"),
        size: (max_cells.max(1) * blocks.max(1) * std::mem::size_of::<HeadStats>()) as u64,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
        label: Some("attnviz.stats.encoder"),
    });
    let mut keep = Vec::new();
    for g in groups {
        let params = StatsParams {
            pixels_per_head: px as u32,
            first_head: g.first_cell as u32,
            blocks_per_head: blocks as u32,
            _pad: 0,
        };
        let params_buf = storage_buffer_init(
            device,
            "attnviz.stats.params",
            bytemuck::bytes_of(&params),
            wgpu::BufferUsages::UNIFORM,
        );
        let bg = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("attnviz.stats.bind_group"),
            layout: &pipes.stats_layout,
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: params_buf.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: g.accum.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: stats_buf.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 3,
                    resource: partials.as_entire_binding(),
                },
            ],
        });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("attnviz.stats.pass"),
                timestamp_writes: None,
            });
            pass.set_bind_group(0, &bg, &[]);
            pass.set_pipeline(&pipes.block_stats);
            pass.dispatch_workgroups(blocks as u32, g.cells as u32, 1);
            pass.set_pipeline(&pipes.stats);
            pass.dispatch_workgroups(g.cells as u32, 1, 1);
        }
        keep.push(params_buf);
    }
    gpu.queue.submit([encoder.finish()]);
    let bytes = gpu.read_buffer(
        &stats_buf,
        0,
        (cells * std::mem::size_of::<HeadStats>()) as u64,
    )?;
    Ok(bytemuck::pod_collect_to_vec(&bytes))
}

/// Moves bytes from host memory into GPU-visible buffers through the same double-buffered
/// mapped slots the ingest uses (plus the staging copy on discrete GPUs), with no pooling: the
/// upload ceiling of the engine on this adapter. The slots are made once, as an ingest reuses
/// them, so a run times the steady state rather than the first map's zero-fill.
pub struct UploadBench {
    chunk: usize,
    slots: Vec<Slot>,
    device_data: Option<wgpu::Buffer>,
    host: Vec<u8>,
}

impl UploadBench {
    pub fn new(gpu: &Gpu) -> UploadBench {
        let chunk = gpu.max_binding().min(CHUNK_TARGET) as usize / 4 * 4;
        UploadBench {
            chunk,
            slots: (0..2)
                .map(|_| Slot::new(gpu, chunk as u64, slot_usage(gpu)))
                .collect(),
            device_data: device_copy(gpu, chunk as u64),
            host: vec![0x3c; chunk],
        }
    }

    /// Uploads `total` bytes and waits for the GPU.
    pub fn run(&mut self, gpu: &Gpu, total: u64) -> Result<()> {
        let mut sent = 0u64;
        let mut i = 0;
        while sent < total {
            let slot = &mut self.slots[i % 2];
            slot.wait_mapped(gpu)?;
            let n = self.chunk.min((total - sent) as usize);
            {
                let mut view = slot
                    .host
                    .get_mapped_range_mut(..n as u64)
                    .map_err(|e| Error::Gpu(format!("mapping an upload buffer: {e}")))?;
                view.slice(..).copy_from_slice(&self.host[..n]);
            }
            slot.host.unmap();
            let mut encoder = gpu.device.create_command_encoder(&Default::default());
            if let Some(data) = &self.device_data {
                encoder.copy_buffer_to_buffer(&slot.host, 0, data, 0, n as u64);
            }
            let submission = gpu.queue.submit([encoder.finish()]);
            slot.remap(submission);
            sent += n as u64;
            i += 1;
        }
        gpu.wait()
    }
}

/// Seconds to pool `cells` heads of `queries` × `keys` f32 entries that are already in device
/// memory (one buffer of a chunk's rows, pooled again for every block): the GPU-side pooling
/// throughput, without the host-to-device copy that bounds [`pool_cells`] on discrete GPUs.
pub(crate) fn resident_pool_seconds(
    gpu: &Gpu,
    pipes: &PoolPipelines,
    cells: usize,
    queries: usize,
    keys: usize,
    geometry: CellGeometry,
) -> Result<f64> {
    let mut ingest = Ingest::new(
        gpu,
        pipes,
        cells,
        queries,
        keys,
        DType::F32,
        geometry,
        PoolOptions::default(),
        CHUNK_TARGET,
    )?;
    let step = ingest.max_rows_per_fill();
    let data = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("attnviz.bench.resident_rows"),
        size: ((step * keys * 4) as u64).next_multiple_of(16),
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    gpu.wait()?;
    let start = std::time::Instant::now();
    for cell in 0..cells {
        for row in (0..queries).step_by(step) {
            ingest.pool_resident(cell, row, step.min(queries - row), &data, 0)?;
        }
    }
    gpu.wait()?;
    Ok(start.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtype_ids_match_the_shader() {
        assert_eq!(DType::F32.shader_id(), 0);
        assert_eq!(DType::F16.shader_id(), 1);
        assert_eq!(DType::BF16.shader_id(), 2);
        assert_eq!(std::mem::size_of::<PieceParams>(), 48);
        assert!(has_upper_triangle(4, 4));
        assert!(!has_upper_triangle(1, 4));
        assert!(has_upper_triangle(2, 4));
    }
}
