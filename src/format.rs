//! Weight storage formats: how a constant weight is laid out in the model file (dense,
//! quantised or sparse), and the CPU reference for encoding and decoding each.
//!
//! A non-dense weight is stored as several plain tensors named `{name}.{part}`, so the
//! safetensors container needs no extension; the [`WeightFormat`] descriptor lives in the
//! graph JSON. Every format views the weight as a matrix `[rows, cols]` (see [`matrix_dims`]):
//! rows are output channels and cols the contiguous reduction dim K, which is the axis GPU
//! kernels walk, so groups, nibble packing and N:M patterns all run along it.
//!
//! Model files are untrusted: decoding checks every part's dtype, shape and every stored index
//! before use and reports problems as [`Error::ModelFile`], never by panicking.

use crate::error::{Error, Result};
use crate::tensor::{checked_numel, fmt_shape, DType, Tensor, TensorData};
use half::f16;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How a constant weight is stored; the default, dense, keeps existing graphs valid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WeightFormat {
    /// One tensor stored under the weight's own name, in whatever dtype the graph declares.
    #[default]
    Dense,
    /// Integer codes with per-row or per-group scales (parts `qweight`, `scales` or `shifts`,
    /// and `zeros` when asymmetric).
    Quant(QuantSpec),
    /// Only the nonzero entries (CSR, block CSR) or a fixed N:M pattern.
    Sparse(SparseSpec),
    /// Half precision: part `half` (F16, the weight's shape), decoded to f32. Half the bytes,
    /// about 3 significant digits; GPU kernels read pairs packed in u32 words (no `shader-f16`
    /// needed).
    Half,
}

/// Parameters of a quantised weight: `x = (q - z) * scale`, or `(q - z) * 2^-n` when `pow2`.
///
/// Parts, with `ngroups` from [`QuantSpec::ngroups`]: `qweight` (I8 `[rows, cols]` for 8-bit
/// symmetric, U8 `[rows, cols]` for 8-bit asymmetric, U8 `[rows, ceil(cols/2)]` for 4-bit),
/// `scales` (`scale_dtype`, `[rows, ngroups]`) or, when `pow2`, `shifts` (I8 `[rows, ngroups]`,
/// or `[1, 1]` for one shift for the whole tensor), and `zeros` (U8 `[rows, ngroups]`) when
/// `zero_points`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuantSpec {
    /// Bits per code: 8 (one code per byte) or 4 (two codes per byte, even column low nibble).
    pub bits: u8,
    /// Values per scale along cols (K); 0 = one scale per row (per output channel). The last
    /// group of a row may be short, so K need not be a multiple of the group.
    #[serde(default)]
    pub group: usize,
    /// Asymmetric: unsigned codes with a zero point per scale (fits skewed ranges such as
    /// post-ReLU weights better); otherwise symmetric signed codes.
    #[serde(default)]
    pub zero_points: bool,
    /// Scales are powers of two (`x = q * 2^-n`, `n` an i8 per scale), so dequantisation is a
    /// shift: the format of fixed-point accelerators and integer-only kernels.
    #[serde(default)]
    pub pow2: bool,
    /// Dtype of stored scales (F32 or F16; F16 halves their size); ignored when `pow2`.
    #[serde(default = "default_scale_dtype")]
    pub scale_dtype: DType,
}

fn default_scale_dtype() -> DType {
    DType::F32
}

/// Parameters of a sparse weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SparseSpec {
    /// Which entries are kept; flattened into the descriptor (`"layout": "bsr", "r": 4, ...`).
    #[serde(flatten)]
    pub layout: SparseLayout,
    /// How kept values are stored.
    #[serde(default)]
    pub values: SparseValues,
}

/// Sparsity layouts. Block and N:M layouts trade some zeros stored for regular access that
/// vectorises on GPUs; CSR suits very sparse, irregular weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "layout", rename_all = "snake_case")]
pub enum SparseLayout {
    /// Compressed sparse rows: parts `indptr` I32 `[rows+1]` (0, non-decreasing, ends at nnz),
    /// `indices` I32 `[nnz]` (columns, increasing within a row), `values` `[nnz]`.
    Csr,
    /// CSR over `r x c` blocks (which must tile the matrix): `indptr` I32 `[rows/r+1]`,
    /// `indices` I32 `[nnzb]` (block columns), `values` `[nnzb, r, c]` (row-major blocks).
    Bsr { r: usize, c: usize },
    /// Exactly `n` kept slots per group of `m` columns: `values` and `indices` (U8 position in
    /// the group, increasing) `[rows, cols/m*n]`; `m` must divide cols, `1 <= n <= m <= 16`.
    /// A slot may hold 0 when a group has fewer nonzeros.
    #[serde(rename = "nm")]
    NM { n: usize, m: usize },
}

/// Storage of the kept values of a sparse weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SparseValues {
    /// Exact f32 values.
    #[default]
    F32,
    /// Half-precision values (half the bytes, ~3 significant digits).
    F16,
    /// Int8 values with one f32 scale per row (part `scales` `[rows]`): `x = v * scale[row]`.
    I8,
}

/// The `[rows, cols]` matrix view every format uses: rows = `shape[0]` (output channels), cols
/// = the product of the remaining dims; a rank-1 weight is one row. Errors (`Unsupported`) for
/// rank 0 and for weights beyond the 32-bit element indexing kernels use.
pub fn matrix_dims(shape: &[usize]) -> Result<(usize, usize)> {
    if shape.is_empty() {
        return Err(unsupported("a rank-0 weight in a non-dense format"));
    }
    // Strictly below 2^32 so that `rows + 1` (CSR indptr) cannot overflow either; checked
    // before any product is taken.
    let n = checked_numel(shape);
    if n.is_none_or(|n| n == u32::MAX as usize) {
        return Err(unsupported(format!(
            "weight of shape {} (more than 2^32 elements)",
            fmt_shape(shape)
        )));
    }
    // An empty weight has nothing to pack, and its other dims are unbounded ([2^40, 0]):
    // encoding and decoding loop over rows.
    if n == Some(0) {
        return Err(unsupported(format!(
            "an empty weight (shape {}) in a non-dense format",
            fmt_shape(shape)
        )));
    }
    Ok(match shape {
        [k] => (1, *k),
        [rows, rest @ ..] => (*rows, rest.iter().product()),
        [] => unreachable!("rank 0 handled above"),
    })
}

fn unsupported(what: impl Into<String>) -> Error {
    Error::Unsupported {
        op: "weight format".into(),
        what: what.into(),
        backend: "any".into(),
    }
}

impl QuantSpec {
    /// Scales per row: `ceil(cols / group)`, or 1 when `group` is 0 (per row).
    pub fn ngroups(&self, cols: usize) -> usize {
        if self.group == 0 {
            1
        } else {
            cols.div_ceil(self.group)
        }
    }

    /// Rejects parameter combinations no backend implements (`Error::Unsupported`).
    pub fn check(&self) -> Result<()> {
        if self.bits != 4 && self.bits != 8 {
            return Err(unsupported(format!(
                "{}-bit quantisation (only 4 and 8)",
                self.bits
            )));
        }
        if !self.pow2 && !matches!(self.scale_dtype, DType::F32 | DType::F16) {
            return Err(unsupported(format!(
                "{} quantisation scales",
                self.scale_dtype
            )));
        }
        Ok(())
    }

