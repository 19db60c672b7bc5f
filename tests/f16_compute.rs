//! The f16-product kernels (`SessionOptions::f16_compute`, adapters with `shader-f16`) and the
//! subgroup f32 GEMV, against the CPU reference on edge shapes: one row, odd sizes, sizes that
//! are not a multiple of any tile or run, batch 1 and > 1, large K. Every case pins the kernel
//! and asserts that it is the one that ran.
//!
//! Tolerances, per output element, computed in f64 from the operands (no fixed tolerance a
//! large K could outgrow):
//! - f32 kernels (the subgroup GEMV) sum the same K products as the reference in another order:
//!   each term passes through at most K + 2 roundings either way, so
//!   |got - want| <= 2 (K + 2) eps sum_k |a_k b_k| (eps = 2^-23).
//! - f16 products. The kernels form runs of R consecutive k (R = 4 for the block GEMM and the
//!   pointwise conv, 2 for f16 weights read as f16) in f16 and add each run's partial to an
//!   f32 accumulator. The implicit-GEMM conv's runs are 4 input channels at one tap, the
//!   depthwise conv's up to 4 taps of one kernel row; their bounds take the actual runs. A run touches its terms with at most c = R + 2 f16 roundings (A and B
//!   rounded to f16, the first product, R - 1 FMAs), each of relative size at most
//!   u = 2^-11 of a value no larger than S_r = sum over the run of |a_k b_k| (f16 keeps 11
//!   significant bits). Rounding to nearest makes these errors zero-mean and independent
//!   across runs, each at most uniform on [-u, u] * S_r (standard deviation u S_r / sqrt(3)),
//!   so the sum's error has sigma <= u sqrt(c / 3 * sum_r S_r^2): about u sqrt(K) times the
//!   typical term, the sqrt(K) growth of the f32-sum design (an all-f16 sum would grow like K).
//!   The bound is 8 sigma, plus what f16 cannot hold in relative terms: a value below f16's
//!   smallest normal (2^-14) is rounded to a multiple of 2^-24, at most 2^-25 off, so
//!   c * (K / R + 1) * 2^-25 absolute, plus the f32 bound above for the f32 sums on both sides.
//!   The large-K cases also check that f16 arithmetic really ran: the largest error must exceed
//!   2^-13 max |want|, a quarter of f16's unit roundoff on the largest output. An f32
//!   computation stays far below that (its rounding is 2^-24 relative, and the sum's error
//!   grows like sqrt(K) eps |partial sums|: ~1e-5 of the outputs here), while the f16 runs
//!   give errors of order 2^-11 sqrt(K) times a term. (The worst-case f32 bound above cannot
//!   serve for this: it grows like K and outgrows the f16 error's sqrt(K) at large K.)

mod common;
use common::*;
use wgedge::format::WeightFormat;
use wgedge::graph::GraphBuilder;
use wgedge::ops::{Activation, Conv2d, ConvKernel, KernelVariant, MatMulKernel};
use wgedge::profile::TunedChoices;
use wgedge::{Model, Session, SessionOptions, Tensor};

const U16: f64 = 1.0 / 2048.0; // 2^-11
const EPS32: f64 = f32::EPSILON as f64;

/// Pins `k` (serde form) in every listed slot of `family`.
fn choose<K: serde::Serialize>(family: &str, slots: &[&str], k: &K) -> TunedChoices {
    let v = serde_json::to_value(k).unwrap();
    let mut c = TunedChoices::new();
    let m = c.entry(family.into()).or_default();
    for s in slots {
        m.insert((*s).into(), v.clone());
    }
    c
}

fn opts(kernels: TunedChoices, f16: bool) -> SessionOptions {
    let mut o = opts_with(kernels, false);
    o.f16_compute = f16;
    o
}

const MATMUL_SLOTS: [&str; 7] = [
    "gemm",
    "gemv",
    "qgemm",
    "gemm_f16c",
    "gemv_f16c",
    "qgemv_f16",
    "qgemv_f16c",
];

/// The error bound of one output from its terms `t_k = a_k b_k` in k order (module docs):
/// `run` = 0 for an f32 kernel, else the f16 run length R.
fn bound_of(terms: &[f64], run: usize) -> f64 {
    let k = terms.len();
    let abs: f64 = terms.iter().map(|t| t.abs()).sum();
    let f32_part = 2.0 * (k as f64 + 2.0) * EPS32 * abs;
    if run == 0 {
        return f32_part + 1e-30;
    }
    let c = (run + 2) as f64;
    let s2: f64 = terms
        .chunks(run)
        .map(|r| r.iter().map(|t| t.abs()).sum::<f64>().powi(2))
        .sum();
    let sigma = U16 * (c / 3.0 * s2).sqrt();
    8.0 * sigma + c * (k / run + 1) as f64 * 2f64.powi(-25) + f32_part
}

