// Per-head statistics by parallel reduction over the pooled accumulators: the min of the min
// pool and the max of the max pool are the head's exact extremes, so the input is never read
// twice. One workgroup per head. Keep `HeadStats` in sync with src/norm.rs.

struct HeadStats {
    min_v: f32,
    max_v: f32,
    sum: f32,
    count: u32,
    bad_pixels: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

struct StatsParams {
    pixels_per_head: u32,
    // first head of this group in `stats`
    first_head: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: StatsParams;
@group(0) @binding(1) var<storage, read> accum: array<Accum>;
@group(0) @binding(2) var<storage, read_write> stats: array<HeadStats>;

const WG: u32 = 256u;
var<workgroup> s_min: array<f32, WG>;
var<workgroup> s_max: array<f32, WG>;
var<workgroup> s_sum: array<f32, WG>;
var<workgroup> s_count: array<u32, WG>;
var<workgroup> s_bad: array<u32, WG>;

@compute @workgroup_size(256)
fn head_stats(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let head = wg.x;
    let base = head * params.pixels_per_head;
    var mn = F32_MAX;
    var mx = -F32_MAX;
    var sum = 0.0;
    var count = 0u;
    var bad = 0u;
    for (var i = li; i < params.pixels_per_head; i += WG) {
        let a = accum[base + i];
        let c = a.count_bad & COUNT_MASK;
        if c > 0u {
            mn = min(mn, a.min_v);
            mx = max(mx, a.max_v);
            sum += a.sum;
            count += c;
        }
        bad += u32((a.count_bad & BAD_BIT) != 0u);
    }
    s_min[li] = mn;
    s_max[li] = mx;
    s_sum[li] = sum;
    s_count[li] = count;
    s_bad[li] = bad;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        if li < stride {
            s_min[li] = min(s_min[li], s_min[li + stride]);
            s_max[li] = max(s_max[li], s_max[li + stride]);
            s_sum[li] += s_sum[li + stride];
            s_count[li] += s_count[li + stride];
            s_bad[li] += s_bad[li + stride];
        }
        workgroupBarrier();
    }
    if li == 0u {
        stats[params.first_head + head] = HeadStats(s_min[0], s_max[0], s_sum[0], s_count[0], s_bad[0], 0u, 0u, 0u);
    }
}
