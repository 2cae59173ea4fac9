//! Publication features against their references: percentile clipping (GPU histogram vs CPU),
//! scales (GPU colour pass vs CPU), excluded keys, colorbar ticks against the colours they
//! label, tiled posters vs single-pass renders, SVG structure, layout JSON.
//!
//! Metrics, as measured on lavapipe:
//! - histograms and the limits read from them: exact (binning is a subtraction and a
//!   multiplication, both correctly rounded);
//! - scaled colours: within one LUT step (log2, sqrt and pow may differ from the CPU's in the
//!   last bits); each test reports how many pixels did;
//! - tiled exports: exact against the single-pass export; the poster within ±1 per channel of
//!   the CPU compositor (the labels' coverage blend).

mod common;

use attnviz::color::colormap::lut_index;
use attnviz::color::scale::{ColorScale, Scale};
use attnviz::cpu;
use attnviz::cpu::cpu_ranges;
use attnviz::figure::colorbar::ColorbarSpec;
use attnviz::figure::layout::Theme;
use attnviz::source::ArraySource;
use attnviz::{AttentionSource, Colormap, Norm, Plan, Reduce, RenderOptions};
use common::{engine, indices_of, random, structured, within_a_lut_step};
use ndarray::Array4;

fn lut_steps(a: &[u32], b: &[u32], colormap: Colormap) -> (usize, usize) {
    let lut = colormap.packed();
    let (mut off_by_one, mut worse) = (0, 0);
    for (&x, &y) in a.iter().zip(b) {
        if x == y {
            continue;
        }
        if within_a_lut_step(x, y, &lut) {
            off_by_one += 1;
        } else {
            worse += 1;
        }
    }
    (off_by_one, worse)
}

/// GPU histograms equal the CPU's count for count, and the clipped limits equal the CPU's, for
/// every scope and with excluded keys, on random data with spikes.
#[test]
fn clip_equals_the_cpu_reference_on_random_data() {
    let Some(e) = engine() else { return };
    let src = ArraySource::from_f32("random", &random(2, 3, 150, 333, 7));
    for norm in [Norm::Head, Norm::Layer, Norm::Global] {
        for (clip, exclude) in [([0.0, 99.5], 0), ([1.0, 99.0], 5), ([5.0, 95.0], 0)] {
            for reduce in [Reduce::Max, Reduce::Min] {
                let scale = ColorScale {
                    clip: Some(clip),
                    exclude_keys: exclude,
                    ..Default::default()
                };
                let options = RenderOptions {
                    norm,
                    reduce,
                    cell: Some(100),
                    scale: scale.clone(),
                    ..Default::default()
                };
                let plan = Plan::new(&src, &options).unwrap();
                let gpu = e.pool(&src, &plan.cells, plan.geometry, plan.pool).unwrap();
                let cpu = cpu::pool_cells(&src, &plan.cells, plan.geometry, plan.pool).unwrap();
                let stats: Vec<_> = cpu.iter().map(|p| cpu::head_stats(&p.accum)).collect();
                // the histograms themselves, over each cell's own range
                let ranges = attnviz::color::norm::color_ranges(norm, &stats, plan.heads.len());
                let gh = e
                    .histograms(&gpu, plan.first_column, reduce, &ranges)
                    .unwrap();
                for (c, r) in cpu.iter().zip(&ranges).enumerate() {
                    let ch = cpu::histogram(
                        &r.0.accum,
                        plan.geometry.pooled_w,
                        plan.first_column,
                        reduce,
                        *r.1,
                    );
                    assert_eq!(gh[c], ch, "{norm:?} {clip:?} cell {c}: histograms differ");
                    assert!(ch.iter().sum::<u32>() > 0);
                }
                let g = e.resolve_ranges(&gpu, &plan, norm, reduce, &scale).unwrap();
                let c = cpu_ranges(&cpu, &stats, &plan, norm, reduce, &scale).unwrap();
                assert_eq!(g, c, "{norm:?} {clip:?} exclude {exclude}: clipped limits");
                // clipping narrows the range
                let full = attnviz::color::norm::color_ranges(norm, &stats, plan.heads.len());
                for (a, b) in g.iter().zip(&full) {
                    assert!(a[0] >= b[0] && a[1] <= b[1], "{a:?} inside {b:?}");
                }
                // percentiles of the pooled image: the min pool's top and the max pool's
                // bottom move in
                if clip[1] <= 99.0 {
                    let moved = |a: &[f32; 2], b: &[f32; 2]| match reduce {
                        Reduce::Min => a[1] < b[1],
                        _ => a[0] > b[0],
                    };
                    assert!(
                        g.iter().zip(&full).all(|(a, b)| moved(a, b)),
                        "{norm:?} {clip:?} {reduce:?} exclude {exclude}: {g:?} vs {full:?}"
                    );
                }
            }
        }
    }
}

