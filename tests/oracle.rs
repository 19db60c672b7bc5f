//! An oracle no wgedge code computed. The conformance tests compare the GPU kernels with the CPU
//! reference, but both sides share each op's index arithmetic (one params struct per op), so a
//! stride or padding bug shows on both and passes. Here the expected values come from outside:
//! a few tiny cases are worked out by hand in their comments (`hand_*`); the rest were computed
//! with numpy (float64, then rounded to the nearest f32) by the Python below, whose per-case
//! snippet sits above each `const` at the end of this file (paste the prelude and a snippet into
//! python3). numpy is not needed to run the tests:
//! the numbers are literals. To recompute them, run the prelude and then each snippet, and print
//! `[str(np.float32(v)) for v in y.ravel()]`.
//!
//! Each case is checked on the CPU reference (`Op::cpu`) and, for each choice of constant inputs
//! listed, on the GPU with every distinct kernel plan the chooser can make (defaults, naive, every
//! tune candidate in every slot: `common::kernel_choices`). The matmul and conv tests also
//! assert that every kernel variant family ran on some case.
//!
//! Inputs are small integers (times a power of two for a few) so most results are exact:
//! - matmul, conv, max pooling, transpose, concat, add/sub/mul: every product and partial sum is
//!   an integer below 2^24, exact in f32 in any order (FMA or not), so the tolerance is 0.
//! - average pooling and div: an exact integer sum and one division (or a multiply by a
//!   reciprocal: two roundings). WGSL allows 2.5 ULP for `/`; 1e-6 relative (~8 ULP) plus 1e-7
//!   absolute covers it.
//! - layer norm, batch norm: mean and variance exact or one rounding, then sqrt or inverseSqrt
//!   (WGSL allows 2 ULP for inverseSqrt, sqrt is specified through it) and 2-3 more roundings on
//!   outputs of magnitude <= 10; the float64 oracle also differs from f32 math by a few ULP of
//!   the intermediates: 2e-5 absolute plus 1e-5 relative (~80 ULP at 1.0).
//! - softmax: exp of |x| <= 6 carries 3 + 2|x| <= 15 ULP on Vulkan (~1e-6 relative), then a sum
//!   of <= 3 terms and a division: 1e-6 absolute plus 1e-5 relative.
//!
//! The numpy prelude (the inputs built here with `ramp` / `iota` / explicit arrays are the same):
//!
//! ```python
//! import numpy as np
//! def ramp(shape, seed, m, off, scale=1.0):
//!     # small pseudo-random integers in [-off, m - 1 - off] (times scale); no short period
//!     i = np.arange(int(np.prod(shape)))
//!     return ((((i * i * 7 + i * seed + 3) % 1009) % m) - off).astype(np.float64).reshape(shape) * scale
//! A_BC = np.array([1., -2, 3, 4, -5, 6]).reshape(2, 1, 3)
//! B_BC = np.array([2., -4, 5, 8]).reshape(4, 1)
//! def iota(shape, start):
//!     return (np.arange(int(np.prod(shape))) + start).astype(np.float64).reshape(shape)
//! def conv(x, w, b, stride, pad, dil, groups):
//!     # pad = (top, left, bottom, right); w = [cout, cin/groups, kh, kw]
//!     n, c, h, wd = x.shape; co, cg, kh, kw = w.shape
//!     xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[2]), (pad[1], pad[3])))
//!     oh = (h + pad[0] + pad[2] - dil[0] * (kh - 1) - 1) // stride[0] + 1
//!     ow = (wd + pad[1] + pad[3] - dil[1] * (kw - 1) - 1) // stride[1] + 1
//!     y = np.zeros((n, co, oh, ow)) + (0 if b is None else b[None, :, None, None])
//!     og = co // groups
//!     for o in range(co):
//!         g = o // og
//!         for ci in range(cg):
//!             for r in range(kh):
//!                 for q in range(kw):
//!                     tap = xp[:, g * cg + ci, r * dil[0]: r * dil[0] + stride[0] * (oh - 1) + 1: stride[0],
//!                              q * dil[1]: q * dil[1] + stride[1] * (ow - 1) + 1: stride[1]]
//!                     y[:, o] += w[o, ci, r, q] * tap
//!     return y
//! def pool(x, kind, k, stride, pad, include):
//!     # ONNX MaxPool / AveragePool (ceil_mode 0); include = count_include_pad
//!     p = ((0, 0), (0, 0), (pad[0], pad[2]), (pad[1], pad[3]))
//!     xp = np.pad(x, p, constant_values=(-np.inf if kind == 'max' else 0.0))
//!     ones = np.pad(np.ones_like(x), p)
//!     oh = (xp.shape[2] - k[0]) // stride[0] + 1; ow = (xp.shape[3] - k[1]) // stride[1] + 1
//!     y = np.zeros(x.shape[:2] + (oh, ow))
//!     for i in range(oh):
//!         for j in range(ow):
//!             win = (slice(None), slice(None), slice(i * stride[0], i * stride[0] + k[0]), slice(j * stride[1], j * stride[1] + k[1]))
//!             if kind == 'max':
//!                 y[:, :, i, j] = xp[win].max(axis=(2, 3))
//!             else:
//!                 cnt = k[0] * k[1] if include else ones[win].sum(axis=(2, 3))
//!                 y[:, :, i, j] = xp[win].sum(axis=(2, 3)) / cnt
//!     return y
//! ```
//! (The conv and pool helpers were also checked against a brute-force loop over outputs and taps.)

mod common;
use common::*;
use wgedge::ops::*;
use wgedge::Tensor;

/// Exact: integer arithmetic below 2^24.
const EXACT: (f32, f32) = (0.0, 0.0);
/// One division (or reciprocal and multiply) of exact values.
const DIV: (f32, f32) = (1e-7, 1e-6);
/// Normalisations with sqrt.
const NORM: (f32, f32) = (2e-5, 1e-5);
/// exp, sum, division.
const SOFTMAX: (f32, f32) = (1e-6, 1e-5);

/// `ramp` of the Python prelude.
fn ramp(shape: &[usize], seed: usize, m: usize, off: f32) -> Tensor {
    ramp_scaled(shape, seed, m, off, 1.0)
}

fn ramp_scaled(shape: &[usize], seed: usize, m: usize, off: f32, scale: f32) -> Tensor {
    let n: usize = shape.iter().product();
    let v = (0..n)
        .map(|i| (((i * i * 7 + i * seed + 3) % 1009 % m) as f32 - off) * scale)
        .collect();
    Tensor::new(shape, v).unwrap()
}

/// `iota` of the Python prelude: start, start + 1, ...
fn iota(shape: &[usize], start: f32) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::new(shape, (0..n).map(|i| i as f32 + start).collect()).unwrap()
}

/// `iota(shape, start) * scale`.
fn iota_scaled(shape: &[usize], start: f32, scale: f32) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::new(shape, (0..n).map(|i| (i as f32 + start) * scale).collect()).unwrap()
}

fn t(shape: &[usize], v: &[f32]) -> Tensor {
    Tensor::new(shape, v.to_vec()).unwrap()
}

/// Checks `op` on `inputs` against `want` (of shape `shape`) on the CPU reference and, for each
/// entry of `consts` (which inputs are weights), on the GPU with every distinct kernel plan.
/// Returns the GPU kernels that ran (none without a GPU).
fn oracle(
    what: &str,
    op: Op,
    inputs: &[&Tensor],
    consts: &[&[bool]],
    shape: &[usize],
    want: &[f32],
    (atol, rtol): (f32, f32),
) -> Vec<String> {
    let want = Tensor::new(shape, want.to_vec()).unwrap();
    let got = op
        .cpu(inputs)
        .unwrap_or_else(|e| panic!("{what}: cpu reference: {e}"));
    assert_close(&format!("{what} [cpu reference]"), &got, &want, atol, rtol);
    let mut ran = Vec::new();
    for c in consts {
        let (model, feeds) = single_op(op.clone(), inputs, c);
        ran.extend(check_gpu_kernels(
            &format!("{what} (consts {c:?})"),
            &model,
            &feeds,
            &want,
            atol,
            rtol,
        ));
    }
    ran
}

/// A kernel name without its parameters: `bcast-4x8` -> `bcast`, `depthwise-tex2-4` ->
/// `depthwise-tex2`.
fn variant(kernel: &str) -> String {
    kernel
        .split('-')
        .take_while(|p| !p.starts_with(|c: char| c.is_ascii_digit()))
        .collect::<Vec<_>>()
        .join("-")
}

