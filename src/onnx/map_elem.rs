//! Mapping of ONNX elementwise, activation, comparison/logic, reduction and normalisation op
//! types onto wgedge ops. [`map`] answers `None` for an op type that is not one of this file's,
//! so `super::map::map` tries the next file.
//!
//! Dtypes: wgedge's float ops take f32 and its integer arithmetic i32/i64 (on the CPU). Other
//! ONNX dtypes are computed in a wider one and converted back where that gives ONNX's exact
//! answer: f16 in f32 (max/min/clip exactly; arithmetic rounded once more, far inside any f16
//! tolerance), i8/u8 in i32 with the result wrapped back to 8 bits (ONNX integer arithmetic
//! wraps), bool max/min in f32. Anything else is an error naming the dtype.

use super::{Ctx, NodeIn, Val};
use crate::ops::{
    Activation, ArgReduce, Binary, BinaryKind, Cast, Compare, CompareKind, GroupNorm, InstanceNorm,
    LogSoftmax, Logic, LogicKind, LpNorm, Math, MathKind, Op, Reduce, ReduceKind, RmsNorm, Softmax,
    Unary, Where,
};
use crate::tensor::{numel, DType, Tensor, TensorData};

type R = std::result::Result<Vec<Val>, String>;
type Res<T> = std::result::Result<T, String>;

/// Maps one node whose op type belongs to this file; `None` when it does not.
pub(super) fn map(cx: &mut Ctx, n: &NodeIn) -> Option<R> {
    let f = |name: &str, d: f32| n.attrs.float(name, d);
    Some(match n.op_type {
        "Abs" => neg_abs(cx, n, true),
        "Neg" => neg_abs(cx, n, false),
        "Erf" => act(cx, n, Activation::Erf),
        "Elu" => act(
            cx,
            n,
            Activation::Elu {
                alpha: f("alpha", 1.0),
            },
        ),
        "Celu" => act(
            cx,
            n,
            Activation::Celu {
                alpha: f("alpha", 1.0),
            },
        ),
        // ONNX's defaults are these f32 values of the SELU constants.
        "Selu" => act(
            cx,
            n,
            Activation::Selu {
                alpha: f("alpha", 1.673_263_2),
                gamma: f("gamma", 1.050_701),
            },
        ),
        "Softplus" => act(cx, n, Activation::Softplus),
        "Softsign" => act(cx, n, Activation::Softsign),
        "Mish" => act(cx, n, Activation::Mish),
        "ThresholdedRelu" => act(
            cx,
            n,
            Activation::ThresholdedRelu {
                alpha: f("alpha", 1.0),
            },
        ),
        "Swish" => swish(cx, n),
        "Exp" => math(cx, n, MathKind::Exp),
        "Log" => math(cx, n, MathKind::Log),
        "Sqrt" => math(cx, n, MathKind::Sqrt),
        "Reciprocal" => math(cx, n, MathKind::Reciprocal),
        "Floor" => math(cx, n, MathKind::Floor),
        "Ceil" => math(cx, n, MathKind::Ceil),
        "Round" => math(cx, n, MathKind::Round),
        "Sign" => math(cx, n, MathKind::Sign),
        "Sin" => math(cx, n, MathKind::Sin),
        "Cos" => math(cx, n, MathKind::Cos),
        "Pow" => binary_node(cx, n, BinaryKind::Pow),
        "PRelu" => binary_node(cx, n, BinaryKind::Prelu),
        "Mod" => {
            let kind = if n.attrs.int("fmod", 0) != 0 {
                BinaryKind::Fmod
            } else {
                BinaryKind::Mod
            };
            binary_node(cx, n, kind)
        }
        "Max" => variadic(cx, n, BinaryKind::Max),
        "Min" => variadic(cx, n, BinaryKind::Min),
        "Equal" => compare(cx, n, CompareKind::Equal),
        "Less" => compare(cx, n, CompareKind::Less),
        "Greater" => compare(cx, n, CompareKind::Greater),
        "LessOrEqual" => compare(cx, n, CompareKind::LessOrEqual),
        "GreaterOrEqual" => compare(cx, n, CompareKind::GreaterOrEqual),
        "Not" => logic(cx, n, LogicKind::Not),
        "IsNaN" => is_nan(cx, n),
        "And" => logic(cx, n, LogicKind::And),
        "Or" => logic(cx, n, LogicKind::Or),
        "Xor" => logic(cx, n, LogicKind::Xor),
        "Where" => where_(cx, n),
        "ReduceSum" => reduce(cx, n, ReduceKind::Sum, 13),
        "ReduceMean" => reduce(cx, n, ReduceKind::Mean, 18),
        "ReduceMax" => reduce(cx, n, ReduceKind::Max, 18),
        "ReduceMin" => reduce(cx, n, ReduceKind::Min, 18),
        "ReduceProd" => reduce(cx, n, ReduceKind::Prod, 18),
        "ReduceL1" => reduce(cx, n, ReduceKind::L1, 18),
        "ReduceL2" => reduce(cx, n, ReduceKind::L2, 18),
        "ReduceLogSumExp" => reduce(cx, n, ReduceKind::LogSumExp, 18),
        "ReduceSumSquare" => reduce(cx, n, ReduceKind::SumSquare, 18),
        "ArgMax" => arg_reduce(cx, n, true),
        "ArgMin" => arg_reduce(cx, n, false),
        "LogSoftmax" => softmax(cx, n, true),
        "InstanceNormalization" => instance_norm(cx, n),
        "GroupNormalization" => group_norm(cx, n),
        "RMSNormalization" => rms_norm(cx, n),
        "LpNormalization" => lp_norm(cx, n),
        _ => return None,
    })
}

