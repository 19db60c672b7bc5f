//! ONNX import: errors (all problems in one), initializer dtypes, shape folding, symbolic dims,
//! names kept, the import-time rewrites (each compared with the unrewritten graph on the CPU
//! reference) and the `wgedge import` command. Models are built here with the prost types.

use prost::Message;
use std::collections::BTreeMap;
use wgedge::onnx::proto::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto,
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};
use wgedge::onnx::{import, ImportOptions};
use wgedge::ops::Op;
use wgedge::{Backend, Error, Model, Session, SessionOptions, Tensor};

fn tf32(name: &str, dims: &[i64], v: &[f32]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(DataType::Float as i32),
        float_data: v.to_vec(),
        ..Default::default()
    }
}

fn ti64(name: &str, dims: &[i64], v: &[i64]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(DataType::Int64 as i32),
        int64_data: v.to_vec(),
        ..Default::default()
    }
}

enum D {
    V(i64),
    P(&'static str),
}

fn vi(name: &str, elem: DataType, dims: &[D]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: Some(match d {
                D::V(v) => tensor_shape_proto::dimension::Value::DimValue(*v),
                D::P(p) => tensor_shape_proto::dimension::Value::DimParam(p.to_string()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem as i32),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn f32_in(name: &str, dims: &[i64]) -> ValueInfoProto {
    vi(
        name,
        DataType::Float,
        &dims.iter().map(|&d| D::V(d)).collect::<Vec<_>>(),
    )
}

fn out(name: &str) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        ..Default::default()
    }
}

fn node(op: &str, ins: &[&str], outs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        name: Some(format!("{op}:{}", outs[0])),
        op_type: Some(op.into()),
        input: ins.iter().map(|s| s.to_string()).collect(),
        output: outs.iter().map(|s| s.to_string()).collect(),
        attribute: attrs,
        ..Default::default()
    }
}

fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        ints: v.to_vec(),
        r#type: Some(AttributeType::Ints as i32),
        ..Default::default()
    }
}

fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        i: Some(v),
        r#type: Some(AttributeType::Int as i32),
        ..Default::default()
    }
}

fn float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        f: Some(v),
        r#type: Some(AttributeType::Float as i32),
        ..Default::default()
    }
}

fn string(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        s: Some(v.as_bytes().to_vec()),
        r#type: Some(AttributeType::String as i32),
        ..Default::default()
    }
}

