// Attention recomputed from Q and K, FlashAttention-style, in two passes that never hold more
// than a block of probabilities:
//   row_stats:     per query row, the running max and sum of its scores over every visible
//                  key (online softmax, keys streamed through workgroup memory), one segment
//                  of keys per dispatch, resumed from the stored state;
//   probabilities: a block of rows × all keys, p = exp(score − lse), written where the pooling
//                  pass (pool.wgsl) reads its input.
// Segments keep every dispatch short: a display driver's watchdog never sees a long one, and
// software rasterizers that cap a shader's loop iterations (llvmpipe stops at 65535) finish.
// Scores are kept in base 2 (`scale` already holds log2(e)), so each entry costs one exp2.
// A capture's layer settings (src/source/qk_meta.rs) apply here as in the CPU reference: keys
// older than a sliding window (or, bidirectional, as far after the query) are hidden
// (probability 0), a softcap bends each score, and a
// sink logit joins each row's denominator.
//
// D4 (the head dimension in vec4s, zero padded) is substituted when the module is built, and
// the comment lines `row: ...` are expanded (src/pool/qk/mod.rs, `kernel_source`) so a row is held in
// D4 named vec4 variables, which every compiler keeps in registers, rather than in an indexed
// private array, which some spill to memory:
//   row: var             declares row0 .. row{D4-1}
//   row: load BUF[BASE]  rowI = BUF[BASE + I]
//   row: dot S BUF[BASE] var S = dot(row0, BUF[BASE + 0]) + dot(row1, BUF[BASE + 1]) + ...
//                        (summed left to right, in dimension order)
//   row: dot S F(BASE)   the same with F(BASE + I), a function reading vec4 I of a row

const D4: u32 = 16u;
// Keys whose terms row_stats sums apart before adding them to a row's running sum (the tile
// of keys once staged in 16 KiB of workgroup memory; the grouping, and so the sums, kept).
const TILE: u32 = min(64u, 1024u / D4);
const WG: u32 = 64u;
const F32_MAX: f32 = 3.40282347e38;
const FLAG_CAUSAL: u32 = 1u;
// row_stats: the dispatch continues the state the previous segment stored
const FLAG_RESUME: u32 = 2u;
// `sink` holds the head's sink logit
const FLAG_SINK: u32 = 4u;
// probabilities writes each visible entry's logit (natural units) instead of its probability
const FLAG_LOGITS: u32 = 8u;
// each row's keys come from `ranges` (a layer with bidirectional spans), not the mask's rules
const FLAG_RANGED: u32 = 16u;
const LN2: f32 = 0.6931471805599453;

