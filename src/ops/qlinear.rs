//! Integer ops of ONNX's quantized operator set, for values that are not constants (constants
//! fold at import, and constant weights become packed formats there): quantization of f32
//! values to 8-bit codes ([`Quantize`], [`DynQuant`]), products of 8-bit codes accumulated in
//! i32 ([`IntMatMul`], [`IntConv`]) and the requantization of an i32 accumulator to 8-bit codes
//! ([`Requant`]).
//!
//! Each reference follows ONNX's own reference implementation operation by operation, so the
//! codes are equal, not just close: divisions and products of f32 values round once to f32
//! (as numpy's f32 arithmetic does), rounding is half to even, and results saturate to the
//! code range. Integer sums wrap at 32 bits, as numpy's and the GPU's i32 do.
//!
//! GPU: [`IntMatMul`] has a kernel (`quant/int_matmul.wgsl`): 8-bit codes are read four to a
//! u32 word (how the arena and weight uploads hold 1-byte values) and products of codes are
//! summed in i32, which is exact, so GPU and CPU agree bit for bit. The others run on the CPU
//! inside a GPU plan (the plan lists them as CPU nodes): quantizing divides in f32, which WGSL
//! does not round correctly (2.5 ulp), so a code could differ where ONNX rounds a tie;
//! requantizing multiplies in f64 (ONNX's reference promotes the i32 accumulator to f64),
//! which WGSL lacks; the integer conv has no kernel yet.

use super::{grid_1d, word, Activation, Bind, Dispatch, LowerCtx, OpFamily, SelectCtx, Standard};
use crate::error::{Error, Result};
use crate::gpu::shader::{ShaderKey, ShaderSource};
use crate::tensor::{fmt_shape, numel, DType, Tensor, TensorData, ValueType};
use serde::{Deserialize, Serialize};

/// An 8-bit code dtype's range, or `None` for other dtypes.
fn code_range(d: DType) -> Option<(f64, f64)> {
    match d {
        DType::U8 => Some((0.0, 255.0)),
        DType::I8 => Some((-128.0, 127.0)),
        _ => None,
    }
}

fn need_codes(op: &str, what: &str, v: &ValueType) -> Result<()> {
    if code_range(v.dtype).is_none() {
        return Err(Error::DTypeMismatch {
            op: format!("{op} {what}"),
            expected: "u8 or i8".into(),
            got: v.dtype.to_string(),
        });
    }
    Ok(())
}

fn need(op: &str, what: &str, v: &ValueType, d: DType) -> Result<()> {
    if v.dtype != d {
        return Err(Error::DTypeMismatch {
            op: format!("{op} {what}"),
            expected: d.to_string(),
            got: v.dtype.to_string(),
        });
    }
    Ok(())
}

/// Integer values of an integer tensor (8-bit codes, i32), widened to i32.
fn ints(op: &str, t: &Tensor) -> Result<Vec<i32>> {
    Ok(match t.data() {
        TensorData::U8(v) => v.iter().map(|&x| x as i32).collect(),
        TensorData::I8(v) => v.iter().map(|&x| x as i32).collect(),
        TensorData::I32(v) => v.clone(),
        _ => {
            return Err(Error::DTypeMismatch {
                op: op.into(),
                expected: "u8, i8 or i32".into(),
                got: t.dtype().to_string(),
            })
        }
    })
}

/// Codes of dtype `d` from saturated integer values.
fn codes(d: DType, shape: &[usize], v: impl Iterator<Item = f64>) -> Result<Tensor> {
    let data = match d {
        DType::U8 => TensorData::U8(v.map(|x| x as u8).collect()),
        _ => TensorData::I8(v.map(|x| x as i8).collect()),
    };
    Tensor::from_data(shape, data)
}

/// Checks that `small` broadcasts to `out` (numpy rules) with an error naming the input.
fn broadcasts(op: &str, what: &str, small: &[usize], out: &[usize]) -> Result<()> {
    let b = super::elementwise::broadcast_shape(op, small, out)?;
    if b != out {
        return Err(Error::shape(
            format!("{op} {what}"),
            format!("a shape that broadcasts to {}", fmt_shape(out)),
            fmt_shape(small),
        ));
    }
    Ok(())
}

