//! `attnviz heads --figure`: the summary figure, one layer × head heatmap of the heads'
//! `pattern` labels, then one per statistic. Each statistic's cell maps its own min–max (data
//! units) onto the colormap, so the head with the largest value is the colormap's top colour;
//! each label has the colour of its legend swatch; the GPU figure equals the CPU twin's (±1 per
//! channel, as every composed figure).

mod common;

use attnviz::color::colormap::Colormap;
use attnviz::figure::summary::{
    pattern_legend, summary_input, summary_options, PANELS, PATTERN_PANEL, STATISTICS,
};
use attnviz::pool::pattern::PatternOptions;
use attnviz::{Figure, RenderOptions};
use common::{engine, kinds, worst_byte_difference};

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
    // one planted kind a head, in turn along the heads, shifted by one each layer: the labels
    // differ from head to head
    let src = kinds(1024, 3, 5, 3);
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
    assert_eq!(layout.cells.len(), PANELS);
    // a bar per statistic but those equal in every head (row sums of 1, here), which say so
    let constant = gpu.ranges[1..].iter().filter(|r| r[0] == r[1]).count();
    assert_eq!(constant, 1);
    assert_eq!(layout.cell_colorbars.len(), STATISTICS.len() - constant);
    let texts = common::label_texts(layout);
    for want in [
        "pattern",
        "vertical-slash",
        "mixed",
        "sink_mass",
        "entropy (nats)",
        "l = 1",
        "l = 3",
        "h = 2",
        "h = 5",
    ] {
        assert!(texts.contains(&want.to_string()), "{want} in {texts:?}");
    }
    assert!(!texts.contains(&"l = 2".to_string()), "{texts:?}");
    // (= or ≈: the f32 row sums may or may not round to 1 exactly)
    assert!(texts
        .iter()
        .any(|t| t.starts_with("row_sum_mean ") && t.ends_with(" 1 in every head")));
    let lut = Colormap::default().packed();
    // each head in its label's colour, the colour of the legend's swatch for it
    let legend = pattern_legend();
    assert_eq!(gpu.ranges[PATTERN_PANEL], [0.0, 4.0]);
    for (j, (p, &(l, h))) in stats.iter().zip(&cells).enumerate() {
        assert_eq!(p.pattern, src.planted(l, h).label(), "l{l} h{h}");
        let entry = legend.iter().find(|e| e.0 == p.pattern).unwrap();
        let at = pixel(&gpu, PATTERN_PANEL, j / 4, j % 4, 2, 4);
        assert_eq!(at, lut[entry.1 as usize], "head {j}: {}", p.pattern);
    }
    assert_eq!(layout.swatches.len(), legend.len());
    for (&([x, y, w, h], index), entry) in layout.swatches.iter().zip(&legend) {
        assert_eq!(index, entry.1);
        let o = (((y + h / 2) * gpu.width + x + w / 2) * 4) as usize;
        let drawn = u32::from_le_bytes(gpu.rgba[o..o + 4].try_into().unwrap());
        assert_eq!(drawn, lut[index as usize], "the {} swatch", entry.0);
    }
    for (s, key) in STATISTICS.iter().enumerate() {
        let i = s + 1;
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
        // (a statistic equal in every head in f32, or up to rounding, is drawn as one value)
        if rhi > rlo {
            let top = values.iter().position(|&v| v == hi).unwrap();
            let bottom = values.iter().position(|&v| v == lo).unwrap();
            let at = |j: usize| pixel(&gpu, i, j / 4, j % 4, 2, 4);
            assert_eq!(at(top), lut[255], "{key:?}: the largest value's colour");
            assert_eq!(at(bottom), lut[0], "{key:?}: the smallest value's colour");
        }
    }
    assert_eq!((gpu.width, gpu.height), (cpu.width, cpu.height));
    let worst = worst_byte_difference(&gpu.rgba, &cpu.rgba);
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
        STATISTICS.len() - constant
    );
    assert!(svg.contains("<title>mean_distance (tokens)</title>"));
    assert!(svg.contains("<title>pattern</title>"));
    for (name, index) in legend {
        let [r, g, b, _] = lut[index as usize].to_le_bytes();
        let fill = format!("fill=\"#{r:02x}{g:02x}{b:02x}\"/>");
        assert!(svg.contains(&fill), "{name}: {fill}");
    }
}
