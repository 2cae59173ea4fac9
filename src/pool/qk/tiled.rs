//! Pooled attention from Q and K in one pass over the scores, with no probability ever stored
//! (shaders/qk_pool.wgsl): scores are computed a 64 × 64 tile at a time like a GEMM (Q and K
//! staged in workgroup memory 32 dimensions at a time, each of 64 invocations an 8 × 8 block
//! of scores in registers, so each loaded vec4 feeds 8 dot products), each tile is folded into per-(row, pooled column) states (max and min score, Σ exp2(s − max)),
//! and once a block of rows has seen all its keys, every row's log-sum-exp follows from its
//! states and every output pixel folds its rows into the pooled accumulators. Since
//! p = exp(s − lse) is monotone in s, a bin's largest and smallest probability are those of its
//! largest and smallest score: exact, up to the rounding of lse; the bin's sum is the same sum
//! in another order. The intermediate is rows × pooled columns per head (a block of rows at a
//! time), never N².
//!
//! Several heads go in each dispatch (workgroup z), sharing one upload of each key head among
//! the query heads of its GQA group. Tiles above a causal diagonal are never computed. On GPUs
//! the keys are also split among workgroups (workgroup y, whole pooled columns each,
//! [`split_keys`]), so that one dispatch per chunk fills the device instead of a dispatch per
//! window or segment of keys, one after another.
//!
//! Runs that need every probability (pattern statistics) use the same row kernel twice per
//! chunk instead ([`pool_materialized`]): once for the rows' lse, once to store the chunk's
//! probabilities (`prob_rows`) for the ingest's pool pass, one chunk of rows at a time.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::{Arc, Mutex};

use bytemuck::{Pod, Zeroable};

use crate::error::Result;
use crate::gpu::kernel::{Binding, Kernel};
use crate::gpu::{shaders, spread_order};
use crate::gpu::{storage_buffer_init, Gpu};
use crate::pool::chunk::{max_chunk_bytes, ChunkTexture};
use crate::pool::geometry::{bin_edges, bin_of, CellGeometry};
use crate::pool::pattern_qk::{window_rows, QkPatternParams};
use crate::pool::{Ingest, PoolRun};
use crate::source::qk::{F32Rows, QkSource, Values};

/// Query rows and keys per workgroup tile (`TQ`, `TK` in the shader).
const TQ: usize = 64;
const TK: usize = 64;
/// Invocations per `pool_scores` workgroup, and the workgroup memory it uses.
const WG: u32 = 64;
const WG_BYTES: u32 = 16384;
/// Keys per `pool_scores` dispatch: bounds each workgroup's loop (llvmpipe stops a shader's
/// loops after 65535 iterations; display drivers' watchdogs stop long dispatches).
const SEG_KEYS: usize = 8192;
/// Heads per dispatch at most.
const MAX_BATCH: usize = 8;
/// Widest head (in vec4s) the row kernel takes: its query row lives in registers, 32 vec4s
/// (128 dimensions) at most; wider heads go to the tiled kernel, whose register block does not
/// grow with the head dimension.
const MAX_ROWS_D4: u32 = 32;
/// The row kernel's key window, at most: 64 KiB is the uniform (constant) buffer size every
/// desktop driver offers, and what the constant caches are built around.
const MAX_WINDOW_BYTES: u64 = 65536;
/// Widest pooled cell this path takes: `pool_lse` walks a row's pooled columns in one loop.
const MAX_POOLED_W: u32 = 8192;

const FLAG_CAUSAL: u32 = 1;
/// Storage buffers the one-pass module binds.
const STORAGE_BINDINGS: u32 = 10;

/// Mirrors `Params` in `shaders/qk_pool.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
struct Params {
    rows: u32,
    row_start: u32,
    q_rows: u32,
    keys: u32,
    flags: u32,
    diagonal: i32,
    scale: f32,
    seg_start: u32,
    seg_end: u32,
    pooled_w: u32,
    y_start: u32,
    px: u32,
    inter_rows: u32,
    window: u32,
    softcap: f32,
    member0: u32,
    row_perm: u32,
    splits: u32,
    split_cols: u32,
    part_stride: u32,
    split_len: u32,
    _pad: [u32; 3],
}

/// The modes fixed per pipeline (`SOFTCAP`, `LOGITS`, `ROW_NORM` in the shader): a layer's
/// softcap, and the run's values and normalization.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Mode {
    softcap: bool,
    logits: bool,
    row_norm: bool,
    /// The run stores every probability (`prob_rows`, [`pool_materialized`]).
    materialize: bool,
    /// The score kernels take every key of a chunk in one dispatch, split among workgroups
    /// ([`Cuts::splits`]).
    split: bool,
}

/// The pipelines of one [`Mode`]: the row kernel's or the tiled kernel's, whichever the
/// module's head dimension takes (a pipeline never used is no start-up time on any driver).
struct Pipes {
    /// `pool_rows` or `pool_scores`.
    scores: wgpu::ComputePipeline,
    /// `pool_row_lse` or `pool_lse`.
    lse: wgpu::ComputePipeline,
    /// The pass after the lse, the only one of the two a mode compiles (each is start-up time).
    then: Then,
}

/// What follows a chunk's lse pass.
enum Then {
    /// `pool_fold`: the states folded into the figure's pixels.
    Fold(wgpu::ComputePipeline),
    /// `prob_rows`: every probability stored, where the mode materializes.
    Probs(wgpu::ComputePipeline),
}

/// One shader module (a head dimension, a subgroup step) and its pipelines, per mode, made on
/// first use.
struct Kernels {
    kernel: Kernel,
    /// The row kernel computes the scores (the head dimension has a window), else the tiled.
    row_kernel: bool,
    by_mode: Mutex<HashMap<Mode, Arc<Pipes>>>,
}

impl Kernels {
    fn pipes(&self, device: &wgpu::Device, mode: Mode) -> Arc<Pipes> {
        let mut map = self.by_mode.lock().expect("qk_pool pipelines");
        map.entry(mode)
            .or_insert_with(|| {
                let flag = |on: bool| if on { 1.0 } else { 0.0 };
                let constants = [
                    ("SOFTCAP", flag(mode.softcap)),
                    ("LOGITS", flag(mode.logits)),
                    ("ROW_NORM", flag(mode.row_norm)),
                    ("SPLIT", flag(mode.split)),
                ];
                let k = &self.kernel;
                let p = |entry| k.specialized(device, entry, &constants);
                let (scores, lse) = if self.row_kernel {
                    ("pool_rows", "pool_row_lse")
                } else {
                    ("pool_scores", "pool_lse")
                };
                // prob_rows beside the others: the two score kernels are most of a fresh
                // process's compile time, and a driver compiles each on the calling thread.
                std::thread::scope(|scope| {
                    let probs = mode.materialize.then(|| scope.spawn(|| p("prob_rows")));
                    let (scores, lse) = (p(scores), p(lse));
                    let then = match probs {
                        Some(h) => Then::Probs(h.join().expect("compiling prob_rows")),
                        None => Then::Fold(p("pool_fold")),
                    };
                    Arc::new(Pipes { scores, lse, then })
                })
            })
            .clone()
    }
}

/// What one shader module of the one-pass path is built for: the padded head dimension in
/// vec4s, the row kernel's window of keys (0: the tiled kernel), rows per invocation and keys
/// per subgroup step, and whether `prob_rows` stores into a chunk texture.
type ModuleKey = (u32, u32, u32, u32, bool);

/// The one-pass kernels, compiled on first use for each padded head dimension.
#[derive(Default)]
pub(crate) struct TiledPipelines {
    by_dim: Mutex<HashMap<ModuleKey, Arc<Kernels>>>,
}

/// The head dimension in vec4s, padded for the shader, and the vec4s staged per step.
fn padded(dim: usize) -> (u32, u32) {
    let d4 = dim.div_ceil(4) as u32;
    if d4.is_multiple_of(8) {
        (d4, 8)
    } else {
        (d4.next_multiple_of(4), 4)
    }
}

/// Keys per window of the row kernel for `d4` vec4s of head dimension on an adapter whose
/// uniform bindings hold `max_uniform` bytes: a multiple of 16 keys, so that every window's
/// offset (a multiple of 256·d4 bytes) meets any adapter's offset alignment (at most 256).
/// 0 when the row kernel does not apply: wide heads, small uniform bindings, a lane's rows
/// ([`rows_per_invocation`]) fewer than [`Gpu::row_min_rows`], or no row budget at all
/// (`attnviz bench --row-vec4s 0` measures the tiled kernel at every width).
fn window_keys(gpu: &Gpu, d4: u32) -> u32 {
    let max_uniform = gpu.limits.max_uniform_buffer_binding_size;
    let keys = (max_uniform.min(MAX_WINDOW_BYTES) / (u64::from(d4) * 16)) as u32 / 16 * 16;
    let rows = rows_per_invocation(d4, gpu.row_vec4s);
    if d4 > MAX_ROWS_D4 || gpu.row_vec4s == 0 || rows < gpu.row_min_rows {
        0
    } else {
        keys
    }
}