/// With a GPU, every variant in `families` ran on some case.
fn assert_covered(what: &str, ran: &[String], families: &[&str]) {
    if ran.is_empty() {
        return; // no GPU: counted and announced by `common::gpu`
    }
    let got: std::collections::BTreeSet<String> = ran.iter().map(|k| variant(k)).collect();
    println!("{what}: {} kernel plans ran, variants {got:?}", ran.len());
    for f in families {
        assert!(
            got.contains(*f),
            "{what}: kernel variant '{f}' never ran on an oracle case (ran: {got:?})"
        );
    }
}

fn pool(kind: PoolKind, kernel: [usize; 2], stride: [usize; 2], pad: [usize; 4], inc: bool) -> Op {
    Op::Pool2d(Pool2d {
        kind,
        kernel,
        stride,
        pad,
        count_include_pad: inc,
    })
}

#[test]
fn hand_matmul_trans_a() {
    // A is stored [K, M] = [[1, 2], [3, 4]], so op(A) = A^T = [[1, 3], [2, 4]];
    // B = [[5, 6], [7, 8]]:
    //   C = [[1*5 + 3*7, 1*6 + 3*8], [2*5 + 4*7, 2*6 + 4*8]] = [[26, 30], [38, 44]]
    // (ignoring trans_a would give [[19, 22], [43, 50]]).
    let a = t(&[2, 2], &[1.0, 2.0, 3.0, 4.0]);
    let b = t(&[2, 2], &[5.0, 6.0, 7.0, 8.0]);
    let op = Op::MatMul(MatMul {
        trans_a: true,
        ..Default::default()
    });
    oracle(
        "hand matmul trans_a",
        op,
        &[&a, &b],
        &[&[false, true], &[false, false]],
        &[2, 2],
        &[26.0, 30.0, 38.0, 44.0],
        EXACT,
    );
}

#[test]
fn hand_pooling_padding() {
    // x = [[1, 2], [3, 4]] (1x1x2x2), 2x2 window, stride 1, padding 1 on every side: a 3x3
    // output whose window (i, j) covers input rows i-1..=i and columns j-1..=j.
    //   window sums  [[1, 3, 2], [4, 10, 6], [3, 7, 4]]
    //   real inputs  [[1, 2, 1], [2, 4, 2], [1, 2, 1]]
    //   count_include_pad = true  (divide by 4): [[.25, .75, .5], [1, 2.5, 1.5], [.75, 1.75, 1]]
    //   count_include_pad = false (divide by the count): [[1, 1.5, 2], [2, 2.5, 3], [3, 3.5, 4]]
    let x = t(&[1, 1, 2, 2], &[1.0, 2.0, 3.0, 4.0]);
    oracle(
        "hand avgpool include pad",
        pool(PoolKind::Avg, [2, 2], [1, 1], [1; 4], true),
        &[&x],
        &[&[false]],
        &[1, 1, 3, 3],
        &[0.25, 0.75, 0.5, 1.0, 2.5, 1.5, 0.75, 1.75, 1.0],
        DIV,
    );
    oracle(
        "hand avgpool exclude pad",
        pool(PoolKind::Avg, [2, 2], [1, 1], [1; 4], false),
        &[&x],
        &[&[false]],
        &[1, 1, 3, 3],
        &[1.0, 1.5, 2.0, 2.0, 2.5, 3.0, 3.0, 3.5, 4.0],
        DIV,
    );
    // Max over the same windows of -x: padding must never win (it would give 0 at the edges).
    //   [[-1, -1, -2], [-1, -1, -2], [-3, -3, -4]]
    let nx = t(&[1, 1, 2, 2], &[-1.0, -2.0, -3.0, -4.0]);
    oracle(
        "hand maxpool pad",
        pool(PoolKind::Max, [2, 2], [1, 1], [1; 4], false),
        &[&nx],
        &[&[false]],
        &[1, 1, 3, 3],
        &[-1.0, -1.0, -2.0, -1.0, -1.0, -2.0, -3.0, -3.0, -4.0],
        EXACT,
    );
}

#[test]
fn hand_conv_dilation_groups() {
    // x = 1..=9 as one 3x3 channel; w = [[1, 0], [0, -1]] with dilation 2: the taps hit x[0][0]
    // and x[2][2]: y = 1 - 9 = -8 (without dilation the 2x2 output would be x[i][j] - x[i+1][j+1]
    // = -4 everywhere).
    let x = iota(&[1, 1, 3, 3], 1.0);
    let w = t(&[1, 1, 2, 2], &[1.0, 0.0, 0.0, -1.0]);
    let op = Op::Conv2d(Conv2d {
        dilation: [2, 2],
        ..Default::default()
    });
    oracle(
        "hand conv dilation",
        op,
        &[&x, &w],
        &[&[false, true], &[false, false]],
        &[1, 1, 1, 1],
        &[-8.0],
        EXACT,
    );
    // Two groups, 1x1 kernel: channels [1, 2] and [10, 20] (one pixel); group 0's weights
    // [[1, 1], [1, -1]] see channels 0-1, group 1's [[2, 0], [0, 3]] see channels 2-3:
    //   y = [1 + 2, 1 - 2, 2 * 10, 3 * 20] = [3, -1, 20, 60]
    let x = t(&[1, 4, 1, 1], &[1.0, 2.0, 10.0, 20.0]);
    let w = t(&[4, 2, 1, 1], &[1.0, 1.0, 1.0, -1.0, 2.0, 0.0, 0.0, 3.0]);
    let op = Op::Conv2d(Conv2d {
        groups: 2,
        ..Default::default()
    });
    oracle(
        "hand conv groups",
        op,
        &[&x, &w],
        &[&[false, true], &[false, false]],
        &[1, 4, 1, 1],
        &[3.0, -1.0, 20.0, 60.0],
        EXACT,
    );
}

#[test]
fn matmul() {
    let mut ran = Vec::new();
    let cb: &[&[bool]] = &[&[false, true], &[false, false]];
    let mm = |trans_a, trans_b, bias| {
        Op::MatMul(MatMul {
            trans_a,
            trans_b,
            bias,
            ..Default::default()
        })
    };
    let a = ramp(&[2, 6, 9], 7, 11, 5.0);
    let b = ramp(&[6, 10], 5, 13, 6.0);
    ran.extend(oracle(
        "matmul trans_a batched, shared B",
        mm(true, false, false),
        &[&a, &b],
        cb,
        &MM_TRANS_A_SHAPE,
        &MM_TRANS_A,
        EXACT,
    ));
    let a = ramp(&[2, 5, 8], 3, 7, 3.0);
    let b = ramp(&[10, 8], 5, 9, 4.0);
    let bias = iota(&[10], -4.0);
    ran.extend(oracle(
        "matmul trans_b batched, shared B, bias",
        mm(false, true, true),
        &[&a, &b, &bias],
        &[&[false, true, true], &[false, false, false]],
        &MM_TRANS_B_BIAS_SHAPE,
        &MM_TRANS_B_BIAS,
        EXACT,
    ));
    let a = ramp(&[1, 12], 5, 7, 3.0);
    let b = ramp(&[7, 12], 7, 9, 4.0);
    ran.extend(oracle(
        "matmul gemv trans_b",
        mm(false, true, false),
        &[&a, &b],
        cb,
        &MM_GEMV_SHAPE,
        &MM_GEMV,
        EXACT,
    ));
    let a = ramp(&[4, 3], 5, 7, 3.0);
    let b = ramp(&[5, 4], 3, 11, 5.0);
    ran.extend(oracle(
        "matmul trans_a trans_b",
        mm(true, true, false),
        &[&a, &b],
        cb,
        &MM_BOTH_TRANS_SHAPE,
        &MM_BOTH_TRANS,
        EXACT,
    ));
    let a = ramp(&[2, 3, 4], 5, 9, 4.0);
    let b = ramp(&[2, 3, 5], 7, 11, 5.0);
    ran.extend(oracle(
        "matmul trans_a, per-batch B",
        mm(true, false, false),
        &[&a, &b],
        cb,
        &MM_TRANS_A_PER_BATCH_B_SHAPE,
        &MM_TRANS_A_PER_BATCH_B,
        EXACT,
    ));
    assert_covered(
        "matmul",
        &ran,
        &["naive", "tiled", "vec4", "bcast", "tex", "tex2"],
    );
}