/// The error for an input of a dtype the op does not compute.
fn bad_dtype(v: &Val, what: &str, takes: &str) -> String {
    format!(
        "{what} '{}' has dtype {} (this op takes {takes})",
        v.name, v.ty.dtype
    )
}

fn f32_in<'a>(n: &'a NodeIn, i: usize, what: &str) -> Res<&'a Val> {
    let v = n.input(i)?;
    if v.ty.dtype != DType::F32 {
        return Err(bad_dtype(v, what, "f32"));
    }
    Ok(v)
}

fn i32_scalar(v: i32) -> Tensor {
    Tensor::from_data(&[], TensorData::I32(vec![v])).expect("scalar")
}

/// `v` converted to `to` (no node when it already has that dtype).
fn cast(cx: &mut Ctx, v: &Val, to: DType, base: &str) -> Res<Val> {
    if v.ty.dtype == to {
        return Ok(v.clone());
    }
    let out = cx.fresh(base);
    cx.emit(Op::Cast(Cast { to }), &[v], &out)
}

/// The dtype wgedge computes a value of dtype `d` in, for ops exact in it.
fn compute_dtype(d: DType) -> Option<DType> {
    match d {
        DType::F32 | DType::I32 | DType::I64 => Some(d),
        DType::F16 => Some(DType::F32),
        DType::I8 | DType::U8 => Some(DType::I32),
        DType::Bool => None,
    }
}

/// An f32 activation: `unary` (fusable into a producer's epilogue).
fn act(cx: &mut Ctx, n: &NodeIn, a: Activation) -> R {
    let x = f32_in(n, 0, "input")?;
    Ok(vec![cx.emit(Op::Unary(Unary { act: a }), &[x], n.out())?])
}

/// Neg and Abs: the f32 activations, and on integers `x * -1` (wrapping, as ONNX: the most
/// negative value stays itself) and `max(x, -x)` through [`binary`]; Abs of u8 is `x`.
fn neg_abs(cx: &mut Ctx, n: &NodeIn, abs: bool) -> R {
    let x = n.input(0)?;
    match x.ty.dtype {
        DType::F32 => act(
            cx,
            n,
            if abs {
                Activation::Abs
            } else {
                Activation::Neg
            },
        ),
        DType::U8 if abs => Ok(vec![x.clone()]),
        DType::I32 | DType::I64 | DType::I8 => {
            let minus = cx.konst(n.out(), i32_scalar(-1).cast(x.ty.dtype));
            let o = if abs {
                cx.fresh(n.out())
            } else {
                n.out().to_string()
            };
            let neg = binary(cx, BinaryKind::Mul, x, &minus, &o)?;
            if !abs {
                return Ok(vec![neg]);
            }
            Ok(vec![binary(cx, BinaryKind::Max, x, &neg, n.out())?])
        }
        _ => Err(bad_dtype(x, "input", "f32, i64, i32 or i8 (Abs also u8)")),
    }
}

