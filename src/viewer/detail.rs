//! Exact detail for a zoomed view. The resident figure holds each head pooled to its cell; once
//! the view magnifies a cell past that resolution, the visible part of the head is pooled again,
//! at the resolution it is shown, from the source (the memory-mapped file, or Q and K), on a
//! worker thread, and drawn over the cell when it arrives. The window never waits for it, and
//! the hover readout is read on the same thread.

use std::ops::Range;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;

use super::inspect::{read_bin, Bin};
use super::transform::ViewTransform;
use crate::engine::{Engine, Scene};
use crate::error::{Error, Result};
use crate::figure::layout::CellPlacement;
use crate::figure::plan::RenderOptions;
use crate::pool::accum::Reduce;
use crate::pool::geometry::CellGeometry;
use crate::pool::pattern::HeadPattern;
use crate::pool::{PoolOptions, PooledCells};
use crate::source::{row_range, AttentionSource, DType, Shape};

/// A rectangle of one head's entries, and the pixels it is shown at.
#[derive(Clone, Debug, PartialEq)]
pub struct Region {
    pub cell: usize,
    pub layer: usize,
    pub head: usize,
    pub rows: Range<usize>,
    pub keys: Range<usize>,
    /// Pooled size (w, h): the region's size on screen, or its entries when fewer.
    pub size: (u32, u32),
    /// Where the region lies in figure pixels: (x0, y0, x1, y1).
    pub figure_rect: (f64, f64, f64, f64),
}

/// The region of `cell` (placed at `placement` in the figure; a head of `queries` × `keys`,
/// pooled as `geometry`) visible in a `window` under `view`, when the view shows it finer than
/// the resident pooling does; `None` when the resident cell is already as sharp as the screen.
pub fn visible_region(
    cell: usize,
    placement: &CellPlacement,
    geometry: &CellGeometry,
    queries: usize,
    keys: usize,
    view: &ViewTransform,
    window: (u32, u32),
) -> Option<Region> {
    let (wx0, wy0) = view.to_figure((0.0, 0.0));
    let (wx1, wy1) = view.to_figure((window.0 as f64, window.1 as f64));
    let (cx0, cy0) = (placement.x as f64, placement.y as f64);
    let (cx1, cy1) = (cx0 + placement.width as f64, cy0 + placement.height as f64);
    let (fx0, fy0, fx1, fy1) = (wx0.max(cx0), wy0.max(cy0), wx1.min(cx1), wy1.min(cy1));
    if fx0 >= fx1 || fy0 >= fy1 {
        return None;
    }
    // Entries under the visible part, widened to whole entries.
    let to_entry = |f: f64, c0: f64, extent: f64, n: usize| {
        ((f - c0) / extent * n as f64).clamp(0.0, n as f64)
    };
    let k0 = to_entry(fx0, cx0, placement.width as f64, keys).floor() as usize;
    let k1 = to_entry(fx1, cx0, placement.width as f64, keys).ceil() as usize;
    let r0 = to_entry(fy0, cy0, placement.height as f64, queries).floor() as usize;
    let r1 = to_entry(fy1, cy0, placement.height as f64, queries).ceil() as usize;
    if k0 >= k1 || r0 >= r1 {
        return None;
    }
    let figure_rect = (
        cx0 + k0 as f64 / keys as f64 * placement.width as f64,
        cy0 + r0 as f64 / queries as f64 * placement.height as f64,
        cx0 + k1 as f64 / keys as f64 * placement.width as f64,
        cy0 + r1 as f64 / queries as f64 * placement.height as f64,
    );
    let on_screen = (
        ((figure_rect.2 - figure_rect.0) * view.scale)
            .ceil()
            .max(1.0) as usize,
        ((figure_rect.3 - figure_rect.1) * view.scale)
            .ceil()
            .max(1.0) as usize,
    );
    let size = (on_screen.0.min(k1 - k0), on_screen.1.min(r1 - r0));
    // What the resident pooling already gives this region, in pixels.
    let resident = (
        (k1 - k0) as f64 / keys as f64 * geometry.pooled_w as f64,
        (r1 - r0) as f64 / queries as f64 * geometry.pooled_h as f64,
    );
    let sharper = size.0 as f64 > resident.0 * 1.25 || size.1 as f64 > resident.1 * 1.25;
    sharper.then_some(Region {
        cell,
        layer: placement.layer,
        head: placement.head,
        rows: r0..r1,
        keys: k0..k1,
        size: (size.0 as u32, size.1 as u32),
        figure_rect,
    })
}

