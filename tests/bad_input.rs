//! Bad input gets an error that names what is wrong — never a panic or a wrong answer.

mod common;
use common::*;
use wgedge::graph::{Graph, GraphBuilder, Node, ValueSpec};
use wgedge::ops::*;
use wgedge::profile::DeviceProfile;
use wgedge::sched::{Plan, PlanOptions};
use wgedge::tensor::TensorData;
use wgedge::{DType, Error, Model, Session, SessionOptions, Tensor};

fn tiny() -> Model {
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[2, 4]);
    let w = b.weight("w", Tensor::random(&[3, 4], 1));
    let y = b.linear(&x, &w, None, Activation::Relu);
    b.output(&y);
    Model::from_builder(b).unwrap()
}

fn sessions(m: &Model) -> Vec<Session> {
    let mut v = vec![Session::cpu(m, SessionOptions::default()).unwrap()];
    if let Some(ctx) = gpu() {
        v.push(
            Session::with_context(
                m,
                ctx,
                SessionOptions {
                    autotune: false,
                    ..Default::default()
                },
            )
            .unwrap(),
        );
    }
    v
}

#[test]
fn run_inputs_are_checked() {
    let m = tiny();
    let good = Tensor::random(&[2, 4], 2);
    for s in sessions(&m) {
        let e = s.run(&[]).unwrap_err();
        assert!(
            matches!(&e, Error::Input(m) if m.contains("missing input 'x'")),
            "{e}"
        );
        let e = s.run(&[("x", &good), ("y", &good)]).unwrap_err();
        assert!(
            matches!(&e, Error::Input(m) if m.contains("unknown input 'y'")),
            "{e}"
        );
        let e = s.run(&[("x", &good), ("x", &good)]).unwrap_err();
        assert!(
            matches!(&e, Error::Input(m) if m.contains("more than once")),
            "{e}"
        );
        let wrong = Tensor::random(&[4, 2], 3);
        let e = s.run(&[("x", &wrong)]).unwrap_err();
        assert!(
            matches!(&e, Error::ShapeMismatch { got, .. } if got == "[4, 2]"),
            "{e}"
        );
        let ints = Tensor::from_data(&[2, 4], TensorData::I32(vec![1; 8])).unwrap();
        let e = s.run(&[("x", &ints)]).unwrap_err();
        assert!(
            matches!(&e, Error::DTypeMismatch { got, .. } if got == "i32"),
            "{e}"
        );
        // And the session still works afterwards.
        assert_eq!(s.run(&[("x", &good)]).unwrap()[0].shape(), &[2, 3]);
    }
}

fn graph_err(g: Graph, w: Vec<(&str, Tensor)>) -> Error {
    Model::new(g, w.into_iter().map(|(k, v)| (k.to_string(), v)).collect()).unwrap_err()
}

fn spec(name: &str, shape: &[usize]) -> ValueSpec {
    ValueSpec {
        name: name.into(),
        dtype: DType::F32,
        shape: shape.to_vec(),
    }
}

fn node(name: &str, op: Op, inputs: &[&str], output: &str) -> Node {
    Node {
        name: name.into(),
        op,
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        output: output.into(),
    }
}

fn relu() -> Op {
    Op::Unary(Unary {
        act: Activation::Relu,
    })
}

