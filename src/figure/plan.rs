//! The plan of a figure, shared by the GPU engine and the CPU renderer: what to draw and how
//! ([`RenderOptions`]), which heads go where at what size ([`Plan`]), and what comes out
//! ([`Figure`], [`Tile`]).

use crate::color::colormap::Colormap;
use crate::color::norm::Norm;
use crate::color::scale::{first_included_column, ColorScale};
use crate::error::{Error, Result};
use crate::figure::axes::CellAxes;
use crate::figure::colorbar::ColorbarSpec;
use crate::figure::layout::{CellPad, CellPlacement, Layout, Metrics, Numbered, Theme};
use crate::figure::rank::{Ranking, SortKey};
use crate::figure::select::{parse_numbered, parse_selection};
use crate::figure::summary::Summary;
use crate::pool::accum::{HeadStats, Reduce};
use crate::pool::geometry::CellGeometry;
use crate::pool::pattern::{HeadPattern, PatternOptions};
use crate::pool::{Causal, PoolOptions};
use crate::source::AttentionSource;

/// What to draw and how. Defaults match the CLI's.
#[derive(Clone, Debug)]
pub struct RenderOptions {
    /// 1-based selection such as `1,8` or `1-4`; `None` for all.
    pub layers: Option<String>,
    pub heads: Option<String>,
    pub norm: Norm,
    pub colormap: Colormap,
    pub reduce: Reduce,
    /// Cell side in pixels; `None` for 256, or a shorter head magnified by an integer factor
    /// up to it ([`crate::pool::geometry::default_side`]).
    pub cell: Option<u32>,
    /// Whether entries above the diagonal are masked. `Auto` (the CLI's default) masks them
    /// when every selected head is exactly zero there.
    pub causal: Causal,
    /// Draw a colorbar right of the grid.
    pub colorbar: bool,
    /// Scale curve, clipping, fixed limits and excluded keys.
    pub scale: ColorScale,
    /// A line above the grid.
    pub title: Option<String>,
    /// One token per key: written beside each cell when few, index ticks otherwise.
    pub tokens: Option<Vec<String>>,
    /// The whole figure this many times larger (cells, text, gutters).
    pub scale_factor: f32,
    pub theme: Theme,
    /// Background at alpha 0 (labels keep their colour).
    pub transparent: bool,
    /// Keep each cell's pooled colours in [`Figure::cell_colors`] (for vector export).
    pub cell_colors: bool,
    /// Also compute every cell's pattern statistics in the same pass
    /// ([`Figure::patterns`], `render --stats-json`).
    pub patterns: Option<PatternOptions>,
    /// Position ticks on the outer cells; `None`: on for a figure of one cell, off for grids
    /// (whose cells share the positions, as the seed figure shows them).
    pub axes: Option<bool>,
    /// Draw the heads in the order of this statistic, highest first, each labelled with its
    /// layer and head (the statistics come from the same pass).
    pub sort_by: Option<SortKey>,
    /// With `sort_by`: only the first N heads.
    pub top: Option<usize>,
    /// Draw only the heads with one of these `pattern` labels ([`crate::pool::pattern::PATTERNS`]),
    /// in grid order or `sort_by`'s, each labelled with its layer and head.
    pub pattern: Option<Vec<&'static str>>,
    /// Lay the cells out as `attnviz heads --figure`'s summary (one statistic per cell, each
    /// with its own colorbar): see [`crate::figure::summary`].
    pub summary: Option<Summary>,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            layers: None,
            heads: None,
            norm: Norm::default(),
            colormap: Colormap::default(),
            reduce: Reduce::default(),
            cell: None,
            causal: Causal::default(),
            colorbar: true,
            scale: ColorScale::default(),
            title: None,
            tokens: None,
            scale_factor: 1.0,
            theme: Theme::LIGHT,
            transparent: false,
            cell_colors: false,
            patterns: None,
            sort_by: None,
            top: None,
            pattern: None,
            axes: None,
            summary: None,
        }
    }
}

