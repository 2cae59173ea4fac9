//! Colour scales and limits: how a pooled value becomes a position on the colormap once the
//! scope's range is known. Pure functions shared by the GPU path (which computes histograms and
//! restricted ranges in `shaders/limits.wgsl`) and the CPU reference, so both resolve the same
//! limits from the same counts.
//!
//! Order (monotone, matplotlib's): pool, take each scope's range (first keys left out when asked),
//! clip it to percentiles of the scope's pooled values, override with fixed limits, then map
//! `scale(normalize(v))` onto the colormap.

use crate::color::norm::{color_ranges, Norm};
use crate::error::{Error, Result};
use crate::pool::accum::HeadStats;

/// Histogram bins per scope (`BINS` in `shaders/limits.wgsl`): percentiles are exact to
/// 1/4096 of the scope's range.
pub const BINS: usize = 4096;

/// The curve from normalized value to colormap position.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum Scale {
    #[default]
    Linear,
    /// log10 of the value, floored (matplotlib's LogNorm with a floor for zeros).
    Log,
    /// sqrt of the normalized value (PowerNorm, gamma 0.5).
    Sqrt,
    /// Normalized value to the power G (matplotlib's PowerNorm).
    Gamma(f32),
}

impl Scale {
    pub fn parse(s: &str) -> Result<Scale> {
        Ok(match s {
            "linear" => Scale::Linear,
            "log" => Scale::Log,
            "sqrt" => Scale::Sqrt,
            _ => match s.strip_prefix("gamma:").map(str::parse::<f32>) {
                Some(Ok(g)) if g.is_finite() && g > 0.0 => Scale::Gamma(g),
                _ => {
                    return Err(Error::BadOption(format!(
                        "--scale {s}: expected linear, log, sqrt or gamma:G with G > 0"
                    )))
                }
            },
        })
    }

    /// `SCALE_*` in `shaders/colorize.wgsl`.
    pub(crate) fn shader_id(self) -> u32 {
        match self {
            Scale::Linear => 0,
            Scale::Log => 1,
            Scale::Sqrt => 2,
            Scale::Gamma(_) => 3,
        }
    }

    pub(crate) fn gamma(self) -> f32 {
        match self {
            Scale::Gamma(g) => g,
            Scale::Sqrt => 0.5,
            _ => 1.0,
        }
    }

    /// How the colorbar caption names the scale (`None` for linear).
    pub fn caption(self) -> Option<String> {
        match self {
            Scale::Linear => None,
            Scale::Log => Some("log10".into()),
            Scale::Sqrt => Some("sqrt".into()),
            Scale::Gamma(g) => Some(format!("gamma {g}")),
        }
    }
}

/// Everything between the pooled values and the colormap besides the normalization scope.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ColorScale {
    pub scale: Scale,
    /// Values below this floor take the bottom colour with `Scale::Log`; default 1e-6 of the
    /// scope's maximum.
    pub log_floor: Option<f32>,
    /// Percentiles (0..=100) of the scope's pooled values that become its limits.
    pub clip: Option<[f32; 2]>,
    /// Fixed limits, overriding the data's (and the clip's) at either end.
    pub vmin: Option<f32>,
    pub vmax: Option<f32>,
    /// The first K keys stay out of the statistics (attention sinks); they still render,
    /// saturated.
    pub exclude_keys: usize,
    /// `--center V`: V maps to the middle of the colormap, as matplotlib's
    /// `TwoSlopeNorm(vcenter=V, vmin, vmax)` does: each side of it gets half the colours.
    pub center: Option<f32>,
    /// `--symmetric`: the range becomes `center ± max |v − center|` (matplotlib's
    /// `CenteredNorm`; centre 0 unless `center` is given), so equal distances from the centre
    /// get equal colour steps on both sides.
    pub symmetric: bool,
    /// What the values are, named first in the colorbar caption (`A − B` for `diff`).
    pub label: Option<String>,
}

/// `SCALE_TWO_SLOPE` in `shaders/colorize.wgsl`: a linear scale bent at the centre.
const SCALE_TWO_SLOPE: u32 = 4;

