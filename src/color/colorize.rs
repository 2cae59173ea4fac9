//! Normalization and colormap lookup on the GPU: pooled accumulators to packed RGBA. This is the
//! interactive path: a colormap, normalization or reduction change re-runs only this pass over
//! the resident pooled data, with buffers and bind groups made once.

use bytemuck::{Pod, Zeroable};

use crate::color::colormap::{pack_rgba, Colormap, BAD_COLOR};
use crate::error::Result;
use crate::gpu::{dispatch_1d, Gpu};
use crate::pool::accum::{AccumLayout, Reduce};
use std::sync::OnceLock;

use crate::color::scale::ColorScale;
use crate::gpu::kernel::{Binding, Kernel};
use crate::gpu::shaders;
use crate::pool::PooledCells;

/// Pixels each invocation colours (`PER_INVOCATION` in `shaders/colorize.wgsl`).
const PER_INVOCATION: u32 = 8;

/// Mirrors `ColorParams` in `shaders/colorize.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
struct ColorParams {
    pixels_per_head: u32,
    first_head: u32,
    bad_color: u32,
    gamma: f32,
}

/// Reductions and scales the shader is specialized for (`REDUCE`, `SCALE`).
const REDUCES: usize = 4;
const SCALES: usize = 5;

pub(crate) struct ColorizePipeline {
    kernel: Kernel,
    /// One pipeline per (reduce, scale, accumulator layout), compiled on first use: a figure
    /// needs one, and a software adapter spends tens of milliseconds compiling each.
    pipelines: [[[OnceLock<wgpu::ComputePipeline>; 2]; SCALES]; REDUCES],
}

impl ColorizePipeline {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        use Binding::*;
        let kernel = Kernel::compute(
            device,
            "attnviz.colorize",
            shaders::COLORIZE,
            &[Uniform, BufReadOnly, BufReadOnly, BufReadOnly, Buffer],
        );
        ColorizePipeline {
            kernel,
            pipelines: Default::default(),
        }
    }

    fn pipeline(
        &self,
        device: &wgpu::Device,
        reduce: Reduce,
        scale: &ColorScale,
        layout: AccumLayout,
    ) -> &wgpu::ComputePipeline {
        let (r, s) = (reduce.shader_id(), scale.shader_id());
        self.pipelines[r as usize][s as usize][layout.index()].get_or_init(|| {
            self.kernel.specialized(
                device,
                "colorize",
                &[("REDUCE", r as f64), ("SCALE", s as f64), layout.constant()],
            )
        })
    }
}

/// Packed RGBA colours of every pooled pixel, one buffer per accumulator group.
pub struct ColorizedCells {
    /// Per group: `cells * pooled_pixels` packed RGBA words; 0 marks "no data" (background).
    pub colors: Vec<wgpu::Buffer>,
    /// The colormap as 256 packed words; the compositor draws the colorbar from it.
    pub lut: wgpu::Buffer,
    ranges: wgpu::Buffer,
    params: Vec<wgpu::Buffer>,
    bind_groups: Vec<wgpu::BindGroup>,
    /// (workgroups x, y) per group
    dispatch: Vec<(u32, u32, u32)>,
}

impl ColorizedCells {
    /// Allocates the colour buffers for `pooled`; [`ColorizedCells::update`] fills them.
    pub(crate) fn new(gpu: &Gpu, pipe: &ColorizePipeline, pooled: &PooledCells) -> ColorizedCells {
        let device = &gpu.device;
        let px = pooled.geometry.pooled_pixels();
        let buffer = |label: &str, size: u64, usage: wgpu::BufferUsages| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: size.max(4),
                usage,
                mapped_at_creation: false,
            })
        };
        let lut = buffer(
            "attnviz.colorize.lut",
            1024,
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        );
        let ranges = buffer(
            "attnviz.colorize.ranges",
            (pooled.cells() * 16) as u64,
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        );
        let mut out = ColorizedCells {
            colors: Vec::new(),
            lut,
            ranges,
            params: Vec::new(),
            bind_groups: Vec::new(),
            dispatch: Vec::new(),
        };
        for g in &pooled.groups {
            let total = (g.cells * px) as u32;
            let colors = buffer(
                "attnviz.colorize.colors",
                total as u64 * 4,
                wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            );
            let params = buffer(
                "attnviz.colorize.params",
                std::mem::size_of::<ColorParams>() as u64,
                wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            );
            let bind_group = pipe.kernel.bind_group(
                device,
                &[
                    params.as_entire_binding(),
                    g.accum.as_entire_binding(),
                    out.ranges.as_entire_binding(),
                    out.lut.as_entire_binding(),
                    colors.as_entire_binding(),
                ],
            );
            let (x, z) = dispatch_1d(
                px as u32,
                256 * PER_INVOCATION,
                gpu.limits.max_compute_workgroups_per_dimension,
            );
            out.dispatch.push((x, g.cells as u32, z));
            out.colors.push(colors);
            out.params.push(params);
            out.bind_groups.push(bind_group);
        }
        out
    }

    /// Recolours every cell: `ranges` holds each cell's (lo, hi) in cell order, data units;
    /// `scale` maps them onto the colormap.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn update(
        &self,
        gpu: &Gpu,
        pipe: &ColorizePipeline,
        pooled: &PooledCells,
        ranges: &[[f32; 2]],
        scale: &ColorScale,
        reduce: Reduce,
        colormap: Colormap,
    ) -> Result<()> {
        let shader_ranges: Vec<[f32; 4]> = ranges.iter().map(|&r| scale.shader_range(r)).collect();
        gpu.scoped("colorize", || {
            let px = pooled.geometry.pooled_pixels() as u32;
            gpu.queue
                .write_buffer(&self.lut, 0, bytemuck::cast_slice(&colormap.packed()));
            gpu.queue
                .write_buffer(&self.ranges, 0, bytemuck::cast_slice(&shader_ranges));
            for (i, g) in pooled.groups.iter().enumerate() {
                let params = ColorParams {
                    pixels_per_head: px,
                    first_head: g.first_cell as u32,
                    bad_color: pack_rgba(BAD_COLOR),
                    gamma: scale.scale.gamma(),
                };
                gpu.queue
                    .write_buffer(&self.params[i], 0, bytemuck::bytes_of(&params));
            }
            let mut encoder = gpu
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("attnviz.colorize.encoder"),
                });
            {
                let mut pass = gpu.compute_pass(&mut encoder, "attnviz.colorize.pass");
                pass.set_pipeline(pipe.pipeline(&gpu.device, reduce, scale, pooled.layout()));
                for (bg, &(x, y, z)) in self.bind_groups.iter().zip(&self.dispatch) {
                    pass.set_bind_group(0, bg, &[]);
                    pass.dispatch_workgroups(x, y, z);
                }
            }
            gpu.submit([encoder.finish()]);
            Ok(())
        })
    }

    /// Reads every cell's packed colours back (for `--tiles` and tests).
    pub fn read(&self, gpu: &Gpu, pooled: &PooledCells) -> Result<Vec<Vec<u32>>> {
        let px = pooled.geometry.pooled_pixels();
        let mut out = Vec::with_capacity(pooled.cells());
        for (buf, g) in self.colors.iter().zip(&pooled.groups) {
            let bytes = gpu.read_buffer(buf, 0, (g.cells * px * 4) as u64)?;
            let words: Vec<u32> = bytemuck::pod_collect_to_vec(&bytes);
            out.extend(words.chunks(px).map(|c| c.to_vec()));
        }
        Ok(out)
    }
}