    /// Inclusive code range: symmetric codes are kept symmetric (-127..127, -7..7) at encode.
    fn code_range(&self) -> (i32, i32) {
        match (self.bits, self.zero_points) {
            (8, false) => (-127, 127),
            (8, true) => (0, 255),
            (_, false) => (-7, 7),
            (_, true) => (0, 15),
        }
    }
}

impl SparseSpec {
    /// Rejects block sizes of 0 and N:M patterns outside `1 <= n <= m <= 16`.
    pub fn check(&self) -> Result<()> {
        match self.layout {
            SparseLayout::Bsr { r, c } if r == 0 || c == 0 => {
                Err(unsupported(format!("{r}x{c} sparse blocks")))
            }
            SparseLayout::NM { n, m } if !(1 <= n && n <= m && m <= 16) => Err(unsupported(
                format!("{n}:{m} sparsity (needs 1 <= n <= m <= 16)"),
            )),
            _ => Ok(()),
        }
    }
}

/// Stored part tensors keyed by full name (`{weight}.{part}`), as read from a model file.
pub type WeightParts = BTreeMap<String, Tensor>;

/// The stored parts of one weight, with errors that name the weight and the part.
struct Parts<'a> {
    name: &'a str,
    map: &'a WeightParts,
}

/// Checked elements of one part, read as f64 (exact for every stored dtype, i32 included).
#[derive(Clone, Copy)]
struct Elems<'a>(&'a TensorData);

impl Elems<'_> {
    fn at(self, i: usize) -> f64 {
        match self.0 {
            TensorData::F32(v) => v[i].into(),
            TensorData::F16(v) => v[i].to_f64(),
            TensorData::I32(v) => v[i].into(),
            TensorData::I8(v) => v[i].into(),
            TensorData::U8(v) => v[i].into(),
            #[allow(unreachable_patterns)] // dtypes added later are rejected by `Parts::get`
            _ => f64::NAN,
        }
    }
}

impl<'a> Parts<'a> {
    fn err(&self, msg: impl std::fmt::Display) -> Error {
        Error::ModelFile(format!("weight '{}': {msg}", self.name))
    }

    fn full(&self, part: &str) -> String {
        format!("{}.{part}", self.name)
    }

    /// The part after checking presence, dtype, shape and (for floats) that it is finite;
    /// after this, every index below `numel(shape)` is in range.
    fn get(&self, part: &str, dtype: DType, shape: &[usize]) -> Result<Elems<'a>> {
        let full = self.full(part);
        let t =
            (self.map.get(&full)).ok_or_else(|| self.err(format!("part '{full}' is missing")))?;
        if t.dtype() != dtype {
            let got = t.dtype();
            return Err(self.err(format!("part '{full}' has dtype {got}, expected {dtype}")));
        }
        if t.shape() != shape {
            let (got, want) = (fmt_shape(t.shape()), fmt_shape(shape));
            return Err(self.err(format!("part '{full}' has shape {got}, expected {want}")));
        }
        let e = Elems(t.data());
        if matches!(dtype, DType::F32 | DType::F16) {
            if let Some(i) = (0..t.numel()).find(|&i| !e.at(i).is_finite()) {
                return Err(self.err(format!("part '{full}' holds {} at {i}", e.at(i))));
            }
        }
        Ok(e)
    }
}

/// Sink for decoded elements: flat index into the dense `[rows, cols]` matrix, and value.
type Emit<'e> = &'e mut dyn FnMut(usize, f32);

fn walk_quant(q: &QuantSpec, p: &Parts, rows: usize, cols: usize, emit: Emit) -> Result<()> {
    let gshape = [rows, q.ngroups(cols)];
    let row_bytes = if q.bits == 4 { cols.div_ceil(2) } else { cols };
    let full = p.full("qweight");
    if let (4, Some([_, got])) = (q.bits, p.map.get(&full).map(Tensor::shape)) {
        if *got != row_bytes {
            let n = got.saturating_mul(2);
            let msg = format!("part '{full}' holds {n} int4 codes a row, not {cols}");
            return Err(p.err(msg));
        }
    }
    let qdtype = if q.bits == 8 && !q.zero_points {
        DType::I8
    } else {
        DType::U8
    };
    let qw = p.get("qweight", qdtype, &[rows, row_bytes])?;
    let zeros = q
        .zero_points
        .then(|| p.get("zeros", DType::U8, &gshape))
        .transpose()?;
    let int4_zeros = zeros.filter(|_| q.bits == 4);
    if let Some(i) = int4_zeros.and_then(|z| (0..rows * gshape[1]).find(|&i| z.at(i) > 15.0)) {
        return Err(p.err(format!(
            "part '{}' has zero point > 15 at {i}",
            p.full("zeros")
        )));
    }
    let shifts_full = p.full("shifts");
    let one = q.pow2 && p.map.get(&shifts_full).is_some_and(|t| t.shape() == [1, 1]);
    let scales = match (q.pow2, one) {
        (true, true) => p.get("shifts", DType::I8, &[1, 1])?,
        (true, false) => p.get("shifts", DType::I8, &gshape)?,
        _ => p.get("scales", q.scale_dtype, &gshape)?,
    };
    for r in 0..rows {
        for c in 0..cols {
            let gi = r * gshape[1] + c.checked_div(q.group).unwrap_or(0);
            let code = if q.bits == 8 {
                let code = qw.at(r * cols + c);
                // Symmetric codes are -127..127 (kernels may read them as snorm, where -128
                // and -127 coincide): -128 is corrupt data, not a value.
                if code == -128.0 && !q.zero_points {
                    return Err(p.err(format!(
                        "part '{full}' holds code -128 at row {r}, column {c} (symmetric int8 \
                         codes are -127..127)"
                    )));
                }
                code
            } else {
                let nib = (qw.at(r * row_bytes + c / 2) as u8 >> (4 * (c % 2))) & 0xF;
                // Sign-extend symmetric nibbles: 8..15 are -8..-1.
                f64::from(if q.zero_points {
                    nib as i8
                } else {
                    ((nib << 4) as i8) >> 4
                })
            };
            let s = scales.at(if one { 0 } else { gi });
            let s = if q.pow2 { 2f64.powi(-(s as i32)) } else { s };
            let z = zeros.map_or(0.0, |z| z.at(gi));
            // Exact in f64, so the one rounding to f32 matches an f32 kernel's result.
            emit(r * cols + c, ((code - z) * s) as f32);
        }
    }
    Ok(())
}

