//! Ingest and pooling on the GPU: row blocks of each head are read from the source straight into
//! mapped GPU buffers (double-buffered, so the next block is read while the GPU pools the last),
//! pooled into per-cell accumulators, and reduced to per-head statistics. Memory on both sides is
//! bounded by the chunk size and the output, never by the input.

use std::num::NonZeroU64;
use std::sync::{Arc, Mutex};

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::geometry::{bin_edges, bin_of, CellGeometry};
use crate::gpu::{storage_buffer_init, Gpu};
use crate::norm::{Accum, HeadStats};
use crate::source::AttentionSource;

/// Default upper bound on one upload chunk: large enough to amortize a submission, small enough
/// that two of them stay cheap even on the smallest adapters.
pub const CHUNK_TARGET: u64 = 64 << 20;
/// Pieces (head row ranges) per chunk; bounds the parameter buffer.
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
    dtype: u32,
    flags: u32,
    causal_offset: i32,
    _pad: [u32; 2],
}

const FLAG_ROW_NORM: u32 = 1;
const FLAG_CAUSAL: u32 = 2;

/// Mirrors `StatsParams` in `shaders/stats.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
struct StatsParams {
    pixels_per_head: u32,
    first_head: u32,
    _pad: [u32; 2],
}

/// What pooling does besides reducing: options that change which entries count and how.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolOptions {
    /// Divide each query row by its own maximum before pooling (`--norm row`).
    pub row_norm: bool,
    /// Leave out entries above the causal diagonal (bottom-right aligned when Q < K).
    pub causal: bool,
}

impl PoolOptions {
    fn flags(&self) -> u32 {
        (if self.row_norm { FLAG_ROW_NORM } else { 0 })
            | (if self.causal { FLAG_CAUSAL } else { 0 })
    }
}

/// The compiled pooling and statistics pipelines; built once per engine.
pub(crate) struct PoolPipelines {
    layout: wgpu::BindGroupLayout,
    pool: wgpu::ComputePipeline,
    row_maxima: wgpu::ComputePipeline,
    stats_layout: wgpu::BindGroupLayout,
    stats: wgpu::ComputePipeline,
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
        compilation_options: Default::default(),
        cache: None,
    })
}

impl PoolPipelines {
    pub(crate) fn new(device: &wgpu::Device) -> PoolPipelines {
        let c = wgpu::ShaderStages::COMPUTE;
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("attnviz.pool.layout"),
            entries: &[
                uniform_entry(0, true, c),
                storage_entry(1, true, c),
                storage_entry(2, true, c),
                storage_entry(3, true, c),
                storage_entry(4, false, c),
                storage_entry(5, false, c),
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
            ],
        });
        let stats_module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("attnviz.stats.shader"),
            source: wgpu::ShaderSource::Wgsl(STATS_WGSL.into()),
        });
        PoolPipelines {
            pool: compute_pipeline(device, "attnviz.pool.pipeline", &layout, &module, "pool"),
            row_maxima: compute_pipeline(
                device,
                "attnviz.pool.row_maxima",
                &layout,
                &module,
                "row_maxima",
            ),
            stats: compute_pipeline(
                device,
                "attnviz.stats.pipeline",
                &stats_layout,
                &stats_module,
                "head_stats",
            ),
            layout,
            stats_layout,
        }
    }
}

/// Accumulators of a run of consecutive cells, in one buffer that fits a storage binding.
pub struct CellGroup {
    pub first_cell: usize,
    pub cells: usize,
    pub accum: wgpu::Buffer,
}

