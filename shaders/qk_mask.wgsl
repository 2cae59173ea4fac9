// Which keys a query row of a Q/K head sees: prepended to qk.wgsl and qk_pool.wgsl so both
// paths mask alike (and to the pool and pattern modules, for first_key_seen); src/source/qk.rs
// (`QkSource::visible`, `HiddenKeys`) is the reference. Key k is hidden from row r, at position
// a = r + diagonal, when k > a (causal), when a − k ≥ window (older than a sliding window;
// window 0: none), when k − a ≥ window in a bidirectional layer (its window is two-sided, as in
// ModernBERT's local layers), or when k is outside the chunk of a (attention chunks of `chunk`
// positions, 0: none; before it in a causal layer, before or after it in a bidirectional one:
// a vision tower attending within each of its video's frames).

// One past the last key row `r` sees: its causal diagonal's, or the earlier of its two-sided
// window's and its chunk's (bidirectional; window, chunk 0: none), or the head's last key's.
fn mask_end(r: u32, causal: bool, diagonal: i32, keys: u32, window: u32, chunk: u32) -> u32 {
    if causal {
        return u32(clamp(i32(r) + diagonal + 1, 0, i32(keys)));
    }
    if window == 0u && chunk == 0u {
        return keys;
    }
    // (window and chunk at most 2^30, `HiddenKeys::KERNEL_MAX`, and positions below 2^30: the
    // sums stay i32s)
    let a = i32(r) + diagonal;
    var end = i32(keys);
    if window != 0u {
        end = min(end, a + i32(window));
    }
    if chunk != 0u {
        end = min(end, chunk_first(a, chunk) + i32(chunk));
    }
    return u32(clamp(end, 0, i32(keys)));
}

// One past the last key that is an entry of row `r`: its causal diagonal's, or the head's last
// key's. The keys between mask_end and it are entries of probability 0 (a two-sided window's
// later keys, as its older keys are), which pooled probabilities count and logits mask.
fn entry_end(r: u32, causal: bool, diagonal: i32, keys: u32) -> u32 {
    return mask_end(r, causal, diagonal, keys, 0u, 0u);
}

// The first key row `r` sees, at most `end` (its mask_end).
fn mask_start(r: u32, end: u32, diagonal: i32, window: u32, chunk: u32) -> u32 {
    if window == 0u && chunk == 0u {
        return 0u;
    }
    return u32(clamp(first_key_seen(i32(r) + diagonal, window, chunk), 0, i32(end)));
}

// The first key position the query at position `a` sees under a sliding window of `window`
// keys and attention chunks of `chunk` positions (0: none of either): the later of the window's
// oldest key and the chunk's first; below 0 where it sees every key from the first. Shared by
// the Q/K shaders' masks and the pool pass's (pool_fold.wgsl: the pool and pattern modules
// include this file too); `HiddenKeys::first` in src/source/qk.rs is the reference.
fn first_key_seen(a: i32, window: u32, chunk: u32) -> i32 {
    var lo = -2147483647 - 1;
    if window != 0u {
        lo = a - i32(window) + 1;
    }
    if chunk != 0u {
        lo = max(lo, chunk_first(a, chunk));
    }
    return lo;
}

// Where row `r` (at position r + diagonal) reads a table of each position's keys
// (`QkSource::key_ranges`, bidirectional spans): its position, at most the last key's; -1 before
// the first key's position, a row that sees no key (as causal has it).
fn table_position(r: u32, diagonal: i32, keys: u32) -> i32 {
    let a = i32(r) + diagonal;
    if a < 0 {
        return -1;
    }
    return min(a, i32(keys) - 1);
}

// The first position of the attention chunk (of `chunk` positions, counted from 0) that
// position `a` is in; positions before 0 are in the first (`HiddenKeys::chunk_first`).
fn chunk_first(a: i32, chunk: u32) -> i32 {
    let p = max(a, 0);
    return p - p % i32(chunk);
}
