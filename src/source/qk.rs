//! Attention recomputed from queries and keys instead of read from a stored tensor: a 128k-token
//! head is 64 GiB as probabilities but 32 MiB as Q and K. [`QkSource`] is an ordinary
//! [`AttentionSource`] (so planning, layout, the CPU renderer and every option work unchanged),
//! whose rows are computed on demand; the GPU engine recognises it and computes the rows it
//! pools on the device instead (see `pool::qk`), never holding more than one upload chunk of them.
//!
//! Semantics, shared by both paths: `p[q, k] = softmax_k(scale · Q[q] · K[k])` over the keys the
//! query may see; with `causal`, key `k` is hidden from absolute query `q` when
//! `k > q + (N_k − N_q)` (bottom-right aligned, as in decoders and KV-cache suffixes), and its
//! probability is 0; a sliding window hides keys that far from the query, on both sides in a
//! bidirectional layer ([`HiddenKeys`]). A capture's per-layer settings (a scale, a sliding window, attention chunks,
//! a logit softcap, sink logits: [`qk_meta`](super::qk_meta)) change the scores and the visible
//! keys of every path alike: [`QkSource::visible`] and [`QkSource::logit`] are their definition.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::source::qk_meta::CaptureMeta;
use crate::source::{self, AttentionSource, DType, OpenOptions, Shape};

/// Largest head dimension the GPU kernels are built for: a query row lives in registers.
pub const MAX_DIM: usize = 256;

/// What a Q/K figure draws.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Values {
    /// The softmax probabilities.
    #[default]
    Probs,
    /// The pre-softmax scores `scale · q·k`, softcapped where the layer is: values a colour bar
    /// can show above 1 and below 0. Every hidden entry (causal, or older than a sliding
    /// window) is masked, since no logit stands for "hidden" the way a probability of 0 does.
    Logits,
}

impl Values {
    pub const ALL: [Values; 2] = [Values::Probs, Values::Logits];

    pub fn name(self) -> &'static str {
        match self {
            Values::Probs => "probs",
            Values::Logits => "logits",
        }
    }

    pub fn from_name(name: &str) -> Option<Values> {
        Values::ALL.into_iter().find(|v| v.name() == name)
    }
}

/// How to turn Q and K into attention.
#[derive(Clone, Debug, Default)]
pub struct QkOptions {
    /// Hide keys after each query (see the module docs); a capture's metadata can also ask
    /// for it.
    pub causal: bool,
    /// Multiplies every score; `None` for the capture's per-layer scale, else 1/√d.
    pub softmax_scale: Option<f32>,
    /// Hides keys `W` or more positions older than the query, in every layer (and, without
    /// `causal`, as many positions after it: a bidirectional layer's window is two-sided, as
    /// in ModernBERT's local layers); `None` for the capture's per-layer windows.
    pub sliding_window: Option<usize>,
    /// Hides the keys outside the query's chunk of `C` positions, in every layer: before it
    /// in a causal layer (Llama 4's chunked layers), before and after it in a bidirectional
    /// one (a vision tower within each video frame); `None` for the capture's per-layer chunks.
    pub attention_chunk: Option<usize>,
    /// Scores become `c · tanh(s / c)`, in every layer; `None` for the capture's.
    pub softcap: Option<f32>,
    /// Runs `[s, e)` of positions attending to each other both ways on top of the causal mask
    /// (Gemma-3's images, PaliGemma's prefix; see `qk_meta`), in every layer; `None` for the
    /// capture's per-layer spans.
    pub bidirectional_spans: Option<Vec<(usize, usize)>>,
    /// What the capture says about each layer (read from the file by [`QkSource::open`]);
    /// the options above win over it.
    pub meta: Option<CaptureMeta>,
    /// Probabilities (the default) or logits.
    pub values: Values,
    /// Query rows to compute (0-based, half-open); `None` for all. An end of `usize::MAX`
    /// means "to the last row".
    pub queries: Option<Range<usize>>,
}

/// Queries and keys of every layer and head, and the attention they define.
pub struct QkSource {
    name: String,
    q: Arc<dyn AttentionSource>,
    k: Arc<dyn AttentionSource>,
    layers: usize,
    heads: usize,
    /// Query heads per key head (grouped-query attention; 1 for plain multi-head).
    group: usize,
    dim: usize,
    /// Keys per head, and query rows in the file.
    keys: usize,
    total_queries: usize,
    rows: Range<usize>,
    /// Keys whose probabilities are produced (the softmax still runs over every key).
    out_keys: Range<usize>,
    causal: bool,
    /// Some layer has bidirectional spans (a capture's `bidirectional_spans`): every layer is
    /// then causal under its spans, drawn as a bidirectional one whose hidden keys have
    /// probability 0 (`causal` is false), its keys per row from [`QkSource::visible`].
    ranged: bool,
    values: Values,
    /// Per layer of Q.
    layer_params: Arc<[LayerParams]>,
    meta: Option<Arc<CaptureMeta>>,
}

/// One layer's settings, resolved: the command line first, then the capture's metadata, then
/// the defaults (1/√d, no window, no chunks, no softcap, no sinks).
#[derive(Clone, Debug, PartialEq)]
pub struct LayerParams {
    pub scale: f32,
    pub window: Option<usize>,
    pub chunk: Option<usize>,
    pub softcap: Option<f32>,
    /// Empty, or one logit per query head.
    pub sinks: Vec<f32>,
    /// The number the layer is shown and selected by, 1-based: the model's layer `index` + 1
    /// where the capture names every layer's ([`CaptureMeta::check`] holds them increasing),
    /// else its position + 1.
    pub number: usize,
    /// Runs `[s, e)` of positions that attend to each other both ways on top of the causal
    /// mask (Gemma-3's images, PaliGemma's prefix: `qk_meta`), increasing and disjoint.
    pub spans: Vec<(usize, usize)>,
}

