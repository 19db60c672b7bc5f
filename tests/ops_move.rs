//! Data-movement and shape ops (slice, squeeze/unsqueeze, gather, expand, tile, pad,
//! depth/space moves, transpose, resize) and pooling options: GPU vs the CPU reference on edge
//! shapes, a few results written out by hand (an oracle no wgedge code computed), and bad
//! input refused with an error naming it.
//!
//! Tolerances: data movement copies 32-bit words, so the GPU must equal the reference bit for
//! bit (compared with `==`). Resize `linear` computes `a + (b - a) * w` per axis in f32 on both
//! sides, but the GPU may contract it into an FMA: 1e-6 absolute on inputs in [-1, 1]. Pooling
//! sums at most a window in the same order on both sides; averages and Lp norms carry one
//! division or root more: 1e-5 relative.

mod common;
use common::*;
use wgedge::graph::GraphBuilder;
use wgedge::ops::*;
use wgedge::tensor::{DType, TensorData};
use wgedge::{Model, Session, SessionOptions, Tensor};

fn i64s(shape: &[usize], v: &[i64]) -> Tensor {
    Tensor::from_data(shape, TensorData::I64(v.to_vec())).unwrap()
}

fn i32s(shape: &[usize], v: &[i32]) -> Tensor {
    Tensor::from_data(shape, TensorData::I32(v.to_vec())).unwrap()
}

/// Counting values 0, 1, 2, ... (so a wrong index shows as a wrong value).
fn iota(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::new(shape, (0..n).map(|i| i as f32).collect()).unwrap()
}

/// Options for a GPU test: no autotune, no CPU fallback (the node must run on the GPU), the
/// session's build passes on (they absorb shape-like inputs into attributes).
fn gpu_opts(fallback: bool) -> SessionOptions {
    let mut o = SessionOptions {
        autotune: false,
        ..Default::default()
    };
    o.plan.cpu_fallback = fallback;
    o
}

/// The reference on `inputs`; the CPU session must agree; the GPU (the node on the GPU, no
/// fallback) must equal it within `tol` (0: bit for bit).
fn check_tol(what: &str, op: Op, inputs: &[&Tensor], consts: &[bool], tol: f32) -> Tensor {
    let want = op
        .cpu(inputs)
        .unwrap_or_else(|e| panic!("{what}: cpu reference: {e}"));
    let (model, feeds) = single_op(op, inputs, consts);
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
    match gpu() {
        Some(ctx) => {
            let got = run_gpu(&ctx, &model, &feeds, gpu_opts(false));
            if tol == 0.0 {
                assert_eq!(got[0], want, "{what}: gpu");
            } else {
                assert_close(what, &got[0], &want, tol, tol);
            }
        }
        None => skip_gpu_check(what),
    }
    want
}

fn check(what: &str, op: Op, inputs: &[&Tensor], consts: &[bool]) -> Tensor {
    check_tol(what, op, inputs, consts, 0.0)
}

/// A dtype no kernel takes: the plan places the node on the CPU and the result still matches.
fn check_cpu_placed(what: &str, op: Op, inputs: &[&Tensor], consts: &[bool]) -> Tensor {
    let want = op
        .cpu(inputs)
        .unwrap_or_else(|e| panic!("{what}: cpu reference: {e}"));
    let (model, feeds) = single_op(op, inputs, consts);
    match gpu() {
        Some(ctx) => {
            let s = Session::with_context(&model, ctx, gpu_opts(true)).unwrap();
            assert!(
                !s.notices().is_empty(),
                "{what}: expected a CPU node notice"
            );
            assert_eq!(s.run(&feeds_ref(&feeds)).unwrap()[0], want, "{what}");
        }
        None => skip_gpu_check(what),
    }
    want
}

/// A model with one node over inputs `x0, x1, ...` of the tensors' dtypes; entries of `consts`
/// make that input a weight.
fn single_op(op: Op, inputs: &[&Tensor], consts: &[bool]) -> (Model, Vec<(String, Tensor)>) {
    let mut b = GraphBuilder::new();
    let mut names = Vec::new();
    let mut feeds = Vec::new();
    for (i, t) in inputs.iter().enumerate() {
        let name = format!("x{i}");
        if consts.get(i).copied().unwrap_or(false) {
            names.push(b.weight(&name, (*t).clone()));
        } else {
            names.push(b.input_typed(&name, t.dtype(), t.shape()));
            feeds.push((name, (*t).clone()));
        }
    }
    let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let y = b.node(op, &refs);
    b.output(&y);
    (
        Model::from_builder(b).expect("valid single-op model"),
        feeds,
    )
}

fn f32s(t: &Tensor) -> Vec<f32> {
    t.f32s("t").unwrap().to_vec()
}

fn err_of(op: Op, inputs: &[&Tensor]) -> String {
    op.cpu(inputs).unwrap_err().to_string()
}

// ---------------------------------------------------------------------------------------------

