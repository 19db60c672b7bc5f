//! Elementwise ops: activations (unary), math functions outside the activation table
//! (`log`, `sqrt`, ...), `clip` with ONNX's optional bound inputs, and binary ops with numpy
//! broadcasting (f32 on the GPU; i64/i32 on the CPU, for shape arithmetic).

use super::{grid_1d, Activation, Bind, Dispatch, LowerCtx, OpFamily, Standard};
use crate::error::{Error, Result};
use crate::gpu::shader::{ShaderKey, ShaderSource};
use crate::tensor::{fmt_shape, numel, DType, Tensor, TensorData, ValueType};
use serde::{Deserialize, Serialize};

/// A standalone activation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Unary {
    pub act: Activation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BinaryKind {
    Add,
    Sub,
    Mul,
    Div,
    /// `a^b` (ONNX `Pow`; a negative base takes integer exponents only, else NaN).
    Pow,
    /// Elementwise maximum (ONNX two-input `Max`).
    Max,
    /// Elementwise minimum (ONNX two-input `Min`).
    Min,
    /// Truncated remainder, the sign of the dividend (C `fmod`; ONNX `Mod` with `fmod = 1`).
    Fmod,
    /// Floored remainder, the sign of the divisor (Python `%`; ONNX `Mod` with `fmod = 0`).
    Mod,
    /// `a` where `a >= 0`, else `b * a`: ONNX `PRelu` with the slope `b` broadcast.
    Prelu,
}

impl BinaryKind {
    pub fn name(self) -> &'static str {
        match self {
            BinaryKind::Add => "add",
            BinaryKind::Sub => "sub",
            BinaryKind::Mul => "mul",
            BinaryKind::Div => "div",
            BinaryKind::Pow => "pow",
            BinaryKind::Max => "max",
            BinaryKind::Min => "min",
            BinaryKind::Fmod => "fmod",
            BinaryKind::Mod => "mod",
            BinaryKind::Prelu => "prelu",
        }
    }

    /// The f32 formula (the WGSL `apply` in `shaders/elementwise/binary.wgsl` follows it).
    pub fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            BinaryKind::Add => a + b,
            BinaryKind::Sub => a - b,
            BinaryKind::Mul => a * b,
            BinaryKind::Div => a / b,
            BinaryKind::Pow => a.powf(b),
            // NaN propagates (f32::max would drop it), as in ONNX runtimes.
            BinaryKind::Max => {
                if a.is_nan() || b.is_nan() {
                    f32::NAN
                } else {
                    a.max(b)
                }
            }
            BinaryKind::Min => {
                if a.is_nan() || b.is_nan() {
                    f32::NAN
                } else {
                    a.min(b)
                }
            }
            BinaryKind::Fmod => a % b,
            BinaryKind::Mod => {
                let r = a % b;
                if r != 0.0 && (r < 0.0) != (b < 0.0) {
                    r + b
                } else {
                    r
                }
            }
            BinaryKind::Prelu => {
                if a >= 0.0 {
                    a
                } else {
                    b * a
                }
            }
        }
    }

    /// The integer formula (CPU only); `None` for a zero divisor or a negative exponent.
    fn apply_int(self, a: i64, b: i64) -> Option<i64> {
        Some(match self {
            BinaryKind::Add => a.wrapping_add(b),
            BinaryKind::Sub => a.wrapping_sub(b),
            BinaryKind::Mul => a.wrapping_mul(b),
            // Truncates toward zero, as C and ONNX runtimes do.
            BinaryKind::Div => a.checked_div(b)?,
            BinaryKind::Pow => a.wrapping_pow(u32::try_from(b).ok()?),
            BinaryKind::Max => a.max(b),
            BinaryKind::Min => a.min(b),
            BinaryKind::Fmod => a.checked_rem(b)?,
            BinaryKind::Mod => {
                let r = a.checked_rem(b)?;
                if r != 0 && (r < 0) != (b < 0) {
                    r + b
                } else {
                    r
                }
            }
            BinaryKind::Prelu => {
                if a >= 0 {
                    a
                } else {
                    b.wrapping_mul(a)
                }
            }
        })
    }
}

/// `act(a (op) b)` with broadcasting.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Binary {
    pub kind: BinaryKind,
    #[serde(default)]
    pub act: Activation,
}

