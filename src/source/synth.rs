//! Synthetic long-context attention, generated row by row from a seed: attention sinks, vertical
//! columns, a local window (slash diagonal), block-sparse blocks and optional causal masking,
//! all in every head or one kind per head (`--pattern kinds`, [`Planted`]); or a single hot entry
//! in faint noise, the hardest case for downsampling. Any size, any row in any
//! order, in memory bounded by one row, so it feeds tests, benchmarks and `attnviz synth`.

use super::{AttentionSource, DType, Shape};
use crate::error::{Error, Result};

/// What the synthetic heads look like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// Softmax attention with sinks, columns, a local window and block-sparse blocks.
    Attention,
    /// 1e-6-scale noise with one entry of exactly 1.0 at [`SynthSpec::hot_entry`].
    Hot,
    /// Softmax attention where each head carries one planted kind ([`Synth::planted`]), as a
    /// model's heads differ: what `attnviz heads` must tell apart.
    Kinds,
}

/// The one pattern a [`Pattern::Kinds`] head carries, named as `attnviz heads` labels it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Planted {
    /// Key 0 (and keys 1, 2 for some heads) hold most of every row.
    Sink,
    /// A band of keys around the query's own position.
    Local,
    /// The planted columns ([`Synth::planted_columns`]) and two slash diagonals.
    VerticalSlash,
    /// A few 64 × 64 blocks per block row ([`Synth::planted_blocks`]).
    BlockSparse,
    /// Nothing planted: noise only, no mask recalls most of it.
    Diffuse,
}

impl Planted {
    /// The `pattern` label `attnviz heads` must give the head.
    pub fn label(self) -> &'static str {
        match self {
            Planted::Sink => "sink",
            Planted::Local => "local",
            Planted::VerticalSlash => "vertical-slash",
            Planted::BlockSparse => "block-sparse",
            Planted::Diffuse => "mixed",
        }
    }
}

/// Side of the blocks [`Pattern::Kinds`] plants: the statistics' block size.
const KIND_BLOCK: usize = 64;

/// Parameters of a synthetic tensor.
#[derive(Clone, Debug)]
pub struct SynthSpec {
    pub seq: usize,
    pub layers: usize,
    pub heads: usize,
    pub dtype: DType,
    pub seed: u64,
    pub causal: bool,
    pub pattern: Pattern,
}

impl SynthSpec {
    /// (query, key) of the single 1.0 entry of the `Hot` pattern.
    pub fn hot_entry(&self) -> (usize, usize) {
        let q = (self.seq as u64 * 3 / 7) as usize;
        let k = (self.seq as u64 * 5 / 9) as usize;
        if self.causal {
            (q.max(k), k)
        } else {
            (q, k)
        }
    }
}

/// A synthetic tensor, readable like a file.
pub struct Synth {
    spec: SynthSpec,
    name: String,
    /// Per head: the key columns that attract attention.
    columns: Vec<Vec<u32>>,
}

impl Synth {
    pub fn new(spec: SynthSpec) -> Result<Synth> {
        if spec.seq == 0 || spec.layers == 0 || spec.heads == 0 {
            return Err(Error::BadOption(
                "synth: --seq, --layers and --heads must be positive".into(),
            ));
        }
        let columns = (0..spec.layers * spec.heads)
            .map(|i| {
                let n = (spec.seq / 2048).clamp(2, 64);
                (0..n as u64)
                    .map(|j| {
                        (unit(spec.seed, i as u64, j, 1) * spec.seq as f32) as u32 % spec.seq as u32
                    })
                    .collect()
            })
            .collect();
        Ok(Synth {
            name: format!(
                "synthetic {}x{}x{}x{} {}",
                spec.layers,
                spec.heads,
                spec.seq,
                spec.seq,
                spec.dtype.name()
            ),
            spec,
            columns,
        })
    }

    /// The key columns planted in head (`layer`, `head`) (`Pattern::Attention`): what pattern
    /// statistics must find.
    pub fn planted_columns(&self, layer: usize, head: usize) -> &[u32] {
        &self.columns[layer * self.spec.heads + head]
    }

    /// What head (`layer`, `head`) carries under [`Pattern::Kinds`]: the kinds in turn along
    /// the heads, shifted by one each layer, so every kind appears in every layer and column
    /// of a large enough grid.
    pub fn planted(&self, layer: usize, head: usize) -> Planted {
        const KINDS: [Planted; 5] = [
            Planted::Sink,
            Planted::Local,
            Planted::VerticalSlash,
            Planted::BlockSparse,
            Planted::Diffuse,
        ];
        KINDS[(layer + head) % KINDS.len()]
    }

    /// The slash diagonals a [`Planted::VerticalSlash`] head carries: offsets `a − k` (a
    /// quarter and a half of the sequence, past the A-shape's band).
    pub fn planted_offsets(&self) -> [usize; 2] {
        [self.spec.seq / 4, self.spec.seq / 2]
    }

