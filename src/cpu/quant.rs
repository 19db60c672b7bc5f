//! Matrix products with a quantised weight read as stored (int8 / int4 codes with f32 or f16
//! scales or power-of-two shifts, and optional zero points), so a packed model stays packed in
//! CPU memory and a GEMV streams 1 (int8) or 0.5 (int4) bytes per weight instead of 4.
//!
//! The weight is the format's `[rows, cols]` matrix (rows = outputs N, cols = the reduction K),
//! as `crate::format` stores it: int8 codes one per byte (i8 symmetric, u8 with zero points),
//! int4 two per byte (even column in the low nibble; symmetric nibbles sign-extended), a scale
//! per row or per group of `group` columns (the last group of a row may be short).
//!
//! - [`gemv`] (one row of activations): per output row, one call of a chunk kernel for all of
//!   the row's whole groups (a call per group cost ~10 ns, more than a 32-value group's work:
//!   int4-g32 GEMV 4096 ran 11x slower than int8 that way). Per group, `sum code * x` in 16 f32
//!   lanes over 32-value chunks (codes widened to i32 lanes then f32; int4 nibbles against `x`
//!   de-interleaved once per call), then `lanes += scale * partial`: no horizontal sum per
//!   group, one multiply per 16 lanes and group for the scale. Zero points come off once per
//!   group as `scale * zero * sum(x over the group)`, the sums of x computed once per call.
//!   The row's scales are converted to f32 once per row. Rows over the threads.
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

/// A constant `[rows, cols]` weight as stored, for the kernels that read it so: quantised, or
/// f16 (`format::WeightFormat::Half`, one f16 a value).
#[derive(Clone, Copy)]
pub enum Packed<'a> {
    Quant(QWeight<'a>),
    Half {
        rows: usize,
        cols: usize,
        data: &'a [f16],
    },
}

