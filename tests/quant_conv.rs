//! Conv2d kernels that read packed weights (int8, int4, pow2, f16) as stored, against the CPU
//! reference computing on the *same* packed weights (decoded by the Rust decoder).
//!
//! Tolerances. Both sides compute output (b, co, oy, ox) as sum_k x_k w_k over the K =
//! cin/groups * kh * kw taps (padding taps are x = 0), then + bias + residual, then the
//! activation. The depthwise kernel decodes each weight as `(code - zero) * scale` in f32,
//! bit-equal to the Rust decoder (see tests/quant_kernels.rs), and sums in the reference's
//! order. The general kernel sums `code * x` per scale group and applies
//! `scale * (sum - zero * sum(x))` once per group: the same real number, reassociated, whose
//! terms are of size |x_k| (|code_k| + |zero|) scale <= |x_k| (|w_k| + 2 |zero * scale|)
//! (cancellation in the difference is why the zero point appears). Each term passes through at
//! most K + 4 roundings on either side (the group sums, the zero and scale products, the
//! running sum, bias and residual), so per element
//!   |got - want| <= 2 (K + 4) eps (sum_k |x_k| (|w_k| + 2 |z s|_k) + |bias| + |res|),
//! computed in f64 from the decoded weight and the stored zero points and scales. The
//! activations used (relu, relu6, leaky relu) are 1-Lipschitz; leaky relu's product adds one
//! rounding of the output's size (2 eps |want|).

mod common;
use common::*;
use wgedge::format::WeightFormat;
use wgedge::graph::GraphBuilder;
use wgedge::ops::{Activation, Conv2d, ConvKernel, KernelVariant, Op};
use wgedge::profile::TunedChoices;
use wgedge::sched::Placement;
use wgedge::{Model, Session, SessionOptions, Tensor};

/// The formats the conv kernels read: int8 per channel (sym, asym), int8 groups of 16, int4
/// groups of 32 (sym, asym; f16 scales), pow2 int8, f16.
fn formats() -> Vec<WeightFormat> {
    vec![
        quant(8, 0, false, false, false),
        quant(8, 0, true, false, true),
        quant(8, 16, true, false, false),
        quant(4, 32, false, false, true),
        quant(4, 32, true, false, true),
        quant(8, 0, false, true, false),
        WeightFormat::Half,
    ]
}

/// One conv case: input shape, weight shape, attributes (bias/residual flags included).
struct Case {
    what: &'static str,
    x: [usize; 4],
    w: [usize; 4],
    conv: Conv2d,
}

fn cases() -> Vec<Case> {
    let c = |stride: [usize; 2], pad: [usize; 4], dilation: [usize; 2], groups: usize| Conv2d {
        stride,
        pad,
        dilation,
        groups,
        ..Default::default()
    };
    let with = |mut cv: Conv2d, bias: bool, residual: bool, act: Activation| {
        cv.bias = bias;
        cv.residual = residual;
        cv.act = act;
        cv
    };
    let leaky = Activation::LeakyRelu { alpha: 0.1 };
    vec![
        Case {
            what: "3x3 s1 p1 3->5",
            x: [1, 3, 9, 7],
            w: [5, 3, 3, 3],
            conv: with(c([1, 1], [1; 4], [1, 1], 1), true, false, Activation::Relu),
        },
        Case {
            what: "3x3 s2 p1 8->16",
            x: [1, 8, 11, 10],
            w: [16, 8, 3, 3],
            conv: with(c([2, 2], [1; 4], [1, 1], 1), false, false, Activation::None),
        },
        Case {
            what: "grouped g2 6->8",
            x: [1, 6, 7, 8],
            w: [8, 3, 3, 3],
            conv: with(c([1, 1], [1; 4], [1, 1], 2), true, true, Activation::None),
        },
        Case {
            what: "dilation 2",
            x: [1, 4, 10, 9],
            w: [6, 4, 3, 3],
            conv: with(c([1, 1], [2; 4], [2, 2], 1), true, false, leaky),
        },
        Case {
            what: "depthwise 3x3 s1",
            x: [1, 12, 8, 9],
            w: [12, 1, 3, 3],
            conv: with(
                c([1, 1], [1; 4], [1, 1], 12),
                true,
                false,
                Activation::Relu6,
            ),
        },
        Case {
            what: "depthwise 3x3 s2",
            x: [1, 10, 11, 9],
            w: [10, 1, 3, 3],
            conv: with(c([2, 2], [1; 4], [1, 1], 10), false, true, Activation::None),
        },
        Case {
            what: "depthwise 5x5",
            x: [1, 8, 9, 9],
            w: [8, 1, 5, 5],
            conv: with(c([1, 1], [2; 4], [1, 1], 8), true, false, Activation::Relu),
        },
        Case {
            what: "stride (2,1), 3x2 kernel, asymmetric pad",
            x: [1, 5, 9, 8],
            w: [7, 5, 3, 2],
            conv: with(c([2, 1], [1, 0, 0, 1], [1, 1], 1), false, true, leaky),
        },
        Case {
            what: "pointwise 37->11",
            x: [1, 37, 6, 5],
            w: [11, 37, 1, 1],
            conv: with(c([1, 1], [0; 4], [1, 1], 1), true, true, Activation::Relu6),
        },
        Case {
            what: "batch 2",
            x: [2, 3, 7, 6],
            w: [4, 3, 3, 3],
            conv: with(c([1, 1], [1; 4], [1, 1], 1), true, false, Activation::None),
        },
    ]
}

