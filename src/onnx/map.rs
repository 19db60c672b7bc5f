//! One mapping function per ONNX op type onto wgedge ops. Adding an op: one arm in [`map`]
//! and its function. Each function returns the node's outputs (in order) or what is missing
//! (`Err`: an attribute value, a dtype, a non-constant argument), which import collects with
//! every other problem into one error.

use super::{Ctx, NodeIn, Val};
use crate::ops::{
    Activation, BatchNorm, Binary, BinaryKind, Cast, Concat, Conv2d, ConvTranspose2d,
    GlobalAvgPool, LayerNorm, MatMul, Op, Pool2d, PoolKind, Transpose, Unary,
};
use crate::tensor::{numel, DType, Tensor};

type R = std::result::Result<Vec<Val>, String>;

/// Maps one node (not constant-folded) onto wgedge nodes.
pub(super) fn map(cx: &mut Ctx, n: &NodeIn) -> R {
    match n.op_type {
        "Conv" => conv(cx, n),
        "ConvTranspose" => conv_transpose(cx, n),
        "MaxPool" => pool(cx, n, PoolKind::Max),
        "AveragePool" => pool(cx, n, PoolKind::Avg),
        "GlobalAveragePool" => global_avg_pool(cx, n),
        "Gemm" => gemm(cx, n),
        "MatMul" => matmul(cx, n),
        "Add" => binary(cx, n, BinaryKind::Add),
        "Sub" => binary(cx, n, BinaryKind::Sub),
        "Mul" => binary(cx, n, BinaryKind::Mul),
        "Div" => binary(cx, n, BinaryKind::Div),
        "Sum" => variadic(cx, n, false),
        "Mean" => variadic(cx, n, true),
        "Relu" => unary(cx, n, Activation::Relu),
        "Sigmoid" => unary(cx, n, Activation::Sigmoid),
        "Tanh" => unary(cx, n, Activation::Tanh),
        "HardSwish" => unary(cx, n, Activation::Hardswish),
        "LeakyRelu" => {
            let alpha = n.attrs.float("alpha", 0.01);
            unary(cx, n, Activation::LeakyRelu { alpha })
        }
        "HardSigmoid" => hard_sigmoid(cx, n),
        "Gelu" => gelu(cx, n),
        "Clip" => clip(cx, n),
        // Private op of the import rewrites (x * sigmoid(x)).
        "Silu" => unary(cx, n, Activation::Silu),
        "Softmax" => softmax(cx, n),
        "LayerNormalization" => layer_norm(cx, n),
        "BatchNormalization" => batch_norm(cx, n),
        "Reshape" => reshape(cx, n),
        "Flatten" => flatten(cx, n),
        "Squeeze" => squeeze(cx, n, false),
        "Unsqueeze" => squeeze(cx, n, true),
        "Transpose" => transpose(cx, n),
        "Concat" => concat(cx, n),
        "Cast" => cast(cx, n),
        other => super::map_elem::map(cx, n)
            .or_else(|| super::map_move::map(cx, n))
            .or_else(|| super::map_quant::map(cx, n))
            .unwrap_or_else(|| Err(format!("op type {other} is not supported"))),
    }
}

/// Identity and Dropout (inference): the output is the input.
pub(super) fn passthrough(n: &NodeIn) -> R {
    let x = n.input(0)?.clone();
    if n.op_type == "Dropout" {
        if let Some(t) = n.opt(2) {
            match &t.konst {
                Some(k) if super::tensor::i64s(k).iter().all(|&v| v == 0) => {}
                _ => return Err("training_mode is not a constant false".into()),
            }
        }
        if n.opset < 7 && n.attrs.int("is_test", 0) == 0 {
            return Err("is_test = 0 (training mode)".into());
        }
    }
    // A Dropout mask output nobody reads is fine; one that is read is reported by import.
    Ok(vec![x])
}

