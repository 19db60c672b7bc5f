//! Values of every dtype through the graph, plans that mix GPU and CPU nodes, shape logic folded
//! at load, and reshape/flatten aliasing their input's memory. Each GPU result is compared with
//! the CPU backend on the same model (bit-equal where no float rounding differs: the CPU nodes
//! of a mixed plan run the same reference code).

mod common;
use common::*;
use wgedge::graph::GraphBuilder;
use wgedge::ops::Activation;
use wgedge::sched::{Placement, Plan, PlanOptions, ValueKind};
use wgedge::{DType, Model, Session, SessionOptions, Tensor};

fn plain() -> SessionOptions {
    SessionOptions {
        autotune: false,
        optimize: false,
        ..Default::default()
    }
}

/// x -> relu (GPU) -> cast i32 (CPU) -> cast f32 (CPU) -> add x (GPU) -> tanh (GPU).
fn gpu_cpu_gpu() -> Model {
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[3, 5]);
    let r = b.act(&x, Activation::Relu);
    let i = b.cast(&r, DType::I32);
    let f = b.cast(&i, DType::F32);
    let s = b.add(&f, &x);
    let y = b.act(&s, Activation::Tanh);
    b.output(&y);
    Model::from_builder(b).unwrap()
}

#[test]
fn a_cpu_node_between_gpu_nodes_runs_in_the_same_plan() {
    let m = gpu_cpu_gpu();
    let x = Tensor::new(&[3, 5], (0..15).map(|i| i as f32 * 0.7 - 4.0).collect()).unwrap();
    let want = Session::cpu(&m, plain())
        .unwrap()
        .run(&[("x", &x)])
        .unwrap();
    // The int cast truncates: relu(x) = 2.3 -> 2, so the result shows the CPU nodes ran.
    let want_first: Vec<f32> = (0..15)
        .map(|i| {
            let v = i as f32 * 0.7 - 4.0;
            (v.max(0.0).trunc() + v).tanh()
        })
        .collect();
    assert_close(
        "cpu backend",
        &want[0],
        &Tensor::new(&[3, 5], want_first).unwrap(),
        1e-6,
        1e-6,
    );
    let Some(ctx) = gpu() else { return };
    let s = Session::with_context(&m, ctx.clone(), plain()).unwrap();
    let places: Vec<Placement> = s.plan().nodes.iter().map(|n| n.placement).collect();
    use Placement::*;
    assert_eq!(places, [Gpu, Cpu, Cpu, Gpu, Gpu]);
    assert_eq!(s.plan().cpu_nodes().len(), 2);
    assert!(
        s.notices()
            .iter()
            .any(|n| n.contains("2 node(s) run on the CPU")),
        "{:?}",
        s.notices()
    );
    assert!(s.plan().describe().contains("CPU"));
    // Twice: the second run reuses the readback buffers.
    for _ in 0..2 {
        let got = s.run(&[("x", &x)]).unwrap();
        assert_close("mixed plan", &got[0], &want[0], 1e-6, 1e-5);
    }
    s.run_resident(2).unwrap();

    // Forbidding fallback turns the CPU nodes into an error naming the node and dtype.
    let mut opts = plain();
    opts.plan.cpu_fallback = false;
    let e = Session::with_context(&m, ctx, opts)
        .err()
        .expect("no fallback");
    let msg = e.to_string();
    assert!(msg.contains("cast") && msg.contains("f32"), "{msg}");
}

#[test]
fn integer_inputs_and_outputs_flow_through_runs() {
    // idx (i32) -> cast f32 -> matmul with a weight (GPU); the i32 input is also an output.
    let mut b = GraphBuilder::new();
    let idx = b.input_typed("idx", DType::I32, &[2, 3]);
    let f = b.cast(&idx, DType::F32);
    let w = b.weight("w", Tensor::random(&[3, 4], 3));
    let y = b.matmul(&f, &w);
    let back = b.cast(&y, DType::I64);
    b.output(&y);
    b.output(&back);
    let m = Model::from_builder(b).unwrap();
    let t = Tensor::from_data(
        &[2, 3],
        wgedge::tensor::TensorData::I32(vec![1, -2, 3, 0, 5, -7]),
    )
    .unwrap();
    let cpu = Session::cpu(&m, plain()).unwrap();
    let want = cpu.run(&[("idx", &t)]).unwrap();
    assert_eq!(want[1].dtype(), DType::I64);
    // A float where an int input is declared is refused, naming the input.
    let e = cpu.run(&[("idx", &Tensor::zeros(&[2, 3]))]).unwrap_err();
    assert!(
        e.to_string().contains("idx") && e.to_string().contains("i32"),
        "{e}"
    );
    let Some(ctx) = gpu() else { return };
    let s = Session::with_context(&m, ctx, plain()).unwrap();
    let got = s.run(&[("idx", &t)]).unwrap();
    assert_close("matmul after cast", &got[0], &want[0], 1e-5, 1e-5);
    assert_eq!(got[1], want[1], "i64 output read back from the arena");
}

