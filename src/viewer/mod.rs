//! The real-time viewer: the same scene the exporter draws, on a window surface, with pan, zoom
//! and recolouring. One engine, two targets: only the final render target differs.

mod inspect;
mod transform;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use winit::application::ApplicationHandler;
use winit::event::{ElementState, MouseButton, MouseScrollDelta, WindowEvent};
use winit::event_loop::{ActiveEventLoop, ControlFlow, EventLoop};
use winit::keyboard::{Key, NamedKey};
use winit::window::{Window, WindowId};

pub use inspect::{bin_at, read_bin, Bin};
pub use transform::ViewTransform;

use crate::colormap::Colormap;
use crate::compose::{ComposePipeline, FigureQuads, Quad};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::norm::{Norm, Reduce};
use crate::render::{Engine, RenderOptions, Scene};
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
}

/// What a viewer session measured.
#[derive(Clone, Debug)]
pub struct ViewerReport {
    pub adapter: String,
    pub frames: u64,
    /// Seconds per frame, from acquiring the surface texture to presenting it.
    pub frame_times: Vec<f64>,
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
    let event_loop =
        EventLoop::new().map_err(|e| Error::NoAdapter(format!("cannot open a window: {e}")))?;
    let mut app = App {
        source,
        options,
        state: None,
        error: None,
        report: None,
    };
    event_loop
        .run_app(&mut app)
        .map_err(|e| Error::Gpu(format!("window event loop: {e}")))?;
    if let Some(e) = app.error {
        return Err(e);
    }
    app.report
        .ok_or_else(|| Error::NoAdapter("the window closed before it was drawn".into()))
}

struct App<'s> {
    source: &'s dyn AttentionSource,
    options: ViewerOptions,
    state: Option<State>,
    error: Option<Error>,
    report: Option<ViewerReport>,
}

struct State {
    window: Arc<Window>,
    surface: wgpu::Surface<'static>,
    config: wgpu::SurfaceConfiguration,
    engine: Engine,
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
                .map_err(|e| Error::NoAdapter(format!("cannot open a window: {e}")))?,
        );
        let surface = instance
            .create_surface(window.clone())
            .map_err(|e| Error::NoAdapter(format!("cannot draw into the window: {e}")))?;
        let gpu = Gpu::for_surface(instance, &surface)?;
        let engine = Engine::new(gpu);
        let scene = engine.scene(source, &options.render)?;
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
        };
        state.set_view(view);
        Ok(state)
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
        let rgba = self.engine.export_quads(&self.scene, &figure)?;
        crate::export::write_png(path, w, h, &rgba)
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

    /// Updates the readout (in the title bar) when the entry under the cursor changes.
    fn hover(&mut self, source: &dyn AttentionSource, tokens: Option<&[String]>) -> Result<()> {
        let s = source.shape();
        let bin = bin_at(
            &self.scene.plan.layout,
            &self.scene.plan.geometry,
            s.queries,
            s.keys,
            self.view.to_figure(self.cursor),
        );
        if bin == self.hovered {
            return Ok(());
        }
        let text = match &bin {
            None => format!("attnviz: {}", source.name()),
            Some(b) => {
                let token = |i: usize| {
                    tokens
                        .and_then(|t| t.get(i))
                        .map(|t| format!(" '{t}'"))
                        .unwrap_or_default()
                };
                let at = match read_bin(source, b, self.scene.reduce)? {
                    None => "no finite value".to_string(),
                    Some((v, (q, k))) if b.queries.len() * b.keys.len() == 1 => {
                        format!("q {q}{} k {k}{} = {v:.6e}", token(q), token(k))
                    }
                    Some((v, (q, k))) => format!(
                        "q {}..{} k {}..{}: {} {v:.6e}{}",
                        b.queries.start,
                        b.queries.end,
                        b.keys.start,
                        b.keys.end,
                        self.scene.reduce.name(),
                        if self.scene.reduce == Reduce::Mean {
                            String::new()
                        } else {
                            format!(" at q {q}{} k {k}{}", token(q), token(k))
                        }
                    ),
                };
                format!("l = {} h = {}  {at}", b.layer + 1, b.head + 1)
            }
        };
        self.hovered = bin;
        if text != self.title {
            self.window.set_title(&text);
            self.title = text;
        }
        Ok(())
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
                }
                "n" if s.norm != Norm::Row => {
                    let cycle = [Norm::Head, Norm::Layer, Norm::Global, Norm::None];
                    let i = cycle.iter().position(|&n| n == s.norm).unwrap_or(0);
                    self.engine
                        .recolor(s, cycle[(i + 1) % cycle.len()], s.reduce, s.colormap)?;
                }
                "r" => {
                    let next = if s.reduce == Reduce::Max {
                        Reduce::Mean
                    } else {
                        Reduce::Max
                    };
                    self.engine.recolor(s, s.norm, next, s.colormap)?;
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

impl ApplicationHandler for App<'_> {
    fn resumed(&mut self, event_loop: &ActiveEventLoop) {
        if self.state.is_some() {
            return;
        }
        match State::new(event_loop, self.source, &self.options) {
            Ok(s) => self.state = Some(s),
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
                    let view = state.view.zoom_about(state.cursor, 1.2f64.powf(steps));
                    state.set_view(view);
                }
                WindowEvent::CursorMoved { position, .. } => {
                    state.cursor = (position.x, position.y);
                    state.hover(self.source, self.options.tokens.as_deref())?;
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
                if let Some(path) = &self.options.screenshot {
                    if let Err(e) = state.screenshot(path) {
                        self.error = Some(e);
                    }
                }
                self.report = Some(ViewerReport {
                    adapter: state.engine.gpu.describe(),
                    frames: state.frames,
                    frame_times: std::mem::take(&mut state.frame_times),
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
