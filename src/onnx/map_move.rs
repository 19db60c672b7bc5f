//! Mapping of ONNX data-movement, indexing, resize, pooling and einsum op types (Slice, Gather,
//! Expand, Tile, Pad, Resize, Upsample, Split, DepthToSpace, SpaceToDepth, GlobalMaxPool,
//! LpPool, GlobalLpPool, Einsum) onto wgedge ops. [`map`] answers `None` for an op type that is
//! not one of this file's, so `super::map::map` tries the next file.
//!
//! Every shape is concrete at import, so the shape-like arguments ONNX gives as inputs (slice
//! bounds, pads, repeats, scales) are constants here (folded from shape subgraphs) and become
//! the wgedge op's attributes; the op keeps only its data input.

use super::tensor::{f64s, i64s};
use super::{Ctx, NodeIn, Val};
use crate::ops::{
    AutoPad, CoordMode, DepthToSpace, Expand, Gather, MatMul, NearestMode, Op, Pad, PadMode, Pool,
    PoolKind, Resize, ResizeMode, Slice, SpaceToDepth, Tile, Transpose,
};
use crate::tensor::{numel, DType};

type R = std::result::Result<Vec<Val>, String>;

/// Maps one node whose op type belongs to this file; `None` when it does not.
pub(super) fn map(cx: &mut Ctx, n: &NodeIn) -> Option<R> {
    Some(match n.op_type {
        "Slice" => slice(cx, n),
        "Gather" => gather(cx, n),
        "GatherND" => gather_nd(cx, n),
        "Expand" => expand(cx, n),
        "Tile" => tile(cx, n),
        "Pad" => pad(cx, n),
        "Resize" => resize(cx, n),
        "Upsample" => upsample(cx, n),
        "Split" => split(cx, n),
        "DepthToSpace" => depth_to_space(cx, n),
        "SpaceToDepth" => space_to_depth(cx, n),
        "GlobalMaxPool" => global_pool(cx, n, PoolKind::Max),
        "GlobalLpPool" => global_pool(cx, n, PoolKind::Lp),
        "LpPool" => lp_pool(cx, n),
        "Range" | "ConstantOfShape" => runtime_shape(n),
        "Einsum" => einsum(cx, n),
        _ => return None,
    })
}

fn norm_axis(axis: i64, rank: usize) -> std::result::Result<usize, String> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    if a < 0 || a >= rank.max(1) as i64 {
        return Err(format!("axis {axis} is out of range for rank {rank}"));
    }
    Ok(a as usize)
}

/// Integer values of constant input `i` (a shape-like argument).
fn ints_in(n: &NodeIn, i: usize, what: &str) -> std::result::Result<Vec<i64>, String> {
    let t = n.konst(i, what)?;
    if t.dtype().is_float() {
        return Err(format!("{what} (input {i}) has dtype {}", t.dtype()));
    }
    Ok(i64s(t))
}

/// Optional integer input `i`: `None` when omitted.
fn opt_ints(n: &NodeIn, i: usize, what: &str) -> std::result::Result<Option<Vec<i64>>, String> {
    match n.opt(i) {
        None => Ok(None),
        Some(_) => ints_in(n, i, what).map(Some),
    }
}

fn f32_only(v: &Val, what: &str) -> std::result::Result<(), String> {
    if v.ty.dtype != DType::F32 {
        return Err(format!(
            "{what} '{}' has dtype {} (this op runs on f32)",
            v.name, v.ty.dtype
        ));
    }
    Ok(())
}

/// Slice: attributes before opset 10, inputs (starts, ends, axes, steps) from 10 on. Negative
/// bounds, clamping and negative steps are the op's (ONNX's rules).
fn slice(cx: &mut Ctx, n: &NodeIn) -> R {
    let x = n.input(0)?;
    let op = if n.opset < 10 {
        Slice {
            starts: n.attrs.ints("starts").ok_or("starts is missing")?,
            ends: n.attrs.ints("ends").ok_or("ends is missing")?,
            axes: n.attrs.ints("axes").unwrap_or_default(),
            steps: vec![],
        }
    } else {
        Slice {
            starts: ints_in(n, 1, "starts")?,
            ends: ints_in(n, 2, "ends")?,
            axes: opt_ints(n, 3, "axes")?.unwrap_or_default(),
            steps: opt_ints(n, 4, "steps")?.unwrap_or_default(),
        }
    };
    Ok(vec![cx.emit(Op::Slice(op), &[x], n.out())?])
}

