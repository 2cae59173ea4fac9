//! The native half of the `attnviz` Python package: numpy arrays in, figures out. The Python
//! half (`attnviz/__init__.py`) turns torch tensors and HuggingFace tuples into numpy views and
//! picks the batch item; everything here reads those views in place, with the GIL released.

mod options;
mod render;
mod viewer;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use attnviz::engine::qk_rows::GpuRows;
use attnviz::figure::options::{PyBinding, RENDER_OPTIONS};
use attnviz::pool::Causal;
use attnviz::source::npy::{dtype_from_descr, shape_from_dims};
use attnviz::source::qk::{parse_queries, QkOptions, QkSource, Values};
use attnviz::source::qk_meta::CaptureMeta;
use attnviz::source::{ArraySource, DiffSource, QueryRows, SliceSource};
use attnviz::{AttentionSource, Colormap, DType, Engine, Norm, Reduce, RenderOptions};
use half::f16;
use numpy::ndarray::Array3;
use numpy::{
    IntoPyArray, PyArray3, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use options::{bad, py_err, PyOptions, PyQkOptions, PyViewOptions};
use render::{head_stats, render_and_write, render_and_write_with, Drawn, SourceFor, CHUNK_BYTES};

/// winit creates one event loop per process; a second `view` gets a clear error instead of
/// winit's.
static VIEWED: AtomicBool = AtomicBool::new(false);

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
        Self::with_layers(name, arrays, stacked, bf16, "(batch, H, Q, K) or (H, Q, K)")
    }

    /// [`Input::new`], a layer's expected dimensions named `per_layer` in messages (Q and K's
    /// layers are (H, N, d)).
    fn with_layers(
        name: &str,
        arrays: &[Bound<'py, PyAny>],
        stacked: bool,
        bf16: bool,
        per_layer: &str,
    ) -> PyResult<Self> {
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
                    format!(
                        "array has {} dimensions (expected {per_layer} per layer)",
                        dims.len()
                    ),
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

/// The figure as the Python side needs it: (image H×W×4 uint8, causal mask applied, adapter,
/// fallback warning or None, addresses of the memory each layer was read from, layout JSON,
/// SVG text or None).
type Rendered<'py> = (
    Bound<'py, PyArray3<u8>>,
    bool,
    String,
    Option<String>,
    Vec<usize>,
    String,
    Option<String>,
);

fn rendered(py: Python<'_>, drawn: Drawn, addresses: Vec<usize>) -> Rendered<'_> {
    let f = drawn.figure;
    let image = into_image(py, f.width, f.height, f.rgba);
    let (adapter, warning) = (drawn.adapter, drawn.warning);
    (
        image,
        f.causal,
        adapter,
        warning,
        addresses,
        drawn.layout,
        drawn.svg,
    )
}

/// Rows `queries` (`"A..B"`) of every head of `source`, keeping their places, as the CLI's
/// `--queries` on a file; all of them without it.
fn query_rows<'a>(
    source: &'a SliceSource<'_>,
    queries: Option<&str>,
) -> PyResult<Box<dyn AttentionSource + 'a>> {
    Ok(match queries {
        Some(spec) => Box::new(
            QueryRows::new(Box::new(source), parse_queries(spec).map_err(py_err)?)
                .map_err(py_err)?,
        ),
        None => Box::new(source),
    })
}

/// Attention given as arrays: one stacked array, or one (H, Q, K) array per layer. `options`
/// holds every keyword ([`PyOptions`]).
#[pyfunction]
#[pyo3(signature = (arrays, stacked, bf16, name, options, queries=None))]
fn _render<'py>(
    py: Python<'py>,
    arrays: Vec<Bound<'py, PyAny>>,
    stacked: bool,
    bf16: bool,
    name: &str,
    options: PyOptions,
    queries: Option<String>,
) -> PyResult<Rendered<'py>> {
    let render = options.render_options()?;
    let input = Input::new(name, &arrays, stacked, bf16)?;
    let whole = input.source()?;
    let addresses = whole
        .layer_bytes()
        .iter()
        .map(|l| l.as_ptr() as usize)
        .collect();
    let source = query_rows(&whole, queries.as_deref())?;
    let drawn = py
        .detach(|| render_and_write(source.as_ref(), &render, &options))
        .map_err(py_err)?;
    Ok(rendered(py, drawn, addresses))
}

