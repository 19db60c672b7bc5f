//! Data-movement ops that gather each output element from one input element (or a fill value):
//! `Slice`, `Expand`, `Tile`, `Pad`, `DepthToSpace`, `SpaceToDepth` (ONNX semantics).
//!
//! Each op reduces to a [`Movement`]: per output dim `d`, the source coordinate is
//! `start[d] + o[d] * step[d]`, resolved against the source extent `ext[d]` by a mode (in range
//! by construction, wrapped, filled, clamped or reflected), and the source offset is the sum of
//! the coordinates times `stride[d]`. One WGSL kernel (`shape/strided.wgsl`, one invocation per
//! output element) runs every op on 32-bit dtypes (f32, i32: it copies words, so bits are kept);
//! other dtypes (i64, bool, u8, ...) run on the CPU inside the plan. The CPU reference moves raw
//! element bytes, so it serves every dtype.
//!
//! Ops whose ONNX form gives shape-like values as inputs (slice bounds, expand shape, tile
//! repeats, pads) take them from the inputs when known at plan time
//! ([`OpFamily::infer_consts`]) and absorb them into their attributes at session build.

use super::elementwise::{broadcast_shape, MAX_RANK};
use super::norm::norm_axis;
use super::shape::int_values;
use super::{grid_1d, Activation, Bind, Dispatch, LowerCtx, OpFamily, SelectCtx, Standard};
use crate::error::{Error, Result};
use crate::gpu::shader::{ShaderKey, ShaderSource};
use crate::tensor::{fmt_shape, numel, DType, Tensor, ValueType};
use serde::{Deserialize, Serialize};

/// How a source coordinate outside `[0, ext)` is resolved (the kernel's `mode` word).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resolve {
    /// Always in range by construction (slice, expand, transposes).
    Direct = 0,
    /// Modulo the extent (tile, pad `wrap`).
    Wrap = 1,
    /// Outside the input: the fill value (pad `constant`).
    Fill = 2,
    /// Clamped to the nearest edge (pad `edge`).
    Edge = 3,
    /// Mirrored without repeating the edge (pad `reflect`, numpy's `reflect`).
    Reflect = 4,
}

/// An output-to-input index map (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Movement {
    /// The op's output shape when it differs from `out` (a finer view of the same elements,
    /// as depth/space moves decode 6-D coordinates); empty: `out`.
    pub shape: Vec<usize>,
    /// The output dims the kernel decodes coordinates of.
    pub out: Vec<usize>,
    pub ext: Vec<usize>,
    pub stride: Vec<usize>,
    pub start: Vec<i64>,
    pub step: Vec<i64>,
    pub mode: Resolve,
}

/// Row-major strides of `shape`.
pub(crate) fn strides(shape: &[usize]) -> Vec<usize> {
    let mut st = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        st[i] = st[i + 1] * shape[i + 1];
    }
    st
}

/// Resolves coordinate `c` against extent `e` (`None`: the fill value).
fn resolve(mode: Resolve, c: i64, e: i64) -> Option<i64> {
    match mode {
        Resolve::Direct => Some(c),
        Resolve::Wrap => Some(c.rem_euclid(e)),
        Resolve::Fill => (0..e).contains(&c).then_some(c),
        Resolve::Edge => Some(c.clamp(0, e - 1)),
        Resolve::Reflect => {
            if e == 1 {
                return Some(0);
            }
            let period = 2 * (e - 1);
            let m = c.rem_euclid(period);
            Some(if m >= e { period - m } else { m })
        }
    }
}

impl Movement {
    /// An identity map of `x` (start 0, step 1) in mode `mode` onto output shape `out`.
    fn unit(x: &[usize], out: &[usize], mode: Resolve) -> Movement {
        Movement {
            shape: Vec::new(),
            out: out.to_vec(),
            ext: x.to_vec(),
            stride: strides(x),
            start: vec![0; x.len()],
            step: vec![1; x.len()],
            mode,
        }
    }

