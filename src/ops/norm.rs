//! Softmax, layer norm and (inference) batch norm.

use super::{f32_word, grid_1d, Activation, Bind, Dispatch, LowerCtx, OpFamily, Standard};
use crate::error::{Error, Result};
use crate::gpu::shader::{ShaderKey, ShaderSource};
use crate::tensor::{fmt_shape, numel, Tensor, ValueType};
use serde::{Deserialize, Serialize};

fn minus_one() -> i64 {
    -1
}
fn default_eps() -> f32 {
    1e-5
}

/// Resolves a possibly negative axis against a rank.
pub fn norm_axis(op: &str, axis: i64, rank: usize) -> Result<usize> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    if a < 0 || a >= rank as i64 {
        return Err(Error::shape(
            op,
            format!("axis in [-{rank}, {rank})"),
            axis.to_string(),
        ));
    }
    Ok(a as usize)
}

/// Softmax along `axis`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Softmax {
    #[serde(default = "minus_one")]
    pub axis: i64,
}

impl Softmax {
    pub(crate) fn shape_of(&self, ins: &[Vec<usize>]) -> Result<Vec<usize>> {
        norm_axis("softmax", self.axis, ins[0].len())?;
        Ok(ins[0].clone())
    }

    /// (outer, len, inner) view of the input around the axis.
    fn split(&self, shape: &[usize]) -> (usize, usize, usize) {
        let a = norm_axis("softmax", self.axis, shape.len()).unwrap_or(shape.len() - 1);
        (numel(&shape[..a]), shape[a], numel(&shape[a + 1..]))
    }

    pub(crate) fn cpu_f32(&self, xs: &[&[f32]], shapes: &[Vec<usize>]) -> Vec<f32> {
        let (outer, len, inner) = self.split(&shapes[0]);
        let x = xs[0];
        let mut y = vec![0.0; x.len()];
        for o in 0..outer {
            for i in 0..inner {
                let at = |j: usize| o * len * inner + j * inner + i;
                let m = (0..len).map(|j| x[at(j)]).fold(f32::NEG_INFINITY, f32::max);
                let s: f32 = (0..len).map(|j| (x[at(j)] - m).exp()).sum();
                for j in 0..len {
                    y[at(j)] = (x[at(j)] - m).exp() / s;
                }
            }
        }
        y
    }

    pub(crate) fn dispatches(&self, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        let (outer, len, inner) = self.split(&cx.in_shapes[0]);
        let rows = outer * inner;
        Ok(vec![Dispatch {
            shader: ShaderKey::new(&SOFTMAX, &[]),
            overrides: Activation::None.overrides(),
            params: vec![rows as u32, len as u32, inner as u32, 0],
            bindings: vec![Bind::Input(0), Bind::Output],
            workgroups: grid_1d(rows as u64, cx.max_workgroups),
        }])
    }
}

/// Layer norm over the dims from `axis` to the end; inputs `x, gamma, beta` where gamma and
/// beta have the normalised dims' shape.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LayerNorm {
    #[serde(default = "minus_one")]
    pub axis: i64,
    #[serde(default = "default_eps")]
    pub eps: f32,
}

impl LayerNorm {
    pub(crate) fn shape_of(&self, ins: &[Vec<usize>]) -> Result<Vec<usize>> {
        let a = norm_axis("layer_norm", self.axis, ins[0].len())?;
        let norm = &ins[0][a..];
        for (what, s) in [("gamma", &ins[1]), ("beta", &ins[2])] {
            if s.as_slice() != norm {
                return Err(Error::shape(
                    format!("layer_norm {what}"),
                    fmt_shape(norm),
                    fmt_shape(s),
                ));
            }
        }
        Ok(ins[0].clone())
    }

    fn len(&self, shape: &[usize]) -> usize {
        let a = norm_axis("layer_norm", self.axis, shape.len()).unwrap_or(shape.len() - 1);
        numel(&shape[a..])
    }

    pub(crate) fn cpu_f32(&self, xs: &[&[f32]], shapes: &[Vec<usize>]) -> Vec<f32> {
        let len = self.len(&shapes[0]);
        let (x, g, b) = (xs[0], xs[1], xs[2]);
        let mut y = vec![0.0; x.len()];
        for (row, out) in x.chunks(len).zip(y.chunks_mut(len)) {
            let mean = row.iter().sum::<f32>() / len as f32;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / len as f32;
            let rstd = 1.0 / (var + self.eps).sqrt();
            for j in 0..len {
                out[j] = (row[j] - mean) * rstd * g[j] + b[j];
            }
        }
        y
    }

    pub(crate) fn dispatches(&self, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        let len = self.len(&cx.in_shapes[0]);
        let rows = numel(&cx.in_shapes[0]) / len;
        Ok(vec![Dispatch {
            shader: ShaderKey::new(&LAYERNORM, &[]),
            overrides: Activation::None.overrides(),
            params: vec![rows as u32, len as u32, f32_word(self.eps), 0],
            bindings: vec![Bind::Input(0), Bind::Input(1), Bind::Input(2), Bind::Output],
            workgroups: grid_1d(rows as u64, cx.max_workgroups),
        }])
    }
}

