//! `attnviz heads --figure`: the summary figure, one layer × head heatmap of each head's
//! `pattern` label, then one per scalar head statistic (the "which heads are streaming heads"
//! picture of DuoAttention), drawn by the same engine as every figure. The statistics become a
//! small in-memory source whose heads are the L × H matrices ([`summary_input`]);
//! [`summary_options`] renders it as one row of cells, each normalized on its own (`--norm
//! head`) and given its own colorbar in the statistic's units (the labels a legend instead),
//! titled with the statistic's name and ticked `l = …` down its rows and `h = …` along its
//! columns (1-based, the heads' true numbers when a selection was given).

use crate::color::colormap::lut_index;
use crate::color::norm::{normalize, Norm};
use crate::color::scale::ColorScale;
use crate::error::{Error, Result};
use crate::figure::colorbar::{short, ColorbarSpec};
use crate::figure::layout::{math_label, with_raster, CellPlacement, Layout, Metrics, PlacedLabel};
use crate::figure::layout::{Text, Theme};
use crate::figure::plan::RenderOptions;
use crate::figure::rank::SortKey;
use crate::figure::text::Label;
use crate::pool::geometry::CellGeometry;
use crate::pool::pattern::{HeadPattern, PATTERNS};
use crate::pool::Causal;
use crate::source::ArraySource;
use crate::source::{DType, Shape};

/// The scalar statistics drawn, left to right after the labels: those `--sort-by` knows.
pub const STATISTICS: [SortKey; 6] = SortKey::ALL;

/// The panels: the `pattern` labels first (the figure's question, which head is which kind),
/// then the [`STATISTICS`]; panel `i + 1` draws `STATISTICS[i]`.
pub const PANELS: usize = STATISTICS.len() + 1;

/// The panel of the `pattern` labels: each head drawn in the colour of its label, read off a
/// legend. A label is drawn as a value on a fixed range, `PATTERNS.len() − 1` for the first
/// of [`PATTERNS`] down to 0 for `mixed`, so the labels take colormap entries evenly spaced
/// over the whole table (viridis: `sink` yellow, `mixed` dark violet) whichever of them the
/// heads have; per-head min–max would give one label different colours in different figures.
pub const PATTERN_PANEL: usize = 0;

/// The value [`summary_input`] draws a head labelled `pattern` as (NaN, the bad colour, for a
/// label not in [`PATTERNS`]).
pub fn pattern_value(pattern: &str) -> f32 {
    match PATTERNS.iter().position(|&p| p == pattern) {
        Some(i) => (PATTERNS.len() - 1 - i) as f32,
        None => f32::NAN,
    }
}

/// The range the `pattern` panel maps onto the colormap, whatever its heads' labels.
pub fn pattern_range() -> [f32; 2] {
    [0.0, (PATTERNS.len() - 1) as f32]
}

/// The legend of the `pattern` panel: each label of [`PATTERNS`] with the colormap entry its
/// heads are drawn in (the colorize pass's lookup of [`pattern_value`] on [`pattern_range`]).
pub fn pattern_legend() -> Vec<(&'static str, u8)> {
    PATTERNS
        .iter()
        .map(|&p| {
            let index = lut_index(normalize(pattern_value(p), pattern_range()));
            (p, index as u8)
        })
        .collect()
}

/// A statistic whose heads all lie within this fraction of its magnitude of each other is drawn
/// as one value, titled `≈ v in every head`, not scaled over its spread: rows that sum to 1 give
/// `row_sum_mean` within a few 1e-6 of it by rounding alone (f16 entries, f32 sums), and a
/// colour scale over that spread would paint rounding as if it told heads apart. 1e-4 is ten
/// times the statistics' stated tolerance between backends (1e-5) and below any difference
/// between heads worth a colour; `attnviz heads --json` keeps every value as computed.
pub const NEAR_EQUAL: f64 = 1e-4;

