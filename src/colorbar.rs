//! The colorbar: what the colours mean. Tick values are chosen in the units of the scale that
//! is actually applied (data units for one shared scale, normalized units when every head or
//! layer has its own), and a caption says which.

use crate::layout::{Layout, Metrics, PlacedLabel};
use crate::norm::Norm;
use crate::text::{self, Face, Label};

/// What the bar spans and how it is described.
#[derive(Clone, Debug, PartialEq)]
pub struct ColorbarSpec {
    /// Value at the bottom and at the top of the bar.
    pub lo: f64,
    pub hi: f64,
    pub caption: String,
}

impl ColorbarSpec {
    /// The bar for `norm`, given the ranges of every cell.
    pub fn for_norm(norm: Norm, ranges: &[[f32; 2]]) -> ColorbarSpec {
        let unit = |caption: &str| ColorbarSpec {
            lo: 0.0,
            hi: 1.0,
            caption: caption.into(),
        };
        match norm {
            Norm::Head => unit("per-head min–max (normalized)"),
            Norm::Layer => unit("per-layer min–max (normalized)"),
            Norm::Row => unit("each query row ÷ its max"),
            Norm::None => unit("values, clamped to [0, 1]"),
            Norm::Global => {
                let [lo, hi] = ranges.first().copied().unwrap_or([0.0, 1.0]);
                let (lo, hi) = (lo as f64, hi as f64);
                let hi = if hi > lo { hi } else { lo + 1.0 };
                ColorbarSpec {
                    lo,
                    hi,
                    caption: format!("global [{}, {}]", short(lo), short(hi)),
                }
            }
        }
    }
}

/// 3 to 6 "nice" tick values (1, 2, 2.5 or 5 times a power of ten) inside [lo, hi].
pub fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater)
        || !lo.is_finite()
        || !hi.is_finite()
    {
        return vec![lo];
    }
    let span = hi - lo;
    let mut best = Vec::new();
    for target in [5.0, 4.0, 6.0, 3.0] {
        let raw = span / target;
        let mag = 10f64.powf(raw.log10().floor());
        for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
            let step = m * mag;
            let first = (lo / step).ceil();
            let last = (hi / step).floor();
            let n = (last - first) as i64 + 1;
            if (3..=6).contains(&n) {
                // k * m / 10^d rather than k * step, so 3 x 0.2 is 0.6, not 0.6000000000000001.
                let value = |k: f64| {
                    if mag < 1.0 {
                        k * m / (1.0 / mag).round()
                    } else {
                        k * m * mag
                    }
                };
                let t: Vec<f64> = (0..n).map(|i| value(first + i as f64)).collect();
                if best.is_empty() || (t.len() as i64 - 5).abs() < (best.len() as i64 - 5).abs() {
                    best = t;
                }
            }
        }
        if !best.is_empty() {
            return best;
        }
    }
    vec![lo, hi]
}

