//! The one-pass pooled path from Q and K (src/pool/qk/tiled/, shaders/qk_pool.wgsl) against the
//! two-pass path that stores each block of probabilities and pools it (the same attention,
//! materialized by `GpuRows`, pooled as a stored tensor), and against the f64 CPU reference.
//!
//! Tolerances, and why: the one-pass path gets a bin's largest and smallest probability as
//! exp2(max score − lse) and exp2(min score − lse), with the same scores but an lse summed in
//! another order, so they may differ from the stored path in the last bits of exp (allowed:
//! 4e-6 relative); the bin's sum is exp2(max − lse) · Σ exp2(s − max), the same sum in another
//! order (allowed: 1e-5 relative). Counts (which entries are masked) are exact. Against the f64
//! reference: 1e-5 per probability, as for the materialized probabilities.

mod common;

use attnviz::engine::qk_rows::GpuRows;
use attnviz::gpu::QkBudgets;
use attnviz::pool::accum::Accum;
use attnviz::pool::geometry::CellGeometry;
use attnviz::pool::qk::row_kernel_shape;
use attnviz::pool::{Causal, PoolOptions};
use attnviz::source::qk::{QkOptions, QkSource, Values};
use attnviz::source::ArraySource;
use attnviz::{AttentionSource, DType, Engine};
use common::Rng;
use ndarray::Array4;

/// The engine these tests need: the one pass at every pooled width. (Columns of one or two
/// keys are otherwise pooled from stored probabilities, `Gpu::qk_store_keys`; that path has
/// its own test, `narrow_columns_pool_from_stored_probabilities_as_the_one_pass_does`.)
fn engine() -> Option<Engine> {
    let mut e = common::engine()?;
    e.gpu.qk_store_keys = 0;
    Some(e)
}

fn tensor(name: &str, h: usize, n: usize, d: usize, seed: u64, dtype: DType) -> Box<ArraySource> {
    let mut rng = Rng::new(seed);
    // Gain 1.5·√(64/d): scores spread over several nats whatever d, peaked rows and flat ones.
    let gain = 1.5 * (64.0 / d as f32).sqrt().sqrt();
    let a = Array4::from_shape_fn((1, h, n, d), |_| (rng.next_f32() * 2.0 - 1.0) * gain);
    Box::new(ArraySource::from_f32_as(name, &a, dtype))
}

struct Case {
    name: &'static str,
    heads: usize,
    kv_heads: usize,
    nq: usize,
    nk: usize,
    d: usize,
    dtype: DType,
    causal: bool,
    queries: Option<std::ops::Range<usize>>,
    cell: u32,
    row_norm: bool,
}

fn case(name: &'static str, nq: usize, nk: usize, d: usize, causal: bool, cell: u32) -> Case {
    Case {
        name,
        heads: 2,
        kv_heads: 1,
        nq,
        nk,
        d,
        dtype: DType::F32,
        causal,
        queries: None,
        cell,
        row_norm: false,
    }
}

fn source(c: &Case) -> QkSource {
    QkSource::new(
        tensor("q", c.heads, c.nq, c.d, 31 + c.d as u64, c.dtype),
        tensor("k", c.kv_heads, c.nk, c.d, 32 + c.d as u64, c.dtype),
        &QkOptions {
            causal: c.causal,
            queries: c.queries.clone(),
            ..Default::default()
        },
    )
    .unwrap()
}