/// Gather along `axis` (negative from the end); the indices may be a run-time value (token
/// ids into a constant embedding table) or a constant.
fn gather(cx: &mut Ctx, n: &NodeIn) -> R {
    let (x, idx) = (n.input(0)?, n.input(1)?);
    let axis = norm_axis(n.attrs.int("axis", 0), x.rank())? as i64;
    Ok(vec![cx.emit(
        Op::Gather(Gather { axis }),
        &[x, idx],
        n.out(),
    )?])
}

/// GatherND with constant indices and `batch_dims` 0 (what exporters emit to pick mask
/// entries): the first `k` data dims (k = the indices' last dim) are flattened into one and
/// each index tuple becomes one linear index, computed here, so the op is a `Gather` on axis 0
/// of the flattened data. Indices are checked (negative ones count from the end).
fn gather_nd(cx: &mut Ctx, n: &NodeIn) -> R {
    let x = n.input(0)?;
    if n.attrs.int("batch_dims", 0) != 0 {
        return Err("batch_dims != 0 is not supported".into());
    }
    let it = n.konst(1, "indices")?;
    let is = it.shape().to_vec();
    let k = *is.last().ok_or("indices of rank 0")?;
    let ds = x.shape().to_vec();
    if k == 0 || k > ds.len() {
        return Err(format!(
            "indices' last dim {k} for data of rank {}",
            ds.len()
        ));
    }
    let raw = i64s(it);
    let mut lin = Vec::with_capacity(raw.len() / k);
    for tuple in raw.chunks(k) {
        let mut l = 0i64;
        for (a, &v) in tuple.iter().enumerate() {
            let d = ds[a] as i64;
            let v = if v < 0 { v + d } else { v };
            if !(0..d).contains(&v) {
                return Err(format!(
                    "index {v} is out of range for data dim {a} of size {d}"
                ));
            }
            l = l * d + v;
        }
        lin.push(l);
    }
    let outer: usize = ds[..k].iter().product();
    let mut flat = vec![outer];
    flat.extend_from_slice(&ds[k..]);
    let o = cx.fresh(n.out());
    let xf = cx.reshape(x, &flat, &o)?;
    let idx_shape = &is[..is.len() - 1];
    let idx = crate::tensor::Tensor::from_data(idx_shape, crate::tensor::TensorData::I64(lin))
        .map_err(|e| e.to_string())?;
    let idx = cx.konst(n.out(), idx);
    Ok(vec![cx.emit(
        Op::Gather(Gather { axis: 0 }),
        &[&xf, &idx],
        n.out(),
    )?])
}

fn expand(cx: &mut Ctx, n: &NodeIn) -> R {
    let x = n.input(0)?;
    let shape = ints_in(n, 1, "shape")?;
    Ok(vec![cx.emit(
        Op::Expand(Expand { shape }),
        &[x],
        n.out(),
    )?])
}

fn tile(cx: &mut Ctx, n: &NodeIn) -> R {
    let x = n.input(0)?;
    if n.opset < 6 {
        return Err("the opset-1 form (tiles and axis inputs) is not supported".into());
    }
    let repeats = ints_in(n, 1, "repeats")?;
    Ok(vec![cx.emit(Op::Tile(Tile { repeats }), &[x], n.out())?])
}

