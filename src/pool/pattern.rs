//! Per-head pattern statistics ("which heads matter"): plain data shared by the GPU pass
//! (`shaders/pattern.wgsl`, `pool::pattern_gpu`) and its CPU twin (`cpu::pattern`). Both
//! produce the same raw sums ([`PatternSums`]); [`PatternSums::finish`] turns them into the
//! reported [`HeadPattern`] and its label, so the two paths differ only in how they add.
//!
//! Row `q` of a head of Q rows and K keys sits at absolute position `a = q + K − Q`. Masked
//! entries (above the causal diagonal when the mask is on) and non-finite entries are left out;
//! the latter are counted. Values are used as given (`--norm row` does not apply).

/// Keys and offsets listed in `top_keys` and `top_offsets`.
pub const TOP: usize = 8;
/// Side of the blocks whose masses feed the block-sparse recall (MInference's), for heads of
/// at least 8 such blocks along their longer side; shorter heads take smaller blocks (down to
/// [`MIN_BLOCK`]), and a head that would need more than [`MAX_BLOCKS`] doubles the side until it
/// fits ([`block_side`]).
pub const BLOCK: usize = 64;
/// The smallest block side: the GPU adds a block's mass from whole groups of 16 keys
/// (`GROUP_KEYS` in `shaders/pattern.wgsl`), so a side is a multiple of 16.
pub const MIN_BLOCK: usize = 16;
/// Blocks along a head's longer side below which the side halves (towards [`MIN_BLOCK`]): with
/// 64-token blocks a 64-token head would be one block, its heaviest eighth the whole head, and
/// every such head "block-sparse".
pub const BLOCKS_PER_SIDE: usize = 8;
/// Blocks kept per head at most (256 KiB of f32): bounds the block masses by a constant per
/// head whatever the sequence length (a 16k × 16k head still has 64-token blocks).
pub const MAX_BLOCKS: usize = 1 << 16;
/// The best recall must reach this for a head to get a pattern label; below it, `mixed`.
pub const RECALL_THRESHOLD: f64 = 0.6;
/// A simpler mask wins over the best one when its recall is within this margin: the
/// vertical-slash mask contains the A-shape's columns and diagonals as candidates, so it almost
/// always recalls a little more.
pub const SIMPLER_MARGIN: f64 = 0.05;
/// An A-shape head is `sink` only when its first keys hold more than its band by this fraction
/// of the band: where both hold the same mass (rows that see only the first keys, as the first
/// rows of a causal head do), the GPU's f32 sums and the CPU's f64 ones would otherwise break
/// the tie either way. Far above the statistics' stated 1e-5 tolerance, far below any real
/// difference.
pub const SINK_TIE: f64 = 1e-4;

/// Every label [`HeadPattern::pattern`] takes, in the order the summary figure's legend lists
/// them: the four masks of the rule, simplest first, then `mixed` for heads none of them fits.
pub const PATTERNS: [&str; 5] = ["sink", "local", "vertical-slash", "block-sparse", "mixed"];

/// What the pattern statistics measure: `--sink-keys` and `--window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PatternOptions {
    /// `sink_mass` counts keys `k < sink_keys`.
    pub sink_keys: u32,
    /// `local_mass` counts keys with `|a − k| < window`.
    pub window: u32,
}

impl Default for PatternOptions {
    fn default() -> Self {
        PatternOptions {
            sink_keys: 1,
            window: 32,
        }
    }
}

/// Block side for a `queries` × `keys` head: [`BLOCK`], halved (to [`MIN_BLOCK`] at least) while
/// the longer side holds fewer than [`BLOCKS_PER_SIDE`] blocks, then doubled until at most
/// [`MAX_BLOCKS`] blocks cover the head. Always a multiple of [`MIN_BLOCK`].
pub fn block_side(queries: usize, keys: usize) -> usize {
    let longer = queries.max(keys);
    let mut side = BLOCK;
    while side > MIN_BLOCK && longer < BLOCKS_PER_SIDE * side {
        side /= 2;
    }
    while queries.div_ceil(side) * keys.div_ceil(side) > MAX_BLOCKS {
        side *= 2;
    }
    side
}