/// Every selected head pooled to its cell, resident on the GPU, with its statistics.
pub struct PooledCells {
    pub geometry: CellGeometry,
    pub groups: Vec<CellGroup>,
    /// One per cell, in cell order.
    pub stats: Vec<HeadStats>,
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

/// One head's rows inside an upload chunk.
#[derive(Clone, Copy, Debug)]
struct Piece {
    cell: usize,
    row_start: usize,
    rows: usize,
    /// Byte offset inside the chunk.
    offset: usize,
}

/// Splits the selected heads into chunks of whole rows that fit `chunk_bytes`.
fn plan_chunks(
    cells: usize,
    queries: usize,
    row_bytes: usize,
    chunk_bytes: usize,
) -> Vec<Vec<Piece>> {
    let mut chunks = Vec::new();
    let mut current: Vec<Piece> = Vec::new();
    let mut used = 0usize;
    for cell in 0..cells {
        let mut row = 0;
        while row < queries {
            let room = (chunk_bytes - used) / row_bytes;
            if room == 0 || current.len() == MAX_PIECES {
                chunks.push(std::mem::take(&mut current));
                used = 0;
                continue;
            }
            let rows = room.min(queries - row);
            current.push(Piece {
                cell,
                row_start: row,
                rows,
                offset: used,
            });
            // f16 pieces start on 4-byte boundaries too, so every piece's first element is
            // addressable as a whole word plus a half.
            used += (rows * row_bytes).next_multiple_of(4);
            row += rows;
        }
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
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

impl Slot {
    fn new(gpu: &Gpu, size: u64, usage: wgpu::BufferUsages, label: &str) -> Slot {
        let host = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
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
        match self.mapped.lock().expect("map state").clone() {
            Some(state) => state.map_err(|e| Error::Gpu(format!("mapping an upload buffer: {e}"))),
            None => Err(Error::Gpu("upload buffer was never mapped back".into())),
        }
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

/// Pools `cells` (each a 0-based (layer, head) of `source`) into `geometry`-sized accumulators.
pub(crate) fn pool_cells(
    gpu: &Gpu,
    pipes: &PoolPipelines,
    source: &dyn AttentionSource,
    cells: &[(usize, usize)],
    geometry: CellGeometry,
    options: PoolOptions,
    chunk_target: u64,
) -> Result<PooledCells> {
    gpu.scoped("pooling", || {
        pool_cells_unscoped(gpu, pipes, source, cells, geometry, options, chunk_target)
    })
}

fn pool_cells_unscoped(
    gpu: &Gpu,
    pipes: &PoolPipelines,
    source: &dyn AttentionSource,
    cells: &[(usize, usize)],
    geometry: CellGeometry,
    options: PoolOptions,
    chunk_target: u64,
) -> Result<PooledCells> {
    let device = &gpu.device;
    let shape = source.shape();
    let dtype = source.dtype();
    let (queries, keys) = (shape.queries, shape.keys);
    let row_bytes = keys * dtype.size();
    let max_binding = gpu.max_binding();
    let chunk_bytes = (max_binding.min(chunk_target).max(4) / 4 * 4) as usize;
    if row_bytes > chunk_bytes {
        return Err(Error::BadOption(format!(
            "{}: one row of {keys} keys ({row_bytes} bytes) exceeds the GPU's {chunk_bytes}-byte storage binding",
            source.name()
        )));
    }
    if queries > u32::MAX as usize || keys > u32::MAX as usize {
        return Err(Error::BadOption(format!(
            "{}: heads larger than 2^32 rows or keys are not supported",
            source.name()
        )));
    }

    // Accumulator groups, each within one storage binding.
    let px = geometry.pooled_pixels();
    let cell_bytes = (px * std::mem::size_of::<Accum>()) as u64;
    if cell_bytes > max_binding {
        return Err(Error::BadOption(format!(
            "a {}x{} pooled cell needs {cell_bytes} bytes, over the GPU's {max_binding}-byte storage binding: use a smaller --cell",
            geometry.pooled_w, geometry.pooled_h
        )));
    }
    let per_group = ((max_binding / cell_bytes) as usize).max(1);
    // Zero-filled by wgpu; the shader treats a zero count as "no extremes yet", so nothing the
    // size of the output is staged on the host.
    let groups: Vec<CellGroup> = (0..cells.len())
        .step_by(per_group)
        .map(|first| {
            let n = per_group.min(cells.len() - first);
            CellGroup {
                first_cell: first,
                cells: n,
                accum: device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("attnviz.pool.accum"),
                    size: n as u64 * cell_bytes,
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                }),
            }
        })
        .collect();

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

    let chunks = plan_chunks(cells.len(), queries, row_bytes, chunk_bytes);
    let largest = chunks
        .iter()
        .map(|c| {
            c.last()
                .map_or(0, |p| p.offset + (p.rows * row_bytes).next_multiple_of(4))
        })
        .max()
        .unwrap_or(4) as u64;
    let max_rows = chunks.iter().flatten().map(|p| p.rows).max().unwrap_or(1);
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

    // Upload slots: mapped storage on unified memory, staging + one storage buffer otherwise.
    let slots_usage = if gpu.mappable_storage {
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::MAP_WRITE
    } else {
        wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::MAP_WRITE
    };
    let slot_count = chunks.len().min(2);
    let mut slots: Vec<Slot> = (0..slot_count)
        .map(|_| Slot::new(gpu, largest, slots_usage, "attnviz.pool.upload"))
        .collect();
    let device_data = (!gpu.mappable_storage).then(|| {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("attnviz.pool.data"),
            size: largest,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    });

    let align = std::mem::size_of::<PieceParams>()
        .next_multiple_of(gpu.limits.min_uniform_buffer_offset_alignment as usize);
    let params_buf = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("attnviz.pool.params"),
        size: (align * MAX_PIECES) as u64,
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    // Bind groups for every (slot, group) pair, made once.
    let bind_groups: Vec<Vec<wgpu::BindGroup>> = (0..slot_count)
        .map(|s| {
            let data = device_data.as_ref().unwrap_or(&slots[s].host);
            groups
                .iter()
                .map(|g| {
                    device.create_bind_group(&wgpu::BindGroupDescriptor {
                            label: Some("attnviz.pool.bind_group"),
                            layout: &pipes.layout,
                            entries: &[
                                wgpu::BindGroupEntry {
                                    binding: 0,
                                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                                        buffer: &params_buf,
                                        offset: 0,
                                        size: NonZeroU64::new(
                                            std::mem::size_of::<PieceParams>() as u64
                                        ),
                                    }),
                                },
                                wgpu::BindGroupEntry {
                                    binding: 1,
                                    resource: data.as_entire_binding(),
                                },
                                wgpu::BindGroupEntry {
                                    binding: 2,
                                    resource: row_edges_buf.as_entire_binding(),
                                },
                                wgpu::BindGroupEntry {
                                    binding: 3,
                                    resource: col_edges_buf.as_entire_binding(),
                                },
                                wgpu::BindGroupEntry {
                                    binding: 4,
                                    resource: g.accum.as_entire_binding(),
                                },
                                wgpu::BindGroupEntry {
                                    binding: 5,
                                    resource: row_max_buf.as_entire_binding(),
                                },
                            ],
                        })
                })
                .collect()
        })
        .collect();

    let group_of = |cell: usize| cell / per_group;
    let mut params = vec![0u8; align * MAX_PIECES];
    for (i, chunk) in chunks.iter().enumerate() {
        let s = i % slot_count;
        let slot = &mut slots[s];
        slot.wait_mapped(gpu)?;
        let bytes = chunk
            .last()
            .map_or(0, |p| p.offset + (p.rows * row_bytes).next_multiple_of(4))
            as u64;
        {
            let mut view = slot
                .host
                .get_mapped_range_mut(..bytes)
                .map_err(|e| Error::Gpu(format!("mapping an upload buffer: {e}")))?;
            let mut whole = view.slice(..);
            let ptr = whole.as_raw_ptr();
            // SAFETY: the mapping is ours alone until unmap and `bytes` long; the source writes
            // each piece's range exactly once and never reads it back.
            let dst: &mut [u8] =
                unsafe { std::slice::from_raw_parts_mut(ptr.as_ptr() as *mut u8, bytes as usize) };
            for p in chunk {
                let (layer, head) = cells[p.cell];
                source.read_rows(
                    layer,
                    head,
                    p.row_start,
                    &mut dst[p.offset..p.offset + p.rows * row_bytes],
                )?;
            }
        }
        slot.host.unmap();

        for (j, p) in chunk.iter().enumerate() {
            let (g, local) = (group_of(p.cell), p.cell % per_group);
            let y0 = bin_of(&row_edges, p.row_start as u32);
            let piece = PieceParams {
                elem_offset: (p.offset / dtype.size()) as u32,
                row_start: p.row_start as u32,
                row_count: p.rows as u32,
                keys: keys as u32,
                accum_base: (local * px) as u32,
                pooled_w: geometry.pooled_w,
                y_start: y0,
                dtype: dtype.shader_id(),
                flags: options.flags(),
                causal_offset: (keys as i64 - queries as i64) as i32,
                _pad: [0; 2],
            };
            debug_assert!(g < groups.len());
            params[j * align..j * align + std::mem::size_of::<PieceParams>()]
                .copy_from_slice(bytemuck::bytes_of(&piece));
        }
        gpu.queue
            .write_buffer(&params_buf, 0, &params[..chunk.len() * align]);

        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("attnviz.pool.encoder"),
        });
        if let Some(data) = &device_data {
            encoder.copy_buffer_to_buffer(&slot.host, 0, data, 0, bytes);
        }
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("attnviz.pool.pass"),
                timestamp_writes: None,
            });
            for (j, p) in chunk.iter().enumerate() {
                let bg = &bind_groups[s][group_of(p.cell)];
                let offset = (j * align) as u32;
                if options.row_norm {
                    pass.set_pipeline(&pipes.row_maxima);
                    pass.set_bind_group(0, bg, &[offset]);
                    pass.dispatch_workgroups((p.rows as u32).div_ceil(64), 1, 1);
                }
                let y0 = bin_of(&row_edges, p.row_start as u32);
                let y1 = bin_of(&row_edges, (p.row_start + p.rows - 1) as u32);
                pass.set_pipeline(&pipes.pool);
                pass.set_bind_group(0, bg, &[offset]);
                pass.dispatch_workgroups(geometry.pooled_w.div_ceil(64), y1 - y0 + 1, 1);
            }
        }
        let submission = gpu.queue.submit([encoder.finish()]);
        slot.remap(submission);
    }

    let stats = head_stats(gpu, pipes, &groups, px)?;
    Ok(PooledCells {
        geometry,
        groups,
        stats,
    })
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
    let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
        label: Some("attnviz.stats.encoder"),
    });
    let mut keep = Vec::new();
    for g in groups {
        let params = StatsParams {
            pixels_per_head: px as u32,
            first_head: g.first_cell as u32,
            _pad: [0; 2],
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
            ],
        });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("attnviz.stats.pass"),
                timestamp_writes: None,
            });
            pass.set_pipeline(&pipes.stats);
            pass.set_bind_group(0, &bg, &[]);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::DType;

    #[test]
    fn chunks_hold_whole_rows_within_budget() {
        let chunks = plan_chunks(3, 10, 40, 130);
        for c in &chunks {
            let end = c.last().unwrap().offset + c.last().unwrap().rows * 40;
            assert!(end <= 130);
        }
        let mut rows = [0usize; 3];
        for p in chunks.iter().flatten() {
            assert_eq!(p.row_start, rows[p.cell]);
            rows[p.cell] += p.rows;
        }
        assert_eq!(rows, [10, 10, 10]);
    }

    #[test]
    fn f16_pieces_start_word_aligned() {
        for p in plan_chunks(4, 3, 6, 64).iter().flatten() {
            assert_eq!(p.offset % 4, 0);
        }
    }

    #[test]
    fn dtype_ids_match_the_shader() {
        assert_eq!(DType::F32.shader_id(), 0);
        assert_eq!(DType::F16.shader_id(), 1);
        assert_eq!(DType::BF16.shader_id(), 2);
        assert_eq!(std::mem::size_of::<PieceParams>(), 48);
    }
}
