//! Dispatch: each subcommand to the module that carries it out.

use super::args::{Cli, Command};
use super::timings::Timings;
use super::{bench, diff, heads, info, render, synth, view};

/// Runs the parsed command line. Errors come back to `main`, which prints them on one line
/// and picks the exit code.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let timings = match &cli.command {
        Command::Render(a) => a.out.timings,
        Command::Demo(a) => a.out.timings,
        Command::Diff(a) => a.out.timings,
        Command::Heads(a) => a.timings,
        Command::Bench(a) => a.timings,
        _ => false,
    }
    .then(Timings::install)
    .flatten();
    let result = command(&cli);
    if let Some(t) = timings {
        eprint!("{}", t.report());
    }
    result
}

fn command(cli: &Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Render(args) => render::render(args),
        Command::Diff(args) => diff::diff(args),
        Command::View(args) => view::view(args),
        Command::Demo(args) => render::demo(args),
        Command::Synth(args) => synth::synth(args),
        Command::SynthQk(args) => synth::synth_qk(args),
        Command::Attention(args) => synth::attention(args),
        Command::Bench(args) => bench::bench(args),
        Command::Info(args) => info::info(args),
        Command::Heads(args) => heads::heads(args),
    }
}
