//! f32 GEMM and GEMV on strided operands: `gemm` (packed SIMD micro-kernels chosen at run time,
//! threaded over the current rayon pool) on native targets, a plain blocked loop on wasm32 and
//! for tiny products; a dot-product / axpy GEMV for one row of A (memory-bound: it streams the
//! weights once, split over the threads by output columns).

use crate::error::{Error, Result};

/// A read-only strided matrix view: element (i, j) is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub struct Mat<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl Mat<'_> {
    /// Whether an `r` x `c` matrix with these strides lies inside the data.
    fn fits(&self, r: usize, c: usize) -> bool {
        if r == 0 || c == 0 {
            return true;
        }
        let last = (r - 1)
            .checked_mul(self.rs)
            .and_then(|a| (c - 1).checked_mul(self.cs).and_then(|b| a.checked_add(b)));
        matches!(last, Some(l) if l < self.data.len())
    }
}

/// Products below this many multiply-adds run the plain loop (no packing, no threads).
const TINY: usize = 1 << 12;
/// Products below this many multiply-adds run on one thread.
const PAR_MIN: usize = 1 << 17;

/// `C = A B` (or `C += A B` with `accumulate`): A is `m` x `k`, B is `k` x `n`, C is `m` x `n`
/// row-major with row stride `c_rs` (>= n). Strides are checked against the slices.
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    a: Mat,
    b: Mat,
    c: &mut [f32],
    c_rs: usize,
    accumulate: bool,
) -> Result<()> {
    sgemm_threads(m, n, k, a, b, c, c_rs, accumulate, super::threads())
}

/// [`sgemm`] on at most `threads` threads: 1 from inside a task that is itself one of many
/// running in parallel (the packed-weight GEMM's blocks), where nested threading only adds
/// overhead.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_threads(
    m: usize,
    n: usize,
    k: usize,
    a: Mat,
    b: Mat,
    c: &mut [f32],
    c_rs: usize,
    accumulate: bool,
    threads: usize,
) -> Result<()> {
    let c_fits = m == 0 || n == 0 || (m - 1).saturating_mul(c_rs).saturating_add(n) <= c.len();
    if !a.fits(m, k) || !b.fits(k, n) || !c_fits || (m > 1 && c_rs < n) {
        return Err(Error::Unsupported {
            op: "cpu gemm".into(),
            what: format!("{m}x{k} by {k}x{n} operands do not fit their buffers"),
            backend: "cpu".into(),
        });
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                c[i * c_rs..i * c_rs + n].fill(0.0);
            }
        }
        return Ok(());
    }
    if m == 1 {
        gemv(n, k, a, b, &mut c[..n], accumulate);
        return Ok(());
    }
    let work = m.saturating_mul(n).saturating_mul(k);
    #[cfg(not(target_arch = "wasm32"))]
    if work >= TINY {
        let par = if threads > 1 && work >= PAR_MIN {
            gemm::Parallelism::Rayon(threads)
        } else {
            gemm::Parallelism::None
        };
        // SAFETY: every index the product touches was checked above (`fits`, `c_fits`); `c`
        // is borrowed mutably and does not alias `a` or `b`.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                c.as_mut_ptr(),
                1,
                c_rs as isize,
                accumulate,
                a.data.as_ptr(),
                a.cs as isize,
                a.rs as isize,
                b.data.as_ptr(),
                b.cs as isize,
                b.rs as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                par,
            );
        }
        return Ok(());
    }
    let _ = (work, TINY, PAR_MIN, threads);
    plain(m, n, k, a, b, c, c_rs, accumulate);
    Ok(())
}

/// The portable GEMM: i-k-j order (the inner loop runs along a row of C and, for row-major B,
/// a row of B), blocked over k so a block of B rows stays in cache across rows of A.
#[allow(clippy::too_many_arguments)]
fn plain(
    m: usize,
    n: usize,
    k: usize,
    a: Mat,
    b: Mat,
    c: &mut [f32],
    c_rs: usize,
    accumulate: bool,
) {
    const KB: usize = 128;
    let mut brow = vec![0.0f32; n];
    for i in 0..m {
        if !accumulate {
            c[i * c_rs..i * c_rs + n].fill(0.0);
        }
    }
    for k0 in (0..k).step_by(KB) {
        for kk in k0..(k0 + KB).min(k) {
            // Row kk of B gathered once (contiguous when B is row-major).
            for (j, v) in brow.iter_mut().enumerate() {
                *v = b.data[kk * b.rs + j * b.cs];
            }
            for i in 0..m {
                let av = a.data[i * a.rs + kk * a.cs];
                let crow = &mut c[i * c_rs..i * c_rs + n];
                for (cv, &bv) in crow.iter_mut().zip(&brow) {
                    *cv += av * bv;
                }
            }
        }
    }
}

