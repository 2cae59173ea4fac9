//! `--sort-by METRIC`, `--top N` and `--pattern LABELS`: the grid in the order of a head
//! statistic, or only the heads of some pattern labels, so the heads that matter in a
//! 1024-head model come first. The statistics come from the pass that pools the figure
//! (`RenderOptions::patterns` is turned on), so ranking costs no second read.

use std::borrow::Cow;

use crate::error::{Error, Result};
use crate::pool::pattern::{HeadPattern, PATTERNS};

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

/// `--pattern`'s labels: a comma-separated list of [`PATTERNS`], each once.
pub fn parse_patterns(spec: &str) -> Result<Vec<&'static str>> {
    let mut labels: Vec<&'static str> = Vec::new();
    for item in spec.split(',').map(str::trim) {
        let Some(&label) = PATTERNS.iter().find(|&&p| p == item) else {
            return Err(Error::BadOption(format!(
                "--pattern {spec:?}: {item:?} is not a pattern label (labels: {})",
                PATTERNS.join(", ")
            )));
        };
        if !labels.contains(&label) {
            labels.push(label);
        }
    }
    Ok(labels)
}

/// What ranks the heads: a statistic to sort by, highest first (`--sort-by`), at most `top` of
/// them (`--top`), and only heads with one of these labels (`--pattern`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Ranking<'a> {
    pub sort_by: Option<SortKey>,
    pub top: Option<usize>,
    pub pattern: Option<&'a [&'static str]>,
}

impl Ranking<'_> {
    /// Whether the heads are ranked at all: otherwise every head, in layer and head order.
    pub fn ranks(&self) -> bool {
        self.sort_by.is_some() || self.pattern.is_some()
    }
}

/// Cell indices of the heads `ranking` keeps: those with one of its labels (all without), in
/// grid order or highest `sort_by` first (ties and NaN keep grid order, NaN last), at most
/// `top`.
pub fn order(stats: &[HeadPattern], ranking: Ranking) -> Vec<usize> {
    let mut order: Vec<usize> = (0..stats.len())
        .filter(|&i| {
            ranking
                .pattern
                .is_none_or(|l| l.contains(&stats[i].pattern))
        })
        .collect();
    if let Some(key) = ranking.sort_by {
        let v = |i: usize| {
            let x = key.value(&stats[i]);
            if x.is_nan() {
                f64::NEG_INFINITY
            } else {
                x
            }
        };
        order.sort_by(|&a, &b| v(b).total_cmp(&v(a)));
    }
    order.truncate(ranking.top.unwrap_or(usize::MAX));
    order
}

/// Refuses a `--pattern` that no head of `stats` has, naming the labels they have (with their
/// counts): a figure of no cells, or an empty list, would look like a failure of its own.
pub fn check_matched(stats: &[HeadPattern], ranking: Ranking) -> Result<()> {
    let Some(wanted) = ranking.pattern else {
        return Ok(());
    };
    if stats.iter().any(|p| wanted.contains(&p.pattern)) {
        return Ok(());
    }
    Err(Error::BadOption(format!(
        "--pattern {}: no head has that label (these heads: {})",
        wanted.join(","),
        label_counts(stats)
    )))
}

/// How many of `stats`' heads have each label, in [`PATTERNS`]' order, those no head has left
/// out: `sink 2, local 4, mixed 35`.
pub fn label_counts(stats: &[HeadPattern]) -> String {
    let counts: Vec<String> = PATTERNS
        .iter()
        .filter_map(|&l| {
            let n = stats.iter().filter(|p| p.pattern == l).count();
            (n > 0).then(|| format!("{l} {n}"))
        })
        .collect();
    counts.join(", ")
}

/// Heads as listed: their (layer, head) cells and their statistics, in the same order.
pub type Listed<'a> = (Cow<'a, [(usize, usize)]>, Cow<'a, [HeadPattern]>);

/// The heads as `attnviz heads` (and Python's `attnviz.heads`) lists them: in layer and head
/// order (borrowed), or as `ranking` ranks them ([`order`]).
pub fn listed<'a>(
    cells: &'a [(usize, usize)],
    stats: &'a [HeadPattern],
    ranking: Ranking,
) -> Listed<'a> {
    if !ranking.ranks() {
        return (cells.into(), stats.into());
    }
    let (c, s): (Vec<_>, Vec<_>) = order(stats, ranking)
        .into_iter()
        .map(|i| (cells[i], stats[i].clone()))
        .unzip();
    (c.into(), s.into())
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
        let by = |top| Ranking {
            sort_by: Some(SortKey::SinkMass),
            top,
            pattern: None,
        };
        assert_eq!(order(&stats, by(None)), vec![2, 4, 0, 3, 1]);
        assert_eq!(order(&stats, by(Some(2))), vec![2, 4]);
        assert!(check(None, Some(3))
            .unwrap_err()
            .to_string()
            .contains("--sort-by"));
        assert!(check(Some(SortKey::Max), Some(0)).is_err());
        for k in SortKey::ALL {
            assert_eq!(SortKey::from_name(k.name()), Some(k));
        }
    }

    #[test]
    fn pattern_keeps_the_heads_of_its_labels() {
        let stats: Vec<HeadPattern> = [
            (0.2, "local"),
            (0.9, "sink"),
            (0.5, "local"),
            (0.7, "mixed"),
        ]
        .into_iter()
        .map(|(v, pattern)| HeadPattern {
            pattern,
            ..with_sink(v)
        })
        .collect();
        let labels = parse_patterns("local, mixed,local").unwrap();
        assert_eq!(labels, vec!["local", "mixed"]);
        let only = Ranking {
            pattern: Some(&labels),
            ..Default::default()
        };
        assert!(only.ranks());
        // grid order without --sort-by; by the statistic with it; --top after the filter
        assert_eq!(order(&stats, only), vec![0, 2, 3]);
        let sorted = Ranking {
            sort_by: Some(SortKey::SinkMass),
            top: Some(2),
            ..only
        };
        assert_eq!(order(&stats, sorted), vec![3, 2]);
        let (cells, listed) = listed(&[(0, 0), (0, 1), (1, 0), (1, 1)], &stats, only);
        assert_eq!(cells.to_vec(), vec![(0, 0), (1, 0), (1, 1)]);
        assert_eq!(listed.len(), 3);
        let err = parse_patterns("sink,retrieval").unwrap_err().to_string();
        assert!(
            err.contains("\"retrieval\" is not a pattern label"),
            "{err}"
        );
        assert!(err.contains("vertical-slash"), "{err}");
        let block = ["block-sparse"];
        let none = Ranking {
            pattern: Some(&block),
            ..Default::default()
        };
        assert!(check_matched(&stats, only).is_ok());
        let err = check_matched(&stats, none).unwrap_err().to_string();
        assert!(
            err.contains("these heads: sink 1, local 2, mixed 1"),
            "{err}"
        );
    }
}
