//! From a source and options to a finished figure, on the GPU ([`Engine`]) or the CPU
//! ([`render_cpu`]). Both share the plan (selection, geometry, layout) and the normalization
//! code, and differ only in who pools, colours and draws.

use crate::colorbar::ColorbarSpec;
use crate::colorize::{ColorizePipeline, ColorizedCells};
use crate::colormap::Colormap;
use crate::compose::{ComposePipeline, Compositor, FigureQuads};
use crate::cpu;
use crate::error::{Error, Result};
use crate::geometry::CellGeometry;
use crate::gpu::Gpu;
use crate::layout::{CellPad, Layout, Metrics, Theme};
use crate::limits::LimitsPipeline;
use crate::norm::{HeadStats, Norm, Reduce};
use crate::pool::{pool_cells, Causal, PoolOptions, PoolPipelines, PooledCells};
use crate::scale::{first_included_column, resolve_ranges, ColorScale};
use crate::select::parse_selection;
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
    /// Cell side in pixels; `None` for 256 or the native size when smaller.
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
        }
    }
}

/// The resolved plan: which heads go where, at what size.
#[derive(Clone, Debug)]
pub struct Plan {
    pub layers: Vec<usize>,
    pub heads: Vec<usize>,
    /// (layer, head) of each cell, row-major.
    pub cells: Vec<(usize, usize)>,
    pub geometry: CellGeometry,
    pub layout: Layout,
    pub pool: PoolOptions,
    pub metrics: Metrics,
    /// Pooled columns left of this one hold keys left out of the statistics.
    pub first_column: u32,
    /// The colorbar drawn, once the ranges are known.
    pub colorbar: Option<ColorbarSpec>,
}

impl Plan {
    /// Adds the colorbar for `norm` once the ranges are known (they come from the data).
    pub fn add_colorbar(&mut self, norm: Norm, ranges: &[[f32; 2]], scale: &ColorScale) {
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
        let layers = parse_selection(options.layers.as_deref(), shape.layers, "layer")?;
        let heads = parse_selection(options.heads.as_deref(), shape.heads, "head")?;
        let cells = layers
            .iter()
            .flat_map(|&l| heads.iter().map(move |&h| (l, h)))
            .collect();
        let tokens = options
            .tokens
            .as_deref()
            .map(|t| crate::axes::split_tokens(t, shape.queries, shape.keys))
            .transpose()?;
        let cell = match (options.cell, tokens) {
            (None, Some(_)) => Some(crate::axes::cell_side_for_tokens(
                shape.queries.max(shape.keys),
                shape.queries.max(shape.keys).min(256) as u32,
            )),
            (c, _) => c,
        };
        let base = CellGeometry::new(shape.queries, shape.keys, cell)?;
        let geometry = if f == 1.0 {
            base
        } else {
            let side = (base.display_w.max(base.display_h) as f32 * f)
                .round()
                .max(1.0);
            if side > crate::geometry::MAX_CELL as f32 {
                return Err(Error::BadOption(format!(
                    "--scale-factor {f} makes cells of {side} px, past the maximum of {} (the figure may be any size)",
                    crate::geometry::MAX_CELL
                )));
            }
            CellGeometry::new(shape.queries, shape.keys, Some(side as u32))?
        };
        let metrics = Metrics::for_cell(&base).scaled(f);
        let exclude = options.scale.exclude_keys;
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
        let axes = tokens.map(|(q, k)| crate::axes::CellAxes::new(q, k, &geometry, &metrics));
        let mut layout = Layout::grid_with(
            &layers,
            &heads,
            &geometry,
            theme,
            &metrics,
            axes.as_ref().map_or(CellPad::default(), |a| a.pad),
            options.title.as_deref(),
        );
        if let Some(a) = &axes {
            layout.add_cell_axes(a);
        }
        Ok(Plan {
            layers,
            heads,
            cells,
            geometry,
            layout,
            pool: PoolOptions {
                row_norm: options.norm == Norm::Row,
                causal: options.causal,
                diagonal: Some(source.diagonal()),
            },
            metrics,
            first_column,
            colorbar: None,
        })
    }
}

