//! The op side of the fast CPU kernels: which `crate::cpu` kernel a matmul or conv takes
//! (`OpFamily::cpu_kernel`) and how its operands map onto it (`OpFamily::cpu_fast`). The
//! families' impls call these two functions each; the kernels know nothing of ops.

use super::conv::Conv2d;
use super::matmul::MatMul;
use super::pool::Pool2d;
use super::{CpuCtx, OpFamily};
use crate::cpu::conv::ConvGeom;
use crate::cpu::gemm::{sgemm_epilogue, Epilogue, Mat};
use crate::error::{Error, Result};
use crate::tensor::{numel, Tensor, ValueType};

/// Matmul: `gemm`'s packed kernels, or the streaming GEMV for one row of A.
pub const GEMM: &str = "cpu-gemm";
/// Matmul with one row of A per batch (memory-bound: dot products or axpy over B).
pub const GEMV: &str = "cpu-gemv";
/// Conv 1x1, stride 1, no padding: one GEMM per image and group on the input as it is.
pub const CONV1X1: &str = "cpu-conv1x1";
/// Any other dense or grouped conv: im2col + GEMM.
pub const IM2COL: &str = "cpu-im2col";
/// Depthwise conv, direct.
pub const DWCONV: &str = "cpu-dwconv";
/// Pooling: the reference's loops, a plane per task over the threads.
pub const POOL: &str = "cpu-pool";
/// Matmul on a sparse constant `[N, K]` weight (any sparse format and value type), read as
/// stored: each output walks its weight row's stored entries only.
pub const SPMM: &str = "cpu-spmm";

/// Densest sparse weight (percent stored) that [`SPMM`] reads as stored for `rows` rows of A;
/// denser weights are decoded once and run the dense kernels, so a pruned model is not slower
/// than dense on the CPU. SPMM pays an index and a gathered A element per stored entry where
/// the dense kernels stream values with SIMD. Measured on a 4096 x 4096 layer (2-core AMD
/// EPYC, two runs of `wgedge bench --suite kernels --backend cpu --only gemv,gemm64`, ms,
/// dense in brackets): one row, CSR 50% 4.6-5.3, 70% 2.6-2.8, 90% 1.3-1.8, 95% 0.4-0.9 [2.2-2.4];
/// BSR 4x4 90% 1.6-2.6; 2:4 9-10 (the N:M and BSR walks cost about twice CSR's per entry);
/// 64 rows, CSR 50% 51-54, 90% 13-15, 95% 8.7-9.2, 2:4 54-57 [13.6-13.8].
pub fn spmm_max_pct(layout: &crate::format::SparseLayout, rows: usize) -> u32 {
    let csr = matches!(layout, crate::format::SparseLayout::Csr);
    match (rows < crate::cpu::sparse::BATCH_MIN, csr) {
        (true, true) => 20,
        (true, false) => 8,
        (false, true) => 7,
        (false, false) => 4,
    }
}
/// Matmul, one row of A, on a constant `[N, K]` int8 weight read as stored (1 byte a weight).
pub const Q8GEMV: &str = "cpu-q8gemv";
/// Matmul, one row of A, on a constant `[N, K]` int4 weight read as stored (2 weights a byte).
pub const Q4GEMV: &str = "cpu-q4gemv";
/// Matmul, several rows of A, on a constant `[N, K]` int8/int4 weight: blocks of weight rows
/// decoded into a scratch per task and multiplied by the f32 GEMM.
pub const QGEMM: &str = "cpu-qgemm";
/// Matmul, one row of A, on a constant `[N, K]` f16 weight read as stored (2 bytes a weight):
/// rows converted to f32 a block at a time and dotted with A's row.
pub const HGEMV: &str = "cpu-hgemv";
/// Matmul, several rows of A, on a constant `[N, K]` f16 weight: as [`QGEMM`].
pub const HGEMM: &str = "cpu-hgemm";
/// Dense or grouped conv on a constant quantised or f16 weight read as stored: each group's
/// weight decoded per run into a scratch, then pointwise GEMM or im2col + GEMM as the f32
/// kernels.
pub const PCONV: &str = "cpu-packed-conv";
/// Depthwise conv on a constant quantised or f16 weight: the (small) weight decoded per run,
/// then the direct depthwise kernel.
pub const PDWCONV: &str = "cpu-packed-dwconv";

/// Whether `kernel` reads its weight (input 1) packed, as [`packed_names`] lists its parts.
pub fn reads_packed(kernel: &str) -> bool {
    matches!(
        kernel,
        Q8GEMV | Q4GEMV | QGEMM | HGEMV | HGEMM | PCONV | PDWCONV
    )
}

