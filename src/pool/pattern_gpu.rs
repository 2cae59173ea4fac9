//! The pattern statistics on the GPU (`shaders/pattern.wgsl`): recorded right after each pool
//! dispatch on the same bound chunk, so asking for them adds GPU work but no read of the input;
//! an ingest without them records nothing and builds no pipeline.
//!
//! Memory per head: K column masses, Q + K − 1 diagonal masses and at most
//! [`super::pattern::MAX_BLOCKS`] block masses (f32), plus 64 bytes of scalars; a scratch of
//! 32 bytes per row of one chunk.
//!
//! Precision: row sums are f32 over one row (64 strided partials, then a tree), added into each
//! head's scalars with Kahan compensation; column, diagonal and block masses are f32 sums over
//! the rows of one piece (at most [`PATTERN_ROWS`]) added into f32 totals. Against the f64 CPU
//! twin that is a relative error of about 1e-6 on the scalars and 1e-5 on the profiles for the
//! sizes the tests use (n·ε with n the rows of a head).

use std::sync::OnceLock;

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::kernel::{Binding, Kernel};
use crate::gpu::{dispatch_1d, shaders, Gpu};
use crate::pool::ingest::{IngestShape, Piece};
use crate::pool::options::Causal;
use crate::pool::pattern::{block_side, PatternOptions, PatternSums};
use crate::pool::LOOP_BUDGET;
use crate::source::DType;

/// Rows of one head per dispatch at most when pattern statistics are on: bounds the fold's and
/// the diagonals' loops (and, divided by the keys per invocation, the columns').
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
}

/// Mirrors `RowSums` in `shaders/pattern.wgsl`.
const ROW_SUMS_BYTES: u64 = 32;

/// Mirrors `HeadSums` in `shaders/pattern.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
struct HeadSums {
    sums: [f32; 5],
    comp: [f32; 5],
    max_v: f32,
    arg_q: u32,
    arg_k: u32,
    seen: u32,
    bad: [u32; 2],
}

/// The pattern pipelines: compiled on the first ingest that asks for statistics.
#[derive(Default)]
pub(crate) struct PatternPipelines {
    kernel: OnceLock<Kernel>,
    /// rows (a workgroup per row), fold, columns, diagonals, rows (an invocation per row); per
    /// `DType::shader_id`.
    per_dtype: [OnceLock<[wgpu::ComputePipeline; 5]>; 3],
}

impl PatternPipelines {
    fn kernel(&self, device: &wgpu::Device) -> &Kernel {
        use Binding::*;
        // pieces, rows of the chunk, params, row scratch, head scalars, profiles
        self.kernel.get_or_init(|| {
            Kernel::compute(
                device,
                "attnviz.pattern",
                shaders::PATTERN,
                &[Uniform, BufReadOnly, Uniform, Buffer, Buffer, Buffer],
            )
        })
    }

    fn pipelines(&self, device: &wgpu::Device, dtype: DType) -> &[wgpu::ComputePipeline; 5] {
        let id = dtype.shader_id();
        self.per_dtype[id as usize].get_or_init(|| {
            let constants = [("DTYPE", id as f64)];
            let kernel = self.kernel(device);
            [
                "pattern_rows",
                "pattern_fold",
                "pattern_columns",
                "pattern_diagonals",
                "pattern_rows_narrow",
            ]
            .map(|entry| kernel.specialized(device, entry, &constants))
        })
    }
}

/// f32 words per head in the profiles buffer: columns, diagonals, blocks.
pub(super) fn profile_words(queries: usize, keys: usize) -> usize {
    let block = block_side(queries, keys);
    keys + queries + keys - 1 + queries.div_ceil(block) * keys.div_ceil(block)
}

/// Bytes of one head's pattern buffers, for sizing accumulator groups.
pub(super) fn head_bytes(queries: usize, keys: usize) -> u64 {
    (profile_words(queries, keys) * 4) as u64
}

/// One ingest's pattern buffers: the parameters, the row scratch, and per accumulator group
/// the head scalars and profiles (cleared on creation).
pub(super) struct PatternPass {
    params: wgpu::Buffer,
    rows: wgpu::Buffer,
    heads: Vec<wgpu::Buffer>,
    profiles: Vec<wgpu::Buffer>,
    queries: usize,
    keys: usize,
    block: usize,
    dtype: DType,
}

/// What a [`PatternPass`] is made for.
pub(super) struct PatternShape<'a> {
    pub(super) options: PatternOptions,
    pub(super) queries: usize,
    pub(super) keys: usize,
    pub(super) dtype: DType,
    /// Entries above the diagonal are masked (the piece's diagonal, as the pool pass's).
    pub(super) causal: bool,
    /// Rows of one chunk at most.
    pub(super) max_rows: usize,
    /// Cells of each accumulator group.
    pub(super) group_cells: &'a [usize],
}

impl PatternPass {
    /// The pattern pass of an ingest of `shape` whose chunks hold `max_rows` rows at most and
    /// whose accumulator groups hold `group_cells` cells.
    pub(super) fn for_ingest(
        gpu: &Gpu,
        options: PatternOptions,
        shape: &IngestShape,
        max_rows: usize,
        group_cells: &[usize],
    ) -> Result<PatternPass> {
        PatternPass::new(
            gpu,
            &PatternShape {
                options,
                queries: shape.queries,
                keys: shape.keys,
                dtype: shape.dtype,
                causal: shape.options.causal == Causal::On,
                max_rows,
                group_cells,
            },
        )
    }

