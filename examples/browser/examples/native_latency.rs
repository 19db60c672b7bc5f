//! The demo page's measurement, natively: the three model variants on a native adapter (or the
//! CPU backend), median of 20 end-to-end runs after a warm-up, on a held-out digit, for the
//! numbers beside the browser's in the README.
//!
//! `cargo run --example native_latency -- [vulkan|cpu|gpu] [--tuned]` from examples/browser.
//! Without `--tuned` the GPU runs each family's default kernels, as the browser does (it has no
//! clock to tune with).

#[cfg(not(target_arch = "wasm32"))]
fn main() -> Result<(), wgedge::Error> {
    use std::time::Instant;
    use wgedge::{Backend, GpuContext, Model, Session, SessionOptions};
    use wgedge_browser::{classify, test_digits, variant};

    let args: Vec<String> = std::env::args().skip(1).collect();
    let backend: Backend = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map(String::as_str)
        .unwrap_or("vulkan")
        .parse()?;
    let tuned = args.iter().any(|a| a == "--tuned");
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models");
    let model = Model::load(format!("{root}/mnist-cnn.safetensors"))?;
    let (px, _) = test_digits(
        &std::fs::read(format!("{root}/mnist-test.safetensors"))
            .map_err(|e| wgedge::Error::Input(format!("reading the test digits: {e}")))?,
    )?;
    let ctx = pollster::block_on(GpuContext::open(backend))?.map(std::sync::Arc::new);
    for kind in ["f32", "int8", "int4"] {
        let m = variant(&model, kind)?;
        let opts = SessionOptions {
            autotune: tuned,
            ..Default::default()
        };
        let s = match &ctx {
            Some(c) => Session::with_context(&m, c.clone(), opts)?,
            None => Session::cpu(&m, opts)?,
        };
        let img = &px[..784];
        pollster::block_on(classify(&s, img))?;
        let mut t = Vec::new();
        for _ in 0..20 {
            let t0 = Instant::now();
            pollster::block_on(classify(&s, img))?;
            t.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        t.sort_by(f64::total_cmp);
        println!(
            "{kind}: median {:.3} ms per run on {} ({} file bytes)",
            t[10],
            s.device_name(),
            m.to_bytes()?.len()
        );
    }
    Ok(())
}

#[cfg(target_arch = "wasm32")]
fn main() {}