    /// A permutation of `view` (the input viewed with that shape): output dim i is dim
    /// `perm[i]`.
    pub(crate) fn permute(view: &[usize], perm: &[usize]) -> Movement {
        let st = strides(view);
        let out: Vec<usize> = perm.iter().map(|&p| view[p]).collect();
        Movement {
            ext: out.clone(),
            stride: perm.iter().map(|&p| st[p]).collect(),
            start: vec![0; out.len()],
            step: vec![1; out.len()],
            shape: Vec::new(),
            out,
            mode: Resolve::Direct,
        }
    }

    /// The op's output shape.
    pub(crate) fn out_shape(&self) -> &[usize] {
        if self.shape.is_empty() {
            &self.out
        } else {
            &self.shape
        }
    }

    /// Checks the map fits the kernel: rank, and extents and coordinates in signed 32-bit
    /// arithmetic.
    fn check(&self, op: &str) -> Result<()> {
        if self.out.len() > MAX_RANK {
            return Err(Error::Unsupported {
                op: op.into(),
                what: format!("rank {} > {MAX_RANK}", self.out.len()),
                backend: "any".into(),
            });
        }
        let big = |v: i64| !(-(i32::MAX as i64)..=i32::MAX as i64).contains(&v);
        for d in 0..self.out.len() {
            let last = self.start[d] + (self.out[d] as i64 - 1) * self.step[d];
            if big(self.out[d] as i64) || big(self.ext[d] as i64) || big(self.start[d]) || big(last)
            {
                return Err(Error::graph(format!(
                    "{op}: dim {d} (output {}, input {}) exceeds the kernels' 32-bit signed \
                     index arithmetic",
                    self.out[d], self.ext[d]
                )));
            }
        }
        Ok(())
    }

    /// Source element of output element `i` (`None`: the fill value).
    fn source(&self, i: usize) -> Option<usize> {
        let mut rem = i;
        let mut src = 0usize;
        for d in (0..self.out.len()).rev() {
            let o = (rem % self.out[d]) as i64;
            rem /= self.out[d];
            let c = resolve(
                self.mode,
                self.start[d] + o * self.step[d],
                self.ext[d] as i64,
            )?;
            src += c as usize * self.stride[d];
        }
        Some(src)
    }

    /// CPU reference: moves element bytes of any dtype; `fill` is one element's bytes.
    pub(crate) fn run_cpu(&self, x: &Tensor, fill: &[u8]) -> Result<Tensor> {
        let size = x.dtype().size();
        let src = x.bytes();
        let n = numel(&self.out);
        let mut y = Vec::with_capacity(n * size);
        for i in 0..n {
            match self.source(i) {
                Some(s) => y.extend_from_slice(&src[s * size..(s + 1) * size]),
                None => y.extend_from_slice(fill),
            }
        }
        Tensor::from_bytes(x.dtype(), self.out_shape(), &y)
    }

    /// The kernel's dispatch; `fill` is the fill value's 32-bit word.
    pub(crate) fn dispatch(&self, fill: u32, max_workgroups: u32) -> Dispatch {
        let n = numel(&self.out);
        let words = |v: &[i64]| {
            let mut w = [0u32; MAX_RANK];
            for (i, &x) in v.iter().enumerate() {
                w[i] = (x as i32) as u32;
            }
            w
        };
        let u = |v: &[usize]| words(&v.iter().map(|&x| x as i64).collect::<Vec<_>>());
        let mut params = vec![n as u32, self.out.len() as u32, self.mode as u32, fill];
        params.extend(u(&self.out));
        params.extend(u(&self.ext));
        params.extend(u(&self.stride));
        params.extend(words(&self.start));
        params.extend(words(&self.step));
        Dispatch {
            shader: ShaderKey::new(&STRIDED, &[]),
            overrides: Activation::None.overrides(),
            params,
            bindings: vec![Bind::Input(0), Bind::Output],
            workgroups: grid_1d((n as u64).div_ceil(256), max_workgroups),
        }
    }
}

