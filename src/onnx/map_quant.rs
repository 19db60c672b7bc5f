//! Mapping of ONNX's quantized op types (QuantizeLinear, DequantizeLinear,
//! DynamicQuantizeLinear, MatMulInteger, QLinearMatMul, ConvInteger, QLinearConv) onto wgedge
//! ops, and the import step that keeps constant int8 weights packed.
//!
//! Values that are not constants run as the integer ops of `ops::qlinear` (exact references;
//! `IntMatMul` also on the GPU). Scales of `QLinearMatMul`/`QLinearConv` and blocked scales must
//! be constants: the requantization multiplier is computed once at import, in the scales' own
//! dtype as ONNX's reference does.
//!
//! Constant weights. A weight that the model stores as 8-bit codes and decodes with a constant
//! scale — `DequantizeLinear(codes, scale, zero)` or the `Cast(codes) * scale` form some
//! exporters write — folds at import to the f32 weight it denotes (`fold.rs`). [`track`]
//! remembers where such a constant came from, and after the graph is built [`pack_weights`]
//! stores it as a wgedge int8 format (`format::QuantSpec`, one f32 scale per output channel)
//! instead of f32 when every reader can read it packed:
//! - `MatMul` B (`[K, N]`, scale per column or per tensor): stored transposed `[N, K]` with the
//!   matmul's `trans_b` set, the layout the packed kernels read (per-row scales);
//! - `MatMul` with `trans_b` (`[N, K]`) and `Conv2d` weights (OIHW) with a scale per output
//!   channel (axis 0) or per tensor;
//! - `Gather` tables along axis 0 (embeddings) with a scale per row: the model stays small and
//!   the session decodes the table once for the gather kernel.
//!
//! The decoded format must equal the f32 weight bit for bit (checked before the weight is
//! replaced: ONNX computes `f32(q - z) * scale` with one rounding, and the format decodes
//! `(q - z) * scale` rounded once), so the model computes exactly what ONNX computes up to the
//! packed kernels' summation order. Not mapped: scales along the reduction axis (a matmul B
//! quantized per row of K is not a per-output-channel format), blocked scales, f16 scales,
//! weights some other op reads, and a weight a rewrite changed after folding (the bit check
//! fails) — those stay f32.
//!
//! `MatMulInteger`/`ConvInteger` with a constant weight keep the weight as its u8/i8 codes (one
//! byte a weight in the model and on the device, where the integer kernel reads four codes a
//! word). They are not turned into an f32 matmul on a packed weight: their output is an exact
//! i32 that later nodes may use as integers, and an f32 product would not be exact.

use super::{Ctx, NodeIn, Val};
use crate::format::{QuantSpec, WeightFormat};
use crate::graph::Graph;
use crate::ops::{
    Activation, Binary, BinaryKind, Cast, DynPart, DynQuant, IntConv, IntMatMul, Op, Quantize,
    Requant,
};
use crate::tensor::{numel, DType, Tensor, TensorData};
use half::f16;
use std::collections::{BTreeMap, HashMap};

type R = std::result::Result<Vec<Val>, String>;

/// Maps one node whose op type belongs to this file; `None` when it does not.
pub(super) fn map(cx: &mut Ctx, n: &NodeIn) -> Option<R> {
    Some(match n.op_type {
        "QuantizeLinear" => quantize_linear(cx, n),
        "DequantizeLinear" => dequantize_linear(cx, n),
        "DynamicQuantizeLinear" => dynamic_quantize_linear(cx, n),
        "MatMulInteger" => matmul_integer(cx, n),
        "QLinearMatMul" => qlinear_matmul(cx, n),
        "ConvInteger" => conv_integer(cx, n, false),
        "QLinearConv" => conv_integer(cx, n, true),
        _ => return None,
    })
}

fn norm_axis(axis: i64, rank: usize) -> std::result::Result<usize, String> {
    let r = rank as i64;
    if axis < -r || axis >= r.max(1) {
        return Err(format!("axis {axis} for rank {rank}"));
    }
    Ok(if axis < 0 { axis + r } else { axis } as usize)
}

