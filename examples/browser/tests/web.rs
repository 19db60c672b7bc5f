//! wgedge in a real browser (wasm-bindgen-test in `run_in_browser` mode; headless Chromium
//! with `--enable-unsafe-webgpu`, whose WebGPU adapter is SwiftShader when the machine has no
//! GPU). Run by `tools/test.sh` through `tools/web.sh test`.
//!
//! Built with `CI=true`, a browser without WebGPU fails these tests; otherwise the WebGPU half
//! is skipped with a console line saying so.
//!
//! Tolerances (f32): a K-term dot product summed in another order differs by at most about
//! K * 2^-24 * sum|a b|; with inputs in [-1, 1] the tests allow 2e-6 * K absolute plus 1e-5
//! relative, as the native conformance tests do. Softmax adds exp's few ULP (1e-5).

// wasm is single-threaded: wgpu handles there are neither Send nor Sync, and that is fine.
#![allow(clippy::arc_with_non_send_sync)]

use std::cell::RefCell;
use std::sync::Arc;
use wasm_bindgen_test::*;
use wgedge::graph::GraphBuilder;
use wgedge::ops::{Activation, Conv2d, Pool2d, PoolKind};
use wgedge::{GpuContext, Model, Session, SessionOptions, Tensor};
use wgedge_browser::{classify, open_context, open_session, test_digits, variant};

wasm_bindgen_test_configure!(run_in_browser);

const MODEL: &[u8] = include_bytes!("../../../models/mnist-cnn.safetensors");
const DIGITS: &[u8] = include_bytes!("../../../models/mnist-test.safetensors");

/// Whether the tests were built under CI (`CI=true`): a missing WebGPU is then a failure.
fn strict() -> bool {
    option_env!("CI") == Some("true")
}

thread_local! {
    static CTX: RefCell<Option<Arc<GpuContext>>> = const { RefCell::new(None) };
}

/// The page's WebGPU device, opened once; `None` (a skip, said on the console) only when not
/// under CI.
async fn webgpu() -> Option<Arc<GpuContext>> {
    if let Some(c) = CTX.with(|c| c.borrow().clone()) {
        return Some(c);
    }
    match open_context("webgpu").await {
        Ok(Some(c)) => {
            CTX.with(|slot| *slot.borrow_mut() = Some(c.clone()));
            Some(c)
        }
        Ok(None) => panic!("a WebGPU request returned the CPU backend"),
        Err(e) if strict() => panic!("CI=true requires WebGPU in the test browser, but: {e}"),
        Err(e) => {
            console_log!("SKIPPED a WebGPU check (no WebGPU in this browser): {e}");
            None
        }
    }
}

fn close(what: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= atol + rtol * w.abs(),
            "{what}: element {i}: WebGPU {g}, CPU reference {w} (atol {atol}, rtol {rtol})"
        );
    }
}

fn reference_opts() -> SessionOptions {
    SessionOptions {
        cpu_reference: true,
        ..Default::default()
    }
}

/// Runs `model` on WebGPU with the default kernels and with the naive ones (no CPU fallback:
/// the GPU kernel runs or the test fails) and compares each with the CPU reference.
async fn check_model(what: &str, model: &Model, feeds: &[(&str, &Tensor)], atol: f32, rtol: f32) {
    let want = Session::cpu(model, reference_opts())
        .unwrap()
        .run_async(feeds)
        .await
        .unwrap();
    let Some(ctx) = webgpu().await else { return };
    for naive in [false, true] {
        let mut o = SessionOptions {
            naive,
            ..Default::default()
        };
        o.plan.cpu_fallback = false;
        let s = Session::with_context_async(model, ctx.clone(), o)
            .await
            .unwrap_or_else(|e| panic!("{what}: WebGPU session (naive {naive}): {e}"));
        let got = s.run_async(feeds).await.unwrap();
        for (g, w) in got.iter().zip(&want) {
            let what = format!("{what} (naive kernels: {naive})");
            close(
                &what,
                g.f32s("out").unwrap(),
                w.f32s("ref").unwrap(),
                atol,
                rtol,
            );
        }
    }
}