/// Pad: `paddings` (opset 1) or `pads`/`value` attributes (2..10), or inputs pads,
/// constant_value and axes (11+; axes from 18). The fill is carried as f32, exact for every
/// float value and for integers up to 2^24.
fn pad(cx: &mut Ctx, n: &NodeIn) -> R {
    let x = n.input(0)?;
    let mode = match n
        .attrs
        .string("mode")
        .unwrap_or_else(|| "constant".into())
        .as_str()
    {
        "constant" => PadMode::Constant,
        "reflect" => PadMode::Reflect,
        "edge" => PadMode::Edge,
        "wrap" => PadMode::Wrap,
        other => return Err(format!("mode = '{other}'")),
    };
    let (pads, value, axes) = if n.opset < 11 {
        let name = if n.opset < 2 { "paddings" } else { "pads" };
        let pads = n.attrs.ints(name).ok_or(format!("{name} is missing"))?;
        (pads, n.attrs.float("value", 0.0), vec![])
    } else {
        let pads = ints_in(n, 1, "pads")?;
        let value = match n.opt(2) {
            None => 0.0,
            Some(_) => {
                let t = n.konst(2, "constant_value")?;
                if t.numel() != 1 {
                    return Err(format!(
                        "constant_value of shape {:?} (one element)",
                        t.shape()
                    ));
                }
                f64s(t)[0] as f32
            }
        };
        let axes = opt_ints(n, 3, "axes")?.unwrap_or_default();
        (pads, value, axes)
    };
    let op = Pad {
        mode,
        pads,
        value,
        axes,
    };
    Ok(vec![cx.emit(Op::Pad(op), &[x], n.out())?])
}

/// Resize: opset 10 (scales input, asymmetric coordinates, `nearest` truncating when
/// upsampling as ONNX Runtime does) and 11+ (roi, scales, sizes; the attributes). Modes and
/// transforms the op does not implement are refused by name.
fn resize(cx: &mut Ctx, n: &NodeIn) -> R {
    let x = n.input(0)?;
    f32_only(x, "input X")?;
    let mode = resize_mode(n)?;
    let mut op = Resize {
        mode,
        ..Default::default()
    };
    if n.opset < 11 {
        let scales: Vec<f32> = f64s(n.konst(1, "scales")?)
            .iter()
            .map(|&s| s as f32)
            .collect();
        return legacy_resize(cx, n, x, mode, scales);
    }
    let ctm = n
        .attrs
        .string("coordinate_transformation_mode")
        .unwrap_or_else(|| "half_pixel".into());
    op.coordinate_transformation_mode = match ctm.as_str() {
        "half_pixel" => CoordMode::HalfPixel,
        "pytorch_half_pixel" => CoordMode::PytorchHalfPixel,
        "align_corners" => CoordMode::AlignCorners,
        "asymmetric" => CoordMode::Asymmetric,
        "tf_half_pixel_for_nearest" => CoordMode::TfHalfPixelForNearest,
        other => {
            return Err(format!(
                "coordinate_transformation_mode = '{other}' (supported: half_pixel, \
                 pytorch_half_pixel, align_corners, asymmetric, tf_half_pixel_for_nearest)"
            ))
        }
    };
    op.nearest_mode = match n
        .attrs
        .string("nearest_mode")
        .unwrap_or_else(|| "round_prefer_floor".into())
        .as_str()
    {
        "round_prefer_floor" => NearestMode::RoundPreferFloor,
        "round_prefer_ceil" => NearestMode::RoundPreferCeil,
        "floor" => NearestMode::Floor,
        "ceil" => NearestMode::Ceil,
        other => return Err(format!("nearest_mode = '{other}'")),
    };
    if mode == ResizeMode::Linear && n.attrs.int("antialias", 0) != 0 {
        return Err("antialias = 1 (antialiased linear resize is not supported)".into());
    }
    let policy = n
        .attrs
        .string("keep_aspect_ratio_policy")
        .unwrap_or_else(|| "stretch".into());
    op.axes = n.attrs.ints("axes").unwrap_or_default();
    // An input with no elements is absent (exporters write empty roi/scales).
    let present = |i: usize| n.opt(i).is_some_and(|v| numel(v.shape()) > 0);
    if present(2) {
        op.scales = f64s(n.konst(2, "scales")?)
            .iter()
            .map(|&s| s as f32)
            .collect();
    }
    if present(3) {
        op.sizes = ints_in(n, 3, "sizes")?;
        if policy != "stretch" {
            return Err(format!(
                "keep_aspect_ratio_policy = '{policy}' (only stretch is supported)"
            ));
        }
    }
    if op.scales.is_empty() == op.sizes.is_empty() {
        return Err("exactly one of scales (input 2) and sizes (input 3) must be given".into());
    }
    Ok(vec![cx.emit(Op::Resize(op), &[x], n.out())?])
}

