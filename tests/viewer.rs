//! The window under Xvfb (installed by `./test`): it opens, draws frames through the same scene
//! as export, and its screenshot equals `render` for the same settings and size.

use std::path::Path;
use std::process::Command;

fn data(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
        .to_str()
        .unwrap()
        .to_string()
}

#[test]
fn window_screenshot_equals_render() {
    let dir = tempfile::tempdir().unwrap();
    let shot = dir.path().join("view.png");
    let rendered = dir.path().join("render.png");
    let input = data("minilm_attn_128.npy");
    let figure = ["--layers", "2", "--heads", "1-3", "--colormap", "magma"];
    let bin = env!("CARGO_BIN_EXE_attnviz");
    run_ok(
        Command::new(bin)
            .args(["render", &input])
            .args(figure)
            .args(["-o", rendered.to_str().unwrap()]),
    );
    let img = image::open(&rendered).unwrap().to_rgba8();
    let size = format!("{}x{}", img.width(), img.height());
    // xvfb-run is a hard requirement here, as the GPU is: a missing one fails the test.
    let stdout = run_ok(
        Command::new("xvfb-run")
            .args(["-a", "-s", "-screen 0 1600x1200x24"])
            .args([bin, "view", &input])
            .args(figure)
            .args(["--size", &size, "--exit-after-frames", "12", "--stats"])
            .args(["--screenshot", shot.to_str().unwrap()]),
    );
    assert!(stdout.contains("frames:  12"), "{stdout}");
    assert!(stdout.contains("frame time: min"), "{stdout}");
    assert_same_figure(&shot, &img);
}

#[test]
fn zoomed_focus_shows_exact_entries_pooled_from_the_file() {
    use attnviz::source::{write_tensor, ArraySource};
    let dir = tempfile::tempdir().unwrap();
    // A 1024² checkerboard: pooled to a 256-px cell, every pixel's max is 1 (all yellow); only
    // the entries themselves show the pattern.
    let a = ndarray::Array4::from_shape_fn((1, 1, 1024, 1024), |(_, _, q, k)| ((q + k) % 2) as f32);
    let input = dir.path().join("checker.npy");
    write_tensor(&ArraySource::from_f32("checker", &a), &input, &|_, _| {}).unwrap();
    let shot = dir.path().join("zoom.png");
    let mut cmd = Command::new("xvfb-run");
    cmd.args(["-a", "-s", "-screen 0 1600x1200x24"]).args([
        env!("CARGO_BIN_EXE_attnviz"),
        "view",
        input.to_str().unwrap(),
        "--focus",
        "1,1",
        "--zoom",
        "8",
        "--size",
        "400x300",
        "--exit-after-frames",
        "3",
        "--stats",
        "--screenshot",
        shot.to_str().unwrap(),
    ]);
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        cmd.env("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    let o = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("detail: 1 region(s)"), "{stdout}");
    // The window opens on the layout, shows the zoomed entries, and reads the rest behind them.
    assert!(stdout.contains("first detail shown:"), "{stdout}");
    assert!(stdout.contains("figure read and shown:"), "{stdout}");
    let img = image::open(&shot).unwrap().to_rgba8();
    let lut = attnviz::Colormap::Viridis.packed();
    let (lo, hi) = (lut[0].to_le_bytes(), lut[255].to_le_bytes());
    // The window's centre: inside the cell, entries several pixels wide.
    let (mut dark, mut bright) = (0, 0);
    for y in 100..200 {
        for x in 150..250 {
            let p = img.get_pixel(x, y).0;
            dark += (p == lo) as u32;
            bright += (p == hi) as u32;
        }
    }
    assert_eq!(dark + bright, 10_000, "only the two colours of the entries");
    assert!(
        dark > 4000 && bright > 4000,
        "dark {dark}, bright {bright}: no checkerboard"
    );
}

#[test]
fn hover_readout_is_drawn_in_the_bottom_left_corner() {
    let dir = tempfile::tempdir().unwrap();
    let input = data("minilm_attn_128.npy");
    let shot = |name: &str, hover: Option<&str>| {
        let path = dir.path().join(name);
        let mut cmd = Command::new("xvfb-run");
        cmd.args(["-a", "-s", "-screen 0 1600x1200x24"]).args([
            env!("CARGO_BIN_EXE_attnviz"),
            "view",
            &input,
            "--layers",
            "1",
            "--heads",
            "1-2",
            // native 128-px cells (not the default magnification): the window's centre falls
            // inside a cell
            "--cell",
            "128",
            "--size",
            "700x400",
            "--exit-after-frames",
            "3",
            "--screenshot",
            path.to_str().unwrap(),
        ]);
        if let Some(h) = hover {
            cmd.args(["--hover", h, "--tokens", &data("tokens_128.txt")]);
        }
        if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
            cmd.env("XDG_RUNTIME_DIR", std::env::temp_dir());
        }
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        image::open(&path).unwrap().to_rgba8()
    };
    let plain = shot("plain.png", None);
    let (w, h) = plain.dimensions();
    // The centre of the window is inside a cell.
    let hovered = shot("hover.png", Some(&format!("{},{}", w / 2 - 60, h / 2)));
    let mut changed = 0;
    for (x, y, p) in hovered.enumerate_pixels() {
        if *p != *plain.get_pixel(x, y) {
            changed += 1;
            assert!(
                x < w * 3 / 4 && y > h - 60,
                "pixel ({x}, {y}) changed outside the readout's corner"
            );
        }
    }
    // Text: a few hundred pixels of ink at least.
    assert!(changed > 300, "only {changed} pixels of readout");
}

