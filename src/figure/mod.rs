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

/// `n` with its noun, singular for one: messages say "1 layer", not "1 layers".
pub fn counted(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