/// The most dims a broadcasting or transposing kernel handles.
pub const MAX_RANK: usize = 8;

/// Numpy broadcast of two shapes.
pub fn broadcast_shape(op: &str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for i in 0..r {
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
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => {
                return Err(Error::shape(
                    op,
                    format!("shapes broadcastable with {}", fmt_shape(a)),
                    fmt_shape(b),
                ))
            }
        };
    }
    Ok(out)
}

/// Strides of `shape` read as `out` (0 along broadcast dims), right-aligned.
pub fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let r = out.len();
    let mut st = vec![0; r];
    let mut s = 1;
    for i in (0..shape.len()).rev() {
        let oi = i + r - shape.len();
        st[oi] = if shape[i] == 1 && out[oi] != 1 { 0 } else { s };
        s *= shape[i];
    }
    st
}

/// For each output element (row-major), the indices of the two broadcast inputs it reads.
pub fn broadcast_pairs<'a>(
    a: &[usize],
    b: &[usize],
    out: &'a [usize],
) -> impl Iterator<Item = (usize, usize)> + 'a {
    let (sa, sb) = (broadcast_strides(a, out), broadcast_strides(b, out));
    (0..numel(out)).map(move |i| {
        let (mut rem, mut ia, mut ib) = (i, 0, 0);
        for d in (0..out.len()).rev() {
            let c = rem % out[d];
            rem /= out[d];
            ia += c * sa[d];
            ib += c * sb[d];
        }
        (ia, ib)
    })
}

pub(crate) fn words8(v: &[usize]) -> [u32; 8] {
    let mut w = [1u32; 8];
    for (i, x) in v.iter().enumerate() {
        w[i] = *x as u32;
    }
    w
}

impl Binary {
    pub(crate) fn shape_of(&self, ins: &[Vec<usize>]) -> Result<Vec<usize>> {
        let out = broadcast_shape(self.kind.name(), &ins[0], &ins[1])?;
        if out.len() > MAX_RANK {
            return Err(Error::Unsupported {
                op: self.kind.name().into(),
                what: format!("rank {} > {MAX_RANK}", out.len()),
                backend: "any".into(),
            });
        }
        Ok(out)
    }

    pub(crate) fn cpu_f32(&self, xs: &[&[f32]], shapes: &[Vec<usize>], out: &[usize]) -> Vec<f32> {
        let (sa, sb) = (
            broadcast_strides(&shapes[0], out),
            broadcast_strides(&shapes[1], out),
        );
        let n = numel(out);
        let mut y = Vec::with_capacity(n);
        for i in 0..n {
            let (mut rem, mut ia, mut ib) = (i, 0, 0);
            for d in (0..out.len()).rev() {
                let c = rem % out[d];
                rem /= out[d];
                ia += c * sa[d];
                ib += c * sb[d];
            }
            y.push(self.act.apply(self.kind.apply(xs[0][ia], xs[1][ib])));
        }
        y
    }

    /// The integer reference: both inputs i64 or both i32 (checked by `infer`).
    fn cpu_int(&self, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
        let op = self.kind.name();
        let ints = |t: &Tensor| -> Result<Vec<i64>> {
            match t.data() {
                TensorData::I64(v) => Ok(v.clone()),
                TensorData::I32(v) => Ok(v.iter().map(|&x| x as i64).collect()),
                _ => Err(Error::DTypeMismatch {
                    op: op.into(),
                    expected: out.dtype.to_string(),
                    got: t.dtype().to_string(),
                }),
            }
        };
        let (a, b) = (ints(ins[0])?, ints(ins[1])?);
        let mut y = Vec::with_capacity(numel(&out.shape));
        for (ia, ib) in broadcast_pairs(ins[0].shape(), ins[1].shape(), &out.shape) {
            y.push(self.kind.apply_int(a[ia], b[ib]).ok_or_else(|| {
                Error::graph(format!(
                    "{op}: integer {op} of {} by {} is undefined (zero divisor or negative \
                     exponent)",
                    a[ia], b[ib]
                ))
            })?);
        }
        let data = match out.dtype {
            DType::I32 => TensorData::I32(y.into_iter().map(|v| v as i32).collect()),
            _ => TensorData::I64(y),
        };
        Tensor::from_data(&out.shape, data)
    }

