//! Reductions over axes (ONNX `ReduceSum`, `ReduceMean`, `ReduceMax`, `ReduceMin`,
//! `ReduceProd`, `ReduceL1`, `ReduceL2`, `ReduceLogSumExp`, `ReduceSumSquare`) and the index
//! reductions `ArgMax` / `ArgMin`.
//!
//! The GPU kernel views the input as kept dims x reduced dims, each list with adjacent dims
//! merged (a contiguous axis set becomes the (outer, reduce, inner) view, any other set a
//! strided walk over at most 4 + 4 dims): one invocation per output for short reductions, one
//! workgroup per output (strided partials, then a tree) for long ones. The CPU reference
//! accumulates in f64, so it is the exact answer up to one final rounding and the tests'
//! tolerance is the GPU's own f32 error alone.

use super::elementwise::MAX_RANK;
use super::norm::norm_axis;
use super::{grid_1d, Activation, Bind, Dispatch, LowerCtx, OpFamily, SelectCtx, Standard};
use crate::error::{Error, Result};
use crate::gpu::shader::{ShaderKey, ShaderSource};
use crate::tensor::{fmt_shape, numel, DType, Tensor, TensorData, ValueType};
use serde::{Deserialize, Serialize};

fn yes() -> bool {
    true
}

/// What a [`Reduce`] computes over the reduced elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReduceKind {
    Sum,
    Mean,
    Max,
    Min,
    Prod,
    /// Sum of absolute values.
    L1,
    /// Square root of the sum of squares.
    L2,
    /// `log(sum(exp(x)))`, computed as `m + log(sum(exp(x - m)))` with `m` the maximum.
    LogSumExp,
    SumSquare,
}

impl ReduceKind {
    pub fn name(self) -> &'static str {
        match self {
            ReduceKind::Sum => "reduce_sum",
            ReduceKind::Mean => "reduce_mean",
            ReduceKind::Max => "reduce_max",
            ReduceKind::Min => "reduce_min",
            ReduceKind::Prod => "reduce_prod",
            ReduceKind::L1 => "reduce_l1",
            ReduceKind::L2 => "reduce_l2",
            ReduceKind::LogSumExp => "reduce_log_sum_exp",
            ReduceKind::SumSquare => "reduce_sum_square",
        }
    }
}

/// A reduction over `axes` (negative axes count from the end). The axes are the attribute, or
/// ONNX's optional input 1 (opset 13 for `ReduceSum`, 18 for the others): a 1-D i64 tensor
/// whose value must be known when the graph is planned; the session moves it into `axes`.
/// Empty axes reduce every axis, or nothing when `noop_with_empty_axes` (ONNX rules).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reduce {
    pub kind: ReduceKind,
    #[serde(default)]
    pub axes: Vec<i64>,
    #[serde(default = "yes")]
    pub keepdims: bool,
    #[serde(default)]
    pub noop_with_empty_axes: bool,
}

impl Reduce {
    /// A reduction of `kind` over `axes` (ONNX defaults otherwise: keepdims on).
    pub fn new(kind: ReduceKind, axes: &[i64], keepdims: bool) -> Reduce {
        Reduce {
            kind,
            axes: axes.to_vec(),
            keepdims,
            noop_with_empty_axes: false,
        }
    }

    /// The axes, from input 1 when there is one (its value must be known).
    fn axes_of(&self, n_inputs: usize, consts: &[Option<&Tensor>]) -> Result<Vec<i64>> {
        let op = self.kind.name();
        if n_inputs < 2 {
            return Ok(self.axes.clone());
        }
        let t = super::const_input(consts, 1).ok_or_else(|| {
            Error::graph(format!(
                "{op}: its axes (input 1) must be known when the graph is planned (a weight, or \
                 computed from weights and shapes only)"
            ))
        })?;
        if t.shape().len() != 1 {
            return Err(Error::shape(
                format!("{op} axes (input 1)"),
                "a 1-D tensor",
                fmt_shape(t.shape()),
            ));
        }
        super::shape::int_values(&format!("{op} axes (input 1)"), t)
    }

