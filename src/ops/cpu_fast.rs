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
