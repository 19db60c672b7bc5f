//! Adapter choice and device creation, or adopting an app's own `wgpu::Device`/`Queue`.

use crate::error::{Error, Result};
use crate::profile::{DeviceFeatures, DeviceKind, DeviceLimits, DeviceProfile, TunedChoices};
use std::str::FromStr;

/// Which backend a session runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// `WGEDGE_BACKEND` if set, else the best hardware GPU, else the CPU reference backend.
    /// Software adapters (lavapipe, SwiftShader) are not picked: they run far slower than CPU code.
    #[default]
    Auto,
    /// The best GPU adapter of any kind, software adapters included (benchmarks, tests).
    AnyGpu,
    Cpu,
    Vulkan,
    Metal,
    Dx12,
    Gl,
    /// The browser's WebGPU (wasm builds).
    BrowserWebGpu,
}

impl FromStr for Backend {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "auto" | "" => Backend::Auto,
            "cpu" => Backend::Cpu,
            "gpu" | "any" => Backend::AnyGpu,
            "vulkan" | "vk" => Backend::Vulkan,
            "metal" => Backend::Metal,
            "dx12" | "d3d12" => Backend::Dx12,
            "gl" | "gles" | "opengl" => Backend::Gl,
            "webgpu" | "browser" => Backend::BrowserWebGpu,
            other => {
                return Err(Error::Device(format!(
                    "unknown backend '{other}' (expected auto|gpu|cpu|vulkan|metal|dx12|gl|webgpu)"
                )))
            }
        })
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Backend::Auto => "auto",
            Backend::AnyGpu => "gpu",
            Backend::Cpu => "cpu",
            Backend::Vulkan => "vulkan",
            Backend::Metal => "metal",
            Backend::Dx12 => "dx12",
            Backend::Gl => "gl",
            Backend::BrowserWebGpu => "webgpu",
        };
        f.write_str(s)
    }
}

impl Backend {
    /// Resolves `Auto` against the `WGEDGE_BACKEND` environment variable.
    pub fn resolve_env(self) -> Result<Backend> {
        match (self, std::env::var("WGEDGE_BACKEND")) {
            (Backend::Auto, Ok(v)) if !v.is_empty() => v.parse(),
            _ => Ok(self),
        }
    }

    fn wgpu_backends(self) -> wgpu::Backends {
        match self {
            Backend::Vulkan => wgpu::Backends::VULKAN,
            Backend::Metal => wgpu::Backends::METAL,
            Backend::Dx12 => wgpu::Backends::DX12,
            Backend::Gl => wgpu::Backends::GL,
            Backend::BrowserWebGpu => wgpu::Backends::BROWSER_WEBGPU,
            Backend::Auto | Backend::AnyGpu | Backend::Cpu => wgpu::Backends::all(),
        }
    }
}

/// A wgpu device and queue with what wgedge knows about them.
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    /// Limits, features and kernel choices as plain data for the scheduler.
    pub profile: DeviceProfile,
    pub(crate) kernels: super::kernel::PipelineCache,
}

fn kind_of(t: wgpu::DeviceType) -> DeviceKind {
    match t {
        wgpu::DeviceType::DiscreteGpu => DeviceKind::DiscreteGpu,
        wgpu::DeviceType::IntegratedGpu => DeviceKind::IntegratedGpu,
        wgpu::DeviceType::VirtualGpu => DeviceKind::VirtualGpu,
        wgpu::DeviceType::Cpu => DeviceKind::Software,
        wgpu::DeviceType::Other => DeviceKind::Other,
    }
}

fn rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 4,
        wgpu::DeviceType::IntegratedGpu => 3,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 1,
        wgpu::DeviceType::Cpu => 0,
    }
}

/// What `Backend::Auto` decided and why (printed once, shown by `wgedge info --device`).
#[derive(Debug, Clone)]
pub enum AutoChoice {
    Gpu(String),
    Cpu(String),
}

static NOTICE: std::sync::Once = std::sync::Once::new();

