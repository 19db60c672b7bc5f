//! Matrix products with a quantised weight read as stored (int8 / int4 codes with f32 or f16
//! scales or power-of-two shifts, and optional zero points), so a packed model stays packed in
//! CPU memory and a GEMV streams 1 (int8) or 0.5 (int4) bytes per weight instead of 4.
//!
//! The weight is the format's `[rows, cols]` matrix (rows = outputs N, cols = the reduction K),
//! as `crate::format` stores it: int8 codes one per byte (i8 symmetric, u8 with zero points),
//! int4 two per byte (even column in the low nibble; symmetric nibbles sign-extended), a scale
//! per row or per group of `group` columns (the last group of a row may be short).
//!
//! - [`gemv`] (one row of activations): per output row and scale group, `sum (code - zero) * x`
//!   in 16 f32 lanes over 32-value chunks (int8 sign/zero extended to i32 then f32, int4 nibbles
//!   against `x` de-interleaved once per call), then `lanes += scale * partial` once per group:
//!   no horizontal sum per group, one multiply per group for the scale. Rows over the threads.
//! - [`gemm`] (several rows): blocks of weight rows decoded to f32 into a per-task scratch (the
//!   same single rounding of `(code - zero) * scale` as the reference's decoder, so the block is
//!   bit-identical to the decoded weight) and multiplied by the f32 GEMM; blocks over the
//!   threads, so the whole weight is never decoded at once.

use super::gemm::{sgemm_threads, Mat};
use crate::error::{Error, Result};
use half::f16;

/// Stored codes.
#[derive(Clone, Copy)]
pub enum Codes<'a> {
    /// Symmetric int8, `[rows, cols]`.
    I8(&'a [i8]),
    /// Asymmetric int8 (`[rows, cols]`) or int4 (`[rows, ceil(cols / 2)]`, either kind).
    U8(&'a [u8]),
}

/// Stored scales, one per row and group (`[rows, ngroups]`).
#[derive(Clone, Copy)]
pub enum Scales<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
    /// Power-of-two: `scale = 2^-shift`; one shift for the whole weight when `len() == 1`
    /// and the weight has more than one group in all.
    Shift(&'a [i8]),
}

/// A quantised `[rows, cols]` weight as stored.
#[derive(Clone, Copy)]
pub struct QWeight<'a> {
    pub rows: usize,
    pub cols: usize,
    /// 8 or 4.
    pub bits: u8,
    /// Values per scale along cols; 0 = one scale per row.
    pub group: usize,
    pub codes: Codes<'a>,
    pub scales: Scales<'a>,
    /// Zero points (`[rows, ngroups]`), with unsigned codes.
    pub zeros: Option<&'a [u8]>,
}

fn bad(what: impl std::fmt::Display) -> Error {
    Error::Input(format!("packed CPU kernel: {what}"))
}