/// An f32 math function (`math` op; not fused, see its doc).
fn math(cx: &mut Ctx, n: &NodeIn, kind: MathKind) -> R {
    let x = f32_in(n, 0, "input")?;
    Ok(vec![cx.emit(Op::Math(Math { kind }), &[x], n.out())?])
}

/// `x * sigmoid(alpha x)`: silu for alpha 1, else a scale with sigmoid fused, then a product.
fn swish(cx: &mut Ctx, n: &NodeIn) -> R {
    let alpha = n.attrs.float("alpha", 1.0);
    if alpha == 1.0 {
        return act(cx, n, Activation::Silu);
    }
    let x = f32_in(n, 0, "input")?;
    let k = cx.konst(n.out(), Tensor::new(&[], vec![alpha]).expect("scalar"));
    let s_name = cx.fresh(n.out());
    let op = Op::Binary(Binary {
        kind: BinaryKind::Mul,
        act: Activation::Sigmoid,
    });
    let s = cx.emit(op, &[x, &k], &s_name)?;
    let op = Op::Binary(Binary {
        kind: BinaryKind::Mul,
        act: Activation::None,
    });
    Ok(vec![cx.emit(op, &[x, &s], n.out())?])
}

fn binary_node(cx: &mut Ctx, n: &NodeIn, kind: BinaryKind) -> R {
    let (a, b) = (n.input(0)?, n.input(1)?);
    Ok(vec![binary(cx, kind, a, b, n.out())?])
}

/// `a (kind) b` with ONNX's dtype rules, output named `out`: both operands of one dtype
/// (`Pow` also takes an exponent of another numeric dtype; the output has the base's). f16
/// computes in f32 and i8/u8 in i32 with the result wrapped back into 8 bits, so overflow
/// wraps as ONNX integer arithmetic does.
pub(super) fn binary(cx: &mut Ctx, kind: BinaryKind, a: &Val, b: &Val, out: &str) -> Res<Val> {
    let (da, db) = (a.ty.dtype, b.ty.dtype);
    if da != db && kind != BinaryKind::Pow {
        return Err(format!(
            "operands '{}' ({da}) and '{}' ({db}) differ in dtype",
            a.name, b.name
        ));
    }
    let ca = compute_dtype(da).ok_or_else(|| bad_dtype(a, "input A", "numbers, not bool"))?;
    compute_dtype(db).ok_or_else(|| bad_dtype(b, "input B", "numbers, not bool"))?;
    // Pow of an integer base by a float exponent is computed in f32 and truncated back
    // (exact while the result fits f32's 24-bit mantissa, as in onnx's numpy reference).
    let work = if kind == BinaryKind::Pow && !da.is_float() && db.is_float() {
        DType::F32
    } else {
        ca
    };
    let a2 = cast(cx, a, work, out)?;
    let b2 = cast(cx, b, work, out)?;
    let op = Op::Binary(Binary {
        kind,
        act: Activation::None,
    });
    if work == da {
        return cx.emit(op, &[&a2, &b2], out);
    }
    let tmp = cx.fresh(out);
    let mut y = cx.emit(op, &[&a2, &b2], &tmp)?;
    let wraps = matches!(
        kind,
        BinaryKind::Add | BinaryKind::Sub | BinaryKind::Mul | BinaryKind::Div | BinaryKind::Pow
    );
    if work == DType::I32 && wraps && matches!(da, DType::I8 | DType::U8) {
        y = wrap8(cx, &y, da == DType::I8, out)?;
    }
    if y.ty.dtype == da {
        return Ok(y);
    }
    cx.emit(Op::Cast(Cast { to: da }), &[&y], out)
}

