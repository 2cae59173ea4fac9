//! `--sort-by METRIC` and `--top N`: the grid in the order of a head statistic, so the heads that
//! matter in a 1024-head model come first. The statistics come from the pass that pools the
//! figure (`RenderOptions::patterns` is turned on), so sorting costs no second read.

use std::borrow::Cow;

use crate::error::{Error, Result};
use crate::pool::pattern::HeadPattern;

/// A scalar head statistic to sort by (the definitions are `attnviz heads`').
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    SinkMass,
    LocalMass,
    Entropy,
    MeanDistance,
    Max,
    RowSumMean,
}

impl SortKey {
    pub const ALL: [SortKey; 6] = [
        SortKey::SinkMass,
        SortKey::LocalMass,
        SortKey::Entropy,
        SortKey::MeanDistance,
        SortKey::Max,
        SortKey::RowSumMean,
    ];

    /// The statistic's key in `attnviz heads --json`.
    pub fn name(self) -> &'static str {
        match self {
            SortKey::SinkMass => "sink_mass",
            SortKey::LocalMass => "local_mass",
            SortKey::Entropy => "entropy",
            SortKey::MeanDistance => "mean_distance",
            SortKey::Max => "max",
            SortKey::RowSumMean => "row_sum_mean",
        }
    }

    pub fn from_name(name: &str) -> Option<SortKey> {
        SortKey::ALL.into_iter().find(|k| k.name() == name)
    }

    pub fn value(self, p: &HeadPattern) -> f64 {
        match self {
            SortKey::SinkMass => p.sink_mass,
            SortKey::LocalMass => p.local_mass,
            SortKey::Entropy => p.entropy,
            SortKey::MeanDistance => p.mean_distance,
            SortKey::Max => p.max.map_or(f64::NAN, f64::from),
            SortKey::RowSumMean => p.row_sum_mean,
        }
    }
}

/// Checks `--top` (it needs `--sort-by`, and at least one head).
pub fn check(sort_by: Option<SortKey>, top: Option<usize>) -> Result<()> {
    match (sort_by, top) {
        (None, Some(_)) => Err(Error::BadOption(
            "--top keeps the highest heads of --sort-by: give --sort-by METRIC".into(),
        )),
        (_, Some(0)) => Err(Error::BadOption("--top 0 would draw no head".into())),
        _ => Ok(()),
    }
}

/// Cell indices, highest `key` first (ties and NaN keep grid order, NaN last), at most `top`.
pub fn order(stats: &[HeadPattern], key: SortKey, top: Option<usize>) -> Vec<usize> {
    let mut order: Vec<usize> = (0..stats.len()).collect();
    let v = |i: usize| {
        let x = key.value(&stats[i]);
        if x.is_nan() {
            f64::NEG_INFINITY
        } else {
            x
        }
    };
    order.sort_by(|&a, &b| v(b).total_cmp(&v(a)));
    order.truncate(top.unwrap_or(usize::MAX));
    order
}

/// Heads as listed: their (layer, head) cells and their statistics, in the same order.
pub type Listed<'a> = (Cow<'a, [(usize, usize)]>, Cow<'a, [HeadPattern]>);

/// The heads as `attnviz heads` (and Python's `attnviz.heads`) lists them: in layer and head
/// order (borrowed), or with `sort_by` highest first, at most `top` of them.
pub fn listed<'a>(
    cells: &'a [(usize, usize)],
    stats: &'a [HeadPattern],
    sort_by: Option<SortKey>,
    top: Option<usize>,
) -> Listed<'a> {
    match sort_by {
        Some(key) => {
            let (c, s): (Vec<_>, Vec<_>) = order(stats, key, top)
                .into_iter()
                .map(|i| (cells[i], stats[i].clone()))
                .unzip();
            (c.into(), s.into())
        }
        None => (cells.into(), stats.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_sink(v: f64) -> HeadPattern {
        HeadPattern {
            sink_mass: v,
            ..Default::default()
        }
    }

    #[test]
    fn highest_first_stable_nan_last_and_cut_at_top() {
        let stats: Vec<HeadPattern> = [0.2, f64::NAN, 0.9, 0.2, 0.5]
            .into_iter()
            .map(with_sink)
            .collect();
        assert_eq!(order(&stats, SortKey::SinkMass, None), vec![2, 4, 0, 3, 1]);
        assert_eq!(order(&stats, SortKey::SinkMass, Some(2)), vec![2, 4]);
        assert!(check(None, Some(3))
            .unwrap_err()
            .to_string()
            .contains("--sort-by"));
        assert!(check(Some(SortKey::Max), Some(0)).is_err());
        for k in SortKey::ALL {
            assert_eq!(SortKey::from_name(k.name()), Some(k));
        }
    }
}
