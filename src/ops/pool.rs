//! Max / average pooling and global average pooling (NCHW).

use super::{grid_1d, Activation, Bind, Dispatch, LowerCtx, OpFamily, Standard};
use crate::error::{Error, Result};
use crate::gpu::shader::{ShaderKey, ShaderSource};
use crate::tensor::{fmt_shape, numel, Tensor, ValueType};
use bytemuck::{Pod, Zeroable};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolKind {
    Max,
    Avg,
    /// `(sum |x|^p)^(1/p)` over the window (ONNX `LpPool`; padding adds nothing).
    Lp,
}

/// 2-D pooling window (the original form; [`Pool`] is ONNX's complete one, which this runs
/// through).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Pool2d {
    pub kind: PoolKind,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    /// (top, left, bottom, right).
    #[serde(default)]
    pub pad: [usize; 4],
    /// Average pooling divides by the full window, padding included (ONNX `count_include_pad`).
    #[serde(default)]
    pub count_include_pad: bool,
}

/// ONNX `auto_pad`: resolved from the input shape when the output shape is inferred, so it
/// stays right when the input shape changes between plans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AutoPad {
    /// Explicit `pad`.
    #[default]
    NotSet,
    /// Output `ceil(in / stride)`, the odd padding at the end.
    SameUpper,
    /// Output `ceil(in / stride)`, the odd padding at the start.
    SameLower,
    /// No padding.
    Valid,
}

/// ONNX `MaxPool` / `AveragePool` / `LpPool` and their global forms over NCHW: `dilation`,
/// `ceil_mode` (windows that would start in the end padding are dropped, as ONNX and PyTorch
/// do), asymmetric `pad` (top, left, bottom, right = ONNX's begins then ends), `auto_pad`,
/// `count_include_pad` (average: the divisor counts the taps inside the padded input), `p`
/// (Lp). `global` takes the whole plane as the window (`GlobalMaxPool`, `GlobalLpPool`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Pool {
    pub kind: PoolKind,
    #[serde(default)]
    pub kernel: [usize; 2],
    #[serde(default = "ones")]
    pub stride: [usize; 2],
    #[serde(default)]
    pub pad: [usize; 4],
    #[serde(default = "ones")]
    pub dilation: [usize; 2],
    #[serde(default)]
    pub ceil_mode: bool,
    #[serde(default)]
    pub count_include_pad: bool,
    #[serde(default)]
    pub auto_pad: AutoPad,
    #[serde(default = "two")]
    pub p: u32,
    #[serde(default)]
    pub global: bool,
}

fn ones() -> [usize; 2] {
    [1, 1]
}
fn two() -> u32 {
    2
}

impl Default for Pool {
    fn default() -> Self {
        Pool {
            kind: PoolKind::Max,
            kernel: [1, 1],
            stride: [1, 1],
            pad: [0; 4],
            dilation: [1, 1],
            ceil_mode: false,
            count_include_pad: false,
            auto_pad: AutoPad::NotSet,
            p: 2,
            global: false,
        }
    }
}

/// Uniform parameters of the pooling kernel, shared with the CPU reference.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct PoolParams {
    pub n: u32,
    pub c: u32,
    pub h: u32,
    pub w: u32,
    pub oh: u32,
    pub ow: u32,
    pub kh: u32,
    pub kw: u32,
    pub stride_h: u32,
    pub stride_w: u32,
    pub pad_t: u32,
    pub pad_l: u32,
    pub pad_b: u32,
    pub pad_r: u32,
    pub dil_h: u32,
    pub dil_w: u32,
    /// Lp pooling's p.
    pub p: u32,
    pub _pad: [u32; 3],
}

impl Pool2d {
    /// The same pooling as ONNX's complete form.
    pub fn general(&self) -> Pool {
        Pool {
            kind: self.kind,
            kernel: self.kernel,
            stride: self.stride,
            pad: self.pad,
            count_include_pad: self.count_include_pad,
            ..Default::default()
        }
    }

    pub(crate) fn shape_of(&self, ins: &[Vec<usize>]) -> Result<Vec<usize>> {
        self.general().shape_of(ins)
    }

    pub fn params(&self, x: &[usize], out: &[usize]) -> PoolParams {
        self.general().params(x, out)
    }

    pub(crate) fn cpu_f32(&self, xs: &[&[f32]], shapes: &[Vec<usize>], out: &[usize]) -> Vec<f32> {
        self.general().cpu_f32(xs, shapes, out)
    }

    pub(crate) fn dispatches(&self, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        self.general().dispatches(cx)
    }
}