#[test]
fn graph_errors_name_the_problem() {
    let base = || Graph {
        inputs: vec![spec("x", &[2, 4])],
        weights: vec![],
        nodes: vec![],
        outputs: vec!["y".into()],
        ..Default::default()
    };

    let mut g = base();
    g.nodes.push(node("n1", relu(), &["nope"], "y"));
    let e = graph_err(g, vec![]);
    assert!(
        e.to_string()
            .contains("node 'n1' reads unknown value 'nope'"),
        "{e}"
    );

    let mut g = base();
    g.nodes.push(node("a", relu(), &["b_out"], "a_out"));
    g.nodes.push(node("b", relu(), &["a_out"], "b_out"));
    g.nodes.push(node("c", relu(), &["x"], "y"));
    let e = graph_err(g, vec![]);
    assert!(e.to_string().contains("cycle through nodes a, b"), "{e}");

    let mut g = base();
    g.nodes.push(node("a", relu(), &["x"], "x"));
    let e = graph_err(g, vec![]);
    assert!(
        e.to_string().contains("'x' is defined more than once"),
        "{e}"
    );

    let mut g = base();
    g.weights.push(spec("w", &[3, 4]));
    g.nodes.push(node(
        "fc",
        Op::MatMul(MatMul {
            trans_b: true,
            ..Default::default()
        }),
        &["x", "w"],
        "y",
    ));
    let e = graph_err(g.clone(), vec![]);
    assert!(matches!(&e, Error::MissingWeight(w) if w == "w"), "{e}");
    let e = graph_err(g.clone(), vec![("w", Tensor::random(&[3, 5], 1))]);
    assert!(
        matches!(&e, Error::ShapeMismatch { op, .. } if op.contains("weight 'w'")),
        "{e}"
    );
    let e = graph_err(
        g.clone(),
        vec![(
            "w",
            Tensor::from_data(&[3, 4], TensorData::I8(vec![0; 12])).unwrap(),
        )],
    );
    assert!(matches!(&e, Error::DTypeMismatch { .. }), "{e}");
    let e = graph_err(
        g.clone(),
        vec![
            ("w", Tensor::random(&[3, 4], 1)),
            ("extra", Tensor::random(&[1], 1)),
        ],
    );
    assert!(e.to_string().contains("'extra' is not declared"), "{e}");

    // Shape mismatch inside an op names the node.
    let mut g2 = g.clone();
    g2.weights[0].shape = vec![3, 5];
    let e = graph_err(g2, vec![("w", Tensor::random(&[3, 5], 1))]);
    assert!(
        matches!(&e, Error::ShapeMismatch { op, .. } if op.contains("node 'fc'")),
        "{e}"
    );

    let mut g = base();
    g.outputs = vec![];
    assert!(graph_err(g, vec![]).to_string().contains("no outputs"));
    let mut g = base();
    g.outputs = vec!["ghost".into()];
    assert!(graph_err(g, vec![]).to_string().contains("output 'ghost'"));
}

#[test]
fn op_attribute_errors() {
    let x = vec![1, 4, 8, 8];
    let bad = [
        (
            Op::Conv2d(Conv2d {
                groups: 3,
                ..Default::default()
            }),
            vec![x.clone(), vec![6, 1, 3, 3]],
        ),
        (
            Op::Conv2d(Conv2d::default()),
            vec![x.clone(), vec![6, 3, 3, 3]],
        ),
        (
            Op::Conv2d(Conv2d::default()),
            vec![x.clone(), vec![6, 4, 9, 9]],
        ),
        (
            Op::Conv2d(Conv2d {
                stride: [0, 1],
                ..Default::default()
            }),
            vec![x.clone(), vec![6, 4, 3, 3]],
        ),
        (
            Op::Pool2d(Pool2d {
                kind: PoolKind::Max,
                kernel: [2, 2],
                stride: [1, 1],
                pad: [2, 0, 0, 0],
                count_include_pad: false,
            }),
            vec![x.clone()],
        ),
        (
            Op::Transpose(Transpose {
                perm: vec![0, 0, 1, 2],
            }),
            vec![x.clone()],
        ),
        (
            Op::Reshape(Reshape {
                shape: vec![-1, -1],
            }),
            vec![x.clone()],
        ),
        (Op::Reshape(Reshape { shape: vec![7, -1] }), vec![x.clone()]),
        (
            Op::Concat(Concat { axis: 1 }),
            vec![x.clone(), vec![1, 4, 8, 9]],
        ),
        (Op::Softmax(Softmax { axis: 4 }), vec![x.clone()]),
        (
            Op::Binary(Binary {
                kind: BinaryKind::Add,
                act: Activation::None,
            }),
            vec![x.clone(), vec![3, 1]],
        ),
        (Op::MatMul(MatMul::default()), vec![vec![2, 3], vec![4, 5]]),
        // A 1-D A is a vector (ONNX MatMul): [4] x [4, 5] is valid, a K mismatch is not.
        (Op::MatMul(MatMul::default()), vec![vec![3], vec![4, 5]]),
        (
            Op::LayerNorm(LayerNorm {
                axis: -1,
                eps: 1e-5,
            }),
            vec![x.clone(), vec![4], vec![8]],
        ),
    ];
    for (op, shapes) in bad {
        match op.infer_shape(&shapes) {
            Err(Error::ShapeMismatch { .. } | Error::Graph(_)) => {}
            other => panic!("{op:?} on {shapes:?}: expected a shape/graph error, got {other:?}"),
        }
    }
    // Wrong number of inputs.
    assert!(Op::Unary(Unary {
        act: Activation::Relu
    })
    .infer_shape(&[vec![1], vec![1]])
    .is_err());
    assert!(Tensor::new(&[2, 3], vec![0.0; 5]).is_err());
}

