//! The `attnviz` command line: parses options, calls the library, and turns errors into one
//! line on stderr and an exit code (2: bad input or options, 1: environment).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use attnviz::export::{check_writable, write_png};
use attnviz::layout::Theme;
use attnviz::pool::Causal;
use attnviz::qk::synth::QkSpec;
use attnviz::qk::{parse_queries, GpuRows, QkOptions, QkSource};
use attnviz::scale::{ColorScale, Scale};
use attnviz::source::{
    self, write_tensor, AttentionSource, DemoModel, OpenOptions, Pattern, Synth, SynthSpec,
};
use attnviz::{Colormap, DType, Engine, Error, Figure, Gpu, Norm, Reduce, RenderOptions};
use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "attnviz",
    version,
    about = "Transformer attention maps rendered on the GPU"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Render an attention tensor (.npy or .safetensors), or attention recomputed from queries
    /// and keys (--q, --k), as a labelled grid, PNG or SVG.
    Render {
        /// (L,H,Q,K), (H,Q,K) or (Q,K) attention: .npy (<f4, <f2) or .safetensors (F32, F16, BF16).
        #[arg(required_unless_present = "q", conflicts_with = "q")]
        input: Option<PathBuf>,
        #[command(flatten)]
        qk: QkArgs,
        /// Tensor to read from a .safetensors file with several.
        #[arg(long)]
        tensor: Option<String>,
        /// Read INPUT as a raw dump of this shape (L,H,Q,K, or fewer dimensions) ...
        #[arg(long, requires = "dtype")]
        shape: Option<String>,
        /// ... and element type: f32, f16 or bf16.
        #[arg(long, requires = "shape", value_parser = ["f32", "f16", "bf16"])]
        dtype: Option<String>,
        #[command(flatten)]
        out: Output,
        #[command(flatten)]
        style: Style,
        /// Also write every selected head as DIR/l{l}_h{h}.png at native resolution, unlabelled.
        #[arg(long, value_name = "DIR")]
        tiles: Option<PathBuf>,
        /// One token per line (one per key): drawn beside each cell when at most 64, index ticks otherwise.
        #[arg(long, value_name = "FILE")]
        tokens: Option<PathBuf>,
    },
    /// Explore an attention tensor in a window: drag to pan, wheel to zoom, c/n/r to recolour,
    /// 0 to reset, s to save a PNG, q or Esc to quit.
    View {
        #[arg(required_unless_present = "q", conflicts_with = "q")]
        input: Option<PathBuf>,
        #[command(flatten)]
        qk: QkArgs,
        #[arg(long)]
        tensor: Option<String>,
        #[command(flatten)]
        style: Style,
        /// Close after N frames, drawing continuously until then (scripts, tests, benchmarks).
        #[arg(long, value_name = "N")]
        exit_after_frames: Option<u64>,
        /// Write exactly what is on screen to this PNG after the last frame.
        #[arg(long)]
        screenshot: Option<PathBuf>,
        /// Print frame-time statistics and the adapter on exit.
        #[arg(long)]
        stats: bool,
        /// Window size in pixels, WxH (default: the figure, within 1600x1000).
        #[arg(long)]
        size: Option<String>,
        /// One token per line, named in the hover readout.
        #[arg(long)]
        tokens: Option<PathBuf>,
        /// Open in focus mode on this head: L,H (1-based).
        #[arg(long, value_name = "L,H")]
        focus: Option<String>,
        /// Zoom by this factor about the window's centre after opening.
        #[arg(long)]
        zoom: Option<f64>,
        /// Pan by DX,DY window pixels every frame (scripted panning, for measurements).
        #[arg(long, value_name = "DX,DY", allow_hyphen_values = true)]
        pan_per_frame: Option<String>,
        /// Put the cursor at X,Y (window pixels) after opening: its readout shows (scripts).
        #[arg(long, value_name = "X,Y")]
        hover: Option<String>,
    },
    /// Render the built-in synthetic 8-layer × 8-head model (layers 1 and 8, as in the seed figure).
    Demo {
        #[command(flatten)]
        out: Output,
        #[command(flatten)]
        style: Style,
        /// Tokens per head of the demo model.
        #[arg(long, default_value_t = 256)]
        tokens: usize,
    },
    /// Write synthetic long-context attention (.npy, .safetensors, or raw for other extensions).
    Synth {
        /// Output file.
        #[arg(short, long)]
        output: PathBuf,
        /// Tokens per head (queries = keys).
        #[arg(long, default_value_t = 4096)]
        seq: usize,
        #[arg(long, default_value_t = 1)]
        layers: usize,
        #[arg(long, default_value_t = 1)]
        heads: usize,
        #[arg(long, default_value = "f16", value_parser = ["f32", "f16", "bf16"])]
        dtype: String,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Zero above the diagonal (decoder attention).
        #[arg(long)]
        causal: bool,
        /// attention: sinks, columns, local window, block-sparse blocks; hot: one 1.0 entry in 1e-6 noise.
        #[arg(long, default_value = "attention", value_parser = ["attention", "hot"])]
        pattern: String,
        #[arg(long)]
        quiet: bool,
    },
    /// Write synthetic queries and keys (tensors `q` and `k` in one .safetensors file) whose
    /// attention has a sink, sparse sink-like columns and a local window.
    SynthQk {
        #[arg(short, long)]
        output: PathBuf,
        /// Tokens (queries = keys).
        #[arg(long, default_value_t = 4096)]
        seq: usize,
        /// Head dimension.
        #[arg(long, default_value_t = 64)]
        dim: usize,
        #[arg(long, default_value_t = 1)]
        layers: usize,
        #[arg(long, default_value_t = 1)]
        heads: usize,
        /// Key heads (fewer than --heads: grouped-query attention); default: --heads.
        #[arg(long)]
        kv_heads: Option<usize>,
        #[arg(long, default_value = "f16", value_parser = ["f32", "f16", "bf16"])]
        dtype: String,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Compute the attention probabilities of queries and keys (on the GPU, as render pools
    /// them) and write them as a tensor (.npy, .safetensors or raw), block by block.
    Attention {
        #[command(flatten)]
        qk: QkArgs,
        /// Mask keys after each query.
        #[arg(long)]
        causal: bool,
        #[arg(short, long)]
        output: PathBuf,
        #[arg(long, value_enum, default_value_t = Backend::Auto)]
        backend: Backend,
    },
    /// Measure render throughput on synthetic data (generated once, cached), next to the
    /// machine's memcpy and file-read limits.
    Bench {
        /// Small inputs, fewer runs: a smoke test of the benchmark itself.
        #[arg(long)]
        quick: bool,
        /// Also write the results as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Where the synthetic inputs are cached (default: $XDG_CACHE_HOME or ~/.cache, attnviz/bench).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Run only these scenarios (comma-separated), e.g. `--only export-grid,recolor`.
        #[arg(long, value_delimiter = ',', value_parser = clap::builder::PossibleValuesParser::new(BENCH_SCENARIOS))]
        only: Vec<String>,
    },
    /// Print shape, dtype and per-head statistics of an attention tensor.
    Info {
        input: PathBuf,
        #[arg(long)]
        tensor: Option<String>,
        #[arg(long, value_enum, default_value_t = Backend::Auto)]
        backend: Backend,
    },
}

/// Attention recomputed from queries and keys instead of read from a file.
#[derive(Args)]
struct QkArgs {
    /// Queries, (L,H,N,d), (H,N,d) or (N,d), .npy or .safetensors: the attention softmax(QKᵀ·scale)
    /// is recomputed on the GPU at the resolution drawn, never stored.
    #[arg(long, value_name = "FILE")]
    q: Option<PathBuf>,
    /// Keys, with as many heads as Q or fewer (grouped-query attention). Omit when --q is a
    /// .safetensors file holding tensors `q` and `k`.
    #[arg(long, value_name = "FILE", requires = "q")]
    k: Option<PathBuf>,
    /// Score scale before the softmax (default 1/√d).
    #[arg(long, requires = "q")]
    softmax_scale: Option<f32>,
    /// Query rows to compute, 0-based, end excluded: A..B, A.. or ..B.
    #[arg(long, requires = "q", value_name = "A..B")]
    queries: Option<String>,
}

impl QkArgs {
    /// The Q/K source, when --q was given.
    fn open(&self, causal: bool) -> anyhow::Result<Option<QkSource>> {
        let Some(q) = &self.q else { return Ok(None) };
        let options = QkOptions {
            causal,
            softmax_scale: self.softmax_scale,
            queries: self.queries.as_deref().map(parse_queries).transpose()?,
        };
        Ok(Some(QkSource::open(q, self.k.as_deref(), &options)?))
    }
}

#[derive(Args)]
struct Output {
    /// Output figure: .png, or .svg (text, ticks and colorbar as vectors, cells as embedded PNGs).
    #[arg(short, long)]
    output: PathBuf,
    /// Also write each cell's pixel rectangle, layer, head, value range and the colorbar mapping as JSON.
    #[arg(long, value_name = "FILE")]
    layout_json: Option<PathBuf>,
    /// auto: GPU, falling back to the CPU with a warning when no adapter exists.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    backend: Backend,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
struct Style {
    /// Layers to show, 1-based: lists and ranges such as 1,8 or 1-4 (default: all).
    #[arg(long)]
    layers: Option<String>,
    /// Heads to show, 1-based (default: all).
    #[arg(long)]
    heads: Option<String>,
    /// Scale: per head, per layer row, one for the grid, per query row, or none ([0,1] clamped).
    #[arg(long, default_value = "head", value_parser = names(&Norm::ALL.map(Norm::name), Norm::from_name))]
    norm: Norm,
    #[arg(long, default_value = "viridis", value_parser = names(&Colormap::ALL.map(Colormap::name), Colormap::from_name))]
    colormap: Colormap,
    /// How entries that share a pixel combine: max keeps single-key spikes visible.
    #[arg(long, default_value = "max", value_parser = names(&Reduce::ALL.map(Reduce::name), Reduce::from_name))]
    reduce: Reduce,
    /// Cell side in pixels (default 256, or the native size when smaller).
    #[arg(long)]
    cell: Option<u32>,
    /// Leave the colorbar out.
    #[arg(long)]
    no_colorbar: bool,
    /// Curve from normalized value to colour: linear, log, sqrt or gamma:G.
    #[arg(long, default_value = "linear", value_parser = lib_parser(Scale::parse))]
    scale: Scale,
    /// With --scale log: values below this take the bottom colour (default: 1e-6 of each scope's max).
    #[arg(long, value_name = "V")]
    log_floor: Option<f32>,
    /// Limits at these percentiles of each scope's pooled values, e.g. 0,99.5.
    #[arg(long, value_name = "LOW,HIGH", value_parser = lib_parser(ColorScale::parse_clip))]
    clip: Option<[f32; 2]>,
    /// Fixed lower limit (overrides the data's and --clip's).
    #[arg(long, allow_negative_numbers = true)]
    vmin: Option<f32>,
    /// Fixed upper limit.
    #[arg(long, allow_negative_numbers = true)]
    vmax: Option<f32>,
    /// Leave the first K keys (attention sinks) out of the statistics: 0..K. They still render, saturated.
    #[arg(long, value_name = "0..K", value_parser = lib_parser(ColorScale::parse_exclude))]
    exclude_keys: Option<usize>,
    /// A title above the grid.
    #[arg(long)]
    title: Option<String>,
    /// Make the whole figure this many times larger (cells, text, gutters); posters past the
    /// texture limit are drawn in tiles.
    #[arg(long, default_value_t = 1.0, conflicts_with = "dpi")]
    scale_factor: f32,
    /// Resolution as DPI, with 100 DPI the default size (--dpi 300 = --scale-factor 3).
    #[arg(long)]
    dpi: Option<f32>,
    #[arg(long, default_value = "light", value_parser = ["light", "dark"])]
    theme: String,
    /// Transparent background.
    #[arg(long)]
    transparent: bool,
    /// Entries above the diagonal: masked (on: out of the statistics, drawn as background),
    /// kept (off), or masked when every selected head is exactly zero there (auto).
    #[arg(long, default_value = "auto", num_args = 0..=1, default_missing_value = "on",
          value_parser = ["auto", "on", "off"])]
    causal: String,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Backend {
    Auto,
    Gpu,
    Cpu,
}

/// A clap parser from a library parser (its error is the message).
fn lib_parser<T: Clone + Send + Sync + 'static>(
    parse: fn(&str) -> attnviz::Result<T>,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static {
    move |s| parse(s).map_err(|e| e.to_string())
}

/// A clap parser accepting exactly the library's names for an option.
fn names<T: Clone + Send + Sync + 'static>(
    all: &[&'static str],
    from_name: fn(&str) -> Option<T>,
) -> impl clap::builder::TypedValueParser<Value = T> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(all.to_vec())
        .map(move |s: String| from_name(&s).expect("clap only passes listed names"))
}