#[test]
fn conv2d() {
    let mut ran = Vec::new();
    let cw: &[&[bool]] = &[&[false, true], &[false, false]];
    let cwb: &[&[bool]] = &[&[false, true, true], &[false, false, false]];
    let conv = |stride, pad, dilation, groups, bias| {
        Op::Conv2d(Conv2d {
            stride,
            pad,
            dilation,
            groups,
            bias,
            ..Default::default()
        })
    };
    let x = ramp(&[1, 3, 9, 8], 5, 17, 8.0);
    let w = ramp(&[4, 3, 3, 3], 7, 5, 2.0);
    let b = iota(&[4], -1.0);
    ran.extend(oracle(
        "conv dilation 2, stride 2, asymmetric pad",
        conv([2, 2], [1, 0, 2, 1], [2, 2], 1, true),
        &[&x, &w, &b],
        cwb,
        &CONV_DIL_STRIDE_ASYM_SHAPE,
        &CONV_DIL_STRIDE_ASYM,
        EXACT,
    ));
    let x = ramp(&[2, 2, 7, 9], 3, 13, 6.0);
    let w = ramp(&[3, 2, 2, 3], 5, 7, 3.0);
    ran.extend(oracle(
        "conv stride (1, 2), dilation (2, 1), asymmetric pad, batch 2",
        conv([1, 2], [0, 2, 1, 0], [2, 1], 1, false),
        &[&x, &w],
        cw,
        &CONV_MIXED_STRIDE_DIL_SHAPE,
        &CONV_MIXED_STRIDE_DIL,
        EXACT,
    ));
    let x = ramp(&[1, 4, 5, 6], 5, 11, 5.0);
    let w = ramp(&[10, 2, 3, 3], 3, 7, 3.0);
    let b = iota(&[10], -5.0);
    ran.extend(oracle(
        "conv groups 2",
        conv([1, 1], [1; 4], [1, 1], 2, true),
        &[&x, &w, &b],
        cwb,
        &CONV_GROUPS2_SHAPE,
        &CONV_GROUPS2,
        EXACT,
    ));
    let x = ramp(&[2, 3, 7, 6], 7, 13, 6.0);
    let w = ramp(&[3, 1, 3, 3], 5, 7, 3.0);
    let b = iota(&[3], -1.0);
    ran.extend(oracle(
        "depthwise stride 2, asymmetric pad",
        conv([2, 2], [1, 0, 1, 2], [1, 1], 3, true),
        &[&x, &w, &b],
        cwb,
        &CONV_DEPTHWISE_S2_ASYM_SHAPE,
        &CONV_DEPTHWISE_S2_ASYM,
        EXACT,
    ));
    let x = ramp(&[1, 4, 6, 6], 5, 11, 5.0);
    let w = ramp(&[4, 1, 3, 3], 3, 7, 3.0);
    ran.extend(oracle(
        "depthwise dilation 2",
        conv([1, 1], [2; 4], [2, 2], 4, false),
        &[&x, &w],
        cw,
        &CONV_DEPTHWISE_DIL_SHAPE,
        &CONV_DEPTHWISE_DIL,
        EXACT,
    ));
    let x = ramp(&[1, 2, 5, 5], 3, 11, 5.0);
    let w = ramp(&[6, 1, 2, 2], 5, 7, 3.0);
    ran.extend(oracle(
        "conv groups 2, channel multiplier 3",
        conv([1, 1], [0; 4], [1, 1], 2, false),
        &[&x, &w],
        cw,
        &CONV_CHANNEL_MULT_SHAPE,
        &CONV_CHANNEL_MULT,
        EXACT,
    ));
    assert_covered(
        "conv2d",
        &ran,
        &["naive", "tiled", "tex2", "depthwise", "depthwise-tex2"],
    );
}

#[test]
fn pooling() {
    let x = ramp(&[1, 2, 5, 6], 7, 13, 6.0);
    for (inc, want) in [(true, &AVG_INCLUDE), (false, &AVG_EXCLUDE)] {
        assert_eq!(AVG_INCLUDE_SHAPE, AVG_EXCLUDE_SHAPE);
        oracle(
            &format!("avgpool 3x3 s2 p1 count_include_pad {inc}"),
            pool(PoolKind::Avg, [3, 3], [2, 2], [1; 4], inc),
            &[&x],
            &[&[false]],
            &AVG_INCLUDE_SHAPE,
            want,
            DIV,
        );
    }
    let x = ramp(&[2, 1, 5, 4], 5, 11, 5.0);
    for (inc, want) in [(true, &AVG_ASYM_INCLUDE), (false, &AVG_ASYM_EXCLUDE)] {
        assert_eq!(AVG_ASYM_INCLUDE_SHAPE, AVG_ASYM_EXCLUDE_SHAPE);
        oracle(
            &format!("avgpool 3x2 s(2,1) asymmetric pad count_include_pad {inc}"),
            pool(PoolKind::Avg, [3, 2], [2, 1], [1, 0, 2, 1], inc),
            &[&x],
            &[&[false]],
            &AVG_ASYM_INCLUDE_SHAPE,
            want,
            DIV,
        );
    }
    let x = ramp(&[1, 2, 5, 6], 7, 13, 20.0);
    oracle(
        "maxpool 3x3 s2 p1, negative input",
        pool(PoolKind::Max, [3, 3], [2, 2], [1; 4], false),
        &[&x],
        &[&[false]],
        &MAX_PAD_SHAPE,
        &MAX_PAD,
        EXACT,
    );
    let x = ramp(&[1, 2, 4, 5], 5, 11, 15.0);
    oracle(
        "maxpool 2x3 s(1,2) asymmetric pad, negative input",
        pool(PoolKind::Max, [2, 3], [1, 2], [1, 2, 0, 1], false),
        &[&x],
        &[&[false]],
        &MAX_ASYM_SHAPE,
        &MAX_ASYM,
        EXACT,
    );
}

#[test]
fn norms() {
    let c3: &[&[bool]] = &[&[false, true, true], &[false, false, false]];
    let x = ramp(&[3, 5], 3, 7, 3.0);
    let g = t(&[5], &[1.0, 2.0, -1.0, 0.5, 3.0]);
    let b = t(&[5], &[0.0, 1.0, -2.0, 0.5, -0.25]);
    oracle(
        "layer norm axis -1",
        Op::LayerNorm(LayerNorm {
            axis: -1,
            eps: 1e-5,
        }),
        &[&x, &g, &b],
        c3,
        &LN_LAST_SHAPE,
        &LN_LAST,
        NORM,
    );
    let x = ramp(&[2, 3, 4], 5, 11, 5.0);
    let g = iota_scaled(&[3, 4], 1.0, 0.25);
    let b = iota_scaled(&[3, 4], -6.0, 0.5);
    oracle(
        "layer norm over [3, 4] (axis 1)",
        Op::LayerNorm(LayerNorm { axis: 1, eps: 1e-5 }),
        &[&x, &g, &b],
        c3,
        &LN_MULTI_SHAPE,
        &LN_MULTI,
        NORM,
    );
    let c5: &[&[bool]] = &[&[false, true, true, true, true], &[false; 5]];
    let g = t(&[3], &[1.0, 2.0, -0.5]);
    let b = t(&[3], &[0.5, -1.0, 2.0]);
    let m = t(&[3], &[-1.0, 0.5, 2.0]);
    let v = t(&[3], &[2.0, 0.5, 4.0]);
    let bn = Op::BatchNorm(BatchNorm { eps: 1e-5 });
    let x = ramp(&[2, 3, 2, 3], 5, 11, 5.0);
    oracle(
        "batch norm NCHW",
        bn.clone(),
        &[&x, &g, &b, &m, &v],
        c5,
        &BN4_SHAPE,
        &BN4,
        NORM,
    );
    let x = ramp(&[2, 3, 4], 7, 13, 6.0);
    oracle(
        "batch norm NCL",
        bn,
        &[&x, &g, &b, &m, &v],
        c5,
        &BN3_SHAPE,
        &BN3,
        NORM,
    );
}

