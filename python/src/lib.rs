//! The native half of the `attnviz` Python package: numpy arrays in, figures out. The Python
//! half (`attnviz/__init__.py`) turns torch tensors and HuggingFace tuples into numpy views and
//! picks the batch item; everything here reads those views in place, with the GIL released.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use attnviz::pool::Causal;
use attnviz::source::npy::{dtype_from_descr, shape_from_dims};
use attnviz::source::qk::{parse_queries, QkOptions, QkSource, Values};
use attnviz::source::qk_meta::CaptureMeta;
use attnviz::source::{ArraySource, AttentionSource, DiffSource, SliceSource};
use attnviz::{Colormap, DType, Engine, Error, Figure, Gpu, Norm, Reduce, RenderOptions};
use half::f16;
use numpy::ndarray::Array3;
use numpy::{
    IntoPyArray, PyArray3, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// One GPU engine per process: opening an adapter and compiling the pipelines costs far more
/// than a figure, and a notebook renders many. `Err` remembers why there is none.
static ENGINE: Mutex<Option<Result<Engine, String>>> = Mutex::new(None);
/// Upload chunk size for the engine; 0 keeps the library's default (tests shrink it to measure
/// that the input itself is never copied).
static CHUNK_BYTES: AtomicU64 = AtomicU64::new(0);
/// winit creates one event loop per process; a second `view` gets a clear error instead of
/// winit's.
static VIEWED: AtomicBool = AtomicBool::new(false);

/// Library errors as Python exceptions: what the user can fix is a `ValueError`, the machine's
/// problems a `RuntimeError`, both with the CLI's one-line message.
fn py_err(e: Error) -> PyErr {
    let msg = e.to_string().replace('\n', " ");
    if e.is_input_error() {
        PyValueError::new_err(msg)
    } else {
        PyRuntimeError::new_err(msg)
    }
}

fn bad(name: &str, message: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(format!("{name}: {message}"))
}

/// An array held for reading, borrowed through rust-numpy so nothing in Rust writes it meanwhile.
enum Held<'py> {
    F32(PyReadonlyArrayDyn<'py, f32>),
    F16(PyReadonlyArrayDyn<'py, f16>),
    /// bfloat16 bits: numpy has no bfloat16, so torch's are handed over as uint16.
    Bf16(PyReadonlyArrayDyn<'py, u16>),
}

impl Held<'_> {
    fn bytes(&self) -> &[u8] {
        // The arrays were checked C-contiguous and aligned when taken, so these never fail.
        match self {
            Held::F32(a) => bytemuck::cast_slice(a.as_slice().expect("C-contiguous")),
            Held::F16(a) => bytemuck::cast_slice(a.as_slice().expect("C-contiguous")),
            Held::Bf16(a) => bytemuck::cast_slice(a.as_slice().expect("C-contiguous")),
        }
    }
}

/// Validates one array (dtype, dimensions, layout) and borrows it.
fn take<'py>(
    name: &str,
    array: &Bound<'py, PyAny>,
    bf16: bool,
) -> PyResult<(Held<'py>, DType, Vec<usize>)> {
    let array = array
        .cast::<PyUntypedArray>()
        .map_err(|_| bad(name, "is not a numpy array"))?;
    let descr: String = array.dtype().getattr("str")?.extract()?;
    let dtype = if bf16 {
        match descr.as_str() {
            "<u2" => DType::BF16,
            other => {
                return Err(bad(
                    name,
                    format!("bfloat16 bits must be '<u2', not '{other}'"),
                ))
            }
        }
    } else {
        dtype_from_descr(&descr).map_err(|m| bad(name, m))?
    };
    let dims = array.shape().to_vec();
    if let Some(i) = dims.iter().position(|&d| d == 0) {
        return Err(bad(
            name,
            format!("dimension {i} of shape {dims:?} is empty"),
        ));
    }
    if !array.is_c_contiguous() || !array.is_aligned() {
        return Err(bad(
            name,
            "array is not C-contiguous and aligned (pass np.ascontiguousarray(a))",
        ));
    }
    let borrow = |e: numpy::BorrowError| bad(name, e);
    let held = match dtype {
        DType::F32 => Held::F32(
            array
                .cast::<PyArrayDyn<f32>>()?
                .try_readonly()
                .map_err(borrow)?,
        ),
        DType::F16 => Held::F16(
            array
                .cast::<PyArrayDyn<f16>>()?
                .try_readonly()
                .map_err(borrow)?,
        ),
        DType::BF16 => Held::Bf16(
            array
                .cast::<PyArrayDyn<u16>>()?
                .try_readonly()
                .map_err(borrow)?,
        ),
    };
    Ok((held, dtype, dims))
}

/// The arrays of one call, held, and the source reading them in place.
struct Input<'py> {
    held: Vec<Held<'py>>,
    name: String,
    shape: attnviz::Shape,
    dtype: DType,
}