/// A one-conv model on packed weight `w` (format `f`), and its feeds (`x`, and `r` for a
/// residual).
fn conv_model(case: &Case, f: &WeightFormat, seed: u64) -> (Model, Vec<(String, Tensor)>) {
    let cv = case.conv;
    let mut b = GraphBuilder::new();
    let x = b.input("x", &case.x);
    let w = b
        .weight_packed("w", &Tensor::random(&case.w, seed), f.clone())
        .unwrap();
    let mut ins = vec![x, w];
    if cv.bias {
        ins.push(b.weight("b", Tensor::random(&[case.w[0]], seed + 1)));
    }
    // The output shape, asked without the epilogue inputs (infer checks the arity).
    let plain = Conv2d {
        bias: false,
        residual: false,
        ..cv
    };
    let out_shape = Op::Conv2d(plain)
        .infer_shape(&[case.x.to_vec(), case.w.to_vec()])
        .unwrap();
    let mut feeds = vec![("x".to_string(), Tensor::random(&case.x, seed + 2))];
    if cv.residual {
        ins.push(b.input("r", &out_shape));
        feeds.push(("r".to_string(), Tensor::random(&out_shape, seed + 3)));
    }
    let refs: Vec<&str> = ins.iter().map(|s| s.as_str()).collect();
    let y = b.node(Op::Conv2d(cv), &refs);
    b.output(&y);
    (Model::from_builder(b).unwrap(), feeds)
}

/// |zero * scale| per (row, group) of a packed weight (empty for symmetric formats), and the
/// values per group (0: one group per row).
fn zero_scales(model: &Model, f: &WeightFormat) -> (Vec<f64>, usize) {
    let WeightFormat::Quant(q) = f else {
        return (Vec::new(), 0);
    };
    if !q.zero_points {
        return (Vec::new(), q.group);
    }
    let part = |p: &str| {
        model
            .weights
            .get(&format!("w.{p}"))
            .unwrap_or_else(|| panic!("part w.{p}"))
            .to_f32()
            .into_f32s("part")
            .unwrap()
    };
    let zeros = part("zeros");
    let scales: Vec<f64> = if q.pow2 {
        let sh = part("shifts");
        (0..zeros.len())
            .map(|i| (-(sh[if sh.len() == 1 { 0 } else { i }] as f64)).exp2())
            .collect()
    } else {
        part("scales").iter().map(|&s| s as f64).collect()
    };
    let zs = zeros
        .iter()
        .zip(&scales)
        .map(|(&z, &s)| (z as f64 * s).abs())
        .collect();
    (zs, q.group)
}

/// The per-element bound of the module docs.
fn bound(case: &Case, model: &Model, f: &WeightFormat, feeds: &[(String, Tensor)]) -> Vec<f64> {
    let cv = case.conv;
    let wd = f.decode("w", &case.w, &model.weights).unwrap();
    let wv = wd.f32s("w").unwrap();
    let (zs, group) = zero_scales(model, f);
    let x = feeds[0].1.f32s("x").unwrap();
    let res = cv.residual.then(|| feeds[1].1.f32s("r").unwrap());
    let bias = cv
        .bias
        .then(|| model.weights.get("b").unwrap().f32s("b").unwrap());
    let [n, cin, h, w] = case.x;
    let [cout, cin_g, kh, kw] = case.w;
    let k = cin_g * kh * kw;
    let ngroups = if group == 0 { 1 } else { k.div_ceil(group) };
    let cout_g = cout / cv.groups;
    let oh = (h + cv.pad[0] + cv.pad[2] - (kh - 1) * cv.dilation[0] - 1) / cv.stride[0] + 1;
    let ow = (w + cv.pad[1] + cv.pad[3] - (kw - 1) * cv.dilation[1] - 1) / cv.stride[1] + 1;
    let eps = f32::EPSILON as f64;
    let mut out = Vec::with_capacity(n * cout * oh * ow);
    for b in 0..n {
        for co in 0..cout {
            let g = co / cout_g;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut s = 0.0f64;
                    for ci in 0..cin_g {
                        for r in 0..kh {
                            for t in 0..kw {
                                let iy = (oy * cv.stride[0] + r * cv.dilation[0]) as isize
                                    - cv.pad[0] as isize;
                                let ix = (ox * cv.stride[1] + t * cv.dilation[1]) as isize
                                    - cv.pad[1] as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                let xi = ((b * cin + g * cin_g + ci) * h + iy as usize) * w
                                    + ix as usize;
                                let kk = (ci * kh + r) * kw + t;
                                let z = if zs.is_empty() {
                                    0.0
                                } else {
                                    zs[co * ngroups + kk.checked_div(group).unwrap_or(0)]
                                };
                                s += (x[xi] as f64).abs()
                                    * ((wv[co * k + kk] as f64).abs() + 2.0 * z);
                            }
                        }
                    }
                    let o = out.len();
                    s += bias.map_or(0.0, |bv| (bv[co] as f64).abs());
                    s += res.map_or(0.0, |rv| (rv[o] as f64).abs());
                    out.push(2.0 * (k as f64 + 4.0) * eps * s + 1e-30);
                }
            }
        }
    }
    out
}

