//! The op side of the fast CPU kernels: which `crate::cpu` kernel a matmul or conv takes
//! (`OpFamily::cpu_kernel`) and how its operands map onto it (`OpFamily::cpu_fast`). The
//! families' impls call these two functions each; the kernels know nothing of ops.

use super::conv::Conv2d;
use super::matmul::MatMul;
use super::pool::Pool2d;
use super::{CpuCtx, OpFamily};
use crate::cpu::conv::ConvGeom;
use crate::cpu::gemm::{sgemm, Mat};
use crate::error::{Error, Result};
use crate::tensor::{numel, Tensor, ValueType};

/// Matmul: `gemm`'s packed kernels, or the streaming GEMV for one row of A.
pub const GEMM: &str = "cpu-gemm";
/// Matmul with one row of A per batch (memory-bound: dot products or axpy over B).
pub const GEMV: &str = "cpu-gemv";
/// Conv 1x1, stride 1, no padding: one GEMM per image and group on the input as it is.
pub const CONV1X1: &str = "cpu-conv1x1";
/// Any other dense or grouped conv: im2col + GEMM.
pub const IM2COL: &str = "cpu-im2col";
/// Depthwise conv, direct.
pub const DWCONV: &str = "cpu-dwconv";
/// Pooling: the reference's loops, a plane per task over the threads.
pub const POOL: &str = "cpu-pool";
/// Matmul on a sparse constant `[N, K]` weight (any sparse format), read as CSR f32 built once
/// at session build: each output walks its weight row's stored entries only.
pub const SPMM: &str = "cpu-spmm";

fn wrong_kernel(op: &str, kernel: &str) -> Error {
    Error::Unsupported {
        op: op.into(),
        what: format!("CPU kernel '{kernel}'"),
        backend: "cpu".into(),
    }
}

fn f32_inputs<'a>(op: &str, ins: &[&'a Tensor]) -> Result<Vec<&'a [f32]>> {
    ins.iter().map(|t| t.f32s(op)).collect()
}

pub(super) fn matmul_kernel(op: &MatMul, cx: &CpuCtx) -> Option<&'static str> {
    if !cx.f32() {
        return None;
    }
    let sparse = matches!(
        cx.formats.get(1),
        Some(crate::format::WeightFormat::Sparse(_))
    );
    if sparse && cx.is_const[1] && op.trans_b && cx.ins[1].shape.len() == 2 {
        return Some(SPMM);
    }
    let a = &cx.ins[0].shape;
    let m = if op.trans_a {
        a[a.len() - 1]
    } else {
        a[a.len() - 2]
    };
    Some(if m == 1 { GEMV } else { GEMM })
}

pub(super) fn matmul(
    op: &MatMul,
    kernel: &str,
    ins: &[&Tensor],
    out: &ValueType,
) -> Result<Tensor> {
    if kernel == SPMM {
        return spmm(op, ins, out);
    }
    if kernel != GEMM && kernel != GEMV {
        return Err(wrong_kernel("matmul", kernel));
    }
    let xs = f32_inputs("matmul", ins)?;
    let p = op.params(ins[0].shape(), ins[1].shape());
    let u = |v: u32| v as usize;
    let (m, n, k) = (u(p.m), u(p.n), u(p.k));
    let mut c = vec![0.0f32; numel(&out.shape)];
    for bat in 0..u(p.batch) {
        let a = Mat {
            data: &xs[0][bat * u(p.a_bs)..],
            rs: u(p.a_rs),
            cs: u(p.a_ks),
        };
        let b = Mat {
            data: &xs[1][bat * u(p.b_bs)..],
            rs: u(p.b_ks),
            cs: u(p.b_ns),
        };
        sgemm(m, n, k, a, b, &mut c[bat * m * n..][..m * n], n, false)?;
    }
    let bias = op.bias.then(|| xs[2]);
    let res = op.residual.then(|| xs[xs.len() - 1]);
    let act = op.act;
    crate::cpu::epilogue(
        &mut c,
        bias.map(|b| (&b[..n], 1)),
        res,
        &move |v| act.apply(v),
        act == super::Activation::None,
    );
    Tensor::new(&out.shape, c)
}

