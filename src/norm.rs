//! Normalization scopes and pooling reductions, and the per-head statistics they are built from.
//! The same code turns GPU-reduced and CPU-reduced statistics into colour ranges, so both
//! backends normalize identically by construction.

use bytemuck::{Pod, Zeroable};

/// How values are scaled to [0, 1] before the colormap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Norm {
    /// Each head min–max.
    #[default]
    Head,
    /// One scale for all selected heads of a layer (one grid row).
    Layer,
    /// One scale for the whole grid.
    Global,
    /// Each query row divided by its own maximum (applied before pooling).
    Row,
    /// Values are taken as already in [0, 1] and clamped.
    None,
}

impl Norm {
    pub const ALL: [Norm; 5] = [Norm::Head, Norm::Layer, Norm::Global, Norm::Row, Norm::None];

    pub fn name(self) -> &'static str {
        match self {
            Norm::Head => "head",
            Norm::Layer => "layer",
            Norm::Global => "global",
            Norm::Row => "row",
            Norm::None => "none",
        }
    }

    pub fn from_name(name: &str) -> Option<Norm> {
        Norm::ALL.into_iter().find(|n| n.name() == name)
    }
}

/// How the entries of one pooled pixel's bin are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Reduce {
    /// Keeps single-entry spikes (attention sinks, sharp columns) visible at any zoom.
    #[default]
    Max,
    Mean,
    Min,
}

impl Reduce {
    pub const ALL: [Reduce; 3] = [Reduce::Max, Reduce::Mean, Reduce::Min];

    pub fn name(self) -> &'static str {
        match self {
            Reduce::Max => "max",
            Reduce::Mean => "mean",
            Reduce::Min => "min",
        }
    }

    pub fn from_name(name: &str) -> Option<Reduce> {
        Reduce::ALL.into_iter().find(|r| r.name() == name)
    }

    /// `REDUCE_*` in `shaders/colorize.wgsl`.
    pub(crate) fn shader_id(self) -> u32 {
        match self {
            Reduce::Max => 0,
            Reduce::Mean => 1,
            Reduce::Min => 2,
        }
    }
}

/// One pooled pixel's running state: everything max, mean and min need, so all three come out
/// of one pass over the input. Mirrors `Accum` in `shaders/common.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct Accum {
    pub max: f32,
    pub min: f32,
    /// Sum of finite entries, added row by row in key order (see `shaders/pool.wgsl`).
    pub sum: f32,
    /// Bits 0..31: number of finite, unmasked entries; bit 31: the bin held a non-finite entry.
    pub count_bad: u32,
}

pub(crate) const BAD_BIT: u32 = 1 << 31;

impl Accum {
    /// No entries yet. `f32::MAX` sentinels instead of infinities, because WGSL lets
    /// implementations assume no infinities exist.
    pub const EMPTY: Accum = Accum {
        max: -f32::MAX,
        min: f32::MAX,
        sum: 0.0,
        count_bad: 0,
    };

    pub fn count(&self) -> u32 {
        self.count_bad & !BAD_BIT
    }

    pub fn is_bad(&self) -> bool {
        self.count_bad & BAD_BIT != 0
    }

    /// Folds `zeros` entries of exactly 0, set aside while causal masking was being detected,
    /// back in as if they had been pooled. The CPU twin of `fold_masked_zeros` in
    /// `shaders/pool.wgsl`.
    pub fn fold_zeros(&mut self, zeros: u32) {
        if zeros == 0 {
            return;
        }
        if self.count() == 0 {
            self.max = 0.0;
            self.min = 0.0;
        } else {
            self.max = self.max.max(0.0);
            self.min = self.min.min(0.0);
        }
        self.count_bad = (self.count() + zeros) | (self.count_bad & BAD_BIT);
    }

    /// The pooled value, or `None` for a bin with no finite unmasked entry.
    pub fn value(&self, reduce: Reduce) -> Option<f32> {
        if self.count() == 0 {
            return None;
        }
        Some(match reduce {
            Reduce::Max => self.max,
            Reduce::Min => self.min,
            Reduce::Mean => self.sum / self.count() as f32,
        })
    }
}

