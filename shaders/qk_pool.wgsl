// Attention from Q and K pooled in one pass over the scores (src/pool/qk/tiled/), never holding a
// probability anywhere:
//   pool_scores: a workgroup owns TQ query rows of one head and walks the keys of a segment
//                TK at a time; each tile of TQ × TK scores is a small GEMM (Q and K slices
//                staged in workgroup memory, an 8 × 8 register block per invocation); the tile's
//                scores then go to workgroup memory and every (row, key bin) it touches folds
//                them into its running state in `inter`: the max and min of the raw scores and
//                Σ exp2(s − max) (rescaled online when a later tile raises the max);
//   pool_lse:    per row, the log-sum-exp from its bins' states (max over bins, Σ of the
//                rescaled sums), and the row's largest probability (for --norm row);
//   pool_fold:   per output pixel, its rows in order: p = exp2(s − lse) is monotone in s, so the
//                bin's largest and smallest probabilities are exp2(max − lse) and
//                exp2(min − lse), its sum exp2(max − lse) · Σ exp2(s − max); folded into the
//                pooled accumulators with the semantics of pool.wgsl (count of unmasked
//                entries, row order, --norm row dividing by the row's maximum).
// A capture's layer settings (src/source/qk_meta.rs) apply as in the CPU reference: keys
// older than a sliding window (and, in a bidirectional layer, keys as far after the query: its
// window is two-sided) have probability 0 (counted as entries, like the two-pass path's zeros)
// and their tiles are skipped, a softcap bends each score, a sink logit joins each
// row's log-sum-exp. Scores are in base 2 (`scale` holds log2(e)). Every loop is bounded (keys in segments of a
// few thousand per dispatch: llvmpipe stops a shader's loops after 65535 iterations and
// display drivers' watchdogs stop long dispatches).
//
// D4 (head dimension in vec4s, zero padded to a multiple of SLICE) and SLICE (vec4s of it
// staged per step) are substituted when the module is built (src/pool/qk/tiled/source.rs). Accum,
// F32_MAX, COUNT_MASK and BAD_BIT come from common.wgsl, prepended.

const D4: u32 = 16u;
const SLICE: u32 = 8u;
// Query rows and keys of a tile, invocations of a workgroup (each an 8 × 8 block of scores:
// rows tr + 8·a, keys 8·tc + b).
const TQ: u32 = 64u;
const TK: u32 = 64u;
const WG: u32 = 64u;
const FLAG_CAUSAL: u32 = 1u;
// The modes of a run, fixed per pipeline rather than read from `params`: software
// rasterizers run both sides of every branch, so a runtime test leaves, for example, the
// softcap's tanh on every score of every model (10% of the row kernel on llvmpipe), and GPUs
// drop the dead code too. SOFTCAP: scores pass through softcap · tanh(s / softcap) (the layer
// has one); LOGITS: pool_fold folds the logits (natural units) of the keys each row sees, not
// probabilities; ROW_NORM: --norm row.
override SOFTCAP: bool = false;
override LOGITS: bool = false;
override ROW_NORM: bool = false;
// RANGED: each row's keys come from the table after `key_bin` (a layer with bidirectional
// spans), not from the mask's rules (a test per row in every kernel, which llvmpipe would run
// both sides of).
override RANGED: bool = false;
const LN2: f32 = 0.6931471805599453;