/// Inference batch norm over channel axis 1; inputs `x, gamma, beta, mean, var`, each `[C]`.
/// When it follows a conv, the graph pass folds it into the conv's weights instead.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BatchNorm {
    #[serde(default = "default_eps")]
    pub eps: f32,
}

impl BatchNorm {
    pub(crate) fn shape_of(&self, ins: &[Vec<usize>]) -> Result<Vec<usize>> {
        let x = &ins[0];
        if x.len() < 2 {
            return Err(Error::shape(
                "batch_norm",
                "input of rank >= 2 (N, C, ...)",
                fmt_shape(x),
            ));
        }
        for (i, what) in ["gamma", "beta", "mean", "var"].iter().enumerate() {
            if ins[i + 1] != [x[1]] {
                return Err(Error::shape(
                    format!("batch_norm {what}"),
                    fmt_shape(&[x[1]]),
                    fmt_shape(&ins[i + 1]),
                ));
            }
        }
        Ok(x.clone())
    }

    /// Per-channel (scale, shift) such that y = x * scale + shift.
    pub fn affine(
        &self,
        gamma: &[f32],
        beta: &[f32],
        mean: &[f32],
        var: &[f32],
    ) -> (Vec<f32>, Vec<f32>) {
        let scale: Vec<f32> = gamma
            .iter()
            .zip(var)
            .map(|(g, v)| g / (v + self.eps).sqrt())
            .collect();
        let shift = beta
            .iter()
            .zip(mean)
            .zip(&scale)
            .map(|((b, m), s)| b - m * s)
            .collect();
        (scale, shift)
    }

    pub(crate) fn cpu_f32(&self, xs: &[&[f32]], shapes: &[Vec<usize>]) -> Vec<f32> {
        let x = &shapes[0];
        let (c, inner) = (x[1], numel(&x[2..]));
        let scale: Vec<f32> = xs[1]
            .iter()
            .zip(xs[4])
            .map(|(g, v)| g / (v + self.eps).sqrt())
            .collect();
        xs[0]
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let ch = (i / inner) % c;
                (v - xs[3][ch]) * scale[ch] + xs[2][ch]
            })
            .collect()
    }

    pub(crate) fn dispatches(&self, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        let x = &cx.in_shapes[0];
        let n = numel(x);
        Ok(vec![Dispatch {
            shader: ShaderKey::new(&BATCHNORM, &[]),
            overrides: Activation::None.overrides(),
            params: vec![
                n as u32,
                x[1] as u32,
                numel(&x[2..]) as u32,
                f32_word(self.eps),
            ],
            bindings: (0..5).map(Bind::Input).chain([Bind::Output]).collect(),
            workgroups: grid_1d((n as u64).div_ceil(256), cx.max_workgroups),
        }])
    }
}

static SOFTMAX: ShaderSource = crate::wgsl!("norm/reduce.wgsl", "norm/softmax.wgsl");
static LAYERNORM: ShaderSource = crate::wgsl!("norm/reduce.wgsl", "norm/layernorm.wgsl");
static BATCHNORM: ShaderSource = crate::wgsl!("norm/batchnorm.wgsl");

impl OpFamily for Softmax {
    const FAMILY: &'static str = "softmax";
    type Kernel = Standard;

    fn infer(&self, ins: &[ValueType]) -> Result<ValueType> {
        super::float_op("softmax", ins, |s| self.shape_of(s))
    }

    fn cpu(&self, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
        super::cpu_f32("softmax", ins, out, |xs, shapes| self.cpu_f32(xs, shapes))
    }

    fn lower(&self, _k: &Standard, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        self.dispatches(cx)
    }

    fn shaders() -> Vec<&'static ShaderSource> {
        vec![&SOFTMAX]
    }
}

impl OpFamily for LayerNorm {
    const FAMILY: &'static str = "layer_norm";
    type Kernel = Standard;

    fn arity(&self) -> (usize, usize) {
        (3, 3)
    }

    fn infer(&self, ins: &[ValueType]) -> Result<ValueType> {
        super::finite_attr("layer_norm", "eps", self.eps)?;
        super::float_op("layer_norm", ins, |s| self.shape_of(s))
    }

    fn cpu(&self, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
        super::cpu_f32("layer_norm", ins, out, |xs, shapes| {
            self.cpu_f32(xs, shapes)
        })
    }

    fn lower(&self, _k: &Standard, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        self.dispatches(cx)
    }

    fn shaders() -> Vec<&'static ShaderSource> {
        vec![&LAYERNORM]
    }
}

impl OpFamily for BatchNorm {
    const FAMILY: &'static str = "batch_norm";
    type Kernel = Standard;

    fn arity(&self) -> (usize, usize) {
        (5, 5)
    }

    fn infer(&self, ins: &[ValueType]) -> Result<ValueType> {
        super::finite_attr("batch_norm", "eps", self.eps)?;
        super::float_op("batch_norm", ins, |s| self.shape_of(s))
    }

    fn cpu(&self, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
        super::cpu_f32("batch_norm", ins, out, |xs, shapes| {
            self.cpu_f32(xs, shapes)
        })
    }

    fn lower(&self, _k: &Standard, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        self.dispatches(cx)
    }

    fn shaders() -> Vec<&'static ShaderSource> {
        vec![&BATCHNORM]
    }
}
