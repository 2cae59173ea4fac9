//! `attnviz heads` and `render --stats-json` end to end: the JSON and CSV, GPU against CPU,
//! the render's statistics equal to the command's, and bad input failing in one line.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn attnviz(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_attnviz"));
    cmd.args(args);
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        cmd.env("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    cmd.output().expect("run attnviz")
}

fn ok(o: &Output) {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn close(a: &Value, b: &Value, what: &str) {
    let (x, y) = (a.as_f64().unwrap(), b.as_f64().unwrap());
    assert!(
        (x - y).abs() <= 1e-5 * x.abs().max(y.abs()) + 1e-6,
        "{what}: {x} vs {y}"
    );
}

/// Writes `attnviz synth --pattern kinds` of this size to `path`: heads whose labels are known
/// ([`planted`]).
fn synth_kinds(path: &str, seq: usize, layers: usize, heads: usize) {
    let (seq, layers, heads) = (seq.to_string(), layers.to_string(), heads.to_string());
    ok(&attnviz(&[
        "synth",
        "-o",
        path,
        "--seq",
        &seq,
        "--layers",
        &layers,
        "--heads",
        &heads,
        "--pattern",
        "kinds",
        "--quiet",
    ]));
}

/// The kind `attnviz synth --pattern kinds` plants in layer `l`, head `h` (1-based): in turn
/// along the heads, shifted by one each layer, named as `attnviz heads` labels it.
fn planted(l: u64, h: u64) -> &'static str {
    let kinds = ["sink", "local", "vertical-slash", "block-sparse", "mixed"];
    kinds[(l - 1 + h - 1) as usize % 5]
}

#[test]
fn heads_json_csv_and_render_stats_agree() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let input = p("a.npy");
    ok(&attnviz(&[
        "synth", "-o", &input, "--seq", "96", "--layers", "2", "--heads", "2",
    ]));
    let (gpu, cpu, csv, fig, stats) = (
        p("g.json"),
        p("c.json"),
        p("h.csv"),
        p("f.png"),
        p("s.json"),
    );
    let sel = ["--layers", "2", "--sink-keys", "2", "--window", "8"];
    let run = |backend: &str, out: &str, extra: &[&str]| {
        let mut args = vec!["heads", input.as_str(), "--backend", backend, "--json", out];
        args.extend(sel);
        args.extend(extra);
        attnviz(&args)
    };
    let o = run("gpu", &gpu, &["--csv", &csv]);
    ok(&o);
    let table = String::from_utf8_lossy(&o.stdout);
    assert_eq!(table.lines().count(), 3, "{table}");
    ok(&run("cpu", &cpu, &[]));
    let mut args = vec!["render", input.as_str(), "-o", &fig, "--stats-json", &stats];
    args.extend(sel);
    ok(&attnviz(&args));
    let (g, c, r) = (
        json(Path::new(&gpu)),
        json(Path::new(&cpu)),
        json(Path::new(&stats)),
    );
    assert_eq!(g["options"]["sink_keys"], 2);
    assert_eq!(g["options"]["window"], 8);
    let heads = g["heads"].as_array().unwrap();
    assert_eq!(heads.len(), 2);
    for (i, h) in heads.iter().enumerate() {
        assert_eq!(h["layer"], 2);
        assert_eq!(h["head"], i + 1);
        assert_eq!(h["top_keys"].as_array().unwrap().len(), 8);
        assert_eq!(h["top_offsets"].as_array().unwrap().len(), 8);
        assert!(h["pattern"].is_string());
        for other in [&c["heads"][i], &r["heads"][i]] {
            for key in [
                "sink_mass",
                "local_mass",
                "entropy",
                "mean_distance",
                "row_sum_mean",
            ] {
                close(&h[key], &other[key], key);
            }
            assert_eq!(h["argmax"], other["argmax"]);
            assert_eq!(h["pattern"], other["pattern"]);
        }
        // softmax rows, stored in f16 by synth
        let row_sum = h["row_sum_mean"].as_f64().unwrap();
        assert!((row_sum - 1.0).abs() < 1e-3, "row_sum_mean {row_sum}");
    }
    let csv = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(csv.lines().count(), 3);
    assert!(csv.starts_with("layer,head,sink_mass,"));
}

#[test]
fn heads_bad_input_fails_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.npy");
    let o = attnviz(&["heads", missing.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&o.stderr).trim().lines().count(), 1);
    let o = attnviz(&["heads", missing.to_str().unwrap(), "--sink-keys", "0"]);
    assert_eq!(o.status.code(), Some(2));
}

