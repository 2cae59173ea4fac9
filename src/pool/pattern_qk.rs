//! The pattern statistics of a Q/K head from its scores (`shaders/pattern_qk.wgsl`), for runs
//! whose figure the one-pass path pools: after each chunk of rows is pooled, `pattern_qk`
//! computes the chunk's scores again, turns them into probabilities with the lse the row kernel
//! left for each row, and fills the ingest's pattern buffers as the profile kernel fills them
//! from stored probabilities; `pattern_blocks` and `pattern_diagonals` add them up as after the
//! profile kernel. One piece (a head's rows) per submission: it is piece 0 of the ingest's
//! parameters. No probability is stored: the path that stores them
//! (`pool::qk::tiled::pool_materialized`) writes every one into a buffer, copies it into the
//! pool pass's chunk texture and reads it back, which costs a software rasterizer more than the
//! scores (a 32768-token causal head: 2 GiB each way).
//!
//! Each invocation holds the K vectors of [`GROUP_KEYS`] keys, so the pass takes heads whose
//! 16 keys fit the adapter's budget of registers for them ([`Gpu::pattern_key_vec4s`]): CPU
//! adapters, whose "registers" are the stack of a few wide lanes; GPUs store the probabilities.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use bytemuck::{Pod, Zeroable};

use crate::gpu::kernel::{Binding, Kernel};
use crate::gpu::{shaders, Gpu};
use crate::pool::ingest::{Ingest, Piece};
use crate::pool::pattern_gpu::{PatternPipelines, GROUP_KEYS, WORKGROUP_KEYS};

/// Rows of Q a `pattern_qk` module reads at once for heads of `d4` vec4s: one uniform binding's
/// worth, at most 4096 (a piece's rows, the loop `pattern_diagonals` bounds), a multiple of 16.
pub(crate) fn window_rows(gpu: &Gpu, d4: u32) -> usize {
    (gpu.limits.max_uniform_buffer_binding_size as usize / (d4 as usize * 16)).min(4096) / 16 * 16
}

/// Mirrors `QkPattern` in `shaders/pattern_qk.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub(crate) struct QkPatternParams {
    pub(crate) scale: f32,
    pub(crate) softcap: f32,
    pub(crate) diagonal: i32,
    pub(crate) causal: u32,
    pub(crate) window: u32,
    pub(crate) kbase: u32,
    pub(crate) lse_row0: u32,
    pub(crate) chunk: u32,
    /// Where the layer's table of keys by position starts in `key_bin` (u32s), under
    /// bidirectional spans.
    pub(crate) ranges: u32,
    pub(crate) _pad: [u32; 3],
}

/// The `pattern_qk` source for heads of `d4` vec4s, windows of `rows` query rows, and query
/// vectors shared by `shared` lanes of a subgroup (4 or 8; 0: every lane loads them all): the
/// template with its constants set, the K loads and the scores written out (constant indices:
/// the K vectors stay in registers on every compiler). Each score adds its products in the
/// order the row kernel's `score4` does, so p is the probability `prob_rows` stores.
pub fn source(d4: u32, rows: u32, shared: u32) -> String {
    let keys = GROUP_KEYS as u32;
    let mut kload = String::new();
    for c in 0..keys {
        for v in 0..d4 {
            kload += &format!("let k{c}_{v} = kload(k0, {c}u, {v}u);\n    ");
        }
    }
    let line = "\n            ";
    let mut scores = String::new();
    if shared > 0 {
        // lane l loads vectors l, l + W, …; vector v is then lane v % W's load v / W
        let last = rows * d4 - 1;
        for t in 0..d4.div_ceil(shared) {
            scores += &format!(
                "let qm{t} = qwin[min(qo + {}u + sg_lane % {shared}u, {last}u)];{line}",
                t * shared
            );
        }
        for v in 0..d4 {
            scores += &format!(
                "let q{v} = subgroupBroadcast(qm{}, {}u);{line}",
                v / shared,
                v % shared
            );
        }
    } else {
        for v in 0..d4 {
            scores += &format!("let q{v} = qwin[qo + {v}u];{line}");
        }
    }
    for c in 0..keys {
        scores += &format!("var t{c} = dot(q0, k{c}_0);{line}");
        for v in 1..d4 {
            scores += &format!("t{c} += dot(q{v}, k{c}_{v});{line}");
        }
    }
    let quad = |b: u32| format!("vec4<f32>(t{}, t{}, t{}, t{})", b, b + 1, b + 2, b + 3);
    scores += &format!(
        "let raw = Keys16({}, {}, {}, {});",
        quad(0),
        quad(4),
        quad(8),
        quad(12)
    );
    // (naga takes subgroup builtins without WGSL's `enable subgroups;`; the device must have
    // `Features::SUBGROUP`, which a nonzero `Gpu::subgroup_keys` says)
    let lane = if shared > 0 {
        "@builtin(subgroup_invocation_id) sg_lane: u32,"
    } else {
        ""
    };
    shaders::PATTERN_QK_TEMPLATE
        .replace("const QD4: u32 = 16u;", &format!("const QD4: u32 = {d4}u;"))
        .replace(
            "const QWIN: u32 = 256u;",
            &format!("const QWIN: u32 = {rows}u;"),
        )
        .replace("// @KLOAD", &kload)
        .replace("// @SCORES", &scores)
        .replace("/* @LANE_ARG */", lane)
}

