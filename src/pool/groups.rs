//! Where pooled cells live: accumulator buffers for runs of consecutive cells, each fitting one
//! storage binding, recycled between renders; and the finished result, [`PooledCells`].

use std::sync::{Arc, Mutex};

use crate::error::Result;
use crate::gpu::Gpu;
use crate::pool::accum::{Accum, AccumLayout, HeadStats};
use crate::pool::geometry::CellGeometry;
use crate::pool::pattern::PatternSums;
use crate::pool::pipelines::PoolPipelines;

/// Accumulators of a run of consecutive cells, in one buffer that fits a storage binding.
pub struct CellGroup {
    pub first_cell: usize,
    pub cells: usize,
    pub accum: wgpu::Buffer,
    /// How `accum` holds each pixel: every shader that reads it is specialized for it.
    pub layout: AccumLayout,
    /// Per cell: 1 once a non-zero value was seen above the diagonal.
    pub(super) flags: wgpu::Buffer,
    /// Per pooled pixel, once a `Causal::Auto` dispatch needs them
    /// ([`CellGroup::set_aside_zeros`]): zeros set aside above the diagonal (a 16-byte stand-in
    /// until then, or a recycled buffer no dispatch reads).
    pub(super) zeros: wgpu::Buffer,
    /// Where the buffers go when the group is dropped.
    pub(super) spares: Option<SpareGroups>,
}

/// The buffers of a dropped [`CellGroup`], for the next ingest that needs the same sizes.
pub(super) struct GroupBuffers {
    pub(super) accum: wgpu::Buffer,
    pub(super) flags: wgpu::Buffer,
    pub(super) zeros: wgpu::Buffer,
}

/// Spare accumulator buffers, shared by the pipelines and the groups that return to them.
pub(super) type SpareGroups = Arc<Mutex<Vec<GroupBuffers>>>;

/// Bytes of spare accumulator buffers kept at most.
pub(super) const SPARE_GROUP_BYTES: u64 = 256 << 20;

impl CellGroup {
    /// A group of `cells` cells from `first_cell` whose (accum, flags) buffers have `sizes`
    /// bytes, its pixels in `layout`: recycled from a dropped group when one matches (fresh buffers cost the host page
    /// faults and zero-filling on unified-memory adapters, every render), else new. Its zeros
    /// come when a dispatch needs them ([`CellGroup::set_aside_zeros`]).
    pub(super) fn new(
        gpu: &Gpu,
        pipes: &PoolPipelines,
        first_cell: usize,
        cells: usize,
        layout: AccumLayout,
        sizes: [u64; 2],
    ) -> CellGroup {
        let spare = {
            let mut spares = pipes.spare_groups.lock().expect("spare groups");
            let found = spares
                .iter()
                .position(|b| [b.accum.size(), b.flags.size()] == sizes);
            found.map(|i| spares.swap_remove(i))
        };
        let buffers = spare.unwrap_or_else(|| GroupBuffers {
            accum: group_buffer(gpu, "attnviz.pool.accum", sizes[0]),
            flags: group_buffer(gpu, "attnviz.pool.cell_flags", sizes[1]),
            zeros: group_buffer(gpu, "attnviz.pool.zeros", 16),
        });
        CellGroup {
            first_cell,
            cells,
            accum: buffers.accum,
            layout,
            flags: buffers.flags,
            zeros: buffers.zeros,
            spares: Some(pipes.spare_groups.clone()),
        }
    }
}

impl CellGroup {
    /// Makes `zeros` hold `bytes` of zeros for a `Causal::Auto` dispatch to set zeros aside
    /// in, by recording its clear in `encoder`: a buffer of that size where the group's is
    /// smaller (the 16-byte stand-in of a fresh group), else the group's own. Only runs that
    /// dispatch undecided pay for it: a 1 GiB 8 × 8 grid's 16 MiB are 4096 page faults and a
    /// fill, about 17 ms of a fresh process on a unified-memory adapter, and any input whose
    /// first row shows an entry above the diagonal never needs them (`Ingest::upper_seen`).
    pub(super) fn set_aside_zeros(
        &mut self,
        gpu: &Gpu,
        encoder: &mut wgpu::CommandEncoder,
        bytes: u64,
    ) {
        if self.zeros.size() < bytes {
            self.zeros = group_buffer(gpu, "attnviz.pool.zeros", bytes);
        }
        encoder.clear_buffer(&self.zeros, 0, Some(bytes));
    }
}