fn f32_only(_n: &NodeIn, v: &Val, what: &str) -> std::result::Result<(), String> {
    if v.ty.dtype != DType::F32 {
        return Err(format!(
            "{what} '{}' has dtype {} (this op runs on f32)",
            v.name, v.ty.dtype
        ));
    }
    Ok(())
}

fn scalar_f32(v: f32) -> Tensor {
    Tensor::new(&[], vec![v]).expect("scalar")
}

fn norm_axis(axis: i64, rank: usize) -> std::result::Result<usize, String> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    if a < 0 || a >= rank.max(1) as i64 {
        return Err(format!("axis {axis} is out of range for rank {rank}"));
    }
    Ok(a as usize)
}

fn unary(cx: &mut Ctx, n: &NodeIn, act: Activation) -> R {
    let x = n.input(0)?;
    f32_only(n, x, "input")?;
    Ok(vec![cx.emit(Op::Unary(Unary { act }), &[x], n.out())?])
}

/// `clamp(alpha x + beta, 0, 1)`: PyTorch's form (alpha 1/6, beta 1/2) is wgedge's
/// `hardsigmoid`, any other the two-parameter `hard_sigmoid_ab` (both fusable).
fn hard_sigmoid(cx: &mut Ctx, n: &NodeIn) -> R {
    let alpha = n.attrs.float("alpha", 0.2);
    let beta = n.attrs.float("beta", 0.5);
    if (alpha - 1.0 / 6.0).abs() <= 1e-7 && beta == 0.5 {
        return unary(cx, n, Activation::Hardsigmoid);
    }
    unary(cx, n, Activation::HardSigmoidAb { alpha, beta })
}

/// Gelu: `approximate = "none"` (the default) is the exact erf form, "tanh" the tanh one.
fn gelu(cx: &mut Ctx, n: &NodeIn) -> R {
    match n.attrs.string("approximate").as_deref().unwrap_or("none") {
        "none" => unary(cx, n, Activation::GeluErf),
        "tanh" => unary(cx, n, Activation::Gelu),
        other => Err(format!(
            "approximate = '{other}' (ONNX defines none and tanh)"
        )),
    }
}

/// Clip with attribute or input bounds, any numeric dtype (`map_elem::clip`).
fn clip(cx: &mut Ctx, n: &NodeIn) -> R {
    super::map_elem::clip(cx, n)
}

fn binary(cx: &mut Ctx, n: &NodeIn, kind: BinaryKind) -> R {
    let (a, b) = (n.input(0)?, n.input(1)?);
    if n.opset < 7 && n.attrs.int("broadcast", 0) != 0 && n.attrs.has("axis") {
        return Err("legacy broadcast with axis".into());
    }
    // ONNX dtype rules (integers wrap, f16 through f32) live in `map_elem::binary`.
    Ok(vec![super::map_elem::binary(cx, kind, a, b, n.out())?])
}

/// Sum and Mean as chains of binary adds (Mean then scales by 1/n).
fn variadic(cx: &mut Ctx, n: &NodeIn, mean: bool) -> R {
    super::map_elem::variadic_chain(cx, n, BinaryKind::Add, mean)
}

/// Explicit (begin..., end...) pads of one spatial axis set from `pads`/`auto_pad`.
fn spatial_pads(
    n: &NodeIn,
    input: &[usize],
    kernel: &[usize],
    stride: &[usize],
    dilation: &[usize],
) -> std::result::Result<Vec<usize>, String> {
    let r = input.len();
    let auto = n
        .attrs
        .string("auto_pad")
        .unwrap_or_else(|| "NOTSET".into());
    match auto.as_str() {
        "NOTSET" => {
            let p = n.attrs.ints("pads").unwrap_or_else(|| vec![0; 2 * r]);
            if p.len() != 2 * r || p.iter().any(|&v| v < 0) {
                return Err(format!("pads {p:?} (need {} values >= 0)", 2 * r));
            }
            Ok(p.iter().map(|&v| v as usize).collect())
        }
        "VALID" => Ok(vec![0; 2 * r]),
        "SAME_UPPER" | "SAME_LOWER" => {
            let mut p = vec![0; 2 * r];
            for i in 0..r {
                let out = input[i].div_ceil(stride[i]);
                let span = (kernel[i] - 1) * dilation[i] + 1;
                let total = ((out - 1) * stride[i] + span).saturating_sub(input[i]);
                let small = total / 2;
                let (b, e) = if auto == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                };
                p[i] = b;
                p[i + r] = e;
            }
            Ok(p)
        }
        other => Err(format!("auto_pad = '{other}'")),
    }
}

