//! Softmax and log-softmax, layer / RMS / group / instance / Lp normalisation and (inference)
//! batch norm.

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
        softmax_cpu(self.split(&shapes[0]), xs[0], false)
    }

    pub(crate) fn dispatches(&self, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        softmax_dispatch(self.split(&cx.in_shapes[0]), false, cx)
    }
}

/// Softmax (or its log) on x viewed as `(outer, len, inner)`.
fn softmax_cpu((outer, len, inner): (usize, usize, usize), x: &[f32], log: bool) -> Vec<f32> {
    let mut y = vec![0.0; x.len()];
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| o * len * inner + j * inner + i;
            let m = (0..len).map(|j| x[at(j)]).fold(f32::NEG_INFINITY, f32::max);
            let s: f32 = (0..len).map(|j| (x[at(j)] - m).exp()).sum();
            for j in 0..len {
                y[at(j)] = if log {
                    x[at(j)] - m - s.ln()
                } else {
                    (x[at(j)] - m).exp() / s
                };
            }
        }
    }
    y
}

/// [`softmax_cpu`] on chunks of outer slices over the threads (the same arithmetic per slice).
fn softmax_fast(
    (_, len, inner): (usize, usize, usize),
    log: bool,
    kernel: &str,
    ins: &[&Tensor],
    out: &ValueType,
) -> Result<Tensor> {
    let op = if log { "log_softmax" } else { "softmax" };
    if kernel != super::cpu_fast::ROWS {
        return Err(super::cpu_fast::wrong_kernel(op, kernel));
    }
    let x = ins[0].f32s(op)?;
    let slice = (len * inner).max(1);
    // exp, compare, add, divide: about 16 operations an element.
    let y = super::cpu_fast::by_rows(x, slice, 16, |_, xc, yc| {
        yc.copy_from_slice(&softmax_cpu((xc.len() / slice, len, inner), xc, log));
    });
    Tensor::new(&out.shape, y)
}

fn softmax_dispatch(
    (outer, len, inner): (usize, usize, usize),
    log: bool,
    cx: &LowerCtx,
) -> Result<Vec<Dispatch>> {
    {
        let rows = outer * inner;
        Ok(vec![Dispatch {
            shader: ShaderKey::new(&SOFTMAX, &[("LOG", log as u32)]),
            overrides: Activation::None.overrides(),
            params: vec![rows as u32, len as u32, inner as u32, 0],
            bindings: vec![Bind::Input(0), Bind::Output],
            workgroups: grid_1d(rows as u64, cx.max_workgroups),
        }])
    }
}

/// `log(softmax(x))` along `axis` (ONNX `LogSoftmax`, opset 13 form; older opsets' 2-D
/// coercion is a reshape around it), computed as `x - max - log(sum(exp(x - max)))`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LogSoftmax {
    #[serde(default = "minus_one")]
    pub axis: i64,
}

impl OpFamily for LogSoftmax {
    const FAMILY: &'static str = "log_softmax";
    type Kernel = Standard;

    fn infer(&self, ins: &[ValueType]) -> Result<ValueType> {
        super::float_op("log_softmax", ins, |s| {
            norm_axis("log_softmax", self.axis, s[0].len())?;
            Ok(s[0].clone())
        })
    }

    fn cpu(&self, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
        let sm = Softmax { axis: self.axis };
        super::cpu_f32("log_softmax", ins, out, |xs, shapes| {
            softmax_cpu(sm.split(&shapes[0]), xs[0], true)
        })
    }

    fn cpu_kernel(&self, cx: &super::CpuCtx) -> Option<&'static str> {
        super::cpu_fast::f32_kernel(cx, super::cpu_fast::ROWS)
    }

    fn cpu_fast(&self, kernel: &str, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
        let sm = Softmax { axis: self.axis };
        softmax_fast(sm.split(ins[0].shape()), true, kernel, ins, out)
    }

    fn lower(&self, _k: &Standard, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        let sm = Softmax { axis: self.axis };
        softmax_dispatch(sm.split(&cx.in_shapes[0]), true, cx)
    }

    fn shaders() -> Vec<&'static ShaderSource> {
        vec![&SOFTMAX]
    }
}