/// One of a group's buffers: written by the pool pass, cleared and read back by copies.
fn group_buffer(gpu: &Gpu, label: &str, size: u64) -> wgpu::Buffer {
    crate::gpu::buffer(
        &gpu.device,
        label,
        size,
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
    )
}

impl Drop for CellGroup {
    fn drop(&mut self) {
        let Some(spares) = self.spares.take() else {
            return;
        };
        let mut spares = spares.lock().expect("spare groups");
        spares.push(GroupBuffers {
            accum: self.accum.clone(),
            flags: self.flags.clone(),
            zeros: self.zeros.clone(),
        });
        // Newest last; drop the oldest past the byte budget.
        let bytes = |b: &GroupBuffers| b.accum.size() + b.flags.size() + b.zeros.size();
        while spares.iter().map(bytes).sum::<u64>() > SPARE_GROUP_BYTES && !spares.is_empty() {
            spares.remove(0);
        }
    }
}

/// Every selected head pooled to its cell, resident on the GPU, with its statistics.
pub struct PooledCells {
    pub geometry: CellGeometry,
    pub groups: Vec<CellGroup>,
    /// One per cell, in cell order.
    pub stats: Vec<HeadStats>,
    /// Entries above the diagonal were left out (asked for, or detected).
    pub causal: bool,
    /// Per cell, when asked for: the pattern statistics' sums (empty otherwise).
    pub patterns: Vec<PatternSums>,
}

impl PooledCells {
    pub fn cells(&self) -> usize {
        self.stats.len()
    }

    /// How the cells' pixels lie in their buffers: one layout for every group of a run.
    pub fn layout(&self) -> AccumLayout {
        self.groups.first().map_or(AccumLayout::Full, |g| g.layout)
    }

    /// Group holding `cell`, and the cell's index inside it.
    pub fn locate(&self, cell: usize) -> (usize, usize) {
        let g = self
            .groups
            .partition_point(|g| g.first_cell + g.cells <= cell);
        (g, cell - self.groups[g].first_cell)
    }

    /// Replaces every cell's accumulators (cell order, `pooled_pixels` each): lets tests put
    /// states into the reductions that no test-sized input reaches, e.g. counts past 2^32.
    #[doc(hidden)]
    pub fn overwrite_accums(&self, gpu: &Gpu, accums: &[Vec<Accum>]) {
        let mut cells = accums.iter();
        for g in &self.groups {
            let words: Vec<Accum> = cells.by_ref().take(g.cells).flatten().copied().collect();
            gpu.queue
                .write_buffer(&g.accum, 0, &g.layout.encode(&words));
        }
    }

    /// Copies every cell's accumulators back (tests and the CPU comparison).
    pub fn read_accums(&self, gpu: &Gpu) -> Result<Vec<Vec<Accum>>> {
        let px = self.geometry.pooled_pixels();
        let mut out = Vec::with_capacity(self.cells());
        for g in &self.groups {
            let bytes = (g.cells * px) as u64 * g.layout.pixel_bytes();
            let all = g.layout.decode(&gpu.read_buffer(&g.accum, 0, bytes)?);
            out.extend(all.chunks(px).map(|c| c.to_vec()));
        }
        Ok(out)
    }
}

/// Whether a Q×K head has entries above its (bottom-right aligned) diagonal at all.
pub fn has_upper_triangle(queries: usize, keys: usize) -> bool {
    // Row 0 sees keys 0..=K-Q; anything right of that is above the diagonal.
    keys > 1 && (keys as i64 - queries as i64) < keys as i64 - 1
}
