//! What each `attnviz bench` scenario times. Every scenario is a method of [`Bench`], which
//! holds what they share (engine, sizes, the scratch PNG), and yields one [`Row`].

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context};

use attnviz::files::write_png_streamed;
use attnviz::gpu::timing::PassTimes;
use attnviz::{AttentionSource, Colormap, Engine, Norm, Reduce, RenderOptions, Scene};

use super::inputs::{file_len, Input, Inputs};
use super::measure::{cat_seconds, measure, Sample};
use super::Sizes;

/// The scenarios of `attnviz bench`, in the order they run. The last, `coop`, runs only when
/// `--only` names it ([`Selection::names`]): it is a probe of an experimental API, which a run of
/// every scenario should not depend on.
pub const SCENARIOS: [&str; 13] = [
    "export-grid",
    "export-grid-cli",
    "stats-grid",
    "export-long",
    "export-model",
    "recolor",
    "frame",
    "upload",
    "pool-resident",
    "qk-long",
    "qk-model",
    "qk-short",
    "coop",
];

/// The scenarios `--only` chose: all of them when it is empty (but `coop`, which it must name).
pub struct Selection<'a>(pub &'a [String]);

impl Selection<'_> {
    pub fn wants(&self, name: &str) -> bool {
        self.0.is_empty() || self.names(name)
    }

    /// Whether `--only` named `name` itself.
    pub fn names(&self, name: &str) -> bool {
        self.0.iter().any(|o| o == name)
    }
}

/// One table row: the timings, and the `cat` baseline for scenarios that read a file.
pub struct Row {
    pub sample: Sample,
    pub cat: Option<f64>,
}

impl From<Sample> for Row {
    fn from(sample: Sample) -> Row {
        Row { sample, cat: None }
    }
}

