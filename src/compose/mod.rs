//! The render pass that draws the figure: heatmap cells, labels and colorbar as one instanced
//! quad draw per accumulator group, into any colour target (an offscreen texture for export, a
//! surface for the window). The quad list is plain data, also drawn by `cpu::draw_quads`.

use std::ops::Range;

use bytemuck::{Pod, Zeroable};

use crate::color::colorize::ColorizedCells;
use crate::color::colormap::pack_rgba;
use crate::error::Result;
use crate::figure::quads::{FigureQuads, Quad, KIND_UNDER};
use crate::gpu::kernel::{Binding, Kernel};
use crate::gpu::shaders;
use crate::gpu::Gpu;
use crate::pool::PooledCells;

mod copy;
pub mod target;

/// Mirrors `View` in `shaders/compose.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
struct ViewUniform {
    target_size: [f32; 2],
    background: u32,
    _pad: u32,
}
/// Compiled compose pipeline for one target format.
pub(crate) struct ComposePipeline {
    kernel: Kernel,
    /// One per quad kind (`KIND` in the shader), indexed by kind, and last `KIND_UNDER`'s.
    pipelines: Vec<wgpu::RenderPipeline>,
    pub format: wgpu::TextureFormat,
}

impl ComposePipeline {
    pub(crate) fn new(device: &wgpu::Device, format: wgpu::TextureFormat) -> Self {
        use Binding::*;
        let kernel = Kernel::new(
            device,
            "attnviz.compose",
            shaders::COMPOSE,
            &[Uniform, BufReadOnly, BufReadOnly, BufReadOnly, Texture],
            wgpu::ShaderStages::VERTEX_FRAGMENT,
        );
        let pl = kernel.pipeline_layout(device);
        let pipelines = (0..=KIND_UNDER)
            .map(|kind| {
                // (KIND_UNDER: source × (1 − target alpha) + target, exact in 8-bit unorm for
                // a target alpha of 0 or 1, the only ones a copied cell leaves)
                let under = wgpu::BlendComponent {
                    src_factor: wgpu::BlendFactor::OneMinusDstAlpha,
                    dst_factor: wgpu::BlendFactor::One,
                    operation: wgpu::BlendOperation::Add,
                };
                let blend = (kind == KIND_UNDER).then_some(wgpu::BlendState {
                    color: under,
                    alpha: under,
                });
                device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
                    label: Some("attnviz.compose.pipeline"),
                    layout: Some(&pl),
                    vertex: wgpu::VertexState {
                        module: &kernel.module,
                        entry_point: Some("vs_main"),
                        compilation_options: Default::default(),
                        buffers: &[],
                    },
                    primitive: wgpu::PrimitiveState::default(),
                    depth_stencil: None,
                    multisample: wgpu::MultisampleState::default(),
                    fragment: Some(wgpu::FragmentState {
                        module: &kernel.module,
                        entry_point: Some("fs_main"),
                        compilation_options: wgpu::PipelineCompilationOptions {
                            constants: &[("KIND", kind as f64)],
                            ..Default::default()
                        },
                        targets: &[Some(wgpu::ColorTargetState {
                            format,
                            blend,
                            write_mask: wgpu::ColorWrites::ALL,
                        })],
                    }),
                    multiview_mask: None,
                    cache: None,
                })
            })
            .collect();
        ComposePipeline {
            kernel,
            pipelines,
            format,
        }
    }
}

/// GPU resources for drawing one figure: quads, atlas and per-group bind groups.
pub struct Compositor {
    quads: wgpu::Buffer,
    view: wgpu::Buffer,
    bind_groups: Vec<wgpu::BindGroup>,
    /// (group, kind, instances): the figure's draws split into runs of one quad kind.
    runs: Vec<(usize, u32, Range<u32>)>,
    /// The figure's cells that export copies rather than draws, and the draws of the rest.
    copies: copy::CellCopies,
    background: [u8; 4],
    _atlas: wgpu::Texture,
}

