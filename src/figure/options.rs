//! The one list of `attnviz render`'s options and what each is called from Python, so the CLI
//! and the Python package cannot drift apart: a test of the binary walks clap's `render` schema
//! and fails on a flag missing here, the Python tests fail on a keyword named here that the
//! functions lack, and [`python_message`] renames flags in library errors with the same table.

/// How a CLI option reaches Python.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PyBinding {
    /// A keyword of the functions in the option's [`Scope`].
    Keyword(&'static str),
    /// An attribute of the returned `attnviz.Figure` (an output Python keeps in memory rather
    /// than writes to a file).
    Attribute(&'static str),
    /// No Python equivalent, for the reason given.
    CliOnly(&'static str),
}

/// Which Python functions take a keyword.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// `render`, `figure`, `render_qk` and `figure_qk`.
    All,
    /// `render` and `figure` (attention given as arrays).
    Attention,
    /// `render_qk` and `figure_qk` (attention recomputed from queries and keys).
    Qk,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Scope::All => "all",
            Scope::Attention => "attention",
            Scope::Qk => "qk",
        }
    }
}

/// One option of `attnviz render`.
#[derive(Clone, Copy, Debug)]
pub struct RenderOption {
    /// The long flag with its dashes (`--layers`), or `INPUT` for the positional argument.
    pub flag: &'static str,
    pub python: PyBinding,
    pub scope: Scope,
}

const fn kw(flag: &'static str, name: &'static str) -> RenderOption {
    RenderOption {
        flag,
        python: PyBinding::Keyword(name),
        scope: Scope::All,
    }
}

const fn qk(flag: &'static str, name: &'static str) -> RenderOption {
    RenderOption {
        flag,
        python: PyBinding::Keyword(name),
        scope: Scope::Qk,
    }
}

const fn cli_only(flag: &'static str, why: &'static str) -> RenderOption {
    RenderOption {
        flag,
        python: PyBinding::CliOnly(why),
        scope: Scope::All,
    }
}

const RAW_DUMPS: &str =
    "a raw dump: np.memmap(path, dtype, shape=...) reads it in place, and Python takes the array";

/// Every option of `attnviz render`, in `--help` order.
pub const RENDER_OPTIONS: &[RenderOption] = &[
    RenderOption {
        flag: "INPUT",
        python: PyBinding::Keyword("attn"),
        scope: Scope::Attention,
    },
    qk("--q", "q"),
    qk("--k", "k"),
    qk("--softmax-scale", "softmax_scale"),
    qk("--sliding-window", "sliding_window"),
    qk("--attention-chunk", "attention_chunk"),
    qk("--softcap", "softcap"),
    qk("--bidirectional-spans", "bidirectional_spans"),
    qk("--values", "values"),
    kw("--queries", "queries"),
    RenderOption {
        flag: "--tensor",
        python: PyBinding::Keyword("tensor"),
        scope: Scope::Attention,
    },
    cli_only("--shape", RAW_DUMPS),
    cli_only("--dtype", RAW_DUMPS),
    kw("--output", "out"),
    RenderOption {
        flag: "--layout-json",
        python: PyBinding::Attribute("layout"),
        scope: Scope::All,
    },
    kw("--backend", "backend"),
    cli_only(
        "--quiet",
        "Python draws no progress bar, so there is nothing to silence",
    ),
    cli_only(
        "--gpu-times",
        "a diagnostic printed on stderr, as `attnviz bench` prints it per scenario",
    ),
    cli_only(
        "--timings",
        "a diagnostic of the process printed on stderr: its start-up is the CLI's, not the \
         Python session's",
    ),
    kw("--layers", "layers"),
    kw("--heads", "heads"),
    kw("--norm", "norm"),
    kw("--colormap", "colormap"),
    kw("--reduce", "reduce"),
    kw("--cell", "cell"),
    kw("--no-colorbar", "colorbar"),
    kw("--scale", "scale"),
    kw("--log-floor", "log_floor"),
    kw("--clip", "clip"),
    kw("--vmin", "vmin"),
    kw("--vmax", "vmax"),
    kw("--center", "center"),
    kw("--symmetric", "symmetric"),
    kw("--axes", "axes"),
    kw("--sort-by", "sort_by"),
    kw("--top", "top"),
    kw("--pattern", "pattern"),
    kw("--exclude-keys", "exclude_keys"),
    kw("--title", "title"),
    kw("--scale-factor", "scale_factor"),
    kw("--dpi", "dpi"),
    kw("--theme", "theme"),
    kw("--transparent", "transparent"),
    kw("--causal", "causal"),
    kw("--tiles", "tiles"),
    kw("--tokens", "tokens"),
    kw("--stats-json", "stats_json"),
    kw("--sink-keys", "sink_keys"),
    kw("--window", "window"),
];