/// Attention recomputed from queries and keys (the CLI's `render --q --k`).
#[pyfunction]
fn _render_qk<'py>(
    py: Python<'py>,
    q: Bound<'py, PyAny>,
    k: Bound<'py, PyAny>,
    bf16: (bool, bool),
    options: PyOptions,
    qk: PyQkOptions,
) -> PyResult<Rendered<'py>> {
    let render = options.render_options()?;
    let source = qk_source(&q, &k, bf16, &render, qk)?;
    let drawn = py
        .detach(|| render_and_write(&source, &render, &options))
        .map_err(py_err)?;
    Ok(rendered(py, drawn, Vec::new()))
}

/// Attention the package opened (`_Source`): a file read in place as it streams, or a
/// capture's file, its attention recomputed (the CLI's `render FILE`).
#[pyfunction]
fn _render_source<'py>(
    py: Python<'py>,
    source: &Bound<'py, viewer::_Source>,
    options: PyOptions,
) -> PyResult<Rendered<'py>> {
    let render = options.render_options()?;
    let source = source.get().inner.clone();
    let drawn = py
        .detach(|| render_and_write(source.as_ref(), &render, &options))
        .map_err(py_err)?;
    Ok(rendered(py, drawn, Vec::new()))
}

/// The Q/K source of `render_qk`'s arguments: each of `q` and `k` one array, or a list of one
/// (H, N, d) array per layer (an `attnviz.Capture`'s layers, as it recorded them: stacking them
/// first would hold the capture once more). `QkSource` owns its inputs (`'static` sources),
/// so Q and K are copied once into owned buffers, a list's layers side by side: N·d values per
/// head, not the N² the attention would be.
fn qk_source<'py>(
    q: &Bound<'py, PyAny>,
    k: &Bound<'py, PyAny>,
    bf16: (bool, bool),
    render: &RenderOptions,
    qk: PyQkOptions,
) -> PyResult<QkSource> {
    let owned = |name: &str, array: &Bound<'py, PyAny>, bf16| -> PyResult<ArraySource> {
        let input = match array.cast::<PyList>() {
            Ok(layers) => {
                let layers: Vec<_> = layers.iter().collect();
                Input::with_layers(name, &layers, false, bf16, "(H, N, d)")?
            }
            Err(_) => Input::new(name, std::slice::from_ref(array), true, bf16)?,
        };
        let mut bytes = Vec::with_capacity(input.held.iter().map(|h| h.bytes().len()).sum());
        for layer in &input.held {
            bytes.extend_from_slice(layer.bytes());
        }
        ArraySource::new(name, input.shape, input.dtype, bytes).map_err(py_err)
    };
    let (q, k) = (owned("q", q, bf16.0)?, owned("k", k, bf16.1)?);
    QkSource::new(Box::new(q), Box::new(k), &qk_options(render, qk)?).map_err(py_err)
}

/// The library's Q/K options for the keywords in `qk`, with `render`'s mask.
fn qk_options(render: &RenderOptions, qk: PyQkOptions) -> PyResult<QkOptions> {
    // A capture's settings, in the JSON its file would hold: one parser for both.
    let meta = qk
        .meta
        .as_deref()
        .map(CaptureMeta::parse)
        .transpose()
        .map_err(|e| bad("capture", e))?;
    let count = |n: Option<i64>, what| {
        n.map(|n| usize::try_from(n).map_err(|_| bad(what, format!("{n} is negative"))))
            .transpose()
    };
    Ok(QkOptions {
        causal: render.causal == Causal::On,
        softmax_scale: qk.softmax_scale,
        sliding_window: count(qk.sliding_window, "sliding_window")?,
        attention_chunk: count(qk.attention_chunk, "attention_chunk")?,
        softcap: qk.softcap,
        bidirectional_spans: qk
            .bidirectional_spans
            .as_deref()
            .map(attnviz::source::qk_meta::parse_spans_arg)
            .transpose()
            .map_err(|e| bad("bidirectional_spans", e))?,
        queries: qk
            .queries
            .as_deref()
            .map(parse_queries)
            .transpose()
            .map_err(py_err)?,
        meta,
        values: choice_values(&qk.values)?,
    })
}

/// `attnviz.heads` on arrays: the statistics JSON and the CPU fallback's warning.
#[pyfunction]
#[pyo3(signature = (arrays, stacked, bf16, options, figure, queries=None))]
fn _heads(
    py: Python<'_>,
    arrays: Vec<Bound<'_, PyAny>>,
    stacked: bool,
    bf16: bool,
    options: PyOptions,
    figure: Option<PathBuf>,
    queries: Option<String>,
) -> PyResult<(String, Option<String>)> {
    let input = Input::new("attn", &arrays, stacked, bf16)?;
    let whole = input.source()?;
    let source = query_rows(&whole, queries.as_deref())?;
    heads_of(py, source.as_ref(), &options, figure)
}

