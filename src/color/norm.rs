//! Normalization scopes: the same code turns GPU-reduced and CPU-reduced statistics into colour
//! ranges, so both backends normalize identically by construction.

use crate::pool::accum::HeadStats;

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
}
