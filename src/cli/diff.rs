//! `attnviz diff A B`: the difference of two inputs of one shape, with diff's defaults (RdBu_r,
//! signed-extreme pooling, symmetric about `--center` or 0 per `--norm` scope) and every render
//! option. A and B are attention files, or Q/K captures (`.safetensors` with tensors `q` and
//! `k`, as `attnviz.capture` writes them): two prompts, two checkpoints, a model before and
//! after KV compression, at context lengths no attention file reaches.

use std::path::Path;

use attnviz::engine::qk_rows::GpuRows;
use attnviz::files::check_figure_path;
use attnviz::source::qk::{QkOptions, QkSource};
use attnviz::source::safetensors::is_capture;
use attnviz::source::DiffSource;
use attnviz::{AttentionSource, Colormap, Engine, Reduce, RenderOptions};

use super::args::{DiffArgs, StoredArgs, Style};
use super::options::read_tokens;
use super::render::{check_tokens, render_to};

/// One side of the difference as opened.
enum Input {
    File(Box<dyn AttentionSource>),
    Qk(QkSource),
}

pub fn diff(args: &DiffArgs) -> anyhow::Result<()> {
    check_figure_path(&args.out.output)?;
    let mut options = diff_options(&args.style);
    // (--sort-by ranks the heads by the statistics of their differences, as --sink-keys and
    // --window define them)
    let wanted = options.ranking().ranks();
    options.patterns = args
        .patterns
        .for_figure(wanted, "diff", "--sort-by or --pattern")?;
    if let Some(path) = &args.tokens {
        options.tokens = Some(read_tokens(path)?);
    }
    let (a, b) = (open(&args.a, args)?, open(&args.b, args)?);
    // Captures are recomputed on the GPU, block by block, when there is one (the probabilities
    // are never stored); on the CPU backend, by the f64 reference.
    let any_qk = matches!(a, Input::Qk(_)) || matches!(b, Input::Qk(_));
    let engine = if any_qk {
        args.out.backend.engine()?
    } else {
        None
    };
    let src = DiffSource::new(side(&a, engine.as_ref()), side(&b, engine.as_ref()))?;
    if let (Some(path), Some(tokens)) = (&args.tokens, &options.tokens) {
        check_tokens(path, tokens, &src)?;
    }
    render_to(&src, &options, &args.out, args.tiles.as_deref())?;
    Ok(())
}

/// A capture when the file is a `.safetensors` holding tensors `q` and `k` (and no --tensor
/// was asked for), else an attention tensor as `render` reads it.
fn open(path: &Path, args: &DiffArgs) -> anyhow::Result<Input> {
    if args.tensor.is_none() && is_capture(path) {
        return Ok(Input::Qk(QkSource::open(
            path,
            None,
            &QkOptions::default(),
        )?));
    }
    let stored = StoredArgs {
        tensor: args.tensor.clone(),
        shape: None,
        dtype: None,
    };
    Ok(Input::File(stored.open(path)?))
}

/// The source of one side: a file as read, a capture's probabilities recomputed on the GPU
/// (or by the CPU reference).
fn side<'s>(input: &'s Input, engine: Option<&'s Engine>) -> Box<dyn AttentionSource + 's> {
    match (input, engine) {
        (Input::File(f), _) => Box::new(f.as_ref()),
        (Input::Qk(q), Some(e)) => Box::new(GpuRows::new(e, q)),
        (Input::Qk(q), None) => Box::new(q),
    }
}

/// Render options with `diff`'s defaults where the flags leave them open.
fn diff_options(style: &Style) -> RenderOptions {
    let mut options = style.options();
    options.colormap = style.colormap.unwrap_or(Colormap::RdBuR);
    options.reduce = style.reduce.unwrap_or(Reduce::Extreme);
    options.scale.symmetric = true;
    options.scale.label = Some("A − B".into());
    options
}
