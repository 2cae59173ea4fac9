//! The GPU side of [`QkSource`]. Figures take the one-pass path of `tiled` (scores pooled
//! where they are computed), or, when every probability is needed (pattern statistics, a
//! reader of whole blocks: `QkReader`), its row kernel run twice per chunk of rows, once for
//! the rows' lse and once to store their probabilities. The two-pass kernels here take what the
//! row kernel does not (zoomed key ranges, heads over 128 dimensions, non-finite Q or K):
//! every query row of a head gets its softmax statistics first (`row_stats`,
//! shaders/qk.wgsl); then each block of rows gets its probabilities (`probabilities`), written
//! into a chunk-sized device buffer that the pooling pass reads in the next submission.
//! Nothing larger than one chunk of probabilities ever exists; Q and K of one head are the
//! only other inputs.

mod tiled;

pub use tiled::kernel_source as pooled_kernel_source;
pub use tiled::{row_kernel_shape, RowKernelShape};

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::kernel::{Binding, Kernel};
use crate::gpu::shaders;
use crate::gpu::Gpu;
use crate::pool::accum::AccumLayout;
use crate::pool::chunk::{max_chunk_bytes, ChunkTexture};
use crate::pool::{Ingest, IngestShape, PoolPipelines, PoolRun, PooledCells};
use crate::source::qk::{HiddenKeys, QkSource, Values};
use crate::source::{AttentionSource, DType};

const WG: u32 = 64;
/// Query rows per `row_stats` dispatch: enough workgroups to fill a large GPU, few enough that
/// one dispatch stays well under a display driver's watchdog on a long head.
const STATS_ROWS: usize = 16384;
/// Keys added to the row statistics per dispatch: bounds each invocation's loop (llvmpipe stops
/// a shader's loops after 65535 iterations; a display driver's watchdog stops long dispatches).
const STATS_KEYS: usize = 8192;

/// Mirrors `QkParams` in `shaders/qk.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
struct QkParams {
    rows: u32,
    row_start: u32,
    keys: u32,
    flags: u32,
    diagonal: i32,
    scale: f32,
    out_offset: u32,
    key_start: u32,
    out_keys: u32,
    seg_start: u32,
    seg_end: u32,
    window: u32,
    softcap: f32,
    sink: f32,
    chunk: u32,
    _pad: [u32; 2],
}

const FLAG_CAUSAL: u32 = 1;
const FLAG_RESUME: u32 = 2;
const FLAG_SINK: u32 = 4;
const FLAG_LOGITS: u32 = 8;
const FLAG_RANGED: u32 = 16;

/// A layer's settings in the units both Q/K shaders take: scores in base 2 (scale and softcap
/// times log2(e); softcap 0: none), the window and the attention chunks in keys (0: none).
struct KernelLayer {
    scale: f32,
    window: u32,
    chunk: u32,
    softcap: f32,
}

impl KernelLayer {
    fn of(src: &QkSource, layer: usize) -> KernelLayer {
        use std::f32::consts::LOG2_E;
        let p = src.layer(layer);
        let (window, chunk) = src.hidden(layer).kernel_params();
        KernelLayer {
            scale: p.scale * LOG2_E,
            window,
            chunk,
            softcap: p.softcap.map_or(0.0, |c| c * LOG2_E),
        }
    }
}

/// The parameters of query head (`layer`, `head`) that come from its layer's settings: base-2
/// scale, window, softcap and sink (see `shaders/qk.wgsl`).
fn layer_params(src: &QkSource, layer: usize, head: usize, base: QkParams) -> QkParams {
    let sink = src.layer(layer).sink(head);
    let k = KernelLayer::of(src, layer);
    QkParams {
        flags: (base.flags & (FLAG_CAUSAL | FLAG_LOGITS | FLAG_RANGED))
            | if sink.is_some() { FLAG_SINK } else { 0 },
        scale: k.scale,
        window: k.window,
        chunk: k.chunk,
        softcap: k.softcap,
        sink: sink.map_or(0.0, |s| s * std::f32::consts::LOG2_E),
        ..base
    }
}

struct Kernels {
    kernel: Kernel,
    row_stats: wgpu::ComputePipeline,
    probabilities: wgpu::ComputePipeline,
}

