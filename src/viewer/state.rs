//! The view state: the scene on screen, how it is transformed, what is focused and hovered,
//! and what the worker was asked for. Every frame and every screenshot is drawn by the
//! engine from this state; the window only decides when.

use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Instant;

use winit::event_loop::ActiveEventLoop;

use super::detail::{self, Region};
use super::detail_layer::DetailLayer;
use super::edges::EdgeLabels;
use super::inspect::Bin;
use super::readout::Readout;
use super::surface::Surface;
use super::transform::ViewTransform;
use super::{ViewerOptions, ViewerReport};
use crate::engine::{Engine, Overlay, Scene};
use crate::error::Result;
use crate::figure::quads::{FigureQuads, Quad};
use crate::pool::PoolOptions;
use crate::source::AttentionSource;

/// What a session measured so far (see [`ViewerReport`]).
#[derive(Default)]
pub(super) struct Timings {
    pub(super) frames: u64,
    pub(super) frame_times: Vec<f64>,
    pub(super) first_frame: Option<f64>,
    /// Seconds from start until the figure was read and shown; `None` while it is read.
    pub(super) resident: Option<f64>,
    /// Seconds from start until the first detail region was shown.
    pub(super) first_detail: Option<f64>,
    pub(super) details: u64,
    pub(super) last_detail: Option<f64>,
}

pub(super) struct State {
    pub(super) surface: Surface,
    pub(super) engine: Arc<Engine>,
    pub(super) scene: Scene,
    pub(super) view: ViewTransform,
    /// The view's quads, reused every time the view changes (no per-frame allocation).
    pub(super) quads: Vec<Quad>,
    pub(super) cursor: (f64, f64),
    pub(super) dragging: Option<(f64, f64)>,
    /// Where the left button went down, to tell a click from a drag.
    pub(super) pressed_at: Option<(f64, f64)>,
    /// The cell filling the window, in focus mode.
    pub(super) focus: Option<usize>,
    /// The bin under the cursor, as last shown in the readout.
    pub(super) hovered: Option<Bin>,
    /// The window's title now, and with nothing hovered.
    pub(super) title: String,
    pub(super) plain_title: String,
    /// Where the worker's requests go.
    pub(super) jobs: Option<Sender<detail::Job>>,
    /// The detail asked for last, and when.
    pub(super) wanted: Option<(Region, Instant)>,
    /// The detail the current view needs, and when the view last changed.
    pub(super) pending: Option<(Region, PoolOptions, Instant)>,
    pub(super) detail: Option<DetailLayer>,
    /// Most magnification allowed: an entry of the longest axis spans 64 pixels.
    pub(super) max_scale: f64,
    /// (queries, keys) of every head.
    pub(super) source_shape: (usize, usize),
    /// The hover readout drawn in the window's bottom-left corner.
    pub(super) readout: Option<Readout>,
    /// Tokens or positions on the window's edges while a cell is magnified.
    pub(super) edges: Option<EdgeLabels>,
    /// `--tokens`, for the edge labels.
    pub(super) tokens: Option<Vec<String>>,
    pub(super) timings: Timings,
}

impl State {
    /// Opens the window on the figure's layout with empty cells (the worker reads the input,
    /// see `Job::Scene`), sized to the figure unless `options` say otherwise.
    pub(super) fn new(
        event_loop: &ActiveEventLoop,
        source: &dyn AttentionSource,
        options: &ViewerOptions,
    ) -> Result<State> {
        let title = format!("attnviz: {}", source.name());
        let (opened, gpu) = Surface::open(event_loop, &title)?;
        let engine = Arc::new(Engine::new(gpu));
        let scene = engine.empty_scene(source, &options.render)?;
        let figure = (scene.width(), scene.height());
        let size = options
            .size
            .unwrap_or((figure.0.min(1600), figure.1.min(1000)));
        let surface = Surface::configure(opened, &engine.gpu, size);
        let view = if options.size == Some(figure) {
            ViewTransform::IDENTITY
        } else {
            ViewTransform::fit(figure, size)
        };
        let g = scene.plan.geometry;
        let s = source.shape();
        let max_scale =
            64.0 * (s.keys as f64 / g.display_w as f64).max(s.queries as f64 / g.display_h as f64);
        let mut state = State {
            surface,
            engine,
            scene,
            view,
            quads: Vec::new(),
            cursor: (0.0, 0.0),
            dragging: None,
            pressed_at: None,
            focus: None,
            hovered: None,
            plain_title: title.clone(),
            title,
            jobs: None,
            wanted: None,
            pending: None,
            detail: None,
            max_scale,
            source_shape: (s.queries, s.keys),
            readout: None,
            edges: None,
            tokens: options.tokens.clone(),
            timings: Timings::default(),
        };
        state.set_view(view);
        Ok(state)
    }