impl<'py> Input<'py> {
    /// `stacked`: one array of 2 to 4 dimensions. Otherwise one (H, Q, K) array per layer, all
    /// alike, named `name[i]` in messages.
    fn new(name: &str, arrays: &[Bound<'py, PyAny>], stacked: bool, bf16: bool) -> PyResult<Self> {
        if stacked {
            let (held, dtype, dims) = take(name, &arrays[0], bf16)?;
            let shape = shape_from_dims(&dims).map_err(|m| bad(name, m))?;
            return Ok(Input {
                held: vec![held],
                name: name.into(),
                shape,
                dtype,
            });
        }
        if arrays.is_empty() {
            return Err(bad(name, "holds no layers"));
        }
        let mut held = Vec::with_capacity(arrays.len());
        let mut first: Option<(DType, Vec<usize>)> = None;
        for (i, a) in arrays.iter().enumerate() {
            let layer = format!("{name}[{i}]");
            let (h, dtype, dims) = take(&layer, a, bf16)?;
            if dims.len() != 3 {
                return Err(bad(
                    &layer,
                    format!("array has {} dimensions (expected (batch, H, Q, K) or (H, Q, K) per layer)", dims.len()),
                ));
            }
            match &first {
                None => first = Some((dtype, dims)),
                Some((d0, dims0)) if (*d0, dims0) != (dtype, &dims) => {
                    return Err(bad(
                        &layer,
                        format!(
                            "{} of shape {dims:?} unlike {name}[0] ({} of shape {dims0:?})",
                            dtype.name(),
                            d0.name()
                        ),
                    ))
                }
                Some(_) => {}
            }
            held.push(h);
        }
        let (dtype, dims) = first.expect("at least one layer");
        let mut shape = shape_from_dims(&dims).map_err(|m| bad(name, m))?;
        shape.layers = arrays.len();
        Ok(Input {
            held,
            name: name.into(),
            shape,
            dtype,
        })
    }

    fn source(&self) -> PyResult<SliceSource<'_>> {
        let result = if self.held.len() == 1 {
            SliceSource::contiguous(&self.name, self.shape, self.dtype, self.held[0].bytes())
        } else {
            let layers = self.held.iter().map(Held::bytes).collect();
            SliceSource::new(&self.name, self.shape, self.dtype, layers)
        };
        result.map_err(py_err)
    }
}

fn option<T>(what: &str, value: &str, all: &[&str], parse: fn(&str) -> Option<T>) -> PyResult<T> {
    parse(value).ok_or_else(|| {
        PyValueError::new_err(format!(
            "invalid value '{value}' for {what} [possible values: {}]",
            all.join(", ")
        ))
    })
}