struct Params {
    // rows of this chunk, and the first of them (among the computed rows: index into a head's
    // rows in `q`)
    rows: u32,
    row_start: u32,
    // rows per head in `q`
    q_rows: u32,
    // keys in `k` per head
    keys: u32,
    flags: u32,
    // key k is hidden from row r when k > r + diagonal
    diagonal: i32,
    // softmax scale × log2(e)
    scale: f32,
    // pool_scores: the keys this dispatch adds, [seg_start, seg_end)
    seg_start: u32,
    seg_end: u32,
    pooled_w: u32,
    // pool_fold: first pooled row of the chunk
    y_start: u32,
    // pixels per cell
    px: u32,
    // rows per head in `inter` and `row_lse`
    inter_rows: u32,
    // keys this many positions older than the query or more are hidden (and, bidirectional,
    // as many after it: a two-sided window); 0: no window
    window: u32,
    // softcap × log2(e): scores become softcap · tanh(s / softcap); 0: none
    softcap: f32,
    // pool_rows: the first head of the batch (workgroup z = 0) this dispatch takes
    member0: u32,
    // pool_rows, prob_rows, pool_scores: workgroup x takes block (x · row_perm) mod blocks of
    // the chunk's rows (`spread_order` in src/gpu/mod.rs says why)
    row_perm: u32,
    // SPLIT (below): the splits of the keys, `split_cols` pooled columns each
    // (the last one fewer), and the elements of `row_lse` per split's row states (batch heads ×
    // inter_rows; the splits' states follow the rows' lse)
    splits: u32,
    split_cols: u32,
    part_stride: u32,
    // prob_rows of a run that stores probabilities, with SPLIT: keys per split (a multiple of
    // 16, whole texels), instead of the columns' splits
    split_len: u32,
    // attention chunks of this many positions: keys before the query's chunk are hidden; 0: none
    chunk: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> k: array<vec4<f32>>;
// per head of the batch (workgroup z): its key head's slot in `k`, its cell's index in `accum`,
// its sink logit × log2(e) as f32 bits (-F32_MAX: none), unused
@group(0) @binding(3) var<storage, read> heads: array<vec4<u32>>;
// per key: its pooled column; then, RANGED, per position a of the keys, the first key its
// query sees and one past its last (`QkSource::key_ranges`: causal under bidirectional spans,
// Gemma-3's images or PaliGemma's prefix, which no rule of qk_mask.wgsl describes; in the
// buffer that holds the keys' columns, as the layer's own, so the kernel takes no binding more)
@group(0) @binding(4) var<storage, read> key_bin: array<u32>;
@group(0) @binding(5) var<storage, read> col_edges: array<u32>;
@group(0) @binding(6) var<storage, read> row_edges: array<u32>;
// per head, row of the chunk and pooled column: (max score, min score, Σ exp2(s − max), Σ s)
@group(0) @binding(7) var<storage, read_write> inter: array<vec4<f32>>;
// per head and row of the chunk: (lse, the row's largest probability); with SPLIT, then per
// split, head and row: the row's (max, Σ exp2(s − max)) over that split's keys
@group(0) @binding(8) var<storage, read_write> row_lse: array<vec2<f32>>;
@group(0) @binding(9) var<storage, read_write> accum: array<Accum>;
// The row kernel reads each row of Q from a copy of `q` in a texture, 16-byte words CHUNK_W to
// a row (src/pool/chunk.rs says why a texture; binding 10 is the row kernel's window of K).
// pool_fold reads `inter` and `row_lse` where they are: each of its lanes reads one state a
// row, consecutive lanes consecutive states, which llvmpipe loads faster than a texture copy
// of them costs (a 16384-token head 3% faster, unmasked or causal), and a GPU does not need
// the copy (512 MiB of states a chunk there).
@group(0) @binding(11) var q_tex: texture_storage_2d<rgba32uint, read>;

// Split keys (src/pool/qk/tiled/cuts.rs, `Cuts::splits`): one score dispatch takes every key of
// the chunk, workgroup y a split of whole pooled columns. Without it a dispatch takes one
// segment (pool_scores) or window (pool_rows) of keys, and the dispatches run one after
// another, each carrying on the states the one before left: on a GPU a head's rows are then
// a few hundred workgroups at a time with a barrier between dispatches (an H200 ran a 32k
// head's scores at 2% of its FMA rate so). Bins never straddle a split, so each
// (row, column) state is one workgroup's, and every score is the same sum.
override SPLIT: bool = false;

// The keys of split `s`, [start, end): its columns' keys.
fn split_keys(s: u32) -> vec2<u32> {
    let b0 = s * params.split_cols;
    return vec2<u32>(col_edges[b0], col_edges[min(b0 + params.split_cols, params.pooled_w)]);
}

// Vec4 i of `q`, from its texture copy.
fn q_word(i: u32) -> vec4<f32> {
    return bitcast<vec4<f32>>(chunk_word(q_tex, i));
}

// Staging for the Q and K slices, then the tile's scores (row i, key j: float j % 4 of vec4
// i·TK/4 + j/4). Q: vec4 v of row i at v·TQ + i. K after it: vec4 v of key j at
// TQ·SLICE + v·TK + (j % 8)·8 + j / 8, so that the invocations of a row of blocks read
// consecutive vec4s. 16 KiB, the least any adapter offers.
var<workgroup> smem: array<vec4<f32>, 1024>;

// One past the last key row `r` sees (qk_mask.wgsl).
fn visible(r: u32) -> u32 {
    if RANGED {
        return row_range(r).y;
    }
    return mask_end(r, (params.flags & FLAG_CAUSAL) != 0u, params.diagonal, params.keys, params.window, params.chunk);
}

// RANGED: the keys row `r` sees, from the table after the keys' columns (qk_table.wgsl).
fn row_range(r: u32) -> vec2<u32> {
    return table_range(params.keys, r, params.diagonal, params.keys);
}

// One past the last key that is an entry of row `r` (qk_mask.wgsl): past visible(r) in a
// bidirectional layer with a sliding window only, whose later keys are entries of 0 as its older
// keys are.
fn entries(r: u32) -> u32 {
    return entry_end(r, (params.flags & FLAG_CAUSAL) != 0u, params.diagonal, params.keys);
}

// The first key row `r` sees (a sliding window's oldest, or its chunk's first), at most
// visible(r).
fn first_visible(r: u32) -> u32 {
    if RANGED {
        return row_range(r).x;
    }
    return mask_start(r, visible(r), params.diagonal, params.window, params.chunk);
}

// Softcaps four base-2 scores (SOFTCAP).
fn capped4(s: vec4<f32>) -> vec4<f32> {
    return params.softcap * tanh(s / params.softcap);
}

// Two states of one (row, pooled column) pair over disjoint keys, as one: (max, min,
// Σ exp2(s − max), Σ s), the sums rescaled to the larger max. Both score kernels merge with it.
fn merged(a: vec4<f32>, b: vec4<f32>) -> vec4<f32> {
    let m = max(a.x, b.x);
    return vec4<f32>(m, min(a.y, b.y), a.z * exp2(a.x - m) + b.z * exp2(b.x - m), a.w + b.w);
}

fn score(i: u32, j: u32) -> f32 {
    return smem[i * (TK / 4u) + (j >> 2u)][j & 3u];
}

@compute @workgroup_size(64)
fn pool_scores(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let z = wg.z;
    // (blocks of TQ rows in a spread order, as pool_rows takes its blocks)
    let blocks = (params.rows + TQ - 1u) / TQ;
    let i0 = ((wg.x * params.row_perm) % blocks) * TQ;
    if i0 >= params.rows {
        return;
    }
    let r0 = params.row_start + i0;
    let n_rows = min(TQ, params.rows - i0);
    // The keys of the dispatch's segment, or of the workgroup's split.
    var seg = vec2<u32>(params.seg_start, params.seg_end);
    if SPLIT {
        seg = split_keys(wg.y);
    }
    // The workgroup's last row sees the most keys: tiles past them are skipped (causal).
    let wg_end = min(visible(r0 + n_rows - 1u), seg.y);
    let tr = li / 8u;
    let tc = li % 8u;
    let q_base = (z * params.q_rows + r0) * D4;
    let k_base = heads[z].x * key_head_vec4s();
    let inter_base = z * params.inter_rows + i0;
    // The workgroup's first row sees the oldest keys (sliding window): tiles before its tile
    // are skipped, and the states of columns that start before it are begun there.
    let t_first = first_visible(r0) / TK * TK;
    for (var t0 = max(seg.x, t_first); t0 < wg_end; t0 += TK) {
        var acc0l = vec4<f32>();
        var acc0h = vec4<f32>();
        var acc1l = vec4<f32>();
        var acc1h = vec4<f32>();
        var acc2l = vec4<f32>();
        var acc2h = vec4<f32>();
        var acc3l = vec4<f32>();
        var acc3h = vec4<f32>();
        var acc4l = vec4<f32>();
        var acc4h = vec4<f32>();
        var acc5l = vec4<f32>();
        var acc5h = vec4<f32>();
        var acc6l = vec4<f32>();
        var acc6h = vec4<f32>();
        var acc7l = vec4<f32>();
        var acc7h = vec4<f32>();
        for (var s = 0u; s < D4; s += SLICE) {
            workgroupBarrier();
            for (var e = li; e < TQ * SLICE; e += WG) {
                let i = e / SLICE;
                let v = e % SLICE;
                var x = vec4<f32>();
                if i < n_rows {
                    x = q[q_base + i * D4 + s + v];
                }
                smem[v * TQ + i] = x;
                var y = vec4<f32>();
                if t0 + i < wg_end {
                    y = k[k_base + (t0 + i) * D4 + s + v];
                }
                smem[TQ * SLICE + v * TK + (i % 8u) * 8u + i / 8u] = y;
            }
            workgroupBarrier();
            // Each score adds its vec4 dot products in dimension order, like qk.wgsl's.
            for (var v = 0u; v < SLICE; v++) {
                let kb = TQ * SLICE + v * TK + tc;
                let qb = v * TQ + tr;
                let b0 = smem[kb + 0u];
                let b1 = smem[kb + 8u];
                let b2 = smem[kb + 16u];
                let b3 = smem[kb + 24u];
                let b4 = smem[kb + 32u];
                let b5 = smem[kb + 40u];
                let b6 = smem[kb + 48u];
                let b7 = smem[kb + 56u];
                let a0 = smem[qb + 0u];
                acc0l += vec4<f32>(dot(a0, b0), dot(a0, b1), dot(a0, b2), dot(a0, b3));
                acc0h += vec4<f32>(dot(a0, b4), dot(a0, b5), dot(a0, b6), dot(a0, b7));
                let a1 = smem[qb + 8u];
                acc1l += vec4<f32>(dot(a1, b0), dot(a1, b1), dot(a1, b2), dot(a1, b3));
                acc1h += vec4<f32>(dot(a1, b4), dot(a1, b5), dot(a1, b6), dot(a1, b7));
                let a2 = smem[qb + 16u];
                acc2l += vec4<f32>(dot(a2, b0), dot(a2, b1), dot(a2, b2), dot(a2, b3));
                acc2h += vec4<f32>(dot(a2, b4), dot(a2, b5), dot(a2, b6), dot(a2, b7));
                let a3 = smem[qb + 24u];
                acc3l += vec4<f32>(dot(a3, b0), dot(a3, b1), dot(a3, b2), dot(a3, b3));
                acc3h += vec4<f32>(dot(a3, b4), dot(a3, b5), dot(a3, b6), dot(a3, b7));
                let a4 = smem[qb + 32u];
                acc4l += vec4<f32>(dot(a4, b0), dot(a4, b1), dot(a4, b2), dot(a4, b3));
                acc4h += vec4<f32>(dot(a4, b4), dot(a4, b5), dot(a4, b6), dot(a4, b7));
                let a5 = smem[qb + 40u];
                acc5l += vec4<f32>(dot(a5, b0), dot(a5, b1), dot(a5, b2), dot(a5, b3));
                acc5h += vec4<f32>(dot(a5, b4), dot(a5, b5), dot(a5, b6), dot(a5, b7));
                let a6 = smem[qb + 48u];
                acc6l += vec4<f32>(dot(a6, b0), dot(a6, b1), dot(a6, b2), dot(a6, b3));
                acc6h += vec4<f32>(dot(a6, b4), dot(a6, b5), dot(a6, b6), dot(a6, b7));
                let a7 = smem[qb + 56u];
                acc7l += vec4<f32>(dot(a7, b0), dot(a7, b1), dot(a7, b2), dot(a7, b3));
                acc7h += vec4<f32>(dot(a7, b4), dot(a7, b5), dot(a7, b6), dot(a7, b7));
            }
        }
        workgroupBarrier();
        var sc = params.scale;
        if SOFTCAP {
            acc0l = capped4(acc0l * sc);
            acc0h = capped4(acc0h * sc);
            acc1l = capped4(acc1l * sc);
            acc1h = capped4(acc1h * sc);
            acc2l = capped4(acc2l * sc);
            acc2h = capped4(acc2h * sc);
            acc3l = capped4(acc3l * sc);
            acc3h = capped4(acc3h * sc);
            acc4l = capped4(acc4l * sc);
            acc4h = capped4(acc4h * sc);
            acc5l = capped4(acc5l * sc);
            acc5h = capped4(acc5h * sc);
            acc6l = capped4(acc6l * sc);
            acc6h = capped4(acc6h * sc);
            acc7l = capped4(acc7l * sc);
            acc7h = capped4(acc7h * sc);
            sc = 1.0;
        }
        smem[(tr + 0u) * (TK / 4u) + 2u * tc] = acc0l * sc;
        smem[(tr + 0u) * (TK / 4u) + 2u * tc + 1u] = acc0h * sc;
        smem[(tr + 8u) * (TK / 4u) + 2u * tc] = acc1l * sc;
        smem[(tr + 8u) * (TK / 4u) + 2u * tc + 1u] = acc1h * sc;
        smem[(tr + 16u) * (TK / 4u) + 2u * tc] = acc2l * sc;
        smem[(tr + 16u) * (TK / 4u) + 2u * tc + 1u] = acc2h * sc;
        smem[(tr + 24u) * (TK / 4u) + 2u * tc] = acc3l * sc;
        smem[(tr + 24u) * (TK / 4u) + 2u * tc + 1u] = acc3h * sc;
        smem[(tr + 32u) * (TK / 4u) + 2u * tc] = acc4l * sc;
        smem[(tr + 32u) * (TK / 4u) + 2u * tc + 1u] = acc4h * sc;
        smem[(tr + 40u) * (TK / 4u) + 2u * tc] = acc5l * sc;
        smem[(tr + 40u) * (TK / 4u) + 2u * tc + 1u] = acc5h * sc;
        smem[(tr + 48u) * (TK / 4u) + 2u * tc] = acc6l * sc;
        smem[(tr + 48u) * (TK / 4u) + 2u * tc + 1u] = acc6h * sc;
        smem[(tr + 56u) * (TK / 4u) + 2u * tc] = acc7l * sc;
        smem[(tr + 56u) * (TK / 4u) + 2u * tc + 1u] = acc7h * sc;
        workgroupBarrier();
        // Fold the tile into the states of the (row, pooled column) pairs it touches; each pair
        // is one item, owned by one invocation.
        let t1 = min(t0 + TK, wg_end);
        let b_first = key_bin[t0];
        let n_bins = key_bin[t1 - 1u] - b_first + 1u;
        for (var item = li; item < TQ * n_bins; item += WG) {
            let i = item % TQ;
            let bin = b_first + item / TQ;
            if i < n_rows {
                let c0 = col_edges[bin];
                let lo = max(max(c0, t0), first_visible(r0 + i));
                let hi = max(min(min(col_edges[bin + 1u], t1), visible(r0 + i)), lo);
                var m = -F32_MAX;
                var mn = F32_MAX;
                for (var j = lo; j < hi; j++) {
                    let s = score(i, j - t0);
                    m = max(m, s);
                    mn = min(mn, s);
                }
                var l = 0.0;
                var sum = 0.0;
                for (var j = lo; j < hi; j++) {
                    let s = score(i, j - t0);
                    l += exp2(s - m);
                    sum += s;
                }
                let idx = (inter_base + i) * params.pooled_w + bin;
                if c0 >= t0 || t0 == t_first {
                    // the column starts in this tile: a fresh state (empty when the row sees
                    // none of it; pool_fold counts its entries from the mask and skips it)
                    inter[idx] = vec4<f32>(m, mn, l, sum);
                } else if hi > lo {
                    inter[idx] = merged(inter[idx], vec4<f32>(m, mn, l, sum));
                }
            }
        }
        // The next tile's items may belong to other invocations.
        storageBarrier();
    }
}

// One invocation per (row of the chunk, head of the batch).
@compute @workgroup_size(64)
fn pool_lse(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if i >= params.rows {
        return;
    }
    let r = params.row_start + i;
    let vis = visible(r);
    let first = first_visible(r);
    if vis == first {
        return;
    }
    let b_end = key_bin[vis - 1u] + 1u;
    let base = (gid.z * params.inter_rows + i) * params.pooled_w;
    var m = -F32_MAX;
    for (var b = key_bin[first]; b < b_end; b++) {
        m = max(m, inter[base + b].x);
    }
    // the sink joins the denominator, not the row's largest probability
    let sink = bitcast<f32>(heads[gid.z].z);
    let ms = max(m, sink);
    var l = exp2(sink - ms);
    for (var b = key_bin[first]; b < b_end; b++) {
        let st = inter[base + b];
        l += st.z * exp2(st.x - ms);
    }
    let lse = ms + log2(l);
    row_lse[gid.z * params.inter_rows + i] = vec2<f32>(lse, exp2(m - lse));
}

// One invocation per pooled pixel of the chunk's pooled rows, per head of the batch.
@compute @workgroup_size(64)
fn pool_fold(@builtin(global_invocation_id) gid: vec3<u32>) {
    let x = gid.x;
    if x >= params.pooled_w {
        return;
    }
    let y = params.y_start + gid.y;
    let r_lo = max(row_edges[y], params.row_start);
    let r_hi = min(row_edges[y + 1u], params.row_start + params.rows);
    if r_lo >= r_hi {
        return;
    }
    let c0 = col_edges[x];
    // A row's entries end no earlier than the rows' before it, so a bin past the chunk's last
    // row's of this pixel is masked for all of them (half the pixels of a causal head): left
    // as it is, its count 0 reads as "no entries yet". (Logits' entries are the keys a row
    // sees; probabilities' are every key up to the diagonal, a window's zeros included.)
    let last = r_hi - 1u;
    if c0 >= select(entries(last), visible(last), LOGITS) {
        return;
    }
    let c1 = col_edges[x + 1u];
    let z = gid.z;
    let idx = heads[z].y * params.px + y * params.pooled_w + x;
    var a = accum[idx];
    var count = a.count_bad & COUNT_MASK;
    if count == 0u {
        a.max_v = -F32_MAX;
        a.min_v = F32_MAX;
    }
    for (var r = r_lo; r < r_hi; r++) {
        let vis = visible(r);
        // Logits count only the keys the row sees; probabilities count the window's zeros too.
        let c_first = select(c0, max(c0, first_visible(r)), LOGITS);
        let c_last = select(min(c1, entries(r)), min(c1, vis), LOGITS);
        let n = i32(c_last) - i32(c_first);
        if n > 0 && LOGITS {
            let i = z * params.inter_rows + r - params.row_start;
            let st = inter[i * params.pooled_w + x];
            a.max_v = max(a.max_v, st.x * LN2);
            a.min_v = min(a.min_v, st.y * LN2);
            a.sum += st.w * LN2;
            count += u32(n);
        } else if n > 0 {
            let i = z * params.inter_rows + r - params.row_start;
            // keys of the bin the row sees [v0, min(c1, vis)); the rest of its n entries are
            // window zeros, before them or (two-sided) after
            let v0 = max(c0, first_visible(r));
            var hi = 0.0;
            var lo = 0.0;
            var sum = 0.0;
            let rl = row_lse[i];
            if min(c1, vis) > v0 {
                let st = inter[i * params.pooled_w + x];
                hi = exp2(st.x - rl.x);
                lo = select(exp2(st.y - rl.x), 0.0, v0 > c0 || c_last > min(c1, vis));
                sum = st.z * hi;
                if ROW_NORM {
                    hi /= rl.y;
                    lo /= rl.y;
                    sum /= rl.y;
                }
            }
            a.max_v = max(a.max_v, hi);
            a.min_v = min(a.min_v, lo);
            a.sum += sum;
            count += u32(n);
        }
    }
    a.count_bad = count | (a.count_bad & BAD_BIT);
    accum[idx] = a;
}
