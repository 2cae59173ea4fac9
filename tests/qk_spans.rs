//! Bidirectional spans (a capture's `bidirectional_spans`: Gemma-3's images, PaliGemma's
//! prefix; src/source/qk_meta.rs): in a causal layer the queries of a span also see the keys
//! after them in it. Checked in every Q/K path that takes them, against the f64 CPU reference:
//! the probabilities the row kernel stores and the two-pass kernels' (both read each row's keys
//! from a table by position), pooled figures on every score kernel, and `attnviz attention` and
//! `render` of a capture file.
//!
//! Tolerances, and why: probabilities within 1e-5 of the f64 reference (f32 scores, as for
//! plain Q/K); pooled extremes and sums within 1e-5 per entry (the same f32 probabilities,
//! summed in the same order on both sides but from f32 against f64 scores). Counts, and which
//! entries are exactly 0, are exact.

mod common;

use std::path::Path;
use std::process::Command;

use attnviz::pool::accum::Accum;
use attnviz::pool::geometry::CellGeometry;
use attnviz::pool::{Causal, PoolOptions};
use attnviz::source::qk::{QkOptions, QkSource, Values};
use attnviz::source::qk_meta::{CaptureMeta, LayerAttention};
use attnviz::source::ArraySource;
use attnviz::AttentionSource;
use common::{engine, qk_values as values, spans_meta, write_capture};

struct Case {
    name: &'static str,
    heads: usize,
    kv_heads: usize,
    nq: usize,
    nk: usize,
    d: usize,
    window: Option<usize>,
    spans: &'static [(usize, usize)],
    cell: u32,
}

fn source(c: &Case) -> QkSource {
    source_of(c, Values::Probs)
}

fn source_of(c: &Case, values_of: Values) -> QkSource {
    let q = ArraySource::from_f32("q", &values(2, c.heads, c.nq, c.d, 5));
    let k = ArraySource::from_f32("k", &values(2, c.kv_heads, c.nk, c.d, 6));
    QkSource::new(
        Box::new(q),
        Box::new(k),
        &QkOptions {
            meta: Some(spans_meta(c.heads, c.window, c.spans)),
            values: values_of,
            ..Default::default()
        },
    )
    .unwrap()
}

fn cases() -> Vec<Case> {
    vec![
        // A prefix (PaliGemma), an image across a workgroup's 64 rows, a span of two; with a
        // window narrower than the spans.
        Case {
            name: "prefix-and-images-window-5-gqa",
            heads: 4,
            kv_heads: 2,
            nq: 200,
            nk: 200,
            d: 32,
            window: Some(5),
            spans: &[(0, 20), (40, 104), (150, 152)],
            cell: 23,
        },
        // A KV-cache suffix whose first query is inside a span; keys in two segments, a span
        // across the segments' edge (8192).
        Case {
            name: "suffix-long-keys-span-across-segments",
            heads: 2,
            kv_heads: 1,
            nq: 900,
            nk: 9000,
            d: 8,
            window: Some(3000),
            spans: &[(7000, 8200), (8500, 8600)],
            cell: 64,
        },
        // One pixel per entry.
        Case {
            name: "native",
            heads: 1,
            kv_heads: 1,
            nq: 96,
            nk: 96,
            d: 16,
            window: None,
            spans: &[(10, 30), (30, 33), (70, 96)],
            cell: 96,
        },
    ]
}

#[test]
fn a_span_s_queries_see_its_later_keys_and_the_layer_is_drawn_bidirectional() {
    let src = source(&cases()[0]);
    assert!(src.ranged());
    assert!(!src.causal(), "drawn as a bidirectional layer");
    // layer 0, window 5: inside a span from the earlier of its start and the window's, to
    // its end; outside one as causal with the window
    assert_eq!(src.visible(0, 10), 0..20);
    assert_eq!(src.visible(0, 25), 21..26);
    assert_eq!(src.visible(0, 41), 37..104);
    assert_eq!(src.visible(0, 103), 40..104);
    assert_eq!(src.visible(0, 104), 100..105);
    assert_eq!(src.visible(0, 150), 146..152);
    // layer 1, no window
    assert_eq!(src.visible(1, 10), 0..20);
    assert_eq!(src.visible(1, 60), 0..104);
    assert_eq!(src.visible(1, 199), 0..200);
    assert_eq!(
        src.applied().as_deref(),
        Some(
            "sliding window 5 in layer 1; softcap 2.5 in layer 2; sink logits in layer 2; \
             bidirectional spans [0, 20), [40, 104), [150, 152)"
        )
    );
    // (the table the kernels read is visible() by position)
    let table = src.key_ranges(0);
    assert_eq!(table.len(), 200);
    assert_eq!(table[41], [37, 104]);
    // a suffix: row 0 is position 8100, in the span [7000, 8200), whose start its window of
    // 3000 already reaches
    let suffix = source(&cases()[1]);
    assert_eq!(suffix.visible(0, 0), 5101..8200);
    assert_eq!(suffix.visible(0, 100), 5201..8201);
}