fn cases() -> Vec<Case> {
    let mut v = vec![
        // Head lengths that are not multiples of the 64 × 64 tile, every supported kind of
        // head dimension (staged 8 or 4 vec4s at a time, padded), bins of 4 or uneven bins.
        case("d32", 200, 200, 32, false, 50),
        case("d64-causal", 200, 200, 64, true, 50),
        case("d80-causal-uneven-bins", 200, 200, 80, true, 23),
        case("d128", 130, 130, 128, false, 40),
        case("d256-causal", 200, 200, 256, true, 64),
        case("d30-padded", 70, 90, 30, false, 16),
        // Q shorter than K (a KV-cache suffix): tiles crossing a bottom-right diagonal, rows
        // that see all keys of early tiles and none of late ones.
        case("suffix-causal", 150, 330, 64, true, 64),
        // One pixel per entry.
        case("native-causal", 100, 100, 16, true, 100),
        // Several key segments (8192 keys per dispatch), their states carried over.
        case("long-keys-causal", 70, 9000, 8, true, 64),
        case("long-keys", 3, 9000, 8, false, 64),
    ];
    v.push(Case {
        name: "gqa-8-to-1-causal",
        heads: 8,
        kv_heads: 1,
        ..case("", 130, 130, 64, true, 32)
    });
    // Two key heads in a batch, keys not a multiple of 16: each key head's K starts at its
    // padded stride (the tiled kernel read the second at an unpadded one until 2026-12-04,
    // wrong scores for every GQA head of d = 128 on GPUs).
    v.push(Case {
        name: "gqa-4-to-2-d128",
        heads: 4,
        kv_heads: 2,
        ..case("", 130, 130, 128, false, 32)
    });
    v.push(Case {
        name: "query-slice-causal",
        queries: Some(70..190),
        ..case("", 260, 260, 32, true, 30)
    });
    v.push(Case {
        name: "f16-row-norm",
        dtype: DType::F16,
        row_norm: true,
        ..case("", 150, 150, 64, true, 50)
    });
    v.push(Case {
        name: "bf16",
        dtype: DType::BF16,
        ..case("", 150, 150, 64, false, 50)
    });
    v.push(Case {
        name: "row-norm",
        row_norm: true,
        ..case("", 200, 200, 32, false, 50)
    });
    v
}

/// `e` chunked at `chunk` bytes (uploads and states), and the cases it then runs: 64 MiB takes
/// whole heads, 160 kB row blocks of 64 rows and batches of a few heads, and skips the cases
/// of long keys (whose chunks of 64 rows would be many).
fn chunked(e: &mut Engine, chunk: u64) -> Vec<Case> {
    e.chunk_bytes = chunk;
    e.qk_state_bytes = chunk;
    cases()
        .into_iter()
        .filter(|c| chunk == 64 << 20 || c.nk <= 1000)
        .collect()
}

/// Every head of a case's layer pooled: the source, its cells, the cell's geometry and the
/// options of the case's mask and norm.
struct Pooling {
    src: QkSource,
    cells: Vec<(usize, usize)>,
    geometry: CellGeometry,
    options: PoolOptions,
}

impl Pooling {
    fn of(c: &Case) -> Pooling {
        let src = source(c);
        let s = src.shape();
        let options = PoolOptions {
            row_norm: c.row_norm,
            causal: if c.causal { Causal::On } else { Causal::Off },
            diagonal: Some(src.diagonal()),
        };
        Pooling {
            cells: (0..s.heads).map(|h| (0, h)).collect(),
            geometry: CellGeometry::new(s.queries, s.keys, Some(c.cell)).unwrap(),
            options,
            src,
        }
    }

    /// The accumulators `e` pools `source` into (the case's Q/K source, or what it became).
    fn run(&self, e: &Engine, source: &dyn AttentionSource) -> Vec<Vec<Accum>> {
        let pooled = e.pool(source, &self.cells, self.geometry, self.options);
        pooled.unwrap().read_accums(&e.gpu).unwrap()
    }
}

/// Every accumulator's bits, for the comparisons that must be exact.
fn bits(a: &[Vec<Accum>]) -> Vec<[u32; 4]> {
    a.iter()
        .flatten()
        .map(|p| [p.max.to_bits(), p.min.to_bits(), p.sum.to_bits(), p.count()])
        .collect()
}

/// A stored tensor with the diagonal of the Q/K source it came from.
struct Stored(ArraySource, i64, usize);