/// `bound_of` over explicit runs of at most 4 terms (the conv kernels' runs, module docs),
/// plus one f32 rounding each for adding the bias and the residual (`extra`: their sizes).
fn bound_runs(runs: &[Vec<f64>], extra: f64) -> f64 {
    let abs: f64 = runs.iter().flatten().map(|t| t.abs()).sum();
    let k = runs.iter().map(|r| r.len()).sum::<usize>();
    let f32_part = 2.0 * (k as f64 + 2.0) * EPS32 * abs + 2.0 * EPS32 * extra;
    let c = 6.0; // R + 2 roundings for R = 4, at most
    let s2: f64 = runs
        .iter()
        .map(|r| r.iter().map(|t| t.abs()).sum::<f64>().powi(2))
        .sum();
    8.0 * U16 * (c / 3.0 * s2).sqrt() + c * (runs.len() + 1) as f64 * 2f64.powi(-25) + f32_part
}

/// Checks `got` against `want` element by element with the bounds `tol` (the bias adds one f32
/// rounding of its size; relu6 only shrinks differences). Returns the largest |error| divided
/// by 2^-13 max |want|: above 1 only where f16 rounding showed (module docs).
fn check(what: &str, got: &Tensor, want: &Tensor, tol: &[f64]) -> f64 {
    let (g, w) = (got.f32s("got").unwrap(), want.f32s("want").unwrap());
    assert_eq!(g.len(), w.len(), "{what}: size");
    assert_eq!(g.len(), tol.len(), "{what}: bounds");
    let mut worst = 0.0f64;
    let mut top = 0.0f64;
    for (i, (a, b)) in g.iter().zip(w).enumerate() {
        let err = (*a as f64 - *b as f64).abs();
        let t = tol[i] + 2.0 * EPS32 * (*b as f64).abs();
        assert!(
            err <= t,
            "{what}: element {i}: {a} vs {b} (|err| {err:e} > bound {t:e})"
        );
        worst = worst.max(err);
        top = top.max((*b as f64).abs());
    }
    worst / (top * 2f64.powi(-13))
}

/// `x @ W^T + b` (Linear, W `[N, K]`, optionally stored as `format`) with relu6 (none at
/// K >= 1000), or `x @ B`
/// (B `[K, N]`, no bias) when `!linear`. Returns the model, the input and each output's terms.
fn matmul_case(
    a_shape: &[usize],
    n: usize,
    linear: bool,
    format: Option<WeightFormat>,
) -> (Model, Tensor, Vec<Vec<f64>>) {
    let k = *a_shape.last().unwrap();
    let x = Tensor::random(a_shape, 3 + k as u64);
    let mut b = GraphBuilder::new();
    let xi = b.input("x", a_shape);
    let w_shape = if linear { vec![n, k] } else { vec![k, n] };
    let wt = Tensor::random(&w_shape, 5 + n as u64);
    let wname = match &format {
        Some(f) => b.weight_packed("w", &wt, f.clone()).unwrap(),
        None => b.weight("w", wt.clone()),
    };
    let y = if linear {
        let bias = b.weight("b", Tensor::random(&[n], 6));
        // At large K most outputs leave relu6's [0, 6] and would hide the arithmetic.
        let act = if k < 1000 {
            Activation::Relu6
        } else {
            Activation::None
        };
        b.linear(&xi, &wname, Some(&bias), act)
    } else {
        b.matmul(&xi, &wname)
    };
    b.output(&y);
    let model = Model::from_builder(b).unwrap();
    // The weight as the reference sees it (f16 weights decoded).
    let wv = match &format {
        Some(f) => f.decode("w", &w_shape, &model.weights).unwrap(),
        None => wt,
    };
    let (xs, ws) = (x.f32s("x").unwrap(), wv.f32s("w").unwrap());
    let rows = xs.len() / k;
    let mut terms = Vec::with_capacity(rows * n);
    for r in 0..rows {
        for j in 0..n {
            terms.push(
                (0..k)
                    .map(|i| {
                        let wk = if linear { ws[j * k + i] } else { ws[i * n + j] };
                        xs[r * k + i] as f64 * wk as f64
                    })
                    .collect(),
            );
        }
    }
    (model, x, terms)
}