impl Compositor {
    pub(crate) fn new(
        gpu: &Gpu,
        pipe: &ComposePipeline,
        figure: &FigureQuads,
        colors: &ColorizedCells,
        pooled: &PooledCells,
    ) -> Compositor {
        use wgpu::util::DeviceExt;
        let device = &gpu.device;
        let quads = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("attnviz.compose.quads"),
            contents: bytemuck::cast_slice(&figure.quads),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        });
        let view = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("attnviz.compose.view"),
            size: std::mem::size_of::<ViewUniform>() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let atlas = device.create_texture_with_data(
            &gpu.queue,
            &wgpu::TextureDescriptor {
                label: Some("attnviz.compose.atlas"),
                size: wgpu::Extent3d {
                    width: figure.atlas.width,
                    height: figure.atlas.height,
                    depth_or_array_layers: 1,
                },
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D2,
                format: wgpu::TextureFormat::R8Unorm,
                usage: wgpu::TextureUsages::TEXTURE_BINDING,
                view_formats: &[],
            },
            wgpu::util::TextureDataOrder::LayerMajor,
            &figure.atlas.coverage,
        );
        let atlas_view = atlas.create_view(&Default::default());
        let bind_groups = pooled
            .groups
            .iter()
            .enumerate()
            .map(|(g, _)| {
                pipe.kernel.bind_group(
                    device,
                    &[
                        view.as_entire_binding(),
                        quads.as_entire_binding(),
                        colors.colors[g].as_entire_binding(),
                        colors.lut.as_entire_binding(),
                        wgpu::BindingResource::TextureView(&atlas_view),
                    ],
                )
            })
            .collect();
        Compositor {
            quads,
            view,
            bind_groups,
            runs: kind_runs(&figure.quads, &figure.draws, &[]),
            copies: copy::CellCopies::new(figure, colors, pooled),
            background: figure.background,
            _atlas: atlas,
        }
    }

    /// Replaces the quads (same count or fewer), e.g. after the viewer pans.
    pub fn set_quads(&self, gpu: &Gpu, quads: &[Quad]) {
        gpu.queue
            .write_buffer(&self.quads, 0, bytemuck::cast_slice(quads));
    }

    /// Records the figure into `target` (`size` pixels), clearing it to the background first.
    pub(crate) fn draw(
        &self,
        gpu: &Gpu,
        pipe: &ComposePipeline,
        encoder: &mut wgpu::CommandEncoder,
        target: &wgpu::TextureView,
        size: (u32, u32),
    ) -> Result<()> {
        self.record(gpu, pipe, encoder, target, size, true, &self.runs)
    }

    /// Whether [`Compositor::draw_copying`] copies any cell into a target of `pipe`'s format.
    pub(crate) fn copies_cells(&self, pipe: &ComposePipeline) -> bool {
        pipe.format == wgpu::TextureFormat::Rgba8Unorm && !self.copies.is_empty()
    }

    /// [`Compositor::draw`] into `texture` (RGBA8, `size` pixels: the tile of the figure whose
    /// corner is at `origin`, or the whole figure at (0, 0)), the copyable cells copied rather
    /// than drawn, to the same bytes: what export records. The quads must be the figure's own
    /// moved by `-origin` (as made, or set with `set_quads`): the draws index them, and the
    /// copies are clipped to the tile.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn draw_copying(
        &self,
        gpu: &Gpu,
        pipe: &ComposePipeline,
        encoder: &mut wgpu::CommandEncoder,
        texture: &wgpu::Texture,
        view: &wgpu::TextureView,
        size: (u32, u32),
        origin: (u32, u32),
    ) -> Result<()> {
        self.record(gpu, pipe, encoder, view, size, true, &self.copies.runs)?;
        self.copies.record(encoder, texture, origin, size);
        if !self.copies.under.is_empty() {
            // (the background under the copied cells' empty pixels, over what the copies left)
            self.record(gpu, pipe, encoder, view, size, false, &self.copies.under)?;
        }
        Ok(())
    }

    /// Records the quads over what `target` already holds (the viewer's detail layer).
    pub(crate) fn draw_over(
        &self,
        gpu: &Gpu,
        pipe: &ComposePipeline,
        encoder: &mut wgpu::CommandEncoder,
        target: &wgpu::TextureView,
        size: (u32, u32),
    ) -> Result<()> {
        self.record(gpu, pipe, encoder, target, size, false, &self.runs)
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        gpu: &Gpu,
        pipe: &ComposePipeline,
        encoder: &mut wgpu::CommandEncoder,
        target: &wgpu::TextureView,
        size: (u32, u32),
        clear: bool,
        runs: &[(usize, u32, Range<u32>)],
    ) -> Result<()> {
        let uniform = ViewUniform {
            target_size: [size.0 as f32, size.1 as f32],
            background: pack_rgba(self.background),
            _pad: 0,
        };
        gpu.queue
            .write_buffer(&self.view, 0, bytemuck::bytes_of(&uniform));
        let bg = self.background.map(|c| c as f64 / 255.0);
        let mut pass = encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
            label: Some("attnviz.compose.pass"),
            color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                view: target,
                depth_slice: None,
                resolve_target: None,
                ops: wgpu::Operations {
                    load: if clear {
                        wgpu::LoadOp::Clear(wgpu::Color {
                            r: bg[0],
                            g: bg[1],
                            b: bg[2],
                            a: bg[3],
                        })
                    } else {
                        wgpu::LoadOp::Load
                    },
                    store: wgpu::StoreOp::Store,
                },
            })],
            depth_stencil_attachment: None,
            timestamp_writes: gpu.render_timestamps("attnviz.compose.pass"),
            occlusion_query_set: None,
            multiview_mask: None,
        });
        let (mut group, mut kind) = (None, None);
        for (g, k, range) in runs {
            if kind != Some(*k) {
                pass.set_pipeline(&pipe.pipelines[*k as usize]);
                kind = Some(*k);
            }
            if group != Some(*g) {
                pass.set_bind_group(0, &self.bind_groups[*g], &[]);
                group = Some(*g);
            }
            pass.draw(0..6, range.clone());
        }
        Ok(())
    }
}

