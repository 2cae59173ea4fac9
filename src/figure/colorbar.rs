//! The colorbar: what the colours mean. Tick values are chosen in the units of the scale that
//! is actually applied (data units for one shared scale, normalized units when every head or
//! layer has its own), and a caption says which.

use crate::color::norm::Norm;
use crate::color::scale::{ColorScale, Scale};
use crate::figure::layout::{Layout, Metrics, PlacedLabel, Text};

/// What the bar spans and how it is described.
#[derive(Clone, Debug, PartialEq)]
pub struct ColorbarSpec {
    /// Value at the bottom and at the top of the bar, in the units of the tick labels.
    pub lo: f64,
    pub hi: f64,
    /// The curve between them: where a tick value sits on the bar.
    pub scale: Scale,
    /// The ticks' values are the data's (one range for every cell), not normalized.
    pub data_units: bool,
    /// Log scale per head or layer: tick values are fractions of each scope's max.
    pub relative: bool,
    /// The value at the middle of the bar (`--center`, `--symmetric`), always a tick; each
    /// half of the bar is linear on its own side of it.
    pub center: Option<f64>,
    pub caption: String,
}

impl ColorbarSpec {
    /// The bar for `norm` on a linear scale, given the ranges of every cell.
    pub fn for_norm(norm: Norm, ranges: &[[f32; 2]]) -> ColorbarSpec {
        ColorbarSpec::new(norm, ranges, &ColorScale::default())
    }

    /// The bar for `norm` and `scale`, given every cell's resolved `[lo, hi]` (data units).
    pub fn new(norm: Norm, ranges: &[[f32; 2]], scale: &ColorScale) -> ColorbarSpec {
        let fixed = scale.vmin.is_some() && scale.vmax.is_some();
        // One cell's own scale is one scale for the whole figure: its ticks can say what the
        // values are (logits above 1 and below 0 included).
        let data_units =
            fixed || ranges.len() == 1 || matches!(norm, Norm::Global | Norm::Row | Norm::None);
        let [lo, hi] = ranges.first().copied().unwrap_or([0.0, 1.0]);
        let lo = if scale.scale == Scale::Log {
            lo.max(scale.floor_for(hi))
        } else {
            lo
        };
        let (mut lo, mut hi) = (lo as f64, hi as f64);
        if hi.is_nan() || hi <= lo {
            hi = lo + 1.0;
        }
        let mut parts: Vec<String> = Vec::new();
        parts.extend(scale.label.clone());
        parts.extend(scale.scale.caption());
        let range = format!("[{}, {}]", short(lo), short(hi));
        let stated = scale.clip.is_none()
            && scale.exclude_keys == 0
            && scale.center.is_none()
            && !scale.symmetric;
        parts.push(match norm {
            _ if fixed => format!("fixed {range}"),
            Norm::Head if stated => "per-head min–max".into(),
            Norm::Head => "per-head".into(),
            Norm::Layer if stated => "per-layer min–max".into(),
            Norm::Layer => "per-layer".into(),
            Norm::Global => format!("global {range}"),
            Norm::Row => "each query row ÷ its max".into(),
            Norm::None if stated && scale.vmin.is_none() && scale.vmax.is_none() => {
                "values, clamped to [0, 1]".into()
            }
            Norm::None => format!("values, clamped to {range}"),
        });
        if let Some([a, b]) = scale.clip {
            parts.push(if a == 0.0 {
                format!("clipped at p{b}")
            } else {
                format!("clipped to p{a}–p{b}")
            });
        }
        if !fixed {
            parts.extend(scale.vmin.map(|v| format!("vmin {}", short(v as f64))));
            parts.extend(scale.vmax.map(|v| format!("vmax {}", short(v as f64))));
        }
        let c = scale.center.unwrap_or(0.0);
        if scale.symmetric {
            parts.push(format!("symmetric about {}", short(c as f64)));
        } else if scale.center.is_some() {
            parts.push(format!("centred at {}", short(c as f64)));
        }
        match scale.exclude_keys {
            0 => {}
            1 => parts.push("key 0 left out".into()),
            k => parts.push(format!("keys 0–{} left out", k - 1)),
        }
        let mut caption = parts.join(", ");
        let mut curve = scale.scale;
        let mut relative = false;
        if !data_units && curve == Scale::Log {
            // Every scope spanning the same decades (the default floor, 1e-6 of each max, does
            // that whenever it binds) shares one bar in fractions of its own max.
            let span = |&[lo, hi]: &[f32; 2]| {
                let f = scale.floor_for(hi);
                (hi.max(f) as f64 / lo.max(f) as f64).log10()
            };
            let d = ranges.first().map(span).unwrap_or(0.0);
            if d > 0.0 && ranges.iter().all(|r| (span(r) - d).abs() <= 1e-3 * d) {
                relative = true;
                (lo, hi) = (10f64.powf(-d), 1.0);
                caption.push_str(" (× each scope's max)");
            }
        }
        let mut center = (scale.symmetric || scale.center.is_some()).then_some(c as f64);
        if !data_units && scale.symmetric {
            // each scope spans c ± its own half-range: one bar in units of it
            // its own comma-separated part, so a narrow bar wraps the caption there
            let scope = match norm {
                Norm::Layer => "layer",
                _ => "head",
            };
            caption.push_str(&if c == 0.0 {
                format!(", ÷ max |v| per {scope}")
            } else {
                format!(", (v − centre) ÷ max |v − centre| per {scope}")
            });
            (lo, hi, center) = (-1.0, 1.0, Some(0.0));
        } else if !data_units && !relative {
            caption.push_str(" (normalized)");
            (lo, hi) = (0.0, 1.0);
            center = center.map(|_| 0.5);
            if curve == Scale::Log {
                // scopes span different decades: ticks are positions in each one's log range
                curve = Scale::Linear;
            }
        }
        ColorbarSpec {
            lo,
            hi,
            scale: curve,
            data_units,
            relative,
            center,
            caption,
        }
    }

