//! 2-D convolution, NCHW input, OIHW weights `[cout, cin / groups, kh, kw]`: stride, asymmetric
//! padding, dilation, groups (depthwise when groups == cin == cout), fused bias/residual/act.
//!
//! Weights may be dense f32 or packed (int8, int4, pow2, f16; see [`super::quant`]): packed
//! constant weights whose groups align with the kernels' texels are read as stored by the
//! `Packed`/`PackedDepthwise` kernels and dequantised in the kernel; others are decoded to f32
//! once by the plan for the dense kernels.

use super::quant::{QLayout, QPart};
use super::{
    check_grid, div_ceil, unsupported, Activation, Bind, Dispatch, KernelVariant, LowerCtx,
    OpFamily, Pack, SelectCtx, TuneSlot,
};
use crate::error::{Error, Result};
use crate::gpu::shader::{ShaderKey, ShaderSource};
use crate::tensor::{fmt_shape, Tensor, ValueType};
use bytemuck::{Pod, Zeroable};
use serde::{Deserialize, Serialize};

fn one2() -> [usize; 2] {
    [1, 1]
}
fn one() -> usize {
    1
}

/// Convolution attributes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Conv2d {
    #[serde(default = "one2")]
    pub stride: [usize; 2],
    /// Padding as (top, left, bottom, right).
    #[serde(default)]
    pub pad: [usize; 4],
    #[serde(default = "one2")]
    pub dilation: [usize; 2],
    #[serde(default = "one")]
    pub groups: usize,
    #[serde(default)]
    pub bias: bool,
    #[serde(default)]
    pub residual: bool,
    #[serde(default)]
    pub act: Activation,
}

impl Default for Conv2d {
    fn default() -> Self {
        Conv2d {
            stride: [1, 1],
            pad: [0; 4],
            dilation: [1, 1],
            groups: 1,
            bias: false,
            residual: false,
            act: Activation::None,
        }
    }
}

/// The GPU kernels of conv2d.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(tag = "kernel", rename_all = "snake_case")]
pub enum ConvKernel {
    /// One invocation per output: the second reference kernel.
    #[default]
    Naive,
    /// Register-blocked direct convolution, 8 channels x `px` pixels per invocation.
    Tiled { px: u32 },
    /// Direct convolution with the input copied into a texture per run and the weights in one.
    Tex2 { px: u32 },
    /// Depthwise convolution, `px` pixels per invocation.
    Depthwise { px: u32 },
    /// Depthwise convolution with input and weights read through textures.
    DepthwiseTex2 { px: u32 },
    /// Depthwise convolution on strips of `px` (4 or 8) outputs along W: the input is copied
    /// once per run, zero-padded, into an rgba32float texture (4 columns per texel) and the
    /// window geometry (taps, stride, dilation) is compiled into the kernel, so each tap is a
    /// vec4 FMA on constant picks of the row's texels. Up to 7x8 taps.
    DwStrip { px: u32 },
    /// Depthwise convolution reading the input straight from storage as aligned vec4s (W and
    /// the output width multiples of 4): `py` output rows x `px` outputs along W per
    /// invocation, each input row loaded once per block; geometry compiled in like `DwStrip`.
    DwVec4 { px: u32, py: u32 },
    /// A packed weight (int8/int4/pow2/f16, any groups, stride, dilation, padding) read as
    /// stored and dequantised in the kernel: `r` output channels x `px` output pixels per
    /// invocation, codes from a storage buffer or an rgba32uint texture (`wtex`). Pointwise
    /// convs get a specialisation without the tap arithmetic.
    Packed {
        px: u32,
        r: u32,
        #[serde(default)]
        wtex: bool,
    },
    /// Depthwise convolution on a packed weight: `px` pixels of one channel per invocation,
    /// the channel's taps dequantised once.
    PackedDepthwise { px: u32 },
    /// A pointwise (1x1, stride 1, no padding, one group) conv on a CSR weight `[Cout, Cin]`
    /// read in the texture layout of `ops/sparse.rs`: each invocation one output channel and
    /// `px` texels of 4 pixels, each stored weight times a vector of pixels (Elsen et al.).
    /// Chosen while the weight's density is at most `max_density_pct` percent.
    SparseTex {
        px: u32,
        #[serde(default = "default_sparse_pct")]
        max_density_pct: u32,
    },
    /// A pointwise conv (1x1, stride 1, no padding, one group) as a GEMM per image,
    /// `Y[cout][hw] = W[cout][cin] x X[cin][hw]` (already NCHW): `tm` (4, 8) output channels x
    /// `4 * tn4` (4, 8) pixels per invocation, the weight an rgba32float texture packed once,
    /// the input through a texture copied each run (`xtex`, any HW) or read as vec4s from
    /// storage (HW a multiple of 4; no copy, vec4 stores).
    Pointwise {
        tm: u32,
        tn4: u32,
        #[serde(default)]
        xtex: bool,
    },
    /// Implicit-GEMM conv with workgroup-memory tiles (for GPUs with fast shared memory): per
    /// image and group a GEMM over (cout_g) x (output pixels) with K = cin_g * kh * kw, the
    /// input tile gathered on the fly; `wg` x `wg` invocations of 4 x 4 outputs. Any geometry.
    ImplicitWg { wg: u32 },
    /// Register-blocked conv on the zero-padded input texture of the strip kernels: 8 output
    /// channels x `px` (4, 8) outputs of a row per invocation, the window geometry compiled in
    /// (up to 7x8 taps), weights as texels of 4 output channels per tap (for lavapipe).
    /// `v4`: outputs (and the residual) accessed as vec4s; needs an output width that is a
    /// multiple of 4.
    ImplicitTex {
        px: u32,
        #[serde(default)]
        v4: bool,
    },
    /// `Pointwise` with f16 products: per 4 input channels the weight and input texels are
    /// rounded to f16, multiplied and summed as vec4<f16>, the partials summed in f32. Only
    /// with `f16_compute` on adapters with `shader-f16` (slot `pwconv_f16c`).
    PointwiseF16 {
        tm: u32,
        tn4: u32,
        #[serde(default)]
        xtex: bool,
    },
    /// `ImplicitTex` with f16 products: per run of 4 input channels and tap, the weight and
    /// input texels are rounded to f16, multiplied and summed as vec4<f16>, the partials summed
    /// in f32; same epilogue. Only with `f16_compute` on adapters with `shader-f16` (slot
    /// `conv_f16c`).
    ImplicitTexF16 {
        px: u32,
        #[serde(default)]
        v4: bool,
    },
    /// `DwVec4` with f16 products: each kernel row's taps in runs of up to 4, their input
    /// windows and weights rounded to f16, multiplied and summed as vec4<f16>, the partials
    /// summed in f32; same epilogue.
    /// Only with `f16_compute` on adapters with `shader-f16` (slot `dwconv_f16c`).
    DwVec4F16 { px: u32, py: u32 },
}

/// Density (percent) up to which a CSR 1x1 conv runs `SparseTex` when autotune has not
/// measured the crossover (the `csr1x1` slot).
pub const DEFAULT_SPARSE_CONV_PCT: u32 = 10;

fn default_sparse_pct() -> u32 {
    DEFAULT_SPARSE_CONV_PCT
}

impl KernelVariant for ConvKernel {
    fn name(&self) -> String {
        match *self {
            ConvKernel::Naive => "naive".into(),
            ConvKernel::Tiled { px } => format!("tiled-8x{px}"),
            ConvKernel::Tex2 { px } => format!("tex2-8x{px}"),
            ConvKernel::Depthwise { px } => format!("depthwise-{px}"),
            ConvKernel::DepthwiseTex2 { px } => format!("depthwise-tex2-{px}"),
            ConvKernel::DwStrip { px } => format!("dwstrip-{px}"),
            ConvKernel::DwVec4 { px, py } => format!("dwvec4-{py}x{px}"),
            ConvKernel::Packed { px, r, wtex } => {
                format!("{}-{r}x{px}", if wtex { "qtex" } else { "qbuf" })
            }
            ConvKernel::PackedDepthwise { px } => format!("qdepthwise-{px}"),
            ConvKernel::SparseTex {
                px,
                max_density_pct,
            } => format!("csrtex-{}px-d{max_density_pct}", px * 4),
            ConvKernel::Pointwise { tm, tn4, xtex } => {
                format!("pw-{}-{tm}x{}", if xtex { "tex2" } else { "buf" }, tn4 * 4)
            }
            ConvKernel::ImplicitWg { wg } => format!("igemm-wg{wg}-4x4"),
            ConvKernel::ImplicitTex { px, v4 } => {
                format!("igemm-tex-8x{px}{}", if v4 { "-v4" } else { "" })
            }
            ConvKernel::PointwiseF16 { tm, tn4, xtex } => {
                format!(
                    "f16c-pw-{}-{tm}x{}",
                    if xtex { "tex2" } else { "buf" },
                    tn4 * 4
                )
            }
            ConvKernel::ImplicitTexF16 { px, v4 } => {
                format!("f16c-igemm-tex-8x{px}{}", if v4 { "-v4" } else { "" })
            }
            ConvKernel::DwVec4F16 { px, py } => format!("f16c-dwvec4-{py}x{px}"),
        }
    }

    fn check(&self) -> std::result::Result<(), String> {
        let ok = match *self {
            ConvKernel::Naive => true,
            ConvKernel::Tiled { px } | ConvKernel::Depthwise { px } => (1..=16).contains(&px),
            // The texture kernels unroll their pixel loop for these counts only.
            ConvKernel::Tex2 { px } | ConvKernel::DepthwiseTex2 { px } => matches!(px, 4 | 8),
            // One or two vec4 accumulators, and strips that start on a texel.
            ConvKernel::DwStrip { px } => matches!(px, 4 | 8),
            // Named accumulators: 2 or 4 vec4 per row, 1, 2 or 4 rows.
            ConvKernel::DwVec4 { px, py } | ConvKernel::DwVec4F16 { px, py } => {
                matches!(px, 8 | 16) && matches!(py, 1 | 2 | 4)
            }
            // Accumulators are arrays of PX * R in the shader.
            ConvKernel::Packed { px, r, .. } => {
                (1..=8).contains(&px) && matches!(r, 1 | 2 | 4) && px * r <= 16
            }
            ConvKernel::PackedDepthwise { px } => (1..=16).contains(&px),
            // Two named accumulators.
            ConvKernel::SparseTex {
                px,
                max_density_pct,
            } => matches!(px, 1 | 2) && max_density_pct <= 100,
            // Named accumulators for these block shapes.
            ConvKernel::Pointwise { tm, tn4, .. } | ConvKernel::PointwiseF16 { tm, tn4, .. } => {
                matches!((tm, tn4), (4 | 8, 1 | 2))
            }
            // 64 or 256 invocations, within WebGPU's default limits.
            ConvKernel::ImplicitWg { wg } => matches!(wg, 8 | 16),
            // One or two vec4s of outputs per channel; strips start on a texel.
            ConvKernel::ImplicitTex { px, .. } | ConvKernel::ImplicitTexF16 { px, .. } => {
                matches!(px, 4 | 8)
            }
        };
        if ok {
            Ok(())
        } else {
            Err("unsupported pixels per invocation".into())
        }
    }
}

