//! Session creation checks the adapter's limits against every kernel the plan uses: storage
//! buffers per stage, invocations per workgroup and workgroup storage bytes (WebGPU guarantees
//! 8, 256 and 16 KiB; browsers report their own). The same device, described with smaller
//! limits, must be refused with a `DeviceLimit` error naming the limit, before any run.
//! (The browser tests in examples/browser check the same on Chromium's WebGPU.)

mod common;
use std::sync::Arc;
use wgedge::{Error, GpuContext, Model, Session, SessionOptions};

#[test]
fn session_creation_refuses_kernels_over_the_adapter_limits() {
    let Some(ctx) = common::gpu() else { return };
    let model = Model::load("models/mnist-cnn.safetensors").unwrap();
    let small = |f: &dyn Fn(&mut wgedge::profile::DeviceLimits)| {
        let mut c =
            GpuContext::from_device(ctx.device.clone(), ctx.queue.clone(), ctx.info.clone());
        f(&mut c.profile.limits);
        Arc::new(c)
    };
    let opts = || {
        let mut o = SessionOptions {
            autotune: false,
            ..Default::default()
        };
        o.plan.cpu_fallback = false;
        o
    };
    // The unchanged limits build (so the refusals below come from the smaller limits).
    Session::with_context(&model, small(&|_| {}), opts()).expect("session on the real limits");
    for (what, c) in [
        (
            "storage buffers",
            small(&|l| l.max_storage_buffers_per_stage = 2),
        ),
        (
            "invocations per workgroup",
            small(&|l| l.max_compute_invocations_per_workgroup = 16),
        ),
        (
            // Softmax (the CNN's last node) reduces through workgroup memory.
            "workgroup storage",
            small(&|l| l.max_compute_workgroup_storage_size = 16),
        ),
    ] {
        match Session::with_context(&model, c, opts()) {
            Ok(_) => panic!("a session over the '{what}' limit was created"),
            Err(e) => assert!(
                matches!(e, Error::DeviceLimit { .. }) && e.to_string().contains(what),
                "'{what}': {e}"
            ),
        }
    }
}
