//! The winit application: event plumbing only, in the manner of wgpu's examples framework.
//! Each window event is translated into a [`session::Event`](Event) of the one [`Session`]
//! the notebook widget drives too; the window only presents the session's frames to its
//! surface and follows its title.

use std::sync::atomic::AtomicU64;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use winit::application::ApplicationHandler;
use winit::event::{ElementState, MouseButton, MouseScrollDelta, WindowEvent};
use winit::event_loop::{ActiveEventLoop, ControlFlow};
use winit::keyboard::Key;
use winit::window::WindowId;

use super::detail::{Job, Reply};
use super::session::{Channels, Event, Session};
use super::surface::Surface;
use super::{ViewerOptions, ViewerReport};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::source::AttentionSource;

/// How long a scripted run waits for the worker before taking its screenshot anyway.
const SCRIPTED_WAIT: Duration = Duration::from_secs(120);

/// Window pixels of a wheel's pixel delta per line.
const PIXELS_PER_LINE: f64 = 40.0;

pub(super) struct App<'s> {
    source: &'s dyn AttentionSource,
    options: ViewerOptions,
    window: Option<(Surface, Session)>,
    /// The title the window shows now.
    title: String,
    pub(super) error: Option<Error>,
    pub(super) report: Option<ViewerReport>,
    /// The worker's channels, until the session takes them.
    pub(super) channels: Option<Channels>,
    started: Instant,
}

impl<'s> App<'s> {
    pub(super) fn new(
        source: &'s dyn AttentionSource,
        options: ViewerOptions,
        jobs: Sender<Job>,
        replies: Receiver<Reply>,
        reads: Arc<AtomicU64>,
        started: Instant,
    ) -> App<'s> {
        App {
            source,
            options,
            window: None,
            title: String::new(),
            error: None,
            report: None,
            channels: Some(Channels {
                jobs,
                replies,
                reads,
            }),
            started,
        }
    }

    /// A scripted run (`--exit-after-frames`) draws continuously and is driven by its options
    /// alone.
    fn scripted(&self) -> bool {
        self.options.exit_after_frames.is_some()
    }

    fn fail(&mut self, event_loop: &ActiveEventLoop, e: Error) {
        self.error = Some(e);
        event_loop.exit();
    }

    /// The window, sized by the session, and the session with the worker started and the
    /// scripted opening view (focus, hover, zoom) applied.
    fn open(&mut self, event_loop: &ActiveEventLoop) -> Result<(Surface, Session)> {
        let title = format!("attnviz: {}", self.source.name());
        let (opened, gpu) = Surface::open(event_loop, &title)?;
        let scale = opened.scale_factor();
        let engine = Arc::new(Engine::new(gpu));
        let channels = self
            .channels
            .take()
            .ok_or_else(|| Error::Window("the window was opened twice".into()))?;
        let mut session = Session::open(
            engine.clone(),
            self.source,
            &self.options,
            scale,
            channels,
            self.started,
        )?;
        let surface = Surface::configure(opened, &engine.gpu, session.size());
        session.start(&self.options)?;
        Ok((surface, session))
    }

    /// Routes one window event; true when the window should close.
    fn handle(&mut self, event: WindowEvent) -> Result<bool> {
        if event == WindowEvent::RedrawRequested {
            return self.redraw();
        }
        let Some((surface, session)) = self.window.as_mut() else {
            return Ok(false);
        };
        let cursor = session.state.cursor;
        let close = match event {
            WindowEvent::CloseRequested => true,
            WindowEvent::Resized(size) => {
                surface.resize(&session.state.engine.gpu, size.width, size.height);
                let scale = surface.window.scale_factor();
                session.handle(Event::Resize {
                    width: size.width,
                    height: size.height,
                    scale,
                })?
            }
            WindowEvent::ScaleFactorChanged { scale_factor, .. } => {
                let (width, height) = surface.size();
                session.handle(Event::Resize {
                    width,
                    height,
                    scale: scale_factor,
                })?
            }
            WindowEvent::KeyboardInput { event, .. } if event.state == ElementState::Pressed => {
                match &event.logical_key {
                    // winit's named keys are the web's key names.
                    Key::Named(named) => session.handle(Event::Key(&format!("{named:?}")))?,
                    Key::Character(c) => session.handle(Event::Key(c.as_str()))?,
                    _ => false,
                }
            }
            WindowEvent::MouseWheel { delta, .. } => {
                let lines = match delta {
                    MouseScrollDelta::LineDelta(_, y) => y as f64,
                    MouseScrollDelta::PixelDelta(p) => p.y / PIXELS_PER_LINE,
                };
                session.handle(Event::Wheel {
                    x: cursor.0,
                    y: cursor.1,
                    lines,
                })?
            }
            WindowEvent::CursorMoved { position, .. } => session.handle(Event::PointerMove {
                x: position.x,
                y: position.y,
            })?,
            WindowEvent::MouseInput {
                state: pressed,
                button,
                ..
            } => {
                let (x, y, primary) = (cursor.0, cursor.1, button == MouseButton::Left);
                session.handle(if pressed == ElementState::Pressed {
                    Event::PointerDown { x, y, primary }
                } else {
                    Event::PointerUp { x, y, primary }
                })?
            }
            _ => false,
        };
        self.follow();
        Ok(close)
    }

    /// Asks for a frame when the session changed, and shows its title.
    fn follow(&mut self) {
        let Some((surface, session)) = self.window.as_ref() else {
            return;
        };
        if session.dirty() {
            surface.window.request_redraw();
        }
        if session.title() != self.title {
            self.title = session.title().to_string();
            surface.window.set_title(&self.title);
        }
    }

    /// Draws a frame into the surface and presents it, then moves a scripted run on; true once
    /// its frames are done.
    fn redraw(&mut self) -> Result<bool> {
        let Some((surface, session)) = self.window.as_mut() else {
            return Ok(false);
        };
        let start = Instant::now();
        let engine = session.state.engine.clone();
        let gpu = &engine.gpu;
        if let Some(frame) = surface.frame(gpu) {
            let target = frame.texture.create_view(&Default::default());
            session.state.draw_into(&target)?;
            gpu.queue.present(frame);
            gpu.wait()?;
            session.count_frame(start.elapsed().as_secs_f64());
        }
        if let Some(delta) = self.options.pan_per_frame {
            session.state.pan_by(delta);
        }
        if let Some(n) = self.options.exit_after_frames {
            if session.state.timings.frames >= n {
                return Ok(true);
            }
            surface.window.request_redraw();
        }
        Ok(false)
    }

    /// Closes the window: a scripted run first waits for what it asked for (the detail and
    /// the readout of its hover, so its screenshot shows what a user would see a moment later,
    /// every time), then the screenshot is taken and the report kept.
    fn close(&mut self, event_loop: &ActiveEventLoop) {
        let scripted = self.scripted();
        let Some((_, session)) = self.window.as_mut() else {
            return event_loop.exit();
        };
        if scripted {
            if let Err(e) = session.settle(SCRIPTED_WAIT) {
                self.error = Some(e);
            }
        }
        if let Some(path) = &self.options.screenshot {
            if let Err(e) = session.save(path) {
                self.error.get_or_insert(e);
            }
        }
        self.report = Some(session.report());
        event_loop.exit();
    }
}

