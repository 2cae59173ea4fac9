// Per-head pattern statistics (`attnviz heads`, `render --stats-json`). The CPU twin is
// src/cpu/pattern.rs; src/pool/pattern.rs turns the sums into the reported statistics.
//
// The statistics read the chunk once more, everything from the same loads, right after each
// pool dispatch, each piece (one head's rows) in workgroups (_, _, z):
//   pattern_profiles   one invocation per GROUP_KEYS keys walking the piece's rows (or, where
//                      `Piece::slice_rows` asks, a slice of them: workgroups (_, y, z) slice
//                      y): column masses, and block rows' and diagonals' shares into
//                      `scratch`; the entropy, maximum and non-finite count, each
//                      workgroup's into a pixel's `PixelSums` of its own (the pool pass once
//                      folded those from its loads per pooled pixel: on a software rasterizer
//                      that per-entry code cost more than the profile kernel's vectors of 16
//                      keys);
//   pattern_blocks     one invocation per block the piece touches: its shares added up;
//   pattern_diagonals  one invocation per offset a − k: its shares added up, the tails left
//                      at each slice's end included;
//   pattern_columns    in slices only, one invocation per key: its slices' column masses
//                      added up in order.
// Their loops run over the piece's rows (at most `PATTERN_ROWS` in src/pool/pattern_gpu.rs, or
// those / 16), or a block's key groups. The other scalars (row sums, sink, local and distance
// masses) are sums of the profiles (src/pool/pattern_gpu.rs).
// Once the last chunk is pooled, two more reduce the pixels' sums per head:
//   pattern_pixels     workgroup (x, _, z): pixels [x * PIXEL_CHUNK, (x + 1) * PIXEL_CHUNK) of
//                      head z, each invocation a run of PIXEL_RUN, then a tree, into `partials`;
//   pattern_heads      one invocation per head: its partials in order, with Kahan
//                      compensation, into `heads`.

// Keep in sync with `PatternParams` in src/pool/pattern_gpu.rs.
struct PatternParams {
    queries: u32,
    keys: u32,
    sink_keys: u32,
    window: u32,
    // block side (a multiple of GROUP_KEYS) and blocks per block row
    block: u32,
    blocks_w: u32,
    // f32 words per head in `profiles`: keys columns, queries + keys - 1 diagonals, blocks
    stride: u32,
    // 1: entries above the causal diagonal are masked
    causal: u32,
    // pixels' sums per head (a workgroup of pattern_profiles' or pattern_qk's keys each), and
    // chunks of PIXEL_CHUNK of them (`pattern_pixels`)
    pixels: u32,
    pixel_chunks: u32,
    // rows of a chunk at most, and where the diagonals' shares start in `scratch`
    // (shaders/pattern.wgsl)
    diag_rows: u32,
    diag_base: u32,
    // slices a piece has at most (`Piece::slice_rows`): per head, that many pixels' sums per
    // workgroup of keys; and where the slices' column masses start in `scratch` (`slot_of`)
    slices: u32,
    col_base: u32,
    // where row 0 sits, in key indices: row q is at absolute position q + position0 (the
    // source's diagonal: keys − queries for a head's last rows, a query slice's own)
    position0: i32,
    _pad: u32,
}

// One workgroup's share of its head's entropy, maximum and non-finite count, over the entries
// of its keys, resumed piece after piece (`fold_into_pixel`). (The other scalars are sums of
// the profiles: src/pool/pattern.rs.) Keep in sync with `PIXEL_SUMS_BYTES` in
// src/pool/pattern_gpu.rs.
struct PixelSums {
    // Σ p ln p over the finite, unmasked entries with p > 0
    p_ln_p: f32,
    max_v: f32,
    // 1 + the row of `max_v` (0: no finite, unmasked entry yet) and its key
    arg_q1: u32,
    arg_k: u32,
    // non-finite, unmasked entries
    bad: u32,
}

const LN2: f32 = 0.693147180559945;
const F32_MIN_NORMAL: f32 = 1.17549435e-38;

// p ln p for four finite entries p, 0 where p ≤ 0: ln p as the exponent times ln 2 plus ln m for
// m in [√½, √2) by the atanh series 2(s + s³/3 + … + s⁹/9), s = (m − 1)/(m + 1), |s| < 0.172
// (the next term is below 1e-9), within a few ulp (subnormal p as the smallest normal: |p ln p|
// is below 1e-36 there). Written out because llvmpipe's `log` costs several times the rest of
// the profile kernel's per-entry work together, and GPUs run this about as fast as their own.
fn p_ln_p4(p: vec4<f32>) -> vec4<f32> {
    let b = bitcast<vec4<u32>>(max(p, vec4<f32>(F32_MIN_NORMAL)));
    var mb = (b & vec4<u32>(0x007fffffu)) | vec4<u32>(0x3f800000u);
    var e = vec4<i32>(b >> vec4<u32>(23u)) - vec4<i32>(127);
    // m above √2: halve it (exponent bits − 1) and count one more power of two
    let big = mb > vec4<u32>(0x3fb504f3u);
    mb = select(mb, mb - vec4<u32>(0x00800000u), big);
    e += select(vec4<i32>(0), vec4<i32>(1), big);
    let m = bitcast<vec4<f32>>(mb);
    let s = (m - 1.0) / (m + 1.0);
    let z = s * s;
    let series = 2.0 + z * (0.6666667 + z * (0.4 + z * (0.2857143 + z * 0.2222222)));
    let ln = vec4<f32>(e) * LN2 + s * series;
    return select(vec4<f32>(0.0), p * ln, p > vec4<f32>(0.0));
}

