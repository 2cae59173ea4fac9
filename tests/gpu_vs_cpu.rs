//! The GPU pipeline against the CPU reference (`attnviz::cpu`), stage by stage.
//!
//! Metrics, as measured on lavapipe:
//! - pooled accumulators (max, min, count, non-finite flag, and the float sum, which both sides
//!   add in the same order): exact;
//! - colours: the LUT index may differ by one step, because WGSL allows 2.5 ULP in division
//!   (normalization and the mean) where the CPU divides exactly; each test reports how many
//!   pixels did (0 on lavapipe);
//! - the composed figure: ±1 per channel against the CPU drawing the same colours, for the
//!   labels' coverage blend (float to unorm rounding); cells are exact.

mod common;

use attnviz::color::norm::color_ranges;
use attnviz::cpu;
use attnviz::figure::quads::FigureQuads;
use attnviz::pool::geometry::CellGeometry;
use attnviz::pool::{Causal, PoolKernel, PoolOptions};
use attnviz::source::ArraySource;
use attnviz::{AttentionSource, Colormap, DType, Engine, Norm, Reduce, RenderOptions};
use common::{engine, pool_modes, random, structured, ulp_close, within_a_lut_step};
use ndarray::Array4;

/// Pools on both sides, checks accumulators and stats exactly (within a few ULP where the
/// shader divides), then colours every (norm, reduce) combination and checks within one LUT
/// step. Returns the off-by-one count.
fn check_pooling(
    e: &Engine,
    name: &str,
    src: &dyn AttentionSource,
    cell: Option<u32>,
    options: PoolOptions,
) -> usize {
    let s = src.shape();
    let geometry = CellGeometry::new(s.queries, s.keys, cell).unwrap();
    check_pooling_into(e, name, src, geometry, options)
}

/// [`check_pooling`] into a given geometry.
fn check_pooling_into(
    e: &Engine,
    name: &str,
    src: &dyn AttentionSource,
    geometry: CellGeometry,
    options: PoolOptions,
) -> usize {
    let s = src.shape();
    let cells: Vec<_> = (0..s.layers)
        .flat_map(|l| (0..s.heads).map(move |h| (l, h)))
        .collect();
    let gpu = e.pool(src, &cells, geometry, options).unwrap();
    let cpu = cpu::pool_cells(src, &cells, geometry, options).unwrap();
    let gpu_acc = gpu.read_accums(&e.gpu).unwrap();
    for (c, (g, r)) in gpu_acc.iter().zip(&cpu).enumerate() {
        for (i, (a, b)) in g.iter().zip(&r.accum).enumerate() {
            let what = || format!("{name}: cell {c} pixel {i}: gpu {a:?} cpu {b:?}");
            if options.row_norm {
                // Row norm divides, and WGSL division is only accurate to 2.5 ULP (NVIDIA's is
                // not correctly rounded): equal within a few ULP, counts exact.
                assert_eq!(a.count_bad, b.count_bad, "{}", what());
                for (x, y) in [(a.max, b.max), (a.min, b.min), (a.sum, b.sum)] {
                    assert!(ulp_close(x, y, 8), "{}", what());
                }
                continue;
            }
            assert_eq!(
                (
                    a.max.to_bits(),
                    a.min.to_bits(),
                    a.count_bad,
                    a.sum.to_bits(),
                ),
                (
                    b.max.to_bits(),
                    b.min.to_bits(),
                    b.count_bad,
                    b.sum.to_bits(),
                ),
                "{}",
                what()
            );
        }
        assert_eq!(gpu.causal, r.causal, "{name}: causal detection");
        let cs = cpu::head_stats(&r.accum);
        let gs = gpu.stats[c];
        assert_eq!(
            (gs.count, gs.bad_pixels, gs.empty_pixels),
            (cs.count, cs.bad_pixels, cs.empty_pixels),
            "{name}: stats of cell {c}"
        );
        let ulps = if options.row_norm { 8 } else { 0 };
        assert!(
            ulp_close(gs.min, cs.min, ulps) && ulp_close(gs.max, cs.max, ulps),
            "{name}: stats of cell {c}: gpu {gs:?} cpu {cs:?}"
        );
    }
    let mut off_by_one = 0;
    let norms: &[Norm] = if options.row_norm {
        &[Norm::Row]
    } else {
        &[Norm::Head, Norm::Layer, Norm::Global, Norm::None]
    };
    for &norm in norms {
        let ranges = color_ranges(norm, &gpu.stats, s.heads);
        for reduce in Reduce::ALL {
            let cmap = Colormap::Magma;
            let lut = cmap.packed();
            let colors = e.colorize(&gpu, &ranges, reduce, cmap).unwrap();
            for (c, words) in colors.iter().enumerate() {
                let expected = cpu::colorize(&cpu[c].accum, ranges[c], reduce, cmap);
                for (i, (&g, &x)) in words.iter().zip(&expected).enumerate() {
                    if g == x {
                        continue;
                    }
                    assert!(
                        within_a_lut_step(g, x, &lut),
                        "{name} {norm:?} {reduce:?}: cell {c} pixel {i}: gpu {g:#x} cpu {x:#x}"
                    );
                    off_by_one += 1;
                }
            }
        }
    }
    if off_by_one > 0 {
        eprintln!("{name}: {off_by_one} pixels one LUT step apart");
    }
    off_by_one
}