impl Style {
    fn options(&self) -> RenderOptions {
        RenderOptions {
            layers: self.layers.clone(),
            heads: self.heads.clone(),
            norm: self.norm,
            colormap: self.colormap,
            reduce: self.reduce,
            cell: self.cell,
            colorbar: !self.no_colorbar,
            causal: match self.causal.as_str() {
                "on" => Causal::On,
                "off" => Causal::Off,
                _ => Causal::Auto,
            },
            scale: ColorScale {
                scale: self.scale,
                log_floor: self.log_floor,
                clip: self.clip,
                vmin: self.vmin,
                vmax: self.vmax,
                exclude_keys: self.exclude_keys.unwrap_or(0),
            },
            title: self.title.clone(),
            tokens: None,
            scale_factor: self.dpi.map_or(self.scale_factor, |d| d / 100.0),
            theme: Theme::from_name(&self.theme).expect("clap checked the name"),
            transparent: self.transparent,
            cell_colors: false,
        }
    }
}

/// Reads a token file: one token per line.
fn read_tokens(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    Ok(text.lines().map(str::to_string).collect())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::View { .. }) && std::env::var_os("XDG_RUNTIME_DIR").is_none()
    {
        // Headless commands never talk to a compositor, but Mesa's Wayland support prints
        // "error: XDG_RUNTIME_DIR is invalid" when the variable is unset (containers, CI, ssh),
        // which reads like our own one-line error. Nothing else runs yet, so this is race-free.
        std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    // A panic is a bug, but it still ends as one line and exit code 1, not a backtrace and 101.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("error: internal error: {msg}{at} (please report it)");
    }));
    let result = std::panic::catch_unwind(|| run(cli));
    let Ok(result) = result else {
        return ExitCode::from(1);
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = match e.downcast_ref::<Error>() {
                Some(err) if err.is_input_error() => 2,
                _ => 1,
            };
            eprintln!("error: {}", one_line(&e));
            ExitCode::from(code)
        }
    }
}

