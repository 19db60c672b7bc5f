//! Evaluation at import of nodes whose inputs are all constants, on plain vectors: the shape
//! subgraphs exporters write (Shape -> Gather -> Unsqueeze -> Concat -> Reshape, Range,
//! ConstantOfShape, Expand, integer arithmetic) and constant-weight preprocessing
//! (DequantizeLinear of a constant, Transpose of a weight). `Shape` and `Size` of any value
//! fold too, since every shape is concrete at import.
//!
//! Integer dtypes compute in i64 and floats in f64, then convert to the ONNX output dtype.

use super::tensor::{f64s, from_f64s, from_i64s, i64s};
use super::{Ctx, NodeIn, Val};
use crate::tensor::{numel, DType, Tensor};

type R = std::result::Result<Vec<Tensor>, String>;

/// Folds node `n` when it is a constant computation; `None` when it is not (the node is
/// mapped onto wgedge ops instead).
pub(super) fn eval(cx: &mut Ctx, n: &NodeIn) -> Option<std::result::Result<Vec<Val>, String>> {
    let all_const = n.inputs.iter().flatten().all(|v| v.konst.is_some());
    let r: R = match n.op_type {
        "Constant" => constant(n),
        "Shape" => shape(n),
        "Size" => n.input(0).and_then(|x| scalar_i64(numel(x.shape()) as i64)),
        _ if !all_const || n.inputs.iter().flatten().next().is_none() => return None,
        op => {
            let ts: Vec<Option<Tensor>> = n
                .inputs
                .iter()
                .map(|v| v.as_ref().and_then(|v| v.konst.clone()))
                .collect();
            eval_const(n, op, &ts)?
        }
    };
    Some(r.map(|ts| {
        ts.into_iter()
            .zip(n.outputs)
            .map(|(t, name)| {
                let _ = &cx;
                Val {
                    name: name.clone(),
                    ty: t.value_type(),
                    konst: Some(t),
                }
            })
            .collect()
    }))
}

fn eval_const(n: &NodeIn, op: &str, ts: &[Option<Tensor>]) -> Option<R> {
    let t = |i: usize| -> std::result::Result<&Tensor, String> {
        ts.get(i)
            .and_then(|t| t.as_ref())
            .ok_or_else(|| format!("input {i} is missing"))
    };
    Some(match op {
        "Identity" => t(0).map(|x| vec![x.clone()]),
        "Cast" => t(0).and_then(|x| {
            let to = n.attrs.int("to", 0) as i32;
            let d = super::tensor::dtype_of(to)
                .ok_or_else(|| format!("to = {}", super::tensor::dtype_name(to)))?;
            Ok(vec![x.cast(d)])
        }),
        "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze" => return None, // map.rs reshapes constants
        "ConstantOfShape" => constant_of_shape(n, t(0).ok()?),
        "Range" => range(t(0).ok()?, t(1).ok()?, t(2).ok()?),
        "Gather" => gather(n, t(0).ok()?, t(1).ok()?),
        "Slice" => slice(n, ts),
        "Concat" => {
            let xs: Vec<&Tensor> = ts.iter().flatten().collect();
            concat(n, &xs)
        }
        "Expand" => t(0).and_then(|x| {
            let target: Vec<i64> = i64s(t(1)?);
            let s = broadcast(
                x.shape(),
                &target
                    .iter()
                    .map(|&d| d.max(0) as usize)
                    .collect::<Vec<_>>(),
            )?;
            broadcast_to(x, &s).map(|y| vec![y])
        }),
        "Add" | "Sub" | "Mul" | "Div" | "Mod" | "Pow" | "Equal" | "Less" | "Greater"
        | "LessOrEqual" | "GreaterOrEqual" | "And" | "Or" => binary(n, op, t(0).ok()?, t(1).ok()?),
        "Max" | "Min" | "Sum" => {
            let xs: Vec<&Tensor> = ts.iter().flatten().collect();
            let mut acc = xs[0].clone();
            for x in &xs[1..] {
                match binary(n, op, &acc, x) {
                    Ok(mut v) => acc = v.remove(0),
                    Err(e) => return Some(Err(e)),
                }
            }
            Ok(vec![acc])
        }
        "Where" => where_(t(0).ok()?, t(1).ok()?, t(2).ok()?),
        "Neg" | "Abs" | "Floor" | "Ceil" | "Sqrt" | "Reciprocal" | "Not" | "Relu" => {
            unary(op, t(0).ok()?)
        }
        "ReduceProd" | "ReduceSum" | "ReduceMin" | "ReduceMax" => reduce(n, op, ts),
        "DequantizeLinear" => dequantize(n, ts),
        _ => return None,
    })
}

