// How a chunk texture (src/pool/chunk.rs, which says why a read-only storage texture) holds a
// buffer's 16-byte words: CHUNK_W to a row, word w at texel (w % CHUNK_W, w / CHUNK_W).
// Prepended by src/gpu/shaders.rs to every shader that reads one; keep CHUNK_W in sync with
// `CHUNK_W` there.

const CHUNK_W: u32 = 4096u;

// Word `w` of the buffer copied into `t`.
fn chunk_word(t: texture_storage_2d<rgba32uint, read>, w: u32) -> vec4<u32> {
    return textureLoad(t, vec2<u32>(w % CHUNK_W, w / CHUNK_W));
}

