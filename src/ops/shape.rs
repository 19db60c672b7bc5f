//! Shape ops: reshape, flatten, transpose, concat.

use super::elementwise::{words8, MAX_RANK};
use super::norm::norm_axis;
use super::{grid_1d, Activation, Bind, Dispatch, LowerCtx, OpFamily, SelectCtx, Standard};
use crate::error::{Error, Result};
use crate::gpu::shader::{ShaderKey, ShaderSource};
use crate::tensor::{fmt_shape, numel, Tensor, ValueType};
use serde::{Deserialize, Serialize};

/// Reshape to `shape`; one entry may be -1 (inferred) and 0 copies the input's dim (ONNX rules).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reshape {
    pub shape: Vec<i64>,
}

impl Reshape {
    /// Input 0 is the data; ONNX's form gives the target shape as input 1 (an i64 vector,
    /// often computed from shapes), absorbed into `shape` once the graph is planned.
    const MAX_INPUTS: usize = 2;

    /// The op with the target of input 1, when there is one (its value must be known).
    fn input_target(&self, n_inputs: usize, consts: &[Option<&Tensor>]) -> Result<Option<Self>> {
        if n_inputs < 2 {
            return Ok(None);
        }
        let t = super::const_input(consts, 1).ok_or_else(|| {
            Error::graph(
                "reshape: its target shape (input 1) must be known when the graph is planned \
                 (a weight, or computed from shapes only)",
            )
        })?;
        if t.shape().len() != 1 {
            return Err(Error::shape(
                "reshape target (input 1)",
                "a 1-D tensor",
                fmt_shape(t.shape()),
            ));
        }
        Ok(Some(Reshape {
            shape: int_values("reshape target (input 1)", t)?,
        }))
    }

    pub(crate) fn shape_of(&self, ins: &[Vec<usize>]) -> Result<Vec<usize>> {
        let x = &ins[0];
        let mut out = Vec::with_capacity(self.shape.len());
        let mut infer_at = None;
        for (i, &d) in self.shape.iter().enumerate() {
            match d {
                -1 if infer_at.is_none() => {
                    infer_at = Some(i);
                    out.push(1);
                }
                0 if i < x.len() => out.push(x[i]),
                // Not `as usize`: on 32-bit targets that would wrap 2^32 + 4 to 4.
                d if d > 0 => match usize::try_from(d) {
                    Ok(d) => out.push(d),
                    Err(_) => {
                        return Err(Error::graph(format!(
                            "reshape: attribute shape[{i}] = {d} exceeds {} (kernel \
                             parameters are 32-bit)",
                            u32::MAX
                        )))
                    }
                },
                _ => {
                    return Err(Error::shape(
                        "reshape",
                        "dims > 0, 0 (copy) or a single -1",
                        format!("{:?}", self.shape),
                    ))
                }
            }
        }
        for (i, &d) in out.iter().enumerate() {
            super::attr_u32("reshape", &format!("shape[{i}]"), d)?;
        }
        let Some(known) = crate::tensor::checked_numel(&out) else {
            return Err(Error::shape(
                "reshape",
                format!("a shape with {} elements", numel(x)),
                format!("{:?}", self.shape),
            ));
        };
        if let Some(i) = infer_at {
            if known == 0 || !numel(x).is_multiple_of(known) {
                return Err(Error::shape(
                    "reshape",
                    format!("a shape with {} elements", numel(x)),
                    format!("{:?}", self.shape),
                ));
            }
            out[i] = numel(x) / known;
        }
        if numel(&out) != numel(x) {
            return Err(Error::shape(
                "reshape",
                format!("{} elements (input {})", numel(x), fmt_shape(x)),
                format!("{} ({})", fmt_shape(&out), numel(&out)),
            ));
        }
        Ok(out)
    }
}

/// Flatten to 2-D: dims before `axis` form the rows, the rest the columns.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Flatten {
    #[serde(default = "one")]
    pub axis: usize,
}
fn one() -> usize {
    1
}

impl Flatten {
    const MAX_INPUTS: usize = 1;

    fn input_target(&self, _n: usize, _consts: &[Option<&Tensor>]) -> Result<Option<Self>> {
        Ok(None)
    }

    pub(crate) fn shape_of(&self, ins: &[Vec<usize>]) -> Result<Vec<usize>> {
        let x = &ins[0];
        if self.axis > x.len() {
            return Err(Error::shape(
                "flatten",
                format!("axis <= rank {}", x.len()),
                self.axis.to_string(),
            ));
        }
        Ok(vec![numel(&x[..self.axis]), numel(&x[self.axis..])])
    }
}