fn cpu_run(model: &Model, x: &Tensor) -> Tensor {
    let s = Session::cpu(model, SessionOptions::default()).unwrap();
    s.run(&[("x", x)]).unwrap().remove(0)
}

/// Runs `model` with `kern` pinned and f16 compute `f16`; asserts the node ran `kern`.
fn run_pinned(
    ctx: &std::sync::Arc<wgedge::GpuContext>,
    model: &Model,
    x: &Tensor,
    kernels: TunedChoices,
    f16: bool,
    name: &str,
) -> Tensor {
    let s = Session::with_context(model, ctx.clone(), opts(kernels, f16)).unwrap();
    assert_eq!(s.plan().nodes[0].kernel, name, "the pinned kernel runs");
    s.run(&[("x", x)]).unwrap().remove(0)
}

/// (A shape, N, linear): GEMV cases (one row; batch dims of single rows), GEMM cases.
fn gemv_cases() -> Vec<(Vec<usize>, usize, bool)> {
    vec![
        (vec![1, 1], 1, true),
        (vec![1, 37], 5, true),
        (vec![1, 100], 67, false),
        (vec![3, 1, 64], 33, true),
        (vec![1, 4099], 130, true),
    ]
}

fn gemm_cases() -> Vec<(Vec<usize>, usize, bool)> {
    vec![
        (vec![2, 1], 3, true),
        (vec![3, 37], 5, false),
        (vec![9, 100], 67, true),
        (vec![2, 5, 64], 33, true),
        (vec![13, 2051], 19, true),
    ]
}

#[test]
fn subgroup_gemv_matches_the_reference() {
    let Some(ctx) = gpu() else { return };
    if !ctx.profile.features.subgroups {
        skip_gpu_check("the adapter has no subgroups: sg-gemv not run");
        return;
    }
    let k = MatMulKernel::SgGemv;
    // Also on GEMM shapes: the kernel takes any rows (one workgroup per output).
    for (a_shape, n, linear) in gemv_cases().into_iter().chain(gemm_cases()) {
        let (model, x, terms) = matmul_case(&a_shape, n, linear, None);
        let want = cpu_run(&model, &x);
        let got = run_pinned(
            &ctx,
            &model,
            &x,
            choose("matmul", &MATMUL_SLOTS, &k),
            false,
            &k.name(),
        );
        let tol: Vec<f64> = terms.iter().map(|t| bound_of(t, 0)).collect();
        check(&format!("sg-gemv {a_shape:?}x{n}"), &got, &want, &tol);
    }
}

#[test]
fn f16_block_kernels_match_the_reference_within_the_f16_bound() {
    let Some(ctx) = gpu() else { return };
    if !ctx.profile.features.shader_f16 {
        skip_gpu_check("the adapter has no shader-f16: the f16 block kernels not run");
        return;
    }
    let mut shown = false;
    let blocks = |tms: &[(u32, u32)]| {
        let mut v = Vec::new();
        for &(tm, tn4) in tms {
            for tex in [false, true] {
                v.push(MatMulKernel::F16Block { tm, tn4, tex });
            }
        }
        v
    };
    let gemv = blocks(&[(1, 1), (1, 2), (1, 4)]);
    let gemm = blocks(&[(4, 1), (4, 2), (8, 1), (8, 2)]);
    for (kernels, cases) in [(gemv, gemv_cases()), (gemm, gemm_cases())] {
        for (ci, (a_shape, n, linear)) in cases.iter().enumerate() {
            let (model, x, terms) = matmul_case(a_shape, *n, *linear, None);
            let want = cpu_run(&model, &x);
            let tol: Vec<f64> = terms.iter().map(|t| bound_of(t, 4)).collect();
            for (ki, k) in kernels.iter().enumerate() {
                // Every kernel on the large-K case; the others rotate through the kernels so
                // the test stays quick (each distinct pipeline compiles on the device).
                if ci != cases.len() - 1 && ki % 2 != ci % 2 {
                    continue;
                }
                let c = choose("matmul", &MATMUL_SLOTS, k);
                let got = run_pinned(&ctx, &model, &x, c, true, &k.name());
                let what = format!("{} {a_shape:?}x{n}", k.name());
                let ratio = check(&what, &got, &want, &tol);
                if ci == cases.len() - 1 {
                    assert!(
                        ratio > 1.0,
                        "{what}: the error stays below 2^-13 max |want| ({ratio}): was f16 used?"
                    );
                    if !shown {
                        eprintln!("{what}: largest error / (2^-13 max |want|) = {ratio:.1}");
                        shown = true;
                    }
                }
            }
        }
    }
}

