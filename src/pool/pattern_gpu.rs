//! The pattern statistics on the GPU. One kernel records right after each pool dispatch, on
//! the same bound chunk (`pattern_profiles` in `shaders/pattern.wgsl`), and reads it once for
//! everything: the column, diagonal and block masses, and the entropy, maximum and non-finite
//! count, which each workgroup (1024 keys) folds into a pixel's sums of its own per head
//! ([`head_pixels`]); those are reduced per head once the last chunk is pooled
//! ([`PatternPass::read`]), and the row sums and the sink, local and distance masses are sums
//! of the profiles. The pool pass knows nothing of them (it once folded the entropy per pooled
//! pixel from its own loads: per entry, that cost a software rasterizer more than the profile
//! kernel's vector of 16 keys does). An ingest without statistics records nothing and builds
//! no pipeline. Heads from Q and K whose figure the one-pass path pools fill the same buffers
//! from their scores instead (`pool::pattern_qk`), with no chunk to read.
//!
//! Memory per head: K column masses, Q + K − 1 diagonal masses and at most
//! [`super::pattern::MAX_BLOCKS`] block masses (f32), 20 bytes per workgroup of keys, and 32
//! bytes of scalars per [`PIXEL_CHUNK`] of those; a scratch of 8 bytes per row of a chunk and
//! [`GROUP_KEYS`] keys.
//!
//! Precision: each invocation adds its 16 keys' p ln p in f32 a block row at a time (at most
//! 64 rows), then the block rows; the workgroup's invocations in a tree, into its pixel piece
//! after piece; the pixels in runs and a tree per chunk of [`PIXEL_CHUNK`], and the chunks with
//! Kahan compensation. Column, diagonal and block masses are f32 sums over the rows
//! of one piece (at most [`PATTERN_ROWS`]; a diagonal's over at most 16 rows per key group, then
//! over the groups) added into f32 totals, and the masses summed from them are added in f64.
//! Against the f64 CPU twin that is a relative error of about 1e-6 on the scalars and 1e-5 on
//! the profiles for the sizes the tests use.

use std::sync::OnceLock;

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::kernel::{Binding, Kernel};
use crate::gpu::{dispatch_1d, shaders, Gpu};
use crate::pool::accum::AccumLayout;
use crate::pool::ingest::{IngestShape, Piece};
use crate::pool::options::{Causal, FLAG_ROW_NORM};
use crate::pool::pattern::{block_side, PatternOptions, PatternSums};
use crate::pool::pool_kernel::PoolKernel;
use crate::pool::MAX_PIECES;
use crate::source::DType;

/// Rows of one head per dispatch at most when pattern statistics are on: bounds the profile
/// kernel's loop over a piece's rows (and, divided by 16, the diagonals').
pub(super) const PATTERN_ROWS: usize = 4096;

/// Mirrors `PatternParams` in `shaders/pattern.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
struct PatternParams {
    queries: u32,
    keys: u32,
    sink_keys: u32,
    window: u32,
    block: u32,
    blocks_w: u32,
    stride: u32,
    causal: u32,
    pixels: u32,
    pixel_chunks: u32,
    diag_rows: u32,
    diag_base: u32,
    slices: u32,
    col_base: u32,
    position0: i32,
    _pad: u32,
}

/// Mirrors `PixelSums` in `shaders/pattern.wgsl`: 5 words per pooled pixel.
pub(super) const PIXEL_SUMS_BYTES: u64 = 20;

/// Keys per invocation of `pattern_profiles` (and `pattern_qk`): mirrors `GROUP_KEYS` in
/// `shaders/pattern.wgsl`.
pub(super) const GROUP_KEYS: usize = 16;
/// Keys per workgroup of those kernels (64 invocations); each workgroup folds its invocations'
/// entropy, maximum and non-finite count into a pixel of its own per head.
pub(super) const WORKGROUP_KEYS: usize = 64 * GROUP_KEYS;
const _: () = assert!(WORKGROUP_KEYS == crate::gpu::PATTERN_QK_MIN_KEYS as usize);

