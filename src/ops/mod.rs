//! The op registry. Each op family lives in one file with its attributes, shape rule, CPU
//! reference and GPU lowering; this file ties them together with one match arm per op.
//!
//! Adding an op: see `docs/adding-an-op.md`.

use crate::error::{Error, Result};
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};

pub mod conv;
pub mod elementwise;
pub mod matmul;
pub mod norm;
pub mod pool;
pub mod shaders;
pub mod shape;

pub use conv::Conv2d;
pub use elementwise::{Binary, BinaryKind, Unary};
pub use matmul::MatMul;
pub use norm::{BatchNorm, LayerNorm, Softmax};
pub use pool::{GlobalAvgPool, Pool2d, PoolKind};
pub use shaders::{ShaderFile, ShaderKey};
pub use shape::{Concat, Flatten, Reshape, Transpose};

/// An activation applied elementwise, standalone or fused into a producer's epilogue.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Activation {
    #[default]
    None,
    Relu,
    Relu6,
    LeakyRelu {
        alpha: f32,
    },
    Sigmoid,
    Tanh,
    /// tanh approximation (as in GPT-2 / BERT implementations).
    Gelu,
    Silu,
    Hardswish,
}

impl Activation {
    /// The code the shaders' `ACT` override takes, and the `ALPHA` it needs.
    pub fn code(self) -> (u32, f32) {
        match self {
            Activation::None => (0, 0.0),
            Activation::Relu => (1, 0.0),
            Activation::Relu6 => (2, 0.0),
            Activation::LeakyRelu { alpha } => (3, alpha),
            Activation::Sigmoid => (4, 0.0),
            Activation::Tanh => (5, 0.0),
            Activation::Gelu => (6, 0.0),
            Activation::Silu => (7, 0.0),
            Activation::Hardswish => (8, 0.0),
        }
    }

    /// CPU reference of the activation (same formulas as `shaders/common/activation.wgsl`).
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::None => x,
            Activation::Relu => x.max(0.0),
            Activation::Relu6 => x.clamp(0.0, 6.0),
            Activation::LeakyRelu { alpha } => {
                if x >= 0.0 {
                    x
                } else {
                    alpha * x
                }
            }
            Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Activation::Tanh => x.tanh(),
            Activation::Gelu => {
                let u = 0.797_884_6 * (x + 0.044715 * x * x * x);
                0.5 * x * (1.0 + u.tanh())
            }
            Activation::Silu => x / (1.0 + (-x).exp()),
            Activation::Hardswish => x * (x + 3.0).clamp(0.0, 6.0) / 6.0,
        }
    }
}

/// A node's operation: plain data (hashable attributes), edges live in the graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    MatMul(MatMul),
    Conv2d(Conv2d),
    Pool2d(Pool2d),
    GlobalAvgPool(GlobalAvgPool),
    Binary(Binary),
    Unary(Unary),
    Softmax(Softmax),
    LayerNorm(LayerNorm),
    BatchNorm(BatchNorm),
    Reshape(Reshape),
    Flatten(Flatten),
    Transpose(Transpose),
    Concat(Concat),
}

/// Which kernel runs a node on the GPU; chosen by the scheduler (`sched::select`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kernel", rename_all = "snake_case")]
pub enum Kernel {
    /// One invocation per output: the second reference kernel.
    Naive,
    /// The op's ordinary kernel (ops with one GPU kernel).
    Standard,
    /// Register-blocked GEMM, scalar loads, any layout.
    GemmTiled { tm: u32, tn: u32 },
    /// Register-blocked GEMM on the NT layout with vec4 loads (K % 4 == 0); tm = 1 is GEMV.
    GemmVec4 { tm: u32, tn: u32 },
    /// GEMM with constant B packed `[K][N]` (vec4 along N); a workgroup shares `tm` rows of A,
    /// each invocation owns `tn4` vec4 columns. Any K, any A layout.
    GemmBcast { tm: u32, tn4: u32 },
    /// As `GemmBcast` with B in an rgba32float texture (vector-gather loads on CPU adapters,
    /// texture cache on mobile GPUs).
    GemmTex { tm: u32, tn4: u32 },
    /// Both GEMM operands through textures: A copied into one per run, B packed at load.
    GemmTex2 { tm: u32, tn4: u32 },
    /// Direct convolution with the input copied into a texture per run and the weights in one.
    ConvTex2 { px: u32 },
    /// Depthwise convolution with input and weights read through textures.
    ConvDepthwiseTex2 { px: u32 },
    /// Register-blocked direct convolution, 8 channels x `px` pixels per invocation.
    ConvTiled { px: u32 },
    /// Depthwise convolution, `px` pixels per invocation.
    ConvDepthwise { px: u32 },
}

