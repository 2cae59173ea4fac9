//! What a model does to its scores besides `softmax(scale · q·k)`, per layer: the metadata that
//! `attnviz.capture` stores beside Q and K (one JSON string under the key `attnviz` of the
//! `.safetensors` header's `__metadata__`), so that a capture file renders with no other flag.
//!
//! ```json
//! {"format": 1, "model": "LlamaForCausalLM", "tokens": ["<s>", "The", …],
//!  "layers": [{"index": 0, "scaling": 0.125, "causal": true, "sliding_window": null,
//!              "attention_chunk_size": null, "softcap": null, "sinks": null,
//!              "bidirectional_spans": [[1, 257]]}, …],
//!  "padding": {"length": 48, "positions": [7, 8, …, 47]}}
//! ```
//!
//! `padding` is there only when the model's attention mask padded positions of the captured
//! batch item out: the capture holds the others, in order, and says which they were.
//!
//! Semantics (the CPU reference in `qk.rs` and both GPU paths): with a sliding window `W`, key
//! `k` is hidden from the query at absolute position `a` when `a − k ≥ W` (keys older than the
//! window, as transformers' sliding-window masks), and in a bidirectional layer when `k − a ≥ W`
//! too (a two-sided window: ModernBERT's local layers, whose `sliding_window` the capture stores
//! as the module's, half the config's `local_attention` plus one); with attention chunks of `C` tokens (Llama 4's
//! chunked layers, causal), a query sees the keys of its own chunk only: key `k` is hidden from
//! `a` when `⌊k / C⌋ ≠ ⌊a / C⌋`, chunks counted from the capture's first key (transformers counts
//! them from an item's first token, left padding aside); in a bidirectional layer that hides the
//! keys after the query's chunk too (a vision tower's attention within each video frame or
//! window, which the capture joins into one layer so). Hidden keys get probability 0. A softcap `c`
//! replaces each score `s` by `c · tanh(s / c)` before the softmax (Gemma-2). Sink logits (one
//! per query head, gpt-oss) join each row's softmax denominator and are not drawn. The scale
//! replaces the default `1/√d`.
//!
//! `bidirectional_spans` (a causal layer's, without attention chunks) are runs of positions
//! `[s, e)` that attend to each other both ways on top of the causal mask: Gemma-3's images,
//! PaliGemma's prefix (transformers' `or_mask_function` of their token types). The query at `a`,
//! `s ≤ a < e`, also sees keys `a < k < e` (and, under a sliding window, every key of its span).
//! Such a layer is drawn as a bidirectional one whose hidden keys have probability 0, as the
//! model's own attention written to a file is (`--causal auto` sees its entries above the
//! diagonal): see `QkSource::visible`.

use serde_json::Value;

/// The `__metadata__` key a capture's JSON is stored under.
pub const METADATA_KEY: &str = "attnviz";
/// The format version written by this version of attnviz.
pub const FORMAT: u64 = 1;

/// One layer's attention settings, each absent when the model does not say.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LayerAttention {
    /// The model's own layer index (a capture of `layers=[3, 7]` has two layers, 3 and 7).
    pub index: Option<usize>,
    pub scale: Option<f32>,
    pub causal: Option<bool>,
    pub sliding_window: Option<usize>,
    /// Llama 4's `attention_chunk_size`, for a chunked layer.
    pub attention_chunk: Option<usize>,
    pub softcap: Option<f32>,
    /// One logit per query head.
    pub sinks: Option<Vec<f32>>,
    /// Runs `[s, e)` of positions attending to each other both ways (see the module docs):
    /// increasing, disjoint, each of two positions or more.
    pub bidirectional_spans: Option<Vec<(usize, usize)>>,
}

/// The batch item's positions a capture holds, where its attention mask padded others out:
/// key `i` of the capture is position `positions[i]` of an item of `length` tokens.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Padding {
    pub length: usize,
    pub positions: Vec<usize>,
}

/// Everything a capture file says about the model it came from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CaptureMeta {
    pub model: Option<String>,
    pub tokens: Option<Vec<String>>,
    pub layers: Vec<LayerAttention>,
    pub padding: Option<Padding>,
}

