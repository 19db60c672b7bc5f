//! Elementwise, comparison, reduction and normalisation ops (the ONNX-import families): the GPU
//! kernel against the CPU reference on edge shapes (size 1, odd sizes, sizes not a multiple of
//! the workgroup, reductions of ~10^5 elements, negative axes, broadcasting across ranks,
//! keepdims on and off), the CPU-only ops against the ONNX semantics, and bad inputs (errors
//! naming the op, never panics).
//!
//! Tolerances (f32, eps = 2^-24 relative rounding):
//! - exact ops (neg, abs, floor, ceil, round, sign, clip, max/min, prelu, where, copies):
//!   0 — both sides do the same single operation;
//! - one rounded arithmetic op (mul, div, fmod's `a - b trunc(a/b)`): 1e-6 relative;
//! - exp/log/tanh-based activations: Vulkan allows exp 3 + 2|x| ULP and log 3 ULP (absolute
//!   2^-21 near 1), so 1e-5 absolute and relative (|x| <= 8 here);
//! - erf and exact GELU: the GPU's Abramowitz-Stegun 7.1.26 approximation is within 1.5e-7 of
//!   erf, plus about 1e-7 of f32 rounding and exp error, against the exact erf on the CPU:
//!   1e-6 absolute (GELU multiplies by |x|/2 <= 4, so 4e-6 there);
//! - sin/cos: Vulkan allows 2^-11 absolute on [-pi, pi]; we allow that bound;
//! - reductions: the CPU reference accumulates in f64 (the exact result, rounded once), so the
//!   bound is the GPU's own: a sum whose longest chain of f32 additions is k terms is within
//!   k eps sum|x| of the exact one; k is the reduced length for one invocation per output, and
//!   len/64 + 6 (strided partials, then a 64-wide tree) for a workgroup per output;
//! - normalisations: like the existing layer norm case, 2e-5 absolute + 1e-4 relative (a mean
//!   and a variance over the row, then rsqrt).

mod common;
use common::*;
use wgedge::graph::GraphBuilder;
use wgedge::ops::*;
use wgedge::profile::TunedChoices;
use wgedge::tensor::TensorData;
use wgedge::{DType, Model, Session, SessionOptions, Tensor, ValueType};

const EPS: f32 = 1.0 / 16_777_216.0;

fn cpu_session(model: &Model) -> Session {
    Session::cpu(
        model,
        SessionOptions {
            autotune: false,
            cpu_reference: true,
            ..Default::default()
        },
    )
    .unwrap()
}

/// Output 0 of `model` on the GPU with no CPU fallback (the node must run its GPU kernel), or
/// `None` without an adapter (a counted skip; a failure under CI=true).
/// Graph rewrites stay on: the session moves constant shape-like inputs (clip bounds, reduce
/// axes) into attributes only in its optimising build.
fn gpu_run(model: &Model, feeds: &[(String, Tensor)]) -> Option<Tensor> {
    let ctx = gpu()?;
    let mut o = opts_with(TunedChoices::new(), false);
    o.optimize = true;
    Some(run_gpu(&ctx, model, feeds, o).remove(0))
}

/// `op` on `inputs`: the CPU session equals the reference, and the GPU kernel is within
/// `atol + rtol |want|` of it. Returns the reference.
fn check(what: &str, op: Op, inputs: &[&Tensor], consts: &[bool], atol: f32, rtol: f32) -> Tensor {
    let want = op
        .cpu(inputs)
        .unwrap_or_else(|e| panic!("{what}: cpu reference: {e}"));
    let (model, feeds) = single_op(op, inputs, consts);
    assert_eq!(
        cpu_session(&model).run(&feeds_ref(&feeds)).unwrap()[0],
        want,
        "{what}: cpu session"
    );
    if let Some(got) = gpu_run(&model, &feeds) {
        assert_close(what, &got, &want, atol, rtol);
    }
    want
}

/// Evenly spread values in [lo, hi] (n of them), shuffled deterministically.
fn spread(shape: &[usize], lo: f32, hi: f32) -> Tensor {
    let n: usize = shape.iter().product();
    let v = (0..n)
        .map(|i| {
            let j = (i * 7919) % n.max(1);
            lo + (hi - lo) * j as f32 / (n.max(2) - 1) as f32
        })
        .collect();
    Tensor::new(shape, v).unwrap()
}

fn unary(act: Activation) -> Op {
    Op::Unary(Unary { act })
}

fn bin(kind: BinaryKind) -> Op {
    Op::Binary(Binary {
        kind,
        act: Activation::None,
    })
}