/// For each element of `out`, the index into a `small` tensor broadcast to it.
fn bcast_idx(small: &[usize], out: &[usize]) -> Vec<usize> {
    super::elementwise::broadcast_pairs(small, out, out)
        .map(|(i, _)| i)
        .collect()
}

/// Saturating, half-to-even quantization as ONNX's `QuantizeLinear` with integer output:
/// `y = saturate(round(x / scale) + zero)`. Inputs: `x` f32, `scale` f32 and (optional)
/// `zero` of dtype `to`, both broadcastable to `x` (the importer reshapes per-axis and
/// blocked scales so they broadcast).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Quantize {
    /// Output dtype: U8 or I8.
    pub to: DType,
}

impl OpFamily for Quantize {
    const FAMILY: &'static str = "quantize";
    type Kernel = Standard;

    fn arity(&self) -> (usize, usize) {
        (2, 3)
    }

    fn infer(&self, ins: &[ValueType]) -> Result<ValueType> {
        if code_range(self.to).is_none() {
            return Err(Error::graph(format!(
                "quantize: output dtype {} (u8 or i8)",
                self.to
            )));
        }
        need("quantize", "input 0 (x)", &ins[0], DType::F32)?;
        need("quantize", "input 1 (scale)", &ins[1], DType::F32)?;
        broadcasts("quantize", "scale", &ins[1].shape, &ins[0].shape)?;
        if let Some(z) = ins.get(2) {
            need("quantize", "input 2 (zero point)", z, self.to)?;
            broadcasts("quantize", "zero point", &z.shape, &ins[0].shape)?;
        }
        Ok(ValueType::new(self.to, &ins[0].shape))
    }

    fn cpu(&self, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
        let x = ins[0].f32s("quantize x")?;
        let s = ins[1].f32s("quantize scale")?;
        let si = bcast_idx(ins[1].shape(), &out.shape);
        let (z, zi) = match ins.get(2) {
            Some(z) => (
                ints("quantize zero point", z)?,
                bcast_idx(z.shape(), &out.shape),
            ),
            None => (vec![0], vec![0; x.len()]),
        };
        let (lo, hi) = code_range(self.to).unwrap_or((0.0, 255.0));
        let v = (0..x.len()).map(|i| {
            // One f32 division (numpy's f32 `x / y_scale`), then rint, then the zero point.
            let q = (x[i] / s[si[i]]).round_ties_even() as f64 + z[zi[i]] as f64;
            // NaN (0/0) has no code: saturate it like ONNX runtimes' cast, to 0 + clamp.
            if q.is_nan() {
                0f64.clamp(lo, hi)
            } else {
                q.clamp(lo, hi)
            }
        });
        codes(self.to, &out.shape, v)
    }

    /// CPU only: WGSL's f32 division is not correctly rounded, so a tie could round the other
    /// way than ONNX's.
    fn select(&self, _cx: &SelectCtx) -> Option<Standard> {
        None
    }

    fn lower(&self, _k: &Standard, _cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        Err(super::unsupported(
            "quantize",
            "no GPU kernel (runs on the CPU)",
        ))
    }

    fn shaders() -> Vec<&'static ShaderSource> {
        Vec::new()
    }
}

/// Which output of ONNX's `DynamicQuantizeLinear` a [`DynQuant`] node computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DynPart {
    /// The u8 codes, shaped like `x`.
    Codes,
    /// The scale, an f32 scalar (shape `[]`).
    Scale,
    /// The zero point, a u8 scalar (shape `[]`).
    Zero,
}