fn resize_mode(n: &NodeIn) -> std::result::Result<ResizeMode, String> {
    match n
        .attrs
        .string("mode")
        .unwrap_or_else(|| "nearest".into())
        .as_str()
    {
        "nearest" => Ok(ResizeMode::Nearest),
        "linear" | "bilinear" => Ok(ResizeMode::Linear),
        other => Err(format!(
            "mode = '{other}' (supported: nearest, linear; cubic is not implemented)"
        )),
    }
}

/// Upsample and opset-10 Resize: asymmetric coordinates (`x_out / scale`); nearest takes the
/// floor of the source coordinate when upsampling and the ceiling when downsampling, as ONNX
/// Runtime's legacy `simple` nearest mode does.
fn legacy_resize(cx: &mut Ctx, n: &NodeIn, x: &Val, mode: ResizeMode, scales: Vec<f32>) -> R {
    let down = scales.iter().filter(|&&s| s < 1.0).count();
    let up = scales.iter().filter(|&&s| s > 1.0).count();
    if mode == ResizeMode::Nearest && down > 0 && up > 0 {
        return Err(format!(
            "scales {scales:?} both up- and downsample (legacy nearest rounds each way \
             differently)"
        ));
    }
    let op = Resize {
        mode,
        coordinate_transformation_mode: CoordMode::Asymmetric,
        nearest_mode: if down > 0 {
            NearestMode::Ceil
        } else {
            NearestMode::Floor
        },
        scales,
        sizes: vec![],
        axes: vec![],
    };
    Ok(vec![cx.emit(Op::Resize(op), &[x], n.out())?])
}

/// Upsample (opset 7: `scales` attribute; 9: scales input) as an asymmetric Resize.
fn upsample(cx: &mut Ctx, n: &NodeIn) -> R {
    let x = n.input(0)?;
    f32_only(x, "input X")?;
    let mode = resize_mode(n)?;
    let scales: Vec<f32> = if n.opset < 9 {
        if n.opset < 7 {
            return Err("the opset-1 form (height_scale/width_scale) is not supported".into());
        }
        n.attrs.floats("scales").ok_or("scales is missing")?
    } else {
        f64s(n.konst(1, "scales")?)
            .iter()
            .map(|&s| s as f32)
            .collect()
    };
    legacy_resize(cx, n, x, mode, scales)
}

