//! Adapter choice and device creation, or adopting an app's own `wgpu::Device`/`Queue`.

use crate::error::{Error, Result};
use crate::profile::{DeviceFeatures, DeviceKind, DeviceLimits, DeviceProfile, TunedChoices};
use std::str::FromStr;

/// Which backend a session runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// Sessions (`Session::new`, native builds): the faster of the best GPU adapter (hardware
    /// or software) and the CPU backend, measured on the model once and cached per model,
    /// adapter and driver (`crate::auto`). [`GpuContext::open`] alone cannot measure: it takes
    /// the best hardware GPU and leaves software adapters (lavapipe, SwiftShader) to the CPU
    /// backend, as does the wasm32 build. The library reads no environment; the `wgedge` CLI
    /// applies `WGEDGE_BACKEND` with [`Backend::resolve_env`].
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
    /// Resolves `Auto` against the `WGEDGE_BACKEND` environment variable (other values are
    /// returned as they are). A helper for applications and the CLI: the library itself never
    /// calls it, so a library user's `Backend` is what runs.
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

/// What `Backend::Auto` decided and why, returned by [`GpuContext::open_with_choice`] (and
/// logged through the `log` crate) so that the caller can show it; the library prints nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AutoChoice {
    /// The best hardware adapter was taken.
    Hardware {
        adapter: String,
        kind: DeviceKind,
        /// wgpu's backend name: "Vulkan", "Metal", "Dx12", "Gl".
        backend: String,
    },
    /// Only a software adapter (lavapipe, SwiftShader) was found; the CPU backend is used,
    /// which runs faster on the same cores. Ask for its backend (or `AnyGpu`) to use it anyway.
    SoftwareOnly { adapter: String, backend: String },
    /// No adapter at all; the CPU backend is used.
    NoAdapter,
}

impl AutoChoice {
    /// True when `Auto` settled on the CPU backend.
    pub fn is_cpu(&self) -> bool {
        !matches!(self, AutoChoice::Hardware { .. })
    }
}

impl std::fmt::Display for AutoChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AutoChoice::Hardware {
                adapter,
                kind,
                backend,
            } => write!(
                f,
                "using '{adapter}' ({kind:?} on {backend}): the best hardware adapter found"
            ),
            AutoChoice::SoftwareOnly { adapter, backend } => write!(
                f,
                "only a software adapter ('{adapter}' on {backend}), which runs slower than the \
                 CPU backend; using the CPU backend"
            ),
            AutoChoice::NoAdapter => f.write_str("no GPU adapter found; using the CPU backend"),
        }
    }
}

impl GpuContext {
    /// Opens a device for `backend`. `Ok(None)` means "run on the CPU backend": asked for, or
    /// `Auto` found no hardware GPU. What `Auto` decided is logged (`log::info!`, or
    /// `log::warn!` when it falls back to the CPU) and returned by
    /// [`GpuContext::open_with_choice`]; nothing is printed and no environment variable is
    /// read (a CLI resolves `WGEDGE_BACKEND` itself with [`Backend::resolve_env`]).
    pub async fn open(backend: Backend) -> Result<Option<GpuContext>> {
        Ok(Self::open_with_choice(backend).await?.0)
    }

    /// [`GpuContext::open`], also returning what `Backend::Auto` decided and why (`None` for
    /// any other backend), for the caller to show: its `Display` is one line.
    pub async fn open_with_choice(
        backend: Backend,
    ) -> Result<(Option<GpuContext>, Option<AutoChoice>)> {
        if backend == Backend::Cpu {
            return Ok((None, None));
        }
        #[cfg(target_arch = "wasm32")]
        if !browser_webgpu(backend).await? {
            log::warn!("{NO_WEBGPU}");
            return Ok((None, Some(AutoChoice::NoAdapter)));
        }
        let mut sorted: Vec<(wgpu::Adapter, wgpu::AdapterInfo)> =
            enumerate(backend.wgpu_backends())
                .await
                .into_iter()
                .map(|a| {
                    let i = a.get_info();
                    (a, i)
                })
                .collect();
        sorted.sort_by_key(|(_, i)| std::cmp::Reverse(rank(i.device_type)));
        let mut choice = None;
        if backend == Backend::Auto {
            let c = match sorted.first() {
                Some((_, i)) if i.device_type != wgpu::DeviceType::Cpu => AutoChoice::Hardware {
                    adapter: i.name.clone(),
                    kind: kind_of(i.device_type),
                    backend: format!("{:?}", i.backend),
                },
                Some((_, i)) => AutoChoice::SoftwareOnly {
                    adapter: i.name.clone(),
                    backend: format!("{:?}", i.backend),
                },
                None => AutoChoice::NoAdapter,
            };
            if c.is_cpu() {
                log::warn!("{c}");
                return Ok((None, Some(c)));
            }
            log::info!("{c}");
            choice = Some(c);
        }
        let (adapter, _) = sorted.into_iter().next().ok_or_else(|| {
            #[cfg(target_arch = "wasm32")]
            return Error::Device(NO_WEBGPU.into());
            #[cfg(not(target_arch = "wasm32"))]
            Error::Device(format!("no {backend} adapter found"))
        })?;
        Ok((Some(Self::from_adapter(&adapter).await?), choice))
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
            int8_activations: false,
            f16_compute: false,
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

/// Every adapter of `backends`.
///
/// On Linux and FreeBSD the Vulkan adapters come from an instance made without the window-system
/// surface extensions (see [`headless_vulkan`]); the other backends from a plain instance.
#[cfg(not(target_arch = "wasm32"))]
async fn enumerate(backends: wgpu::Backends) -> Vec<wgpu::Adapter> {
    let mut adapters = Vec::new();
    #[allow(unused_mut)]
    let mut rest = backends;
    #[cfg(any(target_os = "linux", target_os = "freebsd"))]
    if backends.contains(wgpu::Backends::VULKAN) {
        if let Some(vk) = headless_vulkan() {
            adapters.extend(vk.enumerate_adapters(wgpu::Backends::VULKAN).await);
            rest.remove(wgpu::Backends::VULKAN);
        }
    }
    if !rest.is_empty() {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends: rest,
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        });
        adapters.extend(instance.enumerate_adapters(rest).await);
    }
    adapters
}

