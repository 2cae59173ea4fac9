//! Every shader parses and validates with naga, without a GPU, so a WGSL mistake fails here
//! rather than at run time on whichever path happens to use it.

fn validate(name: &str, src: &str) {
    let module = naga::front::wgsl::parse_str(src)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)));
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&module)
    .unwrap_or_else(|e| panic!("{name}: {e:?}"));
}

#[test]
fn shaders_validate() {
    // The same assembled text the stages compile (`src/gpu/shaders.rs`).
    for (name, src) in attnviz::gpu::shaders::ALL {
        validate(name, src);
    }
    // Expanded for the head dimensions 4 (one vec4), 64 and 256 (the largest).
    for d4 in [1, 16, 64] {
        validate("qk", &attnviz::pool::qk::kernel_source(d4));
    }
    // The one-pass pooled kernel, for each way it stages the head dimension, with the row
    // kernel's window as a 64 KiB uniform binding gives it (16 keys where it is not used),
    // without subgroups and sharing 4 or 8 keys through them; stored probabilities in a buffer
    // or the chunk texture.
    for (d4, slice, window) in [
        (4, 4, 1024),
        (8, 8, 512),
        (20, 4, 192),
        (32, 8, 128),
        (64, 8, 16),
    ] {
        for shared in [0, 4, 8] {
            for rows in [1, 2, 4, 8] {
                for texture in [false, true] {
                    validate(
                        "qk_pool",
                        &attnviz::pool::qk::pooled_kernel_source(
                            d4, slice, window, rows, shared, texture,
                        ),
                    );
                }
            }
        }
    }
    // The statistics from Q and K's scores: head dimensions 4, 16 and 64, windows of Q as a
    // 64 KiB uniform binding gives them, without subgroups and sharing 4 or 8 lanes' loads.
    for (d4, rows) in [(1, 4096), (4, 1024), (16, 256)] {
        for shared in [0, 4, 8] {
            validate(
                "pattern_qk",
                &attnviz::pool::pattern_qk_source(d4, rows, shared),
            );
        }
    }
}

/// `pattern_qk` reads its dispatch's `QkPattern` at a dynamic offset: the host's
/// `QkPatternParams` is 48 bytes (its unit test pins it), and so must the shader's be.
#[test]
fn qk_pattern_struct_is_the_hosts_48_bytes() {
    let src = attnviz::pool::pattern_qk_source(16, 256, 0);
    let module = naga::front::wgsl::parse_str(&src).unwrap();
    let (handle, _) = module
        .types
        .iter()
        .find(|(_, t)| t.name.as_deref() == Some("QkPattern"))
        .expect("struct QkPattern");
    let mut layouter = naga::proc::Layouter::default();
    layouter.update(module.to_ctx()).unwrap();
    assert_eq!(layouter[handle].size, 48);
}

/// The pool and pattern passes read `PieceParams` (src/pool/pipelines.rs, 64 bytes, which its
/// unit test pins) as `Piece` from a uniform array: a field added on one side only, or a
/// struct left short of the 16-byte array stride, shifts every piece after the first.
#[test]
fn piece_struct_is_the_hosts_64_bytes_in_every_shader() {
    for (name, src) in attnviz::gpu::shaders::ALL {
        let module = naga::front::wgsl::parse_str(src).unwrap();
        let Some((handle, _)) = module
            .types
            .iter()
            .find(|(_, t)| t.name.as_deref() == Some("Piece"))
        else {
            continue;
        };
        let mut layouter = naga::proc::Layouter::default();
        layouter.update(module.to_ctx()).unwrap();
        assert_eq!(layouter[handle].size, 64, "{name}: struct Piece");
    }
}

/// The cooperative-matrix probe (`attnviz bench --only coop`) only runs where an adapter has
/// wgpu's experimental cooperative matrices, which this machine's may not: its SPIR-V is
/// written here as wgpu's Vulkan backend writes it (SPIR-V 1.6, as Vulkan 1.3 takes), so a
/// mistake the validator lets through but the writer refuses (f16 operands into an f32
/// accumulator, the loads' layout) fails on every machine.
#[test]
fn coop_probe_writes_spirv() {
    let src = attnviz::gpu::shaders::COOP_PROBE;
    let module =
        naga::front::wgsl::parse_str(src).unwrap_or_else(|e| panic!("{}", e.emit_to_string(src)));
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&module)
    .unwrap();
    let options = naga::back::spv::Options {
        lang_version: (1, 6),
        ..Default::default()
    };
    let pipeline = naga::back::spv::PipelineOptions {
        shader_stage: naga::ShaderStage::Compute,
        entry_point: "coop_probe".into(),
    };
    let words = naga::back::spv::write_vec(&module, &info, &options, Some(&pipeline))
        .unwrap_or_else(|e| panic!("coop_probe: {e}"));
    // the SPIR-V magic number, and the KHR cooperative-matrix capability (6022) declared
    assert_eq!(words[0], 0x0723_0203);
    assert!(
        words.windows(2).any(|w| w == [(2 << 16) | 17, 6022]),
        "no OpCapability CooperativeMatrixKHR"
    );
}