impl AttentionSource for Stored {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn shape(&self) -> attnviz::Shape {
        self.0.shape()
    }
    fn dtype(&self) -> DType {
        self.0.dtype()
    }
    fn read_rows(&self, l: usize, h: usize, r: usize, dst: &mut [u8]) -> attnviz::Result<()> {
        self.0.read_rows(l, h, r, dst)
    }
    fn diagonal(&self) -> i64 {
        self.1
    }
    fn first_query(&self) -> usize {
        self.2
    }
}

fn materialize(e: &Engine, src: &QkSource) -> Stored {
    let rows = GpuRows::new(e, src);
    let s = rows.shape();
    let mut bytes = vec![0u8; s.layers * s.heads * s.queries * s.keys * 4];
    for (i, head) in bytes.chunks_mut(s.queries * s.keys * 4).enumerate() {
        rows.read_rows(i / s.heads, i % s.heads, 0, head).unwrap();
    }
    let stored = ArraySource::new("materialized", s, DType::F32, bytes).unwrap();
    Stored(stored, src.diagonal(), src.rows().start)
}

fn close(a: f32, b: f32, rel: f32, abs: f32) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()) + abs
}

/// Compares accumulators pixel by pixel; `rel`/`abs` for the extremes, `sum_rel`/`sum_abs` per
/// counted entry for the sums.
fn compare(what: &str, a: &[Vec<Accum>], b: &[Vec<Accum>], tol: [f32; 4]) {
    let [rel, abs, sum_rel, sum_abs] = tol;
    assert_eq!(a.len(), b.len(), "{what}: cells");
    for (cell, (x, y)) in a.iter().zip(b).enumerate() {
        for (i, (p, q)) in x.iter().zip(y).enumerate() {
            assert_eq!(p.count(), q.count(), "{what}: cell {cell} pixel {i} count");
            assert!(!p.is_bad(), "{what}: cell {cell} pixel {i} bad");
            if p.count() == 0 {
                continue;
            }
            let ok = close(p.max, q.max, rel, abs)
                && close(p.min, q.min, rel, abs)
                && close(p.sum, q.sum, sum_rel, sum_abs * p.count() as f32);
            assert!(ok, "{what}: cell {cell} pixel {i}: {p:?} vs {q:?}");
        }
    }
}

/// Both score kernels: the adapter's choice per head width (the row kernel up to d = 128 on
/// CPU adapters) and the tiled kernel at every width (`Gpu::row_vec4s` 0), which GPUs take at
/// d = 128.
#[test]
fn one_pass_pooling_equals_the_stored_block_path_and_the_f64_reference() {
    let Some(mut e) = engine() else { return };
    let budget = e.gpu.row_vec4s;
    for (chunk, vec4s) in [(64 << 20, budget), (160_000, budget), (64 << 20, 0)] {
        e.gpu.row_vec4s = vec4s;
        for c in chunked(&mut e, chunk) {
            let p = Pooling::of(&c);
            let one_pass = p.run(&e, &p.src);
            let two_pass = p.run(&e, &materialize(&e, &p.src));
            let what = format!("{} (chunk {chunk}, row vec4s {vec4s})", c.name);
            compare(&what, &one_pass, &two_pass, [4e-6, 1e-30, 1e-5, 1e-30]);
            if chunk == 64 << 20 {
                let cpu = attnviz::cpu::pool_cells(&p.src, &p.cells, p.geometry, p.options);
                let cpu = cpu.unwrap();
                let cpu: Vec<Vec<Accum>> = cpu.into_iter().map(|p| p.accum).collect();
                compare(
                    &format!("{what} vs f64"),
                    &one_pass,
                    &cpu,
                    [0.0, 1e-5, 0.0, 1e-5],
                );
            }
        }
    }
    e.gpu.row_vec4s = budget;
}