impl LayerParams {
    /// The sink logit of query head `head`, if the layer has sinks.
    pub fn sink(&self, head: usize) -> Option<f32> {
        self.sinks.get(head).copied()
    }

    /// The bidirectional span position `a` is in, if any.
    pub fn span_of(&self, a: i64) -> Option<(usize, usize)> {
        let i = self.spans.partition_point(|&(_, e)| e as i64 <= a);
        self.spans.get(i).copied().filter(|&(s, _)| s as i64 <= a)
    }

    /// The keys besides the causal ones that the layer hides, in a causal layer or not
    /// (`causal`: a bidirectional layer's window is two-sided).
    pub fn hidden(&self, causal: bool) -> HiddenKeys {
        HiddenKeys {
            window: self.window,
            chunk: self.chunk,
            two_sided: !causal,
        }
    }
}

/// Which keys a layer hides besides the causal ones: those older than a sliding window of `W`
/// keys (`a − k ≥ W`), and in a bidirectional layer those as far after the query too (`k − a ≥
/// W`: ModernBERT's local layers; a causal layer's diagonal comes first), and those outside the
/// query's attention chunk: before it, and in a bidirectional layer after it too (a vision
/// tower that attends within each video frame or image of one size, captured as one layer in
/// chunks of the frame's tokens). The first key a query sees, and one past its last, are functions of
/// its position alone that never decrease along the rows, which is all the kernels' skipping of
/// rows and keys relies on; the one place that inverts the first is
/// [`HiddenKeys::first_row_past`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HiddenKeys {
    pub window: Option<usize>,
    pub chunk: Option<usize>,
    /// The window and the chunk hide keys after the query as they hide those before (a
    /// bidirectional layer). The kernels take it from their causal flag, not as a setting of
    /// its own.
    pub two_sided: bool,
}

impl HiddenKeys {
    /// Whether any key is hidden this way.
    pub fn any(&self) -> bool {
        self.window.is_some() || self.chunk.is_some()
    }

    /// The window and the chunk in keys as the kernels take them, 0 for none, saturated at
    /// [`HiddenKeys::KERNEL_MAX`].
    pub fn kernel_params(&self) -> (u32, u32) {
        let keys = |n: Option<usize>| n.map_or(0, |n| n.min(Self::KERNEL_MAX) as u32);
        (keys(self.window), keys(self.chunk))
    }

    /// The largest window or chunk the kernels are given: one as long as any head hides
    /// nothing more than a longer one, and the shaders' i32 positions plus it stay in range (a
    /// window of 2³¹ or more keys read as a negative i32 hid every key but the diagonal's
    /// neighbours on the GPU).
    pub const KERNEL_MAX: usize = 1 << 30;

    /// The first key the query at absolute position `a` sees, as a position (below 0 where it
    /// sees every key from the first).
    pub fn first(&self, a: i64) -> i64 {
        let window = self.window.map_or(i64::MIN, |w| a - w as i64 + 1);
        let chunk = self.chunk.map_or(i64::MIN, |c| Self::chunk_first(a, c));
        window.max(chunk)
    }

    /// One past the last key the query at absolute position `a` sees by this rule, as a
    /// position: the earlier of a two-sided window's end and a bidirectional chunk's, else
    /// `i64::MAX` (the causal diagonal, where the layer has one, and the last key bound it).
    pub fn end(&self, a: i64) -> i64 {
        if !self.two_sided {
            return i64::MAX;
        }
        let window = self.window.map_or(i64::MAX, |w| a.saturating_add(w as i64));
        let chunk = self
            .chunk
            .map_or(i64::MAX, |c| Self::chunk_first(a, c) + c as i64);
        window.min(chunk)
    }

    /// The first position of the attention chunk of `c` positions (counted from 0) that
    /// position `a` is in; positions before 0 are in the first.
    fn chunk_first(a: i64, c: usize) -> i64 {
        let c = c as i64;
        a.max(0) / c * c
    }

    /// The first absolute position whose query sees no key before `key`: the least `a` with
    /// `first(a) ≥ key` (`i64::MAX` when hidden keys never reach it: nothing hidden).
    pub fn first_row_past(&self, key: i64) -> i64 {
        let window = self.window.map_or(i64::MAX, |w| key + w as i64 - 1);
        let chunk = self.chunk.map_or(i64::MAX, |c| match key {
            ..=0 => i64::MIN,
            _ => (key + c as i64 - 1) / c as i64 * c as i64,
        });
        window.min(chunk)
    }
}

