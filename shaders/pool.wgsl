// Pooling: folds one block of input rows into the pooled accumulators of its head.
//
// One invocation owns one pooled pixel (x, y) of the rows this block touches and walks its bin
// row by row, keys in order, so the float sum is added in exactly the order the CPU reference
// (src/cpu/mod.rs, `HeadPooler::push_rows`) uses. A head's blocks arrive in row order in separate dispatches
// (one per upload chunk), so a bin split across blocks is resumed from the stored accumulator
// with the same result.
//
// The input is read 16 bytes at a time (4 f32 or 8 halves), aligned, and each element is
// tested against the bin's key range, so a bin's segment of a row costs at most one load more
// than its bytes / 16. Adjacent invocations own adjacent segments: on a GPU a warp's loads of a
// row cover one contiguous span and every fetched sector is used by the same warp (the second
// load of a segment hits L1), so DRAM traffic is the input once. Per-element work is
// branch-free selects on pipeline constants, so lanes never diverge inside a bin. This also
// suits software rasterizers (llvmpipe), which run both sides of every branch. The words are
// texel fetches from the chunk texture (src/pool/chunk.rs), which every driver makes fast.

struct Piece {
    // first element of this block of the chunk, in elements of `dtype`
    elem_offset: u32,
    // first head row in the block, and how many rows it holds
    row_start: u32,
    row_count: u32,
    // row length (K)
    keys: u32,
    // index of the head's pixel (0, 0) in `accum`
    accum_base: u32,
    pooled_w: u32,
    // first pooled row the block touches
    y_start: u32,
    // index of the block's first row in `row_max`
    row_max_base: u32,
    // FLAG_WINDOW: entry (q, k) is masked when k < q + causal_offset - window + 1 (keys older
    // than a sliding window: logits recomputed from Q and K), and without FLAG_CAUSAL when
    // k ≥ q + causal_offset + window too (a bidirectional layer's window is two-sided)
    window: u32,
    // entry (q, k) is above the causal diagonal when k > q + causal_offset
    causal_offset: i32,
    // the head's index in `cell_flags`
    cell: u32,
    // one past the last pooled row the block touches
    y_end: u32,
    // elements from one row's start to the next's: K, or more where a producer pads its rows
    // (src/pool/dispatch.rs, `Ingest::pool_in_texture`); those past K are never read
    stride: u32,    // (to 64 bytes: a uniform array's stride is a multiple of 16)
    _pad0: u32,
    // FLAG_WINDOW: attention chunks of `chunk` positions also hide the keys before entry
    // (q, k)'s chunk, key k being at position k + key_position (qk_mask.wgsl's first_key_seen)
    chunk: u32,
    key_position: u32,
}

const DTYPE_F32: u32 = 0u;
const DTYPE_F16: u32 = 1u;
const DTYPE_BF16: u32 = 2u;
// The element type, fixed per pipeline so the inner loops carry no dtype switch (and the
// FLAGS of shaders/pool_fold.wgsl, appended, likewise).
override DTYPE: u32 = DTYPE_F32;

// Every block of the chunk; one dispatch pools them all, block `z` in workgroups (_, _, z).
// Blocks of one dispatch belong to different heads (src/pool/ingest.rs keeps it so), so they never
// touch the same accumulator.
const MAX_PIECES: u32 = 256u;
@group(0) @binding(0) var<uniform> pieces: array<Piece, MAX_PIECES>;
// The block of the current workgroup.
var<private> piece: Piece;
// the chunk as aligned 16-byte words, CHUNK_W to a texture row (src/pool/chunk.rs says why a
// texture); element i of `dtype` is in word i >> elem_shift()
@group(0) @binding(1) var chunk: texture_storage_2d<rgba32uint, read>;
@group(0) @binding(2) var<storage, read> row_edges: array<u32>;
@group(0) @binding(3) var<storage, read> col_edges: array<u32>;
// pooled pixels, as `accum.wgsl` lays them out
@group(0) @binding(4) var<storage, read_write> accum: array<u32>;
@group(0) @binding(5) var<storage, read_write> row_max: array<f32>;
// per head: 1 once a non-zero value was seen above the diagonal
@group(0) @binding(6) var<storage, read_write> cell_flags: array<atomic<u32>>;
// per pooled pixel (FLAG_AUTO_CAUSAL only): exact zeros above the diagonal set aside
@group(0) @binding(7) var<storage, read_write> zeros: array<u32>;
// Per position of a layer's keys, the first key its row sees and one past its last (logits of
// a layer with bidirectional spans: `QkSource::mask_ranges`), layer after layer; a placeholder
// otherwise.
@group(0) @binding(8) var<storage, read> key_ranges: array<vec2<u32>>;

