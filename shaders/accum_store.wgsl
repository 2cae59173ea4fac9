// Writing accumulators in the layout `accum.wgsl` describes (appended after it to the shaders
// that pool: a read-only binding may not be written, even by a function no entry point calls).

// Stores pixel `i`'s accumulator. SINGLE: `a` holds at most one entry (its bin is one).
fn store_accum(i: u32, a: Accum) {
    if SINGLE {
        let w = select(bitcast<u32>(a.max_v) ^ SINGLE_FLIP, SINGLE_EMPTY, (a.count_bad & COUNT_MASK) == 0u);
        accum[i] = select(w, SINGLE_BAD, (a.count_bad & BAD_BIT) != 0u);
        return;
    }
    let b = 4u * i;
    accum[b] = bitcast<u32>(a.max_v);
    accum[b + 1u] = bitcast<u32>(a.min_v);
    accum[b + 2u] = bitcast<u32>(a.sum);
    accum[b + 3u] = a.count_bad;
}
