//! The statistics pass: every cell's accumulators reduced to its [`HeadStats`], in two passes
//! over blocks of pixels.

use bytemuck::{Pod, Zeroable};

use crate::error::Result;
use crate::gpu::{storage_buffer_init, Gpu};
use crate::pool::accum::HeadStats;
use crate::pool::groups::CellGroup;
use crate::pool::pipelines::PoolPipelines;

/// Mirrors `StatsParams` in `shaders/stats.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub(super) struct StatsParams {
    pub(super) pixels_per_head: u32,
    pub(super) first_head: u32,
    pub(super) blocks_per_head: u32,
    pub(super) _pad: u32,
}

/// Pixels one `block_stats` workgroup reduces (`BLOCK` in `shaders/stats.wgsl`).
pub(super) const STATS_BLOCK: usize = 8192;

/// Reduces every cell's accumulators to its [`HeadStats`] and reads them back.
pub(crate) fn head_stats(
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
        let bg = pipes.stats_kernel.bind_group(
            device,
            &[
                params_buf.as_entire_binding(),
                g.accum.as_entire_binding(),
                stats_buf.as_entire_binding(),
                partials.as_entire_binding(),
            ],
        );
        {
            let mut pass = gpu.compute_pass(&mut encoder, "attnviz.stats.pass");
            pass.set_bind_group(0, &bg, &[]);
            pass.set_pipeline(
                pipes
                    .block_stats
                    .get(&pipes.stats_kernel, &gpu.device, g.layout),
            );
            pass.dispatch_workgroups(blocks as u32, g.cells as u32, 1);
            pass.set_pipeline(&pipes.head_stats);
            pass.dispatch_workgroups(g.cells as u32, 1, 1);
        }
        keep.push(params_buf);
    }
    gpu.submit([encoder.finish()]);
    let bytes = gpu.read_buffer(
        &stats_buf,
        0,
        (cells * std::mem::size_of::<HeadStats>()) as u64,
    )?;
    Ok(bytemuck::pod_collect_to_vec(&bytes))
}
