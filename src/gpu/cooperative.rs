//! A device with wgpu's experimental cooperative matrices (tensor cores on NVIDIA, matrix cores
//! on AMD, simdgroup matrices on Apple), opened beside the engine's own device on the same
//! adapter. Only `attnviz bench --only coop` uses it so far: it measures what a Q/K score
//! kernel built on 16 × 16 × 16 multiply-adds of f16 tiles into f32 accumulators could reach,
//! before any kernel depends on an experimental API. The engine's device never enables it.

use std::sync::OnceLock;

use crate::error::{Error, Result};

use super::Gpu;

/// The one configuration the probe (and a Q/K kernel after it) takes: 16 × 16 × 16, A and B
/// f16, C and the result f32. Q and K captured as bf16 or f16 are exact in f16 within its
/// normal range, and the product of two f16 is exact in f32, so scores from it differ from
/// the f32 path's only in their summation order.
pub fn is_f16_f32_16(p: &wgpu::CooperativeMatrixProperties) -> bool {
    (p.m_size, p.n_size, p.k_size) == (16, 16, 16)
        && p.ab_type == wgpu::CooperativeScalarType::F16
        && p.cr_type == wgpu::CooperativeScalarType::F32
}

/// What the device needs besides the cooperative matrices: f16 in shaders, and subgroups (the
/// probe counts them with `num_subgroups`).
fn needed() -> wgpu::Features {
    wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX
        | wgpu::Features::SHADER_F16
        | wgpu::Features::SUBGROUP
}

impl Gpu {
    /// Whether this adapter offers what [`Gpu::with_cooperative_matrices`] opens: the features,
    /// and the 16 × 16 × 16 f16 × f16 + f32 configuration ([`is_f16_f32_16`]).
    pub fn has_cooperative_matrices(&self) -> bool {
        self.adapter.features().contains(needed())
            && self
                .adapter
                .cooperative_matrix_properties()
                .iter()
                .any(is_f16_f32_16)
    }

    /// A second device on this adapter with cooperative matrices, f16 and subgroups enabled
    /// (the same limits and Q/K budgets as this one), or `None` where the adapter lacks any
    /// of them ([`Gpu::has_cooperative_matrices`]).
    pub fn with_cooperative_matrices(&self) -> Result<Option<Gpu>> {
        if !self.has_cooperative_matrices() {
            return Ok(None);
        }
        // SAFETY: wgpu asks callers of its experimental features to accept that their
        // implementation may still have bugs with undefined behaviour. Only the cooperative
        // matrices are experimental here, only the probe's shader uses them, and it is
        // validated by naga (tests/shaders.rs) and checked against the exact product.
        let experimental = unsafe { wgpu::ExperimentalFeatures::enabled() };
        let features = needed() | (self.device.features() & wgpu::Features::TIMESTAMP_QUERY);
        let (device, queue) =
            pollster::block_on(self.adapter.request_device(&wgpu::DeviceDescriptor {
                label: Some("attnviz.device.cooperative"),
                required_features: features,
                required_limits: self.limits.clone(),
                experimental_features: experimental,
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            }))
            .map_err(|e| {
                Error::NoAdapter(format!(
                    "{} refused a device with cooperative matrices: {e}",
                    self.info.name
                ))
            })?;
        let lost = super::watch(&device, " (cooperative matrices)");
        Ok(Some(Gpu {
            instance: self.instance.clone(),
            adapter: self.adapter.clone(),
            device,
            queue,
            limits: self.limits.clone(),
            info: self.info.clone(),
            subgroup_keys: self.subgroup_keys,
            row_vec4s: self.row_vec4s,
            pattern_key_vec4s: self.pattern_key_vec4s,
            qk_state_bytes: self.qk_state_bytes,
            row_min_rows: self.row_min_rows,
            fit_rows_to_heads: self.fit_rows_to_heads,
            pool_with_profiles: self.pool_with_profiles,
            pattern_slice_rows: self.pattern_slice_rows,
            qk_split_workgroups: self.qk_split_workgroups,
            probs_in_texture: self.probs_in_texture,
            qk_store_keys: self.qk_store_keys,
            pattern_qk_min_keys: self.pattern_qk_min_keys,
            lost,
            timer: OnceLock::new(),
        }))
    }
}
