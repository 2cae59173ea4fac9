//! Every probability of a head's rows from the row kernel, for readers of whole blocks
//! (`pool::qk::QkReader`). Apart from pooling: it keeps one head's Q and K on the device from
//! call to call, and stores each chunk's probabilities where pooling folds them.

use crate::error::Result;
use crate::gpu::Gpu;
use crate::pool::geometry::CellGeometry;
use crate::pool::PoolRun;
use crate::source::qk::QkSource;

use super::cuts::Output;
use super::materializes;
use super::one_pass::OnePass;
use super::pipelines::TiledPipelines;

/// Every probability of a head's rows from the row kernel, for readers of whole blocks
/// (`attnviz attention`, sources made of Q and K: `pool::qk::QkReader`): per chunk of rows, one
/// pass over the scores for the rows' lse and one that stores their probabilities, several
/// times faster than the two-pass kernels (which stay for heads the row kernel does not take,
/// zoomed key ranges, and non-finite Q or K).
pub(crate) struct RowReader<'a> {
    pass: OnePass<'a>,
    bind_group: wgpu::BindGroup,
    /// The row kernel's accumulator binding, never written by this run.
    accum: wgpu::Buffer,
    /// The query head whose Q and K are on the device, and whether they are finite.
    loaded: Option<((usize, usize), bool)>,
}

impl<'a> RowReader<'a> {
    /// A reader of `src`'s rows, where the row kernel takes `src` on `gpu`.
    pub(crate) fn new(gpu: &'a Gpu, pipes: &TiledPipelines, src: &'a QkSource) -> Option<Self> {
        // (one pooled column: the lse pass keeps no column states to speak of)
        let geometry = CellGeometry {
            display_w: 1,
            display_h: 1,
            pooled_w: 1,
            pooled_h: 1,
        };
        if !materializes(gpu, src, geometry) {
            return None;
        }
        let cells = [(0, 0)];
        let run = PoolRun {
            cells: &cells,
            geometry,
            options: Default::default(),
            chunk_bytes: crate::pool::CHUNK_TARGET,
            state_bytes: gpu.qk_state_bytes,
            progress: None,
            patterns: None,
            pooled: true,
        };
        let pass = OnePass::new(gpu, pipes, src, &run, Output::Exact, 0);
        let accum = crate::gpu::buffer(
            &gpu.device,
            "attnviz.qk_pool.accum_unused",
            64,
            wgpu::BufferUsages::STORAGE,
        );
        Some(RowReader {
            bind_group: pass.bind_group(&accum),
            accum,
            pass,
            loaded: None,
        })
    }

    /// Rows one [`RowReader::compute`] takes at most.
    pub(crate) fn max_rows(&self) -> usize {
        self.pass.cuts.chunk_rows
    }

    /// Submits the probabilities of computed rows `start..start + len` (at most
    /// [`RowReader::max_rows`]) of query head (`layer`, `head`), every key of each row, to
    /// land in [`RowReader::probabilities`] (copy them out after this, on the same queue).
    /// False, with nothing submitted, when the head's Q or K holds a non-finite value.
    pub(crate) fn compute(
        &mut self,
        layer: usize,
        head: usize,
        start: usize,
        len: usize,
    ) -> Result<bool> {
        let batch = self.pass.single(layer, head, self.accum.clone());
        match self.loaded {
            Some((h, finite)) if h == (layer, head) => {
                if !finite {
                    return Ok(false);
                }
            }
            _ => {
                let finite = self.pass.upload_batch(&batch)?;
                self.loaded = Some(((layer, head), finite));
                if !finite {
                    return Ok(false);
                }
            }
        }
        let encoder = self.pass.pool_chunk(&self.bind_group, &batch, start, len);
        self.pass.gpu.submit([encoder.finish()]);
        Ok(true)
    }

    /// Where [`RowReader::compute`] leaves its rows, each of every key, from byte 0.
    pub(crate) fn probabilities(&self) -> &wgpu::Buffer {
        &self.pass.buffers.probs
    }
}