#[allow(clippy::too_many_arguments)]
fn render_options(
    layers: Option<String>,
    heads: Option<String>,
    norm: &str,
    colormap: &str,
    reduce: &str,
    cell: Option<i64>,
    causal: &str,
    colorbar: bool,
) -> PyResult<RenderOptions> {
    // Out-of-range sizes get the library's own message.
    let cell = cell.map(|c| u32::try_from(c.max(0)).unwrap_or(u32::MAX));
    Ok(RenderOptions {
        layers,
        heads,
        norm: option("norm", norm, &Norm::ALL.map(Norm::name), Norm::from_name)?,
        colormap: option(
            "colormap",
            colormap,
            &Colormap::ALL.map(Colormap::name),
            Colormap::from_name,
        )?,
        reduce: option(
            "reduce",
            reduce,
            &Reduce::ALL.map(Reduce::name),
            Reduce::from_name,
        )?,
        cell,
        causal: match causal {
            "auto" => Causal::Auto,
            "on" => Causal::On,
            "off" => Causal::Off,
            other => {
                return Err(PyValueError::new_err(format!(
                    "invalid value '{other}' for causal [possible values: auto, on, off]"
                )))
            }
        },
        colorbar,
        ..Default::default()
    })
}

/// Renders on the shared engine (opened on first use), or on the CPU. Returns the figure, the
/// adapter's name ("CPU" for the reference renderer) and, for `auto` without an adapter, why.
fn render_figure(
    source: &dyn AttentionSource,
    options: &RenderOptions,
    backend: &str,
) -> Result<(Figure, String, Option<String>), Error> {
    if backend == "cpu" {
        return Ok((attnviz::render_cpu(source, options)?, "CPU".into(), None));
    }
    let mut guard = ENGINE.lock().unwrap_or_else(|p| p.into_inner());
    let engine =
        guard.get_or_insert_with(|| Gpu::new().map(Engine::new).map_err(|e| e.to_string()));
    match engine {
        Ok(engine) => {
            let chunk = CHUNK_BYTES.load(Ordering::Relaxed);
            engine.chunk_bytes = if chunk > 0 {
                chunk
            } else {
                attnviz::pool::CHUNK_TARGET
            };
            let figure = engine.render(source, options)?;
            Ok((figure, engine.gpu.info.name.clone(), None))
        }
        Err(why) if backend == "auto" => {
            let why = format!("{why}; rendering on the CPU");
            Ok((
                attnviz::render_cpu(source, options)?,
                "CPU".into(),
                Some(why),
            ))
        }
        Err(why) => Err(Error::NoAdapter(
            why.trim_start_matches("no GPU adapter: ").to_string(),
        )),
    }
}

/// The figure as the Python side needs it: (image H×W×4 uint8, causal mask applied, adapter,
/// fallback warning or None, addresses of the memory each layer was read from).
type Rendered<'py> = (
    Bound<'py, PyArray3<u8>>,
    bool,
    String,
    Option<String>,
    Vec<usize>,
);

#[pyfunction]
#[pyo3(signature = (arrays, stacked, bf16, name, out, layers, heads, norm, colormap, reduce, cell, causal, colorbar, backend))]
#[allow(clippy::too_many_arguments)]
fn _render<'py>(
    py: Python<'py>,
    arrays: Vec<Bound<'py, PyAny>>,
    stacked: bool,
    bf16: bool,
    name: &str,
    out: Option<PathBuf>,
    layers: Option<String>,
    heads: Option<String>,
    norm: &str,
    colormap: &str,
    reduce: &str,
    cell: Option<i64>,
    causal: &str,
    colorbar: bool,
    backend: &str,
) -> PyResult<Rendered<'py>> {
    let options = render_options(
        layers, heads, norm, colormap, reduce, cell, causal, colorbar,
    )?;
    check_backend(backend)?;
    let input = Input::new(name, &arrays, stacked, bf16)?;
    let source = input.source()?;
    let addresses = source
        .layer_bytes()
        .iter()
        .map(|l| l.as_ptr() as usize)
        .collect();
    let (figure, adapter, warning) = py
        .detach(|| render_and_write(&source, &options, backend, out.as_deref()))
        .map_err(py_err)?;
    let image = into_image(py, figure.width, figure.height, figure.rgba);
    Ok((image, figure.causal, adapter, warning, addresses))
}

