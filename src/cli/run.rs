//! Dispatch: each subcommand to the module that carries it out.

use super::args::{Cli, Command};
use super::{bench, diff, heads, info, render, synth, view};

/// Runs the parsed command line. Errors come back to `main`, which prints them on one line
/// and picks the exit code.
pub fn run(cli: Cli) -> anyhow::Result<()> {
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
