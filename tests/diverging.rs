//! Signed values: `attnviz diff` (A − B on the GPU), signed-extreme pooling and centred scales
//! (`--symmetric`, `--center`), each against matplotlib or the CPU twin.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use attnviz::color::scale::ColorScale;
use attnviz::pool::geometry::{bin_edges, CellGeometry};
use attnviz::pool::{Causal, PoolOptions};
use attnviz::source::{self, ArraySource, AttentionSource, DiffSource, OpenOptions};
use attnviz::{Colormap, DType, Norm, Reduce, RenderOptions, Shape};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// One layer of a source, as a source of one layer.
struct LayerOf<'a> {
    src: &'a dyn AttentionSource,
    layer: usize,
}

impl AttentionSource for LayerOf<'_> {
    fn name(&self) -> &str {
        self.src.name()
    }
    fn shape(&self) -> Shape {
        Shape {
            layers: 1,
            ..self.src.shape()
        }
    }
    fn dtype(&self) -> DType {
        self.src.dtype()
    }
    fn read_rows(&self, _: usize, head: usize, row: usize, dst: &mut [u8]) -> attnviz::Result<()> {
        self.src.read_rows(self.layer, head, row, dst)
    }
}

/// `attnviz diff`'s defaults.
fn diff_options() -> RenderOptions {
    RenderOptions {
        colormap: Colormap::RdBuR,
        reduce: Reduce::Extreme,
        scale: ColorScale {
            symmetric: true,
            label: Some("A − B".into()),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn rgba(path: &Path) -> image::RgbaImage {
    image::open(path).unwrap().to_rgba8()
}

#[test]
fn diff_tile_equals_matplotlib_centered_rdbu_r() {
    let Some(engine) = common::engine() else {
        return;
    };
    let minilm = source::open(&data("minilm_attn_128.npy"), &OpenOptions::default()).unwrap();
    let diff = DiffSource::new(
        Box::new(LayerOf {
            src: &minilm,
            layer: 0,
        }),
        Box::new(LayerOf {
            src: &minilm,
            layer: 5,
        }),
    )
    .unwrap();
    let options = RenderOptions {
        heads: Some("3".into()),
        ..diff_options()
    };
    let fig = engine.render(&diff, &options).unwrap();
    let tiles = engine.tiles(&diff, &fig, &options).unwrap();
    let want = rgba(&data("minilm_diff_l1_l6_h3_matplotlib.png"));
    assert_eq!((tiles[0].width, tiles[0].height), want.dimensions());
    // Metric: the LUT index of every pixel, exact; one step allowed in at most 0.1% of pixels
    // (f32 rounding at a boundary). lavapipe gives exact equality.
    let lut = Colormap::RdBuR.table();
    let index = |p: &[u8]| {
        lut.iter()
            .position(|c| c[..] == p[..3])
            .expect("a colour of the map")
    };
    let mut off_by_one = 0;
    for (g, w) in tiles[0].rgba.chunks(4).zip(want.as_raw().chunks(4)) {
        let (i, j) = (index(g), index(w));
        assert!(i.abs_diff(j) <= 1, "LUT index {i} against matplotlib's {j}");
        off_by_one += usize::from(i != j);
    }
    let fraction = off_by_one as f64 / (128.0 * 128.0);
    eprintln!("diff tile: {off_by_one} pixels one LUT step from matplotlib ({fraction:.5})");
    assert!(fraction <= 1e-3, "{fraction}");
    // The CPU twin draws the same tile.
    let cpu_fig = attnviz::render_cpu(&diff, &options).unwrap();
    let cpu = attnviz::tiles_cpu(&diff, &cpu_fig, &options).unwrap();
    assert!(
        cpu[0].rgba == tiles[0].rgba,
        "GPU and CPU diff tiles differ"
    );
    assert_eq!(fig.ranges, cpu_fig.ranges);
    let spec = fig.plan.colorbar.as_ref().unwrap();
    assert!(spec.caption.starts_with("A − B"), "{}", spec.caption);
    assert!(spec.ticks().contains(&0.0));
}

/// Two signed inputs of different dtypes, to exercise the GPU's widening.
fn signed_pair(q: usize, k: usize) -> (ArraySource, ArraySource) {
    let a = common::random(2, 3, q, k, 7);
    let b = common::structured(2, 3, q, k).mapv(|v| v * 0.5);
    (
        ArraySource::from_f32("a", &a),
        ArraySource::from_f32_as("b", &b, DType::F16),
    )
}

#[test]
fn signed_extreme_pooling_equals_the_cpu_twin() {
    let Some(engine) = common::engine() else {
        return;
    };
    let (q, k) = (96, 200);
    let (a, b) = signed_pair(q, k);
    let diff = DiffSource::new(Box::new(a), Box::new(b)).unwrap();
    // The accumulators: each pixel's signed extreme is the entry of largest magnitude in its bin.
    let geometry = CellGeometry::new(q, k, Some(40)).unwrap();
    let cells = [(0, 0), (1, 2)];
    let pooled = engine
        .pool(&diff, &cells, geometry, PoolOptions::default())
        .unwrap();
    let rows = bin_edges(q, geometry.pooled_h);
    let cols = bin_edges(k, geometry.pooled_w);
    let accums = pooled.read_accums(&engine.gpu).unwrap();
    for (c, &(layer, head)) in cells.iter().enumerate() {
        let accum = &accums[c];
        let mut raw = vec![0u8; q * k * 4];
        diff.read_rows(layer, head, 0, &mut raw).unwrap();
        let mut v = vec![0f32; q * k];
        DType::F32.decode(&raw, &mut v);
        for y in 0..geometry.pooled_h as usize {
            for x in 0..geometry.pooled_w as usize {
                let mut best = 0f32;
                for r in rows[y] as usize..rows[y + 1] as usize {
                    for kk in cols[x] as usize..cols[x + 1] as usize {
                        let e = v[r * k + kk];
                        if e.abs() > best.abs() || (e.abs() == best.abs() && e > best) {
                            best = e;
                        }
                    }
                }
                let got = accum[y * geometry.pooled_w as usize + x].value(Reduce::Extreme);
                assert_eq!(got, Some(best), "cell {c} pixel ({x}, {y})");
            }
        }
    }
    // The figure, every reduction, GPU against CPU, pixel for pixel.
    for reduce in Reduce::ALL {
        let options = RenderOptions {
            cell: Some(40),
            reduce,
            ..diff_options()
        };
        let gpu = engine.render(&diff, &options).unwrap();
        let cpu = attnviz::render_cpu(&diff, &options).unwrap();
        assert_eq!(gpu.ranges, cpu.ranges, "{reduce:?}");
        common::assert_figures_within_a_step(
            &gpu.rgba,
            &cpu.rgba,
            options.colormap,
            &format!("{reduce:?}"),
        );
    }
}

/// matplotlib's `TwoSlopeNorm(vcenter)(v)`: `np.interp(v, [lo, c, hi], [0, 0.5, 1])` in f64.
fn two_slope_f64(v: f32, lo: f32, c: f32, hi: f32) -> f64 {
    let (v, lo, c, hi) = (v as f64, lo as f64, c as f64, hi as f64);
    if v < c {
        (v - lo) * (0.5 / (c - lo))
    } else {
        0.5 + (v - c) * (0.5 / (hi - c))
    }
}

#[test]
fn centred_scales_match_matplotlib_and_the_cpu_twin() {
    let Some(engine) = common::engine() else {
        return;
    };
    let (q, k) = (64, 64);
    let (a, b) = signed_pair(q, k);
    let diff = DiffSource::new(Box::new(a), Box::new(b)).unwrap();
    for (norm, center, symmetric, clip, vmax) in [
        (Norm::Head, Some(0.1), false, None, None),
        (Norm::Global, Some(-0.05), false, Some([1.0, 99.0]), None),
        (Norm::Layer, None, true, None, Some(0.3)),
        (Norm::Head, Some(0.2), true, Some([0.0, 99.5]), None),
    ] {
        let options = RenderOptions {
            norm,
            colormap: Colormap::Coolwarm,
            reduce: Reduce::Mean,
            scale: ColorScale {
                center,
                symmetric,
                clip,
                vmax,
                ..Default::default()
            },
            ..Default::default()
        };
        let what = format!("{norm:?} center {center:?} symmetric {symmetric} clip {clip:?}");
        let gpu = engine.render(&diff, &options).unwrap();
        let cpu = attnviz::render_cpu(&diff, &options).unwrap();
        assert_eq!(gpu.ranges, cpu.ranges, "{what}");
        common::assert_figures_within_a_step(&gpu.rgba, &cpu.rgba, options.colormap, &what);
        let c = center.unwrap_or(0.0);
        for r in &gpu.ranges {
            if symmetric {
                // c ± h in f32: symmetric to the rounding of the two sums
                let h = r[1] - c;
                assert!(
                    ((c - r[0]) - h).abs() <= 2.0 * f32::EPSILON * (c.abs() + h),
                    "{what}: {r:?} not symmetric"
                );
            }
            assert!(r[0] <= c && c <= r[1], "{what}: {r:?}");
        }
        // Native tiles against TwoSlopeNorm in f64: within one LUT step.
        let tiles = engine.tiles(&diff, &gpu, &options).unwrap();
        let lut = Colormap::Coolwarm.table();
        let mut raw = vec![0u8; q * k * 4];
        for (t, r) in tiles.iter().zip(&gpu.ranges) {
            diff.read_rows(t.layer, t.head, 0, &mut raw).unwrap();
            let mut v = vec![0f32; q * k];
            DType::F32.decode(&raw, &mut v);
            for (p, &x) in t.rgba.chunks(4).zip(&v) {
                let want = (two_slope_f64(x, r[0], c, r[1]) * 256.0)
                    .floor()
                    .clamp(0.0, 255.0);
                let got = lut.iter().position(|e| e[..] == p[..3]).unwrap();
                assert!(
                    (got as f64 - want).abs() <= 1.0,
                    "{what}: {x} drawn at {got}, matplotlib {want}"
                );
            }
        }
    }
}

#[test]
fn diff_cli_defaults_and_shape_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = signed_pair(32, 48);
    let (pa, pb, pc) = (
        dir.path().join("a.npy"),
        dir.path().join("b.npy"),
        dir.path().join("c.npy"),
    );
    source::write_tensor(&a, &pa, &|_, _| {}).unwrap();
    source::write_tensor(&b, &pb, &|_, _| {}).unwrap();
    let c = ArraySource::from_f32("c", &common::random(2, 3, 48, 32, 1));
    source::write_tensor(&c, &pc, &|_, _| {}).unwrap();
    let run = |args: &[&Path]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_attnviz"));
        cmd.arg("diff").args(args);
        if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
            cmd.env("XDG_RUNTIME_DIR", std::env::temp_dir());
        }
        cmd.output().unwrap()
    };
    let out = dir.path().join("d.png");
    let json = dir.path().join("d.json");
    let o = run(&[
        &pa,
        &pb,
        Path::new("-o"),
        &out,
        Path::new("--layout-json"),
        &json,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let layout: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(layout["colormap"], "RdBu_r");
    assert_eq!(layout["reduce"], "extreme");
    assert_eq!(layout["symmetric"], true);
    let caption = layout["colorbar"]["caption"].as_str().unwrap();
    assert!(caption.starts_with("A − B"), "{caption}");
    for cell in layout["cells"].as_array().unwrap() {
        let r = cell["range"].as_array().unwrap();
        assert_eq!(r[0].as_f64().unwrap(), -r[1].as_f64().unwrap());
    }
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("every difference is 0"), "{err}");
    // A file against itself: the line says they are equal, not that a mask was detected (the
    // zeros above the diagonal are every other entry's zeros).
    let same = dir.path().join("same.png");
    let same_json = dir.path().join("same.json");
    let o = run(&[
        &pa,
        &pa,
        Path::new("-o"),
        &same,
        Path::new("--layout-json"),
        &same_json,
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("every difference is 0: A and B are equal") && !err.contains("causal"),
        "{err}"
    );
    // ...and drawn in the centre's colour (RdBu_r's middle entry), not as the most negative
    // blue, where matplotlib's CenteredNorm puts any constant.
    let layout: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&same_json).unwrap()).unwrap();
    let image = rgba(&same);
    let middle = Colormap::RdBuR.table()[128];
    for cell in layout["cells"].as_array().unwrap() {
        let at = |k: &str| cell[k].as_u64().unwrap() as u32;
        let (x, y, w, h) = (at("x"), at("y"), at("width"), at("height"));
        // (the bottom-left corner: below the diagonal that `--causal auto` finds in zeros)
        let p = image.get_pixel(x + w / 8, y + h - 1 - h / 8);
        assert_eq!(p.0[..3], middle[..], "cell at ({x}, {y})");
    }
    // Different shapes: one line naming both files, exit 2, nothing written.
    let bad = dir.path().join("bad.png");
    let o = run(&[&pa, &pc, Path::new("-o"), &bad]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("a.npy") && err.contains("c.npy") && err.contains("shape"),
        "{err}"
    );
    assert!(!bad.exists());
    // --sink-keys and --window set what --sort-by ranks the differences by, as for render; with
    // no ranking they would change nothing, and are refused.
    let ranked = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let mut args: Vec<&Path> = vec![&pa, &pb, Path::new("-o"), &out];
        args.extend(["--sort-by", "sink_mass"].map(Path::new));
        args.extend(extra.iter().map(Path::new));
        let o = run(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        std::fs::read(out).unwrap()
    };
    assert_ne!(
        ranked("r1.png", &[]),
        ranked("r2.png", &["--sink-keys", "16"])
    );
    let o = run(&[
        &pa,
        &pb,
        Path::new("-o"),
        &bad,
        Path::new("--window"),
        Path::new("8"),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--window sets what the head statistics count"),
        "{err}"
    );
    assert!(!bad.exists());
}

/// `--causal auto` on a difference asks its inputs, not the difference's values: MiniLM (which
/// is bidirectional) against itself is 0 everywhere, and was drawn as a causal triangle; now
/// its cells are whole, on the GPU and on the CPU alike, because row 0 of the inputs shows keys
/// past the diagonal. Two causal inputs still give a causal difference, and so does one equal to
/// itself.
#[test]
fn a_difference_is_causal_only_when_its_inputs_are() {
    let Some(engine) = common::engine() else {
        return;
    };
    let minilm = source::open(&data("minilm_attn_128.npy"), &OpenOptions::default()).unwrap();
    let causal = |seed| {
        let mut a = common::random(1, 2, 64, 64, seed);
        for ((_, _, q, k), v) in a.indexed_iter_mut() {
            if k > q {
                *v = 0.0;
            }
        }
        ArraySource::from_f32("causal", &a)
    };
    let (c1, c2) = (causal(3), causal(4));
    let options = RenderOptions {
        layers: Some("1".into()),
        heads: Some("1-2".into()),
        causal: Causal::Auto,
        ..diff_options()
    };
    for (a, b, want, what) in [
        (
            &minilm as &dyn AttentionSource,
            &minilm as &dyn AttentionSource,
            false,
            "MiniLM − MiniLM",
        ),
        (&c1, &c2, true, "two causal inputs"),
        (&c1, &c1, true, "a causal input against itself"),
    ] {
        let diff = DiffSource::new(Box::new(a), Box::new(b)).unwrap();
        let fig = engine.render(&diff, &options).unwrap();
        let cpu = attnviz::render_cpu(&diff, &options).unwrap();
        assert_eq!(fig.causal, want, "{what}: the GPU's mask");
        assert_eq!(cpu.causal, want, "{what}: the CPU twin's mask");
        assert!(fig.rgba == cpu.rgba, "{what}: GPU and CPU figures differ");
    }
}