#[test]
fn broadcasting_binary() {
    let a = t(&[2, 1, 3], &[1.0, -2.0, 3.0, 4.0, -5.0, 6.0]);
    let b = t(&[4, 1], &[2.0, -4.0, 5.0, 8.0]);
    type Case = (
        &'static str,
        BinaryKind,
        bool,
        [usize; 3],
        &'static [f32; 24],
        (f32, f32),
    );
    let cases: [Case; 6] = [
        ("add", BinaryKind::Add, false, BC_ADD_SHAPE, &BC_ADD, EXACT),
        ("sub", BinaryKind::Sub, false, BC_SUB_SHAPE, &BC_SUB, EXACT),
        (
            "sub reversed",
            BinaryKind::Sub,
            true,
            BC_SUB_REV_SHAPE,
            &BC_SUB_REV,
            EXACT,
        ),
        ("mul", BinaryKind::Mul, false, BC_MUL_SHAPE, &BC_MUL, EXACT),
        ("div", BinaryKind::Div, false, BC_DIV_SHAPE, &BC_DIV, DIV),
        (
            "div reversed",
            BinaryKind::Div,
            true,
            BC_DIV_REV_SHAPE,
            &BC_DIV_REV,
            DIV,
        ),
    ];
    for (name, kind, rev, shape, want, tol) in cases {
        let op = Op::Binary(Binary {
            kind,
            act: Activation::None,
        });
        let (l, r, what) = if rev {
            (&b, &a, format!("[4,1] {name} [2,1,3]"))
        } else {
            (&a, &b, format!("[2,1,3] {name} [4,1]"))
        };
        oracle(
            &what,
            op,
            &[l, r],
            &[&[false, false], &[false, true], &[true, false]],
            &shape,
            want,
            tol,
        );
    }
}

#[test]
fn transpose_concat_softmax() {
    let x = iota(&[2, 3, 4, 5], 0.0);
    for (perm, shape, want) in [
        ([2, 0, 3, 1], TRANSPOSE_2031_SHAPE, &TRANSPOSE_2031),
        ([0, 2, 3, 1], TRANSPOSE_0231_SHAPE, &TRANSPOSE_0231),
    ] {
        oracle(
            &format!("transpose {perm:?}"),
            Op::Transpose(Transpose {
                perm: perm.to_vec(),
            }),
            &[&x],
            &[&[false]],
            &shape,
            want,
            EXACT,
        );
    }
    let a = iota(&[2, 2, 3], 0.0);
    let b = iota(&[2, 1, 3], 100.0);
    let c = iota(&[2, 3, 3], 200.0);
    oracle(
        "concat axis 1 of 3",
        Op::Concat(Concat { axis: 1 }),
        &[&a, &b, &c],
        &[&[false, false, false], &[false, true, false]],
        &CONCAT_MID_SHAPE,
        &CONCAT_MID,
        EXACT,
    );
    oracle(
        "concat axis -2 of 3",
        Op::Concat(Concat { axis: -2 }),
        &[&a, &b, &c],
        &[&[false, false, false]],
        &CONCAT_MID_SHAPE,
        &CONCAT_MID,
        EXACT,
    );
    let sm = |axis| Op::Softmax(Softmax { axis });
    let x = ramp(&[3, 4], 5, 7, 3.0);
    oracle(
        "softmax [3, 4] axis 0",
        sm(0),
        &[&x],
        &[&[false]],
        &SOFTMAX_AXIS0_SHAPE,
        &SOFTMAX_AXIS0,
        SOFTMAX,
    );
    let x = ramp(&[3, 2, 2], 5, 7, 3.0);
    oracle(
        "softmax [3, 2, 2] axis 0",
        sm(0),
        &[&x],
        &[&[false]],
        &SOFTMAX_AXIS0_R3_SHAPE,
        &SOFTMAX_AXIS0_R3,
        SOFTMAX,
    );
    let x = ramp_scaled(&[2, 3, 2], 3, 7, 3.0, 0.5);
    oracle(
        "softmax [2, 3, 2] axis 1",
        sm(1),
        &[&x],
        &[&[false]],
        &SOFTMAX_AXIS1_R3_SHAPE,
        &SOFTMAX_AXIS1_R3,
        SOFTMAX,
    );
}

#[test]
fn hand_maxpool_neg_inf() {
    // x = [[-inf, -inf], [3, -inf]] (1x1x2x2), 1x2 window, stride 1, no padding:
    //   row 0: max(-inf, -inf) = -inf; row 1: max(3, -inf) = 3 (ONNX MaxPool, numpy max).
    let x = t(
        &[1, 1, 2, 2],
        &[f32::NEG_INFINITY, f32::NEG_INFINITY, 3.0, f32::NEG_INFINITY],
    );
    oracle(
        "hand maxpool -inf",
        pool(PoolKind::Max, [1, 2], [1, 1], [0; 4], false),
        &[&x],
        &[&[false]],
        &[1, 1, 2, 1],
        &[f32::NEG_INFINITY, 3.0],
        EXACT,
    );
}
// ---- generated by the script in the header; do not edit by hand ----

//  a = ramp([2, 6, 9], 7, 11, 5)        # trans_a: [batch, K, M]
//  b = ramp([6, 10], 5, 13, 6)          # [K, N], shared by both batches
//  y = np.swapaxes(a, -1, -2) @ b
const MM_TRANS_A_SHAPE: [usize; 3] = [2, 9, 10];
#[rustfmt::skip]
const MM_TRANS_A: [f32; 180] = [
    26.0, 31.0, 12.0, -9.0, 11.0, -2.0, -21.0, -11.0, -22.0, -4.0, -16.0, 4.0, -17.0, -11.0,
    -31.0, 19.0, -4.0, 16.0, -13.0, -14.0, 47.0, 8.0, -15.0, 26.0, -10.0, -17.0, -82.0, 52.0,
    -17.0, 28.0, 39.0, -19.0, 16.0, -8.0, 31.0, -17.0, 23.0, -13.0, 23.0, -13.0, 35.0, -19.0,
    30.0, 46.0, -10.0, -32.0, -55.0, 79.0, -10.0, 8.0, -23.0, -26.0, -32.0, 24.0, -11.0, -4.0,
    -15.0, 20.0, 21.0, 34.0, -11.0, -32.0, 30.0, 40.0, 28.0, -43.0, -11.0, 32.0, 22.0, 15.0,
    35.0, -28.0, 12.0, -8.0, 30.0, -25.0, 13.0, 6.0, 26.0, -21.0, 16.0, -28.0, 39.0, 42.0, 34.0,
    -43.0, -9.0, 23.0, 21.0, 20.0, -41.0, 11.0, -11.0, -34.0, 4.0, 23.0, 50.0, -52.0, 5.0,
    -18.0, 2.0, -41.0, 19.0, 49.0, 23.0, -50.0, -34.0, 55.0, 25.0, 23.0, -29.0, -30.0, -44.0,
    19.0, -32.0, 11.0, -8.0, 26.0, 19.0, 29.0, 14.0, -19.0, 28.0, 36.0, 17.0, -32.0, -20.0,
    31.0, 9.0, 16.0, 13.0, 6.0, 5.0, -6.0, 14.0, -30.0, -52.0, 43.0, -13.0, -25.0, 9.0, 0.0,
    -4.0, 9.0, 15.0, 6.0, 22.0, -42.0, 16.0, 34.0, 92.0, 19.0, 38.0, 25.0, 20.0, -26.0, -53.0,
    22.0, -21.0, 16.0, -21.0, 14.0, -15.0, 20.0, -58.0, 29.0, -28.0, 34.0, -31.0, 18.0, -7.0,
    43.0, 40.0, -16.0, 19.0, 18.0, 45.0, -70.0, -21.0, -6.0,
];

//  a = ramp([2, 5, 8], 3, 7, 3)         # [batch, M, K]
//  b = ramp([10, 8], 5, 9, 4)           # trans_b: [N, K], shared
//  bias = iota([10], -4)
//  y = a @ b.T + bias
const MM_TRANS_B_BIAS_SHAPE: [usize; 3] = [2, 5, 10];
#[rustfmt::skip]
const MM_TRANS_B_BIAS: [f32; 100] = [
    -4.0, -10.0, -4.0, 25.0, 20.0, 25.0, 11.0, 0.0, 2.0, 19.0, 0.0, 17.0, -13.0, -36.0, 15.0,
    21.0, -1.0, -19.0, 1.0, -11.0, -9.0, -1.0, -21.0, -6.0, -4.0, -15.0, 3.0, 10.0, 17.0, 19.0,
    -12.0, -10.0, -2.0, 12.0, 2.0, -7.0, -11.0, 11.0, 0.0, 22.0, -4.0, -7.0, -21.0, 3.0, -3.0,
    -14.0, 7.0, 6.0, 17.0, 22.0, 7.0, 4.0, -2.0, -13.0, -9.0, -6.0, 14.0, 0.0, -7.0, 2.0, -3.0,
    -8.0, 8.0, 0.0, -8.0, 5.0, 7.0, 2.0, 14.0, -8.0, -9.0, -19.0, -6.0, 22.0, 3.0, -7.0, -10.0,
    2.0, 4.0, 26.0, -9.0, -9.0, -9.0, 0.0, 18.0, 35.0, 4.0, -13.0, 34.0, 4.0, 25.0, -6.0, 9.0,
    -14.0, -17.0, -30.0, -1.0, 1.0, 2.0, -20.0,
];

