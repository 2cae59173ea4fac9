//! The one GPU context: instance, adapter, device, queue and the limits everything else sizes
//! itself by. Headless by default; the viewer creates it with a compatible surface.

pub mod cooperative;
pub mod kernel;
pub mod shaders;
pub mod timing;

use std::sync::{Arc, Mutex, OnceLock};

use crate::error::{Error, Result};

/// Device, queue and what the adapter can do.
pub struct Gpu {
    pub instance: wgpu::Instance,
    pub adapter: wgpu::Adapter,
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub limits: wgpu::Limits,
    pub info: wgpu::AdapterInfo,
    /// Keys that a subgroup can share per step in the one-pass Q/K row kernel (4 or 8: each of
    /// that many lanes loads one key, `subgroupBroadcast` hands them to all; the kernel takes 4
    /// when its rows × 8 keys would hold too many scores); 0 without subgroup operations, or
    /// to keep the kernel that loads every key in every lane (tests set it to compare both).
    pub subgroup_keys: u32,
    /// Vec4s of query values one invocation of the Q/K row kernel may hold (its query rows, `d / 4`
    /// each): it takes as many rows as fit, a power of two up to 8, and each key it loads then
    /// feeds that many rows' scores (short heads take fewer: [`Gpu::fit_rows_to_heads`]). GPUs: 32
    /// (128 floats; past that their register files spill and fewer waves fit). CPU adapters: 128
    /// (8 rows up to d = 64, 4 past it up to 128, 2 up to 256), where lanes are SIMD registers
    /// whose spills land in L1 and each key's load is a per-lane gather plus broadcasts that cost
    /// more than the arithmetic they feed (measured on llvmpipe: d = 64, 4 rows a lane 20% faster than 2 and 27%
    /// than 1, 8 rows (4 keys a step) 20% faster than 4 rows (8 keys); d = 128, 4 rows 20% faster
    /// than 2. 8 rows at d = 128 (a budget of 256, 2026-12-06 to 12-08) scored 16% faster than 4
    /// on an AMD EPYC host then, but 8–12% slower on an Intel Xeon host on 2026-12-08, after the
    /// subgroups' own diagonals, and their kernel takes 235 ms to compile against 82 in every
    /// process: a fresh `render --q` of a 16384-token head, d = 128, 2.69–2.85 s against 2.28–2.49
    /// s at 4 rows, causal 1.66–1.69 against 1.35–1.44 s). Tests set it to compare the row counts;
    /// 0 turns the row kernel off (the tiled kernel takes every head width).
    pub row_vec4s: u32,
    /// Whether the Q/K row kernel takes fewer query rows a lane than [`Gpu::row_vec4s`] holds
    /// for heads too short to fill a workgroup with them (64 lanes × rows a lane), though
    /// never fewer than [`Gpu::row_min_rows`]: a workgroup's rows past its head's are idle
    /// lanes. On llvmpipe (2026-12-06, `bench --only qk-short`, 1024 causal heads of 256
    /// tokens, d = 64): 8 rows a lane (512 a workgroup) spent 0.48–0.55 s of device time
    /// scoring, 4 rows 0.33–0.43 s, 1 or 2 rows 0.29–0.34 s; `render --q` of that model took
    /// 2.07–2.18 s at 4 rows a lane against 2.62–2.90 s at 8. On by default; on GPUs, whose
    /// budget holds 2 rows at d = 64 and whose floor is 2, it changes nothing. Tests turn it
    /// off to take the rows their budgets ask for on their short heads.
    pub fit_rows_to_heads: bool,
    /// Whether a chunk whose bins are 4, 8 or 16 keys of whole 16-byte words is pooled, where
    /// pattern statistics are asked for and their profile kernel walks whole chunks
    /// ([`Gpu::pattern_slice_rows`] 0), by that kernel from the loads it makes anyway
    /// (`shaders/pattern_pool.wgsl`) instead of by the pool pass and then read again. The figure
    /// and the statistics are the same to the bit either way (tests turn it on to compare).
    /// Off by default: on llvmpipe a chunk's texel loads cost about as much as the whole pool
    /// pass, but the pixels' states carried through the profile kernel's walk down the rows
    /// cost as much again (the 1 GiB grid with `--stats-json`, 2026-12-06: pool and profile
    /// passes 0.40–0.43 s of device time separately, 0.41–0.46 s this way; the first version,
    /// whose row loop stored and opened pixels in its body, 0.54–0.59 s). Unmeasured on GPUs,
    /// where the chunk's second read may hit L2, and where the profile kernel's few long-walking
    /// invocations fill a device worse than the pool pass's many short ones.
    pub pool_with_profiles: bool,
    /// Rows of a head one invocation of the pattern statistics' profile kernel walks (rounded
    /// up to whole 64-row blocks, or the head's block side), so that a chunk's rows are walked by
    /// that many more workgroups at once: 2048 keys are 128 invocations, two workgroups, where
    /// a GPU has a hundred processors or more. GPUs: 64 (a 2048-row head's profile in 32
    /// slices of 64 workgroups; each slice's column masses and diagonal tails are added up in
    /// order after it, `pattern_columns` and `pattern_diagonals`). CPU adapters: 0, the
    /// whole piece (no more workgroups than cores are needed, and the statistics' sums stay
    /// those of one walk). Tests set it to compare.
    pub pattern_slice_rows: u32,
    /// Vec4s of K one invocation of the Q/K statistics' key kernel may hold (`pool::pattern_qk`:
    /// 16 keys of `d / 4` each): a head whose 16 keys fit takes the statistics straight from
    /// its scores; otherwise the row kernel stores every probability for the pool pass to read
    /// with them. CPU adapters: 256 (d ≤ 64), where those vectors live in L1 like the row
    /// kernel's query rows (on llvmpipe, 2026-12-04: a 32768-token head's render with
    /// `--stats-json` 43% faster at d = 64; at d = 128 no faster, and its kernel took LLVM 15 s
    /// to compile); GPUs: 0 (16 keys of d = 64 are 1024 floats, past any register file; there
    /// the stored probabilities cost a copy at memory speed).
    pub pattern_key_vec4s: u32,
    /// Keys a Q/K head needs for that key kernel (`pattern_key_vec4s`) to take its statistics:
    /// shorter heads store their probabilities instead. The kernel's workgroup takes 1024 keys
    /// (64 lanes of 16), and each head goes alone, a submission a chunk, so a head of 256 keys
    /// fills a quarter of one workgroup, while stored probabilities are pooled a batch of heads
    /// a dispatch. On llvmpipe (2026-12-06, `attnviz heads --q`, alternating): 1024 heads of 256
    /// tokens 2.73 s fused against 1.33–1.53 s stored, 256 heads of 512 tokens 1.52 against
    /// 0.92–1.04 s, 32 heads of 256 tokens 0.37 against 0.32 s; 32 heads of 1024 tokens 0.58
    /// against 0.66 s and of 4096 tokens 3.1 against 4.9–5.5 s, fused faster. Every adapter:
    /// [`PATTERN_QK_MIN_KEYS`]. Tests set 0 to take short heads through the key kernel.
    pub pattern_qk_min_keys: u32,
    /// Bytes the one-pass Q/K path's per-(query row, pooled column) states may take for one
    /// chunk of rows ([`Engine::qk_state_bytes`](crate::Engine) starts from it). A chunk's rows
    /// are all a score dispatch runs in parallel (one lane per few rows; the keys are walked
    /// in order), so on a GPU the states must hold enough rows to fill it: at 64 MiB and
    /// 1024-px cells a chunk is 4096 rows, 2048 lanes, and one 32k head ran at 0.9% of an H200's
    /// FMA rate (2026-12-04); at 512 MiB, 2.2%, 2.7x faster. GPUs: [`GPU_QK_STATE_BYTES`];
    /// CPU adapters: [`CPU_QK_STATE_BYTES`], where a few cores need no more rows and fresh
    /// memory costs page faults. Runs that store every probability (statistics, `attnviz
    /// attention`) keep one pooled column of states, a few bytes a row; their chunks of rows
    /// are bounded by the probabilities instead: one storage binding or chunk texture of them
    /// (`tiled::cuts::probability_rows`: 128 MiB on lavapipe, 1024 rows at 32768 keys; up to
    /// `pool::chunk::max_chunk_bytes`, 2 GiB, on NVIDIA, plus the pool pass's texture copy).
    pub qk_state_bytes: u64,
    /// The fewest query rows a lane of the Q/K row kernel must hold (from
    /// [`Gpu::row_vec4s`]) for it to take a head width; narrower budgets take the tiled kernel.
    /// A lane with one row feeds each key it loads to one row's FMAs: on an H200 the tiled
    /// kernel (8 × 8 register blocks from workgroup memory) ran d = 128 1.6x faster than one
    /// row a lane (185 against 118 heads/s, qk-model), and d = 64 at 2 rows a lane as fast as
    /// it (1290 against 1186 GFLOP/s). GPUs: 2; CPU adapters: 1 (their budget holds 4 rows
    /// at d = 128 anyway). Tests set 1 to reach the one-row kernel on any adapter.
    pub row_min_rows: u32,
    /// Workgroups one dispatch of the one-pass Q/K score kernels should reach by splitting the
    /// keys among them (`pool::qk::tiled`: each workgroup takes its rows over whole pooled
    /// columns of keys read from the K buffer; the row kernel's row normalizers are merged
    /// per split afterwards); 0: no split, each dispatch takes one window of keys from a
    /// uniform buffer (the row kernel) or one segment of 8192 (the tiled kernel), a barrier
    /// between them. A chunk's rows alone are a few hundred workgroups (a 32k head at 2 rows
    /// a lane: 256), far below what a GPU runs at once, and an H200 ran that head's scores at
    /// 2% of its FMA rate in 128 such dispatches (2026-12-04). GPUs: [`GPU_QK_SPLIT_WORKGROUPS`]
    /// (not yet measured on one: `attnviz bench --split-workgroups` sweeps it). CPU adapters:
    /// 0, where two cores are filled by any chunk; on llvmpipe (2 cores, 2026-12-04) 512
    /// rendered a 16k head 6% faster unmasked and 6% slower causal, about even. Tests set it
    /// to check the split path.
    pub qk_split_workgroups: u32,
    /// Whether the Q/K statistics' probabilities are written straight into the pool pass's
    /// chunk texture (a texel of 4 keys per store) rather than into a buffer copied into it.
    /// Off on every adapter: on llvmpipe the texture's stores gained ~5% of a 32768-token
    /// statistics run on an AMD EPYC host and lost 24–27% on an Intel Xeon host (2026-12-04:
    /// 7.45 against 5.70 s causal at 32768 tokens, 3.7 against 2.7 s at 16384), and a GPU's
    /// copy of the probabilities is cheap either way. Tests turn it on to keep the path right.
    pub probs_in_texture: bool,
    /// Figures from Q and K whose pooled columns are at most this many keys wide store each
    /// chunk's probabilities for the pool pass (`pool::qk::tiled::pool_materialized`: the row
    /// kernel once for the rows' lse, once for the probabilities) rather than keep a state per
    /// (row, pooled column) (`pool_into`): a state is 16 bytes, so where it stands for one or
    /// two probabilities the one pass writes and folds back more than the probabilities
    /// themselves, and updates one per score. On llvmpipe (2026-12-06): a 32-layer × 32-head
    /// model at 256 tokens drawn at its own width (one key a column) 6.4 → 4.9 s (3.3–3.6 s
    /// once the stored path took batches of heads); 8 × 8 heads of 512 tokens into 256 px
    /// (two) 0.80 → 0.66 s; of 1024 (four) 0.84 → 1.02 s, slower.
    /// Every adapter: 2 (unmeasured on a GPU). Tests set 0 to keep the one pass at any width.
    pub qk_store_keys: u32,
    /// Set by wgpu when the device is lost (driver reset, GPU removed).
    lost: Arc<Mutex<Option<String>>>,
    /// The device's time per pass, once [`Gpu::time_passes`] made it (`timing`).
    timer: OnceLock<timing::PassTimer>,
}

