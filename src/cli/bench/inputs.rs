//! The synthetic inputs of `attnviz bench`: written once into a cache folder and reused, so
//! that reruns time the renderer rather than the generator, and the `cat` baseline reads the
//! same file the render does.

use std::path::{Path, PathBuf};

use anyhow::Context;
use attnviz::source::{self, write_tensor, OpenOptions, Pattern, Synth, SynthSpec};
use attnviz::{AttentionSource, DType};

use super::scenarios::{Results, Selection};
use super::Sizes;
use crate::cli::progress::ProgressBar;

/// One cached input file, opened.
pub struct Input {
    pub path: PathBuf,
    pub source: Box<dyn AttentionSource>,
}

/// The inputs the chosen scenarios read; `None` where no chosen scenario reads it.
pub struct Inputs {
    /// 8 layers × 8 heads, f32 (export-grid, export-grid-cli, stats-grid, recolor, frame).
    pub grid: Option<Input>,
    /// One long head, f16 (export-long).
    pub long: Option<Input>,
    /// A whole model at short context, f16: 32 layers × 32 heads of 256 tokens (export-model;
    /// `--quick`: 8 × 8).
    pub model: Option<Input>,
}

impl Inputs {
    /// Generates the missing inputs of the chosen scenarios (only those: a full-size grid
    /// is a gigabyte), then opens them.
    pub fn prepare(dir: &Path, sizes: &Sizes, want: &Selection) -> anyhow::Result<Inputs> {
        let grid_seq = sizes.grid_seq;
        let grid = [
            "export-grid",
            "export-grid-cli",
            "stats-grid",
            "recolor",
            "frame",
        ]
        .into_iter()
        .any(|s| want.wants(s))
        .then(|| {
            generated(
                dir,
                &format!("grid-8x8x{grid_seq}-f32.npy"),
                spec(grid_seq, 8, 8, DType::F32),
            )
        })
        .transpose()?;
        let long_seq = sizes.long_seq;
        let long = want
            .wants("export-long")
            .then(|| {
                generated(
                    dir,
                    &format!("long-{long_seq}-f16.npy"),
                    spec(long_seq, 1, 1, DType::F16),
                )
            })
            .transpose()?;
        let side = if sizes.quick { 8 } else { 32 };
        let model = want
            .wants("export-model")
            .then(|| {
                generated(
                    dir,
                    &format!("model-{side}x{side}x{MODEL_SEQ}-f16.npy"),
                    spec(MODEL_SEQ, side, side, DType::F16),
                )
            })
            .transpose()?;
        Ok(Inputs {
            grid: grid.map(open).transpose()?,
            long: long.map(open).transpose()?,
            model: model.map(open).transpose()?,
        })
    }

    /// Each input with its `cat` time, where an export scenario measured one (the report's
    /// `inputs:` line).
    pub fn with_cat(&self, results: &Results) -> Vec<(&Path, Option<f64>)> {
        [
            (&self.grid, results.grid_cat),
            (&self.long, results.long_cat),
            (&self.model, results.model_cat),
        ]
        .into_iter()
        .filter_map(|(input, cat)| Some((input.as_ref()?.path.as_path(), cat)))
        .collect()
    }
}

/// Tokens of export-model's and qk-short's heads: a short prompt, each head drawn at its own
/// width (the default cell), a pixel a score.
pub const MODEL_SEQ: usize = 256;

/// The cache folder, created: `--data`, else `$XDG_CACHE_HOME` or `~/.cache` (the temporary
/// folder without either), then `attnviz/bench`.
pub fn cache_dir(data: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let dir = data.unwrap_or_else(|| {
        std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(std::env::temp_dir)
            .join("attnviz/bench")
    });
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("{}: cannot create the bench folder", dir.display()))?;
    Ok(dir)
}

/// `dir/name`, written from `spec` unless an earlier run left it there.
fn generated(dir: &Path, name: &str, spec: SynthSpec) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    if !path.exists() {
        eprintln!("generating {} (once; cached)", path.display());
        let synth = Synth::new(spec)?;
        let bar = ProgressBar::new(false, "generating");
        write_tensor(&synth, &path, &|d, t| bar.update(d, t))?;
        bar.finish();
    }
    Ok(path)
}

/// Every bench input has the same pattern and seed: only its size differs.
fn spec(seq: usize, layers: usize, heads: usize, dtype: DType) -> SynthSpec {
    SynthSpec {
        seq,
        layers,
        heads,
        dtype,
        seed: 1,
        causal: false,
        pattern: Pattern::Attention,
    }
}

fn open(path: PathBuf) -> anyhow::Result<Input> {
    let source = Box::new(source::open(&path, &OpenOptions::default())?);
    Ok(Input { path, source })
}

/// The file's size in bytes (0 if it cannot be read: the table then shows no throughput).
pub fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}