    /// Which dims of `shape` are reduced, and the output shape.
    fn plan(&self, shape: &[usize], axes: &[i64]) -> Result<(Vec<bool>, Vec<usize>)> {
        let op = self.kind.name();
        let mut red = vec![axes.is_empty() && !self.noop_with_empty_axes; shape.len()];
        for &a in axes {
            let d = norm_axis(&format!("{op} axes"), a, shape.len())?;
            if std::mem::replace(&mut red[d], true) {
                return Err(Error::graph(format!(
                    "{op}: axis {a} appears twice in axes {axes:?}"
                )));
            }
        }
        let out = shape
            .iter()
            .zip(&red)
            .filter_map(|(&d, &r)| match (r, self.keepdims) {
                (false, _) => Some(d),
                (true, true) => Some(1),
                (true, false) => None,
            })
            .collect();
        Ok((red, out))
    }

    /// The reference on f32 values, accumulating in f64.
    fn cpu_f32(&self, x: &[f32], shape: &[usize], red: &[bool], n_out: usize) -> Vec<f32> {
        // Output index of each input element: its coordinates with the reduced ones dropped.
        let out_index = |i: usize| {
            let (mut rem, mut o, mut scale) = (i, 0, 1);
            for d in (0..shape.len()).rev() {
                let c = rem % shape[d];
                rem /= shape[d];
                if !red[d] {
                    o += c * scale;
                    scale *= shape[d];
                }
            }
            o
        };
        let count = (x.len() / n_out.max(1)) as f64;
        let k = self.kind;
        let init = match k {
            ReduceKind::Prod => 1.0,
            ReduceKind::Max | ReduceKind::LogSumExp => f64::NEG_INFINITY,
            ReduceKind::Min => f64::INFINITY,
            _ => 0.0,
        };
        let mut acc = vec![init; n_out];
        for (i, &v) in x.iter().enumerate() {
            let (a, v) = (&mut acc[out_index(i)], v as f64);
            *a = match k {
                ReduceKind::Sum | ReduceKind::Mean => *a + v,
                ReduceKind::Prod => *a * v,
                ReduceKind::Max | ReduceKind::LogSumExp => a.max(v),
                ReduceKind::Min => a.min(v),
                ReduceKind::L1 => *a + v.abs(),
                ReduceKind::L2 | ReduceKind::SumSquare => *a + v * v,
            };
        }
        if k == ReduceKind::LogSumExp {
            let m = acc.clone();
            let mut s = vec![0.0f64; n_out];
            for (i, &v) in x.iter().enumerate() {
                let o = out_index(i);
                if m[o] > f64::NEG_INFINITY {
                    s[o] += (v as f64 - m[o]).exp();
                }
            }
            for ((a, m), s) in acc.iter_mut().zip(m).zip(s) {
                *a = if m > f64::NEG_INFINITY { m + s.ln() } else { m };
            }
        }
        acc.into_iter()
            .map(|a| match k {
                ReduceKind::Mean => (a / count) as f32,
                ReduceKind::L2 => a.sqrt() as f32,
                _ => a as f32,
            })
            .collect()
    }

    /// Kept and reduced dims as (extent, stride) lists, adjacent dims of one kind merged and
    /// extents of 1 dropped.
    fn dims(shape: &[usize], red: &[bool]) -> (Vec<Dim>, Vec<Dim>) {
        let (mut kept, mut reduced): (Vec<Dim>, Vec<Dim>) = (Vec::new(), Vec::new());
        let mut stride = 1;
        let mut last: Option<bool> = None;
        for d in (0..shape.len()).rev() {
            let e = shape[d];
            if e == 1 {
                continue;
            }
            let list = if red[d] { &mut reduced } else { &mut kept };
            match list.last_mut() {
                // Row-major: a dim next to the previous one of the same kind continues it.
                Some((ext, st)) if last == Some(red[d]) && *st * *ext == stride => *ext *= e,
                _ => list.push((e, stride)),
            }
            last = Some(red[d]);
            stride *= e;
        }
        kept.reverse();
        reduced.reverse();
        (kept, reduced)
    }
}