#[test]
fn native_resolution_random_q_ne_k() {
    let Some(e) = engine() else { return };
    let src = ArraySource::from_f32("random", &random(2, 3, 70, 45, 1));
    assert_eq!(
        check_pooling(&e, "native", &src, None, PoolOptions::default()),
        0
    );
}

#[test]
fn pooled_random_not_multiples_of_the_workgroup() {
    let Some(e) = engine() else { return };
    let src = ArraySource::from_f32("random", &random(1, 2, 300, 517, 2));
    check_pooling(&e, "pooled", &src, Some(64), PoolOptions::default());
    check_pooling(
        &e,
        "pooled-row",
        &src,
        Some(64),
        PoolOptions {
            row_norm: true,
            causal: Causal::Off,
            ..Default::default()
        },
    );
}

/// Heads of more pixels than one statistics block (8192) and not a multiple of it, with a
/// non-finite entry and a masked (empty) triangle in the last, partial block: the two-pass
/// reduction must see every block once.
#[test]
fn statistics_span_several_blocks() {
    let Some(e) = engine() else { return };
    let mut a = random(2, 3, 131, 131, 7);
    a[[1, 2, 130, 129]] = f32::NAN;
    a[[0, 1, 120, 3]] = 7.5;
    a[[1, 0, 2, 1]] = -3.0;
    let src = ArraySource::from_f32("blocks", &a);
    let causal = PoolOptions {
        causal: Causal::On,
        ..Default::default()
    };
    assert_eq!(check_pooling(&e, "blocks", &src, None, causal), 0);
    let s = src.shape();
    let cells: Vec<_> = (0..s.layers)
        .flat_map(|l| (0..s.heads).map(move |h| (l, h)))
        .collect();
    let geometry = CellGeometry::new(131, 131, None).unwrap();
    let stats = e.pool(&src, &cells, geometry, causal).unwrap().stats;
    assert_eq!(stats[1].max, 7.5);
    assert_eq!(stats[3].min, -3.0);
    assert_eq!(stats[5].bad_pixels, 1);
    // 131 rows of a causal square keep 131·132/2 entries, less the bad one's bin
    assert_eq!(stats[0].count, 131 * 132 / 2);
    assert_eq!(stats[5].count, 131 * 132 / 2 - 1);
}

/// `--norm row` on rows longer than one invocation may walk (llvmpipe stops a loop after 65535
/// iterations: 262140 f32 keys): each row's maximum, found past that point, must still divide
/// the row. Rows of 300000 keys go to one workgroup per row.
#[test]
fn row_norm_on_rows_past_the_loop_budget() {
    let Some(e) = engine() else { return };
    let mut a = random(1, 2, 3, 300_000, 11);
    a[[0, 0, 0, 299_999]] = 40.0;
    a[[0, 0, 1, 280_001]] = 9.0;
    a[[0, 1, 2, 150_000]] = f32::INFINITY;
    a[[0, 1, 2, 290_000]] = 3.0;
    let src = ArraySource::from_f32("wide", &a);
    for causal in [Causal::Off, Causal::On] {
        let options = PoolOptions {
            row_norm: true,
            causal,
            ..Default::default()
        };
        check_pooling(&e, "wide rows", &src, Some(64), options);
    }
    // Half precision packs twice the keys in a word: past 131072 keys a row is wide too.
    let half = ArraySource::from_f32_as("wide f16", &a, DType::F16);
    let row_norm = PoolOptions {
        row_norm: true,
        ..Default::default()
    };
    check_pooling(&e, "wide f16 rows", &half, Some(64), row_norm);
    // Each row's maximum is its own 1.0 after normalization, wherever it sits: with one row per
    // head, the last bin holds 1.0 exactly when the row's maximum is in it.
    let mut rows = random(1, 3, 1, 300_000, 12);
    rows[[0, 0, 0, 299_999]] = 40.0;
    rows[[0, 1, 0, 280_001]] = 9.0;
    rows[[0, 2, 0, 150_000]] = f32::INFINITY;
    rows[[0, 2, 0, 299_000]] = 3.0;
    let src = ArraySource::from_f32("rows", &rows);
    let geometry = CellGeometry::new(1, 300_000, Some(64)).unwrap();
    let row_norm = PoolOptions {
        row_norm: true,
        ..Default::default()
    };
    let cells = [(0, 0), (0, 1), (0, 2)];
    let pooled = e.pool(&src, &cells, geometry, row_norm).unwrap();
    let last_bin: Vec<f32> = pooled
        .read_accums(&e.gpu)
        .unwrap()
        .iter()
        .map(|a| a[geometry.pooled_w as usize - 1].max)
        .collect();
    assert_eq!(last_bin[0], 1.0);
    assert!(last_bin[1] < 1.0, "head 1's maximum is in an earlier bin");
    assert_eq!(last_bin[2], 1.0);
}

