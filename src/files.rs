//! Files out: PNG encoding and atomic replacement (written beside the target, then renamed), so
//! a failed run never leaves a partial or truncated figure.

use std::io::{IsTerminal, Write};
use std::path::Path;

use crate::error::{Error, Result};

/// Whether `path` is `-`, the standard output, as for most command-line tools (`attnviz heads
/// x.npy --json - | jq`, `attnviz render x.npy -o - | display`): written straight into, as a
/// device is.
pub fn is_stdout(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// Fails when more than one of the outputs `(flag, path)` is the standard output (their bytes
/// would interleave into one stream no reader could split).
pub fn check_one_stdout<'f, 'p>(
    outputs: impl IntoIterator<Item = (&'f str, &'p Path)>,
) -> Result<()> {
    let flags: Vec<&str> = outputs
        .into_iter()
        .filter(|(_, path)| is_stdout(path))
        .map(|(flag, _)| flag)
        .collect();
    match flags[..] {
        [] | [_] => Ok(()),
        [a, b] => Err(Error::BadOption(format!(
            "{a} and {b} both name the standard output (-): give one of them a file"
        ))),
        [ref most @ .., last] => Err(Error::BadOption(format!(
            "{} and {last} all name the standard output (-): give all but one of them a file",
            most.join(", ")
        ))),
    }
}

/// `path` as the messages name it: `-` is "the standard output".
pub fn shown(path: &Path) -> std::path::Display<'_> {
    match is_stdout(path) {
        true => Path::new("the standard output").display(),
        false => path.display(),
    }
}

/// The standard output as a file of its own (a duplicate of its descriptor), after whatever
/// Rust's own buffer holds for it is flushed, so that bytes keep their order.
fn stdout_file() -> std::io::Result<std::fs::File> {
    std::io::stdout().flush()?;
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        Ok(std::io::stdout().as_fd().try_clone_to_owned()?.into())
    }
    #[cfg(windows)]
    {
        use std::os::windows::io::AsHandle;
        Ok(std::io::stdout().as_handle().try_clone_to_owned()?.into())
    }
}

/// Fails early, before any GPU work, when `path` cannot be written: its folder is missing or
/// read-only.
pub fn check_writable(path: &Path) -> Result<()> {
    if is_stdout(path) || is_special(path) {
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
    // (a folder, or a name ending in a separator, would fail only when the output is written,
    // after all the work)
    let slash = path
        .as_os_str()
        .to_string_lossy()
        .ends_with(std::path::is_separator);
    if path.is_dir() || slash {
        return Err(fail("it names a folder: give a file name".into()));
    }
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

/// Fails early, before any work, when `dir` cannot be the folder outputs go into (`--tiles`):
/// it is something other than a folder, or the nearest part of it that exists is.
pub fn check_folder(dir: &Path) -> Result<()> {
    let fail = |why: String| Error::Output {
        path: dir.to_path_buf(),
        source: std::io::Error::other(why),
    };
    let existing = dir
        .ancestors()
        .find(|a| a.exists() || a.as_os_str().is_empty());
    match existing {
        Some(a) if a.as_os_str().is_empty() || a.is_dir() => Ok(()),
        Some(a) if a == dir => Err(fail("it is a file, not a folder".into())),
        Some(a) => Err(fail(format!("{} is a file, not a folder", a.display()))),
        None => Ok(()),
    }
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
    if is_stdout(path) && format == FigureFormat::Png && std::io::stdout().is_terminal() {
        // (as curl and gzip refuse: binary bytes would garble the terminal, and help no one)
        return Err(Error::BadOption(
            "-o -: the PNG would be written to a terminal; redirect it (-o - > fig.png) or name \
             a file"
                .into(),
        ));
    }
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
    let mut writer = png_encoder(out, width, height)
        .write_header()
        .map_err(std::io::Error::other)?;
    let mut stream = writer
        .stream_writer_with_size(PNG_CHUNK_BYTES)
        .map_err(std::io::Error::other)?;
    for row in rgba.chunks_exact(width as usize * 4) {
        stream.write_all(row)?;
    }
    stream.finish().map_err(std::io::Error::other)
}

/// The encoder of every PNG attnviz writes, whole ([`encode_png`]) or row by row
/// ([`PngRows`]), so both write the same bytes: png's fast deflate (fdeflate) and adaptive
/// filters, the settings attnviz's PNGs had when they went through `image`'s encoder at
/// `CompressionType::Fast`.
fn png_encoder<W: Write>(out: W, width: u32, height: u32) -> png::Encoder<'static, W> {
    let mut encoder = png::Encoder::new(out, width, height);
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Fast);
    encoder.set_filter(png::Filter::Adaptive);
    encoder
}

/// The most image data one IDAT chunk holds: few writes into the file for a figure of
/// hundreds of MB.
const PNG_CHUNK_BYTES: usize = 1 << 20;

/// Where a figure's RGBA8 rows go as the export reads them back, top row first: told the
/// figure's size once, before its first row. A PNG written from them (`write_png_streamed`)
/// never holds the whole figure: a 32 × 32 model's is 300 MB, and a fresh process paid 0.2 s
/// here for that memory's first touch alone.
pub trait RowSink {
    fn begin(&mut self, width: u32, height: u32) -> Result<()>;
    fn row(&mut self, rgba: &[u8]) -> Result<()>;

    /// A whole `width` × `height` figure's RGBA8 rows at once (the CPU renderer's).
    fn whole(&mut self, width: u32, height: u32, rgba: &[u8]) -> Result<()> {
        self.begin(width, height)?;
        rgba.chunks_exact(width as usize * 4)
            .try_for_each(|row| self.row(row))
    }
}