/// ONNX `DynamicQuantizeLinear` (u8): the range `[min(0, min x), max(0, max x)]` is mapped onto
/// 0..255 with `scale = (max - min) / 255` (1 / 255 when the range is empty) and the zero point
/// `rint(clamp(-min / scale, 0, 255))`; codes `clamp(rint(x / scale) + zero, 0, 255)`. One node
/// per output (wgedge nodes have one output); each reads `x` once more, which costs a pass
/// over `x` against a matmul that reads it anyway.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DynQuant {
    pub part: DynPart,
}

impl DynQuant {
    /// `(scale, zero point)` of `x`, in f32 arithmetic as ONNX's reference computes them.
    pub fn params(x: &[f32]) -> (f32, f32) {
        let maxx = x.iter().fold(0f32, |a, &v| a.max(v));
        let minx = x.iter().fold(0f32, |a, &v| a.min(v));
        let range = if maxx == minx { 1.0 } else { maxx - minx };
        let scale = range / 255.0;
        let zp = (0.0 - minx / scale).clamp(0.0, 255.0).round_ties_even();
        (scale, zp)
    }
}

impl OpFamily for DynQuant {
    const FAMILY: &'static str = "dyn_quant";
    type Kernel = Standard;

    fn infer(&self, ins: &[ValueType]) -> Result<ValueType> {
        need("dynamic quantize", "input 0 (x)", &ins[0], DType::F32)?;
        Ok(match self.part {
            DynPart::Codes => ValueType::new(DType::U8, &ins[0].shape),
            DynPart::Scale => ValueType::f32(&[]),
            DynPart::Zero => ValueType::new(DType::U8, &[]),
        })
    }

    fn cpu(&self, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
        let x = ins[0].f32s("dynamic quantize x")?;
        let (scale, zp) = Self::params(x);
        match self.part {
            DynPart::Scale => Tensor::new(&[], vec![scale]),
            DynPart::Zero => Tensor::from_data(&[], TensorData::U8(vec![zp as u8])),
            DynPart::Codes => codes(
                DType::U8,
                &out.shape,
                x.iter().map(|&v| {
                    let q = ((v / scale).round_ties_even() + zp) as f64;
                    if q.is_nan() {
                        0.0
                    } else {
                        q.clamp(0.0, 255.0)
                    }
                }),
            ),
        }
    }

    /// CPU only: a reduction plus a correctly rounded f32 division per element (see
    /// [`Quantize::select`]).
    fn select(&self, _cx: &SelectCtx) -> Option<Standard> {
        None
    }

    fn lower(&self, _k: &Standard, _cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        Err(super::unsupported(
            "dyn_quant",
            "no GPU kernel (runs on the CPU)",
        ))
    }

    fn shaders() -> Vec<&'static ShaderSource> {
        Vec::new()
    }
}

/// ONNX `MatMulInteger`: `y = (a - a_zero) @ (b - b_zero)` in i32. Inputs: `a` `[.., M, K]`
/// and `b` `[.., K, N]` of u8 or i8 (each its own), batch dims broadcast as numpy's matmul;
/// `a_zero` (a's dtype) with 1 or M elements (per tensor or per row of `a`), `b_zero` (b's
/// dtype) with 1 or N elements (per tensor or per column of `b`). Output i32 `[batch.., M, N]`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct IntMatMul {}

/// Geometry of an [`IntMatMul`] case.
struct MmDims {
    m: usize,
    k: usize,
    n: usize,
    batch: Vec<usize>,
}

impl IntMatMul {
    fn dims(a: &[usize], b: &[usize]) -> Result<MmDims> {
        if a.len() < 2 || b.len() < 2 {
            return Err(Error::graph(format!(
                "int matmul: operands {} and {} (rank >= 2; the importer lifts 1-D ones)",
                fmt_shape(a),
                fmt_shape(b)
            )));
        }
        let (m, k) = (a[a.len() - 2], a[a.len() - 1]);
        let (k2, n) = (b[b.len() - 2], b[b.len() - 1]);
        if k != k2 {
            return Err(Error::shape(
                "int matmul b (input 1)",
                format!("[.., {k}, N] to match a {}", fmt_shape(a)),
                fmt_shape(b),
            ));
        }
        let batch = super::elementwise::broadcast_shape(
            "int matmul",
            &a[..a.len() - 2],
            &b[..b.len() - 2],
        )?;
        Ok(MmDims { m, k, n, batch })
    }
}

