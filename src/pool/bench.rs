//! Probes for `attnviz bench`: the upload ceiling and the GPU-side pooling throughput, each
//! measured with the ingest's own machinery, and the adapter's f32 FMA rate, the ceiling of the
//! Q/K kernels.

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::pool::chunk::ChunkTexture;
use crate::pool::geometry::CellGeometry;
use crate::pool::ingest::{Ingest, IngestShape};
use crate::pool::options::PoolOptions;
use crate::pool::pipelines::PoolPipelines;
use crate::pool::slots::{Slot, SLOT_USAGE};
use crate::pool::{CHUNK_TARGET, UPLOAD_CHUNK_TARGET};
use crate::source::DType;

/// Moves bytes from host memory into the chunk texture the pool pass reads, through the same
/// double-buffered mapped slots and device-side copy the ingest uses, with no pooling: the
/// upload ceiling of the engine on this adapter. The slots are made once, as an ingest reuses
/// them, so a run times the steady state rather than the first map's zero-fill.
pub struct UploadBench {
    pub(super) chunk: usize,
    pub(super) slots: Vec<Slot>,
    pub(super) texture: ChunkTexture,
    pub(super) host: Vec<u8>,
}

impl UploadBench {
    pub fn new(gpu: &Gpu) -> UploadBench {
        let chunk = gpu.max_binding().min(UPLOAD_CHUNK_TARGET) as usize / 16 * 16;
        UploadBench {
            chunk,
            slots: (0..2)
                .map(|_| Slot::new(gpu, chunk as u64, SLOT_USAGE))
                .collect(),
            texture: ChunkTexture::new(gpu, chunk as u64),
            host: vec![0x3c; chunk],
        }
    }

    /// Uploads `total` bytes and waits for the GPU.
    pub fn run(&mut self, gpu: &Gpu, total: u64) -> Result<()> {
        let mut sent = 0u64;
        let mut i = 0;
        while sent < total {
            let slot = &mut self.slots[i % 2];
            slot.wait_mapped(gpu)?;
            let n = self.chunk.min((total - sent) as usize);
            {
                let mut view = slot
                    .host
                    .get_mapped_range_mut(..n as u64)
                    .map_err(|e| Error::Gpu(format!("mapping an upload buffer: {e}")))?;
                view.slice(..).copy_from_slice(&self.host[..n]);
            }
            slot.host.unmap();
            let mut encoder = gpu.device.create_command_encoder(&Default::default());
            self.texture
                .copy_from(&mut encoder, &slot.host, 0, n.next_multiple_of(16) as u64);
            let submission = gpu.submit([encoder.finish()]);
            slot.remap(submission);
            sent += n as u64;
            i += 1;
        }
        gpu.wait()
    }
}

/// Seconds to pool `cells` heads of `queries` × `keys` f32 entries that are already in device
/// memory (one buffer of a chunk's rows, pooled again for every block): the GPU-side pooling
/// throughput, without the host-to-device copy that bounds [`pool_cells`] on discrete GPUs.
pub(crate) fn resident_pool_seconds(
    gpu: &Gpu,
    pipes: &PoolPipelines,
    cells: usize,
    queries: usize,
    keys: usize,
    geometry: CellGeometry,
) -> Result<f64> {
    let mut ingest = Ingest::new(
        gpu,
        pipes,
        IngestShape {
            cells,
            queries,
            keys,
            dtype: DType::F32,
            geometry,
            options: PoolOptions::default(),
            chunk_target: CHUNK_TARGET,
        },
    )?;
    let step = ingest.max_rows_per_fill();
    let data = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("attnviz.bench.resident_rows"),
        size: ((step * keys * 4) as u64).next_multiple_of(16),
        usage: wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    gpu.wait()?;
    let start = std::time::Instant::now();
    for cell in 0..cells {
        for row in (0..queries).step_by(step) {
            ingest.pool_resident(cell, row, step.min(queries - row), &data, 0)?;
        }
    }
    gpu.wait()?;
    Ok(start.elapsed().as_secs_f64())
}

/// The adapter's f32 FMA rate (shaders/fma_probe.wgsl): dispatches of independent FMA chains,
/// grown until one takes a quarter of a second, so a software adapter and an H200 are both
/// measured at full occupancy and in a few seconds.
pub struct FmaProbe {
    kernel: crate::gpu::kernel::Kernel,
    pipeline: wgpu::ComputePipeline,
    params: wgpu::Buffer,
}

/// Rounds of the probe's loop per invocation: far from llvmpipe's 65535-iteration stop.
const FMA_ROUNDS: u32 = 2048;
/// Scalar FMAs per round (3 vec4 chains, 8 steps).
const FMAS_PER_ROUND: u64 = 96;

impl FmaProbe {
    pub fn new(gpu: &Gpu) -> FmaProbe {
        use crate::gpu::kernel::{Binding, Kernel};
        let kernel = Kernel::compute(
            &gpu.device,
            "attnviz.fma_probe",
            crate::gpu::shaders::FMA_PROBE,
            &[Binding::Uniform, Binding::Buffer],
        );
        let params = crate::gpu::buffer(
            &gpu.device,
            "attnviz.fma_probe.params",
            16,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        );
        gpu.queue
            .write_buffer(&params, 0, bytemuck::cast_slice(&[FMA_ROUNDS, 0, 0, 0]));
        FmaProbe {
            pipeline: kernel.pipeline(&gpu.device, "fma_probe"),
            kernel,
            params,
        }
    }

    /// Seconds of one dispatch of `groups` workgroups (x by y), waited for.
    fn time(&self, gpu: &Gpu, groups: (u32, u32), sink: &wgpu::Buffer) -> Result<f64> {
        let bind = self.kernel.bind_group(
            &gpu.device,
            &[self.params.as_entire_binding(), sink.as_entire_binding()],
        );
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = gpu.compute_pass(&mut encoder, "attnviz.fma_probe");
            pass.set_pipeline(&self.pipeline);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(groups.0, groups.1, 1);
        }
        let start = std::time::Instant::now();
        gpu.submit([encoder.finish()]);
        gpu.wait()?;
        Ok(start.elapsed().as_secs_f64())
    }

    /// The best FMA rate of a few dispatches, in GFLOP/s (2 flops per FMA).
    pub fn gflops(&self, gpu: &Gpu) -> Result<f64> {
        let max_x = gpu.limits.max_compute_workgroups_per_dimension;
        let mut groups: u64 = 16;
        loop {
            let (x, y) = crate::gpu::dispatch_1d(groups as u32 * 64, 64, max_x);
            let invocations = u64::from(x) * u64::from(y) * 64;
            let sink = crate::gpu::buffer(
                &gpu.device,
                "attnviz.fma_probe.sink",
                invocations * 4,
                wgpu::BufferUsages::STORAGE,
            );
            let t = self.time(gpu, (x, y), &sink)?;
            let limit = gpu.max_binding() / 4 / 64 / 2;
            if t >= 0.25 || groups * 2 > limit {
                let best = (0..2).try_fold(t, |best, _| {
                    self.time(gpu, (x, y), &sink).map(|t| best.min(t))
                })?;
                let fmas = invocations * u64::from(FMA_ROUNDS) * FMAS_PER_ROUND;
                return Ok(2.0 * fmas as f64 / best / 1e9);
            }
            groups *= 2;
        }
    }
}