impl ColorScale {
    /// Parses `--clip LOW,HIGH`.
    pub fn parse_clip(s: &str) -> Result<[f32; 2]> {
        let bad = || {
            Error::BadOption(format!(
                "--clip {s}: expected two percentiles LOW,HIGH with 0 <= LOW < HIGH <= 100, e.g. 0,99.5"
            ))
        };
        let (a, b) = s.split_once(',').ok_or_else(bad)?;
        let (a, b): (f32, f32) = (
            a.trim()
                .trim_start_matches('p')
                .parse()
                .map_err(|_| bad())?,
            b.trim()
                .trim_start_matches('p')
                .parse()
                .map_err(|_| bad())?,
        );
        if !(0.0..=100.0).contains(&a) || !(0.0..=100.0).contains(&b) || a >= b {
            return Err(bad());
        }
        Ok([a, b])
    }

    /// Parses `--exclude-keys 0..K` (or just `K`): the number of leading keys left out.
    pub fn parse_exclude(s: &str) -> Result<usize> {
        let bad = || {
            Error::BadOption(format!(
                "--exclude-keys {s}: expected 0..K (the first K keys), e.g. 0..1"
            ))
        };
        let k = match s.split_once("..") {
            Some((a, b)) if a.trim() == "0" => b.trim(),
            Some(_) => return Err(bad()),
            None => s.trim(),
        };
        k.parse().map_err(|_| bad())
    }

    /// Checks the options against each other; the input's size is checked by the plan.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [("--vmin", self.vmin), ("--vmax", self.vmax)] {
            if v.is_some_and(|v| !v.is_finite()) {
                return Err(Error::BadOption(format!("{name} must be a finite number")));
            }
        }
        if let (Some(lo), Some(hi)) = (self.vmin, self.vmax) {
            if hi <= lo {
                return Err(Error::BadOption(format!(
                    "--vmin {lo} must be below --vmax {hi}"
                )));
            }
            // (both limits fixed, the data's range is not read: a clip or excluded keys would
            // change nothing but the caption, which would then claim them)
            let unused = match (self.clip.is_some(), self.exclude_keys > 0) {
                (true, _) => Some("--clip"),
                (_, true) => Some("--exclude-keys"),
                _ => None,
            };
            if let Some(flag) = unused {
                return Err(Error::BadOption(format!(
                    "{flag} limits the range from the data, which --vmin and --vmax both fix: \
                     give one or the other"
                )));
            }
        }
        if self.center.is_some_and(|c| !c.is_finite()) {
            return Err(Error::BadOption("--center must be a finite number".into()));
        }
        if (self.center.is_some() || self.symmetric) && self.scale != Scale::Linear {
            return Err(Error::BadOption(format!(
                "--center and --symmetric need a linear --scale, not {}",
                self.scale.caption().unwrap_or_default()
            )));
        }
        if let Some(f) = self.log_floor {
            if !(f > 0.0 && f.is_finite()) {
                return Err(Error::BadOption(format!(
                    "--log-floor {f} must be a positive number"
                )));
            }
            if self.scale != Scale::Log {
                // (refused rather than left unused: a floor the figure silently ignores)
                return Err(Error::BadOption(format!(
                    "--log-floor applies to --scale log only, not to {}",
                    self.scale.caption().unwrap_or_else(|| "linear".into())
                )));
            }
        }
        Ok(())
    }

    /// Whether the limits need the GPU's limits pass (restricted ranges or histograms).
    pub fn needs_limits_pass(&self) -> bool {
        self.exclude_keys > 0 || self.clip.is_some()
    }

    /// The floor of a log scale for a scope ending at `hi`.
    pub fn floor_for(&self, hi: f32) -> f32 {
        let f = self.log_floor.unwrap_or(hi * 1e-6);
        if f > 0.0 {
            f
        } else {
            f32::MIN_POSITIVE
        }
    }

    /// Whether the centre bends the scale (`--center` without `--symmetric`): a symmetric range
    /// is already centred, and stays on the plain linear path, which is matplotlib's
    /// `CenteredNorm` arithmetic to the bit.
    pub fn two_slope(&self) -> bool {
        self.center.is_some() && !self.symmetric
    }

    /// The `SCALE` pipeline constant of `shaders/colorize.wgsl`.
    pub(crate) fn shader_id(&self) -> u32 {
        if self.two_slope() {
            SCALE_TWO_SLOPE
        } else {
            self.scale.shader_id()
        }
    }

    /// A scope's `[lo, hi]` centred as asked, after every other limit (so the centring combines
    /// with `--clip` and `--vmin/--vmax`): symmetric about the centre, or, for a two-slope
    /// scale, extended past the centre as matplotlib's `TwoSlopeNorm.autoscale_None` does when
    /// the centre lies outside.
    pub fn centred(&self, [lo, hi]: [f32; 2]) -> [f32; 2] {
        if self.symmetric {
            let c = self.center.unwrap_or(0.0);
            let h = (c - lo).max(hi - c).abs();
            // Every value at the centre (a difference of equal inputs): drawn in the centre's
            // colour, as a two-slope scale draws it, over ±1. matplotlib's CenteredNorm maps
            // any constant to the bottom of the colormap, which for `diff A A` painted "no
            // difference" in RdBu_r's most negative blue.
            let h = if h > 0.0 { h } else { 1.0 };
            return [c - h, c + h];
        }
        match self.center {
            Some(c) => {
                let lo = if lo >= c { 2.0 * c - hi } else { lo };
                let hi = if hi <= c { 2.0 * c - lo } else { hi };
                [lo, hi]
            }
            None => [lo, hi],
        }
    }

    /// What the shader needs per cell: the range in the scale's domain, the log floor, and the
    /// centre of a two-slope scale.
    pub fn shader_range(&self, [lo, hi]: [f32; 2]) -> [f32; 4] {
        match self.scale {
            Scale::Log => {
                let f = self.floor_for(hi);
                [lo.max(f).log2(), hi.max(f).log2(), f, 0.0]
            }
            _ if self.two_slope() => [lo, hi, 0.0, self.center.unwrap_or(0.0)],
            _ => [lo, hi, 0.0, 0.0],
        }
    }

    /// Colormap position of `v` (before the LUT index rule); the CPU twin of `scaled` in
    /// `shaders/colorize.wgsl`.
    pub fn position(&self, v: f32, r: [f32; 4]) -> f32 {
        let norm = |v: f32| crate::color::norm::normalize(v, [r[0], r[1]]);
        if self.two_slope() {
            return two_slope(v, r);
        }
        match self.scale {
            Scale::Linear => norm(v),
            Scale::Log => norm(v.max(r[2]).log2()),
            Scale::Sqrt | Scale::Gamma(_) => {
                let t = norm(v);
                if t.is_nan() || t <= 0.0 {
                    0.0
                } else if t >= 1.0 {
                    1.0
                } else if self.scale == Scale::Sqrt {
                    t.sqrt()
                } else {
                    t.powf(self.scale.gamma())
                }
            }
        }
    }
}

