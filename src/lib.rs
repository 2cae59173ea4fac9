//! attnviz: transformer attention maps rendered on the GPU.
//!
//! Data flows one way: a [`source`] yields row blocks of each head; [`pool`] folds them into
//! per-cell accumulators and statistics on the GPU; [`colorize`] normalizes and applies the
//! colormap; [`compose`] draws cells and labels into a texture that [`export`] reads back.
//! [`cpu`] repeats every stage on the CPU as the tests' oracle and the no-adapter fallback.

pub mod accumulator;
pub mod bench;
pub mod colorbar;
pub mod colorize;
pub mod colormap;
mod colormap_tables;
pub mod compose;
pub mod cpu;
pub mod error;
pub mod export;
pub mod geometry;
pub mod gpu;
pub mod layout;
pub mod norm;
pub mod pool;
pub mod qk;
pub mod render;
pub mod select;
pub mod source;
pub mod text;
pub mod viewer;

pub use accumulator::{HeadAccumulator, PooledHead};
pub use colormap::Colormap;
pub use error::{Error, Result};
pub use gpu::Gpu;
pub use norm::{HeadStats, Norm, Reduce};
pub use render::{render_cpu, tiles_cpu, Engine, Figure, Plan, RenderOptions, Scene, Tile};
pub use source::{AttentionSource, DType, Shape};