/// Figures whose pooled columns are one or two keys wide (a short head at its own width or
/// half of it: a whole model at short context) are pooled from stored probabilities
/// (`Gpu::qk_store_keys`, the adapter's default): the stored path ran (its pass stores the
/// probabilities, and no fold ran), and its accumulators are the one pass's within the
/// tolerance above and the f64 reference's within 1e-5. Both kernels' widths, causal, GQA, a
/// query slice, a sliding window with probabilities and with logits, a column of four keys
/// (the one pass's again).
#[test]
fn narrow_columns_pool_from_stored_probabilities_as_the_one_pass_does() {
    let Some(mut e) = common::engine() else {
        return;
    };
    let default = e.gpu.qk_store_keys;
    assert_eq!(default, attnviz::gpu::QK_STORE_KEYS);
    let mut narrow: Vec<(String, Pooling, bool)> = [
        (case("native", 100, 100, 16, false, 100), true),
        (case("native-causal-d128", 90, 90, 128, true, 90), true),
        (case("two-keys-causal", 200, 200, 64, true, 100), true),
        (case("four-keys", 200, 200, 64, false, 50), false),
        (
            Case {
                name: "native-gqa-slice",
                heads: 4,
                kv_heads: 2,
                queries: Some(40..120),
                ..case("", 120, 120, 32, true, 120)
            },
            true,
        ),
    ]
    .into_iter()
    .map(|(c, stored)| (c.name.to_string(), Pooling::of(&c), stored))
    .collect();
    // A sliding window (keys before it stored as 0, the chunk's rows of each head cleared
    // first), and logits in it (every hidden entry masked).
    for (name, values) in [
        ("native-window", Values::Probs),
        ("native-window-logits", Values::Logits),
    ] {
        let options = QkOptions {
            causal: true,
            sliding_window: Some(25),
            values,
            ..Default::default()
        };
        let src = QkSource::new(
            tensor("q", 4, 110, 32, 41, DType::F32),
            tensor("k", 2, 110, 32, 42, DType::F32),
            &options,
        )
        .unwrap();
        let pooling = Pooling {
            cells: (0..4).map(|h| (0, h)).collect(),
            geometry: CellGeometry::new(110, 110, Some(110)).unwrap(),
            options: PoolOptions {
                causal: Causal::On,
                diagonal: Some(src.diagonal()),
                ..Default::default()
            },
            src,
        };
        narrow.push((name.to_string(), pooling, true));
    }
    assert!(e.gpu.time_passes(true));
    for (name, p, stored) in &narrow {
        e.gpu.qk_store_keys = default;
        e.gpu.pass_times().unwrap();
        let narrow = p.run(&e, &p.src);
        let times = e.gpu.pass_times().unwrap();
        let labels: Vec<&str> = times.labels.iter().map(|t| t.label).collect();
        assert_eq!(
            (
                labels.contains(&"attnviz.qk.probs"),
                labels.contains(&"attnviz.qk.fold")
            ),
            (*stored, !stored),
            "{name}: the passes that ran: {labels:?}"
        );
        if *stored && name.starts_with("native") {
            // one pool dispatch for each chunk's probabilities, every head of its batch in it
            // (`Ingest::pool_resident_members`), not one a head (heads drawn at their own
            // size, whose rows fit one piece; two-keys-causal's 200 rows take two)
            let passes = |label: &str| {
                times
                    .labels
                    .iter()
                    .find(|t| t.label == label)
                    .map_or(0, |t| t.passes)
            };
            assert_eq!(
                passes("attnviz.pool.pass"),
                passes("attnviz.qk.probs"),
                "{name}: {times:?}"
            );
        }
        e.gpu.qk_store_keys = 0;
        let one_pass = p.run(&e, &p.src);
        compare(name, &narrow, &one_pass, [4e-6, 1e-30, 1e-5, 1e-30]);
        let cpu = attnviz::cpu::pool_cells(&p.src, &p.cells, p.geometry, p.options).unwrap();
        let cpu: Vec<Vec<Accum>> = cpu.into_iter().map(|p| p.accum).collect();
        compare(
            &format!("{name} vs f64"),
            &narrow,
            &cpu,
            [0.0, 1e-5, 0.0, 1e-5],
        );
    }
    e.gpu.time_passes(false);
    e.gpu.qk_store_keys = default;
}

