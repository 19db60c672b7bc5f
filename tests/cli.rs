//! The `wgedge` command line, run as a user would.

use std::collections::BTreeMap;
use std::process::Command;
use wgedge::Tensor;

mod common;
use common::cli::{wgedge, wgedge_env};

/// A fresh, empty directory for one test.
fn tmp_dir(name: &str) -> std::path::PathBuf {
    common::cli::tmp_dir("cli", name)
}

fn tmp(name: &str) -> std::path::PathBuf {
    common::cli::tmp("cli", name)
}

const MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/mnist-cnn.safetensors");

/// Writes a valid input file for the MNIST model.
fn write_input(path: &std::path::Path) {
    let mut t = BTreeMap::new();
    t.insert("image".to_string(), Tensor::random(&[1, 1, 28, 28], 3));
    wgedge::model::save_tensors(path, &t).unwrap();
}

/// `wgedge run MODEL --input IN --output OUT --backend cpu`.
fn run_cpu(input: &std::path::Path, output: &std::path::Path) -> (bool, String, String) {
    wgedge(&[
        "run",
        MODEL,
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--backend",
        "cpu",
    ])
}

/// The names in `dir`, sorted.
fn names(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
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

#[test]
fn run_refuses_to_write_over_its_input() {
    let dir = tmp_dir("overwrite");
    let input = dir.join("in.safetensors");
    write_input(&input);
    let before = std::fs::read(&input).unwrap();
    let input_str = input.to_str().unwrap().to_string();

    // The same path, another spelling of it, a symbolic link and a hard link to it.
    let other_spelling = dir.join(".").join("in.safetensors");
    let symlink = dir.join("sym.safetensors");
    let hardlink = dir.join("hard.safetensors");
    #[cfg(unix)]
    std::os::unix::fs::symlink(&input, &symlink).unwrap();
    std::fs::hard_link(&input, &hardlink).unwrap();
    let mut outputs = vec![input.clone(), other_spelling, hardlink.clone()];
    if cfg!(unix) {
        outputs.push(symlink.clone());
    }
    for output in &outputs {
        let (ok, out, err) = run_cpu(&input, output);
        assert!(
            !ok,
            "wrote over its input through {}: {out}",
            output.display()
        );
        assert!(
            err.contains("refusing to write the output")
                && err.contains(output.to_str().unwrap())
                && err.contains(&input_str),
            "{err}"
        );
        assert_eq!(
            std::fs::read(&input).unwrap(),
            before,
            "{}",
            output.display()
        );
    }

    // Nor over the model: the output resolves to the model file.
    let model_copy = dir.join("model.safetensors");
    std::fs::copy(MODEL, &model_copy).unwrap();
    let model_bytes = std::fs::read(&model_copy).unwrap();
    let (ok, _, err) = wgedge(&[
        "run",
        model_copy.to_str().unwrap(),
        "--input",
        &input_str,
        "--output",
        model_copy.to_str().unwrap(),
        "--backend",
        "cpu",
    ]);
    assert!(!ok);
    assert!(err.contains("over the model"), "{err}");
    assert_eq!(std::fs::read(&model_copy).unwrap(), model_bytes);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn run_writes_outputs_whole_or_not_at_all() {
    let dir = tmp_dir("atomic");
    let input = dir.join("in.safetensors");
    write_input(&input);

    // A new output appears whole, with no temporary file left beside it.
    let output = dir.join("out.safetensors");
    let (ok, _, err) = run_cpu(&input, &output);
    assert!(ok, "{err}");
    assert!(wgedge::model::load_tensors(&output).is_ok());
    assert_eq!(names(&dir), ["in.safetensors", "out.safetensors"]);

    // Writing through a symbolic link replaces the file it points to and keeps the link.
    #[cfg(unix)]
    {
        let link = dir.join("link.safetensors");
        std::os::unix::fs::symlink(&output, &link).unwrap();
        std::fs::write(&output, b"old").unwrap();
        let (ok, _, err) = run_cpu(&input, &link);
        assert!(ok, "{err}");
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert!(wgedge::model::load_tensors(&output).is_ok());
        std::fs::remove_file(&link).unwrap();
    }

    // A run that fails leaves an existing output as it was.
    std::fs::write(&output, b"previous result").unwrap();
    let mut bad = BTreeMap::new();
    bad.insert("img".to_string(), Tensor::random(&[1, 1, 28, 28], 3));
    let bad_input = dir.join("bad.safetensors");
    wgedge::model::save_tensors(&bad_input, &bad).unwrap();
    let (ok, _, _) = run_cpu(&bad_input, &output);
    assert!(!ok);
    assert_eq!(std::fs::read(&output).unwrap(), b"previous result");

    // A write that fails (the output is a directory) leaves no temporary file behind.
    let sub = dir.join("sub");
    std::fs::create_dir(&sub).unwrap();
    let (ok, _, err) = run_cpu(&input, &sub);
    assert!(!ok);
    assert!(err.contains("is a directory"), "{err}");
    assert_eq!(
        names(&dir),
        [
            "bad.safetensors",
            "in.safetensors",
            "out.safetensors",
            "sub"
        ]
    );
    assert!(names(&sub).is_empty());

    // A missing output directory is named in the error.
    let (ok, _, err) = run_cpu(&input, &dir.join("nodir").join("out.safetensors"));
    assert!(!ok);
    assert!(err.contains("nodir"), "{err}");
    std::fs::remove_dir_all(dir).ok();
}

/// Mesa's device-select layer connects to the Wayland display when the Vulkan instance enables
/// the Wayland surface extension, and libwayland prints this without a desktop session.
#[test]
fn device_setup_prints_no_window_system_errors() {
    let (_, out, err) = wgedge_env(
        &["info", "--device"],
        &[("XDG_RUNTIME_DIR", None), ("WAYLAND_DISPLAY", None)],
    );
    assert!(!err.contains("XDG_RUNTIME_DIR"), "{err}{out}");
}

/// The CLI resolves `WGEDGE_BACKEND` and prints what `auto` decided, once.
#[test]
fn cli_reads_the_environment_and_reports_the_auto_choice() {
    let (ok, out, err) = wgedge_env(
        &["info", MODEL, "--backend", "auto"],
        &[("WGEDGE_BACKEND", Some("cpu"))],
    );
    assert!(ok, "{err}");
    assert!(out.contains("device:   cpu"), "{out}");
    assert!(!err.contains("wgedge:"), "{err}");

    let (ok, _, err) = wgedge_env(
        &["info", MODEL, "--backend", "auto"],
        &[("WGEDGE_BACKEND", Some("bogus"))],
    );
    assert!(!ok);
    assert!(err.contains("unknown backend 'bogus'"), "{err}");

    let (ok, out, err) = wgedge(&["info", MODEL]);
    assert!(ok, "{err}");
    let notices: Vec<&str> = err.lines().filter(|l| l.starts_with("wgedge: ")).collect();
    assert_eq!(notices.len(), 1, "{err}");
    let n = notices[0];
    // Auto measures the model on the GPU adapter and the CPU backend (or reads the verdict it
    // cached) and says which it took.
    if n == "wgedge: auto: no GPU adapter found; using the CPU backend" {
        assert!(out.contains("device:   cpu"), "{out}");
        return;
    }
    assert!(
        n.starts_with("wgedge: auto: measured ") || n.starts_with("wgedge: auto: cached "),
        "{n}"
    );
    assert!(n.contains(" ms per run on the CPU backend, "), "{n}");
    if out.contains("device:   cpu") {
        assert!(n.contains("; using the CPU backend ("), "{n}");
    } else {
        assert!(n.contains("; using the GPU ("), "{n}");
    }
}

/// The library reads no environment and prints nothing: `Backend::Auto` ignores
/// `WGEDGE_BACKEND` (even an invalid one) and its decision comes back as a value. Runs in a
/// child process so that the variable is set for it alone.
#[test]
fn library_ignores_the_environment_and_prints_nothing() {
    if std::env::var_os("WGEDGE_CLI_TEST_CHILD").is_some() {
        let (ctx, choice) =
            pollster::block_on(wgedge::GpuContext::open_with_choice(wgedge::Backend::Auto))
                .expect("Auto must not read WGEDGE_BACKEND");
        let choice = choice.expect("Auto reports its choice");
        assert_eq!(ctx.is_none(), choice.is_cpu());
        let model = wgedge::Model::load(MODEL).unwrap();
        let opts = wgedge::SessionOptions {
            autotune: false,
            ..Default::default()
        };
        let s = wgedge::Session::with_options(&model, wgedge::Backend::Auto, opts).unwrap();
        s.run(&[("image", &Tensor::random(&[1, 1, 28, 28], 3))])
            .unwrap();
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "library_ignores_the_environment_and_prints_nothing",
            "--test-threads=1",
        ])
        .env("WGEDGE_CLI_TEST_CHILD", "1")
        .env("WGEDGE_BACKEND", "bogus")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("1 passed"), "{stdout}");
    assert!(!stderr.contains("wgedge"), "the library printed: {stderr}");
}