/// A head's entry count passes 2^32 at 65536 tokens (exactly 2^32 there: a 32-bit count would
/// read 0, "no finite value", and draw the head blank). Both reductions count in 64 bits.
#[test]
fn head_counts_past_two_to_the_32() {
    let Some(e) = engine() else { return };
    let src = ArraySource::from_f32("counts", &random(1, 2, 4, 4, 3));
    let geometry = CellGeometry::new(4, 4, Some(2)).unwrap();
    let pooled = e
        .pool(&src, &[(0, 0), (0, 1)], geometry, PoolOptions::default())
        .unwrap();
    let full = (1u32 << 31) - 1;
    let px = |v: f32, count: u32| attnviz::pool::accum::Accum {
        max: v,
        min: v,
        sum: v,
        count_bad: count,
    };
    // head 0: four full bins, 4 * (2^31 - 1) entries; head 1: 2^32 exactly, one bin empty
    let accums = vec![
        vec![
            px(0.5, full),
            px(0.25, full),
            px(0.75, full),
            px(0.125, full),
        ],
        vec![px(0.5, full), px(0.5, full), px(0.0, 0), px(0.5, 2)],
    ];
    pooled.overwrite_accums(&e.gpu, &accums);
    let want = [4 * full as u64, 1u64 << 32];
    let stats = e.pooled_stats(&pooled).unwrap();
    assert_eq!([stats[0].count, stats[1].count], want);
    assert_eq!((stats[0].min, stats[0].max), (0.125, 0.75));
    assert!(stats[1].range().is_some());
    let ranges = e.cell_ranges(&pooled, 0).unwrap();
    assert_eq!([ranges[0].count, ranges[1].count], want);
    for (cell, a) in accums.iter().enumerate() {
        assert_eq!(cpu::head_stats(a).count, want[cell]);
    }
}

#[test]
fn structured_heads() {
    let Some(e) = engine() else { return };
    let src = ArraySource::from_f32("structured", &structured(2, 2, 200, 200));
    check_pooling(&e, "structured", &src, Some(50), PoolOptions::default());
}

#[test]
fn half_precision_inputs_are_widened_on_the_gpu() {
    let Some(e) = engine() else { return };
    let data = random(1, 2, 129, 257, 3);
    for dtype in [DType::F16, DType::BF16] {
        let src = ArraySource::from_f32_as("half", &data, dtype);
        check_pooling(&e, dtype.name(), &src, Some(40), PoolOptions::default());
        check_pooling(&e, dtype.name(), &src, None, PoolOptions::default());
    }
}

fn with_non_finite() -> Array4<f32> {
    let mut a = random(1, 4, 90, 77, 4);
    a[[0, 0, 3, 4]] = f32::NAN;
    a[[0, 0, 50, 70]] = f32::INFINITY;
    a[[0, 0, 89, 0]] = f32::NEG_INFINITY;
    a.slice_mut(ndarray::s![0, 1, .., ..]).fill(f32::NAN);
    a.slice_mut(ndarray::s![0, 2, .., ..]).fill(0.25);
    a.slice_mut(ndarray::s![0, 3, .., ..]).mapv_inplace(|v| -v);
    a
}

#[test]
fn non_finite_constant_and_negative_heads() {
    let Some(e) = engine() else { return };
    let data = with_non_finite();
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        let src = ArraySource::from_f32_as("nan", &data, dtype);
        check_pooling(&e, "nan-native", &src, None, PoolOptions::default());
        check_pooling(&e, "nan-pooled", &src, Some(33), PoolOptions::default());
    }
    // Pixel-exact facts: a constant head is one colour (index 0), an all-NaN head all bad colour.
    let src = ArraySource::from_f32("nan", &data);
    let fig = e.render(&src, &RenderOptions::default()).unwrap();
    assert_eq!(fig.stats[1].count, 0);
    assert_eq!(fig.stats[1].bad_pixels, 90 * 77);
    let colors = e
        .colorize(
            &e.pool(&src, &fig.plan.cells, fig.plan.geometry, fig.plan.pool)
                .unwrap(),
            &fig.ranges,
            Reduce::Max,
            Colormap::Viridis,
        )
        .unwrap();
    let first = Colormap::Viridis.packed()[0];
    assert!(
        colors[2].iter().all(|&c| c == first),
        "constant head maps to index 0"
    );
    let bad = attnviz::color::colormap::pack_rgba(attnviz::color::colormap::BAD_COLOR);
    assert!(
        colors[1].iter().all(|&c| c == bad),
        "all-NaN head is all bad colour"
    );
    assert_eq!(
        colors[0].iter().filter(|&&c| c == bad).count(),
        3,
        "three non-finite entries"
    );
}

