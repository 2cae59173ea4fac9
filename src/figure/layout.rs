//! Figure geometry: where each cell, label and gutter goes. Pure integer layout, no GPU, so it is
//! unit-tested directly and shared by the GPU compositor and the CPU reference.

use crate::figure::text::{self, Face, Label};
use crate::pool::geometry::CellGeometry;

/// Figure colours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Theme {
    pub background: [u8; 4],
    pub foreground: [u8; 4],
}

impl Theme {
    pub const LIGHT: Theme = Theme {
        background: [255, 255, 255, 255],
        foreground: [26, 26, 26, 255],
    };

    /// For slides and dark pages: near-black ground, light grey text.
    pub const DARK: Theme = Theme {
        background: [18, 18, 18, 255],
        foreground: [230, 230, 230, 255],
    };

    pub fn from_name(name: &str) -> Option<Theme> {
        match name {
            "light" => Some(Theme::LIGHT),
            "dark" => Some(Theme::DARK),
            _ => None,
        }
    }

    /// The same theme on a transparent ground. The ground takes the text's colour at alpha 0,
    /// so label edges blended toward it keep the text's colour and fade only in alpha
    /// (straight-alpha PNG), with no dark or light fringe on any page.
    pub fn transparent(self) -> Theme {
        let [r, g, b, _] = self.foreground;
        Theme {
            background: [r, g, b, 0],
            ..self
        }
    }
}

/// A heatmap cell on the figure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CellPlacement {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
    /// 0-based layer and head shown.
    pub layer: usize,
    pub head: usize,
}

impl CellPlacement {
    /// Whether the cell is on the figure: `--top` places the cells it ranks out empty.
    pub fn is_drawn(&self) -> bool {
        self.width > 0
    }
}

/// A label's text as written (kept beside its bitmap for vector export).
#[derive(Clone, Debug, PartialEq)]
pub struct Text {
    pub spans: Vec<(String, Face)>,
    /// Line height in pixels.
    pub px: f32,
    /// Reads bottom to top (a quarter turn counter-clockwise).
    pub rotated: bool,
}

impl Text {
    pub fn new(spans: &[(&str, Face)], px: f32) -> Text {
        Text {
            spans: spans.iter().map(|&(s, f)| (s.to_string(), f)).collect(),
            px,
            rotated: false,
        }
    }

    pub fn plain(s: &str, px: f32) -> Text {
        Text::new(&[(s, Face::Regular)], px)
    }

    pub fn rotated(mut self) -> Text {
        self.rotated = true;
        self
    }

    /// The whole string.
    pub fn string(&self) -> String {
        self.spans.iter().map(|(s, _)| s.as_str()).collect()
    }

    pub fn rasterize(&self) -> Label {
        let spans: Vec<(&str, Face)> = self.spans.iter().map(|(s, f)| (s.as_str(), *f)).collect();
        let label = text::rasterize(&spans, self.px);
        if self.rotated {
            text::rotated(label)
        } else {
            label
        }
    }
}

/// A label and the position of its bitmap's top-left corner.
#[derive(Clone, Debug)]
pub struct PlacedLabel {
    pub label: Label,
    pub x: u32,
    pub y: u32,
    pub text: Text,
}

/// Everything drawn on the figure, in pixels.
#[derive(Clone, Debug)]
pub struct Layout {
    pub width: u32,
    pub height: u32,
    /// Row-major: one row per selected layer, one column per selected head.
    pub cells: Vec<CellPlacement>,
    pub columns: usize,
    pub labels: Vec<PlacedLabel>,
    /// The colorbar's rectangle (x, y, w, h), when there is one.
    pub colorbar: Option<[u32; 4]>,
    /// Bars of their own beside single cells (the `attnviz heads --figure` summary, where
    /// every cell is a different statistic in its own units); drawn like `colorbar`.
    pub cell_colorbars: Vec<[u32; 4]>,
    /// Legend swatches: rectangles (x, y, w, h) in the colour of one colormap entry (the
    /// index), so a key's colour is the one its cells are drawn in, by the same lookup.
    pub swatches: Vec<([u32; 4], u8)>,
    /// Solid rectangles in the foreground colour (tick marks).
    pub fills: Vec<[u32; 4]>,
    /// Where each position tick of the cell axes meets its cell (for the layout JSON).
    pub axis_ticks: Vec<AxisTick>,
    pub theme: Theme,
}

