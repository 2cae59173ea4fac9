// Shared by pool.wgsl, stats.wgsl and colorize.wgsl (prepended with concat!).
// Keep in sync with `Accum` in src/pool/accum.rs.

struct Accum {
    max_v: f32,
    min_v: f32,
    sum: f32,
    // bits 0..31: finite, unmasked entries; bit 31: the bin held a non-finite entry
    count_bad: u32,
}

const BAD_BIT: u32 = 0x80000000u;
const COUNT_MASK: u32 = 0x7fffffffu;
const F32_MAX: f32 = 3.40282347e38;

// Flat index of an invocation in a 1-D job laid out over a 2-D grid of workgroups, because a
// single dispatch dimension stops at 65535 workgroups.
fn flat_index(wg: vec3<u32>, nwg: vec3<u32>, local: u32, size: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * size + local;
}

// The one of a bin's max and min with the larger magnitude, the max on a tie (`--reduce
// extreme`, the default of `diff`). CPU twin: `signed_extreme` in src/pool/accum.rs.
fn signed_extreme(max_v: f32, min_v: f32) -> f32 {
    return select(min_v, max_v, abs(max_v) >= abs(min_v));
}
