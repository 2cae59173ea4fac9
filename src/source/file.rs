//! A tensor stored in a file: one memory map, plus where each layer's data starts.

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::{Advice, Mmap, UncheckedAdvice};

use super::{AttentionSource, DType, Shape, TensorLayout};
use crate::error::{Error, Result};

/// A validated attention tensor inside a file. The parsers check every declared size against
/// the file length before this is built, so reads within `shape` never leave the mapping.
pub struct FileTensor {
    path: PathBuf,
    name: String,
    map: Mmap,
    shape: Shape,
    dtype: DType,
    /// Byte offset of each layer's first element (layers may be separate tensors).
    layer_offsets: Vec<u64>,
}

impl FileTensor {
    /// Maps `file`; `layer_offsets` must already be checked against its length.
    pub(crate) fn new(path: &Path, file: &File, layout: TensorLayout) -> Result<Self> {
        let TensorLayout {
            shape,
            dtype,
            layer_offsets,
        } = layout;
        debug_assert_eq!(layer_offsets.len(), shape.layers);
        // SAFETY: the map is read-only. A file truncated by another process while we read
        // would fault; that is the documented cost of reading without copying.
        let map = unsafe { Mmap::map(file) }.map_err(|e| Error::io(path, e))?;
        // Rows are read front to back: let the kernel read ahead.
        let _ = map.advise(Advice::Sequential);
        Ok(FileTensor {
            path: path.to_path_buf(),
            name: path.display().to_string(),
            map,
            shape,
            dtype,
            layer_offsets,
        })
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
        let start = self.layer_offsets[layer] as usize + within;
        dst.copy_from_slice(&self.map[start..start + dst.len()]);
        // The rows are consumed: drop them from this process's resident set so memory stays
        // bounded by the chunk size, not the file (the page cache keeps them for the next run).
        let page = 4096;
        let first = start.div_ceil(page) * page;
        let end = (start + dst.len()) / page * page;
        if end > first {
            // SAFETY: the mapping is private and read-only; DONTNEED only drops our page
            // table entries, and a later read faults the file's pages back in.
            let _ = unsafe {
                self.map
                    .unchecked_advise_range(UncheckedAdvice::DontNeed, first, end - first)
            };
        }
        Ok(())
    }
}
