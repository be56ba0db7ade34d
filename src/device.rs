//! The GPU: adapter, device and queue, the pipeline cache, the buffer pool, the open command
//! encoder with its per-submission uniform arena, `launch`, `flush` and async readback.
//!
//! Execution model: every op records one compute pass into the open encoder and returns at
//! once; the encoder is submitted on readback or on an explicit [`Gpu::flush`]. Per-dispatch
//! params go into one uniform "arena" buffer at 256-byte aligned slots selected with dynamic
//! offsets, written once right before the submit: `queue.write_buffer` takes effect before any
//! command buffer submitted after it, so writing one small uniform per dispatch while the
//! encoder is open would make every recorded dispatch see the last write (HOUSE_STYLE §2.3).
//!
//! Consecutive dispatches share one open compute pass, ended only by a copy or a submit: wgpu
//! records every pass as two driver command buffers (the pass and the barriers before it), so a
//! pass per dispatch made the UNet step's submission ~1,600 command buffers (HOUSE_STYLE §2.3's
//! "one pass per op" is kept as [`Gpu::set_split_passes`], the baseline and the timer's
//! fallback). Barriers between dependent dispatches inside a pass are wgpu's, as before.
//!
//! [`Gpu::counters`] counts the device layer's work (dispatches, passes, bind groups, uploads,
//! pool hits and misses, submits, waits) and times its CPU side (recording, submitting, waiting);
//! [`Gpu::start_gpu_timer`] adds GPU timestamps per dispatch where the adapter has them.
//!
//! This module knows nothing about shapes or ops.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::shaders::{BindingKind, Entry, Kernel};
use crate::{Error, Result};

/// Uniform slots are aligned to this (WebGPU's `minUniformBufferOffsetAlignment` default).
const UNIFORM_ALIGN: usize = 256;
/// Bytes of the uniform arena: this many dispatches fit in one submission before an automatic flush.
const ARENA_BYTES: usize = 1 << 20;
/// Most workgroups per grid dimension (WebGPU default limit).
pub const MAX_WORKGROUPS_PER_DIM: u32 = 65_535;
/// Caps applied to what the adapter offers: indices in WGSL are u32 element offsets, and a
/// binding above 1 GiB buys nothing for these models while making an allocation failure later.
const MAX_BINDING_CAP: u64 = 1 << 30;
const MAX_BUFFER_CAP: u64 = 2 << 30;

/// Workgroups a dispatch should launch to keep a discrete GPU busy; ops whose natural grid is
/// smaller split their reduction (split-K) to reach it (see [`Gpu::parallel_target`]). The H200
/// has 132 SMs, each holding about 4 of the register-heavy tiled kernels' 64-invocation
/// workgroups: 1024 is about two waves.
const GPU_PARALLEL_TARGET: u64 = 1024;

/// What [`Gpu::info`] reports.
#[derive(Clone, Debug)]
pub struct GpuInfo {
    pub name: String,
    pub backend: wgpu::Backend,
    pub device_type: wgpu::DeviceType,
    pub driver: String,
    pub driver_info: String,
    pub limits: wgpu::Limits,
    /// The device was created with `SHADER_F16` (kernels still never require it).
    pub shader_f16: bool,
    /// The device was created with `SUBGROUP`.
    pub subgroups: bool,
    pub subgroup_size: (u32, u32),
}

impl std::fmt::Display for GpuInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let l = &self.limits;
        writeln!(f, "adapter:  {} ({:?}, {:?})", self.name, self.backend, self.device_type)?;
        writeln!(f, "driver:   {} {}", self.driver, self.driver_info)?;
        writeln!(
            f,
            "limits:   max_buffer_size={} max_storage_buffer_binding_size={} max_compute_workgroup_storage_size={}",
            l.max_buffer_size, l.max_storage_buffer_binding_size, l.max_compute_workgroup_storage_size
        )?;
        writeln!(
            f,
            "          max_compute_invocations_per_workgroup={} max_compute_workgroups_per_dimension={} max_storage_buffers_per_shader_stage={}",
            l.max_compute_invocations_per_workgroup, l.max_compute_workgroups_per_dimension, l.max_storage_buffers_per_shader_stage
        )?;
        write!(f, "features: shader_f16={} subgroups={} (subgroup size {}..{})", self.shader_f16, self.subgroups, self.subgroup_size.0, self.subgroup_size.1)
    }
}

/// Options for [`Gpu::with_options`].
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Request `SHADER_F16` when the adapter has it (default: yes).
    pub no_f16: bool,
    /// Prefer a software adapter (`force_fallback_adapter`).
    pub fallback: bool,
}

