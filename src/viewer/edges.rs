//! Live edge labels: when the view magnifies a cell (focus mode, zoom) or cuts it, the
//! window's bottom and left edges name what is visible there: every key and query token when
//! `--tokens` is given and they are far enough apart to read, round positions (`8k`, `16k`)
//! otherwise. They follow every pan and zoom, so a bright column zoomed into can be read as a
//! token. An engine overlay in window pixels, rebuilt when the view changes (a few small
//! labels), never per frame.

use super::state::State;
use super::transform::ViewTransform;
use crate::color::colormap::pack_rgba;
use crate::engine::Overlay;
use crate::figure::axes::position_label;
use crate::figure::colorbar::ticks;
use crate::figure::layout::{Axis, Layout, Text, Theme};
use crate::figure::quads::{FigureQuads, Quad, KIND_FILL, KIND_LABEL};
use crate::figure::text::{Atlas, Label};

/// Window pixels between neighbouring entries at which each gets its own token.
const TOKEN_PITCH: f64 = 14.0;
/// Labels per axis at most (a very wide window of tokens).
const MAX_MARKS: usize = 400;

/// What the edges of one view show: the cell they describe and each mark.
#[derive(Clone, Debug, PartialEq)]
pub struct EdgeMarks {
    /// Index into the layout's cells.
    pub cell: usize,
    pub marks: Vec<EdgeMark>,
}

/// One label on a window edge.
#[derive(Clone, Debug, PartialEq)]
pub struct EdgeMark {
    pub axis: Axis,
    /// The query row or key, 0-based.
    pub position: usize,
    /// Window pixel of the entry's centre along its edge (x for keys, y for queries).
    pub at: f64,
    /// Its token, or its position as the figure's ticks write it.
    pub text: String,
    /// Whether `text` is a token (key tokens are drawn rotated, one per column).
    pub token: bool,
}

/// The marks for `view` of `layout` in a `window`, heads of `shape` (queries, keys);
/// `tokens` are (query tokens, key tokens). `None` unless one cell is magnified or cut by the
/// window and fills a good part of it: the whole grid at its own size keeps its own axes.
pub fn edge_marks(
    layout: &Layout,
    view: &ViewTransform,
    window: (u32, u32),
    // (queries, keys, the first row's index: rows are named from it)
    shape: (usize, usize, usize),
    tokens: Option<(&[String], &[String])>,
) -> Option<EdgeMarks> {
    let (ww, wh) = (window.0 as f64, window.1 as f64);
    let rect = |i: usize| {
        let c = &layout.cells[i];
        let (x0, y0) = view.to_window((c.x as f64, c.y as f64));
        let (x1, y1) = view.to_window(((c.x + c.width) as f64, (c.y + c.height) as f64));
        (x0, y0, x1, y1)
    };
    let visible = |(x0, y0, x1, y1): (f64, f64, f64, f64)| {
        (x1.min(ww) - x0.max(0.0)).max(0.0) * (y1.min(wh) - y0.max(0.0)).max(0.0)
    };
    let cell =
        (0..layout.cells.len()).max_by(|&a, &b| visible(rect(a)).total_cmp(&visible(rect(b))))?;
    let r = rect(cell);
    let cut = r.0 < 0.0 || r.1 < 0.0 || r.2 > ww || r.3 > wh;
    if visible(r) < 0.25 * ww * wh || !(cut || view.scale > 1.25) {
        return None;
    }
    let (queries, keys, first_query) = shape;
    let mut marks = axis_marks(Axis::Key, keys, 0, (r.0, r.2), ww, tokens.map(|t| t.1));
    marks.extend(axis_marks(
        Axis::Query,
        queries,
        first_query,
        (r.1, r.3),
        wh,
        tokens.map(|t| t.0),
    ));
    (!marks.is_empty()).then_some(EdgeMarks { cell, marks })
}