impl RenderOptions {
    /// How the heads are ranked and which are kept: `sort_by`, `top` and `pattern`.
    pub fn ranking(&self) -> Ranking<'_> {
        Ranking {
            sort_by: self.sort_by,
            top: self.top,
            pattern: self.pattern.as_deref(),
        }
    }

    /// These options with the head statistics `patterns` asked for: what `attnviz heads` plans
    /// with, so that it is checked as `--stats-json` is (never on logits).
    pub fn with_patterns(&self, patterns: PatternOptions) -> RenderOptions {
        RenderOptions {
            patterns: Some(patterns),
            ..self.clone()
        }
    }
}

/// The resolved plan: which heads go where, at what size.
#[derive(Clone, Debug)]
pub struct Plan {
    pub layers: Vec<usize>,
    /// The 1-based number each of the input's layers is shown and selected by
    /// ([`AttentionSource::layer_number`]): a capture of some of a model's layers keeps the
    /// model's numbers.
    pub layer_numbers: Vec<usize>,
    pub heads: Vec<usize>,
    /// (layer, head) of each cell, row-major.
    pub cells: Vec<(usize, usize)>,
    pub geometry: CellGeometry,
    pub layout: Layout,
    pub pool: PoolOptions,
    /// Pattern statistics to accumulate while pooling ([`RenderOptions::patterns`]).
    pub patterns: Option<PatternOptions>,
    pub metrics: Metrics,
    /// Pooled columns left of this one hold keys left out of the statistics.
    pub first_column: u32,
    /// The caption drawn: `--title`, with what a capture changed about the scores.
    pub title: Option<String>,
    /// The colorbar drawn, once the ranges are known.
    pub colorbar: Option<ColorbarSpec>,
    /// The summary figure's cells ([`RenderOptions::summary`]).
    pub summary: Option<Summary>,
}

impl Plan {
    /// The number layer `layer` (an index into the input's layers) is shown by, 1-based.
    pub fn layer_number(&self, layer: usize) -> usize {
        self.layer_numbers.get(layer).copied().unwrap_or(layer + 1)
    }

    /// The index in `cells` of the head the user names `(layer number − 1, head)`, 0-based
    /// (the viewer's `--focus`).
    pub fn focused_cell(&self, (layer, head): (usize, usize)) -> Option<usize> {
        self.cells
            .iter()
            .position(|&(l, h)| self.layer_number(l) == layer + 1 && h == head)
    }

    /// `cells` as they are named to the user: each layer by its number − 1, for the writers
    /// that print 0-based cells 1-based (statistics JSON and CSV, the heads table, the summary
    /// figure's labels).
    pub fn named_cells(&self, cells: &[(usize, usize)]) -> Vec<(usize, usize)> {
        cells
            .iter()
            .map(|&(l, h)| (self.layer_number(l) - 1, h))
            .collect()
    }

    /// With `--sort-by` or `--pattern`, lays the cells out in the order of their statistics
    /// (`patterns`, one per cell, from the pass that pooled them), or only those of the labels
    /// asked for, as many to a row as the grid had heads; without, leaves the grid as it is.
    /// A `--pattern` no head has is refused. Call before [`Plan::add_colorbar`].
    pub fn arrange(&mut self, patterns: &[HeadPattern], options: &RenderOptions) -> Result<()> {
        let ranking = options.ranking();
        if !ranking.ranks() {
            return Ok(());
        }
        crate::figure::rank::check_matched(patterns, ranking)?;
        let order = crate::figure::rank::order(patterns, ranking);
        let theme = self.layout.theme;
        self.layout = Layout::ranked(
            Numbered {
                items: &self.cells,
                layer_numbers: &self.layer_numbers,
            },
            &order,
            self.heads.len(),
            &self.geometry,
            theme,
            &self.metrics,
            self.title.as_deref(),
        );
        Ok(())
    }

    /// `ranges` as resolved from the data, with the ones the plan fixes whatever the data: the
    /// summary's `pattern` panel. The engine's and the CPU twin's range resolution end here.
    pub fn fixed_ranges(&self, mut ranges: Vec<[f32; 2]>) -> Vec<[f32; 2]> {
        if let Some(summary) = &self.summary {
            summary.fix_ranges(&mut ranges);
        }
        ranges
    }

