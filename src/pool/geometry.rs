//! Cell sizes and pooling bins: which input rows and columns fall into each pooled pixel. Pure
//! integer math shared by the GPU (as edge tables) and the CPU reference.

use crate::error::{Error, Result};

/// Largest cell side: pooled images and cell quads stay within every adapter's texture limits.
pub const MAX_CELL: u32 = 8192;

/// How one head is shown: its size on the figure and the resolution it is pooled to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CellGeometry {
    pub display_w: u32,
    pub display_h: u32,
    /// Pooled resolution: the display size, but never more than the native size (larger cells
    /// are filled by nearest-neighbour magnification, so entries stay crisp squares).
    pub pooled_w: u32,
    pub pooled_h: u32,
}

/// The cell side when none is asked for. Longer heads are pooled down to it.
pub const DEFAULT_CELL: u32 = 256;

/// The default side of a cell whose longer axis has `longest` entries: [`DEFAULT_CELL`] for
/// long heads, and short heads magnified by the largest integer factor that fits in it, so a
/// 59-token head is drawn at 4 px per entry (236 px) instead of an unreadable 59 px, and every
/// entry stays a crisp square of whole pixels.
pub fn default_side(longest: usize) -> u32 {
    let cell = DEFAULT_CELL as usize;
    if longest >= cell {
        DEFAULT_CELL
    } else {
        (longest.max(1) * (cell / longest.max(1))) as u32
    }
}

/// A cell's shorter side is at least its longer side over this: a head more than 8 times longer
/// than it is wide is drawn that wide, its entries stretched, rather than keeping its aspect, so
/// that a decode step (one query against 500 keys) is a 32-px band of 256, not a 1-px line, and
/// the last 10 queries of 2048 keys keep a row each instead of sharing one pixel.
pub const MAX_ASPECT: u64 = 8;

/// Entries one pooled pixel can count (`COUNT_MASK` in shaders/common.wgsl).
pub const MAX_BIN_ENTRIES: u64 = (1 << 31) - 1;

impl CellGeometry {
    /// `cell` is the side of the longer axis; `None` means [`default_side`]: 256, or a head
    /// shorter than that magnified by an integer factor. An explicit `cell` is taken as given.
    /// The shorter axis keeps the aspect down to 1/[`MAX_ASPECT`] of the side; past that it is
    /// that thick, each entry a whole number of pixels where it has fewer entries than pixels.
    pub fn new(queries: usize, keys: usize, cell: Option<u32>) -> Result<CellGeometry> {
        let longest = queries.max(keys) as u64;
        let side = match cell {
            Some(0) => return Err(Error::BadOption("--cell must be at least 1".into())),
            Some(c) if c > MAX_CELL => {
                return Err(Error::BadOption(format!(
                    "--cell {c} exceeds the maximum of {MAX_CELL}"
                )))
            }
            Some(c) => c as u64,
            None => default_side(longest as usize) as u64,
        };
        let thinnest = (side / MAX_ASPECT).max(1);
        let scaled = |n: usize| {
            let d = ((n as u64 * side + longest / 2) / longest).max(1);
            let n = n as u64;
            (if d >= thinnest {
                d
            } else if n <= thinnest {
                // (whole pixels an entry: crisp, as magnified heads are)
                n * thinnest.div_ceil(n)
            } else {
                thinnest
            }) as u32
        };
        let (display_w, display_h) = (scaled(keys), scaled(queries));
        let geometry = CellGeometry {
            display_w,
            display_h,
            pooled_w: display_w.min(keys.min(u32::MAX as usize) as u32),
            pooled_h: display_h.min(queries.min(u32::MAX as usize) as u32),
        };
        // A pooled pixel counts its entries in 31 bits (the 32nd flags non-finite values).
        let bin = queries.div_ceil(geometry.pooled_h as usize) as u64
            * keys.div_ceil(geometry.pooled_w as usize) as u64;
        if bin > MAX_BIN_ENTRIES {
            return Err(Error::BadOption(format!(
                "--cell {side} pools {bin} entries of this {queries}x{keys} head into one pixel, \
                 over the {MAX_BIN_ENTRIES} a pixel can count: use a larger --cell"
            )));
        }
        Ok(geometry)
    }

    pub fn pooled_pixels(&self) -> usize {
        self.pooled_w as usize * self.pooled_h as usize
    }
}

/// `bins + 1` edges splitting `0..n` into `bins` non-empty runs: edge i is `floor(i * n / bins)`.
/// Requires `1 <= bins <= n`.
pub fn bin_edges(n: usize, bins: u32) -> Vec<u32> {
    debug_assert!(bins >= 1 && bins as usize <= n);
    (0..=bins as u64)
        .map(|i| (i * n as u64 / bins as u64) as u32)
        .collect()
}

