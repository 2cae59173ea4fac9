//! The engine: the only place that combines the stages. It pools a source ([`crate::pool`]),
//! resolves colour ranges and colours the cells ([`crate::color`]), lays out the figure
//! ([`crate::figure`]) and draws it ([`crate::compose`]) into any target: an offscreen texture
//! for export, or a window surface for the viewer, with the viewer's overlays (`draw`).

pub mod accumulator;
mod draw;
pub mod qk_rows;

pub use draw::Overlay;

use crate::color::colorize::{ColorizePipeline, ColorizedCells};
use crate::color::colormap::Colormap;
use crate::color::limits::LimitsPipeline;
use crate::color::norm::Norm;
use crate::color::scale::{resolve_ranges, ColorScale};
use crate::compose::Compositor;
use crate::error::{Error, Result};
use crate::figure::plan::{native_tiles, Figure, Plan, RenderOptions, Tile};
use crate::figure::quads::FigureQuads;
use crate::files::RowSink;
use crate::gpu::timing::PassTimes;
use crate::gpu::Gpu;
use crate::pool::accum::{AccumLayout, HeadStats, Reduce};
use crate::pool::geometry::CellGeometry;
use crate::pool::pattern::{CellPatterns, HeadPattern, PatternOptions};
use crate::pool::{pool_cells, IngestShape, PoolOptions, PoolPipelines, PoolRun, PooledCells};
use crate::source::AttentionSource;

/// A figure resident on the GPU: pooled cells, their colours and the compositor's quads.
pub struct Scene {
    pub plan: Plan,
    /// The plan before any ordering by statistics (no colorbar yet): what [`Engine::reorder`]
    /// lays out again.
    grid: Plan,
    pub pooled: PooledCells,
    /// Per cell: the (lo, hi) currently mapped onto the colormap.
    pub ranges: Vec<[f32; 2]>,
    pub norm: Norm,
    pub reduce: Reduce,
    pub colormap: Colormap,
    pub scale: ColorScale,
    pub(crate) colors: ColorizedCells,
    pub(crate) quads: FigureQuads,
    pub(crate) compositor: Compositor,
}

impl Scene {
    pub fn width(&self) -> u32 {
        self.quads.width
    }

    pub fn height(&self) -> u32 {
        self.quads.height
    }
}

/// How a scene is coloured.
struct Look {
    norm: Norm,
    reduce: Reduce,
    colormap: Colormap,
    scale: ColorScale,
}

/// A scene's figure as [`Engine::lay_out`] makes it.
struct Laid {
    plan: Plan,
    ranges: Vec<[f32; 2]>,
    quads: FigureQuads,
    compositor: Compositor,
}

/// GPU pipelines, compiled once and reused for every figure.
pub struct Engine {
    pub gpu: Gpu,
    /// Upload chunk size in bytes (tests shrink it to exercise blocks that split bins).
    pub chunk_bytes: u64,
    /// Bytes the one-pass Q/K path's states take per chunk of rows: its parallelism on a GPU
    /// ([`Gpu::qk_state_bytes`], which it starts from; tests shrink it to force row chunks).
    pub qk_state_bytes: u64,
    /// Called with (bytes consumed, bytes in total) as input is pooled.
    pub progress: Option<Box<dyn Fn(u64, u64) + Send + Sync>>,
    /// Largest texture side export draws at once (tests shrink it to force tiles).
    pub tile_limit: u32,
    /// Export copies the cells that need no shading into its target (`compose::copy`) rather
    /// than drawing them; the same bytes either way (tests turn it off to compare).
    pub copy_cells: bool,
    /// The pooling kernels (named apart from [`Engine::pool`], which runs them, and from
    /// [`Plan::pool`], the options they run with).
    pool_pipes: PoolPipelines,
    qk: crate::pool::qk::QkPipelines,
    colorize: ColorizePipeline,
    /// One per target format: the export texture's, and a window surface's once drawn.
    compose: draw::ComposePipelines,
    limits: LimitsPipeline,
}

/// What a new scene's cells hold.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Contents {
    /// The source, pooled: the figure itself.
    Read,
    /// Nothing read yet (background): the layout at once, whatever the input's size.
    Empty,
}

