//! ONNX `Resize` (opset 10, 11, 13, 18 forms) in `nearest` and `linear` modes over the last two
//! dims (NCHW upsampling as in detection necks; other dims must keep their size). `cubic` and
//! `tf_crop_and_resize` are refused with an error naming them.
//!
//! Source coordinates follow the operator's formulas in f32 on both the CPU reference and the
//! kernel (`(x + 0.5) / scale - 0.5` for `half_pixel`, divisions as written), so the nearest
//! index agrees wherever f32 division is correctly rounded (it is on lavapipe; power-of-two
//! scales are exact everywhere). Linear interpolates along the width, then the height
//! (`a * (1 - r) + b * r`, neighbours clamped into the input: the operator's edge padding).

use super::{grid_1d, word, Activation, Bind, Dispatch, LowerCtx, OpFamily, SelectCtx, Standard};
use crate::error::{Error, Result};
use crate::gpu::shader::{ShaderKey, ShaderSource};
use crate::tensor::{fmt_shape, numel, Tensor, ValueType};
use serde::{Deserialize, Serialize};

/// Interpolation mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizeMode {
    #[default]
    Nearest,
    Linear,
    /// Refused (no reference or kernel yet).
    Cubic,
}

/// ONNX `coordinate_transformation_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CoordMode {
    #[default]
    HalfPixel,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
    TfHalfPixelForNearest,
    /// Refused (needs the roi input).
    TfCropAndResize,
}

/// ONNX `nearest_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NearestMode {
    #[default]
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
}

/// `Resize`: output size from `scales` (`floor(in * scale)`) or `sizes`, per axis of `axes`
/// (opset 18; empty: all). In ONNX the scales/sizes are inputs (opset 10: input 1 = scales;
/// 11+: roi, scales, sizes), absorbed at plan time; an input with no elements is absent.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Resize {
    #[serde(default)]
    pub mode: ResizeMode,
    #[serde(default)]
    pub coordinate_transformation_mode: CoordMode,
    #[serde(default)]
    pub nearest_mode: NearestMode,
    #[serde(default)]
    pub scales: Vec<f32>,
    #[serde(default)]
    pub sizes: Vec<i64>,
    #[serde(default)]
    pub axes: Vec<i64>,
}

/// Per output axis: input and output length and the scale the coordinate formula divides by.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Axis {
    len_in: usize,
    len_out: usize,
    scale: f32,
}

impl Resize {
    /// Inputs 1.. (roi is ignored: it serves only `tf_crop_and_resize`, refused).
    fn resolved(&self, n: usize, consts: &[Option<&Tensor>]) -> Result<Resize> {
        if n < 2 {
            return Ok(self.clone());
        }
        let (scales_at, sizes_at) = if n == 2 { (1, None) } else { (2, Some(3)) };
        let known = |i: usize, what: &str| {
            super::const_input(consts, i).ok_or_else(|| {
                Error::graph(format!(
                    "resize {what} (input {i}) must be known when the graph is planned (a \
                     weight, or computed from shapes only)"
                ))
            })
        };
        let mut op = self.clone();
        if scales_at < n {
            let t = known(scales_at, "scales")?;
            if t.numel() > 0 && t.shape().len() == 1 {
                op.scales = t.to_f32().f32s("resize scales")?.to_vec();
            } else if t.numel() > 0 {
                return Err(Error::shape(
                    format!("resize scales (input {scales_at})"),
                    "a 1-D tensor",
                    fmt_shape(t.shape()),
                ));
            }
        }
        if let Some(i) = sizes_at.filter(|&i| i < n) {
            let t = known(i, "sizes")?;
            if t.numel() > 0 {
                op.sizes = super::shape::int_values("resize sizes (input 3)", t)?;
            }
        }
        Ok(op)
    }