/// [`SPMM`]: `ins` = A, the weight's CSR row pointers, columns and f32 values
/// ([`super::sparse::cpu_csr`]), then bias and residual as the op has them. Outputs are
/// computed in chunks over the threads; each sums its row's stored entries in column order,
/// as the reference sums the dense row (the pruned terms it adds are exact zeros).
fn spmm(op: &MatMul, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
    use crate::tensor::TensorData;
    let bad = |what: &str| Error::Input(format!("{SPMM}: {what}"));
    if ins.len() < 4 {
        return Err(bad("takes A and the weight's CSR parts"));
    }
    fn i32s(t: &Tensor) -> Option<&[i32]> {
        match t.data() {
            TensorData::I32(v) => Some(v.as_slice()),
            _ => None,
        }
    }
    let i32s = |t| i32s(t).ok_or_else(|| bad("CSR indices must be i32"));
    let (a, ptr, idx, val) = (
        ins[0].f32s("matmul")?,
        i32s(ins[1])?,
        i32s(ins[2])?,
        ins[3].f32s("matmul")?,
    );
    let n = ptr.len().saturating_sub(1);
    let a_shape = ins[0].shape();
    let k = if op.trans_a {
        a_shape[a_shape.len() - 2]
    } else {
        a_shape[a_shape.len() - 1]
    };
    if idx.len() != val.len()
        || ptr.last().map(|&p| p as usize) != Some(val.len())
        || idx.iter().any(|&c| c < 0 || c as usize >= k)
    {
        return Err(bad("CSR parts do not fit together"));
    }
    let p = op.params(a_shape, &[n, k]);
    let u = |v: u32| v as usize;
    let (m, batch) = (u(p.m), u(p.batch));
    let (a_bs, a_rs, a_ks) = (u(p.a_bs), u(p.a_rs), u(p.a_ks));
    let mut c = vec![0.0f32; numel(&out.shape)];
    if c.len() != batch * m * n {
        return Err(bad("output shape does not match"));
    }
    // Chunks of outputs along N (one row of A's outputs split when there is a single row).
    let len = if m == 1 {
        n.div_ceil(crate::cpu::threads() * 4).max(64)
    } else {
        n
    };
    let work = (val.len() / n.max(1)).max(1) * len;
    for bat in 0..batch {
        let cb = &mut c[bat * m * n..(bat + 1) * m * n];
        crate::cpu::par_chunks(cb, len, work, |ci, chunk| {
            for (j, o) in chunk.iter_mut().enumerate() {
                let flat = ci * len + j;
                let (row, col) = (flat / n, flat % n);
                let base = bat * a_bs + row * a_rs;
                let (s, e) = (ptr[col] as usize, ptr[col + 1] as usize);
                let mut acc = 0.0f32;
                for (&ci, &v) in idx[s..e].iter().zip(&val[s..e]) {
                    acc += a[base + ci as usize * a_ks] * v;
                }
                *o = acc;
            }
        });
    }
    let extra: Vec<&[f32]> = ins[4..]
        .iter()
        .map(|t| t.f32s("matmul"))
        .collect::<Result<_>>()?;
    let bias = op.bias.then(|| extra[0]);
    let res = op.residual.then(|| extra[extra.len() - 1]);
    let act = op.act;
    crate::cpu::epilogue(
        &mut c,
        bias.map(|b| (&b[..n], 1)),
        res,
        &move |v| act.apply(v),
        act == super::Activation::None,
    );
    Tensor::new(&out.shape, c)
}

fn geom(op: &Conv2d, x: &[usize], w: &[usize], out: &[usize]) -> ConvGeom {
    let p = op.params(x, w, out);
    let u = |v: u32| v as usize;
    ConvGeom {
        n: u(p.n),
        cin: u(p.cin),
        h: u(p.h),
        w: u(p.w),
        cout: u(p.cout),
        oh: u(p.oh),
        ow: u(p.ow),
        groups: u(p.groups),
        kh: u(p.kh),
        kw: u(p.kw),
        stride: [u(p.stride_h), u(p.stride_w)],
        pad: [u(p.pad_t), u(p.pad_l)],
        dilation: [u(p.dil_h), u(p.dil_w)],
    }
}

pub(super) fn conv_kernel(op: &Conv2d, cx: &CpuCtx) -> Option<&'static str> {
    if !cx.f32() {
        return None;
    }
    let g = geom(op, &cx.ins[0].shape, &cx.ins[1].shape, &cx.out.shape);
    Some(if g.is_depthwise() {
        DWCONV
    } else if g.is_pointwise() {
        CONV1X1
    } else {
        IM2COL
    })
}

pub(super) fn conv(op: &Conv2d, kernel: &str, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
    let xs = f32_inputs("conv2d", ins)?;
    let g = geom(op, ins[0].shape(), ins[1].shape(), &out.shape);
    let mut y = vec![0.0f32; numel(&out.shape)];
    match kernel {
        DWCONV if g.is_depthwise() => crate::cpu::conv::depthwise(&g, xs[0], xs[1], &mut y),
        CONV1X1 | IM2COL => crate::cpu::conv::conv2d(&g, xs[0], xs[1], &mut y)?,
        _ => return Err(wrong_kernel("conv2d", kernel)),
    }
    let bias = op.bias.then(|| xs[2]);
    let res = op.residual.then(|| xs[xs.len() - 1]);
    let act = op.act;
    crate::cpu::epilogue(
        &mut y,
        bias.map(|b| (&b[..g.cout], (g.oh * g.ow).max(1))),
        res,
        &move |v| act.apply(v),
        act == super::Activation::None,
    );
    Tensor::new(&out.shape, y)
}

pub(super) fn pool_kernel(cx: &CpuCtx) -> Option<&'static str> {
    let x = &cx.ins[0].shape;
    (cx.f32() && x.len() == 4 && x[0] * x[1] > 1).then_some(POOL)
}

/// Each plane through the reference's own loops (so the result is the reference's, bit for
/// bit), the planes spread over the threads.
pub(super) fn pool(op: &Pool2d, kernel: &str, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
    if kernel != POOL {
        return Err(wrong_kernel(OpFamily::name(op), kernel));
    }
    let x = ins[0].f32s(OpFamily::name(op))?;
    let (s, o) = (ins[0].shape(), &out.shape);
    let (hw, ohw) = (s[2] * s[3], o[2] * o[3]);
    let plane_in = vec![1, 1, s[2], s[3]];
    let plane_out = [1, 1, o[2], o[3]];
    let taps = op.kernel[0].min(s[2]) * op.kernel[1].min(s[3]);
    let mut y = vec![0.0f32; numel(o)];
    crate::cpu::par_chunks(&mut y, ohw, ohw * taps, |p, yp| {
        let xp = &x[p * hw..][..hw];
        let r = op.cpu_f32(&[xp], std::slice::from_ref(&plane_in), &plane_out);
        yp.copy_from_slice(&r);
    });
    Tensor::new(o, y)
}
