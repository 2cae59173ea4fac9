//! The view state: the scene on screen, how it is transformed, what is focused and hovered,
//! and what the worker was asked for. Every frame and every screenshot is drawn by the
//! engine from this state; no window is involved (see [`super::session`]): the window and the
//! notebook widget only decide when, and where the frame goes.

use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Instant;

use super::detail::{self, Region};
use super::detail_layer::DetailLayer;
use super::edges::EdgeLabels;
use super::inspect::Bin;
use super::readout::Readout;
use super::transform::ViewTransform;
use super::{ViewerOptions, ViewerReport};
use crate::engine::{Engine, Overlay, Scene};
use crate::error::Result;
use crate::figure::layout::CellPlacement;
use crate::figure::plan::RenderOptions;
use crate::figure::quads::{FigureQuads, Quad};
use crate::pool::pattern::{HeadPattern, PatternOptions};
use crate::pool::PoolOptions;
use crate::source::qk::Values;
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
    /// The target's size in physical pixels, and its pixels per logical pixel (text sizes).
    pub(super) size: (u32, u32),
    pub(super) scale_factor: f64,
    /// Something changed since the last frame was drawn.
    pub(super) dirty: bool,
    /// Whether a pointer position is known (the readout follows it as the view changes).
    pub(super) pointer_seen: bool,
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
    /// `attnviz: ` and the source's name, which the plain title starts with.
    pub(super) source_title: String,
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
    /// The source's diagonal (row `q` is token `q + diagonal`) and its first row's index among
    /// the input's rows: the edge labels name rows as the figure's axes do.
    pub(super) source_rows: (i64, usize),
    /// The hover readout drawn in the window's bottom-left corner.
    pub(super) readout: Option<Readout>,
    /// The bin the readout on screen names.
    pub(super) readout_bin: Option<Bin>,
    /// Tokens or positions on the window's edges while a cell is magnified.
    pub(super) edges: Option<EdgeLabels>,
    /// `--tokens`, for the edge labels.
    pub(super) tokens: Option<Vec<String>>,
    /// The options of the figure last asked of the worker (the sort key cycles them).
    pub(super) render: RenderOptions,
    /// What the statistics count when the sort key first pools them (`--sink-keys`, `--window`).
    pub(super) statistics: PatternOptions,
    /// Why the sort key cannot order this figure (logits have no head statistics), if so.
    pub(super) unsortable: Option<&'static str>,
    /// Per cell, the head's statistics when the figure was pooled with them (`--sort-by`, or
    /// after the sort key): the readout shows the hovered head's.
    pub(super) patterns: Vec<HeadPattern>,
    pub(super) timings: Timings,
    /// Whether a figure read from the input has been shown yet (before it, the layout of
    /// empty cells laid out before anything was read).
    pub(super) read_shown: bool,
}

impl State {
    /// The figure's layout with empty cells (the worker reads the input, see `Job::Scene`),
    /// on a target sized to the figure unless `options` say otherwise.
    pub(super) fn new(
        engine: Arc<Engine>,
        source: &dyn AttentionSource,
        options: &ViewerOptions,
        scale_factor: f64,
    ) -> Result<State> {
        let title = format!("attnviz: {}", source.name());
        let scene = engine.empty_scene(source, &options.render)?;
        let figure = (scene.width(), scene.height());
        let size = options
            .size
            .unwrap_or((figure.0.min(1600), figure.1.min(1000)));
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
            size,
            scale_factor,
            dirty: true,
            pointer_seen: false,
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
            source_title: title.clone(),
            title,
            jobs: None,
            wanted: None,
            pending: None,
            detail: None,
            max_scale,
            source_shape: (s.queries, s.keys),
            source_rows: (source.diagonal(), source.first_query()),
            readout: None,
            readout_bin: None,
            edges: None,
            tokens: options.tokens.clone(),
            render: options.figure(),
            statistics: options.statistics,
            unsortable: source
                .as_qk()
                .filter(|q| q.values() == Values::Logits)
                .map(|_| {
                    "o, p: heads are ordered and labelled by statistics of probabilities; this view shows logits"
                }),
            patterns: Vec::new(),
            timings: Timings::default(),
            read_shown: false,
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
        self.size
    }

    /// Shows the figure under `view`; the readout follows to whatever is now under the
    /// pointer.
    pub(super) fn set_view(&mut self, view: ViewTransform) {
        self.view = view;
        view.apply(&self.scene.quads.quads, &mut self.quads);
        self.scene.set_quads(&self.engine.gpu, &self.quads);
        self.dirty = true;
        self.request_detail();
        self.update_edges();
        if self.pointer_seen {
            self.hover();
        }
    }

