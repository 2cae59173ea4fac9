//! What is under the cursor: which cell, which pooled pixel, which (query, key) entries, and
//! their exact value, read from the source on the CPU (a bin at a time, so the cost follows
//! the zoom, not the head).

use std::ops::Range;

use crate::error::Result;
use crate::figure::layout::Layout;
use crate::pool::accum::Reduce;
use crate::pool::geometry::{bin_edges, CellGeometry};
use crate::source::AttentionSource;

/// The entries behind one pooled pixel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bin {
    pub cell: usize,
    pub layer: usize,
    pub head: usize,
    pub queries: Range<usize>,
    pub keys: Range<usize>,
}

/// The bin under figure point `p`, if it is inside a cell. Uses the compositor's nearest-texel
/// rule, so it names exactly the pixel drawn there.
pub fn bin_at(
    layout: &Layout,
    geometry: &CellGeometry,
    queries: usize,
    keys: usize,
    p: (f64, f64),
) -> Option<Bin> {
    if p.0 < 0.0 || p.1 < 0.0 {
        return None;
    }
    let (x, y) = (p.0.floor() as u32, p.1.floor() as u32);
    let (cell, c) = layout
        .cells
        .iter()
        .enumerate()
        .find(|(_, c)| x >= c.x && x < c.x + c.width && y >= c.y && y < c.y + c.height)?;
    let tx = ((x - c.x) as u64 * geometry.pooled_w as u64 / c.width as u64) as usize;
    let ty = ((y - c.y) as u64 * geometry.pooled_h as u64 / c.height as u64) as usize;
    let rows = bin_edges(queries, geometry.pooled_h);
    let cols = bin_edges(keys, geometry.pooled_w);
    Some(Bin {
        cell,
        layer: c.layer,
        head: c.head,
        queries: rows[ty] as usize..rows[ty + 1] as usize,
        keys: cols[tx] as usize..cols[tx + 1] as usize,
    })
}

/// The bin's value under `reduce` over its finite entries, and for max and min the (q, k) of
/// the entry that produced it. `None` when the bin holds no finite value.
pub fn read_bin(
    source: &dyn AttentionSource,
    bin: &Bin,
    reduce: Reduce,
) -> Result<Option<(f32, (usize, usize))>> {
    let s = source.shape();
    let dtype = source.dtype();
    let mut raw = vec![0u8; s.keys * dtype.size()];
    let mut row = vec![0f32; s.keys];
    let mut best: Option<(f32, (usize, usize))> = None;
    let (mut sum, mut count) = (0f64, 0u64);
    for q in bin.queries.clone() {
        source.read_rows(bin.layer, bin.head, q, &mut raw)?;
        dtype.decode(&raw, &mut row);
        for k in bin.keys.clone() {
            let v = row[k];
            if !v.is_finite() {
                continue;
            }
            sum += v as f64;
            count += 1;
            let better = match (best, reduce) {
                (None, _) => true,
                (Some((b, _)), Reduce::Min) => v < b,
                // larger magnitude, the positive one on a tie (`signed_extreme`)
                (Some((b, _)), Reduce::Extreme) => {
                    v.abs() > b.abs() || (v.abs() == b.abs() && v > b)
                }
                (Some((b, _)), _) => v > b,
            };
            if better {
                best = Some((v, (q, k)));
            }
        }
    }
    Ok(match reduce {
        Reduce::Mean => best.map(|(_, at)| ((sum / count as f64) as f32, at)),
        _ => best,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::figure::layout::Theme;
    use crate::source::ArraySource;

    #[test]
    fn bins_under_the_cursor_match_the_drawing_rule() {
        let g = CellGeometry::new(100, 300, Some(150)).unwrap();
        let layout = Layout::grid(&[0, 1], &[0, 1, 2], &g, Theme::LIGHT);
        let c = layout.cells[4];
        // the cell's first pixel covers the first bin, its last pixel the last one
        let first = bin_at(&layout, &g, 100, 300, (c.x as f64 + 0.5, c.y as f64 + 0.5)).unwrap();
        assert_eq!((first.cell, first.layer, first.head), (4, 1, 1));
        assert_eq!((first.queries.start, first.keys.start), (0, 0));
        let last = bin_at(
            &layout,
            &g,
            100,
            300,
            ((c.x + c.width) as f64 - 0.5, (c.y + c.height) as f64 - 0.5),
        )
        .unwrap();
        assert_eq!((last.queries.end, last.keys.end), (100, 300));
        // gutters and margins are not cells
        assert!(bin_at(&layout, &g, 100, 300, (1.0, 1.0)).is_none());
        assert!(bin_at(
            &layout,
            &g,
            100,
            300,
            ((c.x + c.width) as f64 + 0.5, c.y as f64)
        )
        .is_none());
    }

    #[test]
    fn bin_values_are_exact() {
        let a = ndarray::Array4::from_shape_fn((1, 1, 4, 4), |(_, _, q, k)| (q * 4 + k) as f32);
        let src = ArraySource::from_f32("a", &a);
        let bin = Bin {
            cell: 0,
            layer: 0,
            head: 0,
            queries: 1..3,
            keys: 2..4,
        };
        assert_eq!(
            read_bin(&src, &bin, Reduce::Max).unwrap(),
            Some((11.0, (2, 3)))
        );
        assert_eq!(
            read_bin(&src, &bin, Reduce::Min).unwrap(),
            Some((6.0, (1, 2)))
        );
        assert_eq!(read_bin(&src, &bin, Reduce::Mean).unwrap().unwrap().0, 8.5);
    }
}
