//! The viewer's view transform: figure pixels to window pixels by a uniform zoom and an offset.
//! Pure math, tested without a window.

use crate::figure::quads::{Quad, KIND_CELL, KIND_COLORBAR};

/// `window = figure * scale + offset`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ViewTransform {
    pub scale: f64,
    pub offset: (f64, f64),
}

/// Zoom range: from a whole 16k-wide figure in a small window to one entry per 256 pixels.
pub const MIN_SCALE: f64 = 1.0 / 64.0;
pub const MAX_SCALE: f64 = 256.0;

impl ViewTransform {
    pub const IDENTITY: ViewTransform = ViewTransform {
        scale: 1.0,
        offset: (0.0, 0.0),
    };

    /// Fits a `figure` sized rectangle into `window`, centred, never magnified past 1:1.
    pub fn fit(figure: (u32, u32), window: (u32, u32)) -> ViewTransform {
        let s = (window.0 as f64 / figure.0 as f64)
            .min(window.1 as f64 / figure.1 as f64)
            .min(1.0);
        ViewTransform {
            scale: s,
            offset: (
                ((window.0 as f64 - figure.0 as f64 * s) / 2.0).round(),
                ((window.1 as f64 - figure.1 as f64 * s) / 2.0).round(),
            ),
        }
    }

    /// Fills `window` with the figure rectangle `rect` (x, y, w, h), centred, keeping
    /// `margin` pixels free around it; magnifies as needed (focus on one cell).
    pub fn fit_rect(rect: (u32, u32, u32, u32), window: (u32, u32), margin: f64) -> ViewTransform {
        let (x, y, w, h) = (rect.0 as f64, rect.1 as f64, rect.2 as f64, rect.3 as f64);
        let avail = (
            (window.0 as f64 - 2.0 * margin).max(1.0),
            (window.1 as f64 - 2.0 * margin).max(1.0),
        );
        let scale = (avail.0 / w).min(avail.1 / h).clamp(MIN_SCALE, MAX_SCALE);
        ViewTransform {
            scale,
            offset: (
                (window.0 as f64 - w * scale) / 2.0 - x * scale,
                (window.1 as f64 - h * scale) / 2.0 - y * scale,
            ),
        }
    }

    pub fn to_window(&self, p: (f64, f64)) -> (f64, f64) {
        (
            p.0 * self.scale + self.offset.0,
            p.1 * self.scale + self.offset.1,
        )
    }

    pub fn to_figure(&self, p: (f64, f64)) -> (f64, f64) {
        (
            (p.0 - self.offset.0) / self.scale,
            (p.1 - self.offset.1) / self.scale,
        )
    }

    /// Multiplies the zoom by `factor` keeping the figure point under `cursor` fixed.
    pub fn zoom_about(&self, cursor: (f64, f64), factor: f64) -> ViewTransform {
        self.zoom_about_within(cursor, factor, MAX_SCALE)
    }

    /// [`Self::zoom_about`] up to `max_scale` (at least `MAX_SCALE`): long heads need more
    /// magnification before one entry covers many pixels.
    pub fn zoom_about_within(
        &self,
        cursor: (f64, f64),
        factor: f64,
        max_scale: f64,
    ) -> ViewTransform {
        let scale = (self.scale * factor).clamp(MIN_SCALE, max_scale.max(MAX_SCALE));
        let anchor = self.to_figure(cursor);
        ViewTransform {
            scale,
            offset: (cursor.0 - anchor.0 * scale, cursor.1 - anchor.1 * scale),
        }
    }

    /// Moves by `delta` window pixels, keeping at least `margin` pixels of the figure visible.
    pub fn pan(
        &self,
        delta: (f64, f64),
        figure: (u32, u32),
        window: (u32, u32),
        margin: f64,
    ) -> ViewTransform {
        let clamp_axis = |offset: f64, fig: u32, win: u32| {
            let size = fig as f64 * self.scale;
            let m = margin.min(size);
            // (a window narrower than the margin, a minimized one for instance: the figure's
            // edge at the window's, rather than bounds the wrong way round)
            let lo = m - size;
            offset.clamp(lo, (win as f64 - m).max(lo))
        };
        ViewTransform {
            scale: self.scale,
            offset: (
                clamp_axis(self.offset.0 + delta.0, figure.0, window.0),
                clamp_axis(self.offset.1 + delta.1, figure.1, window.1),
            ),
        }
    }