    /// Where `v` sits on the bar: 0 at the bottom, 1 at the top.
    pub fn position(&self, v: f64) -> f64 {
        if let Some(c) = self.center {
            // TwoSlopeNorm's interpolation: each side of the centre gets half the bar
            return match (v < c, c - self.lo, self.hi - c) {
                (true, below, _) if below > 0.0 => 0.5 * (v - self.lo) / below,
                (false, _, above) if above > 0.0 => 0.5 + 0.5 * (v - c) / above,
                (true, ..) => 0.0,
                (false, ..) => 0.5,
            };
        }
        let t = (v - self.lo) / (self.hi - self.lo);
        match self.scale {
            Scale::Linear => t,
            Scale::Log => (v.log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10()),
            Scale::Sqrt => t.max(0.0).sqrt(),
            Scale::Gamma(g) => t.max(0.0).powf(g as f64),
        }
    }

    /// Where tick `v` sits on the bar (0 at the bottom, 1 at the top), held to the bar; `None`
    /// where it lies off the bar by more than f32 rounding ([`TICK_SLACK`]). The bar's ends
    /// are taken as the ticks they are within rounding of, so a maximum of 0.99999988 places
    /// every tick where a maximum of 1 does: to the pixel, not only to a millionth of one
    /// (the 0.5 tick of a 410-px bar sits at 204.5 px, and 204.49998 rounds the other way).
    pub fn tick_position(&self, v: f64) -> Option<f64> {
        self.snapped_to(&self.ticks()).on_bar(v)
    }

    /// Every tick of [`ColorbarSpec::ticks`] with [`ColorbarSpec::tick_position`]'s place for
    /// it: the ticks and the bar's snapped ends worked out once for the whole bar.
    pub fn tick_positions(&self) -> Vec<(f64, Option<f64>)> {
        let ticks = self.ticks();
        let bar = self.snapped_to(&ticks);
        ticks.into_iter().map(|t| (t, bar.on_bar(t))).collect()
    }

    /// This bar with each end moved onto the tick of `ticks` it is within rounding of.
    fn snapped_to(&self, ticks: &[f64]) -> ColorbarSpec {
        let snap = |end: f64| {
            let near = |t: &&f64| (**t - end).abs() <= TICK_SLACK * t.abs().max(self.hi - self.lo);
            ticks.iter().find(near).copied().unwrap_or(end)
        };
        let mut bar = self.clone();
        (bar.lo, bar.hi) = (snap(self.lo), snap(self.hi));
        bar
    }

