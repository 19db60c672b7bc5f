//! Shared test helpers: the GPU context (required when CI=true), single-node models, and
//! closeness checks that print the first bad element.
#![allow(dead_code)]

use std::sync::{Arc, OnceLock};
use wgedge::graph::GraphBuilder;
use wgedge::ops::Op;
use wgedge::profile::KernelChoices;
use wgedge::{Backend, GpuContext, Model, Session, SessionOptions, Tensor};

/// The test GPU: `WGEDGE_TEST_BACKEND` (default vulkan, software adapters allowed).
/// Without one, GPU tests skip with a message — except under `CI=true`, where they fail.
pub fn gpu() -> Option<Arc<GpuContext>> {
    static CTX: OnceLock<Option<Arc<GpuContext>>> = OnceLock::new();
    CTX.get_or_init(|| {
        let name = std::env::var("WGEDGE_TEST_BACKEND").unwrap_or_else(|_| "vulkan".into());
        let backend: Backend = name.parse().expect("WGEDGE_TEST_BACKEND");
        match pollster::block_on(GpuContext::open(backend)) {
            Ok(Some(ctx)) => Some(Arc::new(ctx)),
            other => {
                let why = match other {
                    Err(e) => e.to_string(),
                    _ => "no adapter".into(),
                };
                if std::env::var("CI").map(|v| v == "true").unwrap_or(false) {
                    panic!("CI=true requires a GPU adapter for the GPU tests, but opening '{name}' failed: {why}");
                }
                eprintln!("SKIPPING GPU tests: {why}");
                None
            }
        }
    })
    .clone()
}

/// A model with one node over inputs `x0, x1, ...`; entries of `consts` make that input a weight.
pub fn single_op(op: Op, inputs: &[&Tensor], consts: &[bool]) -> (Model, Vec<(String, Tensor)>) {
    let mut b = GraphBuilder::new();
    let mut names = Vec::new();
    let mut feeds = Vec::new();
    for (i, t) in inputs.iter().enumerate() {
        let name = format!("x{i}");
        if consts.get(i).copied().unwrap_or(false) {
            names.push(b.weight(&name, (*t).clone()));
        } else {
            names.push(b.input(&name, t.shape()));
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

pub fn feeds_ref(feeds: &[(String, Tensor)]) -> Vec<(&str, &Tensor)> {
    feeds.iter().map(|(n, t)| (n.as_str(), t)).collect()
}

/// Session options pinning every choice to `kernels`, no autotune, no rewrites.
pub fn opts_with(kernels: KernelChoices, naive: bool) -> SessionOptions {
    SessionOptions {
        autotune: false,
        kernels: Some(kernels),
        naive,
        optimize: false,
        ..Default::default()
    }
}

/// Runs a model on the GPU with given options.
pub fn run_gpu(
    ctx: &Arc<GpuContext>,
    model: &Model,
    feeds: &[(String, Tensor)],
    opts: SessionOptions,
) -> Vec<Tensor> {
    let s = Session::with_context(model, ctx.clone(), opts).expect("GPU session");
    s.run(&feeds_ref(feeds)).expect("GPU run")
}

/// |got - want| <= atol + rtol * |want| everywhere, else panic with the first bad element.
pub fn assert_close(what: &str, got: &Tensor, want: &Tensor, atol: f32, rtol: f32) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    let g = got.f32s("got").unwrap();
    let w = want.f32s("want").unwrap();
    let mut worst = 0.0f32;
    for (i, (a, b)) in g.iter().zip(w).enumerate() {
        let err = (a - b).abs();
        let tol = atol + rtol * b.abs();
        if err.is_nan() || err > tol {
            panic!(
                "{what}: element {i} of shape {:?}: got {a}, want {b} (|err| {err} > tol {tol})",
                want.shape()
            );
        }
        worst = worst.max(err);
    }
}