/// The Q/K kernels, compiled on first use for each head dimension (rounded up to a multiple
/// of 4), because a row is held in registers as a fixed-size array.
#[derive(Default)]
pub(crate) struct QkPipelines {
    by_dim: Mutex<HashMap<u32, Arc<Kernels>>>,
    /// The one-pass pooled path ([`tiled`]).
    tiled: tiled::TiledPipelines,
}

impl QkPipelines {
    fn kernels(&self, device: &wgpu::Device, d4: u32) -> Arc<Kernels> {
        let mut map = self.by_dim.lock().expect("qk pipelines");
        map.entry(d4)
            .or_insert_with(|| {
                use Binding::*;
                // params, Q, K, row statistics, probabilities out; the texture copies of Q,
                // K and the statistics the passes read; the rows' key ranges
                let kernel = Kernel::compute(
                    device,
                    "attnviz.qk",
                    &kernel_source(d4),
                    &[
                        Uniform,
                        BufReadOnly,
                        BufReadOnly,
                        Buffer,
                        Buffer,
                        Chunk,
                        Chunk,
                        Chunk,
                        BufReadOnly,
                    ],
                );
                Arc::new(Kernels {
                    row_stats: kernel.pipeline(device, "row_stats"),
                    probabilities: kernel.pipeline(device, "probabilities"),
                    kernel,
                })
            })
            .clone()
    }
}

/// The Q/K shader for head dimension `4 * d4`, with its `row:` lines expanded (see the
/// comment at the top of shaders/qk.wgsl).
pub fn kernel_source(d4: u32) -> String {
    let mut out = String::with_capacity(shaders::QK_TEMPLATE.len() + 64 * d4 as usize);
    for line in shaders::QK_TEMPLATE.lines() {
        let indent = &line[..line.len() - line.trim_start().len()];
        let Some(cmd) = line.trim_start().strip_prefix("// row: ") else {
            if line.starts_with("const D4: u32") {
                out.push_str(&format!("const D4: u32 = {d4}u;\n"));
            } else {
                out.push_str(line);
                out.push('\n');
            }
            continue;
        };
        let words: Vec<&str> = cmd.split_whitespace().collect();
        // BUF[BASE] split at the first '[' (BASE may hold spaces).
        let indexed = |from: usize| {
            let rest = words[from..].join(" ");
            let (buf, base) = rest.split_once('[').expect("BUF[BASE]");
            (buf.to_string(), base.trim_end_matches(']').to_string())
        };
        match words[0] {
            "var" => {
                for i in 0..d4 {
                    out.push_str(&format!("{indent}var row{i} = vec4<f32>();\n"));
                }
            }
            "load" => {
                let (buf, base) = indexed(1);
                for i in 0..d4 {
                    out.push_str(&format!("{indent}row{i} = {buf}[{base} + {i}u];\n"));
                }
            }
            "dot" => {
                let rest = words[2..].join(" ");
                let terms: Vec<String> =
                    if let Some((f, base)) = rest.split_once('(').filter(|_| !rest.contains('[')) {
                        // F(BASE): a function reading vec4 BASE + I
                        let base = base.strip_suffix(')').expect("F(BASE)");
                        (0..d4)
                            .map(|i| format!("dot(row{i}, {f}({base} + {i}u))"))
                            .collect()
                    } else {
                        let (buf, base) = indexed(2);
                        (0..d4)
                            .map(|i| format!("dot(row{i}, {buf}[{base} + {i}u])"))
                            .collect()
                    };
                out.push_str(&format!(
                    "{indent}var {} = {};\n",
                    words[1],
                    terms.join(" + ")
                ));
            }
            other => panic!("shaders/qk.wgsl: unknown row command {other}"),
        }
    }
    out
}

/// Q and K of one head at a time on the device, and the passes that turn a block of its rows
/// into probabilities in `out`.
struct HeadPasses<'a> {
    gpu: &'a Gpu,
    kernels: Arc<Kernels>,
    d4: usize,
    rows: usize,
    /// Keys in K, and the keys written out.
    keys: usize,
    out_keys: usize,
    q: wgpu::Buffer,
    k: wgpu::Buffer,
    stats: wgpu::Buffer,
    /// Copies of `q`, `k` and `stats` the passes read (see `pool::chunk`).
    q_tex: ChunkTexture,
    k_tex: ChunkTexture,
    stats_tex: ChunkTexture,
    params: wgpu::Buffer,
    /// Per position, the keys its query sees in the layer of `loaded_ranges` (a source with
    /// bidirectional spans: [`QkSource::key_ranges`]); 16 unread bytes otherwise.
    ranges: wgpu::Buffer,
    bind_group: wgpu::BindGroup,
    base: QkParams,
    loaded_q: Option<(usize, usize)>,
    loaded_k: Option<(usize, usize)>,
    loaded_ranges: Option<usize>,
    /// Host staging for one head's Q or K, reused.
    scratch: Vec<f32>,
}