/// A merged dim of the kernel's view: (extent, input stride).
type Dim = (usize, usize);

/// Reductions at most this long run one invocation per output; longer ones a workgroup.
const ROW_MIN: usize = 128;

static REDUCE: ShaderSource = crate::wgsl!("reduce/reduce.wgsl"; [
    [("KIND", 0), ("ROW", 0)], [("KIND", 8), ("ROW", 1)], [("KIND", 7), ("ROW", 0)],
    [("KIND", 7), ("ROW", 1)]
]);

fn words8(v: impl Iterator<Item = usize>) -> [u32; 8] {
    let mut w = [0u32; 8];
    for (i, x) in v.enumerate().take(8) {
        w[i] = super::word(x);
    }
    w
}

impl OpFamily for Reduce {
    const FAMILY: &'static str = "reduce";
    type Kernel = Standard;

    fn name(&self) -> &'static str {
        self.kind.name()
    }

    fn arity(&self) -> (usize, usize) {
        (1, 2)
    }

    fn infer(&self, ins: &[ValueType]) -> Result<ValueType> {
        self.infer_consts(ins, &[])
    }

    fn infer_consts(&self, ins: &[ValueType], consts: &[Option<&Tensor>]) -> Result<ValueType> {
        let axes = self.axes_of(ins.len(), consts)?;
        super::float_op(self.kind.name(), &ins[..1], |s| {
            Ok(self.plan(&s[0], &axes)?.1)
        })
    }

    fn absorb_consts(&mut self, consts: &[Option<&Tensor>]) -> Result<Vec<usize>> {
        if consts.len() < 2 || super::const_input(consts, 1).is_none() {
            return Ok(Vec::new());
        }
        self.axes = self.axes_of(2, consts)?;
        Ok(vec![1])
    }

    fn cpu(&self, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
        let consts: Vec<Option<&Tensor>> = ins.iter().map(|&t| Some(t)).collect();
        let axes = self.axes_of(ins.len(), &consts)?;
        let (red, _) = self.plan(ins[0].shape(), &axes)?;
        let x = ins[0].f32s(self.kind.name())?;
        let y = self.cpu_f32(x, ins[0].shape(), &red, numel(&out.shape));
        Tensor::new(&out.shape, y)
    }

    /// Dense f32 of rank <= 8, once the axes are an attribute.
    fn select(&self, cx: &SelectCtx) -> Option<Standard> {
        (cx.ins.len() == 1 && cx.dense_f32() && cx.ins[0].shape.len() <= MAX_RANK)
            .then_some(Standard::Standard)
    }

    fn lower(&self, _k: &Standard, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        let op = self.kind.name();
        if cx.in_shapes.len() != 1 {
            return Err(super::unsupported(op, "axes given as an input"));
        }
        let shape = &cx.in_shapes[0];
        let (red, _) = self.plan(shape, &self.axes)?;
        let (kept, reduced) = Reduce::dims(shape, &red);
        if kept.len() > MAX_RANK || reduced.len() > MAX_RANK {
            return Err(super::unsupported(
                op,
                format!("rank {} > {MAX_RANK}", shape.len()),
            ));
        }
        let n_out = numel(cx.out_shape);
        let len = numel(shape) / n_out.max(1);
        let row = len > ROW_MIN;
        let mut params = vec![
            super::word(n_out),
            super::word(len),
            kept.len() as u32,
            reduced.len() as u32,
        ];
        params.extend(words8(kept.iter().map(|d| d.0)));
        params.extend(words8(kept.iter().map(|d| d.1)));
        params.extend(words8(reduced.iter().map(|d| d.0)));
        params.extend(words8(reduced.iter().map(|d| d.1)));
        let groups = if row {
            n_out as u64
        } else {
            (n_out as u64).div_ceil(64)
        };
        Ok(vec![Dispatch {
            shader: ShaderKey::new(&REDUCE, &[("KIND", self.kind as u32), ("ROW", row as u32)]),
            overrides: Activation::None.overrides(),
            params,
            bindings: vec![Bind::Input(0), Bind::Output],
            workgroups: grid_1d(groups, cx.max_workgroups),
        }])
    }

    fn shaders() -> Vec<&'static ShaderSource> {
        vec![&REDUCE]
    }

    fn flops(&self, ins: &[ValueType], _out: &ValueType) -> u64 {
        numel(&ins[0].shape) as u64
    }
}