/// Split into slices along `axis`: sizes from the `split` attribute (< 13) or input (13+),
/// else `num_outputs` (18; the last chunk may be smaller) or the number of outputs (equal).
fn split(cx: &mut Ctx, n: &NodeIn) -> R {
    let x = n.input(0)?;
    let a = norm_axis(n.attrs.int("axis", 0), x.rank())?;
    let d = x.shape()[a];
    let parts = n.outputs.len();
    let given = if n.opset < 13 {
        match n.attrs.ints("split") {
            Some(s) => Some(s),
            // Opset 1 and 2 also took the sizes as an optional second input.
            None if n.opset < 2 && n.opt(1).is_some() => Some(ints_in(n, 1, "split")?),
            None => None,
        }
    } else {
        opt_ints(n, 1, "split")?
    };
    let sizes: Vec<usize> = match given {
        Some(s) => {
            if s.len() != parts || s.iter().any(|&v| v < 0) || s.iter().sum::<i64>() != d as i64 {
                return Err(format!(
                    "split {s:?} for {parts} outputs and axis {a} of length {d}"
                ));
            }
            s.iter().map(|&v| v as usize).collect()
        }
        None => {
            let k = if n.opset >= 18 {
                let k = n.attrs.int("num_outputs", parts as i64);
                if k != parts as i64 || k < 1 {
                    return Err(format!("num_outputs = {k} for {parts} outputs"));
                }
                k as usize
            } else {
                parts
            };
            if n.opset >= 18 {
                // Chunks of ceil(d / k), the last one what remains.
                let c = d.div_ceil(k);
                (0..k).map(|i| c.min(d.saturating_sub(i * c))).collect()
            } else {
                if !d.is_multiple_of(k) {
                    return Err(format!("axis {a} of length {d} into {k} equal parts"));
                }
                vec![d / k; k]
            }
        }
    };
    let mut outs = Vec::with_capacity(parts);
    let mut at = 0usize;
    for (i, &len) in sizes.iter().enumerate() {
        let name = &n.outputs[i];
        if len == 0 {
            return Err(format!("output {i} ('{name}') would be empty"));
        }
        if len == d {
            outs.push(x.clone());
            continue;
        }
        let op = Slice {
            starts: vec![at as i64],
            ends: vec![(at + len) as i64],
            axes: vec![a as i64],
            steps: vec![],
        };
        let out = if name.is_empty() {
            cx.fresh(n.out())
        } else {
            name.clone()
        };
        outs.push(cx.emit(Op::Slice(op), &[x], &out)?);
        at += len;
    }
    Ok(outs)
}

fn blocksize(n: &NodeIn) -> std::result::Result<usize, String> {
    match n.attrs.int("blocksize", 0) {
        b if b >= 1 => Ok(b as usize),
        b => Err(format!("blocksize = {b} (must be >= 1)")),
    }
}

fn depth_to_space(cx: &mut Ctx, n: &NodeIn) -> R {
    let x = n.input(0)?;
    let crd = match n
        .attrs
        .string("mode")
        .unwrap_or_else(|| "DCR".into())
        .as_str()
    {
        "DCR" => false,
        "CRD" => true,
        other => return Err(format!("mode = '{other}'")),
    };
    let op = DepthToSpace {
        blocksize: blocksize(n)?,
        crd,
    };
    Ok(vec![cx.emit(Op::DepthToSpace(op), &[x], n.out())?])
}

fn space_to_depth(cx: &mut Ctx, n: &NodeIn) -> R {
    let x = n.input(0)?;
    let op = SpaceToDepth {
        blocksize: blocksize(n)?,
    };
    Ok(vec![cx.emit(Op::SpaceToDepth(op), &[x], n.out())?])
}

/// `p` of LpPool / GlobalLpPool (an integer attribute from opset 2; a float before).
fn lp_p(n: &NodeIn) -> std::result::Result<u32, String> {
    let p = match n.attrs.get("p") {
        Some(a) if a.f.is_some() && a.i.is_none() => {
            let f = a.f.unwrap_or(2.0);
            if f.fract() != 0.0 {
                return Err(format!("p = {f} (integer p only)"));
            }
            f as i64
        }
        _ => n.attrs.int("p", 2),
    };
    if !(1..=u32::MAX as i64).contains(&p) {
        return Err(format!("p = {p} (must be >= 1)"));
    }
    Ok(p as u32)
}

/// A rank-3 input (1-D pooling) viewed as NCHW with a height of 1, and back.
fn nchw(cx: &mut Ctx, n: &NodeIn, x: &Val) -> std::result::Result<(Val, bool), String> {
    match x.rank() {
        4 => Ok((x.clone(), false)),
        3 => {
            let s = x.shape();
            let o = cx.fresh(n.out());
            Ok((cx.reshape(x, &[s[0], s[1], 1, s[2]], &o)?, true))
        }
        r => Err(format!(
            "input of rank {r} ({}-D pooling; wgedge pools 1-D and 2-D)",
            r.saturating_sub(2)
        )),
    }
}

fn pool_out(cx: &mut Ctx, n: &NodeIn, p: Pool, x: &Val) -> R {
    let (x2, one_d) = nchw(cx, n, x)?;
    if !one_d {
        return Ok(vec![cx.emit(Op::Pool(p), &[&x2], n.out())?]);
    }
    let o = cx.fresh(n.out());
    let y = cx.emit(Op::Pool(p), &[&x2], &o)?;
    let s = y.shape().to_vec();
    Ok(vec![cx.reshape(&y, &[s[0], s[1], s[3]], n.out())?])
}

