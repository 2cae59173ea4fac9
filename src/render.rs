//! From a source and options to a finished figure, on the GPU ([`Engine`]) or the CPU
//! ([`render_cpu`]). Both share the plan (selection, geometry, layout) and the normalization
//! code, and differ only in who pools, colours and draws.

use crate::colorize::{ColorizePipeline, ColorizedCells};
use crate::colormap::Colormap;
use crate::compose::{ComposePipeline, Compositor, FigureQuads};
use crate::cpu;
use crate::error::{Error, Result};
use crate::geometry::CellGeometry;
use crate::gpu::Gpu;
use crate::layout::{Layout, Theme};
use crate::norm::{color_ranges, HeadStats, Norm, Reduce};
use crate::pool::{pool_cells, Causal, PoolOptions, PoolPipelines, PooledCells};
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
}

impl Plan {
    /// Adds the colorbar for `norm` once the ranges are known (they come from the data).
    pub fn add_colorbar(&mut self, norm: Norm, ranges: &[[f32; 2]]) {
        let spec = crate::colorbar::ColorbarSpec::for_norm(norm, ranges);
        self.layout
            .add_colorbar(&spec, &crate::layout::Metrics::for_cell(&self.geometry));
    }

    pub fn new(source: &dyn AttentionSource, options: &RenderOptions) -> Result<Plan> {
        let shape = source.shape();
        let layers = parse_selection(options.layers.as_deref(), shape.layers, "layer")?;
        let heads = parse_selection(options.heads.as_deref(), shape.heads, "head")?;
        let cells = layers
            .iter()
            .flat_map(|&l| heads.iter().map(move |&h| (l, h)))
            .collect();
        let geometry = CellGeometry::new(shape.queries, shape.keys, options.cell)?;
        let layout = Layout::grid(&layers, &heads, &geometry, Theme::LIGHT);
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
    colors: ColorizedCells,
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
    pool: PoolPipelines,
    qk: crate::qk::gpu::QkPipelines,
    colorize: ColorizePipeline,
    compose: ComposePipeline,
}

impl Engine {
    pub fn new(gpu: Gpu) -> Engine {
        let device = &gpu.device;
        Engine {
            pool: PoolPipelines::new(device),
            qk: crate::qk::gpu::QkPipelines::new(device),
            colorize: ColorizePipeline::new(device),
            compose: ComposePipeline::new(device, wgpu::TextureFormat::Rgba8Unorm),
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
        let colors = ColorizedCells::new(&self.gpu, &self.colorize, pooled);
        colors.update(&self.gpu, &self.colorize, pooled, ranges, reduce, colormap)?;
        colors.read(&self.gpu, pooled)
    }

    /// Pools, colours and lays out `source`: a figure resident on the GPU, ready to draw into
    /// any target and to recolour without touching the input again.
    pub fn scene(&self, source: &dyn AttentionSource, options: &RenderOptions) -> Result<Scene> {
        let mut plan = Plan::new(source, options)?;
        let gpu = &self.gpu;
        let pooled = self.pool(source, &plan.cells, plan.geometry, plan.pool)?;
        if options.colorbar {
            let ranges = color_ranges(options.norm, &pooled.stats, plan.heads.len());
            plan.add_colorbar(options.norm, &ranges);
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
        let mut scene = Scene {
            ranges: Vec::new(),
            norm: options.norm,
            reduce: options.reduce,
            colormap: options.colormap,
            plan,
            pooled,
            colors,
            quads,
            compositor,
        };
        self.recolor(&mut scene, options.norm, options.reduce, options.colormap)?;
        Ok(scene)
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
        scene.ranges = color_ranges(norm, &scene.pooled.stats, scene.plan.heads.len());
        scene.colors.update(
            &self.gpu,
            &self.colorize,
            &scene.pooled,
            &scene.ranges,
            reduce,
            colormap,
        )?;
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
        overlay: Option<&Compositor>,
    ) -> Result<Vec<u8>> {
        scene.compositor.set_quads(&self.gpu, &quads.quads);
        crate::export::render_rgba_over(&self.gpu, &self.compose, &scene.compositor, quads, overlay)
    }

    /// The scene's figure as RGBA8 rows (tiled past the texture limit).
    pub fn export(&self, scene: &Scene) -> Result<Vec<u8>> {
        crate::export::render_rgba(&self.gpu, &self.compose, &scene.compositor, &scene.quads)
    }

    pub fn render(&self, source: &dyn AttentionSource, options: &RenderOptions) -> Result<Figure> {
        let scene = self.scene(source, options)?;
        let rgba = self.export(&scene)?;
        Ok(Figure {
            width: scene.quads.width,
            height: scene.quads.height,
            rgba,
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
            let colors = self.colorize(&pooled, ranges, options.reduce, options.colormap)?;
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
    let ranges = color_ranges(options.norm, &stats, plan.heads.len());
    if options.colorbar {
        plan.add_colorbar(options.norm, &ranges);
    }
    let colors: Vec<u32> = pooled
        .iter()
        .zip(&ranges)
        .flat_map(|(p, &r)| cpu::colorize(&p.accum, r, options.reduce, options.colormap))
        .collect();
    let quads = FigureQuads::new(&plan.layout, &plan.geometry, &[(0, plan.cells.len())]);
    let rgba = cpu::draw_quads(&quads, &[colors], options.colormap);
    Ok(Figure {
        width: quads.width,
        height: quads.height,
        rgba,
        causal: pooled.first().is_some_and(|p| p.causal),
        stats,
        ranges,
        plan,
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
        let words = cpu::colorize(
            &pooled[0].accum,
            figure.ranges[i],
            options.reduce,
            options.colormap,
        );
        out.push(tile_from_words(layer, head, &native, &words));
    }
    Ok(out)
}
