//! Pooling reductions and their running state: what one pooled pixel keeps (max, min, sum,
//! count) so max, mean and min all come out of one pass, how it lies in GPU memory (16 bytes,
//! or one word where every bin is one entry), and the per-head statistics built from it.

use bytemuck::{Pod, Zeroable};

use crate::pool::geometry::CellGeometry;

/// How the entries of one pooled pixel's bin are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Reduce {
    /// Keeps single-entry spikes (attention sinks, sharp columns) visible at any zoom.
    #[default]
    Max,
    Mean,
    Min,
    /// The signed value of largest magnitude (positive on a tie): the default of `diff`, where
    /// a bin's strongest change matters whichever its sign. Read from the max and min already
    /// pooled, so it costs the pool pass nothing.
    Extreme,
}

impl Reduce {
    pub const ALL: [Reduce; 4] = [Reduce::Max, Reduce::Mean, Reduce::Min, Reduce::Extreme];

    pub fn name(self) -> &'static str {
        match self {
            Reduce::Max => "max",
            Reduce::Mean => "mean",
            Reduce::Min => "min",
            Reduce::Extreme => "extreme",
        }
    }

    pub fn from_name(name: &str) -> Option<Reduce> {
        Reduce::ALL.into_iter().find(|r| r.name() == name)
    }

    /// `REDUCE_*` in `shaders/colorize.wgsl`.
    pub(crate) fn shader_id(self) -> u32 {
        match self {
            Reduce::Max => 0,
            Reduce::Mean => 1,
            Reduce::Min => 2,
            Reduce::Extreme => 3,
        }
    }
}

/// One pooled pixel's running state: everything max, mean and min need, so all three come out
/// of one pass over the input. Mirrors `Accum` in `shaders/common.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct Accum {
    pub max: f32,
    pub min: f32,
    /// Sum of finite entries, added row by row in key order (see `shaders/pool.wgsl`).
    pub sum: f32,
    /// Bits 0..31: number of finite, unmasked entries; bit 31: the bin held a non-finite entry.
    pub count_bad: u32,
}

pub(crate) const BAD_BIT: u32 = 1 << 31;

impl Accum {
    /// No entries yet. `f32::MAX` sentinels instead of infinities, because WGSL lets
    /// implementations assume no infinities exist.
    pub const EMPTY: Accum = Accum {
        max: -f32::MAX,
        min: f32::MAX,
        sum: 0.0,
        count_bad: 0,
    };

    pub fn count(&self) -> u32 {
        self.count_bad & !BAD_BIT
    }

    pub fn is_bad(&self) -> bool {
        self.count_bad & BAD_BIT != 0
    }

    /// Folds `zeros` entries of exactly 0, set aside while causal masking was being detected,
    /// back in as if they had been pooled. The CPU twin of `fold_masked_zeros` in
    /// `shaders/pool.wgsl`.
    pub fn fold_zeros(&mut self, zeros: u32) {
        if zeros == 0 {
            return;
        }
        if self.count() == 0 {
            self.max = 0.0;
            self.min = 0.0;
        } else {
            self.max = self.max.max(0.0);
            self.min = self.min.min(0.0);
        }
        self.count_bad = (self.count() + zeros) | (self.count_bad & BAD_BIT);
    }

    /// The pooled value, or `None` for a bin with no finite unmasked entry.
    pub fn value(&self, reduce: Reduce) -> Option<f32> {
        if self.count() == 0 {
            return None;
        }
        Some(match reduce {
            Reduce::Max => self.max,
            Reduce::Min => self.min,
            Reduce::Mean => self.sum / self.count() as f32,
            Reduce::Extreme => signed_extreme(self.max, self.min),
        })
    }
}

/// How the pooled pixels of a run lie in GPU memory: `shaders/accum.wgsl`, which says why.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AccumLayout {
    /// An [`Accum`] a pixel, 16 bytes: bins of any number of entries.
    #[default]
    Full,
    /// One word a pixel, 4 bytes, where every bin is one entry (a head pooled at its own
    /// size): the entry's value, or a marker for none and for a non-finite one.
    Single,
}

