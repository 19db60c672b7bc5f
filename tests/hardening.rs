//! Sessions under stress: shared between threads, given a hostile model that asks for more
//! memory than the machine has, and graphs whose outputs are weights or inputs.

mod common;
use common::*;
use std::sync::Arc;
use wgedge::graph::GraphBuilder;
use wgedge::ops::{Activation, Conv2d};
use wgedge::{Error, Model, Session, SessionOptions, Tensor};

fn plain() -> SessionOptions {
    SessionOptions {
        autotune: false,
        ..Default::default()
    }
}

/// linear -> relu -> (CPU cast round trip) -> linear: GPU and CPU nodes both in the plan.
fn model() -> Model {
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[4, 32]);
    let w1 = b.weight("w1", Tensor::random(&[48, 32], 1));
    let h = b.linear(&x, &w1, None, Activation::Relu);
    let i = b.cast(&h, wgedge::DType::I32);
    let f = b.cast(&i, wgedge::DType::F32);
    let w2 = b.weight("w2", Tensor::random(&[8, 48], 2));
    let y = b.linear(&f, &w2, None, Activation::None);
    b.output(&y);
    Model::from_builder(b).unwrap()
}

#[test]
fn one_session_shared_by_threads_gives_each_run_its_own_answer() {
    let m = model();
    let inputs: Vec<Tensor> = (0..6)
        .map(|s| {
            let t = Tensor::random(&[4, 32], 100 + s);
            let v = t.f32s("x").unwrap().iter().map(|v| v * 8.0).collect();
            Tensor::new(&[4, 32], v).unwrap()
        })
        .collect();
    let cpu = Session::cpu(&m, plain()).unwrap();
    let want: Vec<Tensor> = inputs
        .iter()
        .map(|x| cpu.run(&[("x", x)]).unwrap().remove(0))
        .collect();
    let Some(ctx) = gpu() else { return };
    let s = Arc::new(Session::with_context(&m, ctx, plain()).unwrap());
    assert_eq!(s.plan().cpu_nodes().len(), 2);
    let threads: Vec<_> = (0..inputs.len())
        .map(|k| {
            let (s, x, w) = (s.clone(), inputs[k].clone(), want[k].clone());
            std::thread::spawn(move || {
                for _ in 0..8 {
                    let got = s.run(&[("x", &x)]).expect("concurrent run");
                    assert_close(&format!("thread {k}"), &got[0], &w, 1e-4, 1e-4);
                    if k == 0 {
                        s.run_resident(1).expect("resident run among others");
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("no thread failed");
    }
}

/// A 1x1 conv with 32767 padding on every side: a tiny file that plans a 17 GB activation.
fn hostile() -> Model {
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[1, 1, 1, 1]);
    let w = b.weight("w", Tensor::random(&[1, 1, 1, 1], 1));
    let y = b.conv2d(
        &x,
        &w,
        None,
        Conv2d {
            pad: [32767; 4],
            ..Default::default()
        },
    );
    b.output(&y);
    Model::from_builder(b).unwrap()
}

#[test]
fn a_hostile_model_is_refused_by_the_memory_budget() {
    let m = hostile();
    assert!(m.to_bytes().unwrap().len() < 1024);
    let check = |e: Error| {
        let msg = e.to_string();
        assert!(matches!(e, Error::MemoryBudget { .. }), "{msg}");
        // Says how much was asked (4 * 65535^2 bytes) and what the budget is.
        assert!(msg.contains("17179344900"), "{msg}");
        assert!(msg.contains("max_memory"), "{msg}");
    };
    check(Session::cpu(&m, plain()).err().expect("refused"));
    // An explicit budget too; and a model that fits runs.
    let small = SessionOptions {
        max_memory: Some(1 << 20),
        ..plain()
    };
    let e = Session::cpu(&model(), small.clone()).err();
    assert!(e.is_none(), "{e:?}");
    let tight = SessionOptions {
        max_memory: Some(1000),
        ..plain()
    };
    let e = Session::cpu(&model(), tight)
        .err()
        .expect("over 1000 bytes");
    assert!(matches!(e, Error::MemoryBudget { budget: 1000, .. }), "{e}");
    let Some(ctx) = gpu() else { return };
    check(
        Session::with_context(&m, ctx, plain())
            .err()
            .expect("refused"),
    );
}

#[test]
fn outputs_that_are_weights_or_inputs() {
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[2, 3]);
    let w = b.weight("w", Tensor::random(&[3, 2], 4));
    let i = b.weight(
        "ints",
        Tensor::from_data(&[3], wgedge::tensor::TensorData::I64(vec![7, -1, 1 << 40])).unwrap(),
    );
    let y = b.matmul(&x, &w);
    b.output(&y);
    b.output(&w);
    b.output(&x);
    b.output(&i);
    let m = Model::from_builder(b).unwrap();
    let xin = Tensor::random(&[2, 3], 5);
    let cpu = Session::cpu(&m, plain())
        .unwrap()
        .run(&[("x", &xin)])
        .unwrap();
    assert_eq!(cpu[1], m.weights["w"]);
    assert_eq!(cpu[2], xin);
    assert_eq!(cpu[3], m.weights["ints"]);
    let Some(ctx) = gpu() else { return };
    let got = Session::with_context(&m, ctx, plain())
        .unwrap()
        .run(&[("x", &xin)])
        .unwrap();
    assert_close("matmul", &got[0], &cpu[0], 1e-5, 1e-5);
    assert_eq!(got[1..], cpu[1..]);
}

#[test]
fn bad_kernel_choices_from_the_api_are_errors_not_panics() {
    let Some(ctx) = gpu() else { return };
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[1, 4, 6, 6]);
    let w = b.weight("w", Tensor::random(&[4, 4, 3, 3], 1));
    let y = b.conv2d(&x, &w, None, Conv2d::default());
    b.output(&y);
    let m = Model::from_builder(b).unwrap();
    for bad in [
        r#"{"conv2d": {"conv": {"kernel": "tiled", "px": 0}}}"#,
        r#"{"conv2d": {"conv": {"kernel": "tex2", "px": 5}}}"#,
        r#"{"conv2d": {"conv": {"kernel": "vec4", "tm": 4, "tn": 4}}}"#,
        r#"{"matmul": {"gemm": {"kernel": "bcast", "tm": 3, "tn4": 1}}}"#,
        r#"{"conv2d": {"nope": {"kernel": "tiled", "px": 4}}}"#,
        r#"{"nope": {"conv": {"kernel": "tiled", "px": 4}}}"#,
    ] {
        let opts = SessionOptions {
            kernels: Some(serde_json::from_str(bad).unwrap()),
            ..plain()
        };
        let e = Session::with_context(&m, ctx.clone(), opts)
            .err()
            .unwrap_or_else(|| panic!("{bad} accepted"));
        assert!(matches!(e, Error::Input(_)), "{bad}: {e}");
    }
}

#[test]
fn a_hostile_pool_window_costs_only_its_taps_inside_the_input() {
    // 40000x3 window, padding 39999: ~1.2e5 taps per output but at most 4 inside the input.
    // Both the CPU reference and the GPU kernel visit only those (the old kernel looped over
    // all of them: ~4e10 iterations).
    use wgedge::ops::{Op, Pool2d, PoolKind};
    for kind in [PoolKind::Max, PoolKind::Avg] {
        let op = Op::Pool2d(Pool2d {
            kind,
            kernel: [40000, 3],
            stride: [1, 1],
            pad: [39999, 1, 39999, 1],
            count_include_pad: false,
        });
        let x = Tensor::random(&[1, 4, 2, 2], 3);
        let want = op.cpu(&[&x]).unwrap();
        let (m, feeds) = single_op(op, &[&x], &[false]);
        let Some(ctx) = gpu() else { return };
        let got = run_gpu(&ctx, &m, &feeds, plain());
        assert_close("hostile pool", &got[0], &want, 1e-6, 1e-6);
    }
}
