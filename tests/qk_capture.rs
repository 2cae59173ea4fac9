//! A capture's per-layer settings (sliding window, attention chunks, softcap, sink logits, scale: see
//! src/source/qk_meta.rs) in every Q/K path: the two-pass GPU probabilities and the one-pass
//! pooled path against the f64 CPU reference, and capture files read with their metadata.
//!
//! Tolerances, and why: probabilities within 1e-5 of the f64 reference, as for plain Q/K (f32
//! scores, and tanh of an f32 score for the softcap, whose error is under 2 ulp of the score);
//! pooled extremes and sums within 1e-5 per entry (the same scores folded in another order).
//! Counts (which entries are masked) are exact.

mod common;

use std::path::Path;
use std::process::Command;

use attnviz::pool::accum::Accum;
use attnviz::pool::geometry::CellGeometry;
use attnviz::pool::{Causal, PoolOptions};
use attnviz::source::qk::{QkOptions, QkSource};
use attnviz::source::qk_meta::{CaptureMeta, LayerAttention};
use attnviz::source::ArraySource;
use attnviz::AttentionSource;
use common::{engine, write_capture, Rng};
use ndarray::Array4;

fn values(l: usize, h: usize, n: usize, d: usize, seed: u64) -> Array4<f32> {
    let mut rng = Rng::new(seed);
    Array4::from_shape_fn((l, h, n, d), |_| (rng.next_f32() * 2.0 - 1.0) * 1.5)
}

