//! Shared test helpers.
#![allow(dead_code)]

use attnviz::figure::layout::Layout;
use attnviz::pool::{Causal, PoolOptions};
use attnviz::{Engine, Gpu};
use ndarray::Array4;

/// The labels of the passes `gpu` ran since its pass times were last read (with
/// `Gpu::time_passes` on), in the order they first ran: which path a run took.
pub fn passes_run(gpu: &Gpu) -> Vec<&'static str> {
    gpu.pass_times()
        .unwrap()
        .labels
        .iter()
        .map(|t| t.label)
        .collect()
}

/// The GPU engine. A missing adapter fails the test, naming the command that installs lavapipe
/// (`./test` installs it itself). Only an explicit `ATTNVIZ_ALLOW_NO_GPU=1` (never set by
/// `./test` or CI) turns it into a skip.
///
/// Its Q/K row kernel takes the rows a lane its budget holds whatever the head's length
/// (`Gpu::fit_rows_to_heads` off): the tests' heads are short, and those that compare budgets
/// would otherwise all run one row a lane. `qk_tiled::short_heads_take_fewer_rows_a_lane`
/// checks the default; every row count gives the same bits.
pub fn engine() -> Option<Engine> {
    match Gpu::new() {
        Ok(mut gpu) => {
            gpu.fit_rows_to_heads = false;
            Some(Engine::new(gpu))
        }
        Err(e) if std::env::var("ATTNVIZ_ALLOW_NO_GPU").as_deref() == Ok("1") => {
            eprintln!("skipping GPU test: {e} (ATTNVIZ_ALLOW_NO_GPU=1)");
            None
        }
        Err(e) => panic!(
            "{e}\nInstall a Vulkan driver (Mesa's lavapipe without a GPU): \
             apt-get install -y mesa-vulkan-drivers libvulkan1, or run ./test, which installs it. \
             ATTNVIZ_ALLOW_NO_GPU=1 skips the GPU tests instead."
        ),
    }
}

/// Deterministic pseudo-random values in [0, 1).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// Random attention-like values: mostly small, a few spikes.
pub fn random(l: usize, h: usize, q: usize, k: usize, seed: u64) -> Array4<f32> {
    let mut rng = Rng::new(seed);
    Array4::from_shape_fn((l, h, q, k), |_| {
        let v = rng.next_f32();
        if v > 0.995 {
            1.0 - v * 0.1
        } else {
            v * v * 0.05
        }
    })
}

/// Structured heads: a diagonal, a sink column and vertical stripes, per head a different mix.
pub fn structured(l: usize, h: usize, q: usize, k: usize) -> Array4<f32> {
    Array4::from_shape_fn((l, h, q, k), |(li, hi, qi, ki)| {
        let mut v = 0.001 * ((qi * 7 + ki * 3 + li + hi) % 11) as f32;
        if ki == 0 {
            v += 0.6;
        }
        if (qi * k) / q == ki {
            v += 0.3 + 0.1 * hi as f32;
        }
        if ki % (5 + hi) == 0 {
            v += 0.05 * (li + 1) as f32;
        }
        v
    })
}

/// LUT index of a packed colour, for every index whose colour matches (tables may repeat).
pub fn indices_of(color: u32, lut: &[u32; 256]) -> Vec<usize> {
    (0..256).filter(|&i| lut[i] == color).collect()
}

/// Whether packed colours `a` and `b` are both entries of `lut` at most one index apart.
pub fn within_a_lut_step(a: u32, b: u32, lut: &[u32; 256]) -> bool {
    let ib = indices_of(b, lut);
    indices_of(a, lut)
        .iter()
        .any(|&i| ib.iter().any(|&j| i.abs_diff(j) <= 1))
}

/// `a` and `b` equal, or within `ulps` units in the last place of the larger.
pub fn ulp_close(a: f32, b: f32, ulps: u32) -> bool {
    a.to_bits() == b.to_bits() || (a - b).abs() <= ulps as f32 * f32::EPSILON * a.abs().max(b.abs())
}

