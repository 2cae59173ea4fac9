// The pool pass's fold of entries into pooled pixels: each pixel's running state, how an
// element joins it, and how its bin is opened, walked row by row and stored. Shared by the pool
// pass (shaders/pool.wgsl) and the pass that pools and profiles a chunk from the same loads
// (shaders/pattern_pool.wgsl), so that a pixel's entries fold in one order, with one set of
// semantics, whichever reads them. The including module declares `piece` (a `Piece`),
// `row_edges`, `row_max`, `accum`, `cell_flags` and `zeros`, and the DTYPE constants.

// FLAG_* bits, fixed per pipeline: the per-element code is branch-free selects, which
// compilers keep only for the modes the pipeline has.
override FLAGS: u32 = 0u;
const FLAG_ROW_NORM: u32 = 1u;
// mask everything above the diagonal
const FLAG_CAUSAL: u32 = 2u;
// set exact zeros above the diagonal aside and note any other value there, so causal
// masking can be detected in the same pass (see `fold_masked_zeros`)
const FLAG_AUTO_CAUSAL: u32 = 4u;
// mask keys older than each piece's sliding window
const FLAG_WINDOW: u32 = 8u;

// The f32 bits of the two 16-bit elements of `word` (low half first), exactly. f16 is widened
// with integer operations: software rasterizers expand unpack2x16float lane by lane, and the
// float route through a denormal f32 would be flushed to zero where denormals are disabled.
// Infinities and NaNs come out as large finite values; `finite16` flags them.
fn widen(word: u32) -> vec2<u32> {
    let h = vec2<u32>(word & 0xffffu, word >> 16u);
    if DTYPE == DTYPE_F16 {
        let sign = (h & vec2<u32>(0x8000u)) << vec2<u32>(16u);
        let em = h & vec2<u32>(0x7fffu);
        // exponent rebased from 15 to 127, mantissa moved to the top
        let normal = (em << vec2<u32>(13u)) + vec2<u32>(0x38000000u);
        // zero and subnormal: mantissa * 2^-24, a normal f32
        let small = bitcast<vec2<u32>>(vec2<f32>(em) * 5.9604644775390625e-8);
        return sign | select(normal, small, em < vec2<u32>(0x400u));
    }
    return h << vec2<u32>(16u);
}

// Whether the 16-bit element in the low half of `h` is finite (read from the exponent bits,
// because WGSL lets compilers assume floats are never NaN or infinite).
fn finite16(h: u32) -> bool {
    if DTYPE == DTYPE_F16 {
        return (h & 0x7c00u) != 0x7c00u;
    }
    return (h & 0x7f80u) != 0x7f80u;
}

fn finite32(bits: u32) -> bool {
    return (bits & 0x7f800000u) != 0x7f800000u;
}

// The running state of one pooled pixel while its bin is walked.
struct Running {
    max_v: f32,
    min_v: f32,
    count: u32,
    bad: bool,
    zeros: u32,
    saw_upper: bool,
    // the pixel's sum so far, and its index in `accum`
    sum: f32,
    idx: u32,
    // the current row's sum
    row_sum: f32,
    // the current row's bin as element indices of the chunk: its first key, its width, and the
    // last key below the diagonal (keys past it are above)
    first: u32,
    width: u32,
    diagonal: i32,
    // FLAG_WINDOW: the first key of the window (keys before it are masked), and one past its
    // last (a bidirectional layer's two-sided window: keys from it on are masked)
    low: i32,
    high: i32,
    // --norm row: the row's divisor, or a zero row (maximum not positive: every entry is 0)
    scale: f32,
    zero_row: bool,
}