fn check_backend(backend: &str) -> PyResult<()> {
    match backend {
        "auto" | "gpu" | "cpu" => Ok(()),
        other => Err(PyValueError::new_err(format!(
            "invalid value '{other}' for backend [possible values: auto, gpu, cpu]"
        ))),
    }
}

/// Renders and, like the CLI, checks `out` is writable before any GPU work and writes it after.
fn render_and_write(
    source: &dyn AttentionSource,
    options: &RenderOptions,
    backend: &str,
    out: Option<&std::path::Path>,
) -> Result<(Figure, String, Option<String>), Error> {
    if let Some(path) = out {
        attnviz::files::check_writable(path)?;
    }
    let rendered = render_figure(source, options, backend)?;
    if let Some(path) = out {
        let f = &rendered.0;
        attnviz::files::write_png(path, f.width, f.height, &f.rgba)?;
    }
    Ok(rendered)
}

/// The figure's pixels as an (H, W, 4) uint8 array, handed to numpy without a copy.
fn into_image(py: Python<'_>, width: u32, height: u32, rgba: Vec<u8>) -> Bound<'_, PyArray3<u8>> {
    Array3::from_shape_vec((height as usize, width as usize, 4), rgba)
        .expect("the figure holds width × height RGBA pixels")
        .into_pyarray(py)
}

/// The pixels and size of an H×W×4 uint8 image.
fn rgba<'a>(image: &'a PyReadonlyArrayDyn<'_, u8>) -> PyResult<(&'a [u8], u32, u32)> {
    let dims = image.shape();
    match (image.as_slice(), dims) {
        (Ok(pixels), &[h, w, 4]) if image.is_c_contiguous() => Ok((pixels, w as u32, h as u32)),
        _ => Err(PyValueError::new_err(format!(
            "image of shape {dims:?}: expected a C-contiguous (H, W, 4) uint8 array"
        ))),
    }
}

/// Attention recomputed from queries and keys (the CLI's `render --q --k`). `QkSource` owns its
/// inputs (`'static` sources), so Q and K are copied once into owned buffers: N·d values per
/// head, not the N² the attention would be.
#[pyfunction]
#[pyo3(signature = (q, k, bf16, out, queries, softmax_scale, layers, heads, norm, colormap, reduce, cell, causal, colorbar, backend, meta, values))]
#[allow(clippy::too_many_arguments)]
fn _render_qk<'py>(
    py: Python<'py>,
    q: Bound<'py, PyAny>,
    k: Bound<'py, PyAny>,
    bf16: (bool, bool),
    out: Option<PathBuf>,
    queries: Option<String>,
    softmax_scale: Option<f32>,
    layers: Option<String>,
    heads: Option<String>,
    norm: &str,
    colormap: &str,
    reduce: &str,
    cell: Option<i64>,
    causal: &str,
    colorbar: bool,
    backend: &str,
    meta: Option<String>,
    values: &str,
) -> PyResult<Rendered<'py>> {
    let values = option("values", values, &Values::ALL.map(Values::name), Values::from_name)?;
    let options = render_options(
        layers, heads, norm, colormap, reduce, cell, causal, colorbar,
    )?;
    check_backend(backend)?;
    // A capture's settings, in the JSON its file would hold: one parser for both.
    let meta = meta
        .as_deref()
        .map(CaptureMeta::parse)
        .transpose()
        .map_err(|e| bad("capture", e))?;
    let owned = |name: &str, array: &Bound<'py, PyAny>, bf16| -> PyResult<ArraySource> {
        let input = Input::new(name, std::slice::from_ref(array), true, bf16)?;
        let bytes = input.held[0].bytes().to_vec();
        ArraySource::new(name, input.shape, input.dtype, bytes).map_err(py_err)
    };
    let (q, k) = (owned("q", &q, bf16.0)?, owned("k", &k, bf16.1)?);
    let qk = QkOptions {
        causal: options.causal == Causal::On,
        softmax_scale,
        queries: queries
            .as_deref()
            .map(parse_queries)
            .transpose()
            .map_err(py_err)?,
        meta,
        values,
        ..Default::default()
    };
    let source = QkSource::new(Box::new(q), Box::new(k), &qk).map_err(py_err)?;
    let (figure, adapter, warning) = py
        .detach(|| render_and_write(&source, &options, backend, out.as_deref()))
        .map_err(py_err)?;
    let image = into_image(py, figure.width, figure.height, figure.rgba);
    Ok((image, figure.causal, adapter, warning, Vec::new()))
}