/// ONNX `Squeeze`: removes the size-1 dims `axes` (negative from the end), or every size-1 dim
/// when `axes` is absent. Axes are an attribute before opset 13 and input 1 from it (absorbed
/// when the graph is planned). The output aliases the input (no kernel).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Squeeze {
    #[serde(default)]
    pub axes: Option<Vec<i64>>,
}

impl Squeeze {
    const MAX_INPUTS: usize = 2;

    fn input_target(&self, n_inputs: usize, consts: &[Option<&Tensor>]) -> Result<Option<Self>> {
        Ok(axes_input("squeeze", n_inputs, consts)?.map(|a| Squeeze { axes: Some(a) }))
    }

    pub(crate) fn shape_of(&self, ins: &[Vec<usize>]) -> Result<Vec<usize>> {
        let x = &ins[0];
        let Some(axes) = &self.axes else {
            return Ok(x.iter().copied().filter(|&d| d != 1).collect());
        };
        let mut drop = vec![false; x.len()];
        for &a in axes {
            let i = norm_axis("squeeze axes", a, x.len())?;
            if x[i] != 1 {
                return Err(Error::shape(
                    "squeeze",
                    format!("size 1 along axis {a}"),
                    fmt_shape(x),
                ));
            }
            drop[i] = true;
        }
        Ok((x.iter().zip(&drop))
            .filter(|(_, &d)| !d)
            .map(|(&v, _)| v)
            .collect())
    }
}

/// ONNX `Unsqueeze`: inserts size-1 dims at `axes` (positions in the output, negative from
/// its end). Attribute before opset 13, input 1 from it. The output aliases the input.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Unsqueeze {
    #[serde(default)]
    pub axes: Vec<i64>,
}

impl Unsqueeze {
    const MAX_INPUTS: usize = 2;

    fn input_target(&self, n_inputs: usize, consts: &[Option<&Tensor>]) -> Result<Option<Self>> {
        Ok(axes_input("unsqueeze", n_inputs, consts)?.map(|axes| Unsqueeze { axes }))
    }

    pub(crate) fn shape_of(&self, ins: &[Vec<usize>]) -> Result<Vec<usize>> {
        let x = &ins[0];
        let r = x.len() + self.axes.len();
        let mut ones = vec![false; r];
        for &a in &self.axes {
            let i = norm_axis("unsqueeze axes", a, r)?;
            if std::mem::replace(&mut ones[i], true) {
                return Err(Error::graph(format!(
                    "unsqueeze: axis {a} is given twice (axes {:?})",
                    self.axes
                )));
            }
        }
        let mut it = x.iter();
        Ok(ones
            .iter()
            .map(|&one| if one { 1 } else { *it.next().unwrap_or(&1) })
            .collect())
    }
}

/// The axes of input 1 of squeeze/unsqueeze (opset 13), when there is one.
fn axes_input(op: &str, n_inputs: usize, consts: &[Option<&Tensor>]) -> Result<Option<Vec<i64>>> {
    if n_inputs < 2 {
        return Ok(None);
    }
    let t = super::const_input(consts, 1).ok_or_else(|| {
        Error::graph(format!(
            "{op}: its axes (input 1) must be known when the graph is planned (a weight, or \
             computed from shapes only)"
        ))
    })?;
    if t.shape().len() > 1 {
        return Err(Error::shape(
            format!("{op} axes (input 1)"),
            "a 1-D tensor",
            fmt_shape(t.shape()),
        ));
    }
    int_values(&format!("{op} axes (input 1)"), t).map(Some)
}

/// Permute dims: output dim i is input dim `perm[i]`; an empty `perm` reverses the dims
/// (ONNX's default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transpose {
    pub perm: Vec<usize>,
}

impl Transpose {
    /// The permutation for an input of rank `r` (the default: reversed).
    fn perm(&self, r: usize) -> Vec<usize> {
        if self.perm.is_empty() {
            (0..r).rev().collect()
        } else {
            self.perm.clone()
        }
    }

    pub(crate) fn shape_of(&self, ins: &[Vec<usize>]) -> Result<Vec<usize>> {
        let x = &ins[0];
        let perm = self.perm(x.len());
        let mut seen = vec![false; x.len()];
        if perm.len() != x.len()
            || x.len() > MAX_RANK
            || perm
                .iter()
                .any(|&p| p >= x.len() || std::mem::replace(&mut seen[p], true))
        {
            return Err(Error::shape(
                "transpose",
                format!("a permutation of 0..{} (rank <= {MAX_RANK})", x.len()),
                format!("{:?}", self.perm),
            ));
        }
        Ok(perm.iter().map(|&p| x[p]).collect())
    }

