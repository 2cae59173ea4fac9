//! The offscreen target: the figure drawn into a texture and read back as RGBA8 rows, with
//! 256-byte-aligned readback, tiled when the figure exceeds the texture limit.

use crate::compose::{ComposePipeline, Compositor};
use crate::error::Result;
use crate::figure::quads::{FigureQuads, Quad};
use crate::gpu::Gpu;

/// Renders `figure` offscreen and returns its RGBA8 rows. Figures wider or taller than the
/// adapter's texture limit are drawn tile by tile with shifted quads and stitched.
pub(crate) fn render_rgba(
    gpu: &Gpu,
    pipe: &ComposePipeline,
    compositor: &Compositor,
    figure: &FigureQuads,
    tile_limit: u32,
) -> Result<Vec<u8>> {
    render_rgba_over(gpu, pipe, compositor, figure, tile_limit, &[])
}

/// [`render_rgba`], with `overlays` (the viewer's detail layer and readout, already placed in
/// the figure's pixels) drawn on top, in order. Overlays are left out of tiled renders: they
/// only exist for windows, which fit one texture.
pub(crate) fn render_rgba_over(
    gpu: &Gpu,
    pipe: &ComposePipeline,
    compositor: &Compositor,
    figure: &FigureQuads,
    tile_limit: u32,
    overlays: &[&Compositor],
) -> Result<Vec<u8>> {
    let (w, h) = (figure.width, figure.height);
    let max = gpu.limits.max_texture_dimension_2d.min(tile_limit).max(1);
    let (tw, th) = (w.min(max), h.min(max));
    let mut out = vec![0u8; w as usize * h as usize * 4];
    let texture = gpu.device.create_texture(&wgpu::TextureDescriptor {
        label: Some("attnviz.export.target"),
        size: wgpu::Extent3d {
            width: tw,
            height: th,
            depth_or_array_layers: 1,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: pipe.format,
        usage: wgpu::TextureUsages::RENDER_ATTACHMENT | wgpu::TextureUsages::COPY_SRC,
        view_formats: &[],
    });
    let view = texture.create_view(&Default::default());
    let padded = (tw * 4).next_multiple_of(wgpu::COPY_BYTES_PER_ROW_ALIGNMENT);
    let readback = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("attnviz.export.readback"),
        size: padded as u64 * th as u64,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let tiled = tw < w || th < h;
    let mut shifted: Vec<Quad> = Vec::new();
    for ty in (0..h).step_by(th as usize) {
        for tx in (0..w).step_by(tw as usize) {
            if tiled {
                shifted.clear();
                shifted.extend(figure.quads.iter().map(|q| Quad {
                    rect: [
                        q.rect[0] - tx as i32,
                        q.rect[1] - ty as i32,
                        q.rect[2],
                        q.rect[3],
                    ],
                    ..*q
                }));
                compositor.set_quads(gpu, &shifted);
            }
            gpu.scoped("drawing the figure", || {
                let mut encoder =
                    gpu.device
                        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                            label: Some("attnviz.export.encoder"),
                        });
                compositor.draw(gpu, pipe, &mut encoder, &view, (tw, th))?;
                for o in overlays.iter().filter(|_| !tiled) {
                    o.draw_over(gpu, pipe, &mut encoder, &view, (tw, th))?;
                }
                encoder.copy_texture_to_buffer(
                    wgpu::TexelCopyTextureInfo {
                        texture: &texture,
                        mip_level: 0,
                        origin: wgpu::Origin3d::ZERO,
                        aspect: wgpu::TextureAspect::All,
                    },
                    wgpu::TexelCopyBufferInfo {
                        buffer: &readback,
                        layout: wgpu::TexelCopyBufferLayout {
                            offset: 0,
                            bytes_per_row: Some(padded),
                            rows_per_image: Some(th),
                        },
                    },
                    wgpu::Extent3d {
                        width: tw,
                        height: th,
                        depth_or_array_layers: 1,
                    },
                );
                gpu.queue.submit([encoder.finish()]);
                Ok(())
            })?;
            let bytes = gpu.map_read(&readback)?;
            let cw = (w - tx).min(tw) as usize;
            for row in 0..(h - ty).min(th) as usize {
                let src = row * padded as usize;
                let dst = ((ty as usize + row) * w as usize + tx as usize) * 4;
                out[dst..dst + cw * 4].copy_from_slice(&bytes[src..src + cw * 4]);
            }
        }
    }
    if tiled {
        compositor.set_quads(gpu, &figure.quads);
    }
    Ok(out)
}
