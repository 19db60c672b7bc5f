//! Host tensors: a shape plus typed data, row-major.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Element types a tensor or graph value can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    F32,
    F16,
    I32,
    I64,
    I8,
    U8,
    Bool,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }

    /// Floating-point dtypes (the ones arithmetic ops take).
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16)
    }
}

/// What the graph knows about a value before any data exists: its dtype and shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ValueType {
    pub dtype: DType,
    pub shape: Vec<usize>,
}

impl ValueType {
    pub fn new(dtype: DType, shape: &[usize]) -> Self {
        ValueType {
            dtype,
            shape: shape.to_vec(),
        }
    }

    /// An f32 value of `shape`.
    pub fn f32(shape: &[usize]) -> Self {
        Self::new(DType::F32, shape)
    }

    /// Bytes of the value's elements (None when the count overflows `u64`, or does not fit
    /// `usize` — 32 bits on wasm — so callers may convert it to `usize` as is).
    pub fn bytes(&self) -> Option<u64> {
        self.shape
            .iter()
            .try_fold(self.dtype.size() as u64, |acc, &d| {
                acc.checked_mul(d as u64)
            })
            .filter(|&b| usize::try_from(b).is_ok())
    }
}

impl std::fmt::Display for ValueType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{:?}", self.dtype, self.shape)
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::I8 => "i8",
            DType::U8 => "u8",
            DType::Bool => "bool",
        };
        f.write_str(s)
    }
}

/// Typed element storage.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    F16(Vec<half::f16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    I8(Vec<i8>),
    U8(Vec<u8>),
    /// One byte per element, 0 or 1 (safetensors' and ONNX's layout).
    Bool(Vec<u8>),
}

impl TensorData {
    fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::F16(v) => v.len(),
            TensorData::I32(v) => v.len(),
            TensorData::I64(v) => v.len(),
            TensorData::I8(v) => v.len(),
            TensorData::U8(v) | TensorData::Bool(v) => v.len(),
        }
    }
}

/// A dense row-major tensor on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    /// Shared, immutable elements: cloning a tensor (a session taking its model's weights, a
    /// reshape) copies no data, so sessions of one model share its weights.
    data: std::sync::Arc<TensorData>,
}

/// Number of elements of a shape (1 for a scalar). Saturates at `usize::MAX` instead of
/// overflowing, so an absurd shape compares unequal to any real element count; use
/// [`checked_numel`] where the count must be exact.
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().fold(1usize, |acc, &d| acc.saturating_mul(d))
}

/// Bytes of `shape` elements of `dtype`, if the count fits `usize` (32 bits on wasm).
pub fn checked_bytes(dtype: DType, shape: &[usize]) -> Option<usize> {
    shape
        .iter()
        .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d))
}

/// Element count if it fits the 32-bit indexing every kernel uses, else `None`.
pub fn checked_numel(shape: &[usize]) -> Option<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= u32::MAX as usize)
}

/// Formats a shape as `[a, b, c]` for error messages.
pub fn fmt_shape(shape: &[usize]) -> String {
    format!("{shape:?}")
}

impl Tensor {
    /// An f32 tensor; errors if `data.len()` does not match the shape.
    pub fn new(shape: &[usize], data: Vec<f32>) -> Result<Self> {
        Self::from_data(shape, TensorData::F32(data))
    }

