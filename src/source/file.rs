//! A tensor stored in a file: the open file, plus where each layer's data starts.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::{AttentionSource, DType, Shape, Stored, TensorLayout};
use crate::error::{Error, Result};

/// A validated attention tensor inside a file. The parsers check every declared size against
/// the file length before this is built, so reads within `shape` never leave the mapping.
pub struct FileTensor {
    path: PathBuf,
    name: String,
    /// Read with positional reads straight into the caller's buffer (a mapped upload slot):
    /// one copy from the page cache, no page faults on a mapping, and nothing of the file
    /// left in this process's resident set.
    file: File,
    shape: Shape,
    /// As stored: float64 is narrowed to f32 as it is read ([`Stored`]).
    stored: Stored,
    /// Byte offset of each layer's first element (layers may be separate tensors).
    layer_offsets: Vec<u64>,
}

impl FileTensor {
    /// Reads from `file`; `layer_offsets` must already be checked against its length.
    pub(crate) fn new(path: &Path, file: File, layout: TensorLayout) -> Self {
        let TensorLayout {
            shape,
            dtype,
            layer_offsets,
        } = layout;
        debug_assert_eq!(layer_offsets.len(), shape.layers);
        FileTensor {
            path: path.to_path_buf(),
            name: path.display().to_string(),
            file,
            shape,
            stored: dtype,
            layer_offsets,
        }
    }

    /// How the file stores its elements (`info` says when they are narrowed).
    pub fn stored(&self) -> Stored {
        self.stored
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl AttentionSource for FileTensor {
    fn name(&self) -> &str {
        &self.name
    }

    fn shape(&self) -> Shape {
        self.shape
    }

    fn dtype(&self) -> DType {
        self.stored.read_as()
    }

    fn read_rows(&self, layer: usize, head: usize, row_start: usize, dst: &mut [u8]) -> Result<()> {
        let within = super::row_range(
            &self.name,
            self.shape,
            self.dtype(),
            layer,
            head,
            row_start,
            dst.len(),
        )?;
        let io = |e| Error::io(&self.path, e);
        match self.stored {
            Stored::Native(_) => {
                read_exact_at(&self.file, dst, self.layer_offsets[layer] + within as u64)
                    .map_err(io)
            }
            Stored::F64 => {
                // (`within` counts the f32 bytes handed on: twice that in the file)
                let start = self.layer_offsets[layer] + 2 * within as u64;
                read_narrowed(&self.file, dst, start).map_err(io)
            }
        }
    }
}

/// Bytes of float64 read at a time to be narrowed: a buffer per thread, kept (no allocation
/// per chunk), small beside the chunks it fills.
const NARROW_BYTES: usize = 1 << 20;

thread_local! {
    static NARROW: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Fills `dst` with f32s narrowed from the float64s at `offset` (`dst.len() * 2` bytes of the
/// file), rounded to nearest as `astype(np.float32)` rounds.
fn read_narrowed(file: &File, dst: &mut [u8], offset: u64) -> std::io::Result<()> {
    NARROW.with(|buf| {
        let mut buf = buf.borrow_mut();
        buf.resize(NARROW_BYTES.min(2 * dst.len()), 0);
        let mut at = offset;
        for out in dst.chunks_mut(buf.len() / 2) {
            let wide = &mut buf[..2 * out.len()];
            read_exact_at(file, wide, at)?;
            at += wide.len() as u64;
            for (o, w) in out.chunks_exact_mut(4).zip(wide.chunks_exact(8)) {
                let v = f64::from_le_bytes(w.try_into().expect("8 bytes")) as f32;
                o.copy_from_slice(&v.to_le_bytes());
            }
        }
        Ok(())
    })
}

#[cfg(unix)]
fn read_exact_at(file: &File, dst: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, dst, offset)
}

#[cfg(windows)]
fn read_exact_at(file: &File, mut dst: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    while !dst.is_empty() {
        match std::os::windows::fs::FileExt::seek_read(file, dst, offset) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                dst = &mut dst[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
