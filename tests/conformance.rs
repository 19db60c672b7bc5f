//! Every op, GPU vs the CPU reference, on shapes that hit the edges (1, odd sizes, sizes not a
//! multiple of the tile, large K, batches), for every kernel variant the chooser can pick.
//!
//! Tolerances (f32): a K-term dot product accumulated in a different order differs from the
//! reference by at most about K * 2^-24 * sum|a_i b_i|; with inputs in [-1, 1] we allow
//! 2e-6 * K absolute plus 1e-5 relative. Elementwise ops without transcendentals are exact up to
//! one rounding (1e-6); exp/tanh on GPUs carry a few ULP of error (Vulkan allows 3 + 2|x| ULP for
//! exp), hence 1e-5 relative and absolute there.

mod common;
use common::*;
use wgedge::ops::*;
use wgedge::{Session, SessionOptions, Tensor};

/// Checks `op` on `inputs` on the CPU session and on the GPU with every kernel choice.
fn check(what: &str, op: Op, inputs: &[&Tensor], consts: &[bool], atol: f32, rtol: f32) {
    let want = op
        .cpu(inputs)
        .unwrap_or_else(|e| panic!("{what}: cpu reference: {e}"));
    let (model, feeds) = single_op(op.clone(), inputs, consts);
    let cpu = Session::cpu(
        &model,
        SessionOptions {
            autotune: false,
            cpu_reference: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        cpu.run(&feeds_ref(&feeds)).unwrap()[0],
        want,
        "{what}: cpu session"
    );
    // Every distinct kernel plan of every tune candidate (and the naive kernels), once each.
    check_gpu_kernels(what, &model, &feeds, &want, atol, rtol);
}

fn dot_tol(k: usize) -> f32 {
    2e-6 * k as f32 + 1e-6
}

#[test]
fn matmul_linear_shapes() {
    // (M, K, N): 1s, odd sizes, not multiples of any tile, GEMV, large K.
    for (i, &(m, k, n)) in [
        (1, 1, 1),
        (1, 4, 3),
        (3, 5, 7),
        (1, 1024, 257),
        (17, 33, 9),
        (64, 64, 64),
        (65, 128, 67),
        (4, 2048, 8),
        (2, 300, 13),
        (33, 12, 130),
    ]
    .iter()
    .enumerate()
    {
        let x = Tensor::random(&[m, k], i as u64);
        let w = Tensor::random(&[n, k], 100 + i as u64);
        let b = Tensor::random(&[n], 200 + i as u64);
        let op = Op::MatMul(MatMul {
            trans_b: true,
            bias: true,
            act: Activation::Relu,
            ..Default::default()
        });
        check(
            &format!("linear {m}x{k}x{n}"),
            op,
            &[&x, &w, &b],
            &[false, true, true],
            dot_tol(k),
            1e-5,
        );
    }
}

#[test]
fn matmul_layouts_and_batches() {
    // Constant B in [K, N] layout (packed to NT at load), activation B (scalar path), trans_a,
    // batched with shared and per-batch B, residual + bias + activation epilogue.
    let a = Tensor::random(&[5, 12], 1);
    let b = Tensor::random(&[12, 7], 2);
    check(
        "matmul const B",
        Op::MatMul(MatMul::default()),
        &[&a, &b],
        &[false, true],
        dot_tol(12),
        1e-5,
    );
    check(
        "matmul act B",
        Op::MatMul(MatMul::default()),
        &[&a, &b],
        &[false, false],
        dot_tol(12),
        1e-5,
    );
    let at = Tensor::random(&[12, 5], 3);
    check(
        "matmul trans_a",
        Op::MatMul(MatMul {
            trans_a: true,
            ..Default::default()
        }),
        &[&at, &b],
        &[false, true],
        dot_tol(12),
        1e-5,
    );
    let bt = Tensor::random(&[7, 12], 4);
    check(
        "matmul both transposed",
        Op::MatMul(MatMul {
            trans_a: true,
            trans_b: true,
            ..Default::default()
        }),
        &[&at, &bt],
        &[false, false],
        dot_tol(12),
        1e-5,
    );
    let a3 = Tensor::random(&[3, 9, 16], 5);
    let b3 = Tensor::random(&[3, 16, 11], 6);
    check(
        "batched per-batch B",
        Op::MatMul(MatMul::default()),
        &[&a3, &b3],
        &[false, false],
        dot_tol(16),
        1e-5,
    );
    check(
        "batched per-batch const B",
        Op::MatMul(MatMul::default()),
        &[&a3, &b3],
        &[false, true],
        dot_tol(16),
        1e-5,
    );
    let b2 = Tensor::random(&[16, 11], 7);
    let bias = Tensor::random(&[11], 8);
    let res = Tensor::random(&[3, 9, 11], 9);
    let op = Op::MatMul(MatMul {
        bias: true,
        residual: true,
        act: Activation::Gelu,
        ..Default::default()
    });
    check(
        "batched shared B + bias + residual + gelu",
        op,
        &[&a3, &b2, &bias, &res],
        &[false, true, true, false],
        dot_tol(16) + 1e-5,
        1e-5,
    );
}

#[test]
fn conv2d_shapes() {
    let cases: Vec<(&str, [usize; 4], [usize; 4], Conv2d)> = vec![
        (
            "1x1 pointwise",
            [1, 8, 5, 7],
            [16, 8, 1, 1],
            Conv2d::default(),
        ),
        (
            "1x1 pointwise batch 2, HW a multiple of 4",
            [2, 6, 4, 5],
            [11, 6, 1, 1],
            Conv2d::default(),
        ),
        (
            "3x3 pad1",
            [2, 3, 9, 11],
            [5, 3, 3, 3],
            Conv2d {
                pad: [1; 4],
                ..Default::default()
            },
        ),
        (
            "stride2 asym pad dilation2",
            [1, 4, 13, 10],
            [6, 4, 3, 3],
            Conv2d {
                stride: [2, 2],
                pad: [1, 0, 2, 1],
                dilation: [2, 2],
                ..Default::default()
            },
        ),
        (
            "groups2",
            [1, 6, 8, 8],
            [10, 3, 3, 3],
            Conv2d {
                groups: 2,
                pad: [1; 4],
                ..Default::default()
            },
        ),
        (
            "depthwise s1",
            [1, 8, 10, 9],
            [8, 1, 3, 3],
            Conv2d {
                groups: 8,
                pad: [1; 4],
                ..Default::default()
            },
        ),
        (
            "depthwise s2 5x5",
            [2, 5, 11, 11],
            [5, 1, 5, 5],
            Conv2d {
                groups: 5,
                stride: [2, 2],
                pad: [2; 4],
                ..Default::default()
            },
        ),
        (
            "channel multiplier",
            [1, 4, 6, 6],
            [8, 1, 3, 3],
            Conv2d {
                groups: 4,
                ..Default::default()
            },
        ),
        (
            "1x1 image, 9 taps",
            [1, 3, 1, 1],
            [4, 3, 3, 3],
            Conv2d {
                pad: [1; 4],
                ..Default::default()
            },
        ),
        (
            "wide 7x1",
            [1, 2, 20, 5],
            [3, 2, 7, 1],
            Conv2d {
                pad: [3, 0, 3, 0],
                ..Default::default()
            },
        ),
    ];
    for (i, (name, xs, ws, c)) in cases.into_iter().enumerate() {
        let x = Tensor::random(&xs, i as u64);
        let w = Tensor::random(&ws, 50 + i as u64);
        let b = Tensor::random(&[ws[0]], 90 + i as u64);
        let k = ws[1] * ws[2] * ws[3];
        let op = Op::Conv2d(Conv2d {
            bias: true,
            act: Activation::Relu6,
            ..c
        });
        check(
            &format!("conv {name}"),
            op.clone(),
            &[&x, &w, &b],
            &[false, true, true],
            dot_tol(k),
            1e-5,
        );
        if i == 1 {
            // Residual epilogue, and weights that are not constant (naive path only).
            let out = op
                .infer_shape(&[xs.to_vec(), ws.to_vec(), vec![ws[0]]])
                .unwrap();
            let r = Tensor::random(&out, 7);
            let opr = Op::Conv2d(Conv2d {
                bias: true,
                residual: true,
                act: Activation::Silu,
                ..c
            });
            check(
                "conv residual silu",
                opr,
                &[&x, &w, &b, &r],
                &[false, true, true, false],
                dot_tol(k) + 1e-5,
                1e-5,
            );
            check(
                "conv activation weights",
                Op::Conv2d(c),
                &[&x, &w],
                &[false, false],
                dot_tol(k),
                1e-5,
            );
        }
    }
}

#[test]
fn elementwise_and_activations() {
    let x = Tensor::new(
        &[2, 3, 7],
        (0..42).map(|i| (i as f32 - 21.0) * 0.37).collect(),
    )
    .unwrap();
    // Every activation of the table (a new one is tested here without editing this list).
    let acts = Activation::all();
    assert!(acts.len() >= 9);
    for act in acts
        .into_iter()
        .chain([Activation::LeakyRelu { alpha: 0.2 }])
    {
        check(
            &format!("unary {act:?}"),
            Op::Unary(Unary { act }),
            &[&x],
            &[false],
            1e-5,
            1e-5,
        );
    }
    let big = Tensor::new(&[4], vec![-100.0, -20.0, 20.0, 100.0]).unwrap();
    check(
        "tanh large",
        Op::Unary(Unary {
            act: Activation::Tanh,
        }),
        &[&big],
        &[false],
        1e-6,
        0.0,
    );
    check(
        "sigmoid large",
        Op::Unary(Unary {
            act: Activation::Sigmoid,
        }),
        &[&big],
        &[false],
        1e-6,
        0.0,
    );
    let a = Tensor::random(&[2, 3, 4], 1);
    for (sb, kind) in [
        (vec![4], BinaryKind::Add),
        (vec![2, 1, 4], BinaryKind::Sub),
        (vec![3, 1], BinaryKind::Mul),
        (vec![2, 3, 4], BinaryKind::Div),
        (vec![1], BinaryKind::Add),
    ] {
        let mut b = Tensor::random(&sb, 2);
        if kind == BinaryKind::Div {
            b = Tensor::new(
                &sb,
                b.f32s("b").unwrap().iter().map(|v| v.abs() + 0.5).collect(),
            )
            .unwrap();
        }
        check(
            &format!("{kind:?} {sb:?}"),
            Op::Binary(Binary {
                kind,
                act: Activation::None,
            }),
            &[&a, &b],
            &[false, false],
            1e-6,
            1e-6,
        );
    }
    // Broadcasting both ways ([3,1] + [1,5] -> [3,5]) with a fused activation.
    let p = Tensor::random(&[3, 1], 3);
    let q = Tensor::random(&[1, 5], 4);
    check(
        "add outer",
        Op::Binary(Binary {
            kind: BinaryKind::Add,
            act: Activation::Relu,
        }),
        &[&p, &q],
        &[false, false],
        1e-6,
        1e-6,
    );
    let big = Tensor::random(&[70001], 5);
    check(
        "large unary",
        Op::Unary(Unary {
            act: Activation::Relu,
        }),
        &[&big],
        &[false],
        0.0,
        0.0,
    );
}

#[test]
fn norms_and_softmax() {
    for (shape, axis) in [
        (vec![3, 37], -1i64),
        (vec![2, 5, 3], 1),
        (vec![1, 1000], -1),
        (vec![1, 1], 0),
        (vec![130, 3], -1),
    ] {
        let x = Tensor::random(&shape, 11);
        check(
            &format!("softmax {shape:?} axis {axis}"),
            Op::Softmax(Softmax { axis }),
            &[&x],
            &[false],
            1e-6,
            1e-5,
        );
    }
    for (rows, len) in [(4, 33), (1, 1), (3, 200)] {
        let x = Tensor::random(&[rows, len], 12);
        let g = Tensor::random(&[len], 13);
        let b = Tensor::random(&[len], 14);
        check(
            &format!("layernorm {rows}x{len}"),
            Op::LayerNorm(LayerNorm {
                axis: -1,
                eps: 1e-5,
            }),
            &[&x, &g, &b],
            &[false, true, true],
            2e-5,
            1e-4,
        );
    }
    let x = Tensor::random(&[2, 3, 5, 5], 15);
    let g = Tensor::random(&[3], 16);
    let b = Tensor::random(&[3], 17);
    let m = Tensor::random(&[3], 18);
    let v = Tensor::new(&[3], vec![0.5, 1.5, 0.01]).unwrap();
    check(
        "batchnorm",
        Op::BatchNorm(BatchNorm { eps: 1e-5 }),
        &[&x, &g, &b, &m, &v],
        &[false, true, true, true, true],
        1e-5,
        1e-5,
    );
}

#[test]
fn pooling() {
    let x = Tensor::random(&[2, 3, 9, 8], 21);
    let cases = [
        (
            "max 3x3 s2 p1",
            Pool2d {
                kind: PoolKind::Max,
                kernel: [3, 3],
                stride: [2, 2],
                pad: [1; 4],
                count_include_pad: false,
            },
        ),
        (
            "max 2x2",
            Pool2d {
                kind: PoolKind::Max,
                kernel: [2, 2],
                stride: [2, 2],
                pad: [0; 4],
                count_include_pad: false,
            },
        ),
        (
            "avg 3x3 p1 exclude pad",
            Pool2d {
                kind: PoolKind::Avg,
                kernel: [3, 3],
                stride: [1, 1],
                pad: [1; 4],
                count_include_pad: false,
            },
        ),
        (
            "avg 3x2 asym pad include",
            Pool2d {
                kind: PoolKind::Avg,
                kernel: [3, 2],
                stride: [2, 1],
                pad: [1, 0, 2, 1],
                count_include_pad: true,
            },
        ),
    ];
    for (name, p) in cases {
        check(name, Op::Pool2d(p), &[&x], &[false], 1e-6, 1e-6);
    }
    check(
        "global avg",
        Op::GlobalAvgPool(GlobalAvgPool {}),
        &[&x],
        &[false],
        1e-6,
        1e-5,
    );
}

#[test]
fn shape_ops() {
    let x = Tensor::random(&[2, 3, 4], 31);
    check(
        "reshape",
        Op::Reshape(Reshape { shape: vec![4, -1] }),
        &[&x],
        &[false],
        0.0,
        0.0,
    );
    check(
        "flatten",
        Op::Flatten(Flatten { axis: 1 }),
        &[&x],
        &[false],
        0.0,
        0.0,
    );
    check(
        "transpose 201",
        Op::Transpose(Transpose {
            perm: vec![2, 0, 1],
        }),
        &[&x],
        &[false],
        0.0,
        0.0,
    );
    let x5 = Tensor::random(&[2, 1, 3, 2, 5], 32);
    check(
        "transpose rank5",
        Op::Transpose(Transpose {
            perm: vec![4, 2, 0, 3, 1],
        }),
        &[&x5],
        &[false],
        0.0,
        0.0,
    );
    let y = Tensor::random(&[2, 5, 4], 33);
    check(
        "concat axis1",
        Op::Concat(Concat { axis: 1 }),
        &[&x, &y],
        &[false, false],
        0.0,
        0.0,
    );
    let z = Tensor::random(&[2, 3, 1], 34);
    check(
        "concat last axis with a weight",
        Op::Concat(Concat { axis: -1 }),
        &[&x, &z, &x],
        &[false, true, false],
        0.0,
        0.0,
    );
}

/// The workgroup-tiled GEMM (the variant real GPUs favour) on shapes that cross its tiles in
/// every direction: M, N not multiples of the 32/64 blocks, K over several 16-deep steps and
/// not a multiple of 16, batches, both transposes, runtime and constant B, the full epilogue.
/// The kernel is forced through the `gemm` and `gemm_tiled` slots and asserted to have run.
#[test]
fn matmul_workgroup_tiled_crosses_tiles() {
    let Some(ctx) = gpu() else {
        skip_gpu_check("workgroup-tiled GEMM");
        return;
    };
    // (name, op, A's shape, B's shape, B constant)
    type Case = (&'static str, MatMul, Vec<usize>, Vec<usize>, bool);
    let cases: Vec<Case> = vec![
        (
            "const B",
            MatMul::default(),
            vec![70, 37],
            vec![37, 67],
            true,
        ),
        (
            "runtime B batched",
            MatMul::default(),
            vec![2, 33, 50],
            vec![2, 50, 65],
            false,
        ),
        (
            "trans_a trans_b",
            MatMul {
                trans_a: true,
                trans_b: true,
                ..Default::default()
            },
            vec![41, 9],
            vec![130, 41],
            false,
        ),
        (
            "one row",
            MatMul::default(),
            vec![1, 100],
            vec![100, 3],
            true,
        ),
    ];
    for (tm, tn, wg) in [(4, 4, 16), (4, 4, 8), (2, 1, 8)] {
        let k = serde_json::json!({"kernel": "wg_tile", "tm": tm, "tn": tn, "wg": wg});
        let mut choices = wgedge::profile::TunedChoices::new();
        let slots = choices.entry("matmul".into()).or_default();
        for slot in ["gemm", "gemm_tiled", "gemv"] {
            slots.insert(slot.into(), k.clone());
        }
        for (i, (name, op, sa, sb, b_const)) in cases.iter().enumerate() {
            let a = Tensor::random(sa, 10 + i as u64);
            let b = Tensor::random(sb, 20 + i as u64);
            let mut op = *op;
            op.bias = true;
            op.residual = true;
            op.act = Activation::Relu6;
            let out = Op::MatMul(MatMul {
                bias: false,
                residual: false,
                ..op
            })
            .infer_shape(&[sa.clone(), sb.clone()])
            .unwrap();
            let n = out[out.len() - 1];
            let bias = Tensor::random(&[n], 30);
            let res = Tensor::random(&out, 31);
            let ins = [&a, &b, &bias, &res];
            let want = Op::MatMul(op).cpu(&ins).unwrap();
            let (model, feeds) = single_op(Op::MatMul(op), &ins, &[false, *b_const, true, false]);
            let s = Session::with_context(&model, ctx.clone(), opts_with(choices.clone(), false))
                .unwrap();
            let kernel = s.plan().nodes[0].kernel.clone();
            let what = format!("wg{wg}-{tm}x{tn} {name}");
            // Runtime B here is never in vec4's NT layout with an untransposed A, so every
            // case reaches a slot that holds the forced kernel.
            assert_eq!(kernel, format!("wg{wg}-{tm}x{tn}"), "{what}");
            let got = s.run(&feeds_ref(&feeds)).unwrap();
            let kdim = if sa.len() == 2 && name.contains("trans_a") {
                sa[0]
            } else {
                sa[sa.len() - 1]
            };
            assert_close(&what, &got[0], &want, dot_tol(kdim) + 1e-5, 1e-5);
        }
    }
}