    /// A tensor of any dtype; errors if the element count does not match the shape.
    pub fn from_data(shape: &[usize], data: TensorData) -> Result<Self> {
        let len = data.len();
        let Some(n) = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)) else {
            return Err(Error::shape(
                "Tensor::new",
                format!("a shape whose element count fits {} bits", usize::BITS),
                fmt_shape(shape),
            ));
        };
        if len != n {
            return Err(Error::shape(
                "Tensor::new",
                format!("{n} elements for shape {}", fmt_shape(shape)),
                format!("{len} elements"),
            ));
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            data: std::sync::Arc::new(data),
        })
    }

    /// An f32 tensor of zeros, for small shapes known to be sane (tests, examples, bias
    /// defaults).
    ///
    /// # Panics
    /// Only on absurd shapes: more than 2^32 elements, or more bytes than `usize` holds.
    /// Use [`Tensor::try_zeros`] for shapes that come from a file or a user.
    pub fn zeros(shape: &[usize]) -> Self {
        match Self::try_zeros(shape) {
            Ok(t) => t,
            Err(e) => panic!("Tensor::zeros: {e}"),
        }
    }

    /// An f32 tensor of zeros, or an error when the shape has more than 2^32 elements (the
    /// kernels' 32-bit indexing) or its bytes overflow `usize`.
    pub fn try_zeros(shape: &[usize]) -> Result<Self> {
        let n = checked_numel(shape)
            .filter(|_| checked_bytes(DType::F32, shape).is_some())
            .ok_or_else(|| Error::Unsupported {
                op: "Tensor::zeros".into(),
                what: format!(
                    "shape {} (more than 2^32 elements or bytes beyond {} bits)",
                    fmt_shape(shape),
                    usize::BITS
                ),
                backend: "any".into(),
            })?;
        Ok(Tensor {
            shape: shape.to_vec(),
            data: std::sync::Arc::new(TensorData::F32(vec![0.0; n])),
        })
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn numel(&self) -> usize {
        numel(&self.shape)
    }

    pub fn dtype(&self) -> DType {
        match self.data.as_ref() {
            TensorData::F32(_) => DType::F32,
            TensorData::F16(_) => DType::F16,
            TensorData::I32(_) => DType::I32,
            TensorData::I64(_) => DType::I64,
            TensorData::I8(_) => DType::I8,
            TensorData::U8(_) => DType::U8,
            TensorData::Bool(_) => DType::Bool,
        }
    }

    /// The tensor's dtype and shape.
    pub fn value_type(&self) -> ValueType {
        ValueType::new(self.dtype(), &self.shape)
    }

    pub fn data(&self) -> &TensorData {
        &self.data
    }

    /// The f32 elements, or a dtype error naming `what` for context.
    pub fn f32s(&self, what: &str) -> Result<&[f32]> {
        match self.data.as_ref() {
            TensorData::F32(v) => Ok(v),
            _ => Err(Error::DTypeMismatch {
                op: what.to_string(),
                expected: "f32".into(),
                got: self.dtype().to_string(),
            }),
        }
    }

    /// Consumes the tensor and returns its f32 elements (dtype error otherwise).
    pub fn into_f32s(self, what: &str) -> Result<Vec<f32>> {
        if self.dtype() != DType::F32 {
            return Err(Error::DTypeMismatch {
                op: what.to_string(),
                expected: "f32".into(),
                got: self.dtype().to_string(),
            });
        }
        match std::sync::Arc::unwrap_or_clone(self.data) {
            TensorData::F32(v) => Ok(v),
            _ => unreachable!("dtype checked above"),
        }
    }

    /// Same data viewed with another shape of equal element count.
    pub fn reshaped(mut self, shape: &[usize]) -> Result<Self> {
        if numel(shape) != self.numel() {
            return Err(Error::shape(
                "reshape",
                fmt_shape(&self.shape),
                fmt_shape(shape),
            ));
        }
        self.shape = shape.to_vec();
        Ok(self)
    }

    /// Converts an integer or half tensor to f32 (u8 images, f16 weights).
    pub fn to_f32(&self) -> Tensor {
        let v: Vec<f32> = match self.data.as_ref() {
            TensorData::F32(v) => v.clone(),
            TensorData::F16(v) => v.iter().map(|x| x.to_f32()).collect(),
            TensorData::I32(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::I64(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::I8(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::U8(v) | TensorData::Bool(v) => v.iter().map(|&x| x as f32).collect(),
        };
        Tensor {
            shape: self.shape.clone(),
            data: std::sync::Arc::new(TensorData::F32(v)),
        }
    }

    /// Raw little-endian bytes of the elements.
    pub fn bytes(&self) -> &[u8] {
        match self.data.as_ref() {
            TensorData::F32(v) => bytemuck::cast_slice(v),
            TensorData::F16(v) => bytemuck::cast_slice(v),
            TensorData::I32(v) => bytemuck::cast_slice(v),
            TensorData::I64(v) => bytemuck::cast_slice(v),
            TensorData::I8(v) => bytemuck::cast_slice(v),
            TensorData::U8(v) | TensorData::Bool(v) => v,
        }
    }

    /// Builds a tensor from raw little-endian bytes.
    pub fn from_bytes(dtype: DType, shape: &[usize], bytes: &[u8]) -> Result<Self> {
        let Some(need) = checked_bytes(dtype, shape) else {
            return Err(Error::ModelFile(format!(
                "tensor of shape {} and dtype {dtype} has more bytes than {} bits count",
                fmt_shape(shape),
                usize::BITS
            )));
        };
        if bytes.len() != need {
            return Err(Error::ModelFile(format!(
                "tensor of shape {} and dtype {dtype} needs {need} bytes, found {}",
                fmt_shape(shape),
                bytes.len()
            )));
        }
        // Copy through chunks: the source may not be aligned for the element type.
        let data = match dtype {
            DType::F32 => TensorData::F32(
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            DType::I32 => TensorData::I32(
                bytes
                    .chunks_exact(4)
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            DType::F16 => TensorData::F16(
                bytes
                    .chunks_exact(2)
                    .map(|c| half::f16::from_le_bytes([c[0], c[1]]))
                    .collect(),
            ),
            DType::I64 => TensorData::I64(
                bytes
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                    .collect(),
            ),
            DType::I8 => TensorData::I8(bytes.iter().map(|&b| b as i8).collect()),
            DType::U8 => TensorData::U8(bytes.to_vec()),
            DType::Bool => {
                if let Some(b) = bytes.iter().find(|&&b| b > 1) {
                    return Err(Error::ModelFile(format!(
                        "bool tensor holds byte {b} (only 0 and 1 are booleans)"
                    )));
                }
                TensorData::Bool(bytes.to_vec())
            }
        };
        Ok(Tensor {
            shape: shape.to_vec(),
            data: std::sync::Arc::new(data),
        })
    }

    /// Converts to `dtype` (numeric cast as ONNX `Cast`: floats to ints truncate toward zero
    /// and saturate, anything to bool is `!= 0`).
    pub fn cast(&self, dtype: DType) -> Tensor {
        if dtype == self.dtype() {
            return self.clone();
        }
        // Through f64: exact for every value of every supported dtype except i64 beyond 2^53.
        let v: Vec<f64> = match self.data.as_ref() {
            TensorData::F32(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::F16(v) => v.iter().map(|x| x.to_f64()).collect(),
            TensorData::I32(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::I64(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::I8(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::U8(v) | TensorData::Bool(v) => v.iter().map(|&x| x as f64).collect(),
        };
        let data = match dtype {
            DType::F32 => TensorData::F32(v.iter().map(|&x| x as f32).collect()),
            DType::F16 => TensorData::F16(v.iter().map(|&x| half::f16::from_f64(x)).collect()),
            DType::I32 => TensorData::I32(v.iter().map(|&x| x as i32).collect()),
            DType::I64 => match self.data.as_ref() {
                // Keep i64 -> i64-like paths exact.
                TensorData::I32(s) => TensorData::I64(s.iter().map(|&x| x as i64).collect()),
                _ => TensorData::I64(v.iter().map(|&x| x as i64).collect()),
            },
            DType::I8 => TensorData::I8(v.iter().map(|&x| x as i8).collect()),
            DType::U8 => TensorData::U8(v.iter().map(|&x| x as u8).collect()),
            DType::Bool => TensorData::Bool(v.iter().map(|&x| (x != 0.0) as u8).collect()),
        };
        Tensor {
            shape: self.shape.clone(),
            data: std::sync::Arc::new(data),
        }
    }

    /// Deterministic pseudo-random f32 tensor in [-1, 1) (for tests and benches).
    pub fn random(shape: &[usize], seed: u64) -> Tensor {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let v = (0..numel(shape))
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect();
        Tensor {
            shape: shape.to_vec(),
            data: std::sync::Arc::new(TensorData::F32(v)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HUGE: usize = 1 << 40;

    #[test]
    fn absurd_shapes_are_errors_not_overflows() {
        // Element count overflows usize: an error, not an arithmetic panic.
        let e = Tensor::new(&[HUGE, HUGE, HUGE], vec![]).unwrap_err();
        assert!(matches!(e, Error::ShapeMismatch { .. }), "{e}");
        let e = Tensor::from_data(&[usize::MAX, 2], TensorData::U8(vec![])).unwrap_err();
        assert!(e.to_string().contains("fits"), "{e}");
        // Bytes overflow although the element count does not.
        let e = Tensor::from_bytes(DType::I64, &[usize::MAX / 4], &[]).unwrap_err();
        assert!(e.to_string().contains("more bytes"), "{e}");
        let e = Tensor::from_bytes(DType::F32, &[HUGE, HUGE], &[0; 8]).unwrap_err();
        assert!(matches!(e, Error::ModelFile(_)), "{e}");
        assert!(Tensor::from_bytes(DType::F32, &[2], &[0; 8]).is_ok());
        // zeros: fallible form for untrusted shapes.
        assert!(Tensor::try_zeros(&[HUGE, HUGE]).is_err());
        assert!(Tensor::try_zeros(&[1 << 16, 1 << 17]).is_err()); // 2^33 elements
        assert_eq!(Tensor::try_zeros(&[2, 3]).unwrap().numel(), 6);
        // numel saturates; checked forms say None.
        assert_eq!(numel(&[HUGE, HUGE]), usize::MAX);
        assert_eq!(checked_numel(&[HUGE, HUGE]), None);
        assert_eq!(checked_bytes(DType::I64, &[usize::MAX / 4]), None);
        assert_eq!(ValueType::new(DType::I64, &[HUGE, HUGE]).bytes(), None);
        assert_eq!(ValueType::new(DType::F16, &[3, 5]).bytes(), Some(30));
        let t = Tensor::new(&[2, 3], vec![0.0; 6]).unwrap();
        assert!(t.reshaped(&[HUGE, HUGE]).is_err());
    }

    #[test]
    #[should_panic(expected = "Tensor::zeros")]
    fn zeros_panics_only_on_absurd_shapes() {
        let _ = Tensor::zeros(&[HUGE, HUGE]);
    }

    #[test]
    fn clones_share_their_elements() {
        // Sessions clone their model's weight map: that must not copy the data.
        let t = Tensor::random(&[64, 64], 1);
        let c = t.clone().reshaped(&[4096]).unwrap();
        assert_eq!(c.bytes().as_ptr(), t.bytes().as_ptr());
        // Taking the elements out of a shared tensor copies; of a sole one, does not.
        let v = c.into_f32s("c").unwrap();
        assert_eq!(v, t.f32s("t").unwrap());
    }
}
