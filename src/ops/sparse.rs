//! How kernels read sparse weights (CSR, N:M) as stored, never densified on the device: the GPU
//! layout of each part, its upload packing, the shader constant that selects the value decoder
//! (`shaders/sparse/values.wgsl`), and the weight's density the plan passes to kernel choice.
//!
//! GPU layout. Every part goes up as its stored bytes, padded to a whole u32 word:
//! - CSR: `indptr` (i32 `[rows + 1]`) and `indices` (i32 `[nnz]`, columns) as words;
//! - N:M: `indices` (u8 positions in the group, `[rows, cols / m * n]`) four per word, byte
//!   `row * kept + slot`;
//! - `values`: f32 one per word, f16 two per word (low half first), i8 four per word (low byte
//!   first), in storage order;
//! - `scales` (i8 values only): the per-row f32 scales; other value types bind a one-word
//!   stand-in the shader never reads.
//!
//! So the device holds the stored bytes plus at most 3 bytes per part.
//!
//! Texture layout (`Bind::SparseTex`, the `csrtex` and `bsrtex` kernels): parts go up as
//! rgba32uint textures (16 bytes a texel) of one row when they have at most [`TEX_WIDTH`]
//! texels, else rows of [`TEX_WIDTH`] (the last one zero-padded), because on CPU adapters
//! texture loads are vector gathers and storage loads with computed offsets are not, and real
//! GPUs read them through the texture cache.
//! - CSR is re-laid once at upload: each row's entries are cut into groups of 4 (the last one
//!   padded with zero values at column 0), [`SPart::Groups`] (u32 `[rows + 1]`, a storage
//!   buffer) holds each row's first group, [`SPart::GroupCols`] a group's 4 columns per texel,
//!   [`SPart::GroupVals`] its values in the stored type (f32: a texel a group; f16: two groups;
//!   i8: four). At most 3 padding entries a row.
//! - CSR for the staged kernel (`csrstage`, [`SPart::StagePtr`] and siblings, chunk width
//!   `cw` columns): K is cut into chunks of `cw`; each (chunk, row)'s entries are cut into
//!   groups of 8 (the last padded with zero values at local column 0), laid chunk-major
//!   (chunk 0's rows, then chunk 1's, ...). `StagePtr` holds each (chunk, row)'s first group,
//!   `StageCols` a group's 8 columns minus the chunk's first column as u16 (one texel),
//!   `StageVals` its 8 values (two quads: f32 two texels, f16 one, i8 half of one). Padding:
//!   at most 7 entries per (chunk, row).
//! - N:4 (n = 1 or 2) for `nmtex`, re-laid K-major ([`SPart::NmVals`], [`SPart::NmPos`]): the
//!   kept values of each row in quads of 4 (the last zero-padded), quad t of row n at texel
//!   `(t / qpt) * rows + n` (qpt quads a texel: 1 f32, 2 f16, 4 i8), so adjacent rows are
//!   adjacent texels; their positions in the group as 2-bit fields, a byte a quad, 16 bytes a
//!   texel at `(t / 16) * rows + n`.
//! - N:4 (n = 1 or 2, f32 values) for `nmkn`, by texel columns of 4 rows like the dense
//!   `tex` GEMV's weight ([`SPart::NmKnVals`], [`SPart::NmKnPos`]): with `c4` = ceil(rows / 4)
//!   and groups g of 4 columns, slot s of group g of rows 4c .. 4c + 3 is texel
//!   `(g * n + s) * c4 + c` (component o: row 4c + o; rows past the end hold 0), and the 2-bit
//!   positions of rows 4c + o in group g (slot 0 at bit 4o, slot 1 at 4o + 2) are the 16 bits
//!   at bit (g % 2) * 16 of word (g % 8) / 2 of texel `(g / 8) * c4 + c`. Groups are padded to
//!   a multiple of 8 with zero values.
//! - BSR with 4-column blocks goes up as stored: `indices` (block columns) and `values` (row
//!   `i` of block `b` is value quad `b * r + i`) as textures, `indptr` as a storage buffer.

