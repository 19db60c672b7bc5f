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
}

/// 2-D pooling window.
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
}

impl Pool2d {
    pub(crate) fn shape_of(&self, ins: &[Vec<usize>]) -> Result<Vec<usize>> {
        let x = &ins[0];
        if x.len() != 4 {
            return Err(Error::shape("pool2d", "NCHW input (rank 4)", fmt_shape(x)));
        }
        let op = self.name();
        super::attrs_u32(op, "kernel", &self.kernel)?;
        super::attrs_u32(op, "stride", &self.stride)?;
        super::attrs_u32(op, "pad", &self.pad)?;
        let [kh, kw] = self.kernel;
        if kh == 0 || kw == 0 || self.stride.contains(&0) {
            return Err(Error::graph("pool2d kernel and stride must be >= 1"));
        }
        // A window entirely in the padding would have no input to reduce.
        if self.pad[0].max(self.pad[2]) >= kh || self.pad[1].max(self.pad[3]) >= kw {
            return Err(Error::shape(
                "pool2d",
                format!("padding smaller than the window {kh}x{kw}"),
                format!("{:?}", self.pad),
            ));
        }
        let ph = x[2].saturating_add(self.pad[0]).saturating_add(self.pad[2]);
        let pw = x[3].saturating_add(self.pad[1]).saturating_add(self.pad[3]);
        super::check_i32_extent(op, "padded input height", ph)?;
        super::check_i32_extent(op, "padded input width", pw)?;
        // Average pooling with padding divides by the window size, a 32-bit product.
        if kh.checked_mul(kw).is_none_or(|n| n > u32::MAX as usize) {
            return Err(Error::graph(format!(
                "{op}: window {kh}x{kw} has more than {} taps",
                u32::MAX
            )));
        }
        if ph < kh || pw < kw {
            return Err(Error::shape(
                "pool2d",
                format!("padded input at least {kh}x{kw}"),
                format!("{ph}x{pw}"),
            ));
        }
        Ok(vec![
            x[0],
            x[1],
            (ph - kh) / self.stride[0] + 1,
            (pw - kw) / self.stride[1] + 1,
        ])
    }

    pub fn params(&self, x: &[usize], out: &[usize]) -> PoolParams {
        // Every value was checked to fit 32 bits by `shape_of` (`word` saturates otherwise).
        use super::word;
        PoolParams {
            n: word(x[0]),
            c: word(x[1]),
            h: word(x[2]),
            w: word(x[3]),
            oh: word(out[2]),
            ow: word(out[3]),
            kh: word(self.kernel[0]),
            kw: word(self.kernel[1]),
            stride_h: word(self.stride[0]),
            stride_w: word(self.stride[1]),
            pad_t: word(self.pad[0]),
            pad_l: word(self.pad[1]),
        }
    }

    fn mode(&self) -> u32 {
        match (self.kind, self.count_include_pad) {
            (PoolKind::Max, _) => 0,
            (PoolKind::Avg, false) => 1,
            (PoolKind::Avg, true) => 2,
        }
    }

    pub(crate) fn cpu_f32(&self, xs: &[&[f32]], shapes: &[Vec<usize>], out: &[usize]) -> Vec<f32> {
        let p = self.params(&shapes[0], out);
        let u = |v: u32| v as usize;
        let x = xs[0];
        let mut y = Vec::with_capacity(numel(out));
        // Only the taps inside the input are visited (same order as the kernel's loop, which
        // skips the others), so a window far larger than the input costs no more than it.
        let taps = |o: usize, stride: u32, pad: u32, len: u32| {
            let start = o * u(stride);
            let lo = u(pad).saturating_sub(start);
            let hi = (u(pad) + u(len)).saturating_sub(start);
            (lo, hi, start)
        };
        for nc in 0..u(p.n) * u(p.c) {
            for oy in 0..u(p.oh) {
                let (r0, r1, sy) = taps(oy, p.stride_h, p.pad_t, p.h);
                for ox in 0..u(p.ow) {
                    let (q0, q1, sx) = taps(ox, p.stride_w, p.pad_l, p.w);
                    // -inf as ONNX MaxPool: a window of -inf inputs gives -inf, not -FLT_MAX.
                    let (mut m, mut s, mut cnt) = (f32::NEG_INFINITY, 0.0f32, 0usize);
                    for r in r0..r1.min(u(p.kh)) {
                        let iy = sy + r - u(p.pad_t);
                        for q in q0..q1.min(u(p.kw)) {
                            let ix = sx + q - u(p.pad_l);
                            let v = x[(nc * u(p.h) + iy) * u(p.w) + ix];
                            m = m.max(v);
                            s += v;
                            cnt += 1;
                        }
                    }
                    y.push(match self.mode() {
                        0 => m,
                        1 => s / cnt.max(1) as f32,
                        _ => s / (u(p.kh) * u(p.kw)) as f32,
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

static POOL2D: ShaderSource =
    crate::wgsl!("pool/pool2d.wgsl"; [[("MODE", 0)], [("MODE", 1)], [("MODE", 2)]]);
static GLOBAL_AVG: ShaderSource = crate::wgsl!("pool/global_avg.wgsl");

impl OpFamily for Pool2d {
    const FAMILY: &'static str = "pool2d";
    type Kernel = Standard;

    fn name(&self) -> &'static str {
        match self.kind {
            PoolKind::Max => "maxpool2d",
            PoolKind::Avg => "avgpool2d",
        }
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