/// Which kind of adapter's Q/K budgets [`Gpu::use_qk_budgets`] sets (each field's docs say
/// why they differ).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QkBudgets {
    /// CPU adapters (lavapipe, SwiftShader, WARP): lanes are SIMD registers of a few cores.
    Cpu,
    /// Every other adapter.
    Gpu,
}

/// The backends `WGPU_BACKEND` names, as set (trimmed); `None` where it is unset or blank.
fn backend_override() -> Option<String> {
    std::env::var("WGPU_BACKEND")
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// [`Gpu::qk_state_bytes`] on CPU adapters: the upload chunk target (`pool::CHUNK_TARGET`).
pub const CPU_QK_STATE_BYTES: u64 = 64 << 20;

/// [`Gpu::qk_split_workgroups`] on GPUs: about what an H200 holds at once (132
/// multiprocessors, 32 resident 64-lane workgroups each), a few waves on smaller GPUs.
pub const GPU_QK_SPLIT_WORKGROUPS: u32 = 4096;

/// [`Gpu::qk_store_keys`] on every adapter.
pub const QK_STORE_KEYS: u32 = 2;

/// [`Gpu::pattern_qk_min_keys`] on every adapter: one workgroup's keys of the statistics' key
/// kernel (`WORKGROUP_KEYS` in `pool::pattern_gpu`).
pub const PATTERN_QK_MIN_KEYS: u32 = 1024;

/// [`Gpu::qk_state_bytes`] on GPUs: 32768 rows of 1024-px cells (16 bytes per row and column),
/// a whole 32k head in one chunk. Bounded further by the adapter's storage bindings.
pub const GPU_QK_STATE_BYTES: u64 = 512 << 20;

/// Whether `adapter` reads the chunk textures: every chunk reaches the shaders as a read-only
/// rgba32uint storage texture (`pool::chunk`), at most three to a shader. Every Vulkan, Metal
/// and DX12 adapter does; one that does not is passed over when choosing, not failed at its
/// first render.
fn reads_chunk_textures(adapter: &wgpu::Adapter) -> bool {
    let chunk = adapter.get_texture_format_features(wgpu::TextureFormat::Rgba32Uint);
    chunk
        .flags
        .contains(wgpu::TextureFormatFeatureFlags::STORAGE_READ_ONLY)
        && adapter.limits().max_storage_textures_per_shader_stage >= 3
}

impl Gpu {
    /// Opens the best adapter: discrete, then integrated, then anything else (a software
    /// rasterizer such as lavapipe last). `WGPU_BACKEND` narrows the backends.
    pub fn new() -> Result<Gpu> {
        pollster::block_on(Self::open(Self::instance(), None))
    }

    /// Like [`Gpu::new`], but the adapter must be able to present to `surface`.
    pub fn for_surface(instance: wgpu::Instance, surface: &wgpu::Surface<'_>) -> Result<Gpu> {
        pollster::block_on(Self::open(instance, Some(surface)))
    }

    /// An instance over the native backends, narrowed by `WGPU_BACKEND` when it names some
    /// (`backend_override`: set but blank counts as unset, as `WGPU_BACKEND= attnviz …` means).
    pub fn instance() -> wgpu::Instance {
        let _span = tracing::info_span!("gpu.instance").entered();
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        if backend_override().is_none() {
            desc.backends = wgpu::Backends::PRIMARY;
        }
        wgpu::Instance::new(desc)
    }

    async fn open(instance: wgpu::Instance, surface: Option<&wgpu::Surface<'_>>) -> Result<Gpu> {
        let span = tracing::info_span!("gpu.adapter").entered();
        let mut adapters = instance.enumerate_adapters(wgpu::Backends::all()).await;
        if let Some(s) = surface {
            adapters.retain(|a| a.is_surface_supported(s));
        }
        let any = !adapters.is_empty();
        adapters.retain(reads_chunk_textures);
        let rank = |t: wgpu::DeviceType| match t {
            wgpu::DeviceType::DiscreteGpu => 0,
            wgpu::DeviceType::IntegratedGpu => 1,
            wgpu::DeviceType::VirtualGpu => 2,
            wgpu::DeviceType::Other => 3,
            wgpu::DeviceType::Cpu => 4,
        };
        adapters.sort_by_key(|a| rank(a.get_info().device_type));
        let adapter = adapters.into_iter().next().ok_or_else(|| {
            Error::NoAdapter(if any {
                "no adapter reads rgba32uint storage textures in shaders".into()
            } else if let Some(names) = backend_override() {
                // (wgpu ignores the names it does not know: a typo leaves no backend at all)
                let known = wgpu::Backends::from_comma_list(&names);
                if known.is_empty() {
                    format!(
                        "WGPU_BACKEND={names} names no backend wgpu knows (vulkan, metal, dx12, \
                         gl); unset it to let attnviz choose"
                    )
                } else {
                    format!(
                        "no adapter of the backends WGPU_BACKEND={names} allows; unset it to \
                         let attnviz choose"
                    )
                }
            } else {
                "no Vulkan, Metal or DX12 adapter found (on Linux without a GPU, Mesa's lavapipe: \
                 apt-get install -y mesa-vulkan-drivers libvulkan1)"
                    .into()
            })
        })?;
        let info = adapter.get_info();
        // Everything the adapter offers: the defaults are far below what large heads need
        // (storage bindings, buffer size, texture side).
        let limits = adapter.limits();
        // (no mappable storage buffers: every chunk reaches the shaders through a texture
        // copy, `pool::chunk`, so upload slots are plain staging buffers on every adapter)
        // Timestamps where the adapter has them: nothing is stamped until asked for
        // (`Gpu::time_passes`).
        let mut features = adapter.features() & wgpu::Features::TIMESTAMP_QUERY;
        // Subgroups no narrower than 4 lanes: the row kernel shares 4 or 8 keys per step.
        let subgroup_keys = if adapter.features().contains(wgpu::Features::SUBGROUP)
            && info.subgroup_min_size >= 4
        {
            features |= wgpu::Features::SUBGROUP;
            info.subgroup_min_size.min(8)
        } else {
            0
        };
        drop(span);
        let span = tracing::info_span!("gpu.device").entered();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("attnviz.device"),
                required_features: features,
                required_limits: limits.clone(),
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| Error::NoAdapter(format!("{} refused a device: {e}", info.name)))?;
        drop(span);
        let lost = watch(&device, "");
        let cpu = info.device_type == wgpu::DeviceType::Cpu;
        let mut gpu = Gpu {
            instance,
            adapter,
            device,
            queue,
            limits,
            info,
            subgroup_keys,
            row_vec4s: 0,
            pattern_key_vec4s: 0,
            qk_state_bytes: 0,
            row_min_rows: 0,
            fit_rows_to_heads: true,
            pool_with_profiles: false,
            pattern_slice_rows: 0,
            qk_split_workgroups: 0,
            probs_in_texture: false,
            qk_store_keys: QK_STORE_KEYS,
            pattern_qk_min_keys: PATTERN_QK_MIN_KEYS,
            lost,
            timer: OnceLock::new(),
        };
        gpu.use_qk_budgets(if cpu { QkBudgets::Cpu } else { QkBudgets::Gpu });
        Ok(gpu)
    }

    /// Sets the Q/K kernels' budgets ([`Gpu::row_vec4s`], [`Gpu::pattern_key_vec4s`], [`Gpu::qk_state_bytes`],
    /// [`Gpu::row_min_rows`], [`Gpu::qk_split_workgroups`]) to those of an adapter kind: a new
    /// `Gpu` takes its own kind's; tests take the GPUs' on a CPU adapter, to run the
    /// configuration a GPU runs where no GPU is.
    pub fn use_qk_budgets(&mut self, kind: QkBudgets) {
        (
            self.row_vec4s,
            self.pattern_key_vec4s,
            self.qk_state_bytes,
            self.row_min_rows,
            self.qk_split_workgroups,
            self.pattern_slice_rows,
        ) = match kind {
            QkBudgets::Cpu => (128, 256, CPU_QK_STATE_BYTES, 1, 0, 0),
            QkBudgets::Gpu => (32, 0, GPU_QK_STATE_BYTES, 2, GPU_QK_SPLIT_WORKGROUPS, 64),
        };
    }

    /// One line naming the adapter, for `info`, `--stats` and benchmark reports.
    pub fn describe(&self) -> String {
        let i = &self.info;
        let driver = if i.driver_info.is_empty() {
            i.driver.clone()
        } else {
            format!("{} {}", i.driver, i.driver_info)
        };
        format!(
            "{} ({:?}, {:?}, {driver})",
            i.name, i.backend, i.device_type
        )
    }

    /// Largest buffer that one storage binding may cover, as a byte count.
    pub fn max_binding(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
    }

    /// Runs `f` inside validation and out-of-memory error scopes and turns what they caught
    /// into [`Error::Gpu`].
    pub fn scoped<T>(&self, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f();
        let v = pollster::block_on(validation.pop());
        let o = pollster::block_on(oom.pop());
        if let Some(reason) = self.lost.lock().expect("device-lost flag").clone() {
            return Err(Error::Gpu(format!(
                "{what}: the GPU device was lost ({reason})"
            )));
        }
        if let Some(e) = o {
            return Err(Error::Gpu(format!("{what}: out of GPU memory: {e}")));
        }
        if let Some(e) = v {
            return Err(Error::Gpu(format!("{what}: {e}")));
        }
        out
    }

    /// Blocks until all submitted work is done.
    pub fn wait(&self) -> Result<()> {
        self.wait_for(None)
    }

    /// Blocks until `submission` and those before it are done (all submitted work where
    /// `None`).
    pub(crate) fn wait_for(&self, submission: Option<wgpu::SubmissionIndex>) -> Result<()> {
        let poll = wgpu::PollType::Wait {
            submission_index: submission,
            timeout: None,
        };
        self.device
            .poll(poll)
            .map(|_| ())
            .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))
    }

    /// What a mapping callback left in `slot`, once the work it waited for is done (the
    /// caller polled for it). wgpu runs callbacks on whichever thread polls: while another
    /// thread (the viewer's window or its worker) is delivering this one, the caller's own
    /// poll can return before the callback ran, so it is waited for here (polling, and
    /// sleeping 100 µs between looks) rather than taken for lost. `what` names the buffer in
    /// the error if it never comes.
    pub(crate) fn callback<T>(&self, slot: &Mutex<Option<T>>, what: &str) -> Result<T> {
        let start = std::time::Instant::now();
        loop {
            if let Some(v) = slot.lock().expect("callback slot").take() {
                return Ok(v);
            }
            if start.elapsed() > std::time::Duration::from_secs(60) {
                return Err(Error::Gpu(format!("{what} was never mapped")));
            }
            std::thread::sleep(std::time::Duration::from_micros(100));
            self.device
                .poll(wgpu::PollType::Poll)
                .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))?;
        }
    }

    /// Submits command buffers to the queue, in a `queue.submit` span (`--timings`): some
    /// drivers' submit waits for the submission before it (lavapipe's), which then shows as
    /// the calling phase's time there rather than nowhere.
    pub fn submit<I: IntoIterator<Item = wgpu::CommandBuffer>>(
        &self,
        commands: I,
    ) -> wgpu::SubmissionIndex {
        let _span = tracing::info_span!("queue.submit").entered();
        self.queue.submit(commands)
    }

    /// Copies `size` bytes at `offset` of `buffer` (COPY_SRC) back to the host.
    pub fn read_buffer(&self, buffer: &wgpu::Buffer, offset: u64, size: u64) -> Result<Vec<u8>> {
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("attnviz.readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(buffer, offset, &staging, 0, size);
        self.submit([encoder.finish()]);
        let bytes = self.map_read(&staging)?;
        Ok(bytes)
    }

    /// Maps a MAP_READ buffer whose writes have been submitted and copies it out.
    pub fn map_read(&self, buffer: &wgpu::Buffer) -> Result<Vec<u8>> {
        self.map_read_with(buffer, buffer.size(), <[u8]>::to_vec)
    }

    /// Maps the first `dst.len()` bytes of `buffer` (MAP_READ, its copies submitted), copies
    /// them into `dst` and unmaps: a readback buffer reused from one read to the next.
    pub fn map_read_into(&self, buffer: &wgpu::Buffer, dst: &mut [u8]) -> Result<()> {
        self.map_read_with(buffer, dst.len() as u64, |bytes| dst.copy_from_slice(bytes))
    }

    /// Maps the first `len` bytes of `buffer` (MAP_READ, its copies submitted), hands them to
    /// `read` and unmaps: callers copy straight out of the mapping to where the bytes go, with
    /// no intermediate buffer (a fresh one costs a process its page faults).
    pub fn map_read_with<T>(
        &self,
        buffer: &wgpu::Buffer,
        len: u64,
        read: impl FnOnce(&[u8]) -> T,
    ) -> Result<T> {
        self.map_read_request(buffer, len).read(self, None, read)
    }

    /// Asks for the first `len` bytes of `buffer` to be mapped for reading once the work
    /// submitted so far is done; [`MapRead::read`] waits for it. Between the two the caller
    /// may submit more work (the next band of a figure) that the wait need not cover.
    pub(crate) fn map_read_request<'b>(&self, buffer: &'b wgpu::Buffer, len: u64) -> MapRead<'b> {
        let done: MapFlag = Arc::default();
        let flag = done.clone();
        buffer.map_async(wgpu::MapMode::Read, ..len, move |r| {
            *flag.lock().expect("map flag") = Some(r);
        });
        MapRead { buffer, len, done }
    }
}

