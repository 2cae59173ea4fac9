//! `--timings`: where a command's wall-clock time goes on the host, phase by phase.
//!
//! The library marks its phases as `tracing` spans (`gpu.instance`, `gpu.device`, each
//! `shader` parsed and `pipeline` compiled with its label, `ingest.read` and `ingest.wait`,
//! `export.readback`, `write.png`, …), which cost nothing where no subscriber listens. This
//! collector sums each phase's time per call site in the tree of callers and prints the tree
//! once the command is done. It answers what `--gpu-times` (the device's time per pass) cannot:
//! what a fresh process pays before and around the device's work — start-up, shader parsing and
//! compiling, waiting on reads or on the device, read-back, encoding.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// One phase: spans of one name (and label) under one parent phase, added up.
struct Phase {
    name: String,
    parent: Option<usize>,
    depth: usize,
    calls: u32,
    total: Duration,
}

type Phases = Arc<Mutex<Vec<Phase>>>;

/// The installed collector; [`Timings::report`] is the tree it has gathered.
pub struct Timings {
    phases: Phases,
    start: Instant,
}

/// A span's phase (its index in `Phases`), kept in the span's extensions.
struct PhaseOf(usize);
/// When the span was last entered.
struct EnteredAt(Instant);

struct Collector {
    phases: Phases,
}

/// The `label` field of a span, if it has one.
struct Label(Option<String>);

impl Visit for Label {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "label" {
            self.0 = Some(value.to_string());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "label" {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

impl<S> Layer<S> for Collector
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut label = Label(None);
        attrs.record(&mut label);
        let name = match label.0 {
            Some(l) => format!("{} {l}", attrs.metadata().name()),
            None => attrs.metadata().name().to_string(),
        };
        let parent = span
            .parent()
            .and_then(|p| p.extensions().get::<PhaseOf>().map(|p| p.0));
        let mut phases = self.phases.lock().unwrap_or_else(PoisonError::into_inner);
        let found = phases
            .iter()
            .position(|p| p.parent == parent && p.name == name);
        let index = found.unwrap_or_else(|| {
            let depth = parent.map_or(0, |p| phases[p].depth + 1);
            phases.push(Phase {
                name,
                parent,
                depth,
                calls: 0,
                total: Duration::ZERO,
            });
            phases.len() - 1
        });
        span.extensions_mut().insert(PhaseOf(index));
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().replace(EnteredAt(Instant::now()));
        }
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let ext = span.extensions();
        if let (Some(phase), Some(at)) = (ext.get::<PhaseOf>(), ext.get::<EnteredAt>()) {
            let mut phases = self.phases.lock().unwrap_or_else(PoisonError::into_inner);
            let p = &mut phases[phase.0];
            p.calls += 1;
            p.total += at.0.elapsed();
        }
    }
}

impl Timings {
    /// Installs the collector for the rest of the process (spans on every thread report to
    /// it). `None` if another subscriber was installed first.
    pub fn install() -> Option<Timings> {
        let phases = Phases::default();
        let subscriber = tracing_subscriber::registry().with(Collector {
            phases: phases.clone(),
        });
        tracing::subscriber::set_global_default(subscriber).ok()?;
        Some(Timings {
            phases,
            start: Instant::now(),
        })
    }

    /// The phases as a tree in the order they first began, each with its calls and total
    /// wall-clock time (nested phases are part of their parent's; phases on other threads,
    /// such as pipelines compiled beside the device's work, are roots of their own).
    pub fn report(&self) -> String {
        let phases = self.phases.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = format!(
            "host time by phase (--timings): {:.1} ms in all since the command began\n",
            ms(self.start.elapsed())
        );
        let emit = |i: usize, out: &mut String| {
            let p = &phases[i];
            let calls = if p.calls == 1 {
                String::new()
            } else {
                format!(" ({}×)", p.calls)
            };
            out.push_str(&format!(
                "{:>10.1} ms  {}{}{calls}\n",
                ms(p.total),
                "  ".repeat(p.depth),
                p.name
            ));
        };
        // depth first: each phase, then its children in the order they began
        let mut stack: Vec<usize> = (0..phases.len())
            .filter(|&i| phases[i].parent.is_none())
            .rev()
            .collect();
        while let Some(i) = stack.pop() {
            emit(i, &mut out);
            stack.extend(
                (0..phases.len())
                    .filter(|&c| phases[c].parent == Some(i))
                    .rev(),
            );
        }
        out
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