/// Fails, naming `src`, when one head's Q or K (`d4` vec4s a row) would not fit a storage
/// binding or its rows a dispatch.
fn check_fits(gpu: &Gpu, src: &QkSource, d4: usize) -> Result<()> {
    // (the passes read Q and K through texture copies too)
    let max_binding = gpu.max_binding().min(max_chunk_bytes(gpu));
    let max_groups = gpu.limits.max_compute_workgroups_per_dimension as usize;
    for (what, n) in [("query rows", src.rows().len()), ("keys", src.all_keys())] {
        let bytes = (n * d4 * 16) as u64;
        if bytes > max_binding {
            return Err(Error::BadOption(format!(
                "{}: {n} {what} of dimension {} need {bytes} bytes per head, over the GPU's {max_binding}-byte storage binding",
                src.name(),
                src.dim()
            )));
        }
        if n.div_ceil(WG as usize) > max_groups {
            return Err(Error::BadOption(format!(
                "{}: {n} {what} exceed the GPU's dispatch limit",
                src.name()
            )));
        }
    }
    Ok(())
}

impl<'a> HeadPasses<'a> {
    fn new(
        gpu: &'a Gpu,
        pipes: &QkPipelines,
        src: &QkSource,
        out: &wgpu::Buffer,
    ) -> Result<HeadPasses<'a>> {
        let device = &gpu.device;
        let d4 = src.dim().div_ceil(4);
        let rows = src.rows().len();
        let keys = src.all_keys();
        check_fits(gpu, src, d4)?;
        let storage = |label: &str, size: usize| {
            crate::gpu::buffer(
                device,
                label,
                size.max(4) as u64,
                wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_DST
                    | wgpu::BufferUsages::COPY_SRC,
            )
        };
        let q = storage("attnviz.qk.q", rows * d4 * 16);
        let k = storage("attnviz.qk.k", keys * d4 * 16);
        let stats = storage("attnviz.qk.row_stats", (rows * 8).next_multiple_of(16));
        let q_tex = ChunkTexture::new(gpu, q.size());
        let k_tex = ChunkTexture::new(gpu, k.size());
        let stats_tex = ChunkTexture::new(gpu, stats.size());
        let params = crate::gpu::buffer(
            device,
            "attnviz.qk.params",
            std::mem::size_of::<QkParams>() as u64,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        );
        let ranges = storage(
            "attnviz.qk.key_ranges",
            if src.ranged() { keys * 8 } else { 16 },
        );
        let kernels = pipes.kernels(device, d4 as u32);
        let bind_group = kernels.kernel.bind_group(
            device,
            &[
                wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &params,
                    offset: 0,
                    size: NonZeroU64::new(std::mem::size_of::<QkParams>() as u64),
                }),
                q.as_entire_binding(),
                k.as_entire_binding(),
                stats.as_entire_binding(),
                out.as_entire_binding(),
                wgpu::BindingResource::TextureView(&q_tex.view),
                wgpu::BindingResource::TextureView(&k_tex.view),
                wgpu::BindingResource::TextureView(&stats_tex.view),
                ranges.as_entire_binding(),
            ],
        );
        Ok(HeadPasses {
            gpu,
            kernels,
            d4,
            rows,
            keys,
            out_keys: src.out_keys().len(),
            q,
            k,
            stats,
            q_tex,
            k_tex,
            stats_tex,
            params,
            ranges,
            bind_group,
            base: QkParams {
                rows: 0,
                row_start: 0,
                keys: keys as u32,
                flags: if src.causal() { FLAG_CAUSAL } else { 0 }
                    | if src.values() == Values::Logits {
                        FLAG_LOGITS
                    } else {
                        0
                    }
                    | if src.ranged() { FLAG_RANGED } else { 0 },
                diagonal: src.key_diagonal() as i32,
                scale: 0.0,
                out_offset: 0,
                key_start: src.out_keys().start as u32,
                out_keys: src.out_keys().len() as u32,
                seg_start: 0,
                seg_end: 0,
                window: 0,
                softcap: 0.0,
                sink: 0.0,
                chunk: 0,
                _pad: [0; 2],
            },
            loaded_q: None,
            loaded_k: None,
            loaded_ranges: None,
            scratch: Vec::new(),
        })
    }

    /// Uploads Q and K for query head (`layer`, `head`), skipping what is already resident
    /// (heads of a GQA group share their K).
    fn load(&mut self, src: &QkSource, layer: usize, head: usize) -> Result<()> {
        self.base = layer_params(src, layer, head, self.base);
        if self.loaded_q != Some((layer, head)) {
            let rows = src.rows();
            let values = src.queries_f32(layer, head, rows)?;
            self.upload(&values, src.dim(), self.rows, true);
            self.loaded_q = Some((layer, head));
        }
        if src.ranged() && self.loaded_ranges != Some(layer) {
            let table = src.key_ranges(layer);
            self.gpu
                .queue
                .write_buffer(&self.ranges, 0, bytemuck::cast_slice(&table));
            self.loaded_ranges = Some(layer);
        }
        let kv = (layer, src.kv_head(head));
        if self.loaded_k != Some(kv) {
            let values = src.keys_f32(layer, head)?;
            self.upload(&values, src.dim(), self.keys, false);
            self.loaded_k = Some(kv);
        }
        Ok(())
    }

    /// Writes `n` rows of `d` values, zero-padded to whole vec4s.
    fn upload(&mut self, values: &[f32], d: usize, n: usize, is_q: bool) {
        let padded = self.d4 * 4;
        let data: &[f32] = if padded == d {
            values
        } else {
            self.scratch.clear();
            self.scratch.resize(n * padded, 0.0);
            for (dst, src) in self
                .scratch
                .chunks_exact_mut(padded)
                .zip(values.chunks_exact(d))
            {
                dst[..d].copy_from_slice(src);
            }
            &self.scratch
        };
        let (target, tex) = if is_q {
            (&self.q, &self.q_tex)
        } else {
            (&self.k, &self.k_tex)
        };
        let gpu = self.gpu;
        gpu.queue
            .write_buffer(target, 0, bytemuck::cast_slice(data));
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        tex.copy_from(&mut encoder, target, 0, (n * padded * 4) as u64);
        gpu.submit([encoder.finish()]);
    }

    /// Writes the parameters for computed rows `rows`; they take effect at the next
    /// submission, so work encoded with them must be submitted before they are written again.
    fn set_rows(&self, rows: &Range<usize>, out_offset: u32) {
        let params = QkParams {
            rows: rows.len() as u32,
            row_start: rows.start as u32,
            out_offset,
            ..self.base
        };
        self.gpu
            .queue
            .write_buffer(&self.params, 0, bytemuck::bytes_of(&params));
    }

    /// Computes the softmax statistics of computed rows `rows`, in dispatches over many rows
    /// at once (one workgroup per 64 rows, so the whole GPU works on them; per block, a long
    /// head would give it only a couple of workgroups) and a bounded segment of keys each,
    /// the online state carried from one segment to the next in the statistics buffer.
    fn row_stats(&self, src: &QkSource, layer: usize, rows: Range<usize>) {
        if self.base.flags & FLAG_LOGITS != 0 {
            // Logits need no softmax denominator.
            return;
        }
        for start in rows.clone().step_by(STATS_ROWS) {
            let group = start..rows.end.min(start + STATS_ROWS);
            // Keys the group's last row sees (the most of any of its rows); at least one
            // dispatch, which also initializes rows that see none.
            let seen = src.visible(layer, group.end - 1).end;
            // Keys the group's first row sees from (the oldest of any of its rows, with a
            // sliding window): segments before it are skipped.
            let oldest = src.visible(layer, group.start).start;
            for seg in (oldest..seen.max(oldest + 1)).step_by(STATS_KEYS) {
                let resume = if seg > oldest { FLAG_RESUME } else { 0 };
                let params = QkParams {
                    rows: group.len() as u32,
                    row_start: group.start as u32,
                    seg_start: seg as u32,
                    seg_end: (seg + STATS_KEYS).min(self.keys) as u32,
                    flags: self.base.flags | resume,
                    ..self.base
                };
                self.gpu
                    .queue
                    .write_buffer(&self.params, 0, bytemuck::bytes_of(&params));
                let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
                {
                    let mut pass = self.gpu.compute_pass(&mut encoder, "attnviz.qk.row_stats");
                    pass.set_bind_group(0, &self.bind_group, &[]);
                    pass.set_pipeline(&self.kernels.row_stats);
                    pass.dispatch_workgroups((group.len() as u32).div_ceil(WG), 1, 1);
                }
                self.gpu.submit([encoder.finish()]);
            }
        }
        // The probabilities read the statistics through their texture copy.
        let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
        self.stats_tex
            .copy_from(&mut encoder, &self.stats, 0, self.stats.size());
        self.gpu.submit([encoder.finish()]);
    }

    /// Records the probabilities of computed rows `rows` (their statistics already computed),
    /// landing in `out` from element `out_offset` on; submit before the next call.
    fn encode_block(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        rows: Range<usize>,
        out_offset: u32,
    ) {
        self.set_rows(&rows, out_offset);
        let mut pass = self.gpu.compute_pass(encoder, "attnviz.qk.probabilities");
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.set_pipeline(&self.kernels.probabilities);
        pass.dispatch_workgroups(
            (self.out_keys as u32).div_ceil(WG),
            (rows.len() as u32).div_ceil(WG),
            1,
        );
    }
}