fn scalar_i64(v: i64) -> R {
    Ok(vec![from_i64s(DType::I64, &[], vec![v])?])
}

fn constant(n: &NodeIn) -> R {
    let a = n.attrs;
    let t = if let Some(t) = a.tensor("value") {
        super::tensor::from_proto(t)?
    } else if let Some(f) = a.get("value_float").and_then(|a| a.f) {
        from_f64s(DType::F32, &[], vec![f as f64])?
    } else if let Some(v) = a.floats("value_floats") {
        from_f64s(
            DType::F32,
            &[v.len()],
            v.iter().map(|&x| x as f64).collect(),
        )?
    } else if let Some(i) = a.get("value_int").and_then(|a| a.i) {
        from_i64s(DType::I64, &[], vec![i])?
    } else if let Some(v) = a.ints("value_ints") {
        from_i64s(DType::I64, &[v.len()], v)?
    } else if a.has("sparse_value") {
        return Err("sparse_value (sparse constants are not supported)".into());
    } else {
        return Err("no value attribute wgedge reads (value, value_float(s), value_int(s))".into());
    };
    Ok(vec![t])
}

fn shape(n: &NodeIn) -> R {
    let x = n.input(0)?;
    let r = x.rank() as i64;
    let clamp = |v: i64| if v < 0 { (v + r).max(0) } else { v.min(r) } as usize;
    let start = clamp(n.attrs.int("start", 0));
    let end = clamp(n.attrs.int("end", r));
    let dims: Vec<i64> = x.shape()[start..end.max(start)]
        .iter()
        .map(|&d| d as i64)
        .collect();
    Ok(vec![from_i64s(DType::I64, &[dims.len()], dims)?])
}

fn constant_of_shape(n: &NodeIn, s: &Tensor) -> R {
    let shape: Vec<usize> = i64s(s).iter().map(|&d| d.max(0) as usize).collect();
    let value = match n.attrs.tensor("value") {
        Some(t) => super::tensor::from_proto(t)?,
        None => from_f64s(DType::F32, &[1], vec![0.0])?,
    };
    if value.numel() != 1 {
        return Err("value must hold one element".into());
    }
    broadcast_to(&value.reshaped(&[]).map_err(|e| e.to_string())?, &shape).map(|t| vec![t])
}

fn range(start: &Tensor, limit: &Tensor, delta: &Tensor) -> R {
    let d = start.dtype();
    let (s, l, dl) = (f64s(start)[0], f64s(limit)[0], f64s(delta)[0]);
    if dl == 0.0 {
        return Err("delta = 0".into());
    }
    let count = ((l - s) / dl).ceil().max(0.0) as usize;
    if count > 1 << 24 {
        return Err(format!("range of {count} elements"));
    }
    if d.is_float() {
        from_f64s(d, &[count], (0..count).map(|i| s + i as f64 * dl).collect()).map(|t| vec![t])
    } else {
        let (s, dl) = (i64s(start)[0], i64s(delta)[0]);
        from_i64s(d, &[count], (0..count).map(|i| s + i as i64 * dl).collect()).map(|t| vec![t])
    }
}

/// Numpy broadcast of two shapes.
pub(super) fn broadcast(a: &[usize], b: &[usize]) -> std::result::Result<Vec<usize>, String> {
    let r = a.len().max(b.len());
    (0..r)
        .map(|i| {
            let da = if i + a.len() >= r {
                a[i + a.len() - r]
            } else {
                1
            };
            let db = if i + b.len() >= r {
                b[i + b.len() - r]
            } else {
                1
            };
            match (da, db) {
                (x, y) if x == y => Ok(x),
                (1, y) => Ok(y),
                (x, 1) => Ok(x),
                _ => Err(format!("shapes {a:?} and {b:?} do not broadcast")),
            }
        })
        .collect()
}