/// One side of `attnviz.diff`, as `_prepare` hands it over: the arrays, whether they are one
/// stacked array, and whether they hold bfloat16 bits (a dict with these keys).
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
struct DiffInput<'py> {
    arrays: Vec<Bound<'py, PyAny>>,
    stacked: bool,
    bf16: bool,
}

/// The options of `attnviz.diff`, passed as one dict (keys as in `attnviz/__init__.py`).
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
struct DiffCall {
    out: Option<PathBuf>,
    layers: Option<String>,
    heads: Option<String>,
    norm: String,
    colormap: String,
    reduce: String,
    cell: Option<i64>,
    causal: String,
    colorbar: bool,
    center: Option<f32>,
    backend: String,
}

/// `A − B` of two inputs of one shape (the CLI's `attnviz diff`): symmetric about `center`
/// (default 0) per norm scope, captioned "A − B"; both inputs are read in place.
#[pyfunction]
fn _diff<'py>(
    py: Python<'py>,
    a: DiffInput<'py>,
    b: DiffInput<'py>,
    call: DiffCall,
) -> PyResult<Rendered<'py>> {
    let mut options = render_options(
        call.layers,
        call.heads,
        &call.norm,
        &call.colormap,
        &call.reduce,
        call.cell,
        &call.causal,
        call.colorbar,
    )?;
    options.scale.symmetric = true;
    options.scale.center = call.center;
    options.scale.label = Some("A − B".into());
    check_backend(&call.backend)?;
    let input_a = Input::new("a", &a.arrays, a.stacked, a.bf16)?;
    let input_b = Input::new("b", &b.arrays, b.stacked, b.bf16)?;
    let source = DiffSource::new(Box::new(input_a.source()?), Box::new(input_b.source()?))
        .map_err(py_err)?;
    let (figure, adapter, warning) = py
        .detach(|| render_and_write(&source, &options, &call.backend, call.out.as_deref()))
        .map_err(py_err)?;
    let image = into_image(py, figure.width, figure.height, figure.rgba);
    Ok((image, figure.causal, adapter, warning, Vec::new()))
}

/// PNG bytes of an H×W×4 uint8 image, encoded as the figures are written.
#[pyfunction]
fn _encode_png<'py>(
    py: Python<'py>,
    image: PyReadonlyArrayDyn<'py, u8>,
) -> PyResult<Bound<'py, PyBytes>> {
    let (pixels, w, h) = rgba(&image)?;
    let mut png = Vec::new();
    py.detach(|| attnviz::files::encode_png(&mut png, w, h, pixels))
        .map_err(|e| PyRuntimeError::new_err(format!("cannot encode PNG: {e}")))?;
    Ok(PyBytes::new(py, &png))
}

/// Writes an H×W×4 uint8 image as a PNG file, atomically, as `render` writes `out`.
#[pyfunction]
fn _write_png(py: Python<'_>, path: PathBuf, image: PyReadonlyArrayDyn<'_, u8>) -> PyResult<()> {
    let (pixels, w, h) = rgba(&image)?;
    py.detach(|| attnviz::files::write_png(&path, w, h, pixels))
        .map_err(py_err)
}