/// Each group's draw range cut where the quad kind changes, in draw order (so overlapping
/// quads still land in the order they were listed), leaving out the quads `skipped` marks
/// (none when it is empty: cells copied instead, `copy::CellCopies`).
fn kind_runs(
    quads: &[Quad],
    draws: &[Range<u32>],
    skipped: &[bool],
) -> Vec<(usize, u32, Range<u32>)> {
    let skip = |i: u32| skipped.get(i as usize).copied().unwrap_or(false);
    let mut runs = Vec::new();
    for (g, range) in draws.iter().enumerate() {
        let mut start = range.start;
        for i in range.clone() {
            let next = i + 1;
            if skip(i) {
                start = next;
                continue;
            }
            let kind = quads[i as usize].kind;
            if next == range.end || skip(next) || quads[next as usize].kind != kind {
                runs.push((g, kind, start..next));
                start = next;
            }
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_split_at_kind_changes_within_each_group() {
        let quad = |kind| Quad {
            rect: [0; 4],
            kind,
            src: 0,
            src_size: 0,
            color: 0,
        };
        let quads: Vec<Quad> = [0, 0, 2, 3, 3, 1, 0, 0].into_iter().map(quad).collect();
        let runs = kind_runs(&quads, &[0..6, 6..6, 6..8], &[]);
        assert_eq!(
            runs,
            vec![
                (0, 0, 0..2),
                (0, 2, 2..3),
                (0, 3, 3..5),
                (0, 1, 5..6),
                (2, 0, 6..8)
            ]
        );
    }

    #[test]
    fn view_layout_matches_the_shader() {
        assert_eq!(std::mem::size_of::<ViewUniform>(), 16);
    }
}