fn err_of(op: &Op, ins: &[ValueType]) -> String {
    match op.infer(ins) {
        Ok(v) => panic!("{}: expected an error, got {v:?}", op.name()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn erf_reference_matches_known_values() {
    // erf at a few points (Abramowitz & Stegun table 7.1, 10 digits).
    for (x, want) in [
        (0.0f32, 0.0f64),
        (0.1, 0.1124629160),
        (0.5, 0.5204998778),
        (1.0, 0.8427007929),
        (2.0, 0.9953222650),
        (3.0, 0.9999779095),
        (-1.5, -0.9661051465),
    ] {
        let got = erf(x) as f64;
        assert!(
            (got - want).abs() <= 1e-7 * want.abs().max(1e-30) + 1e-9,
            "erf({x}) = {got}, want {want}"
        );
    }
    assert_eq!(erf(5.0), 1.0);
    assert_eq!(erf(-9.0), -1.0);
}

#[test]
fn new_activations_gpu_vs_cpu() {
    // 1031 values (not a multiple of 256) over [-8, 8], plus exact zeros and halves for
    // round/sign/floor.
    let mut v = spread(&[1031], -8.0, 8.0).into_f32s("x").unwrap();
    v.extend([0.0, -0.0, 0.5, 1.5, 2.5, -0.5, -2.5, 1.0]);
    let x = Tensor::new(&[1039], v).unwrap();
    for act in Activation::all() {
        let tol = match act {
            Activation::Erf => 1e-6,
            Activation::GeluErf => 4e-6,
            _ => 1e-5,
        };
        check(&format!("{act:?}"), unary(act), &[&x], &[false], tol, 1e-5);
    }
    // Parameters other than the samples, and ONNX defaults.
    for act in [
        Activation::Elu { alpha: 1.0 },
        Activation::Celu { alpha: -2.0 },
        Activation::ThresholdedRelu { alpha: -0.5 },
        Activation::HardSigmoidAb {
            alpha: 0.2,
            beta: 0.5,
        },
        Activation::Clip {
            min: 2.0,
            max: -1.0,
        },
        Activation::clip(Some(-0.5), None),
        // Extreme bounds (no pipeline-constant expression may overflow on them).
        Activation::clip(Some(-3.0), None),
        Activation::clip(None, None),
    ] {
        check(&format!("{act:?}"), unary(act), &[&x], &[false], 1e-5, 1e-5);
    }
}

#[test]
fn two_parameter_activations_reach_every_epilogue() {
    // BETA must reach fused epilogues too: binary add and matmul.
    let a = Tensor::random(&[3, 5, 7], 1);
    let b = Tensor::random(&[7], 2);
    for act in [
        Activation::Clip {
            min: -0.3,
            max: 0.4,
        },
        Activation::Selu {
            alpha: 1.673_263_2,
            gamma: 1.050_701,
        },
        Activation::HardSigmoidAb {
            alpha: 0.3,
            beta: 0.4,
        },
    ] {
        check(
            &format!("add+{act:?}"),
            Op::Binary(Binary {
                kind: BinaryKind::Add,
                act,
            }),
            &[&a, &b],
            &[false, false],
            1e-5,
            1e-5,
        );
        let w = Tensor::random(&[6, 7], 3);
        // A 7-term dot product: 2e-6 * 7 absolute (tests/conformance.rs's bound).
        check(
            &format!("matmul+{act:?}"),
            Op::MatMul(MatMul {
                trans_b: true,
                act,
                ..Default::default()
            }),
            &[&a, &w],
            &[false, true],
            2e-5,
            1e-5,
        );
    }
}

#[test]
fn clip_bounds_as_attributes_and_inputs() {
    assert_eq!(Activation::clip(Some(0.0), None), Activation::Relu);
    assert_eq!(
        Activation::clip(Some(0.0), Some(f32::INFINITY)),
        Activation::Relu
    );
    assert_eq!(Activation::clip(Some(0.0), Some(6.0)), Activation::Relu6);
    assert_eq!(
        Activation::clip(None, Some(1.0)),
        Activation::Clip {
            min: f32::MIN,
            max: 1.0
        }
    );
    let x = spread(&[3, 17], -9.0, 9.0);
    let lo = Tensor::new(&[1], vec![-2.0]).unwrap();
    let hi = Tensor::new(&[1], vec![6.0]).unwrap();
    // Attributes; then bound inputs as weights (absorbed at build, so the GPU runs it).
    check(
        "clip attrs",
        Op::Clip(Clip {
            min: Some(-1.0),
            max: None,
        }),
        &[&x],
        &[false],
        0.0,
        0.0,
    );
    let want = check(
        "clip inputs",
        Op::Clip(Clip::default()),
        &[&x, &lo, &hi],
        &[false, true, true],
        0.0,
        0.0,
    );
    let w = want.f32s("clip").unwrap();
    let xs = x.f32s("x").unwrap();
    assert!(w.iter().zip(xs).all(|(&y, &x)| y == x.clamp(-2.0, 6.0)));
    check(
        "clip min input",
        Op::Clip(Clip::default()),
        &[&x, &lo],
        &[false, true],
        0.0,
        0.0,
    );
    // A bound that is a graph input is not known at plan time: an error naming it.
    let e = build_err(Op::Clip(Clip::default()), &[&x, &lo]);
    assert!(e.contains("clip") && e.contains("min (input 1)"), "{e}");
    let bad = Tensor::new(&[2], vec![0.0, 1.0]).unwrap();
    let e = Op::Clip(Clip::default()).cpu(&[&x, &bad]).unwrap_err();
    assert!(e.to_string().contains("clip min"), "{e}");
}

/// The error of building a model of `op` over graph inputs like `inputs` (at the graph check
/// or at the session build).
fn build_err(op: Op, inputs: &[&Tensor]) -> String {
    let mut b = GraphBuilder::new();
    let names: Vec<String> = (0..inputs.len())
        .map(|i| b.input_typed(&format!("x{i}"), inputs[i].dtype(), inputs[i].shape()))
        .collect();
    let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let y = b.node(op, &refs);
    b.output(&y);
    let model = match Model::from_builder(b) {
        Err(e) => return e.to_string(),
        Ok(m) => m,
    };
    match Session::cpu(&model, SessionOptions::default()) {
        Ok(_) => panic!("expected a build error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn math_ops() {
    let pos = spread(&[517], 0.01, 50.0);
    for kind in [MathKind::Log, MathKind::Sqrt, MathKind::Reciprocal] {
        check(
            &format!("{kind:?}"),
            Op::Math(Math { kind }),
            &[&pos],
            &[false],
            1e-6,
            1e-5,
        );
    }
    // exp over [-8, 8] (a few ULP: 1e-5 relative); the exact ones on values that include
    // zeros, halves (round to even) and integers.
    check(
        "exp",
        Op::Math(Math {
            kind: MathKind::Exp,
        }),
        &[&spread(&[1031], -8.0, 8.0)],
        &[false],
        1e-6,
        1e-5,
    );
    let mut v = spread(&[1031], -8.0, 8.0).into_f32s("x").unwrap();
    v.extend([0.0, -0.0, 0.5, 1.5, 2.5, -0.5, -2.5, 1.0, -3.0]);
    let x = Tensor::new(&[v.len()], v).unwrap();
    for kind in [
        MathKind::Floor,
        MathKind::Ceil,
        MathKind::Round,
        MathKind::Sign,
    ] {
        check(
            &format!("{kind:?}"),
            Op::Math(Math { kind }),
            &[&x],
            &[false],
            0.0,
            0.0,
        );
    }
    let r = Op::Math(Math {
        kind: MathKind::Round,
    })
    .cpu(&[&Tensor::new(&[4], vec![0.5, 1.5, 2.5, -2.5]).unwrap()])
    .unwrap();
    assert_eq!(r.f32s("").unwrap(), &[0.0, 2.0, 2.0, -2.0]);
    let ang = spread(&[257], -std::f32::consts::PI, std::f32::consts::PI);
    for kind in [MathKind::Sin, MathKind::Cos] {
        check(
            &format!("{kind:?}"),
            Op::Math(Math { kind }),
            &[&ang],
            &[false],
            1.0 / 2048.0,
            0.0,
        );
    }
    assert!(err_of(
        &Op::Math(Math {
            kind: MathKind::Log
        }),
        &[ValueType::new(DType::I64, &[3])]
    )
    .contains("log"));
}

#[test]
fn binary_kinds_gpu_vs_cpu() {
    // Rank differences both ways, a size-1 axis, odd sizes.
    let a = spread(&[2, 3, 37], -5.0, 5.0);
    let b = spread(&[37], -3.0, 4.0).into_f32s("b").unwrap();
    // Divisors away from 0 (fmod/mod/div).
    let b = Tensor::new(
        &[37],
        b.iter()
            .map(|v| if v.abs() < 0.5 { v + 1.0 } else { *v })
            .collect(),
    )
    .unwrap();
    for (kind, tol) in [
        (BinaryKind::Max, 0.0),
        (BinaryKind::Min, 0.0),
        (BinaryKind::Prelu, 0.0),
        (BinaryKind::Fmod, 1e-6),
        (BinaryKind::Mod, 1e-6),
    ] {
        check(
            &format!("{kind:?} [2,3,37] x [37]"),
            bin(kind),
            &[&a, &b],
            &[false, false],
            tol * 8.0,
            tol,
        );
        check(
            &format!("{kind:?} [37] x [2,3,37]"),
            bin(kind),
            &[&b, &a],
            &[false, false],
            tol * 8.0,
            tol,
        );
    }
    // PRelu with a per-channel slope [C, 1, 1] (ONNX's usual form).
    let x = spread(&[2, 5, 3, 3], -2.0, 2.0);
    let slope = spread(&[5, 1, 1], 0.1, 0.5);
    check(
        "prelu channel slope",
        bin(BinaryKind::Prelu),
        &[&x, &slope],
        &[false, true],
        0.0,
        0.0,
    );
    // Pow: positive bases with fractional exponents (exp2/log2 on the GPU: a few ULP of the
    // result, hence 1e-5 relative), negative bases with integer exponents, squares exact.
    let base = spread(&[5, 41], 0.25, 3.0);
    let ex = spread(&[41], -2.5, 2.5);
    check(
        "pow positive",
        bin(BinaryKind::Pow),
        &[&base, &ex],
        &[false, false],
        1e-6,
        1e-5,
    );
    let nb = spread(&[4, 9], -3.0, 3.0);
    let ie = Tensor::new(&[4, 1], vec![2.0, 3.0, -1.0, 0.0]).unwrap();
    let want = check(
        "pow negative base",
        bin(BinaryKind::Pow),
        &[&nb, &ie],
        &[false, false],
        1e-6,
        1e-5,
    );
    // Odd exponents keep the sign.
    let (w, xs) = (want.f32s("w").unwrap(), nb.f32s("x").unwrap());
    for j in 0..9 {
        assert_eq!(w[j], xs[j] * xs[j]);
        assert!((w[9 + j] - xs[9 + j].powi(3)).abs() <= 1e-5 * xs[9 + j].abs().powi(3));
        assert_eq!(w[27 + j], 1.0);
    }
}

#[test]
fn binary_semantics_and_integers() {
    let t = |v: Vec<f32>| Tensor::new(&[v.len()], v).unwrap();
    let a = t(vec![-7.0, 7.0, -7.0, 7.0, -1.0]);
    let b = t(vec![3.0, -3.0, -3.0, 3.0, 0.5]);
    // ONNX Mod: fmod = 1 takes the dividend's sign, fmod = 0 the divisor's.
    let fmod = bin(BinaryKind::Fmod).cpu(&[&a, &b]).unwrap();
    assert_eq!(fmod.f32s("").unwrap(), &[-1.0, 1.0, -1.0, 1.0, -0.0]);
    let m = bin(BinaryKind::Mod).cpu(&[&a, &b]).unwrap();
    assert_eq!(m.f32s("").unwrap(), &[2.0, -2.0, -1.0, 1.0, 0.0]);
    let nan = t(vec![f32::NAN, 1.0]);
    let one = t(vec![0.0, f32::NAN]);
    let mx = bin(BinaryKind::Max).cpu(&[&nan, &one]).unwrap();
    assert!(mx.f32s("").unwrap().iter().all(|v| v.is_nan()));
    // Integers (shape arithmetic) on the CPU: division truncates, mod is floored.
    let i = |v: Vec<i64>| Tensor::from_data(&[v.len()], TensorData::I64(v)).unwrap();
    let (x, y) = (i(vec![-7, 7, 12]), i(vec![2, -2, 5]));
    let got = |k| match bin(k).cpu(&[&x, &y]).unwrap().data() {
        TensorData::I64(v) => v.clone(),
        d => panic!("{d:?}"),
    };
    assert_eq!(got(BinaryKind::Div), vec![-3, -3, 2]);
    assert_eq!(got(BinaryKind::Mod), vec![1, -1, 2]);
    assert_eq!(got(BinaryKind::Fmod), vec![-1, 1, 2]);
    assert_eq!(got(BinaryKind::Mul), vec![-14, -14, 60]);
    let zero = i(vec![0, 1, 1]);
    let e = bin(BinaryKind::Div).cpu(&[&x, &zero]).unwrap_err();
    assert!(e.to_string().contains("div"), "{e}");
    // Mixed dtypes, an activation on integers and shapes that do not broadcast are errors.
    let f = ValueType::f32(&[3]);
    let l = ValueType::new(DType::I64, &[3]);
    assert!(err_of(&bin(BinaryKind::Add), &[l.clone(), f.clone()]).contains("add"));
    let relu_add = Op::Binary(Binary {
        kind: BinaryKind::Add,
        act: Activation::Relu,
    });
    assert!(err_of(&relu_add, &[l.clone(), l]).contains("activation"));
    let e = err_of(
        &bin(BinaryKind::Pow),
        &[ValueType::f32(&[2, 3]), ValueType::f32(&[4])],
    );
    assert!(e.contains("pow"), "{e}");
}

/// A graph of `op` over typed inputs (all graph inputs), run on the CPU reference session and,
/// with CPU fallback allowed, on the GPU; returns both outputs.
fn typed_model(op: Op, inputs: &[&Tensor]) -> (Model, Vec<(String, Tensor)>) {
    let mut b = GraphBuilder::new();
    let mut names = Vec::new();
    let mut feeds = Vec::new();
    for (i, t) in inputs.iter().enumerate() {
        let n = format!("x{i}");
        names.push(b.input_typed(&n, t.dtype(), t.shape()));
        feeds.push((n, (*t).clone()));
    }
    let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let y = b.node(op, &refs);
    b.output(&y);
    (Model::from_builder(b).unwrap(), feeds)
}

fn bools(shape: &[usize], seed: usize) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::from_data(
        shape,
        TensorData::Bool(
            (0..n)
                .map(|i| (i * 7 + seed).is_multiple_of(3) as u8)
                .collect(),
        ),
    )
    .unwrap()
}

#[test]
fn where_gpu_reads_packed_bool_condition() {
    // Odd sizes, so the condition's last word is partly padding; broadcasting of all three.
    for (c, x, y) in [
        (vec![3, 1, 7], vec![1, 5, 7], vec![7]),
        (vec![13], vec![13], vec![1]),
        (vec![1], vec![2, 3], vec![2, 1]),
        (vec![2, 1, 1, 301], vec![2, 4, 1, 301], vec![1, 4, 3, 1]),
    ] {
        let (ct, xt, yt) = (
            bools(&c, x.len()),
            Tensor::random(&x, 1),
            Tensor::random(&y, 2),
        );
        let op = Op::Where(Where {});
        let want = op.cpu(&[&ct, &xt, &yt]).unwrap();
        let (model, feeds) = typed_model(op, &[&ct, &xt, &yt]);
        assert_eq!(
            cpu_session(&model).run(&feeds_ref(&feeds)).unwrap()[0],
            want
        );
        if let Some(got) = gpu_run(&model, &feeds) {
            assert_close(&format!("where {c:?} {x:?} {y:?}"), &got, &want, 0.0, 0.0);
        }
        // The reference picks x where cond, y elsewhere.
        let (cw, w) = (ct.bytes(), want.f32s("w").unwrap());
        if c == x && y == [1] {
            let (xs, ys) = (xt.f32s("").unwrap(), yt.f32s("").unwrap());
            for k in 0..w.len() {
                assert_eq!(w[k], if cw[k] != 0 { xs[k] } else { ys[0] });
            }
        }
    }
    // A mask computed on the CPU (compare, then not) feeding where on the GPU in one plan.
    let mut b = GraphBuilder::new();
    let ids = b.input_typed("ids", DType::I64, &[1, 9]);
    let s = b.input("scores", &[2, 3, 9]);
    let zero = b.weight(
        "zero",
        Tensor::from_data(&[1], TensorData::I64(vec![0])).unwrap(),
    );
    let pad = b.compare(CompareKind::Equal, &ids, &zero);
    let keep = b.node(
        Op::Logic(Logic {
            kind: LogicKind::Not,
        }),
        &[&pad],
    );
    let neg = b.weight("neg", Tensor::new(&[1], vec![-1e9]).unwrap());
    let y = b.where_(&keep, &s, &neg);
    b.output(&y);
    let model = Model::from_builder(b).unwrap();
    let idv = Tensor::from_data(&[1, 9], TensorData::I64(vec![5, 0, 3, 0, 0, 8, 1, 0, 2])).unwrap();
    let sv = Tensor::random(&[2, 3, 9], 5);
    let feeds = vec![("ids".to_string(), idv.clone()), ("scores".to_string(), sv)];
    let want = cpu_session(&model)
        .run(&feeds_ref(&feeds))
        .unwrap()
        .remove(0);
    let w = want.f32s("w").unwrap();
    for (k, &v) in w.iter().enumerate() {
        let masked = matches!(idv.data(), TensorData::I64(d) if d[k % 9] == 0);
        assert_eq!(masked, v == -1e9, "element {k}");
    }
    if let Some(ctx) = gpu() {
        let mut o = opts_with(TunedChoices::new(), false);
        o.plan.cpu_fallback = true;
        let s = Session::with_context(&model, ctx, o).unwrap();
        let kernels: Vec<_> = s.plan().nodes.iter().map(|n| n.kernel.clone()).collect();
        assert_eq!(
            s.plan().nodes.last().unwrap().op.name(),
            "where",
            "{kernels:?}"
        );
        assert_eq!(kernels.last().unwrap(), "standard", "where on the GPU");
        let got = s.run(&feeds_ref(&feeds)).unwrap().remove(0);
        assert_close("masked scores", &got, &want, 0.0, 0.0);
    }
}

#[test]
fn comparisons_and_logic() {
    let i = |v: Vec<i64>, s: &[usize]| Tensor::from_data(s, TensorData::I64(v)).unwrap();
    let a = i(vec![1, 5, -3, 7, 0, 2], &[2, 3]);
    let b = i(vec![1, 0, 7], &[3]);
    let flags = |t: Tensor| t.bytes().to_vec();
    let run = |k| flags(Op::Compare(Compare { kind: k }).cpu(&[&a, &b]).unwrap());
    assert_eq!(run(CompareKind::Equal), vec![1, 0, 0, 0, 1, 0]);
    assert_eq!(run(CompareKind::Less), vec![0, 0, 1, 0, 0, 1]);
    assert_eq!(run(CompareKind::Greater), vec![0, 1, 0, 1, 0, 0]);
    assert_eq!(run(CompareKind::LessOrEqual), vec![1, 0, 1, 0, 1, 1]);
    assert_eq!(run(CompareKind::GreaterOrEqual), vec![1, 1, 0, 1, 1, 0]);
    // f32 against the same comparisons of the values (broadcast [4,1] x [5]).
    let fa = spread(&[4, 1], -1.0, 1.0);
    let fb = spread(&[5], -1.0, 1.0);
    let lt = Op::Compare(Compare {
        kind: CompareKind::Less,
    })
    .cpu(&[&fa, &fb])
    .unwrap();
    assert_eq!(lt.shape(), &[4, 5]);
    let (av, bv) = (fa.f32s("").unwrap(), fb.f32s("").unwrap());
    for (r, a) in av.iter().enumerate() {
        for (c, b) in bv.iter().enumerate() {
            assert_eq!(lt.bytes()[r * 5 + c] != 0, a < b);
        }
    }
    let p = bools(&[2, 3], 0);
    let q = bools(&[3], 1);
    let logic = |k, ins: &[&Tensor]| flags(Op::Logic(Logic { kind: k }).cpu(ins).unwrap());
    let (pb, qb) = (p.bytes().to_vec(), q.bytes().to_vec());
    let and = logic(LogicKind::And, &[&p, &q]);
    let or = logic(LogicKind::Or, &[&p, &q]);
    let xor = logic(LogicKind::Xor, &[&p, &q]);
    let not = logic(LogicKind::Not, &[&p]);
    for k in 0..6 {
        let (x, y) = (pb[k] != 0, qb[k % 3] != 0);
        assert_eq!(and[k] != 0, x && y);
        assert_eq!(or[k] != 0, x || y);
        assert_eq!(xor[k] != 0, x != y);
        assert_eq!(not[k] != 0, !x);
    }
    // The CPU session runs them (in a GPU plan they are CPU nodes).
    let op = Op::Compare(Compare {
        kind: CompareKind::Greater,
    });
    let (model, feeds) = typed_model(op.clone(), &[&a, &b]);
    assert_eq!(
        cpu_session(&model).run(&feeds_ref(&feeds)).unwrap()[0],
        op.cpu(&[&a, &b]).unwrap()
    );
    // Bad inputs: mixed dtypes, ordering bools, logic on non-bools, where's condition.
    let l = ValueType::new(DType::I64, &[3]);
    let f = ValueType::f32(&[3]);
    let bo = ValueType::new(DType::Bool, &[3]);
    assert!(err_of(&op, &[l.clone(), f.clone()]).contains("greater"));
    assert!(err_of(&op, &[bo.clone(), bo.clone()]).contains("greater"));
    let and_op = Op::Logic(Logic {
        kind: LogicKind::And,
    });
    assert!(err_of(&and_op, &[bo.clone(), f.clone()]).contains("and input 1"));
    let w = Op::Where(Where {});
    assert!(err_of(&w, &[f.clone(), f.clone(), f.clone()]).contains("where input 0"));
    assert!(err_of(&w, &[bo.clone(), f.clone(), l]).contains("where input 2"));
    let e = err_of(&w, &[bo, ValueType::f32(&[2]), f]);
    assert!(e.contains("where"), "{e}");
}

/// The sum bound of the header: `k eps sum|x|` with `k` the GPU's chain for this length.
fn sum_tol(len: usize, l1_max: f32) -> f32 {
    let k = if len > 128 { len / 64 + 6 } else { len };
    (k as f32 + 1.0) * EPS * l1_max + 1e-30
}

fn reduce_op(kind: ReduceKind, axes: &[i64], keepdims: bool) -> Op {
    Op::Reduce(Reduce::new(kind, axes, keepdims))
}

#[test]
fn reductions_gpu_vs_cpu() {
    let cases: Vec<(Vec<usize>, Vec<i64>, bool)> = vec![
        (vec![3, 37], vec![-1], true),
        (vec![2, 5, 3], vec![0, 2], false),
        (vec![2, 5, 3], vec![1], true),
        (vec![4, 3, 2, 5], vec![-3, -1], false),
        (vec![7], vec![], false),
        (vec![1, 1], vec![0], true),
        (vec![2, 300, 3], vec![1], false),
        (vec![1, 100_003], vec![1], true),
        (vec![257, 129], vec![0], true),
    ];
    for (shape, axes, keep) in &cases {
        let x = spread(shape, -1.0, 1.0);
        let len: usize = {
            let out = reduce_op(ReduceKind::Sum, axes, *keep)
                .infer_shape(std::slice::from_ref(shape))
                .unwrap();
            shape.iter().product::<usize>() / out.iter().product::<usize>().max(1)
        };
        let l1 = reduce_op(ReduceKind::L1, axes, *keep).cpu(&[&x]).unwrap();
        let l1_max = l1.f32s("").unwrap().iter().cloned().fold(0.0, f32::max);
        let sq = reduce_op(ReduceKind::SumSquare, axes, *keep)
            .cpu(&[&x])
            .unwrap();
        let sq_max = sq.f32s("").unwrap().iter().cloned().fold(0.0, f32::max);
        let st = sum_tol(len, l1_max);
        for (kind, atol, rtol) in [
            (ReduceKind::Sum, st, 0.0),
            (ReduceKind::Mean, st / len as f32 + 1e-7, 1e-6),
            (ReduceKind::Max, 0.0, 0.0),
            (ReduceKind::Min, 0.0, 0.0),
            (ReduceKind::L1, st, 0.0),
            (ReduceKind::SumSquare, sum_tol(len, sq_max), 0.0),
            // sqrt halves the relative error of the sum of squares.
            (ReduceKind::L2, 1e-7, sum_tol(len, 1.0)),
            // m + log(s): s has the sum's relative error (its terms are in (0, 1]), log turns
            // it absolute; exp adds a few ULP per term.
            (ReduceKind::LogSumExp, sum_tol(len, 1.0) * 4.0 + 1e-6, 1e-6),
        ] {
            check(
                &format!("{kind:?} {shape:?} axes {axes:?} keepdims {keep}"),
                reduce_op(kind, axes, *keep),
                &[&x],
                &[false],
                atol,
                rtol,
            );
        }
    }
    // Products over short runs of values near 1 (the error grows with each factor).
    let x = spread(&[6, 11], 0.8, 1.25);
    for axes in [vec![1i64], vec![0], vec![]] {
        check(
            &format!("prod axes {axes:?}"),
            reduce_op(ReduceKind::Prod, &axes, false),
            &[&x],
            &[false],
            0.0,
            70.0 * EPS,
        );
    }
    // Mean of a constant is the constant; max of -inf rows; log-sum-exp of -inf is -inf.
    let c = Tensor::new(&[3, 4], vec![0.3; 12]).unwrap();
    let m = reduce_op(ReduceKind::Mean, &[1], false).cpu(&[&c]).unwrap();
    assert!(m.f32s("").unwrap().iter().all(|&v| (v - 0.3).abs() < 1e-7));
    let ni = Tensor::new(&[2, 3], vec![f32::NEG_INFINITY; 6]).unwrap();
    check(
        "logsumexp -inf",
        reduce_op(ReduceKind::LogSumExp, &[1], false),
        &[&ni],
        &[false],
        0.0,
        0.0,
    );
}

#[test]
fn reduction_axes_rules() {
    let x = spread(&[2, 3, 4], -1.0, 1.0);
    let s = |op: &Op| op.infer_shape(&[vec![2, 3, 4]]).unwrap();
    assert_eq!(s(&reduce_op(ReduceKind::Sum, &[1], true)), vec![2, 1, 4]);
    assert_eq!(s(&reduce_op(ReduceKind::Sum, &[-1, 0], false)), vec![3]);
    assert_eq!(s(&reduce_op(ReduceKind::Sum, &[], true)), vec![1, 1, 1]);
    assert_eq!(
        s(&reduce_op(ReduceKind::Sum, &[], false)),
        Vec::<usize>::new()
    );
    // noop_with_empty_axes: the identity.
    let noop = Op::Reduce(Reduce {
        noop_with_empty_axes: true,
        ..Reduce::new(ReduceKind::Sum, &[], true)
    });
    assert_eq!(noop.cpu(&[&x]).unwrap(), x);
    check("noop", noop, &[&x], &[false], 0.0, 0.0);
    // Axes as input 1: a weight is absorbed at build (the GPU kernel runs)...
    let axes = Tensor::from_data(&[2], TensorData::I64(vec![0, -1])).unwrap();
    let via_input = check(
        "axes input",
        reduce_op(ReduceKind::Max, &[], false),
        &[&x, &axes],
        &[false, true],
        0.0,
        0.0,
    );
    assert_eq!(
        via_input,
        reduce_op(ReduceKind::Max, &[0, 2], false)
            .cpu(&[&x])
            .unwrap()
    );
    // ...a graph input is not known at plan time: an error naming it.
    let e = build_err(reduce_op(ReduceKind::Sum, &[], true), &[&x, &axes]);
    assert!(
        e.contains("reduce_sum") && e.contains("axes (input 1)"),
        "{e}"
    );
    // Bad axes, repeated axes, a non-f32 input.
    let f = ValueType::f32(&[2, 3, 4]);
    let e = err_of(
        &reduce_op(ReduceKind::Mean, &[3], true),
        std::slice::from_ref(&f),
    );
    assert!(e.contains("reduce_mean"), "{e}");
    let e = err_of(&reduce_op(ReduceKind::Mean, &[1, -2], true), &[f]);
    assert!(e.contains("twice"), "{e}");
    let e = err_of(
        &reduce_op(ReduceKind::Max, &[0], true),
        &[ValueType::new(DType::I64, &[3])],
    );
    assert!(e.contains("reduce_max"), "{e}");
}

#[test]
fn argmax_argmin() {
    let x = Tensor::new(&[2, 4], vec![1.0, 3.0, 3.0, -2.0, 0.5, -4.0, 0.5, -4.0]).unwrap();
    let idx = |max, axis, keepdims, last| {
        let t = Op::ArgReduce(ArgReduce {
            max,
            axis,
            keepdims,
            select_last_index: last,
        })
        .cpu(&[&x])
        .unwrap();
        (t.shape().to_vec(), t.data().clone())
    };
    assert_eq!(
        idx(true, -1, true, false),
        (vec![2, 1], TensorData::I64(vec![1, 0]))
    );
    assert_eq!(
        idx(true, 1, false, true),
        (vec![2], TensorData::I64(vec![2, 2]))
    );
    assert_eq!(
        idx(false, 1, false, false),
        (vec![2], TensorData::I64(vec![3, 1]))
    );
    assert_eq!(
        idx(false, 1, false, true),
        (vec![2], TensorData::I64(vec![3, 3]))
    );
    assert_eq!(
        idx(true, 0, true, false),
        (vec![1, 4], TensorData::I64(vec![0, 0, 0, 0]))
    );
    let op = Op::ArgReduce(ArgReduce {
        max: true,
        axis: 2,
        keepdims: true,
        select_last_index: false,
    });
    assert!(err_of(&op, &[ValueType::f32(&[2, 4])]).contains("argmax"));
}

#[test]
fn softmax_family_and_norms() {
    for (shape, axis) in [
        (vec![3, 37], -1i64),
        (vec![2, 5, 3], 1),
        (vec![1, 1000], -1),
        (vec![1, 1], 0),
        (vec![130, 3], -2),
    ] {
        let x = spread(&shape, -6.0, 6.0);
        // log-softmax: x - m - log(s), the log of a sum of up to 1000 terms in (0, 1].
        check(
            &format!("log_softmax {shape:?} axis {axis}"),
            Op::LogSoftmax(LogSoftmax { axis }),
            &[&x],
            &[false],
            2e-5,
            1e-5,
        );
        for p in [1, 2] {
            check(
                &format!("lp_norm p{p} {shape:?} axis {axis}"),
                Op::LpNorm(LpNorm { axis, p }),
                &[&x],
                &[false],
                1e-6,
                1e-5,
            );
        }
    }
    let z = Tensor::new(&[2, 3], vec![0.0, 0.0, 0.0, 1.0, -2.0, 2.0]).unwrap();
    let lp = check(
        "lp_norm zero row",
        Op::LpNorm(LpNorm { axis: 1, p: 2 }),
        &[&z],
        &[false],
        1e-6,
        1e-6,
    );
    assert_eq!(&lp.f32s("").unwrap()[..3], &[0.0; 3]);
    // Layer norm without a bias, over the last two axes.
    let x = spread(&[3, 5, 7], -2.0, 3.0);
    let g = spread(&[5, 7], 0.5, 1.5);
    check(
        "layer_norm no bias",
        Op::LayerNorm(LayerNorm {
            axis: -2,
            eps: 1e-5,
        }),
        &[&x, &g],
        &[false, true],
        2e-5,
        1e-4,
    );
    check(
        "rms_norm",
        Op::RmsNorm(RmsNorm { axis: 1, eps: 1e-6 }),
        &[&x, &g],
        &[false, true],
        2e-5,
        1e-4,
    );
    let g1 = spread(&[7], 0.5, 1.5);
    check(
        "rms_norm last, 1-D scale",
        Op::RmsNorm(RmsNorm {
            axis: -1,
            eps: 1e-6,
        }),
        &[&x, &g1],
        &[false, true],
        2e-5,
        1e-4,
    );
    // Group / instance norm: 1 group, groups of 2 channels, one channel per group; a long
    // row (3 x 2000 elements) and a 1x1 image.
    for (shape, groups) in [
        (vec![2, 6, 5, 3], 3usize),
        (vec![1, 6, 7], 1),
        (vec![3, 4, 1, 1], 4),
        (vec![1, 3, 2000], 1),
    ] {
        let x = spread(&shape, -3.0, 2.0);
        let c = shape[1];
        let sc = spread(&[c], 0.5, 2.0);
        let bi = spread(&[c], -1.0, 1.0);
        check(
            &format!("group_norm {shape:?} groups {groups}"),
            Op::GroupNorm(GroupNorm {
                num_groups: groups,
                eps: 1e-5,
            }),
            &[&x, &sc, &bi],
            &[false, true, true],
            2e-5,
            1e-4,
        );
        let inst = check(
            &format!("instance_norm {shape:?}"),
            Op::InstanceNorm(InstanceNorm { eps: 1e-5 }),
            &[&x, &sc, &bi],
            &[false, true, true],
            2e-5,
            1e-4,
        );
        let as_groups = Op::GroupNorm(GroupNorm {
            num_groups: c,
            eps: 1e-5,
        })
        .cpu(&[&x, &sc, &bi])
        .unwrap();
        assert_eq!(inst, as_groups);
    }
    // Bad attributes and shapes.
    let f = |s: &[usize]| ValueType::f32(s);
    let gn = |g| {
        Op::GroupNorm(GroupNorm {
            num_groups: g,
            eps: 1e-5,
        })
    };
    assert!(err_of(&gn(4), &[f(&[1, 6, 3]), f(&[6]), f(&[6])]).contains("group_norm"));
    assert!(err_of(&gn(0), &[f(&[1, 6, 3]), f(&[6]), f(&[6])]).contains("group_norm"));
    assert!(err_of(&gn(3), &[f(&[1, 6, 3]), f(&[3]), f(&[6])]).contains("group_norm scale"));
    let e = err_of(
        &Op::InstanceNorm(InstanceNorm { eps: 1e-5 }),
        &[f(&[6]), f(&[6]), f(&[6])],
    );
    assert!(e.contains("instance_norm"), "{e}");
    assert!(err_of(&Op::LpNorm(LpNorm { axis: 0, p: 3 }), &[f(&[4])]).contains("p must be"));
    assert!(err_of(&Op::LogSoftmax(LogSoftmax { axis: 2 }), &[f(&[4, 2])]).contains("log_softmax"));
    let e = err_of(
        &Op::RmsNorm(RmsNorm {
            axis: -1,
            eps: 1e-5,
        }),
        &[f(&[4, 3]), f(&[4])],
    );
    assert!(e.contains("rms_norm scale"), "{e}");
}
