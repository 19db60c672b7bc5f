//! Graph and plan invariants: order, liveness, memory reuse (no two simultaneously live values
//! share a buffer; the plan stays within 1.25x of the lower bound), and that folding and fusion
//! do not change results. Plus whole models, GPU vs CPU.

mod common;
use common::*;
use wgedge::graph::{passes, GraphBuilder};
use wgedge::ops::*;
use wgedge::profile::DeviceProfile;
use wgedge::sched::{Plan, PlanOptions, ValueKind};
use wgedge::{Model, Session, SessionOptions, Tensor};

fn feeds_for(m: &Model) -> Vec<(String, Tensor)> {
    m.graph
        .inputs
        .iter()
        .enumerate()
        .map(|(i, v)| (v.name.clone(), Tensor::random(&v.shape, 1000 + i as u64)))
        .collect()
}

/// A CPU session on the graph exactly as written (no folding or fusion).
fn unoptimized(m: &Model) -> Session {
    Session::cpu(
        m,
        SessionOptions {
            optimize: false,
            ..Default::default()
        },
    )
    .unwrap()
}

fn plan_for(m: &Model, reuse: bool) -> Plan {
    Plan::new(
        &m.graph,
        &m.weights,
        Some(&DeviceProfile::portable()),
        PlanOptions {
            reuse,
            ..Default::default()
        },
    )
    .unwrap()
}

#[test]
fn memory_plan_never_aliases_live_values_and_is_near_the_bound() {
    for (name, m) in models::all() {
        let p = plan_for(&m, true);
        let off = &p.memory.offset_of;
        for a in 0..p.values.len() {
            if p.values[a].kind == ValueKind::Weight {
                assert!(
                    off[a].is_none(),
                    "{name}: weights are not in the activation plan"
                );
                continue;
            }
            let oa = off[a].expect("every activation has an offset");
            assert_eq!(oa % p.memory.alignment, 0, "{name}: misaligned offset");
            assert!(
                oa + p.values[a].bytes <= p.memory.peak_bytes,
                "{name}: '{}' past the arena end",
                p.values[a].name
            );
            let root = |v: usize| p.values[v].alias_of.unwrap_or(v);
            for (b, ob) in off.iter().enumerate().skip(a + 1) {
                let Some(ob) = *ob else { continue };
                if root(a) == root(b) {
                    // A reshape/flatten output is its input's memory by design; the root's
                    // interval covers the alias's uses, so it is checked against the others.
                    assert_eq!(oa, ob, "{name}: an alias sits at its root's offset");
                    continue;
                }
                let disjoint = oa + p.values[a].bytes <= ob || ob + p.values[b].bytes <= oa;
                assert!(
                    disjoint || !p.intervals[a].overlaps(&p.intervals[b]),
                    "{name}: '{}' and '{}' overlap in memory while both live",
                    p.values[a].name,
                    p.values[b].name
                );
            }
        }
        let ratio = p.memory.peak_bytes as f64 / p.memory.lower_bound_bytes as f64;
        eprintln!(
            "{name}: planned {} bytes, lower bound {}, ratio {ratio:.3}",
            p.memory.peak_bytes, p.memory.lower_bound_bytes
        );
        assert!(ratio <= 1.25, "{name}: plan {ratio:.3}x the lower bound");
        assert!(p.memory.peak_bytes >= p.memory.lower_bound_bytes);
        let no_reuse = plan_for(&m, false);
        assert!(no_reuse.memory.peak_bytes >= p.memory.peak_bytes);
    }
}

#[test]
fn order_respects_dependencies() {
    for (name, m) in models::all() {
        let p = plan_for(&m, true);
        let mut defined = vec![false; p.values.len()];
        for &v in &p.inputs {
            defined[v] = true;
        }
        for (v, pv) in p.values.iter().enumerate() {
            if pv.kind == ValueKind::Weight {
                defined[v] = true;
            }
        }
        for n in &p.nodes {
            for &i in &n.inputs {
                assert!(
                    defined[i],
                    "{name}: node '{}' reads '{}' before it is defined",
                    n.name, p.values[i].name
                );
            }
            defined[n.output] = true;
        }
    }
}