    /// The 64 × 64 blocks a [`Planted::BlockSparse`] head carries in block row `bq`: two key
    /// blocks (one when both draws agree; causal heads choose at or left of the diagonal), so
    /// they fit the block-sparse mask's budget of an eighth of the blocks from 1024 tokens on.
    pub fn planted_blocks(&self, layer: usize, head: usize, bq: usize) -> Vec<usize> {
        let id = (layer * self.spec.heads + head) as u64;
        let blocks = self.spec.seq.div_ceil(KIND_BLOCK);
        let choices = if self.spec.causal { bq + 1 } else { blocks };
        let mut out: Vec<usize> = (0..2u64)
            .map(|j| (unit(self.spec.seed, id, bq as u64, 16 + j) * choices as f32) as usize)
            .map(|b| b.min(choices - 1))
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// One row of head (`layer`, `head`) as f32.
    pub fn row(&self, layer: usize, head: usize, q: usize, out: &mut [f32]) {
        let s = &self.spec;
        let n = s.seq;
        let id = (layer * s.heads + head) as u64;
        let seed = s.seed ^ id.wrapping_mul(0xA24B_AED4_963E_E407);
        match s.pattern {
            Pattern::Hot => {
                let (hq, hk) = s.hot_entry();
                for (k, o) in out.iter_mut().enumerate() {
                    *o = if s.causal && k > q {
                        0.0
                    } else {
                        1e-6 * (0.5 + unit(seed, q as u64, k as u64, 2))
                    };
                }
                if q == hq && layer == 0 && head == 0 {
                    out[hk] = 1.0;
                }
            }
            Pattern::Attention => {
                let window = 8 + 8 * (id as usize % 4);
                let block = (n / 16).max(1);
                let sinks = 1 + id as usize % 3;
                let cols = &self.columns[id as usize];
                let visible = if s.causal { q + 1 } else { n };
                let bq = q / block;
                let mut max = f32::MIN;
                for (k, o) in out.iter_mut().enumerate().take(visible) {
                    let mut logit = unit(seed, q as u64, k as u64, 3);
                    if k < sinks {
                        logit += if k == 0 { 4.5 } else { 3.0 };
                    }
                    if q.abs_diff(k) <= window {
                        logit += 3.5;
                    }
                    if unit(seed, bq as u64, (k / block) as u64, 4) < 0.08 {
                        logit += 2.0;
                    }
                    *o = logit;
                    max = max.max(logit);
                }
                for &c in cols {
                    if (c as usize) < visible {
                        out[c as usize] += 4.0;
                        max = max.max(out[c as usize]);
                    }
                }
                let mut sum = 0.0f64;
                for o in out.iter_mut().take(visible) {
                    *o = (*o - max).exp();
                    sum += *o as f64;
                }
                let inv = (1.0 / sum) as f32;
                for o in out.iter_mut().take(visible) {
                    *o *= inv;
                }
                for o in out.iter_mut().skip(visible) {
                    *o = 0.0;
                }
            }
            Pattern::Kinds => self.kind_row(layer, head, q, seed, out),
        }
    }

    /// A [`Pattern::Kinds`] row: noise logits in [0, 1), the head's planted kind raised well
    /// above them, softmax over the visible keys.
    fn kind_row(&self, layer: usize, head: usize, q: usize, seed: u64, out: &mut [f32]) {
        let s = &self.spec;
        let n = s.seq;
        let visible = if s.causal { q + 1 } else { n };
        for (k, o) in out.iter_mut().enumerate().take(visible) {
            *o = unit(seed, q as u64, k as u64, 5);
        }
        let id = layer * s.heads + head;
        match self.planted(layer, head) {
            Planted::Sink => {
                let sinks = (1 + id % 3).min(visible);
                for (k, o) in out[..sinks].iter_mut().enumerate() {
                    *o += if k == 0 { 10.0 } else { 8.0 };
                }
            }
            Planted::Local => {
                let w = 8 + 8 * (id % 3);
                let lo = q.saturating_sub(w - 1);
                for o in &mut out[lo..visible.min(q + w)] {
                    *o += 6.0;
                }
            }
            Planted::VerticalSlash => {
                for &c in self.planted_columns(layer, head) {
                    if (c as usize) < visible {
                        out[c as usize] += 8.0;
                    }
                }
                for d in self.planted_offsets() {
                    if let Some(k) = q.checked_sub(d) {
                        out[k] += 8.0;
                    }
                }
            }
            Planted::BlockSparse => {
                for b in self.planted_blocks(layer, head, q / KIND_BLOCK) {
                    let keys = b * KIND_BLOCK..((b + 1) * KIND_BLOCK).min(visible);
                    for o in &mut out[keys] {
                        *o += 6.0;
                    }
                }
            }
            Planted::Diffuse => {}
        }
        let max = out[..visible].iter().copied().fold(f32::MIN, f32::max);
        let mut sum = 0.0f64;
        for o in out.iter_mut().take(visible) {
            *o = (*o - max).exp();
            sum += *o as f64;
        }
        let inv = (1.0 / sum) as f32;
        for o in out.iter_mut().take(visible) {
            *o *= inv;
        }
        for o in out.iter_mut().skip(visible) {
            *o = 0.0;
        }
    }
}

/// A deterministic uniform value in [0, 1) from four integers (splitmix64 finalizer).
pub(crate) fn unit(a: u64, b: u64, c: u64, d: u64) -> f32 {
    let mut z = a
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(b.wrapping_mul(0xBF58_476D_1CE4_E5B9))
        .wrapping_add(c.wrapping_mul(0x94D0_49BB_1331_11EB))
        .wrapping_add(d);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 40) as f32 / (1u64 << 24) as f32
}

