//! Timing for `attnviz bench`: runs of a scenario, and the machine's own limits (memcpy,
//! reading a cached file) measured in the same run as the engine, so every throughput is shown
//! as a fraction of what the hardware allows.

use std::io::Read;
use std::path::Path;
use std::time::Instant;

use attnviz::{Error, Result};

/// Timings of one scenario.
#[derive(Clone, Debug)]
pub struct Sample {
    pub name: String,
    /// Attention bytes consumed per run (0 for scenarios that read none).
    pub input_bytes: u64,
    pub heads: usize,
    /// Wall time of each measured run, in seconds (warm-up excluded).
    pub runs: Vec<f64>,
    /// True for per-frame scenarios (reported as ms/frame and fps).
    pub per_frame: bool,
}

impl Sample {
    pub fn median(&self) -> f64 {
        let mut r = self.runs.clone();
        r.sort_by(f64::total_cmp);
        let n = r.len();
        if n == 0 {
            0.0
        } else if n % 2 == 1 {
            r[n / 2]
        } else {
            (r[n / 2 - 1] + r[n / 2]) / 2.0
        }
    }

    pub fn min(&self) -> f64 {
        self.runs.iter().copied().fold(f64::INFINITY, f64::min)
    }

    /// GB/s of input consumed at the median time.
    pub fn gbps(&self) -> f64 {
        self.input_bytes as f64 / self.median() / 1e9
    }
}

/// Runs `f` once to warm up, then `runs` times, timing each.
pub fn measure(
    name: &str,
    input_bytes: u64,
    heads: usize,
    runs: usize,
    per_frame: bool,
    mut f: impl FnMut() -> Result<()>,
) -> Result<Sample> {
    f()?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64());
    }
    Ok(Sample {
        name: name.into(),
        input_bytes,
        heads,
        runs: times,
        per_frame,
    })
}

/// Host memcpy bandwidth in GB/s (best of a few 256 MiB copies): the physical limit for
/// reading attention on a machine whose "GPU" is its CPU.
pub fn memcpy_gbps() -> f64 {
    let n = 256 << 20;
    let src = vec![1u8; n];
    let mut dst = vec![0u8; n];
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        dst.copy_from_slice(&src);
        std::hint::black_box(&mut dst);
        best = best.min(t.elapsed().as_secs_f64());
    }
    n as f64 / best / 1e9
}

/// Seconds to read `path` once through the page cache, like `cat FILE >/dev/null`.
pub fn read_seconds(path: &Path) -> Result<f64> {
    let mut file = std::fs::File::open(path).map_err(|e| io_error(path, e))?;
    let mut buf = vec![0u8; 1 << 20];
    let t = Instant::now();
    loop {
        let n = file.read(&mut buf).map_err(|e| io_error(path, e))?;
        if n == 0 {
            break;
        }
    }
    Ok(t.elapsed().as_secs_f64())
}

/// The `cat FILE >/dev/null` baseline: the fastest of three reads after a warming one (a
/// single read varies by tens of percent on a shared machine).
pub fn cat_seconds(path: &Path) -> Result<f64> {
    read_seconds(path)?;
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        best = best.min(read_seconds(path)?);
    }
    Ok(best)
}

/// A read error naming the file, as the library reports its own.
fn io_error(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}
