//! `attnviz bench --only coop`: the rate of 16 × 16 × 16 cooperative-matrix multiply-adds
//! with f16 inputs and f32 accumulators (`shaders/coop_probe.wgsl`), on a device that
//! [`Gpu::with_cooperative_matrices`] opened. It is the ceiling a Q/K score kernel on tensor
//! cores would work against, measured before such a kernel exists, next to the f32 FMA rate
//! (`FmaProbe`) that the portable kernels work against. Every run checks its tiles against
//! the exact product first: a rate from a kernel that computes something else is no rate.

use half::f16;

use crate::error::{Error, Result};
use crate::gpu::kernel::{Binding, Kernel};
use crate::gpu::Gpu;

/// Tile slots the subgroups store into (workgroup x into slot x % TILE_SLOTS): bounds the
/// output however many workgroups a run dispatches. Mirrors `TILE_SLOTS` in the shader.
const TILE_SLOTS: u64 = 64;
/// f32 words of one 16 × 16 tile.
const TILE_WORDS: u64 = 256;
/// Multiply-adds per subgroup in the first timed dispatch, and the most (dispatches grow in
/// workgroups first, then in these): the exact product times the most stays below 2^24
/// (|A·B| ≤ 16 · 3 · 2 = 96), so every accumulator is exact in f32.
const ITERATIONS: u32 = 1024;
const MAX_ITERATIONS: u32 = 1 << 16;

/// Keep in sync with `CoopParams` in shaders/coop_probe.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct CoopParams {
    iterations: u32,
    _pad: [u32; 3],
}

/// A and B: small integers (−3 ..= 3 and −2 ..= 2), exact in f16, neither symmetric (a
/// transposed load would give another product), row-major 16 × 16.
pub fn operands() -> ([f32; 256], [f32; 256]) {
    let mut a = [0.0f32; 256];
    let mut b = [0.0f32; 256];
    for i in 0..16 {
        for j in 0..16 {
            a[i * 16 + j] = ((i * 3 + j * 5) % 7) as f32 - 3.0;
            b[i * 16 + j] = ((i * 7 + j * 11) % 5) as f32 - 2.0;
        }
    }
    (a, b)
}

/// `iterations` · A·B, computed in f64 (exact: small integers): what every stored tile must
/// hold, bit for bit.
pub fn expected(iterations: u32) -> [f32; 256] {
    let (a, b) = operands();
    let mut c = [0.0f32; 256];
    for i in 0..16 {
        for j in 0..16 {
            let dot: f64 = (0..16)
                .map(|k| f64::from(a[i * 16 + k]) * f64::from(b[k * 16 + j]))
                .sum();
            c[i * 16 + j] = (dot * f64::from(iterations)) as f32;
        }
    }
    c
}

/// What the probe measured.
pub struct CoopRate {
    /// Multiply-add rate in TFLOP/s (2 · 16³ flops per multiply-add).
    pub tflops: f64,
    /// Subgroups per 64-invocation workgroup, as the device reported them.
    pub subgroups: u32,
}

/// The probe's pipeline, the buffers every run shares and their bind group.
pub struct CoopProbe {
    pipeline: wgpu::ComputePipeline,
    params: wgpu::Buffer,
    tiles: wgpu::Buffer,
    subgroups: wgpu::Buffer,
    bind_group: wgpu::BindGroup,
}

impl CoopProbe {
    /// On `gpu`, a device from [`Gpu::with_cooperative_matrices`].
    pub fn new(gpu: &Gpu) -> CoopProbe {
        let device = &gpu.device;
        let kernel = Kernel::compute(
            device,
            "attnviz.coop_probe",
            crate::gpu::shaders::COOP_PROBE,
            &[
                Binding::Uniform,
                Binding::BufReadOnly,
                Binding::BufReadOnly,
                Binding::BufReadOnly,
                Binding::Buffer,
                Binding::Buffer,
            ],
        );
        let (a, b) = operands();
        let halves = |m: &[f32; 256]| -> Vec<f16> { m.iter().map(|&x| f16::from_f32(x)).collect() };
        let storage = wgpu::BufferUsages::STORAGE;
        let init = |label: &str, bytes: &[u8]| {
            crate::gpu::storage_buffer_init(device, label, bytes, wgpu::BufferUsages::empty())
        };
        // (the subgroup count of a 64-invocation workgroup is at most 64: tiles for 64 slots
        // of that many subgroups)
        let tiles_bytes = TILE_SLOTS * 64 * TILE_WORDS * 4;
        let params = crate::gpu::buffer(
            device,
            "attnviz.coop_probe.params",
            std::mem::size_of::<CoopParams>() as u64,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        );
        let a = init("attnviz.coop_probe.a", bytemuck::cast_slice(&halves(&a)));
        let b = init("attnviz.coop_probe.b", bytemuck::cast_slice(&halves(&b)));
        let zeros = crate::gpu::buffer(device, "attnviz.coop_probe.zeros", TILE_WORDS * 4, storage);
        let tiles = crate::gpu::buffer(
            device,
            "attnviz.coop_probe.tiles",
            tiles_bytes,
            storage | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        );
        let subgroups = crate::gpu::buffer(
            device,
            "attnviz.coop_probe.subgroups",
            16,
            storage | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        );
        let bind_group = kernel.bind_group(
            device,
            &[
                params.as_entire_binding(),
                a.as_entire_binding(),
                b.as_entire_binding(),
                zeros.as_entire_binding(),
                tiles.as_entire_binding(),
                subgroups.as_entire_binding(),
            ],
        );
        CoopProbe {
            pipeline: kernel.pipeline(device, "coop_probe"),
            params,
            tiles,
            subgroups,
            bind_group,
        }
    }