#[test]
fn f16_weights_multiplied_in_f16_match_the_reference() {
    let Some(ctx) = gpu() else { return };
    if !ctx.profile.features.shader_f16 {
        skip_gpu_check("the adapter has no shader-f16: the f16c weight kernels not run");
        return;
    }
    let cases = [
        (vec![1, 2], 1),
        (vec![1, 37], 5),
        (vec![1, 256], 130),
        (vec![2, 1, 64], 33),
        (vec![1, 4000], 9),
    ];
    for tn4 in [1, 2, 4] {
        for xtex in [false, true] {
            let k = MatMulKernel::PackedF16c { tn4, xtex };
            for (ci, (a_shape, n)) in cases.iter().enumerate() {
                let (model, x, terms) = matmul_case(a_shape, *n, true, Some(WeightFormat::Half));
                let want = cpu_run(&model, &x);
                let tol: Vec<f64> = terms.iter().map(|t| bound_of(t, 2)).collect();
                let c = choose("matmul", &MATMUL_SLOTS, &k);
                let s = Session::with_context(&model, ctx.clone(), opts(c, true)).unwrap();
                assert_eq!(s.plan().nodes[0].kernel, k.name());
                assert!(
                    s.plan().values.iter().all(|v| !v.decoded),
                    "the f16 weight stays f16"
                );
                let got = s.run(&[("x", &x)]).unwrap().remove(0);
                let what = format!("{} {a_shape:?}x{n}", k.name());
                let ratio = check(&what, &got, &want, &tol);
                if ci == cases.len() - 1 {
                    assert!(ratio > 1.0, "{what}: no f16 error showed ({ratio})");
                }
            }
        }
    }
}

/// A 1x1 conv `cin -> cout` over `[n, cin, h, w]` with bias and relu6; each output's terms.
fn pw_case(
    n: usize,
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
) -> (Model, Tensor, Vec<Vec<f64>>) {
    let x = Tensor::random(&[n, cin, h, w], 7 + cin as u64);
    let wt = Tensor::random(&[cout, cin, 1, 1], 8 + cout as u64);
    let mut b = GraphBuilder::new();
    let xi = b.input("x", &[n, cin, h, w]);
    let wn = b.weight("w", wt.clone());
    let bias = b.weight("b", Tensor::random(&[cout], 9));
    let conv = Conv2d {
        act: Activation::Relu6,
        ..Default::default()
    };
    let y = b.conv2d(&xi, &wn, Some(&bias), conv);
    b.output(&y);
    let (xs, ws) = (x.f32s("x").unwrap(), wt.f32s("w").unwrap());
    let hw = h * w;
    let mut terms = Vec::new();
    for img in 0..n {
        for co in 0..cout {
            for q in 0..hw {
                terms.push(
                    (0..cin)
                        .map(|ci| ws[co * cin + ci] as f64 * xs[(img * cin + ci) * hw + q] as f64)
                        .collect(),
                );
            }
        }
    }
    (Model::from_builder(b).unwrap(), x, terms)
}

#[test]
fn f16_pointwise_conv_matches_the_reference_within_the_f16_bound() {
    let Some(ctx) = gpu() else { return };
    if !ctx.profile.features.shader_f16 {
        skip_gpu_check("the adapter has no shader-f16: the f16 pointwise kernels not run");
        return;
    }
    // (n, cin, cout, h, w): one channel, odd channels and HW (texture path only), batch 2,
    // channels not a multiple of the 4 x 8 block, large cin.
    let cases = [
        (1, 1, 3, 2, 2),
        (1, 5, 7, 3, 3),
        (2, 24, 9, 4, 5),
        (1, 13, 17, 8, 8),
        (1, 1030, 6, 4, 4),
    ];
    for (ci, &(n, cin, cout, h, w)) in cases.iter().enumerate() {
        let (model, x, terms) = pw_case(n, cin, cout, h, w);
        let want = cpu_run(&model, &x);
        let tol: Vec<f64> = terms.iter().map(|t| bound_of(t, 4)).collect();
        for (tm, tn4) in [(4, 1), (4, 2), (8, 1), (8, 2)] {
            for xtex in [false, true] {
                if !xtex && (h * w) % 4 != 0 {
                    continue; // the storage form reads vec4s of pixels
                }
                let k = ConvKernel::PointwiseF16 { tm, tn4, xtex };
                let c = choose("conv2d", &["pwconv", "pwconv_f16c"], &k);
                let got = run_pinned(&ctx, &model, &x, c, true, &k.name());
                let what = format!("{} {n}x{cin}x{h}x{w} -> {cout}", k.name());
                let ratio = check(&what, &got, &want, &tol);
                if ci == cases.len() - 1 {
                    assert!(ratio > 1.0, "{what}: no f16 error showed ({ratio})");
                }
            }
        }
    }
}

