//! Criterion benchmarks: the tuned GPU kernel, the naive GPU kernel and the CPU reference on the
//! same workloads (smaller than `wgedge bench`'s so a run takes a minute on a software adapter).
//! Each GPU measurement waits for the device (resident: dispatch + submit + wait; end to end:
//! upload, run, read back).

use criterion::{criterion_group, criterion_main, Criterion};
use std::sync::Arc;
use wgedge::bench::{mlp, packed_workload, Workload};
use wgedge::graph::{single_conv3x3, single_linear};
use wgedge::{Backend, GpuContext, Model, Session, SessionOptions, Tensor};

fn gpu() -> Option<Arc<GpuContext>> {
    pollster::block_on(GpuContext::open(Backend::AnyGpu))
        .ok()
        .flatten()
        .map(Arc::new)
}

fn workload(name: &'static str, b: wgedge::graph::GraphBuilder) -> Workload {
    let model = Model::from_builder(b).unwrap();
    let input = Tensor::random(&model.graph.inputs[0].shape, 2);
    Workload {
        name,
        model,
        input,
        flops: 0.0,
        weight_bytes: None,
        format: "f32",
    }
}

fn bench_workload(c: &mut Criterion, label: &str, w: &Workload, ctx: Option<&Arc<GpuContext>>) {
    let mut g = c.benchmark_group(label);
    g.sample_size(10);
    let feeds = [("x", &w.input)];
    if let Some(ctx) = ctx {
        for naive in [false, true] {
            let s = Session::with_context(
                &w.model,
                ctx.clone(),
                SessionOptions {
                    naive,
                    ..Default::default()
                },
            )
            .unwrap();
            let name = if naive { "gpu-naive" } else { "gpu-tuned" };
            s.run(&feeds).unwrap();
            g.bench_function(format!("{name}/resident"), |b| {
                b.iter(|| s.run_resident(1).unwrap())
            });
            g.bench_function(format!("{name}/e2e"), |b| b.iter(|| s.run(&feeds).unwrap()));
        }
    }
    let reference = SessionOptions {
        cpu_reference: true,
        ..Default::default()
    };
    let s = Session::cpu(&w.model, reference).unwrap();
    g.bench_function("cpu-ref", |b| b.iter(|| s.run(&feeds).unwrap()));
    let s = Session::cpu(&w.model, SessionOptions::default()).unwrap();
    g.bench_function("cpu-fast", |b| b.iter(|| s.run(&feeds).unwrap()));
    g.finish();
}

fn kernels(c: &mut Criterion) {
    let ctx = gpu();
    bench_workload(
        c,
        "gemm-256",
        &workload("gemm", single_linear(256, 256, 256)),
        ctx.as_ref(),
    );
    bench_workload(
        c,
        "gemv-1024",
        &workload("gemv", single_linear(1, 1024, 1024)),
        ctx.as_ref(),
    );
    // The same GEMV with its weight packed (read as stored by the packed-weight kernels).
    for f in ["f16", "int8", "int4-g32", "pow2-int8", "csr-10", "2:4"] {
        let w = packed_workload(workload("gemv", single_linear(1, 1024, 1024)), f).unwrap();
        bench_workload(c, &format!("gemv-1024-{f}"), &w, ctx.as_ref());
    }
    bench_workload(
        c,
        "conv3x3-32ch-28",
        &workload("conv3x3", single_conv3x3(32, 28, 1)),
        ctx.as_ref(),
    );
    bench_workload(c, "mlp-b64", &mlp(64).unwrap(), ctx.as_ref());
}

/// Where threading an elementwise op starts to pay (the fast CPU kernels split work into tasks
/// of 16 Ki elements): a binary add, the cheapest op and so the worst case for threading, at
/// sizes around that task size on 1 and 2 threads.
fn cpu_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("cpu-add-threads");
    g.sample_size(20);
    for log2 in [12, 14, 16, 18, 20] {
        let n = 1usize << log2;
        let mut b = wgedge::graph::GraphBuilder::new();
        let x = b.input("x", &[n]);
        let y = b.input("y", &[n]);
        let z = b.add(&x, &y);
        b.output(&z);
        let model = Model::from_builder(b).unwrap();
        let (tx, ty) = (Tensor::random(&[n], 1), Tensor::random(&[n], 2));
        let feeds = [("x", &tx), ("y", &ty)];
        for threads in [1, 2] {
            let opts = SessionOptions {
                threads: Some(threads),
                ..Default::default()
            };
            let s = Session::cpu(&model, opts).unwrap();
            s.run(&feeds).unwrap();
            g.bench_function(format!("2^{log2}/{threads}-threads"), |bch| {
                bch.iter(|| s.run(&feeds).unwrap())
            });
        }
    }
    g.finish();
}

criterion_group!(benches, kernels, cpu_threads);
criterion_main!(benches);