impl CaptureMeta {
    /// Parses the JSON stored under [`METADATA_KEY`]. Errors say what is wrong in one line.
    pub fn parse(json: &str) -> Result<CaptureMeta, String> {
        let root: Value =
            serde_json::from_str(json).map_err(|e| format!("capture metadata is not JSON: {e}"))?;
        let obj = root
            .as_object()
            .ok_or("capture metadata is not a JSON object")?;
        match obj.get("format").map(|f| f.as_u64()) {
            Some(Some(FORMAT)) | None => {}
            Some(_) => {
                return Err(format!(
                    "capture metadata has format {}, this attnviz reads format {FORMAT}",
                    obj["format"]
                ))
            }
        }
        let model = match obj.get("model") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(v) => return Err(format!("capture metadata: model {v} is not a string")),
        };
        let tokens = match obj.get("tokens") {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .map(|t| t.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .ok_or("capture metadata: tokens must all be strings")?,
            ),
            Some(_) => return Err("capture metadata: tokens is not a list".into()),
        };
        let layers = match obj.get("layers") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    parse_layer(v).map_err(|e| format!("capture metadata, layer {i}: {e}"))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err("capture metadata: layers is not a list".into()),
        };
        let padding = match obj.get("padding") {
            None | Some(Value::Null) => None,
            Some(v) => {
                Some(parse_padding(v).map_err(|e| format!("capture metadata: padding {e}"))?)
            }
        };
        Ok(CaptureMeta {
            model,
            tokens,
            layers,
            padding,
        })
    }

    /// Checks the metadata against the tensors it describes: one entry per layer of Q (or
    /// none), one sink per query head, one token per key.
    pub fn check(&self, layers: usize, heads: usize, keys: usize) -> Result<(), String> {
        if !self.layers.is_empty() && self.layers.len() != layers {
            return Err(format!(
                "capture metadata describes {} layers, Q and K have {layers}",
                self.layers.len()
            ));
        }
        for (i, l) in self.layers.iter().enumerate() {
            if let Some(&(_, end)) = l.bidirectional_spans.as_ref().and_then(|s| s.last()) {
                if end > keys {
                    return Err(format!(
                        "capture metadata, layer {i}: a bidirectional span ends at {end}, past the {keys} keys"
                    ));
                }
                if l.causal != Some(true) || l.attention_chunk.is_some() {
                    return Err(format!(
                        "capture metadata, layer {i}: bidirectional spans need a causal layer without attention chunks"
                    ));
                }
            }
            if let Some(s) = &l.sinks {
                if s.len() != heads {
                    return Err(format!(
                        "capture metadata, layer {i}: {} sink logits for {heads} query heads",
                        s.len()
                    ));
                }
            }
        }
        // (a capture of some layers is shown and selected by the model's layer numbers, which
        // must therefore be distinct, and in the file's order)
        let indices: Vec<usize> = self.layers.iter().filter_map(|l| l.index).collect();
        if indices.windows(2).any(|w| w[0] >= w[1]) {
            return Err(format!(
                "capture metadata: layer indices {indices:?} do not increase"
            ));
        }
        if let Some(p) = &self.padding {
            if p.positions.len() != keys {
                return Err(format!(
                    "capture metadata: padding lists {} positions for {keys} keys",
                    p.positions.len()
                ));
            }
        }
        if let Some(t) = &self.tokens {
            if t.len() != keys {
                return Err(format!(
                    "capture metadata holds {} tokens for {keys} keys",
                    t.len()
                ));
            }
        }
        Ok(())
    }
}

/// `{"length": n, "positions": [...]}`: positions increasing, each below `n`.
fn parse_padding(v: &Value) -> Result<Padding, String> {
    let obj = v.as_object().ok_or("is not a JSON object")?;
    let length = obj
        .get("length")
        .and_then(Value::as_u64)
        .ok_or("has no length (a count of positions)")? as usize;
    let positions: Vec<usize> = obj
        .get("positions")
        .and_then(Value::as_array)
        .ok_or("has no list of positions")?
        .iter()
        .map(|p| p.as_u64().map(|p| p as usize))
        .collect::<Option<_>>()
        .ok_or("positions must be integers")?;
    let increasing = positions.windows(2).all(|w| w[0] < w[1]);
    if !increasing || positions.last().is_some_and(|&p| p >= length) {
        return Err(format!(
            "positions must increase and stay below its length {length}"
        ));
    }
    Ok(Padding { length, positions })
}