/// The tensors a packed-weight kernel takes in place of weight `name`: the format descriptor
/// [`packed_spec`] (stored under `{name}#cpu.spec` at session build), then the stored parts.
pub fn packed_names(name: &str, format: &crate::format::WeightFormat) -> Vec<String> {
    let mut v = vec![format!("{name}#cpu.spec")];
    v.extend(format.part_names(name));
    v
}

/// The format parameters the kernels need beside the parts, as an I32 tensor: `[bits, group,
/// zero_points, pow2, scale kind (0 f32, 1 f16, 2 shift), rows, cols]` then the weight's
/// logical shape (a conv needs its taps). f16 weights (`Half`): bits 16, the rest 0.
pub fn packed_spec(format: &crate::format::WeightFormat, shape: &[usize]) -> Result<Tensor> {
    use crate::format::WeightFormat;
    use crate::tensor::{DType, TensorData};
    let (rows, cols) = crate::format::matrix_dims(shape)?;
    let as_i32 =
        |v: usize| i32::try_from(v).map_err(|_| Error::Input(format!("weight dim {v} beyond i32")));
    let mut spec = match format {
        WeightFormat::Quant(q) => {
            let kind = match (q.pow2, q.scale_dtype) {
                (true, _) => 2,
                (false, DType::F16) => 1,
                _ => 0,
            };
            vec![
                i32::from(q.bits),
                as_i32(q.group)?,
                i32::from(q.zero_points),
                i32::from(q.pow2),
                kind,
            ]
        }
        WeightFormat::Half => vec![16, 0, 0, 0, 0],
        _ => {
            return Err(Error::Input(format!(
                "{} weights are not read packed on the CPU",
                format.label()
            )))
        }
    };
    spec.push(as_i32(rows)?);
    spec.push(as_i32(cols)?);
    for &d in shape {
        spec.push(as_i32(d)?);
    }
    Tensor::from_data(&[spec.len()], TensorData::I32(spec))
}

/// Reads [`packed_spec`] and the parts after it (`ins[0]` is the spec): the weight, its
/// logical shape and how many tensors it took.
fn packed_weight<'a>(
    ins: &[&'a Tensor],
) -> Result<(crate::cpu::quant::Packed<'a>, Vec<usize>, usize)> {
    use crate::cpu::quant::{Codes, Packed, QWeight, Scales};
    use crate::tensor::TensorData;
    let bad = |what: &str| Error::Input(format!("packed CPU kernel: {what}"));
    let spec = match ins.first().map(|t| t.data()) {
        Some(TensorData::I32(v)) if v.len() >= 7 && v.iter().all(|&x| x >= 0) => v,
        _ => return Err(bad("missing or malformed format descriptor")),
    };
    let u = |i: usize| spec[i] as usize;
    let shape: Vec<usize> = spec[7..].iter().map(|&d| d as usize).collect();
    if spec[0] == 16 {
        let w = match ins.get(1).map(|t| t.data()) {
            Some(TensorData::F16(v)) => Packed::Half {
                rows: u(5),
                cols: u(6),
                data: v,
            },
            _ => return Err(bad("f16 weight values must be f16")),
        };
        w.check()?;
        return Ok((w, shape, 2));
    }
    let (zp, kind) = (spec[2] != 0, spec[4]);
    let need = 3 + usize::from(zp);
    if ins.len() < need {
        return Err(bad("fewer weight parts than the format stores"));
    }
    let codes = match ins[1].data() {
        TensorData::I8(v) => Codes::I8(v),
        TensorData::U8(v) => Codes::U8(v),
        _ => return Err(bad("codes must be i8 or u8")),
    };
    let scales = match (kind, ins[2].data()) {
        (0, TensorData::F32(v)) => Scales::F32(v),
        (1, TensorData::F16(v)) => Scales::F16(v),
        (2, TensorData::I8(v)) => Scales::Shift(v),
        _ => return Err(bad("scales do not match the format")),
    };
    let zeros = match (zp, ins.get(3).map(|t| t.data())) {
        (false, _) => None,
        (true, Some(TensorData::U8(v))) => Some(v.as_slice()),
        _ => return Err(bad("zero points must be u8")),
    };
    let w = QWeight {
        rows: u(5),
        cols: u(6),
        bits: u8::try_from(spec[0]).map_err(|_| bad("bits"))?,
        group: u(1),
        codes,
        scales,
        zeros,
    };
    w.check()?;
    Ok((Packed::Quant(w), shape, need))
}

pub(super) fn wrong_kernel(op: &str, kernel: &str) -> Error {
    Error::Unsupported {
        op: op.into(),
        what: format!("CPU kernel '{kernel}'"),
        backend: "cpu".into(),
    }
}

fn f32_inputs<'a>(op: &str, ins: &[&'a Tensor]) -> Result<Vec<&'a [f32]>> {
    ins.iter().map(|t| t.f32s(op)).collect()
}