/// The marks of one axis of `n` entries (named from `first`) spanning window pixels `span` on an
/// edge `extent` long.
fn axis_marks(
    axis: Axis,
    n: usize,
    first_index: usize,
    span: (f64, f64),
    extent: f64,
    tokens: Option<&[String]>,
) -> Vec<EdgeMark> {
    let pitch = (span.1 - span.0) / n.max(1) as f64;
    let at = |p: usize| span.0 + (p as f64 + 0.5) * pitch;
    // entries whose centre is on screen
    let first = ((0.0 - span.0) / pitch - 0.5).ceil().max(0.0) as usize;
    let last = ((extent - span.0) / pitch - 0.5)
        .floor()
        .min(n as f64 - 1.0);
    if last < first as f64 {
        return Vec::new();
    }
    let last = last as usize;
    let mark = |p: usize, text: String, token: bool| EdgeMark {
        axis,
        position: p,
        at: at(p),
        text,
        token,
    };
    match tokens {
        Some(t) if pitch >= TOKEN_PITCH && t.len() == n => (first..=last)
            .take(MAX_MARKS)
            .map(|p| mark(p, t[p].clone(), true))
            .collect(),
        _ => {
            let (lo, hi) = ((first_index + first) as f64, (first_index + last) as f64);
            ticks(lo, hi)
                .into_iter()
                .filter(|t| t.fract() == 0.0 && *t >= lo && *t <= hi)
                .map(|t| mark(t as usize - first_index, position_label(t as u64), false))
                .collect()
        }
    }
}

/// The edge labels' overlay.
pub(super) struct EdgeLabels {
    pub(super) overlay: Overlay,
    pub(super) marks: EdgeMarks,
}

impl State {
    /// Rebuilds the edge labels for the current view (after every pan, zoom and resize).
    pub(super) fn update_edges(&mut self) {
        let layout = &self.scene.plan.layout;
        let (queries, keys) = self.source_shape;
        let (diagonal, first_query) = self.source_rows;
        let tokens = self
            .tokens
            .as_deref()
            .and_then(|t| crate::figure::axes::split_tokens(t, queries, keys, diagonal).ok());
        let marks = edge_marks(
            layout,
            &self.view,
            self.window_size(),
            (queries, keys, first_query),
            tokens,
        );
        if self.edges.as_ref().map(|e| &e.marks) == marks.as_ref() {
            return;
        }
        self.edges = marks.map(|marks| {
            let px = (12.0 * self.scale_factor).round() as f32;
            let figure = edge_quads(&marks, self.window_size(), px, layout.theme);
            let overlay = self.engine.overlay(&self.scene, &figure);
            EdgeLabels { overlay, marks }
        });
        self.dirty = true;
    }
}

