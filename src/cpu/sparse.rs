//! Sparse matrix products with the weight read as stored (`crate::format` sparse layouts: CSR,
//! BSR, N:M; values f32, f16, or i8 with a scale per row), so a sparse model keeps its stored
//! bytes in CPU memory: no CSR copy with f32 values is built.
//!
//! [`spmm`]: `C = A W^T` for a `[rows, cols]` weight. Each output walks its weight row's stored
//! entries in column order (CSR: as stored; BSR: the row's slice of each block, blocks in
//! column order; N:M: the `n` kept positions of each group of `m`, increasing) into four
//! partial sums, so it equals the reference up to the rounding of a reordered f32 sum. A value
//! is decoded as the reference decoder does: f16 to f32 exactly; an i8 code times its row's f32
//! scale rounded once (the product is exact in f64, so its f32 rounding is the reference's).

use crate::error::{Error, Result};
use half::f16;

/// Stored values.
#[derive(Clone, Copy)]
pub enum Values<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
    /// Codes and one f32 scale per weight row.
    I8(&'a [i8], &'a [f32]),
}

/// Stored index structure.
#[derive(Clone, Copy)]
pub enum Layout<'a> {
    /// Row pointers (`rows + 1`) and columns.
    Csr { ptr: &'a [i32], idx: &'a [i32] },
    /// `r` x `c` blocks: block-row pointers (`rows / r + 1`), block columns; values
    /// `[blocks, r, c]`.
    Bsr {
        r: usize,
        c: usize,
        ptr: &'a [i32],
        idx: &'a [i32],
    },
    /// `n` kept of every `m` columns: positions `[rows, cols / m * n]` (u8, increasing within
    /// a group); values in the same shape.
    Nm { n: usize, m: usize, pos: &'a [u8] },
}

/// A sparse `[rows, cols]` weight as stored.
#[derive(Clone, Copy)]
pub struct SparseWeight<'a> {
    pub rows: usize,
    pub cols: usize,
    pub layout: Layout<'a>,
    pub values: Values<'a>,
}

fn bad(what: impl std::fmt::Display) -> Error {
    Error::Input(format!("sparse CPU kernel: {what}"))
}

impl SparseWeight<'_> {
    fn nvalues(&self) -> usize {
        match self.values {
            Values::F32(v) => v.len(),
            Values::F16(v) => v.len(),
            Values::I8(v, _) => v.len(),
        }
    }

    /// Checks every index against the shape and the parts' lengths against each other, so
    /// the kernel indexes in bounds (loading validated the file; this guards the kernel's own
    /// inputs: a corrupt weight is an error, not a panic). O(stored entries): a session runs
    /// it once at build ([`crate::ops::cpu_fast::check_sparse`]); [`spmm`] runs only the
    /// O(rows) part each run (it cost more than the product of a 95%-sparse GEMV).
    pub fn check(&self) -> Result<()> {
        self.check_with(true)
    }

    fn check_with(&self, indices: bool) -> Result<()> {
        let (rows, cols) = (self.rows, self.cols);
        if let Values::I8(_, s) = self.values {
            if s.len() != rows {
                return Err(bad(format!("{} row scales for {rows} rows", s.len())));
            }
        }
        let nv = self.nvalues();
        let ptr_ok = |ptr: &[i32], brows: usize, nnz: usize| {
            ptr.len() == brows + 1
                && ptr[0] == 0
                && ptr.windows(2).all(|w| w[0] <= w[1])
                && ptr[brows] as usize == nnz
        };
        let ok = match self.layout {
            Layout::Csr { ptr, idx } => {
                ptr_ok(ptr, rows, idx.len())
                    && nv == idx.len()
                    && (!indices || idx.iter().all(|&c| c >= 0 && (c as usize) < cols))
            }
            Layout::Bsr { r, c, ptr, idx } => {
                r > 0
                    && c > 0
                    && rows % r == 0
                    && cols % c == 0
                    && ptr_ok(ptr, rows / r, idx.len())
                    && Some(nv) == idx.len().checked_mul(r * c)
                    && (!indices || idx.iter().all(|&b| b >= 0 && (b as usize) < cols / c))
            }
            Layout::Nm { n, m, pos } => {
                n > 0
                    && n <= m
                    && cols % m == 0
                    && Some(pos.len()) == rows.checked_mul(cols / m * n)
                    && nv == pos.len()
                    && (!indices || pos.iter().all(|&p| (p as usize) < m))
            }
        };
        if !ok {
            return Err(bad(format!(
                "the stored parts of a [{rows}, {cols}] weight do not fit together"
            )));
        }
        Ok(())
    }
}

/// `C = A W^T`: A has `m` rows of `cols` values, element (i, k) at `a[i * a_rs + k * a_ks]`;
/// C is `m` x `rows` row-major. Outputs in chunks over the threads. The weight's indices must
/// have passed [`SparseWeight::check`] (here only the parts' lengths and row pointers are
/// checked; an index out of range would panic, not read out of bounds).
pub fn spmm(
    w: &SparseWeight,
    m: usize,
    a: &[f32],
    a_rs: usize,
    a_ks: usize,
    c: &mut [f32],
) -> Result<()> {
    w.check_with(false)?;
    let n = w.rows;
    let last = (m.max(1) - 1)
        .checked_mul(a_rs)
        .and_then(|v| v.checked_add(w.cols.saturating_sub(1).checked_mul(a_ks)?));
    if c.len() != m * n || (m > 0 && w.cols > 0 && last.is_none_or(|l| l >= a.len())) {
        return Err(bad(format!(
            "{m} rows of A ({} values) and {} outputs for a [{n}, {}] weight",
            a.len(),
            c.len(),
            w.cols
        )));
    }
    match w.values {
        Values::F32(v) => run(w, m, a, a_rs, a_ks, c, |e, _| v[e]),
        Values::F16(v) => run(w, m, a, a_rs, a_ks, c, |e, _| v[e].to_f32()),
        Values::I8(v, s) => run(w, m, a, a_rs, a_ks, c, |e, row| f32::from(v[e]) * s[row]),
    }
    Ok(())
}