/// Start, end padding and output length of one spatial axis.
fn axis_len(
    op: &str,
    pool: &Pool,
    i: usize,
    len: usize,
    k: usize,
) -> Result<(usize, usize, usize)> {
    let (s, d) = (pool.stride[i], pool.dilation[i]);
    // Extent of a dilated window.
    let span = (k - 1)
        .checked_mul(d)
        .and_then(|v| v.checked_add(1))
        .filter(|&v| v <= i32::MAX as usize)
        .ok_or_else(|| Error::graph(format!("{op}: dilated window exceeds 2^31")))?;
    let (b, e) = match pool.auto_pad {
        AutoPad::NotSet => (pool.pad[i], pool.pad[i + 2]),
        AutoPad::Valid => (0, 0),
        AutoPad::SameUpper | AutoPad::SameLower => {
            let out = len.div_ceil(s);
            let total = ((out - 1) * s + span).saturating_sub(len);
            let small = total / 2;
            if pool.auto_pad == AutoPad::SameUpper {
                (small, total - small)
            } else {
                (total - small, small)
            }
        }
    };
    let padded = len.saturating_add(b).saturating_add(e);
    super::check_i32_extent(op, "padded input extent", padded)?;
    if padded < span {
        return Err(Error::shape(
            op,
            format!(
                "padded input at least the dilated window {span} along axis {}",
                i + 2
            ),
            padded.to_string(),
        ));
    }
    // A window entirely in the padding would have no input to reduce.
    if b.max(e) >= span {
        return Err(Error::shape(
            op,
            format!("padding smaller than the (dilated) window {span}"),
            format!("{:?}", pool.pad),
        ));
    }
    let mut out = (padded - span) / s + 1;
    if pool.ceil_mode && (padded - span) % s != 0 {
        out += 1;
        // The last window must start inside the input or the start padding.
        if (out - 1) * s >= len + b {
            out -= 1;
        }
    }
    Ok((b, e, out))
}