    pub(super) fn new(gpu: &Gpu, shape: &PatternShape<'_>) -> Result<PatternPass> {
        let (queries, keys) = (shape.queries, shape.keys);
        let block = block_side(queries, keys);
        let words = profile_words(queries, keys);
        let params = PatternParams {
            queries: queries as u32,
            keys: keys as u32,
            sink_keys: shape.options.sink_keys,
            window: shape.options.window,
            block: block as u32,
            blocks_w: keys.div_ceil(block) as u32,
            stride: words as u32,
            causal: shape.causal as u32,
        };
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
        let max = gpu.max_binding();
        let rows_bytes = shape.max_rows as u64 * ROW_SUMS_BYTES;
        let mut heads = Vec::new();
        let mut profiles = Vec::new();
        for &cells in shape.group_cells {
            let bytes = (cells * words * 4) as u64;
            if bytes > max || rows_bytes > max {
                return Err(Error::BadOption(format!(
                    "pattern statistics of {cells} heads need {bytes} bytes, over the GPU's {max}-byte storage binding: select fewer heads"
                )));
            }
            heads.push(storage(
                "attnviz.pattern.heads",
                (cells * std::mem::size_of::<HeadSums>()) as u64,
            ));
            profiles.push(storage("attnviz.pattern.profiles", bytes));
        }
        let mut encoder = device.create_command_encoder(&Default::default());
        for b in heads.iter().chain(&profiles) {
            encoder.clear_buffer(b, 0, None);
        }
        gpu.queue.submit([encoder.finish()]);
        Ok(PatternPass {
            params: crate::gpu::storage_buffer_init(
                device,
                "attnviz.pattern.params",
                bytemuck::bytes_of(&params),
                wgpu::BufferUsages::UNIFORM,
            ),
            rows: storage("attnviz.pattern.rows", rows_bytes),
            heads,
            profiles,
            queries,
            keys,
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
        data: &wgpu::Buffer,
        g: usize,
    ) -> wgpu::BindGroup {
        let bound = [
            pieces,
            data,
            &self.params,
            &self.rows,
            &self.heads[g],
            &self.profiles[g],
        ];
        pipes
            .kernel(&gpu.device)
            .bind_group(&gpu.device, &bound.map(|b| b.as_entire_binding()))
    }

    /// Records the four pattern dispatches of `pieces` (their parameters already written).
    pub(super) fn record(
        &self,
        gpu: &Gpu,
        pipes: &PatternPipelines,
        pass: &mut wgpu::ComputePass<'_>,
        pieces: &[Piece],
        bind_group: &wgpu::BindGroup,
    ) {
        let [rows, fold, columns, diagonals, narrow] = pipes.pipelines(&gpu.device, self.dtype);
        let n = pieces.len() as u32;
        let max_rows = pieces.iter().map(|p| p.rows).max().unwrap_or(0) as u32;
        pass.set_bind_group(0, bind_group, &[]);
        // A row's words, plus one for a row that starts mid-word.
        let words = self.keys.div_ceil(16 / self.dtype.size()) + 1;
        if words <= LOOP_BUDGET {
            pass.set_pipeline(narrow);
            pass.dispatch_workgroups(max_rows.div_ceil(64), 1, n);
        } else {
            pass.set_pipeline(rows);
            pass.dispatch_workgroups(max_rows, 1, n);
        }
        pass.set_pipeline(fold);
        pass.dispatch_workgroups(1, 1, n);
        pass.set_pipeline(columns);
        pass.dispatch_workgroups(self.keys.div_ceil(self.block) as u32, 1, n);
        let diags = (self.queries + self.keys - 1) as u32;
        let (x, y) = dispatch_1d(diags, 64, gpu.limits.max_compute_workgroups_per_dimension);
        pass.set_pipeline(diagonals);
        pass.dispatch_workgroups(x, y, n);
    }

    /// Every head's sums, in cell order.
    pub(super) fn read(&self, gpu: &Gpu, group_cells: &[usize]) -> Result<Vec<PatternSums>> {
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

    fn sums(&self, h: &HeadSums, profile: &[f32]) -> PatternSums {
        let mut s = PatternSums::new(self.queries, self.keys);
        let total = |i: usize| h.sums[i] as f64 - h.comp[i] as f64;
        s.row_sum = total(0);
        s.sink = total(1);
        s.local = total(2);
        s.entropy = total(3);
        s.distance = total(4);
        s.max = (h.seen != 0).then_some((h.max_v, h.arg_q as usize, h.arg_k as usize));
        s.non_finite = h.bad[0] as u64 | (h.bad[1] as u64) << 32;
        let (k, d) = (self.keys, self.queries + self.keys - 1);
        let wide = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
        s.columns = wide(&profile[..k]);
        s.diagonals = wide(&profile[k..k + d]);
        s.blocks = wide(&profile[k + d..]);
        s
    }
}