/// Device memory statistics of the buffer pool (activations and weights).
#[derive(Clone, Copy, Debug, Default)]
pub struct MemoryStats {
    /// Bytes in buffers currently held by tensors.
    pub in_use: u64,
    /// Bytes in buffers held by tensors or kept in the pool for reuse.
    pub allocated: u64,
    /// Highest `allocated` seen since the last [`Gpu::reset_peak`].
    pub peak_allocated: u64,
    /// Highest `in_use` seen since the last reset.
    pub peak_in_use: u64,
}

/// Work done by the device layer since the device was created (see [`Gpu::counters`]);
/// subtract two readings for an interval. Times are CPU wall seconds on [`crate::clock`]
/// (millisecond resolution in the browser).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Counters {
    /// Dispatches recorded.
    pub dispatches: u64,
    /// Compute passes opened.
    pub passes: u64,
    /// Bind groups created.
    pub bind_groups: u64,
    /// Compute pipelines created (compiled).
    pub pipelines: u64,
    /// Uniform arena bytes written with `write_buffer` at submits.
    pub uniform_bytes: u64,
    /// Host-to-GPU uploads (`write_buffer` into a tensor or weight) and their bytes.
    pub uploads: u64,
    pub upload_bytes: u64,
    /// Storage buffers taken from the pool, and ones it had to create.
    pub pool_hits: u64,
    pub buffers_created: u64,
    /// Buffer-to-buffer copies recorded.
    pub copies: u64,
    /// Command buffer submissions.
    pub submits: u64,
    /// Blocking waits for the GPU (readbacks, syncs).
    pub waits: u64,
    /// CPU seconds spent recording: pipeline lookup, arena slot, bind group, pass commands.
    pub encode_s: f64,
    /// CPU seconds spent submitting: arena upload, `finish`, `queue.submit`.
    pub submit_s: f64,
    /// Seconds blocked waiting for the GPU.
    pub wait_s: f64,
}

impl std::ops::Sub for Counters {
    type Output = Counters;
    fn sub(self, o: Counters) -> Counters {
        Counters {
            dispatches: self.dispatches - o.dispatches,
            passes: self.passes - o.passes,
            bind_groups: self.bind_groups - o.bind_groups,
            pipelines: self.pipelines - o.pipelines,
            uniform_bytes: self.uniform_bytes - o.uniform_bytes,
            uploads: self.uploads - o.uploads,
            upload_bytes: self.upload_bytes - o.upload_bytes,
            pool_hits: self.pool_hits - o.pool_hits,
            buffers_created: self.buffers_created - o.buffers_created,
            copies: self.copies - o.copies,
            submits: self.submits - o.submits,
            waits: self.waits - o.waits,
            encode_s: self.encode_s - o.encode_s,
            submit_s: self.submit_s - o.submit_s,
            wait_s: self.wait_s - o.wait_s,
        }
    }
}

/// GPU time of one dispatch from timestamp queries (see [`Gpu::start_gpu_timer`]), in ns on
/// the GPU's clock.
#[derive(Clone, Debug, PartialEq)]
pub struct DispatchTime {
    /// Entry point name.
    pub entry: &'static str,
    pub groups: [u32; 3],
    pub start_ns: f64,
    pub end_ns: f64,
}

/// How [`Gpu::start_gpu_timer`] measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerMode {
    /// One timestamp after each dispatch inside the shared pass: a dispatch's time runs from
    /// the previous dispatch's completion (barriers and idle gaps included).
    InsidePasses,
    /// A pass per dispatch with begin/end timestamps (adapters without timestamps inside
    /// passes, e.g. browsers): gaps between dispatches show, but every dispatch then pays a
    /// pass of its own.
    PassPerDispatch,
}

/// Seconds since `start` on [`crate::clock`] (millisecond resolution in the browser).
fn since(start: f64) -> f64 {
    crate::clock::now_s() - start
}

/// A handle to the GPU. Cheap to clone; all clones share one device, encoder and pool.
#[derive(Clone)]
pub struct Gpu(Arc<Inner>);

struct Inner {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: GpuInfo,
    errors: Arc<Mutex<Vec<String>>>,
    lost: Arc<Mutex<Option<String>>>,
    cache: Mutex<Cache>,
    state: Mutex<State>,
    dummy: wgpu::Buffer,
}