#[test]
fn device_limits_are_checked_before_allocation() {
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[1, 40_000_000]);
    let y = b.act(&x, Activation::Relu);
    b.output(&y);
    let m = Model::from_builder(b).unwrap();
    let small = DeviceProfile::portable(); // 128 MiB bindings
    let e = Plan::new(&m.graph, &m.weights, Some(&small), PlanOptions::default()).unwrap_err();
    assert!(
        matches!(&e, Error::DeviceLimit { what, needed: 160_000_000, .. } if what.contains("'x'")),
        "{e}"
    );
    if let Some(ctx) = gpu() {
        let e = Session::with_context(
            &m,
            ctx,
            SessionOptions {
                autotune: false,
                ..Default::default()
            },
        )
        .err()
        .expect("limit error");
        assert!(matches!(e, Error::DeviceLimit { .. }), "{e}");
    }
    // Workgroup-count limit: a conv whose output channels exceed the per-dimension maximum.
    let mut p = DeviceProfile::portable();
    p.limits.max_compute_workgroups_per_dimension = 4;
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[1, 16, 4, 4]);
    let w = b.weight("w", Tensor::random(&[16, 1, 3, 3], 1));
    let y = b.conv2d(
        &x,
        &w,
        None,
        Conv2d {
            groups: 16,
            pad: [1; 4],
            ..Default::default()
        },
    );
    b.output(&y);
    let m = Model::from_builder(b).unwrap();
    let e = Plan::new(&m.graph, &m.weights, Some(&p), PlanOptions::default()).unwrap_err();
    assert!(
        matches!(&e, Error::DeviceLimit { what, .. } if what.contains("workgroups")),
        "{e}"
    );
}

#[test]
fn unknown_backend_name() {
    let e = "quantum".parse::<wgedge::Backend>().unwrap_err();
    assert!(e.to_string().contains("unknown backend 'quantum'"));
}

#[test]
fn absurd_shapes_are_refused_not_overflowed() {
    let g = Graph {
        inputs: vec![spec("x", &[1 << 40, 1 << 40])],
        weights: vec![],
        nodes: vec![node("r", relu(), &["x"], "y")],
        outputs: vec!["y".into()],
        ..Default::default()
    };
    let e = graph_err(g, vec![]);
    assert!(e.to_string().contains("more than 2^32 elements"), "{e}");
    // A node whose output would overflow (concat of huge inputs along an axis).
    let big = 1usize << 31;
    let g = Graph {
        inputs: vec![spec("a", &[big, 1]), spec("b", &[big, 1])],
        weights: vec![],
        nodes: vec![node("c", Op::Concat(Concat { axis: 0 }), &["a", "b"], "y")],
        outputs: vec!["y".into()],
        ..Default::default()
    };
    let e = graph_err(g, vec![]);
    assert!(e.to_string().contains("more than 2^32 elements"), "{e}");
}

/// Attribute values beyond 32 bits used to be truncated into the kernels' parameter words
/// while shapes were inferred in `usize`, so the CPU reference and the GPU agreed on a wrong
/// answer: they are refused at check time, with the op, the attribute and the value.
#[test]
fn attributes_beyond_32_bits_are_refused() {
    let big = u32::MAX as usize + 1;
    let x = vec![1, 1, 4, 4];
    let pool = |kernel, stride, pad| {
        Op::Pool2d(Pool2d {
            kind: PoolKind::Avg,
            kernel,
            stride,
            pad,
            count_include_pad: true,
        })
    };
    let cases: Vec<(Op, Vec<Vec<usize>>, &str)> = vec![
        // Inferred as [1, 1, 2, 4] before; the kernels read stride 0 and pad 0.
        (
            Op::Conv2d(Conv2d {
                stride: [big, 1],
                pad: [big, 0, 0, 0],
                ..Default::default()
            }),
            vec![x.clone(), vec![1, 1, 1, 1]],
            "conv2d: attribute stride[0] = 4294967296",
        ),
        (
            Op::Conv2d(Conv2d {
                dilation: [1, big],
                ..Default::default()
            }),
            vec![x.clone(), vec![1, 1, 1, 1]],
            "conv2d: attribute dilation[1] = 4294967296",
        ),
        (
            Op::Conv2d(Conv2d {
                pad: [0, 0, 0, big + 7],
                ..Default::default()
            }),
            vec![x.clone(), vec![1, 1, 1, 1]],
            "conv2d: attribute pad[3] = 4294967303",
        ),
        // Fits 32 bits, but the padded extent does not fit the kernels' i32 indexing.
        (
            Op::Conv2d(Conv2d {
                pad: [i32::MAX as usize, 0, 0, 0],
                ..Default::default()
            }),
            vec![x.clone(), vec![1, 1, 1, 1]],
            "conv2d: padded input height 2147483651",
        ),
        (
            pool([1, 1], [big, 1], [0; 4]),
            vec![x.clone()],
            "avgpool2d: attribute stride[0] = 4294967296",
        ),
        (
            pool([big, 1], [1, 1], [0, 0, big - 1, 0]),
            vec![x.clone()],
            "avgpool2d: attribute kernel[0] = 4294967296",
        ),
        // 2^32 taps: the divisor of average pooling is a 32-bit product.
        (
            pool([65536, 65536], [65536, 65536], [65535; 4]),
            vec![x.clone()],
            "avgpool2d: window 65536x65536",
        ),
        (
            Op::Reshape(Reshape {
                shape: vec![big as i64, -1],
            }),
            vec![x.clone()],
            "reshape: attribute shape[0] = 4294967296",
        ),
    ];
    for (op, shapes, want) in cases {
        match op.infer_shape(&shapes) {
            Err(e) => assert!(e.to_string().contains(want), "{op:?}: {e} lacks '{want}'"),
            Ok(s) => panic!("{op:?} on {shapes:?}: inferred {s:?}, expected an error"),
        }
    }
    // Through a model file the error names the node too.
    let g = Graph {
        inputs: vec![spec("x", &x)],
        weights: vec![spec("w", &[1, 1, 1, 1])],
        nodes: vec![node(
            "c",
            Op::Conv2d(Conv2d {
                stride: [big, 1],
                pad: [big, 0, 0, 0],
                ..Default::default()
            }),
            &["x", "w"],
            "y",
        )],
        outputs: vec!["y".into()],
        ..Default::default()
    };
    let e = graph_err(g, vec![("w", Tensor::random(&[1, 1, 1, 1], 1))]);
    let msg = e.to_string();
    assert!(
        msg.contains("node 'c'") && msg.contains("stride[0]"),
        "{msg}"
    );
}

