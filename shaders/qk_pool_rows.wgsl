// The scores of the one-pass Q/K path with each invocation owning R query rows (appended to
// qk_pool.wgsl, whose Params, bindings, masks and pool_lse / pool_fold it shares; chosen by
// src/pool/qk/tiled/shape.rs for heads of up to 128 dimensions, whose query rows fit in registers).
//
// Every invocation of a dispatch walks the same keys in the same order: a window of KW keys
// bound as a uniform buffer (`kwin`, one dynamic offset per window and key head). So each key
// value is one load for the whole workgroup (a broadcast from the uniform or constant cache;
// on a CPU driver a scalar load), the query rows stay in registers, and every loaded value
// feeds one FMA per row of the invocation with no workgroup memory and no barrier. Because
// rows own their state, a pooled column's running (max, min, Σ exp2(s − max), Σ s) lives in
// registers while the keys cross it and is written to `inter` once per column and window,
// merged with what earlier windows left there; and the row's own running (max, Σ exp2(s − max))
// goes to `row_lse` once per window, so its log-sum-exp needs no second walk over its columns
// (pool_row_lse). Keys come four at a time; one rescale per four keys.
//
// Where the adapter has subgroups, the keys of a step are shared through them instead: each of
// KSTEP lanes loads one key's vec4s, and subgroupBroadcast hands every lane all of them, so a
// load that is not a broadcast on some drivers (a gather per lane on llvmpipe) serves KSTEP
// keys. Both ways add each score's products in the same order, and so does every row count R:
// the same scores, bit for bit.
//
// KWD4 (the window in vec4s: KW keys × D4), KSTEP (keys per step: 4, or the subgroup keys), R
// and RD4 (rows per invocation, and their query vec4s), the loads of the query rows, the scores
// of a step, and, with subgroups, the lane builtin and `score_shared` are substituted when the
// module is built (src/pool/qk/tiled/source.rs). The per-row bookkeeping loops over h (their header
// spelled exactly as below: `unroll_rows` finds them by it) are written out there too, one
// block per row with `h` a constant (a driver left to unroll them spends start-up time on it:
// lavapipe's NIR passes took 114 ms over the 8-row kernel with the loops, 47 ms without); the
// per-key work is substituted, unrolled, with constant indices.

const KWD4: u32 = 4096u;
// Keys per window (the window's vec4s over the head dimension's).
const KW: u32 = KWD4 / D4;

// Vec4s from one key head's start to the next's in `k`: its keys padded to whole windows (16
// keys where the row kernel is not built; `Cuts::head_k` in src/pool/qk/tiled/cuts.rs). Both
// kernels read a batch's second and later key heads from there.
fn key_head_vec4s() -> u32 {
    return (params.keys + KW - 1u) / KW * KWD4;
}
const KSTEP: u32 = 4u;
// Query rows per invocation: each key value loaded (and, with subgroups, handed out) feeds
// the scores of R rows, rows li·R ..< li·R + R of the workgroup's WG·R (consecutive, so that a
// subgroup's rows are a short run of the head's and a causal one walks few keys its rows do
// not see: `RowSpan::hi`). Chosen by the host so that the R query rows (R·D4 vec4s) still fit
// in registers.
const R: u32 = 1u;
// The R rows' query vec4s, D4 per row (indexed by constants only: registers).
const RD4: u32 = 16u;

@group(0) @binding(10) var<uniform> kwin: array<vec4<f32>, KWD4>;

// With SPLIT (qk_pool.wgsl) the row kernel reads its split's keys from `k` itself, and each
// split leaves its rows' (max, Σ exp2(s − max)) apart in `row_lse` for pool_row_lse to merge.
// Without it a dispatch takes one window of `kwin`, and each window merges its rows' running
// state into what the windows before it left.

// Vec4 `i` of the keys the row kernel reads: of the dispatch's window, or of `k` (SPLIT).
fn kload(i: u32) -> vec4<f32> {
    if SPLIT {
        return k[i];
    }
    return kwin[i];
}