pub(super) fn matmul_kernel(op: &MatMul, cx: &CpuCtx) -> Option<&'static str> {
    if !cx.f32() {
        return None;
    }
    let sparse = match (cx.formats.get(1), cx.density.get(1).copied().flatten()) {
        (Some(crate::format::WeightFormat::Sparse(s)), Some(d)) => {
            // Rows of A per batch: what `spmm` multiplies at once (its one-row or batch path).
            let a = &cx.ins[0].shape;
            let rows = match a.len() {
                0 | 1 => 1,
                n if op.trans_a => a[n - 1],
                n => a[n - 2],
            };
            let max = (cx.sparse_max_pct).unwrap_or_else(|| spmm_max_pct(&s.layout, rows));
            d * 100.0 <= max as f32
        }
        _ => false,
    };
    if sparse && cx.is_const[1] && op.trans_b && cx.ins[1].shape.len() == 2 {
        return Some(SPMM);
    }
    let a = &cx.ins[0].shape;
    let m = if op.trans_a {
        a[a.len() - 1]
    } else {
        a[a.len() - 2]
    };
    // All of A's rows (batches included: the weight is one shared 2-D matrix).
    let k = if op.trans_a {
        a[a.len() - 2]
    } else {
        a[a.len() - 1]
    };
    let rows = numel(a) / k.max(1);
    let packable = cx.is_const[1] && op.trans_b && cx.ins[1].shape.len() == 2;
    match cx.formats.get(1) {
        Some(crate::format::WeightFormat::Quant(q)) if packable => {
            return Some(match (rows, q.bits) {
                (1, 8) => Q8GEMV,
                (1, _) => Q4GEMV,
                _ => QGEMM,
            });
        }
        Some(crate::format::WeightFormat::Half) if packable => {
            return Some(if rows == 1 { HGEMV } else { HGEMM });
        }
        _ => {}
    }
    Some(if m == 1 { GEMV } else { GEMM })
}

/// The activation of an epilogue over a run of values (`None`: identity), each value as
/// `Activation::apply` computes it; ReLU, the common case, as a plain loop the compiler
/// vectorises (a call of `apply` per value cost ~11% of the MLP at batch 64, measured).
fn act_rows(act: &super::Activation) -> Option<impl Fn(&mut [f32]) + Sync> {
    let act = *act;
    (act != super::Activation::None).then_some(move |s: &mut [f32]| match act {
        super::Activation::Relu => {
            for v in s {
                *v = v.max(0.0);
            }
        }
        _ => {
            for v in s {
                *v = act.apply(*v);
            }
        }
    })
}

pub(super) fn matmul(
    op: &MatMul,
    kernel: &str,
    ins: &[&Tensor],
    out: &ValueType,
) -> Result<Tensor> {
    if kernel == SPMM {
        return spmm(op, ins, out);
    }
    if reads_packed(kernel) {
        return qmatmul(op, ins, out);
    }
    if kernel != GEMM && kernel != GEMV {
        return Err(wrong_kernel("matmul", kernel));
    }
    let xs = f32_inputs("matmul", ins)?;
    let p = op.params(ins[0].shape(), ins[1].shape());
    let u = |v: u32| v as usize;
    let (m, n, k) = (u(p.m), u(p.n), u(p.k));
    let mut c = vec![0.0f32; numel(&out.shape)];
    let bias = op.bias.then(|| xs[2]);
    let res = op.residual.then(|| xs[xs.len() - 1]);
    let act = act_rows(&op.act);
    for bat in 0..u(p.batch) {
        let a = Mat {
            data: &xs[0][bat * u(p.a_bs)..],
            rs: u(p.a_rs),
            cs: u(p.a_ks),
        };
        let b = Mat {
            data: &xs[1][bat * u(p.b_bs)..],
            rs: u(p.b_ks),
            cs: u(p.b_ns),
        };
        // Bias, residual and activation fused into the product (applied to each block of C
        // while it is in cache) where the kernel takes it, else one pass after it.
        let epi = Epilogue {
            bias: bias.map(|b| &b[..n]),
            residual: res.map(|r| r.get(bat * m * n..).unwrap_or(&[])),
            act: act.as_ref().map(|f| f as _),
        };
        sgemm_epilogue(m, n, k, a, b, &mut c[bat * m * n..][..m * n], &epi)?;
    }
    Tensor::new(&out.shape, c)
}

/// The tensors [`SPMM`] takes in place of sparse weight `name`: the layout descriptor
/// [`sparse_spec`] (stored under `{name}#cpu.spec` at session build), then the stored parts.
pub fn sparse_names(name: &str, format: &crate::format::WeightFormat) -> Vec<String> {
    packed_names(name, format)
}

