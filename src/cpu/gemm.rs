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
/// Products below this many multiply-adds run on one thread. Measured with `gemm` on the
/// 2-core AMD EPYC (inside the pool, load ~5 from other jobs): 2 threads gained nothing up to
/// 96^3 (16.2 vs 16.5-17.3 µs) nor above while the other core was busy; below ~1 Mi
/// multiply-adds (~20 µs on one thread) a split cannot pay for waking the other worker.
const PAR_MIN: usize = 1 << 20;

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
    #[cfg(target_arch = "x86_64")]
    if !accumulate && c_rs == n && abt_takes(m, n, k, &a, &b) {
        return abt(m, n, k, a, b, &mut c[..m * n], &Epilogue::NONE, threads);
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

/// The fused epilogue of a product, `act(c + bias[j] + residual[i][j])` in the reference's
/// order, applied a row segment at a time by the kernels that fuse it (the GEMM's own pass
/// over C while the block is still in cache, not a second pass over all of C).
#[derive(Clone, Copy)]
pub struct Epilogue<'a> {
    /// One value per column of C.
    pub bias: Option<&'a [f32]>,
    /// C's shape, rows `n` apart (contiguous `m` x `n`).
    pub residual: Option<&'a [f32]>,
    /// The activation over a row segment, in place; `None`: identity.
    pub act: Option<super::Act<'a>>,
}

impl Epilogue<'_> {
    /// No bias, residual or activation.
    pub const NONE: Epilogue<'static> = Epilogue {
        bias: None,
        residual: None,
        act: None,
    };

    fn is_none(&self) -> bool {
        self.bias.is_none() && self.residual.is_none() && self.act.is_none()
    }

    /// Applies it to `seg`, columns `j0..j0 + seg.len()` of row `i` of an `n`-column C.
    fn apply(&self, i: usize, j0: usize, n: usize, seg: &mut [f32]) {
        let w = seg.len();
        if let Some(b) = self.bias {
            for (v, &b) in seg.iter_mut().zip(&b[j0..j0 + w]) {
                *v += b;
            }
        }
        if let Some(r) = self.residual {
            for (v, &r) in seg.iter_mut().zip(&r[i * n + j0..][..w]) {
                *v += r;
            }
        }
        if let Some(act) = self.act {
            act(seg);
        }
    }

    /// Whether its operands cover an `m` x `n` C.
    fn fits(&self, m: usize, n: usize) -> bool {
        self.bias.is_none_or(|b| b.len() >= n) && self.residual.is_none_or(|r| r.len() >= m * n)
    }
}

/// [`sgemm`] followed by `epi` on the contiguous `m` x `n` C (`accumulate` false): fused into
/// the dot-product kernel where the product takes it ([`abt`]), else applied after.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_epilogue(
    m: usize,
    n: usize,
    k: usize,
    a: Mat,
    b: Mat,
    c: &mut [f32],
    epi: &Epilogue,
) -> Result<()> {
    if !epi.fits(m, n) || c.len() < m * n {
        return Err(Error::Unsupported {
            op: "cpu gemm".into(),
            what: format!("bias or residual shorter than the {m}x{n} product"),
            backend: "cpu".into(),
        });
    }
    #[cfg(target_arch = "x86_64")]
    if abt_takes(m, n, k, &a, &b) {
        return abt(m, n, k, a, b, &mut c[..m * n], epi, super::threads());
    }
    sgemm(m, n, k, a, b, c, n, false)?;
    if !epi.is_none() {
        let c = &mut c[..m * n];
        super::par_chunks(c, n.max(1), n.max(1) * 4, |i, row| epi.apply(i, 0, n, row));
    }
    Ok(())
}

/// Rows of A up to which [`abt`] beats `gemm` on a Linear weight. Measured on the 2-core AMD
/// EPYC (AVX-512; load 8 from other jobs, so 1 and 2 threads ran alike), `gemm` time over
/// `abt` time: 16x784x512 1.64-1.72, 64x784x512 1.18-1.21, 128x784x512 1.10-1.14,
/// 192x1024x1024 1.57, 256x1024x1024 1.00-1.09, 384x1024x1024 1.02-1.04, 512x1024x1024
/// 0.87-1.01 (`gemm` packs both operands into cache blocks, which pays off with more rows).
#[cfg(target_arch = "x86_64")]
const ABT_MAX_M: usize = 256;