// Folds element `e` of the chunk (raw f32 bits, finiteness) into `run` when it belongs to the
// current row's bin, with the semantics of `HeadPooler::push_rows` in src/cpu/mod.rs: masked
// entries are skipped before anything else, exact zeros above the diagonal are set aside with
// FLAG_AUTO_CAUSAL, non-finite entries mark the bin, the rest are (scaled and) folded. The mode
// tests are on pipeline constants, so each pipeline keeps only its own selects.
fn fold(run: ptr<function, Running>, bits: u32, finite: bool, e: u32) {
    var counted = (e - (*run).first) < (*run).width;
    if (FLAGS & FLAG_WINDOW) != 0u {
        counted = counted && i32(e) >= (*run).low && i32(e) < (*run).high;
    }
    if (FLAGS & (FLAG_CAUSAL | FLAG_AUTO_CAUSAL)) != 0u {
        let up = i32(e) > (*run).diagonal;
        if (FLAGS & FLAG_CAUSAL) != 0u {
            counted = counted && !up;
        } else {
            let upper = counted && up;
            let zero = (bits << 1u) == 0u;
            (*run).zeros += u32(upper && zero);
            (*run).saw_upper = (*run).saw_upper || (upper && !zero);
            counted = counted && !(upper && zero);
        }
    }
    (*run).bad = (*run).bad || (counted && !finite);
    let ok = counted && finite;
    var v = bitcast<f32>(bits);
    if (FLAGS & FLAG_ROW_NORM) != 0u {
        v = select(v / (*run).scale, 0.0, (*run).zero_row);
    }
    (*run).max_v = select((*run).max_v, max((*run).max_v, v), ok);
    (*run).min_v = select((*run).min_v, min((*run).min_v, v), ok);
    (*run).count += u32(ok);
    (*run).row_sum = select((*run).row_sum, (*run).row_sum + v, ok);
}

// Folds the elements of word `v`, whose first element is element `e` of the chunk.
fn fold_word(run: ptr<function, Running>, v: vec4<u32>, e: u32) {
    if DTYPE == DTYPE_F32 {
        fold(run, v.x, finite32(v.x), e);
        fold(run, v.y, finite32(v.y), e + 1u);
        fold(run, v.z, finite32(v.z), e + 2u);
        fold(run, v.w, finite32(v.w), e + 3u);
        return;
    }
    fold_pair(run, v.x, e);
    fold_pair(run, v.y, e + 2u);
    fold_pair(run, v.z, e + 4u);
    fold_pair(run, v.w, e + 6u);
}

// Folds the two 16-bit elements of `word`, the first being element `e`.
fn fold_pair(run: ptr<function, Running>, word: u32, e: u32) {
    let f = widen(word);
    fold(run, f.x, finite16(word), e);
    fold(run, f.y, finite16(word >> 16u), e + 1u);
}

// Pixel (x, y)'s running state for a bin `width` elements wide: empty where its bin starts in
// this piece (`rows.fresh`: no earlier piece reached it), else resumed from its accumulator (and,
// with FLAG_AUTO_CAUSAL, the zeros set aside before). A fresh bin reads nothing it does not
// need: one 16-byte load a pixel less where bins are a key and a row (whole models at short
// context), though on llvmpipe that measured within the noise (2026-12-06).
fn open_bin(x: u32, y: u32, width: u32, rows: BinRows) -> Running {
    var run: Running;
    run.idx = piece.accum_base + y * piece.pooled_w + x;
    run.max_v = 0.0;
    run.min_v = 0.0;
    run.sum = 0.0;
    run.count = 0u;
    run.bad = false;
    run.zeros = 0u;
    if !rows.fresh {
        let a = load_accum(run.idx);
        run.max_v = a.max_v;
        run.min_v = a.min_v;
        run.sum = a.sum;
        run.count = a.count_bad & COUNT_MASK;
        run.bad = (a.count_bad & BAD_BIT) != 0u;
        if (FLAGS & FLAG_AUTO_CAUSAL) != 0u {
            run.zeros = zeros[run.idx];
        }
    }
    run.saw_upper = false;
    run.width = width;
    run.scale = 1.0;
    run.zero_row = false;
    // Accumulators start zeroed (fresh buffers are); no entry yet means no extremes yet.
    if run.count == 0u {
        run.max_v = -F32_MAX;
        run.min_v = F32_MAX;
    }
    return run;
}