/// The raw sums of one head, over all its rows: what both the GPU pass and the CPU twin
/// accumulate. Masses are sums over rows (divide by `queries` for means).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PatternSums {
    pub queries: usize,
    pub keys: usize,
    /// Where row 0 sits, in key indices: row `q` is at absolute position `a = q + position0`.
    /// The source's diagonal ([`crate::AttentionSource::diagonal`]): `K − Q` for a whole head
    /// or its last rows, and a `--queries A..B` slice's own, so that its rows keep their
    /// distances to the keys.
    pub position0: i64,
    /// The index of row 0 among the input's query rows (`A` for a `--queries A..B` slice), which
    /// `argmax` reports rows by.
    pub row0: usize,
    /// Side of the blocks of `blocks`.
    pub block: usize,
    pub row_sum: f64,
    pub sink: f64,
    pub local: f64,
    pub entropy: f64,
    pub distance: f64,
    /// The largest entry and where it sits (first in row-major order on ties).
    pub max: Option<(f32, usize, usize)>,
    /// Non-finite, unmasked entries, left out of everything else.
    pub non_finite: u64,
    /// Column masses Σ_q p[q, k], K of them.
    pub columns: Vec<f64>,
    /// Diagonal masses by offset `a − k`, index `offset + Q − 1` (offsets 1 − Q ..= K − 1).
    pub diagonals: Vec<f64>,
    /// Block masses, row-major, `ceil(K / block)` per block row.
    pub blocks: Vec<f64>,
}

/// How much of a head's mass each candidate mask of the same budget recalls (0..1).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Recalls {
    /// The first `m` keys plus the diagonals with `|a − k| < m` (`m = ceil(K / 16)`).
    pub a_shape: f64,
    /// The `m` heaviest columns plus the `m` heaviest diagonals.
    pub vertical_slash: f64,
    /// The heaviest eighth of the blocks.
    pub block_sparse: f64,
}

/// One head's pattern statistics, as `attnviz heads` reports them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HeadPattern {
    pub sink_mass: f64,
    pub local_mass: f64,
    pub entropy: f64,
    pub mean_distance: f64,
    pub row_sum_mean: f64,
    /// `None` when the head has no finite, unmasked entry.
    pub max: Option<f32>,
    /// `[q, k]`, 0-based.
    pub argmax: Option<[usize; 2]>,
    /// `(key, column mass / Q)`, heaviest first; keys with no mass at all (every entry 0,
    /// masked or not finite) are not listed, so a head with fewer than [`TOP`] such keys lists
    /// fewer rather than padding the list with empty columns that look like picks.
    pub top_keys: Vec<(usize, f64)>,
    /// `(offset a − k, diagonal mass / Q)`, heaviest first; likewise without empty diagonals.
    pub top_offsets: Vec<(i64, f64)>,
    pub non_finite: u64,
    pub recalls: Recalls,
    pub pattern: &'static str,
}

/// Selected cells ((layer, head), 0-based) and their statistics, in the same order.
pub type CellPatterns = (Vec<(usize, usize)>, Vec<HeadPattern>);

/// The scalar statistics a grid can be sorted by (`--sort-by`).
pub const METRICS: [&str; 6] = [
    "sink_mass",
    "local_mass",
    "entropy",
    "mean_distance",
    "max",
    "row_sum_mean",
];

impl HeadPattern {
    /// The scalar statistic named `name` (one of [`METRICS`]).
    pub fn metric(&self, name: &str) -> Option<f64> {
        Some(match name {
            "sink_mass" => self.sink_mass,
            "local_mass" => self.local_mass,
            "entropy" => self.entropy,
            "mean_distance" => self.mean_distance,
            "max" => self.max.map_or(f64::NAN, f64::from),
            "row_sum_mean" => self.row_sum_mean,
            _ => return None,
        })
    }
}

/// Indices of the `n` largest values, largest first, lower index first on ties: the `n` first
/// picked in linear time, then only they sorted (a 64-head grid's columns and diagonals took a
/// full sort 15 ms of a render; the order is total, so the result is the full sort's).
fn top_indices(values: &[f64], n: usize) -> Vec<usize> {
    let order = |a: &usize, b: &usize| values[*b].total_cmp(&values[*a]).then(a.cmp(b));
    let mut idx: Vec<usize> = (0..values.len()).collect();
    if n < idx.len() {
        idx.select_nth_unstable_by(n, order);
        idx.truncate(n);
    }
    idx.sort_unstable_by(order);
    idx
}