/// One index tick of a cell's axis: `position` (a query row or a key, 0-based) and the figure
/// pixel where its mark touches the cell's edge (left of the cell for queries, below it for keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AxisTick {
    /// Index into [`Layout::cells`].
    pub cell: usize,
    pub axis: Axis,
    pub position: u64,
    pub x: u32,
    pub y: u32,
}

/// The two axes of a cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Axis {
    /// Rows, labelled left of the cell.
    Query,
    /// Columns, labelled below the cell.
    Key,
}

/// Sizes derived from the cell: label text scales with the heatmaps, within readable bounds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Metrics {
    pub font_px: f32,
    pub gutter: u32,
    pub margin: u32,
}

impl Metrics {
    pub fn for_cell(cell: &CellGeometry) -> Metrics {
        let side = cell.display_w.max(cell.display_h) as f32;
        let font_px = (side * 0.09).round().clamp(12.0, 48.0);
        Metrics {
            font_px,
            gutter: ((side * 0.05).round() as u32).max(4),
            margin: (font_px * 0.8).round() as u32,
        }
    }

    /// Everything `factor` times larger (`--scale-factor`): the same figure at a higher
    /// resolution, not a figure with more room.
    pub fn scaled(self, factor: f32) -> Metrics {
        if factor == 1.0 {
            return self;
        }
        Metrics {
            font_px: (self.font_px * factor).round().max(6.0),
            gutter: ((self.gutter as f32 * factor).round() as u32).max(1),
            margin: (self.margin as f32 * factor).round() as u32,
        }
    }
}

pub(crate) fn math_label(var: &str, n: usize, px: f32) -> Text {
    Text::new(
        &[(var, Face::Math), (&format!(" = {n}"), Face::Regular)],
        px,
    )
}

/// Room around each cell for per-cell axes (token labels): `left` pixels left of every cell,
/// `bottom` below it; with `shared`, only left of the first column and below the last row (axes
/// on the outer cells, as shared subplot axes are drawn).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CellPad {
    pub left: u32,
    pub bottom: u32,
    pub shared: bool,
}

/// Layers (or cells) of the input and the number each of the input's layers is shown by
/// (1-based, one per layer: `Plan::layer_numbers`), which the labels print.
#[derive(Clone, Copy, Debug)]
pub struct Numbered<'a, T> {
    pub items: &'a [T],
    pub layer_numbers: &'a [usize],
}

impl Layout {
    /// The labelled grid: rows are `layers`, columns are `heads` (0-based), headed `h = N` and
    /// `l = N` (1-based) as in the seed figure. [`Layout::grid_with`] numbers the layers as the
    /// input does (`layer_numbers`, one per layer of the input); here they are positions + 1.
    pub fn grid(layers: &[usize], heads: &[usize], cell: &CellGeometry, theme: Theme) -> Layout {
        let numbers: Vec<usize> = (1..=layers.iter().max().map_or(0, |&l| l + 1)).collect();
        Layout::grid_with(
            Numbered {
                items: layers,
                layer_numbers: &numbers,
            },
            heads,
            cell,
            theme,
            &Metrics::for_cell(cell),
            CellPad::default(),
            None,
        )
    }

