//! Elementwise ops: activations (unary) and add/sub/mul/div with numpy broadcasting.

use super::{grid_1d, Activation, Bind, Dispatch, LowerCtx, OpFamily, Standard};
use crate::error::{Error, Result};
use crate::gpu::shader::{ShaderKey, ShaderSource};
use crate::tensor::{fmt_shape, numel, Tensor, ValueType};
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
}

impl BinaryKind {
    pub fn name(self) -> &'static str {
        match self {
            BinaryKind::Add => "add",
            BinaryKind::Sub => "sub",
            BinaryKind::Mul => "mul",
            BinaryKind::Div => "div",
        }
    }
    fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            BinaryKind::Add => a + b,
            BinaryKind::Sub => a - b,
            BinaryKind::Mul => a * b,
            BinaryKind::Div => a / b,
        }
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
static BINARY: ShaderSource =
    crate::wgsl!("elementwise/binary.wgsl"; [[("OP", 0)], [("OP", 1)], [("OP", 2)], [("OP", 3)]]);

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

    fn infer(&self, ins: &[ValueType]) -> Result<ValueType> {
        self.act.check(self.kind.name())?;
        super::float_op(self.kind.name(), ins, |s| self.shape_of(s))
    }

    fn cpu(&self, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
        super::cpu_f32(self.kind.name(), ins, out, |xs, shapes| {
            self.cpu_f32(xs, shapes, &out.shape)
        })
    }

    fn lower(&self, _k: &Standard, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        self.dispatches(cx)
    }

    fn shaders() -> Vec<&'static ShaderSource> {
        vec![&BINARY]
    }
}
