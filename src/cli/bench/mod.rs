//! `attnviz bench`: fixed scenarios on synthetic inputs, each warmed up then timed over several
//! runs, reported as one table row (and JSON) next to the machine's memcpy and `cat` limits.
//!
//! - [`inputs`]: the synthetic tensors, generated once into a cache folder;
//! - [`scenarios`]: what each scenario times, in the order they run;
//! - [`qk`]: the Q/K scenarios (one long head; whole GQA layers);
//! - [`measure`]: timing, and the memcpy and file-read baselines;
//! - [`report`]: the table, the JSON file and the qk-long line.

mod inputs;
mod measure;
mod qk;
mod report;
mod scenarios;

use attnviz::{Engine, Error, Gpu};

use super::args::BenchArgs;
use inputs::Inputs;
use measure::memcpy_gbps;
use report::Report;
use scenarios::{Bench, Selection};

pub use scenarios::SCENARIOS;

/// Input sizes and run counts. `--quick` is a smoke test of the harness itself (seconds, on a
/// software adapter), not a measurement.
#[derive(Clone, Copy)]
pub struct Sizes {
    /// Tokens per head of the 8×8-head grid (export-grid, stats-grid, recolor, frame,
    /// pool-resident).
    pub grid_seq: usize,
    /// Tokens of the one-head long input (export-long).
    pub long_seq: usize,
    /// Tokens of the one-head Q/K input (qk-long).
    pub qk_seq: usize,
    /// `--quick`: qk-model runs one layer of 2048 tokens instead of four of 8192.
    pub quick: bool,
    /// Bytes copied per upload run.
    pub upload_bytes: u64,
    /// Timed runs of each whole-figure scenario.
    pub runs: usize,
    /// Timed frames of each interactive scenario.
    pub frames: usize,
}

impl Sizes {
    /// qk-model's layers and tokens.
    pub fn qk_model(&self) -> (usize, usize) {
        if self.quick {
            (1, 2048)
        } else {
            (4, 8192)
        }
    }

    fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                grid_seq: 512,
                long_seq: 8192,
                qk_seq: 2048,
                quick: true,
                upload_bytes: 256 << 20,
                runs: 3,
                frames: 20,
            }
        } else {
            Sizes {
                grid_seq: 2048,
                long_seq: 32768,
                qk_seq: 32768,
                quick: false,
                upload_bytes: 1 << 30,
                runs: 5,
                frames: 60,
            }
        }
    }
}

/// `attnviz bench`: inputs first (so generating them is never timed), then the engine, the
/// memcpy baseline and the chosen scenarios, then the report.
pub fn bench(args: &BenchArgs) -> anyhow::Result<()> {
    let want = Selection(&args.only);
    let sizes = Sizes::new(args.quick);
    let dir = inputs::cache_dir(args.data.clone())?;
    let inputs = Inputs::prepare(&dir, &sizes, &want)?;
    let bench = Bench {
        engine: Engine::new(tuned(Gpu::new()?, args)?),
        sizes,
        out: dir.join("bench-out.png"),
    };
    let memcpy = memcpy_gbps();
    let results = bench.run(&inputs, &want)?;
    let _ = std::fs::remove_file(&bench.out);

    let report = Report {
        adapter: bench.engine.gpu.describe(),
        memcpy,
        quick: args.quick,
        qk_seq: sizes.qk_seq,
        row_kernel: (want.wants("qk-long") || want.wants("qk-model"))
            .then(|| row_kernel(&bench.engine.gpu, &bench.sizes)),
        inputs: inputs.with_cat(&results),
        results,
    };
    report.print_table();
    if let Some(path) = &args.json {
        report.write_json(path)?;
    }
    report.print_export_cli();
    let gpu = &bench.engine.gpu;
    report.print_stats_grid(gpu.pool_with_profiles, gpu.pattern_slice_rows);
    report.print_qk_long();
    report.print_gpu_times();
    Ok(())
}

/// `gpu` with the Q/K budgets that `--row-vec4s`, `--subgroup-keys`, `--state-mib`,
/// `--split-workgroups` and `--store-keys` set, and the statistics' that `--pool-with-profiles`
/// and `--pattern-slice-rows` set.
fn tuned(mut gpu: Gpu, args: &BenchArgs) -> anyhow::Result<Gpu> {
    gpu.pool_with_profiles |= args.pool_with_profiles;
    if let Some(n) = args.pattern_slice_rows {
        gpu.pattern_slice_rows = n;
    }
    if let Some(k) = args.store_keys {
        gpu.qk_store_keys = k;
    }
    if let Some(v) = args.row_vec4s {
        gpu.row_vec4s = v;
    }
    if let Some(w) = args.split_workgroups {
        gpu.qk_split_workgroups = w;
    }
    if let Some(m) = args.state_mib {
        gpu.qk_state_bytes = m << 20;
    }
    if let Some(k) = &args.subgroup_keys {
        let k: u32 = k.parse().expect("clap checked the value");
        if k > gpu.subgroup_keys {
            return Err(Error::BadOption(format!(
                "--subgroup-keys {k}: this adapter's subgroups share at most {} keys a step",
                gpu.subgroup_keys
            ))
            .into());
        }
        gpu.subgroup_keys = k;
    }
    Ok(gpu)
}

/// Which row kernel the Q/K scenarios' heads take (d = 64: qk-long; d = 128: qk-model), so
/// that a run on a new device says what it measured.
fn row_kernel(gpu: &Gpu, sizes: &Sizes) -> String {
    let shapes: Vec<String> = [
        (64, "qk-long", sizes.qk_seq),
        (128, "qk-model", sizes.qk_model().1),
    ]
    .iter()
    .map(
        |&(d, scenario, queries)| match attnviz::pool::qk::row_kernel_shape(gpu, d, queries) {
            Some(shape) => format!("d = {d} ({scenario}): {shape}"),
            None => format!("d = {d} ({scenario}): the tiled kernel"),
        },
    )
    .collect();
    format!(
        "--row-vec4s {} --subgroup-keys {} --state-mib {} --split-workgroups {}: {}",
        gpu.row_vec4s,
        gpu.subgroup_keys,
        gpu.qk_state_bytes >> 20,
        gpu.qk_split_workgroups,
        shapes.join("; ")
    )
}