impl QkSource {
    /// Checks that `q` (L, H, N_q, d) and `k` (L, H_kv, N_k, d) belong together. Both are read
    /// as tensors whose "keys" axis is the head dimension.
    pub fn new(
        q: Box<dyn AttentionSource>,
        k: Box<dyn AttentionSource>,
        options: &QkOptions,
    ) -> Result<QkSource> {
        let (qs, ks) = (q.shape(), k.shape());
        let mismatch = |what: String| {
            Err(Error::BadOption(format!(
                "{} and {}: {what}",
                q.name(),
                k.name()
            )))
        };
        if qs.layers != ks.layers {
            return mismatch(format!("Q has {} layers, K has {}", qs.layers, ks.layers));
        }
        if qs.keys != ks.keys {
            return mismatch(format!(
                "head dimensions differ (Q: {}, K: {})",
                qs.keys, ks.keys
            ));
        }
        if ks.heads == 0 || !qs.heads.is_multiple_of(ks.heads) {
            return mismatch(format!(
                "Q's {} heads are not a multiple of K's {} (grouped-query attention shares each K head among an equal number of Q heads)",
                qs.heads, ks.heads
            ));
        }
        let dim = qs.keys;
        if dim > MAX_DIM {
            return Err(Error::bad_input(
                q.name(),
                format!("head dimension {dim} is over the supported {MAX_DIM}"),
            ));
        }
        let rows = query_range(options.queries.clone(), qs.queries, q.name())?;
        if let Some(scale) = options.softmax_scale.filter(|s| !s.is_finite()) {
            return Err(Error::BadOption(format!(
                "--softmax-scale {scale} is not a finite number"
            )));
        }
        if let Some(c) = options.softcap.filter(|c| !(c.is_finite() && *c > 0.0)) {
            return Err(Error::BadOption(format!(
                "--softcap {c} is not a positive number"
            )));
        }
        if options.sliding_window == Some(0) {
            return Err(Error::BadOption(
                "--sliding-window 0 would hide every key".into(),
            ));
        }
        if options.attention_chunk == Some(0) {
            return Err(Error::BadOption(
                "--attention-chunk 0 would hide every key".into(),
            ));
        }
        let meta = options.meta.clone();
        if let Some(m) = &meta {
            m.check(qs.layers, qs.heads, ks.queries)
                .map_err(|e| Error::bad_input(q.name(), e))?;
        }
        let causal_meta: Vec<bool> = meta
            .iter()
            .flat_map(|m| m.layers.iter().filter_map(|l| l.causal))
            .collect();
        if causal_meta.iter().any(|&c| c != causal_meta[0]) {
            return Err(Error::bad_input(
                q.name(),
                "capture metadata mixes causal and bidirectional layers; render them apart with --layers",
            ));
        }
        // (a capture's own layer numbers, where it names every layer)
        let indices: Option<Vec<usize>> = meta
            .as_ref()
            .filter(|m| m.layers.len() == qs.layers)
            .and_then(|m| m.layers.iter().map(|l| l.index).collect());
        let layer_params = (0..qs.layers)
            .map(|l| {
                let m = meta.as_ref().and_then(|m| m.layers.get(l));
                LayerParams {
                    scale: options
                        .softmax_scale
                        .or(m.and_then(|m| m.scale))
                        .unwrap_or(1.0 / (dim as f32).sqrt()),
                    window: options.sliding_window.or(m.and_then(|m| m.sliding_window)),
                    chunk: options
                        .attention_chunk
                        .or(m.and_then(|m| m.attention_chunk)),
                    softcap: options.softcap.or(m.and_then(|m| m.softcap)),
                    sinks: m.and_then(|m| m.sinks.clone()).unwrap_or_default(),
                    number: indices.as_ref().map_or(l, |i| i[l]) + 1,
                    spans: options
                        .bidirectional_spans
                        .clone()
                        .or_else(|| m.and_then(|m| m.bidirectional_spans.clone()))
                        .unwrap_or_default(),
                }
            })
            .collect::<Vec<LayerParams>>();
        let causal = options.causal || causal_meta.first() == Some(&true);
        if let Some(spans) = &options.bidirectional_spans {
            crate::source::qk_meta::check_spans(spans)
                .map_err(|e| Error::BadOption(format!("--bidirectional-spans {e}")))?;
            if let Some(&(_, end)) = spans.last().filter(|&&(_, e)| e > ks.queries) {
                return Err(Error::BadOption(format!(
                    "--bidirectional-spans: a span ends at {end}, past the {} keys",
                    ks.queries
                )));
            }
        }
        let ranged = layer_params.iter().any(|p| !p.spans.is_empty());
        if ranged {
            // (the metadata's own check holds each layer with spans causal and unchunked)
            let problem = if !causal {
                Some("bidirectional spans in a layer that is not causal (--causal on)")
            } else if layer_params.iter().any(|p| p.chunk.is_some()) {
                Some("bidirectional spans and attention chunks")
            } else {
                None
            };
            if let Some(p) = problem {
                return Err(Error::bad_input(q.name(), format!("cannot draw {p}")));
            }
        }
        Ok(QkSource {
            // (a capture holds both: its one file names it)
            name: match q.name() == k.name() {
                true => q.name().to_string(),
                false => format!("{} × {}", q.name(), k.name()),
            },
            out_keys: 0..ks.queries,
            group: qs.heads / ks.heads,
            layers: qs.layers,
            heads: qs.heads,
            dim,
            keys: ks.queries,
            total_queries: qs.queries,
            rows,
            causal: causal && !ranged,
            ranged,
            values: options.values,
            layer_params: layer_params.into(),
            meta: meta.map(Arc::new),
            q: Arc::from(q),
            k: Arc::from(k),
        })
    }