fn usizes(
    n: &NodeIn,
    name: &str,
    len: usize,
    default: usize,
) -> std::result::Result<Vec<usize>, String> {
    match n.attrs.ints(name) {
        None => Ok(vec![default; len]),
        Some(v) if v.len() == len && v.iter().all(|&x| x >= 1) => {
            Ok(v.iter().map(|&x| x as usize).collect())
        }
        Some(v) => Err(format!("{name} = {v:?} (need {len} values >= 1)")),
    }
}

/// 1-D convs and pools run as 2-D ones over a height of 1.
fn as_2d(cx: &mut Ctx, n: &NodeIn, x: &Val) -> std::result::Result<(Val, bool), String> {
    match x.rank() {
        4 => Ok((x.clone(), false)),
        3 => {
            let s = x.shape();
            let out = cx.fresh(n.out());
            Ok((cx.reshape(x, &[s[0], s[1], 1, s[2]], &out)?, true))
        }
        r => Err(format!(
            "input of rank {r} ({}-D); wgedge runs 1-D and 2-D convs and pools",
            r.saturating_sub(2)
        )),
    }
}

fn lift1(v: Vec<usize>, one_d: bool, fill: usize) -> Vec<usize> {
    if one_d {
        let mut w = vec![fill];
        w.extend(v);
        w
    } else {
        v
    }
}

fn pads_1d(p: Vec<usize>, one_d: bool) -> [usize; 4] {
    if one_d {
        [0, p[0], 0, p[1]]
    } else {
        [p[0], p[1], p[2], p[3]]
    }
}

fn finish_1d(cx: &mut Ctx, n: &NodeIn, y: Val, one_d: bool) -> R {
    if one_d {
        let s = y.shape().to_vec();
        return Ok(vec![cx.reshape(&y, &[s[0], s[1], s[3]], n.out())?]);
    }
    Ok(vec![y])
}

fn conv(cx: &mut Ctx, n: &NodeIn) -> R {
    let (x, w) = (n.input(0)?, n.input(1)?);
    f32_only(n, x, "input X")?;
    f32_only(n, w, "weight W")?;
    let (x2, one_d) = as_2d(cx, n, x)?;
    if w.rank() != x.rank() {
        return Err(format!(
            "weight of rank {} for input of rank {}",
            w.rank(),
            x.rank()
        ));
    }
    let sp = x.rank() - 2;
    let kernel = w.shape()[2..].to_vec();
    let stride = usizes(n, "strides", sp, 1)?;
    let dilation = usizes(n, "dilations", sp, 1)?;
    let pads = spatial_pads(n, &x.shape()[2..], &kernel, &stride, &dilation)?;
    let group = n.attrs.int("group", 1);
    if group < 1 {
        return Err(format!("group = {group}"));
    }
    let w2 = if one_d {
        let s = w.shape();
        let name = cx.fresh(&w.name);
        cx.reshape(w, &[s[0], s[1], 1, s[2]], &name)?
    } else {
        w.clone()
    };
    let stride = lift1(stride, one_d, 1);
    let dilation = lift1(dilation, one_d, 1);
    let c = Conv2d {
        stride: [stride[0], stride[1]],
        pad: pads_1d(pads, one_d),
        dilation: [dilation[0], dilation[1]],
        groups: group as usize,
        bias: n.opt(2).is_some(),
        ..Default::default()
    };
    let mut ins = vec![&x2, &w2];
    if let Some(b) = n.opt(2) {
        f32_only(n, b, "bias B")?;
        ins.push(b);
    }
    let out = if one_d {
        cx.fresh(n.out())
    } else {
        n.out().to_string()
    };
    let y = cx.emit(Op::Conv2d(c), &ins, &out)?;
    finish_1d(cx, n, y, one_d)
}