/// The row kernel's step over `shared` keys (4 or 8) handed out by subgroupBroadcast: each of
/// `shared` lanes loads one key's vec4s, every lane takes all of them for each of its `rows`
/// query rows; the products of each score are added in the same order as `score4`'s. Scores
/// of row h are elements h·(shared / 4).. of the result.
fn shared_scores(d4: u32, shared: u32, rows: u32) -> String {
    let parts = shared / 4;
    let n = parts * rows;
    let mut f = format!("fn score_shared(o: u32) -> array<vec4<f32>, {n}> {{\n");
    for a in 0..n {
        f += &format!("    var a{a} = vec4<f32>();\n");
    }
    for v in 0..d4 {
        f += &format!("    {{\n        let kv = kload(o + {v}u);\n");
        for p in 0..parts {
            for t in 0..4 {
                f += &format!(
                    "        let k{p}_{t} = subgroupBroadcast(kv, {}u);\n",
                    4 * p + t
                );
            }
            for h in 0..rows {
                let qv = format!("qrow[{}u]", h * d4 + v);
                let b: Vec<String> = (0..4).map(|t| format!("dot({qv}, k{p}_{t})")).collect();
                f += &format!(
                    "        a{} += vec4<f32>({});\n",
                    h * parts + p,
                    b.join(", ")
                );
            }
        }
        f += "    }\n";
    }
    let all: Vec<String> = (0..n).map(|a| format!("a{a}")).collect();
    f + &format!(
        "    return array<vec4<f32>, {n}>({});\n}}\n",
        all.join(", ")
    )
}

/// Query rows per invocation of the row kernel for `d4` vec4s of head dimension on an adapter
/// that gives them `budget` vec4s ([`Gpu::row_vec4s`]): as many as fit, 1 to 8, a power of two
/// (on llvmpipe, d = 64: 6 rows a lane ran 28% slower than 8, and slower than 4 rows × 8 keys).
fn rows_per_invocation(d4: u32, budget: u32) -> u32 {
    let fit = (budget / d4.max(1)).clamp(1, 8);
    1 << fit.ilog2()
}

/// Scores per lane that a step of the row kernel accumulates (rows × keys), past which it
/// takes 4 keys a step: the scores stay live across the whole head dimension, and a key value
/// broadcast to the subgroup feeds every row, so more rows and fewer keys cost fewer
/// broadcasts per product. On llvmpipe, 4 rows × 8 keys ran 6–12% slower than 4 rows × 4 keys
/// (d = 64 and 128), and 8 rows × 4 keys 20% faster than 4 × 8 (d = 64).
const STEP_SCORES: u32 = 16;

/// Keys per step of the row kernel shared through subgroups, for `rows` query rows per
/// invocation on an adapter whose subgroups share `subgroup_keys` (4 or 8; 0: none): halved to
/// 4 while the step's scores exceed [`STEP_SCORES`]. Fewer keys per step only means more steps
/// (each key still feeds every row), and a step of 4 is what every subgroup can share.
fn keys_per_step(rows: u32, subgroup_keys: u32) -> u32 {
    if subgroup_keys > 4 && rows * subgroup_keys > STEP_SCORES {
        4
    } else {
        subgroup_keys
    }
}

/// How the row kernel takes heads of one dimension on an adapter: what [`row_kernel_shape`]
/// reports, and what a run of those heads compiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowKernelShape {
    /// Query rows per invocation.
    pub rows: u32,
    /// Keys per step shared through subgroups; 0: every lane loads every key, 4 a step.
    pub shared_keys: u32,
}

impl RowKernelShape {
    fn new(gpu: &Gpu, d4: u32) -> RowKernelShape {
        let rows = rows_per_invocation(d4, gpu.row_vec4s);
        RowKernelShape {
            rows,
            shared_keys: keys_per_step(rows, gpu.subgroup_keys),
        }
    }
}

impl std::fmt::Display for RowKernelShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rows = self.rows;
        let s = if rows == 1 { "" } else { "s" };
        match self.shared_keys {
            0 => write!(
                f,
                "{rows} query row{s} a lane, every key loaded by every lane"
            ),
            k => write!(f, "{rows} query row{s} a lane, {k} keys a subgroup step"),
        }
    }
}

/// The row kernel's shape for heads of `dim` dimensions on `gpu` (from [`Gpu::row_vec4s`] and
/// [`Gpu::subgroup_keys`]); `None` where those heads take the tiled kernel instead.
pub fn row_kernel_shape(gpu: &Gpu, dim: usize) -> Option<RowKernelShape> {
    let (d4, _) = padded(dim);
    (window_keys(gpu, d4) > 0).then(|| RowKernelShape::new(gpu, d4))
}

/// The one-pass shader for `d4` vec4s of head dimension, staged `slice` at a time by the tiled
/// kernel and read `window` keys at a time by the row kernel (at least 16; a row kernel that
/// no dispatch uses is still built with one), `rows` query rows per invocation, `shared` keys
/// per step shared through subgroups (0: no subgroup operations; 4 keys per step, each lane
/// loading them all); `prob_rows` stores into a chunk texture (`probs_texture`,
/// `shaders/qk_probs_texture.wgsl`) or a storage buffer.
pub fn kernel_source(
    d4: u32,
    slice: u32,
    window: u32,
    rows: u32,
    shared: u32,
    probs_texture: bool,
) -> String {
    let window = window.max(16);
    // The row kernel's unrolled loops: constant indices keep the query rows in registers on
    // every compiler, with no reliance on a driver's loop unrolling.
    let qload: String = (0..rows)
        .flat_map(|h| {
            (0..d4).map(move |v| {
                format!(
                    "qrow[{}u] = q_word((z * params.q_rows + sp.r[{h}]) * D4 + {v}u);\n    ",
                    h * d4 + v
                )
            })
        })
        .collect();
    let score4: String = (0..rows)
        .flat_map(|h| {
            (0..d4).map(move |v| {
                let k = |t: u32| format!("dot(qrow[{}u], kload(o + {}u))", h * d4 + v, t * d4 + v);
                format!(
                    "s[{h}] += vec4<f32>({}, {}, {}, {});\n    ",
                    k(0),
                    k(1),
                    k(2),
                    k(3)
                )
            })
        })
        .collect();
    // (naga takes subgroup builtins without WGSL's `enable subgroups;`, which it does not parse
    // yet; the device must have `Features::SUBGROUP`)
    // prob_rows' step: the same scores, each four keys' probabilities stored
    let prob = |raw: &str, h: u32, at: u32| {
        format!(
            "if sp.in_chunk[{h}] {{\n            store4(base[{h}], j + {at}u, hi_wg, prob4({raw}, seen4(j + {at}u, rl[{h}], rh[{h}]), lse[{h}]));\n        }}\n        "
        )
    };
    let per_row = |parts: u32, each: &dyn Fn(u32, u32, u32) -> String| -> String {
        (0..rows)
            .flat_map(|h| (0..parts).map(move |p| (h, p)))
            .map(|(h, p)| each(h, p, h * parts + p))
            .collect()
    };
    let (shared_fn, lane_arg, step, pstep, kstep) = if shared > 0 {
        let parts = shared / 4;
        let folds = per_row(parts, &|h, p, a| {
            format!(
                "st[{h}] = fold4(st[{h}], sc[{a}], seen4(j + {}u, rl[{h}], rh[{h}]));\n            ",
                4 * p
            )
        });
        let stores = per_row(parts, &|h, p, a| prob(&format!("sc[{a}]"), h, 4 * p));
        let load = "let sc = score_shared(o + (sg_lane % KSTEP) * D4);";
        (
            shared_scores(d4, shared, rows),
            "@builtin(subgroup_invocation_id) sg_lane: u32,",
            format!("{load}\n            {folds}"),
            format!("{load}\n        {stores}"),
            shared,
        )
    } else {
        let folds = per_row(1, &|h, _, _| {
            format!("st[{h}] = fold4(st[{h}], sc[{h}], seen4(j, rl[{h}], rh[{h}]));\n            ")
        });
        let stores = per_row(1, &|h, _, _| prob(&format!("sc[{h}]"), h, 0));
        (
            String::new(),
            "",
            format!("let sc = score4(o);\n            {folds}"),
            format!("let sc = score4(o);\n        {stores}"),
            4,
        )
    };
    let source = shaders::QK_POOL_TEMPLATE
        .replace("const D4: u32 = 16u;", &format!("const D4: u32 = {d4}u;"))
        .replace(
            "const SLICE: u32 = 8u;",
            &format!("const SLICE: u32 = {slice}u;"),
        )
        .replace(
            "const KWD4: u32 = 4096u;",
            &format!("const KWD4: u32 = {}u;", window * d4),
        )
        .replace(
            "const KSTEP: u32 = 4u;",
            &format!("const KSTEP: u32 = {kstep}u;"),
        )
        .replace("const R: u32 = 1u;", &format!("const R: u32 = {rows}u;"))
        .replace(
            "const RD4: u32 = 16u;",
            &format!("const RD4: u32 = {}u;", rows * d4),
        )
        .replace("// @QLOAD", &qload)
        .replace("// @SCORE4", &score4)
        .replace("/* @LANE_ARG */", lane_arg)
        .replace("// @STEP", &step)
        .replace("// @PSTEP", &pstep);
    let source = if probs_texture {
        let (begin, end) = ("// @PROBS_OUT {", "// @PROBS_OUT }");
        let (Some(a), Some(b)) = (source.find(begin), source.find(end)) else {
            panic!("the row kernel's template lost its @PROBS_OUT markers");
        };
        format!(
            "{}{}{}",
            &source[..a],
            shaders::QK_PROBS_TEXTURE,
            &source[b + end.len()..]
        )
    } else {
        source
    };
    unroll_rows(&(source + &shared_fn), rows)
}

