//! Comparisons (ONNX `Equal`, `Less`, `Greater`, `LessOrEqual`, `GreaterOrEqual`), boolean
//! logic (`Not`, `And`, `Or`, `Xor`) and `Where`, all with numpy broadcasting.
//!
//! Comparisons and logic produce or consume `bool` values (one byte per element) and run on
//! the CPU inside the plan: in the models at hand they compute masks from integer inputs once
//! per run, off the hot path. `Where` with f32 operands (an attention mask applied to scores)
//! has a GPU kernel: the memory plan stores a bool value as one byte per element in a range
//! rounded up to whole 32-bit words (a bool weight is uploaded the same way), so the kernel
//! reads the condition as packed bytes of `u32` words.

use super::elementwise::{broadcast_shape, broadcast_strides, words8, MAX_RANK};
use super::{grid_1d, Activation, Bind, Dispatch, LowerCtx, OpFamily, SelectCtx, Standard};
use crate::error::{Error, Result};
use crate::gpu::shader::{ShaderKey, ShaderSource};
use crate::tensor::{numel, DType, Tensor, TensorData, ValueType};
use serde::{Deserialize, Serialize};

/// What a [`Compare`] tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompareKind {
    Equal,
    Less,
    Greater,
    LessOrEqual,
    GreaterOrEqual,
}

impl CompareKind {
    pub fn name(self) -> &'static str {
        match self {
            CompareKind::Equal => "equal",
            CompareKind::Less => "less",
            CompareKind::Greater => "greater",
            CompareKind::LessOrEqual => "less_or_equal",
            CompareKind::GreaterOrEqual => "greater_or_equal",
        }
    }

    fn test<T: PartialOrd>(self, a: T, b: T) -> bool {
        match self {
            CompareKind::Equal => a == b,
            CompareKind::Less => a < b,
            CompareKind::Greater => a > b,
            CompareKind::LessOrEqual => a <= b,
            CompareKind::GreaterOrEqual => a >= b,
        }
    }
}

/// `a (cmp) b` elementwise with broadcasting: two inputs of one dtype (f32, i64, i32, or bool
/// for `equal`), a bool output. CPU only (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Compare {
    pub kind: CompareKind,
}

/// Which boolean function a [`Logic`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogicKind {
    /// One input.
    Not,
    And,
    Or,
    Xor,
}

impl LogicKind {
    pub fn name(self) -> &'static str {
        match self {
            LogicKind::Not => "not",
            LogicKind::And => "and",
            LogicKind::Or => "or",
            LogicKind::Xor => "xor",
        }
    }
}

/// Boolean logic on bool inputs (one for `not`, two with broadcasting otherwise). CPU only.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Logic {
    pub kind: LogicKind,
}

/// `cond ? x : y` elementwise with broadcasting of all three (ONNX `Where`): `cond` bool, `x`
/// and `y` of one dtype, the output of that dtype.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Where {}

/// Checks that inputs `ins` share a dtype and returns it.
fn same_dtype(op: &str, ins: &[(usize, &ValueType)]) -> Result<DType> {
    let d = ins[0].1.dtype;
    for (i, v) in ins {
        if v.dtype != d {
            return Err(Error::DTypeMismatch {
                op: format!("{op} input {i}"),
                expected: d.to_string(),
                got: v.dtype.to_string(),
            });
        }
    }
    Ok(d)
}

fn need_dtype(op: &str, i: usize, v: &ValueType, want: DType) -> Result<()> {
    if v.dtype != want {
        return Err(Error::DTypeMismatch {
            op: format!("{op} input {i}"),
            expected: want.to_string(),
            got: v.dtype.to_string(),
        });
    }
    Ok(())
}

/// Output shape of broadcasting all `shapes`, or an error naming `op`.
fn broadcast_all(op: &str, shapes: &[&[usize]]) -> Result<Vec<usize>> {
    let mut out = shapes[0].to_vec();
    for s in &shapes[1..] {
        out = broadcast_shape(op, &out, s)?;
    }
    Ok(out)
}