impl GpuContext {
    /// Opens a device for `backend`. `Ok(None)` means "run on the CPU backend": asked for, or
    /// `Auto` found no hardware GPU (then a one-line notice says what it found and why).
    pub async fn open(backend: Backend) -> Result<Option<GpuContext>> {
        let backend = backend.resolve_env()?;
        if backend == Backend::Cpu {
            return Ok(None);
        }
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends: backend.wgpu_backends(),
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        });
        let adapters = enumerate(&instance).await;
        let mut sorted: Vec<(wgpu::Adapter, wgpu::AdapterInfo)> = adapters
            .into_iter()
            .map(|a| {
                let i = a.get_info();
                (a, i)
            })
            .collect();
        sorted.sort_by_key(|(_, i)| std::cmp::Reverse(rank(i.device_type)));
        if backend == Backend::Auto {
            match sorted.first() {
                Some((_, info)) if info.device_type != wgpu::DeviceType::Cpu => {}
                found => {
                    let why = match found {
                        Some((_, i)) => format!("only a software adapter ('{}' on {:?}), which runs slower than the CPU backend; set WGEDGE_BACKEND=vulkan to use it anyway", i.name, i.backend),
                        None => "no GPU adapter found".to_string(),
                    };
                    NOTICE.call_once(|| eprintln!("wgedge: {why}; using the CPU backend"));
                    return Ok(None);
                }
            }
        }
        let (adapter, info) = sorted
            .into_iter()
            .next()
            .ok_or_else(|| Error::Device(format!("no {backend} adapter found")))?;
        if backend == Backend::Auto {
            NOTICE.call_once(|| {
                eprintln!(
                    "wgedge: using '{}' ({:?} on {:?}): the best hardware adapter found",
                    info.name, info.device_type, info.backend
                )
            });
        }
        Self::from_adapter(&adapter).await.map(Some)
    }

    /// Creates a device on `adapter`, requesting optional features only where present.
    pub async fn from_adapter(adapter: &wgpu::Adapter) -> Result<GpuContext> {
        let want =
            wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP | wgpu::Features::TIMESTAMP_QUERY;
        let features = adapter.features() & want;
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("wgedge"),
                required_features: features,
                required_limits: adapter.limits(),
                ..Default::default()
            })
            .await
            .map_err(|e| Error::Device(format!("request_device failed: {e}")))?;
        Ok(Self::from_device(device, queue, adapter.get_info()))
    }

    /// Adopts an app's own device and queue (the app keeps ownership; wgpu handles are shared).
    pub fn from_device(
        device: wgpu::Device,
        queue: wgpu::Queue,
        info: wgpu::AdapterInfo,
    ) -> GpuContext {
        let l = device.limits();
        let f = device.features();
        let profile = DeviceProfile {
            adapter: info.name.clone(),
            backend: format!("{:?}", info.backend).to_lowercase(),
            driver: format!("{} {}", info.driver, info.driver_info)
                .trim()
                .to_string(),
            kind: kind_of(info.device_type),
            limits: DeviceLimits {
                max_buffer_size: l.max_buffer_size,
                max_storage_buffer_binding_size: l.max_storage_buffer_binding_size,
                max_storage_buffers_per_stage: l.max_storage_buffers_per_shader_stage,
                max_uniform_buffer_binding_size: l.max_uniform_buffer_binding_size,
                max_compute_workgroups_per_dimension: l.max_compute_workgroups_per_dimension,
                max_compute_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
                max_compute_workgroup_storage_size: l.max_compute_workgroup_storage_size,
                min_uniform_buffer_offset_alignment: l.min_uniform_buffer_offset_alignment,
                min_storage_buffer_offset_alignment: l.min_storage_buffer_offset_alignment,
                max_texture_dimension_2d: l.max_texture_dimension_2d,
            },
            features: DeviceFeatures {
                shader_f16: f.contains(wgpu::Features::SHADER_F16),
                subgroups: f.contains(wgpu::Features::SUBGROUP),
                timestamp_query: f.contains(wgpu::Features::TIMESTAMP_QUERY),
            },
            kernels: TunedChoices::new(),
            naive_only: false,
        };
        GpuContext {
            device,
            queue,
            info,
            profile,
            kernels: Default::default(),
        }
    }

    /// Blocks until all submitted work is done.
    pub fn wait_idle(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| Error::Gpu(format!("poll: {e}")))
    }

    /// Runs `f` inside validation and out-of-memory error scopes, turning any wgpu error into
    /// `Error::Gpu` naming `what`.
    pub async fn scoped<T>(&self, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let val = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f();
        let v = val.pop().await;
        let o = oom.pop().await;
        if let Some(e) = v.or(o) {
            return Err(Error::Gpu(format!("{what}: {e}")));
        }
        out
    }
}

#[cfg(not(target_arch = "wasm32"))]
async fn enumerate(instance: &wgpu::Instance) -> Vec<wgpu::Adapter> {
    instance.enumerate_adapters(wgpu::Backends::all()).await
}

#[cfg(target_arch = "wasm32")]
async fn enumerate(instance: &wgpu::Instance) -> Vec<wgpu::Adapter> {
    let opts = wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::HighPerformance,
        ..Default::default()
    };
    instance.request_adapter(&opts).await.into_iter().collect()
}