static CONV_NAIVE: ShaderSource = crate::wgsl!("conv/params.wgsl", "conv/conv2d_naive.wgsl");
static CONV_TILED: ShaderSource =
    crate::wgsl!("conv/params.wgsl", "conv/conv2d_tiled.wgsl"; [[("PX", 4)]]);
static CONV_TEX2: ShaderSource = crate::wgsl!(
    "conv/params.wgsl", "conv/tex_input.wgsl", "conv/conv2d_tex2.wgsl";
    [[("PX", 4)], [("PX", 8)]]
);
static DWCONV: ShaderSource = crate::wgsl!("conv/params.wgsl", "conv/dwconv2d.wgsl"; [[("PX", 4)]]);
static DWCONV_TEX2: ShaderSource = crate::wgsl!(
    "conv/params.wgsl", "conv/tex_input.wgsl", "conv/dwconv2d_tex2.wgsl";
    [[("PX", 4)], [("PX", 8)]]
);
static DW_PAD_TEX: ShaderSource = crate::wgsl!("conv/dw_params.wgsl", "conv/dw_pad_tex.wgsl");
static DW_STRIP: ShaderSource = crate::wgsl!(
    "conv/dw_params.wgsl", "conv/dwconv2d_strip.wgsl";
    [[("PX", 8), ("KH", 3), ("KW", 3), ("SH", 1), ("SW", 1), ("DH", 1), ("DW", 1)],
     [("PX", 4), ("KH", 5), ("KW", 5), ("SH", 2), ("SW", 2), ("DH", 1), ("DW", 1)],
     [("PX", 8), ("KH", 7), ("KW", 8), ("SH", 2), ("SW", 1), ("DH", 1), ("DW", 3)]]
);
static DW_VEC4: ShaderSource = crate::wgsl!(
    "conv/dw_params.wgsl", "conv/dw_vec4_taps.wgsl", "conv/dwconv2d_vec4.wgsl";
    [[("PX", 8), ("PY", 2), ("KH", 3), ("KW", 3), ("SH", 1), ("SW", 1), ("DH", 1), ("DW", 1), ("OFF", 3)],
     [("PX", 16), ("PY", 4), ("KH", 5), ("KW", 5), ("SH", 2), ("SW", 1), ("DH", 1), ("DW", 2), ("OFF", 2)],
     [("PX", 8), ("PY", 1), ("KH", 7), ("KW", 7), ("SH", 1), ("SW", 2), ("DH", 1), ("DW", 1), ("OFF", 0)]]
);
/// Pointwise conv as a GEMM: the input through a texture or from storage as vec4s.
static PW_TEX: ShaderSource = crate::wgsl!(
    "conv/pw_params.wgsl", "conv/pw_x_tex.wgsl", "conv/conv1x1_dot4.wgsl", "conv/conv1x1_gemm.wgsl";
    [[("TM", 4), ("TN4", 1)], [("TM", 8), ("TN4", 2)]]
);
static PW_BUF: ShaderSource = crate::wgsl!(
    "conv/pw_params.wgsl", "conv/pw_x_buf.wgsl", "conv/conv1x1_dot4.wgsl", "conv/conv1x1_gemm.wgsl";
    [[("TM", 4), ("TN4", 2)], [("TM", 8), ("TN4", 1)]]
);
/// Depth along K of the implicit-GEMM kernel's workgroup tiles, and its register block.
const IGEMM_BK: u32 = 16;
const IGEMM_T: u32 = 4;
static IGEMM_WG: ShaderSource = crate::wgsl!(
    "conv/params.wgsl", "conv/conv_igemm_wg.wgsl";
    [[("TM", 4), ("TN", 4), ("WG", 16), ("BK", 16)], [("TM", 4), ("TN", 4), ("WG", 8), ("BK", 16)]]
);
static IGEMM_TEX: ShaderSource = crate::wgsl!(
    "conv/strip_store.wgsl", "conv/conv_strip_acc.wgsl", "conv/conv_strip_tex.wgsl";
    [[("PX", 8), ("KH", 3), ("KW", 3), ("SH", 1), ("SW", 1), ("DH", 1), ("DW", 1)],
     [("PX", 4), ("KH", 1), ("KW", 1), ("SH", 2), ("SW", 2), ("DH", 1), ("DW", 1)],
     [("PX", 8), ("KH", 7), ("KW", 8), ("SH", 2), ("SW", 1), ("DH", 1), ("DW", 3)]]
);
/// As `IGEMM_TEX` with vec4 output and residual accesses (output width a multiple of 4).
static IGEMM_TEX_V4: ShaderSource = crate::wgsl!(
    "conv/strip_store_vec4.wgsl", "conv/conv_strip_acc.wgsl", "conv/conv_strip_tex.wgsl";
    [[("PX", 8), ("KH", 3), ("KW", 3), ("SH", 1), ("SW", 1), ("DH", 1), ("DW", 1)],
     [("PX", 4), ("KH", 1), ("KW", 1), ("SH", 2), ("SW", 2), ("DH", 1), ("DW", 1)]]
);
static TO_TEXTURE_R32: ShaderSource = crate::wgsl!("elementwise/to_texture_r32.wgsl");
/// Sparse pointwise conv on a CSR weight in the texture layout (`ops/sparse.rs`).
static SP_CONV1X1: ShaderSource = crate::wgsl!(
    "sparse/half.wgsl", "sparse/tex_vals.wgsl", "sparse/conv1x1_tex.wgsl";
    [[("VALS", 0), ("PX", 1)], [("VALS", 1), ("PX", 2)], [("VALS", 2), ("PX", 2)]]
);
/// Packed-weight kernels: codes from a buffer or a texture.
macro_rules! qconv_source {
    ($w:literal) => {
        crate::wgsl!("quant/dequant.wgsl", "conv/qparams.wgsl", $w, "conv/qconv2d.wgsl"; [
            [("PX", 4), ("R", 2), ("PW", 0), ("BITS", 8), ("SCALE", 0), ("ZERO", 0)],
            [("PX", 4), ("R", 4), ("PW", 1), ("BITS", 4), ("SCALE", 1), ("ZERO", 1)],
            [("PX", 8), ("R", 1), ("PW", 0), ("BITS", 16), ("SCALE", 4), ("ZERO", 0)],
            [("PX", 2), ("R", 4), ("PW", 0), ("BITS", 8), ("SCALE", 2), ("ZERO", 1)]
        ])
    };
}
static QCONV_BUF: ShaderSource = qconv_source!("conv/qw_buffer.wgsl");
static QCONV_TEX: ShaderSource = qconv_source!("conv/qw_texture.wgsl");
static QDWCONV: ShaderSource = crate::wgsl!(
    "quant/dequant.wgsl", "conv/qparams.wgsl", "conv/qw_buffer.wgsl", "conv/qdwconv2d.wgsl";
    [[("PX", 4), ("BITS", 8), ("SCALE", 0), ("ZERO", 0)],
     [("PX", 8), ("BITS", 4), ("SCALE", 1), ("ZERO", 1)],
     [("PX", 2), ("BITS", 16), ("SCALE", 4), ("ZERO", 0)],
     [("PX", 4), ("BITS", 8), ("SCALE", 2), ("ZERO", 1)]]
);

impl OpFamily for Conv2d {
    const FAMILY: &'static str = "conv2d";
    type Kernel = ConvKernel;

    fn arity(&self) -> (usize, usize) {
        let n = 2 + self.bias as usize + self.residual as usize;
        (n, n)
    }

    fn infer(&self, ins: &[ValueType]) -> Result<ValueType> {
        self.act.check("conv2d")?;
        super::float_op("conv2d", ins, |s| self.shape_of(s))
    }

    fn cpu(&self, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
        super::cpu_f32("conv2d", ins, out, |xs, shapes| {
            self.cpu_f32(xs, shapes, &out.shape)
        })
    }

