//! The WGSL kernels, included at compile time and specialised with a short prepended
//! `const` header (tile sizes, op codes); activations are pipeline `override` constants.

/// A kernel source file in `shaders/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ShaderFile {
    GemmNaive,
    GemmTiled,
    GemmVec4,
    GemmBcast,
    GemmTex,
    GemmTex2,
    ConvNaive,
    ConvTiled,
    ConvTex2,
    ConvDepthwise,
    ConvDepthwiseTex2,
    Unary,
    Binary,
    Transpose,
    Concat,
    ToTexture,
    ToTextureR32,
    Softmax,
    LayerNorm,
    BatchNorm,
    Pool2d,
    GlobalAvg,
}

const COMMON: &str = include_str!("../../shaders/common/activation.wgsl");
const CONV_PARAMS: &str = include_str!("../../shaders/conv/params.wgsl");
const GEMM_BLOCK: &str = include_str!("../../shaders/matmul/gemm_block.wgsl");
const B_TEXTURE: &str = include_str!("../../shaders/matmul/b_texture.wgsl");
const B_BUFFER: &str = include_str!("../../shaders/matmul/b_buffer.wgsl");
const STORE4: &str = include_str!("../../shaders/matmul/store4.wgsl");
const TEX_INPUT: &str = include_str!("../../shaders/conv/tex_input.wgsl");
const REDUCE: &str = include_str!("../../shaders/norm/reduce.wgsl");

impl ShaderFile {
    /// Every kernel file, for validation tests.
    pub const ALL: [ShaderFile; 22] = [
        ShaderFile::GemmNaive,
        ShaderFile::GemmTiled,
        ShaderFile::GemmVec4,
        ShaderFile::GemmBcast,
        ShaderFile::GemmTex,
        ShaderFile::GemmTex2,
        ShaderFile::ConvNaive,
        ShaderFile::ConvTiled,
        ShaderFile::ConvTex2,
        ShaderFile::ConvDepthwise,
        ShaderFile::ConvDepthwiseTex2,
        ShaderFile::Unary,
        ShaderFile::Binary,
        ShaderFile::Transpose,
        ShaderFile::Concat,
        ShaderFile::ToTexture,
        ShaderFile::ToTextureR32,
        ShaderFile::Softmax,
        ShaderFile::LayerNorm,
        ShaderFile::BatchNorm,
        ShaderFile::Pool2d,
        ShaderFile::GlobalAvg,
    ];