/// The template's per-row loops (`for (var h = 0u; h < R; h++) { … }`, bodies without `break`
/// or `continue`) written out, one block per row with `h` a constant: every array a row owns
/// is then indexed by constants from the start, which no driver has to discover. (lavapipe
/// unrolls the loops itself, but its NIR passes took 114 ms over the 8-row kernel so, 47 ms
/// written out: a fresh process's start-up.)
fn unroll_rows(source: &str, rows: u32) -> String {
    const HEAD: &str = "for (var h = 0u; h < R; h++) {";
    let mut out = String::with_capacity(source.len() * 2);
    let mut rest = source;
    while let Some(at) = rest.find(HEAD) {
        out += &rest[..at];
        let body_start = at + HEAD.len();
        let mut depth = 1;
        let end = rest[body_start..]
            .char_indices()
            .find(|&(_, c)| {
                depth += i32::from(c == '{') - i32::from(c == '}');
                depth == 0
            })
            .map(|(i, _)| body_start + i)
            .expect("a per-row loop of the row kernel's template without its closing brace");
        let body = &rest[body_start..end];
        for h in 0..rows {
            out += &format!("{{ let h = {h}u;{body}}}");
        }
        rest = &rest[end + 1..];
    }
    out + rest
}

impl TiledPipelines {
    fn kernels(&self, device: &wgpu::Device, cuts: &Cuts) -> Arc<Kernels> {
        let Cuts {
            d4,
            slice,
            window,
            shape:
                RowKernelShape {
                    rows,
                    shared_keys: shared,
                },
            probs_texture,
            ..
        } = *cuts;
        let mut map = self.by_dim.lock().expect("qk_pool pipelines");
        map.entry((d4, window, rows, shared, probs_texture))
            .or_insert_with(|| {
                use Binding::*;
                // params, Q, K, head table, key bins, column edges, row edges; then the
                // (row, pooled column) states, row lse and the accumulators written; then
                // the row kernel's window of K and its copy of Q; the probabilities prob_rows
                // stores (a buffer, or the chunk texture the pool pass reads)
                let kernel = Kernel::compute(
                    device,
                    "attnviz.qk_pool",
                    &kernel_source(d4, slice, window, rows, shared, probs_texture),
                    &[
                        UniformWindow,
                        BufReadOnly,
                        BufReadOnly,
                        BufReadOnly,
                        BufReadOnly,
                        BufReadOnly,
                        BufReadOnly,
                        Buffer,
                        Buffer,
                        Buffer,
                        UniformWindow,
                        Chunk,
                        if probs_texture { ChunkWrite } else { Buffer },
                    ],
                );
                Arc::new(Kernels {
                    kernel,
                    row_kernel: window > 0,
                    by_mode: Mutex::default(),
                })
            })
            .clone()
    }
}

/// Whether [`pool_into`] takes `src` into `geometry` on `gpu`: every key is output (the
/// viewer's zoomed regions normalize over keys they do not show, and go the two-pass way), the
/// pooled width fits one loop, one head's Q and K fit a binding, and the adapter offers the
/// workgroup the kernel needs.
pub(crate) fn applies(gpu: &Gpu, src: &QkSource, geometry: CellGeometry) -> bool {
    let l = &gpu.limits;
    let (d4, _) = padded(src.dim());
    let head =
        |n: usize| (n * d4 as usize * 16) as u64 <= gpu.max_binding().min(max_chunk_bytes(gpu));
    src.out_keys() == (0..src.all_keys())
        && geometry.pooled_w <= MAX_POOLED_W
        && head(src.rows().len())
        && head(src.all_keys())
        && l.max_storage_buffers_per_shader_stage >= STORAGE_BINDINGS
        && l.max_compute_workgroup_storage_size >= WG_BYTES
        && l.max_compute_invocations_per_workgroup >= WG
        && l.max_compute_workgroup_size_x >= WG
}

/// One head of a batch: its query head, the slot of its key head, its accumulators.
struct Member {
    head: usize,
    kv_slot: u32,
    accum: u32,
}

/// Consecutive cells of one layer whose accumulators are consecutive in one buffer, pooled by
/// one set of dispatches (workgroup z = member); each key head is uploaded once.
struct Batch {
    layer: usize,
    /// Ordered by key head, so that the members of a GQA group are consecutive (one row-kernel
    /// dispatch each, over the group's key head).
    members: Vec<Member>,
    kv_heads: Vec<usize>,
    accum: wgpu::Buffer,
}

impl Batch {
    /// Per key-head slot: its first member and how many members read it.
    fn groups(&self) -> impl Iterator<Item = (u32, u32, u32)> + '_ {
        self.members
            .chunk_by(|a, b| a.kv_slot == b.kv_slot)
            .scan(0u32, |first, group| {
                let z0 = *first;
                *first += group.len() as u32;
                Some((group[0].kv_slot, z0, group.len() as u32))
            })
    }
}

/// How the one-pass path cuts its work: heads per batch and query rows per chunk, so that a
/// batch's Q and K and a chunk's (row, pooled column) states each fit one binding and at most
/// an upload chunk's bytes.
#[derive(Clone, Copy)]
struct Cuts {
    d4: u32,
    slice: u32,
    /// Keys per window of the row kernel; 0: the tiled kernel computes the scores.
    window: u32,
    /// The row kernel's rows per invocation and keys per subgroup step (1 row, no subgroup
    /// step where the tiled kernel computes the scores).
    shape: RowKernelShape,
    /// Bytes of one head's padded Q, and between two key heads' starts in the K buffer (a
    /// whole number of row-kernel windows).
    head_q: u64,
    head_k: u64,
    batch: usize,
    chunk_rows: usize,
    /// What becomes of a chunk's scores.
    output: Output,
    /// Splits of the keys that a score dispatch per chunk takes side by side (workgroup y),
    /// `split_cols` pooled columns each ([`split_keys`]); 1: none, the keys go a window (or
    /// segment) per dispatch.
    splits: u32,
    split_cols: u32,
    /// Keys per split of `prob_rows` in a run that stores probabilities (0: the scores'
    /// splits, or none): a multiple of 16, so that each split's stores (a texel of 4 keys in
    /// the chunk texture) stay its own, which the lse run's columns do not promise.
    split_len: u32,
    /// [`Output::Stored`] probabilities go straight into a chunk texture that the ingest's
    /// pool pass reads ([`stores_in_texture`]), not into a buffer it copies from.
    probs_texture: bool,
}

/// What a run of the row kernel makes of a chunk's scores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Output {
    /// Pooled in place, never stored (`pool_fold`).
    Pooled,
    /// Every probability stored (one head per batch, a chunk within one binding) for the
    /// ingest's pool pass, which masks the keys past the diagonal: those are not written.
    Stored,
    /// Every probability stored to be read as it is: every entry written, masked ones as 0.
    Exact,
}

/// Whether stored probabilities of `cells` can go straight into the pool pass's chunk texture
/// (rows padded to whole texels, [`texture_stride`]; prob_rows writes whole texels), where the
/// adapter asks for it ([`Gpu::probs_in_texture`]): where no layer has a sliding window (keys
/// before it, which no row of a workgroup sees, would keep the texture's last chunk: a buffer
/// is cleared before each chunk instead). Otherwise the probabilities are copied from a buffer.
fn stores_in_texture(src: &QkSource, cells: &[(usize, usize)]) -> bool {
    cells
        .iter()
        .all(|&(layer, _)| super::KernelLayer::of(src, layer).window == 0)
}

/// Elements from one row's start to the next's in the chunk texture `prob_rows` writes: the
/// keys rounded up to a whole texel (`prob_stride` in `shaders/qk_probs_texture.wgsl`).
fn texture_stride(keys: usize) -> usize {
    keys.next_multiple_of(4)
}

/// Rows of `keys` f32 probabilities one binding (or chunk texture, its rows padded to a whole
/// texel) holds, whole workgroups of rows (0: not one).
fn probability_rows(gpu: &Gpu, keys: usize) -> usize {
    let max_binding = gpu.max_binding().min(max_chunk_bytes(gpu)) as usize;
    max_binding / (texture_stride(keys.max(1)) * 4) / TQ * TQ
}

/// Keys a split of the row kernel's keys takes at least ([`split_keys`]): a tile's worth, so
/// that a workgroup's walk amortizes its start (loading its rows' queries).
const MIN_SPLIT_KEYS: usize = 64;

/// Splits of `keys` keys for a chunk of the row kernel (`window` keys a window; 0: the tiled
/// kernel) whose rows are `row_groups` workgroups, and the pooled columns of each (of
/// `pooled_w`): enough splits to give one dispatch `target` workgroups (the adapter's
/// [`Gpu::qk_split_workgroups`]), whole columns each (a bin's state is then one workgroup's)
/// and at least [`MIN_SPLIT_KEYS`] keys each; for the tiled kernel, which walks a split's keys
/// as it walks a segment's, at most [`SEG_KEYS`] keys each. `(1, pooled_w)`, no split, for
/// runs whose probabilities are read as they are (`Output::Exact`: `attnviz attention`), a
/// target of 0, a single split, and tiled splits that columns wider than a segment allow no
/// other way. The row kernel keeps each split's row states in the lse binding: at most
/// `max_splits` of them.
fn split_keys(
    target: u32,
    window: u32,
    output: Output,
    (row_groups, max_splits): (usize, usize),
    pooled_w: usize,
    keys: usize,
) -> (u32, u32) {
    let none = (1, pooled_w as u32);
    let target = target as usize;
    if output == Output::Exact || target == 0 {
        return none;
    }
    let least = if window == 0 {
        keys.div_ceil(SEG_KEYS)
    } else {
        1
    };
    let most = (keys / MIN_SPLIT_KEYS).min(max_splits).clamp(1, pooled_w);
    let want = target.div_ceil(row_groups.max(1)).max(least).clamp(1, most);
    let cols = pooled_w.div_ceil(want);
    let splits = pooled_w.div_ceil(cols);
    // (the widest split: `cols` columns of at most ⌈keys / pooled_w⌉ keys)
    if splits == 1 || (window == 0 && cols * keys.div_ceil(pooled_w) > SEG_KEYS) {
        return none;
    }
    (splits as u32, cols as u32)
}

