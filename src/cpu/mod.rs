//! The CPU reference: every GPU stage again in plain Rust with the same arithmetic in the same
//! order. Tests use it as the oracle; `--backend cpu` uses it when there is no adapter.

pub mod pattern;
mod render;

pub use render::{cpu_ranges, render_cpu, tiles_cpu};

use ndarray::{ArrayView2, Axis};

use crate::color::colormap::{lut_index, pack_rgba, Colormap, BAD_COLOR};
use crate::color::scale::{hist_params, ColorScale, BINS};
use crate::error::Result;
use crate::figure::quads::{FigureQuads, KIND_CELL, KIND_COLORBAR, KIND_LABEL};
use crate::pool::accum::{Accum, HeadStats, Reduce, BAD_BIT};
use crate::pool::geometry::{bin_edges, bin_of, CellGeometry};
use crate::pool::{has_upper_triangle, Causal, PoolOptions};
use crate::source::qk::HiddenKeys;
use crate::source::AttentionSource;

/// Rows read per block: bounds memory like the GPU path's chunks do.
const BLOCK_BYTES: usize = 8 << 20;

/// Pooling state of one head at one cell geometry; the CPU twin of `shaders/pool.wgsl`.
pub struct HeadPooler {
    geometry: CellGeometry,
    queries: usize,
    keys: usize,
    row_edges: Vec<u32>,
    col_edges: Vec<u32>,
    options: PoolOptions,
    pub accum: Vec<Accum>,
    /// Per pixel (`Causal::Auto` only): exact zeros above the diagonal set aside.
    pub zeros: Vec<u32>,
    /// A value other than zero was seen above the diagonal (`Causal::Auto`).
    pub saw_upper: bool,
    /// Entries above the diagonal are left out (asked for, or detected by [`pool_cells`]).
    pub causal: bool,
    /// Keys outside a row's sliding window or before its attention chunk are left out too
    /// (logits from Q and K, see `QkSource::mask_hidden`), `key_position` the position of the
    /// row's first key (a chunk's edges are positions, not offsets from the diagonal).
    pub hidden: HiddenKeys,
    pub key_position: i64,
    /// Instead of `hidden`, the keys each position's row sees (`QkSource::mask_ranges`: logits
    /// of a layer with bidirectional spans), indexed by position.
    pub ranges: Option<Vec<[u32; 2]>>,
}

impl HeadPooler {
    pub fn new(queries: usize, keys: usize, geometry: CellGeometry, options: PoolOptions) -> Self {
        HeadPooler {
            geometry,
            queries,
            keys,
            row_edges: bin_edges(queries, geometry.pooled_h),
            col_edges: bin_edges(keys, geometry.pooled_w),
            options,
            accum: vec![Accum::EMPTY; geometry.pooled_pixels()],
            zeros: if options.causal == Causal::Auto {
                vec![0; geometry.pooled_pixels()]
            } else {
                Vec::new()
            },
            saw_upper: false,
            causal: options.causal == Causal::On,
            hidden: HiddenKeys::default(),
            key_position: 0,
            ranges: None,
        }
    }

    /// Folds rows `row_start..row_start + rows.nrows()` into the accumulators. Rows may come in
    /// blocks of any size: every pixel adds its per-row sums in row order, as the shader does.
    pub fn push_rows(&mut self, row_start: usize, rows: ArrayView2<'_, f32>) {
        let w = self.geometry.pooled_w as usize;
        for (r, row) in rows.axis_iter(Axis(0)).enumerate() {
            let q = row_start + r;
            let row = row.as_slice().expect("rows are contiguous");
            // Keys right of the diagonal (bottom-right aligned when Q < K).
            let diagonal = q as i64
                + self
                    .options
                    .diagonal
                    .unwrap_or(self.keys as i64 - self.queries as i64);
            let above = |k: usize| k as i64 > diagonal;
            let causal = self.options.causal;
            // (i64::MIN where nothing before the row is hidden, i64::MAX nothing after it)
            let at = diagonal + self.key_position;
            let (low, high) = match &self.ranges {
                // (a row before the first key's position sees none, as causal has it)
                Some(table) => {
                    let [lo, hi] = usize::try_from(at)
                        .ok()
                        .and_then(|a| table.get(a.min(table.len().saturating_sub(1))))
                        .copied()
                        .unwrap_or([0, 0]);
                    (lo as i64 - self.key_position, hi as i64 - self.key_position)
                }
                None => (
                    self.hidden.first(at).saturating_sub(self.key_position),
                    self.hidden.end(at).saturating_sub(self.key_position),
                ),
            };
            let masked = |k: usize| {
                (causal == Causal::On && above(k)) || (k as i64) < low || k as i64 >= high
            };
            let auto = causal == Causal::Auto;
            let mut saw_upper = false;
            let scale = if self.options.row_norm {
                let mut m = -f32::MAX;
                for (k, &v) in row.iter().enumerate() {
                    if v.is_finite() && !masked(k) {
                        m = m.max(v);
                    }
                }
                Some(m)
            } else {
                None
            };
            let y = bin_of(&self.row_edges, q as u32) as usize;
            for x in 0..w {
                let a = &mut self.accum[y * w + x];
                let (mut count, mut bad) = (a.count_bad & !BAD_BIT, a.count_bad & BAD_BIT);
                if count == 0 {
                    // as the shader does with its zeroed buffers
                    a.max = -f32::MAX;
                    a.min = f32::MAX;
                }
                let mut row_sum = 0.0f32;
                let (c0, c1) = (self.col_edges[x] as usize, self.col_edges[x + 1] as usize);
                for (k, &raw) in row.iter().enumerate().take(c1).skip(c0) {
                    // Masked entries are skipped before anything else, even non-finite ones
                    // (a -inf mask fill is not a fault).
                    if masked(k) {
                        continue;
                    }
                    let mut v = raw;
                    if auto && above(k) {
                        if v == 0.0 {
                            self.zeros[y * w + x] += 1;
                            continue;
                        }
                        saw_upper = true;
                    }
                    if !v.is_finite() {
                        bad = BAD_BIT;
                        continue;
                    }
                    if let Some(m) = scale {
                        v = if m > 0.0 { v / m } else { 0.0 };
                    }
                    a.max = a.max.max(v);
                    a.min = a.min.min(v);
                    row_sum += v;
                    count += 1;
                }
                a.sum += row_sum;
                a.count_bad = count | bad;
            }
            self.saw_upper |= saw_upper;
        }
    }
}

