//! `--sort-by METRIC --top N`: the heads drawn in the order of their statistics (from the pass
//! that pools them), labelled with their true layer and head; the GPU figure equals the CPU
//! twin's (±1 per channel, as every composed figure), and the order equals `heads`'.
//! `--pattern LABELS`: only the heads with those labels, the planted ones of a synthetic model.

mod common;

use attnviz::figure::rank::SortKey;
use attnviz::pool::pattern::PatternOptions;
use attnviz::source::ArraySource;
use attnviz::RenderOptions;
use common::{
    assert_labelled_with_their_heads, drawn_in_reading_order, engine, kinds, structured,
    worst_byte_difference,
};

#[test]
fn sorted_grids_follow_the_head_statistics_on_gpu_and_cpu() {
    let Some(e) = engine() else { return };
    let src = ArraySource::from_f32("structured", &structured(3, 4, 40, 40));
    for (key, top) in [(SortKey::SinkMass, Some(5)), (SortKey::Entropy, None)] {
        let options = RenderOptions {
            sort_by: Some(key),
            top,
            cell: Some(40),
            ..Default::default()
        };
        let gpu = e.render(&src, &options).unwrap();
        let cpu = attnviz::render_cpu(&src, &options).unwrap();
        let (cells, stats) = e
            .head_patterns(&src, &RenderOptions::default(), PatternOptions::default())
            .unwrap();
        let mut want: Vec<usize> = (0..cells.len()).collect();
        want.sort_by(|&a, &b| key.value(&stats[b]).total_cmp(&key.value(&stats[a])));
        want.truncate(top.unwrap_or(usize::MAX));
        // The drawn cells, in reading order (rows, then columns), are the ranked cells.
        let layout = &gpu.plan.layout;
        let drawn = drawn_in_reading_order(layout);
        assert_eq!(drawn, want, "{key:?}");
        for &i in &drawn {
            let c = &layout.cells[i];
            assert_eq!((c.layer, c.head), cells[i], "true layer and head");
        }
        // Each drawn cell is labelled "l = L, h = H" with its own numbers.
        assert_labelled_with_their_heads(layout, &cells, &drawn);
        assert_eq!((gpu.width, gpu.height), (cpu.width, cpu.height));
        let worst = worst_byte_difference(&gpu.rgba, &cpu.rgba);
        assert!(worst <= 1, "{key:?}: GPU and CPU figures differ by {worst}");
        // --tiles writes the heads drawn, not every head ranked
        let tiles = e.tiles(&src, &gpu, &options).unwrap();
        let mut named: Vec<(usize, usize)> = tiles.iter().map(|t| (t.layer, t.head)).collect();
        let mut kept: Vec<(usize, usize)> = drawn.iter().map(|&i| cells[i]).collect();
        named.sort();
        kept.sort();
        assert_eq!(named, kept, "{key:?}");
        let cpu_tiles = attnviz::tiles_cpu(&src, &cpu, &options).unwrap();
        assert_eq!(cpu_tiles.len(), kept.len(), "{key:?}");
    }
}

#[test]
fn top_needs_sort_by() {
    let src = ArraySource::from_f32("s", &structured(1, 2, 8, 8));
    let options = RenderOptions {
        top: Some(1),
        ..Default::default()
    };
    let e = attnviz::render_cpu(&src, &options)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("--sort-by"), "{e}");
}

