//! From parsed arguments to library values: render options, the attention source, the engine.
//! Kept apart from the schema so that what a flag means is decided in one place for every
//! command that takes it.

use std::path::Path;

use attnviz::color::scale::ColorScale;
use attnviz::figure::layout::Theme;
use attnviz::pool::pattern::PatternOptions;
use attnviz::pool::Causal;
use attnviz::source::qk::{parse_queries, QkOptions, QkSource, Values};
use attnviz::source::safetensors::is_capture;
use attnviz::source::{self, FileTensor, OpenOptions, QueryRows};
use attnviz::{AttentionSource, Engine, Error, Gpu, RenderOptions};

use super::args::{Backend, PatternArgs, PatternLabels, QkArgs, Selection, StoredArgs, Style};

impl Style {
    /// The library's render options for these flags (`tokens` is left to the command, which
    /// reads its own `--tokens` file).
    pub fn options(&self) -> RenderOptions {
        RenderOptions {
            layers: self.layers.clone(),
            heads: self.heads.clone(),
            norm: self.norm,
            colormap: self.colormap.unwrap_or_default(),
            reduce: self.reduce.unwrap_or_default(),
            cell: self.cell,
            colorbar: !self.no_colorbar,
            causal: causal(&self.causal),
            scale: ColorScale {
                scale: self.scale,
                log_floor: self.log_floor,
                clip: self.clip,
                vmin: self.vmin,
                vmax: self.vmax,
                exclude_keys: self.exclude_keys.unwrap_or(0),
                center: self.center,
                symmetric: self.symmetric,
                label: None,
            },
            axes: self.axes.as_deref().map(|a| a == "on"),
            sort_by: self.sort_by,
            top: self.top,
            pattern: PatternLabels::of(&self.pattern),
            title: self.title.clone(),
            tokens: None,
            scale_factor: self.dpi.map_or(self.scale_factor, |d| d / 100.0),
            theme: Theme::from_name(&self.theme).expect("clap checked the name"),
            transparent: self.transparent,
            cell_colors: false,
            patterns: None,
            summary: None,
        }
    }
}

/// `--causal`'s value (clap checked it).
fn causal(value: &str) -> Causal {
    match value {
        "on" => Causal::On,
        "off" => Causal::Off,
        _ => Causal::Auto,
    }
}

impl Selection {
    /// Render options selecting these heads with this mask, everything else default.
    pub fn options(&self) -> RenderOptions {
        RenderOptions {
            layers: self.layers.clone(),
            heads: self.heads.clone(),
            causal: causal(&self.causal),
            ..Default::default()
        }
    }
}

impl StoredArgs {
    /// Whether these flags pick something in INPUT (a tensor, or a raw reading): then a
    /// capture given as INPUT is read as that, not recomputed.
    pub fn named(&self) -> bool {
        self.tensor.is_some() || self.shape.is_some() || self.dtype.is_some()
    }

    /// INPUT as a raw dump of `--shape` and `--dtype` when both are given, else as a tensor
    /// file (`--tensor` names one in a .safetensors file with several).
    pub fn open(&self, input: &Path) -> anyhow::Result<Box<dyn AttentionSource>> {
        Ok(Box::new(self.open_file(input)?))
    }

    /// [`StoredArgs::open`], as the file it reads (`info` prints what it stores).
    pub fn open_file(&self, input: &Path) -> anyhow::Result<FileTensor> {
        Ok(match (&self.shape, &self.dtype) {
            (Some(shape), Some(dtype)) => {
                let dtype = source::Stored::from_name(dtype).expect("clap checked the name");
                source::open_raw(input, &source::parse_shape(shape)?, dtype)?
            }
            _ => source::open(
                input,
                &OpenOptions {
                    tensor: self.tensor.clone(),
                },
            )?,
        })
    }
}

impl PatternArgs {
    /// The library's pattern options for `--sink-keys` and `--window`.
    pub fn options(&self) -> PatternOptions {
        let default = PatternOptions::default();
        PatternOptions {
            sink_keys: self.sink_keys.unwrap_or(default.sink_keys),
            window: self.window.unwrap_or(default.window),
        }
    }

    /// The statistics a figure computes when `wanted` (render's `--stats-json` or `--sort-by`,
    /// diff's `--sort-by`, which `when` names); without it, `--sink-keys` or `--window` would
    /// change nothing and is refused, naming `command` and `when`.
    pub fn for_figure(
        &self,
        wanted: bool,
        command: &str,
        when: &str,
    ) -> anyhow::Result<Option<PatternOptions>> {
        match (wanted, self.first_given()) {
            (true, _) => Ok(Some(self.options())),
            (false, None) => Ok(None),
            (false, Some(flag)) => Err(Error::BadOption(format!(
                "{flag} sets what the head statistics count, which {command} computes only \
                 with {when}"
            ))
            .into()),
        }
    }