/// Shape arithmetic never overflows: sums along a concat axis, shapes whose dims are beyond
/// 32 bits but hold no elements, empty pooling planes.
#[test]
fn shape_arithmetic_is_checked() {
    let concat = Op::Concat(Concat { axis: 0 });
    let e = concat
        .infer_shape(&[vec![usize::MAX, 0], vec![1, 0]])
        .unwrap_err();
    assert!(e.to_string().contains("concat"), "{e}");
    // [2^40, 0] has no elements, but its first dim would be truncated into kernel words.
    let g = Graph {
        inputs: vec![spec("x", &[2, 2])],
        weights: vec![spec("w", &[1 << 40, 0])],
        nodes: vec![node("s", Op::Shape(Shape {}), &["w"], "y")],
        outputs: vec!["y".into()],
        ..Default::default()
    };
    let w = Tensor::from_data(&[1 << 40, 0], TensorData::F32(vec![])).unwrap();
    let e = graph_err(g, vec![("w", w)]);
    assert!(e.to_string().contains("beyond 2^32 - 1"), "{e}");
    // An empty plane has no mean (the CPU reference used to panic on it).
    let e = Op::GlobalAvgPool(GlobalAvgPool {})
        .infer_shape(&[vec![1, 2, 0, 3]])
        .unwrap_err();
    assert!(e.to_string().contains("non-empty planes"), "{e}");
    // Non-finite float attributes cannot be stored in a model file: refused at check.
    let e = Op::LayerNorm(LayerNorm {
        axis: -1,
        eps: f32::NAN,
    })
    .infer_shape(&[vec![2, 4], vec![4], vec![4]])
    .unwrap_err();
    assert!(e.to_string().contains("eps = NaN"), "{e}");
    let e = Op::Unary(Unary {
        act: Activation::LeakyRelu {
            alpha: f32::INFINITY,
        },
    })
    .infer_shape(&[vec![2]])
    .unwrap_err();
    assert!(e.to_string().contains("act.alpha = inf"), "{e}");
}

/// A pooling window far larger than the input costs what the input does on the CPU: only the
/// taps inside the input are visited (it used to walk all 9e8 taps of every output).
#[test]
fn huge_pool_windows_run_fast() {
    let x = Tensor::random(&[1, 1, 2, 2], 3);
    let op = Op::Pool2d(Pool2d {
        kind: PoolKind::Max,
        kernel: [30_000, 30_000],
        stride: [30_000, 30_000],
        pad: [29_999; 4],
        count_include_pad: false,
    });
    let t = std::time::Instant::now();
    // Output (i, j) covers exactly input (i, j).
    assert_eq!(op.cpu(&[&x]).unwrap(), x);
    let avg = Op::Pool2d(Pool2d {
        kind: PoolKind::Avg,
        count_include_pad: true,
        ..match op {
            Op::Pool2d(p) => p,
            _ => unreachable!(),
        }
    });
    let y = avg.cpu(&[&x]).unwrap();
    let (xs, ys) = (x.f32s("x").unwrap(), y.f32s("y").unwrap());
    for (a, b) in xs.iter().zip(ys) {
        assert_eq!(*b, a / 9e8);
    }
    assert!(t.elapsed().as_secs_f64() < 5.0, "took {:?}", t.elapsed());
}
