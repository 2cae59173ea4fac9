// Pooling: folds one block of input rows into the pooled accumulators of its head.
//
// One invocation owns one pooled pixel (x, y) of the rows this block touches and walks its bin
// row by row, keys in order, so the float sum is added in exactly the order the CPU reference
// (src/cpu.rs, `pool_rows`) uses. Blocks arrive in row order in separate dispatches, so a bin
// split across blocks is resumed from the stored accumulator with the same result.

struct Piece {
    // first element of this block in `data`, in elements of `dtype`
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
    _reserved: u32,
    // FLAG_* below
    flags: u32,
    // entry (q, k) is above the causal diagonal when k > q + causal_offset
    causal_offset: i32,
    // the head's index in `cell_flags`
    cell: u32,
    _pad1: u32,
}

const DTYPE_F32: u32 = 0u;
const DTYPE_F16: u32 = 1u;
const DTYPE_BF16: u32 = 2u;
// The element type, fixed per pipeline so the inner loops carry no dtype switch.
override DTYPE: u32 = DTYPE_F32;
const FLAG_ROW_NORM: u32 = 1u;
// mask everything above the diagonal
const FLAG_CAUSAL: u32 = 2u;
// set exact zeros above the diagonal aside and note any other value there, so causal
// masking can be detected in the same pass (see `fold_masked_zeros`)
const FLAG_AUTO_CAUSAL: u32 = 4u;

@group(0) @binding(0) var<uniform> piece: Piece;
@group(0) @binding(1) var<storage, read> data: array<u32>;
@group(0) @binding(2) var<storage, read> row_edges: array<u32>;
@group(0) @binding(3) var<storage, read> col_edges: array<u32>;
@group(0) @binding(4) var<storage, read_write> accum: array<Accum>;
@group(0) @binding(5) var<storage, read_write> row_max: array<f32>;
// per head: 1 once a non-zero value was seen above the diagonal
@group(0) @binding(6) var<storage, read_write> cell_flags: array<atomic<u32>>;
// per pooled pixel (FLAG_AUTO_CAUSAL only): exact zeros above the diagonal set aside
@group(0) @binding(7) var<storage, read_write> zeros: array<u32>;

// Raw bits of element i widened to f32 bits, plus whether it is finite. Finiteness is read
// from the exponent bits because WGSL lets compilers assume floats are never NaN or infinite.
fn load_value(i: u32) -> vec2<u32> {
    if DTYPE == DTYPE_F32 {
        let bits = data[i];
        return vec2<u32>(bits, u32((bits & 0x7f800000u) != 0x7f800000u));
    }
    let word = data[i >> 1u];
    let h = (word >> ((i & 1u) * 16u)) & 0xffffu;
    if DTYPE == DTYPE_F16 {
        let finite = (h & 0x7c00u) != 0x7c00u;
        return vec2<u32>(bitcast<u32>(unpack2x16float(h).x), u32(finite));
    }
    return vec2<u32>(h << 16u, u32((h & 0x7f80u) != 0x7f80u));
}

fn above(q: u32, k: u32) -> bool {
    return i32(k) > i32(q) + piece.causal_offset;
}

fn masked(q: u32, k: u32) -> bool {
    return (piece.flags & FLAG_CAUSAL) != 0u && above(q, k);
}

// Per-row maximum of finite entries, for --norm row. One invocation per row of the block.
@compute @workgroup_size(64)
fn row_maxima(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.x;
    if r >= piece.row_count {
        return;
    }
    let q = piece.row_start + r;
    let base = piece.elem_offset + r * piece.keys;
    var m = -F32_MAX;
    for (var k = 0u; k < piece.keys; k++) {
        let v = load_value(base + k);
        if v.y != 0u && !masked(q, k) {
            m = max(m, bitcast<f32>(v.x));
        }
    }
    row_max[r] = m;
}

// The running state of one pooled pixel while its bin is walked.
struct Running {
    max_v: f32,
    min_v: f32,
    count: u32,
    bad: u32,
    zeros: u32,
    saw_upper: u32,
}