/// Two layers, both causal or both bidirectional: layer 0 with a window of `window` keys
/// (two-sided where bidirectional) or attention chunks of `chunk` (or both) and a scale of its
/// own; layer 1 softcapped with sink logits per query head.
fn meta(heads: usize, causal: bool, window: Option<usize>, chunk: Option<usize>) -> CaptureMeta {
    CaptureMeta {
        model: Some("TestModel".into()),
        tokens: None,
        padding: None,
        layers: vec![
            LayerAttention {
                index: Some(0),
                scale: Some(0.3),
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
    }
}

#[derive(Clone)]
struct Case {
    name: &'static str,
    heads: usize,
    kv_heads: usize,
    nq: usize,
    nk: usize,
    d: usize,
    window: Option<usize>,
    chunk: Option<usize>,
    cell: u32,
    causal: bool,
}

fn source(c: &Case) -> QkSource {
    let q = ArraySource::from_f32("q", &values(2, c.heads, c.nq, c.d, 5));
    let k = ArraySource::from_f32("k", &values(2, c.kv_heads, c.nk, c.d, 6));
    QkSource::new(
        Box::new(q),
        Box::new(k),
        &QkOptions {
            meta: Some(meta(c.heads, c.causal, c.window, c.chunk)),
            ..Default::default()
        },
    )
    .unwrap()
}

fn cases() -> Vec<Case> {
    let mut cases = vec![
        // Windows smaller than a tile and larger, bins the window cuts through.
        Case {
            name: "window-40",
            heads: 2,
            kv_heads: 1,
            nq: 200,
            nk: 200,
            d: 32,
            window: Some(40),
            chunk: None,
            cell: 50,
            causal: true,
        },
        Case {
            name: "window-100-gqa-uneven-bins",
            heads: 4,
            kv_heads: 2,
            nq: 190,
            nk: 190,
            d: 64,
            window: Some(100),
            chunk: None,
            cell: 23,
            causal: true,
        },
        // A KV-cache suffix with keys in several segments: whole segments and tiles before
        // the window are skipped.
        Case {
            name: "suffix-long-keys-window-3000",
            heads: 2,
            kv_heads: 1,
            nq: 70,
            nk: 9000,
            d: 8,
            window: Some(3000),
            chunk: None,
            cell: 64,
            causal: true,
        },
        // One pixel per entry.
        Case {
            name: "native-window-7",
            heads: 1,
            kv_heads: 1,
            nq: 96,
            nk: 96,
            d: 16,
            window: Some(7),
            chunk: None,
            cell: 96,
            causal: true,
        },
        // Attention chunks (Llama 4's chunked layers): chunks narrower than a tile, bins and
        // tiles the chunk edges cut through.
        Case {
            name: "chunks-of-48",
            heads: 2,
            kv_heads: 1,
            nq: 200,
            nk: 200,
            d: 32,
            window: None,
            chunk: Some(48),
            cell: 50,
            causal: true,
        },
        // A window and chunks together: the later of their first keys.
        Case {
            name: "chunks-of-64-window-30-gqa",
            heads: 4,
            kv_heads: 2,
            nq: 190,
            nk: 190,
            d: 64,
            window: Some(30),
            chunk: Some(64),
            cell: 23,
            causal: true,
        },
        // A KV-cache suffix whose rows cross a chunk edge (8970): rows before it see keys
        // from 5980, rows after it from 8970; segments and splits before them skipped.
        Case {
            name: "suffix-long-keys-chunks-of-2990",
            heads: 2,
            kv_heads: 1,
            nq: 70,
            nk: 9000,
            d: 8,
            window: None,
            chunk: Some(2990),
            cell: 64,
            causal: true,
        },
        // A window and chunks longer than any i32 (as long as none): the kernels' saturated
        // values hide nothing either.
        Case {
            name: "window-and-chunks-past-i32",
            heads: 1,
            kv_heads: 1,
            nq: 64,
            nk: 64,
            d: 8,
            window: Some(3_000_000_000),
            chunk: Some(4_000_000_000),
            cell: 32,
            causal: true,
        },
        // Bidirectional layers, whose windows are two-sided (ModernBERT's local layers): keys
        // after the window are entries of 0 as those before it are, tiles past it skipped;
        // windows narrower than a tile and wider than a segment of keys.
        Case {
            name: "bidirectional-window-40-gqa",
            heads: 4,
            kv_heads: 2,
            nq: 190,
            nk: 190,
            d: 64,
            window: Some(40),
            chunk: None,
            cell: 23,
            causal: false,
        },
        Case {
            name: "bidirectional-window-700-long",
            heads: 2,
            kv_heads: 1,
            nq: 3000,
            nk: 3000,
            d: 8,
            window: Some(700),
            chunk: None,
            cell: 64,
            causal: false,
        },
        Case {
            name: "bidirectional-native-window-7",
            heads: 1,
            kv_heads: 1,
            nq: 96,
            nk: 96,
            d: 16,
            window: Some(7),
            chunk: None,
            cell: 96,
            causal: false,
        },
        Case {
            name: "native-chunks-of-16",
            heads: 1,
            kv_heads: 1,
            nq: 96,
            nk: 96,
            d: 16,
            window: None,
            chunk: Some(16),
            cell: 96,
            causal: true,
        },
        // Bidirectional chunks (a vision tower attending within each video frame, captured as
        // one layer): each row sees its own chunk's keys on both sides, the rest entries of 0;
        // chunks narrower than a tile and wider than a segment of keys, a last chunk cut
        // short, and with a two-sided window inside them.
        Case {
            name: "bidirectional-chunks-64-gqa",
            heads: 4,
            kv_heads: 2,
            nq: 190,
            nk: 190,
            d: 64,
            window: None,
            chunk: Some(64),
            cell: 23,
            causal: false,
        },
        Case {
            name: "bidirectional-chunks-1000-window-300-long",
            heads: 2,
            kv_heads: 1,
            nq: 3000,
            nk: 3000,
            d: 8,
            window: Some(300),
            chunk: Some(1000),
            cell: 64,
            causal: false,
        },
    ];
    // the native chunks of 16 above, in a bidirectional layer
    let native = cases
        .iter()
        .find(|c| c.name == "native-chunks-of-16")
        .cloned()
        .unwrap();
    cases.push(Case {
        name: "bidirectional-native-chunks-16",
        causal: false,
        ..native
    });
    cases
}

#[test]
fn metadata_resolves_per_layer_and_the_command_line_wins() {
    let c = &cases()[0];
    let src = source(c);
    assert!(src.causal(), "causal from the metadata");
    assert_eq!(src.layer(0).scale, 0.3);
    assert_eq!(src.layer(0).window, Some(40));
    assert_eq!(src.layer(1).scale, 1.0 / (32f32).sqrt());
    assert_eq!(src.layer(1).softcap, Some(2.5));
    assert_eq!(src.layer(1).sink(1), Some(0.5));
    assert_eq!(src.visible(0, 100), 61..101);
    assert_eq!(src.visible(1, 100), 0..101);
    // chunks of 48: row 100 sees its chunk's keys from 96; with a window of 30 as well, the
    // later first key of the two
    let chunked = source(&cases()[4]);
    assert_eq!(chunked.visible(0, 100), 96..101);
    assert_eq!(chunked.visible(0, 47), 0..48);
    assert_eq!(chunked.visible(0, 48), 48..49);
    assert_eq!(chunked.visible(1, 100), 0..101);
    let both = source(&cases()[5]);
    assert_eq!(both.visible(0, 100), 71..101);
    assert_eq!(both.visible(0, 130), 128..131);
    assert_eq!(
        chunked.applied().as_deref(),
        Some("attention chunks of 48 in layer 1; softcap 2.5 in layer 2; sink logits in layer 2")
    );
    assert_eq!(
        src.applied().as_deref(),
        Some("sliding window 40 in layer 1; softcap 2.5 in layer 2; sink logits in layer 2")
    );
    // a bidirectional layer's window of 40: keys less than 40 away on either side
    let two_sided = source(&cases()[8]);
    assert!(!two_sided.causal());
    assert_eq!(two_sided.visible(0, 100), 61..140);
    assert_eq!(two_sided.visible(0, 170), 131..190);
    assert_eq!(two_sided.visible(1, 100), 0..190);
    assert_eq!(
        two_sided.applied().as_deref(),
        Some(
            "two-sided sliding window 40 in layer 1; softcap 2.5 in layer 2; sink logits in layer 2"
        )
    );
    let q = ArraySource::from_f32("q", &values(2, 2, 200, 32, 5));
    let k = ArraySource::from_f32("k", &values(2, 1, 200, 32, 6));
    let src = QkSource::new(
        Box::new(q),
        Box::new(k),
        &QkOptions {
            meta: Some(meta(2, true, Some(40), None)),
            softmax_scale: Some(0.5),
            sliding_window: Some(10),
            softcap: Some(9.0),
            ..Default::default()
        },
    )
    .unwrap();
    for l in 0..2 {
        assert_eq!(src.layer(l).scale, 0.5);
        assert_eq!(src.layer(l).window, Some(10));
        assert_eq!(src.layer(l).softcap, Some(9.0));
    }
}

#[test]
fn two_pass_probabilities_equal_the_f64_reference() {
    let Some(e) = engine() else { return };
    for c in cases() {
        let src = source(&c);
        let s = src.shape();
        let mut worst = 0f32;
        for layer in 0..2 {
            for head in 0..s.heads {
                let (gpu, w) =
                    common::qk_probabilities_checked(&e, &src, layer, head, |row, key, g| {
                        if !src.visible(layer, row).contains(&key) {
                            assert_eq!(
                                g, 0.0,
                                "{}: hidden entry {row}, {key} of {layer}/{head}",
                                c.name
                            );
                        }
                    });
                worst = worst.max(w);
                // Sinks take their share of each row: the rows of layer 1 sum to less than 1.
                let sum: f32 = gpu[..s.keys].iter().sum();
                if layer == 1 {
                    assert!(sum < 1.0 - 1e-4, "{}: sink took nothing ({sum})", c.name);
                } else {
                    assert!((sum - 1.0).abs() < 1e-4, "{}: row sums to {sum}", c.name);
                }
            }
        }
        assert!(worst <= 1e-5, "{}: GPU differs by {worst}", c.name);
        eprintln!("{}: max |gpu - f64| = {worst:e}", c.name);
    }
}

fn close(a: f32, b: f32, tol: f32) -> bool {
    (a - b).abs() <= tol
}

#[test]
fn one_pass_pooling_equals_the_f64_reference() {
    let Some(mut e) = engine() else { return };
    // (the one pass at every width: narrow columns are otherwise pooled from stored
    // probabilities, `Gpu::qk_store_keys`)
    e.gpu.qk_store_keys = 0;
    let (target, budget) = (e.gpu.qk_split_workgroups, e.gpu.row_vec4s);
    // Both score kernels (the row kernel, and the tiled one that GPUs give d = 128), each with
    // a window or segment of keys per dispatch and with the keys split across workgroups.
    let runs = [(0, budget), (1 << 20, budget), (0, 0), (1 << 20, 0)];
    for (c, (split, vec4s)) in cases()
        .into_iter()
        .flat_map(|c| runs.map(|r| (c.clone(), r)))
    {
        (e.gpu.qk_split_workgroups, e.gpu.row_vec4s) = (split, vec4s);
        let src = source(&c);
        let s = src.shape();
        let cells: Vec<(usize, usize)> = (0..2)
            .flat_map(|l| (0..s.heads).map(move |h| (l, h)))
            .collect();
        let geometry = CellGeometry::new(s.queries, s.keys, Some(c.cell)).unwrap();
        for row_norm in [false, true] {
            let options = PoolOptions {
                row_norm,
                causal: if c.causal { Causal::On } else { Causal::Off },
                diagonal: Some(src.diagonal()),
            };
            let gpu = e.pool(&src, &cells, geometry, options).unwrap();
            let gpu = gpu.read_accums(&e.gpu).unwrap();
            let cpu = attnviz::cpu::pool_cells(&src, &cells, geometry, options).unwrap();
            let cpu: Vec<Vec<Accum>> = cpu.into_iter().map(|p| p.accum).collect();
            for (cell, (x, y)) in gpu.iter().zip(&cpu).enumerate() {
                for (i, (p, q)) in x.iter().zip(y).enumerate() {
                    let what = format!(
                        "{} split {split} row vec4s {vec4s} row_norm={row_norm} cell {cell} pixel {i}",
                        c.name
                    );
                    assert_eq!(p.count(), q.count(), "{what}: count");
                    if p.count() == 0 {
                        continue;
                    }
                    let n = p.count() as f32;
                    let ok = close(p.max, q.max, 1e-5)
                        && close(p.min, q.min, 1e-5)
                        && close(p.sum, q.sum, 1e-5 * n);
                    assert!(ok, "{what}: {p:?} vs {q:?}");
                }
            }
        }
    }
    (e.gpu.qk_split_workgroups, e.gpu.row_vec4s) = (target, budget);
}

/// A bidirectional layer's two-sided window of 1 leaves every key past the diagonal exactly 0,
/// as a causal mask would; but Q and K say the layer is not causal, so under `--causal auto`
/// (the default) those zeros are entries, counted in the pixels' means and minima, on the CPU
/// as on the GPU. (The CPU twin once read the zeros as a causal mask detected: found by
/// `tools/sweep_backends.py`, up to 32% of a figure's pixels apart.)
#[test]
fn a_window_of_one_is_not_read_as_a_causal_mask() {
    let Some(e) = engine() else { return };
    let c = Case {
        name: "two-sided-1",
        heads: 2,
        kv_heads: 1,
        nq: 40,
        nk: 64,
        d: 16,
        window: Some(1),
        chunk: None,
        cell: 8,
        causal: false,
    };
    let src = source(&c);
    // (layer 0's heads: `meta` gives layer 1 no window)
    let cells = [(0, 0), (0, 1)];
    let geometry = CellGeometry::new(40, 64, Some(c.cell)).unwrap();
    let options = PoolOptions {
        causal: Causal::Auto,
        ..Default::default()
    };
    let gpu = e.pool(&src, &cells, geometry, options).unwrap();
    let gpu = gpu.read_accums(&e.gpu).unwrap();
    let cpu = attnviz::cpu::pool_cells(&src, &cells, geometry, options).unwrap();
    // every entry of an 8 × 8 bin counts, the zeros past the diagonal with them
    for (cell, (x, y)) in gpu.iter().zip(&cpu).enumerate() {
        assert!(!y.causal, "cell {cell}: read as causal");
        // rows at positions 24..32 over keys 0..8: every entry hidden, 0
        assert_eq!((x[0].max, y.accum[0].max), (0.0, 0.0), "cell {cell}");
        for (i, (p, q)) in x.iter().zip(&y.accum).enumerate() {
            assert_eq!((p.count(), q.count()), (64, 64), "cell {cell} pixel {i}");
            assert!(
                close(p.sum, q.sum, 1e-5) && close(p.min, q.min, 1e-6) && close(p.max, q.max, 1e-6),
                "cell {cell} pixel {i}: {p:?} vs {q:?}"
            );
        }
    }
}

#[test]
fn capture_files_carry_their_metadata_and_bad_metadata_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let (q, k) = (values(2, 2, 12, 8, 1), values(2, 1, 12, 8, 2));
    let good = dir.path().join("capture.safetensors");
    let tokens: Vec<String> = (0..12).map(|i| format!("\"t{i}\"")).collect();
    write_capture(
        &good,
        &q,
        &k,
        &format!(
            r#"{{"format": 1, "model": "M", "tokens": [{}], "layers": [
                {{"index": 0, "scaling": 0.2, "causal": true, "sliding_window": 4}},
                {{"index": 1, "causal": true, "softcap": 3.0, "sinks": [0.0, 1.0]}}]}}"#,
            tokens.join(",")
        ),
    );
    let src = QkSource::open(&good, None, &QkOptions::default()).unwrap();
    assert!(src.causal());
    assert_eq!(src.layer(0).window, Some(4));
    assert_eq!(
        src.meta().and_then(|m| m.tokens.as_ref()).map(Vec::len),
        Some(12)
    );

    let cli = env!("CARGO_BIN_EXE_attnviz");
    let out = dir.path().join("fig.png");
    let layout = dir.path().join("fig.json");
    let o = Command::new(cli)
        .args(["render", "--quiet", "--q"])
        .arg(&good)
        .arg("-o")
        .arg(&out)
        .arg("--layout-json")
        .arg(&layout)
        .output()
        .unwrap();
    // (the status and stderr say why, should it fail: it did once, in a full `cargo test`
    // during which a `cargo build` relinked the binary; not again in 66 runs, 18 of them three
    // at once)
    assert!(
        o.status.success(),
        "{}: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    let json = std::fs::read_to_string(&layout).unwrap();
    assert!(
        json.contains("sliding window 4 in layer 1"),
        "caption: {json}"
    );
    // its tokens label the axes (a taller figure: the title, naming the window, sets the
    // width); `--axes off` leaves them out, and refuses `--tokens` beside it
    let height = |args: &[&str]| -> u64 {
        let o = Command::new(cli)
            .args(["render", "--quiet"])
            .arg(&good)
            .args(["-o"])
            .arg(&out)
            .arg("--layout-json")
            .arg(&layout)
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&layout).unwrap()).unwrap();
        doc["height"].as_u64().unwrap()
    };
    let (labelled, bare) = (height(&[]), height(&["--axes", "off"]));
    assert!(labelled > bare, "{labelled} against {bare}");
    let words = dir.path().join("words.txt");
    std::fs::write(&words, "w\n".repeat(12)).unwrap();
    let o = Command::new(cli)
        .args(["render", "--quiet", "--axes", "off", "--tokens"])
        .arg(&words)
        .arg(&good)
        .arg("-o")
        .arg(dir.path().join("refused.png"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("--axes off"), "{err}");
    // `info` describes a capture rather than refusing it (it holds no attention to sum up)
    let o = Command::new(cli).arg("info").arg(&good).output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for line in [
        "shape:   2 layers, 2 query heads, 1 key head, 12 queries, 12 keys, head dimension 8",
        "model:   M",
        "tokens:  12",
        "mask:    causal, as the capture says",
        "also:    sliding window 4 in layer 1; softcap 3 in layer 2; sink logits in layer 2",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} in {text}");
    }
    assert!(
        text.contains("holds:   queries and keys (a capture)"),
        "{text}"
    );
    assert!(text.contains("scale:   0.2, "), "{text}");

    for (name, json, want) in [
        (
            "layers",
            r#"{"layers": [{"causal": true}]}"#,
            "describes 1 layers, Q and K have 2",
        ),
        (
            "sinks",
            r#"{"layers": [{"sinks": [1.0]}, {}]}"#,
            "1 sink logits for 2 query heads",
        ),
        ("tokens", r#"{"tokens": ["a"]}"#, "1 tokens for 12 keys"),
        (
            "window",
            r#"{"layers": [{"sliding_window": -3}, {}]}"#,
            "sliding_window -3",
        ),
        (
            "mixed",
            r#"{"layers": [{"causal": true}, {"causal": false}]}"#,
            "mixes causal and bidirectional",
        ),
    ] {
        let path = dir.path().join(format!("bad-{name}.safetensors"));
        write_capture(&path, &q, &k, json);
        let fig = dir.path().join(format!("bad-{name}.png"));
        let run = Command::new(cli)
            .args(["render", "--quiet", "--q"])
            .arg(&path)
            .arg("-o")
            .arg(&fig)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{name}: {err}");
        assert!(err.contains(want), "{name}: {err}");
        assert!(
            err.contains(&*path.to_string_lossy()),
            "{name} names the file: {err}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "{name}: {err}");
        assert!(!fig.exists(), "{name}: partial output");
    }
}

#[test]
fn diff_of_two_captures_equals_diff_of_their_attention_files() {
    let dir = tempfile::tempdir().unwrap();
    let cli = env!("CARGO_BIN_EXE_attnviz");
    let json = r#"{"layers": [{"causal": true, "sliding_window": 5}, {"causal": true}]}"#;
    let (a, b) = (
        dir.path().join("a.safetensors"),
        dir.path().join("b.safetensors"),
    );
    write_capture(&a, &values(2, 2, 12, 8, 1), &values(2, 1, 12, 8, 2), json);
    write_capture(&b, &values(2, 2, 12, 8, 3), &values(2, 1, 12, 8, 4), json);
    let run = |args: &[&std::ffi::OsStr]| {
        let out = Command::new(cli).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let p = |name: &str| dir.path().join(name).into_os_string();
    for side in ["a", "b"] {
        run(&[
            "attention".as_ref(),
            "--q".as_ref(),
            &p(&format!("{side}.safetensors")),
            "-o".as_ref(),
            &p(&format!("{side}.npy")),
        ]);
    }
    for (from, a, b) in [
        ("qk", "a.safetensors", "b.safetensors"),
        ("npy", "a.npy", "b.npy"),
    ] {
        run(&[
            "diff".as_ref(),
            &p(a),
            &p(b),
            "--quiet".as_ref(),
            "-o".as_ref(),
            &p(&format!("{from}.png")),
            "--tiles".as_ref(),
            &p(from),
        ]);
    }
    for tile in ["l1_h1.png", "l1_h2.png", "l2_h1.png", "l2_h2.png"] {
        let read = |d: &str| std::fs::read(dir.path().join(d).join(tile)).unwrap();
        assert_eq!(read("qk"), read("npy"), "{tile}");
    }
}

/// A capture of some of a model's layers (`attnviz.capture(model, layers=[1, 4, 5])`) is shown
/// and selected by the model's layer numbers, 2, 5 and 6: the grid's labels, `--layers`, the
/// tiles' names, the layout and statistics JSON, `attnviz heads`, and the viewer's `--focus`.
/// Before, they were numbered 1, 2 and 3, and `--layers 2` drew the model's layer 5.
#[test]
fn a_capture_of_some_layers_keeps_the_model_s_layer_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let cli = env!("CARGO_BIN_EXE_attnviz");
    let path = dir.path().join("some.safetensors");
    let json = r#"{"layers": [{"index": 1, "causal": true, "sliding_window": 4},
                              {"index": 4, "causal": true}, {"index": 5, "causal": true}]}"#;
    write_capture(
        &path,
        &values(3, 2, 12, 8, 5),
        &values(3, 1, 12, 8, 6),
        json,
    );
    let run = |args: &[&str]| {
        Command::new(cli)
            .arg("render")
            .arg(&path)
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let read_json = |name: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.path().join(name)).unwrap()).unwrap()
    };
    // Renders with `args`, then the "layer" of each entry of `list` in the JSON file `json`.
    let layers_in = |args: &[&str], json: &str, list: &str| -> Vec<u64> {
        let out = run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        let doc = read_json(json);
        let entries = doc[list].as_array().unwrap();
        entries
            .iter()
            .map(|c| c["layer"].as_u64().unwrap())
            .collect()
    };
    let grid = ["-o", "g.png", "--layout-json", "g.json", "--tiles", "t"];
    assert_eq!(layers_in(&grid, "g.json", "cells"), [2, 2, 5, 5, 6, 6]);
    assert!(dir.path().join("t/l5_h2.png").exists());
    assert!(read_json("g.json")["title"]
        .as_str()
        .unwrap()
        .contains("sliding window 4 in layer 2"));
    let five = ["--layers", "5", "-o", "g5.png", "--stats-json", "s.json"];
    assert_eq!(layers_in(&five, "s.json", "heads"), [5, 5]);

    let out = run(&["--layers", "3", "-o", "g3.png"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.trim()
            .ends_with("--layers 3: layer 3 is not in the input, which holds layers 2, 5-6 only"),
        "{err}"
    );
    assert!(!dir.path().join("g3.png").exists());

    let out = Command::new(cli)
        .args(["heads", path.to_str().unwrap(), "--csv", "-"])
        .output()
        .unwrap();
    let csv = String::from_utf8_lossy(&out.stdout);
    let firsts: Vec<&str> = csv
        .lines()
        .skip(1)
        .map(|l| &l[..l.find(',').unwrap()])
        .collect();
    assert_eq!(firsts, ["2", "2", "5", "5", "6", "6"]);

    let out = Command::new(cli)
        .args(["info", path.to_str().unwrap()])
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&out.stdout);
    assert!(
        info.contains("layers:  2, 5-6 of the model (shown and selected by those numbers)"),
        "{info}"
    );

    // A difference with a file (its layers by position) shows the capture's numbers, as A or
    // as B; with a capture of other layers it is refused, naming both.
    let stored = dir.path().join("stored.npy");
    let o = Command::new(cli)
        .args(["attention", "--q", path.to_str().unwrap(), "-o"])
        .arg(&stored)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (capture, stored) = (path.to_str().unwrap(), stored.to_str().unwrap());
    for (a, b) in [(capture, stored), (stored, capture)] {
        let o = Command::new(cli)
            .args(["diff", a, b, "-o", "d.png", "--layout-json", "d.json"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let cells = read_json("d.json")["cells"].as_array().unwrap().clone();
        let layers: Vec<u64> = cells.iter().map(|c| c["layer"].as_u64().unwrap()).collect();
        assert_eq!(layers, [2, 2, 5, 5, 6, 6], "{a} − {b}");
    }
    let other = dir.path().join("other.safetensors");
    let json = r#"{"layers": [{"index": 1, "causal": true}, {"index": 2, "causal": true},
                              {"index": 5, "causal": true}]}"#;
    write_capture(
        &other,
        &values(3, 2, 12, 8, 7),
        &values(3, 1, 12, 8, 8),
        json,
    );
    let o = Command::new(cli)
        .args(["diff", capture, other.to_str().unwrap(), "-o", "x.png"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("holds the model's layers 2, 5, 6 and")
            && err.contains(
                "its layers 2, 3, 6: a difference subtracts each layer from the same layer"
            ),
        "{err}"
    );
    assert!(!dir.path().join("x.png").exists());

    // The viewer's --focus names the head as the figure labels it.
    let src = QkSource::open(&path, None, &QkOptions::default()).unwrap();
    let plan = attnviz::Plan::new(&src, &attnviz::RenderOptions::default()).unwrap();
    assert_eq!(plan.focused_cell((4, 1)), Some(3));
    assert_eq!(plan.focused_cell((2, 0)), None);
}