// Keep in sync with `Piece` in shaders/pool.wgsl and `PieceParams` in src/pool/pipelines.rs.
struct Piece {
    elem_offset: u32,
    row_start: u32,
    row_count: u32,
    keys: u32,
    accum_base: u32,
    pooled_w: u32,
    y_start: u32,
    // index of the piece's first row in `rows`
    row_max_base: u32,
    // the sliding window (the pool pass's masks; shaders/pool_fold.wgsl)
    window: u32,
    causal_offset: i32,
    // the head's index in its group
    cell: u32,
    y_end: u32,
    // elements from one row's start to the next's in the chunk
    stride: u32,    // (to 64 bytes: a uniform array's stride is a multiple of 16)
    // The profile kernel's rows an invocation walks (a multiple of the block side, slices
    // aligned to multiples of it in head rows: `piece_slice`), so that a piece's rows are
    // walked by that many more workgroups at once (a GPU needs them: 2048 keys are 128
    // invocations); 0: the whole piece (CPU adapters, `pattern_qk`, the pooling profile
    // kernel). Written for every dispatch: src/pool/dispatch.rs, `write_params`.
    slice_rows: u32,
    // attention chunks, and the position of a row's first key (the pool pass's masks)
    chunk: u32,
    key_position: u32,
}

// Keep in sync with `HeadSums` in src/pool/pattern_gpu.rs.
struct HeadSums {
    // Σ p ln p, and its Kahan compensation
    p_ln_p: f32,
    comp: f32,
    max_v: f32,
    arg_q: u32,
    arg_k: u32,
    // 1 once max_v holds an entry
    seen: u32,
    // non-finite entries, (low, high)
    bad: vec2<u32>,
}

const NONE: u32 = 0xffffffffu;
const DTYPE_F32: u32 = 0u;
const DTYPE_F16: u32 = 1u;
override DTYPE: u32 = DTYPE_F32;
// pattern_profiles: every row of the dispatch's pieces starts on a 16-byte word (the host
// knows; a runtime test would leave the other read path in for llvmpipe to run as well)
override ALIGNED: bool = false;
const MAX_PIECES: u32 = 256u;

@group(0) @binding(0) var<uniform> pieces: array<Piece, MAX_PIECES>;
// The chunk as aligned 16-byte words: the pool pass's chunk texture (src/pool/chunk.rs).
@group(0) @binding(1) var chunk: texture_storage_2d<rgba32uint, read>;

// Word `w` of the chunk.
fn word(w: u32) -> vec4<u32> {
    return chunk_word(chunk, w);
}
@group(0) @binding(2) var<uniform> params: PatternParams;
// per head, per chunk of PIXEL_CHUNK pixels: the chunk's sums (`pattern_pixels`)
@group(0) @binding(3) var<storage, read_write> partials: array<HeadSums>;
@group(0) @binding(4) var<storage, read_write> heads: array<HeadSums>;
@group(0) @binding(5) var<storage, read_write> profiles: array<f32>;
// per head of the group, per workgroup of keys: what pattern_profiles (or pattern_qk) folded
@group(0) @binding(6) var<storage, read_write> pixels: array<PixelSums>;
// Scratch of `pattern_profiles`, per row of the chunk, per group of GROUP_KEYS keys: a block
// row's share of the group's mass (at the index of the block row's first row in the piece,
// for `pattern_blocks`), then from `diag_base` on one diagonal's share of it (at the row where
// the diagonal leaves the group), then GROUP_KEYS − 1 more per piece for the diagonals still in
// the group after its last row (for `pattern_diagonals`).
@group(0) @binding(7) var<storage, read_write> scratch: array<f32>;

var<private> piece: Piece;

// The element decoding of shaders/pool.wgsl (`widen`, `finite16`), one element at a time.
// log2 of the elements in 16 bytes.
fn elem_shift() -> u32 {
    return select(3u, 2u, DTYPE == DTYPE_F32);
}

fn widen1(h: u32) -> u32 {
    if DTYPE == DTYPE_F16 {
        let sign = (h & 0x8000u) << 16u;
        let em = h & 0x7fffu;
        let normal = (em << 13u) + 0x38000000u;
        let small = bitcast<u32>(f32(em) * 5.9604644775390625e-8);
        return sign | select(normal, small, em < 0x400u);
    }
    return h << 16u;
}

// Element `e` of the chunk as (f32 bits, 1 when finite).
fn load(e: u32) -> vec2<u32> {
    if DTYPE == DTYPE_F32 {
        let b = word(e >> 2u)[e & 3u];
        return vec2<u32>(b, u32((b & 0x7f800000u) != 0x7f800000u));
    }
    let half = word(e >> 3u)[(e >> 1u) & 3u];
    let h = select(half & 0xffffu, half >> 16u, (e & 1u) == 1u);
    var finite = (h & 0x7f80u) != 0x7f80u;
    if DTYPE == DTYPE_F16 {
        finite = (h & 0x7c00u) != 0x7c00u;
    }
    return vec2<u32>(widen1(h), u32(finite));
}

fn masked(q: u32, k: u32) -> bool {
    return params.causal != 0u && i32(k) > i32(q) + piece.causal_offset;
}

// Absolute position of head row q.
fn position(q: u32) -> i32 {
    return i32(q) + params.position0;
}

const WG: u32 = 64u;