fn conv_transpose(cx: &mut Ctx, n: &NodeIn) -> R {
    let (x, w) = (n.input(0)?, n.input(1)?);
    f32_only(n, x, "input X")?;
    f32_only(n, w, "weight W")?;
    if x.rank() != 4 || w.rank() != 4 {
        return Err(format!(
            "input of rank {} (wgedge runs 2-D transposed convs)",
            x.rank()
        ));
    }
    let kernel = w.shape()[2..].to_vec();
    let stride = usizes(n, "strides", 2, 1)?;
    let dilation = usizes(n, "dilations", 2, 1)?;
    let out_pad = match n.attrs.ints("output_padding") {
        None => vec![0, 0],
        Some(v) if v.len() == 2 && v.iter().all(|&p| p >= 0) => {
            v.iter().map(|&p| p as usize).collect()
        }
        Some(v) => return Err(format!("output_padding = {v:?}")),
    };
    let group = n.attrs.int("group", 1);
    if group < 1 {
        return Err(format!("group = {group}"));
    }
    let auto = n
        .attrs
        .string("auto_pad")
        .unwrap_or_else(|| "NOTSET".into());
    let in_hw = &x.shape()[2..];
    let target: Option<Vec<usize>> = match n.attrs.ints("output_shape") {
        Some(s) => {
            let s: Vec<usize> = s.iter().map(|&d| d.max(0) as usize).collect();
            Some(s[s.len().saturating_sub(2)..].to_vec())
        }
        None if auto.starts_with("SAME") => Some(vec![in_hw[0] * stride[0], in_hw[1] * stride[1]]),
        None => None,
    };
    let mut out_pad = out_pad;
    let pads = match target {
        Some(t) => {
            let mut p = vec![0; 4];
            for i in 0..2 {
                let full =
                    stride[i] * (in_hw[i] - 1) + out_pad[i] + (kernel[i] - 1) * dilation[i] + 1;
                // A target beyond the full output grows it at the end (as output_padding).
                if t[i] > full {
                    out_pad[i] += t[i] - full;
                    continue;
                }
                let total = full - t[i];
                let half = total / 2;
                if auto == "SAME_UPPER" {
                    p[i] = half;
                    p[i + 2] = total - half;
                } else {
                    p[i] = total - half;
                    p[i + 2] = half;
                }
            }
            p
        }
        None if auto == "VALID" || auto == "NOTSET" => {
            spatial_pads(n, in_hw, &kernel, &stride, &dilation)?
        }
        None => return Err(format!("auto_pad = '{auto}'")),
    };
    let c = ConvTranspose2d {
        stride: [stride[0], stride[1]],
        pad: [pads[0], pads[1], pads[2], pads[3]],
        output_padding: [out_pad[0], out_pad[1]],
        dilation: [dilation[0], dilation[1]],
        groups: group as usize,
        bias: n.opt(2).is_some(),
        residual: false,
        act: Activation::None,
    };
    let mut ins = vec![x, w];
    if let Some(b) = n.opt(2) {
        ins.push(b);
    }
    Ok(vec![cx.emit(Op::ConvTranspose2d(c), &ins, n.out())?])
}