/// Layer norm over the dims from `axis` to the end; inputs `x, gamma[, beta]` where gamma and
/// beta have the normalised dims' shape (ONNX `LayerNormalization`; a missing beta is 0).
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
        for (what, s) in [("gamma", &ins[1]), ("beta", ins.get(2).unwrap_or(&ins[1]))] {
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
        let (x, g) = (xs[0], xs[1]);
        let b = xs.get(2).copied();
        let mut y = vec![0.0; x.len()];
        for (row, out) in x.chunks(len).zip(y.chunks_mut(len)) {
            let mean = row.iter().sum::<f32>() / len as f32;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / len as f32;
            let rstd = 1.0 / (var + self.eps).sqrt();
            for j in 0..len {
                out[j] = (row[j] - mean) * rstd * g[j] + b.map_or(0.0, |b| b[j]);
            }
        }
        y
    }

    pub(crate) fn dispatches(&self, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        let len = self.len(&cx.in_shapes[0]);
        let rows = numel(&cx.in_shapes[0]) / len;
        let beta = cx.in_shapes.len() > 2;
        Ok(vec![Dispatch {
            shader: ShaderKey::new(&LAYERNORM, &[("RMS", 0)]),
            overrides: Activation::None.overrides(),
            params: vec![rows as u32, len as u32, f32_word(self.eps), beta as u32],
            bindings: vec![
                Bind::Input(0),
                Bind::Input(1),
                if beta { Bind::Input(2) } else { Bind::Dummy },
                Bind::Output,
            ],
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

static SOFTMAX: ShaderSource =
    crate::wgsl!("norm/reduce.wgsl", "norm/softmax.wgsl"; [[("LOG", 0)], [("LOG", 1)]]);
static LAYERNORM: ShaderSource =
    crate::wgsl!("norm/reduce.wgsl", "norm/layernorm.wgsl"; [[("RMS", 0)], [("RMS", 1)]]);
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

    fn cpu_kernel(&self, cx: &super::CpuCtx) -> Option<&'static str> {
        super::cpu_fast::f32_kernel(cx, super::cpu_fast::ROWS)
    }

    /// Outer slices (each `len * inner` values, independent) over the threads.
    fn cpu_fast(&self, kernel: &str, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
        softmax_fast(self.split(ins[0].shape()), false, kernel, ins, out)
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
        (2, 3)
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

    fn cpu_kernel(&self, cx: &super::CpuCtx) -> Option<&'static str> {
        super::cpu_fast::f32_kernel(cx, super::cpu_fast::ROWS)
    }

    /// Rows over the threads, each through the reference's arithmetic.
    fn cpu_fast(&self, kernel: &str, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
        if kernel != super::cpu_fast::ROWS {
            return Err(super::cpu_fast::wrong_kernel("layer_norm", kernel));
        }
        let xs = (ins.iter().map(|t| t.f32s("layer_norm"))).collect::<Result<Vec<_>>>()?;
        let len = self.len(ins[0].shape()).max(1);
        // The same op on a [rows, len] view: axis 1 normalises each row.
        let rows_op = LayerNorm { axis: 1, ..*self };
        let y = super::cpu_fast::by_rows(xs[0], len, 8, |_, xc, yc| {
            let mut sub = xs.clone();
            sub[0] = xc;
            yc.copy_from_slice(&rows_op.cpu_f32(&sub, &[vec![xc.len() / len, len]]));
        });
        Tensor::new(&out.shape, y)
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

    fn cpu_kernel(&self, cx: &super::CpuCtx) -> Option<&'static str> {
        super::cpu_fast::f32_kernel(cx, super::cpu_fast::ROWS)
    }

    /// Images (small planes) or single planes (large ones) over the threads, each through
    /// the reference's arithmetic with its channels' parameters.
    fn cpu_fast(&self, kernel: &str, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
        if kernel != super::cpu_fast::ROWS {
            return Err(super::cpu_fast::wrong_kernel("batch_norm", kernel));
        }
        let xs = (ins.iter().map(|t| t.f32s("batch_norm"))).collect::<Result<Vec<_>>>()?;
        let x = ins[0].shape();
        let (c, inner) = (x[1], numel(&x[2..]));
        let y = if inner >= 4096 {
            super::cpu_fast::by_rows(xs[0], inner, 2, |first, xc, yc| {
                for (p, (xp, yp)) in xc.chunks(inner).zip(yc.chunks_mut(inner)).enumerate() {
                    let ch = (first + p) % c;
                    let mut sub: Vec<&[f32]> = vec![xp];
                    sub.extend(xs[1..].iter().map(|v| &v[ch..ch + 1]));
                    yp.copy_from_slice(&self.cpu_f32(&sub, &[vec![1, 1, inner]]));
                }
            })
        } else {
            let img = (c * inner).max(1);
            super::cpu_fast::by_rows(xs[0], img, 2, |_, xc, yc| {
                let mut sub = xs.clone();
                sub[0] = xc;
                let shape = vec![xc.len() / img, c, inner];
                yc.copy_from_slice(&self.cpu_f32(&sub, &[shape]));
            })
        };
        Tensor::new(&out.shape, y)
    }

    fn lower(&self, _k: &Standard, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        self.dispatches(cx)
    }

    fn shaders() -> Vec<&'static ShaderSource> {
        vec![&BATCHNORM]
    }
}

/// Checks that input `i` (`what`) of `op` is `[c]`.
fn per_channel(op: &str, what: &str, got: &[usize], c: usize) -> Result<()> {
    if got != [c] {
        return Err(Error::shape(
            format!("{op} {what}"),
            fmt_shape(&[c]),
            fmt_shape(got),
        ));
    }
    Ok(())
}

/// Group normalisation (ONNX `GroupNormalization`, opset 21 form): x `[N, C, ...]` with its
/// channels in `num_groups` groups, each group of each image normalised over its channels and
/// spatial positions, then `* scale[c] + bias[c]` per channel (inputs `x, scale, bias`; the
/// opset 18 per-group scale is the importer's to expand). Instance normalisation is the case
/// of one channel per group ([`InstanceNorm`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GroupNorm {
    pub num_groups: usize,
    #[serde(default = "default_eps")]
    pub eps: f32,
}