    pub(crate) fn dispatches(&self, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        let out = cx.out_shape;
        let n = numel(out);
        let same = cx.in_shapes[0] == out && cx.in_shapes[1] == out;
        let mut params = vec![n as u32, out.len() as u32, same as u32, 0];
        params.extend(words8(out));
        params.extend(words8(&broadcast_strides(&cx.in_shapes[0], out)));
        params.extend(words8(&broadcast_strides(&cx.in_shapes[1], out)));
        Ok(vec![Dispatch {
            shader: ShaderKey::new(&BINARY, &[("OP", self.kind as u32)]),
            overrides: self.act.overrides(),
            params,
            bindings: vec![Bind::Input(0), Bind::Input(1), Bind::Output],
            workgroups: grid_1d((n as u64).div_ceil(256), cx.max_workgroups),
        }])
    }
}

/// `y = act(x)` elementwise.
fn unary_dispatch(act: Activation, cx: &LowerCtx) -> Dispatch {
    let n = numel(cx.out_shape);
    Dispatch {
        shader: ShaderKey::new(&UNARY, &[]),
        overrides: act.overrides(),
        params: vec![n as u32, 0, 0, 0],
        bindings: vec![Bind::Input(0), Bind::Output],
        workgroups: grid_1d((n as u64).div_ceil(256), cx.max_workgroups),
    }
}

static UNARY: ShaderSource = crate::wgsl!("elementwise/unary.wgsl");
static BINARY: ShaderSource = crate::wgsl!("elementwise/binary.wgsl"; [
    [("OP", 0)], [("OP", 1)], [("OP", 2)], [("OP", 3)], [("OP", 4)], [("OP", 5)], [("OP", 6)],
    [("OP", 7)], [("OP", 8)], [("OP", 9)]
]);

impl OpFamily for Unary {
    const FAMILY: &'static str = "unary";
    type Kernel = Standard;

    fn infer(&self, ins: &[ValueType]) -> Result<ValueType> {
        self.act.check("unary")?;
        super::float_op("unary", ins, |s| Ok(s[0].clone()))
    }

    fn cpu(&self, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
        super::cpu_f32("unary", ins, out, |xs, _| {
            xs[0].iter().map(|&v| self.act.apply(v)).collect()
        })
    }

    fn cpu_kernel(&self, cx: &super::CpuCtx) -> Option<&'static str> {
        super::cpu_fast::f32_kernel(cx, super::cpu_fast::ELTWISE)
    }

    fn cpu_fast(&self, kernel: &str, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
        super::cpu_fast::unary(self.act, kernel, ins, out)
    }

    fn lower(&self, _k: &Standard, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        Ok(vec![unary_dispatch(self.act, cx)])
    }

    fn shaders() -> Vec<&'static ShaderSource> {
        vec![&UNARY]
    }
}

impl OpFamily for Binary {
    const FAMILY: &'static str = "binary";
    type Kernel = Standard;

    fn name(&self) -> &'static str {
        self.kind.name()
    }

    fn arity(&self) -> (usize, usize) {
        (2, 2)
    }

    /// f32 (GPU or CPU), or i64/i32 on the CPU (shape arithmetic) with no activation.
    fn infer(&self, ins: &[ValueType]) -> Result<ValueType> {
        let op = self.kind.name();
        self.act.check(op)?;
        let d = ins[0].dtype;
        if d == DType::I64 || d == DType::I32 {
            if ins[1].dtype != d {
                return Err(Error::DTypeMismatch {
                    op: format!("{op} input 1"),
                    expected: d.to_string(),
                    got: ins[1].dtype.to_string(),
                });
            }
            if self.act != Activation::None {
                return Err(Error::graph(format!(
                    "{op}: a fused activation needs f32 inputs, got {d}"
                )));
            }
            return Ok(ValueType::new(
                d,
                &self.shape_of(&[ins[0].shape.clone(), ins[1].shape.clone()])?,
            ));
        }
        super::float_op(op, ins, |s| self.shape_of(s))
    }

    fn cpu(&self, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
        if out.dtype != DType::F32 {
            return self.cpu_int(ins, out);
        }
        super::cpu_f32(self.kind.name(), ins, out, |xs, shapes| {
            self.cpu_f32(xs, shapes, &out.shape)
        })
    }

    /// f32 only (integer shape arithmetic stays on the reference).
    fn cpu_kernel(&self, cx: &super::CpuCtx) -> Option<&'static str> {
        super::cpu_fast::f32_kernel(cx, super::cpu_fast::ELTWISE)
    }

    fn cpu_fast(&self, kernel: &str, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
        super::cpu_fast::binary(self, kernel, ins, out)
    }

    fn lower(&self, _k: &Standard, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        self.dispatches(cx)
    }

    fn shaders() -> Vec<&'static ShaderSource> {
        vec![&BINARY]
    }
}