#[test]
fn causal_pixels_above_the_diagonal_stay_empty() {
    let Some(e) = engine() else { return };
    let c = case("causal", 256, 256, 32, true, 64);
    let src = source(&c);
    let geometry = CellGeometry::new(256, 256, Some(64)).unwrap();
    let options = PoolOptions {
        causal: Causal::On,
        diagonal: Some(0),
        ..Default::default()
    };
    let pooled = e.pool(&src, &[(0, 0)], geometry, options).unwrap();
    let accums = pooled.read_accums(&e.gpu).unwrap();
    for (i, a) in accums[0].iter().enumerate() {
        let (y, x) = (i / 64, i % 64);
        // Bin (y, x) holds rows 4y..4y+4 and keys 4x..4x+4: row q sees keys 0..=q.
        let expected: u32 = (4 * y..4 * y + 4)
            .map(|q| (4 * x..4 * x + 4).filter(|&k| k <= q).count() as u32)
            .sum();
        assert_eq!(a.count(), expected, "pixel ({y}, {x})");
    }
}

#[test]
fn non_finite_queries_and_keys_pool_as_the_cpu_reference_does() {
    // The one-pass fold has no NaN rows: a non-finite Q or K sends the render down the
    // two-pass path, whose NaN probabilities flag their pixels as the CPU reference does.
    let Some(e) = engine() else { return };
    for (what, in_k) in [("a NaN query row", false), ("a NaN key", true)] {
        let c = case("nan", 96, 96, 32, false, 32);
        let mut q = tensor("q", 1, 96, 32, 7, DType::F32);
        let mut k = tensor("k", 1, 96, 32, 8, DType::F32);
        let target = if in_k { &mut k } else { &mut q };
        let shape = target.shape();
        let mut row = vec![0u8; shape.keys * 4];
        target.read_rows(0, 0, 40, &mut row).unwrap();
        row[..4].copy_from_slice(&f32::NAN.to_le_bytes());
        let mut all = vec![0u8; shape.queries * shape.keys * 4];
        target.read_rows(0, 0, 0, &mut all).unwrap();
        all[40 * shape.keys * 4..41 * shape.keys * 4].copy_from_slice(&row);
        **target = ArraySource::new("patched", shape, DType::F32, all).unwrap();
        let src = QkSource::new(q, k, &QkOptions::default()).unwrap();
        let geometry = CellGeometry::new(c.nq, c.nk, Some(c.cell)).unwrap();
        let gpu = e
            .pool(&src, &[(0, 0)], geometry, PoolOptions::default())
            .unwrap();
        let gpu = gpu.read_accums(&e.gpu).unwrap();
        let cpu =
            attnviz::cpu::pool_cells(&src, &[(0, 0)], geometry, PoolOptions::default()).unwrap();
        let bad = |a: &[Accum]| a.iter().map(|p| p.is_bad()).collect::<Vec<_>>();
        assert_eq!(bad(&gpu[0]), bad(&cpu[0].accum), "{what}: flagged pixels");
        assert!(gpu[0].iter().any(|p| p.is_bad()), "{what}: nothing flagged");
    }
}

