//! Which kernel takes heads of one width on an adapter, and in what shape: the head padded
//! to vec4s, the row kernel's window of keys, its rows per lane and keys per subgroup step.
//! Apart from the WGSL because the cuts, the entry points and `attnviz bench` ask these
//! questions without building a shader.

use crate::gpu::Gpu;

use super::TQ;

/// Widest head (in vec4s) the row kernel takes: its query row lives in registers, 32 vec4s
/// (128 dimensions) at most; wider heads go to the tiled kernel, whose register block does not
/// grow with the head dimension.
const MAX_ROWS_D4: u32 = 32;
/// The row kernel's key window, at most: 64 KiB is the uniform (constant) buffer size every
/// desktop driver offers, and what the constant caches are built around.
const MAX_WINDOW_BYTES: u64 = 65536;

/// The head dimension in vec4s, padded for the shader, and the vec4s staged per step.
pub(super) fn padded(dim: usize) -> (u32, u32) {
    let d4 = dim.div_ceil(4) as u32;
    if d4.is_multiple_of(8) {
        (d4, 8)
    } else {
        (d4.next_multiple_of(4), 4)
    }
}

/// Keys per window of the row kernel for `d4` vec4s of head dimension on an adapter whose
/// uniform bindings hold `max_uniform` bytes: a multiple of 16 keys, so that every window's
/// offset (a multiple of 256·d4 bytes) meets any adapter's offset alignment (at most 256).
/// 0 when the row kernel does not apply: wide heads, small uniform bindings, a lane's rows
/// within the budget ([`budget_rows`]) fewer than [`Gpu::row_min_rows`], or no row budget at
/// all (`attnviz bench --row-vec4s 0` measures the tiled kernel at every width).
pub(super) fn window_keys(gpu: &Gpu, d4: u32) -> u32 {
    let max_uniform = gpu.limits.max_uniform_buffer_binding_size;
    let keys = (max_uniform.min(MAX_WINDOW_BYTES) / (u64::from(d4) * 16)) as u32 / 16 * 16;
    let rows = budget_rows(d4, gpu.row_vec4s);
    if d4 > MAX_ROWS_D4 || gpu.row_vec4s == 0 || rows < gpu.row_min_rows {
        0
    } else {
        keys
    }
}

/// Query rows a lane of the row kernel holds for `d4` vec4s of head dimension on an adapter
/// that gives them `budget` vec4s ([`Gpu::row_vec4s`]): as many as fit, 1 to 8, a power of two
/// (on llvmpipe, d = 64: 6 rows a lane ran 28% slower than 8, and slower than 4 rows × 8 keys).
fn budget_rows(d4: u32, budget: u32) -> u32 {
    let fit = (budget / d4.max(1)).clamp(1, 8);
    1 << fit.ilog2()
}

/// Query rows per invocation for heads of `queries` query rows: the budget's
/// ([`budget_rows`]), fewer where a workgroup's rows would exceed the head's
/// ([`Gpu::fit_rows_to_heads`]), but never fewer than [`Gpu::row_min_rows`] (the fewest for
/// which the row kernel pays).
fn rows_per_invocation(gpu: &Gpu, d4: u32, queries: usize) -> u32 {
    let budget = budget_rows(d4, gpu.row_vec4s);
    if !gpu.fit_rows_to_heads {
        return budget;
    }
    let fit = (queries / TQ).clamp(1, 8) as u32;
    let rows = budget.min(fit.max(gpu.row_min_rows));
    1 << rows.ilog2()
}

/// Scores per lane that a step of the row kernel accumulates (rows × keys), past which it
/// takes 4 keys a step: the scores stay live across the whole head dimension, and a key value
/// broadcast to the subgroup feeds every row, so more rows and fewer keys cost fewer
/// broadcasts per product. On llvmpipe, 4 rows × 8 keys ran 6–12% slower than 4 rows × 4 keys
/// (d = 64 and 128), and 8 rows × 4 keys 20% faster than 4 × 8 (d = 64).
const STEP_SCORES: u32 = 16;

/// Keys per step of the row kernel shared through subgroups, for `rows` query rows per
/// invocation on an adapter whose subgroups share `subgroup_keys` (4 or 8; 0: none): halved to
/// 4 while the step's scores exceed [`STEP_SCORES`]. Fewer keys per step only means more steps
/// (each key still feeds every row), and a step of 4 is what every subgroup can share.
fn keys_per_step(rows: u32, subgroup_keys: u32) -> u32 {
    if subgroup_keys > 4 && rows * subgroup_keys > STEP_SCORES {
        4
    } else {
        subgroup_keys
    }
}

/// How the row kernel takes heads of one dimension on an adapter: what [`row_kernel_shape`]
/// reports, and what a run of those heads compiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowKernelShape {
    /// Query rows per invocation.
    pub rows: u32,
    /// Keys per step shared through subgroups; 0: every lane loads every key, 4 a step.
    pub shared_keys: u32,
}

impl RowKernelShape {
    /// The shape for heads of `queries` query rows.
    pub(super) fn new(gpu: &Gpu, d4: u32, queries: usize) -> RowKernelShape {
        let rows = rows_per_invocation(gpu, d4, queries);
        RowKernelShape {
            rows,
            shared_keys: keys_per_step(rows, gpu.subgroup_keys),
        }
    }
}

impl std::fmt::Display for RowKernelShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rows = self.rows;
        let s = if rows == 1 { "" } else { "s" };
        match self.shared_keys {
            0 => write!(
                f,
                "{rows} query row{s} a lane, every key loaded by every lane"
            ),
            k => write!(f, "{rows} query row{s} a lane, {k} keys a subgroup step"),
        }
    }
}

/// The row kernel's shape for heads of `dim` dimensions and `queries` query rows on `gpu`
/// (from [`Gpu::row_vec4s`], [`Gpu::fit_rows_to_heads`] and [`Gpu::subgroup_keys`]); `None`
/// where those heads take the tiled kernel instead.
pub fn row_kernel_shape(gpu: &Gpu, dim: usize, queries: usize) -> Option<RowKernelShape> {
    let (d4, _) = padded(dim);
    (window_keys(gpu, d4) > 0).then(|| RowKernelShape::new(gpu, d4, queries))
}