impl Cuts {
    /// Elements from one stored row's start to the next's in `probs` or `probs_tex`: the keys,
    /// padded to a whole texel in the texture ([`texture_stride`]).
    fn prob_stride(&self, keys: usize) -> usize {
        if self.probs_texture {
            texture_stride(keys)
        } else {
            keys
        }
    }

    fn new(gpu: &Gpu, src: &QkSource, run: &PoolRun<'_>, output: Output) -> Cuts {
        let materialize = output != Output::Pooled;
        let (d4, slice) = padded(src.dim());
        let window = window_keys(gpu, d4);
        let rows = src.rows().len();
        let pooled_w = run.geometry.pooled_w as usize;
        // (Q, the states and the row lse are also read through textures: one of those holds
        // at most `max_chunk_bytes`)
        let max_binding = gpu.max_binding().min(max_chunk_bytes(gpu));
        let head_q = (rows * d4 as usize * 16) as u64;
        // (at least the 16 keys the row kernel's binding declares when it is not used)
        let k_rows = src.all_keys().next_multiple_of(window.max(16) as usize);
        let head_k = (k_rows * d4 as usize * 16) as u64;
        // The per-(row, pooled column) states take at most the run's state bytes (but always
        // one workgroup's rows of one head): the rows of a chunk are a score dispatch's lanes.
        // Runs that store probabilities keep to the upload chunk's bytes as well; they keep one
        // pooled column, so what bounds their chunk is its rows × keys probabilities, which
        // fill one binding at most (`probability_rows`, below; twice that with the pool pass's
        // texture copy).
        let state_bytes = if materialize {
            run.state_bytes.min(run.chunk_bytes)
        } else {
            run.state_bytes
        };
        let inter_cap = state_bytes
            .min(max_binding)
            .max((TQ * pooled_w * 16) as u64);
        let batch = if materialize { 1 } else { MAX_BATCH }
            .min(run.cells.len())
            .min((max_binding / head_q) as usize)
            .min((max_binding / head_k) as usize)
            .min((inter_cap / (TQ * pooled_w * 16) as u64) as usize)
            .max(1);
        let mut chunk_rows = ((inter_cap / (batch * pooled_w * 16) as u64) as usize / TQ * TQ)
            .clamp(TQ, rows.next_multiple_of(TQ));
        if materialize {
            chunk_rows = chunk_rows.min(probability_rows(gpu, src.all_keys()).max(TQ));
        }
        // (the tiled kernel: one row, no subgroup step, in the row kernel it never runs)
        let shape = if window > 0 {
            RowKernelShape::new(gpu, d4)
        } else {
            RowKernelShape {
                rows: 1,
                shared_keys: 0,
            }
        };
        // (the row kernel's splits each keep the chunk's row states beside the rows' lse, in
        // one binding; the tiled kernel's keep nothing apart)
        let max_splits = if window > 0 {
            (max_binding / (batch * chunk_rows * 8) as u64).saturating_sub(1) as usize
        } else {
            usize::MAX
        };
        let (splits, split_cols) = split_keys(
            gpu.qk_split_workgroups,
            window,
            output,
            (
                chunk_rows.div_ceil(TQ * shape.rows as usize) * batch,
                max_splits,
            ),
            pooled_w,
            src.all_keys(),
        );
        let split_len = if materialize && splits > 1 {
            src.all_keys()
                .div_ceil(splits as usize)
                .next_multiple_of(16) as u32
        } else {
            0
        };
        Cuts {
            d4,
            slice,
            window,
            shape,
            head_q,
            head_k,
            batch,
            chunk_rows,
            output,
            splits,
            split_cols,
            split_len,
            probs_texture: output == Output::Stored
                && gpu.probs_in_texture
                && stores_in_texture(src, run.cells),
        }
    }
}

/// The buffers of one pooling run, made once and reused by every batch.
struct RunBuffers {
    /// The parameters of every dispatch of a chunk, one per `params_stride` bytes.
    params: wgpu::Buffer,
    params_stride: u64,
    q: wgpu::Buffer,
    k: wgpu::Buffer,
    /// Per member: (key head slot, accumulator index).
    heads: wgpu::Buffer,
    key_bin: wgpu::Buffer,
    col_edges: wgpu::Buffer,
    row_edges: wgpu::Buffer,
    /// Per (row, pooled column) of a chunk: max and min score, Σ exp2(s − max), count.
    inter: wgpu::Buffer,
    row_lse: wgpu::Buffer,
    /// The copy of `q` the row kernel reads.
    q_tex: ChunkTexture,
    /// A chunk's probabilities, rows of every key (a [`Cuts::output`] that stores them, not
    /// into `probs_tex`; else a stub).
    probs: wgpu::Buffer,
    /// The same, as the chunk texture the ingest's pool pass reads ([`Cuts::probs_texture`]).
    probs_tex: Option<ChunkTexture>,
}

impl RunBuffers {
    /// `q_window`: bytes of Q the statistics' key kernel reads at once, where the run has it
    /// (`pool::pattern_qk`): `q` is then also a uniform buffer, with that much room past its
    /// last head for a window at its end.
    fn new(
        gpu: &Gpu,
        src: &QkSource,
        geometry: CellGeometry,
        cuts: &Cuts,
        row_edges: &[u32],
        q_window: u64,
    ) -> Self {
        let device = &gpu.device;
        let keys = src.all_keys();
        let (batch, rows) = (cuts.batch as u64, cuts.chunk_rows as u64);
        let buffer = |label: &str, size: u64| {
            crate::gpu::buffer(
                device,
                label,
                size.max(16).next_multiple_of(16),
                wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_DST
                    | wgpu::BufferUsages::COPY_SRC,
            )
        };
        let init = |label: &str, data: &[u32]| {
            storage_buffer_init(
                device,
                label,
                bytemuck::cast_slice(data),
                wgpu::BufferUsages::empty(),
            )
        };
        // The most dispatches a chunk records: a window (or segment) per key head of the batch
        // over every key, the lse and fold passes, and prob_rows over split keys.
        let per_step = if cuts.window > 0 {
            cuts.window as usize
        } else {
            SEG_KEYS
        };
        let steps = ((keys.div_ceil(per_step) + 2) * cuts.batch + 2) as u64;
        let params_stride = (std::mem::size_of::<Params>() as u64)
            .next_multiple_of(u64::from(gpu.limits.min_uniform_buffer_offset_alignment));
        let inter_bytes = (batch * rows * geometry.pooled_w as u64 * 16).max(16);
        // (with split keys, each split's row states after the rows' lse)
        let parts = if cuts.splits > 1 {
            1 + u64::from(cuts.splits)
        } else {
            1
        };
        let lse_bytes = (batch * rows * 8 * parts).next_multiple_of(16);
        let col_edges = bin_edges(keys, geometry.pooled_w);
        let key_bin: Vec<u32> = (0..keys as u32).map(|k| bin_of(&col_edges, k)).collect();
        let in_buffer = cuts.output != Output::Pooled && !cuts.probs_texture;
        let stride = cuts.prob_stride(keys);
        let prob_bytes = (rows * stride as u64 * 4).next_multiple_of(16);
        let buffers = RunBuffers {
            params: crate::gpu::buffer(
                device,
                "attnviz.qk_pool.params",
                params_stride * steps,
                wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            ),
            params_stride,
            q: crate::gpu::buffer(
                device,
                "attnviz.qk_pool.q",
                (batch * cuts.head_q + q_window).next_multiple_of(16),
                wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_DST
                    | wgpu::BufferUsages::COPY_SRC
                    | if q_window > 0 {
                        wgpu::BufferUsages::UNIFORM
                    } else {
                        wgpu::BufferUsages::empty()
                    },
            ),
            // read whole by the tiled kernel, a window at a time by the row kernel
            k: crate::gpu::buffer(
                device,
                "attnviz.qk_pool.k",
                batch * cuts.head_k,
                wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::UNIFORM
                    | wgpu::BufferUsages::COPY_DST,
            ),
            heads: buffer("attnviz.qk_pool.heads", batch * 16),
            key_bin: init("attnviz.qk_pool.key_bin", &key_bin),
            col_edges: init("attnviz.qk_pool.col_edges", &col_edges),
            row_edges: init("attnviz.qk_pool.row_edges", row_edges),
            inter: buffer("attnviz.qk_pool.inter", inter_bytes),
            row_lse: buffer("attnviz.qk_pool.row_lse", lse_bytes),
            q_tex: ChunkTexture::new(gpu, batch * cuts.head_q),
            probs: crate::gpu::buffer(
                device,
                "attnviz.qk_pool.probs",
                if in_buffer { prob_bytes } else { 16 },
                // cleared before a chunk with a sliding window (or read as it is), read through
                // the pool pass's chunk texture or copied out
                wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_DST
                    | wgpu::BufferUsages::COPY_SRC,
            ),
            probs_tex: cuts
                .probs_texture
                .then(|| ChunkTexture::new(gpu, prob_bytes)),
        };
        buffers.initialize(gpu);
        buffers
    }

