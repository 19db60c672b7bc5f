//! How kernels read packed weights (quantised codes, f16 halves) directly, without inflating
//! them to f32 on the device: the GPU layout of each part, its upload packing, and the shader
//! constants and uniform words that describe a format to the shared WGSL dequantiser
//! (`shaders/quant/dequant.wgsl`).
//!
//! GPU layout. A packed weight is its format's `[rows, cols]` matrix (rows = output channels,
//! cols = the reduction dim K). Codes are uploaded row by row, each row padded with zero codes
//! to a whole number of 16-byte *texels* (4 u32 words: 16 int8, 32 int4 or 8 f16 values), so a
//! kernel walks K a texel at a time from a storage buffer (`array<vec4<u32>>`) or an
//! `rgba32uint` texture with the same bytes. Scales, shifts and zero points go up as their
//! stored bytes, padded to a word (f16 scales stay f16: two per word). So the device holds the
//! packed bytes plus at most 15 bytes of padding per row.

use super::{Bind, Dispatch, LowerCtx, OpFamily, SelectCtx, Standard};
use crate::error::{Error, Result};
use crate::format::{matrix_dims, QuantSpec, WeightFormat, WeightParts};
use crate::gpu::shader::{ShaderKey, ShaderSource};
use crate::tensor::{DType, Tensor, TensorData, ValueType};
use serde::{Deserialize, Serialize};

/// A part of a packed weight as a kernel binds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QPart {
    /// Codes (or f16 halves), rows padded to whole texels.
    Codes,
    /// The same codes K-major: texel (kt, n4) holds k = kt * QV4 .. + QV4 (one u32 word, or
    /// half a word for int4, or two words for f16, per k) of the 4 rows n = 4 n4 .. 4 n4 + 4,
    /// so unpacking yields vectors along N for outer-product kernels. Texels are stored
    /// kt-major (`kt * n4s + n4`); rows and K are zero-padded to whole texels.
    CodesKn,
    /// Scales (f32 or f16) or pow2 shifts (i8) as stored, then the zero points (u8) from word
    /// [`QLayout::scale_words`]: one binding, so quantised kernels fit 8 storage buffers.
    Meta,
}

/// Values of each format in one 16-byte texel.
fn values_per_texel(f: &WeightFormat) -> Option<usize> {
    match f {
        WeightFormat::Half => Some(8),
        WeightFormat::Quant(q) if q.bits == 8 => Some(16),
        WeightFormat::Quant(_) => Some(32),
        _ => None,
    }
}

/// What a kernel needs to know about a packed weight: compile-time constants of the
/// dequantiser and the uniform words that locate rows and groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QLayout {
    pub rows: usize,
    pub cols: usize,
    /// Bits per value: 4, 8 (codes) or 16 (f16 halves).
    pub bits: u32,
    /// Scale kind: 0 f32, 1 f16, 2 pow2 shift, 4 none (f16 weights).
    pub scale: u32,
    /// Asymmetric codes with zero points.
    pub zero: bool,
    /// Texels per row.
    pub row_t: usize,
    /// Texels per scale group (= `row_t` for one scale per row).
    pub group_t: usize,
    /// Scale groups stored per row.
    pub ngroups: usize,
}

impl QLayout {
    /// The layout of `format` on a weight of `shape`, or why no kernel reads it directly (the
    /// weight is then decoded to f32 for a dense kernel, and the plan says so).
    pub fn of(format: &WeightFormat, shape: &[usize]) -> std::result::Result<QLayout, String> {
        let vpt = values_per_texel(format)
            .ok_or_else(|| format!("no kernel reads {} weights directly", format.label()))?;
        let (rows, cols) = matrix_dims(shape).map_err(|e| e.to_string())?;
        let row_t = cols.div_ceil(vpt);
        let (bits, scale, zero, group_t, ngroups) = match format {
            WeightFormat::Half => (16, 4, false, row_t, 1),
            WeightFormat::Quant(q) => {
                let QuantSpec {
                    bits,
                    group,
                    zero_points,
                    pow2,
                    scale_dtype,
                } = *q;
                if group > 0 && !group.is_multiple_of(vpt) {
                    return Err(format!(
                        "{}: groups of {group} do not align with the kernels' {vpt}-value texels",
                        format.label()
                    ));
                }
                let scale = match (pow2, scale_dtype) {
                    (true, _) => 2,
                    (false, DType::F16) => 1,
                    _ => 0,
                };
                let group_t = if group == 0 { row_t } else { group / vpt };
                (bits as u32, scale, zero_points, group_t, q.ngroups(cols))
            }
            _ => unreachable!("values_per_texel covers the readable formats"),
        };
        Ok(QLayout {
            rows,
            cols,
            bits,
            scale,
            zero,
            row_t,
            group_t,
            ngroups,
        })
    }

