//! The offscreen target: the figure drawn into a texture and read back as RGBA8 rows, with
//! 256-byte-aligned readback, tiled when the figure exceeds the texture limit, its rows handed
//! out band by band in order (a PNG encoded from them holds no copy of the whole figure).

use crate::compose::{ComposePipeline, Compositor};
use crate::error::Result;
use crate::figure::quads::{FigureQuads, Quad};
use crate::files::RowSink;
use crate::gpu::{Gpu, MapRead};

/// Renders `figure` offscreen, `overlays` on top, and returns its RGBA8 rows: [`render_rows`]
/// gathered.
pub(crate) fn render_rgba(
    gpu: &Gpu,
    pipe: &ComposePipeline,
    compositor: &Compositor,
    figure: &FigureQuads,
    tile_limit: u32,
    overlays: &[&Compositor],
    copy_cells: bool,
) -> Result<Vec<u8>> {
    RgbaRows::gather(|sink| {
        render_rows(
            gpu, pipe, compositor, figure, tile_limit, overlays, copy_cells, sink,
        )
    })
}

/// Rows gathered into one RGBA8 buffer.
#[derive(Default)]
pub(crate) struct RgbaRows(Vec<u8>);

impl RgbaRows {
    /// The rows `produce` hands its sink, gathered.
    pub(crate) fn gather(produce: impl FnOnce(&mut dyn RowSink) -> Result<()>) -> Result<Vec<u8>> {
        let mut rows = RgbaRows::default();
        produce(&mut rows)?;
        Ok(rows.0)
    }
}

impl RowSink for RgbaRows {
    fn begin(&mut self, width: u32, height: u32) -> Result<()> {
        self.0 = Vec::with_capacity(width as usize * height as usize * 4);
        Ok(())
    }

    fn row(&mut self, rgba: &[u8]) -> Result<()> {
        self.0.extend_from_slice(rgba);
        Ok(())
    }
}

/// The most bytes a band's read-back holds: figures taller than that are drawn and read back
/// in bands of rows, so the export's memory besides the accumulators does not grow with the
/// figure (a 32 × 32 model's 8821 × 8661 figure read back whole took 305 MB), and two
/// read-backs alternate, so one band is encoded while the next is drawn and copied.
const BAND_BYTES: u64 = 8 << 20;

/// Bytes a read-back row of `width` pixels takes: padded to the alignment copies need.
fn padded_row(width: u32) -> u32 {
    (width * 4).next_multiple_of(wgpu::COPY_BYTES_PER_ROW_ALIGNMENT)
}

/// An offscreen texture of one tile's size, and the buffers a band of tiles (a row of them,
/// the figure's width) is read back through, alternately, its rows padded to the 256-byte
/// alignment copies need.
struct OffscreenTarget {
    texture: wgpu::Texture,
    view: wgpu::TextureView,
    /// One buffer where the figure is one band, two otherwise.
    readback: Vec<wgpu::Buffer>,
    /// Bytes per row in `readback`.
    padded: u32,
}

impl OffscreenTarget {
    /// A target of one `(w, h)` tile whose read-backs hold a band of tiles `width` pixels wide,
    /// `bands` of them in the figure.
    fn new(
        gpu: &Gpu,
        format: wgpu::TextureFormat,
        (w, h): (u32, u32),
        width: u32,
        bands: u32,
    ) -> OffscreenTarget {
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
        let padded = padded_row(width);
        let readback = (0..bands.min(2))
            .map(|_| {
                gpu.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("attnviz.export.readback"),
                    size: padded as u64 * h as u64,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            })
            .collect();
        OffscreenTarget {
            view: texture.create_view(&Default::default()),
            texture,
            readback,
            padded,
        }
    }