    /// Submits the zero-fill that wgpu would otherwise do in the first chunk's submission
    /// (storage it cannot prove written before read, textures before their first partial
    /// copy) now, before the pipelines are compiled: the device fills (and, on a CPU adapter,
    /// first touches: 64 MiB of states) while the host compiles.
    fn initialize(&self, gpu: &Gpu) {
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        encoder.clear_buffer(&self.inter, 0, None);
        encoder.clear_buffer(&self.row_lse, 0, None);
        for t in std::iter::once(&self.q_tex).chain(&self.probs_tex) {
            t.prime(&mut encoder, &self.inter);
        }
        gpu.submit([encoder.finish()]);
    }
}

/// One pooling run of the one-pass path: what every batch shares.
struct OnePass<'a> {
    gpu: &'a Gpu,
    src: &'a QkSource,
    geometry: CellGeometry,
    kernels: Arc<Kernels>,
    /// The run's values are logits (no softmax), and rows are normalized (--norm row).
    logits: bool,
    row_norm: bool,
    cuts: Cuts,
    buffers: RunBuffers,
    row_edges: Vec<u32>,
    /// The pooled columns' first keys (and the keys' end).
    col_edges: Vec<u32>,
    /// The parameters every dispatch starts from.
    base: Params,
    /// Host staging for heads whose dimension is padded, reused.
    scratch: Vec<f32>,
    /// A head's Q or K as read and as f32, reused by every upload: two fresh buffers a head,
    /// each faulted in, cost a fresh process more than the copies themselves.
    head_f32: F32Rows,
}

impl<'a> OnePass<'a> {
    fn new(
        gpu: &'a Gpu,
        pipes: &TiledPipelines,
        src: &'a QkSource,
        run: &PoolRun<'_>,
        output: Output,
        q_window: u64,
    ) -> Self {
        let geometry = run.geometry;
        let cuts = Cuts::new(gpu, src, run, output);
        let rows = src.rows().len();
        let row_edges = bin_edges(rows, geometry.pooled_h);
        // (first: the device initializes them while the host compiles the kernels)
        let buffers = RunBuffers::new(gpu, src, geometry, &cuts, &row_edges, q_window);
        OnePass {
            gpu,
            src,
            geometry,
            buffers,
            kernels: pipes.kernels(&gpu.device, &cuts),
            logits: src.values() == Values::Logits,
            row_norm: run.options.row_norm,
            row_edges,
            col_edges: bin_edges(src.all_keys(), geometry.pooled_w),
            base: Params {
                q_rows: rows as u32,
                keys: src.all_keys() as u32,
                flags: if src.causal() { FLAG_CAUSAL } else { 0 },
                diagonal: src.key_diagonal() as i32,
                pooled_w: geometry.pooled_w,
                px: geometry.pooled_pixels() as u32,
                inter_rows: cuts.chunk_rows as u32,
                splits: cuts.splits,
                split_cols: cuts.split_cols,
                part_stride: (cuts.batch * cuts.chunk_rows) as u32,
                // (for the scores and the lse; prob_rows takes `Cuts::split_len`)
                ..Default::default()
            },
            cuts,
            scratch: Vec::new(),
            head_f32: F32Rows::default(),
        }
    }

    /// A batch of query head (`layer`, `head`) alone, its accumulators in `accum`.
    fn single(&self, layer: usize, head: usize, accum: wgpu::Buffer) -> Batch {
        Batch {
            layer,
            members: vec![Member {
                head,
                kv_slot: 0,
                accum: 0,
            }],
            kv_heads: vec![self.src.kv_head(head)],
            accum,
        }
    }

    /// The batch starting at cell `first`, and the cell after it.
    fn next_batch(
        &self,
        cells: &[(usize, usize)],
        first: usize,
        ingest: &mut Ingest,
    ) -> (Batch, usize) {
        let layer = cells[first].0;
        let (accum, accum0) = ingest.resident_accum(first);
        let mut batch = Batch {
            layer,
            members: Vec::new(),
            kv_heads: Vec::new(),
            accum,
        };
        let mut end = first;
        while end < cells.len() && batch.members.len() < self.cuts.batch && cells[end].0 == layer {
            let (_, idx) = ingest.resident_accum(end);
            if idx != accum0 + (end - first) {
                break;
            }
            let kv = self.src.kv_head(cells[end].1);
            let slot = match batch.kv_heads.iter().position(|&h| h == kv) {
                Some(s) => s,
                None => {
                    batch.kv_heads.push(kv);
                    batch.kv_heads.len() - 1
                }
            };
            batch.members.push(Member {
                head: cells[end].1,
                kv_slot: slot as u32,
                accum: idx as u32,
            });
            end += 1;
        }
        batch.members.sort_by_key(|m| m.kv_slot);
        (batch, end)
    }

    /// Writes `values` (rows of the head dimension) at `offset` of `target`, each row padded
    /// to the shader's vec4 count.
    fn upload(&mut self, target: &wgpu::Buffer, offset: u64, values: &[f32]) {
        let d = self.src.dim();
        let padded_d = self.cuts.d4 as usize * 4;
        let data: &[f32] = if padded_d == d {
            values
        } else {
            self.scratch.clear();
            self.scratch.resize(values.len() / d * padded_d, 0.0);
            for (dst, v) in self
                .scratch
                .chunks_exact_mut(padded_d)
                .zip(values.chunks_exact(d))
            {
                dst[..d].copy_from_slice(v);
            }
            &self.scratch
        };
        self.gpu
            .queue
            .write_buffer(target, offset, bytemuck::cast_slice(data));
    }

    /// Uploads the batch's query heads, its key heads once each, and its head table; false,
    /// with nothing pooled, when a value is not finite (the one-pass fold has no NaN rows).
    fn upload_batch(&mut self, batch: &Batch) -> Result<bool> {
        let _span = tracing::info_span!("qk.upload").entered();
        let (src, layer) = (self.src, batch.layer);
        let (q, k) = (self.buffers.q.clone(), self.buffers.k.clone());
        let mut buf = std::mem::take(&mut self.head_f32);
        for (z, m) in batch.members.iter().enumerate() {
            let values = src.queries_into(layer, m.head, src.rows(), &mut buf)?;
            if !values.iter().all(|v| v.is_finite()) {
                return Ok(false);
            }
            self.upload(&q, z as u64 * self.cuts.head_q, values);
        }
        // (the row kernel reads Q through its texture copy)
        let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
        let bytes = batch.members.len() as u64 * self.cuts.head_q;
        self.buffers.q_tex.copy_from(&mut encoder, &q, 0, bytes);
        self.gpu.submit([encoder.finish()]);
        for (slot, &kv) in batch.kv_heads.iter().enumerate() {
            // Any query head of the group names its key head.
            let head = batch
                .members
                .iter()
                .find(|m| m.kv_slot as usize == slot)
                .map_or(0, |m| m.head);
            debug_assert_eq!(src.kv_head(head), kv);
            let values = src.keys_into(layer, head, &mut buf)?;
            if !values.iter().all(|v| v.is_finite()) {
                return Ok(false);
            }
            self.upload(&k, slot as u64 * self.cuts.head_k, values);
        }
        self.head_f32 = buf;
        // Sink logits in base 2; -f32::MAX (none) adds exp2(-MAX) = 0 to the denominator.
        let params = src.layer(layer);
        let table: Vec<[u32; 4]> = batch
            .members
            .iter()
            .map(|m| {
                let sink = params
                    .sink(m.head)
                    .map_or(-f32::MAX, |s| s * std::f32::consts::LOG2_E);
                [m.kv_slot, m.accum, sink.to_bits(), 0]
            })
            .collect();
        self.gpu
            .queue
            .write_buffer(&self.buffers.heads, 0, bytemuck::cast_slice(&table));
        Ok(true)
    }