impl PatternSums {
    /// Empty sums of a `queries` × `keys` head whose rows are its last (bottom-right aligned:
    /// `position0 = K − Q`, `row0 = 0`; [`PatternSums::placed`] says otherwise).
    pub fn new(queries: usize, keys: usize) -> PatternSums {
        let block = block_side(queries, keys);
        PatternSums {
            queries,
            keys,
            position0: keys as i64 - queries as i64,
            block,
            columns: vec![0.0; keys],
            diagonals: vec![0.0; (queries + keys).saturating_sub(1)],
            blocks: vec![0.0; queries.div_ceil(block) * keys.div_ceil(block)],
            ..Default::default()
        }
    }

    /// The same sums for rows at `position0` (the source's diagonal) and numbered from `row0`.
    pub fn placed(self, position0: i64, row0: usize) -> PatternSums {
        PatternSums {
            position0,
            row0,
            ..self
        }
    }

    /// Index into `diagonals` of the offset `a − k = 0`: index `i` holds offset
    /// `i − zero_offset()` (offsets `position0 − K + 1 ..= position0 + Q − 1`).
    pub fn zero_offset(&self) -> i64 {
        self.keys as i64 - 1 - self.position0
    }

    /// The reported statistics: means over rows, the top keys and offsets, the recalls of each
    /// candidate mask and the label they give.
    pub fn finish(&self) -> HeadPattern {
        let q = self.queries.max(1) as f64;
        let offset0 = self.zero_offset();
        let recalls = self.recalls();
        HeadPattern {
            sink_mass: self.sink / q,
            local_mass: self.local / q,
            // (+ 0.0: a head with no p ln p term, one-hot rows or none finite, reads 0, not −0)
            entropy: self.entropy / q + 0.0,
            mean_distance: self.distance / q,
            row_sum_mean: self.row_sum / q,
            max: self.max.map(|m| m.0),
            argmax: self.max.map(|m| [self.row0 + m.1, m.2]),
            top_keys: top_indices(&self.columns, TOP)
                .into_iter()
                .filter(|&k| self.columns[k] != 0.0)
                .map(|k| (k, self.columns[k] / q))
                .collect(),
            top_offsets: top_indices(&self.diagonals, TOP)
                .into_iter()
                .filter(|&j| self.diagonals[j] != 0.0)
                .map(|j| (j as i64 - offset0, self.diagonals[j] / q))
                .collect(),
            non_finite: self.non_finite,
            pattern: self.label(&recalls),
            recalls,
        }
    }

    /// Columns (and diagonals) in the A-shape and vertical-slash budgets.
    fn budget(&self) -> usize {
        self.keys.div_ceil(16).max(1)
    }

    /// The A-shape's two parts: the mass of the first `m` keys, and of the diagonals with
    /// `|a − k| < m` (for causal heads only the side at or before the query holds mass).
    fn a_shape_parts(&self) -> (f64, f64) {
        let m = self.budget();
        let first: f64 = self.columns.iter().take(m).sum();
        // offsets −(m − 1) ..= m − 1, those the head has
        let zero = self.zero_offset();
        let len = self.diagonals.len() as i64;
        let lo = (zero - m as i64 + 1).clamp(0, len) as usize;
        let hi = (zero + m as i64).clamp(0, len) as usize;
        let band: f64 = self.diagonals[lo..hi.max(lo)].iter().sum();
        (first, band)
    }