// Where key `j`'s vec4s start for kload: in the window from the dispatch's first key, or in
// `k` from the workgroup's key head's start `kbase` (SPLIT).
fn key_vec4(kbase: u32, j: u32) -> u32 {
    if SPLIT {
        return kbase + j * D4;
    }
    return (j - params.seg_start) * D4;
}

// This invocation's query rows, row h at h·D4 (indexed by constants only: registers).
var<private> qrow: array<vec4<f32>, RD4>;

// The raw scores of the four keys starting at vec4 `o` of the window for each of the R rows,
// each added in dimension order like pool_scores' (so both kernels give the same score).
fn score4(o: u32) -> array<vec4<f32>, R> {
    var s: array<vec4<f32>, R>;
    // @SCORE4
    return s;
}

// The base-2 scores of four keys from their raw dot products, softcapped where the layer is.
fn scaled4(raw: vec4<f32>) -> vec4<f32> {
    if SOFTCAP {
        return capped4(raw * params.scale);
    }
    return raw * params.scale;
}

// Which of the keys j..j + 3 the row sees in the column: [lo, hi).
fn seen4(j: u32, lo: u32, hi: u32) -> vec4<bool> {
    let jj = vec4<u32>(j, j + 1u, j + 2u, j + 3u);
    return (jj >= vec4<u32>(lo)) & (jj < vec4<u32>(hi));
}

// A (row, pooled column) state (max, min, Σ exp2(s − max), Σ s) with four raw scores folded
// in, the keys the row does not see left out; one rescale for the four. (By value: naga 30's
// SPIR-V writer fails on a pointer to an array element passed to a function.)
fn fold4(st: vec4<f32>, raw: vec4<f32>, seen: vec4<bool>) -> vec4<f32> {
    let s = scaled4(raw);
    let m = st.x;
    let hi4 = select(vec4<f32>(-F32_MAX), s, seen);
    let lo4 = select(vec4<f32>(F32_MAX), s, seen);
    let nm = max(m, max(max(hi4.x, hi4.y), max(hi4.z, hi4.w)));
    let e = select(vec4<f32>(), exp2(s - nm), seen);
    // Σ s: only logits are pooled from it
    var w = st.w;
    if LOGITS {
        let sv = select(vec4<f32>(), s, seen);
        w += (sv.x + sv.y) + (sv.z + sv.w);
    }
    return vec4<f32>(
        nm,
        min(st.y, min(min(lo4.x, lo4.y), min(lo4.z, lo4.w))),
        st.z * exp2(m - nm) + ((e.x + e.y) + (e.z + e.w)),
        w,
    );
}

// What an invocation of the row kernels (pool_rows, prob_rows) takes of the dispatch: its head
// of the batch `z`; per row h of its R, its row `i[h]` of the chunk (`in_chunk[h]`: a row of
// it; the last one's index otherwise, so every lane loads a row) and index into `q` `r[h]`;
// and the keys of the window its rows see, [lo, hi): from the oldest key any row of the
// invocation's subgroup sees to the last any of them sees (uniform in the subgroup, whose lanes
// hand each other keys; each invocation its own without subgroups), so that on a causal head a
// subgroup stops at its own rows' diagonal rather than the workgroup's last row's, and under a
// sliding window starts at its own first row's oldest key rather than the workgroup's first
// row's (a 65-key two-sided window: 3.3× fewer keys a row with 512 rows a workgroup); `live`
// false when that is none. When live, the rows' query
// values are in `qrow`.
struct RowSpan {
    z: u32,
    // the keys of the dispatch (or, SPLIT, of the workgroup's split), and where the key head's
    // vec4s start in `k` (SPLIT)
    seg_start: u32,
    seg_end: u32,
    kbase: u32,
    i: array<u32, R>,
    in_chunk: array<bool, R>,
    r: array<u32, R>,
    lo: u32,
    hi: u32,
    live: bool,
}

