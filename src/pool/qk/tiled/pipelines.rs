//! The one-pass kernels compiled: a shader module per head width and shape, and its pipelines
//! per mode, each made on first use and kept (compiling is most of a fresh process's start-up,
//! so nothing is compiled that a run does not dispatch).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::gpu::kernel::{Binding, Kernel};

use super::cuts::Cuts;
use super::shape::RowKernelShape;
use super::source::kernel_source;
use super::Mode;

/// The pipelines of one [`Mode`]: the row kernel's or the tiled kernel's, whichever the
/// module's head dimension takes (a pipeline never used is no start-up time on any driver).
pub(super) struct Pipes {
    /// `pool_rows` or `pool_scores`.
    pub(super) scores: wgpu::ComputePipeline,
    /// `pool_row_lse` or `pool_lse`.
    pub(super) lse: wgpu::ComputePipeline,
    /// The pass after the lse, the only one of the two a mode compiles (each is start-up time).
    pub(super) then: Then,
}

/// What follows a chunk's lse pass.
pub(super) enum Then {
    /// `pool_fold`: the states folded into the figure's pixels.
    Fold(wgpu::ComputePipeline),
    /// `prob_rows`: every probability stored, where the mode materializes.
    Probs(wgpu::ComputePipeline),
}

/// One shader module (a head dimension, a subgroup step) and its pipelines, per mode, made on
/// first use.
pub(super) struct Kernels {
    pub(super) kernel: Kernel,
    /// The row kernel computes the scores (the head dimension has a window), else the tiled.
    row_kernel: bool,
    by_mode: Mutex<HashMap<Mode, Arc<Pipes>>>,
}

impl Kernels {
    pub(super) fn pipes(&self, device: &wgpu::Device, mode: Mode) -> Arc<Pipes> {
        let mut map = self.by_mode.lock().expect("qk_pool pipelines");
        map.entry(mode)
            .or_insert_with(|| {
                let flag = |on: bool| if on { 1.0 } else { 0.0 };
                let constants = [
                    ("SOFTCAP", flag(mode.softcap)),
                    ("LOGITS", flag(mode.logits)),
                    ("ROW_NORM", flag(mode.row_norm)),
                    ("SPLIT", flag(mode.split)),
                    ("RANGED", flag(mode.ranged)),
                ];
                let k = &self.kernel;
                let p = |entry| k.specialized(device, entry, &constants);
                let (scores, lse) = if self.row_kernel {
                    ("pool_rows", "pool_row_lse")
                } else {
                    ("pool_scores", "pool_lse")
                };
                // prob_rows beside the others: the two score kernels are most of a fresh
                // process's compile time, and a driver compiles each on the calling thread.
                std::thread::scope(|scope| {
                    let probs = mode.materialize.then(|| scope.spawn(|| p("prob_rows")));
                    let (scores, lse) = (p(scores), p(lse));
                    let then = match probs {
                        Some(h) => Then::Probs(h.join().expect("compiling prob_rows")),
                        None => Then::Fold(p("pool_fold")),
                    };
                    Arc::new(Pipes { scores, lse, then })
                })
            })
            .clone()
    }
}

/// What one shader module of the one-pass path is built for: the padded head dimension in
/// vec4s, the row kernel's window of keys (0: the tiled kernel), rows per invocation and keys
/// per subgroup step, and whether `prob_rows` stores into a chunk texture.
type ModuleKey = (u32, u32, u32, u32, bool);

/// The one-pass kernels, compiled on first use for each padded head dimension.
#[derive(Default)]
pub(crate) struct TiledPipelines {
    by_dim: Mutex<HashMap<ModuleKey, Arc<Kernels>>>,
}

impl TiledPipelines {
    pub(super) fn kernels(&self, device: &wgpu::Device, cuts: &Cuts) -> Arc<Kernels> {
        let Cuts {
            d4,
            slice,
            window,
            shape:
                RowKernelShape {
                    rows,
                    shared_keys: shared,
                },
            probs_texture,
            ..
        } = *cuts;
        let mut map = self.by_dim.lock().expect("qk_pool pipelines");
        map.entry((d4, window, rows, shared, probs_texture))
            .or_insert_with(|| {
                use Binding::*;
                // params, Q, K, head table, key bins, column edges, row edges; then the
                // (row, pooled column) states, row lse and the accumulators written; then
                // the row kernel's window of K and its copy of Q; the probabilities prob_rows
                // stores (a buffer, or the chunk texture the pool pass reads)
                let kernel = Kernel::compute(
                    device,
                    "attnviz.qk_pool",
                    &kernel_source(d4, slice, window, rows, shared, probs_texture),
                    &[
                        UniformWindow,
                        BufReadOnly,
                        BufReadOnly,
                        BufReadOnly,
                        BufReadOnly,
                        BufReadOnly,
                        BufReadOnly,
                        Buffer,
                        Buffer,
                        Buffer,
                        UniformWindow,
                        Chunk,
                        if probs_texture { ChunkWrite } else { Buffer },
                    ],
                );
                Arc::new(Kernels {
                    kernel,
                    row_kernel: window > 0,
                    by_mode: Mutex::default(),
                })
            })
            .clone()
    }
}
