//! What pooling does besides reducing: row normalization and the causal mask, and the flags
//! they become in the pool shader.

use crate::source::AttentionSource;

pub(super) const FLAG_ROW_NORM: u32 = 1;
pub(super) const FLAG_CAUSAL: u32 = 2;
pub(super) const FLAG_AUTO_CAUSAL: u32 = 4;
/// Set by the ingest when its cells hide keys outside a sliding window or before an attention
/// chunk (`Ingest::hidden`).
pub(super) const FLAG_WINDOW: u32 = 8;

/// Whether entries above the diagonal (bottom-right aligned when Q < K) are attention at all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Causal {
    /// Every entry counts.
    #[default]
    Off,
    /// Entries above the diagonal are masked: out of the statistics, drawn as background.
    On,
    /// Masked when every selected head is exactly zero above the diagonal, detected in the
    /// same single pass.
    Auto,
}

/// What pooling does besides reducing: options that change which entries count and how.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolOptions {
    /// Divide each query row by its own maximum before pooling (`--norm row`).
    pub row_norm: bool,
    pub causal: Causal,
    /// Key `k` is above the diagonal in row `q` when `k > q + diagonal`; `None` for bottom-right
    /// alignment (`keys - queries`), see [`crate::source::AttentionSource::diagonal`].
    pub diagonal: Option<i64>,
}

impl PoolOptions {
    /// These options with the rows at `source`'s diagonal unless they already say where: what
    /// the causal mask and the statistics' distances measure from, alike on the GPU and in the
    /// CPU twin.
    pub fn placed_at(self, source: &dyn AttentionSource) -> PoolOptions {
        PoolOptions {
            diagonal: self.diagonal.or(Some(source.diagonal())),
            ..self
        }
    }

    /// These options for pooling heads recomputed from Q and K: masked as the source's causal
    /// flag says, whatever `causal` says (Q and K carry no mask of their own, so there is
    /// nothing to detect: a two-sided window of 1 leaves every key past the diagonal 0, and
    /// the layer is still not causal), at the source's diagonal. The GPU's `pool_qk` asks
    /// here, and the CPU twin's `pool_cells` through [`PoolOptions::settled_for`].
    pub fn for_qk(self, src: &crate::source::qk::QkSource) -> PoolOptions {
        PoolOptions {
            causal: if src.causal() {
                Causal::On
            } else {
                Causal::Off
            },
            diagonal: Some(src.diagonal()),
            ..self
        }
    }

    /// These options for pooling `cells` of `source`: heads recomputed from Q and K masked as
    /// their source says ([`PoolOptions::for_qk`]), and `Causal::Auto` settled as off for a
    /// difference whose inputs show keys past the diagonal
    /// ([`crate::source::DiffSource::inputs_show_upper`]), whatever the difference's values.
    /// The GPU's `pool_diff` and the CPU twin's `pool_cells` both ask here.
    pub fn settled_for(
        self,
        source: &dyn AttentionSource,
        cells: &[(usize, usize)],
    ) -> crate::error::Result<PoolOptions> {
        if let Some(qk) = source.as_qk() {
            return Ok(self.for_qk(qk));
        }
        let Some(diff) = source.as_diff().filter(|_| self.causal == Causal::Auto) else {
            return Ok(self);
        };
        let diagonal = self.diagonal.unwrap_or(source.diagonal());
        Ok(if diff.inputs_show_upper(cells, diagonal)? {
            PoolOptions {
                causal: Causal::Off,
                ..self
            }
        } else {
            self
        })
    }

    /// The pool pass's `FLAGS` for these options, with `window`: a cell of the run masks keys
    /// outside a sliding window or attention chunk (`FLAG_WINDOW`).
    pub(super) fn flags(&self, window: bool) -> u32 {
        (if self.row_norm { FLAG_ROW_NORM } else { 0 })
            | match self.causal {
                Causal::Off => 0,
                Causal::On => FLAG_CAUSAL,
                Causal::Auto => FLAG_AUTO_CAUSAL,
            }
            | if window { FLAG_WINDOW } else { 0 }
    }
}
