//! The device's own time per pass, from timestamp queries: where a render's GPU time goes.
//!
//! On a fast GPU the wall time of a render is mostly the host's (reading the input, encoding
//! the PNG, the driver's submissions), so a kernel's share cannot be read off it; the device
//! stamps the beginning and end of each pass it runs instead. Off until [`Gpu::time_passes`]
//! turns it on (benchmarks do, for one run after the timed ones): every pass begun with
//! `Gpu::compute_pass` or given `Gpu::render_timestamps` then writes its two stamps into
//! one query set, and [`Gpu::pass_times`] reads them back, summed per pass label. Adapters
//! without `Features::TIMESTAMP_QUERY` time nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::Gpu;
use crate::error::Result;

/// Passes one query set times (two stamps each): wgpu allows 4096 queries a set. Passes past
/// it run untimed and are counted ([`PassTimes::untimed`]).
pub const MAX_TIMED_PASSES: u32 = 2048;

/// The query set and its read-back, made when timing is first turned on.
pub(super) struct PassTimer {
    on: AtomicBool,
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    read: wgpu::Buffer,
    recorded: Mutex<Recorded>,
}

/// The labels of the passes given stamps since the last read, in order (pass i wrote queries
/// 2i and 2i + 1), and how many passes found the set full.
#[derive(Default)]
struct Recorded {
    labels: Vec<&'static str>,
    untimed: usize,
}

/// Device time of the passes with one label.
#[derive(Clone, Debug, PartialEq)]
pub struct PassTime {
    pub label: &'static str,
    pub passes: usize,
    pub seconds: f64,
}

/// What [`Gpu::pass_times`] read: each label's passes and seconds, in the order the labels
/// first ran, and the passes that ran untimed because the query set was full.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PassTimes {
    pub labels: Vec<PassTime>,
    pub untimed: usize,
}

impl PassTimes {
    /// Device seconds of every timed pass.
    pub fn total(&self) -> f64 {
        self.labels.iter().map(|t| t.seconds).sum()
    }

    /// One line: `label seconds (passes)` per label, largest first, and the total.
    pub fn summary(&self) -> String {
        let mut by_time = self.labels.clone();
        by_time.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
        let parts: Vec<String> = by_time
            .iter()
            .map(|t| {
                let label = t.label.strip_prefix("attnviz.").unwrap_or(t.label);
                format!("{label} {:.4} s ({}×)", t.seconds, t.passes)
            })
            .collect();
        let untimed = if self.untimed > 0 {
            format!("; {} passes untimed", self.untimed)
        } else {
            String::new()
        };
        format!("{}; total {:.4} s{untimed}", parts.join(", "), self.total())
    }
}

impl PassTimer {
    fn new(device: &wgpu::Device) -> PassTimer {
        let queries = 2 * MAX_TIMED_PASSES;
        let bytes = u64::from(queries) * 8;
        let buffer = |label, usage| super::buffer(device, label, bytes, usage);
        PassTimer {
            on: AtomicBool::new(false),
            set: device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("attnviz.pass_times"),
                ty: wgpu::QueryType::Timestamp,
                count: queries,
            }),
            resolve: buffer(
                "attnviz.pass_times.resolve",
                wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            ),
            read: buffer(
                "attnviz.pass_times.read",
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            ),
            recorded: Mutex::default(),
        }
    }
}

impl Gpu {
    /// Whether the device can stamp passes (`Features::TIMESTAMP_QUERY`, requested wherever
    /// the adapter has it).
    pub fn can_time_passes(&self) -> bool {
        self.device
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// Turns pass timing on or off; false where the device cannot time passes. Turning it on
    /// makes the query set the first time; what was recorded before stays until read.
    pub fn time_passes(&self, on: bool) -> bool {
        if !self.can_time_passes() {
            return false;
        }
        let timer = self.timer.get_or_init(|| PassTimer::new(&self.device));
        timer.on.store(on, Ordering::Relaxed);
        true
    }

    /// The next pass's two query indices when timing is on, its label recorded.
    fn stamp_slot(&self, label: &'static str) -> Option<(&wgpu::QuerySet, u32)> {
        let timer = self.timer.get()?;
        if !timer.on.load(Ordering::Relaxed) {
            return None;
        }
        let mut recorded = timer.recorded.lock().expect("pass timer");
        let pass = recorded.labels.len() as u32;
        if pass >= MAX_TIMED_PASSES {
            recorded.untimed += 1;
            return None;
        }
        recorded.labels.push(label);
        Some((&timer.set, 2 * pass))
    }

    /// A compute pass labelled `label`, stamped when timing is on: every compute pass of the
    /// engine is begun here.
    pub(crate) fn compute_pass<'e>(
        &self,
        encoder: &'e mut wgpu::CommandEncoder,
        label: &'static str,
    ) -> wgpu::ComputePass<'e> {
        let timestamp_writes =
            self.stamp_slot(label)
                .map(|(set, i)| wgpu::ComputePassTimestampWrites {
                    query_set: set,
                    beginning_of_pass_write_index: Some(i),
                    end_of_pass_write_index: Some(i + 1),
                });
        encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(label),
            timestamp_writes,
        })
    }

    /// The stamps of a render pass labelled `label`, when timing is on.
    pub(crate) fn render_timestamps(
        &self,
        label: &'static str,
    ) -> Option<wgpu::RenderPassTimestampWrites<'_>> {
        self.stamp_slot(label)
            .map(|(set, i)| wgpu::RenderPassTimestampWrites {
                query_set: set,
                beginning_of_pass_write_index: Some(i),
                end_of_pass_write_index: Some(i + 1),
            })
    }

    /// The device time of every pass stamped since the last call, summed per label, and the
    /// record cleared. Call once those passes are submitted: a pass recorded but never
    /// submitted reads as 0 s or as its slots' stamps from an earlier read (wgpu resolves the
    /// queries it saw written and clears the others, so the read-back never waits on one).
    /// The stamps are the driver's: lavapipe's do not always bracket a pass's dispatches (the
    /// same pool passes read 0.33 s in one process and 10 ms in another there).
    pub fn pass_times(&self) -> Result<PassTimes> {
        let Some(timer) = self.timer.get() else {
            return Ok(PassTimes::default());
        };
        let recorded = std::mem::take(&mut *timer.recorded.lock().expect("pass timer"));
        let queries = 2 * recorded.labels.len() as u32;
        let mut times = PassTimes {
            labels: Vec::new(),
            untimed: recorded.untimed,
        };
        if queries == 0 {
            return Ok(times);
        }
        let bytes = u64::from(queries) * 8;
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.resolve_query_set(&timer.set, 0..queries, &timer.resolve, 0);
        encoder.copy_buffer_to_buffer(&timer.resolve, 0, &timer.read, 0, bytes);
        self.submit([encoder.finish()]);
        let stamps: Vec<u64> = self.map_read_with(&timer.read, bytes, |b| {
            bytemuck::pod_collect_to_vec::<u8, u64>(b)
        })?;
        // (nanoseconds per tick)
        let period = f64::from(self.queue.get_timestamp_period());
        for (label, pair) in recorded.labels.iter().zip(stamps.chunks_exact(2)) {
            let seconds = pair[1].saturating_sub(pair[0]) as f64 * period * 1e-9;
            match times.labels.iter_mut().find(|t| t.label == *label) {
                Some(t) => {
                    t.passes += 1;
                    t.seconds += seconds;
                }
                None => times.labels.push(PassTime {
                    label,
                    passes: 1,
                    seconds,
                }),
            }
        }
        Ok(times)
    }
}