/// A figure resident on the GPU: pooled cells, their colours and the compositor's quads.
pub struct Scene {
    pub plan: Plan,
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

/// A rendered figure.
pub struct Figure {
    pub width: u32,
    pub height: u32,
    /// RGBA8, row-major, top row first.
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
}

impl Figure {
    /// Pool options that reproduce this figure's masking without detecting it again.
    fn resolved_pool(&self) -> PoolOptions {
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

/// GPU pipelines, compiled once and reused for every figure.
pub struct Engine {
    pub gpu: Gpu,
    /// Upload chunk size in bytes (tests shrink it to exercise blocks that split bins).
    pub chunk_bytes: u64,
    /// Called with (bytes consumed, bytes in total) as input is pooled.
    pub progress: Option<Box<dyn Fn(u64, u64) + Send + Sync>>,
    /// Largest texture side export draws at once (tests shrink it to force tiles).
    pub tile_limit: u32,
    pool: PoolPipelines,
    qk: crate::qk::gpu::QkPipelines,
    colorize: ColorizePipeline,
    compose: ComposePipeline,
    limits: LimitsPipeline,
}

impl Engine {
    pub fn new(gpu: Gpu) -> Engine {
        let device = &gpu.device;
        Engine {
            pool: PoolPipelines::new(device),
            qk: crate::qk::gpu::QkPipelines::new(device),
            colorize: ColorizePipeline::new(device),
            compose: ComposePipeline::new(device, wgpu::TextureFormat::Rgba8Unorm),
            limits: LimitsPipeline::new(device),
            tile_limit: 8192,
            chunk_bytes: crate::pool::CHUNK_TARGET,
            progress: None,
            gpu,
        }
    }

    pub(crate) fn parts(&self) -> (&Gpu, &PoolPipelines) {
        (&self.gpu, &self.pool)
    }

    pub(crate) fn colorize_pipeline(&self) -> &ColorizePipeline {
        &self.colorize
    }

    /// Pools `cells` ((layer, head), 0-based) of `source` to `geometry` on the GPU, in one pass.
    pub fn pool(
        &self,
        source: &dyn AttentionSource,
        cells: &[(usize, usize)],
        geometry: CellGeometry,
        options: PoolOptions,
    ) -> Result<PooledCells> {
        if let Some(qk) = source.as_qk() {
            return crate::qk::gpu::pool_qk(
                &self.gpu,
                &self.pool,
                &self.qk,
                qk,
                cells,
                geometry,
                options,
                self.chunk_bytes,
                self.progress.as_deref(),
            );
        }
        pool_cells(
            &self.gpu,
            &self.pool,
            source,
            cells,
            geometry,
            options,
            self.chunk_bytes,
            self.progress.as_deref(),
        )
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
        crate::pool::resident_pool_seconds(&self.gpu, &self.pool, cells, queries, keys, geometry)
    }

    /// A reader of `qk`'s probabilities that keeps its buffers from one block to the next.
    pub(crate) fn qk_reader<'e>(
        &'e self,
        qk: &crate::qk::QkSource,
    ) -> Result<crate::qk::gpu::QkReader<'e>> {
        crate::qk::gpu::QkReader::new(&self.gpu, &self.qk, qk)
    }

    /// Rows `rows` (0-based among the computed rows) of head (`layer`, `head`) of `qk` as the
    /// GPU computes them before pooling: its materialized attention.
    pub fn qk_probabilities(
        &self,
        qk: &crate::qk::QkSource,
        layer: usize,
        head: usize,
        rows: std::ops::Range<usize>,
    ) -> Result<Vec<f32>> {
        crate::qk::gpu::probabilities(&self.gpu, &self.qk, qk, layer, head, rows)
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
        colors.update(
            &self.gpu,
            &self.colorize,
            pooled,
            ranges,
            scale,
            reduce,
            colormap,
        )?;
        colors.read(&self.gpu, pooled)
    }

    /// Each cell's (min, max, count) over the pooled columns from `first_column` on: the GPU
    /// pass behind `--exclude-keys`.
    pub fn cell_ranges(&self, pooled: &PooledCells, first_column: u32) -> Result<Vec<HeadStats>> {
        crate::limits::cell_ranges(&self.gpu, &self.limits, pooled, first_column)
    }

