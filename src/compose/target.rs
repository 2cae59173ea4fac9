//! The offscreen target: the figure drawn into a texture and read back as RGBA8 rows, with
//! 256-byte-aligned readback, tiled when the figure exceeds the texture limit.

use crate::compose::{ComposePipeline, Compositor};
use crate::error::Result;
use crate::figure::quads::{FigureQuads, Quad};
use crate::gpu::Gpu;

/// Renders `figure` offscreen and returns its RGBA8 rows. Figures wider or taller than the
/// adapter's texture limit are drawn tile by tile with shifted quads and stitched. With
/// `copy_cells`, the copyable cells are copied into the target rather than drawn, each clipped
/// to the tile (`Compositor::draw_copying`; the same bytes): a whole model's 1024 cells shaded
/// once per tile were most of a tiled export's time.
pub(crate) fn render_rgba(
    gpu: &Gpu,
    pipe: &ComposePipeline,
    compositor: &Compositor,
    figure: &FigureQuads,
    tile_limit: u32,
    copy_cells: bool,
) -> Result<Vec<u8>> {
    render_rgba_over(gpu, pipe, compositor, figure, tile_limit, &[], copy_cells)
}

/// An offscreen texture of one tile's size and the buffer its rows are read back through,
/// padded to the 256-byte row alignment copies need.
struct OffscreenTarget {
    texture: wgpu::Texture,
    view: wgpu::TextureView,
    readback: wgpu::Buffer,
    size: (u32, u32),
    /// Bytes per row in `readback`.
    padded: u32,
}

impl OffscreenTarget {
    fn new(gpu: &Gpu, format: wgpu::TextureFormat, (w, h): (u32, u32)) -> OffscreenTarget {
        let texture = gpu.device.create_texture(&wgpu::TextureDescriptor {
            label: Some("attnviz.export.target"),
            size: wgpu::Extent3d {
                width: w,
                height: h,
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format,
            // (COPY_DST: cells copied in rather than drawn)
            usage: wgpu::TextureUsages::RENDER_ATTACHMENT
                | wgpu::TextureUsages::COPY_SRC
                | wgpu::TextureUsages::COPY_DST,
            view_formats: &[],
        });
        let padded = (w * 4).next_multiple_of(wgpu::COPY_BYTES_PER_ROW_ALIGNMENT);
        let readback = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("attnviz.export.readback"),
            size: padded as u64 * h as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        OffscreenTarget {
            view: texture.create_view(&Default::default()),
            texture,
            readback,
            size: (w, h),
            padded,
        }
    }

    /// Records the copy of the texture into the read-back buffer.
    fn copy_out(&self, encoder: &mut wgpu::CommandEncoder) {
        let (w, h) = self.size;
        encoder.copy_texture_to_buffer(
            wgpu::TexelCopyTextureInfo {
                texture: &self.texture,
                mip_level: 0,
                origin: wgpu::Origin3d::ZERO,
                aspect: wgpu::TextureAspect::All,
            },
            wgpu::TexelCopyBufferInfo {
                buffer: &self.readback,
                layout: wgpu::TexelCopyBufferLayout {
                    offset: 0,
                    bytes_per_row: Some(self.padded),
                    rows_per_image: Some(h),
                },
            },
            wgpu::Extent3d {
                width: w,
                height: h,
                depth_or_array_layers: 1,
            },
        );
    }

    /// Reads the tile back into `out` (RGBA8 rows of a `width`-pixel figure) at `(x, y)`,
    /// clipped to the figure's `height`.
    fn read_into(
        &self,
        gpu: &Gpu,
        out: &mut [u8],
        (width, height): (u32, u32),
        (x, y): (u32, u32),
    ) -> Result<()> {
        let (tw, th) = self.size;
        let cw = (width - x).min(tw) as usize;
        // Rows are copied out of the mapping into the figure: one copy, no tile-sized buffer.
        gpu.map_read_with(&self.readback, self.readback.size(), |bytes| {
            for row in 0..(height - y).min(th) as usize {
                let src = row * self.padded as usize;
                let dst = ((y as usize + row) * width as usize + x as usize) * 4;
                out[dst..dst + cw * 4].copy_from_slice(&bytes[src..src + cw * 4]);
            }
        })
    }
}

/// `quads` moved by (-x, -y): the figure as seen by the tile whose corner is at (x, y).
fn shifted(quads: &[Quad], (x, y): (u32, u32), out: &mut Vec<Quad>) {
    out.clear();
    out.extend(quads.iter().map(|q| Quad {
        rect: [
            q.rect[0] - x as i32,
            q.rect[1] - y as i32,
            q.rect[2],
            q.rect[3],
        ],
        ..*q
    }));
}

/// [`render_rgba`], with `overlays` (the viewer's detail layer and readout, already placed in
/// the figure's pixels) drawn on top, in order. Overlays are left out of tiled renders: they
/// only exist for windows, which fit one texture. Cells are copied only with no overlay.
pub(crate) fn render_rgba_over(
    gpu: &Gpu,
    pipe: &ComposePipeline,
    compositor: &Compositor,
    figure: &FigureQuads,
    tile_limit: u32,
    overlays: &[&Compositor],
    copy_cells: bool,
) -> Result<Vec<u8>> {
    let (w, h) = (figure.width, figure.height);
    // Tiles of even size: the target, its clear and its read-back are a tile's size, so an
    // 8821-pixel-wide figure takes two of 4411 rather than 8192 and a sliver of 629 drawn into
    // a texture of 8192.
    let max = gpu.limits.max_texture_dimension_2d.min(tile_limit).max(1);
    let even = |n: u32| n.div_ceil(n.div_ceil(max)).max(1);
    let (tw, th) = (even(w), even(h));
    let mut out = vec![0u8; w as usize * h as usize * 4];
    let target = tracing::info_span!("export.target")
        .in_scope(|| OffscreenTarget::new(gpu, pipe.format, (tw, th)));
    let tiled = tw < w || th < h;
    let copying = copy_cells && overlays.is_empty() && compositor.copies_cells(pipe);
    if copying {
        compositor.set_quads(gpu, &figure.quads);
    }
    let mut moved: Vec<Quad> = Vec::new();
    for ty in (0..h).step_by(th as usize) {
        for tx in (0..w).step_by(tw as usize) {
            if tiled {
                shifted(&figure.quads, (tx, ty), &mut moved);
                compositor.set_quads(gpu, &moved);
            }
            gpu.scoped("drawing the figure", || {
                let mut encoder =
                    gpu.device
                        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                            label: Some("attnviz.export.encoder"),
                        });
                if copying {
                    compositor.draw_copying(
                        gpu,
                        pipe,
                        &mut encoder,
                        &target.texture,
                        &target.view,
                        (tw, th),
                        (tx, ty),
                    )?;
                } else {
                    compositor.draw(gpu, pipe, &mut encoder, &target.view, (tw, th))?;
                }
                for o in overlays.iter().filter(|_| !tiled) {
                    o.draw_over(gpu, pipe, &mut encoder, &target.view, (tw, th))?;
                }
                target.copy_out(&mut encoder);
                gpu.submit([encoder.finish()]);
                Ok(())
            })?;
            tracing::info_span!("export.readback")
                .in_scope(|| target.read_into(gpu, &mut out, (w, h), (tx, ty)))?;
        }
    }
    if tiled {
        compositor.set_quads(gpu, &figure.quads);
    }
    Ok(out)
}
