//! `attnviz view`: the interactive window. The flags that script it (size, focus, zoom, pan,
//! hover) are checked here, before a window opens, so a typo fails as an option error (exit 2)
//! rather than as a window that shows the wrong thing.

use attnviz::files::check_screenshot_path;
use attnviz::pool::Causal;
use attnviz::viewer::{ViewerOptions, ViewerReport};
use attnviz::{Error, RenderOptions};

use super::args::ViewArgs;
use super::options::{attention_source, read_tokens};
use super::render::check_tokens;

/// `attnviz view`: opens the window, then prints the frame statistics when `--stats` asks.
pub fn view(args: &ViewArgs) -> anyhow::Result<()> {
    if let Some(path) = &args.screenshot {
        check_screenshot_path(path)?;
    }
    let render = args.style.options();
    let causal = render.causal == Causal::On;
    let named = args.stored.named();
    let src = attention_source(&args.qk, causal, args.input.as_deref(), named, |input| {
        args.stored.open(input)
    })?;
    let options = viewer_options(args, render)?;
    if let (Some(path), Some(tokens)) = (&args.tokens, &options.tokens) {
        check_tokens(path, tokens, src.as_ref())?;
    }
    let report = attnviz::viewer::run(src.as_ref(), options)?;
    if args.stats {
        print_stats(&report);
    }
    Ok(())
}

/// The viewer's options from the flags. They are checked in a fixed order (size, focus, pan,
/// hover, zoom, then the token file), so with several bad flags the same one is reported.
fn viewer_options(args: &ViewArgs, render: RenderOptions) -> anyhow::Result<ViewerOptions> {
    let size = args.size.as_deref().map(parse_size).transpose()?;
    let focus = args.focus.as_deref().map(parse_focus).transpose()?;
    let pan_per_frame = args
        .pan_per_frame
        .as_deref()
        .map(|p| pair("--pan-per-frame", p))
        .transpose()?;
    let hover = args
        .hover
        .as_deref()
        .map(|p| pair("--hover", p))
        .transpose()?;
    if args.zoom.is_some_and(|z| !(z.is_finite() && z > 0.0)) {
        return Err(Error::BadOption("--zoom must be a positive number".into()).into());
    }
    Ok(ViewerOptions {
        hover,
        focus,
        zoom: args.zoom,
        pan_per_frame,
        render,
        exit_after_frames: args.exit_after_frames,
        screenshot: args.screenshot.clone(),
        size,
        tokens: args.tokens.as_deref().map(read_tokens).transpose()?,
        statistics: args.patterns.options(),
    })
}

/// `--size WxH`, both positive.
fn parse_size(s: &str) -> anyhow::Result<(u32, u32)> {
    let size = s
        .split_once(['x', 'X'])
        .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
        .filter(|&(w, h): &(u32, u32)| w > 0 && h > 0)
        .ok_or_else(|| Error::BadOption(format!("--size {s}: expected WxH such as 1280x800")))?;
    Ok(size)
}

/// `--focus L,H`: 1-based on the command line, 0-based for the viewer.
fn parse_focus(f: &str) -> anyhow::Result<(usize, usize)> {
    let (l, h) = pair("--focus", f)?;
    if l < 1.0 || h < 1.0 || l.fract() != 0.0 || h.fract() != 0.0 {
        return Err(
            Error::BadOption(format!("--focus {f}: layer and head are 1-based integers")).into(),
        );
    }
    Ok((l as usize - 1, h as usize - 1))
}

/// Two comma-separated numbers given to option `opt`.
fn pair(opt: &str, v: &str) -> anyhow::Result<(f64, f64)> {
    v.split_once(',')
        .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)))
        .ok_or_else(|| {
            Error::BadOption(format!("{opt} {v}: expected two numbers such as 3,5")).into()
        })
}

/// `--stats`: frame times, the adapter, and when the figure and its zoomed detail arrived.
fn print_stats(report: &ViewerReport) {
    let (min, median, p99) = report.summary();
    println!("adapter: {}", report.adapter);
    println!("frames:  {}", report.frames);
    println!("frame time: min {min:.2} ms, median {median:.2} ms, p99 {p99:.2} ms");
    println!("first frame: {:.3} s after start", report.first_frame);
    match report.resident {
        Some(t) => println!("figure read and shown: {t:.3} s after start"),
        None => println!("figure read and shown: not before the window closed"),
    }
    match report.last_detail {
        Some(t) => println!(
            "detail: {} region(s) pooled from the source, the last {:.3} s after it was asked for",
            report.details, t
        ),
        None => println!("detail: none needed or none arrived"),
    }
    if let Some(t) = report.first_detail {
        println!("first detail shown: {t:.3} s after start");
    }
}