/// The statistics JSON of `source` (and the CPU fallback's warning), the GIL released.
fn heads_of(
    py: Python<'_>,
    source: &dyn AttentionSource,
    options: &PyOptions,
    figure: Option<PathBuf>,
) -> PyResult<(String, Option<String>)> {
    let render = options.render_options()?;
    let patterns = options.patterns()?;
    py.detach(|| {
        head_stats(
            source,
            &render,
            patterns,
            &options.backend,
            figure.as_deref(),
        )
    })
    .map_err(py_err)
}

/// `attnviz.heads` on a file the package opened (`_Source`), as `attnviz heads FILE`.
#[pyfunction]
fn _heads_source(
    py: Python<'_>,
    source: &Bound<'_, viewer::_Source>,
    options: PyOptions,
    figure: Option<PathBuf>,
) -> PyResult<(String, Option<String>)> {
    heads_of(py, source.get().inner.as_ref(), &options, figure)
}

/// `attnviz.heads` on Q and K (or a capture).
#[pyfunction]
fn _heads_qk(
    py: Python<'_>,
    q: Bound<'_, PyAny>,
    k: Bound<'_, PyAny>,
    bf16: (bool, bool),
    options: PyOptions,
    qk: PyQkOptions,
    figure: Option<PathBuf>,
) -> PyResult<(String, Option<String>)> {
    let render = options.render_options()?;
    let source = qk_source(&q, &k, bf16, &render, qk)?;
    heads_of(py, &source, &options, figure)
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

/// One side of `attnviz.diff`, as `_prepare` hands it over: the arrays, whether they are one
/// stacked array, and whether they hold bfloat16 bits; or for a capture (`q` given) its
/// queries and keys as `_qk_inputs` hands them over, with their bf16 flags and the Q/K
/// keywords holding its settings; or a file's `source` (a dict with all these keys, None
/// where unused).
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
struct DiffInput<'py> {
    arrays: Vec<Bound<'py, PyAny>>,
    stacked: bool,
    bf16: bool,
    q: Option<Bound<'py, PyAny>>,
    k: Option<Bound<'py, PyAny>>,
    qk_bf16: Option<(bool, bool)>,
    qk: Option<PyQkOptions>,
    /// A file the package opened (`_Source`): read in place, or a capture's recomputed.
    source: Option<Bound<'py, viewer::_Source>>,
}

/// Both sides of a diff as the renderer reads them, for any backend.
struct DiffSides<'s> {
    a: Part<'s>,
    b: Part<'s>,
}

/// One side: its arrays in place, a capture's Q and K, or a file the package opened (which
/// may be a capture's file: then its Q and K).
enum Part<'s> {
    Slice(SliceSource<'s>),
    Qk(&'s QkSource),
    Source(&'s dyn AttentionSource),
}

impl SourceFor for DiffSides<'_> {
    fn make<'e>(
        &'e self,
        engine: Option<&'e Engine>,
    ) -> Result<Box<dyn AttentionSource + 'e>, attnviz::Error> {
        let one = |part: &'e Part<'_>| -> Box<dyn AttentionSource + 'e> {
            // (Q/K attention is recomputed block by block on the engine where there is one)
            let (read, qk): (&'e dyn AttentionSource, _) = match part {
                Part::Slice(slice) => (slice, None),
                Part::Qk(q) => (*q, Some(*q)),
                Part::Source(s) => (*s, s.as_qk()),
            };
            match (qk, engine) {
                (Some(q), Some(e)) => Box::new(GpuRows::new(e, q)),
                _ => Box::new(read),
            }
        };
        Ok(Box::new(DiffSource::new(one(&self.a), one(&self.b))?))
    }
}

/// A side of a diff as read: arrays in place, a capture's attention recomputed, or a file.
enum DiffSide<'py> {
    Arrays(Input<'py>),
    Qk(QkSource),
    Source(Arc<dyn AttentionSource>),
}