/// Recomputes and pools `cells` of `src` on the GPU. Masking follows the source (its
/// `causal` flag), whatever `options.causal` says, since Q and K carry no mask of their own.
pub(crate) fn pool_qk(
    gpu: &Gpu,
    pool: &PoolPipelines,
    pipes: &QkPipelines,
    src: &QkSource,
    run: &PoolRun<'_>,
) -> Result<PooledCells> {
    let (cells, geometry, progress) = (run.cells, run.geometry, run.progress);
    gpu.scoped("recomputing attention from Q and K", || {
        let s = src.shape();
        let options = run.options.for_qk(src);
        let shape = IngestShape {
            cells: cells.len(),
            queries: s.queries,
            keys: s.keys,
            dtype: DType::F32,
            geometry,
            options,
            chunk_target: run.chunk_bytes,
        };
        // Logits mask the keys a sliding window or chunk hides (the one-pass path counts only
        // what a row sees; the two-pass path's pool pass masks them).
        let hidden: Vec<HiddenKeys> = cells.iter().map(|&(l, _)| src.mask_hidden(l)).collect();
        // (and, for a layer with bidirectional spans, each position's keys: one table a layer,
        // which each of its cells names)
        let (mut tables, mut layer_of_table) = (Vec::new(), Vec::new());
        let table_of: Vec<Option<usize>> = cells
            .iter()
            .map(
                |&(l, _)| match layer_of_table.iter().position(|&t| t == l) {
                    Some(t) => Some(t),
                    None => src.mask_ranges(l).map(|table| {
                        tables.push(table);
                        layer_of_table.push(l);
                        tables.len() - 1
                    }),
                },
            )
            .collect();
        // Narrow columns are pooled from stored probabilities, with or without statistics.
        let narrow = tiled::stores_narrow_columns(gpu, src, geometry);
        // The one-pass fold (`shaders/qk_pool.wgsl`) writes whole `Accum`s; the pool pass,
        // which every other path here feeds, also writes bins of one entry as one word.
        let folds = tiled::applies(gpu, src, geometry) && !narrow;
        let layout = if folds {
            AccumLayout::Full
        } else {
            AccumLayout::for_bins(s.queries, s.keys, geometry)
        };
        let new_ingest = || {
            let mut ingest = Ingest::with_layout(gpu, pool, shape, run.patterns, layout)
                .map_err(|e| e.about(src.name()))?;
            ingest.set_hidden(hidden.clone(), src.out_keys().start);
            ingest.set_key_ranges(&tables, &table_of);
            // (`attnviz heads`: stored probabilities go to the statistics alone, as a stored
            // file's rows do; the fused path's figure is the row kernel's, which it needs for
            // the rows' lse anyway)
            ingest.set_pooled(run.pooled);
            Ok::<_, Error>(ingest)
        };
        let mut ingest = new_ingest()?;
        // Pattern statistics need every probability (column and diagonal masses sum each
        // entry over rows, after its row's normalizer is known): the row kernel stores them a
        // chunk at a time where it can, for the pool pass to read on the device with the
        // statistics folded in; the two-pass path below otherwise.
        // Where the adapter holds 16 keys' K in a lane, the statistics come from the scores
        // themselves, after the figure's run of the row kernel has left each row's lse
        // (`pool::pattern_qk`): nothing stored.
        let fused = run
            .patterns
            .and_then(|_| tiled::pattern_rows(gpu, src, geometry, &ingest));
        let one_pass = match run.patterns {
            None => tiled::applies(gpu, src, geometry),
            Some(_) => fused.is_some() || tiled::materializes(gpu, src, geometry),
        };
        if one_pass {
            let run = PoolRun { options, ..*run };
            let t = &pipes.tiled;
            let pooled = match (run.patterns, fused) {
                // (with statistics too: the fused pass pools the figure in one pass, whose
                // state per score costs more than a stored probability here)
                _ if narrow => tiled::pool_materialized(gpu, t, src, &run, &mut ingest)?,
                (None, _) => tiled::pool_into(gpu, t, src, &run, &mut ingest)?,
                (Some(_), Some(rows)) => {
                    tiled::pool_with_patterns(gpu, t, src, &run, &mut ingest, rows)?
                }
                (Some(_), None) => tiled::pool_materialized(gpu, t, src, &run, &mut ingest)?,
            };
            if pooled {
                return ingest.finish();
            }
            // Non-finite Q or K: the two-pass path below gives the probabilities they make
            // (NaN rows, flagged in the accumulators) the CPU reference's semantics.
            ingest = new_ingest()?;
        }
        // Each block's probabilities land here and are pooled from here, in queue order: the
        // next block's pass is submitted after the pooling that reads this one.
        let step = ingest.max_rows_per_fill();
        let chunk = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("attnviz.qk.chunk"),
            size: ((step * s.keys * 4) as u64).next_multiple_of(16),
            // written by the probability pass, copied into the pool pass's chunk texture
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let mut passes = HeadPasses::new(gpu, pipes, src, &chunk)?;
        let total = (cells.len() * s.queries * s.keys * 4) as u64;
        for (i, &(layer, head)) in cells.iter().enumerate() {
            passes.load(src, layer, head)?;
            passes.row_stats(src, layer, 0..s.queries);
            let mut row = 0;
            while row < s.queries {
                let n = step.min(s.queries - row);
                let mut encoder = gpu.device.create_command_encoder(&Default::default());
                passes.encode_block(&mut encoder, row..row + n, 0);
                gpu.submit([encoder.finish()]);
                ingest.pool_resident(i, row, n, &chunk, 0)?;
                row += n;
                if let Some(p) = progress {
                    p(ingest.consumed, total);
                }
            }
        }
        ingest.finish()
    })
}