    /// `v`'s place on this bar, held to it; `None` past it by more than rounding.
    fn on_bar(&self, v: f64) -> Option<f64> {
        let p = self.position(v);
        (-TICK_SLACK..=1.0 + TICK_SLACK)
            .contains(&p)
            .then(|| p.clamp(0.0, 1.0))
    }

    /// Tick values: nice linear ticks, or powers of ten on a log scale.
    pub fn ticks(&self) -> Vec<f64> {
        if let Some(c) = self.center {
            return centred_ticks(self, c);
        }
        if self.scale == Scale::Log {
            if let Some(t) = log_ticks(self.lo, self.hi) {
                return t;
            }
        }
        ticks(self.lo, self.hi)
    }
}

/// Nice ticks over [lo, hi] with the centre `c` always among them (where the bar changes
/// slope is the tick a reader looks for); ticks that would crowd it are left out.
fn centred_ticks(spec: &ColorbarSpec, c: f64) -> Vec<f64> {
    let mut t: Vec<f64> = ticks(spec.lo, spec.hi)
        .into_iter()
        .filter(|&v| (spec.position(v) - spec.position(c)).abs() >= 0.08)
        .collect();
    t.push(c);
    t.sort_by(f64::total_cmp);
    t
}

/// `m × 10^e`, as the literal would be read (exact to the last bit, so 1e-6 is 1e-6).
fn pow10(m: u32, e: i32) -> f64 {
    format!("{m}e{e}").parse().unwrap_or(0.0)
}

/// Powers of ten inside [lo, hi] (every n-th decade, at most 6), with 2× and 5× between when
/// the range spans less than two decades; `None` when that gives fewer than 2 ticks. Inside
/// within [`TICK_SLACK`] of a decade, or relatively, as [`ticks`] is within it of a step.
pub fn log_ticks(lo: f64, hi: f64) -> Option<Vec<f64>> {
    if !(lo > 0.0 && hi > lo) {
        return None;
    }
    let (a, b) = (
        (lo.log10() - TICK_SLACK).ceil() as i32,
        (hi.log10() + TICK_SLACK).floor() as i32,
    );
    let decades = (b - a + 1).max(0);
    let mut t: Vec<f64> = if decades >= 2 {
        let step = (decades as usize).div_ceil(6).max(1);
        (a..=b)
            .rev()
            .step_by(step)
            .map(|e| pow10(1, e))
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect()
    } else {
        (a - 1..=b)
            .flat_map(|e| [1, 2, 5].map(|m| pow10(m, e)))
            .filter(|&v| v >= lo * (1.0 - TICK_SLACK) && v <= hi * (1.0 + TICK_SLACK))
            .collect()
    };
    t.dedup();
    (t.len() >= 2).then_some(t)
}

/// How far past either end of the range (in steps) a tick may be and still count as inside:
/// ranges come from f32 data, and a maximum that rounding left short of a nice value
/// (0.99999988 for 1.0) must get that value's ticks, or a GPU's and a CPU's figures whose sums
/// differ in the last bits get different bars, labels and widths. 1e-5, the probabilities'
/// stated tolerance: a row whose one key holds almost all its mass sums its 332 others' 1.1e-6
/// on the CPU, while a GPU adding them one by one to the first key's 1 loses each (a maximum
/// of 1 against 0.99999893, found by tools/sweep_backends.py seed 173; with 1e-6 the two bars
/// ticked 0.25 and 0.2 steps, 10 px apart).
pub const TICK_SLACK: f64 = 1e-5;

/// 3 to 6 "nice" tick values (1, 2, 2.5 or 5 times a power of ten) inside [lo, hi] (within
/// [`TICK_SLACK`] of a step).
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
            let first = (lo / step - TICK_SLACK).ceil();
            let last = (hi / step + TICK_SLACK).floor();
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

/// A compact label for a tick value: up to 4 decimals, scientific when tiny or huge.
pub fn short(v: f64) -> String {
    short_with(v, 4)
}