use crate::error::{Error, Result};
use crate::format::{matrix_dims, SparseLayout, SparseValues, WeightFormat, WeightParts};
use crate::tensor::DType;

/// A part of a sparse weight as a kernel binds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SPart {
    /// CSR row pointers (i32 words).
    Indptr,
    /// CSR columns (i32 words) or N:M positions (u8, four per word).
    Indices,
    /// Kept values (f32, f16 pairs or i8 quads per word).
    Values,
    /// Per-row f32 scales of i8 values.
    Scales,
    /// Texture layout of CSR: each row's first group of 4 entries (u32 `[rows + 1]`).
    Groups,
    /// Texture layout of CSR: the 4 columns of each group (one texel a group).
    GroupCols,
    /// Texture layout of CSR: the 4 values of each group, in the stored value type.
    GroupVals,
    /// Staged layout of CSR with chunks of the given width in columns: the first group of 8
    /// entries of each (chunk, row), chunk-major (u32 `[chunks * rows + 1]`).
    StagePtr(u32),
    /// Staged layout: each group's 8 columns as u16 offsets within the chunk (one texel).
    StageCols(u32),
    /// Staged layout: each group's 8 values (two quads), in the stored value type.
    StageVals(u32),
    /// K-major layout of an N:4 weight (`nmtex`): value quad t of row n at texel
    /// `(t / quads per texel) * rows + n`.
    NmVals,
    /// K-major layout of an N:4 weight: each value quad's four 2-bit positions as one byte,
    /// byte t of row n in texel `(t / 16) * rows + n`.
    NmPos,
    /// Texel-column layout of an N:4 weight with f32 values (`nmkn`): slot s of group g of
    /// rows 4c .. 4c + 3 as texel `(g * n + s) * c4 + c` (`c4` = ceil(rows / 4)).
    NmKnVals,
    /// Texel-column layout of an N:4 weight: the 2-bit positions of rows 4c + o in group g
    /// (slot 0 at bit 4o, slot 1 at 4o + 2) as 16 bits at bit (g % 2) * 16 of word
    /// (g % 8) / 2 of texel `(g / 8) * c4 + c`.
    NmKnPos,
}

/// Width in texels of the sparse weight textures (a row of 32 KiB); their height is the part's
/// texels over this, checked against the device's 2-D texture size by the kernels' fit checks.
pub const TEX_WIDTH: usize = 2048;

/// What a sparse kernel needs to know about a weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SLayout {
    pub rows: usize,
    pub cols: usize,
    /// The layout: CSR, BSR or N:M.
    pub layout: SparseLayout,
    /// Value decoder: 0 f32, 1 f16, 2 i8 with row scales (the shader's `VALS`).
    pub vals: u32,
}

impl SLayout {
    /// The layout of a sparse `format` on a weight of `shape`, or why no sparse kernel reads
    /// it directly (the weight is then decoded for a dense kernel, and the plan says so).
    pub fn of(format: &WeightFormat, shape: &[usize]) -> std::result::Result<SLayout, String> {
        let WeightFormat::Sparse(s) = format else {
            return Err(format!("no sparse kernel reads {} weights", format.label()));
        };
        s.check().map_err(|e| e.to_string())?;
        let (rows, cols) = matrix_dims(shape).map_err(|e| e.to_string())?;
        match s.layout {
            SparseLayout::Csr => {}
            SparseLayout::NM { m, .. } if cols.is_multiple_of(m) => {}
            SparseLayout::Bsr { r, c } if rows.is_multiple_of(r) && cols.is_multiple_of(c) => {}
            _ => {
                return Err(format!(
                    "no sparse kernel reads {} weights of shape {shape:?}",
                    format.label()
                ))
            }
        }
        let vals = match s.values {
            SparseValues::F32 => 0,
            SparseValues::F16 => 1,
            SparseValues::I8 => 2,
        };
        Ok(SLayout {
            rows,
            cols,
            layout: s.layout,
            vals,
        })
    }