pub(crate) static STRIDED: ShaderSource = crate::wgsl!("shape/strided.wgsl");

/// Whether the strided kernel takes this case: the data input and output 32-bit (f32/i32),
/// dense, and no shape-like input left unabsorbed.
fn select_32bit(cx: &SelectCtx, max_inputs: usize) -> Option<Standard> {
    let word = |d: DType| matches!(d, DType::F32 | DType::I32);
    (cx.ins.len() <= max_inputs
        && word(cx.ins[0].dtype)
        && cx.out.dtype == cx.ins[0].dtype
        && cx.formats.first().is_none_or(|f| f.is_dense()))
    .then_some(Standard::Standard)
}

/// Input `i`'s integer values: `Ok(None)` when the node has no input `i`, an error naming it
/// when its value is not known at plan time.
fn shape_input(
    op: &str,
    what: &str,
    i: usize,
    n_inputs: usize,
    consts: &[Option<&Tensor>],
) -> Result<Option<Vec<i64>>> {
    if i >= n_inputs {
        return Ok(None);
    }
    let name = format!("{op} {what} (input {i})");
    let t = super::const_input(consts, i).ok_or_else(|| {
        Error::graph(format!(
            "{name} must be known when the graph is planned (a weight, or computed from \
             shapes only)"
        ))
    })?;
    if t.shape().len() > 1 {
        return Err(Error::shape(
            name,
            "a 1-D tensor (or a scalar)",
            fmt_shape(t.shape()),
        ));
    }
    int_values(&name, t).map(Some)
}

/// All inputs' values, as the CPU reference has them.
fn all_consts<'a>(ins: &[&'a Tensor]) -> Vec<Option<&'a Tensor>> {
    ins.iter().map(|&t| Some(t)).collect()
}

/// What each movement op defines; the shared `OpFamily` impl (`movement_family!`) does the rest.
trait MovementOp: Sized {
    /// The op with its shape-like inputs (1..) folded into the attributes (`n` inputs).
    fn resolved(&self, n: usize, consts: &[Option<&Tensor>]) -> Result<Self>;
    /// The index map for input shape `x`.
    fn movement(&self, x: &[usize]) -> Result<Movement>;
    /// Checks of the inputs beyond the shape rule (dtypes of value inputs).
    fn check_inputs(&self, _ins: &[ValueType]) -> Result<()> {
        Ok(())
    }
    /// One element of the fill value, in the data's dtype (CPU reference).
    fn fill_bytes(&self, _ins: &[&Tensor]) -> Result<Vec<u8>> {
        Ok(Vec::new())
    }
    /// The fill word of the 32-bit kernel.
    fn fill_word(&self) -> u32 {
        0
    }
    /// Whether the kernel takes data of this (32-bit) dtype.
    fn gpu_takes(&self, _dtype: DType) -> bool {
        true
    }
}

