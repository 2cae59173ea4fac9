//! A viewer session with no window: the view state, the scene, the worker that reads the source
//! (exact detail, hover readout, the whole figure) and the readout, driven by plain events and
//! drawn offscreen. The window (`super::app`) and the notebook widget (`attnviz.Viewer`, through
//! the Python package) are both thin shells around one `Session`, so what a key or a drag does
//! cannot differ between them: the window presents the frame to its surface, the widget reads
//! it back as RGBA bytes, only when something changed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::detail::{self, Job, Reply};
use super::state::State;
use super::{ViewerOptions, ViewerReport};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::source::qk::QkSource;
use crate::source::DiffSource;
use crate::source::{AttentionSource, DType, Shape};

/// What the user did, in target pixels (physical: logical position × scale factor). Keys are
/// named as the web's `KeyboardEvent.key` names them ("Escape", "ArrowLeft", "c").
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Event<'a> {
    /// A button went down; `primary` for the left one (drag to pan, click to focus).
    PointerDown {
        x: f64,
        y: f64,
        primary: bool,
    },
    PointerMove {
        x: f64,
        y: f64,
    },
    PointerUp {
        x: f64,
        y: f64,
        primary: bool,
    },
    /// Wheel lines at (x, y); positive zooms in, 1.2× a line.
    Wheel {
        x: f64,
        y: f64,
        lines: f64,
    },
    Key(&'a str),
    /// The target's new size in physical pixels, and its physical pixels per logical one.
    Resize {
        width: u32,
        height: u32,
        scale: f64,
    },
}

/// A frame: RGBA8 rows, `width` × `height`.
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    pub width: u32,
    pub height: u32,
    pub rgba: Vec<u8>,
}

/// One viewer session: see the module's documentation.
pub struct Session {
    pub(super) state: State,
    replies: Receiver<Reply>,
    started: Instant,
    reads: Arc<AtomicU64>,
    /// The worker of a session that started its own (dropping the session ends it: the job
    /// sender goes with the state, declared first, so it is dropped first). Last, so that it
    /// is joined once the channels are closed.
    _worker: Worker,
}

/// A worker thread joined when dropped: it ends within one job of its channels closing, and
/// the engine it holds is then released before the session's drop returns, not while the
/// process exits (a thread still tearing down a Vulkan device as the driver's own exit
/// handlers run crashed the test executable now and then, SIGSEGV after every test passed).
struct Worker(Option<JoinHandle<()>>);

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(worker) = self.0.take() {
            // (a worker that panicked has reported it on its thread already)
            let _ = worker.join();
        }
    }
}

impl Session {
    /// A session on `source`, on the best adapter, with a worker thread of its own; opened as
    /// `options` say (size, focus, zoom, hover).
    pub fn new(source: Arc<dyn AttentionSource>, mut options: ViewerOptions) -> Result<Session> {
        let engine = Arc::new(Engine::new(Gpu::new()?));
        options.tokens = super::check(source.as_ref(), &options)?;
        let (jobs, job_rx) = channel();
        let (reply_tx, replies) = channel();
        let reads = Arc::new(AtomicU64::new(0));
        let (worker_source, worker_reads) = (source.clone(), reads.clone());
        let tokens = options.tokens.clone();
        let worker = std::thread::Builder::new()
            .name("attnviz-viewer".into())
            .spawn(move || {
                let counted = Counted::new(worker_source.as_ref(), worker_reads);
                detail::worker(&counted, tokens.as_deref(), job_rx, reply_tx, || {});
            })
            .map_err(|e| Error::Gpu(format!("cannot start the viewer's worker: {e}")))?;
        let channels = Channels {
            jobs,
            replies,
            reads,
        };
        let mut session = Session::open(
            engine,
            source.as_ref(),
            &options,
            1.0,
            channels,
            Instant::now(),
        )?;
        session._worker = Worker(Some(worker));
        session.start(&options)?;
        Ok(session)
    }

    /// A session whose worker the caller runs (the window's, on a scoped thread: its source is
    /// borrowed), on the figure's layout; nothing is asked of the worker until [`Session::start`]
    /// (a window configures its surface first: wgpu refuses to while another thread submits).
    pub(super) fn open(
        engine: Arc<Engine>,
        source: &dyn AttentionSource,
        options: &ViewerOptions,
        scale_factor: f64,
        channels: Channels,
        started: Instant,
    ) -> Result<Session> {
        let mut state = State::new(engine, source, options, scale_factor)?;
        state.jobs = Some(channels.jobs);
        Ok(Session {
            state,
            replies: channels.replies,
            started,
            reads: channels.reads,
            _worker: Worker(None),
        })
    }