    fn cpu_kernel(&self, cx: &super::CpuCtx) -> Option<&'static str> {
        super::cpu_fast::conv_kernel(self, cx)
    }

    fn cpu_fast(&self, kernel: &str, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
        super::cpu_fast::conv(self, kernel, ins, out)
    }

    /// Depthwise convs take the `dwconv` slot, others with constant weights the `conv` slot;
    /// a tuned texture kernel that does not fit the device falls back to its storage twin.
    /// Packed weights take `qdwconv` / `qconv` (see [`Conv2d::select_packed`]).
    fn select(&self, cx: &SelectCtx) -> Option<ConvKernel> {
        if self.packed_w(cx) {
            return self.select_packed(cx);
        }
        if !cx.dense_f32() {
            return None;
        }
        if cx.device.naive_only {
            return Some(ConvKernel::Naive);
        }
        let (slot, default, fallback) = if self.is_depthwise(cx.shape(0), cx.shape(1)) {
            let k = ConvKernel::Depthwise { px: 4 };
            ("dwconv", k, k)
        } else if cx.is_const[1] && self.is_pointwise(cx.shape(1)) {
            // Pointwise convs have their own slot: their best kernel (a GEMM) is not a 3x3's.
            let k = ConvKernel::Tiled { px: 4 };
            ("pwconv", k, k)
        } else if cx.is_const[1] {
            let k = ConvKernel::Tiled { px: 4 };
            ("conv", k, k)
        } else {
            return Some(ConvKernel::Naive);
        };
        // A session that allows f16 compute reads the slot's f16 twin first (tuned with f16
        // allowed, its f16 kernels beside the f32 ones); nothing f16 is chosen untuned.
        if cx.device.f16_compute {
            if let Some(k) = cx
                .tuned::<Self>(&format!("{slot}_f16c"))
                .filter(|k| self.fits(k, cx).is_ok())
            {
                return Some(k);
            }
        }
        let k = cx.tuned::<Self>(slot).unwrap_or(default);
        Some(if self.fits(&k, cx).is_ok() {
            k
        } else {
            fallback
        })
    }

    fn fits(&self, k: &ConvKernel, cx: &SelectCtx) -> std::result::Result<(), String> {
        k.check()?;
        let (x, w) = (cx.shape(0), cx.shape(1));
        let dw = self.is_depthwise(x, w);
        let packed = matches!(
            k,
            ConvKernel::Packed { .. }
                | ConvKernel::PackedDepthwise { .. }
                | ConvKernel::SparseTex { .. }
        );
        if packed == cx.formats[1].is_dense() {
            return Err(format!(
                "kernel {} does not read {} weights",
                k.name(),
                cx.formats[1].label()
            ));
        }
        // The texture kernels read the input as an r32float texture W wide and N*C*H high.
        let input_tex = || {
            if cx.tex_fits(x[3], x[0] * x[1] * x[2]) {
                Ok(())
            } else {
                Err("input texture exceeds the device's 2-D texture size".to_string())
            }
        };
        let need_const = || {
            if cx.is_const[1] {
                Ok(())
            } else {
                Err(format!("kernel {} needs constant weights", k.name()))
            }
        };
        match *k {
            ConvKernel::Naive => Ok(()),
            ConvKernel::Tiled { .. } => need_const(),
            ConvKernel::Tex2 { .. } => {
                need_const()?;
                let (tw, th) = tex_extent(w, self.groups);
                if !cx.tex_fits(tw, th) {
                    return Err("weight texture exceeds the device's 2-D texture size".into());
                }
                input_tex()
            }
            ConvKernel::Depthwise { .. } if !dw => Err("not a depthwise conv".into()),
            ConvKernel::Depthwise { .. } => Ok(()),
            ConvKernel::DepthwiseTex2 { .. } => {
                if !dw {
                    return Err("not a depthwise conv".into());
                }
                need_const()?;
                // Weights: one row of taps (rounded up to texels) per channel.
                if !cx.tex_fits((w[2] * w[3]).div_ceil(4), w[0]) {
                    return Err("weight texture exceeds the device's 2-D texture size".into());
                }
                input_tex()
            }
            ConvKernel::DwStrip { px } => {
                if !dw {
                    return Err("not a depthwise conv".into());
                }
                need_const()?;
                if !cx.tex_fits(w[3].div_ceil(4), w[0] * w[2]) {
                    return Err("weight texture exceeds the device's 2-D texture size".into());
                }
                let p = self.params(x, w, &cx.out.shape);
                let g = strip_geometry(&p, px)?;
                if !cx.tex_fits(g.width as usize, g.height as usize) {
                    return Err("input texture exceeds the device's 2-D texture size".into());
                }
                let max = cx.device.limits.max_compute_workgroups_per_dimension;
                if g.grid(g.strips * p.oh, max).iter().any(|&v| v > max) {
                    return Err(format!(
                        "kernel {} needs more than {max} workgroups",
                        k.name()
                    ));
                }
                Ok(())
            }
            ConvKernel::DwVec4 { px, py } => {
                if !dw {
                    return Err("not a depthwise conv".into());
                }
                need_const()?;
                let p = self.params(x, w, &cx.out.shape);
                let g = vec4_geometry(&p, px, py)?;
                let max = cx.device.limits.max_compute_workgroups_per_dimension;
                if g.grid(g.strips * p.oh.div_ceil(py), max)
                    .iter()
                    .any(|&v| v > max)
                {
                    return Err(format!(
                        "kernel {} needs more than {max} workgroups",
                        k.name()
                    ));
                }
                Ok(())
            }
            ConvKernel::PackedDepthwise { .. } if !dw => Err("not a depthwise conv".into()),
            // The depthwise kernel holds a channel's taps in an array of 32.
            ConvKernel::PackedDepthwise { .. } if w[2] * w[3] > 32 => {
                Err("the packed depthwise kernel takes at most 32 taps".into())
            }
            ConvKernel::SparseTex { .. } => self.sparse_fits(cx),
            ConvKernel::PointwiseF16 { .. }
            | ConvKernel::ImplicitTexF16 { .. }
            | ConvKernel::DwVec4F16 { .. } => {
                super::matmul::f16_allowed(&k.name(), cx)?;
                match f16_twin(*k) {
                    Some((twin, _)) => self.fits(&twin, cx),
                    None => Err(format!("kernel {} has no f32 twin", k.name())),
                }
            }
            ConvKernel::Pointwise { .. }
            | ConvKernel::ImplicitWg { .. }
            | ConvKernel::ImplicitTex { .. } => self.gemm_fits(k, cx),
            ConvKernel::Packed { .. } | ConvKernel::PackedDepthwise { .. } => {
                let lay = self.packed_layout(cx)?;
                if matches!(k, ConvKernel::Packed { wtex: true, .. })
                    && !cx.tex_fits(lay.row_t, lay.rows)
                {
                    return Err("weight texture exceeds the device's 2-D texture size".into());
                }
                let p = self.params(x, w, &cx.out.shape);
                let max = cx.device.limits.max_compute_workgroups_per_dimension;
                if packed_grid(*k, &p).iter().any(|&g| g > max) {
                    return Err(format!(
                        "kernel {} needs more than {max} workgroups",
                        k.name()
                    ));
                }
                Ok(())
            }
        }
    }

    fn lower(&self, k: &ConvKernel, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        if let ConvKernel::SparseTex { .. } = k {
            return self.lower_sparse(*k, cx);
        }
        if f16_twin(*k).is_some() {
            return self.lower_f16c(*k, cx);
        }
        if matches!(
            k,
            ConvKernel::Pointwise { .. }
                | ConvKernel::ImplicitWg { .. }
                | ConvKernel::ImplicitTex { .. }
        ) {
            return self.lower_gemm(*k, cx);
        }
        self.lower_kernel(*k, cx)
    }

    fn tune_slots() -> Vec<TuneSlot> {
        let conv3x3 = |groups: usize| Conv2d {
            pad: [1; 4],
            groups,
            ..Default::default()
        };
        // Inputs of the timed convs: [1, c, hw, hw] with a constant 3x3 weight.
        let inputs = |c: usize, hw: usize, groups: usize| {
            vec![
                (vec![1, c, hw, hw], false),
                (vec![c, c / groups, 3, 3], true),
            ]
        };
        let tiled = [2, 4, 8].map(|px| ConvKernel::Tiled { px });
        let tex2 = [4, 8].map(|px| ConvKernel::Tex2 { px });
        let itex = [(4, false), (8, false), (4, true), (8, true)]
            .map(|(px, v4)| ConvKernel::ImplicitTex { px, v4 });
        let iwg = [8, 16].map(|wg| ConvKernel::ImplicitWg { wg });
        let mut pw: Vec<ConvKernel> = Vec::new();
        for (tm, tn4) in [(4, 1), (4, 2), (8, 1), (8, 2)] {
            for xtex in [false, true] {
                pw.push(ConvKernel::Pointwise { tm, tn4, xtex });
            }
        }
        pw.extend(itex);
        pw.extend(iwg);
        pw.push(ConvKernel::Tiled { px: 4 });
        // The f16 pointwise slot: every f32 pointwise candidate and the f16-product ones,
        // timed with f16 allowed, so f16 is chosen only where it measured faster.
        let mut pw_f16 = pw.clone();
        for (tm, tn4) in [(4, 1), (4, 2), (8, 1), (8, 2)] {
            for xtex in [false, true] {
                pw_f16.push(ConvKernel::PointwiseF16 { tm, tn4, xtex });
            }
        }
        let mut pw_f16_slot = TuneSlot::new(
            "pwconv_f16c",
            pw_f16,
            Conv2d::default(),
            vec![(vec![1, 96, 28, 28], false), (vec![24, 96, 1, 1], true)],
        );
        pw_f16_slot.f16_compute = true;
        let plain = [2, 4, 8].map(|px| ConvKernel::Depthwise { px });
        let dtex2 = [4, 8].map(|px| ConvKernel::DepthwiseTex2 { px });
        let strip = [4, 8].map(|px| ConvKernel::DwStrip { px });
        let vec4 = [(8, 2), (8, 4), (16, 2), (16, 4)].map(|(px, py)| ConvKernel::DwVec4 { px, py });
        // Packed weights: tuned on int8 per output channel (int4 and f16 share the loops).
        let int8 = crate::format::WeightFormat::Quant(crate::format::QuantSpec {
            bits: 8,
            group: 0,
            zero_points: false,
            pow2: false,
            scale_dtype: crate::tensor::DType::F32,
        });
        let packed_formats = vec![crate::format::WeightFormat::Dense, int8];
        let qconv = [(4, 2, false), (4, 4, false), (8, 2, false), (2, 4, false)]
            .into_iter()
            .chain([(4, 2, true), (4, 4, true)])
            .map(|(px, r, wtex)| ConvKernel::Packed { px, r, wtex })
            .collect();
        let qdw = [2, 4, 8]
            .map(|px| ConvKernel::PackedDepthwise { px })
            .to_vec();
        // The f16 twins of `conv` and `dwconv`, built like `pwconv_f16c`: every f32 candidate
        // and the f16-product ones on the same workload, timed with f16 allowed.
        let conv: Vec<ConvKernel> = tiled
            .into_iter()
            .chain(tex2)
            .chain(itex)
            .chain(iwg)
            .collect();
        let mut conv_f16 = conv.clone();
        for (px, v4) in [(4, false), (8, false), (4, true), (8, true)] {
            conv_f16.push(ConvKernel::ImplicitTexF16 { px, v4 });
        }
        let mut conv_f16_slot = TuneSlot::new("conv_f16c", conv_f16, conv3x3(1), inputs(32, 28, 1));
        conv_f16_slot.f16_compute = true;
        let dw: Vec<ConvKernel> = plain
            .into_iter()
            .chain(dtex2)
            .chain(strip)
            .chain(vec4)
            .collect();
        let mut dw_f16 = dw.clone();
        for (px, py) in [(8, 2), (8, 4), (16, 2), (16, 4)] {
            dw_f16.push(ConvKernel::DwVec4F16 { px, py });
        }
        let mut dw_f16_slot = TuneSlot::new("dwconv_f16c", dw_f16, conv3x3(32), inputs(32, 56, 32));
        dw_f16_slot.f16_compute = true;
        vec![
            TuneSlot::new("conv", conv, conv3x3(1), inputs(32, 28, 1)),
            // Pointwise: a MobileNetV2 projection (96 -> 24 channels) at 28x28.
            TuneSlot::new(
                "pwconv",
                pw,
                Conv2d::default(),
                vec![(vec![1, 96, 28, 28], false), (vec![24, 96, 1, 1], true)],
            ),
            TuneSlot::new("dwconv", dw, conv3x3(32), inputs(32, 56, 32)),
            TuneSlot::new("qconv", qconv, conv3x3(1), inputs(32, 28, 1))
                .with_formats(packed_formats.clone()),
            TuneSlot::new("qdwconv", qdw, conv3x3(32), inputs(32, 56, 32))
                .with_formats(packed_formats),
            sparse_slot(),
            pw_f16_slot,
            conv_f16_slot,
            dw_f16_slot,
        ]
    }

    fn shaders() -> Vec<&'static ShaderSource> {
        vec![
            &CONV_NAIVE,
            &CONV_TILED,
            &CONV_TEX2,
            &DWCONV,
            &DWCONV_TEX2,
            &DW_PAD_TEX,
            &DW_STRIP,
            &DW_VEC4,
            &TO_TEXTURE_R32,
            &QCONV_BUF,
            &QCONV_TEX,
            &QDWCONV,
            &SP_CONV1X1,
            &PW_TEX,
            &PW_BUF,
            &IGEMM_WG,
            &IGEMM_TEX,
            &IGEMM_TEX_V4,
            &PW_F16_TEX,
            &PW_F16_BUF,
            &IGEMM_TEX_F16,
            &IGEMM_TEX_V4_F16,
            &DW_VEC4_F16,
        ]
    }

    fn epilogue_act(&mut self) -> Option<&mut Activation> {
        Some(&mut self.act)
    }

    fn flops(&self, ins: &[ValueType], out: &ValueType) -> u64 {
        let w = &ins[1].shape;
        let taps = crate::tensor::numel(&w[1..]) as u64;
        (crate::tensor::numel(&out.shape) as u64)
            .saturating_mul(taps)
            .saturating_mul(2)
    }
}