/// The shared `OpFamily` impl of the movement ops.
macro_rules! movement_family {
    ($ty:ty, $fam:literal, $max:expr) => {
        impl OpFamily for $ty {
            const FAMILY: &'static str = $fam;
            type Kernel = Standard;

            fn arity(&self) -> (usize, usize) {
                (1, $max)
            }

            fn infer(&self, ins: &[ValueType]) -> Result<ValueType> {
                self.infer_consts(ins, &[])
            }

            fn infer_consts(
                &self,
                ins: &[ValueType],
                consts: &[Option<&Tensor>],
            ) -> Result<ValueType> {
                let op = self.resolved(ins.len(), consts)?;
                op.check_inputs(ins)?;
                let m = op.movement(&ins[0].shape)?;
                m.check($fam)?;
                Ok(ValueType::new(ins[0].dtype, m.out_shape()))
            }

            fn absorb_consts(&mut self, consts: &[Option<&Tensor>]) -> Result<Vec<usize>> {
                let n = consts.len();
                if n < 2 || (1..n).any(|i| super::const_input(consts, i).is_none()) {
                    return Ok(Vec::new());
                }
                *self = self.resolved(n, consts)?;
                Ok((1..n).collect())
            }

            fn cpu(&self, ins: &[&Tensor], _out: &ValueType) -> Result<Tensor> {
                let op = self.resolved(ins.len(), &all_consts(ins))?;
                let m = op.movement(ins[0].shape())?;
                let fill = op.fill_bytes(ins)?;
                m.run_cpu(ins[0], &fill)
            }

            fn select(&self, cx: &SelectCtx) -> Option<Standard> {
                select_32bit(cx, 1).filter(|_| self.gpu_takes(cx.ins[0].dtype))
            }

            fn lower(&self, _k: &Standard, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
                if cx.in_shapes.len() > 1 {
                    return Err(super::unsupported(
                        $fam,
                        "shape-like inputs not absorbed (the session build absorbs them)",
                    ));
                }
                let m = self.movement(&cx.in_shapes[0])?;
                Ok(vec![m.dispatch(self.fill_word(), cx.max_workgroups)])
            }

            fn shaders() -> Vec<&'static ShaderSource> {
                vec![&STRIDED]
            }

            fn flops(&self, _ins: &[ValueType], _out: &ValueType) -> u64 {
                0
            }
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Slice

/// ONNX `Slice`: `starts`, `ends`, `axes` (default all, negative from the end) and `steps`
/// (default 1, may be negative), as attributes (opset < 10) or as inputs 1..=4 (opset >= 10,
/// absorbed at plan time). Out-of-range bounds are clamped as ONNX specifies.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Slice {
    #[serde(default)]
    pub starts: Vec<i64>,
    #[serde(default)]
    pub ends: Vec<i64>,
    /// Empty: axes `0..starts.len()`.
    #[serde(default)]
    pub axes: Vec<i64>,
    /// Empty: all 1.
    #[serde(default)]
    pub steps: Vec<i64>,
}

impl MovementOp for Slice {
    fn resolved(&self, n: usize, consts: &[Option<&Tensor>]) -> Result<Self> {
        if n < 2 {
            return Ok(self.clone());
        }
        let get = |i, what| shape_input("slice", what, i, n, consts);
        Ok(Slice {
            starts: get(1, "starts")?.unwrap_or_default(),
            ends: get(2, "ends")?.ok_or_else(|| {
                Error::graph("slice: the input form needs ends (input 2) after starts (input 1)")
            })?,
            axes: get(3, "axes")?.unwrap_or_default(),
            steps: get(4, "steps")?.unwrap_or_default(),
        })
    }

    fn movement(&self, x: &[usize]) -> Result<Movement> {
        let r = x.len();
        let k = self.starts.len();
        if self.ends.len() != k
            || (!self.axes.is_empty() && self.axes.len() != k)
            || (!self.steps.is_empty() && self.steps.len() != k)
        {
            return Err(Error::graph(format!(
                "slice: starts ({}), ends ({}), axes ({}) and steps ({}) must have one entry \
                 per sliced axis (axes and steps may be absent)",
                k,
                self.ends.len(),
                self.axes.len(),
                self.steps.len()
            )));
        }
        let mut m = Movement::unit(x, x, Resolve::Direct);
        let mut seen = vec![false; r];
        for j in 0..k {
            let axis = match self.axes.get(j) {
                Some(&a) => norm_axis("slice axes", a, r)?,
                None if j < r => j,
                None => {
                    return Err(Error::shape(
                        "slice starts",
                        format!("at most {r} entries (the input's rank)"),
                        k.to_string(),
                    ))
                }
            };
            if std::mem::replace(&mut seen[axis], true) {
                return Err(Error::graph(format!("slice: axis {axis} is given twice")));
            }
            let step = self.steps.get(j).copied().unwrap_or(1);
            if step == 0 {
                return Err(Error::graph(format!("slice: steps[{j}] is 0")));
            }
            let d = x[axis] as i64;
            let norm = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
            let (s, e) = (norm(self.starts[j]), norm(self.ends[j]));
            let (s, e) = if step > 0 {
                (s.clamp(0, d), e.clamp(0, d))
            } else {
                (s.clamp(0, d - 1), e.clamp(-1, d - 1))
            };
            // ceil(span / |step|); the span is at most the dim, so nothing overflows.
            let (span, by) = if step > 0 {
                (e - s, step)
            } else {
                (s - e, -step)
            };
            let len = (span.max(0) + by - 1) / by;
            m.out[axis] = len as usize;
            m.start[axis] = s;
            m.step[axis] = step;
        }
        Ok(m)
    }
}
movement_family!(Slice, "slice", 5);

// ---------------------------------------------------------------------------------------------
// Expand

/// ONNX `Expand`: broadcasts the input and `shape` (input 1 in ONNX, absorbed at plan time)
/// numpy-style; a 1 in `shape` keeps the input's dim.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Expand {
    #[serde(default)]
    pub shape: Vec<i64>,
}