#[test]
fn shape_subgraphs_fold_at_load() {
    // y = x + float(shape(x)) along the last axis: the shape logic is constant per plan.
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[2, 4, 3]);
    let sh = b.shape(&x);
    let f = b.cast(&sh, DType::F32);
    let y = b.add(&x, &f);
    b.output(&y);
    let m = Model::from_builder(b).unwrap();
    let x = Tensor::random(&[2, 4, 3], 5);
    let expect: Vec<f32> = x
        .f32s("x")
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, v)| v + [2.0, 4.0, 3.0][i % 3])
        .collect();
    let expect = Tensor::new(&[2, 4, 3], expect).unwrap();
    // Unoptimised, the shape logic runs as CPU nodes; folded, it is a constant.
    let cpu = Session::cpu(&m, plain()).unwrap();
    assert_eq!(cpu.run(&[("x", &x)]).unwrap()[0], expect);
    let folded = Session::cpu(&m, SessionOptions::default()).unwrap();
    assert_eq!(folded.plan().nodes.len(), 1, "{}", folded.plan().describe());
    assert_eq!(folded.rewrites, 2);
    assert_eq!(folded.run(&[("x", &x)]).unwrap()[0], expect);
    let Some(ctx) = gpu() else { return };
    let opts = SessionOptions {
        autotune: false,
        ..Default::default()
    };
    let s = Session::with_context(&m, ctx, opts).unwrap();
    assert!(s.plan().cpu_nodes().is_empty(), "{}", s.plan().describe());
    assert_close(
        "folded",
        &s.run(&[("x", &x)]).unwrap()[0],
        &expect,
        1e-6,
        1e-6,
    );
}

#[test]
fn reshape_and_flatten_alias_their_input() {
    // relu -> reshape -> relu, and the reshape's input is read again later (its memory must
    // stay alive while either name is); flatten of a graph input; reshape of a weight.
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[2, 3, 4]);
    let a = b.act(&x, Activation::Relu);
    let r = b.reshape(&a, &[6, 4]);
    let c = b.act(&r, Activation::Sigmoid);
    let flat = b.flatten(&x, 1);
    let w = b.weight("w", Tensor::random(&[4, 6], 2));
    let wr = b.reshape(&w, &[24]);
    let d = b.reshape(&c, &[24]);
    let e = b.add(&d, &wr);
    let again = b.reshape(&a, &[2, 12]);
    let f = b.add(&again, &flat);
    b.output(&e);
    b.output(&f);
    b.output(&r);
    let m = Model::from_builder(b).unwrap();
    let x = Tensor::random(&[2, 3, 4], 11);
    let want = Session::cpu(&m, plain())
        .unwrap()
        .run(&[("x", &x)])
        .unwrap();

    let p = Plan::new(
        &m.graph,
        &m.weights,
        Some(&wgedge::profile::DeviceProfile::portable()),
        PlanOptions::default(),
    )
    .unwrap();
    let id = |name: &str| p.values.iter().position(|v| v.name == name).unwrap();
    for n in p.nodes.iter().filter(|n| n.op.aliases_input()) {
        assert_eq!(n.placement, Placement::Alias);
        assert!(n.dispatches.is_empty(), "no copy kernel for '{}'", n.name);
        let (i, o) = (n.inputs[0], n.output);
        let root = p.values[i].alias_of.unwrap_or(i);
        assert_eq!(p.values[o].alias_of, Some(root));
        if p.values[root].kind != ValueKind::Weight {
            assert_eq!(p.memory.offset_of[o], p.memory.offset_of[root]);
        }
    }
    // The relu output stays live until its last alias is read.
    let (a_id, again_id) = (id(&a), id(&again));
    assert!(p.intervals[a_id].end >= p.intervals[again_id].end);

    let Some(ctx) = gpu() else { return };
    let s = Session::with_context(&m, ctx, plain()).unwrap();
    let got = s.run(&[("x", &x)]).unwrap();
    for (g, w) in got.iter().zip(&want) {
        assert_close("aliased values", g, w, 1e-6, 1e-5);
    }
}

#[test]
fn values_of_every_dtype_round_trip_through_model_files() {
    use wgedge::tensor::TensorData;
    let mut b = GraphBuilder::new();
    let x = b.input_typed("x", DType::Bool, &[4]);
    let table = [
        ("i64", TensorData::I64(vec![-1, 1 << 40, 3, 4])),
        ("i32", TensorData::I32(vec![-1, 2, 3, 4])),
        ("i8", TensorData::I8(vec![-1, 2, 3, 4])),
        ("u8", TensorData::U8(vec![255, 2, 3, 4])),
        ("f16", TensorData::F16(vec![half::f16::from_f32(0.5); 4])),
        ("bool", TensorData::Bool(vec![1, 0, 1, 1])),
    ];
    let mut outs = Vec::new();
    for (name, data) in table {
        let w = b.weight(name, Tensor::from_data(&[4], data).unwrap());
        outs.push(b.cast(&w, DType::F32));
    }
    let xf = b.cast(&x, DType::F32);
    outs.push(xf);
    let refs: Vec<&str> = outs.iter().map(|s| s.as_str()).collect();
    let cat = b.concat(&refs, 0);
    b.output(&cat);
    let m = Model::from_builder(b).unwrap();
    let back = Model::from_bytes(&m.to_bytes().unwrap()).unwrap();
    assert_eq!(back.graph, m.graph);
    assert_eq!(back.weights, m.weights);
    let xin = Tensor::from_data(&[4], TensorData::Bool(vec![0, 1, 0, 1])).unwrap();
    let out = Session::cpu(&back, plain())
        .unwrap()
        .run(&[("x", &xin)])
        .unwrap();
    let v = out[0].f32s("out").unwrap();
    assert_eq!(&v[..4], &[-1.0, (1u64 << 40) as f32, 3.0, 4.0]);
    assert_eq!(&v[12..16], &[255.0, 2.0, 3.0, 4.0]);
    assert_eq!(&v[24..], &[0.0, 1.0, 0.0, 1.0]);
    // A bool tensor holding 2 is a corrupt file, not a silent true.
    let e = Tensor::from_bytes(DType::Bool, &[2], &[1, 2]).unwrap_err();
    assert!(e.to_string().contains("bool"), "{e}");
}