struct QkParams {
    // rows of this dispatch, and the first of them (indices into `q`)
    rows: u32,
    row_start: u32,
    // keys in `k`: the softmax runs over all of them
    keys: u32,
    flags: u32,
    // key k is hidden from row r (index into `q`) when k > r + diagonal
    diagonal: i32,
    // softmax scale × log2(e)
    scale: f32,
    // where row `row_start`'s first probability goes in `out`, in elements
    out_offset: u32,
    // the keys written to `out` (a zoomed view needs only some): first, and how many (the
    // row pitch of `out`)
    key_start: u32,
    out_keys: u32,
    // row_stats: the keys this dispatch adds, [seg_start, seg_end)
    seg_start: u32,
    seg_end: u32,
    // keys this many positions older than the query or more are hidden (and, bidirectional,
    // as many after it: a two-sided window); 0: no window
    window: u32,
    // softcap × log2(e): scores become softcap · tanh(s / softcap); 0: none
    softcap: f32,
    // the head's sink logit × log2(e) (FLAG_SINK)
    sink: f32,
    // attention chunks of this many positions: keys before the query's chunk are hidden; 0: none
    chunk: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: QkParams;
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> k: array<vec4<f32>>;
// per row of `q`: the running (max, sum) of the online softmax, base 2
@group(0) @binding(3) var<storage, read_write> stats: array<vec2<f32>>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
// Copies of Q, K and `stats` that the passes read (16-byte words, CHUNK_W to a texture row):
// each row of the other operand is a texel fetch that every lane shares, not a tile staged in
// workgroup memory (src/pool/chunk.rs says why a texture; llvmpipe emulates workgroup and
// storage loads lane by lane).
@group(0) @binding(5) var q_tex: texture_storage_2d<rgba32uint, read>;
@group(0) @binding(6) var k_tex: texture_storage_2d<rgba32uint, read>;
@group(0) @binding(7) var stats_tex: texture_storage_2d<rgba32uint, read>;
// FLAG_RANGED: per position a of the keys, [first, end) of the keys its query sees
// (`QkSource::key_ranges`: causal under bidirectional spans, Gemma-3's images or PaliGemma's
// prefix, which no rule of qk_mask.wgsl describes); a placeholder otherwise.
@group(0) @binding(8) var<storage, read> ranges: array<vec2<u32>>;
fn q_at(i: u32) -> vec4<f32> {
    return bitcast<vec4<f32>>(chunk_word(q_tex, i));
}

fn k_at(i: u32) -> vec4<f32> {
    return bitcast<vec4<f32>>(chunk_word(k_tex, i));
}

// Row r's (max, sum) from the copy of `stats` (two rows to a word).
fn stats_at(r: u32) -> vec2<f32> {
    let word = chunk_word(stats_tex, r / 2u);
    return bitcast<vec2<f32>>(select(word.xy, word.zw, (r & 1u) == 1u));
}

// One past the last key row `r` sees (qk_mask.wgsl, or the row's range).
fn visible(r: u32) -> u32 {
    if (params.flags & FLAG_RANGED) != 0u {
        return row_range(r).y;
    }
    return mask_end(r, (params.flags & FLAG_CAUSAL) != 0u, params.diagonal, params.keys, params.window, params.chunk);
}

// The first key row `r` sees (a sliding window's oldest, or its chunk's first), at most
// visible(r).
fn first_visible(r: u32) -> u32 {
    if (params.flags & FLAG_RANGED) != 0u {
        return row_range(r).x;
    }
    return mask_start(r, visible(r), params.diagonal, params.window, params.chunk);
}

// FLAG_RANGED: the keys row `r` sees, from the table by its position; none before the first
// key's position (a row no key precedes, as causal has it).
fn row_range(r: u32) -> vec2<u32> {
    let a = table_position(r, params.diagonal, params.keys);
    if a < 0 {
        return vec2<u32>(0u, 0u);
    }
    return ranges[a];
}

// The base-2 logit of a dot product: scaled, then softcapped.
fn logit(dot: f32) -> f32 {
    let s = dot * params.scale;
    if params.softcap > 0.0 {
        return params.softcap * tanh(s / params.softcap);
    }
    return s;
}

// One invocation per query row; every lane of the workgroup reads the same key at a time.
@compute @workgroup_size(WG)
fn row_stats(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let first = params.row_start + wg.x * WG;
    let r = first + li;
    let has_row = r < params.row_start + params.rows;
    // row: var
    if has_row {
        // row: load q[r * D4]
    }
    let limit = visible(r);
    // The workgroup's last row sees the most keys; the loop runs to it (uniform control flow).
    let wg_limit = min(
        visible(min(first + WG, params.row_start + params.rows) - 1u),
        params.seg_end,
    );
    let lo = first_visible(r);
    var m = -F32_MAX;
    var l = 0.0;
    if has_row && (params.flags & FLAG_RESUME) != 0u {
        let state = stats[r];
        m = state.x;
        l = state.y;
    }
    // The workgroup's first row sees the oldest keys: tiles before them are skipped (window).
    for (var t = max(params.seg_start, first_visible(first)); t < wg_limit; t += TILE) {
        let n = min(TILE, wg_limit - t);
        if has_row {
            let m_keys = min(n, max(limit, t) - t);
            let j0 = min(max(lo, t) - t, m_keys);
            // The tile's terms are summed apart and added to the row's sum once, so a long row
            // is not a hundred thousand small additions to one large f32.
            var lt = 0.0;
            for (var j = j0; j < m_keys; j++) {
                // row: dot s k_at((t + j) * D4)
                s = logit(s);
                if s > m {
                    // (both sums are 0 before the first key, when m - s may not be finite)
                    let f = select(exp2(m - s), 0.0, m == -F32_MAX);
                    l *= f;
                    lt = lt * f + 1.0;
                    m = s;
                } else {
                    lt += exp2(s - m);
                }
            }
            l += lt;
        }
    }
    if has_row {
        stats[r] = vec2<f32>(m, l);
    }
}

// log2 of the row's softmax denominator, scores in base 2. A row that sees no key at all gets
// probabilities of exactly 0.
fn lse(r: u32) -> f32 {
    var state = stats_at(r);
    if (params.flags & FLAG_SINK) != 0u {
        let m = max(state.x, params.sink);
        state = vec2<f32>(m, state.y * exp2(state.x - m) + exp2(params.sink - m));
    }
    return select(state.x + log2(state.y), F32_MAX, state.y == 0.0);
}

// One invocation per key; the workgroup walks up to WG rows of the block, every lane reading
// the same query row at a time, and writes each row's probabilities for its WG keys
// contiguously.
@compute @workgroup_size(WG)
fn probabilities(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let key = params.key_start + wg.x * WG + li;
    let has_key = key < params.key_start + params.out_keys;
    // row: var
    if has_key {
        // row: load k[key * D4]
    }
    let r_begin = wg.y * WG;
    let r_end = min(r_begin + WG, params.rows);
    if has_key {
        for (var b = r_begin; b < r_end; b++) {
            let r = params.row_start + b;
            var p = 0.0;
            if key < visible(r) && key >= first_visible(r) {
                // row: dot s q_at(r * D4)
                if (params.flags & FLAG_LOGITS) != 0u {
                    p = logit(s) * LN2;
                } else {
                    p = exp2(logit(s) - lse(r));
                }
            }
            out[params.out_offset + b * params.out_keys + key - params.key_start] = p;
        }
    }
}
