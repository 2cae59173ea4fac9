//! Per-cell axes: from `--tokens`, query tokens left of every cell and key tokens below it
//! (rotated, ending at the cell) when they are few enough to read, index ticks otherwise; from
//! `--axes on`, index ticks at round positions on the outer cells (left column, bottom row), as
//! shared subplot axes. Built once relative to a cell, then stamped next to the cells.

use crate::error::{Error, Result};
use crate::figure::colorbar::ticks;
use crate::figure::counted;
use crate::figure::layout::{Axis, AxisTick, CellPad, Layout, Metrics, PlacedLabel, Text};
use crate::figure::text::Label;
use crate::pool::geometry::CellGeometry;

/// Up to this many tokens per axis are written out; beyond, index ticks.
pub const MAX_TOKEN_LABELS: usize = 64;

/// Smallest label size worth drawing, in pixels.
const MIN_FONT_PX: f32 = 7.0;

/// Labels and tick marks relative to a cell's top-left corner, each on one side of the cell.
#[derive(Clone, Debug)]
pub struct CellAxes {
    labels: Vec<(Text, Label, i32, i32, Axis)>,
    ticks: Vec<([i32; 4], Axis)>,
    /// Index ticks: the axis, the position, and its offset along the cell's edge in pixels.
    positions: Vec<(Axis, u64, i32)>,
    /// Room the axes need around each cell.
    pub pad: CellPad,
}

/// The tokens of each axis: keys are the file's tokens, and row `q` is token `q + diagonal`
/// (the source's diagonal, [`crate::AttentionSource::diagonal`]): a file's queries are its last
/// `queries` tokens (as in decoding), a `--queries A..B` slice of Q and K rows `A..B`.
pub fn split_tokens(
    tokens: &[String],
    queries: usize,
    keys: usize,
    diagonal: i64,
) -> Result<(&[String], &[String])> {
    let first = usize::try_from(diagonal)
        .ok()
        .filter(|&d| d + queries <= keys);
    match first {
        Some(d) if tokens.len() == keys => Ok((&tokens[d..d + queries], tokens)),
        _ => Err(Error::BadOption(format!(
            "--tokens: {}, but the input has {} and {} (one token per key expected)",
            counted(tokens.len(), "token", "tokens"),
            counted(queries, "query", "queries"),
            counted(keys, "key", "keys"),
        ))),
    }
}

/// Cell side that gives every token a readable row: 14 px per token, at least `base`.
pub fn cell_side_for_tokens(n: usize, base: u32) -> u32 {
    if n <= MAX_TOKEN_LABELS {
        base.max(n as u32 * 14)
    } else {
        base
    }
}

/// A position as a tick reads it: `8k`, `16k`, `2.5k` and `1M` past a thousand (a 131072-token
/// axis stays legible at any cell size), the plain number below.
pub fn position_label(p: u64) -> String {
    let scaled = |unit: u64, suffix: &str| {
        let v = p as f64 / unit as f64;
        let s = format!("{v:.2}");
        format!("{}{suffix}", s.trim_end_matches('0').trim_end_matches('.'))
    };
    match p {
        1_000_000.. if p.is_multiple_of(10_000) => scaled(1_000_000, "M"),
        1000.. if p.is_multiple_of(10) => scaled(1000, "k"),
        _ => p.to_string(),
    }
}

/// Offset of position `t` of `n` along an edge of `along` pixels: the centre of its row or
/// column of the cell.
fn offset_of(t: u64, n: usize, along: f32) -> i32 {
    ((t as f32 + 0.5) * along / n as f32) as i32
}

impl CellAxes {
    /// Index ticks at round positions on both axes: `queries` rows numbered from `first_query`
    /// (a `--queries A..B` slice's rows are ticked `A..B`, as the user named them), `keys`
    /// columns.
    pub fn positions(
        queries: usize,
        keys: usize,
        first_query: usize,
        cell: &CellGeometry,
        m: &Metrics,
    ) -> CellAxes {
        let mut out = CellAxes::empty();
        out.index_ticks(queries.max(1), keys.max(1), first_query, cell, m);
        out.finish(cell, m)
    }