fn row_span(wg: vec3<u32>, li: u32) -> RowSpan {
    var sp: RowSpan;
    sp.z = params.member0 + wg.z;
    let blocks = (params.rows + WG * R - 1u) / (WG * R);
    let i0 = ((wg.x * params.row_perm) % blocks) * WG * R;
    if i0 >= params.rows {
        return sp;
    }
    sp.seg_start = params.seg_start;
    sp.seg_end = params.seg_end;
    if SPLIT {
        // (prob_rows of a stored run: splits of whole texels; else whole columns)
        let s0 = wg.y * params.split_len;
        var seg = vec2<u32>(s0, min(s0 + params.split_len, params.keys));
        if params.split_len == 0u {
            seg = split_keys(wg.y);
        }
        sp.seg_start = seg.x;
        sp.seg_end = seg.y;
        sp.kbase = heads[sp.z].x * key_head_vec4s();
    }
    // (the last key any of the lanes' rows sees: at most the workgroup's last row's)
    var own = 0u;
    for (var h = 0u; h < R; h++) {
        let i = i0 + li * R + h;
        sp.i[h] = i;
        sp.in_chunk[h] = i < params.rows;
        sp.r[h] = params.row_start + min(i, params.rows - 1u);
        own = max(own, visible(sp.r[h]));
    }
    // (the first key any of them sees: its first row's, the oldest)
    var own_lo = first_visible(sp.r[0]);
    // @SUBGROUP_HI
    sp.lo = max(sp.seg_start, own_lo);
    sp.hi = min(sp.seg_end, own);
    sp.live = sp.lo < sp.hi;
    if sp.live {
        let z = sp.z;
        // @QLOAD
    }
    return sp;
}

// Per-row state of pool_rows for one of an invocation's R rows.
struct RowRun {
    vis: u32,
    fv: u32,
    inter_row: u32,
    // the row's running (max, Σ exp2(s − max)) over the columns walked so far
    row_m: f32,
    row_l: f32,
    // the window's first column when an earlier window left this row's state for it in
    // `inter` (read once before the loop, merged after it)
    cont: bool,
    prev: vec4<f32>,
    first_st: vec4<f32>,
    first_seen: bool,
}