/// What the summary's cells show: the selected layers (rows) and heads (columns), 0-based,
/// one title per cell ([`PANELS`] of them), and per cell whether its heads were drawn as one
/// value though they differ within [`NEAR_EQUAL`].
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub layers: Vec<usize>,
    pub heads: Vec<usize>,
    pub titles: Vec<String>,
    pub near_equal: Vec<bool>,
}

impl Summary {
    /// `ranges` (one per cell, from the data) with the `pattern` panel's fixed: the GPU's and
    /// the CPU twin's range resolution both end here.
    pub fn fix_ranges(&self, ranges: &mut [[f32; 2]]) {
        if let Some(r) = ranges.get_mut(PATTERN_PANEL) {
            *r = pattern_range();
        }
    }
}

/// A statistic's title: its key in `attnviz heads --json`, with its unit when it has one.
pub fn title(key: SortKey) -> String {
    match key {
        SortKey::Entropy => "entropy (nats)".into(),
        SortKey::MeanDistance => "mean_distance (tokens)".into(),
        k => k.name().into(),
    }
}

/// The statistics of `cells` (row-major (layer, head) pairs of a layers × heads selection, as
/// `attnviz heads` reports them) as a source of one layer whose heads are the [`PANELS`]: the
/// labels as [`pattern_value`]s, then the [`STATISTICS`], each a layers × heads matrix of f32
/// (`max` is NaN where a head had no finite entry).
pub fn summary_input(
    cells: &[(usize, usize)],
    stats: &[HeadPattern],
) -> Result<(ArraySource, Summary)> {
    let mut layers: Vec<usize> = Vec::new();
    for &(l, _) in cells {
        if !layers.contains(&l) {
            layers.push(l);
        }
    }
    let heads: Vec<usize> = cells
        .iter()
        .filter(|c| Some(&c.0) == layers.first())
        .map(|c| c.1)
        .collect();
    if cells.is_empty() || cells.len() != layers.len() * heads.len() || cells.len() != stats.len() {
        return Err(Error::BadOption(format!(
            "the summary figure needs a full layers × heads grid of statistics ({} cells, {} statistics)",
            cells.len(),
            stats.len()
        )));
    }
    let mut near_equal = vec![false];
    let mut bytes: Vec<u8> = stats
        .iter()
        .flat_map(|p| pattern_value(p.pattern).to_le_bytes())
        .collect();
    for key in STATISTICS {
        let mut values: Vec<f32> = stats.iter().map(|p| key.value(p) as f32).collect();
        let near = one_value(&values);
        if let Some(v) = near {
            values
                .iter_mut()
                .filter(|x| x.is_finite())
                .for_each(|x| *x = v);
        }
        near_equal.push(near.is_some());
        bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    }
    let shape = Shape {
        layers: 1,
        heads: PANELS,
        queries: layers.len(),
        keys: heads.len(),
    };
    let source = ArraySource::new("head statistics", shape, DType::F32, bytes)?;
    let titles = std::iter::once("pattern".to_string())
        .chain(STATISTICS.iter().map(|&k| title(k)))
        .collect();
    Ok((
        source,
        Summary {
            layers,
            heads,
            titles,
            near_equal,
        },
    ))
}

/// The one value to draw for `values` (their finite mean) when they differ, but only within
/// [`NEAR_EQUAL`] of their magnitude; `None` when they are equal (drawn as they are) or differ
/// by more.
fn one_value(values: &[f32]) -> Option<f32> {
    let finite: Vec<f64> = values
        .iter()
        .filter(|v| v.is_finite())
        .map(|&v| v as f64)
        .collect();
    let lo = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let near = lo < hi && hi - lo <= NEAR_EQUAL * lo.abs().max(hi.abs());
    near.then(|| (finite.iter().sum::<f64>() / finite.len() as f64) as f32)
}

/// Render options that draw [`summary_input`]'s source as the summary: every cell its own
/// min–max and colorbar, nothing masked.
pub fn summary_options(summary: Summary) -> RenderOptions {
    RenderOptions {
        norm: Norm::Head,
        causal: Causal::Off,
        summary: Some(summary),
        ..Default::default()
    }
}