impl QWeight<'_> {
    /// Columns per scale group.
    pub fn gsize(&self) -> usize {
        if self.group == 0 {
            self.cols.max(1)
        } else {
            self.group
        }
    }

    /// Scale groups per row.
    pub fn ngroups(&self) -> usize {
        self.cols.div_ceil(self.gsize()).max(1)
    }

    fn row_bytes(&self) -> usize {
        if self.bits == 4 {
            self.cols.div_ceil(2)
        } else {
            self.cols
        }
    }

    /// Checks that every part has the length its shape needs and the codes' kind matches the
    /// bits, so the kernels index in bounds (a corrupt weight is an error, not a panic).
    pub fn check(&self) -> Result<()> {
        let (rows, cols) = (self.rows, self.cols);
        let ng = self.ngroups();
        let nbytes = rows.checked_mul(self.row_bytes());
        let codes_ok = match (self.bits, self.codes, self.zeros.is_some()) {
            (8, Codes::I8(c), false) => Some(c.len()) == nbytes,
            (8, Codes::U8(c), true) | (4, Codes::U8(c), _) => Some(c.len()) == nbytes,
            _ => false,
        };
        if !codes_ok {
            return Err(bad(format!(
                "int{} codes of a [{rows}, {cols}] weight have the wrong kind or length",
                self.bits
            )));
        }
        let nscales = match self.scales {
            Scales::F32(s) => s.len(),
            Scales::F16(s) => s.len(),
            Scales::Shift(s) if s.len() == 1 => rows * ng,
            Scales::Shift(s) => s.len(),
        };
        if nscales != rows * ng {
            return Err(bad(format!(
                "{nscales} scales for a [{rows}, {cols}] weight with {ng} group(s) a row"
            )));
        }
        if let Some(z) = self.zeros {
            if z.len() != rows * ng {
                return Err(bad(format!(
                    "{} zero points, expected {}",
                    z.len(),
                    rows * ng
                )));
            }
            if self.bits == 4 && z.iter().any(|&z| z > 15) {
                return Err(bad("an int4 zero point above 15"));
            }
        }
        Ok(())
    }

    /// Scale of row `r`, group `g` as f32 (exact: f16 and powers of two within i8 shifts are
    /// f32 values).
    #[inline]
    fn scale(&self, r: usize, g: usize) -> f32 {
        let i = r * self.ngroups() + g;
        match self.scales {
            Scales::F32(s) => s[i],
            Scales::F16(s) => s[i].to_f32(),
            Scales::Shift(s) => {
                let n = if s.len() == 1 { s[0] } else { s[i] };
                2f64.powi(-i32::from(n)) as f32
            }
        }
    }

    #[inline]
    fn zero(&self, r: usize, g: usize) -> i32 {
        self.zeros
            .map_or(0, |z| i32::from(z[r * self.ngroups() + g]))
    }

    /// Code of row `r`, column `c` (symmetric int4 nibbles sign-extended), before the zero
    /// point is subtracted.
    #[inline]
    fn code(&self, r: usize, c: usize) -> i32 {
        match (self.bits, self.codes) {
            (8, Codes::I8(q)) => i32::from(q[r * self.cols + c]),
            (8, Codes::U8(q)) => i32::from(q[r * self.cols + c]),
            (_, Codes::U8(q)) => {
                let b = q[r * self.row_bytes() + c / 2];
                let nib = (b >> (4 * (c % 2))) & 0xF;
                if self.zeros.is_some() {
                    i32::from(nib)
                } else {
                    i32::from(((nib << 4) as i8) >> 4)
                }
            }
            (_, Codes::I8(q)) => i32::from(q[r * self.cols + c]),
        }
    }

    /// Row `r` decoded to f32: `(code - zero) * scale` rounded once (the integer difference
    /// and the scale are exact in f32, so this is the reference decoder's value bit for bit).
    /// `out` holds at least `cols` values.
    pub fn decode_row(&self, r: usize, out: &mut [f32]) {
        let out = &mut out[..self.cols];
        // First the codes as f32 (exact), in loops without per-element branches...
        match (self.bits, self.codes) {
            (8, Codes::I8(q)) => {
                for (o, &c) in out.iter_mut().zip(&q[r * self.cols..]) {
                    *o = f32::from(c);
                }
            }
            (8, Codes::U8(q)) => {
                for (o, &c) in out.iter_mut().zip(&q[r * self.cols..]) {
                    *o = f32::from(c);
                }
            }
            (_, Codes::U8(q)) => {
                let rb = self.row_bytes();
                let bytes = &q[r * rb..(r + 1) * rb];
                let signed = self.zeros.is_none();
                let mut pairs = out.chunks_exact_mut(2);
                for (o, &b) in (&mut pairs).zip(bytes) {
                    let (lo, hi) = nibbles(b, signed);
                    o[0] = lo;
                    o[1] = hi;
                }
                if let (Some(o), Some(&b)) = (pairs.into_remainder().first_mut(), bytes.last()) {
                    *o = nibbles(b, signed).0;
                }
            }
            (_, Codes::I8(_)) => {} // rejected by `check`
        }
        // ...then `(code - zero) * scale` per group (the difference is exact in f32).
        let gs = self.gsize();
        for (g, chunk) in out.chunks_mut(gs).enumerate() {
            let (s, z) = (self.scale(r, g), self.zero(r, g) as f32);
            for o in chunk.iter_mut() {
                *o = (*o - z) * s;
            }
        }
    }
}

/// The two codes of an int4 byte (low nibble first) as f32, sign-extended when `signed`.
#[inline(always)]
fn nibbles(b: u8, signed: bool) -> (f32, f32) {
    if signed {
        (f32::from((b << 4) as i8 >> 4), f32::from(b as i8 >> 4))
    } else {
        (f32::from(b & 0xF), f32::from(b >> 4))
    }
}

/// Values per inner chunk (16 bytes of int4, 32 of int8) and f32 lanes of the accumulators.
const CHUNK: usize = 32;
const LANES: usize = 16;

