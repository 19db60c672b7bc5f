//! GPU kernels that read packed weights (int8, int4, pow2, f16) as stored, against the CPU
//! reference computing on the *same* packed weights (decoded by the Rust decoder).
//!
//! Tolerances. The WGSL dequantiser computes `(code - zero) * scale` in f32: the difference of
//! two small integers is exact and the product rounds once, exactly as the Rust decoder's
//! f64 product rounded to f32, so decoded weights must be bit-equal. The matmul kernels sum
//! `code * x` per scale group and scale once per group, the reference sums `x * w` in k order:
//! the same real number, reassociated. Each of the K terms passes through at most K + 2
//! roundings either way, so |got - want| <= 2 (K + 2) eps sum_k |x_k w_k|, checked per element
//! with that bound computed in f64 (no fixed tolerance that a large K could outgrow).

mod common;
use common::*;
use wgedge::format::WeightFormat;
use wgedge::graph::GraphBuilder;
use wgedge::ops::{Activation, Dequantize, KernelVariant, MatMul, MatMulKernel, Op};
use wgedge::profile::TunedChoices;
use wgedge::sched::Placement;
use wgedge::{Model, Session, SessionOptions, Tensor};

/// Every format the kernels read, with groups that align with their texels.
fn formats() -> Vec<WeightFormat> {
    vec![
        quant(8, 0, false, false, false),
        quant(8, 0, true, false, true),
        quant(8, 32, false, false, true),
        quant(8, 16, true, false, false),
        quant(4, 32, false, false, true),
        quant(4, 32, true, false, true),
        quant(4, 64, false, false, false),
        quant(4, 0, true, false, false),
        quant(8, 0, false, true, false),
        quant(8, 32, true, true, false),
        quant(4, 32, false, true, false),
        WeightFormat::Half,
    ]
}

fn cpu_run(model: &Model, feeds: &[(&str, &Tensor)]) -> Tensor {
    let s = Session::cpu(model, SessionOptions::default()).unwrap();
    s.run(feeds).unwrap().remove(0)
}

#[test]
fn wgsl_dequantiser_matches_the_rust_decoder() {
    let Some(ctx) = gpu() else { return };
    // Odd K, K not a multiple of the group or the texel, one row, conv-shaped weights.
    for shape in [
        vec![5, 37],
        vec![3, 64],
        vec![1, 100],
        vec![7, 3, 3, 3],
        vec![2, 300],
    ] {
        for (i, f) in formats().into_iter().enumerate() {
            let w = Tensor::random(&shape, 11 + i as u64);
            let mut b = GraphBuilder::new();
            let name = b.weight_packed("w", &w, f.clone()).unwrap();
            let y = b.node(Op::Dequantize(Dequantize {}), &[&name]);
            b.output(&y);
            let model = Model::from_builder(b).unwrap();
            let want = f.decode("w", &shape, &model.weights).unwrap();
            let s =
                Session::with_context(&model, ctx.clone(), opts_with(TunedChoices::new(), false))
                    .unwrap();
            assert_eq!(s.plan().nodes[0].placement, Placement::Gpu);
            let got = s.run(&[]).unwrap().remove(0);
            let what = format!("dequantize {} {shape:?}", f.label());
            assert_eq!(got.shape(), want.shape(), "{what}");
            let (g, e) = (got.f32s("got").unwrap(), want.f32s("want").unwrap());
            for (k, (a, b)) in g.iter().zip(e).enumerate() {
                assert!(
                    a.to_bits() == b.to_bits(),
                    "{what}: element {k}: {a} vs {b}"
                );
            }
        }
    }
}

/// Linear (`x @ W^T + b`, act) on a packed W: model and feeds.
fn linear_model(a_shape: &[usize], n: usize, f: &WeightFormat, bias: bool) -> (Model, Tensor) {
    let k = *a_shape.last().unwrap();
    let mut b = GraphBuilder::new();
    let x = b.input("x", a_shape);
    let w = b
        .weight_packed("w", &Tensor::random(&[n, k], 5), f.clone())
        .unwrap();
    let bname = bias.then(|| b.weight("b", Tensor::random(&[n], 6)));
    let y = b.linear(&x, &w, bname.as_deref(), Activation::Relu6);
    b.output(&y);
    (Model::from_builder(b).unwrap(), Tensor::random(a_shape, 3))
}

