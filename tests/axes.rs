//! Position axes (`--axes`): index ticks at round positions on the outer cells, where the layout
//! JSON says they are.

mod common;

use attnviz::figure::layout::Axis;
use attnviz::figure::layout_json::layout_json;
use attnviz::source::ArraySource;
use attnviz::{Figure, RenderOptions};

fn long_head(layers: usize, heads: usize, q: usize, k: usize) -> ArraySource {
    ArraySource::from_f32("long", &common::random(layers, heads, q, k, 3))
}

fn pixel(f: &Figure, x: u32, y: u32) -> [u8; 4] {
    let i = ((y * f.width + x) * 4) as usize;
    f.rgba[i..i + 4].try_into().unwrap()
}

/// Every tick of the layout sits where its position says and is drawn in the foreground colour;
/// the layout JSON lists exactly these ticks.
fn check_ticks(f: &Figure, options: &RenderOptions, queries: usize, keys: usize) {
    let layout = &f.plan.layout;
    let fg = layout.theme.foreground;
    for t in &layout.axis_ticks {
        let c = &layout.cells[t.cell];
        match t.axis {
            Axis::Query => {
                let at = ((t.position as f32 + 0.5) * c.height as f32 / queries as f32) as u32;
                assert_eq!((t.x, t.y), (c.x - 1, c.y + at), "{t:?}");
            }
            Axis::Key => {
                let at = ((t.position as f32 + 0.5) * c.width as f32 / keys as f32) as u32;
                assert_eq!((t.x, t.y), (c.x + at, c.y + c.height), "{t:?}");
            }
        }
        assert_eq!(pixel(f, t.x, t.y), fg, "tick {t:?} not drawn");
    }
    let json = layout_json(f, options);
    let listed = json["axis_ticks"].as_array().unwrap();
    assert_eq!(listed.len(), layout.axis_ticks.len());
    for (j, t) in listed.iter().zip(&layout.axis_ticks) {
        assert_eq!(j["position"], t.position);
        assert_eq!(
            (j["x"].as_u64(), j["y"].as_u64()),
            (Some(t.x as u64), Some(t.y as u64))
        );
        assert_eq!(j["cell"], t.cell);
    }
}

#[test]
fn one_cell_has_position_axes_by_default() {
    let Some(engine) = common::engine() else {
        return;
    };
    let (q, k) = (48, 20000);
    let src = long_head(1, 1, q, k);
    let options = RenderOptions::default();
    let f = engine.render(&src, &options).unwrap();
    let ticks = &f.plan.layout.axis_ticks;
    let keys: Vec<u64> = ticks
        .iter()
        .filter(|t| t.axis == Axis::Key)
        .map(|t| t.position)
        .collect();
    assert!(keys.len() >= 3 && keys[0] == 0, "{keys:?}");
    assert!(
        keys.iter().all(|p| p % 1000 == 0),
        "round positions: {keys:?}"
    );
    assert!(ticks.iter().any(|t| t.axis == Axis::Query));
    check_ticks(&f, &options, q, k);
    // Long positions read in thousands.
    let texts = common::label_texts(&f.plan.layout);
    assert!(texts.iter().any(|t| t.ends_with('k')), "{texts:?}");
    // --axes off draws none, and the figure is smaller.
    let off = RenderOptions {
        axes: Some(false),
        ..Default::default()
    };
    let g = engine.render(&src, &off).unwrap();
    assert!(g.plan.layout.axis_ticks.is_empty());
    assert!(g.width < f.width && g.height < f.height);
    // The CPU renderer lays out the same ticks.
    let cpu = attnviz::render_cpu(&src, &options).unwrap();
    assert_eq!(cpu.plan.layout.axis_ticks, f.plan.layout.axis_ticks);
    common::assert_figures_within_a_step(&f.rgba, &cpu.rgba, options.colormap, "default axes");
}

#[test]
fn grids_are_bare_by_default_and_share_outer_axes_when_asked() {
    let Some(engine) = common::engine() else {
        return;
    };
    let (q, k) = (64, 300);
    let src = long_head(2, 3, q, k);
    let f = engine.render(&src, &RenderOptions::default()).unwrap();
    assert!(f.plan.layout.axis_ticks.is_empty());
    let options = RenderOptions {
        axes: Some(true),
        ..Default::default()
    };
    let f = engine.render(&src, &options).unwrap();
    let layout = &f.plan.layout;
    let columns = layout.columns;
    for t in &layout.axis_ticks {
        match t.axis {
            // queries left of the first column, keys below the last row
            Axis::Query => assert_eq!(t.cell % columns, 0, "{t:?}"),
            Axis::Key => assert_eq!(t.cell / columns, 1, "{t:?}"),
        }
    }
    for cell in 0..layout.cells.len() {
        let has = |axis| {
            layout
                .axis_ticks
                .iter()
                .any(|t| t.cell == cell && t.axis == axis)
        };
        assert_eq!(has(Axis::Query), cell % columns == 0, "cell {cell}");
        assert_eq!(has(Axis::Key), cell / columns == 1, "cell {cell}");
    }
    check_ticks(&f, &options, q, k);
}

/// Token labels on a figure scaled far down (`--dpi 3`, `--scale-factor 0.01`): the labels'
/// size keeps its floor even where the figure's font is below it, rather than asking
/// `f32::clamp` for a floor above its ceiling (a panic `tools/fuzz_cli.py` found). The layout
/// is the CPU renderer's too, so no adapter is needed.
#[test]
fn token_labels_of_a_figure_scaled_far_down_keep_their_floor() {
    for (tokens, scale) in [(8, 0.03), (40, 0.01), (8, 0.2), (40, 0.5)] {
        let src = long_head(1, 1, tokens, tokens);
        let options = RenderOptions {
            tokens: Some((0..tokens).map(|i| format!("tok{i}")).collect()),
            scale_factor: scale,
            ..Default::default()
        };
        let f = attnviz::render_cpu(&src, &options)
            .unwrap_or_else(|e| panic!("{tokens} tokens at scale {scale}: {e}"));
        assert!(
            f.width > 0 && f.height > 0,
            "{tokens} tokens at scale {scale}"
        );
        assert_eq!(f.rgba.len(), (f.width * f.height * 4) as usize);
    }
}
