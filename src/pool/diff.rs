//! `attnviz diff` on the GPU: each block of rows is read from both inputs (each in its own
//! dtype), subtracted on the device by `shaders/diff.wgsl` into an f32 block, and pooled from
//! there as resident rows, so the pool pass, the statistics and every colour option work on
//! differences unchanged. Memory is one block of each input and of the differences.

use bytemuck::{Pod, Zeroable};

use crate::error::Result;
use crate::gpu::kernel::{Binding, Kernel};
use crate::gpu::{buffer, dispatch_1d, shaders, Gpu};
use crate::pool::ingest::{Ingest, IngestShape};
use crate::pool::{PoolPipelines, PoolRun, PooledCells};
use crate::source::{DType, DiffSource};

/// Mirrors `DiffParams` in `shaders/diff.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
struct DiffParams {
    count: u32,
    dtype_a: u32,
    dtype_b: u32,
    _pad: u32,
}

/// The subtraction kernel, compiled on the first `diff`.
pub(crate) struct DiffPipeline {
    kernel: Kernel,
    pipeline: wgpu::ComputePipeline,
}

impl DiffPipeline {
    pub(crate) fn new(device: &wgpu::Device) -> DiffPipeline {
        use Binding::*;
        // params, A's block, B's block, differences
        let kernel = Kernel::compute(
            device,
            "attnviz.diff",
            shaders::DIFF,
            &[Uniform, BufReadOnly, BufReadOnly, Buffer],
        );
        DiffPipeline {
            pipeline: kernel.pipeline(device, "diff"),
            kernel,
        }
    }
}

/// The device buffers of one block: both inputs as read, and their difference.
struct Block {
    params: wgpu::Buffer,
    a: wgpu::Buffer,
    b: wgpu::Buffer,
    out: wgpu::Buffer,
    bind_group: wgpu::BindGroup,
}

impl Block {
    fn new(gpu: &Gpu, pipe: &DiffPipeline, elems: usize, diff: &DiffSource<'_>) -> Block {
        let device = &gpu.device;
        let storage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST;
        // bound sizes: whole 16-byte words (the pool pass reads its copy of `out` 16 bytes at a time)
        let bytes = |d: DType| ((elems * d.size()).next_multiple_of(16)) as u64;
        let params = buffer(
            device,
            "attnviz.diff.params",
            std::mem::size_of::<DiffParams>() as u64,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        );
        let a = buffer(device, "attnviz.diff.a", bytes(diff.a().dtype()), storage);
        let b = buffer(device, "attnviz.diff.b", bytes(diff.b().dtype()), storage);
        let out = buffer(
            device,
            "attnviz.diff.out",
            bytes(DType::F32),
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        );
        let bind_group = pipe.kernel.bind_group(
            device,
            &[&params, &a, &b, &out].map(|b| b.as_entire_binding()),
        );
        Block {
            params,
            a,
            b,
            out,
            bind_group,
        }
    }
}

/// Pools `run.cells` of `A − B` into accumulators: [`crate::pool::pool_cells`] for a
/// [`DiffSource`], with the subtraction on the device.
pub(crate) fn pool_diff(
    gpu: &Gpu,
    pipes: &PoolPipelines,
    diff: &DiffSource<'_>,
    run: &PoolRun<'_>,
) -> Result<PooledCells> {
    gpu.scoped("pooling a difference", || {
        let s = diff.a().shape();
        let shape = IngestShape {
            cells: run.cells.len(),
            queries: s.queries,
            keys: s.keys,
            dtype: DType::F32,
            geometry: run.geometry,
            options: run.options.settled_for(diff, run.cells)?,
            chunk_target: run.chunk_bytes,
        };
        let mut ingest = Ingest::with_patterns(gpu, pipes, shape, run.patterns)?;
        ingest.set_pooled(run.pooled);
        let step = ingest.max_rows_per_fill().min(s.queries).max(1);
        let pipe = pipes.diff(&gpu.device);
        let block = Block::new(gpu, pipe, step * s.keys, diff);
        let (da, db) = (diff.a().dtype(), diff.b().dtype());
        let total = (run.cells.len() * s.queries * s.keys * (da.size() + db.size())) as u64;
        let mut host_a = Vec::new();
        let mut host_b = Vec::new();
        let mut consumed = 0u64;
        for (i, &(layer, head)) in run.cells.iter().enumerate() {
            let mut row = 0;
            while row < s.queries {
                let n = step.min(s.queries - row);
                let elems = n * s.keys;
                for (src, host, buf) in [
                    (diff.a(), &mut host_a, &block.a),
                    (diff.b(), &mut host_b, &block.b),
                ] {
                    let len = elems * src.dtype().size();
                    // `write_buffer` takes whole 4-byte words
                    host.resize(len.next_multiple_of(4), 0);
                    src.read_rows(layer, head, row, &mut host[..len])?;
                    gpu.queue.write_buffer(buf, 0, host);
                    consumed += len as u64;
                }
                let params = DiffParams {
                    count: elems as u32,
                    dtype_a: da.shader_id(),
                    dtype_b: db.shader_id(),
                    _pad: 0,
                };
                gpu.queue
                    .write_buffer(&block.params, 0, bytemuck::bytes_of(&params));
                subtract(gpu, pipe, &block, elems as u32);
                ingest.pool_resident(i, row, n, &block.out, 0)?;
                row += n;
                if let Some(p) = run.progress {
                    p(consumed, total);
                }
            }
        }
        ingest.finish()
    })
}

/// Records and submits the subtraction of one block; the pool dispatch that reads `out` is
/// submitted after it, on the same queue.
fn subtract(gpu: &Gpu, pipe: &DiffPipeline, block: &Block, elems: u32) {
    let mut encoder = gpu
        .device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("attnviz.diff.encoder"),
        });
    {
        let mut pass = gpu.compute_pass(&mut encoder, "attnviz.diff.pass");
        pass.set_pipeline(&pipe.pipeline);
        pass.set_bind_group(0, &block.bind_group, &[]);
        let (x, y) = dispatch_1d(elems, 256, gpu.limits.max_compute_workgroups_per_dimension);
        pass.dispatch_workgroups(x, y, 1);
    }
    gpu.submit([encoder.finish()]);
}
