//! The clap schema: every subcommand, flag and help line of `attnviz`. Only declarations live
//! here, so `attnviz --help` can be read off one file; turning the values into library options
//! is [`super::options`]'s job.

use std::path::PathBuf;

use attnviz::color::scale::{ColorScale, Scale};
use attnviz::figure::rank::SortKey;
use attnviz::source::qk::Values;
use attnviz::{Colormap, Norm, Reduce};
use clap::{Args, Parser, Subcommand, ValueEnum};

use super::bench::SCENARIOS;

#[derive(Parser)]
#[command(
    name = "attnviz",
    version,
    about = "Transformer attention maps rendered on the GPU"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Each variant's doc comment is its line in `attnviz --help` (and the head of its own help).
#[derive(Subcommand)]
pub enum Command {
    /// Render an attention tensor (.npy or .safetensors), or attention recomputed from queries
    /// and keys (--q, --k), as a labelled grid, PNG or SVG.
    Render(RenderArgs),
    /// Render the difference A − B of two inputs of the same shape, computed on the GPU as
    /// the inputs stream: RdBu_r, symmetric about 0 per head, signed-extreme pooling by default.
    // (the shared style's --symmetric is always on here: not offered)
    #[command(mut_arg("symmetric", |a| a.hide(true)))]
    Diff(DiffArgs),
    /// Explore an attention tensor in a window: drag to pan, wheel to zoom, c/n/r to recolour,
    /// o to order the heads by a statistic, p to show one pattern label's heads, 0 to reset, s
    /// to save a PNG, q or Esc to quit.
    View(ViewArgs),
    /// Render the built-in synthetic 8-layer × 8-head model (layers 1 and 8, as in the seed figure).
    Demo(DemoArgs),
    /// Write synthetic long-context attention (.npy, .safetensors, or raw for other extensions).
    Synth(SynthArgs),
    /// Write synthetic queries and keys (tensors `q` and `k` in one .safetensors file) whose
    /// attention has a sink, sparse sink-like columns and a local window.
    SynthQk(SynthQkArgs),
    /// Compute the attention probabilities of queries and keys (on the GPU, as render pools
    /// them) and write them as a tensor (.npy, .safetensors or raw), block by block.
    Attention(AttentionArgs),
    /// Measure render throughput on synthetic data (generated once, cached), next to the
    /// machine's memcpy and file-read limits.
    Bench(BenchArgs),
    /// Print shape, dtype and per-head statistics of an attention tensor, or what a Q/K capture
    /// holds (shapes, model, tokens, mask, per-layer scale and windows).
    Info(InfoArgs),
    /// Which heads matter: per-head pattern statistics (sink and local mass, entropy, mean
    /// distance, max, top keys and offsets, a pattern label), in one pass over the input.
    // (the statistics are defined on probabilities: the Q/K options' --values is not offered)
    #[command(mut_arg("values", |a| a.hide(true)))]
    Heads(HeadsArgs),
}

// The argument structs below carry no doc comment of their own: clap would read one as the
// subcommand's description, which the variant's doc comment above already gives.

#[derive(Args)]
pub struct RenderArgs {
    /// (L,H,Q,K), (H,Q,K) or (Q,K) attention: .npy (<f4, <f2) or .safetensors (F32, F16, BF16);
    /// or a Q/K capture (.safetensors with tensors q and k), whose attention is recomputed as
    /// with --q.
    #[arg(required_unless_present = "q", conflicts_with = "q")]
    pub input: Option<PathBuf>,
    #[command(flatten)]
    pub qk: QkArgs,
    #[command(flatten)]
    pub stored: StoredArgs,
    #[command(flatten)]
    pub out: Output,
    #[command(flatten)]
    pub style: Style,
    /// Also write every head drawn (with --top, those kept) as DIR/l{l}_h{h}.png at native
    /// resolution, unlabelled.
    #[arg(long, value_name = "DIR")]
    pub tiles: Option<PathBuf>,
    /// One token per line (one per key; `-`: the standard input): drawn beside each cell when at most 64, index ticks otherwise.
    #[arg(long, value_name = "FILE")]
    pub tokens: Option<PathBuf>,
    /// Also write every drawn head's pattern statistics (as `attnviz heads --json`), computed
    /// in the same pass as the figure.
    #[arg(long, value_name = "FILE")]
    pub stats_json: Option<PathBuf>,
    #[command(flatten)]
    pub patterns: PatternArgs,
}

