//! Q/K probabilities computed on the GPU, served as an ordinary source (to write them out as a
//! file, or to render them the way a stored file is rendered).

use crate::engine::Engine;
use crate::error::Result;
use crate::pool::qk::QkReader;
use crate::source::qk::QkSource;
use crate::source::{row_range, AttentionSource, DType, Shape};

/// The GPU's probabilities of a [`QkSource`] as an ordinary source: what the engine pools,
/// materialized block by block (to write it out, or to render it the way a stored file is).
pub struct GpuRows<'e> {
    engine: &'e Engine,
    qk: &'e QkSource,
    /// Made on the first read and kept: the head's Q and K and the block buffers stay on the
    /// device from one read to the next.
    reader: std::sync::Mutex<Option<QkReader<'e>>>,
}

impl<'e> GpuRows<'e> {
    pub fn new(engine: &'e Engine, qk: &'e QkSource) -> Self {
        GpuRows {
            engine,
            qk,
            reader: Default::default(),
        }
    }
}

impl AttentionSource for GpuRows<'_> {
    fn name(&self) -> &str {
        self.qk.name()
    }

    fn shape(&self) -> Shape {
        self.qk.shape()
    }

    fn dtype(&self) -> DType {
        DType::F32
    }

    fn read_rows(&self, layer: usize, head: usize, row_start: usize, dst: &mut [u8]) -> Result<()> {
        let shape = self.shape();
        row_range(
            self.name(),
            shape,
            DType::F32,
            layer,
            head,
            row_start,
            dst.len(),
        )?;
        let mut reader = self.reader.lock().expect("GpuRows reader");
        if reader.is_none() {
            *reader = Some(self.engine.qk_reader(self.qk)?);
        }
        let reader = reader.as_mut().expect("made above");
        let row_bytes = shape.keys * 4;
        for (i, block) in dst.chunks_mut(reader.max_rows() * row_bytes).enumerate() {
            let start = row_start + i * reader.max_rows();
            let rows = start..start + block.len() / row_bytes;
            reader.read(self.qk, layer, head, rows, block)?;
        }
        Ok(())
    }

    fn diagonal(&self) -> i64 {
        self.qk.diagonal()
    }

    fn first_query(&self) -> usize {
        self.qk.rows().start
    }

    fn masks_upper(&self) -> Option<bool> {
        self.qk.masks_upper()
    }

    fn layer_number(&self, layer: usize) -> usize {
        self.qk.layer_number(layer)
    }
}
