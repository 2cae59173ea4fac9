// prob_rows' output when the pool pass reads it straight away (src/pool/qk/tiled/source.rs puts these
// lines in place of the @PROBS_OUT section of qk_pool_rows.wgsl): the chunk texture that the
// pool pass and the pattern statistics then read (`chunk_word` in shaders/chunk.wgsl), written
// here a texel of four keys at a time, so that no copy of every probability follows. Every
// texel holds keys of one row: rows are padded to a multiple of 4 keys (the pool pass reads
// them a stride apart, `Piece::stride`, and never reads the padding), and windows of a
// multiple of 4 keys start on a texel; prob_rows' keys come four at a time from a multiple
// of 4.
@group(0) @binding(12) var probs_out: texture_storage_2d<rgba32uint, write>;

// Elements from one row's start to the next's: the keys rounded up to a whole texel.
fn prob_stride() -> u32 {
    return (params.keys + 3u) & ~3u;
}

// Keys j..j + 3 of the row starting at element `base` (j a multiple of 4), the whole texel
// when j is before `end`: its keys from `end` on are seen by no row of the workgroup (past the
// diagonal, which every reader masks, or the row's padding) and get the 0 prob4 gives them,
// and the texel still ends inside the padded row and the window (both end on a multiple of 4,
// but for the row's last window, which ends with the row). A texel from `end` on may be the
// next window's or the next row's: not this step's.
fn store4(base: u32, j: u32, end: u32, p: vec4<f32>) {
    if j < end {
        let w = (base + j) >> 2u;
        textureStore(probs_out, vec2<u32>(w % CHUNK_W, w / CHUNK_W), bitcast<vec4<u32>>(p));
    }
}
