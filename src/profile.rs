//! `DeviceProfile`: what the scheduler may know about a device, as plain data — limits,
//! optional features, and the kernel variants autotuning picked. No wgpu types here, so the
//! scheduler can plan for any device (and tests can plan with no device at all).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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

/// Kernel variants chosen for this device, as plain data: op family -> slot (a case the family
/// tunes separately, e.g. "gemv") -> the variant with its parameters, in the variant's own serde
/// form (e.g. `{"matmul": {"gemm": {"kernel": "bcast", "tm": 4, "tn4": 2}}}`). The op family
/// that owns a slot reads it back; a missing slot means the family's default.
pub type TunedChoices = BTreeMap<String, BTreeMap<String, serde_json::Value>>;

/// Everything the scheduler knows about a device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceProfile {
    pub adapter: String,
    pub backend: String,
    pub driver: String,
    pub kind: DeviceKind,
    pub limits: DeviceLimits,
    pub features: DeviceFeatures,
    /// Tuned (or overridden) kernel choices; empty means every family's defaults.
    #[serde(default)]
    pub kernels: TunedChoices,
    /// Force every node onto its naive reference kernel (testing and benchmarks).
    #[serde(default)]
    pub naive_only: bool,
    /// Quantise activations to int8 per row at run time for matmuls on int8 weights (int8 x int8
    /// with integer accumulation): faster on integer-dot hardware, approximate (opt-in).
    #[serde(default)]
    pub int8_activations: bool,
    /// The session allows f16 arithmetic (`SessionOptions::f16_compute`): kernels that
    /// multiply in f16 with f32 sums may be chosen where the adapter has `shader-f16`.
    #[serde(default)]
    pub f16_compute: bool,
}

impl DeviceProfile {
    /// The tuned choice for `family`/`slot`, if any.
    pub fn choice(&self, family: &str, slot: &str) -> Option<&serde_json::Value> {
        self.kernels.get(family).and_then(|m| m.get(slot))
    }

    /// A profile for planning without a device: WebGPU minimum limits, default kernels.
    pub fn portable() -> Self {
        DeviceProfile {
            adapter: "portable".into(),
            backend: "none".into(),
            driver: String::new(),
            kind: DeviceKind::Other,
            limits: DeviceLimits::default(),
            features: DeviceFeatures::default(),
            kernels: TunedChoices::new(),
            naive_only: false,
            int8_activations: false,
            f16_compute: false,
        }
    }
}
