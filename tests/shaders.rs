//! Every WGSL kernel (every const-header variant the ops use, every activation) is validated by
//! naga and translated to SPIR-V, MSL, HLSL and GLSL, so a Metal/DX12/GL break shows up here even
//! though only Vulkan runs on the test machine.

use naga::back::{glsl, hlsl, msl, spv};
use naga::valid::{Capabilities, ValidationFlags, Validator};
use wgedge::ops::{ShaderFile, ShaderKey};

fn translate_all(key: &ShaderKey, act: u32) {
    let label = format!("{} ACT={act}", key.label());
    let module = wgedge::ops::shaders::validate(key).unwrap_or_else(|e| panic!("{e}"));
    let info = Validator::new(ValidationFlags::all(), Capabilities::default())
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
        shader_model: hlsl::ShaderModel::V5_1,
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
    glsl::Writer::new(
        &mut glsl_src,
        &module,
        &info,
        &gopts,
        &gpipe,
        naga::proc::BoundsCheckPolicies::default(),
    )
    .unwrap_or_else(|e| panic!("{label}: GLSL setup: {e:?}"))
    .write()
    .unwrap_or_else(|e| panic!("{label}: GLSL: {e:?}"));
    assert!(
        glsl_src.contains("local_size_x"),
        "{label}: GLSL has no local_size"
    );
}

#[test]
fn every_shader_validates_and_translates() {
    let mut count = 0;
    for file in ShaderFile::ALL {
        for consts in file.sample_consts() {
            let key = ShaderKey::new(file, &consts);
            for act in [0, 3, 6] {
                translate_all(&key, act);
                count += 1;
            }
        }
    }
    assert!(count >= ShaderFile::ALL.len() * 3);
}

#[test]
fn every_kernel_variant_the_chooser_can_pick_validates() {
    for key in wgedge::sched::select::all_variant_shaders() {
        translate_all(&key, 1);
    }
}

#[test]
fn a_broken_shader_is_a_shader_compile_error() {
    // An unknown const name in the header is a parse error of the assembled source.
    let key = ShaderKey::new(ShaderFile::GemmVec4, &[("TM", 4)]);
    match wgedge::ops::shaders::validate(&key) {
        Err(wgedge::Error::ShaderCompile { shader, message }) => {
            assert!(shader.contains("gemm_vec4"), "{shader}");
            assert!(!message.is_empty());
        }
        other => panic!("expected ShaderCompile, got {other:?}"),
    }
}
