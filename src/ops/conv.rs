//! 2-D convolution, NCHW input, OIHW weights `[cout, cin / groups, kh, kw]`: stride, asymmetric
//! padding, dilation, groups (depthwise when groups == cin == cout), fused bias/residual/act.

use super::{
    check_grid, div_ceil, Activation, Bind, Dispatch, Kernel, LowerCtx, Pack, ShaderFile, ShaderKey,
};
use crate::error::{Error, Result};
use crate::tensor::fmt_shape;
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
    pub(crate) fn infer(&self, ins: &[Vec<usize>]) -> Result<Vec<usize>> {
        let (x, w) = (&ins[0], &ins[1]);
        if x.len() != 4 || w.len() != 4 {
            return Err(Error::shape(
                "conv2d",
                "NCHW input and OIHW weight (rank 4)",
                format!("{} and {}", fmt_shape(x), fmt_shape(w)),
            ));
        }
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
        let cout_g = w[0] / self.groups;
        ConvParams {
            n: x[0] as u32,
            cin: x[1] as u32,
            h: x[2] as u32,
            w: x[3] as u32,
            cout: w[0] as u32,
            oh: out[2] as u32,
            ow: out[3] as u32,
            groups: self.groups as u32,
            kh: w[2] as u32,
            kw: w[3] as u32,
            stride_h: self.stride[0] as u32,
            stride_w: self.stride[1] as u32,
            pad_t: self.pad[0] as u32,
            pad_l: self.pad[1] as u32,
            dil_h: self.dilation[0] as u32,
            dil_w: self.dilation[1] as u32,
            cin_g: (x[1] / self.groups) as u32,
            cout_g: cout_g as u32,
            cout_gp: cout_g.div_ceil(8) as u32 * 8,
            has_bias: self.bias as u32,
            has_res: self.residual as u32,
            _pad: [0; 3],
        }
    }

    /// Depthwise: one input channel per group and one output channel per group.
    pub fn is_depthwise(&self, x: &[usize], w: &[usize]) -> bool {
        self.groups > 1 && self.groups == x[1] && w[0] == x[1]
    }

    pub(crate) fn cpu(
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

    pub(crate) fn lower(&self, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        let (x, w) = (&cx.in_shapes[0], &cx.in_shapes[1]);
        let p = self.params(x, w, cx.out_shape);
        let [bias, res] = super::epilogue_binds(self.bias, self.residual);
        let npix = (p.oh * p.ow) as usize;
        let (shader, wbind, wg) = match cx.kernel {
            Kernel::Naive => {
                let total = p.n as u64 * p.cout as u64 * npix as u64;
                (
                    ShaderKey::new(ShaderFile::ConvNaive, &[]),
                    Bind::Input(1),
                    super::grid_1d(total.div_ceil(64), cx.max_workgroups),
                )
            }
            Kernel::ConvTiled { px } => {
                if !cx.is_const[1] {
                    return Err(Error::Unsupported {
                        op: "conv2d".into(),
                        what: "tiled kernel needs constant weights".into(),
                        backend: "gpu".into(),
                    });
                }
                (
                    ShaderKey::new(ShaderFile::ConvTiled, &[("PX", px)]),
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
            Kernel::ConvTex2 { px } => {
                if !cx.is_const[1] || !matches!(px, 4 | 8) {
                    return Err(Error::Unsupported {
                        op: "conv2d".into(),
                        what: format!(
                            "kernel {} (needs constant weights, px 4 or 8)",
                            cx.kernel.name()
                        ),
                        backend: "gpu".into(),
                    });
                }
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
                        shader: ShaderKey::new(ShaderFile::ConvTex2, &[("PX", px)]),
                        act: self.act,
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
            Kernel::ConvDepthwiseTex2 { px } => {
                if !cx.is_const[1] || !self.is_depthwise(x, w) || !matches!(px, 4 | 8) {
                    return Err(Error::Unsupported {
                        op: "conv2d".into(),
                        what: format!(
                            "kernel {} (needs a depthwise conv with constant weights, px 4 or 8)",
                            cx.kernel.name()
                        ),
                        backend: "gpu".into(),
                    });
                }
                let taps = (p.kh * p.kw) as usize;
                let to_tex = input_to_texture(&p, cx)?;
                let wg = [div_ceil(npix, 64 * px as usize), p.cout, p.n];
                check_grid("conv2d", wg, cx.max_workgroups)?;
                return Ok(vec![
                    to_tex,
                    Dispatch {
                        shader: ShaderKey::new(ShaderFile::ConvDepthwiseTex2, &[("PX", px)]),
                        act: self.act,
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
            Kernel::ConvDepthwise { px } => {
                if !self.is_depthwise(x, w) {
                    return Err(Error::Unsupported {
                        op: "conv2d".into(),
                        what: "depthwise kernel on a non-depthwise conv".into(),
                        backend: "gpu".into(),
                    });
                }
                (
                    ShaderKey::new(ShaderFile::ConvDepthwise, &[("PX", px)]),
                    Bind::Input(1),
                    [div_ceil(npix, 64 * px as usize), p.cout, p.n],
                )
            }
            k => {
                return Err(Error::Unsupported {
                    op: "conv2d".into(),
                    what: format!("kernel {}", k.name()),
                    backend: "gpu".into(),
                })
            }
        };
        check_grid("conv2d", wg, cx.max_workgroups)?;
        Ok(vec![Dispatch {
            shader,
            act: self.act,
            params: bytemuck::cast_slice(&[p]).to_vec(),
            bindings: vec![Bind::Input(0), wbind, bias, res, Bind::Output],
            workgroups: wg,
        }])
    }
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
        shader: ShaderKey::new(ShaderFile::ToTextureR32, &[]),
        act: Activation::None,
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