/// Elementwise math functions kept out of the (fusable) activation table: their domain is
/// limited (`log`, `sqrt` of a negative number is NaN; `reciprocal` of 0 is infinite), GPUs
/// compute them with an absolute rather than relative error bound (`sin`, `cos`: Vulkan allows
/// 2^-11 on [-pi, pi]), they amplify an epilogue's accumulated rounding (`exp`) or jump
/// (`floor`, `ceil`, `round`, `sign`: a last-bit difference in a fused sum can change the result
/// by 1), so they are not epilogues checked against every kernel on the activations' inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MathKind {
    Log,
    Sqrt,
    Reciprocal,
    Sin,
    Cos,
    Exp,
    Floor,
    Ceil,
    /// Half to even (ONNX `Round`, WGSL `round`).
    Round,
    /// -1, 0 or 1 (0 at zero, unlike `f32::signum`).
    Sign,
}

impl MathKind {
    pub fn name(self) -> &'static str {
        match self {
            MathKind::Log => "log",
            MathKind::Sqrt => "sqrt",
            MathKind::Reciprocal => "reciprocal",
            MathKind::Sin => "sin",
            MathKind::Cos => "cos",
            MathKind::Exp => "exp",
            MathKind::Floor => "floor",
            MathKind::Ceil => "ceil",
            MathKind::Round => "round",
            MathKind::Sign => "sign",
        }
    }

    /// The CPU formula (the WGSL one is the `case` of the same code in `math.wgsl`).
    pub fn apply(self, x: f32) -> f32 {
        match self {
            MathKind::Log => x.ln(),
            MathKind::Sqrt => x.sqrt(),
            MathKind::Reciprocal => 1.0 / x,
            MathKind::Sin => x.sin(),
            MathKind::Cos => x.cos(),
            MathKind::Exp => x.exp(),
            MathKind::Floor => x.floor(),
            MathKind::Ceil => x.ceil(),
            MathKind::Round => x.round_ties_even(),
            MathKind::Sign => {
                if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    x
                }
            }
        }
    }
}

/// `y = f(x)` for a [`MathKind`] `f` (ONNX `Log`, `Sqrt`, `Reciprocal`, `Sin`, `Cos`, `Exp`,
/// `Floor`, `Ceil`, `Round`, `Sign`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Math {
    pub kind: MathKind,
}

static MATH: ShaderSource = crate::wgsl!("elementwise/math.wgsl"; [
    [("OP", 0)], [("OP", 1)], [("OP", 2)], [("OP", 3)], [("OP", 4)], [("OP", 5)], [("OP", 6)],
    [("OP", 7)], [("OP", 8)], [("OP", 9)]
]);

impl OpFamily for Math {
    const FAMILY: &'static str = "math";
    type Kernel = Standard;

    fn name(&self) -> &'static str {
        self.kind.name()
    }

    fn infer(&self, ins: &[ValueType]) -> Result<ValueType> {
        super::float_op(self.kind.name(), ins, |s| Ok(s[0].clone()))
    }

    fn cpu(&self, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
        super::cpu_f32(self.kind.name(), ins, out, |xs, _| {
            xs[0].iter().map(|&v| self.kind.apply(v)).collect()
        })
    }

    fn lower(&self, _k: &Standard, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        let n = numel(cx.out_shape);
        Ok(vec![Dispatch {
            shader: ShaderKey::new(&MATH, &[("OP", self.kind as u32)]),
            overrides: Activation::None.overrides(),
            params: vec![n as u32, 0, 0, 0],
            bindings: vec![Bind::Input(0), Bind::Output],
            workgroups: grid_1d((n as u64).div_ceil(256), cx.max_workgroups),
        }])
    }

    fn shaders() -> Vec<&'static ShaderSource> {
        vec![&MATH]
    }
}