    /// The rectangle `rows` × `keys` (indices among this source's rows and keys) as a source
    /// of its own, sharing Q and K: what the viewer recomputes when it zooms in. Rows keep
    /// their positions for the mask and keys still normalize over the whole row.
    pub fn region(&self, rows: Range<usize>, keys: Range<usize>) -> Result<QkSource> {
        if rows.is_empty()
            || keys.is_empty()
            || rows.end > self.rows.len()
            || keys.end > self.out_keys.len()
        {
            return Err(Error::BadOption(format!(
                "{}: region {rows:?} x {keys:?} outside {}",
                self.name,
                self.shape()
            )));
        }
        let first_row = self.rows.start + rows.start;
        let first_key = self.out_keys.start + keys.start;
        Ok(QkSource {
            name: self.name.clone(),
            q: self.q.clone(),
            k: self.k.clone(),
            rows: first_row..first_row + rows.len(),
            out_keys: first_key..first_key + keys.len(),
            layer_params: self.layer_params.clone(),
            meta: self.meta.clone(),
            ..*self
        })
    }

    /// Opens Q and K files (.npy or .safetensors). With `k` omitted, `q` must be a
    /// .safetensors file holding tensors named `q` and `k`.
    pub fn open(q: &Path, k: Option<&Path>, options: &QkOptions) -> Result<QkSource> {
        let named = |name: &str| OpenOptions {
            tensor: Some(name.to_string()),
        };
        // A .safetensors file may hold both (or more) tensors: take the one named for its
        // role when there is one, else the file's only tensor.
        let pick = |path: &Path, role: &str| {
            source::open(path, &named(role))
                .or_else(|_| source::open(path, &OpenOptions::default()))
        };
        let is_st = source::safetensors::is_safetensors(q);
        let (qt, kt) = match k {
            Some(k) if is_st => (pick(q, "q")?, pick(k, "k")?),
            Some(k) => (source::open(q, &OpenOptions::default())?, pick(k, "k")?),
            None if is_st => (source::open(q, &named("q"))?, source::open(q, &named("k"))?),
            None => {
                return Err(Error::bad_input(
                    q,
                    "no keys: give them with --k FILE (only a .safetensors file can hold both, as tensors `q` and `k`)",
                ))
            }
        };
        let mut options = options.clone();
        if is_st && options.meta.is_none() {
            options.meta = source::safetensors::capture_meta(q)?;
        }
        QkSource::new(Box::new(qt), Box::new(kt), &options)
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn causal(&self) -> bool {
        self.causal
    }

    /// Probabilities or logits.
    pub fn values(&self) -> Values {
        self.values
    }

    /// The keys besides the causal ones (a sliding window's, other chunks') that layer
    /// `layer` hides.
    pub fn hidden(&self, layer: usize) -> HiddenKeys {
        self.layer(layer).hidden(self.causal || self.ranged)
    }

    /// Whether the layers' keys per row come from bidirectional spans ([`QkSource::visible`];
    /// see the field's docs): the kernels then read them from a table by position
    /// ([`QkSource::key_ranges`]) instead of computing them.
    pub fn ranged(&self) -> bool {
        self.ranged
    }

    /// Per position `a` of the keys, the keys its query sees in layer `layer`
    /// ([`QkSource::visible_at`]) as `[first, end)`: the table the Q/K kernels read for a
    /// layer with bidirectional spans.
    pub fn key_ranges(&self, layer: usize) -> Vec<[u32; 2]> {
        (0..self.keys as i64)
            .map(|a| {
                let r = self.visible_at(layer, a);
                [r.start as u32, r.end as u32]
            })
            .collect()
    }

    /// The keys of [`QkSource::hidden`] that pooling masks in layer `layer`: with logits only,
    /// since a hidden probability is an ordinary 0 (as the model's own attention has it) but a
    /// hidden logit has no value at all.
    pub fn mask_hidden(&self, layer: usize) -> HiddenKeys {
        match self.values {
            // (a layer with bidirectional spans masks by its table, `mask_ranges`)
            Values::Logits if !self.ranged => self.hidden(layer),
            _ => HiddenKeys::default(),
        }
    }

    /// [`QkSource::key_ranges`] of layer `layer` where pooling masks them: logits of a layer
    /// with bidirectional spans (as [`QkSource::mask_hidden`] is for windows and chunks, which
    /// such a layer's table already holds).
    pub fn mask_ranges(&self, layer: usize) -> Option<Vec<[u32; 2]>> {
        (self.ranged && self.values == Values::Logits).then(|| self.key_ranges(layer))
    }

    /// Layer `layer`'s scale, window, chunks, softcap and sinks.
    pub fn layer(&self, layer: usize) -> &LayerParams {
        &self.layer_params[layer]
    }

    /// What the capture file (or the caller) said about the model, if anything.
    pub fn meta(&self) -> Option<&CaptureMeta> {
        self.meta.as_deref()
    }

    /// A short note of what changes the scores beyond `softmax(scale · q·k)`, for the
    /// figure's caption: "sliding window 4096 in layers 1, 3; softcap 50"; `None` when nothing
    /// does.
    pub fn applied(&self) -> Option<String> {
        let layers_with = |f: &dyn Fn(&LayerParams) -> bool| -> Vec<usize> {
            (0..self.layers).filter(|&l| f(self.layer(l))).collect()
        };
        let which = |ls: &[usize]| {
            if ls.len() == self.layers {
                String::new()
            } else {
                let names: Vec<String> = ls
                    .iter()
                    .map(|&l| self.layer_number(l).to_string())
                    .collect();
                format!(
                    " in layer{} {}",
                    if ls.len() > 1 { "s" } else { "" },
                    names.join(", ")
                )
            }
        };
        let mut parts = Vec::new();
        if self.values == Values::Logits {
            parts.push("logits".to_string());
        }
        // each window and chunk size, with the layers that have it
        type Size = fn(&LayerParams) -> Option<usize>;
        let window = match self.causal || self.ranged {
            true => "sliding window",
            false => "two-sided sliding window",
        };
        let sizes: [(&str, Size); 2] =
            [(window, |p| p.window), ("attention chunks of", |p| p.chunk)];
        for (name, size) in sizes {
            let mut values: Vec<usize> = self.layer_params.iter().filter_map(size).collect();
            values.sort_unstable();
            values.dedup();
            for v in values {
                let ls = layers_with(&|p| size(p) == Some(v));
                parts.push(format!("{name} {v}{}", which(&ls)));
            }
        }
        let caps = layers_with(&|p| p.softcap.is_some());
        if let Some(&l) = caps.first() {
            let c = self.layer(l).softcap.unwrap_or_default();
            parts.push(format!("softcap {c}{}", which(&caps)));
        }
        let sinks = layers_with(&|p| !p.sinks.is_empty());
        if !sinks.is_empty() {
            parts.push(format!("sink logits{}", which(&sinks)));
        }
        let spanned = layers_with(&|p| !p.spans.is_empty());
        if let Some(&l) = spanned.first() {
            // (the first layer's spans: a model's layers share its images' or prefix's)
            let spans = &self.layer(l).spans;
            let mut named: Vec<String> = spans
                .iter()
                .take(3)
                .map(|(s, e)| format!("[{s}, {e})"))
                .collect();
            if spans.len() > 3 {
                named.push(format!("{} more", spans.len() - 3));
            }
            parts.push(format!(
                "bidirectional spans {}{}",
                named.join(", "),
                which(&spanned)
            ));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    /// The keys of K computed row `r` of layer `layer` sees: up to the causal diagonal (or, in
    /// a bidirectional layer, to its two-sided window's end or its chunk's, whichever is
    /// earlier), and from the sliding window's oldest key or its chunk's first, whichever is
    /// later.
    pub fn visible(&self, layer: usize, r: usize) -> Range<usize> {
        self.visible_at(layer, r as i64 + self.key_diagonal())
    }

    /// [`QkSource::visible`] of the query at position `a`. Under bidirectional spans (a causal
    /// layer's) the query of a span also sees every key of its span: keys up to the span's
    /// end, and from its start where a sliding window would begin later (transformers ORs the
    /// span mask with the causal, sliding-window one). Both ends still never decrease along the
    /// rows, which the kernels' skipping relies on: inside a span the first is the earlier of
    /// the span's start and the window's, and past the span the window's has passed both.
    pub fn visible_at(&self, layer: usize, a: i64) -> Range<usize> {
        let hidden = self.hidden(layer);
        let (mut first, mut end) = match self.causal || self.ranged {
            true => (hidden.first(a), a + 1),
            false => (hidden.first(a), hidden.end(a)),
        };
        if let Some((s, e)) = self.layer(layer).span_of(a) {
            first = first.min(s as i64);
            end = end.max(e as i64);
        }
        let hi = end.clamp(0, self.keys as i64) as usize;
        let lo = first.clamp(0, hi as i64) as usize;
        lo..hi
    }

    /// The logit of a dot product `q·k` in layer `layer`: scaled, then softcapped.
    pub fn logit(&self, layer: usize, dot: f64) -> f64 {
        let p = self.layer(layer);
        let s = dot * p.scale as f64;
        match p.softcap {
            Some(c) => c as f64 * (s / c as f64).tanh(),
            None => s,
        }
    }

    /// The query rows computed, as indices into Q.
    pub fn rows(&self) -> Range<usize> {
        self.rows.clone()
    }

    /// Key head used by query head `head`.
    pub fn kv_head(&self, head: usize) -> usize {
        head / self.group
    }

    /// Output key `k` is hidden from computed row `r` when `k > r + diagonal()`.
    pub fn diagonal(&self) -> i64 {
        self.key_diagonal() - self.out_keys.start as i64
    }

    /// Key `k` (an index into K) is hidden from computed row `r` when `k > r + key_diagonal()`.
    pub fn key_diagonal(&self) -> i64 {
        self.rows.start as i64 + self.keys as i64 - self.total_queries as i64
    }

    /// Keys whose probabilities are produced, as indices into K.
    pub fn out_keys(&self) -> Range<usize> {
        self.out_keys.clone()
    }

    /// Keys in K (the softmax runs over all of them).
    pub fn all_keys(&self) -> usize {
        self.keys
    }

    /// Rows `rows` (indices into Q) of query head (`layer`, `head`), as f32.
    pub fn queries_f32(&self, layer: usize, head: usize, rows: Range<usize>) -> Result<Vec<f32>> {
        read_f32(self.q.as_ref(), layer, head, rows)
    }

    /// Every key of the key head that query head (`layer`, `head`) uses, as f32.
    pub fn keys_f32(&self, layer: usize, head: usize) -> Result<Vec<f32>> {
        read_f32(self.k.as_ref(), layer, self.kv_head(head), 0..self.keys)
    }

    /// [`QkSource::queries_f32`] into `buf`, which the caller keeps across heads.
    pub fn queries_into<'b>(
        &self,
        layer: usize,
        head: usize,
        rows: Range<usize>,
        buf: &'b mut F32Rows,
    ) -> Result<&'b [f32]> {
        read_f32_into(self.q.as_ref(), layer, head, rows, buf)
    }

    /// [`QkSource::keys_f32`] into `buf`, which the caller keeps across heads.
    pub fn keys_into<'b>(
        &self,
        layer: usize,
        head: usize,
        buf: &'b mut F32Rows,
    ) -> Result<&'b [f32]> {
        read_f32_into(
            self.k.as_ref(),
            layer,
            self.kv_head(head),
            0..self.keys,
            buf,
        )
    }

    /// Reference probabilities (or logits, see [`Values`]) of computed rows `rows` in f64,
    /// written as f32 into `out`
    /// (`rows.len()` rows of the produced keys). Scores and the softmax are accumulated in f64, so this is the
    /// yardstick the f32 GPU kernels are measured against.
    pub fn probabilities_cpu(
        &self,
        layer: usize,
        head: usize,
        rows: Range<usize>,
        out: &mut [f32],
    ) -> Result<()> {
        let (d, n) = (self.dim, self.keys);
        let width = self.out_keys.len();
        assert_eq!(
            out.len(),
            rows.len() * width,
            "output holds the requested rows"
        );
        let first = self.rows.start + rows.start;
        let q = self.queries_f32(layer, head, first..first + rows.len())?;
        let k = self.keys_f32(layer, head)?;
        let sink = self.layer(layer).sink(head).map(f64::from);
        let mut scores = vec![0f64; n];
        for (i, (qrow, orow)) in q
            .chunks_exact(d)
            .zip(out.chunks_exact_mut(width))
            .enumerate()
        {
            let visible = self.visible(layer, rows.start + i);
            let mut max = sink.unwrap_or(f64::NEG_INFINITY);
            for kk in visible.clone() {
                let krow = &k[kk * d..(kk + 1) * d];
                let dot: f64 = qrow
                    .iter()
                    .zip(krow)
                    .map(|(&a, &b)| a as f64 * b as f64)
                    .sum();
                scores[kk] = self.logit(layer, dot);
                max = max.max(scores[kk]);
            }
            if self.values == Values::Logits {
                for (o, k) in orow.iter_mut().zip(self.out_keys.clone()) {
                    *o = if visible.contains(&k) {
                        scores[k] as f32
                    } else {
                        0.0
                    };
                }
                continue;
            }
            let total: f64 = scores[visible.clone()]
                .iter()
                .map(|s| (s - max).exp())
                .sum::<f64>()
                + sink.map_or(0.0, |s| (s - max).exp());
            for (o, k) in orow.iter_mut().zip(self.out_keys.clone()) {
                *o = if visible.contains(&k) {
                    flush_subnormal(((scores[k] - max).exp() / total) as f32)
                } else {
                    0.0
                };
            }
        }
        Ok(())
    }
}