#[test]
fn spans_are_refused_where_they_cannot_be_drawn_in_one_line() {
    let q = || Box::new(ArraySource::from_f32("q", &values(1, 1, 40, 8, 1)));
    let k = || Box::new(ArraySource::from_f32("k", &values(1, 1, 40, 8, 2)));
    let layer = |causal: bool, chunk: Option<usize>, spans: Vec<(usize, usize)>| CaptureMeta {
        layers: vec![LayerAttention {
            causal: Some(causal),
            attention_chunk: chunk,
            bidirectional_spans: Some(spans),
            ..Default::default()
        }],
        ..Default::default()
    };
    for (meta, values, want) in [
        (layer(false, None, vec![(0, 4)]), Values::Probs, "causal"),
        (layer(true, Some(8), vec![(0, 4)]), Values::Probs, "chunks"),
        (
            layer(true, None, vec![(30, 41)]),
            Values::Probs,
            "past the 40 keys",
        ),
    ] {
        let options = QkOptions {
            meta: Some(meta),
            values,
            ..Default::default()
        };
        let e = QkSource::new(q(), k(), &options)
            .err()
            .expect(want)
            .to_string();
        assert!(e.contains(want) && !e.contains('\n'), "{want}: {e}");
    }
}

/// Every probability, from the row kernel (whole rows) and from the two-pass kernels (a region
/// of keys from the second: the row kernel takes whole rows only).
#[test]
fn probabilities_equal_the_f64_reference() {
    let Some(e) = engine() else { return };
    for c in cases() {
        let whole = source(&c);
        let s = whole.shape();
        for (src, what) in [
            (source(&c), "row kernel"),
            (whole.region(0..s.queries, 1..s.keys).unwrap(), "two-pass"),
        ] {
            let mut worst = 0f32;
            for layer in 0..2 {
                for head in 0..src.shape().heads {
                    let (_, w) =
                        common::qk_probabilities_checked(&e, &src, layer, head, |row, key, g| {
                            let seen = src.visible(layer, row).contains(&key);
                            assert_eq!(
                                g > 0.0,
                                seen,
                                "{} {what}: ({row}, {key}) of {layer}/{head}",
                                c.name
                            );
                        });
                    worst = worst.max(w);
                }
            }
            assert!(worst <= 1e-5, "{} {what}: GPU differs by {worst}", c.name);
            eprintln!("{} {what}: max |gpu - f64| = {worst:e}", c.name);
        }
    }
}

/// Pooled figures on each score kernel (the row kernel, and the tiled one GPUs give d = 128),
/// each with a window or segment of keys per dispatch and with the keys split across
/// workgroups, and from stored probabilities (narrow columns, the default here); and a region
/// of keys, which the two-pass kernels and the pool pass take. Probabilities count every entry
/// (the hidden ones are 0); logits only the keys each row sees (the one pass's fold, and the
/// pool pass reading each row's keys from its table, `KEY_RANGES` in
/// shaders/pool_fold.wgsl).
#[test]
fn pooled_figures_equal_the_f64_reference() {
    let Some(mut e) = engine() else { return };
    let (target, budget, store) = (
        e.gpu.qk_split_workgroups,
        e.gpu.row_vec4s,
        e.gpu.qk_store_keys,
    );
    let runs = [
        (target, budget, store, false),
        (target, budget, store, true),
        (0, budget, 0, false),
        (1 << 20, budget, 0, false),
        (0, 0, 0, false),
        (1 << 20, 0, 0, false),
    ];
    for c in cases() {
        // (the long suffix on the adapter's own run, whole and as a region, only)
        let runs = if c.nk > 1000 { &runs[..2] } else { &runs[..] };
        for &(split, vec4s, store_keys, region) in runs {
            for v in Values::ALL {
                (
                    e.gpu.qk_split_workgroups,
                    e.gpu.row_vec4s,
                    e.gpu.qk_store_keys,
                ) = (split, vec4s, store_keys);
                let whole = source_of(&c, v);
                let src = match region {
                    true => whole.region(0..c.nq, 1..c.nk).unwrap(),
                    false => whole,
                };
                let what = format!(
                    "{} {:?} {v:?} region {region}",
                    c.name,
                    (split, vec4s, store_keys)
                );
                pooled_equal(&e, &src, c.cell, &what);
            }
        }
    }
    (
        e.gpu.qk_split_workgroups,
        e.gpu.row_vec4s,
        e.gpu.qk_store_keys,
    ) = (target, budget, store);
}

