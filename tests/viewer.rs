//! The window under Xvfb (installed by `.ci/run`): it opens, draws frames through the same scene
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
    let run = |cmd: &mut Command| {
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
    };
    run(Command::new(env!("CARGO_BIN_EXE_attnviz")).args([
        "render",
        &input,
        "--layers",
        "2",
        "--heads",
        "1-3",
        "--colormap",
        "magma",
        "-o",
        rendered.to_str().unwrap(),
    ]));
    let img = image::open(&rendered).unwrap().to_rgba8();
    let size = format!("{}x{}", img.width(), img.height());
    // xvfb-run is a hard requirement here, as the GPU is: a missing one fails the test.
    let stdout = run(Command::new("xvfb-run")
        .args(["-a", "-s", "-screen 0 1600x1200x24"])
        .args([
            env!("CARGO_BIN_EXE_attnviz"),
            "view",
            &input,
            "--layers",
            "2",
            "--heads",
            "1-3",
            "--colormap",
            "magma",
            "--size",
            &size,
            "--exit-after-frames",
            "12",
            "--stats",
            "--screenshot",
            shot.to_str().unwrap(),
        ]));
    assert!(stdout.contains("frames:  12"), "{stdout}");
    assert!(stdout.contains("frame time: min"), "{stdout}");
    let shot = image::open(&shot).unwrap().to_rgba8();
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