fn cpu_run(model: &Model, feeds: &[(String, Tensor)]) -> Tensor {
    let s = Session::cpu(model, SessionOptions::default()).unwrap();
    s.run(&feeds_ref(feeds)).unwrap().remove(0)
}

/// Kernel choices pinned in both packed slots (`None`: the untuned default).
fn choose(k: Option<ConvKernel>) -> TunedChoices {
    let mut c = TunedChoices::new();
    if let Some(k) = k {
        let v = serde_json::to_value(k).unwrap();
        let m = c.entry("conv2d".into()).or_default();
        m.insert("qconv".into(), v.clone());
        m.insert("qdwconv".into(), v);
    }
    c
}

fn check_close(what: &str, got: &Tensor, want: &Tensor, tol: &[f64]) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    let (g, e) = (got.f32s("got").unwrap(), want.f32s("want").unwrap());
    assert_eq!(g.len(), tol.len(), "{what}: bound length");
    for (i, ((&a, &b), &t)) in g.iter().zip(e).zip(tol).enumerate() {
        let t = t + 2.0 * f32::EPSILON as f64 * (b as f64).abs();
        assert!(
            ((a as f64) - (b as f64)).abs() <= t,
            "{what}: element {i}: {a} vs {b} (bound {t:e})"
        );
    }
}

#[test]
fn packed_conv_kernels_match_the_reference_on_the_same_weights() {
    let Some(ctx) = gpu() else { return };
    let px = |px, r, wtex| Some(ConvKernel::Packed { px, r, wtex });
    let dw = |px| Some(ConvKernel::PackedDepthwise { px });
    // The untuned default and a rotation of tuned choices (block shapes, texture codes; the
    // general kernel on depthwise convs too), so every kernel meets several cases and formats
    // while each (case, format) pair compiles one pipeline.
    let general = [
        None,
        px(2, 4, true),
        px(8, 1, false),
        px(1, 1, true),
        px(4, 2, false),
    ];
    let depthwise = [None, dw(1), dw(16), px(4, 1, false), px(2, 2, true)];
    let mut ran = std::collections::BTreeSet::new();
    for (ci, case) in cases().iter().enumerate() {
        let is_dw = case.conv.groups > 1 && case.conv.groups == case.x[1];
        for (fi, f) in formats().iter().enumerate() {
            let (model, feeds) = conv_model(case, f, 10 + ci as u64);
            let want = cpu_run(&model, &feeds);
            let tol = bound(case, &model, f, &feeds);
            let pick = (ci + fi) % 5;
            let k = if is_dw {
                depthwise[pick]
            } else {
                general[pick]
            };
            let expect = match k {
                Some(k) => k.name(),
                None if is_dw => "qdepthwise-4".to_string(),
                None => "qbuf-4x4".to_string(),
            };
            let what = format!("{} [{}] {}", case.what, f.label(), expect);
            let s = Session::with_context(&model, ctx.clone(), opts_with(choose(k), false))
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            let plan = s.plan();
            assert_eq!(plan.nodes[0].placement, Placement::Gpu, "{what}");
            assert_eq!(plan.nodes[0].kernel, expect, "{what}");
            let w = plan.values.iter().find(|v| v.name == "w").unwrap();
            assert!(!w.decoded, "{what}: weight decoded");
            let got = s.run(&feeds_ref(&feeds)).unwrap().remove(0);
            check_close(&what, &got, &want, &tol);
            ran.insert(expect);
        }
    }
    assert!(ran.len() >= 9, "kernels run: {ran:?}");
}

