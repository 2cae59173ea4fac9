//! The real-time viewer: the same scene the exporter draws, on a window surface or offscreen
//! for the notebook widget, with pan, zoom and recolouring. One engine, two targets: only the
//! final render target differs; one [`Session`] holds the behaviour for both.

mod app;
mod detail;
mod detail_layer;
mod edges;
mod input;
mod inspect;
mod readout;
pub mod session;
mod state;
mod surface;
mod transform;

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::channel;
use std::sync::Arc;
use std::time::Instant;

use winit::event_loop::EventLoop;

pub use detail::{readout, visible_region, Region, RegionSource};
pub use edges::{edge_marks, EdgeMark, EdgeMarks};
pub use inspect::{bin_at, read_bin, Bin};
pub use session::{Event, Frame, Session};
pub use transform::ViewTransform;

use crate::error::{Error, Result};
use crate::figure::plan::RenderOptions;
use crate::pool::pattern::PatternOptions;
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
    /// One token per line: the hover readout names the query and key tokens, and the edges of
    /// a magnified view show them where they fit.
    pub tokens: Option<Vec<String>>,
    /// Start in focus mode on this (layer, head), 0-based: the layer's number − 1, as the user
    /// names it (`--focus 5,1` on a capture of layers 2, 5 and 6 is its second layer;
    /// [`crate::figure::plan::Plan::focused_cell`]).
    pub focus: Option<(usize, usize)>,
    /// Then zoom by this factor about the window's centre.
    pub zoom: Option<f64>,
    /// Pan by (dx, dy) window pixels every frame (scripted panning, for benchmarks).
    pub pan_per_frame: Option<(f64, f64)>,
    /// Put the cursor here (window pixels) after opening: a scripted hover readout.
    pub hover: Option<(f64, f64)>,
    /// What the head statistics count (`--sink-keys`, `--window`) whenever the viewer pools
    /// them: for `render.sort_by`, the sort key and the hover readout. A plain view pools none,
    /// so these are kept here rather than in `render.patterns`, which would pool them at once.
    pub statistics: PatternOptions,
}

impl ViewerOptions {
    /// The figure's options as the worker pools them: with the statistics `statistics` counts
    /// where the order asks for them.
    pub(crate) fn figure(&self) -> RenderOptions {
        let mut render = self.render.clone();
        if render.ranking().ranks() && render.patterns.is_none() {
            render.patterns = Some(self.statistics);
        }
        render
    }
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

/// The tokens the hover readout and the edge labels name: --tokens, else a capture file's own.
/// Given tokens must fit the input, one per key, as `render` requires of them: a wrong file
/// is an error, not a readout that silently names nothing.
fn readout_tokens(
    source: &dyn AttentionSource,
    options: &ViewerOptions,
) -> Result<Option<Vec<String>>> {
    if let Some(tokens) = &options.tokens {
        let s = source.shape();
        crate::figure::axes::split_tokens(tokens, s.queries, s.keys, source.diagonal())?;
        return Ok(Some(tokens.clone()));
    }
    Ok(source.as_qk().and_then(|q| q.meta()?.tokens.clone()))
}

/// Why no window opened, in one line: with no display to open it on (a server, a container,
/// an SSH session), what to use instead; otherwise the windowing library's reason without the
/// source location it prefixes (`os error at …/mod.rs:765: …`).
pub(crate) fn window_error(e: impl std::fmt::Display) -> Error {
    let display = ["DISPLAY", "WAYLAND_DISPLAY", "WAYLAND_SOCKET"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()));
    if cfg!(all(unix, not(target_os = "macos"))) && !display {
        return Error::Window(
            "cannot open a window: there is no display (neither DISPLAY nor WAYLAND_DISPLAY is set); `attnviz render` writes the figure to a file, and attnviz.Viewer shows this viewer in a notebook".into(),
        );
    }
    let why = e.to_string();
    let why = why
        .strip_prefix("os error at ")
        .and_then(|rest| rest.split_once(": "))
        .map_or(why.as_str(), |(_, why)| why);
    Error::Window(format!("cannot open a window: {why}"))
}

