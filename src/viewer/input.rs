//! Keys and pointer: what each does to the view state. Keys are named as the web names them
//! (`KeyboardEvent.key`: "Escape", "ArrowLeft", "c"), which winit's named keys follow too; the
//! window (`super::app`) and the notebook widget only translate their events into these calls
//! (see [`super::session::Event`]).

use std::path::PathBuf;

use super::detail::Job;
use super::state::State;
use crate::color::colormap::Colormap;
use crate::color::norm::Norm;
use crate::error::Result;
use crate::figure::rank::SortKey;
use crate::pool::accum::Reduce;
use crate::pool::pattern::PATTERNS;

/// Pixels of the figure kept in the window when panning past its edge.
const PAN_KEEP: f64 = 32.0;

/// Clicks move the pointer less than this (window pixels, x plus y) between press and release.
const CLICK_SLOP: f64 = 4.0;

impl State {
    /// Handles a pressed key, named as `KeyboardEvent.key` names it; true when it asks to
    /// close the window.
    pub(super) fn key(&mut self, key: &str) -> Result<bool> {
        let close = match self.named_key(key) {
            Some(close) => close,
            None => self.character_key(key)?,
        };
        if !close {
            self.dirty = true;
        }
        Ok(close)
    }

    /// A named key's action; `None` for a key that is not one of them.
    fn named_key(&mut self, key: &str) -> Option<bool> {
        match key {
            "Escape" if self.focus.is_some() => self.focus_on(None),
            "Escape" => return Some(true),
            "Enter" => self.focus_on(self.cell_under_cursor().or(Some(0))),
            "ArrowLeft" => self.step_focus(-1, 0),
            "ArrowRight" => self.step_focus(1, 0),
            "ArrowUp" => self.step_focus(0, -1),
            "ArrowDown" => self.step_focus(0, 1),
            // Grids taller than the window: page through the layers a window at a time.
            "PageDown" => self.page(-0.9),
            "PageUp" => self.page(0.9),
            _ => return None,
        }
        Some(false)
    }

    fn character_key(&mut self, c: &str) -> Result<bool> {
        match c {
            "q" => return Ok(true),
            "g" => {
                let next = if self.focus.is_some() {
                    None
                } else {
                    self.cell_under_cursor().or(Some(0))
                };
                self.focus_on(next);
            }
            "c" => self.next_colormap()?,
            "n" if self.scene.norm != Norm::Row => self.next_norm()?,
            "r" => self.toggle_reduce()?,
            "0" => self.focus_on(self.focus),
            "o" => match self.unsortable {
                // (said in the title, as the order is, rather than failing over a key)
                Some(why) => self.set_plain_title(why),
                None => self.next_sort()?,
            },
            "p" => match self.unsortable {
                Some(why) => self.set_plain_title(why),
                None => self.next_pattern()?,
            },
            "s" => {
                let path = PathBuf::from(format!("attnviz-{}.png", std::process::id()));
                match self.screenshot(&path) {
                    Ok(()) => eprintln!("saved {}", path.display()),
                    // (a folder that cannot be written is no reason to close the window)
                    Err(e) => {
                        eprintln!("{e}");
                        self.set_plain_title(&format!("s: {e}"));
                    }
                }
            }
            _ => {}
        }
        Ok(false)
    }

    /// Orders the grid by the next statistic (`--sort-by`'s, then the grid's own order again,
    /// unless `--top` asked for a ranking). The first time, the worker pools the figure again
    /// with the statistics, from the same single read, and the sorted figure replaces this one
    /// when it is resident; once the shown figure has them, it is only laid out again
    /// (`Engine::reorder`), nothing read. The view, the focus and the colouring stay.
    fn next_sort(&mut self) -> Result<()> {
        let mut cycle: Vec<Option<SortKey>> = SortKey::ALL.iter().copied().map(Some).collect();
        if self.render.top.is_none() {
            cycle.push(None);
        }
        let i = cycle
            .iter()
            .position(|&k| k == self.render.sort_by)
            .map_or(0, |i| (i + 1) % cycle.len());
        self.render.sort_by = cycle[i];
        let name = self.render.sort_by.map_or("layer and head", SortKey::name);
        let only = match &self.render.pattern {
            Some(labels) => format!(", only {}", labels.join(", ")),
            None => String::new(),
        };
        self.set_plain_title(&format!("ordered by {name}{only}"));
        self.rank_again()
    }

    /// Whether the shown figure holds its statistics: then it can be ranked again from them,
    /// nothing read.
    fn has_statistics(&self) -> bool {
        !self.patterns.is_empty() && self.timings.resident.is_some()
    }

    /// Lays the figure out again as `self.render` ranks it (`o` and `p`): from the resident
    /// statistics where the shown figure has them (`Engine::reorder`, nothing read; the view,
    /// the focus and the colouring stay), else by the worker pooling it again with them, in
    /// one read. The statistics are turned on either way.
    fn rank_again(&mut self) -> Result<()> {
        self.render.patterns = Some(self.render.patterns.unwrap_or(self.statistics));
        if self.has_statistics() {
            let before = self.scene.plan.layout.cells.clone();
            self.engine
                .reorder(&mut self.scene, &self.patterns, &self.render)?;
            let view = self.following_focus(&before, self.view);
            self.set_view(view);
            return self.recolor_detail();
        }
        self.timings.resident = None;
        self.send(Job::Scene(Box::new(self.render.clone())));
        Ok(())
    }