#[test]
fn slice_attributes_and_inputs() {
    let x = iota(&[4, 5]);
    // numpy x[1:3, ::-2] = rows 1..3, columns 4, 2, 0.
    let op: Op = Slice {
        starts: vec![1, -1],
        ends: vec![3, i64::MIN],
        axes: vec![],
        steps: vec![1, -2],
    }
    .into();
    let y = check("slice neg step", op, &[&x], &[]);
    assert_eq!(y.shape(), &[2, 3]);
    assert_eq!(f32s(&y), vec![9., 7., 5., 14., 12., 10.]);

    // Input form (opset >= 10), bounds as i64 weights; out-of-range ends clamp; negative axis.
    let op: Op = Slice::default().into();
    let starts = i64s(&[1], &[-100]);
    let ends = i64s(&[1], &[i64::MAX]);
    let axes = i64s(&[1], &[-1]);
    let steps = i64s(&[1], &[3]);
    let y = check(
        "slice inputs",
        op,
        &[&x, &starts, &ends, &axes, &steps],
        &[false, true, true, true, true],
    );
    assert_eq!(f32s(&y), vec![0., 3., 5., 8., 10., 13., 15., 18.]);

    // Ranks 1..6, odd sizes; i32 bounds.
    let mut shape = Vec::new();
    for r in 1..=6 {
        shape.push(if r % 2 == 0 { 3 } else { 2 + r });
        let x = Tensor::random(&shape, r as u64);
        let d = shape[r - 1] as i32;
        let op: Op = Slice::default().into();
        // Rank 1 slices its one axis once.
        let k = if r == 1 { 1 } else { 2 };
        let starts = i32s(&[k], &[d - 1, 0][..k]);
        let ends = i32s(&[k], &[-d - 5, 1][..k]);
        let axes = i32s(&[k], &[-1, 0][..k]);
        let steps = i32s(&[k], &[-1, 1][..k]);
        check(
            &format!("slice rank {r}"),
            op,
            &[&x, &starts, &ends, &axes, &steps],
            &[false, true, true, true, true],
        );
    }

    // i32 data on the GPU, i64 and bool data on the CPU.
    let xi = i32s(&[2, 3], &[1, -2, 3, -4, 5, -6]);
    let op: Op = Slice {
        starts: vec![1],
        ends: vec![3],
        axes: vec![1],
        steps: vec![],
    }
    .into();
    let y = check("slice i32", op.clone(), &[&xi], &[]);
    assert_eq!(y, i32s(&[2, 2], &[-2, 3, 5, -6]));
    let xl = i64s(&[2, 3], &[1, 2, 3, 4, 5, i64::MAX]);
    let y = check_cpu_placed("slice i64", op, &[&xl], &[]);
    assert_eq!(y, i64s(&[2, 2], &[2, 3, 5, i64::MAX]));
}

#[test]
fn slice_bad_input() {
    let x = iota(&[4, 5]);
    let bad = |s: Slice, want: &str| {
        let e = err_of(s.into(), &[&x]);
        assert!(e.contains(want), "{e}");
    };
    bad(
        Slice {
            starts: vec![0],
            ends: vec![1],
            axes: vec![],
            steps: vec![0],
        },
        "steps[0] is 0",
    );
    bad(
        Slice {
            starts: vec![0],
            ends: vec![1],
            axes: vec![2],
            steps: vec![],
        },
        "slice axes",
    );
    bad(
        Slice {
            starts: vec![0, 0],
            ends: vec![1],
            axes: vec![],
            steps: vec![],
        },
        "one entry per sliced axis",
    );
    bad(
        Slice {
            starts: vec![0, 0],
            ends: vec![1, 1],
            axes: vec![1, -1],
            steps: vec![],
        },
        "given twice",
    );
    // Empty result.
    let e = Op::from(Slice {
        starts: vec![3],
        ends: vec![1],
        axes: vec![],
        steps: vec![],
    })
    .cpu(&[&x])
    .unwrap_err()
    .to_string();
    assert!(e.contains("empty"), "{e}");
    // Bounds from a runtime input are refused at planning, by name.
    let mut b = GraphBuilder::new();
    let xi = b.input("x", &[4, 5]);
    let s = b.input_typed("s", DType::I64, &[1]);
    let e = b.weight("e", i64s(&[1], &[2]));
    let y = b.node(Slice::default().into(), &[&xi, &s, &e]);
    b.output(&y);
    let err = b.build().unwrap_err().to_string();
    assert!(err.contains("slice starts (input 1)"), "{err}");
}

#[test]
fn squeeze_unsqueeze_alias() {
    let x = Tensor::random(&[1, 3, 1, 2], 1);
    let y = check("squeeze all", Squeeze { axes: None }.into(), &[&x], &[]);
    assert_eq!(y.shape(), &[3, 2]);
    let y = check(
        "squeeze -2",
        Squeeze {
            axes: Some(vec![-2]),
        }
        .into(),
        &[&x],
        &[],
    );
    assert_eq!(y.shape(), &[1, 3, 2]);
    // Opset-13 form: axes as input 1.
    let axes = i64s(&[2], &[0, 2]);
    let y = check(
        "squeeze input",
        Squeeze::default().into(),
        &[&x, &axes],
        &[false, true],
    );
    assert_eq!(y.shape(), &[3, 2]);
    let y = check(
        "unsqueeze",
        Unsqueeze { axes: vec![0, -1] }.into(),
        &[&x],
        &[],
    );
    assert_eq!(y.shape(), &[1, 1, 3, 1, 2, 1]);
    let axes = i64s(&[1], &[2]);
    let y = check(
        "unsqueeze input",
        Unsqueeze::default().into(),
        &[&x, &axes],
        &[false, true],
    );
    assert_eq!(y.shape(), &[1, 3, 1, 1, 2]);
    assert_eq!(f32s(&y), f32s(&x));

    let e = err_of(
        Squeeze {
            axes: Some(vec![1]),
        }
        .into(),
        &[&x],
    );
    assert!(e.contains("size 1 along axis 1"), "{e}");
    let e = err_of(Unsqueeze { axes: vec![1, 1] }.into(), &[&x]);
    assert!(e.contains("given twice"), "{e}");
    let e = err_of(Unsqueeze { axes: vec![7] }.into(), &[&x]);
    assert!(e.contains("unsqueeze axes"), "{e}");
}