/// Calls `f(col, entry)` for each stored entry of weight row `row`, in column order.
#[inline(always)]
fn row_entries(w: &SparseWeight, row: usize, mut f: impl FnMut(usize, usize)) {
    match w.layout {
        Layout::Csr { ptr, idx } => {
            let e0 = ptr[row] as usize;
            for (j, &col) in idx[e0..ptr[row + 1] as usize].iter().enumerate() {
                f(col as usize, e0 + j);
            }
        }
        Layout::Bsr { r, c, ptr, idx } => {
            let (br, ri) = (row / r, row % r);
            let b0 = ptr[br] as usize;
            for (bi, &bc) in idx[b0..ptr[br + 1] as usize].iter().enumerate() {
                let (col0, e0) = (bc as usize * c, ((b0 + bi) * r + ri) * c);
                for t in 0..c {
                    f(col0 + t, e0 + t);
                }
            }
        }
        Layout::Nm { n: kn, m: km, pos } => {
            let kept = w.cols / km * kn;
            for s in 0..kept {
                let e = row * kept + s;
                f((s / kn) * km + pos[e] as usize, e);
            }
        }
    }
}

/// Rows of A from which [`spmm`] multiplies the batch at once (A transposed, each stored
/// entry times a contiguous run of `m` values); below it each output walks its row alone.
pub const BATCH_MIN: usize = 4;

/// [`spmm`] with the value decoder `val(entry, row)` inlined.
fn run(
    w: &SparseWeight,
    m: usize,
    a: &[f32],
    a_rs: usize,
    a_ks: usize,
    c: &mut [f32],
    val: impl Fn(usize, usize) -> f32 + Sync + Send,
) {
    let n = w.rows.max(1);
    let per_row = (w.nvalues() / n).max(1);
    if m >= BATCH_MIN {
        // A batch: one pass over the weight for all `m` rows. A is transposed once to
        // `[cols][m]`, so each stored entry multiplies a contiguous run of m values (SIMD
        // across the batch) into the row's `m` outputs; walking the weight once per row of A
        // made a 95%-sparse 4096 x 4096 layer at batch 64 2.3x slower than the dense GEMM.
        // Each output's sum is over the same entries in column order, as for one row.
        let k = w.cols;
        let mut at = vec![0.0f32; k * m];
        for i in 0..m {
            for col in 0..k {
                at[col * m + i] = a[i * a_rs + col * a_ks];
            }
        }
        let mut ct = vec![0.0f32; n * m];
        let rows_per = 16usize;
        super::par_chunks(
            &mut ct,
            rows_per * m,
            per_row * m * rows_per,
            |ci, chunk| {
                for (r, out) in chunk.chunks_mut(m).enumerate() {
                    let row = ci * rows_per + r;
                    row_entries(w, row, |col, e| {
                        let v = val(e, row);
                        for (o, &x) in out.iter_mut().zip(&at[col * m..col * m + m]) {
                            *o += v * x;
                        }
                    });
                }
            },
        );
        for (row, outs) in ct.chunks(m).enumerate() {
            for (i, &o) in outs.iter().enumerate() {
                c[i * n + row] = o;
            }
        }
        return;
    }
    // Chunks of outputs along N (one row of A's outputs split when there is a single row).
    let len = if m == 1 {
        n.div_ceil(super::threads() * 4).max(64)
    } else {
        n
    };
    super::par_chunks(c, len, per_row * len, |ci, chunk| {
        for (j, o) in chunk.iter_mut().enumerate() {
            let flat = ci * len + j;
            let (i, row) = (flat / n, flat % n);
            let base = i * a_rs;
            let x = |col: usize| a[base + col * a_ks];
            // Four partial sums (the row's entry j into sum j % 4), added pairwise at the end:
            // one running sum is a chain of dependent adds, ~4 cycles an entry. The sum is
            // then not in the reference's order; they agree to the rounding of a reordered
            // f32 sum (tested so).
            let (mut s0, mut s1, mut s2, mut s3) = (0.0f32, 0.0f32, 0.0f32, 0.0f32);
            if let Layout::Csr { ptr, idx } = w.layout {
                let e0 = ptr[row] as usize;
                let cols = &idx[e0..ptr[row + 1] as usize];
                let mut quads = cols.chunks_exact(4);
                let mut e = e0;
                for q in &mut quads {
                    s0 += x(q[0] as usize) * val(e, row);
                    s1 += x(q[1] as usize) * val(e + 1, row);
                    s2 += x(q[2] as usize) * val(e + 2, row);
                    s3 += x(q[3] as usize) * val(e + 3, row);
                    e += 4;
                }
                for &col in quads.remainder() {
                    s0 += x(col as usize) * val(e, row);
                    e += 1;
                }
            } else {
                let mut acc = [0.0f32; 4];
                let mut j = 0usize;
                row_entries(w, row, |col, e| {
                    acc[j & 3] += x(col) * val(e, row);
                    j += 1;
                });
                (s0, s1, s2, s3) = (acc[0], acc[1], acc[2], acc[3]);
            }
            *o = (s0 + s1) + (s2 + s3);
        }
    });
}
