//! ONNX `Gather`: picks entries along `axis` of the data by an index tensor (i64 or i32,
//! negative counts from the end). The embedding lookup (a constant `[V, D]` table, runtime
//! token ids) and picking a slice by constant indices are its common cases.

use super::norm::norm_axis;
use super::{grid_1d, word, Activation, Bind, Dispatch, LowerCtx, OpFamily, SelectCtx};
use crate::error::{Error, Result};
use crate::gpu::shader::{ShaderKey, ShaderSource};
use crate::tensor::{fmt_shape, numel, DType, Tensor, TensorData, ValueType};
use serde::{Deserialize, Serialize};

/// `out = data[.., indices, ..]` along `axis`: the output shape is `data[..axis] ++
/// indices.shape ++ data[axis + 1..]`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Gather {
    #[serde(default)]
    pub axis: i64,
}

impl Gather {
    fn shape_of(&self, data: &[usize], idx: &[usize]) -> Result<(usize, Vec<usize>)> {
        let a = norm_axis("gather axis", self.axis, data.len())?;
        if crate::tensor::checked_numel(data).is_none_or(|n| n > u32::MAX as usize) {
            return Err(Error::graph(format!(
                "gather: data {} has more than {} elements (kernel indices are 32-bit)",
                fmt_shape(data),
                u32::MAX
            )));
        }
        let mut out = data[..a].to_vec();
        out.extend_from_slice(idx);
        out.extend_from_slice(&data[a + 1..]);
        for (i, &d) in out.iter().enumerate() {
            super::attr_u32("gather", &format!("output dim {i}"), d)?;
        }
        if crate::tensor::checked_numel(&out).is_none_or(|n| n > u32::MAX as usize) {
            return Err(Error::graph(format!(
                "gather: output {} has more than {} elements (kernel indices are 32-bit)",
                fmt_shape(&out),
                u32::MAX
            )));
        }
        Ok((a, out))
    }

    /// `(outer, axis extent, inner)` of the data viewed around the axis.
    fn split(data: &[usize], a: usize) -> (usize, usize, usize) {
        (numel(&data[..a]), data[a], numel(&data[a + 1..]))
    }
}

/// Gather's kernels: by the index dtype (lowering sees shapes only, so the kernel carries it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "kernel", rename_all = "snake_case")]
pub enum GatherKernel {
    /// i64 indices, read as two 32-bit words.
    #[default]
    Idx64,
    /// i32 indices.
    Idx32,
}

impl super::KernelVariant for GatherKernel {
    fn name(&self) -> String {
        match self {
            GatherKernel::Idx64 => "idx64".into(),
            GatherKernel::Idx32 => "idx32".into(),
        }
    }
}

static GATHER: ShaderSource = crate::wgsl!("shape/gather.wgsl"; [[("IDX64", 1)], [("IDX64", 0)]]);

impl OpFamily for Gather {
    const FAMILY: &'static str = "gather";
    type Kernel = GatherKernel;

    fn arity(&self) -> (usize, usize) {
        (2, 2)
    }

    /// Data of any dtype; indices i64 or i32.
    fn infer(&self, ins: &[ValueType]) -> Result<ValueType> {
        if !matches!(ins[1].dtype, DType::I64 | DType::I32) {
            return Err(Error::DTypeMismatch {
                op: "gather indices (input 1)".into(),
                expected: "i64 or i32".into(),
                got: ins[1].dtype.to_string(),
            });
        }
        let (_, out) = self.shape_of(&ins[0].shape, &ins[1].shape)?;
        Ok(ValueType::new(ins[0].dtype, &out))
    }

    /// Moves element bytes (any dtype); an index outside `[-extent, extent)` is an error, as
    /// ONNX specifies.
    fn cpu(&self, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
        let (x, idx) = (ins[0], ins[1]);
        let a = norm_axis("gather axis", self.axis, x.shape().len())?;
        let (outer, extent, inner) = Self::split(x.shape(), a);
        let ks: Vec<i64> = match idx.data() {
            TensorData::I64(v) => v.clone(),
            TensorData::I32(v) => v.iter().map(|&k| k as i64).collect(),
            _ => {
                return Err(Error::DTypeMismatch {
                    op: "gather indices (input 1)".into(),
                    expected: "i64 or i32".into(),
                    got: idx.dtype().to_string(),
                })
            }
        };
        let mut rows = Vec::with_capacity(ks.len());
        for (j, &k) in ks.iter().enumerate() {
            let r = if k < 0 { k + extent as i64 } else { k };
            if r < 0 || r >= extent as i64 {
                return Err(Error::shape(
                    "gather indices (input 1)",
                    format!("indices in [-{extent}, {extent}) (axis {a} of the data)"),
                    format!("index {k} at position {j}"),
                ));
            }
            rows.push(r as usize);
        }
        let size = x.dtype().size();
        let src = x.bytes();
        let row = inner * size;
        let mut y = Vec::with_capacity(numel(&out.shape) * size);
        for o in 0..outer {
            for &r in &rows {
                let at = (o * extent + r) * row;
                y.extend_from_slice(&src[at..at + row]);
            }
        }
        Tensor::from_bytes(out.dtype, &out.shape, &y)
    }

    /// 32-bit data (f32, i32: moved as words) with i64 or i32 indices.
    fn select(&self, cx: &SelectCtx) -> Option<GatherKernel> {
        let data = matches!(cx.ins[0].dtype, DType::F32 | DType::I32);
        if !data || !cx.formats.iter().all(|f| f.is_dense()) {
            return None;
        }
        match cx.ins[1].dtype {
            DType::I64 => Some(GatherKernel::Idx64),
            DType::I32 => Some(GatherKernel::Idx32),
            _ => None,
        }
    }

    fn lower(&self, k: &GatherKernel, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        let data = &cx.in_shapes[0];
        let a = norm_axis("gather axis", self.axis, data.len())?;
        let (_, extent, inner) = Self::split(data, a);
        let n_idx = numel(&cx.in_shapes[1]);
        let n = numel(cx.out_shape);
        let idx64 = *k == GatherKernel::Idx64;
        Ok(vec![Dispatch {
            shader: ShaderKey::new(&GATHER, &[("IDX64", idx64 as u32)]),
            overrides: Activation::None.overrides(),
            params: vec![word(n), word(inner), word(n_idx), word(extent)],
            bindings: vec![Bind::Input(0), Bind::Input(1), Bind::Output],
            workgroups: grid_1d((n as u64).div_ceil(256), cx.max_workgroups),
        }])
    }

    fn shaders() -> Vec<&'static ShaderSource> {
        vec![&GATHER]
    }

    fn flops(&self, _ins: &[ValueType], _out: &ValueType) -> u64 {
        0
    }
}
