//! Synthetic queries and keys whose attention looks like a long-context model's: an attention
//! sink on the first token, a few other sink-like key columns, and a local window around the
//! diagonal. Q and K are O(N·d), so even a 131072-token head is generated in memory at once.
//!
//! Construction (scores before the softmax scale 1/√d): dimension 0 carries the sinks
//! (every query has 1 there; key 0 and a sparse set of keys have a large value); then pairs of
//! dimensions hold rotary-style phases cos/sin(ω·position) at geometrically spaced frequencies,
//! whose dot product Σ cos(ω·(i − j)) peaks at i = j and decorrelates with distance (the local
//! window); the rest is small noise, for texture.

use std::path::Path;

use crate::error::{Error, Result};
use crate::files::write_atomic;
use crate::source::{unit, DType};

/// What to generate.
#[derive(Clone, Copy, Debug)]
pub struct QkSpec {
    pub layers: usize,
    pub heads: usize,
    /// Key heads (grouped-query attention when fewer than `heads`).
    pub kv_heads: usize,
    pub seq: usize,
    pub dim: usize,
    pub seed: u64,
}

/// Scores (in nats, after the 1/√d scale) of the three features.
const SINK: f32 = 12.0;
const COLUMN: f32 = 10.0;
const WINDOW: f32 = 12.0;

impl QkSpec {
    fn check(&self) -> Result<()> {
        if self.layers == 0 || self.heads == 0 || self.kv_heads == 0 || self.seq == 0 {
            return Err(Error::BadOption(
                "synth-qk: every size must be positive".into(),
            ));
        }
        if self.dim < 8 || self.dim > super::qk::MAX_DIM {
            return Err(Error::BadOption(format!(
                "synth-qk: --dim {} is outside 8..={}",
                self.dim,
                super::qk::MAX_DIM
            )));
        }
        if !self.heads.is_multiple_of(self.kv_heads) {
            return Err(Error::BadOption(format!(
                "synth-qk: --heads {} is not a multiple of --kv-heads {}",
                self.heads, self.kv_heads
            )));
        }
        let total = self.layers * self.heads.max(self.kv_heads) * self.seq * self.dim;
        if total > 1 << 30 {
            return Err(Error::BadOption(format!(
                "synth-qk: {total} values per tensor is more than this generator holds in memory"
            )));
        }
        Ok(())
    }

    /// Rotary pairs; the remaining dimensions after the sink and the pairs are noise.
    fn pairs(&self) -> usize {
        (self.dim - 1 - self.dim / 4) / 2
    }

    /// One row (position `pos`) of Q (`is_key` false) or K. The pattern (window width, sink
    /// columns) follows key head `kv` so the query heads of a group attend alike; `head` (the
    /// query head) varies the window's strength and the noise.
    fn row(&self, layer: usize, kv: usize, head: usize, pos: usize, is_key: bool, out: &mut [f32]) {
        let d = self.dim as f32;
        let f = self.pairs();
        let group = self.heads / self.kv_heads;
        let h = (layer * 131 + kv) as u64;
        let head_gain = 1.0 - 0.25 * (head % group) as f32 / group as f32;
        // A score s (nats) needs a raw dot product of s·√d.
        let root = d.sqrt();
        // Heads differ in window width (wavelengths up to 32..256 tokens) and sink layout.
        let longest = 32.0 * (1 << (kv % 4)) as f32;
        let sink_col = unit(self.seed, h, pos as u64, 7) < 2e-4 * (1.0 + (kv % 3) as f32);
        out[0] = if !is_key {
            1.0
        } else if pos == 0 {
            SINK * root
        } else if sink_col {
            COLUMN * root
        } else {
            0.0
        };
        // Σ_f c² cos(ω_f (i − j)) = WINDOW·√d at i = j.
        let c = (WINDOW * root / f as f32).sqrt() * if is_key { 1.0 } else { head_gain };
        for p in 0..f {
            let wavelength = 3.0 * (longest / 3.0).powf(p as f32 / (f - 1).max(1) as f32);
            let phase = std::f64::consts::TAU / wavelength as f64 * pos as f64;
            out[1 + 2 * p] = c * phase.cos() as f32;
            out[2 + 2 * p] = c * phase.sin() as f32;
        }
        let salt = if is_key { 1 } else { 2 + head as u64 };
        for (i, v) in out.iter_mut().enumerate().skip(1 + 2 * f) {
            *v = (unit(self.seed ^ salt, h, pos as u64, i as u64) * 2.0 - 1.0) * 1.5;
        }
    }

    /// Q as (layers, heads, seq, dim) and K as (layers, kv_heads, seq, dim), row-major.
    pub fn generate(&self) -> Result<(Vec<f32>, Vec<f32>)> {
        self.check()?;
        let (n, d) = (self.seq, self.dim);
        let group = self.heads / self.kv_heads;
        let fill = |heads: usize, is_key: bool| {
            let mut v = vec![0f32; self.layers * heads * n * d];
            for (i, head_rows) in v.chunks_mut(n * d).enumerate() {
                let (layer, head) = (i / heads, i % heads);
                let kv = if is_key { head } else { head / group };
                for (pos, row) in head_rows.chunks_mut(d).enumerate() {
                    self.row(layer, kv, head, pos, is_key, row);
                }
            }
            v
        };
        Ok((fill(self.heads, false), fill(self.kv_heads, true)))
    }

    /// Writes tensors `q` and `k` into one .safetensors file (F32, F16 or BF16), atomically.
    /// The name must say `.safetensors`: the readers go by it (safetensors bytes named `.npy`
    /// would be read as a broken `.npy`).
    pub fn write(&self, path: &Path, dtype: DType) -> Result<()> {
        if !crate::source::safetensors::is_safetensors(path) {
            return Err(Error::BadInput {
                path: path.to_path_buf(),
                message: "queries and keys are written as one .safetensors file (tensors q and \
                          k): name it .safetensors"
                    .into(),
            });
        }
        let (q, k) = self.generate()?;
        let shape = |heads| vec![self.layers, heads, self.seq, self.dim];
        let encode = |v: &[f32]| -> Vec<u8> {
            let mut bytes = vec![0u8; v.len() * dtype.size()];
            crate::source::encode(dtype, v, &mut bytes);
            bytes
        };
        let st_dtype = match dtype {
            DType::F32 => safetensors::Dtype::F32,
            DType::F16 => safetensors::Dtype::F16,
            DType::BF16 => safetensors::Dtype::BF16,
        };
        let (qb, kb) = (encode(&q), encode(&k));
        let view = |shape, data| {
            safetensors::tensor::TensorView::new(st_dtype, shape, data)
                .map_err(|e| Error::BadOption(format!("synth-qk: {e}")))
        };
        let tensors = [
            ("q", view(shape(self.heads), &qb)?),
            ("k", view(shape(self.kv_heads), &kb)?),
        ];
        let bytes = safetensors::tensor::serialize(tensors, None)
            .map_err(|e| Error::BadOption(format!("synth-qk: {e}")))?;
        write_atomic(path, |w| std::io::Write::write_all(w, &bytes))
    }
}
