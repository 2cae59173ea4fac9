//! The output of `attnviz bench`: a header naming the machine and inputs, a Markdown table
//! (pasted into the README as is), optional JSON for scripts, and qk-long's GFLOP/s.

use std::path::Path;

use attnviz::gpu::timing::PassTimes;

use super::inputs::file_len;
use super::scenarios::{Results, Row};

/// What one bench run measured, and how to show it.
pub struct Report<'a> {
    pub adapter: String,
    /// Host memcpy GB/s, the reference for every throughput.
    pub memcpy: f64,
    pub quick: bool,
    pub qk_seq: usize,
    /// The Q/K row kernel's budgets and the shapes they gave, when a Q/K scenario ran.
    pub row_kernel: Option<String>,
    /// Each input read, with its `cat` time when an export scenario measured one.
    pub inputs: Vec<(&'a Path, Option<f64>)>,
    pub results: Results,
}

impl Report<'_> {
    /// The header lines and one table row per scenario, on stdout.
    pub fn print_table(&self) {
        println!("adapter: {}", self.adapter);
        println!(
            "memcpy:  {:.2} GB/s (this machine, measured in this run)",
            self.memcpy
        );
        let inputs: Vec<String> = self
            .inputs
            .iter()
            .map(|(path, cat)| {
                let cat = cat.map_or(String::new(), |c| format!(", cat {c:.3} s"));
                let gib = gib(file_len(path));
                format!("{} ({gib:.2} GiB{cat})", path.display())
            })
            .collect();
        if !inputs.is_empty() {
            println!("inputs:  {}", inputs.join(", "));
        }
        if self.results.rows.is_empty() {
            // (`--only coop`: a line under the table, no row in it)
            return;
        }
        println!();
        println!(
            "| scenario | input | median | min | GB/s | of memcpy | heads/s | ms/frame | fps | × cat |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for row in &self.results.rows {
            println!("{}", table_row(row, self.memcpy));
        }
    }

    /// The same numbers as JSON (raw seconds rather than rates), written atomically to `path`.
    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        let rows: Vec<String> = self.results.rows.iter().map(json_row).collect();
        let gpu_times: Vec<String> = self
            .results
            .gpu_times
            .iter()
            .map(|(name, t)| json_pass_times(name, t))
            .collect();
        let body = format!(
            "{{\"adapter\":{:?},\"memcpy_gbps\":{:.3},\"quick\":{},\"qk_long_gflops\":{},\"qk_long_pool_gflops\":{},\"fma_gflops\":{},\"export_grid_cli_ratio\":{},\"stats_grid_ratio\":{},\"row_kernel\":{},\"coop\":{},\"gpu_times\":{{{}}},\"scenarios\":[{}]}}\n",
            self.adapter,
            self.memcpy,
            self.quick,
            self.results
                .qk_gflops
                .map_or("null".into(), |g| format!("{g:.3}")),
            self.results
                .qk_pool_gflops
                .map_or("null".into(), |g| format!("{g:.3}")),
            self.results
                .fma_gflops
                .map_or("null".into(), |g| format!("{g:.3}")),
            self.results
                .export_cli
                .map_or("null".into(), |(fresh, in_process)| format!(
                    "{:.4}",
                    fresh / in_process
                )),
            self.results
                .stats_grid
                .map_or("null".into(), |(stats, plain)| format!("{:.4}", stats / plain)),
            self.row_kernel
                .as_ref()
                .map_or("null".into(), |r| format!("{r:?}")),
            self.results
                .coop
                .as_ref()
                .map_or("null".into(), |c| serde_json::Value::from(c.as_str()).to_string()),
            gpu_times.join(","),
            rows.join(",")
        );
        attnviz::files::write_atomic(path, |w| std::io::Write::write_all(w, body.as_bytes()))?;
        Ok(())
    }

    /// export-grid-cli's line under the table, when it ran: the fresh process against the
    /// in-process renders it alternated with (the target is at most 1.25×).
    pub fn print_export_cli(&self) {
        if let Some((fresh, in_process)) = self.results.export_cli {
            println!();
            println!(
                "export-grid-cli: a fresh `attnviz render` process {fresh:.3} s, in-process \
                 {in_process:.3} s (medians of alternating runs): {:.2}x",
                fresh / in_process
            );
        }
    }

    /// stats-grid's line under the table, when it ran: the renders with statistics against
    /// those without, and whether the profile kernel was let pool (`--pool-with-profiles`).
    pub fn print_stats_grid(&self, pool_with_profiles: bool, slice_rows: u32) {
        if let Some((stats, plain)) = self.results.stats_grid {
            println!();
            println!(
                "stats-grid: with pattern statistics {stats:.3} s, without {plain:.3} s (medians \
                 of alternating in-process runs): {:.2}x; --pattern-slice-rows {slice_rows}{}",
                stats / plain,
                if pool_with_profiles {
                    " (--pool-with-profiles: chunks whose bins allow it pooled by the profile kernel)"
                } else {
                    ""
                }
            );
        }
    }

    /// The device's time per pass, one line per scenario that rendered, where the adapter
    /// stamps passes: which kernels a render's device time goes to.
    pub fn print_gpu_times(&self) {
        if self.results.gpu_times.is_empty() {
            return;
        }
        println!();
        println!("device time by pass (one more render each, timestamp queries):");
        for (name, times) in &self.results.gpu_times {
            println!("{name}: {}", times.summary());
        }
    }

    /// The Q/K lines under the table, when they ran: rates in arithmetic rather than bytes,
    /// against the adapter's FMA rate measured in the same run; then the cooperative-matrix
    /// probe's line, when `--only` named it.
    pub fn print_qk_long(&self) {
        if let Some(fma) = self.results.fma_gflops {
            println!();
            println!(
                "fma probe: {fma:.1} GFLOP/s, this adapter's f32 FMA rate (shaders/fma_probe.wgsl, \
                 this run): the limit of the Q/K rows"
            );
        }
        let of_fma = |gflops: f64| {
            self.results.fma_gflops.map_or(String::new(), |f| {
                format!(", {:.1}% of the FMA rate", 100.0 * gflops / f)
            })
        };
        if let Some(gflops) = self.results.qk_gflops {
            println!(
                "qk-long: {} tokens, d = 64, one head to a 1024-px cell: {gflops:.1} GFLOP/s \
                 (2·N²·d flops: each score once, as the one-pass path computes it; until \
                 2026-12-03 this line counted 4·N²·d per pass and two passes, 4× more){}",
                self.qk_seq,
                of_fma(gflops)
            );
        }
        if let Some(gflops) = self.results.qk_pool_gflops {
            println!(
                "qk-long, the pooling alone (no colour, layout, compose, read-back or PNG): \
                 {gflops:.1} GFLOP/s{}",
                of_fma(gflops)
            );
        }
        for line in [&self.results.qk_model, &self.results.qk_short]
            .into_iter()
            .flatten()
        {
            println!("{line}");
        }
        if let Some(line) = &self.row_kernel {
            println!("row kernel with {line}");
        }
        if let Some(line) = &self.results.coop {
            println!();
            println!("{line}");
        }
    }
}