/// The error and its causes on one line.
fn one_line(e: &anyhow::Error) -> String {
    let mut s = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
    }
    s.replace('\n', " ")
}

/// Opens the GPU engine for `backend`: `None` means render on the CPU.
fn engine(backend: Backend) -> anyhow::Result<Option<Engine>> {
    match backend {
        Backend::Cpu => Ok(None),
        Backend::Gpu => Ok(Some(Engine::new(Gpu::new()?))),
        Backend::Auto => match Gpu::new() {
            Ok(gpu) => Ok(Some(Engine::new(gpu))),
            Err(e) => {
                eprintln!("warning: {e}; rendering on the CPU");
                Ok(None)
            }
        },
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Render {
            input,
            qk,
            tensor,
            shape,
            dtype,
            out,
            style,
            tiles,
            tokens,
        } => {
            check_writable(&out.output)?;
            let mut options = style.options();
            if let Some(path) = &tokens {
                options.tokens = Some(read_tokens(path)?);
            }
            let src: Box<dyn AttentionSource> =
                match (qk.open(options.causal == Causal::On)?, input) {
                    (Some(qk), _) => Box::new(qk),
                    (None, Some(input)) => match (shape, dtype) {
                        (Some(shape), Some(dtype)) => {
                            let dtype = DType::from_name(&dtype).expect("clap checked the name");
                            Box::new(source::open_raw(
                                &input,
                                &source::parse_shape(&shape)?,
                                dtype,
                            )?)
                        }
                        _ => Box::new(source::open(&input, &OpenOptions { tensor })?),
                    },
                    (None, None) => unreachable!("clap requires INPUT or --q"),
                };
            if let (Some(path), Some(t)) = (&tokens, &options.tokens) {
                let s = src.shape();
                if let Err(e) = attnviz::axes::split_tokens(t, s.queries, s.keys) {
                    let message = e.to_string().trim_start_matches("--tokens: ").to_string();
                    return Err(Error::BadInput {
                        path: path.clone(),
                        message,
                    }
                    .into());
                }
            }
            render_to(src.as_ref(), &options, &out, tiles.as_deref())
        }
        Command::Demo { out, style, tokens } => {
            check_writable(&out.output)?;
            let mut options = style.options();
            if options.layers.is_none() {
                options.layers = Some("1,8".into());
            }
            render_to(
                &DemoModel::new(tokens.clamp(16, 4096)),
                &options,
                &out,
                None,
            )
        }
        Command::Synth {
            output,
            seq,
            layers,
            heads,
            dtype,
            seed,
            causal,
            pattern,
            quiet,
        } => {
            check_writable(&output)?;
            let spec = SynthSpec {
                seq,
                layers,
                heads,
                dtype: DType::from_name(&dtype).expect("clap checked the name"),
                seed,
                causal,
                pattern: if pattern == "hot" {
                    Pattern::Hot
                } else {
                    Pattern::Attention
                },
            };
            let synth = Synth::new(spec)?;
            let bar = ProgressBar::new(quiet, "writing");
            write_tensor(&synth, &output, &|done, total| bar.update(done, total))?;
            bar.finish();
            eprintln!("wrote {} ({})", output.display(), synth.name());
            Ok(())
        }
        Command::View {
            input,
            qk,
            tensor,
            style,
            exit_after_frames,
            screenshot,
            stats,
            size,
            tokens,
            focus,
            zoom,
            pan_per_frame,
            hover,
        } => {
            if let Some(path) = &screenshot {
                check_writable(path)?;
            }
            let render = style.options();
            let src: Box<dyn AttentionSource> = match (qk.open(render.causal == Causal::On)?, input)
            {
                (Some(qk), _) => Box::new(qk),
                (None, Some(input)) => Box::new(source::open(&input, &OpenOptions { tensor })?),
                (None, None) => unreachable!("clap requires INPUT or --q"),
            };
            let size = size
                .map(|s| {
                    s.split_once(['x', 'X'])
                        .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
                        .filter(|&(w, h): &(u32, u32)| w > 0 && h > 0)
                        .ok_or_else(|| {
                            Error::BadOption(format!("--size {s}: expected WxH such as 1280x800"))
                        })
                })
                .transpose()?;
            let pair = |opt: &str, v: &str| -> anyhow::Result<(f64, f64)> {
                v.split_once(',')
                    .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)))
                    .ok_or_else(|| {
                        Error::BadOption(format!("{opt} {v}: expected two numbers such as 3,5"))
                            .into()
                    })
            };
            let focus = focus
                .map(|f| -> anyhow::Result<(usize, usize)> {
                    let (l, h) = pair("--focus", &f)?;
                    if l < 1.0 || h < 1.0 || l.fract() != 0.0 || h.fract() != 0.0 {
                        return Err(Error::BadOption(format!(
                            "--focus {f}: layer and head are 1-based integers"
                        ))
                        .into());
                    }
                    Ok((l as usize - 1, h as usize - 1))
                })
                .transpose()?;
            let pan_per_frame = pan_per_frame
                .map(|p| pair("--pan-per-frame", &p))
                .transpose()?;
            let hover = hover.map(|p| pair("--hover", &p)).transpose()?;
            if zoom.is_some_and(|z| !(z.is_finite() && z > 0.0)) {
                return Err(Error::BadOption("--zoom must be a positive number".into()).into());
            }
            let options = attnviz::viewer::ViewerOptions {
                hover,
                focus,
                zoom,
                pan_per_frame,
                render,
                exit_after_frames,
                screenshot,
                size,
                tokens: tokens.map(|p| read_tokens(&p)).transpose()?,
            };
            let report = attnviz::viewer::run(src.as_ref(), options)?;
            if stats {
                let (min, median, p99) = report.summary();
                println!("adapter: {}", report.adapter);
                println!("frames:  {}", report.frames);
                println!("frame time: min {min:.2} ms, median {median:.2} ms, p99 {p99:.2} ms");
                println!("first frame: {:.3} s after start", report.first_frame);
                match report.resident {
                    Some(t) => println!("figure read and shown: {t:.3} s after start"),
                    None => println!("figure read and shown: not before the window closed"),
                }
                match report.last_detail {
                    Some(t) => println!(
                        "detail: {} region(s) pooled from the source, the last {:.3} s after it was asked for",
                        report.details, t
                    ),
                    None => println!("detail: none needed or none arrived"),
                }
                if let Some(t) = report.first_detail {
                    println!("first detail shown: {t:.3} s after start");
                }
            }
            Ok(())
        }
        Command::SynthQk {
            output,
            seq,
            dim,
            layers,
            heads,
            kv_heads,
            dtype,
            seed,
        } => {
            check_writable(&output)?;
            let spec = QkSpec {
                layers,
                heads,
                kv_heads: kv_heads.unwrap_or(heads),
                seq,
                dim,
                seed,
            };
            spec.write(
                &output,
                DType::from_name(&dtype).expect("clap checked the name"),
            )?;
            eprintln!(
                "wrote {} (q: {layers}x{heads}x{seq}x{dim}, k: {layers}x{}x{seq}x{dim}, {dtype})",
                output.display(),
                spec.kv_heads
            );
            Ok(())
        }
        Command::Attention {
            qk,
            causal,
            output,
            backend,
        } => {
            check_writable(&output)?;
            let src = qk.open(causal)?.expect("clap requires --q");
            let engine = engine(backend)?;
            let bar = ProgressBar::new(false, "computing");
            let progress = |done, total| bar.update(done, total);
            match &engine {
                Some(e) => write_tensor(&GpuRows::new(e, &src), &output, &progress)?,
                None => write_tensor(&src, &output, &progress)?,
            }
            bar.finish();
            eprintln!("wrote {} ({})", output.display(), src.shape());
            Ok(())
        }
        Command::Bench {
            quick,
            json,
            data,
            only,
        } => bench(quick, json.as_deref(), data, &only),
        Command::Info {
            input,
            tensor,
            backend,
        } => {
            let src = source::open(&input, &OpenOptions { tensor })?;
            info(&src, backend)
        }
    }
}