/// A scale or zero point `v` shaped to broadcast against `x_shape`: one element -> a scalar,
/// a vector -> along `axis` (per-axis quantization); with `block_size`, a constant of x's
/// rank repeated `block_size` times along `axis` to x's shape (blocked quantization).
fn along(
    cx: &mut Ctx,
    n: &NodeIn,
    v: &Val,
    x_shape: &[usize],
    what: &str,
) -> std::result::Result<Val, String> {
    let r = x_shape.len();
    let block = n.attrs.int("block_size", 0);
    if block < 0 {
        return Err(format!("block_size = {block}"));
    }
    let o = cx.fresh(n.out());
    if block > 0 {
        let a = norm_axis(n.attrs.int("axis", 1), r)?;
        let t = v.konst.as_ref().ok_or_else(|| {
            format!(
                "{what} '{}' is not a constant at import (blocked quantization repeats it)",
                v.name
            )
        })?;
        let b = block as usize;
        let s = t.shape();
        let fits = s.len() == r
            && (0..r).all(|d| {
                if d == a {
                    s[d] == x_shape[d].div_ceil(b)
                } else {
                    s[d] == x_shape[d]
                }
            });
        if !fits {
            return Err(format!(
                "blocked {what} of shape {s:?} for x {x_shape:?}, axis {a}, block_size {b}"
            ));
        }
        // Element (.., i, ..) of the expansion is element (.., i / b, ..) of the blocks.
        let inner: usize = x_shape[a + 1..].iter().product();
        let outer: usize = x_shape[..a].iter().product();
        let mut idx = Vec::with_capacity(numel(x_shape));
        for o in 0..outer {
            for i in 0..x_shape[a] {
                for j in 0..inner {
                    idx.push((o * s[a] + i / b) * inner + j);
                }
            }
        }
        let bytes = t.bytes();
        let size = t.dtype().size();
        let mut out = Vec::with_capacity(idx.len() * size);
        for &k in &idx {
            out.extend_from_slice(&bytes[k * size..(k + 1) * size]);
        }
        let e = Tensor::from_bytes(t.dtype(), x_shape, &out).map_err(|e| e.to_string())?;
        return Ok(cx.konst(n.out(), e));
    }
    if numel(v.shape()) == 1 {
        return cx.reshape(v, &[], &o);
    }
    if v.rank() != 1 {
        return Err(format!(
            "{what} of shape {:?} (a scalar or a vector along axis)",
            v.shape()
        ));
    }
    let a = norm_axis(n.attrs.int("axis", 1), r)?;
    if x_shape[a] != numel(v.shape()) {
        return Err(format!(
            "{what} of {} elements along axis {a} of x {x_shape:?}",
            numel(v.shape())
        ));
    }
    let mut s = vec![1; r];
    s[a] = x_shape[a];
    cx.reshape(v, &s, &o)
}

/// QuantizeLinear: `saturate(rint(x / scale) + zero)` to u8 or i8 (the zero point's dtype, else
/// opset 21's `output_dtype`, else u8). Opsets 10-12 have no `axis` (the default 1 applies to a
/// vector scale there too, which opset 10 forbids: a vector scale is accepted as opset 13
/// reads it).
fn quantize_linear(cx: &mut Ctx, n: &NodeIn) -> R {
    let x = n.input(0)?;
    let scale = n.input(1)?;
    if x.ty.dtype != DType::F32 || scale.ty.dtype != DType::F32 {
        return Err(format!(
            "x of dtype {} and y_scale of dtype {} (f32 only)",
            x.ty.dtype, scale.ty.dtype
        ));
    }
    let to = match n.opt(2) {
        Some(z) => z.ty.dtype,
        None => match n.attrs.int("output_dtype", 0) {
            0 | 2 => DType::U8,
            3 => DType::I8,
            d => {
                return Err(format!(
                    "output_dtype = {}",
                    super::tensor::dtype_name(d as i32)
                ))
            }
        },
    };
    if !matches!(to, DType::U8 | DType::I8) {
        return Err(format!("quantizing to {to} (u8 and i8 only)"));
    }
    let xs = x.shape().to_vec();
    let s = along(cx, n, scale, &xs, "y_scale")?;
    let mut ins = vec![x.clone(), s];
    if let Some(z) = n.opt(2) {
        ins.push(along(cx, n, z, &xs, "y_zero_point")?);
    }
    let refs: Vec<&Val> = ins.iter().collect();
    Ok(vec![cx.emit(
        Op::Quantize(Quantize { to }),
        &refs,
        n.out(),
    )?])
}