/// Instance normalisation (ONNX `InstanceNormalization`): each channel of each image
/// normalised over its spatial positions, then `* scale[c] + bias[c]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct InstanceNorm {
    #[serde(default = "default_eps")]
    pub eps: f32,
}

/// Shape rule, CPU reference and dispatch of group norm with `groups` groups (`None`: one
/// channel per group).
fn group_norm_infer(
    op: &str,
    groups: Option<usize>,
    eps: f32,
    ins: &[ValueType],
) -> Result<ValueType> {
    super::finite_attr(op, "eps", eps)?;
    super::float_op(op, ins, |s| {
        let x = &s[0];
        if x.len() < 2 {
            return Err(Error::shape(
                op,
                "input of rank >= 2 (N, C, ...)",
                fmt_shape(x),
            ));
        }
        let c = x[1];
        let g = groups.unwrap_or(c);
        if g == 0 || c % g != 0 {
            return Err(Error::graph(format!(
                "{op}: num_groups {g} must be positive and divide the {c} channels"
            )));
        }
        super::attr_u32(op, "num_groups", g)?;
        per_channel(op, "scale", &s[1], c)?;
        per_channel(op, "bias", &s[2], c)?;
        Ok(x.clone())
    })
}

/// (rows, len, inner, channels per group, groups) of group norm on x.
fn group_split(x: &[usize], groups: Option<usize>) -> (usize, usize, usize, usize, usize) {
    let c = x[1];
    let g = groups.unwrap_or(c).max(1);
    let inner = numel(&x[2..]);
    let cpg = c / g;
    (x[0] * g, cpg * inner, inner, cpg, g)
}

fn group_norm_cpu(xs: &[&[f32]], x_shape: &[usize], groups: Option<usize>, eps: f32) -> Vec<f32> {
    let (_, len, inner, cpg, g) = group_split(x_shape, groups);
    let (x, scale, bias) = (xs[0], xs[1], xs[2]);
    let mut y = vec![0.0; x.len()];
    for (r, (row, out)) in x.chunks(len).zip(y.chunks_mut(len)).enumerate() {
        let mean = row.iter().sum::<f32>() / len as f32;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / len as f32;
        let rstd = 1.0 / (var + eps).sqrt();
        for j in 0..len {
            let c = (r % g) * cpg + j / inner;
            out[j] = (row[j] - mean) * rstd * scale[c] + bias[c];
        }
    }
    y
}