/// For each element of `out` (row-major), the index into a tensor of shape `s` broadcast to it.
fn bcast_index(s: &[usize], out: &[usize]) -> Vec<usize> {
    let r = out.len();
    let off = r - s.len();
    let mut strides = vec![0; r];
    let mut acc = 1;
    for i in (0..s.len()).rev() {
        strides[i + off] = if s[i] == 1 { 0 } else { acc };
        acc *= s[i];
    }
    let total = numel(out);
    let mut idx = Vec::with_capacity(total);
    let mut coord = vec![0usize; r];
    for _ in 0..total {
        idx.push(coord.iter().zip(&strides).map(|(c, s)| c * s).sum());
        for d in (0..r).rev() {
            coord[d] += 1;
            if coord[d] < out[d] {
                break;
            }
            coord[d] = 0;
        }
    }
    idx
}

/// `t` broadcast to `shape`.
pub(super) fn broadcast_to(t: &Tensor, shape: &[usize]) -> std::result::Result<Tensor, String> {
    let s = broadcast(t.shape(), shape)?;
    if s != shape {
        return Err(format!("{:?} does not broadcast to {shape:?}", t.shape()));
    }
    if numel(shape) > 1 << 26 {
        return Err(format!(
            "constant of shape {shape:?} is too large to expand at import"
        ));
    }
    gather_flat(t, shape, &bcast_index(t.shape(), shape))
}

/// A tensor of `shape` whose element i is `t`'s flat element `idx[i]`.
fn gather_flat(t: &Tensor, shape: &[usize], idx: &[usize]) -> std::result::Result<Tensor, String> {
    if t.dtype().is_float() {
        let v = f64s(t);
        from_f64s(t.dtype(), shape, idx.iter().map(|&i| v[i]).collect())
    } else {
        let v = i64s(t);
        from_i64s(t.dtype(), shape, idx.iter().map(|&i| v[i]).collect())
    }
}

fn binary(_n: &NodeIn, op: &str, a: &Tensor, b: &Tensor) -> R {
    let out = broadcast(a.shape(), b.shape())?;
    let (ia, ib) = (bcast_index(a.shape(), &out), bcast_index(b.shape(), &out));
    let cmp = matches!(
        op,
        "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual"
    );
    let float = a.dtype().is_float() || b.dtype().is_float();
    let res_dtype = if cmp { DType::Bool } else { a.dtype() };
    if float {
        let (va, vb) = (f64s(a), f64s(b));
        let f = |x: f64, y: f64| -> f64 {
            match op {
                "Add" | "Sum" => x + y,
                "Sub" => x - y,
                "Mul" => x * y,
                "Div" => x / y,
                "Mod" => x % y,
                "Pow" => x.powf(y),
                "Max" => x.max(y),
                "Min" => x.min(y),
                "Equal" => (x == y) as u8 as f64,
                "Less" => (x < y) as u8 as f64,
                "Greater" => (x > y) as u8 as f64,
                "LessOrEqual" => (x <= y) as u8 as f64,
                "GreaterOrEqual" => (x >= y) as u8 as f64,
                _ => ((x != 0.0) as u8 & (y != 0.0) as u8) as f64,
            }
        };
        let v = ia.iter().zip(&ib).map(|(&i, &j)| f(va[i], vb[j])).collect();
        return Ok(vec![from_f64s(res_dtype, &out, v)?]);
    }
    let (va, vb) = (i64s(a), i64s(b));
    let mut v = Vec::with_capacity(ia.len());
    for (&i, &j) in ia.iter().zip(&ib) {
        let (x, y) = (va[i], vb[j]);
        v.push(match op {
            "Add" | "Sum" => x.wrapping_add(y),
            "Sub" => x.wrapping_sub(y),
            "Mul" => x.wrapping_mul(y),
            // ONNX integer Div truncates (C semantics); Mod with fmod = 0 takes the divisor's
            // sign (Python's).
            "Div" | "Mod" if y == 0 => return Err("integer division by zero".into()),
            "Div" => x.wrapping_div(y),
            "Mod" => {
                if _n.attrs.int("fmod", 0) != 0 {
                    x % y
                } else {
                    let m = x % y;
                    if m != 0 && ((m < 0) != (y < 0)) {
                        m + y
                    } else {
                        m
                    }
                }
            }
            "Pow" => (x as f64).powf(y as f64) as i64,
            "Max" => x.max(y),
            "Min" => x.min(y),
            "Equal" => (x == y) as i64,
            "Less" => (x < y) as i64,
            "Greater" => (x > y) as i64,
            "LessOrEqual" => (x <= y) as i64,
            "GreaterOrEqual" => (x >= y) as i64,
            "And" => ((x != 0) && (y != 0)) as i64,
            _ => ((x != 0) || (y != 0)) as i64,
        });
    }
    Ok(vec![from_i64s(res_dtype, &out, v)?])
}