    /// Values per texel.
    pub fn vpt(&self) -> usize {
        match self.bits {
            16 => 8,
            8 => 16,
            _ => 32,
        }
    }

    /// Shader constants selecting the dequantiser's code paths.
    pub fn consts(&self) -> [(&'static str, u32); 3] {
        [
            ("BITS", self.bits),
            ("SCALE", self.scale),
            ("ZERO", self.zero as u32),
        ]
    }

    /// Words of the scales at the start of the meta part (zero points follow).
    pub fn scale_words(&self) -> usize {
        let n = self.rows * self.ngroups;
        match self.scale {
            0 => n,
            1 => n.div_ceil(2),
            2 => n.div_ceil(4),
            _ => 0,
        }
    }

    /// Texel columns of the K-major layout (`ceil(rows / 4)`).
    pub fn n4s(&self) -> usize {
        self.rows.div_ceil(4)
    }

    /// Width in texels of the texture a part is uploaded as (one texel row per weight row, or
    /// per K step of the K-major layout).
    pub fn texture_width(&self, part: QPart) -> usize {
        match part {
            QPart::CodesKn => self.n4s(),
            _ => self.row_t,
        }
    }

    /// Bytes of the codes as uploaded (rows padded to texels).
    pub fn code_bytes(&self) -> u64 {
        (self.rows * self.row_t * 16) as u64
    }
}

/// The u32 words of one part of packed weight `name` as kernels read it (see the module
/// docs). The parts were validated at load; a missing or mis-typed one is still an error.
pub fn pack_part(
    part: QPart,
    format: &WeightFormat,
    name: &str,
    shape: &[usize],
    parts: &WeightParts,
) -> Result<Vec<u32>> {
    let bad = |what: String| Error::ModelFile(format!("weight '{name}': {what}"));
    let lay = QLayout::of(format, shape).map_err(bad)?;
    let get = |p: &str| {
        parts
            .get(&format!("{name}.{p}"))
            .ok_or_else(|| bad(format!("part '{name}.{p}' is missing")))
    };
    let words_of = |bytes: &[u8]| -> Vec<u32> {
        let mut b = bytes.to_vec();
        b.resize(b.len().div_ceil(4).max(1) * 4, 0);
        bytemuck::pod_collect_to_vec(&b)
    };
    match (part, format) {
        (QPart::CodesKn, _) => {
            // Value (n, k) of b bits sits at bit k * b of row n (rows padded to texels); in
            // the K-major layout it goes to texel (k / QV4, n / 4) at bit (j * 4 + n % 4) * b,
            // j = k % QV4: for int8 word j byte n % 4, for int4 word j / 2 nibble
            // 4 (j % 2) + n % 4, for f16 word 2 j + (n % 4) / 2 half n % 2.
            let rows = pack_part(QPart::Codes, format, name, shape, parts)?;
            let (b, qv4, n4s) = (lay.bits as usize, lay.vpt() / 4, lay.n4s());
            let row_words = lay.row_t * 4;
            let kts = lay.row_t * 4;
            let mask = (1u64 << b) as u32 - 1;
            let mut out = vec![0u32; kts * n4s * 4];
            for n in 0..lay.rows {
                for k in 0..lay.row_t * lay.vpt() {
                    let bit = k * b;
                    let v = (rows[n * row_words + bit / 32] >> (bit % 32)) & mask;
                    if v == 0 {
                        continue;
                    }
                    let (kt, j) = (k / qv4, k % qv4);
                    let obit = (j * 4 + n % 4) * b;
                    out[(kt * n4s + n / 4) * 4 + obit / 32] |= v << (obit % 32);
                }
            }
            Ok(out)
        }
        (QPart::Codes, _) => {
            let (src, src_row) = match format {
                WeightFormat::Half => (get("half")?, lay.cols * 2),
                WeightFormat::Quant(q) if q.bits == 4 => (get("qweight")?, lay.cols.div_ceil(2)),
                _ => (get("qweight")?, lay.cols),
            };
            let bytes = src.bytes();
            if bytes.len() != lay.rows * src_row {
                return Err(bad(format!(
                    "codes hold {} bytes, expected {}",
                    bytes.len(),
                    lay.rows * src_row
                )));
            }
            let row_bytes = lay.row_t * 16;
            let mut out = vec![0u8; lay.rows * row_bytes];
            for (dst, src) in out.chunks_mut(row_bytes).zip(bytes.chunks(src_row.max(1))) {
                dst[..src.len()].copy_from_slice(src);
            }
            Ok(words_of(&out))
        }
        (QPart::Meta, WeightFormat::Quant(q)) => {
            let t = get(if q.pow2 { "shifts" } else { "scales" })?;
            let n = lay.rows * lay.ngroups;
            let mut words = match t.data() {
                // One shift for the whole tensor is spread to every group: kernels index
                // scales one way, for a few bytes more.
                TensorData::I8(v) if q.pow2 && v.len() == 1 => words_of(&vec![v[0] as u8; n]),
                TensorData::F32(_) | TensorData::F16(_) | TensorData::I8(_) => words_of(t.bytes()),
                _ => return Err(bad(format!("scales of dtype {}", t.dtype()))),
            };
            if words.len() < lay.scale_words() {
                return Err(bad(format!(
                    "{} scale words, expected {}",
                    words.len(),
                    lay.scale_words()
                )));
            }
            words.truncate(lay.scale_words().max(1));
            if q.zero_points {
                words.extend(words_of(get("zeros")?.bytes()));
            }
            Ok(words)
        }
        // Formats without the part bind a one-word stand-in the shader never reads.
        _ => Ok(vec![0]),
    }
}

/// Decodes a packed constant weight to f32 on the device with the shared dequantiser; the CPU
/// reference is the identity (the CPU sees packed weights decoded by [`WeightFormat::decode`]).
/// Its kernel is how tests check the WGSL dequantiser against the Rust one, element by element.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Dequantize {}

static DEQUANT: ShaderSource = crate::wgsl!("quant/dequant.wgsl", "quant/dequant_op.wgsl"; [
    [("BITS", 8), ("SCALE", 0), ("ZERO", 0)],
    [("BITS", 4), ("SCALE", 1), ("ZERO", 1)],
    [("BITS", 8), ("SCALE", 2), ("ZERO", 1)],
    [("BITS", 16), ("SCALE", 4), ("ZERO", 0)]
]);

impl OpFamily for Dequantize {
    const FAMILY: &'static str = "dequantize";
    type Kernel = Standard;