/// One `pattern_qk` module (a head dimension, a window of rows, subgroup lanes sharing a row's
/// loads) and its pipelines, by [`QkPatternPass::variant`]: without and with the softcap, and
/// with rows' keys by the rules or from a table (bidirectional spans).
struct QkPatternKernel {
    kernel: Kernel,
    pipelines: [OnceLock<wgpu::ComputePipeline>; 4],
}

/// The `pattern_qk` kernels, made on first use per (head dimension in vec4s, window rows,
/// subgroup lanes sharing a row's loads).
#[derive(Default)]
pub(crate) struct QkPatternKernels {
    by_shape: Mutex<HashMap<(u32, u32, u32), Arc<QkPatternKernel>>>,
}

/// What a run binds and dispatches for its heads' statistics from Q and K: the pipeline (its
/// group 0 the ingest's pattern bind group, group 1 `bind_group`).
pub(crate) struct QkPatternPass {
    kernel: Arc<QkPatternKernel>,
    softcap: bool,
    /// Each row's keys from a table (`QkSource::key_ranges`), not the mask's rules.
    ranged: bool,
    /// Bytes of Q bound at once: [`window_rows`] rows (a piece's rows at most).
    window_bytes: u64,
}

impl QkPatternKernels {
    /// The pass for heads of `d4` vec4s on `gpu` (a window of [`window_rows`] rows; a row's
    /// loads shared by [`Gpu::subgroup_keys`] lanes of a subgroup), with the softcap or not
    /// (its pipeline compiled on first use, or by [`QkPatternPass::warm`]), its rows' keys from
    /// a table (`ranged`) or not.
    pub(crate) fn pass(&self, gpu: &Gpu, d4: u32, softcap: bool, ranged: bool) -> QkPatternPass {
        let (rows, shared) = (window_rows(gpu, d4), gpu.subgroup_keys);
        let device = &gpu.device;
        let kernel = {
            let mut map = self.by_shape.lock().expect("pattern_qk kernels");
            map.entry((d4, rows as u32, shared))
                .or_insert_with(|| {
                    use Binding::*;
                    // the dispatch's parameters, its window of Q, K, the rows' lse, the keys'
                    // columns and table
                    Arc::new(QkPatternKernel {
                        kernel: Kernel::compute(
                            device,
                            "attnviz.pattern_qk",
                            &source(d4, rows as u32, shared),
                            &[
                                UniformWindow,
                                UniformWindow,
                                BufReadOnly,
                                BufReadOnly,
                                BufReadOnly,
                            ],
                        ),
                        pipelines: Default::default(),
                    })
                })
                .clone()
        };
        QkPatternPass {
            kernel,
            softcap,
            ranged,
            window_bytes: (rows * d4 as usize * 16) as u64,
        }
    }
}

impl QkPatternPass {
    /// Compiles the pass's pipeline now (a driver compiles on the calling thread: a caller
    /// runs this beside its own compiles).
    pub(crate) fn warm(&self, device: &wgpu::Device, pattern: &PatternPipelines) {
        self.pipeline(device, pattern);
    }

    fn pipeline(
        &self,
        device: &wgpu::Device,
        pattern: &PatternPipelines,
    ) -> &wgpu::ComputePipeline {
        let flag = |on: bool| if on { 1.0 } else { 0.0 };
        self.kernel.pipelines[self.variant()].get_or_init(|| {
            let constants = [
                ("QK_SOFTCAP", flag(self.softcap)),
                ("QK_RANGED", flag(self.ranged)),
            ];
            self.kernel.kernel.pipeline_after(
                device,
                pattern.kernel(device),
                "pattern_qk",
                &constants,
            )
        })
    }

    /// The pipeline's index among its module's: softcap, then table.
    fn variant(&self) -> usize {
        usize::from(self.softcap) | usize::from(self.ranged) << 1
    }