fn walk_sparse(s: &SparseSpec, p: &Parts, rows: usize, cols: usize, emit: Emit) -> Result<()> {
    let (r, c, m) = match s.layout {
        SparseLayout::Csr => (1, 1, 0),
        SparseLayout::Bsr { r, c } => (r, c, 0),
        SparseLayout::NM { m, .. } => (1, m, m),
    };
    if !rows.is_multiple_of(r) || !cols.is_multiple_of(c) {
        let label = WeightFormat::Sparse(*s).label();
        return Err(p.err(format!(
            "[{rows}, {cols}] does not tile into {label} blocks/groups"
        )));
    }
    let (vdtype, row_scales) = match s.values {
        SparseValues::F32 => (DType::F32, None),
        SparseValues::F16 => (DType::F16, None),
        SparseValues::I8 => (DType::I8, Some(p.get("scales", DType::F32, &[rows])?)),
    };
    let value = |vals: Elems, k: usize, row: usize| {
        (vals.at(k) * row_scales.map_or(1.0, |sc| sc.at(row))) as f32
    };
    let indices = p.full("indices");
    if let SparseLayout::NM { n, .. } = s.layout {
        let kept = cols / m * n;
        let idx = p.get("indices", DType::U8, &[rows, kept])?;
        let vals = p.get("values", vdtype, &[rows, kept])?;
        for k in 0..rows * kept {
            let (row, slot) = (k / kept, k % kept);
            let (pos, g) = (idx.at(k) as usize, slot / n);
            if pos >= m || (slot % n > 0 && pos <= idx.at(k - 1) as usize) {
                return Err(p.err(format!(
                    "part '{indices}' has position {pos} in row {row}, group {g}: positions \
                     must be < m = {m} and increase within a group"
                )));
            }
            emit(row * cols + g * m + pos, value(vals, k, row));
        }
        return Ok(());
    }
    let (brows, bcols) = (rows / r, cols / c);
    let ptr = p.get("indptr", DType::I32, &[brows + 1])?;
    let full = p.full("indptr");
    if ptr.at(0) != 0.0 {
        return Err(p.err(format!("part '{full}' starts at {}, not 0", ptr.at(0))));
    }
    if let Some(i) = (0..brows).find(|&i| ptr.at(i + 1) < ptr.at(i)) {
        let (a, b) = (ptr.at(i), ptr.at(i + 1));
        return Err(p.err(format!("part '{full}' decreases at row {i} ({a} > {b})")));
    }
    let nnz = ptr.at(brows) as usize; // >= 0: starts at 0 and never decreases
    let idx = p.get("indices", DType::I32, &[nnz])?;
    let vshape = if r * c == 1 {
        vec![nnz]
    } else {
        vec![nnz, r, c]
    };
    let vals = p.get("values", vdtype, &vshape)?;
    for br in 0..brows {
        for k in ptr.at(br) as usize..ptr.at(br + 1) as usize {
            let bc = idx.at(k);
            if !(0.0..bcols as f64).contains(&bc)
                || (k > ptr.at(br) as usize && bc <= idx.at(k - 1))
            {
                let what = if c == 1 { "columns" } else { "block columns" };
                return Err(p.err(format!(
                    "part '{indices}' has index {bc} in row {br}: indices must be < {bcols} \
                     {what} and increase within a row"
                )));
            }
            for (i, j) in (0..r).flat_map(|i| (0..c).map(move |j| (i, j))) {
                let (row, col) = (br * r + i, bc as usize * c + j);
                emit(row * cols + col, value(vals, (k * r + i) * c + j, row));
            }
        }
    }
    Ok(())
}

impl WeightFormat {
    /// True for plain storage, where the weight is used as is with no decode step.
    pub fn is_dense(&self) -> bool {
        matches!(self, WeightFormat::Dense)
    }

    /// Short label for plans and `wgedge info`: "dense", "int8", "int4-g32-asym", "pow2-int8",
    /// "int8-f16s" (f16 scales), "csr-f32", "bsr-4x1-i8", "2:4-f16".
    pub fn label(&self) -> String {
        match self {
            WeightFormat::Dense => "dense".into(),
            WeightFormat::Half => "f16".into(),
            WeightFormat::Quant(q) => format!(
                "{}int{}{}{}{}",
                if q.pow2 { "pow2-" } else { "" },
                q.bits,
                if q.group > 0 {
                    format!("-g{}", q.group)
                } else {
                    String::new()
                },
                if q.zero_points { "-asym" } else { "" },
                if !q.pow2 && q.scale_dtype == DType::F16 {
                    "-f16s"
                } else {
                    ""
                },
            ),
            WeightFormat::Sparse(s) => {
                let v = match s.values {
                    SparseValues::F32 => "f32",
                    SparseValues::F16 => "f16",
                    SparseValues::I8 => "i8",
                };
                match s.layout {
                    SparseLayout::Csr => format!("csr-{v}"),
                    SparseLayout::Bsr { r, c } => format!("bsr-{r}x{c}-{v}"),
                    SparseLayout::NM { n, m } => format!("{n}:{m}-{v}"),
                }
            }
        }
    }

    /// The stored tensor names for weight `name` (for Dense just `name`), so loaders and
    /// writers know which file tensors belong to the weight.
    pub fn part_names(&self, name: &str) -> Vec<String> {
        let parts: &[&str] = match self {
            WeightFormat::Dense => return vec![name.to_string()],
            WeightFormat::Half => &["half"],
            WeightFormat::Quant(q) => match (q.pow2, q.zero_points) {
                (false, false) => &["qweight", "scales"],
                (false, true) => &["qweight", "scales", "zeros"],
                (true, false) => &["qweight", "shifts"],
                (true, true) => &["qweight", "shifts", "zeros"],
            },
            WeightFormat::Sparse(s) => match (s.layout, s.values) {
                (SparseLayout::NM { .. }, SparseValues::I8) => &["values", "indices", "scales"],
                (SparseLayout::NM { .. }, _) => &["values", "indices"],
                (_, SparseValues::I8) => &["indptr", "indices", "values", "scales"],
                _ => &["indptr", "indices", "values"],
            },
        };
        parts.iter().map(|p| format!("{name}.{p}")).collect()
    }

    /// Checks the stored parts of weight `name` with logical `shape`: every part present with
    /// the right dtype and shape, scales finite, indices in range and increasing, indptr
    /// monotone. Run at load so a corrupt file fails with a message rather than garbage
    /// results or a panic; tensors in `parts` that are not this weight's are ignored.
    pub fn validate(&self, name: &str, shape: &[usize], parts: &WeightParts) -> Result<()> {
        self.walk(&Parts { name, map: parts }, shape, &mut |_, _| {})
    }

    /// Validates, passing every decoded element of a non-dense format to `emit`.
    fn walk(&self, p: &Parts, shape: &[usize], emit: Emit) -> Result<()> {
        match self {
            WeightFormat::Dense => match p.map.get(p.name) {
                None => Err(p.err("tensor is missing")),
                Some(t) if t.shape() != shape => Err(p.err(format!(
                    "stored shape {} differs from the graph's {}",
                    fmt_shape(t.shape()),
                    fmt_shape(shape)
                ))),
                Some(_) => Ok(()),
            },
            WeightFormat::Half => {
                matrix_dims(shape)?;
                let h = p.get("half", DType::F16, shape)?;
                (0..numel_of(shape)).for_each(|i| emit(i, h.at(i) as f32));
                Ok(())
            }
            WeightFormat::Quant(q) => {
                q.check()?;
                let (rows, cols) = matrix_dims(shape)?;
                walk_quant(q, p, rows, cols, emit)
            }
            WeightFormat::Sparse(s) => {
                s.check()?;
                let (rows, cols) = matrix_dims(shape)?;
                walk_sparse(s, p, rows, cols, emit)
            }
        }
    }