@compute @workgroup_size(64)
fn pool_rows(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
    /* @LANE_ARG */
) {
    let sp = row_span(wg, li);
    if !sp.live {
        return;
    }
    let z = sp.z;
    let lo = sp.lo;
    let hi = sp.hi;
    let b_end = key_bin[hi - 1u] + 1u;
    // Column edges follow from the first (bin_edges in src/pool/geometry.rs: edge b is
    // ⌊b·keys / pooled_w⌋, so each column is keys / pooled_w keys wide, one more whenever the
    // running remainder wraps): no load per column.
    let b_first = key_bin[lo];
    let width = params.keys / params.pooled_w;
    let extra = params.keys % params.pooled_w;
    var frac = (b_first * extra) % params.pooled_w;
    var c1 = col_edges[b_first];
    // The window's first column may have begun in an earlier window, whose keys this row then
    // left in `inter`: that state is read once here and merged after the loop, so that the
    // loop's store is unconditional (software rasterizers run both sides of a branch: a merge
    // inside the loop cost a load and a merge for every column).
    var rr: array<RowRun, R>;
    for (var h = 0u; h < R; h++) {
        let r = sp.r[h];
        rr[h].vis = visible(r);
        rr[h].fv = first_visible(r);
        rr[h].inter_row = (z * params.inter_rows + sp.i[h]) * params.pooled_w;
        rr[h].row_m = -F32_MAX;
        rr[h].row_l = 0.0;
        rr[h].cont = max(c1, rr[h].fv) < sp.seg_start && sp.in_chunk[h];
        rr[h].prev = vec4<f32>(-F32_MAX, F32_MAX, 0.0, 0.0);
        if rr[h].cont {
            rr[h].prev = inter[rr[h].inter_row + b_first];
        }
        rr[h].first_st = rr[h].prev;
        rr[h].first_seen = false;
    }
    for (var b = b_first; b < b_end; b++) {
        let c0 = c1;
        frac += extra;
        let wrap = frac >= params.pooled_w;
        c1 = c0 + width + select(0u, 1u, wrap);
        frac -= select(0u, params.pooled_w, wrap);
        let kl = max(c0, lo);
        let kh = min(c1, hi);
        // per row, the keys of this column and window that it sees, and its state
        var rl: array<u32, R>;
        var rh: array<u32, R>;
        var st: array<vec4<f32>, R>;
        for (var h = 0u; h < R; h++) {
            rl[h] = max(kl, rr[h].fv);
            rh[h] = min(kh, rr[h].vis);
            st[h] = vec4<f32>(-F32_MAX, F32_MAX, 0.0, 0.0);
        }
        for (var j = kl; j < kh; j += KSTEP) {
            let o = key_vec4(sp.kbase, j);
            // @STEP
        }
        let first = b == b_first;
        for (var h = 0u; h < R; h++) {
            let m = st[h].x;
            let l = st[h].z;
            // row_l · exp2(row_m − nm) + l · exp2(m − nm) with nm the larger maximum, whose
            // own factor is exp2(0) = 1: one exp2 a column and row instead of two, the same
            // bits (m − row_m and row_m − m round alike)
            let d = m - rr[h].row_m;
            let e = exp2(-abs(d));
            rr[h].row_l = select(rr[h].row_l + l * e, rr[h].row_l * e + l, d > 0.0);
            rr[h].row_m = max(rr[h].row_m, m);
            let seen = sp.in_chunk[h] && rh[h] > rl[h];
            if seen {
                inter[rr[h].inter_row + b] = st[h];
            }
            rr[h].first_st = select(rr[h].first_st, st[h], first);
            rr[h].first_seen = select(rr[h].first_seen, seen, first);
        }
    }
    for (var h = 0u; h < R; h++) {
        if rr[h].cont && rr[h].first_seen {
            inter[rr[h].inter_row + b_first] = merged(rr[h].prev, rr[h].first_st);
        }
        if sp.in_chunk[h] && max(lo, rr[h].fv) < min(hi, rr[h].vis) {
            let idx = z * params.inter_rows + sp.i[h];
            let row_m = rr[h].row_m;
            let row_l = rr[h].row_l;
            if SPLIT {
                row_lse[params.part_stride * (1u + wg.y) + idx] = vec2<f32>(row_m, row_l);
            } else if rr[h].fv >= params.seg_start {
                // the row's first key is in this window
                row_lse[idx] = vec2<f32>(row_m, row_l);
            } else {
                let old = row_lse[idx];
                let nm = max(old.x, row_m);
                row_lse[idx] = vec2<f32>(nm, old.y * exp2(old.x - nm) + row_l * exp2(row_m - nm));
            }
        }
    }
}

// One invocation per (row of the chunk, head of the batch), after the row kernel: the row's
// (max, Σ exp2(s − max)) becomes its (log-sum-exp, largest probability), as pool_lse gives.
@compute @workgroup_size(64)
fn pool_row_lse(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if i >= params.rows {
        return;
    }
    let r = params.row_start + i;
    if visible(r) == first_visible(r) {
        return;
    }
    let idx = gid.z * params.inter_rows + i;
    var st: vec2<f32>;
    if !SPLIT {
        st = row_lse[idx];
    } else {
        // the splits the row sees keys of, in key order (those pool_rows wrote)
        st = vec2<f32>(-F32_MAX, 0.0);
        let fv = first_visible(r);
        let vis = visible(r);
        for (var s = 0u; s < params.splits; s++) {
            let seg = split_keys(s);
            if max(seg.x, fv) < min(seg.y, vis) {
                let p = row_lse[params.part_stride * (1u + s) + idx];
                let nm = max(st.x, p.x);
                st = vec2<f32>(nm, st.y * exp2(st.x - nm) + p.y * exp2(p.x - nm));
            }
        }
    }
    // the sink joins the denominator, not the row's largest probability
    let sink = bitcast<f32>(heads[gid.z].z);
    let ms = max(st.x, sink);
    let lse = ms + log2(st.y * exp2(st.x - ms) + exp2(sink - ms));
    row_lse[idx] = vec2<f32>(lse, exp2(st.x - lse));
}