/// What [`SPMM`] needs beside a sparse weight's parts, as an I32 tensor: `[layout (0 CSR,
/// 1 BSR, 2 N:M), r or n, c or m, values (0 f32, 1 f16, 2 i8 with row scales), rows, cols]`.
pub fn sparse_spec(format: &crate::format::WeightFormat, shape: &[usize]) -> Result<Tensor> {
    use crate::format::{SparseLayout, SparseValues, WeightFormat};
    use crate::tensor::TensorData;
    let WeightFormat::Sparse(sp) = format else {
        return Err(Error::Input(format!(
            "{} weights are not read by the sparse CPU kernel",
            format.label()
        )));
    };
    let (rows, cols) = crate::format::matrix_dims(shape)?;
    let as_i32 =
        |v: usize| i32::try_from(v).map_err(|_| Error::Input(format!("weight dim {v} beyond i32")));
    let (kind, a, b) = match sp.layout {
        SparseLayout::Csr => (0, 1, 1),
        SparseLayout::Bsr { r, c } => (1, r, c),
        SparseLayout::NM { n, m } => (2, n, m),
    };
    let values = match sp.values {
        SparseValues::F32 => 0,
        SparseValues::F16 => 1,
        SparseValues::I8 => 2,
    };
    let spec = vec![
        kind,
        as_i32(a)?,
        as_i32(b)?,
        values,
        as_i32(rows)?,
        as_i32(cols)?,
    ];
    Tensor::from_data(&[spec.len()], TensorData::I32(spec))
}

/// Reads [`sparse_spec`] and the stored parts after it: the weight and how many tensors it
/// took.
/// Checks every stored index of sparse weight `name` (its [`sparse_names`] tensors, the
/// descriptor included, in `weights`) once, at session build, so [`SPMM`] need not each run.
pub fn check_sparse(
    name: &str,
    format: &crate::format::WeightFormat,
    weights: &std::collections::BTreeMap<String, Tensor>,
) -> Result<()> {
    let parts: Vec<&Tensor> = sparse_names(name, format)
        .iter()
        .map(|n| {
            weights
                .get(n)
                .ok_or_else(|| Error::MissingWeight(n.clone()))
        })
        .collect::<Result<_>>()?;
    sparse_weight(&parts)?.0.check()
}

fn sparse_weight<'a>(ins: &[&'a Tensor]) -> Result<(crate::cpu::sparse::SparseWeight<'a>, usize)> {
    use crate::cpu::sparse::{Layout, SparseWeight, Values};
    use crate::tensor::TensorData;
    let bad = |what: &str| Error::Input(format!("{SPMM}: {what}"));
    let spec = match ins.first().map(|t| t.data()) {
        Some(TensorData::I32(v)) if v.len() == 6 && v.iter().all(|&x| x >= 0) => v,
        _ => return Err(bad("missing or malformed layout descriptor")),
    };
    let u = |i: usize| spec[i] as usize;
    // The descriptor, the index parts and values (N:M has no row pointers), the i8 scales.
    let need = 1 + if spec[0] == 2 { 2 } else { 3 } + usize::from(spec[3] == 2);
    if ins.len() < need {
        return Err(bad("fewer weight parts than the format stores"));
    }
    let i32s = |t: &'a Tensor| match t.data() {
        TensorData::I32(v) => Ok(v.as_slice()),
        _ => Err(bad("indices must be i32")),
    };
    // Part order as `WeightFormat::part_names`: CSR/BSR indptr, indices, values; N:M values,
    // indices; then the i8 row scales.
    let (layout, vals) = match spec[0] {
        0 | 1 => {
            let (ptr, idx) = (i32s(ins[1])?, i32s(ins[2])?);
            let l = if spec[0] == 0 {
                Layout::Csr { ptr, idx }
            } else {
                Layout::Bsr {
                    r: u(1),
                    c: u(2),
                    ptr,
                    idx,
                }
            };
            (l, ins[3])
        }
        2 => match ins[2].data() {
            TensorData::U8(pos) => (
                Layout::Nm {
                    n: u(1),
                    m: u(2),
                    pos,
                },
                ins[1],
            ),
            _ => return Err(bad("N:M positions must be u8")),
        },
        _ => return Err(bad("unknown layout")),
    };
    let values = match (spec[3], vals.data()) {
        (0, TensorData::F32(v)) => Values::F32(v),
        (1, TensorData::F16(v)) => Values::F16(v),
        (2, TensorData::I8(v)) => match ins[need - 1].data() {
            TensorData::F32(s) => Values::I8(v, s),
            _ => return Err(bad("i8 row scales must be f32")),
        },
        _ => return Err(bad("values do not match the format")),
    };
    let w = SparseWeight {
        rows: u(4),
        cols: u(5),
        layout,
        values,
    };
    // Indices are checked once at session build (`check_sparse`); `spmm` checks the rest.
    Ok((w, need))
}