/// p99.5 of known data: 1000 values 0..999 in one head (one value per pooled pixel), so the
/// limits are the values of rank 0 and ceil(0.995 n) - 1 = 994, to the histogram's resolution
/// (1/4096 of the range).
#[test]
fn clip_percentiles_of_known_values() {
    let Some(e) = engine() else { return };
    let a = Array4::from_shape_fn((1, 1, 10, 100), |(_, _, q, k)| (q * 100 + k) as f32);
    let src = ArraySource::from_f32("ramp", &a);
    let scale = ColorScale {
        clip: Some([0.0, 99.5]),
        ..Default::default()
    };
    let options = RenderOptions {
        scale: scale.clone(),
        ..Default::default()
    };
    let fig = e.render(&src, &options).unwrap();
    let [lo, hi] = fig.ranges[0];
    assert_eq!(lo, 0.0);
    assert!(
        hi > 994.0 && hi - 994.0 <= 999.0 / 4096.0 + 1e-3,
        "p99.5 = {hi}"
    );
    let cpu = attnviz::render_cpu(&src, &options).unwrap();
    assert_eq!(cpu.ranges, fig.ranges);
}

/// Every scale, with clipping and fixed limits, gives the CPU's colours within one LUT step.
#[test]
fn scaled_colours_match_the_cpu() {
    let Some(e) = engine() else { return };
    let src = ArraySource::from_f32("structured", &structured(2, 3, 96, 80));
    let scales = [
        Scale::Linear,
        Scale::Log,
        Scale::Sqrt,
        Scale::Gamma(2.2),
        Scale::Gamma(0.3),
    ];
    let mut total = 0;
    for scale in scales {
        for (norm, clip, vmax, exclude) in [
            (Norm::Head, None, None, 0),
            (Norm::Global, Some([0.0, 99.0]), None, 1),
            (Norm::Layer, None, Some(0.5), 0),
            (Norm::None, None, None, 0),
        ] {
            let options = RenderOptions {
                norm,
                scale: ColorScale {
                    scale,
                    clip,
                    vmax,
                    exclude_keys: exclude,
                    ..Default::default()
                },
                cell_colors: true,
                ..Default::default()
            };
            let g = e.render(&src, &options).unwrap();
            let c = attnviz::render_cpu(&src, &options).unwrap();
            assert_eq!(g.ranges, c.ranges, "{scale:?} {norm:?}");
            let (gc, cc) = (g.cell_colors.unwrap(), c.cell_colors.unwrap());
            let (off, worse) = lut_steps(&gc.concat(), &cc.concat(), options.colormap);
            assert_eq!(
                worse, 0,
                "{scale:?} {norm:?}: {worse} pixels off by more than one step"
            );
            total += off;
        }
    }
    eprintln!("scaled colours: {total} pixels one LUT step from the CPU's");
}

/// With the sink column left out of the statistics, the range is the rest's, and the sink
/// renders saturated (the top colour), still visible.
#[test]
fn excluded_keys_leave_the_statistics_and_render_saturated() {
    let Some(e) = engine() else { return };
    let a = Array4::from_shape_fn((1, 1, 64, 64), |(_, _, q, k)| {
        if k == 0 {
            0.9
        } else {
            0.01 + 0.001 * ((q + k) % 7) as f32
        }
    });
    let src = ArraySource::from_f32("sink", &a);
    let options = RenderOptions {
        scale: ColorScale {
            exclude_keys: 1,
            ..Default::default()
        },
        cell_colors: true,
        ..Default::default()
    };
    let fig = e.render(&src, &options).unwrap();
    assert_eq!(fig.ranges[0], [0.01, 0.01 + 0.001 * 6.0]);
    let colors = &fig.cell_colors.as_ref().unwrap()[0];
    let lut = Colormap::Viridis.packed();
    assert!(
        (0..64).all(|q| colors[q * 64] == lut[255]),
        "sink saturated"
    );
    // the rest spans the whole map
    assert!(colors.contains(&lut[0]));
    let cpu = attnviz::render_cpu(&src, &options).unwrap();
    assert_eq!(cpu.ranges, fig.ranges);
    assert!(fig
        .plan
        .colorbar
        .unwrap()
        .caption
        .contains("key 0 left out"));
    // too many keys left out is an option error, not an empty figure
    let bad = RenderOptions {
        scale: ColorScale {
            exclude_keys: 64,
            ..Default::default()
        },
        ..Default::default()
    };
    assert!(e.render(&src, &bad).is_err());
}

