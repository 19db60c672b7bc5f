//! 2-D convolution on the CPU, NCHW / OIHW: a pointwise (1x1, stride 1, no padding) conv is one
//! GEMM per image and group (`W[cout_g, cin_g] x X[cin_g, H*W]`); any other conv gathers its
//! input patches into a column matrix (im2col, in blocks of output pixels so the matrix stays
//! under [`COL_LIMIT`] floats) and runs the same GEMM on it. Depthwise convs run direct, a plane
//! per task: for each output row and tap, one contiguous multiply-add over the output pixels
//! whose input is inside the image (no bounds test in the inner loop).

use super::gemm::{sgemm, Mat};
use crate::error::Result;

/// The sizes of a convolution (what `ops::conv::ConvParams` holds, as `usize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeom {
    pub n: usize,
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub oh: usize,
    pub ow: usize,
    pub groups: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: [usize; 2],
    /// Top and left padding (bottom/right padding only shows in `oh`/`ow`).
    pub pad: [usize; 2],
    pub dilation: [usize; 2],
}

/// Largest im2col matrix, in floats (16 MiB): larger convs are gathered in pixel blocks.
pub const COL_LIMIT: usize = 1 << 22;

impl ConvGeom {
    fn cin_g(&self) -> usize {
        self.cin / self.groups
    }
    fn cout_g(&self) -> usize {
        self.cout / self.groups
    }
    /// 1x1, stride 1, no padding: the input planes are the GEMM's right operand as they are.
    pub fn is_pointwise(&self) -> bool {
        self.kh == 1
            && self.kw == 1
            && self.stride == [1, 1]
            && self.pad == [0, 0]
            && self.oh == self.h
            && self.ow == self.w
    }
    /// One input and one output channel per group, more than one group (a single-channel conv
    /// is a plain one).
    pub fn is_depthwise(&self) -> bool {
        self.groups > 1 && self.groups == self.cin && self.groups == self.cout
    }

    /// The range of output columns `ox` whose input column `ox * stride + s * dilation - pad`
    /// for tap column `s` is inside `0..w`.
    fn valid_cols(&self, s: usize) -> (usize, usize) {
        let (sw, off) = (self.stride[1], s * self.dilation[1]);
        let pl = self.pad[1];
        let lo = if pl > off { (pl - off).div_ceil(sw) } else { 0 };
        // ix = ox * sw + off - pl <= w - 1  <=>  ox <= (w - 1 + pl - off) / sw
        let hi = if self.w + pl > off {
            ((self.w - 1 + pl - off) / sw + 1).min(self.ow)
        } else {
            0
        };
        (lo.min(hi), hi)
    }

    /// The input row of output row `oy` and tap row `r`, if inside the image.
    fn in_row(&self, oy: usize, r: usize) -> Option<usize> {
        let iy = oy * self.stride[0] + r * self.dilation[0];
        iy.checked_sub(self.pad[0]).filter(|&iy| iy < self.h)
    }
}

/// Dense or grouped convolution into `y` (`[n, cout, oh, ow]`, overwritten): direct GEMM for
/// pointwise convs, else im2col + GEMM.
pub fn conv2d(g: &ConvGeom, x: &[f32], wt: &[f32], y: &mut [f32]) -> Result<()> {
    let kk = g.cin_g() * g.kh * g.kw;
    let cout_g = g.cout_g();
    for b in 0..g.n {
        for grp in 0..g.groups {
            let wg = &wt[grp * cout_g * kk..][..cout_g * kk];
            conv_group(g, x, wg, b, grp, y)?;
        }
    }
    Ok(())
}

/// [`conv2d`] with the weight read as stored (quantised or f16, rows = output channels):
/// each group's rows are decoded into a scratch once per call (the same values as the
/// reference decoder's) and every image runs the f32 GEMM on them, so the session keeps only
/// the packed weight and a run holds at most one group's f32 weight while the conv runs.
pub fn conv2d_packed(
    g: &ConvGeom,
    x: &[f32],
    wt: &super::quant::Packed,
    y: &mut [f32],
) -> Result<()> {
    let kk = g.cin_g() * g.kh * g.kw;
    let cout_g = g.cout_g();
    check_packed(g, wt, kk)?;
    let mut scratch = vec![0.0f32; cout_g * kk];
    for grp in 0..g.groups {
        for (j, row) in scratch.chunks_exact_mut(kk.max(1)).enumerate() {
            wt.decode_row(grp * cout_g + j, row);
        }
        for b in 0..g.n {
            conv_group(g, x, &scratch, b, grp, y)?;
        }
    }
    Ok(())
}

/// Depthwise convolution ([`depthwise`]) with the weight read as stored: the weight (one
/// `kh * kw` row per channel, small) decoded once per call.
pub fn depthwise_packed(
    g: &ConvGeom,
    x: &[f32],
    wt: &super::quant::Packed,
    y: &mut [f32],
) -> Result<()> {
    let taps = g.kh * g.kw;
    check_packed(g, wt, taps)?;
    let mut w = vec![0.0f32; g.cout * taps];
    for (c, row) in w.chunks_exact_mut(taps.max(1)).enumerate() {
        wt.decode_row(c, row);
    }
    depthwise(g, x, &w, y);
    Ok(())
}

/// A packed conv weight must be the `[cout, cin_g * kh * kw]` matrix of the geometry.
fn check_packed(g: &ConvGeom, wt: &super::quant::Packed, kk: usize) -> Result<()> {
    wt.check()?;
    if wt.rows() != g.cout || wt.cols() != kk || kk == 0 {
        return Err(crate::error::Error::Input(format!(
            "packed conv weight [{}, {}] does not match {} output channels of {kk} taps",
            wt.rows(),
            wt.cols(),
            g.cout
        )));
    }
    Ok(())
}