/// A PNG encoded row by row, as [`encode_png`] encodes one whole (the same bytes), into a
/// writer it owns.
pub struct PngRows<W: Write + 'static> {
    state: PngState<W>,
}

enum PngState<W: Write + 'static> {
    Waiting(W),
    Writing(Box<png::StreamWriter<'static, W>>),
    Done,
}

impl<W: Write + 'static> PngRows<W> {
    pub fn new(out: W) -> PngRows<W> {
        PngRows {
            state: PngState::Waiting(out),
        }
    }

    /// Writes the header of a `width` × `height` RGBA8 image.
    pub fn start(&mut self, width: u32, height: u32) -> std::io::Result<()> {
        let PngState::Waiting(out) = std::mem::replace(&mut self.state, PngState::Done) else {
            return Err(std::io::Error::other("a PNG's header written twice"));
        };
        let stream = png_encoder(out, width, height)
            .write_header()
            .and_then(|w| w.into_stream_writer_with_size(PNG_CHUNK_BYTES))
            .map_err(std::io::Error::other)?;
        self.state = PngState::Writing(Box::new(stream));
        Ok(())
    }

    /// One row of `width` RGBA8 pixels.
    pub fn write_row(&mut self, rgba: &[u8]) -> std::io::Result<()> {
        match &mut self.state {
            PngState::Writing(stream) => stream.write_all(rgba),
            _ => Err(std::io::Error::other("a PNG row before its header")),
        }
    }

    /// Ends the image: the rows written must have been all of them.
    pub fn finish(self) -> std::io::Result<()> {
        match self.state {
            PngState::Writing(stream) => stream.finish().map_err(std::io::Error::other),
            _ => Err(std::io::Error::other("a PNG ended before its header")),
        }
    }
}

/// Writes the PNG whose rows `render` streams into the sink it is handed, atomically as
/// [`write_png`] does: a render that fails leaves no file, and its error is returned as it
/// was. Returns what `render` returns.
pub fn write_png_streamed<T>(
    path: &Path,
    render: impl FnOnce(&mut dyn RowSink) -> Result<T>,
) -> Result<T> {
    struct FileRows<'a> {
        png: PngRows<std::fs::File>,
        path: &'a Path,
    }
    // (`write.png` spans the encoding, row by row, inside the export that reads the rows back)
    impl RowSink for FileRows<'_> {
        fn begin(&mut self, width: u32, height: u32) -> Result<()> {
            (self.png.start(width, height)).map_err(|e| output_error(self.path, e))
        }
        fn row(&mut self, rgba: &[u8]) -> Result<()> {
            let _span = tracing::info_span!("write.png").entered();
            (self.png.write_row(rgba)).map_err(|e| output_error(self.path, e))
        }
    }
    write_atomic_with(path, |file| {
        // (a handle of its own on the same open file: the encoder owns what it writes into;
        // its IDAT chunks are large, so no buffer is needed between)
        let file = file.try_clone().map_err(|e| output_error(path, e))?;
        let mut rows = FileRows {
            png: PngRows::new(file),
            path,
        };
        let out = render(&mut rows)?;
        rows.png.finish().map_err(|e| output_error(path, e))?;
        Ok(out)
    })
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
    write_atomic_with(path, |file| {
        let mut w = std::io::BufWriter::new(file);
        write(&mut w)
            .and_then(|()| w.flush())
            .map_err(|e| output_error(path, e))
    })
}

fn output_error(path: &Path, source: std::io::Error) -> Error {
    Error::Output {
        path: path.to_path_buf(),
        source,
    }
}

/// [`write_atomic`] with a `write` that may fail with any error (a render streaming its rows
/// into the file), passed on as it is; the temp file is removed all the same.
fn write_atomic_with<T>(
    path: &Path,
    fill: impl FnOnce(&mut std::fs::File) -> Result<T>,
) -> Result<T> {
    let err = |e| output_error(path, e);
    if is_stdout(path) {
        return fill(&mut stdout_file().map_err(err)?);
    }
    if is_special(path) {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(err)?;
        return fill(&mut file);
    }
    let mut tmp = tempfile::Builder::new()
        .prefix(".attnviz-")
        .suffix(".tmp")
        .tempfile_in(parent_dir(path))
        .map_err(err)?;
    let out = fill(tmp.as_file_mut())?;
    // Temp files are created private (0600); a figure is an ordinary file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(err)?;
    }
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(out)
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

    /// A PNG streamed row by row is the PNG encoded whole, byte for byte; a render that fails
    /// midway leaves no file (nor temp file) and its own error.
    #[test]
    fn streamed_pngs_are_whole_ones_and_failures_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (w, h) = (37u32, 23u32);
        let rgba: Vec<u8> = (0..w * h * 4).map(|i| (i * 7 % 251) as u8).collect();
        let mut whole = Vec::new();
        encode_png(&mut whole, w, h, &rgba).unwrap();
        let path = dir.path().join("a.png");
        let n = write_png_streamed(&path, |rows| {
            rows.begin(w, h)?;
            for row in rgba.chunks_exact(w as usize * 4) {
                rows.row(row)?;
            }
            Ok(7)
        })
        .unwrap();
        assert_eq!(n, 7);
        assert_eq!(std::fs::read(&path).unwrap(), whole);
        let failed = dir.path().join("b.png");
        let err = write_png_streamed(&failed, |rows| {
            rows.begin(w, h)?;
            rows.row(&rgba[..w as usize * 4])?;
            Err::<(), _>(Error::BadOption("the render failed".into()))
        })
        .unwrap_err();
        assert!(matches!(err, Error::BadOption(_)), "{err}");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "only a.png is left: {left:?}");
    }
}