/// `src`'s figure in cells of `cell` pixels on the GPU equals the CPU twin's over the f64
/// reference, and counts the entries it should: every one for probabilities, the keys each row
/// sees for logits.
fn pooled_equal(e: &attnviz::Engine, src: &QkSource, cell: u32, what: &str) {
    let s = src.shape();
    let cells: Vec<(usize, usize)> = (0..2)
        .flat_map(|l| (0..s.heads).map(move |h| (l, h)))
        .collect();
    let geometry = CellGeometry::new(s.queries, s.keys, Some(cell)).unwrap();
    // (--norm row of logits is refused: a row's largest logit is no unit)
    let modes: &[(bool, Causal)] = match src.values() {
        Values::Probs => &[
            (false, Causal::Off),
            (true, Causal::Off),
            (false, Causal::Auto),
        ],
        Values::Logits => &[(false, Causal::Off), (false, Causal::Auto)],
    };
    for &(row_norm, causal) in modes {
        let options = PoolOptions {
            row_norm,
            causal,
            diagonal: Some(src.diagonal()),
        };
        let gpu = e.pool(src, &cells, geometry, options).unwrap();
        let gpu = gpu.read_accums(&e.gpu).unwrap();
        let cpu = attnviz::cpu::pool_cells(src, &cells, geometry, options).unwrap();
        let cpu: Vec<Vec<Accum>> = cpu.into_iter().map(|p| p.accum).collect();
        common::assert_accums_close(&format!("{what} row_norm={row_norm}"), &gpu, &cpu);
        for (cell, x) in gpu.iter().enumerate() {
            let layer = cells[cell].0;
            let entries: usize = match src.values() {
                Values::Probs => s.queries * s.keys,
                Values::Logits => (0..s.queries)
                    .map(|r| {
                        let seen = src.visible(layer, r);
                        let keys = src.out_keys();
                        seen.end
                            .min(keys.end)
                            .saturating_sub(seen.start.max(keys.start))
                    })
                    .sum(),
            };
            let counted: usize = x.iter().map(|p| p.count() as usize).sum();
            assert_eq!(
                counted, entries,
                "{what} row_norm={row_norm} cell {cell}: entries"
            );
        }
    }
}