    /// Input strides reordered to output dims.
    fn src_strides(&self, x: &[usize]) -> Vec<usize> {
        let mut st = vec![1; x.len()];
        for i in (0..x.len().saturating_sub(1)).rev() {
            st[i] = st[i + 1] * x[i + 1];
        }
        self.perm(x.len()).iter().map(|&p| st[p]).collect()
    }

    pub(crate) fn cpu_f32(&self, xs: &[&[f32]], shapes: &[Vec<usize>], out: &[usize]) -> Vec<f32> {
        let st = self.src_strides(&shapes[0]);
        (0..numel(out))
            .map(|i| {
                let (mut rem, mut src) = (i, 0);
                for d in (0..out.len()).rev() {
                    src += (rem % out[d]) * st[d];
                    rem /= out[d];
                }
                xs[0][src]
            })
            .collect()
    }

    pub(crate) fn dispatches(&self, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        let out = cx.out_shape;
        let n = numel(out);
        let mut params = vec![n as u32, out.len() as u32, 0, 0];
        params.extend(words8(out));
        params.extend(words8(&self.src_strides(&cx.in_shapes[0])));
        Ok(vec![Dispatch {
            shader: ShaderKey::new(&TRANSPOSE, &[]),
            overrides: Activation::None.overrides(),
            params,
            bindings: vec![Bind::Input(0), Bind::Output],
            workgroups: grid_1d((n as u64).div_ceil(256), cx.max_workgroups),
        }])
    }
}

/// Concatenate inputs along `axis`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Concat {
    pub axis: i64,
}

impl Concat {
    pub(crate) fn shape_of(&self, ins: &[Vec<usize>]) -> Result<Vec<usize>> {
        let a = norm_axis("concat", self.axis, ins[0].len())?;
        let mut out = ins[0].clone();
        for s in &ins[1..] {
            let same_rank = s.len() == out.len();
            if !same_rank || s.iter().enumerate().any(|(i, &d)| i != a && d != out[i]) {
                return Err(Error::shape(
                    "concat",
                    format!("{} except along axis {a}", fmt_shape(&ins[0])),
                    fmt_shape(s),
                ));
            }
            out[a] = out[a].checked_add(s[a]).ok_or_else(|| {
                Error::shape(
                    "concat",
                    format!(
                        "a total extent along axis {a} that fits {} bits",
                        usize::BITS
                    ),
                    format!("{} + {}", out[a], s[a]),
                )
            })?;
        }
        Ok(out)
    }

    /// Concatenation of the raw bytes: works for every dtype.
    fn cpu_any(&self, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
        let a = norm_axis("concat", self.axis, out.shape.len())?;
        let outer = numel(&out.shape[..a]);
        let size = out.dtype.size();
        let mut y = Vec::with_capacity(numel(&out.shape) * size);
        for o in 0..outer {
            for x in ins {
                let inner = numel(&x.shape()[a..]) * size;
                y.extend_from_slice(&x.bytes()[o * inner..(o + 1) * inner]);
            }
        }
        Tensor::from_bytes(out.dtype, &out.shape, &y)
    }

    pub(crate) fn dispatches(&self, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        let out = cx.out_shape;
        let a = norm_axis("concat", self.axis, out.len())?;
        let out_inner = numel(&out[a..]);
        let mut offset = 0;
        let mut ds = Vec::new();
        for (i, s) in cx.in_shapes.iter().enumerate() {
            let inner = numel(&s[a..]);
            let n = numel(s);
            ds.push(Dispatch {
                shader: ShaderKey::new(&CONCAT, &[]),
                overrides: Activation::None.overrides(),
                params: vec![n as u32, inner as u32, out_inner as u32, offset as u32],
                bindings: vec![Bind::Input(i), Bind::Output],
                workgroups: grid_1d((n as u64).div_ceil(256), cx.max_workgroups),
            });
            offset += inner;
        }
        Ok(ds)
    }
}

static TRANSPOSE: ShaderSource = crate::wgsl!("elementwise/transpose.wgsl");
static CONCAT: ShaderSource = crate::wgsl!("elementwise/concat.wgsl");

/// The dtype of a shape op's output: its (first) input's, all inputs alike.
fn same_dtype(op: &str, ins: &[ValueType]) -> Result<crate::tensor::DType> {
    let d = ins[0].dtype;
    if let Some((i, v)) = ins.iter().enumerate().find(|(_, v)| v.dtype != d) {
        return Err(Error::DTypeMismatch {
            op: format!("{op} input {i}"),
            expected: d.to_string(),
            got: v.dtype.to_string(),
        });
    }
    Ok(d)
}