fn group_norm_dispatch(groups: Option<usize>, eps: f32, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
    let (rows, len, inner, cpg, g) = group_split(&cx.in_shapes[0], groups);
    Ok(vec![Dispatch {
        shader: ShaderKey::new(&GROUPNORM, &[]),
        overrides: Activation::None.overrides(),
        params: vec![
            super::word(rows),
            super::word(len),
            super::word(inner),
            super::word(cpg),
            super::word(g),
            f32_word(eps),
            0,
            0,
        ],
        bindings: vec![Bind::Input(0), Bind::Input(1), Bind::Input(2), Bind::Output],
        workgroups: grid_1d(rows as u64, cx.max_workgroups),
    }])
}

static GROUPNORM: ShaderSource = crate::wgsl!("norm/reduce.wgsl", "norm/groupnorm.wgsl");

macro_rules! group_norm_family {
    ($ty:ty, $fam:literal, |$s:ident| $groups:expr) => {
        impl OpFamily for $ty {
            const FAMILY: &'static str = $fam;
            type Kernel = Standard;

            fn arity(&self) -> (usize, usize) {
                (3, 3)
            }

            fn infer(&self, ins: &[ValueType]) -> Result<ValueType> {
                let $s = self;
                group_norm_infer($fam, $groups, self.eps, ins)
            }

            fn cpu(&self, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
                let $s = self;
                let groups = $groups;
                super::cpu_f32($fam, ins, out, |xs, shapes| {
                    group_norm_cpu(xs, &shapes[0], groups, self.eps)
                })
            }

            fn cpu_kernel(&self, cx: &super::CpuCtx) -> Option<&'static str> {
                super::cpu_fast::f32_kernel(cx, super::cpu_fast::ROWS)
            }

            /// Rows (a group of an image) over the threads, the reference's arithmetic.
            fn cpu_fast(&self, kernel: &str, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
                if kernel != super::cpu_fast::ROWS {
                    return Err(super::cpu_fast::wrong_kernel($fam, kernel));
                }
                let $s = self;
                let (_, len, inner, cpg, g) = group_split(ins[0].shape(), $groups);
                let xs = (ins.iter().map(|t| t.f32s($fam))).collect::<Result<Vec<_>>>()?;
                let y =
                    super::cpu_fast::group_norm(xs[0], xs[1], xs[2], len, inner, cpg, g, self.eps);
                Tensor::new(&out.shape, y)
            }

            fn lower(&self, _k: &Standard, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
                let $s = self;
                group_norm_dispatch($groups, self.eps, cx)
            }

            fn shaders() -> Vec<&'static ShaderSource> {
                vec![&GROUPNORM]
            }
        }
    };
}
group_norm_family!(GroupNorm, "group_norm", |s| Some(s.num_groups));
group_norm_family!(InstanceNorm, "instance_norm", |_s| None);

/// RMS normalisation (ONNX `RMSNormalization`): over the dims from `axis` to the end,
/// `x / sqrt(mean(x^2) + eps) * scale`, scale of the normalised dims' shape.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RmsNorm {
    #[serde(default = "minus_one")]
    pub axis: i64,
    #[serde(default = "default_eps")]
    pub eps: f32,
}

impl RmsNorm {
    fn len(&self, shape: &[usize]) -> usize {
        let a = norm_axis("rms_norm", self.axis, shape.len()).unwrap_or(shape.len() - 1);
        numel(&shape[a..])
    }
}

impl OpFamily for RmsNorm {
    const FAMILY: &'static str = "rms_norm";
    type Kernel = Standard;

    fn arity(&self) -> (usize, usize) {
        (2, 2)
    }

    fn infer(&self, ins: &[ValueType]) -> Result<ValueType> {
        super::finite_attr("rms_norm", "eps", self.eps)?;
        super::float_op("rms_norm", ins, |s| {
            let a = norm_axis("rms_norm", self.axis, s[0].len())?;
            // The scale may carry leading 1s (ONNX broadcasts it to the normalised dims).
            let norm = &s[0][a..];
            let scale = &s[1][s[1].iter().position(|&d| d != 1).unwrap_or(s[1].len())..];
            let trimmed = &norm[norm.iter().position(|&d| d != 1).unwrap_or(norm.len())..];
            if scale != trimmed {
                return Err(Error::shape(
                    "rms_norm scale",
                    fmt_shape(norm),
                    fmt_shape(&s[1]),
                ));
            }
            Ok(s[0].clone())
        })
    }