/// The colorbar is right for every norm and scale: at each tick's row, the bar shows the colour
/// a cell value equal to the tick gets (within one LUT step, the bar's rows quantize).
#[test]
fn colorbar_ticks_label_the_colours_cells_get() {
    let a = Array4::from_shape_fn((1, 2, 32, 48), |(_, h, q, k)| {
        1e-5 + (((q * 48 + k) * (h + 1)) % 997) as f32 / 997.0 * 0.8
    });
    let src = ArraySource::from_f32("ticks", &a);
    for scale in [Scale::Linear, Scale::Log, Scale::Sqrt, Scale::Gamma(2.0)] {
        for norm in Norm::ALL {
            let options = RenderOptions {
                norm,
                cell: Some(300),
                scale: ColorScale {
                    scale,
                    ..Default::default()
                },
                ..Default::default()
            };
            let fig = attnviz::render_cpu(&src, &options).unwrap();
            let spec = fig.plan.colorbar.clone().unwrap();
            assert_eq!(
                spec,
                ColorbarSpec::new(norm, &fig.ranges, &options.scale),
                "{norm:?}"
            );
            let [bx, by, _, bh] = fig.plan.layout.colorbar.unwrap();
            let ticks = spec.ticks();
            assert!(
                (2..=7).contains(&ticks.len()),
                "{scale:?} {norm:?}: {ticks:?}"
            );
            let lut = options.colormap.packed();
            let mut drawn = 0;
            for t in ticks {
                let pos = spec.position(t);
                if !(0.0..=1.0).contains(&pos) {
                    continue;
                }
                let y = by + ((1.0 - pos) * (bh - 1) as f64).round() as u32;
                // the tick mark is drawn right of the bar at that row (crowded ones are left out)
                if !fig.plan.layout.fills.iter().any(|f| f[1] == y && f[0] > bx) {
                    continue;
                }
                drawn += 1;
                // what a value t gets in the cells: data units map through the cell's range;
                // normalized ticks are positions in every cell's range
                let expected = if spec.data_units {
                    let r = options.scale.shader_range(fig.ranges[0]);
                    lut_index(options.scale.position(t as f32, r))
                } else if spec.relative {
                    // a fraction of every cell's max: check each cell
                    let all: Vec<usize> = fig
                        .ranges
                        .iter()
                        .map(|&range| {
                            let r = options.scale.shader_range(range);
                            lut_index(options.scale.position(t as f32 * range[1], r))
                        })
                        .collect();
                    assert!(all.windows(2).all(|w| w[0].abs_diff(w[1]) <= 1), "{all:?}");
                    all[0]
                } else {
                    let s = ColorScale {
                        scale: spec.scale,
                        ..Default::default()
                    };
                    lut_index(s.position(t as f32, s.shader_range([0.0, 1.0])))
                };
                let i = ((y * fig.width + bx + 1) * 4) as usize;
                let px = u32::from_le_bytes(fig.rgba[i..i + 4].try_into().unwrap());
                let got = indices_of(px, &lut);
                assert!(
                    got.iter().any(|&g| (g as i64 - expected as i64).abs() <= 1),
                    "{scale:?} {norm:?}: tick {t} at row {y} shows index {got:?}, cells get {expected}"
                );
            }
            assert!(drawn >= 2, "{scale:?} {norm:?}: {drawn} ticks drawn");
        }
    }
}

/// Tiles line up: the same figure exported through 97-pixel tiles equals the single-pass
/// export byte for byte (no seams, no shifted rows).
#[test]
fn tiled_export_equals_single_pass() {
    let Some(mut e) = engine() else { return };
    let src = ArraySource::from_f32("tiles", &structured(2, 3, 64, 96));
    let options = RenderOptions {
        title: Some("Tiles".into()),
        tokens: Some((0..96).map(|i| format!("t{i}")).collect()),
        ..Default::default()
    };
    let whole = e.render(&src, &options).unwrap();
    assert!(whole.width > 97 * 3 && whole.height > 97 * 2);
    e.tile_limit = 97;
    let tiled = e.render(&src, &options).unwrap();
    assert_eq!((whole.width, whole.height), (tiled.width, tiled.height));
    assert!(
        whole.rgba == tiled.rgba,
        "tiled export differs from the single pass"
    );
}