/// Two figures of one plan (GPU and CPU), pixel for pixel: equal; or both colours of
/// `colormap`'s table one step apart; or every channel within 1 (a label's or tick's coverage
/// blend); in at most 1% of the pixels together (a bias, not rounding, would move far more).
/// Why: Vulkan lets a shader's division be off by 2.5 ULP (SPIR-V's precision table) and
/// leaves blending's rounding to the device; NVIDIA's driver uses both freedoms where lavapipe
/// rounds correctly, so a normalized value within that of a step boundary takes the
/// neighbouring entry, and a text edge's grey can be one unit off (both seen on an H200,
/// 2026-12-04). Returns how many pixels differed.
pub fn assert_figures_within_a_step(
    gpu: &[u8],
    cpu: &[u8],
    colormap: attnviz::Colormap,
    what: &str,
) -> usize {
    assert_eq!(gpu.len(), cpu.len(), "{what}: figure sizes differ");
    let lut = colormap.packed();
    let mut off = 0;
    for (i, (g, c)) in gpu.chunks_exact(4).zip(cpu.chunks_exact(4)).enumerate() {
        if g == c {
            continue;
        }
        let word = |p: &[u8]| u32::from_le_bytes([p[0], p[1], p[2], p[3]]);
        let step = within_a_lut_step(word(g), word(c), &lut);
        let blend = g.iter().zip(c).all(|(a, b)| a.abs_diff(*b) <= 1);
        assert!(
            step || blend,
            "{what}: pixel {i}: GPU {g:?} and CPU {c:?} are neither one {colormap:?} step nor \
             one unit per channel apart"
        );
        off += 1;
    }
    let pixels = gpu.len() / 4;
    assert!(
        off * 100 <= pixels,
        "{what}: {off} of {pixels} pixels differ (at most 1%)"
    );
    if off > 0 {
        eprintln!("{what}: {off} of {pixels} pixels one LUT step or one unit apart");
    }
    off
}

/// Every pooling mode the pool pass specializes a pipeline for: row norm off and on, each
/// causal option (the diagonal where the head puts it).
pub fn pool_modes() -> impl Iterator<Item = PoolOptions> {
    [false, true].into_iter().flat_map(|row_norm| {
        [Causal::Off, Causal::On, Causal::Auto]
            .into_iter()
            .map(move |causal| PoolOptions {
                row_norm,
                causal,
                diagonal: None,
            })
    })
}

/// Every label of `layout` as its text, in layout order: what the figure's words say.
pub fn label_texts(layout: &Layout) -> Vec<String> {
    layout.labels.iter().map(|l| l.text.string()).collect()
}

/// A synthetic model whose heads carry one planted kind each (`attnviz synth --pattern kinds`:
/// in turn along the heads, shifted by one each layer), f32, not causal: heads whose pattern
/// labels are known ([`attnviz::source::Synth::planted`]).
pub fn kinds(seq: usize, layers: usize, heads: usize, seed: u64) -> attnviz::source::Synth {
    use attnviz::source::{DType, Pattern, Synth, SynthSpec};
    Synth::new(SynthSpec {
        seq,
        layers,
        heads,
        dtype: DType::F32,
        seed,
        causal: false,
        pattern: Pattern::Kinds,
    })
    .unwrap()
}

/// The largest difference between two images' bytes (every channel): composed figures of the
/// GPU and the CPU twin may differ by 1 (blending rounds).
pub fn worst_byte_difference(a: &[u8], b: &[u8]) -> u8 {
    a.iter()
        .zip(b)
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0)
}

/// The cells `layout` draws (a ranked figure places the others empty), in reading order: rows,
/// then columns.
pub fn drawn_in_reading_order(layout: &Layout) -> Vec<usize> {
    let cells = &layout.cells;
    let mut drawn: Vec<usize> = (0..cells.len()).filter(|&i| cells[i].is_drawn()).collect();
    drawn.sort_by_key(|&i| (cells[i].y, cells[i].x));
    drawn
}

/// Asserts that each of `drawn` (indices into `cells`, 0-based (layer, head)) is labelled
/// `l = L, h = H` with its own 1-based numbers, as a ranked grid labels its cells.
pub fn assert_labelled_with_their_heads(
    layout: &Layout,
    cells: &[(usize, usize)],
    drawn: &[usize],
) {
    let texts = label_texts(layout);
    for &i in drawn {
        let (l, h) = cells[i];
        let label = format!("l = {}, h = {}", l + 1, h + 1);
        assert!(texts.contains(&label), "{label} in {texts:?}");
    }
}