/// Uniform parameters of every conv kernel (`shaders/conv/params.wgsl`); the CPU reference
/// reads the same struct.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq)]
pub struct ConvParams {
    pub n: u32,
    pub cin: u32,
    pub h: u32,
    pub w: u32,
    pub cout: u32,
    pub oh: u32,
    pub ow: u32,
    pub groups: u32,
    pub kh: u32,
    pub kw: u32,
    pub stride_h: u32,
    pub stride_w: u32,
    pub pad_t: u32,
    pub pad_l: u32,
    pub dil_h: u32,
    pub dil_w: u32,
    pub cin_g: u32,
    pub cout_g: u32,
    /// cout_g rounded up to 8 (the packed weight row length of the tiled kernel).
    pub cout_gp: u32,
    pub has_bias: u32,
    pub has_res: u32,
    pub _pad: [u32; 3],
}

impl Conv2d {
    pub(crate) fn shape_of(&self, ins: &[Vec<usize>]) -> Result<Vec<usize>> {
        let (x, w) = (&ins[0], &ins[1]);
        if x.len() != 4 || w.len() != 4 {
            return Err(Error::shape(
                "conv2d",
                "NCHW input and OIHW weight (rank 4)",
                format!("{} and {}", fmt_shape(x), fmt_shape(w)),
            ));
        }
        super::attrs_u32("conv2d", "stride", &self.stride)?;
        super::attrs_u32("conv2d", "pad", &self.pad)?;
        super::attrs_u32("conv2d", "dilation", &self.dilation)?;
        super::attr_u32("conv2d", "groups", self.groups)?;
        let g = self.groups;
        if g == 0 || x[1] % g != 0 || w[0] % g != 0 {
            return Err(Error::shape(
                "conv2d",
                format!("channels divisible by groups = {g}"),
                format!("cin {}, cout {}", x[1], w[0]),
            ));
        }
        if w[1] != x[1] / g {
            return Err(Error::shape(
                "conv2d",
                format!("weight [_, {}, _, _] (cin / groups)", x[1] / g),
                fmt_shape(w),
            ));
        }
        if self.stride.contains(&0) || self.dilation.contains(&0) {
            return Err(Error::graph("conv2d stride and dilation must be >= 1"));
        }
        // Saturating: absurd attributes from a file become a shape error, not an overflow.
        let eff_h = w[2]
            .saturating_sub(1)
            .saturating_mul(self.dilation[0])
            .saturating_add(1);
        let eff_w = w[3]
            .saturating_sub(1)
            .saturating_mul(self.dilation[1])
            .saturating_add(1);
        let ph = x[2].saturating_add(self.pad[0]).saturating_add(self.pad[2]);
        let pw = x[3].saturating_add(self.pad[1]).saturating_add(self.pad[3]);
        super::check_i32_extent("conv2d", "padded input height", ph)?;
        super::check_i32_extent("conv2d", "padded input width", pw)?;
        // The tiled kernel's packed weight rows are cout / groups rounded up to 8.
        if (w[0] / g).div_ceil(8).saturating_mul(8) > u32::MAX as usize {
            return Err(Error::graph(format!(
                "conv2d: {} output channels per group exceed the kernels' 32-bit indexing",
                w[0] / g
            )));
        }
        if w[2] == 0 || w[3] == 0 || ph < eff_h || pw < eff_w {
            return Err(Error::shape(
                "conv2d",
                format!("padded input at least {eff_h}x{eff_w}"),
                format!("{ph}x{pw}"),
            ));
        }
        let out = vec![
            x[0],
            w[0],
            (ph - eff_h) / self.stride[0] + 1,
            (pw - eff_w) / self.stride[1] + 1,
        ];
        super::check_epilogue("conv2d", ins, self.bias, self.residual, w[0], &out)?;
        Ok(out)
    }

    pub fn params(&self, x: &[usize], w: &[usize], out: &[usize]) -> ConvParams {
        // Every value was checked to fit 32 bits by `shape_of` (`word` saturates otherwise).
        use super::word;
        let groups = self.groups.max(1);
        let cout_g = w[0] / groups;
        ConvParams {
            n: word(x[0]),
            cin: word(x[1]),
            h: word(x[2]),
            w: word(x[3]),
            cout: word(w[0]),
            oh: word(out[2]),
            ow: word(out[3]),
            groups: word(groups),
            kh: word(w[2]),
            kw: word(w[3]),
            stride_h: word(self.stride[0]),
            stride_w: word(self.stride[1]),
            pad_t: word(self.pad[0]),
            pad_l: word(self.pad[1]),
            dil_h: word(self.dilation[0]),
            dil_w: word(self.dilation[1]),
            cin_g: word(x[1] / groups),
            cout_g: word(cout_g),
            cout_gp: word(cout_g.div_ceil(8).saturating_mul(8)),
            has_bias: self.bias as u32,
            has_res: self.residual as u32,
            _pad: [0; 3],
        }
    }

    /// Depthwise: one input channel per group and one output channel per group.
    pub fn is_depthwise(&self, x: &[usize], w: &[usize]) -> bool {
        self.groups > 1 && self.groups == x[1] && w[0] == x[1]
    }

    pub(crate) fn cpu_f32(
        &self,
        xs: &[&[f32]],
        shapes: &[Vec<usize>],
        out_shape: &[usize],
    ) -> Vec<f32> {
        let p = self.params(&shapes[0], &shapes[1], out_shape);
        let (x, wt) = (xs[0], xs[1]);
        let bias = if self.bias { Some(xs[2]) } else { None };
        let res = if self.residual {
            Some(xs[xs.len() - 1])
        } else {
            None
        };
        let u = |v: u32| v as usize;
        let (oh, ow, h, w) = (u(p.oh), u(p.ow), u(p.h), u(p.w));
        let mut y = vec![0.0f32; crate::tensor::numel(out_shape)];
        for b in 0..u(p.n) {
            for co in 0..u(p.cout) {
                let g = co / u(p.cout_g);
                let plane = &mut y[(b * u(p.cout) + co) * oh * ow..][..oh * ow];
                for ci in 0..u(p.cin_g) {
                    let xc = &x[(b * u(p.cin) + g * u(p.cin_g) + ci) * h * w..][..h * w];
                    for r in 0..u(p.kh) {
                        for s in 0..u(p.kw) {
                            let wv = wt[((co * u(p.cin_g) + ci) * u(p.kh) + r) * u(p.kw) + s];
                            for oy in 0..oh {
                                let iy = (oy * u(p.stride_h) + r * u(p.dil_h)) as isize
                                    - p.pad_t as isize;
                                if iy < 0 || iy >= h as isize {
                                    continue;
                                }
                                let xrow = &xc[iy as usize * w..][..w];
                                for ox in 0..ow {
                                    let ix = (ox * u(p.stride_w) + s * u(p.dil_w)) as isize
                                        - p.pad_l as isize;
                                    if ix >= 0 && ix < w as isize {
                                        plane[oy * ow + ox] += wv * xrow[ix as usize];
                                    }
                                }
                            }
                        }
                    }
                }
                if let Some(bias) = bias {
                    plane.iter_mut().for_each(|v| *v += bias[co]);
                }
            }
        }
        for (o, v) in y.iter_mut().enumerate() {
            if let Some(r) = res {
                *v += r[o];
            }
            *v = self.act.apply(*v);
        }
        y
    }