#[derive(Default)]
struct Cache {
    layouts: HashMap<Kernel, (wgpu::BindGroupLayout, wgpu::PipelineLayout)>,
    modules: HashMap<Kernel, wgpu::ShaderModule>,
    pipelines: HashMap<PipelineKey, wgpu::ComputePipeline>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct PipelineKey {
    entry: Entry,
    overrides: Vec<(&'static str, u64)>,
}

struct State {
    /// The open compute pass, recorded into `encoder` (declared first: it must end before the
    /// encoder goes).
    pass: Option<wgpu::ComputePass<'static>>,
    encoder: Option<wgpu::CommandEncoder>,
    arena: Vec<u8>,
    arena_buf: wgpu::Buffer,
    pool: Pool,
    stats: MemoryStats,
    counters: Counters,
    /// One compute pass per dispatch (the layout before 2026-12-04), see [`Gpu::set_split_passes`].
    split_passes: bool,
    timer: Option<Timer>,
    parallel_target: u64,
}

/// GPU timestamps being collected: queries of the open submission, and resolved ones waiting
/// to be read back.
struct Timer {
    set: wgpu::QuerySet,
    mode: TimerMode,
    /// Queries written in the open submission.
    used: u32,
    /// The query holding the latest completion in the open pass (`InsidePasses`).
    last: u32,
    marks: Vec<Mark>,
    pending: Vec<(wgpu::Buffer, Vec<Mark>)>,
}

/// A timed dispatch: its start and end are the timestamps in queries `begin` and `end`.
struct Mark {
    entry: &'static str,
    groups: [u32; 3],
    begin: u32,
    end: u32,
}

/// Size-bucketed buffer pool. Buffers dropped while the open encoder may still read them go to
/// `recent`: they may serve as outputs of later dispatches (the queue orders those after the
/// reads) but not as upload targets, because `write_buffer` runs before the whole submission.
#[derive(Default)]
struct Pool {
    free: HashMap<u64, Vec<wgpu::Buffer>>,
    recent: HashMap<u64, Vec<wgpu::Buffer>>,
}

const STORAGE_USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_SRC).union(wgpu::BufferUsages::COPY_DST);

/// Round a byte size up to its pool bucket: multiples of 256 B up to 4 KiB, then 8 steps per
/// power of two (at most 12.5 % waste).
fn bucket(size: u64) -> u64 {
    let size = size.max(16);
    if size <= 4096 {
        return size.div_ceil(256) * 256;
    }
    let p = 63 - size.leading_zeros() as u64; // 2^p <= size
    let step = 1u64 << (p - 3);
    size.div_ceil(step) * step
}

/// A device buffer owned by a tensor; goes back to the pool on drop.
pub struct GpuBuffer {
    buf: Option<wgpu::Buffer>,
    size: u64,
    gpu: Gpu,
}

impl GpuBuffer {
    pub fn raw(&self) -> &wgpu::Buffer {
        self.buf.as_ref().expect("live buffer")
    }
    /// Bucketed size in bytes (≥ the requested size).
    pub fn size(&self) -> u64 {
        self.size
    }
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }
}

impl Drop for GpuBuffer {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            let mut st = self.gpu.state();
            st.stats.in_use -= self.size;
            let open = st.encoder.is_some();
            let list = if open { &mut st.pool.recent } else { &mut st.pool.free };
            list.entry(self.size).or_default().push(buf);
        }
    }
}

