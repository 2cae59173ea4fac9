// Which keys a query row of a Q/K head sees: prepended to qk.wgsl and qk_pool.wgsl so both
// paths mask alike; src/source/qk.rs (`QkSource::visible`) is the reference. Key k is hidden
// from row r when k > r + diagonal (causal), or when k ≤ r + diagonal − window (older than a
// sliding window; window 0: none).

// One past the last key row `r` sees.
fn mask_end(r: u32, causal: bool, diagonal: i32, keys: u32) -> u32 {
    if !causal {
        return keys;
    }
    return u32(clamp(i32(r) + diagonal + 1, 0, i32(keys)));
}

// The first key row `r` sees, at most `end` (its mask_end).
fn mask_start(r: u32, end: u32, diagonal: i32, window: u32) -> u32 {
    if window == 0u {
        return 0u;
    }
    return u32(clamp(i32(r) + diagonal - i32(window) + 1, 0, i32(end)));
}
