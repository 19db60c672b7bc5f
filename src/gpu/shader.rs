//! Named WGSL sources and their const headers: the key of a shader module. An op file registers
//! the sources it owns with [`wgsl!`](crate::wgsl); this layer knows only text, names and
//! constants — nothing of ops.

/// The helpers prepended to every kernel (`activate`, `flat_id`, ...).
pub const COMMON_PATH: &str = "common/activation.wgsl";
const COMMON: &str = include_str!("../../shaders/common/activation.wgsl");

/// A kernel source: one or more files under `shaders/`, concatenated in order (shared preludes
/// first, the kernel body last). Made by the [`wgsl!`](crate::wgsl) macro in the op file that
/// owns it.
#[derive(Debug)]
pub struct ShaderSource {
    /// Unique name (the files joined by `+`), used in labels and error messages.
    pub name: &'static str,
    /// `(path under shaders/, text)` of each file, in order.
    pub files: &'static [(&'static str, &'static str)],
    /// Representative `const` headers (for the validation test; real values come from the
    /// lowering). One empty header when the source needs none.
    pub samples: &'static [&'static [(&'static str, u32)]],
}

impl PartialEq for ShaderSource {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}
impl Eq for ShaderSource {}
impl std::hash::Hash for ShaderSource {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.name.hash(h)
    }
}
impl PartialOrd for ShaderSource {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for ShaderSource {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.name.cmp(other.name)
    }
}

/// Registers a WGSL source owned by the calling op file:
/// `wgsl!("matmul/gemm_naive.wgsl")`, or with preludes and sample const headers:
/// `wgsl!("matmul/gemm_block_io.wgsl", "matmul/b_buffer.wgsl", "matmul/gemm_block.wgsl";
/// [[("TM", 4), ("TN4", 1)]])`.
/// Paths are relative to `shaders/`; the files are included at compile time.
#[macro_export]
macro_rules! wgsl {
    ($($path:literal),+ $(; [$([$(($k:literal, $v:literal)),*]),*])?) => {
        $crate::gpu::shader::ShaderSource {
            name: $crate::wgsl!(@name $($path),+),
            files: &[$(($path, include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/", $path)))),+],
            samples: $crate::wgsl!(@samples $($([$(($k, $v)),*]),*)?),
        }
    };
    (@name $first:literal $(, $rest:literal)*) => { concat!($first $(, "+", $rest)*) };
    (@samples) => { &[&[]] };
    (@samples $([$(($k:literal, $v:literal)),*]),+) => { &[$(&[$(($k, $v)),*]),+] };
}

/// A shader source plus its const header: the key of a shader module.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShaderKey {
    pub file: &'static ShaderSource,
    pub consts: Vec<(&'static str, u32)>,
}

impl ShaderKey {
    pub fn new(file: &'static ShaderSource, consts: &[(&'static str, u32)]) -> Self {
        ShaderKey {
            file,
            consts: consts.to_vec(),
        }
    }

    /// A readable label: `matmul/gemm_vec4.wgsl[TM=4,TN=4]`.
    pub fn label(&self) -> String {
        let c: Vec<String> = self
            .consts
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!("{}[{}]", self.file.name, c.join(","))
    }

    /// The complete WGSL source: `enable` directives found in the files (WGSL wants them
    /// first), const header, shared helpers, then the source's files.
    pub fn source(&self) -> String {
        let mut s = String::new();
        for (_, text) in self.file.files {
            for l in text.lines().filter(|l| l.starts_with("enable ")) {
                s.push_str(l);
                s.push('\n');
            }
        }
        for (k, v) in &self.consts {
            s.push_str(&format!("const {k}: u32 = {v}u;\n"));
        }
        s.push_str(COMMON);
        for (_, text) in self.file.files {
            for l in text.lines().filter(|l| !l.starts_with("enable ")) {
                s.push_str(l);
                s.push('\n');
            }
        }
        s
    }
}

/// Parses and validates a shader with naga, returning a readable error on failure.
pub fn validate(key: &ShaderKey) -> crate::Result<naga::Module> {
    let src = key.source();
    let module = naga::front::wgsl::parse_str(&src).map_err(|e| crate::Error::ShaderCompile {
        shader: key.label(),
        message: e.emit_to_string(&src),
    })?;
    // Subgroup and f16 operations validate here; kernels that use them are only chosen on
    // adapters with the feature, and wgpu validates again against the device's real capabilities.
    let mut v = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::default()
            | naga::valid::Capabilities::SUBGROUP
            | naga::valid::Capabilities::SHADER_FLOAT16,
    );
    v.validate(&module)
        .map_err(|e| crate::Error::ShaderCompile {
            shader: key.label(),
            message: e.emit_to_string(&src),
        })?;
    Ok(module)
}

/// Checks a validated kernel's workgroup against the device: invocations per workgroup
/// (`@workgroup_size` x*y*z; WebGPU guarantees 256) and the bytes of its `var<workgroup>`
/// arrays (WebGPU guarantees 16 KiB; adapters report up to 32 KiB or more). Run when a
/// session builds its pipelines, so a kernel that does not fit is a `DeviceLimit` error naming
/// the kernel at session creation rather than a pipeline validation error in the middle of a
/// run. A workgroup size that depends on a pipeline `override` is left to wgpu (no kernel
/// declares one).
pub fn check_workgroup_limits(
    module: &naga::Module,
    label: &str,
    limits: &crate::profile::DeviceLimits,
) -> crate::Result<()> {
    let mut layouter = naga::proc::Layouter::default();
    layouter
        .update(module.to_ctx())
        .map_err(|e| crate::Error::ShaderCompile {
            shader: label.to_string(),
            message: format!("type layout: {e}"),
        })?;
    let shared: u64 = (module.global_variables.iter())
        .filter(|(_, g)| g.space == naga::AddressSpace::WorkGroup)
        .map(|(_, g)| layouter[g.ty].size as u64)
        .sum();
    if shared > limits.max_compute_workgroup_storage_size as u64 {
        return Err(crate::Error::DeviceLimit {
            what: format!("workgroup storage bytes of kernel '{label}'"),
            needed: shared,
            max: limits.max_compute_workgroup_storage_size as u64,
        });
    }
    for ep in &module.entry_points {
        let n: u64 = ep.workgroup_size.iter().map(|&d| d as u64).product();
        if n > limits.max_compute_invocations_per_workgroup as u64 {
            return Err(crate::Error::DeviceLimit {
                what: format!("invocations per workgroup of kernel '{label}'"),
                needed: n,
                max: limits.max_compute_invocations_per_workgroup as u64,
            });
        }
    }
    Ok(())
}

/// Pipeline-overridable constants of a dispatch (`override` declarations in the WGSL), as
/// (name, value) pairs; part of the pipeline cache key.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Overrides(pub Vec<(&'static str, f64)>);

impl Overrides {
    /// A hashable form of the values.
    pub(crate) fn key(&self) -> Vec<(&'static str, u64)> {
        self.0.iter().map(|(k, v)| (*k, v.to_bits())).collect()
    }
}

/// Texel format of a scratch texture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TexFormat {
    /// Four f32 per texel.
    Rgba32F,
    /// One f32 per texel.
    R32F,
    /// Four u32 per texel (16 int8 codes: quantised activations).
    Rgba32U,
}