/// What stands right of a summary cell once its range is known.
#[derive(Clone, Debug, PartialEq)]
pub enum CellBar {
    /// Its colorbar, in the statistic's units.
    Bar(ColorbarSpec),
    /// No bar: every head has this value (a bar over no range would say nothing), which the
    /// cell's title states instead, e.g. `max = 1 in every head`.
    Constant(f64),
    /// The labels' legend ([`pattern_legend`]): a swatch and a name per label.
    Legend(Vec<(&'static str, u8)>),
}

/// What stands right of each cell: the legend of the `pattern` panel, and each statistic's own
/// colorbar over its range, in data units.
pub fn cell_bars(ranges: &[[f32; 2]], scale: &ColorScale) -> Vec<CellBar> {
    ranges
        .iter()
        .enumerate()
        .map(|(i, r)| match r {
            _ if i == PATTERN_PANEL => CellBar::Legend(pattern_legend()),
            [lo, hi] if lo == hi => CellBar::Constant(*lo as f64),
            r => CellBar::Bar(ColorbarSpec::new(
                Norm::Head,
                std::slice::from_ref(r),
                scale,
            )),
        })
        .collect()
}

/// Of `n` rows (or columns) `pitch` pixels apart, the ones to label so that labels `need`
/// pixels long stay apart: the first, then every `step`-th (1-based multiples of a round step).
fn labelled(n: usize, pitch: f32, need: f32) -> Vec<usize> {
    let step = [
        1usize, 2, 4, 5, 8, 10, 16, 20, 25, 32, 50, 64, 100, 128, 250, 500, 1000,
    ]
    .into_iter()
    .find(|&s| s as f32 * pitch >= need)
    .unwrap_or(n.max(1));
    let mut out = Vec::new();
    let mut last: Option<f32> = None;
    for i in (0..n).filter(|&i| i == 0 || (i + 1) % step == 0) {
        let at = i as f32 * pitch;
        if last.is_none_or(|l| at - l >= need) {
            out.push(i);
            last = Some(at);
        }
    }
    out
}

impl Layout {
    /// A legend at (`x`, `top`): per entry, top to bottom, a square swatch of its colormap
    /// entry and its name right of it, sized as a colorbar's bar and ticks are; the figure
    /// grows down when the legend is taller than the cells. Returns its right edge.
    fn place_legend(&mut self, entries: &[(&str, u8)], m: &Metrics, x: u32, top: u32) -> u32 {
        let side = (m.font_px * 0.9).round().max(10.0) as u32;
        let small = (m.font_px * 0.8).round().max(10.0);
        let gap = (small / 3.0).round().max(3.0) as u32;
        let mut right = x;
        let mut y = top;
        for &(name, index) in entries {
            let (text, label) = with_raster(Text::plain(name, small));
            let pitch = side.max(label.height);
            self.swatches
                .push(([x, y + (pitch - side) / 2, side, side], index));
            let lx = x + side + gap;
            right = right.max(lx + label.width);
            self.labels.push(PlacedLabel {
                x: lx,
                y: y + (pitch - label.height) / 2,
                label,
                text,
            });
            y += pitch + gap;
        }
        self.height = self.height.max(y - gap + m.margin);
        right
    }

    /// The summary: one cell per statistic in a row, each titled above, its rows ticked
    /// `l = …` (left of the first cell, as shared axes) and its columns `h = …` (below every
    /// cell, rotated), and, once the ranges are known, its own colorbar right of it (`bars`,
    /// one per cell; without, the cells stand a gutter apart).
    pub fn summary(
        summary: &Summary,
        cell: &CellGeometry,
        theme: Theme,
        m: &Metrics,
        title: Option<&str>,
        bars: Option<&[CellBar]>,
    ) -> Layout {
        let (cw, ch) = (cell.display_w, cell.display_h);
        let small = (m.font_px * 0.7).round().max(8.0);
        let tick = (small / 3.0).round().max(3.0) as u32;
        let gap = (m.font_px * 0.25).round().max(2.0) as u32;
        let (nl, nh) = (summary.layers.len().max(1), summary.heads.len().max(1));
        let (row_pitch, col_pitch) = (ch as f32 / nl as f32, cw as f32 / nh as f32);
        let label_h = with_raster(math_label("l", 1, small)).1.height as f32;
        let rows: Vec<(u32, Text, Label)> = labelled(nl, row_pitch, label_h * 1.1)
            .into_iter()
            .map(|i| {
                let (text, label) = with_raster(math_label("l", summary.layers[i] + 1, small));
                (((i as f32 + 0.5) * row_pitch) as u32, text, label)
            })
            .collect();
        let cols: Vec<(u32, Text, Label)> = labelled(nh, col_pitch, label_h * 1.1)
            .into_iter()
            .map(|i| {
                let text = math_label("h", summary.heads[i] + 1, small).rotated();
                let label = text.rasterize();
                (((i as f32 + 0.5) * col_pitch) as u32, text, label)
            })
            .collect();
        let titles: Vec<(Text, Label)> = summary
            .titles
            .iter()
            .enumerate()
            .map(|(i, t)| match bars.and_then(|b| b.get(i)) {
                Some(CellBar::Constant(v)) => {
                    let name = t.split(" (").next().unwrap_or(t);
                    let is = match summary.near_equal.get(i) {
                        Some(true) => "≈",
                        _ => "=",
                    };
                    with_raster(Text::plain(
                        &format!("{name} {is} {} in every head", short(*v)),
                        m.font_px,
                    ))
                }
                _ => with_raster(Text::plain(t, m.font_px)),
            })
            .collect();
        let heading = title.map(|t| with_raster(Text::plain(t, (m.font_px * 1.2).round())));
        let heading_h = heading.as_ref().map_or(0, |(_, l)| l.height + m.gutter);
        let titles_h = titles.iter().map(|t| t.1.height).max().unwrap_or(0) + m.gutter / 2;
        let left_w = rows.iter().map(|r| r.2.width).max().unwrap_or(0) + tick + gap;
        let bottom_h = cols.iter().map(|c| c.2.height).max().unwrap_or(0) + tick + gap;
        let y = m.margin + heading_h + titles_h;
        let mut layout = Layout {
            width: 0,
            height: y + ch + bottom_h + m.margin,
            cells: Vec::new(),
            columns: titles.len(),
            labels: Vec::new(),
            colorbar: None,
            cell_colorbars: Vec::new(),
            swatches: Vec::new(),
            fills: Vec::new(),
            axis_ticks: Vec::new(),
            theme,
        };
        // each panel (cell, its bar and ticks) starts right of the previous one's end, and
        // far enough right that its title, centred over the cell, clears it too
        let mut end = m.margin + left_w;
        for (i, (text, label)) in titles.into_iter().enumerate() {
            let space = if i == 0 { 0 } else { 3 * m.gutter };
            let x = (end + space).max((end + m.gutter + label.width / 2).saturating_sub(cw / 2));
            layout.cells.push(CellPlacement {
                x,
                y,
                width: cw,
                height: ch,
                layer: 0,
                head: i,
            });
            let mut right = x + cw;
            let title_x = (x + cw / 2).saturating_sub(label.width / 2);
            right = right.max(title_x + label.width);
            layout.labels.push(PlacedLabel {
                x: title_x,
                y: y - titles_h,
                label,
                text,
            });
            if i == 0 {
                for (at, text, label) in &rows {
                    layout.fills.push([x - tick, y + at, tick, 1]);
                    let ly = (y + at).saturating_sub(label.height / 2);
                    layout.labels.push(PlacedLabel {
                        x: x - tick - gap - label.width,
                        y: ly,
                        label: label.clone(),
                        text: text.clone(),
                    });
                }
            }
            for (at, text, label) in &cols {
                layout.fills.push([x + at, y + ch, 1, tick]);
                layout.labels.push(PlacedLabel {
                    x: (x + at).saturating_sub(label.width / 2),
                    y: y + ch + tick + gap,
                    label: label.clone(),
                    text: text.clone(),
                });
            }
            match bars.and_then(|b| b.get(i)) {
                Some(CellBar::Bar(spec)) => {
                    let (rect, bar_right) =
                        layout.place_colorbar(spec, m, x + cw + m.gutter, y, ch, false);
                    layout.cell_colorbars.push(rect);
                    right = right.max(bar_right);
                }
                Some(CellBar::Legend(entries)) => {
                    right = right.max(layout.place_legend(entries, m, x + cw + m.gutter, y));
                }
                _ => {}
            }
            end = right;
        }
        layout.width = end + m.margin;
        if let Some((text, label)) = heading {
            layout.width = layout.width.max(label.width + 2 * m.margin);
            layout.labels.push(PlacedLabel {
                x: (layout.width / 2)
                    .saturating_sub(label.width / 2)
                    .max(m.margin),
                y: m.margin,
                label,
                text,
            });
        }
        layout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_thin_out_to_round_steps() {
        assert_eq!(labelled(6, 21.0, 18.0), vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(
            labelled(32, 8.0, 18.0),
            vec![0, 3, 7, 11, 15, 19, 23, 27, 31]
        );
        assert_eq!(labelled(1, 256.0, 18.0), vec![0]);
    }

    #[test]
    fn rounding_alone_is_drawn_as_one_value() {
        let cells: Vec<(usize, usize)> = (0..2).flat_map(|l| (0..3).map(move |h| (l, h))).collect();
        let stats: Vec<HeadPattern> = (0..cells.len())
            .map(|i| HeadPattern {
                // rows that sum to 1 up to rounding; entropies that differ by a thousandth
                row_sum_mean: 1.0 + (i as f64 - 2.5) * 2e-6,
                entropy: 3.0 + i as f64 * 1e-3,
                max: None,
                ..Default::default()
            })
            .collect();
        let (src, summary) = summary_input(&cells, &stats).unwrap();
        let panel = |key| 1 + STATISTICS.iter().position(|&k| k == key).unwrap();
        let (row_sums, entropy) = (panel(SortKey::RowSumMean), panel(SortKey::Entropy));
        assert!(summary.near_equal[row_sums]);
        assert!(!summary.near_equal[entropy]);
        let mut bytes = vec![0u8; 6 * 4];
        crate::source::AttentionSource::read_rows(&src, 0, row_sums, 0, &mut bytes).unwrap();
        let drawn: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
        assert!(
            drawn
                .iter()
                .all(|&v| v == drawn[0] && (v - 1.0).abs() < 1e-5),
            "{drawn:?}"
        );
        let g = CellGeometry::new(2, 3, None).unwrap();
        let m = Metrics::for_cell(&g);
        let mut ranges = [[0.0, 1.0]; PANELS];
        ranges[row_sums] = [drawn[0], drawn[0]];
        let bars = cell_bars(&ranges, &summary_options(summary.clone()).scale);
        let l = Layout::summary(&summary, &g, Theme::LIGHT, &m, None, Some(&bars));
        let texts: Vec<String> = l.labels.iter().map(|p| p.text.string()).collect();
        assert!(
            texts.contains(&"row_sum_mean ≈ 1 in every head".to_string()),
            "{texts:?}"
        );
    }

    #[test]
    fn a_panel_per_statistic_nothing_overlapping() {
        let cells: Vec<(usize, usize)> = [0, 2, 5]
            .iter()
            .flat_map(|&l| (0..12).map(move |h| (l, h)))
            .collect();
        let stats: Vec<HeadPattern> = (0..cells.len())
            .map(|i| HeadPattern {
                sink_mass: i as f64 / 36.0,
                ..Default::default()
            })
            .collect();
        let (src, summary) = summary_input(&cells, &stats).unwrap();
        assert_eq!(summary.layers, vec![0, 2, 5]);
        assert_eq!(summary.heads.len(), 12);
        let s = crate::source::AttentionSource::shape(&src);
        assert_eq!((s.layers, s.heads, s.queries, s.keys), (1, 7, 3, 12));
        let g = CellGeometry::new(3, 12, None).unwrap();
        let m = Metrics::for_cell(&g);
        let options = summary_options(summary.clone());
        let bars = cell_bars(&[[0.0, 1.0]; PANELS], &options.scale);
        let l = Layout::summary(&summary, &g, Theme::LIGHT, &m, None, Some(&bars));
        // a bar per statistic, a legend of a swatch per label for the labels
        assert_eq!((l.cells.len(), l.cell_colorbars.len()), (7, 6));
        assert_eq!(l.swatches.len(), PATTERNS.len());
        let mut ranges = [[0.0, 1.0]; PANELS];
        ranges[5] = [1.0, 1.0];
        let bars = cell_bars(&ranges, &options.scale);
        let one = Layout::summary(&summary, &g, Theme::LIGHT, &m, None, Some(&bars));
        assert_eq!(one.cell_colorbars.len(), 5);
        assert!(one
            .labels
            .iter()
            .any(|p| p.text.string() == "max = 1 in every head"));
        let texts: Vec<String> = l.labels.iter().map(|p| p.text.string()).collect();
        assert!(texts.contains(&"l = 6".to_string()), "{texts:?}");
        assert!(texts.contains(&"h = 12".to_string()), "{texts:?}");
        assert!(texts.contains(&"entropy (nats)".to_string()), "{texts:?}");
        let mut rects: Vec<[u32; 4]> = l
            .cells
            .iter()
            .map(|c| [c.x, c.y, c.width, c.height])
            .collect();
        rects.extend(&l.cell_colorbars);
        rects.extend(l.swatches.iter().map(|s| s.0));
        rects.extend(
            l.labels
                .iter()
                .map(|p| [p.x, p.y, p.label.width, p.label.height]),
        );
        for (i, a) in rects.iter().enumerate() {
            assert!(
                a[0] + a[2] <= l.width && a[1] + a[3] <= l.height,
                "{a:?} outside"
            );
            for b in &rects[i + 1..] {
                let apart = a[0] + a[2] <= b[0]
                    || b[0] + b[2] <= a[0]
                    || a[1] + a[3] <= b[1]
                    || b[1] + b[3] <= a[1];
                assert!(apart, "{a:?} overlaps {b:?}");
            }
        }
        assert!(summary_input(&cells[1..], &stats[1..]).is_err());
    }

    /// Each label is drawn as its own value on one fixed range, whichever labels the heads
    /// have, so a label has one colour in every summary: the legend's entries are the ones
    /// the colorize pass looks those values up at, evenly spread over the table.
    #[test]
    fn each_label_has_one_colour_in_every_figure() {
        let legend = pattern_legend();
        let names: Vec<&str> = legend.iter().map(|e| e.0).collect();
        assert_eq!(names, PATTERNS);
        let indices: Vec<u8> = legend.iter().map(|e| e.1).collect();
        assert_eq!(indices, vec![255, 192, 128, 64, 0]);
        assert!(pattern_value("streaming").is_nan());
        // two heads, both `local`: a range from their values would be constant
        let cells = vec![(0, 0), (0, 1)];
        let stats = vec![
            HeadPattern {
                pattern: "local",
                ..Default::default()
            };
            2
        ];
        let (src, summary) = summary_input(&cells, &stats).unwrap();
        let mut bytes = vec![0u8; 8];
        crate::source::AttentionSource::read_rows(&src, 0, PATTERN_PANEL, 0, &mut bytes).unwrap();
        let drawn: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
        assert_eq!(drawn, vec![3.0, 3.0]);
        let mut ranges = vec![[3.0, 3.0]; PANELS];
        summary.fix_ranges(&mut ranges);
        assert_eq!(ranges[PATTERN_PANEL], [0.0, 4.0]);
        assert_eq!(ranges[1], [3.0, 3.0]);
        assert_eq!(summary.titles[PATTERN_PANEL], "pattern");
    }
}