/// Opens the viewer window on the arrays and blocks until it is closed. Returns (adapter,
/// frames drawn, (min, median, p99) frame time in ms).
#[pyfunction]
#[pyo3(signature = (arrays, stacked, bf16, name, layers, heads, norm, colormap, reduce, cell, causal, colorbar, tokens, size, focus, zoom, exit_after_frames, screenshot))]
#[allow(clippy::too_many_arguments)]
fn _view<'py>(
    py: Python<'py>,
    arrays: Vec<Bound<'py, PyAny>>,
    stacked: bool,
    bf16: bool,
    name: &str,
    layers: Option<String>,
    heads: Option<String>,
    norm: &str,
    colormap: &str,
    reduce: &str,
    cell: Option<i64>,
    causal: &str,
    colorbar: bool,
    tokens: Option<Vec<String>>,
    size: Option<(u32, u32)>,
    focus: Option<(i64, i64)>,
    zoom: Option<f64>,
    exit_after_frames: Option<u64>,
    screenshot: Option<PathBuf>,
) -> PyResult<(String, u64, (f64, f64, f64))> {
    let render = render_options(
        layers, heads, norm, colormap, reduce, cell, causal, colorbar,
    )?;
    if size.is_some_and(|(w, h)| w == 0 || h == 0) {
        return Err(PyValueError::new_err(
            "size: expected (width, height) of at least 1 pixel",
        ));
    }
    if VIEWED.load(Ordering::SeqCst) {
        return Err(PyRuntimeError::new_err(
            "attnviz.view opens one window per process (the windowing library cannot recreate \
             its event loop): restart the kernel, or call it in a new process",
        ));
    }
    let focus = match focus {
        None => None,
        Some((l, h)) if l >= 1 && h >= 1 => Some((l as usize - 1, h as usize - 1)),
        Some((l, h)) => {
            return Err(PyValueError::new_err(format!(
                "focus ({l}, {h}): layer and head are 1-based integers"
            )))
        }
    };
    if zoom.is_some_and(|z| !(z.is_finite() && z > 0.0)) {
        return Err(PyValueError::new_err("zoom must be a positive number"));
    }
    let input = Input::new(name, &arrays, stacked, bf16)?;
    let source = input.source()?;
    let options = attnviz::viewer::ViewerOptions {
        render,
        exit_after_frames,
        screenshot,
        size,
        tokens,
        focus,
        zoom,
        ..Default::default()
    };
    let report = py
        .detach(|| {
            if let Some(path) = &options.screenshot {
                attnviz::files::check_writable(path)?;
            }
            VIEWED.store(true, Ordering::SeqCst);
            attnviz::viewer::run(&source, options)
        })
        .map_err(py_err)?;
    Ok((report.adapter.clone(), report.frames, report.summary()))
}

/// Sets the engine's upload chunk in bytes (0: the library default). For tests.
#[pyfunction]
fn _set_chunk_bytes(bytes: u64) {
    CHUNK_BYTES.store(bytes, Ordering::Relaxed);
}

#[pymodule]
fn _attnviz(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(_render, m)?)?;
    m.add_function(wrap_pyfunction!(_render_qk, m)?)?;
    m.add_function(wrap_pyfunction!(_diff, m)?)?;
    m.add_function(wrap_pyfunction!(_encode_png, m)?)?;
    m.add_function(wrap_pyfunction!(_write_png, m)?)?;
    m.add_function(wrap_pyfunction!(_view, m)?)?;
    m.add_function(wrap_pyfunction!(_set_chunk_bytes, m)?)?;
    m.add("NORMS", Norm::ALL.map(Norm::name).to_vec())?;
    m.add("COLORMAPS", Colormap::ALL.map(Colormap::name).to_vec())?;
    m.add("REDUCES", Reduce::ALL.map(Reduce::name).to_vec())?;
    Ok(())
}