/// Per-element bound 2 (K + 2) eps sum_k |x_k| |w_k| (see the module docs).
fn bound(x: &Tensor, w: &Tensor) -> Vec<f32> {
    let (xs, ws) = (x.f32s("x").unwrap(), w.f32s("w").unwrap());
    let (k, n) = (w.shape()[1], w.shape()[0]);
    let rows = xs.len() / k;
    let mut out = Vec::with_capacity(rows * n);
    for r in 0..rows {
        for j in 0..n {
            let s: f64 = (0..k)
                .map(|i| (xs[r * k + i] as f64 * ws[j * k + i] as f64).abs())
                .sum();
            out.push((2.0 * (k as f64 + 2.0) * f32::EPSILON as f64 * s) as f32 + 1e-30);
        }
    }
    out
}

fn packed_kernels() -> Vec<MatMulKernel> {
    let mut v = vec![MatMulKernel::PackedWg, MatMulKernel::PackedSg];
    for tn4 in [1, 2, 4] {
        for xtex in [false, true] {
            v.push(MatMulKernel::PackedNorm { tn4, xtex });
            v.push(MatMulKernel::PackedF16 { tn4, xtex });
        }
    }
    // GEMV (unrolled), the unrolled 4/8 x 1/2 blocks, and the looped blocks (2x4, 2x2).
    for (tm, tn4) in [
        (1, 1),
        (1, 2),
        (1, 4),
        (4, 1),
        (4, 2),
        (8, 1),
        (8, 2),
        (2, 4),
        (2, 2),
    ] {
        for (wtex, xtex) in [(false, false), (true, false), (false, true), (true, true)] {
            v.push(MatMulKernel::PackedKn {
                tm,
                tn4,
                wtex,
                xtex,
            });
        }
    }
    for tm in [1, 2, 4] {
        for r in [1, 2, 4] {
            for (wtex, xtex) in [(false, false), (true, false), (false, true), (true, true)] {
                v.push(MatMulKernel::Packed { tm, r, wtex, xtex });
            }
        }
    }
    v
}

fn choose(k: MatMulKernel) -> TunedChoices {
    let v = serde_json::to_value(k).unwrap();
    let mut c = TunedChoices::new();
    let m = c.entry("matmul".into()).or_default();
    m.insert("qgemv".into(), v.clone());
    m.insert("qgemv_f16".into(), v.clone());
    m.insert("qgemm".into(), v);
    c
}

#[test]
fn packed_matmul_kernels_match_the_reference_on_the_same_weights() {
    let Some(ctx) = gpu() else { return };
    // (A shape, N): GEMV, odd K and N, N not a multiple of any tile, batch dims, large K.
    let cases: [(Vec<usize>, usize); 5] = [
        (vec![1, 37], 5),
        (vec![1, 256], 130),
        (vec![3, 100], 67),
        (vec![2, 3, 64], 33),
        (vec![5, 1500], 9),
    ];
    let kernels = packed_kernels();
    for (ci, (a_shape, n)) in cases.iter().enumerate() {
        for (fi, f) in formats().iter().enumerate() {
            let (model, x) = linear_model(a_shape, *n, f, (ci + fi) % 2 == 0);
            let want = cpu_run(&model, &[("x", &x)]);
            let k = *a_shape.last().unwrap();
            let w = f.decode("w", &[*n, k], &model.weights).unwrap();
            let tol = bound(&x, &w);
            // Each kernel on the first two cases with two formats and on one later case with
            // one, the formats in rotation, so the test stays quick (each distinct pipeline
            // compiles on the device); every one must be the kernel that runs.
            for (ki, kern) in kernels.iter().enumerate() {
                // Kernels for one format (f16 read as f16) run on every case in it; the others
                // rotate through the formats. Normalised textures hold no int4 codes.
                let f16k = matches!(kern, MatMulKernel::PackedF16 { .. });
                let int4 = matches!(f, WeightFormat::Quant(q) if q.bits == 4);
                let pick = (ki * 5 + ci) % 12;
                let rotated = (fi == pick || (ci <= 1 && fi == (pick + 6) % 12))
                    && (ci <= 1 || ki % 3 == ci - 2);
                let runs = if f16k {
                    *f == WeightFormat::Half
                } else {
                    rotated && !(int4 && matches!(kern, MatMulKernel::PackedNorm { .. }))
                };
                if !runs {
                    continue;
                }
                if f16k && !ctx.profile.features.shader_f16 {
                    skip_gpu_check("the adapter has no shader-f16: the f16 kernels not run");
                    continue;
                }
                if *kern == MatMulKernel::PackedSg && !ctx.profile.features.subgroups {
                    skip_gpu_check("the adapter has no subgroups: sg64 not run");
                    continue;
                }
                let s = Session::with_context(&model, ctx.clone(), opts_with(choose(*kern), false))
                    .unwrap();
                let node = &s.plan().nodes[0];
                assert_eq!(node.kernel, kern.name(), "{} {a_shape:?}", f.label());
                let got = s.run(&[("x", &x)]).unwrap().remove(0);
                let (g, e) = (got.f32s("g").unwrap(), want.f32s("w").unwrap());
                for (i, ((a, b), t)) in g.iter().zip(e).zip(&tol).enumerate() {
                    // relu6 only shrinks differences; the bias adds one rounding of its size.
                    let t = t + 2.0 * f32::EPSILON * b.abs();
                    assert!(
                        (a - b).abs() <= t,
                        "{} {a_shape:?}x{n} [{}]: element {i}: {a} vs {b} (bound {t})",
                        f.label(),
                        kern.name()
                    );
                }
            }
        }
    }
}