fn dot_tol(k: usize) -> f32 {
    2e-6 * k as f32 + 1e-6
}

#[wasm_bindgen_test]
async fn webgpu_adapter_opens_with_portable_limits() {
    let Some(ctx) = webgpu().await else { return };
    let p = &ctx.profile;
    console_log!(
        "WebGPU adapter '{}' ({}): {:?}, {:?}",
        ctx.info.name,
        p.backend,
        p.limits,
        p.features
    );
    assert_eq!(p.backend, "browserwebgpu");
    // WebGPU guarantees these; every wgedge kernel stays within them.
    assert!(p.limits.max_compute_invocations_per_workgroup >= 256);
    assert!(p.limits.max_compute_workgroup_storage_size >= 16384);
    assert!(p.limits.max_storage_buffers_per_stage >= 8);
}

/// Every registered WGSL kernel (each representative const header) compiled by the browser
/// (Tint) on its WebGPU device, after naga's validation and the workgroup limit check.
/// naga (tests/shaders.rs) accepts some WGSL that browsers reject: constant expressions outside
/// f32's range were two (pool2d's `bitcast<f32>(0xff800000u)`, softmax's `-3.4028235e38`).
/// Shader modules only: pipelines are built for the kernels the other tests run (building all
/// 160 on SwiftShader took 70 s). Kernels needing shader-f16 or subgroups are compiled only
/// where the adapter has the feature (their fit checks choose them only there).
#[wasm_bindgen_test]
async fn every_kernel_compiles_on_webgpu() {
    let Some(ctx) = webgpu().await else { return };
    let f = ctx.profile.features;
    let mut all = wgedge::ops::Op::all_shaders();
    all.sort();
    all.dedup();
    let t0 = js_sys::Date::now();
    let (mut built, mut skipped) = (0, 0);
    let mut failed = Vec::new();
    for file in &all {
        for consts in file.samples {
            let key = wgedge::gpu::shader::ShaderKey::new(file, consts);
            let src = key.source();
            if (src.contains("enable f16") && !f.shader_f16)
                || (src.contains("subgroup") && !f.subgroups)
            {
                skipped += 1;
                continue;
            }
            let label = key.label();
            let checked = wgedge::gpu::shader::validate(&key).and_then(|m| {
                wgedge::gpu::shader::check_workgroup_limits(&m, &label, &ctx.profile.limits)
            });
            if let Err(e) = checked {
                failed.push(e.to_string());
                continue;
            }
            let r = ctx
                .scoped(&label, || {
                    let _module = ctx
                        .device
                        .create_shader_module(wgpu::ShaderModuleDescriptor {
                            label: Some(&label),
                            source: wgpu::ShaderSource::Wgsl(src.into()),
                        });
                    Ok(())
                })
                .await;
            match r {
                Ok(()) => built += 1,
                Err(e) => failed.push(e.to_string()),
            }
        }
    }
    console_log!(
        "{built} kernels compiled on WebGPU in {:.1} s, {skipped} skipped (adapter lacks f16/subgroups)",
        (js_sys::Date::now() - t0) / 1e3
    );
    assert!(
        failed.is_empty(),
        "{} kernels failed on WebGPU:\n{}",
        failed.len(),
        failed.join("\n")
    );
    assert!(built > 20, "only {built} kernels compiled");
}