//  a = ramp([1, 12], 5, 7, 3)
//  b = ramp([7, 12], 7, 9, 4)           # trans_b: [N, K]
//  y = a @ b.T
const MM_GEMV_SHAPE: [usize; 2] = [1, 7];
#[rustfmt::skip]
const MM_GEMV: [f32; 7] = [
    -29.0, -6.0, -7.0, 7.0, 5.0, -10.0, 3.0,
];

//  a = ramp([4, 3], 5, 7, 3)            # trans_a: [K, M]
//  b = ramp([5, 4], 3, 11, 5)           # trans_b: [N, K]
//  y = a.T @ b.T
const MM_BOTH_TRANS_SHAPE: [usize; 2] = [3, 5];
#[rustfmt::skip]
const MM_BOTH_TRANS: [f32; 15] = [
    7.0, 6.0, -4.0, 6.0, 18.0, 11.0, -4.0, 6.0, 2.0, -4.0, 1.0, -7.0, -5.0, -2.0, 2.0,
];

//  a = ramp([2, 3, 4], 5, 9, 4)         # trans_a: [batch, K, M]
//  b = ramp([2, 3, 5], 7, 11, 5)        # [batch, K, N]
//  y = np.swapaxes(a, -1, -2) @ b
const MM_TRANS_A_PER_BATCH_B_SHAPE: [usize; 3] = [2, 4, 5];
#[rustfmt::skip]
const MM_TRANS_A_PER_BATCH_B: [f32; 40] = [
    4.0, 17.0, -12.0, 10.0, -2.0, -3.0, -1.0, -7.0, 7.0, -6.0, -8.0, -13.0, 14.0, -5.0, -9.0,
    7.0, -1.0, 15.0, -17.0, 16.0, 5.0, 20.0, 9.0, 3.0, 13.0, -14.0, 4.0, 14.0, -1.0, 13.0, 2.0,
    4.0, 18.0, 1.0, 11.0, 8.0, 10.0, -5.0, 2.0, 0.0,
];

//  x = ramp([1, 3, 9, 8], 5, 17, 8)
//  w = ramp([4, 3, 3, 3], 7, 5, 2)
//  bias = iota([4], -1)
//  y = conv(x, w, bias, stride=(2, 2), pad=(1, 0, 2, 1), dil=(2, 2), groups=1)
const CONV_DIL_STRIDE_ASYM_SHAPE: [usize; 4] = [1, 4, 4, 3];
#[rustfmt::skip]
const CONV_DIL_STRIDE_ASYM: [f32; 48] = [
    -3.0, 3.0, 55.0, 32.0, -22.0, -32.0, 44.0, 2.0, 29.0, 3.0, 30.0, -26.0, -35.0, -11.0, -11.0,
    55.0, 9.0, 58.0, -9.0, 3.0, 7.0, 42.0, 0.0, -32.0, -18.0, -5.0, -17.0, 5.0, 13.0, -5.0,
    -17.0, -15.0, 16.0, 65.0, -28.0, 5.0, -5.0, -21.0, -25.0, 36.0, 42.0, 46.0, 12.0, 19.0,
    18.0, 12.0, 6.0, -4.0,
];

//  x = ramp([2, 2, 7, 9], 3, 13, 6)
//  w = ramp([3, 2, 2, 3], 5, 7, 3)
//  y = conv(x, w, None, stride=(1, 2), pad=(0, 2, 1, 0), dil=(2, 1), groups=1)
const CONV_MIXED_STRIDE_DIL_SHAPE: [usize; 4] = [2, 3, 6, 5];
#[rustfmt::skip]
const CONV_MIXED_STRIDE_DIL: [f32; 180] = [
    -6.0, 28.0, -1.0, -36.0, 29.0, 15.0, -16.0, 23.0, -41.0, 15.0, -2.0, -17.0, -3.0, -5.0,
    29.0, 25.0, 17.0, 6.0, -1.0, -34.0, 2.0, -3.0, -7.0, 41.0, 18.0, -15.0, 6.0, 21.0, 0.0,
    -6.0, 1.0, 5.0, 65.0, 10.0, -34.0, -12.0, 28.0, 20.0, 35.0, -29.0, -7.0, 6.0, -3.0, -38.0,
    -4.0, -5.0, 15.0, 39.0, 21.0, 22.0, -6.0, 8.0, -43.0, -46.0, 26.0, 1.0, -19.0, 6.0, 29.0,
    12.0, 7.0, 19.0, 29.0, -17.0, 5.0, 10.0, 5.0, -13.0, 24.0, -20.0, 2.0, -10.0, 24.0, -6.0,
    4.0, -1.0, -11.0, 16.0, 56.0, -18.0, -7.0, -29.0, -41.0, -34.0, 45.0, -6.0, -11.0, 20.0,
    29.0, 8.0, -14.0, 31.0, -4.0, -1.0, -2.0, -9.0, -23.0, 1.0, 9.0, 24.0, 3.0, 35.0, -22.0,
    -1.0, 11.0, 0.0, 4.0, 12.0, 15.0, -13.0, -28.0, 5.0, 13.0, 46.0, -5.0, 20.0, 0.0, -7.0,
    -28.0, 30.0, 4.0, -49.0, 30.0, 25.0, 5.0, -1.0, -8.0, -45.0, 9.0, 10.0, 7.0, -28.0, -10.0,
    -46.0, -16.0, -9.0, -2.0, -11.0, -3.0, -19.0, 6.0, -43.0, -38.0, -6.0, 47.0, -6.0, 15.0,
    12.0, -11.0, -42.0, -6.0, -24.0, 6.0, 41.0, 7.0, 5.0, -3.0, -18.0, 3.0, 43.0, -8.0, -28.0,
    -23.0, -26.0, -10.0, 5.0, -17.0, -47.0, -41.0, 13.0, -6.0, -8.0, -36.0, -36.0, -4.0, 1.0,
    -18.0, -15.0, -22.0, 4.0,
];

