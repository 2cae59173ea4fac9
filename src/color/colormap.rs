//! Colormaps: matplotlib's 256-entry tables, byte for byte. The GPU reads the same table from a
//! storage buffer, so there is exactly one source of colour truth.

use super::tables as t;

/// A named 256-entry colormap. The order is the cycle order of the viewer's `c` key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Colormap {
    #[default]
    Viridis,
    Magma,
    Inferno,
    Plasma,
    Cividis,
    Turbo,
    Gray,
    /// Diverging maps, for signed values such as differences: centre them with `--center` or
    /// `--symmetric` so that white (or grey) marks the centre value.
    RdBuR,
    RdBu,
    Coolwarm,
    Bwr,
    Seismic,
    PiYG,
}

impl Colormap {
    pub const ALL: [Colormap; 13] = [
        Colormap::Viridis,
        Colormap::Magma,
        Colormap::Inferno,
        Colormap::Plasma,
        Colormap::Cividis,
        Colormap::Turbo,
        Colormap::Gray,
        Colormap::RdBuR,
        Colormap::RdBu,
        Colormap::Coolwarm,
        Colormap::Bwr,
        Colormap::Seismic,
        Colormap::PiYG,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Colormap::Viridis => "viridis",
            Colormap::Magma => "magma",
            Colormap::Inferno => "inferno",
            Colormap::Plasma => "plasma",
            Colormap::Cividis => "cividis",
            Colormap::Turbo => "turbo",
            Colormap::Gray => "gray",
            Colormap::RdBuR => "RdBu_r",
            Colormap::RdBu => "RdBu",
            Colormap::Coolwarm => "coolwarm",
            Colormap::Bwr => "bwr",
            Colormap::Seismic => "seismic",
            Colormap::PiYG => "PiYG",
        }
    }

    pub fn from_name(name: &str) -> Option<Colormap> {
        Colormap::ALL.into_iter().find(|c| c.name() == name)
    }

    /// Whether the map is diverging (made for signed values around a centre).
    pub fn is_diverging(self) -> bool {
        matches!(
            self,
            Colormap::RdBuR
                | Colormap::RdBu
                | Colormap::Coolwarm
                | Colormap::Bwr
                | Colormap::Seismic
                | Colormap::PiYG
        )
    }

    /// matplotlib's `cmap(np.arange(256), bytes=True)[:, :3]`.
    pub fn table(self) -> &'static [[u8; 3]; 256] {
        match self {
            Colormap::Viridis => &t::VIRIDIS,
            Colormap::Magma => &t::MAGMA,
            Colormap::Inferno => &t::INFERNO,
            Colormap::Plasma => &t::PLASMA,
            Colormap::Cividis => &t::CIVIDIS,
            Colormap::Turbo => &t::TURBO,
            Colormap::Gray => &t::GRAY,
            Colormap::RdBuR => &t::RDBU_R,
            Colormap::RdBu => &t::RDBU,
            Colormap::Coolwarm => &t::COOLWARM,
            Colormap::Bwr => &t::BWR,
            Colormap::Seismic => &t::SEISMIC,
            Colormap::PiYG => &t::PIYG,
        }
    }

    /// The table as packed little-endian RGBA words (alpha 255), the layout the shaders read.
    pub fn packed(self) -> [u32; 256] {
        let mut out = [0u32; 256];
        for (o, c) in out.iter_mut().zip(self.table()) {
            *o = pack_rgba([c[0], c[1], c[2], 255]);
        }
        out
    }
}

/// Colour of non-finite entries: pure magenta appears in none of the tables, so a NaN can never
/// pass for data.
pub const BAD_COLOR: [u8; 4] = [255, 0, 255, 255];

/// RGBA bytes as the `u32` that `unpack4x8unorm` reads back in the same order.
pub fn pack_rgba(c: [u8; 4]) -> u32 {
    u32::from_le_bytes(c)
}

/// LUT index of a normalized value: matplotlib's rule, `min(floor(x * 256), 255)` on [0, 1],
/// with values below 0 taking the first colour and above 1 the last (its default under/over).
pub fn lut_index(x: f32) -> usize {
    if x.is_nan() || x <= 0.0 {
        0
    } else if x >= 1.0 {
        255
    } else {
        ((x * 256.0) as usize).min(255)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lut_index_follows_matplotlib() {
        assert_eq!(lut_index(0.0), 0);
        assert_eq!(lut_index(-1.0), 0);
        assert_eq!(lut_index(1.0 / 256.0), 1);
        assert_eq!(lut_index(0.999_999), 255);
        assert_eq!(lut_index(1.0), 255);
        assert_eq!(lut_index(2.0), 255);
    }

    #[test]
    fn bad_colour_is_in_no_table() {
        for cmap in Colormap::ALL {
            assert!(
                cmap.table().iter().all(|c| c[..] != BAD_COLOR[..3]),
                "{cmap:?}"
            );
        }
    }
}