    /// Adds the colorbar for `norm` once the ranges are known (they come from the data).
    pub fn add_colorbar(&mut self, norm: Norm, ranges: &[[f32; 2]], scale: &ColorScale) {
        if let Some(summary) = &self.summary {
            // a bar per cell, each in its statistic's units: the cells move apart to fit them
            let bars = crate::figure::summary::cell_bars(ranges, scale);
            let theme = self.layout.theme;
            self.layout = Layout::summary(
                summary,
                &self.geometry,
                theme,
                &self.metrics,
                self.title.as_deref(),
                Some(&bars),
            );
            return;
        }
        let spec = ColorbarSpec::new(norm, ranges, scale);
        self.layout.add_colorbar(&spec, &self.metrics);
        self.colorbar = Some(spec);
    }

    pub fn new(source: &dyn AttentionSource, options: &RenderOptions) -> Result<Plan> {
        let shape = source.shape();
        options.scale.validate()?;
        let f = options.scale_factor;
        if !(f.is_finite() && f > 0.0) {
            return Err(Error::BadOption(format!(
                "--scale-factor {f} must be a positive number"
            )));
        }
        let layer_numbers = source.layer_numbers();
        let layers = parse_numbered(options.layers.as_deref(), &layer_numbers, "layer")?;
        let heads = parse_selection(options.heads.as_deref(), shape.heads, "head")?;
        let cells = layers
            .iter()
            .flat_map(|&l| heads.iter().map(move |&h| (l, h)))
            .collect();
        crate::figure::rank::check(options.sort_by, options.top)?;
        if options.pattern.is_some() && source.as_diff().is_some() {
            // Sorting a difference by a statistic ranks the change in it (sink mass gained);
            // a label describes one distribution, and A − B is none.
            return Err(Error::BadOption(
                "--pattern keeps the heads of some pattern labels, which a difference A − B \
                 (not a distribution) has none of: label A's or B's heads with attnviz heads, \
                 or rank the differences with --sort-by"
                    .into(),
            ));
        }
        let qk = source.as_qk();
        if qk.is_some_and(|q| q.values() == crate::source::qk::Values::Logits) {
            if options.norm == Norm::Row {
                return Err(Error::BadOption(
                    "--norm row divides each row by its largest probability; with --values logits use head, layer, global or none".into(),
                ));
            }
            if options.patterns.is_some() || options.ranking().ranks() {
                return Err(Error::BadOption(
                    "the head statistics (attnviz heads, --stats-json, --sort-by, --pattern) are defined on probabilities, not logits: leave --values at probs".into(),
                ));
            }
        }
        // A capture's own tokens label its axes unless --tokens gave others (a --queries
        // slice's rows by their own tokens); they are dropped when they do not fit (keys
        // restricted to a part of K: the viewer's detail).
        let diagonal = source.diagonal();
        let split = |t| crate::figure::axes::split_tokens(t, shape.queries, shape.keys, diagonal);
        let captured = qk
            .and_then(|q| q.meta())
            .and_then(|m| m.tokens.as_deref())
            .filter(|t| {
                options.tokens.is_none()
                    && qk.is_some_and(|q| q.out_keys().len() == q.all_keys())
                    && split(t).is_ok()
            });
        // `--axes off` leaves every axis label out, a capture's tokens too; tokens given
        // beside it would label nothing, and are refused rather than ignored.
        if options.axes == Some(false) && options.tokens.is_some() {
            return Err(Error::BadOption(
                "--tokens labels the axes, which --axes off leaves out: give one or the other"
                    .into(),
            ));
        }
        let tokens = match options.axes {
            Some(false) => None,
            _ => options
                .tokens
                .as_deref()
                .or(captured)
                .map(split)
                .transpose()?,
        };
        // What a capture changed about the scores is said in the caption. An empty title
        // (`--title ""`, a script's unset variable) is none: no blank line above the grid.
        let given = options.title.as_deref().filter(|t| !t.trim().is_empty());
        let title = match (given, qk.and_then(|q| q.applied())) {
            (Some(t), Some(note)) => Some(format!("{t} ({note})")),
            (None, Some(note)) => Some(note),
            (t, None) => t.map(str::to_string),
        };
        let cell = match (options.cell, tokens) {
            (None, Some(_)) => Some(crate::figure::axes::cell_side_for_tokens(
                shape.queries.max(shape.keys),
                crate::pool::geometry::default_side(shape.queries.max(shape.keys)),
            )),
            (c, _) => c,
        };
        let base = CellGeometry::new(shape.queries, shape.keys, cell)?;
        let geometry = scaled_geometry(&base, shape.queries, shape.keys, f)?;
        let metrics = Metrics::for_cell(&base).scaled(f);
        let exclude = options.scale.exclude_keys;
        if exclude > 0 && matches!(options.norm, Norm::Row | Norm::None) {
            // (those scales are [0, 1] whatever the data: refused, not ignored)
            return Err(Error::BadOption(format!(
                "--exclude-keys leaves keys out of the range taken from the data, which --norm {} \
                 does not take: use head, layer or global",
                options.norm.name()
            )));
        }
        let first_column = first_included_column(shape.keys, geometry.pooled_w, exclude);
        if exclude > 0 && first_column >= geometry.pooled_w {
            return Err(Error::BadOption(format!(
                "--exclude-keys 0..{exclude} leaves no key in the statistics ({} keys)",
                shape.keys
            )));
        }
        let theme = if options.transparent {
            options.theme.transparent()
        } else {
            options.theme
        };
        // Tokens label every cell, as they always have; position axes go on the outer cells,
        // by default only when there is one cell (the seed-style grid stays bare).
        let positions = options.axes.unwrap_or(layers.len() * heads.len() == 1);
        let axes = match tokens {
            Some((q, k)) => Some(CellAxes::new(
                q,
                k,
                source.first_query(),
                &geometry,
                &metrics,
            )),
            None if positions => Some(
                CellAxes::positions(
                    shape.queries,
                    shape.keys,
                    source.first_query(),
                    &geometry,
                    &metrics,
                )
                .shared(),
            ),
            None => None,
        };
        let mut layout = Layout::grid_with(
            Numbered {
                items: &layers,
                layer_numbers: &layer_numbers,
            },
            &heads,
            &geometry,
            theme,
            &metrics,
            axes.as_ref().map_or(CellPad::default(), |a| a.pad),
            title.as_deref(),
        );
        if let Some(a) = &axes {
            layout.add_cell_axes(a);
        }
        if let Some(summary) = &options.summary {
            layout = Layout::summary(summary, &geometry, theme, &metrics, title.as_deref(), None);
        }
        Ok(Plan {
            layers,
            layer_numbers,
            heads,
            cells,
            geometry,
            layout,
            pool: PoolOptions {
                row_norm: options.norm == Norm::Row,
                causal: options.causal,
                diagonal: Some(source.diagonal()),
            },
            // Ranking needs the statistics: they come from the pass that pools.
            patterns: match options.ranking().ranks() {
                true => Some(options.patterns.unwrap_or_default()),
                false => options.patterns,
            },
            metrics,
            first_column,
            title,
            colorbar: None,
            summary: options.summary.clone(),
        })
    }
}