/// Q and K of one layer (two query heads, one key head, 40 tokens, d = 8) in plain `.npy`
/// files, for the command line's own mask options.
struct PlainQk {
    dir: tempfile::TempDir,
    q: Array4<f32>,
    k: Array4<f32>,
}

impl PlainQk {
    fn new() -> PlainQk {
        let dir = tempfile::tempdir().unwrap();
        let (q, k) = (values(1, 2, 40, 8, 3), values(1, 1, 40, 8, 4));
        for (a, name) in [(&q, "q.npy"), (&k, "k.npy")] {
            let src = ArraySource::from_f32("x", a);
            attnviz::source::write_tensor(&src, &dir.path().join(name), &|_, _| {}).unwrap();
        }
        PlainQk { dir, q, k }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }

    /// `attnviz ARGS --q q.npy --k k.npy`.
    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_attnviz"))
            .args(args)
            .args(["--q", &self.path("q.npy"), "--k", &self.path("k.npy")])
            .output()
            .unwrap()
    }

    /// Each head's probabilities as `attnviz attention ARGS` writes them, with the f64
    /// reference's under `options`.
    fn attention(&self, args: &[&str], options: &QkOptions) -> Vec<(Vec<f32>, Vec<f32>)> {
        let out = self.path("p.npy");
        let o = self.run(&[&["attention", "-o", &out], args].concat());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let reference = QkSource::new(
            Box::new(ArraySource::from_f32("q", &self.q)),
            Box::new(ArraySource::from_f32("k", &self.k)),
            options,
        )
        .unwrap();
        let written = attnviz::source::open(Path::new(&out), &Default::default()).unwrap();
        let mut bytes = vec![0u8; 40 * 40 * 4];
        (0..2)
            .map(|head| {
                written.read_rows(0, head, 0, &mut bytes).unwrap();
                let gpu = bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                    .collect();
                let mut cpu = vec![0f32; 40 * 40];
                reference
                    .probabilities_cpu(0, head, 0..40, &mut cpu)
                    .unwrap();
                (gpu, cpu)
            })
            .collect()
    }

    /// The caption of `attnviz render ARGS`, from its layout JSON.
    fn caption(&self, args: &[&str]) -> String {
        let (png, layout) = (self.path("fig.png"), self.path("fig.json"));
        let o = self.run(
            &[
                &["render", "--quiet", "-o", &png, "--layout-json", &layout],
                args,
            ]
            .concat(),
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        std::fs::read_to_string(&layout).unwrap()
    }
}