#[derive(Args)]
pub struct DiffArgs {
    /// A: (L,H,Q,K), (H,Q,K) or (Q,K) attention, .npy or .safetensors, as for render; or a
    /// Q/K capture (.safetensors with tensors q and k), whose attention is recomputed.
    pub a: PathBuf,
    /// B, of the same shape (any dtype); each entry drawn is A − B.
    pub b: PathBuf,
    /// Tensor to read from .safetensors files with several (the same name in both).
    #[arg(long)]
    pub tensor: Option<String>,
    #[command(flatten)]
    pub out: Output,
    #[command(flatten)]
    pub style: Style,
    #[command(flatten)]
    pub patterns: PatternArgs,
    /// Also write every selected head's difference as DIR/l{l}_h{h}.png at native resolution.
    #[arg(long, value_name = "DIR")]
    pub tiles: Option<PathBuf>,
    /// One token per line (one per key), as for render.
    #[arg(long, value_name = "FILE")]
    pub tokens: Option<PathBuf>,
}

/// How INPUT is read when it is stored attention: which tensor of a file, or a raw dump's shape
/// and element type (`render`, `heads`, `view` and `info` alike).
#[derive(Args)]
pub struct StoredArgs {
    /// Tensor to read from a .safetensors file with several.
    #[arg(long, conflicts_with = "shape")]
    pub tensor: Option<String>,
    /// Read INPUT as a raw dump of this shape (L,H,Q,K, or fewer dimensions) ...
    #[arg(long, requires = "dtype")]
    pub shape: Option<String>,
    /// ... and element type: f32, f16, bf16, or f64 (narrowed to f32 as it is read).
    #[arg(long, requires = "shape", value_parser = ["f32", "f16", "bf16", "f64"])]
    pub dtype: Option<String>,
}

/// What the pattern statistics measure.
#[derive(Args)]
pub struct PatternArgs {
    /// sink_mass counts the first N keys [default: 1].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub sink_keys: Option<u32>,
    /// local_mass counts keys within W positions of the query (|a - k| < W) [default: 32].
    #[arg(long, value_name = "W", value_parser = clap::value_parser!(u32).range(1..))]
    pub window: Option<u32>,
}

#[derive(Args)]
pub struct HeadsArgs {
    /// (L,H,Q,K), (H,Q,K) or (Q,K) attention, or a Q/K capture, as for render.
    #[arg(required_unless_present = "q", conflicts_with = "q")]
    pub input: Option<PathBuf>,
    #[command(flatten)]
    pub qk: QkArgs,
    #[command(flatten)]
    pub stored: StoredArgs,
    #[command(flatten)]
    pub patterns: PatternArgs,
    /// Write the statistics as JSON: {"heads": [...], "options": {...}}.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the statistics as CSV, one row per head.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Draw a summary figure (.png, or .svg): one layer × head heatmap of the pattern labels,
    /// with a legend, then one per statistic (sink_mass, local_mass, entropy, mean_distance,
    /// max, row_sum_mean), each with its colorbar.
    #[arg(long, value_name = "FILE")]
    pub figure: Option<PathBuf>,
    /// A line above the summary figure.
    #[arg(long, requires = "figure")]
    pub title: Option<String>,
    /// List the heads (table, --json, --csv) highest first by this statistic rather than in
    /// layer and head order; the summary figure keeps every head in its place.
    #[arg(long, value_name = "METRIC", value_parser = names(&SortKey::ALL.map(SortKey::name), SortKey::from_name))]
    pub sort_by: Option<SortKey>,
    /// With --sort-by: list only the N highest heads.
    #[arg(long, value_name = "N")]
    pub top: Option<usize>,
    /// List only the heads with one of these pattern labels, comma-separated: sink, local,
    /// vertical-slash, block-sparse, mixed; the summary figure keeps every head.
    #[arg(long, value_name = "LABELS", value_parser = lib_parser(PatternLabels::parse))]
    pub pattern: Option<PatternLabels>,
    /// auto: GPU, falling back to the CPU with a warning when no adapter exists.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    pub backend: Backend,
    /// Print where the command's wall-clock time went on the host, phase by phase (GPU start-up,
    /// shaders parsed and pipelines compiled, reading, waiting on the device, read-back,
    /// encoding), on stderr when it is done.
    #[arg(long)]
    pub timings: bool,
    #[command(flatten)]
    pub selection: Selection,
}