/// DequantizeLinear of a value (constants fold at import): `(f32(x) - zero) * scale`, with the
/// scale and zero point shaped to broadcast along `axis` (per axis) or repeated to x's shape
/// (blocked; those must be constants). Cast, subtraction and product are each exact or
/// rounded once in f32, as ONNX computes them, and run on the GPU where their kernels do.
fn dequantize_linear(cx: &mut Ctx, n: &NodeIn) -> R {
    let x = n.input(0)?;
    let scale = n.input(1)?;
    if scale.ty.dtype != DType::F32 {
        return Err(format!(
            "x_scale of dtype {} (f32 scales only)",
            scale.ty.dtype
        ));
    }
    if !matches!(x.ty.dtype, DType::U8 | DType::I8 | DType::I32) {
        return Err(format!("x of dtype {} (u8, i8 or i32)", x.ty.dtype));
    }
    let xs = x.shape().to_vec();
    let o = cx.fresh(n.out());
    let xf = cx.emit(Op::Cast(Cast { to: DType::F32 }), &[x], &o)?;
    let centred = match n.opt(2) {
        Some(z) => {
            let o = cx.fresh(n.out());
            let zf = cx.emit(Op::Cast(Cast { to: DType::F32 }), &[z], &o)?;
            let zf = along(cx, n, &zf, &xs, "x_zero_point")?;
            let o = cx.fresh(n.out());
            cx.emit(binary(BinaryKind::Sub), &[&xf, &zf], &o)?
        }
        None => xf,
    };
    let s = along(cx, n, scale, &xs, "x_scale")?;
    Ok(vec![cx.emit(
        binary(BinaryKind::Mul),
        &[&centred, &s],
        n.out(),
    )?])
}

fn binary(kind: BinaryKind) -> Op {
    Op::Binary(Binary {
        kind,
        act: Activation::None,
    })
}

/// DynamicQuantizeLinear: one `DynQuant` node per output that is used.
fn dynamic_quantize_linear(cx: &mut Ctx, n: &NodeIn) -> R {
    let x = n.input(0)?;
    if x.ty.dtype != DType::F32 {
        return Err(format!("x of dtype {} (f32 only)", x.ty.dtype));
    }
    let mut outs = Vec::new();
    for (i, part) in [DynPart::Codes, DynPart::Scale, DynPart::Zero]
        .into_iter()
        .enumerate()
    {
        let Some(name) = n.outputs.get(i).filter(|s| !s.is_empty()) else {
            break;
        };
        outs.push(cx.emit(Op::DynQuant(DynQuant { part }), &[x], name)?);
    }
    Ok(outs)
}

/// A zero point input, or a scalar 0 of `dtype` when omitted; checked to be 8-bit.
fn zero_or_default(
    cx: &mut Ctx,
    n: &NodeIn,
    i: usize,
    dtype: DType,
    what: &str,
) -> std::result::Result<Val, String> {
    match n.opt(i) {
        Some(z) if z.ty.dtype != dtype => Err(format!(
            "{what} of dtype {} for an operand of dtype {dtype}",
            z.ty.dtype
        )),
        Some(z) => Ok(z.clone()),
        None => {
            let data = match dtype {
                DType::I8 => TensorData::I8(vec![0]),
                _ => TensorData::U8(vec![0]),
            };
            let t = Tensor::from_data(&[], data).map_err(|e| e.to_string())?;
            Ok(cx.konst(n.out(), t))
        }
    }
}

fn codes_only(v: &Val, what: &str) -> std::result::Result<(), String> {
    if matches!(v.ty.dtype, DType::U8 | DType::I8) {
        Ok(())
    } else {
        Err(format!("{what} of dtype {} (u8 or i8)", v.ty.dtype))
    }
}

