//! `--sort-by METRIC --top N`: the heads drawn in the order of their statistics (from the pass
//! that pools them), labelled with their true layer and head; the GPU figure equals the CPU
//! twin's (±1 per channel, as every composed figure), and the order equals `heads`'.

mod common;

use attnviz::figure::rank::SortKey;
use attnviz::pool::pattern::PatternOptions;
use attnviz::source::ArraySource;
use attnviz::RenderOptions;
use common::{engine, structured};

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
        let mut drawn: Vec<usize> = (0..layout.cells.len())
            .filter(|&i| layout.cells[i].width > 0)
            .collect();
        drawn.sort_by_key(|&i| (layout.cells[i].y, layout.cells[i].x));
        assert_eq!(drawn, want, "{key:?}");
        for &i in &drawn {
            let c = &layout.cells[i];
            assert_eq!((c.layer, c.head), cells[i], "true layer and head");
        }
        // Each drawn cell is labelled "l = L, h = H" with its own numbers.
        let texts = common::label_texts(layout);
        for &i in &drawn {
            let (l, h) = cells[i];
            let label = format!("l = {}, h = {}", l + 1, h + 1);
            assert!(texts.contains(&label), "{label} in {texts:?}");
        }
        assert_eq!((gpu.width, gpu.height), (cpu.width, cpu.height));
        let worst = gpu
            .rgba
            .iter()
            .zip(&cpu.rgba)
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
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
