//! The real-time viewer: the same scene the exporter draws, on a window surface, with pan, zoom
//! and recolouring. One engine, two targets: only the final render target differs.

mod detail;
mod inspect;
mod transform;

use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::time::Instant;

use winit::application::ApplicationHandler;
use winit::event::{ElementState, MouseButton, MouseScrollDelta, WindowEvent};
use winit::event_loop::{ActiveEventLoop, ControlFlow, EventLoop};
use winit::keyboard::{Key, NamedKey};
use winit::window::{Window, WindowId};

pub use detail::{readout, visible_region, Region, RegionSource};
pub use inspect::{bin_at, read_bin, Bin};
pub use transform::ViewTransform;

use crate::color::colorize::ColorizedCells;
use crate::color::colormap::Colormap;
use crate::color::norm::Norm;
use crate::compose::{ComposePipeline, Compositor};
use crate::engine::{Engine, Scene};
use crate::error::{Error, Result};
use crate::figure::plan::RenderOptions;
use crate::figure::quads::{FigureQuads, Quad, KIND_CELL};
use crate::gpu::Gpu;
use crate::pool::accum::Reduce;
use crate::pool::{Causal, PoolOptions, PooledCells};
use crate::source::AttentionSource;

/// How the viewer starts and, for scripts and tests, when it stops.
#[derive(Clone, Debug, Default)]
pub struct ViewerOptions {
    pub render: RenderOptions,
    /// Close after this many frames (drawing continuously until then).
    pub exit_after_frames: Option<u64>,
    /// Written after the last frame: exactly what is on screen.
    pub screenshot: Option<PathBuf>,
    /// Initial window size in physical pixels (default: the figure, within 1600×1000).
    pub size: Option<(u32, u32)>,
    /// One token per line: the hover readout names the query and key tokens.
    pub tokens: Option<Vec<String>>,
    /// Start in focus mode on this (layer, head), 0-based.
    pub focus: Option<(usize, usize)>,
    /// Then zoom by this factor about the window's centre.
    pub zoom: Option<f64>,
    /// Pan by (dx, dy) window pixels every frame (scripted panning, for benchmarks).
    pub pan_per_frame: Option<(f64, f64)>,
    /// Put the cursor here (window pixels) after opening: a scripted hover readout.
    pub hover: Option<(f64, f64)>,
}

/// What a viewer session measured.
#[derive(Clone, Debug)]
pub struct ViewerReport {
    pub adapter: String,
    pub frames: u64,
    /// Seconds per frame, from acquiring the surface texture to presenting it.
    pub frame_times: Vec<f64>,
    /// Seconds from `run` to the first frame presented.
    pub first_frame: f64,
    /// Seconds from `run` until the whole figure was read and shown (the first frames show
    /// its layout, and any zoomed detail, while it is read); `None` if the window closed first.
    pub resident: Option<f64>,
    /// Seconds from `run` until the first exact detail of a zoomed view was on screen.
    pub first_detail: Option<f64>,
    /// Detail regions pooled from the source and shown, and the seconds from request to
    /// arrival of the last one.
    pub details: u64,
    pub last_detail: Option<f64>,
}

impl ViewerReport {
    /// (min, median, p99) in milliseconds.
    pub fn summary(&self) -> (f64, f64, f64) {
        let mut t = self.frame_times.clone();
        if t.is_empty() {
            return (0.0, 0.0, 0.0);
        }
        t.sort_by(f64::total_cmp);
        let at = |q: f64| t[((t.len() - 1) as f64 * q).round() as usize] * 1e3;
        (t[0] * 1e3, at(0.5), at(0.99))
    }
}

