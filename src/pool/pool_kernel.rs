//! Which of the pool shader's loops a dispatch takes (shaders/pool.wgsl). Each bin's keys are
//! folded in the same order by all of them, so every accumulator is the same, bit for bit; they
//! differ in how an invocation walks a row's 16-byte words. On llvmpipe the general loop's
//! per-row cost exceeded its loads for narrow bins (a loop whose length each lane works out
//! for itself), so narrow bins read a fixed number of words, bins of whole words several
//! pixels at a time, and bins of one key the pixels of a word at a time.

use crate::source::DType;

/// Words of a row one invocation of a `pool_lanes` entry point reads (`LANE_WORDS` in
/// shaders/pool.wgsl).
const LANE_WORDS: u32 = 4;

/// The most words a bin's row may span for [`PoolKernel::Fixed`]; wider bins loop. (On
/// llvmpipe, 2000 keys into 72 px, 8 words: pool passes 0.23 -> 0.19 s; each width is one more
/// pipeline, compiled when a run needs it, ~19 ms at 8 against 13 for the loop.)
const MAX_FIXED_WORDS: u32 = 8;

/// A pool entry point and its loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKernel {
    /// `pool`: each bin row's words in a loop as long as the bin needs.
    Loop,
    /// `pool` with `FIXED_WORDS` = n (1 ..= 8): every bin row reads n words from its first
    /// one, whatever it needs (at most one more), with no loop to steer; `fold` leaves out
    /// the keys outside the bin.
    Fixed(u32),
    /// `pool_lanes{n}` (n = 1, 2, 4): every bin is n whole words of every row; an invocation
    /// takes the 4 / n adjacent pixels of 4 words and reads each word once.
    Lanes(u32),
    /// `pool_keys`: every bin is one key (a head at its own width); an invocation takes the
    /// pixels of one word, reads it once a row and folds each element into its own pixel.
    Keys,
}

impl PoolKernel {
    /// The kernel for `keys` keys of `dtype` pooled into `pooled_w` columns (the widths
    /// [`bin_edges`] makes), `rows_on_words` when every row of the dispatch starts on a word.
    ///
    /// [`bin_edges`]: crate::pool::geometry::bin_edges
    pub fn choose(keys: usize, pooled_w: u32, dtype: DType, rows_on_words: bool) -> PoolKernel {
        if rows_on_words && pooled_w as usize == keys {
            return PoolKernel::Keys;
        }
        let lanes = lane_bin_words(keys, pooled_w, dtype);
        if rows_on_words && lanes > 0 {
            return PoolKernel::Lanes(lanes);
        }
        let per_word = 16 / dtype.size();
        let widest = keys.div_ceil(pooled_w.max(1) as usize);
        let uniform = pooled_w > 0 && keys.is_multiple_of(pooled_w as usize);
        let whole = widest.is_multiple_of(per_word) || per_word.is_multiple_of(widest);
        let words = if rows_on_words && uniform && whole {
            // no bin straddles more words than its width needs
            widest.div_ceil(per_word) as u32
        } else {
            // the widest bin, starting anywhere in a word
            (widest + per_word - 1).div_ceil(per_word) as u32
        };
        if words <= MAX_FIXED_WORDS {
            PoolKernel::Fixed(words)
        } else {
            PoolKernel::Loop
        }
    }

    /// Its entry point, and its `FIXED_WORDS` (0: the loop).
    pub(super) fn entry(self) -> (&'static str, u32) {
        match self {
            PoolKernel::Loop => ("pool", 0),
            PoolKernel::Fixed(n) => ("pool", n),
            PoolKernel::Lanes(1) => ("pool_lanes1", 0),
            PoolKernel::Lanes(2) => ("pool_lanes2", 0),
            PoolKernel::Lanes(4) => ("pool_lanes4", 0),
            PoolKernel::Lanes(n) => unreachable!("bins of {n} words"),
            PoolKernel::Keys => ("pool_keys", 0),
        }
    }

    /// Its index among the pipelines of one dtype and set of flags.
    pub(super) fn slot(self) -> usize {
        match self {
            PoolKernel::Loop => 0,
            PoolKernel::Fixed(n) => n as usize,
            PoolKernel::Lanes(n) => MAX_FIXED_WORDS as usize + 1 + n.trailing_zeros() as usize,
            PoolKernel::Keys => MAX_FIXED_WORDS as usize + 4,
        }
    }