    /// Starts the worker and applies the opening view of `options` (focus, hover, zoom); the
    /// whole figure is asked for last.
    pub(super) fn start(&mut self, options: &ViewerOptions) -> Result<()> {
        let s = &mut self.state;
        s.send(Job::Start(s.engine.clone()));
        // (`check` found the focused head among the cells)
        if let Some(cell) = options.focus.and_then(|f| s.scene.plan.focused_cell(f)) {
            s.focus_on(Some(cell));
        }
        if let Some(at) = options.hover {
            s.cursor_moved(at);
        }
        if let Some(z) = options.zoom {
            let (w, h) = s.window_size();
            let centre = (w as f64 / 2.0, h as f64 / 2.0);
            let view = s.view.zoom_about_within(centre, z, s.max_scale);
            s.set_view(view);
        }
        // What the opening view shows first, then the whole figure.
        s.flush_detail(true);
        s.send(Job::Scene(Box::new(options.figure())));
        Ok(())
    }

    /// Applies one event; true when it asks to close (`q`, or Escape in grid mode), which a
    /// widget may ignore.
    pub fn handle(&mut self, event: Event<'_>) -> Result<bool> {
        let s = &mut self.state;
        let move_to = |s: &mut State, x: f64, y: f64| {
            if !s.pointer_seen || s.cursor != (x, y) {
                s.cursor_moved((x, y));
            }
        };
        match event {
            Event::PointerMove { x, y } => move_to(s, x, y),
            Event::PointerDown { x, y, primary } => {
                move_to(s, x, y);
                if primary {
                    s.left_button(true);
                }
            }
            Event::PointerUp { x, y, primary } => {
                move_to(s, x, y);
                if primary {
                    s.left_button(false);
                }
            }
            Event::Wheel { x, y, lines } => {
                move_to(s, x, y);
                s.wheel(lines);
            }
            Event::Key(name) => return s.key(name),
            Event::Resize {
                width,
                height,
                scale,
            } => s.resize(width, height, scale),
        }
        Ok(false)
    }

    /// Takes what the worker finished and sends the detail the view waits for once it has
    /// been still long enough; returns when to call again for that (`None`: nothing is due).
    pub fn update(&mut self) -> Result<Option<Instant>> {
        while let Ok(reply) = self.replies.try_recv() {
            self.state.receive(reply, self.started)?;
        }
        Ok(self.state.flush_detail(false))
    }

    /// Waits (at most `timeout`) until what the view asked for is shown: the whole figure,
    /// the readout of the hovered entry and the exact detail of a zoomed view. False on
    /// timeout. Scripts and tests call it before they look at a frame.
    pub fn settle(&mut self, timeout: Duration) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            self.update()?;
            self.state.flush_detail(true);
            if self.state.settled() {
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.replies.recv_timeout(left) {
                Ok(reply) => self.state.receive(reply, self.started)?,
                Err(RecvTimeoutError::Timeout) => return Ok(false),
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(Error::Gpu("the viewer's worker stopped".into()))
                }
            }
        }
    }

    /// Whether the view still waits for the worker (or for the view to settle before asking).
    pub fn busy(&self) -> bool {
        !self.state.settled() || self.state.pending.is_some()
    }

    /// Whether something changed since the last frame.
    pub fn dirty(&self) -> bool {
        self.state.dirty
    }

    /// The frame, when something changed since the last one (else `None`).
    pub fn frame(&mut self) -> Result<Option<Frame>> {
        if !self.state.dirty {
            return Ok(None);
        }
        self.render().map(Some)
    }

    /// The frame now, drawn offscreen by the engine: the scene, the detail layer, the edge
    /// labels and the readout, exactly as the window shows them.
    pub fn render(&mut self) -> Result<Frame> {
        self.state.dirty = false;
        let (width, height) = self.state.window_size();
        Ok(Frame {
            width,
            height,
            rgba: self.state.rgba()?,
        })
    }

    /// Writes the frame now to a PNG.
    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        self.state.screenshot(path)
    }

    /// The target's size in physical pixels.
    pub fn size(&self) -> (u32, u32) {
        self.state.window_size()
    }

    /// The title: the source's name, or the readout while an entry is hovered.
    pub fn title(&self) -> &str {
        &self.state.title
    }

    /// The hover readout shown, if any: layer, head, q, k, tokens and value (the bin's
    /// reduction and argmax when pooled).
    pub fn readout(&self) -> Option<&str> {
        self.state
            .readout
            .as_ref()
            .map(|_| self.state.title.as_str())
    }

    /// The focused (layer, head), 0-based, in focus mode.
    pub fn focus(&self) -> Option<(usize, usize)> {
        let cell = self.state.focus?;
        self.state.scene.plan.cells.get(cell).copied()
    }

    /// How many times the worker read rows of the source: recolouring reads none. (Q/K
    /// sources are recomputed on the device from Q and K, which are not counted here.)
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// The adapter drawing the frames.
    pub fn adapter(&self) -> String {
        self.state.engine.gpu.describe()
    }

    /// Counts a frame the window presented, taking `seconds`.
    pub(super) fn count_frame(&mut self, seconds: f64) {
        let t = &mut self.state.timings;
        t.frame_times.push(seconds);
        t.frames += 1;
        if t.first_frame.is_none() {
            t.first_frame = Some(self.started.elapsed().as_secs_f64());
        }
    }

    pub(super) fn report(&mut self) -> ViewerReport {
        self.state.report()
    }
}

