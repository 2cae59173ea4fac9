// How pooled pixels lie in `accum`, which every shader that reads or writes accumulators
// declares as `array<u32>` (appended to those shaders by src/gpu/shaders.rs; the writers get
// `accum_store.wgsl` too). Keep in sync with
// `AccumLayout` in src/pool/accum.rs.
//
// Two layouts, a pipeline constant:
// - four words a pixel (an `Accum`: max, min, sum, count and bad bit), for bins of many entries;
// - SINGLE: one word a pixel, where every bin is one entry (one row and one key: a short head
//   drawn at its own size, such as a whole model on a prompt). The pixel's value says it all
//   (max = min = sum, count 1), so it keeps a quarter of the memory the figure's pixels would:
//   a 32 × 32 model of 256 tokens pools 67 million pixels, 1 GiB as `Accum`s, first written by
//   the pool pass, then read by the statistics and the colour pass.
//   The word is 0 for no entry (masked, or not pooled yet: buffers start zeroed), 1 for a
//   non-finite entry, and otherwise the value's bits with the 31 low bits flipped: a finite
//   value's bits never equal 0x7fffffff or 0x7ffffffe (NaN patterns), so no value reads as
//   either marker, and no float operation ever sees a marker's bits.
override SINGLE: bool = false;
const SINGLE_EMPTY: u32 = 0u;
const SINGLE_BAD: u32 = 1u;
const SINGLE_FLIP: u32 = 0x7fffffffu;

// Pixel `i`'s accumulator (a pixel with no entry as the pool pass leaves it: the extremes at
// their sentinels).
fn load_accum(i: u32) -> Accum {
    if SINGLE {
        let w = accum[i];
        if w == SINGLE_EMPTY || w == SINGLE_BAD {
            return Accum(-F32_MAX, F32_MAX, 0.0, select(0u, BAD_BIT, w == SINGLE_BAD));
        }
        let bits = w ^ SINGLE_FLIP;
        // (the sum as the pool pass adds it, 0.0 + v: +0.0 for v = -0.0; on the bits, which
        // no compiler folds)
        let sum = select(bits, 0u, bits == 0x80000000u);
        return Accum(bitcast<f32>(bits), bitcast<f32>(bits), bitcast<f32>(sum), 1u);
    }
    let b = 4u * i;
    return Accum(bitcast<f32>(accum[b]), bitcast<f32>(accum[b + 1u]), bitcast<f32>(accum[b + 2u]),
        accum[b + 3u]);
}