    /// The grid with explicit metrics, room for per-cell axes and an optional title above it.
    pub fn grid_with(
        layers: Numbered<'_, usize>,
        heads: &[usize],
        cell: &CellGeometry,
        theme: Theme,
        m: &Metrics,
        pad: CellPad,
        title: Option<&str>,
    ) -> Layout {
        let m = *m;
        let Numbered {
            items: layers,
            layer_numbers,
        } = layers;
        let col_labels: Vec<(Text, Label)> = heads
            .iter()
            .map(|&h| with_raster(math_label("h", h + 1, m.font_px)))
            .collect();
        let row_labels: Vec<(Text, Label)> = layers
            .iter()
            .map(|&l| with_raster(math_label("l", layer_numbers[l], m.font_px)))
            .collect();
        let title = title.map(|t| with_raster(Text::plain(t, (m.font_px * 1.2).round())));
        let title_h = title.as_ref().map_or(0, |(_, l)| l.height + m.gutter);
        let header_h = col_labels.iter().map(|l| l.1.height).max().unwrap_or(0) + m.gutter / 2;
        let left_w =
            row_labels.iter().map(|l| l.1.width).max().unwrap_or(0) + (m.font_px / 2.0) as u32;
        let (cw, ch) = (cell.display_w, cell.display_h);
        let between = if pad.shared { CellPad::default() } else { pad };
        let (step_x, step_y) = (cw + m.gutter + between.left, ch + m.gutter + between.bottom);
        let grid_x = m.margin + left_w + pad.left;
        let grid_y = m.margin + title_h + header_h;
        let cols = heads.len() as u32;
        let rows = layers.len() as u32;
        let mut width = grid_x + cols * cw + cols.saturating_sub(1) * (step_x - cw) + m.margin;
        let height =
            grid_y + rows * ch + rows.saturating_sub(1) * (step_y - ch) + pad.bottom + m.margin;

        let frame = GridFrame {
            x: grid_x,
            y: grid_y,
            step: (step_x, step_y),
            cell: (cw, ch),
        };
        let cells = frame.cells(layers, heads);
        let mut labels = Vec::with_capacity(heads.len() + layers.len() + 1);
        for (c, (text, label)) in col_labels.into_iter().enumerate() {
            let (cx, _) = frame.centre(0, c);
            labels.push(PlacedLabel {
                x: cx.saturating_sub(label.width / 2),
                y: grid_y - header_h,
                label,
                text,
            });
        }
        for (r, (text, label)) in row_labels.into_iter().enumerate() {
            let (_, cy) = frame.centre(r, 0);
            labels.push(PlacedLabel {
                x: grid_x - pad.left - (m.font_px / 2.0) as u32 - label.width,
                y: cy.saturating_sub(label.height / 2),
                label,
                text,
            });
        }
        if let Some((text, label)) = title {
            width = width.max(label.width + 2 * m.margin);
            // centred over the cells
            let grid_w = cols * cw + cols.saturating_sub(1) * (step_x - cw);
            let cx = grid_x + grid_w / 2;
            labels.push(PlacedLabel {
                x: cx
                    .saturating_sub(label.width / 2)
                    .clamp(m.margin, width - m.margin - label.width),
                y: m.margin,
                label,
                text,
            });
        }
        Layout {
            width,
            height,
            cells,
            columns: heads.len(),
            labels,
            colorbar: None,
            cell_colorbars: Vec::new(),
            swatches: Vec::new(),
            fills: Vec::new(),
            axis_ticks: Vec::new(),
            theme,
        }
    }
}

impl Layout {
    /// The cells in rank order (`order[i]` is the cell drawn i-th, an index into `cells`),
    /// `columns` to a row, each labelled above with the layer and head it really is
    /// (`l = 3, h = 5`): `--sort-by`. Cells left out of `order` (`--top`) get an empty
    /// rectangle and are not drawn.
    pub fn ranked(
        cells: Numbered<'_, (usize, usize)>,
        order: &[usize],
        columns: usize,
        cell: &CellGeometry,
        theme: Theme,
        m: &Metrics,
        title: Option<&str>,
    ) -> Layout {
        let m = *m;
        let Numbered {
            items: cells,
            layer_numbers,
        } = cells;
        let px = (m.font_px * 0.8).round();
        let label = |(l, h): (usize, usize)| {
            with_raster(Text::new(
                &[
                    ("l", Face::Math),
                    (&format!(" = {}, ", layer_numbers[l]), Face::Regular),
                    ("h", Face::Math),
                    (&format!(" = {}", h + 1), Face::Regular),
                ],
                px,
            ))
        };
        let labels_above: Vec<(Text, Label)> = order.iter().map(|&i| label(cells[i])).collect();
        let label_h = labels_above.iter().map(|l| l.1.height).max().unwrap_or(0) + m.gutter / 2;
        let title = title.map(|t| with_raster(Text::plain(t, (m.font_px * 1.2).round())));
        let title_h = title.as_ref().map_or(0, |(_, l)| l.height + m.gutter);
        let (cw, ch) = (cell.display_w, cell.display_h);
        let columns = columns.clamp(1, order.len().max(1));
        let rows = order.len().div_ceil(columns).max(1) as u32;
        let cols = columns as u32;
        let (step_x, step_y) = (cw + m.gutter, ch + m.gutter + label_h);
        let (grid_x, grid_y) = (m.margin, m.margin + title_h + label_h);
        let mut width = grid_x + cols * cw + (cols - 1) * m.gutter + m.margin;
        let height = grid_y + rows * ch + (rows - 1) * (step_y - ch) + m.margin;
        let mut placed: Vec<CellPlacement> = cells
            .iter()
            .map(|&(layer, head)| CellPlacement {
                x: 0,
                y: 0,
                width: 0,
                height: 0,
                layer,
                head,
            })
            .collect();
        let mut labels = Vec::with_capacity(order.len() + 1);
        for (rank, (&i, (text, label))) in order.iter().zip(labels_above).enumerate() {
            let (r, c) = ((rank / columns) as u32, (rank % columns) as u32);
            let (x, y) = (grid_x + c * step_x, grid_y + r * step_y);
            placed[i] = CellPlacement {
                x,
                y,
                width: cw,
                height: ch,
                ..placed[i]
            };
            labels.push(PlacedLabel {
                x: (x + cw / 2).saturating_sub(label.width / 2),
                y: y - label_h,
                label,
                text,
            });
        }
        if let Some((text, label)) = title {
            width = width.max(label.width + 2 * m.margin);
            labels.push(PlacedLabel {
                x: (width / 2).saturating_sub(label.width / 2).max(m.margin),
                y: m.margin,
                label,
                text,
            });
        }
        Layout {
            width,
            height,
            cells: placed,
            columns,
            labels,
            colorbar: None,
            cell_colorbars: Vec::new(),
            swatches: Vec::new(),
            fills: Vec::new(),
            axis_ticks: Vec::new(),
            theme,
        }
    }
}

