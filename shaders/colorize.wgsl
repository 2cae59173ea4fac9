// Normalization and colormap lookup of pooled pixels: the cheap pass that re-runs when the
// colormap or normalization changes. Writes packed RGBA8; 0 (alpha 0) marks a bin with no
// unmasked entry, drawn as background by the compositor.

struct ColorParams {
    pixels_per_head: u32,
    // first head of this group in `ranges`
    first_head: u32,
    reduce: u32,
    bad_color: u32,
    scale: u32,
    gamma: f32,
    _pad0: u32,
    _pad1: u32,
}

const REDUCE_MAX: u32 = 0u;
const REDUCE_MEAN: u32 = 1u;
const REDUCE_MIN: u32 = 2u;

// Keep in sync with `Scale::shader_id` in src/scale.rs.
const SCALE_LINEAR: u32 = 0u;
const SCALE_LOG: u32 = 1u;
const SCALE_SQRT: u32 = 2u;
const SCALE_GAMMA: u32 = 3u;

@group(0) @binding(0) var<uniform> params: ColorParams;
@group(0) @binding(1) var<storage, read> accum: array<Accum>;
// per head: (lo, hi) mapped onto the colormap, in the scale's domain (log2 for log), and the
// log floor
@group(0) @binding(2) var<storage, read> ranges: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> lut: array<u32, 256>;
@group(0) @binding(4) var<storage, read_write> colors: array<u32>;

// matplotlib's Normalize in f32: (v - lo) / (hi - lo), 0 for a constant scope.
// CPU twin: `normalize` in src/norm.rs.
fn normalize(v: f32, r: vec2<f32>) -> f32 {
    let span = r.y - r.x;
    if span > 0.0 {
        return (v - r.x) / span;
    }
    return 0.0;
}

// Colormap position: normalize, then the scale's curve (PowerNorm for sqrt and gamma, LogNorm
// with a floor for log). CPU twin: `ColorScale::position` in src/scale.rs.
fn scaled(v: f32, r: vec4<f32>) -> f32 {
    if params.scale == SCALE_LOG {
        return normalize(log2(max(v, r.z)), r.xy);
    }
    let t = normalize(v, r.xy);
    if params.scale == SCALE_LINEAR {
        return t;
    }
    if !(t > 0.0) {
        return 0.0;
    }
    if t >= 1.0 {
        return 1.0;
    }
    if params.scale == SCALE_SQRT {
        return sqrt(t);
    }
    return pow(t, params.gamma);
}

// matplotlib's index rule: min(floor(t * 256), 255), under → 0, over → 255.
// CPU twin: `lut_index` in src/colormap.rs.
fn lut_index(t: f32) -> u32 {
    if !(t > 0.0) {
        return 0u;
    }
    if t >= 1.0 {
        return 255u;
    }
    return min(u32(t * 256.0), 255u);
}

// Pixels per invocation: fewer, fuller workgroups (their launch cost dominates on software
// rasterizers; on GPUs the strided loop keeps accesses coalesced).
const PER_INVOCATION: u32 = 8u;

fn color_of(a: Accum, range: vec4<f32>) -> u32 {
    let count = a.count_bad & COUNT_MASK;
    if (a.count_bad & BAD_BIT) != 0u {
        return params.bad_color;
    }
    if count == 0u {
        return 0u;
    }
    var v = a.max_v;
    if params.reduce == REDUCE_MEAN {
        v = a.sum / f32(count);
    } else if params.reduce == REDUCE_MIN {
        v = a.min_v;
    }
    return lut[lut_index(scaled(v, range))];
}

// Workgroups: x (and z, past 65535) over a head's pixels, 256 x PER_INVOCATION each; y over the
// group's heads, so no invocation divides to find its head.
@compute @workgroup_size(256)
fn colorize(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let first = (wg.z * nwg.x + wg.x) * 256u * PER_INVOCATION + li;
    let range = ranges[params.first_head + wg.y];
    let base = wg.y * params.pixels_per_head;
    for (var j = 0u; j < PER_INVOCATION; j++) {
        let p = first + j * 256u;
        if p >= params.pixels_per_head {
            return;
        }
        colors[base + p] = color_of(accum[base + p], range);
    }
}
