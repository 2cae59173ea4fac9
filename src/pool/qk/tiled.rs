//! Pooled attention from Q and K in one pass over the scores, with no probability ever stored
//! (shaders/qk_pool.wgsl): scores are computed a 64 × 64 tile at a time like a GEMM (Q and K
//! staged in workgroup memory 32 dimensions at a time, each of 64 invocations an 8 × 8 block
//! of scores in registers, so each loaded vec4 feeds 8 dot products), each tile is folded into per-(row, pooled column) states (max and min score, Σ exp2(s − max)),
//! and once a block of rows has seen all its keys, every row's log-sum-exp follows from its
//! states and every output pixel folds its rows into the pooled accumulators. Since
//! p = exp(s − lse) is monotone in s, a bin's largest and smallest probability are those of its
//! largest and smallest score: exact, up to the rounding of lse; the bin's sum is the same sum
//! in another order. The intermediate is rows × pooled columns per head (a block of rows at a
//! time), never N².
//!
//! Several heads go in each dispatch (workgroup z), sharing one upload of each key head among
//! the query heads of its GQA group. Tiles above a causal diagonal are never computed.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::{Arc, Mutex};

use bytemuck::{Pod, Zeroable};

use crate::error::Result;
use crate::gpu::kernel::{Binding, Kernel};
use crate::gpu::shaders;
use crate::gpu::{storage_buffer_init, Gpu};
use crate::pool::geometry::{bin_edges, bin_of, CellGeometry};
use crate::pool::{Ingest, PoolRun};
use crate::source::qk::QkSource;

/// Query rows per workgroup (`TQ` in the shader).
const TQ: usize = 64;
/// Invocations per `pool_scores` workgroup, and the workgroup memory it uses.
const WG: u32 = 64;
const WG_BYTES: u32 = 16384;
/// Keys per `pool_scores` dispatch: bounds each workgroup's loop (llvmpipe stops a shader's
/// loops after 65535 iterations; display drivers' watchdogs stop long dispatches).
const SEG_KEYS: usize = 8192;
/// Heads per dispatch at most.
const MAX_BATCH: usize = 8;
/// Widest pooled cell this path takes: `pool_lse` walks a row's pooled columns in one loop.
const MAX_POOLED_W: u32 = 8192;

const FLAG_CAUSAL: u32 = 1;
const FLAG_ROW_NORM: u32 = 2;

/// Mirrors `Params` in `shaders/qk_pool.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
struct Params {
    rows: u32,
    row_start: u32,
    q_rows: u32,
    keys: u32,
    flags: u32,
    diagonal: i32,
    scale: f32,
    seg_start: u32,
    seg_end: u32,
    pooled_w: u32,
    y_start: u32,
    px: u32,
    inter_rows: u32,
    _pad: [u32; 3],
}

struct Kernels {
    kernel: Kernel,
    scores: wgpu::ComputePipeline,
    lse: wgpu::ComputePipeline,
    fold: wgpu::ComputePipeline,
}

/// The one-pass kernels, compiled on first use for each padded head dimension.
#[derive(Default)]
pub(crate) struct TiledPipelines {
    by_dim: Mutex<HashMap<u32, Arc<Kernels>>>,
}

/// The head dimension in vec4s, padded for the shader, and the vec4s staged per step.
fn padded(dim: usize) -> (u32, u32) {
    let d4 = dim.div_ceil(4) as u32;
    if d4.is_multiple_of(8) {
        (d4, 8)
    } else {
        (d4.next_multiple_of(4), 4)
    }
}

/// The one-pass shader for `d4` vec4s of head dimension staged `slice` at a time.
pub fn kernel_source(d4: u32, slice: u32) -> String {
    shaders::QK_POOL_TEMPLATE
        .replace("const D4: u32 = 16u;", &format!("const D4: u32 = {d4}u;"))
        .replace(
            "const SLICE: u32 = 8u;",
            &format!("const SLICE: u32 = {slice}u;"),
        )
}

impl TiledPipelines {
    fn kernels(&self, device: &wgpu::Device, d4: u32, slice: u32) -> Arc<Kernels> {
        let mut map = self.by_dim.lock().expect("qk_pool pipelines");
        map.entry(d4)
            .or_insert_with(|| {
                use Binding::*;
                // params, Q, K, head table, key bins, column edges, row edges; then the
                // (row, pooled column) states, row lse and the accumulators written
                let kernel = Kernel::compute(
                    device,
                    "attnviz.qk_pool",
                    &kernel_source(d4, slice),
                    &[
                        Uniform,
                        BufReadOnly,
                        BufReadOnly,
                        BufReadOnly,
                        BufReadOnly,
                        BufReadOnly,
                        BufReadOnly,
                        Buffer,
                        Buffer,
                        Buffer,
                    ],
                );
                Arc::new(Kernels {
                    scores: kernel.pipeline(device, "pool_scores"),
                    lse: kernel.pipeline(device, "pool_lse"),
                    fold: kernel.pipeline(device, "pool_fold"),
                    kernel,
                })
            })
            .clone()
    }
}