// The keys the row at position `at` sees, from the table whose first entry is `base`
// (pool_fold.wgsl, KEY_RANGES); none before the first key's position.
fn key_range(base: u32, at: i32) -> vec2<i32> {
    if at < 0 {
        return vec2<i32>(0, 0);
    }
    let i = min(base + u32(at), arrayLength(&key_ranges) - 1u);
    return vec2<i32>(key_ranges[i]);
}

// Word `w` of the chunk.
fn word(w: u32) -> vec4<u32> {
    return chunk_word(chunk, w);
}

// log2 of the elements in one 16-byte word of the chunk.
fn elem_shift() -> u32 {
    return select(3u, 2u, DTYPE == DTYPE_F32);
}

fn above(q: u32, k: u32) -> bool {
    return i32(k) > i32(q) + piece.causal_offset;
}

// The running maximum of one row's finite, unmasked entries (for --norm row).
struct RowMax {
    q: u32,
    // element index of key 0 of the row
    row_base: u32,
    causal: bool,
    m: f32,
}

fn row_max_elem(st: ptr<function, RowMax>, bits: u32, finite: bool, e: u32) {
    let k = e - (*st).row_base;
    let ok = k < piece.keys && finite && !((*st).causal && above((*st).q, k));
    (*st).m = select((*st).m, max((*st).m, bitcast<f32>(bits)), ok);
}

fn row_max_pair(st: ptr<function, RowMax>, word: u32, e: u32) {
    let f = widen(word);
    row_max_elem(st, f.x, finite16(word), e);
    row_max_elem(st, f.y, finite16(word >> 16u), e + 1u);
}

// Folds the elements of word `v`, whose first element is element `e` of the chunk.
fn row_max_word(st: ptr<function, RowMax>, v: vec4<u32>, e: u32) {
    if DTYPE == DTYPE_F32 {
        row_max_elem(st, v.x, finite32(v.x), e);
        row_max_elem(st, v.y, finite32(v.y), e + 1u);
        row_max_elem(st, v.z, finite32(v.z), e + 2u);
        row_max_elem(st, v.w, finite32(v.w), e + 3u);
    } else {
        row_max_pair(st, v.x, e);
        row_max_pair(st, v.y, e + 2u);
        row_max_pair(st, v.z, e + 4u);
        row_max_pair(st, v.w, e + 6u);
    }
}

// The maximum over the words `first`, `first + step`, ... of row `r` of the current block
// (counted from the row's first word): the whole row with (0, 1), one invocation's share of
// it in `row_maxima_wide`.
fn row_max_strided(r: u32, first: u32, step: u32) -> f32 {
    let shift = elem_shift();
    let row_base = piece.elem_offset + r * piece.stride;
    var st = RowMax(piece.row_start + r, row_base, (FLAGS & FLAG_CAUSAL) != 0u, -F32_MAX);
    let w1 = (row_base + piece.keys - 1u) >> shift;
    for (var w = (row_base >> shift) + first; w <= w1; w += step) {
        row_max_word(&st, word(w), w << shift);
    }
    return st.m;
}

// Per-row maximum of finite entries, for --norm row. One invocation per row of the block.
@compute @workgroup_size(64)
fn row_maxima(@builtin(global_invocation_id) gid: vec3<u32>) {
    piece = pieces[gid.z];
    let r = gid.x;
    if r >= piece.row_count {
        return;
    }
    row_max[piece.row_max_base + r] = row_max_strided(r, 0u, 1u);
}

// Threads of `row_maxima_wide`.
const WIDE: u32 = 256u;
var<workgroup> wide_max: array<f32, WIDE>;

// `row_maxima` for rows too long for one invocation to walk (llvmpipe stops any loop after
// 65535 iterations; on GPUs a row of 64k+ keys is also too much for one thread): one
// workgroup per row of the block, its invocations striding over the row's words, then a tree
// reduction. Workgroup (r, _, z) takes row r of block z.
@compute @workgroup_size(256)
fn row_maxima_wide(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let p = pieces[wg.z];
    piece = p;
    let r = wg.x;
    if r >= p.row_count {
        return;
    }
    wide_max[li] = row_max_strided(r, li, WIDE);
    workgroupBarrier();
    for (var stride = WIDE / 2u; stride > 0u; stride >>= 1u) {
        if li < stride {
            wide_max[li] = max(wide_max[li], wide_max[li + stride]);
        }
        workgroupBarrier();
    }
    if li == 0u {
        row_max[p.row_max_base + r] = wide_max[0];
    }
}