/// Which heads and which entries count: render's --layers, --heads and --causal.
#[derive(Args)]
pub struct Selection {
    /// Layers to report, 1-based: lists and ranges such as 1,8 or 1-4 (default: all).
    #[arg(long)]
    pub layers: Option<String>,
    /// Heads to report, 1-based (default: all).
    #[arg(long)]
    pub heads: Option<String>,
    /// Entries above the diagonal: masked (on: out of the statistics), kept (off), or auto
    /// (exact zeros there add nothing either way).
    #[arg(long, default_value = "auto", num_args = 0..=1, default_missing_value = "on",
          value_parser = ["auto", "on", "off"])]
    pub causal: String,
}

#[derive(Args)]
pub struct ViewArgs {
    /// Attention, or a Q/K capture, as for render.
    #[arg(required_unless_present = "q", conflicts_with = "q")]
    pub input: Option<PathBuf>,
    #[command(flatten)]
    pub qk: QkArgs,
    #[command(flatten)]
    pub stored: StoredArgs,
    #[command(flatten)]
    pub patterns: PatternArgs,
    #[command(flatten)]
    pub style: Style,
    /// Close after N frames, drawing continuously until then (scripts, tests, benchmarks).
    #[arg(long, value_name = "N")]
    pub exit_after_frames: Option<u64>,
    /// Write exactly what is on screen to this PNG after the last frame.
    #[arg(long)]
    pub screenshot: Option<PathBuf>,
    /// Print frame-time statistics and the adapter on exit.
    #[arg(long)]
    pub stats: bool,
    /// Window size in pixels, WxH (default: the figure, within 1600x1000).
    #[arg(long)]
    pub size: Option<String>,
    /// One token per line (one per key; `-`: the standard input), named in the hover readout.
    #[arg(long)]
    pub tokens: Option<PathBuf>,
    /// Open in focus mode on this head: L,H (1-based).
    #[arg(long, value_name = "L,H")]
    pub focus: Option<String>,
    /// Zoom by this factor about the window's centre after opening.
    #[arg(long)]
    pub zoom: Option<f64>,
    /// Pan by DX,DY window pixels every frame (scripted panning, for measurements).
    #[arg(long, value_name = "DX,DY", allow_hyphen_values = true)]
    pub pan_per_frame: Option<String>,
    /// Put the cursor at X,Y (window pixels) after opening: its readout shows (scripts).
    #[arg(long, value_name = "X,Y")]
    pub hover: Option<String>,
}

#[derive(Args)]
pub struct DemoArgs {
    #[command(flatten)]
    pub out: Output,
    #[command(flatten)]
    pub style: Style,
    /// Tokens per head of the demo model.
    #[arg(long, default_value_t = 256)]
    pub tokens: usize,
}

#[derive(Args)]
pub struct SynthArgs {
    /// Output file.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Tokens per head (queries = keys).
    #[arg(long, default_value_t = 4096)]
    pub seq: usize,
    /// Layers of the model.
    #[arg(long, default_value_t = 1)]
    pub layers: usize,
    /// Heads of each layer.
    #[arg(long, default_value_t = 1)]
    pub heads: usize,
    /// Element type written (.npy has no bf16: write it as .safetensors or raw).
    #[arg(long, default_value = "f16", value_parser = ["f32", "f16", "bf16"])]
    pub dtype: String,
    /// Random seed: the same seed writes the same bytes.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Zero above the diagonal (decoder attention).
    #[arg(long)]
    pub causal: bool,
    /// attention: sinks, columns, local window, block-sparse blocks in every head; kinds: one
    /// of them per head (sink, local, vertical-slash, block-sparse, diffuse, in turn along the
    /// heads, shifted by one each layer); hot: one 1.0 entry in 1e-6 noise.
    #[arg(long, default_value = "attention", value_parser = ["attention", "kinds", "hot"])]
    pub pattern: String,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Args)]
