//! `--values logits`: the pre-softmax scores `scale · q·k` (softcapped where the layer is) drawn
//! from Q and K. The one-pass pooled path and the two-pass path (zoomed regions) against the f64
//! CPU twin, and a tile at native resolution against matplotlib's min–max viridis of the f64
//! logits.
//!
//! Tolerances, and why: a logit is an f32 dot product of d terms (d = 32 here, |q|, |k| ≤ 1.5)
//! times the scale, so it is within about 1e-5 of the f64 value (1e-5 allowed on extremes, and
//! per entry on sums); counts are exact, hidden entries (causal, older than a sliding window,
//! or before the query's attention chunk) are masked in every path. A tile may differ from the colour of the f64 value by one
//! LUT step where the normalized value sits within that rounding of a step boundary (at most
//! 1% of the entries allowed; 0 seen on lavapipe).

mod common;

use std::process::Command;

use attnviz::color::colormap::Colormap;
use attnviz::pool::accum::Accum;
use attnviz::pool::geometry::CellGeometry;
use attnviz::pool::{Causal, PoolOptions};
use attnviz::source::qk::{QkOptions, QkSource, Values};
use attnviz::source::qk_meta::{CaptureMeta, LayerAttention};
use attnviz::source::ArraySource;
use attnviz::AttentionSource;
use common::{engine, Rng};
use ndarray::Array4;

const N: usize = 150;
const D: usize = 32;
/// Layer 2's attention chunks: bins and the zoomed region's edges cut through them.
const CHUNK: usize = 48;

fn values(l: usize, h: usize, n: usize, seed: u64) -> Array4<f32> {
    let mut rng = Rng::new(seed);
    Array4::from_shape_fn((l, h, n, D), |_| (rng.next_f32() * 2.0 - 1.0) * 1.5)
}

/// Three layers, causal: layer 0 with a 40-key window, layer 1 softcapped at 2 with sinks (which
/// logits ignore), layer 2 in attention chunks of [`CHUNK`].
fn source(values_kind: Values) -> QkSource {
    source_of(true, values_kind)
}

/// [`source`], or bidirectional (`causal` false): layer 0's window is two-sided there, and
/// layer 2's chunks hide the keys after the query's chunk too (a block-diagonal attention).
fn source_of(causal: bool, values_kind: Values) -> QkSource {
    let mut layers = vec![
        LayerAttention {
            causal: Some(causal),
            sliding_window: Some(40),
            ..Default::default()
        },
        LayerAttention {
            causal: Some(causal),
            softcap: Some(2.0),
            sinks: Some(vec![1.0, -1.0]),
            ..Default::default()
        },
    ];
    layers.push(LayerAttention {
        causal: Some(causal),
        attention_chunk: Some(CHUNK),
        ..Default::default()
    });
    let meta = CaptureMeta {
        layers,
        ..Default::default()
    };
    QkSource::new(
        Box::new(ArraySource::from_f32("q", &values(3, 2, N, 3))),
        Box::new(ArraySource::from_f32("k", &values(3, 1, N, 4))),
        &QkOptions {
            meta: Some(meta),
            values: values_kind,
            ..Default::default()
        },
    )
    .unwrap()
}

/// The f64 logit of (layer, head, q, k) of [`source_of`], or `None` when hidden.
fn logit_of(causal: bool, l: usize, h: usize, q: usize, k: usize) -> Option<f64> {
    let (qs, ks) = (values(3, 2, N, 3), values(3, 1, N, 4));
    let dot: f64 = (0..D)
        .map(|e| qs[[l, h, q, e]] as f64 * ks[[l, 0, k, e]] as f64)
        .sum();
    let s = dot / (D as f64).sqrt();
    let hidden = match causal {
        true => k > q || (l == 0 && q - k >= 40) || (l == 2 && k / CHUNK != q / CHUNK),
        false => (l == 0 && q.abs_diff(k) >= 40) || (l == 2 && k / CHUNK != q / CHUNK),
    };
    (!hidden).then(|| if l == 1 { 2.0 * (s / 2.0).tanh() } else { s })
}

