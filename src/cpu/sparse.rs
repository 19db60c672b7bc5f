//! Sparse matrix products with the weight read as stored (`crate::format` sparse layouts: CSR,
//! BSR, N:M; values f32, f16, or i8 with a scale per row), so a sparse model keeps its stored
//! bytes in CPU memory: no CSR copy with f32 values is built.
//!
//! [`spmm`]: `C = A W^T` for a `[rows, cols]` weight. Each output walks its weight row's stored
//! entries in column order (CSR: as stored; BSR: the row's slice of each block, blocks in
//! column order; N:M: the `n` kept positions of each group of `m`, increasing), and sums
//! `a * value` from 0 as the reference sums the decoded dense row, whose other terms are exact
//! zeros: the same sum, bit for bit. A value is decoded as the reference decoder does: f16 to
//! f32 exactly; an i8 code times its row's f32 scale rounded once (the product is exact in f64,
//! so its f32 rounding is the reference's).

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
    /// inputs: a corrupt weight is an error, not a panic).
    pub fn check(&self) -> Result<()> {
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
                    && idx.iter().all(|&c| c >= 0 && (c as usize) < cols)
            }
            Layout::Bsr { r, c, ptr, idx } => {
                r > 0
                    && c > 0
                    && rows % r == 0
                    && cols % c == 0
                    && ptr_ok(ptr, rows / r, idx.len())
                    && Some(nv) == idx.len().checked_mul(r * c)
                    && idx.iter().all(|&b| b >= 0 && (b as usize) < cols / c)
            }
            Layout::Nm { n, m, pos } => {
                n > 0
                    && n <= m
                    && cols % m == 0
                    && Some(pos.len()) == rows.checked_mul(cols / m * n)
                    && nv == pos.len()
                    && pos.iter().all(|&p| (p as usize) < m)
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
/// C is `m` x `rows` row-major. Outputs in chunks over the threads.
pub fn spmm(
    w: &SparseWeight,
    m: usize,
    a: &[f32],
    a_rs: usize,
    a_ks: usize,
    c: &mut [f32],
) -> Result<()> {
    w.check()?;
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
    // Chunks of outputs along N (one row of A's outputs split when there is a single row).
    let len = if m == 1 {
        n.div_ceil(super::threads() * 4).max(64)
    } else {
        n
    };
    let work = (w.nvalues() / n).max(1) * len;
    super::par_chunks(c, len, work, |ci, chunk| {
        for (j, o) in chunk.iter_mut().enumerate() {
            let flat = ci * len + j;
            let (i, row) = (flat / n, flat % n);
            let base = i * a_rs;
            let x = |col: usize| a[base + col * a_ks];
            let mut acc = 0.0f32;
            match w.layout {
                Layout::Csr { ptr, idx } => {
                    let (e0, e1) = (ptr[row] as usize, ptr[row + 1] as usize);
                    for (e, &col) in idx[e0..e1].iter().enumerate() {
                        acc += x(col as usize) * val(e0 + e, row);
                    }
                }
                Layout::Bsr { r, c, ptr, idx } => {
                    let (br, ri) = (row / r, row % r);
                    let b0 = ptr[br] as usize;
                    for (bi, &bc) in idx[b0..ptr[br + 1] as usize].iter().enumerate() {
                        let b = b0 + bi;
                        let (col0, e0) = (bc as usize * c, (b * r + ri) * c);
                        for t in 0..c {
                            acc += x(col0 + t) * val(e0 + t, row);
                        }
                    }
                }
                Layout::Nm { n: kn, m: km, pos } => {
                    let kept = w.cols / km * kn;
                    for s in 0..kept {
                        let e = row * kept + s;
                        acc += x((s / kn) * km + pos[e] as usize) * val(e, row);
                    }
                }
            }
            *o = acc;
        }
    });
}
