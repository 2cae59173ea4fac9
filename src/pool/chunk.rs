//! The texture the pool pass reads its rows from: each chunk's bytes are copied into it (one
//! device-side copy per chunk) and `shaders/pool.wgsl` loads 16-byte words with `textureLoad`.
//!
//! Why a texture and not the storage buffer the rows arrive in: texture reads are the read path
//! every GPU driver makes fast, including software ones, which vectorize them; Mesa's llvmpipe
//! (22.x) instead emulates a storage-buffer load lane by lane, one scalar load and a vector
//! round trip through memory per component. Measured there with a probe kernel (16M vec4 loads
//! each way, Mesa 22.3): 14 ns per storage load against 1.5–2 ns per texel fetch, and those
//! loads were the bulk of the pool pass. On GPUs the texture path reads through the texture
//! cache at full bandwidth, and the copy is a fraction of the upload it follows.
//!
//! Why a read-only storage texture and not a sampled one: a sampled texture's `textureLoad`
//! takes a mip level, and llvmpipe computes each lane's level size and offsets on every fetch
//! even for level 0; an image load has no levels. Measured on llvmpipe (2026-12-03, alternating
//! runs): `attnviz bench` pool-resident 0.33–0.37 s → 0.25 s, export-grid 0.40–0.41 s →
//! 0.33–0.34 s, the same bytes out. rgba32uint storage textures are readable on every Vulkan,
//! Metal and DX12 adapter; [`Gpu`] checks it when it opens one.

use crate::gpu::Gpu;

/// Texels per texture row: 64 KiB rows, a multiple of the 256-byte row alignment copies need.
/// Keep in sync with `CHUNK_W` in shaders/chunk.wgsl.
pub(crate) const CHUNK_W: u32 = 4096;
/// Bytes of one texel (an rgba32uint: one 16-byte word of the chunk).
const TEXEL: u64 = 16;
const ROW_BYTES: u64 = CHUNK_W as u64 * TEXEL;

/// Bytes of rows a chunk texture can hold on `gpu` at most (its height is capped by
/// `max_texture_dimension_2d`), one row kept for the 16-byte alignment of resident rows.
pub(crate) fn max_chunk_bytes(gpu: &Gpu) -> u64 {
    (u64::from(gpu.limits.max_texture_dimension_2d) - 1) * ROW_BYTES
}

/// An rgba32uint texture of [`CHUNK_W`] texels per row holding a chunk's bytes in order:
/// word `w` is texel (`w % CHUNK_W`, `w / CHUNK_W`).
pub(crate) struct ChunkTexture {
    pub(crate) texture: wgpu::Texture,
    pub(crate) view: wgpu::TextureView,
}

impl ChunkTexture {
    /// A texture holding `bytes` bytes of rows starting anywhere in a 16-byte word.
    pub(crate) fn new(gpu: &Gpu, bytes: u64) -> ChunkTexture {
        let rows = (bytes + TEXEL).div_ceil(ROW_BYTES).max(1) as u32;
        let texture = gpu.device.create_texture(&wgpu::TextureDescriptor {
            label: Some("attnviz.pool.chunk"),
            size: wgpu::Extent3d {
                width: CHUNK_W,
                height: rows,
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: wgpu::TextureFormat::Rgba32Uint,
            usage: wgpu::TextureUsages::STORAGE_BINDING | wgpu::TextureUsages::COPY_DST,
            view_formats: &[],
        });
        let view = texture.create_view(&Default::default());
        ChunkTexture { texture, view }
    }

    /// Bytes this texture holds.
    pub(crate) fn capacity(&self) -> u64 {
        u64::from(self.texture.height()) * ROW_BYTES
    }

    /// Records a one-word copy from `src` (which needs `COPY_SRC`) into the texture, for a
    /// submission made ahead of the first real one: wgpu zero-fills a texture in full before
    /// the first copy that covers only part of it (and a chunk texture's last row is never
    /// covered), so this moves that fill, and the first touch of the texture's memory, to a
    /// point where the device can do it while the host is still busy (compiling pipelines).
    pub(crate) fn prime(&self, encoder: &mut wgpu::CommandEncoder, src: &wgpu::Buffer) {
        self.copy_from(encoder, src, 0, TEXEL);
    }

    /// Records the copy of `bytes` bytes of `src` from byte `offset` (a multiple of 16) into
    /// the texture's first words; `src` needs `COPY_SRC` and must hold the bytes rounded up to
    /// a whole word.
    pub(crate) fn copy_from(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        src: &wgpu::Buffer,
        offset: u64,
        bytes: u64,
    ) {
        debug_assert!(offset.is_multiple_of(TEXEL));
        let texels = bytes.div_ceil(TEXEL);
        debug_assert!(texels * TEXEL <= self.capacity());
        let full = (texels / u64::from(CHUNK_W)) as u32;
        let rest = (texels % u64::from(CHUNK_W)) as u32;
        let mut copy = |row: u32, width: u32, height: u32| {
            if width == 0 || height == 0 {
                return;
            }
            encoder.copy_buffer_to_texture(
                wgpu::TexelCopyBufferInfo {
                    buffer: src,
                    layout: wgpu::TexelCopyBufferLayout {
                        offset: offset + u64::from(row) * ROW_BYTES,
                        bytes_per_row: Some(ROW_BYTES as u32),
                        rows_per_image: None,
                    },
                },
                wgpu::TexelCopyTextureInfo {
                    texture: &self.texture,
                    mip_level: 0,
                    origin: wgpu::Origin3d { x: 0, y: row, z: 0 },
                    aspect: wgpu::TextureAspect::All,
                },
                wgpu::Extent3d {
                    width,
                    height,
                    depth_or_array_layers: 1,
                },
            );
        };
        copy(0, CHUNK_W, full);
        copy(full, rest, 1);
    }
}
