//! The hover readout: what is under the cursor, read by the worker (never on the window's
//! thread) and shown in the title (the window's title bar) and in a box in the bottom-left corner, an
//! engine overlay rasterized when the text changes, never per frame.

use super::detail::Job;
use super::inspect::{bin_at, Bin};
use super::state::State;
use crate::color::colormap::pack_rgba;
use crate::engine::Overlay;
use crate::figure::quads::{FigureQuads, Quad, KIND_FILL, KIND_LABEL};
use crate::figure::text::{rasterize, Atlas, Face};
use crate::pool::pattern::HeadPattern;

/// Gap between the readout's box and the window's edges, in pixels.
const MARGIN: i32 = 8;

/// The readout's overlay, and its quads (a box and a label) as built, at (0, 0).
pub(super) struct Readout {
    pub(super) overlay: Overlay,
    quads: [Quad; 2],
}

/// The hovered head's statistics, as `attnviz heads` names them, for the readout: shown when the
/// figure was pooled with them (`--sort-by`, or after the sort key).
fn head_statistics(p: &HeadPattern) -> String {
    format!(
        "sink {:.3}  local {:.3}  entropy {:.2}  distance {:.1}  {}",
        p.sink_mass, p.local_mass, p.entropy, p.mean_distance, p.pattern
    )
}

impl State {
    /// Asks the worker for the readout when the entry under the cursor changes.
    pub(super) fn hover(&mut self) {
        let bin = bin_at(
            &self.scene.plan.layout,
            &self.scene.plan.geometry,
            self.source_shape.0,
            self.source_shape.1,
            self.view.to_figure(self.cursor),
        );
        if bin == self.hovered {
            return;
        }
        match &bin {
            None => {
                self.set_title(self.plain_title.clone());
                self.set_readout(None);
                self.readout_bin = None;
            }
            Some(b) => self.send(Job::Hover(b.clone(), self.scene.reduce)),
        }
        self.hovered = bin;
    }

    /// The worker's readout of `bin` arrived: shown if the cursor is still on it.
    pub(super) fn show_readout(&mut self, bin: &Bin, text: &str) {
        if self.hovered.as_ref() == Some(bin) {
            let text = match self.patterns.get(bin.cell) {
                Some(p) => format!("{text}   {}", head_statistics(p)),
                None => text.to_string(),
            };
            self.set_readout(Some(&text));
            self.set_title(text);
            self.readout_bin = Some(bin.clone());
        }
    }

    fn set_title(&mut self, text: String) {
        if text != self.title {
            self.title = text;
        }
    }

    /// Shows `text` in the readout's box (`None` hides it).
    fn set_readout(&mut self, text: Option<&str>) {
        let Some(text) = text else {
            self.readout = None;
            self.dirty = true;
            return;
        };
        let px = (15.0 * self.scale_factor).round() as f32;
        let (figure, quads) = self.readout_quads(text, px);
        let overlay = self.engine.overlay(&self.scene, &figure);
        self.readout = Some(Readout { overlay, quads });
        self.place_readout();
    }

    /// `text` at `px` pixels on a box of the theme's background, at (0, 0).
    fn readout_quads(&self, text: &str, px: f32) -> (FigureQuads, [Quad; 2]) {
        let theme = self.scene.plan.layout.theme;
        let label = rasterize(&[(text, Face::Regular)], px);
        let pad = (px / 3.0).round() as i32;
        let (w, h) = (label.width as i32, label.height as i32);
        let quads = [
            Quad {
                rect: [0, 0, w + 2 * pad, h + pad],
                kind: KIND_FILL,
                src: 0,
                src_size: 0,
                color: pack_rgba(theme.background),
            },
            Quad {
                rect: [pad, pad / 2, w, h],
                kind: KIND_LABEL,
                src: 0,
                src_size: 0,
                color: pack_rgba(theme.foreground),
            },
        ];
        let figure = FigureQuads {
            quads: quads.to_vec(),
            draws: std::iter::once(0..2).collect(),
            atlas: Atlas::pack(&[label]),
            width: (w + 2 * pad) as u32,
            height: (h + pad) as u32,
            background: theme.background,
        };
        (figure, quads)
    }

    /// Keeps the readout in the bottom-left corner as the window changes size.
    pub(super) fn place_readout(&mut self) {
        let Some(r) = &self.readout else {
            return;
        };
        let dy = self.window_size().1 as i32 - r.quads[0].rect[3] - MARGIN;
        let placed = r.quads.map(|q| Quad {
            rect: [q.rect[0] + MARGIN, q.rect[1] + dy, q.rect[2], q.rect[3]],
            ..q
        });
        r.overlay.set_quads(&self.engine.gpu, &placed);
        self.dirty = true;
    }
}