fn unary(op: &str, x: &Tensor) -> R {
    let v = f64s(x);
    let f = |x: f64| match op {
        "Neg" => -x,
        "Abs" => x.abs(),
        "Floor" => x.floor(),
        "Ceil" => x.ceil(),
        "Sqrt" => x.sqrt(),
        "Reciprocal" => 1.0 / x,
        "Relu" => x.max(0.0),
        _ => (x == 0.0) as u8 as f64,
    };
    if !x.dtype().is_float() && op != "Not" {
        let v = i64s(x);
        let g = |x: i64| match op {
            "Neg" => x.wrapping_neg(),
            "Abs" => x.wrapping_abs(),
            "Relu" => x.max(0),
            _ => x,
        };
        return Ok(vec![from_i64s(
            x.dtype(),
            x.shape(),
            v.into_iter().map(g).collect(),
        )?]);
    }
    Ok(vec![from_f64s(
        x.dtype(),
        x.shape(),
        v.into_iter().map(f).collect(),
    )?])
}

fn where_(c: &Tensor, a: &Tensor, b: &Tensor) -> R {
    let out = broadcast(&broadcast(c.shape(), a.shape())?, b.shape())?;
    let (ic, ia, ib) = (
        bcast_index(c.shape(), &out),
        bcast_index(a.shape(), &out),
        bcast_index(b.shape(), &out),
    );
    let vc = i64s(c);
    let pick: Vec<(bool, usize)> = ic
        .iter()
        .zip(ia.iter().zip(&ib))
        .map(|(&k, (&i, &j))| if vc[k] != 0 { (true, i) } else { (false, j) })
        .collect();
    if a.dtype().is_float() {
        let (va, vb) = (f64s(a), f64s(b));
        let v = pick
            .iter()
            .map(|&(s, i)| if s { va[i] } else { vb[i] })
            .collect();
        Ok(vec![from_f64s(a.dtype(), &out, v)?])
    } else {
        let (va, vb) = (i64s(a), i64s(b));
        let v = pick
            .iter()
            .map(|&(s, i)| if s { va[i] } else { vb[i] })
            .collect();
        Ok(vec![from_i64s(a.dtype(), &out, v)?])
    }
}

fn axis_of(axis: i64, rank: usize) -> std::result::Result<usize, String> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    if a < 0 || a >= rank as i64 {
        return Err(format!("axis {axis} out of range for rank {rank}"));
    }
    Ok(a as usize)
}

fn gather(n: &NodeIn, x: &Tensor, idx: &Tensor) -> R {
    let r = x.shape().len();
    let a = axis_of(n.attrs.int("axis", 0), r)?;
    let s = x.shape();
    let (outer, len, inner) = (numel(&s[..a]), s[a], numel(&s[a + 1..]));
    let ids: Vec<usize> = i64s(idx)
        .iter()
        .map(|&i| {
            let j = if i < 0 { i + len as i64 } else { i };
            if j < 0 || j >= len as i64 {
                Err(format!("index {i} out of range for axis of length {len}"))
            } else {
                Ok(j as usize)
            }
        })
        .collect::<Result<_, _>>()?;
    let mut shape = s[..a].to_vec();
    shape.extend(idx.shape());
    shape.extend(&s[a + 1..]);
    let mut flat = Vec::with_capacity(numel(&shape));
    for o in 0..outer {
        for &j in &ids {
            for i in 0..inner {
                flat.push((o * len + j) * inner + i);
            }
        }
    }
    Ok(vec![gather_flat(x, &shape, &flat)?])
}