    /// Mass recalled by each candidate mask, over the head's total mass. Column and diagonal
    /// masks add their masses without subtracting the entries where a chosen column crosses a
    /// chosen diagonal (at most one entry per pair), so both are capped at 1.
    pub fn recalls(&self) -> Recalls {
        let total: f64 = self.columns.iter().sum();
        if total <= 0.0 {
            return Recalls::default();
        }
        let m = self.budget();
        let sum_at = |v: &[f64], idx: &[usize]| idx.iter().map(|&i| v[i]).sum::<f64>();
        let (first, band) = self.a_shape_parts();
        let cols = sum_at(&self.columns, &top_indices(&self.columns, m));
        let diags = sum_at(&self.diagonals, &top_indices(&self.diagonals, m));
        // An eighth of the blocks, rounded down: a head of fewer than 8 blocks has no mask within
        // the budget (one block would be more than an eighth of it), so recalls nothing.
        let nb = self.blocks.len() / 8;
        let blocks = match nb {
            // (not an empty sum: Rust's f64 sum of nothing is -0.0, printed "-0")
            0 => 0.0,
            _ => sum_at(&self.blocks, &top_indices(&self.blocks, nb)),
        };
        Recalls {
            a_shape: ((first + band) / total).min(1.0),
            vertical_slash: ((cols + diags) / total).min(1.0),
            block_sparse: (blocks / total).min(1.0),
        }
    }

    /// The label: `mixed` when no mask recalls [`RECALL_THRESHOLD`]; else the simplest mask
    /// (A-shape, then vertical-slash, then block-sparse) within [`SIMPLER_MARGIN`] of the best.
    /// An A-shape head is `sink` when its first keys hold more than its local band, else
    /// `local`.
    fn label(&self, r: &Recalls) -> &'static str {
        let best = r.a_shape.max(r.vertical_slash).max(r.block_sparse);
        if best < RECALL_THRESHOLD {
            return "mixed";
        }
        if r.a_shape >= best - SIMPLER_MARGIN {
            let (first, band) = self.a_shape_parts();
            return if first > band * (1.0 + SINK_TIE) {
                "sink"
            } else {
                "local"
            };
        }
        if r.vertical_slash >= best - SIMPLER_MARGIN {
            return "vertical-slash";
        }
        "block-sparse"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_side_bounds_the_blocks() {
        assert_eq!(block_side(100, 100), 16);
        assert_eq!(block_side(128, 128), 16);
        assert_eq!(block_side(256, 256), 32);
        assert_eq!(block_side(1, 256), 32);
        assert_eq!(block_side(300, 100), 32);
        assert_eq!(block_side(512, 512), 64);
        assert_eq!(block_side(16384, 16384), 64);
        assert_eq!(block_side(10, 10), 16);
        assert_eq!(block_side(65536, 65536), 256);
        assert!(
            65536usize.div_ceil(block_side(65536, 1 << 20))
                * (1usize << 20).div_ceil(block_side(65536, 1 << 20))
                <= MAX_BLOCKS
        );
    }

    #[test]
    fn empty_columns_are_not_top_picks_and_no_entropy_reads_plus_zero() {
        // a 2 × 4 head whose rows put all their mass on key 1: one column, one diagonal
        // (offset a − k = 2 − 1 and 3 − 1), no p ln p term
        let mut s = PatternSums::new(2, 4);
        s.columns[1] = 2.0;
        s.diagonals[1 + 1] = 1.0;
        s.diagonals[2 + 1] = 1.0;
        s.row_sum = 2.0;
        s.entropy = -0.0;
        let p = s.finish();
        assert_eq!(p.top_keys, vec![(1, 1.0)]);
        assert_eq!(p.top_offsets, vec![(1, 0.5), (2, 0.5)]);
        assert!(
            p.entropy == 0.0 && p.entropy.is_sign_positive(),
            "{}",
            p.entropy
        );
        // nothing finite: no picks at all
        let p = PatternSums::new(2, 4).finish();
        assert!(p.top_keys.is_empty() && p.top_offsets.is_empty(), "{p:?}");
    }

    #[test]
    fn top_indices_break_ties_by_index() {
        assert_eq!(top_indices(&[1.0, 3.0, 3.0, 0.5], 3), vec![1, 2, 0]);
        // every n, against a full sort, with ties and NaN
        let v = [2.0, f64::NAN, 5.0, 2.0, -1.0, 5.0, 0.0, 2.0];
        let mut all: Vec<usize> = (0..v.len()).collect();
        all.sort_by(|&a, &b| v[b].total_cmp(&v[a]).then(a.cmp(&b)));
        for n in 0..=v.len() + 1 {
            assert_eq!(top_indices(&v, n), all[..n.min(v.len())], "n = {n}");
        }
    }
}