// Every probability of a chunk's rows for one window of keys (SPLIT: each workgroup its split of
// `split_len` keys, or of the columns where that is 0), for the consumers that need each
// entry (the pattern statistics: a key's column mass sums its probabilities over rows, which
// needs every row's normalizer first): the scores of pool_rows, step for step, turned into
// p = exp2(s − lse) with the lse pool_row_lse left in `row_lse` (LOGITS: the logit, natural
// units). Keys a row does not see get 0, as in the two-pass path, except those no row of the
// workgroup sees, which are never visited: keys past the diagonal, which every pass reading
// the chunk masks, and keys before a sliding window, for which the host clears `probs` before
// the chunk. Row i of the chunk starts at element i * prob_stride().
//
// Where they go: `probs` and `store4` below, a storage buffer (read back as it is, or copied
// into the pool pass's chunk texture); or, substituted for the lines between the @PROBS_OUT
// markers by src/pool/qk/tiled/source.rs, shaders/qk_probs_texture.wgsl: the chunk texture itself.

// Four keys' probabilities (or logits) from their raw dot products; 0 where not seen.
fn prob4(raw: vec4<f32>, seen: vec4<bool>, lse: f32) -> vec4<f32> {
    let s = scaled4(raw);
    var p = exp2(s - lse);
    if LOGITS {
        p = s * LN2;
    }
    return select(vec4<f32>(), p, seen);
}

// @PROBS_OUT {
@group(0) @binding(12) var<storage, read_write> probs: array<f32>;

// Elements from one row's start to the next's: the keys (rows read back as they are).
fn prob_stride() -> u32 {
    return params.keys;
}

// Keys j..j + 3 of the row starting at `base`, those before `end` (the next window's, or the
// next row's, are not this step's).
fn store4(base: u32, j: u32, end: u32, p: vec4<f32>) {
    for (var t = 0u; t < 4u; t++) {
        if j + t < end {
            probs[base + j + t] = p[t];
        }
    }
}
// @PROBS_OUT }

@compute @workgroup_size(64)
fn prob_rows(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
    /* @LANE_ARG */
) {
    let sp = row_span(wg, li);
    if !sp.live {
        return;
    }
    let z = sp.z;
    let lo = sp.lo;
    let hi = sp.hi;
    // per row: its lse, the keys it sees, where its probabilities start
    var lse: array<f32, R>;
    var rl: array<u32, R>;
    var rh: array<u32, R>;
    var base: array<u32, R>;
    for (var h = 0u; h < R; h++) {
        let r = sp.r[h];
        lse[h] = row_lse[z * params.inter_rows + sp.i[h]].x;
        rl[h] = max(lo, first_visible(r));
        rh[h] = min(hi, visible(r));
        // (the batch's heads side by side, a chunk's rows each)
        base[h] = (z * params.inter_rows + sp.i[h]) * prob_stride();
    }
    // (from a multiple of 4: the keys before lo are 0 for every row of the subgroup, seen by
    // none, and a texel of the chunk texture is 4 keys; windows start on a multiple of 16)
    for (var j = lo & ~3u; j < hi; j += KSTEP) {
        let o = key_vec4(sp.kbase, j);
        // @PSTEP
    }
}