    fn lower_kernel(&self, kernel: ConvKernel, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        let (x, w) = (&cx.in_shapes[0], &cx.in_shapes[1]);
        let p = self.params(x, w, cx.out_shape);
        let [bias, res] = super::epilogue_binds(self.bias, self.residual);
        let npix = (p.oh * p.ow) as usize;
        kernel
            .check()
            .map_err(|e| unsupported("conv2d", format!("kernel {}: {e}", kernel.name())))?;
        if matches!(kernel, ConvKernel::Tiled { .. } | ConvKernel::Tex2 { .. }) {
            // Packed taps `[group][cin_g*kh*kw][cout_gp]` are indexed in 32 bits.
            let packed = [p.groups, p.cin_g, p.kh, p.kw, p.cout_gp]
                .iter()
                .try_fold(1u32, |a, &d| a.checked_mul(d));
            if packed.is_none() {
                return Err(unsupported(
                    "conv2d",
                    format!(
                        "kernel {}: packed weights exceed 2^32 elements",
                        kernel.name()
                    ),
                ));
            }
        }
        let (shader, wbind, wg) = match kernel {
            ConvKernel::Naive => {
                let total = p.n as u64 * p.cout as u64 * npix as u64;
                (
                    ShaderKey::new(&CONV_NAIVE, &[]),
                    Bind::Input(1),
                    super::grid_1d(total.div_ceil(64), cx.max_workgroups),
                )
            }
            ConvKernel::Tiled { px } => {
                if !cx.is_const[1] {
                    return Err(unsupported("conv2d", "tiled kernel needs constant weights"));
                }
                (
                    ShaderKey::new(&CONV_TILED, &[("PX", px)]),
                    Bind::Packed(
                        1,
                        Pack::ConvTaps {
                            groups: self.groups,
                        },
                    ),
                    [
                        div_ceil(npix, 16 * px as usize),
                        div_ceil((p.cout_gp / 8 * p.groups) as usize, 4),
                        p.n,
                    ],
                )
            }
            ConvKernel::Tex2 { .. } if !cx.is_const[1] => {
                return Err(unsupported(
                    "conv2d",
                    format!("kernel {} needs constant weights", kernel.name()),
                ));
            }
            ConvKernel::Tex2 { px } => {
                let to_tex = input_to_texture(&p, cx)?;
                let wg = [
                    div_ceil(npix, 64 * px as usize),
                    p.cout_gp / 8 * p.groups,
                    p.n,
                ];
                check_grid("conv2d", wg, cx.max_workgroups)?;
                return Ok(vec![
                    to_tex,
                    Dispatch {
                        shader: ShaderKey::new(&CONV_TEX2, &[("PX", px)]),
                        overrides: self.act.overrides(),
                        params: bytemuck::cast_slice(&[p]).to_vec(),
                        bindings: vec![
                            Bind::ScratchRead(0),
                            Bind::Texture(
                                1,
                                Pack::ConvTaps {
                                    groups: self.groups,
                                },
                                p.cout_gp / 4,
                            ),
                            bias,
                            res,
                            Bind::Output,
                        ],
                        workgroups: wg,
                    },
                ]);
            }
            ConvKernel::DepthwiseTex2 { px } => {
                if !cx.is_const[1] || !self.is_depthwise(x, w) {
                    return Err(unsupported(
                        "conv2d",
                        format!(
                            "kernel {} needs a depthwise conv with constant weights",
                            kernel.name()
                        ),
                    ));
                }
                let taps = (p.kh * p.kw) as usize;
                let to_tex = input_to_texture(&p, cx)?;
                let wg = [div_ceil(npix, 64 * px as usize), p.cout, p.n];
                check_grid("conv2d", wg, cx.max_workgroups)?;
                return Ok(vec![
                    to_tex,
                    Dispatch {
                        shader: ShaderKey::new(&DWCONV_TEX2, &[("PX", px)]),
                        overrides: self.act.overrides(),
                        params: bytemuck::cast_slice(&[p]).to_vec(),
                        bindings: vec![
                            Bind::ScratchRead(0),
                            Bind::Texture(1, Pack::Rows4 { cols: taps }, taps.div_ceil(4) as u32),
                            bias,
                            res,
                            Bind::Output,
                        ],
                        workgroups: wg,
                    },
                ]);
            }
            ConvKernel::Packed { .. } | ConvKernel::PackedDepthwise { .. } => {
                return self.lower_packed(kernel, cx);
            }
            ConvKernel::SparseTex { .. } => return self.lower_sparse(kernel, cx),
            ConvKernel::PointwiseF16 { .. }
            | ConvKernel::ImplicitTexF16 { .. }
            | ConvKernel::DwVec4F16 { .. } => return self.lower_f16c(kernel, cx),
            ConvKernel::Pointwise { .. }
            | ConvKernel::ImplicitWg { .. }
            | ConvKernel::ImplicitTex { .. } => return self.lower_gemm(kernel, cx),
            ConvKernel::DwStrip { px } => return self.lower_strip(px, &p, cx),
            ConvKernel::DwVec4 { px, py } => return self.lower_vec4(px, py, &p, cx),
            ConvKernel::Depthwise { px } => {
                if !self.is_depthwise(x, w) {
                    return Err(unsupported(
                        "conv2d",
                        "depthwise kernel on a non-depthwise conv",
                    ));
                }
                (
                    ShaderKey::new(&DWCONV, &[("PX", px)]),
                    Bind::Input(1),
                    [div_ceil(npix, 64 * px as usize), p.cout, p.n],
                )
            }
        };
        check_grid("conv2d", wg, cx.max_workgroups)?;
        Ok(vec![Dispatch {
            shader,
            overrides: self.act.overrides(),
            params: bytemuck::cast_slice(&[p]).to_vec(),
            bindings: vec![Bind::Input(0), wbind, bias, res, Bind::Output],
            workgroups: wg,
        }])
    }
}

/// Where the strip depthwise kernel's padded input texture puts each plane, and its grid.
#[derive(Debug, Clone, Copy)]
struct StripGeometry {
    /// Strips of `px` outputs per output row.
    strips: u32,
    /// Texels per padded plane row, and padded rows per plane.
    tw: u32,
    hp: u32,
    /// Planes stacked down one column of the texture, and the texture's extent.
    ppc: u32,
    width: u32,
    height: u32,
    planes: u32,
}

impl StripGeometry {
    /// Workgroups of a dispatch with `per_plane` invocations per plane: 64-wide along x,
    /// planes along y, then z when they exceed the device's per-dimension maximum.
    fn grid(&self, per_plane: u32, max: u32) -> [u32; 3] {
        let gy = self.planes.min(max.max(1));
        [per_plane.div_ceil(64), gy, self.planes.div_ceil(gy)]
    }
}

/// The padded input texture of the strip kernel (`shaders/conv/dw_params.wgsl`), or why it
/// cannot be made: the strip reads `span` input columns per row, at most 8 texels. The layout
/// keeps both sides within 8192 texels (WebGPU's guaranteed 2-D texture size), so it does not
/// depend on the device; `fits` checks it against smaller limits.
fn strip_geometry(p: &ConvParams, px: u32) -> std::result::Result<StripGeometry, String> {
    const MAXDIM: u32 = 8192;
    let maxdim = MAXDIM;
    if p.kh > 7 || p.kw > 8 {
        return Err("the strip depthwise kernel takes at most 7x8 taps".into());
    }
    let span = (px as u64 - 1) * p.stride_w as u64 + (p.kw as u64 - 1) * p.dil_w as u64 + 1;
    if span > 32 {
        return Err(format!(
            "the strip depthwise kernel reads at most 32 columns per row, this conv {span}"
        ));
    }
    let strips = p.ow.div_ceil(px);
    let tw = (strips as u64 - 1) * (px as u64 * p.stride_w as u64) / 4 + span.div_ceil(4);
    let hp = (p.oh as u64 - 1) * p.stride_h as u64 + (p.kh as u64 - 1) * p.dil_h as u64 + 1;
    let planes = p.n as u64 * p.cin as u64;
    let too_big = || "input texture exceeds the device's 2-D texture size".to_string();
    if hp > maxdim as u64 || tw > maxdim as u64 {
        return Err(too_big());
    }
    let ppc = planes.min(maxdim as u64 / hp);
    let width = planes.div_ceil(ppc) * tw;
    if width > maxdim as u64 {
        return Err(too_big());
    }
    // Flat indices of the input and output stay within 32 bits.
    let numel = |a: u64, b: u64, c: u64| a * b * c;
    if numel(planes, p.h as u64, p.w as u64) > u32::MAX as u64
        || numel(planes, p.oh as u64, p.ow as u64) > u32::MAX as u64
    {
        return Err("the strip depthwise kernel indexes its tensors in 32 bits".into());
    }
    Ok(StripGeometry {
        strips,
        tw: tw as u32,
        hp: hp as u32,
        ppc: ppc as u32,
        width: width as u32,
        height: (ppc * hp) as u32,
        planes: planes as u32,
    })
}

/// The geometry of the vec4 depthwise kernel (no texture: `tw`, `hp`, `ppc` unused), or why
/// it cannot run the case.
fn vec4_geometry(p: &ConvParams, px: u32, py: u32) -> std::result::Result<StripGeometry, String> {
    if !p.w.is_multiple_of(4) || !p.ow.is_multiple_of(4) {
        return Err(
            "the vec4 depthwise kernel needs input and output widths that are multiples of 4"
                .into(),
        );
    }
    let off = (4 - p.pad_l % 4) % 4;
    let span = (px as u64 - 1) * p.stride_w as u64 + (p.kw as u64 - 1) * p.dil_w as u64 + 1;
    let rows = (py as u64 - 1) * p.stride_h as u64 + (p.kh as u64 - 1) * p.dil_h as u64 + 1;
    // The shader's arrays: 80 columns per row, 52 taps, 12 input rows per block.
    if off as u64 + span > 80 || p.kw > 7 || (p.kh as u64) * (p.kw as u64) > 52 || rows > 12 {
        return Err("the vec4 depthwise kernel's window exceeds its register arrays".into());
    }
    let planes = p.n as u64 * p.cin as u64;
    if planes * p.h as u64 * p.w as u64 > u32::MAX as u64
        || planes * p.oh as u64 * p.ow as u64 > u32::MAX as u64
    {
        return Err("the vec4 depthwise kernel indexes its tensors in 32 bits".into());
    }
    Ok(StripGeometry {
        strips: p.ow.div_ceil(px),
        tw: 0,
        hp: 0,
        ppc: 1,
        width: 0,
        height: 0,
        planes: planes as u32,
    })
}

/// The strip and vec4 depthwise kernels.
impl Conv2d {
    fn lower_vec4(&self, px: u32, py: u32, p: &ConvParams, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        let (x, w) = (&cx.in_shapes[0], &cx.in_shapes[1]);
        if !cx.is_const[1] || !self.is_depthwise(x, w) {
            return Err(unsupported(
                "conv2d",
                "kernel dwvec4 needs a depthwise conv with constant weights",
            ));
        }
        let g = vec4_geometry(p, px, py).map_err(|e| unsupported("conv2d", e))?;
        let wg = g.grid(g.strips * p.oh.div_ceil(py), cx.max_workgroups);
        check_grid("conv2d", wg, cx.max_workgroups)?;
        let params = vec![
            g.planes, p.cin, p.h, p.w, p.oh, p.ow, p.pad_t, p.pad_l, 0, 0, 0, g.strips, p.has_bias,
            p.has_res, wg[1], 0,
        ];
        let consts = [
            ("PX", px),
            ("PY", py),
            ("KH", p.kh),
            ("KW", p.kw),
            ("SH", p.stride_h),
            ("SW", p.stride_w),
            ("DH", p.dil_h),
            ("DW", p.dil_w),
            ("OFF", (4 - p.pad_l % 4) % 4),
        ];
        let [bias, res] = super::epilogue_binds(self.bias, self.residual);
        Ok(vec![Dispatch {
            shader: ShaderKey::new(&DW_VEC4, &consts),
            overrides: self.act.overrides(),
            params,
            bindings: vec![
                Bind::Input(0),
                Bind::Packed(1, Pack::Rows4 { cols: w[2] * w[3] }),
                bias,
                res,
                Bind::Output,
            ],
            workgroups: wg,
        }])
    }

    fn lower_strip(&self, px: u32, p: &ConvParams, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        let (x, w) = (&cx.in_shapes[0], &cx.in_shapes[1]);
        if !cx.is_const[1] || !self.is_depthwise(x, w) {
            return Err(unsupported(
                "conv2d",
                "kernel dwstrip needs a depthwise conv with constant weights",
            ));
        }
        let g = strip_geometry(p, px).map_err(|e| unsupported("conv2d", e))?;
        let main = g.grid(g.strips * p.oh, cx.max_workgroups);
        check_grid("conv2d", main, cx.max_workgroups)?;
        let consts = [
            ("PX", px),
            ("KH", p.kh),
            ("KW", p.kw),
            ("SH", p.stride_h),
            ("SW", p.stride_w),
            ("DH", p.dil_h),
            ("DW", p.dil_w),
        ];
        let [bias, res] = super::epilogue_binds(self.bias, self.residual);
        // The pad copy and the kernel share the parameter block.
        let pad = pad_dispatch(p, &g, cx)?;
        let params = pad.params.clone();
        Ok(vec![
            pad,
            Dispatch {
                shader: ShaderKey::new(&DW_STRIP, &consts),
                overrides: self.act.overrides(),
                params,
                bindings: vec![
                    Bind::ScratchRead(0),
                    Bind::Texture(1, Pack::Rows4 { cols: w[3] }, w[3].div_ceil(4) as u32),
                    bias,
                    res,
                    Bind::Output,
                ],
                workgroups: main,
            },
        ])
    }
}