    /// Decodes to a dense f32 tensor of `shape` (after validating): the CPU reference that GPU
    /// kernels reading the compressed parts directly are tested against. Dense: the stored
    /// tensor converted to f32.
    pub fn decode(&self, name: &str, shape: &[usize], parts: &WeightParts) -> Result<Tensor> {
        self.validate(name, shape, parts)?;
        if let (WeightFormat::Dense, Some(t)) = (self, parts.get(name)) {
            return Ok(t.to_f32());
        }
        let (rows, cols) = matrix_dims(shape)?;
        let mut out = vec![0f32; rows * cols];
        let p = Parts { name, map: parts };
        self.walk(&p, shape, &mut |i, v| {
            if let Some(o) = out.get_mut(i) {
                *o = v;
            }
        })?;
        Tensor::new(shape, out)
    }

    /// Bytes the weight's stored parts take (missing parts count 0): what compression is
    /// judged by.
    pub fn stored_bytes(&self, name: &str, parts: &WeightParts) -> usize {
        let part_bytes = |n: &String| parts.get(n).map_or(0, |t| t.bytes().len());
        self.part_names(name).iter().map(part_bytes).sum()
    }

    /// Encodes dense weight `w` into this format's parts, keyed by full part name
    /// (`{name}.{part}`; Dense: `name` -> `w` unchanged). Non-dense formats need finite `w`.
    ///
    /// Quant: round-to-nearest. Symmetric scales are `max|x| / qmax` (qmax 127 or 7, codes
    /// kept in -qmax..qmax); asymmetric ones map `[min(x,0), max(x,0)]` onto 0..255 or 0..15
    /// with a rounded zero point. Stored scales are rounded *up* to f32/f16, so no code clips
    /// and every element is within half a stored scale. An all-zero group gets scale 1 (shift
    /// 0). pow2: the largest shift `n` in -127..127 with `range * 2^n <= qmax`, per group.
    ///
    /// Sparse: CSR/BSR keep exactly the nonzero entries (BSR: every block holding one; `-0.0`
    /// counts as zero). N:M needs `w` to fit the pattern already (see [`prune_nm`]); unused
    /// slots hold 0 at the lowest free positions. I8 values use a per-row absmax scale.
    pub fn encode(&self, name: &str, w: &Tensor) -> Result<WeightParts> {
        let (rows, cols) = match self {
            WeightFormat::Dense => return Ok(BTreeMap::from([(name.to_string(), w.clone())])),
            _ => matrix_dims(w.shape())?,
        };
        let w = w.to_f32();
        let x = w.f32s(name)?;
        if let Some(v) = x.iter().find(|v| !v.is_finite()) {
            return Err(unsupported(format!(
                "encoding the weight value {v} as {}",
                self.label()
            )));
        }
        let parts = match self {
            WeightFormat::Half => vec![encode_half(x, w.shape())?],
            WeightFormat::Quant(q) => encode_quant(q, x, rows, cols)?,
            WeightFormat::Sparse(s) => encode_sparse(s, x, rows, cols)?,
            WeightFormat::Dense => Vec::new(),
        };
        Ok(parts
            .into_iter()
            .map(|(p, t)| (format!("{name}.{p}"), t))
            .collect())
    }
}

/// Smallest f32 >= `s` (s > 0): a scale rounded up never makes a code overflow its range.
fn f32_up(s: f64) -> f32 {
    let f = s as f32;
    if f64::from(f) < s {
        f32::from_bits(f.to_bits() + 1)
    } else {
        f
    }
}

/// Smallest f16 >= `s`, or Unsupported when that is beyond the f16 range.
fn f16_up(s: f64) -> Result<f16> {
    let h = f16::from_f64(s);
    let h = if h.to_f64() < s {
        f16::from_bits(h.to_bits() + 1)
    } else {
        h
    };
    h.is_finite()
        .then_some(h)
        .ok_or_else(|| unsupported(format!("f16 scale {s}")))
}