fn pool(cx: &mut Ctx, n: &NodeIn, kind: PoolKind) -> R {
    let x = n.input(0)?;
    f32_only(n, x, "input X")?;
    let (x2, one_d) = as_2d(cx, n, x)?;
    let sp = x.rank() - 2;
    let kernel = n
        .attrs
        .ints("kernel_shape")
        .ok_or("kernel_shape is missing")?;
    if kernel.len() != sp || kernel.iter().any(|&k| k < 1) {
        return Err(format!("kernel_shape = {kernel:?}"));
    }
    let kernel: Vec<usize> = kernel.iter().map(|&k| k as usize).collect();
    let stride = usizes(n, "strides", sp, 1)?;
    let dilation = usizes(n, "dilations", sp, 1)?;
    let ceil = n.attrs.int("ceil_mode", 0) != 0;
    let include_pad = n.attrs.int("count_include_pad", 0) != 0;
    if dilation.iter().any(|&d| d != 1) || (ceil && kind == PoolKind::Avg && include_pad) {
        // The ONNX `Pool` op has dilation and ceil mode itself; `Pool2d` (which has the fast
        // CPU kernel) serves the common undilated case.
        return super::map_move::onnx_pool(cx, n, kind);
    }
    let mut pads = spatial_pads(n, &x.shape()[2..], &kernel, &stride, &dilation)?;
    if ceil {
        // Ceil mode: extra end padding that only the last window sees. Max pooling ignores
        // padding and average pooling without count_include_pad excludes it, so both equal
        // ONNX; with count_include_pad the extra cells would be counted.
        for i in 0..sp {
            let len = x.shape()[2 + i] + pads[i] + pads[i + sp];
            if len < kernel[i] {
                return Err("kernel larger than the padded input".into());
            }
            let mut out = (len - kernel[i]).div_ceil(stride[i]) + 1;
            // The last window must start inside the input or its begin padding.
            if (out - 1) * stride[i] >= x.shape()[2 + i] + pads[i] {
                out -= 1;
            }
            let need = (out - 1) * stride[i] + kernel[i];
            if need > len {
                pads[i + sp] += need - len;
            }
        }
    }
    if n.opt(0).is_some() && n.outputs.len() > 1 && !n.outputs[1].is_empty() {
        // MaxPool's Indices: reported by import if something reads it.
    }
    let kernel = lift1(kernel, one_d, 1);
    let stride = lift1(stride, one_d, 1);
    let p = Pool2d {
        kind,
        kernel: [kernel[0], kernel[1]],
        stride: [stride[0], stride[1]],
        pad: pads_1d(pads, one_d),
        count_include_pad: include_pad,
    };
    let out = if one_d {
        cx.fresh(n.out())
    } else {
        n.out().to_string()
    };
    let y = cx.emit(Op::Pool2d(p), &[&x2], &out)?;
    finish_1d(cx, n, y, one_d)
}

fn global_avg_pool(cx: &mut Ctx, n: &NodeIn) -> R {
    let x = n.input(0)?;
    f32_only(n, x, "input X")?;
    let (x2, one_d) = as_2d(cx, n, x)?;
    let out = if one_d {
        cx.fresh(n.out())
    } else {
        n.out().to_string()
    };
    let y = cx.emit(Op::GlobalAvgPool(GlobalAvgPool {}), &[&x2], &out)?;
    finish_1d(cx, n, y, one_d)
}

fn scaled(cx: &mut Ctx, base: &str, v: &Val, k: f32) -> std::result::Result<Val, String> {
    if k == 1.0 {
        return Ok(v.clone());
    }
    let s = cx.konst(base, scalar_f32(k));
    let out = cx.fresh(base);
    cx.emit(
        Op::Binary(Binary {
            kind: BinaryKind::Mul,
            act: Activation::None,
        }),
        &[v, &s],
        &out,
    )
}