/// A probability below f32's smallest normal number (1.2e-38) as 0: GPUs flush subnormal
/// results (WGSL leaves them to the implementation; llvmpipe's and NVIDIA's `exp2` give 0), so
/// the reference does too, and the two backends draw and caption the same range (a causal
/// head's `--reduce min` read `[5.32e-40, 1]` on the CPU, `[0, 1]` on the GPU).
fn flush_subnormal(p: f32) -> f32 {
    if p.abs() < f32::MIN_POSITIVE {
        0.0
    } else {
        p
    }
}

fn read_f32(
    src: &dyn AttentionSource,
    layer: usize,
    head: usize,
    rows: Range<usize>,
) -> Result<Vec<f32>> {
    let mut buf = F32Rows::default();
    read_f32_into(src, layer, head, rows, &mut buf)?;
    Ok(buf.values)
}

/// Host buffers for reading heads of Q or K as f32 ([`QkSource::queries_into`]), kept by the
/// caller across heads: a model's uploads allocate (and fault in) them once rather than twice
/// a head.
#[derive(Default)]
pub struct F32Rows {
    /// The stored bytes, where they are not f32.
    raw: Vec<u8>,
    values: Vec<f32>,
}

/// Rows of one head of `src` as f32 in `buf`. f32 rows are read straight into its values on
/// little-endian machines (their stored order); others through its bytes and decoded.
fn read_f32_into<'b>(
    src: &dyn AttentionSource,
    layer: usize,
    head: usize,
    rows: Range<usize>,
    buf: &'b mut F32Rows,
) -> Result<&'b [f32]> {
    let d = src.shape().keys;
    let dtype = src.dtype();
    let out = &mut buf.values;
    out.resize(rows.len() * d, 0.0);
    if dtype == DType::F32 && cfg!(target_endian = "little") {
        src.read_rows(layer, head, rows.start, bytemuck::cast_slice_mut(out))?;
        return Ok(out);
    }
    buf.raw.resize(rows.len() * d * dtype.size(), 0);
    src.read_rows(layer, head, rows.start, &mut buf.raw)?;
    dtype.decode(&buf.raw, out);
    Ok(out)
}