impl MovementOp for Expand {
    fn resolved(&self, n: usize, consts: &[Option<&Tensor>]) -> Result<Self> {
        match shape_input("expand", "shape", 1, n, consts)? {
            Some(shape) => Ok(Expand { shape }),
            None => Ok(self.clone()),
        }
    }

    fn movement(&self, x: &[usize]) -> Result<Movement> {
        let mut target = Vec::with_capacity(self.shape.len());
        for (i, &d) in self.shape.iter().enumerate() {
            if d < 1 {
                return Err(Error::shape(
                    "expand shape",
                    "dims >= 1",
                    format!("shape[{i}] = {d}"),
                ));
            }
            target.push(super::attr_u32("expand", &format!("shape[{i}]"), d as usize)? as usize);
        }
        let out = broadcast_shape("expand", x, &target)?;
        // The input right-aligned to the output's rank; a broadcast dim reads index 0.
        let r = out.len();
        let mut view = vec![1; r - x.len()];
        view.extend_from_slice(x);
        let mut m = Movement::unit(&view, &out, Resolve::Direct);
        for (step, &v) in m.step.iter_mut().zip(&view) {
            if v == 1 {
                *step = 0;
            }
        }
        Ok(m)
    }
}
movement_family!(Expand, "expand", 2);

// ---------------------------------------------------------------------------------------------
// Tile

/// ONNX `Tile`: repeats the input `repeats[d]` times along each dim (input 1 in ONNX, absorbed
/// at plan time).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Tile {
    #[serde(default)]
    pub repeats: Vec<i64>,
}

impl MovementOp for Tile {
    fn resolved(&self, n: usize, consts: &[Option<&Tensor>]) -> Result<Self> {
        match shape_input("tile", "repeats", 1, n, consts)? {
            Some(repeats) => Ok(Tile { repeats }),
            None => Ok(self.clone()),
        }
    }

    fn movement(&self, x: &[usize]) -> Result<Movement> {
        if self.repeats.len() != x.len() {
            return Err(Error::shape(
                "tile repeats",
                format!("{} entries (the input's rank)", x.len()),
                format!("{:?}", self.repeats),
            ));
        }
        let mut out = Vec::with_capacity(x.len());
        for (d, (&n, &r)) in x.iter().zip(&self.repeats).enumerate() {
            let o = usize::try_from(r)
                .ok()
                .filter(|&r| r >= 1)
                .and_then(|r| n.checked_mul(r))
                .ok_or_else(|| {
                    Error::shape(
                        "tile repeats",
                        "repeats >= 1 whose product with the dim fits",
                        format!("repeats[{d}] = {r}"),
                    )
                })?;
            out.push(o);
        }
        Ok(Movement::unit(x, &out, Resolve::Wrap))
    }
}
movement_family!(Tile, "tile", 2);

// ---------------------------------------------------------------------------------------------
// Pad