// Keep in sync with `PIXEL_RUN` and `PIXEL_CHUNK` in src/pool/pattern_gpu.rs.
const PIXEL_WG: u32 = 256u;
const PIXEL_RUN: u32 = 64u;
const PIXEL_CHUNK: u32 = PIXEL_WG * PIXEL_RUN;

// (a beats b): larger, or equal and earlier in row-major order; an empty one never wins.
fn beats(a: HeadSums, b: HeadSums) -> bool {
    if a.seen == 0u {
        return false;
    }
    return b.seen == 0u || a.max_v > b.max_v
        || (a.max_v == b.max_v && (a.arg_q < b.arg_q || (a.arg_q == b.arg_q && a.arg_k < b.arg_k)));
}

fn add64(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
    let lo = a.x + b.x;
    return vec2<u32>(lo, a.y + b.y + u32(lo < a.x));
}

const NO_SUMS = HeadSums(0.0, 0.0, 0.0, 0u, 0u, 0u, vec2<u32>(0u));

// `b` added into `a` (a plain f32 sum: the compensation stays 0 until `pattern_heads`).
fn merge(a: ptr<function, HeadSums>, b: HeadSums) {
    (*a).p_ln_p += b.p_ln_p;
    merge_max_bad(a, b);
}

// `b`'s maximum and non-finite count into `a`'s (its sum is the caller's).
fn merge_max_bad(a: ptr<function, HeadSums>, b: HeadSums) {
    if beats(b, *a) {
        (*a).max_v = b.max_v;
        (*a).arg_q = b.arg_q;
        (*a).arg_k = b.arg_k;
        (*a).seen = 1u;
    }
    (*a).bad = add64((*a).bad, b.bad);
}

fn of_pixel(p: PixelSums) -> HeadSums {
    var h = NO_SUMS;
    h.p_ln_p = p.p_ln_p;
    h.max_v = p.max_v;
    h.arg_q = p.arg_q1 - 1u;
    h.arg_k = p.arg_k;
    h.seen = u32(p.arg_q1 != 0u);
    h.bad = vec2<u32>(p.bad, 0u);
    return h;
}

var<workgroup> w_sums: array<HeadSums, PIXEL_WG>;

// The sums in w_sums[0 ..< n] (n a power of two up to PIXEL_WG: the workgroup's invocations,
// each having stored its own at w_sums[li]) into w_sums[0], in a tree.
fn reduce_w_sums(li: u32, n: u32) {
    workgroupBarrier();
    for (var stride = n / 2u; stride > 0u; stride >>= 1u) {
        if li < stride {
            var a = w_sums[li];
            merge(&a, w_sums[li + stride]);
            w_sums[li] = a;
        }
        workgroupBarrier();
    }
}

// Workgroup (x, _, z): head z's pixels of chunk x; invocation li a run of PIXEL_RUN consecutive
// pixels (software rasterizers load runs several times faster than strided pixels; see
// shaders/stats.wgsl), then a tree.
@compute @workgroup_size(256)
fn pattern_pixels(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let n = params.pixels;
    let first = wg.x * PIXEL_CHUNK + li * PIXEL_RUN;
    let last = min(first + PIXEL_RUN, n);
    var h = NO_SUMS;
    for (var i = first; i < last; i++) {
        merge(&h, of_pixel(pixels[wg.z * n + i]));
    }
    w_sums[li] = h;
    reduce_w_sums(li, PIXEL_WG);
    if li == 0u {
        partials[wg.z * params.pixel_chunks + wg.x] = w_sums[0];
    }
}

// Kahan addition of `v` into the sum of `h`.
fn kahan(h: ptr<function, HeadSums>, v: f32) {
    let y = v - (*h).comp;
    let t = (*h).p_ln_p + y;
    (*h).comp = (t - (*h).p_ln_p) - y;
    (*h).p_ln_p = t;
}

// `p`, a partial (or one run's pixels), added into `h` after the ones before it.
fn add_partial(h: ptr<function, HeadSums>, p: HeadSums) {
    kahan(h, p.p_ln_p);
    merge_max_bad(h, p);
}

// Workgroup (_, _, z): head z's partials, in order, into its scalars. A head of at most
// PIXEL_RUN pixels' sums (a head of up to 64k keys on a CPU adapter) is one invocation's run of
// `pattern_pixels`, which the host then skips: its pixels are summed here as that run sums
// them, the same bits (the run's tree only adds +0.0 to it), with no 256-lane workgroup and
// its barriers for each of a whole model's heads.
@compute @workgroup_size(1)
fn pattern_heads(@builtin(workgroup_id) wg: vec3<u32>) {
    let z = wg.z;
    var h = NO_SUMS;
    if params.pixels <= PIXEL_RUN {
        var run = NO_SUMS;
        for (var i = 0u; i < params.pixels; i++) {
            merge(&run, of_pixel(pixels[z * params.pixels + i]));
        }
        add_partial(&h, run);
    } else {
        for (var x = 0u; x < params.pixel_chunks; x++) {
            add_partial(&h, partials[z * params.pixel_chunks + x]);
        }
    }
    heads[z] = h;
}


// Keys per invocation of `pattern_profiles`. Keep in sync with src/pool/pattern_gpu.rs.
const GROUP_KEYS: u32 = 16u;

// Sixteen values, keys k0 + 0 ..< 16 in order, four per vec4.
struct Keys16 {
    a: vec4<f32>,
    b: vec4<f32>,
    c: vec4<f32>,
    d: vec4<f32>,
}