    /// Quads of values (a CSR group, a BSR block row) per texel of the texture layout's value
    /// stream: 1 (f32), 2 (f16), 4 (i8).
    pub fn quads_per_texel(&self) -> usize {
        1 << self.vals
    }

    /// The texture height a part of `texels` texels needs.
    pub fn tex_height(texels: usize) -> usize {
        texels.div_ceil(TEX_WIDTH).max(1)
    }

    /// Kept slots per row of an N:M weight (`cols / m * n`; 0 for CSR).
    pub fn kept(&self) -> usize {
        match self.layout {
            SparseLayout::NM { n, m } => self.cols / m * n,
            _ => 0,
        }
    }
}

/// Fraction of the weight's entries that are stored (CSR: nnz / (rows * cols), from the last
/// row pointer; N:M: n / m; BSR: stored blocks' entries), or `None` when the weight is not
/// sparse or its parts are missing. The plan computes it for kernel choice.
pub fn density(
    format: &WeightFormat,
    name: &str,
    shape: &[usize],
    parts: &WeightParts,
) -> Option<f32> {
    let WeightFormat::Sparse(s) = format else {
        return None;
    };
    let (rows, cols) = matrix_dims(shape).ok()?;
    let total = (rows * cols) as f64;
    let last_ptr = || -> Option<f64> {
        let t = parts.get(&format!("{name}.indptr"))?;
        if t.dtype() != DType::I32 {
            return None;
        }
        let b = t.bytes();
        let last: [u8; 4] = b.get(b.len().checked_sub(4)?..)?.try_into().ok()?;
        Some(i32::from_le_bytes(last) as f64)
    };
    let d = match s.layout {
        SparseLayout::NM { n, m } => n as f64 / m as f64,
        SparseLayout::Csr => last_ptr()? / total,
        SparseLayout::Bsr { r, c } => last_ptr()? * (r * c) as f64 / total,
    };
    Some(d as f32)
}

