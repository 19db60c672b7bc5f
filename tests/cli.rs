//! The `wgedge` command line, run as a user would.

use std::collections::BTreeMap;
use std::process::Command;
use wgedge::Tensor;

fn wgedge(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wgedge"))
        .args(args)
        .env("WGEDGE_AUTOTUNE", "0")
        .output()
        .expect("run wgedge");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn tmp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("wgedge-cli-{}-{name}", std::process::id()))
}

#[test]
fn demo_reports_accuracy_on_cpu() {
    let (ok, out, err) = wgedge(&["demo", "--backend", "cpu"]);
    assert!(ok, "{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with("held-out accuracy"))
        .expect(&out);
    let pct: f64 = line
        .split('=')
        .nth(1)
        .unwrap()
        .trim()
        .trim_end_matches('%')
        .parse()
        .unwrap();
    assert!(pct > 97.0, "{line}");
    assert!(out.contains("latency per image"));
}

#[test]
fn info_run_and_errors() {
    let model = concat!(env!("CARGO_MANIFEST_DIR"), "/models/mnist-cnn.safetensors");
    let (ok, out, err) = wgedge(&["info", model, "--backend", "cpu"]);
    assert!(ok, "{err}");
    assert!(out.contains("params: 9098"), "{out}");
    assert!(out.contains("memory:"), "{out}");

    let input = tmp("in.safetensors");
    let output = tmp("out.safetensors");
    let mut t = BTreeMap::new();
    t.insert("image".to_string(), Tensor::random(&[1, 1, 28, 28], 3));
    wgedge::model::save_tensors(&input, &t).unwrap();
    let (ok, out, err) = wgedge(&[
        "run",
        model,
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--backend",
        "cpu",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("wrote probs"), "{out}");
    let probs = wgedge::model::load_tensors(&output).unwrap();
    let p = probs["probs"].f32s("probs").unwrap();
    assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5);

    // Input keyed by the wrong name: a clear error and a failing exit status.
    let mut t = BTreeMap::new();
    t.insert("img".to_string(), Tensor::random(&[1, 1, 28, 28], 3));
    wgedge::model::save_tensors(&input, &t).unwrap();
    let (ok, _, err) = wgedge(&[
        "run",
        model,
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--backend",
        "cpu",
    ]);
    assert!(!ok);
    assert!(err.contains("unknown input 'img'"), "{err}");

    // A truncated model file.
    let bytes = std::fs::read(model).unwrap();
    let broken = tmp("broken.safetensors");
    std::fs::write(&broken, &bytes[..bytes.len() / 3]).unwrap();
    let (ok, _, err) = wgedge(&["info", broken.to_str().unwrap(), "--backend", "cpu"]);
    assert!(!ok);
    assert!(err.contains("bad model file"), "{err}");
    let (ok, _, err) = wgedge(&["info", "/nonexistent/model.safetensors"]);
    assert!(
        !ok && err.contains("/nonexistent/model.safetensors"),
        "{err}"
    );
    for p in [input, output, broken] {
        std::fs::remove_file(p).ok();
    }
}

#[test]
fn bench_writes_json_records() {
    let json = tmp("bench.json");
    let (ok, out, err) = wgedge(&[
        "bench",
        "--suite",
        "models",
        "--backend",
        "cpu",
        "--quick",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("mnist-cnn"), "{out}");
    let recs: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(!recs.is_empty());
    for r in &recs {
        for k in [
            "workload",
            "kernel",
            "backend",
            "mode",
            "median_ms",
            "min_ms",
            "runs",
        ] {
            assert!(r.get(k).is_some(), "record lacks {k}: {r}");
        }
    }
    std::fs::remove_file(json).ok();
}