/// The f64 logit of (layer, head, q, k) of [`source`], or `None` when hidden.
fn logit(l: usize, h: usize, q: usize, k: usize) -> Option<f64> {
    logit_of(true, l, h, q, k)
}

#[test]
fn the_cpu_twin_draws_scaled_softcapped_logits_and_hides_the_window_and_other_chunks() {
    let src = source(Values::Logits);
    let mut row = vec![0f32; N];
    for (l, q) in [(0, 100), (1, 100), (0, 10), (2, 100), (2, 47), (2, 48)] {
        src.probabilities_cpu(l, 1, q..q + 1, &mut row).unwrap();
        for (k, &v) in row.iter().enumerate() {
            match logit(l, 1, q, k) {
                Some(x) => assert!((v as f64 - x).abs() < 1e-6, "({l}, {q}, {k}): {v} vs {x}"),
                None => assert_eq!(v, 0.0),
            }
        }
    }
    assert_eq!(src.mask_hidden(0).window, Some(40));
    assert_eq!(src.mask_hidden(2).chunk, Some(CHUNK));
    assert!(!source(Values::Probs).mask_hidden(0).any());
    assert!(!source(Values::Probs).mask_hidden(2).any());
    // bidirectional: the window hides keys 40 or more positions away on both sides, the
    // chunks the keys of other chunks on both sides
    let src = source_of(false, Values::Logits);
    for (l, q) in [
        (0, 100),
        (0, 10),
        (0, 140),
        (1, 100),
        (2, 100),
        (2, 47),
        (2, 48),
    ] {
        src.probabilities_cpu(l, 1, q..q + 1, &mut row).unwrap();
        for (k, &v) in row.iter().enumerate() {
            match logit_of(false, l, 1, q, k) {
                Some(x) => assert!((v as f64 - x).abs() < 1e-6, "({l}, {q}, {k}): {v} vs {x}"),
                None => assert_eq!(v, 0.0),
            }
        }
    }
    assert!(src.mask_hidden(0).two_sided);
    assert_eq!(src.mask_hidden(2).chunk, Some(CHUNK));
}

#[test]
fn pooled_logits_from_both_gpu_paths_equal_the_f64_twin() {
    let Some(mut e) = engine() else { return };
    e.chunk_bytes = 30_000;
    e.qk_state_bytes = 30_000;
    // Causal, and bidirectional with a two-sided window in layer 0 and two-sided chunks in
    // layer 2.
    for causal in [true, false] {
        pooled_logits_equal_the_f64_twin(&mut e, causal);
    }
}

fn pooled_logits_equal_the_f64_twin(e: &mut attnviz::Engine, causal: bool) {
    let src = source_of(causal, Values::Logits);
    let mask = if causal { Causal::On } else { Causal::Off };
    let layers = src.shape().layers;
    let cells: Vec<(usize, usize)> = (0..layers).flat_map(|l| [(l, 0), (l, 1)]).collect();
    let options = PoolOptions {
        causal: mask,
        diagonal: Some(src.diagonal()),
        ..Default::default()
    };
    // (both score kernels, each with a window or segment of keys per dispatch and with the
    // keys split across workgroups, as on GPUs)
    let (target, budget) = (e.gpu.qk_split_workgroups, e.gpu.row_vec4s);
    let runs = [(0, budget), (1 << 20, budget), (0, 0), (1 << 20, 0)];
    for (cell, (split, vec4s)) in [N as u32, 50, 23]
        .into_iter()
        .flat_map(|c| runs.map(|r| (c, r)))
    {
        (e.gpu.qk_split_workgroups, e.gpu.row_vec4s) = (split, vec4s);
        let geometry = CellGeometry::new(N, N, Some(cell)).unwrap();
        // The one-pass path (every key output).
        let gpu = e.pool(&src, &cells, geometry, options).unwrap();
        let gpu = gpu.read_accums(&e.gpu).unwrap();
        let cpu = attnviz::cpu::pool_cells(&src, &cells, geometry, options).unwrap();
        let cpu: Vec<Vec<Accum>> = cpu.into_iter().map(|p| p.accum).collect();
        let what =
            format!("causal {causal}: one-pass, cell {cell}, split {split}, row vec4s {vec4s}");
        common::assert_accums_close(&what, &gpu, &cpu);
    }
    (e.gpu.qk_split_workgroups, e.gpu.row_vec4s) = (target, budget);
    // The two-pass path: a region of keys, as the viewer's zoomed detail pools it; the pool
    // pass masks the window, and the chunks from the region's first key's position.
    let region = src.region(20..140, 5..120).unwrap();
    let s = region.shape();
    let geometry = CellGeometry::new(s.queries, s.keys, Some(40)).unwrap();
    let options = PoolOptions {
        causal: mask,
        diagonal: Some(region.diagonal()),
        ..Default::default()
    };
    let gpu = e.pool(&region, &cells, geometry, options).unwrap();
    let gpu = gpu.read_accums(&e.gpu).unwrap();
    let cpu = attnviz::cpu::pool_cells(&region, &cells, geometry, options).unwrap();
    let cpu: Vec<Vec<Accum>> = cpu.into_iter().map(|p| p.accum).collect();
    common::assert_accums_close(&format!("causal {causal}: two-pass region"), &gpu, &cpu);
    let windowed: &[usize] = if causal { &[0, 4] } else { &[0] };
    for &cell in windowed {
        assert!(
            gpu[cell].iter().any(|a| a.count() == 0) && gpu[cell].iter().any(|a| a.count() > 0),
            "the region holds masked and unmasked pixels"
        );
    }
}

