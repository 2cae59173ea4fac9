// Per-head statistics by parallel reduction over the pooled accumulators: the min of the min
// pool and the max of the max pool are the head's exact extremes, so the input is never read
// twice. Keep `HeadStats` in sync with src/pool/accum.rs.
//
// Two passes, so that every head is spread over many workgroups. `block_stats` reduces each
// block of BLOCK consecutive pixels of a head in one workgroup, each invocation a run of
// PER_INVOCATION consecutive pixels; `head_stats` then reduces each head's block results.
//
// Why runs rather than the grid-stride loop GPUs usually get: the data is output-sized (a few
// bytes per pooled pixel), so on a GPU the run's cache lines are simply reused from L1 over its
// iterations, while software rasterizers, which emulate each storage load lane by lane, run a
// run 3x faster than the same reads strided across lanes (lavapipe, 64 heads of 256² pixels:
// 17 ms against 51 ms for the former one-workgroup-per-head, grid-stride pass).

struct HeadStats {
    min_v: f32,
    max_v: f32,
    sum: f32,
    _pad0: u32,
    // the count of finite entries as a 64-bit (low, high) pair: a 65536-token head holds 2^32
    count: vec2<u32>,
    bad_pixels: u32,
    // pixels with no entry (count 0, no non-finite one)
    empty: u32,
}

struct StatsParams {
    pixels_per_head: u32,
    // first head of this group in `stats`
    first_head: u32,
    // blocks of BLOCK pixels per head: ceil(pixels_per_head / BLOCK)
    blocks_per_head: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> params: StatsParams;
// pooled pixels, as `accum.wgsl` lays them out
@group(0) @binding(1) var<storage, read> accum: array<u32>;
@group(0) @binding(2) var<storage, read_write> stats: array<HeadStats>;
// per head of the group, per block: the block's statistics
@group(0) @binding(3) var<storage, read_write> partials: array<HeadStats>;

const WG: u32 = 64u;
const PER_INVOCATION: u32 = 128u;
// Keep in sync with `STATS_BLOCK` in src/pool/stats.rs.
const BLOCK: u32 = WG * PER_INVOCATION;
var<workgroup> s_min: array<f32, WG>;
var<workgroup> s_max: array<f32, WG>;
var<workgroup> s_sum: array<f32, WG>;
var<workgroup> s_count: array<vec2<u32>, WG>;
var<workgroup> s_bad: array<u32, WG>;
var<workgroup> s_empty: array<u32, WG>;

const EMPTY = HeadStats(F32_MAX, -F32_MAX, 0.0, 0u, vec2<u32>(0u), 0u, 0u);

// 64-bit addition of (low, high) pairs.
fn add64(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
    let lo = a.x + b.x;
    return vec2<u32>(lo, a.y + b.y + u32(lo < a.x));
}

fn merge(a: HeadStats, b: HeadStats) -> HeadStats {
    return HeadStats(
        min(a.min_v, b.min_v),
        max(a.max_v, b.max_v),
        a.sum + b.sum,
        0u,
        add64(a.count, b.count),
        a.bad_pixels + b.bad_pixels,
        a.empty + b.empty,
    );
}

// The statistics of one pooled pixel: empty bins (count 0) leave the extremes alone.
fn of_pixel(a: Accum) -> HeadStats {
    let c = a.count_bad & COUNT_MASK;
    let bad = a.count_bad >> 31u;
    if c == 0u {
        return HeadStats(F32_MAX, -F32_MAX, 0.0, 0u, vec2<u32>(0u), bad, 1u - bad);
    }
    return HeadStats(a.min_v, a.max_v, a.sum, 0u, vec2<u32>(c, 0u), bad, 0u);
}

// Tree reduction of every invocation's `mine`; the result is valid in invocation 0.
fn reduce_workgroup(li: u32, mine: HeadStats) -> HeadStats {
    s_min[li] = mine.min_v;
    s_max[li] = mine.max_v;
    s_sum[li] = mine.sum;
    s_count[li] = mine.count;
    s_bad[li] = mine.bad_pixels;
    s_empty[li] = mine.empty;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        if li < stride {
            s_min[li] = min(s_min[li], s_min[li + stride]);
            s_max[li] = max(s_max[li], s_max[li + stride]);
            s_sum[li] += s_sum[li + stride];
            s_count[li] = add64(s_count[li], s_count[li + stride]);
            s_bad[li] += s_bad[li + stride];
            s_empty[li] += s_empty[li + stride];
        }
        workgroupBarrier();
    }
    return HeadStats(s_min[0], s_max[0], s_sum[0], 0u, s_count[0], s_bad[0], s_empty[0]);
}

// Workgroup (block, head): pixels [block * BLOCK, (block + 1) * BLOCK) of the group's head.
@compute @workgroup_size(64)
fn block_stats(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let head = wg.y;
    let base = head * params.pixels_per_head;
    let first = wg.x * BLOCK + li * PER_INVOCATION;
    let end = min(first + PER_INVOCATION, params.pixels_per_head);
    var s = EMPTY;
    for (var i = first; i < end; i++) {
        s = merge(s, of_pixel(load_accum(base + i)));
    }
    let total = reduce_workgroup(li, s);
    if li == 0u {
        partials[head * params.blocks_per_head + wg.x] = total;
    }
}

// Workgroup (head): the head's block results reduced to its statistics.
@compute @workgroup_size(64)
fn head_stats(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let head = wg.x;
    let base = head * params.blocks_per_head;
    var s = EMPTY;
    for (var b = li; b < params.blocks_per_head; b += WG) {
        s = merge(s, partials[base + b]);
    }
    let total = reduce_workgroup(li, s);
    if li == 0u {
        stats[params.first_head + head] = total;
    }
}