fn slice(n: &NodeIn, ts: &[Option<Tensor>]) -> R {
    let x = ts[0].as_ref().ok_or("input 0 is missing")?;
    let r = x.shape().len();
    let (starts, ends, axes, steps) = if n.opset < 10 {
        (
            n.attrs.ints("starts").ok_or("starts is missing")?,
            n.attrs.ints("ends").ok_or("ends is missing")?,
            n.attrs.ints("axes"),
            None,
        )
    } else {
        let get = |i: usize| ts.get(i).and_then(|t| t.as_ref()).map(i64s);
        (
            get(1).ok_or("starts is missing")?,
            get(2).ok_or("ends is missing")?,
            get(3),
            get(4),
        )
    };
    let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
    let s = x.shape();
    let mut sel: Vec<Vec<usize>> = s.iter().map(|&d| (0..d).collect()).collect();
    for k in 0..starts.len() {
        let a = axis_of(axes[k], r)?;
        let d = s[a] as i64;
        let step = steps[k];
        if step == 0 {
            return Err("step 0".into());
        }
        let fix = |v: i64| if v < 0 { v + d } else { v };
        let (lo, hi) = if step > 0 { (0, d) } else { (-1, d - 1) };
        let b = fix(starts[k]).clamp(lo, hi);
        let e = fix(ends[k].clamp(-(1 << 62), 1 << 62)).clamp(lo, hi);
        let mut v = Vec::new();
        let mut i = b;
        while (step > 0 && i < e) || (step < 0 && i > e) {
            v.push(i as usize);
            i += step;
        }
        sel[a] = v;
    }
    let shape: Vec<usize> = sel.iter().map(|v| v.len()).collect();
    let mut strides = vec![1; r];
    for i in (0..r.saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * s[i + 1];
    }
    let mut flat = Vec::with_capacity(numel(&shape));
    let mut coord = vec![0usize; r];
    for _ in 0..numel(&shape) {
        flat.push((0..r).map(|d| sel[d][coord[d]] * strides[d]).sum());
        for d in (0..r).rev() {
            coord[d] += 1;
            if coord[d] < shape[d] {
                break;
            }
            coord[d] = 0;
        }
    }
    if numel(&shape) == 0 {
        return Err("empty slice".into());
    }
    Ok(vec![gather_flat(x, &shape, &flat)?])
}

fn concat(n: &NodeIn, xs: &[&Tensor]) -> R {
    let r = xs[0].shape().len();
    let a = axis_of(n.attrs.int("axis", 0), r)?;
    let mut shape = xs[0].shape().to_vec();
    shape[a] = 0;
    for x in xs {
        if x.shape().len() != r
            || x.shape()[..a] != xs[0].shape()[..a]
            || x.shape()[a + 1..] != xs[0].shape()[a + 1..]
        {
            return Err(format!(
                "concat of shapes {:?} and {:?}",
                xs[0].shape(),
                x.shape()
            ));
        }
        shape[a] += x.shape()[a];
    }
    let outer = numel(&shape[..a]);
    let float = xs[0].dtype().is_float();
    let mut fv = Vec::new();
    let mut iv = Vec::new();
    for o in 0..outer {
        for x in xs {
            let chunk = numel(&x.shape()[a..]);
            if float {
                fv.extend_from_slice(&f64s(x)[o * chunk..(o + 1) * chunk]);
            } else {
                iv.extend_from_slice(&i64s(x)[o * chunk..(o + 1) * chunk]);
            }
        }
    }
    let d = xs[0].dtype();
    Ok(vec![if float {
        from_f64s(d, &shape, fv)?
    } else {
        from_i64s(d, &shape, iv)?
    }])
}

fn reduce(n: &NodeIn, op: &str, ts: &[Option<Tensor>]) -> R {
    let x = ts[0].as_ref().ok_or("input 0 is missing")?;
    let r = x.shape().len();
    let axes: Option<Vec<i64>> = if (op == "ReduceSum" && n.opset >= 13) || n.opset >= 18 {
        ts.get(1).and_then(|t| t.as_ref()).map(i64s)
    } else {
        n.attrs.ints("axes")
    };
    let axes: Vec<usize> = match axes {
        Some(a) if !a.is_empty() => a.iter().map(|&a| axis_of(a, r)).collect::<Result<_, _>>()?,
        _ if n.attrs.int("noop_with_empty_axes", 0) != 0 => return Ok(vec![x.clone()]),
        _ => (0..r).collect(),
    };
    let keep = n.attrs.int("keepdims", 1) != 0;
    let s = x.shape();
    let kept: Vec<usize> = (0..r)
        .map(|d| if axes.contains(&d) { 1 } else { s[d] })
        .collect();
    let idx = bcast_index(&kept, s);
    let v = f64s(x);
    let init = match op {
        "ReduceProd" => 1.0,
        "ReduceMin" => f64::INFINITY,
        "ReduceMax" => f64::NEG_INFINITY,
        _ => 0.0,
    };
    let mut acc = vec![init; numel(&kept)];
    for (i, &j) in idx.iter().enumerate() {
        acc[j] = match op {
            "ReduceProd" => acc[j] * v[i],
            "ReduceMin" => acc[j].min(v[i]),
            "ReduceMax" => acc[j].max(v[i]),
            _ => acc[j] + v[i],
        };
    }
    let shape: Vec<usize> = if keep {
        kept
    } else {
        (0..r).filter(|d| !axes.contains(d)).map(|d| s[d]).collect()
    };
    Ok(vec![from_f64s(x.dtype(), &shape, acc)?])
}

