//! ONNX `TensorProto` <-> wgedge tensors, and ONNX dtype codes.

use super::proto::{tensor_proto::DataType, TensorProto};
use crate::tensor::{checked_numel, DType, Tensor, TensorData};

/// The wgedge dtype of an ONNX element type code, if wgedge has one.
pub(crate) fn dtype_of(code: i32) -> Option<DType> {
    Some(match DataType::try_from(code).ok()? {
        DataType::Float => DType::F32,
        DataType::Float16 => DType::F16,
        DataType::Int32 => DType::I32,
        DataType::Int64 => DType::I64,
        DataType::Int8 => DType::I8,
        DataType::Uint8 => DType::U8,
        DataType::Bool => DType::Bool,
        _ => return None,
    })
}

/// The ONNX name of an element type code (`DOUBLE`, `STRING`, ...) for error messages.
pub(crate) fn dtype_name(code: i32) -> String {
    DataType::try_from(code)
        .map(|d| d.as_str_name().to_lowercase())
        .unwrap_or_else(|_| format!("unknown element type {code}"))
}

/// Converts an initializer or `Constant` value. Errors say what is missing (a dtype wgedge has
/// no values of, data stored outside the file, a count that disagrees with the dims).
pub(crate) fn from_proto(t: &TensorProto) -> Result<Tensor, String> {
    let name = t.name();
    let code = t.data_type.unwrap_or(0);
    let dtype = dtype_of(code).ok_or_else(|| {
        format!(
            "tensor '{name}' has dtype {} (wgedge holds f32, f16, i64, i32, i8, u8, bool)",
            dtype_name(code)
        )
    })?;
    if t.data_location == Some(1) || !t.external_data.is_empty() {
        return Err(format!(
            "tensor '{name}' keeps its data in an external file; save the model with the \
             data inside the .onnx file (onnx.save_model(..., save_as_external_data=False))"
        ));
    }
    if t.segment.is_some() {
        return Err(format!("tensor '{name}' is a segment of a larger tensor"));
    }
    let mut shape = Vec::with_capacity(t.dims.len());
    for &d in &t.dims {
        shape.push(usize::try_from(d).map_err(|_| format!("tensor '{name}' has dim {d}"))?);
    }
    let n = checked_numel(&shape)
        .ok_or_else(|| format!("tensor '{name}' has too many elements: {:?}", t.dims))?;
    if let Some(raw) = &t.raw_data {
        return Tensor::from_bytes(dtype, &shape, raw).map_err(|e| format!("tensor '{name}': {e}"));
    }
    let count = |len: usize| {
        if len == n {
            Ok(())
        } else {
            Err(format!(
                "tensor '{name}' of shape {shape:?} holds {len} values, not {n}"
            ))
        }
    };
    let i32s = &t.int32_data;
    let data = match dtype {
        DType::F32 => {
            count(t.float_data.len())?;
            TensorData::F32(t.float_data.clone())
        }
        DType::I64 => {
            count(t.int64_data.len())?;
            TensorData::I64(t.int64_data.clone())
        }
        // f16 values travel as their bit patterns in int32_data.
        DType::F16 => {
            count(i32s.len())?;
            TensorData::F16(
                i32s.iter()
                    .map(|&b| half::f16::from_bits(b as u16))
                    .collect(),
            )
        }
        DType::I32 => {
            count(i32s.len())?;
            TensorData::I32(i32s.clone())
        }
        DType::I8 => {
            count(i32s.len())?;
            TensorData::I8(i32s.iter().map(|&v| v as i8).collect())
        }
        DType::U8 => {
            count(i32s.len())?;
            TensorData::U8(i32s.iter().map(|&v| v as u8).collect())
        }
        DType::Bool => {
            count(i32s.len())?;
            TensorData::Bool(i32s.iter().map(|&v| (v != 0) as u8).collect())
        }
    };
    Tensor::from_data(&shape, data).map_err(|e| format!("tensor '{name}': {e}"))
}

/// Values of an integer (or bool) tensor as i64; floats are truncated (shape logic only).
pub(crate) fn i64s(t: &Tensor) -> Vec<i64> {
    match t.data() {
        TensorData::I64(v) => v.clone(),
        TensorData::I32(v) => v.iter().map(|&x| x as i64).collect(),
        TensorData::I8(v) => v.iter().map(|&x| x as i64).collect(),
        TensorData::U8(v) | TensorData::Bool(v) => v.iter().map(|&x| x as i64).collect(),
        TensorData::F32(v) => v.iter().map(|&x| x as i64).collect(),
        TensorData::F16(v) => v.iter().map(|x| x.to_f32() as i64).collect(),
    }
}

/// Values of any tensor as f64 (exact for every dtype but i64 beyond 2^53).
pub(crate) fn f64s(t: &Tensor) -> Vec<f64> {
    match t.data() {
        TensorData::F32(v) => v.iter().map(|&x| x as f64).collect(),
        TensorData::F16(v) => v.iter().map(|x| x.to_f64()).collect(),
        TensorData::I64(v) => v.iter().map(|&x| x as f64).collect(),
        TensorData::I32(v) => v.iter().map(|&x| x as f64).collect(),
        TensorData::I8(v) => v.iter().map(|&x| x as f64).collect(),
        TensorData::U8(v) | TensorData::Bool(v) => v.iter().map(|&x| x as f64).collect(),
    }
}

/// A tensor of `dtype` from i64 values (wrapping as a C cast would; used for integer results).
pub(crate) fn from_i64s(dtype: DType, shape: &[usize], v: Vec<i64>) -> Result<Tensor, String> {
    let data = match dtype {
        DType::I64 => TensorData::I64(v),
        DType::I32 => TensorData::I32(v.iter().map(|&x| x as i32).collect()),
        DType::I8 => TensorData::I8(v.iter().map(|&x| x as i8).collect()),
        DType::U8 => TensorData::U8(v.iter().map(|&x| x as u8).collect()),
        DType::Bool => TensorData::Bool(v.iter().map(|&x| (x != 0) as u8).collect()),
        DType::F32 => TensorData::F32(v.iter().map(|&x| x as f32).collect()),
        DType::F16 => TensorData::F16(v.iter().map(|&x| half::f16::from_f64(x as f64)).collect()),
    };
    Tensor::from_data(shape, data).map_err(|e| e.to_string())
}

/// A tensor of `dtype` from f64 values (float dtypes round, integer ones truncate).
pub(crate) fn from_f64s(dtype: DType, shape: &[usize], v: Vec<f64>) -> Result<Tensor, String> {
    let data = match dtype {
        DType::F32 => TensorData::F32(v.iter().map(|&x| x as f32).collect()),
        DType::F16 => TensorData::F16(v.iter().map(|&x| half::f16::from_f64(x)).collect()),
        _ => return from_i64s(dtype, shape, v.iter().map(|&x| x as i64).collect()),
    };
    Tensor::from_data(shape, data).map_err(|e| e.to_string())
}