    pub(super) fn send(&self, job: detail::Job) {
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(job);
        }
    }

    pub(super) fn figure(&self) -> (u32, u32) {
        (self.scene.width(), self.scene.height())
    }

    pub(super) fn window_size(&self) -> (u32, u32) {
        self.surface.size()
    }

    pub(super) fn set_view(&mut self, view: ViewTransform) {
        self.view = view;
        view.apply(&self.scene.quads.quads, &mut self.quads);
        self.scene.set_quads(&self.engine.gpu, &self.quads);
        self.surface.window.request_redraw();
        self.request_detail();
        self.update_edges();
    }

    pub(super) fn resize(&mut self, w: u32, h: u32) {
        if !self.surface.resize(&self.engine.gpu, w, h) {
            return;
        }
        self.surface.window.request_redraw();
        self.request_detail();
        self.place_readout();
        self.update_edges();
    }

    /// What is drawn over the scene, in order: the detail layer, the edge labels, then the
    /// readout.
    fn overlays(&self) -> impl Iterator<Item = &Overlay> {
        let detail = self.detail.as_ref().map(|d| &d.overlay);
        detail
            .into_iter()
            .chain(self.edges.as_ref().map(|e| &e.overlay))
            .chain(self.readout.as_ref().map(|r| &r.overlay))
    }

    /// Draws a frame through the engine and presents it.
    pub(super) fn draw(&mut self) -> Result<()> {
        let start = Instant::now();
        let gpu = &self.engine.gpu;
        let Some(frame) = self.surface.frame(gpu) else {
            return Ok(());
        };
        let target = frame.texture.create_view(&Default::default());
        self.engine
            .draw_with(&self.scene, self.overlays(), &target, self.window_size())?;
        gpu.queue.present(frame);
        gpu.wait()?;
        let t = &mut self.timings;
        t.frame_times.push(start.elapsed().as_secs_f64());
        t.frames += 1;
        Ok(())
    }

    /// Renders exactly what is on screen into a PNG: the same scene, view and overlays,
    /// drawn by the engine into its export target.
    pub(super) fn screenshot(&self, path: &std::path::Path) -> Result<()> {
        let (w, h) = self.window_size();
        let figure = FigureQuads {
            quads: self.quads.clone(),
            width: w,
            height: h,
            ..self.scene.quads.clone()
        };
        let overlays: Vec<&Overlay> = self.overlays().collect();
        let rgba = self.engine.export_quads(&self.scene, &figure, &overlays)?;
        crate::files::write_png(path, w, h, &rgba)
    }

    /// Fills the window with cell `cell` (focus mode), or shows the whole grid for `None`.
    pub(super) fn focus_on(&mut self, cell: Option<usize>) {
        self.focus = cell;
        let view = match cell.and_then(|c| self.scene.plan.layout.cells.get(c)) {
            Some(c) => {
                ViewTransform::fit_rect((c.x, c.y, c.width, c.height), self.window_size(), 8.0)
            }
            None => ViewTransform::fit(self.figure(), self.window_size()),
        };
        self.set_view(view);
    }

    /// The cell under the cursor.
    pub(super) fn cell_under_cursor(&self) -> Option<usize> {
        let (x, y) = self.view.to_figure(self.cursor);
        self.scene.plan.layout.cells.iter().position(|c| {
            x >= c.x as f64
                && x < (c.x + c.width) as f64
                && y >= c.y as f64
                && y < (c.y + c.height) as f64
        })
    }

    /// Moves the focus by (heads, layers) within the grid.
    pub(super) fn step_focus(&mut self, dh: i64, dl: i64) {
        let Some(cell) = self.focus else { return };
        let cols = self.scene.plan.heads.len() as i64;
        let rows = self.scene.plan.layers.len() as i64;
        let (r, c) = (cell as i64 / cols, cell as i64 % cols);
        let (r, c) = ((r + dl).clamp(0, rows - 1), (c + dh).clamp(0, cols - 1));
        self.focus_on(Some((r * cols + c) as usize));
    }

    /// Takes what the worker finished.
    pub(super) fn receive(&mut self, reply: detail::Reply, started: Instant) -> Result<()> {
        match reply {
            detail::Reply::Scene(scene) => self.show_scene(*scene, started),
            detail::Reply::Hover(bin, text) => {
                self.show_readout(&bin, &text);
                Ok(())
            }
            detail::Reply::Detail(region, pooled) => {
                self.show_detail(region, pooled)?;
                if self.detail.is_some() && self.timings.first_detail.is_none() {
                    self.timings.first_detail = Some(started.elapsed().as_secs_f64());
                }
                Ok(())
            }
            detail::Reply::Failed(e) => Err(e),
        }
    }

    /// The figure was read: it replaces the empty one, keeping the view and the colouring
    /// chosen meanwhile.
    fn show_scene(&mut self, mut scene: Scene, started: Instant) -> Result<()> {
        let (norm, reduce, colormap) = (self.scene.norm, self.scene.reduce, self.scene.colormap);
        if (norm, reduce, colormap) != (scene.norm, scene.reduce, scene.colormap) {
            self.engine.recolor(&mut scene, norm, reduce, colormap)?;
        }
        self.scene = scene;
        self.timings.resident = Some(started.elapsed().as_secs_f64());
        let view = self.view;
        self.set_view(view);
        self.recolor_detail()
    }

    /// Whether everything a scripted run waits for before its screenshot is on screen: the
    /// whole figure, the readout of a hovered bin, and the detail last asked for.
    pub(super) fn settled(&self) -> bool {
        self.timings.resident.is_some()
            && (self.hovered.is_none() || self.readout.is_some())
            && (self.wanted.is_none()
                || self.detail.as_ref().map(|d| &d.region) == self.wanted.as_ref().map(|w| &w.0))
    }

    /// The session's measurements, handed over once at the end.
    pub(super) fn report(&mut self) -> ViewerReport {
        let t = &mut self.timings;
        ViewerReport {
            adapter: self.engine.gpu.describe(),
            frames: t.frames,
            frame_times: std::mem::take(&mut t.frame_times),
            first_frame: t.first_frame.unwrap_or(0.0),
            resident: t.resident,
            first_detail: t.first_detail,
            details: t.details,
            last_detail: t.last_detail,
        }
    }
}
