//! Attention recomputed from Q and K: the GPU's probabilities against the f64 CPU reference,
//! and figures from Q, K against figures from the same attention stored as a tensor.

mod common;

use std::ops::Range;
use std::path::Path;
use std::process::Command;

use attnviz::engine::qk_rows::GpuRows;
use attnviz::source::qk::{QkOptions, QkSource};
use attnviz::source::ArraySource;
use attnviz::{AttentionSource, Engine, Norm, Reduce, RenderOptions};
use common::{engine, Rng};
use ndarray::Array4;

fn tensor(
    name: &str,
    l: usize,
    h: usize,
    n: usize,
    d: usize,
    seed: u64,
    gain: f32,
) -> Box<ArraySource> {
    let mut rng = Rng::new(seed);
    let a = Array4::from_shape_fn((l, h, n, d), |_| (rng.next_f32() * 2.0 - 1.0) * gain);
    Box::new(ArraySource::from_f32(name, &a))
}

struct Case {
    name: &'static str,
    heads: usize,
    kv_heads: usize,
    nq: usize,
    nk: usize,
    d: usize,
    options: QkOptions,
}

fn qk(c: &Case) -> QkSource {
    // Gain 1.5 with d ≤ 64 gives scores spread over several nats: peaked rows and flat ones.
    let q = tensor("q", 1, c.heads, c.nq, c.d, 11, 1.5);
    let k = tensor("k", 1, c.kv_heads, c.nk, c.d, 12, 1.5);
    QkSource::new(q, k, &c.options).unwrap()
}

fn cases() -> Vec<Case> {
    let plain = QkOptions::default();
    let causal = QkOptions {
        causal: true,
        ..Default::default()
    };
    vec![
        Case {
            name: "mha",
            heads: 2,
            kv_heads: 2,
            nq: 1024,
            nk: 1024,
            d: 64,
            options: plain.clone(),
        },
        Case {
            name: "gqa-causal",
            heads: 4,
            kv_heads: 2,
            nq: 300,
            nk: 300,
            d: 32,
            options: causal.clone(),
        },
        Case {
            name: "mqa-odd-dim",
            heads: 3,
            kv_heads: 1,
            nq: 130,
            nk: 257,
            d: 30,
            options: plain.clone(),
        },
        Case {
            name: "slice-causal-scaled",
            heads: 1,
            kv_heads: 1,
            nq: 200,
            nk: 200,
            d: 16,
            options: QkOptions {
                queries: Some(70..133),
                softmax_scale: Some(0.4),
                ..causal.clone()
            },
        },
        // Q shorter than K (a KV-cache suffix): bottom-right aligned diagonal.
        Case {
            name: "suffix-causal",
            heads: 1,
            kv_heads: 1,
            nq: 40,
            nk: 170,
            d: 8,
            options: causal,
        },
    ]
}

fn all_rows(src: &dyn AttentionSource) -> Range<usize> {
    0..src.shape().queries
}

#[test]
fn gpu_softmax_equals_the_f64_reference() {
    let Some(e) = engine() else { return };
    for c in cases() {
        let src = qk(&c);
        let s = src.shape();
        let mut worst = 0f32;
        for head in 0..s.heads {
            let gpu = e.qk_probabilities(&src, 0, head, all_rows(&src)).unwrap();
            let mut cpu = vec![0f32; s.queries * s.keys];
            src.probabilities_cpu(0, head, all_rows(&src), &mut cpu)
                .unwrap();
            for (i, (g, c)) in gpu.iter().zip(&cpu).enumerate() {
                // Masked entries are exactly zero on both sides.
                if *c == 0.0 {
                    assert_eq!(*g, 0.0, "{}: entry {i} of head {head}", c_name(&src));
                }
                worst = worst.max((g - c).abs());
            }
            for row in gpu.chunks(s.keys) {
                let sum: f32 = row.iter().sum();
                assert!((sum - 1.0).abs() < 1e-4, "{}: a row sums to {sum}", c.name);
            }
            // All keys of a row come from the row kernel's stored chunks; a range of keys (a
            // zoomed view) from the two-pass kernels: both against the reference.
            let region = src.region(all_rows(&src), 1..s.keys).unwrap();
            let part = e
                .qk_probabilities(&region, 0, head, all_rows(&region))
                .unwrap();
            let cpu_part = cpu.chunks(s.keys).flat_map(|row| &row[1..]);
            for (i, (g, c)) in part.iter().zip(cpu_part).enumerate() {
                if *c == 0.0 {
                    assert_eq!(*g, 0.0, "{}: region entry {i} of head {head}", c_name(&src));
                }
                worst = worst.max((g - c).abs());
            }
            assert_eq!(part.len(), s.queries * (s.keys - 1));
        }
        assert!(
            worst <= 1e-5,
            "{}: GPU differs from the f64 reference by {worst}",
            c.name
        );
        eprintln!("{}: max |gpu - f64| = {worst:e}", c.name);
    }
}