/// A Markdown table row; a column that does not apply to the scenario shows `-`.
fn table_row(row: &Row, memcpy: f64) -> String {
    let s = &row.sample;
    let (med, min) = (s.median(), s.min());
    let reads = s.input_bytes > 0;
    let size = or_dash(reads, || format!("{:.2} GiB", gib(s.input_bytes)));
    let gbps = or_dash(reads, || format!("{:.2}", s.gbps()));
    let frac = or_dash(reads, || format!("{:.0}%", 100.0 * s.gbps() / memcpy));
    let heads = or_dash(s.heads > 0 && !s.per_frame, || {
        format!("{:.1}", s.heads as f64 / med)
    });
    let ms = or_dash(s.per_frame, || format!("{:.2}", med * 1e3));
    let fps = or_dash(s.per_frame, || format!("{:.0}", 1.0 / med));
    let vs_cat = row.cat.map_or("-".into(), |c| format!("{:.1}", med / c));
    format!(
        "| {} | {size} | {med:.3} s | {min:.3} s | {gbps} | {frac} | {heads} | {ms} | {fps} | {vs_cat} |",
        s.name
    )
}

/// One scenario as a JSON object.
fn json_row(row: &Row) -> String {
    let s = &row.sample;
    format!(
        "{{\"scenario\":\"{}\",\"input_bytes\":{},\"median_s\":{:.6},\"min_s\":{:.6},\"runs\":{},\"cat_s\":{}}}",
        s.name,
        s.input_bytes,
        s.median(),
        s.min(),
        s.runs.len(),
        row.cat.map_or("null".into(), |c| format!("{c:.6}"))
    )
}

/// `cell()` where the column applies, else `-`.
fn or_dash(applies: bool, cell: impl FnOnce() -> String) -> String {
    if applies {
        cell()
    } else {
        "-".into()
    }
}

fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

/// One scenario's pass times as a JSON member: `"name":{"total":s,"untimed":n,"passes":[…]}`.
fn json_pass_times(name: &str, t: &PassTimes) -> String {
    let passes: Vec<String> = t
        .labels
        .iter()
        .map(|p| {
            format!(
                "{{\"label\":{:?},\"passes\":{},\"seconds\":{:.6}}}",
                p.label, p.passes, p.seconds
            )
        })
        .collect();
    format!(
        "{name:?}:{{\"total\":{:.6},\"untimed\":{},\"passes\":[{}]}}",
        t.total(),
        t.untimed,
        passes.join(",")
    )
}
