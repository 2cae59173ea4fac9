//! Host upload slots: mapped buffers the ingest reads rows straight into, double-buffered so
//! the next chunk is read while the GPU pools the last.

use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::gpu::Gpu;

pub(super) type MapState = Arc<Mutex<Option<std::result::Result<(), wgpu::BufferAsyncError>>>>;

/// A host-writable upload buffer and whether it is currently mapped.
pub(super) struct Slot {
    /// Mapped for writing by the host: the bound storage buffer itself on unified-memory
    /// adapters, a staging buffer otherwise.
    pub(super) host: wgpu::Buffer,
    pub(super) mapped: MapState,
    pub(super) submission: Option<wgpu::SubmissionIndex>,
}

/// Usage of a host upload slot: a mapped staging buffer, copied on the device into the chunk
/// texture the pool pass and the pattern statistics read.
pub(super) const SLOT_USAGE: wgpu::BufferUsages =
    wgpu::BufferUsages::COPY_SRC.union(wgpu::BufferUsages::MAP_WRITE);

impl Slot {
    pub(super) fn new(gpu: &Gpu, size: u64, usage: wgpu::BufferUsages) -> Slot {
        let host = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("attnviz.pool.upload"),
            size,
            usage,
            mapped_at_creation: true,
        });
        Slot {
            host,
            mapped: Arc::new(Mutex::new(Some(Ok(())))),
            submission: None,
        }
    }

    /// Waits until the GPU is done with this slot's last chunk and the buffer is mapped.
    pub(super) fn wait_mapped(&mut self, gpu: &Gpu) -> Result<()> {
        let state = self.mapped.lock().expect("map state").clone();
        let state = match state {
            Some(state) => state,
            None => {
                let _span = tracing::info_span!("ingest.wait").entered();
                let poll = wgpu::PollType::Wait {
                    submission_index: self.submission.clone(),
                    timeout: None,
                };
                gpu.device
                    .poll(poll)
                    .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))?;
                let state = gpu.callback(&self.mapped, "an upload buffer")?;
                // (kept: the slot reads as mapped until it is remapped)
                *self.mapped.lock().expect("map state") = Some(state.clone());
                state
            }
        };
        state.map_err(|e| Error::Gpu(format!("mapping an upload buffer: {e}")))
    }

    pub(super) fn remap(&mut self, submission: wgpu::SubmissionIndex) {
        *self.mapped.lock().expect("map state") = None;
        let flag = self.mapped.clone();
        self.host.map_async(wgpu::MapMode::Write, .., move |r| {
            *flag.lock().expect("map state") = Some(r);
        });
        self.submission = Some(submission);
    }
}

/// The open mapping of the slot being filled.
pub(super) struct Filling {
    pub(super) view: wgpu::BufferViewMut,
    /// The view's bytes; valid while `view` lives.
    pub(super) bytes: *mut u8,
    pub(super) len: usize,
}
