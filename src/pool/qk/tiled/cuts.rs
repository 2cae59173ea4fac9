//! How a run of the one-pass path is cut: cells into batches of heads, rows into chunks, keys
//! into windows or splits, and where stored probabilities go. Sizes only, no device work, so
//! that they are reasoned about and tested apart from the dispatches that follow them.

use crate::gpu::Gpu;
use crate::pool::chunk::max_chunk_bytes;
use crate::pool::PoolRun;
use crate::source::qk::QkSource;

use super::shape::{padded, window_keys, RowKernelShape};
use super::{SEG_KEYS, TQ};

/// Heads per dispatch at most.
const MAX_BATCH: usize = 8;

/// One head of a batch: its query head, the slot of its key head, its accumulators.
pub(super) struct Member {
    pub(super) head: usize,
    pub(super) kv_slot: u32,
    pub(super) accum: u32,
}

/// Consecutive cells of one layer whose accumulators are consecutive in one buffer, pooled by
/// one set of dispatches (workgroup z = member); each key head is uploaded once.
pub(super) struct Batch {
    pub(super) layer: usize,
    /// Ordered by key head, so that the members of a GQA group are consecutive (one row-kernel
    /// dispatch each, over the group's key head).
    pub(super) members: Vec<Member>,
    pub(super) kv_heads: Vec<usize>,
    pub(super) accum: wgpu::Buffer,
}

impl Batch {
    /// Per key-head slot: its first member and how many members read it.
    pub(super) fn groups(&self) -> impl Iterator<Item = (u32, u32, u32)> + '_ {
        self.members
            .chunk_by(|a, b| a.kv_slot == b.kv_slot)
            .scan(0u32, |first, group| {
                let z0 = *first;
                *first += group.len() as u32;
                Some((group[0].kv_slot, z0, group.len() as u32))
            })
    }
}

/// How the one-pass path cuts its work: heads per batch and query rows per chunk, so that a
/// batch's Q and K and a chunk's (row, pooled column) states each fit one binding and at most
/// an upload chunk's bytes.
#[derive(Clone, Copy)]
pub(super) struct Cuts {
    pub(super) d4: u32,
    pub(super) slice: u32,
    /// Keys per window of the row kernel; 0: the tiled kernel computes the scores.
    pub(super) window: u32,
    /// The row kernel's rows per invocation and keys per subgroup step (1 row, no subgroup
    /// step where the tiled kernel computes the scores).
    pub(super) shape: RowKernelShape,
    /// Bytes of one head's padded Q, and between two key heads' starts in the K buffer (a
    /// whole number of row-kernel windows).
    pub(super) head_q: u64,
    pub(super) head_k: u64,
    pub(super) batch: usize,
    pub(super) chunk_rows: usize,
    /// What becomes of a chunk's scores.
    pub(super) output: Output,
    /// Splits of the keys that a score dispatch per chunk takes side by side (workgroup y),
    /// `split_cols` pooled columns each ([`split_keys`]); 1: none, the keys go a window (or
    /// segment) per dispatch.
    pub(super) splits: u32,
    pub(super) split_cols: u32,
    /// Keys per split of `prob_rows` in a run that stores probabilities (0: the scores'
    /// splits, or none): a multiple of 16, so that each split's stores (a texel of 4 keys in
    /// the chunk texture) stay its own, which the lse run's columns do not promise.
    pub(super) split_len: u32,
    /// [`Output::Stored`] probabilities go straight into a chunk texture that the ingest's
    /// pool pass reads ([`stores_in_texture`]), not into a buffer it copies from.
    pub(super) probs_texture: bool,
}

/// What a run of the row kernel makes of a chunk's scores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Output {
    /// Pooled in place, never stored (`pool_fold`).
    Pooled,
    /// Every probability stored (one head per batch, a chunk within one binding) for the
    /// ingest's pool pass, which masks the keys past the diagonal: those are not written.
    Stored,
    /// Every probability stored to be read as it is: every entry written, masked ones as 0.
    Exact,
}