pub struct SynthQkArgs {
    /// Output file (.safetensors, tensors `q` and `k`).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Tokens (queries = keys).
    #[arg(long, default_value_t = 4096)]
    pub seq: usize,
    /// Head dimension.
    #[arg(long, default_value_t = 64)]
    pub dim: usize,
    /// Layers of the model.
    #[arg(long, default_value_t = 1)]
    pub layers: usize,
    /// Query heads of each layer.
    #[arg(long, default_value_t = 1)]
    pub heads: usize,
    /// Key heads (fewer than --heads: grouped-query attention); default: --heads.
    #[arg(long)]
    pub kv_heads: Option<usize>,
    /// Element type written.
    #[arg(long, default_value = "f16", value_parser = ["f32", "f16", "bf16"])]
    pub dtype: String,
    /// Random seed: the same seed writes the same bytes.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Args)]
// (--q is optional where INPUT may stand instead of it; here it is the input)
#[command(mut_arg("q", |a| a.required(true)))]
pub struct AttentionArgs {
    #[command(flatten)]
    pub qk: QkArgs,
    /// Mask keys after each query.
    #[arg(long)]
    pub causal: bool,
    /// Output tensor: .npy, .safetensors, or raw values for other names.
    #[arg(short, long)]
    pub output: PathBuf,
    /// auto: GPU, falling back to the CPU with a warning when no adapter exists.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    pub backend: Backend,
}

#[derive(Args)]
pub struct BenchArgs {
    /// Small inputs, fewer runs: a smoke test of the benchmark itself.
    #[arg(long)]
    pub quick: bool,
    /// Also write the results as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Where the synthetic inputs are cached (default: $XDG_CACHE_HOME or ~/.cache, attnviz/bench).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Run only these scenarios (comma-separated), e.g. `--only export-grid,recolor`.
    #[arg(long, value_delimiter = ',', value_parser = clap::builder::PossibleValuesParser::new(SCENARIOS))]
    pub only: Vec<String>,
    /// Q/K row kernel: the query vec4s an invocation may hold (its rows × d / 4), instead of
    /// the adapter's default (32 on GPUs, 128 on CPU adapters): for measuring the row counts
    /// on a new device; 0: no row kernel, the tiled kernel at every head width.
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=1024))]
    pub row_vec4s: Option<u32>,
    /// Q/K one-pass path: MiB of per-(row, pooled column) states per chunk of rows (the rows
    /// a score dispatch runs in parallel), instead of the adapter's default (512 on GPUs, 64
    /// on CPU adapters).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub state_mib: Option<u64>,
    /// Q/K row kernel: keys a subgroup step shares (4 or 8, at most the adapter's subgroup
    /// width; 0: every lane loads every key), instead of the adapter's default.
    #[arg(long, value_parser = ["0", "4", "8"])]
    pub subgroup_keys: Option<String>,
    /// Q/K score kernels: workgroups one score dispatch should reach by splitting the keys
    /// among them, instead of the adapter's default (4096 on GPUs, 0 on CPU adapters); 0: no
    /// split, one window (or segment) of keys per dispatch.
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=1 << 24))]
    pub split_workgroups: Option<u32>,
    /// Q/K figures: pooled columns at most this many keys wide are pooled from stored
    /// probabilities rather than in one pass, instead of the default (2); 0: the one pass at
    /// every width (qk-short draws one key a column).
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=1 << 20))]
    pub store_keys: Option<u32>,
    /// Pattern statistics (stats-grid): pool a chunk from the statistics' profile kernel's loads
    /// where its bins allow, instead of the pool pass and a second read (`Gpu::pool_with_profiles`,
    /// off by default): the same figure and statistics, for measuring the two on a new device.
    #[arg(long)]
    pub pool_with_profiles: bool,
    /// Pattern statistics (stats-grid): the rows of a head one invocation of their profile
    /// kernel walks, instead of the adapter's default (64 on GPUs; 0, the whole chunk, on CPU
    /// adapters): for measuring them on a new device (`Gpu::pattern_slice_rows`).
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=1 << 20))]
    pub pattern_slice_rows: Option<u32>,
    /// Print the host's time per phase (as `render --timings`), summed over every run of every
    /// scenario, warm-ups included: with one scenario (`--only qk-long`), what an in-process
    /// render spends besides the device's passes.
    #[arg(long)]
    pub timings: bool,
}

