//! Pattern statistics (`attnviz heads`): the GPU pass against its f64 CPU twin, and planted
//! patterns found by name.
//!
//! Tolerance: the GPU adds in f32 (the entropy per pooled pixel, row by row, then pixels in runs
//! and trees, Kahan across chunks of pixels; profiles per piece, and the other masses as sums of
//! the profiles in f64), the twin in f64. Scalars and profiles agree within 1e-5 relative (plus
//! 1e-6 absolute for masses near zero); max, argmax and the non-finite count exactly.

mod common;

use attnviz::cpu::pattern::pattern_cells;
use attnviz::pool::geometry::CellGeometry;
use attnviz::pool::pattern::{PatternOptions, PatternSums};
use attnviz::pool::{Causal, PoolOptions};
use attnviz::source::ArraySource;
use attnviz::{AttentionSource, DType, Engine};
use common::{engine, random};
use ndarray::Array4;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-5 * a.abs().max(b.abs()) + 1e-6
}

fn check_vec(what: &str, g: &[f64], c: &[f64]) {
    assert_eq!(g.len(), c.len(), "{what}: lengths");
    for (i, (a, b)) in g.iter().zip(c).enumerate() {
        assert!(close(*a, *b), "{what}[{i}]: gpu {a} cpu {b}");
    }
}

/// `exact_max`: the largest entry bit for bit (stored attention); else its value within the
/// tolerance and its place exactly (attention from Q and K, whose row normalizer the GPU sums
/// in another order than the reference).
fn check_sums(name: &str, g: &PatternSums, c: &PatternSums, exact_max: bool) {
    let scalars = [
        ("row_sum", g.row_sum, c.row_sum),
        ("sink", g.sink, c.sink),
        ("local", g.local, c.local),
        ("entropy", g.entropy, c.entropy),
        ("distance", g.distance, c.distance),
    ];
    for (what, a, b) in scalars {
        assert!(close(a, b), "{name}: {what}: gpu {a} cpu {b}");
    }
    if exact_max {
        assert_eq!(g.max, c.max, "{name}: max");
    } else {
        let (gm, cm) = (g.max.expect("a max"), c.max.expect("a max"));
        assert!(close(gm.0.into(), cm.0.into()), "{name}: max {gm:?} {cm:?}");
        assert_eq!((gm.1, gm.2), (cm.1, cm.2), "{name}: argmax");
    }
    assert_eq!(g.non_finite, c.non_finite, "{name}: non-finite");
    check_vec(&format!("{name}: columns"), &g.columns, &c.columns);
    check_vec(&format!("{name}: diagonals"), &g.diagonals, &c.diagonals);
    check_vec(&format!("{name}: blocks"), &g.blocks, &c.blocks);
    assert_eq!(g.finish().pattern, c.finish().pattern, "{name}: label");
}

/// Every head of `src` on both sides, compared.
fn compare(e: &Engine, name: &str, src: &dyn AttentionSource, pool: PoolOptions) {
    let s = src.shape();
    let cells: Vec<_> = (0..s.layers)
        .flat_map(|l| (0..s.heads).map(move |h| (l, h)))
        .collect();
    let options = PatternOptions {
        sink_keys: 3,
        window: 5,
    };
    let geometry = CellGeometry::new(s.queries, s.keys, Some(16)).unwrap();
    let gpu = e
        .pool_with(src, &cells, geometry, pool, Some(options))
        .unwrap();
    let cpu = pattern_cells(src, &cells, options, pool).unwrap();
    assert_eq!(gpu.patterns.len(), cells.len(), "{name}: one per cell");
    for (i, (g, c)) in gpu.patterns.iter().zip(&cpu).enumerate() {
        check_sums(&format!("{name} cell {i}"), g, c, true);
    }
}

#[test]
fn gpu_matches_the_cpu_twin() {
    let Some(mut e) = engine() else { return };
    let a = random(2, 2, 50, 70, 7);
    compare(
        &e,
        "random",
        &ArraySource::from_f32("r", &a),
        PoolOptions::default(),
    );
    // Rows past the loop budget (16384 words): a workgroup per row instead of an invocation.
    let wide = random(1, 1, 3, 70_000, 9);
    let wide = ArraySource::from_f32("w", &wide);
    compare(&e, "wide rows", &wide, PoolOptions::default());
    // Q != K, causal, f16, and heads spanning several upload chunks.
    e.chunk_bytes = 1024;
    let b = random(1, 3, 40, 100, 11);
    let causal = PoolOptions {
        causal: Causal::On,
        ..Default::default()
    };
    compare(&e, "causal", &ArraySource::from_f32("c", &b), causal);
    let f16 = ArraySource::from_f32_as("h", &b, DType::F16);
    compare(&e, "f16 chunks", &f16, PoolOptions::default());
    // Non-finite entries are excluded and counted.
    let mut n = random(1, 2, 30, 130, 3);
    n[[0, 0, 3, 4]] = f32::NAN;
    n[[0, 1, 29, 0]] = f32::INFINITY;
    n[[0, 1, 0, 129]] = f32::NEG_INFINITY;
    compare(
        &e,
        "nan",
        &ArraySource::from_f32("n", &n),
        PoolOptions::default(),
    );
    // Q > K: positions a = q + K - Q go negative.
    let w = random(1, 1, 90, 20, 5);
    compare(&e, "tall", &ArraySource::from_f32("t", &w), causal);
    // 16-bit rows that start on 16-byte words (keys a multiple of 8: the profiles' aligned
    // loads), a last key group cut short (40 = 2 · 16 + 8), several heads per chunk.
    let h = random(2, 2, 33, 40, 17);
    for dtype in [DType::F16, DType::BF16] {
        let src = ArraySource::from_f32_as("a", &h, dtype);
        compare(&e, &format!("{dtype:?} aligned"), &src, causal);
        compare(
            &e,
            &format!("{dtype:?} aligned"),
            &src,
            PoolOptions::default(),
        );
    }
    // Equal maxima in every pixel and chunk: the first in row-major order wins.
    let flat = Array4::from_elem((1, 2, 30, 40), 0.025f32);
    compare(&e, "ties", &ArraySource::from_f32("f", &flat), causal);
}

/// One head of `q` × `k` built by `f(q, k)`, rows normalized to sum 1.
fn head(q: usize, k: usize, f: impl Fn(usize, usize) -> f32) -> Array4<f32> {
    let mut a = Array4::from_shape_fn((1, 1, q, k), |(_, _, qi, ki)| f(qi, ki));
    for qi in 0..q {
        let s: f32 = (0..k).map(|ki| a[[0, 0, qi, ki]]).sum();
        for ki in 0..k {
            a[[0, 0, qi, ki]] /= s;
        }
    }
    a
}