/// An i32 value reduced modulo 256 into u8's range (or i8's when `signed`): the 8-bit
/// wrap-around of ONNX integer arithmetic, since the cast back saturates.
fn wrap8(cx: &mut Ctx, y: &Val, signed: bool, base: &str) -> Res<Val> {
    let op = |kind| {
        Op::Binary(Binary {
            kind,
            act: Activation::None,
        })
    };
    let mut v = y.clone();
    if signed {
        let k = cx.konst(base, i32_scalar(128));
        let o = cx.fresh(base);
        v = cx.emit(op(BinaryKind::Add), &[&v, &k], &o)?;
    }
    let m = cx.konst(base, i32_scalar(256));
    let o = cx.fresh(base);
    // Floored modulo: the result is in [0, 256) for either sign of v.
    v = cx.emit(op(BinaryKind::Mod), &[&v, &m], &o)?;
    if signed {
        let k = cx.konst(base, i32_scalar(128));
        let o = cx.fresh(base);
        v = cx.emit(op(BinaryKind::Sub), &[&v, &k], &o)?;
    }
    Ok(v)
}

/// Variadic `Max`/`Min` (and `Sum`, `Mean` from `map.rs`): a chain of broadcasting binary
/// ops; `mean` scales the sum by 1/n. One input is the input itself.
pub(super) fn variadic_chain(cx: &mut Ctx, n: &NodeIn, kind: BinaryKind, mean: bool) -> R {
    let ins: Vec<Val> = n.inputs.iter().flatten().cloned().collect();
    if ins.is_empty() {
        return Err("no inputs".into());
    }
    if mean && ins[0].ty.dtype != DType::F32 {
        return Err(bad_dtype(&ins[0], "input", "f32"));
    }
    let mut acc = ins[0].clone();
    for (i, v) in ins.iter().enumerate().skip(1) {
        let last = i + 1 == ins.len() && !mean;
        let out = if last {
            n.out().to_string()
        } else {
            cx.fresh(n.out())
        };
        acc = binary(cx, kind, &acc, v, &out)?;
    }
    if mean && ins.len() > 1 {
        let k = Tensor::new(&[], vec![1.0 / ins.len() as f32]).expect("scalar");
        let k = cx.konst(n.out(), k);
        acc = binary(cx, BinaryKind::Mul, &acc, &k, n.out())?;
    }
    if ins.len() == 1 {
        // A single input is the output; a no-op (the graph output keeps its name).
        compute_dtype(acc.ty.dtype).ok_or_else(|| bad_dtype(&acc, "input", "numbers, not bool"))?;
    }
    Ok(vec![acc])
}

fn variadic(cx: &mut Ctx, n: &NodeIn, kind: BinaryKind) -> R {
    variadic_chain(cx, n, kind, false)
}

/// Comparisons: operands of one dtype, computed in f32/i32/i64 (bool only for `Equal`; other
/// comparisons of bools compare them as 0/1).
fn compare(cx: &mut Ctx, n: &NodeIn, kind: CompareKind) -> R {
    let (a, b) = (n.input(0)?, n.input(1)?);
    let d = a.ty.dtype;
    if b.ty.dtype != d {
        return Err(format!(
            "operands '{}' ({d}) and '{}' ({}) differ in dtype",
            a.name, b.name, b.ty.dtype
        ));
    }
    let work = match d {
        DType::Bool if kind == CompareKind::Equal => DType::Bool,
        DType::Bool => DType::I32,
        d => compute_dtype(d).expect("numeric"),
    };
    let a2 = cast(cx, a, work, n.out())?;
    let b2 = cast(cx, b, work, n.out())?;
    Ok(vec![cx.emit(
        Op::Compare(Compare { kind }),
        &[&a2, &b2],
        n.out(),
    )?])
}

fn logic(cx: &mut Ctx, n: &NodeIn, kind: LogicKind) -> R {
    let arity = if kind == LogicKind::Not { 1 } else { 2 };
    let mut ins = Vec::new();
    for i in 0..arity {
        let v = n.input(i)?;
        if v.ty.dtype != DType::Bool {
            return Err(bad_dtype(v, &format!("input {i}"), "bool"));
        }
        ins.push(v);
    }
    Ok(vec![cx.emit(Op::Logic(Logic { kind }), &ins, n.out())?])
}

