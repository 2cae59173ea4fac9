//! Vector export: the same layout as the PNG, with labels, ticks and the colorbar as SVG
//! elements and each cell as an embedded PNG at its pixel size on the figure: the pooled image,
//! magnified nearest-neighbour as the compositor does when the cell is larger, because several
//! SVG renderers (librsvg among them) ignore `image-rendering` and would blur small images. Text uses DejaVu Sans, the face the PNG is
//! rasterized with, so the figure keeps its proportions where the font is installed.

use std::fmt::Write as _;
use std::path::Path;

use base64::Engine as _;

use crate::color::colormap::Colormap;
use crate::error::{Error, Result};
use crate::figure::layout::PlacedLabel;
use crate::figure::plan::Figure;
use crate::figure::text::{css_font_size, Face};
use crate::files::write_atomic;

/// Writes `figure` (rendered with `RenderOptions::cell_colors`) as SVG, atomically.
pub fn write_svg(path: &Path, figure: &Figure, colormap: Colormap) -> Result<()> {
    let body = svg_string(figure, colormap)?;
    write_atomic(path, |w| std::io::Write::write_all(w, body.as_bytes()))
}

fn hex([r, g, b, _]: [u8; 4]) -> String {
    format!("#{r:02x}{g:02x}{b:02x}")
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The SVG document of `figure`.
pub fn svg_string(figure: &Figure, colormap: Colormap) -> Result<String> {
    let cells = figure.cell_colors.as_ref().ok_or_else(|| {
        Error::BadOption("SVG export needs the cells' colours (RenderOptions::cell_colors)".into())
    })?;
    let layout = &figure.plan.layout;
    let g = &figure.plan.geometry;
    let (w, h) = (figure.width, figure.height);
    let theme = layout.theme;
    let mut s = String::with_capacity(1 << 16);
    let _ = writeln!(
        s,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="{w}" height="{h}" viewBox="0 0 {w} {h}">"#
    );
    if theme.background[3] > 0 {
        let _ = writeln!(
            s,
            r#"<rect width="{w}" height="{h}" fill="{}"/>"#,
            hex(theme.background)
        );
    }
    let _ = writeln!(s, r#"<g id="cells">"#);
    // (cells ranked out by --top have no rectangle)
    for (cell, colors) in layout.cells.iter().zip(cells).filter(|(c, _)| c.is_drawn()) {
        let png = cell_png(colors, (g.pooled_w, g.pooled_h), (cell.width, cell.height))?;
        // the summary's cells are statistics, not heads
        let name = match &figure.plan.summary {
            Some(summary) => summary.titles[cell.head].clone(),
            None => format!(
                "l = {}, h = {}",
                figure.plan.layer_number(cell.layer),
                cell.head + 1
            ),
        };
        let _ = writeln!(
            s,
            r#"<image x="{}" y="{}" width="{}" height="{}" preserveAspectRatio="none" style="image-rendering:pixelated;image-rendering:crisp-edges" xlink:href="data:image/png;base64,{}"><title>{}</title></image>"#,
            cell.x,
            cell.y,
            cell.width,
            cell.height,
            base64::engine::general_purpose::STANDARD.encode(png),
            escape(&name)
        );
    }
    let _ = writeln!(s, "</g>");
    let bars: Vec<[u32; 4]> = layout
        .colorbar
        .iter()
        .chain(&layout.cell_colorbars)
        .copied()
        .collect();
    if !bars.is_empty() {
        // stops at the centre of each LUT entry, top = high end
        let lut = colormap.packed();
        let _ = writeln!(
            s,
            r#"<defs><linearGradient id="colorbar" x1="0" y1="1" x2="0" y2="0">"#
        );
        for (i, c) in lut.iter().enumerate() {
            let _ = writeln!(
                s,
                r#"<stop offset="{:.5}" stop-color="{}"/>"#,
                (i as f64 + 0.5) / 256.0,
                hex(c.to_le_bytes())
            );
        }
        let _ = writeln!(s, "</linearGradient></defs>");
    }
    for (i, [x, y, bw, bh]) in bars.into_iter().enumerate() {
        // the one bar keeps its id; the summary's bars are numbered after it
        let id = match i {
            0 => "colorbar-bar".to_string(),
            i => format!("colorbar-bar-{i}"),
        };
        let _ = writeln!(
            s,
            r#"<rect id="{id}" x="{x}" y="{y}" width="{bw}" height="{bh}" fill="url(#colorbar)"/>"#
        );
    }
    if !layout.swatches.is_empty() {
        let lut = colormap.packed();
        let _ = writeln!(s, r#"<g id="legend">"#);
        for &([x, y, sw, sh], i) in &layout.swatches {
            let fill = hex(lut[i as usize].to_le_bytes());
            let _ = writeln!(
                s,
                r#"<rect x="{x}" y="{y}" width="{sw}" height="{sh}" fill="{fill}"/>"#
            );
        }
        let _ = writeln!(s, "</g>");
    }
    let fg = hex(theme.foreground);
    let _ = writeln!(s, r#"<g id="ticks" fill="{fg}">"#);
    for [x, y, fw, fh] in &layout.fills {
        let _ = writeln!(s, r#"<rect x="{x}" y="{y}" width="{fw}" height="{fh}"/>"#);
    }
    let _ = writeln!(s, "</g>");
    let _ = writeln!(
        s,
        r#"<g id="labels" fill="{fg}" font-family="DejaVu Sans, Bitstream Vera Sans, Verdana, sans-serif">"#
    );
    for placed in &layout.labels {
        label(&mut s, placed);
    }
    let _ = writeln!(s, "</g>\n</svg>");
    Ok(s)
}

fn label(s: &mut String, p: &PlacedLabel) {
    let t = &p.text;
    let size = css_font_size(t.px);
    let upright = crate::figure::layout::Text {
        rotated: false,
        ..t.clone()
    };
    // the raster's glyphs start 0 px in and sit on its baseline
    let baseline = upright.rasterize().baseline;
    let transform = if t.rotated {
        format!(
            r#" transform="translate({} {}) rotate(-90)""#,
            p.x + baseline,
            p.y + p.label.height
        )
    } else {
        format!(r#" transform="translate({} {})""#, p.x, p.y + baseline)
    };
    let _ = write!(s, r#"<text font-size="{size:.2}"{transform}>"#);
    for (text, face) in &t.spans {
        let style = if *face == Face::Math {
            r#" font-style="italic""#
        } else {
            ""
        };
        let _ = write!(
            s,
            r#"<tspan{style} xml:space="preserve">{}</tspan>"#,
            escape(text)
        );
    }
    let _ = writeln!(s, "</text>");
}

/// One cell's pooled colours (`src` pixels) as a `dst`-pixel PNG, nearest-neighbour with the
/// compositor's arithmetic; "no data" pixels are transparent.
fn cell_png(colors: &[u32], src: (u32, u32), dst: (u32, u32)) -> Result<Vec<u8>> {
    let ((sw, sh), (w, h)) = (src, dst);
    let mut rgba = Vec::with_capacity((w * h * 4) as usize);
    for y in 0..h {
        let sy = (y as u64 * sh as u64 / h as u64) as usize;
        for x in 0..w {
            let sx = (x as u64 * sw as u64 / w as u64) as usize;
            rgba.extend_from_slice(&colors[sy * sw as usize + sx].to_le_bytes());
        }
    }
    let mut out = Vec::new();
    crate::files::encode_png(&mut out, w, h, &rgba)
        .map_err(|e| Error::Gpu(format!("encoding a cell as PNG: {e}")))?;
    Ok(out)
}
