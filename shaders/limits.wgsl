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

struct CellRange {
    min_v: f32,
    max_v: f32,
    count: u32,
    _pad: u32,
}

const BINS: u32 = 4096u;
const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> params: LimitParams;
@group(0) @binding(1) var<storage, read> accum: array<Accum>;
// per cell: (lo, BINS / (hi - lo)) of its scope; 0 when the scope is constant
@group(0) @binding(2) var<storage, read> hist_ranges: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> ranges_out: array<CellRange>;
@group(0) @binding(4) var<storage, read_write> hist: array<atomic<u32>>;

var<workgroup> s_min: array<f32, WG>;
var<workgroup> s_max: array<f32, WG>;
var<workgroup> s_count: array<u32, WG>;

fn included(i: u32) -> bool {
    return i % params.pooled_w >= params.first_column;
}

// min of the min pool and max of the max pool over included columns: the same statistic as
// `head_stats` in stats.wgsl, restricted. One workgroup per cell.
@compute @workgroup_size(256)
fn cell_range(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let base = wg.x * params.pixels_per_head;
    var mn = F32_MAX;
    var mx = -F32_MAX;
    var count = 0u;
    for (var i = li; i < params.pixels_per_head; i += WG) {
        let a = accum[base + i];
        let c = a.count_bad & COUNT_MASK;
        if c > 0u && included(i) {
            mn = min(mn, a.min_v);
            mx = max(mx, a.max_v);
            count += c;
        }
    }
    s_min[li] = mn;
    s_max[li] = mx;
    s_count[li] = count;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        if li < stride {
            s_min[li] = min(s_min[li], s_min[li + stride]);
            s_max[li] = max(s_max[li], s_max[li + stride]);
            s_count[li] += s_count[li + stride];
        }
        workgroupBarrier();
    }
    if li == 0u {
        ranges_out[params.first_head + wg.x] = CellRange(s_min[0], s_max[0], s_count[0], 0u);
    }
}

// One count per pooled pixel with a finite value, in the bin of its reduced value. The bin is
// (v - lo) * k truncated: a subtraction and a multiplication, both correctly rounded, so the CPU
// twin bins every value identically.
@compute @workgroup_size(256)
fn histogram(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let p = (wg.z * nwg.x + wg.x) * WG + li;
    if p >= params.pixels_per_head || !included(p) {
        return;
    }
    let a = accum[wg.y * params.pixels_per_head + p];
    let count = a.count_bad & COUNT_MASK;
    if count == 0u || (a.count_bad & BAD_BIT) != 0u {
        return;
    }
    var v = a.max_v;
    if params.reduce == 1u {
        v = a.sum / f32(count);
    } else if params.reduce == 2u {
        v = a.min_v;
    }
    let cell = params.first_head + wg.y;
    let r = hist_ranges[cell];
    let b = min(u32(max((v - r.x) * r.y, 0.0)), BINS - 1u);
    atomicAdd(&hist[cell * BINS + b], 1u);
}