#[test]
fn f16_kernels_run_only_when_the_session_allows_f16() {
    // Planned on a profile (no device): the f16 kernels are refused without the option or the
    // feature, and an untuned session with the option still runs f32 kernels.
    use wgedge::profile::DeviceProfile;
    use wgedge::sched::{Plan, PlanOptions};
    let (model, _, _) = matmul_case(&[4, 64], 16, true, None);
    let (g, w) = (model.graph.clone(), model.weights.clone());
    let k = MatMulKernel::F16Block {
        tm: 4,
        tn4: 2,
        tex: false,
    };
    let plan_with = |f16: bool, feature: bool, pinned: bool| {
        let mut p = DeviceProfile::portable();
        p.features.shader_f16 = feature;
        p.f16_compute = f16;
        if pinned {
            p.kernels = choose("matmul", &MATMUL_SLOTS, &k);
        }
        let plan = Plan::new(&g, &w, Some(&p), PlanOptions::default()).unwrap();
        plan.nodes[0].kernel.clone()
    };
    assert_eq!(plan_with(true, true, true), k.name());
    for (f16, feature, pinned) in [
        (false, true, true),
        (true, false, true),
        (true, true, false),
    ] {
        let ran = plan_with(f16, feature, pinned);
        assert!(
            !ran.starts_with("f16c"),
            "f16 {f16}, feature {feature}, pinned {pinned}: {ran} ran"
        );
    }
    // The fit check says why.
    let mut p = DeviceProfile::portable();
    p.features.shader_f16 = true;
    p.kernels = choose("matmul", &MATMUL_SLOTS, &k);
    let err = wgedge::exec::autotune::validate_choices(&p.kernels);
    assert!(err.is_ok(), "an f16 kernel is a valid choice: {err:?}");
}

/// A conv case: input `[n, cin, h, w]`, weight `[cout, cin / groups, kh, kw]`, the conv's
/// attributes (bias and residual as flagged, both constant inputs of the one conv node).
struct ConvCase {
    n: usize,
    cin: usize,
    cout: usize,
    hw: [usize; 2],
    k: [usize; 2],
    conv: Conv2d,
}

/// One output's f16 runs of terms, and the size of what its epilogue adds (bias, residual).
type OutputTerms = (Vec<Vec<f64>>, f64);

/// The model of `c` (one conv node), its input, and per output the f16 runs of its terms in
/// the kernel's order with the size of its bias and residual: `depthwise` runs are up to 4
/// taps of one kernel row, others 4 input channels at one tap.
fn conv_case(c: &ConvCase, depthwise: bool) -> (Model, Tensor, Vec<OutputTerms>) {
    let cv = c.conv;
    let [h, w] = c.hw;
    let [kh, kw] = c.k;
    let (g, cin_g) = (cv.groups, c.cin / cv.groups);
    let cout_g = c.cout / g;
    let x = Tensor::random(&[c.n, c.cin, h, w], 11 + c.cin as u64);
    let wt = Tensor::random(&[c.cout, cin_g, kh, kw], 12 + c.cout as u64);
    let oh = (h + cv.pad[0] + cv.pad[2] - (kh - 1) * cv.dilation[0] - 1) / cv.stride[0] + 1;
    let ow = (w + cv.pad[1] + cv.pad[3] - (kw - 1) * cv.dilation[1] - 1) / cv.stride[1] + 1;
    let bias = Tensor::random(&[c.cout], 13);
    let res = Tensor::random(&[c.n, c.cout, oh, ow], 14);
    let mut b = GraphBuilder::new();
    let xi = b.input("x", &[c.n, c.cin, h, w]);
    let mut ins = vec![xi, b.weight("w", wt.clone())];
    if cv.bias {
        ins.push(b.weight("b", bias.clone()));
    }
    if cv.residual {
        ins.push(b.weight("r", res.clone()));
    }
    let refs: Vec<&str> = ins.iter().map(|s| s.as_str()).collect();
    let y = b.node(wgedge::ops::Op::Conv2d(cv), &refs);
    b.output(&y);
    let (xs, ws) = (x.f32s("x").unwrap(), wt.f32s("w").unwrap());
    let (bs, rs) = (bias.f32s("b").unwrap(), res.f32s("r").unwrap());
    let mut out = Vec::new();
    for img in 0..c.n {
        for co in 0..c.cout {
            let gi = co / cout_g;
            for oy in 0..oh {
                for ox in 0..ow {
                    // The term of input channel ci (within the group) at tap (ky, kx).
                    let term = |ci: usize, ky: usize, kx: usize| {
                        let iy =
                            (oy * cv.stride[0] + ky * cv.dilation[0]) as isize - cv.pad[0] as isize;
                        let ix =
                            (ox * cv.stride[1] + kx * cv.dilation[1]) as isize - cv.pad[1] as isize;
                        if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                            return 0.0;
                        }
                        let xv = xs
                            [((img * c.cin + gi * cin_g + ci) * h + iy as usize) * w + ix as usize];
                        let wv = ws[((co * cin_g + ci) * kh + ky) * kw + kx];
                        xv as f64 * wv as f64
                    };
                    let mut runs = Vec::new();
                    if depthwise {
                        for ky in 0..kh {
                            for k0 in (0..kw).step_by(4) {
                                runs.push((k0..kw.min(k0 + 4)).map(|kx| term(0, ky, kx)).collect());
                            }
                        }
                    } else {
                        for c0 in (0..cin_g).step_by(4) {
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    let r = (c0..cin_g.min(c0 + 4)).map(|ci| term(ci, ky, kx));
                                    runs.push(r.collect());
                                }
                            }
                        }
                    }
                    let mut extra = 0.0;
                    if cv.bias {
                        extra += (bs[co] as f64).abs();
                    }
                    if cv.residual {
                        extra += (rs[((img * c.cout + co) * oh + oy) * ow + ox] as f64).abs();
                    }
                    out.push((runs, extra));
                }
            }
        }
    }
    (Model::from_builder(b).unwrap(), x, out)
}