/// Pixels' sums per head for `keys` keys: one per workgroup of keys.
pub(super) fn head_pixels(keys: usize) -> usize {
    keys.div_ceil(WORKGROUP_KEYS)
}

/// Pixels per invocation of `pattern_pixels`, and per workgroup (256 invocations): mirrors
/// `PIXEL_RUN` and `PIXEL_CHUNK` in `shaders/pattern.wgsl`.
pub(super) const PIXEL_RUN: usize = 64;
pub(super) const PIXEL_CHUNK: usize = 256 * PIXEL_RUN;

/// `pattern_pixels`' chunks of a head of `head_pixels` pixels' sums (`PatternParams::pixel_chunks`).
fn pixel_chunks(head_pixels: usize) -> usize {
    head_pixels.div_ceil(PIXEL_CHUNK).max(1)
}

/// Mirrors `HeadSums` in `shaders/pattern.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
struct HeadSums {
    /// Σ p ln p and its Kahan compensation.
    p_ln_p: f32,
    comp: f32,
    max_v: f32,
    arg_q: u32,
    arg_k: u32,
    seen: u32,
    bad: [u32; 2],
}

/// The pattern pipelines: each compiled on the first dispatch that uses it (a pipeline never
/// used is no start-up time: on lavapipe the profile kernel alone takes about 40 ms).
#[derive(Default)]
pub(crate) struct PatternPipelines {
    kernel: OnceLock<Kernel>,
    /// blocks, diagonals, columns (of a piece in slices); per `DType::shader_id`.
    per_dtype: [OnceLock<[wgpu::ComputePipeline; 3]>; 3],
    /// profiles, per `DType::shader_id`, and per whether every row of the dispatch's pieces
    /// starts on a 16-byte word (`ALIGNED`): the other read path is left out of the shader,
    /// not skipped at run time (llvmpipe runs both sides of a branch it cannot prove uniform:
    /// a third of the statistics' cost on the 1 GiB grid).
    profiles: [[OnceLock<wgpu::ComputePipeline>; 2]; 3],
    /// pixels, heads: the reduction of the pixels' sums (`pattern_pixels` only for heads of
    /// more than one run of them: `pattern_heads` sums the others itself).
    pixels: OnceLock<wgpu::ComputePipeline>,
    heads: OnceLock<wgpu::ComputePipeline>,
    /// The statistics of Q/K heads from their scores (`pool::pattern_qk`).
    pub(super) qk: crate::pool::pattern_qk::QkPatternKernels,
    /// The profile kernel that pools as well (`shaders/pattern_pool.wgsl`): its module with
    /// the pool pass's bindings as group 1, and its pipelines per (`DType::shader_id`, pool
    /// flags, pixels an invocation: 1, 2 or 4 as index 0, 1, 2).
    pooling_kernel: OnceLock<Kernel>,
    pooling: [[[OnceLock<wgpu::ComputePipeline>; 3]; 16]; 3],
}

impl PatternPipelines {
    pub(super) fn kernel(&self, device: &wgpu::Device) -> &Kernel {
        use Binding::*;
        // pieces, rows of the chunk, params, per-chunk partials, head scalars, profiles, the
        // pixels' sums, scratch
        self.kernel.get_or_init(|| {
            Kernel::compute(
                device,
                "attnviz.pattern",
                shaders::PATTERN,
                &[
                    Uniform, Chunk, Uniform, Buffer, Buffer, Buffer, Buffer, Buffer,
                ],
            )
        })
    }

    fn pipelines(&self, device: &wgpu::Device, dtype: DType) -> &[wgpu::ComputePipeline; 3] {
        let id = dtype.shader_id();
        self.per_dtype[id as usize].get_or_init(|| {
            let constants = [("DTYPE", id as f64)];
            let kernel = self.kernel(device);
            ["pattern_blocks", "pattern_diagonals", "pattern_columns"]
                .map(|entry| kernel.specialized(device, entry, &constants))
        })
    }

    fn profiles(
        &self,
        device: &wgpu::Device,
        dtype: DType,
        aligned: bool,
    ) -> &wgpu::ComputePipeline {
        let id = dtype.shader_id();
        self.profiles[id as usize][aligned as usize].get_or_init(|| {
            let constants = [
                ("DTYPE", id as f64),
                ("ALIGNED", f64::from(u8::from(aligned))),
            ];
            self.kernel(device)
                .specialized(device, "pattern_profiles", &constants)
        })
    }