/// [`SPMM`]: `ins` = A, the weight's [`sparse_names`] tensors, then bias and residual as the
/// op has them (see `crate::cpu::sparse` for the order of the sums).
fn spmm(op: &MatMul, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
    let bad = |what: &str| Error::Input(format!("{SPMM}: {what}"));
    if ins.len() < 2 {
        return Err(bad("takes A and the weight's stored parts"));
    }
    let (w, used) = sparse_weight(&ins[1..])?;
    let a = ins[0].f32s("matmul")?;
    let (n, k) = (w.rows, w.cols);
    let a_shape = ins[0].shape();
    let p = op.params(a_shape, &[n, k]);
    let u = |v: u32| v as usize;
    let (m, batch) = (u(p.m), u(p.batch));
    if u(p.k) != k {
        return Err(bad("A does not meet the weight"));
    }
    let (a_bs, a_rs, a_ks) = (u(p.a_bs), u(p.a_rs), u(p.a_ks));
    let mut c = vec![0.0f32; numel(&out.shape)];
    if c.len() != batch * m * n {
        return Err(bad("output shape does not match"));
    }
    for bat in 0..batch {
        let cb = &mut c[bat * m * n..(bat + 1) * m * n];
        let ab = a.get(bat * a_bs..).unwrap_or(&[]);
        crate::cpu::sparse::spmm(&w, m, ab, a_rs, a_ks, cb)?;
    }
    let extra: Vec<&[f32]> = ins[1 + used..]
        .iter()
        .map(|t| t.f32s("matmul"))
        .collect::<Result<_>>()?;
    let bias = op.bias.then(|| extra.first().copied()).flatten();
    let res = op.residual.then(|| extra.last().copied()).flatten();
    if (op.bias && bias.is_none_or(|b| b.len() < n))
        || (op.residual && res.is_none_or(|r| r.len() != c.len()))
    {
        return Err(bad("bias or residual missing or short"));
    }
    let act = op.act;
    crate::cpu::epilogue(
        &mut c,
        bias.map(|b| (&b[..n], 1)),
        res,
        act_rows(&act).as_ref().map(|f| f as _),
    );
    Tensor::new(&out.shape, c)
}

/// [`Q8GEMV`], [`Q4GEMV`], [`QGEMM`]: `ins` = A, the weight's [`packed_names`] tensors, then
/// bias and residual as the op has them. A's rows (every batch: the weight is shared) are
/// gathered into one contiguous matrix when they are not one already.
fn qmatmul(op: &MatMul, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
    if ins.len() < 2 {
        return Err(Error::Input(
            "packed CPU matmul takes A and the weight's parts".into(),
        ));
    }
    let (w, _, used) = packed_weight(&ins[1..])?;
    let (n, k) = (w.rows(), w.cols());
    let a_shape = ins[0].shape();
    let a = ins[0].f32s("matmul")?;
    let p = op.params(a_shape, &[n, k]);
    let u = |v: u32| v as usize;
    let (m, batch) = (u(p.m), u(p.batch));
    if u(p.k) != k || u(p.n) != n {
        return Err(Error::Input(format!(
            "packed CPU matmul: A {a_shape:?} does not meet a [{n}, {k}] weight"
        )));
    }
    let rows = batch * m;
    let mut c = vec![0.0f32; numel(&out.shape)];
    if c.len() != rows * n {
        return Err(Error::Input(
            "packed CPU matmul: output shape does not match".into(),
        ));
    }
    let (a_bs, a_rs, a_ks) = (u(p.a_bs), u(p.a_rs), u(p.a_ks));
    let contiguous = a_ks == 1 && a_rs == k && (batch == 1 || a_bs == m * k);
    let gathered: Vec<f32>;
    let a_rows: &[f32] = if contiguous {
        a
    } else {
        let mut g = vec![0.0f32; rows * k];
        for (i, row) in g.chunks_exact_mut(k.max(1)).enumerate() {
            let base = (i / m) * a_bs + (i % m) * a_rs;
            for (kk, v) in row.iter_mut().enumerate() {
                *v = a[base + kk * a_ks];
            }
        }
        gathered = g;
        &gathered
    };
    if rows == 1 {
        match w {
            crate::cpu::quant::Packed::Quant(q) => {
                crate::cpu::quant::gemv(&q, &a_rows[..k], &mut c)?
            }
            crate::cpu::quant::Packed::Half { data, .. } => {
                crate::cpu::quant::gemv_half(n, k, data, &a_rows[..k], &mut c)?
            }
        }
    } else {
        crate::cpu::quant::gemm(&w, rows, a_rows, k, &mut c)?;
    }
    let extra: Vec<&[f32]> = ins[1 + used..]
        .iter()
        .map(|t| t.f32s("matmul"))
        .collect::<Result<_>>()?;
    let bias = op.bias.then(|| extra.first().copied()).flatten();
    let res = op.residual.then(|| extra.last().copied()).flatten();
    if (op.bias && bias.is_none_or(|b| b.len() < n))
        || (op.residual && res.is_none_or(|r| r.len() != c.len()))
    {
        return Err(Error::Input(
            "packed CPU matmul: bias or residual missing or short".into(),
        ));
    }
    let act = op.act;
    crate::cpu::epilogue(
        &mut c,
        bias.map(|b| (&b[..n], 1)),
        res,
        act_rows(&act).as_ref().map(|f| f as _),
    );
    Tensor::new(&out.shape, c)
}