/// matplotlib's `TwoSlopeNorm`: `interp(v, [lo, c, hi], [0, 0.5, 1])`, in f32 (matplotlib
/// interpolates in f64, so a value on a LUT boundary may land one step away). The CPU twin of
/// `two_slope` in `shaders/colorize.wgsl`; `r` is `[lo, hi, _, c]`.
pub fn two_slope(v: f32, r: [f32; 4]) -> f32 {
    let (lo, hi, c) = (r[0], r[1], r[3]);
    if v < c {
        let span = c - lo;
        if span > 0.0 {
            0.5 * ((v - lo) / span)
        } else {
            0.0
        }
    } else {
        let span = hi - c;
        if span > 0.0 {
            0.5 + 0.5 * ((v - c) / span)
        } else {
            0.5
        }
    }
}

/// Scope of each cell: one per head, per layer row, or one for the grid.
pub fn scopes(norm: Norm, cells: usize, cols: usize) -> Vec<usize> {
    (0..cells)
        .map(|i| match norm {
            Norm::Head => i,
            Norm::Layer => i / cols.max(1),
            _ => 0,
        })
        .collect()
}

/// First pooled column that holds no excluded key (`first_column` in the shader): with
/// pooling, a column that mixes excluded and other keys is left out whole.
pub fn first_included_column(keys: usize, pooled_w: u32, exclude: usize) -> u32 {
    if exclude == 0 {
        return 0;
    }
    let edges = crate::pool::geometry::bin_edges(keys, pooled_w);
    edges[..pooled_w as usize].partition_point(|&e| (e as usize) < exclude) as u32
}

/// Histogram binning of a scope `[lo, hi]`: (lo, BINS / (hi - lo)) in f32, as the shader gets it.
pub fn hist_params([lo, hi]: [f32; 2]) -> [f32; 2] {
    let span = hi - lo;
    [lo, if span > 0.0 { BINS as f32 / span } else { 0.0 }]
}

/// The histogram bin of value `v` (not a pooled pixel's bin: see `pool::geometry::bin_of`); the
/// CPU twin of the limits shader's binning.
pub fn histogram_bin(v: f32, [lo, k]: [f32; 2]) -> usize {
    (((v - lo) * k).max(0.0) as u32).min(BINS as u32 - 1) as usize
}