/// The label each side gives one head, which must agree.
fn label(e: &Engine, a: &Array4<f32>) -> (&'static str, Vec<usize>) {
    let src = ArraySource::from_f32("p", a);
    let s = src.shape();
    let geometry = CellGeometry::new(s.queries, s.keys, Some(16)).unwrap();
    let o = PatternOptions::default();
    let pool = PoolOptions::default();
    let gpu = e
        .pool_with(&src, &[(0, 0)], geometry, pool, Some(o))
        .unwrap();
    let cpu = pattern_cells(&src, &[(0, 0)], o, pool).unwrap();
    let (g, c) = (gpu.patterns[0].finish(), cpu[0].finish());
    assert_eq!(g.pattern, c.pattern);
    (g.pattern, g.top_keys.iter().map(|t| t.0).collect())
}

#[test]
fn planted_patterns_are_named() {
    let Some(e) = engine() else { return };
    let n = 256;
    let noise = |q: usize, k: usize| 0.001 + 0.001 * ((q * 31 + k * 17) % 7) as f32;
    let sink = head(n, n, |q, k| noise(q, k) + if k == 0 { 5.0 } else { 0.0 });
    assert_eq!(label(&e, &sink), ("sink", label(&e, &sink).1));
    assert_eq!(label(&e, &sink).1[0], 0);
    let local = head(n, n, |q, k| {
        noise(q, k) + if q.abs_diff(k) < 4 { 1.0 } else { 0.0 }
    });
    assert_eq!(label(&e, &local).0, "local");
    let cols = [37usize, 101, 170, 222];
    let vs = head(n, n, |q, k| {
        noise(q, k)
            + if cols.contains(&k) || q.abs_diff(k) == 60 {
                1.0
            } else {
                0.0
            }
    });
    let (name, top) = label(&e, &vs);
    assert_eq!(name, "vertical-slash");
    for c in cols {
        assert!(top.contains(&c), "planted column {c} in {top:?}");
    }
    // One 64 × 64 block per block row of a 512 × 512 head: the heaviest eighth of its blocks.
    let blocks = [
        (0usize, 3usize),
        (1, 5),
        (2, 0),
        (3, 6),
        (4, 1),
        (5, 7),
        (6, 2),
        (7, 4),
    ];
    let bs = head(2 * n, 2 * n, |q, k| {
        noise(q, k)
            + if blocks.contains(&(q / 64, k / 64)) {
                1.0
            } else {
                0.0
            }
    });
    assert_eq!(label(&e, &bs).0, "block-sparse");
    let flat = head(n, n, |_, _| 1.0);
    assert_eq!(label(&e, &flat).0, "mixed");
}

/// Heads shorter than 8 blocks of 64 take smaller blocks, so the block-sparse mask stays an
/// eighth of the head: with one 64-token block, a 64-token head's heaviest "eighth" was the
/// whole head, and every short head (a BERT sentence, a prompt) was labelled block-sparse.
#[test]
fn short_heads_are_named_as_planted() {
    let Some(e) = engine() else { return };
    let noise = |q: usize, k: usize| 0.001 + 0.001 * ((q * 31 + k * 17) % 7) as f32;
    for n in [48usize, 64, 100, 128] {
        let sink = head(n, n, |q, k| noise(q, k) + if k == 0 { 5.0 } else { 0.0 });
        assert_eq!(label(&e, &sink).0, "sink", "{n} tokens");
        let local = head(n, n, |q, k| {
            noise(q, k) + if q.abs_diff(k) < 2 { 1.0 } else { 0.0 }
        });
        assert_eq!(label(&e, &local).0, "local", "{n} tokens");
        let flat = head(n, n, |_, _| 1.0);
        assert_eq!(label(&e, &flat).0, "mixed", "{n} tokens");
        // a 16-token block on the diagonal of each block row of 16: an eighth of the blocks
        // once the head has 8 of them a side
        if n == 128 {
            let bs = head(n, n, |q, k| {
                noise(q, k) + if q / 16 == (k / 16 + 3) % 8 { 1.0 } else { 0.0 }
            });
            assert_eq!(label(&e, &bs).0, "block-sparse", "{n} tokens");
        }
    }
    // Fewer than 8 blocks (32 tokens: 2 × 2 of 16): no block mask fits the budget.
    let flat = head(32, 32, |_, _| 1.0);
    let src = ArraySource::from_f32("p", &flat);
    let s = &pattern_cells(
        &src,
        &[(0, 0)],
        PatternOptions::default(),
        PoolOptions::default(),
    )
    .unwrap()[0];
    assert_eq!((s.block, s.blocks.len()), (16, 4));
    let recall = s.recalls().block_sparse;
    assert!(recall == 0.0 && recall.is_sign_positive(), "{recall}");
}

#[test]
fn synth_columns_and_sinks_are_found() {
    use attnviz::source::{Pattern, Synth, SynthSpec};
    let Some(e) = engine() else { return };
    let spec = SynthSpec {
        seq: 256,
        layers: 1,
        heads: 2,
        dtype: DType::F32,
        seed: 3,
        causal: false,
        pattern: Pattern::Attention,
    };
    let src = Synth::new(spec).unwrap();
    let geometry = CellGeometry::new(256, 256, Some(16)).unwrap();
    let pool = PoolOptions::default();
    let o = PatternOptions::default();
    let gpu = e
        .pool_with(&src, &[(0, 0), (0, 1)], geometry, pool, Some(o))
        .unwrap();
    for (h, sums) in gpu.patterns.iter().enumerate() {
        let p = sums.finish();
        let top: Vec<usize> = p.top_keys.iter().map(|t| t.0).collect();
        // key 0 is the strongest sink of every synthetic head; the planted columns follow
        assert!(top.contains(&0), "head {h}: sink 0 in {top:?}");
        for &c in src.planted_columns(0, h) {
            assert!(
                top.contains(&(c as usize)),
                "head {h}: column {c} in {top:?}"
            );
        }
        // the local window puts the heaviest diagonals next to offset 0
        assert!(p.top_offsets.iter().any(|t| t.0 == 0), "head {h}: {p:?}");
        assert!(p.sink_mass > 0.05, "head {h}: {p:?}");
    }
}

