//! The keywords of `render`/`figure`/`render_qk`/`figure_qk`, handed over as one dict and read
//! into [`PyOptions`]: the CLI's `render` options (`attnviz::figure::options::RENDER_OPTIONS`
//! names each one's keyword), turned into the library's [`RenderOptions`] the way the CLI's
//! `Style::options` does, with errors that name keywords rather than flags.

use std::path::PathBuf;

use attnviz::color::scale::{ColorScale, Scale};
use attnviz::figure::layout::Theme;
use attnviz::figure::options::python_message;
use attnviz::figure::rank::SortKey;
use attnviz::pool::pattern::PatternOptions;
use attnviz::pool::Causal;
use attnviz::{Colormap, Error, Norm, Reduce, RenderOptions};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

/// Library errors as Python exceptions: what the user can fix is a `ValueError`, the machine's
/// problems a `RuntimeError`, both with the CLI's one-line message, its flags renamed to the
/// keywords a Python caller passed.
pub fn py_err(e: Error) -> PyErr {
    let msg = python_message(&e.to_string().replace('\n', " "));
    if e.is_input_error() {
        PyValueError::new_err(msg)
    } else {
        PyRuntimeError::new_err(msg)
    }
}

pub fn bad(name: &str, message: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(format!("{name}: {message}"))
}

/// Every keyword shared by the four render functions (and, in part, `view`). The Python side
/// fills in each default, so every key is present.
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
pub struct PyOptions {
    pub out: Option<PathBuf>,
    pub layers: Option<String>,
    pub heads: Option<String>,
    pub norm: String,
    pub colormap: String,
    pub reduce: String,
    pub cell: Option<i64>,
    pub causal: String,
    pub colorbar: bool,
    pub scale: String,
    pub log_floor: Option<f32>,
    /// `"LOW,HIGH"`, the CLI's syntax (the Python side formats tuples).
    pub clip: Option<String>,
    pub vmin: Option<f32>,
    pub vmax: Option<f32>,
    pub center: Option<f32>,
    pub symmetric: bool,
    /// `"on"`, `"off"` or None (the default: on for one cell).
    pub axes: Option<String>,
    /// A statistic's name (`SortKey`), and how many of the highest heads to keep.
    pub sort_by: Option<String>,
    pub top: Option<i64>,
    /// Pattern labels, comma-separated (the Python side joins a list).
    pub pattern: Option<String>,
    /// `"0..K"`, the CLI's syntax (the Python side formats an int K).
    pub exclude_keys: Option<String>,
    pub title: Option<String>,
    pub tokens: Option<Vec<String>>,
    pub scale_factor: f32,
    pub dpi: Option<f32>,
    pub theme: String,
    pub transparent: bool,
    pub tiles: Option<PathBuf>,
    pub stats_json: Option<PathBuf>,
    pub sink_keys: i64,
    pub window: i64,
    pub backend: String,
}

impl PyOptions {
    /// What the pattern statistics measure (`sink_keys`, `window`).
    pub fn patterns(&self) -> PyResult<PatternOptions> {
        Ok(PatternOptions {
            sink_keys: positive("sink_keys", self.sink_keys)?,
            window: positive("window", self.window)?,
        })
    }

    /// Whether `out` asks for SVG (by its extension, as the CLI decides).
    pub fn svg(&self) -> bool {
        self.out
            .as_ref()
            .and_then(|p| p.extension())
            .is_some_and(|e| e.eq_ignore_ascii_case("svg"))
    }