/// The `[low, high]` percentiles of a scope's histogram over `[lo, hi]`: the low end is the
/// lower edge of the bin holding the value of rank floor(low% n), the high end the upper edge
/// of the bin holding rank ceil(high% n); 0 and 100 give back `lo` and `hi` exactly.
pub fn percentile_range(hist: &[u32], [lo, hi]: [f32; 2], [p_lo, p_hi]: [f32; 2]) -> [f32; 2] {
    let n: u64 = hist.iter().map(|&c| c as u64).sum();
    if n == 0 || hi <= lo {
        return [lo, hi];
    }
    let edge = |b: usize| -> f32 {
        match b {
            0 => lo,
            b if b >= BINS => hi,
            b => (lo as f64 + (hi as f64 - lo as f64) * b as f64 / BINS as f64) as f32,
        }
    };
    // rank r (0-based) lives in the first bin whose cumulative count exceeds r
    let bin_of_rank = |r: u64| {
        let mut cum = 0u64;
        for (b, &c) in hist.iter().enumerate() {
            cum += c as u64;
            if cum > r {
                return b;
            }
        }
        BINS - 1
    };
    let r_lo = ((p_lo as f64 / 100.0) * n as f64).floor() as u64;
    let r_hi = (((p_hi as f64 / 100.0) * n as f64).ceil() as u64).clamp(1, n) - 1;
    let (b_lo, b_hi) = (bin_of_rank(r_lo.min(n - 1)), bin_of_rank(r_hi));
    let (a, b) = (edge(b_lo), edge(b_hi + 1));
    if b > a {
        [a, b]
    } else {
        [lo, hi]
    }
}

