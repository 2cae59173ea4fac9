//! One render from Python, as `attnviz render` does it: the figure on the shared engine (or the
//! CPU), then every output asked for (PNG or SVG `out`, `tiles`, `stats_json`), and what the
//! `Figure` object keeps in memory (pixels, layout JSON, SVG text).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use attnviz::figure::layout_json::layout_json;
use attnviz::figure::summary::{summary_input, summary_options};
use attnviz::files::{check_figure_path, check_folder, check_writable, write_png};
use attnviz::pool::pattern::PatternOptions;
use attnviz::{AttentionSource, Engine, Error, Figure, Gpu, Plan, RenderOptions, Tile};

use crate::options::PyOptions;

/// One GPU engine per process: opening an adapter and compiling the pipelines costs far more
/// than a figure, and a notebook renders many. `Err` remembers why there is none.
static ENGINE: Mutex<Option<Result<Engine, String>>> = Mutex::new(None);
/// Upload chunk size for the engine; 0 keeps the library's default (tests shrink it to measure
/// that the input itself is never copied).
pub static CHUNK_BYTES: AtomicU64 = AtomicU64::new(0);

/// What one render hands back to Python besides the pixels.
pub struct Drawn {
    pub figure: Figure,
    /// The adapter's name, "CPU" for the reference renderer.
    pub adapter: String,
    /// For `backend="auto"` without an adapter: why, for a warning.
    pub warning: Option<String>,
    /// `--layout-json`'s document, for `Figure.layout`.
    pub layout: String,
    /// The SVG document when `out` ends in `.svg`.
    pub svg: Option<String>,
}

/// Runs `gpu` on the shared engine (opened on first use), or `cpu` when `backend` is "cpu" or,
/// for "auto", when there is no adapter; with the adapter's name ("CPU" for the reference) and,
/// for that fallback, the warning to give.
pub fn on_backend<T>(
    backend: &str,
    gpu: impl FnOnce(&Engine) -> Result<T, Error>,
    cpu: impl FnOnce() -> Result<T, Error>,
) -> Result<(T, String, Option<String>), Error> {
    if backend == "cpu" {
        return Ok((cpu()?, "CPU".to_string(), None));
    }
    let mut guard = ENGINE.lock().unwrap_or_else(|p| p.into_inner());
    let engine =
        guard.get_or_insert_with(|| Gpu::new().map(Engine::new).map_err(|e| e.to_string()));
    match engine {
        Ok(engine) => {
            let chunk = CHUNK_BYTES.load(Ordering::Relaxed);
            // (tests shrink both: upload chunks, and the Q/K path's rows per chunk)
            (engine.chunk_bytes, engine.qk_state_bytes) = if chunk > 0 {
                (chunk, chunk)
            } else {
                (attnviz::pool::CHUNK_TARGET, engine.gpu.qk_state_bytes)
            };
            Ok((gpu(engine)?, engine.gpu.info.name.clone(), None))
        }
        Err(why) if backend == "auto" => Ok((
            cpu()?,
            "CPU".to_string(),
            Some(format!("{why}; rendering on the CPU")),
        )),
        Err(why) => Err(Error::NoAdapter(
            why.trim_start_matches("no GPU adapter: ").to_string(),
        )),
    }
}

/// Renders on the shared engine or the CPU (see [`on_backend`]), with the native tiles when
/// `tiles` asks for them (drawn by the same backend as the figure, as the CLI does).
fn draw(
    make: &dyn SourceFor,
    options: &RenderOptions,
    backend: &str,
    tiles: bool,
) -> Result<(Figure, Vec<Tile>, String, Option<String>), Error> {
    let ((figure, tiles), adapter, warning) = on_backend(
        backend,
        |engine| {
            let source = make.make(Some(engine))?;
            let figure = engine.render(source.as_ref(), options)?;
            let tiles = match tiles {
                true => engine.tiles(source.as_ref(), &figure, options)?,
                false => Vec::new(),
            };
            Ok((figure, tiles))
        },
        || {
            let source = make.make(None)?;
            let figure = attnviz::render_cpu(source.as_ref(), options)?;
            let tiles = match tiles {
                true => attnviz::tiles_cpu(source.as_ref(), &figure, options)?,
                false => Vec::new(),
            };
            Ok((figure, tiles))
        },
    )?;
    Ok((figure, tiles, adapter, warning))
}

