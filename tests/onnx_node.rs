//! ONNX's backend node tests (converted by `tools/onnx_node_tests.py` from the pinned `onnx`
//! wheel into `tests/data/onnx/node/*.safetensors`): each case's model is imported and run on
//! the CPU reference and on the GPU, and every output is compared with the expected values
//! onnx's numpy reference computed (no wgedge code made them).
//!
//! Tolerance: ONNX's own backend-test defaults, rtol 1e-3 and atol 1e-7
//! (`|got - want| <= atol + rtol * |want|`); NaN matches NaN; integer and bool outputs must be
//! equal. No case uses a wider one.
//!
//! The set of passing cases is compared with `tests/data/onnx/expected_pass.txt`: a listed case
//! that fails is a regression and fails the test; a case that passes and is not listed is
//! reported (run with `WGEDGE_ONNX_UPDATE=1` to rewrite the list and `results.md`, the per-op
//! table the README takes).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use wgedge::tensor::TensorData;
use wgedge::{Backend, Model, Session, SessionOptions, Tensor};

const RTOL: f64 = 1e-3;
const ATOL: f64 = 1e-7;

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/onnx")
}

struct Case {
    name: String,
    op: String,
    model: Vec<u8>,
    inputs: Vec<Tensor>,
    expected: Vec<Tensor>,
}

fn load_case(path: &Path) -> Case {
    let bytes = std::fs::read(path).unwrap();
    let (tensors, meta) = wgedge::model::read_tensors(&bytes).unwrap();
    let model = match tensors["model"].data() {
        TensorData::U8(v) => v.clone(),
        _ => panic!("{}: model is not u8", path.display()),
    };
    let list = |kind: &str| {
        (0..)
            .map_while(|i| tensors.get(&format!("{kind}.{i}")).cloned())
            .collect::<Vec<_>>()
    };
    Case {
        name: path.file_stem().unwrap().to_string_lossy().into_owned(),
        op: meta.get("op").cloned().unwrap_or_default(),
        model,
        inputs: list("input"),
        expected: list("expected"),
    }
}

/// First element out of tolerance, as a message.
fn compare(got: &Tensor, want: &Tensor) -> Result<(), String> {
    if got.shape() != want.shape() {
        // ONNX scalars are rank 0; wgedge may give them as [1].
        if !(got.numel() == want.numel() && (got.shape().len() <= 1 && want.shape().len() <= 1)) {
            return Err(format!(
                "shape {:?}, expected {:?}",
                got.shape(),
                want.shape()
            ));
        }
    }
    if got.dtype() != want.dtype() {
        return Err(format!("dtype {}, expected {}", got.dtype(), want.dtype()));
    }
    let (g, w) = (
        got.to_f32().into_f32s("got").unwrap(),
        want.to_f32().into_f32s("want").unwrap(),
    );
    let float = want.dtype().is_float();
    for (i, (&a, &b)) in g.iter().zip(&w).enumerate() {
        let (a, b) = (a as f64, b as f64);
        let ok = if a.is_nan() || b.is_nan() {
            a.is_nan() && b.is_nan()
        } else if !float || b.is_infinite() {
            a == b
        } else {
            (a - b).abs() <= ATOL + RTOL * b.abs()
        };
        if !ok {
            return Err(format!("element {i}: got {a}, expected {b}"));
        }
    }
    Ok(())
}

fn run_on(session: &Session, names: &[String], case: &Case) -> Result<(), String> {
    let feeds: Vec<(&str, &Tensor)> = names
        .iter()
        .map(|s| s.as_str())
        .zip(case.inputs.iter())
        .collect();
    let outs = session.run(&feeds).map_err(|e| format!("run: {e}"))?;
    if outs.len() != case.expected.len() {
        return Err(format!(
            "{} outputs, expected {}",
            outs.len(),
            case.expected.len()
        ));
    }
    for (k, (g, w)) in outs.iter().zip(&case.expected).enumerate() {
        compare(g, w).map_err(|e| format!("output {k}: {e}"))?;
    }
    Ok(())
}

fn opts() -> SessionOptions {
    SessionOptions {
        autotune: false,
        cpu_reference: true,
        ..Default::default()
    }
}

/// The model's graph input names (initializers excluded), in order.
fn input_names(model: &[u8]) -> Vec<String> {
    use prost::Message;
    let m = wgedge::onnx::proto::ModelProto::decode(model).unwrap();
    let g = m.graph.unwrap();
    g.input
        .iter()
        .map(|v| v.name().to_string())
        .filter(|n| !g.initializer.iter().any(|t| t.name() == n))
        .collect()
}

/// Imports one case: as it is, or — when an argument that must be known at import (a Reshape
/// target, Squeeze axes, Clip bounds) is a graph input, as these tests write them — with every
/// input but the first fixed to the case's values (`ImportOptions::constants`), as other
/// runtimes' node-test runners do. Returns the model and whether inputs were fixed.
fn import(case: &Case) -> Result<(Model, Vec<String>, bool), String> {
    let all = input_names(&case.model);
    if all.len() != case.inputs.len() {
        return Err(format!(
            "{} graph inputs, case has {}",
            all.len(),
            case.inputs.len()
        ));
    }
    match wgedge::onnx::import(&case.model, &Default::default()) {
        Ok((m, _)) => return Ok((m, all, false)),
        Err(e) if !e.to_string().contains("is not a constant at import") || all.len() < 2 => {
            return Err(format!("import: {e}"))
        }
        Err(_) => {}
    }
    let options = wgedge::onnx::ImportOptions {
        constants: all[1..]
            .iter()
            .cloned()
            .zip(case.inputs[1..].iter().cloned())
            .collect(),
        ..Default::default()
    };
    let (m, _) = wgedge::onnx::import(&case.model, &options).map_err(|e| format!("import: {e}"))?;
    Ok((m, all[..1].to_vec(), true))
}