/// ONNX `Clip`: bounds as attributes (opset < 11) or as optional inputs 1 (min) and 2 (max),
/// one-element f32 tensors whose values must be known when the graph is planned (a weight or
/// computed from weights); the session moves them into `min`/`max`. A missing bound is
/// unbounded. It runs as the activation [`Activation::clip`] picks (`relu`, `relu6` or
/// `clip`); an importer that knows the bounds may emit that [`Unary`] directly, which the
/// fusion pass can fold into a producer's epilogue.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Clip {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f32>,
}

impl Clip {
    /// The bounds, the inputs' values over the attributes (an input whose value is unknown is
    /// an error naming it).
    fn bounds(&self, n_inputs: usize, consts: &[Option<&Tensor>]) -> Result<Clip> {
        let mut c = *self;
        for (i, what) in [(1, "min"), (2, "max")] {
            if n_inputs <= i {
                continue;
            }
            let t = super::const_input(consts, i).ok_or_else(|| {
                Error::graph(format!(
                    "clip: its {what} (input {i}) must be known when the graph is planned (a \
                     weight, or computed from weights and shapes only)"
                ))
            })?;
            let v = match (t.data(), t.numel()) {
                (TensorData::F32(v), 1) => v[0],
                _ => {
                    return Err(Error::shape(
                        format!("clip {what} (input {i})"),
                        "one f32 element",
                        format!("{} {}", t.dtype(), fmt_shape(t.shape())),
                    ))
                }
            };
            if v.is_nan() {
                return Err(Error::graph(format!("clip: {what} (input {i}) is NaN")));
            }
            if i == 1 {
                c.min = Some(v);
            } else {
                c.max = Some(v);
            }
        }
        Ok(c)
    }

    /// The activation that computes it.
    pub fn act(&self) -> Activation {
        Activation::clip(self.min, self.max)
    }
}

impl OpFamily for Clip {
    const FAMILY: &'static str = "clip";
    type Kernel = Standard;

    fn arity(&self) -> (usize, usize) {
        (1, 3)
    }

    fn infer(&self, ins: &[ValueType]) -> Result<ValueType> {
        self.infer_consts(ins, &[])
    }

    fn infer_consts(&self, ins: &[ValueType], consts: &[Option<&Tensor>]) -> Result<ValueType> {
        let c = self.bounds(ins.len(), consts)?;
        for (what, v) in [("min", c.min), ("max", c.max)] {
            if v.is_some_and(|v| v.is_nan()) {
                return Err(Error::graph(format!("clip: attribute {what} is NaN")));
            }
        }
        super::float_op("clip", &ins[..1], |s| Ok(s[0].clone()))
    }

    fn absorb_consts(&mut self, consts: &[Option<&Tensor>]) -> Result<Vec<usize>> {
        let n = consts.len();
        if n < 2 || (1..n).any(|i| super::const_input(consts, i).is_none()) {
            return Ok(Vec::new());
        }
        *self = self.bounds(n, consts)?;
        Ok((1..n).collect())
    }

    fn cpu(&self, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
        let consts: Vec<Option<&Tensor>> = ins.iter().map(|&t| Some(t)).collect();
        let act = self.bounds(ins.len(), &consts)?.act();
        super::cpu_f32("clip", &ins[..1], out, |xs, _| {
            xs[0].iter().map(|&v| act.apply(v)).collect()
        })
    }

    /// Only once the bounds are attributes (the session absorbs constant bound inputs).
    fn select(&self, cx: &super::SelectCtx) -> Option<Standard> {
        (cx.ins.len() == 1 && cx.dense_f32()).then_some(Standard::Standard)
    }

    fn lower(&self, _k: &Standard, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        if cx.in_shapes.len() != 1 {
            return Err(super::unsupported("clip", "bounds given as inputs"));
        }
        Ok(vec![unary_dispatch(self.act(), cx)])
    }

    fn shaders() -> Vec<&'static ShaderSource> {
        Vec::new()
    }
}
