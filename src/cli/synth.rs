//! The commands that write tensors rather than figures: synthetic attention (`synth`),
//! synthetic queries and keys (`synth-qk`), and attention computed from Q and K (`attention`).
//! Each streams its output block by block, so sizes past memory work.

use attnviz::engine::qk_rows::GpuRows;
use attnviz::files::{check_writable, shown};
use attnviz::source::qk_synth::QkSpec;
use attnviz::source::{
    check_tensor_path, write_tensor, AttentionSource, Pattern, Synth, SynthSpec,
};
use attnviz::DType;

use super::args::{AttentionArgs, SynthArgs, SynthQkArgs};
use super::progress::ProgressBar;

/// `attnviz synth`.
pub fn synth(args: &SynthArgs) -> anyhow::Result<()> {
    check_tensor_path(&args.output)?;
    let spec = SynthSpec {
        seq: args.seq,
        layers: args.layers,
        heads: args.heads,
        dtype: DType::from_name(&args.dtype).expect("clap checked the name"),
        seed: args.seed,
        causal: args.causal,
        pattern: match args.pattern.as_str() {
            "hot" => Pattern::Hot,
            "kinds" => Pattern::Kinds,
            _ => Pattern::Attention,
        },
    };
    let synth = Synth::new(spec)?;
    let bar = ProgressBar::new(args.quiet, "writing");
    write_tensor(&synth, &args.output, &|done, total| bar.update(done, total))?;
    bar.finish();
    eprintln!("wrote {} ({})", shown(&args.output), synth.name());
    Ok(())
}

/// `attnviz synth-qk`.
pub fn synth_qk(args: &SynthQkArgs) -> anyhow::Result<()> {
    check_writable(&args.output)?;
    let spec = QkSpec {
        layers: args.layers,
        heads: args.heads,
        kv_heads: args.kv_heads.unwrap_or(args.heads),
        seq: args.seq,
        dim: args.dim,
        seed: args.seed,
    };
    spec.write(
        &args.output,
        DType::from_name(&args.dtype).expect("clap checked the name"),
    )?;
    let SynthQkArgs {
        output,
        layers,
        heads,
        seq,
        dim,
        dtype,
        ..
    } = args;
    eprintln!(
        "wrote {} (q: {layers}x{heads}x{seq}x{dim}, k: {layers}x{}x{seq}x{dim}, {dtype})",
        shown(output),
        spec.kv_heads
    );
    Ok(())
}

/// `attnviz attention`: the probabilities render would pool, on the GPU unless `--backend cpu`
/// (or no adapter) leaves the CPU reference to compute them.
pub fn attention(args: &AttentionArgs) -> anyhow::Result<()> {
    check_tensor_path(&args.output)?;
    let src = args.qk.open(args.causal)?.expect("clap requires --q");
    let engine = args.backend.engine()?;
    let bar = ProgressBar::new(false, "computing");
    let progress = |done, total| bar.update(done, total);
    match &engine {
        Some(e) => write_tensor(&GpuRows::new(e, &src), &args.output, &progress)?,
        None => write_tensor(&src, &args.output, &progress)?,
    }
    bar.finish();
    eprintln!("wrote {} ({})", shown(&args.output), src.shape());
    Ok(())
}
