//! Criterion benchmarks of the GPU passes one by one, on small in-memory inputs so `cargo bench`
//! finishes in minutes even on a software rasterizer: a regression in one pass shows up here
//! before it is lost in the end-to-end figures of `attnviz bench`.
//!
//! - `pool`: ingest (rows written into mapped upload chunks) + pooling + per-head statistics,
//!   the one pass over the input, for f32 and f16 at a few head sizes;
//! - `producer_rows`: the same pooling fed f32 rows by a producer (`HeadAccumulator`);
//! - `stats`: the statistics reduction alone, on resident pooled cells;
//! - `colorize`: normalization + colormap of resident pooled cells (the recolor path).

use attnviz::pool::geometry::CellGeometry;
use attnviz::pool::{Causal, PoolOptions};
use attnviz::source::ArraySource;
use attnviz::{AttentionSource, Colormap, DType, Engine, Gpu, Norm, Reduce, RenderOptions};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ndarray::Array4;
use std::time::Duration;

/// The GPU engine; like the tests, a missing adapter is an error unless explicitly allowed.
fn engine() -> Option<Engine> {
    match Gpu::new() {
        Ok(gpu) => Some(Engine::new(gpu)),
        Err(e) if std::env::var("ATTNVIZ_ALLOW_NO_GPU").as_deref() == Ok("1") => {
            eprintln!("skipping GPU benchmarks: {e} (ATTNVIZ_ALLOW_NO_GPU=1)");
            None
        }
        Err(e) => panic!("no GPU adapter ({e}); set ATTNVIZ_ALLOW_NO_GPU=1 to skip"),
    }
}

/// Attention-like values (deterministic): small noise, a few spikes.
fn heads(l: usize, h: usize, q: usize, k: usize) -> Array4<f32> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    Array4::from_shape_fn((l, h, q, k), |_| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let v = (state >> 40) as f32 / (1u64 << 24) as f32;
        if v > 0.995 {
            1.0 - v * 0.1
        } else {
            v * v * 0.05
        }
    })
}

fn all_cells(src: &dyn AttentionSource) -> Vec<(usize, usize)> {
    let s = src.shape();
    (0..s.layers)
        .flat_map(|l| (0..s.heads).map(move |h| (l, h)))
        .collect()
}

fn bytes_of(src: &dyn AttentionSource) -> u64 {
    let s = src.shape();
    (s.layers * s.heads * s.queries * s.keys * src.dtype().size()) as u64
}

/// (heads, sequence length, cell side)
const SIZES: [(usize, usize, u32); 3] = [(4, 256, 64), (4, 1024, 256), (1, 4096, 512)];

fn pool(c: &mut Criterion) {
    let Some(e) = engine() else { return };
    let mut g = c.benchmark_group("pool");
    for dtype in [DType::F32, DType::F16] {
        for (h, seq, cell) in SIZES {
            let src = ArraySource::from_f32_as("bench", &heads(1, h, seq, seq), dtype);
            let cells = all_cells(&src);
            let geometry = CellGeometry::new(seq, seq, Some(cell)).unwrap();
            let options = PoolOptions {
                row_norm: false,
                causal: Causal::Auto,
                diagonal: None,
            };
            g.throughput(Throughput::Bytes(bytes_of(&src)));
            let id = BenchmarkId::new(dtype.name(), format!("{h}x{seq}x{seq}->{cell}"));
            g.bench_function(id, |b| {
                b.iter(|| e.pool(&src, &cells, geometry, options).unwrap())
            });
        }
    }
    g.finish();
}

fn producer_rows(c: &mut Criterion) {
    let Some(e) = engine() else { return };
    let mut g = c.benchmark_group("producer_rows");
    for (_, seq, cell) in SIZES {
        let rows: Vec<f32> = heads(1, 1, seq, seq).into_raw_vec_and_offset().0;
        g.throughput(Throughput::Bytes((rows.len() * 4) as u64));
        g.bench_function(format!("{seq}x{seq}->{cell}"), |b| {
            b.iter(|| {
                let mut acc = e
                    .head_accumulator(seq, seq, Some(cell), PoolOptions::default())
                    .unwrap();
                // Blocks of 64 rows, as a blockwise attention kernel would hand them over.
                for (i, block) in rows.chunks(64 * seq).enumerate() {
                    acc.push_rows(i * 64, block).unwrap();
                }
                acc.finish().unwrap().stats()
            })
        });
    }
    g.finish();
}

fn stats(c: &mut Criterion) {
    let Some(e) = engine() else { return };
    let mut g = c.benchmark_group("stats");
    for (h, seq, cell) in SIZES {
        let src = ArraySource::from_f32("bench", &heads(1, h, seq, seq));
        let geometry = CellGeometry::new(seq, seq, Some(cell)).unwrap();
        let pooled = e
            .pool(&src, &all_cells(&src), geometry, PoolOptions::default())
            .unwrap();
        g.throughput(Throughput::Elements((h * geometry.pooled_pixels()) as u64));
        g.bench_function(format!("{h}x{cell}x{cell}"), |b| {
            b.iter(|| e.pooled_stats(&pooled).unwrap())
        });
    }
    g.finish();
}

fn colorize(c: &mut Criterion) {
    let Some(e) = engine() else { return };
    let mut g = c.benchmark_group("colorize");
    for (h, seq, cell) in SIZES {
        let src = ArraySource::from_f32("bench", &heads(1, h, seq, seq));
        let options = RenderOptions {
            cell: Some(cell),
            ..Default::default()
        };
        let mut scene = e.scene(&src, &options).unwrap();
        g.throughput(Throughput::Elements(
            (h * scene.plan.geometry.pooled_pixels()) as u64,
        ));
        let mut i = 0usize;
        g.bench_function(format!("{h}x{cell}x{cell}"), |b| {
            b.iter(|| {
                i += 1;
                let norm = [Norm::Head, Norm::Global][i % 2];
                let map = [Colormap::Viridis, Colormap::Magma][i % 2];
                e.recolor(&mut scene, norm, Reduce::Max, map).unwrap();
                e.gpu.wait().unwrap()
            })
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = passes;
    config = config();
    targets = pool, producer_rows, stats, colorize
}
criterion_main!(passes);
