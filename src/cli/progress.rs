//! Progress on stderr for the commands that stream a whole tensor (render, synth, attention,
//! bench input generation).

use std::time::Instant;

/// A progress bar on stderr for work longer than about a second, when stderr is a terminal and
/// `--quiet` is not given; silent otherwise.
pub struct ProgressBar {
    enabled: bool,
    start: Instant,
    what: &'static str,
    bar: std::sync::OnceLock<indicatif::ProgressBar>,
}

impl ProgressBar {
    pub fn new(quiet: bool, what: &'static str) -> ProgressBar {
        use std::io::IsTerminal;
        ProgressBar {
            enabled: !quiet && std::io::stderr().is_terminal(),
            start: Instant::now(),
            what,
            bar: std::sync::OnceLock::new(),
        }
    }

    pub fn update(&self, done: u64, total: u64) {
        if !self.enabled || (self.bar.get().is_none() && self.start.elapsed().as_secs_f64() < 1.0) {
            return;
        }
        let bar = self.bar.get_or_init(|| {
            let b = indicatif::ProgressBar::new(total);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:40}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            b.set_message(self.what);
            b
        });
        bar.set_position(done);
    }

    pub fn finish(&self) {
        if let Some(b) = self.bar.get() {
            b.finish_and_clear();
        }
    }
}