/// Reads a [`QkSource`]'s probabilities back block after block with everything made once:
/// the head's Q and K stay on the device while its blocks are read (K across a GQA group
/// too), and the output and its readback buffer are reused. Writing a long head out would
/// otherwise re-upload K and allocate (and zero) two block-sized buffers per block.
pub(crate) struct QkReader<'a> {
    gpu: &'a Gpu,
    /// The row kernel's reader, where it takes the source (see [`tiled::RowReader`]); the
    /// two-pass kernels otherwise, and for heads whose Q or K is not finite.
    rows: Option<tiled::RowReader<'a>>,
    /// The two-pass kernels and the block they write: made with the reader when the row
    /// kernel does not take the source (so a head too large for them fails at once, as it
    /// always has), else only when a head needs them (a non-finite Q or K).
    two_pass: Option<(HeadPasses<'a>, wgpu::Buffer)>,
    pipes: &'a QkPipelines,
    src: &'a QkSource,
    readback: wgpu::Buffer,
    max_rows: usize,
}

impl<'a> QkReader<'a> {
    pub(crate) fn new(gpu: &'a Gpu, pipes: &'a QkPipelines, src: &'a QkSource) -> Result<Self> {
        let mut reader = QkReader {
            gpu,
            rows: tiled::RowReader::new(gpu, &pipes.tiled, src),
            two_pass: None,
            pipes,
            src,
            readback: Self::block(
                gpu,
                src,
                "attnviz.qk.readback",
                wgpu::BufferUsages::MAP_READ,
            ),
            max_rows: Self::block_rows(gpu, src),
        };
        if reader.rows.is_none() {
            reader.two_pass()?;
        }
        Ok(reader)
    }