    /// The module of the profile kernel that pools as well, and the layout of its group 1: the
    /// pool pass's bin edges, accumulators, row maxima, flags and set-aside zeros.
    pub(super) fn pooling_kernel(&self, device: &wgpu::Device) -> &Kernel {
        use Binding::*;
        self.pooling_kernel.get_or_init(|| {
            Kernel::compute(
                device,
                "attnviz.pattern_pool",
                shaders::PATTERN_POOL,
                &[BufReadOnly, Buffer, Buffer, Buffer, Buffer],
            )
        })
    }

    fn pooling(
        &self,
        device: &wgpu::Device,
        dtype: DType,
        pool: PoolWithProfiles,
    ) -> &wgpu::ComputePipeline {
        let id = dtype.shader_id();
        let px = pool.pixels.trailing_zeros() as usize;
        self.pooling[id as usize][pool.flags as usize][px].get_or_init(|| {
            let constants = [
                ("DTYPE", id as f64),
                ("ALIGNED", 1.0),
                ("FLAGS", f64::from(pool.flags)),
                ("LANE_PIXELS", f64::from(pool.pixels)),
                AccumLayout::Full.constant(),
            ];
            self.pooling_kernel(device).pipeline_after(
                device,
                self.kernel(device),
                "pattern_pool",
                &constants,
            )
        })
    }

    /// Compiles the profile pipelines a dispatch of rows of `dtype` (`aligned`: on 16-byte
    /// words) uses, ahead of it ([`crate::pool::ingest::Ingest::pipeline_warmer`]).
    pub(super) fn warm(&self, device: &wgpu::Device, dtype: DType, aligned: bool) {
        self.profiles(device, dtype, aligned);
        self.pipelines(device, dtype);
    }

    fn pixels(&self, device: &wgpu::Device) -> &wgpu::ComputePipeline {
        self.pixels
            .get_or_init(|| self.kernel(device).pipeline(device, "pattern_pixels"))
    }

    fn heads(&self, device: &wgpu::Device) -> &wgpu::ComputePipeline {
        self.heads
            .get_or_init(|| self.kernel(device).pipeline(device, "pattern_heads"))
    }
}

/// How the profile kernel pools a chunk where it can (`shaders/pattern_pool.wgsl`): the pool
/// pass's flags and the pixels in an invocation's [`GROUP_KEYS`] keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct PoolWithProfiles {
    pub flags: u32,
    pub pixels: u32,
}

impl PoolWithProfiles {
    /// Whether the chunks of a head of `keys` keys, whose pool pass takes `kernel`, can be
    /// pooled by the profile kernel: bins of whole words from key 0 (`PoolKernel::Lanes`, rows
    /// on words) that divide its 16 keys, which divide the row, and no `--norm row` (its row
    /// maxima come from a pass over the rows first). `flags` are the pool pass's.
    pub(super) fn choose(
        keys: usize,
        dtype: DType,
        kernel: PoolKernel,
        flags: u32,
    ) -> Option<PoolWithProfiles> {
        let PoolKernel::Lanes(words) = kernel else {
            return None;
        };
        let bin = words as usize * 16 / dtype.size();
        if flags & FLAG_ROW_NORM != 0 || !keys.is_multiple_of(GROUP_KEYS) || bin > GROUP_KEYS {
            return None;
        }
        Some(PoolWithProfiles {
            flags,
            pixels: (GROUP_KEYS / bin) as u32,
        })
    }
}

/// f32 words per head in the profiles buffer: columns, diagonals, blocks.
pub(super) fn profile_words(queries: usize, keys: usize) -> usize {
    let block = block_side(queries, keys);
    keys + queries + keys - 1 + queries.div_ceil(block) * keys.div_ceil(block)
}

/// Bytes of one head's largest pattern buffer (its profiles), for sizing accumulator groups.
pub(super) fn head_bytes(queries: usize, keys: usize) -> u64 {
    (profile_words(queries, keys) * 4) as u64
}

