//! Files out: PNG encoding and atomic replacement (written beside the target, then renamed), so
//! a failed run never leaves a partial or truncated figure.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Fails early, before any GPU work, when `path` cannot be written: its folder is missing or
/// read-only.
pub fn check_writable(path: &Path) -> Result<()> {
    if is_special(path) {
        // (written straight into: opening a FIFO here would wait for its reader)
        return Ok(());
    }
    let dir = parent_dir(path);
    // (said in the folder's terms: the probe file's own name, which the I/O error carries,
    // means nothing to the user)
    let fail = |why: String| Error::Output {
        path: path.to_path_buf(),
        source: std::io::Error::other(why),
    };
    if !dir.exists() {
        return Err(fail(format!("its folder {} does not exist", dir.display())));
    }
    if !dir.is_dir() {
        return Err(fail(format!("{} is not a folder", dir.display())));
    }
    let probe = tempfile::Builder::new()
        .prefix(".attnviz-probe-")
        .tempfile_in(dir)
        .map_err(|e| {
            fail(format!(
                "its folder {} cannot be written to ({})",
                dir.display(),
                e.kind()
            ))
        })?;
    drop(probe);
    Ok(())
}

/// What a figure file holds, decided by its extension: PNG (`.png`, or none) or SVG (`.svg`),
/// in any case. Any other extension is refused before any work rather than written as PNG
/// bytes under a name that says otherwise (`figure.jpg` that is a PNG fails a journal's upload
/// check, or a tool that takes the name at its word).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FigureFormat {
    Png,
    Svg,
}

impl FigureFormat {
    pub fn of(path: &Path) -> Result<FigureFormat> {
        let Some(ext) = path.extension() else {
            return Ok(FigureFormat::Png);
        };
        let ext = ext.to_string_lossy();
        if ext.eq_ignore_ascii_case("png") {
            Ok(FigureFormat::Png)
        } else if ext.eq_ignore_ascii_case("svg") {
            Ok(FigureFormat::Svg)
        } else {
            Err(Error::BadInput {
                path: path.to_path_buf(),
                message: format!(
                    "cannot write a .{ext} figure: attnviz writes PNG (.png) or SVG (.svg)"
                ),
            })
        }
    }
}

/// [`check_writable`] for a figure, which must also name a format attnviz writes
/// ([`FigureFormat::of`]): both fail before any GPU work.
pub fn check_figure_path(path: &Path) -> Result<FigureFormat> {
    let format = FigureFormat::of(path)?;
    check_writable(path)?;
    Ok(format)
}

/// [`check_figure_path`] for a window's screenshot, which is PNG only.
pub fn check_screenshot_path(path: &Path) -> Result<()> {
    if check_figure_path(path)? != FigureFormat::Png {
        return Err(Error::BadInput {
            path: path.to_path_buf(),
            message: "a screenshot is a PNG (.png): SVG figures come from `render`".into(),
        });
    }
    Ok(())
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Writes RGBA8 pixels as a PNG, atomically: a temp file in the same folder is renamed over
/// `path` only once complete, and removed on any failure.
pub fn write_png(path: &Path, width: u32, height: u32, rgba: &[u8]) -> Result<()> {
    let _span = tracing::info_span!("write.png").entered();
    write_atomic(path, |file| encode_png(file, width, height, rgba))
}

/// Encodes RGBA8 pixels as PNG into any writer (files, and the bytes a notebook shows).
pub fn encode_png(
    out: impl std::io::Write,
    width: u32,
    height: u32,
    rgba: &[u8],
) -> std::io::Result<()> {
    let encoder = image::codecs::png::PngEncoder::new_with_quality(
        out,
        image::codecs::png::CompressionType::Fast,
        image::codecs::png::FilterType::Adaptive,
    );
    image::ImageEncoder::write_image(
        encoder,
        rgba,
        width,
        height,
        image::ExtendedColorType::Rgba8,
    )
    .map_err(std::io::Error::other)
}

/// Whether `path` is something other than a regular file or a folder that exists already: a
/// device (`/dev/null`, `/dev/stdout`), a FIFO, a socket. Output goes straight into it, since
/// a temp file renamed over it would replace the node itself with a regular file (run as root,
/// `--stats-json /dev/null` once replaced the machine's /dev/null, 2026-12-06, and every later
/// redirection to it filled a file that programs then read as their empty input).
fn is_special(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir())
}

/// Runs `write` on a temp file beside `path` and renames it into place; into `path` itself
/// where that is a device, FIFO or socket (`is_special`).
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<&mut std::fs::File>) -> std::io::Result<()>,
) -> Result<()> {
    let err = |e| Error::Output {
        path: path.to_path_buf(),
        source: e,
    };
    // (`write` into a file, buffered, the buffer flushed)
    let fill = |file: &mut std::fs::File| {
        let mut w = std::io::BufWriter::new(file);
        write(&mut w)?;
        w.flush()
    };
    if is_special(path) {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(err)?;
        return fill(&mut file).map_err(err);
    }
    let mut tmp = tempfile::Builder::new()
        .prefix(".attnviz-")
        .suffix(".tmp")
        .tempfile_in(parent_dir(path))
        .map_err(err)?;
    fill(tmp.as_file_mut()).map_err(err)?;
    // Temp files are created private (0600); a figure is an ordinary file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(err)?;
    }
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::FileTypeExt;

    /// Output to a FIFO (as to /dev/null or /dev/stdout) goes into it and leaves it a FIFO:
    /// a temp file renamed over it would have replaced it with a regular file.
    #[test]
    fn special_files_are_written_into_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("out.png");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.is_ok_and(|s| s.success()), "mkfifo");
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                std::fs::File::open(fifo)
                    .unwrap()
                    .read_to_end(&mut got)
                    .unwrap();
                got
            })
        };
        check_writable(&fifo).unwrap();
        write_atomic(&fifo, |w| std::io::Write::write_all(w, b"figure")).unwrap();
        // (before joining: a reader left waiting on a replaced FIFO would never return)
        let kind = std::fs::symlink_metadata(&fifo).unwrap().file_type();
        assert!(kind.is_fifo(), "the FIFO became {kind:?}");
        assert_eq!(reader.join().unwrap(), b"figure");
    }
}