/// Statistics of one pooled head; the CPU twin of `shaders/stats.wgsl` (the sum may differ in
/// the last bits: the GPU adds in a tree).
pub fn head_stats(accum: &[Accum]) -> HeadStats {
    let mut s = HeadStats::EMPTY;
    for a in accum {
        if a.count() > 0 {
            s.min = s.min.min(a.min);
            s.max = s.max.max(a.max);
            s.sum += a.sum;
            s.count += a.count() as u64;
        }
        s.bad_pixels += a.is_bad() as u32;
        s.empty_pixels += (a.count() == 0 && !a.is_bad()) as u32;
    }
    s
}

/// Pools `cells` of `source` on the CPU, one thread per core, reading in bounded blocks.
pub fn pool_cells(
    source: &dyn AttentionSource,
    cells: &[(usize, usize)],
    geometry: CellGeometry,
    options: PoolOptions,
) -> Result<Vec<HeadPooler>> {
    let options = options.settled_for(source, cells)?;
    let shape = source.shape();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(cells.len().max(1));
    let mut results: Vec<Option<Result<HeadPooler>>> = (0..cells.len()).map(|_| None).collect();
    std::thread::scope(|scope| {
        for (t, slots) in results
            .chunks_mut(cells.len().div_ceil(threads).max(1))
            .enumerate()
        {
            let first = t * cells.len().div_ceil(threads).max(1);
            scope.spawn(move || {
                for (i, slot) in slots.iter_mut().enumerate() {
                    let (layer, head) = cells[first + i];
                    *slot = Some(pool_head(
                        source,
                        layer,
                        head,
                        geometry,
                        options,
                        shape.queries,
                        shape.keys,
                    ));
                }
            });
        }
    });
    let mut heads: Vec<HeadPooler> = results
        .into_iter()
        .map(|r| r.expect("every cell pooled"))
        .collect::<Result<_>>()?;
    resolve_causal(&mut heads, options, shape.queries, shape.keys);
    Ok(heads)
}

/// After `Causal::Auto` pooling: causal when no head had a non-zero value above the diagonal;
/// otherwise the zeros set aside are folded back in. The CPU twin of `Ingest::finish`.
pub fn resolve_causal(heads: &mut [HeadPooler], options: PoolOptions, queries: usize, keys: usize) {
    if options.causal != Causal::Auto {
        return;
    }
    let detected = !heads.iter().any(|h| h.saw_upper) && has_upper_triangle(queries, keys);
    for h in heads.iter_mut() {
        h.causal = detected;
        if !detected {
            for (a, z) in h.accum.iter_mut().zip(h.zeros.iter_mut()) {
                a.fold_zeros(std::mem::take(z));
            }
        }
    }
}

fn pool_head(
    source: &dyn AttentionSource,
    layer: usize,
    head: usize,
    geometry: CellGeometry,
    options: PoolOptions,
    queries: usize,
    keys: usize,
) -> Result<HeadPooler> {
    let dtype = source.dtype();
    let row_bytes = keys * dtype.size();
    let block_rows = (BLOCK_BYTES / row_bytes).clamp(1, queries);
    let mut bytes = vec![0u8; block_rows * row_bytes];
    let mut values = vec![0f32; block_rows * keys];
    let mut pooler = HeadPooler::new(queries, keys, geometry, options);
    if let Some(qk) = source.as_qk() {
        pooler.hidden = qk.mask_hidden(layer);
        pooler.ranges = qk.mask_ranges(layer);
        pooler.key_position = qk.out_keys().start as i64;
    }
    let mut row = 0;
    while row < queries {
        let rows = block_rows.min(queries - row);
        source.read_rows(layer, head, row, &mut bytes[..rows * row_bytes])?;
        dtype.decode(&bytes[..rows * row_bytes], &mut values[..rows * keys]);
        let view =
            ArrayView2::from_shape((rows, keys), &values[..rows * keys]).expect("block shape");
        pooler.push_rows(row, view);
        row += rows;
    }
    Ok(pooler)
}