/// `--attention-chunk N` applies chunks to Q and K from plain files, as a capture's metadata
/// does: the probabilities `attnviz attention` writes are those of the f64 reference with the
/// chunks (each row's keys of earlier chunks exactly 0), the figure's caption says so; without
/// a causal mask each row sees its own chunk's keys alone, on both sides (a block-diagonal
/// attention: the keys of every other chunk exactly 0, its own not; until 2026-12-07 refused).
#[test]
fn the_command_line_s_chunks_apply_to_plain_q_and_k() {
    let qk = PlainQk::new();
    let options = QkOptions {
        causal: true,
        attention_chunk: Some(16),
        ..Default::default()
    };
    let heads = qk.attention(&["--causal", "--attention-chunk", "16"], &options);
    for (head, (gpu, cpu)) in heads.iter().enumerate() {
        for (i, (g, r)) in gpu.iter().zip(cpu).enumerate() {
            let (r_i, key) = (i / 40, i % 40);
            if key < r_i / 16 * 16 {
                assert_eq!(
                    *g, 0.0,
                    "head {head}: row {r_i} key {key} is in an earlier chunk"
                );
            }
            assert!((g - r).abs() <= 1e-5, "head {head} entry {i}: {g} vs {r}");
        }
    }
    let json = qk.caption(&["--causal", "on", "--attention-chunk", "16"]);
    assert!(json.contains("attention chunks of 16"), "caption: {json}");
    let options = QkOptions {
        attention_chunk: Some(16),
        ..Default::default()
    };
    let heads = qk.attention(&["--attention-chunk", "16"], &options);
    assert_hidden_exactly(&heads, |row, key| key / 16 != row / 16);
}