/// Everything the chosen scenarios measured.
#[derive(Default)]
pub struct Results {
    pub rows: Vec<Row>,
    /// The `cat` time of each input, when its export scenario ran.
    pub grid_cat: Option<f64>,
    pub long_cat: Option<f64>,
    pub model_cat: Option<f64>,
    /// qk-long's arithmetic throughput, when it ran: whole renders, and the pooling alone
    /// (the kernels' share, `Engine::pool_figure`).
    pub qk_gflops: Option<f64>,
    pub qk_pool_gflops: Option<f64>,
    /// The adapter's f32 FMA rate in GFLOP/s (the probe kernel), when a Q/K scenario ran: the
    /// limit their GFLOP/s are a fraction of.
    pub fma_gflops: Option<f64>,
    /// qk-model's line under the table (GFLOP/s and heads/s), when it ran.
    pub qk_model: Option<String>,
    /// qk-short's line under the table (heads/s and pixels/s), when it ran.
    pub qk_short: Option<String>,
    /// coop's line under the table (the cooperative-matrix rate, or why there is none), when
    /// `--only` named it.
    pub coop: Option<String>,
    /// export-grid-cli: the median of the fresh processes and of the in-process renders they
    /// alternated with.
    pub export_cli: Option<(f64, f64)>,
    /// stats-grid: the medians of the renders with pattern statistics and of those without
    /// that they alternated with.
    pub stats_grid: Option<(f64, f64)>,
    /// Per scenario that renders, where the adapter stamps passes: the device time of each of
    /// its passes in one more render after the timed ones (`Bench::timed_render`).
    pub gpu_times: Vec<(&'static str, PassTimes)>,
}

/// What every scenario shares.
pub struct Bench {
    pub engine: Engine,
    pub sizes: Sizes,
    /// Where renders are written (each run overwrites it; removed at the end).
    pub out: PathBuf,
}

/// stats-grid's renders: the default figure with every head's pattern statistics.
fn stats_options() -> RenderOptions {
    RenderOptions {
        patterns: Some(attnviz::pool::pattern::PatternOptions::default()),
        ..Default::default()
    }
}

/// The long scenarios draw their one head into a 1024-px cell.
pub(super) fn long_options() -> RenderOptions {
    RenderOptions {
        cell: Some(1024),
        ..Default::default()
    }
}

impl Bench {
    /// Runs the chosen scenarios in the order of [`SCENARIOS`]; `inputs` holds what they read.
    pub fn run(&self, inputs: &Inputs, want: &Selection) -> anyhow::Result<Results> {
        let mut results = Results::default();
        if let (true, Some(grid)) = (want.wants("export-grid"), &inputs.grid) {
            let row = self.export("export-grid", grid, &RenderOptions::default(), 64)?;
            results.grid_cat = row.cat;
            results.rows.push(row);
            let times = self.timed_render(grid.source.as_ref(), &RenderOptions::default())?;
            results.gpu_times.extend(times.map(|t| ("export-grid", t)));
        }
        if let (true, Some(grid)) = (want.wants("export-grid-cli"), &inputs.grid) {
            let (fresh, in_process) = self.export_cli(grid, &RenderOptions::default(), 64)?;
            results.export_cli = Some((fresh.median(), in_process.median()));
            results.rows.push(fresh.into());
        }
        if let (true, Some(grid)) = (want.wants("stats-grid"), &inputs.grid) {
            let (stats, plain) = self.stats_grid(grid, 64)?;
            results.stats_grid = Some((stats.median(), plain.median()));
            results.rows.push(stats.into());
            let times = self.timed_render(grid.source.as_ref(), &stats_options())?;
            results.gpu_times.extend(times.map(|t| ("stats-grid", t)));
        }
        if let Some(long) = &inputs.long {
            let row = self.export("export-long", long, &long_options(), 1)?;
            results.long_cat = row.cat;
            results.rows.push(row);
            let times = self.timed_render(long.source.as_ref(), &long_options())?;
            results.gpu_times.extend(times.map(|t| ("export-long", t)));
        }
        if let Some(model) = &inputs.model {
            // (every head at its own width: a pixel a score)
            let heads = model.source.shape().layers * model.source.shape().heads;
            let row = self.export("export-model", model, &RenderOptions::default(), heads)?;
            results.model_cat = row.cat;
            results.rows.push(row);
            let times = self.timed_render(model.source.as_ref(), &RenderOptions::default())?;
            results.gpu_times.extend(times.map(|t| ("export-model", t)));
        }
        if let (true, Some(grid)) = (want.wants("recolor") || want.wants("frame"), &inputs.grid) {
            // The interactive paths, on resident pooled data of the grid.
            let mut scene = self
                .engine
                .scene(grid.source.as_ref(), &RenderOptions::default())?;
            if want.wants("recolor") {
                results.rows.push(self.recolor(&mut scene)?);
            }
            if want.wants("frame") {
                results.rows.push(self.frame(&scene)?);
            }
        }
        if want.wants("upload") {
            results.rows.push(self.upload()?);
        }
        if want.wants("pool-resident") {
            results.rows.push(self.pool_resident()?);
        }
        if want.wants("qk-long") || want.wants("qk-model") {
            let probe = attnviz::pool::FmaProbe::new(&self.engine.gpu);
            results.fma_gflops = Some(probe.gflops(&self.engine.gpu)?);
        }
        if want.wants("qk-long") {
            let (sample, pooling, times) = self.qk_long()?;
            results.gpu_times.extend(times.map(|t| ("qk-long", t)));
            // each score once (the one-pass path): 2·d flops per score
            let flops = 2.0 * (self.sizes.qk_seq as f64).powi(2) * 64.0;
            results.qk_gflops = Some(flops / sample.median() / 1e9);
            results.qk_pool_gflops = Some(flops / pooling / 1e9);
            results.rows.push(sample.into());
        }
        if want.wants("qk-model") {
            let (sample, line, times) = self.qk_model(results.fma_gflops)?;
            results.gpu_times.extend(times.map(|t| ("qk-model", t)));
            results.qk_model = Some(line);
            results.rows.push(sample.into());
        }
        if want.wants("qk-short") {
            let (sample, line, times) = self.qk_short()?;
            results.gpu_times.extend(times.map(|t| ("qk-short", t)));
            results.qk_short = Some(line);
            results.rows.push(sample.into());
        }
        if want.names("coop") {
            results.coop = Some(self.coop(results.fma_gflops)?);
        }
        Ok(results)
    }

    /// One more render of `source`, its passes stamped by the device, where the adapter can
    /// (`Engine::render_timed`); the timed runs before it ran without stamps.
    pub(super) fn timed_render(
        &self,
        source: &dyn AttentionSource,
        options: &RenderOptions,
    ) -> anyhow::Result<Option<PassTimes>> {
        Ok(self.engine.render_timed(source, options)?.1)
    }

