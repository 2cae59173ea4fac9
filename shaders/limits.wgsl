// Colour limits of the pooled image: per-cell value ranges that leave the first key columns out
// (`--exclude-keys`), and per-cell histograms binned over each normalization scope's range, from
// which percentile clipping (`--clip`) is read. Runs on the resident accumulators after pooling,
// so the input is still read once. CPU twins: `cpu::cell_ranges`, `cpu::histogram`.

struct LimitParams {
    pixels_per_head: u32,
    // first cell of this group in `ranges_out` / `hist_ranges` / `hist`
    first_head: u32,
    pooled_w: u32,
    // pooled columns left of this one hold excluded keys
    first_column: u32,
    reduce: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// min and max as order-preserving u32 keys, both reduced with atomicMax from the zeroed buffer
// (the min as the complement of its key), so no invocation waits on a barrier
struct CellRange {
    max_key: atomic<u32>,
    min_key_inv: atomic<u32>,
    // the count of entries as 64 bits (low, high): a long head holds 2^32 and more
    count_lo: atomic<u32>,
    count_hi: atomic<u32>,
}

const BINS: u32 = 4096u;
const WG: u32 = 256u;
// Pixels per invocation, strided by the workgroup size (as in colorize.wgsl).
const PER_INVOCATION: u32 = 16u;

@group(0) @binding(0) var<uniform> params: LimitParams;
// pooled pixels, as `accum.wgsl` lays them out
@group(0) @binding(1) var<storage, read> accum: array<u32>;
// per cell: (lo, BINS / (hi - lo)) of its scope; 0 when the scope is constant
@group(0) @binding(2) var<storage, read> hist_ranges: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> ranges_out: array<CellRange>;
@group(0) @binding(4) var<storage, read_write> hist: array<atomic<u32>>;

fn included(i: u32) -> bool {
    return i % params.pooled_w >= params.first_column;
}

// f32 bits to a u32 that orders like the float (finite values). CPU twin: `float_key` in
// src/color/limits.rs.
fn key(v: f32) -> u32 {
    let b = bitcast<u32>(v);
    if (b & 0x80000000u) != 0u {
        return ~b;
    }
    return b | 0x80000000u;
}

fn first_pixel(wg: vec3<u32>, nwg: vec3<u32>, li: u32) -> u32 {
    return (wg.z * nwg.x + wg.x) * WG * PER_INVOCATION + li;
}

// min of the min pool and max of the max pool over included columns: the same statistic as
// `head_stats` in stats.wgsl, restricted. Workgroups: x (and z) over a cell's pixels, y over
// the group's cells.
@compute @workgroup_size(256)
fn cell_range(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let first = first_pixel(wg, nwg, li);
    let base = wg.y * params.pixels_per_head;
    var mn = F32_MAX;
    var mx = -F32_MAX;
    // (low, high) 64-bit sum: PER_INVOCATION bins of up to 2^31 entries each
    var count = vec2<u32>(0u);
    for (var j = 0u; j < PER_INVOCATION; j++) {
        let i = first + j * WG;
        if i >= params.pixels_per_head {
            break;
        }
        let a = load_accum(base + i);
        let c = a.count_bad & COUNT_MASK;
        if c > 0u && included(i) {
            mn = min(mn, a.min_v);
            mx = max(mx, a.max_v);
            let lo = count.x + c;
            count = vec2<u32>(lo, count.y + u32(lo < c));
        }
    }
    if any(count != vec2<u32>(0u)) {
        let cell = params.first_head + wg.y;
        atomicMax(&ranges_out[cell].max_key, key(mx));
        atomicMax(&ranges_out[cell].min_key_inv, ~key(mn));
        // the carry out of the low word goes into the high word
        let old = atomicAdd(&ranges_out[cell].count_lo, count.x);
        let carry = u32(old + count.x < old);
        if count.y + carry != 0u {
            atomicAdd(&ranges_out[cell].count_hi, count.y + carry);
        }
    }
}

// One count per pooled pixel with a finite value, in the bin of its reduced value. The bin is
// (v - lo) * k truncated: a subtraction and a multiplication, both correctly rounded, so the CPU
// twin bins every value identically. Runs of one bin are added at once: most pixels of an
// attention map share the lowest bins, and atomics on one address serialize.
@compute @workgroup_size(256)
fn histogram(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let first = first_pixel(wg, nwg, li);
    let cell = params.first_head + wg.y;
    let r = hist_ranges[cell];
    var run_bin = 0u;
    var run = 0u;
    for (var j = 0u; j < PER_INVOCATION; j++) {
        let p = first + j * WG;
        if p >= params.pixels_per_head {
            break;
        }
        let a = load_accum(wg.y * params.pixels_per_head + p);
        let count = a.count_bad & COUNT_MASK;
        if count == 0u || (a.count_bad & BAD_BIT) != 0u || !included(p) {
            continue;
        }
        var v = a.max_v;
        if params.reduce == 1u {
            v = a.sum / f32(count);
        } else if params.reduce == 2u {
            v = a.min_v;
        } else if params.reduce == 3u {
            v = signed_extreme(a.max_v, a.min_v);
        }
        let b = min(u32(max((v - r.x) * r.y, 0.0)), BINS - 1u);
        if run > 0u && b != run_bin {
            atomicAdd(&hist[cell * BINS + run_bin], run);
            run = 0u;
        }
        run_bin = b;
        run += 1u;
    }
    if run > 0u {
        atomicAdd(&hist[cell * BINS + run_bin], run);
    }
}