    /// Rows of `src` one block buffer holds.
    fn block_rows(gpu: &Gpu, src: &QkSource) -> usize {
        let row_bytes = src.out_keys().len().max(1) * 4;
        (gpu.max_binding() as usize / row_bytes).clamp(1, src.rows().len().max(1))
    }

    /// A buffer of one block of `src`'s rows, copied into (`usage` and `COPY_DST`) or out of.
    fn block(gpu: &Gpu, src: &QkSource, label: &str, usage: wgpu::BufferUsages) -> wgpu::Buffer {
        let bytes = Self::block_rows(gpu, src) * src.out_keys().len().max(1) * 4;
        gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: (bytes as u64).next_multiple_of(16),
            usage: usage | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// The two-pass kernels and their block, made on first use.
    fn two_pass(&mut self) -> Result<&mut (HeadPasses<'a>, wgpu::Buffer)> {
        if self.two_pass.is_none() {
            let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
            let out = Self::block(self.gpu, self.src, "attnviz.qk.out", usage);
            let passes = HeadPasses::new(self.gpu, self.pipes, self.src, &out)?;
            self.two_pass = Some((passes, out));
        }
        Ok(self.two_pass.as_mut().expect("made above"))
    }

    /// Rows one [`QkReader::read`] takes at most.
    pub(crate) fn max_rows(&self) -> usize {
        self.max_rows
    }

    /// Computed rows `rows` (at most [`QkReader::max_rows`]) of head (`layer`, `head`) of
    /// `src` (the source the reader was made for) as f32 probabilities into `dst`.
    pub(crate) fn read(
        &mut self,
        src: &QkSource,
        layer: usize,
        head: usize,
        rows: Range<usize>,
        dst: &mut [u8],
    ) -> Result<()> {
        let bytes = rows.len() * src.out_keys().len() * 4;
        if rows.len() > self.max_rows || rows.end > src.rows().len() || dst.len() != bytes {
            return Err(Error::BadOption(format!(
                "{}: rows {rows:?} do not fit one read-back",
                src.name()
            )));
        }
        let gpu = self.gpu;
        gpu.scoped("recomputing attention from Q and K", || {
            if let Some(reader) = self.rows.as_mut() {
                let row_bytes = bytes / rows.len().max(1);
                let mut done = 0;
                while done < rows.len() {
                    let n = reader.max_rows().min(rows.len() - done);
                    if !reader.compute(layer, head, rows.start + done, n)? {
                        break;
                    }
                    let mut encoder = gpu.device.create_command_encoder(&Default::default());
                    encoder.copy_buffer_to_buffer(
                        reader.probabilities(),
                        0,
                        &self.readback,
                        (done * row_bytes) as u64,
                        (n * row_bytes) as u64,
                    );
                    gpu.submit([encoder.finish()]);
                    done += n;
                }
                if done == rows.len() {
                    return gpu.map_read_into(&self.readback, dst);
                }
            }
            let readback = self.readback.clone();
            let (passes, out) = self.two_pass()?;
            passes.load(src, layer, head)?;
            passes.row_stats(src, layer, rows.clone());
            let mut encoder = gpu.device.create_command_encoder(&Default::default());
            passes.encode_block(&mut encoder, rows.clone(), 0);
            encoder.copy_buffer_to_buffer(out, 0, &readback, 0, bytes as u64);
            gpu.submit([encoder.finish()]);
            gpu.map_read_into(&self.readback, dst)
        })
    }
}

/// Computed rows `rows` of head (`layer`, `head`) as probabilities, read back at once: the
/// GPU's materialized attention, for comparison with the CPU reference.
pub(crate) fn probabilities(
    gpu: &Gpu,
    pipes: &QkPipelines,
    src: &QkSource,
    layer: usize,
    head: usize,
    rows: Range<usize>,
) -> Result<Vec<f32>> {
    if rows.end > src.rows().len() {
        return Err(Error::BadOption(format!(
            "{}: rows {rows:?} do not fit one read-back",
            src.name()
        )));
    }
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    // Only the requested rows of Q are uploaded (and keep their positions for the mask).
    let block = src.region(rows.clone(), 0..src.shape().keys)?;
    let mut reader = QkReader::new(gpu, pipes, &block)?;
    let mut bytes = vec![0u8; rows.len() * block.out_keys().len() * 4];
    reader.read(&block, layer, head, 0..rows.len(), &mut bytes)?;
    Ok(bytemuck::pod_collect_to_vec(&bytes))
}