#[derive(Args)]
pub struct InfoArgs {
    /// Attention (.npy, .safetensors, or a raw dump, as for render) or a Q/K capture
    /// (.safetensors).
    pub input: PathBuf,
    #[command(flatten)]
    pub stored: StoredArgs,
    /// auto: GPU, falling back to the CPU with a warning when no adapter exists.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    pub backend: Backend,
}

/// Attention recomputed from queries and keys instead of read from a file.
#[derive(Args)]
pub struct QkArgs {
    /// Queries, (L,H,N,d), (H,N,d) or (N,d), .npy or .safetensors: the attention softmax(QKᵀ·scale)
    /// is recomputed on the GPU at the resolution drawn, never stored.
    #[arg(long, value_name = "FILE")]
    pub q: Option<PathBuf>,
    /// Keys, with as many heads as Q or fewer (grouped-query attention). Omit when --q is a
    /// .safetensors file holding tensors `q` and `k`.
    #[arg(long, value_name = "FILE", requires = "q")]
    pub k: Option<PathBuf>,
    /// Score scale before the softmax (default: the capture's per-layer scale, else 1/√d).
    #[arg(long, requires = "q")]
    pub softmax_scale: Option<f32>,
    /// Hide keys N or more positions older than each query, in every layer; without a causal
    /// mask, as far after it too (a two-sided window, as in ModernBERT's local layers) (default:
    /// the capture's per-layer windows, else none).
    #[arg(long, requires = "q", value_name = "N")]
    pub sliding_window: Option<usize>,
    /// Hide the keys outside each query's chunk of N positions, in every layer: before it under
    /// a causal mask (Llama 4's chunked layers), before and after it without one (a vision
    /// tower attending within each video frame) (default: the capture's per-layer chunks, else
    /// none).
    #[arg(long, requires = "q", value_name = "N")]
    pub attention_chunk: Option<usize>,
    /// Scores become C·tanh(s/C) before the softmax, in every layer (default: the capture's).
    #[arg(long, requires = "q", value_name = "C")]
    pub softcap: Option<f32>,
    /// Runs of positions that attend to each other both ways on top of the causal mask, in
    /// every layer: the query at A, S ≤ A < E, also sees the keys up to E (Gemma-3's image
    /// tokens, PaliGemma's prefix); end excluded (default: the capture's per-layer spans).
    #[arg(long, requires = "q", value_name = "S:E,...", value_parser = spans)]
    pub bidirectional_spans: Option<Spans>,
    /// Draw the softmax probabilities, or the pre-softmax logits scale·q·k (softcapped where
    /// the layer is), in logit units; hidden entries are masked.
    #[arg(long, requires = "q", default_value = "probs", value_parser = names(&Values::ALL.map(Values::name), Values::from_name))]
    pub values: Values,
    /// Query rows to compute (from --q) or read (from INPUT), 0-based, end excluded: A..B, A..
    /// or ..B. They keep their places: the mask, the statistics' distances, the axis (A..B)
    /// and the tokens are those of the whole head.
    #[arg(long, value_name = "A..B")]
    pub queries: Option<String>,
}

