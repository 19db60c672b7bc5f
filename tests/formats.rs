//! Weights in packed formats (quantized, sparse) inside models: stored as parts with the format
//! in the graph, checked at load, run by the CPU reference on the decoded weights, and on the GPU
//! read as stored where a kernel reads the format (`tests/quant_kernels.rs`), else decoded once
//! for the dense kernels.
//!
//! The comparison is against the same graph built with the *decoded* weights as dense f32: the
//! CPU result must be bit-equal (identical arithmetic on identical numbers); the GPU plan agrees
//! within the f32 dot-product tolerance of `tests/conformance.rs` (its CPU nodes are the same
//! reference code; only its GPU nodes round differently).

mod common;
use common::*;
use std::collections::BTreeMap;
use wgedge::format::{prune_nm, QuantSpec, SparseLayout, SparseSpec, SparseValues, WeightFormat};
use wgedge::graph::GraphBuilder;
use wgedge::ops::{Activation, Conv2d};
use wgedge::sched::Placement;
use wgedge::{DType, Model, Session, SessionOptions, Tensor};

fn int8() -> WeightFormat {
    WeightFormat::Quant(QuantSpec {
        bits: 8,
        group: 0,
        zero_points: false,
        pow2: false,
        scale_dtype: DType::F32,
    })
}

fn int4_g32() -> WeightFormat {
    WeightFormat::Quant(QuantSpec {
        bits: 4,
        group: 32,
        zero_points: true,
        pow2: false,
        scale_dtype: DType::F16,
    })
}

fn sparse(layout: SparseLayout) -> WeightFormat {
    WeightFormat::Sparse(SparseSpec {
        layout,
        values: SparseValues::F32,
    })
}

/// conv (packed or dense weight) -> relu -> flatten -> linear (packed) -> linear (packed) ->
/// softmax. `pack(i)` says how weight i is stored; `None` stores the given tensor densely.
fn model(ws: &[Tensor; 3], formats: &[Option<WeightFormat>; 3]) -> Model {
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[1, 3, 6, 6]);
    let name = |b: &mut GraphBuilder, i: usize, n: &str| match &formats[i] {
        Some(f) => b.weight_packed(n, &ws[i], f.clone()).unwrap(),
        None => b.weight(n, ws[i].clone()),
    };
    let cw = name(&mut b, 0, "conv.w");
    let c = b.conv2d(
        &x,
        &cw,
        None,
        Conv2d {
            pad: [1; 4],
            ..Default::default()
        },
    );
    let r = b.act(&c, Activation::Relu);
    let f = b.flatten(&r, 1);
    let w1 = name(&mut b, 1, "fc1.w");
    let h = b.linear(&f, &w1, None, Activation::Relu);
    let w2 = name(&mut b, 2, "fc2.w");
    let y = b.linear(&h, &w2, None, Activation::None);
    let y = b.softmax(&y, -1);
    b.output(&y);
    Model::from_builder(b).unwrap()
}

fn plain() -> SessionOptions {
    SessionOptions {
        autotune: false,
        optimize: false,
        // The reference kernels: packed and decoded weights then sum the same terms in the
        // same order (the fast CPU kernels take other orders for dense and sparse weights).
        cpu_reference: true,
        ..Default::default()
    }
}