fn c_name(src: &QkSource) -> &str {
    src.name()
}

/// A stored tensor of a query slice, with the slice's diagonal and first row (a file cannot say
/// where it is).
struct Stored(ArraySource, i64, usize);

impl AttentionSource for Stored {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn shape(&self) -> attnviz::Shape {
        self.0.shape()
    }
    fn dtype(&self) -> attnviz::DType {
        self.0.dtype()
    }
    fn read_rows(&self, l: usize, h: usize, r: usize, dst: &mut [u8]) -> attnviz::Result<()> {
        self.0.read_rows(l, h, r, dst)
    }
    fn diagonal(&self) -> i64 {
        self.1
    }
    fn first_query(&self) -> usize {
        self.2
    }
}

/// The GPU's probabilities of every head, stored as an ordinary in-memory tensor.
fn materialize(e: &Engine, src: &QkSource) -> Stored {
    let rows = GpuRows::new(e, src);
    let s = rows.shape();
    let mut bytes = vec![0u8; s.layers * s.heads * s.queries * s.keys * 4];
    for (i, head) in bytes.chunks_mut(s.queries * s.keys * 4).enumerate() {
        rows.read_rows(i / s.heads, i % s.heads, 0, head).unwrap();
    }
    let stored = ArraySource::new("materialized", s, attnviz::DType::F32, bytes).unwrap();
    Stored(stored, src.diagonal(), src.rows().start)
}

#[test]
fn figures_from_q_and_k_equal_figures_from_the_materialized_attention() {
    let Some(mut e) = engine() else { return };
    // Small chunks: several blocks of rows per head, blocks that split pooled bins.
    e.chunk_bytes = 40_000;
    e.qk_state_bytes = 40_000;
    for c in cases() {
        let src = qk(&c);
        let stored = materialize(&e, &src);
        for (reduce, norm, cell) in [
            (Reduce::Max, Norm::Head, Some(64)),
            (Reduce::Mean, Norm::Global, Some(50)),
            (Reduce::Max, Norm::Row, None),
        ] {
            let options = RenderOptions {
                reduce,
                norm,
                cell,
                causal: if c.options.causal {
                    attnviz::pool::Causal::On
                } else {
                    attnviz::pool::Causal::Off
                },
                ..Default::default()
            };
            let from_qk = e.render(&src, &options).unwrap();
            let from_file = e.render(&stored, &options).unwrap();
            assert_eq!(from_qk.stats.len(), from_file.stats.len());
            // The figure from Q and K pools in one pass (src/pool/qk/tiled/): a bin's extremes are
            // exp2(score - lse) with the same scores but an lse summed in another order, its
            // mean the same sum in another order, so values may differ from the stored
            // probabilities in the last bits (tests/qk_tiled.rs bounds them). A pixel on a
            // colormap step may then take the neighbouring entry: at most one LUT step (a few
            // units per channel), in at most 0.1% of the pixels.
            for (a, b) in from_qk.stats.iter().zip(&from_file.stats) {
                let (a, b) = (a.range().unwrap(), b.range().unwrap());
                for (x, y) in [(a.0, b.0), (a.1, b.1)] {
                    assert!(
                        (x - y).abs() <= 1e-5 * y.abs(),
                        "{}: {reduce:?} {norm:?}: range {a:?} vs {b:?}",
                        c.name
                    );
                }
            }
            assert_eq!(from_qk.rgba.len(), from_file.rgba.len());
            let mut off = 0;
            for (p, q) in from_qk.rgba.chunks(4).zip(from_file.rgba.chunks(4)) {
                let d = p.iter().zip(q).map(|(x, y)| x.abs_diff(*y)).max().unwrap();
                assert!(
                    d <= 8,
                    "{}: {reduce:?} {norm:?}: a channel differs by {d}",
                    c.name
                );
                off += (d > 0) as usize;
            }
            assert!(
                off * 1000 <= from_qk.rgba.len() / 4,
                "{}: {reduce:?} {norm:?}: {off} pixels differ",
                c.name
            );
        }
    }
}

