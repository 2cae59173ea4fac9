//! The Q/K scenarios of `attnviz bench`: attention recomputed from queries and keys held in
//! memory, so they time the recomputation, not a file read. `qk-long` is one long head;
//! `qk-model` whole layers of a GQA model, causal.

use std::time::Instant;

use attnviz::gpu::timing::PassTimes;
use attnviz::pool::Causal;
use attnviz::source::qk::{QkOptions, QkSource};
use attnviz::source::qk_synth::QkSpec;
use attnviz::source::ArraySource;
use attnviz::{AttentionSource, DType, RenderOptions};

use super::inputs::MODEL_SEQ;
use super::measure::Sample;
use super::scenarios::{long_options, Bench};

impl Bench {
    /// qk-long: whole renders of one head recomputed from Q and K, until three runs or a
    /// minute, whichever comes first (a software adapter takes minutes per run), and the
    /// pooling's median seconds (see `qk_runs`).
    pub(super) fn qk_long(&self) -> anyhow::Result<(Sample, f64, Option<PassTimes>)> {
        let options = long_options();
        // Warm the pipelines on a small head first.
        let one_head = |seq| QkSpec {
            layers: 1,
            heads: 1,
            kv_heads: 1,
            seq,
            dim: 64,
            seed: 1,
        };
        self.engine
            .render(&qk_source(&one_head(256), false)?, &options)?;
        let qk = qk_source(&one_head(self.sizes.qk_seq), false)?;
        self.qk_runs("qk-long", &qk, &options, 1)
    }

    /// qk-model: whole figures of a model's layers recomputed from Q and K (GQA 4:1, causal,
    /// d = 128, 256-px cells; `--quick`: one layer of 2048 tokens). Returns the sample, its
    /// line (GFLOP/s of the whole renders and of the pooling alone, each against `fma`, the
    /// FMA rate, when measured: 2·d flops per visible score, each counted once) and the
    /// device's time per pass.
    pub(super) fn qk_model(
        &self,
        fma: Option<f64>,
    ) -> anyhow::Result<(Sample, String, Option<PassTimes>)> {
        let (layers, seq) = self.sizes.qk_model();
        let spec = QkSpec {
            layers,
            heads: 8,
            kv_heads: 2,
            seq,
            dim: 128,
            seed: 1,
        };
        let qk = qk_source(&spec, true)?;
        let options = RenderOptions {
            cell: Some(256),
            causal: Causal::On,
            ..Default::default()
        };
        let (sample, pooling, times) =
            self.qk_runs("qk-model", &qk, &options, layers * spec.heads)?;
        let n = (layers * spec.heads) as f64;
        let visible = seq as f64 * (seq as f64 + 1.0) / 2.0;
        let flops = n * visible * 2.0 * spec.dim as f64;
        let rate = |seconds: f64| {
            let gflops = flops / seconds / 1e9;
            let of_fma = fma.map_or(String::new(), |f| {
                format!(", {:.1}% of the FMA rate", 100.0 * gflops / f)
            });
            format!("{gflops:.1} GFLOP/s, {:.2} heads/s{of_fma}", n / seconds)
        };
        let line = format!(
            "qk-model: {layers} layers x {} heads ({} KV heads), {seq} tokens, d = {}, causal, \
             256-px cells: {} (2·d flops per visible score); the pooling alone {pooling:.3} s, \
             {}",
            spec.heads,
            spec.kv_heads,
            spec.dim,
            rate(sample.median()),
            rate(pooling),
        );
        Ok((sample, line, times))
    }

    /// qk-short: a whole model at short context from Q and K (32 layers × 32 heads, 8 KV
    /// heads, 256 tokens, d = 64, causal, each head at its own width: `--quick`, 8 × 8 with 2);
    /// its cost is per pixel (a score a pixel), not per FLOP. Returns the sample, its line
    /// (heads/s and million pixels/s of the whole renders and of the pooling alone) and the
    /// device's time per pass.
    pub(super) fn qk_short(&self) -> anyhow::Result<(Sample, String, Option<PassTimes>)> {
        let (side, kv) = if self.sizes.quick { (8, 2) } else { (32, 8) };
        let spec = QkSpec {
            layers: side,
            heads: side,
            kv_heads: kv,
            seq: MODEL_SEQ,
            dim: 64,
            seed: 1,
        };
        let qk = qk_source(&spec, true)?;
        let options = RenderOptions {
            causal: Causal::On,
            ..Default::default()
        };
        let n = side * side;
        let (sample, pooling, times) = self.qk_runs("qk-short", &qk, &options, n)?;
        let pixels = (n * MODEL_SEQ * MODEL_SEQ) as f64;
        let rate = |seconds: f64| {
            format!(
                "{:.1} heads/s, {:.0} Mpx/s",
                n as f64 / seconds,
                pixels / seconds / 1e6
            )
        };
        let store = self.engine.gpu.qk_store_keys;
        let line = format!(
            "qk-short: {side} layers x {side} heads ({kv} KV heads), {MODEL_SEQ} tokens, d = 64, \
             causal, each head at its own width (--store-keys {store}: columns of one key {}): \
             {}; the pooling alone {pooling:.3} s, {}",
            if store >= 1 {
                "from stored probabilities"
            } else {
                "in one pass"
            },
            rate(sample.median()),
            rate(pooling),
        );
        Ok((sample, line, times))
    }

    /// Renders `qk` to a PNG until three runs or a minute, whichever comes first, each run
    /// followed by the same pooling alone (`Engine::pool_figure`). Returns the whole renders
    /// (what a user waits for) and the pooling's median: the kernels' share, which the whole
    /// render hides on a fast device behind its fixed costs (colour, layout, compose, read-back,
    /// PNG); and the device's time per pass of one more render, where it stamps passes.
    fn qk_runs(
        &self,
        name: &str,
        qk: &QkSource,
        options: &RenderOptions,
        heads: usize,
    ) -> anyhow::Result<(Sample, f64, Option<PassTimes>)> {
        let mut runs = Vec::new();
        let mut pooling = Vec::new();
        let start = Instant::now();
        while runs.len() < 3 && (runs.is_empty() || start.elapsed().as_secs() < 60) {
            let t = Instant::now();
            self.render_png(qk, options)?;
            runs.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            self.engine.pool_figure(qk, options)?;
            pooling.push(t.elapsed().as_secs_f64());
        }
        let sample = Sample {
            name: name.into(),
            input_bytes: 0,
            heads,
            runs,
            per_frame: false,
        };
        let pooling = Sample {
            runs: pooling,
            ..sample.clone()
        };
        let times = self.timed_render(qk, options)?;
        Ok((sample, pooling.median(), times))
    }
}

/// The synthetic queries and keys of `spec`, held in memory.
fn qk_source(spec: &QkSpec, causal: bool) -> anyhow::Result<QkSource> {
    let (q, k) = spec.generate()?;
    let tensor = |name: &str, heads, v: Vec<f32>| -> anyhow::Result<Box<dyn AttentionSource>> {
        let shape = attnviz::Shape {
            layers: spec.layers,
            heads,
            queries: spec.seq,
            keys: spec.dim,
        };
        let bytes = bytemuck::cast_slice(&v).to_vec();
        Ok(Box::new(ArraySource::new(name, shape, DType::F32, bytes)?))
    };
    Ok(QkSource::new(
        tensor("q", spec.heads, q)?,
        tensor("k", spec.kv_heads, k)?,
        &QkOptions {
            causal,
            ..Default::default()
        },
    )?)
}
