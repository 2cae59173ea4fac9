//! The winit application: event plumbing only, in the manner of wgpu's examples framework.
//! Each event is routed to a handler of the view state ([`State`]); what the events do lives
//! there (`input`, `readout`, `detail_layer`), what is drawn comes from the engine.

use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use winit::application::ApplicationHandler;
use winit::event::{ElementState, MouseButton, WindowEvent};
use winit::event_loop::{ActiveEventLoop, ControlFlow};
use winit::window::WindowId;

use super::detail::{Job, Reply};
use super::state::State;
use super::{ViewerOptions, ViewerReport};
use crate::error::{Error, Result};
use crate::source::AttentionSource;

/// How long a scripted run waits for the worker before taking its screenshot anyway.
const SCRIPTED_WAIT: Duration = Duration::from_secs(120);

pub(super) struct App<'s> {
    source: &'s dyn AttentionSource,
    options: ViewerOptions,
    state: Option<State>,
    pub(super) error: Option<Error>,
    pub(super) report: Option<ViewerReport>,
    pub(super) jobs: Option<Sender<Job>>,
    replies: Receiver<Reply>,
    started: Instant,
}

impl<'s> App<'s> {
    pub(super) fn new(
        source: &'s dyn AttentionSource,
        options: ViewerOptions,
        jobs: Sender<Job>,
        replies: Receiver<Reply>,
        started: Instant,
    ) -> App<'s> {
        App {
            source,
            options,
            state: None,
            error: None,
            report: None,
            jobs: Some(jobs),
            replies,
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

    /// The window's state, with the worker started and the scripted opening view (focus,
    /// hover, zoom) applied; the whole figure is asked for last.
    fn open(&self, event_loop: &ActiveEventLoop) -> Result<State> {
        let options = &self.options;
        let mut s = State::new(event_loop, self.source, options)?;
        s.jobs = self.jobs.clone();
        s.send(Job::Start(s.engine.clone()));
        if let Some((layer, head)) = options.focus {
            let Some(cell) = s.scene.plan.cells.iter().position(|&c| c == (layer, head)) else {
                return Err(Error::BadOption(format!(
                    "--focus {},{}: that head is not among the selected cells",
                    layer + 1,
                    head + 1
                )));
            };
            s.focus_on(Some(cell));
        }
        if let Some(at) = options.hover {
            s.cursor = at;
            s.hover();
        }
        if let Some(z) = options.zoom {
            let (w, h) = s.window_size();
            let centre = (w as f64 / 2.0, h as f64 / 2.0);
            let view = s.view.zoom_about_within(centre, z, s.max_scale);
            s.set_view(view);
        }
        // What the opening view shows first, then the whole figure.
        s.flush_detail(true);
        s.send(Job::Scene(Box::new(options.render.clone())));
        Ok(s)
    }

    /// Routes one window event; true when the window should close.
    fn handle(&mut self, event: WindowEvent) -> Result<bool> {
        let Some(state) = self.state.as_mut() else {
            return Ok(false);
        };
        match event {
            WindowEvent::CloseRequested => return Ok(true),
            WindowEvent::Resized(size) => state.resize(size.width, size.height),
            WindowEvent::KeyboardInput { event, .. } if event.state == ElementState::Pressed => {
                return state.key(&event.logical_key);
            }
            WindowEvent::MouseWheel { delta, .. } => state.wheel(delta),
            WindowEvent::CursorMoved { position, .. } => {
                state.cursor_moved((position.x, position.y));
            }
            WindowEvent::MouseInput {
                state: pressed,
                button: MouseButton::Left,
                ..
            } => state.left_button(pressed == ElementState::Pressed),
            WindowEvent::RedrawRequested => return self.redraw(),
            _ => {}
        }
        Ok(false)
    }

    /// Draws a frame, then moves a scripted run on; true once its frames are done.
    fn redraw(&mut self) -> Result<bool> {
        let Some(state) = self.state.as_mut() else {
            return Ok(false);
        };
        state.draw()?;
        if state.timings.first_frame.is_none() {
            state.timings.first_frame = Some(self.started.elapsed().as_secs_f64());
        }
        if let Some(delta) = self.options.pan_per_frame {
            state.pan_by(delta);
        }
        if let Some(n) = self.options.exit_after_frames {
            if state.timings.frames >= n {
                return Ok(true);
            }
            state.surface.window.request_redraw();
        }
        Ok(false)
    }

    /// Closes the window: a scripted run first waits for what it asked for, then the
    /// screenshot is taken and the report kept.
    fn close(&mut self, event_loop: &ActiveEventLoop) {
        if self.scripted() {
            self.settle();
        }
        let Some(state) = self.state.as_mut() else {
            return event_loop.exit();
        };
        if let Some(path) = &self.options.screenshot {
            if let Err(e) = state.screenshot(path) {
                self.error = Some(e);
            }
        }
        self.report = Some(state.report());
        event_loop.exit();
    }

    /// Waits for the detail a scripted run asked for, and the readout of its hover, so its
    /// screenshot shows what a user would see a moment later, every time.
    fn settle(&mut self) {
        let Some(state) = self.state.as_mut() else {
            return;
        };
        state.flush_detail(true);
        while !state.settled() {
            let Ok(reply) = self.replies.recv_timeout(SCRIPTED_WAIT) else {
                break;
            };
            if let Err(e) = state.receive(reply, self.started) {
                self.error = Some(e);
                break;
            }
        }
    }
}

impl ApplicationHandler<()> for App<'_> {
    fn about_to_wait(&mut self, event_loop: &ActiveEventLoop) {
        let scripted = self.scripted();
        let Some(state) = self.state.as_mut() else {
            return;
        };
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
                return self.fail(event_loop, e);
            }
        }
    }

    fn resumed(&mut self, event_loop: &ActiveEventLoop) {
        if self.state.is_some() {
            return;
        }
        match self.open(event_loop) {
            Ok(state) => self.state = Some(state),
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
        if self.state.is_none() || (self.scripted() && pointer) {
            return;
        }
        match self.handle(event) {
            Ok(false) => {}
            Ok(true) => self.close(event_loop),
            Err(e) => self.fail(event_loop, e),
        }
    }
}
