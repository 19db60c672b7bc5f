//! The register-blocked two-texture GEMM (`tex2r-*`, `shaders/matmul/gemm_tex2_reg.wgsl`)
//! against the CPU reference, every block shape it accepts pinned in turn, on shapes that hit
//! its edges: 1s, K not a multiple of 4 (the clamped last step), M and N not multiples of the
//! block or the 16 x 4 workgroup, large K, batches with a shared and a per-batch B, and the
//! epilogue (bias, residual, activation).
//!
//! Tolerance: the kernel and the reference both sum the K products in ascending k; the kernel
//! fuses each multiply into its add. Per term the two can drift apart by one rounding of the
//! product and one of the running sum, 2^-24 (|a b| + |s|) <= 6e-8 (1 + |s|), with inputs in
//! [-1, 1]. The running sums of these random products stay within a few sqrt(K), so the drift
//! stays far below 2e-6 K absolute (the conformance suite's bound), plus 1e-5 relative for the
//! epilogue's two adds and activation.

mod common;
use common::*;
use wgedge::ops::*;
use wgedge::profile::TunedChoices;
use wgedge::{Session, Tensor};

fn tol(k: usize) -> f32 {
    2e-6 * k as f32 + 1e-6
}

/// Every (tm, tn4) the kernel accepts.
fn blocks() -> Vec<(u32, u32)> {
    let mut v = Vec::new();
    for tm in [4, 8, 16] {
        for tn4 in [1, 2, 4] {
            v.push((tm, tn4));
        }
    }
    v
}

fn pinned(tm: u32, tn4: u32) -> TunedChoices {
    let k = serde_json::json!({"kernel": "tex2_reg", "tm": tm, "tn4": tn4});
    let mut c = TunedChoices::new();
    let m = c.entry("matmul".into()).or_default();
    m.insert("gemm".into(), k.clone());
    m.insert("gemv".into(), k);
    c
}

/// Runs `op` with each block shape pinned and compares with the reference; asserts that the
/// pinned kernel is the one that ran (no silent fallback to another variant).
fn check(what: &str, op: Op, inputs: &[&Tensor], consts: &[bool], k: usize) {
    let want = op.cpu(inputs).unwrap();
    let (model, feeds) = single_op(op, inputs, consts);
    let Some(ctx) = gpu() else { return };
    for (tm, tn4) in blocks() {
        let s = Session::with_context(&model, ctx.clone(), opts_with(pinned(tm, tn4), false))
            .unwrap_or_else(|e| panic!("{what} tex2r-{tm}x{}: {e}", tn4 * 4));
        let ran: Vec<&str> = s.plan().nodes.iter().map(|n| n.kernel.as_str()).collect();
        let name = format!("tex2r-{tm}x{}", tn4 * 4);
        assert_eq!(ran, [name.as_str()], "{what}");
        let got = s.run(&feeds_ref(&feeds)).unwrap();
        assert_close(&format!("{what} {name}"), &got[0], &want, tol(k), 1e-5);
    }
}

#[test]
fn tex2_reg_linear_edges() {
    // (M, K, N): 1s, K % 4 = 1, 2, 3, M and N past the block and the workgroup, large K.
    for (i, &(m, k, n)) in [
        (1, 1, 1),
        (3, 5, 7),
        (17, 33, 9),
        (2, 6, 5),
        (65, 130, 67),
        (4, 2048, 8),
        (70, 31, 133),
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
            k,
        );
    }
}

#[test]
fn tex2_reg_batches_and_residual() {
    // Batch 3 with one shared B (a `[K, N]` weight) and with a B per batch, untransposed B,
    // and a residual: act(A B + bias + R).
    let (bt, m, k, n) = (3, 19, 37, 21);
    let x = Tensor::random(&[bt, m, k], 1);
    let bias = Tensor::random(&[n], 2);
    let res = Tensor::random(&[bt, m, n], 3);
    for (label, wshape) in [("shared B", vec![k, n]), ("B per batch", vec![bt, k, n])] {
        let w = Tensor::random(&wshape, 4);
        let op = Op::MatMul(MatMul {
            bias: true,
            residual: true,
            act: Activation::Silu,
            ..Default::default()
        });
        check(
            &format!("batched {label}"),
            op,
            &[&x, &w, &bias, &res],
            &[false, true, true, false],
            k,
        );
    }
    // Batch 1 through a 3-D A.
    let x = Tensor::random(&[1, 33, 64], 5);
    let w = Tensor::random(&[64, 40], 6);
    check(
        "batch 1",
        Op::MatMul(MatMul::default()),
        &[&x, &w],
        &[false, true],
        64,
    );
}

#[test]
fn tex2_reg_refuses_bad_blocks() {
    // A block shape the kernel has no accumulators for is refused by name, not run.
    let Some(ctx) = gpu() else { return };
    let x = Tensor::random(&[8, 8], 1);
    let w = Tensor::random(&[8, 8], 2);
    let (model, _) = single_op(Op::MatMul(MatMul::default()), &[&x, &w], &[false, true]);
    let err = Session::with_context(&model, ctx, opts_with(pinned(32, 4), false))
        .err()
        .expect("tm = 32 is not a tex2r block");
    assert!(err.to_string().contains("tex2r-32x16"), "{err}");
}