fn render_to(
    src: &dyn AttentionSource,
    options: &RenderOptions,
    out: &Output,
    tiles: Option<&Path>,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let svg = out
        .output
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("svg"));
    let mut options = options.clone();
    options.cell_colors = svg;
    let options = &options;
    if let Some(path) = &out.layout_json {
        check_writable(path)?;
    }
    let mut engine = engine(out.backend)?;
    let bar = std::sync::Arc::new(ProgressBar::new(out.quiet, "pooling"));
    if let Some(e) = &mut engine {
        let b = bar.clone();
        e.progress = Some(Box::new(move |done, total| b.update(done, total)));
    }
    let figure: Figure = match &engine {
        Some(e) => e.render(src, options)?,
        None => attnviz::render_cpu(src, options)?,
    };
    bar.finish();
    if svg {
        attnviz::svg::write_svg(&out.output, &figure, options.colormap)?;
    } else {
        write_png(&out.output, figure.width, figure.height, &figure.rgba)?;
    }
    if let Some(path) = &out.layout_json {
        attnviz::metadata::write_layout_json(path, &figure, options)?;
    }
    if let Some(dir) = tiles {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create the tiles folder", dir.display()))?;
        let tiles = match &engine {
            Some(e) => e.tiles(src, &figure, options)?,
            None => attnviz::tiles_cpu(src, &figure, options)?,
        };
        for t in &tiles {
            let path = dir.join(format!("l{}_h{}.png", t.layer + 1, t.head + 1));
            write_png(&path, t.width, t.height, &t.rgba)?;
        }
    }
    eprintln!(
        "wrote {} ({}x{}, {} cells{}, {}) in {:.2} s",
        out.output.display(),
        figure.width,
        figure.height,
        figure.plan.cells.len(),
        if figure.causal && options.causal == Causal::Auto {
            ", causal mask detected"
        } else {
            ""
        },
        engine
            .as_ref()
            .map_or("CPU".to_string(), |e| e.gpu.info.name.clone()),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn info(src: &dyn AttentionSource, backend: Backend) -> anyhow::Result<()> {
    let s = src.shape();
    println!("file:    {}", src.name());
    println!("shape:   {} (layers, heads, queries, keys)", s);
    println!("dtype:   {}", src.dtype().name());
    let engine = engine(backend)?;
    println!(
        "adapter: {}",
        engine
            .as_ref()
            .map_or("none (CPU reference)".to_string(), |e| e.gpu.describe())
    );
    let stats = match &engine {
        Some(e) => e.stats(src)?,
        None => {
            let cells: Vec<_> = (0..s.layers)
                .flat_map(|l| (0..s.heads).map(move |h| (l, h)))
                .collect();
            let g = attnviz::geometry::CellGeometry::new(s.queries, s.keys, Some(64))?;
            attnviz::cpu::pool_cells(src, &cells, g, Default::default())?
                .iter()
                .map(|p| attnviz::cpu::head_stats(&p.accum))
                .collect()
        }
    };
    println!(
        "{:>5} {:>5} {:>12} {:>12} {:>12}  note",
        "layer", "head", "min", "max", "mean"
    );
    for (i, st) in stats.iter().enumerate() {
        let (l, h) = (i / s.heads + 1, i % s.heads + 1);
        match st.range() {
            Some((lo, hi)) => {
                let note = if st.bad_pixels > 0 {
                    "has non-finite values"
                } else {
                    ""
                };
                println!(
                    "{l:>5} {h:>5} {lo:>12.6e} {hi:>12.6e} {:>12.6e}  {note}",
                    st.mean().unwrap_or(0.0)
                );
            }
            None => println!(
                "{l:>5} {h:>5} {:>12} {:>12} {:>12}  no finite value: drawn in the bad colour",
                "-", "-", "-"
            ),
        }
    }
    Ok(())
}

/// A progress bar on stderr for work longer than about a second, when stderr is a terminal and
/// `--quiet` is not given; silent otherwise.
struct ProgressBar {
    enabled: bool,
    start: Instant,
    what: &'static str,
    bar: std::sync::OnceLock<indicatif::ProgressBar>,
}

impl ProgressBar {
    fn new(quiet: bool, what: &'static str) -> ProgressBar {
        use std::io::IsTerminal;
        ProgressBar {
            enabled: !quiet && std::io::stderr().is_terminal(),
            start: Instant::now(),
            what,
            bar: std::sync::OnceLock::new(),
        }
    }

    fn update(&self, done: u64, total: u64) {
        if !self.enabled || (self.bar.get().is_none() && self.start.elapsed().as_secs_f64() < 1.0) {
            return;
        }
        let bar = self.bar.get_or_init(|| {
            let b = indicatif::ProgressBar::new(total);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:40}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            b.set_message(self.what);
            b
        });
        bar.set_position(done);
    }

    fn finish(&self) {
        if let Some(b) = self.bar.get() {
            b.finish_and_clear();
        }
    }
}