/// A poster wider than the 8192-px texture limit has the scaled size and equals the CPU
/// compositor's drawing of it within ±1 per channel.
#[test]
fn poster_past_the_texture_limit() {
    let Some(e) = engine() else { return };
    let src = ArraySource::from_f32("poster", &structured(1, 4, 24, 24));
    let small = RenderOptions {
        cell: Some(96),
        ..Default::default()
    };
    let options = RenderOptions {
        scale_factor: 24.0,
        ..small.clone()
    };
    let base = e.render(&src, &small).unwrap();
    let poster = e.render(&src, &options).unwrap();
    assert!(poster.width > 8192, "poster is {} wide", poster.width);
    assert_eq!(poster.plan.geometry.display_w, 96 * 24);
    // everything scales: within rounding of the gutters, margins and text
    let ratio = poster.width as f64 / base.width as f64;
    assert!((ratio - 24.0).abs() < 1.0, "width ratio {ratio}");
    let cpu = attnviz::render_cpu(&src, &options).unwrap();
    assert_eq!((cpu.width, cpu.height), (poster.width, poster.height));
    let differing = poster
        .rgba
        .chunks(4)
        .zip(cpu.rgba.chunks(4))
        .filter(|(a, b)| a.iter().zip(b.iter()).any(|(x, y)| x.abs_diff(*y) > 1))
        .count();
    assert_eq!(
        differing, 0,
        "poster differs from the CPU in {differing} pixels"
    );
}

/// SVG: parses as XML, one <image> per cell at the cell's rectangle, every label as <text>
/// with its string, and the colorbar as a gradient.
#[test]
fn svg_has_an_image_per_cell_and_every_label_as_text() {
    let src = ArraySource::from_f32("svg", &structured(2, 3, 20, 20));
    let tokens: Vec<String> = (0..20).map(|i| format!("tok<{i}>&")).collect();
    let options = RenderOptions {
        title: Some("A \"title\" & more".into()),
        tokens: Some(tokens.clone()),
        scale: ColorScale {
            scale: Scale::Log,
            ..Default::default()
        },
        cell_colors: true,
        ..Default::default()
    };
    let fig = attnviz::render_cpu(&src, &options).unwrap();
    let svg = attnviz::figure::svg::svg_string(&fig, options.colormap).unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("SVG parses");
    let images: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("image"))
        .collect();
    assert_eq!(images.len(), 6);
    for (img, cell) in images.iter().zip(&fig.plan.layout.cells) {
        assert_eq!(img.attribute("x"), Some(cell.x.to_string().as_str()));
        assert_eq!(
            img.attribute("width"),
            Some(cell.width.to_string().as_str())
        );
        let href = img
            .attribute(("http://www.w3.org/1999/xlink", "href"))
            .unwrap();
        assert!(href.starts_with("data:image/png;base64,"));
    }
    let texts: Vec<String> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| {
            n.descendants()
                .filter(|d| d.is_text())
                .map(|d| d.text().unwrap())
                .collect()
        })
        .collect();
    let labels = common::label_texts(&fig.plan.layout);
    assert_eq!(texts, labels);
    for needle in ["h = 1", "l = 2", "A \"title\" & more", "tok<7>&", "log10"] {
        assert!(
            texts.iter().any(|t| t.contains(needle)),
            "no <text> with {needle}"
        );
    }
    // each token twice (query and key axis) in each of the 6 cells
    assert_eq!(texts.iter().filter(|t| *t == "tok<3>&").count(), 12);
    let stops = doc.descendants().filter(|n| n.has_tag_name("stop")).count();
    assert_eq!(stops, 256);
}

/// Many tokens become index ticks; few are written out; a wrong count is an error.
#[test]
fn tokens_or_index_ticks() {
    let src = ArraySource::from_f32("tok", &structured(1, 2, 100, 100));
    let options = RenderOptions {
        tokens: Some((0..100).map(|i| format!("w{i}")).collect()),
        ..Default::default()
    };
    let fig = attnviz::render_cpu(&src, &options).unwrap();
    let labels = common::label_texts(&fig.plan.layout);
    assert!(!labels.iter().any(|l| l.starts_with('w')));
    for t in ["20", "40", "60", "80"] {
        // two axes, two cells
        assert_eq!(labels.iter().filter(|l| *l == t).count(), 4, "tick {t}");
    }
    let bad = RenderOptions {
        tokens: Some(vec!["a".into(); 99]),
        ..Default::default()
    };
    let err = attnviz::render_cpu(&src, &bad).err().unwrap().to_string();
    assert!(err.contains("99 tokens"), "{err}");
}