    /// One dispatch of `groups` workgroups, `iterations` multiply-adds per subgroup: its
    /// seconds (submitted to done) and the subgroups of a workgroup; every tile it stored is
    /// checked against [`expected`].
    fn run(&self, gpu: &Gpu, groups: u32, iterations: u32) -> Result<(f64, u32)> {
        let params = CoopParams {
            iterations,
            _pad: [0; 3],
        };
        gpu.queue
            .write_buffer(&self.params, 0, bytemuck::bytes_of(&params));
        // The last run's tiles and count cleared, in a submission of their own (outside the
        // timed one): a tile this run fails to store cannot pass for one an earlier run left.
        let mut clear = gpu.device.create_command_encoder(&Default::default());
        clear.clear_buffer(&self.tiles, 0, None);
        clear.clear_buffer(&self.subgroups, 0, None);
        gpu.submit([clear.finish()]);
        gpu.wait()?;
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = gpu.compute_pass(&mut encoder, "attnviz.coop_probe");
            pass.set_pipeline(&self.pipeline);
            pass.set_bind_group(0, &self.bind_group, &[]);
            pass.dispatch_workgroups(groups, 1, 1);
        }
        let start = std::time::Instant::now();
        gpu.submit([encoder.finish()]);
        gpu.wait()?;
        let seconds = start.elapsed().as_secs_f64();
        let subgroups = gpu.read_buffer(&self.subgroups, 0, 4)?;
        let subgroups = u32::from_le_bytes(subgroups[..4].try_into().expect("4 bytes"));
        if subgroups == 0 || subgroups > 64 {
            return Err(Error::Gpu(format!(
                "cooperative-matrix probe: the device reported {subgroups} subgroups a workgroup"
            )));
        }
        let used = u64::from(groups).min(TILE_SLOTS) * u64::from(subgroups) * TILE_WORDS;
        let bytes = gpu.read_buffer(&self.tiles, 0, used * 4)?;
        let want = expected(iterations);
        for (t, tile) in bytes.chunks_exact(TILE_WORDS as usize * 4).enumerate() {
            let got: &[f32] = bytemuck::cast_slice(tile);
            if let Some(i) = (0..256).find(|&i| got[i].to_bits() != want[i].to_bits()) {
                return Err(Error::Gpu(format!(
                    "cooperative-matrix probe: tile {t}, entry ({}, {}) is {} where \
                     {iterations} · A·B is {}",
                    i / 16,
                    i % 16,
                    got[i],
                    want[i]
                )));
            }
        }
        Ok((seconds, subgroups))
    }

    /// The tiles against the exact product: one multiply-add by one workgroup (the loads, the
    /// roles and the store lay the tiles out as the CPU does), then 7 by 130 workgroups
    /// (subgroups apart, tile slots shared). An error names the first wrong entry.
    pub fn check(&self, gpu: &Gpu) -> Result<()> {
        self.run(gpu, 1, 1)?;
        self.run(gpu, 130, 7)?;
        Ok(())
    }

    /// [`CoopProbe::check`] first, then the best rate of a few dispatches grown until one
    /// takes a quarter of a second.
    pub fn measure(&self, gpu: &Gpu) -> Result<CoopRate> {
        self.check(gpu)?;
        let max_x = gpu.limits.max_compute_workgroups_per_dimension;
        let (mut groups, mut iterations) = (64u32, ITERATIONS);
        loop {
            let (t, subgroups) = self.run(gpu, groups, iterations)?;
            if t >= 0.25 || iterations >= MAX_ITERATIONS {
                let best = (0..2).try_fold(t, |best, _| {
                    self.run(gpu, groups, iterations).map(|(t, _)| best.min(t))
                })?;
                let mads = f64::from(groups) * f64::from(subgroups) * f64::from(iterations);
                return Ok(CoopRate {
                    tflops: mads * 2.0 * 16f64.powi(3) / best / 1e12,
                    subgroups,
                });
            }
            if groups.saturating_mul(2) <= max_x {
                groups *= 2;
            } else {
                iterations *= 2;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The operands are exact in f16, and the largest accumulator a timed run stores is exact
    /// in f32: the probe can demand every bit.
    #[test]
    fn the_probes_product_is_exact_in_f16_and_f32() {
        let (a, b) = operands();
        for x in a.iter().chain(&b) {
            assert_eq!(f16::from_f32(*x).to_f32(), *x);
        }
        let c = expected(MAX_ITERATIONS);
        let largest = c.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        assert!(largest > 0.0 && largest < (1u32 << 24) as f32, "{largest}");
        // not symmetric: a load with rows and columns swapped gives another product
        assert_ne!(expected(1)[1], expected(1)[16]);
    }
}
