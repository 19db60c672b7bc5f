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
        PoolParams {
            n: x[0] as u32,
            c: x[1] as u32,
            h: x[2] as u32,
            w: x[3] as u32,
            oh: out[2] as u32,
            ow: out[3] as u32,
            kh: self.kernel[0] as u32,
            kw: self.kernel[1] as u32,
            stride_h: self.stride[0] as u32,
            stride_w: self.stride[1] as u32,
            pad_t: self.pad[0] as u32,
            pad_l: self.pad[1] as u32,
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
        for nc in 0..u(p.n * p.c) {
            for oy in 0..u(p.oh) {
                for ox in 0..u(p.ow) {
                    let (mut m, mut s, mut cnt) = (f32::MIN, 0.0f32, 0usize);
                    for r in 0..u(p.kh) {
                        let iy = (oy * u(p.stride_h) + r) as isize - p.pad_t as isize;
                        for q in 0..u(p.kw) {
                            let ix = (ox * u(p.stride_w) + q) as isize - p.pad_l as isize;
                            if iy >= 0 && iy < p.h as isize && ix >= 0 && ix < p.w as isize {
                                let v = x[(nc * u(p.h) + iy as usize) * u(p.w) + ix as usize];
                                m = m.max(v);
                                s += v;
                                cnt += 1;
                            }
                        }
                    }
                    y.push(match self.mode() {
                        0 => m,
                        1 => s / cnt.max(1) as f32,
                        _ => s / (p.kh * p.kw) as f32,
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
        if x.len() != 4 {
            return Err(Error::shape(
                "global_avg_pool",
                "NCHW input (rank 4)",
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

    fn lower(&self, _k: &Standard, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        self.dispatches(cx)
    }

    fn shaders() -> Vec<&'static ShaderSource> {
        vec![&POOL2D]
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