/// Whether stored probabilities of `cells` can go straight into the pool pass's chunk texture
/// (rows padded to whole texels, [`texture_stride`]; prob_rows writes whole texels), where the
/// adapter asks for it ([`Gpu::probs_in_texture`]): where no layer has a sliding window or
/// chunks (keys outside them, which no row of a workgroup sees, would keep the texture's last
/// chunk: a buffer is cleared before each chunk instead). Otherwise the probabilities are copied from a buffer.
fn stores_in_texture(src: &QkSource, cells: &[(usize, usize)]) -> bool {
    !src.ranged() && cells.iter().all(|&(layer, _)| !src.hidden(layer).any())
}

/// Elements from one row's start to the next's in the chunk texture `prob_rows` writes: the
/// keys rounded up to a whole texel (`prob_stride` in `shaders/qk_probs_texture.wgsl`).
fn texture_stride(keys: usize) -> usize {
    keys.next_multiple_of(4)
}

/// Rows of `keys` f32 probabilities one binding (or chunk texture, its rows padded to a whole
/// texel) holds, whole workgroups of rows (0: not one).
pub(super) fn probability_rows(gpu: &Gpu, keys: usize) -> usize {
    let max_binding = gpu.max_binding().min(max_chunk_bytes(gpu)) as usize;
    max_binding / (texture_stride(keys.max(1)) * 4) / TQ * TQ
}

/// Keys a split of the row kernel's keys takes at least ([`split_keys`]): a tile's worth, so
/// that a workgroup's walk amortizes its start (loading its rows' queries).
pub(super) const MIN_SPLIT_KEYS: usize = 64;

/// Splits of `keys` keys for a chunk of the row kernel (`window` keys a window; 0: the tiled
/// kernel) whose rows are `row_groups` workgroups, and the pooled columns of each (of
/// `pooled_w`): enough splits to give one dispatch `target` workgroups (the adapter's
/// [`Gpu::qk_split_workgroups`]), whole columns each (a bin's state is then one workgroup's)
/// and at least [`MIN_SPLIT_KEYS`] keys each; for the tiled kernel, which walks a split's keys
/// as it walks a segment's, at most [`SEG_KEYS`] keys each. `(1, pooled_w)`, no split, for
/// runs whose probabilities are read as they are (`Output::Exact`: `attnviz attention`), a
/// target of 0, a single split, and tiled splits that columns wider than a segment allow no
/// other way. The row kernel keeps each split's row states in the lse binding: at most
/// `max_splits` of them.
fn split_keys(
    target: u32,
    window: u32,
    output: Output,
    (row_groups, max_splits): (usize, usize),
    pooled_w: usize,
    keys: usize,
) -> (u32, u32) {
    let none = (1, pooled_w as u32);
    let target = target as usize;
    if output == Output::Exact || target == 0 {
        return none;
    }
    let least = if window == 0 {
        keys.div_ceil(SEG_KEYS)
    } else {
        1
    };
    let most = (keys / MIN_SPLIT_KEYS).min(max_splits).clamp(1, pooled_w);
    let want = target.div_ceil(row_groups.max(1)).max(least).clamp(1, most);
    let cols = pooled_w.div_ceil(want);
    let splits = pooled_w.div_ceil(cols);
    // (the widest split: `cols` columns of at most ⌈keys / pooled_w⌉ keys)
    if splits == 1 || (window == 0 && cols * keys.div_ceil(pooled_w) > SEG_KEYS) {
        return none;
    }
    (splits as u32, cols as u32)
}

impl Cuts {
    /// Elements from one stored row's start to the next's in `probs` or `probs_tex`: the keys,
    /// padded to a whole texel in the texture ([`texture_stride`]).
    pub(super) fn prob_stride(&self, keys: usize) -> usize {
        if self.probs_texture {
            texture_stride(keys)
        } else {
            keys
        }
    }