/// Writes Q and K with a capture's metadata JSON as `attnviz.capture` does.
pub fn write_capture(path: &std::path::Path, q: &Array4<f32>, k: &Array4<f32>, json: &str) {
    use safetensors::tensor::{Dtype, TensorView};
    let bytes = |a: &Array4<f32>| -> Vec<u8> { a.iter().flat_map(|v| v.to_le_bytes()).collect() };
    let (qb, kb) = (bytes(q), bytes(k));
    let tensors = vec![
        (
            "q",
            TensorView::new(Dtype::F32, q.shape().to_vec(), &qb).unwrap(),
        ),
        (
            "k",
            TensorView::new(Dtype::F32, k.shape().to_vec(), &kb).unwrap(),
        ),
    ];
    let metadata = std::collections::HashMap::from([("attnviz".to_string(), json.to_string())]);
    safetensors::serialize_to_file(tensors, Some(metadata), path).unwrap();
}

/// A capture's metadata for two causal layers with bidirectional `spans` (Gemma-3's images,
/// PaliGemma's prefix): layer 0 with a scale of its own and a sliding window of `window` keys,
/// layer 1 softcapped with a sink logit per query head.
pub fn spans_meta(
    heads: usize,
    window: Option<usize>,
    spans: &[(usize, usize)],
) -> attnviz::source::qk_meta::CaptureMeta {
    use attnviz::source::qk_meta::{CaptureMeta, LayerAttention};
    let spans = Some(spans.to_vec());
    CaptureMeta {
        layers: vec![
            LayerAttention {
                index: Some(0),
                scale: Some(0.3),
                causal: Some(true),
                sliding_window: window,
                bidirectional_spans: spans.clone(),
                ..Default::default()
            },
            LayerAttention {
                index: Some(1),
                causal: Some(true),
                softcap: Some(2.5),
                sinks: Some((0..heads).map(|h| 1.5 - h as f32).collect()),
                bidirectional_spans: spans,
                ..Default::default()
            },
        ],
        ..Default::default()
    }
}

/// Each cell's pixels from the GPU against the CPU twin's: equal counts, and extremes and
/// sums within 1e-5 per entry (the same values folded in another order); empty pixels' extremes
/// are the producer's initial values.
pub fn assert_accums_close(
    what: &str,
    gpu: &[Vec<attnviz::pool::accum::Accum>],
    cpu: &[Vec<attnviz::pool::accum::Accum>],
) {
    for (cell, (x, y)) in gpu.iter().zip(cpu).enumerate() {
        for (i, (p, q)) in x.iter().zip(y).enumerate() {
            assert_eq!(p.count(), q.count(), "{what}: cell {cell} pixel {i} count");
            if p.count() == 0 {
                continue;
            }
            let n = p.count() as f32;
            let ok = (p.max - q.max).abs() <= 1e-5
                && (p.min - q.min).abs() <= 1e-5
                && (p.sum - q.sum).abs() <= 1e-5 * n;
            assert!(ok, "{what}: cell {cell} pixel {i}: {p:?} vs {q:?}");
        }
    }
}

/// Every probability of query head (`layer`, `head`) of `src` as the GPU computes it, each
/// entry checked by `check(row, key, value)` (`key` an index into K), and the largest
/// difference from the f64 reference's.
pub fn qk_probabilities_checked(
    e: &Engine,
    src: &attnviz::source::qk::QkSource,
    layer: usize,
    head: usize,
    check: impl Fn(usize, usize, f32),
) -> (Vec<f32>, f32) {
    let s = attnviz::AttentionSource::shape(src);
    let rows = 0..s.queries;
    let gpu = e.qk_probabilities(src, layer, head, rows.clone()).unwrap();
    let mut cpu = vec![0f32; s.queries * s.keys];
    src.probabilities_cpu(layer, head, rows, &mut cpu).unwrap();
    let mut worst = 0f32;
    for (i, (g, r)) in gpu.iter().zip(&cpu).enumerate() {
        check(i / s.keys, src.out_keys().start + i % s.keys, *g);
        worst = worst.max((g - r).abs());
    }
    (gpu, worst)
}

/// Q or K of `l` layers, `h` heads, `n` rows of `d` values, uniform in ±1.5 from `seed`.
pub fn qk_values(l: usize, h: usize, n: usize, d: usize, seed: u64) -> Array4<f32> {
    let mut rng = Rng::new(seed);
    Array4::from_shape_fn((l, h, n, d), |_| (rng.next_f32() * 2.0 - 1.0) * 1.5)
}