/// One row of A times B: dot products when B's columns are contiguous (a Linear weight
/// `[N, K]`), else rows of B scaled and added (axpy) — both stream B once, split over threads
/// by blocks of output columns.
fn gemv(n: usize, k: usize, a: Mat, b: Mat, c: &mut [f32], accumulate: bool) {
    let x: Vec<f32> = (0..k).map(|kk| a.data[kk * a.cs]).collect();
    // Output columns per task: enough to amortise a task (~64k multiply-adds).
    let per = (1usize << 16).div_ceil(k).clamp(8, n.max(8));
    if b.rs == 1 {
        super::par_chunks(c, per, per * k, |ci, cc| {
            let j0 = ci * per;
            // Four columns of B at a time: four memory streams in flight, x loaded once.
            let mut quads = cc.chunks_exact_mut(4);
            for (q, c4) in (&mut quads).enumerate() {
                let j = j0 + 4 * q;
                let cols = [0, 1, 2, 3].map(|t| &b.data[(j + t) * b.cs..][..k]);
                let d = dot4(&x, cols[0], cols[1], cols[2], cols[3]);
                for (cv, d) in c4.iter_mut().zip(d) {
                    *cv = if accumulate { *cv + d } else { d };
                }
            }
            let done = cc.len() / 4 * 4;
            for (jj, cv) in cc[done..].iter_mut().enumerate() {
                let col = &b.data[(j0 + done + jj) * b.cs..][..k];
                let d = dot(&x, col);
                *cv = if accumulate { *cv + d } else { d };
            }
        });
    } else {
        super::par_chunks(c, per, per * k, |ci, cc| {
            let j0 = ci * per;
            let w = cc.len();
            if !accumulate {
                cc.fill(0.0);
            }
            for (kk, &xv) in x.iter().enumerate() {
                let off = kk * b.rs + j0 * b.cs;
                if b.cs == 1 {
                    axpy(xv, &b.data[off..off + w], cc);
                } else {
                    for (jj, cv) in cc.iter_mut().enumerate() {
                        *cv += xv * b.data[off + jj * b.cs];
                    }
                }
            }
        });
    }
}

multiversion!(
    /// Dot product with 64 independent partial sums (so the loop vectorises; the sum order
    /// differs from a sequential loop by rounding only).
    pub fn dot(a: &[f32], b: &[f32]) -> f32 => dot_body
);

const LANES: usize = 64;

#[inline(always)]
fn dot_body(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    // 64 lanes: four AVX-512 (eight AVX2) accumulators, so the adds of one do not wait on
    // the previous ones.
    let mut acc = [0.0f32; LANES];
    let mut ca = a.chunks_exact(LANES);
    let mut cb = b.chunks_exact(LANES);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = 0.0;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        s += x * y;
    }
    // Pairwise, so the lanes' order is fixed.
    for w in [32, 16, 8, 4, 2, 1] {
        for l in 0..w {
            acc[l] += acc[l + w];
        }
    }
    acc[0] + s
}

multiversion!(
    /// Four dot products of `x` with `b0..b3` (16 partial sums each, summed pairwise).
    pub fn dot4(x: &[f32], b0: &[f32], b1: &[f32], b2: &[f32], b3: &[f32]) -> [f32; 4] => dot4_body
);

#[inline(always)]
fn dot4_body(x: &[f32], b0: &[f32], b1: &[f32], b2: &[f32], b3: &[f32]) -> [f32; 4] {
    let n = [b0.len(), b1.len(), b2.len(), b3.len()]
        .into_iter()
        .fold(x.len(), usize::min);
    let (x, b0, b1, b2, b3) = (&x[..n], &b0[..n], &b1[..n], &b2[..n], &b3[..n]);
    let (mut a0, mut a1, mut a2, mut a3) = ([0.0f32; 16], [0.0f32; 16], [0.0f32; 16], [0.0f32; 16]);
    fn c(v: &[f32]) -> std::slice::ChunksExact<'_, f32> {
        v.chunks_exact(16)
    }
    for ((((xv, v0), v1), v2), v3) in c(x).zip(c(b0)).zip(c(b1)).zip(c(b2)).zip(c(b3)) {
        for l in 0..16 {
            a0[l] += xv[l] * v0[l];
            a1[l] += xv[l] * v1[l];
            a2[l] += xv[l] * v2[l];
            a3[l] += xv[l] * v3[l];
        }
    }
    let full = n / 16 * 16;
    let mut out = [0.0f32; 4];
    for ((o, a), b) in out.iter_mut().zip([a0, a1, a2, a3]).zip([b0, b1, b2, b3]) {
        let mut a = a;
        let mut s = 0.0;
        for (xv, bv) in x[full..].iter().zip(&b[full..]) {
            s += xv * bv;
        }
        for w in [8, 4, 2, 1] {
            for l in 0..w {
                a[l] += a[l + w];
            }
        }
        *o = a[0] + s;
    }
    out
}

multiversion!(
    /// `y += alpha * x`.
    pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) => axpy_body
);

#[inline(always)]
fn axpy_body(alpha: f32, x: &[f32], y: &mut [f32]) {
    for (yv, &xv) in y.iter_mut().zip(x) {
        *yv += alpha * xv;
    }
}