fn global_pool(cx: &mut Ctx, n: &NodeIn, kind: PoolKind) -> R {
    let x = n.input(0)?;
    f32_only(x, "input X")?;
    let p = Pool {
        kind,
        global: true,
        p: if kind == PoolKind::Lp { lp_p(n)? } else { 2 },
        ..Default::default()
    };
    pool_out(cx, n, p, x)
}

/// The ONNX `Pool` op for a windowed pooling node (MaxPool, AveragePool, LpPool): kernel,
/// strides, dilations, pads or auto_pad, ceil_mode and count_include_pad, 1-D lifted to 2-D.
pub(super) fn onnx_pool(cx: &mut Ctx, n: &NodeIn, kind: PoolKind) -> R {
    let x = n.input(0)?;
    f32_only(x, "input X")?;
    let sp = x.rank().saturating_sub(2);
    if !(1..=2).contains(&sp) {
        return Err(format!(
            "input of rank {} ({sp}-D pooling; wgedge pools 1-D and 2-D)",
            x.rank()
        ));
    }
    let attr = |name: &str, default: i64| -> std::result::Result<Vec<usize>, String> {
        match n.attrs.ints(name) {
            None => Ok(vec![default as usize; sp]),
            Some(v) if v.len() == sp && v.iter().all(|&k| k >= 1) => {
                Ok(v.iter().map(|&k| k as usize).collect())
            }
            Some(v) => Err(format!("{name} = {v:?} (need {sp} values >= 1)")),
        }
    };
    if !n.attrs.has("kernel_shape") {
        return Err("kernel_shape is missing".into());
    }
    let kernel = attr("kernel_shape", 1)?;
    let stride = attr("strides", 1)?;
    let dilation = attr("dilations", 1)?;
    let pads = match n.attrs.ints("pads") {
        None => vec![0; 2 * sp],
        Some(p) if p.len() == 2 * sp && p.iter().all(|&v| v >= 0) => {
            p.iter().map(|&v| v as usize).collect()
        }
        Some(p) => return Err(format!("pads = {p:?} (need {} values >= 0)", 2 * sp)),
    };
    let auto_pad = match n
        .attrs
        .string("auto_pad")
        .unwrap_or_else(|| "NOTSET".into())
        .as_str()
    {
        "NOTSET" => AutoPad::NotSet,
        "VALID" => AutoPad::Valid,
        "SAME_UPPER" => AutoPad::SameUpper,
        "SAME_LOWER" => AutoPad::SameLower,
        other => return Err(format!("auto_pad = '{other}'")),
    };
    // 1-D: the height axis is a window of 1 over a height of 1.
    let two = |v: &[usize], fill: usize| if sp == 1 { [fill, v[0]] } else { [v[0], v[1]] };
    let pad = if sp == 1 {
        [0, pads[0], 0, pads[1]]
    } else {
        [pads[0], pads[1], pads[2], pads[3]]
    };
    let p = Pool {
        kind,
        kernel: two(&kernel, 1),
        stride: two(&stride, 1),
        pad,
        dilation: two(&dilation, 1),
        ceil_mode: n.attrs.int("ceil_mode", 0) != 0,
        count_include_pad: n.attrs.int("count_include_pad", 0) != 0,
        auto_pad,
        p: if kind == PoolKind::Lp { lp_p(n)? } else { 2 },
        global: false,
    };
    pool_out(cx, n, p, x)
}

fn lp_pool(cx: &mut Ctx, n: &NodeIn) -> R {
    onnx_pool(cx, n, PoolKind::Lp)
}