    /// Records the copy of the tile's `(w, h)` pixels that lie in the figure into read-back
    /// `b` at column `x`.
    fn copy_out(&self, encoder: &mut wgpu::CommandEncoder, b: usize, (w, h): (u32, u32), x: u32) {
        encoder.copy_texture_to_buffer(
            wgpu::TexelCopyTextureInfo {
                texture: &self.texture,
                mip_level: 0,
                origin: wgpu::Origin3d::ZERO,
                aspect: wgpu::TextureAspect::All,
            },
            wgpu::TexelCopyBufferInfo {
                buffer: &self.readback[b],
                layout: wgpu::TexelCopyBufferLayout {
                    offset: x as u64 * 4,
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
}

/// A band copied into a read-back whose mapping was asked for, not yet handed out.
struct PendingBand<'t> {
    map: MapRead<'t>,
    submission: wgpu::SubmissionIndex,
    /// Bytes of a figure's row, and of a read-back row.
    row_bytes: usize,
    padded: usize,
}

impl OffscreenTarget {
    /// Asks for read-back `b`, into which `submission` copied a band of `rows` rows `width`
    /// pixels wide, to be mapped.
    fn pending(
        &self,
        gpu: &Gpu,
        b: usize,
        submission: wgpu::SubmissionIndex,
        (width, rows): (u32, u32),
    ) -> PendingBand<'_> {
        let row_bytes = width as usize * 4;
        let padded = self.padded as usize;
        let len = (rows as usize - 1) * padded + row_bytes;
        PendingBand {
            map: gpu.map_read_request(&self.readback[b], len as u64),
            submission,
            row_bytes,
            padded,
        }
    }
}

impl PendingBand<'_> {
    /// Hands the band's rows to `sink` once its copy is done: straight out of the mapping,
    /// with no copy of the figure.
    fn deliver(self, gpu: &Gpu, sink: &mut dyn RowSink) -> Result<()> {
        let _span = tracing::info_span!("export.readback").entered();
        let (row_bytes, padded) = (self.row_bytes, self.padded);
        self.map.read(gpu, Some(self.submission), |bytes| {
            bytes
                .chunks(padded)
                .try_for_each(|row| sink.row(&row[..row_bytes]))
        })?
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

/// Renders `figure` offscreen into `sink`, row by row, with `overlays` (the viewer's detail
/// layer and readout, already placed in the figure's pixels) drawn on top, in order. Figures
/// wider or taller than the adapter's texture limit are drawn tile by tile with shifted quads,
/// each band of tiles read back at once. Overlays are left out of tiled renders: they only
/// exist for windows, which fit one texture. With `copy_cells`, the copyable cells are copied
/// into the target rather than drawn, each clipped to the tile (`Compositor::draw_copying`;
/// the same bytes), and only with no overlay: a whole model's 1024 cells shaded once per tile
/// were most of a tiled export's time.
#[allow(clippy::too_many_arguments)]
pub(crate) fn render_rows(
    gpu: &Gpu,
    pipe: &ComposePipeline,
    compositor: &Compositor,
    figure: &FigureQuads,
    tile_limit: u32,
    overlays: &[&Compositor],
    copy_cells: bool,
    sink: &mut dyn RowSink,
) -> Result<()> {
    let (w, h) = (figure.width, figure.height);
    // Tiles of even size: the target, its clear and its read-back are a tile's size, so an
    // 8821-pixel-wide figure takes two of 4411 rather than 8192 and a sliver of 629 drawn into
    // a texture of 8192. Bands of rows keep each read-back within `BAND_BYTES` (overlays
    // only exist for windows, which are drawn whole).
    let max = gpu.limits.max_texture_dimension_2d.min(tile_limit).max(1);
    let even = |n: u32, max: u32| n.div_ceil(n.div_ceil(max)).max(1);
    let tw = even(w, max);
    let band_rows = match overlays.is_empty() {
        true => (BAND_BYTES / u64::from(padded_row(w).max(1))).clamp(1, max as u64) as u32,
        false => max,
    };
    let th = even(h, band_rows);
    sink.begin(w, h)?;
    let target = tracing::info_span!("export.target")
        .in_scope(|| OffscreenTarget::new(gpu, pipe.format, (tw, th), w, h.div_ceil(th)));
    let tiled = tw < w || th < h;
    let copying = copy_cells && overlays.is_empty() && compositor.copies_cells(pipe);
    if copying {
        compositor.set_quads(gpu, &figure.quads);
    }
    let mut moved: Vec<Quad> = Vec::new();
    let mut pending: Option<PendingBand<'_>> = None;
    for (i, ty) in (0..h).step_by(th as usize).enumerate() {
        let band = th.min(h - ty);
        let b = i % target.readback.len();
        let mut submission = None;
        for tx in (0..w).step_by(tw as usize) {
            if tiled {
                shifted(&figure.quads, (tx, ty), &mut moved);
                compositor.set_quads(gpu, &moved);
            }
            submission = Some(gpu.scoped("drawing the figure", || {
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
                target.copy_out(&mut encoder, b, (tw.min(w - tx), band), tx);
                Ok(gpu.submit([encoder.finish()]))
            })?);
        }
        let submission = submission.expect("a band has a tile");
        let this = target.pending(gpu, b, submission, (w, band));
        // The band before is handed out while this one is drawn and copied; its read-back
        // is free again before the band after this one is copied into it.
        if let Some(p) = pending.replace(this) {
            p.deliver(gpu, sink)?;
        }
    }
    if let Some(p) = pending {
        p.deliver(gpu, sink)?;
    }
    if tiled {
        compositor.set_quads(gpu, &figure.quads);
    }
    Ok(())
}