    /// Pixels of a pooled row one invocation takes, for elements of `dtype`.
    pub(super) fn pixels_per_invocation(self, dtype: DType) -> u32 {
        match self {
            PoolKernel::Lanes(n) => LANE_WORDS / n,
            PoolKernel::Keys => 16 / dtype.size() as u32,
            _ => 1,
        }
    }
}

/// Pipelines a dtype and set of flags may have: the loop, each fixed width, 3 lane widths, one
/// key a bin.
pub(super) const POOL_KERNELS: usize = MAX_FIXED_WORDS as usize + 5;

/// The words each bin spans (1, 2 or 4) when every bin is the same whole number of 16-byte
/// words and the pooled width a multiple of the pixels an invocation of `pool_lanes` takes; 0
/// otherwise. Uniform bins from key 0 are what `bin_edges` makes when the width divides the
/// keys, so the lane kernels compute them instead of reading `col_edges`.
fn lane_bin_words(keys: usize, pooled_w: u32, dtype: DType) -> u32 {
    let w = pooled_w as usize;
    if w == 0 || !keys.is_multiple_of(w) {
        return 0;
    }
    let words = match keys / w * dtype.size() {
        16 => 1,
        32 => 2,
        64 => 4,
        _ => return 0,
    };
    if pooled_w.is_multiple_of(LANE_WORDS / words) {
        words
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PoolKernel::*;

    #[test]
    fn bins_pick_their_loop() {
        let choose = |k, w, d| PoolKernel::choose(k, w, d, true);
        // a 2048-token head into 256-, 128- and 512-px cells
        assert_eq!(choose(2048, 256, DType::F32), Lanes(2));
        assert_eq!(choose(2048, 128, DType::F32), Lanes(4));
        assert_eq!(choose(2048, 512, DType::F32), Lanes(1));
        assert_eq!(choose(2048, 256, DType::F16), Lanes(1));
        assert_eq!(choose(32768, 1024, DType::BF16), Lanes(4));
        assert_eq!(choose(2000, 250, DType::F32), Lanes(2));
        // rows off words: the same bins, read as any bins
        assert_eq!(PoolKernel::choose(2048, 256, DType::F32, false), Fixed(3));
        // uniform bins of whole words but for the lanes: 3 words, 8 words (32 f32 keys)
        assert_eq!(choose(1536, 128, DType::F32), Fixed(3));
        assert_eq!(choose(32768, 1024, DType::F32), Fixed(8));
        assert_eq!(PoolKernel::choose(32768, 1024, DType::F32, false), Loop);
        // uneven bins of 7 or 8 keys, at most 3 words; of 15 or 16 keys, 5 (f32) or 3 (f16);
        // of 27 or 28 f32 keys, 8; of 31 or 32, 9: the loop
        assert_eq!(choose(2000, 256, DType::F32), Fixed(3));
        assert_eq!(choose(2000, 128, DType::F32), Fixed(5));
        assert_eq!(choose(2000, 128, DType::F16), Fixed(3));
        assert_eq!(choose(2000, 72, DType::F32), Fixed(8));
        assert_eq!(choose(2000, 64, DType::F32), Loop);
        // bins of 32 f32 keys, one key (native resolution), half-word bins (on words or not)
        assert_eq!(choose(4096, 128, DType::F32), Fixed(8));
        assert_eq!(choose(53, 53, DType::F32), Keys);
        assert_eq!(PoolKernel::choose(53, 53, DType::F32, false), Fixed(1));
        assert_eq!(choose(256, 256, DType::F16), Keys);
        assert_eq!(choose(2048, 1024, DType::F32), Fixed(1));
        assert_eq!(PoolKernel::choose(2048, 1024, DType::F32, false), Fixed(2));
        // 3 pixels of one word: not a multiple of a lane's 4
        assert_eq!(choose(12, 3, DType::F32), Fixed(1));
        let all: Vec<_> = [Loop]
            .into_iter()
            .chain((1..=MAX_FIXED_WORDS).map(Fixed))
            .chain([Lanes(1), Lanes(2), Lanes(4), Keys])
            .collect();
        for (i, k) in all.iter().enumerate() {
            assert_eq!(k.slot(), i, "{k:?}");
        }
        assert_eq!(all.len(), POOL_KERNELS);
        assert_eq!(Lanes(1).pixels_per_invocation(DType::F32), 4);
        assert_eq!(Lanes(4).pixels_per_invocation(DType::F16), 1);
        assert_eq!(Fixed(3).pixels_per_invocation(DType::F32), 1);
        assert_eq!(Keys.pixels_per_invocation(DType::F32), 4);
        assert_eq!(Keys.pixels_per_invocation(DType::BF16), 8);
    }
}