impl Kernel {
    /// Short name used in plans, benchmark records and profiles.
    pub fn name(&self) -> String {
        match self {
            Kernel::Naive => "naive".into(),
            Kernel::Standard => "standard".into(),
            Kernel::GemmTiled { tm, tn } => format!("tiled-{tm}x{tn}"),
            Kernel::GemmVec4 { tm, tn } => format!("vec4-{tm}x{tn}"),
            Kernel::GemmBcast { tm, tn4 } => format!("bcast-{tm}x{}", tn4 * 4),
            Kernel::GemmTex { tm, tn4 } => format!("tex-{tm}x{}", tn4 * 4),
            Kernel::GemmTex2 { tm, tn4 } => format!("tex2-{tm}x{}", tn4 * 4),
            Kernel::ConvTex2 { px } => format!("tex2-8x{px}"),
            Kernel::ConvDepthwiseTex2 { px } => format!("depthwise-tex2-{px}"),
            Kernel::ConvTiled { px } => format!("tiled-8x{px}"),
            Kernel::ConvDepthwise { px } => format!("depthwise-{px}"),
        }
    }
}

/// How a constant input is re-laid-out once at load for a kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pack {
    /// `[.., K, N]` -> `[.., N, K]` (GEMM B operand to the NT layout).
    TransposeLast2,
    /// B (`[.., K, N]`, or `[.., N, K]` when `trans_b`) -> `[.., K, N rounded up to 4]`.
    KnPadded4 { trans_b: bool },
    /// Data viewed as `[len / cols][cols]` with each row zero-padded to a multiple of 4.
    Rows4 { cols: usize },
    /// OIHW conv weights -> `[group][cin_g*kh*kw][cout_g rounded up to 8]`.
    ConvTaps { groups: usize },
}

/// Texel format of a scratch texture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TexFormat {
    /// Four f32 per texel.
    Rgba32F,
    /// One f32 per texel.
    R32F,
}

/// What a shader binding is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bind {
    /// The node's input number `i`.
    Input(usize),
    /// Input `i` (a constant) after a one-time re-layout.
    Packed(usize, Pack),
    /// Input `i` (a constant) re-laid-out and uploaded as an rgba32float texture `width`
    /// texels wide.
    Texture(usize, Pack, u32),
    /// The node's output.
    Output,
    /// Node-private scratch texture `i` (`w` x `h` texels), written as a storage texture by one
    /// dispatch of the node...
    ScratchStore(usize, u32, u32, TexFormat),
    /// ...and read as a texture by a later one.
    ScratchRead(usize),
    /// An unused optional operand (the shader reads it only behind a flag that is off).
    Dummy,
}

/// One compute dispatch, as plain data: the GPU executor turns it into a pipeline + bind group.
#[derive(Debug, Clone, PartialEq)]
pub struct Dispatch {
    pub shader: ShaderKey,
    pub act: Activation,
    /// Uniform parameters (binding 0), as 32-bit words.
    pub params: Vec<u32>,
    /// Storage bindings 1.. in order.
    pub bindings: Vec<Bind>,
    pub workgroups: [u32; 3],
}