    /// The first of these flags given.
    fn first_given(&self) -> Option<&'static str> {
        match (self.sink_keys, self.window) {
            (Some(_), _) => Some("--sink-keys"),
            (_, Some(_)) => Some("--window"),
            _ => None,
        }
    }
}

impl QkArgs {
    /// The Q/K source, when --q was given.
    pub fn open(&self, causal: bool) -> anyhow::Result<Option<QkSource>> {
        let Some(q) = &self.q else { return Ok(None) };
        self.open_capture(q, causal).map(Some)
    }

    /// The Q/K source of `q` (a capture when `--k` is not given) with these options.
    fn open_capture(&self, q: &Path, causal: bool) -> anyhow::Result<QkSource> {
        let options = QkOptions {
            causal,
            softmax_scale: self.softmax_scale,
            sliding_window: self.sliding_window,
            attention_chunk: self.attention_chunk,
            softcap: self.softcap,
            bidirectional_spans: self.bidirectional_spans.as_ref().map(|s| s.0.clone()),
            meta: None,
            values: self.values,
            queries: self.queries.as_deref().map(parse_queries).transpose()?,
        };
        Ok(QkSource::open(q, self.k.as_deref(), &options)?)
    }

    /// The first option given that only attention recomputed from `--q` reads. clap cannot
    /// refuse them beside INPUT itself: their `requires = "q"` counts as met when `--q`
    /// conflicts with an argument present, and INPUT is one.
    fn first_qk_only(&self) -> Option<&'static str> {
        [
            ("--k", self.k.is_some()),
            ("--softmax-scale", self.softmax_scale.is_some()),
            ("--sliding-window", self.sliding_window.is_some()),
            ("--attention-chunk", self.attention_chunk.is_some()),
            ("--softcap", self.softcap.is_some()),
            ("--bidirectional-spans", self.bidirectional_spans.is_some()),
            ("--values", self.values != Values::Probs),
        ]
        .into_iter()
        .find_map(|(name, given)| given.then_some(name))
    }
}

/// What `render`, `heads` and `view` draw: attention recomputed from `--q`/`--k` when given,
/// or from INPUT when it is a Q/K capture (and `named` is false: no `--tensor`, `--shape` or
/// `--dtype` picks something else in it), else the INPUT file opened by `open_file`, only its
/// `--queries` rows when given (clap guarantees exactly one of `--q` and INPUT).
pub fn attention_source(
    qk: &QkArgs,
    causal: bool,
    input: Option<&Path>,
    named: bool,
    open_file: impl FnOnce(&Path) -> anyhow::Result<Box<dyn AttentionSource>>,
) -> anyhow::Result<Box<dyn AttentionSource>> {
    match (qk.open(causal)?, input) {
        (Some(qk), _) => Ok(Box::new(qk)),
        // `attnviz render capture.safetensors` means its attention, as `diff` takes it: there
        // is nothing else in the file to draw.
        (None, Some(input)) if !named && is_capture(input) => {
            Ok(Box::new(qk.open_capture(input, causal)?))
        }
        (None, Some(input)) => {
            if let Some(option) = qk.first_qk_only() {
                // Stored attention is drawn as stored: refusing beats silently ignoring a
                // softcap, a window or `--values logits` the user expects in the figure.
                return Err(Error::BadOption(format!(
                    "{option} applies only to attention recomputed from --q/--k, not to stored attention \
                     ({})",
                    input.display()
                ))
                .into());
            }
            let file = open_file(input)?;
            match &qk.queries {
                Some(spec) => Ok(Box::new(QueryRows::new(file, parse_queries(spec)?)?)),
                None => Ok(file),
            }
        }
        (None, None) => unreachable!("clap requires INPUT or --q"),
    }
}

impl Backend {
    /// Opens the GPU engine for this backend: `None` means render on the CPU.
    pub fn engine(self) -> anyhow::Result<Option<Engine>> {
        match self {
            Backend::Cpu => Ok(None),
            Backend::Gpu => Ok(Some(Engine::new(Gpu::new()?))),
            Backend::Auto => match Gpu::new() {
                Ok(gpu) => Ok(Some(Engine::new(gpu))),
                Err(e) => {
                    eprintln!("warning: {e}; rendering on the CPU");
                    Ok(None)
                }
            },
        }
    }
}

/// Reads a token file: one token per line.
pub fn read_tokens(path: &Path) -> anyhow::Result<Vec<String>> {
    let io = |e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    };
    // `-`: the standard input (`tokenize prompt.txt | attnviz render a.npy --tokens -`), as
    // `-o -` is the standard output; a token list is small, unlike the input tensor.
    let text = if attnviz::files::is_stdout(path) {
        std::io::read_to_string(std::io::stdin()).map_err(io)?
    } else {
        std::fs::read_to_string(path).map_err(io)?
    };
    Ok(text.lines().map(str::to_string).collect())
}