/// Whether [`abt`] takes this product: A's rows and B's columns contiguous (a Linear weight
/// `[N, K]` as B), more than one row, few enough rows that packing would not pay.
#[cfg(target_arch = "x86_64")]
fn abt_takes(m: usize, n: usize, k: usize, a: &Mat, b: &Mat) -> bool {
    (2..=ABT_MAX_M).contains(&m)
        && n >= 1
        && k >= 1
        && a.cs == 1
        && b.rs == 1
        && std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
}

/// Output columns of the dot-product tile, its rows, for each instruction set (AVX-512:
/// 16 accumulators of 16 lanes in 32 registers; AVX2: 12 of 8 in 16).
#[cfg(target_arch = "x86_64")]
const ABT_NR: usize = 4;

/// `C = A B` for A with contiguous rows and B with contiguous columns (`B[k, j] = w[j][k]`, a
/// Linear weight), as dot products: a tile of 4 rows of A by 4 columns of B (3 rows on AVX2)
/// accumulates `MR * NR` vectors of lanes along K, nothing packed (each weight row is read as
/// it is stored, once per tile row of A, while it stays in L1), the lanes summed at the end,
/// `epi` applied to the task's block of C while it is in cache. Tasks are blocks of columns over all
/// rows, so each thread streams its own share of the weight once.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
fn abt(
    m: usize,
    n: usize,
    k: usize,
    a: Mat,
    b: Mat,
    c: &mut [f32],
    epi: &Epilogue,
    threads: usize,
) -> Result<()> {
    if !a.fits(m, k) || !b.fits(k, n) || c.len() != m * n || !epi.fits(m, n) {
        return Err(Error::Unsupported {
            op: "cpu gemm".into(),
            what: format!("{m}x{k} by {k}x{n} operands do not fit their buffers"),
            backend: "cpu".into(),
        });
    }
    let tiles = n.div_ceil(ABT_NR);
    // Column tiles per task: a task's work at least ABT_MIN_TASK multiply-adds, and about
    // four tasks a thread when there is that much (other work shares the cores).
    let per_tile = m * k * ABT_NR;
    let want = (threads * 4).max(1);
    let per = tiles
        .div_ceil(want)
        .max(ABT_MIN_TASK.div_ceil(per_tile.max(1)))
        .clamp(1, tiles.max(1));
    let cols = per * ABT_NR;
    let cp = SendPtr(c.as_mut_ptr());
    let task = |t: usize| {
        let j0 = t * cols;
        let j1 = (j0 + cols).min(n);
        // SAFETY: task `t` writes only columns j0..j1 of C's `m` rows (checked above to be
        // `m * n` long); the tasks' column ranges are disjoint, and `c` stays borrowed
        // mutably for the whole call.
        unsafe { abt_block(m, n, k, a, b, cp, j0, j1, epi) };
    };
    let ntasks = tiles.div_ceil(per);
    #[cfg(not(target_arch = "wasm32"))]
    if threads > 1 && ntasks > 1 {
        use rayon::prelude::*;
        (0..ntasks).into_par_iter().for_each(task);
        return Ok(());
    }
    let _ = threads;
    (0..ntasks).for_each(task);
    Ok(())
}

/// Multiply-adds below which a GEMM task is not worth handing to another thread: the tiles
/// run ~100 GFLOP/s on one thread (MLP layers, AMD EPYC), so 2^18 is ~5 µs, the size
/// `par_chunks` asks of a task (its `MIN_TASK` notes the measured cost of a split).
#[cfg(target_arch = "x86_64")]
const ABT_MIN_TASK: usize = 1 << 18;

#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: only used to hand disjoint parts of one mutably borrowed slice to parallel tasks.
#[cfg(target_arch = "x86_64")]
unsafe impl Send for SendPtr {}
// SAFETY: as above.
#[cfg(target_arch = "x86_64")]
unsafe impl Sync for SendPtr {}

/// Columns `j0..j1` of C (all `m` rows), dispatched to the tile kernel compiled for the CPU:
/// with AVX-512 (32 vector registers) 4 rows of A a tile, with AVX2 only (16) 3.
///
/// # Safety
/// `c` points to `m * n` floats no other thread touches in columns `j0..j1`; `a` and `b`
/// were checked to fit `m` x `k` and `k` x `n`; [`abt_takes`] checked the CPU has AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
unsafe fn abt_block(
    m: usize,
    n: usize,
    k: usize,
    a: Mat,
    b: Mat,
    c: SendPtr,
    j0: usize,
    j1: usize,
    epi: &Epilogue,
) {
    #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn v512(
        m: usize,
        n: usize,
        k: usize,
        a: Mat,
        b: Mat,
        c: SendPtr,
        j0: usize,
        j1: usize,
        epi: &Epilogue,
    ) {
        // SAFETY: the caller's guarantees pass on.
        unsafe { abt_body::<4>(m, n, k, a, b, c, j0, j1, epi) }
    }
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn v256(
        m: usize,
        n: usize,
        k: usize,
        a: Mat,
        b: Mat,
        c: SendPtr,
        j0: usize,
        j1: usize,
        epi: &Epilogue,
    ) {
        // SAFETY: as above.
        unsafe { abt_body::<3>(m, n, k, a, b, c, j0, j1, epi) }
    }
    if std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512vl")
    {
        // SAFETY: the CPU has the features; the caller's guarantees pass on.
        unsafe { v512(m, n, k, a, b, c, j0, j1, epi) }
    } else {
        // SAFETY: as above (the caller checked AVX2 and FMA).
        unsafe { v256(m, n, k, a, b, c, j0, j1, epi) }
    }
}