/// The integer product of `MatMulInteger`/`QLinearMatMul`: 1-D operands get a unit dim that
/// is removed afterwards (numpy matmul); output named `out`.
fn int_product(
    cx: &mut Ctx,
    n: &NodeIn,
    a: &Val,
    b: &Val,
    za: &Val,
    zb: &Val,
    out: &str,
) -> std::result::Result<Val, String> {
    codes_only(a, "A")?;
    codes_only(b, "B")?;
    super::map::numpy_matmul(cx, n, a, b, out, |cx, a2, b2, o| {
        cx.emit(Op::IntMatMul(IntMatMul {}), &[a2, b2, za, zb], o)
    })
}

/// MatMulInteger: `(A - a_zero) @ (B - b_zero)` in i32 (a per-row a_zero and a per-column
/// b_zero are taken by their element counts, as ONNX allows).
fn matmul_integer(cx: &mut Ctx, n: &NodeIn) -> R {
    let (a, b) = (n.input(0)?, n.input(1)?);
    let za = zero_or_default(cx, n, 2, a.ty.dtype, "a_zero_point")?;
    let zb = zero_or_default(cx, n, 3, b.ty.dtype, "b_zero_point")?;
    Ok(vec![int_product(cx, n, a, b, &za, &zb, n.out())?])
}

/// A constant f32 or f16 scale's values as f32, with its dtype.
fn scale_of(n: &NodeIn, i: usize, what: &str) -> std::result::Result<(Vec<f32>, DType), String> {
    let t = n.konst(i, what)?;
    match t.data() {
        TensorData::F32(v) => Ok((v.clone(), DType::F32)),
        TensorData::F16(v) => Ok((v.iter().map(|h| h.to_f32()).collect(), DType::F16)),
        _ => Err(format!("{what} of dtype {} (f32 or f16)", t.dtype())),
    }
}

/// The requantization multiplier `x_scale * w_scale / y_scale` as ONNX's reference computes it:
/// each operation in the scales' dtype (numpy computes f16 operations in f32 and rounds the
/// result to f16). `w_scale` may have one element per output channel.
fn multiplier(
    xs: &(Vec<f32>, DType),
    ws: &(Vec<f32>, DType),
    ys: &(Vec<f32>, DType),
) -> std::result::Result<Vec<f32>, String> {
    if xs.0.len() != 1 || ys.0.len() != 1 {
        return Err("a per-row input scale or a per-channel output scale (per tensor only)".into());
    }
    let round = |v: f32| {
        if xs.1 == DType::F16 && ws.1 == DType::F16 && ys.1 == DType::F16 {
            f16::from_f32(v).to_f32()
        } else {
            v
        }
    };
    Ok(ws
        .0
        .iter()
        .map(|&w| round(round(xs.0[0] * w) / ys.0[0]))
        .collect())
}

/// The output zero point of QLinear ops (required by the spec; one element), its dtype the
/// output's.
fn y_zero(n: &NodeIn, i: usize) -> std::result::Result<Val, String> {
    let z = n.input(i)?;
    codes_only(z, "y_zero_point")?;
    if numel(z.shape()) != 1 {
        return Err(format!(
            "y_zero_point of shape {:?} (per tensor only)",
            z.shape()
        ));
    }
    Ok(z.clone())
}

fn requant(
    cx: &mut Ctx,
    n: &NodeIn,
    acc: &Val,
    mult: Vec<f32>,
    mult_shape: &[usize],
    zy: &Val,
) -> R {
    let m = Tensor::new(mult_shape, mult).map_err(|e| e.to_string())?;
    let m = cx.konst(n.out(), m);
    // QLinearMatMul's ONNX reference wraps out-of-range codes (no clip before numpy's
    // astype) and its node tests expect that; QLinearConv's clips (see `Requant::wrap`).
    let wrap = n.op_type == "QLinearMatMul";
    let op = Op::Requant(Requant {
        to: zy.ty.dtype,
        wrap,
    });
    Ok(vec![cx.emit(op, &[acc, &m, zy], n.out())?])
}

