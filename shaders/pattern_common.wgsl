// Pattern statistics' data shared by the pool pass (which folds the statistics that need each
// entry apart, the entropy, the maximum and the non-finite count, into its own read of the
// entries, with FLAG_PATTERN) and shaders/pattern.wgsl (which reduces them per head and adds
// the column, diagonal and block masses). Prepended to both by src/gpu/shaders.rs.

// Keep in sync with `PatternParams` in src/pool/pattern_gpu.rs.
struct PatternParams {
    queries: u32,
    keys: u32,
    sink_keys: u32,
    window: u32,
    // block side (a multiple of 64) and blocks per block row
    block: u32,
    blocks_w: u32,
    // f32 words per head in `profiles`: keys columns, queries + keys - 1 diagonals, blocks
    stride: u32,
    // 1: entries above the causal diagonal are masked
    causal: u32,
    // pooled pixels per head, and chunks of PIXEL_CHUNK of them (`pattern_pixels`)
    pixels: u32,
    pixel_chunks: u32,
    // rows of a chunk at most, and where the diagonals' shares start in `scratch`
    // (shaders/pattern.wgsl)
    diag_rows: u32,
    diag_base: u32,
}

// One pooled pixel's share of its head's entropy, maximum and non-finite count, over the
// entries of its bin: the pool pass resumes it chunk after chunk like the pixel's accumulator.
// (The other scalars are sums of the profiles: src/pool/pattern.rs.) Keep in sync with
// `PIXEL_SUMS_BYTES` in src/pool/pattern_gpu.rs.
struct PixelSums {
    // Σ p ln p over the finite, unmasked entries with p > 0
    p_ln_p: f32,
    max_v: f32,
    // 1 + the row of `max_v` (0: no finite, unmasked entry yet) and its key
    arg_q1: u32,
    arg_k: u32,
    // non-finite, unmasked entries
    bad: u32,
}

const LN2: f32 = 0.693147180559945;
const F32_MIN_NORMAL: f32 = 1.17549435e-38;

// ln(p) for finite p > 0 (subnormal p as the smallest normal: |p ln p| is below 1e-36 there),
// within a few ulp: the exponent times ln 2 plus ln m for m in [√½, √2) by the atanh series
// 2(s + s³/3 + … + s⁹/9), s = (m − 1)/(m + 1), |s| < 0.172 (the next term is below 1e-9).
// Written out because llvmpipe's `log` costs several times the rest of the pool pass's
// per-entry work together, and GPUs run this about as fast as their own.
fn ln_positive(p: f32) -> f32 {
    let b = bitcast<u32>(max(p, F32_MIN_NORMAL));
    var mb = (b & 0x007fffffu) | 0x3f800000u;
    var e = i32(b >> 23u) - 127;
    // m above √2: halve it (exponent bits − 1) and count one more power of two
    let big = mb > 0x3fb504f3u;
    mb = select(mb, mb - 0x00800000u, big);
    e += select(0, 1, big);
    let m = bitcast<f32>(mb);
    let s = (m - 1.0) / (m + 1.0);
    let z = s * s;
    let series = 2.0 + z * (0.6666667 + z * (0.4 + z * (0.2857143 + z * 0.2222222)));
    return f32(e) * LN2 + s * series;
}