#[test]
fn packed_conv_weights_stay_packed_on_the_device() {
    let Some(ctx) = gpu() else { return };
    let f = quant(4, 32, true, false, true);
    let case = Case {
        what: "3x3 32->32",
        x: [1, 32, 10, 10],
        w: [32, 32, 3, 3],
        conv: Conv2d {
            pad: [1; 4],
            ..Default::default()
        },
    };
    let (model, feeds) = conv_model(&case, &f, 3);
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
    let got = s.run(&feeds_ref(&feeds)).unwrap().remove(0);
    let want = cpu_run(&model, &feeds);
    check_close("int4 conv", &got, &want, &bound(&case, &model, &f, &feeds));
}

#[test]
fn conv_weights_no_packed_kernel_reads_are_decoded() {
    let Some(ctx) = gpu() else { return };
    // int4 groups of 16 (half a texel) on a regular and a depthwise conv: the dense kernels
    // run on the decoded weight, and the plan says so. Then an aligned format under the naive
    // kernels: decoded too (no naive packed kernel).
    let all = cases();
    let (regular, depthwise) = (&all[0], &all[6]);
    let runs = [
        (
            regular,
            quant(4, 16, false, false, false),
            false,
            "tiled-8x4",
        ),
        (
            depthwise,
            quant(4, 16, true, false, false),
            false,
            "depthwise-4",
        ),
        (regular, quant(8, 0, false, false, false), true, "naive"),
    ];
    for (case, f, naive, kernel) in runs {
        let (model, feeds) = conv_model(case, &f, 21);
        let what = format!("{} [{}] naive {naive}", case.what, f.label());
        let s = Session::with_context(&model, ctx.clone(), opts_with(TunedChoices::new(), naive))
            .unwrap();
        let plan = s.plan();
        assert_eq!(plan.nodes[0].placement, Placement::Gpu, "{what}");
        assert_eq!(plan.nodes[0].kernel, kernel, "{what}");
        assert!(
            plan.values.iter().any(|v| v.name == "w" && v.decoded),
            "{what}: weight not marked decoded"
        );
        let got = s.run(&feeds_ref(&feeds)).unwrap().remove(0);
        let want = cpu_run(&model, &feeds);
        check_close(&what, &got, &want, &bound(case, &model, &f, &feeds));
    }
}

#[test]
fn packed_kernels_refuse_dense_weights_and_dense_kernels_packed_ones() {
    // Selection only (no device): a packed choice in the dense slots falls back to the dense
    // kernels on a dense weight, and a dense choice in the packed slots is never used on a
    // packed one.
    use wgedge::profile::DeviceProfile;
    use wgedge::sched::{Plan, PlanOptions};
    let all = cases();
    let plan_kernel = |case: &Case, f: &WeightFormat, slots: &[&str], k: ConvKernel| {
        let (model, _) = conv_model(case, f, 1);
        let mut p = DeviceProfile::portable();
        for s in slots {
            p.kernels
                .entry("conv2d".into())
                .or_default()
                .insert(s.to_string(), serde_json::to_value(k).unwrap());
        }
        let plan = Plan::new(
            &model.graph,
            &model.weights,
            Some(&p),
            PlanOptions::default(),
        )
        .unwrap();
        let decoded = plan.values.iter().any(|v| v.name == "w" && v.decoded);
        (plan.nodes[0].kernel.clone(), decoded)
    };
    let q = ConvKernel::Packed {
        px: 4,
        r: 4,
        wtex: false,
    };
    let int8 = quant(8, 0, false, false, false);
    assert_eq!(
        plan_kernel(&all[0], &WeightFormat::Dense, &["conv", "dwconv"], q),
        ("tiled-8x4".into(), false)
    );
    assert_eq!(
        plan_kernel(&all[4], &WeightFormat::Dense, &["conv", "dwconv"], q),
        ("depthwise-4".into(), false)
    );
    let tiled = ConvKernel::Tiled { px: 8 };
    assert_eq!(
        plan_kernel(&all[0], &int8, &["qconv", "qdwconv"], tiled),
        ("qbuf-4x4".into(), false)
    );
    assert_eq!(
        plan_kernel(&all[4], &int8, &["qconv", "qdwconv"], tiled),
        ("qdepthwise-4".into(), false)
    );
    // The depthwise packed kernel is refused on a regular conv.
    let qdw = ConvKernel::PackedDepthwise { px: 8 };
    assert_eq!(
        plan_kernel(&all[0], &int8, &["qconv"], qdw),
        ("qbuf-4x4".into(), false)
    );
    // A 7x7 depthwise conv (49 taps) is past the depthwise kernel's 32: the general one runs.
    let big = Case {
        what: "depthwise 7x7",
        x: [1, 4, 9, 9],
        w: [4, 1, 7, 7],
        conv: Conv2d {
            pad: [3; 4],
            groups: 4,
            ..Default::default()
        },
    };
    assert_eq!(
        plan_kernel(&big, &int8, &["qdwconv"], qdw).0,
        "qbuf-1x4".to_string()
    );
}
