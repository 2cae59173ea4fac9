//! `--layout-json`: where everything landed on the figure and what its colours mean, so other
//! tools can annotate it (highlight a head, mark a token) without re-deriving the layout.

use std::path::Path;

use serde_json::{json, Value};

use crate::color::scale::Scale;
use crate::error::Result;
use crate::figure::layout::Axis;
use crate::figure::plan::{Figure, RenderOptions};
use crate::files::write_atomic;

/// The figure's layout as JSON: each cell's pixel rectangle, 1-based layer and head, the
/// `[lo, hi]` mapped onto the colormap and the head's data min/max; the colorbar's rectangle,
/// range, scale, caption and tick positions; and where each position tick of the cell axes
/// touches its cell (`axis_ticks`: cell index, `query` or `key`, 0-based position, pixel).
pub fn layout_json(figure: &Figure, options: &RenderOptions) -> Value {
    let layout = &figure.plan.layout;
    let scale = &figure.scale;
    let cells: Vec<Value> = layout
        .cells
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let st = figure.stats.get(i);
            json!({
                "layer": figure.plan.layer_number(c.layer),
                "head": c.head + 1,
                "x": c.x, "y": c.y, "width": c.width, "height": c.height,
                "pooled_width": figure.plan.geometry.pooled_w,
                "pooled_height": figure.plan.geometry.pooled_h,
                "range": figure.ranges.get(i),
                "log_floor": (scale.scale == Scale::Log)
                    .then(|| figure.ranges.get(i).map(|r| scale.floor_for(r[1])))
                    .flatten(),
                "data_min": st.and_then(|s| s.range()).map(|r| r.0),
                "data_max": st.and_then(|s| s.range()).map(|r| r.1),
            })
        })
        .collect();
    // Position ticks of the cell axes: where each mark touches its cell
    let axis_ticks: Vec<Value> = layout
        .axis_ticks
        .iter()
        .map(|t| {
            json!({
                "cell": t.cell,
                "axis": match t.axis {
                    Axis::Query => "query",
                    Axis::Key => "key",
                },
                "position": t.position,
                "x": t.x,
                "y": t.y,
            })
        })
        .collect();
    let colorbar = match (layout.colorbar, &figure.plan.colorbar) {
        (Some([x, y, w, h]), Some(spec)) => {
            let y_of = |p: f64| y as f64 + (1.0 - p) * (h.max(1) - 1) as f64;
            let ticks: Vec<Value> = spec
                .tick_positions()
                .into_iter()
                .filter_map(|(t, p)| Some(json!({"value": t, "y": y_of(p?)})))
                .collect();
            json!({
                "x": x, "y": y, "width": w, "height": h,
                "lo": spec.lo, "hi": spec.hi,
                "data_units": spec.data_units,
                "relative_to_max": spec.relative,
                "scale": scale_name(spec.scale),
                "center": spec.center,
                "caption": spec.caption,
                "ticks": ticks,
            })
        }
        _ => Value::Null,
    };
    json!({
        "width": figure.width,
        "height": figure.height,
        "norm": options.norm.name(),
        "reduce": options.reduce.name(),
        "colormap": options.colormap.name(),
        "scale": scale_name(scale.scale),
        "log_floor": scale.log_floor,
        "clip": scale.clip,
        "vmin": scale.vmin,
        "vmax": scale.vmax,
        "exclude_keys": scale.exclude_keys,
        "center": scale.center,
        "symmetric": scale.symmetric,
        "scale_factor": options.scale_factor,
        "title": figure.plan.title,
        "causal": figure.causal,
        "cells": cells,
        "axis_ticks": axis_ticks,
        "colorbar": colorbar,
    })
}

fn scale_name(s: Scale) -> String {
    match s {
        Scale::Linear => "linear".into(),
        Scale::Log => "log".into(),
        Scale::Sqrt => "sqrt".into(),
        Scale::Gamma(g) => format!("gamma:{g}"),
    }
}

/// Writes [`layout_json`] to `path`, atomically.
pub fn write_layout_json(path: &Path, figure: &Figure, options: &RenderOptions) -> Result<()> {
    let body = serde_json::to_string_pretty(&layout_json(figure, options))
        .unwrap_or_else(|_| "null".into());
    write_atomic(path, |w| std::io::Write::write_all(w, body.as_bytes()))
}
