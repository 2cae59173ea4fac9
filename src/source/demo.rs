//! The built-in demo model: synthetic softmax attention shaped like the figure that started the
//! project (8 layers × 8 heads; the README's first figure). Rows are generated on demand from a
//! hash of their coordinates, so the demo needs no file and any row can be read in any order.

use super::synth::unit;
use super::{AttentionSource, DType, Shape};
use crate::error::{Error, Result};

/// 8 layers × 8 heads of `tokens`×`tokens` softmax attention.
pub struct DemoModel {
    tokens: usize,
    heads: Vec<HeadStyle>,
}

/// How one head's logits are built: dotted vertical striations, optional local blocks.
#[derive(Clone, Debug)]
struct HeadStyle {
    seed: u64,
    /// Key columns that attract attention, with a per-column strength in 0.5..1.
    columns: Vec<(usize, f32)>,
    /// Probability that a (query, striation column) entry is "on": below 1 the lines are dotted.
    dot_probability: f32,
    /// Logit added to an "on" entry.
    boost: f32,
    /// Amplitude of the uniform logit noise everywhere.
    noise: f32,
    /// Length range of the local blocks a query attends within (0: none).
    block: usize,
}

const LAYERS: usize = 8;
const HEADS: usize = 8;

impl DemoModel {
    pub fn new(tokens: usize) -> Self {
        let mut heads = Vec::with_capacity(LAYERS * HEADS);
        for l in 0..LAYERS {
            for h in 0..HEADS {
                heads.push(HeadStyle::for_head(l, h, tokens));
            }
        }
        DemoModel { tokens, heads }
    }

    fn row(&self, layer: usize, head: usize, q: usize, out: &mut [f32]) {
        let style = &self.heads[layer * HEADS + head];
        let n = self.tokens;
        let mut logits = vec![0f64; n];
        for (k, logit) in logits.iter_mut().enumerate() {
            *logit = (style.noise * (unit(style.seed, q as u64, k as u64, 1) - 0.5)) as f64;
        }
        for &(k, strength) in &style.columns {
            if unit(style.seed, q as u64, k as u64, 2) < style.dot_probability {
                logits[k] += (style.boost * strength) as f64;
            }
        }
        if style.block > 0 {
            let (start, end) = block_of(style.seed, q, style.block, n);
            for logit in &mut logits[start..end] {
                *logit += 4.5;
            }
        }
        let max = logits.iter().cloned().fold(f64::MIN, f64::max);
        let sum: f64 = logits.iter().map(|x| (x - max).exp()).sum();
        for (o, x) in out.iter_mut().zip(&logits) {
            *o = ((x - max).exp() / sum) as f32;
        }
    }
}

impl HeadStyle {
    /// Layer 1 is sparse and faint; layer 8 is specialised (h = 2 broad bands, h = 3 local
    /// blocks, h = 6 sharp points, the rest sharper striations); layers between interpolate.
    fn for_head(layer: usize, head: usize, n: usize) -> HeadStyle {
        let seed = 0x5eed_0000 + (layer * HEADS + head) as u64;
        let t = layer as f32 / (LAYERS - 1) as f32;
        let lerp = |a: f32, b: f32| a + (b - a) * t;
        let (mut count, mut p, mut boost, mut block) =
            (lerp(0.10, 0.07), lerp(0.35, 0.75), lerp(2.5, 5.5), 0);
        match head {
            1 => {
                // Broad attention: wide bright bands that fill the width.
                count = lerp(0.10, 0.45);
                p = lerp(0.35, 0.92);
                boost = lerp(2.5, 3.2);
            }
            2 => {
                // Local clusters grow with depth and outshine the striations.
                block = ((t * 32.0) as usize).min(n / 4);
                count = lerp(0.10, 0.03);
                boost = lerp(2.5, 2.0);
            }
            5 => {
                count = lerp(0.10, 0.05);
                p = lerp(0.35, 0.5);
                boost = lerp(2.5, 9.0);
            }
            _ => {}
        }
        let wanted = ((count * n as f32) as usize).max(1);
        let mut columns = Vec::with_capacity(wanted);
        let mut i = 0u64;
        while columns.len() < wanted && i < 64 * n as u64 {
            let k = (unit(seed, 7, i, 3) * n as f32) as usize % n;
            if head == 1 && t > 0.5 {
                // Bands: runs of neighbouring columns.
                let width = 2 + (unit(seed, 8, i, 3) * 5.0) as usize;
                for j in k..(k + width).min(n) {
                    if columns.len() < wanted && !columns.iter().any(|c: &(usize, f32)| c.0 == j) {
                        columns.push((j, 0.8 + 0.2 * unit(seed, 9, j as u64, 3)));
                    }
                }
            } else if !columns.iter().any(|c| c.0 == k) {
                columns.push((k, 0.5 + 0.5 * unit(seed, 9, k as u64, 3)));
            }
            i += 1;
        }
        HeadStyle {
            seed,
            columns,
            dot_probability: p,
            boost,
            noise: 1.0,
            block,
        }
    }
}

/// The block of keys a query attends to: queries are split into segments of pseudo-random
/// length around `size`, and each attends within its own segment.
fn block_of(seed: u64, q: usize, size: usize, n: usize) -> (usize, usize) {
    let mut start = 0;
    let mut i = 0;
    loop {
        let len = size / 2 + (unit(seed, 11, i, 4) * size as f32) as usize + 1;
        let end = (start + len).min(n);
        if q < end {
            return (start, end);
        }
        start = end;
        i += 1;
    }
}

impl AttentionSource for DemoModel {
    fn name(&self) -> &str {
        "demo model"
    }

    fn shape(&self) -> Shape {
        Shape {
            layers: LAYERS,
            heads: HEADS,
            queries: self.tokens,
            keys: self.tokens,
        }
    }

    fn dtype(&self) -> DType {
        DType::F32
    }

    fn read_rows(&self, layer: usize, head: usize, row_start: usize, dst: &mut [u8]) -> Result<()> {
        let n = self.tokens;
        let rows = dst.len() / (n * 4);
        if layer >= LAYERS
            || head >= HEADS
            || row_start + rows > n
            || !dst.len().is_multiple_of(n * 4)
        {
            return Err(Error::BadOption(
                "demo model: read outside the tensor".into(),
            ));
        }
        let mut row = vec![0f32; n];
        for (i, chunk) in dst.chunks_exact_mut(n * 4).enumerate() {
            self.row(layer, head, row_start + i, &mut row);
            chunk.copy_from_slice(bytemuck::cast_slice(&row));
        }
        Ok(())
    }
}