/// A compact label for a tick value: up to 4 significant digits, scientific when tiny or huge.
pub fn short(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if !(1e-3..1e5).contains(&a) {
        let s = format!("{v:.2e}");
        // 1.50e-4 -> 1.5e-4
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        let m = m.trim_end_matches('0').trim_end_matches('.');
        return format!("{m}e{e}");
    }
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// A label rotated a quarter turn counter-clockwise (reads bottom to top).
fn rotated(label: Label) -> Label {
    let (w, h) = (label.width, label.height);
    let mut coverage = vec![0u8; (w * h) as usize];
    for y in 0..h {
        for x in 0..w {
            // (x, y) -> (y, w - 1 - x) in a h-wide, w-tall bitmap
            coverage[((w - 1 - x) * h + y) as usize] = label.coverage[(y * w + x) as usize];
        }
    }
    Label {
        width: h,
        height: w,
        baseline: 0,
        coverage,
    }
}

impl Layout {
    /// Adds a vertical colorbar right of the grid, its ticks and its caption, widening the
    /// figure. The bar spans the grid's height.
    pub fn add_colorbar(&mut self, spec: &ColorbarSpec, metrics: &Metrics) {
        let (Some(first), Some(last)) = (self.cells.first(), self.cells.last()) else {
            return;
        };
        let grid_right = self.cells.iter().map(|c| c.x + c.width).max().unwrap_or(0);
        let (top, bottom) = (first.y, last.y + last.height);
        let bar_w = (metrics.font_px * 0.9).round().max(10.0) as u32;
        let x = grid_right + metrics.gutter * 2;
        let h = bottom - top;
        self.colorbar = Some([x, top, bar_w, h]);
        let small = (metrics.font_px * 0.8).round().max(10.0);
        let tick_len = (small / 3.0).round().max(3.0) as u32;
        let mut right = x + bar_w;
        for t in ticks(spec.lo, spec.hi) {
            let frac = (t - spec.lo) / (spec.hi - spec.lo);
            let y = top + ((1.0 - frac) * (h - 1) as f64).round() as u32;
            self.fills.push([x + bar_w, y, tick_len, 1]);
            let label = text::rasterize(&[(&short(t), Face::Regular)], small);
            let ly = (y as i64 - label.baseline as i64 + (small * 0.35) as i64)
                .clamp(0, (self.height.max(bottom) - label.height) as i64)
                as u32;
            let lx = x + bar_w + tick_len + 2;
            right = right.max(lx + label.width);
            self.labels.push(PlacedLabel {
                label,
                x: lx,
                y: ly,
            });
        }
        let caption = rotated(text::rasterize(&[(&spec.caption, Face::Regular)], small));
        let cx = right + metrics.gutter / 2;
        let cy = top + h.saturating_sub(caption.height) / 2;
        let grow_y =
            (cy + caption.height).saturating_sub(self.height.saturating_sub(metrics.margin));
        right = cx + caption.width;
        self.labels.push(PlacedLabel {
            label: caption,
            x: cx,
            y: cy.saturating_sub(grow_y),
        });
        self.width = self.width.max(right + metrics.margin);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_nice_and_inside() {
        for (lo, hi) in [
            (0.0, 1.0),
            (0.0, 0.83),
            (1e-6, 3.2e-4),
            (-2.0, 7.0),
            (0.12, 0.13),
            (5.0, 5000.0),
        ] {
            let t = ticks(lo, hi);
            assert!((3..=6).contains(&t.len()), "{lo}..{hi}: {t:?}");
            assert!(
                t.iter().all(|&v| v >= lo - 1e-12 && v <= hi + 1e-12),
                "{lo}..{hi}: {t:?}"
            );
            let step = t[1] - t[0];
            let mantissa = step / 10f64.powf(step.log10().floor());
            assert!(
                [1.0, 2.0, 2.5, 5.0]
                    .iter()
                    .any(|m| (m - mantissa).abs() < 1e-6),
                "{lo}..{hi}: {t:?}"
            );
        }
        assert_eq!(ticks(0.0, 1.0), vec![0.0, 0.25, 0.5, 0.75, 1.0]);
        assert_eq!(ticks(0.0, 0.83), vec![0.0, 0.2, 0.4, 0.6, 0.8]);
    }

    #[test]
    fn captions_and_units_follow_the_norm() {
        let r = [[0.0f32, 0.83], [0.0, 0.83]];
        let g = ColorbarSpec::for_norm(Norm::Global, &r);
        assert_eq!((g.lo, g.hi as f32), (0.0, 0.83));
        assert_eq!(g.caption, "global [0, 0.83]");
        let h = ColorbarSpec::for_norm(Norm::Head, &r);
        assert_eq!((h.lo, h.hi), (0.0, 1.0));
        assert!(h.caption.contains("normalized"));
    }

    #[test]
    fn short_labels() {
        assert_eq!(short(0.2), "0.2");
        assert_eq!(short(1.0), "1");
        assert_eq!(short(0.00015), "1.5e-4");
        assert_eq!(short(250000.0), "2.5e5");
    }
}