/// `attnviz.heads`: every selected head's pattern statistics, as the JSON document `attnviz
/// heads --json` writes (listed as `options.sort_by`, `top` and `pattern` ask), with the CPU
/// fallback's warning if there was one; with `figure`, also the summary figure `attnviz heads
/// --figure` draws (PNG, or SVG by extension), by the same backend.
pub fn head_stats(
    source: &dyn AttentionSource,
    options: &RenderOptions,
    patterns: PatternOptions,
    backend: &str,
    figure: Option<&Path>,
) -> Result<(String, Option<String>), Error> {
    if let Some(path) = figure {
        check_figure_path(path)?;
    }
    let summary = |cells: &[(usize, usize)], stats: &[_]| {
        let svg =
            figure.is_some_and(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("svg")));
        let (input, summary) = summary_input(cells, stats)?;
        let options = RenderOptions {
            title: options.title.clone(),
            cell_colors: svg,
            ..summary_options(summary)
        };
        Ok::<_, Error>((input, options))
    };
    let ((cells, stats, drawn), _, warning) = on_backend(
        backend,
        |engine| {
            let (cells, stats) = engine.head_patterns(source, options, patterns)?;
            let drawn = match figure {
                Some(_) => {
                    let (input, o) = summary(&cells, &stats)?;
                    Some((engine.render(&input, &o)?, o))
                }
                None => None,
            };
            Ok((cells, stats, drawn))
        },
        || {
            let (cells, stats) =
                attnviz::cpu::pattern::head_patterns_cpu(source, options, patterns)?;
            let drawn = match figure {
                Some(_) => {
                    let (input, o) = summary(&cells, &stats)?;
                    Some((attnviz::render_cpu(&input, &o)?, o))
                }
                None => None,
            };
            Ok((cells, stats, drawn))
        },
    )?;
    if let (Some(path), Some((fig, o))) = (figure, drawn) {
        match o.cell_colors {
            true => attnviz::figure::svg::write_svg(path, &fig, o.colormap)?,
            false => write_png(path, fig.width, fig.height, &fig.rgba)?,
        }
    }
    // (listed as `attnviz heads` lists them; the summary figure above has every head in its place)
    let (listed_cells, listed) = attnviz::figure::rank::listed(&cells, &stats, options.ranking());
    let doc = attnviz::figure::stats_json::heads_doc(
        &listed_cells,
        &listed,
        patterns,
        options.causal,
        options.ranking(),
        stats.len(),
    );
    Ok((doc.to_string(), warning))
}

/// Renders and writes every output asked for. Like the CLI, checks the files are writable
/// before any GPU work, and writes each atomically after.
pub fn render_and_write(
    source: &dyn AttentionSource,
    options: &RenderOptions,
    py: &PyOptions,
) -> Result<Drawn, Error> {
    render_and_write_with(&Given(source), options, py)
}

/// The source made for the backend that draws it: a diff of captures recomputes their
/// attention on the engine ([`attnviz::engine::qk_rows::GpuRows`]), on the CPU by the f64
/// reference, as `attnviz diff` does.
pub trait SourceFor: Sync {
    fn make<'e>(
        &'e self,
        engine: Option<&'e Engine>,
    ) -> Result<Box<dyn AttentionSource + 'e>, Error>;
}

/// A source that is the same on every backend.
struct Given<'a>(&'a dyn AttentionSource);

impl SourceFor for Given<'_> {
    fn make<'e>(&'e self, _: Option<&'e Engine>) -> Result<Box<dyn AttentionSource + 'e>, Error> {
        Ok(Box::new(self.0))
    }
}

/// [`render_and_write`] of the source `make` makes for the backend.
pub fn render_and_write_with(
    make: &dyn SourceFor,
    options: &RenderOptions,
    py: &PyOptions,
) -> Result<Drawn, Error> {
    if let Some(path) = &py.out {
        check_figure_path(path)?;
    }
    if let Some(path) = &py.stats_json {
        check_writable(path)?;
    }
    if let Some(dir) = &py.tiles {
        check_folder(dir)?;
    }
    let (figure, tiles, adapter, warning) = draw(make, options, &py.backend, py.tiles.is_some())?;
    let svg = match py.svg() {
        true => Some(attnviz::figure::svg::svg_string(&figure, options.colormap)?),
        false => None,
    };
    match (&py.out, &svg) {
        (Some(path), Some(svg)) => {
            attnviz::files::write_atomic(path, |w| std::io::Write::write_all(w, svg.as_bytes()))?
        }
        (Some(path), None) => write_png(path, figure.width, figure.height, &figure.rgba)?,
        (None, _) => {}
    }
    if let Some(dir) = &py.tiles {
        write_tiles(dir, &tiles, &figure.plan)?;
    }
    if let Some(path) = &py.stats_json {
        attnviz::figure::stats_json::write_figure_stats(path, &figure, options)?;
    }
    let layout = serde_json_string(&figure, options);
    Ok(Drawn {
        figure,
        adapter,
        warning,
        layout,
        svg,
    })
}

/// `dir/l{l}_h{h}.png` for every tile, as `render --tiles` names them.
fn write_tiles(dir: &Path, tiles: &[Tile], plan: &Plan) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    for t in tiles {
        let path = dir.join(t.file_name(plan));
        write_png(&path, t.width, t.height, &t.rgba)?;
    }
    Ok(())
}

/// The layout document as the CLI's `--layout-json` writes it.
fn serde_json_string(figure: &Figure, options: &RenderOptions) -> String {
    layout_json(figure, options).to_string()
}