    pub(super) fn new(gpu: &Gpu, src: &QkSource, run: &PoolRun<'_>, output: Output) -> Cuts {
        let materialize = output != Output::Pooled;
        let (d4, slice) = padded(src.dim());
        let window = window_keys(gpu, d4);
        let rows = src.rows().len();
        let pooled_w = run.geometry.pooled_w as usize;
        // (Q, the states and the row lse are also read through textures: one of those holds
        // at most `max_chunk_bytes`)
        let max_binding = gpu.max_binding().min(max_chunk_bytes(gpu));
        let head_q = (rows * d4 as usize * 16) as u64;
        // (at least the 16 keys the row kernel's binding declares when it is not used)
        let k_rows = src.all_keys().next_multiple_of(window.max(16) as usize);
        let head_k = (k_rows * d4 as usize * 16) as u64;
        // The per-(row, pooled column) states take at most the run's state bytes (but always
        // one workgroup's rows of one head): the rows of a chunk are a score dispatch's lanes.
        // Runs that store probabilities keep to the upload chunk's bytes as well; they keep one
        // pooled column, so what bounds their chunk is its rows × keys probabilities, which
        // fill one binding at most (`probability_rows`, below; twice that with the pool pass's
        // texture copy).
        let state_bytes = if materialize {
            run.state_bytes.min(run.chunk_bytes)
        } else {
            run.state_bytes
        };
        let inter_cap = state_bytes
            .min(max_binding)
            .max((TQ * pooled_w * 16) as u64);
        // Stored probabilities: heads of a batch side by side in `probs` (each a chunk's rows),
        // as many as one binding holds whole (short heads: a whole model at short context,
        // where one head's rows are a fraction of one workgroup's lanes); one where they go
        // into a chunk texture or are read as they are.
        let probs_texture =
            output == Output::Stored && gpu.probs_in_texture && stores_in_texture(src, run.cells);
        let most = match output {
            Output::Pooled => MAX_BATCH,
            Output::Stored if !probs_texture => (probability_rows(gpu, src.all_keys())
                / rows.next_multiple_of(TQ))
            .clamp(1, MAX_BATCH),
            _ => 1,
        };
        let batch = most
            .min(run.cells.len())
            .min((max_binding / head_q) as usize)
            .min((max_binding / head_k) as usize)
            .min((inter_cap / (TQ * pooled_w * 16) as u64) as usize)
            .max(1);
        let mut chunk_rows = ((inter_cap / (batch * pooled_w * 16) as u64) as usize / TQ * TQ)
            .clamp(TQ, rows.next_multiple_of(TQ));
        if materialize {
            chunk_rows = chunk_rows.min((probability_rows(gpu, src.all_keys()) / batch).max(TQ));
        }
        // (the tiled kernel: one row, no subgroup step, in the row kernel it never runs)
        let shape = if window > 0 {
            RowKernelShape::new(gpu, d4, rows)
        } else {
            RowKernelShape {
                rows: 1,
                shared_keys: 0,
            }
        };
        // (the row kernel's splits each keep the chunk's row states beside the rows' lse, in
        // one binding; the tiled kernel's keep nothing apart)
        let max_splits = if window > 0 {
            (max_binding / (batch * chunk_rows * 8) as u64).saturating_sub(1) as usize
        } else {
            usize::MAX
        };
        let (splits, split_cols) = split_keys(
            gpu.qk_split_workgroups,
            window,
            output,
            (
                chunk_rows.div_ceil(TQ * shape.rows as usize) * batch,
                max_splits,
            ),
            pooled_w,
            src.all_keys(),
        );
        let split_len = if materialize && splits > 1 {
            src.all_keys()
                .div_ceil(splits as usize)
                .next_multiple_of(16) as u32
        } else {
            0
        };
        Cuts {
            d4,
            slice,
            window,
            shape,
            head_q,
            head_k,
            batch,
            chunk_rows,
            output,
            splits,
            split_cols,
            split_len,
            probs_texture,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keys_fill_the_target_with_whole_columns() {
        let split = |target, row_groups, pooled_w, keys| {
            split_keys(
                target,
                256,
                Output::Pooled,
                (row_groups, 1 << 20),
                pooled_w,
                keys,
            )
        };
        // A 32k head at 2 rows a lane (256 workgroups of rows) into a 1024-px cell: 16 splits
        // of 64 columns, 4096 workgroups.
        assert_eq!(split(4096, 256, 1024, 32768), (16, 64));
        // Rows enough already, a target of 0, a single column: none.
        assert_eq!(split(4096, 8192, 1024, 32768), (1, 1024));
        assert_eq!(split(0, 256, 1024, 32768), (1, 1024));
        assert_eq!(
            split_keys(4096, 256, Output::Stored, (256, 1 << 20), 1, 32768),
            (1, 1)
        );
        // The row kernel's splits fit their row states into one binding: 16 wanted, 5 fit.
        let parts = split_keys(4096, 256, Output::Pooled, (256, 5), 1024, 32768);
        assert_eq!(parts, (5, 205));
        // The tiled kernel: 8 heads of 8192 tokens into 256-px cells (qk-model) are 1024
        // workgroups of 64 rows: 4 splits. At most SEG_KEYS (8192) keys a split: a 32k head
        // with rows enough for 1 split takes 4; one 32768-key column cannot be split.
        let tiled = |target, row_groups, pooled_w, keys| {
            split_keys(
                target,
                0,
                Output::Pooled,
                (row_groups, usize::MAX),
                pooled_w,
                keys,
            )
        };
        assert_eq!(tiled(4096, 1024, 256, 8192), (4, 64));
        assert_eq!(tiled(4096, 8192, 1024, 32768), (4, 256));
        assert_eq!(tiled(4096, 8192, 1, 32768), (1, 1));
        assert_eq!(tiled(4096, 8192, 3, 32768), (1, 3));
        // At least 64 keys a split, at most a column each; uneven columns: the last split
        // takes the rest.
        assert_eq!(split(1 << 20, 1, 50, 200), (3, 17));
        assert_eq!(split(1 << 20, 1, 64, 9000), (64, 1));
        assert_eq!(split(1 << 20, 1, 1024, 63), (1, 1024));
        for (target, groups, w, keys) in [(4096, 7, 1000, 5000), (100, 3, 23, 200), (9, 1, 7, 7)] {
            let (s, cols) = split(target, groups, w, keys);
            assert!(s >= 1 && (s - 1) * cols < w as u32 && s * cols >= w as u32);
        }
    }

    #[test]
    fn probabilities_go_into_the_chunk_texture_where_no_layer_has_a_window() {
        use crate::source::qk::QkOptions;
        use crate::source::qk_meta::{CaptureMeta, LayerAttention};
        use crate::source::{ArraySource, AttentionSource};
        let source = |n: usize, window: Option<usize>| {
            let tensor = || {
                let a = ndarray::Array4::<f32>::zeros((2, 1, n, 8));
                Box::new(ArraySource::from_f32("t", &a)) as Box<dyn AttentionSource>
            };
            let layer = |index, sliding_window| LayerAttention {
                index: Some(index),
                causal: Some(true),
                sliding_window,
                ..Default::default()
            };
            let options = QkOptions {
                meta: Some(CaptureMeta {
                    layers: vec![layer(0, None), layer(1, window)],
                    ..Default::default()
                }),
                ..Default::default()
            };
            QkSource::new(tensor(), tensor(), &options).unwrap()
        };
        let both = [(0, 0), (1, 0)];
        assert!(stores_in_texture(&source(321, None), &both));
        // keys before layer 1's window are never visited, only cleared in a buffer
        assert!(!stores_in_texture(&source(320, Some(50)), &both));
        assert!(stores_in_texture(&source(320, Some(50)), &[(0, 0)]));
        // rows of 321 keys start 324 elements apart, on a texel
        assert_eq!((texture_stride(321), texture_stride(324)), (324, 324));
    }
}