/// `attnviz synth --pattern kinds` knows what it planted in each head, and both sides find it:
/// `pattern` names the kind, `top_keys` holds the sinks and the planted columns, `top_offsets`
/// the planted slash diagonals or the local band, the planted blocks are what the block-sparse
/// mask recalls. Causal and not, 1024 tokens (the A-shape's band, 64, holds the widest window).
#[test]
fn synth_kinds_are_named_as_planted() {
    use attnviz::cpu::pattern::head_patterns_cpu;
    use attnviz::source::{Pattern, Planted, Synth, SynthSpec};
    use attnviz::RenderOptions;
    let Some(e) = engine() else { return };
    for causal in [false, true] {
        let spec = SynthSpec {
            seq: 1024,
            layers: 2,
            heads: 5,
            dtype: DType::F32,
            seed: 11,
            causal,
            pattern: Pattern::Kinds,
        };
        let src = Synth::new(spec).unwrap();
        let options = RenderOptions {
            causal: if causal { Causal::On } else { Causal::Off },
            ..Default::default()
        };
        let o = PatternOptions::default();
        let (cells, gpu) = e.head_patterns(&src, &options, o).unwrap();
        let (_, cpu) = head_patterns_cpu(&src, &options, o).unwrap();
        let mut kinds = Vec::new();
        for ((&(l, h), g), c) in cells.iter().zip(&gpu).zip(&cpu) {
            let planted = src.planted(l, h);
            kinds.push(planted);
            let name = format!("causal {causal}, l{l} h{h}, {planted:?}");
            assert_eq!(g.pattern, planted.label(), "{name}: {g:?}");
            assert_eq!(c.pattern, planted.label(), "{name}: cpu");
            let keys: Vec<usize> = g.top_keys.iter().map(|t| t.0).collect();
            let offsets: Vec<i64> = g.top_offsets.iter().map(|t| t.0).collect();
            match planted {
                Planted::Sink => {
                    assert_eq!(keys[0], 0, "{name}: {keys:?}");
                    assert!(g.sink_mass > 0.5, "{name}: {g:?}");
                }
                Planted::Local => {
                    assert!(offsets.contains(&0), "{name}: {offsets:?}");
                    assert!(g.local_mass > 0.5, "{name}: {g:?}");
                }
                Planted::VerticalSlash => {
                    for &k in src.planted_columns(l, h) {
                        assert!(
                            keys.contains(&(k as usize)),
                            "{name}: column {k} in {keys:?}"
                        );
                    }
                    for d in src.planted_offsets() {
                        assert!(
                            offsets.contains(&(d as i64)),
                            "{name}: offset {d} in {offsets:?}"
                        );
                    }
                }
                Planted::BlockSparse => {
                    assert!(g.recalls.block_sparse > 0.9, "{name}: {:?}", g.recalls)
                }
                Planted::Diffuse => {}
            }
        }
        // every kind is in the grid
        for k in [
            Planted::Sink,
            Planted::Local,
            Planted::VerticalSlash,
            Planted::BlockSparse,
            Planted::Diffuse,
        ] {
            assert!(kinds.contains(&k), "{k:?}");
        }
    }
}

/// The definitions on a head whose answers are known by hand (CPU twin, no GPU): uniform rows
/// of a causal 4 × 6 head (row q sees keys 0..=q + 2).
#[test]
fn definitions_on_a_known_head() {
    let (q, k) = (4, 6);
    let a = Array4::from_shape_fn((1, 1, q, k), |(_, _, qi, ki)| {
        if ki <= qi + 2 {
            1.0 / (qi + 3) as f32
        } else {
            0.0
        }
    });
    let src = ArraySource::from_f32("u", &a);
    let pool = PoolOptions {
        causal: Causal::On,
        ..Default::default()
    };
    let o = PatternOptions {
        sink_keys: 1,
        window: 2,
    };
    let p = pattern_cells(&src, &[(0, 0)], o, pool).unwrap()[0].finish();
    let rows = [3.0f64, 4.0, 5.0, 6.0];
    let mean = |f: &dyn Fn(f64) -> f64| rows.iter().map(|&n| f(n)).sum::<f64>() / 4.0;
    let eps = 1e-6;
    assert!((p.row_sum_mean - 1.0).abs() < eps);
    // key 0 holds 1/n of each row
    assert!((p.sink_mass - mean(&|n| 1.0 / n)).abs() < eps);
    // |a - k| < 2: the query's own key and the one before
    assert!((p.local_mass - mean(&|n| 2.0 / n)).abs() < eps);
    assert!((p.entropy - mean(&|n: f64| n.ln())).abs() < eps);
    // distances 0..n-1, uniform: (n - 1) / 2
    assert!((p.mean_distance - mean(&|n| (n - 1.0) / 2.0)).abs() < eps);
    assert_eq!(p.argmax, Some([0, 0]));
    assert_eq!(p.top_keys[0].0, 0);
    assert_eq!(p.top_offsets[0].0, 0);
    assert_eq!(p.non_finite, 0);
}

/// Q/K inputs: the statistics of the probabilities the GPU materializes (`GpuRows`), fed to the
/// same ingest, equal the CPU twin's over the same rows; causal masking applies.
#[test]
fn qk_statistics_match_the_twin_on_materialized_rows() {
    use attnviz::engine::qk_rows::GpuRows;
    use attnviz::source::qk::{QkOptions, QkSource};
    use attnviz::RenderOptions;
    let Some(e) = engine() else { return };
    let mut rng = common::Rng::new(5);
    let mut tensor = |n: usize| {
        let a = Array4::from_shape_fn((1, 2, n, 16), |_| rng.next_f32() * 2.0 - 1.0);
        Box::new(ArraySource::from_f32("t", &a)) as Box<dyn AttentionSource>
    };
    let options = QkOptions {
        causal: true,
        ..Default::default()
    };
    let qk = QkSource::new(tensor(40), tensor(72), &options).unwrap();
    let o = PatternOptions::default();
    let (cells, gpu) = e.head_patterns(&qk, &RenderOptions::default(), o).unwrap();
    assert_eq!(cells, vec![(0, 0), (0, 1)]);
    let pool = PoolOptions {
        causal: Causal::On,
        diagonal: Some(qk.diagonal()),
        ..Default::default()
    };
    let cpu = pattern_cells(&GpuRows::new(&e, &qk), &cells, o, pool).unwrap();
    for (g, c) in gpu.iter().zip(&cpu) {
        let c = c.finish();
        assert!(close(g.entropy, c.entropy), "{g:?} {c:?}");
        assert!(close(g.row_sum_mean, 1.0), "{g:?}");
        assert_eq!(g.argmax, c.argmax);
        assert_eq!(g.pattern, c.pattern);
    }
    // `attnviz heads` reads the stored probabilities for the statistics alone (no pool pass),
    // on the two-pass path too (a NaN in Q): the same statistics as a figure's run with them.
    let mut q = Array4::from_shape_fn((1, 2, 40, 16), |_| rng.next_f32() * 2.0 - 1.0);
    q[[0, 1, 7, 3]] = f32::NAN;
    let k = Array4::from_shape_fn((1, 2, 72, 16), |_| rng.next_f32() * 2.0 - 1.0);
    for q in [q.mapv(|v| if v.is_nan() { 0.5 } else { v }), q] {
        let qk = QkSource::new(
            Box::new(ArraySource::from_f32("q", &q)),
            Box::new(ArraySource::from_f32("k", &k)),
            &options,
        )
        .unwrap();
        let (cells, alone) = e.head_patterns(&qk, &RenderOptions::default(), o).unwrap();
        let geometry = CellGeometry::new(40, 72, Some(16)).unwrap();
        let figure = e.pool_with(&qk, &cells, geometry, pool, Some(o)).unwrap();
        for (a, f) in alone.iter().zip(&figure.patterns) {
            assert_eq!(format!("{a:?}"), format!("{:?}", f.finish()));
        }
        let nan = q.iter().any(|v| v.is_nan());
        assert_eq!(alone[1].non_finite > 0, nan, "{:?}", alone[1]);
    }
}

