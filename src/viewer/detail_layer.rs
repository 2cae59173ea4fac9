//! The detail layer on screen: when to ask the worker for a zoomed region (see [`super::detail`]
//! for the region and the worker), and the region, once pooled, drawn over its cell as an
//! engine overlay coloured like the scene.

use std::time::{Duration, Instant};

use super::detail::{visible_region, Job, Region};
use super::state::State;
use crate::engine::Overlay;
use crate::error::Result;
use crate::pool::{Causal, PoolOptions, PooledCells};

/// How long the view must be still before its detail is pooled.
const SETTLE: Duration = Duration::from_millis(120);

/// A region of the focused head pooled at screen resolution, drawn over its cell.
pub(super) struct DetailLayer {
    pub(super) region: Region,
    pub(super) overlay: Overlay,
}

impl State {
    /// Asks the worker for the focused head's visible region at screen resolution when the
    /// view magnifies it past the resident pooling (not with `--norm row`, which normalizes
    /// whole rows while pooling).
    pub(super) fn request_detail(&mut self) {
        let Some(r) = self.focus.and_then(|cell| self.visible_detail(cell)) else {
            self.wanted = None;
            self.pending = None;
            self.detail = None;
            return;
        };
        if self.wanted.as_ref().is_some_and(|(w, _)| *w == r)
            || self.detail.as_ref().is_some_and(|d| d.region == r)
        {
            return;
        }
        let options = PoolOptions {
            causal: if self.scene.pooled.causal {
                Causal::On
            } else {
                Causal::Off
            },
            ..self.scene.plan.pool
        };
        // Sent once the view has settled (see `flush_detail`): while it moves, the resident
        // pooling is shown and the GPU stays free for frames.
        self.pending = Some((r, options, Instant::now()));
        self.place_detail();
    }

    /// The region of `cell` the view shows finer than the resident pooling, if any.
    fn visible_detail(&self, cell: usize) -> Option<Region> {
        let s = &self.scene;
        if s.plan.pool.row_norm {
            return None;
        }
        let placement = s.plan.layout.cells.get(cell)?;
        let (queries, keys) = self.source_shape;
        visible_region(
            cell,
            placement,
            &s.pooled.geometry,
            queries,
            keys,
            &self.view,
            self.window_size(),
        )
    }

    /// Sends the pending detail request once the view has been still for `SETTLE` (or at
    /// once with `now`); otherwise returns when to look again.
    pub(super) fn flush_detail(&mut self, now: bool) -> Option<Instant> {
        let (_, _, changed) = self.pending.as_ref()?;
        let due = *changed + SETTLE;
        if !now && Instant::now() < due {
            return Some(due);
        }
        let (region, options, _) = self.pending.take()?;
        self.send(Job::Detail(region.clone(), options));
        self.wanted = Some((region, Instant::now()));
        None
    }

    /// A pooled region arrived: colour it like its cell and draw it from the next frame on.
    pub(super) fn show_detail(&mut self, region: Region, pooled: PooledCells) -> Result<()> {
        // A region asked for before the latest still shows the right entries in the right
        // place (it is placed by its own rectangle), so it is drawn while the view moves on.
        let Some((wanted, asked)) = &self.wanted else {
            return Ok(());
        };
        if wanted.cell != region.cell {
            return Ok(());
        }
        if *wanted == region {
            self.timings.last_detail = Some(asked.elapsed().as_secs_f64());
        }
        self.timings.details += 1;
        let range = self.detail_range(&region, &pooled);
        let overlay = self.engine.cell_overlay(&self.scene, pooled, &[range])?;
        self.detail = Some(DetailLayer { region, overlay });
        self.place_detail();
        Ok(())
    }

    /// Moves the detail layer's quad to where its region is under the current view.
    pub(super) fn place_detail(&mut self) {
        let Some(d) = &self.detail else { return };
        let (x0, y0, x1, y1) = d.region.figure_rect;
        let (a, b) = (self.view.to_window((x0, y0)), self.view.to_window((x1, y1)));
        let rect = [
            a.0.round() as i32,
            a.1.round() as i32,
            ((b.0.round() - a.0.round()) as i32).max(1),
            ((b.1.round() - a.1.round()) as i32).max(1),
        ];
        d.overlay.place_cell(&self.engine.gpu, rect);
        self.dirty = true;
    }

    /// The range a detail region is coloured with: its cell's, once the figure is read; until
    /// then its own (provisional: the window has nothing else to go by yet).
    fn detail_range(&self, region: &Region, pooled: &PooledCells) -> [f32; 2] {
        if self.timings.resident.is_some() {
            return self.scene.ranges[region.cell];
        }
        pooled.stats[0]
            .range()
            .map_or([0.0, 1.0], |(lo, hi)| [lo, hi])
    }

    /// Recolours the detail layer after the scene was recoloured.
    pub(super) fn recolor_detail(&mut self) -> Result<()> {
        let Some(d) = &self.detail else { return Ok(()) };
        let Some(pooled) = d.overlay.pooled() else {
            return Ok(());
        };
        let range = self.detail_range(&d.region, pooled);
        self.engine
            .recolor_overlay(&self.scene, &d.overlay, &[range])
    }
}
