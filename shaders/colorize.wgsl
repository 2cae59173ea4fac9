// Normalization and colormap lookup of pooled pixels: the cheap pass that re-runs when the
// colormap or normalization changes. Writes packed RGBA8; 0 (alpha 0) marks a bin with no
// unmasked entry, drawn as background by the compositor.

struct ColorParams {
    pixels_per_head: u32,
    // first head of this group in `ranges`
    first_head: u32,
    bad_color: u32,
    gamma: f32,
}

const REDUCE_MAX: u32 = 0u;
const REDUCE_MEAN: u32 = 1u;
const REDUCE_MIN: u32 = 2u;
const REDUCE_EXTREME: u32 = 3u;

// Keep in sync with `Scale::shader_id` in src/color/scale.rs.
const SCALE_LINEAR: u32 = 0u;
const SCALE_LOG: u32 = 1u;
const SCALE_SQRT: u32 = 2u;
const SCALE_GAMMA: u32 = 3u;
// linear, bent at the centre (--center): `ColorScale::shader_id`
const SCALE_TWO_SLOPE: u32 = 4u;

// The reduction and the scale are pipeline constants (src/color/colorize.rs compiles one pipeline per
// pair on first use): the per-pixel code then holds only its own curve. Software rasterizers
// run both sides of every branch, so a uniform switch would cost every pixel a log2 and a pow.
override REDUCE: u32 = REDUCE_MAX;
override SCALE: u32 = SCALE_LINEAR;

@group(0) @binding(0) var<uniform> params: ColorParams;
// pooled pixels, as `accum.wgsl` lays them out
@group(0) @binding(1) var<storage, read> accum: array<u32>;
// per head: (lo, hi) mapped onto the colormap, in the scale's domain (log2 for log), the log
// floor, and the centre of a two-slope scale
@group(0) @binding(2) var<storage, read> ranges: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> lut: array<u32, 256>;
@group(0) @binding(4) var<storage, read_write> colors: array<u32>;

// matplotlib's Normalize in f32: (v - lo) / (hi - lo), 0 for a constant scope.
// CPU twin: `normalize` in src/color/norm.rs.
fn normalize(v: f32, r: vec2<f32>) -> f32 {
    let span = r.y - r.x;
    return select(0.0, (v - r.x) / span, span > 0.0);
}

// Colormap position: normalize, then the scale's curve (PowerNorm for sqrt and gamma, LogNorm
// with a floor for log). CPU twin: `ColorScale::position` in src/color/scale.rs.
fn scaled(v: f32, r: vec4<f32>) -> f32 {
    if SCALE == SCALE_TWO_SLOPE {
        return two_slope(v, r);
    }
    if SCALE == SCALE_LOG {
        return normalize(log2(max(v, r.z)), r.xy);
    }
    let t = normalize(v, r.xy);
    if SCALE == SCALE_LINEAR {
        return t;
    }
    var curved: f32;
    if SCALE == SCALE_SQRT {
        curved = sqrt(t);
    } else {
        curved = pow(t, params.gamma);
    }
    return select(select(curved, 1.0, t >= 1.0), 0.0, !(t > 0.0));
}

// matplotlib's TwoSlopeNorm, interp(v, [lo, c, hi], [0, 0.5, 1]) in f32; r is (lo, hi, _, c).
// CPU twin: `two_slope` in src/color/scale.rs.
fn two_slope(v: f32, r: vec4<f32>) -> f32 {
    let below = r.w - r.x;
    let above = r.y - r.w;
    if v < r.w {
        return select(0.0, 0.5 * ((v - r.x) / below), below > 0.0);
    }
    return select(0.5, 0.5 + 0.5 * ((v - r.w) / above), above > 0.0);
}

// matplotlib's index rule: min(floor(t * 256), 255), under → 0, over → 255.
// CPU twin: `lut_index` in src/color/colormap.rs.
fn lut_index(t: f32) -> u32 {
    let inside = min(u32(t * 256.0), 255u);
    return select(select(inside, 255u, t >= 1.0), 0u, !(t > 0.0));
}

// Pixels per invocation: fewer, fuller workgroups (their launch cost dominates on software
// rasterizers).
const PER_INVOCATION: u32 = 8u;

// The colour of pooled pixel `i`: only the fields the reduction needs are read.
fn color_of(i: u32, range: vec4<f32>) -> u32 {
    let a = load_accum(i);
    let count_bad = a.count_bad;
    let count = count_bad & COUNT_MASK;
    var v: f32;
    if REDUCE == REDUCE_MEAN {
        v = a.sum / f32(count);
    } else if REDUCE == REDUCE_MIN {
        v = a.min_v;
    } else if REDUCE == REDUCE_EXTREME {
        v = signed_extreme(a.max_v, a.min_v);
    } else {
        v = a.max_v;
    }
    let color = lut[lut_index(scaled(v, range))];
    return select(select(color, 0u, count == 0u), params.bad_color, (count_bad & BAD_BIT) != 0u);
}

// Workgroups: x (and z, past 65535) over a head's pixels, 256 x PER_INVOCATION each; y over the
// group's heads, so no invocation divides to find its head. Each invocation colours a run of
// PER_INVOCATION consecutive pixels (see shaders/stats.wgsl for why runs: lavapipe recolours
// the 8x8 grid of 256² cells in 14.5 ms this way, 18 ms grid-strided).
@compute @workgroup_size(256)
fn colorize(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let first = (wg.z * nwg.x + wg.x) * 256u * PER_INVOCATION + li * PER_INVOCATION;
    let range = ranges[params.first_head + wg.y];
    let base = wg.y * params.pixels_per_head;
    for (var j = 0u; j < PER_INVOCATION; j++) {
        let p = first + j;
        if p >= params.pixels_per_head {
            return;
        }
        colors[base + p] = color_of(base + p, range);
    }
}