/// Runs the kernels of `kernels` that fit (`fits(k, ow)`) on the cases (all of them on the
/// last, every other one on the others), pinned in `slots` with f16 compute on, against the CPU reference within the f16 bound; on the last case
/// (large K) the error must show f16 rounding.
fn check_conv_kernels(
    what: &str,
    cases: &[ConvCase],
    kernels: &[ConvKernel],
    slots: &[&str],
    depthwise: bool,
    fits: impl Fn(&ConvKernel, usize) -> bool,
) {
    let Some(ctx) = gpu() else { return };
    if !ctx.profile.features.shader_f16 {
        skip_gpu_check(&format!("the adapter has no shader-f16: {what} not run"));
        return;
    }
    for (ci, case) in cases.iter().enumerate() {
        let (model, x, outs) = conv_case(case, depthwise);
        let want = cpu_run(&model, &x);
        let tol: Vec<f64> = outs.iter().map(|(r, e)| bound_runs(r, *e)).collect();
        let ow = *want.shape().last().unwrap();
        let mut ran = 0;
        for (ki, k) in kernels.iter().enumerate() {
            // Every kernel on the large-K case; the others rotate through the kernels so the
            // test stays quick (each case's geometry compiles a new pipeline on the device).
            if !fits(k, ow) || (ci != cases.len() - 1 && ki % 2 != ci % 2) {
                continue;
            }
            let c = choose("conv2d", slots, k);
            let got = run_pinned(&ctx, &model, &x, c, true, &k.name());
            let desc = format!(
                "{} n{} cin{} cout{} {:?} k{:?} {:?}",
                k.name(),
                case.n,
                case.cin,
                case.cout,
                case.hw,
                case.k,
                case.conv
            );
            let ratio = check(&desc, &got, &want, &tol);
            if ci == cases.len() - 1 {
                assert!(ratio > 1.0, "{desc}: no f16 error showed ({ratio})");
                eprintln!("{desc}: largest error / (2^-13 max |want|) = {ratio:.1}");
            }
            ran += 1;
        }
        assert!(ran > 0, "{what}: case {ci} ran no kernel");
    }
}

fn conv_with(
    stride: [usize; 2],
    pad: [usize; 4],
    dilation: [usize; 2],
    groups: usize,
    epilogue: bool,
) -> Conv2d {
    Conv2d {
        stride,
        pad,
        dilation,
        groups,
        bias: epilogue,
        residual: epilogue,
        act: if epilogue {
            Activation::Relu6
        } else {
            Activation::None
        },
    }
}