/// Heads pooled at their own size keep one word a pixel (`AccumLayout::Single`: the
/// whole-model regime, a quarter of the accumulators' memory) and read back, reduce to
/// statistics, colour and clip exactly as the 16-byte layout's pixels do: every value a word
/// must carry (NaN, ±inf, -0.0, ±f32::MAX, a subnormal, masked entries and zeros set aside
/// above the diagonal, then folded back in when a later row shows the head is not causal), in
/// f32, f16 and bf16, in every causal mode and with row norm. Pooled 2:1, the same heads keep
/// `Full`.
#[test]
fn bins_of_one_entry_keep_one_word_a_pixel() {
    use attnviz::pool::accum::AccumLayout;
    let Some(e) = engine() else { return };
    let (q, k) = (37, 53);
    let mut a = random(2, 2, q, k, 21);
    a[[0, 0, 0, 0]] = f32::NAN;
    a[[0, 0, 1, 2]] = f32::INFINITY;
    a[[0, 0, 2, 3]] = f32::NEG_INFINITY;
    a[[0, 1, 5, 7]] = -0.0;
    a[[0, 1, 6, 7]] = f32::MAX;
    a[[0, 1, 7, 7]] = -f32::MAX;
    a[[1, 0, 3, 3]] = f32::MIN_POSITIVE / 4.0;
    a[[1, 0, 4, 4]] = -1.5;
    // every head: zeros above the diagonal (row r sees keys up to r + K - Q) but one, in a late
    // row of the last head: `Causal::Auto` sets the zeros aside, then folds them back in
    let diagonal = k - q;
    for ((_, _, r, c), v) in a.indexed_iter_mut() {
        if c > r + diagonal {
            *v = 0.0;
        }
    }
    a[[1, 1, 30, 50]] = 0.5;
    let cells: Vec<_> = (0..2).flat_map(|l| (0..2).map(move |h| (l, h))).collect();
    let native = CellGeometry::new(q, k, None).unwrap();
    let halved = CellGeometry::new(q, k, Some(26)).unwrap();
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        let src = ArraySource::from_f32_as("single", &a, dtype);
        for (what, options) in [
            ("auto", PoolOptions::default()),
            (
                "on",
                PoolOptions {
                    causal: Causal::On,
                    ..Default::default()
                },
            ),
            (
                "off",
                PoolOptions {
                    causal: Causal::Off,
                    ..Default::default()
                },
            ),
            (
                "row",
                PoolOptions {
                    row_norm: true,
                    causal: Causal::Off,
                    ..Default::default()
                },
            ),
        ] {
            let name = format!("single {} {what}", dtype.name());
            let pooled = e.pool(&src, &cells, native, options).unwrap();
            assert_eq!(pooled.layout(), AccumLayout::Single, "{name}");
            if what == "auto" {
                assert!(!pooled.causal, "{name}: the late upper entry");
            }
            assert_eq!(check_pooling_into(&e, &name, &src, native, options), 0);
            let pooled = e.pool(&src, &cells, halved, options).unwrap();
            assert_eq!(pooled.layout(), AccumLayout::Full, "{name} pooled 2:1");
        }
    }
    // --clip and --exclude-keys read the words too: histograms and clipped limits, GPU
    // against CPU (on the random values alone: ±f32::MAX would make every range infinite)
    let src = ArraySource::from_f32("single-clip", &random(2, 2, q, k, 22));
    for (clip, exclude) in [([1.0, 99.0], 0), ([5.0, 95.0], 3)] {
        let scale = attnviz::color::scale::ColorScale {
            clip: Some(clip),
            exclude_keys: exclude,
            ..Default::default()
        };
        let options = RenderOptions {
            scale: scale.clone(),
            ..Default::default()
        };
        let plan = attnviz::figure::plan::Plan::new(&src, &options).unwrap();
        let gpu = e.pool(&src, &plan.cells, plan.geometry, plan.pool).unwrap();
        assert_eq!(gpu.layout(), AccumLayout::Single);
        let cpu = cpu::pool_cells(&src, &plan.cells, plan.geometry, plan.pool).unwrap();
        let stats: Vec<_> = cpu.iter().map(|p| cpu::head_stats(&p.accum)).collect();
        let ranges = color_ranges(Norm::Head, &stats, plan.heads.len());
        let gh = e
            .histograms(&gpu, plan.first_column, Reduce::Max, &ranges)
            .unwrap();
        for (c, (p, r)) in cpu.iter().zip(&ranges).enumerate() {
            let ch = cpu::histogram(
                &p.accum,
                plan.geometry.pooled_w,
                plan.first_column,
                Reduce::Max,
                *r,
            );
            assert_eq!(gh[c], ch, "single clip {clip:?}: histogram of cell {c}");
            assert!(ch.iter().sum::<u32>() > 0);
        }
        let g = e
            .resolve_ranges(&gpu, &plan, Norm::Head, Reduce::Max, &scale)
            .unwrap();
        let c = cpu::cpu_ranges(&cpu, &stats, &plan, Norm::Head, Reduce::Max, &scale).unwrap();
        assert_eq!(
            g, c,
            "single clip {clip:?} exclude {exclude}: clipped limits"
        );
        assert_ne!(g, ranges, "clipping moves the limits");
    }
}

#[test]
fn causal_mask_is_background_and_out_of_the_statistics() {
    let Some(e) = engine() else { return };
    let mut data = random(1, 1, 96, 128, 5);
    // Above the diagonal: huge values that would dominate the scale if they were counted.
    for q in 0..96 {
        for k in 0..128 {
            if k > q + 32 {
                data[[0, 0, q, k]] = 1000.0;
            }
        }
    }
    let src = ArraySource::from_f32("causal", &data);
    let causal = PoolOptions {
        row_norm: false,
        causal: Causal::On,
        ..Default::default()
    };
    check_pooling(&e, "causal", &src, None, causal);
    check_pooling(&e, "causal-pooled", &src, Some(40), causal);
    let fig = e
        .render(
            &src,
            &RenderOptions {
                causal: Causal::On,
                ..Default::default()
            },
        )
        .unwrap();
    assert!(
        fig.stats[0].max < 1.0,
        "masked entries stay out of the statistics"
    );
    // 96 rows of 128 keys at native resolution: row q sees keys 0 ..= q + 32
    let hidden: u32 = (0..96).map(|q| 128 - (q + 33).min(128)).sum();
    assert_eq!(fig.stats[0].empty_pixels, hidden, "empty pixels");
    let cell = fig.plan.layout.cells[0];
    let px = |x: u32, y: u32| &fig.rgba[((y * fig.width + x) * 4) as usize..][..4];
    assert_eq!(
        px(cell.x + 127, cell.y),
        &[255, 255, 255, 255],
        "masked corner is background"
    );
}