/// What a GPU lowering may know about a node.
pub struct LowerCtx<'a> {
    pub in_shapes: &'a [Vec<usize>],
    pub out_shape: &'a [usize],
    /// Which inputs are constants (weights), so they may be packed at load.
    pub is_const: &'a [bool],
    pub kernel: Kernel,
    /// Largest workgroup count per dispatch dimension the device allows.
    pub max_workgroups: u32,
}

impl Op {
    /// The op's name as used in errors and plans.
    pub fn name(&self) -> &'static str {
        match self {
            Op::MatMul(_) => "matmul",
            Op::Conv2d(_) => "conv2d",
            Op::Pool2d(p) => match p.kind {
                PoolKind::Max => "maxpool2d",
                PoolKind::Avg => "avgpool2d",
            },
            Op::GlobalAvgPool(_) => "global_avg_pool",
            Op::Binary(b) => b.kind.name(),
            Op::Unary(_) => "unary",
            Op::Softmax(_) => "softmax",
            Op::LayerNorm(_) => "layer_norm",
            Op::BatchNorm(_) => "batch_norm",
            Op::Reshape(_) => "reshape",
            Op::Flatten(_) => "flatten",
            Op::Transpose(_) => "transpose",
            Op::Concat(_) => "concat",
        }
    }

    /// Allowed number of inputs (min, max).
    pub fn arity(&self) -> (usize, usize) {
        match self {
            Op::MatMul(m) => {
                let n = 2 + m.bias as usize + m.residual as usize;
                (n, n)
            }
            Op::Conv2d(c) => {
                let n = 2 + c.bias as usize + c.residual as usize;
                (n, n)
            }
            Op::Binary(_) => (2, 2),
            Op::LayerNorm(_) => (3, 3),
            Op::BatchNorm(_) => (5, 5),
            Op::Concat(_) => (1, usize::MAX),
            _ => (1, 1),
        }
    }

    /// Output shape from input shapes, or an error naming the mismatch.
    pub fn infer_shape(&self, ins: &[Vec<usize>]) -> Result<Vec<usize>> {
        let (lo, hi) = self.arity();
        if ins.len() < lo || ins.len() > hi {
            return Err(Error::graph(format!(
                "{} takes {} inputs, got {}",
                self.name(),
                if lo == hi {
                    lo.to_string()
                } else {
                    format!("{lo}..")
                },
                ins.len()
            )));
        }
        let out = match self {
            Op::MatMul(o) => o.infer(ins),
            Op::Conv2d(o) => o.infer(ins),
            Op::Pool2d(o) => o.infer(ins),
            Op::GlobalAvgPool(o) => o.infer(ins),
            Op::Binary(o) => o.infer(ins),
            Op::Unary(_) => Ok(ins[0].clone()),
            Op::Softmax(o) => o.infer(ins),
            Op::LayerNorm(o) => o.infer(ins),
            Op::BatchNorm(o) => o.infer(ins),
            Op::Reshape(o) => o.infer(ins),
            Op::Flatten(o) => o.infer(ins),
            Op::Transpose(o) => o.infer(ins),
            Op::Concat(o) => o.infer(ins),
        }?;
        if out.contains(&0) {
            return Err(Error::Unsupported {
                op: self.name().into(),
                what: format!("empty output shape {out:?}"),
                backend: "any".into(),
            });
        }
        Ok(out)
    }

    /// CPU reference: the ground truth every GPU kernel is tested against.
    pub fn cpu(&self, ins: &[&Tensor]) -> Result<Tensor> {
        let shapes: Vec<Vec<usize>> = ins.iter().map(|t| t.shape().to_vec()).collect();
        let out_shape = self.infer_shape(&shapes)?;
        let xs = ins
            .iter()
            .map(|t| t.f32s(self.name()))
            .collect::<Result<Vec<&[f32]>>>()?;
        let out = match self {
            Op::MatMul(o) => o.cpu(&xs, &shapes, &out_shape),
            Op::Conv2d(o) => o.cpu(&xs, &shapes, &out_shape),
            Op::Pool2d(o) => o.cpu(&xs, &shapes, &out_shape),
            Op::GlobalAvgPool(o) => o.cpu(&xs, &shapes),
            Op::Binary(o) => o.cpu(&xs, &shapes, &out_shape),
            Op::Unary(o) => xs[0].iter().map(|&v| o.act.apply(v)).collect(),
            Op::Softmax(o) => o.cpu(&xs, &shapes),
            Op::LayerNorm(o) => o.cpu(&xs, &shapes),
            Op::BatchNorm(o) => o.cpu(&xs, &shapes),
            Op::Reshape(_) | Op::Flatten(_) => xs[0].to_vec(),
            Op::Transpose(o) => o.cpu(&xs, &shapes, &out_shape),
            Op::Concat(o) => o.cpu(&xs, &shapes, &out_shape),
        };
        Tensor::new(&out_shape, out)
    }

    /// The dispatches that compute this node on the GPU with kernel `cx.kernel`.
    pub fn lower(&self, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        match self {
            Op::MatMul(o) => o.lower(cx),
            Op::Conv2d(o) => o.lower(cx),
            Op::Pool2d(o) => o.lower(cx),
            Op::GlobalAvgPool(o) => o.lower(cx),
            Op::Binary(o) => o.lower(cx),
            Op::Unary(o) => Ok(vec![elementwise::unary_dispatch(o.act, cx)]),
            Op::Softmax(o) => o.lower(cx),
            Op::LayerNorm(o) => o.lower(cx),
            Op::BatchNorm(o) => o.lower(cx),
            Op::Reshape(_) | Op::Flatten(_) => {
                Ok(vec![elementwise::unary_dispatch(Activation::None, cx)])
            }
            Op::Transpose(o) => o.lower(cx),
            Op::Concat(o) => o.lower(cx),
        }
    }

    /// The fused activation of ops that carry an epilogue (for the fusion pass).
    pub fn epilogue_act(&mut self) -> Option<&mut Activation> {
        match self {
            Op::MatMul(m) => Some(&mut m.act),
            Op::Conv2d(c) => Some(&mut c.act),
            _ => None,
        }
    }

    /// Floating-point operations of one run of this node (for reports and GFLOP/s).
    pub fn flops(&self, ins: &[Vec<usize>], out: &[usize]) -> u64 {
        match self {
            Op::MatMul(m) => 2 * crate::tensor::numel(out) as u64 * m.k(&ins[0]) as u64,
            Op::Conv2d(_) => {
                let w = &ins[1];
                2 * crate::tensor::numel(out) as u64 * (w[1] * w[2] * w[3]) as u64
            }
            _ => crate::tensor::numel(out) as u64,
        }
    }
}

