//! Shape ops: reshape, flatten, transpose, concat.

use super::elementwise::{words8, MAX_RANK};
use super::norm::norm_axis;
use super::{grid_1d, Activation, Bind, Dispatch, LowerCtx, ShaderFile, ShaderKey};
use crate::error::{Error, Result};
use crate::tensor::{fmt_shape, numel};
use serde::{Deserialize, Serialize};

/// Reshape to `shape`; one entry may be -1 (inferred) and 0 copies the input's dim (ONNX rules).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reshape {
    pub shape: Vec<i64>,
}

impl Reshape {
    pub(crate) fn infer(&self, ins: &[Vec<usize>]) -> Result<Vec<usize>> {
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
                d if d > 0 => out.push(d as usize),
                _ => {
                    return Err(Error::shape(
                        "reshape",
                        "dims > 0, 0 (copy) or a single -1",
                        format!("{:?}", self.shape),
                    ))
                }
            }
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
    pub(crate) fn infer(&self, ins: &[Vec<usize>]) -> Result<Vec<usize>> {
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

/// Permute dims: output dim i is input dim `perm[i]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transpose {
    pub perm: Vec<usize>,
}

impl Transpose {
    pub(crate) fn infer(&self, ins: &[Vec<usize>]) -> Result<Vec<usize>> {
        let x = &ins[0];
        let mut seen = vec![false; x.len()];
        if self.perm.len() != x.len()
            || x.len() > MAX_RANK
            || self
                .perm
                .iter()
                .any(|&p| p >= x.len() || std::mem::replace(&mut seen[p], true))
        {
            return Err(Error::shape(
                "transpose",
                format!("a permutation of 0..{} (rank <= {MAX_RANK})", x.len()),
                format!("{:?}", self.perm),
            ));
        }
        Ok(self.perm.iter().map(|&p| x[p]).collect())
    }

    /// Input strides reordered to output dims.
    fn src_strides(&self, x: &[usize]) -> Vec<usize> {
        let mut st = vec![1; x.len()];
        for i in (0..x.len().saturating_sub(1)).rev() {
            st[i] = st[i + 1] * x[i + 1];
        }
        self.perm.iter().map(|&p| st[p]).collect()
    }

    pub(crate) fn cpu(&self, xs: &[&[f32]], shapes: &[Vec<usize>], out: &[usize]) -> Vec<f32> {
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

    pub(crate) fn lower(&self, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        let out = cx.out_shape;
        let n = numel(out);
        let mut params = vec![n as u32, out.len() as u32, 0, 0];
        params.extend(words8(out));
        params.extend(words8(&self.src_strides(&cx.in_shapes[0])));
        Ok(vec![Dispatch {
            shader: ShaderKey::new(ShaderFile::Transpose, &[]),
            act: Activation::None,
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
    pub(crate) fn infer(&self, ins: &[Vec<usize>]) -> Result<Vec<usize>> {
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
            out[a] += s[a];
        }
        Ok(out)
    }

    pub(crate) fn cpu(&self, xs: &[&[f32]], shapes: &[Vec<usize>], out: &[usize]) -> Vec<f32> {
        let a = norm_axis("concat", self.axis, out.len()).unwrap_or(0);
        let outer = numel(&out[..a]);
        let mut y = Vec::with_capacity(numel(out));
        for o in 0..outer {
            for (x, s) in xs.iter().zip(shapes) {
                let inner = numel(&s[a..]);
                y.extend_from_slice(&x[o * inner..(o + 1) * inner]);
            }
        }
        y
    }

    pub(crate) fn lower(&self, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        let out = cx.out_shape;
        let a = norm_axis("concat", self.axis, out.len())?;
        let out_inner = numel(&out[a..]);
        let mut offset = 0;
        let mut ds = Vec::new();
        for (i, s) in cx.in_shapes.iter().enumerate() {
            let inner = numel(&s[a..]);
            let n = numel(s);
            ds.push(Dispatch {
                shader: ShaderKey::new(ShaderFile::Concat, &[]),
                act: Activation::None,
                params: vec![n as u32, inner as u32, out_inner as u32, offset as u32],
                bindings: vec![Bind::Input(i), Bind::Output],
                workgroups: grid_1d((n as u64).div_ceil(256), cx.max_workgroups),
            });
            offset += inner;
        }
        Ok(ds)
    }
}