    /// Tokens beside every row and under every column where there are few enough, index ticks
    /// (rows numbered from `first_query`) otherwise.
    pub fn new(
        q_tokens: &[String],
        k_tokens: &[String],
        first_query: usize,
        cell: &CellGeometry,
        m: &Metrics,
    ) -> CellAxes {
        let (cw, ch) = (cell.display_w as f32, cell.display_h as f32);
        let (nq, nk) = (q_tokens.len().max(1), k_tokens.len().max(1));
        let gap = gap(m);
        let mut out = CellAxes::empty();
        if nq.max(nk) <= MAX_TOKEN_LABELS {
            // (as large as a row or column allows, no larger than the figure's text, and never
            // below the floor: a figure scaled far down has its text below it too)
            let px = ((ch / nq as f32).min(cw / nk as f32) * 0.8)
                .min(m.font_px * 0.8)
                .max(MIN_FONT_PX)
                .round();
            for (q, tok) in q_tokens.iter().enumerate() {
                let text = Text::plain(&display(tok), px);
                let label = text.rasterize();
                let centre = ((q as f32 + 0.5) * ch / nq as f32).round() as i32;
                let dy = centre - label.baseline as i32 + (px * 0.35).round() as i32;
                let dx = -gap - label.width as i32;
                out.labels.push((text, label, dx, dy, Axis::Query));
            }
            for (k, tok) in k_tokens.iter().enumerate() {
                let text = Text::plain(&display(tok), px).rotated();
                let label = text.rasterize();
                let centre = ((k as f32 + 0.5) * cw / nk as f32).round() as i32;
                // the rotated baseline is the bitmap's left edge + the original baseline
                let baseline = text::rotated_baseline(&text);
                let dx = centre - baseline + (px * 0.35).round() as i32;
                out.labels
                    .push((text, label, dx, cell.display_h as i32 + gap, Axis::Key));
            }
        } else {
            out.index_ticks(nq, nk, first_query, cell, m);
        }
        out.finish(cell, m)
    }

    fn empty() -> CellAxes {
        CellAxes {
            labels: Vec::new(),
            ticks: Vec::new(),
            positions: Vec::new(),
            pad: CellPad::default(),
        }
    }

    /// Nice round positions of `nq` rows (numbered from `q0`) and `nk` columns, ticked and
    /// labelled.
    fn index_ticks(&mut self, nq: usize, nk: usize, q0: usize, cell: &CellGeometry, m: &Metrics) {
        let (cw, ch) = (cell.display_w as f32, cell.display_h as f32);
        let gap = gap(m);
        let px = (m.font_px * 0.6).round().max(MIN_FONT_PX);
        let tick = (px / 3.0).round().max(3.0) as i32;
        for (n, first, along, axis) in [(nq, q0, ch, Axis::Query), (nk, 0, cw, Axis::Key)] {
            let (lo, hi) = (first as f64, (first + n - 1) as f64);
            let mut placed: Vec<(u64, Text, Label)> = ticks(lo, hi)
                .into_iter()
                .filter(|&t| t.fract() == 0.0 && t >= lo && t <= hi)
                .map(|t| {
                    let text = Text::plain(&position_label(t as u64), px);
                    let label = text.rasterize();
                    (t as u64, text, label)
                })
                .collect();
            // Every other tick dropped while labels would touch (a flat cell of a few rows, a
            // narrow one of long positions): the step doubles, and the ticks stay even.
            let room = |p: &[(u64, Text, Label)]| -> f32 {
                let size = p.iter().map(|(_, _, l)| match axis {
                    Axis::Query => l.height as f32,
                    Axis::Key => l.width as f32,
                });
                size.fold(0.0, f32::max) + px * 0.5
            };
            while placed.len() > 2
                && room(&placed) > (placed[1].0 - placed[0].0) as f32 * along / n as f32
            {
                placed = placed.into_iter().step_by(2).collect();
            }
            for (t, text, label) in placed {
                let at = offset_of(t - first as u64, n, along);
                self.positions.push((axis, t, at));
                if axis == Axis::Query {
                    self.ticks.push(([-tick, at, tick, 1], axis));
                    let dy = at - label.baseline as i32 + (px * 0.35).round() as i32;
                    let dx = -tick - gap - label.width as i32;
                    self.labels.push((text, label, dx, dy, axis));
                } else {
                    self.ticks.push(([at, ch as i32, 1, tick], axis));
                    let dx = at - label.width as i32 / 2;
                    self.labels
                        .push((text, label, dx, ch as i32 + tick + gap / 2, axis));
                }
            }
        }
    }

