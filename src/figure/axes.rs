//! Per-cell axes from `--tokens`: query tokens left of every cell and key tokens below it
//! (rotated, ending at the cell) when they are few enough to read, index ticks otherwise. Built
//! once relative to a cell, then stamped next to every cell of the grid.

use crate::error::{Error, Result};
use crate::figure::colorbar::ticks;
use crate::figure::layout::{CellPad, Layout, Metrics, PlacedLabel, Text};
use crate::figure::text::Label;
use crate::pool::geometry::CellGeometry;

/// Up to this many tokens per axis are written out; beyond, index ticks.
pub const MAX_TOKEN_LABELS: usize = 64;

/// Smallest label size worth drawing, in pixels.
const MIN_FONT_PX: f32 = 7.0;

/// Labels and tick marks relative to a cell's top-left corner.
#[derive(Clone, Debug)]
pub struct CellAxes {
    labels: Vec<(Text, Label, i32, i32)>,
    ticks: Vec<[i32; 4]>,
    /// Room the axes need around each cell.
    pub pad: CellPad,
}

/// The tokens of each axis: keys are the file's tokens, queries its last `queries` (a slice of
/// queries is the end of the sequence, as in decoding).
pub fn split_tokens(
    tokens: &[String],
    queries: usize,
    keys: usize,
) -> Result<(&[String], &[String])> {
    if tokens.len() != keys || queries > keys {
        return Err(Error::BadOption(format!(
            "--tokens: {} tokens, but the input has {queries} queries and {keys} keys (one token per key expected)",
            tokens.len()
        )));
    }
    Ok((&tokens[keys - queries..], tokens))
}

/// Cell side that gives every token a readable row: 14 px per token, at least `base`.
pub fn cell_side_for_tokens(n: usize, base: u32) -> u32 {
    if n <= MAX_TOKEN_LABELS {
        base.max(n as u32 * 14)
    } else {
        base
    }
}

impl CellAxes {
    pub fn new(
        q_tokens: &[String],
        k_tokens: &[String],
        cell: &CellGeometry,
        m: &Metrics,
    ) -> CellAxes {
        let (cw, ch) = (cell.display_w as f32, cell.display_h as f32);
        let (nq, nk) = (q_tokens.len().max(1), k_tokens.len().max(1));
        let gap = (m.font_px * 0.25).round().max(2.0) as i32;
        let mut out = CellAxes {
            labels: Vec::new(),
            ticks: Vec::new(),
            pad: CellPad::default(),
        };
        if nq.max(nk) <= MAX_TOKEN_LABELS {
            let px = ((ch / nq as f32).min(cw / nk as f32) * 0.8)
                .clamp(MIN_FONT_PX, m.font_px * 0.8)
                .round();
            for (q, tok) in q_tokens.iter().enumerate() {
                let text = Text::plain(&display(tok), px);
                let label = text.rasterize();
                let centre = ((q as f32 + 0.5) * ch / nq as f32).round() as i32;
                let dy = centre - label.baseline as i32 + (px * 0.35).round() as i32;
                let dx = -gap - label.width as i32;
                out.labels.push((text, label, dx, dy));
            }
            for (k, tok) in k_tokens.iter().enumerate() {
                let text = Text::plain(&display(tok), px).rotated();
                let label = text.rasterize();
                let centre = ((k as f32 + 0.5) * cw / nk as f32).round() as i32;
                // the rotated baseline is the bitmap's left edge + the original baseline
                let baseline = text::rotated_baseline(&text);
                let dx = centre - baseline + (px * 0.35).round() as i32;
                out.labels
                    .push((text, label, dx, cell.display_h as i32 + gap));
            }
        } else {
            let px = (m.font_px * 0.6).round().max(MIN_FONT_PX);
            let tick = (px / 3.0).round().max(3.0) as i32;
            for (n, along, vertical) in [(nq, ch, true), (nk, cw, false)] {
                for t in ticks(0.0, (n - 1) as f64) {
                    if t.fract() != 0.0 || t < 0.0 || t >= n as f64 {
                        continue;
                    }
                    let at = ((t as f32 + 0.5) * along / n as f32) as i32;
                    let text = Text::plain(&format!("{}", t as u64), px);
                    let label = text.rasterize();
                    if vertical {
                        out.ticks.push([-tick, at, tick, 1]);
                        let dy = at - label.baseline as i32 + (px * 0.35).round() as i32;
                        out.labels.push((
                            text,
                            label.clone(),
                            -tick - gap - label.width as i32,
                            dy,
                        ));
                    } else {
                        out.ticks.push([at, ch as i32, 1, tick]);
                        let dx = at - label.width as i32 / 2;
                        out.labels
                            .push((text, label, dx, ch as i32 + tick + gap / 2));
                    }
                }
            }
        }
        let left = out.labels.iter().map(|l| -l.2).max().unwrap_or(0).max(0);
        let bottom = out
            .labels
            .iter()
            .map(|l| l.3 + l.1.height as i32 - ch as i32)
            .max()
            .unwrap_or(0)
            .max(0);
        out.pad = CellPad {
            left: (left + gap) as u32,
            bottom: (bottom + gap) as u32,
        };
        out
    }
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
    /// Stamps `axes` next to every cell (the grid must have been laid out with `axes.pad`).
    pub fn add_cell_axes(&mut self, axes: &CellAxes) {
        let fg_ok = |x: i32, y: i32| x >= 0 && y >= 0;
        for cell in &self.cells {
            let (cx, cy) = (cell.x as i32, cell.y as i32);
            for &[x, y, w, h] in &axes.ticks {
                if fg_ok(cx + x, cy + y) {
                    self.fills
                        .push([(cx + x) as u32, (cy + y) as u32, w as u32, h as u32]);
                }
            }
            for (text, label, dx, dy) in &axes.labels {
                let (x, y) = (cx + dx, cy + dy);
                if fg_ok(x, y)
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
