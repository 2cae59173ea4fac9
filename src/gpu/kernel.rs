//! The one place shader modules, bind-group layouts and pipelines are made. Each stage declares
//! its kernel once, as a list of binding kinds in binding order (vello's `shaders.rs` does the
//! same), and gets its layout, its pipelines and its bind groups from it: no stage builds a
//! layout entry by hand, so a binding's kind cannot drift between the layout and the shader.

/// What one binding of a kernel is, in `@binding` order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binding {
    /// `var<uniform>`.
    Uniform,
    /// `var<uniform>` bound at a dynamic offset: one bind group serves every window of a
    /// buffer that a kernel reads a window at a time (`set_bind_group`'s offsets pick it).
    UniformWindow,
    /// `var<storage, read>`.
    BufReadOnly,
    /// `var<storage, read_write>`.
    Buffer,
    /// `texture_2d<f32>`, read with `textureLoad` (no sampler).
    Texture,
    /// A chunk texture (`pool::chunk`): `texture_storage_2d<rgba32uint, read>`, read with
    /// `textureLoad`.
    Chunk,
    /// A chunk texture written with `textureStore`: `texture_storage_2d<rgba32uint, write>`.
    ChunkWrite,
}

impl Binding {
    fn entry(self, binding: u32, visibility: wgpu::ShaderStages) -> wgpu::BindGroupLayoutEntry {
        let buffer = |ty, has_dynamic_offset| wgpu::BindingType::Buffer {
            ty,
            has_dynamic_offset,
            min_binding_size: None,
        };
        use wgpu::BufferBindingType::{Storage, Uniform};
        let ty = match self {
            Binding::Uniform => buffer(Uniform, false),
            Binding::UniformWindow => buffer(Uniform, true),
            Binding::BufReadOnly => buffer(Storage { read_only: true }, false),
            Binding::Buffer => buffer(Storage { read_only: false }, false),
            Binding::Texture => wgpu::BindingType::Texture {
                sample_type: wgpu::TextureSampleType::Float { filterable: false },
                view_dimension: wgpu::TextureViewDimension::D2,
                multisampled: false,
            },
            Binding::Chunk => wgpu::BindingType::StorageTexture {
                access: wgpu::StorageTextureAccess::ReadOnly,
                format: wgpu::TextureFormat::Rgba32Uint,
                view_dimension: wgpu::TextureViewDimension::D2,
            },
            Binding::ChunkWrite => wgpu::BindingType::StorageTexture {
                access: wgpu::StorageTextureAccess::WriteOnly,
                format: wgpu::TextureFormat::Rgba32Uint,
                view_dimension: wgpu::TextureViewDimension::D2,
            },
        };
        wgpu::BindGroupLayoutEntry {
            binding,
            visibility,
            ty,
            count: None,
        }
    }
}

/// A shader module with the bind-group layout its bindings declare (group 0).
pub struct Kernel {
    pub module: wgpu::ShaderModule,
    pub layout: wgpu::BindGroupLayout,
    bindings: usize,
    /// `attnviz.<stage>`: the prefix of every object made from this kernel.
    label: &'static str,
}

impl Kernel {
    /// A compute kernel: `bindings` in `@binding` order, visible to compute.
    pub fn compute(
        device: &wgpu::Device,
        label: &'static str,
        source: &str,
        bindings: &[Binding],
    ) -> Kernel {
        Kernel::new(device, label, source, bindings, wgpu::ShaderStages::COMPUTE)
    }

    /// A kernel whose bindings are visible to `visibility` (render pipelines use
    /// `VERTEX_FRAGMENT`).
    pub fn new(
        device: &wgpu::Device,
        label: &'static str,
        source: &str,
        bindings: &[Binding],
        visibility: wgpu::ShaderStages,
    ) -> Kernel {
        let entries: Vec<_> = (0u32..)
            .zip(bindings)
            .map(|(i, b)| b.entry(i, visibility))
            .collect();
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(&format!("{label}.layout")),
            entries: &entries,
        });
        let _span = tracing::info_span!("shader", label = %label).entered();
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(&format!("{label}.shader")),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
        Kernel {
            module,
            layout,
            bindings: bindings.len(),
            label,
        }
    }

    /// The pipeline layout over this kernel's one bind group.
    pub fn pipeline_layout(&self, device: &wgpu::Device) -> wgpu::PipelineLayout {
        device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(&format!("{}.pipeline_layout", self.label)),
            bind_group_layouts: &[Some(&self.layout)],
            immediate_size: 0,
        })
    }

    /// The compute pipeline of entry point `entry`.
    pub fn pipeline(&self, device: &wgpu::Device, entry: &str) -> wgpu::ComputePipeline {
        self.specialized(device, entry, &[])
    }

    /// The compute pipeline of `entry` with its pipeline-overridable constants set: one
    /// pipeline per mode, so a shader never branches on what a dispatch cannot change.
    pub fn specialized(
        &self,
        device: &wgpu::Device,
        entry: &str,
        constants: &[(&str, f64)],
    ) -> wgpu::ComputePipeline {
        self.compute_pipeline(device, &self.pipeline_layout(device), entry, constants)
    }

    /// The compute pipeline of `entry` over two bind groups: `first`'s as group 0 and this
    /// kernel's as group 1. For a kernel that reads another stage's buffers through that
    /// stage's own bind group and adds bindings of its own (`pool::pattern_qk`: the pattern
    /// statistics' buffers, then Q and K); its module declares both groups.
    pub fn pipeline_after(
        &self,
        device: &wgpu::Device,
        first: &Kernel,
        entry: &str,
        constants: &[(&str, f64)],
    ) -> wgpu::ComputePipeline {
        let layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(&format!("{}.pipeline_layout", self.label)),
            bind_group_layouts: &[Some(&first.layout), Some(&self.layout)],
            immediate_size: 0,
        });
        self.compute_pipeline(device, &layout, entry, constants)
    }

    fn compute_pipeline(
        &self,
        device: &wgpu::Device,
        layout: &wgpu::PipelineLayout,
        entry: &str,
        constants: &[(&str, f64)],
    ) -> wgpu::ComputePipeline {
        let label = format!("{}.{entry}", self.label);
        let _span = tracing::info_span!("pipeline", label = %label).entered();
        device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&label),
            layout: Some(layout),
            module: &self.module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants,
                ..Default::default()
            },
            cache: None,
        })
    }

    /// A bind group of `resources`, one per declared binding, in binding order.
    pub fn bind_group(
        &self,
        device: &wgpu::Device,
        resources: &[wgpu::BindingResource<'_>],
    ) -> wgpu::BindGroup {
        assert_eq!(
            resources.len(),
            self.bindings,
            "{}: a bind group needs one resource per binding",
            self.label
        );
        let entries: Vec<_> = (0u32..)
            .zip(resources)
            .map(|(binding, resource)| wgpu::BindGroupEntry {
                binding,
                resource: resource.clone(),
            })
            .collect();
        device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(&format!("{}.bind_group", self.label)),
            layout: &self.layout,
            entries: &entries,
        })
    }
}
