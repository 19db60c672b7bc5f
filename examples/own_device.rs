//! An app that already owns a wgpu device hands it to wgedge instead of letting it make one.
//!   cargo run --release --example own_device

use std::sync::Arc;
use wgedge::graph::GraphBuilder;
use wgedge::ops::Activation;
use wgedge::{GpuContext, Model, Session, SessionOptions, Tensor};

fn main() -> wgedge::Result<()> {
    // The app's own device, with WebGPU's default limits and no optional features. (With
    // `Limits::downlevel_defaults()` — 4 storage buffers per stage, GL ES class — wgedge refuses
    // the matmul/conv kernels, which bind 5, with a DeviceLimit error naming that limit.)
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
    let Ok(adapter) =
        pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))
    else {
        println!("no GPU adapter here; nothing to share");
        return Ok(());
    };
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("app device"),
        required_limits: wgpu::Limits::default(),
        ..Default::default()
    }))
    .map_err(|e| wgedge::Error::Device(e.to_string()))?;

    let ctx = Arc::new(GpuContext::from_device(device, queue, adapter.get_info()));
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[2, 8]);
    let w = b.weight("w", Tensor::random(&[4, 8], 1));
    let y = b.linear(&x, &w, None, Activation::Relu);
    b.output(&y);
    let model = Model::from_builder(b)?;
    let session = Session::with_context(&model, ctx, SessionOptions::default())?;
    let out = session.run(&[("x", &Tensor::random(&[2, 8], 2))])?;
    println!(
        "ran on the app's device ({}): {:?}",
        session.device_name(),
        out[0].f32s("y")?
    );
    Ok(())
}