/// The kernel of [`IntMatMul`]: the signedness of each operand (lowering sees shapes only,
/// so the kernel carries the dtypes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IntMatMulKernel {
    pub a_signed: bool,
    pub b_signed: bool,
}

impl super::KernelVariant for IntMatMulKernel {
    fn name(&self) -> String {
        let s = |b: bool| if b { "i8" } else { "u8" };
        format!("int-{}x{}", s(self.a_signed), s(self.b_signed))
    }
}

static INT_MATMUL: ShaderSource = crate::wgsl!("quant/int_matmul.wgsl";
    [[("A_SIGNED", 0), ("B_SIGNED", 0)], [("A_SIGNED", 1), ("B_SIGNED", 1)]]);

impl OpFamily for IntMatMul {
    const FAMILY: &'static str = "int_matmul";
    type Kernel = IntMatMulKernel;

    fn arity(&self) -> (usize, usize) {
        (4, 4)
    }

    fn infer(&self, ins: &[ValueType]) -> Result<ValueType> {
        need_codes("int matmul", "a (input 0)", &ins[0])?;
        need_codes("int matmul", "b (input 1)", &ins[1])?;
        need(
            "int matmul",
            "a zero point (input 2)",
            &ins[2],
            ins[0].dtype,
        )?;
        need(
            "int matmul",
            "b zero point (input 3)",
            &ins[3],
            ins[1].dtype,
        )?;
        let d = Self::dims(&ins[0].shape, &ins[1].shape)?;
        let (za, zb) = (numel(&ins[2].shape), numel(&ins[3].shape));
        if za != 1 && za != d.m {
            return Err(Error::shape(
                "int matmul a zero point (input 2)",
                format!("1 or {} elements (per tensor or per row)", d.m),
                fmt_shape(&ins[2].shape),
            ));
        }
        if zb != 1 && zb != d.n {
            return Err(Error::shape(
                "int matmul b zero point (input 3)",
                format!("1 or {} elements (per tensor or per column)", d.n),
                fmt_shape(&ins[3].shape),
            ));
        }
        let mut s = d.batch.clone();
        s.extend([d.m, d.n]);
        Ok(ValueType::new(DType::I32, &s))
    }

    fn cpu(&self, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
        let (a, b) = (ins[0], ins[1]);
        let d = Self::dims(a.shape(), b.shape())?;
        let (av, bv) = (ints("int matmul a", a)?, ints("int matmul b", b)?);
        let (za, zb) = (
            ints("int matmul a zero", ins[2])?,
            ints("int matmul b zero", ins[3])?,
        );
        let (ra, rb) = (a.shape().len(), b.shape().len());
        // Batch offsets of each operand for every output batch (broadcast dims read 0).
        let ab = bcast_idx(&a.shape()[..ra - 2], &d.batch);
        let bb = bcast_idx(&b.shape()[..rb - 2], &d.batch);
        let (m, k, n) = (d.m, d.k, d.n);
        let mut y = vec![0i32; numel(&out.shape)];
        for (t, yb) in y.chunks_mut((m * n).max(1)).enumerate() {
            let (ao, bo) = (ab[t] * m * k, bb[t] * k * n);
            for i in 0..m {
                let zai = za[if za.len() == 1 { 0 } else { i }];
                for j in 0..n {
                    let zbj = zb[if zb.len() == 1 { 0 } else { j }];
                    let mut acc = 0i32;
                    for p in 0..k {
                        let x = av[ao + i * k + p] - zai;
                        let w = bv[bo + p * n + j] - zbj;
                        acc = acc.wrapping_add(x * w);
                    }
                    yb[i * n + j] = acc;
                }
            }
        }
        Tensor::from_data(&out.shape, TensorData::I32(y))
    }