/// Gemm: `alpha * A' B' + beta * C`. Scales fold into constant operands; a C of shape [N]
/// (or [1, N]) becomes the matmul's bias, any other broadcastable C a following add.
fn gemm(cx: &mut Ctx, n: &NodeIn) -> R {
    let (a, b) = (n.input(0)?, n.input(1)?);
    f32_only(n, a, "input A")?;
    f32_only(n, b, "input B")?;
    if a.rank() != 2 || b.rank() != 2 {
        return Err(format!(
            "operands of rank {} and {} (Gemm takes 2-D)",
            a.rank(),
            b.rank()
        ));
    }
    let alpha = n.attrs.float("alpha", 1.0);
    let beta = n.attrs.float("beta", 1.0);
    let trans_a = n.attrs.int("transA", 0) != 0;
    let trans_b = n.attrs.int("transB", 0) != 0;
    let ncols = if trans_b { b.shape()[0] } else { b.shape()[1] };
    // alpha on the constant operand when there is one (weights), else on the product.
    let (b_s, post_alpha) = if b.konst.is_some() {
        (scaled(cx, n.out(), b, alpha)?, 1.0)
    } else {
        (b.clone(), alpha)
    };
    let c = n.opt(2).filter(|_| beta != 0.0);
    let mut bias = None;
    let mut late_c = None;
    if let Some(c) = c {
        f32_only(n, c, "input C")?;
        let c_s = scaled(cx, n.out(), c, beta)?;
        let row = c.shape() == [ncols] || c.shape() == [1, ncols];
        if row && post_alpha == 1.0 {
            let o = cx.fresh(n.out());
            bias = Some(cx.reshape(&c_s, &[ncols], &o)?);
        } else {
            late_c = Some(c_s);
        }
    }
    let mm = MatMul {
        trans_a,
        trans_b,
        bias: bias.is_some(),
        ..Default::default()
    };
    let mut ins = vec![a, &b_s];
    if let Some(bv) = &bias {
        ins.push(bv);
    }
    let last = post_alpha == 1.0 && late_c.is_none();
    let out = if last {
        n.out().to_string()
    } else {
        cx.fresh(n.out())
    };
    let mut y = cx.emit(Op::MatMul(mm), &ins, &out)?;
    if post_alpha != 1.0 {
        let s = cx.konst(n.out(), scalar_f32(post_alpha));
        let out = if late_c.is_none() {
            n.out().to_string()
        } else {
            cx.fresh(n.out())
        };
        y = cx.emit(
            Op::Binary(Binary {
                kind: BinaryKind::Mul,
                act: Activation::None,
            }),
            &[&y, &s],
            &out,
        )?;
    }
    if let Some(c) = late_c {
        y = cx.emit(
            Op::Binary(Binary {
                kind: BinaryKind::Add,
                act: Activation::None,
            }),
            &[&y, &c],
            n.out(),
        )?;
    }
    Ok(vec![y])
}

/// MatMul with numpy semantics: 1-D operands get a unit dim that is removed afterwards.
fn matmul(cx: &mut Ctx, n: &NodeIn) -> R {
    let (a, b) = (n.input(0)?, n.input(1)?);
    f32_only(n, a, "input A")?;
    f32_only(n, b, "input B")?;
    let y = numpy_matmul(cx, n, a, b, n.out(), |cx, a2, b2, out| {
        // B's batch dims all 1 broadcast over A's: B as one matrix, the kernels' shared-B
        // form. Other batch broadcasting is the MatMul op's own (numpy rules).
        let b2 = if b2.rank() > 2
            && a2.rank() >= b2.rank()
            && b2.shape()[..b2.rank() - 2].iter().all(|&d| d == 1)
        {
            let s = b2.shape()[b2.rank() - 2..].to_vec();
            let o = cx.fresh(n.out());
            cx.reshape(b2, &s, &o)?
        } else {
            b2.clone()
        };
        cx.emit(Op::MatMul(MatMul::default()), &[a2, &b2], out)
    })?;
    Ok(vec![y])
}

