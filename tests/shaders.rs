//! Every WGSL kernel (every const-header variant the ops use, every activation) is validated by
//! naga and translated to SPIR-V, MSL, HLSL and GLSL, so a Metal/DX12/GL break shows up here even
//! though only Vulkan runs on the test machine. Sources come from the op registry (each op file
//! registers what it owns), and a file under `shaders/` that no op registers is an error.

use naga::back::{glsl, hlsl, msl, spv};
use naga::valid::{Capabilities, ValidationFlags, Validator};
use wgedge::gpu::shader::{validate, ShaderKey, ShaderSource, COMMON_PATH};
use wgedge::ops::Op;

fn sources() -> Vec<&'static ShaderSource> {
    let mut v = Op::all_shaders();
    v.sort();
    v.dedup();
    v
}

fn translate_all(key: &ShaderKey, act: u32) {
    let label = format!("{} ACT={act}", key.label());
    let module = validate(key).unwrap_or_else(|e| panic!("{e}"));
    // Kernels using subgroup operations need the capability (and HLSL shader model 6).
    let subgroups = key.source().contains("subgroupAdd");
    let f16 = key.source().contains("enable f16");
    let mut caps = Capabilities::default();
    if subgroups {
        caps |= Capabilities::SUBGROUP;
    }
    if f16 {
        caps |= Capabilities::SHADER_FLOAT16;
    }
    let info = Validator::new(ValidationFlags::all(), caps)
        .validate(&module)
        .unwrap_or_else(|e| panic!("{label}: {e:?}"));
    let mut consts = naga::back::PipelineConstants::default();
    consts.insert("ACT".to_string(), act as f64);
    consts.insert("ALPHA".to_string(), 0.1);
    let (module, info) = naga::back::pipeline_constants::process_overrides(
        &module,
        &info,
        Some((naga::ShaderStage::Compute, "main")),
        &consts,
    )
    .unwrap_or_else(|e| panic!("{label}: overrides: {e:?}"));
    let ep = module
        .entry_points
        .iter()
        .find(|e| e.name == "main")
        .expect("entry point main");
    assert_eq!(ep.stage, naga::ShaderStage::Compute);

    let words = spv::write_vec(&module, &info, &spv::Options::default(), None)
        .unwrap_or_else(|e| panic!("{label}: SPIR-V: {e:?}"));
    assert_eq!(words[0], 0x0723_0203, "{label}: SPIR-V magic");

    let (msl_src, _) = msl::write_string(
        &module,
        &info,
        &msl::Options::default(),
        &msl::PipelineOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{label}: MSL: {e:?}"));
    assert!(
        msl_src.contains("kernel"),
        "{label}: MSL has no kernel function"
    );

    let mut hlsl_src = String::new();
    let hopts = hlsl::Options {
        // Wave ops need shader model 6.0, 16-bit types 6.2.
        shader_model: if f16 {
            hlsl::ShaderModel::V6_2
        } else if subgroups {
            hlsl::ShaderModel::V6_0
        } else {
            hlsl::ShaderModel::V5_1
        },
        ..Default::default()
    };
    let hpipe = hlsl::PipelineOptions {
        entry_point: Some((naga::ShaderStage::Compute, "main".into())),
    };
    hlsl::Writer::new(&mut hlsl_src, &hopts, &hpipe)
        .write(&module, &info, None)
        .unwrap_or_else(|e| panic!("{label}: HLSL: {e:?}"));
    assert!(
        hlsl_src.contains("numthreads"),
        "{label}: HLSL has no numthreads"
    );

    let mut glsl_src = String::new();
    let gopts = glsl::Options {
        version: glsl::Version::Embedded {
            version: 310,
            is_webgl: false,
        },
        ..Default::default()
    };
    let gpipe = glsl::PipelineOptions {
        shader_stage: naga::ShaderStage::Compute,
        entry_point: "main".into(),
        multiview: None,
    };
    let written = glsl::Writer::new(
        &mut glsl_src,
        &module,
        &info,
        &gopts,
        &gpipe,
        naga::proc::BoundsCheckPolicies::default(),
    )
    .unwrap_or_else(|e| panic!("{label}: GLSL setup: {e:?}"))
    .write();
    if f16 {
        // GLSL has no f16 in naga's output; wgpu's GL backend never offers `shader-f16`, so
        // kernels that need it are never chosen there (their fit check asks for the feature).
        assert!(written.is_err(), "{label}: GLSL now takes f16: test it");
        return;
    }
    written.unwrap_or_else(|e| panic!("{label}: GLSL: {e:?}"));
    assert!(
        glsl_src.contains("local_size_x"),
        "{label}: GLSL has no local_size"
    );
}

#[test]
fn every_shader_validates_and_translates() {
    let mut count = 0;
    let all = sources();
    for file in &all {
        for consts in file.samples {
            let key = ShaderKey::new(file, consts);
            for act in [0, 3, 6] {
                translate_all(&key, act);
                count += 1;
            }
        }
    }
    assert!(count >= all.len() * 3);
}

#[test]
fn every_wgsl_file_is_registered_by_an_op() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut on_disk = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "wgsl") {
                let rel = p
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                on_disk.push(rel);
            }
        }
    }
    let registered: std::collections::HashSet<&str> = sources()
        .iter()
        .flat_map(|s| s.files.iter().map(|(p, _)| *p))
        .chain([COMMON_PATH])
        .collect();
    let missing: Vec<&String> = on_disk
        .iter()
        .filter(|p| !registered.contains(p.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "WGSL files no op registers (add a wgsl! item in the op that owns them): {missing:?}"
    );
    assert!(
        on_disk.len() >= 28,
        "found only {} .wgsl files",
        on_disk.len()
    );
}