/// Splits `n` workgroups of a 1-D job over x and y so neither exceeds the device maximum
/// (shaders recover the flat index with `flat_id`).
pub fn grid_1d(n: u64, max: u32) -> [u32; 3] {
    let max = max.max(1) as u64;
    if n <= max {
        [n.max(1) as u32, 1, 1]
    } else {
        let y = n.div_ceil(max);
        [max as u32, y.min(u32::MAX as u64) as u32, 1]
    }
}

/// Ceil division for dispatch sizes.
pub fn div_ceil(a: usize, b: usize) -> u32 {
    a.div_ceil(b) as u32
}

/// Checks a 2-D/3-D dispatch against the device limit.
pub fn check_grid(op: &str, g: [u32; 3], max: u32) -> Result<()> {
    for v in g {
        if v > max {
            return Err(Error::DeviceLimit {
                what: format!("{op} workgroups per dimension"),
                needed: v as u64,
                max: max as u64,
            });
        }
    }
    Ok(())
}

/// Checks the optional epilogue operands that follow the two main inputs of matmul/conv:
/// a bias of `[channels]`, then a residual of the output's shape.
pub(crate) fn check_epilogue(
    op: &str,
    ins: &[Vec<usize>],
    bias: bool,
    residual: bool,
    channels: usize,
    out: &[usize],
) -> Result<()> {
    let mut i = 2;
    if bias {
        if ins[i] != [channels] {
            return Err(Error::shape(
                format!("{op} bias"),
                crate::tensor::fmt_shape(&[channels]),
                crate::tensor::fmt_shape(&ins[i]),
            ));
        }
        i += 1;
    }
    if residual && ins[i] != out {
        return Err(Error::shape(
            format!("{op} residual"),
            crate::tensor::fmt_shape(out),
            crate::tensor::fmt_shape(&ins[i]),
        ));
    }
    Ok(())
}