/// A capture file with spans renders with no flag: `attnviz attention` writes the f64
/// reference's probabilities, exactly 0 where a row does not see a key (above the diagonal
/// outside its span) and above 0 elsewhere; the figure's caption and `info` name the spans;
/// and bad spans are one line, exit 2.
#[test]
fn a_capture_file_s_spans_apply_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let (q, k) = (values(1, 2, 40, 8, 3), values(1, 1, 40, 8, 4));
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let json = |spans: &str| {
        format!(
            r#"{{"format": 1, "model": "PaliGemmaForConditionalGeneration", "layers": [
                {{"index": 0, "causal": true, "bidirectional_spans": {spans}}}]}}"#
        )
    };
    write_capture(
        Path::new(&path("cap.safetensors")),
        &q,
        &k,
        &json("[[0, 12], [20, 30]]"),
    );
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_attnviz"))
            .args(args)
            .output()
            .unwrap()
    };
    let o = run(&[
        "attention",
        "--q",
        &path("cap.safetensors"),
        "-o",
        &path("p.npy"),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let reference = QkSource::open(
        Path::new(&path("cap.safetensors")),
        None,
        &Default::default(),
    )
    .unwrap();
    let written = attnviz::source::open(Path::new(&path("p.npy")), &Default::default()).unwrap();
    let mut bytes = vec![0u8; 40 * 40 * 4];
    for head in 0..2 {
        written.read_rows(0, head, 0, &mut bytes).unwrap();
        let mut cpu = vec![0f32; 40 * 40];
        reference
            .probabilities_cpu(0, head, 0..40, &mut cpu)
            .unwrap();
        for (i, (b, r)) in bytes.chunks_exact(4).zip(&cpu).enumerate() {
            let g = f32::from_le_bytes(b.try_into().unwrap());
            let (row, key) = (i / 40, i % 40);
            let span = |s: usize, e: usize| (s..e).contains(&row) && (s..e).contains(&key);
            let seen = key <= row || span(0, 12) || span(20, 30);
            assert_eq!(g > 0.0, seen, "head {head}: row {row} key {key}");
            assert!((g - r).abs() <= 1e-5, "head {head} entry {i}: {g} vs {r}");
        }
    }
    let o = run(&[
        "render",
        "--quiet",
        "--q",
        &path("cap.safetensors"),
        "-o",
        &path("fig.png"),
        "--layout-json",
        &path("fig.json"),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let layout = std::fs::read_to_string(path("fig.json")).unwrap();
    assert!(
        layout.contains("bidirectional spans [0, 12), [20, 30)"),
        "{layout}"
    );
    // `info` says the mask is causal but for the spans (the layer is drawn bidirectional, so
    // the source is not `causal()`; before 2026-12-08 it said there was no mask), and names
    // them
    let o = run(&["info", &path("cap.safetensors")]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        out.contains("mask:    causal but for the bidirectional spans below, as the capture says")
            && out.contains("also:    bidirectional spans [0, 12), [20, 30)"),
        "{out}"
    );
    // The same spans on plain Q and K with --bidirectional-spans: the same bytes; and the flag
    // without a causal mask, or with bad spans, one line, exit 2
    for (a, name) in [(&q, "q.npy"), (&k, "k.npy")] {
        let src = ArraySource::from_f32("x", a);
        attnviz::source::write_tensor(&src, Path::new(&path(name)), &|_, _| {}).unwrap();
    }
    let plain = |extra: &[&str]| {
        run(&[
            &["attention", "--q", &path("q.npy"), "--k", &path("k.npy")],
            extra,
            &["-o", &path("flag.npy")],
        ]
        .concat())
    };
    let o = plain(&["--causal", "--bidirectional-spans", "0:12,20:30"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read(path("flag.npy")).unwrap(),
        std::fs::read(path("p.npy")).unwrap()
    );
    for (extra, want) in [
        (&["--bidirectional-spans", "0:12"][..], "not causal"),
        (
            &["--causal", "--bidirectional-spans", "0:12,5:9"][..],
            "disjoint",
        ),
        (
            &["--causal", "--bidirectional-spans", "0:41"][..],
            "past the 40 keys",
        ),
    ] {
        let o = plain(extra);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {err}");
        // (clap's own errors add a line pointing at --help)
        let lines = err
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
            .count();
        assert!(err.contains(want) && lines == 1, "{err}");
    }
    // The statistics of both backends under `--causal on` (the capture is drawn bidirectional
    // whatever the command line asks: the CPU twin once masked the keys past the diagonal,
    // spans' included; found by tools/sweep_backends.py, local_mass 3% apart)
    let stats = |backend: &str| -> Vec<f64> {
        let out = path(&format!("{backend}.json"));
        let o = run(&[
            "heads",
            "--q",
            &path("cap.safetensors"),
            "--causal",
            "on",
            "--backend",
            backend,
            "--json",
            &out,
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        v["heads"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|h| {
                ["local_mass", "entropy", "mean_distance"].map(|k| h[k].as_f64().unwrap())
            })
            .collect()
    };
    let (gpu, cpu) = (stats("gpu"), stats("cpu"));
    assert_eq!(gpu.len(), 6);
    for (g, c) in gpu.iter().zip(&cpu) {
        assert!(
            (g - c).abs() <= 1e-5 * c.abs().max(1.0),
            "{gpu:?} vs {cpu:?}"
        );
    }
    write_capture(
        Path::new(&path("bad.safetensors")),
        &q,
        &k,
        &json("[[0, 12], [5, 30]]"),
    );
    let o = run(&[
        "render",
        "--quiet",
        "--q",
        &path("bad.safetensors"),
        "-o",
        &path("bad.png"),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("bad.safetensors") && err.contains("disjoint"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!Path::new(&path("bad.png")).exists());
}