/// The u32 words of one part of sparse weight `name` as kernels read it (see the module
/// docs). The parts were validated at load; a missing or mis-typed one is still an error.
pub fn pack_part(
    part: SPart,
    format: &WeightFormat,
    name: &str,
    shape: &[usize],
    parts: &WeightParts,
) -> Result<Vec<u32>> {
    let bad = |what: String| Error::ModelFile(format!("weight '{name}': {what}"));
    let lay = SLayout::of(format, shape).map_err(bad)?;
    let get = |p: &str, dtypes: &[DType]| {
        let t = parts
            .get(&format!("{name}.{p}"))
            .ok_or_else(|| bad(format!("part '{name}.{p}' is missing")))?;
        if !dtypes.contains(&t.dtype()) {
            return Err(bad(format!("part '{name}.{p}' has dtype {}", t.dtype())));
        }
        Ok(t)
    };
    let words_of = |bytes: &[u8]| -> Vec<u32> {
        let mut b = bytes.to_vec();
        b.resize(b.len().div_ceil(4).max(1) * 4, 0);
        bytemuck::pod_collect_to_vec(&b)
    };
    let csr = lay.layout == SparseLayout::Csr;
    let nm = matches!(lay.layout, SparseLayout::NM { .. });
    if let SPart::StagePtr(cw) | SPart::StageCols(cw) | SPart::StageVals(cw) = part {
        if !csr || !(4..=65536).contains(&cw) || cw % 4 != 0 {
            return Err(bad(format!(
                "{part:?} is a part of CSR's staged layout, chunks of 4 to 65536 columns"
            )));
        }
        let ptr: Vec<i32> = bytemuck::pod_collect_to_vec(get("indptr", &[DType::I32])?.bytes());
        let idx: Vec<i32> = bytemuck::pod_collect_to_vec(get("indices", &[DType::I32])?.bytes());
        let dt = [DType::F32, DType::F16, DType::I8][lay.vals as usize];
        let vals = get("values", &[dt])?;
        return Ok(csr_stage(
            part,
            cw as usize,
            lay.cols,
            &ptr,
            &idx,
            vals.bytes(),
            lay.vals,
        ));
    }
    if let SPart::NmVals | SPart::NmPos = part {
        let SparseLayout::NM { n: 1 | 2, m: 4 } = lay.layout else {
            return Err(bad(format!(
                "{part:?} is a part of the 1:4 / 2:4 texture layout only"
            )));
        };
        let kept = lay.kept();
        let idx = get("indices", &[DType::U8])?.bytes();
        let dt = [DType::F32, DType::F16, DType::I8][lay.vals as usize];
        let vals = get("values", &[dt])?.bytes();
        return Ok(nm_kmajor(part, lay.rows, kept, idx, vals, lay.vals));
    }
    if let SPart::NmKnVals | SPart::NmKnPos = part {
        let SparseLayout::NM {
            n: n @ (1 | 2),
            m: 4,
        } = lay.layout
        else {
            return Err(bad(format!(
                "{part:?} is a part of the 1:4 / 2:4 texel-column layout only"
            )));
        };
        if lay.vals != 0 {
            return Err(bad(format!("{part:?} holds f32 values only")));
        }
        let idx = get("indices", &[DType::U8])?.bytes();
        let vals: Vec<u32> = bytemuck::pod_collect_to_vec(get("values", &[DType::F32])?.bytes());
        return Ok(nm_kn(part, lay.rows, lay.cols / 4, n, idx, &vals));
    }
    if matches!(part, SPart::Groups | SPart::GroupCols | SPart::GroupVals) {
        if !csr {
            return Err(bad(format!(
                "{part:?} is a part of CSR's texture layout only"
            )));
        }
        let ptr: Vec<i32> = bytemuck::pod_collect_to_vec(get("indptr", &[DType::I32])?.bytes());
        let idx: Vec<i32> = bytemuck::pod_collect_to_vec(get("indices", &[DType::I32])?.bytes());
        let dt = [DType::F32, DType::F16, DType::I8][lay.vals as usize];
        let vals = get("values", &[dt])?;
        return Ok(csr_groups(part, &ptr, &idx, vals.bytes(), lay.vals));
    }
    Ok(match part {
        SPart::Indptr if !nm => words_of(get("indptr", &[DType::I32])?.bytes()),
        SPart::Indices if !nm => words_of(get("indices", &[DType::I32])?.bytes()),
        SPart::Indices => words_of(get("indices", &[DType::U8])?.bytes()),
        SPart::Values => {
            let dt = [DType::F32, DType::F16, DType::I8][lay.vals as usize];
            words_of(get("values", &[dt])?.bytes())
        }
        SPart::Scales if lay.vals == 2 => words_of(get("scales", &[DType::F32])?.bytes()),
        // Formats without the part bind a one-word stand-in the shader never reads.
        _ => vec![0],
    })
}

/// CSR's texture layout (module docs): rows cut into groups of 4 entries, the last padded
/// with zeros at column 0. `vals` is 0 f32, 1 f16, 2 i8 (bytes per value 4, 2, 1). The parts
/// were validated at load (pointers increase, columns in range).
fn csr_groups(part: SPart, ptr: &[i32], idx: &[i32], vals: &[u8], vals_kind: u32) -> Vec<u32> {
    let vb = [4usize, 2, 1][vals_kind as usize];
    let rows = ptr.len().saturating_sub(1);
    let mut groups = Vec::with_capacity(rows + 1);
    groups.push(0u32);
    let (mut cols, mut bytes) = (Vec::new(), Vec::new());
    for r in 0..rows {
        let (a, b) = (ptr[r].max(0) as usize, ptr[r + 1].max(0) as usize);
        let n = b.saturating_sub(a);
        let padded = n.div_ceil(4) * 4;
        if part == SPart::GroupCols {
            cols.extend(idx[a..b].iter().map(|&c| c as u32));
            cols.resize(cols.len() + padded - n, 0);
        } else if part == SPart::GroupVals {
            bytes.extend_from_slice(&vals[a * vb..b * vb]);
            bytes.resize(bytes.len() + (padded - n) * vb, 0);
        }
        groups.push(groups[r] + (padded / 4) as u32);
    }
    match part {
        SPart::Groups => groups,
        SPart::GroupCols => {
            cols.resize(cols.len().max(4), 0);
            cols
        }
        _ => {
            bytes.resize(bytes.len().div_ceil(16).max(1) * 16, 0);
            bytemuck::pod_collect_to_vec(&bytes)
        }
    }
}