/// The tile loop of [`abt_block`], `MR` rows of A a tile. Edge tiles repeat their last row or
/// column (computed, not stored), so one kernel covers them.
///
/// # Safety
/// As [`abt_block`], and the CPU has AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn abt_body<const MR: usize>(
    m: usize,
    n: usize,
    k: usize,
    a: Mat,
    b: Mat,
    c: SendPtr,
    j0: usize,
    j1: usize,
    epi: &Epilogue,
) {
    const NR: usize = ABT_NR;
    let arow = |i: usize| a.data[i * a.rs..][..k].as_ptr();
    let bcol = |j: usize| b.data[j * b.cs..][..k].as_ptr();
    let mut out = [[0.0f32; NR]; MR];
    for jt in (j0..j1).step_by(NR) {
        let nr = NR.min(j1 - jt);
        let bs: [*const f32; NR] = std::array::from_fn(|t| bcol(jt + t.min(nr - 1)));
        for it in (0..m).step_by(MR) {
            let mr = MR.min(m - it);
            let as_: [*const f32; MR] = std::array::from_fn(|t| arow(it + t.min(mr - 1)));
            // SAFETY: every pointer starts a row of `k` floats (sliced above); AVX2 and FMA
            // are there (the caller's).
            unsafe { tile::<MR>(k, &as_, &bs, &mut out) };
            for (r, o) in out.iter().enumerate().take(mr) {
                let i = it + r;
                // SAFETY: row i < m, columns jt..jt + nr inside j0..j1 (the caller's).
                let seg = unsafe { std::slice::from_raw_parts_mut(c.0.add(i * n + jt), nr) };
                seg.copy_from_slice(&o[..nr]);
            }
        }
    }
    if !epi.is_none() {
        // The block's rows, still in cache: one epilogue call per row segment.
        for i in 0..m {
            // SAFETY: row i < m, columns j0..j1 (the caller's).
            let seg = unsafe { std::slice::from_raw_parts_mut(c.0.add(i * n + j0), j1 - j0) };
            epi.apply(i, j0, n, seg);
        }
    }
}