/// A rendered figure.
pub struct Figure {
    pub width: u32,
    pub height: u32,
    /// RGBA8, row-major, top row first; empty where the rows went elsewhere as they were read
    /// back (`Engine::render_into`: a PNG encoded from them).
    pub rgba: Vec<u8>,
    pub plan: Plan,
    /// Per cell, in cell order.
    pub stats: Vec<HeadStats>,
    /// Per cell: the (lo, hi) mapped onto the colormap.
    pub ranges: Vec<[f32; 2]>,
    /// Entries above the diagonal were masked (asked for, or detected).
    pub causal: bool,
    pub scale: ColorScale,
    /// Each cell's pooled colours (packed RGBA, 0 = background), when asked for.
    pub cell_colors: Option<Vec<Vec<u32>>>,
    /// Per cell, when [`RenderOptions::patterns`] asked for them: pattern statistics.
    pub patterns: Vec<HeadPattern>,
}

impl Figure {
    /// Pool options that reproduce this figure's masking without detecting it again.
    pub(crate) fn resolved_pool(&self) -> PoolOptions {
        PoolOptions {
            causal: if self.causal { Causal::On } else { Causal::Off },
            ..self.plan.pool
        }
    }
}

/// A native-resolution image of one head: width = K, height = Q, query 0 on top.
pub struct Tile {
    pub layer: usize,
    pub head: usize,
    pub width: u32,
    pub height: u32,
    pub rgba: Vec<u8>,
}