/// A rectangle of one head of another source, as a one-head source of its own.
pub struct RegionSource<'a> {
    inner: &'a dyn AttentionSource,
    layer: usize,
    head: usize,
    rows: Range<usize>,
    keys: Range<usize>,
}

impl<'a> RegionSource<'a> {
    pub fn new(inner: &'a dyn AttentionSource, region: &Region) -> Self {
        RegionSource {
            inner,
            layer: region.layer,
            head: region.head,
            rows: region.rows.clone(),
            keys: region.keys.clone(),
        }
    }
}

impl AttentionSource for RegionSource<'_> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn shape(&self) -> Shape {
        Shape {
            layers: 1,
            heads: 1,
            queries: self.rows.len(),
            keys: self.keys.len(),
        }
    }

    fn dtype(&self) -> DType {
        self.inner.dtype()
    }

    /// Reads whole rows of the head (the file's layout) and keeps the region's keys.
    fn read_rows(&self, layer: usize, head: usize, row_start: usize, dst: &mut [u8]) -> Result<()> {
        row_range(
            self.name(),
            self.shape(),
            self.dtype(),
            layer,
            head,
            row_start,
            dst.len(),
        )?;
        let size = self.dtype().size();
        let full = self.inner.shape().keys * size;
        let part = self.keys.len() * size;
        let rows = dst.len() / part;
        let mut whole = vec![0u8; rows * full];
        self.inner.read_rows(
            self.layer,
            self.head,
            self.rows.start + row_start,
            &mut whole,
        )?;
        for (d, s) in dst.chunks_exact_mut(part).zip(whole.chunks_exact(full)) {
            d.copy_from_slice(&s[self.keys.start * size..self.keys.end * size]);
        }
        Ok(())
    }

    fn diagonal(&self) -> i64 {
        self.inner.diagonal() + self.rows.start as i64 - self.keys.start as i64
    }

    fn first_query(&self) -> usize {
        self.inner.first_query() + self.rows.start
    }
}

/// Work for the worker thread; only the newest job of each kind matters.
pub(crate) enum Job {
    Start(Arc<Engine>),
    Detail(Region, PoolOptions),
    Hover(Bin, Reduce),
    /// The whole figure, read from the source (the window opens on an empty one).
    Scene(Box<RenderOptions>),
}

pub(crate) enum Reply {
    Detail(Region, PooledCells),
    Hover(Bin, String),
    /// The whole figure, with each cell's head statistics when it was pooled with them (finished
    /// here, off the window's thread).
    Scene(Box<Scene>, Vec<HeadPattern>),
    Failed(Error),
}

