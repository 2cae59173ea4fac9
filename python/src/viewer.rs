//! `attnviz.Viewer`'s native half: a [`Session`] (the viewer's behaviour, the same one the
//! window runs) held by Python, fed the widget's events and read back as frames. The widget
//! class itself (`attnviz/widget.py`) only translates jupyter_rfb's event dicts.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use attnviz::source::qk::{parse_queries, QkSource};
use attnviz::source::{self, ArraySource, AttentionSource, OpenOptions, QueryRows};
use attnviz::viewer::{Event, Frame, Session, ViewerOptions};
use numpy::PyArray3;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use crate::options::{py_err, PyOptions, PyQkOptions};
use crate::{into_image, qk_options, qk_source, Input};

/// The opening view of a widget (the keywords of `attnviz.Viewer` beyond `render`'s).
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
pub struct PyOpening {
    pub size: Option<(u32, u32)>,
    /// (layer, head), 1-based.
    pub focus: Option<(i64, i64)>,
    pub zoom: Option<f64>,
}

/// Checks the opening view that `attnviz.view` and `attnviz.Viewer` share (`size`, `focus`,
/// `zoom`) and returns the focus 0-based.
pub fn opening_view(
    size: Option<(u32, u32)>,
    focus: Option<(i64, i64)>,
    zoom: Option<f64>,
) -> PyResult<Option<(usize, usize)>> {
    if size.is_some_and(|(w, h)| w == 0 || h == 0) {
        return Err(PyValueError::new_err(
            "size: expected (width, height) of at least 1 pixel",
        ));
    }
    if zoom.is_some_and(|z| !(z.is_finite() && z > 0.0)) {
        return Err(PyValueError::new_err("zoom must be a positive number"));
    }
    match focus {
        None => Ok(None),
        Some((l, h)) if l >= 1 && h >= 1 => Ok(Some((l as usize - 1, h as usize - 1))),
        Some((l, h)) => Err(PyValueError::new_err(format!(
            "focus ({l}, {h}): layer and head are 1-based integers"
        ))),
    }
}

/// The viewer's options from the keywords `attnviz.Viewer` and `attnviz.view` share: the
/// figure's (`render`'s), what the statistics count when sorting pools them (`sink_keys`,
/// `window`), and the opening view.
pub fn viewer_options(
    options: &PyOptions,
    size: Option<(u32, u32)>,
    focus: Option<(i64, i64)>,
    zoom: Option<f64>,
) -> PyResult<ViewerOptions> {
    let mut render = options.render_options()?;
    // The readout names the tokens; the view draws no token axes.
    let tokens = render.tokens.take();
    let focus = opening_view(size, focus, zoom)?;
    Ok(ViewerOptions {
        render,
        size,
        tokens,
        focus,
        zoom,
        statistics: options.patterns()?,
        ..Default::default()
    })
}

/// What a viewer shows, opened once in the same ways for `attnviz.Viewer` and `attnviz.view`
/// (arrays, a file, a capture's file, queries and keys), so that both take the same inputs.
/// It owns what it reads (arrays are copied once): a widget outlives the call that made it.
#[pyclass(module = "attnviz._attnviz", frozen)]
pub struct _Source {
    pub inner: Arc<dyn AttentionSource>,
}

#[pymethods]
impl _Source {
    /// Arrays (as `render` takes them), copied once into memory the source owns; only the query
    /// rows `queries` (`"A..B"`) where given, keeping their places.
    #[staticmethod]
    #[pyo3(signature = (arrays, stacked, bf16, queries=None))]
    fn from_arrays(
        arrays: Vec<Bound<'_, PyAny>>,
        stacked: bool,
        bf16: bool,
        queries: Option<String>,
    ) -> PyResult<Self> {
        let input = Input::new("attn", &arrays, stacked, bf16)?;
        let bytes: Vec<u8> = input.held.iter().flat_map(|h| h.bytes()).copied().collect();
        let source = ArraySource::new("attn", input.shape, input.dtype, bytes).map_err(py_err)?;
        Ok(Self {
            inner: rows_of(Box::new(source), queries)?,
        })
    }

    /// A file `attnviz view` reads (`.npy`, `.safetensors` with `tensor`), read in place, only
    /// its query rows `queries` where given.
    #[staticmethod]
    #[pyo3(signature = (path, tensor, queries=None))]
    fn from_file(path: PathBuf, tensor: Option<String>, queries: Option<String>) -> PyResult<Self> {
        let source = source::open(&path, &OpenOptions { tensor }).map_err(py_err)?;
        Ok(Self {
            inner: rows_of(Box::new(source), queries)?,
        })
    }

    /// A Q/K capture's file (`Capture.save`'s, `attnviz synth-qk`'s), its attention recomputed
    /// with the keywords in `qk`, as `attnviz view FILE` does.
    #[staticmethod]
    fn from_capture(path: PathBuf, options: PyOptions, qk: PyQkOptions) -> PyResult<Self> {
        let render = options.render_options()?;
        let source = QkSource::open(&path, None, &qk_options(&render, qk)?).map_err(py_err)?;
        Ok(Self {
            inner: Arc::new(source),
        })
    }

    /// Attention recomputed from queries and keys (`render_qk`'s inputs).
    #[staticmethod]
    fn from_qk(
        q: Bound<'_, PyAny>,
        k: Bound<'_, PyAny>,
        bf16: (bool, bool),
        options: PyOptions,
        qk: PyQkOptions,
    ) -> PyResult<Self> {
        let render = options.render_options()?;
        Ok(Self {
            inner: Arc::new(qk_source(&q, &k, bf16, &render, qk)?),
        })
    }
}