    /// The room the labels need around the cell.
    fn finish(mut self, cell: &CellGeometry, m: &Metrics) -> CellAxes {
        let (ch, gap) = (cell.display_h as i32, gap(m));
        let left = self.labels.iter().map(|l| -l.2).max().unwrap_or(0).max(0);
        let bottom = self
            .labels
            .iter()
            .map(|l| l.3 + l.1.height as i32 - ch)
            .max()
            .unwrap_or(0)
            .max(0);
        self.pad = CellPad {
            left: (left + gap) as u32,
            bottom: (bottom + gap) as u32,
            shared: false,
        };
        self
    }

    /// These axes drawn on the outer cells only (left column, bottom row).
    pub fn shared(mut self) -> CellAxes {
        self.pad.shared = true;
        self
    }
}

/// Space between a cell's edge and its labels.
fn gap(m: &Metrics) -> i32 {
    (m.font_px * 0.25).round().max(2.0) as i32
}

/// Tokens as shown: tabs and newlines made visible, blank ones as `␣`.
fn display(tok: &str) -> String {
    let t = tok.replace('\t', "⇥");
    if t.trim().is_empty() {
        "␣".into()
    } else {
        t
    }
}

mod text {
    use crate::figure::layout::Text;

    /// Column of a rotated label's bitmap where its baseline runs.
    pub fn rotated_baseline(text: &Text) -> i32 {
        let upright = Text {
            rotated: false,
            ..text.clone()
        };
        upright.rasterize().baseline as i32
    }
}

impl Layout {
    /// Stamps `axes` next to every cell (the grid must have been laid out with `axes.pad`), or,
    /// for shared axes, the query axis left of the first column and the key axis below the last
    /// row.
    pub fn add_cell_axes(&mut self, axes: &CellAxes) {
        let fg_ok = |x: i32, y: i32| x >= 0 && y >= 0;
        let columns = self.columns.max(1);
        let rows = self.cells.len().div_ceil(columns);
        let cells = self.cells.clone();
        for (i, cell) in cells.iter().enumerate() {
            let drawn = |axis: Axis| {
                !axes.pad.shared
                    || match axis {
                        Axis::Query => i % columns == 0,
                        Axis::Key => i / columns + 1 == rows,
                    }
            };
            let (cx, cy) = (cell.x as i32, cell.y as i32);
            for &([x, y, w, h], axis) in &axes.ticks {
                if drawn(axis) && fg_ok(cx + x, cy + y) {
                    self.fills
                        .push([(cx + x) as u32, (cy + y) as u32, w as u32, h as u32]);
                }
            }
            for &(axis, position, at) in &axes.positions {
                if !drawn(axis) {
                    continue;
                }
                let (x, y) = match axis {
                    Axis::Query => (cx - 1, cy + at),
                    Axis::Key => (cx + at, cy + cell.height as i32),
                };
                if fg_ok(x, y) {
                    self.axis_ticks.push(AxisTick {
                        cell: i,
                        axis,
                        position,
                        x: x as u32,
                        y: y as u32,
                    });
                }
            }
            for (text, label, dx, dy, axis) in &axes.labels {
                let (x, y) = (cx + dx, cy + dy);
                if drawn(*axis)
                    && fg_ok(x, y)
                    && x as u32 + label.width <= self.width
                    && y as u32 + label.height <= self.height
                {
                    self.labels.push(PlacedLabel {
                        label: label.clone(),
                        x: x as u32,
                        y: y as u32,
                        text: text.clone(),
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_positions_read_in_thousands() {
        assert_eq!(position_label(0), "0");
        assert_eq!(position_label(500), "500");
        assert_eq!(position_label(8000), "8k");
        assert_eq!(position_label(16000), "16k");
        assert_eq!(position_label(2500), "2.5k");
        assert_eq!(position_label(125000), "125k");
        assert_eq!(position_label(1_000_000), "1M");
        assert_eq!(position_label(1234), "1234");
    }

    #[test]
    fn query_tokens_follow_the_diagonal() {
        let t: Vec<String> = (0..6).map(|i| format!("t{i}")).collect();
        // the last rows (a file's Q < K), a slice's own rows, and rows past the tokens
        let (q, k) = split_tokens(&t, 2, 6, 4).unwrap();
        assert_eq!((q, k.len()), (&t[4..6], 6));
        assert_eq!(split_tokens(&t, 2, 6, 1).unwrap().0, &t[1..3]);
        assert!(split_tokens(&t, 2, 6, 5).is_err());
        assert!(split_tokens(&t, 2, 6, -1).is_err());
        assert!(split_tokens(&t[..5], 2, 6, 4).is_err());
    }
}