//  x = ramp([1, 4, 5, 6], 5, 11, 5)
//  w = ramp([10, 2, 3, 3], 3, 7, 3)
//  bias = iota([10], -5)
//  y = conv(x, w, bias, stride=(1, 1), pad=(1, 1, 1, 1), dil=(1, 1), groups=2)
const CONV_GROUPS2_SHAPE: [usize; 4] = [1, 10, 5, 6];
#[rustfmt::skip]
const CONV_GROUPS2: [f32; 300] = [
    -11.0, -7.0, 7.0, -25.0, -26.0, 6.0, -24.0, 19.0, 2.0, 2.0, -15.0, 7.0, -16.0, 9.0, -6.0,
    -4.0, -15.0, 25.0, 5.0, -21.0, 17.0, -29.0, 1.0, -18.0, -3.0, -17.0, -7.0, -19.0, 10.0,
    -8.0, -7.0, 18.0, -26.0, -28.0, -6.0, 23.0, 15.0, -28.0, 6.0, -27.0, -28.0, 0.0, -9.0, 14.0,
    51.0, 2.0, 31.0, -12.0, 1.0, 1.0, -20.0, -4.0, 28.0, 17.0, 14.0, -34.0, -18.0, -15.0, -26.0,
    -7.0, -11.0, -2.0, 2.0, -6.0, 3.0, -11.0, -13.0, 13.0, -30.0, 4.0, -8.0, 1.0, -26.0, 15.0,
    -34.0, -7.0, -13.0, 25.0, -11.0, 43.0, -39.0, -5.0, -3.0, 21.0, -17.0, 27.0, -3.0, -15.0,
    20.0, 25.0, -6.0, -14.0, -14.0, -2.0, 2.0, 10.0, -41.0, 42.0, -40.0, -26.0, -2.0, 22.0,
    23.0, 27.0, -15.0, -3.0, 11.0, 15.0, -25.0, -9.0, 2.0, -9.0, 48.0, 13.0, 18.0, 15.0, -15.0,
    -12.0, 38.0, 10.0, -7.0, 18.0, 5.0, -15.0, 10.0, 19.0, -20.0, 26.0, -21.0, -20.0, -36.0,
    4.0, 3.0, -22.0, 37.0, -22.0, -28.0, -26.0, -13.0, 17.0, 13.0, 1.0, 38.0, 8.0, 0.0, -25.0,
    -2.0, -21.0, -28.0, 46.0, -10.0, -17.0, -2.0, 23.0, 21.0, -21.0, -9.0, -7.0, -12.0, 11.0,
    53.0, 11.0, -10.0, 4.0, -27.0, -6.0, 7.0, 21.0, -5.0, -17.0, 14.0, 19.0, -12.0, -2.0, 8.0,
    -2.0, -14.0, 9.0, 17.0, -12.0, 0.0, 33.0, -34.0, 21.0, -44.0, 25.0, -4.0, 2.0, 2.0, 9.0,
    -16.0, -12.0, -5.0, -4.0, 7.0, -26.0, 1.0, -2.0, -44.0, 33.0, -13.0, -19.0, -13.0, 11.0,
    32.0, 3.0, -35.0, 30.0, -13.0, -7.0, -37.0, 33.0, 0.0, -8.0, 11.0, 12.0, 10.0, 2.0, -5.0,
    0.0, -11.0, -28.0, -3.0, 4.0, 3.0, 11.0, 41.0, -27.0, -40.0, 15.0, -13.0, 30.0, -18.0, -4.0,
    25.0, 41.0, -7.0, 14.0, -8.0, -14.0, 25.0, 29.0, 19.0, 3.0, -8.0, -16.0, -12.0, -31.0,
    -11.0, -9.0, -2.0, 12.0, 24.0, -25.0, -6.0, 7.0, 2.0, -10.0, 27.0, -31.0, -26.0, -30.0, 3.0,
    37.0, 22.0, -8.0, 9.0, -31.0, -2.0, 8.0, 14.0, 26.0, -16.0, -11.0, -14.0, -6.0, 40.0, 7.0,
    -23.0, 18.0, 4.0, 42.0, 2.0, -5.0, 22.0, -15.0, -31.0, -10.0, -42.0, 26.0, 49.0, 29.0, 7.0,
    8.0, -16.0, 14.0, 14.0, 12.0, 44.0, 38.0,
];

//  x = ramp([2, 3, 7, 6], 7, 13, 6)
//  w = ramp([3, 1, 3, 3], 5, 7, 3)
//  bias = iota([3], -1)
//  y = conv(x, w, bias, stride=(2, 2), pad=(1, 0, 1, 2), dil=(1, 1), groups=3)
const CONV_DEPTHWISE_S2_ASYM_SHAPE: [usize; 4] = [2, 3, 4, 3];
#[rustfmt::skip]
const CONV_DEPTHWISE_S2_ASYM: [f32; 72] = [
    20.0, 2.0, -6.0, -26.0, -12.0, 4.0, -34.0, 44.0, -10.0, 13.0, -9.0, -11.0, -43.0, -26.0,
    -7.0, -9.0, 9.0, 32.0, 29.0, 12.0, -42.0, -7.0, -8.0, -7.0, -14.0, 5.0, 16.0, 43.0, 52.0,
    9.0, 54.0, 51.0, 9.0, 28.0, 9.0, 6.0, 7.0, -26.0, 6.0, -20.0, 19.0, -9.0, -1.0, 0.0, 3.0,
    -26.0, 9.0, -13.0, 13.0, 13.0, -3.0, 10.0, -13.0, -11.0, 5.0, -5.0, -26.0, -2.0, 21.0,
    -16.0, 38.0, 12.0, -35.0, 32.0, -22.0, -31.0, -8.0, -12.0, -30.0, 32.0, -18.0, 0.0,
];

//  x = ramp([1, 4, 6, 6], 5, 11, 5)
//  w = ramp([4, 1, 3, 3], 3, 7, 3)
//  y = conv(x, w, None, stride=(1, 1), pad=(2, 2, 2, 2), dil=(2, 2), groups=4)
const CONV_DEPTHWISE_DIL_SHAPE: [usize; 4] = [1, 4, 6, 6];
#[rustfmt::skip]
const CONV_DEPTHWISE_DIL: [f32; 144] = [
    13.0, 4.0, -9.0, 15.0, 4.0, -5.0, -8.0, -5.0, 3.0, -8.0, 4.0, 20.0, -14.0, 21.0, -4.0,
    -30.0, -5.0, -10.0, 16.0, -4.0, 5.0, 24.0, 11.0, 5.0, -5.0, -12.0, 11.0, -10.0, 11.0, 18.0,
    -6.0, -12.0, 3.0, 10.0, -16.0, -25.0, 11.0, -1.0, -9.0, 10.0, 0.0, 16.0, -23.0, -2.0, 23.0,
    -25.0, -3.0, -2.0, 23.0, 23.0, -25.0, 4.0, 23.0, -18.0, 2.0, -30.0, 4.0, 14.0, 2.0, 23.0,
    -7.0, -4.0, 0.0, -8.0, 10.0, -12.0, 12.0, -3.0, -12.0, 5.0, 8.0, -10.0, -32.0, -5.0, 17.0,
    0.0, 2.0, -8.0, -5.0, -4.0, -12.0, -33.0, 6.0, -7.0, -14.0, -5.0, 32.0, 23.0, -35.0, -15.0,
    -29.0, -1.0, 27.0, 0.0, -3.0, -17.0, 22.0, 18.0, -26.0, -28.0, 8.0, -5.0, 18.0, 18.0, 18.0,
    10.0, -19.0, -7.0, 0.0, -7.0, -7.0, 6.0, 3.0, -10.0, 13.0, 3.0, 7.0, -12.0, 3.0, 19.0, -5.0,
    10.0, 10.0, -8.0, 1.0, -5.0, 18.0, -6.0, 13.0, -14.0, 15.0, 4.0, -8.0, 19.0, 13.0, -13.0,
    -7.0, 6.0, 3.0, -7.0, 3.0, -1.0, 11.0, -3.0,
];

//  x = ramp([1, 2, 5, 5], 3, 11, 5)
//  w = ramp([6, 1, 2, 2], 5, 7, 3)
//  y = conv(x, w, None, stride=(1, 1), pad=(0, 0, 0, 0), dil=(1, 1), groups=2)
const CONV_CHANNEL_MULT_SHAPE: [usize; 4] = [1, 6, 4, 4];
#[rustfmt::skip]
const CONV_CHANNEL_MULT: [f32; 96] = [
    13.0, 13.0, -14.0, -13.0, -4.0, -4.0, 8.0, 6.0, 20.0, 11.0, -2.0, 26.0, 4.0, -2.0, -27.0,
    -21.0, 13.0, 14.0, -13.0, -13.0, -9.0, -5.0, 10.0, 13.0, 12.0, 10.0, -8.0, 20.0, -8.0, -1.0,
    -22.0, -24.0, -8.0, 8.0, 16.0, -6.0, 14.0, -13.0, -9.0, 6.0, -10.0, 9.0, 0.0, -14.0, 8.0,
    -7.0, 18.0, -6.0, -2.0, 3.0, 20.0, 0.0, 22.0, 33.0, 11.0, -11.0, 11.0, -11.0, -33.0, -22.0,
    8.0, -20.0, -12.0, -1.0, 6.0, -14.0, 4.0, -2.0, -4.0, 5.0, 16.0, 3.0, 1.0, 12.0, -1.0,
    -12.0, 10.0, 12.0, -8.0, 1.0, 2.0, -5.0, 11.0, -15.0, -13.0, -7.0, -1.0, -1.0, 4.0, 9.0,
    8.0, 7.0, -1.0, -9.0, -5.0, -2.0,
];

//  x = ramp([1, 2, 5, 6], 7, 13, 6)
//  y = pool(x, 'avg', k=(3, 3), stride=(2, 2), pad=(1, 1, 1, 1), include=True)
const AVG_INCLUDE_SHAPE: [usize; 4] = [1, 2, 3, 3];
#[rustfmt::skip]
const AVG_INCLUDE: [f32; 18] = [
    -0.11111111, -0.33333334, -0.33333334, 0.6666667, 0.0, 0.8888889, 0.7777778, -0.11111111,
    -0.7777778, 1.2222222, -0.7777778, -0.7777778, 0.11111111, -2.3333333, -0.5555556,
    -0.11111111, 0.44444445, 1.0,
];

