//! The fast CPU kernels against the CPU reference, on edge shapes (1, odd sizes, sizes not a
//! multiple of any GEMM block, large K, batches, both transposes, groups, strides, padding,
//! dilation, im2col blocks) with every fused epilogue (bias, residual, activation), and what the
//! plan says about them.
//!
//! Tolerances (f32): GEMM sums a K-term dot product in another order than the reference (packed
//! blocks, 64 partial sums in the GEMV), which moves the result by at most about
//! K * 2^-24 * sum|a_i b_i|; inputs are in [-1, 1], so 2e-6 * K absolute plus 1e-5 relative (the
//! conformance tests' bound). The depthwise kernel adds the taps in the reference's order and
//! must match it exactly.

mod common;
use common::*;
use wgedge::ops::*;
use wgedge::{Session, SessionOptions, Tensor};

fn opts(reference: bool, threads: Option<usize>) -> SessionOptions {
    SessionOptions {
        autotune: false,
        cpu_reference: reference,
        threads,
        ..Default::default()
    }
}

/// Runs `op` on the fast CPU kernels (all threads and one thread) and on the reference;
/// returns the fast kernel's name. `atol = None`: the results must be identical.
fn check(what: &str, op: Op, inputs: &[&Tensor], consts: &[bool], atol: Option<f32>) -> String {
    let (model, feeds) = single_op(op, inputs, consts);
    let feeds = feeds_ref(&feeds);
    let want = Session::cpu(&model, opts(true, None)).unwrap();
    assert!(
        want.plan().nodes.iter().all(|n| n.kernel == "cpu-ref"),
        "{what}: cpu_reference must force the reference"
    );
    let want = &want.run(&feeds).unwrap()[0];
    let mut name = String::new();
    for threads in [None, Some(1)] {
        let s = Session::cpu(&model, opts(false, threads)).unwrap();
        name = s.plan().nodes[0].kernel.clone();
        assert_ne!(name, "cpu-ref", "{what}: no fast kernel was chosen");
        let got = &s.run(&feeds).unwrap()[0];
        let what = format!("{what} ({name}, threads {threads:?})");
        match atol {
            None => assert_eq!(got, want, "{what}"),
            Some(atol) => assert_close(&what, got, want, atol, 1e-5),
        }
    }
    name
}

fn dot_tol(k: usize) -> f32 {
    2e-6 * k as f32 + 1e-6
}

/// Every epilogue combination: (bias, residual, activation).
fn epilogues() -> Vec<(bool, bool, Activation)> {
    vec![
        (false, false, Activation::None),
        (true, false, Activation::Relu),
        (false, true, Activation::Gelu),
        (true, true, Activation::LeakyRelu { alpha: 0.1 }),
    ]
}