@compute @workgroup_size(64)
fn pool(@builtin(global_invocation_id) gid: vec3<u32>) {
    piece = pieces[gid.z];
    let x = gid.x;
    if x >= piece.pooled_w {
        return;
    }
    let y = piece.y_start + gid.y;
    let rows = bin_rows(y);
    if rows.r0 >= rows.r1 {
        return;
    }
    let c0 = col_edges[x];
    let c1 = col_edges[x + 1u];
    var run = open_bin(x, y, c1 - c0, rows);
    let shift = elem_shift();
    for (var q = rows.r0; q < rows.r1; q++) {
        let r = q - piece.row_start;
        let row_base = piece.elem_offset + r * piece.stride;
        begin_row(&run, q, r, row_base, row_base + c0);
        var w0 = run.first >> shift;
        var w1 = (row_base + c1 - 1u) >> shift;
        if (FLAGS & FLAG_CAUSAL) != 0u {
            // Keys past the diagonal are masked: their words are not read, and a bin wholly
            // above it reads nothing (half of a causal head; `fold` masks the rest of the
            // diagonal's word).
            if run.diagonal < i32(run.first) {
                w0 = 1u;
                w1 = 0u;
            } else {
                w1 = min(w1, u32(run.diagonal) >> shift);
            }
        }
        if FIXED_WORDS == 0u {
            for (var w = w0; w <= w1; w++) {
                fold_word(&run, word(w), w << shift);
            }
        } else if w0 <= w1 {
            // Bins no wider than FIXED_WORDS words from any start: that many words, whatever
            // this row's bin needs; `fold` leaves out the keys outside it (and past the
            // diagonal). Words past the chunk read as anything, and are left out too.
            for (var j = 0u; j < FIXED_WORDS; j++) {
                fold_word(&run, word(w0 + j), (w0 + j) << shift);
            }
        }
        run.sum += run.row_sum;
    }
    close_bin(run);
}

// How an invocation walks its bin's words (src/pool/pool_kernel.rs chooses). On llvmpipe the
// general loop's per-row cost (a loop whose length each lane works out for itself) exceeded its
// loads for narrow bins, so:
// - `pool` with FIXED_WORDS = 1 to 8, for bins no wider than that many words from any start:
//   that many words a row, unrolled (a 2000-token grid's pool passes 0.35 -> 0.29 s);
// - `pool_lanes1`, `2` and `4`, where every bin is the same 1, 2 or 4 whole 16-byte words of
//   every row (uniform bins from key 0, rows on words): an invocation takes the LANE_WORDS /
//   words adjacent pixels of one row of words (x * n ..< x * n + n), reads those words once
//   each with no bin bounds to walk, and folds each word into its own pixel (the 1 GiB grid's
//   pool passes, 256-px cells of 2048 keys: 0.29 -> 0.17 s). One entry point per width, each
//   with only its own code: a driver compiles a pipeline's NIR in every process. Each is
//   written out, its pixels' states named: one body looping over an array of states, called
//   with each width, pooled as fast but made a fresh render ~2.5% slower (15 alternating
//   runs). The host dispatches these only when the pooled width is a multiple of n.
// Each pixel still folds its row's keys in order and its rows in order, so every sum is the
// same whichever walks it.
const LANE_WORDS: u32 = 4u;

// `pool`'s words a bin row: 0, as many as each row's bin spans, in a loop; 1 to 8, that many
// from the bin's first word, unrolled.
override FIXED_WORDS: u32 = 0u;