#[test]
fn batchnorm_folds_and_epilogues_fuse_without_changing_results() {
    let m = models::resnet_block();
    let feeds = feeds_for(&m);
    let plain = unoptimized(&m);
    let opt = Session::cpu(&m, SessionOptions::default()).unwrap();
    // 2 BNs folded, relu fused into conv1, add + relu fused into conv2, bias+... into linear.
    assert_eq!(
        plain.plan().nodes.len() - opt.plan().nodes.len(),
        opt.rewrites
    );
    assert!(opt.rewrites >= 5, "rewrites: {}", opt.rewrites);
    assert!(!opt
        .plan()
        .nodes
        .iter()
        .any(|n| matches!(n.op, Op::BatchNorm(_))));
    let convs: Vec<&Conv2d> = opt
        .plan()
        .nodes
        .iter()
        .filter_map(|n| {
            if let Op::Conv2d(c) = &n.op {
                Some(c)
            } else {
                None
            }
        })
        .collect();
    assert!(
        convs
            .iter()
            .any(|c| c.residual && c.act == Activation::Relu),
        "residual add + relu fused: {convs:?}"
    );
    let a = plain.run(&feeds_ref(&feeds)).unwrap();
    let b = opt.run(&feeds_ref(&feeds)).unwrap();
    assert_close("resnet folded vs plain", &b[0], &a[0], 1e-5, 1e-4);

    // Bias add after a 1x1 conv is fused as the conv's bias; a graph output is never fused away.
    let br = models::branchy();
    let s = Session::cpu(&br, SessionOptions::default()).unwrap();
    assert!(s.plan().nodes.iter().any(
        |n| matches!(&n.op, Op::Conv2d(c) if c.bias && c.groups == 1 && n.name.contains("add"))
    ));
    let names: Vec<&str> = s
        .plan()
        .outputs
        .iter()
        .map(|&v| s.plan().values[v].name.as_str())
        .collect();
    assert_eq!(
        names,
        br.graph
            .outputs
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
    );
}

#[test]
fn rewrites_never_change_results() {
    for (name, m) in models::all() {
        let feeds = feeds_for(&m);
        let plain = unoptimized(&m);
        let opt = Session::cpu(&m, SessionOptions::default()).unwrap();
        let a = plain.run(&feeds_ref(&feeds)).unwrap();
        let b = opt.run(&feeds_ref(&feeds)).unwrap();
        for (i, (x, y)) in b.iter().zip(&a).enumerate() {
            assert_close(
                &format!("{name} output {i}: rewritten vs plain"),
                x,
                y,
                1e-5,
                1e-4,
            );
        }
    }
}

#[test]
fn a_last_axis_add_after_conv_is_not_a_bias() {
    // numpy broadcasting aligns a [4] constant with W, not with the channels.
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[1, 2, 5, 4]);
    let w = b.weight("w", Tensor::random(&[4, 2, 1, 1], 1));
    let c = b.conv2d(&x, &w, None, Conv2d::default());
    let v = b.weight("v", Tensor::random(&[4], 2));
    let y = b.add(&c, &v);
    b.output(&y);
    let m = Model::from_builder(b).unwrap();
    let s = Session::cpu(&m, SessionOptions::default()).unwrap();
    assert!(
        s.plan()
            .nodes
            .iter()
            .all(|n| !matches!(&n.op, Op::Conv2d(c) if c.bias)),
        "{}",
        s.plan().describe()
    );
    let feeds = feeds_for(&m);
    let plain = unoptimized(&m);
    assert_eq!(
        s.run(&feeds_ref(&feeds)).unwrap(),
        plain.run(&feeds_ref(&feeds)).unwrap()
    );
}