/// `IsNaN(x)` is `Not(Equal(x, x))`: NaN is the one value not equal to itself (f16 compares
/// in f32, where NaN stays NaN). Exporters use it to zero the rows of a softmax whose every
/// input was masked.
fn is_nan(cx: &mut Ctx, n: &NodeIn) -> R {
    let x = n.input(0)?;
    if !matches!(x.ty.dtype, DType::F32 | DType::F16) {
        return Err(bad_dtype(x, "input", "f32 or f16"));
    }
    let xf = cast(cx, x, DType::F32, n.out())?;
    let o = cx.fresh(n.out());
    let eq = cx.emit(
        Op::Compare(Compare {
            kind: CompareKind::Equal,
        }),
        &[&xf, &xf],
        &o,
    )?;
    Ok(vec![cx.emit(
        Op::Logic(Logic {
            kind: LogicKind::Not,
        }),
        &[&eq],
        n.out(),
    )?])
}

/// `Where(cond, x, y)`: x and y of one dtype (any; f32 runs on the GPU).
fn where_(cx: &mut Ctx, n: &NodeIn) -> R {
    let (c, x, y) = (n.input(0)?, n.input(1)?, n.input(2)?);
    if c.ty.dtype != DType::Bool {
        return Err(bad_dtype(c, "condition", "bool"));
    }
    Ok(vec![cx.emit(Op::Where(Where {}), &[c, x, y], n.out())?])
}

/// The reduction axes: the `axes` attribute before `input_from` (the opset that made them
/// input 1), else input 1, which must be a constant at import; `None`: not given.
fn reduce_axes(n: &NodeIn, input_from: i64) -> Res<Option<Vec<i64>>> {
    if n.opset < input_from {
        return Ok(n.attrs.ints("axes"));
    }
    match n.opt(1) {
        None => Ok(None),
        Some(_) => Ok(Some(super::tensor::i64s(n.konst(1, "axes")?))),
    }
}

/// `ReduceX`: axes (attribute or input), keepdims (default 1), noop_with_empty_axes. f32,
/// and max/min of bool/i8/u8/f16, which are exact in f32.
fn reduce(cx: &mut Ctx, n: &NodeIn, kind: ReduceKind, input_from: i64) -> R {
    let x = n.input(0)?;
    let axes = reduce_axes(n, input_from)?;
    let keepdims = n.attrs.int("keepdims", 1) != 0;
    let noop = n.attrs.int("noop_with_empty_axes", 0) != 0;
    let d = x.ty.dtype;
    let exact_in_f32 = matches!(kind, ReduceKind::Max | ReduceKind::Min)
        && matches!(d, DType::Bool | DType::I8 | DType::U8 | DType::F16);
    if d != DType::F32 && !exact_in_f32 {
        let takes = if matches!(kind, ReduceKind::Max | ReduceKind::Min) {
            "f32, f16, i8, u8 or bool"
        } else {
            "f32"
        };
        return Err(bad_dtype(x, "input", takes));
    }
    let op = Op::Reduce(Reduce {
        kind,
        axes: axes.unwrap_or_default(),
        keepdims,
        noop_with_empty_axes: noop,
    });
    if d == DType::F32 {
        return Ok(vec![cx.emit(op, &[x], n.out())?]);
    }
    let xf = cast(cx, x, DType::F32, n.out())?;
    let o = cx.fresh(n.out());
    let y = cx.emit(op, &[&xf], &o)?;
    Ok(vec![cx.emit(Op::Cast(Cast { to: d }), &[&y], n.out())?])
}

fn arg_reduce(cx: &mut Ctx, n: &NodeIn, max: bool) -> R {
    let x = n.input(0)?;
    let work = compute_dtype(x.ty.dtype).ok_or_else(|| bad_dtype(x, "input", "numbers"))?;
    let x2 = cast(cx, x, work, n.out())?;
    let op = Op::ArgReduce(ArgReduce {
        max,
        axis: n.attrs.int("axis", 0),
        keepdims: n.attrs.int("keepdims", 1) != 0,
        select_last_index: n.attrs.int("select_last_index", 0) != 0,
    });
    Ok(vec![cx.emit(op, &[&x2], n.out())?])
}

