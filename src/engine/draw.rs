//! Drawing a scene into a target. One engine, two targets: the export texture and the window
//! surface run the same compose pass, through pipelines the engine compiles once per target
//! format, and the viewer's overlays (its detail layer and readout) are drawables the engine
//! builds, so the window holds no pipeline or colour pass of its own.

use std::sync::{Arc, Mutex};

use crate::color::colorize::ColorizedCells;
use crate::compose::{ComposePipeline, Compositor};
use crate::error::Result;
use crate::figure::quads::{FigureQuads, Quad, KIND_CELL};
use crate::figure::text::Atlas;
use crate::files::RowSink;
use crate::gpu::Gpu;
use crate::pool::PooledCells;

use super::{Engine, Scene};

/// The format export draws into (and reads back as RGBA8 rows).
pub(crate) const EXPORT_FORMAT: wgpu::TextureFormat = wgpu::TextureFormat::Rgba8Unorm;

/// Compose pipelines by target format, each compiled the first time a target of its format is
/// drawn and kept: a frame looks its pipeline up, it never builds one.
pub(crate) struct ComposePipelines {
    made: Mutex<Vec<Arc<ComposePipeline>>>,
}

impl ComposePipelines {
    /// Compiles the export format's pipeline up front (every engine exports or screenshots).
    pub(crate) fn new(device: &wgpu::Device) -> ComposePipelines {
        let export = Arc::new(ComposePipeline::new(device, EXPORT_FORMAT));
        ComposePipelines {
            made: Mutex::new(vec![export]),
        }
    }

    /// The pipeline drawing into `format`, compiled on first use.
    pub(crate) fn get(
        &self,
        device: &wgpu::Device,
        format: wgpu::TextureFormat,
    ) -> Arc<ComposePipeline> {
        // A poisoned lock only means another thread panicked while compiling: the list
        // itself is still whole.
        let mut made = self.made.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pipe) = made.iter().find(|p| p.format == format) {
            return pipe.clone();
        }
        let pipe = Arc::new(ComposePipeline::new(device, format));
        made.push(pipe.clone());
        pipe
    }
}

/// Something drawn over a scene in the same pass and target: the viewer's detail layer (cells
/// pooled apart from the scene, coloured like it) or its readout (a label on a box, which
/// needs no colours of its own).
pub struct Overlay {
    compositor: Compositor,
    /// The overlay's own pooled cells and their colours, when it has any.
    cells: Option<(PooledCells, ColorizedCells)>,
}

impl Overlay {
    /// Replaces its quads (as many as it was built with, or fewer): moves it on the target.
    pub fn set_quads(&self, gpu: &Gpu, quads: &[Quad]) {
        self.compositor.set_quads(gpu, quads);
    }

    /// Stretches a one-cell overlay's cell over `rect` (x, y, width, height in target pixels):
    /// where a detail region lies under the current view.
    pub fn place_cell(&self, gpu: &Gpu, rect: [i32; 4]) {
        if let Some((pooled, _)) = &self.cells {
            self.set_quads(gpu, &[cell_quad(rect, pooled)]);
        }
    }

    /// The overlay's own pooled cells, if it has any.
    pub fn pooled(&self) -> Option<&PooledCells> {
        self.cells.as_ref().map(|(pooled, _)| pooled)
    }
}

/// The quad drawing the first cell of `pooled` over `rect`.
fn cell_quad(rect: [i32; 4], pooled: &PooledCells) -> Quad {
    let g = &pooled.geometry;
    Quad {
        rect,
        kind: KIND_CELL,
        src: 0,
        src_size: g.pooled_w | (g.pooled_h << 16),
        color: 0,
    }
}

impl Scene {
    /// Replaces the figure's quads (as many or fewer), e.g. with a panned and zoomed view of
    /// them; [`Engine::export`] draws the figure's own quads again.
    pub fn set_quads(&self, gpu: &Gpu, quads: &[Quad]) {
        self.compositor.set_quads(gpu, quads);
    }
}

impl Engine {
    /// Draws the scene into `target` (`size` pixels, any render format: the export texture or
    /// a window's surface) and submits; the figure's pixel (0, 0) lands on the target's.
    pub fn draw(
        &self,
        scene: &Scene,
        target: &wgpu::TextureView,
        size: (u32, u32),
    ) -> Result<wgpu::SubmissionIndex> {
        self.draw_with(scene, std::iter::empty(), target, size)
    }

