//! The CPU reference renderer: the same plan and the same semantics as the engine, no GPU.

use crate::color::norm::Norm;
use crate::color::scale::{resolve_ranges, ColorScale};
use crate::cpu;
use crate::error::Result;
use crate::figure::plan::{native_tiles, Figure, Plan, RenderOptions, Tile};
use crate::figure::quads::FigureQuads;
use crate::pool::accum::{HeadStats, Reduce};
use crate::source::AttentionSource;

/// The CPU reference renderer: same plan, same semantics, no GPU.
pub fn render_cpu(source: &dyn AttentionSource, options: &RenderOptions) -> Result<Figure> {
    let mut plan = Plan::new(source, options)?;
    let pooled = cpu::pool_cells(source, &plan.cells, plan.geometry, plan.pool)?;
    let stats: Vec<HeadStats> = pooled.iter().map(|p| cpu::head_stats(&p.accum)).collect();
    let ranges = cpu_ranges(
        &pooled,
        &stats,
        &plan,
        options.norm,
        options.reduce,
        &options.scale,
    )?;
    // The CPU path reads the selected heads once more for the statistics (the GPU path folds
    // them into its single pass).
    let patterns: Vec<_> = match plan.patterns {
        Some(o) => cpu::pattern::pattern_cells(source, &plan.cells, o, plan.pool)?
            .iter()
            .map(|s| s.finish())
            .collect(),
        None => Vec::new(),
    };
    plan.arrange(&patterns, options)?;
    if options.colorbar {
        plan.add_colorbar(options.norm, &ranges, &options.scale);
    }
    let cells: Vec<Vec<u32>> = pooled
        .iter()
        .zip(&ranges)
        .map(|(p, &r)| {
            cpu::colorize_scaled(
                &p.accum,
                r,
                &options.scale,
                options.reduce,
                options.colormap,
            )
        })
        .collect();
    let colors: Vec<u32> = cells.concat();
    let quads = FigureQuads::new(&plan.layout, &plan.geometry, &[(0, plan.cells.len())]);
    let rgba = cpu::draw_quads(&quads, &[colors], options.colormap);
    Ok(Figure {
        patterns,
        width: quads.width,
        height: quads.height,
        rgba,
        scale: options.scale.clone(),
        cell_colors: options.cell_colors.then_some(cells),
        causal: pooled.first().is_some_and(|p| p.causal),
        stats,
        ranges,
        plan,
    })
}

/// The CPU twin of `Engine::resolve_ranges`.
pub fn cpu_ranges(
    pooled: &[cpu::HeadPooler],
    stats: &[HeadStats],
    plan: &Plan,
    norm: Norm,
    reduce: Reduce,
    scale: &ColorScale,
) -> Result<Vec<[f32; 2]>> {
    let w = plan.geometry.pooled_w;
    let restricted: Vec<HeadStats>;
    let stats = if scale.exclude_keys > 0 {
        restricted = pooled
            .iter()
            .map(|p| cpu::cell_range(&p.accum, w, plan.first_column))
            .collect();
        &restricted
    } else {
        stats
    };
    let ranges = resolve_ranges(norm, scale, stats, plan.heads.len(), |ranges| {
        Ok(pooled
            .iter()
            .zip(ranges)
            .map(|(p, &r)| cpu::histogram(&p.accum, w, plan.first_column, reduce, r))
            .collect())
    })?;
    Ok(plan.fixed_ranges(ranges))
}

/// Native-resolution tiles on the CPU, a head at a time.
pub fn tiles_cpu(
    source: &dyn AttentionSource,
    figure: &Figure,
    options: &RenderOptions,
) -> Result<Vec<Tile>> {
    native_tiles(
        source,
        figure,
        |_| 1,
        |cells, ranges, native| {
            let pooled = cpu::pool_cells(source, cells, native, figure.resolved_pool())?;
            Ok(pooled
                .iter()
                .zip(ranges)
                .map(|(p, &r)| {
                    cpu::colorize_scaled(
                        &p.accum,
                        r,
                        &figure.scale,
                        options.reduce,
                        options.colormap,
                    )
                })
                .collect())
        },
    )
}
