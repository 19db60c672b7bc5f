//! Session build time against graph size: `Session::cpu` (constant folding, BatchNorm folding,
//! epilogue fusion, checking, planning) on chains of `matmul -> add(bias) -> relu` blocks with
//! tiny shapes, so the time is the graph work, not the data. Then the parts at the largest size,
//! on the unrewritten graph, to spot one that grows faster than the rest.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use wgedge::graph::{passes, GraphBuilder};
use wgedge::ops::Activation;
use wgedge::sched::{Plan, PlanOptions};
use wgedge::{Model, Session, SessionOptions, Tensor};

/// About `nodes` nodes: `nodes / 3` blocks of `[1, 8] @ [8, 8]^T + [8]`, relu.
fn chain(nodes: usize) -> Model {
    let mut b = GraphBuilder::new();
    let mut h = b.input("x", &[1, 8]);
    for i in 0..nodes / 3 {
        let w = b.weight(&format!("l{i}.w"), Tensor::random(&[8, 8], i as u64));
        let bias = b.weight(&format!("l{i}.b"), Tensor::random(&[8], i as u64 + 1));
        let y = b.linear(&h, &w, None, Activation::None);
        let y = b.add(&y, &bias);
        h = b.act(&y, Activation::Relu);
    }
    b.output(&h);
    Model::from_builder(b).unwrap()
}

fn session_build(c: &mut Criterion) {
    let sizes = [(1_000, "1k"), (4_000, "4k"), (16_000, "16k")];
    let models: Vec<(&str, Model)> = sizes.iter().map(|&(n, l)| (l, chain(n))).collect();
    let mut g = c.benchmark_group("session_build");
    g.sample_size(10);
    for (label, m) in &models {
        g.bench_with_input(BenchmarkId::new("cpu", label), m, |b, m| {
            b.iter(|| Session::cpu(m, SessionOptions::default()).unwrap())
        });
    }
    g.finish();

    let (label, m) = models.last().unwrap();
    let mut g = c.benchmark_group(format!("session_build_parts_{label}"));
    g.sample_size(10);
    g.bench_function("check_types", |b| b.iter(|| m.graph.check_types().unwrap()));
    g.bench_function("passes", |b| {
        b.iter(|| {
            let (mut graph, mut w) = (m.graph.clone(), (*m.weights).clone());
            passes::fold_constants(&mut graph, &mut w).unwrap();
            passes::fold_batchnorm(&mut graph, &mut w).unwrap();
            let shapes = graph.check(&w).unwrap().shapes;
            passes::fuse_epilogues(&mut graph, &mut w, &shapes).unwrap()
        })
    });
    g.bench_function("plan_unrewritten", |b| {
        b.iter(|| Plan::new(&m.graph, &m.weights, None, PlanOptions::default()).unwrap())
    });
    g.finish();
}

criterion_group!(benches, session_build);
criterion_main!(benches);