#[test]
fn the_subgroup_step_and_the_plain_step_give_the_same_bits() {
    // The row kernel shares each step's keys through subgroupBroadcast where the adapter has
    // subgroups, and loads every key in every lane where it has not: the same products added
    // in the same order, so the accumulators agree exactly, not within a tolerance.
    let Some(mut e) = engine() else { return };
    let shared = e.gpu.subgroup_keys;
    if shared == 0 {
        eprintln!("the adapter has no subgroups: only the plain step runs here");
        return;
    }
    // One row per invocation keeps the adapter's widest step (8 keys where its subgroups have
    // 8 lanes); the adapter's own row budget may take 8 rows and then 4 keys a step.
    let budget = e.gpu.row_vec4s;
    // (one row a lane is the row kernel on every adapter here, not the tiled one)
    e.gpu.row_min_rows = 1;
    for c in cases().into_iter().filter(|c| c.d <= 128) {
        let p = Pooling::of(&c);
        let d4 = c.d.div_ceil(4) as u32;
        for vec4s in [d4, budget] {
            let mut run = |keys: u32| {
                e.gpu.subgroup_keys = keys;
                e.gpu.row_vec4s = vec4s;
                p.run(&e, &p.src)
            };
            let (with, without) = (run(shared), run(0));
            assert!(
                bits(&with) == bits(&without),
                "{}, {vec4s} query vec4s a lane: the two steps differ",
                c.name
            );
        }
    }
    e.gpu.subgroup_keys = shared;
    e.gpu.row_vec4s = budget;
}

#[test]
fn every_row_count_per_invocation_gives_the_same_bits() {
    // The row kernel gives each invocation as many query rows as the adapter's budget holds
    // (`Gpu::row_vec4s`: 1, 2, 4 or 8; with 8, subgroups share 4 keys a step, not 8); each
    // row's products are added in the same order whatever the count, so pooled accumulators
    // and stored probabilities agree exactly with one row per invocation. The cases' row
    // counts are not multiples of a workgroup's rows.
    let Some(mut e) = engine() else { return };
    let budget = e.gpu.row_vec4s;
    e.gpu.row_min_rows = 1;
    for c in cases().into_iter().filter(|c| c.d <= 128) {
        let p = Pooling::of(&c);
        let s = p.src.shape();
        let d4 = c.d.div_ceil(4) as u32;
        let mut run = |rows: u32| {
            e.gpu.row_vec4s = rows * d4;
            (bits(&p.run(&e, &p.src)), materialize(&e, &p.src))
        };
        let (one, one_stored) = run(1);
        for rows in [2, 4, 8] {
            let (more, more_stored) = run(rows);
            assert!(
                one == more,
                "{}: {rows} rows per invocation pool otherwise",
                c.name
            );
            for h in 0..s.heads {
                let mut a = vec![0u8; s.queries * s.keys * 4];
                let mut b = a.clone();
                one_stored.read_rows(0, h, 0, &mut a).unwrap();
                more_stored.read_rows(0, h, 0, &mut b).unwrap();
                assert!(
                    a == b,
                    "{}: {rows} rows per invocation store otherwise",
                    c.name
                );
            }
        }
    }
    e.gpu.row_vec4s = budget;
}

/// Split keys (`Gpu::qk_split_workgroups`, on by default on GPUs): one score dispatch per
/// chunk whose workgroups each take whole pooled columns of keys, against one dispatch per
/// window (row kernel) or segment (tiled kernel) of keys. Every score is the same sum and
/// every bin's state one workgroup's fold, so the counts are equal; the extremes and sums may
/// differ in the last bits of the lse, which the row kernel merges per split rather than per
/// window and column: the one-pass tolerances of the module docs. Both kernels, as many
/// splits as the heads allow (64 keys each, at most a column each), whole heads and chunks of
/// 64 rows (and batches of several heads), with and without subgroups.
#[test]
fn split_keys_pool_as_one_window_at_a_time_does() {
    let Some(mut e) = engine() else { return };
    let (target, shared, budget) = (
        e.gpu.qk_split_workgroups,
        e.gpu.subgroup_keys,
        e.gpu.row_vec4s,
    );
    e.gpu.row_min_rows = 1;
    for chunk in [64 << 20, 160_000] {
        for c in chunked(&mut e, chunk) {
            let p = Pooling::of(&c);
            for (keys, vec4s) in [(shared, budget), (0, budget), (0, 0)] {
                (e.gpu.subgroup_keys, e.gpu.row_vec4s) = (keys, vec4s);
                e.gpu.qk_split_workgroups = 0;
                let windows = p.run(&e, &p.src);
                e.gpu.qk_split_workgroups = 1 << 20;
                let split = p.run(&e, &p.src);
                let what = format!(
                    "{} split (chunk {chunk}, {keys} subgroup keys, row vec4s {vec4s})",
                    c.name
                );
                compare(&what, &split, &windows, [4e-6, 1e-30, 1e-5, 1e-30]);
            }
        }
    }
    (
        e.gpu.qk_split_workgroups,
        e.gpu.subgroup_keys,
        e.gpu.row_vec4s,
    ) = (target, shared, budget);
}