    /// Per cell: counts of its reduced pooled values in [`crate::scale::BINS`] bins over
    /// `ranges[cell]`, pooled columns before `first_column` left out (the GPU histogram behind
    /// `--clip`).
    pub fn histograms(
        &self,
        pooled: &PooledCells,
        first_column: u32,
        reduce: Reduce,
        ranges: &[[f32; 2]],
    ) -> Result<Vec<Vec<u32>>> {
        crate::limits::histograms(
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
        resolve_ranges(norm, scale, &stats, plan.heads.len(), |r| {
            self.histograms(pooled, plan.first_column, reduce, r)
        })
    }

    /// Pools, colours and lays out `source`: a figure resident on the GPU, ready to draw into
    /// any target and to recolour without touching the input again.
    pub fn scene(&self, source: &dyn AttentionSource, options: &RenderOptions) -> Result<Scene> {
        self.scene_with(source, options, true)
    }

    /// The scene's layout with nothing read yet: labels, colorbar and empty (background) cells,
    /// at once, whatever the input's size. The viewer shows it while [`Engine::scene`] reads.
    pub fn empty_scene(
        &self,
        source: &dyn AttentionSource,
        options: &RenderOptions,
    ) -> Result<Scene> {
        self.scene_with(source, options, false)
    }

    fn scene_with(
        &self,
        source: &dyn AttentionSource,
        options: &RenderOptions,
        read: bool,
    ) -> Result<Scene> {
        let mut plan = Plan::new(source, options)?;
        let gpu = &self.gpu;
        let pooled = if read {
            self.pool(source, &plan.cells, plan.geometry, plan.pool)?
        } else {
            let s = source.shape();
            crate::pool::unpooled_cells(
                gpu,
                &self.pool,
                plan.cells.len(),
                s.queries,
                s.keys,
                source.dtype(),
                plan.geometry,
                plan.pool,
                self.chunk_bytes,
            )?
        };
        let ranges =
            self.resolve_ranges(&pooled, &plan, options.norm, options.reduce, &options.scale)?;
        if options.colorbar {
            plan.add_colorbar(options.norm, &ranges, &options.scale);
        }
        let colors = ColorizedCells::new(gpu, &self.colorize, &pooled);
        let groups: Vec<_> = pooled
            .groups
            .iter()
            .map(|g| (g.first_cell, g.cells))
            .collect();
        let quads = FigureQuads::new(&plan.layout, &plan.geometry, &groups);
        let compositor = gpu.scoped("preparing the figure", || {
            Ok(Compositor::new(
                gpu,
                &self.compose,
                &quads,
                &colors,
                &pooled,
            ))
        })?;
        let scene = Scene {
            ranges,
            norm: options.norm,
            reduce: options.reduce,
            colormap: options.colormap,
            scale: options.scale.clone(),
            plan,
            pooled,
            colors,
            quads,
            compositor,
        };
        self.apply_colors(&scene, options.reduce, options.colormap)?;
        Ok(scene)
    }

    /// Runs the colour pass with the scene's ranges and scale.
    fn apply_colors(&self, scene: &Scene, reduce: Reduce, colormap: Colormap) -> Result<()> {
        scene.colors.update(
            &self.gpu,
            &self.colorize,
            &scene.pooled,
            &scene.ranges,
            &scene.scale,
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
        self.apply_colors(scene, reduce, colormap)?;
        (scene.norm, scene.reduce, scene.colormap) = (norm, reduce, colormap);
        Ok(())
    }

    /// Draws the scene into `target` (a texture of the export format, `size` pixels) and
    /// submits; the figure's pixel (0, 0) lands on the target's.
    pub fn draw(
        &self,
        scene: &Scene,
        target: &wgpu::TextureView,
        size: (u32, u32),
    ) -> Result<wgpu::SubmissionIndex> {
        let gpu = &self.gpu;
        gpu.scoped("drawing the figure", || {
            let mut encoder = gpu
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("attnviz.draw.encoder"),
                });
            scene
                .compositor
                .draw(gpu, &self.compose, &mut encoder, target, size)?;
            Ok(gpu.queue.submit([encoder.finish()]))
        })
    }

    /// The scene drawn with other quads (a view of it), as RGBA8 rows of `quads`' size.
    pub(crate) fn export_quads(
        &self,
        scene: &Scene,
        quads: &FigureQuads,
        overlays: &[&Compositor],
    ) -> Result<Vec<u8>> {
        scene.compositor.set_quads(&self.gpu, &quads.quads);
        crate::export::render_rgba_over(
            &self.gpu,
            &self.compose,
            &scene.compositor,
            quads,
            self.tile_limit,
            overlays,
        )
    }

    /// The scene's figure as RGBA8 rows (tiled past the texture limit).
    pub fn export(&self, scene: &Scene) -> Result<Vec<u8>> {
        crate::export::render_rgba(
            &self.gpu,
            &self.compose,
            &scene.compositor,
            &scene.quads,
            self.tile_limit,
        )
    }