/// `y[r] = sum_k W[r, k] x[k]` for every row `r` of `w` (`x` has `cols` values, `y` `rows`).
/// See the module doc for the order of operations.
pub fn gemv(w: &QWeight, x: &[f32], y: &mut [f32]) -> Result<()> {
    w.check()?;
    if x.len() != w.cols || y.len() != w.rows {
        return Err(bad(format!(
            "{} activations and {} outputs for a [{}, {}] weight",
            x.len(),
            y.len(),
            w.rows,
            w.cols
        )));
    }
    // int4: x de-interleaved per aligned 32-value block (16 even columns, then 16 odd ones),
    // so the low and high nibbles of 16 consecutive bytes meet contiguous lanes of x.
    let xp: Vec<f32>;
    let xs = if w.bits == 4 {
        let mut p = x.to_vec();
        for (blk, src) in p.chunks_exact_mut(CHUNK).zip(x.chunks_exact(CHUNK)) {
            for l in 0..LANES {
                blk[l] = src[2 * l];
                blk[LANES + l] = src[2 * l + 1];
            }
        }
        xp = p;
        &xp[..]
    } else {
        x
    };
    let per = (1usize << 15)
        .div_ceil(w.cols.max(1))
        .clamp(4, w.rows.max(4));
    super::par_chunks(y, per, per * w.cols, |ci, yc| {
        for (j, o) in yc.iter_mut().enumerate() {
            *o = gemv_row(w, ci * per + j, x, xs);
        }
    });
    Ok(())
}

/// One output: per group the aligned 32-value chunks inside it in the lanes, the unaligned
/// head and tail (short groups, K not a multiple of 32) one value at a time.
fn gemv_row(w: &QWeight, r: usize, x: &[f32], xs: &[f32]) -> f32 {
    let gs = w.gsize();
    let mut lanes = [0.0f32; LANES];
    let mut rest = 0.0f32;
    for g in 0..w.ngroups() {
        let (c0, c1) = (g * gs, ((g + 1) * gs).min(w.cols));
        let (s, z) = (w.scale(r, g), w.zero(r, g));
        let a0 = c0.next_multiple_of(CHUNK).min(c1);
        let a1 = (c1 / CHUNK * CHUNK).max(a0);
        let mut tail = 0.0f32;
        for c in (c0..a0).chain(a1..c1) {
            tail += (w.code(r, c) - z) as f32 * x[c];
        }
        rest += s * tail;
        if a1 > a0 {
            let p = match (w.bits, w.codes) {
                (8, Codes::I8(q)) => {
                    chunks_i8(&q[r * w.cols + a0..r * w.cols + a1], &xs[a0..a1], z)
                }
                (8, Codes::U8(q)) => {
                    chunks_u8(&q[r * w.cols + a0..r * w.cols + a1], &xs[a0..a1], z)
                }
                (_, Codes::U8(q)) => {
                    let rb = r * w.row_bytes();
                    let b = &q[rb + a0 / 2..rb + a1 / 2];
                    if w.zeros.is_some() {
                        chunks_u4(b, &xs[a0..a1], z)
                    } else {
                        chunks_s4(b, &xs[a0..a1])
                    }
                }
                (_, Codes::I8(_)) => [0.0; LANES], // rejected by `check`
            };
            axpy16(s, &p, &mut lanes);
        }
    }
    // Pairwise over the lanes, so their order is fixed.
    for wdt in [8, 4, 2, 1] {
        for l in 0..wdt {
            lanes[l] += lanes[l + wdt];
        }
    }
    lanes[0] + rest
}

#[inline(always)]
fn axpy16(s: f32, p: &[f32; LANES], acc: &mut [f32; LANES]) {
    for l in 0..LANES {
        acc[l] += s * p[l];
    }
}

multiversion!(
    /// `sum (code - z) * x` over whole 32-value chunks of symmetric int8 codes, in 16 lanes.
    fn chunks_i8(q: &[i8], x: &[f32], z: i32) -> [f32; LANES] => chunks_i8_body
);

/// The body of [`chunks_i8`] and [`chunks_u8`]: one loop for both code types, inlined into
/// each multiversioned wrapper.
#[inline(always)]
fn chunks_8bit<T: Copy + Into<i32>>(q: &[T], x: &[f32], z: i32) -> [f32; LANES] {
    let mut acc = [0.0f32; LANES];
    for (qc, xc) in q.chunks_exact(CHUNK).zip(x.chunks_exact(CHUNK)) {
        for l in 0..LANES {
            acc[l] += (qc[l].into() - z) as f32 * xc[l];
        }
        for l in 0..LANES {
            acc[l] += (qc[LANES + l].into() - z) as f32 * xc[LANES + l];
        }
    }
    acc
}

#[inline(always)]
fn chunks_i8_body(q: &[i8], x: &[f32], z: i32) -> [f32; LANES] {
    chunks_8bit(q, x, z)
}

multiversion!(
    /// As [`chunks_i8`] for unsigned (asymmetric) int8 codes.
    fn chunks_u8(q: &[u8], x: &[f32], z: i32) -> [f32; LANES] => chunks_u8_body
);

