//! A streaming sink for producers that never hold a whole attention matrix: a model or kernel
//! pushes rows as it computes them (decode steps, blockwise attention) and gets the pooled head
//! back. It is the same ingest the file paths use, so memory is bounded by two upload chunks and
//! the pooled output.

use crate::color::colormap::Colormap;
use crate::color::norm::{color_ranges, Norm};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::pool::accum::{Accum, HeadStats, Reduce};
use crate::pool::geometry::CellGeometry;
use crate::pool::{Ingest, IngestShape, PoolOptions, PooledCells};
use crate::source::DType;

/// Pools one `queries` × `keys` head fed row by row.
pub struct HeadAccumulator<'e> {
    engine: &'e Engine,
    ingest: Ingest<'e>,
    keys: usize,
}

impl Engine {
    /// A sink for one head of `queries` × `keys` f32 values, pooled to a cell of side `cell`
    /// (`None`: 256 or native).
    pub fn head_accumulator(
        &self,
        queries: usize,
        keys: usize,
        cell: Option<u32>,
        options: PoolOptions,
    ) -> Result<HeadAccumulator<'_>> {
        if queries == 0 || keys == 0 {
            return Err(Error::BadOption(
                "a head needs at least one row and one key".into(),
            ));
        }
        let geometry = CellGeometry::new(queries, keys, cell)?;
        let ingest = Ingest::new(
            &self.gpu,
            &self.pool_pipes,
            IngestShape {
                cells: 1,
                queries,
                keys,
                dtype: DType::F32,
                geometry,
                options,
                chunk_target: self.chunk_bytes.min(crate::pool::UPLOAD_CHUNK_TARGET),
            },
        )?;
        Ok(HeadAccumulator {
            engine: self,
            ingest,
            keys,
        })
    }
}

impl<'e> HeadAccumulator<'e> {
    /// Adds whole rows (`rows.len()` a multiple of `keys`) starting at query `row_start`. Push
    /// rows in increasing order for the mean to match the CPU reference bit for bit; max and
    /// min do not depend on the order.
    pub fn push_rows(&mut self, row_start: usize, rows: &[f32]) -> Result<()> {
        if !rows.len().is_multiple_of(self.keys) {
            return Err(Error::BadOption(format!(
                "push_rows: {} values are not whole rows of {} keys",
                rows.len(),
                self.keys
            )));
        }
        let n = rows.len() / self.keys;
        let keys = self.keys;
        self.ingest.push_with(0, row_start, n, |start, dst| {
            let first = (start - row_start) * keys;
            let src = &rows[first..first + dst.len() / 4];
            for (d, v) in dst.chunks_exact_mut(4).zip(src) {
                d.copy_from_slice(&v.to_le_bytes());
            }
            Ok(())
        })
    }

    /// Adds `rows` whole rows of f32 that are already on the GPU, starting at query
    /// `row_start`: they are read from byte `offset` (a multiple of 4) of `buffer`, a buffer of
    /// this engine's device that allows `COPY_SRC` (it is copied on the device into the texture
    /// the pool pass reads) and whose size is a multiple of 16. Pooled in place, with
    /// the rows pushed before them first; same ordering rule as [`Self::push_rows`].
    pub fn push_gpu_rows(
        &mut self,
        row_start: usize,
        rows: usize,
        buffer: &wgpu::Buffer,
        offset: u64,
    ) -> Result<()> {
        self.ingest
            .pool_resident(0, row_start, rows, buffer, offset)
    }

    /// Pools the remaining rows and returns the pooled head.
    pub fn finish(self) -> Result<PooledHead<'e>> {
        let pooled = self.ingest.finish()?;
        Ok(PooledHead {
            engine: self.engine,
            pooled,
        })
    }
}

/// A pooled head resident on the GPU.
pub struct PooledHead<'e> {
    engine: &'e Engine,
    pooled: PooledCells,
}

impl PooledHead<'_> {
    pub fn width(&self) -> u32 {
        self.pooled.geometry.pooled_w
    }

    pub fn height(&self) -> u32 {
        self.pooled.geometry.pooled_h
    }

    /// Min, max, sum and count of the finite entries pushed.
    pub fn stats(&self) -> HeadStats {
        self.pooled.stats[0]
    }

    /// The pooled accumulators, row-major (`width` × `height`).
    pub fn accum(&self) -> Result<Vec<Accum>> {
        Ok(self.pooled.read_accums(&self.engine.gpu)?.remove(0))
    }

    /// The head as RGBA8 at its pooled resolution, min–max normalized (`Norm::None` clamps to
    /// [0, 1]; `Norm::Row` needs `PoolOptions::row_norm` when pooling).
    pub fn rgba(&self, norm: Norm, reduce: Reduce, colormap: Colormap) -> Result<Vec<u8>> {
        let ranges = color_ranges(norm, &self.pooled.stats, 1);
        let words = self
            .engine
            .colorize(&self.pooled, &ranges, reduce, colormap)?
            .remove(0);
        Ok(words.iter().flat_map(|w| w.to_le_bytes()).collect())
    }
}