/// Packed conv weights with several scale groups per row (int4 and int8 in groups of 32 over
/// K = 72): SwiftShader kept one group's partial sums in the next until the kernel zeroed them
/// explicitly; one group per row (K = 9, or per-channel scales) was right before and after.
#[wasm_bindgen_test]
async fn packed_conv_with_several_scale_groups() {
    use wgedge::compress::{quantize, QuantConfig, WeightKind};
    for (kind, group) in [
        (WeightKind::Int4, 32),
        (WeightKind::Int8, 32),
        (WeightKind::Int8, 0),
    ] {
        let mut b = GraphBuilder::new();
        let x = b.input("x", &[1, 8, 14, 14]);
        let w = b.weight("w", Tensor::random(&[16, 8, 3, 3], 5));
        let y = b.conv2d(
            &x,
            &w,
            None,
            Conv2d {
                pad: [1; 4],
                ..Default::default()
            },
        );
        b.output(&y);
        let mut cfg = QuantConfig::new(kind);
        cfg.group = group;
        let model = quantize(&Model::from_builder(b).unwrap(), &cfg).unwrap().0;
        let xt = Tensor::random(&[1, 8, 14, 14], 6);
        // Each group's sum is scaled once; 72 terms per output.
        check_model(
            &format!("{kind:?} conv, group {group}"),
            &model,
            &[("x", &xt)],
            dot_tol(72),
            1e-5,
        )
        .await;
    }
}

#[wasm_bindgen_test]
async fn native_backends_are_refused_in_the_browser() {
    let e = open_context("vulkan")
        .await
        .err()
        .expect("vulkan in a page");
    assert!(
        e.to_string().contains("does not exist in the browser"),
        "{e}"
    );
}

#[wasm_bindgen_test]
async fn matmul_gemv_and_gemm_odd_shapes() {
    for (i, &(m, k, n)) in [(1, 37, 13), (1, 784, 10), (17, 65, 33), (3, 5, 7)]
        .iter()
        .enumerate()
    {
        let mut b = GraphBuilder::new();
        let x = b.input("x", &[m, k]);
        let w = b.weight("w", Tensor::random(&[n, k], 10 + i as u64));
        let bias = b.weight("b", Tensor::random(&[n], 20 + i as u64));
        let y = b.linear(&x, &w, Some(&bias), Activation::Relu);
        b.output(&y);
        let model = Model::from_builder(b).unwrap();
        let xt = Tensor::random(&[m, k], i as u64);
        check_model(
            &format!("linear {m}x{k}x{n}"),
            &model,
            &[("x", &xt)],
            dot_tol(k),
            1e-5,
        )
        .await;
    }
}

#[wasm_bindgen_test]
async fn conv_depthwise_pool_softmax() {
    // 3x3 conv (pad 1, odd 13x13 image, 3 -> 8 channels, relu), a depthwise 3x3 with stride 2,
    // a 2x2 max pool over the odd result, then softmax over 1000 values (a long reduction).
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[1, 3, 13, 13]);
    let w1 = b.weight("w1", Tensor::random(&[8, 3, 3, 3], 1));
    let c1 = b.conv2d(
        &x,
        &w1,
        None,
        Conv2d {
            pad: [1; 4],
            act: Activation::Relu,
            ..Default::default()
        },
    );
    let w2 = b.weight("w2", Tensor::random(&[8, 1, 3, 3], 2));
    let c2 = b.conv2d(
        &c1,
        &w2,
        None,
        Conv2d {
            pad: [1; 4],
            stride: [2, 2],
            groups: 8,
            ..Default::default()
        },
    );
    let p = b.pool(
        &c2,
        Pool2d {
            kind: PoolKind::Max,
            kernel: [2, 2],
            stride: [2, 2],
            pad: [0; 4],
            count_include_pad: false,
        },
    );
    b.output(&p);
    let model = Model::from_builder(b).unwrap();
    let xt = Tensor::random(&[1, 3, 13, 13], 3);
    // Two convs of 27 and 9 terms: the second sums values that already carry the first's error.
    check_model(
        "conv/depthwise/pool",
        &model,
        &[("x", &xt)],
        dot_tol(27 * 9),
        1e-5,
    )
    .await;

    let mut b = GraphBuilder::new();
    let x = b.input("x", &[3, 1000]);
    let y = b.softmax(&x, -1);
    b.output(&y);
    let model = Model::from_builder(b).unwrap();
    let xt = Tensor::random(&[3, 1000], 4);
    check_model("softmax 3x1000", &model, &[("x", &xt)], 1e-5, 1e-5).await;
}