/// Each cell's `[lo, hi]` in data units from its (possibly restricted) statistics, clipped by
/// per-cell histograms when asked (`hist` bins each cell over the range it is given, its scope's),
/// then overridden by fixed limits.
pub fn resolve_ranges(
    norm: Norm,
    scale: &ColorScale,
    stats: &[HeadStats],
    cols: usize,
    hist: impl FnOnce(&[[f32; 2]]) -> Result<Vec<Vec<u32>>>,
) -> Result<Vec<[f32; 2]>> {
    let mut ranges = color_ranges(norm, stats, cols);
    if let Some(clip) = scale.clip {
        let counts = hist(&ranges)?;
        let scope_of = scopes(norm, ranges.len(), cols);
        let n_scopes = scope_of.iter().max().map_or(0, |&m| m + 1);
        let mut merged = vec![vec![0u32; BINS]; n_scopes];
        for (cell, c) in counts.iter().enumerate() {
            for (m, &v) in merged[scope_of[cell]].iter_mut().zip(c) {
                *m = m.saturating_add(v);
            }
        }
        let clipped: Vec<[f32; 2]> = (0..n_scopes)
            .map(|s| {
                let cell = scope_of.iter().position(|&x| x == s).unwrap_or(0);
                percentile_range(&merged[s], ranges[cell], clip)
            })
            .collect();
        for (r, &s) in ranges.iter_mut().zip(&scope_of) {
            *r = clipped[s];
        }
    }
    for r in &mut ranges {
        if let Some(v) = scale.vmin {
            r[0] = v;
        }
        if let Some(v) = scale.vmax {
            r[1] = v;
        }
        *r = scale.centred(*r);
    }
    Ok(ranges)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing() {
        assert_eq!(Scale::parse("gamma:0.5").unwrap(), Scale::Gamma(0.5));
        assert!(Scale::parse("gamma:-1").is_err());
        assert!(Scale::parse("cubic").is_err());
        assert_eq!(ColorScale::parse_clip("0,99.5").unwrap(), [0.0, 99.5]);
        assert!(ColorScale::parse_clip("99,1").is_err());
        assert_eq!(ColorScale::parse_exclude("0..1").unwrap(), 1);
        assert_eq!(ColorScale::parse_exclude("4").unwrap(), 4);
        assert!(ColorScale::parse_exclude("2..4").is_err());
    }

    #[test]
    fn percentiles_of_a_uniform_histogram() {
        let hist = vec![1u32; BINS];
        assert_eq!(
            percentile_range(&hist, [0.0, 1.0], [0.0, 100.0]),
            [0.0, 1.0]
        );
        let [a, b] = percentile_range(&hist, [0.0, 4096.0], [25.0, 75.0]);
        assert_eq!((a, b), (1024.0, 3072.0));
    }

    #[test]
    fn excluded_columns_follow_the_bins() {
        assert_eq!(first_included_column(1000, 100, 0), 0);
        assert_eq!(first_included_column(1000, 100, 1), 1);
        assert_eq!(first_included_column(1000, 100, 10), 1);
        assert_eq!(first_included_column(1000, 100, 11), 2);
        assert_eq!(first_included_column(64, 64, 3), 3);
    }

    #[test]
    fn positions() {
        let lin = ColorScale::default();
        assert_eq!(lin.position(0.5, lin.shader_range([0.0, 1.0])), 0.5);
        let log = ColorScale {
            scale: Scale::Log,
            ..Default::default()
        };
        let r = log.shader_range([0.0, 1.0]);
        assert_eq!(r[2], 1e-6);
        assert!((log.position(1e-3, r) - 0.5).abs() < 1e-6);
        assert_eq!(log.position(0.0, r), 0.0);
        let sqrt = ColorScale {
            scale: Scale::Sqrt,
            ..Default::default()
        };
        assert_eq!(sqrt.position(0.25, sqrt.shader_range([0.0, 1.0])), 0.5);
    }

    #[test]
    fn centring_follows_matplotlib() {
        let sym = ColorScale {
            symmetric: true,
            ..Default::default()
        };
        assert_eq!(sym.centred([-0.2, 0.5]), [-0.5, 0.5]);
        assert_eq!(sym.centred([0.1, 0.3]), [-0.3, 0.3]);
        // every value at the centre: the centre's colour, not the bottom of the colormap
        assert_eq!(sym.centred([0.0, 0.0]), [-1.0, 1.0]);
        let r = sym.shader_range(sym.centred([0.0, 0.0]));
        assert_eq!(sym.position(0.0, r), 0.5);
        let sym1 = ColorScale {
            center: Some(1.0),
            ..sym
        };
        assert_eq!(sym1.centred([0.0, 4.0]), [-2.0, 4.0]);
        assert!(!sym1.two_slope());
        let two = ColorScale {
            center: Some(0.0),
            ..Default::default()
        };
        assert!(two.two_slope());
        // TwoSlopeNorm.autoscale_None: a centre outside the range extends it
        assert_eq!(two.centred([0.5, 2.0]), [-2.0, 2.0]);
        assert_eq!(two.centred([-3.0, -1.0]), [-3.0, 3.0]);
        assert_eq!(two.centred([-1.0, 4.0]), [-1.0, 4.0]);
        let r = two.shader_range([-1.0, 4.0]);
        assert_eq!(two.position(-1.0, r), 0.0);
        assert_eq!(two.position(-0.5, r), 0.25);
        assert_eq!(two.position(0.0, r), 0.5);
        assert_eq!(two.position(2.0, r), 0.75);
        assert_eq!(two.position(4.0, r), 1.0);
        let log = ColorScale {
            scale: Scale::Log,
            ..two
        };
        assert!(log.validate().is_err());
    }

    /// Options that would change nothing in the figure but its caption are refused, each
    /// naming itself: a floor without a log scale, a clip or excluded keys under two fixed
    /// limits. Each alone is fine.
    #[test]
    fn options_the_figure_would_ignore_are_refused() {
        let fixed = ColorScale {
            vmin: Some(0.0),
            vmax: Some(0.5),
            ..Default::default()
        };
        let refused = [
            (
                "--log-floor",
                ColorScale {
                    log_floor: Some(1e-3),
                    ..Default::default()
                },
            ),
            (
                "--clip",
                ColorScale {
                    clip: Some([1.0, 99.0]),
                    ..fixed.clone()
                },
            ),
            (
                "--exclude-keys",
                ColorScale {
                    exclude_keys: 1,
                    ..fixed.clone()
                },
            ),
        ];
        for (flag, scale) in refused {
            let e = scale.validate().unwrap_err().to_string();
            assert!(e.starts_with(flag), "{e}");
        }
        let fine = [
            ColorScale {
                log_floor: Some(1e-3),
                scale: Scale::Log,
                ..Default::default()
            },
            ColorScale {
                clip: Some([1.0, 99.0]),
                vmin: Some(0.0),
                ..Default::default()
            },
            ColorScale {
                exclude_keys: 1,
                vmax: Some(0.5),
                ..Default::default()
            },
            fixed,
        ];
        for scale in fine {
            scale.validate().unwrap();
        }
    }
}