impl<'py> DiffSide<'py> {
    /// What the renderer reads of this side.
    fn part(&self) -> PyResult<Part<'_>> {
        Ok(match self {
            DiffSide::Arrays(input) => Part::Slice(input.source()?),
            DiffSide::Qk(q) => Part::Qk(q),
            DiffSide::Source(s) => Part::Source(s.as_ref()),
        })
    }

    fn new(name: &str, side: DiffInput<'py>, render: &RenderOptions) -> PyResult<Self> {
        if let Some(source) = &side.source {
            return Ok(DiffSide::Source(source.get().inner.clone()));
        }
        match (side.q, side.k, side.qk) {
            (Some(q), Some(k), Some(qk)) => Ok(DiffSide::Qk(qk_source(
                &q,
                &k,
                side.qk_bf16.unwrap_or_default(),
                render,
                qk,
            )?)),
            _ => Ok(DiffSide::Arrays(Input::new(
                name,
                &side.arrays,
                side.stacked,
                side.bf16,
            )?)),
        }
    }
}

/// `A − B` of two inputs of one shape (the CLI's `attnviz diff`): symmetric about `center`
/// (default 0) per norm scope, captioned "A − B"; both inputs are read in place. `options`
/// holds the render keywords ([`PyOptions`]) with `diff`'s own defaults.
#[pyfunction]
fn _diff<'py>(
    py: Python<'py>,
    a: DiffInput<'py>,
    b: DiffInput<'py>,
    options: PyOptions,
) -> PyResult<Rendered<'py>> {
    let mut render = options.render_options()?;
    render.scale.symmetric = true;
    render.scale.label = Some("A − B".into());
    let (a, b) = (
        DiffSide::new("a", a, &render)?,
        DiffSide::new("b", b, &render)?,
    );
    // (arrays are read in place; a capture's attention is recomputed block by block on the
    // engine, or by the f64 reference on the CPU, never stored)
    let make = DiffSides {
        a: a.part()?,
        b: b.part()?,
    };
    let drawn = py
        .detach(|| render_and_write_with(&make, &render, &options))
        .map_err(py_err)?;
    Ok(rendered(py, drawn, Vec::new()))
}

/// `values=`: "probs" or "logits".
fn choice_values(name: &str) -> PyResult<Values> {
    Values::from_name(name).ok_or_else(|| {
        PyValueError::new_err(format!(
            "invalid value '{name}' for values [possible values: {}]",
            Values::ALL.map(Values::name).join(", ")
        ))
    })
}

/// Whether the file at `path` is a Q/K capture (`source::safetensors::is_capture`, what the
/// CLI goes by), for `attnviz.Viewer(path)`.
#[pyfunction]
fn _is_capture(path: PathBuf) -> bool {
    attnviz::source::safetensors::is_capture(&path)
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

/// `Figure.save` and `Viewer.save`: an H×W×4 uint8 image as a PNG file, or, for a `.svg` name,
/// the figure's SVG document where it has one; atomically, as `render` writes `out`. Names of
/// other formats are refused as the CLI refuses them (`files::FigureFormat`), never written as
/// PNG bytes under a name that says otherwise.
#[pyfunction]
#[pyo3(signature = (path, image, svg=None))]
fn _save_figure(
    py: Python<'_>,
    path: PathBuf,
    image: PyReadonlyArrayDyn<'_, u8>,
    svg: Option<String>,
) -> PyResult<()> {
    use attnviz::files::FigureFormat;
    match (FigureFormat::of(&path).map_err(py_err)?, svg) {
        (FigureFormat::Png, _) => {
            let (pixels, w, h) = rgba(&image)?;
            py.detach(|| attnviz::files::write_png(&path, w, h, pixels))
                .map_err(py_err)
        }
        (FigureFormat::Svg, Some(svg)) => py
            .detach(|| {
                attnviz::files::write_atomic(&path, |w| std::io::Write::write_all(w, svg.as_bytes()))
            })
            .map_err(py_err),
        (FigureFormat::Svg, None) => Err(bad(
            &path.display().to_string(),
            "this figure holds no SVG (render or figure with out='….svg' make one): save it as .png",
        )),
    }
}

/// Opens the viewer window on the arrays and blocks until it is closed. `options` holds the
/// render keywords ([`PyOptions`]), `view` the window's own. Returns (adapter, frames drawn,
/// (min, median, p99) frame time in ms).
#[pyfunction]
#[pyo3(signature = (options, view, *, source=None, arrays=None, stacked=false, bf16=false, queries=None))]
#[allow(clippy::too_many_arguments)]
fn _view<'py>(
    py: Python<'py>,
    options: PyOptions,
    view: PyViewOptions,
    source: Option<PyRef<'py, viewer::_Source>>,
    arrays: Option<Vec<Bound<'py, PyAny>>>,
    stacked: bool,
    bf16: bool,
    queries: Option<String>,
) -> PyResult<(String, u64, (f64, f64, f64))> {
    let mut options = viewer::viewer_options(&options, view.size, view.focus, view.zoom)?;
    options.exit_after_frames = view.exit_after_frames;
    options.screenshot = view.screenshot;
    if VIEWED.load(Ordering::SeqCst) {
        return Err(PyRuntimeError::new_err(
            "attnviz.view opens one window per process (the windowing library cannot recreate \
             its event loop): restart the kernel, or call it in a new process",
        ));
    }
    // Arrays are read where they are (the window closes before this returns); other inputs
    // come opened, as `attnviz.Viewer` opens them.
    let input = match &arrays {
        Some(arrays) => Some(Input::new("attn", arrays, stacked, bf16)?),
        None => None,
    };
    let whole = input.as_ref().map(Input::source).transpose()?;
    let rows;
    let source: &dyn AttentionSource = match (&whole, &source) {
        (Some(whole), _) => {
            rows = query_rows(whole, queries.as_deref())?;
            rows.as_ref()
        }
        (None, Some(source)) => source.inner.as_ref(),
        (None, None) => return Err(PyValueError::new_err("attn: nothing to view")),
    };
    let report = py
        .detach(|| {
            if let Some(path) = &options.screenshot {
                attnviz::files::check_screenshot_path(path)?;
            }
            // (bad input first: the one event loop a process gets is not used up by it)
            attnviz::viewer::check(source, &options)?;
            VIEWED.store(true, Ordering::SeqCst);
            attnviz::viewer::run(source, options)
        })
        .map_err(py_err)?;
    Ok((report.adapter.clone(), report.frames, report.summary()))
}