impl Tile {
    /// `l{l}_h{h}.png`, the file `--tiles` writes it to (the layer by its number in `plan`),
    /// from the command line and from Python alike.
    pub fn file_name(&self, plan: &Plan) -> String {
        format!("l{}_h{}.png", plan.layer_number(self.layer), self.head + 1)
    }
}

/// `base` with its cells `f` times larger (the figure's `--scale-factor`), within the largest
/// cell the pooling stage draws.
fn scaled_geometry(
    base: &CellGeometry,
    queries: usize,
    keys: usize,
    f: f32,
) -> Result<CellGeometry> {
    if f == 1.0 {
        return Ok(*base);
    }
    let side = (base.display_w.max(base.display_h) as f32 * f)
        .round()
        .max(1.0);
    if side > crate::pool::geometry::MAX_CELL as f32 {
        return Err(Error::BadOption(format!(
            "--scale-factor {f} makes cells of {side} px, past the maximum of {} (the figure may be any size)",
            crate::pool::geometry::MAX_CELL
        )));
    }
    CellGeometry::new(queries, keys, Some(side as u32))
}

pub(crate) fn native_geometry(queries: usize, keys: usize) -> Result<CellGeometry> {
    if queries > u16::MAX as usize || keys > u16::MAX as usize {
        return Err(Error::BadOption(format!(
            "--tiles writes heads at native resolution; {queries}x{keys} is too large for one image"
        )));
    }
    Ok(CellGeometry {
        display_w: keys as u32,
        display_h: queries as u32,
        pooled_w: keys as u32,
        pooled_h: queries as u32,
    })
}

/// Native-resolution tiles of every cell `figure` draws (with `--top`, the heads it kept, not
/// every head it ranked: a model's 1024 heads ranked for ten), `batch(native)` cells at a time
/// (at least one): `colour(cells, ranges, native)` pools a batch of (layer, head) cells at the
/// native geometry and colours each with its range, returning each cell's packed RGBA. The
/// engine and the CPU renderer differ only in that closure and the batch size.
pub(crate) fn native_tiles(
    source: &dyn AttentionSource,
    figure: &Figure,
    batch: impl FnOnce(&CellGeometry) -> usize,
    mut colour: impl FnMut(&[(usize, usize)], &[[f32; 2]], CellGeometry) -> Result<Vec<Vec<u32>>>,
) -> Result<Vec<Tile>> {
    let s = source.shape();
    let native = native_geometry(s.queries, s.keys)?;
    let batch = batch(&native).max(1);
    // (a cell ranked out by --top has no rectangle in the layout)
    let layout = &figure.plan.layout.cells;
    let drawn: Vec<usize> = (0..figure.plan.cells.len())
        .filter(|&i| layout.get(i).is_none_or(CellPlacement::is_drawn))
        .collect();
    let mut out = Vec::with_capacity(drawn.len());
    for chunk in drawn.chunks(batch) {
        let cells: Vec<(usize, usize)> = chunk.iter().map(|&i| figure.plan.cells[i]).collect();
        let ranges: Vec<[f32; 2]> = chunk.iter().map(|&i| figure.ranges[i]).collect();
        for (&(layer, head), words) in cells.iter().zip(colour(&cells, &ranges, native)?) {
            out.push(tile_from_words(layer, head, &native, &words));
        }
    }
    Ok(out)
}

pub(crate) fn tile_from_words(layer: usize, head: usize, g: &CellGeometry, words: &[u32]) -> Tile {
    Tile {
        layer,
        head,
        width: g.pooled_w,
        height: g.pooled_h,
        rgba: words.iter().flat_map(|w| w.to_le_bytes()).collect(),
    }
}