/// Kernels on packed (quantised or f16) weights.
impl Conv2d {
    /// The weight is packed and everything else dense f32: a case for the packed kernels.
    fn packed_w(&self, cx: &SelectCtx) -> bool {
        !cx.formats[1].is_dense()
            && cx.ins.iter().all(|v| v.dtype == crate::tensor::DType::F32)
            && cx.out.dtype == crate::tensor::DType::F32
            && cx
                .formats
                .iter()
                .enumerate()
                .all(|(i, f)| i == 1 || f.is_dense())
    }

    /// The layout of a packed weight the kernels can read: a constant OIHW weight in a format
    /// whose groups align with texels, on an input whose planes the kernels index in i32.
    fn packed_layout(&self, cx: &SelectCtx) -> std::result::Result<QLayout, String> {
        if !self.packed_w(cx) {
            return Err("packed-weight kernels take a packed weight and dense f32 operands".into());
        }
        if !cx.is_const[1] {
            return Err("packed-weight kernels read a constant weight".into());
        }
        packed_layout_of(&cx.formats[1], cx.shape(0), cx.shape(1), self.groups)
    }

    /// The tuned packed kernel for the case's slot (`qdwconv` for depthwise convs, else
    /// `qconv`), else a default that fits; `None` when none reads this weight (the plan then
    /// decodes it for a dense kernel and says so), and always under `naive_only`.
    fn select_packed(&self, cx: &SelectCtx) -> Option<ConvKernel> {
        if let crate::format::WeightFormat::Sparse(_) = cx.formats[1] {
            return self.select_sparse(cx);
        }
        if cx.device.naive_only || self.packed_layout(cx).is_err() {
            return None;
        }
        let buf = |px, r| ConvKernel::Packed { px, r, wtex: false };
        let (slot, defaults) = if self.is_depthwise(cx.shape(0), cx.shape(1)) {
            (
                "qdwconv",
                [ConvKernel::PackedDepthwise { px: 4 }, buf(4, 1)],
            )
        } else {
            ("qconv", [buf(4, 4), buf(1, 1)])
        };
        cx.tuned::<Self>(slot)
            .into_iter()
            .chain(defaults)
            .find(|k| self.fits(k, cx).is_ok())
    }

    fn lower_packed(&self, kernel: ConvKernel, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        let (x, w) = (&cx.in_shapes[0], &cx.in_shapes[1]);
        if !cx.is_const[1] {
            return Err(unsupported(
                "conv2d",
                "packed-weight kernels read a constant weight",
            ));
        }
        let lay = packed_layout_of(&cx.formats[1], x, w, self.groups)
            .map_err(|e| unsupported("conv2d", e))?;
        kernel
            .check()
            .map_err(|e| unsupported("conv2d", format!("kernel {}: {e}", kernel.name())))?;
        let p = self.params(x, w, cx.out_shape);
        let wg = packed_grid(kernel, &p);
        let mut consts = lay.consts().to_vec();
        let (shader, codes, cblocks) = match kernel {
            ConvKernel::Packed { px, r, wtex } => {
                let cblocks = p.cout_g.div_ceil(r);
                let pointwise =
                    w[2] == 1 && w[3] == 1 && self.stride == [1, 1] && self.pad == [0; 4];
                consts.extend([("PX", px), ("R", r), ("PW", pointwise as u32)]);
                let (file, codes) = if wtex {
                    (&QCONV_TEX, Bind::QuantTex(1, QPart::Codes))
                } else {
                    (&QCONV_BUF, Bind::Quant(1, QPart::Codes))
                };
                (ShaderKey::new(file, &consts), codes, cblocks)
            }
            ConvKernel::PackedDepthwise { px } => {
                if !self.is_depthwise(x, w) {
                    return Err(unsupported(
                        "conv2d",
                        "depthwise kernel on a non-depthwise conv",
                    ));
                }
                consts.push(("PX", px));
                (
                    ShaderKey::new(&QDWCONV, &consts),
                    Bind::Quant(1, QPart::Codes),
                    1,
                )
            }
            _ => unreachable!("dense kernels are lowered by lower_kernel"),
        };
        check_grid("conv2d", wg, cx.max_workgroups)?;
        let wd = super::word;
        let params = vec![
            p.n,
            p.cin,
            p.h,
            p.w,
            p.cout,
            p.oh,
            p.ow,
            p.groups,
            p.kh,
            p.kw,
            p.stride_h,
            p.stride_w,
            p.pad_t,
            p.pad_l,
            p.dil_h,
            p.dil_w,
            p.cin_g,
            p.cout_g,
            cblocks,
            p.has_bias,
            p.has_res,
            wd(lay.row_t),
            wd(lay.group_t),
            wd(lay.ngroups),
            wd(lay.scale_words()),
            0,
            0,
            0,
        ];
        let [bias, res] = super::epilogue_binds(self.bias, self.residual);
        Ok(vec![Dispatch {
            shader,
            overrides: self.act.overrides(),
            params,
            bindings: vec![
                Bind::Input(0),
                codes,
                Bind::Quant(1, QPart::Meta),
                bias,
                res,
                Bind::Output,
            ],
            workgroups: wg,
        }])
    }
}

/// Workgroups of a packed kernel: pixel blocks x channel blocks (16 x 4 invocations of `r`
/// channels x `px` pixels; depthwise: 64 invocations of `px` pixels x 1 channel) x batch.
fn packed_grid(kernel: ConvKernel, p: &ConvParams) -> [u32; 3] {
    let npix = p.oh as usize * p.ow as usize;
    match kernel {
        ConvKernel::Packed { px, r, .. } => [
            div_ceil(npix, 16 * px.max(1) as usize),
            div_ceil(p.groups as usize * p.cout_g.div_ceil(r.max(1)) as usize, 4),
            p.n,
        ],
        ConvKernel::PackedDepthwise { px } => {
            [div_ceil(npix, 64 * px.max(1) as usize), p.cout, p.n]
        }
        _ => [0; 3],
    }
}

/// The packed layout of an OIHW weight of `format` for the packed kernels, or why they cannot
/// read it: the format's groups must align with texels, and a group's input planes
/// (`cin / groups * h * w` values) are indexed in i32.
fn packed_layout_of(
    format: &crate::format::WeightFormat,
    x: &[usize],
    w: &[usize],
    groups: usize,
) -> std::result::Result<QLayout, String> {
    let plane = (x[1] / groups.max(1))
        .checked_mul(x[2])
        .and_then(|v| v.checked_mul(x[3]));
    if plane.is_none_or(|v| v > i32::MAX as usize) {
        return Err("packed-weight kernels index a group's input in 32-bit signed ints".into());
    }
    QLayout::of(format, w)
}

/// Packs OIHW weights for the tiled kernel: `[group][cin_g*kh*kw][cout_g rounded up to 8]`.
pub fn pack_conv_taps(w: &[f32], shape: &[usize], groups: usize) -> Vec<f32> {
    let (cout, taps) = (shape[0], shape[1] * shape[2] * shape[3]);
    let cout_g = cout / groups;
    let cgp = cout_g.div_ceil(8) * 8;
    let mut out = vec![0.0; groups * taps * cgp];
    for co in 0..cout {
        let (g, cl) = (co / cout_g, co % cout_g);
        for t in 0..taps {
            out[(g * taps + t) * cgp + cl] = w[co * taps + t];
        }
    }
    out
}

/// Texture extent (width, height) of packed conv weights for the texture kernel.
pub fn tex_extent(w: &[usize], groups: usize) -> (usize, usize) {
    let cout_g = w[0] / groups;
    (cout_g.div_ceil(8) * 2, groups * w[1] * w[2] * w[3])
}

/// The dispatch that copies a conv input into an r32float scratch texture (texture-input
/// kernels): texel (ix, (b * cin + c) * h + iy).
fn input_to_texture(p: &ConvParams, cx: &LowerCtx) -> Result<Dispatch> {
    let rows = p.n * p.cin * p.h;
    let d = Dispatch {
        shader: ShaderKey::new(&TO_TEXTURE_R32, &[]),
        overrides: Activation::None.overrides(),
        params: vec![rows, p.w, 0, 0],
        bindings: vec![
            Bind::Input(0),
            Bind::ScratchStore(0, p.w, rows, super::TexFormat::R32F),
        ],
        workgroups: [p.w.div_ceil(64), rows, 1],
    };
    check_grid("conv2d", d.workgroups, cx.max_workgroups)?;
    Ok(d)
}

/// The sparse pointwise conv's tuned slot: candidates timed on a 1x1 96 -> 24 conv at 28x28 on
/// a CSR weight, then the crossover against the dense kernels (see `TuneSlot::crossover`).
fn sparse_slot() -> TuneSlot {
    use crate::format::{SparseLayout, SparseSpec, SparseValues, WeightFormat};
    let csr = WeightFormat::Sparse(SparseSpec {
        layout: SparseLayout::Csr,
        values: SparseValues::F32,
    });
    let points = [0.1, 0.02, 0.05, 0.2, 0.3, 0.5]
        .iter()
        .map(|&d| (d, csr.clone()))
        .collect();
    let cands = [1, 2]
        .map(|px| ConvKernel::SparseTex {
            px,
            max_density_pct: 100,
        })
        .to_vec();
    TuneSlot::new(
        "csr1x1",
        cands,
        Conv2d::default(),
        vec![(vec![1, 96, 28, 28], false), (vec![24, 96, 1, 1], true)],
    )
    .with_crossover(points)
}