/// numpy matmul's rule for 1-D operands around a batched `product`: a 1-D A gets a leading
/// unit dim and a 1-D B a trailing one, `product(cx, a2, b2, name)` multiplies them, and the
/// unit dims are removed again. The result is named `out`.
pub(super) fn numpy_matmul(
    cx: &mut Ctx,
    n: &NodeIn,
    a: &Val,
    b: &Val,
    out: &str,
    product: impl FnOnce(&mut Ctx, &Val, &Val, &str) -> std::result::Result<Val, String>,
) -> std::result::Result<Val, String> {
    let (ra, rb) = (a.rank(), b.rank());
    if ra == 0 || rb == 0 {
        return Err("scalar operand".into());
    }
    let a2 = if ra == 1 {
        let o = cx.fresh(n.out());
        cx.reshape(a, &[1, a.shape()[0]], &o)?
    } else {
        a.clone()
    };
    let b2 = if rb == 1 {
        let o = cx.fresh(n.out());
        cx.reshape(b, &[b.shape()[0], 1], &o)?
    } else {
        b.clone()
    };
    if ra > 1 && rb > 1 {
        return product(cx, &a2, &b2, out);
    }
    let o = cx.fresh(n.out());
    let y = product(cx, &a2, &b2, &o)?;
    let mut s = y.shape().to_vec();
    let r = s.len();
    if rb == 1 {
        s.remove(r - 1);
    }
    if ra == 1 {
        s.remove(r - 2);
    }
    cx.reshape(&y, &s, out)
}

/// Softmax; before opset 13 the input is coerced to 2-D at `axis` (default 1).
fn softmax(cx: &mut Ctx, n: &NodeIn) -> R {
    super::map_elem::softmax(cx, n, false)
}

/// Broadcasts a constant to `shape` (scale/bias given with fewer dims).
fn const_to(
    cx: &mut Ctx,
    base: &str,
    v: &Val,
    shape: &[usize],
) -> std::result::Result<Val, String> {
    if v.shape() == shape {
        return Ok(v.clone());
    }
    let t = v.konst.as_ref().ok_or_else(|| {
        format!(
            "'{}' of shape {:?} is not a constant of shape {shape:?}",
            v.name,
            v.shape()
        )
    })?;
    let t = super::fold::broadcast_to(t, shape)?;
    Ok(cx.konst(base, t))
}

fn layer_norm(cx: &mut Ctx, n: &NodeIn) -> R {
    let x = n.input(0)?;
    f32_only(n, x, "input X")?;
    let axis = n.attrs.int("axis", -1);
    let a = norm_axis(axis, x.rank())?;
    let eps = n.attrs.float("epsilon", 1e-5);
    let norm = x.shape()[a..].to_vec();
    let gamma = match n.opt(1) {
        Some(g) => const_to(cx, n.out(), g, &norm)?,
        None => cx.konst(
            n.out(),
            Tensor::from_data(
                &norm,
                crate::tensor::TensorData::F32(vec![1.0; numel(&norm)]),
            )
            .map_err(|e| e.to_string())?,
        ),
    };
    let beta = match n.opt(2) {
        Some(b) => const_to(cx, n.out(), b, &norm)?,
        None => cx.konst(
            n.out(),
            Tensor::try_zeros(&norm).map_err(|e| e.to_string())?,
        ),
    };
    let op = Op::LayerNorm(LayerNorm {
        axis: a as i64,
        eps,
    });
    let y = cx.emit(op, &[x, &gamma, &beta], n.out())?;
    // Mean and InvStdDev when something reads them.
    let mut outs = vec![y];
    outs.extend(super::map_elem::layer_norm_stats(cx, n, x, a, eps)?);
    Ok(outs)
}

fn batch_norm(cx: &mut Ctx, n: &NodeIn) -> R {
    if n.attrs.int("training_mode", 0) != 0 {
        return Err("training_mode = 1".into());
    }
    if n.opset < 9 && n.attrs.int("spatial", 1) == 0 {
        return Err("spatial = 0".into());
    }
    let ins: Vec<&Val> = (0..5).map(|i| n.input(i)).collect::<Result<_, _>>()?;
    for v in &ins {
        f32_only(n, v, "input")?;
    }
    let eps = n.attrs.float("epsilon", 1e-5);
    Ok(vec![cx.emit(
        Op::BatchNorm(BatchNorm { eps }),
        &ins,
        n.out(),
    )?])
}