/// QLinearMatMul: the integer product, then `rint(acc * a_scale * b_scale / y_scale + y_zero)`
/// saturated (b's scale and zero point may be per column).
fn qlinear_matmul(cx: &mut Ctx, n: &NodeIn) -> R {
    let (a, b) = (n.input(0)?, n.input(3)?);
    let sa = scale_of(n, 1, "a_scale")?;
    let sb = scale_of(n, 4, "b_scale")?;
    let sy = scale_of(n, 6, "y_scale")?;
    let za = zero_or_default(cx, n, 2, a.ty.dtype, "a_zero_point")?;
    let zb = zero_or_default(cx, n, 5, b.ty.dtype, "b_zero_point")?;
    let zy = y_zero(n, 7)?;
    let o = cx.fresh(n.out());
    let acc = int_product(cx, n, a, b, &za, &zb, &o)?;
    let ncols = *acc.shape().last().unwrap_or(&1);
    let m = multiplier(&sa, &sb, &sy)?;
    let shape: Vec<usize> = match m.len() {
        1 => vec![],
        k if k == ncols && b.rank() >= 2 => vec![k],
        k => return Err(format!("b_scale of {k} elements for {ncols} columns")),
    };
    requant(cx, n, &acc, m, &shape, &zy)
}

/// `strides`/`dilations` of a 2-D conv (default 1).
fn pair(n: &NodeIn, name: &str) -> std::result::Result<[usize; 2], String> {
    match n.attrs.ints(name) {
        None => Ok([1, 1]),
        Some(v) if v.len() == 2 && v.iter().all(|&x| x >= 1) => Ok([v[0] as usize, v[1] as usize]),
        Some(v) => Err(format!("{name} = {v:?} (2-D convs: two values >= 1)")),
    }
}

/// ConvInteger (`qlinear` false) or QLinearConv (true), 2-D: the integer conv (with
/// QLinearConv's i32 bias) and, for QLinearConv, the requantization with a per-channel
/// multiplier.
fn conv_integer(cx: &mut Ctx, n: &NodeIn, qlinear: bool) -> R {
    // Input positions: ConvInteger (x, w, x_zero, w_zero); QLinearConv (x, x_scale, x_zero,
    // w, w_scale, w_zero, y_scale, y_zero, B).
    let (ix, iw, izx, izw) = if qlinear { (0, 3, 2, 5) } else { (0, 1, 2, 3) };
    let (x, w) = (n.input(ix)?, n.input(iw)?);
    codes_only(x, "x")?;
    codes_only(w, "w")?;
    if x.rank() != 4 || w.rank() != 4 {
        return Err(format!(
            "x {:?} and w {:?} (2-D convs only)",
            x.shape(),
            w.shape()
        ));
    }
    let stride = pair(n, "strides")?;
    let dilation = pair(n, "dilations")?;
    let group = n.attrs.int("group", 1);
    if group < 1 {
        return Err(format!("group = {group}"));
    }
    let (k, hw) = ([w.shape()[2], w.shape()[3]], [x.shape()[2], x.shape()[3]]);
    if let Some(ks) = n.attrs.ints("kernel_shape") {
        if ks.len() != 2 || ks[0] as usize != k[0] || ks[1] as usize != k[1] {
            return Err(format!("kernel_shape {ks:?} for w {:?}", w.shape()));
        }
    }
    let auto = n
        .attrs
        .string("auto_pad")
        .unwrap_or_else(|| "NOTSET".into());
    let pads = match auto.as_str() {
        "NOTSET" => {
            let p = n.attrs.ints("pads").unwrap_or_else(|| vec![0; 4]);
            if p.len() != 4 || p.iter().any(|&v| v < 0) {
                return Err(format!("pads {p:?} (four values >= 0)"));
            }
            [p[0] as usize, p[1] as usize, p[2] as usize, p[3] as usize]
        }
        "VALID" => [0; 4],
        "SAME_UPPER" | "SAME_LOWER" => {
            let mut p = [0; 4];
            for d in 0..2 {
                let out = hw[d].div_ceil(stride[d]);
                let span = (k[d] - 1) * dilation[d] + 1;
                let total = ((out - 1) * stride[d] + span).saturating_sub(hw[d]);
                let small = total / 2;
                let (b, e) = if auto == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                };
                p[d] = b;
                p[d + 2] = e;
            }
            p
        }
        other => return Err(format!("auto_pad = '{other}'")),
    };
    let zx = zero_or_default(cx, n, izx, x.ty.dtype, "x_zero_point")?;
    let zw = zero_or_default(cx, n, izw, w.ty.dtype, "w_zero_point")?;
    let mut ins = vec![x.clone(), w.clone(), zx, zw];
    if qlinear {
        if let Some(b) = n.opt(8) {
            if b.ty.dtype != DType::I32 {
                return Err(format!("B of dtype {} (i32)", b.ty.dtype));
            }
            ins.push(b.clone());
        }
    }
    let op = Op::IntConv(IntConv {
        stride,
        pads,
        dilation,
        group: group as usize,
    });
    let refs: Vec<&Val> = ins.iter().collect();
    if !qlinear {
        return Ok(vec![cx.emit(op, &refs, n.out())?]);
    }
    let o = cx.fresh(n.out());
    let acc = cx.emit(op, &refs, &o)?;
    let m = multiplier(
        &scale_of(n, 1, "x_scale")?,
        &scale_of(n, 4, "w_scale")?,
        &scale_of(n, 6, "y_scale")?,
    )?;
    let oc = w.shape()[0];
    let shape: Vec<usize> = match m.len() {
        1 => vec![],
        k if k == oc => vec![oc, 1, 1],
        k => return Err(format!("w_scale of {k} elements for {oc} output channels")),
    };
    let zy = y_zero(n, 7)?;
    requant(cx, n, &acc, m, &shape, &zy)
}

