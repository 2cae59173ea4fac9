//! Getting pixels out: offscreen rendering with 256-byte-aligned readback, tiled when the figure
//! exceeds the texture limit, and PNG files replaced atomically (written beside the target, then
//! renamed), so a failed run never leaves a partial or truncated figure.

use std::io::Write;
use std::path::Path;

use crate::compose::{ComposePipeline, Compositor, FigureQuads, Quad};
use crate::error::{Error, Result};
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

/// Fails early, before any GPU work, when `path` cannot be written: its folder is missing or
/// read-only.
pub fn check_writable(path: &Path) -> Result<()> {
    let dir = parent_dir(path);
    let probe = tempfile::Builder::new()
        .prefix(".attnviz-probe-")
        .tempfile_in(dir)
        .map_err(|e| Error::Output {
            path: path.to_path_buf(),
            source: e,
        })?;
    drop(probe);
    Ok(())
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Writes RGBA8 pixels as a PNG, atomically: a temp file in the same folder is renamed over
/// `path` only once complete, and removed on any failure.
pub fn write_png(path: &Path, width: u32, height: u32, rgba: &[u8]) -> Result<()> {
    write_atomic(path, |file| encode_png(file, width, height, rgba))
}

/// Encodes RGBA8 pixels as PNG into any writer (files, and the bytes a notebook shows).
pub fn encode_png(
    out: impl std::io::Write,
    width: u32,
    height: u32,
    rgba: &[u8],
) -> std::io::Result<()> {
    let encoder = image::codecs::png::PngEncoder::new_with_quality(
        out,
        image::codecs::png::CompressionType::Fast,
        image::codecs::png::FilterType::Adaptive,
    );
    image::ImageEncoder::write_image(
        encoder,
        rgba,
        width,
        height,
        image::ExtendedColorType::Rgba8,
    )
    .map_err(std::io::Error::other)
}

/// Runs `write` on a temp file beside `path` and renames it into place.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<&mut std::fs::File>) -> std::io::Result<()>,
) -> Result<()> {
    let err = |e| Error::Output {
        path: path.to_path_buf(),
        source: e,
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".attnviz-")
        .suffix(".tmp")
        .tempfile_in(parent_dir(path))
        .map_err(err)?;
    {
        let mut w = std::io::BufWriter::new(tmp.as_file_mut());
        write(&mut w).map_err(err)?;
        w.flush().map_err(err)?;
    }
    // Temp files are created private (0600); a figure is an ordinary file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(err)?;
    }
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}