#[test]
fn a_logits_tile_equals_min_max_viridis_of_the_f64_logits() {
    let dir = tempfile::tempdir().unwrap();
    let (q, k) = (dir.path().join("q.npy"), dir.path().join("k.npy"));
    // One layer (layer 0: the window), written as .npy, with the window given on the command line.
    let write = |path: &std::path::Path, a: Array4<f32>| {
        let a = a.slice(ndarray::s![0..1, .., .., ..]).to_owned();
        let src = ArraySource::from_f32("x", &a);
        attnviz::source::write_tensor(&src, path, &|_, _| {}).unwrap();
    };
    write(&q, values(2, 2, N, 3));
    write(&k, values(2, 1, N, 4));
    let tiles = dir.path().join("tiles");
    let run = Command::new(env!("CARGO_BIN_EXE_attnviz"))
        .args(["render", "--quiet", "--values", "logits", "--causal", "on"])
        .args(["--sliding-window", "40", "--q"])
        .arg(&q)
        .arg("--k")
        .arg(&k)
        .arg("-o")
        .arg(dir.path().join("fig.png"))
        .arg("--tiles")
        .arg(&tiles)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let lut = Colormap::Viridis.table();
    for h in 0..2 {
        let tile = image::open(tiles.join(format!("l1_h{}.png", h + 1)))
            .unwrap()
            .to_rgba8();
        assert_eq!(tile.dimensions(), (N as u32, N as u32));
        let all: Vec<f64> = (0..N * N)
            .filter_map(|i| logit(0, h, i / N, i % N))
            .collect();
        let lo = all.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = all.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let mut off_by_one = 0;
        for (x, y, p) in tile.enumerate_pixels() {
            let (qi, ki) = (y as usize, x as usize);
            let Some(v) = logit(0, h, qi, ki) else {
                assert!(
                    !lut.iter().any(|c| c[..] == p.0[..3]) || p.0[3] == 0,
                    "hidden ({qi}, {ki}) is drawn as a value: {p:?}"
                );
                continue;
            };
            // matplotlib: Colormap(x) for float x takes index int(x · N), N − 1 at x = 1.
            let x01 = (v - lo) / (hi - lo);
            let want = ((x01 * 256.0) as usize).min(255);
            // Colours, not indices: viridis' bytes repeat (entries 104 and 105, 137 and 138
            // are the same RGB), so an index found from a colour can be the twin's.
            let near = |i: usize| lut[i.min(255)][..] == p.0[..3];
            assert!(
                near(want) || near(want + 1) || near(want.saturating_sub(1)),
                "({qi}, {ki}): {p:?} is not matplotlib's colour {want} or a neighbour"
            );
            off_by_one += !near(want) as usize;
        }
        eprintln!(
            "head {h}: {off_by_one} of {} entries one LUT step off",
            all.len()
        );
    }
}