use attnviz::bench::{measure, memcpy_gbps, read_seconds, Sample};

/// The scenarios of `attnviz bench`, in the order they run.
const BENCH_SCENARIOS: [&str; 8] = [
    "export-grid",
    "export-long",
    "recolor",
    "frame",
    "upload",
    "pool-resident",
    "qk-long",
    "qk-model",
];

/// `attnviz bench`: fixed scenarios, warm-up then several runs each, one table row per scenario.
fn bench(
    quick: bool,
    json: Option<&Path>,
    data: Option<PathBuf>,
    only: &[String],
) -> anyhow::Result<()> {
    let want = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    let dir = data.unwrap_or_else(|| {
        std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(std::env::temp_dir)
            .join("attnviz/bench")
    });
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("{}: cannot create the bench folder", dir.display()))?;
    let (grid_seq, long_seq, runs, frames) = if quick {
        (512, 8192, 3, 20)
    } else {
        (2048, 32768, 5, 60)
    };
    let input = |name: &str, spec: SynthSpec| -> anyhow::Result<PathBuf> {
        let path = dir.join(name);
        if !path.exists() {
            eprintln!("generating {} (once; cached)", path.display());
            let synth = Synth::new(spec)?;
            let bar = ProgressBar::new(false, "generating");
            write_tensor(&synth, &path, &|d, t| bar.update(d, t))?;
            bar.finish();
        }
        Ok(path)
    };
    let spec = |seq, layers, heads, dtype| SynthSpec {
        seq,
        layers,
        heads,
        dtype,
        seed: 1,
        causal: false,
        pattern: Pattern::Attention,
    };
    // Inputs are generated (once) only for the scenarios that read them.
    let grid_path = (want("export-grid") || want("recolor") || want("frame"))
        .then(|| {
            input(
                &format!("grid-8x8x{grid_seq}-f32.npy"),
                spec(grid_seq, 8, 8, DType::F32),
            )
        })
        .transpose()?;
    let long_path = want("export-long")
        .then(|| {
            input(
                &format!("long-{long_seq}-f16.npy"),
                spec(long_seq, 1, 1, DType::F16),
            )
        })
        .transpose()?;
    let open = |p: &Option<PathBuf>| -> anyhow::Result<Option<Box<dyn AttentionSource>>> {
        Ok(match p {
            Some(p) => Some(Box::new(source::open(p, &OpenOptions::default())?)),
            None => None,
        })
    };
    let (grid, long) = (open(&grid_path)?, open(&long_path)?);
    let len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);

    let engine = Engine::new(Gpu::new()?);
    let memcpy = memcpy_gbps();
    let out = dir.join("bench-out.png");
    let mut rows: Vec<(Sample, Option<f64>)> = Vec::new();

    let grid_opts = RenderOptions::default();
    let long_opts = RenderOptions {
        cell: Some(1024),
        ..Default::default()
    };
    // One figure from a file to a PNG per run, next to reading the file once.
    let export = |name: &str,
                  path: &Path,
                  src: &dyn AttentionSource,
                  options: &RenderOptions,
                  heads: usize|
     -> anyhow::Result<(Sample, f64)> {
        let cat = cat_seconds(path)?;
        let sample = measure(name, len(path), heads, runs, false, || {
            let f = engine.render(src, options)?;
            write_png(&out, f.width, f.height, &f.rgba)
        })?;
        Ok((sample, cat))
    };
    let mut cat_grid = None;
    if let (true, Some(path), Some(grid)) = (want("export-grid"), &grid_path, &grid) {
        let (sample, cat) = export("export-grid", path, grid.as_ref(), &grid_opts, 64)?;
        cat_grid = Some(cat);
        rows.push((sample, Some(cat)));
    }
    let mut cat_long = None;
    if let (Some(path), Some(long)) = (&long_path, &long) {
        let (sample, cat) = export("export-long", path, long.as_ref(), &long_opts, 1)?;
        cat_long = Some(cat);
        rows.push((sample, Some(cat)));
    }
    if let (true, Some(grid)) = (want("recolor") || want("frame"), &grid) {
        // The interactive paths, on resident pooled data of the grid.
        let mut scene = engine.scene(grid.as_ref(), &grid_opts)?;
        if want("recolor") {
            let mut i = 0usize;
            rows.push((
                measure("recolor", 0, 64, frames, true, || {
                    i += 1;
                    let norm = [Norm::Head, Norm::Layer, Norm::Global][i % 3];
                    engine.recolor(
                        &mut scene,
                        norm,
                        Reduce::Max,
                        Colormap::ALL[i % Colormap::ALL.len()],
                    )?;
                    engine.gpu.wait()
                })?,
                None,
            ));
        }
        if want("frame") {
            rows.push((bench_frame(&engine, &scene, frames)?, None));
        }
    }
    if want("upload") {
        let upload_bytes: u64 = if quick { 256 << 20 } else { 1 << 30 };
        let mut upload = attnviz::pool::UploadBench::new(&engine.gpu);
        rows.push((
            measure("upload", upload_bytes, 0, runs, false, || {
                upload.run(&engine.gpu, upload_bytes)
            })?,
            None,
        ));
    }
    if want("pool-resident") {
        // The grid's pooling alone, on data already in device memory: what the GPU sustains
        // without the host-to-device copy (the same as export-grid on unified memory).
        rows.push((
            measure(
                "pool-resident",
                (64 * grid_seq * grid_seq * 4) as u64,
                64,
                runs,
                false,
                || {
                    engine
                        .resident_pool_seconds(64, grid_seq, grid_seq, 256)
                        .map(|_| ())
                },
            )?,
            None,
        ));
    }
    let qk_seq = if quick { 2048 } else { 32768 };
    let mut qk_gflops = None;
    if want("qk-long") {
        let sample = bench_qk(&engine, qk_seq, &long_opts, &out)?;
        let flops = 2.0 * 4.0 * (qk_seq as f64).powi(2) * 64.0;
        qk_gflops = Some(flops / sample.median() / 1e9);
        rows.push((sample, None));
    }
    let mut qk_model = None;
    if want("qk-model") {
        let (sample, line) = bench_qk_model(&engine, quick, &out)?;
        qk_model = Some(line);
        rows.push((sample, None));
    }
    let _ = std::fs::remove_file(&out);

    println!("adapter: {}", engine.gpu.describe());
    println!("memcpy:  {memcpy:.2} GB/s (this machine, measured in this run)");
    let inputs: Vec<String> = [(&grid_path, cat_grid), (&long_path, cat_long)]
        .into_iter()
        .filter_map(|(path, cat)| {
            let path = path.as_ref()?;
            let cat = cat.map_or(String::new(), |c| format!(", cat {c:.3} s"));
            let gib = len(path) as f64 / (1u64 << 30) as f64;
            Some(format!("{} ({gib:.2} GiB{cat})", path.display()))
        })
        .collect();
    if !inputs.is_empty() {
        println!("inputs:  {}", inputs.join(", "));
    }
    println!();
    println!(
        "| scenario | input | median | min | GB/s | of memcpy | heads/s | ms/frame | fps | × cat |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut json_rows = Vec::new();
    for (s, cat) in &rows {
        let (med, min) = (s.median(), s.min());
        let gbps = if s.input_bytes > 0 {
            format!("{:.2}", s.gbps())
        } else {
            "-".into()
        };
        let frac = if s.input_bytes > 0 {
            format!("{:.0}%", 100.0 * s.gbps() / memcpy)
        } else {
            "-".into()
        };
        let heads = if s.heads > 0 && !s.per_frame {
            format!("{:.1}", s.heads as f64 / med)
        } else {
            "-".into()
        };
        let (ms, fps) = if s.per_frame {
            (format!("{:.2}", med * 1e3), format!("{:.0}", 1.0 / med))
        } else {
            ("-".into(), "-".into())
        };
        let vs_cat = cat.map_or("-".into(), |c| format!("{:.1}", med / c));
        let size = if s.input_bytes > 0 {
            format!("{:.2} GiB", s.input_bytes as f64 / (1u64 << 30) as f64)
        } else {
            "-".into()
        };
        println!("| {} | {size} | {:.3} s | {:.3} s | {gbps} | {frac} | {heads} | {ms} | {fps} | {vs_cat} |", s.name, med, min);
        json_rows.push(format!(
            "{{\"scenario\":\"{}\",\"input_bytes\":{},\"median_s\":{med:.6},\"min_s\":{min:.6},\"runs\":{},\"cat_s\":{}}}",
            s.name, s.input_bytes, s.runs.len(), cat.map_or("null".into(), |c| format!("{c:.6}"))
        ));
    }
    if let Some(path) = json {
        let body = format!(
            "{{\"adapter\":{:?},\"memcpy_gbps\":{memcpy:.3},\"quick\":{quick},\"qk_long_gflops\":{},\"scenarios\":[{}]}}\n",
            engine.gpu.describe(),
            qk_gflops.map_or("null".into(), |g| format!("{g:.3}")),
            json_rows.join(",")
        );
        attnviz::export::write_atomic(path, |w| std::io::Write::write_all(w, body.as_bytes()))?;
    }
    if let Some(gflops) = qk_gflops {
        println!();
        println!(
            "qk-long: {qk_seq} tokens, d = 64, one head to a 1024-px cell: {gflops:.1} GFLOP/s \
             (nominal: 4·N²·d flops per pass, two passes, as counted before the one-pass path; \
             it computes each score once, 2·N²·d)"
        );
    }
    if let Some(line) = qk_model {
        println!("{line}");
    }
    Ok(())
}