#[test]
fn packed_weights_run_on_the_cpu_reference_and_inside_gpu_plans() {
    // fc1 about 80% zeros (as after magnitude pruning), fc2 pruned 2:4.
    let fc1: Vec<f32> = Tensor::random(&[40, 8 * 36], 2)
        .f32s("fc1")
        .unwrap()
        .iter()
        .map(|&v| if v.abs() < 0.8 { 0.0 } else { v })
        .collect();
    let ws = [
        Tensor::random(&[8, 3, 3, 3], 1),
        Tensor::new(&[40, 8 * 36], fc1).unwrap(),
        prune_nm(&Tensor::random(&[10, 40], 3), 2, 4).unwrap(),
    ];
    let cases: Vec<(&str, [Option<WeightFormat>; 3])> = vec![
        (
            "int8 conv, int4 fc1, 2:4 fc2",
            [
                Some(int8()),
                Some(int4_g32()),
                Some(sparse(SparseLayout::NM { n: 2, m: 4 })),
            ],
        ),
        (
            "dense conv, csr fc1, bsr fc2",
            [
                None,
                Some(sparse(SparseLayout::Csr)),
                Some(sparse(SparseLayout::Bsr { r: 2, c: 4 })),
            ],
        ),
    ];
    let x = Tensor::random(&[1, 3, 6, 6], 4);
    for (what, formats) in cases {
        let packed = model(&ws, &formats);
        // A file round trip keeps formats and parts.
        let packed = Model::from_bytes(&packed.to_bytes().unwrap()).unwrap();
        assert_eq!(packed.graph.formats.len(), formats.iter().flatten().count());
        assert!(packed.weight_bytes() < model(&ws, &[None, None, None]).weight_bytes());
        // The same graph with the decoded weights stored dense.
        let decoded: [Tensor; 3] = std::array::from_fn(|i| match &formats[i] {
            Some(f) => {
                let name = ["conv.w", "fc1.w", "fc2.w"][i];
                f.decode(name, ws[i].shape(), &packed.weights).unwrap()
            }
            None => ws[i].clone(),
        });
        let dense = model(&decoded, &[None, None, None]);
        let want = Session::cpu(&dense, plain())
            .unwrap()
            .run(&[("x", &x)])
            .unwrap();
        let got = Session::cpu(&packed, plain())
            .unwrap()
            .run(&[("x", &x)])
            .unwrap();
        assert_eq!(got, want, "{what}: CPU on packed = CPU on decoded");
        let Some(ctx) = gpu() else { continue };
        let s = Session::with_context(&packed, ctx.clone(), plain()).unwrap();
        for n in &s.plan().nodes {
            let expect = if n.op.aliases_input() {
                Placement::Alias
            } else {
                Placement::Gpu
            };
            assert_eq!(n.placement, expect, "{what}: node '{}'", n.name);
        }
        // Linear and conv layers read quantised weights as stored; these small sparse weights
        // are above the sparse kernels' default density thresholds (or BSR, which no kernel
        // reads), so they are decoded for the dense kernels.
        for v in s.plan().values.iter().filter(|v| !v.format.is_dense()) {
            let read_packed = v.format.label().starts_with("int");
            assert_eq!(v.decoded, !read_packed, "{what}: weight '{}'", v.name);
        }
        let g = s.run(&[("x", &x)]).unwrap();
        assert_close(what, &g[0], &want[0], 1e-5, 1e-4);
        // The dense graph runs wholly on the GPU.
        let d = Session::with_context(&dense, ctx, plain()).unwrap();
        assert!(d.plan().cpu_nodes().is_empty());
    }
}

#[test]
fn passes_never_unpack_a_packed_weight() {
    // conv (int8 weight) -> batch norm: folding would rewrite the weight as dense f32, so the
    // BN stays a node and the weight stays packed.
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[1, 2, 5, 5]);
    let w = b
        .weight_packed("w", &Tensor::random(&[4, 2, 3, 3], 1), int8())
        .unwrap();
    let c = b.conv2d(&x, &w, None, Conv2d::default());
    let stats: Vec<String> = ["g", "b", "m", "v"]
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let t = Tensor::new(&[4], vec![0.5 + i as f32 * 0.25; 4]).unwrap();
            b.weight(n, t)
        })
        .collect();
    let y = b.batch_norm(&c, &stats[0], &stats[1], &stats[2], &stats[3], 1e-5);
    b.output(&y);
    let m = Model::from_builder(b).unwrap();
    let s = Session::cpu(&m, SessionOptions::default()).unwrap();
    assert_eq!(s.rewrites, 0, "{}", s.plan().describe());
    assert_eq!(s.plan().nodes.len(), 2);
    let unopt = Session::cpu(&m, plain()).unwrap();
    let x = Tensor::random(&[1, 2, 5, 5], 2);
    assert_eq!(
        s.run(&[("x", &x)]).unwrap(),
        unopt.run(&[("x", &x)]).unwrap()
    );
}