#[test]
fn blocks_that_split_bins_resume_exactly() {
    let Some(mut e) = engine() else { return };
    // 3000-byte chunks: about 6 rows of 130 f32 keys, so pooled rows (5 input rows each) and
    // heads straddle chunk boundaries.
    e.chunk_bytes = 3000;
    let src = ArraySource::from_f32("chunked", &random(2, 2, 101, 130, 6));
    check_pooling(&e, "chunked", &src, Some(20), PoolOptions::default());
    let src = ArraySource::from_f32_as("chunked-f16", &random(1, 3, 101, 131, 7), DType::F16);
    check_pooling(&e, "chunked-f16", &src, Some(20), PoolOptions::default());
}

/// A chunk target below one row still takes a row per chunk (the binding allows it): rows
/// longer than the target pool exactly, as they did when the target was larger.
#[test]
fn rows_longer_than_the_chunk_target_pool() {
    let Some(mut e) = engine() else { return };
    // 300 f32 keys: 1200-byte rows against a 256-byte target.
    e.chunk_bytes = 256;
    let src = ArraySource::from_f32("long-rows", &random(1, 2, 9, 300, 11));
    check_pooling(&e, "long-rows", &src, Some(4), PoolOptions::default());
}

/// Export copies the cells drawn 1:1 straight into its target (`compose::copy`) rather than
/// drawing them: the same bytes as drawing them. Cases: 128-px cells (rows of 512 bytes) and
/// native 256-px ones of 256-token heads, one with a NaN (a bad pixel still has a colour); the
/// same heads causal, at both sizes (empty pixels, which the copy leaves transparent and the
/// background drawn under it fills); 100-px cells (rows the copy alignment refuses: drawn).
#[test]
fn copied_cells_export_the_bytes_of_drawn_ones() {
    let Some(mut e) = engine() else { return };
    let mut data = random(2, 2, 256, 256, 21);
    data[[1, 0, 7, 9]] = f32::NAN;
    let mut causal = data.clone();
    for ((_, _, q, k), v) in causal.indexed_iter_mut() {
        if k > q {
            *v = 0.0;
        }
    }
    let cases = [
        ("dense", &data, Some(128), Causal::Auto),
        ("native", &data, None, Causal::Auto),
        ("causal", &causal, Some(128), Causal::On),
        ("native-causal", &causal, None, Causal::On),
        ("unaligned", &data, Some(100), Causal::Auto),
    ];
    for (name, data, cell, causal) in cases {
        let src = ArraySource::from_f32(name, data);
        let options = RenderOptions {
            cell,
            causal,
            ..Default::default()
        };
        e.copy_cells = true;
        let copied = e.render(&src, &options).unwrap();
        let empty = copied.stats.iter().all(|s| s.empty_pixels > 0);
        assert_eq!(
            empty,
            causal == Causal::On,
            "{name}: empty pixels in every cell"
        );
        e.copy_cells = false;
        let drawn = e.render(&src, &options).unwrap();
        assert_same_figure(name, &copied, &drawn);
    }
}

/// A figure past the texture limit copies its cells tile by tile: each copy clipped to the
/// tile it meets (97-pixel tiles cut every 128-pixel cell somewhere, rows and columns), and a
/// causal head's empty pixels given the background under the copy, with the same bytes as the
/// figure drawn in one piece with no copy.
#[test]
fn tiled_exports_copy_cells_to_the_bytes_of_drawn_ones() {
    let Some(mut e) = engine() else { return };
    let mut causal = structured(2, 3, 128, 128);
    for ((_, _, q, k), v) in causal.indexed_iter_mut() {
        if k > q {
            *v = 0.0;
        }
    }
    for (name, data) in [("tiles", structured(2, 3, 128, 128)), ("causal", causal)] {
        let src = ArraySource::from_f32(name, &data);
        let options = RenderOptions {
            cell: Some(128),
            title: Some("Tiles".into()),
            theme: attnviz::figure::layout::Theme::DARK,
            causal: if name == "causal" {
                Causal::On
            } else {
                Causal::Off
            },
            ..Default::default()
        };
        e.copy_cells = false;
        e.tile_limit = 8192;
        let drawn = e.render(&src, &options).unwrap();
        let empty = drawn.stats.iter().all(|s| s.empty_pixels > 0);
        assert_eq!(
            empty,
            name == "causal",
            "{name}: empty pixels in every cell"
        );
        e.copy_cells = true;
        e.tile_limit = 97;
        let tiled = e.render(&src, &options).unwrap();
        assert!(drawn.width > 97 * 3 && drawn.height > 97 * 2);
        assert_same_figure(name, &tiled, &drawn);
        // Streamed band by band (as `attnviz render` encodes its PNG): the same rows, in order.
        assert_same_figure(name, &streamed(&e, &src, &options), &drawn);
    }
}