    /// Shows only the heads of the next pattern label the heads have, in the order shown
    /// (`--pattern` one label at a time, in [`PATTERNS`]' order), then every head again. The
    /// labels come from the statistics: the first time, the worker pools the figure again with
    /// them (one read, every head shown) and the title asks for the key again; once the shown
    /// figure has them, the layout alone is made again, nothing read.
    fn next_pattern(&mut self) -> Result<()> {
        if !self.has_statistics() {
            self.set_plain_title("labelling the heads: press p again to show one label's");
            return self.rank_again();
        }
        let has = |label: &str| self.patterns.iter().filter(|p| p.pattern == label).count();
        let mut cycle: Vec<Option<Vec<&'static str>>> = PATTERNS
            .iter()
            .filter(|&&l| has(l) > 0)
            .map(|&l| Some(vec![l]))
            .collect();
        cycle.push(None);
        let i = cycle
            .iter()
            .position(|c| *c == self.render.pattern)
            .map_or(0, |i| (i + 1) % cycle.len());
        self.render.pattern = cycle[i].clone();
        let what = match &self.render.pattern {
            Some(labels) => format!(
                "only {} heads ({} of {})",
                labels.join(", "),
                labels.iter().map(|l| has(l)).sum::<usize>(),
                self.patterns.len()
            ),
            None => "every head".to_string(),
        };
        self.set_plain_title(&what);
        self.rank_again()
    }

    /// The title with nothing hovered: the source's name, then `what` (the order, or why
    /// there is none).
    fn set_plain_title(&mut self, what: &str) {
        self.plain_title = format!("{} — {what}", self.source_title);
        if self.hovered.is_none() {
            self.title = self.plain_title.clone();
        }
    }

    /// Pans by `windows` window heights (positive: up the figure).
    fn page(&mut self, windows: f64) {
        let (w, h) = self.window_size();
        let view = self
            .view
            .pan((0.0, h as f64 * windows), self.figure(), (w, h), PAN_KEEP);
        self.set_view(view);
    }

    fn next_colormap(&mut self) -> Result<()> {
        let s = &mut self.scene;
        let i = Colormap::ALL
            .iter()
            .position(|&m| m == s.colormap)
            .unwrap_or(0);
        let next = Colormap::ALL[(i + 1) % Colormap::ALL.len()];
        self.engine.recolor(s, s.norm, s.reduce, next)?;
        self.recolor_detail()
    }

    /// The next of the normalizations a recolour can reach (`--norm row` needs the input
    /// pooled again).
    fn next_norm(&mut self) -> Result<()> {
        let s = &mut self.scene;
        let cycle = [Norm::Head, Norm::Layer, Norm::Global, Norm::None];
        let i = cycle.iter().position(|&n| n == s.norm).unwrap_or(0);
        self.engine
            .recolor(s, cycle[(i + 1) % cycle.len()], s.reduce, s.colormap)?;
        self.recolor_detail()
    }

    fn toggle_reduce(&mut self) -> Result<()> {
        let s = &mut self.scene;
        let next = if s.reduce == Reduce::Max {
            Reduce::Mean
        } else {
            Reduce::Max
        };
        self.engine.recolor(s, s.norm, next, s.colormap)?;
        // Max and mean pool differently: the detail is pooled anew.
        self.detail = None;
        self.wanted = None;
        self.request_detail();
        Ok(())
    }

    /// Zooms about the cursor, a step of 1.2× per wheel line (positive: in).
    pub(super) fn wheel(&mut self, steps: f64) {
        let view = self
            .view
            .zoom_about_within(self.cursor, 1.2f64.powf(steps), self.max_scale);
        self.set_view(view);
    }

    /// Follows the pointer: the readout, and the drag in progress.
    pub(super) fn cursor_moved(&mut self, at: (f64, f64)) {
        self.cursor = at;
        self.pointer_seen = true;
        self.hover();
        if let Some(last) = self.dragging {
            self.pan_by((at.0 - last.0, at.1 - last.1));
            self.dragging = Some(self.cursor);
        }
    }

    /// Pans by `delta` window pixels.
    pub(super) fn pan_by(&mut self, delta: (f64, f64)) {
        let view = self
            .view
            .pan(delta, self.figure(), self.window_size(), PAN_KEEP);
        self.set_view(view);
    }

    /// The left button: drags pan; a click (not a drag) on a cell in grid mode focuses it.
    pub(super) fn left_button(&mut self, pressed: bool) {
        self.dragging = pressed.then_some(self.cursor);
        if pressed {
            self.pressed_at = Some(self.cursor);
        } else if let Some(at) = self.pressed_at.take() {
            let moved = (at.0 - self.cursor.0).abs() + (at.1 - self.cursor.1).abs();
            if moved < CLICK_SLOP && self.focus.is_none() {
                if let Some(cell) = self.cell_under_cursor() {
                    self.focus_on(Some(cell));
                }
            }
        }
    }
}