/// Where a constant f32 value came from when it denotes 8-bit codes times a scale.
#[derive(Debug, Clone)]
pub(crate) struct QOrigin {
    /// The codes (u8 or i8), the value's shape.
    codes: Tensor,
    /// Zero points (the codes' dtype), broadcast like `scale`; `None` for 0.
    zero: Option<Tensor>,
    /// The scale (f32), broadcastable to the codes; `None` while only the cast is seen.
    scale: Option<Tensor>,
}

/// Remembers, before constant folding, constants that denote 8-bit codes times a scale:
/// `DequantizeLinear` of constants, and `Cast(codes) * scale`. Keyed by ONNX value name (a
/// folded constant keeps it, and so does the weight it becomes).
pub(super) fn track(cx: &mut Ctx, n: &NodeIn) {
    let k = |i: usize| n.opt(i).and_then(|v| v.konst.as_ref());
    let is_codes = |t: &Tensor| matches!(t.dtype(), DType::U8 | DType::I8);
    let Some(out) = n.outputs.first().filter(|s| !s.is_empty()) else {
        return;
    };
    let origin = match n.op_type {
        "Cast" if n.attrs.int("to", 0) == 1 => match k(0) {
            Some(c) if is_codes(c) => QOrigin {
                codes: c.clone(),
                zero: None,
                scale: None,
            },
            _ => return,
        },
        "Mul" => {
            let from = |i: usize| n.opt(i).and_then(|v| cx.qorigin.get(&v.name));
            let (o, s) = match (from(0), from(1), k(0), k(1)) {
                (Some(o), _, _, Some(s)) | (_, Some(o), Some(s), _) => (o, s),
                _ => return,
            };
            if o.scale.is_some() || s.dtype() != DType::F32 {
                return;
            }
            QOrigin {
                codes: o.codes.clone(),
                zero: None,
                scale: Some(s.clone()),
            }
        }
        "DequantizeLinear" if n.attrs.int("block_size", 0) == 0 => {
            let (Some(c), Some(s)) = (k(0), k(1)) else {
                return;
            };
            if !is_codes(c) || s.dtype() != DType::F32 {
                return;
            }
            // Per-axis vectors are shaped as they broadcast, so the pack step sees one rule.
            let r = c.shape().len();
            let shaped = |t: &Tensor| -> Option<Tensor> {
                if t.numel() == 1 {
                    return t.clone().reshaped(&[]).ok();
                }
                let a = norm_axis(n.attrs.int("axis", 1), r).ok()?;
                let mut sh = vec![1; r];
                sh[a] = t.numel();
                t.clone().reshaped(&sh).ok()
            };
            let zero = match (k(2), n.opt(2)) {
                (Some(z), _) => match shaped(z) {
                    Some(z) => Some(z),
                    None => return,
                },
                // A zero point computed at run time: not a constant weight.
                (None, Some(_)) => return,
                (None, None) => None,
            };
            let Some(scale) = shaped(s) else { return };
            QOrigin {
                codes: c.clone(),
                zero,
                scale: Some(scale),
            }
        }
        _ => return,
    };
    cx.qorigin.insert(out.clone(), origin);
}

