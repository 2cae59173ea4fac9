// Per-head pattern statistics (`attnviz heads`, `render --stats-json`), dispatched on the same
// resident chunk right after the pool pass and reading the same bound rows, so the input is
// still read once. The CPU twin is src/cpu/pattern.rs; src/pool/pattern.rs turns the sums into
// the reported statistics.
//
// Four entry points per chunk, each piece (one head's rows) in workgroups (_, _, z):
//   pattern_rows       one workgroup per row: the row's sums (mass, sink, local, entropy,
//                      distance), its largest entry and its non-finite count, into `rows`
//                      (`pattern_rows_narrow`, one invocation per row, when a row fits the
//                      loop budget);
//   pattern_fold       one invocation per piece: the piece's rows added to the head's scalars
//                      in row order, with Kahan compensation (heads reach 2^16+ rows of ~1);
//   pattern_columns    one invocation per key: column masses, and block masses by a workgroup
//                      reduction at every block-row boundary (a workgroup spans one block of keys);
//   pattern_diagonals  one invocation per offset a − k: diagonal masses.
// Every loop runs over the piece's rows (at most `PATTERN_ROWS` in src/pool/pattern_gpu.rs
// times the keys per invocation, within the loop budget) or a row's keys / 64.

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
    _flags: u32,
    causal_offset: i32,
    // the head's index in its group
    cell: u32,
    y_end: u32,
}

// Keep in sync with `PatternParams` in src/pool/pattern_gpu.rs.
struct PatternParams {
    queries: u32,
    keys: u32,
    sink_keys: u32,
    window: u32,
    // block side (a multiple of 64) and blocks per block row
    block: u32,
    blocks_w: u32,
    // f32 words per head in `profiles`: keys columns, queries + keys - 1 diagonals, blocks
    stride: u32,
    // 1: entries above the causal diagonal are masked
    causal: u32,
}

// Keep in sync with `RowSums` in src/pool/pattern_gpu.rs.
struct RowSums {
    sum: f32,
    sink: f32,
    local: f32,
    entropy: f32,
    distance: f32,
    max_v: f32,
    // NONE when the row has no finite, unmasked entry
    arg_k: u32,
    bad: u32,
}

// Keep in sync with `HeadSums` in src/pool/pattern_gpu.rs.
struct HeadSums {
    // row_sum, sink, local, entropy, distance; then their Kahan compensations
    sums: array<f32, 5>,
    comp: array<f32, 5>,
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
const MAX_PIECES: u32 = 256u;

@group(0) @binding(0) var<uniform> pieces: array<Piece, MAX_PIECES>;
// The chunk as 32-bit words (the pool pass reads it as vec4 words): the per-element loads of
// the columns and diagonals read one word, not four (llvmpipe loads every 32-bit component of
// a storage load lane by lane, so a vec4 costs four words' time).
@group(0) @binding(1) var<storage, read> data: array<u32>;
@group(0) @binding(2) var<uniform> params: PatternParams;
@group(0) @binding(3) var<storage, read_write> rows: array<RowSums>;
@group(0) @binding(4) var<storage, read_write> heads: array<HeadSums>;
@group(0) @binding(5) var<storage, read_write> profiles: array<f32>;

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
        let b = data[e];
        return vec2<u32>(b, u32((b & 0x7f800000u) != 0x7f800000u));
    }
    let word = data[e >> 1u];
    let h = select(word & 0xffffu, word >> 16u, (e & 1u) == 1u);
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
    return i32(q) + i32(params.keys) - i32(params.queries);
}

const WG: u32 = 64u;
var<workgroup> w_sum: array<f32, WG>;
var<workgroup> w_sink: array<f32, WG>;
var<workgroup> w_local: array<f32, WG>;
var<workgroup> w_ent: array<f32, WG>;
var<workgroup> w_dist: array<f32, WG>;
var<workgroup> w_max: array<f32, WG>;
var<workgroup> w_arg: array<u32, WG>;
var<workgroup> w_bad: array<u32, WG>;

// (a beats b): larger, or equal and earlier; NONE never wins.
fn beats(va: f32, ka: u32, vb: f32, kb: u32) -> bool {
    if ka == NONE {
        return false;
    }
    return kb == NONE || va > vb || (va == vb && ka < kb);
}

