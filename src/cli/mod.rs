//! The `attnviz` command line, on top of the library.
//!
//! - [`args`]: the clap schema (every flag and help line);
//! - [`options`]: parsed flags turned into library values (render options, sources, engine);
//! - [`run`]: dispatch, one subcommand to one module: [`render`] (render, demo), [`view`],
//!   [`synth`] (synth, synth-qk, attention), [`info`], [`heads`] and [`bench`];
//! - [`progress`]: the stderr progress bar the streaming commands share;
//! - [`timings`]: `--timings`, the host's time per phase of a command.
//!
//! Everything here returns `anyhow` errors: the library's [`attnviz::Error`] inside them is
//! what `main` reads to choose the exit code.

mod args;
mod bench;
mod diff;
mod heads;
mod info;
mod options;
mod progress;
mod render;
mod run;
mod synth;
mod timings;
mod view;

pub use args::{Cli, Command};
pub use run::run;