/// One ingest's pattern buffers: the parameters, and per accumulator group the pixels' sums,
/// the per-chunk partials, the head scalars and the profiles (cleared on creation).
pub(super) struct PatternPass {
    params: wgpu::Buffer,
    pixels: Vec<wgpu::Buffer>,
    partials: Vec<wgpu::Buffer>,
    heads: Vec<wgpu::Buffer>,
    profiles: Vec<wgpu::Buffer>,
    /// Per row of a chunk, per group of [`GROUP_KEYS`] keys: block rows' and diagonals' shares
    /// of the group's mass (`scratch` in `shaders/pattern.wgsl`).
    scratch: wgpu::Buffer,
    /// Pixels' sums per head (`PatternParams::pixels`).
    head_pixels: usize,
    /// Rows of a dispatch at most (pieces together): what `scratch` holds.
    pub(super) rows: usize,
    /// Rows a profile invocation walks (`Gpu::pattern_slice_rows` rounded up to whole block
    /// rows; 0: a whole piece), and the slices a piece has at most.
    pub(super) slice_rows: u32,
    slices: usize,
    options: PatternOptions,
    queries: usize,
    keys: usize,
    /// Where row 0 sits ([`PatternSums::position0`]).
    position0: i64,
    block: usize,
    dtype: DType,
}

/// What a [`PatternPass`] is made for.
pub(super) struct PatternShape<'a> {
    pub(super) options: PatternOptions,
    pub(super) queries: usize,
    pub(super) keys: usize,
    /// Where row 0 sits, in key indices: the source's diagonal ([`PatternSums::position0`]).
    pub(super) position0: i64,
    pub(super) dtype: DType,
    /// Entries above the diagonal are masked (the piece's diagonal, as the pool pass's).
    pub(super) causal: bool,
    /// Rows of one chunk at most.
    pub(super) max_rows: usize,
    /// Cells of each accumulator group.
    pub(super) group_cells: &'a [usize],
}

impl PatternPass {
    /// The pattern pass of an ingest of `shape` whose accumulator groups hold `group_cells`
    /// cells, the clearing of its sums recorded into `clear`.
    pub(super) fn for_ingest(
        gpu: &Gpu,
        options: PatternOptions,
        shape: &IngestShape,
        max_rows: usize,
        group_cells: &[usize],
        clear: &mut wgpu::CommandEncoder,
    ) -> Result<PatternPass> {
        PatternPass::new(
            gpu,
            &PatternShape {
                options,
                queries: shape.queries,
                keys: shape.keys,
                position0: shape
                    .options
                    .diagonal
                    .unwrap_or(shape.keys as i64 - shape.queries as i64),
                dtype: shape.dtype,
                causal: shape.options.causal == Causal::On,
                max_rows,
                group_cells,
            },
            clear,
        )
    }

