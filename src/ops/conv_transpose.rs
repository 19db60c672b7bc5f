//! 2-D transposed convolution (ONNX `ConvTranspose`), NCHW input, weights
//! `[cin, cout / groups, kh, kw]`: stride, padding (top, left, bottom, right), output padding,
//! dilation, groups, fused bias, residual and activation (`act(acc + bias + residual)`, as conv).
//!
//! Output extent per axis: `stride * (in - 1) + output_padding + dilation * (k - 1) + 1 - pads`.
//! The CPU reference scatters each input into the outputs it reaches; the GPU kernel gathers
//! (each output sums the inputs that reach it), so no two invocations write one output and no
//! atomics are needed, and the two compute the result independently.

use super::{
    check_grid, unsupported, Activation, Bind, Dispatch, KernelVariant, LowerCtx, OpFamily,
    SelectCtx, TuneSlot,
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

/// Transposed convolution attributes (ONNX names: `strides`, `pads`, `output_padding`,
/// `dilations`, `group`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ConvTranspose2d {
    #[serde(default = "one2")]
    pub stride: [usize; 2],
    /// Padding removed from the full output, as (top, left, bottom, right).
    #[serde(default)]
    pub pad: [usize; 4],
    /// Extra rows / columns added at the bottom / right of the output (each smaller than the
    /// stride or the dilation of its axis).
    #[serde(default)]
    pub output_padding: [usize; 2],
    #[serde(default = "one2")]
    pub dilation: [usize; 2],
    #[serde(default = "one")]
    pub groups: usize,
    #[serde(default)]
    pub bias: bool,
    /// A same-shaped value added before the activation (the input after the bias).
    #[serde(default)]
    pub residual: bool,
    #[serde(default)]
    pub act: Activation,
}

impl Default for ConvTranspose2d {
    fn default() -> Self {
        ConvTranspose2d {
            stride: [1, 1],
            pad: [0; 4],
            output_padding: [0, 0],
            dilation: [1, 1],
            groups: 1,
            bias: false,
            residual: false,
            act: Activation::None,
        }
    }
}

/// The GPU kernel of the transposed convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kernel", rename_all = "snake_case")]
pub enum ConvTransposeKernel {
    /// Gather form: an invocation computes 4 output channels x `px` outputs of one row that
    /// share a phase (`ox mod stride`), so they use the same taps and read consecutive inputs.
    Gather { px: u32 },
}

impl Default for ConvTransposeKernel {
    fn default() -> Self {
        ConvTransposeKernel::Gather { px: 4 }
    }
}

impl KernelVariant for ConvTransposeKernel {
    fn name(&self) -> String {
        match *self {
            ConvTransposeKernel::Gather { px } => format!("gather-4x{px}"),
        }
    }

    fn check(&self) -> std::result::Result<(), String> {
        match *self {
            // Named accumulators for up to 4 pixels.
            ConvTransposeKernel::Gather { px: 1 | 2 | 4 } => Ok(()),
            ConvTransposeKernel::Gather { .. } => Err("unsupported pixels per invocation".into()),
        }
    }
}

static CONVT_GATHER: ShaderSource = crate::wgsl!(
    "conv/convt_params.wgsl", "conv/conv_transpose_gather.wgsl";
    [[("PX", 1)], [("PX", 2)], [("PX", 4)]]
);

/// Uniform parameters of the transposed-conv kernel (`shaders/conv/convt_params.wgsl`); the
/// CPU reference reads the same struct.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq)]
pub struct ConvTParams {
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
    pub has_bias: u32,
    /// Blocks of `px` outputs per phase of an output row (set by the lowering).
    pub mblocks: u32,
    /// Blocks of 4 output channels per group.
    pub cblocks: u32,
    pub has_res: u32,
    pub _pad: [u32; 2],
}

impl OpFamily for ConvTranspose2d {
    const FAMILY: &'static str = "conv_transpose2d";
    type Kernel = ConvTransposeKernel;

    fn arity(&self) -> (usize, usize) {
        let n = 2 + self.bias as usize + self.residual as usize;
        (n, n)
    }

    fn infer(&self, ins: &[ValueType]) -> Result<ValueType> {
        self.act.check("conv_transpose2d")?;
        super::float_op("conv_transpose2d", ins, |s| self.shape_of(s))
    }

    fn cpu(&self, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
        super::cpu_f32("conv_transpose2d", ins, out, |xs, shapes| {
            self.cpu_f32(xs, shapes, &out.shape)
        })
    }

    fn select(&self, cx: &SelectCtx) -> Option<ConvTransposeKernel> {
        if !cx.dense_f32() {
            return None;
        }
        let k = cx.tuned::<Self>("convt").unwrap_or_default();
        [k, ConvTransposeKernel::default()]
            .into_iter()
            .find(|k| self.fits(k, cx).is_ok())
    }