#[test]
fn corrupt_or_colliding_parts_are_load_errors() {
    let ws = [
        Tensor::random(&[8, 3, 3, 3], 1),
        Tensor::random(&[40, 8 * 36], 2),
        Tensor::random(&[10, 40], 3),
    ];
    let m = model(
        &ws,
        &[None, Some(sparse(SparseLayout::Csr)), Some(int4_g32())],
    );
    let mut tensors: BTreeMap<String, Tensor> = (*m.weights).clone();
    // A column index out of range.
    let idx = tensors["fc1.w.indices"].clone();
    let mut bad: Vec<i32> = match idx.data() {
        wgedge::tensor::TensorData::I32(v) => v.clone(),
        other => panic!("indices dtype {other:?}"),
    };
    bad[3] = 10_000;
    tensors.insert(
        "fc1.w.indices".into(),
        Tensor::from_data(idx.shape(), wgedge::tensor::TensorData::I32(bad)).unwrap(),
    );
    let e = Model::new(m.graph.clone(), tensors).unwrap_err();
    assert!(e.to_string().contains("fc1.w.indices"), "{e}");
    // A missing part.
    let mut tensors: BTreeMap<String, Tensor> = (*m.weights).clone();
    tensors.remove("fc2.w.scales");
    let e = Model::new(m.graph.clone(), tensors).unwrap_err();
    assert!(e.to_string().contains("fc2.w.scales"), "{e}");
    // Mis-shaped scales, a non-finite scale, and an int4 zero point past 15.
    let fix = |name: &str, t: Tensor| {
        let mut tensors: BTreeMap<String, Tensor> = (*m.weights).clone();
        tensors.insert(name.into(), t);
        Model::new(m.graph.clone(), tensors)
            .unwrap_err()
            .to_string()
    };
    let scales = m.weights["fc2.w.scales"].to_f32();
    let short = Tensor::new(&[10, 1], vec![0.5; 10]).unwrap();
    let e = fix("fc2.w.scales", short.cast(DType::F16));
    assert!(e.contains("fc2.w.scales") && e.contains("shape"), "{e}");
    let mut nan = scales.f32s("s").unwrap().to_vec();
    nan[3] = f32::NAN;
    let e = fix(
        "fc2.w.scales",
        Tensor::new(scales.shape(), nan).unwrap().cast(DType::F16),
    );
    assert!(e.contains("fc2.w.scales") && e.contains("NaN"), "{e}");
    let z = m.weights["fc2.w.zeros"].clone();
    let zeros = Tensor::from_data(
        z.shape(),
        wgedge::tensor::TensorData::U8(vec![16; z.numel()]),
    )
    .unwrap();
    let e = fix("fc2.w.zeros", zeros);
    assert!(e.contains("zero point > 15"), "{e}");
    // A dense tensor under a packed weight's own name is not declared.
    let mut tensors: BTreeMap<String, Tensor> = (*m.weights).clone();
    tensors.insert("fc2.w".into(), ws[2].clone());
    assert!(Model::new(m.graph.clone(), tensors).is_err());
    // A value of the graph named like a part of a packed weight.
    let mut g = m.graph.clone();
    let spec = g.inputs[0].clone();
    g.inputs[0].name = "fc2.w.qweight".into();
    for n in &mut g.nodes {
        for i in &mut n.inputs {
            if *i == spec.name {
                *i = "fc2.w.qweight".into();
            }
        }
    }
    let e = Model::new(g, (*m.weights).clone()).unwrap_err();
    assert!(e.to_string().contains("stored part"), "{e}");
    // Truncating the file anywhere is an error, never a panic.
    let bytes = m.to_bytes().unwrap();
    for cut in [10, bytes.len() / 2, bytes.len() - 1] {
        assert!(Model::from_bytes(&bytes[..cut]).is_err());
    }
}