/// Range and ConstantOfShape fold at import when their inputs are constants; otherwise the
/// output's shape would depend on values computed at run time.
fn runtime_shape(n: &NodeIn) -> R {
    let runtime: Vec<&str> = n
        .inputs
        .iter()
        .flatten()
        .filter(|v| v.konst.is_none())
        .map(|v| v.name.as_str())
        .collect();
    Err(format!(
        "its output shape depends on run-time values (input(s) {} are computed by the model, \
         not known at import); wgedge plans fixed shapes",
        runtime.join(", ")
    ))
}

/// One operand's labels of an einsum equation.
fn labels(term: &str, eq: &str) -> std::result::Result<Vec<char>, String> {
    let v: Vec<char> = term.chars().collect();
    if v.iter().any(|c| !c.is_ascii_alphabetic()) {
        return Err(format!(
            "equation '{eq}' (only letter labels; ellipsis is not supported)"
        ));
    }
    for (i, c) in v.iter().enumerate() {
        if v[..i].contains(c) {
            return Err(format!(
                "equation '{eq}' repeats label '{c}' in one operand (diagonals are not supported)"
            ));
        }
    }
    Ok(v)
}

/// Transposes `x` (labelled `have`) to the label order `want`; no node when already in order.
fn permute(
    cx: &mut Ctx,
    n: &NodeIn,
    x: &Val,
    have: &[char],
    want: &[char],
    out: Option<&str>,
) -> std::result::Result<Val, String> {
    let perm: Vec<usize> = want
        .iter()
        .map(|c| have.iter().position(|h| h == c).expect("label present"))
        .collect();
    if perm.iter().enumerate().all(|(i, &p)| i == p) {
        return match out {
            Some(o) => cx.reshape(x, x.shape(), o),
            None => Ok(x.clone()),
        };
    }
    let o = match out {
        Some(o) => o.to_string(),
        None => cx.fresh(n.out()),
    };
    cx.emit(Op::Transpose(Transpose { perm }), &[x], &o)
}