/// Reshape with a constant target (after folding); the ONNX 0 and -1 rules are resolved
/// here against the concrete input shape.
fn reshape(cx: &mut Ctx, n: &NodeIn) -> R {
    let x = n.input(0)?;
    let target: Vec<i64> = if n.opset < 5 {
        n.attrs.ints("shape").ok_or("shape attribute is missing")?
    } else {
        super::tensor::i64s(n.konst(1, "shape")?)
    };
    let allow_zero = n.attrs.int("allowzero", 0) != 0;
    let shape = super::fold::reshape_dims(x.shape(), &target, allow_zero)?;
    Ok(vec![cx.reshape(x, &shape, n.out())?])
}

fn flatten(cx: &mut Ctx, n: &NodeIn) -> R {
    let x = n.input(0)?;
    let r = x.rank() as i64;
    let axis = n.attrs.int("axis", 1);
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a > r {
        return Err(format!("axis {axis} for rank {r}"));
    }
    let s = x.shape();
    let shape = [numel(&s[..a as usize]), numel(&s[a as usize..])];
    Ok(vec![cx.reshape(x, &shape, n.out())?])
}

/// Squeeze/Unsqueeze are reshapes once shapes are concrete.
fn squeeze(cx: &mut Ctx, n: &NodeIn, unsqueeze: bool) -> R {
    let x = n.input(0)?;
    let axes = super::fold::axes_arg(n, 1)?;
    let shape = if unsqueeze {
        super::fold::unsqueeze_dims(x.shape(), axes.as_deref().unwrap_or(&[]))?
    } else {
        super::fold::squeeze_dims(x.shape(), axes.as_deref())?
    };
    Ok(vec![cx.reshape(x, &shape, n.out())?])
}

/// Transpose of any dtype (the op moves element bytes; the GPU kernel takes f32).
fn transpose(cx: &mut Ctx, n: &NodeIn) -> R {
    let x = n.input(0)?;
    let r = x.rank();
    let perm: Vec<usize> = match n.attrs.ints("perm") {
        Some(p) => {
            let mut seen = vec![false; r];
            let mut out = Vec::with_capacity(r);
            for &v in &p {
                let a = norm_axis(v, r)?;
                if seen[a] {
                    return Err(format!("perm {p:?} is not a permutation"));
                }
                seen[a] = true;
                out.push(a);
            }
            if out.len() != r {
                return Err(format!("perm {p:?} for rank {r}"));
            }
            out
        }
        None => (0..r).rev().collect(),
    };
    Ok(vec![cx.emit(
        Op::Transpose(Transpose { perm }),
        &[x],
        n.out(),
    )?])
}

fn concat(cx: &mut Ctx, n: &NodeIn) -> R {
    let ins: Vec<&Val> = n.inputs.iter().flatten().collect();
    if ins.is_empty() {
        return Err("no inputs".into());
    }
    let axis = n.attrs.int("axis", if n.opset < 4 { 1 } else { i64::MIN });
    if axis == i64::MIN {
        return Err("axis is missing".into());
    }
    let a = norm_axis(axis, ins[0].rank())?;
    Ok(vec![cx.emit(
        Op::Concat(Concat { axis: a as i64 }),
        &ins,
        n.out(),
    )?])
}

fn cast(cx: &mut Ctx, n: &NodeIn) -> R {
    let x = n.input(0)?;
    let to = n.attrs.int("to", 0) as i32;
    let dtype = super::tensor::dtype_of(to)
        .ok_or_else(|| format!("to = {}", super::tensor::dtype_name(to)))?;
    if x.ty.dtype == dtype {
        return Ok(vec![x.clone()]);
    }
    Ok(vec![cx.emit(
        Op::Cast(Cast { to: dtype }),
        &[x],
        n.out(),
    )?])
}