//  x = ramp([1, 2, 5, 6], 7, 13, 6)
//  y = pool(x, 'avg', k=(3, 3), stride=(2, 2), pad=(1, 1, 1, 1), include=False)
const AVG_EXCLUDE_SHAPE: [usize; 4] = [1, 2, 3, 3];
#[rustfmt::skip]
const AVG_EXCLUDE: [f32; 18] = [
    -0.25, -0.5, -0.5, 1.0, 0.0, 0.8888889, 1.75, -0.16666667, -1.1666666, 2.75, -1.1666666,
    -1.1666666, 0.16666667, -2.3333333, -0.5555556, -0.25, 0.6666667, 1.5,
];

//  x = ramp([2, 1, 5, 4], 5, 11, 5)
//  y = pool(x, 'avg', k=(3, 2), stride=(2, 1), pad=(1, 0, 2, 1), include=True)
const AVG_ASYM_INCLUDE_SHAPE: [usize; 4] = [2, 1, 3, 4];
#[rustfmt::skip]
const AVG_ASYM_INCLUDE: [f32; 24] = [
    -0.8333333, 1.1666666, 1.5, 0.16666667, 0.33333334, 1.1666666, 1.3333334, 0.16666667, 0.0,
    -1.0, -0.5, -0.33333334, 0.33333334, -1.1666666, -0.6666667, 0.16666667, -1.1666666,
    -1.6666666, 1.3333334, 1.6666666, 0.5, -0.33333334, 0.8333333, 1.1666666,
];

//  x = ramp([2, 1, 5, 4], 5, 11, 5)
//  y = pool(x, 'avg', k=(3, 2), stride=(2, 1), pad=(1, 0, 2, 1), include=False)
const AVG_ASYM_EXCLUDE_SHAPE: [usize; 4] = [2, 1, 3, 4];
#[rustfmt::skip]
const AVG_ASYM_EXCLUDE: [f32; 24] = [
    -1.25, 1.75, 2.25, 0.5, 0.33333334, 1.1666666, 1.3333334, 0.33333334, 0.0, -1.5, -0.75,
    -1.0, 0.5, -1.75, -1.0, 0.5, -1.1666666, -1.6666666, 1.3333334, 3.3333333, 0.75, -0.5, 1.25,
    3.5,
];

//  x = ramp([1, 2, 5, 6], 7, 13, 20)    # all negative: padding must not win
//  y = pool(x, 'max', k=(3, 3), stride=(2, 2), pad=(1, 1, 1, 1), include=False)
const MAX_PAD_SHAPE: [usize; 4] = [1, 2, 3, 3];
#[rustfmt::skip]
const MAX_PAD: [f32; 18] = [
    -9.0, -11.0, -11.0, -9.0, -9.0, -9.0, -9.0, -10.0, -9.0, -8.0, -10.0, -10.0, -8.0, -9.0,
    -10.0, -9.0, -9.0, -9.0,
];

//  x = ramp([1, 2, 4, 5], 5, 11, 15)    # all negative
//  y = pool(x, 'max', k=(2, 3), stride=(1, 2), pad=(1, 2, 0, 1), include=False)
const MAX_ASYM_SHAPE: [usize; 4] = [1, 2, 4, 3];
#[rustfmt::skip]
const MAX_ASYM: [f32; 24] = [
    -12.0, -7.0, -7.0, -10.0, -5.0, -5.0, -10.0, -5.0, -5.0, -9.0, -7.0, -8.0, -10.0, -10.0,
    -6.0, -10.0, -6.0, -6.0, -10.0, -6.0, -6.0, -5.0, -5.0, -7.0,
];

//  x = ramp([3, 5], 3, 7, 3)
//  g = np.array([1, 2, -1, 0.5, 3]); b = np.array([0, 1, -2, 0.5, -0.25])
//  mu = x.mean(-1, keepdims=True); var = x.var(-1, keepdims=True)
//  y = (x - mu) / np.sqrt(var + 1e-5) * g + b
const LN_LAST_SHAPE: [usize; 2] = [3, 5];
#[rustfmt::skip]
const LN_LAST: [f32; 15] = [
    -0.21566524, 3.803648, -1.2451717, 0.93133044, -4.131974, 0.49999937, -1.9999963, -2.0,
    1.249999, -1.7499981, 0.86266094, -1.5879828, -1.7843348, 1.200912, -2.514485,
];

//  x = ramp([2, 3, 4], 5, 11, 5)        # normalized over the last two dims (axis 1)
//  g = iota([3, 4], 1) * 0.25; b = iota([3, 4], -6) * 0.5
//  mu = x.mean((1, 2), keepdims=True); var = x.var((1, 2), keepdims=True)
//  y = (x - mu) / np.sqrt(var + 1e-5) * g + b
const LN_MULTI_SHAPE: [usize; 3] = [2, 3, 4];
#[rustfmt::skip]
const LN_MULTI: [f32; 24] = [
    -3.276385, -2.851763, -1.3216001, -2.203526, -2.3819258, -0.95226663, 2.989985, 1.505037,
    2.1306667, 5.771407, 1.1708444, -0.81662214, -2.705826, -3.284464, -1.117478, -0.71553606,
    0.9611598, 0.08834796, -1.3728119, -1.0689279, 1.882522, 0.5194201, -1.2359138, 0.14660819,
];

//  x = ramp([2, 3, 2, 3], 5, 11, 5)
//  g = np.array([1, 2, -0.5]); b = np.array([0.5, -1, 2]); m = np.array([-1, 0.5, 2]); v = np.array([2, 0.5, 4])
//  c = lambda t: t[None, :, None, None]
//  y = (x - c(m)) / np.sqrt(c(v) + 1e-5) * c(g) + c(b)
const BN4_SHAPE: [usize; 4] = [2, 3, 2, 3];
#[rustfmt::skip]
const BN4: [f32; 36] = [
    -0.20710501, 0.5, 3.3284202, 0.5, -0.20710501, 1.207105, 11.727795, 3.2425983, 3.2425983,
    11.727795, -2.4141994, -8.070997, 2.0, 3.7499979, 2.0, 2.2499998, 1.7500004, 2.4999993,
    -0.91421, -0.91421, 1.207105, -0.20710501, -1.621315, -0.91421, 8.899396, -2.4141994,
    -5.242598, 8.899396, -8.070997, -16.556194, 2.9999988, 2.2499998, 2.749999, 3.2499983,
    2.2499998, 1.250001,
];

//  x = ramp([2, 3, 4], 7, 13, 6)
//  g = np.array([1, 2, -0.5]); b = np.array([0.5, -1, 2]); m = np.array([-1, 0.5, 2]); v = np.array([2, 0.5, 4])
//  c = lambda t: t[None, :, None]
//  y = (x - c(m)) / np.sqrt(c(v) + 1e-5) * c(g) + c(b)
const BN3_SHAPE: [usize; 3] = [2, 3, 4];
#[rustfmt::skip]
const BN3: [f32; 24] = [
    -0.91421, -0.20710501, 1.207105, 3.3284202, -19.384592, -5.242598, 11.727795, -5.242598,
    3.9999976, 1.7500004, 2.4999993, 2.9999988, 2.621315, 2.621315, 3.3284202, 4.74263,
    -16.556194, 8.899396, -13.727795, 3.2425983, 3.499998, 3.499998, 1.250001, 2.0,
];

//  a = A_BC; b = B_BC
//  y = a + b
const BC_ADD_SHAPE: [usize; 3] = [2, 4, 3];
#[rustfmt::skip]
const BC_ADD: [f32; 24] = [
    3.0, 0.0, 5.0, -3.0, -6.0, -1.0, 6.0, 3.0, 8.0, 9.0, 6.0, 11.0, 6.0, -3.0, 8.0, 0.0, -9.0,
    2.0, 9.0, 0.0, 11.0, 12.0, 3.0, 14.0,
];

//  a = A_BC; b = B_BC
//  y = a - b
const BC_SUB_SHAPE: [usize; 3] = [2, 4, 3];
#[rustfmt::skip]
const BC_SUB: [f32; 24] = [
    -1.0, -4.0, 1.0, 5.0, 2.0, 7.0, -4.0, -7.0, -2.0, -7.0, -10.0, -5.0, 2.0, -7.0, 4.0, 8.0,
    -1.0, 10.0, -1.0, -10.0, 1.0, -4.0, -13.0, -2.0,
];