// The f32 values of four 16-bit elements (the low halves of `h`): `widen1` on each lane.
fn widen4(h: vec4<u32>) -> vec4<f32> {
    if DTYPE == DTYPE_F16 {
        let sign = (h & vec4<u32>(0x8000u)) << vec4<u32>(16u);
        let em = h & vec4<u32>(0x7fffu);
        let normal = (em << vec4<u32>(13u)) + vec4<u32>(0x38000000u);
        let small = bitcast<vec4<u32>>(vec4<f32>(em) * 5.9604644775390625e-8);
        return bitcast<vec4<f32>>(sign | select(normal, small, em < vec4<u32>(0x400u)));
    }
    return bitcast<vec4<f32>>(h << vec4<u32>(16u));
}

// A quiet NaN: what the profile kernel's loads give for a non-finite element (an f16's
// infinity widens to a finite f32 by `widen4`, so its finiteness is decided on its own bits).
const NAN_BITS: u32 = 0x7fc00000u;

// Four elements from 32-bit words (f32) or the 16-bit halves of two words (`pair`: low, high
// of x, then of y), finite ones as they are, others NaN.
fn finite_f32(w: vec4<u32>) -> vec4<f32> {
    let ok = (w & vec4<u32>(0x7f800000u)) != vec4<u32>(0x7f800000u);
    return bitcast<vec4<f32>>(select(vec4<u32>(NAN_BITS), w, ok));
}

fn finite_pairs(x: u32, y: u32) -> vec4<f32> {
    let h = vec4<u32>(x & 0xffffu, x >> 16u, y & 0xffffu, y >> 16u);
    var ok = (h & vec4<u32>(0x7f80u)) != vec4<u32>(0x7f80u);
    if DTYPE == DTYPE_F16 {
        ok = (h & vec4<u32>(0x7c00u)) != vec4<u32>(0x7c00u);
    }
    return select(bitcast<vec4<f32>>(vec4<u32>(NAN_BITS)), widen4(h), ok);
}

// One element for the unaligned path: 0 past the keys, NaN where not finite.
fn elem_or_zero(e: u32, k: u32) -> f32 {
    if k >= params.keys {
        return 0.0;
    }
    let v = load(e);
    return bitcast<f32>(select(NAN_BITS, v.x, v.y != 0u));
}

// Row i's keys k0 ..< k0 + 16 (element `e` is key k0), non-finite ones as NaN (keys past the
// row are the next row's, or 0: the caller masks them). `aligned`: `e` starts a 16-byte word.
fn keys16(e: u32, k0: u32, aligned: bool) -> Keys16 {
    if aligned {
        let w = e >> elem_shift();
        if DTYPE == DTYPE_F32 {
            return Keys16(
                finite_f32(word(w)),
                finite_f32(word(w + 1u)),
                finite_f32(word(w + 2u)),
                finite_f32(word(w + 3u)),
            );
        }
        let x = word(w);
        let y = word(w + 1u);
        return Keys16(
            finite_pairs(x.x, x.y),
            finite_pairs(x.z, x.w),
            finite_pairs(y.x, y.y),
            finite_pairs(y.z, y.w),
        );
    }
    var out: Keys16;
    out.a = vec4<f32>(
        elem_or_zero(e, k0),
        elem_or_zero(e + 1u, k0 + 1u),
        elem_or_zero(e + 2u, k0 + 2u),
        elem_or_zero(e + 3u, k0 + 3u),
    );
    out.b = vec4<f32>(
        elem_or_zero(e + 4u, k0 + 4u),
        elem_or_zero(e + 5u, k0 + 5u),
        elem_or_zero(e + 6u, k0 + 6u),
        elem_or_zero(e + 7u, k0 + 7u),
    );
    out.c = vec4<f32>(
        elem_or_zero(e + 8u, k0 + 8u),
        elem_or_zero(e + 9u, k0 + 9u),
        elem_or_zero(e + 10u, k0 + 10u),
        elem_or_zero(e + 11u, k0 + 11u),
    );
    out.d = vec4<f32>(
        elem_or_zero(e + 12u, k0 + 12u),
        elem_or_zero(e + 13u, k0 + 13u),
        elem_or_zero(e + 14u, k0 + 14u),
        elem_or_zero(e + 15u, k0 + 15u),
    );
    return out;
}

// The workgroup's sums of its invocations' `own`, in a tree, merged into pixel `x` of head
// `cell` after what earlier pieces left there: pattern_profiles' and pattern_qk's workgroup x
// (its 1024 keys) has pixel x of each head (`PatternPass` sizes them so).
fn fold_into_pixel(li: u32, x: u32, cell: u32, own: HeadSums) {
    w_sums[li] = own;
    reduce_w_sums(li, WG);
    if li == 0u {
        let at = cell * params.pixels + x;
        var h = of_pixel(pixels[at]);
        merge(&h, w_sums[0]);
        let q1 = select(0u, h.arg_q + 1u, h.seen != 0u);
        pixels[at] = PixelSums(h.p_ln_p, h.max_v, q1, h.arg_k, h.bad.x);
    }
}

fn finite4(v: vec4<f32>) -> vec4<bool> {
    return (bitcast<vec4<u32>>(v) & vec4<u32>(0x7f800000u)) != vec4<u32>(0x7f800000u);
}

const NEG_INF_BITS: u32 = 0xff800000u;

