// The scores of the one-pass Q/K path with one invocation per query row (appended to
// qk_pool.wgsl, whose Params, bindings, masks and pool_lse / pool_fold it shares; chosen by
// src/pool/qk/tiled.rs for heads of up to 128 dimensions, whose query row fits in registers).
//
// Every invocation of a dispatch walks the same keys in the same order: a window of KW keys
// bound as a uniform buffer (`kwin`, one dynamic offset per window and key head). So each key
// value is one load for the whole workgroup (a broadcast from the uniform or constant cache;
// on a CPU driver a scalar load), the query row stays in registers, and every loaded value
// feeds one FMA per row with no workgroup memory and no barrier. Because rows own their state,
// a pooled column's running (max, min, Σ exp2(s − max), Σ s) lives in registers while the keys
// cross it and is written to `inter` once per column and window, merged with what earlier
// windows left there; and the row's own running (max, Σ exp2(s − max)) goes to `row_lse` once
// per window, so its log-sum-exp needs no second walk over its columns (pool_row_lse). Keys
// come four at a time; one rescale per four keys.
//
// Where the adapter has subgroups, the keys of a step are shared through them instead: each of
// KSTEP lanes loads one key's vec4s, and subgroupBroadcast hands every lane all of them, so a
// load that is not a broadcast on some drivers (a gather per lane on llvmpipe) serves KSTEP
// keys. Both ways add each score's products in the same order: the same scores, bit for bit.
//
// KWD4 (the window in vec4s: KW keys × D4), KSTEP (keys per step: 4, or the subgroup keys), the
// loads of the query row, the scores of a step, and, with subgroups, the lane builtin
// and `score_shared` are substituted when the module is built (src/pool/qk/tiled.rs).

const KWD4: u32 = 4096u;
const KSTEP: u32 = 4u;

@group(0) @binding(10) var<uniform> kwin: array<vec4<f32>, KWD4>;

// This invocation's query row, D4 vec4s (indexed by constants only: registers).
var<private> qrow: array<vec4<f32>, D4>;

