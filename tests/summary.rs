//! `attnviz heads --figure`: the summary figure, one layer × head heatmap per statistic. Each
//! cell maps its own statistic's min–max (data units) onto the colormap, so the head with the
//! largest value is the colormap's top colour; the GPU figure equals the CPU twin's (±1 per
//! channel, as every composed figure).

mod common;

use attnviz::color::colormap::Colormap;
use attnviz::figure::summary::{summary_input, summary_options, STATISTICS};
use attnviz::pool::pattern::PatternOptions;
use attnviz::source::ArraySource;
use attnviz::{Figure, RenderOptions};
use common::{engine, structured};

/// The figure's RGBA at the centre of entry (`row`, `col`) of cell `i`.
fn pixel(fig: &Figure, i: usize, row: usize, col: usize, rows: usize, cols: usize) -> u32 {
    let c = &fig.plan.layout.cells[i];
    let x = c.x as usize + ((col as f64 + 0.5) * c.width as f64 / cols as f64) as usize;
    let y = c.y as usize + ((row as f64 + 0.5) * c.height as f64 / rows as f64) as usize;
    let o = (y * fig.width as usize + x) * 4;
    u32::from_le_bytes(fig.rgba[o..o + 4].try_into().unwrap())
}

#[test]
fn summary_figure_on_gpu_and_cpu() {
    let Some(e) = engine() else { return };
    let src = ArraySource::from_f32("structured", &structured(3, 5, 48, 64));
    // layers 1 and 3, heads 2-5: the ticks carry the true numbers
    let selection = RenderOptions {
        layers: Some("1,3".into()),
        heads: Some("2-5".into()),
        ..Default::default()
    };
    let (cells, stats) = e
        .head_patterns(&src, &selection, PatternOptions::default())
        .unwrap();
    let (input, summary) = summary_input(&cells, &stats).unwrap();
    assert_eq!(
        (summary.layers.clone(), summary.heads.clone()),
        (vec![0, 2], vec![1, 2, 3, 4])
    );
    let options = summary_options(summary);
    let gpu = e.render(&input, &options).unwrap();
    let cpu = attnviz::render_cpu(&input, &options).unwrap();
    let layout = &gpu.plan.layout;
    assert_eq!(layout.cells.len(), STATISTICS.len());
    assert_eq!(layout.cell_colorbars.len(), STATISTICS.len());
    let texts = common::label_texts(layout);
    for want in [
        "sink_mass",
        "entropy (nats)",
        "row_sum_mean",
        "l = 1",
        "l = 3",
        "h = 2",
        "h = 5",
    ] {
        assert!(texts.contains(&want.to_string()), "{want} in {texts:?}");
    }
    assert!(!texts.contains(&"l = 2".to_string()), "{texts:?}");
    let lut = Colormap::default().packed();
    for (i, key) in STATISTICS.iter().enumerate() {
        let values: Vec<f64> = stats.iter().map(|p| key.value(p)).collect();
        let (lo, hi) = values
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        // each cell is scaled to its own statistic, in its units (the colorbar's ticks)
        let [rlo, rhi] = gpu.ranges[i];
        assert!(
            (rlo as f64 - lo).abs() <= 1e-6 * lo.abs().max(1.0)
                && (rhi as f64 - hi).abs() <= 1e-6 * hi.abs().max(1.0),
            "{key:?}: range {:?} vs [{lo}, {hi}]",
            gpu.ranges[i]
        );
        if hi > lo {
            let top = values.iter().position(|&v| v == hi).unwrap();
            let bottom = values.iter().position(|&v| v == lo).unwrap();
            let at = |j: usize| pixel(&gpu, i, j / 4, j % 4, 2, 4);
            assert_eq!(at(top), lut[255], "{key:?}: the largest value's colour");
            assert_eq!(at(bottom), lut[0], "{key:?}: the smallest value's colour");
        }
    }
    assert_eq!((gpu.width, gpu.height), (cpu.width, cpu.height));
    let worst = gpu
        .rgba
        .iter()
        .zip(&cpu.rgba)
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap();
    assert!(worst <= 1, "GPU and CPU summaries differ by {worst}");
    // the vector export draws every bar
    let svg_options = RenderOptions {
        cell_colors: true,
        ..options
    };
    let fig = attnviz::render_cpu(&input, &svg_options).unwrap();
    let svg = attnviz::figure::svg::svg_string(&fig, svg_options.colormap).unwrap();
    assert_eq!(
        svg.matches("fill=\"url(#colorbar)\"").count(),
        STATISTICS.len()
    );
    assert!(svg.contains("<title>mean_distance (tokens)</title>"));
}