impl Engine {
    pub fn new(gpu: Gpu) -> Engine {
        let _span = tracing::info_span!("engine.new").entered();
        let device = &gpu.device;
        Engine {
            pool_pipes: PoolPipelines::new(device),
            qk: crate::pool::qk::QkPipelines::default(),
            colorize: ColorizePipeline::new(device),
            compose: draw::ComposePipelines::new(device),
            limits: LimitsPipeline::default(),
            tile_limit: 8192,
            copy_cells: true,
            chunk_bytes: crate::pool::CHUNK_TARGET,
            qk_state_bytes: gpu.qk_state_bytes,
            progress: None,
            gpu,
        }
    }

    /// The statistics pass again on resident pooled cells (pooling already ran it once): lets
    /// benchmarks time the reduction without the input.
    pub fn pooled_stats(&self, pooled: &PooledCells) -> Result<Vec<HeadStats>> {
        crate::pool::head_stats(
            &self.gpu,
            &self.pool_pipes,
            &pooled.groups,
            pooled.geometry.pooled_pixels(),
        )
    }

    /// Pools `cells` ((layer, head), 0-based) of `source` to `geometry` on the GPU, in one pass.
    pub fn pool(
        &self,
        source: &dyn AttentionSource,
        cells: &[(usize, usize)],
        geometry: CellGeometry,
        options: PoolOptions,
    ) -> Result<PooledCells> {
        self.pool_with(source, cells, geometry, options, None)
    }

    /// [`Engine::pool`], also accumulating the pattern statistics of every cell in the same
    /// pass when `patterns` is given (`PooledCells::patterns`). Q/K sources with statistics
    /// take the two-pass path: each block of probabilities is pooled, statistics included,
    /// where it was computed, on the device.
    pub fn pool_with(
        &self,
        source: &dyn AttentionSource,
        cells: &[(usize, usize)],
        geometry: CellGeometry,
        options: PoolOptions,
        patterns: Option<PatternOptions>,
    ) -> Result<PooledCells> {
        self.run_pool(
            PoolRun {
                cells,
                geometry,
                options,
                chunk_bytes: self.chunk_bytes,
                state_bytes: self.qk_state_bytes,
                progress: self.progress.as_deref(),
                patterns,
                pooled: true,
            },
            source,
        )
    }

    fn run_pool(&self, run: PoolRun<'_>, source: &dyn AttentionSource) -> Result<PooledCells> {
        let _span = tracing::info_span!("pool").entered();
        // (`argmax` numbers the rows as the input does, below)
        let run = PoolRun {
            options: run.options.placed_at(source),
            ..run
        };
        let mut pooled = match source.as_qk() {
            Some(qk) => crate::pool::qk::pool_qk(&self.gpu, &self.pool_pipes, &self.qk, qk, &run),
            None => {
                // Stored attention streams through host upload slots: capped so that a fresh
                // process has little new memory to fault in (see UPLOAD_CHUNK_TARGET).
                let run = PoolRun {
                    chunk_bytes: run.chunk_bytes.min(crate::pool::UPLOAD_CHUNK_TARGET),
                    ..run
                };
                pool_cells(&self.gpu, &self.pool_pipes, source, &run)
            }
        }?;
        for p in &mut pooled.patterns {
            p.row0 = source.first_query();
        }
        Ok(pooled)
    }

    /// Only the pooling [`Engine::render`] does for `source` and `options`: no colour, layout,
    /// compose or read-back of the figure (benchmarks: the Q/K kernels' share of a render).
    /// Returns once the device is done, as the cells' statistics are read back.
    pub fn pool_figure(
        &self,
        source: &dyn AttentionSource,
        options: &RenderOptions,
    ) -> Result<PooledCells> {
        let plan = Plan::new(source, options)?;
        self.pool_contents(source, &plan, Contents::Read)
    }