/// Encodes f32 values as little-endian `dtype` bytes (round to nearest for the halves).
pub fn encode(dtype: DType, values: &[f32], out: &mut [u8]) {
    match dtype {
        DType::F32 => {
            for (v, o) in values.iter().zip(out.chunks_exact_mut(4)) {
                o.copy_from_slice(&v.to_le_bytes());
            }
        }
        DType::F16 => {
            for (v, o) in values.iter().zip(out.chunks_exact_mut(2)) {
                o.copy_from_slice(&half::f16::from_f32(*v).to_le_bytes());
            }
        }
        DType::BF16 => {
            for (v, o) in values.iter().zip(out.chunks_exact_mut(2)) {
                o.copy_from_slice(&half::bf16::from_f32(*v).to_le_bytes());
            }
        }
    }
}

impl AttentionSource for Synth {
    fn name(&self) -> &str {
        &self.name
    }

    fn shape(&self) -> Shape {
        Shape {
            layers: self.spec.layers,
            heads: self.spec.heads,
            queries: self.spec.seq,
            keys: self.spec.seq,
        }
    }

    fn dtype(&self) -> DType {
        self.spec.dtype
    }

    fn read_rows(&self, layer: usize, head: usize, row_start: usize, dst: &mut [u8]) -> Result<()> {
        super::row_range(
            &self.name,
            self.shape(),
            self.spec.dtype,
            layer,
            head,
            row_start,
            dst.len(),
        )?;
        let row_bytes = self.spec.seq * self.spec.dtype.size();
        let rows = dst.len() / row_bytes;
        // Rows are independent: generate them on every core.
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(rows.max(1));
        let per = rows.div_ceil(threads);
        std::thread::scope(|scope| {
            for (t, part) in dst.chunks_mut(per * row_bytes).enumerate() {
                scope.spawn(move || {
                    let mut row = vec![0f32; self.spec.seq];
                    for (i, out) in part.chunks_exact_mut(row_bytes).enumerate() {
                        self.row(layer, head, row_start + t * per + i, &mut row);
                        encode(self.spec.dtype, &row, out);
                    }
                });
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(pattern: Pattern, causal: bool) -> SynthSpec {
        SynthSpec {
            seq: 300,
            layers: 1,
            heads: 2,
            dtype: DType::F32,
            seed: 7,
            causal,
            pattern,
        }
    }

    #[test]
    fn attention_rows_are_distributions() {
        let s = Synth::new(spec(Pattern::Attention, true)).unwrap();
        let mut row = vec![0f32; 300];
        for q in [0, 1, 150, 299] {
            s.row(0, 1, q, &mut row);
            let sum: f64 = row.iter().map(|&v| v as f64).sum();
            assert!((sum - 1.0).abs() < 1e-4, "row {q} sums to {sum}");
            assert!(row[q + 1..].iter().all(|&v| v == 0.0), "causal row {q}");
        }
        // The sink dominates: key 0 gets more than an average key.
        s.row(0, 0, 200, &mut row);
        assert!(row[0] > 10.0 / 300.0);
    }

    #[test]
    fn hot_pattern_has_one_hot_entry() {
        let s = Synth::new(spec(Pattern::Hot, false)).unwrap();
        let (hq, hk) = s.spec.hot_entry();
        let mut row = vec![0f32; 300];
        s.row(0, 0, hq, &mut row);
        assert_eq!(row[hk], 1.0);
        assert!(row.iter().enumerate().all(|(k, &v)| k == hk || v < 2e-6));
    }

    #[test]
    fn deterministic() {
        let a = Synth::new(spec(Pattern::Attention, false)).unwrap();
        let b = Synth::new(spec(Pattern::Attention, false)).unwrap();
        let (mut x, mut y) = (vec![0u8; 1200 * 3], vec![0u8; 1200 * 3]);
        a.read_rows(0, 1, 10, &mut x).unwrap();
        b.read_rows(0, 1, 10, &mut y).unwrap();
        assert_eq!(x, y);
    }
}