@compute @workgroup_size(64)
fn pool_lanes1(@builtin(global_invocation_id) gid: vec3<u32>) {
    let start = lane_start(gid, 4u);
    if start.rows.r0 >= start.rows.r1 {
        return;
    }
    let shift = elem_shift();
    let bin = 1u << shift;
    var a = open_bin(start.x, start.y, bin, start.rows);
    var b = open_bin(start.x + 1u, start.y, bin, start.rows);
    var c = open_bin(start.x + 2u, start.y, bin, start.rows);
    var d = open_bin(start.x + 3u, start.y, bin, start.rows);
    for (var q = start.rows.r0; q < start.rows.r1; q++) {
        let row = lane_row(q, start.x * bin);
        if row.seen {
            fold_lane_pixel(&a, row, 0u, 1u, shift);
            fold_lane_pixel(&b, row, 1u, 1u, shift);
            fold_lane_pixel(&c, row, 2u, 1u, shift);
            fold_lane_pixel(&d, row, 3u, 1u, shift);
        }
    }
    close_bin(a);
    close_bin(b);
    close_bin(c);
    close_bin(d);
}

@compute @workgroup_size(64)
fn pool_lanes2(@builtin(global_invocation_id) gid: vec3<u32>) {
    let start = lane_start(gid, 2u);
    if start.rows.r0 >= start.rows.r1 {
        return;
    }
    let shift = elem_shift();
    let bin = 2u << shift;
    var a = open_bin(start.x, start.y, bin, start.rows);
    var b = open_bin(start.x + 1u, start.y, bin, start.rows);
    for (var q = start.rows.r0; q < start.rows.r1; q++) {
        let row = lane_row(q, start.x * bin);
        if row.seen {
            fold_lane_pixel(&a, row, 0u, 2u, shift);
            fold_lane_pixel(&b, row, 1u, 2u, shift);
        }
    }
    close_bin(a);
    close_bin(b);
}

@compute @workgroup_size(64)
fn pool_lanes4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let start = lane_start(gid, 1u);
    if start.rows.r0 >= start.rows.r1 {
        return;
    }
    let shift = elem_shift();
    let bin = 4u << shift;
    var a = open_bin(start.x, start.y, bin, start.rows);
    for (var q = start.rows.r0; q < start.rows.r1; q++) {
        let row = lane_row(q, start.x * bin);
        if row.seen {
            fold_lane_pixel(&a, row, 0u, 4u, shift);
        }
    }
    close_bin(a);
}

// `pool_keys`, where every bin is one key (pooled_w = K: a head drawn at its own width, as a
// whole model's short heads are) and every row starts on a word: an invocation takes the 4 (f32)
// or 8 (16-bit) pixels of one word, reads it once a row and folds each element into its own
// pixel, where `pool` with FIXED_WORDS = 1 read that word once per pixel and folded all of it
// (8 times the work, and 8 times the invocations). Pixels past the head's last key (a row
// padded to a word) are folded into but never stored.
@compute @workgroup_size(64)
fn pool_keys(@builtin(global_invocation_id) gid: vec3<u32>) {
    let shift = elem_shift();
    let n = 1u << shift;
    let start = lane_start(gid, n);
    if start.rows.r0 >= start.rows.r1 {
        return;
    }
    // A word's keys' states, named rather than an array looped over: the same folds, but an
    // array of states indexed in loops cost lavapipe's compiler (in every process that pools a
    // head at its own width) more than the kernel's own code. Keys 4 to 7 only for 16-bit
    // elements (n = 8), which the compiler keeps only where DTYPE says so.
    var k0 = open_bin(start.x, start.y, 1u, start.rows);
    var k1 = open_bin(start.x + 1u, start.y, 1u, start.rows);
    var k2 = open_bin(start.x + 2u, start.y, 1u, start.rows);
    var k3 = open_bin(start.x + 3u, start.y, 1u, start.rows);
    var k4: Running;
    var k5: Running;
    var k6: Running;
    var k7: Running;
    if n > 4u {
        k4 = open_bin(start.x + 4u, start.y, 1u, start.rows);
        k5 = open_bin(start.x + 5u, start.y, 1u, start.rows);
        k6 = open_bin(start.x + 6u, start.y, 1u, start.rows);
        k7 = open_bin(start.x + 7u, start.y, 1u, start.rows);
    }
    for (var q = start.rows.r0; q < start.rows.r1; q++) {
        let row = lane_row(q, start.x);
        if row.seen {
            let v = word(row.first >> shift);
            fold_key(&k0, row, v, 0u);
            fold_key(&k1, row, v, 1u);
            fold_key(&k2, row, v, 2u);
            fold_key(&k3, row, v, 3u);
            if n > 4u {
                fold_key(&k4, row, v, 4u);
                fold_key(&k5, row, v, 5u);
                fold_key(&k6, row, v, 6u);
                fold_key(&k7, row, v, 7u);
            }
        }
    }
    close_key(k0, start.x);
    close_key(k1, start.x + 1u);
    close_key(k2, start.x + 2u);
    close_key(k3, start.x + 3u);
    if n > 4u {
        close_key(k4, start.x + 4u);
        close_key(k5, start.x + 5u);
        close_key(k6, start.x + 6u);
        close_key(k7, start.x + 7u);
    }
}