/// ONNX `Pad` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PadMode {
    #[default]
    Constant,
    Reflect,
    Edge,
    Wrap,
}

/// ONNX `Pad`: `pads` = begins of every padded axis, then ends (negative crops); `axes`
/// (opset 18, default all). Attributes (opset < 11) or inputs: pads (1), constant_value (2,
/// a scalar), axes (3), absorbed at plan time.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Pad {
    #[serde(default)]
    pub mode: PadMode,
    #[serde(default)]
    pub pads: Vec<i64>,
    /// The fill of `constant` mode (converted to the data's dtype).
    #[serde(default)]
    pub value: f32,
    /// Empty: all axes.
    #[serde(default)]
    pub axes: Vec<i64>,
}

impl MovementOp for Pad {
    fn resolved(&self, n: usize, consts: &[Option<&Tensor>]) -> Result<Self> {
        if n < 2 {
            return Ok(self.clone());
        }
        let pads = shape_input("pad", "pads", 1, n, consts)?.unwrap_or_default();
        let axes = shape_input("pad", "axes", 3, n, consts)?.unwrap_or_default();
        let mut value = 0.0;
        if n > 2 {
            let t = super::const_input(consts, 2).ok_or_else(|| {
                Error::graph(
                    "pad constant_value (input 2) must be known when the graph is planned \
                     (a weight, or computed from shapes only)",
                )
            })?;
            if t.numel() != 1 {
                return Err(Error::shape(
                    "pad constant_value (input 2)",
                    "one element",
                    fmt_shape(t.shape()),
                ));
            }
            value = t.to_f32().f32s("pad constant_value")?[0];
        }
        Ok(Pad {
            mode: self.mode,
            pads,
            value,
            axes,
        })
    }

    fn check_inputs(&self, ins: &[ValueType]) -> Result<()> {
        if let Some(v) = ins.get(2) {
            if v.dtype != ins[0].dtype {
                return Err(Error::DTypeMismatch {
                    op: "pad constant_value (input 2)".into(),
                    expected: ins[0].dtype.to_string(),
                    got: v.dtype.to_string(),
                });
            }
        }
        super::finite_attr("pad", "value", self.value)
    }

    /// The fill element: input 2 as given when present (exact for every dtype), else `value`.
    fn fill_bytes(&self, ins: &[&Tensor]) -> Result<Vec<u8>> {
        let t = match ins.get(2) {
            Some(t) => (*t).clone(),
            None => Tensor::new(&[1], vec![self.value])?.cast(ins[0].dtype()),
        };
        Ok(t.cast(ins[0].dtype()).bytes().to_vec())
    }

    /// The f32 bits of the fill (lowering knows no dtype: i32 data runs on the GPU only with
    /// a fill of 0, whose bits are the same, see `gpu_takes`).
    fn fill_word(&self) -> u32 {
        self.value.to_bits()
    }

    fn gpu_takes(&self, dtype: DType) -> bool {
        dtype == DType::F32 || self.value == 0.0
    }

    fn movement(&self, x: &[usize]) -> Result<Movement> {
        let r = x.len();
        let axes: Vec<usize> = if self.axes.is_empty() {
            (0..r).collect()
        } else {
            (self.axes.iter())
                .map(|&a| norm_axis("pad axes", a, r))
                .collect::<Result<_>>()?
        };
        if self.pads.len() != 2 * axes.len() {
            return Err(Error::shape(
                "pad pads",
                format!(
                    "{} entries (begins then ends of {} axes)",
                    2 * axes.len(),
                    axes.len()
                ),
                format!("{:?}", self.pads),
            ));
        }
        let mode = match self.mode {
            PadMode::Constant => Resolve::Fill,
            PadMode::Reflect => Resolve::Reflect,
            PadMode::Edge => Resolve::Edge,
            PadMode::Wrap => Resolve::Wrap,
        };
        let mut m = Movement::unit(x, x, mode);
        for (j, &a) in axes.iter().enumerate() {
            let (b, e) = (self.pads[j], self.pads[j + axes.len()]);
            let len = (x[a] as i64).saturating_add(b).saturating_add(e);
            if len < 1 {
                return Err(Error::shape(
                    "pad pads",
                    format!("crops that leave axis {a} (of {}) non-empty", x[a]),
                    format!("begin {b}, end {e}"),
                ));
            }
            // Cropping reads inside the input; the fill of other modes needs a real extent.
            if mode != Resolve::Fill && (b > 0 || e > 0) && x[a] == 0 {
                return Err(Error::graph(format!("pad: axis {a} is empty")));
            }
            m.out[a] = usize::try_from(len).map_err(|_| Error::graph("pad: output too large"))?;
            m.start[a] = -b;
        }
        Ok(m)
    }
}
movement_family!(Pad, "pad", 4);