/// Sparse weights (`ops/sparse.rs`): the pointwise kernel.
impl Conv2d {
    /// Whether `SparseTex` can run the case: a constant CSR weight on a pointwise conv (1x1,
    /// stride 1, no padding, one group), the input and weight textures within the device's
    /// texture size, and few enough storage buffers.
    fn sparse_fits(&self, cx: &SelectCtx) -> std::result::Result<(), String> {
        let (x, w) = (cx.shape(0), cx.shape(1));
        if !cx.is_const[1] {
            return Err("the sparse pointwise kernel reads a constant weight".into());
        }
        let lay = super::sparse::SLayout::of(&cx.formats[1], w)?;
        if lay.layout != crate::format::SparseLayout::Csr {
            return Err(format!(
                "the sparse pointwise kernel reads CSR, not {}",
                cx.formats[1].label()
            ));
        }
        if w[2] != 1 || w[3] != 1 || self.stride != [1, 1] || self.pad != [0; 4] || self.groups != 1
        {
            return Err(
                "the sparse kernel takes 1x1 convs with stride 1, no padding, one group".into(),
            );
        }
        // The input as [N * Cin] rows of H * W / 4 texels.
        if !cx.tex_fits((x[2] * x[3]).div_ceil(4), x[0] * x[1]) {
            return Err("the input's texture exceeds the device's 2-D texture size".into());
        }
        let quads = lay.rows * lay.cols / 4 + lay.rows;
        let h = super::sparse::SLayout::tex_height(quads + 1);
        if !cx.tex_fits(super::sparse::TEX_WIDTH, h) {
            return Err("the weight's textures exceed the device's 2-D texture size".into());
        }
        // Row groups, scales, bias, residual, output.
        if cx.device.limits.max_storage_buffers_per_stage < 5 {
            return Err("the sparse kernel binds 5 storage buffers".into());
        }
        Ok(())
    }

    /// The tuned `csr1x1` choice (else `SparseTex` 2 texels with the default threshold) when
    /// it fits and the weight's density is at most its threshold; `None` otherwise (the plan
    /// decodes the weight for the dense kernels and says so).
    fn select_sparse(&self, cx: &SelectCtx) -> Option<ConvKernel> {
        if cx.device.naive_only || self.sparse_fits(cx).is_err() {
            return None;
        }
        let k = cx
            .tuned::<Self>("csr1x1")
            .filter(|k| matches!(k, ConvKernel::SparseTex { .. }))
            .unwrap_or(ConvKernel::SparseTex {
                px: 2,
                max_density_pct: DEFAULT_SPARSE_CONV_PCT,
            });
        let ConvKernel::SparseTex {
            max_density_pct, ..
        } = k
        else {
            return None;
        };
        let density = cx.density(1)?;
        (density * 100.0 <= max_density_pct as f32 + 1e-3).then_some(k)
    }

    fn lower_sparse(&self, kernel: ConvKernel, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        use super::sparse::SPart;
        let ConvKernel::SparseTex { px, .. } = kernel else {
            return Err(unsupported("conv2d", "not a sparse kernel"));
        };
        kernel
            .check()
            .map_err(|e| unsupported("conv2d", format!("kernel {}: {e}", kernel.name())))?;
        let (x, w) = (&cx.in_shapes[0], &cx.in_shapes[1]);
        let lay =
            super::sparse::SLayout::of(&cx.formats[1], w).map_err(|e| unsupported("conv2d", e))?;
        if !cx.is_const[1]
            || lay.layout != crate::format::SparseLayout::Csr
            || w[2] != 1
            || w[3] != 1
            || self.stride != [1, 1]
            || self.pad != [0; 4]
            || self.groups != 1
        {
            return Err(unsupported(
                "conv2d",
                "the sparse kernel takes a constant CSR weight on a 1x1, stride 1, unpadded, \
                 one-group conv",
            ));
        }
        let word = super::word;
        let (n, cin, cout, hw) = (word(x[0]), word(x[1]), word(w[0]), word(x[2] * x[3]));
        let hw4 = hw.div_ceil(4);
        let to_tex = super::matmul::a_to_texture(n * cin, hw);
        let [bias, res] = super::epilogue_binds(self.bias, self.residual);
        let p = self.params(x, w, cx.out_shape);
        let wg = [hw4.div_ceil(64 * px), cout, n];
        check_grid("conv2d", wg, cx.max_workgroups)?;
        check_grid("conv2d", to_tex.workgroups, cx.max_workgroups)?;
        Ok(vec![
            to_tex,
            Dispatch {
                shader: ShaderKey::new(&SP_CONV1X1, &[("VALS", lay.vals), ("PX", px)]),
                overrides: self.act.overrides(),
                params: vec![cin, cout, hw, hw4, p.has_bias, p.has_res, 0, 0],
                bindings: vec![
                    Bind::ScratchRead(0),
                    Bind::Sparse(1, SPart::Groups),
                    Bind::SparseTex(1, SPart::GroupCols),
                    Bind::SparseTex(1, SPart::GroupVals),
                    Bind::Sparse(1, SPart::Scales),
                    bias,
                    res,
                    Bind::Output,
                ],
                workgroups: wg,
            },
        ])
    }
}

/// The GEMM-shaped kernels: pointwise conv as a GEMM, and implicit-GEMM conv.
impl Conv2d {
    /// A 1x1, stride-1, unpadded, one-group conv of weight shape `w`: per image a plain GEMM
    /// on the NCHW input as it is (dilation does not matter for one tap).
    pub fn is_pointwise(&self, w: &[usize]) -> bool {
        w.len() == 4
            && w[2] == 1
            && w[3] == 1
            && self.stride == [1, 1]
            && self.pad == [0; 4]
            && self.groups == 1
    }

    /// Whether `Pointwise`, `ImplicitWg` or `ImplicitTex` can run the case, or why not.
    fn gemm_fits(&self, k: &ConvKernel, cx: &SelectCtx) -> std::result::Result<(), String> {
        let (x, w) = (cx.shape(0), cx.shape(1));
        let p = self.params(x, w, &cx.out.shape);
        let max = cx.device.limits.max_compute_workgroups_per_dimension;
        // Every kernel here indexes input and output as flat u32.
        let numel = |s: &[usize]| s.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if [x, &cx.out.shape[..]]
            .iter()
            .any(|s| numel(s).is_none_or(|v| v > u32::MAX as usize))
        {
            return Err(format!(
                "kernel {} indexes its tensors in 32 bits",
                k.name()
            ));
        }
        let grid_ok = |wg: [u32; 3]| {
            if wg.iter().any(|&v| v > max) {
                Err(format!(
                    "kernel {} needs more than {max} workgroups",
                    k.name()
                ))
            } else {
                Ok(())
            }
        };
        if !cx.is_const[1] && !matches!(k, ConvKernel::ImplicitWg { .. }) {
            return Err(format!("kernel {} needs constant weights", k.name()));
        }
        match *k {
            ConvKernel::Pointwise { xtex, .. } => {
                if !self.is_pointwise(w) {
                    return Err(
                        "the pointwise GEMM takes 1x1 convs with stride 1, no padding, one group"
                            .into(),
                    );
                }
                let hw = x[2] * x[3];
                if !cx.tex_fits(x[1].div_ceil(4), w[0]) {
                    return Err("weight texture exceeds the device's 2-D texture size".into());
                }
                if xtex {
                    if !cx.tex_fits(hw.div_ceil(4), x[0] * x[1]) {
                        return Err("input texture exceeds the device's 2-D texture size".into());
                    }
                } else if !hw.is_multiple_of(4) {
                    return Err(format!(
                        "kernel {} reads pixels as vec4s: H * W must be a multiple of 4",
                        k.name()
                    ));
                }
                grid_ok(pointwise_grid(*k, &p))
            }
            ConvKernel::ImplicitWg { wg } => {
                let l = &cx.device.limits;
                let words = IGEMM_BK * wg * IGEMM_T * 2;
                // (wg <= 16 is within every adapter's per-axis size, 256 on WebGPU's minimum.)
                if wg * wg > l.max_compute_invocations_per_workgroup {
                    return Err(format!(
                        "{wg}x{wg} invocations per workgroup exceed the device's limits"
                    ));
                }
                if words * 4 > l.max_compute_workgroup_storage_size {
                    return Err(format!(
                        "{} bytes of workgroup storage exceed the device's {}",
                        words * 4,
                        l.max_compute_workgroup_storage_size
                    ));
                }
                if numel(w).is_none_or(|v| v > u32::MAX as usize) {
                    return Err("the weight exceeds 2^32 elements".into());
                }
                grid_ok(igemm_wg_grid(wg, &p))
            }
            ConvKernel::ImplicitTex { px, v4 } => {
                if self.is_depthwise(x, w) {
                    return Err("a depthwise conv (the dwconv kernels take it)".into());
                }
                if v4 && !p.ow.is_multiple_of(4) {
                    return Err(format!(
                        "vec4 stores need an output width that is a multiple of 4, not {}",
                        p.ow
                    ));
                }
                let g = strip_geometry(&p, px)?;
                if !cx.tex_fits(g.width as usize, g.height as usize) {
                    return Err("input texture exceeds the device's 2-D texture size".into());
                }
                let (tw, th) = tex_extent(w, self.groups);
                if !cx.tex_fits(tw, th) {
                    return Err("weight texture exceeds the device's 2-D texture size".into());
                }
                grid_ok(g.grid(g.tw * g.hp, max))?;
                grid_ok(itex_grid(&p, &g, max))
            }
            _ => Err(format!(
                "kernel {} is not a GEMM-shaped conv kernel",
                k.name()
            )),
        }
    }