fn geom(op: &Conv2d, x: &[usize], w: &[usize], out: &[usize]) -> ConvGeom {
    let p = op.params(x, w, out);
    let u = |v: u32| v as usize;
    ConvGeom {
        n: u(p.n),
        cin: u(p.cin),
        h: u(p.h),
        w: u(p.w),
        cout: u(p.cout),
        oh: u(p.oh),
        ow: u(p.ow),
        groups: u(p.groups),
        kh: u(p.kh),
        kw: u(p.kw),
        stride: [u(p.stride_h), u(p.stride_w)],
        pad: [u(p.pad_t), u(p.pad_l)],
        dilation: [u(p.dil_h), u(p.dil_w)],
    }
}

pub(super) fn conv_kernel(op: &Conv2d, cx: &CpuCtx) -> Option<&'static str> {
    if !cx.f32() {
        return None;
    }
    let g = geom(op, &cx.ins[0].shape, &cx.ins[1].shape, &cx.out.shape);
    let packed = cx.is_const.get(1) == Some(&true)
        && cx.ins[1].shape.len() == 4
        && matches!(
            cx.formats.get(1),
            Some(crate::format::WeightFormat::Quant(_) | crate::format::WeightFormat::Half)
        );
    if packed {
        return Some(if g.is_depthwise() { PDWCONV } else { PCONV });
    }
    Some(if g.is_depthwise() {
        DWCONV
    } else if g.is_pointwise() {
        CONV1X1
    } else {
        IM2COL
    })
}

pub(super) fn conv(op: &Conv2d, kernel: &str, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
    if reads_packed(kernel) {
        return conv_packed(op, kernel, ins, out);
    }
    let xs = f32_inputs("conv2d", ins)?;
    let g = geom(op, ins[0].shape(), ins[1].shape(), &out.shape);
    let mut y = vec![0.0f32; numel(&out.shape)];
    match kernel {
        DWCONV if g.is_depthwise() => crate::cpu::conv::depthwise(&g, xs[0], xs[1], &mut y),
        CONV1X1 | IM2COL => crate::cpu::conv::conv2d(&g, xs[0], xs[1], &mut y)?,
        _ => return Err(wrong_kernel("conv2d", kernel)),
    }
    let bias = op.bias.then(|| xs[2]);
    let res = op.residual.then(|| xs[xs.len() - 1]);
    let act = op.act;
    crate::cpu::epilogue(
        &mut y,
        bias.map(|b| (&b[..g.cout], (g.oh * g.ow).max(1))),
        res,
        act_rows(&act).as_ref().map(|f| f as _),
    );
    Tensor::new(&out.shape, y)
}

/// [`PCONV`], [`PDWCONV`]: `ins` = x, the weight's [`packed_names`] tensors, then bias and
/// residual as the op has them.
fn conv_packed(op: &Conv2d, kernel: &str, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
    if ins.len() < 2 {
        return Err(Error::Input(
            "packed CPU conv takes x and the weight's parts".into(),
        ));
    }
    let x = ins[0].f32s("conv2d")?;
    let (w, shape, used) = packed_weight(&ins[1..])?;
    if shape.len() != 4 {
        return Err(Error::Input(format!(
            "packed CPU conv: weight shape {shape:?} is not OIHW"
        )));
    }
    let g = geom(op, ins[0].shape(), &shape, &out.shape);
    let mut y = vec![0.0f32; numel(&out.shape)];
    match kernel {
        PDWCONV if g.is_depthwise() => crate::cpu::conv::depthwise_packed(&g, x, &w, &mut y)?,
        PCONV if !g.is_depthwise() => crate::cpu::conv::conv2d_packed(&g, x, &w, &mut y)?,
        _ => return Err(wrong_kernel("conv2d", kernel)),
    }
    let extra: Vec<&[f32]> = ins[1 + used..]
        .iter()
        .map(|t| t.f32s("conv2d"))
        .collect::<Result<_>>()?;
    let bias = op.bias.then(|| extra.first().copied()).flatten();
    let res = op.residual.then(|| extra.last().copied()).flatten();
    if (op.bias && bias.is_none_or(|b| b.len() < g.cout))
        || (op.residual && res.is_none_or(|r| r.len() != y.len()))
    {
        return Err(Error::Input(
            "packed CPU conv: bias or residual missing or short".into(),
        ));
    }
    let act = op.act;
    crate::cpu::epilogue(
        &mut y,
        bias.map(|b| (&b[..g.cout], (g.oh * g.ow).max(1))),
        res,
        act_rows(&act).as_ref().map(|f| f as _),
    );
    Tensor::new(&out.shape, y)
}