/// Labels for `ticks` as [`short`] writes them, with more decimals when that leaves two alike
/// (a bar over a range narrower than its labels' precision, such as row sums of 1 ± 1e-5).
pub fn tick_labels(ticks: &[f64]) -> Vec<String> {
    let mut labels = Vec::new();
    for decimals in 4..=12 {
        labels = ticks.iter().map(|&t| short_with(t, decimals)).collect();
        if labels.windows(2).all(|w| w[0] != w[1]) {
            break;
        }
    }
    labels
}

/// [`short`] with `decimals` decimals (`decimals − 2` in the mantissa when scientific).
fn short_with(v: f64, decimals: usize) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if !(1e-3..1e5).contains(&a) {
        let s = format!("{v:.*e}", decimals - 2);
        // 1.50e-4 -> 1.5e-4
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        let m = m.trim_end_matches('0').trim_end_matches('.');
        return format!("{m}e{e}");
    }
    let s = format!("{v:.decimals$}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

impl Layout {
    /// Adds a vertical colorbar right of the grid, its ticks and its caption, widening the
    /// figure. The bar spans the grid's height.
    pub fn add_colorbar(&mut self, spec: &ColorbarSpec, metrics: &Metrics) {
        // (cells ranked out by --top have no rectangle)
        let drawn = || self.cells.iter().filter(|c| c.is_drawn());
        let (Some(top), Some(bottom)) = (
            drawn().map(|c| c.y).min(),
            drawn().map(|c| c.y + c.height).max(),
        ) else {
            return;
        };
        let grid_right = drawn().map(|c| c.x + c.width).max().unwrap_or(0);
        let x = grid_right + metrics.gutter * 2;
        let (rect, right) = self.place_colorbar(spec, metrics, x, top, bottom - top, true);
        self.colorbar = Some(rect);
        self.width = self.width.max(right + metrics.margin);
    }

    /// A bar at `x`, from `top` down `h` pixels, with its ticks (and its caption, when
    /// `caption`) as labels and fills: the bar's rectangle and the right edge of what was
    /// placed. The rectangle is the caller's to record (`colorbar` or `cell_colorbars`).
    pub(crate) fn place_colorbar(
        &mut self,
        spec: &ColorbarSpec,
        metrics: &Metrics,
        x: u32,
        top: u32,
        h: u32,
        caption: bool,
    ) -> ([u32; 4], u32) {
        let bottom = top + h;
        let bar_w = (metrics.font_px * 0.9).round().max(10.0) as u32;
        let small = (metrics.font_px * 0.8).round().max(10.0);
        let tick_len = (small / 3.0).round().max(3.0) as u32;
        let mut right = x + bar_w;
        let mut last_y: Option<i64> = None;
        let placed = spec.tick_positions();
        let ticks: Vec<f64> = placed.iter().map(|&(t, _)| t).collect();
        for (&(_, frac), text) in placed.iter().zip(tick_labels(&ticks)) {
            let Some(frac) = frac else {
                continue;
            };
            let y = top + ((1.0 - frac) * (h - 1) as f64).round() as u32;
            // a curved scale can crowd ticks: keep those a label apart
            if last_y.is_some_and(|p| (p - y as i64).abs() < small as i64) {
                continue;
            }
            last_y = Some(y as i64);
            self.fills.push([x + bar_w, y, tick_len, 1]);
            let text = Text::plain(&text, small);
            let label = text.rasterize();
            let ly = (y as i64 - label.baseline as i64 + (small * 0.35) as i64).clamp(
                0,
                self.height.max(bottom).saturating_sub(label.height) as i64,
            ) as u32;
            let lx = x + bar_w + tick_len + 2;
            right = right.max(lx + label.width);
            self.labels.push(PlacedLabel {
                label,
                x: lx,
                y: ly,
                text,
            });
        }
        if !caption {
            return ([x, top, bar_w, h], right);
        }
        let mut cx = right + metrics.gutter / 2;
        for line in wrap(&spec.caption, small, h) {
            let text = Text::plain(&line, small).rotated();
            let caption = text.rasterize();
            let cy = top + h.saturating_sub(caption.height) / 2;
            let grow_y =
                (cy + caption.height).saturating_sub(self.height.saturating_sub(metrics.margin));
            right = cx + caption.width;
            self.labels.push(PlacedLabel {
                label: caption,
                x: cx,
                y: cy.saturating_sub(grow_y),
                text,
            });
            cx = right;
        }
        ([x, top, bar_w, h], right)
    }
}

/// The caption in lines no longer than `max` pixels, broken after commas where possible, and
/// between words where a comma's part alone is longer (a flat figure's bar is shorter than
/// "per-head min–max (normalized)"; a word longer than the bar still overflows).
fn wrap(caption: &str, px: f32, max: u32) -> Vec<String> {
    let width = |s: &str| Text::plain(s, px).rasterize().width;
    if width(caption) <= max {
        return vec![caption.to_string()];
    }
    let parts = caption.split_inclusive(", ").flat_map(|part| {
        if width(part.trim_end()) > max {
            part.split_inclusive(' ').collect::<Vec<_>>()
        } else {
            vec![part]
        }
    });
    let mut lines: Vec<String> = Vec::new();
    let mut cur = String::new();
    for part in parts {
        let candidate = format!("{cur}{part}");
        if !cur.is_empty() && width(candidate.trim_end()) > max {
            lines.push(cur.trim_end().to_string());
            cur = part.to_string();
        } else {
            cur = candidate;
        }
    }
    if !cur.is_empty() {
        lines.push(cur.trim_end().to_string());
    }
    lines
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
            let step = t[1] - t[0];
            let slack = TICK_SLACK * step;
            assert!(
                t.iter().all(|&v| v >= lo - slack && v <= hi + slack),
                "{lo}..{hi}: {t:?}"
            );
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
        // f32 rounding a few ULPs short of 1 (or past 0) ticks as 1 (and 0) does: a GPU range
        // of [0, 1] and a CPU one of [0, 0.99999988] drew 0.25-steps and 0.2-steps, 7 px apart
        let below_one = f64::from(1.0f32 - f32::EPSILON / 2.0);
        assert_eq!(ticks(0.0, below_one), ticks(0.0, 1.0));
        assert_eq!(ticks(1e-7, 1.0), ticks(0.0, 1.0));
        // and a GPU's sum that lost terms of 1e-9 each beside the one key's 1
        assert_eq!(ticks(0.0, 0.999_998_93), ticks(0.0, 1.0));
        // but a range short of a tick by more than rounding does not reach it
        assert_eq!(ticks(0.0, 0.9999), vec![0.0, 0.2, 0.4, 0.6, 0.8]);
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
    fn centred_bars_tick_the_centre() {
        let sym = ColorScale {
            symmetric: true,
            label: Some("A − B".into()),
            ..Default::default()
        };
        let h = ColorbarSpec::new(Norm::Head, &[[-0.3, 0.3], [-2.0, 2.0]], &sym);
        assert_eq!(
            h.caption,
            "A − B, per-head, symmetric about 0, ÷ max |v| per head"
        );
        assert_eq!((h.lo, h.hi, h.center), (-1.0, 1.0, Some(0.0)));
        assert_eq!(h.ticks(), vec![-1.0, -0.5, 0.0, 0.5, 1.0]);
        assert_eq!(h.position(0.0), 0.5);
        let two = ColorScale {
            center: Some(0.25),
            ..Default::default()
        };
        let g = ColorbarSpec::new(Norm::Global, &[[-1.0, 4.0]], &two);
        assert_eq!(g.caption, "global [-1, 4], centred at 0.25");
        assert!(g.ticks().contains(&0.25), "{:?}", g.ticks());
        assert_eq!(g.position(0.25), 0.5);
        assert_eq!(g.position(-1.0), 0.0);
        assert_eq!(g.position(4.0), 1.0);
    }

    #[test]
    fn scales_in_ticks_and_captions() {
        let r = [[0.0f32, 0.5]];
        let log = ColorScale {
            scale: Scale::Log,
            clip: Some([0.0, 99.5]),
            ..Default::default()
        };
        let g = ColorbarSpec::new(Norm::Global, &r, &log);
        assert_eq!(g.caption, "log10, global [5e-7, 0.5], clipped at p99.5");
        assert_eq!(g.ticks(), vec![1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1]);
        assert!((g.position(1e-3) - (1e-3f64 / 5e-7).log10() / 1e6f64.log10()).abs() < 1e-6);
        let h = ColorbarSpec::new(Norm::Head, &[[0.0, 0.5], [1e-9, 0.2]], &log);
        assert_eq!(
            h.caption,
            "log10, per-head, clipped at p99.5 (× each scope's max)"
        );
        assert_eq!(h.ticks(), vec![1e-6, 1e-4, 1e-2, 1.0]);
        let h = ColorbarSpec::new(Norm::Head, &[[0.1, 0.5], [1e-9, 0.2]], &log);
        assert_eq!(h.caption, "log10, per-head, clipped at p99.5 (normalized)");
        assert_eq!(h.ticks(), vec![0.0, 0.25, 0.5, 0.75, 1.0]);
        let sqrt = ColorScale {
            scale: Scale::Sqrt,
            vmin: Some(0.0),
            vmax: Some(0.4),
            exclude_keys: 1,
            ..Default::default()
        };
        let s = ColorbarSpec::new(Norm::Head, &[[0.0, 0.4], [0.0, 0.4]], &sqrt);
        assert_eq!(s.caption, "sqrt, fixed [0, 0.4], key 0 left out");
        assert_eq!((s.lo, s.hi as f32), (0.0, 0.4));
        assert!((s.position(0.1) - 0.5).abs() < 1e-6);
        let gamma = ColorScale {
            scale: Scale::Gamma(2.0),
            ..Default::default()
        };
        let l = ColorbarSpec::new(Norm::Layer, &[r[0], [0.0, 2.0]], &gamma);
        assert_eq!(l.caption, "gamma 2, per-layer min–max (normalized)");
        assert!((l.position(0.5) - 0.25).abs() < 1e-12);
        // One cell's scale is the figure's: its ticks are in data units (logits above 1).
        let one = ColorbarSpec::new(Norm::Head, &[[-6.0, 23.0]], &ColorScale::default());
        assert_eq!(one.caption, "per-head min–max");
        assert!(one.data_units && one.lo == -6.0 && one.hi == 23.0);
    }

    #[test]
    fn log_ticks_are_decades() {
        assert_eq!(log_ticks(1e-6, 1.0).unwrap().len(), 4); // every other decade
        assert_eq!(
            log_ticks(0.02, 0.5).unwrap(),
            vec![0.02, 0.05, 0.1, 0.2, 0.5]
        );
        assert!(log_ticks(0.0, 1.0).is_none());
        // a maximum f32 rounding left short of 1 keeps the decade of 1
        let below_one = f64::from(1.0f32 - f32::EPSILON / 2.0);
        assert_eq!(log_ticks(1e-6, below_one), log_ticks(1e-6, 1.0));
        assert_eq!(log_ticks(0.02, below_one), log_ticks(0.02, 1.0));
    }

    #[test]
    fn ticks_a_rounding_past_the_ends_sit_on_them() {
        let below_one = 1.0f32 - f32::EPSILON / 2.0;
        let g = ColorbarSpec::for_norm(Norm::Global, &[[0.0, below_one]]);
        assert_eq!(g.ticks(), vec![0.0, 0.25, 0.5, 0.75, 1.0]);
        assert_eq!(g.tick_position(1.0), Some(1.0));
        assert_eq!(g.tick_position(0.5), Some(0.5));
        assert_eq!(g.tick_position(0.0), Some(0.0));
        assert_eq!(g.tick_position(1.001), None);
    }

    #[test]
    fn short_labels() {
        assert_eq!(short(0.2), "0.2");
        assert_eq!(short(1.0), "1");
        assert_eq!(short(0.00015), "1.5e-4");
        assert_eq!(short(250000.0), "2.5e5");
        assert_eq!(
            tick_labels(&[0.999996, 0.999998, 1.0, 1.000002]),
            ["0.999996", "0.999998", "1", "1.000002"]
        );
        assert_eq!(tick_labels(&[0.0, 0.25, 0.5]), ["0", "0.25", "0.5"]);
    }
}