/// The values of an integer tensor (i64 or i32), as shape-like inputs hold them.
pub(crate) fn int_values(what: &str, t: &Tensor) -> Result<Vec<i64>> {
    match t.data() {
        crate::tensor::TensorData::I64(v) => Ok(v.clone()),
        crate::tensor::TensorData::I32(v) => Ok(v.iter().map(|&x| x as i64).collect()),
        _ => Err(Error::DTypeMismatch {
            op: what.into(),
            expected: "i64 or i32".into(),
            got: t.dtype().to_string(),
        }),
    }
}

/// Reshape and flatten: any dtype; the output aliases the input's memory (no kernel runs).
macro_rules! alias_family {
    ($ty:ty, $fam:literal) => {
        impl OpFamily for $ty {
            const FAMILY: &'static str = $fam;
            type Kernel = Standard;

            fn arity(&self) -> (usize, usize) {
                (1, Self::MAX_INPUTS)
            }

            fn infer(&self, ins: &[ValueType]) -> Result<ValueType> {
                self.infer_consts(ins, &[])
            }

            fn infer_consts(
                &self,
                ins: &[ValueType],
                consts: &[Option<&Tensor>],
            ) -> Result<ValueType> {
                let op = self.input_target(ins.len(), consts)?;
                let shapes = [ins[0].shape.clone()];
                let shape = op.as_ref().unwrap_or(self).shape_of(&shapes)?;
                Ok(ValueType::new(ins[0].dtype, &shape))
            }

            fn absorb_consts(&mut self, consts: &[Option<&Tensor>]) -> Result<Vec<usize>> {
                if consts.len() < 2 || super::const_input(consts, 1).is_none() {
                    return Ok(Vec::new());
                }
                match self.input_target(consts.len(), consts)? {
                    Some(op) => {
                        *self = op;
                        Ok(vec![1])
                    }
                    None => Ok(Vec::new()),
                }
            }

            fn cpu(&self, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
                ins[0].clone().reshaped(&out.shape)
            }

            /// Any dtype: nothing runs, the plan aliases the input's range.
            fn select(&self, _cx: &SelectCtx) -> Option<Standard> {
                Some(Standard::Standard)
            }

            fn lower(&self, _k: &Standard, _cx: &LowerCtx) -> Result<Vec<Dispatch>> {
                Ok(Vec::new())
            }

            fn shaders() -> Vec<&'static ShaderSource> {
                Vec::new()
            }

            fn aliases_input(&self) -> bool {
                true
            }
        }
    };
}
alias_family!(Reshape, "reshape");
alias_family!(Flatten, "flatten");
alias_family!(Squeeze, "squeeze");
alias_family!(Unsqueeze, "unsqueeze");

impl OpFamily for Transpose {
    const FAMILY: &'static str = "transpose";
    type Kernel = Standard;

    /// Any dtype (shape subgraphs transpose i64); the GPU kernel takes f32.
    fn infer(&self, ins: &[ValueType]) -> Result<ValueType> {
        let shape = self.shape_of(&[ins[0].shape.clone()])?;
        Ok(ValueType::new(ins[0].dtype, &shape))
    }

    fn cpu(&self, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
        if ins[0].dtype() != crate::tensor::DType::F32 {
            let x = ins[0].shape();
            let m = super::movement::Movement::permute(x, &self.perm(x.len()));
            return m.run_cpu(ins[0], &[]);
        }
        super::cpu_f32("transpose", ins, out, |xs, shapes| {
            self.cpu_f32(xs, shapes, &out.shape)
        })
    }

    fn lower(&self, _k: &Standard, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        self.dispatches(cx)
    }

    fn shaders() -> Vec<&'static ShaderSource> {
        vec![&TRANSPOSE]
    }
}

impl OpFamily for Concat {
    const FAMILY: &'static str = "concat";
    type Kernel = Standard;

    fn arity(&self) -> (usize, usize) {
        (1, usize::MAX)
    }

    /// Any dtype, all inputs alike (shape subgraphs concatenate i64 shapes).
    fn infer(&self, ins: &[ValueType]) -> Result<ValueType> {
        let d = same_dtype("concat", ins)?;
        let shapes: Vec<Vec<usize>> = ins.iter().map(|v| v.shape.clone()).collect();
        Ok(ValueType::new(d, &self.shape_of(&shapes)?))
    }

    fn cpu(&self, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
        self.cpu_any(ins, out)
    }

    fn lower(&self, _k: &Standard, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        self.dispatches(cx)
    }

    fn shaders() -> Vec<&'static ShaderSource> {
        vec![&CONCAT]
    }
}