/// Softmax (`log` false) or LogSoftmax. From opset 13 along `axis` (default -1); before, the
/// input is coerced to 2-D `[prod(dims[..axis]), prod(dims[axis..])]` (axis default 1) and
/// normalised along its second dim, then reshaped back.
pub(super) fn softmax(cx: &mut Ctx, n: &NodeIn, log: bool) -> R {
    let x = f32_in(n, 0, "input")?;
    let r = x.rank();
    let op = |axis: i64| {
        if log {
            Op::LogSoftmax(LogSoftmax { axis })
        } else {
            Op::Softmax(Softmax { axis })
        }
    };
    if n.opset >= 13 {
        let axis = n.attrs.int("axis", -1);
        norm_axis(axis, r)?;
        return Ok(vec![cx.emit(op(axis), &[x], n.out())?]);
    }
    let axis = n.attrs.int("axis", 1);
    let a = if axis < 0 { axis + r as i64 } else { axis };
    if a < 0 || a > r as i64 {
        return Err(format!("axis {axis} is out of range for rank {r}"));
    }
    let a = a as usize;
    let s = x.shape().to_vec();
    let flat = [numel(&s[..a]), numel(&s[a..])];
    if a + 1 == r {
        // Already the 2-D view's last axis: no reshapes.
        return Ok(vec![cx.emit(op(-1), &[x], n.out())?]);
    }
    let o1 = cx.fresh(n.out());
    let x2 = cx.reshape(x, &flat, &o1)?;
    let o2 = cx.fresh(n.out());
    let y = cx.emit(op(-1), &[&x2], &o2)?;
    Ok(vec![cx.reshape(&y, &s, n.out())?])
}

fn norm_axis(axis: i64, rank: usize) -> Res<usize> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    if a < 0 || a >= rank.max(1) as i64 {
        return Err(format!("axis {axis} is out of range for rank {rank}"));
    }
    Ok(a as usize)
}

/// A per-channel `[C]` parameter: as given, or a constant of another shape with C elements
/// (`[C, 1, 1]`) reshaped.
fn per_channel(cx: &mut Ctx, n: &NodeIn, i: usize, what: &str, c: usize) -> Res<Val> {
    let v = f32_in(n, i, what)?;
    if v.shape() == [c] {
        return Ok(v.clone());
    }
    if numel(v.shape()) == c {
        let o = cx.fresh(&v.name);
        return cx.reshape(v, &[c], &o);
    }
    Err(format!(
        "{what} '{}' has shape {:?} (need [{c}], one per channel)",
        v.name,
        v.shape()
    ))
}

fn channels(x: &Val) -> Res<usize> {
    if x.rank() < 2 {
        return Err(format!(
            "input '{}' of shape {:?} (need [N, C, ...])",
            x.name,
            x.shape()
        ));
    }
    Ok(x.shape()[1])
}

fn instance_norm(cx: &mut Ctx, n: &NodeIn) -> R {
    let x = f32_in(n, 0, "input")?;
    let c = channels(x)?;
    let scale = per_channel(cx, n, 1, "scale", c)?;
    let bias = per_channel(cx, n, 2, "B", c)?;
    let eps = n.attrs.float("epsilon", 1e-5);
    Ok(vec![cx.emit(
        Op::InstanceNorm(InstanceNorm { eps }),
        &[x, &scale, &bias],
        n.out(),
    )?])
}

/// GroupNormalization: opset 21's scale and bias are per channel `[C]`; opset 18's were per
/// group `[G]`, expanded here to channels (each group's value repeated C/G times), which
/// needs them constant.
fn group_norm(cx: &mut Ctx, n: &NodeIn) -> R {
    let x = f32_in(n, 0, "input")?;
    let c = channels(x)?;
    let g = n.attrs.int("num_groups", 0);
    if g < 1 || c % g as usize != 0 {
        return Err(format!(
            "num_groups = {g} (must be positive and divide the {c} channels)"
        ));
    }
    let g = g as usize;
    let eps = n.attrs.float("epsilon", 1e-5);
    let mut params = Vec::new();
    for (i, what) in [(1, "scale"), (2, "bias")] {
        let v = f32_in(n, i, what)?;
        if n.opset < 21 && g != c {
            if v.shape() != [g] {
                return Err(format!(
                    "{what} '{}' has shape {:?} (opset {} takes [num_groups] = [{g}])",
                    v.name,
                    v.shape(),
                    n.opset
                ));
            }
            let t = n.konst(i, what)?;
            let per_group = t.f32s(what).map_err(|e| e.to_string())?;
            let per_ch: Vec<f32> = (0..c).map(|ch| per_group[ch / (c / g)]).collect();
            let t = Tensor::new(&[c], per_ch).map_err(|e| e.to_string())?;
            params.push(cx.konst(&v.name, t));
        } else {
            params.push(per_channel(cx, n, i, what, c)?);
        }
    }
    Ok(vec![cx.emit(
        Op::GroupNorm(GroupNorm { num_groups: g, eps }),
        &[x, &params[0], &params[1]],
        n.out(),
    )?])
}

