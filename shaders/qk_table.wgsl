// The keys a query row sees under bidirectional spans (Gemma-3's images, PaliGemma's prefix),
// from a table of each position's keys (`QkSource::key_ranges`): u32 words from `base` of
// `key_bin`, the one-pass run's buffer of its keys' pooled columns, which the module this file
// is added to declares (qk_pool.wgsl, whose table follows the columns; pattern_qk.wgsl, which
// binds the same buffer). Row `r` of a head whose diagonal is `diagonal` reads the entry of its
// position (qk_mask.wgsl's table_position): [first key seen, one past the last); none before the
// first key's position (a row no key precedes, as causal has it).
fn table_range(base: u32, r: u32, diagonal: i32, keys: u32) -> vec2<u32> {
    let a = table_position(r, diagonal, keys);
    if a < 0 {
        return vec2<u32>(0u, 0u);
    }
    let at = base + 2u * u32(a);
    return vec2<u32>(key_bin[at], key_bin[at + 1u]);
}