/// `attnviz synth --pattern kinds` plants one kind per head, in turn along the heads and
/// shifted by one each layer; `attnviz heads` names each. `--figure` draws the summary on
/// both backends, the same pixels (±1 per channel) and size, and as SVG.
#[test]
fn synth_kinds_named_by_heads_and_summary_figures() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let input = p("kinds.npy");
    synth_kinds(&input, 1024, 2, 5);
    let (json_path, gpu_png, cpu_png, svg) = (p("k.json"), p("g.png"), p("c.png"), p("s.svg"));
    ok(&attnviz(&[
        "heads",
        &input,
        "--json",
        &json_path,
        "--figure",
        &gpu_png,
        "--backend",
        "gpu",
    ]));
    let doc = json(Path::new(&json_path));
    for h in doc["heads"].as_array().unwrap() {
        let (l, hd) = (h["layer"].as_u64().unwrap(), h["head"].as_u64().unwrap());
        let want = planted(l, hd);
        assert_eq!(h["pattern"], want, "l{l} h{hd}: {h}");
    }
    let o = attnviz(&["heads", &input, "--figure", &cpu_png, "--backend", "cpu"]);
    ok(&o);
    assert!(String::from_utf8_lossy(&o.stderr).contains("7 statistics of 10 heads"));
    let (g, c) = (
        image::open(&gpu_png).unwrap().to_rgba8(),
        image::open(&cpu_png).unwrap().to_rgba8(),
    );
    assert_eq!(g.dimensions(), c.dimensions());
    // Each backend computes its own statistics (f32 sums against f64): equal within 1e-6
    // relative, which moves no colour except in the last panel, row_sum_mean, whose spread
    // over these f16 softmax rows (1e-5) is itself at that precision. The figures drawn from
    // the same statistics are compared pixel for pixel in tests/summary.rs.
    let width = g.width();
    for (x, y, p) in g.enumerate_pixels() {
        let q = c.get_pixel(x, y);
        let worst =
            p.0.iter()
                .zip(q.0)
                .map(|(a, b)| a.abs_diff(b))
                .max()
                .unwrap();
        assert!(
            worst <= 1 || x > width * 4 / 5,
            "GPU and CPU summaries differ by {worst} at ({x}, {y})"
        );
    }
    ok(&attnviz(&[
        "heads",
        &input,
        "--layers",
        "2",
        "--figure",
        &svg,
        "--title",
        "kinds",
        "--backend",
        "cpu",
    ]));
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.contains("<title>sink_mass</title>") && text.contains(">kinds<"));
}