/// `Engine::render_into`'s figure with the rows it handed over put back in place, once it is
/// checked that none were in the figure and that the size was told first.
fn streamed(e: &Engine, src: &ArraySource, options: &RenderOptions) -> attnviz::Figure {
    let mut rows = Rows::default();
    let mut figure = e.render_into(src, options, &mut rows).unwrap();
    assert!(figure.rgba.is_empty());
    assert_eq!(rows.size, (figure.width, figure.height), "size told");
    figure.rgba = rows.rgba;
    figure
}

/// Rows handed over by `Engine::render_into`, gathered.
#[derive(Default)]
struct Rows {
    size: (u32, u32),
    rgba: Vec<u8>,
}

impl attnviz::files::RowSink for Rows {
    fn begin(&mut self, width: u32, height: u32) -> attnviz::Result<()> {
        self.size = (width, height);
        Ok(())
    }

    fn row(&mut self, rgba: &[u8]) -> attnviz::Result<()> {
        assert_eq!(
            rgba.len(),
            self.size.0 as usize * 4,
            "a row of the figure's width"
        );
        self.rgba.extend_from_slice(rgba);
        Ok(())
    }
}

/// Two exports of one figure, byte for byte: their sizes, then how many pixels differ.
fn assert_same_figure(name: &str, a: &attnviz::Figure, b: &attnviz::Figure) {
    assert_eq!((a.width, a.height), (b.width, b.height), "{name}: sizes");
    let differing = a
        .rgba
        .chunks(4)
        .zip(b.rgba.chunks(4))
        .filter(|(x, y)| x != y)
        .count();
    assert_eq!(differing, 0, "{name}: pixels differing");
}

/// The composed figure equals the CPU drawing of the GPU's own colours within ±1 per channel,
/// and the CPU renderer end to end within one LUT step on cells.
#[test]
fn figure_matches_cpu_compositor() {
    let Some(e) = engine() else { return };
    let src = ArraySource::from_f32("figure", &structured(2, 3, 64, 96));
    for norm in [Norm::Head, Norm::Global] {
        let options = RenderOptions {
            norm,
            cell: Some(150),
            ..Default::default()
        };
        let fig = e.render(&src, &options).unwrap();
        // The figure's own plan: its layout has the colorbar, placed once the ranges were known.
        let plan = &fig.plan;
        let pooled = e.pool(&src, &plan.cells, plan.geometry, plan.pool).unwrap();
        let colors: Vec<u32> = e
            .colorize(&pooled, &fig.ranges, options.reduce, options.colormap)
            .unwrap()
            .concat();
        let quads = FigureQuads::new(&plan.layout, &plan.geometry, &[(0, plan.cells.len())]);
        let expected = cpu::draw_quads(&quads, &[colors], options.colormap);
        assert_eq!((fig.width, fig.height), (quads.width, quads.height));
        let worst = fig
            .rgba
            .iter()
            .zip(&expected)
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        assert!(
            worst <= 1,
            "figure differs from the CPU compositor by {worst}"
        );

        assert_matches_the_cpu_renderer(&src, &options, &fig);
    }
}

/// `fig` (the GPU's) equals the CPU renderer's figure of `src` within 1 in every channel: the
/// two round the colormap's lookup apart by at most that.
fn assert_matches_the_cpu_renderer(
    src: &ArraySource,
    options: &RenderOptions,
    fig: &attnviz::Figure,
) {
    let cpu_fig = attnviz::render_cpu(src, options).unwrap();
    assert_eq!(cpu_fig.rgba.len(), fig.rgba.len());
    let differing = fig
        .rgba
        .chunks(4)
        .zip(cpu_fig.rgba.chunks(4))
        .filter(|(a, b)| a.iter().zip(b.iter()).any(|(x, y)| x.abs_diff(*y) > 1))
        .count();
    assert_eq!(
        differing, 0,
        "GPU and CPU renderers differ in {differing} pixels"
    );
}

/// A figure of several read-back bands (8 MiB each: `BAND_BYTES` in src/compose/target.rs) at
/// the default tile limit: each band is drawn and copied while the one before is handed out,
/// and the third band reuses the first one's read-back. The rows equal the CPU compositor's.
#[test]
fn figures_of_several_read_back_bands_match_the_cpu_compositor() {
    let Some(e) = engine() else { return };
    let src = ArraySource::from_f32("bands", &structured(2, 2, 64, 96));
    let options = RenderOptions {
        cell: Some(1100),
        ..Default::default()
    };
    let fig = e.render(&src, &options).unwrap();
    let padded = (fig.width as usize * 4).next_multiple_of(256);
    let bands = (fig.height as usize).div_ceil((8 << 20) / padded);
    assert!(
        bands >= 3,
        "{bands} bands of a {}x{} figure",
        fig.width,
        fig.height
    );
    assert_same_figure("bands", &streamed(&e, &src, &options), &fig);
    assert_matches_the_cpu_renderer(&src, &options, &fig);
}