/// Runs `cmd` (under a runtime folder of its own when none is set), failing on a non-zero exit.
fn run_ok(cmd: &mut Command) -> String {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        cmd.env("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    let o = cmd.output().expect("run");
    assert!(
        o.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `view` reads what `render` reads (a raw dump by `--shape` and `--dtype`) and ranks by the
/// statistics `--sink-keys` and `--window` define, as `render --sort-by` does: the window's
/// screenshot equals the rendered ranking, which those flags change on MiniLM.
#[test]
fn a_raw_dump_ranked_by_its_statistics_equals_render() {
    use attnviz::source::{self, write_tensor};
    let dir = tempfile::tempdir().unwrap();
    let npy = data("minilm_attn_128.npy");
    let raw = dir.path().join("minilm.f32");
    let file = source::open(Path::new(&npy), &Default::default()).unwrap();
    write_tensor(&file, &raw, &|_, _| {}).unwrap();
    let ranking = ["--sort-by", "sink_mass", "--top", "3"];
    let statistics = ["--sink-keys", "64", "--window", "8"];
    let render = |name: &str, flags: &[&str]| {
        let out = dir.path().join(name);
        let bin = env!("CARGO_BIN_EXE_attnviz");
        run_ok(
            Command::new(bin)
                .args(["render", &npy, "-o", out.to_str().unwrap()])
                .args(flags),
        );
        image::open(&out).unwrap().to_rgba8()
    };
    let img = render("render.png", &[&ranking[..], &statistics[..]].concat());
    assert_ne!(
        img,
        render("default.png", &ranking),
        "--sink-keys 64 ranks MiniLM's heads otherwise"
    );
    let shot = dir.path().join("view.png");
    let size = format!("{}x{}", img.width(), img.height());
    run_ok(
        Command::new("xvfb-run")
            .args(["-a", "-s", "-screen 0 1600x1200x24"])
            .args([env!("CARGO_BIN_EXE_attnviz"), "view", raw.to_str().unwrap()])
            .args(["--shape", "6,12,128,128", "--dtype", "f32"])
            .args(ranking)
            .args(statistics)
            .args(["--size", &size, "--exit-after-frames", "3"])
            .args(["--screenshot", shot.to_str().unwrap()]),
    );
    assert_same_figure(&shot, &img);
}

/// The window's screenshot at `shot` is the rendered figure `img`: same size, every channel
/// within one step (the window's swapchain format may round once more than the export).
fn assert_same_figure(shot: &Path, img: &image::RgbaImage) {
    let shot = image::open(shot).unwrap().to_rgba8();
    assert_eq!(shot.dimensions(), img.dimensions());
    let worst = shot
        .as_raw()
        .iter()
        .zip(img.as_raw())
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap();
    assert!(worst <= 1, "screenshot differs from render by {worst}");
}