    fn fits(&self, k: &ConvTransposeKernel, cx: &SelectCtx) -> std::result::Result<(), String> {
        k.check()?;
        let p = self.params(cx.shape(0), cx.shape(1), &cx.out.shape);
        let ConvTransposeKernel::Gather { px } = *k;
        let max = cx.device.limits.max_compute_workgroups_per_dimension;
        if grid(&p, px).iter().any(|&g| g > max) {
            return Err(format!(
                "kernel {} needs more than {max} workgroups",
                k.name()
            ));
        }
        Ok(())
    }

    fn lower(&self, k: &ConvTransposeKernel, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        k.check()
            .map_err(|e| unsupported("conv_transpose2d", format!("kernel {}: {e}", k.name())))?;
        let ConvTransposeKernel::Gather { px } = *k;
        let mut p = self.params(&cx.in_shapes[0], &cx.in_shapes[1], cx.out_shape);
        p.mblocks = p.ow.div_ceil(p.stride_w).div_ceil(px);
        let wg = grid(&p, px);
        check_grid("conv_transpose2d", wg, cx.max_workgroups)?;
        let [bias, res] = super::epilogue_binds(self.bias, self.residual);
        Ok(vec![Dispatch {
            shader: ShaderKey::new(&CONVT_GATHER, &[("PX", px)]),
            overrides: self.act.overrides(),
            params: bytemuck::cast_slice(&[p]).to_vec(),
            bindings: vec![Bind::Input(0), Bind::Input(1), bias, res, Bind::Output],
            workgroups: wg,
        }])
    }

    fn tune_slots() -> Vec<TuneSlot> {
        let op = ConvTranspose2d {
            stride: [2, 2],
            ..Default::default()
        };
        let cands = [1, 2, 4]
            .map(|px| ConvTransposeKernel::Gather { px })
            .to_vec();
        vec![TuneSlot::new(
            "convt",
            cands,
            op,
            vec![(vec![1, 32, 20, 20], false), (vec![32, 16, 2, 2], true)],
        )]
    }

    fn shaders() -> Vec<&'static ShaderSource> {
        vec![&CONVT_GATHER]
    }

    fn epilogue_act(&mut self) -> Option<&mut Activation> {
        Some(&mut self.act)
    }

    /// Every input meets `cout / groups * kh * kw` weights (taps that land in the cropped
    /// padding included).
    fn flops(&self, ins: &[ValueType], _out: &ValueType) -> u64 {
        let w = &ins[1].shape;
        let per_input = crate::tensor::numel(&w[1..]) as u64;
        (crate::tensor::numel(&ins[0].shape) as u64)
            .saturating_mul(per_input)
            .saturating_mul(2)
    }
}

/// Workgroups: 64 invocations along (output row, phase, block of `px`), channel blocks of 4
/// per group, batch.
fn grid(p: &ConvTParams, px: u32) -> [u32; 3] {
    let mblocks = p.ow.div_ceil(p.stride_w.max(1)).div_ceil(px.max(1)) as u64;
    let x = (p.oh as u64 * p.stride_w as u64 * mblocks).div_ceil(64);
    [
        x.min(u32::MAX as u64) as u32,
        p.groups.saturating_mul(p.cblocks),
        p.n,
    ]
}