// Workgroup (r, _, z): row r of piece z.
@compute @workgroup_size(64)
fn pattern_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    // `p` (not the private `piece`) decides the control flow around barriers: uniform.
    let p = pieces[wg.z];
    piece = p;
    let r = wg.x;
    if r >= p.row_count {
        return;
    }
    let q = piece.row_start + r;
    let a = position(q);
    let base = piece.elem_offset + r * params.keys;
    var s = RowSums(0.0, 0.0, 0.0, 0.0, 0.0, -F32_MAX, NONE, 0u);
    for (var k = li; k < params.keys; k += WG) {
        if masked(q, k) {
            continue;
        }
        let v = load(base + k);
        if v.y == 0u {
            s.bad += 1u;
            continue;
        }
        let p = bitcast<f32>(v.x);
        let dist = abs(a - i32(k));
        s.sum += p;
        s.sink += select(0.0, p, k < params.sink_keys);
        s.local += select(0.0, p, u32(dist) < params.window);
        s.distance += p * f32(dist);
        s.entropy += select(0.0, -p * log(max(p, 1e-38)), p > 0.0);
        if beats(p, k, s.max_v, s.arg_k) {
            s.max_v = p;
            s.arg_k = k;
        }
    }
    w_sum[li] = s.sum;
    w_sink[li] = s.sink;
    w_local[li] = s.local;
    w_ent[li] = s.entropy;
    w_dist[li] = s.distance;
    w_max[li] = s.max_v;
    w_arg[li] = s.arg_k;
    w_bad[li] = s.bad;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        if li < stride {
            let o = li + stride;
            w_sum[li] += w_sum[o];
            w_sink[li] += w_sink[o];
            w_local[li] += w_local[o];
            w_ent[li] += w_ent[o];
            w_dist[li] += w_dist[o];
            w_bad[li] += w_bad[o];
            if beats(w_max[o], w_arg[o], w_max[li], w_arg[li]) {
                w_max[li] = w_max[o];
                w_arg[li] = w_arg[o];
            }
        }
        workgroupBarrier();
    }
    if li == 0u {
        rows[piece.row_max_base + r] = RowSums(
            w_sum[0], w_sink[0], w_local[0], w_ent[0], w_dist[0], w_max[0], w_arg[0], w_bad[0],
        );
    }
}

// Folds element `e` of the chunk (raw f32 bits, finiteness) into row `q`'s sums when it is one
// of the row's keys (`row_base` is the row's key 0) and not masked.
fn row_elem(s: ptr<function, RowSums>, bits: u32, finite: bool, e: u32, row_base: u32, q: u32) {
    let k = e - row_base;
    if k >= params.keys || masked(q, k) {
        return;
    }
    if !finite {
        (*s).bad += 1u;
        return;
    }
    let p = bitcast<f32>(bits);
    let dist = abs(position(q) - i32(k));
    (*s).sum += p;
    (*s).sink += select(0.0, p, k < params.sink_keys);
    (*s).local += select(0.0, p, u32(dist) < params.window);
    (*s).distance += p * f32(dist);
    (*s).entropy += select(0.0, -p * log(max(p, 1e-38)), p > 0.0);
    if beats(p, k, (*s).max_v, (*s).arg_k) {
        (*s).max_v = p;
        (*s).arg_k = k;
    }
}

fn row_pair(s: ptr<function, RowSums>, word: u32, e: u32, row_base: u32, q: u32) {
    let lo = word & 0xffffu;
    let hi = word >> 16u;
    row_elem(s, widen1(lo), finite_half(lo), e, row_base, q);
    row_elem(s, widen1(hi), finite_half(hi), e + 1u, row_base, q);
}

fn finite_half(h: u32) -> bool {
    if DTYPE == DTYPE_F16 {
        return (h & 0x7c00u) != 0x7c00u;
    }
    return (h & 0x7f80u) != 0x7f80u;
}

// `pattern_rows` for rows within the loop budget (as `row_maxima` in shaders/pool.wgsl): one
// invocation per row walks it a 16-byte word at a time, no barriers. Software rasterizers run
// this several times faster than a workgroup per row.
@compute @workgroup_size(64)
fn pattern_rows_narrow(@builtin(global_invocation_id) gid: vec3<u32>) {
    piece = pieces[gid.z];
    let r = gid.x;
    if r >= piece.row_count {
        return;
    }
    let q = piece.row_start + r;
    let row_base = piece.elem_offset + r * params.keys;
    let shift = elem_shift();
    var s = RowSums(0.0, 0.0, 0.0, 0.0, 0.0, -F32_MAX, NONE, 0u);
    let w1 = (row_base + params.keys - 1u) >> shift;
    for (var w = row_base >> shift; w <= w1; w++) {
        let v = vec4<u32>(data[4u * w], data[4u * w + 1u], data[4u * w + 2u], data[4u * w + 3u]);
        let e = w << shift;
        if DTYPE == DTYPE_F32 {
            for (var c = 0u; c < 4u; c++) {
                let b = v[c];
                row_elem(&s, b, (b & 0x7f800000u) != 0x7f800000u, e + c, row_base, q);
            }
        } else {
            for (var c = 0u; c < 4u; c++) {
                row_pair(&s, v[c], e + 2u * c, row_base, q);
            }
        }
    }
    rows[piece.row_max_base + r] = s;
}