/// A library message with its flags named as Python keywords (`--layers 9` → `layers=9`), for
/// the tests that compare the package's errors with the CLI's.
#[pyfunction]
fn _python_message(message: &str) -> String {
    attnviz::figure::options::python_message(message)
}

/// Sets the engine's upload chunk in bytes (0: the library default). For tests.
#[pyfunction]
fn _set_chunk_bytes(bytes: u64) {
    CHUNK_BYTES.store(bytes, Ordering::Relaxed);
}

/// `RENDER_OPTIONS` for Python: (flag, kind, keyword or reason, scope) per option of `attnviz
/// render`, kind one of "keyword", "attribute", "cli-only". The parity test reads it.
fn render_options_table() -> Vec<(&'static str, &'static str, &'static str, &'static str)> {
    RENDER_OPTIONS
        .iter()
        .map(|o| {
            let (kind, name) = match o.python {
                PyBinding::Keyword(k) => ("keyword", k),
                PyBinding::Attribute(a) => ("attribute", a),
                PyBinding::CliOnly(why) => ("cli-only", why),
            };
            (o.flag, kind, name, o.scope.name())
        })
        .collect()
}

#[pymodule]
fn _attnviz(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(_render, m)?)?;
    m.add_function(wrap_pyfunction!(_render_qk, m)?)?;
    m.add_function(wrap_pyfunction!(_render_source, m)?)?;
    m.add_function(wrap_pyfunction!(_heads_source, m)?)?;
    m.add_function(wrap_pyfunction!(_diff, m)?)?;
    m.add_function(wrap_pyfunction!(_heads, m)?)?;
    m.add_function(wrap_pyfunction!(_heads_qk, m)?)?;
    m.add_function(wrap_pyfunction!(_encode_png, m)?)?;
    m.add_function(wrap_pyfunction!(_save_figure, m)?)?;
    m.add_function(wrap_pyfunction!(_view, m)?)?;
    m.add_function(wrap_pyfunction!(_set_chunk_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(_python_message, m)?)?;
    m.add_function(wrap_pyfunction!(_is_capture, m)?)?;
    m.add_class::<viewer::_Session>()?;
    m.add_class::<viewer::_Source>()?;
    m.add("NORMS", Norm::ALL.map(Norm::name).to_vec())?;
    m.add("COLORMAPS", Colormap::ALL.map(Colormap::name).to_vec())?;
    m.add("REDUCES", Reduce::ALL.map(Reduce::name).to_vec())?;
    m.add("RENDER_OPTIONS", render_options_table())?;
    Ok(())
}
