// The adapter's f32 FMA rate, for `attnviz bench`: every invocation runs `iters` rounds of 3
// independent vec4 FMA chains, eight steps each (96 scalar FMAs per round, no memory traffic), then writes one
// value so that nothing is optimised away. Three: enough independent chains to hide the FMA
// latency, few enough to stay in registers where a CPU driver runs each vec4 component of 8
// invocations as one 8-wide register (16 of them on AVX2; 8 chains spilled and measured the
// spills). The ceiling the Q/K kernels are measured against (src/pool/bench.rs, `FmaProbe`).

struct Params {
    iters: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> sink: array<f32>;

@compute @workgroup_size(64)
fn fma_probe(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 64u + gid.x;
    let x = f32(i) * 1e-9;
    // A multiplier just under 1 and an addend keep every chain finite for any round count.
    let m = vec4<f32>(0.999999);
    let c = vec4<f32>(1e-7);
    var a0 = vec4<f32>(x);
    var a1 = vec4<f32>(x + 1.0);
    var a2 = vec4<f32>(x + 2.0);
    for (var r = 0u; r < params.iters; r++) {
        // eight steps per round: the loop's own bookkeeping (a dozen instructions on llvmpipe)
        // is paid once per 96 FMAs
        a0 = fma(a0, m, c);
        a1 = fma(a1, m, c);
        a2 = fma(a2, m, c);
        a0 = fma(a0, m, c);
        a1 = fma(a1, m, c);
        a2 = fma(a2, m, c);
        a0 = fma(a0, m, c);
        a1 = fma(a1, m, c);
        a2 = fma(a2, m, c);
        a0 = fma(a0, m, c);
        a1 = fma(a1, m, c);
        a2 = fma(a2, m, c);
        a0 = fma(a0, m, c);
        a1 = fma(a1, m, c);
        a2 = fma(a2, m, c);
        a0 = fma(a0, m, c);
        a1 = fma(a1, m, c);
        a2 = fma(a2, m, c);
        a0 = fma(a0, m, c);
        a1 = fma(a1, m, c);
        a2 = fma(a2, m, c);
        a0 = fma(a0, m, c);
        a1 = fma(a1, m, c);
        a2 = fma(a2, m, c);
    }
    let s = a0 + a1 + a2;
    sink[i] = s.x + s.y + s.z + s.w;
}