/// `SINGLE_EMPTY`, `SINGLE_BAD` and `SINGLE_FLIP` in `shaders/accum.wgsl`.
const SINGLE_EMPTY: u32 = 0;
const SINGLE_BAD: u32 = 1;
const SINGLE_FLIP: u32 = 0x7fff_ffff;

impl AccumLayout {
    /// [`AccumLayout::Single`] where every bin of a `queries` × `keys` head pooled into
    /// `geometry` is one entry, else [`AccumLayout::Full`].
    pub fn for_bins(queries: usize, keys: usize, geometry: CellGeometry) -> AccumLayout {
        if geometry.pooled_w as usize == keys && geometry.pooled_h as usize == queries {
            AccumLayout::Single
        } else {
            AccumLayout::Full
        }
    }

    pub fn pixel_bytes(self) -> u64 {
        match self {
            AccumLayout::Full => std::mem::size_of::<Accum>() as u64,
            AccumLayout::Single => 4,
        }
    }

    /// The pipeline constant of the shaders that read or write accumulators.
    pub(crate) fn constant(self) -> (&'static str, f64) {
        ("SINGLE", f64::from(u8::from(self == AccumLayout::Single)))
    }

    /// This layout's index in per-layout tables (`Full` 0, `Single` 1).
    pub(crate) fn index(self) -> usize {
        usize::from(self == AccumLayout::Single)
    }

    /// Pixels as stored in this layout: the host side of `load_accum` in
    /// `shaders/accum.wgsl`.
    pub fn decode(self, bytes: &[u8]) -> Vec<Accum> {
        match self {
            AccumLayout::Full => bytemuck::pod_collect_to_vec(bytes),
            AccumLayout::Single => bytes
                .chunks_exact(4)
                .map(|w| {
                    let w = u32::from_le_bytes(w.try_into().expect("4 bytes"));
                    match w {
                        SINGLE_EMPTY => Accum::EMPTY,
                        SINGLE_BAD => Accum {
                            count_bad: BAD_BIT,
                            ..Accum::EMPTY
                        },
                        _ => {
                            let v = f32::from_bits(w ^ SINGLE_FLIP);
                            Accum {
                                max: v,
                                min: v,
                                // (as the pool pass adds it: +0.0 for -0.0)
                                sum: 0.0 + v,
                                count_bad: 1,
                            }
                        }
                    }
                })
                .collect(),
        }
    }

    /// `accums` in this layout: the host side of `store_accum` in `shaders/accum_store.wgsl`.
    /// `Single` keeps each pixel's maximum, so it holds pixels of one entry at most.
    pub fn encode(self, accums: &[Accum]) -> Vec<u8> {
        match self {
            AccumLayout::Full => bytemuck::cast_slice(accums).to_vec(),
            AccumLayout::Single => accums
                .iter()
                .flat_map(|a| {
                    let w = if a.is_bad() {
                        SINGLE_BAD
                    } else if a.count() == 0 {
                        SINGLE_EMPTY
                    } else {
                        a.max.to_bits() ^ SINGLE_FLIP
                    };
                    w.to_le_bytes()
                })
                .collect(),
        }
    }
}

/// The one of a bin's max and min with the larger magnitude, the max on a tie: the CPU twin of
/// `signed_extreme` in `shaders/common.wgsl`.
pub fn signed_extreme(max: f32, min: f32) -> f32 {
    if max.abs() >= min.abs() {
        max
    } else {
        min
    }
}

/// Statistics of one head over its finite entries. Mirrors `HeadStats` in `shaders/stats.wgsl`
/// (which keeps the count as two little-endian u32 halves).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct HeadStats {
    pub min: f32,
    pub max: f32,
    pub sum: f32,
    pub _pad0: u32,
    /// Finite, unmasked entries: 64 bits, because one 65536-token head already holds 2^32.
    pub count: u64,
    /// Pooled pixels whose bin held a non-finite entry.
    pub bad_pixels: u32,
    /// Pooled pixels whose bin held no entry at all (every one masked: above a causal diagonal,
    /// outside a sliding window), drawn as the background. The export copies the colours of a
    /// cell with none straight into its target (`compose::Compositor`).
    pub empty_pixels: u32,
}