pub(super) fn pool_kernel(cx: &CpuCtx) -> Option<&'static str> {
    let x = &cx.ins[0].shape;
    (cx.f32() && x.len() == 4 && x[0] * x[1] > 1).then_some(POOL)
}

/// Each plane through the reference's own loops (so the result is the reference's, bit for
/// bit), the planes spread over the threads.
pub(super) fn pool(op: &Pool2d, kernel: &str, ins: &[&Tensor], out: &ValueType) -> Result<Tensor> {
    if kernel != POOL {
        return Err(wrong_kernel(OpFamily::name(op), kernel));
    }
    let x = ins[0].f32s(OpFamily::name(op))?;
    let (s, o) = (ins[0].shape(), &out.shape);
    let (hw, ohw) = (s[2] * s[3], o[2] * o[3]);
    let plane_in = vec![1, 1, s[2], s[3]];
    let plane_out = [1, 1, o[2], o[3]];
    let taps = op.kernel[0].min(s[2]) * op.kernel[1].min(s[3]);
    let mut y = vec![0.0f32; numel(o)];
    crate::cpu::par_chunks(&mut y, ohw, ohw * taps, |p, yp| {
        let xp = &x[p * hw..][..hw];
        let r = op.cpu_f32(&[xp], std::slice::from_ref(&plane_in), &plane_out);
        yp.copy_from_slice(&r);
    });
    Tensor::new(o, y)
}

/// Elementwise (unary activation, binary with broadcasting): chunks of the output over the
/// threads, the same operation per element as the reference (bit for bit).
pub const ELTWISE: &str = "cpu-eltwise";
/// Softmax, log-softmax, layer norm, batch norm, group and instance norm: independent rows (or
/// planes) over the threads, each computed by the reference's own arithmetic in its order (bit
/// for bit).
pub const ROWS: &str = "cpu-rows";

/// Output elements per elementwise chunk (`crate::cpu::par_chunks` groups chunks into tasks of
/// at least its minimum work and keeps a smaller tensor on one thread). Measured (2-core AMD
/// EPYC, inside the pool): a ReLU streams ~14 elements/ns, so 32 Ki elements are ~2.3 µs,
/// and chunks of 8-32 Ki cost 0.1-0.5 µs more than one pass over 64 Ki (4.6 µs); smaller
/// chunks only add splits.
const ELT_CHUNK: usize = 1 << 15;