/// CSR's staged layout (module docs): per chunk of `cw` columns, each row's entries in that
/// chunk cut into groups of 8, chunk-major. The parts were validated at load (pointers
/// increase, columns in range, columns of a row ascending), so a row's entries of one chunk
/// are contiguous; they are found by walking each row once.
fn csr_stage(
    part: SPart,
    cw: usize,
    cols: usize,
    ptr: &[i32],
    idx: &[i32],
    vals: &[u8],
    vals_kind: u32,
) -> Vec<u32> {
    let vb = [4usize, 2, 1][vals_kind as usize];
    let rows = ptr.len().saturating_sub(1);
    let chunks = cols.div_ceil(cw).max(1);
    // Entry range of each (chunk, row), chunk-major.
    let mut ranges = vec![(0usize, 0usize); chunks * rows];
    for r in 0..rows {
        let (a, b) = (ptr[r].max(0) as usize, ptr[r + 1].max(0) as usize);
        let mut j = a;
        for ch in 0..chunks {
            let start = j;
            while j < b && (idx[j].max(0) as usize) < (ch + 1) * cw {
                j += 1;
            }
            ranges[ch * rows + r] = (start, j);
        }
    }
    let mut groups = Vec::with_capacity(ranges.len() + 1);
    groups.push(0u32);
    let (mut halves, mut bytes) = (Vec::<u16>::new(), Vec::<u8>::new());
    for (i, &(a, b)) in ranges.iter().enumerate() {
        let n = b - a;
        let padded = n.div_ceil(8) * 8;
        if part == SPart::StageCols(cw as u32) {
            let base = i / rows * cw;
            halves.extend(idx[a..b].iter().map(|&c| (c.max(0) as usize - base) as u16));
            halves.resize(halves.len() + padded - n, 0);
        } else if part == SPart::StageVals(cw as u32) {
            bytes.extend_from_slice(&vals[a * vb..b * vb]);
            bytes.resize(bytes.len() + (padded - n) * vb, 0);
        }
        groups.push(groups[i] + (padded / 8) as u32);
    }
    match part {
        SPart::StagePtr(_) => groups,
        SPart::StageCols(_) => {
            halves.resize(halves.len().max(8), 0);
            halves
                .chunks(2)
                .map(|h| h[0] as u32 | (h.get(1).copied().unwrap_or(0) as u32) << 16)
                .collect()
        }
        _ => {
            bytes.resize(bytes.len().div_ceil(16).max(1) * 16, 0);
            bytemuck::pod_collect_to_vec(&bytes)
        }
    }
}

/// The K-major N:4 layout (module docs) of `rows` rows of `kept` slots: positions `idx` (u8,
/// `[rows, kept]`) and values in their stored type (`vals_kind` 0 f32, 1 f16, 2 i8).
fn nm_kmajor(
    part: SPart,
    rows: usize,
    kept: usize,
    idx: &[u8],
    vals: &[u8],
    kind: u32,
) -> Vec<u32> {
    let quads = kept.div_ceil(4).max(1);
    if part == SPart::NmPos {
        // Byte t of row n at byte (t / 16 * rows + n) * 16 + t % 16.
        let texels = quads.div_ceil(16) * rows;
        let mut b = vec![0u8; texels.max(1) * 16];
        for n in 0..rows {
            for (s, &pos) in idx[n * kept..(n + 1) * kept].iter().enumerate() {
                let t = s / 4;
                b[(t / 16 * rows + n) * 16 + t % 16] |= (pos & 3) << ((s % 4) * 2);
            }
        }
        return bytemuck::pod_collect_to_vec(&b);
    }
    let vb = [4usize, 2, 1][kind as usize];
    let qpt = 1usize << kind;
    let qb = 4 * vb; // bytes per quad
    let texels = quads.div_ceil(qpt) * rows;
    let mut b = vec![0u8; texels.max(1) * 16];
    for n in 0..rows {
        let row = &vals[n * kept * vb..(n + 1) * kept * vb];
        for (t, q) in row.chunks(qb).enumerate() {
            let at = (t / qpt * rows + n) * 16 + (t % qpt) * qb;
            b[at..at + q.len()].copy_from_slice(q);
        }
    }
    bytemuck::pod_collect_to_vec(&b)
}