/// ONNX `ArgMax` / `ArgMin`: the index (i64) of the largest / smallest element along `axis`,
/// the first one on ties unless `select_last_index`. CPU only: its i64 output feeds integer
/// logic (gathers, comparisons), which runs on the CPU as well.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ArgReduce {
    /// `true` for ArgMax, `false` for ArgMin.
    pub max: bool,
    #[serde(default)]
    pub axis: i64,
    #[serde(default = "yes")]
    pub keepdims: bool,
    #[serde(default)]
    pub select_last_index: bool,
}

impl ArgReduce {
    fn op(&self) -> &'static str {
        if self.max {
            "argmax"
        } else {
            "argmin"
        }
    }
}

impl OpFamily for ArgReduce {
    const FAMILY: &'static str = "arg_reduce";
    type Kernel = Standard;

    fn name(&self) -> &'static str {
        self.op()
    }

    fn infer(&self, ins: &[ValueType]) -> Result<ValueType> {
        let op = self.op();
        let x = &ins[0];
        if !matches!(x.dtype, DType::F32 | DType::I64 | DType::I32) {
            return Err(Error::DTypeMismatch {
                op: format!("{op} input 0"),
                expected: "f32, i64 or i32".into(),
                got: x.dtype.to_string(),
            });
        }
        let a = norm_axis(op, self.axis, x.shape.len())?;
        let mut out = x.shape.clone();
        if self.keepdims {
            out[a] = 1;
        } else {
            out.remove(a);
        }
        Ok(ValueType::new(DType::I64, &out))
    }

    fn cpu(&self, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
        let x = ins[0];
        let shape = x.shape();
        let a = norm_axis(self.op(), self.axis, shape.len())?;
        let (outer, len, inner) = (numel(&shape[..a]), shape[a], numel(&shape[a + 1..]));
        let vals: Vec<f64> = match x.data() {
            TensorData::F32(v) => v.iter().map(|&v| v as f64).collect(),
            TensorData::I64(v) => v.iter().map(|&v| v as f64).collect(),
            TensorData::I32(v) => v.iter().map(|&v| v as f64).collect(),
            _ => return Err(super::unsupported(self.op(), "dtype")),
        };
        let mut y = Vec::with_capacity(outer * inner);
        for o in 0..outer {
            for i in 0..inner {
                let at = |j: usize| vals[o * len * inner + j * inner + i];
                let mut best = 0;
                for j in 1..len {
                    let (v, b) = (at(j), at(best));
                    let better = if self.max { v > b } else { v < b };
                    if better || (self.select_last_index && v == b) {
                        best = j;
                    }
                }
                y.push(best as i64);
            }
        }
        Tensor::from_data(&out.shape, TensorData::I64(y))
    }

    /// No GPU kernel: the i64 result is consumed by integer ops, which run on the CPU.
    fn select(&self, _cx: &SelectCtx) -> Option<Standard> {
        None
    }

    fn lower(&self, _k: &Standard, _cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        Err(super::unsupported(
            self.op(),
            "no GPU kernel (runs on the CPU)",
        ))
    }

    fn shaders() -> Vec<&'static ShaderSource> {
        Vec::new()
    }
}
