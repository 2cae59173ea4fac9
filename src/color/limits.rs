//! The GPU half of colour limits (`shaders/limits.wgsl`): per-cell ranges that leave excluded
//! key columns out, and per-cell histograms for percentile clipping, both over the resident
//! pooled accumulators. The percentiles themselves are read off the counts by
//! [`crate::color::scale::percentile_range`], shared with the CPU reference.

use std::sync::OnceLock;

use bytemuck::{Pod, Zeroable};

use crate::color::scale::BINS;
use crate::error::Result;
use crate::gpu::kernel::{Binding, Kernel};
use crate::gpu::shaders;
use crate::gpu::{buffer, dispatch_1d, storage_buffer_init, Gpu};
use crate::pool::accum::{AccumLayout, HeadStats, Reduce};
use crate::pool::{PerLayout, PooledCells};

/// Mirrors `LimitParams` in `shaders/limits.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
struct LimitParams {
    pixels_per_head: u32,
    first_head: u32,
    pooled_w: u32,
    first_column: u32,
    reduce: u32,
    _pad: [u32; 3],
}

/// Mirrors `CellRange` in `shaders/limits.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
struct CellRange {
    max_key: u32,
    min_key_inv: u32,
    count_lo: u32,
    count_hi: u32,
}

/// Pixels each invocation reads (`PER_INVOCATION` in `shaders/limits.wgsl`).
const PER_INVOCATION: u32 = 16;

/// f32 to a u32 that orders like the float; the twin of `key` in the shader (the tests check
/// that [`key_float`] inverts it).
#[cfg(test)]
fn float_key(v: f32) -> u32 {
    let b = v.to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// The inverse of [`float_key`].
fn key_float(k: u32) -> f32 {
    f32::from_bits(if k & 0x8000_0000 != 0 {
        k & 0x7fff_ffff
    } else {
        !k
    })
}

/// The limits pipelines, compiled on first use: only `--exclude-keys` and `--clip` run them,
/// so a plain render never pays for their shader.
#[derive(Default)]
pub(crate) struct LimitsPipeline {
    built: OnceLock<Compiled>,
}

struct Compiled {
    kernel: Kernel,
    /// `cell_range` and `histogram`, for each accumulator layout.
    range: PerLayout,
    histogram: PerLayout,
}

impl Compiled {
    fn pipeline(
        &self,
        device: &wgpu::Device,
        job: &Job<'_>,
        layout: AccumLayout,
    ) -> &wgpu::ComputePipeline {
        let entry = match job {
            Job::Ranges => &self.range,
            Job::Histograms(_) => &self.histogram,
        };
        entry.get(&self.kernel, device, layout)
    }
}

impl LimitsPipeline {
    fn get(&self, device: &wgpu::Device) -> &Compiled {
        self.built.get_or_init(|| {
            use Binding::*;
            let kernel = Kernel::compute(
                device,
                "attnviz.limits",
                shaders::LIMITS,
                &[Uniform, BufReadOnly, BufReadOnly, Buffer, Buffer],
            );
            Compiled {
                range: PerLayout::new("cell_range"),
                histogram: PerLayout::new("histogram"),
                kernel,
            }
        })
    }
}

/// What to compute: restricted ranges, or histograms binned over `hist_ranges` (one per cell).
enum Job<'a> {
    Ranges,
    Histograms(&'a [[f32; 2]]),
}

/// The buffers one limits job binds besides the accumulators: its output, and the histogram
/// ranges (a stand-in takes the place of whichever output the job does not write).
struct JobBuffers {
    hist_ranges: wgpu::Buffer,
    out: wgpu::Buffer,
    out_size: u64,
    stand_in: wgpu::Buffer,
}

impl JobBuffers {
    fn new(gpu: &Gpu, cells: usize, job: &Job<'_>) -> JobBuffers {
        let device = &gpu.device;
        let hist_ranges: Vec<[f32; 2]> = match job {
            Job::Histograms(r) => r.to_vec(),
            Job::Ranges => vec![[0.0; 2]; cells],
        };
        let out_size = match job {
            Job::Ranges => (cells * std::mem::size_of::<CellRange>()) as u64,
            Job::Histograms(_) => (cells * BINS * 4) as u64,
        };
        JobBuffers {
            hist_ranges: storage_buffer_init(
                device,
                "attnviz.limits.hist_ranges",
                bytemuck::cast_slice(&hist_ranges),
                wgpu::BufferUsages::empty(),
            ),
            // zero-filled by wgpu: the histogram starts empty
            out: buffer(
                device,
                "attnviz.limits.out",
                out_size,
                wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            ),
            out_size,
            stand_in: buffer(
                device,
                "attnviz.limits.unused",
                16,
                wgpu::BufferUsages::STORAGE,
            ),
        }
    }

    /// (ranges out, histograms out) as `job` binds them.
    fn outputs(&self, job: &Job<'_>) -> (&wgpu::Buffer, &wgpu::Buffer) {
        match job {
            Job::Ranges => (&self.out, &self.stand_in),
            Job::Histograms(_) => (&self.stand_in, &self.out),
        }
    }
}

fn run(
    gpu: &Gpu,
    pipe: &LimitsPipeline,
    pooled: &PooledCells,
    first_column: u32,
    reduce: Reduce,
    job: Job<'_>,
) -> Result<Vec<u8>> {
    gpu.scoped("colour limits", || {
        let device = &gpu.device;
        let pipe = pipe.get(device);
        let px = pooled.geometry.pooled_pixels() as u32;
        let buffers = JobBuffers::new(gpu, pooled.cells().max(1), &job);
        let (ranges_out, hist) = buffers.outputs(&job);
        let pipeline = pipe.pipeline(device, &job, pooled.layout());
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("attnviz.limits.encoder"),
        });
        let mut keep = Vec::new();
        for g in &pooled.groups {
            let params = LimitParams {
                pixels_per_head: px,
                first_head: g.first_cell as u32,
                pooled_w: pooled.geometry.pooled_w,
                first_column,
                reduce: reduce.shader_id(),
                _pad: [0; 3],
            };
            let params = storage_buffer_init(
                device,
                "attnviz.limits.params",
                bytemuck::bytes_of(&params),
                wgpu::BufferUsages::UNIFORM,
            );
            let bound = [&params, &g.accum, &buffers.hist_ranges, ranges_out, hist];
            let bg = pipe
                .kernel
                .bind_group(device, &bound.map(|b| b.as_entire_binding()));
            let mut pass = gpu.compute_pass(&mut encoder, "attnviz.limits.pass");
            let (x, z) = dispatch_1d(
                px,
                256 * PER_INVOCATION,
                gpu.limits.max_compute_workgroups_per_dimension,
            );
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, &bg, &[]);
            pass.dispatch_workgroups(x, g.cells as u32, z);
            drop(pass);
            keep.push(params);
        }
        gpu.submit([encoder.finish()]);
        gpu.read_buffer(&buffers.out, 0, buffers.out_size)
    })
}