/// The Q/K budgets a GPU runs with (`QkBudgets::Gpu`: 2 query rows a lane at d = 64, the
/// tiled kernel at d = 128 and wider, 512 MiB of states a chunk, the keys split to reach 4096
/// workgroups a dispatch), set on the CPU adapter the tests run on, so that the configuration
/// a GPU runs is checked where there is none: every case against the f64 reference, pooled in
/// one pass and from every probability as `attnviz attention` reads them (`GpuRows`: the row
/// kernel at 2 rows a lane, the two-pass kernels at d = 128). (Running the tiled kernel at
/// d = 128 here found it reading a batch's second key head at the wrong stride.)
#[test]
fn a_gpus_budgets_pool_as_the_f64_reference_does() {
    let Some(mut e) = engine() else { return };
    e.gpu.use_qk_budgets(QkBudgets::Gpu);
    e.qk_state_bytes = e.gpu.qk_state_bytes;
    for c in cases() {
        let p = Pooling::of(&c);
        let cpu = attnviz::cpu::pool_cells(&p.src, &p.cells, p.geometry, p.options).unwrap();
        let cpu: Vec<Vec<Accum>> = cpu.into_iter().map(|p| p.accum).collect();
        for (how, pooled) in [
            ("one pass", p.run(&e, &p.src)),
            ("every probability", p.run(&e, &materialize(&e, &p.src))),
        ] {
            let what = format!("{} with a GPU's budgets, {how}", c.name);
            compare(&what, &pooled, &cpu, [0.0, 1e-5, 0.0, 1e-5]);
        }
    }
}

/// Which kernel a head width takes: the row kernel where a lane holds at least
/// `Gpu::row_min_rows` query rows of it (GPUs ask for 2: one row a lane lost to the tiled
/// kernel on an H200), the tiled kernel otherwise and wherever the row budget is 0.
#[test]
fn a_lane_of_fewer_rows_than_the_adapter_asks_takes_the_tiled_kernel() {
    let Some(mut e) = engine() else { return };
    let gpu = &mut e.gpu;
    (gpu.row_vec4s, gpu.row_min_rows) = (32, 2);
    assert_eq!(row_kernel_shape(gpu, 128, 32768), None);
    assert_eq!(row_kernel_shape(gpu, 64, 32768).map(|s| s.rows), Some(2));
    gpu.row_min_rows = 1;
    assert_eq!(row_kernel_shape(gpu, 128, 32768).map(|s| s.rows), Some(1));
    gpu.row_vec4s = 0;
    assert_eq!(row_kernel_shape(gpu, 64, 32768), None);
    assert_eq!(row_kernel_shape(gpu, 256, 32768), None);
}