fn model(
    opset: i64,
    nodes: Vec<NodeProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: &[&str],
    inits: Vec<TensorProto>,
) -> Vec<u8> {
    ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(opset),
        }],
        graph: Some(GraphProto {
            name: Some("g".into()),
            node: nodes,
            input: inputs,
            output: outputs.iter().map(|o| out(o)).collect(),
            initializer: inits,
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

fn cpu(model: &Model, feeds: &[(&str, &Tensor)]) -> Vec<Tensor> {
    let opts = SessionOptions {
        autotune: false,
        cpu_reference: true,
        ..Default::default()
    };
    Session::with_options(model, Backend::Cpu, opts)
        .unwrap()
        .run(feeds)
        .unwrap()
}

fn no_rewrite() -> ImportOptions {
    ImportOptions {
        rewrite: false,
        ..Default::default()
    }
}

/// Max |a - b| relative to max |b|.
fn rel_err(a: &Tensor, b: &Tensor) -> f32 {
    let (a, b) = (a.f32s("a").unwrap(), b.f32s("b").unwrap());
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

#[test]
fn every_unsupported_node_is_named_in_one_error() {
    let w = tf32("w", &[4, 3, 1, 1], &[0.5; 12]);
    let bad_init = TensorProto {
        name: Some("d".into()),
        dims: vec![1],
        data_type: Some(DataType::Double as i32),
        double_data: vec![1.0],
        ..Default::default()
    };
    let m = model(
        13,
        vec![
            node(
                "Conv",
                &["x", "w"],
                &["c"],
                vec![string("auto_pad", "SIDEWAYS")],
            ),
            node("NonMaxSuppression", &["x", "x"], &["n"], vec![]),
            node("Relu", &["x"], &["r"], vec![]),
            node("Add", &["r", "d"], &["a"], vec![]),
            // Reads a value of a failed node: blocked, counted, not reported again.
            node("Relu", &["n"], &["nn"], vec![]),
        ],
        vec![f32_in("x", &[1, 3, 4, 4])],
        &["c", "a", "nn"],
        vec![w, bad_init],
    );
    let e = import(&m, &ImportOptions::default()).unwrap_err();
    let Error::Unsupported { what, .. } = &e else {
        panic!("{e}")
    };
    assert!(what.starts_with("3 problem(s)"), "{what}");
    assert!(what.contains("tensor 'd' has dtype double"), "{what}");
    assert!(
        what.contains("node 'Conv:c' (Conv, opset 13): auto_pad = 'SIDEWAYS'"),
        "{what}"
    );
    assert!(
        what.contains("node 'NonMaxSuppression:n' (NonMaxSuppression, opset 13): op type NonMaxSuppression is not supported"),
        "{what}"
    );
    assert!(what.contains("2 more node(s)"), "{what}");
}

#[test]
fn corrupt_and_truncated_files_are_errors() {
    let m = model(
        13,
        vec![node("Relu", &["x"], &["y"], vec![])],
        vec![f32_in("x", &[2])],
        &["y"],
        vec![],
    );
    assert!(Model::from_onnx(&m).is_ok());
    for bad in [
        &m[..m.len() / 2],
        &b"not a model at all"[..],
        &[0xff; 64][..],
    ] {
        match Model::from_onnx(bad) {
            Err(Error::ModelFile(_)) | Err(Error::Unsupported { .. }) | Err(Error::Graph(_)) => {}
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn initializers_of_every_dtype_and_layout() {
    // f16 in int32_data (bit patterns), i8/u8/bool in int32_data, f32 in raw_data.
    let h: Vec<i32> = [1.5f32, -2.0]
        .iter()
        .map(|&v| half::f16::from_f32(v).to_bits() as i32)
        .collect();
    let inits = vec![
        TensorProto {
            name: Some("h".into()),
            dims: vec![2],
            data_type: Some(DataType::Float16 as i32),
            int32_data: h,
            ..Default::default()
        },
        TensorProto {
            name: Some("raw".into()),
            dims: vec![2],
            data_type: Some(DataType::Float as i32),
            raw_data: Some(
                [0.25f32, 4.0]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
            ),
            ..Default::default()
        },
        TensorProto {
            name: Some("q".into()),
            dims: vec![2],
            data_type: Some(DataType::Int8 as i32),
            int32_data: vec![-3, 5],
            ..Default::default()
        },
    ];
    // y = x * f32(h) + raw; z = DequantizeLinear(q, 0.5) (folded at import).
    let half_scale = tf32("s", &[], &[0.5]);
    let mut all = inits;
    all.push(half_scale);
    let m = model(
        13,
        vec![
            node("Cast", &["h"], &["hf"], vec![int("to", 1)]),
            node("Mul", &["x", "hf"], &["m"], vec![]),
            node("Add", &["m", "raw"], &["y"], vec![]),
            node("DequantizeLinear", &["q", "s"], &["dq"], vec![]),
            node("Add", &["x", "dq"], &["z"], vec![]),
        ],
        vec![f32_in("x", &[2])],
        &["y", "z"],
        all,
    );
    let imported = Model::from_onnx(&m).unwrap();
    let x = Tensor::new(&[2], vec![2.0, 3.0]).unwrap();
    let out = cpu(&imported, &[("x", &x)]);
    assert_eq!(
        out[0].f32s("y").unwrap(),
        &[2.0 * 1.5 + 0.25, 3.0 * -2.0 + 4.0]
    );
    assert_eq!(out[1].f32s("z").unwrap(), &[2.0 - 1.5, 3.0 + 2.5]);

    // External data is refused with a clear message.
    let ext = TensorProto {
        name: Some("e".into()),
        dims: vec![2],
        data_type: Some(DataType::Float as i32),
        data_location: Some(1),
        ..Default::default()
    };
    let m = model(
        13,
        vec![node("Add", &["x", "e"], &["y"], vec![])],
        vec![f32_in("x", &[2])],
        &["y"],
        vec![ext],
    );
    let e = Model::from_onnx(&m).unwrap_err().to_string();
    assert!(e.contains("external file"), "{e}");
}

/// Shape -> Gather -> Unsqueeze -> Concat -> Reshape (a flatten as PyTorch exports it) folds:
/// the model is one reshape, and it runs at the symbolic batch the options give.
#[test]
fn shape_subgraphs_fold_for_the_given_shape() {
    let m = model(
        13,
        vec![
            node("Shape", &["x"], &["s"], vec![]),
            node("Gather", &["s", "zero"], &["b"], vec![]),
            node("Unsqueeze", &["b", "axes0"], &["b1"], vec![]),
            node(
                "Concat",
                &["b1", "minus1"],
                &["target"],
                vec![int("axis", 0)],
            ),
            node("Reshape", &["x", "target"], &["flat"], vec![]),
            node("Relu", &["flat"], &["y"], vec![]),
        ],
        vec![vi(
            "x",
            DataType::Float,
            &[D::P("batch"), D::V(3), D::P("h"), D::V(2)],
        )],
        &["y"],
        vec![
            ti64("zero", &[], &[0]),
            ti64("axes0", &[1], &[0]),
            ti64("minus1", &[1], &[-1]),
        ],
    );
    // 'h' is not a batch dim: the error asks for --shape.
    let e = import(&m, &ImportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("dim 2 'h'") && e.contains("--shape x="), "{e}");
    let mut opts = ImportOptions::default();
    opts.shapes.insert("x".into(), vec![2, 3, 5, 2]);
    let (model, report) = import(&m, &opts).unwrap();
    assert_eq!(report.folded, 4, "Shape, Gather, Unsqueeze and Concat fold");
    assert!(
        model
            .graph
            .nodes
            .iter()
            .all(|n| !matches!(n.op, Op::Shape(_) | Op::Concat(_))),
        "{:?}",
        model.graph.nodes
    );
    // The symbolic dims are kept: the folded target [2, 30] (and [4, 60] when imported at
    // doubled sizes) becomes "copy the batch, infer the rest".
    let Op::Reshape(r) = &model.graph.nodes[0].op else {
        panic!("{:?}", model.graph.nodes[0].op)
    };
    assert_eq!(r.shape, vec![0, -1]);
    assert_eq!(report.fixed, None);
    let sym = vec![Some("batch".to_string()), None, Some("h".to_string()), None];
    assert_eq!(model.graph.dims.get("x"), Some(&sym));
    assert_eq!(report.dims.get("x"), Some(&sym));
    assert_eq!(model.graph.inputs[0].shape, vec![2, 3, 5, 2]);
    // ... so one session runs it at other sizes.
    let opts_cpu = SessionOptions {
        autotune: false,
        cpu_reference: true,
        ..Default::default()
    };
    let s = Session::with_options(&model, Backend::Cpu, opts_cpu).unwrap();
    for shape in [[2, 3, 5, 2], [3, 3, 7, 2], [1, 3, 1, 2]] {
        let x = Tensor::random(&shape, 3);
        let y = s.run(&[("x", &x)]).unwrap();
        assert_eq!(y[0].shape(), &[shape[0], 3 * shape[2] * 2]);
    }
    // Fixed on request: the folded target stays.
    let mut fixed = opts.clone();
    fixed.symbolic = false;
    let (m2, r2) = import(&m, &fixed).unwrap();
    let Op::Reshape(r) = &m2.graph.nodes[0].op else {
        panic!("{:?}", m2.graph.nodes[0].op)
    };
    assert_eq!(r.shape, vec![2, 30]);
    assert!(m2.graph.dims.is_empty() && r2.dims.is_empty());
    assert_eq!(
        report.inputs[0].declared[0],
        wgedge::onnx::OnnxDim::Symbolic("batch".into())
    );
    let x = Tensor::random(&[2, 3, 5, 2], 1);
    let y = cpu(&model, &[("x", &x)]);
    assert_eq!(y[0].shape(), &[2, 30]);
    let want: Vec<f32> = x.f32s("x").unwrap().iter().map(|v| v.max(0.0)).collect();
    assert_eq!(y[0].f32s("y").unwrap(), &want[..]);

    // A symbolic leading batch alone defaults to 1; a rank mismatch in --shape is refused.
    let mut opts = ImportOptions::default();
    opts.shapes.insert("x".into(), vec![2, 3]);
    let e = import(&m, &opts).unwrap_err().to_string();
    assert!(e.contains("rank 2"), "{e}");
    let mut opts = ImportOptions::default();
    opts.shapes.insert("nope".into(), vec![1]);
    assert!(import(&m, &opts).is_err());
}

#[test]
fn names_are_kept_and_identity_outputs_are_named() {
    // y = Identity(x) is a graph output; the shape of x is another (a constant).
    let m = model(
        13,
        vec![
            node("Identity", &["x"], &["id"], vec![]),
            node("Relu", &["id"], &["y"], vec![]),
            node("Identity", &["y"], &["y2"], vec![]),
            node("Shape", &["x"], &["shape"], vec![]),
        ],
        vec![f32_in("x", &[1, 3])],
        &["y2", "shape", "y"],
        vec![],
    );
    let (model, report) = import(&m, &ImportOptions::default()).unwrap();
    assert_eq!(report.dropped, 2);
    assert_eq!(model.graph.outputs, vec!["y2", "shape", "y"]);
    assert_eq!(model.graph.inputs[0].name, "x");
    let x = Tensor::new(&[1, 3], vec![-1.0, 0.5, 2.0]).unwrap();
    let out = cpu(&model, &[("x", &x)]);
    assert_eq!(out[0].f32s("y2").unwrap(), &[0.0, 0.5, 2.0]);
    assert_eq!(out[1].shape(), &[2]);
    assert_eq!(out[2].f32s("y").unwrap(), &[0.0, 0.5, 2.0]);
}

/// Imports `m` with and without rewrites and compares both on the CPU reference.
fn same_with_and_without_rewrites(m: &[u8], x: &Tensor, pattern: &str) -> Model {
    let (plain, _) = import(m, &no_rewrite()).unwrap();
    let (fused, report) = import(m, &ImportOptions::default()).unwrap();
    assert_eq!(
        report.rewrites.get(pattern),
        Some(&1),
        "{:?}",
        report.rewrites
    );
    assert!(fused.graph.nodes.len() < plain.graph.nodes.len());
    let a = cpu(&plain, &[("x", x)]);
    let b = cpu(&fused, &[("x", x)]);
    // Same math in another order (one fused formula against separate ops): f32 rounding.
    assert!(rel_err(&b[0], &a[0]) < 1e-6, "{}", rel_err(&b[0], &a[0]));
    fused
}

#[test]
fn rewrite_silu() {
    let m = model(
        13,
        vec![
            node("Sigmoid", &["x"], &["s"], vec![]),
            node("Mul", &["s", "x"], &["y"], vec![]),
        ],
        vec![f32_in("x", &[2, 37])],
        &["y"],
        vec![],
    );
    let f = same_with_and_without_rewrites(&m, &Tensor::random(&[2, 37], 3), "silu");
    assert_eq!(f.graph.nodes.len(), 1);
}

#[test]
fn rewrite_hardswish() {
    let m = model(
        13,
        vec![
            node("Add", &["x", "three"], &["a"], vec![]),
            node("Clip", &["a", "zero", "six"], &["c"], vec![]),
            node("Mul", &["x", "c"], &["m"], vec![]),
            node("Div", &["m", "six"], &["y"], vec![]),
        ],
        vec![f32_in("x", &[1, 50])],
        &["y"],
        vec![
            tf32("three", &[], &[3.0]),
            tf32("zero", &[], &[0.0]),
            tf32("six", &[], &[6.0]),
        ],
    );
    let x = Tensor::new(&[1, 50], (0..50).map(|i| i as f32 * 0.2 - 5.0).collect()).unwrap();
    let f = same_with_and_without_rewrites(&m, &x, "hardswish");
    assert_eq!(f.graph.nodes.len(), 1);
}

/// Mul then Add by per-channel constants after a conv: folded into the conv's weight and
/// bias (the conv reads new weights, the Mul and Add are gone).
#[test]
fn rewrite_conv_per_channel_affine() {
    let w: Vec<f32> = (0..4 * 3 * 9)
        .map(|i| ((i * 7) % 11) as f32 * 0.1 - 0.5)
        .collect();
    let m = model(
        13,
        vec![
            node(
                "Conv",
                &["x", "w", "b"],
                &["c"],
                vec![ints("pads", &[1, 1, 1, 1])],
            ),
            node("Mul", &["c", "scale"], &["m"], vec![]),
            node("Add", &["m", "shift"], &["y"], vec![]),
        ],
        vec![f32_in("x", &[1, 3, 6, 5])],
        &["y"],
        vec![
            tf32("w", &[4, 3, 3, 3], &w),
            tf32("b", &[4], &[0.1, -0.2, 0.3, 0.0]),
            tf32("scale", &[4, 1, 1], &[2.0, -1.0, 0.5, 3.0]),
            tf32("shift", &[1, 4, 1, 1], &[1.0, 2.0, -3.0, 0.25]),
        ],
    );
    let (plain, _) = import(&m, &no_rewrite()).unwrap();
    let (fused, report) = import(&m, &ImportOptions::default()).unwrap();
    assert_eq!(report.rewrites.get("conv_mul"), Some(&1));
    assert_eq!(report.rewrites.get("conv_add"), Some(&1));
    assert_eq!(fused.graph.nodes.len(), 1);
    let x = Tensor::random(&[1, 3, 6, 5], 4);
    let a = cpu(&plain, &[("x", &x)]);
    let b = cpu(&fused, &[("x", &x)]);
    // Scaling the weights instead of the sums reorders f32 rounding.
    assert!(rel_err(&b[0], &a[0]) < 1e-5);
}

/// The exported layer-norm chain becomes one LayerNorm; compared with the chain computed here
/// and with the unrewritten graph (ReduceMean, Pow, Sqrt, ... as separate ops).
#[test]
fn rewrite_layer_norm_chain() {
    let axes = vec![ints("axes", &[-1])];
    let m = model(
        13,
        vec![
            node("ReduceMean", &["x"], &["mean"], axes.clone()),
            node("Sub", &["x", "mean"], &["d"], vec![]),
            node("Pow", &["d", "two"], &["p"], vec![]),
            node("ReduceMean", &["p"], &["var"], axes),
            node("Add", &["var", "eps"], &["ve"], vec![]),
            node("Sqrt", &["ve"], &["sd"], vec![]),
            node("Div", &["d", "sd"], &["n"], vec![]),
            node("Mul", &["n", "gamma"], &["g"], vec![]),
            node("Add", &["g", "beta"], &["y"], vec![]),
        ],
        vec![f32_in("x", &[3, 8])],
        &["y"],
        vec![
            tf32("two", &[], &[2.0]),
            tf32("eps", &[], &[1e-5]),
            tf32("gamma", &[8], &[1.0, 2.0, 0.5, 1.0, -1.0, 1.5, 1.0, 0.25]),
            tf32("beta", &[8], &[0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]),
        ],
    );
    let (model, report) = import(&m, &ImportOptions::default()).unwrap();
    assert_eq!(report.rewrites.get("layer_norm"), Some(&1));
    assert!(matches!(model.graph.nodes[0].op, Op::LayerNorm(_)));
    let x = Tensor::random(&[3, 8], 5);
    let y = cpu(&model, &[("x", &x)]);
    let xv = x.f32s("x").unwrap();
    let gamma = [1.0, 2.0, 0.5, 1.0, -1.0, 1.5, 1.0, 0.25];
    let mut want = vec![0f32; 24];
    for r in 0..3 {
        let row = &xv[r * 8..r * 8 + 8];
        let mean = row.iter().sum::<f32>() / 8.0;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / 8.0;
        for c in 0..8 {
            want[r * 8 + c] = (row[c] - mean) / (var + 1e-5).sqrt() * gamma[c] + 0.1 * c as f32;
        }
    }
    let want = Tensor::new(&[3, 8], want).unwrap();
    assert!(rel_err(&y[0], &want) < 1e-5, "{}", rel_err(&y[0], &want));
    // Without rewrites the chain imports op by op and computes the same values.
    let (plain, report) = import(&m, &no_rewrite()).unwrap();
    assert!(report.rewrites.is_empty());
    assert!(plain
        .graph
        .nodes
        .iter()
        .any(|n| matches!(n.op, Op::Reduce(_))));
    let y2 = cpu(&plain, &[("x", &x)]);
    assert!(rel_err(&y2[0], &want) < 1e-5, "{}", rel_err(&y2[0], &want));
}

/// The erf GELU chain is matched and becomes one exact (erf) GELU activation; the result equals
/// the unrewritten chain (Div, Erf, Add, Mul, Mul run one by one) and the erf formula computed
/// here in f64, so a tanh-approximate GELU would fail.
#[test]
fn rewrite_erf_gelu_matches() {
    let m = model(
        13,
        vec![
            node("Div", &["x", "sqrt2"], &["a"], vec![]),
            node("Erf", &["a"], &["e"], vec![]),
            node("Add", &["e", "one"], &["f"], vec![]),
            node("Mul", &["x", "f"], &["g"], vec![]),
            node("Mul", &["g", "half"], &["y"], vec![]),
        ],
        vec![f32_in("x", &[16])],
        &["y"],
        vec![
            tf32("sqrt2", &[], &[std::f32::consts::SQRT_2]),
            tf32("one", &[], &[1.0]),
            tf32("half", &[], &[0.5]),
        ],
    );
    let (fused, report) = import(&m, &ImportOptions::default()).unwrap();
    assert_eq!(report.rewrites.get("gelu"), Some(&1));
    assert_eq!(fused.graph.nodes.len(), 1);
    assert!(
        matches!(
            fused.graph.nodes[0].op,
            Op::Unary(u) if u.act == wgedge::ops::Activation::GeluErf
        ),
        "{:?}",
        fused.graph.nodes[0].op
    );
    let (plain, _) = import(&m, &no_rewrite()).unwrap();
    assert_eq!(plain.graph.nodes.len(), 5);
    // -3.75 .. 3.75, where exact and tanh GELU differ by 1e-6 .. 4.7e-4 (most at |x| = 2.75).
    // The tolerance, 1e-6 absolute plus 1e-6 relative, covers f32 rounding of `1 + erf` at
    // the negative end (about 1e-7 absolute) and is below the tanh-vs-erf gap at every point.
    let xv: Vec<f32> = (0..16).map(|i| (i as f32 - 7.5) * 0.5).collect();
    let x = Tensor::new(&[16], xv.clone()).unwrap();
    let a = cpu(&fused, &[("x", &x)]);
    let b = cpu(&plain, &[("x", &x)]);
    let want: Vec<f32> = xv
        .iter()
        .map(|&v| {
            let v = v as f64;
            // erf by its series in f64 (|v / sqrt 2| < 2.7: the terms stay below 1e3).
            let z = v / std::f64::consts::SQRT_2;
            let (mut term, mut sum) = (z, z);
            for k in 1..80 {
                term *= -z * z / k as f64;
                sum += term / (2 * k + 1) as f64;
            }
            let erf = sum * std::f64::consts::FRAC_2_SQRT_PI;
            (0.5 * v * (1.0 + erf)) as f32
        })
        .collect();
    let want = Tensor::new(&[16], want).unwrap();
    for (what, got) in [("fused", &a[0]), ("unrewritten", &b[0])] {
        let (g, w) = (got.f32s("got").unwrap(), want.f32s("want").unwrap());
        for (i, (p, q)) in g.iter().zip(w).enumerate() {
            assert!(
                (p - q).abs() <= 1e-6 + 1e-6 * q.abs(),
                "{what} at x = {}: {p} vs {q}",
                xv[i]
            );
        }
    }
}

#[test]
fn gemm_attributes_and_softmax_before_opset_13() {
    // y = softmax_axis1(0.5 * x @ w^T + 2 * c) with x [2, 3, 2] flattened by Flatten.
    let w: Vec<f32> = (0..4 * 6).map(|i| (i as f32 * 0.37).sin()).collect();
    let c = [0.1, 0.2, 0.3, 0.4];
    let (alpha, beta, trans_b) = (float("alpha", 0.5), float("beta", 2.0), int("transB", 1));
    let m = model(
        11,
        vec![
            node("Flatten", &["x"], &["f"], vec![]),
            node("Gemm", &["f", "w", "c"], &["g"], vec![alpha, beta, trans_b]),
            node("Softmax", &["g"], &["y"], vec![]),
        ],
        vec![f32_in("x", &[2, 3, 2])],
        &["y"],
        vec![tf32("w", &[4, 6], &w), tf32("c", &[4], &c)],
    );
    let model = Model::from_onnx(&m).unwrap();
    let x = Tensor::random(&[2, 3, 2], 8);
    let y = cpu(&model, &[("x", &x)]);
    let xv = x.f32s("x").unwrap();
    let mut want = vec![0f32; 8];
    for r in 0..2 {
        let logits: Vec<f32> = (0..4)
            .map(|n| 0.5 * (0..6).map(|k| xv[r * 6 + k] * w[n * 6 + k]).sum::<f32>() + 2.0 * c[n])
            .collect();
        let mx = logits.iter().cloned().fold(f32::MIN, f32::max);
        let s: f32 = logits.iter().map(|l| (l - mx).exp()).sum();
        for n in 0..4 {
            want[r * 4 + n] = (logits[n] - mx).exp() / s;
        }
    }
    let want = Tensor::new(&[2, 4], want).unwrap();
    assert!(rel_err(&y[0], &want) < 1e-5);
}

fn wgedge_cli(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wgedge"))
        .args(args)
        .env("WGEDGE_AUTOTUNE", "0")
        .env_remove("WGEDGE_BACKEND")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// `wgedge import` then `wgedge run` with tensors keyed by the ONNX input and output names.
#[test]
fn cli_import_then_run_by_onnx_names() {
    let dir = std::env::temp_dir().join(format!("wgedge-onnx-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let w: Vec<f32> = (0..2 * 3).map(|i| i as f32 * 0.5 - 1.0).collect();
    let m = model(
        13,
        vec![node("Gemm", &["input.1", "w"], &["logits"], vec![])],
        vec![vi("input.1", DataType::Float, &[D::P("N"), D::V(2)])],
        &["logits"],
        vec![tf32("w", &[2, 3], &w)],
    );
    let onnx = dir.join("m.onnx");
    std::fs::write(&onnx, &m).unwrap();
    let p = |f: &str| dir.join(f).to_str().unwrap().to_string();
    // Refuses to write over its input.
    let (ok, _, err) = wgedge_cli(&["import", &p("m.onnx"), "-o", &p("m.onnx")]);
    assert!(!ok && err.contains("refusing"), "{err}");
    let (ok, out, err) = wgedge_cli(&[
        "import",
        &p("m.onnx"),
        "-o",
        &p("m.safetensors"),
        "--shape",
        "input.1=4,2",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("input  input.1 f32[4, 2] (declared [N, 2]; runs at any [N, -])"),
        "{out}"
    );
    assert!(out.contains("output logits f32[4, 3]"), "{out}");
    let (ok, _, err) = wgedge_cli(&[
        "import",
        &p("m.onnx"),
        "-o",
        &p("x.safetensors"),
        "--shape",
        "input.1=4,x",
    ]);
    assert!(!ok && err.contains("--shape"), "{err}");

    let x = Tensor::random(&[4, 2], 2);
    let mut t = BTreeMap::new();
    t.insert("input.1".to_string(), x.clone());
    wgedge::model::save_tensors(dir.join("in.safetensors"), &t).unwrap();
    let (ok, _, err) = wgedge_cli(&[
        "run",
        &p("m.safetensors"),
        "--input",
        &p("in.safetensors"),
        "--output",
        &p("out.safetensors"),
        "--backend",
        "cpu",
    ]);
    assert!(ok, "{err}");
    let got = wgedge::model::load_tensors(dir.join("out.safetensors")).unwrap();
    let y = &got["logits"];
    let xv = x.f32s("x").unwrap();
    for r in 0..4 {
        for n in 0..3 {
            let want: f32 = (0..2).map(|k| xv[r * 2 + k] * w[k * 3 + n]).sum();
            assert!((y.f32s("y").unwrap()[r * 3 + n] - want).abs() < 1e-5);
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// A size that folds into a value the graph computes with (here `x * H`, H read from the
/// input's shape) cannot stay symbolic: the model is fixed to the imported shape, the report
/// names the weight, and the fixed model refuses another size rather than answering wrongly.
#[test]
fn size_dependent_values_fix_the_shape() {
    let m = model(
        13,
        vec![
            node("Shape", &["x"], &["s"], vec![]),
            node("Gather", &["s", "one"], &["h"], vec![]),
            node("Cast", &["h"], &["hf"], vec![int("to", 1)]),
            node("Mul", &["x", "hf"], &["y"], vec![]),
        ],
        vec![vi("x", DataType::Float, &[D::V(1), D::P("h")])],
        &["y"],
        vec![ti64("one", &[], &[1])],
    );
    let mut opts = ImportOptions::default();
    opts.shapes.insert("x".into(), vec![1, 3]);
    let (model, report) = import(&m, &opts).unwrap();
    let why = report.fixed.expect("fixed");
    assert!(
        why.contains("weight") && why.contains("input size"),
        "{why}"
    );
    assert!(model.graph.dims.is_empty() && report.dims.is_empty());
    let x = Tensor::new(&[1, 3], vec![1.0, 2.0, 3.0]).unwrap();
    assert_eq!(
        cpu(&model, &[("x", &x)])[0].f32s("y").unwrap(),
        &[3.0, 6.0, 9.0]
    );
    let s = Session::with_options(&model, Backend::Cpu, SessionOptions::default()).unwrap();
    let e = s
        .run(&[("x", &Tensor::zeros(&[1, 4]))])
        .unwrap_err()
        .to_string();
    assert!(e.contains("[1, 3]") && e.contains("[1, 4]"), "{e}");
}

/// The model's metadata_props come back in the report (a recogniser's character list lives
/// there).
#[test]
fn metadata_props_are_reported() {
    let bytes = model(
        13,
        vec![node("Relu", &["x"], &["y"], vec![])],
        vec![f32_in("x", &[1, 2])],
        &["y"],
        vec![],
    );
    let mut m = ModelProto::decode(bytes.as_slice()).unwrap();
    m.metadata_props
        .push(wgedge::onnx::proto::StringStringEntryProto {
            key: Some("character".into()),
            value: Some("a\nb".into()),
        });
    let (_, report) = import(&m.encode_to_vec(), &ImportOptions::default()).unwrap();
    assert_eq!(
        report.metadata.get("character").map(String::as_str),
        Some("a\nb")
    );
}

/// Einsum by definition: every assignment of the labels adds `a[..] * b[..]` into `out[..]`.
fn einsum_ref(eq: &str, a: &Tensor, b: &Tensor) -> Tensor {
    let (lhs, out) = eq.split_once("->").unwrap();
    let (la, lb) = lhs.split_once(',').unwrap();
    let mut size = BTreeMap::new();
    for (l, t) in [(la, a), (lb, b)] {
        for (c, &d) in l.chars().zip(t.shape()) {
            size.insert(c, d);
        }
    }
    let labels: Vec<char> = size.keys().copied().collect();
    let flat =
        |l: &str, at: &BTreeMap<char, usize>| l.chars().fold(0, |acc, c| acc * size[&c] + at[&c]);
    let oshape: Vec<usize> = out.chars().map(|c| size[&c]).collect();
    let mut y = vec![0f32; oshape.iter().product()];
    let (av, bv) = (a.f32s("a").unwrap(), b.f32s("b").unwrap());
    let total: usize = labels.iter().map(|c| size[c]).product();
    for mut i in 0..total {
        let mut at = BTreeMap::new();
        for c in labels.iter().rev() {
            at.insert(*c, i % size[c]);
            i /= size[c];
        }
        y[flat(out, &at)] += av[flat(la, &at)] * bv[flat(lb, &at)];
    }
    Tensor::new(&oshape, y).unwrap()
}

#[test]
fn einsum_matmul_like_equations_match_the_definition() {
    let cases: [(&str, &[usize], &[usize]); 6] = [
        ("ij,jk->ik", &[3, 4], &[4, 5]),
        ("bij,bjk->bik", &[2, 3, 4], &[2, 4, 5]),
        ("bhid,bhjd->bhij", &[2, 3, 4, 8], &[2, 3, 5, 8]),
        ("ij,kj->ki", &[3, 4], &[5, 4]),
        ("bji,bjk->bki", &[2, 4, 3], &[2, 4, 5]),
        ("i,j->ij", &[3], &[4]),
    ];
    for (k, (eq, sa, sb)) in cases.iter().enumerate() {
        let dims = |s: &[usize]| s.iter().map(|&d| d as i64).collect::<Vec<_>>();
        let m = model(
            12,
            vec![node(
                "Einsum",
                &["a", "b"],
                &["y"],
                vec![string("equation", eq)],
            )],
            vec![f32_in("a", &dims(sa)), f32_in("b", &dims(sb))],
            &["y"],
            vec![],
        );
        let model = Model::from_onnx(&m).unwrap_or_else(|e| panic!("{eq}: {e}"));
        assert!(
            model
                .graph
                .nodes
                .iter()
                .any(|n| matches!(n.op, Op::MatMul(_))),
            "{eq}: runs as a matmul"
        );
        let (a, b) = (
            Tensor::random(sa, 20 + k as u64),
            Tensor::random(sb, 40 + k as u64),
        );
        let y = cpu(&model, &[("a", &a), ("b", &b)]);
        let want = einsum_ref(eq, &a, &b);
        assert_eq!(y[0].shape(), want.shape(), "{eq}");
        // f32 sums of at most 8 products of values in [-1, 1]: a few ulps of the largest.
        assert!(
            rel_err(&y[0], &want) < 1e-5,
            "{eq}: {}",
            rel_err(&y[0], &want)
        );
    }
    // Reductions, diagonals and ellipsis are refused with the equation named.
    for eq in ["ij,jk->i", "ii,ij->ij", "...ij,...jk->...ik"] {
        let m = model(
            12,
            vec![node(
                "Einsum",
                &["a", "b"],
                &["y"],
                vec![string("equation", eq)],
            )],
            vec![f32_in("a", &[3, 3]), f32_in("b", &[3, 3])],
            &["y"],
            vec![],
        );
        let e = Model::from_onnx(&m).unwrap_err().to_string();
        assert!(e.contains(eq), "{eq}: {e}");
    }
}

#[test]
fn split_attribute_form_upsample_and_broadcast_matmul() {
    // Split (opset 11, `split` attribute, negative axis) -> slices; Upsample (opset 9,
    // scales input) -> nearest resize; a MatMul whose batch dims broadcast ([2, 1] x [3]).
    let m = model(
        11,
        vec![
            node(
                "Split",
                &["x"],
                &["s0", "s1"],
                vec![int("axis", -1), ints("split", &[1, 3])],
            ),
            node("MatMul", &["p", "q"], &["mm"], vec![]),
        ],
        vec![
            f32_in("x", &[2, 4]),
            f32_in("p", &[2, 1, 3, 4]),
            f32_in("q", &[3, 4, 2]),
        ],
        &["s0", "s1", "mm"],
        vec![],
    );
    let mdl = Model::from_onnx(&m).unwrap();
    let x = Tensor::random(&[2, 4], 1);
    let (p, q) = (
        Tensor::random(&[2, 1, 3, 4], 2),
        Tensor::random(&[3, 4, 2], 3),
    );
    let y = cpu(&mdl, &[("x", &x), ("p", &p), ("q", &q)]);
    let xv = x.f32s("x").unwrap();
    assert_eq!(y[0].f32s("s0").unwrap(), &[xv[0], xv[4]]);
    assert_eq!(
        y[1].f32s("s1").unwrap(),
        &[xv[1], xv[2], xv[3], xv[5], xv[6], xv[7]]
    );
    assert_eq!(y[2].shape(), &[2, 3, 3, 2]);
    let (pv, qv, mv) = (
        p.f32s("p").unwrap(),
        q.f32s("q").unwrap(),
        y[2].f32s("mm").unwrap(),
    );
    for i in 0..2 {
        for j in 0..3 {
            for r in 0..3 {
                for c in 0..2 {
                    let want: f32 = (0..4)
                        .map(|k| pv[i * 12 + r * 4 + k] * qv[j * 8 + k * 2 + c])
                        .sum();
                    let got = mv[((i * 3 + j) * 3 + r) * 2 + c];
                    assert!(
                        (got - want).abs() < 1e-5,
                        "mm[{i},{j},{r},{c}] {got} vs {want}"
                    );
                }
            }
        }
    }

    let m = model(
        9,
        vec![node(
            "Upsample",
            &["x", "sc"],
            &["y"],
            vec![string("mode", "nearest")],
        )],
        vec![f32_in("x", &[1, 1, 2, 2])],
        &["y"],
        vec![tf32("sc", &[4], &[1.0, 1.0, 2.0, 3.0])],
    );
    let mdl = Model::from_onnx(&m).unwrap();
    let x = Tensor::new(&[1, 1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
    let y = cpu(&mdl, &[("x", &x)]);
    assert_eq!(y[0].shape(), &[1, 1, 4, 6]);
    let row = |a: f32, b: f32| vec![a, a, a, b, b, b];
    let want: Vec<f32> = [row(1., 2.), row(1., 2.), row(3., 4.), row(3., 4.)].concat();
    assert_eq!(y[0].f32s("y").unwrap(), &want[..]);
}

#[test]
fn runtime_range_and_unsupported_resize_modes_are_named() {
    // Range whose limit is a model input: its length is known only at run time.
    let m = model(
        12,
        vec![node("Range", &["s", "l", "d"], &["y"], vec![])],
        vec![vi("l", DataType::Float, &[])],
        &["y"],
        vec![tf32("s", &[], &[0.0]), tf32("d", &[], &[1.0])],
    );
    let e = Model::from_onnx(&m).unwrap_err().to_string();
    assert!(
        e.contains("(Range, opset 12)") && e.contains("run-time values"),
        "{e}"
    );
    for (mode, ctm, what) in [
        ("cubic", "half_pixel", "mode = 'cubic'"),
        ("linear", "tf_crop_and_resize", "tf_crop_and_resize"),
    ] {
        let m = model(
            13,
            vec![node(
                "Resize",
                &["x", "", "sc"],
                &["y"],
                vec![
                    string("mode", mode),
                    string("coordinate_transformation_mode", ctm),
                ],
            )],
            vec![f32_in("x", &[1, 1, 2, 2])],
            &["y"],
            vec![tf32("sc", &[4], &[1.0, 1.0, 2.0, 2.0])],
        );
        let e = Model::from_onnx(&m).unwrap_err().to_string();
        assert!(e.contains("(Resize, opset 13)") && e.contains(what), "{e}");
    }
}

/// Reductions: the `axes` attribute of opsets before 18 and the axes input from 18 import to
/// the same op and values (the node tests only have the input form), keepdims off included.
#[test]
fn reduce_axes_attribute_and_input_forms() {
    let x = Tensor::random(&[2, 3, 4], 11);
    let attr = model(
        13,
        vec![node(
            "ReduceMean",
            &["x"],
            &["y"],
            vec![ints("axes", &[-1, 0]), int("keepdims", 0)],
        )],
        vec![f32_in("x", &[2, 3, 4])],
        &["y"],
        vec![],
    );
    let input = model(
        18,
        vec![node(
            "ReduceMean",
            &["x", "axes"],
            &["y"],
            vec![int("keepdims", 0)],
        )],
        vec![f32_in("x", &[2, 3, 4])],
        &["y"],
        vec![ti64("axes", &[2], &[-1, 0])],
    );
    let xv = x.f32s("x").unwrap();
    let want: Vec<f32> = (0..3)
        .map(|j| {
            let s: f32 = (0..2)
                .flat_map(|i| (0..4).map(move |k| (i, k)))
                .map(|(i, k)| xv[i * 12 + j * 4 + k])
                .sum();
            s / 8.0
        })
        .collect();
    let want = Tensor::new(&[3], want).unwrap();
    for m in [attr, input] {
        let (model, _) = import(&m, &ImportOptions::default()).unwrap();
        assert!(matches!(model.graph.nodes[0].op, Op::Reduce(_)));
        let y = cpu(&model, &[("x", &x)]);
        assert_eq!(y[0].shape(), &[3]);
        assert!(rel_err(&y[0], &want) < 1e-6, "{}", rel_err(&y[0], &want));
    }
}

/// LogSoftmax before opset 13 normalises over the input coerced to 2-D at `axis` (default 1):
/// on [2, 3, 4] that is over all 12 values of each batch item, not along one axis.
#[test]
fn log_softmax_before_opset_13_coerces_to_2d() {
    let x = Tensor::random(&[2, 3, 4], 12);
    let m = model(
        11,
        vec![node("LogSoftmax", &["x"], &["y"], vec![])],
        vec![f32_in("x", &[2, 3, 4])],
        &["y"],
        vec![],
    );
    let (model, _) = import(&m, &ImportOptions::default()).unwrap();
    let y = cpu(&model, &[("x", &x)]);
    let xv = x.f32s("x").unwrap();
    let mut want = vec![0f32; 24];
    for b in 0..2 {
        let row = &xv[b * 12..b * 12 + 12];
        let lse = row.iter().map(|v| (*v as f64).exp()).sum::<f64>().ln();
        for i in 0..12 {
            want[b * 12 + i] = (row[i] as f64 - lse) as f32;
        }
    }
    let want = Tensor::new(&[2, 3, 4], want).unwrap();
    assert_eq!(y[0].shape(), &[2, 3, 4]);
    assert!(rel_err(&y[0], &want) < 1e-6, "{}", rel_err(&y[0], &want));
}

/// 8-bit integer arithmetic wraps around as in ONNX (computed in i32, reduced modulo 256),
/// where a plain cast back would saturate.
#[test]
fn uint8_and_int8_arithmetic_wraps() {
    use wgedge::tensor::TensorData;
    for (dt, a, b, op, want) in [
        (DataType::Uint8, 200i64, 100i64, "Add", 44i64),
        (DataType::Uint8, 10, 20, "Sub", 246),
        (DataType::Uint8, 16, 17, "Mul", 16),
        (DataType::Int8, 100, 100, "Add", -56),
        (DataType::Int8, -100, 100, "Sub", 56),
        (DataType::Int8, -128, -1, "Div", -128),
    ] {
        let m = model(
            14,
            vec![node(op, &["a", "b"], &["y"], vec![])],
            vec![vi("a", dt, &[D::V(1)]), vi("b", dt, &[D::V(1)])],
            &["y"],
            vec![],
        );
        let (model, _) = import(&m, &ImportOptions::default()).unwrap();
        let t = |v: i64| match dt {
            DataType::Uint8 => Tensor::from_data(&[1], TensorData::U8(vec![v as u8])).unwrap(),
            _ => Tensor::from_data(&[1], TensorData::I8(vec![v as i8])).unwrap(),
        };
        let y = cpu(&model, &[("a", &t(a)), ("b", &t(b))]);
        let got = match y[0].data() {
            TensorData::U8(v) => v[0] as i64,
            TensorData::I8(v) => v[0] as i64,
            other => panic!("{op}: output {other:?}"),
        };
        assert_eq!(got, want, "{a} {op} {b} in {dt:?}");
    }
}

/// GroupNormalization opset 18 takes scale and bias per group; import repeats each group's
/// value over its channels, so it equals opset 21 with the per-channel values written out.
#[test]
fn group_norm_opset_18_per_group_scale() {
    let x = Tensor::random(&[2, 4, 3], 13);
    let gn = |opset: i64, scale: &[f32], bias: &[f32]| {
        let c = scale.len() as i64;
        model(
            opset,
            vec![node(
                "GroupNormalization",
                &["x", "s", "b"],
                &["y"],
                vec![int("num_groups", 2), float("epsilon", 1e-3)],
            )],
            vec![f32_in("x", &[2, 4, 3])],
            &["y"],
            vec![tf32("s", &[c], scale), tf32("b", &[c], bias)],
        )
    };
    let (m18, _) = import(
        &gn(18, &[2.0, -0.5], &[0.25, 1.0]),
        &ImportOptions::default(),
    )
    .unwrap();
    let (m21, _) = import(
        &gn(21, &[2.0, 2.0, -0.5, -0.5], &[0.25, 0.25, 1.0, 1.0]),
        &ImportOptions::default(),
    )
    .unwrap();
    let a = cpu(&m18, &[("x", &x)]);
    let b = cpu(&m21, &[("x", &x)]);
    assert_eq!(a[0].f32s("a").unwrap(), b[0].f32s("b").unwrap());
    // And the opset 21 form normalises each group of 2 channels x 3 positions.
    let xv = x.f32s("x").unwrap();
    let g = &xv[6..12]; // image 0, group 1
    let mean = g.iter().sum::<f32>() / 6.0;
    let var = g.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / 6.0;
    let want = (g[0] - mean) / (var + 1e-3).sqrt() * -0.5 + 1.0;
    assert!((b[0].f32s("b").unwrap()[6] - want).abs() < 1e-5);
}

/// Neg and Abs of integers (ONNX takes them; wgedge's activations are f32): i8 wraps, so the
/// most negative value is its own negation and absolute value, as in numpy.
#[test]
fn integer_neg_and_abs() {
    use wgedge::tensor::TensorData;
    for op in ["Neg", "Abs"] {
        let m = model(
            14,
            vec![node(op, &["a"], &["y"], vec![])],
            vec![vi("a", DataType::Int8, &[D::V(4)])],
            &["y"],
            vec![],
        );
        let (model, _) = import(&m, &ImportOptions::default()).unwrap();
        let a = Tensor::from_data(&[4], TensorData::I8(vec![-128, -5, 0, 127])).unwrap();
        let y = cpu(&model, &[("a", &a)]);
        let want = if op == "Neg" {
            vec![-128, 5, 0, -127]
        } else {
            vec![-128, 5, 0, 127]
        };
        assert_eq!(y[0].data(), &TensorData::I8(want), "{op}");
    }
    let m = model(
        14,
        vec![node("Abs", &["a"], &["y"], vec![])],
        vec![vi("a", DataType::Int64, &[D::V(3)])],
        &["y"],
        vec![],
    );
    let (model, _) = import(&m, &ImportOptions::default()).unwrap();
    let a = Tensor::from_data(&[3], TensorData::I64(vec![-7, 3, i64::MIN + 1])).unwrap();
    let y = cpu(&model, &[("a", &a)]);
    assert_eq!(y[0].data(), &TensorData::I64(vec![7, 3, i64::MAX]));
}

/// GatherND with constant indices (how exporters pick attention-mask entries) becomes a gather
/// on the flattened leading dims; IsNaN is `not(x == x)`. Values checked by hand.
#[test]
fn gather_nd_constant_indices_and_is_nan() {
    let m = model(
        17,
        vec![
            node("GatherND", &["x", "idx"], &["g"], vec![]),
            node("IsNaN", &["g"], &["y"], vec![]),
        ],
        vec![f32_in("x", &[2, 3, 2])],
        &["g", "y"],
        vec![ti64("idx", &[3, 2], &[1, 2, 0, -1, 1, 0])],
    );
    let imported = Model::from_onnx(&m).unwrap();
    let mut v: Vec<f32> = (0..12).map(|i| i as f32).collect();
    v[4] = f32::NAN; // x[0, 2, 0]
    let x = Tensor::new(&[2, 3, 2], v).unwrap();
    let out = cpu(&imported, &[("x", &x)]);
    assert_eq!(out[0].shape(), &[3, 2]);
    let g = out[0].f32s("g").unwrap();
    assert_eq!(&g[..2], &[10.0, 11.0]); // x[1, 2]
    assert!(g[2].is_nan() && g[3] == 5.0); // x[0, -1] = x[0, 2]
    assert_eq!(&g[4..], &[6.0, 7.0]); // x[1, 0]
    assert_eq!(
        out[1].to_f32().f32s("y").unwrap(),
        &[0.0, 0.0, 1.0, 0.0, 0.0, 0.0]
    );
    // An index out of range is refused at import, naming it.
    let bad = model(
        17,
        vec![node("GatherND", &["x", "idx"], &["g"], vec![])],
        vec![f32_in("x", &[2, 3])],
        &["g"],
        vec![ti64("idx", &[1, 2], &[2, 0])],
    );
    let e = Model::from_onnx(&bad).unwrap_err().to_string();
    assert!(e.contains("index 2 is out of range"), "{e}");
}