/// Dark and transparent themes: the ground is the theme's, and transparent leaves alpha 0
/// outside cells and text.
#[test]
fn themes_and_transparency() {
    let src = ArraySource::from_f32("theme", &structured(1, 2, 16, 16));
    let dark = RenderOptions {
        theme: Theme::DARK,
        ..Default::default()
    };
    let fig = attnviz::render_cpu(&src, &dark).unwrap();
    assert_eq!(fig.rgba[..4], Theme::DARK.background);
    let clear = RenderOptions {
        transparent: true,
        ..Default::default()
    };
    let fig = attnviz::render_cpu(&src, &clear).unwrap();
    assert_eq!(fig.rgba[3], 0);
    let c = fig.plan.layout.cells[0];
    let i = ((c.y * fig.width + c.x) * 4) as usize;
    assert_eq!(fig.rgba[i + 3], 255, "cells stay opaque");
}

/// The layout JSON places every cell where the figure has it and maps the colorbar.
#[test]
fn layout_json_describes_the_figure() {
    let src = ArraySource::from_f32("json", &structured(2, 2, 32, 32));
    let options = RenderOptions {
        norm: Norm::Global,
        scale: ColorScale {
            scale: Scale::Sqrt,
            clip: Some([0.0, 99.0]),
            ..Default::default()
        },
        ..Default::default()
    };
    let fig = attnviz::render_cpu(&src, &options).unwrap();
    let v = attnviz::figure::layout_json::layout_json(&fig, &options);
    assert_eq!(v["width"], fig.width);
    let cells = v["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 4);
    assert_eq!(cells[3]["layer"], 2);
    assert_eq!(cells[3]["head"], 2);
    assert_eq!(cells[3]["x"], fig.plan.layout.cells[3].x);
    assert_eq!(
        cells[0]["range"][1].as_f64().unwrap() as f32,
        fig.ranges[0][1]
    );
    let cb = &v["colorbar"];
    assert_eq!(cb["scale"], "sqrt");
    assert!(cb["caption"].as_str().unwrap().contains("clipped at p99"));
    let ticks = cb["ticks"].as_array().unwrap();
    assert!(ticks.len() >= 3);
    // ticks go up the bar as values grow
    let ys: Vec<f64> = ticks.iter().map(|t| t["y"].as_f64().unwrap()).collect();
    assert!(ys.windows(2).all(|w| w[1] < w[0]));
    assert!(src.shape().keys == 32);
}

/// A flat figure (10 query rows of 64 keys, two layers): its row ticks are every other nice
/// step where a step's labels would touch, and the colorbar's caption, longer than the bar and
/// with no comma to break at, goes on lines between its words rather than past the figure's
/// top.
#[test]
fn flat_figures_keep_their_labels_apart_and_inside() {
    use attnviz::figure::layout::Axis;
    let src = ArraySource::from_f32("flat", &structured(2, 3, 10, 64));
    let options = RenderOptions {
        axes: Some(true),
        ..Default::default()
    };
    let fig = attnviz::render_cpu(&src, &options).unwrap();
    let layout = &fig.plan.layout;
    let cell = layout.cells[0];
    let rows: Vec<u32> = layout
        .axis_ticks
        .iter()
        .filter(|t| t.axis == Axis::Query && t.cell == 0)
        .map(|t| t.y)
        .collect();
    assert!(rows.len() >= 2, "{rows:?}");
    let label_h = layout
        .labels
        .iter()
        .filter(|l| l.text.string() == "0")
        .map(|l| l.label.height)
        .max()
        .unwrap();
    assert!(
        rows.windows(2).all(|w| w[1] - w[0] > label_h),
        "rows at {rows:?} in a {}-px cell, labels {label_h} px high",
        cell.height
    );
    for l in &layout.labels {
        assert!(
            l.y + l.label.height <= layout.height && l.x + l.label.width <= layout.width,
            "{:?} at ({}, {}) leaves the {}x{} figure",
            l.text.string(),
            l.x,
            l.y,
            layout.width,
            layout.height
        );
    }
    let caption: Vec<String> = layout
        .labels
        .iter()
        .map(|l| l.text.string())
        .filter(|t| t.contains("min–max") || t.contains("normalized"))
        .collect();
    assert!(caption.len() >= 2, "{caption:?}");
}