    fn bind_group(&self, accum: &wgpu::Buffer) -> wgpu::BindGroup {
        let b = &self.buffers;
        self.kernels.kernel.bind_group(
            &self.gpu.device,
            &[
                wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &b.params,
                    offset: 0,
                    size: NonZeroU64::new(std::mem::size_of::<Params>() as u64),
                }),
                b.q.as_entire_binding(),
                b.k.as_entire_binding(),
                b.heads.as_entire_binding(),
                b.key_bin.as_entire_binding(),
                b.col_edges.as_entire_binding(),
                b.row_edges.as_entire_binding(),
                b.inter.as_entire_binding(),
                b.row_lse.as_entire_binding(),
                accum.as_entire_binding(),
                wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &b.k,
                    offset: 0,
                    size: NonZeroU64::new(self.window_bytes()),
                }),
                wgpu::BindingResource::TextureView(&b.q_tex.view),
                match &b.probs_tex {
                    Some(t) => wgpu::BindingResource::TextureView(&t.view),
                    None => b.probs.as_entire_binding(),
                },
            ],
        )
    }

    /// Bytes of the row kernel's window binding (one window of the tiled kernel's `head_k`
    /// when the tiled kernel computes the scores: the binding is then never read).
    fn window_bytes(&self) -> u64 {
        u64::from(self.cuts.window.max(16)) * 16 * u64::from(self.cuts.d4)
    }

    /// The pipelines of `layer`'s heads, compiled on first use.
    fn pipes(&self, layer: usize) -> Arc<Pipes> {
        let k = super::KernelLayer::of(self.src, layer);
        self.kernels.pipes(
            &self.gpu.device,
            Mode {
                softcap: k.softcap > 0.0,
                logits: self.logits,
                // (stored probabilities are normalized by the pool pass that reads them)
                row_norm: self.row_norm && self.cuts.output == Output::Pooled,
                materialize: self.cuts.output != Output::Pooled,
                split: self.cuts.splits > 1,
            },
        )
    }

    /// The scores, lse and fold passes of rows `start..start + len` for every member, in one
    /// submission: keys in segments of [`SEG_KEYS`] (short dispatches) or windows of the row
    /// kernel, only as far as the chunk's last row sees. Each dispatch reads its own
    /// parameters at a dynamic offset of one buffer written once: a submission per window cost
    /// the queue about a millisecond each on llvmpipe, with both workers idle.
    fn pool_chunk(&self, bind_group: &wgpu::BindGroup, batch: &Batch, start: usize, len: usize) {
        let (layer, members) = (batch.layer, batch.members.len() as u32);
        let (src, keys) = (self.src, self.src.all_keys());
        let k = super::KernelLayer::of(src, layer);
        let chunk = Params {
            rows: len as u32,
            row_start: start as u32,
            scale: k.scale,
            window: k.window,
            softcap: k.softcap,
            ..self.base
        };
        let pipes = self.pipes(layer);
        // The oldest key the chunk's first row sees (a sliding window), on the tile grid:
        // segments before it are skipped.
        let oldest = src.visible(layer, start).start;
        // Keys the chunk's last row sees, the most of any of its rows.
        let seen = src.visible(layer, start + len - 1).end;
        let groups = len.div_ceil(TQ) as u32;
        // (the row kernels take `rows` query rows per invocation)
        let row_groups = len.div_ceil(TQ * self.cuts.shape.rows as usize) as u32;
        let window = self.cuts.window as usize;
        let score_groups = if window > 0 { row_groups } else { groups };
        let chunk = Params {
            row_perm: spread_order(score_groups),
            ..chunk
        };
        // Each score dispatch: its parameters, the byte of K its window starts at, and the
        // heads it takes.
        let mut steps: Vec<(Params, u32, u32)> = Vec::new();
        // (split keys: one dispatch, the splits up to the last row's keys; the workgroups of
        // splits before a sliding window find nothing to do)
        let split_groups = if self.cuts.splits > 1 {
            seen.checked_sub(1).map_or(0, |last| {
                bin_of(&self.col_edges, last as u32) / self.cuts.split_cols + 1
            })
        } else {
            1
        };
        if self.cuts.splits > 1 {
            // (every head of the batch: each workgroup finds its key head in `k`)
            let p = Params {
                seg_start: 0,
                seg_end: keys as u32,
                ..chunk
            };
            steps.push((p, 0, members));
        } else if let Some(first) = oldest.checked_div(window) {
            let key_bytes = 16 * u64::from(self.cuts.d4);
            for ws in (first * window..seen).step_by(window) {
                for (slot, member0, count) in batch.groups() {
                    let p = Params {
                        seg_start: ws as u32,
                        seg_end: (ws + window).min(keys) as u32,
                        member0,
                        ..chunk
                    };
                    let offset = u64::from(slot) * self.cuts.head_k + ws as u64 * key_bytes;
                    steps.push((p, offset as u32, count));
                }
            }
        } else {
            for seg in (oldest / TK * TK..seen).step_by(SEG_KEYS) {
                let p = Params {
                    seg_start: seg as u32,
                    seg_end: (seg + SEG_KEYS).min(keys) as u32,
                    ..chunk
                };
                steps.push((p, 0, members));
            }
        }
        let y0 = bin_of(&self.row_edges, start as u32);
        let y1 = bin_of(&self.row_edges, (start + len - 1) as u32);
        let last = Params {
            y_start: y0,
            ..chunk
        };
        // prob_rows' splits in a stored run: whole texels each (`Cuts::split_len`).
        let probs = Params {
            split_len: self.cuts.split_len,
            ..steps.first().map_or(chunk, |s| s.0)
        };
        // Every dispatch's parameters, one per `params_stride` bytes, the lse and fold's next
        // to last, prob_rows' with split keys last.
        let stride = self.buffers.params_stride as usize;
        let mut bytes = vec![0u8; (steps.len() + 2) * stride];
        for (i, p) in steps
            .iter()
            .map(|s| &s.0)
            .chain([&last, &probs])
            .enumerate()
        {
            bytes[i * stride..][..std::mem::size_of::<Params>()]
                .copy_from_slice(bytemuck::bytes_of(p));
        }
        let gpu = self.gpu;
        gpu.queue.write_buffer(&self.buffers.params, 0, &bytes);
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = gpu.compute_pass(&mut encoder, "attnviz.qk.scores");
            pass.set_pipeline(&pipes.scores);
            for (i, (_, offset, count)) in steps.iter().enumerate() {
                pass.set_bind_group(0, bind_group, &[(i * stride) as u32, *offset]);
                pass.dispatch_workgroups(score_groups, split_groups, *count);
            }
        }
        let offsets = [(steps.len() * stride) as u32, 0];
        if !self.logits {
            // (logits need no softmax denominator; the row kernel kept each row's running
            // sum, the tiled one left it in the columns' states)
            let mut pass = gpu.compute_pass(&mut encoder, "attnviz.qk.lse");
            pass.set_bind_group(0, bind_group, &offsets);
            pass.set_pipeline(&pipes.lse);
            pass.dispatch_workgroups(groups, 1, members);
        }
        let b = &self.buffers;
        let fold = match &pipes.then {
            Then::Fold(fold) => fold,
            Then::Probs(probs) => {
                // Every probability instead of the fold: the same windows, the same parameters.
                // Keys a workgroup's rows do not see are not written: past the diagonal they are
                // masked by every pass that reads the chunk (stale values included), but keys
                // before a sliding window must read 0 (the statistics count them as entries), and
                // so must every masked entry read as it is.
                // (a chunk texture is only written where no layer has a window, see
                // `stores_in_texture`)
                if k.window > 0 || self.cuts.output == Output::Exact {
                    // (the chunk's rows only: a reader's blocks are often far smaller than the
                    // buffer)
                    let bytes = (len * keys * 4) as u64;
                    encoder.clear_buffer(&b.probs, 0, Some(bytes));
                }
                let mut pass = gpu.compute_pass(&mut encoder, "attnviz.qk.probs");
                pass.set_pipeline(probs);
                if self.cuts.split_len > 0 {
                    // (the splits up to the chunk's last row's keys)
                    let at = ((steps.len() + 1) * stride) as u32;
                    pass.set_bind_group(0, bind_group, &[at, 0]);
                    let y = seen.div_ceil(self.cuts.split_len as usize) as u32;
                    pass.dispatch_workgroups(row_groups, y, members);
                } else {
                    for (i, (_, offset, count)) in steps.iter().enumerate() {
                        pass.set_bind_group(0, bind_group, &[(i * stride) as u32, *offset]);
                        pass.dispatch_workgroups(row_groups, split_groups, *count);
                    }
                }
                drop(pass);
                gpu.submit([encoder.finish()]);
                return;
            }
        };
        // (the fold reads the states and row lse where they are, shaders/qk_pool.wgsl says why)
        {
            let mut pass = gpu.compute_pass(&mut encoder, "attnviz.qk.fold");
            pass.set_bind_group(0, bind_group, &offsets);
            pass.set_pipeline(fold);
            pass.dispatch_workgroups(self.geometry.pooled_w.div_ceil(64), y1 - y0 + 1, members);
        }
        gpu.submit([encoder.finish()]);
    }
}

/// Pools `run.cells` of `src` into `ingest`'s accumulators (see the module docs); `ingest`
/// must have been made for `src`'s shape, `run.geometry` and these cells. Masking follows the
/// source. False when Q or K holds a non-finite value: the accumulators are then incomplete,
/// and the caller takes the two-pass path instead.
pub(crate) fn pool_into(
    gpu: &Gpu,
    pipes: &TiledPipelines,
    src: &QkSource,
    run: &PoolRun<'_>,
    ingest: &mut Ingest,
) -> Result<bool> {
    pool_run(gpu, pipes, src, run, ingest, Output::Pooled, None)
}

/// Rows of each piece of the statistics from Q and K that [`pool_with_patterns`] takes for
/// `src` into `ingest` (made for its cells, with pattern statistics) on `gpu`, or `None` where
/// it does not: where [`pool_into`] takes `src` with the row kernel, its values are
/// probabilities (not logits), the K vectors of 16 keys fit [`Gpu::pattern_key_vec4s`], each
/// query head's rows start on a uniform offset of the Q buffer (a window of Q is bound at one)
/// and the ingest has statistics (`Ingest::qk_pattern_rows`).
pub(crate) fn pattern_rows(
    gpu: &Gpu,
    src: &QkSource,
    geometry: CellGeometry,
    ingest: &Ingest,
) -> Option<usize> {
    let (d4, _) = padded(src.dim());
    let head_q = (src.rows().len() * d4 as usize * 16) as u64;
    let aligned = head_q.is_multiple_of(u64::from(gpu.limits.min_uniform_buffer_offset_alignment))
        && (16 * d4 as usize * 16)
            .is_multiple_of(gpu.limits.min_uniform_buffer_offset_alignment as usize);
    let takes = applies(gpu, src, geometry)
        && window_keys(gpu, d4) > 0
        && src.values() == Values::Probs
        && 16 * d4 <= gpu.pattern_key_vec4s
        && aligned;
    if !takes {
        return None;
    }
    ingest.qk_pattern_rows(d4)
}