/// Whether [`pool_into`] takes `src` into `geometry` on `gpu`: every key is output (the
/// viewer's zoomed regions normalize over keys they do not show, and go the two-pass way), the
/// pooled width fits one loop, one head's Q and K fit a binding, and the adapter offers the
/// workgroup the kernel needs.
pub(crate) fn applies(gpu: &Gpu, src: &QkSource, geometry: CellGeometry) -> bool {
    let l = &gpu.limits;
    let (d4, _) = padded(src.dim());
    let head = |n: usize| (n * d4 as usize * 16) as u64 <= gpu.max_binding();
    src.out_keys() == (0..src.all_keys())
        && geometry.pooled_w <= MAX_POOLED_W
        && head(src.rows().len())
        && head(src.all_keys())
        && l.max_compute_workgroup_storage_size >= WG_BYTES
        && l.max_compute_invocations_per_workgroup >= WG
        && l.max_compute_workgroup_size_x >= WG
}

/// One head of a batch: its query head, the slot of its key head, its accumulators.
struct Member {
    head: usize,
    kv_slot: u32,
    accum: u32,
}

/// Pools `cells` of `src` into `ingest`'s accumulators (see the module docs); `ingest` must
/// have been made for `src`'s shape, `geometry` and these cells. Masking follows the source.
pub(crate) fn pool_into(
    gpu: &Gpu,
    pipes: &TiledPipelines,
    src: &QkSource,
    run: &PoolRun<'_>,
    ingest: &mut Ingest,
) -> Result<()> {
    let (cells, geometry, progress) = (run.cells, run.geometry, run.progress);
    let (row_norm, chunk_target) = (run.options.row_norm, run.chunk_bytes);
    let device = &gpu.device;
    let (d4, slice) = padded(src.dim());
    let kernels = pipes.kernels(device, d4, slice);
    let rows = src.rows().len();
    let keys = src.all_keys();
    let pooled_w = geometry.pooled_w as usize;
    let max_binding = gpu.max_binding();
    let head_q = (rows * d4 as usize * 16) as u64;
    let head_k = (keys * d4 as usize * 16) as u64;
    // The per-(row, pooled column) states take at most an upload chunk's bytes (but always
    // one workgroup's rows of one head).
    let inter_cap = chunk_target
        .min(max_binding)
        .max((TQ * pooled_w * 16) as u64);
    let batch = MAX_BATCH
        .min(cells.len())
        .min((max_binding / head_q) as usize)
        .min((max_binding / head_k) as usize)
        .min((inter_cap / (TQ * pooled_w * 16) as u64) as usize)
        .max(1);
    let chunk_rows = ((inter_cap / (batch * pooled_w * 16) as u64) as usize / TQ * TQ)
        .clamp(TQ, rows.next_multiple_of(TQ));

    let buffer = |label: &str, size: u64| {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: size.max(16).next_multiple_of(16),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    };
    let q_buf = buffer("attnviz.qk_pool.q", batch as u64 * head_q);
    let k_buf = buffer("attnviz.qk_pool.k", batch as u64 * head_k);
    let heads_buf = buffer("attnviz.qk_pool.heads", batch as u64 * 8);
    let inter = buffer(
        "attnviz.qk_pool.inter",
        (batch * chunk_rows * pooled_w * 16) as u64,
    );
    let row_lse = buffer("attnviz.qk_pool.row_lse", (batch * chunk_rows * 8) as u64);
    let col_edges = bin_edges(keys, geometry.pooled_w);
    let row_edges = bin_edges(rows, geometry.pooled_h);
    let key_bin: Vec<u32> = (0..keys as u32).map(|k| bin_of(&col_edges, k)).collect();
    let init = |label: &str, data: &[u32]| {
        storage_buffer_init(
            device,
            label,
            bytemuck::cast_slice(data),
            wgpu::BufferUsages::empty(),
        )
    };
    let key_bin_buf = init("attnviz.qk_pool.key_bin", &key_bin);
    let col_buf = init("attnviz.qk_pool.col_edges", &col_edges);
    let row_buf = init("attnviz.qk_pool.row_edges", &row_edges);
    let params_buf = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("attnviz.qk_pool.params"),
        size: std::mem::size_of::<Params>() as u64,
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let base = Params {
        q_rows: rows as u32,
        keys: keys as u32,
        flags: if src.causal() { FLAG_CAUSAL } else { 0 }
            | if row_norm { FLAG_ROW_NORM } else { 0 },
        diagonal: src.key_diagonal() as i32,
        scale: src.scale() * std::f32::consts::LOG2_E,
        pooled_w: geometry.pooled_w,
        px: geometry.pooled_pixels() as u32,
        inter_rows: chunk_rows as u32,
        ..Default::default()
    };
    let write_params = |p: &Params| {
        gpu.queue
            .write_buffer(&params_buf, 0, bytemuck::bytes_of(p));
    };
    let total = (cells.len() * rows * keys * 4) as u64;
    let mut scratch: Vec<f32> = Vec::new();
    let mut upload = |target: &wgpu::Buffer, offset: u64, values: &[f32]| {
        let d = src.dim();
        let padded_d = d4 as usize * 4;
        let data: &[f32] = if padded_d == d {
            values
        } else {
            scratch.clear();
            scratch.resize(values.len() / d * padded_d, 0.0);
            for (dst, v) in scratch
                .chunks_exact_mut(padded_d)
                .zip(values.chunks_exact(d))
            {
                dst[..d].copy_from_slice(v);
            }
            &scratch
        };
        gpu.queue
            .write_buffer(target, offset, bytemuck::cast_slice(data));
    };

    let mut first = 0;
    while first < cells.len() {
        // A batch: consecutive cells of one layer whose accumulators are consecutive in one
        // buffer, each key head uploaded once.
        let layer = cells[first].0;
        let (accum, accum0) = ingest.resident_accum(first);
        let mut members: Vec<Member> = Vec::new();
        let mut kv_heads: Vec<usize> = Vec::new();
        let mut end = first;
        while end < cells.len() && members.len() < batch && cells[end].0 == layer {
            let (_, idx) = ingest.resident_accum(end);
            if idx != accum0 + (end - first) {
                break;
            }
            let kv = src.kv_head(cells[end].1);
            let slot = match kv_heads.iter().position(|&h| h == kv) {
                Some(s) => s,
                None => {
                    kv_heads.push(kv);
                    kv_heads.len() - 1
                }
            };
            members.push(Member {
                head: cells[end].1,
                kv_slot: slot as u32,
                accum: idx as u32,
            });
            end += 1;
        }
        for (z, m) in members.iter().enumerate() {
            let values = src.queries_f32(layer, m.head, src.rows())?;
            upload(&q_buf, z as u64 * head_q, &values);
        }
        for (slot, &kv) in kv_heads.iter().enumerate() {
            // Any query head of the group names its key head.
            let head = members
                .iter()
                .find(|m| m.kv_slot as usize == slot)
                .map_or(0, |m| m.head);
            debug_assert_eq!(src.kv_head(head), kv);
            let values = src.keys_f32(layer, head)?;
            upload(&k_buf, slot as u64 * head_k, &values);
        }
        let table: Vec<[u32; 2]> = members.iter().map(|m| [m.kv_slot, m.accum]).collect();
        gpu.queue
            .write_buffer(&heads_buf, 0, bytemuck::cast_slice(&table));
        let bind_group = kernels.kernel.bind_group(
            device,
            &[
                wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &params_buf,
                    offset: 0,
                    size: NonZeroU64::new(std::mem::size_of::<Params>() as u64),
                }),
                q_buf.as_entire_binding(),
                k_buf.as_entire_binding(),
                heads_buf.as_entire_binding(),
                key_bin_buf.as_entire_binding(),
                col_buf.as_entire_binding(),
                row_buf.as_entire_binding(),
                inter.as_entire_binding(),
                row_lse.as_entire_binding(),
                accum.as_entire_binding(),
            ],
        );
        let n = members.len() as u32;
        let dispatch = |params: &Params, f: &dyn Fn(&mut wgpu::ComputePass)| {
            write_params(params);
            let mut encoder = device.create_command_encoder(&Default::default());
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("attnviz.qk_pool"),
                    timestamp_writes: None,
                });
                pass.set_bind_group(0, &bind_group, &[]);
                f(&mut pass);
            }
            gpu.queue.submit([encoder.finish()]);
        };
        for start in (0..rows).step_by(chunk_rows) {
            let len = chunk_rows.min(rows - start);
            let chunk = Params {
                rows: len as u32,
                row_start: start as u32,
                ..base
            };
            // Keys the chunk's last row sees, the most of any of its rows.
            let seen = if src.causal() {
                ((start + len) as i64 + src.key_diagonal()).clamp(0, keys as i64) as usize
            } else {
                keys
            };
            let groups = len.div_ceil(TQ) as u32;
            for seg in (0..seen).step_by(SEG_KEYS) {
                let p = Params {
                    seg_start: seg as u32,
                    seg_end: (seg + SEG_KEYS).min(keys) as u32,
                    ..chunk
                };
                dispatch(&p, &|pass| {
                    pass.set_pipeline(&kernels.scores);
                    pass.dispatch_workgroups(groups, 1, n);
                });
            }
            let y0 = bin_of(&row_edges, start as u32);
            let y1 = bin_of(&row_edges, (start + len - 1) as u32);
            let p = Params {
                y_start: y0,
                ..chunk
            };
            dispatch(&p, &|pass| {
                pass.set_pipeline(&kernels.lse);
                pass.dispatch_workgroups(groups, 1, n);
                pass.set_pipeline(&kernels.fold);
                pass.dispatch_workgroups(geometry.pooled_w.div_ceil(64), y1 - y0 + 1, n);
            });
            ingest.consumed += (members.len() * len * keys * 4) as u64;
            if let Some(p) = progress {
                p(ingest.consumed, total);
            }
        }
        first = end;
    }
    Ok(())
}