// ---------------------------------------------------------------------------------------------
// DepthToSpace / SpaceToDepth

/// ONNX `DepthToSpace` (NCHW): `[N, C, H, W] -> [N, C / b², H b, W b]`; `crd` picks the
/// column-row-depth order (default DCR: depth-column-row).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DepthToSpace {
    pub blocksize: usize,
    #[serde(default)]
    pub crd: bool,
}

/// ONNX `SpaceToDepth` (NCHW): `[N, C, H, W] -> [N, C b², H / b, W / b]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SpaceToDepth {
    pub blocksize: usize,
}

fn nchw_block(op: &str, x: &[usize], b: usize) -> Result<()> {
    if x.len() != 4 {
        return Err(Error::shape(op, "NCHW input (rank 4)", fmt_shape(x)));
    }
    if b == 0 {
        return Err(Error::graph(format!("{op}: attribute blocksize is 0")));
    }
    super::attr_u32(op, "blocksize", b)?;
    Ok(())
}

impl MovementOp for DepthToSpace {
    fn resolved(&self, _n: usize, _c: &[Option<&Tensor>]) -> Result<Self> {
        Ok(*self)
    }

    fn movement(&self, x: &[usize]) -> Result<Movement> {
        let b = self.blocksize;
        nchw_block("depth_to_space", x, b)?;
        let (n, c, h, w) = (x[0], x[1], x[2], x[3]);
        if c % (b * b) != 0 {
            return Err(Error::shape(
                "depth_to_space",
                format!("channels divisible by blocksize² = {}", b * b),
                fmt_shape(x),
            ));
        }
        let c2 = c / (b * b);
        // The ONNX definition: reshape, transpose, reshape; the output as 6-D is the transpose.
        let m = if self.crd {
            Movement::permute(&[n, c2, b, b, h, w], &[0, 1, 4, 2, 5, 3])
        } else {
            Movement::permute(&[n, b, b, c2, h, w], &[0, 3, 4, 1, 5, 2])
        };
        Ok(Movement {
            shape: vec![n, c2, h * b, w * b],
            ..m
        })
    }
}
movement_family!(DepthToSpace, "depth_to_space", 1);

impl MovementOp for SpaceToDepth {
    fn resolved(&self, _n: usize, _c: &[Option<&Tensor>]) -> Result<Self> {
        Ok(*self)
    }

    fn movement(&self, x: &[usize]) -> Result<Movement> {
        let b = self.blocksize;
        nchw_block("space_to_depth", x, b)?;
        let (n, c, h, w) = (x[0], x[1], x[2], x[3]);
        if h % b != 0 || w % b != 0 {
            return Err(Error::shape(
                "space_to_depth",
                format!("height and width divisible by blocksize {b}"),
                fmt_shape(x),
            ));
        }
        let m = Movement::permute(&[n, c, h / b, b, w / b, b], &[0, 3, 5, 1, 2, 4]);
        Ok(Movement {
            shape: vec![n, c * b * b, h / b, w / b],
            ..m
        })
    }
}
movement_family!(SpaceToDepth, "space_to_depth", 1);