impl Packed<'_> {
    pub fn rows(&self) -> usize {
        match self {
            Packed::Quant(q) => q.rows,
            Packed::Half { rows, .. } => *rows,
        }
    }

    pub fn cols(&self) -> usize {
        match self {
            Packed::Quant(q) => q.cols,
            Packed::Half { cols, .. } => *cols,
        }
    }

    /// Every part has the length the shape needs (see [`QWeight::check`]).
    pub fn check(&self) -> Result<()> {
        match self {
            Packed::Quant(q) => q.check(),
            Packed::Half { rows, cols, data } => {
                if rows.checked_mul(*cols) != Some(data.len()) {
                    return Err(bad(format!(
                        "{} f16 values for a [{rows}, {cols}] weight",
                        data.len()
                    )));
                }
                Ok(())
            }
        }
    }

    /// Row `r` decoded to f32 into `out` (at least `cols` values), bit for bit the reference
    /// decoder's values (f16 to f32 is exact).
    pub fn decode_row(&self, r: usize, out: &mut [f32]) {
        match self {
            Packed::Quant(q) => q.decode_row(r, out),
            Packed::Half { cols, data, .. } => {
                use half::slice::HalfFloatSliceExt;
                data[r * cols..(r + 1) * cols].convert_to_f32_slice(&mut out[..*cols]);
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
    let (gs, ng) = (w.gsize(), w.ngroups());
    // Zero points: `sum (q - z) x = sum q x - z sum x`, and `sum x` over a group is the same
    // for every row, so it is summed once per call and each group's zero point costs one
    // multiply-add per row (`scale * zero * xsum`) instead of a subtraction per weight.
    let xsum: Vec<f32> = if w.zeros.is_some() {
        x.chunks(gs).map(|c| c.iter().sum()).collect()
    } else {
        Vec::new()
    };
    // Whole groups that the chunk kernels take in one call per row: groups made of aligned
    // 32-value chunks. The rest (a short last group, groups of other sizes) goes group by
    // group through `gemv_groups`.
    let fast_groups = if gs % CHUNK == 0 { w.cols / gs } else { 0 };
    let per = (1usize << 15)
        .div_ceil(w.cols.max(1))
        .clamp(4, w.rows.max(4));
    super::par_chunks(y, per, per * w.cols, |ci, yc| {
        // The row's scales as f32, converted once per row (f16 through the slice converter,
        // which uses the CPU's conversion instructions where it has them).
        let mut sc = vec![0.0f32; ng];
        for (j, o) in yc.iter_mut().enumerate() {
            let r = ci * per + j;
            let s = w.scales_row(r, &mut sc);
            let mut acc = 0.0f32;
            if fast_groups > 0 {
                let c1 = fast_groups * gs;
                acc = match (w.bits, w.codes) {
                    (8, Codes::I8(q)) => groups_i8(&q[r * w.cols..][..c1], xs, s, gs),
                    (8, Codes::U8(q)) => groups_u8(&q[r * w.cols..][..c1], xs, s, gs),
                    (_, Codes::U8(q)) if w.zeros.is_some() => {
                        groups_u4(&q[r * w.row_bytes()..][..c1 / 2], xs, s, gs)
                    }
                    (_, Codes::U8(q)) => groups_s4(&q[r * w.row_bytes()..][..c1 / 2], xs, s, gs),
                    (_, Codes::I8(_)) => 0.0, // rejected by `check`
                };
            }
            if fast_groups < ng {
                acc += gemv_groups(w, r, fast_groups, x, xs, s);
            }
            if let Some(z) = w.zeros {
                let zr = &z[r * ng..(r + 1) * ng];
                let mut corr = 0.0f32;
                for ((&sv, &zv), &xv) in s.iter().zip(zr).zip(&xsum) {
                    corr += sv * f32::from(zv) * xv;
                }
                acc -= corr;
            }
            *o = acc;
        }
    });
    Ok(())
}

impl QWeight<'_> {
    /// Row `r`'s scales as f32 (exact), in `buf` (`ngroups` values) unless they are stored
    /// as f32 already.
    fn scales_row<'s>(&'s self, r: usize, buf: &'s mut [f32]) -> &'s [f32] {
        let ng = self.ngroups();
        let range = r * ng..(r + 1) * ng;
        match self.scales {
            Scales::F32(s) => &s[range],
            Scales::F16(s) => {
                use half::slice::HalfFloatSliceExt;
                s[range].convert_to_f32_slice(&mut buf[..ng]);
                &buf[..ng]
            }
            Scales::Shift(_) => {
                for (g, b) in buf[..ng].iter_mut().enumerate() {
                    *b = self.scale(r, g);
                }
                &buf[..ng]
            }
        }
    }
}

/// Groups `g0..` of row `r` one at a time (the zero points are left to the caller): the
/// aligned 32-value chunks inside each group in the lanes, the unaligned head and tail (short
/// groups, K not a multiple of 32) one value at a time.
fn gemv_groups(w: &QWeight, r: usize, g0: usize, x: &[f32], xs: &[f32], s: &[f32]) -> f32 {
    let gs = w.gsize();
    let mut rest = 0.0f32;
    for (g, &sv) in s.iter().enumerate().skip(g0) {
        let (c0, c1) = (g * gs, ((g + 1) * gs).min(w.cols));
        let a0 = c0.next_multiple_of(CHUNK).min(c1);
        let a1 = (c1 / CHUNK * CHUNK).max(a0);
        let mut tail = 0.0f32;
        for c in (c0..a0).chain(a1..c1) {
            tail += w.code(r, c) as f32 * x[c];
        }
        rest += sv * tail;
        if a1 > a0 {
            let one = [sv];
            let n = a1 - a0;
            rest += match (w.bits, w.codes) {
                (8, Codes::I8(q)) => groups_i8(&q[r * w.cols + a0..][..n], &xs[a0..], &one, n),
                (8, Codes::U8(q)) => groups_u8(&q[r * w.cols + a0..][..n], &xs[a0..], &one, n),
                (_, Codes::U8(q)) => {
                    let b = &q[r * w.row_bytes() + a0 / 2..][..n / 2];
                    if w.zeros.is_some() {
                        groups_u4(b, &xs[a0..], &one, n)
                    } else {
                        groups_s4(b, &xs[a0..], &one, n)
                    }
                }
                (_, Codes::I8(_)) => 0.0, // rejected by `check`
            };
        }
    }
    rest
}

/// `y = W x` for an f16 `[rows, cols]` weight: each row converted to f32 in blocks of
/// [`HALF_BLOCK`] values (the slice converter uses the CPU's f16 conversion instructions where
/// it has them) into a per-task buffer that stays in L1, then dotted with `x`; the weight
/// streams once at 2 bytes a value. Rows over the threads.
pub fn gemv_half(rows: usize, cols: usize, data: &[f16], x: &[f32], y: &mut [f32]) -> Result<()> {
    Packed::Half { rows, cols, data }.check()?;
    if x.len() != cols || y.len() != rows {
        return Err(bad(format!(
            "{} activations and {} outputs for a [{rows}, {cols}] weight",
            x.len(),
            y.len()
        )));
    }
    let per = (1usize << 15).div_ceil(cols.max(1)).clamp(4, rows.max(4));
    super::par_chunks(y, per, per * cols, |ci, yc| {
        use half::slice::HalfFloatSliceExt;
        let mut buf = vec![0.0f32; HALF_BLOCK.min(cols)];
        for (j, o) in yc.iter_mut().enumerate() {
            let row = &data[(ci * per + j) * cols..][..cols];
            let mut acc = 0.0f32;
            for (hc, xc) in row.chunks(HALF_BLOCK).zip(x.chunks(HALF_BLOCK)) {
                let b = &mut buf[..hc.len()];
                hc.convert_to_f32_slice(b);
                acc += super::gemm::dot(xc, b);
            }
            *o = acc;
        }
    });
    Ok(())
}

/// Values of an f16 row converted at a time by [`gemv_half`] (4 KiB of f32: in L1 beside x's
/// block).
const HALF_BLOCK: usize = 1024;

/// Sums `lanes` pairwise, so the order of the lanes' additions is fixed.
#[inline(always)]
fn hsum(mut lanes: [f32; LANES]) -> f32 {
    for wdt in [8, 4, 2, 1] {
        for l in 0..wdt {
            lanes[l] += lanes[l + wdt];
        }
    }
    lanes[0]
}

/// The shared shape of the chunk kernels: for each group `g` (of `gs` values, a multiple of
/// 32; `s` has one scale per group) the group's chunks summed by `chunk` into 16 partial
/// lanes, then `lanes += s[g] * partial`: the scale costs one multiply per 16 lanes and
/// group, not one per weight, and no horizontal sum happens before the end of the row.
#[inline(always)]
fn by_groups(
    nchunks: usize,
    s: &[f32],
    gs: usize,
    mut chunk: impl FnMut(usize, &mut [f32; LANES]),
) -> f32 {
    let per_group = (gs / CHUNK).max(1);
    let mut lanes = [0.0f32; LANES];
    for (g, &sv) in s.iter().enumerate() {
        let c0 = g * per_group;
        if c0 >= nchunks {
            break;
        }
        let mut p = [0.0f32; LANES];
        for c in c0..(c0 + per_group).min(nchunks) {
            chunk(c, &mut p);
        }
        for l in 0..LANES {
            lanes[l] += sv * p[l];
        }
    }
    hsum(lanes)
}

multiversion!(
    /// `sum_g s[g] * sum code * x` over whole groups of symmetric int8 codes.
    fn groups_i8(q: &[i8], x: &[f32], s: &[f32], gs: usize) -> f32 => groups_i8_body
);

#[inline(always)]
fn groups_i8_body(q: &[i8], x: &[f32], s: &[f32], gs: usize) -> f32 {
    groups_8bit(q, x, s, gs)
}

/// The body of [`groups_i8`] and [`groups_u8`]: codes widened to f32 (exact) times x.
#[inline(always)]
fn groups_8bit<T: Copy + Into<i32>>(q: &[T], x: &[f32], s: &[f32], gs: usize) -> f32 {
    let n = q.len() / CHUNK;
    let (q, x) = (&q[..n * CHUNK], &x[..n * CHUNK]);
    by_groups(n, s, gs, |c, p| {
        let (qc, xc) = (&q[c * CHUNK..][..CHUNK], &x[c * CHUNK..][..CHUNK]);
        for l in 0..LANES {
            p[l] += qc[l].into() as f32 * xc[l];
        }
        for l in 0..LANES {
            p[l] += qc[LANES + l].into() as f32 * xc[LANES + l];
        }
    })
}

multiversion!(
    /// As [`groups_i8`] for unsigned int8 codes (the zero points are the caller's).
    fn groups_u8(q: &[u8], x: &[f32], s: &[f32], gs: usize) -> f32 => groups_u8_body
);

#[inline(always)]
fn groups_u8_body(q: &[u8], x: &[f32], s: &[f32], gs: usize) -> f32 {
    groups_8bit(q, x, s, gs)
}

multiversion!(
    /// Symmetric int4: 16 bytes (32 codes) a chunk against de-interleaved `x`.
    fn groups_s4(q: &[u8], x: &[f32], s: &[f32], gs: usize) -> f32 => groups_s4_body
);

#[inline(always)]
fn groups_s4_body(q: &[u8], x: &[f32], s: &[f32], gs: usize) -> f32 {
    let n = q.len() / LANES;
    let (q, x) = (&q[..n * LANES], &x[..n * CHUNK]);
    by_groups(n, s, gs, |c, p| {
        let (qc, xc) = (&q[c * LANES..][..LANES], &x[c * CHUNK..][..CHUNK]);
        for l in 0..LANES {
            // Each byte widened to an i32 lane, each nibble sign-extended by shifting it to
            // the top of the i32 and back: 32-bit lane shifts exist in AVX2 and AVX-512
            // (8-bit ones do not), so this form vectorises on both; shifting within an i8
            // instead ran ~15x slower under AVX2 (4096 x 4096, one thread, one run).
            let b = i32::from(qc[l]);
            let lo = ((b << 28) >> 28) as f32;
            let hi = ((b << 24) >> 28) as f32;
            p[l] += lo * xc[l];
            p[l] += hi * xc[LANES + l];
        }
    })
}

multiversion!(
    /// Unsigned int4 nibbles (the zero points are the caller's).
    fn groups_u4(q: &[u8], x: &[f32], s: &[f32], gs: usize) -> f32 => groups_u4_body
);

#[inline(always)]
fn groups_u4_body(q: &[u8], x: &[f32], s: &[f32], gs: usize) -> f32 {
    let n = q.len() / LANES;
    let (q, x) = (&q[..n * LANES], &x[..n * CHUNK]);
    by_groups(n, s, gs, |c, p| {
        let (qc, xc) = (&q[c * LANES..][..LANES], &x[c * CHUNK..][..CHUNK]);
        for l in 0..LANES {
            let b = i32::from(qc[l]);
            p[l] += (b & 0xF) as f32 * xc[l];
            p[l] += (b >> 4) as f32 * xc[LANES + l];
        }
    })
}

/// `C = A W^T`: A is `m` x `cols` row-major (row stride `a_rs`), C `m` x `rows` row-major.
/// Blocks of weight rows are decoded into a per-task scratch and multiplied by the f32 GEMM
/// on one thread each; the blocks run over the threads.
pub fn gemm(w: &Packed, m: usize, a: &[f32], a_rs: usize, c: &mut [f32]) -> Result<()> {
    w.check()?;
    let (n, k) = (w.rows(), w.cols());
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