#[test]
fn causal_masking_is_detected_from_an_all_zero_upper_triangle() {
    let Some(e) = engine() else { return };
    let auto = PoolOptions {
        row_norm: false,
        causal: Causal::Auto,
        ..Default::default()
    };
    let on = PoolOptions {
        row_norm: false,
        causal: Causal::On,
        ..Default::default()
    };
    let off = PoolOptions::default();
    let mut data = random(1, 2, 80, 100, 8);
    // Q < K: the diagonal is bottom-right aligned, row q sees keys 0..=q + 20.
    for h in 0..2 {
        for q in 0..80 {
            for k in q + 21..100 {
                data[[0, h, q, k]] = 0.0;
            }
        }
    }
    let src = ArraySource::from_f32("causal", &data);
    let cells = [(0, 0), (0, 1)];
    for cell in [None, Some(30)] {
        check_pooling(&e, "auto-causal", &src, cell, auto);
        let g = CellGeometry::new(80, 100, cell).unwrap();
        let detected = e.pool(&src, &cells, g, auto).unwrap();
        assert!(detected.causal);
        let masked = e.pool(&src, &cells, g, on).unwrap();
        assert_eq!(
            detected.stats, masked.stats,
            "detected masking equals explicit masking"
        );
    }
    // One non-zero value above the diagonal in one head: not causal, and pooling equals Off.
    data[[0, 1, 5, 90]] = 1e-9;
    let src = ArraySource::from_f32("not-causal", &data);
    for cell in [None, Some(30)] {
        check_pooling(&e, "auto-not-causal", &src, cell, auto);
        let g = CellGeometry::new(80, 100, cell).unwrap();
        let a = e.pool(&src, &cells, g, auto).unwrap();
        assert!(!a.causal);
        let b = e.pool(&src, &cells, g, off).unwrap();
        assert_eq!(
            a.read_accums(&e.gpu).unwrap(),
            b.read_accums(&e.gpu).unwrap()
        );
        assert_eq!(a.stats, b.stats);
    }
    // A single query row has nothing above its diagonal: never detected as causal.
    let src = ArraySource::from_f32("one-row", &random(1, 1, 1, 50, 9));
    check_pooling(&e, "one-row", &src, None, auto);
}

/// `Causal::Auto` decided on the host: a value above the diagonal in the first row of a push
/// (`Ingest::upper_seen`) settles it for every head, and later dispatches pool as `Off` does,
/// while the chunks pooled before it set their zeros aside and `finish` folds them back. Head
/// 0 causal, head 1 not, with its value in row 0: chunks of a few rows each, so head 0's go
/// with zeros set aside and head 1's without; every accumulator equals `Off`'s and the CPU
/// twin's. Then head 1 first (the other order of cells): no chunk sets zeros aside.
#[test]
fn an_upper_entry_seen_on_upload_settles_auto_causal_for_every_head() {
    let Some(mut e) = engine() else { return };
    e.chunk_bytes = 2000;
    let auto = PoolOptions {
        causal: Causal::Auto,
        ..Default::default()
    };
    let mut data = random(1, 2, 80, 100, 8);
    for h in 0..2 {
        for q in 0..80 {
            for k in q + 21..100 {
                data[[0, h, q, k]] = 0.0;
            }
        }
    }
    data[[0, 1, 0, 90]] = 1e-3;
    for dtype in [DType::F32, DType::F16] {
        let src = ArraySource::from_f32_as("upper-on-upload", &data, dtype);
        for cells in [[(0, 0), (0, 1)], [(0, 1), (0, 0)]] {
            for cell in [None, Some(30)] {
                let g = CellGeometry::new(80, 100, cell).unwrap();
                let a = e.pool(&src, &cells, g, auto).unwrap();
                assert!(!a.causal, "{} {cells:?} {cell:?}", dtype.name());
                let b = e.pool(&src, &cells, g, PoolOptions::default()).unwrap();
                let cpu = cpu::pool_cells(&src, &cells, g, auto).unwrap();
                let a = a.read_accums(&e.gpu).unwrap();
                assert_eq!(a, b.read_accums(&e.gpu).unwrap(), "{cells:?} {cell:?}");
                for (x, y) in a.iter().zip(&cpu) {
                    assert_eq!(x, &y.accum, "{cells:?} {cell:?} against the CPU twin");
                }
            }
        }
    }
}

/// The pool shader reads 16-byte words (4 f32 or 8 halves) and picks each bin's keys out of
/// them: rows of odd length in small chunks start at every alignment inside a word, bins are
/// narrower and wider than a word (read 1 to 8 words a row, unrolled: `PoolKernel::Fixed`),
/// and every pooling mode is specialized into its own pipeline.
#[test]
fn every_mode_at_every_word_alignment() {
    let Some(mut e) = engine() else { return };
    e.chunk_bytes = 1000;
    let mut data = random(1, 2, 37, 53, 10);
    // Head 0 causal (exact zeros above the diagonal) with a non-finite entry below it.
    for q in 0..37 {
        for k in q + 17..53 {
            data[[0, 0, q, k]] = 0.0;
        }
    }
    data[[0, 0, 20, 3]] = f32::NAN;
    // (53-key rows are off words: every cell takes `pool` with a fixed width; wider bins loop,
    // `huge_bins_pool_every_entry`)
    let cells = [None, Some(7), Some(24), Some(5), Some(3), Some(4), Some(2)];
    let mut widths: Vec<_> = [DType::F32, DType::F16]
        .into_iter()
        .flat_map(|d| {
            cells.map(|cell| {
                let w = CellGeometry::new(37, 53, cell).unwrap().pooled_w;
                PoolKernel::choose(53, w, d, false)
            })
        })
        .collect();
    widths.sort_by_key(|k| format!("{k:?}"));
    widths.dedup();
    assert_eq!(
        widths,
        [1, 2, 3, 4, 5, 6, 8].map(PoolKernel::Fixed),
        "the cells' widths of `pool`"
    );
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        let src = ArraySource::from_f32_as("words", &data, dtype);
        for options in pool_modes() {
            for cell in cells {
                let name = format!("words-{}-{options:?}-{cell:?}", dtype.name());
                check_pooling(&e, &name, &src, cell, options);
            }
        }
    }
}