fn parse_layer(v: &Value) -> Result<LayerAttention, String> {
    let obj = v.as_object().ok_or("not a JSON object")?;
    let field = |name: &str| obj.get(name).filter(|v| !v.is_null());
    let float = |name: &str| -> Result<Option<f32>, String> {
        field(name)
            .map(|v| {
                v.as_f64()
                    .map(|x| x as f32)
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| format!("{name} {v} is not a finite number"))
            })
            .transpose()
    };
    let count = |name: &str| -> Result<Option<usize>, String> {
        field(name)
            .map(|v| {
                v.as_u64()
                    .filter(|&n| n > 0)
                    .map(|n| n as usize)
                    .ok_or_else(|| format!("{name} {v} is not a positive integer"))
            })
            .transpose()
    };
    let scale = float("scaling")?;
    if scale == Some(0.0) {
        return Err("scaling 0 would make every row uniform".into());
    }
    let softcap = float("softcap")?;
    if softcap.is_some_and(|c| c <= 0.0) {
        return Err(format!(
            "softcap {} is not positive",
            softcap.unwrap_or(0.0)
        ));
    }
    let causal = field("causal")
        .map(|v| {
            v.as_bool()
                .ok_or_else(|| format!("causal {v} is not true or false"))
        })
        .transpose()?;
    let sinks = field("sinks")
        .map(|v| {
            v.as_array()
                .and_then(|a| {
                    a.iter()
                        .map(|x| x.as_f64().map(|x| x as f32).filter(|x| x.is_finite()))
                        .collect::<Option<Vec<f32>>>()
                })
                .ok_or_else(|| "sinks is not a list of finite numbers".to_string())
        })
        .transpose()?;
    let index = match field("index") {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| format!("index {v} is not a layer number"))? as usize,
        ),
    };
    Ok(LayerAttention {
        index,
        scale,
        causal,
        sliding_window: count("sliding_window")?,
        attention_chunk: count("attention_chunk_size")?,
        softcap,
        sinks,
        bidirectional_spans: field("bidirectional_spans").map(parse_spans).transpose()?,
    })
}

/// `[[s, e], …]`: each `s < e − 1`, each span after the one before.
fn parse_spans(v: &Value) -> Result<Vec<(usize, usize)>, String> {
    let spans: Vec<(usize, usize)> = v
        .as_array()
        .and_then(|a| {
            a.iter()
                .map(|p| match p.as_array().map(Vec::as_slice) {
                    Some([s, e]) => Some((s.as_u64()? as usize, e.as_u64()? as usize)),
                    _ => None,
                })
                .collect()
        })
        .ok_or("bidirectional_spans is not a list of [start, end] position pairs")?;
    check_spans(&spans).map_err(|e| format!("bidirectional_spans {v} {e}"))?;
    Ok(spans)
}

/// Why `spans` are not bidirectional spans as a capture's metadata and `--bidirectional-spans`
/// give them: increasing, disjoint, each of two positions or more.
pub fn check_spans(spans: &[(usize, usize)]) -> Result<(), String> {
    let ordered = spans.iter().all(|&(s, e)| s.saturating_add(1) < e)
        && spans.windows(2).all(|w| w[0].1 <= w[1].0);
    match ordered {
        true => Ok(()),
        false => Err("are not increasing, disjoint spans of two positions or more".into()),
    }
}