/// `out[r][t] = dot(a[r], b[t])` over `k` terms: one 8-lane accumulator per pair (fused
/// multiply-adds; the last `k % 8` terms through a masked load), lanes summed at the end.
/// AVX2 intrinsics (AVX-512's are newer than the crate's minimum Rust); compiled inside an
/// AVX-512 function they get its 32 registers.
///
/// # Safety
/// Every pointer starts `k` readable floats; the CPU has AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn tile<const MR: usize>(
    k: usize,
    a: &[*const f32; MR],
    b: &[*const f32; ABT_NR],
    out: &mut [[f32; ABT_NR]; MR],
) {
    use std::arch::x86_64::*;
    const NR: usize = ABT_NR;
    // SAFETY (whole body): loads stay inside each row's `k` floats (full vectors below
    // `k / 8 * 8`, the rest masked); the features are the caller's.
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); NR]; MR];
        let full = k / 8 * 8;
        let mut kk = 0;
        while kk < full {
            let av: [__m256; MR] = std::array::from_fn(|r| _mm256_loadu_ps(a[r].add(kk)));
            for t in 0..NR {
                let bv = _mm256_loadu_ps(b[t].add(kk));
                for r in 0..MR {
                    acc[r][t] = _mm256_fmadd_ps(av[r], bv, acc[r][t]);
                }
            }
            kk += 8;
        }
        if full < k {
            let rem = (k - full) as i32;
            let mask = _mm256_setr_epi32(
                -i32::from(rem > 0),
                -i32::from(rem > 1),
                -i32::from(rem > 2),
                -i32::from(rem > 3),
                -i32::from(rem > 4),
                -i32::from(rem > 5),
                -i32::from(rem > 6),
                0,
            );
            let av: [__m256; MR] =
                std::array::from_fn(|r| _mm256_maskload_ps(a[r].add(full), mask));
            for t in 0..NR {
                let bv = _mm256_maskload_ps(b[t].add(full), mask);
                for r in 0..MR {
                    acc[r][t] = _mm256_fmadd_ps(av[r], bv, acc[r][t]);
                }
            }
        }
        for r in 0..MR {
            for t in 0..NR {
                let v = acc[r][t];
                let s4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
                let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
                let s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1));
                out[r][t] = _mm_cvtss_f32(s1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both tile shapes of the dot-product GEMM (AVX-512's 4 rows, AVX2's 3; the dispatch
    /// picks one per CPU, so the other is only reached here) against plain dot products, with
    /// the fused epilogue, on edge shapes: K below one vector and not a multiple of it, rows
    /// and columns not multiples of the tile, one column, a column block inside C.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn abt_tiles_match_dot_products() {
        if !(std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma"))
        {
            return;
        }
        let avx512 = std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl");
        for &(m, k, n, j0, j1) in &[
            (2, 7, 1, 0, 1),
            (5, 8, 6, 0, 6),
            (7, 37, 9, 3, 9),
            (13, 1029, 11, 0, 11),
            (3, 16, 4, 0, 4),
        ] {
            let val = |i: usize, s: u32| {
                ((i as u32).wrapping_mul(2654435761) ^ s) as f32 / u32::MAX as f32 - 0.5
            };
            let a: Vec<f32> = (0..m * k).map(|i| val(i, 1)).collect();
            let b: Vec<f32> = (0..n * k).map(|i| val(i, 2)).collect();
            let bias: Vec<f32> = (0..n).map(|i| val(i, 3)).collect();
            let res: Vec<f32> = (0..m * n).map(|i| val(i, 4)).collect();
            let relu = |s: &mut [f32]| s.iter_mut().for_each(|v| *v = v.max(0.0));
            let epi = Epilogue {
                bias: Some(&bias),
                residual: Some(&res),
                act: Some(&relu),
            };
            let am = Mat {
                data: &a,
                rs: k,
                cs: 1,
            };
            let bm = Mat {
                data: &b,
                rs: 1,
                cs: k,
            };
            let mut want = vec![f32::NAN; m * n];
            for i in 0..m {
                for j in j0..j1 {
                    let d: f64 = (0..k)
                        .map(|q| a[i * k + q] as f64 * b[j * k + q] as f64)
                        .sum();
                    want[i * n + j] = ((d as f32) + bias[j] + res[i * n + j]).max(0.0);
                }
            }
            for mr in [3, 4] {
                if mr == 4 && !avx512 {
                    continue;
                }
                let mut c = vec![f32::NAN; m * n];
                let cp = SendPtr(c.as_mut_ptr());
                // SAFETY: `c` is m * n floats, only this call writes it; the features were
                // checked above.
                unsafe {
                    if mr == 4 {
                        #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                        #[allow(clippy::too_many_arguments)]
                        unsafe fn go(
                            m: usize,
                            n: usize,
                            k: usize,
                            a: Mat,
                            b: Mat,
                            c: SendPtr,
                            j0: usize,
                            j1: usize,
                            e: &Epilogue,
                        ) {
                            unsafe { abt_body::<4>(m, n, k, a, b, c, j0, j1, e) }
                        }
                        go(m, n, k, am, bm, cp, j0, j1, &epi);
                    } else {
                        #[target_feature(enable = "avx2,fma")]
                        #[allow(clippy::too_many_arguments)]
                        unsafe fn go(
                            m: usize,
                            n: usize,
                            k: usize,
                            a: Mat,
                            b: Mat,
                            c: SendPtr,
                            j0: usize,
                            j1: usize,
                            e: &Epilogue,
                        ) {
                            unsafe { abt_body::<3>(m, n, k, a, b, c, j0, j1, e) }
                        }
                        go(m, n, k, am, bm, cp, j0, j1, &epi);
                    }
                }
                for (i, (g, w)) in c.iter().zip(&want).enumerate() {
                    let inside = (j0..j1).contains(&(i % n));
                    if inside {
                        assert!(
                            (g - w).abs() <= 1e-5 * k as f32,
                            "{m}x{k}x{n} mr {mr} [{i}]: {g} vs {w}"
                        );
                    } else {
                        assert!(
                            g.is_nan(),
                            "{m}x{k}x{n} mr {mr}: column {} outside the block written",
                            i % n
                        );
                    }
                }
            }
        }
    }
}
