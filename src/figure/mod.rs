//! The figure as plain data, no GPU: the plan (selection, geometry, layout), text, axes,
//! colorbar, the quads the compose pass draws, and the vector (SVG) and layout-JSON exports.

pub mod axes;
pub mod colorbar;
pub mod layout;
pub mod layout_json;
pub mod options;
pub mod plan;
pub mod quads;
pub mod rank;
pub mod select;
pub mod stats_json;
pub mod summary;
pub mod svg;
pub mod text;