/// Q/K statistics from the probabilities the row kernel stores a chunk at a time
/// (`pool::qk::tiled::pool_materialized`), against the twin over the f64 reference
/// (`QkSource`'s own rows): a capture with a sliding window and attention chunks in one layer
/// (each the later first key on some rows) and a softcap and sinks in the other, GQA 2:1, 64 dimensions, keys over one row-kernel window and not a
/// multiple of four, the last 200 of 300 rows (causal, diagonal offset), chunks of 64 rows
/// (a small `chunk_bytes`); then a NaN in Q, which sends the head down the two-pass path.
/// Tolerance as above, the largest entry's value within it (see `check_sums`). The row kernel
/// runs with this adapter's rows per lane, with 2 (as GPUs take d = 64), and with one row and
/// the widest subgroup step where it has subgroups; each with a window of keys per dispatch and
/// with the keys split among workgroups. These chunks go through a buffer copied into the pool
/// pass's chunk texture.
#[test]
fn qk_statistics_from_stored_chunks_match_the_reference() {
    stored_chunks_match_the_reference(301, Some(50), Some(96), false, true);
    // (no sliding window, the adapter's way: into a buffer copied into the chunk texture)
    stored_chunks_match_the_reference(324, None, None, false, true);
    // bidirectional, layer 0's window two-sided: keys after it read 0 too
    stored_chunks_match_the_reference(301, Some(50), None, false, false);
}

/// The same where the row kernel writes the probabilities straight into the chunk texture the
/// pool pass reads (`shaders/qk_probs_texture.wgsl`, no sliding window): 324 keys, the last
/// 223 rows (a row ends halfway through an 8-key step, whose second texel must then not be
/// written: it is the next row's); and 323 keys, whose rows the texture holds 324 elements
/// apart (the row's last texel carries one padding element, which no reader takes).
#[test]
fn qk_statistics_written_into_the_chunk_texture_match_the_reference() {
    stored_chunks_match_the_reference(324, None, None, true, true);
    stored_chunks_match_the_reference(323, None, None, true, true);
}