// The largest of a row's 16 entries whose `candidate` is set (keys k0 ..< k0 + 16, head row
// `r`), at its first key, into `own` when larger than what it holds (rows come in order, so
// the first of equal maxima in row-major order stays).
fn take_max(own: ptr<function, HeadSums>, v: Keys16, candidate: array<vec4<bool>, 4>, k0: u32, r: u32) {
    let none = bitcast<vec4<f32>>(vec4<u32>(NEG_INF_BITS));
    let ma = select(none, v.a, candidate[0]);
    let mb = select(none, v.b, candidate[1]);
    let mc = select(none, v.c, candidate[2]);
    let md = select(none, v.d, candidate[3]);
    let m = max(max(max4(ma), max4(mb)), max(max4(mc), max4(md)));
    let keys_a = vec4<u32>(0u, 1u, 2u, 3u) + vec4<u32>(k0);
    let far = vec4<u32>(NONE);
    let at = min(
        min(min4u(select(far, keys_a, ma == vec4<f32>(m))), min4u(select(far, keys_a + vec4<u32>(4u), mb == vec4<f32>(m)))),
        min(min4u(select(far, keys_a + vec4<u32>(8u), mc == vec4<f32>(m))), min4u(select(far, keys_a + vec4<u32>(12u), md == vec4<f32>(m)))),
    );
    let found = (any(candidate[0]) || any(candidate[1])) || (any(candidate[2]) || any(candidate[3]));
    let better = found && ((*own).seen == 0u || m > (*own).max_v);
    (*own).max_v = select((*own).max_v, m, better);
    (*own).arg_q = select((*own).arg_q, r, better);
    (*own).arg_k = select((*own).arg_k, at, better);
    (*own).seen = select((*own).seen, 1u, better);
}

fn max4(v: vec4<f32>) -> f32 {
    return max(max(v.x, v.y), max(v.z, v.w));
}

fn min4u(v: vec4<u32>) -> u32 {
    return min(min(v.x, v.y), min(v.z, v.w));
}

fn sum4(v: vec4<f32>) -> f32 {
    return (v.x + v.y) + (v.z + v.w);
}

const ZERO16 = Keys16(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));

fn add16(a: Keys16, b: Keys16) -> Keys16 {
    return Keys16(a.a + b.a, a.b + b.b, a.c + b.c, a.d + b.d);
}

// A key group's 16 running diagonal sums after a row of entries `v`: (q, k) and (q + 1, k + 1)
// are on one diagonal, so each sum moves one key to the right; the one at the group's last
// key leaves it (`left`: complete, stored at that row by the caller) and a new one starts at
// its first.
struct Moved {
    diag: Keys16,
    left: f32,
}

fn move_diagonals(diag: Keys16, v: Keys16) -> Moved {
    let d = add16(diag, v);
    return Moved(
        Keys16(
            vec4<f32>(0.0, d.a.x, d.a.y, d.a.z),
            vec4<f32>(d.a.w, d.b.x, d.b.y, d.b.z),
            vec4<f32>(d.b.w, d.c.x, d.c.y, d.c.z),
            vec4<f32>(d.c.w, d.d.x, d.d.y, d.d.z),
        ),
        d.d.w,
    );
}

// A block row's share of a key group's mass: its entries summed over the rows.
fn block_share(part: Keys16) -> f32 {
    return sum4((part.a + part.b) + (part.c + part.d));
}

// After slice s of piece z's last row, key group g (keys k0 ..< k0 + 16): the diagonals still in
// the group into the slice's 15 tail slots (m = 0 ..< 15: the diagonal that would have left the
// group m + 1 rows later), and its column masses into the head's profile (a piece in slices:
// into the slice's own, which `pattern_columns` adds up in order).
//
// Written out four keys at a time, no loops over arrays: naga gives a `let` array indexed in a
// loop to SPIR-V as a function variable, and lavapipe's compiler spent 70 of the 100 ms that
// `pattern_profiles`' pipeline took to build on these three loops (in every process that
// draws statistics, before its first profile dispatch).
fn finish_group(diag: Keys16, column: Keys16, z: u32, s: u32, g: u32, k0: u32) {
    let groups = (params.keys + GROUP_KEYS - 1u) / GROUP_KEYS;
    let tail = params.diag_base + tail_row(z, s) * groups + g;
    // (diag.a.x, a diagonal that has just started, holds nothing yet)
    store_tails4(tail, groups, diag.d);
    store_tails4(tail + 4u * groups, groups, diag.c);
    store_tails4(tail + 8u * groups, groups, diag.b);
    scratch[tail + 12u * groups] = diag.a.w;
    scratch[tail + 13u * groups] = diag.a.z;
    scratch[tail + 14u * groups] = diag.a.y;
    if piece.slice_rows != 0u {
        let own = params.col_base + (slot_of(z) + s) * params.keys + k0;
        put_columns4(own, k0, column.a);
        put_columns4(own + 4u, k0 + 4u, column.b);
        put_columns4(own + 8u, k0 + 8u, column.c);
        put_columns4(own + 12u, k0 + 12u, column.d);
        return;
    }
    let head = piece.cell * params.stride + k0;
    add_columns4(head, k0, column.a);
    add_columns4(head + 4u, k0 + 4u, column.b);
    add_columns4(head + 8u, k0 + 8u, column.c);
    add_columns4(head + 12u, k0 + 12u, column.d);
}

// Four diagonals' running sums (keys k ..< k + 4) into tail slots `step` apart from `at`, the
// one at the last key first: it leaves the group first.
fn store_tails4(at: u32, step: u32, v: vec4<f32>) {
    scratch[at] = v.w;
    scratch[at + step] = v.z;
    scratch[at + 2u * step] = v.y;
    scratch[at + 3u * step] = v.x;
}