/// RMSNormalization: over the dims from `axis`; a constant scale of another broadcastable
/// shape is broadcast to the normalised dims at import.
fn rms_norm(cx: &mut Ctx, n: &NodeIn) -> R {
    let x = f32_in(n, 0, "input X")?;
    let axis = n.attrs.int("axis", -1);
    let a = norm_axis(axis, x.rank())?;
    let eps = n.attrs.float("epsilon", 1e-5);
    let norm = x.shape()[a..].to_vec();
    let s = f32_in(n, 1, "scale")?;
    let scale = match &s.konst {
        Some(t) if s.shape() != norm.as_slice() => {
            let t = super::fold::broadcast_to(t, &norm)?;
            cx.konst(&s.name, t)
        }
        _ => s.clone(),
    };
    Ok(vec![cx.emit(
        Op::RmsNorm(RmsNorm {
            axis: a as i64,
            eps,
        }),
        &[x, &scale],
        n.out(),
    )?])
}

fn lp_norm(cx: &mut Ctx, n: &NodeIn) -> R {
    let x = f32_in(n, 0, "input")?;
    let axis = n.attrs.int("axis", -1);
    norm_axis(axis, x.rank())?;
    let p = n.attrs.int("p", 2);
    if p != 1 && p != 2 {
        return Err(format!("p = {p} (LpNormalization takes 1 or 2)"));
    }
    Ok(vec![cx.emit(
        Op::LpNorm(LpNorm { axis, p: p as u32 }),
        &[x],
        n.out(),
    )?])
}

/// LayerNormalization's optional outputs `Mean` and `InvStdDev` (over the normalised dims,
/// kept as 1s), computed only when something reads them: `mean(x)` and
/// `1 / sqrt(mean((x - mean)^2) + eps)`, the statistics the normalisation uses.
pub(super) fn layer_norm_stats(
    cx: &mut Ctx,
    n: &NodeIn,
    x: &Val,
    a: usize,
    eps: f32,
) -> Res<Vec<Val>> {
    let want = |i: usize| {
        n.outputs
            .get(i)
            .is_some_and(|o| !o.is_empty() && cx.used.contains(o))
    };
    let (want_mean, want_inv) = (want(1), want(2));
    if !want_mean && !want_inv {
        return Ok(vec![]);
    }
    let axes: Vec<i64> = (a as i64..x.rank() as i64).collect();
    let mean_op = Op::Reduce(Reduce::new(ReduceKind::Mean, &axes, true));
    let mean_name = if want_mean {
        n.outputs[1].clone()
    } else {
        cx.fresh(n.out())
    };
    let mean = cx.emit(mean_op.clone(), &[x], &mean_name)?;
    let mut outs = vec![mean.clone()];
    if want_inv {
        let bin = |kind| {
            Op::Binary(Binary {
                kind,
                act: Activation::None,
            })
        };
        let o = cx.fresh(n.out());
        let d = cx.emit(bin(BinaryKind::Sub), &[x, &mean], &o)?;
        let o = cx.fresh(n.out());
        let sq = cx.emit(bin(BinaryKind::Mul), &[&d, &d], &o)?;
        let o = cx.fresh(n.out());
        let var = cx.emit(mean_op, &[&sq], &o)?;
        let e = cx.konst(n.out(), Tensor::new(&[], vec![eps]).expect("scalar"));
        let o = cx.fresh(n.out());
        let ve = cx.emit(bin(BinaryKind::Add), &[&var, &e], &o)?;
        let o = cx.fresh(n.out());
        let sd = cx.emit(
            Op::Math(Math {
                kind: MathKind::Sqrt,
            }),
            &[&ve],
            &o,
        )?;
        let inv = cx.emit(
            Op::Math(Math {
                kind: MathKind::Reciprocal,
            }),
            &[&sd],
            &n.outputs[2],
        )?;
        outs.push(inv);
    }
    Ok(outs)
}