    /// The GPU kernel takes dense operands whose batch dims are a's with b shared (no batch)
    /// or equal; other broadcasts run on the CPU.
    fn select(&self, cx: &SelectCtx) -> Option<IntMatMulKernel> {
        if !cx.formats.iter().all(|f| f.is_dense()) {
            return None;
        }
        let (a, b) = (cx.shape(0), cx.shape(1));
        let (ra, rb) = (a.len(), b.len());
        let b_ok = rb == 2 || a[..ra - 2] == b[..rb - 2];
        let limit = numel(a) < u32::MAX as usize && numel(b) < u32::MAX as usize;
        (b_ok && limit && cx.out.shape.len() == ra).then_some(IntMatMulKernel {
            a_signed: cx.ins[0].dtype == DType::I8,
            b_signed: cx.ins[1].dtype == DType::I8,
        })
    }

    fn lower(&self, kern: &IntMatMulKernel, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        let (a, b) = (&cx.in_shapes[0], &cx.in_shapes[1]);
        let d = Self::dims(a, b)?;
        let total = numel(cx.out_shape);
        let b_batched = b.len() > 2;
        Ok(vec![Dispatch {
            shader: ShaderKey::new(
                &INT_MATMUL,
                &[
                    ("A_SIGNED", kern.a_signed as u32),
                    ("B_SIGNED", kern.b_signed as u32),
                ],
            ),
            overrides: Activation::None.overrides(),
            params: vec![
                word(d.m),
                word(d.k),
                word(d.n),
                word(total),
                b_batched as u32,
                (numel(&cx.in_shapes[2]) > 1) as u32,
                (numel(&cx.in_shapes[3]) > 1) as u32,
                0,
            ],
            bindings: vec![
                Bind::Input(0),
                Bind::Input(1),
                Bind::Input(2),
                Bind::Input(3),
                Bind::Output,
            ],
            workgroups: grid_1d((total as u64).div_ceil(64), cx.max_workgroups),
        }])
    }

    fn shaders() -> Vec<&'static ShaderSource> {
        vec![&INT_MATMUL]
    }

    /// Multiply-adds (integer ones, counted like flops for reports).
    fn flops(&self, ins: &[ValueType], out: &ValueType) -> u64 {
        let k = ins[0].shape.last().copied().unwrap_or(1) as u64;
        (numel(&out.shape) as u64).saturating_mul(2 * k)
    }
}

/// ONNX `ConvInteger` (2-D), with an optional i32 bias for `QLinearConv`:
/// `y = conv(x - x_zero, w - w_zero) + bias` in i32. Inputs: `x` NCHW and `w` OIHW (u8 or i8
/// each), `x_zero` (x's dtype, one element), `w_zero` (w's dtype, 1 or O elements), optional
/// `bias` i32 `[O]`. Pads are `[top, left, bottom, right]`; padding reads `x_zero` (a zero
/// after centring), as ONNX pads the centred input with zeros.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntConv {
    pub stride: [usize; 2],
    pub pads: [usize; 4],
    pub dilation: [usize; 2],
    pub group: usize,
}

impl IntConv {
    fn out_hw(&self, x: &[usize], w: &[usize]) -> Result<(usize, usize)> {
        let mut o = [0; 2];
        for d in 0..2 {
            let span = self.dilation[d] * (w[2 + d] - 1) + 1;
            let padded = x[2 + d] + self.pads[d] + self.pads[2 + d];
            if span > padded || self.stride[d] == 0 {
                return Err(Error::shape(
                    "int conv",
                    format!("a window of {span} within the padded extent"),
                    format!("{padded} (input {})", fmt_shape(x)),
                ));
            }
            o[d] = (padded - span) / self.stride[d] + 1;
        }
        Ok((o[0], o[1]))
    }
}

impl OpFamily for IntConv {
    const FAMILY: &'static str = "int_conv";
    type Kernel = Standard;

    fn arity(&self) -> (usize, usize) {
        (4, 5)
    }