// The shader writes the count's low half first.
#[cfg(not(target_endian = "little"))]
compile_error!("HeadStats mirrors a GPU struct whose 64-bit count is little-endian");

impl HeadStats {
    pub const EMPTY: HeadStats = HeadStats {
        min: f32::MAX,
        max: -f32::MAX,
        sum: 0.0,
        _pad0: 0,
        count: 0,
        bad_pixels: 0,
        empty_pixels: 0,
    };

    pub fn merge(&self, o: &HeadStats) -> HeadStats {
        HeadStats {
            min: self.min.min(o.min),
            max: self.max.max(o.max),
            sum: self.sum + o.sum,
            count: self.count.saturating_add(o.count),
            bad_pixels: self.bad_pixels.saturating_add(o.bad_pixels),
            empty_pixels: self.empty_pixels.saturating_add(o.empty_pixels),
            ..HeadStats::EMPTY
        }
    }

    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum as f64 / self.count as f64)
    }

    /// (min, max) of the finite entries, if there are any.
    pub fn range(&self) -> Option<(f32, f32)> {
        (self.count > 0).then_some((self.min, self.max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_shaders() {
        assert_eq!(std::mem::size_of::<Accum>(), 16);
        assert_eq!(std::mem::size_of::<HeadStats>(), 32);
    }

    /// Pixels of one entry survive the one-word layout bit for bit (the sum as the pool pass
    /// adds it), no value reads as a marker, and zeroed memory reads as no entry.
    #[test]
    fn one_word_pixels_round_trip() {
        let one = |v: f32| Accum {
            max: v,
            min: v,
            sum: 0.0 + v,
            count_bad: 1,
        };
        let bad = Accum {
            count_bad: BAD_BIT,
            ..Accum::EMPTY
        };
        let mut pixels = vec![Accum::EMPTY, bad];
        for v in [
            0.0,
            -0.0,
            1.0,
            -2.5,
            f32::MAX,
            -f32::MAX,
            f32::MIN_POSITIVE / 8.0,
        ] {
            pixels.push(one(v));
        }
        let words = AccumLayout::Single.encode(&pixels);
        assert_eq!(words.len(), 4 * pixels.len());
        let back = AccumLayout::Single.decode(&words);
        let bits = |a: &Accum| {
            (
                a.max.to_bits(),
                a.min.to_bits(),
                a.sum.to_bits(),
                a.count_bad,
            )
        };
        for (a, b) in pixels.iter().zip(&back) {
            assert_eq!(bits(a), bits(b), "{a:?}");
        }
        assert_eq!(AccumLayout::Single.decode(&[0; 4]), [Accum::EMPTY]);
        let full = AccumLayout::Full.encode(&pixels);
        assert_eq!(AccumLayout::Full.decode(&full), pixels);
        // every bin one entry, or not
        let g = CellGeometry::new(30, 40, None).unwrap();
        assert_eq!(AccumLayout::for_bins(30, 40, g), AccumLayout::Single);
        let g = CellGeometry::new(300, 400, None).unwrap();
        assert_eq!(AccumLayout::for_bins(300, 400, g), AccumLayout::Full);
        assert_eq!(
            AccumLayout::Single.pixel_bytes() * 4,
            AccumLayout::Full.pixel_bytes()
        );
    }

    #[test]
    fn signed_extreme_keeps_the_sign() {
        assert_eq!(signed_extreme(0.5, -2.0), -2.0);
        assert_eq!(signed_extreme(3.0, -2.0), 3.0);
        assert_eq!(signed_extreme(2.0, -2.0), 2.0);
        assert_eq!(signed_extreme(-1.0, -3.0), -3.0);
        assert_eq!(Reduce::from_name("extreme"), Some(Reduce::Extreme));
    }
}