    /// Follows the target to `w` × `h` pixels at `scale_factor`; an empty size changes nothing.
    pub(super) fn resize(&mut self, w: u32, h: u32, scale_factor: f64) {
        if w == 0 || h == 0 || ((w, h) == self.size && scale_factor == self.scale_factor) {
            return;
        }
        self.size = (w, h);
        self.scale_factor = scale_factor;
        self.dirty = true;
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

    /// Draws the frame through the engine into `target` (a window's surface texture) and
    /// submits it.
    pub(super) fn draw_into(&mut self, target: &wgpu::TextureView) -> Result<()> {
        self.dirty = false;
        self.engine
            .draw_with(&self.scene, self.overlays(), target, self.window_size())?;
        Ok(())
    }

    /// Exactly what is on screen as RGBA8 rows of the target's size: the same scene, view and
    /// overlays, drawn by the engine into its export target.
    pub(super) fn rgba(&self) -> Result<Vec<u8>> {
        let (w, h) = self.window_size();
        let figure = FigureQuads {
            quads: self.quads.clone(),
            width: w,
            height: h,
            ..self.scene.quads.clone()
        };
        let overlays: Vec<&Overlay> = self.overlays().collect();
        self.engine.export_quads(&self.scene, &figure, &overlays)
    }

    /// Writes exactly what is on screen to a PNG.
    pub(super) fn screenshot(&self, path: &std::path::Path) -> Result<()> {
        let (w, h) = self.window_size();
        crate::files::write_png(path, w, h, &self.rgba()?)
    }

    /// Fills the window with cell `cell` (focus mode), or shows the whole grid for `None`.
    pub(super) fn focus_on(&mut self, cell: Option<usize>) {
        self.focus = cell;
        let view = self.focus_view(cell);
        self.set_view(view);
    }

    /// The view that fills the window with `cell`, or shows the whole figure for `None`.
    fn focus_view(&self, cell: Option<usize>) -> ViewTransform {
        match cell.and_then(|c| self.scene.plan.layout.cells.get(c)) {
            Some(c) => {
                ViewTransform::fit_rect((c.x, c.y, c.width, c.height), self.window_size(), 8.0)
            }
            None => ViewTransform::fit(self.figure(), self.window_size()),
        }
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

    /// Moves the focus one cell right (`dx` 1), left, down (`dy` 1) or up on screen: to the
    /// nearest drawn cell that way, in the same row (column) first. In a grid that is the next
    /// head (layer); in a figure ranked by a statistic, the next cell of the ranking, never one
    /// `--top` left out. At the edge the focus stays.
    pub(super) fn step_focus(&mut self, dx: i64, dy: i64) {
        let Some(cell) = self.focus else { return };
        let cells = &self.scene.plan.layout.cells;
        let Some(from) = cells.get(cell) else { return };
        let centre = |c: &CellPlacement| {
            let (x, y, w, h) = (c.x as f64, c.y as f64, c.width as f64, c.height as f64);
            (x + w / 2.0, y + h / 2.0)
        };
        let (fx, fy) = centre(from);
        let next = cells
            .iter()
            .enumerate()
            .filter(|&(i, c)| i != cell && c.is_drawn())
            .filter_map(|(i, c)| {
                let (x, y) = centre(c);
                let (along, across) = match dx {
                    0 => ((y - fy) * dy as f64, (x - fx).abs()),
                    _ => ((x - fx) * dx as f64, (y - fy).abs()),
                };
                (along > 0.5).then_some((across, along, i))
            })
            .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)))
            .map(|(_, _, i)| i);
        if let Some(next) = next {
            self.focus_on(Some(next));
        }
    }

    /// Takes what the worker finished.
    pub(super) fn receive(&mut self, reply: detail::Reply, started: Instant) -> Result<()> {
        match reply {
            detail::Reply::Scene(scene, patterns) => self.show_scene(*scene, patterns, started),
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
    /// chosen meanwhile. The first one read, when its size differs from the empty layout's
    /// (`--sort-by` and `--top` rank the cells only once their statistics are read), is fitted
    /// to the window again, unless the view was moved or a head focused meanwhile; later ones
    /// (the sort key) keep the view, as the user left it.
    fn show_scene(
        &mut self,
        mut scene: Scene,
        patterns: Vec<HeadPattern>,
        started: Instant,
    ) -> Result<()> {
        let (norm, reduce, colormap) = (self.scene.norm, self.scene.reduce, self.scene.colormap);
        if (norm, reduce, colormap) != (scene.norm, scene.reduce, scene.colormap) {
            self.engine.recolor(&mut scene, norm, reduce, colormap)?;
        }
        let before = self.figure();
        let opening = !self.read_shown
            && self.focus.is_none()
            && self.view == ViewTransform::fit(before, self.size);
        self.read_shown = true;
        self.patterns = patterns;
        let old = std::mem::replace(&mut self.scene, scene);
        self.timings.resident = Some(started.elapsed().as_secs_f64());
        let view = match opening && self.figure() != before {
            true => ViewTransform::fit(self.figure(), self.size),
            false => self.view,
        };
        let view = self.following_focus(&old.plan.layout.cells, view);
        self.set_view(view);
        self.recolor_detail()
    }

    /// The view to show once the cells were laid out again (ranked by a statistic:
    /// `--sort-by`'s first read, the sort key), `view` otherwise: the focused head has moved,
    /// and the view moves with it, showing the same part of the same head, or shows the whole
    /// figure (focus left) where the new layout leaves the head out (`--top`). `before` holds
    /// the cells the view was on.
    pub(super) fn following_focus(
        &mut self,
        before: &[CellPlacement],
        mut view: ViewTransform,
    ) -> ViewTransform {
        let Some(cell) = self.focus else { return view };
        let (Some(old), Some(new)) = (before.get(cell), self.scene.plan.layout.cells.get(cell))
        else {
            return view;
        };
        if (old.x, old.y) == (new.x, new.y) {
            return view;
        }
        if !new.is_drawn() {
            self.focus = None;
            return self.focus_view(None);
        }
        if (old.width, old.height) != (new.width, new.height) || !old.is_drawn() {
            return self.focus_view(Some(cell));
        }
        view.offset.0 -= view.scale * (new.x as f64 - old.x as f64);
        view.offset.1 -= view.scale * (new.y as f64 - old.y as f64);
        view
    }

    /// Whether everything a scripted run waits for before its screenshot is on screen: the
    /// whole figure, the readout of a hovered bin, and the detail last asked for.
    pub(super) fn settled(&self) -> bool {
        self.timings.resident.is_some()
            && (self.hovered.is_none() || self.readout_bin == self.hovered)
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