#[test]
fn f16_implicit_gemm_conv_matches_the_reference_within_the_f16_bound() {
    // One channel and odd sizes; channels not a multiple of 4 (the last run of 4 input
    // channels is partial) nor of the 8-channel block, stride 2, batch 2, the epilogue; groups
    // with asymmetric padding; 5x5 with dilation; large K = cin * 9 without an activation.
    let cases = [
        ConvCase {
            n: 1,
            cin: 1,
            cout: 3,
            hw: [5, 7],
            k: [3, 3],
            conv: conv_with([1, 1], [1; 4], [1, 1], 1, false),
        },
        ConvCase {
            n: 2,
            cin: 5,
            cout: 9,
            hw: [8, 8],
            k: [3, 3],
            conv: conv_with([2, 2], [1; 4], [1, 1], 1, true),
        },
        ConvCase {
            n: 1,
            cin: 6,
            cout: 9,
            hw: [9, 12],
            k: [3, 3],
            conv: conv_with([1, 1], [1, 0, 1, 2], [1, 1], 3, true),
        },
        ConvCase {
            n: 1,
            cin: 7,
            cout: 4,
            hw: [11, 13],
            k: [5, 5],
            conv: conv_with([2, 1], [2; 4], [1, 2], 1, true),
        },
        ConvCase {
            n: 1,
            cin: 301,
            cout: 8,
            hw: [8, 8],
            k: [3, 3],
            conv: conv_with([1, 1], [1; 4], [1, 1], 1, false),
        },
    ];
    let kernels: Vec<ConvKernel> = [(4, false), (8, false), (4, true), (8, true)]
        .map(|(px, v4)| ConvKernel::ImplicitTexF16 { px, v4 })
        .to_vec();
    check_conv_kernels(
        "the f16 implicit-GEMM conv",
        &cases,
        &kernels,
        &["conv", "conv_f16c"],
        false,
        |k, ow| !matches!(k, ConvKernel::ImplicitTexF16 { v4: true, .. }) || ow % 4 == 0,
    );
}

#[test]
fn f16_depthwise_conv_matches_the_reference_within_the_f16_bound() {
    // Channels not a multiple of 4, odd heights, stride 2 with batch 2 and the epilogue,
    // asymmetric padding (a strip that starts off a vec4: OFF != 0), 5x5 (runs of 4 + 1 taps
    // per kernel row) with dilation, and 5x5 over 16 channels where f16 rounding must show
    // (7x7 takes a minute per pipeline to build on lavapipe; the shader test validates it).
    // The vec4 kernel needs input and output widths that are multiples of 4.
    let dw = |c: usize, stride, pad, dil, epi| conv_with(stride, pad, dil, c, epi);
    let cases = [
        ConvCase {
            n: 1,
            cin: 5,
            cout: 5,
            hw: [7, 8],
            k: [3, 3],
            conv: dw(5, [1, 1], [1; 4], [1, 1], false),
        },
        ConvCase {
            n: 2,
            cin: 6,
            cout: 6,
            hw: [9, 16],
            k: [3, 3],
            conv: dw(6, [2, 2], [1; 4], [1, 1], true),
        },
        ConvCase {
            n: 1,
            cin: 3,
            cout: 3,
            hw: [5, 8],
            k: [3, 3],
            conv: dw(3, [1, 1], [0, 1, 2, 1], [1, 1], true),
        },
        ConvCase {
            n: 1,
            cin: 7,
            cout: 7,
            hw: [13, 12],
            k: [5, 5],
            conv: dw(7, [1, 1], [4; 4], [2, 2], true),
        },
        ConvCase {
            n: 1,
            cin: 16,
            cout: 16,
            hw: [32, 32],
            k: [5, 5],
            conv: dw(16, [1, 1], [2; 4], [1, 1], false),
        },
    ];
    let kernels: Vec<ConvKernel> = [(8, 1), (8, 2), (16, 2), (16, 4)]
        .map(|(px, py)| ConvKernel::DwVec4F16 { px, py })
        .to_vec();
    check_conv_kernels(
        "the f16 depthwise conv",
        &cases,
        &kernels,
        &["dwconv", "dwconv_f16c"],
        true,
        |_, _| true,
    );
}