/// Bins of 1, 2 and 4 whole 16-byte words take the pool kernel's lane variants
/// (`pool_lanes1`, `2`, `4`: several pixels an invocation, every word read once), other bins
/// on words a fixed number of their own words: the same
/// accumulators, bit for bit, as the CPU (and so as the general kernel), in every mode and
/// dtype, with Q ≠ K, a causal head and a NaN, rows split across chunks and bins across pieces.
#[test]
fn bins_of_whole_words_pool_exactly() {
    let Some(mut e) = engine() else { return };
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        // one 16-byte word is 4 f32 keys or 8 halves
        let keys = 64 * 4 / dtype.size();
        let mut data = random(1, 2, 37, keys, 11);
        for q in 0..37 {
            for k in q + keys - 37 + 1..keys {
                data[[0, 0, q, k]] = 0.0;
            }
        }
        data[[0, 1, 30, 9]] = f32::NAN;
        let src = ArraySource::from_f32_as("lanes", &data, dtype);
        // rows on words, a few rows a chunk
        e.chunk_bytes = (keys * dtype.size() * 5) as u64;
        use PoolKernel::{Fixed, Keys, Lanes};
        // and bins of 8 words, and of half a word, read as their own words from theirs; and
        // bins of one key (the head at its own width: `pool_keys`, the pixels of a word an
        // invocation)
        for (cell, kernel) in [
            (16, Lanes(1)),
            (8, Lanes(2)),
            (4, Lanes(4)),
            (2, Fixed(8)),
            (32, Fixed(1)),
            (keys as u32, Keys),
        ] {
            let geometry = CellGeometry::new(37, keys, Some(cell)).unwrap();
            assert_eq!(
                PoolKernel::choose(keys, geometry.pooled_w, dtype, true),
                kernel,
                "{keys} keys into {cell} px"
            );
            for options in pool_modes() {
                let name = format!("{kernel:?}-{}-{options:?}", dtype.name());
                check_pooling(&e, &name, &src, Some(cell), options);
            }
        }
    }
}

/// Bins of one key and several rows (`pool_keys` into a geometry of the head's own width and
/// a third of its rows, as a region the viewer pools may be), chunks of 7 rows so that most
/// bins of 9 or 10 rows span two pieces (resumed from the accumulator, not started afresh), a
/// NaN and an infinity: the same accumulators, bit for bit, as the CPU, in every mode and
/// dtype.
#[test]
fn bins_of_one_key_pool_exactly() {
    let Some(mut e) = engine() else { return };
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        let keys = 128 / dtype.size();
        let mut data = random(1, 2, 301, keys, 19);
        data[[0, 0, 200, 5]] = f32::NAN;
        data[[0, 1, 17, keys - 1]] = f32::INFINITY;
        let src = ArraySource::from_f32_as("keys", &data, dtype);
        e.chunk_bytes = (keys * dtype.size() * 7) as u64;
        let geometry = CellGeometry {
            display_w: keys as u32,
            display_h: 32,
            pooled_w: keys as u32,
            pooled_h: 32,
        };
        assert_eq!(
            PoolKernel::choose(keys, geometry.pooled_w, dtype, true),
            PoolKernel::Keys
        );
        for options in pool_modes() {
            let name = format!("keys-{}-{options:?}", dtype.name());
            check_pooling_into(&e, &name, &src, geometry, options);
        }
    }
}

#[test]
fn huge_bins_pool_every_entry() {
    let Some(e) = engine() else { return };
    // 256 rows × 65536 keys into one 8×1 pixel strip: each bin is 256 rows × 8192 keys, far
    // more loop iterations than one invocation may run in one dispatch (llvmpipe stops at
    // 65535), so pieces are cut to fit. Exact against the CPU.
    let data = random(1, 1, 256, 65536, 77);
    let src = ArraySource::from_f32_as("huge-bins", &data, DType::F16);
    let s = src.shape();
    let geometry = CellGeometry::new(s.queries, s.keys, Some(8)).unwrap();
    assert!(geometry.pooled_w <= 8 && geometry.pooled_h <= 8);
    assert_eq!(
        PoolKernel::choose(s.keys, geometry.pooled_w, DType::F16, false),
        PoolKernel::Loop
    );
    let options = PoolOptions::default();
    let gpu = e.pool(&src, &[(0, 0)], geometry, options).unwrap();
    let cpu = cpu::pool_cells(&src, &[(0, 0)], geometry, options).unwrap();
    let g = &gpu.read_accums(&e.gpu).unwrap()[0];
    for (i, (a, b)) in g.iter().zip(&cpu[0].accum).enumerate() {
        assert_eq!(a.count_bad, b.count_bad, "pixel {i}: {a:?} vs {b:?}");
        assert_eq!(
            (a.max.to_bits(), a.min.to_bits(), a.sum.to_bits()),
            (b.max.to_bits(), b.min.to_bits(), b.sum.to_bits()),
            "pixel {i}"
        );
    }
}