// Folds entry `raw` (see `load_value`) of a row scaled by `scale` into `run` and returns what
// it adds to the row's sum.
fn fold(run: ptr<function, Running>, raw: vec2<u32>, row_norm: bool, scale: f32, zero_row: bool) -> f32 {
    if raw.y == 0u {
        (*run).bad = BAD_BIT;
        return 0.0;
    }
    var v = bitcast<f32>(raw.x);
    if row_norm {
        v = select(v / scale, 0.0, zero_row);
    }
    (*run).max_v = max((*run).max_v, v);
    (*run).min_v = min((*run).min_v, v);
    (*run).count += 1u;
    return v;
}

@compute @workgroup_size(64)
fn pool(@builtin(global_invocation_id) gid: vec3<u32>) {
    let x = gid.x;
    if x >= piece.pooled_w {
        return;
    }
    let y = piece.y_start + gid.y;
    let r0 = max(row_edges[y], piece.row_start);
    let r1 = min(row_edges[y + 1u], piece.row_start + piece.row_count);
    if r0 >= r1 {
        return;
    }
    let c0 = col_edges[x];
    let c1 = col_edges[x + 1u];
    let idx = piece.accum_base + y * piece.pooled_w + x;
    var a = accum[idx];
    let auto_causal = (piece.flags & FLAG_AUTO_CAUSAL) != 0u;
    var set_aside = 0u;
    if auto_causal {
        set_aside = zeros[idx];
    }
    var run = Running(a.max_v, a.min_v, a.count_bad & COUNT_MASK, a.count_bad & BAD_BIT, set_aside, 0u);
    // Accumulators start zeroed (fresh buffers are); no entry yet means no extremes yet.
    if run.count == 0u {
        run.max_v = -F32_MAX;
        run.min_v = F32_MAX;
    }
    let row_norm = (piece.flags & FLAG_ROW_NORM) != 0u;
    let causal = (piece.flags & FLAG_CAUSAL) != 0u;
    for (var q = r0; q < r1; q++) {
        let r = q - piece.row_start;
        let base = piece.elem_offset + r * piece.keys;
        var scale = 1.0;
        var zero_row = false;
        if row_norm {
            let m = row_max[r];
            zero_row = !(m > 0.0);
            scale = m;
        }
        // Keys from `split` on are above the diagonal; the loop below it has no per-entry test.
        let split = u32(clamp(i32(q) + piece.causal_offset + 1, i32(c0), i32(c1)));
        var row_sum = 0.0;
        for (var k = c0; k < split; k++) {
            row_sum += fold(&run, load_value(base + k), row_norm, scale, zero_row);
        }
        if !causal {
            for (var k = split; k < c1; k++) {
                let raw = load_value(base + k);
                if auto_causal {
                    // Zeros are set aside until we know whether the head is causal.
                    if (raw.x & 0x7fffffffu) == 0u {
                        run.zeros += 1u;
                        continue;
                    }
                    run.saw_upper = 1u;
                }
                row_sum += fold(&run, raw, row_norm, scale, zero_row);
            }
        }
        a.sum += row_sum;
    }
    a.max_v = run.max_v;
    a.min_v = run.min_v;
    a.count_bad = run.count | run.bad;
    accum[idx] = a;
    if auto_causal {
        zeros[idx] = run.zeros;
    }
    if run.saw_upper != 0u {
        atomicOr(&cell_flags[piece.cell], 1u);
    }
}

// For heads found not to be causal: folds the zeros set aside back in, as if they had been
// pooled with the rest (adding 0.0 leaves every sum unchanged). `row_count` holds the number of
// pixels, `accum_base` the first one.
@compute @workgroup_size(256)
fn fold_masked_zeros(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let i = flat_index(wg, nwg, li, 256u);
    if i >= piece.row_count {
        return;
    }
    let z = zeros[piece.accum_base + i];
    if z == 0u {
        return;
    }
    var a = accum[piece.accum_base + i];
    let count = a.count_bad & COUNT_MASK;
    if count == 0u {
        a.max_v = 0.0;
        a.min_v = 0.0;
    } else {
        a.max_v = max(a.max_v, 0.0);
        a.min_v = min(a.min_v, 0.0);
    }
    a.count_bad = (count + z) | (a.count_bad & BAD_BIT);
    accum[piece.accum_base + i] = a;
    zeros[piece.accum_base + i] = 0u;
}