fn default_parallel_target(t: wgpu::DeviceType) -> u64 {
    if t == wgpu::DeviceType::Cpu {
        0
    } else {
        GPU_PARALLEL_TARGET
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Gpu {
    /// Create a GPU with default options. Honours `WGPU_BACKEND` (e.g. `vulkan`, `metal`,
    /// `dx12`, `gl`, `webgpu`) and `WGPU_POWER_PREF`.
    pub async fn new() -> Result<Gpu> {
        Self::with_options(GpuOptions::default()).await
    }

    pub async fn with_options(opts: GpuOptions) -> Result<Gpu> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::from_env().unwrap_or(wgpu::PowerPreference::HighPerformance),
                force_fallback_adapter: opts.fallback,
                compatible_surface: None,
                apply_limit_buckets: false,
            })
            .await
            .map_err(|e| Error::NoAdapter(e.to_string()))?;
        Self::from_adapter(adapter, opts).await
    }

    /// Create the device on a given adapter.
    pub async fn from_adapter(adapter: wgpu::Adapter, opts: GpuOptions) -> Result<Gpu> {
        let ainfo = adapter.get_info();
        let mut limits = adapter.limits();
        limits.max_storage_buffer_binding_size = limits.max_storage_buffer_binding_size.min(MAX_BINDING_CAP);
        limits.max_buffer_size = limits.max_buffer_size.min(MAX_BUFFER_CAP);
        let afeat = adapter.features();
        let mut features = wgpu::Features::empty();
        // Only for `start_gpu_timer`: requesting them changes nothing else.
        for f in [wgpu::Features::TIMESTAMP_QUERY, wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES] {
            if afeat.contains(f) {
                features |= f;
            }
        }
        if afeat.contains(wgpu::Features::SHADER_F16) && !opts.no_f16 {
            features |= wgpu::Features::SHADER_F16;
        }
        if afeat.contains(wgpu::Features::SUBGROUP) {
            features |= wgpu::Features::SUBGROUP;
        }
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("ssv2a"),
                required_features: features,
                required_limits: limits.clone(),
                memory_hints: wgpu::MemoryHints::Performance,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::Device(format!("request_device on {}: {e}", ainfo.name)))?;

        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let e2 = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            lock(&e2).push(e.to_string());
        }));
        let lost: Arc<Mutex<Option<String>>> = Arc::default();
        let l2 = lost.clone();
        device.set_device_lost_callback(move |reason, msg| {
            *lock(&l2) = Some(format!("device lost ({reason:?}): {msg}"));
        });

        let info = GpuInfo {
            name: ainfo.name.clone(),
            backend: ainfo.backend,
            device_type: ainfo.device_type,
            driver: ainfo.driver.clone(),
            driver_info: ainfo.driver_info.clone(),
            limits: device.limits(),
            shader_f16: device.features().contains(wgpu::Features::SHADER_F16),
            subgroups: device.features().contains(wgpu::Features::SUBGROUP),
            subgroup_size: (ainfo.subgroup_min_size, ainfo.subgroup_max_size),
        };
        let arena_buf = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("uniform arena"),
            size: ARENA_BYTES as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let dummy = device.create_buffer(&wgpu::BufferDescriptor { label: Some("dummy"), size: 256, usage: STORAGE_USAGE, mapped_at_creation: false });
        Ok(Gpu(Arc::new(Inner {
            device,
            queue,
            info,
            errors,
            lost,
            cache: Mutex::default(),
            state: Mutex::new(State {
                pass: None,
                encoder: None,
                arena: Vec::with_capacity(ARENA_BYTES),
                arena_buf,
                pool: Pool::default(),
                stats: MemoryStats::default(),
                counters: Counters::default(),
                split_passes: false,
                timer: None,
                parallel_target: default_parallel_target(ainfo.device_type),
            }),
            dummy,
        })))
    }

    pub fn info(&self) -> &GpuInfo {
        &self.0.info
    }
    pub fn device(&self) -> &wgpu::Device {
        &self.0.device
    }
    pub fn queue(&self) -> &wgpu::Queue {
        &self.0.queue
    }
    /// Largest byte size of one storage binding (= largest tensor).
    pub fn max_binding(&self) -> u64 {
        self.0.info.limits.max_storage_buffer_binding_size
    }
    pub fn same(&self, other: &Gpu) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.0.state)
    }

    pub fn memory(&self) -> MemoryStats {
        self.state().stats
    }
    pub fn reset_peak(&self) {
        let mut st = self.state();
        st.stats.peak_allocated = st.stats.allocated;
        st.stats.peak_in_use = st.stats.in_use;
    }
    /// Number of dispatches recorded since the device was created.
    pub fn dispatch_count(&self) -> u64 {
        self.state().counters.dispatches
    }
    /// Workgroups a dispatch should reach for this adapter to be busy: ops with a smaller grid
    /// split their reduction into parts (split-K) and sum the parts in a second dispatch. 0 on
    /// CPU adapters (lavapipe runs workgroups on a few threads: a split only adds work).
    pub fn parallel_target(&self) -> u64 {
        self.state().parallel_target
    }
    /// Override [`Gpu::parallel_target`] (`None`: the adapter's default; `Some(0)`: never split,
    /// the baseline of `ssv2a bench unet --no-split-k`).
    pub fn set_parallel_target(&self, workgroups: Option<u64>) {
        self.state().parallel_target = workgroups.unwrap_or_else(|| default_parallel_target(self.0.info.device_type));
    }
    /// The device layer's work counters since the device was created.
    pub fn counters(&self) -> Counters {
        self.state().counters
    }
    /// Record every dispatch in a compute pass of its own (`true`) instead of sharing one open
    /// pass (`false`, the default). Kept as the baseline for `ssv2a bench unet --split-passes`
    /// and for the GPU timer on adapters without timestamps inside passes. Results are the same
    /// either way.
    pub fn set_split_passes(&self, split: bool) {
        let mut st = self.state();
        st.pass = None;
        st.split_passes = split;
    }
    /// Free every pooled (unused) buffer. Tensors that are alive keep theirs.
    pub fn trim_pool(&self) {
        let mut st = self.state();
        let mut freed = 0;
        for (size, v) in st.pool.free.drain() {
            freed += size * v.len() as u64;
            v.into_iter().for_each(|b| b.destroy());
        }
        st.stats.allocated -= freed;
    }

    /// Take a storage buffer of at least `size` bytes. `for_upload` buffers are never ones the
    /// open encoder may still read (see [`Pool`]).
    pub(crate) fn alloc(&self, size: u64, for_upload: bool, what: &str) -> Result<GpuBuffer> {
        let max = self.max_binding();
        if size > max {
            return Err(Error::arg(
                what,
                format!("needs a buffer of {size} bytes, over this adapter's storage binding limit of {max} bytes; use a smaller batch or input"),
            ));
        }
        let b = bucket(size).min(max.max(16));
        let mut st = self.state();
        let reused =
            st.pool.free.get_mut(&b).and_then(|v| v.pop()).or_else(|| if for_upload { None } else { st.pool.recent.get_mut(&b).and_then(|v| v.pop()) });
        if for_upload {
            st.counters.uploads += 1;
            st.counters.upload_bytes += size;
        }
        let buf = match reused {
            Some(buf) => {
                st.counters.pool_hits += 1;
                buf
            }
            None => {
                st.counters.buffers_created += 1;
                st.stats.allocated += b;
                st.stats.peak_allocated = st.stats.peak_allocated.max(st.stats.allocated);
                self.0.device.create_buffer(&wgpu::BufferDescriptor { label: None, size: b, usage: STORAGE_USAGE, mapped_at_creation: false })
            }
        };
        st.stats.in_use += b;
        st.stats.peak_in_use = st.stats.peak_in_use.max(st.stats.in_use);
        drop(st);
        Ok(GpuBuffer { buf: Some(buf), size: b, gpu: self.clone() })
    }

    /// A buffer holding `bytes` (padded with zeros to 4 bytes).
    pub(crate) fn upload_bytes(&self, bytes: &[u8], what: &str) -> Result<GpuBuffer> {
        let buf = self.alloc(bytes.len() as u64, true, what)?;
        let n4 = bytes.len() / 4 * 4;
        if n4 > 0 {
            self.0.queue.write_buffer(buf.raw(), 0, &bytes[..n4]);
        }
        if n4 < bytes.len() {
            let mut tail = [0u8; 4];
            tail[..bytes.len() - n4].copy_from_slice(&bytes[n4..]);
            self.0.queue.write_buffer(buf.raw(), n4 as u64, &tail);
        }
        Ok(buf)
    }

    fn layout(&self, cache: &mut Cache, kernel: Kernel) -> wgpu::PipelineLayout {
        if let Some((_, pl)) = cache.layouts.get(&kernel) {
            return pl.clone();
        }
        let entries: Vec<_> = kernel
            .bindings()
            .iter()
            .enumerate()
            .map(|(i, k)| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: match k {
                    BindingKind::Read => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage { read_only: true },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    BindingKind::ReadWrite => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage { read_only: false },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    BindingKind::Uniform => {
                        wgpu::BindingType::Buffer { ty: wgpu::BufferBindingType::Uniform, has_dynamic_offset: true, min_binding_size: None }
                    }
                },
                count: None,
            })
            .collect();
        let bgl = self.0.device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some(kernel.name()), entries: &entries });
        let pl = self.0.device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(kernel.name()),
            bind_group_layouts: &[Some(&bgl)],
            immediate_size: 0,
        });
        cache.layouts.insert(kernel, (bgl, pl.clone()));
        pl
    }

    fn pipeline(&self, entry: Entry, overrides: &[(&'static str, f64)]) -> (wgpu::ComputePipeline, wgpu::BindGroupLayout) {
        let key = PipelineKey { entry, overrides: overrides.iter().map(|(n, v)| (*n, v.to_bits())).collect() };
        let mut cache = lock(&self.0.cache);
        let layout = self.layout(&mut cache, entry.kernel);
        let bgl = cache.layouts[&entry.kernel].0.clone();
        if let Some(p) = cache.pipelines.get(&key) {
            return (p.clone(), bgl);
        }
        let module = cache
            .modules
            .entry(entry.kernel)
            .or_insert_with(|| {
                self.0.device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(entry.kernel.name()),
                    source: wgpu::ShaderSource::Wgsl(entry.kernel.source().into()),
                })
            })
            .clone();
        self.state().counters.pipelines += 1;
        let constants: Vec<(&str, f64)> = overrides.to_vec();
        let p = self.0.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry.name),
            layout: Some(&layout),
            module: &module,
            entry_point: Some(entry.name),
            compilation_options: wgpu::PipelineCompilationOptions { constants: &constants, zero_initialize_workgroup_memory: false },
            cache: None,
        });
        cache.pipelines.insert(key, p.clone());
        (p, bgl)
    }

    /// Record one dispatch of `entry`: `buffers` are the storage bindings in binding order
    /// (inputs, then outputs), `params` fills the family's uniform struct, `groups` is the grid
    /// (already split so each dimension is ≤ 65 535; see [`Grid`]).
    pub(crate) fn launch<P: bytemuck::Pod>(
        &self,
        entry: Entry,
        overrides: &[(&'static str, f64)],
        params: &P,
        buffers: &[Option<&wgpu::Buffer>],
        groups: [u32; 3],
    ) -> Result<()> {
        let kinds = entry.kernel.bindings();
        let n_storage = kinds.len() - 1;
        if buffers.len() != n_storage {
            return Err(Error::Device(format!("{}: {} buffers bound, the family declares {}", entry.name, buffers.len(), n_storage)));
        }
        let (psize, _) = entry.kernel.params_layout();
        let pbytes = bytemuck::bytes_of(params);
        if pbytes.len() != psize as usize {
            return Err(Error::Device(format!("{}: params are {} bytes, the WGSL struct is {psize}", entry.name, pbytes.len())));
        }
        if groups.iter().any(|&g| g > MAX_WORKGROUPS_PER_DIM) {
            return Err(Error::Device(format!("{}: grid {groups:?} exceeds 65535 per dimension", entry.name)));
        }
        if groups.contains(&0) {
            return Ok(());
        }
        let clock = crate::clock::now_s();
        let (pipeline, bgl) = self.pipeline(entry, overrides);

        let mut st = self.state();
        let queries_full = st.timer.as_ref().is_some_and(|t| t.used + 3 > wgpu::QUERY_SET_MAX_QUERIES);
        if st.arena.len() + UNIFORM_ALIGN > ARENA_BYTES || queries_full {
            self.submit(&mut st);
        }
        let offset = st.arena.len();
        st.arena.extend_from_slice(pbytes);
        st.arena.resize(offset + UNIFORM_ALIGN, 0);

        let mut entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32, resource: b.unwrap_or(&self.0.dummy).as_entire_binding() })
            .collect();
        entries.push(wgpu::BindGroupEntry {
            binding: n_storage as u32,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer: &st.arena_buf, offset: 0, size: wgpu::BufferSize::new(psize as u64) }),
        });
        let bg = self.0.device.create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout: &bgl, entries: &entries });
        let device = &self.0.device;
        let State { pass, encoder, counters, split_passes, timer, .. } = &mut *st;
        let enc = encoder.get_or_insert_with(|| device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("ssv2a") }));
        let split = *split_passes || timer.as_ref().is_some_and(|t| t.mode == TimerMode::PassPerDispatch);
        if split {
            let timestamp_writes = timer.as_mut().map(|t| {
                let begin = t.used;
                t.used += 2;
                t.marks.push(Mark { entry: entry.name, groups, begin, end: begin + 1 });
                wgpu::ComputePassTimestampWrites { query_set: &t.set, beginning_of_pass_write_index: Some(begin), end_of_pass_write_index: Some(begin + 1) }
            });
            let mut p = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(entry.name), timestamp_writes });
            p.set_pipeline(&pipeline);
            p.set_bind_group(0, &bg, &[offset as u32]);
            p.dispatch_workgroups(groups[0], groups[1], groups[2]);
            counters.passes += 1;
        } else {
            let p = pass.get_or_insert_with(|| {
                counters.passes += 1;
                let mut p = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("ssv2a"), timestamp_writes: None }).forget_lifetime();
                if let Some(t) = timer.as_mut() {
                    p.write_timestamp(&t.set, t.used);
                    t.last = t.used;
                    t.used += 1;
                }
                p
            });
            p.set_pipeline(&pipeline);
            p.set_bind_group(0, &bg, &[offset as u32]);
            p.dispatch_workgroups(groups[0], groups[1], groups[2]);
            if let Some(t) = timer.as_mut() {
                p.write_timestamp(&t.set, t.used);
                t.marks.push(Mark { entry: entry.name, groups, begin: t.last, end: t.used });
                t.last = t.used;
                t.used += 1;
            }
        }
        counters.dispatches += 1;
        counters.bind_groups += 1;
        counters.encode_s += since(clock);
        Ok(())
    }

    /// Record a buffer-to-buffer copy into the open encoder (ends the open pass).
    pub(crate) fn copy_buffer(&self, src: &wgpu::Buffer, src_off: u64, dst: &wgpu::Buffer, dst_off: u64, size: u64) {
        let clock = crate::clock::now_s();
        let mut st = self.state();
        st.pass = None;
        let device = &self.0.device;
        let enc = st.encoder.get_or_insert_with(|| device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("ssv2a") }));
        enc.copy_buffer_to_buffer(src, src_off, dst, dst_off, size);
        st.counters.copies += 1;
        st.counters.encode_s += since(clock);
    }

    fn submit(&self, st: &mut State) {
        let clock = crate::clock::now_s();
        st.pass = None;
        if let Some(mut enc) = st.encoder.take() {
            if let Some(t) = st.timer.as_mut().filter(|t| t.used > 0) {
                let bytes = t.used as u64 * 8;
                let resolve = self.0.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("timestamps"),
                    size: bytes,
                    usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                });
                let readback = self.0.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("timestamps readback"),
                    size: bytes,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                enc.resolve_query_set(&t.set, 0..t.used, &resolve, 0);
                enc.copy_buffer_to_buffer(&resolve, 0, &readback, 0, bytes);
                t.pending.push((readback, std::mem::take(&mut t.marks)));
                t.used = 0;
            }
            if !st.arena.is_empty() {
                self.0.queue.write_buffer(&st.arena_buf, 0, &st.arena);
                st.counters.uniform_bytes += st.arena.len() as u64;
            }
            self.0.queue.submit([enc.finish()]);
            st.arena.clear();
            st.counters.submits += 1;
        }
        // Nothing recorded can read the recently freed buffers any more before they are
        // overwritten by a later upload: the submit above is ordered before that upload.
        let recent: Vec<_> = st.pool.recent.drain().collect();
        for (size, mut v) in recent {
            st.pool.free.entry(size).or_default().append(&mut v);
        }
        st.counters.submit_s += since(clock);
    }

    /// How [`Gpu::start_gpu_timer`] would measure on this device, or `None` without
    /// `TIMESTAMP_QUERY`.
    pub fn gpu_timer_mode(&self) -> Option<TimerMode> {
        let f = self.0.device.features();
        if !f.contains(wgpu::Features::TIMESTAMP_QUERY) {
            None
        } else if f.contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES) && !self.state().split_passes {
            Some(TimerMode::InsidePasses)
        } else {
            Some(TimerMode::PassPerDispatch)
        }
    }

    /// Start timing every dispatch on the GPU until [`Gpu::stop_gpu_timer`] (submits what was
    /// recorded before). An error on adapters without timestamp queries.
    pub fn start_gpu_timer(&self) -> Result<TimerMode> {
        let mode = self.gpu_timer_mode().ok_or_else(|| Error::Device(format!("{} has no timestamp queries (wgpu TIMESTAMP_QUERY)", self.0.info.name)))?;
        self.flush()?;
        let set = self.0.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("ssv2a timer"),
            ty: wgpu::QueryType::Timestamp,
            count: wgpu::QUERY_SET_MAX_QUERIES,
        });
        self.state().timer = Some(Timer { set, mode, used: 0, last: 0, marks: vec![], pending: vec![] });
        Ok(mode)
    }

    /// Stop the timer: submit, wait, and return the GPU time of every dispatch recorded since
    /// [`Gpu::start_gpu_timer`], in recording order (empty if the timer was not running).
    pub async fn stop_gpu_timer(&self) -> Result<Vec<DispatchTime>> {
        self.flush()?;
        let timer = {
            let mut st = self.state();
            st.pass = None;
            st.timer.take()
        };
        let Some(timer) = timer else { return Ok(vec![]) };
        let period = self.0.queue.get_timestamp_period() as f64;
        let mut out = vec![];
        for (buf, marks) in timer.pending {
            let bytes = self.map_read(&buf).await?;
            let ticks: &[u64] = bytemuck::cast_slice(&bytes);
            for m in marks {
                let at = |q: u32| ticks.get(q as usize).map(|&t| t as f64 * period).unwrap_or(f64::NAN);
                out.push(DispatchTime { entry: m.entry, groups: m.groups, start_ns: at(m.begin), end_ns: at(m.end) });
            }
        }
        Ok(out)
    }

    /// Submit everything recorded so far. Returns any GPU error raised since the last check.
    pub fn flush(&self) -> Result<()> {
        {
            let mut st = self.state();
            self.submit(&mut st);
        }
        self.check()
    }

    /// Errors recorded by the uncaptured-error handler or device loss, as an `Err`.
    pub fn check(&self) -> Result<()> {
        if let Some(l) = lock(&self.0.lost).clone() {
            return Err(Error::Device(l));
        }
        let errs: Vec<String> = std::mem::take(&mut *lock(&self.0.errors));
        if errs.is_empty() {
            Ok(())
        } else {
            Err(Error::Device(errs.join("; ")))
        }
    }

    /// Flush and wait until the GPU has finished all submitted work (for timing).
    pub async fn sync(&self) -> Result<()> {
        let b = self.alloc(4, false, "sync")?;
        let _ = self.read_bytes(b.raw(), 0, 4).await?;
        Ok(())
    }

    /// Copy `size` bytes at `offset` of `src` back to the host: flushes the open encoder.
    pub(crate) async fn read_bytes(&self, src: &wgpu::Buffer, offset: u64, size: u64) -> Result<Vec<u8>> {
        let size4 = size.div_ceil(4) * 4;
        let staging = self.0.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: size4.max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        if size4 > 0 {
            self.copy_buffer(src, offset, &staging, 0, size4);
        }
        self.flush()?;
        let bytes = self.map_read(&staging).await?;
        Ok(bytes[..size as usize].to_vec())
    }

    /// Map a submitted `MAP_READ` buffer, wait for it, and copy its contents out.
    async fn map_read(&self, buf: &wgpu::Buffer) -> Result<Vec<u8>> {
        let (tx, rx) = futures_channel::oneshot::channel();
        buf.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        let clock = crate::clock::now_s();
        #[cfg(not(target_arch = "wasm32"))]
        self.0.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| Error::Device(format!("poll: {e}")))?;
        let mapped = rx.await;
        {
            let mut st = self.state();
            st.counters.waits += 1;
            st.counters.wait_s += since(clock);
        }
        match mapped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(Error::Device(format!("map_async: {e}"))),
            Err(_) => return Err(Error::Device("readback was cancelled (device lost?)".into())),
        }
        self.check()?;
        let out = {
            let view = buf.slice(..).get_mapped_range().map_err(|e| Error::Device(format!("mapped range: {e}")))?;
            view.to_vec()
        };
        buf.unmap();
        Ok(out)
    }
}