/// The marks as quads in window pixels: each label on a box of the theme's background, key
/// labels along the bottom edge (tokens rotated, reading upwards), query labels along the left;
/// where the two strips meet, in the bottom-left corner, neither is drawn.
fn edge_quads(marks: &EdgeMarks, window: (u32, u32), px: f32, theme: Theme) -> FigureQuads {
    let pad = (px / 4.0).round().max(1.0) as i32;
    let rasterized: Vec<(&EdgeMark, Label)> = marks
        .marks
        .iter()
        .map(|m| {
            let text = Text::plain(&m.text, px);
            let rotated = m.axis == Axis::Key && m.token;
            (m, if rotated { text.rotated() } else { text }.rasterize())
        })
        .collect();
    let strip = |axis: Axis, size: fn(&Label) -> u32| {
        rasterized
            .iter()
            .filter(|(m, _)| m.axis == axis)
            .map(|(_, l)| size(l) as i32 + 2 * pad)
            .max()
            .unwrap_or(0)
    };
    let (bottom, left) = (
        strip(Axis::Key, |l| l.height),
        strip(Axis::Query, |l| l.width),
    );
    let mut labels: Vec<Label> = Vec::new();
    let mut rects: Vec<[i32; 4]> = Vec::new();
    for (m, label) in rasterized {
        let (w, h) = (label.width as i32, label.height as i32);
        let (x, y) = match m.axis {
            Axis::Key => (m.at.round() as i32 - w / 2, window.1 as i32 - h - pad),
            Axis::Query => (pad, m.at.round() as i32 - h / 2),
        };
        let clear = match m.axis {
            Axis::Key => x >= left,
            Axis::Query => y + h <= window.1 as i32 - bottom,
        };
        if clear {
            rects.push([x, y, w, h]);
            labels.push(label);
        }
    }
    let atlas = Atlas::pack(&labels);
    let mut quads = Vec::with_capacity(2 * labels.len());
    for (&[x, y, w, h], &(ax, ay)) in rects.iter().zip(&atlas.origins) {
        quads.push(Quad {
            rect: [x - pad, y - pad / 2, w + 2 * pad, h + pad],
            kind: KIND_FILL,
            src: 0,
            src_size: 0,
            color: pack_rgba(theme.background),
        });
        quads.push(Quad {
            rect: [x, y, w, h],
            kind: KIND_LABEL,
            src: ax | (ay << 16),
            src_size: 0,
            color: pack_rgba(theme.foreground),
        });
    }
    FigureQuads {
        draws: std::iter::once(0..quads.len() as u32).collect(),
        quads,
        atlas,
        width: window.0,
        height: window.1,
        background: theme.background,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::figure::layout::Layout;
    use crate::pool::geometry::CellGeometry;

    fn one_cell() -> Layout {
        let g = CellGeometry::new(131072, 131072, Some(256)).unwrap();
        Layout::grid(&[0], &[0], &g, Theme::LIGHT)
    }

    #[test]
    fn the_whole_figure_keeps_its_own_axes() {
        let layout = one_cell();
        let view = ViewTransform::fit((layout.width, layout.height), (layout.width, layout.height));
        assert_eq!(
            edge_marks(
                &layout,
                &view,
                (layout.width, layout.height),
                (131072, 131072, 0),
                None
            ),
            None
        );
    }

    #[test]
    fn zoomed_views_name_the_visible_positions() {
        let layout = one_cell();
        let c = layout.cells[0];
        let window = (400, 300);
        let view = ViewTransform::fit_rect((c.x, c.y, c.width, c.height), window, 8.0)
            .zoom_about((200.0, 150.0), 16.0);
        let m = edge_marks(&layout, &view, window, (131072, 131072, 0), None).unwrap();
        let keys: Vec<&EdgeMark> = m.marks.iter().filter(|m| m.axis == Axis::Key).collect();
        assert!(keys.len() >= 3, "{keys:?}");
        for k in &keys {
            assert!(k.at >= 0.0 && k.at <= 400.0, "{k:?}");
            // the window's centre shows the middle of the head: positions near 65536
            assert!((k.position as i64 - 65536).abs() < 8192, "{k:?}");
            assert!(k.text.ends_with('k'), "{k:?}");
        }
        // Panned, the labels follow.
        let panned = ViewTransform {
            offset: (view.offset.0 - 100.0, view.offset.1),
            ..view
        };
        let p = edge_marks(&layout, &panned, window, (131072, 131072, 0), None).unwrap();
        let first = |m: &EdgeMarks| {
            m.marks
                .iter()
                .find(|m| m.axis == Axis::Key)
                .unwrap()
                .position
        };
        assert!(first(&p) > first(&m));
    }

    #[test]
    fn tokens_replace_positions_when_they_fit() {
        let g = CellGeometry::new(20, 20, Some(200)).unwrap();
        let layout = Layout::grid(&[0], &[0], &g, Theme::LIGHT);
        let c = layout.cells[0];
        let window = (300, 300);
        let tokens: Vec<String> = (0..20).map(|i| format!("t{i}")).collect();
        let view = ViewTransform::fit_rect((c.x, c.y, c.width, c.height), window, 8.0)
            .zoom_about((150.0, 150.0), 2.0);
        let m = edge_marks(
            &layout,
            &view,
            window,
            (20, 20, 0),
            Some((&tokens, &tokens)),
        )
        .unwrap();
        let keys: Vec<&EdgeMark> = m.marks.iter().filter(|m| m.axis == Axis::Key).collect();
        assert!(!keys.is_empty());
        assert!(keys.iter().all(|k| k.text == format!("t{}", k.position)));
        // consecutive: every visible key has its token
        assert!(keys.windows(2).all(|w| w[1].position == w[0].position + 1));
    }
}