/// DequantizeLinear of a constant (per tensor or per axis): the weight is imported as f32.
fn dequantize(n: &NodeIn, ts: &[Option<Tensor>]) -> R {
    let x = ts[0].as_ref().ok_or("input 0 is missing")?;
    let scale = ts
        .get(1)
        .and_then(|t| t.as_ref())
        .ok_or("x_scale is missing")?;
    if n.attrs.int("block_size", 0) != 0 {
        return Err("block_size (blocked quantization) is not supported".into());
    }
    let zero = ts.get(2).and_then(|t| t.as_ref());
    let r = x.shape().len();
    let (sv, zv) = (f64s(scale), zero.map(f64s));
    let idx: Vec<usize> = if scale.numel() == 1 {
        vec![0; x.numel()]
    } else {
        let a = axis_of(n.attrs.int("axis", 1), r)?;
        let mut kept = vec![1; r];
        kept[a] = x.shape()[a];
        bcast_index(&kept, x.shape())
    };
    let v = f64s(x);
    let out = v
        .iter()
        .zip(&idx)
        .map(|(&q, &j)| (q - zv.as_ref().map_or(0.0, |z| z[j.min(z.len() - 1)])) * sv[j])
        .collect();
    Ok(vec![from_f64s(scale.dtype(), x.shape(), out)?])
}

/// Target dims of an ONNX Reshape against a concrete input shape.
pub(super) fn reshape_dims(
    x: &[usize],
    target: &[i64],
    allow_zero: bool,
) -> std::result::Result<Vec<usize>, String> {
    let mut out = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, &d) in target.iter().enumerate() {
        match d {
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            0 if !allow_zero => out.push(*x.get(i).ok_or_else(|| {
                format!(
                    "shape {target:?} copies dim {i} of a rank-{} input",
                    x.len()
                )
            })?),
            d if d > 0 => out.push(d as usize),
            _ => return Err(format!("shape {target:?}")),
        }
    }
    let known = numel(&out);
    if let Some(i) = infer {
        if known == 0 || !numel(x).is_multiple_of(known) {
            return Err(format!("shape {target:?} for input {x:?}"));
        }
        out[i] = numel(x) / known;
    }
    if numel(&out) != numel(x) {
        return Err(format!("shape {target:?} for input {x:?}"));
    }
    Ok(out)
}

/// `axes` of Squeeze/Unsqueeze (an attribute before opset 13, input `i` after).
pub(super) fn axes_arg(n: &NodeIn, i: usize) -> std::result::Result<Option<Vec<i64>>, String> {
    if n.opset < 13 {
        return Ok(n.attrs.ints("axes"));
    }
    match n.opt(i) {
        None => Ok(None),
        Some(_) => Ok(Some(i64s(n.konst(i, "axes")?))),
    }
}

pub(super) fn squeeze_dims(
    x: &[usize],
    axes: Option<&[i64]>,
) -> std::result::Result<Vec<usize>, String> {
    let r = x.len();
    let drop: Vec<usize> = match axes {
        Some(a) => a.iter().map(|&a| axis_of(a, r)).collect::<Result<_, _>>()?,
        None => (0..r).filter(|&d| x[d] == 1).collect(),
    };
    for &d in &drop {
        if x[d] != 1 {
            return Err(format!("squeeze of axis {d} of size {}", x[d]));
        }
    }
    Ok((0..r).filter(|d| !drop.contains(d)).map(|d| x[d]).collect())
}

pub(super) fn unsqueeze_dims(x: &[usize], axes: &[i64]) -> std::result::Result<Vec<usize>, String> {
    let r = x.len() + axes.len();
    let mut at: Vec<usize> = axes
        .iter()
        .map(|&a| axis_of(a, r))
        .collect::<Result<_, _>>()?;
    at.sort_unstable();
    at.dedup();
    if at.len() != axes.len() {
        return Err(format!("repeated axes {axes:?}"));
    }
    let mut it = x.iter();
    Ok((0..r)
        .map(|d| {
            if at.contains(&d) {
                1
            } else {
                *it.next().unwrap_or(&1)
            }
        })
        .collect())
}