impl Pool {
    fn op_name(&self) -> &'static str {
        match (self.kind, self.global) {
            (PoolKind::Max, false) => "maxpool2d",
            (PoolKind::Avg, false) => "avgpool2d",
            (PoolKind::Lp, false) => "lppool2d",
            (PoolKind::Max, true) => "global_max_pool",
            (PoolKind::Avg, true) => "global_avg_pool",
            (PoolKind::Lp, true) => "global_lp_pool",
        }
    }

    /// The window for input `x` (the plane for global pooling).
    fn window(&self, x: &[usize]) -> [usize; 2] {
        if self.global {
            [x[2], x[3]]
        } else {
            self.kernel
        }
    }

    /// Resolved padding and output shape.
    fn geometry(&self, x: &[usize]) -> Result<([usize; 4], Vec<usize>)> {
        let op = self.op_name();
        if x.len() != 4 {
            return Err(Error::shape(op, "NCHW input (rank 4)", fmt_shape(x)));
        }
        let k = self.window(x);
        super::attrs_u32(op, "kernel", &k)?;
        super::attrs_u32(op, "stride", &self.stride)?;
        super::attrs_u32(op, "pad", &self.pad)?;
        super::attrs_u32(op, "dilation", &self.dilation)?;
        if k.contains(&0) || self.stride.contains(&0) || self.dilation.contains(&0) {
            return Err(Error::graph(format!(
                "{op}: kernel, stride and dilation must be >= 1"
            )));
        }
        if self.kind == PoolKind::Lp && self.p == 0 {
            return Err(Error::graph(format!("{op}: attribute p must be >= 1")));
        }
        // Average pooling with padding divides by the window size, a 32-bit product.
        if k[0].checked_mul(k[1]).is_none_or(|n| n > u32::MAX as usize) {
            return Err(Error::graph(format!(
                "{op}: window {}x{} has more than {} taps",
                k[0],
                k[1],
                u32::MAX
            )));
        }
        let (t, b, oh) = axis_len(op, self, 0, x[2], k[0])?;
        let (l, r, ow) = axis_len(op, self, 1, x[3], k[1])?;
        Ok(([t, l, b, r], vec![x[0], x[1], oh, ow]))
    }

    pub(crate) fn shape_of(&self, ins: &[Vec<usize>]) -> Result<Vec<usize>> {
        Ok(self.geometry(&ins[0])?.1)
    }

    pub fn params(&self, x: &[usize], out: &[usize]) -> PoolParams {
        // Every value was checked to fit 32 bits by `shape_of` (`word` saturates otherwise).
        use super::word;
        let pad = self.geometry(x).map(|g| g.0).unwrap_or(self.pad);
        let k = self.window(x);
        PoolParams {
            n: word(x[0]),
            c: word(x[1]),
            h: word(x[2]),
            w: word(x[3]),
            oh: word(out[2]),
            ow: word(out[3]),
            kh: word(k[0]),
            kw: word(k[1]),
            stride_h: word(self.stride[0]),
            stride_w: word(self.stride[1]),
            pad_t: word(pad[0]),
            pad_l: word(pad[1]),
            pad_b: word(pad[2]),
            pad_r: word(pad[3]),
            dil_h: word(self.dilation[0]),
            dil_w: word(self.dilation[1]),
            p: self.p,
            _pad: [0; 3],
        }
    }

    fn mode(&self) -> u32 {
        match (self.kind, self.count_include_pad) {
            (PoolKind::Max, _) => 0,
            (PoolKind::Avg, false) => 1,
            (PoolKind::Avg, true) => 2,
            (PoolKind::Lp, _) => 3,
        }
    }

    pub(crate) fn cpu_f32(&self, xs: &[&[f32]], shapes: &[Vec<usize>], out: &[usize]) -> Vec<f32> {
        let p = self.params(&shapes[0], out);
        let u = |v: u32| v as i64;
        let x = xs[0];
        let mut y = Vec::with_capacity(numel(out));
        // The taps r of a window starting at `start` (may be negative) whose coordinate
        // start + r * dil lies in [lo, hi): the inside of the input, or of the padded input.
        let taps = |start: i64, dil: u32, k: u32, lo: i64, hi: i64| {
            let d = u(dil);
            let first = if start >= lo {
                0
            } else {
                (lo - start + d - 1) / d
            };
            let last = if hi <= start {
                0
            } else {
                ((hi - start + d - 1) / d).min(u(k))
            };
            (first, last.max(first))
        };
        let lp = |v: f32| match p.p {
            1 => v.abs(),
            2 => v * v,
            q => v.abs().powf(q as f32),
        };
        for nc in 0..(p.n * p.c) as usize {
            let plane = &x[nc * (p.h * p.w) as usize..][..(p.h * p.w) as usize];
            for oy in 0..u(p.oh) {
                let sy = oy * u(p.stride_h) - u(p.pad_t);
                let (r0, r1) = taps(sy, p.dil_h, p.kh, 0, u(p.h));
                for ox in 0..u(p.ow) {
                    let sx = ox * u(p.stride_w) - u(p.pad_l);
                    let (q0, q1) = taps(sx, p.dil_w, p.kw, 0, u(p.w));
                    // -inf as ONNX MaxPool: a window of -inf inputs gives -inf, not -FLT_MAX.
                    let (mut m, mut s, mut cnt) = (f32::NEG_INFINITY, 0.0f32, 0u32);
                    for r in r0..r1 {
                        let iy = sy + r * u(p.dil_h);
                        for q in q0..q1 {
                            let ix = sx + q * u(p.dil_w);
                            let v = plane[(iy * u(p.w) + ix) as usize];
                            m = m.max(v);
                            s += if self.kind == PoolKind::Lp { lp(v) } else { v };
                            cnt += 1;
                        }
                    }
                    y.push(match self.mode() {
                        0 => m,
                        1 => s / cnt.max(1) as f32,
                        2 => {
                            let (a0, a1) =
                                taps(sy, p.dil_h, p.kh, -u(p.pad_t), u(p.h) + u(p.pad_b));
                            let (b0, b1) =
                                taps(sx, p.dil_w, p.kw, -u(p.pad_l), u(p.w) + u(p.pad_r));
                            s / ((a1 - a0) * (b1 - b0)).max(1) as f32
                        }
                        _ => match p.p {
                            1 => s,
                            2 => s.sqrt(),
                            q => s.powf(1.0 / q as f32),
                        },
                    });
                }
            }
        }
        y
    }

    pub(crate) fn dispatches(&self, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        let p = self.params(&cx.in_shapes[0], cx.out_shape);
        let n = numel(cx.out_shape) as u64;
        Ok(vec![Dispatch {
            shader: ShaderKey::new(&POOL2D, &[("MODE", self.mode())]),
            overrides: Activation::None.overrides(),
            params: bytemuck::cast_slice(&[p]).to_vec(),
            bindings: vec![Bind::Input(0), Bind::Output],
            workgroups: grid_1d(n.div_ceil(64), cx.max_workgroups),
        }])
    }
}

/// `[N, C, H, W] -> [N, C, 1, 1]` mean over each plane.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct GlobalAvgPool {}

impl GlobalAvgPool {
    pub(crate) fn shape_of(&self, ins: &[Vec<usize>]) -> Result<Vec<usize>> {
        let x = &ins[0];
        if x.len() != 4 || x[2] == 0 || x[3] == 0 {
            return Err(Error::shape(
                "global_avg_pool",
                "NCHW input (rank 4) with non-empty planes",
                fmt_shape(x),
            ));
        }
        Ok(vec![x[0], x[1], 1, 1])
    }