    /// Every axis' lengths and scale, checking the attributes.
    fn axes_of(&self, x: &[usize]) -> Result<Vec<Axis>> {
        let r = x.len();
        match self.mode {
            ResizeMode::Cubic => {
                return Err(Error::Unsupported {
                    op: "resize".into(),
                    what: "mode cubic".into(),
                    backend: "any".into(),
                })
            }
            _ if self.coordinate_transformation_mode == CoordMode::TfCropAndResize => {
                return Err(Error::Unsupported {
                    op: "resize".into(),
                    what: "coordinate_transformation_mode tf_crop_and_resize".into(),
                    backend: "any".into(),
                })
            }
            _ => {}
        }
        let axes: Vec<usize> = if self.axes.is_empty() {
            (0..r).collect()
        } else {
            (self.axes.iter())
                .map(|&a| super::norm::norm_axis("resize axes", a, r))
                .collect::<Result<_>>()?
        };
        let mut out: Vec<Axis> = (x.iter())
            .map(|&n| Axis {
                len_in: n,
                len_out: n,
                scale: 1.0,
            })
            .collect();
        match (self.scales.is_empty(), self.sizes.is_empty()) {
            (false, true) => {
                if self.scales.len() != axes.len() {
                    return Err(Error::shape(
                        "resize scales",
                        format!("{} entries (one per resized axis)", axes.len()),
                        format!("{:?}", self.scales),
                    ));
                }
                for (&a, &s) in axes.iter().zip(&self.scales) {
                    if !(s.is_finite() && s > 0.0) {
                        return Err(Error::graph(format!(
                            "resize: scale {s} of axis {a} is not a positive number"
                        )));
                    }
                    let len = (x[a] as f64 * s as f64).floor();
                    if len < 1.0 || len > i32::MAX as f64 {
                        return Err(Error::shape(
                            "resize",
                            format!("an output length in 1..2^31 along axis {a}"),
                            format!("{} x {s}", x[a]),
                        ));
                    }
                    out[a] = Axis {
                        len_in: x[a],
                        len_out: len as usize,
                        scale: s,
                    };
                }
            }
            (true, false) => {
                if self.sizes.len() != axes.len() {
                    return Err(Error::shape(
                        "resize sizes",
                        format!("{} entries (one per resized axis)", axes.len()),
                        format!("{:?}", self.sizes),
                    ));
                }
                for (&a, &s) in axes.iter().zip(&self.sizes) {
                    if !(1..=i32::MAX as i64).contains(&s) {
                        return Err(Error::graph(format!(
                            "resize: size {s} of axis {a} is not in 1..2^31"
                        )));
                    }
                    out[a] = Axis {
                        len_in: x[a],
                        len_out: s as usize,
                        scale: s as f32 / x[a] as f32,
                    };
                }
            }
            _ => {
                return Err(Error::graph(
                    "resize: exactly one of scales and sizes must be given",
                ))
            }
        }
        // Only the last two dims may change size.
        if let Some(a) = (0..r.saturating_sub(2)).find(|&a| out[a].len_out != out[a].len_in) {
            return Err(Error::Unsupported {
                op: "resize".into(),
                what: format!(
                    "resizing axis {a} of {} (only the last two dims may change)",
                    fmt_shape(x)
                ),
                backend: "any".into(),
            });
        }
        for a in &out {
            super::check_i32_extent("resize", "input length", a.len_in)?;
        }
        Ok(out)
    }

    /// The source coordinate of output index `x` along an axis (the operator's formula).
    fn coord(&self, x: usize, ax: Axis) -> f32 {
        let x = x as f32;
        match self.coordinate_transformation_mode {
            CoordMode::HalfPixel => (x + 0.5) / ax.scale - 0.5,
            CoordMode::PytorchHalfPixel if ax.len_out > 1 => (x + 0.5) / ax.scale - 0.5,
            CoordMode::PytorchHalfPixel => 0.0,
            CoordMode::AlignCorners if ax.len_out == 1 => 0.0,
            CoordMode::AlignCorners => x * (ax.len_in as f32 - 1.0) / (ax.len_out as f32 - 1.0),
            CoordMode::Asymmetric => x / ax.scale,
            CoordMode::TfHalfPixelForNearest | CoordMode::TfCropAndResize => (x + 0.5) / ax.scale,
        }
    }

    fn nearest(&self, c: f32, len_in: usize) -> usize {
        let f = c.floor();
        let frac = c - f;
        let i = match self.nearest_mode {
            NearestMode::RoundPreferFloor => f + (frac > 0.5) as i32 as f32,
            NearestMode::RoundPreferCeil => f + (frac >= 0.5) as i32 as f32,
            NearestMode::Floor => f,
            NearestMode::Ceil => c.ceil(),
        };
        i.clamp(0.0, len_in as f32 - 1.0) as usize
    }

    /// Index map of one axis: `(i0, i1, weight of i1)` per output index.
    fn taps(&self, ax: Axis) -> Vec<(usize, usize, f32)> {
        let last = ax.len_in as f32 - 1.0;
        (0..ax.len_out)
            .map(|o| {
                let c = self.coord(o, ax);
                if self.mode == ResizeMode::Nearest {
                    let i = self.nearest(c, ax.len_in);
                    return (i, i, 0.0);
                }
                let f = c.floor();
                let r = c - f;
                let i0 = f.clamp(0.0, last) as usize;
                let i1 = (f + 1.0).clamp(0.0, last) as usize;
                (i0, i1, r)
            })
            .collect()
    }

    /// `[planes, H, W]` of the input and the output's `(H, W)` axes (rank 1: one row).
    fn planes(axes: &[Axis]) -> (usize, Axis, Axis) {
        let r = axes.len();
        let one = Axis {
            len_in: 1,
            len_out: 1,
            scale: 1.0,
        };
        let (h, w) = match r {
            0 => (one, one),
            1 => (one, axes[0]),
            _ => (axes[r - 2], axes[r - 1]),
        };
        let planes = axes[..r.saturating_sub(2)]
            .iter()
            .map(|a| a.len_in)
            .product();
        (planes, h, w)
    }