    pub fn render(&self, source: &dyn AttentionSource, options: &RenderOptions) -> Result<Figure> {
        let scene = self.scene(source, options)?;
        let rgba = self.export(&scene)?;
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
            stats: scene.pooled.stats,
            ranges: scene.ranges,
            plan: scene.plan,
        })
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
    /// Reads the input a second time, a batch of heads at a time.
    pub fn tiles(
        &self,
        source: &dyn AttentionSource,
        figure: &Figure,
        options: &RenderOptions,
    ) -> Result<Vec<Tile>> {
        let s = source.shape();
        let native = native_geometry(s.queries, s.keys)?;
        let per_head = native.pooled_pixels() as u64 * 16;
        let budget = (self.gpu.max_binding() * 2).max(per_head);
        let batch = (budget / per_head).max(1) as usize;
        let mut out = Vec::with_capacity(figure.plan.cells.len());
        for (b, cells) in figure.plan.cells.chunks(batch).enumerate() {
            let pooled = self.pool(source, cells, native, figure.resolved_pool())?;
            let ranges = &figure.ranges[b * batch..b * batch + cells.len()];
            let colors = self.colorize_scaled(
                &pooled,
                ranges,
                &figure.scale,
                options.reduce,
                options.colormap,
            )?;
            for (&(layer, head), words) in cells.iter().zip(colors) {
                out.push(tile_from_words(layer, head, &native, &words));
            }
        }
        Ok(out)
    }
}

fn native_geometry(queries: usize, keys: usize) -> Result<CellGeometry> {
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

fn tile_from_words(layer: usize, head: usize, g: &CellGeometry, words: &[u32]) -> Tile {
    Tile {
        layer,
        head,
        width: g.pooled_w,
        height: g.pooled_h,
        rgba: words.iter().flat_map(|w| w.to_le_bytes()).collect(),
    }
}

/// The CPU reference renderer: same plan, same semantics, no GPU.
pub fn render_cpu(source: &dyn AttentionSource, options: &RenderOptions) -> Result<Figure> {
    let mut plan = Plan::new(source, options)?;
    let pooled = cpu::pool_cells(source, &plan.cells, plan.geometry, plan.pool)?;
    let stats: Vec<HeadStats> = pooled.iter().map(|p| cpu::head_stats(&p.accum)).collect();
    let ranges = cpu_ranges(
        &pooled,
        &stats,
        &plan,
        options.norm,
        options.reduce,
        &options.scale,
    )?;
    if options.colorbar {
        plan.add_colorbar(options.norm, &ranges, &options.scale);
    }
    let cells: Vec<Vec<u32>> = pooled
        .iter()
        .zip(&ranges)
        .map(|(p, &r)| {
            cpu::colorize_scaled(
                &p.accum,
                r,
                &options.scale,
                options.reduce,
                options.colormap,
            )
        })
        .collect();
    let colors: Vec<u32> = cells.concat();
    let quads = FigureQuads::new(&plan.layout, &plan.geometry, &[(0, plan.cells.len())]);
    let rgba = cpu::draw_quads(&quads, &[colors], options.colormap);
    Ok(Figure {
        width: quads.width,
        height: quads.height,
        rgba,
        scale: options.scale.clone(),
        cell_colors: options.cell_colors.then_some(cells),
        causal: pooled.first().is_some_and(|p| p.causal),
        stats,
        ranges,
        plan,
    })
}

/// The CPU twin of [`Engine::resolve_ranges`].
pub fn cpu_ranges(
    pooled: &[cpu::HeadPooler],
    stats: &[HeadStats],
    plan: &Plan,
    norm: Norm,
    reduce: Reduce,
    scale: &ColorScale,
) -> Result<Vec<[f32; 2]>> {
    let w = plan.geometry.pooled_w;
    let restricted: Vec<HeadStats>;
    let stats = if scale.exclude_keys > 0 {
        restricted = pooled
            .iter()
            .map(|p| cpu::cell_range(&p.accum, w, plan.first_column))
            .collect();
        &restricted
    } else {
        stats
    };
    resolve_ranges(norm, scale, stats, plan.heads.len(), |ranges| {
        Ok(pooled
            .iter()
            .zip(ranges)
            .map(|(p, &r)| cpu::histogram(&p.accum, w, plan.first_column, reduce, r))
            .collect())
    })
}

/// Native-resolution tiles on the CPU.
pub fn tiles_cpu(
    source: &dyn AttentionSource,
    figure: &Figure,
    options: &RenderOptions,
) -> Result<Vec<Tile>> {
    let s = source.shape();
    let native = native_geometry(s.queries, s.keys)?;
    let mut out = Vec::new();
    for (i, &(layer, head)) in figure.plan.cells.iter().enumerate() {
        let pooled = cpu::pool_cells(source, &[(layer, head)], native, figure.resolved_pool())?;
        let words = cpu::colorize_scaled(
            &pooled[0].accum,
            figure.ranges[i],
            &figure.scale,
            options.reduce,
            options.colormap,
        );
        out.push(tile_from_words(layer, head, &native, &words));
    }
    Ok(out)
}