/// One image `b` and group `grp` of a conv: `wg` is the group's `[cout_g, cin_g * kh * kw]`
/// weight.
fn conv_group(
    g: &ConvGeom,
    x: &[f32],
    wg: &[f32],
    b: usize,
    grp: usize,
    y: &mut [f32],
) -> Result<()> {
    let (cin_g, cout_g) = (g.cin_g(), g.cout_g());
    let kk = cin_g * g.kh * g.kw;
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    let xg = &x[(b * g.cin + grp * cin_g) * hw..][..cin_g * hw];
    let wg = Mat {
        data: wg,
        rs: kk,
        cs: 1,
    };
    let yg = &mut y[(b * g.cout + grp * cout_g) * ohw..][..cout_g * ohw];
    if g.is_pointwise() {
        let xm = Mat {
            data: xg,
            rs: hw,
            cs: 1,
        };
        return sgemm(cout_g, hw, cin_g, wg, xm, yg, hw, false);
    }
    let block = (COL_LIMIT / kk.max(1)).clamp(1, ohw);
    let mut col = vec![0.0f32; kk * block];
    for p0 in (0..ohw).step_by(block) {
        let pc = block.min(ohw - p0);
        let col = &mut col[..kk * pc];
        im2col(g, xg, p0, pc, col);
        let cm = Mat {
            data: col,
            rs: pc,
            cs: 1,
        };
        sgemm(cout_g, pc, kk, wg, cm, &mut yg[p0..], ohw, false)?;
    }
    Ok(())
}

/// Fills `col` (`[cin_g * kh * kw][pc]`) with the input patches of output pixels
/// `p0..p0 + pc` of one image and group (`xg`: its `cin_g` input planes); zero where the tap
/// falls in the padding.
fn im2col(g: &ConvGeom, xg: &[f32], p0: usize, pc: usize, col: &mut [f32]) {
    let taps = g.kh * g.kw;
    let (hw, sw) = (g.h * g.w, g.stride[1]);
    super::par_chunks(col, pc, pc, |row, out| {
        let (ci, t) = (row / taps, row % taps);
        let (r, s) = (t / g.kw, t % g.kw);
        let plane = &xg[ci * hw..][..hw];
        let (lo, hi) = g.valid_cols(s);
        let off = s * g.dilation[1];
        // Walk the output rows the block covers.
        let mut p = p0;
        let end = p0 + pc;
        while p < end {
            let (oy, ox0) = (p / g.ow, p % g.ow);
            let ox1 = (ox0 + (end - p)).min(g.ow);
            let dst = &mut out[p - p0..p - p0 + (ox1 - ox0)];
            match g.in_row(oy, r) {
                None => dst.fill(0.0),
                Some(iy) => {
                    let xrow = &plane[iy * g.w..][..g.w];
                    for (j, d) in dst.iter_mut().enumerate() {
                        let ox = ox0 + j;
                        *d = if ox >= lo && ox < hi {
                            xrow[ox * sw + off - g.pad[1]]
                        } else {
                            0.0
                        };
                    }
                }
            }
            p += ox1 - ox0;
        }
    });
}

/// Depthwise convolution into `y` (overwritten): a plane per task; per output row and tap,
/// one multiply-add over the output pixels whose input is inside the image. The taps are added
/// in the reference's order (tap row, then tap column), so each output is the same sum.
pub fn depthwise(g: &ConvGeom, x: &[f32], wt: &[f32], y: &mut [f32]) {
    let (hw, ohw, taps) = (g.h * g.w, g.oh * g.ow, g.kh * g.kw);
    super::par_chunks(y, ohw, ohw * taps, |plane, yp| {
        let c = plane % g.cout;
        let xp = &x[plane * hw..][..hw];
        let wc = &wt[c * taps..][..taps];
        dw_plane(g, xp, wc, yp);
    });
}

multiversion!(fn dw_plane(g: &ConvGeom, xp: &[f32], wc: &[f32], yp: &mut [f32]) => dw_plane_body);

#[inline(always)]
fn dw_plane_body(g: &ConvGeom, xp: &[f32], wc: &[f32], yp: &mut [f32]) {
    yp.fill(0.0);
    let sw = g.stride[1];
    let cols: Vec<(usize, usize)> = (0..g.kw).map(|s| g.valid_cols(s)).collect();
    for oy in 0..g.oh {
        let yrow = &mut yp[oy * g.ow..][..g.ow];
        for r in 0..g.kh {
            let Some(iy) = g.in_row(oy, r) else { continue };
            let xrow = &xp[iy * g.w..][..g.w];
            for (s, &(lo, hi)) in cols.iter().enumerate() {
                if lo >= hi {
                    continue;
                }
                let wv = wc[r * g.kw + s];
                // First input column: lo * sw + s * dil - pad_l >= 0 by `valid_cols`.
                let ix0 = lo * sw + s * g.dilation[1] - g.pad[1];
                let out = &mut yrow[lo..hi];
                if sw == 1 {
                    for (o, &xv) in out.iter_mut().zip(&xrow[ix0..ix0 + (hi - lo)]) {
                        *o += wv * xv;
                    }
                } else {
                    for (o, &xv) in out.iter_mut().zip(xrow[ix0..].iter().step_by(sw)) {
                        *o += wv * xv;
                    }
                }
            }
        }
    }
}