/// The `qk-model` scenario: whole figures of a model's layers recomputed from Q and K (GQA
/// 4:1, causal, d = 128; `--quick`: one layer of 2048 tokens), until three runs or a minute.
/// Returns the sample and its GFLOP/s line (2·d flops per visible score, counted once).
fn bench_qk_model(engine: &Engine, quick: bool, out: &Path) -> anyhow::Result<(Sample, String)> {
    let (layers, seq) = if quick { (1, 2048) } else { (4, 8192) };
    let (heads, kv_heads, dim) = (8, 2, 128);
    let spec = QkSpec {
        layers,
        heads,
        kv_heads,
        seq,
        dim,
        seed: 1,
    };
    let (q, k) = spec.generate()?;
    let tensor = |name: &str, h: usize, v: Vec<f32>| -> anyhow::Result<Box<dyn AttentionSource>> {
        let shape = attnviz::Shape {
            layers,
            heads: h,
            queries: seq,
            keys: dim,
        };
        let bytes = bytemuck::cast_slice(&v).to_vec();
        Ok(Box::new(source::ArraySource::new(
            name,
            shape,
            DType::F32,
            bytes,
        )?))
    };
    let qk = QkSource::new(
        tensor("q", heads, q)?,
        tensor("k", kv_heads, k)?,
        &QkOptions {
            causal: true,
            ..Default::default()
        },
    )?;
    let options = RenderOptions {
        cell: Some(256),
        causal: Causal::On,
        ..Default::default()
    };
    let mut runs = Vec::new();
    let start = Instant::now();
    while runs.len() < 3 && (runs.is_empty() || start.elapsed().as_secs() < 60) {
        let t = Instant::now();
        let f = engine.render(&qk, &options)?;
        write_png(out, f.width, f.height, &f.rgba)?;
        runs.push(t.elapsed().as_secs_f64());
    }
    let n = (layers * heads) as f64;
    let sample = Sample {
        name: "qk-model".into(),
        input_bytes: 0,
        heads: layers * heads,
        runs,
        per_frame: false,
    };
    let visible = seq as f64 * (seq as f64 + 1.0) / 2.0;
    let gflops = n * visible * 2.0 * dim as f64 / sample.median() / 1e9;
    let line = format!(
        "qk-model: {layers} layers x {heads} heads ({kv_heads} KV heads), {seq} tokens, d = {dim}, \
         causal, 256-px cells: {gflops:.1} GFLOP/s, {:.2} heads/s (2·d flops per visible score)",
        n / sample.median()
    );
    Ok((sample, line))
}