#[test]
fn gather_embedding_and_slices() {
    // Embedding: constant [V, D] table, runtime i64 ids [B, S] (negative counts from the end).
    let table = Tensor::random(&[11, 7], 3);
    let ids = i64s(&[2, 3], &[0, 10, -1, 5, -11, 3]);
    let y = check(
        "gather embedding",
        Gather { axis: 0 }.into(),
        &[&table, &ids],
        &[true, false],
    );
    assert_eq!(y.shape(), &[2, 3, 7]);
    let t = f32s(&table);
    assert_eq!(&f32s(&y)[7..14], &t[70..77]);
    assert_eq!(&f32s(&y)[14..21], &t[70..77]);
    assert_eq!(&f32s(&y)[28..35], &t[0..7]);
    // i32 ids.
    let ids32 = i32s(&[3], &[2, -2, 0]);
    check(
        "gather i32 ids",
        Gather { axis: 0 }.into(),
        &[&table, &ids32],
        &[true, false],
    );
    // Constant indices on a runtime tensor: picking a slice along a middle/negative axis; a
    // scalar index drops the axis.
    let x = iota(&[2, 3, 4]);
    let k = i64s(&[], &[-1]);
    let y = check(
        "gather scalar index",
        Gather { axis: -2 }.into(),
        &[&x, &k],
        &[false, true],
    );
    assert_eq!(y.shape(), &[2, 4]);
    assert_eq!(f32s(&y), vec![8., 9., 10., 11., 20., 21., 22., 23.]);
    let k = i64s(&[2, 2], &[3, 0, 1, 1]);
    check(
        "gather last axis",
        Gather { axis: 2 }.into(),
        &[&x, &k],
        &[false, true],
    );
    // i64 data (a shape) runs on the CPU inside the plan.
    let shape = i64s(&[4], &[1, 3, 640, 640]);
    let k = i64s(&[2], &[2, 3]);
    let y = check_cpu_placed(
        "gather i64 data",
        Gather { axis: 0 }.into(),
        &[&shape, &k],
        &[false, true],
    );
    assert_eq!(y, i64s(&[2], &[640, 640]));

    let e = err_of(Gather { axis: 0 }.into(), &[&table, &i64s(&[1], &[11])]);
    assert!(
        e.contains("gather indices") && e.contains("index 11"),
        "{e}"
    );
    let e = err_of(Gather { axis: 2 }.into(), &[&table, &i64s(&[1], &[0])]);
    assert!(e.contains("gather axis"), "{e}");
    let e = Op::from(Gather { axis: 0 })
        .infer(&[
            wgedge::tensor::ValueType::f32(&[3]),
            wgedge::tensor::ValueType::f32(&[1]),
        ])
        .unwrap_err()
        .to_string();
    assert!(e.contains("gather indices (input 1)"), "{e}");
}

#[test]
fn expand_and_tile() {
    let x = iota(&[3, 1]);
    let y = check(
        "expand",
        Expand {
            shape: vec![2, 1, 4],
        }
        .into(),
        &[&x],
        &[],
    );
    assert_eq!(y.shape(), &[2, 3, 4]);
    assert_eq!(
        &f32s(&y)[..12],
        &[0., 0., 0., 0., 1., 1., 1., 1., 2., 2., 2., 2.]
    );
    // Input form; a shape of lower rank with 1s keeps the input's dims.
    let s = i64s(&[1], &[1]);
    let y = check(
        "expand input",
        Expand::default().into(),
        &[&x, &s],
        &[false, true],
    );
    assert_eq!(y, x);
    let x6 = Tensor::random(&[1, 2, 1, 3, 1, 1], 4);
    let s = i64s(&[6], &[2, 2, 3, 3, 1, 5]);
    check(
        "expand rank 6",
        Expand::default().into(),
        &[&x6, &s],
        &[false, true],
    );
    let e = err_of(Expand { shape: vec![2, 2] }.into(), &[&x]);
    assert!(e.contains("expand"), "{e}");

    let y = check(
        "tile",
        Tile {
            repeats: vec![2, 3],
        }
        .into(),
        &[&iota(&[2, 1])],
        &[],
    );
    assert_eq!(y.shape(), &[4, 3]);
    assert_eq!(
        f32s(&y),
        vec![0., 0., 0., 1., 1., 1., 0., 0., 0., 1., 1., 1.]
    );
    let r = i64s(&[3], &[1, 2, 3]);
    check(
        "tile input",
        Tile::default().into(),
        &[&Tensor::random(&[3, 5, 1], 5), &r],
        &[false, true],
    );
    let e = err_of(Tile { repeats: vec![1] }.into(), &[&x]);
    assert!(e.contains("tile repeats"), "{e}");
    let e = err_of(
        Tile {
            repeats: vec![1, 0],
        }
        .into(),
        &[&x],
    );
    assert!(e.contains("repeats[1] = 0"), "{e}");
}