    fn infer(&self, ins: &[ValueType]) -> Result<ValueType> {
        need_codes("int conv", "x (input 0)", &ins[0])?;
        need_codes("int conv", "w (input 1)", &ins[1])?;
        need("int conv", "x zero point (input 2)", &ins[2], ins[0].dtype)?;
        need("int conv", "w zero point (input 3)", &ins[3], ins[1].dtype)?;
        let (x, w) = (&ins[0].shape, &ins[1].shape);
        if x.len() != 4 || w.len() != 4 {
            return Err(Error::graph(format!(
                "int conv: x {} and w {} (2-D convs: rank 4)",
                fmt_shape(x),
                fmt_shape(w)
            )));
        }
        let g = self.group.max(1);
        if !x[1].is_multiple_of(g)
            || x[1] / g != w[1]
            || !w[0].is_multiple_of(g)
            || w[2] == 0
            || w[3] == 0
        {
            return Err(Error::shape(
                "int conv w (input 1)",
                format!("[O (a multiple of group {g}), {} / {g}, kh, kw]", x[1]),
                fmt_shape(w),
            ));
        }
        if numel(&ins[2].shape) != 1 {
            return Err(Error::shape(
                "int conv x zero point (input 2)",
                "one element",
                fmt_shape(&ins[2].shape),
            ));
        }
        let zw = numel(&ins[3].shape);
        if zw != 1 && zw != w[0] {
            return Err(Error::shape(
                "int conv w zero point (input 3)",
                format!("1 or {} elements", w[0]),
                fmt_shape(&ins[3].shape),
            ));
        }
        if let Some(bias) = ins.get(4) {
            need("int conv", "bias (input 4)", bias, DType::I32)?;
            if numel(&bias.shape) != w[0] {
                return Err(Error::shape(
                    "int conv bias (input 4)",
                    format!("[{}]", w[0]),
                    fmt_shape(&bias.shape),
                ));
            }
        }
        let (oh, ow) = self.out_hw(x, w)?;
        Ok(ValueType::new(DType::I32, &[x[0], w[0], oh, ow]))
    }

    fn cpu(&self, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
        let (xs, ws) = (ins[0].shape(), ins[1].shape());
        let (xv, wv) = (ints("int conv x", ins[0])?, ints("int conv w", ins[1])?);
        let zx = ints("int conv x zero", ins[2])?[0];
        let zw = ints("int conv w zero", ins[3])?;
        let bias = ins.get(4).map(|b| ints("int conv bias", b)).transpose()?;
        let (n, c, h, w) = (xs[0], xs[1], xs[2], xs[3]);
        let (o, cg, kh, kw) = (ws[0], ws[1], ws[2], ws[3]);
        let (oh, ow) = (out.shape[2], out.shape[3]);
        let g = self.group.max(1);
        let og = o / g;
        let mut y = vec![0i32; numel(&out.shape)];
        for b in 0..n {
            for oc in 0..o {
                let gi = oc / og;
                let zwo = zw[if zw.len() == 1 { 0 } else { oc }];
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = bias.as_ref().map_or(0, |v| v[oc]);
                        for ic in 0..cg {
                            let ci = gi * cg + ic;
                            for ky in 0..kh {
                                let iy = (oy * self.stride[0] + ky * self.dilation[0])
                                    .checked_sub(self.pads[0])
                                    .filter(|&v| v < h);
                                let Some(iy) = iy else { continue };
                                for kx in 0..kw {
                                    let ix = (ox * self.stride[1] + kx * self.dilation[1])
                                        .checked_sub(self.pads[1])
                                        .filter(|&v| v < w);
                                    let Some(ix) = ix else { continue };
                                    let xq = xv[((b * c + ci) * h + iy) * w + ix] - zx;
                                    let wq = wv[((oc * cg + ic) * kh + ky) * kw + kx] - zwo;
                                    acc = acc.wrapping_add(xq * wq);
                                }
                            }
                        }
                        y[((b * o + oc) * oh + oy) * ow + ox] = acc;
                    }
                }
            }
        }
        Tensor::from_data(&out.shape, TensorData::I32(y))
    }

    /// No GPU kernel yet (the plan lists the node as a CPU node).
    fn select(&self, _cx: &SelectCtx) -> Option<Standard> {
        None
    }

    fn lower(&self, _k: &Standard, _cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        Err(super::unsupported(
            "int_conv",
            "no GPU kernel (runs on the CPU)",
        ))
    }

    fn shaders() -> Vec<&'static ShaderSource> {
        Vec::new()
    }

    fn flops(&self, ins: &[ValueType], out: &ValueType) -> u64 {
        let w = &ins[1].shape;
        let per = (w[1] * w[2] * w[3]) as u64;
        (numel(&out.shape) as u64).saturating_mul(2 * per)
    }
}