    /// The buffers of the pattern pass of `shape`, the clearing of the pixels' sums and the
    /// profiles recorded into `clear` (for the caller to submit with the other buffers it
    /// clears).
    pub(super) fn new(
        gpu: &Gpu,
        shape: &PatternShape<'_>,
        clear: &mut wgpu::CommandEncoder,
    ) -> Result<PatternPass> {
        let (queries, keys) = (shape.queries, shape.keys);
        let block = block_side(queries, keys);
        let words = profile_words(queries, keys);
        let groups = keys.div_ceil(GROUP_KEYS);
        // (a piece's rows cut in slices of whole block rows, each walked by its own
        // workgroups; a piece of r rows has at most r / slice_rows + 2 of them)
        let mut slice_rows = match gpu.pattern_slice_rows as usize {
            0 => 0,
            n => n.div_ceil(block) * block,
        };
        let pieces = MAX_PIECES.min(shape.max_rows);
        // Scratch: block rows' and diagonals' shares per row of a chunk, 15 tail rows per slot
        // (a piece's, or in slices one per slice: `slot_of` in shaders/pattern.wgsl), and in
        // slices each slot's column masses; where slices would not fit a binding, whole pieces.
        let scratch_words = |slice_rows: usize| {
            let slots = match slice_rows {
                0 => pieces,
                n => shape.max_rows / n + 2 * pieces,
            };
            let col_base = (2 * shape.max_rows + slots * (GROUP_KEYS - 1)) * groups;
            let columns = if slice_rows > 0 { slots * keys } else { 0 };
            (col_base, col_base + columns)
        };
        let max = gpu.max_binding();
        if slice_rows > 0 && (scratch_words(slice_rows).1 * 4) as u64 > max {
            slice_rows = 0;
        }
        let (col_base, scratch_words) = scratch_words(slice_rows);
        // (a piece has at most PATTERN_ROWS rows: the ingest cuts them so with statistics)
        let slices = match slice_rows {
            0 => 1,
            n => shape.max_rows.min(PATTERN_ROWS) / n + 2,
        };
        let head_px = head_pixels(keys) * slices;
        let pixel_chunks = pixel_chunks(head_px);
        let device = &gpu.device;
        let storage = |label, size: u64| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: size.max(16),
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        };
        let scratch_bytes = (scratch_words * 4) as u64;
        let params = PatternParams {
            queries: queries as u32,
            keys: keys as u32,
            sink_keys: shape.options.sink_keys,
            window: shape.options.window,
            block: block as u32,
            blocks_w: keys.div_ceil(block) as u32,
            stride: words as u32,
            causal: shape.causal as u32,
            pixels: head_px as u32,
            pixel_chunks: pixel_chunks as u32,
            diag_rows: shape.max_rows as u32,
            diag_base: (shape.max_rows * groups) as u32,
            slices: slices as u32,
            col_base: col_base as u32,
            position0: i32::try_from(shape.position0).map_err(|_| {
                Error::BadOption(format!(
                    "pattern statistics: row 0 at position {} is past the GPU's 32-bit positions",
                    shape.position0
                ))
            })?,
            _pad: 0,
        };
        if scratch_bytes > max || scratch_words > u32::MAX as usize {
            return Err(Error::BadOption(format!(
                "pattern statistics need {scratch_bytes} bytes of scratch, over the GPU's {max}-byte storage binding"
            )));
        }
        let head_sums = std::mem::size_of::<HeadSums>();
        let (mut pixels, mut partials, mut heads, mut profiles) = (vec![], vec![], vec![], vec![]);
        for &cells in shape.group_cells {
            let bytes = (cells * words * 4) as u64;
            let pixel_bytes = (cells * head_px) as u64 * PIXEL_SUMS_BYTES;
            let need = bytes.max(pixel_bytes);
            if need > max {
                return Err(Error::BadOption(format!(
                    "pattern statistics of {cells} heads need {need} bytes, over the GPU's {max}-byte storage binding: select fewer heads"
                )));
            }
            pixels.push(storage("attnviz.pattern.pixels", pixel_bytes));
            partials.push(storage(
                "attnviz.pattern.partials",
                (cells * pixel_chunks * head_sums) as u64,
            ));
            heads.push(storage("attnviz.pattern.heads", (cells * head_sums) as u64));
            profiles.push(storage("attnviz.pattern.profiles", bytes));
        }
        for b in pixels.iter().chain(&profiles) {
            clear.clear_buffer(b, 0, None);
        }
        Ok(PatternPass {
            params: crate::gpu::storage_buffer_init(
                device,
                "attnviz.pattern.params",
                bytemuck::bytes_of(&params),
                wgpu::BufferUsages::UNIFORM,
            ),
            pixels,
            partials,
            heads,
            profiles,
            scratch: storage("attnviz.pattern.scratch", scratch_bytes),
            head_pixels: head_px,
            rows: shape.max_rows,
            slice_rows: slice_rows as u32,
            slices,
            options: shape.options,
            queries,
            keys,
            position0: shape.position0,
            block,
            dtype: shape.dtype,
        })
    }

    /// The bind group reading rows from `data` (pieces described by `pieces`) into group `g`.
    pub(super) fn bind_group(
        &self,
        gpu: &Gpu,
        pipes: &PatternPipelines,
        pieces: &wgpu::Buffer,
        chunk: &wgpu::TextureView,
        g: usize,
    ) -> wgpu::BindGroup {
        pipes.kernel(&gpu.device).bind_group(
            &gpu.device,
            &[
                pieces.as_entire_binding(),
                wgpu::BindingResource::TextureView(chunk),
                self.params.as_entire_binding(),
                self.partials[g].as_entire_binding(),
                self.heads[g].as_entire_binding(),
                self.profiles[g].as_entire_binding(),
                self.pixels[g].as_entire_binding(),
                self.scratch.as_entire_binding(),
            ],
        )
    }

    /// Records the profile dispatches of `pieces` (their parameters already written).
    pub(super) fn record(
        &self,
        gpu: &Gpu,
        pipes: &PatternPipelines,
        pass: &mut wgpu::ComputePass<'_>,
        pieces: &[Piece],
        bind_group: &wgpu::BindGroup,
    ) {
        let aligned = pieces
            .iter()
            .all(|p| rows_on_words(p.stride, self.dtype, p.offset));
        let profiles = pipes.profiles(&gpu.device, self.dtype, aligned);
        pass.set_bind_group(0, bind_group, &[]);
        pass.set_pipeline(profiles);
        self.dispatch_profiles(gpu, pipes, pass, pieces);
    }

    /// The profile kernel's dispatch of `pieces` (pipeline and bind groups set): a workgroup
    /// per 64 key groups, slice and piece; then the sums of what it left.
    fn dispatch_profiles(
        &self,
        gpu: &Gpu,
        pipes: &PatternPipelines,
        pass: &mut wgpu::ComputePass<'_>,
        pieces: &[Piece],
    ) {
        let groups = self.keys.div_ceil(GROUP_KEYS) as u32;
        pass.dispatch_workgroups(groups.div_ceil(64), self.slices as u32, pieces.len() as u32);
        self.record_sums(gpu, pipes, pass, pieces);
    }

    /// Records the dispatches of `pieces` (their parameters already written) that pool them as
    /// `pool` says and profile them from the same loads, through `bind_groups`: the pattern's,
    /// then the pool pass's buffers for the pieces' accumulator group
    /// ([`PatternPipelines::pooling_kernel`]'s layout).
    pub(super) fn record_pooling(
        &self,
        gpu: &Gpu,
        pipes: &PatternPipelines,
        pass: &mut wgpu::ComputePass<'_>,
        pieces: &[Piece],
        bind_groups: [&wgpu::BindGroup; 2],
        pool: PoolWithProfiles,
    ) {
        pass.set_pipeline(pipes.pooling(&gpu.device, self.dtype, pool));
        pass.set_bind_group(0, bind_groups[0], &[]);
        pass.set_bind_group(1, bind_groups[1], &[]);
        // (whole pieces: `Ingest::pool_with_profiles` pools so only where they are unsliced)
        self.dispatch_profiles(gpu, pipes, pass, pieces);
    }

    /// Records the dispatches that add up what the profile kernel (or `pattern_qk`) left in
    /// `scratch` for `pieces`: block masses and diagonal masses. The pattern bind group is set.
    pub(super) fn record_sums(
        &self,
        gpu: &Gpu,
        pipes: &PatternPipelines,
        pass: &mut wgpu::ComputePass<'_>,
        pieces: &[Piece],
    ) {
        let [blocks, diagonals, columns] = pipes.pipelines(&gpu.device, self.dtype);
        let n = pieces.len() as u32;
        let block_rows = pieces
            .iter()
            .map(|p| (p.row_start + p.rows - 1) / self.block - p.row_start / self.block + 1)
            .max()
            .unwrap_or(0) as u32;
        pass.set_pipeline(blocks);
        pass.dispatch_workgroups(
            self.keys.div_ceil(self.block).div_ceil(64) as u32,
            block_rows,
            n,
        );
        let diags = (self.queries + self.keys - 1) as u32;
        let (x, y) = dispatch_1d(diags, 64, gpu.limits.max_compute_workgroups_per_dimension);
        pass.set_pipeline(diagonals);
        pass.dispatch_workgroups(x, y, n);
        if self.slice_rows > 0 {
            // (pieces written unsliced, `pattern_qk`'s, leave at once)
            pass.set_pipeline(columns);
            pass.dispatch_workgroups(self.keys.div_ceil(64) as u32, 1, n);
        }
    }

    /// Every head's sums, in cell order, once every chunk is pooled: the pixels' sums reduced
    /// per head, then read back with the profiles. `bind_groups`: the ingest's, per group.
    pub(super) fn read(
        &self,
        gpu: &Gpu,
        pipes: &PatternPipelines,
        bind_groups: &[wgpu::BindGroup],
        group_cells: &[usize],
    ) -> Result<Vec<PatternSums>> {
        let pixels = (self.head_pixels > PIXEL_RUN).then(|| pipes.pixels(&gpu.device));
        let heads = pipes.heads(&gpu.device);
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = gpu.compute_pass(&mut encoder, "attnviz.pattern.reduce");
            for (g, &cells) in group_cells.iter().enumerate() {
                pass.set_bind_group(0, &bind_groups[g], &[]);
                // (a head of one run's pixels is summed by `pattern_heads` itself)
                if let Some(pixels) = pixels {
                    pass.set_pipeline(pixels);
                    pass.dispatch_workgroups(
                        pixel_chunks(self.head_pixels) as u32,
                        1,
                        cells as u32,
                    );
                }
                pass.set_pipeline(heads);
                pass.dispatch_workgroups(1, 1, cells as u32);
            }
        }
        gpu.submit([encoder.finish()]);
        let words = profile_words(self.queries, self.keys);
        let mut out = Vec::new();
        for (g, &cells) in group_cells.iter().enumerate() {
            let size = (cells * std::mem::size_of::<HeadSums>()) as u64;
            let heads: Vec<HeadSums> =
                bytemuck::pod_collect_to_vec(&gpu.read_buffer(&self.heads[g], 0, size)?);
            let bytes = gpu.read_buffer(&self.profiles[g], 0, (cells * words * 4) as u64)?;
            let profiles: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
            for (h, p) in heads.iter().zip(profiles.chunks(words)) {
                out.push(self.sums(h, p));
            }
        }
        Ok(out)
    }

    /// A head's sums from its reduced scalars and its profiles. The masses that are sums of
    /// a profile are taken from it, in f64: Σ p is every column's mass, the sink mass the first
    /// `sink_keys` columns', the local mass the diagonals' with |a − k| < window, and Σ p·|a − k|
    /// the diagonals' weighted by |a − k| (each entry is in one column and one diagonal, so these
    /// are the same sums the CPU twin adds entry by entry, grouped differently).
    fn sums(&self, h: &HeadSums, profile: &[f32]) -> PatternSums {
        let mut s = PatternSums::new(self.queries, self.keys).placed(self.position0, 0);
        s.entropy = -(h.p_ln_p as f64 - h.comp as f64);
        s.max = (h.seen != 0).then_some((h.max_v, h.arg_q as usize, h.arg_k as usize));
        s.non_finite = h.bad[0] as u64 | (h.bad[1] as u64) << 32;
        let (k, d) = (self.keys, self.queries + self.keys - 1);
        let wide = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
        s.columns = wide(&profile[..k]);
        s.diagonals = wide(&profile[k..k + d]);
        s.blocks = wide(&profile[k + d..]);
        s.row_sum = s.columns.iter().sum();
        s.sink = s.columns[..(self.options.sink_keys as usize).min(k)]
            .iter()
            .sum();
        let window = self.options.window as i64;
        let zero = s.zero_offset();
        for (i, &m) in s.diagonals.iter().enumerate() {
            // index i is offset a − k = i − zero
            let offset = (i as i64 - zero).abs();
            if offset < window {
                s.local += m;
            }
            s.distance += m * offset as f64;
        }
        s
    }
}

/// Whether every row of a piece starts on a 16-byte word (the profile kernel's `ALIGNED`
/// variant reads it a word at a time): when the row stride (elements of `dtype`) and the
/// piece's byte offset in the chunk both keep to words.
pub(super) fn rows_on_words(stride: usize, dtype: DType, offset: usize) -> bool {
    (stride * dtype.size()).is_multiple_of(16) && offset.is_multiple_of(16)
}