impl AttentionSource for QkSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn shape(&self) -> Shape {
        Shape {
            layers: self.layers,
            heads: self.heads,
            queries: self.rows.len(),
            keys: self.out_keys.len(),
        }
    }

    fn dtype(&self) -> DType {
        DType::F32
    }

    /// The CPU reference rows (f64 arithmetic, rounded to f32).
    fn read_rows(&self, layer: usize, head: usize, row_start: usize, dst: &mut [u8]) -> Result<()> {
        let shape = self.shape();
        source::row_range(
            &self.name,
            shape,
            DType::F32,
            layer,
            head,
            row_start,
            dst.len(),
        )?;
        let rows = dst.len() / (self.out_keys.len() * 4);
        let mut values = vec![0f32; rows * self.out_keys.len()];
        self.probabilities_cpu(layer, head, row_start..row_start + rows, &mut values)?;
        dst.copy_from_slice(bytemuck::cast_slice(&values));
        Ok(())
    }

    fn diagonal(&self) -> i64 {
        self.diagonal()
    }

    fn first_query(&self) -> usize {
        self.rows.start
    }

    fn as_qk(&self) -> Option<&QkSource> {
        Some(self)
    }

    /// A causal head's probabilities past the diagonal are 0 by definition, and a bidirectional
    /// head's are not (a row's keys all take a share); logits mark hidden keys otherwise.
    fn masks_upper(&self) -> Option<bool> {
        (self.values == Values::Probs).then_some(self.causal)
    }

    /// A capture's layers are the model's layers it names ([`LayerParams::number`]).
    fn layer_number(&self, layer: usize) -> usize {
        self.layer(layer).number
    }
}