    fn cpu(&self, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
        super::cpu_f32("rms_norm", ins, out, |xs, shapes| {
            let len = self.len(&shapes[0]);
            let (x, g) = (xs[0], xs[1]);
            let mut y = vec![0.0; x.len()];
            for (row, out) in x.chunks(len).zip(y.chunks_mut(len)) {
                let ms = row.iter().map(|v| v * v).sum::<f32>() / len as f32;
                let r = 1.0 / (ms + self.eps).sqrt();
                for j in 0..len {
                    out[j] = row[j] * r * g[j];
                }
            }
            y
        })
    }

    fn lower(&self, _k: &Standard, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        let len = self.len(&cx.in_shapes[0]);
        let rows = numel(&cx.in_shapes[0]) / len;
        Ok(vec![Dispatch {
            shader: ShaderKey::new(&LAYERNORM, &[("RMS", 1)]),
            overrides: Activation::None.overrides(),
            params: vec![rows as u32, len as u32, f32_word(self.eps), 0],
            bindings: vec![Bind::Input(0), Bind::Input(1), Bind::Dummy, Bind::Output],
            workgroups: grid_1d(rows as u64, cx.max_workgroups),
        }])
    }

    fn shaders() -> Vec<&'static ShaderSource> {
        vec![&LAYERNORM]
    }
}

/// Lp normalisation (ONNX `LpNormalization`): along `axis`, `x / ||x||_p` with `p` 1 or 2; a
/// zero vector stays zero (its norm is 0).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LpNorm {
    #[serde(default = "minus_one")]
    pub axis: i64,
    #[serde(default = "two")]
    pub p: u32,
}
fn two() -> u32 {
    2
}

impl OpFamily for LpNorm {
    const FAMILY: &'static str = "lp_norm";
    type Kernel = Standard;

    fn infer(&self, ins: &[ValueType]) -> Result<ValueType> {
        if self.p != 1 && self.p != 2 {
            return Err(Error::graph(format!(
                "lp_norm: p must be 1 or 2, got {}",
                self.p
            )));
        }
        super::float_op("lp_norm", ins, |s| {
            norm_axis("lp_norm", self.axis, s[0].len())?;
            Ok(s[0].clone())
        })
    }

    fn cpu(&self, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
        let (outer, len, inner) = Softmax { axis: self.axis }.split(&out.shape);
        super::cpu_f32("lp_norm", ins, out, |xs, _| {
            let x = xs[0];
            let mut y = vec![0.0; x.len()];
            for o in 0..outer {
                for i in 0..inner {
                    let at = |j: usize| o * len * inner + j * inner + i;
                    let n = if self.p == 1 {
                        (0..len).map(|j| x[at(j)].abs()).sum::<f32>()
                    } else {
                        (0..len).map(|j| x[at(j)] * x[at(j)]).sum::<f32>().sqrt()
                    };
                    for j in 0..len {
                        y[at(j)] = if n == 0.0 { 0.0 } else { x[at(j)] / n };
                    }
                }
            }
            y
        })
    }

    fn lower(&self, _k: &Standard, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        let (outer, len, inner) = Softmax { axis: self.axis }.split(&cx.in_shapes[0]);
        let rows = outer * inner;
        Ok(vec![Dispatch {
            shader: ShaderKey::new(&LPNORM, &[("P", self.p)]),
            overrides: Activation::None.overrides(),
            params: vec![rows as u32, len as u32, inner as u32, 0],
            bindings: vec![Bind::Input(0), Bind::Output],
            workgroups: grid_1d(rows as u64, cx.max_workgroups),
        }])
    }

    fn shaders() -> Vec<&'static ShaderSource> {
        vec![&LPNORM]
    }
}

static LPNORM: ShaderSource =
    crate::wgsl!("norm/reduce.wgsl", "norm/lpnorm.wgsl"; [[("P", 1)], [("P", 2)]]);
