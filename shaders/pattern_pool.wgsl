// The pool pass and the pattern statistics' profile kernel from the same loads (appended to
// pattern.wgsl with the pool pass's fold, shaders/pool_fold.wgsl; src/pool/pattern_gpu.rs,
// `PatternPass::record_pooling`). Where every bin is 4, 8 or 16 keys of whole 16-byte words
// and rows start on words (the 1 GiB grid's 256-px cells of 2048 keys: bins of 8), an
// invocation of `pattern_profiles` walks exactly the words that 1, 2 or 4 of the pool pass's
// pixels need; this kernel folds them into those pixels too, so the chunk is read once where
// the two kernels read it twice. On llvmpipe a chunk's texel loads cost about as much as the
// whole pool pass.
//
// Every pixel's entries fold as `pool_lanes1/2/4` fold them (the same `fold`, rows in order,
// each row's keys in order), so the pooled figure is the same to the bit. Its pixels' states
// live in registers while the invocation walks a pooled row's rows (`row_edges`), and are
// stored, and the next opened, where the rows cross into the next pooled row: between runs of
// rows, never inside the row loop.
//
// Off by default (`Gpu::pool_with_profiles`): on llvmpipe the pixels' states carried through
// the long walk cost what the saved loads did.

// The pool pass's buffers, as its own bind group has them (src/pool/dispatch.rs).
@group(1) @binding(0) var<storage, read> row_edges: array<u32>;
@group(1) @binding(1) var<storage, read_write> accum: array<u32>;
@group(1) @binding(2) var<storage, read_write> row_max: array<f32>;
@group(1) @binding(3) var<storage, read_write> cell_flags: array<atomic<u32>>;
@group(1) @binding(4) var<storage, read_write> zeros: array<u32>;

// Pooled pixels in an invocation's GROUP_KEYS keys: 1, 2 or 4.
override LANE_PIXELS: u32 = 2u;

// The 16-byte words of an invocation's keys in a row: 4 (f32) or 2 (16-bit).
fn lane_words() -> u32 {
    return GROUP_KEYS >> elem_shift();
}

// An invocation's pooled pixels, the first LANE_PIXELS of them, and the pooled row they are in:
// its index and one past its last head row.
struct LanePixels {
    a: Running,
    b: Running,
    c: Running,
    d: Running,
    y: u32,
    next: u32,
}

fn open_pixels(g: u32, y: u32) -> LanePixels {
    let rows = bin_rows(y);
    let width = GROUP_KEYS / LANE_PIXELS;
    let x = g * LANE_PIXELS;
    var px: LanePixels;
    px.a = open_bin(x, y, width, rows);
    if LANE_PIXELS > 1u {
        px.b = open_bin(x + 1u, y, width, rows);
    }
    if LANE_PIXELS > 2u {
        px.c = open_bin(x + 2u, y, width, rows);
        px.d = open_bin(x + 3u, y, width, rows);
    }
    px.y = y;
    px.next = row_edges[y + 1u];
    return px;
}

fn close_pixels(px: LanePixels) {
    close_bin(px.a);
    if LANE_PIXELS > 1u {
        close_bin(px.b);
    }
    if LANE_PIXELS > 2u {
        close_bin(px.c);
        close_bin(px.d);
    }
}

// Pixel j's words of head row q (piece row r; `words` the invocation's, from element e0, a word's
// first) into `run`, as `fold_lane_pixel` in shaders/pool.wgsl folds them.
fn fold_pixel(run: ptr<function, Running>, q: u32, r: u32, e0: u32, words: array<vec4<u32>, 4>, j: u32) {
    let n = lane_words() / LANE_PIXELS;
    let shift = elem_shift();
    begin_row(run, q, r, piece.elem_offset + r * piece.stride, e0 + j * (n << shift));
    for (var m = 0u; m < n; m++) {
        let at = j * n + m;
        fold_word(run, words[at], e0 + (at << shift));
    }
    (*run).sum += (*run).row_sum;
}