/// Parses `A..B`, `A..` or `..B` (0-based, half-open, like a Python slice) as given to
/// `--queries`; an open end becomes `usize::MAX` (see [`QkOptions::queries`]).
pub fn parse_queries(spec: &str) -> Result<Range<usize>> {
    let bad = || {
        Error::BadOption(format!(
            "--queries {spec}: expected A..B, A.. or ..B (0-based, end excluded)"
        ))
    };
    let (a, b) = spec.split_once("..").ok_or_else(bad)?;
    let num = |s: &str, open: usize| -> Result<usize> {
        let s = s.trim();
        if s.is_empty() {
            Ok(open)
        } else {
            s.parse().map_err(|_| bad())
        }
    };
    Ok(num(a, 0)?..num(b, usize::MAX)?)
}

/// The rows `queries` selects of an input's `total` query rows (all of them for `None`; an end
/// of `usize::MAX`, as [`parse_queries`] gives `A..`, is the last row), or a bad option naming
/// the input when they are none or run past its rows: Q and K's `--queries`, and a file's.
pub fn query_range(
    queries: Option<Range<usize>>,
    total: usize,
    name: &str,
) -> Result<Range<usize>> {
    let rows = match &queries {
        Some(r) if r.end == usize::MAX => r.start..total,
        Some(r) => r.clone(),
        None => 0..total,
    };
    if rows.start >= rows.end || rows.end > total {
        // (the range as given: `A..` stays open)
        let end = queries
            .filter(|r| r.end != usize::MAX)
            .map_or(String::new(), |r| r.end.to_string());
        return Err(Error::BadOption(format!(
            "--queries {}..{end} is not a non-empty range inside the {total} query rows of {name}",
            rows.start
        )));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::ArraySource;

    fn array(name: &str, l: usize, h: usize, n: usize, d: usize, seed: u64) -> Box<ArraySource> {
        let a = ndarray::Array4::from_shape_fn((l, h, n, d), |(a, b, c, e)| {
            crate::source::unit(seed, (a * 31 + b) as u64, c as u64, e as u64) * 2.0 - 1.0
        });
        Box::new(ArraySource::from_f32(name, &a))
    }

    #[test]
    fn subnormal_probabilities_are_flushed_as_gpus_flush_them() {
        // scores 0, -92 and -80: e^-92 ≈ 1.1e-40 is subnormal in f32, e^-80 ≈ 1.8e-35 is not
        let q = ndarray::Array4::from_elem((1, 1, 1, 1), 1.0f32);
        let k = ndarray::Array4::from_shape_vec((1, 1, 3, 1), vec![0.0f32, -92.0, -80.0]).unwrap();
        let opts = QkOptions {
            softmax_scale: Some(1.0),
            ..Default::default()
        };
        let s = QkSource::new(
            Box::new(ArraySource::from_f32("q", &q)),
            Box::new(ArraySource::from_f32("k", &k)),
            &opts,
        )
        .unwrap();
        let mut out = vec![0f32; 3];
        s.probabilities_cpu(0, 0, 0..1, &mut out).unwrap();
        assert_eq!(out[1].to_bits(), 0);
        assert!(out[2] > 1e-35 && out[2].is_normal(), "{}", out[2]);
    }

    #[test]
    fn rows_are_distributions_and_causal_rows_see_only_the_past() {
        let opts = QkOptions {
            causal: true,
            ..Default::default()
        };
        let s = QkSource::new(array("q", 1, 4, 6, 8, 1), array("k", 1, 2, 6, 8, 2), &opts).unwrap();
        assert_eq!(s.kv_head(3), 1);
        let mut out = vec![0f32; 36];
        s.probabilities_cpu(0, 3, 0..6, &mut out).unwrap();
        for (r, row) in out.chunks(6).enumerate() {
            let sum: f32 = row.iter().sum();
            assert!((sum - 1.0).abs() < 1e-6, "row {r} sums to {sum}");
            assert!(row[r + 1..].iter().all(|&p| p == 0.0));
            assert!(row[..=r].iter().all(|&p| p > 0.0));
        }
        assert_eq!(out[0], 1.0);
    }

    #[test]
    fn a_query_slice_keeps_absolute_positions() {
        let causal = QkOptions {
            causal: true,
            ..Default::default()
        };
        let full = QkSource::new(
            array("q", 1, 1, 8, 4, 3),
            array("k", 1, 1, 8, 4, 4),
            &causal,
        )
        .unwrap();
        let part = QkSource::new(
            array("q", 1, 1, 8, 4, 3),
            array("k", 1, 1, 8, 4, 4),
            &QkOptions {
                queries: Some(5..7),
                ..causal
            },
        )
        .unwrap();
        let (mut a, mut b) = (vec![0f32; 64], vec![0f32; 16]);
        full.probabilities_cpu(0, 0, 0..8, &mut a).unwrap();
        part.probabilities_cpu(0, 0, 0..2, &mut b).unwrap();
        assert_eq!(&a[40..56], &b[..]);
        assert_eq!(part.shape().queries, 2);
    }

    #[test]
    fn regions_are_slices_of_the_full_rows() {
        let causal = QkOptions {
            causal: true,
            ..Default::default()
        };
        let full = QkSource::new(
            array("q", 1, 1, 9, 4, 5),
            array("k", 1, 1, 12, 4, 6),
            &causal,
        )
        .unwrap();
        let part = full.region(3..7, 5..11).unwrap();
        assert_eq!(part.shape().queries, 4);
        assert_eq!(part.shape().keys, 6);
        let (mut a, mut b) = (vec![0f32; 9 * 12], vec![0f32; 4 * 6]);
        full.probabilities_cpu(0, 0, 0..9, &mut a).unwrap();
        part.probabilities_cpu(0, 0, 0..4, &mut b).unwrap();
        for r in 0..4 {
            assert_eq!(
                &b[r * 6..r * 6 + 6],
                &a[(3 + r) * 12 + 5..(3 + r) * 12 + 11]
            );
        }
        // The mask follows, in the region's own coordinates.
        for (r, row) in b.chunks(6).enumerate() {
            for (c, &p) in row.iter().enumerate() {
                assert_eq!(
                    p == 0.0,
                    c as i64 > r as i64 + part.diagonal(),
                    "({r}, {c})"
                );
            }
        }
    }

    #[test]
    fn mismatched_inputs_are_rejected() {
        let o = QkOptions::default();
        let e = |q, k| QkSource::new(q, k, &o).err().unwrap().to_string();
        assert!(e(array("q", 1, 3, 4, 8, 0), array("k", 1, 2, 4, 8, 0)).contains("multiple"));
        assert!(e(array("q", 1, 2, 4, 8, 0), array("k", 1, 2, 4, 4, 0)).contains("dimensions"));
        assert!(e(array("q", 2, 2, 4, 8, 0), array("k", 1, 2, 4, 8, 0)).contains("layers"));
        let r = QkSource::new(
            array("q", 1, 1, 4, 8, 0),
            array("k", 1, 1, 4, 8, 0),
            &QkOptions {
                queries: Some(3..9),
                ..Default::default()
            },
        );
        assert!(r.err().unwrap().to_string().contains("--queries 3..9"));
        assert_eq!(parse_queries("2..").unwrap(), 2..usize::MAX);
        assert_eq!(parse_queries("..5").unwrap(), 0..5);
        assert!(parse_queries("5").is_err());
        // attention chunks of a bidirectional layer hide the keys after the chunk too: each
        // row sees its own chunk's keys, before and after it (until 2026-12-07 refused)
        let chunked = QkOptions {
            attention_chunk: Some(4),
            ..Default::default()
        };
        let src = QkSource::new(
            array("q", 1, 1, 10, 8, 0),
            array("k", 1, 1, 10, 8, 0),
            &chunked,
        )
        .unwrap();
        let seen: Vec<_> = (0..10).map(|r| src.visible(0, r)).collect();
        assert_eq!(
            seen,
            [0..4, 0..4, 0..4, 0..4, 4..8, 4..8, 4..8, 4..8, 8..10, 8..10]
        );
        let zero = QkOptions {
            attention_chunk: Some(0),
            causal: true,
            ..Default::default()
        };
        let r = QkSource::new(array("q", 1, 1, 4, 8, 0), array("k", 1, 1, 4, 8, 0), &zero);
        assert!(r.err().unwrap().to_string().contains("--attention-chunk 0"));
    }

    /// `first_row_past` inverts `first` (the one place the kernels rely on more than its being
    /// non-decreasing): a query sees no key before `key` exactly from that position on. A
    /// two-sided window's end never decreases either, and is `W` past the query.
    #[test]
    fn the_first_row_past_a_key_is_where_first_reaches_it() {
        let rule = |window, chunk, two_sided| HiddenKeys {
            window,
            chunk,
            two_sided,
        };
        let rules = [
            HiddenKeys::default(),
            rule(Some(7), None, false),
            rule(None, Some(5), false),
            rule(Some(7), Some(5), false),
            rule(Some(3), Some(16), false),
            rule(Some(7), None, true),
            rule(None, Some(5), true),
            rule(Some(3), Some(5), true),
            rule(Some(7), Some(5), true),
        ];
        for rule in rules {
            for a in -5i64..80 {
                assert!(
                    rule.first(a + 1) >= rule.first(a),
                    "{rule:?} decreases at {a}"
                );
                assert!(
                    rule.end(a + 1) >= rule.end(a),
                    "{rule:?} ends earlier at {a}"
                );
            }
            for key in 0i64..60 {
                let past = rule.first_row_past(key);
                for a in -5i64..80 {
                    assert_eq!(
                        rule.first(a) >= key,
                        a >= past,
                        "{rule:?} key {key} row {a}"
                    );
                }
            }
        }
        let both = rule(Some(7), Some(5), false);
        assert_eq!((both.first(12), both.first(18)), (10, 15));
        assert_eq!(both.end(12), i64::MAX);
        // |a − k| < 7 in a bidirectional layer
        let two_sided = rule(Some(7), None, true);
        assert_eq!((two_sided.first(12), two_sided.end(12)), (6, 19));
        assert_eq!(rule(None, None, true).end(12), i64::MAX);
    }
}