// Which of keys k ..< k + 4 are keys of the head.
fn keys_in_head4(k: u32) -> vec4<bool> {
    return vec4<u32>(k) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(params.keys);
}

// Column masses of keys k ..< k + 4 into `scratch` from `at`, those of keys past the head left
// out.
fn put_columns4(at: u32, k: u32, v: vec4<f32>) {
    let live = keys_in_head4(k);
    if live.x {
        scratch[at] = v.x;
    }
    if live.y {
        scratch[at + 1u] = v.y;
    }
    if live.z {
        scratch[at + 2u] = v.z;
    }
    if live.w {
        scratch[at + 3u] = v.w;
    }
}

// Column masses of keys k ..< k + 4 added into the head's profile from `at`.
fn add_columns4(at: u32, k: u32, v: vec4<f32>) {
    let live = keys_in_head4(k);
    if live.x {
        profiles[at] += v.x;
    }
    if live.y {
        profiles[at + 1u] += v.y;
    }
    if live.z {
        profiles[at + 2u] += v.z;
    }
    if live.w {
        profiles[at + 3u] += v.w;
    }
}

// The first of slice s of piece z's 15 tail rows in `scratch` (from `diag_base`).
fn tail_row(z: u32, s: u32) -> u32 {
    return params.diag_rows + (slot_of(z) + s) * (GROUP_KEYS - 1u);
}

// Piece z's first slot of tail rows and column masses: its slices take that one and the next.
// In slices, the pieces before it hold `row_max_base` rows, of which a piece of r rows takes
// at most r / slice_rows + 2 slots (⌈(r + its first row's offset in a slice) / slice_rows⌉),
// so the slots of a dispatch are at most its rows / slice_rows + 2 per piece
// (`PatternPass::new` sizes `scratch` so).
fn slot_of(z: u32) -> u32 {
    if piece.slice_rows == 0u {
        return z;
    }
    return piece.row_max_base / piece.slice_rows + 2u * z;
}

// Slice s of the current piece: its piece rows [x, y) (empty past the piece's last slice).
// Slices are the piece's rows cut at multiples of `slice_rows` in head rows, so that a block
// row lies in one slice.
fn piece_slice(s: u32) -> vec2<u32> {
    if piece.slice_rows == 0u {
        return vec2<u32>(0u, select(0u, piece.row_count, s == 0u));
    }
    let first = slices_origin() + s * piece.slice_rows;
    let lo = max(piece.row_start, first);
    let hi = min(piece.row_start + piece.row_count, first + piece.slice_rows);
    return vec2<u32>(lo, max(lo, hi)) - vec2<u32>(piece.row_start);
}

// The head row where the current piece's slice 0 would begin: the multiple of `slice_rows` at
// or before its first row.
fn slices_origin() -> u32 {
    return piece.row_start / piece.slice_rows * piece.slice_rows;
}

// Slices of the current piece.
fn piece_slices() -> u32 {
    if piece.slice_rows == 0u {
        return 1u;
    }
    let rows = piece.row_start + piece.row_count - slices_origin();
    return (rows + piece.slice_rows - 1u) / piece.slice_rows;
}

// The pixels' sums of one slice of a head: one per workgroup of keys.
fn slice_pixels() -> u32 {
    return (params.keys + WG * GROUP_KEYS - 1u) / (WG * GROUP_KEYS);
}

// Invocation (k, _, z): key k's column masses of piece z's slices, in slice order, into the
// head's profile (only for pieces in slices; `finish_group` adds the others' itself).
@compute @workgroup_size(64)
fn pattern_columns(@builtin(global_invocation_id) gid: vec3<u32>) {
    piece = pieces[gid.z];
    let k = gid.x;
    if piece.slice_rows == 0u || k >= params.keys {
        return;
    }
    let n = piece_slices();
    var sum = 0.0;
    for (var s = 0u; s < n; s++) {
        sum += scratch[params.col_base + (slot_of(gid.z) + s) * params.keys + k];
    }
    profiles[piece.cell * params.stride + k] += sum;
}

// Invocation g (x of the global id) of piece z: keys [16 g, 16 g + 16) of each of the piece's
// rows, read once for every statistic. Their column masses are summed in registers; each
// block row's share of them goes to `scratch` for `pattern_blocks`. The diagonals are summed in
// registers too: the entry (q, k) and (q + 1, k + 1) are on one diagonal, so after each row the
// sixteen running diagonal sums move one key to the right; the one that leaves the group is
// complete and goes to `scratch` at that row, and those still in the group after the last row
// go to the piece's tail slots. `pattern_diagonals` adds them up per diagonal. The entropy
// (Σ p ln p, a block row at a time), the largest entry with its place and the non-finite
// count are the invocation's own, folded into the workgroup's pixel at the end
// (`fold_into_pixel`). Entries are the raw values, non-finite ones and those above the
// diagonal (`params.causal`) left out: the semantics of src/cpu/pattern.rs.
@compute @workgroup_size(64)
fn pattern_profiles(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    piece = pieces[wg.z];
    // (workgroup y: slice y of the piece; one past its last, nothing to do)
    let rows = piece_slice(wg.y);
    if rows.x >= rows.y {
        return;
    }
    var own = NO_SUMS;
    if gid.x * GROUP_KEYS < params.keys {
        own = profile_keys(gid.x, wg.z, wg.y, rows);
    }
    fold_into_pixel(li, wg.y * slice_pixels() + wg.x, piece.cell, own);
}

