//! Conv forms of edge CNNs, GPU vs the CPU reference on edge shapes, for every kernel the
//! chooser can pick: depthwise 3x3 / 5x5 / 7x7 with symmetric and asymmetric strides, dilation,
//! asymmetric padding and odd sizes (the strip and vec4 depthwise kernels included), every
//! activation fused into conv and matmul epilogues, ConvTranspose2d (stride, padding, output
//! padding, dilation, groups, batches), and a MobileNetV2 block fused vs unfused.
//!
//! Tolerances: a K-term dot product summed in another order differs by at most about
//! K * 2^-24 * sum|a_i b_i|; inputs are in [-1, 1], so 2e-6 * K absolute plus 1e-5 relative
//! (K = taps per output). The activation formulas with exp carry a few ULP on GPUs (Vulkan
//! allows 3 + 2|x| ULP for exp), covered by the 1e-5 relative term plus 1e-5 absolute.

mod common;
use common::*;
use wgedge::graph::GraphBuilder;
use wgedge::ops::*;
use wgedge::{Model, Session, SessionOptions, Tensor};

fn dot_tol(k: usize) -> f32 {
    2e-6 * k as f32 + 1e-5
}

/// The CPU reference agrees with the CPU session (graph checks and plan included).
fn check_cpu(what: &str, op: &Op, inputs: &[&Tensor], consts: &[bool]) {
    let want = op
        .cpu(inputs)
        .unwrap_or_else(|e| panic!("{what}: cpu reference: {e}"));
    let (model, feeds) = single_op(op.clone(), inputs, consts);
    let cpu = Session::cpu(
        &model,
        SessionOptions {
            autotune: false,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        cpu.run(&feeds_ref(&feeds)).unwrap()[0],
        want,
        "{what}: cpu session"
    );
}

/// CPU reference vs the CPU session vs every GPU kernel plan; returns the kernels that ran.
fn check(what: &str, op: Op, inputs: &[&Tensor], consts: &[bool], atol: f32) -> Vec<String> {
    let want = op
        .cpu(inputs)
        .unwrap_or_else(|e| panic!("{what}: cpu reference: {e}"));
    let (model, feeds) = single_op(op, inputs, consts);
    let cpu = Session::cpu(
        &model,
        SessionOptions {
            autotune: false,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        cpu.run(&feeds_ref(&feeds)).unwrap()[0],
        want,
        "{what}: cpu session"
    );
    check_gpu_kernels(what, &model, &feeds, &want, atol, 1e-5)
}

/// Like [`check`], but on the GPU only with these `conv2d/dwconv` choices (each a kernel's
/// serde form) plus the defaults: every depthwise geometry compiles its own pipelines of the
/// strip and vec4 kernels, so running all candidates of all families on every shape would take
/// many minutes on lavapipe. `conformance.rs` runs every candidate on its conv shapes.
fn check_choices(
    what: &str,
    op: Op,
    inputs: &[&Tensor],
    consts: &[bool],
    atol: f32,
    kernels: &[serde_json::Value],
) -> Vec<String> {
    check_slot(what, op, inputs, consts, atol, "dwconv", kernels)
}

/// Like [`check_choices`], with the choices put in conv2d's tune slot `slot`.
fn check_slot(
    what: &str,
    op: Op,
    inputs: &[&Tensor],
    consts: &[bool],
    atol: f32,
    slot: &str,
    kernels: &[serde_json::Value],
) -> Vec<String> {
    let want = op
        .cpu(inputs)
        .unwrap_or_else(|e| panic!("{what}: cpu reference: {e}"));
    let (model, feeds) = single_op(op, inputs, consts);
    let Some(ctx) = gpu() else { return Vec::new() };
    let mut ran = Vec::new();
    let mut choices = vec![wgedge::profile::TunedChoices::new()];
    for k in kernels {
        let mut c = wgedge::profile::TunedChoices::new();
        c.entry("conv2d".into())
            .or_default()
            .insert(slot.into(), k.clone());
        choices.push(c);
    }
    for c in choices {
        let s = Session::with_context(&model, ctx.clone(), opts_with(c, false))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let kernel = s.plan().nodes[0].kernel.clone();
        let got = s
            .run(&feeds_ref(&feeds))
            .unwrap_or_else(|e| panic!("{what} [{kernel}]: {e}"));
        assert_close(&format!("{what} [{kernel}]"), &got[0], &want, atol, 1e-5);
        ran.push(kernel);
    }
    ran
}

/// The strip and vec4 depthwise kernels' serde forms.
fn dw_kernels() -> Vec<serde_json::Value> {
    use serde_json::json;
    vec![
        json!({"kernel": "dw_strip", "px": 4}),
        json!({"kernel": "dw_strip", "px": 8}),
        json!({"kernel": "dw_vec4", "px": 8, "py": 2}),
        json!({"kernel": "dw_vec4", "px": 16, "py": 4}),
        json!({"kernel": "dw_vec4", "px": 8, "py": 1}),
    ]
}

fn dw(stride: [usize; 2], pad: [usize; 4], dilation: [usize; 2], c: usize) -> Conv2d {
    Conv2d {
        stride,
        pad,
        dilation,
        groups: c,
        ..Default::default()
    }
}

#[test]
fn depthwise_edge_shapes() {
    // (name, input [n, c, h, w], kernel k, conv)
    let cases: Vec<(&str, [usize; 4], usize, Conv2d)> = vec![
        (
            "3x3 s1 aligned",
            [1, 8, 16, 16],
            3,
            dw([1, 1], [1; 4], [1, 1], 8),
        ),
        (
            "3x3 s1 odd",
            [2, 5, 11, 13],
            3,
            dw([1, 1], [1; 4], [1, 1], 5),
        ),
        ("3x3 s2", [1, 12, 20, 20], 3, dw([2, 2], [1; 4], [1, 1], 12)),
        ("3x3 s2 odd", [1, 3, 9, 7], 3, dw([2, 2], [1; 4], [1, 1], 3)),
        (
            "3x3 s(2,1)",
            [1, 4, 12, 16],
            3,
            dw([2, 1], [1; 4], [1, 1], 4),
        ),
        (
            "3x3 s(1,2)",
            [1, 4, 12, 16],
            3,
            dw([1, 2], [1; 4], [1, 1], 4),
        ),
        (
            "3x3 dilation 2",
            [1, 4, 16, 16],
            3,
            dw([1, 1], [2; 4], [2, 2], 4),
        ),
        (
            "3x3 dilation (1,3)",
            [1, 2, 10, 24],
            3,
            dw([1, 1], [1, 3, 1, 3], [1, 3], 2),
        ),
        (
            "3x3 asym pad",
            [1, 4, 12, 12],
            3,
            dw([1, 1], [1, 0, 2, 3], [1, 1], 4),
        ),
        ("5x5 s1", [1, 6, 20, 20], 5, dw([1, 1], [2; 4], [1, 1], 6)),
        ("5x5 s2", [1, 6, 21, 24], 5, dw([2, 2], [2; 4], [1, 1], 6)),
        (
            "5x5 s2 odd",
            [2, 3, 13, 11],
            5,
            dw([2, 2], [2; 4], [1, 1], 3),
        ),
        ("7x7 s1", [1, 2, 16, 16], 7, dw([1, 1], [3; 4], [1, 1], 2)),
        ("1x1 image", [1, 3, 1, 1], 3, dw([1, 1], [1; 4], [1, 1], 3)),
        ("wide row", [1, 2, 3, 100], 3, dw([1, 1], [1; 4], [1, 1], 2)),
        (
            "many planes",
            [3, 40, 8, 8],
            3,
            dw([1, 1], [1; 4], [1, 1], 40),
        ),
    ];
    let mut ran = std::collections::BTreeSet::new();
    for (i, (name, xs, k, c)) in cases.into_iter().enumerate() {
        let x = Tensor::random(&xs, i as u64);
        let w = Tensor::random(&[xs[1], 1, k, k], 40 + i as u64);
        let b = Tensor::random(&[xs[1]], 80 + i as u64);
        let op = Op::Conv2d(Conv2d {
            bias: true,
            act: Activation::Relu6,
            ..c
        });
        let what = format!("dw {name}");
        check_cpu(&what, &op, &[&x, &w, &b], &[false, true, true]);
        // Each shape runs the default choice and two of the five strip/vec4 kernels, in
        // rotation, so every kernel meets several geometries (each geometry compiles its own
        // pipelines: all five on every shape took minutes on lavapipe).
        let all = dw_kernels();
        let some = [all[i % all.len()].clone(), all[(i + 2) % all.len()].clone()];
        for r in check_choices(
            &what,
            op.clone(),
            &[&x, &w, &b],
            &[false, true, true],
            dot_tol(k * k),
            &some,
        ) {
            ran.insert(r);
        }
        // Residual epilogue on a few shapes.
        if i % 4 == 0 {
            let out = op
                .infer_shape(&[xs.to_vec(), vec![xs[1], 1, k, k], vec![xs[1]]])
                .unwrap();
            let res = Tensor::random(&out, 7);
            let opr = Op::Conv2d(Conv2d {
                bias: true,
                residual: true,
                act: Activation::Hardswish,
                ..c
            });
            check_choices(
                &format!("dw {name} residual"),
                opr,
                &[&x, &w, &b, &res],
                &[false, true, true, false],
                dot_tol(k * k),
                &some[..1],
            );
        }
    }
    if gpu().is_some() {
        // The new kernels ran (and were not silently replaced by a fallback) on these shapes.
        for want in [
            "dwstrip-4",
            "dwstrip-8",
            "dwvec4-2x8",
            "dwvec4-4x16",
            "dwvec4-1x8",
        ] {
            assert!(ran.contains(want), "kernel {want} never ran: {ran:?}");
        }
    }
}

/// The GEMM-shaped conv kernels: the pointwise GEMM (input from a texture or as vec4s from
/// storage), the register-blocked texture kernel and the workgroup-tiled implicit GEMM, on
/// shapes that are not multiples of their blocks (channels vs 4 and 8, pixels vs 4 and the
/// strip), batches, stride, asymmetric padding, dilation, groups, every epilogue part.
#[test]
fn gemm_conv_kernels_edge_shapes() {
    use serde_json::json;
    let pw = || {
        vec![
            json!({"kernel": "pointwise", "tm": 4, "tn4": 1, "xtex": true}),
            json!({"kernel": "pointwise", "tm": 8, "tn4": 2, "xtex": true}),
            json!({"kernel": "pointwise", "tm": 4, "tn4": 2, "xtex": false}),
            json!({"kernel": "pointwise", "tm": 8, "tn4": 1, "xtex": false}),
            json!({"kernel": "implicit_wg", "wg": 8}),
        ]
    };
    let general = || {
        vec![
            json!({"kernel": "implicit_tex", "px": 4}),
            json!({"kernel": "implicit_tex", "px": 8}),
            json!({"kernel": "implicit_wg", "wg": 8}),
            json!({"kernel": "implicit_wg", "wg": 16}),
        ]
    };
    let conv = |stride: [usize; 2], pad: [usize; 4], dilation: [usize; 2], groups: usize| Conv2d {
        stride,
        pad,
        dilation,
        groups,
        ..Default::default()
    };
    // (name, input, weight, conv, slot)
    type Case = (&'static str, [usize; 4], [usize; 4], Conv2d, &'static str);
    let cases: Vec<Case> = vec![
        // HW = 21: only the texture-input pointwise kernels take it.
        (
            "1x1 odd",
            [1, 5, 3, 7],
            [9, 5, 1, 1],
            Conv2d::default(),
            "pwconv",
        ),
        (
            "1x1 batch 2",
            [2, 12, 4, 6],
            [13, 12, 1, 1],
            Conv2d::default(),
            "pwconv",
        ),
        (
            "1x1 one channel",
            [1, 1, 2, 2],
            [1, 1, 1, 1],
            Conv2d::default(),
            "pwconv",
        ),
        (
            "3x3 pad 1 odd",
            [2, 3, 9, 11],
            [5, 3, 3, 3],
            conv([1, 1], [1; 4], [1, 1], 1),
            "conv",
        ),
        (
            "3x3 s2 asym pad dilation 2",
            [1, 4, 13, 10],
            [6, 4, 3, 3],
            conv([2, 2], [1, 0, 2, 1], [2, 2], 1),
            "conv",
        ),
        (
            "3x3 groups 2",
            [1, 6, 8, 8],
            [10, 3, 3, 3],
            conv([1, 1], [1; 4], [1, 1], 2),
            "conv",
        ),
        (
            "5x5 s2 17 channels",
            [1, 9, 11, 13],
            [17, 9, 5, 5],
            conv([2, 2], [2; 4], [1, 1], 1),
            "conv",
        ),
        (
            "1x1 image 9 taps",
            [1, 3, 1, 1],
            [4, 3, 3, 3],
            conv([1, 1], [1; 4], [1, 1], 1),
            "conv",
        ),
    ];
    let mut ran = std::collections::BTreeSet::new();
    for (i, (name, xs, ws, c, slot)) in cases.into_iter().enumerate() {
        let x = Tensor::random(&xs, 300 + i as u64);
        let w = Tensor::random(&ws, 340 + i as u64);
        let b = Tensor::random(&[ws[0]], 380 + i as u64);
        let k = ws[1] * ws[2] * ws[3];
        let kernels = if slot == "pwconv" { pw() } else { general() };
        // Odd cases: bias and ReLU6; even ones: bias, residual and SiLU.
        let res;
        let (op, inputs, consts);
        if i % 2 == 0 {
            let out = Op::Conv2d(c)
                .infer_shape(&[xs.to_vec(), ws.to_vec()])
                .unwrap();
            res = Tensor::random(&out, 420 + i as u64);
            op = Op::Conv2d(Conv2d {
                bias: true,
                residual: true,
                act: Activation::Silu,
                ..c
            });
            inputs = vec![&x, &w, &b, &res];
            consts = vec![false, true, true, false];
        } else {
            op = Op::Conv2d(Conv2d {
                bias: true,
                act: Activation::Relu6,
                ..c
            });
            inputs = vec![&x, &w, &b];
            consts = vec![false, true, true];
        }
        // (The CPU session's im2col kernel sums in another order: no bitwise check here.)
        let what = format!("conv {name}");
        ran.extend(check_slot(
            &what,
            op,
            &inputs,
            &consts,
            dot_tol(k),
            slot,
            &kernels,
        ));
    }
    if gpu().is_some() {
        // Each kernel ran (was not replaced by the fallback) on some of these shapes.
        for want in [
            "pw-tex2-4x4",
            "pw-tex2-8x8",
            "pw-buf-4x8",
            "pw-buf-8x4",
            "igemm-wg8-4x4",
            "igemm-wg16-4x4",
            "igemm-tex-8x4",
            "igemm-tex-8x8",
        ] {
            assert!(ran.contains(want), "kernel {want} never ran: {ran:?}");
        }
    }
}

#[test]
fn every_activation_fuses_into_conv_and_matmul() {
    let x = Tensor::random(&[1, 4, 8, 8], 1);
    // Weights scaled up so pre-activations span the activations' interesting ranges (-6..6).
    let scale = |t: Tensor, s: f32| {
        Tensor::new(
            t.shape(),
            t.f32s("w").unwrap().iter().map(|v| v * s).collect(),
        )
        .unwrap()
    };
    let wd = scale(Tensor::random(&[4, 1, 3, 3], 2), 3.0);
    let wc = scale(Tensor::random(&[6, 4, 3, 3], 3), 1.0);
    let a = Tensor::random(&[5, 12], 4);
    let wm = scale(Tensor::random(&[7, 12], 5), 2.0);
    let acts = Activation::all();
    assert!(acts.contains(&Activation::Hardsigmoid));
    for (i, act) in acts.into_iter().enumerate() {
        let dwop = Op::Conv2d(Conv2d {
            act,
            ..dw([1, 1], [1; 4], [1, 1], 4)
        });
        // The default kernels and the vec4 depthwise kernel, once per activation (every
        // candidate x every activation would compile hundreds of lavapipe pipelines).
        // (The activation code is one shared WGSL function, so the vec4 kernel runs on every
        // fourth activation only: the table has over twenty.)
        let vec4 = [serde_json::json!({"kernel": "dw_vec4", "px": 8, "py": 2})];
        let vec4: &[serde_json::Value] = if i % 4 == 0 { &vec4 } else { &[] };
        check_choices(
            &format!("dw {act:?}"),
            dwop,
            &[&x, &wd],
            &[false, true],
            dot_tol(9),
            vec4,
        );
        let conv = Op::Conv2d(Conv2d {
            act,
            pad: [1; 4],
            ..Default::default()
        });
        check_choices(
            &format!("conv {act:?}"),
            conv,
            &[&x, &wc],
            &[false, true],
            dot_tol(36),
            &[],
        );
        let mm = Op::MatMul(MatMul {
            trans_b: true,
            act,
            ..Default::default()
        });
        check_choices(
            &format!("linear {act:?}"),
            mm,
            &[&a, &wm],
            &[false, true],
            dot_tol(12),
            &[],
        );
    }
    // Hardsigmoid is PyTorch's clamp(x / 6 + 1/2, 0, 1).
    let h = Activation::Hardsigmoid;
    assert_eq!(h.apply(-3.0), 0.0);
    assert_eq!(h.apply(0.0), 0.5);
    assert_eq!(h.apply(1.5), 0.75);
    assert_eq!(h.apply(3.0), 1.0);
    assert_eq!(h.apply(10.0), 1.0);
}

fn ct(
    stride: [usize; 2],
    pad: [usize; 4],
    op: [usize; 2],
    dil: [usize; 2],
    g: usize,
) -> ConvTranspose2d {
    ConvTranspose2d {
        stride,
        pad,
        output_padding: op,
        dilation: dil,
        groups: g,
        ..Default::default()
    }
}

#[test]
fn conv_transpose_shapes() {
    // (name, input, weight [cin, cout / g, kh, kw], attrs)
    let cases: Vec<(&str, [usize; 4], [usize; 4], ConvTranspose2d)> = vec![
        (
            "2x2 s2",
            [1, 8, 5, 5],
            [8, 4, 2, 2],
            ct([2, 2], [0; 4], [0, 0], [1, 1], 1),
        ),
        (
            "3x3 s1 pad1",
            [1, 3, 7, 6],
            [3, 5, 3, 3],
            ct([1, 1], [1; 4], [0, 0], [1, 1], 1),
        ),
        (
            "3x3 s2 pad1 outpad1",
            [2, 4, 5, 7],
            [4, 3, 3, 3],
            ct([2, 2], [1; 4], [1, 1], [1, 1], 1),
        ),
        (
            "3x3 s3 asym",
            [1, 2, 4, 3],
            [2, 6, 3, 3],
            ct([3, 3], [0, 1, 2, 0], [2, 1], [1, 1], 1),
        ),
        (
            "s(2,1)",
            [1, 3, 6, 5],
            [3, 2, 3, 2],
            ct([2, 1], [1, 0, 0, 1], [1, 0], [1, 1], 1),
        ),
        (
            "dilation 2",
            [1, 2, 5, 5],
            [2, 3, 3, 3],
            ct([2, 2], [2; 4], [1, 1], [2, 2], 1),
        ),
        (
            "groups 2",
            [1, 6, 4, 5],
            [6, 2, 3, 3],
            ct([2, 2], [1; 4], [0, 1], [1, 1], 2),
        ),
        (
            "depthwise",
            [1, 5, 6, 6],
            [5, 1, 4, 4],
            ct([2, 2], [1; 4], [0, 0], [1, 1], 5),
        ),
        (
            "1x1 input",
            [1, 3, 1, 1],
            [3, 7, 3, 3],
            ct([1, 1], [0; 4], [0, 0], [1, 1], 1),
        ),
        (
            "large K",
            [1, 300, 3, 3],
            [300, 5, 2, 2],
            ct([2, 2], [0; 4], [0, 0], [1, 1], 1),
        ),
    ];
    for (i, (name, xs, ws, c)) in cases.into_iter().enumerate() {
        let x = Tensor::random(&xs, i as u64);
        let w = Tensor::random(&ws, 30 + i as u64);
        let cout = ws[1] * c.groups;
        let b = Tensor::random(&[cout], 60 + i as u64);
        let taps = xs[1] / c.groups * ws[2] * ws[3];
        let op = Op::ConvTranspose2d(ConvTranspose2d {
            bias: true,
            act: Activation::Silu,
            ..c
        });
        let ran = check(
            &format!("convT {name}"),
            op,
            &[&x, &w, &b],
            &[false, true, true],
            dot_tol(taps),
        );
        if gpu().is_some() {
            assert!(
                ran.iter().all(|k| k.starts_with("gather-4x")),
                "{name}: {ran:?}"
            );
        }
        // Weights that are activations too (no constant packing is involved).
        check(
            &format!("convT {name} activation weights"),
            Op::ConvTranspose2d(c),
            &[&x, &w],
            &[false, false],
            dot_tol(taps),
        );
    }
}

#[test]
fn conv_transpose_matches_onnx_semantics() {
    // A single input pixel through a 2x2 stride-2 kernel gives the kernel itself.
    let op = Op::ConvTranspose2d(ct([2, 2], [0; 4], [0, 0], [1, 1], 1));
    let x = Tensor::new(&[1, 1, 1, 1], vec![2.0]).unwrap();
    let w = Tensor::new(&[1, 1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
    let y = op.cpu(&[&x, &w]).unwrap();
    assert_eq!(y.shape(), &[1, 1, 2, 2]);
    assert_eq!(y.f32s("y").unwrap(), &[2.0, 4.0, 6.0, 8.0]);
    // Overlapping taps add: [1, 1] through [1, 1, 1] (stride 1) gives [1, 2, 2, 1].
    let op = Op::ConvTranspose2d(ConvTranspose2d::default());
    let x = Tensor::new(&[1, 1, 1, 2], vec![1.0, 1.0]).unwrap();
    let w = Tensor::new(&[1, 1, 1, 3], vec![1.0, 1.0, 1.0]).unwrap();
    assert_eq!(
        op.cpu(&[&x, &w]).unwrap().f32s("y").unwrap(),
        &[1.0, 2.0, 2.0, 1.0]
    );
    // Output extent: stride * (in - 1) + output_padding + dilation * (k - 1) + 1 - pads,
    // e.g. PyTorch's ConvTranspose2d(k=3, s=2, p=1, output_padding=1) doubles 5 -> 10.
    let op = Op::ConvTranspose2d(ct([2, 2], [1; 4], [1, 1], [1, 1], 1));
    assert_eq!(
        op.infer_shape(&[vec![1, 4, 5, 7], vec![4, 3, 3, 3]])
            .unwrap(),
        vec![1, 3, 10, 14]
    );
    let op = Op::ConvTranspose2d(ct([3, 2], [0, 1, 2, 0], [2, 1], [2, 1], 2));
    assert_eq!(
        op.infer_shape(&[vec![2, 4, 4, 3], vec![4, 5, 3, 2]])
            .unwrap(),
        // h: 3*3 + 2 + 2*2 + 1 - 2 = 14; w: 2*2 + 1 + 1 + 1 - 1 = 6; cout = 5 * 2.
        vec![2, 10, 14, 6]
    );
}

#[test]
fn conv_transpose_bad_attributes() {
    let shapes = |op: ConvTranspose2d, x: Vec<usize>, w: Vec<usize>| {
        Op::ConvTranspose2d(op)
            .infer_shape(&[x, w])
            .unwrap_err()
            .to_string()
    };
    let x = vec![1, 4, 5, 5];
    let w = vec![4, 2, 3, 3];
    let e = shapes(ct([2, 2], [0; 4], [2, 0], [1, 1], 1), x.clone(), w.clone());
    assert!(
        e.contains("output_padding[0] = 2") && e.contains("stride"),
        "{e}"
    );
    let e = shapes(ct([1, 1], [0; 4], [0, 1], [1, 1], 1), x.clone(), w.clone());
    assert!(e.contains("output_padding[1]"), "{e}");
    // Output padding below the dilation is allowed (PyTorch's rule).
    assert!(Op::ConvTranspose2d(ct([1, 1], [0; 4], [0, 1], [1, 2], 1))
        .infer_shape(&[x.clone(), w.clone()])
        .is_ok());
    let e = shapes(ct([0, 1], [0; 4], [0, 0], [1, 1], 1), x.clone(), w.clone());
    assert!(e.contains("stride"), "{e}");
    let e = shapes(ct([1, 1], [0; 4], [0, 0], [1, 1], 3), x.clone(), w.clone());
    assert!(e.contains("groups = 3"), "{e}");
    let e = shapes(ConvTranspose2d::default(), x.clone(), vec![2, 4, 3, 3]);
    assert!(e.contains("weight"), "{e}");
    // Pads that crop the whole output.
    let e = shapes(
        ct([1, 1], [4, 0, 4, 0], [0, 0], [1, 1], 1),
        x.clone(),
        w.clone(),
    );
    assert!(e.contains("pads"), "{e}");
    let e = shapes(ConvTranspose2d::default(), vec![1, 4, 5], w.clone());
    assert!(e.contains("rank 4"), "{e}");
    // A bias of the wrong length.
    let op = Op::ConvTranspose2d(ConvTranspose2d {
        bias: true,
        ..Default::default()
    });
    let e = op
        .infer_shape(&[x.clone(), w.clone(), vec![4]])
        .unwrap_err()
        .to_string();
    assert!(e.contains("bias"), "{e}");
}

#[test]
fn conv_transpose_model_file_round_trip() {
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[1, 4, 6, 6]);
    let w = b.weight("up.w", Tensor::random(&[4, 3, 3, 3], 1));
    let bias = b.weight("up.b", Tensor::random(&[3], 2));
    let attrs = ConvTranspose2d {
        stride: [2, 2],
        pad: [1, 1, 1, 1],
        output_padding: [1, 1],
        act: Activation::Hardsigmoid,
        ..Default::default()
    };
    let y = b.conv_transpose2d(&x, &w, Some(&bias), attrs);
    b.output(&y);
    let model = Model::from_builder(b).unwrap();
    let loaded = Model::from_bytes(&model.to_bytes().unwrap()).unwrap();
    assert_eq!(loaded.graph.nodes[0].op, model.graph.nodes[0].op);
    let Op::ConvTranspose2d(c) = &loaded.graph.nodes[0].op else {
        panic!("not a transposed conv: {:?}", loaded.graph.nodes[0].op)
    };
    assert_eq!(c.output_padding, [1, 1]);
    let input = Tensor::random(&[1, 4, 6, 6], 3);
    let run = |m: &Model| {
        Session::cpu(m, SessionOptions::default())
            .unwrap()
            .run(&[("x", &input)])
            .unwrap()
    };
    assert_eq!(run(&model), run(&loaded));
    assert_eq!(run(&model)[0].shape(), &[1, 3, 12, 12]);
}

#[test]
fn mbv2_block_fused_matches_unfused() {
    let w = wgedge::bench::mbv2_block(8, 6, 12, "fused").unwrap();
    let feeds = [("x", &w.input)];
    let cpu = |optimize| {
        Session::cpu(
            &w.model,
            SessionOptions {
                optimize,
                autotune: false,
                ..Default::default()
            },
        )
        .unwrap()
    };
    let (fused, plain) = (cpu(true), cpu(false));
    // Folding BN and fusing every epilogue leaves three kernels (expand, depthwise, project).
    assert_eq!(
        fused.plan().nodes.len(),
        3,
        "{:?}",
        fused.plan().nodes.len()
    );
    assert!(plain.plan().nodes.len() > 3);
    let want = plain.run(&feeds).unwrap();
    // BN folded into weights rounds differently: 144 + 9 + 144 terms, relative error 1e-5.
    assert_close(
        "fused cpu",
        &fused.run(&feeds).unwrap()[0],
        &want[0],
        1e-4,
        1e-4,
    );
    if let Some(ctx) = gpu() {
        for optimize in [true, false] {
            let mut o = SessionOptions {
                optimize,
                autotune: false,
                ..Default::default()
            };
            o.plan.cpu_fallback = false;
            let got = run_gpu(&ctx, &w.model, &[("x".to_string(), w.input.clone())], o);
            assert_close(
                &format!("gpu optimize={optimize}"),
                &got[0],
                &want[0],
                1e-4,
                1e-4,
            );
        }
    }
}

/// A transposed conv absorbs a following channel-bias add and activation (two fewer nodes),
/// but not an add of a same-shaped value (its kernel has no residual operand); the fused graph
/// computes what the graph as written does, on the CPU and the GPU.
#[test]
fn conv_transpose_fuses_bias_and_activation() {
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[2, 3, 5, 4]);
    let w = b.weight("w", Tensor::random(&[3, 6, 3, 3], 61));
    let bias = b.weight("b", Tensor::random(&[1, 6, 1, 1], 62));
    let ct = ConvTranspose2d {
        stride: [2, 2],
        pad: [1; 4],
        ..Default::default()
    };
    let y = b.conv_transpose2d(&x, &w, None, ct);
    let y = b.add(&y, &bias);
    let y = b.act(&y, Activation::Relu6);
    // A second transposed conv followed by a residual add of the first one's output.
    let w2 = b.weight("w2", Tensor::random(&[6, 6, 1, 1], 63));
    let z = b.conv_transpose2d(&y, &w2, None, ConvTranspose2d::default());
    let z = b.add(&z, &y);
    b.output(&z);
    let model = Model::from_builder(b).unwrap();
    let input = Tensor::random(&[2, 3, 5, 4], 64);
    let feeds = [("x", &input)];
    let cpu = |optimize| {
        Session::cpu(
            &model,
            SessionOptions {
                optimize,
                autotune: false,
                cpu_reference: true,
                ..Default::default()
            },
        )
        .unwrap()
    };
    let (fused, plain) = (cpu(true), cpu(false));
    assert_eq!(plain.plan().nodes.len(), 5, "{}", plain.plan().describe());
    // convT+add+act, convT+add (the residual).
    assert_eq!(fused.plan().nodes.len(), 2, "{}", fused.plan().describe());
    let want = plain.run(&feeds).unwrap();
    // The fused bias is added in the same place of the same order of terms: equal bits.
    assert_eq!(fused.run(&feeds).unwrap(), want);
    if let Some(ctx) = gpu() {
        let mut o = SessionOptions {
            autotune: false,
            ..Default::default()
        };
        o.plan.cpu_fallback = false;
        let got = run_gpu(&ctx, &model, &[("x".to_string(), input.clone())], o);
        // Terms per output: at most cin * taps = 3 * 9, then 6 more for the second conv.
        assert_close("gpu fused", &got[0], &want[0], dot_tol(27 + 6), 1e-5);
    }
}

/// A transposed conv with its residual operand (act(acc + bias + residual)), as one op, on the
/// shapes of `conv_transpose_shapes` that matter for the epilogue: odd sizes, stride, padding,
/// output padding, dilation, groups, batches; with and without a bias (the residual is then
/// input 2, not 3). Every kernel plan against the reference.
#[test]
fn conv_transpose_residual_op() {
    let cases: Vec<(&str, [usize; 4], [usize; 4], ConvTranspose2d)> = vec![
        (
            "3x3 s2 pad1 outpad1 batch 2",
            [2, 4, 5, 7],
            [4, 3, 3, 3],
            ct([2, 2], [1; 4], [1, 1], [1, 1], 1),
        ),
        (
            "3x3 s3 asym",
            [1, 2, 4, 3],
            [2, 6, 3, 3],
            ct([3, 3], [0, 1, 2, 0], [2, 1], [1, 1], 1),
        ),
        (
            "groups 2 dilation 2",
            [1, 6, 5, 4],
            [6, 3, 3, 3],
            ct([2, 2], [2; 4], [1, 1], [2, 2], 2),
        ),
        (
            "1x1 input",
            [1, 3, 1, 1],
            [3, 5, 2, 2],
            ct([1, 1], [0; 4], [0, 0], [1, 1], 1),
        ),
    ];
    for (i, (name, xs, ws, c)) in cases.into_iter().enumerate() {
        let x = Tensor::random(&xs, 70 + i as u64);
        let w = Tensor::random(&ws, 80 + i as u64);
        let out = Op::ConvTranspose2d(c)
            .infer_shape(&[xs.to_vec(), ws.to_vec()])
            .unwrap();
        let r = Tensor::random(&out, 90 + i as u64);
        let b = Tensor::random(&[out[1]], 95 + i as u64);
        let taps = xs[1] / c.groups * ws[2] * ws[3];
        for bias in [true, false] {
            let op = Op::ConvTranspose2d(ConvTranspose2d {
                bias,
                residual: true,
                act: Activation::Silu,
                ..c
            });
            let (ins, consts): (Vec<&Tensor>, Vec<bool>) = if bias {
                (vec![&x, &w, &b, &r], vec![false, true, true, false])
            } else {
                (vec![&x, &w, &r], vec![false, true, false])
            };
            // The residual really is added: the result differs from the op without it.
            let with = op.cpu(&ins).unwrap();
            let mut plain = c;
            plain.bias = bias;
            plain.act = Activation::Silu;
            let without = Op::ConvTranspose2d(plain)
                .cpu(&ins[..ins.len() - 1])
                .unwrap();
            assert_ne!(with, without, "{name}");
            let ran = check(
                &format!("convT+res {name} bias {bias}"),
                op,
                &ins,
                &consts,
                dot_tol(taps + 2),
            );
            if gpu().is_some() {
                assert!(
                    ran.iter().all(|k| k.starts_with("gather-4x")),
                    "{name}: {ran:?}"
                );
            }
        }
    }
    // A residual of the wrong shape is an error naming it.
    let op = Op::ConvTranspose2d(ConvTranspose2d {
        residual: true,
        ..Default::default()
    });
    let e = op
        .infer_shape(&[vec![1, 4, 5, 5], vec![4, 2, 3, 3], vec![1, 2, 7, 6]])
        .unwrap_err()
        .to_string();
    assert!(e.contains("residual") && e.contains("[1, 2, 7, 7]"), "{e}");
}

/// `ConvTranspose -> Add(bias) -> Add(residual) -> act` fuses into one node the way conv's
/// epilogue does; the fused and unfused graphs agree with each other on the CPU reference
/// (equal bits: the same terms in the same order) and the fused one on the GPU.
#[test]
fn conv_transpose_residual_fuses() {
    let cases: Vec<(&str, [usize; 4], [usize; 4], ConvTranspose2d)> = vec![
        (
            "3x3 s2 pad1 outpad1 batch 2",
            [2, 3, 5, 7],
            [3, 4, 3, 3],
            ct([2, 2], [1; 4], [1, 1], [1, 1], 1),
        ),
        (
            "groups 3 s(2,1)",
            [1, 6, 4, 5],
            [6, 2, 3, 2],
            ct([2, 1], [1, 0, 0, 1], [1, 0], [1, 1], 3),
        ),
        (
            "odd 2x2 s2",
            [1, 5, 3, 3],
            [5, 3, 2, 2],
            ct([2, 2], [0; 4], [0, 0], [1, 1], 1),
        ),
    ];
    for (i, (name, xs, ws, c)) in cases.into_iter().enumerate() {
        let out = Op::ConvTranspose2d(c)
            .infer_shape(&[xs.to_vec(), ws.to_vec()])
            .unwrap();
        let mut b = GraphBuilder::new();
        let x = b.input("x", &xs);
        let r = b.input("r", &out);
        let w = b.weight("w", Tensor::random(&ws, 10 + i as u64));
        let bias = b.weight("b", Tensor::random(&[1, out[1], 1, 1], 20 + i as u64));
        let y = b.conv_transpose2d(&x, &w, None, c);
        let y = b.add(&y, &bias);
        let y = b.add(&r, &y);
        let y = b.act(&y, Activation::LeakyRelu { alpha: 0.1 });
        b.output(&y);
        let model = Model::from_builder(b).unwrap();
        let xin = Tensor::random(&xs, 30 + i as u64);
        let rin = Tensor::random(&out, 40 + i as u64);
        let feeds = [("x", &xin), ("r", &rin)];
        let cpu = |optimize| {
            Session::cpu(
                &model,
                SessionOptions {
                    optimize,
                    autotune: false,
                    cpu_reference: true,
                    ..Default::default()
                },
            )
            .unwrap()
        };
        let (fused, plain) = (cpu(true), cpu(false));
        assert_eq!(plain.plan().nodes.len(), 4, "{}", plain.plan().describe());
        assert_eq!(fused.plan().nodes.len(), 1, "{}", fused.plan().describe());
        let want = plain.run(&feeds).unwrap();
        assert_eq!(fused.run(&feeds).unwrap(), want, "{name}");
        if let Some(ctx) = gpu() {
            let mut o = SessionOptions {
                autotune: false,
                ..Default::default()
            };
            o.plan.cpu_fallback = false;
            let s = Session::with_context(&model, ctx.clone(), o).unwrap();
            let plan = s.plan();
            assert_eq!(plan.nodes.len(), 1, "{}", plan.describe());
            assert!(plan.nodes[0].kernel.starts_with("gather-4x"), "{name}");
            let got = s.run(&feeds).unwrap();
            let taps = xs[1] / c.groups * ws[2] * ws[3];
            assert_close(
                &format!("gpu fused {name}"),
                &got[0],
                &want[0],
                dot_tol(taps + 2),
                1e-5,
            );
        }
    }
}

/// The implicit-GEMM conv with vec4 output stores (`igemm-tex-8x{4,8}-v4`): output widths that
/// are multiples of 4 (full strips of 8 and a last strip of 4), with bias, residual and an
/// activation, groups and stride; a width that is not a multiple of 4 is refused by the
/// variant (the chooser's fallback runs instead) and never stored as vec4s.
#[test]
fn igemm_tex_vec4_stores() {
    use serde_json::json;
    /// (name, input, weight, stride, pad, groups)
    type Case = (&'static str, [usize; 4], [usize; 4], usize, usize, usize);
    // Output widths 12 (8 + 4), 8, 4, and 6.
    let cases: Vec<Case> = vec![
        ("3x3 ow 12", [1, 5, 9, 12], [11, 5, 3, 3], 1, 1, 1),
        ("3x3 s2 ow 8 batch 2", [2, 8, 7, 16], [9, 8, 3, 3], 2, 1, 1),
        ("groups 2 ow 4", [1, 6, 5, 4], [10, 3, 3, 3], 1, 1, 2),
        (
            "ow 6 (not a multiple of 4)",
            [1, 4, 5, 6],
            [8, 4, 3, 3],
            1,
            1,
            1,
        ),
    ];
    for (i, (name, xs, ws, s, pd, g)) in cases.into_iter().enumerate() {
        let conv = Conv2d {
            stride: [s, s],
            pad: [pd; 4],
            groups: g,
            ..Default::default()
        };
        let out = Op::Conv2d(conv)
            .infer_shape(&[xs.to_vec(), ws.to_vec()])
            .unwrap();
        let x = Tensor::random(&xs, 50 + i as u64);
        let w = Tensor::random(&ws, 60 + i as u64);
        let b = Tensor::random(&[ws[0]], 70 + i as u64);
        let r = Tensor::random(&out, 80 + i as u64);
        let op = Op::Conv2d(Conv2d {
            bias: true,
            residual: true,
            act: Activation::Relu6,
            ..conv
        });
        let kernels = [
            json!({"kernel": "implicit_tex", "px": 8, "v4": true}),
            json!({"kernel": "implicit_tex", "px": 4, "v4": true}),
        ];
        let taps = xs[1] / g * ws[2] * ws[3];
        let ran = check_slot(
            name,
            op,
            &[&x, &w, &b, &r],
            &[false, true, true, false],
            dot_tol(taps + 2),
            "conv",
            &kernels,
        );
        if gpu().is_some() {
            let v4 = ran.iter().filter(|k| k.ends_with("-v4")).count();
            if out[3].is_multiple_of(4) {
                assert_eq!(v4, 2, "{name}: {ran:?}");
            } else {
                assert_eq!(v4, 0, "{name}: {ran:?}");
            }
        }
    }
}