/// The two ends a session keeps of its worker, and the worker's read counter.
pub(super) struct Channels {
    pub(super) jobs: Sender<Job>,
    pub(super) replies: Receiver<Reply>,
    pub(super) reads: Arc<AtomicU64>,
}

/// A source that counts the calls reading its rows.
pub(super) struct Counted<'s> {
    inner: &'s dyn AttentionSource,
    reads: Arc<AtomicU64>,
}

impl<'s> Counted<'s> {
    pub(super) fn new(inner: &'s dyn AttentionSource, reads: Arc<AtomicU64>) -> Counted<'s> {
        Counted { inner, reads }
    }
}

impl AttentionSource for Counted<'_> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn shape(&self) -> Shape {
        self.inner.shape()
    }
    fn dtype(&self) -> DType {
        self.inner.dtype()
    }
    fn read_rows(&self, layer: usize, head: usize, row_start: usize, dst: &mut [u8]) -> Result<()> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.read_rows(layer, head, row_start, dst)
    }
    fn diagonal(&self) -> i64 {
        self.inner.diagonal()
    }
    fn first_query(&self) -> usize {
        self.inner.first_query()
    }
    fn as_qk(&self) -> Option<&QkSource> {
        self.inner.as_qk()
    }
    fn as_diff(&self) -> Option<&DiffSource<'_>> {
        self.inner.as_diff()
    }
    fn masks_upper(&self) -> Option<bool> {
        self.inner.masks_upper()
    }
    fn layer_number(&self, layer: usize) -> usize {
        self.inner.layer_number(layer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::ArraySource;

    fn source() -> Arc<dyn AttentionSource> {
        let a = ndarray::Array4::from_shape_fn((2, 2, 64, 64), |(l, h, q, k)| {
            ((l * 7 + h * 3 + q * 5 + k) % 17) as f32 / 17.0
        });
        Arc::new(ArraySource::from_f32("a", &a))
    }

    #[test]
    fn frames_come_only_when_something_changed_and_recolouring_reads_nothing() {
        let mut s = Session::new(source(), ViewerOptions::default()).unwrap();
        assert!(s.settle(Duration::from_secs(60)).unwrap());
        let first = s.frame().unwrap().expect("the first frame");
        assert_eq!((first.width, first.height), s.size());
        assert_eq!(s.frame().unwrap(), None, "nothing changed");
        let reads = s.reads();
        assert!(reads > 0);
        s.handle(Event::Key("c")).unwrap();
        let recoloured = s.frame().unwrap().expect("a recoloured frame");
        assert_ne!(recoloured.rgba, first.rgba);
        assert_eq!(s.reads(), reads, "recolouring read the source");
        // A click on the first cell focuses it; Escape returns to the grid.
        let c = s.state.scene.plan.layout.cells[0];
        let at = s.state.view.to_window((c.x as f64 + 2.0, c.y as f64 + 2.0));
        s.handle(Event::PointerDown {
            x: at.0,
            y: at.1,
            primary: true,
        })
        .unwrap();
        s.handle(Event::PointerUp {
            x: at.0,
            y: at.1,
            primary: true,
        })
        .unwrap();
        assert_eq!(s.focus(), Some((0, 0)));
        assert!(!s.handle(Event::Key("Escape")).unwrap());
        assert_eq!(s.focus(), None);
        assert!(s.handle(Event::Key("Escape")).unwrap(), "asks to close");
    }

    /// `--top 1` of 4 heads: the grid laid out before anything is read gives way to one ranked
    /// cell, fitted to the window again (it stayed at the grid's scale, in a corner), with no
    /// stray pixel where the left-out cells are placed empty.
    #[test]
    fn the_ranked_figure_is_fitted_to_the_window() {
        use super::super::transform::ViewTransform;
        use crate::figure::rank::SortKey;
        let options = ViewerOptions {
            render: crate::figure::plan::RenderOptions {
                sort_by: Some(SortKey::Entropy),
                top: Some(1),
                ..Default::default()
            },
            size: Some((800, 600)),
            ..Default::default()
        };
        let mut s = Session::new(source(), options.clone()).unwrap();
        assert!(s.settle(Duration::from_secs(60)).unwrap());
        let figure = s.state.figure();
        assert_eq!(s.state.view, ViewTransform::fit(figure, (800, 600)));
        let cells = s.state.scene.plan.layout.cells.clone();
        assert_eq!(cells.iter().filter(|c| c.is_drawn()).count(), 1);
        let frame = s.frame().unwrap().expect("a frame");
        let (ox, oy) = s.state.view.to_window((0.0, 0.0));
        let at = (oy.round() as usize * 800 + ox.round() as usize) * 4;
        let corner = &frame.rgba[at..at + 3];
        assert_eq!(corner, [255, 255, 255], "the figure's corner is white");
        // `--focus` names a head by the grid's place until the ranking is read: the view then
        // follows the head to its ranked cell, or shows the whole figure when `--top` leaves
        // the head out.
        let ranked = cells.iter().position(|c| c.is_drawn()).unwrap();
        let left_out = cells.iter().position(|c| !c.is_drawn()).unwrap();
        for (cell, shown) in [(ranked, true), (left_out, false)] {
            let c = cells[cell];
            let focused = ViewerOptions {
                focus: Some((c.layer, c.head)),
                ..options.clone()
            };
            let mut f = Session::new(source(), focused).unwrap();
            assert!(f.settle(Duration::from_secs(60)).unwrap());
            let want = match shown {
                true => ViewTransform::fit_rect((c.x, c.y, c.width, c.height), (800, 600), 8.0),
                false => ViewTransform::fit(f.state.figure(), (800, 600)),
            };
            let head = (c.layer + 1, c.head + 1);
            assert_eq!(f.state.view, want, "focus on l, h = {head:?}");
        }
    }

    /// `--sink-keys` and `--window` (`ViewerOptions::statistics`) define the statistics the
    /// viewer pools, for `--sort-by` from the start and for the sort key's first press alike:
    /// the readout's statistics and the order are those `render --stats-json` writes with them.
    #[test]
    fn the_statistics_options_define_what_the_viewer_ranks_by() {
        use crate::figure::plan::RenderOptions;
        use crate::figure::rank::SortKey;
        use crate::pool::pattern::PatternOptions;
        let statistics = PatternOptions {
            sink_keys: 8,
            window: 4,
        };
        let src = source();
        let engine = Engine::new(Gpu::new().unwrap());
        let pooled = |patterns: PatternOptions| -> Vec<(f64, f64)> {
            let options = RenderOptions {
                patterns: Some(patterns),
                ..Default::default()
            };
            let scene = engine.scene(src.as_ref(), &options).unwrap();
            let p = scene.pooled.patterns.iter().map(|p| p.finish());
            p.map(|p| (p.sink_mass, p.local_mass)).collect()
        };
        let want = pooled(statistics);
        assert_ne!(
            want,
            pooled(PatternOptions::default()),
            "the options matter here"
        );
        let shown = |s: &Session| -> Vec<(f64, f64)> {
            let p = s.state.patterns.iter();
            p.map(|p| (p.sink_mass, p.local_mass)).collect()
        };
        let sorted = ViewerOptions {
            render: RenderOptions {
                sort_by: Some(SortKey::SinkMass),
                ..Default::default()
            },
            statistics,
            ..Default::default()
        };
        let mut s = Session::new(src.clone(), sorted).unwrap();
        assert!(s.settle(Duration::from_secs(60)).unwrap());
        assert_eq!(shown(&s), want, "--sort-by");
        let plain = ViewerOptions {
            statistics,
            ..Default::default()
        };
        let mut s = Session::new(src.clone(), plain).unwrap();
        assert!(s.settle(Duration::from_secs(60)).unwrap());
        assert!(
            s.state.patterns.is_empty(),
            "a plain view pools no statistics"
        );
        s.handle(Event::Key("o")).unwrap();
        assert!(s.settle(Duration::from_secs(60)).unwrap());
        assert_eq!(shown(&s), want, "the sort key");
    }

    /// Logits have no head statistics: the sort key says so in the title and leaves the figure
    /// as it is (it failed the session, which closed the window over a key press).
    #[test]
    fn the_sort_key_on_logits_says_why_it_orders_nothing() {
        use crate::source::qk::{QkOptions, QkSource, Values};
        let values = |seed: usize| {
            ndarray::Array4::from_shape_fn((1, 2, 32, 8), |(_, h, n, d)| {
                ((h * 5 + n * 3 + d * 7 + seed) % 11) as f32 / 11.0 - 0.5
            })
        };
        let qk = QkSource::new(
            Box::new(ArraySource::from_f32("q", &values(1))),
            Box::new(ArraySource::from_f32("k", &values(2))),
            &QkOptions {
                values: Values::Logits,
                ..Default::default()
            },
        )
        .unwrap();
        let mut s = Session::new(Arc::new(qk), ViewerOptions::default()).unwrap();
        assert!(s.settle(Duration::from_secs(60)).unwrap());
        let (frame, reads) = (s.render().unwrap(), s.reads());
        assert!(!s.handle(Event::Key("o")).unwrap());
        assert!(s.settle(Duration::from_secs(60)).unwrap());
        assert!(
            s.title().ends_with("this view shows logits"),
            "{}",
            s.title()
        );
        assert!(s.title().starts_with("attnviz: "), "{}", s.title());
        assert_eq!(s.reads(), reads, "read again");
        assert_eq!(s.render().unwrap(), frame);
    }

    /// `p` shows one pattern label's heads at a time, then every head again: the first press
    /// pools the labels (every head still shown), each next one filters by the next label the
    /// heads have, from what is resident (nothing read again).
    #[test]
    fn the_pattern_key_shows_one_label_s_heads_at_a_time() {
        use crate::source::{DType, Pattern, Synth, SynthSpec};
        let synth = Synth::new(SynthSpec {
            seq: 512,
            layers: 1,
            heads: 5,
            dtype: DType::F32,
            seed: 4,
            causal: false,
            pattern: Pattern::Kinds,
        })
        .unwrap();
        let planted: Vec<&str> = (0..5).map(|h| synth.planted(0, h).label()).collect();
        let mut s = Session::new(Arc::new(synth), ViewerOptions::default()).unwrap();
        assert!(s.settle(Duration::from_secs(60)).unwrap());
        let drawn = |s: &Session| -> Vec<usize> {
            let cells = &s.state.scene.plan.layout.cells;
            let mut d: Vec<usize> = (0..cells.len()).filter(|&i| cells[i].is_drawn()).collect();
            d.sort_by_key(|&i| (cells[i].y, cells[i].x));
            d.iter().map(|&i| cells[i].head).collect()
        };
        s.handle(Event::Key("p")).unwrap();
        assert!(s.settle(Duration::from_secs(60)).unwrap());
        assert!(s.title().contains("press p again"), "{}", s.title());
        assert_eq!(drawn(&s), vec![0, 1, 2, 3, 4]);
        let reads = s.reads();
        // each planted label once, in PATTERNS' order, then every head
        for label in crate::pool::pattern::PATTERNS {
            let want: Vec<usize> = (0..5).filter(|&h| planted[h] == label).collect();
            assert_eq!(want.len(), 1, "{label}: {planted:?}");
            s.handle(Event::Key("p")).unwrap();
            assert!(s.settle(Duration::from_secs(60)).unwrap());
            assert_eq!(drawn(&s), want, "{label}");
            assert!(
                s.title().contains(&format!("only {label} heads (1 of 5)")),
                "{}",
                s.title()
            );
        }
        s.handle(Event::Key("p")).unwrap();
        assert!(s.settle(Duration::from_secs(60)).unwrap());
        assert_eq!(drawn(&s), vec![0, 1, 2, 3, 4]);
        assert!(s.title().ends_with("every head"), "{}", s.title());
        assert_eq!(s.reads(), reads, "read again");
    }

    /// Arrows step to the next cell on screen: the next head or layer in a grid, the next
    /// ranked cell in a ranked figure, never a cell `--top` left out.
    #[test]
    fn arrows_step_through_the_cells_on_screen() {
        use crate::figure::rank::SortKey;
        let mut grid = Session::new(source(), ViewerOptions::default()).unwrap();
        assert!(grid.settle(Duration::from_secs(60)).unwrap());
        grid.state.focus_on(Some(0));
        for (key, want) in [
            ("ArrowRight", (0, 1)),
            ("ArrowRight", (0, 1)),
            ("ArrowDown", (1, 1)),
            ("ArrowLeft", (1, 0)),
            ("ArrowUp", (0, 0)),
        ] {
            grid.handle(Event::Key(key)).unwrap();
            assert_eq!(grid.focus(), Some(want), "{key}");
        }
        let options = ViewerOptions {
            render: crate::figure::plan::RenderOptions {
                sort_by: Some(SortKey::Entropy),
                top: Some(2),
                ..Default::default()
            },
            ..Default::default()
        };
        let mut ranked = Session::new(source(), options).unwrap();
        assert!(ranked.settle(Duration::from_secs(60)).unwrap());
        let cells = ranked.state.scene.plan.layout.cells.clone();
        let mut drawn: Vec<usize> = (0..cells.len()).filter(|&i| cells[i].is_drawn()).collect();
        drawn.sort_by_key(|&i| (cells[i].y, cells[i].x));
        let head = |i: usize| (cells[i].layer, cells[i].head);
        ranked.state.focus_on(Some(drawn[0]));
        for (key, want) in [
            ("ArrowRight", drawn[1]),
            ("ArrowRight", drawn[1]),
            ("ArrowDown", drawn[1]),
            ("ArrowLeft", drawn[0]),
        ] {
            ranked.handle(Event::Key(key)).unwrap();
            assert_eq!(ranked.focus(), Some(head(want)), "{key}");
        }
    }

    #[test]
    fn the_sort_key_orders_the_grid_by_each_statistic_and_the_readout_shows_them() {
        use crate::engine::Scene;
        use crate::figure::plan::RenderOptions;
        use crate::figure::rank::SortKey;
        let src = source();
        let mut s = Session::new(src.clone(), ViewerOptions::default()).unwrap();
        assert!(s.settle(Duration::from_secs(60)).unwrap());
        assert!(
            s.state.patterns.is_empty(),
            "a plain view pools no statistics"
        );
        let placed = |scene: &Scene| -> Vec<(u32, u32, u32, usize, usize)> {
            let cells = &scene.plan.layout.cells;
            cells
                .iter()
                .map(|c| (c.x, c.y, c.width, c.layer, c.head))
                .collect()
        };
        // The first press pools the statistics (one more read of the input); the next ones
        // only lay the figure out again: no read, and the same pixels as a scene sorted
        // directly. After the last statistic the grid's own order comes back.
        let mut keys: Vec<Option<SortKey>> = SortKey::ALL.iter().copied().map(Some).collect();
        keys.push(None);
        let mut reads = None;
        for key in keys {
            s.handle(Event::Key("o")).unwrap();
            assert!(s.settle(Duration::from_secs(60)).unwrap());
            match reads {
                None => reads = Some(s.reads()),
                Some(n) => assert_eq!(s.reads(), n, "{key:?}: the input was read again"),
            }
            let options = RenderOptions {
                sort_by: key,
                ..Default::default()
            };
            let e = &s.state.engine;
            let want = e.scene(src.as_ref(), &options).unwrap();
            assert_eq!(placed(&s.state.scene), placed(&want), "ordered by {key:?}");
            assert_eq!(
                e.export(&s.state.scene).unwrap(),
                e.export(&want).unwrap(),
                "{key:?}: pixels"
            );
            let name = key.map_or("layer and head", SortKey::name);
            assert!(s.title().ends_with(&format!("ordered by {name}")));
        }
        for _ in 0..2 {
            s.handle(Event::Key("o")).unwrap();
        }
        assert!(s.settle(Duration::from_secs(60)).unwrap());
        // The hovered head's statistics join the readout.
        assert_eq!(s.state.patterns.len(), 4);
        let c = s.state.scene.plan.layout.cells[2];
        let at = s.state.view.to_window((c.x as f64 + 2.0, c.y as f64 + 2.0));
        s.handle(Event::PointerMove { x: at.0, y: at.1 }).unwrap();
        assert!(s.settle(Duration::from_secs(60)).unwrap());
        let p = &s.state.patterns[2];
        let readout = s.readout().expect("a readout").to_string();
        assert!(
            readout.contains(&format!("sink {:.3}", p.sink_mass)) && readout.contains(p.pattern),
            "{readout}"
        );
    }
}