// `pattern_profiles`' invocation g of slice s of piece z (`piece`), its rows [rows.x, rows.y):
// the profiles' shares, and its sums.
fn profile_keys(g: u32, z: u32, s: u32, rows: vec2<u32>) -> HeadSums {
    let k0 = g * GROUP_KEYS;
    let aligned = ALIGNED;
    var pr = open_profile(g, rows.x);
    var e = piece.elem_offset + rows.x * piece.stride + k0;
    var i = rows.x;
    // Causal: the piece's first `hidden` rows see none of the group's keys. They are not read:
    // every sum stays 0 through them, so only their diagonal shares are written (as 0).
    let hidden = hidden_rows(k0);
    // rows [i, end) of the piece are in the current block row
    while i < rows.y {
        let end = block_row_end(i);
        for (; i < min(end, hidden); i++) {
            skip_row(&pr, i);
            e += piece.stride;
        }
        for (; i < end; i++) {
            profile_row(&pr, keys16(e, k0, aligned), i);
            e += piece.stride;
        }
        end_block_row(&pr);
    }
    finish_group(pr.diag, pr.column, z, s, g, k0);
    return pr.own;
}

// An invocation's running profile of its 16 keys (`profile_row` a row at a time): the column
// masses, the diagonals' running sums, the current block row's share, the entropy of the block
// row so far, and its own maximum and non-finite count.
struct Profile {
    g: u32,
    k0: u32,
    groups: u32,
    // where the current block row's share goes in `scratch`
    slot: u32,
    column: Keys16,
    diag: Keys16,
    part: Keys16,
    p_ln_p: vec4<f32>,
    own: HeadSums,
}

// The profile of group g from piece row `first` on (the first of a slice: a block row's first
// row, or the piece's), its block rows' shares from that row's block row on.
fn open_profile(g: u32, first: u32) -> Profile {
    let groups = (params.keys + GROUP_KEYS - 1u) / GROUP_KEYS;
    let block_rows = (piece.row_start + first) / params.block - piece.row_start / params.block;
    return Profile(g, g * GROUP_KEYS, groups, (piece.row_max_base + block_rows) * groups + g,
        ZERO16, ZERO16, ZERO16, vec4<f32>(0.0), NO_SUMS);
}

// Rows of the piece before the first that sees key k0 (causal; 0 otherwise).
fn hidden_rows(k0: u32) -> u32 {
    if params.causal == 0u {
        return 0u;
    }
    return u32(clamp(i32(k0) - piece.causal_offset - i32(piece.row_start), 0, i32(piece.row_count)));
}

// One past the last piece row of the block row that piece row i is in.
fn block_row_end(i: u32) -> u32 {
    let q0 = piece.row_start + i;
    return min(piece.row_count, (q0 / params.block + 1u) * params.block - piece.row_start);
}

// Piece row i, which sees none of the group's keys: its diagonal share is 0.
fn skip_row(pr: ptr<function, Profile>, i: u32) {
    scratch[params.diag_base + (piece.row_max_base + i) * (*pr).groups + (*pr).g] = 0.0;
}

// Piece row i's entries of the group's keys, `raw` (non-finite ones NaN), into the profile.
fn profile_row(pr: ptr<function, Profile>, raw: Keys16, i: u32) {
    let k0 = (*pr).k0;
    let keys_a = vec4<u32>(0u, 1u, 2u, 3u) + vec4<u32>(k0);
    let keys_b = keys_a + vec4<u32>(4u);
    let keys_c = keys_a + vec4<u32>(8u);
    let keys_d = keys_a + vec4<u32>(12u);
    // keys past the row read the next row's first keys (aligned words): masked
    let limit = vec4<u32>(params.keys);
    var ok_a = keys_a < limit;
    var ok_b = keys_b < limit;
    var ok_c = keys_c < limit;
    var ok_d = keys_d < limit;
    if params.causal != 0u {
        let last = vec4<i32>(i32(piece.row_start + i) + piece.causal_offset);
        ok_a = ok_a & (vec4<i32>(keys_a) <= last);
        ok_b = ok_b & (vec4<i32>(keys_b) <= last);
        ok_c = ok_c & (vec4<i32>(keys_c) <= last);
        ok_d = ok_d & (vec4<i32>(keys_d) <= last);
    }
    let fa = finite4(raw.a);
    let fb = finite4(raw.b);
    let fc = finite4(raw.c);
    let fd = finite4(raw.d);
    let cand = array<vec4<bool>, 4>(ok_a & fa, ok_b & fb, ok_c & fc, ok_d & fd);
    let v = Keys16(
        select(vec4<f32>(0.0), raw.a, cand[0]),
        select(vec4<f32>(0.0), raw.b, cand[1]),
        select(vec4<f32>(0.0), raw.c, cand[2]),
        select(vec4<f32>(0.0), raw.d, cand[3]),
    );
    let bad = (vec4<u32>(ok_a & !fa) + vec4<u32>(ok_b & !fb))
        + (vec4<u32>(ok_c & !fc) + vec4<u32>(ok_d & !fd));
    (*pr).own.bad.x += (bad.x + bad.y) + (bad.z + bad.w);
    (*pr).p_ln_p += (p_ln_p4(v.a) + p_ln_p4(v.b)) + (p_ln_p4(v.c) + p_ln_p4(v.d));
    // (a pointer into the struct behind `pr` trips naga's SPIR-V writer)
    var own = (*pr).own;
    take_max(&own, v, cand, k0, piece.row_start + i);
    (*pr).own = own;
    (*pr).part = add16((*pr).part, v);
    let moved = move_diagonals((*pr).diag, v);
    scratch[params.diag_base + (piece.row_max_base + i) * (*pr).groups + (*pr).g] = moved.left;
    (*pr).diag = moved.diag;
}

