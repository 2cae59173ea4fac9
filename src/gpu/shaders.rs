//! Every WGSL source, assembled in one place: shared pieces (`shaders/common.wgsl`) are
//! prepended here, so the stages and `tests/shaders.rs` compile exactly the same text.

macro_rules! with_common {
    ($file:literal) => {
        concat!(
            include_str!("../../shaders/common.wgsl"),
            include_str!(concat!("../../shaders/", $file))
        )
    };
    // (shaders that read a chunk texture: its addressing)
    (chunk $file:literal) => {
        concat!(
            include_str!("../../shaders/common.wgsl"),
            include_str!("../../shaders/chunk.wgsl"),
            include_str!(concat!("../../shaders/", $file))
        )
    };
    // (shaders that read pooled accumulators: their layouts)
    (accum $file:literal) => {
        concat!(
            include_str!("../../shaders/common.wgsl"),
            include_str!("../../shaders/accum.wgsl"),
            include_str!(concat!("../../shaders/", $file))
        )
    };
}

/// Ingest and pooling (`pool`, `row_maxima`, `fold_masked_zeros`).
pub const POOL: &str = concat!(
    include_str!("../../shaders/common.wgsl"),
    include_str!("../../shaders/chunk.wgsl"),
    include_str!("../../shaders/accum.wgsl"),
    include_str!("../../shaders/accum_store.wgsl"),
    include_str!("../../shaders/qk_mask.wgsl"),
    include_str!("../../shaders/pool.wgsl"),
    include_str!("../../shaders/pool_fold.wgsl")
);
/// Per-head statistics of pooled cells.
pub const STATS: &str = with_common!(accum "stats.wgsl");
/// Per-head pattern statistics, on the pool pass's chunks.
pub const PATTERN: &str = with_common!(chunk "pattern.wgsl");
/// The pool pass and the pattern statistics' profiles from the same loads
/// (`shaders/pattern_pool.wgsl`): the pattern module with the pool pass's fold and its
/// accumulator layouts.
pub const PATTERN_POOL: &str = concat!(
    include_str!("../../shaders/common.wgsl"),
    include_str!("../../shaders/chunk.wgsl"),
    include_str!("../../shaders/accum.wgsl"),
    include_str!("../../shaders/accum_store.wgsl"),
    include_str!("../../shaders/qk_mask.wgsl"),
    include_str!("../../shaders/pattern.wgsl"),
    include_str!("../../shaders/pool_fold.wgsl"),
    include_str!("../../shaders/pattern_pool.wgsl")
);
/// The pattern statistics from a Q/K head's scores (`shaders/pattern_qk.wgsl`), appended to
/// the pattern module whose buffers it fills; a template expanded per head dimension by
/// `pool::pattern_qk`.
pub const PATTERN_QK_TEMPLATE: &str = concat!(
    include_str!("../../shaders/common.wgsl"),
    include_str!("../../shaders/chunk.wgsl"),
    include_str!("../../shaders/qk_mask.wgsl"),
    include_str!("../../shaders/pattern.wgsl"),
    include_str!("../../shaders/pattern_qk.wgsl"),
    include_str!("../../shaders/qk_table.wgsl")
);
/// Normalization and colormap lookup.
pub const COLORIZE: &str = with_common!(accum "colorize.wgsl");
/// `A − B` of two blocks of rows (`attnviz diff`).
pub const DIFF: &str = with_common!("diff.wgsl");
/// Restricted ranges and histograms (`--exclude-keys`, `--clip`).
pub const LIMITS: &str = with_common!(accum "limits.wgsl");
/// The f32 FMA rate probe of `attnviz bench`.
pub const FMA_PROBE: &str = include_str!("../../shaders/fma_probe.wgsl");
/// The cooperative-matrix probe of `attnviz bench --only coop` (f16 inputs, f32 accumulators;
/// only on a device [`crate::gpu::Gpu::with_cooperative_matrices`] opened).
pub const COOP_PROBE: &str = include_str!("../../shaders/coop_probe.wgsl");
/// The render pass that draws the figure.
pub const COMPOSE: &str = include_str!("../../shaders/compose.wgsl");
/// Attention from Q and K; a template expanded per head dimension by `pool::qk`. Both Q/K
/// shaders get their key mask from `shaders/qk_mask.wgsl`.
pub const QK_TEMPLATE: &str = concat!(
    include_str!("../../shaders/chunk.wgsl"),
    include_str!("../../shaders/qk_mask.wgsl"),
    include_str!("../../shaders/qk.wgsl")
);

/// Attention from Q and K pooled in one pass; a template expanded per head dimension by
/// `pool::qk` (common.wgsl for the accumulator layout): the tiled score kernel, the
/// row-per-invocation one (`qk_pool_rows.wgsl`) and the passes they share.
pub const QK_POOL_TEMPLATE: &str = concat!(
    include_str!("../../shaders/common.wgsl"),
    include_str!("../../shaders/chunk.wgsl"),
    include_str!("../../shaders/qk_mask.wgsl"),
    include_str!("../../shaders/qk_pool.wgsl"),
    include_str!("../../shaders/qk_pool_rows.wgsl"),
    include_str!("../../shaders/qk_table.wgsl")
);

/// The lines `pool::qk` puts in place of the template's `@PROBS_OUT` section for runs whose
/// probabilities go straight into the pool pass's chunk texture.
pub const QK_PROBS_TEXTURE: &str = include_str!("../../shaders/qk_probs_texture.wgsl");

/// Every fixed shader as (name, source), for validation without a GPU. The Q/K template is
/// validated through its expansions.
pub const ALL: [(&str, &str); 10] = [
    ("pool", POOL),
    ("stats", STATS),
    ("pattern", PATTERN),
    ("pattern_pool", PATTERN_POOL),
    ("colorize", COLORIZE),
    ("limits", LIMITS),
    ("diff", DIFF),
    ("compose", COMPOSE),
    ("fma_probe", FMA_PROBE),
    ("coop_probe", COOP_PROBE),
];