/// How many query rows a lane of the row kernel takes: what its budget holds
/// (`Gpu::row_vec4s`, 8 at most), and with `Gpu::fit_rows_to_heads` (the default; `engine()`
/// turns it off for the other tests) no more than fill a workgroup of 64 lanes with a head's
/// rows, though never fewer than `Gpu::row_min_rows`. The kernel choice stays the budget's.
#[test]
fn short_heads_take_fewer_rows_a_lane() {
    let Some(mut e) = engine() else { return };
    let gpu = &mut e.gpu;
    let rows = |gpu: &attnviz::Gpu, d: usize, queries: usize| {
        row_kernel_shape(gpu, d, queries).map(|s| s.rows)
    };
    // a budget of 256 vec4s (CPU adapters' from 2026-12-06 to 12-08): 8 rows at d = 64 and 128
    (gpu.row_vec4s, gpu.row_min_rows, gpu.fit_rows_to_heads) = (256, 1, true);
    for d in [64, 128] {
        for (queries, want) in [
            (32768, 8),
            (512, 8),
            (511, 4),
            (256, 4),
            (128, 2),
            (127, 1),
            (1, 1),
        ] {
            assert_eq!(rows(gpu, d, queries), Some(want), "d = {d}, {queries} rows");
        }
    }
    // the budget caps it first (d = 128 in CPU adapters' 128 vec4s: 4 rows)
    gpu.row_vec4s = 128;
    assert_eq!(rows(gpu, 128, 32768), Some(4));
    assert_eq!(rows(gpu, 64, 32768), Some(8));
    gpu.fit_rows_to_heads = false;
    assert_eq!(rows(gpu, 64, 100), Some(8));
    // GPUs' budgets: their floor of 2 rows a lane is their budget at d = 64, and d = 128 stays
    // with the tiled kernel however long the head
    (gpu.row_vec4s, gpu.row_min_rows, gpu.fit_rows_to_heads) = (32, 2, true);
    assert_eq!(rows(gpu, 64, 64), Some(2));
    assert_eq!(rows(gpu, 64, 32768), Some(2));
    assert_eq!(rows(gpu, 128, 32768), None);
}

/// Pass timing (`Gpu::time_passes`, for `attnviz bench`): with it on, a render's passes are
/// stamped and read back per label, each pass once: the one-pass Q/K kernels (scores, lse and
/// fold of each chunk), the statistics, colour and compose passes; reading clears the record;
/// with it off nothing is recorded. The seconds are only checked to be finite and not
/// negative: what they measure is the driver's (lavapipe's stamps do not always bracket a
/// pass's dispatches, so its figures are not reliably the device's time; GPUs' are).
#[test]
fn passes_are_stamped_per_label_while_timing_is_on() {
    let Some(e) = engine() else { return };
    assert!(
        e.gpu.can_time_passes(),
        "every Vulkan driver the tests run on has timestamp queries"
    );
    let q = tensor("q", 1, 96, 64, 7, DType::F32);
    let k = tensor("k", 1, 96, 64, 8, DType::F32);
    let src = QkSource::new(q, k, &QkOptions::default()).unwrap();
    let options = attnviz::RenderOptions {
        cell: Some(32),
        ..Default::default()
    };
    assert!(e.gpu.time_passes(true));
    e.render(&src, &options).unwrap();
    assert!(e.gpu.time_passes(false));
    let times = e.gpu.pass_times().unwrap();
    let labels: Vec<&str> = times.labels.iter().map(|t| t.label).collect();
    for label in [
        "attnviz.qk.scores",
        "attnviz.qk.lse",
        "attnviz.qk.fold",
        "attnviz.stats.pass",
        "attnviz.colorize.pass",
        "attnviz.compose.pass",
    ] {
        assert!(labels.contains(&label), "{label} not stamped: {labels:?}");
    }
    // one chunk of rows: one pass of each Q/K kernel
    for t in &times.labels {
        assert!(t.seconds.is_finite() && t.seconds >= 0.0, "{t:?}");
        if t.label.starts_with("attnviz.qk.") {
            assert_eq!(t.passes, 1, "{t:?}");
        }
    }
    assert_eq!(times.untimed, 0);
    assert!(times.summary().contains("qk.scores"), "{}", times.summary());
    // read once, then cleared; nothing recorded with timing off
    e.render(&src, &options).unwrap();
    assert_eq!(e.gpu.pass_times().unwrap(), Default::default());
}