impl ApplicationHandler<()> for App<'_> {
    fn about_to_wait(&mut self, event_loop: &ActiveEventLoop) {
        let scripted = self.scripted();
        let Some((_, session)) = self.window.as_mut() else {
            return;
        };
        match session.update() {
            Ok(Some(due)) if !scripted => {
                event_loop.set_control_flow(ControlFlow::WaitUntil(due));
            }
            Ok(_) if !scripted => event_loop.set_control_flow(ControlFlow::Wait),
            Ok(_) => {}
            Err(e) => return self.fail(event_loop, e),
        }
        self.follow();
    }

    /// The worker finished something: take every reply waiting.
    fn user_event(&mut self, event_loop: &ActiveEventLoop, _: ()) {
        let Some((_, session)) = self.window.as_mut() else {
            return;
        };
        if let Err(e) = session.update() {
            return self.fail(event_loop, e);
        }
        self.follow();
    }

    fn resumed(&mut self, event_loop: &ActiveEventLoop) {
        if self.window.is_some() {
            return;
        }
        match self.open(event_loop) {
            Ok(window) => {
                self.window = Some(window);
                self.follow();
            }
            Err(e) => self.fail(event_loop, e),
        }
        event_loop.set_control_flow(if self.scripted() {
            ControlFlow::Poll
        } else {
            ControlFlow::Wait
        });
    }

    fn window_event(&mut self, event_loop: &ActiveEventLoop, _id: WindowId, event: WindowEvent) {
        // The pointer of whatever display a scripted run runs on must not change what it
        // draws or saves.
        let pointer = matches!(
            event,
            WindowEvent::CursorMoved { .. }
                | WindowEvent::MouseInput { .. }
                | WindowEvent::MouseWheel { .. }
        );
        if self.window.is_none() || (self.scripted() && pointer) {
            return;
        }
        match self.handle(event) {
            Ok(false) => {}
            Ok(true) => self.close(event_loop),
            Err(e) => self.fail(event_loop, e),
        }
    }
}