// The raw scores of the four keys starting at vec4 `o` of the window, each added in dimension
// order like pool_scores' (so both kernels give the same score).
fn score4(o: u32) -> vec4<f32> {
    var s = vec4<f32>();
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

// Folds four raw scores into a (row, pooled column) state (max, min, Σ exp2(s − max), Σ s),
// the keys the row does not see left out; one rescale for the four.
fn fold4(st: ptr<function, vec4<f32>>, raw: vec4<f32>, seen: vec4<bool>) {
    let s = scaled4(raw);
    let m = (*st).x;
    let hi4 = select(vec4<f32>(-F32_MAX), s, seen);
    let lo4 = select(vec4<f32>(F32_MAX), s, seen);
    let nm = max(m, max(max(hi4.x, hi4.y), max(hi4.z, hi4.w)));
    let e = select(vec4<f32>(), exp2(s - nm), seen);
    // Σ s: only logits are pooled from it
    var w = (*st).w;
    if LOGITS {
        let sv = select(vec4<f32>(), s, seen);
        w += (sv.x + sv.y) + (sv.z + sv.w);
    }
    *st = vec4<f32>(
        nm,
        min((*st).y, min(min(lo4.x, lo4.y), min(lo4.z, lo4.w))),
        (*st).z * exp2(m - nm) + ((e.x + e.y) + (e.z + e.w)),
        w,
    );
}

// What an invocation of the row kernels (pool_rows, prob_rows) takes of the dispatch: its head
// of the batch `z`, its row `i` of the chunk (`in_chunk`: a row of it; the last one's index
// otherwise, so every lane loads a row) and index into `q` `r`, and the keys of the window any
// row of its workgroup sees, [lo_wg, hi_wg) (uniform: the loops over them stay uniform); `live`
// false when that is none.
struct RowSpan {
    z: u32,
    i: u32,
    in_chunk: bool,
    r: u32,
    lo_wg: u32,
    hi_wg: u32,
    live: bool,
}

fn row_span(wg: vec3<u32>, li: u32) -> RowSpan {
    var sp: RowSpan;
    sp.z = params.member0 + wg.z;
    let i0 = wg.x * WG;
    if i0 >= params.rows {
        return sp;
    }
    let r_first = params.row_start + i0;
    let r_last = r_first + min(WG, params.rows - i0) - 1u;
    sp.lo_wg = max(params.seg_start, first_visible(r_first));
    sp.hi_wg = min(params.seg_end, visible(r_last));
    sp.live = sp.lo_wg < sp.hi_wg;
    sp.i = i0 + li;
    sp.in_chunk = sp.i < params.rows;
    sp.r = params.row_start + min(sp.i, params.rows - 1u);
    return sp;
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
    let i = sp.i;
    let in_chunk = sp.in_chunk;
    let r = sp.r;
    let lo_wg = sp.lo_wg;
    let hi_wg = sp.hi_wg;
    let vis = visible(r);
    let fv = first_visible(r);
    let q_base = (z * params.q_rows + r) * D4;
    // @QLOAD
    let inter_row = (z * params.inter_rows + i) * params.pooled_w;
    var row_m = -F32_MAX;
    var row_l = 0.0;
    let b_end = key_bin[hi_wg - 1u] + 1u;
    // Column edges follow from the first (bin_edges in src/pool/geometry.rs: edge b is
    // ⌊b·keys / pooled_w⌋, so each column is keys / pooled_w keys wide, one more whenever the
    // running remainder wraps): no load per column.
    let b_first = key_bin[lo_wg];
    let width = params.keys / params.pooled_w;
    let extra = params.keys % params.pooled_w;
    var frac = (b_first * extra) % params.pooled_w;
    var c1 = col_edges[b_first];
    // The window's first column may have begun in an earlier window, whose keys this row then
    // left in `inter`: that state is read once here and merged after the loop, so that the
    // loop's store is unconditional (software rasterizers run both sides of a branch: a merge
    // inside the loop cost a load and a merge for every column).
    let idx_first = inter_row + b_first;
    let cont = max(c1, fv) < params.seg_start && in_chunk;
    var prev = vec4<f32>(-F32_MAX, F32_MAX, 0.0, 0.0);
    if cont {
        prev = inter[idx_first];
    }
    var first_st = prev;
    var first_seen = false;
    for (var b = b_first; b < b_end; b++) {
        let c0 = c1;
        frac += extra;
        let wrap = frac >= params.pooled_w;
        c1 = c0 + width + select(0u, 1u, wrap);
        frac -= select(0u, params.pooled_w, wrap);
        let kl = max(c0, lo_wg);
        let kh = min(c1, hi_wg);
        // the keys of this column and window that this row sees
        let rl = max(kl, fv);
        let rh = min(kh, vis);
        var st = vec4<f32>(-F32_MAX, F32_MAX, 0.0, 0.0);
        for (var j = kl; j < kh; j += KSTEP) {
            let o = (j - params.seg_start) * D4;
            // @STEP
        }
        let m = st.x;
        let l = st.z;
        let row_nm = max(row_m, m);
        row_l = row_l * exp2(row_m - row_nm) + l * exp2(m - row_nm);
        row_m = row_nm;
        let seen = in_chunk && rh > rl;
        if seen {
            inter[inter_row + b] = st;
        }
        let first = b == b_first;
        first_st = select(first_st, st, first);
        first_seen = select(first_seen, seen, first);
    }
    if cont && first_seen {
        inter[idx_first] = merged(prev, first_st);
    }
    if in_chunk && max(lo_wg, fv) < min(hi_wg, vis) {
        let idx = z * params.inter_rows + i;
        if fv >= params.seg_start {
            // the row's first key is in this window
            row_lse[idx] = vec2<f32>(row_m, row_l);
        } else {
            let st = row_lse[idx];
            let nm = max(st.x, row_m);
            row_lse[idx] = vec2<f32>(nm, st.y * exp2(st.x - nm) + row_l * exp2(row_m - nm));
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
    let st = row_lse[idx];
    // the sink joins the denominator, not the row's largest probability
    let sink = bitcast<f32>(heads[gid.z].z);
    let ms = max(st.x, sink);
    let lse = ms + log2(st.y * exp2(st.x - ms) + exp2(sink - ms));
    row_lse[idx] = vec2<f32>(lse, exp2(st.x - lse));
}

// Every probability of a chunk's rows for one window of keys, for the consumers that need each
// entry (the pattern statistics: a key's column mass sums its probabilities over rows, which
// needs every row's normalizer first): the scores of pool_rows, step for step, turned into
// p = exp2(s − lse) with the lse pool_row_lse left in `row_lse` (LOGITS: the logit, natural
// units). Keys a row does not see get 0, as in the two-pass path, except those no row of the
// workgroup sees, which are never visited: keys past the diagonal, which every pass reading
// the chunk masks, and keys before a sliding window, for which the host clears `probs` before
// the chunk. Row i of the chunk starts at `probs[i * keys]`.
@group(0) @binding(14) var<storage, read_write> probs: array<f32>;

// Four keys' probabilities (or logits) from their raw dot products; 0 where not seen.
fn prob4(raw: vec4<f32>, seen: vec4<bool>, lse: f32) -> vec4<f32> {
    let s = scaled4(raw);
    var p = exp2(s - lse);
    if LOGITS {
        p = s * LN2;
    }
    return select(vec4<f32>(), p, seen);
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
    let i = sp.i;
    let in_chunk = sp.in_chunk;
    let r = sp.r;
    let lo_wg = sp.lo_wg;
    let hi_wg = sp.hi_wg;
    let q_base = (sp.z * params.q_rows + r) * D4;
    // @QLOAD
    let lse = row_lse[sp.z * params.inter_rows + i].x;
    let rl = max(lo_wg, first_visible(r));
    let rh = min(hi_wg, visible(r));
    let base = i * params.keys;
    for (var j = lo_wg; j < hi_wg; j += KSTEP) {
        let o = (j - params.seg_start) * D4;
        // @PSTEP
    }
}