#[derive(Args)]
pub struct Output {
    /// Output figure: .png, or .svg (text, ticks and colorbar as vectors, cells as embedded PNGs).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Also write each cell's pixel rectangle, layer, head, value range and the colorbar mapping as JSON.
    #[arg(long, value_name = "FILE")]
    pub layout_json: Option<PathBuf>,
    /// auto: GPU, falling back to the CPU with a warning when no adapter exists.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    pub backend: Backend,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Print the device's own time per GPU pass of the figure (timestamp queries) on stderr.
    #[arg(long)]
    pub gpu_times: bool,
    /// Print where the command's wall-clock time went on the host, phase by phase (GPU start-up,
    /// shaders parsed and pipelines compiled, reading, waiting on the device, read-back,
    /// encoding), on stderr when it is done.
    #[arg(long)]
    pub timings: bool,
}

#[derive(Args)]
pub struct Style {
    /// Layers to show, 1-based: lists and ranges such as 1,8 or 1-4 (default: all).
    #[arg(long)]
    pub layers: Option<String>,
    /// Heads to show, 1-based (default: all).
    #[arg(long)]
    pub heads: Option<String>,
    /// Scale: per head, per layer row, one for the grid, per query row, or none ([0,1] clamped).
    #[arg(long, default_value = "head", value_parser = names(&Norm::ALL.map(Norm::name), Norm::from_name))]
    pub norm: Norm,
    /// matplotlib's colormap [default: viridis; RdBu_r for diff].
    #[arg(long, value_parser = names(&Colormap::ALL.map(Colormap::name), Colormap::from_name))]
    pub colormap: Option<Colormap>,
    /// How entries that share a pixel combine: max keeps single-key spikes visible, extreme
    /// keeps the signed value of largest magnitude [default: max; extreme for diff].
    #[arg(long, value_parser = names(&Reduce::ALL.map(Reduce::name), Reduce::from_name))]
    pub reduce: Option<Reduce>,
    /// Cell side in pixels (default 256; a shorter head is magnified by the largest integer
    /// factor that fits, so entries stay crisp squares).
    #[arg(long)]
    pub cell: Option<u32>,
    /// Leave the colorbar out.
    #[arg(long)]
    pub no_colorbar: bool,
    /// Curve from normalized value to colour: linear, log, sqrt or gamma:G.
    #[arg(long, default_value = "linear", value_parser = lib_parser(Scale::parse))]
    pub scale: Scale,
    /// With --scale log: values below this take the bottom colour (default: 1e-6 of each scope's max).
    #[arg(long, value_name = "V")]
    pub log_floor: Option<f32>,
    /// Limits at these percentiles of each scope's pooled values, e.g. 0,99.5.
    #[arg(long, value_name = "LOW,HIGH", value_parser = lib_parser(ColorScale::parse_clip))]
    pub clip: Option<[f32; 2]>,
    /// Fixed lower limit (overrides the data's and --clip's).
    #[arg(long, allow_negative_numbers = true)]
    pub vmin: Option<f32>,
    /// Fixed upper limit.
    #[arg(long, allow_negative_numbers = true)]
    pub vmax: Option<f32>,
    /// Map V to the middle of the colormap, each side of it linear (matplotlib's TwoSlopeNorm);
    /// with --symmetric, the centre of the symmetric range.
    #[arg(long, value_name = "V", allow_negative_numbers = true)]
    pub center: Option<f32>,
    /// Limits at centre ± max |v − centre| per --norm scope (matplotlib's CenteredNorm; centre
    /// 0 unless --center is given). Always on for diff.
    #[arg(long)]
    pub symmetric: bool,
    /// Position ticks on the outer cells (left column, bottom row) [default: on for one cell,
    /// off for grids].
    #[arg(long, value_parser = ["on", "off"])]
    pub axes: Option<String>,
    /// Draw the heads in the order of a statistic (attnviz heads'), highest first, each
    /// labelled with its layer and head; the statistics come from the same pass.
    #[arg(long, value_name = "METRIC", value_parser = names(&SortKey::ALL.map(SortKey::name), SortKey::from_name))]
    pub sort_by: Option<SortKey>,
    /// With --sort-by: keep the N highest heads.
    #[arg(long, value_name = "N")]
    pub top: Option<usize>,
    /// Draw only the heads with one of these pattern labels (attnviz heads'), comma-separated:
    /// sink, local, vertical-slash, block-sparse, mixed; in layer and head order, or --sort-by's,
    /// each labelled with its layer and head; the labels come from the same pass.
    #[arg(long, value_name = "LABELS", value_parser = lib_parser(PatternLabels::parse))]
    pub pattern: Option<PatternLabels>,
    /// Leave the first K keys (attention sinks) out of the statistics: 0..K. They still render, saturated.
    #[arg(long, value_name = "0..K", value_parser = lib_parser(ColorScale::parse_exclude))]
    pub exclude_keys: Option<usize>,
    /// A title above the grid.
    #[arg(long)]
    pub title: Option<String>,
    /// Make the whole figure this many times larger (cells, text, gutters); posters past the
    /// texture limit are drawn in tiles.
    #[arg(long, default_value_t = 1.0, conflicts_with = "dpi")]
    pub scale_factor: f32,
    /// Resolution as DPI, with 100 DPI the default size (--dpi 300 = --scale-factor 3).
    #[arg(long)]
    pub dpi: Option<f32>,
    #[arg(long, default_value = "light", value_parser = ["light", "dark"])]
    pub theme: String,
    /// Transparent background.
    #[arg(long)]
    pub transparent: bool,
    /// Entries above the diagonal: masked (on: out of the statistics, drawn as background),
    /// kept (off), or masked when every selected head is exactly zero there (auto).
    #[arg(long, default_value = "auto", num_args = 0..=1, default_missing_value = "on",
          value_parser = ["auto", "on", "off"])]
    pub causal: String,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    Auto,
    Gpu,
    Cpu,
}