#[test]
fn fusion_keeps_values_other_nodes_read() {
    // conv output read twice: nothing may be fused into it.
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[1, 2, 5, 5]);
    let w = b.weight("w", Tensor::random(&[2, 2, 3, 3], 1));
    let c = b.conv2d(&x, &w, None, Conv2d::default());
    let r = b.act(&c, Activation::Relu);
    let s = b.add(&r, &c);
    b.output(&s);
    let (mut g, mut weights) = b.build().unwrap();
    let checked = g.check(&weights).unwrap();
    assert_eq!(
        passes::fuse_epilogues(&mut g, &mut weights, &checked.shapes).unwrap(),
        0
    );
}

#[test]
fn whole_models_gpu_match_cpu() {
    let Some(ctx) = gpu() else { return };
    for (name, m) in models::all() {
        let feeds = feeds_for(&m);
        let want = Session::cpu(&m, SessionOptions::default())
            .unwrap()
            .run(&feeds_ref(&feeds))
            .unwrap();
        for naive in [false, true] {
            let opts = SessionOptions {
                autotune: false,
                naive,
                ..Default::default()
            };
            let s = Session::with_context(&m, ctx.clone(), opts).unwrap();
            let got = s.run(&feeds_ref(&feeds)).unwrap();
            // Run twice: buffers are reused across runs and results must not drift.
            let again = s.run(&feeds_ref(&feeds)).unwrap();
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_close(
                    &format!("{name} output {i} naive={naive}"),
                    g,
                    w,
                    1e-4,
                    1e-4,
                );
                assert_eq!(g, &again[i], "{name}: second run differs");
            }
        }
    }
}

#[test]
fn mnist_digits_classified_the_same_on_gpu_and_cpu() {
    let m = models::mnist();
    let (data, _) = wgedge::model::read_tensors(
        &std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/models/mnist-test.safetensors"
        ))
        .unwrap(),
    )
    .unwrap();
    let images = data["images"].to_f32();
    let labels = data["labels"].to_f32();
    let px = images.f32s("images").unwrap();
    let cpu = Session::cpu(&m, SessionOptions::default()).unwrap();
    let gpu_s = gpu().map(|ctx| {
        Session::with_context(
            &m,
            ctx,
            SessionOptions {
                autotune: false,
                ..Default::default()
            },
        )
        .unwrap()
    });
    let mut correct = 0;
    let n = 200;
    for i in 0..n {
        let img = Tensor::new(
            &[1, 1, 28, 28],
            px[i * 784..(i + 1) * 784]
                .iter()
                .map(|v| v / 255.0)
                .collect(),
        )
        .unwrap();
        let c = cpu.run(&[("image", &img)]).unwrap();
        let p = c[0].f32s("p").unwrap();
        let pred = (0..10).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap();
        correct += (pred == labels.f32s("l").unwrap()[i] as usize) as usize;
        if let Some(s) = &gpu_s {
            assert_close(
                &format!("digit {i}"),
                &s.run(&[("image", &img)]).unwrap()[0],
                &c[0],
                1e-5,
                1e-4,
            );
        }
    }
    // The shipped model scored 98.1% on all 1,000 held-out digits when trained.
    assert!(correct as f64 / n as f64 > 0.95, "accuracy {correct}/{n}");
}

#[test]
fn node_times_cover_every_node_or_say_why_not() {
    let m = models::resnet_block();
    let feeds = feeds_for(&m);
    let cpu = Session::cpu(&m, SessionOptions::default()).unwrap();
    assert!(matches!(
        cpu.node_times(),
        Err(wgedge::Error::Unsupported { .. })
    ));
    let Some(ctx) = gpu() else { return };
    let s = Session::with_context(
        &m,
        ctx.clone(),
        SessionOptions {
            autotune: false,
            ..Default::default()
        },
    )
    .unwrap();
    s.run(&feeds_ref(&feeds)).unwrap();
    match s.node_times() {
        Ok(t) => {
            assert_eq!(t.len(), s.plan().nodes.len());
            assert!(t.iter().all(|x| x.is_finite() && *x >= 0.0), "{t:?}");
        }
        Err(e) => assert!(
            !ctx.profile.features.timestamp_query,
            "timestamps present but: {e}"
        ),
    }
}