/// `render --sort-by` ranks by the statistics `--sink-keys` and `--window` define, as `heads`
/// does with the same flags (it ranked by the defaults whatever they said; without
/// `--stats-json` or `--sort-by` they are refused: tests/cli.rs).
#[test]
fn the_cli_ranks_by_the_statistics_its_flags_define() {
    let Some(_) = engine() else { return };
    let input = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/minilm_attn_128.npy"
    );
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_attnviz"))
            .args(args)
            .env("XDG_RUNTIME_DIR", std::env::temp_dir())
            .output()
            .unwrap()
    };
    for (key, flag, n) in [
        ("sink_mass", "--sink-keys", "64"),
        ("local_mass", "--window", "2"),
    ] {
        let o = run(&["heads", input, "--sort-by", key, "--top", "1", flag, n]);
        assert!(o.status.success());
        let table = String::from_utf8(o.stdout).unwrap();
        let first: Vec<usize> = table
            .lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .take(2)
            .map(|v| v.parse().unwrap())
            .collect();
        let json = dir.path().join("layout.json");
        let json = json.to_str().unwrap();
        let png = dir.path().join("f.png");
        let o = run(&[
            "render",
            input,
            "--sort-by",
            key,
            "--top",
            "1",
            flag,
            n,
            "--layout-json",
            json,
            "-o",
            png.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let layout: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
        let drawn: Vec<Vec<u64>> = layout["cells"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["width"].as_u64() > Some(0))
            .map(|c| vec![c["layer"].as_u64().unwrap(), c["head"].as_u64().unwrap()])
            .collect();
        assert_eq!(
            drawn,
            vec![vec![first[0] as u64, first[1] as u64]],
            "{key} {flag} {n}"
        );
    }
}

/// `--pattern`: a synthetic model whose heads carry one planted kind each (in turn along the
/// heads, shifted by one each layer) draws exactly the heads planted with the labels asked for,
/// in layer and head order, or `--sort-by`'s; on the GPU as on the CPU twin. A label no head
/// has is refused, naming the labels the heads have.
#[test]
fn pattern_draws_the_heads_of_its_labels_on_gpu_and_cpu() {
    let Some(e) = engine() else { return };
    let src = kinds(512, 2, 5, 2);
    let planted = |(l, h): (usize, usize)| src.planted(l, h).label();
    let cells: Vec<(usize, usize)> = (0..2).flat_map(|l| (0..5).map(move |h| (l, h))).collect();
    for (labels, sort_by) in [
        (vec!["sink", "local"], None),
        (vec!["vertical-slash"], Some(SortKey::LocalMass)),
    ] {
        let options = RenderOptions {
            pattern: Some(labels.clone()),
            sort_by,
            cell: Some(64),
            ..Default::default()
        };
        let gpu = e.render(&src, &options).unwrap();
        let cpu = attnviz::render_cpu(&src, &options).unwrap();
        let layout = &gpu.plan.layout;
        let drawn = drawn_in_reading_order(layout);
        let mut want: Vec<usize> = (0..cells.len())
            .filter(|&i| labels.contains(&planted(cells[i])))
            .collect();
        if let Some(key) = sort_by {
            let stats = &gpu.patterns;
            want.sort_by(|&a, &b| key.value(&stats[b]).total_cmp(&key.value(&stats[a])));
        }
        assert!(want.len() >= 2, "{labels:?}: {want:?}");
        assert_eq!(drawn, want, "{labels:?}");
        assert_labelled_with_their_heads(layout, &cells, &drawn);
        assert_eq!((gpu.width, gpu.height), (cpu.width, cpu.height));
        let worst = worst_byte_difference(&gpu.rgba, &cpu.rgba);
        assert!(
            worst <= 1,
            "{labels:?}: GPU and CPU figures differ by {worst}"
        );
    }
    // a model of one head, a sink: no head is block-sparse
    let one = kinds(512, 1, 1, 2);
    let options = RenderOptions {
        pattern: Some(vec!["block-sparse"]),
        ..Default::default()
    };
    for err in [
        e.render(&one, &options).err().unwrap().to_string(),
        attnviz::render_cpu(&one, &options)
            .err()
            .unwrap()
            .to_string(),
    ] {
        assert!(
            err.contains("--pattern block-sparse: no head has that label"),
            "{err}"
        );
        assert!(err.contains("(these heads: sink 1)"), "{err}");
    }
}