#[test]
fn f16_conv_epilogue_takes_a_folded_batch_norm() {
    // conv -> BatchNorm -> + residual input -> relu6, rewritten by the plan into one conv with
    // the BN folded into its weights and bias and the add and activation in its epilogue.
    let Some(ctx) = gpu() else { return };
    if !ctx.profile.features.shader_f16 {
        skip_gpu_check("the adapter has no shader-f16: the folded-BN f16 conv not run");
        return;
    }
    let (n, cin, cout, h, w) = (1, 6, 10, 8, 8);
    let x = Tensor::random(&[n, cin, h, w], 21);
    let r = Tensor::random(&[n, cout, h, w], 22);
    let wt = Tensor::random(&[cout, cin, 3, 3], 23);
    let mut b = GraphBuilder::new();
    let xi = b.input("x", &[n, cin, h, w]);
    let ri = b.input("r", &[n, cout, h, w]);
    let wn = b.weight("w", wt);
    let conv = Conv2d {
        pad: [1; 4],
        ..Default::default()
    };
    let y = b.conv2d(&xi, &wn, None, conv);
    let gamma = b.weight("g", Tensor::random(&[cout], 24));
    let beta = b.weight("be", Tensor::random(&[cout], 25));
    let mean = b.weight("m", Tensor::random(&[cout], 26));
    let var = b.weight("v", Tensor::new(&[cout], vec![0.5; cout]).unwrap());
    let y = b.batch_norm(&y, &gamma, &beta, &mean, &var, 1e-5);
    let y = b.add(&y, &ri);
    let y = b.act(&y, Activation::Relu6);
    b.output(&y);
    let model = Model::from_builder(b).unwrap();
    let feeds = [("x", &x), ("r", &r)];
    let cpu = Session::cpu(&model, SessionOptions::default()).unwrap();
    let want = cpu.run(&feeds).unwrap().remove(0);
    for k in [
        ConvKernel::ImplicitTexF16 { px: 8, v4: true },
        ConvKernel::ImplicitTexF16 { px: 4, v4: false },
    ] {
        let mut o = opts(choose("conv2d", &["conv", "conv_f16c"], &k), true);
        o.optimize = true;
        let s = Session::with_context(&model, ctx.clone(), o).unwrap();
        let convs: Vec<&str> = s
            .plan()
            .nodes
            .iter()
            .map(|n| n.kernel.as_str())
            .filter(|k| *k != "alias")
            .collect();
        assert_eq!(convs, [k.name()], "one fused conv node runs the f16 kernel");
        let got = s.run(&feeds).unwrap().remove(0);
        // The module's bound at its worst for these values: 18 runs (2 of 4 + 2 channels x 9
        // taps) of terms |w x| <= 1 scaled by |gamma| / sqrt(0.5) <= 1.42, so S_r <= 5.7 and
        // 8 sigma <= 8 * 2^-11 * sqrt(6 / 3 * 18 * 5.7^2) = 0.14; the f32 parts are far below.
        assert_close(&k.name(), &got, &want, 0.14, 0.0);
    }
}

#[test]
fn f16_conv_kernels_run_only_when_the_session_allows_f16() {
    // As for the matmul kernels: refused without the option or the feature, never untuned.
    use wgedge::profile::DeviceProfile;
    use wgedge::sched::{Plan, PlanOptions};
    let cases = [
        (
            ConvCase {
                n: 1,
                cin: 8,
                cout: 8,
                hw: [8, 8],
                k: [3, 3],
                conv: conv_with([1, 1], [1; 4], [1, 1], 1, true),
            },
            ConvKernel::ImplicitTexF16 { px: 8, v4: false },
            ["conv", "conv_f16c"],
        ),
        (
            ConvCase {
                n: 1,
                cin: 8,
                cout: 8,
                hw: [8, 8],
                k: [3, 3],
                conv: conv_with([1, 1], [1; 4], [1, 1], 8, true),
            },
            ConvKernel::DwVec4F16 { px: 8, py: 2 },
            ["dwconv", "dwconv_f16c"],
        ),
    ];
    for (case, k, slots) in cases {
        let (model, _, _) = conv_case(&case, false);
        let (g, w) = (model.graph.clone(), model.weights.clone());
        let plan_with = |f16: bool, feature: bool, pinned: bool| {
            let mut p = DeviceProfile::portable();
            p.features.shader_f16 = feature;
            p.f16_compute = f16;
            if pinned {
                p.kernels = choose("conv2d", &slots, &k);
            }
            let plan = Plan::new(&g, &w, Some(&p), PlanOptions::default()).unwrap();
            plan.nodes[0].kernel.clone()
        };
        assert_eq!(plan_with(true, true, true), k.name());
        for (f16, feature, pinned) in [
            (false, true, true),
            (true, false, true),
            (true, true, false),
        ] {
            let ran = plan_with(f16, feature, pinned);
            assert!(
                !ran.starts_with("f16c"),
                "{}: f16 {f16}, feature {feature}, pinned {pinned}: {ran} ran",
                k.name()
            );
        }
        let mut p = DeviceProfile::portable();
        p.kernels = choose("conv2d", &slots, &k);
        let err = wgedge::exec::autotune::validate_choices(&p.kernels);
        assert!(err.is_ok(), "an f16 conv kernel is a valid choice: {err:?}");
    }
}
