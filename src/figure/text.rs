//! Labels rasterized on the CPU from fonts embedded in the binary (no system fonts, the same
//! pixels on every machine), then drawn by the compositor as coverage quads. Rasterizing whole
//! strings here, rather than glyphs on the GPU, lets the CPU reference reproduce every label
//! pixel exactly.

use std::sync::OnceLock;

use ab_glyph::{point, Font, FontRef, PxScale, ScaleFont};

static REGULAR_TTF: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
static ITALIC_TTF: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-Oblique-ascii.ttf");

struct Fonts {
    regular: FontRef<'static>,
    italic: FontRef<'static>,
}

fn fonts() -> &'static Fonts {
    static FONTS: OnceLock<Fonts> = OnceLock::new();
    FONTS.get_or_init(|| Fonts {
        regular: FontRef::try_from_slice(REGULAR_TTF).expect("embedded DejaVu Sans parses"),
        italic: FontRef::try_from_slice(ITALIC_TTF).expect("embedded DejaVu Sans Oblique parses"),
    })
}

/// Typeface of a run of text. `Math` is the italic used for variables, as in `$h = 1$`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Face {
    Regular,
    Math,
}

/// A rasterized string: 8-bit coverage, row-major, `width * height` bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    pub width: u32,
    pub height: u32,
    /// Distance from the top of the bitmap to the baseline.
    pub baseline: u32,
    pub coverage: Vec<u8>,
}

/// Rasterizes `spans` at a line height of `px` pixels.
pub fn rasterize(spans: &[(&str, Face)], px: f32) -> Label {
    let f = fonts();
    let scale = PxScale::from(px);
    let regular = f.regular.as_scaled(scale);
    let ascent = regular.ascent();
    let height = (ascent - regular.descent()).ceil() as u32 + 1;
    let baseline = ascent.ceil();
    // First pass: positions and total width.
    let mut glyphs = Vec::new();
    let mut caret = 0.0f32;
    for &(text, face) in spans {
        let font = match face {
            Face::Regular => &f.regular,
            Face::Math => &f.italic,
        };
        let scaled = font.as_scaled(scale);
        let mut prev = None;
        for c in text.chars() {
            let mut id = scaled.glyph_id(c);
            let mut font = font;
            if id.0 == 0 && face == Face::Math {
                // The math subset is ASCII only; anything else comes from the regular face.
                font = &f.regular;
                id = f.regular.glyph_id(c);
            }
            let scaled = font.as_scaled(scale);
            if let Some(p) = prev {
                caret += scaled.kern(p, id);
            }
            glyphs.push((
                font,
                id.with_scale_and_position(scale, point(caret, baseline)),
            ));
            caret += scaled.h_advance(id);
            prev = Some(id);
        }
    }
    let width = caret.ceil().max(1.0) as u32 + 2;
    let mut coverage = vec![0u8; (width * height) as usize];
    for (font, glyph) in glyphs {
        let Some(outline) = font.outline_glyph(glyph) else {
            continue;
        };
        let b = outline.px_bounds();
        outline.draw(|x, y, c| {
            let px = b.min.x as i32 + x as i32;
            let py = b.min.y as i32 + y as i32;
            if px >= 0 && py >= 0 && (px as u32) < width && (py as u32) < height {
                let i = (py as u32 * width + px as u32) as usize;
                let v = (c.clamp(0.0, 1.0) * 255.0).round() as u8;
                coverage[i] = coverage[i].max(v);
            }
        });
    }
    Label {
        width,
        height,
        baseline: baseline as u32,
        coverage,
    }
}

/// A label rotated a quarter turn counter-clockwise (reads bottom to top).
pub fn rotated(label: Label) -> Label {
    let (w, h) = (label.width, label.height);
    let mut coverage = vec![0u8; (w * h) as usize];
    for y in 0..h {
        for x in 0..w {
            // (x, y) -> (y, w - 1 - x) in a h-wide, w-tall bitmap
            coverage[((w - 1 - x) * h + y) as usize] = label.coverage[(y * w + x) as usize];
        }
    }
    Label {
        width: h,
        height: w,
        baseline: 0,
        coverage,
    }
}

/// CSS `font-size` of text rasterized at line height `px` (ab_glyph scales ascent − descent
/// to `px`; CSS scales the em), for vector export of the same label.
pub fn css_font_size(px: f32) -> f32 {
    let f = &fonts().regular;
    px * f.units_per_em().unwrap_or(2048.0) / f.height_unscaled()
}

/// Labels packed into one coverage atlas, in shelves.
#[derive(Clone, Debug)]
pub struct Atlas {
    pub width: u32,
    pub height: u32,
    pub coverage: Vec<u8>,
    /// Top-left corner of each label, in input order.
    pub origins: Vec<(u32, u32)>,
}

impl Atlas {
    pub fn pack(labels: &[Label]) -> Atlas {
        let width = labels.iter().map(|l| l.width).max().unwrap_or(1).max(256);
        let (mut x, mut y, mut shelf) = (0u32, 0u32, 0u32);
        let mut origins = Vec::with_capacity(labels.len());
        for l in labels {
            if x + l.width > width {
                x = 0;
                y += shelf;
                shelf = 0;
            }
            origins.push((x, y));
            x += l.width;
            shelf = shelf.max(l.height);
        }
        let height = (y + shelf).max(1);
        let mut coverage = vec![0u8; (width * height) as usize];
        for (l, &(ox, oy)) in labels.iter().zip(&origins) {
            for row in 0..l.height {
                let dst = ((oy + row) * width + ox) as usize;
                let src = (row * l.width) as usize;
                coverage[dst..dst + l.width as usize]
                    .copy_from_slice(&l.coverage[src..src + l.width as usize]);
            }
        }
        Atlas {
            width,
            height,
            coverage,
            origins,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_have_ink_and_grow_with_text() {
        let short = rasterize(&[("h", Face::Math), (" = 1", Face::Regular)], 20.0);
        let long = rasterize(&[("h", Face::Math), (" = 12", Face::Regular)], 20.0);
        assert!(long.width > short.width);
        assert!(short.coverage.contains(&255));
        assert_eq!(short.coverage.len() as u32, short.width * short.height);
    }

    #[test]
    fn rasterization_is_deterministic() {
        let a = rasterize(&[("l = 8", Face::Regular)], 17.0);
        let b = rasterize(&[("l = 8", Face::Regular)], 17.0);
        assert_eq!(a, b);
    }
}
