//! MatMul / GEMM / Linear: `C = act(op(A) @ op(B) + bias + residual)`, batched.
//!
//! A is `[..batch, M, K]` (`[.., K, M]` with `trans_a`), B is `[K, N]` or `[..batch, K, N]`
//! (`[N, K]` with `trans_b`, the PyTorch `Linear` weight layout). A B without batch dims is
//! shared by every batch. `bias` is `[N]`; `residual` has the output's shape.

use super::{
    check_grid, div_ceil, Activation, Bind, Dispatch, Kernel, LowerCtx, Pack, ShaderFile, ShaderKey,
};
use crate::error::{Error, Result};
use crate::tensor::fmt_shape;
use bytemuck::{Pod, Zeroable};
use serde::{Deserialize, Serialize};

/// Matrix multiplication with an optional fused epilogue.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct MatMul {
    #[serde(default)]
    pub trans_a: bool,
    #[serde(default)]
    pub trans_b: bool,
    /// A third input `[N]` is added to every row.
    #[serde(default)]
    pub bias: bool,
    /// A last input of the output's shape is added before the activation.
    #[serde(default)]
    pub residual: bool,
    #[serde(default)]
    pub act: Activation,
}

/// Uniform parameters of the naive and tiled kernels; the CPU reference reads the same struct.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq)]
pub struct GemmParams {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub batch: u32,
    /// A: batch, row (m) and k strides, in elements.
    pub a_bs: u32,
    pub a_rs: u32,
    pub a_ks: u32,
    /// B: batch, k and column (n) strides.
    pub b_bs: u32,
    pub b_ks: u32,
    pub b_ns: u32,
    pub has_bias: u32,
    pub has_res: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct BcastParams {
    m: u32,
    n: u32,
    k: u32,
    batch: u32,
    a_bs: u32,
    a_rs: u32,
    a_ks: u32,
    b_bs4: u32,
    n4: u32,
    has_bias: u32,
    has_res: u32,
    _p0: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct Vec4Params {
    m: u32,
    n: u32,
    k4: u32,
    batch: u32,
    a_bs4: u32,
    b_bs4: u32,
    has_bias: u32,
    has_res: u32,
}

impl MatMul {
    /// The inner dimension K given A's shape.
    pub fn k(&self, a: &[usize]) -> usize {
        if self.trans_a {
            a[a.len() - 2]
        } else {
            a[a.len() - 1]
        }
    }

    pub(crate) fn infer(&self, ins: &[Vec<usize>]) -> Result<Vec<usize>> {
        let (a, b) = (&ins[0], &ins[1]);
        if a.len() < 2 || b.len() < 2 {
            return Err(Error::shape(
                "matmul",
                "operands of rank >= 2",
                format!("{} and {}", fmt_shape(a), fmt_shape(b)),
            ));
        }
        let (m, k) = if self.trans_a {
            (a[a.len() - 1], a[a.len() - 2])
        } else {
            (a[a.len() - 2], a[a.len() - 1])
        };
        let (kb, n) = if self.trans_b {
            (b[b.len() - 1], b[b.len() - 2])
        } else {
            (b[b.len() - 2], b[b.len() - 1])
        };
        if k != kb {
            return Err(Error::shape(
                "matmul",
                format!("B with K = {k} (A is {})", fmt_shape(a)),
                format!("B of shape {} (K = {kb})", fmt_shape(b)),
            ));
        }
        let a_batch = &a[..a.len() - 2];
        let b_batch = &b[..b.len() - 2];
        if !b_batch.is_empty() && b_batch != a_batch {
            return Err(Error::shape(
                "matmul",
                format!("B batch dims {a_batch:?} or none"),
                format!("{b_batch:?}"),
            ));
        }
        let mut out = a_batch.to_vec();
        out.extend([m, n]);
        super::check_epilogue("matmul", ins, self.bias, self.residual, n, &out)?;
        Ok(out)
    }

    /// Parameters (sizes and strides) for given input shapes.
    pub fn params(&self, a: &[usize], b: &[usize]) -> GemmParams {
        let (ra, rb) = (a.len(), b.len());
        let (m, k) = if self.trans_a {
            (a[ra - 1], a[ra - 2])
        } else {
            (a[ra - 2], a[ra - 1])
        };
        let n = if self.trans_b { b[rb - 2] } else { b[rb - 1] };
        let batch: usize = a[..ra - 2].iter().product();
        let (a_rs, a_ks) = if self.trans_a { (1, m) } else { (k, 1) };
        let (b_ks, b_ns) = if self.trans_b { (1, k) } else { (n, 1) };
        let b_bs = if rb > 2 { k * n } else { 0 };
        GemmParams {
            m: m as u32,
            n: n as u32,
            k: k as u32,
            batch: batch as u32,
            a_bs: (m * k) as u32,
            a_rs: a_rs as u32,
            a_ks: a_ks as u32,
            b_bs: b_bs as u32,
            b_ks: b_ks as u32,
            b_ns: b_ns as u32,
            has_bias: self.bias as u32,
            has_res: self.residual as u32,
        }
    }

    pub(crate) fn cpu(
        &self,
        xs: &[&[f32]],
        shapes: &[Vec<usize>],
        out_shape: &[usize],
    ) -> Vec<f32> {
        let p = self.params(&shapes[0], &shapes[1]);
        let (a, b) = (xs[0], xs[1]);
        let bias = if self.bias { Some(xs[2]) } else { None };
        let res = if self.residual {
            Some(xs[xs.len() - 1])
        } else {
            None
        };
        let (m, n, k) = (p.m as usize, p.n as usize, p.k as usize);
        let mut c = vec![0.0f32; crate::tensor::numel(out_shape)];
        for bat in 0..p.batch as usize {
            let cb = &mut c[bat * m * n..(bat + 1) * m * n];
            for i in 0..m {
                let crow = &mut cb[i * n..(i + 1) * n];
                let a0 = bat * p.a_bs as usize + i * p.a_rs as usize;
                // i-k-j order: the inner loop runs along a row of B when B is not transposed.
                for kk in 0..k {
                    let av = a[a0 + kk * p.a_ks as usize];
                    let b0 = bat * p.b_bs as usize + kk * p.b_ks as usize;
                    for (j, cv) in crow.iter_mut().enumerate() {
                        *cv += av * b[b0 + j * p.b_ns as usize];
                    }
                }
            }
        }
        for (o, v) in c.iter_mut().enumerate() {
            if let Some(bias) = bias {
                *v += bias[o % n];
            }
            if let Some(r) = res {
                *v += r[o];
            }
            *v = self.act.apply(*v);
        }
        c
    }

    /// Whether the vec4 NT kernel can run these operands.
    pub fn vec4_ok(&self, ins: &[Vec<usize>], is_const: &[bool]) -> bool {
        let k = self.k(&ins[0]);
        !self.trans_a && k.is_multiple_of(4) && (self.trans_b || is_const[1])
    }

    pub(crate) fn lower(&self, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        let p = self.params(&cx.in_shapes[0], &cx.in_shapes[1]);
        let [bias, res] = super::epilogue_binds(self.bias, self.residual);
        let (m, n, batch) = (p.m as usize, p.n as usize, p.batch);
        let block_ok = match cx.kernel {
            Kernel::GemmBcast { tm, tn4 } | Kernel::GemmTex { tm, tn4 } => {
                matches!((tm, tn4), (1, 1 | 2 | 4) | (4 | 8, 1 | 2))
            }
            Kernel::GemmTex2 { tm, tn4 } => matches!((tm, tn4), (4 | 8, 1 | 2)),
            _ => true,
        };
        if !block_ok {
            return Err(Error::Unsupported {
                op: "matmul".into(),
                what: format!("block shape of kernel {}", cx.kernel.name()),
                backend: "gpu".into(),
            });
        }
        let (shader, params, b_bind, wg) = match cx.kernel {
            Kernel::Naive => (
                ShaderKey::new(ShaderFile::GemmNaive, &[]),
                bytemuck::cast_slice(&[p]).to_vec(),
                Bind::Input(1),
                [div_ceil(n, 8), div_ceil(m, 8), batch],
            ),
            Kernel::GemmTiled { tm, tn } => (
                ShaderKey::new(ShaderFile::GemmTiled, &[("TM", tm), ("TN", tn)]),
                bytemuck::cast_slice(&[p]).to_vec(),
                Bind::Input(1),
                [
                    div_ceil(n, 8 * tn as usize),
                    div_ceil(m, 8 * tm as usize),
                    batch,
                ],
            ),
            Kernel::GemmVec4 { tm, tn } => {
                if !self.vec4_ok(cx.in_shapes, cx.is_const) {
                    return Err(Error::Unsupported {
                        op: "matmul".into(),
                        what:
                            "vec4 kernel needs K % 4 == 0, no trans_a, and B transposed or constant"
                                .into(),
                        backend: "gpu".into(),
                    });
                }
                let b_bind = if self.trans_b {
                    Bind::Input(1)
                } else {
                    Bind::Packed(1, Pack::TransposeLast2)
                };
                let (wx, wy) = vec4_workgroup(tm);
                let k4 = p.k / 4;
                let v = Vec4Params {
                    m: p.m,
                    n: p.n,
                    k4,
                    batch,
                    a_bs4: p.m * k4,
                    b_bs4: if p.b_bs != 0 { p.n * k4 } else { 0 },
                    has_bias: p.has_bias,
                    has_res: p.has_res,
                };
                (
                    ShaderKey::new(
                        ShaderFile::GemmVec4,
                        &[("TM", tm), ("TN", tn), ("WG_X", wx), ("WG_Y", wy)],
                    ),
                    bytemuck::cast_slice(&[v]).to_vec(),
                    b_bind,
                    [
                        div_ceil(n, (wx * tn) as usize),
                        div_ceil(m, (wy * tm) as usize),
                        batch,
                    ],
                )
            }
            Kernel::GemmTex2 { tm, tn4 } => {
                if !cx.is_const[1] || self.trans_a {
                    return Err(Error::Unsupported {
                        op: "matmul".into(),
                        what: "two-texture kernel needs a constant B and an untransposed A".into(),
                        backend: "gpu".into(),
                    });
                }
                let (n4, k4) = (p.n.div_ceil(4), p.k.div_ceil(4));
                let rows = batch * p.m;
                let to_tex = Dispatch {
                    shader: ShaderKey::new(ShaderFile::ToTexture, &[]),
                    act: Activation::None,
                    params: vec![rows, p.k, k4, 0],
                    bindings: vec![
                        Bind::Input(0),
                        Bind::ScratchStore(0, k4, rows, super::TexFormat::Rgba32F),
                    ],
                    workgroups: [k4.div_ceil(64), rows, 1],
                };
                let params = [
                    p.m,
                    p.n,
                    p.k,
                    batch,
                    k4,
                    if p.b_bs != 0 { p.k } else { 0 },
                    n4,
                    p.has_bias,
                    p.has_res,
                    0,
                    0,
                    0,
                ];
                let wg = [
                    div_ceil(n4 as usize, 64 * tn4 as usize),
                    div_ceil(m, tm as usize),
                    batch,
                ];
                check_grid("matmul", wg, cx.max_workgroups)?;
                check_grid("matmul", to_tex.workgroups, cx.max_workgroups)?;
                return Ok(vec![
                    to_tex,
                    Dispatch {
                        shader: ShaderKey::new(ShaderFile::GemmTex2, &[("TM", tm), ("TN4", tn4)]),
                        act: self.act,
                        params: params.to_vec(),
                        bindings: vec![
                            Bind::ScratchRead(0),
                            Bind::Texture(
                                1,
                                Pack::KnPadded4 {
                                    trans_b: self.trans_b,
                                },
                                n4,
                            ),
                            bias,
                            res,
                            Bind::Output,
                        ],
                        workgroups: wg,
                    },
                ]);
            }
            Kernel::GemmBcast { tm, tn4 } | Kernel::GemmTex { tm, tn4 } => {
                if !cx.is_const[1] {
                    return Err(Error::Unsupported {
                        op: "matmul".into(),
                        what: format!("kernel {} needs a constant B", cx.kernel.name()),
                        backend: "gpu".into(),
                    });
                }
                let n4 = p.n.div_ceil(4);
                let v = BcastParams {
                    m: p.m,
                    n: p.n,
                    k: p.k,
                    batch,
                    a_bs: p.a_bs,
                    a_rs: p.a_rs,
                    a_ks: p.a_ks,
                    // rows of packed B per batch (0: one B shared by all batches)
                    b_bs4: if p.b_bs != 0 { p.k } else { 0 },
                    n4,
                    has_bias: p.has_bias,
                    has_res: p.has_res,
                    _p0: 0,
                };
                let pack = Pack::KnPadded4 {
                    trans_b: self.trans_b,
                };
                let (file, b_bind) = match cx.kernel {
                    Kernel::GemmTex { .. } => (ShaderFile::GemmTex, Bind::Texture(1, pack, n4)),
                    _ => (ShaderFile::GemmBcast, Bind::Packed(1, pack)),
                };
                (
                    ShaderKey::new(file, &[("TM", tm), ("TN4", tn4)]),
                    bytemuck::cast_slice(&[v]).to_vec(),
                    b_bind,
                    [
                        div_ceil(n4 as usize, 64 * tn4 as usize),
                        div_ceil(m, tm as usize),
                        batch,
                    ],
                )
            }
            k => {
                return Err(Error::Unsupported {
                    op: "matmul".into(),
                    what: format!("kernel {}", k.name()),
                    backend: "gpu".into(),
                })
            }
        };
        check_grid("matmul", wg, cx.max_workgroups)?;
        Ok(vec![Dispatch {
            shader,
            act: self.act,
            params,
            bindings: vec![Bind::Input(0), b_bind, bias, res, Bind::Output],
            workgroups: wg,
        }])
    }
}

/// Workgroup shape of the vec4 kernel: 64 columns for GEMV, 8x8 blocks otherwise.
pub fn vec4_workgroup(tm: u32) -> (u32, u32) {
    if tm == 1 {
        (64, 1)
    } else {
        (8, 8)
    }
}

/// Texture extent (width, height) of a constant B for the texture kernel.
pub fn tex_extent(trans_b: bool, b: &[usize]) -> (usize, usize) {
    let r = b.len();
    let (k, n) = if trans_b {
        (b[r - 1], b[r - 2])
    } else {
        (b[r - 2], b[r - 1])
    };
    (n.div_ceil(4), crate::tensor::numel(&b[..r - 2]) * k)
}