/// Einsum of the matmul family: two operands whose every label is a batch label (in both
/// and the output), a contracted one (in both, not the output) or a free one (in one operand
/// and the output); or one operand with a permutation. Runs as transposes, one batched
/// MatMul and a reshape; other equations (reductions, diagonals, ellipsis) are refused.
fn einsum(cx: &mut Ctx, n: &NodeIn) -> R {
    let eq: String = n
        .attrs
        .string("equation")
        .ok_or("equation is missing")?
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let (lhs, rhs) = match eq.split_once("->") {
        Some((l, r)) => (l.to_string(), Some(r.to_string())),
        None => (eq.clone(), None),
    };
    let terms: Vec<&str> = lhs.split(',').collect();
    let ins: Vec<&Val> = n.inputs.iter().flatten().collect();
    if terms.len() != ins.len() {
        return Err(format!(
            "equation '{eq}' has {} operands, the node {}",
            terms.len(),
            ins.len()
        ));
    }
    let ops: Vec<Vec<char>> = terms
        .iter()
        .map(|t| labels(t, &eq))
        .collect::<Result<_, _>>()?;
    for (l, v) in ops.iter().zip(&ins) {
        if l.len() != v.rank() {
            return Err(format!(
                "equation '{eq}': operand '{}' has rank {}, its term {} labels",
                v.name,
                v.rank(),
                l.len()
            ));
        }
        f32_only(v, "operand")?;
    }
    // Implicit output: the labels that appear once, in alphabetical order.
    let out: Vec<char> = match &rhs {
        Some(r) => labels(r, &eq)?,
        None => {
            let mut o: Vec<char> = ops
                .concat()
                .into_iter()
                .filter(|c| ops.iter().flatten().filter(|d| *d == c).count() == 1)
                .collect();
            o.sort_unstable();
            o
        }
    };
    let refuse = || {
        format!(
            "equation '{eq}' is not a matmul-like einsum (supported: batch, contracted and \
             free labels of two operands, or a permutation of one)"
        )
    };
    let size = |c: char| -> usize {
        ops.iter()
            .zip(&ins)
            .find_map(|(l, v)| l.iter().position(|&d| d == c).map(|i| v.shape()[i]))
            .unwrap_or(0)
    };
    if ops.len() == 1 {
        let mut a = ops[0].clone();
        a.sort_unstable();
        let mut o = out.clone();
        o.sort_unstable();
        if a != o {
            return Err(refuse());
        }
        return Ok(vec![permute(cx, n, ins[0], &ops[0], &out, Some(n.out()))?]);
    }
    if ops.len() != 2 {
        return Err(refuse());
    }
    let (la, lb) = (&ops[0], &ops[1]);
    if out.iter().any(|c| !la.contains(c) && !lb.contains(c)) {
        return Err(format!("equation '{eq}': an output label is in no operand"));
    }
    let (mut batch, mut contract, mut free_a, mut free_b) = (vec![], vec![], vec![], vec![]);
    for &c in la {
        match (lb.contains(&c), out.contains(&c)) {
            (true, true) => batch.push(c),
            (true, false) => contract.push(c),
            (false, true) => free_a.push(c),
            (false, false) => return Err(refuse()),
        }
    }
    for &c in lb {
        match (la.contains(&c), out.contains(&c)) {
            (false, true) => free_b.push(c),
            (false, false) => return Err(refuse()),
            _ => {}
        }
    }
    for &c in batch.iter().chain(&contract) {
        let (ia, ib) = (
            la.iter().position(|&d| d == c).unwrap(),
            lb.iter().position(|&d| d == c).unwrap(),
        );
        if ins[0].shape()[ia] != ins[1].shape()[ib] {
            return Err(format!(
                "equation '{eq}': label '{c}' is {} in one operand and {} in the other",
                ins[0].shape()[ia],
                ins[1].shape()[ib]
            ));
        }
    }
    let dims = |ls: &[char]| -> Vec<usize> { ls.iter().map(|&c| size(c)).collect() };
    let (nb, m, k, nn) = (
        numel(&dims(&batch)),
        numel(&dims(&free_a)),
        numel(&dims(&contract)),
        numel(&dims(&free_b)),
    );
    let cat = |parts: &[&[char]]| -> Vec<char> { parts.concat() };
    let lead = |v: usize| -> Vec<usize> {
        if batch.is_empty() {
            vec![]
        } else {
            vec![v]
        }
    };
    // A as [batch, M, K] or, when its labels are already in that order transposed, as
    // [batch, K, M] with trans_a; B likewise as [batch, K, N] or [batch, N, K] with trans_b.
    let (a_order, trans_a) = if *la == cat(&[&batch, &contract, &free_a]) && !free_a.is_empty() {
        (cat(&[&batch, &contract, &free_a]), true)
    } else {
        (cat(&[&batch, &free_a, &contract]), false)
    };
    let (b_order, trans_b) = if *lb == cat(&[&batch, &free_b, &contract]) && !free_b.is_empty() {
        (cat(&[&batch, &free_b, &contract]), true)
    } else {
        (cat(&[&batch, &contract, &free_b]), false)
    };
    let a = permute(cx, n, ins[0], la, &a_order, None)?;
    let b = permute(cx, n, ins[1], lb, &b_order, None)?;
    let mut sa = lead(nb);
    sa.extend(if trans_a { [k, m] } else { [m, k] });
    let mut sb = lead(nb);
    sb.extend(if trans_b { [nn, k] } else { [k, nn] });
    let (oa, ob) = (cx.fresh(n.out()), cx.fresh(n.out()));
    let a = cx.reshape(&a, &sa, &oa)?;
    let b = cx.reshape(&b, &sb, &ob)?;
    let mm = MatMul {
        trans_a,
        trans_b,
        ..Default::default()
    };
    let o = cx.fresh(n.out());
    let y = cx.emit(Op::MatMul(mm), &[&a, &b], &o)?;
    let natural = cat(&[&batch, &free_a, &free_b]);
    if natural == out {
        return Ok(vec![cx.reshape(&y, &dims(&natural), n.out())?]);
    }
    let o = cx.fresh(n.out());
    let y = cx.reshape(&y, &dims(&natural), &o)?;
    Ok(vec![permute(cx, n, &y, &natural, &out, Some(n.out()))?])
}