/// The `cat FILE >/dev/null` baseline: the fastest of three reads after a warming one (a
/// single read varies by tens of percent on a shared machine).
fn cat_seconds(path: &Path) -> anyhow::Result<f64> {
    read_seconds(path)?;
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        best = best.min(read_seconds(path)?);
    }
    Ok(best)
}

/// The `frame` scenario: the grid's scene drawn into a 1920×1080 target, per frame.
fn bench_frame(engine: &Engine, scene: &attnviz::Scene, frames: usize) -> anyhow::Result<Sample> {
    let target = engine.gpu.device.create_texture(&wgpu::TextureDescriptor {
        label: Some("attnviz.bench.frame"),
        size: wgpu::Extent3d {
            width: 1920,
            height: 1080,
            depth_or_array_layers: 1,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: wgpu::TextureFormat::Rgba8Unorm,
        usage: wgpu::TextureUsages::RENDER_ATTACHMENT,
        view_formats: &[],
    });
    let view = target.create_view(&Default::default());
    Ok(measure("frame", 0, 64, frames, true, || {
        engine.draw(scene, &view, (1920, 1080))?;
        engine.gpu.wait()
    })?)
}

/// The `qk-long` scenario: whole renders of one head recomputed from Q and K, until three
/// runs or a minute, whichever comes first (a software adapter takes minutes per run).
fn bench_qk(
    engine: &Engine,
    seq: usize,
    options: &RenderOptions,
    out: &Path,
) -> anyhow::Result<Sample> {
    let source = |seq| -> anyhow::Result<QkSource> {
        let spec = QkSpec {
            layers: 1,
            heads: 1,
            kv_heads: 1,
            seq,
            dim: 64,
            seed: 1,
        };
        let (q, k) = spec.generate()?;
        let shape = attnviz::Shape {
            layers: 1,
            heads: 1,
            queries: seq,
            keys: 64,
        };
        let tensor = |name: &str, v: Vec<f32>| -> anyhow::Result<Box<dyn AttentionSource>> {
            let bytes = bytemuck::cast_slice(&v).to_vec();
            Ok(Box::new(source::ArraySource::new(
                name,
                shape,
                DType::F32,
                bytes,
            )?))
        };
        Ok(QkSource::new(
            tensor("q", q)?,
            tensor("k", k)?,
            &QkOptions::default(),
        )?)
    };
    // Warm the pipelines on a small head first.
    engine.render(&source(256)?, options)?;
    let qk = source(seq)?;
    let mut runs = Vec::new();
    let start = Instant::now();
    while runs.len() < 3 && (runs.is_empty() || start.elapsed().as_secs() < 60) {
        let t = Instant::now();
        let f = engine.render(&qk, options)?;
        write_png(out, f.width, f.height, &f.rgba)?;
        runs.push(t.elapsed().as_secs_f64());
    }
    Ok(Sample {
        name: "qk-long".into(),
        input_bytes: 0,
        heads: 1,
        runs,
        per_frame: false,
    })
}