type Encoded = Vec<(&'static str, Tensor)>;

fn numel_of(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Round-to-nearest f16; a value beyond the f16 range is an error, not an infinity.
fn encode_half(x: &[f32], shape: &[usize]) -> Result<(&'static str, Tensor)> {
    let h: Vec<f16> = x.iter().map(|&v| f16::from_f32(v)).collect();
    if let Some(i) = h.iter().position(|v| !v.is_finite()) {
        return Err(unsupported(format!(
            "encoding the weight value {} (element {i}) as f16: beyond the f16 range",
            x[i]
        )));
    }
    part("half", shape, TensorData::F16(h))
}

fn part(name: &'static str, shape: &[usize], data: TensorData) -> Result<(&'static str, Tensor)> {
    Ok((name, Tensor::from_data(shape, data)?))
}

fn encode_quant(q: &QuantSpec, x: &[f32], rows: usize, cols: usize) -> Result<Encoded> {
    q.check()?;
    let ng = q.ngroups(cols);
    let gsize = if q.group == 0 { cols.max(1) } else { q.group };
    let ((qlo, qhi), gshape) = (q.code_range(), [rows, ng]);
    let denom = f64::from(qhi);
    let (mut codes, mut zeros, mut shifts) = (vec![0i32; rows * cols], vec![], vec![]);
    let (mut s32, mut s16) = (vec![], vec![]);
    for (r, g) in (0..rows).flat_map(|r| (0..ng).map(move |g| (r, g))) {
        let (c0, c1) = (r * cols + g * gsize, r * cols + ((g + 1) * gsize).min(cols));
        let xs = &x[c0..c1];
        let lo = xs.iter().fold(0f64, |a, &v| a.min(v.into()));
        let hi = xs.iter().fold(0f64, |a, &v| a.max(v.into()));
        let span = if q.zero_points { hi - lo } else { hi.max(-lo) };
        let scale = if q.pow2 {
            let guess = (denom / span).log2().floor().clamp(-127.0, 127.0);
            let mut n = if span > 0.0 { guess as i32 } else { 0 };
            while n > -127 && span * 2f64.powi(n) > denom {
                n -= 1;
            }
            while span > 0.0 && n < 127 && span * 2f64.powi(n + 1) <= denom {
                n += 1;
            }
            shifts.push(n as i8);
            2f64.powi(-n)
        } else {
            let s = if span > 0.0 { span / denom } else { 1.0 };
            if q.scale_dtype == DType::F16 {
                s16.push(f16_up(s)?);
                s16[s16.len() - 1].to_f64()
            } else {
                s32.push(f32_up(s));
                s32[s32.len() - 1].into()
            }
        };
        let z = if q.zero_points {
            (-lo / scale).round().clamp(0.0, denom) as i32
        } else {
            0
        };
        zeros.push(z as u8);
        for (code, &v) in codes[c0..c1].iter_mut().zip(xs) {
            *code = ((f64::from(v) / scale).round() as i32 + z).clamp(qlo, qhi);
        }
    }
    let qcols = if q.bits == 4 { cols.div_ceil(2) } else { cols };
    let qweight = match (q.bits, q.zero_points) {
        (8, false) => TensorData::I8(codes.iter().map(|&c| c as i8).collect()),
        (8, true) => TensorData::U8(codes.iter().map(|&c| c as u8).collect()),
        _ => {
            let mut packed = vec![0u8; rows * qcols];
            for (i, &code) in codes.iter().enumerate() {
                let (r, c) = (i / cols, i % cols);
                packed[r * qcols + c / 2] |= ((code as u8) & 0xF) << (4 * (c % 2));
            }
            TensorData::U8(packed)
        }
    };
    let mut out = vec![part("qweight", &[rows, qcols], qweight)?];
    out.push(match (q.pow2, q.scale_dtype) {
        (true, _) => part("shifts", &gshape, TensorData::I8(shifts))?,
        (false, DType::F16) => part("scales", &gshape, TensorData::F16(s16))?,
        (false, _) => part("scales", &gshape, TensorData::F32(s32))?,
    });
    if q.zero_points {
        out.push(part("zeros", &gshape, TensorData::U8(zeros))?);
    }
    Ok(out)
}

fn encode_sparse(s: &SparseSpec, x: &[f32], rows: usize, cols: usize) -> Result<Encoded> {
    s.check()?;
    let (r, c) = match s.layout {
        SparseLayout::Csr => (1, 1),
        SparseLayout::Bsr { r, c } => (r, c),
        SparseLayout::NM { m, .. } => (1, m),
    };
    if !rows.is_multiple_of(r) || !cols.is_multiple_of(c) {
        let label = WeightFormat::Sparse(*s).label();
        return Err(unsupported(format!(
            "{label} on a [{rows}, {cols}] weight (does not tile)"
        )));
    }
    // Kept entries as (row, value) in storage order, plus the layout's index parts.
    let (mut kept, mut out): (Vec<(usize, f32)>, Encoded) = (vec![], vec![]);
    let vshape = if let SparseLayout::NM { n, m } = s.layout {
        let mut indices = Vec::with_capacity(rows * cols / m * n);
        for (row, g) in (0..rows).flat_map(|row| (0..cols / m).map(move |g| (row, g))) {
            let group = &x[row * cols + g * m..][..m];
            let nonzero = group.iter().filter(|&&v| v != 0.0).count();
            if nonzero > n {
                return Err(unsupported(format!(
                    "{n}:{m} sparsity: row {row}, group {g} has {nonzero} nonzeros (prune first)"
                )));
            }
            // All nonzeros plus the lowest zero positions, in increasing position order.
            let mut fill = n - nonzero;
            for (pos, &v) in group.iter().enumerate() {
                if v != 0.0 || fill > 0 {
                    fill -= usize::from(v == 0.0);
                    indices.push(pos as u8);
                    kept.push((row, v));
                }
            }
        }
        let shape = vec![rows, cols / m * n];
        out.push(part("indices", &shape, TensorData::U8(indices))?);
        shape
    } else {
        let (mut indptr, mut indices) = (vec![0i32], vec![]);
        for br in 0..rows / r {
            for bc in 0..cols / c {
                let at = |i: usize, j: usize| (br * r + i, x[(br * r + i) * cols + bc * c + j]);
                if (0..r).any(|i| (0..c).any(|j| at(i, j).1 != 0.0)) {
                    indices.push(bc as i32);
                    kept.extend((0..r).flat_map(|i| (0..c).map(move |j| at(i, j))));
                }
            }
            indptr.push(i32::try_from(indices.len()).map_err(|_| unsupported("2^31 blocks"))?);
        }
        let nnz = indices.len();
        out.push(part("indptr", &[rows / r + 1], TensorData::I32(indptr))?);
        out.push(part("indices", &[nnz], TensorData::I32(indices))?);
        if r * c == 1 {
            vec![nnz]
        } else {
            vec![nnz, r, c]
        }
    };
    let values = match s.values {
        SparseValues::F32 => TensorData::F32(kept.iter().map(|e| e.1).collect()),
        SparseValues::F16 => TensorData::F16(kept.iter().map(|e| f16::from_f32(e.1)).collect()),
        SparseValues::I8 => {
            let amax = |r: usize| {
                x[r * cols..][..cols]
                    .iter()
                    .fold(0f32, |a, v| a.max(v.abs()))
            };
            let scale = |a: f32| f32_up(f64::from(a) / 127.0).max(f32::from(a == 0.0));
            // All-zero rows get scale 1 (any scale decodes them exactly).
            let scales: Vec<f32> = (0..rows).map(|r| scale(amax(r))).collect();
            let q = |&(r, v): &(usize, f32)| (f64::from(v) / f64::from(scales[r])).round() as i8;
            let codes = kept.iter().map(q).collect();
            out.push(part("scales", &[rows], TensorData::F32(scales))?);
            TensorData::I8(codes)
        }
    };
    out.push(("values", Tensor::from_data(&vshape, values)?));
    Ok(out)
}

/// Zeroes all but the `n` largest-magnitude entries in every group of `m` consecutive columns
/// (ties keep the lower column), so a dense weight fits `n:m` sparsity: a plain magnitude
/// pruner for tests and tools, not a training-aware one.
pub fn prune_nm(w: &Tensor, n: usize, m: usize) -> Result<Tensor> {
    let spec = SparseSpec {
        layout: SparseLayout::NM { n, m },
        values: SparseValues::F32,
    };
    spec.check()?;
    let (_, cols) = matrix_dims(w.shape())?;
    if !cols.is_multiple_of(m) {
        return Err(unsupported(format!("{n}:{m} pruning of {cols} columns")));
    }
    let mut x = w.to_f32().into_f32s("prune_nm")?;
    for group in x.chunks_mut(m) {
        let mut order: Vec<usize> = (0..m).collect();
        order.sort_by(|&a, &b| group[b].abs().total_cmp(&group[a].abs()));
        for &i in &order[n..] {
            group[i] = 0.0;
        }
    }
    Tensor::new(w.shape(), x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quant(bits: u8, group: usize, zero_points: bool, pow2: bool, f16: bool) -> WeightFormat {
        let scale_dtype = if f16 { DType::F16 } else { DType::F32 };
        WeightFormat::Quant(QuantSpec {
            bits,
            group,
            zero_points,
            pow2,
            scale_dtype,
        })
    }

    #[test]
    fn symmetric_int8_code_minus_128_is_corrupt() {
        let f = quant(8, 0, false, false, false);
        let w = Tensor::random(&[3, 5], 1);
        let mut parts = f.encode("w", &w).unwrap();
        assert!(f.validate("w", &[3, 5], &parts).is_ok());
        let mut codes = match parts["w.qweight"].data() {
            TensorData::I8(v) => v.clone(),
            _ => unreachable!(),
        };
        codes[7] = -128;
        let t = Tensor::from_data(&[3, 5], TensorData::I8(codes)).unwrap();
        parts.insert("w.qweight".into(), t);
        let e = f.validate("w", &[3, 5], &parts).unwrap_err().to_string();
        assert!(e.contains("-128") && e.contains("row 1, column 2"), "{e}");
        // Asymmetric codes use the whole byte.
        let a = quant(8, 0, true, false, false);
        let parts = a.encode("w", &w).unwrap();
        assert!(a.validate("w", &[3, 5], &parts).is_ok());
    }

    fn sparse(layout: SparseLayout, values: SparseValues) -> WeightFormat {
        WeightFormat::Sparse(SparseSpec { layout, values })
    }

    fn f32s(t: &Tensor) -> Vec<f32> {
        t.to_f32().into_f32s("test").unwrap()
    }

    fn u8t(shape: &[usize], v: Vec<u8>) -> Tensor {
        Tensor::from_data(shape, TensorData::U8(v)).unwrap()
    }

    fn i32t(shape: &[usize], v: Vec<i32>) -> Tensor {
        Tensor::from_data(shape, TensorData::I32(v)).unwrap()
    }

    /// Encode -> decode of random data: every element within half its stored scale, and each
    /// scale tight for its group (else a huge scale would pass the error check vacuously).
    fn quant_round_trip(fmt: &WeightFormat, shape: &[usize], seed: u64) {
        let WeightFormat::Quant(q) = fmt else {
            panic!("not quant")
        };
        let w = Tensor::random(shape, seed);
        let parts = fmt.encode("w", &w).unwrap();
        let (x, d) = (f32s(&w), f32s(&fmt.decode("w", shape, &parts).unwrap()));
        let (rows, cols) = matrix_dims(shape).unwrap();
        let (ng, gsize) = (q.ngroups(cols), if q.group == 0 { cols } else { q.group });
        let steps: Vec<f32> = match q.pow2 {
            true => f32s(&parts["w.shifts"])
                .iter()
                .map(|n| 2f32.powf(-n))
                .collect(),
            false => f32s(&parts["w.scales"]),
        };
        // How far above the ideal `span / qmax` a stored scale may be: pow2 rounds up to a
        // power of two, f16 up by at most 2^-10, f32 by an ulp.
        let slack = match (q.pow2, q.scale_dtype) {
            (true, _) => 2.0,
            (false, DType::F16) => 1.001,
            _ => 1.000001,
        };
        for (r, g) in (0..rows).flat_map(|r| (0..ng).map(move |g| (r, g))) {
            let (c0, c1) = (r * cols + g * gsize, r * cols + ((g + 1) * gsize).min(cols));
            let lo = x[c0..c1].iter().fold(0f32, |a, &v| a.min(v));
            let hi = x[c0..c1].iter().fold(0f32, |a, &v| a.max(v));
            let span = if q.zero_points { hi - lo } else { hi.max(-lo) };
            let step = steps[r * ng + g];
            let ctx = format!("{} {shape:?} row {r} group {g}", fmt.label());
            assert!(
                step <= span / q.code_range().1 as f32 * slack,
                "{ctx}: scale {step}"
            );
            for i in c0..c1 {
                let (a, b) = (x[i], d[i]);
                assert!(
                    (a - b).abs() <= step / 2.0 * 1.000001,
                    "{ctx}: {a} -> {b}, {step}"
                );
            }
        }
        assert!(
            fmt.stored_bytes("w", &parts) < x.len() * 4 / 3,
            "{}",
            fmt.label()
        );
    }

    #[test]
    fn quant_round_trips_within_half_a_scale() {
        let formats = [
            quant(8, 0, false, false, false),
            quant(8, 0, true, false, false),
            quant(8, 32, true, false, true),
            quant(4, 32, false, false, false),
            quant(4, 32, true, false, false),
            quant(4, 0, true, false, true),
            quant(4, 16, false, false, true),
            quant(8, 0, false, true, false),
            quant(4, 32, false, true, false),
            quant(4, 16, true, true, false),
        ];
        for (i, fmt) in formats.iter().enumerate() {
            // cols 70: a short last group of 32; 33 and 27 (conv OIHW): odd nibble tails.
            for (j, shape) in [&[5, 70][..], &[3, 33], &[4, 3, 3, 3]].iter().enumerate() {
                quant_round_trip(fmt, shape, (10 * i + j) as u64 + 1);
            }
        }
    }

    #[test]
    fn quant_by_hand() {
        // int4 symmetric: max|x| = 3.5 -> scale 0.5; codes 7, -2 (0xE), 1; padding nibble 0.
        let fmt = quant(4, 0, false, false, false);
        let w = Tensor::new(&[1, 3], vec![3.5, -1.0, 0.5]).unwrap();
        let parts = fmt.encode("fc", &w).unwrap();
        assert_eq!(parts["fc.qweight"], u8t(&[1, 2], vec![0xE7, 0x01]));
        assert_eq!(parts["fc.scales"], Tensor::new(&[1, 1], vec![0.5]).unwrap());
        assert_eq!(fmt.decode("fc", &[1, 3], &parts).unwrap(), w);
        // int4 asymmetric: range [-1, 6.5] -> scale 0.5, zero point 2; codes 0, 2, 15.
        let fmt = quant(4, 0, true, false, false);
        let w = Tensor::new(&[1, 3], vec![-1.0, 0.0, 6.5]).unwrap();
        let parts = fmt.encode("fc", &w).unwrap();
        assert_eq!(parts["fc.qweight"], u8t(&[1, 2], vec![0x20, 0x0F]));
        assert_eq!(parts["fc.zeros"], u8t(&[1, 1], vec![2]));
        assert_eq!(parts["fc.scales"], Tensor::new(&[1, 1], vec![0.5]).unwrap());
        assert_eq!(fmt.decode("fc", &[1, 3], &parts).unwrap(), w);
        assert_eq!(fmt.stored_bytes("fc", &parts), 2 + 4 + 1);
        // pow2: max|x| = 0.5, 0.5 * 2^7 = 64 <= 127 < 128 -> shift 7; 0.1 * 128 = 12.8 -> 13.
        let fmt = quant(8, 0, false, true, false);
        let parts = fmt.encode("w", &Tensor::new(&[1, 3], vec![0.5, -0.25, 0.1]).unwrap());
        let parts = parts.unwrap();
        let i8t = |shape: &[usize], v| Tensor::from_data(shape, TensorData::I8(v)).unwrap();
        assert_eq!(parts["w.qweight"], i8t(&[1, 3], vec![64, -32, 13]));
        assert_eq!(parts["w.shifts"], i8t(&[1, 1], vec![7]));
        assert_eq!(
            f32s(&fmt.decode("w", &[1, 3], &parts).unwrap()),
            [0.5, -0.25, 0.1015625]
        );
        // pow2 with one shift for the whole tensor ([1, 1]): 2^-1.
        let parts = BTreeMap::from([
            ("w.qweight".to_string(), i8t(&[2, 2], vec![1, -2, 3, 4])),
            ("w.shifts".to_string(), i8t(&[1, 1], vec![1])),
        ]);
        assert_eq!(
            f32s(&fmt.decode("w", &[2, 2], &parts).unwrap()),
            [0.5, -1.0, 1.5, 2.0]
        );
    }

    #[test]
    fn sparse_by_hand() {
        #[rustfmt::skip]
        let w = Tensor::new(&[3, 4], vec![
            0.0, 1.5, 0.0, -2.0,
            0.0, 0.0, 0.0, 0.0,
            3.0, 0.0, 0.5, 0.0,
        ]).unwrap();
        let fmt = sparse(SparseLayout::Csr, SparseValues::F32);
        let parts = fmt.encode("w", &w).unwrap();
        assert_eq!(parts["w.indptr"], i32t(&[4], vec![0, 2, 2, 4]));
        assert_eq!(parts["w.indices"], i32t(&[4], vec![1, 3, 0, 2]));
        assert_eq!(
            parts["w.values"],
            Tensor::new(&[4], vec![1.5, -2.0, 3.0, 0.5]).unwrap()
        );
        assert_eq!(fmt.decode("w", &[3, 4], &parts).unwrap(), w);
        assert_eq!(fmt.part_names("w"), ["w.indptr", "w.indices", "w.values"]);
        // 2:4 with groups holding 0, 1 and 2 nonzeros: free slots take the lowest positions.
        let w = Tensor::new(
            &[1, 12],
            vec![0., 0., 0., 0., 5., 0., 0., 0., 0., 7., 0., 8.],
        );
        let fmt = sparse(SparseLayout::NM { n: 2, m: 4 }, SparseValues::F32);
        let parts = fmt.encode("w", &w.unwrap()).unwrap();
        assert_eq!(parts["w.indices"], u8t(&[1, 6], vec![0, 1, 0, 1, 1, 3]));
        let values = vec![0.0, 0.0, 5.0, 0.0, 7.0, 8.0];
        assert_eq!(parts["w.values"], Tensor::new(&[1, 6], values).unwrap());
    }

    /// Random [8, 16] with whole 4x4 tiles and scattered entries zero.
    fn sparse_input() -> Tensor {
        let mut x = f32s(&Tensor::random(&[8, 16], 7));
        for (i, v) in x.iter_mut().enumerate() {
            if v.abs() < 0.4 || (i / 64 + i % 16 / 4) % 2 == 0 {
                *v = 0.0;
            }
        }
        Tensor::new(&[8, 16], x).unwrap()
    }

    #[test]
    fn sparse_f32_decodes_bit_exactly() {
        let bits = |t: &Tensor| f32s(t).iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        let w = sparse_input();
        for layout in [
            SparseLayout::Csr,
            SparseLayout::Bsr { r: 4, c: 1 },
            SparseLayout::Bsr { r: 1, c: 4 },
            SparseLayout::Bsr { r: 2, c: 2 },
        ] {
            let fmt = sparse(layout, SparseValues::F32);
            let parts = fmt.encode("w", &w).unwrap();
            let d = fmt.decode("w", &[8, 16], &parts).unwrap();
            assert_eq!(bits(&d), bits(&w), "{}", fmt.label());
            assert!(
                parts["w.values"].numel() <= 64,
                "{} kept zero blocks",
                fmt.label()
            );
        }
        let w = prune_nm(&Tensor::random(&[6, 16], 3), 2, 4).unwrap();
        let fmt = sparse(SparseLayout::NM { n: 2, m: 4 }, SparseValues::F32);
        let parts = fmt.encode("w", &w).unwrap();
        assert_eq!(bits(&fmt.decode("w", &[6, 16], &parts).unwrap()), bits(&w));
        let fmt = sparse(SparseLayout::NM { n: 2, m: 4 }, SparseValues::F16);
        let d = fmt
            .encode("w", &w)
            .and_then(|p| fmt.decode("w", &[6, 16], &p))
            .unwrap();
        let want: Vec<f32> = f32s(&w)
            .iter()
            .map(|&v| f16::from_f32(v).to_f32())
            .collect();
        assert_eq!(f32s(&d), want);
    }

    #[test]
    fn prune_nm_keeps_the_largest() {
        let w = Tensor::new(&[2, 4], vec![0.1, -0.9, 0.5, 0.2, 3.0, 1.0, -1.0, 0.0]).unwrap();
        let want = [0.0, -0.9, 0.5, 0.0, 3.0, 1.0, 0.0, 0.0]; // ties keep the lower column
        assert_eq!(f32s(&prune_nm(&w, 2, 4).unwrap()), want);
        let fmt = sparse(SparseLayout::NM { n: 2, m: 4 }, SparseValues::F32);
        match fmt.encode("w", &w) {
            Err(Error::Unsupported { what, .. }) => {
                assert!(what.contains("row 0, group 0"), "{what}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sparse_i8_within_half_a_scale() {
        let pruned = prune_nm(&Tensor::random(&[8, 16], 9), 2, 4).unwrap();
        for (fmt, w) in [
            (sparse(SparseLayout::Csr, SparseValues::I8), sparse_input()),
            (
                sparse(SparseLayout::Bsr { r: 2, c: 2 }, SparseValues::I8),
                sparse_input(),
            ),
            (
                sparse(SparseLayout::NM { n: 2, m: 4 }, SparseValues::I8),
                pruned,
            ),
        ] {
            let parts = fmt.encode("w", &w).unwrap();
            let scales = f32s(&parts["w.scales"]);
            let (x, d) = (f32s(&w), f32s(&fmt.decode("w", &[8, 16], &parts).unwrap()));
            for (i, (a, b)) in x.iter().zip(&d).enumerate() {
                let (s, row) = (scales[i / 16], &x[i / 16 * 16..][..16]);
                let amax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
                assert!(
                    s <= amax / 127.0 * 1.000001,
                    "{}: loose scale {s}",
                    fmt.label()
                );
                assert!(
                    (a - b).abs() <= s / 2.0 * 1.000001,
                    "{} [{i}]: {a} -> {b}",
                    fmt.label()
                );
            }
        }
    }

    /// Validate and decode both fail with a ModelFile error mentioning `needle` (the part).
    fn assert_corrupt(fmt: &WeightFormat, shape: &[usize], parts: &WeightParts, needle: &str) {
        for r in [
            fmt.validate("w", shape, parts),
            fmt.decode("w", shape, parts).map(drop),
        ] {
            match r {
                Err(Error::ModelFile(m)) => assert!(m.contains(needle), "{m} lacks {needle}"),
                other => panic!(
                    "{}: no ModelFile error for {needle}: {other:?}",
                    fmt.label()
                ),
            }
        }
    }

    fn with(parts: &WeightParts, key: &str, t: Option<Tensor>) -> WeightParts {
        let mut p = parts.clone();
        match t {
            Some(t) => p.insert(key.to_string(), t),
            None => p.remove(key),
        };
        p
    }

    #[test]
    fn corrupt_quant_parts() {
        let (fmt, shape) = (quant(4, 32, true, false, false), [3, 70]);
        let parts = fmt.encode("w", &Tensor::random(&shape, 5)).unwrap();
        fmt.validate("w", &shape, &parts).unwrap();
        let i8q = Tensor::from_data(&[3, 35], TensorData::I8(vec![0; 105])).unwrap();
        let nan = Tensor::new(&[3, 3], vec![f32::NAN; 9]).unwrap();
        for (key, t, needle) in [
            ("w.scales", None, "part 'w.scales' is missing"),
            ("w.qweight", Some(i8q), "part 'w.qweight' has dtype i8"),
            (
                "w.qweight",
                Some(u8t(&[3, 36], vec![0; 108])),
                "'w.qweight' holds 72 int4 codes",
            ),
            (
                "w.scales",
                Some(Tensor::zeros(&[9, 1])),
                "part 'w.scales' has shape [9, 1]",
            ),
            ("w.scales", Some(nan), "part 'w.scales' holds NaN"),
            (
                "w.zeros",
                Some(u8t(&[3, 3], vec![16; 9])),
                "part 'w.zeros' has zero point > 15",
            ),
        ] {
            assert_corrupt(&fmt, &shape, &with(&parts, key, t), needle);
        }
    }

    #[test]
    fn corrupt_sparse_parts() {
        let (fmt, shape) = (sparse(SparseLayout::Csr, SparseValues::F32), [3, 4]);
        let parts = fmt
            .encode(
                "w",
                &Tensor::new(&shape, vec![0., 1., 0., 2., 0., 0., 0., 0., 3., 0., 4., 0.]).unwrap(),
            )
            .unwrap();
        for (key, t, needle) in [
            (
                "w.indices",
                i32t(&[4], vec![1, 4, 0, 2]),
                "'w.indices' has index 4 in row 0",
            ),
            (
                "w.indices",
                i32t(&[4], vec![1, 3, -1, 2]),
                "'w.indices' has index -1 in row 2",
            ),
            (
                "w.indices",
                i32t(&[4], vec![3, 1, 0, 2]),
                "'w.indices' has index 1 in row 0",
            ),
            (
                "w.indptr",
                i32t(&[4], vec![0, 2, 1, 4]),
                "'w.indptr' decreases at row 1",
            ),
            (
                "w.indptr",
                i32t(&[4], vec![1, 2, 2, 4]),
                "'w.indptr' starts at 1",
            ),
            (
                "w.indptr",
                i32t(&[4], vec![0, 2, 2, 5]),
                "'w.indices' has shape [4], expected [5]",
            ),
        ] {
            assert_corrupt(&fmt, &shape, &with(&parts, key, Some(t)), needle);
        }
        let bsr = sparse(SparseLayout::Bsr { r: 2, c: 2 }, SparseValues::F32);
        assert_corrupt(&bsr, &shape, &parts, "does not tile");

        let (fmt, shape) = (
            sparse(SparseLayout::NM { n: 2, m: 4 }, SparseValues::I8),
            [2, 8],
        );
        let parts = fmt.encode("w", &prune_nm(&Tensor::random(&shape, 2), 2, 4).unwrap());
        let parts = parts.unwrap();
        let mut idx = parts["w.indices"].bytes().to_vec();
        idx[3] = 4;
        let bad = with(&parts, "w.indices", Some(u8t(&[2, 4], idx.clone())));
        assert_corrupt(
            &fmt,
            &shape,
            &bad,
            "'w.indices' has position 4 in row 0, group 1",
        );
        idx[3] = idx[2];
        let bad = with(&parts, "w.indices", Some(u8t(&[2, 4], idx)));
        assert_corrupt(&fmt, &shape, &bad, "'w.indices' has position");
        assert_corrupt(
            &fmt,
            &shape,
            &with(&parts, "w.scales", None),
            "'w.scales' is missing",
        );
    }

    #[test]
    fn unsupported_parameters() {
        let w = Tensor::random(&[4, 8], 1);
        let unsupported = |f: WeightFormat, w: &Tensor| {
            matches!(f.encode("w", w), Err(Error::Unsupported { .. }))
        };
        let mut i32_scales = QuantSpec {
            bits: 8,
            group: 0,
            zero_points: false,
            pow2: false,
            scale_dtype: DType::I32,
        };
        assert!(unsupported(WeightFormat::Quant(i32_scales), &w));
        i32_scales.pow2 = true; // scale_dtype is ignored with pow2
        assert!(WeightFormat::Quant(i32_scales).encode("w", &w).is_ok());
        assert!(unsupported(quant(3, 0, false, false, false), &w));
        assert!(unsupported(
            sparse(SparseLayout::NM { n: 3, m: 2 }, SparseValues::F32),
            &w
        ));
        assert!(unsupported(
            sparse(SparseLayout::NM { n: 1, m: 17 }, SparseValues::F32),
            &w
        ));
        assert!(unsupported(
            sparse(SparseLayout::Bsr { r: 3, c: 1 }, SparseValues::F32),
            &w
        ));
        assert!(unsupported(
            sparse(SparseLayout::Bsr { r: 0, c: 1 }, SparseValues::F32),
            &w
        ));
        assert!(unsupported(
            quant(8, 0, false, false, false),
            &Tensor::new(&[], vec![1.0]).unwrap()
        ));
        let inf = Tensor::new(&[1, 2], vec![1.0, f32::INFINITY]).unwrap();
        assert!(unsupported(
            sparse(SparseLayout::Csr, SparseValues::F32),
            &inf
        ));
        let bad = quant(5, 0, false, false, false).validate("w", &[2, 2], &BTreeMap::new());
        assert!(matches!(bad, Err(Error::Unsupported { .. })));
    }

    #[test]
    fn dense_and_labels() {
        let w = Tensor::random(&[2, 3], 4);
        let fmt = WeightFormat::default();
        let parts = fmt.encode("w", &w).unwrap();
        assert_eq!(fmt.decode("w", &[2, 3], &parts).unwrap(), w);
        assert_eq!(
            (fmt.stored_bytes("w", &parts), fmt.part_names("w")),
            (24, vec!["w".into()])
        );
        assert!(matches!(
            fmt.validate("w", &[3, 2], &parts),
            Err(Error::ModelFile(_))
        ));
        let labels: Vec<String> = [
            fmt,
            quant(8, 0, false, false, false),
            quant(4, 32, true, false, false),
            quant(8, 0, false, true, false),
            quant(8, 0, false, false, true),
            sparse(SparseLayout::Csr, SparseValues::F32),
            sparse(SparseLayout::Bsr { r: 4, c: 1 }, SparseValues::I8),
            sparse(SparseLayout::NM { n: 2, m: 4 }, SparseValues::F16),
        ]
        .iter()
        .map(WeightFormat::label)
        .collect();
        let want = [
            "dense",
            "int8",
            "int4-g32-asym",
            "pow2-int8",
            "int8-f16s",
            "csr-f32",
        ];
        assert_eq!(labels, [&want[..], &["bsr-4x1-i8", "2:4-f16"]].concat());
        let names = quant(4, 0, true, true, false).part_names("w");
        assert_eq!(names, ["w.qweight", "w.shifts", "w.zeros"]);
    }

    #[test]
    fn serde_round_trip() {
        assert_eq!(
            serde_json::to_string(&WeightFormat::Dense).unwrap(),
            r#"{"kind":"dense"}"#
        );
        for fmt in [
            WeightFormat::Dense,
            quant(4, 32, true, false, true),
            quant(8, 0, false, true, false),
            sparse(SparseLayout::Csr, SparseValues::F32),
            sparse(SparseLayout::Bsr { r: 4, c: 1 }, SparseValues::I8),
            sparse(SparseLayout::NM { n: 2, m: 4 }, SparseValues::F16),
        ] {
            let json = serde_json::to_string(&fmt).unwrap();
            assert_eq!(
                serde_json::from_str::<WeightFormat>(&json).unwrap(),
                fmt,
                "{json}"
            );
        }
        let parse = |s: &str| serde_json::from_str::<WeightFormat>(s).ok();
        assert_eq!(
            parse(r#"{"kind":"quant","bits":8}"#),
            Some(quant(8, 0, false, false, false))
        );
        let nm = r#"{"kind":"sparse","layout":"nm","n":2,"m":4}"#;
        assert_eq!(
            parse(nm),
            Some(sparse(SparseLayout::NM { n: 2, m: 4 }, SparseValues::F32))
        );
        assert_eq!(parse(r#"{"kind":"quant"}"#), None);
    }
}
