//! Colour: per-scope ranges (normalization, scale curves, clipping and excluded keys), matplotlib's
//! colormaps, and the colour pass that turns pooled cells into packed RGBA on the GPU.

pub mod colorize;
pub mod colormap;
pub mod limits;
pub mod norm;
pub mod scale;
mod tables;

pub use colormap::Colormap;
