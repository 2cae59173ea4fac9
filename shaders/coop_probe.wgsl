// The cooperative-matrix probe of `attnviz bench --only coop` (src/pool/coop_probe.rs): the
// rate of 16 × 16 × 16 matrix multiply-adds with f16 inputs and f32 accumulators (tensor cores
// on NVIDIA, matrix cores on AMD) through wgpu's experimental cooperative matrices, beside the
// f32 FMA probe (shaders/fma_probe.wgsl). It is the shape a Q/K score kernel would take: Q and
// K tiles as f16 (bf16 and f16 captures are exact in f16 within its normal range), the scores
// accumulated in f32 (a product of two f16 is exact in f32).
//
// Every subgroup loads the same A and B, multiply-adds them `iterations` times into its own
// accumulator, which starts as zeros (loaded from `zeros`), and stores it: with small-integer
// entries every sum is exact in f32, so each stored tile is exactly iterations · A·B, whatever
// the summation order.
// Subgroups of workgroup x store at tile (x % TILE_SLOTS) · num_subgroups + subgroup_id: tiles
// shared by several workgroups get the same values.

enable f16;
enable wgpu_cooperative_matrix;

// Keep in sync with `CoopParams` in src/pool/coop_probe.rs.
struct CoopParams {
    iterations: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// Keep in sync with `TILE_SLOTS` in src/pool/coop_probe.rs.
const TILE_SLOTS: u32 = 64u;

@group(0) @binding(0) var<uniform> params: CoopParams;
// A and B, 16 × 16 each, row-major
@group(0) @binding(1) var<storage, read> a: array<f16>;
@group(0) @binding(2) var<storage, read> b: array<f16>;
// 16 × 16 f32 zeros: every accumulator's start
@group(0) @binding(3) var<storage, read> zeros: array<f32>;
// per tile slot, per subgroup: 16 × 16 f32
@group(0) @binding(4) var<storage, read_write> tiles: array<f32>;
// [0]: subgroups per workgroup, for the host's count of multiply-adds
@group(0) @binding(5) var<storage, read_write> subgroups: array<u32>;

@compute @workgroup_size(64)
fn coop_probe(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
    @builtin(subgroup_id) sg: u32,
    @builtin(num_subgroups) nsg: u32,
) {
    let tile = ((wg.x % TILE_SLOTS) * nsg + sg) * 256u;
    let at = coopLoad<coop_mat16x16<f16, A>>(&a[0], 16u);
    let bt = coopLoad<coop_mat16x16<f16, B>>(&b[0], 16u);
    var acc = coopLoad<coop_mat16x16<f32, C>>(&zeros[0], 16u);
    for (var i = 0u; i < params.iterations; i++) {
        acc = coopMultiplyAdd(at, bt, acc);
    }
    coopStore(acc, &tiles[tile], 16u);
    if wg.x == 0u && li == 0u {
        subgroups[0] = nsg;
    }
}