    pub(crate) fn cpu_f32(&self, xs: &[&[f32]], shapes: &[Vec<usize>]) -> Vec<f32> {
        let hw = shapes[0][2] * shapes[0][3];
        xs[0]
            .chunks(hw)
            .map(|c| c.iter().sum::<f32>() / hw as f32)
            .collect()
    }

    pub(crate) fn dispatches(&self, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        let x = &cx.in_shapes[0];
        let planes = x[0] * x[1];
        Ok(vec![Dispatch {
            shader: ShaderKey::new(&GLOBAL_AVG, &[]),
            overrides: Activation::None.overrides(),
            params: vec![planes as u32, (x[2] * x[3]) as u32, 0, 0],
            bindings: vec![Bind::Input(0), Bind::Output],
            workgroups: grid_1d((planes as u64).div_ceil(64), cx.max_workgroups),
        }])
    }
}

static POOL2D: ShaderSource = crate::wgsl!(
    "pool/pool2d.wgsl";
    [[("MODE", 0)], [("MODE", 1)], [("MODE", 2)], [("MODE", 3)]]
);
static GLOBAL_AVG: ShaderSource = crate::wgsl!("pool/global_avg.wgsl");

impl OpFamily for Pool2d {
    const FAMILY: &'static str = "pool2d";
    type Kernel = Standard;

    fn name(&self) -> &'static str {
        self.general().op_name()
    }

    fn infer(&self, ins: &[ValueType]) -> Result<ValueType> {
        super::float_op(self.name(), ins, |s| self.shape_of(s))
    }

    fn cpu(&self, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
        super::cpu_f32(self.name(), ins, out, |xs, shapes| {
            self.cpu_f32(xs, shapes, &out.shape)
        })
    }

    fn cpu_kernel(&self, cx: &super::CpuCtx) -> Option<&'static str> {
        super::cpu_fast::pool_kernel(cx)
    }

    fn cpu_fast(&self, kernel: &str, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
        super::cpu_fast::pool(self, kernel, ins, out)
    }

    fn lower(&self, _k: &Standard, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        self.dispatches(cx)
    }

    fn shaders() -> Vec<&'static ShaderSource> {
        vec![&POOL2D]
    }

    /// One operation per tap inside the input: a window larger than the input costs the
    /// input's extent, not the window's.
    fn flops(&self, ins: &[ValueType], out: &ValueType) -> u64 {
        let x = &ins[0].shape;
        let taps = match x.as_slice() {
            [_, _, h, w] => self.kernel[0].min(*h) as u64 * self.kernel[1].min(*w) as u64,
            _ => 1,
        };
        (numel(&out.shape) as u64).saturating_mul(taps)
    }
}

impl OpFamily for GlobalAvgPool {
    const FAMILY: &'static str = "global_avg_pool";
    type Kernel = Standard;

    fn infer(&self, ins: &[ValueType]) -> Result<ValueType> {
        super::float_op("global_avg_pool", ins, |s| self.shape_of(s))
    }

    fn cpu(&self, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
        super::cpu_f32("global_avg_pool", ins, out, |xs, shapes| {
            self.cpu_f32(xs, shapes)
        })
    }

    fn lower(&self, _k: &Standard, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        self.dispatches(cx)
    }

    fn shaders() -> Vec<&'static ShaderSource> {
        vec![&GLOBAL_AVG]
    }
}

impl OpFamily for Pool {
    const FAMILY: &'static str = "pool";
    type Kernel = Standard;

    fn name(&self) -> &'static str {
        self.op_name()
    }

    fn infer(&self, ins: &[ValueType]) -> Result<ValueType> {
        super::float_op(self.op_name(), ins, |s| self.shape_of(s))
    }

    fn cpu(&self, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
        super::cpu_f32(self.op_name(), ins, out, |xs, shapes| {
            self.cpu_f32(xs, shapes, &out.shape)
        })
    }

    fn lower(&self, _k: &Standard, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        self.dispatches(cx)
    }

    fn shaders() -> Vec<&'static ShaderSource> {
        vec![&POOL2D]
    }

    /// One operation per tap inside the input.
    fn flops(&self, ins: &[ValueType], out: &ValueType) -> u64 {
        let x = &ins[0].shape;
        let taps = match x.as_slice() {
            [_, _, h, w] => {
                let k = self.window(x);
                k[0].min(*h) as u64 * k[1].min(*w) as u64
            }
            _ => 1,
        };
        (numel(&out.shape) as u64).saturating_mul(taps)
    }
}