/// Packed colours of one pooled head on a linear scale; the CPU twin of
/// `shaders/colorize.wgsl`.
pub fn colorize(accum: &[Accum], range: [f32; 2], reduce: Reduce, colormap: Colormap) -> Vec<u32> {
    colorize_scaled(accum, range, &ColorScale::default(), reduce, colormap)
}

/// Packed colours of one pooled head with `range` (data units) mapped through `scale`.
pub fn colorize_scaled(
    accum: &[Accum],
    range: [f32; 2],
    scale: &ColorScale,
    reduce: Reduce,
    colormap: Colormap,
) -> Vec<u32> {
    let lut = colormap.packed();
    let r = scale.shader_range(range);
    accum
        .iter()
        .map(|a| {
            if a.is_bad() {
                pack_rgba(BAD_COLOR)
            } else {
                a.value(reduce)
                    .map_or(0, |v| lut[lut_index(scale.position(v, r))])
            }
        })
        .collect()
}

/// Statistics of one pooled head over the columns from `first_column` on (min, max, count);
/// the CPU twin of `cell_range` in `shaders/limits.wgsl`.
pub fn cell_range(accum: &[Accum], pooled_w: u32, first_column: u32) -> HeadStats {
    let mut s = HeadStats::EMPTY;
    for (i, a) in accum.iter().enumerate() {
        if a.count() > 0 && (i as u32 % pooled_w) >= first_column {
            s.min = s.min.min(a.min);
            s.max = s.max.max(a.max);
            s.count += a.count() as u64;
        }
    }
    s
}

/// Counts of one head's reduced pooled values in [`BINS`] bins over `range`; the CPU twin of
/// `histogram` in `shaders/limits.wgsl`.
pub fn histogram(
    accum: &[Accum],
    pooled_w: u32,
    first_column: u32,
    reduce: Reduce,
    range: [f32; 2],
) -> Vec<u32> {
    let params = hist_params(range);
    let mut counts = vec![0u32; BINS];
    for (i, a) in accum.iter().enumerate() {
        if a.is_bad() || (i as u32 % pooled_w) < first_column {
            continue;
        }
        if let Some(v) = a.value(reduce) {
            counts[crate::color::scale::histogram_bin(v, params)] += 1;
        }
    }
    counts
}

/// Draws the figure's quads: the CPU twin of `shaders/compose.wgsl`. `colors[g]` is group g's
/// colour buffer. Returns RGBA8 rows, top to bottom.
pub fn draw_quads(figure: &FigureQuads, colors: &[Vec<u32>], colormap: Colormap) -> Vec<u8> {
    let (w, h) = (figure.width as usize, figure.height as usize);
    let mut out = Vec::with_capacity(w * h * 4);
    for _ in 0..w * h {
        out.extend_from_slice(&figure.background);
    }
    let lut = colormap.packed();
    let unorm = |c: u32| u32::to_le_bytes(c).map(|b| b as f32 / 255.0);
    let bg = figure.background.map(|b| b as f32 / 255.0);
    for (group, range) in figure.draws.iter().enumerate() {
        for q in &figure.quads[range.start as usize..range.end as usize] {
            let [x0, y0, qw, qh] = q.rect;
            for py in 0..qh {
                let ty = y0 + py;
                if ty < 0 || ty >= h as i32 {
                    continue;
                }
                for px in 0..qw {
                    let tx = x0 + px;
                    if tx < 0 || tx >= w as i32 {
                        continue;
                    }
                    let rgba: [u8; 4] = match q.kind {
                        KIND_CELL => {
                            let (sw, sh) = (q.src_size & 0xffff, q.src_size >> 16);
                            let (sx, sy) = (px as u32 * sw / qw as u32, py as u32 * sh / qh as u32);
                            let c = colors[group][(q.src + sy * sw + sx) as usize];
                            if c == 0 {
                                figure.background
                            } else {
                                c.to_le_bytes()
                            }
                        }
                        KIND_LABEL => {
                            let (ax, ay) = (q.src & 0xffff, q.src >> 16);
                            let i =
                                ((ay + py as u32) * figure.atlas.width + ax + px as u32) as usize;
                            let a = figure.atlas.coverage[i] as f32 / 255.0;
                            let fg = unorm(q.color);
                            let mut o = [0u8; 4];
                            for c in 0..4 {
                                o[c] = ((bg[c] * (1.0 - a) + fg[c] * a) * 255.0).round() as u8;
                            }
                            o
                        }
                        KIND_COLORBAR => {
                            let n = q.src_size;
                            let i = q.src + n - 1 - (py as u32 * n / qh as u32).min(n - 1);
                            lut[i as usize].to_le_bytes()
                        }
                        _ => q.color.to_le_bytes(),
                    };
                    let o = (ty as usize * w + tx as usize) * 4;
                    out[o..o + 4].copy_from_slice(&rgba);
                }
            }
        }
    }
    out
}