    /// The figure's quads in window pixels. Cells and the colorbar scale (nearest-neighbour,
    /// so entries stay crisp squares); labels move but keep their rasterized size.
    pub fn apply(&self, quads: &[Quad], out: &mut Vec<Quad>) {
        out.clear();
        out.extend(quads.iter().map(|q| {
            let [x, y, w, h] = q.rect;
            let (x0, y0) = self.to_window((x as f64, y as f64));
            // (a cell `--top` left out has no size, and keeps none: a cell shrunk by the view
            // keeps a pixel, so that it stays visible)
            let rect = if w == 0 || h == 0 {
                [x0.round() as i32, y0.round() as i32, 0, 0]
            } else if q.kind == KIND_CELL || q.kind == KIND_COLORBAR {
                let (x1, y1) = self.to_window(((x + w) as f64, (y + h) as f64));
                let (x0, y0, x1, y1) = (x0.round(), y0.round(), x1.round(), y1.round());
                [
                    x0 as i32,
                    y0 as i32,
                    ((x1 - x0) as i32).max(1),
                    ((y1 - y0) as i32).max(1),
                ]
            } else {
                [x0.round() as i32, y0.round() as i32, w, h]
            };
            Quad { rect, ..*q }
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: (f64, f64), b: (f64, f64)) -> bool {
        (a.0 - b.0).abs() < 1e-6 && (a.1 - b.1).abs() < 1e-6
    }

    /// A cell shrunk below a pixel keeps one; a cell `--top` left out (no size) keeps none
    /// (it was a stray pixel at the figure's origin).
    #[test]
    fn empty_cells_stay_empty_and_small_ones_visible() {
        let t = ViewTransform {
            scale: 0.1,
            offset: (5.0, 5.0),
        };
        let cell = |rect| Quad {
            rect,
            kind: KIND_CELL,
            src: 0,
            src_size: 0,
            color: 0,
        };
        let mut out = Vec::new();
        t.apply(&[cell([0, 0, 0, 0]), cell([20, 20, 4, 4])], &mut out);
        assert_eq!(out[0].rect[2..], [0, 0]);
        assert_eq!(out[1].rect[2..], [1, 1]);
    }

    #[test]
    fn zoom_keeps_the_point_under_the_cursor() {
        let mut t = ViewTransform {
            scale: 0.5,
            offset: (10.0, -20.0),
        };
        for (i, factor) in [1.1, 0.9, 2.0, 0.25, 1.5, 8.0].iter().enumerate() {
            for cursor in [(0.0, 0.0), (123.0, 456.0), (999.0, 1.0)] {
                let z = t.zoom_about(cursor, *factor);
                assert!(close(z.to_window(t.to_figure(cursor)), cursor), "step {i}");
            }
            t = t.zoom_about((300.0, 200.0), *factor);
        }
    }

    #[test]
    fn zoom_is_clamped() {
        let t = ViewTransform::IDENTITY.zoom_about((5.0, 5.0), 1e9);
        assert_eq!(t.scale, MAX_SCALE);
        let t = ViewTransform::IDENTITY.zoom_about((5.0, 5.0), 1e-9);
        assert_eq!(t.scale, MIN_SCALE);
    }

    #[test]
    fn window_and_figure_coordinates_round_trip() {
        let t = ViewTransform {
            scale: 3.25,
            offset: (-17.5, 42.0),
        };
        for p in [(0.0, 0.0), (1.5, 2.5), (1000.0, 3.0)] {
            assert!(close(t.to_figure(t.to_window(p)), p));
        }
    }

    #[test]
    fn pan_keeps_part_of_the_figure_visible() {
        let t = ViewTransform::IDENTITY;
        let far = t.pan((1e6, 1e6), (500, 400), (800, 600), 50.0);
        assert_eq!(far.offset, (750.0, 550.0));
        let far = t.pan((-1e6, -1e6), (500, 400), (800, 600), 50.0);
        assert_eq!(far.offset, (-450.0, -350.0));
        let near = t.pan((10.0, -5.0), (500, 400), (800, 600), 50.0);
        assert_eq!(near.offset, (10.0, -5.0));
        // a figure smaller than the margin in a window of nothing (minimized)
        let tiny = t.pan((3.0, -4.0), (8, 6), (0, 0), 50.0);
        assert_eq!(tiny.offset, (0.0, 0.0));
    }

    #[test]
    fn fit_rect_fills_the_window_with_one_cell() {
        let t = ViewTransform::fit_rect((100, 50, 200, 100), (1000, 800), 10.0);
        assert_eq!(t.scale, 4.9);
        let (x0, y0) = t.to_window((100.0, 50.0));
        let (x1, y1) = t.to_window((300.0, 150.0));
        assert!(((x0 + x1) / 2.0 - 500.0).abs() < 1e-9 && ((y0 + y1) / 2.0 - 400.0).abs() < 1e-9);
        assert!((x1 - x0 - 980.0).abs() < 1e-9);
    }

    #[test]
    fn fit_centres_and_never_magnifies() {
        let t = ViewTransform::fit((1000, 500), (500, 500));
        assert_eq!(t.scale, 0.5);
        assert_eq!(t.offset, (0.0, 125.0));
        assert_eq!(ViewTransform::fit((100, 100), (300, 300)).scale, 1.0);
    }

    #[test]
    fn identity_leaves_quads_alone_and_zoom_scales_cells_only() {
        let quads = [
            Quad {
                rect: [10, 20, 30, 40],
                kind: KIND_CELL,
                src: 0,
                src_size: 0,
                color: 0,
            },
            Quad {
                rect: [1, 2, 7, 9],
                kind: crate::figure::quads::KIND_LABEL,
                src: 0,
                src_size: 0,
                color: 0,
            },
        ];
        let mut out = Vec::new();
        ViewTransform::IDENTITY.apply(&quads, &mut out);
        assert_eq!(out, quads);
        ViewTransform {
            scale: 2.0,
            offset: (5.0, 0.0),
        }
        .apply(&quads, &mut out);
        assert_eq!(out[0].rect, [25, 40, 60, 80]);
        assert_eq!(out[1].rect, [7, 4, 7, 9]);
    }
}
