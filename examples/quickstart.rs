//! Load the shipped MNIST model, classify one held-out digit, print the probabilities.
//!   cargo run --release --example quickstart

use wgedge::{Backend, Model, Session, Tensor};

fn main() -> wgedge::Result<()> {
    let model = Model::load(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/models/mnist-cnn.safetensors"
    ))?;
    let session = Session::new(&model, Backend::Auto)?;
    let test = wgedge::model::load_tensors(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/models/mnist-test.safetensors"
    ))?;
    let images = test["images"].to_f32();
    let pixels: Vec<f32> = images.f32s("images")?[..784]
        .iter()
        .map(|v| v / 255.0)
        .collect();
    let image = Tensor::new(&[1, 1, 28, 28], pixels)?;
    let probs = session.run(&[("image", &image)])?;
    let p = probs[0].f32s("probs")?;
    let best = (0..10).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap_or(0);
    println!("device: {}", session.device_name());
    println!(
        "label {}, predicted {best} (p = {:.3})",
        test["labels"].to_f32().f32s("labels")?[0],
        p[best]
    );
    Ok(())
}