/// Imports and runs one case on the CPU reference and the GPU; `Ok(true)` when arguments were
/// fixed at import.
fn check(case: &Case, gpu: Option<&std::sync::Arc<wgedge::GpuContext>>) -> Result<bool, String> {
    let (model, names, frozen) = import(case)?;
    let cpu = Session::with_options(&model, Backend::Cpu, opts())
        .map_err(|e| format!("cpu session: {e}"))?;
    run_on(&cpu, &names, case).map_err(|e| format!("cpu: {e}"))?;
    if let Some(ctx) = gpu {
        let s = Session::with_context(&model, ctx.clone(), opts())
            .map_err(|e| format!("gpu session: {e}"))?;
        run_on(&s, &names, case).map_err(|e| format!("gpu: {e}"))?;
    }
    Ok(frozen)
}

#[test]
fn onnx_node_tests() {
    let gpu = common::gpu();
    let dir = data_dir();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir.join("node"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    paths.sort();
    assert!(
        paths.len() > 100,
        "node test cases missing: run tools/onnx_node_tests.py"
    );
    let mut passed = BTreeSet::new();
    let mut failures = BTreeMap::new();
    let mut per_op: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut frozen = BTreeSet::new();
    for p in &paths {
        let case = load_case(p);
        let r = check(&case, gpu.as_ref());
        let e = per_op.entry(case.op.clone()).or_default();
        e.1 += 1;
        match r {
            Ok(f) => {
                e.0 += 1;
                passed.insert(case.name.clone());
                if f {
                    frozen.insert(case.name.clone());
                }
            }
            Err(why) => {
                failures.insert(case.name.clone(), why);
            }
        }
    }
    let skipped = std::fs::read_to_string(dir.join("skipped.tsv")).unwrap();
    let table = results_table(&per_op, &skipped, &frozen, passed.len(), paths.len());
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    std::fs::create_dir_all(&target).ok();
    std::fs::write(target.join("onnx_node_results.md"), &table).ok();
    let mut fail_log = String::new();
    for (k, v) in &failures {
        fail_log.push_str(&format!("{k}: {}\n", v.replace('\n', " | ")));
    }
    std::fs::write(target.join("onnx_node_failures.txt"), &fail_log).ok();
    println!("{table}");

    let expect_path = dir.join("expected_pass.txt");
    if std::env::var("WGEDGE_ONNX_UPDATE").is_ok_and(|v| v == "1") {
        let list: String = passed.iter().map(|s| format!("{s}\n")).collect();
        std::fs::write(&expect_path, list).unwrap();
        std::fs::write(dir.join("results.md"), &table).unwrap();
    }
    let expected: BTreeSet<String> = std::fs::read_to_string(&expect_path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.trim().to_string())
        .collect();
    let new: Vec<&String> = passed.difference(&expected).collect();
    if !new.is_empty() {
        eprintln!(
            "{} ONNX node tests pass that expected_pass.txt does not list (WGEDGE_ONNX_UPDATE=1 adds them): {new:?}",
            new.len()
        );
    }
    let regressed: Vec<String> = expected
        .iter()
        .filter(|c| !passed.contains(*c))
        .map(|c| {
            format!(
                "{c}: {}",
                failures.get(c).map_or("case file missing", |s| s.as_str())
            )
        })
        .collect();
    assert!(
        regressed.is_empty(),
        "{} ONNX node tests that passed before fail now:\n{}",
        regressed.len(),
        regressed.join("\n")
    );
    println!(
        "{} of {} ONNX node tests pass on the CPU reference{}",
        passed.len(),
        paths.len(),
        if gpu.is_some() {
            " and the GPU"
        } else {
            " (GPU skipped: no adapter)"
        }
    );
}

fn results_table(
    per_op: &BTreeMap<String, (usize, usize)>,
    skipped: &str,
    frozen: &BTreeSet<String>,
    passed: usize,
    total: usize,
) -> String {
    let mut s = format!(
        "ONNX 1.17.0 backend node tests: {passed} of {total} converted cases pass on the CPU \
         reference and the GPU (rtol 1e-3, atol 1e-7).\n\n| op | passed / cases |\n| --- | --- |\n"
    );
    for (op, (p, t)) in per_op {
        s.push_str(&format!("| {op} | {p} / {t} |\n"));
    }
    if !frozen.is_empty() {
        s.push_str(&format!(
            "\nPassed with the argument inputs (shape, axes, bounds) fixed at import: {}.\n",
            frozen
                .iter()
                .map(|c| c.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for l in skipped.lines().filter(|l| !l.starts_with('#')) {
        let why = l.split('\t').nth(2).unwrap_or("");
        let key = why.split(" (").next().unwrap_or(why).to_string();
        *reasons.entry(key).or_default() += 1;
    }
    s.push_str("\nNot converted (tests/data/onnx/skipped.tsv lists each case):\n\n| reason | cases |\n| --- | --- |\n");
    for (r, n) in reasons {
        s.push_str(&format!("| {r} | {n} |\n"));
    }
    s
}
