//! Ops on dtypes and shapes rather than on numbers: `Shape` (the input's shape as an i64
//! tensor) and `Cast`. They have no GPU kernels: a graph's shape logic folds away at load (the
//! input shapes are fixed per plan), and what remains runs on the CPU inside the plan.

use super::{Dispatch, LowerCtx, OpFamily, SelectCtx, Standard};
use crate::error::Result;
use crate::gpu::shader::ShaderSource;
use crate::tensor::{DType, Tensor, TensorData, ValueType};
use serde::{Deserialize, Serialize};

/// The input's shape as a 1-D i64 tensor (ONNX `Shape`, without start/end).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Shape {}

impl OpFamily for Shape {
    const FAMILY: &'static str = "shape";
    type Kernel = Standard;

    fn infer(&self, ins: &[ValueType]) -> Result<ValueType> {
        Ok(ValueType::new(DType::I64, &[ins[0].shape.len().max(1)]))
    }

    fn cpu(&self, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
        let mut dims: Vec<i64> = ins[0].shape().iter().map(|&d| d as i64).collect();
        // A scalar's shape is empty; graphs here give every value rank >= 1 (empty tensors
        // are refused), so report it as [1].
        dims.resize(out.shape[0], 1);
        Tensor::from_data(&out.shape, TensorData::I64(dims))
    }

    /// No GPU kernel: the value is known from the plan's shapes and folds at load.
    fn select(&self, _cx: &SelectCtx) -> Option<Standard> {
        None
    }

    fn lower(&self, _k: &Standard, _cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        Err(super::unsupported(
            "shape",
            "no GPU kernel (runs on the CPU)",
        ))
    }

    fn shaders() -> Vec<&'static ShaderSource> {
        Vec::new()
    }

    fn flops(&self, _ins: &[ValueType], _out: &ValueType) -> u64 {
        0
    }
}

/// Converts to another dtype (ONNX `Cast`: floats to ints truncate toward zero and saturate;
/// to bool is `!= 0`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Cast {
    pub to: DType,
}

impl OpFamily for Cast {
    const FAMILY: &'static str = "cast";
    type Kernel = Standard;

    fn infer(&self, ins: &[ValueType]) -> Result<ValueType> {
        Ok(ValueType::new(self.to, &ins[0].shape))
    }

    fn cpu(&self, ins: &[&Tensor], _out: &ValueType) -> Result<Tensor> {
        Ok(ins[0].cast(self.to))
    }

    /// No GPU kernel yet: casts feed shape logic (folded at load) or run on the CPU.
    fn select(&self, _cx: &SelectCtx) -> Option<Standard> {
        None
    }

    fn lower(&self, _k: &Standard, _cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        Err(super::unsupported(
            "cast",
            "no GPU kernel (runs on the CPU)",
        ))
    }

    fn shaders() -> Vec<&'static ShaderSource> {
        Vec::new()
    }
}