/// Requantization of an i32 accumulator to 8-bit codes, as ONNX's `QLinearMatMul` and
/// `QLinearConv` references do: `y = saturate(rint(f64(acc) * f64(multiplier) + zero))`, the
/// multiplier (`a_scale * b_scale / y_scale`, computed by the importer in the scales' dtype)
/// f32 and broadcastable to `acc`, the zero point (dtype `to`) one element.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Requant {
    /// Output dtype: U8 or I8.
    pub to: DType,
    /// Wrap out-of-range results modulo 256 instead of saturating. ONNX's reference of
    /// `QLinearMatMul` converts with numpy's `astype` and no clip, so its node tests expect
    /// wrapped codes (`QLinearConv`'s reference clips); onnxruntime saturates both.
    #[serde(default)]
    pub wrap: bool,
}

impl OpFamily for Requant {
    const FAMILY: &'static str = "requant";
    type Kernel = Standard;

    fn arity(&self) -> (usize, usize) {
        (3, 3)
    }

    fn infer(&self, ins: &[ValueType]) -> Result<ValueType> {
        if code_range(self.to).is_none() {
            return Err(Error::graph(format!(
                "requant: output dtype {} (u8 or i8)",
                self.to
            )));
        }
        need("requant", "accumulator (input 0)", &ins[0], DType::I32)?;
        need("requant", "multiplier (input 1)", &ins[1], DType::F32)?;
        broadcasts("requant", "multiplier", &ins[1].shape, &ins[0].shape)?;
        need("requant", "zero point (input 2)", &ins[2], self.to)?;
        if numel(&ins[2].shape) != 1 {
            return Err(Error::shape(
                "requant zero point (input 2)",
                "one element",
                fmt_shape(&ins[2].shape),
            ));
        }
        Ok(ValueType::new(self.to, &ins[0].shape))
    }

    fn cpu(&self, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
        let acc = ints("requant accumulator", ins[0])?;
        let m = ins[1].f32s("requant multiplier")?;
        let mi = bcast_idx(ins[1].shape(), &out.shape);
        let z = ints("requant zero point", ins[2])?[0] as f64;
        let (lo, hi) = code_range(self.to).unwrap_or((0.0, 255.0));
        let v = acc.iter().zip(&mi).map(|(&a, &j)| {
            let r = (a as f64 * m[j] as f64 + z).round_ties_even();
            if self.wrap && r.is_finite() {
                // Two's complement wrap, as numpy's astype to an 8-bit dtype does.
                let w = (r as i64).rem_euclid(256) as f64;
                if lo < 0.0 && w > hi {
                    w - 256.0
                } else {
                    w
                }
            } else if r.is_nan() {
                lo.max(0.0)
            } else {
                r.clamp(lo, hi)
            }
        });
        codes(self.to, &out.shape, v)
    }

    /// CPU only: the product is taken in f64 (ONNX's reference promotes i32 x f32 to f64), which
    /// WGSL has no type for; an f32 product can round a code differently.
    fn select(&self, _cx: &SelectCtx) -> Option<Standard> {
        None
    }

    fn lower(&self, _k: &Standard, _cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        Err(super::unsupported(
            "requant",
            "no GPU kernel (runs on the CPU)",
        ))
    }

    fn shaders() -> Vec<&'static ShaderSource> {
        Vec::new()
    }
}