/// [`ELTWISE`] or [`ROWS`] for an all-f32 case, else the reference.
pub(super) fn f32_kernel(cx: &CpuCtx, kernel: &'static str) -> Option<&'static str> {
    cx.f32().then_some(kernel)
}

/// `y = act(x)`, chunked over the threads.
pub(super) fn unary(
    act: super::Activation,
    kernel: &str,
    ins: &[&Tensor],
    out: &ValueType,
) -> Result<Tensor> {
    if kernel != ELTWISE {
        return Err(wrong_kernel("unary", kernel));
    }
    let x = ins[0].f32s("unary")?;
    let mut y = vec![0.0f32; x.len()];
    crate::cpu::par_chunks(&mut y, ELT_CHUNK, ELT_CHUNK * 2, |ci, yc| {
        let xc = &x[ci * ELT_CHUNK..][..yc.len()];
        for (o, &v) in yc.iter_mut().zip(xc) {
            *o = act.apply(v);
        }
    });
    Tensor::new(&out.shape, y)
}

/// `act(a (op) b)` with numpy broadcasting: the output in rows of its last dim, each row's
/// input offsets computed once, the inner loop specialised for the four arithmetic ops with
/// contiguous or broadcast operands (so it vectorises) and generic otherwise.
pub(super) fn binary(
    op: &super::elementwise::Binary,
    kernel: &str,
    ins: &[&Tensor],
    out: &ValueType,
) -> Result<Tensor> {
    use super::elementwise::{broadcast_strides, BinaryKind};
    if kernel != ELTWISE {
        return Err(wrong_kernel(op.kind.name(), kernel));
    }
    let name = op.kind.name();
    let (a, b) = (ins[0].f32s(name)?, ins[1].f32s(name)?);
    let o = &out.shape;
    let (sa, sb) = (
        broadcast_strides(ins[0].shape(), o),
        broadcast_strides(ins[1].shape(), o),
    );
    let rank = o.len();
    let last = o.last().copied().unwrap_or(1);
    let mut y = vec![0.0f32; numel(o)];
    if y.is_empty() {
        return Tensor::new(o, y);
    }
    let (la, lb) = (
        sa.last().copied().unwrap_or(0),
        sb.last().copied().unwrap_or(0),
    );
    let rows_per = ELT_CHUNK.div_ceil(last.max(1)).max(1);
    let (kind, act) = (op.kind, op.act);
    let identity = act == super::Activation::None;
    crate::cpu::par_chunks(&mut y, rows_per * last, rows_per * last * 2, |ci, yc| {
        for (ri, yr) in yc.chunks_mut(last.max(1)).enumerate() {
            let r = ci * rows_per + ri;
            let (mut rem, mut ia, mut ib) = (r, 0, 0);
            for d in (0..rank.saturating_sub(1)).rev() {
                let c = rem % o[d];
                rem /= o[d];
                ia += c * sa[d];
                ib += c * sb[d];
            }
            let w = yr.len();
            // Specialised rows: same formula as `BinaryKind::apply`, no per-element match.
            macro_rules! rows {
                ($f:expr) => {{
                    let f = $f;
                    match (la, lb) {
                        (1, 1) => {
                            for ((o, &x), &z) in
                                yr.iter_mut().zip(&a[ia..ia + w]).zip(&b[ib..ib + w])
                            {
                                *o = f(x, z);
                            }
                        }
                        (1, 0) => {
                            let z = b[ib];
                            for (o, &x) in yr.iter_mut().zip(&a[ia..ia + w]) {
                                *o = f(x, z);
                            }
                        }
                        (0, 1) => {
                            let x = a[ia];
                            for (o, &z) in yr.iter_mut().zip(&b[ib..ib + w]) {
                                *o = f(x, z);
                            }
                        }
                        _ => {
                            for (j, o) in yr.iter_mut().enumerate() {
                                *o = f(a[ia + j * la], b[ib + j * lb]);
                            }
                        }
                    }
                }};
            }
            match kind {
                BinaryKind::Add => rows!(|x: f32, z: f32| x + z),
                BinaryKind::Sub => rows!(|x: f32, z: f32| x - z),
                BinaryKind::Mul => rows!(|x: f32, z: f32| x * z),
                BinaryKind::Div => rows!(|x: f32, z: f32| x / z),
                _ => rows!(|x: f32, z: f32| kind.apply(x, z)),
            }
            if !identity {
                for v in yr.iter_mut() {
                    *v = act.apply(*v);
                }
            }
        }
    });
    Tensor::new(o, y)
}

/// Runs `f(first, rows, x_chunk, y_chunk)` on chunks of whole rows of `len` elements (`x` and
/// the result have `rows * len`), over the threads; `cost` is the work per element.
pub(super) fn by_rows(
    x: &[f32],
    len: usize,
    cost: usize,
    f: impl Fn(usize, &[f32], &mut [f32]) + Sync + Send,
) -> Vec<f32> {
    let len = len.max(1);
    let mut y = vec![0.0f32; x.len()];
    let rows = x.len() / len;
    // Enough rows per task for ELT_CHUNK elements, and at least 4 tasks a thread when the
    // rows allow (rows differ in nothing, but other work shares the cores).
    let per = ELT_CHUNK
        .div_ceil(len)
        .min(rows.div_ceil(4 * crate::cpu::threads()))
        .max(1);
    crate::cpu::par_chunks(&mut y, per * len, per * len * cost, |ci, yc| {
        let first = ci * per;
        f(first, &x[first * len..][..yc.len()], yc);
    });
    y
}

/// Group norm (instance norm: one channel per group) on rows of `len = cpg * inner` values,
/// over the threads: each row with the reference's arithmetic in its order (sequential f32
/// sums of the values and of the squared deviations), so the result is bit for bit.
#[allow(clippy::too_many_arguments)]
pub(super) fn group_norm(
    x: &[f32],
    scale: &[f32],
    bias: &[f32],
    len: usize,
    inner: usize,
    cpg: usize,
    g: usize,
    eps: f32,
) -> Vec<f32> {
    if len == 0 || x.is_empty() {
        return vec![0.0; x.len()];
    }
    by_rows(x, len, 8, |first, xc, yc| {
        for (ri, (row, out)) in xc.chunks(len).zip(yc.chunks_mut(len)).enumerate() {
            let r = first + ri;
            let mean = row.iter().sum::<f32>() / len as f32;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / len as f32;
            let rstd = 1.0 / (var + eps).sqrt();
            for j in 0..len {
                let c = (r % g) * cpg + j / inner;
                out[j] = (row[j] - mean) * rstd * scale[c] + bias[c];
            }
        }
    })
}