    /// Group 1 of the pass: `params` (a [`QkPatternParams`] per dispatch, at dynamic offsets),
    /// `q` (each head's query rows, d4 vec4s a row, read a window of [`window_rows`] rows at a
    /// time: the buffer holds one more past its last row), `k`, the rows' `lse` and the
    /// one-pass run's `key_bin` (its keys' columns, then a layer's table of keys by position
    /// under bidirectional spans).
    pub(crate) fn bind_group(
        &self,
        device: &wgpu::Device,
        params: &wgpu::Buffer,
        q: &wgpu::Buffer,
        k: &wgpu::Buffer,
        lse: &wgpu::Buffer,
        key_bin: &wgpu::Buffer,
    ) -> wgpu::BindGroup {
        let window = |buffer, size: u64| {
            wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer,
                offset: 0,
                size: wgpu::BufferSize::new(size),
            })
        };
        self.kernel.kernel.bind_group(
            device,
            &[
                window(params, std::mem::size_of::<QkPatternParams>() as u64),
                window(q, self.window_bytes),
                k.as_entire_binding(),
                lse.as_entire_binding(),
                key_bin.as_entire_binding(),
            ],
        )
    }
}

impl Ingest<'_> {
    /// Rows of a piece of the statistics from Q and K for heads of `d4` vec4s: a window of Q
    /// ([`window_rows`]) at most, and what the pattern scratch holds, a multiple of 16. `None`
    /// without statistics.
    pub(crate) fn qk_pattern_rows(&self, d4: u32) -> Option<usize> {
        let pattern = self.pattern.as_ref()?;
        let rows = pattern.rows.min(window_rows(self.gpu, d4)) / 16 * 16;
        (rows > 0).then_some(rows)
    }

    /// The `pattern_qk` pass for heads of `d4` vec4s, with the softcap or not, its rows' keys
    /// from a table or not.
    pub(crate) fn qk_pattern_pass(&self, d4: u32, softcap: bool, ranged: bool) -> QkPatternPass {
        self.pipes.pattern.qk.pass(self.gpu, d4, softcap, ranged)
    }

    /// The pattern statistics of `rows` rows of `cell` from `row_start` (at most
    /// [`Ingest::qk_pattern_rows`]) from Q and K: `pattern_qk` over group 1 `bind_group` at
    /// `offsets` (the dispatch's parameters, its window of Q), then the sums of what it left,
    /// in a submission of their own (the piece's parameters are the ingest's one set). Only for
    /// an ingest with statistics (`qk_pattern_rows` said so): without them, nothing.
    pub(crate) fn pattern_qk(
        &mut self,
        pass: &QkPatternPass,
        bind_group: &wgpu::BindGroup,
        offsets: [u32; 2],
        (cell, row_start, rows): (usize, usize, usize),
    ) {
        let piece = Piece {
            cell,
            row_start,
            rows,
            offset: 0,
            stride: self.keys,
        };
        // (the kernel walks the piece's rows itself, unsliced)
        self.write_pieces(&[piece], 0);
        let Some(pattern) = &self.pattern else {
            return;
        };
        let gpu = self.gpu;
        let g = cell / self.per_group;
        let pipes = &self.pipes.pattern;
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        {
            let mut p = gpu.compute_pass(&mut encoder, "attnviz.pattern.qk");
            p.set_pipeline(pass.pipeline(&gpu.device, pipes));
            p.set_bind_group(0, &self.pattern_bind_groups[g], &[]);
            p.set_bind_group(1, bind_group, &offsets);
            p.dispatch_workgroups(self.keys.div_ceil(WORKGROUP_KEYS) as u32, 1, 1);
            pattern.record_sums(gpu, pipes, &mut p, &[piece]);
        }
        gpu.submit([encoder.finish()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The dispatch parameters are read at dynamic offsets as `QkPattern` (48 bytes: see
    /// `tests/shaders.rs`).
    #[test]
    fn params_are_48_bytes() {
        assert_eq!(std::mem::size_of::<QkPatternParams>(), 48);
    }

    /// Every score is written out with constant indices: no loop over keys or dimensions is
    /// left for a driver to unroll, and each of the 16 keys adds all `d4` products.
    #[test]
    fn scores_are_written_out() {
        let s = source(16, 256, 8);
        assert!(!s.contains("// @SCORES") && !s.contains("// @KLOAD"));
        assert_eq!(s.matches("t15 += dot(").count(), 15);
        assert_eq!(s.matches("subgroupBroadcast(").count(), 16);
        assert!(source(16, 256, 0).contains("let q15 = qwin[qo + 15u];"));
    }
}