    fn lower_gemm(&self, kernel: ConvKernel, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        kernel
            .check()
            .map_err(|e| unsupported("conv2d", format!("kernel {}: {e}", kernel.name())))?;
        let (x, w) = (&cx.in_shapes[0], &cx.in_shapes[1]);
        let p = self.params(x, w, cx.out_shape);
        let [bias, res] = super::epilogue_binds(self.bias, self.residual);
        if !cx.is_const[1] && !matches!(kernel, ConvKernel::ImplicitWg { .. }) {
            return Err(unsupported(
                "conv2d",
                format!("kernel {} needs constant weights", kernel.name()),
            ));
        }
        match kernel {
            ConvKernel::Pointwise { tm, tn4, xtex } => {
                let hw = p.h * p.w;
                if !self.is_pointwise(w) || (!xtex && !hw.is_multiple_of(4)) {
                    return Err(unsupported(
                        "conv2d",
                        format!(
                            "kernel {} takes 1x1, stride 1, unpadded, one-group convs{}",
                            kernel.name(),
                            if xtex {
                                ""
                            } else {
                                " with H * W a multiple of 4"
                            }
                        ),
                    ));
                }
                let (hw4, cin4) = (hw.div_ceil(4), p.cin.div_ceil(4));
                let wg = pointwise_grid(kernel, &p);
                check_grid("conv2d", wg, cx.max_workgroups)?;
                let params = vec![p.cin, p.cout, hw, hw4, cin4, p.n, p.has_bias, p.has_res];
                let consts = [("TM", tm), ("TN4", tn4)];
                let wtex = Bind::Texture(
                    1,
                    Pack::Rows4 {
                        cols: p.cin as usize,
                    },
                    cin4,
                );
                let mut out = Vec::new();
                let (file, xbind) = if xtex {
                    let to_tex = super::matmul::a_to_texture(p.n * p.cin, hw);
                    check_grid("conv2d", to_tex.workgroups, cx.max_workgroups)?;
                    out.push(to_tex);
                    (&PW_TEX, Bind::ScratchRead(0))
                } else {
                    (&PW_BUF, Bind::Input(0))
                };
                out.push(Dispatch {
                    shader: ShaderKey::new(file, &consts),
                    overrides: self.act.overrides(),
                    params,
                    bindings: vec![wtex, xbind, bias, res, Bind::Output],
                    workgroups: wg,
                });
                Ok(out)
            }
            ConvKernel::ImplicitWg { wg } => {
                let grid = igemm_wg_grid(wg, &p);
                check_grid("conv2d", grid, cx.max_workgroups)?;
                Ok(vec![Dispatch {
                    shader: ShaderKey::new(
                        &IGEMM_WG,
                        &[
                            ("TM", IGEMM_T),
                            ("TN", IGEMM_T),
                            ("WG", wg),
                            ("BK", IGEMM_BK),
                        ],
                    ),
                    overrides: self.act.overrides(),
                    params: bytemuck::cast_slice(&[p]).to_vec(),
                    bindings: vec![Bind::Input(0), Bind::Input(1), bias, res, Bind::Output],
                    workgroups: grid,
                }])
            }
            ConvKernel::ImplicitTex { px, v4 } => {
                if self.is_depthwise(x, w) {
                    return Err(unsupported(
                        "conv2d",
                        "kernel igemm-tex does not take depthwise convs",
                    ));
                }
                if v4 && !p.ow.is_multiple_of(4) {
                    return Err(unsupported(
                        "conv2d",
                        format!(
                            "kernel {} needs an output width that is a multiple of 4, not {}",
                            kernel.name(),
                            p.ow
                        ),
                    ));
                }
                let g = strip_geometry(&p, px).map_err(|e| unsupported("conv2d", e))?;
                let pad = pad_dispatch(&p, &g, cx)?;
                let grid = itex_grid(&p, &g, cx.max_workgroups);
                check_grid("conv2d", grid, cx.max_workgroups)?;
                let cblocks = p.cout_gp / 8;
                let params = vec![
                    g.planes, p.cin, p.h, p.w, p.oh, p.ow, g.tw, g.hp, g.ppc, g.strips, p.cout,
                    p.cout_g, p.cin_g, cblocks, p.groups, grid[1], p.has_bias, p.has_res, 0, 0,
                ];
                let consts = [
                    ("PX", px),
                    ("KH", p.kh),
                    ("KW", p.kw),
                    ("SH", p.stride_h),
                    ("SW", p.stride_w),
                    ("DH", p.dil_h),
                    ("DW", p.dil_w),
                ];
                Ok(vec![
                    pad,
                    Dispatch {
                        shader: ShaderKey::new(
                            if v4 { &IGEMM_TEX_V4 } else { &IGEMM_TEX },
                            &consts,
                        ),
                        overrides: self.act.overrides(),
                        params,
                        bindings: vec![
                            Bind::ScratchRead(0),
                            Bind::Texture(
                                1,
                                Pack::ConvTaps {
                                    groups: self.groups,
                                },
                                p.cout_gp / 4,
                            ),
                            bias,
                            res,
                            Bind::Output,
                        ],
                        workgroups: grid,
                    },
                ])
            }
            _ => Err(unsupported(
                "conv2d",
                format!("kernel {} is not a GEMM-shaped conv kernel", kernel.name()),
            )),
        }
    }
}

/// Workgroups of the pointwise GEMM: 64 invocations of `tn4` pixel texels along x, blocks of
/// `tm` output channels along y, images along z.
fn pointwise_grid(k: ConvKernel, p: &ConvParams) -> [u32; 3] {
    let ConvKernel::Pointwise { tm, tn4, .. } = k else {
        return [0; 3];
    };
    let hw4 = (p.h * p.w).div_ceil(4);
    [hw4.div_ceil(64 * tn4), p.cout.div_ceil(tm), p.n]
}

/// Workgroups of the implicit-GEMM kernel: output-pixel tiles x channel tiles x
/// (image, group).
fn igemm_wg_grid(wg: u32, p: &ConvParams) -> [u32; 3] {
    let tile = wg * IGEMM_T;
    [
        (p.oh * p.ow).div_ceil(tile),
        p.cout_g.div_ceil(tile),
        p.n.saturating_mul(p.groups),
    ]
}

/// Workgroups of the register-blocked texture kernel: 64 strips per workgroup along x, the
/// (image, group, 8-channel block)s along y, then z beyond the per-dimension maximum.
fn itex_grid(p: &ConvParams, g: &StripGeometry, max: u32) -> [u32; 3] {
    let blocks = p.n * p.groups * (p.cout_gp / 8);
    let gy = blocks.min(max.max(1));
    [(g.strips * p.oh).div_ceil(64), gy, blocks.div_ceil(gy)]
}

/// The dispatch that copies the input, zero-padded, into the strip kernels' plane texture
/// (scratch texture 0; layout in `shaders/conv/dw_params.wgsl`).
fn pad_dispatch(p: &ConvParams, g: &StripGeometry, cx: &LowerCtx) -> Result<Dispatch> {
    let wg = g.grid(g.tw * g.hp, cx.max_workgroups);
    check_grid("conv2d", wg, cx.max_workgroups)?;
    Ok(Dispatch {
        shader: ShaderKey::new(&DW_PAD_TEX, &[]),
        overrides: Activation::None.overrides(),
        params: vec![
            g.planes,
            p.cin,
            p.h,
            p.w,
            p.oh,
            p.ow,
            p.pad_t,
            p.pad_l,
            g.tw,
            g.hp,
            g.ppc,
            g.strips,
            p.has_bias,
            p.has_res,
            g.grid(1, cx.max_workgroups)[1],
            0,
        ],
        bindings: vec![
            Bind::Input(0),
            Bind::ScratchStore(0, g.width, g.height, super::TexFormat::Rgba32F),
        ],
        workgroups: wg,
    })
}

/// The f16-product kernels (`enable f16`): each is its f32 twin's source with the f16
/// product prelude in place of the f32 one.
static PW_F16_TEX: ShaderSource = crate::wgsl!(
    "conv/pw_params.wgsl", "conv/pw_x_tex.wgsl", "common/dot4_f16.wgsl", "conv/conv1x1_dot4_f16.wgsl",
    "conv/conv1x1_gemm.wgsl";
    [[("TM", 4), ("TN4", 1)], [("TM", 8), ("TN4", 2)]]
);
static PW_F16_BUF: ShaderSource = crate::wgsl!(
    "conv/pw_params.wgsl", "conv/pw_x_buf.wgsl", "common/dot4_f16.wgsl", "conv/conv1x1_dot4_f16.wgsl",
    "conv/conv1x1_gemm.wgsl";
    [[("TM", 8), ("TN4", 1)], [("TM", 4), ("TN4", 2)]]
);
static IGEMM_TEX_F16: ShaderSource = crate::wgsl!(
    "conv/strip_store.wgsl", "common/dot4_f16.wgsl", "conv/conv_strip_acc_f16.wgsl",
    "conv/conv_strip_tex.wgsl";
    [[("PX", 8), ("KH", 3), ("KW", 3), ("SH", 1), ("SW", 1), ("DH", 1), ("DW", 1)],
     [("PX", 4), ("KH", 1), ("KW", 1), ("SH", 2), ("SW", 2), ("DH", 1), ("DW", 1)],
     [("PX", 8), ("KH", 7), ("KW", 8), ("SH", 2), ("SW", 1), ("DH", 1), ("DW", 3)]]
);
static IGEMM_TEX_V4_F16: ShaderSource = crate::wgsl!(
    "conv/strip_store_vec4.wgsl", "common/dot4_f16.wgsl", "conv/conv_strip_acc_f16.wgsl",
    "conv/conv_strip_tex.wgsl";
    [[("PX", 8), ("KH", 3), ("KW", 3), ("SH", 1), ("SW", 1), ("DH", 1), ("DW", 1)],
     [("PX", 4), ("KH", 1), ("KW", 1), ("SH", 2), ("SW", 2), ("DH", 1), ("DW", 1)]]
);
static DW_VEC4_F16: ShaderSource = crate::wgsl!(
    "conv/dw_params.wgsl", "conv/dw_vec4_taps_f16.wgsl", "conv/dwconv2d_vec4.wgsl";
    [[("PX", 8), ("PY", 2), ("KH", 3), ("KW", 3), ("SH", 1), ("SW", 1), ("DH", 1), ("DW", 1), ("OFF", 3)],
     [("PX", 16), ("PY", 4), ("KH", 5), ("KW", 5), ("SH", 2), ("SW", 1), ("DH", 1), ("DW", 2), ("OFF", 2)],
     [("PX", 8), ("PY", 1), ("KH", 7), ("KW", 7), ("SH", 1), ("SW", 2), ("DH", 1), ("DW", 1), ("OFF", 0)]]
);

/// The f32 kernel an f16-product kernel mirrors (same fit, bindings, grid and packing) and
/// the f16 source that replaces the twin's; `None` for a kernel that is not an f16 variant.
fn f16_twin(k: ConvKernel) -> Option<(ConvKernel, &'static ShaderSource)> {
    Some(match k {
        ConvKernel::PointwiseF16 { tm, tn4, xtex } => (
            ConvKernel::Pointwise { tm, tn4, xtex },
            if xtex { &PW_F16_TEX } else { &PW_F16_BUF },
        ),
        ConvKernel::ImplicitTexF16 { px, v4 } => (
            ConvKernel::ImplicitTex { px, v4 },
            if v4 {
                &IGEMM_TEX_V4_F16
            } else {
                &IGEMM_TEX_F16
            },
        ),
        ConvKernel::DwVec4F16 { px, py } => (ConvKernel::DwVec4 { px, py }, &DW_VEC4_F16),
        _ => return None,
    })
}

/// The f16-product kernels.
impl Conv2d {
    /// Lowered as the f32 twin (same dispatches, parameters and constants), with the f16
    /// source in the twin's last dispatch (the kernel; earlier ones copy the input).
    fn lower_f16c(&self, kernel: ConvKernel, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        let (twin, file) = f16_twin(kernel).ok_or_else(|| {
            unsupported("conv2d", format!("{} is not an f16 kernel", kernel.name()))
        })?;
        kernel
            .check()
            .map_err(|e| unsupported("conv2d", format!("kernel {}: {e}", kernel.name())))?;
        let mut out = self.lower(&twin, cx)?;
        let last = out.last_mut().ok_or_else(|| {
            unsupported(
                "conv2d",
                format!("the {} lowering made no dispatch", twin.name()),
            )
        })?;
        last.shader = ShaderKey::new(file, &last.shader.consts);
        Ok(out)
    }
}