#[test]
fn pad_modes() {
    let x = iota(&[1, 3]);
    let pad = |mode, pads: Vec<i64>, value| -> Op {
        Pad {
            mode,
            pads,
            value,
            axes: vec![],
        }
        .into()
    };
    // numpy.pad([0, 1, 2], (2, 3), mode=...) by hand.
    let row = |mode, value| {
        let y = check(
            &format!("pad {mode:?}"),
            pad(mode, vec![0, 2, 0, 3], value),
            &[&x],
            &[],
        );
        f32s(&y)
    };
    assert_eq!(
        row(PadMode::Constant, 7.5),
        [7.5, 7.5, 0., 1., 2., 7.5, 7.5, 7.5]
    );
    assert_eq!(row(PadMode::Reflect, 0.0), [2., 1., 0., 1., 2., 1., 0., 1.]);
    assert_eq!(row(PadMode::Edge, 0.0), [0., 0., 0., 1., 2., 2., 2., 2.]);
    assert_eq!(row(PadMode::Wrap, 0.0), [1., 2., 0., 1., 2., 0., 1., 2.]);
    // Negative pads crop.
    let y = check(
        "pad crop",
        pad(PadMode::Constant, vec![0, -1, 1, 1], 0.0),
        &[&x],
        &[],
    );
    assert_eq!(y.shape(), &[2, 3]);
    assert_eq!(f32s(&y), [1., 2., 0., 0., 0., 0.]);
    // Opset-11 form with constant_value and opset-18 axes as inputs; NCHW spatial pads.
    let x4 = Tensor::random(&[2, 3, 5, 4], 6);
    let pads = i64s(&[4], &[1, 2, 0, 3]);
    let cv = Tensor::new(&[], vec![-3.0]).unwrap();
    let axes = i64s(&[2], &[-2, -1]);
    for mode in [
        PadMode::Constant,
        PadMode::Reflect,
        PadMode::Edge,
        PadMode::Wrap,
    ] {
        check(
            &format!("pad inputs {mode:?}"),
            pad(mode, vec![], 0.0),
            &[&x4, &pads, &cv, &axes],
            &[false, true, true, true],
        );
    }
    // i32 data: on the GPU with a fill of 0, on the CPU with another fill.
    let xi = i32s(&[2, 2], &[1, 2, 3, 4]);
    check(
        "pad i32",
        pad(PadMode::Constant, vec![1, 0, 0, 1], 0.0),
        &[&xi],
        &[],
    );
    let y = check_cpu_placed(
        "pad i32 fill 9",
        pad(PadMode::Constant, vec![0, 0, 0, 1], 9.0),
        &[&xi],
        &[],
    );
    assert_eq!(y, i32s(&[2, 3], &[1, 2, 9, 3, 4, 9]));

    let e = err_of(pad(PadMode::Constant, vec![1, 1], 0.0), &[&x]);
    assert!(e.contains("pad pads"), "{e}");
    let e = err_of(pad(PadMode::Constant, vec![0, -3, 0, 0], 0.0), &[&x]);
    assert!(e.contains("non-empty"), "{e}");
}

#[test]
fn depth_space_moves() {
    // DCR by hand: [1, 4, 1, 1] -> [1, 1, 2, 2] keeps channel order as (row, col).
    let x = iota(&[1, 4, 1, 2]);
    let y = check(
        "d2s dcr",
        DepthToSpace {
            blocksize: 2,
            crd: false,
        }
        .into(),
        &[&x],
        &[],
    );
    assert_eq!(y.shape(), &[1, 1, 2, 4]);
    assert_eq!(f32s(&y), [0., 2., 1., 3., 4., 6., 5., 7.]);
    let x = Tensor::random(&[2, 18, 3, 5], 7);
    for crd in [false, true] {
        let d2s = check(
            &format!("d2s crd={crd}"),
            DepthToSpace { blocksize: 3, crd }.into(),
            &[&x],
            &[],
        );
        assert_eq!(d2s.shape(), &[2, 2, 9, 15]);
        // SpaceToDepth inverts DCR DepthToSpace.
        if !crd {
            let back = check("s2d", SpaceToDepth { blocksize: 3 }.into(), &[&d2s], &[]);
            assert_eq!(back, x);
        }
    }
    let e = err_of(
        DepthToSpace {
            blocksize: 4,
            crd: false,
        }
        .into(),
        &[&x],
    );
    assert!(e.contains("divisible"), "{e}");
    let e = err_of(SpaceToDepth { blocksize: 2 }.into(), &[&x]);
    assert!(e.contains("divisible"), "{e}");
}

#[test]
fn transpose_default_perm_and_i64() {
    let x = Tensor::random(&[2, 3, 4], 8);
    let y = check(
        "transpose default",
        Transpose { perm: vec![] }.into(),
        &[&x],
        &[],
    );
    assert_eq!(y.shape(), &[4, 3, 2]);
    let s = i64s(&[2, 2], &[1, 2, 3, 4]);
    let y = check_cpu_placed(
        "transpose i64",
        Transpose { perm: vec![] }.into(),
        &[&s],
        &[],
    );
    assert_eq!(y, i64s(&[2, 2], &[1, 3, 2, 4]));
    // Concat on i64 (shape subgraphs) on the CPU.
    let y = Op::from(Concat { axis: -1 })
        .cpu(&[&i64s(&[2], &[1, 2]), &i64s(&[1], &[-1])])
        .unwrap();
    assert_eq!(y, i64s(&[3], &[1, 2, -1]));
}