/// Pools `run.cells` of `src` into `ingest`'s accumulators as [`pool_into`] does, and their
/// pattern statistics from the same run: after each chunk of rows is pooled, the statistics'
/// key kernel computes its scores again with the lse the row kernel left for each row
/// (`pool::pattern_qk`), pieces of `rows` rows (from [`pattern_rows`]). Two score passes, as
/// [`pool_materialized`], and no probability stored, copied or read back; the figure is the
/// one [`pool_into`] makes without the statistics. False, as [`pool_into`], for a non-finite
/// Q or K.
pub(crate) fn pool_with_patterns(
    gpu: &Gpu,
    pipes: &TiledPipelines,
    src: &QkSource,
    run: &PoolRun<'_>,
    ingest: &mut Ingest,
    rows: usize,
) -> Result<bool> {
    pool_run(gpu, pipes, src, run, ingest, Output::Pooled, Some(rows))
}

/// Whether [`pool_materialized`] takes `src` into `geometry` on `gpu`: where [`applies`] holds,
/// the row kernel computes the scores, and a workgroup's rows of probabilities fit a binding.
pub(crate) fn materializes(gpu: &Gpu, src: &QkSource, geometry: CellGeometry) -> bool {
    let (d4, _) = padded(src.dim());
    applies(gpu, src, geometry)
        && window_keys(gpu, d4) > 0
        && probability_rows(gpu, src.all_keys()) >= TQ
}

/// Pools `run.cells` of `src` through `ingest` from every probability, for runs that need each
/// entry (pattern statistics): per chunk of rows, the row kernel's scores give each row's lse
/// as in [`pool_into`], `prob_rows` stores the chunk's probabilities on the device, and the
/// ingest's pool pass reads them from there, statistics and all. One score pass more than
/// [`pool_into`], no fold, and nothing read back to the host; the two-pass path's kernels
/// compute the same probabilities several times slower. False, as [`pool_into`], for a
/// non-finite Q or K; call only where [`materializes`] holds.
pub(crate) fn pool_materialized(
    gpu: &Gpu,
    pipes: &TiledPipelines,
    src: &QkSource,
    run: &PoolRun<'_>,
    ingest: &mut Ingest,
) -> Result<bool> {
    // The row kernel is run for the rows' lse only: one pooled column, so its per-column
    // states cost nothing (narrow columns cost it half its time); or, where the adapter splits
    // the keys among workgroups, up to 64 columns of MIN_SPLIT_KEYS keys or more, whole
    // columns a split.
    let keys = src.all_keys();
    let geometry = CellGeometry {
        pooled_w: if gpu.qk_split_workgroups > 0 {
            (keys / MIN_SPLIT_KEYS).clamp(1, 64) as u32
        } else {
            1
        },
        ..run.geometry
    };
    let run = PoolRun { geometry, ..*run };
    pool_run(gpu, pipes, src, &run, ingest, Output::Stored, None)
}

/// [`pool_into`], [`pool_with_patterns`] (`pattern_rows`: its pieces' rows) and
/// [`pool_materialized`]: batch after batch, chunk after chunk of rows, the chunk's scores
/// pooled in place (and their statistics taken) or stored for `ingest` to pool.
fn pool_run(
    gpu: &Gpu,
    pipes: &TiledPipelines,
    src: &QkSource,
    run: &PoolRun<'_>,
    ingest: &mut Ingest,
    output: Output,
    pattern_rows: Option<usize>,
) -> Result<bool> {
    let cells = run.cells;
    let (rows, keys) = (src.rows().len(), src.all_keys());
    let (d4, _) = padded(src.dim());
    let q_window = pattern_rows.map_or(0, |_| (window_rows(gpu, d4) * d4 as usize * 16) as u64);
    let mut pass = OnePass::new(gpu, pipes, src, run, output, q_window);
    // The first layer's pipelines now, before any upload: the device does the buffers' first
    // fill meanwhile (a submission waits for the one before it on some drivers, llvmpipe's).
    // The ingest's pipelines for the stored rows beside them, on another thread.
    if let Some(&(layer, _)) = cells.first() {
        let stride = pass.cuts.prob_stride(keys);
        let warmer = (output == Output::Stored).then(|| ingest.pipeline_warmer(stride));
        let softcap = super::KernelLayer::of(src, layer).softcap != 0.0;
        std::thread::scope(|scope| {
            if let Some(w) = &warmer {
                scope.spawn(|| w.compile());
            }
            // (the statistics' key kernel beside them)
            if pattern_rows.is_some() {
                let (g, p) = (ingest.gpu, ingest.pipes);
                scope.spawn(move || {
                    p.pattern
                        .qk
                        .pass(g, d4, softcap)
                        .warm(&g.device, &p.pattern)
                });
            }
            pass.pipes(layer);
        });
    }
    let fused = pattern_rows.map(|r| FusedPatterns::new(gpu, &pass, ingest, r));
    let total = (cells.len() * rows * keys * 4) as u64;
    let mut first = 0;
    while first < cells.len() {
        let (batch, end) = pass.next_batch(cells, first, ingest);
        if !pass.upload_batch(&batch)? {
            return Ok(false);
        }
        let bind_group = pass.bind_group(&batch.accum);
        let members = batch.members.len();
        for start in (0..rows).step_by(pass.cuts.chunk_rows) {
            let len = pass.cuts.chunk_rows.min(rows - start);
            pass.pool_chunk(&bind_group, &batch, start, len);
            if let Some(f) = &fused {
                f.chunk(&pass, ingest, &batch, first, start, len);
            }
            if let Some(tex) = &pass.buffers.probs_tex {
                // (one head per batch)
                ingest.pool_in_texture(first, start, len, tex, pass.cuts.prob_stride(keys))?;
            } else if output == Output::Stored {
                ingest.pool_resident(first, start, len, &pass.buffers.probs, 0)?;
            } else {
                ingest.consumed += (members * len * keys * 4) as u64;
            }
            if let Some(p) = run.progress {
                p(ingest.consumed, total);
            }
        }
        first = end;
    }
    Ok(true)
}

/// A run's pattern statistics from Q and K (`pool::pattern_qk`): the parameters of a chunk's
/// `pattern_qk` dispatches, one per member and piece at `stride` bytes, and their group 1.
struct FusedPatterns {
    params: wgpu::Buffer,
    stride: usize,
    bind_group: wgpu::BindGroup,
    /// Rows of a piece.
    rows: usize,
}

impl FusedPatterns {
    fn new(gpu: &Gpu, pass: &OnePass<'_>, ingest: &Ingest, rows: usize) -> FusedPatterns {
        let stride = std::mem::size_of::<QkPatternParams>()
            .next_multiple_of(gpu.limits.min_uniform_buffer_offset_alignment as usize);
        let entries = pass.cuts.batch * pass.cuts.chunk_rows.div_ceil(rows);
        let params = crate::gpu::buffer(
            &gpu.device,
            "attnviz.pattern_qk.params",
            (entries * stride) as u64,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        );
        let b = &pass.buffers;
        let qp = ingest.qk_pattern_pass(pass.cuts.d4, false);
        let bind_group = qp.bind_group(&gpu.device, &params, &b.q, &b.k, &b.row_lse);
        FusedPatterns {
            params,
            stride,
            bind_group,
            rows,
        }
    }

    /// The statistics of the chunk of `len` rows from `start` of each member of `batch`, whose
    /// cells are consecutive from `first` (the chunk pooled: its rows' lse are in `row_lse`),
    /// into `ingest`.
    fn chunk(
        &self,
        pass: &OnePass<'_>,
        ingest: &mut Ingest,
        batch: &Batch,
        first: usize,
        start: usize,
        len: usize,
    ) {
        // (members' accumulator indices are consecutive from the first cell's)
        let accum0 = batch.members.iter().map(|m| m.accum).min().unwrap_or(0);
        let cell = |m: &Member| first + (m.accum - accum0) as usize;
        let (src, cuts) = (pass.src, &pass.cuts);
        let k = super::KernelLayer::of(src, batch.layer);
        let qp = ingest.qk_pattern_pass(cuts.d4, k.softcap != 0.0);
        let pieces = len.div_ceil(self.rows);
        let mut bytes = vec![0u8; batch.members.len() * pieces * self.stride];
        let mut calls = Vec::with_capacity(batch.members.len() * pieces);
        for (z, m) in batch.members.iter().enumerate() {
            for j in 0..pieces {
                let e = z * pieces + j;
                let row0 = start + j * self.rows;
                let p = QkPatternParams {
                    scale: k.scale,
                    softcap: k.softcap,
                    diagonal: pass.base.diagonal,
                    causal: u32::from(src.causal()),
                    window: k.window,
                    kbase: (u64::from(m.kv_slot) * cuts.head_k / 16) as u32,
                    lse_row0: (z * cuts.chunk_rows + j * self.rows) as u32,
                    _pad: 0,
                };
                bytes[e * self.stride..][..std::mem::size_of::<QkPatternParams>()]
                    .copy_from_slice(bytemuck::bytes_of(&p));
                let q = z as u64 * cuts.head_q + (row0 * cuts.d4 as usize * 16) as u64;
                let n = self.rows.min(start + len - row0);
                calls.push(([(e * self.stride) as u32, q as u32], (cell(m), row0, n)));
            }
        }
        pass.gpu.queue.write_buffer(&self.params, 0, &bytes);
        for (offsets, piece) in calls {
            ingest.pattern_qk(&qp, &self.bind_group, offsets, piece);
        }
    }
}