/// The Python keyword of a flag (`--layers` → `layers`), `None` when it has none.
pub fn keyword(flag: &str) -> Option<&'static str> {
    RENDER_OPTIONS
        .iter()
        .find(|o| o.flag == flag)
        .and_then(|o| match o.python {
            PyBinding::Keyword(k) => Some(k),
            _ => None,
        })
        .or_else(|| {
            VIEWER_KEYWORDS
                .iter()
                .find(|(f, _)| *f == flag)
                .map(|(_, k)| *k)
        })
}

/// Flags of `attnviz view` beyond `render`'s that library messages name, and the keywords
/// `attnviz.view` and `attnviz.Viewer` take for them.
const VIEWER_KEYWORDS: &[(&str, &str)] = &[("--focus", "focus"), ("--zoom", "zoom")];

/// A library message as a Python caller reads it: each flag with a keyword is renamed, with
/// its value when one follows (`--layers 9: …` → `layers=9: …`, `use a larger --cell` → `use
/// a larger cell`). A Python caller passed `layers=`, not a flag. Flags without a keyword stay.
pub fn python_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("--") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let len = after
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
            .unwrap_or(after.len());
        let flag = &rest[at..at + 2 + len];
        rest = &after[len..];
        let Some(name) = keyword(flag) else {
            out.push_str(flag);
            continue;
        };
        out.push_str(name);
        // A value follows when the next word is not prose: it starts with a digit, a sign or a
        // bracket, or ends in the colon that closes `--flag VALUE:`.
        if let Some(tail) = rest.strip_prefix(' ') {
            let word_len = tail.find(' ').unwrap_or(tail.len());
            let word = &tail[..word_len];
            let valued = word.starts_with(|c: char| !c.is_ascii_lowercase())
                || (word.ends_with(':') && word.len() > 1);
            if valued && !word.is_empty() && !word.starts_with("--") {
                out.push('=');
                out.push_str(word);
                rest = &tail[word_len..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_unique_and_keywords_are_identifiers() {
        for (i, o) in RENDER_OPTIONS.iter().enumerate() {
            assert!(
                RENDER_OPTIONS[..i].iter().all(|p| p.flag != o.flag),
                "{} twice",
                o.flag
            );
            if let PyBinding::Keyword(k) = o.python {
                assert!(k.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{k}");
            }
        }
    }

    #[test]
    fn messages_name_keywords() {
        let cases = [
            (
                "--layers 9: layer 9 is out of range (the input has 2 layers)",
                "layers=9: layer 9 is out of range (the input has 2 layers)",
            ),
            ("--cell must be at least 1", "cell must be at least 1"),
            (
                "--cell 4 pools 9 entries: use a larger --cell",
                "cell=4 pools 9 entries: use a larger cell",
            ),
            (
                "--vmin 2 must be below --vmax 1",
                "vmin=2 must be below vmax=1",
            ),
            (
                "--scale foo: expected linear, log, sqrt or gamma:G with G > 0",
                "scale=foo: expected linear, log, sqrt or gamma:G with G > 0",
            ),
            (
                "--tokens: 3 tokens, but the input has 4 queries",
                "tokens: 3 tokens, but the input has 4 queries",
            ),
            (
                "--scale-factor -1 must be a positive number",
                "scale_factor=-1 must be a positive number",
            ),
            (
                "--exclude-keys 0..9 leaves no key in the statistics",
                "exclude_keys=0..9 leaves no key in the statistics",
            ),
            ("pick one with --tensor NAME", "pick one with tensor=NAME"),
            (
                "--focus 9,1: that head is not among the selected cells",
                "focus=9,1: that head is not among the selected cells",
            ),
            // no keyword: left as it is
            ("--shape 2,3 --dtype f32", "--shape 2,3 --dtype f32"),
            ("a -- b", "a -- b"),
        ];
        for (cli, py) in cases {
            assert_eq!(python_message(cli), py);
        }
    }
}