/// A reshape whose target is an input (ONNX's form): a weight, or computed from another
/// input's shape. Checking infers the output from the known value; the session build moves
/// it into the attribute (the node loses the input) and GPU and CPU give the reshaped data;
/// an unknown target is an error naming it.
#[test]
fn shape_like_inputs_are_known_at_plan_time() {
    use wgedge::tensor::{DType, TensorData};
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[2, 3, 4]);
    let y = b.input("y", &[6, 4]);
    let target = b.weight(
        "target",
        Tensor::from_data(&[2], TensorData::I64(vec![-1, 2])).unwrap(),
    );
    let by_weight = b.node(Reshape { shape: vec![] }.into(), &[&x, &target]);
    let sy = b.shape(&y);
    let by_shape = b.node(Reshape { shape: vec![] }.into(), &[&x, &sy]);
    let sum = b.add(&by_shape, &y);
    b.output(&by_weight);
    b.output(&sum);
    let (graph, weights) = b.build().unwrap();
    let checked = graph.check(&weights).unwrap();
    assert_eq!(checked.shapes[&by_weight], vec![12, 2]);
    assert_eq!(checked.shapes[&by_shape], vec![6, 4]);

    let (mut g2, mut w2) = (graph.clone(), weights.clone());
    passes::fold_constants(&mut g2, &mut w2).unwrap();
    assert_eq!(passes::absorb_consts(&mut g2, &mut w2).unwrap(), 2);
    assert!(g2.nodes.iter().all(|n| n.inputs.len() <= 2));
    assert!(
        !w2.contains_key("target"),
        "the absorbed target weight is dropped"
    );

    let model = Model::new(graph.clone(), weights.clone()).unwrap();
    let xv = Tensor::random(&[2, 3, 4], 1);
    let yv = Tensor::random(&[6, 4], 2);
    let feeds = [("x", &xv), ("y", &yv)];
    let want = unoptimized(&model).run(&feeds).unwrap();
    assert_eq!(want[0].shape(), &[12, 2]);
    assert_eq!(want[0].f32s("t").unwrap(), xv.f32s("t").unwrap());
    let cpu = Session::cpu(&model, SessionOptions::default()).unwrap();
    assert_eq!(cpu.run(&feeds).unwrap(), want);
    match gpu() {
        Some(ctx) => {
            let s = Session::with_context(&model, ctx, SessionOptions::default()).unwrap();
            let got = s.run(&feeds).unwrap();
            assert_close("reshape by input", &got[1], &want[1], 0.0, 0.0);
            assert_eq!(got[0], want[0]);
        }
        None => skip_gpu_check("reshape by input"),
    }

    // A target computed from a runtime value is refused at planning, by name.
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[2, 3]);
    let t = b.input_typed("t", DType::I64, &[2]);
    let r = b.node(Reshape { shape: vec![] }.into(), &[&x, &t]);
    b.output(&r);
    let err = b.build().unwrap_err().to_string();
    assert!(err.contains("target shape (input 1)"), "{err}");
}