/// `--bidirectional-spans`' `S:E,S:E,...` (end excluded), checked as [`check_spans`] does.
pub fn parse_spans_arg(text: &str) -> Result<Vec<(usize, usize)>, String> {
    let spans = text
        .split(',')
        .map(|span| {
            let (s, e) = span.trim().split_once(':')?;
            Some((s.trim().parse().ok()?, e.trim().parse().ok()?))
        })
        .collect::<Option<Vec<(usize, usize)>>>()
        .ok_or_else(|| {
            format!("{text:?} is not a list of spans S:E,S:E,... (positions, end excluded)")
        })?;
    check_spans(&spans).map_err(|e| format!("{text:?} {e}"))?;
    Ok(spans)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_capture_writes() {
        let m = CaptureMeta::parse(
            r#"{"format": 1, "model": "Gemma2ForCausalLM", "tokens": ["a", "b"],
                "layers": [{"index": 3, "scaling": 0.25, "causal": true, "sliding_window": 4,
                            "attention_chunk_size": 16, "softcap": 50.0, "sinks": [0.5, -1.0]},
                           {"index": 7, "scaling": null, "causal": false}]}"#,
        )
        .unwrap();
        assert_eq!(m.model.as_deref(), Some("Gemma2ForCausalLM"));
        assert_eq!(m.layers.len(), 2);
        assert_eq!(
            m.layers[0],
            LayerAttention {
                index: Some(3),
                scale: Some(0.25),
                causal: Some(true),
                sliding_window: Some(4),
                attention_chunk: Some(16),
                softcap: Some(50.0),
                sinks: Some(vec![0.5, -1.0]),
                bidirectional_spans: None,
            }
        );
        assert_eq!(m.layers[1].scale, None);
        assert_eq!(m.layers[1].causal, Some(false));
        assert!(m.check(2, 2, 2).is_ok());
        assert!(m.check(3, 2, 2).unwrap_err().contains("2 layers"));
        assert!(m
            .check(2, 4, 2)
            .unwrap_err()
            .contains("2 sink logits for 4"));
        assert!(m.check(2, 2, 5).unwrap_err().contains("2 tokens for 5"));
        assert_eq!(m.padding, None);
        let twice = CaptureMeta::parse(r#"{"layers": [{"index": 3}, {"index": 3}]}"#).unwrap();
        assert!(twice
            .check(2, 2, 2)
            .unwrap_err()
            .contains("layer indices [3, 3] do not increase"));

        // A batch item whose first 3 of 5 positions were padding.
        let m = CaptureMeta::parse(
            r#"{"tokens": ["a", "b"], "padding": {"length": 5, "positions": [3, 4]}}"#,
        )
        .unwrap();
        let padding = Padding {
            length: 5,
            positions: vec![3, 4],
        };
        assert_eq!(m.padding, Some(padding));
        assert!(m.check(0, 1, 2).is_ok());
        assert!(m
            .check(0, 1, 3)
            .unwrap_err()
            .contains("padding lists 2 positions for 3 keys"));
    }

    #[test]
    fn rejects_inconsistent_values_in_one_line() {
        for (json, want) in [
            ("[1]", "not a JSON object"),
            ("{", "not JSON"),
            (r#"{"format": 9}"#, "format 9"),
            (r#"{"layers": [{"sliding_window": 0}]}"#, "sliding_window 0"),
            (
                r#"{"layers": [{"attention_chunk_size": 2.5}]}"#,
                "attention_chunk_size 2.5",
            ),
            (r#"{"layers": [{"softcap": -1}]}"#, "softcap -1"),
            (r#"{"layers": [{"scaling": "x"}]}"#, "scaling \"x\""),
            (r#"{"layers": [{"sinks": [1, "a"]}]}"#, "sinks"),
            (
                r#"{"layers": [{"bidirectional_spans": [[0, 4], [3, 6]]}]}"#,
                "not increasing, disjoint",
            ),
            (
                r#"{"layers": [{"bidirectional_spans": [[2, 3]]}]}"#,
                "two positions or more",
            ),
            (
                r#"{"layers": [{"bidirectional_spans": [0, 4]}]}"#,
                "[start, end] position pairs",
            ),
            (r#"{"tokens": [1]}"#, "tokens"),
            (r#"{"padding": [1]}"#, "padding is not a JSON object"),
            (
                r#"{"padding": {"positions": [1]}}"#,
                "padding has no length",
            ),
            (
                r#"{"padding": {"length": 4, "positions": [2, 1]}}"#,
                "must increase",
            ),
            (
                r#"{"padding": {"length": 2, "positions": [0, 2]}}"#,
                "below its length 2",
            ),
            (
                r#"{"padding": {"length": 2, "positions": [0, -1]}}"#,
                "integers",
            ),
        ] {
            let e = CaptureMeta::parse(json).unwrap_err();
            assert!(e.contains(want), "{json}: {e}");
            assert!(!e.contains('\n'));
        }
    }
}