/// Checks `options` against `source` before anything opens: the figure's plan (selection,
/// limits, sizes), the focused head among its cells, the tokens; returns the tokens the
/// readout names (`readout_tokens`). [`run`] and [`Session::new`] call it first, so that bad
/// input is reported as such on a machine with no display and flashes no window elsewhere;
/// `attnviz.view` before it uses up the one event loop a process gets.
pub fn check(source: &dyn AttentionSource, options: &ViewerOptions) -> Result<Option<Vec<String>>> {
    let plan = crate::figure::plan::Plan::new(source, &options.figure())?;
    if let Some((layer, head)) = options.focus {
        if plan.focused_cell((layer, head)).is_none() {
            return Err(Error::BadOption(format!(
                "--focus {},{}: that head is not among the selected cells",
                layer + 1,
                head + 1
            )));
        }
    }
    readout_tokens(source, options)
}

/// Opens a window on `source` and runs until it is closed (or `exit_after_frames`).
pub fn run(source: &dyn AttentionSource, mut options: ViewerOptions) -> Result<ViewerReport> {
    let started = Instant::now();
    // The readout and the edge labels name a capture's own tokens too.
    options.tokens = check(source, &options)?;
    let event_loop = EventLoop::with_user_event().build().map_err(window_error)?;
    let proxy = event_loop.create_proxy();
    let (jobs, job_rx) = channel();
    let (reply_tx, replies) = channel();
    let reads = Arc::new(AtomicU64::new(0));
    let tokens = options.tokens.clone();
    let worker_reads = reads.clone();
    std::thread::scope(|scope| {
        // Reads for the hover readout and the zoomed detail happen here, never on the
        // window's thread.
        scope.spawn(move || {
            let counted = session::Counted::new(source, worker_reads);
            detail::worker(&counted, tokens.as_deref(), job_rx, reply_tx, || {
                let _ = proxy.send_event(());
            })
        });
        let mut app = app::App::new(source, options, jobs, replies, reads, started);
        let run = event_loop.run_app(&mut app);
        // The worker ends once every sender is gone: the session's with `app` at the end of
        // this closure (or the unused channels now); the scope then joins it.
        app.channels = None;
        run.map_err(|e| Error::Gpu(format!("window event loop: {e}")))?;
        if let Some(e) = app.error {
            return Err(e);
        }
        app.report
            .take()
            .ok_or_else(|| Error::Window("the window closed before it was drawn".into()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::qk::{QkOptions, QkSource};
    use crate::source::qk_meta::CaptureMeta;
    use crate::source::ArraySource;

    #[test]
    fn the_readout_names_a_captures_tokens_unless_tokens_are_given() {
        let a = ndarray::Array4::<f32>::zeros((1, 1, 3, 4));
        let meta = CaptureMeta {
            tokens: Some(vec!["a".into(), "b".into(), "c".into()]),
            ..Default::default()
        };
        let src = QkSource::new(
            Box::new(ArraySource::from_f32("q", &a)),
            Box::new(ArraySource::from_f32("k", &a)),
            &QkOptions {
                meta: Some(meta),
                ..Default::default()
            },
        )
        .unwrap();
        let mut options = ViewerOptions::default();
        let named = |o: &ViewerOptions| readout_tokens(&src, o).unwrap().unwrap()[2].clone();
        assert_eq!(named(&options), "c");
        options.tokens = Some(vec!["x".into(); 3]);
        assert_eq!(named(&options), "x");
        // Tokens that do not fit (one per key: 3) are refused, as render refuses them.
        options.tokens = Some(vec!["x".into(); 2]);
        let e = readout_tokens(&src, &options).unwrap_err().to_string();
        assert!(
            e.starts_with("--tokens: 2 tokens, but the input has"),
            "{e}"
        );
    }
}