/// Each head's probabilities (`PlainQk::attention`'s 40 × 40, written and reference) equal the
/// reference within 1e-5, exactly 0 where `hidden(row, key)` and above 0 elsewhere.
fn assert_hidden_exactly(heads: &[(Vec<f32>, Vec<f32>)], hidden: impl Fn(usize, usize) -> bool) {
    for (head, (gpu, cpu)) in heads.iter().enumerate() {
        for (i, (g, r)) in gpu.iter().zip(cpu).enumerate() {
            let (row, key) = (i / 40, i % 40);
            match hidden(row, key) {
                true => assert_eq!(*g, 0.0, "head {head}: row {row} key {key} is hidden"),
                false => assert!(*g > 0.0, "head {head}: row {row} key {key} is seen"),
            }
            assert!((g - r).abs() <= 1e-5, "head {head} entry {i}: {g} vs {r}");
        }
    }
}

/// `--sliding-window W` without a causal mask is two-sided (a bidirectional layer's window, as
/// in ModernBERT's local layers): `attnviz attention` writes the f64 reference's probabilities,
/// each row's keys W or more positions away on either side exactly 0 and the rest not, and the
/// caption names the window so; with `--causal` the same flag hides the older keys only.
#[test]
fn the_command_line_s_window_is_two_sided_without_a_causal_mask() {
    let qk = PlainQk::new();
    let options = QkOptions {
        sliding_window: Some(6),
        ..Default::default()
    };
    let heads = qk.attention(&["--sliding-window", "6"], &options);
    assert_hidden_exactly(&heads, |row, key| row.abs_diff(key) >= 6);
    let json = qk.caption(&["--sliding-window", "6"]);
    assert!(
        json.contains("two-sided sliding window 6"),
        "caption: {json}"
    );
    let json = qk.caption(&["--causal", "on", "--sliding-window", "6"]);
    assert!(
        json.contains("sliding window 6") && !json.contains("two-sided"),
        "caption: {json}"
    );
}