/// More than 65,535 workgroups of 256 (a flat id split over x and y).
#[test]
fn large_outputs() {
    let table = Tensor::random(&[300, 64], 10);
    let n = 300_000;
    let ids: Vec<i64> = (0..n).map(|i| (i * 7919 % 600) as i64 - 300).collect();
    let ids = i64s(&[n], &ids);
    let y = check(
        "gather large",
        Gather { axis: 0 }.into(),
        &[&table, &ids],
        &[true, false],
    );
    assert!(y.numel() / 256 > 65_535);
}

/// Shape-like inputs computed from shapes (Shape -> Gather -> Concat -> Expand) resolve at
/// plan time, and the session absorbs them.
#[test]
fn shape_subgraph_feeds_expand() {
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[1, 4]);
    let z = b.input("z", &[3, 5]);
    let sz = b.shape(&z);
    let k = b.weight("k", i64s(&[1], &[0]));
    let rows = b.gather(&sz, &k, 0);
    let four = b.weight("four", i64s(&[1], &[4]));
    let target = b.concat(&[&rows, &four], 0);
    let y = b.node(Expand::default().into(), &[&x, &target]);
    b.output(&y);
    let model = Model::from_builder(b).unwrap();
    let xv = Tensor::random(&[1, 4], 11);
    let zv = Tensor::random(&[3, 5], 12);
    let cpu = Session::cpu(&model, SessionOptions::default()).unwrap();
    let want = cpu.run(&[("x", &xv), ("z", &zv)]).unwrap();
    assert_eq!(want[0].shape(), &[3, 4]);
    match gpu() {
        Some(ctx) => {
            let s = Session::with_context(&model, ctx, gpu_opts(false)).unwrap();
            assert_eq!(s.run(&[("x", &xv), ("z", &zv)]).unwrap(), want);
        }
        None => skip_gpu_check("expand by shape subgraph"),
    }
}

fn resize(mode: ResizeMode, coord: CoordMode, nearest: NearestMode) -> Resize {
    Resize {
        mode,
        coordinate_transformation_mode: coord,
        nearest_mode: nearest,
        ..Default::default()
    }
}

#[test]
fn resize_by_hand() {
    let x = Tensor::new(&[1, 1, 2, 2], vec![1., 2., 3., 4.]).unwrap();
    let scales = vec![1., 1., 2., 2.];
    // Nearest x2 (asymmetric, floor): each pixel repeated 2x2.
    let op = Resize {
        scales: scales.clone(),
        ..resize(
            ResizeMode::Nearest,
            CoordMode::Asymmetric,
            NearestMode::Floor,
        )
    };
    let y = check("resize nearest x2", op.into(), &[&x], &[]);
    assert_eq!(
        f32s(&y),
        [1., 1., 2., 2., 1., 1., 2., 2., 3., 3., 4., 4., 3., 3., 4., 4.]
    );
    // Bilinear x2, half_pixel (PyTorch's align_corners=False).
    let op = Resize {
        scales: scales.clone(),
        ..resize(
            ResizeMode::Linear,
            CoordMode::HalfPixel,
            NearestMode::default(),
        )
    };
    let y = check_tol("resize linear x2", op.into(), &[&x], &[], 1e-6);
    #[rustfmt::skip]
    let want = [
        1.0, 1.25, 1.75, 2.0,
        1.5, 1.75, 2.25, 2.5,
        2.5, 2.75, 3.25, 3.5,
        3.0, 3.25, 3.75, 4.0,
    ];
    assert_eq!(f32s(&y), want);
    // align_corners: corners kept, thirds in between.
    let op = Resize {
        sizes: vec![1, 1, 2, 4],
        ..resize(
            ResizeMode::Linear,
            CoordMode::AlignCorners,
            NearestMode::default(),
        )
    };
    let y = check_tol("resize linear align", op.into(), &[&x], &[], 1e-6);
    let want = [
        1.0,
        4.0 / 3.0,
        5.0 / 3.0,
        2.0,
        3.0,
        10.0 / 3.0,
        11.0 / 3.0,
        4.0,
    ];
    for (g, w) in f32s(&y).iter().zip(want) {
        assert!((g - w).abs() < 1e-6, "{g} vs {w}");
    }
}