// The invocation's words of the row from element e (a word's first).
fn lane_row_words(e: u32) -> array<vec4<u32>, 4> {
    let w = e >> elem_shift();
    var out: array<vec4<u32>, 4>;
    out[0] = word(w);
    out[1] = word(w + 1u);
    if DTYPE == DTYPE_F32 {
        out[2] = word(w + 2u);
        out[3] = word(w + 3u);
    }
    return out;
}

// The same words as the profile reads them (`keys16`'s aligned path).
fn profile_values(words: array<vec4<u32>, 4>) -> Keys16 {
    if DTYPE == DTYPE_F32 {
        return Keys16(finite_f32(words[0]), finite_f32(words[1]), finite_f32(words[2]), finite_f32(words[3]));
    }
    let x = words[0];
    let y = words[1];
    return Keys16(finite_pairs(x.x, x.y), finite_pairs(x.z, x.w), finite_pairs(y.x, y.y), finite_pairs(y.z, y.w));
}

// `pattern_profiles` that pools as well: invocation g of piece z, keys [16 g, 16 g + 16) of
// each of the piece's rows, into the profiles and into pixels [g · LANE_PIXELS, …) of every
// pooled row the piece touches (each pixel stored as the pool pass stores it, entries or none).
@compute @workgroup_size(64)
fn pattern_pool(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    piece = pieces[gid.z];
    var own = NO_SUMS;
    if gid.x * GROUP_KEYS < params.keys {
        own = pool_profile_keys(gid.x, gid.z);
    }
    fold_into_pixel(li, wg.x, piece.cell, own);
}

fn pool_profile_keys(g: u32, z: u32) -> HeadSums {
    let k0 = g * GROUP_KEYS;
    var pr = open_profile(g, 0u);
    var px = open_pixels(g, piece.y_start);
    var e = piece.elem_offset + k0;
    var i = 0u;
    // The rows that see none of the group's keys (causal statistics) are read for the pixels
    // only where the pool pass does not mask them itself.
    let hidden = hidden_rows(k0);
    var block_end = block_row_end(0u);
    // Rows go in runs within one block row and one pooled row, so that the loop over a run's
    // rows has no boundary to test (on llvmpipe a pixel's store and the next one's load inside
    // the row loop made the kernel slower than the two it replaces).
    while i < piece.row_count {
        let end = min(block_end, px.next - piece.row_start);
        for (; i < min(end, hidden); i++) {
            skip_row(&pr, i);
            if (FLAGS & FLAG_CAUSAL) == 0u {
                fold_pixels(&px, i, e, lane_row_words(e));
            }
            e += piece.stride;
        }
        for (; i < end; i++) {
            let words = lane_row_words(e);
            fold_pixels(&px, i, e, words);
            profile_row(&pr, profile_values(words), i);
            e += piece.stride;
        }
        if i == block_end {
            end_block_row(&pr);
            block_end = block_row_end(i);
        }
        if i < piece.row_count && piece.row_start + i >= px.next {
            close_pixels(px);
            px = open_pixels(g, px.y + 1u);
        }
    }
    close_pixels(px);
    finish_group(pr.diag, pr.column, z, 0u, g, k0);
    return pr.own;
}

// Piece row i's words (from element e0) into the invocation's pixels.
fn fold_pixels(px: ptr<function, LanePixels>, i: u32, e0: u32, words: array<vec4<u32>, 4>) {
    let q = piece.row_start + i;
    var a = (*px).a;
    fold_pixel(&a, q, i, e0, words, 0u);
    (*px).a = a;
    if LANE_PIXELS > 1u {
        var b = (*px).b;
        fold_pixel(&b, q, i, e0, words, 1u);
        (*px).b = b;
    }
    if LANE_PIXELS > 2u {
        var c = (*px).c;
        fold_pixel(&c, q, i, e0, words, 2u);
        (*px).c = c;
        var d = (*px).d;
        fold_pixel(&d, q, i, e0, words, 3u);
        (*px).d = d;
    }
}

// The pool pass's table of each position's keys (pool_fold.wgsl, KEY_RANGES): never read here,
// since only logits have one and the statistics take no logits.
fn key_range(base: u32, at: i32) -> vec2<i32> {
    return vec2<i32>(-2147483647 - 1, 2147483647);
}
