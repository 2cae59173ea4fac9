// The pattern statistics of a head from Q and K straight from its scores, with no probability
// stored anywhere (appended to pattern.wgsl by src/pool/pattern_qk.rs, whose pieces, scratch,
// profiles and pixels' sums it fills as pattern_profiles fills them from a chunk of stored
// probabilities; pattern_blocks and pattern_diagonals then add them up as they do after
// pattern_profiles).
//
// The column, diagonal and block masses sum each entry over rows, so they need every row's
// normalizer first: the one-pass path's row kernel leaves each row's log-sum-exp in `lse`
// (pool_row_lse), and this pass computes the scores again. Each invocation owns GROUP_KEYS
// consecutive keys of the head, holds their K vectors (loaded once), and walks the piece's rows
// in order: every row's query vectors are the same for the whole workgroup (a window of Q bound
// as a uniform buffer, its loads shared through subgroups where the adapter has them, below),
// and each value loaded feeds one FMA per key of the invocation. From the scores (each the sum
// prob_rows adds, in its order), p = exp2(s − lse) in base 2, and then, as pattern_profiles
// does with a stored row: the column masses in registers, a block row's share of them into
// `scratch` at each block row's end, and the diagonals' running sums moved one key along per
// row, the one leaving the group into `scratch`. The entropy (p ln p = p · (s − lse) · ln 2, with no
// logarithm), the maximum with its place and the non-finite count are the invocation's own;
// the workgroup adds its invocations' up and folds them into its own pixel's sums (pixel x of
// the head for workgroup x), which pattern_pixels and pattern_heads reduce at the end.
//
// Rows above the whole workgroup's keys (causal) are not computed (their diagonal shares are
// 0), nor are rows before a two-sided window reaches them, or whose sliding window or attention
// chunk has passed all of them (probability 0: the diagonals only move on); under bidirectional
// spans, whose table gives each row its keys (QK_RANGED), likewise the rows whose keys end before
// the workgroup's or start after them. Keys a row does not see are masked as the probabilities
// prob_rows stores are read: past the diagonal, left out; before the window or the chunk, or
// after a two-sided window, or outside a row's range from the table, entries of 0.
//
// QD4 (the head dimension in vec4s) and QWIN (query rows of a window), the K loads and the
// scores are substituted when the module is built (src/pool/pattern_qk.rs); the scores are
// written out with constant indices, so the K vectors stay in registers. Where the adapter has
// subgroups, a row's query vectors are shared through them: each of W lanes loads every W-th
// of them and subgroupBroadcast hands them to all (a uniform buffer's load at the same address
// in every lane is a broadcast on GPUs but a gather per lane on llvmpipe: 8 times the loads).

const QD4: u32 = 16u;
const QWIN: u32 = 256u;
// Scores pass through softcap · tanh(s / softcap) (the layer has a softcap).
override QK_SOFTCAP: bool = false;
// Each row's keys come from a table by position (`QkSource::key_ranges`: a layer with
// bidirectional spans, Gemma-3's images or PaliGemma's prefix, which no rule of qk_mask.wgsl
// describes), in `key_bin` from `qk.ranges`, as the one-pass kernels read it.
override QK_RANGED: bool = false;

