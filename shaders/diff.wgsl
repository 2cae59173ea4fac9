// A − B, element by element, for `attnviz diff`: one block of rows of both inputs, each in its
// own dtype, to f32 differences that the pool pass then folds as it folds any f32 rows. A
// non-finite operand gives NaN, so the bin is drawn bad. CPU twin: `subtract` in
// src/source/diff.rs (the f16 and bf16 widening is `widen` in shaders/pool.wgsl, exact).

struct DiffParams {
    // elements in this block
    count: u32,
    // DTYPE_* of each input, as in shaders/pool.wgsl
    dtype_a: u32,
    dtype_b: u32,
    _pad: u32,
}

const DTYPE_F32: u32 = 0u;
const DTYPE_F16: u32 = 1u;
const DTYPE_BF16: u32 = 2u;
const NAN_BITS: u32 = 0x7fc00000u;

@group(0) @binding(0) var<uniform> params: DiffParams;
@group(0) @binding(1) var<storage, read> a: array<u32>;
@group(0) @binding(2) var<storage, read> b: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<u32>;

// Element `i` of a block of `dtype` values whose 32-bit words are `word(i)`: the f32 bits and
// whether the value is finite (read from the exponent bits: WGSL lets compilers assume floats
// are finite).
fn widen(w: u32, i: u32, dtype: u32) -> vec2<u32> {
    if dtype == DTYPE_F32 {
        return vec2<u32>(w, u32((w & 0x7f800000u) != 0x7f800000u));
    }
    let h = (w >> ((i & 1u) * 16u)) & 0xffffu;
    if dtype == DTYPE_F16 {
        let sign = (h & 0x8000u) << 16u;
        let em = h & 0x7fffu;
        let normal = (em << 13u) + 0x38000000u;
        let small = bitcast<u32>(f32(em) * 5.9604644775390625e-8);
        return vec2<u32>(sign | select(normal, small, em < 0x400u), u32((h & 0x7c00u) != 0x7c00u));
    }
    return vec2<u32>(h << 16u, u32((h & 0x7f80u) != 0x7f80u));
}

fn word_index(i: u32, dtype: u32) -> u32 {
    return select(i >> 1u, i, dtype == DTYPE_F32);
}

@compute @workgroup_size(256)
fn diff(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let i = flat_index(wg, nwg, li, 256u);
    if i >= params.count {
        return;
    }
    let x = widen(a[word_index(i, params.dtype_a)], i, params.dtype_a);
    let y = widen(b[word_index(i, params.dtype_b)], i, params.dtype_b);
    let d = bitcast<u32>(bitcast<f32>(x.x) - bitcast<f32>(y.x));
    out[i] = select(NAN_BITS, d, x.y == 1u && y.y == 1u);
}