/// A viewer session without a window (see `attnviz::viewer::Session`).
#[pyclass(module = "attnviz._attnviz")]
pub struct _Session {
    inner: Mutex<Session>,
}

impl _Session {
    fn lock(&self) -> PyResult<MutexGuard<'_, Session>> {
        self.inner.lock().map_err(|_| {
            PyRuntimeError::new_err("the viewer failed earlier (its lock is poisoned)")
        })
    }

    /// Runs `f` on the session with the GIL released (it may draw labels or pool on the
    /// device), taking the session's lock only then: a thread holding the GIL never waits for
    /// the lock.
    fn with<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut Session) -> attnviz::Result<T> + Send,
    ) -> PyResult<T> {
        py.detach(|| {
            let mut s = self.lock()?;
            f(&mut s).map_err(py_err)
        })
    }

    fn apply(&self, py: Python<'_>, event: Event<'_>) -> PyResult<bool> {
        self.with(py, |s| s.handle(event))
    }
}

/// `source`, or only its query rows `queries` (`"A..B"`), keeping their places, as
/// `attnviz view --queries` reads a file.
fn rows_of(
    source: Box<dyn AttentionSource>,
    queries: Option<String>,
) -> PyResult<Arc<dyn AttentionSource>> {
    Ok(match queries {
        Some(spec) => {
            let rows = parse_queries(&spec).map_err(py_err)?;
            Arc::new(QueryRows::new(source, rows).map_err(py_err)?)
        }
        None => Arc::from(source),
    })
}

fn image<'py>(py: Python<'py>, frame: Frame) -> Bound<'py, PyArray3<u8>> {
    into_image(py, frame.width, frame.height, frame.rgba)
}

#[pymethods]
impl _Session {
    /// A session on `source`, opened as `options` and `opening` say.
    #[new]
    fn new(
        py: Python<'_>,
        source: &_Source,
        options: PyOptions,
        opening: PyOpening,
    ) -> PyResult<Self> {
        let options = viewer_options(&options, opening.size, opening.focus, opening.zoom)?;
        let source = source.inner.clone();
        let session = py
            .detach(|| Session::new(source, options))
            .map_err(py_err)?;
        Ok(_Session {
            inner: Mutex::new(session),
        })
    }

    /// Positions in physical pixels of the frame; `primary` for the left button.
    fn pointer_down(&self, py: Python<'_>, x: f64, y: f64, primary: bool) -> PyResult<bool> {
        self.apply(py, Event::PointerDown { x, y, primary })
    }

    fn pointer_move(&self, py: Python<'_>, x: f64, y: f64) -> PyResult<bool> {
        self.apply(py, Event::PointerMove { x, y })
    }

    fn pointer_up(&self, py: Python<'_>, x: f64, y: f64, primary: bool) -> PyResult<bool> {
        self.apply(py, Event::PointerUp { x, y, primary })
    }

    /// `lines` of wheel at (x, y): positive zooms in, 1.2× a line.
    fn wheel(&self, py: Python<'_>, x: f64, y: f64, lines: f64) -> PyResult<bool> {
        self.apply(py, Event::Wheel { x, y, lines })
    }

    /// A key named as `KeyboardEvent.key` names it; true when it asks to close.
    fn key(&self, py: Python<'_>, name: &str) -> PyResult<bool> {
        self.apply(py, Event::Key(name))
    }

    fn resize(&self, py: Python<'_>, width: u32, height: u32, scale: f64) -> PyResult<bool> {
        self.apply(
            py,
            Event::Resize {
                width,
                height,
                scale,
            },
        )
    }

    /// Takes the worker's replies; true when the frame changed.
    fn update(&self, py: Python<'_>) -> PyResult<bool> {
        self.with(py, |s| s.update().map(|_| s.dirty()))
    }

    /// Waits at most `timeout` seconds for what the view asked for; false on timeout.
    fn settle(&self, py: Python<'_>, timeout: f64) -> PyResult<bool> {
        let timeout = Duration::from_secs_f64(timeout.max(0.0));
        self.with(py, |s| s.settle(timeout))
    }

    fn busy(&self) -> PyResult<bool> {
        Ok(self.lock()?.busy())
    }

    fn dirty(&self) -> PyResult<bool> {
        Ok(self.lock()?.dirty())
    }

    /// The frame when something changed since the last one, else None: (H, W, 4) uint8.
    fn frame<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyArray3<u8>>>> {
        let frame = self.with(py, |s| s.frame())?;
        Ok(frame.map(|f| image(py, f)))
    }

    /// The frame now: (H, W, 4) uint8.
    fn render<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray3<u8>>> {
        let frame = self.with(py, |s| s.render())?;
        Ok(image(py, frame))
    }

    #[getter]
    fn size(&self) -> PyResult<(u32, u32)> {
        Ok(self.lock()?.size())
    }

    #[getter]
    fn title(&self) -> PyResult<String> {
        Ok(self.lock()?.title().to_string())
    }

    #[getter]
    fn readout(&self) -> PyResult<Option<String>> {
        Ok(self.lock()?.readout().map(str::to_string))
    }

    /// The focused (layer, head), 1-based, or None in grid mode.
    #[getter]
    fn focus(&self) -> PyResult<Option<(usize, usize)>> {
        Ok(self.lock()?.focus().map(|(l, h)| (l + 1, h + 1)))
    }

    #[getter]
    fn reads(&self) -> PyResult<u64> {
        Ok(self.lock()?.reads())
    }

    #[getter]
    fn adapter(&self) -> PyResult<String> {
        Ok(self.lock()?.adapter())
    }
}