/// Bindings of the optional epilogue operands (bias, residual) that follow the two main inputs
/// of matmul/conv; a dummy buffer stands in for an absent one.
pub(crate) fn epilogue_binds(bias: bool, residual: bool) -> [Bind; 2] {
    let b = if bias { Bind::Input(2) } else { Bind::Dummy };
    let r = if residual {
        Bind::Input(2 + bias as usize)
    } else {
        Bind::Dummy
    };
    [b, r]
}

/// Little helper for ops that feed f32 values through the u32 uniform words.
pub(crate) fn f32_word(v: f32) -> u32 {
    v.to_bits()
}

impl Pack {
    /// Applies the re-layout to a constant's data.
    pub fn apply(self, data: &[f32], shape: &[usize]) -> Vec<f32> {
        match self {
            Pack::TransposeLast2 => {
                let r = shape.len();
                let (k, n) = (shape[r - 2], shape[r - 1]);
                let mut out = vec![0.0; data.len()];
                for (src, dst) in data.chunks(k * n).zip(out.chunks_mut(k * n)) {
                    for kk in 0..k {
                        for j in 0..n {
                            dst[j * k + kk] = src[kk * n + j];
                        }
                    }
                }
                out
            }
            Pack::KnPadded4 { trans_b } => {
                let r = shape.len();
                let (k, n) = if trans_b {
                    (shape[r - 1], shape[r - 2])
                } else {
                    (shape[r - 2], shape[r - 1])
                };
                let n4 = n.div_ceil(4) * 4;
                let mut out = Vec::with_capacity(data.len() / n * n4);
                for src in data.chunks(k * n) {
                    for kk in 0..k {
                        for j in 0..n4 {
                            out.push(match (j < n, trans_b) {
                                (false, _) => 0.0,
                                (true, false) => src[kk * n + j],
                                (true, true) => src[j * k + kk],
                            });
                        }
                    }
                }
                out
            }
            Pack::Rows4 { cols } => {
                let c4 = cols.div_ceil(4) * 4;
                let mut out = Vec::with_capacity(data.len() / cols.max(1) * c4);
                for row in data.chunks(cols.max(1)) {
                    out.extend_from_slice(row);
                    out.resize(out.len() + c4 - row.len(), 0.0);
                }
                out
            }
            Pack::ConvTaps { groups } => conv::pack_conv_taps(data, shape, groups),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_splits_large_jobs() {
        assert_eq!(grid_1d(10, 65535), [10, 1, 1]);
        assert_eq!(grid_1d(70000, 65535), [65535, 2, 1]);
        assert_eq!(grid_1d(0, 65535), [1, 1, 1]);
    }

    #[test]
    fn activation_codes_are_distinct() {
        let acts = [
            Activation::None,
            Activation::Relu,
            Activation::Relu6,
            Activation::LeakyRelu { alpha: 0.1 },
            Activation::Sigmoid,
            Activation::Tanh,
            Activation::Gelu,
            Activation::Silu,
            Activation::Hardswish,
        ];
        let mut codes: Vec<u32> = acts.iter().map(|a| a.code().0).collect();
        codes.dedup();
        assert_eq!(codes.len(), acts.len());
    }
}