impl ConvTranspose2d {
    pub(crate) fn shape_of(&self, ins: &[Vec<usize>]) -> Result<Vec<usize>> {
        const OP: &str = "conv_transpose2d";
        let (x, w) = (&ins[0], &ins[1]);
        if x.len() != 4 || w.len() != 4 {
            return Err(Error::shape(
                OP,
                "NCHW input and [cin, cout / groups, kh, kw] weight (rank 4)",
                format!("{} and {}", fmt_shape(x), fmt_shape(w)),
            ));
        }
        super::attrs_u32(OP, "stride", &self.stride)?;
        super::attrs_u32(OP, "pad", &self.pad)?;
        super::attrs_u32(OP, "output_padding", &self.output_padding)?;
        super::attrs_u32(OP, "dilation", &self.dilation)?;
        super::attr_u32(OP, "groups", self.groups)?;
        let g = self.groups;
        if g == 0 || x[1] % g != 0 {
            return Err(Error::shape(
                OP,
                format!("input channels divisible by groups = {g}"),
                format!("cin {}", x[1]),
            ));
        }
        if w[0] != x[1] {
            return Err(Error::shape(
                format!("{OP} weight"),
                format!("[{}, cout / groups, kh, kw] (cin first)", x[1]),
                fmt_shape(w),
            ));
        }
        if self.stride.contains(&0) || self.dilation.contains(&0) {
            return Err(Error::graph(format!(
                "{OP}: stride and dilation must be >= 1"
            )));
        }
        for i in 0..2 {
            let (op, s, d) = (self.output_padding[i], self.stride[i], self.dilation[i]);
            if op >= s.max(d) {
                return Err(Error::graph(format!(
                    "{OP}: output_padding[{i}] = {op} must be smaller than stride[{i}] = {s} or \
                     dilation[{i}] = {d}"
                )));
            }
        }
        if w[1] == 0 || w[2] == 0 || w[3] == 0 {
            return Err(Error::shape(
                format!("{OP} weight"),
                "non-empty [cin, cout / groups, kh, kw]",
                fmt_shape(w),
            ));
        }
        // Full extent before cropping, in u128 so absurd attributes are an error, not a wrap.
        let full = |n: usize, k: usize, s: usize, d: usize, op: usize| -> u128 {
            (s as u128) * (n as u128).saturating_sub(1)
                + op as u128
                + (d as u128) * (k as u128 - 1)
                + 1
        };
        let fh = full(
            x[2],
            w[2],
            self.stride[0],
            self.dilation[0],
            self.output_padding[0],
        );
        let fw = full(
            x[3],
            w[3],
            self.stride[1],
            self.dilation[1],
            self.output_padding[1],
        );
        let crop_h = self.pad[0] as u128 + self.pad[2] as u128;
        let crop_w = self.pad[1] as u128 + self.pad[3] as u128;
        if fh <= crop_h || fw <= crop_w {
            return Err(Error::shape(
                OP,
                format!("pads smaller than the full output {fh}x{fw}"),
                format!("pads {:?}", self.pad),
            ));
        }
        let (oh, ow) = (fh - crop_h, fw - crop_w);
        // Kernels compute `oy + pad_t` and `ox + pad_l` in signed 32-bit arithmetic.
        super::check_i32_extent(
            OP,
            "full output height",
            fh.min(usize::MAX as u128) as usize,
        )?;
        super::check_i32_extent(OP, "full output width", fw.min(usize::MAX as u128) as usize)?;
        let cout = w[1]
            .checked_mul(g)
            .ok_or_else(|| Error::graph(format!("{OP}: output channels overflow")))?;
        super::attr_u32(OP, "output channels", cout)?;
        let out = vec![x[0], cout, oh as usize, ow as usize];
        super::check_epilogue(OP, ins, self.bias, self.residual, cout, &out)?;
        Ok(out)
    }

    /// Kernel parameters (every value was checked to fit 32 bits by `shape_of`).
    pub fn params(&self, x: &[usize], w: &[usize], out: &[usize]) -> ConvTParams {
        use super::word;
        let groups = self.groups.max(1);
        let cout_g = w[1];
        ConvTParams {
            n: word(x[0]),
            cin: word(x[1]),
            h: word(x[2]),
            w: word(x[3]),
            cout: word(out[1]),
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
            has_bias: self.bias as u32,
            mblocks: 0,
            cblocks: word(cout_g.div_ceil(4)),
            has_res: self.residual as u32,
            _pad: [0; 2],
        }
    }

    /// Scatter form: each input adds `x * w` to every output its taps reach.
    fn cpu_f32(&self, xs: &[&[f32]], shapes: &[Vec<usize>], out_shape: &[usize]) -> Vec<f32> {
        let p = self.params(&shapes[0], &shapes[1], out_shape);
        let u = |v: u32| v as usize;
        let (h, w, oh, ow) = (u(p.h), u(p.w), u(p.oh), u(p.ow));
        let (kh, kw, cout_g, cin_g) = (u(p.kh), u(p.kw), u(p.cout_g), u(p.cin_g));
        let (x, wt) = (xs[0], xs[1]);
        let mut y = vec![0.0f32; crate::tensor::numel(out_shape)];
        for b in 0..u(p.n) {
            for ci in 0..u(p.cin) {
                let g = ci / cin_g;
                let plane = &x[(b * u(p.cin) + ci) * h * w..][..h * w];
                for co in 0..cout_g {
                    let oc = g * cout_g + co;
                    let out = &mut y[(b * u(p.cout) + oc) * oh * ow..][..oh * ow];
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let wv = wt[((ci * cout_g + co) * kh + ky) * kw + kx];
                            for iy in 0..h {
                                let oy = (iy * u(p.stride_h) + ky * u(p.dil_h)) as isize
                                    - p.pad_t as isize;
                                if oy < 0 || oy >= oh as isize {
                                    continue;
                                }
                                let orow = &mut out[oy as usize * ow..][..ow];
                                for ix in 0..w {
                                    let ox = (ix * u(p.stride_w) + kx * u(p.dil_w)) as isize
                                        - p.pad_l as isize;
                                    if ox >= 0 && ox < ow as isize {
                                        orow[ox as usize] += wv * plane[iy * w + ix];
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        // The epilogue in conv's order: act(acc + bias + residual).
        let bias = self.bias.then(|| xs[2]);
        let res = self.residual.then(|| xs[xs.len() - 1]);
        let plane = oh * ow;
        for (o, v) in y.iter_mut().enumerate() {
            if let Some(bias) = bias {
                *v += bias[(o / plane) % u(p.cout)];
            }
            if let Some(res) = res {
                *v += res[o];
            }
            *v = self.act.apply(*v);
        }
        y
    }
}