/// Where a mapping callback leaves its result.
type MapFlag = Arc<Mutex<Option<std::result::Result<(), wgpu::BufferAsyncError>>>>;

/// A read-back buffer whose mapping was asked for ([`Gpu::map_read_request`]).
pub(crate) struct MapRead<'b> {
    buffer: &'b wgpu::Buffer,
    len: u64,
    done: MapFlag,
}

impl MapRead<'_> {
    /// Waits for the mapping (for submission `after` and those before it to finish, or for
    /// all submitted work where `None`), hands its bytes to `read`, and unmaps the buffer.
    pub(crate) fn read<T>(
        self,
        gpu: &Gpu,
        after: Option<wgpu::SubmissionIndex>,
        read: impl FnOnce(&[u8]) -> T,
    ) -> Result<T> {
        gpu.wait_for(after)?;
        gpu.callback(&self.done, "a readback buffer")?
            .map_err(|e| Error::Gpu(format!("mapping a readback buffer: {e}")))?;
        let out = read(
            &self
                .buffer
                .get_mapped_range(..self.len)
                .map_err(|e| Error::Gpu(format!("reading a mapped buffer: {e}")))?,
        );
        self.buffer.unmap();
        Ok(out)
    }
}

/// Reports what escapes the error scopes, and records a loss of `device` (`note` tells its
/// devices apart in the report): errors are captured with error scopes around each stage
/// ([`Gpu::scoped`], which names a lost device), and anything that escapes them is still
/// reported, not turned into a panic of the library. Returns the loss's flag.
fn watch(device: &wgpu::Device, note: &'static str) -> Arc<Mutex<Option<String>>> {
    device.on_uncaptured_error(Arc::new(move |e| {
        eprintln!("attnviz: uncaptured GPU error{note}: {e}")
    }));
    let lost: Arc<Mutex<Option<String>>> = Arc::default();
    let flag = lost.clone();
    device.set_device_lost_callback(move |reason, message| {
        if reason != wgpu::DeviceLostReason::Destroyed {
            *flag.lock().expect("device-lost flag") = Some(format!("{reason:?}: {message}"));
        }
    });
    lost
}