// Stores what `run` folded into its pixel.
fn close_bin(run: Running) {
    store_accum(run.idx, Accum(run.max_v, run.min_v, run.sum, run.count | select(0u, BAD_BIT, run.bad)));
    if (FLAGS & FLAG_AUTO_CAUSAL) != 0u {
        zeros[run.idx] = run.zeros;
    }
    if run.saw_upper {
        atomicOr(&cell_flags[piece.cell], 1u);
    }
}

// `Piece::window` of a piece whose rows' keys come from a table (`key_range`, whose first entry
// `Piece::chunk` names) rather than a window and chunks: no window reaches it (at most 2^30
// keys, `HiddenKeys::KERNEL_MAX`).
const KEY_RANGES: u32 = 0xffffffffu;

// Sets `run` up for head row q (piece row r, element `row_base` of the chunk): its bin starts
// at element `first`; the row's diagonal, window and --norm row divisor.
fn begin_row(run: ptr<function, Running>, q: u32, r: u32, row_base: u32, first: u32) {
    (*run).first = first;
    (*run).diagonal = i32(row_base) + i32(q) + piece.causal_offset;
    // (only FLAG_WINDOW pipelines read it, and a piece without a window or chunks masks
    // nothing; first_key_seen works in key positions)
    (*run).low = -2147483647 - 1;
    (*run).high = 2147483647;
    if (FLAGS & FLAG_WINDOW) != 0u && piece.window == KEY_RANGES {
        // a layer with bidirectional spans: the keys the row sees, from the table by position
        // whose first entry `chunk` names (key_range, of the module this file is appended to)
        let seen = key_range(piece.chunk, i32(q) + piece.causal_offset + i32(piece.key_position));
        (*run).low = seen.x - i32(piece.key_position) + i32(row_base);
        (*run).high = seen.y - i32(piece.key_position) + i32(row_base);
    } else if (FLAGS & FLAG_WINDOW) != 0u && (piece.window > 0u || piece.chunk > 0u) {
        let at = i32(q) + piece.causal_offset + i32(piece.key_position);
        (*run).low = first_key_seen(at, piece.window, piece.chunk) - i32(piece.key_position)
            + i32(row_base);
        if (FLAGS & FLAG_CAUSAL) == 0u && piece.window > 0u {
            // (a window of 2^29 keys or more hides none after the query of a head that fits
            // a buffer; that bound keeps the sum an i32)
            let w = i32(min(piece.window, 1u << 29u));
            (*run).high = i32(q) + piece.causal_offset + w + i32(row_base);
        }
        if (FLAGS & FLAG_CAUSAL) == 0u && piece.chunk > 0u {
            // a bidirectional chunk's end (HiddenKeys::end), in key positions as `low` is
            let end = chunk_first(at, piece.chunk) + i32(piece.chunk);
            (*run).high = min((*run).high, end - i32(piece.key_position) + i32(row_base));
        }
    }
    if (FLAGS & FLAG_ROW_NORM) != 0u {
        let m = row_max[piece.row_max_base + r];
        (*run).zero_row = !(m > 0.0);
        (*run).scale = m;
    }
    (*run).row_sum = 0.0;
}

// The bin rows [r0, r1) of a pooled row in this piece (empty when the piece has none), and
// whether the bin starts in it (its accumulator holds nothing yet: a head's pieces arrive in
// row order).
struct BinRows {
    r0: u32,
    r1: u32,
    fresh: bool,
}

fn bin_rows(y: u32) -> BinRows {
    if y >= piece.y_end {
        return BinRows(1u, 0u, false);
    }
    let first = row_edges[y];
    let r0 = max(first, piece.row_start);
    let r1 = min(row_edges[y + 1u], piece.row_start + piece.row_count);
    return BinRows(r0, r1, first >= piece.row_start);
}