/// Statistics of one head over its finite entries. Mirrors `HeadStats` in `shaders/stats.wgsl`
/// (which keeps the count as two little-endian u32 halves).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct HeadStats {
    pub min: f32,
    pub max: f32,
    pub sum: f32,
    pub _pad0: u32,
    /// Finite, unmasked entries: 64 bits, because one 65536-token head already holds 2^32.
    pub count: u64,
    /// Pooled pixels whose bin held a non-finite entry.
    pub bad_pixels: u32,
    pub _pad1: u32,
}

// The shader writes the count's low half first.
#[cfg(not(target_endian = "little"))]
compile_error!("HeadStats mirrors a GPU struct whose 64-bit count is little-endian");

impl HeadStats {
    pub const EMPTY: HeadStats = HeadStats {
        min: f32::MAX,
        max: -f32::MAX,
        sum: 0.0,
        _pad0: 0,
        count: 0,
        bad_pixels: 0,
        _pad1: 0,
    };

    pub fn merge(&self, o: &HeadStats) -> HeadStats {
        HeadStats {
            min: self.min.min(o.min),
            max: self.max.max(o.max),
            sum: self.sum + o.sum,
            count: self.count.saturating_add(o.count),
            bad_pixels: self.bad_pixels.saturating_add(o.bad_pixels),
            ..HeadStats::EMPTY
        }
    }

    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum as f64 / self.count as f64)
    }

    /// (min, max) of the finite entries, if there are any.
    pub fn range(&self) -> Option<(f32, f32)> {
        (self.count > 0).then_some((self.min, self.max))
    }
}

/// The value range mapped onto the colormap for each head, in grid order (rows = layers).
/// `stats` holds one entry per cell, `cols` cells per row.
pub fn color_ranges(norm: Norm, stats: &[HeadStats], cols: usize) -> Vec<[f32; 2]> {
    let range_of = |s: &HeadStats| s.range().map_or([0.0, 0.0], |(lo, hi)| [lo, hi]);
    match norm {
        Norm::Head => stats.iter().map(range_of).collect(),
        Norm::Layer => stats
            .chunks(cols.max(1))
            .flat_map(|row| {
                let merged = row.iter().fold(HeadStats::EMPTY, |a, s| a.merge(s));
                std::iter::repeat_n(range_of(&merged), row.len())
            })
            .collect(),
        Norm::Global => {
            let merged = stats.iter().fold(HeadStats::EMPTY, |a, s| a.merge(s));
            vec![range_of(&merged); stats.len()]
        }
        // Row-normalized values are already in [0, 1]; `none` promises they are.
        Norm::Row | Norm::None => vec![[0.0, 1.0]; stats.len()],
    }
}

/// Normalizes `v` into [0, 1] with matplotlib's arithmetic: `(v - lo) / (hi - lo)` in f32, and
/// 0 for a constant scope. The CPU twin of `normalize` in `shaders/colorize.wgsl`.
pub fn normalize(v: f32, range: [f32; 2]) -> f32 {
    let [lo, hi] = range;
    let span = hi - lo;
    if span > 0.0 {
        (v - lo) / span
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(min: f32, max: f32) -> HeadStats {
        HeadStats {
            min,
            max,
            count: 1,
            ..HeadStats::EMPTY
        }
    }

    #[test]
    fn scopes() {
        let s = [
            stats(0.0, 1.0),
            stats(0.5, 2.0),
            stats(-1.0, 0.5),
            stats(0.2, 0.3),
        ];
        assert_eq!(color_ranges(Norm::Head, &s, 2)[1], [0.5, 2.0]);
        let layer = color_ranges(Norm::Layer, &s, 2);
        assert_eq!(
            layer,
            vec![[0.0, 2.0], [0.0, 2.0], [-1.0, 0.5], [-1.0, 0.5]]
        );
        assert_eq!(color_ranges(Norm::Global, &s, 2), vec![[-1.0, 2.0]; 4]);
        assert_eq!(color_ranges(Norm::None, &s, 2), vec![[0.0, 1.0]; 4]);
    }

    #[test]
    fn empty_heads_get_a_zero_range() {
        assert_eq!(
            color_ranges(Norm::Head, &[HeadStats::EMPTY], 1),
            vec![[0.0, 0.0]]
        );
        assert_eq!(normalize(5.0, [3.0, 3.0]), 0.0);
    }

    #[test]
    fn layouts_match_the_shaders() {
        assert_eq!(std::mem::size_of::<Accum>(), 16);
        assert_eq!(std::mem::size_of::<HeadStats>(), 32);
    }
}