#[test]
fn the_cpu_renderer_draws_q_and_k_like_the_gpu() {
    let Some(e) = engine() else { return };
    let c = &cases()[1];
    let src = qk(c);
    let options = RenderOptions {
        causal: attnviz::pool::Causal::On,
        cell: Some(64),
        ..Default::default()
    };
    let gpu = e.render(&src, &options).unwrap();
    let cpu = attnviz::render_cpu(&src, &options).unwrap();
    assert_eq!((gpu.width, gpu.height), (cpu.width, cpu.height));
    // Probabilities differ in the last bits (f32 against f64): allow one LUT step, which is
    // at most a few units per channel in viridis, and almost never.
    let mut off = 0;
    for (a, b) in gpu.rgba.iter().zip(&cpu.rgba) {
        let d = (*a as i32 - *b as i32).abs();
        assert!(d <= 8, "channel differs by {d}");
        off += (d > 0) as usize;
    }
    assert!(off * 1000 < gpu.rgba.len(), "{off} channels differ");
}

fn attnviz_cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_attnviz"))
        .args(args)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .unwrap()
}

fn run_ok(args: &[&str]) {
    let o = attnviz_cli(args);
    assert!(
        o.status.success(),
        "attnviz {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn cli_render_from_q_and_k_equals_render_from_the_written_attention() {
    let Some(_) = engine() else { return };
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    run_ok(&[
        "synth-qk",
        "-o",
        &p("qk.safetensors"),
        "--seq",
        "300",
        "--heads",
        "4",
        "--kv-heads",
        "2",
        "--dim",
        "32",
    ]);
    run_ok(&[
        "render",
        "--q",
        &p("qk.safetensors"),
        "--causal",
        "-o",
        &p("qk.png"),
        "--tiles",
        &p("qk_tiles"),
        "--quiet",
    ]);
    run_ok(&[
        "attention",
        "--q",
        &p("qk.safetensors"),
        "--causal",
        "-o",
        &p("attn.npy"),
    ]);
    run_ok(&[
        "render",
        &p("attn.npy"),
        "--causal",
        "-o",
        &p("attn.png"),
        "--tiles",
        &p("attn_tiles"),
        "--quiet",
    ]);
    // Within one LUT step in at most 0.1% of the pixels: the figure from Q and K pools in one
    // pass, whose values may differ from the stored probabilities' in the last bits (see
    // `figures_from_q_and_k_equal_figures_from_the_materialized_attention`).
    assert_images_close(&p("qk.png"), &p("attn.png"));
    for h in 1..=4 {
        let name = format!("l1_h{h}.png");
        assert_images_close(
            Path::new(&p("qk_tiles")).join(&name).to_str().unwrap(),
            Path::new(&p("attn_tiles")).join(&name).to_str().unwrap(),
        );
    }
}

fn assert_images_close(a: &str, b: &str) {
    let (x, y) = (
        image::open(a).unwrap().to_rgba8(),
        image::open(b).unwrap().to_rgba8(),
    );
    assert_eq!(x.dimensions(), y.dimensions(), "{a} vs {b}");
    let mut off = 0;
    for (p, q) in x.pixels().zip(y.pixels()) {
        let d =
            p.0.iter()
                .zip(q.0)
                .map(|(u, v)| u.abs_diff(v))
                .max()
                .unwrap();
        assert!(d <= 8, "{a} vs {b}: a channel differs by {d}");
        off += (d > 0) as usize;
    }
    assert!(
        off * 1000 <= x.pixels().len(),
        "{a} vs {b}: {off} pixels differ"
    );
}

#[test]
fn mismatched_q_and_k_fail_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    run_ok(&[
        "synth-qk",
        "-o",
        &p("a.safetensors"),
        "--seq",
        "16",
        "--heads",
        "3",
        "--dim",
        "8",
        "--dtype",
        "f32",
    ]);
    run_ok(&[
        "synth-qk",
        "-o",
        &p("b.safetensors"),
        "--seq",
        "16",
        "--heads",
        "2",
        "--dim",
        "8",
        "--dtype",
        "f32",
    ]);
    // Q from one file, K from another whose 2 heads do not divide Q's 3.
    let o = attnviz_cli(&[
        "render",
        "--q",
        &p("a.safetensors"),
        "--k",
        &p("b.safetensors"),
        "-o",
        &p("x.png"),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("not a multiple"), "{err}");
    assert!(!Path::new(&p("x.png")).exists());
    let o = attnviz_cli(&[
        "render",
        "--q",
        &p("a.safetensors"),
        "--queries",
        "9..4",
        "-o",
        &p("x.png"),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--queries 9..4"));
    // Two captures that differ in shape: each named by its one file (not "a × a").
    let o = attnviz_cli(&[
        "diff",
        &p("a.safetensors"),
        &p("b.safetensors"),
        "-o",
        &p("x.png"),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    let named = format!("error: {} has shape", p("a.safetensors"));
    assert!(err.starts_with(&named) && !err.contains('×'), "{err}");
    // Queries in a .npy without --k: the keys are missing (it used to read "--tensor applies to
    // .safetensors files only", a flag the user never gave).
    run_ok(&["synth", "-o", &p("q.npy"), "--seq", "16", "--dtype", "f32"]);
    let o = attnviz_cli(&["render", "--q", &p("q.npy"), "-o", &p("x.png")]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("q.npy: no keys") && err.contains("--k FILE"),
        "{err}"
    );
    assert!(!Path::new(&p("x.png")).exists());
}

#[test]
fn rows_of_a_hundred_thousand_keys_keep_their_mass() {
    let Some(e) = engine() else { return };
    // Long rows: the statistics run in key segments (software rasterizers cap a shader's loop
    // iterations; a single loop over 100k keys used to stop at about half of them) and sum
    // each tile apart (one running f32 sum lost mass to rounding).
    for causal in [false, true] {
        let src = QkSource::new(
            tensor("q", 1, 1, 3, 8, 21, 0.5),
            tensor("k", 1, 1, 100_000, 8, 22, 0.5),
            &QkOptions {
                causal,
                ..Default::default()
            },
        )
        .unwrap();
        let gpu = e.qk_probabilities(&src, 0, 0, 0..3).unwrap();
        let mut cpu = vec![0f32; 3 * 100_000];
        src.probabilities_cpu(0, 0, 0..3, &mut cpu).unwrap();
        let worst = gpu
            .iter()
            .zip(&cpu)
            .map(|(g, c)| (g - c).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-7, "causal {causal}: worst {worst}");
        for row in gpu.chunks(100_000) {
            let sum: f64 = row.iter().map(|&p| p as f64).sum();
            assert!(
                (sum - 1.0).abs() < 1e-4,
                "causal {causal}: a row sums to {sum}"
            );
        }
    }
}

/// A NaN in Q: the row kernel, which reads whole rows for `attnviz attention`, hands the head to
/// the two-pass kernels (made only then), whose probabilities follow the reference: the NaN's
/// row is NaN, every other row within 1e-5; the other head, finite, as the reference too.
#[test]
fn a_nan_in_q_is_computed_like_the_reference() {
    let Some(e) = engine() else { return };
    let mut rng = Rng::new(31);
    let mut q = Array4::from_shape_fn((1, 2, 50, 16), |_| rng.next_f32() * 2.0 - 1.0);
    q[[0, 0, 7, 3]] = f32::NAN;
    let src = QkSource::new(
        Box::new(ArraySource::from_f32("q", &q)),
        tensor("k", 1, 2, 50, 16, 32, 1.0),
        &QkOptions {
            causal: true,
            ..Default::default()
        },
    )
    .unwrap();
    for head in 0..2 {
        let gpu = e.qk_probabilities(&src, 0, head, 0..50).unwrap();
        let mut cpu = vec![0f32; 50 * 50];
        src.probabilities_cpu(0, head, 0..50, &mut cpu).unwrap();
        for (i, (g, c)) in gpu.iter().zip(&cpu).enumerate() {
            let row = i / 50;
            if head == 0 && row == 7 {
                assert!(g.is_nan() == c.is_nan(), "entry {i}: {g} vs {c}");
            } else {
                assert!((g - c).abs() <= 1e-5, "head {head} entry {i}: {g} vs {c}");
            }
        }
        assert_eq!(gpu[7 * 50].is_nan(), head == 0, "head {head}: the NaN row");
    }
}

/// A sliding window far shorter than a causal head of 1024 rows: the row kernel's workgroups
/// (512 rows at 8 rows a lane) and subgroups each walk the keys their own rows see, from the
/// window's oldest to the diagonal; every probability equals the f64 reference's, and hidden
/// entries are exactly 0.
#[test]
fn a_short_sliding_window_on_a_long_head_equals_the_f64_reference() {
    let Some(e) = engine() else { return };
    let c = Case {
        name: "window-causal",
        heads: 1,
        kv_heads: 1,
        nq: 1024,
        nk: 1024,
        d: 16,
        options: QkOptions {
            causal: true,
            sliding_window: Some(100),
            ..Default::default()
        },
    };
    let src = qk(&c);
    let s = src.shape();
    let gpu = e.qk_probabilities(&src, 0, 0, all_rows(&src)).unwrap();
    let mut cpu = vec![0f32; s.queries * s.keys];
    src.probabilities_cpu(0, 0, all_rows(&src), &mut cpu)
        .unwrap();
    let mut worst = 0f32;
    for (i, (g, c)) in gpu.iter().zip(&cpu).enumerate() {
        if *c == 0.0 {
            assert_eq!(*g, 0.0, "entry {i}");
        }
        worst = worst.max((g - c).abs());
    }
    assert!(
        worst <= 1e-5,
        "GPU differs from the f64 reference by {worst}"
    );
}

/// A capture given as INPUT (`attnviz render cap.safetensors`, as `diff` takes one) is its
/// attention recomputed, exactly as `--q cap.safetensors` draws it: the same PNG bytes, the same
/// statistics, with Q/K options (`--values logits`, `--softcap`) applying, not refused.
#[test]
fn a_capture_given_as_input_is_drawn_as_with_q() {
    let Some(_) = engine() else { return };
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let cap = p("cap.safetensors");
    run_ok(&[
        "synth-qk", "-o", &cap, "--seq", "48", "--heads", "2", "--dim", "8",
    ]);
    for extra in [
        &["--causal", "on"][..],
        &["--values", "logits", "--softcap", "5"],
    ] {
        let (a, b) = (p("a.png"), p("b.png"));
        let mut input = vec!["render", cap.as_str(), "-o", &a];
        input.extend(extra);
        run_ok(&input);
        let mut with_q = vec!["render", "--q", cap.as_str(), "-o", &b];
        with_q.extend(extra);
        run_ok(&with_q);
        assert_eq!(
            std::fs::read(&a).unwrap(),
            std::fs::read(&b).unwrap(),
            "{extra:?}"
        );
    }
    let table = |args: &[&str]| {
        let o = attnviz_cli(args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    assert_eq!(
        table(&["heads", &cap, "--causal", "on"]),
        table(&["heads", "--q", &cap, "--causal", "on"])
    );
}