/// Opens a window on `source` and runs until it is closed (or `exit_after_frames`).
pub fn run(source: &dyn AttentionSource, options: ViewerOptions) -> Result<ViewerReport> {
    let started = Instant::now();
    let event_loop = EventLoop::with_user_event()
        .build()
        .map_err(|e| Error::Window(format!("cannot open a window: {e}")))?;
    let proxy = event_loop.create_proxy();
    let (jobs, job_rx) = channel();
    let (reply_tx, replies) = channel();
    let tokens = options.tokens.clone();
    std::thread::scope(|scope| {
        // Reads for the hover readout and the zoomed detail happen here, never on the
        // window's thread.
        scope.spawn(move || {
            detail::worker(source, tokens.as_deref(), job_rx, reply_tx, || {
                let _ = proxy.send_event(());
            })
        });
        let mut app = App {
            source,
            options,
            state: None,
            error: None,
            report: None,
            jobs: Some(jobs),
            replies,
            started,
        };
        let run = event_loop.run_app(&mut app);
        // Ends the worker, which the scope then joins.
        app.jobs = None;
        run.map_err(|e| Error::Gpu(format!("window event loop: {e}")))?;
        if let Some(e) = app.error {
            return Err(e);
        }
        app.report
            .take()
            .ok_or_else(|| Error::Window("the window closed before it was drawn".into()))
    })
}

struct App<'s> {
    source: &'s dyn AttentionSource,
    options: ViewerOptions,
    state: Option<State>,
    error: Option<Error>,
    report: Option<ViewerReport>,
    jobs: Option<Sender<detail::Job>>,
    replies: Receiver<detail::Reply>,
    started: Instant,
}

/// A region of the focused head pooled at screen resolution, drawn over its cell.
struct DetailLayer {
    region: Region,
    pooled: PooledCells,
    colors: ColorizedCells,
    compositor: Compositor,
}

/// How long the view must be still before its detail is pooled.
const SETTLE: std::time::Duration = std::time::Duration::from_millis(120);

struct State {
    window: Arc<Window>,
    surface: wgpu::Surface<'static>,
    config: wgpu::SurfaceConfiguration,
    engine: Arc<Engine>,
    scene: Scene,
    pipe: ComposePipeline,
    view: ViewTransform,
    /// The view's quads, reused every time the view changes (no per-frame allocation).
    quads: Vec<Quad>,
    cursor: (f64, f64),
    dragging: Option<(f64, f64)>,
    /// Where the left button went down, to tell a click from a drag.
    pressed_at: Option<(f64, f64)>,
    /// The cell filling the window, in focus mode.
    focus: Option<usize>,
    /// The bin under the cursor, as last shown in the readout.
    hovered: Option<Bin>,
    title: String,
    frames: u64,
    frame_times: Vec<f64>,
    first_frame: Option<f64>,
    /// Where the worker's requests go.
    jobs: Option<Sender<detail::Job>>,
    /// The detail asked for last, and when.
    wanted: Option<(Region, Instant)>,
    /// The detail the current view needs, and when the view last changed.
    pending: Option<(Region, PoolOptions, Instant)>,
    detail: Option<DetailLayer>,
    details: u64,
    last_detail: Option<f64>,
    /// Most magnification allowed: an entry of the longest axis spans 64 pixels.
    max_scale: f64,
    /// (queries, keys) of every head.
    source_shape: (usize, usize),
    /// Seconds from start until the figure was read and shown; `None` while it is read.
    resident: Option<f64>,
    /// Seconds from start until the first detail region was shown.
    first_detail: Option<f64>,
    /// The hover readout drawn in the window's bottom-left corner, and its quads at (0, 0).
    readout: Option<(Compositor, [Quad; 2])>,
}