#[wasm_bindgen_test]
async fn session_creation_checks_the_adapter_limits() {
    let Some(ctx) = webgpu().await else { return };
    let model = Model::from_bytes(MODEL).unwrap();
    // The same device, described with smaller limits: the session must refuse at creation.
    let small = |f: &dyn Fn(&mut wgedge::profile::DeviceLimits)| {
        let mut c =
            GpuContext::from_device(ctx.device.clone(), ctx.queue.clone(), ctx.info.clone());
        f(&mut c.profile.limits);
        Arc::new(c)
    };
    let cases: [(&str, Arc<GpuContext>); 3] = [
        (
            "storage buffers",
            small(&|l| l.max_storage_buffers_per_stage = 2),
        ),
        (
            "invocations per workgroup",
            small(&|l| l.max_compute_invocations_per_workgroup = 16),
        ),
        (
            "workgroup storage",
            small(&|l| l.max_compute_workgroup_storage_size = 16),
        ),
    ];
    for (what, c) in cases {
        let mut o = SessionOptions::default();
        o.plan.cpu_fallback = false;
        // Softmax reduces through workgroup memory; the CNN has it at the end.
        match Session::with_context_async(&model, c, o).await {
            Ok(_) => panic!("a session over the '{what}' limit was created"),
            Err(e) => assert!(
                matches!(e, wgedge::Error::DeviceLimit { .. }) && e.to_string().contains(what),
                "'{what}': {e}"
            ),
        }
    }
}

/// The demo's model in f32, int8 and int4 on WebGPU against the CPU reference on the same
/// quantized weights, and the f32 model's predictions against the labels.
#[wasm_bindgen_test]
async fn demo_model_f32_int8_int4() {
    let f32_model = Model::from_bytes(MODEL).unwrap();
    let (px, labels) = test_digits(DIGITS).unwrap();
    let n = 24;
    let ctx = webgpu().await;
    for kind in ["f32", "int8", "int4"] {
        let model = variant(&f32_model, kind).unwrap();
        let reference = Session::cpu(&model, reference_opts()).unwrap();
        let fast_cpu = open_session(&model, None).await.unwrap();
        let gpu = match &ctx {
            Some(c) => Some(open_session(&model, Some(c.clone())).await.unwrap()),
            None => None,
        };
        if let Some(g) = &gpu {
            assert!(g.is_gpu(), "{kind}: session is not on WebGPU");
            console_log!(
                "{kind}: {} ({} notices: {:?})",
                g.device_name(),
                g.notices().len(),
                g.notices()
            );
        }
        let mut correct = 0;
        let t0 = js_sys::Date::now();
        for i in 0..n {
            let img = &px[i * 784..(i + 1) * 784];
            let want = classify(&reference, img).await.unwrap();
            // Probabilities after softmax; the logits are sums of at most 800 terms, so
            // dot_tol(800) bounds their difference, and softmax does not enlarge it.
            let tol = dot_tol(800);
            let cpu = classify(&fast_cpu, img).await.unwrap();
            close(
                &format!("{kind} digit {i} (CPU backend)"),
                &cpu,
                &want,
                tol,
                1e-5,
            );
            if let Some(g) = &gpu {
                let got = classify(g, img).await.unwrap();
                close(
                    &format!("{kind} digit {i} (WebGPU)"),
                    &got,
                    &want,
                    tol,
                    1e-5,
                );
            }
            let pred = (0..10)
                .max_by(|&a, &b| want[a].total_cmp(&want[b]))
                .unwrap();
            correct += usize::from(pred == labels[i] as usize);
        }
        console_log!(
            "{kind}: {correct}/{n} of the held-out digits right ({:.1} s)",
            (js_sys::Date::now() - t0) / 1e3
        );
        // The shipped model gets ~99% of the held-out set; int8 and int4 keep it within a digit
        // or two here.
        assert!(correct + 2 >= n, "{kind}: only {correct}/{n} right");
    }
}
