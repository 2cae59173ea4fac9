//! The `attnviz` binary end to end: demo, render, tiles, info, and bad input.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use attnviz::source::{self, OpenOptions};
use attnviz::{Colormap, RenderOptions};

fn attnviz(args: &[&str]) -> Output {
    command(args).output().expect("run attnviz")
}

/// The attnviz command `attnviz` runs, for tests that give it more (a working directory, a
/// standard input).
fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_attnviz"));
    cmd.args(args);
    // Mesa's WSI complains on stderr when this is unset; the tests check stderr line by line.
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        cmd.env("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    if std::env::var("ATTNVIZ_ALLOW_NO_GPU").as_deref() != Ok("1") {
        // A missing adapter must fail, not fall back silently.
        if !args.contains(&"--backend") && (args[0] == "render" || args[0] == "demo") {
            cmd.args(["--backend", "gpu"]);
        }
    }
    cmd
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn png_size(path: &Path) -> (u32, u32) {
    let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (img.width(), img.height())
}

fn rgba(path: &Path) -> image::RgbaImage {
    image::open(path).unwrap().to_rgba8()
}

#[test]
fn demo_writes_the_two_by_eight_grid() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("attention.png");
    let o = attnviz(&["demo", "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (w, h) = png_size(&out);
    // 8 columns and 2 rows of 256-px cells plus gutters and labels
    assert!(w > 8 * 256 && w < 8 * 256 + 400, "width {w}");
    assert!(h > 2 * 256 && h < 2 * 256 + 200, "height {h}");
    let img = rgba(&out);
    // Layer 8, head 2 is the broad head: far brighter on average than layer 1, head 2.
    let layout = attnviz::Plan::new(
        &attnviz::source::DemoModel::new(256),
        &RenderOptions {
            layers: Some("1,8".into()),
            ..Default::default()
        },
    )
    .unwrap()
    .layout;
    let mean_green = |cell: usize| {
        let c = layout.cells[cell];
        let mut s = 0u64;
        for y in c.y..c.y + c.height {
            for x in c.x..c.x + c.width {
                s += img.get_pixel(x, y)[1] as u64;
            }
        }
        s as f64 / (c.width * c.height) as f64
    };
    assert!(
        mean_green(9) > 2.0 * mean_green(1),
        "l=8 h=2 is the broad, bright head"
    );
}

#[test]
fn render_minilm_grid_and_tiles_equal_the_references() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("grid.png");
    let tiles = dir.path().join("tiles");
    let input = data("minilm_attn_128.npy");
    let o = attnviz(&[
        "render",
        input.to_str().unwrap(),
        "--layers",
        "1,6",
        "-o",
        out.to_str().unwrap(),
        "--tiles",
        tiles.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // 128-token heads are magnified twice into the default 256-px cell (tiles stay native)
    let (w, h) = png_size(&out);
    assert!(w > 12 * 256 && h > 2 * 256 && h < 2 * 256 + 100, "{w}x{h}");
    assert_eq!(std::fs::read_dir(&tiles).unwrap().count(), 24);

    // Every tile equals the CPU reference exactly.
    let src = source::open(&input, &OpenOptions::default()).unwrap();
    let options = RenderOptions {
        layers: Some("1,6".into()),
        ..Default::default()
    };
    let fig = attnviz::render_cpu(&src, &options).unwrap();
    for t in attnviz::tiles_cpu(&src, &fig, &options).unwrap() {
        let path = tiles.join(format!("l{}_h{}.png", t.layer + 1, t.head + 1));
        let got = rgba(&path);
        assert_eq!((got.width(), got.height()), (128, 128));
        assert!(
            got.as_raw() == &t.rgba,
            "{} differs from the CPU reference",
            path.display()
        );
    }
    // And matplotlib's viridis(Normalize(head.min(), head.max())(head), bytes=True).
    for (name, mpl) in [
        ("l1_h3", "minilm_l1_h3_matplotlib.png"),
        ("l6_h1", "minilm_l6_h1_matplotlib.png"),
    ] {
        let got = rgba(&tiles.join(format!("{name}.png")));
        let want = rgba(&data(mpl));
        assert!(got == want, "{name} differs from matplotlib");
    }
}

#[test]
fn cpu_backend_matches_gpu_backend() {
    let dir = tempfile::tempdir().unwrap();
    let input = data("minilm_attn_128.npy");
    let gpu = dir.path().join("gpu.png");
    let cpu = dir.path().join("cpu.png");
    for (out, backend) in [(&gpu, "gpu"), (&cpu, "cpu")] {
        let o = attnviz(&[
            "render",
            input.to_str().unwrap(),
            "--layers",
            "2",
            "--heads",
            "1-4",
            "--norm",
            "layer",
            "--colormap",
            "inferno",
            "--cell",
            "200",
            "-o",
            out.to_str().unwrap(),
            "--backend",
            backend,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let (a, b) = (rgba(&gpu), rgba(&cpu));
    assert_eq!(a.dimensions(), b.dimensions());
    let worst = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap();
    assert!(worst <= 1, "GPU and CPU figures differ by {worst}");
    let _ = Colormap::Inferno;
}

/// `--gpu-times` prints the device's time per pass of the figure on stderr: the stored path's
/// pool, statistics, colour and compose passes; the CPU renderer says it ran none. (The times
/// themselves are the driver's stamps: only their presence is checked.)
#[test]
fn gpu_times_prints_each_pass_of_the_figure() {
    let dir = tempfile::tempdir().unwrap();
    let input = data("minilm_attn_128.npy");
    let out = dir.path().join("out.png");
    let o = attnviz(&[
        "render",
        input.to_str().unwrap(),
        "--gpu-times",
        "--quiet",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    let line = err
        .lines()
        .find(|l| l.starts_with("GPU time by pass: "))
        .unwrap_or_else(|| panic!("no pass times: {err}"));
    for pass in [
        "pool.pass ",
        "stats.pass ",
        "colorize.pass ",
        "compose.pass ",
    ] {
        assert!(line.contains(pass), "{pass} missing: {line}");
    }
    assert!(line.contains("; total "), "{line}");
    let o = attnviz(&[
        "render",
        input.to_str().unwrap(),
        "--gpu-times",
        "--quiet",
        "--backend",
        "cpu",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("GPU time by pass: the CPU renderer ran no GPU pass"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn info_reports_shape_dtype_stats_and_adapter() {
    let input = data("minilm_attn_128.npy");
    let o = attnviz(&["info", input.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("(6, 12, 128, 128)"), "{text}");
    assert!(text.contains("f32"), "{text}");
    assert!(text.contains("adapter:"), "{text}");
    // one row per head
    assert_eq!(
        text.lines()
            .filter(|l| l.trim_start().starts_with(char::is_numeric))
            .count(),
        72,
        "{text}"
    );
    // A raw dump of the same values, read by --shape and --dtype as render reads it: the same
    // rows.
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("minilm.f32");
    let file = attnviz::source::open(&input, &Default::default()).unwrap();
    attnviz::source::write_tensor(&file, &raw, &|_, _| {}).unwrap();
    let raw = raw.to_str().unwrap();
    let o = attnviz(&["info", raw, "--shape", "6,12,128,128", "--dtype", "f32"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = |t: &str| -> Vec<String> {
        let numbered = t
            .lines()
            .filter(|l| l.trim_start().starts_with(char::is_numeric));
        numbered.map(str::to_string).collect()
    };
    assert_eq!(rows(&String::from_utf8_lossy(&o.stdout)), rows(&text));
}

/// Error runs: exit code 2, exactly one `error:` line naming the problem, and the previous
/// output file untouched.
fn assert_clean_failure(args: &[&str], out: &Path, needle: &str) {
    std::fs::write(out, b"previous figure").unwrap();
    let o = attnviz(args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
    let lines: Vec<_> = err
        .lines()
        .filter(|l| !l.contains("XDG_RUNTIME_DIR"))
        .collect();
    assert_eq!(lines.len(), 1, "{args:?}: {err}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains(needle),
        "{args:?}: {err}"
    );
    assert!(!err.contains("panicked"));
    assert_eq!(
        std::fs::read(out).unwrap(),
        b"previous figure",
        "{args:?} touched the output"
    );
    let leftovers: Vec<_> = std::fs::read_dir(out.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".attnviz"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

#[test]
fn broken_inputs_fail_cleanly_and_leave_the_output_alone() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("OUT.png");
    let o = out.to_str().unwrap();
    let full = std::fs::read(data("minilm_attn_128.npy")).unwrap();
    let truncated = dir.path().join("truncated.npy");
    std::fs::write(&truncated, &full[..full.len() / 2]).unwrap();
    assert_clean_failure(
        &["render", truncated.to_str().unwrap(), "-o", o],
        &out,
        "truncated",
    );
    let header_only = dir.path().join("header.npy");
    std::fs::write(&header_only, &full[..60]).unwrap();
    assert_clean_failure(
        &["render", header_only.to_str().unwrap(), "-o", o],
        &out,
        "header.npy",
    );
    let text = dir.path().join("notes.npy");
    std::fs::write(&text, b"hello").unwrap();
    assert_clean_failure(
        &["render", text.to_str().unwrap(), "-o", o],
        &out,
        "not an .npy file",
    );
    let missing = dir.path().join("missing.npy");
    assert_clean_failure(
        &["render", missing.to_str().unwrap(), "-o", o],
        &out,
        "missing.npy",
    );
    let input = data("minilm_attn_128.npy");
    assert_clean_failure(
        &["render", input.to_str().unwrap(), "--layers", "0", "-o", o],
        &out,
        "--layers",
    );
    assert_clean_failure(
        &["render", input.to_str().unwrap(), "--heads", "13", "-o", o],
        &out,
        "out of range",
    );
    let wrong = dir.path().join("attn.txt");
    std::fs::write(&wrong, b"1 2 3").unwrap();
    assert_clean_failure(
        &["render", wrong.to_str().unwrap(), "-o", o],
        &out,
        "unknown file type",
    );
    // What cannot be read in place, by offset, is said to be so (a FIFO is not opened: that
    // would wait for a writer).
    let fifo = dir.path().join("attn");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let folder = dir.path().join("runs");
    std::fs::create_dir(&folder).unwrap();
    for (input, needle) in [
        ("-", "the standard input cannot be read in place"),
        (fifo.to_str().unwrap(), "not a regular file"),
        (folder.to_str().unwrap(), "a folder, not a tensor file"),
    ] {
        assert_clean_failure(&["render", input, "-o", o], &out, needle);
    }
}

/// A tensor file named otherwise (`attn.bin`, a download without its extension) is read as
/// what its first bytes say it is: the same figure as under its own name.
#[test]
fn a_tensor_is_read_by_its_content_when_its_name_says_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let minilm = data("minilm_attn_128.npy");
    let safetensors = dir.path().join("minilm.safetensors");
    let file = attnviz::source::open(&minilm, &Default::default()).unwrap();
    attnviz::source::write_tensor(&file, &safetensors, &|_, _| {}).unwrap();
    for (named, renamed) in [(minilm, "attn.bin"), (safetensors, "attn")] {
        let renamed = dir.path().join(renamed);
        std::fs::copy(&named, &renamed).unwrap();
        let figure = |input: &Path, name: &str| {
            let out = dir.path().join(name);
            let args = ["render", input.to_str().unwrap(), "--layers", "2"];
            let o = attnviz(&[&args[..], &["-o", out.to_str().unwrap()]].concat());
            assert!(o.status.success(), "{input:?}: {}", stderr(&o));
            std::fs::read(out).unwrap()
        };
        assert_eq!(
            figure(&named, "a.png"),
            figure(&renamed, "b.png"),
            "{renamed:?}"
        );
    }
}

#[test]
fn bad_arguments_exit_2() {
    let o = attnviz(&["render", "x.npy", "-o", "y.png", "--norm", "sideways"]);
    assert_eq!(o.status.code(), Some(2));
    let o = attnviz(&["render"]);
    assert_eq!(o.status.code(), Some(2));
}

/// Options that only shape attention recomputed from Q and K are refused beside a stored INPUT
/// (clap lets them through there), rather than silently leaving out a softcap or the logits
/// the user asked to see. `--queries` is not one of them: a file's rows are sliced too, and
/// keep their numbers (the query axis of MiniLM's rows 100.. is ticked from 100).
#[test]
fn qk_options_beside_stored_attention_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("OUT.png");
    let o = out.to_str().unwrap();
    let input = data("minilm_attn_128.npy");
    let i = input.to_str().unwrap();
    for (option, value) in [
        ("--k", i),
        ("--softmax-scale", "0.5"),
        ("--sliding-window", "8"),
        ("--softcap", "30"),
        ("--values", "logits"),
    ] {
        assert_clean_failure(
            &["render", i, option, value, "-o", o],
            &out,
            &format!("{option} applies only to attention recomputed from --q/--k"),
        );
        let heads = attnviz(&["heads", i, option, value]);
        assert_eq!(heads.status.code(), Some(2), "heads {option}");
        assert!(
            stderr(&heads).contains("minilm_attn_128.npy"),
            "heads {option}"
        );
    }
    // the default, given explicitly, changes nothing
    let ok = attnviz(&["render", i, "--values", "probs", "-o", o]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let layout = dir.path().join("layout.json");
    let l = layout.to_str().unwrap();
    let sliced = attnviz(&[
        "render",
        i,
        "--queries",
        "100..",
        "--layers",
        "1",
        "--heads",
        "1",
        "--axes",
        "on",
        "-o",
        o,
        "--layout-json",
        l,
    ]);
    assert!(sliced.status.success(), "{}", stderr(&sliced));
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&layout).unwrap()).unwrap();
    let rows: Vec<u64> = doc["axis_ticks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["axis"] == "query")
        .map(|t| t["position"].as_u64().unwrap())
        .collect();
    assert!(
        !rows.is_empty() && rows.iter().all(|r| (100..128).contains(r)),
        "{rows:?}"
    );
    assert_clean_failure(
        &["render", i, "--queries", "120..130", "-o", o],
        &out,
        "--queries 120..130 is not a non-empty range inside the 128 query rows",
    );
}

#[test]
fn unwritable_output_folder_is_reported_before_rendering() {
    let input = data("minilm_attn_128.npy");
    let o = attnviz(&[
        "render",
        input.to_str().unwrap(),
        "-o",
        "/nonexistent-dir/x.png",
    ]);
    assert_eq!(o.status.code(), Some(1));
    // (in the folder's terms, one line, not the probe file's name)
    assert_eq!(
        stderr(&o).trim(),
        "error: /nonexistent-dir/x.png: cannot write output: its folder /nonexistent-dir does not exist"
    );
    // A folder where a file goes, or a file where the tiles' folder goes: said before any
    // work, nothing written (the figure was written, then the tiles failed).
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("folder");
    std::fs::create_dir(&folder).unwrap();
    let file = dir.path().join("file.png");
    std::fs::write(&file, b"x").unwrap();
    let fig = dir.path().join("fig.png");
    let (folder, file, fig) = (
        folder.to_str().unwrap(),
        file.to_str().unwrap(),
        fig.to_str().unwrap(),
    );
    let input = input.to_str().unwrap();
    for (args, needle) in [
        (vec!["render", input, "-o", folder], "it names a folder"),
        (vec!["heads", input, "--json", folder], "it names a folder"),
        (
            vec!["render", input, "--tiles", file, "-o", fig],
            "it is a file, not a folder",
        ),
    ] {
        let o = attnviz(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(needle) && err.lines().count() == 1, "{err}");
        assert!(
            o.stdout.is_empty(),
            "{args:?}: the table came before the error"
        );
        assert!(!Path::new(fig).exists());
    }
}

/// The `wrote …` line counts the cells drawn: `--top 3` of 72 pooled and ranked says so; one
/// is one cell.
#[test]
fn the_summary_counts_the_cells_top_draws() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t.png");
    let input = data("minilm_attn_128.npy");
    let args = [
        "render",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--quiet",
    ];
    let o = attnviz(&[&args[..], &["--sort-by", "max", "--top", "3"]].concat());
    assert!(stderr(&o).contains(", 3 of 72 cells, "), "{}", stderr(&o));
    let o = attnviz(&[&args[..], &["--sort-by", "max"]].concat());
    assert!(stderr(&o).contains(", 72 cells, "), "{}", stderr(&o));
    let o = attnviz(&[&args[..], &["--layers", "1", "--heads", "1"]].concat());
    assert!(stderr(&o).contains(", 1 cell, "), "{}", stderr(&o));
}

/// `--timings`: the host's phases as an indented tree on stderr, each with its milliseconds
/// (calls where more than one), nested phases under their callers; the figure unchanged.
#[test]
fn timings_print_the_host_phases_as_a_tree() {
    let dir = tempfile::tempdir().unwrap();
    let input = data("minilm_attn_128.npy");
    let input = input.to_str().unwrap();
    let (plain, timed) = (dir.path().join("a.png"), dir.path().join("b.png"));
    let o = attnviz(&[
        "render",
        input,
        "--layers",
        "1,2",
        "-o",
        plain.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let args = [
        "render",
        input,
        "--layers",
        "1,2",
        "-o",
        timed.to_str().unwrap(),
    ];
    let o = attnviz(&[&args[..], &["--timings", "--quiet"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(&plain).unwrap(),
        std::fs::read(&timed).unwrap()
    );
    let err = stderr(&o);
    // after the `wrote …` line
    let mut lines = err
        .lines()
        .skip_while(|l| !l.starts_with("host time by phase (--timings): "));
    assert!(lines.next().is_some(), "{err}");
    // "    12.3 ms  <indent><phase>[ (n×)]" → (indent, phase, ms)
    let phases: Vec<(usize, String, f64)> = lines
        .map(|l| {
            let (ms, rest) = l.trim_start().split_once(" ms  ").expect(l);
            let name = rest.trim_start();
            let indent = rest.len() - name.len();
            (indent, name.to_string(), ms.parse::<f64>().expect(l))
        })
        .collect();
    let find = |name: &str| {
        phases
            .iter()
            .position(|p| p.1 == name || p.1.starts_with(&format!("{name} (")))
            .unwrap_or_else(|| panic!("no {name} in {err}"))
    };
    for name in ["gpu.instance", "gpu.device", "engine.new", "export"] {
        assert_eq!(phases[find(name)].0, 0, "{name} is a root: {err}");
    }
    // the PNG is encoded from the rows as the export reads them back
    let (export, png) = (find("export"), find("write.png"));
    assert!(png > export && phases[png].0 > 0, "{err}");
    assert!(phases[png].2 <= phases[export].2, "{err}");
    // the reads are the pool phase's, shown under it, and take part of its time
    let (pool, read) = (find("pool"), find("ingest.read"));
    assert!(read > pool && phases[read].0 > phases[pool].0, "{err}");
    assert!(phases[read].2 <= phases[pool].2, "{err}");
    assert!(phases[find("export.readback")].0 > 0, "{err}");
    assert!(
        phases
            .iter()
            .any(|p| p.1.starts_with("pipeline attnviz.pool.")),
        "{err}"
    );
}

/// A figure name whose extension attnviz does not write (PNG bytes under `.jpg` would lie) is
/// refused before rendering, exit 2, for every command that writes a figure; `.PNG`, `.Svg`
/// and no extension are figures it writes.
#[test]
fn figure_names_must_say_png_or_svg() {
    let dir = tempfile::tempdir().unwrap();
    let input = data("minilm_attn_128.npy");
    let input = input.to_str().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let refused: [(Vec<String>, &str); 4] = [
        (
            vec!["render".into(), input.into(), "-o".into(), p("f.jpg")],
            "f.jpg",
        ),
        (vec!["demo".into(), "-o".into(), p("f.gif")], "f.gif"),
        (
            vec![
                "diff".into(),
                input.into(),
                input.into(),
                "-o".into(),
                p("f.webp"),
            ],
            "f.webp",
        ),
        (
            vec!["heads".into(), input.into(), "--figure".into(), p("f.tiff")],
            "f.tiff",
        ),
    ];
    for (args, name) in &refused {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = attnviz(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains(name) && err.contains("attnviz writes PNG (.png) or SVG (.svg)"),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    for (name, magic) in [
        ("f.PNG", &b"\x89PNG"[..]),
        ("f", b"\x89PNG"),
        ("f.Svg", b"<?xml"),
    ] {
        let o = attnviz(&["render", input, "--layers", "1", "-o", &p(name)]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        assert!(std::fs::read(p(name)).unwrap().starts_with(magic), "{name}");
    }
}

/// Options that would change nothing in the figure (or only its caption, which would then
/// claim them) are refused, one line naming the option, exit 2, nothing written, rather than
/// ignored.
#[test]
fn options_that_would_change_nothing_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = data("minilm_attn_128.npy");
    let input = input.to_str().unwrap();
    let tokens = dir.path().join("tokens.txt");
    std::fs::write(&tokens, "w\n".repeat(128)).unwrap();
    let tokens = tokens.to_str().unwrap();
    let png = dir.path().join("refused.png");
    for (args, needle) in [
        (&["--sink-keys", "4"][..], "--sink-keys"),
        (&["--window", "8"], "--window"),
        (&["--log-floor", "1e-3"], "--log-floor"),
        (&["--tokens", tokens, "--axes", "off"], "--axes off"),
        (
            &["--vmin", "0", "--vmax", "0.5", "--clip", "1,99"],
            "--clip",
        ),
        (
            &["--vmin", "0", "--vmax", "0.5", "--exclude-keys", "0..1"],
            "--exclude-keys",
        ),
        (&["--norm", "row", "--exclude-keys", "0..1"], "--norm row"),
        (&["--norm", "none", "--exclude-keys", "0..1"], "--norm none"),
    ] {
        let mut all = vec!["render", input, "-o", png.to_str().unwrap()];
        all.extend(args);
        let o = attnviz(&all);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!png.exists());
    }
    // A raw dump has no tensors to pick from (clap's refusal, with its usage line).
    let raw = [
        "--shape",
        "6,12,128,128",
        "--dtype",
        "f32",
        "--tensor",
        "attn",
    ];
    let o = attnviz(&[&["render", input, "-o", png.to_str().unwrap()][..], &raw].concat());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot be used with"), "{}", stderr(&o));
    assert!(!png.exists());
}

/// A `.npy` of little-endian `descr` and `shape`, its values as `bytes` gives them.
fn write_npy(path: &Path, descr: &str, shape: &[usize], data: &[u8]) {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let mut header = format!(
        "{{'descr': '{descr}', 'fortran_order': False, 'shape': ({},), }}",
        dims.join(", ")
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend(data);
    std::fs::write(path, bytes).unwrap();
}

/// float64 (numpy's default) is narrowed to f32 as the rows are read: the figure and the
/// statistics equal those of the same values saved as float32, byte for byte, on both
/// backends, from `.npy`, `.safetensors` and a raw dump; rows of several MiB cross the
/// reader's 1 MiB narrowing buffer.
#[test]
fn float64_files_draw_as_their_float32() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let shape = [1, 2, 640, 640];
    let n: usize = shape.iter().product();
    let wide: Vec<f64> = (0..n)
        .map(|i| ((i as f64 * 0.618_033_988_7).fract() + 1e-9) / 300.0)
        .collect();
    let f64_bytes: Vec<u8> = wide.iter().flat_map(|v| v.to_le_bytes()).collect();
    let f32_bytes: Vec<u8> = wide
        .iter()
        .flat_map(|&v| (v as f32).to_le_bytes())
        .collect();
    write_npy(&p("a64.npy"), "<f8", &shape, &f64_bytes);
    write_npy(&p("a32.npy"), "<f4", &shape, &f32_bytes);
    std::fs::write(p("a64.raw"), &f64_bytes).unwrap();
    let views = vec![(
        "attn",
        safetensors::tensor::TensorView::new(safetensors::Dtype::F64, shape.to_vec(), &f64_bytes)
            .unwrap(),
    )];
    safetensors::serialize_to_file(views, None, &p("a64.safetensors")).unwrap();
    for backend in ["gpu", "cpu"] {
        let render = |input: &Path, extra: &[&str], name: &str| -> (Vec<u8>, Vec<u8>) {
            let (png, json) = (p(&format!("{name}.png")), p(&format!("{name}.json")));
            let mut args = vec![
                "render",
                input.to_str().unwrap(),
                "--backend",
                backend,
                "-o",
                png.to_str().unwrap(),
                "--stats-json",
                json.to_str().unwrap(),
            ];
            args.extend(extra);
            let o = attnviz(&args);
            assert!(o.status.success(), "{name}: {}", stderr(&o));
            (std::fs::read(png).unwrap(), std::fs::read(json).unwrap())
        };
        let want = render(&p("a32.npy"), &[], "a32");
        assert!(want == render(&p("a64.npy"), &[], "a64"), "{backend}: .npy");
        assert!(
            want == render(&p("a64.safetensors"), &[], "st"),
            "{backend}: .safetensors"
        );
        let raw = ["--shape", "1,2,640,640", "--dtype", "f64"];
        assert!(want == render(&p("a64.raw"), &raw, "raw"), "{backend}: raw");
    }
    let o = attnviz(&["info", p("a64.npy").to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("dtype:   f64 (read as f32)"));
}

/// `-` is the standard output, as for most command-line tools: the same bytes as the file
/// would hold (`heads --json -` in the table's place on stdout), no file named `-`, and one
/// line, exit 2, when two outputs both name it.
/// `--tokens -` reads the tokens from the standard input (a tokenizer piped in): the same
/// figure as from their file.
#[test]
fn tokens_come_from_the_standard_input_as_from_a_file() {
    use std::io::Write;
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let input = data("minilm_attn_128.npy");
    let tokens = data("tokens_128.txt");
    let drawn = |name: &str, from: &str, stdin: Option<&[u8]>| {
        let out = dir.path().join(name);
        let (input, out_name) = (input.to_str().unwrap(), out.to_str().unwrap());
        let mut child = command(&["render", input, "--layers", "1", "--heads", "1"])
            .args(["--cell", "128", "--axes", "on", "--tokens", from, "--quiet"])
            .args(["-o", out_name])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(stdin.unwrap_or_default()).unwrap();
        drop(pipe);
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        std::fs::read(out).unwrap()
    };
    let text = std::fs::read(&tokens).unwrap();
    let from_file = drawn("file.png", tokens.to_str().unwrap(), None);
    assert_eq!(from_file, drawn("stdin.png", "-", Some(&text)));
}

#[test]
fn a_dash_writes_to_the_standard_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = data("minilm_attn_128.npy");
    let input = input.to_str().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let in_dir = |args: &[&str]| command(args).current_dir(dir.path()).output().unwrap();
    let o = in_dir(&["render", input, "--layers", "1", "-o", "-", "--quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ok = attnviz(&["render", input, "--layers", "1", "-o", &p("f.png")]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert_eq!(o.stdout, std::fs::read(p("f.png")).unwrap());
    assert!(
        stderr(&o).starts_with("wrote the standard output ("),
        "{}",
        stderr(&o)
    );
    for flag in ["--json", "--csv"] {
        let o = in_dir(&["heads", input, flag, "-"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let file = p("h.out");
        assert!(attnviz(&["heads", input, flag, &file]).status.success());
        assert_eq!(o.stdout, std::fs::read(&file).unwrap(), "{flag}");
    }
    let o = in_dir(&["heads", input, "--json", "-", "--csv", "-"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("--json and --csv both name the standard output"),
        "{err}"
    );
    assert!(o.stdout.is_empty());
    assert!(!dir.path().join("-").exists());
}

/// The tensor writers refuse names that would lie about what the file holds: `synth` and
/// `attention` write raw values under any name but `.npy`/`.safetensors`, but not under a
/// figure's (`.png`: most likely `render`'s `-o`); `synth-qk` writes safetensors only, so its
/// name must say so. Exit 2, one line, nothing written; `.bin` stays raw values.
#[test]
fn tensor_outputs_refuse_names_of_other_formats() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let qk = p("qk.safetensors");
    let o = attnviz(&["synth-qk", "--seq", "16", "--dim", "8", "-o", &qk]);
    assert!(o.status.success(), "{}", stderr(&o));
    let refused: [(Vec<&str>, &str, &str); 3] = [
        (
            vec!["synth", "--seq", "16"],
            "s.PNG",
            "not as .png (figures come from render)",
        ),
        (vec!["attention", "--q", &qk], "a.svg", "not as .svg"),
        (
            vec!["synth-qk", "--seq", "16", "--dim", "8"],
            "q.npy",
            "name it .safetensors",
        ),
    ];
    for (args, name, says) in refused {
        let out = p(name);
        let o = attnviz(&[&args[..], &["-o", &out]].concat());
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(name) && err.contains(says), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(!Path::new(&out).exists(), "{out}");
    }
    let raw = p("a.bin");
    let o = attnviz(&["attention", "--q", &qk, "-o", &raw]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::metadata(&raw).unwrap().len(), 16 * 16 * 4);
}

/// The publication options end to end: SVG with one image per cell, layout JSON, tokens,
/// a transparent ground, and one-line errors (exit 2) for bad values.
#[test]
fn publication_options_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let input = data("minilm_attn_128.npy");
    let tokens = data("tokens_128.txt");
    let svg = dir.path().join("fig.svg");
    let json = dir.path().join("fig.json");
    let o = attnviz(&[
        "render",
        input.to_str().unwrap(),
        "--layers",
        "1",
        "--heads",
        "1-3",
        "--tokens",
        tokens.to_str().unwrap(),
        "--scale",
        "log",
        "--clip",
        "0,99.5",
        "--title",
        "MiniLM",
        "--layout-json",
        json.to_str().unwrap(),
        "-o",
        svg.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&svg).unwrap();
    assert_eq!(text.matches("<image ").count(), 3);
    assert!(text.contains(">MiniLM</tspan>") && text.contains("log10"));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(v["cells"].as_array().unwrap().len(), 3);
    assert_eq!(v["scale"], "log");

    let png = dir.path().join("clear.png");
    let o = attnviz(&[
        "demo",
        "--heads",
        "1",
        "--transparent",
        "--theme",
        "dark",
        "-o",
        png.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(rgba(&png).get_pixel(0, 0)[3], 0);

    let out = dir.path().join("OUT.png");
    let o_ = out.to_str().unwrap();
    let i = input.to_str().unwrap();
    assert_clean_failure(
        &["render", i, "--exclude-keys", "0..128", "-o", o_],
        &out,
        "--exclude-keys 0..128",
    );
    assert_clean_failure(
        &["render", i, "--vmin", "1", "--vmax", "0.5", "-o", o_],
        &out,
        "--vmin",
    );
    let few = dir.path().join("few.txt");
    std::fs::write(&few, "a\nb\n").unwrap();
    assert_clean_failure(
        &["render", i, "--tokens", few.to_str().unwrap(), "-o", o_],
        &out,
        "few.txt: 2 tokens",
    );
    for bad in [
        ["--clip", "99,1"],
        ["--scale", "cubic"],
        ["--exclude-keys", "3..4"],
    ] {
        let o = attnviz(&["render", i, bad[0], bad[1], "-o", o_]);
        assert_eq!(o.status.code(), Some(2), "{bad:?}");
        assert!(stderr(&o).contains(bad[0]), "{bad:?}: {}", stderr(&o));
    }
}

/// `attnviz bench --quick ARGS`, its inputs cached in `data` and its JSON written to `json`.
fn bench_quick(data: &Path, json: &Path, args: &[&str]) -> Output {
    let mut all = vec!["bench", "--quick"];
    all.extend_from_slice(args);
    all.extend([
        "--data",
        data.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    attnviz(&all)
}

/// The whole-model scenarios (`--quick`: 8 × 8 heads of 256 tokens, each drawn at its own
/// width): export-model from a cached file, qk-short from Q and K, with its line of heads and
/// pixels per second under the table (saying which path `--store-keys` chose), and both in
/// the JSON.
#[test]
fn bench_draws_whole_models_at_short_context() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let o = bench_quick(dir.path(), &json, &["--only", "export-model,qk-short"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.contains("| export-model | 0.01 GiB |"), "{table}");
    assert!(table.contains("| qk-short | - |"), "{table}");
    assert!(
        table.contains(
            "qk-short: 8 layers x 8 heads (2 KV heads), 256 tokens, d = 64, causal, each head at \
             its own width (--store-keys 2: columns of one key from stored probabilities)"
        ),
        "{table}"
    );
    assert!(table.contains(" Mpx/s; the pooling alone "), "{table}");
    let body = std::fs::read_to_string(&json).unwrap();
    for name in ["export-model", "qk-short"] {
        assert!(body.contains(&format!(r#""scenario":"{name}""#)), "{body}");
    }
    // --store-keys 0: the one pass at every width, and the line says so
    let o = bench_quick(
        dir.path(),
        &json,
        &["--only", "qk-short", "--store-keys", "0"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table.contains("(--store-keys 0: columns of one key in one pass)"),
        "{table}"
    );
    assert!(dir.path().join("model-8x8x256-f16.npy").exists());
}

/// `bench --only` runs just the chosen scenarios, generates no input they do not read, and
/// writes its table and JSON.
#[test]
fn bench_runs_only_the_chosen_scenarios() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let o = bench_quick(dir.path(), &json, &["--only", "upload"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.contains("| upload | 0.25 GiB |"), "{table}");
    assert!(!table.contains("export-grid"), "{table}");
    let body = std::fs::read_to_string(&json).unwrap();
    assert!(
        body.contains(r#""scenario":"upload","input_bytes":268435456"#),
        "{body}"
    );
    assert!(body.contains(r#""qk_long_gflops":null"#), "{body}");
    assert!(body.contains(r#""qk_long_pool_gflops":null"#), "{body}");
    assert!(body.contains(r#""gpu_times":{},"#), "{body}");
    assert!(body.contains(r#""row_kernel":null"#), "{body}");
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files, vec![std::ffi::OsString::from("bench.json")]);

    // export-grid-cli: fresh `attnviz render` processes alternating with in-process renders,
    // and the ratio of their medians under the table and in the JSON.
    let o = bench_quick(dir.path(), &json, &["--only", "export-grid-cli"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.contains("| export-grid-cli | 0.06 GiB |"), "{table}");
    assert!(
        table.contains("export-grid-cli: a fresh `attnviz render` process"),
        "{table}"
    );
    let body = std::fs::read_to_string(&json).unwrap();
    assert!(body.contains(r#""export_grid_cli_ratio":"#), "{body}");
    assert!(!body.contains(r#""export_grid_cli_ratio":null"#), "{body}");
    assert!(body.contains(r#""stats_grid_ratio":null"#), "{body}");

    // stats-grid: renders with pattern statistics alternating with renders without, the ratio
    // under the table and in the JSON; with --pool-with-profiles the line says so.
    for (args, pooled) in [
        (&["--only", "stats-grid"][..], false),
        (&["--only", "stats-grid", "--pool-with-profiles"][..], true),
    ] {
        let o = bench_quick(dir.path(), &json, args);
        assert!(o.status.success(), "{}", stderr(&o));
        let table = String::from_utf8_lossy(&o.stdout);
        assert!(table.contains("| stats-grid | 0.06 GiB |"), "{table}");
        assert!(
            table.contains("stats-grid: with pattern statistics "),
            "{table}"
        );
        assert_eq!(
            table.contains("(--pool-with-profiles: chunks whose bins allow it pooled"),
            pooled,
            "{table}"
        );
        let body = std::fs::read_to_string(&json).unwrap();
        assert!(!body.contains(r#""stats_grid_ratio":null"#), "{body}");
    }

    let o = attnviz(&["bench", "--only", "nonsense"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

/// `bench --row-vec4s/--subgroup-keys/--state-mib/--split-workgroups` set the Q/K row kernel's
/// budgets (for measuring them on a new device), and the report says which kernel each
/// scenario's head width then took.
#[test]
fn bench_takes_and_reports_the_row_kernel_budgets() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let o = bench_quick(
        dir.path(),
        &json,
        &[
            "--only",
            "qk-long",
            "--row-vec4s",
            "64",
            "--subgroup-keys",
            "0",
            "--state-mib",
            "64",
            "--split-workgroups",
            "64",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let line = "row kernel with --row-vec4s 64 --subgroup-keys 0 --state-mib 64 \
                --split-workgroups 64: d = 64 \
                (qk-long): 4 query rows a lane, every key loaded by every lane; d = 128 \
                (qk-model): 2 query rows a lane, every key loaded by every lane";
    assert!(out.contains(line), "{out}");
    // the pooling alone, beside the whole renders
    assert!(
        out.contains("qk-long, the pooling alone (no colour, layout, compose, read-back or PNG): "),
        "{out}"
    );
    // the device's time per pass of one more render
    assert!(out.contains("device time by pass"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("qk-long: ") && l.contains(" qk.scores ")),
        "{out}"
    );
    let body = std::fs::read_to_string(&json).unwrap();
    assert!(!body.contains(r#""qk_long_pool_gflops":null"#), "{body}");
    assert!(
        body.contains(r#""gpu_times":{"qk-long":{"total":"#),
        "{body}"
    );
    assert!(
        body.contains(
            r#""row_kernel":"--row-vec4s 64 --subgroup-keys 0 --state-mib 64 --split-workgroups 64: d = 64"#
        ),
        "{body}"
    );
    for bad in [
        ["--subgroup-keys", "3"],
        ["--row-vec4s", "1025"],
        ["--state-mib", "0"],
        ["--split-workgroups", "-1"],
    ] {
        let o = attnviz(&["bench", "--only", "qk-long", bad[0], bad[1]]);
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {}", stderr(&o));
    }
}

/// `attnviz view` where there is no display (a server, a container, an SSH session): one line
/// saying so and what to use instead, not the windowing library's source location.
#[cfg(all(unix, not(target_os = "macos")))]
#[test]
fn the_viewer_without_a_display_says_so_in_one_line() {
    let input = data("minilm_attn_128.npy");
    // `attnviz view INPUT FLAGS` where no display is set.
    let headless = |flags: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_attnviz"))
            .args(["view", input.to_str().unwrap()])
            .args(flags)
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .env_remove("WAYLAND_SOCKET")
            .env("XDG_RUNTIME_DIR", std::env::temp_dir())
            .output()
            .unwrap()
    };
    let o = headless(&[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("there is no display") && err.contains("attnviz render"),
        "{err}"
    );
    // Bad input is reported before any window is asked for: a token file that does not fit
    // (it was accepted, and the readout named nothing).
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.txt");
    std::fs::write(&tokens, "a\nb\n").unwrap();
    let o = headless(&["--tokens", tokens.to_str().unwrap()]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("tokens.txt: 2 tokens, but the input has 128"),
        "{err}"
    );
    // ... and a head or layer that is not there, also with no display (it said "no display")
    for (flags, needle) in [
        (
            ["--focus", "9,1"],
            "--focus 9,1: that head is not among the selected cells",
        ),
        (["--layers", "9"], "--layers 9: layer 9 is out of range"),
    ] {
        let o = headless(&flags);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{flags:?}: {err}");
        assert!(err.lines().count() == 1 && err.contains(needle), "{err}");
    }
}

/// `--title ""` (a script's unset variable) draws no title, not a blank line above the grid.
#[test]
fn an_empty_title_is_no_title() {
    let dir = tempfile::tempdir().unwrap();
    let input = data("minilm_attn_128.npy");
    let mut figures = Vec::new();
    for title in [None, Some(""), Some("  ")] {
        let out = dir.path().join(format!("t{}.png", figures.len()));
        let mut args = vec![
            "render",
            input.to_str().unwrap(),
            "--layers",
            "1",
            "--heads",
            "1",
        ];
        args.extend(title.map(|t| ["--title", t]).into_iter().flatten());
        args.extend(["-o", out.to_str().unwrap()]);
        let o = attnviz(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        figures.push(std::fs::read(&out).unwrap());
    }
    assert!(figures[1] == figures[0] && figures[2] == figures[0]);
}

/// `WGPU_BACKEND` set but blank (`WGPU_BACKEND= attnviz …`) means unset: the adapter is chosen
/// as usual. One that names no backend wgpu knows is named in the error, rather than taken for
/// a machine without a GPU (wgpu ignores unknown names, which left no backend at all).
#[test]
fn a_blank_wgpu_backend_is_unset_and_a_misspelt_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("b.png");
    let run = |value: &str| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_attnviz"));
        let input = data("minilm_attn_128.npy");
        cmd.args(["render", input.to_str().unwrap(), "--backend", "gpu", "-o"])
            .arg(&out)
            .env("WGPU_BACKEND", value);
        if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
            cmd.env("XDG_RUNTIME_DIR", std::env::temp_dir());
        }
        cmd.output().expect("run attnviz")
    };
    if common::engine().is_some() {
        let o = run(" ");
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(
            !stderr(&o).contains("rendering on the CPU"),
            "{}",
            stderr(&o)
        );
    }
    let o = run("vulcan");
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("WGPU_BACKEND=vulcan names no backend wgpu knows"),
        "{err}"
    );
}