    fn infer(&self, ins: &[ValueType]) -> Result<ValueType> {
        super::float_op("dequantize", ins, |s| Ok(s[0].clone()))
    }

    fn cpu(&self, ins: &[&Tensor], _out: &ValueType) -> Result<Tensor> {
        Ok(ins[0].clone())
    }

    /// The kernel reads a constant packed weight; anything else (dense) is a copy on the CPU.
    fn select(&self, cx: &SelectCtx) -> Option<Standard> {
        (cx.is_const[0] && QLayout::of(&cx.formats[0], cx.shape(0)).is_ok())
            .then_some(Standard::Standard)
    }

    fn lower(&self, _k: &Standard, cx: &LowerCtx) -> Result<Vec<Dispatch>> {
        let lay = QLayout::of(&cx.formats[0], &cx.in_shapes[0])
            .map_err(|e| super::unsupported("dequantize", e))?;
        let wg = [super::div_ceil(lay.row_t, 64), super::word(lay.rows), 1];
        super::check_grid("dequantize", wg, cx.max_workgroups)?;
        let w = super::word;
        Ok(vec![Dispatch {
            shader: ShaderKey::new(&DEQUANT, &lay.consts()),
            overrides: super::Activation::None.overrides(),
            params: vec![
                w(lay.rows),
                w(lay.cols),
                w(lay.row_t),
                w(lay.group_t),
                w(lay.ngroups),
                w(lay.scale_words()),
                0,
                0,
            ],
            bindings: vec![
                Bind::Quant(0, QPart::Codes),
                Bind::Quant(0, QPart::Meta),
                Bind::Output,
            ],
            workgroups: wg,
        }])
    }

    fn shaders() -> Vec<&'static ShaderSource> {
        vec![&DEQUANT]
    }

    fn flops(&self, _ins: &[ValueType], _out: &ValueType) -> u64 {
        0
    }
}