//  a = A_BC; b = B_BC
//  y = b - a
const BC_SUB_REV_SHAPE: [usize; 3] = [2, 4, 3];
#[rustfmt::skip]
const BC_SUB_REV: [f32; 24] = [
    1.0, 4.0, -1.0, -5.0, -2.0, -7.0, 4.0, 7.0, 2.0, 7.0, 10.0, 5.0, -2.0, 7.0, -4.0, -8.0, 1.0,
    -10.0, 1.0, 10.0, -1.0, 4.0, 13.0, 2.0,
];

//  a = A_BC; b = B_BC
//  y = a * b
const BC_MUL_SHAPE: [usize; 3] = [2, 4, 3];
#[rustfmt::skip]
const BC_MUL: [f32; 24] = [
    2.0, -4.0, 6.0, -4.0, 8.0, -12.0, 5.0, -10.0, 15.0, 8.0, -16.0, 24.0, 8.0, -10.0, 12.0,
    -16.0, 20.0, -24.0, 20.0, -25.0, 30.0, 32.0, -40.0, 48.0,
];

//  a = A_BC; b = B_BC
//  y = a / b
const BC_DIV_SHAPE: [usize; 3] = [2, 4, 3];
#[rustfmt::skip]
const BC_DIV: [f32; 24] = [
    0.5, -1.0, 1.5, -0.25, 0.5, -0.75, 0.2, -0.4, 0.6, 0.125, -0.25, 0.375, 2.0, -2.5, 3.0,
    -1.0, 1.25, -1.5, 0.8, -1.0, 1.2, 0.5, -0.625, 0.75,
];

//  a = A_BC; b = B_BC
//  y = b / a
const BC_DIV_REV_SHAPE: [usize; 3] = [2, 4, 3];
#[rustfmt::skip]
const BC_DIV_REV: [f32; 24] = [
    2.0, -1.0, 0.6666667, -4.0, 2.0, -1.3333334, 5.0, -2.5, 1.6666666, 8.0, -4.0, 2.6666667,
    0.5, -0.4, 0.33333334, -1.0, 0.8, -0.6666667, 1.25, -1.0, 0.8333333, 2.0, -1.6, 1.3333334,
];

//  x = iota([2, 3, 4, 5], 0)
//  y = x.transpose(2, 0, 3, 1)
const TRANSPOSE_2031_SHAPE: [usize; 4] = [4, 2, 5, 3];
#[rustfmt::skip]
const TRANSPOSE_2031: [f32; 120] = [
    0.0, 20.0, 40.0, 1.0, 21.0, 41.0, 2.0, 22.0, 42.0, 3.0, 23.0, 43.0, 4.0, 24.0, 44.0, 60.0,
    80.0, 100.0, 61.0, 81.0, 101.0, 62.0, 82.0, 102.0, 63.0, 83.0, 103.0, 64.0, 84.0, 104.0,
    5.0, 25.0, 45.0, 6.0, 26.0, 46.0, 7.0, 27.0, 47.0, 8.0, 28.0, 48.0, 9.0, 29.0, 49.0, 65.0,
    85.0, 105.0, 66.0, 86.0, 106.0, 67.0, 87.0, 107.0, 68.0, 88.0, 108.0, 69.0, 89.0, 109.0,
    10.0, 30.0, 50.0, 11.0, 31.0, 51.0, 12.0, 32.0, 52.0, 13.0, 33.0, 53.0, 14.0, 34.0, 54.0,
    70.0, 90.0, 110.0, 71.0, 91.0, 111.0, 72.0, 92.0, 112.0, 73.0, 93.0, 113.0, 74.0, 94.0,
    114.0, 15.0, 35.0, 55.0, 16.0, 36.0, 56.0, 17.0, 37.0, 57.0, 18.0, 38.0, 58.0, 19.0, 39.0,
    59.0, 75.0, 95.0, 115.0, 76.0, 96.0, 116.0, 77.0, 97.0, 117.0, 78.0, 98.0, 118.0, 79.0,
    99.0, 119.0,
];

//  x = iota([2, 3, 4, 5], 0)
//  y = x.transpose(0, 2, 3, 1)
const TRANSPOSE_0231_SHAPE: [usize; 4] = [2, 4, 5, 3];
#[rustfmt::skip]
const TRANSPOSE_0231: [f32; 120] = [
    0.0, 20.0, 40.0, 1.0, 21.0, 41.0, 2.0, 22.0, 42.0, 3.0, 23.0, 43.0, 4.0, 24.0, 44.0, 5.0,
    25.0, 45.0, 6.0, 26.0, 46.0, 7.0, 27.0, 47.0, 8.0, 28.0, 48.0, 9.0, 29.0, 49.0, 10.0, 30.0,
    50.0, 11.0, 31.0, 51.0, 12.0, 32.0, 52.0, 13.0, 33.0, 53.0, 14.0, 34.0, 54.0, 15.0, 35.0,
    55.0, 16.0, 36.0, 56.0, 17.0, 37.0, 57.0, 18.0, 38.0, 58.0, 19.0, 39.0, 59.0, 60.0, 80.0,
    100.0, 61.0, 81.0, 101.0, 62.0, 82.0, 102.0, 63.0, 83.0, 103.0, 64.0, 84.0, 104.0, 65.0,
    85.0, 105.0, 66.0, 86.0, 106.0, 67.0, 87.0, 107.0, 68.0, 88.0, 108.0, 69.0, 89.0, 109.0,
    70.0, 90.0, 110.0, 71.0, 91.0, 111.0, 72.0, 92.0, 112.0, 73.0, 93.0, 113.0, 74.0, 94.0,
    114.0, 75.0, 95.0, 115.0, 76.0, 96.0, 116.0, 77.0, 97.0, 117.0, 78.0, 98.0, 118.0, 79.0,
    99.0, 119.0,
];

//  a = iota([2, 2, 3], 0); b = iota([2, 1, 3], 100); c = iota([2, 3, 3], 200)
//  y = np.concatenate([a, b, c], axis=1)
const CONCAT_MID_SHAPE: [usize; 3] = [2, 6, 3];
#[rustfmt::skip]
const CONCAT_MID: [f32; 36] = [
    0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 100.0, 101.0, 102.0, 200.0, 201.0, 202.0, 203.0, 204.0, 205.0,
    206.0, 207.0, 208.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 103.0, 104.0, 105.0, 209.0, 210.0,
    211.0, 212.0, 213.0, 214.0, 215.0, 216.0, 217.0,
];

//  x = ramp([3, 4], 5, 7, 3)
//  e = np.exp(x - x.max(0, keepdims=True)); y = e / e.sum(0, keepdims=True)
const SOFTMAX_AXIS0_SHAPE: [usize; 2] = [3, 4];
#[rustfmt::skip]
const SOFTMAX_AXIS0: [f32; 12] = [
    0.66524094, 0.0066764127, 0.66524094, 0.66524094, 0.24472848, 0.0024561149, 0.24472848,
    0.24472848, 0.09003057, 0.9908675, 0.09003057, 0.09003057,
];

//  x = ramp([3, 2, 2], 5, 7, 3)
//  e = np.exp(x - x.max(0, keepdims=True)); y = e / e.sum(0, keepdims=True)
const SOFTMAX_AXIS0_R3_SHAPE: [usize; 3] = [3, 2, 2];
#[rustfmt::skip]
const SOFTMAX_AXIS0_R3: [f32; 12] = [
    0.66524094, 0.0066764127, 0.66524094, 0.66524094, 0.24472848, 0.0024561149, 0.24472848,
    0.24472848, 0.09003057, 0.9908675, 0.09003057, 0.09003057,
];

//  x = ramp([2, 3, 2], 3, 7, 3, 0.5)
//  e = np.exp(x - x.max(1, keepdims=True)); y = e / e.sum(1, keepdims=True)
const SOFTMAX_AXIS1_R3_SHAPE: [usize; 3] = [2, 3, 2];
#[rustfmt::skip]
const SOFTMAX_AXIS1_R3: [f32; 12] = [
    0.5064804, 0.5064804, 0.30719587, 0.30719587, 0.18632372, 0.18632372, 0.030058887,
    0.5064804, 0.6037489, 0.30719587, 0.36619222, 0.18632372,
];
