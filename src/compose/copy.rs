//! Cells the export copies into its target instead of drawing. A cell drawn 1:1 is its colour
//! buffer's rows, byte for byte, in an RGBA8 target, but for its empty bins (causal heads,
//! sliding windows), which the buffer holds as 0 and the cell's fragment draws as the
//! background: one buffer-to-texture copy in place of a fragment per pixel, and, for a cell
//! with empty pixels, the background drawn under it afterwards (`KIND_UNDER`, blended so that
//! only the pixels the copy left transparent take it). On lavapipe shading the 1 GiB grid's 64
//! cells of 256² took ~25 ms of the compose pass's ~30; the copies take a few. Magnified or
//! shrunk cells, rows the copy alignment does not allow, and cells that another quad overlaps
//! are drawn as before.

use std::ops::Range;

use crate::color::colorize::ColorizedCells;
use crate::figure::quads::{FigureQuads, Quad, KIND_CELL, KIND_UNDER};
use crate::pool::PooledCells;

/// One cell's copy: its group's colour buffer from `offset` (bytes) into the target at
/// `rect` (x, y, width, height).
struct CellCopy {
    group: usize,
    offset: u64,
    rect: [u32; 4],
}

/// The copies of a figure's copyable cells, the draws (kind runs) of every other quad, and
/// the background's draws under the copied cells that have empty pixels.
pub(super) struct CellCopies {
    copies: Vec<CellCopy>,
    pub(super) runs: Vec<(usize, u32, Range<u32>)>,
    pub(super) under: Vec<(usize, u32, Range<u32>)>,
    colors: Vec<wgpu::Buffer>,
}

