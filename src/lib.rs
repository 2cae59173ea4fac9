//! attnviz: transformer attention maps rendered on the GPU.
//!
//! Data flows one way, one folder per stage (`ARCHITECTURE.md` has the map):
//! a [`source`] yields row blocks of each head; [`pool`] folds them into per-cell accumulators
//! and statistics on the GPU (and recomputes attention from Q and K); [`color`] resolves colour
//! ranges and applies the colormap; [`figure`] lays out cells, labels and colorbar as plain
//! data; [`compose`] draws them into a texture or a window surface. The [`engine`] is the only
//! place that combines the stages, for both targets; the [`viewer`] draws through it. [`cpu`]
//! repeats every stage on the CPU as the tests' oracle and the no-adapter fallback.
//!
//! Imports run one way, down this list: viewer, engine, cpu, compose, figure, color, pool,
//! source, then gpu and files, then error (`tests/layering.rs` keeps it so).

pub mod color;
pub mod compose;
pub mod cpu;
pub mod engine;
pub mod error;
pub mod figure;
pub mod files;
pub mod gpu;
pub mod pool;
pub mod source;
pub mod viewer;

pub use color::norm::Norm;
pub use color::Colormap;
pub use cpu::{render_cpu, tiles_cpu};
pub use engine::accumulator::{HeadAccumulator, PooledHead};
pub use engine::{Engine, Scene};
pub use error::{Error, Result};
pub use figure::plan::{Figure, Plan, RenderOptions, Tile};
pub use gpu::Gpu;
pub use pool::accum::{HeadStats, Reduce};
pub use source::{AttentionSource, DType, Shape};