/// Grid helpers: WGSL kernels reconstruct a linear workgroup index as
/// `wid.x + wid.y * nwg.x` (+ `wid.z * nwg.x * nwg.y`), so a 1-D grid larger than 65 535
/// workgroups is folded into x and y.
pub struct Grid;

impl Grid {
    /// `n` workgroups, folded so every dimension is ≤ 65 535.
    pub fn linear(n: u64) -> Result<[u32; 3]> {
        let m = MAX_WORKGROUPS_PER_DIM as u64;
        if n <= m {
            return Ok([n as u32, 1, 1]);
        }
        let y = n.div_ceil(m);
        if y <= m {
            let x = n.div_ceil(y);
            return Ok([x as u32, y as u32, 1]);
        }
        let z = y.div_ceil(m);
        let yy = n.div_ceil(m * z);
        if z > m {
            return Err(Error::Device(format!("grid of {n} workgroups is too large")));
        }
        Ok([m as u32, yy as u32, z as u32])
    }

    /// Enough workgroups of `wg` invocations for `threads` invocations.
    pub fn threads(threads: u64, wg: u32) -> Result<[u32; 3]> {
        Self::linear(threads.div_ceil(wg as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_round_up_with_bounded_waste() {
        assert_eq!(bucket(1), 256);
        assert_eq!(bucket(256), 256);
        assert_eq!(bucket(257), 512);
        assert_eq!(bucket(4096), 4096);
        for s in [4097u64, 5000, 65_537, 1 << 20, (1 << 20) + 1, 123_456_789] {
            let b = bucket(s);
            assert!(b >= s && (b - s) as f64 <= s as f64 * 0.125 + 1.0, "{s} -> {b}");
            assert_eq!(b % 4, 0);
        }
    }

    #[test]
    fn grid_folds_large_grids() {
        assert_eq!(Grid::linear(10).unwrap(), [10, 1, 1]);
        let g = Grid::linear(200_000).unwrap();
        assert!(g[0] <= 65_535 && (g[0] as u64 * g[1] as u64) >= 200_000);
        let g = Grid::linear(65_535u64 * 65_535 * 3).unwrap();
        assert!(g.iter().all(|&d| d <= 65_535));
        assert!(g[0] as u64 * g[1] as u64 * g[2] as u64 >= 65_535u64 * 65_535 * 3);
    }
}