    /// export-grid and export-long: one figure from a file to a PNG per run, next to reading
    /// the file once.
    fn export(
        &self,
        name: &str,
        input: &Input,
        options: &RenderOptions,
        heads: usize,
    ) -> anyhow::Result<Row> {
        let cat = cat_seconds(&input.path)?;
        let bytes = file_len(&input.path);
        let sample = measure(name, bytes, heads, self.sizes.runs, false, || {
            self.render_png(input.source.as_ref(), options)
        })?;
        Ok(Row {
            sample,
            cat: Some(cat),
        })
    }

    /// export-grid-cli: export-grid as the command a user runs, one fresh `attnviz render`
    /// process per run, which also pays what a process pays once (Vulkan start-up, shader
    /// cache look-ups, the first use of its buffers). Its runs alternate with in-process
    /// renders of the same file and options (the second sample), so the ratio of the two
    /// compares runs made together on a host whose speed drifts.
    fn export_cli(
        &self,
        input: &Input,
        options: &RenderOptions,
        heads: usize,
    ) -> anyhow::Result<(Sample, Sample)> {
        let exe = std::env::current_exe().context("finding the attnviz binary")?;
        let fresh = || -> anyhow::Result<f64> {
            let t = Instant::now();
            let o = Command::new(&exe)
                .arg("render")
                .arg("--quiet")
                .arg(&input.path)
                .arg("-o")
                .arg(&self.out)
                .stdin(Stdio::null())
                .output()
                .with_context(|| format!("running {}", exe.display()))?;
            let seconds = t.elapsed().as_secs_f64();
            if !o.status.success() {
                bail!(
                    "{} render failed: {}",
                    exe.display(),
                    String::from_utf8_lossy(&o.stderr).trim()
                );
            }
            Ok(seconds)
        };
        // (the warm-up: the page cache, the driver's shader cache, the engine's spares)
        self.alternating(
            input,
            heads,
            ("export-grid-cli", fresh),
            ("export-grid", || self.render_seconds(input, options)),
        )
    }

    /// Seconds of one in-process render of `input` to the scratch PNG.
    fn render_seconds(&self, input: &Input, options: &RenderOptions) -> anyhow::Result<f64> {
        let t = Instant::now();
        self.render_png(input.source.as_ref(), options)?;
        Ok(t.elapsed().as_secs_f64())
    }

    /// One in-process render of `source` into the scratch PNG, as `attnviz render` writes
    /// it (the rows encoded as they are read back), so that the in-process figures and the
    /// fresh processes they are compared with do the same work.
    pub(super) fn render_png(
        &self,
        source: &dyn AttentionSource,
        options: &RenderOptions,
    ) -> attnviz::Result<()> {
        write_png_streamed(&self.out, |rows| {
            self.engine.render_into(source, options, rows).map(drop)
        })
    }

    /// Two ways of rendering `input`, one warm-up of each, then `runs` of each alternating:
    /// the samples of both, so that their ratio compares runs made together on a host whose
    /// speed drifts.
    fn alternating(
        &self,
        input: &Input,
        heads: usize,
        first: (&str, impl Fn() -> anyhow::Result<f64>),
        second: (&str, impl Fn() -> anyhow::Result<f64>),
    ) -> anyhow::Result<(Sample, Sample)> {
        first.1()?;
        second.1()?;
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..self.sizes.runs {
            a.push(first.1()?);
            b.push(second.1()?);
        }
        let bytes = file_len(&input.path);
        let sample = |name: &str, runs| Sample {
            name: name.into(),
            input_bytes: bytes,
            heads,
            runs,
            per_frame: false,
        };
        Ok((sample(first.0, a), sample(second.0, b)))
    }

    /// stats-grid: export-grid with the pattern statistics of every head (`render
    /// --stats-json`'s pass, their JSON left out), its runs alternating with export-grid's
    /// (the second sample), so that the ratio (issue 17 asks for at most 1.10) compares runs
    /// made together on a host whose speed drifts.
    fn stats_grid(&self, input: &Input, heads: usize) -> anyhow::Result<(Sample, Sample)> {
        let (plain, stats) = (RenderOptions::default(), stats_options());
        self.alternating(
            input,
            heads,
            ("stats-grid", || self.render_seconds(input, &stats)),
            ("export-grid", || self.render_seconds(input, &plain)),
        )
    }