/// (batch dims, M, K, N, trans_a, trans_b, B batched)
type MatMulCase = (&'static [usize], usize, usize, usize, bool, bool, bool);

#[test]
fn matmul_matches_reference() {
    let cases: &[MatMulCase] = &[
        (&[], 1, 1, 1, false, true, false),
        (&[], 1, 4096, 37, false, true, false),
        (&[], 1, 300, 129, false, false, false),
        (&[], 3, 5, 7, false, false, false),
        (&[], 17, 33, 9, false, true, false),
        (&[], 65, 128, 67, false, true, false),
        (&[], 4, 2048, 8, true, false, false),
        (&[], 33, 12, 130, true, true, false),
        (&[], 129, 257, 95, false, false, false),
        (&[2], 5, 19, 11, false, false, true),
        (&[3], 1, 64, 40, false, true, false),
        (&[2, 2], 9, 31, 6, true, false, true),
        // The dot-product tiles (Linear weight, 2..=256 rows): K below one vector, K not a
        // multiple of the vector, large odd K, one column, rows not a multiple of the tile,
        // the row limit and one past it, batches of A over one weight (residual per batch).
        (&[], 2, 7, 1, false, true, false),
        (&[], 7, 4103, 13, false, true, false),
        (&[], 64, 784, 10, false, true, false),
        (&[], 256, 65, 33, false, true, false),
        (&[], 257, 40, 6, false, true, false),
        (&[3], 6, 20, 11, false, true, false),
    ];
    let mut seen = Vec::new();
    for (i, &(batch, m, k, n, ta, tb, bb)) in cases.iter().enumerate() {
        for (j, &(bias, residual, act)) in epilogues().iter().enumerate() {
            let seed = (i * 10 + j) as u64;
            let mut a_shape = batch.to_vec();
            a_shape.extend(if ta { [k, m] } else { [m, k] });
            let mut b_shape = if bb { batch.to_vec() } else { Vec::new() };
            b_shape.extend(if tb { [n, k] } else { [k, n] });
            let mut out = batch.to_vec();
            out.extend([m, n]);
            let a = Tensor::random(&a_shape, seed);
            let b = Tensor::random(&b_shape, 100 + seed);
            let bias_t = Tensor::random(&[n], 200 + seed);
            let res_t = Tensor::random(&out, 300 + seed);
            let mut ins = vec![&a, &b];
            let mut consts = vec![false, !bb];
            if bias {
                ins.push(&bias_t);
                consts.push(true);
            }
            if residual {
                ins.push(&res_t);
                consts.push(false);
            }
            let op = Op::MatMul(MatMul {
                trans_a: ta,
                trans_b: tb,
                bias,
                residual,
                act,
            });
            let what = format!("matmul {batch:?} {m}x{k}x{n} ta={ta} tb={tb} epilogue {j}");
            let name = check(&what, op, &ins, &consts, Some(dot_tol(k)));
            let want = if m == 1 { "cpu-gemv" } else { "cpu-gemm" };
            assert_eq!(name, want, "{what}");
            seen.push(name);
        }
    }
    assert!(seen.iter().any(|k| k == "cpu-gemv") && seen.iter().any(|k| k == "cpu-gemm"));
}

/// (n, cin, h, w, cout, k, stride, pad (t, l, b, r), dilation, groups)
type ConvCase = (
    usize,
    usize,
    usize,
    usize,
    usize,
    [usize; 2],
    [usize; 2],
    [usize; 4],
    [usize; 2],
    usize,
);

fn conv_case(i: usize, c: ConvCase, epi: (bool, bool, Activation), exact: bool) -> String {
    let (n, cin, h, w, cout, k, stride, pad, dilation, groups) = c;
    let (bias, residual, act) = epi;
    let conv = Conv2d {
        stride,
        pad,
        dilation,
        groups,
        bias,
        residual,
        act,
    };
    let x = Tensor::random(&[n, cin, h, w], i as u64);
    let wt = Tensor::random(&[cout, cin / groups, k[0], k[1]], 50 + i as u64);
    // The output shape, from the op without its epilogue operands.
    let plain = Conv2d {
        bias: false,
        residual: false,
        ..conv
    };
    let out = Op::Conv2d(plain)
        .infer_shape(&[x.shape().to_vec(), wt.shape().to_vec()])
        .unwrap_or_else(|e| panic!("conv case {i}: {e}"));
    let b = Tensor::random(&[cout], 70 + i as u64);
    let r = Tensor::random(&out, 90 + i as u64);
    let mut ins = vec![&x, &wt];
    let mut consts = vec![false, true];
    if bias {
        ins.push(&b);
        consts.push(true);
    }
    if residual {
        ins.push(&r);
        consts.push(false);
    }
    let taps = cin / groups * k[0] * k[1];
    let what = format!("conv case {i} {c:?} epilogue {epi:?}");
    check(
        &what,
        Op::Conv2d(conv),
        &ins,
        &consts,
        (!exact).then(|| dot_tol(taps)),
    )
}

#[test]
fn conv_matches_reference() {
    let cases: &[ConvCase] = &[
        // 3x3 same padding, odd sizes
        (1, 3, 7, 9, 5, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 1),
        // 1 channel in and out, 1x1 image
        (1, 1, 1, 1, 1, [1, 1], [1, 1], [0; 4], [1, 1], 1),
        // pointwise (direct GEMM), batch 2
        (2, 16, 5, 6, 7, [1, 1], [1, 1], [0; 4], [1, 1], 1),
        // 1x1 with stride 2 (im2col)
        (1, 8, 9, 9, 4, [1, 1], [2, 2], [0; 4], [1, 1], 1),
        // 1x1 with padding
        (1, 4, 3, 5, 6, [1, 1], [1, 1], [1, 0, 2, 1], [1, 1], 1),
        // stride 2, asymmetric padding, non-square kernel
        (1, 6, 11, 8, 9, [3, 2], [2, 1], [0, 1, 2, 0], [1, 1], 1),
        // dilation 2, 5x5
        (1, 4, 13, 12, 3, [5, 5], [1, 1], [4, 4, 4, 4], [2, 2], 1),
        // groups 2 and groups 3 with a channel multiplier
        (2, 8, 7, 7, 6, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 2),
        (1, 6, 6, 6, 9, [3, 3], [2, 2], [1, 1, 1, 1], [1, 1], 3),
        // kernel as large as the padded input
        (1, 2, 3, 3, 2, [5, 5], [1, 1], [1, 1, 1, 1], [1, 1], 1),
        // large K (cin * taps = 1152)
        (1, 128, 6, 5, 10, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 1),
        // more output pixels than one im2col block holds (COL_LIMIT / 288 < 128 * 128)
        (1, 32, 128, 128, 2, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 1),
    ];
    for (i, &c) in cases.iter().enumerate() {
        for (j, epi) in epilogues().into_iter().enumerate() {
            if i == cases.len() - 1 && j > 0 {
                continue; // the large case once is enough
            }
            let name = conv_case(i, c, epi, false);
            let pointwise = c.5 == [1, 1] && c.6 == [1, 1] && c.7 == [0; 4];
            let want = if pointwise {
                "cpu-conv1x1"
            } else {
                "cpu-im2col"
            };
            assert_eq!(name, want, "conv case {i}");
        }
    }
}

#[test]
fn depthwise_matches_reference_exactly() {
    let cases: &[ConvCase] = &[
        (
            1,
            32,
            112,
            112,
            32,
            [3, 3],
            [1, 1],
            [1, 1, 1, 1],
            [1, 1],
            32,
        ),
        (2, 3, 1, 1, 3, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 3),
        (1, 5, 9, 7, 5, [3, 3], [2, 2], [1, 1, 1, 1], [1, 1], 5),
        (1, 4, 10, 11, 4, [5, 5], [1, 2], [2, 0, 1, 3], [1, 1], 4),
        (1, 2, 12, 12, 2, [3, 3], [1, 1], [2, 2, 2, 2], [2, 2], 2),
        (1, 7, 8, 9, 7, [7, 1], [3, 1], [0; 4], [1, 1], 7),
        (1, 3, 5, 5, 3, [1, 1], [1, 1], [0; 4], [1, 1], 3),
    ];
    for (i, &c) in cases.iter().enumerate() {
        for epi in epilogues() {
            assert_eq!(conv_case(100 + i, c, epi, true), "cpu-dwconv");
        }
    }
}

#[test]
fn pooling_matches_reference_exactly() {
    let cases = [
        (
            PoolKind::Max,
            [3, 3],
            [2, 2],
            [1, 1, 1, 1],
            vec![2, 3, 9, 8],
        ),
        (PoolKind::Avg, [2, 2], [2, 2], [0; 4], vec![1, 4, 7, 7]),
        (
            PoolKind::Avg,
            [3, 2],
            [1, 2],
            [1, 0, 2, 1],
            vec![3, 2, 5, 6],
        ),
        (PoolKind::Max, [2, 2], [2, 2], [0; 4], vec![1, 64, 56, 56]),
    ];
    for (i, (kind, kernel, stride, pad, shape)) in cases.into_iter().enumerate() {
        let op = Op::Pool2d(Pool2d {
            kind,
            kernel,
            stride,
            pad,
            count_include_pad: i == 2,
        });
        let x = Tensor::random(&shape, 400 + i as u64);
        let name = check(&format!("pool case {i}"), op, &[&x], &[false], None);
        assert_eq!(name, "cpu-pool");
    }
}

#[test]
fn plans_name_cpu_kernels_and_models_agree() {
    for (name, model) in models::all() {
        let fast = Session::cpu(&model, opts(false, None)).unwrap();
        let reference = Session::cpu(&model, opts(true, None)).unwrap();
        let described = fast.plan().describe();
        for n in &fast.plan().nodes {
            if matches!(n.op, Op::MatMul(_) | Op::Conv2d(_)) {
                assert!(
                    n.kernel.starts_with("cpu-") && n.kernel != "cpu-ref",
                    "{name}"
                );
                assert!(described.contains(&n.kernel), "{name}: {described}");
            }
        }
        assert!(reference
            .plan()
            .nodes
            .iter()
            .all(|n| n.kernel == "cpu-ref" || n.kernel == "alias"));
        assert!(reference.device_name().contains("reference"));
        let feeds: Vec<(String, Tensor)> = (model.graph.inputs.iter())
            .map(|v| (v.name.clone(), Tensor::random(&v.shape, 5)))
            .collect();
        let feeds = feeds_ref(&feeds);
        let got = fast.run(&feeds).unwrap();
        let want = reference.run(&feeds).unwrap();
        for (g, w) in got.iter().zip(&want) {
            // Whole models chain a few layers of K <= 1152 sums.
            assert_close(name, g, w, 1e-3, 1e-4);
        }
    }
}

#[test]
fn unknown_cpu_kernel_is_an_error() {
    let a = Tensor::random(&[2, 3], 1);
    let b = Tensor::random(&[3, 4], 2);
    let op = Op::MatMul(MatMul::default());
    assert!(op.run_cpu("cpu-im2col", &[&a, &b]).is_err());
    let got = op.run_cpu("cpu-gemm", &[&a, &b]).unwrap();
    assert_close("gemm", &got, &op.cpu(&[&a, &b]).unwrap(), 1e-5, 1e-5);
}

/// Every quantised format with groups that do and do not align with the kernels' 32-value
/// chunks (and odd groups, whose int4 bytes straddle two groups).
fn quant_formats() -> Vec<wgedge::format::WeightFormat> {
    vec![
        quant(8, 0, false, false, false),
        quant(8, 0, true, false, true),
        quant(8, 32, false, false, true),
        quant(8, 5, true, false, false),
        quant(8, 64, true, true, false),
        quant(4, 32, false, false, true),
        quant(4, 32, true, false, false),
        quant(4, 7, false, false, false),
        quant(4, 0, true, false, false),
        quant(4, 64, false, true, false),
        quant(4, 3, true, true, false),
    ]
}

/// `|zero * scale|` of weight `w`'s group holding (row, column) in a quantised format (0
/// without zero points), read from the stored parts.
fn zero_scale(
    f: &wgedge::format::WeightFormat,
    model: &wgedge::Model,
    row: usize,
    col: usize,
    k: usize,
) -> f64 {
    use wgedge::tensor::TensorData;
    let wgedge::format::WeightFormat::Quant(q) = f else {
        return 0.0;
    };
    if !q.zero_points {
        return 0.0;
    }
    let gs = if q.group == 0 { k } else { q.group };
    let ng = k.div_ceil(gs);
    let i = row * ng + col / gs;
    let z = match model.weights["w.zeros"].data() {
        TensorData::U8(v) => f64::from(v[i]),
        _ => panic!("zero points are u8"),
    };
    let part = if q.pow2 { "w.shifts" } else { "w.scales" };
    let s = match model.weights[part].data() {
        TensorData::F32(v) => f64::from(v[i]),
        TensorData::F16(v) => f64::from(v[i].to_f32()),
        TensorData::I8(v) => 2f64.powi(-i32::from(v[if v.len() == 1 { 0 } else { i }])),
        _ => panic!("unexpected scale dtype"),
    };
    (z * s).abs()
}

/// The packed CPU kernels (`cpu-q8gemv`, `cpu-q4gemv`, `cpu-qgemm`) against the reference on
/// the same packed weight (decoded by the Rust decoder): odd K, K not a multiple of the group
/// or the 32-value chunk, one row and several (with batch dims), bias and activation.
///
/// Tolerance: the kernels sum `(code - zero) * x` per group in 16 lanes and add `scale *
/// partial` per group; the reference sums `x * w` in k order with `w` the decoded weight
/// (`(code - zero) * scale` rounded once, as the GEMM path decodes it). Both approximate the
/// same real sum with at most K + 3 roundings per term, so |got - want| <= 2 (K + 3) eps
/// sum_k |x_k w_k|, checked per element (the bias and activation add no difference: same
/// operations on the sums, up to the rounding of the bias addition). With zero points the
/// GEMV sums `code * x` and takes `scale * zero * sum(x)` off once per group, so its terms are
/// `|x_k| (|w_k| + |zero scale|)` (|code scale| <= |w_k| + |zero scale|) and the second sum adds
/// as many again: the bound uses `|x_k| (|w_k| + 2 |zero_g scale_g|)` there. A wrong code or
/// scale moves an output by about |x_k w_k| (or |x_k scale|), far beyond that bound.
#[test]
fn packed_weight_kernels_match_reference() {
    use wgedge::graph::GraphBuilder;
    use wgedge::Model;
    let cases: &[(&[usize], usize)] = &[
        (&[1, 37], 5),
        (&[1, 100], 33),
        (&[1, 300], 17),
        (&[1, 1], 3),
        (&[3, 37], 9),
        (&[2, 3, 100], 7),
        (&[65, 129], 70),
    ];
    for (ci, &(a_shape, n)) in cases.iter().enumerate() {
        let k = *a_shape.last().unwrap();
        for (fi, f) in quant_formats().into_iter().enumerate() {
            let what = format!("{} A {a_shape:?} N {n}", f.label());
            let wt = Tensor::random(&[n, k], (ci * 100 + fi) as u64);
            let mut b = GraphBuilder::new();
            let x = b.input("x", a_shape);
            let w = b.weight_packed("w", &wt, f.clone()).unwrap();
            let bias = b.weight("b", Tensor::random(&[n], 7));
            let y = b.linear(&x, &w, Some(&bias), Activation::Relu6);
            b.output(&y);
            let model = Model::from_builder(b).unwrap();
            let xv = Tensor::random(a_shape, 3 + ci as u64);
            let feeds = [("x", &xv)];
            let reference = Session::cpu(&model, opts(true, None)).unwrap();
            let want = reference.run(&feeds).unwrap().remove(0);
            let decoded = f.decode("w", &[n, k], &model.weights).unwrap();
            let (xs, ws) = (xv.f32s("x").unwrap(), decoded.f32s("w").unwrap());
            for threads in [None, Some(1)] {
                let s = Session::cpu(&model, opts(false, threads)).unwrap();
                let node = &s.plan().nodes[0];
                let rows = xs.len() / k;
                let kernel = match (rows, f.label().contains("int8")) {
                    (1, true) => "cpu-q8gemv",
                    (1, false) => "cpu-q4gemv",
                    _ => "cpu-qgemm",
                };
                assert_eq!(node.kernel, kernel, "{what}");
                let pv = s.plan().values.iter().find(|v| v.name == "w").unwrap();
                assert!(pv.cpu_packed && !pv.decoded, "{what}: stays packed");
                // The decoded session holds the f32 weight besides the stored parts; the
                // packed one holds only the parts and the 9-word format descriptor (7 words and the 2-D
                // shape).
                assert_eq!(
                    s.weight_host_bytes() + (n * k * 4) as u64,
                    reference.weight_host_bytes() + 36,
                    "{what}: the packed session holds the weight as stored"
                );
                let got = s.run(&feeds).unwrap().remove(0);
                let (g, e) = (got.f32s("got").unwrap(), want.f32s("want").unwrap());
                assert_eq!(g.len(), rows * n, "{what}");
                for (i, (a, b)) in g.iter().zip(e).enumerate() {
                    let (r, j) = (i / n, i % n);
                    let sum: f64 = (0..k)
                        .map(|kk| {
                            let zs = zero_scale(&f, &model, j, kk, k);
                            (xs[r * k + kk] as f64).abs()
                                * ((ws[j * k + kk] as f64).abs() + 2.0 * zs)
                        })
                        .sum();
                    // Plus one rounding of the bias addition on each side.
                    let eps = f32::EPSILON as f64;
                    let tol = 2.0 * (k as f64 + 3.0) * eps * sum
                        + eps * ((*a as f64).abs() + (*b as f64).abs());
                    assert!(
                        ((a - b) as f64).abs() <= tol,
                        "{what} threads {threads:?}: element {i}: {a} vs {b} (bound {tol:e})"
                    );
                }
            }
        }
    }
}

/// Elementwise, softmax and normalisation kernels split the work over the threads but compute
/// every element (or row) with the reference's operations in its order: bit for bit. Sizes
/// both below the threading threshold and above it (several tasks), broadcasts along every
/// kind of axis.
#[test]
fn elementwise_and_norms_match_reference_exactly() {
    use wgedge::ops::BinaryKind as K;
    let big = [2, 3, 75, 129]; // 58k elements: several tasks
    for (i, shape) in [vec![7], big.to_vec(), vec![1, 1]].into_iter().enumerate() {
        for act in [
            Activation::Relu,
            Activation::Gelu,
            Activation::LeakyRelu { alpha: 0.2 },
        ] {
            let x = Tensor::random(&shape, 500 + i as u64);
            let op = Op::Unary(Unary { act });
            let name = check(
                &format!("unary {shape:?} {act:?}"),
                op,
                &[&x],
                &[false],
                None,
            );
            assert_eq!(name, "cpu-eltwise");
        }
    }
    // (a, b): same shape, row, column, scalar, middle axis, both broadcast, rank-0-like.
    let pairs: Vec<(Vec<usize>, Vec<usize>)> = vec![
        (big.to_vec(), big.to_vec()),
        (big.to_vec(), vec![129]),
        (big.to_vec(), vec![2, 3, 75, 1]),
        (big.to_vec(), vec![1]),
        (vec![1], big.to_vec()),
        (big.to_vec(), vec![3, 1, 1]),
        (vec![2, 1, 75, 1], vec![3, 1, 129]),
        (vec![5, 1], vec![1, 6]),
    ];
    let kinds = [
        K::Add,
        K::Sub,
        K::Mul,
        K::Div,
        K::Pow,
        K::Max,
        K::Min,
        K::Fmod,
        K::Mod,
        K::Prelu,
    ];
    for (i, (sa, sb)) in pairs.iter().enumerate() {
        for (j, &kind) in kinds.iter().enumerate() {
            // Every kind on the small pair, the arithmetic ones (specialised loops) on all.
            if i != pairs.len() - 1 && j >= 4 && i % 3 != 0 {
                continue;
            }
            let mut a = Tensor::random(sa, 600 + i as u64);
            if kind == K::Pow {
                // A negative base with a fractional exponent is NaN, and NaN != NaN.
                let v = a.f32s("a").unwrap().iter().map(|v| v.abs() + 0.1).collect();
                a = Tensor::new(sa, v).unwrap();
            }
            let b = Tensor::random(sb, 700 + j as u64);
            let act = if j % 2 == 0 {
                Activation::None
            } else {
                Activation::Relu
            };
            let op = Op::Binary(Binary { kind, act });
            let what = format!("{kind:?} {sa:?} {sb:?}");
            let name = check(&what, op, &[&a, &b], &[false, false], None);
            assert_eq!(name, "cpu-eltwise", "{what}");
        }
    }
    let x3 = Tensor::random(&[4, 33, 517], 800);
    for axis in [0, 1, -1] {
        for op in [
            Op::Softmax(Softmax { axis }),
            Op::LogSoftmax(LogSoftmax { axis }),
        ] {
            let name = check(&format!("{op:?}"), op, &[&x3], &[false], None);
            assert_eq!(name, "cpu-rows");
        }
    }
    for (axis, norm) in [(-1, vec![517]), (1, vec![33, 517])] {
        let g = Tensor::random(&norm, 801);
        let b = Tensor::random(&norm, 802);
        let op = Op::LayerNorm(LayerNorm { axis, eps: 1e-5 });
        check(
            &format!("layer norm {axis}"),
            op.clone(),
            &[&x3, &g],
            &[false, true],
            None,
        );
        let name = check(
            &format!("layer norm {axis} beta"),
            op,
            &[&x3, &g, &b],
            &[false, true, true],
            None,
        );
        assert_eq!(name, "cpu-rows");
    }
    // Batch norm on small planes (by image) and large ones (by plane); group/instance norm.
    for shape in [vec![3, 5, 7, 9], vec![2, 6, 80, 70], vec![4, 3]] {
        let c = shape[1];
        let x = Tensor::random(&shape, 900);
        let p: Vec<Tensor> = (0..4).map(|i| Tensor::random(&[c], 901 + i)).collect();
        // Variances must be positive.
        let var = Tensor::new(
            &[c],
            p[3].f32s("v")
                .unwrap()
                .iter()
                .map(|v| v.abs() + 0.1)
                .collect(),
        )
        .unwrap();
        let op = Op::BatchNorm(BatchNorm { eps: 1e-5 });
        let name = check(
            &format!("batch norm {shape:?}"),
            op,
            &[&x, &p[0], &p[1], &p[2], &var],
            &[false, true, true, true, true],
            None,
        );
        assert_eq!(name, "cpu-rows");
        let groups = if c % 3 == 0 { 3 } else { 1 };
        for op in [
            Op::GroupNorm(GroupNorm {
                num_groups: groups,
                eps: 1e-5,
            }),
            Op::InstanceNorm(InstanceNorm { eps: 1e-5 }),
        ] {
            if shape.len() < 3 {
                continue;
            }
            let name = check(
                &format!("{op:?} {shape:?}"),
                op,
                &[&x, &p[0], &p[1]],
                &[false, true, true],
                None,
            );
            assert_eq!(name, "cpu-rows");
        }
    }
}

/// Runs `model` on the reference and on the fast CPU kernels (all threads and one): the
/// reference's output, the fast sessions' outputs and the fast plan's kernel for `node`.
fn run_both(model: &wgedge::Model, x: &Tensor) -> (Tensor, Vec<(Tensor, Session)>) {
    let feeds = [("x", x)];
    let want = Session::cpu(model, opts(true, None))
        .unwrap()
        .run(&feeds)
        .unwrap()
        .remove(0);
    let mut got = Vec::new();
    for threads in [None, Some(1)] {
        // Sparse weights read as stored at any density (the default decodes the denser ones).
        let o = SessionOptions {
            cpu_sparse_max_pct: Some(100),
            ..opts(false, threads)
        };
        let s = Session::cpu(model, o).unwrap();
        let y = s.run(&feeds).unwrap().remove(0);
        got.push((y, s));
    }
    (want, got)
}

/// f16 Linear weights read as stored (`cpu-hgemv`, `cpu-hgemm`): one row and several (batch
/// dims), odd K and N, K not a multiple of the conversion block, with bias and activation.
/// The weight is the same f32 values in both (f16 to f32 is exact); only the order of the
/// K-term sums differs, hence the GEMM bound [`dot_tol`].
#[test]
fn f16_weights_are_read_as_stored() {
    use wgedge::graph::GraphBuilder;
    let cases: &[(&[usize], usize)] = &[
        (&[1, 1], 1),
        (&[1, 37], 5),
        (&[1, 1500], 33),
        (&[3, 37], 9),
        (&[2, 3, 100], 7),
        (&[65, 1100], 70),
    ];
    for (ci, &(a_shape, n)) in cases.iter().enumerate() {
        let k = *a_shape.last().unwrap();
        let mut b = GraphBuilder::new();
        let x = b.input("x", a_shape);
        let wt = Tensor::random(&[n, k], 10 + ci as u64);
        let w = b
            .weight_packed("w", &wt, wgedge::format::WeightFormat::Half)
            .unwrap();
        let bias = b.weight("b", Tensor::random(&[n], 7));
        let y = b.linear(&x, &w, Some(&bias), Activation::Relu6);
        b.output(&y);
        let model = wgedge::Model::from_builder(b).unwrap();
        let rows = a_shape.iter().product::<usize>() / k;
        let (want, got) = run_both(&model, &Tensor::random(a_shape, 3 + ci as u64));
        for (g, s) in &got {
            let what = format!("f16 A {a_shape:?} N {n}");
            let kernel = if rows == 1 { "cpu-hgemv" } else { "cpu-hgemm" };
            assert_eq!(s.plan().nodes[0].kernel, kernel, "{what}");
            let pv = s.plan().values.iter().find(|v| v.name == "w").unwrap();
            assert!(pv.cpu_packed && !pv.decoded, "{what}: stays f16");
            // The f16 values (2 bytes each), the bias and the descriptor: no f32 copy.
            assert!(
                s.weight_host_bytes() < (n * k * 2 + n * 4 + 64) as u64,
                "{what}: {} bytes held",
                s.weight_host_bytes()
            );
            assert_close(&what, g, &want, dot_tol(k), 1e-5);
        }
    }
}

/// Convs with quantised and f16 weights read as stored (`cpu-packed-conv`: each group's
/// weight decoded per run, then the f32 GEMM; `cpu-packed-dwconv`). The decoded values equal
/// the reference decoder's, so the im2col/1x1 GEMM differs from the reference only in the
/// order of its `cin_g * kh * kw`-term sums ([`dot_tol`]) and the depthwise kernel, which adds
/// the taps in the reference's order, matches it exactly.
#[test]
fn packed_conv_weights_are_read_as_stored() {
    use wgedge::format::WeightFormat;
    use wgedge::graph::GraphBuilder;
    let formats = [
        quant(8, 0, false, false, false),
        quant(8, 32, true, false, true),
        quant(4, 32, false, false, true),
        quant(4, 7, true, false, false),
        quant(8, 0, false, true, false),
        WeightFormat::Half,
    ];
    let cases: &[ConvCase] = &[
        (1, 3, 7, 9, 5, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 1),
        (1, 1, 1, 1, 1, [1, 1], [1, 1], [0; 4], [1, 1], 1),
        (2, 16, 5, 6, 7, [1, 1], [1, 1], [0; 4], [1, 1], 1),
        (2, 8, 7, 7, 6, [3, 3], [2, 2], [1, 0, 2, 1], [1, 1], 2),
        (1, 64, 6, 5, 10, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 1),
        // depthwise, batch 2, stride 2
        (2, 5, 9, 8, 5, [3, 3], [2, 2], [1, 1, 1, 1], [1, 1], 5),
    ];
    for (i, &c) in cases.iter().enumerate() {
        let (n, cin, h, w, cout, k, stride, pad, dilation, groups) = c;
        let depthwise = groups > 1 && groups == cin && groups == cout;
        for (fi, f) in formats.iter().enumerate() {
            let what = format!("conv case {i} {c:?} {}", f.label());
            let mut b = GraphBuilder::new();
            let x = b.input("x", &[n, cin, h, w]);
            let wt = Tensor::random(&[cout, cin / groups, k[0], k[1]], (50 + i * 10 + fi) as u64);
            let wn = match b.weight_packed("w", &wt, f.clone()) {
                Ok(wn) => wn,
                // A group that does not tile the row (int4 with odd rows) is not a format
                // this weight can take; the case says nothing about the kernel.
                Err(_) => continue,
            };
            let bias = b.weight("b", Tensor::random(&[cout], 7));
            let conv = Conv2d {
                stride,
                pad,
                dilation,
                groups,
                bias: false,
                residual: false,
                act: Activation::Relu,
            };
            let y = b.conv2d(&x, &wn, Some(&bias), conv);
            b.output(&y);
            let model = wgedge::Model::from_builder(b).unwrap();
            let (want, got) = run_both(&model, &Tensor::random(&[n, cin, h, w], i as u64));
            for (g, s) in &got {
                let node = s.plan().nodes.iter().find(|n| n.op.name() == "conv2d");
                let kernel = if depthwise {
                    "cpu-packed-dwconv"
                } else {
                    "cpu-packed-conv"
                };
                assert_eq!(node.map(|n| n.kernel.as_str()), Some(kernel), "{what}");
                let pv = s.plan().values.iter().find(|v| v.name == "w").unwrap();
                assert!(pv.cpu_packed && !pv.decoded, "{what}: stays packed");
                if depthwise {
                    assert_eq!(g.f32s("g").unwrap(), want.f32s("w").unwrap(), "{what}");
                } else {
                    let taps = cin / groups * k[0] * k[1];
                    assert_close(&what, g, &want, dot_tol(taps), 1e-5);
                }
            }
        }
    }
}

/// The sparse kernel reads every sparse layout (CSR, BSR, N:M) with every value type (f32,
/// f16, i8 with row scales) as stored, and equals the reference bit for bit: it adds each
/// weight row's stored entries in column order from 0, as the reference adds the decoded dense
/// row (its pruned terms are exact zeros), and decodes each value as the reference decoder
/// does. The session holds only the stored parts (plus a 6-word descriptor): f16 and i8 values
/// keep their size.
#[test]
fn sparse_weights_are_read_as_stored() {
    use wgedge::format::{prune_nm, SparseLayout, SparseSpec, SparseValues, WeightFormat};
    use wgedge::graph::GraphBuilder;
    // A [24, 40] weight with ~30% of its 4x4 blocks kept, block row 0 empty (so CSR has empty
    // rows too); N:M prunes it further.
    let dense = Tensor::random(&[24, 40], 5);
    let keep = Tensor::random(&[6, 10], 6);
    let (ds, ks) = (dense.f32s("w").unwrap(), keep.f32s("k").unwrap());
    let v: Vec<f32> = (0..24 * 40)
        .map(|i| {
            let (br, bc) = (i / 40 / 4, i % 40 / 4);
            if br > 0 && ks[br * 10 + bc] < -0.4 {
                ds[i]
            } else {
                0.0
            }
        })
        .collect();
    let w = Tensor::new(&[24, 40], v).unwrap();
    let nm = prune_nm(&Tensor::random(&[24, 40], 8), 2, 4).unwrap();
    let layouts = [
        (SparseLayout::Csr, &w),
        (SparseLayout::Bsr { r: 4, c: 4 }, &w),
        (SparseLayout::Bsr { r: 2, c: 1 }, &w),
        (SparseLayout::NM { n: 2, m: 4 }, &nm),
        (
            SparseLayout::NM { n: 1, m: 8 },
            &prune_nm(&w, 1, 8).unwrap(),
        ),
    ];
    for (li, (layout, wt)) in layouts.into_iter().enumerate() {
        for values in [SparseValues::F32, SparseValues::F16, SparseValues::I8] {
            let f = WeightFormat::Sparse(SparseSpec { layout, values });
            for a_shape in [&[1, 40][..], &[3, 40], &[2, 3, 40]] {
                let what = format!("{} A {a_shape:?}", f.label());
                let mut b = GraphBuilder::new();
                let x = b.input("x", a_shape);
                let wn = b.weight_packed("w", wt, f.clone()).unwrap();
                let bias = b.weight("b", Tensor::random(&[24], 7));
                let y = b.linear(&x, &wn, Some(&bias), Activation::Relu6);
                b.output(&y);
                let model = wgedge::Model::from_builder(b).unwrap();
                let stored: u64 = f
                    .part_names("w")
                    .iter()
                    .map(|p| model.weights[p].bytes().len() as u64)
                    .sum();
                let xv = Tensor::random(a_shape, 30 + li as u64);
                let (want, got) = run_both(&model, &xv);
                for (g, s) in &got {
                    assert_eq!(s.plan().nodes[0].kernel, "cpu-spmm", "{what}");
                    let pv = s.plan().values.iter().find(|v| v.name == "w").unwrap();
                    assert!(pv.cpu_csr && !pv.decoded, "{what}: read as stored");
                    assert_eq!(
                        s.weight_host_bytes(),
                        stored + 24 * 4 + 6 * 4,
                        "{what}: the stored parts, the bias and the descriptor"
                    );
                    // Four partial sums per output: a reordered sum of the 40 products.
                    assert_close(&what, g, &want, dot_tol(40), 1e-5);
                }
            }
        }
    }
}