/// An unmapped buffer of `size` bytes, zero-filled by wgpu on first use.
pub(crate) fn buffer(
    device: &wgpu::Device,
    label: &str,
    size: u64,
    usage: wgpu::BufferUsages,
) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size,
        usage,
        mapped_at_creation: false,
    })
}

/// A storage buffer of `T`s laid out for the shaders, initialised from `data`.
pub(crate) fn storage_buffer_init(
    device: &wgpu::Device,
    label: &str,
    data: &[u8],
    extra_usage: wgpu::BufferUsages,
) -> wgpu::Buffer {
    use wgpu::util::DeviceExt;
    device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some(label),
        contents: data,
        usage: wgpu::BufferUsages::STORAGE | extra_usage,
    })
}

/// The order in which a dispatch's workgroups take `blocks` blocks of work whose costs run up
/// or down with the block (a causal mask's live rows, or keys): workgroup x takes block
/// (x · m) mod `blocks`, for an m coprime with `blocks` near `blocks` · 0.618 (Fibonacci
/// hashing), so that any contiguous range of workgroups holds blocks from all over.
/// Why: llvmpipe hands each worker thread a contiguous range of a dispatch's workgroups
/// (Mesa's compute thread pool), so blocks in order left the costly ones to one thread while
/// the other idled (a causal 32768-token Q/K head into a 64-px cell, one chunk of 64 row
/// blocks: 1.3 cores of 2 busy, 1.98 → 1.59 s spread). GPUs schedule workgroups dynamically
/// and lose nothing by it; each block's arithmetic is the same wherever it runs.
pub(crate) fn spread_order(blocks: u32) -> u32 {
    if blocks <= 2 {
        return 1;
    }
    let gcd = |mut a: u32, mut b: u32| {
        while b > 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    let mut m = (f64::from(blocks) * 0.618_033_988_75).round() as u32;
    while gcd(m, blocks) != 1 {
        m += 1;
    }
    m
}

/// Dispatch size for `n` invocations of a 1-D job with `size`-wide workgroups, folded into two
/// dimensions to stay under the per-dimension limit (see `flat_index` in the shaders).
pub(crate) fn dispatch_1d(n: u32, size: u32, max_per_dim: u32) -> (u32, u32) {
    let groups = n.div_ceil(size).max(1);
    let x = groups.min(max_per_dim);
    (x, groups.div_ceil(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spread_order_takes_every_block_once_and_spreads_them() {
        for blocks in 1..300u32 {
            let m = spread_order(blocks);
            let mut seen = vec![false; blocks as usize];
            for x in 0..blocks {
                seen[(x * m % blocks) as usize] = true;
            }
            assert!(seen.iter().all(|&s| s), "{blocks} blocks, m = {m}");
        }
        // two workers' halves of 64 blocks: each holds as many of the late half's blocks
        let m = spread_order(64);
        let late = |xs: std::ops::Range<u32>| xs.filter(|x| x * m % 64 >= 32).count();
        assert_eq!((late(0..32), late(32..64)), (16, 16));
    }
}