#[test]
fn resize_modes_gpu_vs_cpu() {
    let coords = [
        CoordMode::HalfPixel,
        CoordMode::PytorchHalfPixel,
        CoordMode::AlignCorners,
        CoordMode::Asymmetric,
        CoordMode::TfHalfPixelForNearest,
    ];
    let nearests = [
        NearestMode::RoundPreferFloor,
        NearestMode::RoundPreferCeil,
        NearestMode::Floor,
        NearestMode::Ceil,
    ];
    let x = Tensor::random(&[2, 3, 5, 7], 13);
    // Up, down, non-integer factors, a length-1 output.
    let shapes: [(Vec<f32>, Vec<i64>); 4] = [
        (vec![1., 1., 2., 2.], vec![]),
        (vec![1., 1., 0.6, 1.5], vec![]),
        (vec![], vec![2, 3, 9, 4]),
        (vec![], vec![2, 3, 1, 13]),
    ];
    for (scales, sizes) in &shapes {
        for &c in &coords {
            for &nm in &nearests {
                let op = Resize {
                    scales: scales.clone(),
                    sizes: sizes.clone(),
                    ..resize(ResizeMode::Nearest, c, nm)
                };
                check(
                    &format!("nearest {c:?} {nm:?} {scales:?}{sizes:?}"),
                    op.into(),
                    &[&x],
                    &[],
                );
            }
            if c == CoordMode::TfHalfPixelForNearest {
                continue;
            }
            let op = Resize {
                scales: scales.clone(),
                sizes: sizes.clone(),
                ..resize(ResizeMode::Linear, c, NearestMode::default())
            };
            check_tol(
                &format!("linear {c:?} {scales:?}{sizes:?}"),
                op.into(),
                &[&x],
                &[],
                1e-6,
            );
        }
    }
    // Rank 3 and 1, opset-18 axes.
    let x3 = Tensor::random(&[3, 4, 5], 14);
    let op = Resize {
        scales: vec![2.0, 3.0],
        axes: vec![-2, -1],
        ..resize(
            ResizeMode::Linear,
            CoordMode::HalfPixel,
            NearestMode::default(),
        )
    };
    let y = check_tol("linear rank 3 axes", op.into(), &[&x3], &[], 1e-6);
    assert_eq!(y.shape(), &[3, 8, 15]);
    let x1 = Tensor::random(&[5], 15);
    let op = Resize {
        sizes: vec![11],
        ..resize(
            ResizeMode::Nearest,
            CoordMode::HalfPixel,
            NearestMode::RoundPreferCeil,
        )
    };
    check("nearest rank 1", op.into(), &[&x1], &[]);
}

#[test]
fn resize_input_forms_and_errors() {
    let x = Tensor::random(&[1, 2, 3, 4], 16);
    let scales = Tensor::new(&[4], vec![1., 1., 2., 2.]).unwrap();
    let op: Op = resize(
        ResizeMode::Nearest,
        CoordMode::Asymmetric,
        NearestMode::Floor,
    )
    .into();
    // Opset 10: (x, scales).
    let a = check(
        "resize opset 10",
        op.clone(),
        &[&x, &scales],
        &[false, true],
    );
    // Opset 11+: (x, roi, scales); (x, roi, empty scales, sizes).
    let roi = Tensor::new(&[0], vec![]).unwrap();
    let b = check(
        "resize opset 11",
        op.clone(),
        &[&x, &roi, &scales],
        &[false, true, true],
    );
    let sizes = i64s(&[4], &[1, 2, 6, 8]);
    let c = check(
        "resize opset 13 sizes",
        op.clone(),
        &[&x, &roi, &roi, &sizes],
        &[false, true, true, true],
    );
    assert_eq!(a, b);
    assert_eq!(a, c);

    let bad = |r: Resize, want: &str| {
        let e = err_of(r.into(), &[&x]);
        assert!(e.contains(want), "{e}");
    };
    let cubic = Resize {
        scales: vec![1., 1., 2., 2.],
        ..resize(
            ResizeMode::Cubic,
            CoordMode::HalfPixel,
            NearestMode::default(),
        )
    };
    bad(cubic, "cubic");
    bad(
        Resize {
            scales: vec![2., 1., 2., 2.],
            ..Default::default()
        },
        "only the last two dims",
    );
    bad(
        Resize {
            scales: vec![1., 2.],
            ..Default::default()
        },
        "resize scales",
    );
    bad(
        Resize {
            scales: vec![1., 1., 2., 2.],
            sizes: vec![1, 2, 6, 8],
            ..Default::default()
        },
        "exactly one of scales and sizes",
    );
    bad(
        Resize {
            scales: vec![1., 1., -2., 2.],
            ..Default::default()
        },
        "not a positive number",
    );
}

fn pool(kind: PoolKind, kernel: [usize; 2]) -> Pool {
    Pool {
        kind,
        kernel,
        ..Default::default()
    }
}

