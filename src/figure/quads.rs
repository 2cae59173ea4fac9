//! The figure as quads: cells, labels, colorbar and fills in figure pixels. Plain data, drawn by
//! the compose pass on the GPU and by `cpu::draw_quads` on the CPU.

use std::ops::Range;

use bytemuck::{Pod, Zeroable};

use crate::color::colormap::pack_rgba;
use crate::figure::layout::Layout;
use crate::figure::text::Atlas;
use crate::pool::geometry::CellGeometry;

/// Quad kinds (`KIND_*` in `shaders/compose.wgsl`): what a quad's fragment reads.
pub const KIND_CELL: u32 = 0;
pub const KIND_LABEL: u32 = 1;
/// Colormap entries `src .. src + src_size` from the bottom of the quad to its top: the
/// colorbar (all 256), or a legend swatch (one).
pub const KIND_COLORBAR: u32 = 2;
pub const KIND_FILL: u32 = 3;
/// Not a kind of figure quad: the background drawn under the empty pixels of a cell export
/// copied rather than drew (`compose::copy`), blended so that coloured pixels keep theirs.
pub const KIND_UNDER: u32 = 4;

/// Mirrors `Quad` in `shaders/compose.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct Quad {
    pub rect: [i32; 4],
    pub kind: u32,
    pub src: u32,
    pub src_size: u32,
    pub color: u32,
}

/// The figure as quads, split into one draw per accumulator group (cells of group g read
/// group g's colour buffer); labels and fills ride in the first draw.
#[derive(Clone, Debug)]
pub struct FigureQuads {
    pub quads: Vec<Quad>,
    pub draws: Vec<Range<u32>>,
    pub atlas: Atlas,
    pub width: u32,
    pub height: u32,
    pub background: [u8; 4],
}

impl FigureQuads {
    /// Quads for `layout`, whose cells are pooled as `geometry` and stored in `groups`
    /// (first cell, cell count) of the colour buffers.
    pub fn new(layout: &Layout, geometry: &CellGeometry, groups: &[(usize, usize)]) -> FigureQuads {
        let labels: Vec<_> = layout.labels.iter().map(|l| l.label.clone()).collect();
        let atlas = Atlas::pack(&labels);
        let px = geometry.pooled_pixels() as u32;
        let mut quads = Vec::new();
        let mut draws = Vec::new();
        for (gi, &(first, count)) in groups.iter().enumerate() {
            let start = quads.len() as u32;
            for (local, cell) in layout.cells[first..first + count].iter().enumerate() {
                quads.push(Quad {
                    rect: [
                        cell.x as i32,
                        cell.y as i32,
                        cell.width as i32,
                        cell.height as i32,
                    ],
                    kind: KIND_CELL,
                    src: local as u32 * px,
                    src_size: geometry.pooled_w | (geometry.pooled_h << 16),
                    color: 0,
                });
            }
            if gi == 0 {
                // a bar spans the whole table; a swatch is one entry of it
                let bars = layout.colorbar.iter().chain(&layout.cell_colorbars);
                let bars = bars.map(|&rect| (rect, 0, 256));
                let swatches = layout.swatches.iter().map(|&(rect, i)| (rect, i as u32, 1));
                for ([x, y, w, h], first, entries) in bars.chain(swatches) {
                    quads.push(Quad {
                        rect: [x as i32, y as i32, w as i32, h as i32],
                        kind: KIND_COLORBAR,
                        src: first,
                        src_size: entries,
                        color: 0,
                    });
                }
                for &[x, y, w, h] in &layout.fills {
                    quads.push(Quad {
                        rect: [x as i32, y as i32, w as i32, h as i32],
                        kind: KIND_FILL,
                        src: 0,
                        src_size: 0,
                        color: pack_rgba(layout.theme.foreground),
                    });
                }
                for (placed, &(ax, ay)) in layout.labels.iter().zip(&atlas.origins) {
                    quads.push(Quad {
                        rect: [
                            placed.x as i32,
                            placed.y as i32,
                            placed.label.width as i32,
                            placed.label.height as i32,
                        ],
                        kind: KIND_LABEL,
                        src: ax | (ay << 16),
                        src_size: 0,
                        color: pack_rgba(layout.theme.foreground),
                    });
                }
            }
            draws.push(start..quads.len() as u32);
        }
        FigureQuads {
            quads,
            draws,
            atlas,
            width: layout.width,
            height: layout.height,
            background: layout.theme.background,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quad_layout_matches_the_shader() {
        assert_eq!(std::mem::size_of::<Quad>(), 32);
    }
}