    /// The library's options for these keywords; checks the backend name too.
    pub fn render_options(&self) -> PyResult<RenderOptions> {
        match self.backend.as_str() {
            "auto" | "gpu" | "cpu" => {}
            other => return Err(invalid("backend", other, &["auto", "gpu", "cpu"])),
        }
        // Out-of-range sizes get the library's own message.
        let cell = self
            .cell
            .map(|c| u32::try_from(c.max(0)).unwrap_or(u32::MAX));
        let scale = ColorScale {
            scale: Scale::parse(&self.scale).map_err(py_err)?,
            log_floor: self.log_floor,
            clip: self
                .clip
                .as_deref()
                .map(ColorScale::parse_clip)
                .transpose()
                .map_err(py_err)?,
            vmin: self.vmin,
            vmax: self.vmax,
            exclude_keys: self
                .exclude_keys
                .as_deref()
                .map(ColorScale::parse_exclude)
                .transpose()
                .map_err(py_err)?
                .unwrap_or(0),
            center: self.center,
            symmetric: self.symmetric,
            label: None,
        };
        let scale_factor = match self.dpi {
            Some(_) if self.scale_factor != 1.0 => {
                return Err(PyValueError::new_err(
                    "scale_factor and dpi: give one or the other (dpi=300 is scale_factor=3)",
                ))
            }
            Some(dpi) => dpi / 100.0,
            None => self.scale_factor,
        };
        // (sorting ranks by the statistics sink_keys and window define, as stats_json writes
        // them; pattern by the labels they give)
        let patterns = match (&self.stats_json, &self.sort_by, &self.pattern) {
            (None, None, None) => None,
            _ => Some(self.patterns()?),
        };
        Ok(RenderOptions {
            layers: self.layers.clone(),
            heads: self.heads.clone(),
            norm: choice(
                "norm",
                &self.norm,
                &Norm::ALL.map(Norm::name),
                Norm::from_name,
            )?,
            colormap: choice(
                "colormap",
                &self.colormap,
                &Colormap::ALL.map(Colormap::name),
                Colormap::from_name,
            )?,
            reduce: choice(
                "reduce",
                &self.reduce,
                &Reduce::ALL.map(Reduce::name),
                Reduce::from_name,
            )?,
            cell,
            causal: choice(
                "causal",
                &self.causal,
                &["auto", "on", "off"],
                |s| match s {
                    "auto" => Some(Causal::Auto),
                    "on" => Some(Causal::On),
                    "off" => Some(Causal::Off),
                    _ => None,
                },
            )?,
            colorbar: self.colorbar,
            scale,
            title: self.title.clone(),
            tokens: self.tokens.clone(),
            scale_factor,
            theme: choice("theme", &self.theme, &["light", "dark"], Theme::from_name)?,
            transparent: self.transparent,
            cell_colors: self.svg(),
            patterns,
            axes: match self.axes.as_deref() {
                None => None,
                Some(a) => Some(choice("axes", a, &["on", "off"], |s| match s {
                    "on" => Some(true),
                    "off" => Some(false),
                    _ => None,
                })?),
            },
            sort_by: self
                .sort_by
                .as_deref()
                .map(|s| {
                    choice(
                        "sort_by",
                        s,
                        &SortKey::ALL.map(SortKey::name),
                        SortKey::from_name,
                    )
                })
                .transpose()?,
            top: self
                .top
                .map(|n| usize::try_from(n).map_err(|_| bad("top", format!("{n} is negative"))))
                .transpose()?,
            pattern: self
                .pattern
                .as_deref()
                .map(attnviz::figure::rank::parse_patterns)
                .transpose()
                .map_err(py_err)?,
            summary: None,
        })
    }
}

fn invalid(what: &str, value: &str, all: &[&str]) -> PyErr {
    PyValueError::new_err(format!(
        "invalid value '{value}' for {what} [possible values: {}]",
        all.join(", ")
    ))
}

/// A named choice, with the possible values in the message when it is none of them.
fn choice<T>(what: &str, value: &str, all: &[&str], parse: fn(&str) -> Option<T>) -> PyResult<T> {
    parse(value).ok_or_else(|| invalid(what, value, all))
}

/// At least 1, as the CLI's `--sink-keys` and `--window`.
fn positive(what: &str, value: i64) -> PyResult<u32> {
    u32::try_from(value)
        .ok()
        .filter(|&v| v >= 1)
        .ok_or_else(|| bad(what, format!("{value} must be a positive integer")))
}

/// The Q/K keywords of `render_qk` and `figure_qk`, one dict.
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
pub struct PyQkOptions {
    /// `"A..B"`, the CLI's syntax.
    pub queries: Option<String>,
    pub softmax_scale: Option<f32>,
    pub sliding_window: Option<i64>,
    pub attention_chunk: Option<i64>,
    pub softcap: Option<f32>,
    /// `"S:E,S:E"`, the CLI's syntax.
    pub bidirectional_spans: Option<String>,
    /// `"probs"` or `"logits"`.
    pub values: String,
    /// A capture's settings, in the JSON its file would hold.
    pub meta: Option<String>,
}

/// `view`'s own keywords, one dict.
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
pub struct PyViewOptions {
    pub size: Option<(u32, u32)>,
    pub focus: Option<(i64, i64)>,
    pub zoom: Option<f64>,
    pub exit_after_frames: Option<u64>,
    pub screenshot: Option<PathBuf>,
}