#[test]
fn pooling_options() {
    // 1-D by hand over [1, 1, 1, 6] = 0..6: max k3 s2 ceil_mode -> windows [0,3), [2,5), and
    // a third starting at 4 inside the input (kept); floor mode keeps two.
    let x = iota(&[1, 1, 1, 6]);
    let p = Pool {
        stride: [1, 2],
        ceil_mode: true,
        ..pool(PoolKind::Max, [1, 3])
    };
    let y = check("max ceil", p.into(), &[&x], &[]);
    assert_eq!(f32s(&y), [2., 4., 5.]);
    // With pads 1/1 and k2 s2 over 0..5 (padded 7): ceil gives 4 windows, but the 4th would
    // start at 5 = in the end padding only: dropped, as ONNX and PyTorch do.
    let x = iota(&[1, 1, 1, 5]);
    let p = Pool {
        stride: [1, 2],
        pad: [0, 1, 0, 1],
        ceil_mode: true,
        ..pool(PoolKind::Max, [1, 2])
    };
    assert_eq!(
        f32s(&check("max ceil drop", p.into(), &[&x], &[])),
        [0., 2., 4.]
    );
    // Dilation 2: taps 0, 2, 4 -> max 4; avg with pads counting the padding: window at -1
    // (k 2, pads 1/1): taps -1, 0 -> 0 / 2.
    let p = Pool {
        dilation: [1, 2],
        ..pool(PoolKind::Max, [1, 3])
    };
    assert_eq!(f32s(&check("max dilated", p.into(), &[&x], &[])), [4.]);
    let p = Pool {
        stride: [1, 2],
        pad: [0, 1, 0, 1],
        count_include_pad: true,
        ..pool(PoolKind::Avg, [1, 2])
    };
    assert_eq!(
        f32s(&check("avg include pad", p.into(), &[&x], &[])),
        [0., 1.5, 3.5]
    );
    // Lp p=2 over [3, 4] = 5; GlobalLpPool and GlobalMaxPool.
    let x2 = Tensor::new(&[1, 1, 1, 2], vec![3., -4.]).unwrap();
    let y = check_tol("lp2", pool(PoolKind::Lp, [1, 2]).into(), &[&x2], &[], 1e-5);
    assert_eq!(f32s(&y), [5.]);
    let g = Pool {
        global: true,
        ..pool(PoolKind::Max, [0, 0])
    };
    assert_eq!(f32s(&check("global max", g.into(), &[&x2], &[])), [3.]);

    // GPU vs CPU over options on odd shapes (tolerance in the file header).
    let x = Tensor::random(&[2, 3, 11, 8], 21);
    let kinds = [
        (PoolKind::Max, false),
        (PoolKind::Avg, false),
        (PoolKind::Avg, true),
        (PoolKind::Lp, false),
    ];
    let geoms: Vec<Pool> = vec![
        Pool {
            stride: [2, 2],
            pad: [1, 0, 2, 1],
            ceil_mode: true,
            ..pool(PoolKind::Max, [3, 3])
        },
        Pool {
            stride: [2, 1],
            dilation: [2, 3],
            pad: [2, 1, 1, 2],
            ..pool(PoolKind::Max, [3, 2])
        },
        Pool {
            stride: [3, 3],
            auto_pad: AutoPad::SameUpper,
            ceil_mode: true,
            ..pool(PoolKind::Max, [3, 2])
        },
        Pool {
            stride: [2, 3],
            auto_pad: AutoPad::SameLower,
            ..pool(PoolKind::Max, [4, 3])
        },
        Pool {
            stride: [2, 2],
            auto_pad: AutoPad::Valid,
            ..pool(PoolKind::Max, [2, 3])
        },
        Pool {
            global: true,
            ..pool(PoolKind::Max, [0, 0])
        },
    ];
    for g in &geoms {
        for &(kind, include) in &kinds {
            for lp in [2, 3] {
                if lp == 3 && kind != PoolKind::Lp {
                    continue;
                }
                let p = Pool {
                    kind,
                    count_include_pad: include,
                    p: lp,
                    ..*g
                };
                check_tol(&format!("{p:?}"), p.into(), &[&x], &[], 1e-5);
            }
        }
    }
    // SAME_UPPER keeps ceil(in / stride) whatever the input (resolved at shape inference).
    let p = Pool {
        stride: [2, 3],
        auto_pad: AutoPad::SameUpper,
        ..pool(PoolKind::Avg, [3, 3])
    };
    let y = Op::from(p).infer_shape(&[vec![1, 2, 11, 8]]).unwrap();
    assert_eq!(y, [1, 2, 6, 3]);
    let y = Op::from(p).infer_shape(&[vec![1, 2, 7, 30]]).unwrap();
    assert_eq!(y, [1, 2, 4, 10]);

    let e = err_of(
        Pool {
            dilation: [0, 1],
            ..pool(PoolKind::Max, [2, 2])
        }
        .into(),
        &[&x],
    );
    assert!(e.contains("dilation"), "{e}");
    let e = err_of(
        Pool {
            p: 0,
            ..pool(PoolKind::Lp, [2, 2])
        }
        .into(),
        &[&x],
    );
    assert!(e.contains("attribute p"), "{e}");
    let e = err_of(
        pool(PoolKind::Max, [2, 2]).into(),
        &[&Tensor::random(&[3, 4], 1)],
    );
    assert!(e.contains("NCHW"), "{e}");
}

/// numpy `matmul` written out: batch dims broadcast, 1-D operands as vectors (the oracle).
fn np_matmul(a: &Tensor, b: &Tensor) -> (Vec<usize>, Vec<f32>) {
    let (sa, sb) = (a.shape().to_vec(), b.shape().to_vec());
    let a2 = if sa.len() == 1 {
        vec![1, sa[0]]
    } else {
        sa.clone()
    };
    let b2 = if sb.len() == 1 {
        vec![sb[0], 1]
    } else {
        sb.clone()
    };
    let (m, k, n) = (a2[a2.len() - 2], a2[a2.len() - 1], b2[b2.len() - 1]);
    let (ba, bb) = (&a2[..a2.len() - 2], &b2[..b2.len() - 2]);
    let r = ba.len().max(bb.len());
    let pad = |s: &[usize]| [vec![1; r - s.len()], s.to_vec()].concat();
    let (pa, pb) = (pad(ba), pad(bb));
    let ob: Vec<usize> = pa.iter().zip(&pb).map(|(&x, &y)| x.max(y)).collect();
    let (xa, xb) = (a.f32s("a").unwrap(), b.f32s("b").unwrap());
    let mut y = Vec::new();
    for bat in 0..ob.iter().product::<usize>() {
        // Row-major index into each operand's own batch dims (size-1 dims read index 0).
        let (mut rem, mut ia, mut ib, mut st_a, mut st_b) = (bat, 0, 0, 1, 1);
        for d in (0..r).rev() {
            let i = rem % ob[d];
            rem /= ob[d];
            ia += if pa[d] == 1 { 0 } else { i * st_a };
            ib += if pb[d] == 1 { 0 } else { i * st_b };
            st_a *= pa[d];
            st_b *= pb[d];
        }
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0f32;
                for kk in 0..k {
                    s += xa[ia * m * k + i * k + kk] * xb[ib * k * n + kk * n + j];
                }
                y.push(s);
            }
        }
    }
    let mut shape = ob;
    if sa.len() > 1 {
        shape.push(m);
    }
    if sb.len() > 1 {
        shape.push(n);
    }
    (shape, y)
}

