//! A tensor stored in a file: the open file, plus where each layer's data starts.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::{AttentionSource, DType, Shape, TensorLayout};
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
    dtype: DType,
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
            dtype,
            layer_offsets,
        }
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
        self.dtype
    }

    fn read_rows(&self, layer: usize, head: usize, row_start: usize, dst: &mut [u8]) -> Result<()> {
        let within = super::row_range(
            &self.name,
            self.shape,
            self.dtype,
            layer,
            head,
            row_start,
            dst.len(),
        )?;
        let start = self.layer_offsets[layer] + within as u64;
        read_exact_at(&self.file, dst, start).map_err(|e| Error::io(&self.path, e))
    }
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