/// `attnviz heads x.npy | head` whose reader has gone: the process ends quietly, killed by
/// SIGPIPE as `cat` would be, not with a panic's "internal error" on stderr.
#[cfg(unix)]
#[test]
fn a_closed_stdout_pipe_ends_the_table_quietly() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_attnviz"));
    cmd.args(["heads", "tests/data/minilm_attn_128.npy"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        cmd.env("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    let mut child = cmd.spawn().expect("run attnviz");
    // the reader goes before the table is written (it needs the GPU's statistics first)
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("error"), "{stderr}");
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{:?}", out.status);
}

/// `heads --sort-by METRIC --top N`: the table, JSON and CSV list the N highest heads, highest
/// first, each with the statistics the unsorted run gives it; the JSON says what it lists.
#[test]
fn sorted_and_topped_lists_are_the_highest_heads_of_the_full_run() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let input = "tests/data/minilm_attn_128.npy";
    ok(&attnviz(&["heads", input, "--json", &p("all.json")]));
    let o = attnviz(&[
        "heads",
        input,
        "--sort-by",
        "entropy",
        "--top",
        "4",
        "--json",
        &p("top.json"),
        "--csv",
        &p("top.csv"),
    ]);
    ok(&o);
    let (all, top) = (
        json(Path::new(&p("all.json"))),
        json(Path::new(&p("top.json"))),
    );
    let mut want: Vec<&Value> = all["heads"].as_array().unwrap().iter().collect();
    // highest first; equal values keep layer and head order (a stable sort)
    want.sort_by(|a, b| {
        let (x, y) = (
            a["entropy"].as_f64().unwrap(),
            b["entropy"].as_f64().unwrap(),
        );
        y.total_cmp(&x)
    });
    let got = top["heads"].as_array().unwrap();
    assert_eq!(got.len(), 4);
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(*g, **w);
    }
    assert_eq!(top["options"]["sort_by"], "entropy");
    assert_eq!(top["options"]["heads_listed"], 4);
    assert_eq!(top["options"]["heads_computed"], 72);
    let csv = std::fs::read_to_string(p("top.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), 4);
    for (row, w) in rows.iter().zip(&want) {
        assert!(
            row.starts_with(&format!("{},{},", w["layer"], w["head"])),
            "{row}"
        );
    }
    let table = String::from_utf8_lossy(&o.stdout);
    assert_eq!(table.lines().count(), 5, "{table}");
    // --top needs --sort-by
    let o = attnviz(&["heads", input, "--top", "4"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--sort-by"));
}

/// The statistics are of probabilities: `heads --values logits` is refused as `render
/// --values logits --stats-json` is, on both backends, rather than reporting "masses" and an
/// "entropy" of logits.
#[test]
fn heads_of_logits_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let qk = dir.path().join("qk.safetensors");
    let qk = qk.to_str().unwrap();
    ok(&attnviz(&[
        "synth-qk", "--seq", "16", "--dim", "8", "-o", qk,
    ]));
    for backend in ["auto", "cpu"] {
        let o = attnviz(&[
            "heads",
            "--q",
            qk,
            "--values",
            "logits",
            "--backend",
            backend,
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{backend}: {err}");
        assert!(err.contains("defined on probabilities"), "{err}");
        assert!(o.stdout.is_empty());
    }
}

/// `--pattern LABELS`: `heads` lists only the heads with those labels (the JSON says which, and
/// how many of how many), an empty list when none has them; `render` draws only those heads
/// and refuses a label none has (exit 2, one line naming the labels there, no figure); a
/// word that is no label is refused by both before anything is read.
#[test]
fn pattern_lists_and_draws_the_heads_of_its_labels() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let input = p("kinds.npy");
    synth_kinds(&input, 512, 2, 5);
    let listed = p("local.json");
    let o = attnviz(&[
        "heads",
        &input,
        "--pattern",
        "local,sink",
        "--json",
        &listed,
    ]);
    ok(&o);
    // how every head computed divides among the labels, below the table (the sinks and local
    // heads are the planted ones; at 512 tokens of f16 a planted block-sparse head may read as
    // mixed)
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("pattern labels of the 10 heads: sink 2, local 2, "),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let doc = json(Path::new(&listed));
    let heads = doc["heads"].as_array().unwrap();
    let got: Vec<(u64, u64)> = heads
        .iter()
        .map(|h| (h["layer"].as_u64().unwrap(), h["head"].as_u64().unwrap()))
        .collect();
    let want: Vec<(u64, u64)> = (1..=2)
        .flat_map(|l| (1..=5).map(move |h| (l, h)))
        .filter(|&(l, h)| ["local", "sink"].contains(&planted(l, h)))
        .collect();
    assert_eq!(got, want);
    assert_eq!(
        doc["options"]["pattern"],
        serde_json::json!(["local", "sink"])
    );
    assert_eq!(doc["options"]["heads_listed"], 4);
    assert_eq!(doc["options"]["heads_computed"], 10);

    // render: the same heads, each labelled with its own layer and head
    let (png, layout) = (p("local.png"), p("layout.json"));
    ok(&attnviz(&[
        "render",
        &input,
        "--pattern",
        "local,sink",
        "--cell",
        "64",
        "-o",
        &png,
        "--layout-json",
        &layout,
        "--quiet",
    ]));
    let drawn: Vec<(u64, u64)> = json(Path::new(&layout))["cells"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["width"].as_u64() > Some(0))
        .map(|c| (c["layer"].as_u64().unwrap(), c["head"].as_u64().unwrap()))
        .collect();
    assert_eq!(drawn, want);

    // one layer of one head, a sink: no head is block-sparse
    let one = p("one.npy");
    synth_kinds(&one, 256, 1, 1);
    let empty = p("empty.json");
    let o = attnviz(&["heads", &one, "--pattern", "block-sparse", "--json", &empty]);
    ok(&o);
    assert_eq!(json(Path::new(&empty))["heads"], serde_json::json!([]));
    assert!(String::from_utf8_lossy(&o.stderr).contains("these heads: sink 1"));
    let out = p("none.png");
    let o = attnviz(&["render", &one, "--pattern", "block-sparse", "-o", &out]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("no head has that label (these heads: sink 1)"),
        "{err}"
    );
    assert!(!Path::new(&out).exists());
    // a difference has no labels: refused, as Python's diff(pattern=) is
    let o = attnviz(&["diff", &one, &one, "--pattern", "sink", "-o", &out]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("which a difference A − B"), "{err}");
    assert!(!Path::new(&out).exists());
    for args in [
        vec!["render", &one, "--pattern", "retrieval", "-o", &out],
        vec!["heads", &one, "--pattern", "retrieval"],
    ] {
        let o = attnviz(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("\"retrieval\" is not a pattern label"),
            "{args:?}: {err}"
        );
    }
}