impl CellCopies {
    pub(super) fn new(
        figure: &FigureQuads,
        colors: &ColorizedCells,
        pooled: &PooledCells,
    ) -> CellCopies {
        let g = pooled.geometry;
        let first_cells: Vec<usize> = pooled.groups.iter().map(|g| g.first_cell).collect();
        let empty: Vec<u32> = pooled.stats.iter().map(|s| s.empty_pixels).collect();
        let px = g.pooled_pixels() as u32;
        let copied = copyable(figure, (g.pooled_w, g.pooled_h));
        let mut copies = Vec::new();
        let mut under: Vec<(usize, u32, Range<u32>)> = Vec::new();
        for (group, range) in figure.draws.iter().enumerate() {
            for i in range.clone().filter(|&i| copied[i as usize]) {
                let q = &figure.quads[i as usize];
                copies.push(CellCopy {
                    group,
                    offset: u64::from(q.src) * 4,
                    rect: q.rect.map(|v| v as u32),
                });
                let cell = first_cells[group] + (q.src / px) as usize;
                if empty.get(cell).is_some_and(|&e| e > 0) {
                    match under.last_mut() {
                        Some((g, _, r)) if *g == group && r.end == i => r.end = i + 1,
                        _ => under.push((group, KIND_UNDER, i..i + 1)),
                    }
                }
            }
        }
        CellCopies {
            copies,
            runs: super::kind_runs(&figure.quads, &figure.draws, &copied),
            under,
            colors: colors.colors.clone(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.copies.is_empty()
    }

    /// Records every copy into `target`, an RGBA8 tile of `size` pixels whose corner is at
    /// `origin` in the figure (the whole figure: (0, 0) and its size), each clipped to it: a
    /// clipped copy starts at the cell's first pixel inside the tile and keeps the cell's row
    /// pitch, so its rows stay copy-aligned and its bytes are the ones a whole copy writes.
    pub(super) fn record(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        target: &wgpu::Texture,
        origin: (u32, u32),
        size: (u32, u32),
    ) {
        for c in &self.copies {
            let Some((from, to, extent)) = clip(c.rect, origin, size) else {
                continue;
            };
            let [_, _, w, h] = c.rect;
            encoder.copy_buffer_to_texture(
                wgpu::TexelCopyBufferInfo {
                    buffer: &self.colors[c.group],
                    layout: wgpu::TexelCopyBufferLayout {
                        offset: c.offset
                            + (u64::from(from.1) * u64::from(w) + u64::from(from.0)) * 4,
                        bytes_per_row: Some(w * 4),
                        rows_per_image: Some(h),
                    },
                },
                wgpu::TexelCopyTextureInfo {
                    texture: target,
                    mip_level: 0,
                    origin: wgpu::Origin3d {
                        x: to.0,
                        y: to.1,
                        z: 0,
                    },
                    aspect: wgpu::TextureAspect::All,
                },
                wgpu::Extent3d {
                    width: extent.0,
                    height: extent.1,
                    depth_or_array_layers: 1,
                },
            );
        }
    }
}

/// A pair of pixel coordinates or sizes.
type Pair = (u32, u32);

/// The part of a cell at `rect` (x, y, width, height, in figure pixels) inside the tile of
/// `size` at `origin`: its first pixel in the cell, where that pixel goes in the tile, and
/// the part's size; `None` where the two do not meet.
fn clip(rect: [u32; 4], origin: Pair, size: Pair) -> Option<(Pair, Pair, Pair)> {
    let [x, y, w, h] = rect;
    let (x0, y0) = (x.max(origin.0), y.max(origin.1));
    let (x1, y1) = (
        (x + w).min(origin.0 + size.0),
        (y + h).min(origin.1 + size.1),
    );
    (x0 < x1 && y0 < y1).then(|| {
        (
            (x0 - x, y0 - y),
            (x0 - origin.0, y0 - origin.1),
            (x1 - x0, y1 - y0),
        )
    })
}

/// Per quad of `figure`, whether it is a cell to copy: drawn at its pooled size `(w, h)` inside
/// the figure, rows of whole copy-aligned bytes, and no other quad over it.
fn copyable(figure: &FigureQuads, (w, h): (u32, u32)) -> Vec<bool> {
    let mut copied = vec![false; figure.quads.len()];
    if !(w * 4).is_multiple_of(wgpu::COPY_BYTES_PER_ROW_ALIGNMENT) {
        return copied;
    }
    let inside = |q: &Quad| {
        let [x, y, qw, qh] = q.rect;
        x >= 0
            && y >= 0
            && (qw, qh) == (w as i32, h as i32)
            && (x + qw) as u32 <= figure.width
            && (y + qh) as u32 <= figure.height
    };
    let overlap = |a: &[i32; 4], b: &[i32; 4]| {
        a[0] < b[0] + b[2] && b[0] < a[0] + a[2] && a[1] < b[1] + b[3] && b[1] < a[1] + a[3]
    };
    for range in &figure.draws {
        for i in range.clone() {
            let q = &figure.quads[i as usize];
            copied[i as usize] = q.kind == KIND_CELL
                && inside(q)
                && figure
                    .quads
                    .iter()
                    .enumerate()
                    .all(|(j, o)| j == i as usize || !overlap(&q.rect, &o.rect));
        }
    }
    copied
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::figure::quads::{KIND_FILL, KIND_LABEL};
    use crate::figure::text::Atlas;

    #[test]
    fn copies_are_clipped_to_the_tile() {
        // a 64 × 32 cell at (90, 10), tiles of 100 × 20
        let cell = [90, 10, 64, 32];
        assert_eq!(
            clip(cell, (0, 0), (100, 20)),
            Some(((0, 0), (90, 10), (10, 10)))
        );
        assert_eq!(
            clip(cell, (100, 20), (100, 20)),
            Some(((10, 10), (0, 0), (54, 20)))
        );
        assert_eq!(
            clip(cell, (100, 40), (100, 20)),
            Some(((10, 30), (0, 0), (54, 2)))
        );
        assert_eq!(clip(cell, (200, 0), (100, 20)), None);
        assert_eq!(clip(cell, (0, 42), (100, 20)), None);
        // the whole figure as one tile: the whole cell
        assert_eq!(
            clip(cell, (0, 0), (300, 300)),
            Some(((0, 0), (90, 10), (64, 32)))
        );
    }

    #[test]
    fn cells_drawn_one_to_one_under_no_other_quad_are_copied() {
        let cell = |x, y, w, h, src| Quad {
            rect: [x, y, w, h],
            kind: KIND_CELL,
            src,
            src_size: 0,
            color: 0,
        };
        let px = 64 * 32;
        let quads = vec![
            // group 0: cells 0 and 1, a label beside them, a fill over cell 1's corner
            cell(0, 0, 64, 32, 0),
            cell(70, 0, 64, 32, px),
            Quad {
                kind: KIND_LABEL,
                ..cell(0, 40, 20, 8, 0)
            },
            Quad {
                kind: KIND_FILL,
                ..cell(130, 30, 10, 10, 0)
            },
            // group 1: cell 2, magnified; cell 3, with an empty pixel (copied, the background
            // drawn under it afterwards); cell 4, past the edge; cell 5, copied
            cell(0, 50, 128, 64, 0),
            cell(140, 50, 64, 32, px),
            cell(210, 0, 64, 32, 2 * px),
            cell(140, 90, 64, 32, 3 * px),
        ];
        let figure = FigureQuads {
            quads,
            draws: vec![0..4, 4..8],
            atlas: Atlas::pack(&[]),
            width: 230,
            height: 130,
            background: [255; 4],
        };
        let copied = copyable(&figure, (64, 32));
        assert_eq!(
            copied,
            [true, false, false, false, false, true, false, true]
        );
        // rows of 60 pixels (240 bytes) cannot be copied
        assert!(!copyable(&figure, (60, 32)).iter().any(|&c| c));
        // the copied quads leave the draws; runs break where they were
        let runs = crate::compose::kind_runs(&figure.quads, &figure.draws, &copied);
        assert_eq!(
            runs,
            vec![
                (0, KIND_CELL, 1..2),
                (0, KIND_LABEL, 2..3),
                (0, KIND_FILL, 3..4),
                (1, KIND_CELL, 4..5),
                (1, KIND_CELL, 6..7),
            ]
        );
    }
}