    /// [`Engine::draw`] with `overlays` drawn over the scene, in order, in the same pass (an
    /// iterator, so a frame gathers them without allocating).
    /// The pipeline follows the format of `target`'s texture (views of another format are
    /// not supported).
    pub fn draw_with<'o>(
        &self,
        scene: &Scene,
        overlays: impl IntoIterator<Item = &'o Overlay>,
        target: &wgpu::TextureView,
        size: (u32, u32),
    ) -> Result<wgpu::SubmissionIndex> {
        let gpu = &self.gpu;
        let pipe = self.compose.get(&gpu.device, target.texture().format());
        gpu.scoped("drawing the figure", || {
            let mut encoder = gpu
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("attnviz.draw.encoder"),
                });
            scene
                .compositor
                .draw(gpu, &pipe, &mut encoder, target, size)?;
            for o in overlays {
                o.compositor
                    .draw_over(gpu, &pipe, &mut encoder, target, size)?;
            }
            Ok(gpu.submit([encoder.finish()]))
        })
    }

    /// The scene drawn with other quads (a view of it) and `overlays` on top, as RGBA8 rows of
    /// `quads`' size: what [`Engine::draw_with`] put in a window, read back.
    pub(crate) fn export_quads(
        &self,
        scene: &Scene,
        quads: &FigureQuads,
        overlays: &[&Overlay],
    ) -> Result<Vec<u8>> {
        scene.compositor.set_quads(&self.gpu, &quads.quads);
        let overlays: Vec<&Compositor> = overlays.iter().map(|o| &o.compositor).collect();
        crate::compose::target::render_rgba(
            &self.gpu,
            &self.compose.get(&self.gpu.device, EXPORT_FORMAT),
            &scene.compositor,
            quads,
            self.tile_limit,
            &overlays,
            false,
        )
    }

    /// The scene's figure as RGBA8 rows (tiled past the texture limit).
    pub fn export(&self, scene: &Scene) -> Result<Vec<u8>> {
        crate::compose::target::RgbaRows::gather(|rows| self.export_into(scene, rows))
    }

    /// The scene's figure, its rows handed to `sink` as they are read back, top row first,
    /// with no copy of the whole figure ([`crate::files::write_png_streamed`] encodes them).
    pub fn export_into(&self, scene: &Scene, sink: &mut dyn RowSink) -> Result<()> {
        crate::compose::target::render_rows(
            &self.gpu,
            &self.compose.get(&self.gpu.device, EXPORT_FORMAT),
            &scene.compositor,
            &scene.quads,
            self.tile_limit,
            &[],
            self.copy_cells,
            sink,
        )
    }

    /// A compositor drawing `quads` with `colors` of `pooled`. Built against the export
    /// pipeline's layout, which every format's pipeline shares, so it draws into any target.
    pub(crate) fn compositor(
        &self,
        quads: &FigureQuads,
        colors: &ColorizedCells,
        pooled: &PooledCells,
    ) -> Compositor {
        let pipe = self.compose.get(&self.gpu.device, EXPORT_FORMAT);
        Compositor::new(&self.gpu, &pipe, quads, colors, pooled)
    }

    /// An overlay of `quads` that uses no cells of its own (labels and fills: the viewer's
    /// readout). It binds the scene's colours, which it never samples.
    pub fn overlay(&self, scene: &Scene, quads: &FigureQuads) -> Overlay {
        Overlay {
            compositor: self.compositor(quads, &scene.colors, &scene.pooled),
            cells: None,
        }
    }

    /// An overlay of the one cell in `pooled` (a region pooled apart from the scene: the
    /// viewer's detail), coloured like the scene with `ranges` (one per cell) and drawn at
    /// its pooled size at (0, 0) until [`Overlay::place_cell`] moves it.
    pub fn cell_overlay(
        &self,
        scene: &Scene,
        pooled: PooledCells,
        ranges: &[[f32; 2]],
    ) -> Result<Overlay> {
        let colors = ColorizedCells::new(&self.gpu, &self.colorize, &pooled);
        let (w, h) = (pooled.geometry.pooled_w, pooled.geometry.pooled_h);
        let quads = FigureQuads {
            quads: vec![cell_quad([0, 0, w as i32, h as i32], &pooled)],
            draws: std::iter::once(0..1).collect(),
            atlas: Atlas::pack(&[]),
            width: w,
            height: h,
            background: scene.quads.background,
        };
        let overlay = Overlay {
            compositor: self.compositor(&quads, &colors, &pooled),
            cells: Some((pooled, colors)),
        };
        self.recolor_overlay(scene, &overlay, ranges)?;
        Ok(overlay)
    }

    /// Colours an overlay's own cells like `scene` (its scale, reduction and colormap) with
    /// `ranges`, after the scene was recoloured; overlays without cells have nothing to do.
    pub fn recolor_overlay(
        &self,
        scene: &Scene,
        overlay: &Overlay,
        ranges: &[[f32; 2]],
    ) -> Result<()> {
        let Some((pooled, colors)) = &overlay.cells else {
            return Ok(());
        };
        self.apply_colors(
            colors,
            pooled,
            ranges,
            &scene.scale,
            scene.reduce,
            scene.colormap,
        )
    }
}