#[test]
fn matmul_batch_broadcasting() {
    // (A, B, whether the GPU kernels take it): same batches, B shared by size-1 dims, and the
    // broadcasts the kernels' one batch stride cannot express (placed on the CPU).
    let cases: Vec<(Vec<usize>, Vec<usize>, bool)> = vec![
        (vec![2, 3, 4, 5], vec![2, 3, 5, 6], true),
        (vec![2, 3, 4, 5], vec![1, 1, 5, 6], true),
        (vec![2, 3, 4, 5], vec![5, 6], true),
        (vec![1, 3, 4, 5], vec![2, 3, 5, 6], false),
        (vec![2, 3, 4, 5], vec![1, 3, 5, 6], false),
        (vec![4, 5], vec![2, 5, 3], false),
        (vec![3, 1, 4, 5], vec![1, 2, 5, 3], false),
        (vec![4, 5], vec![5], false),
        (vec![5], vec![2, 5, 3], false),
        (vec![5], vec![5], false),
    ];
    for (i, (sa, sb, gpu_ok)) in cases.into_iter().enumerate() {
        let a = Tensor::random(&sa, 30 + i as u64);
        let b = Tensor::random(&sb, 60 + i as u64);
        let what = format!("matmul {sa:?} x {sb:?}");
        let op: Op = MatMul::default().into();
        let (shape, want) = np_matmul(&a, &b);
        // The oracle adds in the same k order: equal up to FMA contraction on the GPU
        // (K = 5 terms in [-1, 1]: 2e-6 * K).
        let got = if gpu_ok {
            // Every kernel variant, with B a runtime value and a weight.
            let want = op.cpu(&[&a, &b]).unwrap();
            for consts in [[false, false], [false, true]] {
                let (model, feeds) = single_op(op.clone(), &[&a, &b], &consts);
                let ran = check_gpu_kernels(&what, &model, &feeds, &want, 1e-5, 1e-5);
                assert!(gpu().is_none() || !ran.is_empty(), "{what}");
            }
            check_tol(&what, op, &[&a, &b], &[], 1e-5)
        } else {
            check_cpu_placed(&what, op, &[&a, &b], &[])
        };
        assert_eq!(got.shape(), shape.as_slice(), "{what}");
        for (g, w) in f32s(&got).iter().zip(&want) {
            assert!((g - w).abs() <= 1e-5, "{what}: {g} vs {w}");
        }
    }
    let e = err_of(
        MatMul::default().into(),
        &[
            &Tensor::random(&[2, 4, 5], 1),
            &Tensor::random(&[3, 5, 6], 2),
        ],
    );
    assert!(e.contains("broadcastable"), "{e}");
}

/// Shape-like inputs computed from runtime values are refused when the graph is checked, with
/// the op and the input named; a constant_value of another dtype is refused too.
#[test]
fn runtime_shape_inputs_are_named() {
    let refuse = |op: Op, extra: &[(&str, DType, &[usize])], want: &str| {
        let mut b = GraphBuilder::new();
        let x = b.input("x", &[1, 2, 3, 4]);
        let mut names = vec![x];
        for (name, dt, shape) in extra {
            names.push(b.input_typed(name, *dt, shape));
        }
        let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        let y = b.node(op, &refs);
        b.output(&y);
        let err = b.build().unwrap_err().to_string();
        assert!(err.contains(want), "{err}");
    };
    refuse(
        Expand::default().into(),
        &[("s", DType::I64, &[4])],
        "expand shape (input 1)",
    );
    refuse(
        Tile::default().into(),
        &[("r", DType::I64, &[4])],
        "tile repeats (input 1)",
    );
    refuse(
        Pad::default().into(),
        &[("p", DType::I64, &[8])],
        "pad pads (input 1)",
    );
    refuse(
        Unsqueeze::default().into(),
        &[("a", DType::I64, &[1])],
        "unsqueeze: its axes (input 1)",
    );
    refuse(
        Resize::default().into(),
        &[("roi", DType::F32, &[8]), ("scales", DType::F32, &[4])],
        "resize scales (input 2)",
    );
    let x = iota(&[2, 2]);
    let pads = i64s(&[4], &[0, 1, 0, 1]);
    let cv = i32s(&[], &[1]);
    let e = err_of(Pad::default().into(), &[&x, &pads, &cv]);
    assert!(e.contains("pad constant_value (input 2)"), "{e}");
}