// Kahan addition of `v` into sum i of `h`.
fn kahan(h: ptr<function, HeadSums>, i: u32, v: f32) {
    let y = v - (*h).comp[i];
    let t = (*h).sums[i] + y;
    (*h).comp[i] = (t - (*h).sums[i]) - y;
    (*h).sums[i] = t;
}

// Workgroup (_, _, z): piece z's rows, in order, into its head's scalars.
@compute @workgroup_size(1)
fn pattern_fold(@builtin(workgroup_id) wg: vec3<u32>) {
    piece = pieces[wg.z];
    var h = heads[piece.cell];
    for (var r = 0u; r < piece.row_count; r++) {
        let s = rows[piece.row_max_base + r];
        kahan(&h, 0u, s.sum);
        kahan(&h, 1u, s.sink);
        kahan(&h, 2u, s.local);
        kahan(&h, 3u, s.entropy);
        kahan(&h, 4u, s.distance);
        if s.arg_k != NONE && (h.seen == 0u || s.max_v > h.max_v) {
            h.max_v = s.max_v;
            h.arg_q = piece.row_start + r;
            h.arg_k = s.arg_k;
            h.seen = 1u;
        }
        let lo = h.bad.x + s.bad;
        h.bad = vec2<u32>(lo, h.bad.y + u32(lo < h.bad.x));
    }
    heads[piece.cell] = h;
}

var<workgroup> w_block: array<f32, WG>;

// Workgroup (x, _, z): keys [x * block, (x + 1) * block) of piece z, 64 at a time; each
// invocation sums its key's column over the piece's rows, and the workgroup adds each block
// row's share to the block's mass.
@compute @workgroup_size(64)
fn pattern_columns(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let p = pieces[wg.z];
    piece = p;
    let head = p.cell * params.stride;
    let blocks = head + params.keys + params.queries + params.keys - 1u;
    let r1 = p.row_count;
    for (var j = 0u; j < params.block / WG; j++) {
        let k = wg.x * params.block + j * WG + li;
        let inside = k < params.keys;
        var column = 0.0;
        var r = 0u;
        while r < r1 {
            // rows of one block row: [r, end)
            let q0 = p.row_start + r;
            let end = min(r1, (q0 / params.block + 1u) * params.block - p.row_start);
            var part = 0.0;
            for (var i = r; i < end; i++) {
                let q = piece.row_start + i;
                if inside && !masked(q, k) {
                    let v = load(piece.elem_offset + i * params.keys + k);
                    part += select(0.0, bitcast<f32>(v.x), v.y != 0u);
                }
            }
            column += part;
            w_block[li] = part;
            workgroupBarrier();
            for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
                if li < stride {
                    w_block[li] += w_block[li + stride];
                }
                workgroupBarrier();
            }
            if li == 0u {
                let b = blocks + (q0 / params.block) * params.blocks_w + wg.x;
                profiles[b] += w_block[0];
            }
            workgroupBarrier();
            r = end;
        }
        if inside {
            profiles[head + k] += column;
        }
    }
}

// Invocation j (flat over workgroups (x, y)) of piece z: the diagonal at offset
// a − k = j − (queries − 1).
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
    let d = i32(j) - i32(params.queries - 1u);
    // The mask depends on the offset alone (k > q + causal_offset is K − Q − d > causal_offset):
    // a masked diagonal reads nothing.
    if params.causal != 0u && i32(params.keys) - i32(params.queries) - d > piece.causal_offset {
        return;
    }
    // Only the piece's rows where 0 ≤ k < K: q in [d + Q − K, d + Q). The loop visits them alone
    // (a diagonal crosses at most min(Q, K) rows; walking all of the piece's rows for each of
    // the Q + K − 1 diagonals cost twice the iterations of the loads).
    let r0 = i32(piece.row_start);
    let lo = max(0, d + i32(params.queries) - i32(params.keys) - r0);
    let hi = min(i32(piece.row_count), d + i32(params.queries) - r0);
    var sum = 0.0;
    for (var i = lo; i < hi; i++) {
        let q = piece.row_start + u32(i);
        let k = u32(position(q) - d);
        let v = load(piece.elem_offset + u32(i) * params.keys + k);
        sum += select(0.0, bitcast<f32>(v.x), v.y != 0u);
    }
    profiles[piece.cell * params.stride + params.keys + j] += sum;
}