/// `--pattern`'s labels, one value to clap (a `Vec` field would be read as repeated flags).
#[derive(Clone, Debug)]
pub struct PatternLabels(pub Vec<&'static str>);

impl PatternLabels {
    fn parse(spec: &str) -> attnviz::Result<PatternLabels> {
        attnviz::figure::rank::parse_patterns(spec).map(PatternLabels)
    }

    /// The labels, or `None` without the flag.
    pub fn of(labels: &Option<PatternLabels>) -> Option<Vec<&'static str>> {
        labels.as_ref().map(|l| l.0.clone())
    }
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

/// `--bidirectional-spans`' value: one argument holding every span (a `Vec` field would be
/// read by clap as the flag given several times).
#[derive(Clone, Debug)]
pub struct Spans(pub Vec<(usize, usize)>);

fn spans(text: &str) -> Result<Spans, String> {
    attnviz::source::qk_meta::parse_spans_arg(text).map(Spans)
}

#[cfg(test)]
mod tests {
    use attnviz::figure::options::{PyBinding, RENDER_OPTIONS};
    use clap::CommandFactory;

    use super::Cli;

    /// Every argument of `attnviz render`, as the table writes it: `--long` or the positional
    /// argument's value name.
    fn render_flags() -> Vec<String> {
        let cli = Cli::command();
        let render = cli
            .find_subcommand("render")
            .expect("render is a subcommand");
        render
            .get_arguments()
            .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"))
            .map(|a| match a.get_long() {
                Some(long) => format!("--{long}"),
                None => a.get_id().as_str().to_uppercase(),
            })
            .collect()
    }

    /// The single list of render options (`attnviz::figure::options::RENDER_OPTIONS`) names
    /// every flag clap has, so a new flag cannot ship without a Python keyword or a reason.
    #[test]
    fn every_render_flag_has_a_python_keyword_or_a_reason() {
        let flags = render_flags();
        assert!(flags.len() > 30, "{flags:?}");
        let missing: Vec<&String> = flags
            .iter()
            .filter(|f| RENDER_OPTIONS.iter().all(|o| o.flag != f.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "render flags missing from RENDER_OPTIONS (src/figure/options.rs): {missing:?}"
        );
        let stale: Vec<&str> = RENDER_OPTIONS
            .iter()
            .map(|o| o.flag)
            .filter(|f| !flags.iter().any(|g| g == f))
            .collect();
        assert!(stale.is_empty(), "not flags of render: {stale:?}");
        for o in RENDER_OPTIONS {
            if let PyBinding::CliOnly(why) = o.python {
                assert!(why.len() > 10, "{}: say why it is CLI-only", o.flag);
            }
        }
    }
}