impl State {
    fn new(
        event_loop: &ActiveEventLoop,
        source: &dyn AttentionSource,
        options: &ViewerOptions,
    ) -> Result<State> {
        let instance = Gpu::instance();
        // The figure is pooled before the window exists, so its size can pick the window's.
        let title = format!("attnviz: {}", source.name());
        let attributes = Window::default_attributes()
            .with_title(title)
            .with_visible(true);
        let window = Arc::new(
            event_loop
                .create_window(attributes)
                .map_err(|e| Error::Window(format!("cannot open a window: {e}")))?,
        );
        let surface = instance
            .create_surface(window.clone())
            .map_err(|e| Error::Window(format!("cannot draw into the window: {e}")))?;
        let gpu = Gpu::for_surface(instance, &surface)?;
        let engine = Arc::new(Engine::new(gpu));
        // Opens on the layout with empty cells; the worker reads the input (see `Job::Scene`).
        let scene = engine.empty_scene(source, &options.render)?;
        let figure = (scene.width(), scene.height());
        let size = options
            .size
            .unwrap_or((figure.0.min(1600), figure.1.min(1000)));
        let _ = window.request_inner_size(winit::dpi::PhysicalSize::new(size.0, size.1));
        let caps = surface.get_capabilities(&engine.gpu.adapter);
        // A non-sRGB format: the figure's bytes are already display-encoded colormap values.
        let format = caps
            .formats
            .iter()
            .copied()
            .find(|f| !f.is_srgb())
            .unwrap_or(caps.formats[0]);
        let config = wgpu::SurfaceConfiguration {
            usage: wgpu::TextureUsages::RENDER_ATTACHMENT,
            format,
            color_space: Default::default(),
            width: size.0.max(1),
            height: size.1.max(1),
            present_mode: wgpu::PresentMode::AutoVsync,
            desired_maximum_frame_latency: 2,
            alpha_mode: caps.alpha_modes[0],
            view_formats: vec![],
        };
        surface.configure(&engine.gpu.device, &config);
        let pipe = ComposePipeline::new(&engine.gpu.device, format);
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
            window,
            surface,
            config,
            engine,
            scene,
            pipe,
            view,
            quads: Vec::new(),
            cursor: (0.0, 0.0),
            dragging: None,
            pressed_at: None,
            focus: None,
            hovered: None,
            title: format!("attnviz: {}", source.name()),
            frames: 0,
            frame_times: Vec::new(),
            first_frame: None,
            jobs: None,
            wanted: None,
            pending: None,
            detail: None,
            details: 0,
            last_detail: None,
            max_scale,
            source_shape: (s.queries, s.keys),
            resident: None,
            first_detail: None,
            readout: None,
        };
        state.set_view(view);
        Ok(state)
    }

    fn send(&self, job: detail::Job) {
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(job);
        }
    }

    /// Asks the worker for the focused head's visible region at screen resolution when the
    /// view magnifies it past the resident pooling (not with `--norm row`, which normalizes
    /// whole rows while pooling).
    fn request_detail(&mut self) {
        let region = self.focus.and_then(|cell| {
            let s = &self.scene;
            if s.plan.pool.row_norm {
                return None;
            }
            let shape = (s.pooled.geometry, s.plan.layout.cells.get(cell)?);
            let (queries, keys) = (self.source_shape.0, self.source_shape.1);
            visible_region(
                cell,
                shape.1,
                &shape.0,
                queries,
                keys,
                &self.view,
                self.window_size(),
            )
        });
        match region {
            None => {
                self.wanted = None;
                self.pending = None;
                self.detail = None;
            }
            Some(r) => {
                if self.wanted.as_ref().is_some_and(|(w, _)| *w == r)
                    || self.detail.as_ref().is_some_and(|d| d.region == r)
                {
                    return;
                }
                let options = PoolOptions {
                    causal: if self.scene.pooled.causal {
                        Causal::On
                    } else {
                        Causal::Off
                    },
                    ..self.scene.plan.pool
                };
                // Sent once the view has settled (see `flush_detail`): while it moves, the
                // resident pooling is shown and the GPU stays free for frames.
                self.pending = Some((r, options, Instant::now()));
            }
        }
        self.place_detail();
    }

    /// Sends the pending detail request once the view has been still for `SETTLE` (or at
    /// once with `now`); otherwise returns when to look again.
    fn flush_detail(&mut self, now: bool) -> Option<Instant> {
        let (_, _, changed) = self.pending.as_ref()?;
        let due = *changed + SETTLE;
        if !now && Instant::now() < due {
            return Some(due);
        }
        let (region, options, _) = self.pending.take()?;
        self.send(detail::Job::Detail(region.clone(), options));
        self.wanted = Some((region, Instant::now()));
        None
    }

    /// A pooled region arrived: colour it like its cell and draw it from the next frame on.
    fn show_detail(&mut self, region: Region, pooled: PooledCells) -> Result<()> {
        // A region asked for before the latest still shows the right entries in the right
        // place (it is placed by its own rectangle), so it is drawn while the view moves on.
        let Some((wanted, asked)) = &self.wanted else {
            return Ok(());
        };
        if wanted.cell != region.cell {
            return Ok(());
        }
        if *wanted == region {
            self.last_detail = Some(asked.elapsed().as_secs_f64());
        }
        self.details += 1;
        let gpu = &self.engine.gpu;
        let pipe = self.engine.colorize_pipeline();
        let colors = ColorizedCells::new(gpu, pipe, &pooled);
        let s = &self.scene;
        colors.update(
            gpu,
            pipe,
            &pooled,
            &[self.detail_range(&region, &pooled)],
            &s.scale,
            s.reduce,
            s.colormap,
        )?;
        let (w, h) = region.size;
        let quads = FigureQuads {
            quads: vec![Quad {
                rect: [0, 0, w as i32, h as i32],
                kind: KIND_CELL,
                src: 0,
                src_size: w | (h << 16),
                color: 0,
            }],
            draws: std::iter::once(0..1).collect(),
            atlas: crate::figure::text::Atlas::pack(&[]),
            width: w,
            height: h,
            background: s.quads.background,
        };
        let compositor = Compositor::new(gpu, &self.pipe, &quads, &colors, &pooled);
        self.detail = Some(DetailLayer {
            region,
            pooled,
            colors,
            compositor,
        });
        self.place_detail();
        Ok(())
    }

    /// Moves the detail layer's quad to where its region is under the current view.
    fn place_detail(&mut self) {
        let Some(d) = &self.detail else { return };
        let (x0, y0, x1, y1) = d.region.figure_rect;
        let (a, b) = (self.view.to_window((x0, y0)), self.view.to_window((x1, y1)));
        let (w, h) = d.region.size;
        let quad = Quad {
            rect: [
                a.0.round() as i32,
                a.1.round() as i32,
                ((b.0.round() - a.0.round()) as i32).max(1),
                ((b.1.round() - a.1.round()) as i32).max(1),
            ],
            kind: KIND_CELL,
            src: 0,
            src_size: w | (h << 16),
            color: 0,
        };
        d.compositor.set_quads(&self.engine.gpu, &[quad]);
        self.window.request_redraw();
    }

    /// The range a detail region is coloured with: its cell's, once the figure is read; until
    /// then its own (provisional: the window has nothing else to go by yet).
    fn detail_range(&self, region: &Region, pooled: &PooledCells) -> [f32; 2] {
        if self.resident.is_some() {
            return self.scene.ranges[region.cell];
        }
        pooled.stats[0]
            .range()
            .map_or([0.0, 1.0], |(lo, hi)| [lo, hi])
    }

    /// The figure was read: it replaces the empty one, keeping the view and the colouring
    /// chosen meanwhile.
    fn show_scene(&mut self, mut scene: Scene, started: Instant) -> Result<()> {
        let (norm, reduce, colormap) = (self.scene.norm, self.scene.reduce, self.scene.colormap);
        if (norm, reduce, colormap) != (scene.norm, scene.reduce, scene.colormap) {
            self.engine.recolor(&mut scene, norm, reduce, colormap)?;
        }
        self.scene = scene;
        self.resident = Some(started.elapsed().as_secs_f64());
        let view = self.view;
        self.set_view(view);
        self.recolor_detail()
    }

    /// Recolours the detail layer after the scene was recoloured.
    fn recolor_detail(&mut self) -> Result<()> {
        let Some(d) = &self.detail else { return Ok(()) };
        let s = &self.scene;
        d.colors.update(
            &self.engine.gpu,
            self.engine.colorize_pipeline(),
            &d.pooled,
            &[self.detail_range(&d.region, &d.pooled)],
            &s.scale,
            s.reduce,
            s.colormap,
        )
    }

    fn figure(&self) -> (u32, u32) {
        (self.scene.width(), self.scene.height())
    }

    fn window_size(&self) -> (u32, u32) {
        (self.config.width, self.config.height)
    }

    fn set_view(&mut self, view: ViewTransform) {
        self.view = view;
        view.apply(&self.scene.quads.quads, &mut self.quads);
        self.scene
            .compositor
            .set_quads(&self.engine.gpu, &self.quads);
        self.window.request_redraw();
        self.request_detail();
    }

    fn resize(&mut self, w: u32, h: u32) {
        if w == 0 || h == 0 {
            return;
        }
        self.config.width = w;
        self.config.height = h;
        self.surface
            .configure(&self.engine.gpu.device, &self.config);
        self.window.request_redraw();
        self.request_detail();
        self.place_readout();
    }

    fn draw(&mut self) -> Result<()> {
        let start = Instant::now();
        let frame = match self.surface.get_current_texture() {
            wgpu::CurrentSurfaceTexture::Success(f)
            | wgpu::CurrentSurfaceTexture::Suboptimal(f) => f,
            wgpu::CurrentSurfaceTexture::Outdated | wgpu::CurrentSurfaceTexture::Lost => {
                self.surface
                    .configure(&self.engine.gpu.device, &self.config);
                return Ok(());
            }
            _ => return Ok(()),
        };
        let target = frame.texture.create_view(&Default::default());
        let gpu = &self.engine.gpu;
        gpu.scoped("drawing a frame", || {
            let mut encoder = gpu
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("attnviz.viewer.encoder"),
                });
            self.scene.compositor.draw(
                gpu,
                &self.pipe,
                &mut encoder,
                &target,
                self.window_size(),
            )?;
            if let Some(d) = &self.detail {
                d.compositor.draw_over(
                    gpu,
                    &self.pipe,
                    &mut encoder,
                    &target,
                    self.window_size(),
                )?;
            }
            if let Some((readout, _)) = &self.readout {
                readout.draw_over(gpu, &self.pipe, &mut encoder, &target, self.window_size())?;
            }
            gpu.queue.submit([encoder.finish()]);
            Ok(())
        })?;
        gpu.queue.present(frame);
        gpu.wait()?;
        self.frame_times.push(start.elapsed().as_secs_f64());
        self.frames += 1;
        Ok(())
    }

    /// Renders exactly what is on screen into a PNG.
    fn screenshot(&self, path: &std::path::Path) -> Result<()> {
        let (w, h) = self.window_size();
        let figure = FigureQuads {
            quads: self.quads.clone(),
            width: w,
            height: h,
            ..self.scene.quads.clone()
        };
        let overlays: Vec<&Compositor> = self
            .detail
            .as_ref()
            .map(|d| &d.compositor)
            .into_iter()
            .chain(self.readout.as_ref().map(|r| &r.0))
            .collect();
        let rgba = self.engine.export_quads(&self.scene, &figure, &overlays)?;
        crate::files::write_png(path, w, h, &rgba)
    }

    /// Fills the window with cell `cell` (focus mode), or shows the whole grid for `None`.
    fn focus_on(&mut self, cell: Option<usize>) {
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
    fn cell_under_cursor(&self) -> Option<usize> {
        let (x, y) = self.view.to_figure(self.cursor);
        self.scene.plan.layout.cells.iter().position(|c| {
            x >= c.x as f64
                && x < (c.x + c.width) as f64
                && y >= c.y as f64
                && y < (c.y + c.height) as f64
        })
    }

    /// Asks the worker for the readout (shown in the title bar) when the entry under the
    /// cursor changes; reading the source never happens on this thread.
    fn hover(&mut self, source: &dyn AttentionSource) {
        let bin = bin_at(
            &self.scene.plan.layout,
            &self.scene.plan.geometry,
            self.source_shape.0,
            self.source_shape.1,
            self.view.to_figure(self.cursor),
        );
        if bin == self.hovered {
            return;
        }
        match &bin {
            None => {
                self.set_title(format!("attnviz: {}", source.name()));
                self.set_readout(None);
            }
            Some(b) => self.send(detail::Job::Hover(b.clone(), self.scene.reduce)),
        }
        self.hovered = bin;
    }

    fn set_title(&mut self, text: String) {
        if text != self.title {
            self.window.set_title(&text);
            self.title = text;
        }
    }

    /// Shows `text` in a box in the window's bottom-left corner (`None` hides it). Rasterized
    /// when the readout changes, never per frame.
    fn set_readout(&mut self, text: Option<&str>) {
        let Some(text) = text else {
            self.readout = None;
            self.window.request_redraw();
            return;
        };
        let theme = self.scene.plan.layout.theme;
        let px = (15.0 * self.window.scale_factor()).round() as f32;
        let label =
            crate::figure::text::rasterize(&[(text, crate::figure::text::Face::Regular)], px);
        let pad = (px / 3.0).round() as i32;
        let (w, h) = (label.width as i32, label.height as i32);
        let quads = [
            Quad {
                rect: [0, 0, w + 2 * pad, h + pad],
                kind: crate::figure::quads::KIND_FILL,
                src: 0,
                src_size: 0,
                color: crate::color::colormap::pack_rgba(theme.background),
            },
            Quad {
                rect: [pad, pad / 2, w, h],
                kind: crate::figure::quads::KIND_LABEL,
                src: 0,
                src_size: 0,
                color: crate::color::colormap::pack_rgba(theme.foreground),
            },
        ];
        let figure = FigureQuads {
            quads: quads.to_vec(),
            draws: std::iter::once(0..2).collect(),
            atlas: crate::figure::text::Atlas::pack(&[label]),
            width: (w + 2 * pad) as u32,
            height: (h + pad) as u32,
            background: theme.background,
        };
        let compositor = Compositor::new(
            &self.engine.gpu,
            &self.pipe,
            &figure,
            &self.scene.colors,
            &self.scene.pooled,
        );
        self.readout = Some((compositor, quads));
        self.place_readout();
    }

    /// Keeps the readout in the bottom-left corner as the window changes size.
    fn place_readout(&mut self) {
        let Some((compositor, quads)) = &self.readout else {
            return;
        };
        let dy = self.config.height as i32 - quads[0].rect[3] - 8;
        let placed = quads.map(|q| Quad {
            rect: [q.rect[0] + 8, q.rect[1] + dy, q.rect[2], q.rect[3]],
            ..q
        });
        compositor.set_quads(&self.engine.gpu, &placed);
        self.window.request_redraw();
    }

    /// Takes what the worker finished.
    fn receive(&mut self, reply: detail::Reply, started: Instant) -> Result<()> {
        match reply {
            detail::Reply::Scene(scene) => self.show_scene(*scene, started),
            detail::Reply::Hover(bin, text) => {
                if self.hovered.as_ref() == Some(&bin) {
                    self.set_readout(Some(&text));
                    self.set_title(text);
                }
                Ok(())
            }
            detail::Reply::Detail(region, pooled) => {
                self.show_detail(region, pooled)?;
                if self.detail.is_some() && self.first_detail.is_none() {
                    self.first_detail = Some(started.elapsed().as_secs_f64());
                }
                Ok(())
            }
            detail::Reply::Failed(e) => Err(e),
        }
    }

    /// Moves the focus by (heads, layers) within the grid.
    fn step_focus(&mut self, dh: i64, dl: i64) {
        let Some(cell) = self.focus else { return };
        let cols = self.scene.plan.heads.len() as i64;
        let rows = self.scene.plan.layers.len() as i64;
        let (r, c) = (cell as i64 / cols, cell as i64 % cols);
        let (r, c) = ((r + dl).clamp(0, rows - 1), (c + dh).clamp(0, cols - 1));
        self.focus_on(Some((r * cols + c) as usize));
    }

    fn key(&mut self, key: &Key) -> Result<bool> {
        match key {
            Key::Named(NamedKey::Escape) if self.focus.is_some() => self.focus_on(None),
            Key::Named(NamedKey::Escape) => return Ok(true),
            Key::Named(NamedKey::Enter) => self.focus_on(self.cell_under_cursor().or(Some(0))),
            Key::Named(NamedKey::ArrowLeft) => self.step_focus(-1, 0),
            Key::Named(NamedKey::ArrowRight) => self.step_focus(1, 0),
            Key::Named(NamedKey::ArrowUp) => self.step_focus(0, -1),
            Key::Named(NamedKey::ArrowDown) => self.step_focus(0, 1),
            // Grids taller than the window: page through the layers a window at a time.
            Key::Named(NamedKey::PageDown) | Key::Named(NamedKey::PageUp) => {
                let (w, h) = self.window_size();
                let dy = if matches!(key, Key::Named(NamedKey::PageDown)) {
                    -(h as f64) * 0.9
                } else {
                    h as f64 * 0.9
                };
                let view = self.view.pan((0.0, dy), self.figure(), (w, h), 32.0);
                self.set_view(view);
            }
            _ => {}
        }
        let s = &mut self.scene;
        if let Key::Character(c) = key {
            match c.as_str() {
                "q" => return Ok(true),
                "g" => {
                    let next = if self.focus.is_some() {
                        None
                    } else {
                        self.cell_under_cursor().or(Some(0))
                    };
                    self.focus_on(next);
                }
                "c" => {
                    let i = Colormap::ALL
                        .iter()
                        .position(|&m| m == s.colormap)
                        .unwrap_or(0);
                    let next = Colormap::ALL[(i + 1) % Colormap::ALL.len()];
                    self.engine.recolor(s, s.norm, s.reduce, next)?;
                    self.recolor_detail()?;
                }
                "n" if s.norm != Norm::Row => {
                    let cycle = [Norm::Head, Norm::Layer, Norm::Global, Norm::None];
                    let i = cycle.iter().position(|&n| n == s.norm).unwrap_or(0);
                    self.engine
                        .recolor(s, cycle[(i + 1) % cycle.len()], s.reduce, s.colormap)?;
                    self.recolor_detail()?;
                }
                "r" => {
                    let next = if s.reduce == Reduce::Max {
                        Reduce::Mean
                    } else {
                        Reduce::Max
                    };
                    self.engine.recolor(s, s.norm, next, s.colormap)?;
                    // Max and mean pool differently: the detail is pooled anew.
                    self.detail = None;
                    self.wanted = None;
                    self.request_detail();
                }
                "0" => {
                    let focus = self.focus;
                    self.focus_on(focus);
                }
                "s" => {
                    let path = PathBuf::from(format!("attnviz-{}.png", std::process::id()));
                    self.screenshot(&path)?;
                    eprintln!("saved {}", path.display());
                }
                _ => {}
            }
        }
        self.window.request_redraw();
        Ok(false)
    }
}