#[test]
fn every_kernel_variant_the_chooser_can_pick_validates() {
    // Plan each tune slot's workload with each candidate (no device needed) and validate the
    // shader of every dispatch the lowering produced.
    use wgedge::profile::DeviceProfile;
    use wgedge::sched::{Plan, PlanOptions};
    let mut seen = std::collections::HashSet::new();
    for slot in Op::tune_slots() {
        for (cand, name) in slot.candidates.iter().zip(&slot.names) {
            let b = wgedge::exec::autotune::workload(&slot);
            let (g, w) = b.build().unwrap();
            let mut p = DeviceProfile::portable();
            p.int8_activations = slot.int8_activations;
            p.f16_compute = slot.f16_compute;
            // Feature-gated candidates (subgroups) are planned as if the adapter had them.
            p.features.subgroups = true;
            p.features.shader_f16 = true;
            p.kernels
                .entry(slot.family.into())
                .or_default()
                .insert(slot.slot.into(), cand.clone());
            let plan = Plan::new(&g, &w, Some(&p), PlanOptions::default()).unwrap();
            assert_eq!(
                &plan.nodes[0].kernel, name,
                "{}/{} picks its candidate",
                slot.family, slot.slot
            );
            for d in &plan.nodes[0].dispatches {
                if seen.insert(d.shader.clone()) {
                    translate_all(&d.shader, 1);
                }
            }
        }
    }
    assert!(seen.len() > 20, "only {} distinct kernels", seen.len());
}

#[test]
fn a_broken_shader_is_a_shader_compile_error() {
    // An unknown const name in the header is a parse error of the assembled source.
    let vec4 = sources()
        .into_iter()
        .find(|s| s.name.contains("gemm_vec4"))
        .expect("the vec4 GEMM is registered");
    let key = ShaderKey::new(vec4, &[("TM", 4)]);
    match validate(&key) {
        Err(wgedge::Error::ShaderCompile { shader, message }) => {
            assert!(shader.contains("gemm_vec4"), "{shader}");
            assert!(!message.is_empty());
        }
        other => panic!("expected ShaderCompile, got {other:?}"),
    }
}
