//! The `attnviz` command line: parses options, calls the library, and turns errors into one
//! line on stderr and an exit code (2: bad input or options, 1: environment).

mod cli;

use std::process::ExitCode;

use attnviz::Error;
use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    if !matches!(cli.command, cli::Command::View(_))
        && std::env::var_os("XDG_RUNTIME_DIR").is_none()
    {
        // Headless commands never talk to a compositor, but Mesa's Wayland support prints
        // "error: XDG_RUNTIME_DIR is invalid" when the variable is unset (containers, CI, ssh),
        // which reads like our own one-line error. Nothing else runs yet, so this is race-free.
        std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    if !matches!(cli.command, cli::Command::View(_)) {
        quiet_on_closed_pipe();
    }
    set_panic_hook();
    let result = std::panic::catch_unwind(|| cli::run(cli));
    let Ok(result) = result else {
        return ExitCode::from(1);
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = match e.downcast_ref::<Error>() {
                Some(err) if err.is_input_error() => 2,
                _ => 1,
            };
            eprintln!("error: {}", one_line(&e));
            ExitCode::from(code)
        }
    }
}

/// Output piped into a reader that stops early (`attnviz heads model.npy | head`) ends the
/// process quietly, killed by SIGPIPE as `cat` or `grep` would be, rather than as Rust leaves
/// it: the signal ignored, the write failing with EPIPE, and `println!` panicking into "internal
/// error ... (please report it)". Outputs written to files are unaffected (atomic, not pipes);
/// the viewer keeps Rust's default (its window system's sockets are none of this).
#[cfg(unix)]
fn quiet_on_closed_pipe() {
    // SAFETY: called first thing on the main thread, before any other thread exists, and
    // SIG_DFL is a valid disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(unix))]
fn quiet_on_closed_pipe() {}

/// A panic is a bug, but it still ends as one line and exit code 1, not a backtrace and 101.
fn set_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("error: internal error: {msg}{at} (please report it)");
    }));
}

/// The error and its causes on one line.
fn one_line(e: &anyhow::Error) -> String {
    let mut s = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
    }
    s.replace('\n', " ")
}