    /// Path under `shaders/`, for messages.
    pub fn path(self) -> &'static str {
        match self {
            ShaderFile::GemmNaive => "matmul/gemm_naive.wgsl",
            ShaderFile::GemmTiled => "matmul/gemm_tiled.wgsl",
            ShaderFile::GemmVec4 => "matmul/gemm_vec4.wgsl",
            ShaderFile::GemmBcast => "matmul/gemm_block.wgsl+b_buffer.wgsl",
            ShaderFile::GemmTex => "matmul/gemm_block.wgsl+b_texture.wgsl",
            ShaderFile::GemmTex2 => "matmul/gemm_tex2.wgsl",
            ShaderFile::ConvNaive => "conv/conv2d_naive.wgsl",
            ShaderFile::ConvTiled => "conv/conv2d_tiled.wgsl",
            ShaderFile::ConvTex2 => "conv/conv2d_tex2.wgsl",
            ShaderFile::ConvDepthwiseTex2 => "conv/dwconv2d_tex2.wgsl",
            ShaderFile::ConvDepthwise => "conv/dwconv2d.wgsl",
            ShaderFile::Unary => "elementwise/unary.wgsl",
            ShaderFile::Binary => "elementwise/binary.wgsl",
            ShaderFile::Transpose => "elementwise/transpose.wgsl",
            ShaderFile::Concat => "elementwise/concat.wgsl",
            ShaderFile::ToTexture => "elementwise/to_texture.wgsl",
            ShaderFile::ToTextureR32 => "elementwise/to_texture_r32.wgsl",
            ShaderFile::Softmax => "norm/softmax.wgsl",
            ShaderFile::LayerNorm => "norm/layernorm.wgsl",
            ShaderFile::BatchNorm => "norm/batchnorm.wgsl",
            ShaderFile::Pool2d => "pool/pool2d.wgsl",
            ShaderFile::GlobalAvg => "pool/global_avg.wgsl",
        }
    }

    fn body(self) -> &'static str {
        match self {
            ShaderFile::GemmNaive => include_str!("../../shaders/matmul/gemm_naive.wgsl"),
            ShaderFile::GemmTiled => include_str!("../../shaders/matmul/gemm_tiled.wgsl"),
            ShaderFile::GemmVec4 => include_str!("../../shaders/matmul/gemm_vec4.wgsl"),
            ShaderFile::GemmBcast | ShaderFile::GemmTex => GEMM_BLOCK,
            ShaderFile::GemmTex2 => include_str!("../../shaders/matmul/gemm_tex2.wgsl"),
            ShaderFile::ConvNaive => include_str!("../../shaders/conv/conv2d_naive.wgsl"),
            ShaderFile::ConvTiled => include_str!("../../shaders/conv/conv2d_tiled.wgsl"),
            ShaderFile::ConvTex2 => include_str!("../../shaders/conv/conv2d_tex2.wgsl"),
            ShaderFile::ConvDepthwiseTex2 => include_str!("../../shaders/conv/dwconv2d_tex2.wgsl"),
            ShaderFile::ConvDepthwise => include_str!("../../shaders/conv/dwconv2d.wgsl"),
            ShaderFile::Unary => include_str!("../../shaders/elementwise/unary.wgsl"),
            ShaderFile::Binary => include_str!("../../shaders/elementwise/binary.wgsl"),
            ShaderFile::Transpose => include_str!("../../shaders/elementwise/transpose.wgsl"),
            ShaderFile::Concat => include_str!("../../shaders/elementwise/concat.wgsl"),
            ShaderFile::ToTexture => include_str!("../../shaders/elementwise/to_texture.wgsl"),
            ShaderFile::ToTextureR32 => {
                include_str!("../../shaders/elementwise/to_texture_r32.wgsl")
            }
            ShaderFile::Softmax => include_str!("../../shaders/norm/softmax.wgsl"),
            ShaderFile::LayerNorm => include_str!("../../shaders/norm/layernorm.wgsl"),
            ShaderFile::BatchNorm => include_str!("../../shaders/norm/batchnorm.wgsl"),
            ShaderFile::Pool2d => include_str!("../../shaders/pool/pool2d.wgsl"),
            ShaderFile::GlobalAvg => include_str!("../../shaders/pool/global_avg.wgsl"),
        }
    }

    /// The `const` names this file expects in its header, with a representative value each
    /// (used by the validation tests; real values come from the op's lowering).
    pub fn sample_consts(self) -> Vec<Vec<(&'static str, u32)>> {
        match self {
            ShaderFile::GemmTiled => vec![vec![("TM", 4), ("TN", 4)], vec![("TM", 1), ("TN", 8)]],
            ShaderFile::GemmVec4 => vec![
                vec![("TM", 4), ("TN", 4), ("WG_X", 8), ("WG_Y", 8)],
                vec![("TM", 1), ("TN", 4), ("WG_X", 64), ("WG_Y", 1)],
                vec![("TM", 8), ("TN", 8), ("WG_X", 8), ("WG_Y", 8)],
            ],
            ShaderFile::GemmTex2 => vec![vec![("TM", 4), ("TN4", 1)], vec![("TM", 8), ("TN4", 2)]],
            ShaderFile::GemmBcast | ShaderFile::GemmTex => {
                vec![vec![("TM", 4), ("TN4", 1)], vec![("TM", 1), ("TN4", 2)]]
            }
            ShaderFile::ConvTiled | ShaderFile::ConvDepthwise => {
                vec![vec![("PX", 4)]]
            }
            ShaderFile::ConvTex2 | ShaderFile::ConvDepthwiseTex2 => {
                vec![vec![("PX", 4)], vec![("PX", 8)]]
            }
            ShaderFile::Binary => (0..4).map(|op| vec![("OP", op)]).collect(),
            ShaderFile::Pool2d => (0..3).map(|m| vec![("MODE", m)]).collect(),
            _ => vec![vec![]],
        }
    }
}

/// A shader file plus its const header: the key of a shader module.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShaderKey {
    pub file: ShaderFile,
    pub consts: Vec<(&'static str, u32)>,
}

impl ShaderKey {
    pub fn new(file: ShaderFile, consts: &[(&'static str, u32)]) -> Self {
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
        format!("{}[{}]", self.file.path(), c.join(","))
    }

    /// The complete WGSL source: const header, shared helpers, then the kernel body.
    pub fn source(&self) -> String {
        let mut s = String::new();
        for (k, v) in &self.consts {
            s.push_str(&format!("const {k}: u32 = {v}u;\n"));
        }
        s.push_str(COMMON);
        // Every conv kernel shares the conv parameter struct.
        if self.file.path().starts_with("conv/") {
            s.push_str(CONV_PARAMS);
        }
        match self.file {
            ShaderFile::GemmTex => s.push_str(B_TEXTURE),
            ShaderFile::GemmBcast => s.push_str(B_BUFFER),
            ShaderFile::ConvTex2 | ShaderFile::ConvDepthwiseTex2 => s.push_str(TEX_INPUT),
            ShaderFile::Softmax | ShaderFile::LayerNorm => s.push_str(REDUCE),
            _ => {}
        }
        if matches!(
            self.file,
            ShaderFile::GemmTex | ShaderFile::GemmBcast | ShaderFile::GemmTex2
        ) {
            s.push_str(STORE4);
        }
        s.push_str(self.file.body());
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
    let mut v = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::default(),
    );
    v.validate(&module)
        .map_err(|e| crate::Error::ShaderCompile {
            shader: key.label(),
            message: e.emit_to_string(&src),
        })?;
    Ok(module)
}