    /// coop: the cooperative-matrix probe (`attnviz::pool::CoopProbe`) on a second device of
    /// the engine's adapter, beside the f32 FMA probe (`fma`, where a Q/K scenario measured it
    /// in this run), or the line saying the adapter has none.
    fn coop(&self, fma: Option<f64>) -> anyhow::Result<String> {
        let gpu = &self.engine.gpu;
        let Some(coop) = gpu.with_cooperative_matrices()? else {
            return Ok(format!(
                "coop: {} has no cooperative matrices of 16 × 16 × 16 f16 into f32 \
                 (wgpu's EXPERIMENTAL_COOPERATIVE_MATRIX, with SHADER_F16 and SUBGROUP)",
                gpu.info.name
            ));
        };
        // (in error scopes: a shader the experimental implementation refuses is named as such,
        // not as the wrong tiles it leaves)
        let rate = coop.scoped("the cooperative-matrix probe", || {
            attnviz::pool::CoopProbe::new(&coop).measure(&coop)
        })?;
        let fma = match fma {
            Some(f) => f,
            None => attnviz::pool::FmaProbe::new(gpu).gflops(gpu)?,
        };
        Ok(format!(
            "coop: 16 × 16 × 16 f16 · f16 + f32 cooperative matrices {:.1} TFLOP/s ({} subgroups \
             a workgroup, every tile exact), {:.1}x the f32 FMA probe's {:.1} TFLOP/s",
            rate.tflops,
            rate.subgroups,
            rate.tflops * 1e3 / fma,
            fma / 1e3
        ))
    }

    /// recolor: a new norm and colormap on the grid's resident scene, per frame.
    fn recolor(&self, scene: &mut Scene) -> anyhow::Result<Row> {
        let mut i = 0usize;
        let sample = measure("recolor", 0, 64, self.sizes.frames, true, || {
            i += 1;
            let norm = [Norm::Head, Norm::Layer, Norm::Global][i % 3];
            let colormap = Colormap::ALL[i % Colormap::ALL.len()];
            self.engine.recolor(scene, norm, Reduce::Max, colormap)?;
            self.engine.gpu.wait()
        })?;
        Ok(sample.into())
    }

    /// frame: the grid's scene drawn into a 1920×1080 target, per frame.
    fn frame(&self, scene: &Scene) -> anyhow::Result<Row> {
        let target = self
            .engine
            .gpu
            .device
            .create_texture(&wgpu::TextureDescriptor {
                label: Some("attnviz.bench.frame"),
                size: wgpu::Extent3d {
                    width: 1920,
                    height: 1080,
                    depth_or_array_layers: 1,
                },
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D2,
                format: wgpu::TextureFormat::Rgba8Unorm,
                usage: wgpu::TextureUsages::RENDER_ATTACHMENT,
                view_formats: &[],
            });
        let view = target.create_view(&Default::default());
        let sample = measure("frame", 0, 64, self.sizes.frames, true, || {
            self.engine.draw(scene, &view, (1920, 1080))?;
            self.engine.gpu.wait()
        })?;
        Ok(sample.into())
    }

    /// upload: host-to-device copies alone, the ceiling for any scenario that reads a file.
    fn upload(&self) -> anyhow::Result<Row> {
        let bytes = self.sizes.upload_bytes;
        let mut upload = attnviz::pool::UploadBench::new(&self.engine.gpu);
        let sample = measure("upload", bytes, 0, self.sizes.runs, false, || {
            upload.run(&self.engine.gpu, bytes)
        })?;
        Ok(sample.into())
    }

    /// pool-resident: the grid's pooling alone, on data already in device memory: what the GPU
    /// sustains without the host-to-device copy (the same as export-grid on unified memory).
    fn pool_resident(&self) -> anyhow::Result<Row> {
        let seq = self.sizes.grid_seq;
        let bytes = (64 * seq * seq * 4) as u64;
        let sample = measure("pool-resident", bytes, 64, self.sizes.runs, false, || {
            self.engine
                .resident_pool_seconds(64, seq, seq, 256)
                .map(|_| ())
        })?;
        Ok(sample.into())
    }
}