/// Where the grid's cells sit: the first cell's corner, the pitch between cells and their size.
struct GridFrame {
    x: u32,
    y: u32,
    step: (u32, u32),
    cell: (u32, u32),
}

impl GridFrame {
    /// One placement per (layer, head), rows = layers, in row-major order.
    fn cells(&self, layers: &[usize], heads: &[usize]) -> Vec<CellPlacement> {
        let mut cells = Vec::with_capacity(layers.len() * heads.len());
        for (r, &layer) in layers.iter().enumerate() {
            for (c, &head) in heads.iter().enumerate() {
                cells.push(CellPlacement {
                    x: self.x + c as u32 * self.step.0,
                    y: self.y + r as u32 * self.step.1,
                    width: self.cell.0,
                    height: self.cell.1,
                    layer,
                    head,
                });
            }
        }
        cells
    }

    /// The centre of the cell in grid row `r`, column `c`.
    fn centre(&self, r: usize, c: usize) -> (u32, u32) {
        (
            self.x + c as u32 * self.step.0 + self.cell.0 / 2,
            self.y + r as u32 * self.step.1 + self.cell.1 / 2,
        )
    }
}

pub(crate) fn with_raster(text: Text) -> (Text, Label) {
    let label = text.rasterize();
    (text, label)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overlaps(a: (u32, u32, u32, u32), b: (u32, u32, u32, u32)) -> bool {
        a.0 < b.0 + b.2 && b.0 < a.0 + a.2 && a.1 < b.1 + b.3 && b.1 < a.1 + a.3
    }

    #[test]
    fn grid_is_rows_of_layers_and_columns_of_heads() {
        let cell = CellGeometry::new(2048, 2048, None).unwrap();
        let l = Layout::grid(&[0, 7], &(0..8).collect::<Vec<_>>(), &cell, Theme::LIGHT);
        assert_eq!(l.cells.len(), 16);
        assert_eq!((l.cells[9].layer, l.cells[9].head), (7, 1));
        let m = Metrics::for_cell(&cell);
        // columns are evenly spaced by cell + gutter, rows likewise
        assert_eq!(l.cells[1].x - l.cells[0].x, 256 + m.gutter);
        assert_eq!(l.cells[8].y - l.cells[0].y, 256 + m.gutter);
        // the grid is centred in its margins: same margin right and bottom
        let last = l.cells[15];
        assert_eq!(l.width - (last.x + last.width), m.margin);
        assert_eq!(l.height - (last.y + last.height), m.margin);
        assert_eq!(l.labels.len(), 10);
    }

    #[test]
    fn nothing_overlaps_and_everything_is_inside() {
        for n in [1usize, 3, 8, 12] {
            let cell = CellGeometry::new(128, 96, None).unwrap();
            let l = Layout::grid(&[0, 5], &(0..n).collect::<Vec<_>>(), &cell, Theme::LIGHT);
            let mut rects: Vec<_> = l
                .cells
                .iter()
                .map(|c| (c.x, c.y, c.width, c.height))
                .collect();
            rects.extend(
                l.labels
                    .iter()
                    .map(|p| (p.x, p.y, p.label.width, p.label.height)),
            );
            for (i, a) in rects.iter().enumerate() {
                assert!(
                    a.0 + a.2 <= l.width && a.1 + a.3 <= l.height,
                    "{a:?} outside"
                );
                for b in &rects[i + 1..] {
                    assert!(!overlaps(*a, *b), "{a:?} overlaps {b:?}");
                }
            }
        }
    }
}