/// For each output element, the index each input reads.
fn gather_indices(shapes: &[&[usize]], out: &[usize]) -> Vec<Vec<usize>> {
    let strides: Vec<Vec<usize>> = shapes.iter().map(|s| broadcast_strides(s, out)).collect();
    let mut idx = vec![Vec::with_capacity(numel(out)); shapes.len()];
    for i in 0..numel(out) {
        let mut rem = i;
        let mut at = vec![0; shapes.len()];
        for d in (0..out.len()).rev() {
            let c = rem % out[d];
            rem /= out[d];
            for (a, st) in at.iter_mut().zip(&strides) {
                *a += c * st[d];
            }
        }
        for (v, a) in idx.iter_mut().zip(at) {
            v.push(a);
        }
    }
    idx
}

fn bools(op: &str, t: &Tensor) -> Result<Vec<bool>> {
    match t.data() {
        TensorData::Bool(v) => Ok(v.iter().map(|&b| b != 0).collect()),
        _ => Err(Error::DTypeMismatch {
            op: op.into(),
            expected: "bool".into(),
            got: t.dtype().to_string(),
        }),
    }
}

fn bool_tensor(shape: &[usize], v: impl Iterator<Item = bool>) -> Result<Tensor> {
    Tensor::from_data(shape, TensorData::Bool(v.map(u8::from).collect()))
}

impl OpFamily for Compare {
    const FAMILY: &'static str = "compare";
    type Kernel = Standard;

    fn name(&self) -> &'static str {
        self.kind.name()
    }

    fn arity(&self) -> (usize, usize) {
        (2, 2)
    }

    fn infer(&self, ins: &[ValueType]) -> Result<ValueType> {
        let op = self.kind.name();
        let d = same_dtype(op, &[(0, &ins[0]), (1, &ins[1])])?;
        let ok = matches!(d, DType::F32 | DType::I64 | DType::I32)
            || (d == DType::Bool && self.kind == CompareKind::Equal);
        if !ok {
            return Err(Error::DTypeMismatch {
                op: format!("{op} input 0"),
                expected: "f32, i64 or i32 (or bool for equal)".into(),
                got: d.to_string(),
            });
        }
        let out = broadcast_all(op, &[&ins[0].shape, &ins[1].shape])?;
        Ok(ValueType::new(DType::Bool, &out))
    }

    fn cpu(&self, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
        let idx = gather_indices(&[ins[0].shape(), ins[1].shape()], &out.shape);
        let pairs = idx[0].iter().zip(&idx[1]);
        let k = self.kind;
        match (ins[0].data(), ins[1].data()) {
            (TensorData::F32(a), TensorData::F32(b)) => {
                bool_tensor(&out.shape, pairs.map(|(&i, &j)| k.test(a[i], b[j])))
            }
            (TensorData::I64(a), TensorData::I64(b)) => {
                bool_tensor(&out.shape, pairs.map(|(&i, &j)| k.test(a[i], b[j])))
            }
            (TensorData::I32(a), TensorData::I32(b)) => {
                bool_tensor(&out.shape, pairs.map(|(&i, &j)| k.test(a[i], b[j])))
            }
            (TensorData::Bool(a), TensorData::Bool(b)) => bool_tensor(
                &out.shape,
                pairs.map(|(&i, &j)| k.test(a[i] != 0, b[j] != 0)),
            ),
            _ => Err(super::unsupported(self.kind.name(), "these dtypes")),
        }
    }

    /// CPU only (see the module doc).
    fn select(&self, _cx: &SelectCtx) -> Option<Standard> {
        None
    }

    fn lower(&self, _k: &Standard, _cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        Err(super::unsupported(
            self.kind.name(),
            "no GPU kernel (runs on the CPU)",
        ))
    }

    fn shaders() -> Vec<&'static ShaderSource> {
        Vec::new()
    }
}

impl OpFamily for Logic {
    const FAMILY: &'static str = "logic";
    type Kernel = Standard;