// The end of a block row: its entropy into the invocation's, its share of the group's mass
// into `scratch` (for `pattern_blocks`), its masses into the columns'.
fn end_block_row(pr: ptr<function, Profile>) {
    (*pr).own.p_ln_p += sum4((*pr).p_ln_p);
    (*pr).p_ln_p = vec4<f32>(0.0);
    (*pr).column = add16((*pr).column, (*pr).part);
    scratch[(*pr).slot] = block_share((*pr).part);
    (*pr).part = ZERO16;
    (*pr).slot += (*pr).groups;
}

// Invocation (bx, br) (x, y of the global id) of piece z: block column bx of the piece's block
// row br, its key groups' shares from `scratch` added into the block's mass.
@compute @workgroup_size(64)
fn pattern_blocks(@builtin(global_invocation_id) gid: vec3<u32>) {
    piece = pieces[gid.z];
    let bx = gid.x;
    let br = gid.y;
    let first_block_row = piece.row_start / params.block;
    let last_block_row = (piece.row_start + piece.row_count - 1u) / params.block;
    if bx >= params.blocks_w || first_block_row + br > last_block_row {
        return;
    }
    let groups = (params.keys + GROUP_KEYS - 1u) / GROUP_KEYS;
    let per_block = params.block / GROUP_KEYS;
    let base = (piece.row_max_base + br) * groups;
    var sum = 0.0;
    for (var g = bx * per_block; g < min((bx + 1u) * per_block, groups); g++) {
        sum += scratch[base + g];
    }
    let blocks = piece.cell * params.stride + params.keys + params.queries + params.keys - 1u;
    profiles[blocks + (first_block_row + br) * params.blocks_w + bx] += sum;
}

// Invocation j (flat over workgroups (x, y)) of piece z: the diagonal at offset
// d = a − k = j − (keys − 1 − position0), its shares from every key group it crosses in the piece. It
// leaves group g (`pattern_profiles`) after piece row i = d + 16 g + 15 − a0 (a0 the position
// of the piece's first row): a row of the piece, or one of the 15 tail slots after it.
@compute @workgroup_size(64)
fn pattern_diagonals(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    piece = pieces[wg.z];
    let j = flat_index(wg, nwg, li, WG);
    if j >= params.queries + params.keys - 1u {
        return;
    }
    // (index j holds offset j − (keys − 1 − position0))
    let d = i32(j) - (i32(params.keys) - 1 - params.position0);
    let groups = i32((params.keys + GROUP_KEYS - 1u) / GROUP_KEYS);
    let rows = i32(piece.row_count);
    let a0 = position(piece.row_start);
    // i = d + 16 g + 15 − a0 in [0, rows + 15)
    let g0 = max(0, div_ceil(a0 - d - 15, 16));
    let g1 = min(groups - 1, div_floor(rows + a0 - d - 1, 16));
    let gs = u32(groups);
    let last = piece_slices() - 1u;
    var sum = 0.0;
    var g = g0;
    if piece.slice_rows == 0u {
        // A whole piece (CPU adapters, `pattern_qk`): the shares in its rows lie a constant
        // stride apart (one row and one group on: 16 groups + 1 words), so those iterations are
        // a load and an add; the tail slot's share, if any, comes after them in the loop below,
        // in the same order. (llvmpipe spent most of this kernel's time on the general loop's
        // bookkeeping: 0.05 of 0.07 s on the 1 GiB grid.)
        let in_rows = min(g1, div_floor(rows + a0 - d - 16, 16));
        var at = params.diag_base + (piece.row_max_base + u32(d + 16 * g0 + 15 - a0)) * gs + u32(g0);
        for (; g <= in_rows; g++) {
            sum += scratch[at];
            at += 16u * gs + 1u;
        }
    }
    for (; g <= g1; g++) {
        let i = d + 16 * g + 15 - a0;
        var at = (piece.row_max_base + u32(i)) * gs;
        if i >= rows {
            at = (tail_row(wg.z, last) + u32(i - rows)) * gs;
        }
        sum += scratch[params.diag_base + at + u32(g)];
        // a slice's end e inside the piece with e ≤ i < e + 15: the share of the diagonal's
        // rows before it is that slice's tail (the next slice's running sums start at 0)
        if piece.slice_rows != 0u {
            let q = i32(piece.row_start) + i;
            let e = q / i32(piece.slice_rows) * i32(piece.slice_rows) - i32(piece.row_start);
            if e > 0 && e < rows && i - e < 15 {
                let s = (piece.row_start + u32(e) - slices_origin()) / piece.slice_rows - 1u;
                sum += scratch[params.diag_base + (tail_row(wg.z, s) + u32(i - e)) * gs + u32(g)];
            }
        }
    }
    profiles[piece.cell * params.stride + params.keys + j] += sum;
}

// Floor and ceiling of a / b for b > 0.
fn div_floor(a: i32, b: i32) -> i32 {
    return select(a / b, -((-a + b - 1) / b), a < 0);
}

fn div_ceil(a: i32, b: i32) -> i32 {
    return -div_floor(-a, b);
}