impl ApplicationHandler<()> for App<'_> {
    fn about_to_wait(&mut self, event_loop: &ActiveEventLoop) {
        let Some(state) = self.state.as_mut() else {
            return;
        };
        let scripted = self.options.exit_after_frames.is_some();
        match state.flush_detail(false) {
            Some(due) if !scripted => {
                event_loop.set_control_flow(ControlFlow::WaitUntil(due));
            }
            _ if !scripted => event_loop.set_control_flow(ControlFlow::Wait),
            _ => {}
        }
    }

    /// The worker finished something: take every reply waiting.
    fn user_event(&mut self, event_loop: &ActiveEventLoop, _: ()) {
        let Some(state) = self.state.as_mut() else {
            return;
        };
        while let Ok(reply) = self.replies.try_recv() {
            if let Err(e) = state.receive(reply, self.started) {
                self.error = Some(e);
                event_loop.exit();
                return;
            }
        }
    }

    fn resumed(&mut self, event_loop: &ActiveEventLoop) {
        if self.state.is_some() {
            return;
        }
        match State::new(event_loop, self.source, &self.options) {
            Ok(mut s) => {
                s.jobs = self.jobs.clone();
                s.send(detail::Job::Start(s.engine.clone()));
                if let Some((layer, head)) = self.options.focus {
                    let cell = s.scene.plan.cells.iter().position(|&c| c == (layer, head));
                    match cell {
                        Some(c) => s.focus_on(Some(c)),
                        None => {
                            self.error = Some(Error::BadOption(format!(
                                "--focus {},{}: that head is not among the selected cells",
                                layer + 1,
                                head + 1
                            )));
                            event_loop.exit();
                        }
                    }
                }
                if let Some(at) = self.options.hover {
                    s.cursor = at;
                    s.hover(self.source);
                }
                if let Some(z) = self.options.zoom {
                    let (w, h) = s.window_size();
                    let view =
                        s.view
                            .zoom_about_within((w as f64 / 2.0, h as f64 / 2.0), z, s.max_scale);
                    s.set_view(view);
                }
                // What the opening view shows first, then the whole figure.
                s.flush_detail(true);
                s.send(detail::Job::Scene(Box::new(self.options.render.clone())));
                self.state = Some(s);
            }
            Err(e) => {
                self.error = Some(e);
                event_loop.exit();
            }
        }
        let continuous = self.options.exit_after_frames.is_some();
        event_loop.set_control_flow(if continuous {
            ControlFlow::Poll
        } else {
            ControlFlow::Wait
        });
    }

    fn window_event(&mut self, event_loop: &ActiveEventLoop, _id: WindowId, event: WindowEvent) {
        let Some(state) = self.state.as_mut() else {
            return;
        };
        // A scripted run (--exit-after-frames) is driven by its options alone: the pointer of
        // whatever display it runs on must not change what it draws or saves.
        let scripted = self.options.exit_after_frames.is_some();
        if scripted
            && matches!(
                event,
                WindowEvent::CursorMoved { .. }
                    | WindowEvent::MouseInput { .. }
                    | WindowEvent::MouseWheel { .. }
            )
        {
            return;
        }
        let result: Result<bool> = (|| {
            match event {
                WindowEvent::CloseRequested => return Ok(true),
                WindowEvent::Resized(size) => state.resize(size.width, size.height),
                WindowEvent::KeyboardInput { event, .. }
                    if event.state == ElementState::Pressed =>
                {
                    return state.key(&event.logical_key);
                }
                WindowEvent::MouseWheel { delta, .. } => {
                    let steps = match delta {
                        MouseScrollDelta::LineDelta(_, y) => y as f64,
                        MouseScrollDelta::PixelDelta(p) => p.y / 40.0,
                    };
                    let view = state.view.zoom_about_within(
                        state.cursor,
                        1.2f64.powf(steps),
                        state.max_scale,
                    );
                    state.set_view(view);
                }
                WindowEvent::CursorMoved { position, .. } => {
                    state.cursor = (position.x, position.y);
                    state.hover(self.source);
                    if let Some(last) = state.dragging {
                        let delta = (position.x - last.0, position.y - last.1);
                        let view = state
                            .view
                            .pan(delta, state.figure(), state.window_size(), 32.0);
                        state.set_view(view);
                        state.dragging = Some(state.cursor);
                    }
                }
                WindowEvent::MouseInput {
                    state: s,
                    button: MouseButton::Left,
                    ..
                } => {
                    let pressed = s == ElementState::Pressed;
                    state.dragging = pressed.then_some(state.cursor);
                    if pressed {
                        state.pressed_at = Some(state.cursor);
                    } else if let Some(at) = state.pressed_at.take() {
                        let moved = (at.0 - state.cursor.0).abs() + (at.1 - state.cursor.1).abs();
                        // A click (not a drag) on a cell in grid mode focuses it.
                        if moved < 4.0 && state.focus.is_none() {
                            if let Some(cell) = state.cell_under_cursor() {
                                state.focus_on(Some(cell));
                            }
                        }
                    }
                }
                WindowEvent::RedrawRequested => {
                    state.draw()?;
                    if state.first_frame.is_none() {
                        state.first_frame = Some(self.started.elapsed().as_secs_f64());
                    }
                    if let Some(delta) = self.options.pan_per_frame {
                        let view = state
                            .view
                            .pan(delta, state.figure(), state.window_size(), 32.0);
                        state.set_view(view);
                    }
                    if let Some(n) = self.options.exit_after_frames {
                        if state.frames >= n {
                            return Ok(true);
                        }
                        state.window.request_redraw();
                    }
                }
                _ => {}
            }
            Ok(false)
        })();
        match result {
            Ok(false) => {}
            Ok(true) => {
                // A scripted run waits for the detail it asked for, so its screenshot shows
                // what a user would see a moment later, every time.
                if self.options.exit_after_frames.is_some() {
                    state.flush_detail(true);
                    // and for the readout of a scripted hover.
                    let settled = |s: &State| {
                        s.resident.is_some()
                            && (s.hovered.is_none() || s.readout.is_some())
                            && (s.wanted.is_none()
                                || s.detail.as_ref().map(|d| &d.region)
                                    == s.wanted.as_ref().map(|w| &w.0))
                    };
                    while !settled(state) {
                        let reply = self
                            .replies
                            .recv_timeout(std::time::Duration::from_secs(120));
                        let Ok(reply) = reply else { break };
                        if let Err(e) = state.receive(reply, self.started) {
                            self.error = Some(e);
                            break;
                        }
                    }
                }
                if let Some(path) = &self.options.screenshot {
                    if let Err(e) = state.screenshot(path) {
                        self.error = Some(e);
                    }
                }
                self.report = Some(ViewerReport {
                    adapter: state.engine.gpu.describe(),
                    frames: state.frames,
                    frame_times: std::mem::take(&mut state.frame_times),
                    first_frame: state.first_frame.unwrap_or(0.0),
                    resident: state.resident,
                    first_detail: state.first_detail,
                    details: state.details,
                    last_detail: state.last_detail,
                });
                event_loop.exit();
            }
            Err(e) => {
                self.error = Some(e);
                event_loop.exit();
            }
        }
    }
}