/// Every probability of a head's rows from the row kernel, for readers of whole blocks
/// (`attnviz attention`, sources made of Q and K: `pool::qk::QkReader`): per chunk of rows, one
/// pass over the scores for the rows' lse and one that stores their probabilities, several
/// times faster than the two-pass kernels (which stay for heads the row kernel does not take,
/// zoomed key ranges, and non-finite Q or K).
pub(crate) struct RowReader<'a> {
    pass: OnePass<'a>,
    bind_group: wgpu::BindGroup,
    /// The row kernel's accumulator binding, never written by this run.
    accum: wgpu::Buffer,
    /// The query head whose Q and K are on the device, and whether they are finite.
    loaded: Option<((usize, usize), bool)>,
}

impl<'a> RowReader<'a> {
    /// A reader of `src`'s rows, where the row kernel takes `src` on `gpu`.
    pub(crate) fn new(gpu: &'a Gpu, pipes: &TiledPipelines, src: &'a QkSource) -> Option<Self> {
        // (one pooled column: the lse pass keeps no column states to speak of)
        let geometry = CellGeometry {
            display_w: 1,
            display_h: 1,
            pooled_w: 1,
            pooled_h: 1,
        };
        if !materializes(gpu, src, geometry) {
            return None;
        }
        let cells = [(0, 0)];
        let run = PoolRun {
            cells: &cells,
            geometry,
            options: Default::default(),
            chunk_bytes: crate::pool::CHUNK_TARGET,
            state_bytes: gpu.qk_state_bytes,
            progress: None,
            patterns: None,
            pooled: true,
        };
        let pass = OnePass::new(gpu, pipes, src, &run, Output::Exact, 0);
        let accum = crate::gpu::buffer(
            &gpu.device,
            "attnviz.qk_pool.accum_unused",
            64,
            wgpu::BufferUsages::STORAGE,
        );
        Some(RowReader {
            bind_group: pass.bind_group(&accum),
            accum,
            pass,
            loaded: None,
        })
    }

    /// Rows one [`RowReader::compute`] takes at most.
    pub(crate) fn max_rows(&self) -> usize {
        self.pass.cuts.chunk_rows
    }

    /// Submits the probabilities of computed rows `start..start + len` (at most
    /// [`RowReader::max_rows`]) of query head (`layer`, `head`), every key of each row, to
    /// land in [`RowReader::probabilities`] (copy them out after this, on the same queue).
    /// False, with nothing submitted, when the head's Q or K holds a non-finite value.
    pub(crate) fn compute(
        &mut self,
        layer: usize,
        head: usize,
        start: usize,
        len: usize,
    ) -> Result<bool> {
        let batch = self.pass.single(layer, head, self.accum.clone());
        match self.loaded {
            Some((h, finite)) if h == (layer, head) => {
                if !finite {
                    return Ok(false);
                }
            }
            _ => {
                let finite = self.pass.upload_batch(&batch)?;
                self.loaded = Some(((layer, head), finite));
                if !finite {
                    return Ok(false);
                }
            }
        }
        self.pass.pool_chunk(&self.bind_group, &batch, start, len);
        Ok(true)
    }

    /// Where [`RowReader::compute`] leaves its rows, each of every key, from byte 0.
    pub(crate) fn probabilities(&self) -> &wgpu::Buffer {
        &self.pass.buffers.probs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keys_fill_the_target_with_whole_columns() {
        let split = |target, row_groups, pooled_w, keys| {
            split_keys(
                target,
                256,
                Output::Pooled,
                (row_groups, 1 << 20),
                pooled_w,
                keys,
            )
        };
        // A 32k head at 2 rows a lane (256 workgroups of rows) into a 1024-px cell: 16 splits
        // of 64 columns, 4096 workgroups.
        assert_eq!(split(4096, 256, 1024, 32768), (16, 64));
        // Rows enough already, a target of 0, a single column: none.
        assert_eq!(split(4096, 8192, 1024, 32768), (1, 1024));
        assert_eq!(split(0, 256, 1024, 32768), (1, 1024));
        assert_eq!(
            split_keys(4096, 256, Output::Stored, (256, 1 << 20), 1, 32768),
            (1, 1)
        );
        // The row kernel's splits fit their row states into one binding: 16 wanted, 5 fit.
        let parts = split_keys(4096, 256, Output::Pooled, (256, 5), 1024, 32768);
        assert_eq!(parts, (5, 205));
        // The tiled kernel: 8 heads of 8192 tokens into 256-px cells (qk-model) are 1024
        // workgroups of 64 rows: 4 splits. At most SEG_KEYS (8192) keys a split: a 32k head
        // with rows enough for 1 split takes 4; one 32768-key column cannot be split.
        let tiled = |target, row_groups, pooled_w, keys| {
            split_keys(
                target,
                0,
                Output::Pooled,
                (row_groups, usize::MAX),
                pooled_w,
                keys,
            )
        };
        assert_eq!(tiled(4096, 1024, 256, 8192), (4, 64));
        assert_eq!(tiled(4096, 8192, 1024, 32768), (4, 256));
        assert_eq!(tiled(4096, 8192, 1, 32768), (1, 1));
        assert_eq!(tiled(4096, 8192, 3, 32768), (1, 3));
        // At least 64 keys a split, at most a column each; uneven columns: the last split
        // takes the rest.
        assert_eq!(split(1 << 20, 1, 50, 200), (3, 17));
        assert_eq!(split(1 << 20, 1, 64, 9000), (64, 1));
        assert_eq!(split(1 << 20, 1, 1024, 63), (1, 1024));
        for (target, groups, w, keys) in [(4096, 7, 1000, 5000), (100, 3, 23, 200), (9, 1, 7, 7)] {
            let (s, cols) = split(target, groups, w, keys);
            assert!(s >= 1 && (s - 1) * cols < w as u32 && s * cols >= w as u32);
        }
    }

    #[test]
    fn row_loops_are_written_out_with_constant_rows() {
        let src = "a; for (var h = 0u; h < R; h++) { if x[h] { y[h] = 1u; } } b; \
                   for (var h = 0u; h < R; h++) { z[h] = 0u; } c;";
        assert_eq!(
            unroll_rows(src, 2),
            "a; { let h = 0u; if x[h] { y[h] = 1u; } }{ let h = 1u; if x[h] { y[h] = 1u; } } \
             b; { let h = 0u; z[h] = 0u; }{ let h = 1u; z[h] = 0u; } c;"
        );
        assert_eq!(unroll_rows("no loops", 4), "no loops");
    }

    #[test]
    fn the_row_kernel_has_no_per_row_loop_left() {
        for rows in [1, 2, 4, 8] {
            let src = kernel_source(16, 8, 256, rows, 8, false);
            assert!(!src.contains("h++"), "{rows} rows: a per-row loop left");
            assert!(src.contains(&format!("let h = {}u;", rows - 1)));
        }
    }

    #[test]
    fn probabilities_go_into_the_chunk_texture_where_no_layer_has_a_window() {
        use crate::source::qk::QkOptions;
        use crate::source::qk_meta::{CaptureMeta, LayerAttention};
        use crate::source::{ArraySource, AttentionSource};
        let source = |n: usize, window: Option<usize>| {
            let tensor = || {
                let a = ndarray::Array4::<f32>::zeros((2, 1, n, 8));
                Box::new(ArraySource::from_f32("t", &a)) as Box<dyn AttentionSource>
            };
            let layer = |index, sliding_window| LayerAttention {
                index: Some(index),
                causal: Some(true),
                sliding_window,
                ..Default::default()
            };
            let options = QkOptions {
                meta: Some(CaptureMeta {
                    layers: vec![layer(0, None), layer(1, window)],
                    ..Default::default()
                }),
                ..Default::default()
            };
            QkSource::new(tensor(), tensor(), &options).unwrap()
        };
        let both = [(0, 0), (1, 0)];
        assert!(stores_in_texture(&source(321, None), &both));
        // keys before layer 1's window are never visited, only cleared in a buffer
        assert!(!stores_in_texture(&source(320, Some(50)), &both));
        assert!(stores_in_texture(&source(320, Some(50)), &[(0, 0)]));
        // rows of 321 keys start 324 elements apart, on a texel
        assert_eq!((texture_stride(321), texture_stride(324)), (324, 324));
    }

    #[test]
    fn stored_probabilities_go_to_a_buffer_or_the_chunk_texture() {
        let buffer = kernel_source(16, 8, 256, 4, 0, false);
        let texture = kernel_source(16, 8, 256, 4, 0, true);
        assert!(buffer.contains("var<storage, read_write> probs: array<f32>;"));
        assert!(!buffer.contains("probs_out"));
        assert!(texture.contains("var probs_out: texture_storage_2d<rgba32uint, write>;"));
        assert!(!texture.contains("var<storage, read_write> probs:"));
        assert_eq!(texture.matches("fn store4(").count(), 1);
    }
}