/// The one axis along which `t` (broadcastable to `shape`) varies, `None` when it is one value
/// for the tensor; `Err` when it varies along several axes or is not broadcastable.
fn axis_of(t: &Tensor, shape: &[usize]) -> Result<Option<usize>, ()> {
    if t.numel() == 1 {
        return Ok(None);
    }
    let s = t.shape();
    if s.len() > shape.len() {
        return Err(());
    }
    let off = shape.len() - s.len();
    let varying: Vec<usize> = (0..s.len()).filter(|&d| s[d] != 1).collect();
    match varying.as_slice() {
        [d] if s[*d] == shape[d + off] => Ok(Some(d + off)),
        _ => Err(()),
    }
}

/// How a reader needs a packed weight: rows along which axis of the f32 weight, and whether
/// the matrix is stored transposed.
#[derive(Clone, Copy, PartialEq)]
enum Need {
    /// Rows are axis 0 (Linear `[N, K]`, OIHW, embedding tables).
    AsIs,
    /// A `[K, N]` matmul B: stored `[N, K]` and the matmul reads it with `trans_b`.
    Transposed,
}

/// Replaces f32 weights [`track`] saw as 8-bit codes times a per-channel scale by an int8
/// format (see the module doc for which readers qualify); returns how many.
pub(super) fn pack_weights(
    g: &mut Graph,
    weights: &mut BTreeMap<String, Tensor>,
    origins: &HashMap<String, QOrigin>,
) -> usize {
    let mut packed = 0;
    let names: Vec<String> = g.weights.iter().map(|w| w.name.clone()).collect();
    for name in names {
        let Some(o) = origins.get(&name) else {
            continue;
        };
        let Some(scale) = &o.scale else { continue };
        let Some(w) = weights.get(&name) else {
            continue;
        };
        if w.dtype() != DType::F32 || w.shape() != o.codes.shape() || !g.format_of(&name).is_dense()
        {
            continue;
        }
        let shape = w.shape().to_vec();
        // Every reader must read the weight packed, all in the same orientation.
        let mut need = None;
        let mut ok = true;
        for node in &g.nodes {
            for (i, inp) in node.inputs.iter().enumerate() {
                if *inp != name {
                    continue;
                }
                let this = match (&node.op, i, shape.len()) {
                    (Op::MatMul(m), 1, 2) if !m.trans_a && !m.trans_b => Need::Transposed,
                    (Op::MatMul(m), 1, 2) if !m.trans_a => Need::AsIs,
                    (Op::Conv2d(_), 1, 4) => Need::AsIs,
                    (Op::Gather(gt), 0, 2) if gt.axis == 0 => Need::AsIs,
                    _ => {
                        ok = false;
                        Need::AsIs
                    }
                };
                if need.is_some_and(|n| n != this) {
                    ok = false;
                }
                need = Some(this);
            }
        }
        let (Some(need), true) = (need, ok) else {
            continue;
        };
        // The scale (and zero point) must vary along the output-channel axis only.
        let out_axis = if need == Need::Transposed { 1 } else { 0 };
        let per_channel = |t: &Tensor| {
            let a = axis_of(t, &shape);
            a == Ok(None) || a == Ok(Some(out_axis))
        };
        if !per_channel(scale) || o.zero.as_ref().is_some_and(|z| !per_channel(z)) {
            continue;
        }
        let Ok(Some(fmt_parts)) = encode(&name, &o.codes, scale, o.zero.as_ref(), need) else {
            continue;
        };
        let (format, parts, rows_cols) = fmt_parts;
        // The decoded format must be the f32 weight ONNX computes, bit for bit.
        let want = if need == Need::Transposed {
            transpose2(w)
        } else {
            w.clone()
        };
        let logical: Vec<usize> = if need == Need::Transposed {
            vec![rows_cols.0, rows_cols.1]
        } else {
            shape.clone()
        };
        let Ok(dec) = format.decode(&name, &logical, &parts) else {
            continue;
        };
        let same = match (dec.data(), want.data()) {
            (TensorData::F32(a), TensorData::F32(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
            }
            _ => false,
        };
        if !same {
            continue;
        }
        weights.remove(&name);
        weights.extend(parts);
        if let Some(spec) = g.weights.iter_mut().find(|w| w.name == name) {
            spec.shape = logical;
        }
        g.formats.insert(name.clone(), format);
        if need == Need::Transposed {
            for node in &mut g.nodes {
                if node.inputs.get(1) == Some(&name) {
                    if let Op::MatMul(m) = &mut node.op {
                        m.trans_b = true;
                    }
                }
            }
        }
        packed += 1;
    }
    packed
}

fn transpose2(w: &Tensor) -> Tensor {
    let (r, c) = (w.shape()[0], w.shape()[1]);
    let v = w.f32s("weight").map(|v| v.to_vec()).unwrap_or_default();
    let mut t = vec![0f32; v.len()];
    for i in 0..r {
        for j in 0..c {
            t[j * r + i] = v[i * c + j];
        }
    }
    Tensor::new(&[c, r], t).unwrap_or_else(|_| w.clone())
}

type Encoded = (WeightFormat, BTreeMap<String, Tensor>, (usize, usize));

/// The int8 format of codes with per-row (output channel) scales and zero points: symmetric
/// i8 when the codes are i8 with no zero point and no -128 (the format's symmetric range is
/// -127..127), else asymmetric u8 (i8 codes and zero points shifted by 128, which leaves
/// `code - zero` unchanged).
fn encode(
    name: &str,
    codes: &Tensor,
    scale: &Tensor,
    zero: Option<&Tensor>,
    need: Need,
) -> Result<Option<Encoded>, String> {
    let shape = codes.shape();
    let q: Vec<i32> = match codes.data() {
        TensorData::I8(v) => v.iter().map(|&x| x as i32).collect(),
        TensorData::U8(v) => v.iter().map(|&x| x as i32).collect(),
        _ => return Ok(None),
    };
    let (rows, cols) = if need == Need::Transposed {
        (shape[1], shape[0])
    } else {
        (shape[0], shape[1..].iter().product())
    };
    let src_cols: usize = shape[1..].iter().product();
    // Code at (row, col) of the stored matrix.
    let at = |r: usize, c: usize| -> i32 {
        if need == Need::Transposed {
            q[c * src_cols + r]
        } else {
            q[r * cols + c]
        }
    };
    let per_row = |t: &Tensor| -> Vec<f64> {
        let v: Vec<f64> = super::tensor::f64s(t);
        if v.len() == 1 {
            vec![v[0]; rows]
        } else {
            v
        }
    };
    let scales: Vec<f32> = per_row(scale).iter().map(|&s| s as f32).collect();
    let zeros: Vec<i32> = zero.map_or(vec![0; rows], |z| {
        per_row(z).iter().map(|&v| v as i32).collect()
    });
    if scales.len() != rows || zeros.len() != rows || scales.iter().any(|s| !s.is_finite()) {
        return Ok(None);
    }
    let signed = codes.dtype() == DType::I8;
    let symmetric = signed && zeros.iter().all(|&z| z == 0) && !q.contains(&-128);
    let shift = if signed { 128 } else { 0 };
    let mut stored = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        for c in 0..cols {
            stored.push(at(r, c));
        }
    }
    let qweight = if symmetric {
        TensorData::I8(stored.iter().map(|&v| v as i8).collect())
    } else {
        TensorData::U8(stored.iter().map(|&v| (v + shift) as u8).collect())
    };
    let spec = QuantSpec {
        bits: 8,
        group: 0,
        zero_points: !symmetric,
        pow2: false,
        scale_dtype: DType::F32,
    };
    let t = |shape: &[usize], d: TensorData| Tensor::from_data(shape, d).map_err(|e| e.to_string());
    let mut parts = BTreeMap::new();
    parts.insert(format!("{name}.qweight"), t(&[rows, cols], qweight)?);
    parts.insert(
        format!("{name}.scales"),
        t(&[rows, 1], TensorData::F32(scales))?,
    );
    if !symmetric {
        let z: Vec<u8> = zeros.iter().map(|&z| (z + shift) as u8).collect();
        parts.insert(format!("{name}.zeros"), t(&[rows, 1], TensorData::U8(z))?);
    }
    Ok(Some((WeightFormat::Quant(spec), parts, (rows, cols))))
}