/// Serves jobs until the sender is dropped, waking the window with `wake` after each reply.
pub(crate) fn worker(
    source: &dyn AttentionSource,
    tokens: Option<&[String]>,
    jobs: Receiver<Job>,
    replies: Sender<Reply>,
    wake: impl Fn(),
) {
    let Ok(Job::Start(engine)) = jobs.recv() else {
        return;
    };
    let (mut detail, mut hover, mut scene) = (None, None, None);
    loop {
        // Block for one job, then take everything queued behind it, keeping the newest.
        let first = if detail.is_none() && hover.is_none() && scene.is_none() {
            match jobs.recv() {
                Ok(j) => Some(j),
                Err(_) => return,
            }
        } else {
            None
        };
        for job in first.into_iter().chain(jobs.try_iter()) {
            match job {
                Job::Detail(r, o) => detail = Some((r, o)),
                Job::Hover(b, r) => hover = Some((b, r)),
                Job::Scene(o) => scene = Some(o),
                Job::Start(_) => {}
            }
        }
        // The readout first: it is small and the cursor is waiting on it.
        if let Some((bin, reduce)) = hover.take() {
            let reply = match readout(source, &bin, reduce, tokens) {
                Ok(text) => Reply::Hover(bin, text),
                Err(e) => Reply::Failed(e),
            };
            if replies.send(reply).is_err() {
                return;
            }
            wake();
            continue;
        }
        // Then what is on screen, which reads only the visible rows; the whole figure last.
        if let Some((region, options)) = detail.take() {
            let reply = match pool_region(&engine, source, &region, options) {
                Ok(pooled) => Reply::Detail(region, pooled),
                Err(e) => Reply::Failed(e),
            };
            if replies.send(reply).is_err() {
                return;
            }
            wake();
            continue;
        }
        if let Some(options) = scene.take() {
            let reply = match engine.scene(source, &options) {
                Ok(s) => {
                    let patterns = s.pooled.patterns.iter().map(|p| p.finish()).collect();
                    Reply::Scene(Box::new(s), patterns)
                }
                Err(e) => Reply::Failed(e),
            };
            if replies.send(reply).is_err() {
                return;
            }
            wake();
        }
    }
}

fn pool_region(
    engine: &Engine,
    source: &dyn AttentionSource,
    region: &Region,
    options: PoolOptions,
) -> Result<PooledCells> {
    let geometry = CellGeometry {
        display_w: region.size.0,
        display_h: region.size.1,
        pooled_w: region.size.0,
        pooled_h: region.size.1,
    };
    let options = PoolOptions {
        diagonal: None,
        ..options
    };
    match source.as_qk() {
        Some(qk) => {
            // Same layers and heads, fewer rows and keys: pool the region's own cell.
            let sub = qk.region(region.rows.clone(), region.keys.clone())?;
            engine.pool(&sub, &[(region.layer, region.head)], geometry, options)
        }
        None => {
            let sub = RegionSource::new(source, region);
            let options = PoolOptions {
                diagonal: Some(sub.diagonal()),
                ..options
            };
            engine.pool(&sub, &[(0, 0)], geometry, options)
        }
    }
}