#[inline(always)]
fn chunks_u8_body(q: &[u8], x: &[f32], z: i32) -> [f32; LANES] {
    chunks_8bit(q, x, z)
}

multiversion!(
    /// Symmetric int4: 16 bytes (32 codes) a chunk against de-interleaved `x`.
    fn chunks_s4(q: &[u8], x: &[f32]) -> [f32; LANES] => chunks_s4_body
);

#[inline(always)]
fn chunks_s4_body(q: &[u8], x: &[f32]) -> [f32; LANES] {
    let mut acc = [0.0f32; LANES];
    for (qc, xc) in q.chunks_exact(LANES).zip(x.chunks_exact(CHUNK)) {
        for l in 0..LANES {
            // Sign-extend each nibble by shifting it to the top of an i8 and back.
            let lo = ((qc[l] << 4) as i8 >> 4) as f32;
            let hi = (qc[l] as i8 >> 4) as f32;
            acc[l] += lo * xc[l];
            acc[l] += hi * xc[LANES + l];
        }
    }
    acc
}

multiversion!(
    /// Asymmetric int4 (unsigned nibbles minus the group's zero point).
    fn chunks_u4(q: &[u8], x: &[f32], z: i32) -> [f32; LANES] => chunks_u4_body
);

#[inline(always)]
fn chunks_u4_body(q: &[u8], x: &[f32], z: i32) -> [f32; LANES] {
    let mut acc = [0.0f32; LANES];
    for (qc, xc) in q.chunks_exact(LANES).zip(x.chunks_exact(CHUNK)) {
        for l in 0..LANES {
            let lo = (i32::from(qc[l] & 0xF) - z) as f32;
            let hi = (i32::from(qc[l] >> 4) - z) as f32;
            acc[l] += lo * xc[l];
            acc[l] += hi * xc[LANES + l];
        }
    }
    acc
}

/// `C = A W^T`: A is `m` x `cols` row-major (row stride `a_rs`), C `m` x `rows` row-major.
/// Blocks of weight rows are decoded into a per-task scratch and multiplied by the f32 GEMM
/// on one thread each; the blocks run over the threads.
pub fn gemm(w: &QWeight, m: usize, a: &[f32], a_rs: usize, c: &mut [f32]) -> Result<()> {
    w.check()?;
    let (n, k) = (w.rows, w.cols);
    if m == 0 || n == 0 {
        return Ok(());
    }
    if a_rs < k || (m - 1) * a_rs + k > a.len() || c.len() != m * n {
        return Err(bad(format!(
            "{m} x {k} activations (row stride {a_rs}, {} values) and {} outputs for a \
             [{n}, {k}] weight",
            a.len(),
            c.len()
        )));
    }
    let threads = super::threads();
    // Blocks of weight rows: at least two per thread for balance, at most 256 rows and 1 MiB
    // of scratch, so each decoded block stays in L2 while the GEMM reads it.
    let nb = n
        .div_ceil(2 * threads)
        .min(256)
        .min(((1usize << 18) / k.max(1)).max(16))
        .max(1);
    let nblocks = n.div_ceil(nb);
    let run = |bi: usize| -> Result<Vec<f32>> {
        let (j0, j1) = (bi * nb, ((bi + 1) * nb).min(n));
        let mut wb = vec![0.0f32; (j1 - j0) * k];
        for (j, row) in wb.chunks_exact_mut(k.max(1)).enumerate() {
            w.decode_row(j0 + j, row);
        }
        let mut cb = vec![0.0f32; m * (j1 - j0)];
        let am = Mat {
            data: a,
            rs: a_rs,
            cs: 1,
        };
        // The block's rows are B's columns: element (kk, j) at j * k + kk.
        let bm = Mat {
            data: &wb,
            rs: 1,
            cs: k,
        };
        sgemm_threads(m, j1 - j0, k, am, bm, &mut cb, j1 - j0, false, 1)?;
        Ok(cb)
    };
    #[cfg(not(target_arch = "wasm32"))]
    let blocks: Vec<Vec<f32>> = if threads > 1 && nblocks > 1 {
        use rayon::prelude::*;
        (0..nblocks)
            .into_par_iter()
            .map(run)
            .collect::<Result<_>>()?
    } else {
        (0..nblocks).map(run).collect::<Result<_>>()?
    };
    #[cfg(target_arch = "wasm32")]
    let blocks: Vec<Vec<f32>> = (0..nblocks).map(run).collect::<Result<_>>()?;
    for (bi, cb) in blocks.iter().enumerate() {
        let j0 = bi * nb;
        let w = cb.len() / m;
        for i in 0..m {
            c[i * n + j0..i * n + j0 + w].copy_from_slice(&cb[i * w..(i + 1) * w]);
        }
    }
    Ok(())
}