    fn cpu_f32(&self, x: &[f32], axes: &[Axis]) -> Vec<f32> {
        let (planes, h, w) = Self::planes(axes);
        let (th, tw) = (self.taps(h), self.taps(w));
        let linear = self.mode == ResizeMode::Linear;
        let mut y = Vec::with_capacity(planes * h.len_out * w.len_out);
        for p in 0..planes {
            let plane = &x[p * h.len_in * w.len_in..(p + 1) * h.len_in * w.len_in];
            for &(y0, y1, ry) in &th {
                for &(x0, x1, rx) in &tw {
                    let at = |yy: usize, xx: usize| plane[yy * w.len_in + xx];
                    if linear {
                        let top = at(y0, x0) * (1.0 - rx) + at(y0, x1) * rx;
                        let bot = at(y1, x0) * (1.0 - rx) + at(y1, x1) * rx;
                        y.push(top * (1.0 - ry) + bot * ry);
                    } else {
                        y.push(at(y0, x0));
                    }
                }
            }
        }
        y
    }

    fn coord_code(&self) -> u32 {
        match self.coordinate_transformation_mode {
            CoordMode::HalfPixel => 0,
            CoordMode::PytorchHalfPixel => 1,
            CoordMode::AlignCorners => 2,
            CoordMode::Asymmetric => 3,
            CoordMode::TfHalfPixelForNearest | CoordMode::TfCropAndResize => 4,
        }
    }

    fn nearest_code(&self) -> u32 {
        match self.nearest_mode {
            NearestMode::RoundPreferFloor => 0,
            NearestMode::RoundPreferCeil => 1,
            NearestMode::Floor => 2,
            NearestMode::Ceil => 3,
        }
    }
}

static RESIZE: ShaderSource = crate::wgsl!("shape/resize.wgsl"; [[("LINEAR", 0)], [("LINEAR", 1)]]);

impl OpFamily for Resize {
    const FAMILY: &'static str = "resize";
    type Kernel = Standard;

    fn arity(&self) -> (usize, usize) {
        (1, 4)
    }

    fn infer(&self, ins: &[ValueType]) -> Result<ValueType> {
        self.infer_consts(ins, &[])
    }

    fn infer_consts(&self, ins: &[ValueType], consts: &[Option<&Tensor>]) -> Result<ValueType> {
        if ins[0].dtype != crate::tensor::DType::F32 {
            return Err(Error::DTypeMismatch {
                op: "resize input 0".into(),
                expected: "f32".into(),
                got: ins[0].dtype.to_string(),
            });
        }
        let op = self.resolved(ins.len(), consts)?;
        let axes = op.axes_of(&ins[0].shape)?;
        let shape: Vec<usize> = axes.iter().map(|a| a.len_out).collect();
        Ok(ValueType::f32(&shape))
    }

    fn absorb_consts(&mut self, consts: &[Option<&Tensor>]) -> Result<Vec<usize>> {
        let n = consts.len();
        if n < 2 {
            return Ok(Vec::new());
        }
        // Scales and sizes must be known; roi (input 1 of the 3- and 4-input forms) is unused.
        let needed = if n == 2 { vec![1] } else { (2..n).collect() };
        if needed
            .iter()
            .any(|&i| super::const_input(consts, i).is_none())
        {
            return Ok(Vec::new());
        }
        *self = self.resolved(n, consts)?;
        Ok((1..n).collect())
    }

    fn cpu(&self, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
        let consts: Vec<Option<&Tensor>> = ins.iter().map(|&t| Some(t)).collect();
        let op = self.resolved(ins.len(), &consts)?;
        let axes = op.axes_of(ins[0].shape())?;
        Tensor::new(&out.shape, op.cpu_f32(ins[0].f32s("resize")?, &axes))
    }

    fn select(&self, cx: &SelectCtx) -> Option<Standard> {
        (cx.ins.len() == 1 && cx.dense_f32()).then_some(Standard::Standard)
    }

    fn lower(&self, _k: &Standard, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        let axes = self.axes_of(&cx.in_shapes[0])?;
        let (planes, h, w) = Self::planes(&axes);
        let n = numel(cx.out_shape);
        let params = vec![
            word(n),
            word(planes),
            word(h.len_in),
            word(w.len_in),
            word(h.len_out),
            word(w.len_out),
            self.coord_code(),
            self.nearest_code(),
            h.scale.to_bits(),
            w.scale.to_bits(),
            0,
            0,
        ];
        let linear = self.mode == ResizeMode::Linear;
        Ok(vec![Dispatch {
            shader: ShaderKey::new(&RESIZE, &[("LINEAR", linear as u32)]),
            overrides: Activation::None.overrides(),
            params,
            bindings: vec![Bind::Input(0), Bind::Output],
            workgroups: grid_1d((n as u64).div_ceil(256), cx.max_workgroups),
        }])
    }

    fn shaders() -> Vec<&'static ShaderSource> {
        vec![&RESIZE]
    }

    fn flops(&self, _ins: &[ValueType], out: &ValueType) -> u64 {
        let per = if self.mode == ResizeMode::Linear {
            9
        } else {
            0
        };
        (numel(&out.shape) as u64).saturating_mul(per)
    }
}