// Keep in sync with `QkPatternParams` in src/pool/pattern_qk.rs. One per dispatch, at a
// dynamic offset.
struct QkPattern {
    // softmax scale × log2(e), and softcap × log2(e) (0: none)
    scale: f32,
    softcap: f32,
    // key k is hidden from head row r when k > r + diagonal (causal), k ≤ r + diagonal −
    // window or, bidirectional, k ≥ r + diagonal + window (window > 0), or k is before the
    // chunk of r + diagonal (chunk > 0)
    diagonal: i32,
    causal: u32,
    window: u32,
    // where the head's keys start in `kvec` (vec4s), and the lse of the piece's first row in
    // `lse`
    kbase: u32,
    lse_row0: u32,
    chunk: u32,
    // QK_RANGED: where the table of each position's keys starts in `key_bin` (u32s: first key
    // seen, one past the last, a position after another)
    ranges: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(1) @binding(0) var<uniform> qk: QkPattern;
// The piece's query rows from its first: row i at i · QD4.
@group(1) @binding(1) var<uniform> qwin: array<vec4<f32>, QWIN * QD4>;
@group(1) @binding(2) var<storage, read> kvec: array<vec4<f32>>;
// per row: (lse, largest probability), from pool_row_lse
@group(1) @binding(3) var<storage, read> lse: array<vec2<f32>>;
// the one-pass kernels' keys' columns, then (QK_RANGED) the layer's table of keys by position
@group(1) @binding(4) var<storage, read> key_bin: array<u32>;

// The keys head row `r` sees, [first, end): qk_mask.wgsl's rules, or the table's (QK_RANGED),
// as the score kernels mask. (One call a row: the rules' end once, the table read once.)
fn qk_seen(r: u32) -> vec2<u32> {
    if QK_RANGED {
        return row_range(r);
    }
    let end = mask_end(r, qk.causal != 0u, qk.diagonal, params.keys, qk.window, qk.chunk);
    return vec2<u32>(mask_start(r, end, qk.diagonal, qk.window, qk.chunk), end);
}

// QK_RANGED: the keys row `r` sees, [first, end), from the table (qk_table.wgsl).
fn row_range(r: u32) -> vec2<u32> {
    return table_range(qk.ranges, r, qk.diagonal, params.keys);
}

// QK_RANGED: the first of the piece's `rows` rows from `r0` whose range ends after `key`
// (`edge` 1) or starts at `key` or later (`edge` 0); `rows` where none does. Both ends never
// decrease from one row to the next (`QkSource::visible_at` argues it), so a binary search
// finds it: a dozen loads of the table a workgroup where the causal rule is one subtraction.
fn first_row_where(r0: u32, rows: u32, key: u32, edge: u32) -> u32 {
    var lo = 0u;
    var hi = rows;
    while lo < hi {
        let mid = (lo + hi) / 2u;
        let range = row_range(r0 + mid);
        let past = select(range.x >= key, range.y > key, edge == 1u);
        if past {
            hi = mid;
        } else {
            lo = mid + 1u;
        }
    }
    return lo;
}

// One past the last key that is an entry of head row `r`: its diagonal's, or the last key's
// (the keys after a two-sided window are entries of 0, as those before it are).
fn qk_entries(r: u32) -> u32 {
    return entry_end(r, qk.causal != 0u, qk.diagonal, params.keys);
}

// The first position whose query sees no key before `key` (i32 max: none; `HiddenKeys::
// first_row_past` in src/source/qk.rs is the reference): the window's oldest key or the
// chunk's first has passed it.
fn first_row_past(key: i32) -> i32 {
    var a = 2147483647;
    if qk.window != 0u {
        a = key + i32(qk.window) - 1;
    }
    if qk.chunk != 0u {
        let c = i32(qk.chunk);
        // (key > 0: the end of a workgroup's keys; c at most 2^30, src/source/qk.rs
        // `HiddenKeys::KERNEL_MAX`, so that the sum stays an i32)
        a = min(a, (key + c - 1) / c * c);
    }
    return a;
}

fn capped(s: vec4<f32>) -> vec4<f32> {
    if QK_SOFTCAP {
        return qk.softcap * tanh(s / qk.softcap);
    }
    return s;
}

// Vec4 v of key k0 + c (keys past the head's last read its last: they are masked).
fn kload(k0: u32, c: u32, v: u32) -> vec4<f32> {
    return kvec[qk.kbase + min(k0 + c, params.keys - 1u) * QD4 + v];
}

// Four keys of a row from their raw scores, as the profile kernel reads the probabilities
// prob_rows stores: `inside` (not past the diagonal) and `seen` (not older than the window
// either). The entry: p = exp2(s − lse) where seen and finite, else 0; its log2 p where it is
// p, else 0 (for p ln p); a candidate for the maximum where inside and finite or not seen (an
// entry of 0); and whether it is a non-finite entry (inside and seen).
struct Four {
    p: vec4<f32>,
    l: vec4<f32>,
    candidate: vec4<bool>,
    bad: vec4<bool>,
}

fn four(raw: vec4<f32>, lse_r: f32, inside: vec4<bool>, seen: vec4<bool>) -> Four {
    let l = capped(raw * qk.scale) - vec4<f32>(lse_r);
    let p = exp2(l);
    let finite = finite4(p);
    let ok = seen & finite;
    return Four(
        select(vec4<f32>(0.0), p, ok),
        select(vec4<f32>(0.0), l, ok),
        inside & (finite | !seen),
        seen & !finite,
    );
}

@compute @workgroup_size(64)
fn pattern_qk(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
    /* @LANE_ARG */
) {
    // (one piece a dispatch: piece 0 of `pieces`)
    piece = pieces[0];
    let g = gid.x;
    let k0 = g * GROUP_KEYS;
    let groups = (params.keys + GROUP_KEYS - 1u) / GROUP_KEYS;
    let live = k0 < params.keys;
    let keys_a = vec4<u32>(0u, 1u, 2u, 3u) + vec4<u32>(k0);
    let keys_b = keys_a + vec4<u32>(4u);
    let keys_c = keys_a + vec4<u32>(8u);
    let keys_d = keys_a + vec4<u32>(12u);
    // @KLOAD
    var column = ZERO16;
    var diag = ZERO16;
    var part = ZERO16;
    var own = NO_SUMS;
    let diag_base = params.diag_base;
    // The workgroup's keys [kw0, kw1): rows [i_lo, i_hi) of the piece see some of them.
    let kw0 = wg.x * WG * GROUP_KEYS;
    let kw1 = min(kw0 + WG * GROUP_KEYS, params.keys);
    let rows = piece.row_count;
    let r0 = piece.row_start;
    var i_lo = 0u;
    var i_hi = rows;
    if QK_RANGED {
        // the first row that sees a key from kw0 on, and the first whose keys all start at
        // kw1 or later (the rows before the one and from the other on see none of the group's
        // keys: entries of 0)
        i_lo = first_row_where(r0, rows, kw0, 1u);
        i_hi = max(i_lo, first_row_where(r0, rows, kw1, 0u));
    } else if qk.causal != 0u {
        // the first row whose end passes kw0: r + diagonal + 1 > kw0
        i_lo = u32(clamp(i32(kw0) - qk.diagonal - i32(r0), 0, i32(rows)));
    } else {
        // a two-sided window's, r + diagonal + window > kw0, and a bidirectional chunk's,
        // whose end passes kw0 from the chunk of kw0 on (the rows before see the group's keys
        // as entries of 0, and the diagonals' sums are still 0 there: nothing moves)
        var lo = 0;
        if qk.window != 0u {
            lo = i32(kw0) - qk.diagonal - i32(qk.window) + 1 - i32(r0);
        }
        if qk.chunk != 0u && kw0 >= qk.chunk {
            lo = max(lo, i32(kw0 / qk.chunk * qk.chunk) - qk.diagonal - i32(r0));
        }
        i_lo = u32(clamp(lo, 0, i32(rows)));
    }
    if !QK_RANGED && (qk.window != 0u || qk.chunk != 0u) {
        // the first row whose window or chunk starts at kw1 or later
        i_hi = u32(clamp(first_row_past(i32(kw1)) - qk.diagonal - i32(r0), i32(i_lo), i32(rows)));
    }
    var i = 0u;
    var slot = piece.row_max_base * groups + g;
    // rows [i, end) of the piece are in the current block row
    while i < rows {
        let q0 = r0 + i;
        let end = min(rows, (q0 / params.block + 1u) * params.block - r0);
        for (; i < min(end, i_lo); i++) {
            if live {
                scratch[diag_base + (piece.row_max_base + i) * groups + g] = 0.0;
            }
        }
        var p_ln_p = vec4<f32>(0.0);
        for (; i < min(end, i_hi); i++) {
            let r = r0 + i;
            let qo = i * QD4;
            let lse_r = lse[qk.lse_row0 + i].x;
            // @SCORES
            let ent = vec4<u32>(qk_entries(r));
            let seen = qk_seen(r);
            let vis = vec4<u32>(seen.y);
            let first = vec4<u32>(seen.x);
            let in_a = keys_a < ent;
            let in_b = keys_b < ent;
            let in_c = keys_c < ent;
            let in_d = keys_d < ent;
            let fa = four(raw.a, lse_r, in_a, (keys_a < vis) & (keys_a >= first));
            let fb = four(raw.b, lse_r, in_b, (keys_b < vis) & (keys_b >= first));
            let fc = four(raw.c, lse_r, in_c, (keys_c < vis) & (keys_c >= first));
            let fd = four(raw.d, lse_r, in_d, (keys_d < vis) & (keys_d >= first));
            let v = Keys16(fa.p, fb.p, fc.p, fd.p);
            p_ln_p += (fa.p * fa.l + fb.p * fb.l) + (fc.p * fc.l + fd.p * fd.l);
            let bad = (vec4<u32>(fa.bad) + vec4<u32>(fb.bad)) + (vec4<u32>(fc.bad) + vec4<u32>(fd.bad));
            own.bad.x += (bad.x + bad.y) + (bad.z + bad.w);
            take_max(&own, v, array<vec4<bool>, 4>(fa.candidate, fb.candidate, fc.candidate, fd.candidate), k0, r);
            part = add16(part, v);
            let moved = move_diagonals(diag, v);
            if live {
                scratch[diag_base + (piece.row_max_base + i) * groups + g] = moved.left;
            }
            diag = moved.diag;
        }
        for (; i < end; i++) {
            // entries of 0 (older than the window): the diagonals move on
            let moved = move_diagonals(diag, ZERO16);
            if live {
                scratch[diag_base + (piece.row_max_base + i) * groups + g] = moved.left;
            }
            diag = moved.diag;
        }
        own.p_ln_p += sum4(p_ln_p) * LN2;
        column = add16(column, part);
        if live {
            scratch[slot] = block_share(part);
        }
        part = ZERO16;
        slot += groups;
    }
    if live {
        finish_group(diag, column, 0u, 0u, g, k0);
    }
    fold_into_pixel(li, wg.x, piece.cell, own);
}