/// A model with symbolic dims runs at any sizes they allow: each new shape is planned on its
/// first run and kept (bounded, least recently used out), and the result equals a model
/// built for that shape. Fixed dims and symbols that disagree are refused by name.
#[test]
fn inputs_whose_shape_changes_between_runs() {
    let build = |shape: &[usize], symbolic: bool| {
        let mut b = GraphBuilder::new();
        let x = b.input("x", shape);
        if symbolic {
            b.dims("x", &[Some("batch"), None, Some("h"), Some("w")]);
        }
        let w = b.weight("w", Tensor::random(&[4, 3, 3, 3], 9));
        let bias = b.weight("bias", Tensor::random(&[4], 10));
        let c = b.conv2d(
            &x,
            &w,
            Some(&bias),
            Conv2d {
                pad: [1; 4],
                act: Activation::Relu,
                ..Default::default()
            },
        );
        let flat = b.reshape(&c, &[0, -1]);
        let s = b.softmax(&flat, -1);
        let g = b.global_avg_pool(&c);
        b.output(&s);
        b.output(&g);
        let (graph, weights) = b.build().unwrap();
        Model::new(graph, weights).unwrap()
    };
    let model = build(&[1, 3, 8, 8], true);
    let json = serde_json::to_string(&model.graph).unwrap();
    assert!(
        json.contains("\"dims\""),
        "symbolic dims are saved with the graph"
    );
    let shapes: [&[usize]; 4] = [&[1, 3, 8, 8], &[2, 3, 5, 7], &[1, 3, 1, 1], &[2, 3, 5, 7]];
    let opts = SessionOptions {
        max_shapes: 1,
        cpu_reference: true,
        ..Default::default()
    };
    let mut sessions = vec![("cpu", Session::cpu(&model, opts.clone()).unwrap())];
    match gpu() {
        Some(ctx) => sessions.push((
            "gpu",
            Session::with_context(&model, ctx, opts.clone()).unwrap(),
        )),
        None => skip_gpu_check("inputs whose shape changes"),
    }
    for (what, s) in &sessions {
        for (i, shape) in shapes.iter().enumerate() {
            let xv = Tensor::random(shape, 20 + i as u64);
            let got = s.run(&[("x", &xv)]).unwrap();
            let fixed = unoptimized(&build(shape, false))
                .run(&[("x", &xv)])
                .unwrap();
            for (g, f) in got.iter().zip(&fixed) {
                assert_eq!(g.shape(), f.shape(), "{what} {shape:?}");
                assert_close(&format!("{what} {shape:?}"), g, f, 1e-5, 1e-4);
            }
        }
        // The planned shape runs on the session itself; one other shape is kept.
        assert_eq!(s.planned_shapes(), vec![vec![vec![2, 3, 5, 7]]], "{what}");
        let bad = Tensor::random(&[1, 4, 8, 8], 1);
        let err = s.run(&[("x", &bad)]).unwrap_err().to_string();
        assert!(err.contains("axis 1 (a fixed dim)"), "{what}: {err}");
    }

    // Axes sharing a symbol must agree within a run.
    let mut b = GraphBuilder::new();
    let a = b.input("a", &[2, 3]);
    let c = b.input("c", &[2, 3]);
    b.dims("a", &[Some("n"), None]);
    b.dims("c", &[Some("n"), None]);
    let y = b.add(&a, &c);
    b.output(&y);
    let (graph, weights) = b.build().unwrap();
    let m = Model::new(graph, weights).unwrap();
    let s = Session::cpu(&m, SessionOptions::default()).unwrap();
    let (a5, c4) = (Tensor::random(&[5, 3], 1), Tensor::random(&[4, 3], 2));
    let err = s.run(&[("a", &a5), ("c", &c4)]).unwrap_err().to_string();
    assert!(err.contains("dim 'n'"), "{err}");
    let c5 = Tensor::random(&[5, 3], 3);
    assert_eq!(
        s.run(&[("a", &a5), ("c", &c5)]).unwrap()[0].shape(),
        &[5, 3]
    );
    // Symbolic dims must name inputs and match their rank.
    let mut g = m.graph.clone();
    g.dims.insert("nope".into(), vec![None]);
    assert!(g.check_types().unwrap_err().to_string().contains("'nope'"));
}
