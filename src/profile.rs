//! `DeviceProfile`: what the scheduler may know about a device, as plain data — limits,
//! optional features, and the kernel variants autotuning picked. No wgpu types here, so the
//! scheduler can plan for any device (and tests can plan with no device at all).

use crate::ops::Kernel;
use serde::{Deserialize, Serialize};

/// Kind of adapter, mirrored from wgpu so the scheduler does not import it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    DiscreteGpu,
    IntegratedGpu,
    VirtualGpu,
    /// A software rasteriser such as lavapipe or SwiftShader.
    Software,
    Other,
}

/// Limits that decide whether and how a plan fits on the device.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DeviceLimits {
    pub max_buffer_size: u64,
    pub max_storage_buffer_binding_size: u64,
    pub max_storage_buffers_per_stage: u32,
    pub max_uniform_buffer_binding_size: u64,
    pub max_compute_workgroups_per_dimension: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub max_compute_workgroup_storage_size: u32,
    pub min_uniform_buffer_offset_alignment: u32,
    pub min_storage_buffer_offset_alignment: u32,
    pub max_texture_dimension_2d: u32,
}

impl Default for DeviceLimits {
    /// WebGPU's guaranteed minimums: a plan that fits these fits any conformant adapter.
    fn default() -> Self {
        DeviceLimits {
            max_buffer_size: 256 << 20,
            max_storage_buffer_binding_size: 128 << 20,
            max_storage_buffers_per_stage: 8,
            max_uniform_buffer_binding_size: 64 << 10,
            max_compute_workgroups_per_dimension: 65535,
            max_compute_invocations_per_workgroup: 256,
            max_compute_workgroup_storage_size: 16384,
            min_uniform_buffer_offset_alignment: 256,
            min_storage_buffer_offset_alignment: 256,
            max_texture_dimension_2d: 8192,
        }
    }
}

/// Optional features present on the device (used when present, never required).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DeviceFeatures {
    pub shader_f16: bool,
    pub subgroups: bool,
    pub timestamp_query: bool,
}

/// Kernel variants chosen for this device (by autotuning or the defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelChoices {
    /// GEMM with M > 1 and a constant B (weights).
    pub gemm: Kernel,
    /// GEMM with M == 1 (GEMV) and a constant B.
    pub gemv: Kernel,
    /// GEMM on the scalar path (transposed A, K % 4 != 0, non-constant B).
    pub gemm_tiled: Kernel,
    /// Dense / grouped convolution.
    pub conv: Kernel,
    /// Depthwise convolution.
    pub dwconv: Kernel,
}

impl Default for KernelChoices {
    fn default() -> Self {
        KernelChoices {
            gemm: Kernel::GemmBcast { tm: 4, tn4: 2 },
            gemv: Kernel::GemmVec4 { tm: 1, tn: 4 },
            gemm_tiled: Kernel::GemmTiled { tm: 4, tn: 4 },
            conv: Kernel::ConvTiled { px: 4 },
            dwconv: Kernel::ConvDepthwise { px: 4 },
        }
    }
}

impl KernelChoices {
    /// The best storage-buffer-only kernels measured on lavapipe (no textures): the portable
    /// path most real GPUs run, kept as a benchmark baseline.
    pub fn storage_only() -> Self {
        KernelChoices {
            gemm: Kernel::GemmBcast { tm: 8, tn4: 2 },
            gemv: Kernel::GemmBcast { tm: 1, tn4: 4 },
            gemm_tiled: Kernel::GemmTiled { tm: 4, tn: 4 },
            conv: Kernel::ConvTiled { px: 8 },
            dwconv: Kernel::ConvDepthwise { px: 4 },
        }
    }
}

/// Everything the scheduler knows about a device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceProfile {
    pub adapter: String,
    pub backend: String,
    pub driver: String,
    pub kind: DeviceKind,
    pub limits: DeviceLimits,
    pub features: DeviceFeatures,
    pub kernels: KernelChoices,
    /// Force every node onto its naive reference kernel (testing and benchmarks).
    #[serde(default)]
    pub naive_only: bool,
}

impl DeviceProfile {
    /// A profile for planning without a device: WebGPU minimum limits, default kernels.
    pub fn portable() -> Self {
        DeviceProfile {
            adapter: "portable".into(),
            backend: "none".into(),
            driver: String::new(),
            kind: DeviceKind::Other,
            limits: DeviceLimits::default(),
            features: DeviceFeatures::default(),
            kernels: KernelChoices::default(),
            naive_only: false,
        }
    }
}