/// The bin holding index `i` for the edges from [`bin_edges`].
pub fn bin_of(edges: &[u32], i: u32) -> u32 {
    (edges.partition_point(|&e| e <= i) - 1) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_past_what_a_pixel_counts_are_refused() {
        // 65536² into one pixel: a bin of 2^32 entries
        let e = CellGeometry::new(65536, 65536, Some(1)).unwrap_err();
        assert!(e.to_string().contains("use a larger --cell"), "{e}");
        // 2^31 - 1 fits; 46341² does not
        assert!(CellGeometry::new(46340, 46340, Some(1)).is_ok());
        assert!(CellGeometry::new(46341, 46341, Some(1)).is_err());
        assert!(CellGeometry::new(65536, 65536, Some(256)).is_ok());
    }

    #[test]
    fn default_cell_is_256_or_an_integer_magnification() {
        let g = CellGeometry::new(128, 128, None).unwrap();
        assert_eq!((g.display_w, g.pooled_w), (256, 128));
        // 59 tokens (MiniLM on a sentence): 4 px per entry, not 59-px cells
        let g = CellGeometry::new(59, 59, None).unwrap();
        assert_eq!((g.display_w, g.display_h, g.pooled_w), (236, 236, 59));
        assert_eq!(g.display_w % g.pooled_w, 0);
        // non-square: the longer axis sets the factor, both axes take it
        let g = CellGeometry::new(50, 100, None).unwrap();
        assert_eq!((g.display_w, g.display_h), (200, 100));
        // 129..255 entries fit once
        assert_eq!(default_side(200), 200);
        assert_eq!(default_side(1), 256);
        assert_eq!(default_side(256), 256);
        assert_eq!(default_side(5000), 256);
        // an explicit cell wins
        let g = CellGeometry::new(59, 59, Some(59)).unwrap();
        assert_eq!(g.display_w, 59);
        let g = CellGeometry::new(2048, 2048, None).unwrap();
        assert_eq!(
            (g.display_w, g.display_h, g.pooled_w, g.pooled_h),
            (256, 256, 256, 256)
        );
    }

    #[test]
    fn non_square_heads_keep_their_aspect() {
        let g = CellGeometry::new(100, 400, Some(200)).unwrap();
        assert_eq!((g.display_w, g.display_h), (200, 50));
        assert_eq!((g.pooled_w, g.pooled_h), (200, 50));
        let g = CellGeometry::new(10, 40, Some(400)).unwrap();
        assert_eq!(
            (g.display_w, g.display_h, g.pooled_w, g.pooled_h),
            (400, 100, 40, 10)
        );
    }

    #[test]
    fn thin_heads_are_drawn_an_eighth_as_wide_at_least() {
        // one query against 500 keys: a row 32 px high, not 1 px
        let g = CellGeometry::new(1, 500, None).unwrap();
        assert_eq!(
            (g.display_w, g.display_h, g.pooled_w, g.pooled_h),
            (256, 32, 256, 1)
        );
        // the last 10 of 2048: 4 px a row (not one pixel for all ten)
        let g = CellGeometry::new(10, 2048, None).unwrap();
        assert_eq!((g.display_h, g.pooled_h), (40, 10));
        // 100 rows of 4096 keys: 32 px, about 3 rows a pixel
        let g = CellGeometry::new(100, 4096, None).unwrap();
        assert_eq!((g.display_h, g.pooled_h), (32, 32));
        // columns too, and an explicit cell's eighth
        let g = CellGeometry::new(500, 1, Some(64)).unwrap();
        assert_eq!((g.display_w, g.display_h, g.pooled_w), (8, 64, 1));
        // 8:1 keeps its aspect
        let g = CellGeometry::new(32, 256, None).unwrap();
        assert_eq!((g.display_w, g.display_h), (256, 32));
    }

    #[test]
    fn bins_cover_every_index_once() {
        for n in [1usize, 2, 7, 100, 257, 1000] {
            for bins in [1u32, 2, 3, 7, 64, 256] {
                if bins as usize > n {
                    continue;
                }
                let e = bin_edges(n, bins);
                assert_eq!((e[0], *e.last().unwrap()), (0, n as u32));
                assert!(e.windows(2).all(|w| w[0] < w[1]), "n={n} bins={bins}");
                for i in 0..n as u32 {
                    let b = bin_of(&e, i) as usize;
                    assert!(e[b] <= i && i < e[b + 1]);
                }
            }
        }
    }
}