    /// Seconds to pool `cells` resident heads of `queries` × `keys` f32 to `cell` pixels on the
    /// device alone (benchmarks: the GPU-side share of a render).
    pub fn resident_pool_seconds(
        &self,
        cells: usize,
        queries: usize,
        keys: usize,
        cell: u32,
    ) -> Result<f64> {
        let geometry = CellGeometry::new(queries, keys, Some(cell))?;
        crate::pool::resident_pool_seconds(
            &self.gpu,
            &self.pool_pipes,
            cells,
            queries,
            keys,
            geometry,
        )
    }

    /// A reader of `qk`'s probabilities that keeps its buffers from one block to the next.
    pub(crate) fn qk_reader<'e>(
        &'e self,
        qk: &'e crate::source::qk::QkSource,
    ) -> Result<crate::pool::qk::QkReader<'e>> {
        crate::pool::qk::QkReader::new(&self.gpu, &self.qk, qk)
    }

    /// Rows `rows` (0-based among the computed rows) of head (`layer`, `head`) of `qk` as the
    /// GPU computes them before pooling: its materialized attention.
    pub fn qk_probabilities(
        &self,
        qk: &crate::source::qk::QkSource,
        layer: usize,
        head: usize,
        rows: std::ops::Range<usize>,
    ) -> Result<Vec<f32>> {
        crate::pool::qk::probabilities(&self.gpu, &self.qk, qk, layer, head, rows)
    }

    /// Colours pooled cells with per-cell `ranges` and reads the packed RGBA back.
    pub fn colorize(
        &self,
        pooled: &PooledCells,
        ranges: &[[f32; 2]],
        reduce: Reduce,
        colormap: Colormap,
    ) -> Result<Vec<Vec<u32>>> {
        self.colorize_scaled(pooled, ranges, &ColorScale::default(), reduce, colormap)
    }

    /// [`Engine::colorize`] with `ranges` (data units) mapped through `scale`.
    pub fn colorize_scaled(
        &self,
        pooled: &PooledCells,
        ranges: &[[f32; 2]],
        scale: &ColorScale,
        reduce: Reduce,
        colormap: Colormap,
    ) -> Result<Vec<Vec<u32>>> {
        let colors = ColorizedCells::new(&self.gpu, &self.colorize, pooled);
        self.apply_colors(&colors, pooled, ranges, scale, reduce, colormap)?;
        colors.read(&self.gpu, pooled)
    }

    /// Each cell's (min, max, count) over the pooled columns from `first_column` on: the GPU
    /// pass behind `--exclude-keys`.
    pub fn cell_ranges(&self, pooled: &PooledCells, first_column: u32) -> Result<Vec<HeadStats>> {
        crate::color::limits::cell_ranges(&self.gpu, &self.limits, pooled, first_column)
    }

    /// Per cell: counts of its reduced pooled values in [`crate::color::scale::BINS`] bins over
    /// `ranges[cell]`, pooled columns before `first_column` left out (the GPU histogram behind
    /// `--clip`).
    pub fn histograms(
        &self,
        pooled: &PooledCells,
        first_column: u32,
        reduce: Reduce,
        ranges: &[[f32; 2]],
    ) -> Result<Vec<Vec<u32>>> {
        crate::color::limits::histograms(
            &self.gpu,
            &self.limits,
            pooled,
            first_column,
            reduce,
            ranges,
        )
    }

    /// Each cell's `[lo, hi]` for `norm` and `scale`: statistics restricted to the included
    /// columns, percentiles from GPU histograms of each scope, fixed limits.
    pub fn resolve_ranges(
        &self,
        pooled: &PooledCells,
        plan: &Plan,
        norm: Norm,
        reduce: Reduce,
        scale: &ColorScale,
    ) -> Result<Vec<[f32; 2]>> {
        let stats = if scale.exclude_keys > 0 {
            self.cell_ranges(pooled, plan.first_column)?
        } else {
            pooled.stats.clone()
        };
        let ranges = resolve_ranges(norm, scale, &stats, plan.heads.len(), |r| {
            self.histograms(pooled, plan.first_column, reduce, r)
        })?;
        Ok(plan.fixed_ranges(ranges))
    }

    /// Pools, colours and lays out `source`: a figure resident on the GPU, ready to draw into
    /// any target and to recolour without touching the input again.
    pub fn scene(&self, source: &dyn AttentionSource, options: &RenderOptions) -> Result<Scene> {
        self.build_scene(source, options, Contents::Read)
    }

    /// The scene's layout with nothing read yet: labels, colorbar and empty (background) cells,
    /// at once, whatever the input's size. The viewer shows it while [`Engine::scene`] reads.
    pub fn empty_scene(
        &self,
        source: &dyn AttentionSource,
        options: &RenderOptions,
    ) -> Result<Scene> {
        self.build_scene(source, options, Contents::Empty)
    }

    fn build_scene(
        &self,
        source: &dyn AttentionSource,
        options: &RenderOptions,
        contents: Contents,
    ) -> Result<Scene> {
        let mut plan = Plan::new(source, options)?;
        let grid = plan.clone();
        let pooled = self.pool_contents(source, &plan, contents)?;
        if options.ranking().ranks() && contents == Contents::Read {
            let patterns: Vec<_> = pooled.patterns.iter().map(|p| p.finish()).collect();
            plan.arrange(&patterns, options)?;
        }
        let _span = tracing::info_span!("layout.colour").entered();
        let colors = ColorizedCells::new(&self.gpu, &self.colorize, &pooled);
        let look = Look {
            norm: options.norm,
            reduce: options.reduce,
            colormap: options.colormap,
            scale: options.scale.clone(),
        };
        let laid = self.lay_out(plan, &pooled, &colors, &look, options.colorbar)?;
        let scene = Scene {
            ranges: laid.ranges,
            norm: look.norm,
            reduce: look.reduce,
            colormap: look.colormap,
            scale: look.scale,
            plan: laid.plan,
            grid,
            pooled,
            colors,
            quads: laid.quads,
            compositor: laid.compositor,
        };
        self.apply_colors(
            &scene.colors,
            &scene.pooled,
            &scene.ranges,
            &scene.scale,
            scene.reduce,
            scene.colormap,
        )?;
        Ok(scene)
    }

    /// Lays `scene` out again in the order `options` asks (`--sort-by`, `--top`, `--pattern`; the plain
    /// grid without them) by the statistics of its cells, `patterns` (in the plan's cell
    /// order, as the scene that pooled them returned them), keeping its colouring: the
    /// layout, ranges, colorbar and compose pass are made anew, and nothing is read or pooled
    /// again (the viewer's `o` key once the figure has statistics).
    pub fn reorder(
        &self,
        scene: &mut Scene,
        patterns: &[HeadPattern],
        options: &RenderOptions,
    ) -> Result<()> {
        if patterns.len() != scene.grid.cells.len() {
            return Err(Error::BadOption(format!(
                "{} statistics for {} cells",
                patterns.len(),
                scene.grid.cells.len()
            )));
        }
        let mut plan = scene.grid.clone();
        plan.arrange(patterns, options)?;
        let look = Look {
            norm: scene.norm,
            reduce: scene.reduce,
            colormap: scene.colormap,
            scale: scene.scale.clone(),
        };
        let laid = self.lay_out(plan, &scene.pooled, &scene.colors, &look, options.colorbar)?;
        (scene.plan, scene.ranges) = (laid.plan, laid.ranges);
        (scene.quads, scene.compositor) = (laid.quads, laid.compositor);
        let s = &*scene;
        self.apply_colors(
            &s.colors, &s.pooled, &s.ranges, &s.scale, s.reduce, s.colormap,
        )
    }

    /// The figure of `pooled` (and its colour textures) laid out by `plan`: the ranges `look`
    /// maps, the colorbar, the quads and the compose pass.
    fn lay_out(
        &self,
        mut plan: Plan,
        pooled: &PooledCells,
        colors: &ColorizedCells,
        look: &Look,
        colorbar: bool,
    ) -> Result<Laid> {
        let ranges = self.resolve_ranges(pooled, &plan, look.norm, look.reduce, &look.scale)?;
        if colorbar {
            plan.add_colorbar(look.norm, &ranges, &look.scale);
        }
        let groups: Vec<_> = pooled
            .groups
            .iter()
            .map(|g| (g.first_cell, g.cells))
            .collect();
        let quads = FigureQuads::new(&plan.layout, &plan.geometry, &groups);
        let compositor = self.gpu.scoped("preparing the figure", || {
            Ok(self.compositor(&quads, colors, pooled))
        })?;
        Ok(Laid {
            plan,
            ranges,
            quads,
            compositor,
        })
    }

    /// The plan's cells pooled from `source`, or allocated empty for [`Contents::Empty`].
    fn pool_contents(
        &self,
        source: &dyn AttentionSource,
        plan: &Plan,
        contents: Contents,
    ) -> Result<PooledCells> {
        if contents == Contents::Read {
            let patterns = plan.patterns;
            return self.pool_with(source, &plan.cells, plan.geometry, plan.pool, patterns);
        }
        let s = source.shape();
        let shape = IngestShape {
            cells: plan.cells.len(),
            queries: s.queries,
            keys: s.keys,
            dtype: source.dtype(),
            geometry: plan.geometry,
            options: plan.pool,
            chunk_target: self.chunk_bytes,
        };
        crate::pool::unpooled_cells(&self.gpu, &self.pool_pipes, shape)
    }

    /// The colour pass: `colors` of `pooled` from its values, per-cell `ranges` (data units)
    /// mapped through `scale`. Every colouring (scene, recolour, overlay, export) runs it.
    fn apply_colors(
        &self,
        colors: &ColorizedCells,
        pooled: &PooledCells,
        ranges: &[[f32; 2]],
        scale: &ColorScale,
        reduce: Reduce,
        colormap: Colormap,
    ) -> Result<()> {
        colors.update(
            &self.gpu,
            &self.colorize,
            pooled,
            ranges,
            scale,
            reduce,
            colormap,
        )
    }

    /// Re-runs only normalization and the colormap on the resident pooled data. `Norm::Row` is
    /// applied while pooling, so switching to or from it needs a new scene.
    pub fn recolor(
        &self,
        scene: &mut Scene,
        norm: Norm,
        reduce: Reduce,
        colormap: Colormap,
    ) -> Result<()> {
        if (norm == Norm::Row) != (scene.plan.pool.row_norm) {
            return Err(Error::BadOption(
                "switching to or from --norm row needs the input pooled again".into(),
            ));
        }
        scene.ranges =
            self.resolve_ranges(&scene.pooled, &scene.plan, norm, reduce, &scene.scale)?;
        let s = &*scene;
        self.apply_colors(&s.colors, &s.pooled, &s.ranges, &s.scale, reduce, colormap)?;
        (scene.norm, scene.reduce, scene.colormap) = (norm, reduce, colormap);
        Ok(())
    }

    pub fn render(&self, source: &dyn AttentionSource, options: &RenderOptions) -> Result<Figure> {
        self.render_with(source, options, None)
    }

    /// [`Engine::render`] with the figure's rows handed to `sink` as the export reads them back
    /// ([`Engine::export_into`]) instead of gathered: the [`Figure`]'s `rgba` is left empty.
    /// `attnviz render` encodes its PNG so, never holding the whole figure.
    pub fn render_into(
        &self,
        source: &dyn AttentionSource,
        options: &RenderOptions,
        sink: &mut dyn RowSink,
    ) -> Result<Figure> {
        self.render_with(source, options, Some(sink))
    }

    fn render_with(
        &self,
        source: &dyn AttentionSource,
        options: &RenderOptions,
        sink: Option<&mut dyn RowSink>,
    ) -> Result<Figure> {
        let scene = self.scene(source, options)?;
        let rgba = tracing::info_span!("export").in_scope(|| match sink {
            Some(sink) => self.export_into(&scene, sink).map(|()| Vec::new()),
            None => self.export(&scene),
        })?;
        let cell_colors = if options.cell_colors {
            Some(scene.colors.read(&self.gpu, &scene.pooled)?)
        } else {
            None
        };
        Ok(Figure {
            width: scene.quads.width,
            height: scene.quads.height,
            rgba,
            cell_colors,
            scale: scene.scale,
            causal: scene.pooled.causal,
            patterns: scene.pooled.patterns.iter().map(|p| p.finish()).collect(),
            stats: scene.pooled.stats,
            ranges: scene.ranges,
            plan: scene.plan,
        })
    }

    /// [`Engine::render`] with its passes stamped by the device: the figure, and each pass
    /// label's device time (`Gpu::time_passes`), `None` where the adapter has no timestamp
    /// queries. Benchmarks and `--gpu-times` call it; a failed render leaves nothing recorded.
    pub fn render_timed(
        &self,
        source: &dyn AttentionSource,
        options: &RenderOptions,
    ) -> Result<(Figure, Option<PassTimes>)> {
        self.timed(|| self.render(source, options))
    }

    /// What `render` returns, with the device's time per pass label of the passes it recorded
    /// (`Gpu::time_passes`), `None` where the adapter has no timestamp queries: any of the
    /// engine's renders stamped ([`Engine::render_timed`]; `--gpu-times` of a render whose rows
    /// go straight into its PNG, [`Engine::render_into`]).
    pub fn timed<T>(&self, render: impl FnOnce() -> Result<T>) -> Result<(T, Option<PassTimes>)> {
        if !self.gpu.time_passes(true) {
            return Ok((render()?, None));
        }
        let out = render();
        self.gpu.time_passes(false);
        let times = self.gpu.pass_times();
        Ok((out?, Some(times?)))
    }

    /// Pattern statistics of the heads `options` selects, in the plan's cell order, from one
    /// read of them (stored attention, and probabilities stored from Q and K: the statistics
    /// alone, no pool pass; statistics from the scores themselves: the row kernel's run, which
    /// gives the rows' lse, pools a 16-pixel cell that is not used): `attnviz heads`. The cells
    /// are named as the user knows them ([`Plan::named_cells`]).
    pub fn head_patterns(
        &self,
        source: &dyn AttentionSource,
        options: &RenderOptions,
        patterns: PatternOptions,
    ) -> Result<CellPatterns> {
        let plan = Plan::new(source, &options.with_patterns(patterns))?;
        let s = source.shape();
        let geometry = CellGeometry::new(s.queries, s.keys, Some(16))?;
        // (the pooled cells are not read: stored attention goes to the statistics alone)
        let run = PoolRun {
            cells: &plan.cells,
            geometry,
            options: plan.pool,
            chunk_bytes: self.chunk_bytes,
            state_bytes: self.qk_state_bytes,
            progress: self.progress.as_deref(),
            patterns: Some(patterns),
            pooled: false,
        };
        let pooled = self.run_pool(run, source)?;
        let stats = pooled.patterns.iter().map(|p| p.finish()).collect();
        Ok((plan.named_cells(&plan.cells), stats))
    }

    /// Per-cell statistics only (for `info`): pools to a small grid, reads nothing else back.
    pub fn stats(&self, source: &dyn AttentionSource) -> Result<Vec<HeadStats>> {
        let s = source.shape();
        let cells: Vec<_> = (0..s.layers)
            .flat_map(|l| (0..s.heads).map(move |h| (l, h)))
            .collect();
        let geometry = CellGeometry::new(s.queries, s.keys, Some(64))?;
        let pooled = self.pool(source, &cells, geometry, PoolOptions::default())?;
        Ok(pooled.stats)
    }

    /// Native-resolution tiles of every cell of `figure`, coloured with the figure's ranges.
    /// Reads the input a second time, a batch of heads at a time (as many as twice the largest
    /// binding holds at one word a pixel: a native cell's bins are one entry each,
    /// `AccumLayout::Single`).
    pub fn tiles(
        &self,
        source: &dyn AttentionSource,
        figure: &Figure,
        options: &RenderOptions,
    ) -> Result<Vec<Tile>> {
        let batch = |native: &CellGeometry| {
            let per_head = native.pooled_pixels() as u64 * AccumLayout::Single.pixel_bytes();
            let budget = (self.gpu.max_binding() * 2).max(per_head);
            (budget / per_head) as usize
        };
        native_tiles(source, figure, batch, |cells, ranges, native| {
            let pooled = self.pool(source, cells, native, figure.resolved_pool())?;
            self.colorize_scaled(
                &pooled,
                ranges,
                &figure.scale,
                options.reduce,
                options.colormap,
            )
        })
    }
}