/// `n` tokens; `window`, `chunk`: layer 0's sliding window and attention chunks; `in_texture`:
/// `Gpu::probs_in_texture`; `causal`: both layers causal, or both bidirectional.
fn stored_chunks_match_the_reference(
    n: usize,
    window: Option<usize>,
    chunk: Option<usize>,
    in_texture: bool,
    causal: bool,
) {
    use attnviz::source::qk::{QkOptions, QkSource};
    use attnviz::source::qk_meta::{CaptureMeta, LayerAttention};
    let Some(mut e) = engine() else { return };
    e.chunk_bytes = 20_000;
    e.qk_state_bytes = 20_000;
    e.gpu.probs_in_texture = in_texture;
    // (heads of a few hundred keys through the key kernel too, where `fused` asks for it)
    e.gpu.pattern_qk_min_keys = 0;
    let (heads, kv_heads, d) = (4, 2, 64);
    let mut rng = common::Rng::new(9);
    let mut tensor = |h: usize, nan: bool| {
        let mut a = Array4::from_shape_fn((2, h, n, d), |_| rng.next_f32() * 2.0 - 1.0);
        if nan {
            a[[1, 2, 250, 7]] = f32::NAN;
        }
        Box::new(ArraySource::from_f32("t", &a)) as Box<dyn AttentionSource>
    };
    let meta = CaptureMeta {
        layers: vec![
            LayerAttention {
                index: Some(0),
                causal: Some(causal),
                sliding_window: window,
                attention_chunk: chunk,
                ..Default::default()
            },
            LayerAttention {
                index: Some(1),
                causal: Some(causal),
                softcap: Some(2.5),
                sinks: Some((0..heads).map(|h| 1.5 - h as f32).collect()),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let o = PatternOptions {
        sink_keys: 3,
        window: 5,
    };
    for nan in [false, true] {
        let options = QkOptions {
            meta: Some(meta.clone()),
            queries: Some(101..usize::MAX),
            ..Default::default()
        };
        let qk = QkSource::new(tensor(heads, nan), tensor(kv_heads, false), &options).unwrap();
        // (the layer without a window first: its chunks leave values where the windowed
        // layer's rows see nothing, which must not reach that layer's statistics)
        let cells: Vec<_> = [1, 0]
            .into_iter()
            .flat_map(|l| (0..heads).map(move |h| (l, h)))
            .collect();
        let s = qk.shape();
        let geometry = CellGeometry::new(s.queries, s.keys, Some(16)).unwrap();
        let pool = PoolOptions {
            causal: if causal { Causal::On } else { Causal::Off },
            diagonal: Some(qk.diagonal()),
            ..Default::default()
        };
        let cpu = pattern_cells(&qk, &cells, o, pool).unwrap();
        // The row kernel's shape on this adapter, and one row a lane (the widest subgroup step,
        // 8 keys on 8 lanes, as GPUs take d = 64) where it has subgroups.
        // Each with a window of keys per dispatch and with the keys split among workgroups
        // (as GPUs take them: the lse run's columns, and prob_rows' splits of whole texels).
        let (budget, shared) = (e.gpu.row_vec4s, e.gpu.subgroup_keys);
        let (target, keys_budget) = (e.gpu.qk_split_workgroups, e.gpu.pattern_key_vec4s);
        e.gpu.row_min_rows = 1;
        let d4 = (d / 4) as u32;
        // (and 2 rows a lane, as GPUs take d = 64)
        let budgets = [budget, 2 * d4, d4];
        let budgets = &budgets[..if shared > 0 { 3 } else { 2 }];
        // And each with the statistics taken from the scores (`pool::pattern_qk`, as CPU
        // adapters take d = 64; not for the texture, which only stored probabilities go to)
        // and from stored probabilities (as GPUs take them).
        let fused: &[u32] = if in_texture { &[0] } else { &[0, 256] };
        // Stored probabilities' statistics also in the profile kernel's row slices, as GPUs
        // walk them (`Gpu::pattern_slice_rows`).
        let runs = budgets
            .iter()
            .flat_map(|&v| [(v, 0), (v, 1 << 20)])
            .flat_map(|r| fused.iter().map(move |&f| (r, f)))
            .flat_map(|(r, f)| {
                let slices: &[u32] = if f == 0 { &[0, 64] } else { &[0] };
                slices.iter().map(move |&s| (r, f, s))
            });
        for ((vec4s, split), keys, slice) in runs {
            (e.gpu.row_vec4s, e.gpu.qk_split_workgroups) = (vec4s, split);
            e.gpu.pattern_key_vec4s = keys;
            e.gpu.pattern_slice_rows = slice;
            let gpu = e.pool_with(&qk, &cells, geometry, pool, Some(o)).unwrap();
            for (i, (g, c)) in gpu.patterns.iter().zip(&cpu).enumerate() {
                let what = format!(
                    "{vec4s} vec4s, split {split}, key vec4s {keys}, slices {slice}, nan {nan}, cell {i}"
                );
                check_sums(&what, g, c, false);
            }
            // the NaN row is counted, in its head only
            let bad: Vec<u64> = gpu.patterns.iter().map(|p| p.non_finite).collect();
            assert_eq!(
                bad.iter().filter(|&&b| b > 0).count(),
                usize::from(nan),
                "{bad:?}"
            );
        }
        (e.gpu.row_vec4s, e.gpu.qk_split_workgroups) = (budget, target);
        e.gpu.pattern_key_vec4s = keys_budget;
        e.gpu.pattern_slice_rows = 0;
    }
}

/// A whole model at short context with statistics (`render --q --stats-json` drawn at its own
/// size): its columns of one key are pooled from stored probabilities, statistics and all, as
/// the figure alone is (`qk.probs` runs; neither the one pass's fold nor the statistics' second
/// score pass, `pattern.qk`, whose figure would come from the fold); the statistics equal the
/// twin's within the tolerance above, the accumulators the f64 reference's within 1e-5, and
/// they keep one word a pixel. Causal and not, GQA 2:1, d = 16 and 64.
#[test]
fn narrow_columns_with_statistics_pool_from_stored_probabilities() {
    use attnviz::pool::accum::AccumLayout;
    use attnviz::source::qk::{QkOptions, QkSource};
    let Some(e) = engine() else { return };
    let mut rng = common::Rng::new(13);
    let o = PatternOptions::default();
    assert!(e.gpu.time_passes(true));
    for (n, d, causal) in [(96, 16, true), (70, 64, false)] {
        let mut tensor = |h: usize| {
            let a = Array4::from_shape_fn((2, h, n, d), |_| rng.next_f32() * 2.0 - 1.0);
            Box::new(ArraySource::from_f32("t", &a)) as Box<dyn AttentionSource>
        };
        let options = QkOptions {
            causal,
            ..Default::default()
        };
        let qk = QkSource::new(tensor(4), tensor(2), &options).unwrap();
        let cells: Vec<_> = (0..2).flat_map(|l| (0..4).map(move |h| (l, h))).collect();
        let geometry = CellGeometry::new(n, n, None).unwrap();
        let pool = PoolOptions {
            causal: if causal { Causal::On } else { Causal::Off },
            diagonal: Some(qk.diagonal()),
            ..Default::default()
        };
        let name = format!("{n} tokens, d = {d}, causal {causal}");
        e.gpu.pass_times().unwrap();
        let gpu = e.pool_with(&qk, &cells, geometry, pool, Some(o)).unwrap();
        let labels = common::passes_run(&e.gpu);
        assert!(labels.contains(&"attnviz.qk.probs"), "{name}: {labels:?}");
        assert!(!labels.contains(&"attnviz.qk.fold"), "{name}: {labels:?}");
        assert!(
            !labels.contains(&"attnviz.pattern.qk"),
            "{name}: {labels:?}"
        );
        assert_eq!(gpu.layout(), AccumLayout::Single, "{name}");
        let cpu = pattern_cells(&qk, &cells, o, pool).unwrap();
        for (i, (g, c)) in gpu.patterns.iter().zip(&cpu).enumerate() {
            check_sums(&format!("{name}, cell {i}"), g, c, false);
        }
        let reference = attnviz::cpu::pool_cells(&qk, &cells, geometry, pool).unwrap();
        for (c, (g, r)) in gpu
            .read_accums(&e.gpu)
            .unwrap()
            .iter()
            .zip(&reference)
            .enumerate()
        {
            for (i, (a, b)) in g.iter().zip(&r.accum).enumerate() {
                assert_eq!(a.count_bad, b.count_bad, "{name}: cell {c} pixel {i}");
                for (x, y) in [(a.max, b.max), (a.min, b.min), (a.sum, b.sum)] {
                    assert!(
                        (x - y).abs() <= 1e-5,
                        "{name}: cell {c} pixel {i}: {a:?} {b:?}"
                    );
                }
            }
        }
    }
    e.gpu.time_passes(false);
}

/// Heads shorter than a workgroup of the statistics' key kernel (`Gpu::pattern_qk_min_keys`,
/// 1024 keys) take their statistics from stored probabilities, a batch of heads a dispatch,
/// even where that kernel could hold their keys (`attnviz heads --q` of a whole model: 16 × 16
/// pixels a head, so not narrow columns); with the minimum at 0 they take the key kernel
/// (`pattern.qk`), where the adapter's budget holds 16 keys (CPU adapters). Both equal the twin
/// within the tolerance above.
#[test]
fn short_heads_take_statistics_from_stored_probabilities() {
    use attnviz::source::qk::{QkOptions, QkSource};
    let Some(mut e) = engine() else { return };
    let mut rng = common::Rng::new(17);
    let (n, d) = (300, 16);
    let mut tensor = |h: usize| {
        let a = Array4::from_shape_fn((1, h, n, d), |_| rng.next_f32() * 2.0 - 1.0);
        Box::new(ArraySource::from_f32("t", &a)) as Box<dyn AttentionSource>
    };
    let options = QkOptions {
        causal: true,
        ..Default::default()
    };
    let qk = QkSource::new(tensor(4), tensor(2), &options).unwrap();
    let cells: Vec<_> = (0..4).map(|h| (0, h)).collect();
    let geometry = CellGeometry::new(n, n, Some(16)).unwrap();
    let pool = PoolOptions {
        causal: Causal::On,
        diagonal: Some(qk.diagonal()),
        ..Default::default()
    };
    let o = PatternOptions::default();
    let cpu = pattern_cells(&qk, &cells, o, pool).unwrap();
    let fits = e.gpu.pattern_key_vec4s >= 16 * (d as u32 / 4);
    assert!(e.gpu.time_passes(true));
    for (min_keys, fused) in [(attnviz::gpu::PATTERN_QK_MIN_KEYS, false), (0, fits)] {
        e.gpu.pattern_qk_min_keys = min_keys;
        e.gpu.pass_times().unwrap();
        let gpu = e.pool_with(&qk, &cells, geometry, pool, Some(o)).unwrap();
        let labels = common::passes_run(&e.gpu);
        assert_eq!(
            (
                labels.contains(&"attnviz.pattern.qk"),
                labels.contains(&"attnviz.qk.probs")
            ),
            (fused, !fused),
            "minimum {min_keys}: {labels:?}"
        );
        for (i, (g, c)) in gpu.patterns.iter().zip(&cpu).enumerate() {
            check_sums(&format!("minimum {min_keys}, cell {i}"), g, c, false);
        }
    }
    e.gpu.time_passes(false);
}

/// Q/K statistics taken from the scores (`pool::pattern_qk`, `Gpu::pattern_key_vec4s`) over
/// keys of several of its workgroups (1024 keys each, a pixel of sums each): a causal head
/// whose first workgroups' keys precede the first rows' diagonal (rows no key of a workgroup
/// is seen by are skipped, and must be exactly those), the same with a sliding window of 300
/// (rows whose window has passed a workgroup's keys skip its scores), the same in attention
/// chunks of 700 (rows whose chunk starts past a workgroup's keys skip it), and a head whose scores
/// are all equal (Q = 0: every probability ties, so the largest is the first, the slice's first row's key 0,
/// and the entropy is ln K in every row). 2100 keys, the last 1500 of 2100 rows, d = 16; small
/// chunks and pieces of the statistics; a row's query vectors shared through subgroups (8 and 4
/// lanes where the adapter has 8) and loaded by every lane. Against the twin over the f64
/// reference, tolerance as above.
#[test]
fn qk_statistics_from_the_scores_span_key_workgroups() {
    use attnviz::source::qk::{QkOptions, QkSource};
    use attnviz::source::qk_meta::{CaptureMeta, LayerAttention};
    let Some(mut e) = engine() else { return };
    e.chunk_bytes = 200_000;
    e.qk_state_bytes = 400_000;
    e.gpu.pattern_key_vec4s = 256;
    let (n, d) = (2100, 16);
    let mut rng = common::Rng::new(11);
    let mut tensor = |zero: bool| {
        let a = Array4::from_shape_fn((3, 1, n, d), |_| {
            if zero {
                0.0
            } else {
                rng.next_f32() * 2.0 - 1.0
            }
        });
        Box::new(ArraySource::from_f32("t", &a)) as Box<dyn AttentionSource>
    };
    let layer = |index, causal, window, chunk| LayerAttention {
        index: Some(index),
        causal: Some(causal),
        sliding_window: window,
        attention_chunk: chunk,
        ..Default::default()
    };
    let o = PatternOptions {
        sink_keys: 2,
        window: 7,
    };
    let causal = QkOptions {
        meta: Some(CaptureMeta {
            // (chunks of 700: the rows from 600 cross two chunk edges)
            layers: vec![
                layer(0, true, None, None),
                layer(1, true, Some(300), None),
                layer(2, true, None, Some(700)),
            ],
            ..Default::default()
        }),
        queries: Some(600..usize::MAX),
        ..Default::default()
    };
    // Bidirectional layers with two-sided windows: rows before a window reaches a workgroup's
    // keys (in layer 1, those before position 725 for keys 1024 on) and after it has passed
    // them are skipped.
    let two_sided = QkOptions {
        meta: Some(CaptureMeta {
            layers: vec![
                layer(0, false, None, None),
                layer(1, false, Some(300), None),
                layer(2, false, Some(40), None),
            ],
            ..Default::default()
        }),
        queries: Some(600..usize::MAX),
        ..Default::default()
    };
    // Bidirectional chunks, alone and with a two-sided window: rows before a workgroup's
    // keys' chunk (and its window) are skipped, and after it.
    let blocks = QkOptions {
        meta: Some(CaptureMeta {
            layers: vec![
                layer(0, false, None, Some(700)),
                layer(1, false, Some(300), Some(512)),
                layer(2, false, None, Some(1000)),
            ],
            ..Default::default()
        }),
        queries: Some(600..usize::MAX),
        ..Default::default()
    };
    let ties = QkOptions {
        queries: Some(600..usize::MAX),
        ..Default::default()
    };
    for (name, options, zero_q) in [
        ("causal", causal, false),
        ("two-sided", two_sided, false),
        ("bidirectional chunks", blocks, false),
        ("ties", ties, true),
    ] {
        let qk = QkSource::new(tensor(zero_q), tensor(false), &options).unwrap();
        let cells = vec![(0, 0), (1, 0), (2, 0)];
        let s = qk.shape();
        let geometry = CellGeometry::new(s.queries, s.keys, Some(16)).unwrap();
        let pool = PoolOptions {
            causal: if qk.causal() { Causal::On } else { Causal::Off },
            diagonal: Some(qk.diagonal()),
            ..Default::default()
        };
        let cpu = pattern_cells(&qk, &cells, o, pool).unwrap();
        // A row's query vectors shared by the adapter's subgroup lanes, by 4 of them, and
        // loaded by every lane (no subgroups).
        let adapter = e.gpu.subgroup_keys;
        let mut sharing = vec![adapter, 0];
        if adapter > 4 {
            sharing.push(4);
        }
        for shared in sharing {
            e.gpu.subgroup_keys = shared;
            let gpu = e.pool_with(&qk, &cells, geometry, pool, Some(o)).unwrap();
            for (i, (g, c)) in gpu.patterns.iter().zip(&cpu).enumerate() {
                check_sums(&format!("{name}, {shared} lanes, cell {i}"), g, c, false);
            }
            if zero_q {
                for g in &gpu.patterns {
                    let g = g.finish();
                    // (row 0 of the slice is query 600, and is named so)
                    assert_eq!(g.argmax, Some([600, 0]), "{g:?}");
                    assert!((g.entropy - (n as f64).ln()).abs() < 1e-5, "{g:?}");
                }
            }
        }
        e.gpu.subgroup_keys = adapter;
    }
}

/// `attnviz heads` on stored attention reads the rows for the statistics alone (no pool pass:
/// `Ingest::set_pooled`): the same statistics, bit for bit, as a run that pools the same
/// 16-pixel cells with them, whatever the causal option (`Auto` detects nothing then, and the
/// statistics never depended on it). Two layers of two heads, head 0 causal with a NaN below
/// the diagonal, f32 and f16, several chunks.
#[test]
fn statistics_alone_equal_those_of_a_pooling_run() {
    use attnviz::{Plan, RenderOptions};
    let Some(mut e) = engine() else { return };
    e.chunk_bytes = 6000;
    let mut data = random(2, 2, 70, 90, 21);
    for q in 0..70 {
        for k in q + 21..90 {
            data[[0, 0, q, k]] = 0.0;
        }
    }
    data[[0, 0, 40, 3]] = f32::NAN;
    let o = PatternOptions {
        sink_keys: 2,
        window: 4,
    };
    for dtype in [DType::F32, DType::F16] {
        let src = ArraySource::from_f32_as("alone", &data, dtype);
        for causal in [Causal::Off, Causal::On, Causal::Auto] {
            let options = RenderOptions {
                causal,
                ..Default::default()
            };
            let (cells, alone) = e.head_patterns(&src, &options, o).unwrap();
            let plan = Plan::new(&src, &options).unwrap();
            let geometry = CellGeometry::new(70, 90, Some(16)).unwrap();
            let pooled = e
                .pool_with(&src, &cells, geometry, plan.pool, Some(o))
                .unwrap();
            let with: Vec<_> = pooled.patterns.iter().map(|p| p.finish()).collect();
            assert_eq!(alone.len(), 4);
            for (a, b) in alone.iter().zip(&with) {
                assert_eq!(
                    format!("{a:?}"),
                    format!("{b:?}"),
                    "{} {causal:?}",
                    dtype.name()
                );
            }
        }
    }
}

/// The profile kernel that pools as well (`Gpu::pool_with_profiles`,
/// `shaders/pattern_pool.wgsl`) against the pool pass and the profile kernel apart: the same
/// accumulators and the same statistics, bit for bit, for bins of 4, 8 and 16 keys (f32) and of
/// 8 and 16 (16-bit), rows pooled unevenly (50 rows into 13 or fewer), heads over several upload
/// chunks, causal, detected causal (zeros above the diagonal) and non-finite entries; and the
/// statistics against the f64 twin.
#[test]
fn the_profile_kernel_pools_as_the_pool_pass_does() {
    let Some(mut e) = engine() else { return };
    e.chunk_bytes = 4096;
    let mut data = random(1, 3, 50, 64, 31);
    for q in 0..50 {
        for k in q + 15..64 {
            data[[0, 1, q, k]] = 0.0;
        }
    }
    data[[0, 2, 7, 9]] = f32::NAN;
    data[[0, 0, 49, 63]] = f32::INFINITY;
    let o = PatternOptions {
        sink_keys: 2,
        window: 4,
    };
    let cells = [(0, 0), (0, 1), (0, 2)];
    for dtype in [DType::F32, DType::F16] {
        let src = ArraySource::from_f32_as("fused", &data, dtype);
        for cell in [16, 8, 4] {
            for causal in [Causal::Off, Causal::On, Causal::Auto] {
                let pool = PoolOptions {
                    causal,
                    ..Default::default()
                };
                let geometry = CellGeometry::new(50, 64, Some(cell)).unwrap();
                let name = format!("{} cell {cell} {causal:?}", dtype.name());
                let mut run = |fused: bool| {
                    e.gpu.pool_with_profiles = fused;
                    let p = e.pool_with(&src, &cells, geometry, pool, Some(o)).unwrap();
                    let accums = p.read_accums(&e.gpu).unwrap();
                    (format!("{accums:?} {:?}", p.stats), p.causal, p.patterns)
                };
                let (apart, apart_causal, apart_sums) = run(false);
                let (fused, fused_causal, fused_sums) = run(true);
                assert_eq!(apart, fused, "{name}: accumulators");
                assert_eq!(apart_causal, fused_causal, "{name}: causal");
                assert_eq!(
                    format!("{apart_sums:?}"),
                    format!("{fused_sums:?}"),
                    "{name}: statistics"
                );
                let twin = pattern_cells(&src, &cells, o, pool).unwrap();
                for (i, (g, c)) in fused_sums.iter().zip(&twin).enumerate() {
                    check_sums(&format!("{name} cell {i}"), g, c, true);
                }
            }
        }
    }
}

/// The profile kernel walking a piece's rows in slices (`Gpu::pattern_slice_rows`, a GPU's
/// default) against the twin, and against the whole-piece walk within the f32 tolerance (the
/// column and diagonal masses are added slice by slice, in another order): several slices a
/// piece, pieces that begin inside a slice (several upload chunks a head), slices shorter than
/// a diagonal's 16 rows where a piece ends, causal and not, Q ≠ K, f16, non-finite entries,
/// block sides past 64 (a slice then whole block rows), and heads read for statistics alone
/// (`attnviz heads` on stored attention).
#[test]
fn the_profile_kernel_in_row_slices_matches_the_twin() {
    let Some(mut e) = engine() else { return };
    let mut data = random(1, 2, 300, 150, 41);
    data[[0, 1, 131, 17]] = f32::NAN;
    data[[0, 0, 299, 0]] = f32::INFINITY;
    let causal = PoolOptions {
        causal: Causal::On,
        ..Default::default()
    };
    for (slice, chunk) in [(64, 1 << 20), (64, 7000), (100, 9000), (1, 5000)] {
        e.gpu.pattern_slice_rows = slice;
        e.chunk_bytes = chunk;
        let name = format!("slices of {slice} rows, chunks of {chunk} bytes");
        for pool in [PoolOptions::default(), causal] {
            compare(&e, &name, &ArraySource::from_f32("s", &data), pool);
            let f16 = ArraySource::from_f32_as("s", &data, DType::F16);
            compare(&e, &format!("{name} f16"), &f16, pool);
        }
        // Q ≠ K, and a long head whose blocks are wider than 64 rows
        let tall = random(1, 1, 200, 40, 43);
        compare(&e, &name, &ArraySource::from_f32("t", &tall), causal);
    }
    // a narrow head of more rows than a piece holds with statistics (PATTERN_ROWS, 4096) in one
    // chunk: pieces of a chunk of two heads, slices bounded by a piece's rows
    e.gpu.pattern_slice_rows = 64;
    e.chunk_bytes = 1 << 20;
    let narrow = random(1, 2, 4200, 8, 53);
    compare(&e, "narrow", &ArraySource::from_f32("n", &narrow), causal);
    let long = random(1, 1, 40, 9000, 47);
    for slice in [0, 64] {
        e.gpu.pattern_slice_rows = slice;
        e.chunk_bytes = 200_000;
        compare(
            &e,
            "long",
            &ArraySource::from_f32("l", &long),
            PoolOptions::default(),
        );
    }
    // statistics alone, as `attnviz heads` takes them from stored attention
    let src = ArraySource::from_f32("alone", &data);
    let o = PatternOptions {
        sink_keys: 2,
        window: 4,
    };
    let options = attnviz::RenderOptions::default();
    let mut labels = Vec::new();
    for slice in [0, 64] {
        e.gpu.pattern_slice_rows = slice;
        e.chunk_bytes = 7000;
        let (_, alone) = e.head_patterns(&src, &options, o).unwrap();
        labels.push(format!(
            "{:?}",
            alone.iter().map(|p| p.pattern).collect::<Vec<_>>()
        ));
    }
    assert_eq!(labels[0], labels[1]);
}

/// A `--queries A..B` slice of Q and K keeps its rows' places: the statistics measure distances
/// from each row's own position (row `q` at `A + q` here, where Q and K are the same tokens),
/// `argmax` names rows as the input does, the query axis is ticked `A..B` and a row is labelled
/// by its own token. Every token attends to itself alone (Q = K = 20·I, d = 64: a score of 50
/// on the diagonal, 0 elsewhere), so the offset a − k is 0 throughout; before rows kept their
/// positions, the slice 40..50 of 64 was measured as the last 10 rows, 14 tokens off.
#[test]
fn a_query_slice_keeps_its_positions() {
    use attnviz::cpu::pattern::head_patterns_cpu;
    use attnviz::figure::layout::Axis;
    use attnviz::source::qk::{QkOptions, QkSource};
    use attnviz::RenderOptions;
    let Some(e) = engine() else { return };
    let n = 64;
    let eye = Array4::from_shape_fn((1, 1, n, n), |(_, _, i, j)| if i == j { 20.0 } else { 0.0 });
    let side = || Box::new(ArraySource::from_f32("eye", &eye)) as Box<dyn AttentionSource>;
    let options = QkOptions {
        queries: Some(40..50),
        ..Default::default()
    };
    let qk = QkSource::new(side(), side(), &options).unwrap();
    assert_eq!((qk.first_query(), qk.diagonal()), (40, 40));
    let o = PatternOptions::default();
    let render = RenderOptions::default();
    let (_, gpu) = e.head_patterns(&qk, &render, o).unwrap();
    let (_, cpu) = head_patterns_cpu(&qk, &render, o).unwrap();
    for (name, p) in [("gpu", &gpu[0]), ("cpu", &cpu[0])] {
        assert_eq!(p.top_offsets[0].0, 0, "{name}: {p:?}");
        assert!(p.top_offsets[0].1 > 0.999_999, "{name}: {p:?}");
        assert!(p.mean_distance < 1e-6, "{name}: {p:?}");
        assert!(p.local_mass > 0.999_999, "{name}: {p:?}");
        assert_eq!(p.argmax, Some([40, 40]), "{name}: {p:?}");
        assert_eq!(p.pattern, "local", "{name}: {p:?}");
    }
    // The query axis ticks 40..50; a row is labelled with its own token.
    let axes = RenderOptions {
        axes: Some(true),
        ..Default::default()
    };
    let fig = e.render(&qk, &axes).unwrap();
    let rows: Vec<u64> = fig
        .plan
        .layout
        .axis_ticks
        .iter()
        .filter(|t| t.axis == Axis::Query)
        .map(|t| t.position)
        .collect();
    assert!(
        !rows.is_empty() && rows.iter().all(|r| (40..50).contains(r)),
        "{rows:?}"
    );
    assert_eq!(rows[0], 40);
    let tokens = RenderOptions {
        tokens: Some((0..n).map(|i| format!("w{i}")).collect()),
        ..Default::default()
    };
    let fig = attnviz::render_cpu(&qk, &tokens).unwrap();
    let labels = common::label_texts(&fig.plan.layout);
    // rows w40..w49 beside the cell and every key under it: w40..w49 twice, w0 once
    assert_eq!(
        labels.iter().filter(|l| *l == "w40").count(),
        2,
        "{labels:?}"
    );
    assert_eq!(
        labels.iter().filter(|l| *l == "w0").count(),
        1,
        "{labels:?}"
    );
    assert_eq!(
        labels.iter().filter(|l| *l == "w63").count(),
        1,
        "{labels:?}"
    );
}

/// `--queries A..B` on stored attention (`QueryRows`): only those rows are read, and they keep
/// their places as a Q/K slice's do. Each token attends to itself alone (the identity), so
/// every offset is 0; the GPU against the twin, causal on and off.
#[test]
fn a_stored_query_slice_keeps_its_positions() {
    use attnviz::cpu::pattern::head_patterns_cpu;
    use attnviz::source::QueryRows;
    use attnviz::RenderOptions;
    let Some(e) = engine() else { return };
    let n = 80;
    let eye = Array4::from_shape_fn((1, 2, n, n), |(_, _, i, j)| if i == j { 1.0 } else { 0.0 });
    let file = ArraySource::from_f32("eye", &eye);
    let rows = QueryRows::new(Box::new(&file), 50..70).unwrap();
    assert_eq!((rows.first_query(), rows.diagonal()), (50, 50));
    for causal in [Causal::Off, Causal::On] {
        let render = RenderOptions {
            causal,
            ..Default::default()
        };
        let o = PatternOptions::default();
        let (_, gpu) = e.head_patterns(&rows, &render, o).unwrap();
        let (_, cpu) = head_patterns_cpu(&rows, &render, o).unwrap();
        for (name, p) in [("gpu", &gpu[1]), ("cpu", &cpu[1])] {
            assert_eq!(p.top_offsets, vec![(0, 1.0)], "{causal:?} {name}: {p:?}");
            assert_eq!(p.mean_distance, 0.0, "{causal:?} {name}: {p:?}");
            assert_eq!(p.argmax, Some([50, 50]), "{causal:?} {name}: {p:?}");
            assert_eq!(p.top_keys[0], (50, 0.05), "{causal:?} {name}: {p:?}");
            assert_eq!(p.pattern, "local", "{causal:?} {name}: {p:?}");
        }
    }
}

/// Q/K statistics of layers with bidirectional spans (Gemma-3's images, PaliGemma's prefix;
/// the two-pass kernels read each row's keys from a table, `QkSource::key_ranges`), against the
/// twin over the f64 reference: a window the spans' keys pass through in layer 0, sinks and a
/// softcap in layer 1, a KV-cache suffix whose first row is inside a span; hidden keys are
/// entries of 0 (the layer is drawn bidirectional), so nothing is masked. Tolerance as above.
/// From stored probabilities and from the scores (`pool::pattern_qk`, whose workgroups find
/// the rows that see their keys in the table): 300 keys, one workgroup of that kernel, and
/// 2100, three, with a span across the first's last key (rows before it reach the second's
/// keys) and, in layer 0, rows whose window has left the first's; and 1100 from the first row.
#[test]
fn qk_statistics_with_bidirectional_spans_match_the_reference() {
    use attnviz::source::qk::{QkOptions, QkSource};
    let Some(mut e) = engine() else { return };
    // (heads of a few hundred keys through the key kernel too)
    e.gpu.pattern_qk_min_keys = 0;
    assert!(e.gpu.time_passes(true));
    let key_budget = e.gpu.pattern_key_vec4s;
    let (heads, kv_heads, d) = (4, 2, 32);
    // (keys, the first query, spans, and chunk bytes: pieces of 16 and 32 rows, and of as many
    // as a window of Q holds)
    type Spans = &'static [(usize, usize)];
    let cases: [(usize, usize, Spans, u64); 3] = [
        (300, 101, &[(0, 40), (90, 180), (250, 252)], 20_000),
        (
            2100,
            980,
            &[(0, 40), (1000, 1100), (2090, 2092)],
            2100 * 4 * 40,
        ),
        (1100, 0, &[(100, 356)], 1100 * 4 * 4096),
    ];
    for (n, first, spans, chunk_bytes) in cases {
        e.chunk_bytes = chunk_bytes;
        let mut rng = common::Rng::new(21);
        let mut tensor = |h: usize| {
            let a = Array4::from_shape_fn((2, h, n, d), |_| rng.next_f32() * 2.0 - 1.0);
            Box::new(ArraySource::from_f32("t", &a)) as Box<dyn AttentionSource>
        };
        let meta = common::spans_meta(heads, Some(20), spans);
        let options = QkOptions {
            meta: Some(meta),
            queries: Some(first..usize::MAX),
            ..Default::default()
        };
        let qk = QkSource::new(tensor(heads), tensor(kv_heads), &options).unwrap();
        assert!(qk.ranged() && !qk.causal());
        let cells: Vec<_> = (0..2)
            .flat_map(|l| (0..heads).map(move |h| (l, h)))
            .collect();
        let s = qk.shape();
        let geometry = CellGeometry::new(s.queries, s.keys, Some(16)).unwrap();
        let pool = PoolOptions {
            causal: Causal::Off,
            diagonal: Some(qk.diagonal()),
            ..Default::default()
        };
        let o = PatternOptions {
            sink_keys: 3,
            window: 5,
        };
        let cpu = pattern_cells(&qk, &cells, o, pool).unwrap();
        // stored probabilities (no K vectors in the key kernel's budget), then the scores
        for keys in [0, key_budget.max(4 * d as u32)] {
            e.gpu.pattern_key_vec4s = keys;
            e.gpu.pass_times().unwrap();
            let gpu = e.pool_with(&qk, &cells, geometry, pool, Some(o)).unwrap();
            let labels = common::passes_run(&e.gpu);
            let fused = labels.contains(&"attnviz.pattern.qk");
            assert_eq!(fused, keys > 0, "{n} keys, key vec4s {keys}: {labels:?}");
            for (i, (g, c)) in gpu.patterns.iter().zip(&cpu).enumerate() {
                check_sums(
                    &format!("spans, {n} keys, key vec4s {keys}, cell {i}"),
                    g,
                    c,
                    false,
                );
            }
        }
    }
    e.gpu.pattern_key_vec4s = key_budget;
    e.gpu.time_passes(false);
}