/// Each cell's statistics over the pooled columns from `first_column` on (min of the min pool,
/// max of the max pool, count), as [`HeadStats`] for [`crate::color::norm::color_ranges`].
pub(crate) fn cell_ranges(
    gpu: &Gpu,
    pipe: &LimitsPipeline,
    pooled: &PooledCells,
    first_column: u32,
) -> Result<Vec<HeadStats>> {
    let bytes = run(gpu, pipe, pooled, first_column, Reduce::Max, Job::Ranges)?;
    let ranges: Vec<CellRange> = bytemuck::pod_collect_to_vec(&bytes);
    Ok(ranges
        .iter()
        .take(pooled.cells())
        .map(|r| {
            let count = r.count_lo as u64 | (r.count_hi as u64) << 32;
            if count == 0 {
                return HeadStats::EMPTY;
            }
            HeadStats {
                min: key_float(!r.min_key_inv),
                max: key_float(r.max_key),
                count,
                ..HeadStats::EMPTY
            }
        })
        .collect())
}

/// Per cell: counts of its reduced pooled values in [`BINS`] bins over `ranges[cell]`, columns
/// before `first_column` left out.
pub(crate) fn histograms(
    gpu: &Gpu,
    pipe: &LimitsPipeline,
    pooled: &PooledCells,
    first_column: u32,
    reduce: Reduce,
    ranges: &[[f32; 2]],
) -> Result<Vec<Vec<u32>>> {
    let params: Vec<[f32; 2]> = ranges
        .iter()
        .map(|&r| crate::color::scale::hist_params(r))
        .collect();
    let bytes = run(
        gpu,
        pipe,
        pooled,
        first_column,
        reduce,
        Job::Histograms(&params),
    )?;
    let counts: Vec<u32> = bytemuck::pod_collect_to_vec(&bytes);
    Ok(counts
        .chunks(BINS)
        .take(pooled.cells())
        .map(<[u32]>::to_vec)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_keys_order_like_floats() {
        let v = [
            -f32::MAX,
            -2.5,
            -1e-30,
            -0.0,
            0.0,
            1e-30,
            0.5,
            3.0,
            f32::MAX,
        ];
        for w in v.windows(2) {
            assert!(float_key(w[0]) <= float_key(w[1]), "{w:?}");
        }
        for x in v {
            assert_eq!(key_float(float_key(x)).to_bits(), x.to_bits());
        }
    }

    #[test]
    fn layouts_match_the_shader() {
        assert_eq!(std::mem::size_of::<LimitParams>(), 32);
        assert_eq!(std::mem::size_of::<CellRange>(), 16);
    }
}