#[test]
fn packed_weights_stay_packed_on_the_device() {
    let Some(ctx) = gpu() else { return };
    let f = quant(4, 32, true, false, true);
    let (model, x) = linear_model(&[1, 1024], 256, &f, false);
    let stored = f.stored_bytes("w", &model.weights) as u64;
    let s = Session::with_context(
        &model,
        ctx.clone(),
        SessionOptions {
            autotune: false,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(
        s.plan().values.iter().all(|v| !v.decoded),
        "nothing decoded"
    );
    let dev = s.weight_device_bytes();
    assert!(
        dev >= stored && dev * 10 <= stored * 11,
        "weights on the device: {dev} bytes for {stored} packed bytes"
    );
    let want = cpu_run(&model, &[("x", &x)]);
    let got = s.run(&[("x", &x)]).unwrap().remove(0);
    assert_close("int4 linear", &got, &want, 1e-4, 1e-4);
}

#[test]
fn weights_no_kernel_reads_are_decoded_and_the_plan_says_so() {
    let Some(ctx) = gpu() else { return };
    // A [K, N] weight (trans_b off) and int4 groups of 16 (half a texel): dense kernels on the
    // decoded weight, said in the plan and the notices; results still the reference's.
    for (trans_b, f) in [
        (false, quant(8, 0, false, false, false)),
        (true, quant(4, 16, false, false, false)),
    ] {
        let mut b = GraphBuilder::new();
        let x = b.input("x", &[2, 48]);
        let shape = if trans_b { [24, 48] } else { [48, 24] };
        let w = b
            .weight_packed("w", &Tensor::random(&shape, 9), f.clone())
            .unwrap();
        let y = b.node(
            Op::MatMul(MatMul {
                trans_b,
                ..Default::default()
            }),
            &[&x, &w],
        );
        b.output(&y);
        let model = Model::from_builder(b).unwrap();
        let xt = Tensor::random(&[2, 48], 2);
        let s = Session::with_context(&model, ctx.clone(), opts_with(TunedChoices::new(), false))
            .unwrap();
        assert_eq!(s.plan().nodes[0].placement, Placement::Gpu);
        assert!(s.plan().values.iter().any(|v| v.name == "w" && v.decoded));
        assert!(
            s.plan().describe().contains("DECODED"),
            "{}",
            s.plan().describe()
        );
        assert!(
            s.notices().iter().any(|n| n.contains("decoded")),
            "{:?}",
            s.notices()
        );
        let want = cpu_run(&model, &[("x", &xt)]);
        let got = s.run(&[("x", &xt)]).unwrap().remove(0);
        assert_close(&f.label(), &got, &want, 1e-4, 1e-4);
    }
}

/// Rust model of the int8 x int8 kernels: each row of A quantised to codes
/// `round_ties_even(x / s)` with `s = max|x| / 127`, then `s * sum_k code * w[n][k]` on the
/// decoded weight. Returns the result and a per-element bound: f32 rounding of the per-group
/// scaling (the integer sums are exact) plus, for every activation that lies within 1e-4 of a
/// rounding tie (where the device's `1 / s`, a few ULP from Rust's, may round the other way),
/// one quantisation step times |w|.
fn int8xint8_model(x: &Tensor, w: &Tensor) -> (Vec<f32>, Vec<f32>) {
    let (xs, ws) = (x.f32s("x").unwrap(), w.f32s("w").unwrap());
    let (n, k) = (w.shape()[0], w.shape()[1]);
    let rows = xs.len() / k;
    let (mut out, mut tol) = (Vec::new(), Vec::new());
    for r in 0..rows {
        let row = &xs[r * k..][..k];
        let amax = row.iter().fold(0f32, |a, v| a.max(v.abs()));
        let s = if amax == 0.0 { 1.0 } else { amax / 127.0 };
        let inv = 1.0 / s;
        let t: Vec<f32> = row.iter().map(|v| v * inv).collect();
        let q: Vec<f32> = t
            .iter()
            .map(|v| v.round_ties_even().clamp(-127.0, 127.0))
            .collect();
        let tie: Vec<bool> = t
            .iter()
            .map(|v| ((v.abs() - v.abs().floor()) - 0.5).abs() < 1e-4)
            .collect();
        for j in 0..n {
            let wr = &ws[j * k..][..k];
            let exact: f64 = (0..k).map(|i| q[i] as f64 * wr[i] as f64).sum();
            let mag: f64 = (0..k).map(|i| (q[i] as f64 * wr[i] as f64).abs()).sum();
            let ties: f64 = (0..k).filter(|&i| tie[i]).map(|i| wr[i].abs() as f64).sum();
            out.push((exact * s as f64) as f32);
            let eps = f32::EPSILON as f64;
            tol.push(
                ((8.0 * eps * (k as f64 / 16.0 + 4.0) * mag + ties) * s as f64) as f32 + 1e-30,
            );
        }
    }
    (out, tol)
}

#[test]
fn int8_activation_kernels_match_a_model_of_their_arithmetic() {
    let Some(ctx) = gpu() else { return };
    let mut kernels = Vec::new();
    for r in [1, 2, 4] {
        for dot in [false, true] {
            for wtex in [false, true] {
                kernels.push(MatMulKernel::Int8Act { r, dot, wtex });
            }
        }
    }
    let int8s = [
        quant(8, 0, false, false, false),
        quant(8, 32, true, false, true),
        quant(8, 16, false, true, false),
    ];
    let cases: [(Vec<usize>, usize); 3] =
        [(vec![1, 37], 5), (vec![3, 100], 67), (vec![2, 2, 300], 9)];
    for (ci, (a_shape, n)) in cases.iter().enumerate() {
        for (fi, f) in int8s.iter().enumerate() {
            let k = *a_shape.last().unwrap();
            let mut b = GraphBuilder::new();
            let x = b.input("x", a_shape);
            let w = b
                .weight_packed("w", &Tensor::random(&[*n, k], 5), f.clone())
                .unwrap();
            let y = b.linear(&x, &w, None, Activation::None);
            b.output(&y);
            let model = Model::from_builder(b).unwrap();
            let xt = Tensor::random(a_shape, 3 + ci as u64);
            let wd = f.decode("w", &[*n, k], &model.weights).unwrap();
            let (want, tol) = int8xint8_model(&xt, &wd);
            for (ki, kern) in kernels.iter().enumerate() {
                if (ki + fi + ci) % 3 != 0 {
                    continue;
                }
                let mut c = TunedChoices::new();
                c.entry("matmul".into())
                    .or_default()
                    .insert("qi8".into(), serde_json::to_value(kern).unwrap());
                let mut o = opts_with(c, false);
                o.int8_activations = true;
                let s = Session::with_context(&model, ctx.clone(), o).unwrap();
                assert_eq!(s.plan().nodes[0].kernel, kern.name(), "{}", f.label());
                let got = s.run(&[("x", &xt)]).unwrap().remove(0);
                for (i, ((g, e), t)) in got
                    .f32s("g")
                    .unwrap()
                    .iter()
                    .zip(&want)
                    .zip(&tol)
                    .enumerate()
                {
                    assert!(
                        (g - e).abs() <= *t,
                        "{} {a_shape:?}x{n} [{}]: element {i}: {g} vs {e} (bound {t})",
                        f.label(),
                        kern.name()
                    );
                }
            }
        }
    }
}