/// The texel-column N:4 layout (module docs) of `rows` rows of `groups` groups of 4 columns
/// with `n` kept slots each: positions `idx` (u8, `[rows, groups * n]`) and f32 values as
/// bits (same shape).
fn nm_kn(part: SPart, rows: usize, groups: usize, n: usize, idx: &[u8], vals: &[u32]) -> Vec<u32> {
    let c4 = rows.div_ceil(4).max(1);
    let g8 = groups.div_ceil(8).max(1);
    let kept = groups * n;
    if part == SPart::NmKnPos {
        let mut w = vec![0u32; g8 * c4 * 4];
        for r in 0..rows {
            let (c, o) = (r / 4, r % 4);
            for g in 0..groups {
                for s in 0..n {
                    let pos = (idx[r * kept + g * n + s] & 3) as u32;
                    w[((g / 8) * c4 + c) * 4 + (g % 8) / 2] |=
                        pos << ((g % 2) * 16 + o * 4 + s * 2);
                }
            }
        }
        return w;
    }
    let mut w = vec![0u32; g8 * 8 * n * c4 * 4];
    for r in 0..rows {
        let (c, o) = (r / 4, r % 4);
        for (j, &v) in vals[r * kept..(r + 1) * kept].iter().enumerate() {
            w[(j * c4 + c) * 4 + o] = v;
        }
    }
    w
}

/// Names of the CSR-f32 tensors the CPU sparse kernel reads for weight `name`: row pointers
/// (i32 `[rows + 1]`), columns (i32 `[nnz]`), values (f32 `[nnz]`). `#` keeps them apart from
/// every part name a model file can hold.
pub fn cpu_csr_names(name: &str) -> [String; 3] {
    ["ptr", "idx", "val"].map(|p| format!("{name}#csr.{p}"))
}

/// Sparse weight `name` (any sparse layout and value type) as CSR with f32 values, for the CPU
/// sparse kernel: built once at session build by decoding it and keeping its nonzeros (every
/// entry the format stores but an explicit zero, which adds nothing).
pub fn cpu_csr(
    format: &WeightFormat,
    name: &str,
    shape: &[usize],
    parts: &WeightParts,
) -> Result<Vec<(String, crate::tensor::Tensor)>> {
    use crate::tensor::{Tensor, TensorData};
    let dense = format.decode(name, shape, parts)?;
    let (rows, cols) = matrix_dims(shape)?;
    let x = dense.f32s(name)?;
    let (mut ptr, mut idx, mut val) = (vec![0i32], Vec::new(), Vec::new());
    for r in 0..rows {
        for (c, &v) in x[r * cols..(r + 1) * cols].iter().enumerate() {
            if v != 0.0 {
                idx.push(c as i32);
                val.push(v);
            }
        }
        let n = i32::try_from(idx.len()).map_err(|_| Error::Unsupported {
            op: "matmul".into(),
            what: format!("weight '{name}': more than 2^31 nonzeros"),
            backend: "cpu".into(),
        })?;
        ptr.push(n);
    }
    let nnz = idx.len();
    let [pn, iname, vn] = cpu_csr_names(name);
    Ok(vec![
        (pn, Tensor::from_data(&[rows + 1], TensorData::I32(ptr))?),
        (iname, Tensor::from_data(&[nnz], TensorData::I32(idx))?),
        (vn, Tensor::new(&[nnz], val)?),
    ])
}