/// The hover readout for `bin`: layer, head, (q, k) and the exact value read from the source.
/// Rows are named as the input names them (a `--queries A..B` slice's from `A`), and row `q`'s
/// token is token `q + diagonal` (a file's queries are its last tokens).
pub fn readout(
    source: &dyn AttentionSource,
    b: &Bin,
    reduce: Reduce,
    tokens: Option<&[String]>,
) -> Result<String> {
    let token = |i: Option<usize>| {
        tokens
            .zip(i)
            .and_then(|(t, i)| t.get(i))
            .map(|t| format!(" '{t}'"))
            .unwrap_or_default()
    };
    let (diagonal, q0) = (source.diagonal(), source.first_query());
    let q_token = |q: usize| token(usize::try_from(q as i64 + diagonal).ok());
    let k_token = |k: usize| token(Some(k));
    let at = match read_bin(source, b, reduce)? {
        None => "no finite value".to_string(),
        Some((v, (q, k))) if b.queries.len() * b.keys.len() == 1 => {
            format!("q {}{} k {k}{} = {v:.6e}", q0 + q, q_token(q), k_token(k))
        }
        Some((v, (q, k))) => format!(
            "q {}..{} k {}..{}: {} {v:.6e}{}",
            q0 + b.queries.start,
            q0 + b.queries.end,
            b.keys.start,
            b.keys.end,
            reduce.name(),
            if reduce == Reduce::Mean {
                String::new()
            } else {
                format!(" at q {}{} k {k}{}", q0 + q, q_token(q), k_token(k))
            }
        ),
    };
    Ok(format!(
        "l = {} h = {}  {at}",
        source.layer_number(b.layer),
        b.head + 1
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::ArraySource;

    fn cell() -> CellPlacement {
        CellPlacement {
            x: 100,
            y: 50,
            width: 256,
            height: 256,
            layer: 2,
            head: 3,
        }
    }

    #[test]
    fn no_detail_while_the_cell_is_shown_at_or_below_its_pooled_size() {
        let g = CellGeometry::new(4096, 4096, Some(256)).unwrap();
        let fit = ViewTransform::IDENTITY;
        assert_eq!(
            visible_region(0, &cell(), &g, 4096, 4096, &fit, (800, 600)),
            None
        );
    }

    #[test]
    fn zoomed_views_ask_for_the_visible_entries_at_screen_resolution() {
        let g = CellGeometry::new(4096, 4096, Some(256)).unwrap();
        // 8x zoom on the cell's centre in an 800x600 window.
        let view = ViewTransform::IDENTITY.zoom_about_within((228.0, 178.0), 8.0, 1e6);
        let view = ViewTransform {
            offset: (400.0 - 228.0 * 8.0, 300.0 - 178.0 * 8.0),
            ..view
        };
        let r = visible_region(7, &cell(), &g, 4096, 4096, &view, (800, 600)).unwrap();
        // 100 x 75 figure pixels visible = 1600 x 1200 entries around the centre
        assert_eq!((r.cell, r.layer, r.head), (7, 2, 3));
        assert_eq!((r.keys.clone(), r.rows.clone()), (1248..2848, 1448..2648));
        assert_eq!(r.size, (800, 600));
        // Zoomed until an entry covers many pixels: native entries, not screen pixels.
        let deep = ViewTransform {
            scale: 4096.0,
            offset: (400.0 - 228.0 * 4096.0, 300.0 - 178.0 * 4096.0),
        };
        let r = visible_region(0, &cell(), &g, 4096, 4096, &deep, (800, 600)).unwrap();
        assert_eq!(r.size, (r.keys.len() as u32, r.rows.len() as u32));
        assert!(r.keys.len() <= 14 && r.rows.len() <= 12, "{r:?}");
    }

    #[test]
    fn region_sources_read_the_rectangle_and_keep_the_diagonal() {
        let a = ndarray::Array4::from_shape_fn((2, 2, 6, 9), |(l, h, q, k)| {
            (l * 1000 + h * 100 + q * 10 + k) as f32
        });
        let src = ArraySource::from_f32("a", &a);
        let region = Region {
            cell: 3,
            layer: 1,
            head: 1,
            rows: 2..5,
            keys: 4..7,
            size: (3, 3),
            figure_rect: (0.0, 0.0, 1.0, 1.0),
        };
        let sub = RegionSource::new(&src, &region);
        let mut bytes = vec![0u8; 2 * 3 * 4];
        sub.read_rows(0, 0, 1, &mut bytes).unwrap();
        let v: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
        assert_eq!(v, vec![1134.0, 1135.0, 1136.0, 1144.0, 1145.0, 1146.0]);
        // (q, k) = (2 + r, 4 + c) is above the diagonal when 4 + c > 2 + r + 3.
        assert_eq!(sub.diagonal(), 3 + 2 - 4);
    }

    #[test]
    fn the_readout_names_a_row_by_its_own_token() {
        // 6 rows, the last of 9 tokens: row 1 is token 4
        let a = ndarray::Array4::from_shape_fn((1, 1, 6, 9), |(_, _, q, k)| (q * 10 + k) as f32);
        let src = ArraySource::from_f32("a", &a);
        let tokens: Vec<String> = (0..9).map(|i| format!("t{i}")).collect();
        let bin = Bin {
            cell: 0,
            layer: 0,
            head: 0,
            queries: 1..2,
            keys: 2..3,
        };
        let text = readout(&src, &bin, Reduce::Max, Some(&tokens)).unwrap();
        assert_eq!(text, "l = 1 h = 1  q 1 't4' k 2 't2' = 1.200000e1");
    }
}