/// Instance extensions through which Vulkan presents to an X11 or Wayland window.
#[cfg(any(target_os = "linux", target_os = "freebsd"))]
const WINDOW_SYSTEM_EXTENSIONS: [&[u8]; 3] = [
    b"VK_KHR_wayland_surface",
    b"VK_KHR_xcb_surface",
    b"VK_KHR_xlib_surface",
];

/// A Vulkan instance for compute only: wgpu-hal's instance extensions minus
/// [`WINDOW_SYSTEM_EXTENSIONS`]; `None` (the caller then uses a plain instance) if it cannot
/// be made.
///
/// Why: wgpu-hal enables `VK_KHR_wayland_surface` and `VK_KHR_xcb_surface` whenever the
/// driver offers them, and Mesa's implicit device-select layer (`VK_LAYER_MESA_device_select`)
/// reacts to an instance that enabled them by connecting to the Wayland display (and the X
/// server) in every `vkEnumeratePhysicalDevices` call, to find the display's GPU. Without a
/// desktop session libwayland-client then prints `error: XDG_RUNTIME_DIR is invalid or not set
/// in the environment.` to stderr, once per call: twice per adapter enumeration. wgedge never
/// presents, so it does not ask for those extensions and the layer does not connect.
///
/// The instance is private to [`GpuContext::open_with_choice`]: no surface is ever created
/// on it (an app that presents makes its own device and hands it in with
/// [`GpuContext::from_device`]).
#[cfg(any(target_os = "linux", target_os = "freebsd"))]
fn headless_vulkan() -> Option<wgpu::Instance> {
    use wgpu::hal;
    let desc = hal::InstanceDescriptor {
        name: "wgpu",
        flags: wgpu::InstanceFlags::default(),
        memory_budget_thresholds: Default::default(),
        backend_options: Default::default(),
        telemetry: None,
        display: None,
    };
    let no_wsi: Box<hal::vulkan::CreateInstanceCallback> = Box::new(|args| {
        args.extensions
            .retain(|e| !WINDOW_SYSTEM_EXTENSIONS.contains(&e.to_bytes()))
    });
    // SAFETY: the callback only removes extensions; it adds nothing the instance does not
    // support and touches no create-info field. wgpu-hal documents the list as "must not
    // remove", because it assumes an available extension is enabled; in wgpu-hal 30 the three
    // removed ones are used only by `create_surface_from_{wayland,xcb,xlib}`, each of which
    // first checks `shared.extensions` (the list as passed to the driver, after this callback)
    // and returns an error if the extension is absent. No surface is ever created on this
    // instance (it never leaves this module), so those paths are not reached.
    // `VK_KHR_surface`, which other enabled extensions depend on, is kept.
    let raw = unsafe { hal::vulkan::Instance::init_with_callback(&desc, Some(no_wsi)) };
    match raw {
        // SAFETY: `raw` is a valid Vulkan instance that wgpu now owns and destroys.
        Ok(raw) => Some(unsafe { wgpu::Instance::from_hal::<hal::api::Vulkan>(raw) }),
        Err(e) => {
            log::debug!("no headless Vulkan instance ({e}); using a plain one");
            None
        }
    }
}

/// Why a page gets no GPU session: shown by apps as it is.
#[cfg(target_arch = "wasm32")]
const NO_WEBGPU: &str = "this browser exposes no WebGPU (navigator.gpu is missing or it grants \
     no adapter: an older browser, WebGPU disabled or blocked, or a page that is not a secure \
     context such as https:// or http://127.0.0.1); use the CPU backend (Backend::Cpu)";

/// In the browser: whether WebGPU can be used for `backend`. `Ok(false)` only for `Auto`
/// (which then falls back to the CPU backend); a WebGPU request without WebGPU, and native
/// backends (which a page does not have), are errors that say so.
#[cfg(target_arch = "wasm32")]
async fn browser_webgpu(backend: Backend) -> Result<bool> {
    match backend {
        Backend::Vulkan | Backend::Metal | Backend::Dx12 | Backend::Gl => {
            return Err(Error::Device(format!(
                "backend '{backend}' does not exist in the browser: use webgpu, cpu or auto"
            )))
        }
        _ => {}
    }
    if wgpu::util::is_browser_webgpu_supported().await {
        return Ok(true);
    }
    if backend == Backend::Auto {
        return Ok(false);
    }
    Err(Error::Device(NO_WEBGPU.into()))
}

#[cfg(target_arch = "wasm32")]
async fn enumerate(backends: wgpu::Backends) -> Vec<wgpu::Adapter> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends,
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    let opts = wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::HighPerformance,
        ..Default::default()
    };
    instance.request_adapter(&opts).await.into_iter().collect()
}