/// ONNX `Clip` on any numeric dtype: bounds are attributes before opset 11, else optional
/// inputs 1 (min) and 2 (max), constants at import; a missing bound is unbounded. f32 runs as
/// the activation [`Activation::clip`] picks (relu, relu6 or clip, fusable); integer dtypes
/// as max/min with the bounds in the compute dtype (exact; f16 through f32).
pub(super) fn clip(cx: &mut Ctx, n: &NodeIn) -> R {
    let x = n.input(0)?;
    let d = x.ty.dtype;
    let work = compute_dtype(d).ok_or_else(|| bad_dtype(x, "input", "numbers, not bool"))?;
    let bound = |i: usize, attr: &str| -> Res<Option<Tensor>> {
        if n.opset < 11 {
            return Ok(n
                .attrs
                .get(attr)
                .and_then(|a| a.f)
                .map(|v| Tensor::new(&[], vec![v]).expect("scalar")));
        }
        match n.opt(i) {
            None => Ok(None),
            Some(v) => {
                let t = n.konst(i, attr)?;
                if t.numel() != 1 {
                    return Err(format!(
                        "{attr} '{}' has shape {:?} (need one element)",
                        v.name,
                        t.shape()
                    ));
                }
                if t.dtype() != d {
                    return Err(format!(
                        "{attr} '{}' has dtype {} (the input's is {d})",
                        v.name,
                        t.dtype()
                    ));
                }
                Ok(Some(t.clone()))
            }
        }
    };
    let lo = bound(1, "min")?;
    let hi = bound(2, "max")?;
    if work == DType::F32 {
        let as_f = |t: &Option<Tensor>| t.as_ref().map(|t| super::tensor::f64s(t)[0] as f32);
        let (lo, hi) = (as_f(&lo), as_f(&hi));
        if lo.is_some_and(f32::is_nan) || hi.is_some_and(f32::is_nan) {
            return Err("a bound is NaN".into());
        }
        let a = Activation::clip(lo, hi);
        if d == DType::F32 {
            return Ok(vec![cx.emit(Op::Unary(Unary { act: a }), &[x], n.out())?]);
        }
        let x2 = cast(cx, x, DType::F32, n.out())?;
        let o = cx.fresh(n.out());
        let y = cx.emit(Op::Unary(Unary { act: a }), &[&x2], &o)?;
        return Ok(vec![cx.emit(Op::Cast(Cast { to: d }), &[&y], n.out())?]);
    }
    // Integers: max with the lower bound, then min with the upper (ONNX's order: a min above
    // the max gives the max everywhere).
    let mut y = cast(cx, x, work, n.out())?;
    let steps: Vec<(BinaryKind, Tensor)> = [(BinaryKind::Max, lo), (BinaryKind::Min, hi)]
        .into_iter()
        .filter_map(|(k, t)| t.map(|t| (k, t.cast(work).reshaped(&[]).expect("one element"))))
        .collect();
    if steps.is_empty() {
        return Ok(vec![x.clone()]);
    }
    for (i, (kind, t)) in steps.iter().enumerate() {
        let k = cx.konst(n.out(), t.clone());
        let last = i + 1 == steps.len() && work == d;
        let o = if last {
            n.out().to_string()
        } else {
            cx.fresh(n.out())
        };
        let op = Op::Binary(Binary {
            kind: *kind,
            act: Activation::None,
        });
        y = cx.emit(op, &[&y, &k], &o)?;
    }
    if work != d {
        y = cx.emit(Op::Cast(Cast { to: d }), &[&y], n.out())?;
    }
    Ok(vec![y])
}