    fn name(&self) -> &'static str {
        self.kind.name()
    }

    fn arity(&self) -> (usize, usize) {
        if self.kind == LogicKind::Not {
            (1, 1)
        } else {
            (2, 2)
        }
    }

    fn infer(&self, ins: &[ValueType]) -> Result<ValueType> {
        let op = self.kind.name();
        for (i, v) in ins.iter().enumerate() {
            need_dtype(op, i, v, DType::Bool)?;
        }
        let shapes: Vec<&[usize]> = ins.iter().map(|v| v.shape.as_slice()).collect();
        Ok(ValueType::new(DType::Bool, &broadcast_all(op, &shapes)?))
    }

    fn cpu(&self, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
        let op = self.kind.name();
        let a = bools(op, ins[0])?;
        if self.kind == LogicKind::Not {
            return bool_tensor(&out.shape, a.into_iter().map(|v| !v));
        }
        let b = bools(op, ins[1])?;
        let idx = gather_indices(&[ins[0].shape(), ins[1].shape()], &out.shape);
        let f = |x: bool, y: bool| match self.kind {
            LogicKind::And => x && y,
            LogicKind::Or => x || y,
            _ => x != y,
        };
        bool_tensor(
            &out.shape,
            idx[0].iter().zip(&idx[1]).map(|(&i, &j)| f(a[i], b[j])),
        )
    }

    /// CPU only (see the module doc).
    fn select(&self, _cx: &SelectCtx) -> Option<Standard> {
        None
    }

    fn lower(&self, _k: &Standard, _cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        Err(super::unsupported(
            self.kind.name(),
            "no GPU kernel (runs on the CPU)",
        ))
    }

    fn shaders() -> Vec<&'static ShaderSource> {
        Vec::new()
    }
}

static WHERE: ShaderSource = crate::wgsl!("elementwise/where.wgsl");

impl OpFamily for Where {
    const FAMILY: &'static str = "where";
    type Kernel = Standard;

    fn arity(&self) -> (usize, usize) {
        (3, 3)
    }

    fn infer(&self, ins: &[ValueType]) -> Result<ValueType> {
        need_dtype("where", 0, &ins[0], DType::Bool)?;
        let d = same_dtype("where", &[(1, &ins[1]), (2, &ins[2])])?;
        let out = broadcast_all("where", &[&ins[0].shape, &ins[1].shape, &ins[2].shape])?;
        Ok(ValueType::new(d, &out))
    }

    /// Any dtype: copies the chosen element's bytes.
    fn cpu(&self, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
        let c = bools("where", ins[0])?;
        let size = out.dtype.size();
        let (x, y) = (ins[1].bytes(), ins[2].bytes());
        let idx = gather_indices(
            &[ins[0].shape(), ins[1].shape(), ins[2].shape()],
            &out.shape,
        );
        let mut bytes = Vec::with_capacity(numel(&out.shape) * size);
        for k in 0..idx[0].len() {
            let (src, i) = if c[idx[0][k]] {
                (x, idx[1][k])
            } else {
                (y, idx[2][k])
            };
            bytes.extend_from_slice(&src[i * size..(i + 1) * size]);
        }
        Tensor::from_bytes(out.dtype, &out.shape, &bytes)
    }

    /// A bool condition with dense f32 operands, rank <= 8.
    fn select(&self, cx: &SelectCtx) -> Option<Standard> {
        let ok = cx.ins[0].dtype == DType::Bool
            && cx.ins[1..].iter().all(|v| v.dtype == DType::F32)
            && cx.out.dtype == DType::F32
            && cx.formats.iter().all(|f| f.is_dense())
            && cx.out.shape.len() <= MAX_RANK;
        ok.then_some(Standard::Standard)
    }

    fn lower(&self, _k: &Standard, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        let out = cx.out_shape;
        if out.len() > MAX_RANK {
            return Err(super::unsupported("where", format!("rank > {MAX_RANK}")));
        }
        let n = numel(out);
        let mut params = vec![super::word(n), out.len() as u32, 0, 0];
        params.extend(words8(out));
        for s in cx.in_shapes {
            params.extend(words8(&broadcast_strides(s, out)));
        }
        Ok(vec![Dispatch {
            shader: ShaderKey::new(&WHERE, &[]),
            overrides: Activation::None.overrides(),
            params,
            bindings: vec![Bind::Input(0), Bind::Input(1), Bind::Input(2), Bind::Output],
            workgroups: grid_1d((n as u64).div_ceil(256), cx.max_workgroups),
        }])
    }

    fn shaders() -> Vec<&'static ShaderSource> {
        vec![&WHERE]
    }
}