// Key j of the word `v` that `row` starts at (element j), into its pixel's `run`.
fn fold_key(run: ptr<function, Running>, row: LaneRow, v: vec4<u32>, j: u32) {
    begin_row(run, row.q, row.r, row.base, row.first + j);
    let e = element_of(v, j);
    fold(run, e.x, e.y != 0u, row.first + j);
    (*run).sum += (*run).row_sum;
}

// Stores pixel x's `run` if x is a pixel of the pooled row.
fn close_key(run: Running, x: u32) {
    if x < piece.pooled_w {
        close_bin(run);
    }
}

// Element j of word `v`: its f32 bits (16-bit elements widened) and whether it is finite.
fn element_of(v: vec4<u32>, j: u32) -> vec2<u32> {
    if DTYPE == DTYPE_F32 {
        let bits = v[j];
        return vec2<u32>(bits, u32(finite32(bits)));
    }
    let half = v[j >> 1u] >> ((j & 1u) * 16u);
    return vec2<u32>(widen(half).x, u32(finite16(half)));
}

// A `pool_lanes` invocation's piece (into `piece`), its first pixel x, pooled row y and bin rows
// there, the rows empty when the invocation has nothing to pool.
struct LaneStart {
    x: u32,
    y: u32,
    rows: BinRows,
}

fn lane_start(gid: vec3<u32>, pixels: u32) -> LaneStart {
    piece = pieces[gid.z];
    let x = gid.x * pixels;
    let y = piece.y_start + gid.y;
    var rows = bin_rows(y);
    if x >= piece.pooled_w {
        rows = BinRows(1u, 0u, false);
    }
    return LaneStart(x, y, rows);
}

// Head row q as a lane reads it: its piece row, the row's first element in the chunk, the
// lane's first element (`offset` on), and whether anything there is left to fold (with
// FLAG_CAUSAL, not when every key from there on is past the diagonal).
struct LaneRow {
    q: u32,
    r: u32,
    base: u32,
    first: u32,
    seen: bool,
}

fn lane_row(q: u32, offset: u32) -> LaneRow {
    let r = q - piece.row_start;
    let base = piece.elem_offset + r * piece.stride;
    let first = base + offset;
    var seen = true;
    if (FLAGS & FLAG_CAUSAL) != 0u {
        seen = i32(base) + i32(q) + piece.causal_offset >= i32(first);
    }
    return LaneRow(q, r, base, first, seen);
}

// Folds the lane's pixel `b` (bins of `words` words) of `row` into `run`, and the row's sum
// into the pixel's.
fn fold_lane_pixel(run: ptr<function, Running>, row: LaneRow, b: u32, words: u32, shift: u32) {
    let first = row.first + b * (words << shift);
    begin_row(run, row.q, row.r, row.base, first);
    let w = first >> shift;
    for (var j = 0u; j < words; j++) {
        fold_word(run, word(w + j), (w + j) << shift);
    }
    (*run).sum += (*run).row_sum;
}

// For heads found not to be causal: folds the zeros set aside back in, as if they had been
// pooled with the rest (adding 0.0 leaves every sum unchanged). Block 0's `row_count` holds the
// number of pixels, `accum_base` the first one.
@compute @workgroup_size(256)
fn fold_masked_zeros(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    piece = pieces[0];
    let i = flat_index(wg, nwg, li, 256u);
    if i >= piece.row_count {
        return;
    }
    let z = zeros[piece.accum_base + i];
    if z == 0u {
        return;
    }
    var a = load_accum(piece.accum_base + i);
    let count = a.count_bad & COUNT_MASK;
    if count == 0u {
        a.max_v = 0.0;
        a.min_v = 0.0;
    } else {
        a.max_v = max(a.max_v, 0.0);
        a.min_v = min(a.min_v, 0.0);
    }
    a.count_bad = (count + z) | (a.count_bad & BAD_BIT);
    store_accum(piece.accum_base + i, a);
    zeros[piece.accum_base + i] = 0u;
}
