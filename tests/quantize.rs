//! `wgedge::compress` quantization and the `wgedge quantize` command.
//!
//! Weights are "Gaussian-ish": the mean of four uniform [-1, 1) draws times 2, so sigma^2 = 1/3
//! and |w| <= 2 = 3.46 sigma. That bound makes the SQNR floors analytic rather than lucky:
//! rounding to a step `d` adds noise of variance `d^2 / 12`, and with max-abs scaling the step
//! is at most `2 / qmax`, so SQNR >= 10 log10(12 qmax^2 sigma^2 / 4) = 10 log10(qmax^2):
//! int8 (qmax 127) >= 42 dB, int4 (qmax 7) >= 16.9 dB, power-of-two scales (step up to twice
//! as large) >= 36 dB; f16 rounds each value within 2^-11 relative, so >= 66 dB. The tests use
//! 35 / 15 / 29 / 60 dB, leaving room for the finite samples.

use std::collections::BTreeMap;
use wgedge::compress::{
    quantize, quantize_with_progress, Clip, QuantConfig, QuantReport, WeightKind,
};
use wgedge::graph::GraphBuilder;
use wgedge::ops::{Activation, Conv2d, MatMul, Op};
use wgedge::{Error, Model, Session, SessionOptions, Tensor};

mod common;
use common::cli::wgedge;

/// A fresh, empty directory for one test.
fn tmp_dir(name: &str) -> std::path::PathBuf {
    common::cli::tmp_dir("quantize", name)
}

/// Gaussian-ish weights (see the file comment), deterministic.
fn gaussian(shape: &[usize], seed: u64) -> Tensor {
    let draws: Vec<Tensor> = (0..4)
        .map(|i| Tensor::random(shape, seed * 8 + i))
        .collect();
    let v: Vec<Vec<f32>> = draws
        .iter()
        .map(|t| t.f32s("r").unwrap().to_vec())
        .collect();
    let n = v[0].len();
    Tensor::new(
        shape,
        (0..n)
            .map(|i| v.iter().map(|d| d[i]).sum::<f32>() / 2.0)
            .collect(),
    )
    .unwrap()
}

/// conv (`[16, 8, 3, 3]`, OIHW) -> flatten -> matmul with a `[K, N]` weight (trans_b = false,
/// must be transposed) -> linear (`[N, K]`, trans_b) -> output.
fn small_model() -> Model {
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[1, 8, 6, 6]);
    let cw = b.weight("conv.weight", gaussian(&[16, 8, 3, 3], 1));
    let cb = b.weight("conv.bias", gaussian(&[16], 2));
    let conv = Conv2d {
        pad: [1; 4],
        act: Activation::Relu,
        ..Default::default()
    };
    let h = b.conv2d(&x, &cw, Some(&cb), conv);
    let h = b.flatten(&h, 1);
    let kn = b.weight("proj.weight", gaussian(&[576, 48], 3));
    let h = b.node(
        Op::MatMul(MatMul {
            act: Activation::Relu,
            ..Default::default()
        }),
        &[&h, &kn],
    );
    let fw = b.weight("fc.weight", gaussian(&[10, 48], 4));
    let fb = b.weight("fc.bias", gaussian(&[10], 5));
    let y = b.linear(&h, &fw, Some(&fb), Activation::None);
    b.output(&y);
    Model::from_builder(b).unwrap()
}

fn input() -> Tensor {
    Tensor::random(&[1, 8, 6, 6], 77)
}

/// The model's first output on the CPU backend.
fn run_cpu(model: &Model, feeds: &[(&str, &Tensor)]) -> Vec<f32> {
    let s = Session::cpu(model, SessionOptions::default()).unwrap();
    s.run(feeds).unwrap()[0].f32s("out").unwrap().to_vec()
}

/// ||a - b|| / ||a||.
fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let num: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
        .sum();
    let den: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum();
    (num / den).sqrt()
}

fn layer<'a>(r: &'a QuantReport, name: &str) -> &'a wgedge::compress::LayerReport {
    r.layers
        .iter()
        .find(|l| l.name == name)
        .unwrap_or_else(|| panic!("no layer {name} in\n{r}"))
}

/// The decoded (dequantized) weight `name` of a quantized model.
fn decoded(model: &Model, name: &str) -> Vec<f32> {
    let spec = model.graph.weights.iter().find(|w| w.name == name).unwrap();
    let fmt = model.graph.format_of(name);
    let t = fmt.decode(name, &spec.shape, &model.weights).unwrap();
    t.f32s(name).unwrap().to_vec()
}

#[test]
fn every_kind_quantizes_runs_and_round_trips() {
    let model = small_model();
    let x = input();
    let want = run_cpu(&model, &[("x", &x)]);
    // (kind, label, SQNR floor in dB, output tolerance relative to the output's norm)
    for (kind, label, floor, tol) in [
        (WeightKind::Int8, "int8", 35.0, 0.03),
        (WeightKind::Int4, "int4-g32-f16s", 15.0, 0.3),
        (WeightKind::F16, "f16", 60.0, 2e-3),
        (WeightKind::Pow2, "pow2-int8", 29.0, 0.06),
    ] {
        let (q, report) = quantize(&model, &QuantConfig::new(kind)).unwrap();
        assert_eq!(report.layers.len(), 3, "{kind}: {report}");
        assert!(report.skipped.is_empty(), "{kind}: {report}");
        for name in ["conv.weight", "proj.weight", "fc.weight"] {
            assert_eq!(q.graph.format_of(name).label(), label, "{kind} {name}");
            let l = layer(&report, name);
            assert_eq!(l.format, label);
            assert!(l.sqnr_db > floor, "{kind} {name}: {} dB", l.sqnr_db);
            assert!(l.bytes_after < l.bytes_before, "{kind} {name}");
            assert!(!q.weights.contains_key(name), "{kind}: dense {name} kept");
        }
        // Biases stay dense.
        assert!(q.graph.format_of("fc.bias").is_dense());
        assert!(q.weights.contains_key("conv.bias"));
        // The [K, N] weight is stored [N, K] and its matmul now reads it transposed.
        let proj = q.graph.weights.iter().find(|w| w.name == "proj.weight");
        assert_eq!(proj.unwrap().shape, [48, 576], "{kind}");
        assert!(layer(&report, "proj.weight").transposed);
        assert!(!layer(&report, "fc.weight").transposed);
        let mm =
            (q.graph.nodes.iter()).find(|n| n.inputs.get(1).is_some_and(|w| w == "proj.weight"));
        assert!(
            matches!(mm.unwrap().op, Op::MatMul(m) if m.trans_b),
            "{kind}"
        );
        // Stored bytes are exactly the parts.
        let want_bytes: usize = (q.weights.iter())
            .filter(|(k, _)| k.starts_with("proj.weight."))
            .map(|(_, t)| t.bytes().len())
            .sum();
        assert_eq!(layer(&report, "proj.weight").bytes_after, want_bytes);
        assert_eq!(report.model_bytes_before, model.weight_bytes());
        assert_eq!(report.model_bytes_after, q.weight_bytes());
        // The outputs move no more than the weights' precision allows.
        let got = run_cpu(&q, &[("x", &x)]);
        let e = rel_err(&want, &got);
        assert!(e < tol, "{kind}: output relative error {e}");
        // A quantized model is a model file like any other.
        let back = Model::from_bytes(&q.to_bytes().unwrap()).unwrap();
        assert_eq!(back.graph, q.graph, "{kind}");
        assert_eq!(*back.weights, *q.weights, "{kind}");
        assert_eq!(run_cpu(&back, &[("x", &x)]), got, "{kind}");
        // The table names every layer and the totals.
        let table = report.to_string();
        for needle in [
            "conv.weight",
            "proj.weight (T)",
            "fc.weight",
            "total (3 layers)",
        ] {
            assert!(table.contains(needle), "{table}");
        }
    }
}

#[test]
fn int8_per_channel_layout_and_bytes() {
    let (q, report) = quantize(&small_model(), &QuantConfig::default()).unwrap();
    // [48, 576] int8 codes + 48 f32 scales.
    assert_eq!(layer(&report, "proj.weight").bytes_after, 48 * 576 + 48 * 4);
    assert_eq!(layer(&report, "proj.weight").bytes_before, 48 * 576 * 4);
    assert_eq!(q.weights["proj.weight.scales"].shape(), [48, 1]);
    // int4 in groups of 64 with f16 scales: 576 / 2 bytes of codes and 9 scales per row.
    let cfg = QuantConfig {
        group: 64,
        ..QuantConfig::new(WeightKind::Int4)
    };
    let (q, report) = quantize(&small_model(), &cfg).unwrap();
    assert_eq!(
        layer(&report, "proj.weight").bytes_after,
        48 * 288 + 48 * 9 * 2
    );
    assert_eq!(q.graph.format_of("proj.weight").label(), "int4-g64-f16s");
    // Asymmetric codes carry zero points.
    let cfg = QuantConfig {
        asym: true,
        ..QuantConfig::new(WeightKind::Int8)
    };
    let (q, report) = quantize(&small_model(), &cfg).unwrap();
    assert!(q.weights.contains_key("fc.weight.zeros"));
    assert!(layer(&report, "fc.weight").sqnr_db > 35.0);
}

/// `[16, 512]` Gaussian-ish rows, each with one outlier of 8 (14 sigma).
fn outlier_model() -> Model {
    let mut w = gaussian(&[16, 512], 9).f32s("w").unwrap().to_vec();
    for r in 0..16 {
        w[r * 512 + (r * 37) % 512] = if r % 2 == 0 { 8.0 } else { -8.0 };
    }
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[1, 512]);
    let w = b.weight("w", Tensor::new(&[16, 512], w).unwrap());
    let y = b.linear(&x, &w, None, Activation::None);
    b.output(&y);
    Model::from_builder(b).unwrap()
}

#[test]
fn mse_clipping_beats_max_abs_on_outliers() {
    let model = outlier_model();
    let sqnr = |group: usize, clip: Clip| {
        let cfg = QuantConfig {
            group,
            clip,
            ..QuantConfig::new(WeightKind::Int4)
        };
        let (_, r) = quantize(&model, &cfg).unwrap();
        (r.layers[0].sqnr_db, r.layers[0].clip)
    };
    // Per row, the outlier stretches the step over 511 ordinary values. Clipping it to t times
    // its size costs (1 - t)^2 o^2 and scales the rounding noise of the others, n o^2 / 588
    // for n values at qmax 7, by t^2: the best t = 1 / (1 + n / 588) ~ 0.53 cuts the row's
    // error from 0.87 o^2 to 0.47 o^2, about 2.7 dB.
    let (plain, t_plain) = sqnr(0, Clip::None);
    let (mse, t_mse) = sqnr(0, Clip::Mse);
    assert_eq!(t_plain, 1.0);
    assert!(t_mse < 0.9, "mean threshold {t_mse}");
    assert!(
        mse > plain + 1.0,
        "int4 per row: mse {mse} dB vs {plain} dB"
    );
    // In groups of 32 the outlier hurts one group only; the search can still never lose,
    // since the unclipped range is one of its candidates.
    let (plain, _) = sqnr(32, Clip::None);
    let (mse, _) = sqnr(32, Clip::Mse);
    assert!(mse > plain, "int4-g32: mse {mse} dB vs {plain} dB");
    // Nor for int8 and pow2.
    for kind in [WeightKind::Int8, WeightKind::Pow2] {
        let run = |clip| {
            let cfg = QuantConfig {
                clip,
                ..QuantConfig::new(kind)
            };
            quantize(&model, &cfg).unwrap().1.layers[0].sqnr_db
        };
        let (plain, mse) = (run(Clip::None), run(Clip::Mse));
        assert!(mse >= plain, "{kind}: mse {mse} dB vs {plain} dB");
    }
}

#[test]
fn percentile_and_abs_thresholds_are_honoured() {
    let model = outlier_model();
    let w = model.weights["w"].f32s("w").unwrap().to_vec();
    // abs:0.5, int8 per row: nothing decodes beyond 0.5 + half a step, and values inside the
    // threshold keep int8 precision.
    let cfg = QuantConfig {
        clip: Clip::Abs(0.5),
        ..QuantConfig::new(WeightKind::Int8)
    };
    let (q, report) = quantize(&model, &cfg).unwrap();
    let d = decoded(&q, "w");
    let half_step = 0.5 / 127.0 / 2.0 * 1.001;
    for (i, (&a, &b)) in w.iter().zip(&d).enumerate() {
        assert!(b.abs() <= 0.5 + half_step, "[{i}] {a} -> {b}");
        if a.abs() <= 0.5 {
            assert!((a - b).abs() <= half_step, "[{i}] {a} -> {b}");
        }
    }
    assert!(report.layers[0].clip < 0.5, "{}", report.layers[0].clip);
    // pct:90, int4 in groups of 32: per group, the 90th percentile of |w| (nearest rank) bounds
    // the decoded values.
    let cfg = QuantConfig {
        clip: Clip::Percentile(90.0),
        ..QuantConfig::new(WeightKind::Int4)
    };
    let (q, _) = quantize(&model, &cfg).unwrap();
    let d = decoded(&q, "w");
    for (g, (xs, ds)) in w.chunks(32).zip(d.chunks(32)).enumerate() {
        let mut abs: Vec<f32> = xs.iter().map(|v| v.abs()).collect();
        abs.sort_by(f32::total_cmp);
        let a = abs[(0.9f64 * 32.0).ceil() as usize - 1];
        let half_step = a / 7.0 / 2.0 * 1.01;
        for (&x, &y) in xs.iter().zip(ds) {
            assert!(y.abs() <= a + half_step, "group {g}: a = {a}, {x} -> {y}");
        }
        let outlier = xs.iter().any(|v| v.abs() == 8.0);
        assert!(
            !outlier || a < 2.0,
            "group {g}: the outlier set the threshold"
        );
    }
}

#[test]
fn skip_list_and_bad_options() {
    let model = small_model();
    // By weight name, and by node name (the conv node is named by the builder).
    let conv_node = (model.graph.nodes.iter())
        .find(|n| n.inputs.get(1).map(String::as_str) == Some("conv.weight"))
        .unwrap()
        .name
        .clone();
    for skip in ["fc.weight".to_string(), conv_node.clone()] {
        let cfg = QuantConfig {
            skip: vec![skip.clone()],
            ..QuantConfig::default()
        };
        let (q, report) = quantize(&model, &cfg).unwrap();
        assert_eq!(report.layers.len(), 2, "{report}");
        assert_eq!(report.skipped.len(), 1, "{report}");
        assert!(report.skipped[0].reason.contains("skip"), "{report}");
        let name = &report.skipped[0].name;
        assert!(q.graph.format_of(name).is_dense());
        assert_eq!(q.weights[name], model.weights[name]);
    }
    let bad = |cfg: QuantConfig, needle: &str| match quantize(&model, &cfg) {
        Err(Error::Input(m)) => assert!(m.contains(needle), "{m} lacks '{needle}'"),
        other => panic!("{cfg:?}: expected an input error, got {other:?}"),
    };
    bad(
        QuantConfig {
            skip: vec!["fc.weight".into(), "fc.wieght".into(), "nope".into()],
            ..QuantConfig::default()
        },
        "'fc.wieght', 'nope'",
    );
    for p in [0.0, -5.0, 100.5, f32::NAN] {
        bad(
            QuantConfig {
                clip: Clip::Percentile(p),
                ..QuantConfig::default()
            },
            "percentile",
        );
    }
    for a in [0.0, -1.0, f32::INFINITY, f32::NAN] {
        bad(
            QuantConfig {
                clip: Clip::Abs(a),
                ..QuantConfig::default()
            },
            "threshold",
        );
    }
    bad(
        QuantConfig {
            group: 32,
            ..QuantConfig::new(WeightKind::F16)
        },
        "group",
    );
    bad(
        QuantConfig {
            asym: true,
            ..QuantConfig::new(WeightKind::F16)
        },
        "asymmetric",
    );
    assert!(matches!("int3".parse::<WeightKind>(), Err(Error::Input(_))));
}

#[test]
fn shared_and_unsuitable_weights() {
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[16, 16]);
    // Shared by two [K, N] matmuls: transposed once, both nodes rewritten.
    let kn = b.weight("shared", gaussian(&[16, 16], 1));
    let h1 = b.matmul(&x, &kn);
    let h2 = b.matmul(&h1, &kn);
    // Read with and without trans_b: no layout suits both.
    let mixed = b.weight("mixed", gaussian(&[16, 16], 2));
    let h3 = b.matmul(&h2, &mixed);
    let h4 = b.linear(&h3, &mixed, None, Activation::None);
    // Also an operand of an add.
    let added = b.weight("added", gaussian(&[16, 16], 3));
    let h5 = b.linear(&h4, &added, None, Activation::None);
    let h6 = b.add(&h5, &added);
    // Batched (rank 3) matmul weight.
    let x3 = b.input("x3", &[2, 3, 4]);
    let batched = b.weight("batched", gaussian(&[2, 4, 5], 4));
    let h7 = b.matmul(&x3, &batched);
    // A value beyond the f16 range.
    let huge = b.weight("huge", Tensor::new(&[2, 16], vec![1e6; 32]).unwrap());
    let h8 = b.linear(&h6, &huge, None, Activation::None);
    b.output(&h8);
    b.output(&h7);
    let model = Model::from_builder(b).unwrap();
    let x = Tensor::random(&[16, 16], 5);
    let x3 = Tensor::random(&[2, 3, 4], 6);
    let feeds = [("x", &x), ("x3", &x3)];
    let want = run_cpu(&model, &feeds);

    let (q, report) = quantize(&model, &QuantConfig::new(WeightKind::F16)).unwrap();
    let names: Vec<&str> = report.layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["shared"], "{report}");
    assert!(report.layers[0].transposed);
    let users: Vec<bool> = (q.graph.nodes.iter())
        .filter(|n| n.inputs.get(1).map(String::as_str) == Some("shared"))
        .map(|n| matches!(n.op, Op::MatMul(m) if m.trans_b))
        .collect();
    assert_eq!(users, [true, true]);
    let reason = |name: &str| {
        (report.skipped.iter())
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("{name} not reported in\n{report}"))
            .reason
            .clone()
    };
    assert!(reason("mixed").contains("trans_b"), "{report}");
    assert!(reason("added").contains("as input 1"), "{report}");
    assert!(reason("batched").contains("batched"), "{report}");
    assert!(reason("huge").contains("f16"), "{report}");
    for name in ["mixed", "added", "batched", "huge"] {
        assert_eq!(q.weights[name], model.weights[name], "{name}");
    }
    let got = run_cpu(&q, &feeds);
    assert!(rel_err(&want, &got) < 2e-3);
    let table = report.to_string();
    assert!(table.contains("left dense: mixed"), "{table}");
}

#[test]
fn progress_counts_every_layer() {
    let mut calls = Vec::new();
    let (_, report) = quantize_with_progress(
        &small_model(),
        &QuantConfig::default(),
        &mut |done, total, name| calls.push((done, total, name.to_string())),
    )
    .unwrap();
    assert_eq!(report.layers.len(), 3);
    let done: Vec<(usize, usize)> = calls.iter().map(|c| (c.0, c.1)).collect();
    assert_eq!(done, [(0, 3), (1, 3), (2, 3), (3, 3)]);
    assert_eq!(calls[1].2, report.layers[0].name);
}

// ---- the command line ----

const MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/mnist-cnn.safetensors");
const TEST_SET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/mnist-test.safetensors");

#[test]
fn cli_quantizes_and_info_shows_the_formats() {
    let dir = tmp_dir("int8");
    let out = dir.join("mnist-int8.safetensors");
    let (ok, stdout, stderr) = wgedge(&[
        "quantize",
        MODEL,
        "-o",
        out.to_str().unwrap(),
        "--weights",
        "int8",
    ]);
    assert!(ok, "{stderr}");
    // No progress bar or other control sequences off a terminal.
    assert!(stderr.is_empty(), "{stderr}");
    for needle in [
        "conv1.weight",
        "fc.weight",
        "int8",
        "total (3 layers)",
        "wrote",
    ] {
        assert!(stdout.contains(needle), "{needle}: {stdout}");
    }
    let q = Model::load(&out).unwrap();
    assert_eq!(q.graph.format_of("fc.weight").label(), "int8");
    assert!(q.weight_bytes() * 3 < Model::load(MODEL).unwrap().weight_bytes());
    let (ok, info, stderr) = wgedge(&["info", out.to_str().unwrap(), "--backend", "cpu"]);
    assert!(ok, "{stderr}");
    let line = info.lines().find(|l| l.contains("fc.weight")).expect(&info);
    assert!(
        line.contains("int8") && line.contains("7880 bytes stored"),
        "{line}"
    );
    assert!(info.contains("stored weight bytes: 9336"), "{info}");
    assert!(info.contains("as dense f32: 36392"), "{info}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn cli_calibration_compares_outputs() {
    let dir = tmp_dir("calibrate");
    let out = dir.join("q.safetensors");
    let (ok, stdout, stderr) = wgedge(&[
        "quantize",
        MODEL,
        "-o",
        out.to_str().unwrap(),
        "--weights",
        "int4",
        "--clip",
        "mse",
        "--calibrate",
        TEST_SET,
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("int4-g32-f16s"), "{stdout}");
    assert!(stdout.contains("1000 samples"), "{stdout}");
    assert!(stdout.contains("top-1 agreement"), "{stdout}");
    let acc = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("accuracy:"))
        .expect(&stdout);
    assert!(acc.contains("f32 98.10%"), "{acc}");
    // A file keyed by the input's name, with a batch of 3.
    let data = dir.join("inputs.safetensors");
    let t = BTreeMap::from([("image".to_string(), Tensor::random(&[3, 1, 28, 28], 2))]);
    wgedge::model::save_tensors(&data, &t).unwrap();
    let (ok, stdout, stderr) = wgedge(&[
        "quantize",
        MODEL,
        "-o",
        out.to_str().unwrap(),
        "--weights",
        "f16",
        "--calibrate",
        data.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("3 samples (image)"), "{stdout}");
    assert!(!stdout.contains("accuracy:"), "{stdout}");
    // Inputs that fit no sample shape.
    let t = BTreeMap::from([("image".to_string(), Tensor::random(&[3, 5], 2))]);
    wgedge::model::save_tensors(&data, &t).unwrap();
    let calib = ["--calibrate", data.to_str().unwrap()];
    let args = [
        &[
            "quantize",
            MODEL,
            "-o",
            out.to_str().unwrap(),
            "--weights",
            "int8",
        ][..],
        &calib,
    ]
    .concat();
    let (ok, _, stderr) = wgedge(&args);
    assert!(!ok);
    assert!(stderr.contains("does not hold samples"), "{stderr}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn cli_refuses_to_write_over_its_input() {
    let dir = tmp_dir("overwrite");
    let copy = dir.join("model.safetensors");
    std::fs::copy(MODEL, &copy).unwrap();
    let before = std::fs::read(&copy).unwrap();
    let same = dir.join(".").join("model.safetensors");
    for o in [&copy, &same] {
        let (ok, _, stderr) = wgedge(&[
            "quantize",
            copy.to_str().unwrap(),
            "-o",
            o.to_str().unwrap(),
            "--weights",
            "int8",
        ]);
        assert!(!ok);
        assert!(stderr.contains("refusing to write"), "{stderr}");
    }
    assert_eq!(std::fs::read(&copy).unwrap(), before);
    let names: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(names.len(), 1, "a temporary file was left behind");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn cli_errors_are_clear() {
    let dir = tmp_dir("errors");
    let out = dir.join("out.safetensors");
    let o = out.to_str().unwrap();
    let missing = dir.join("no-such-model.safetensors");
    let (ok, _, stderr) = wgedge(&[
        "quantize",
        missing.to_str().unwrap(),
        "-o",
        o,
        "--weights",
        "int8",
    ]);
    assert!(!ok);
    assert!(stderr.contains("no-such-model.safetensors"), "{stderr}");
    assert!(!out.exists());
    for (args, needle) in [
        (&["--weights", "int3"][..], "unknown weight kind 'int3'"),
        (
            &["--weights", "int8", "--clip", "pct:120"],
            "outside (0, 100]",
        ),
        (&["--weights", "int8", "--clip", "abs:0"], "threshold"),
        (&["--weights", "int8", "--clip", "max"], "unknown clipping"),
        (&["--weights", "f16", "--group", "32"], "group"),
        (
            &["--weights", "int8", "--skip", "fc.weight,bogus"],
            "'bogus'",
        ),
        (&["--weights", "int8", "--scales", "f8"], "scale dtype"),
    ] {
        let all = [&["quantize", MODEL, "-o", o][..], args].concat();
        let (ok, _, stderr) = wgedge(&all);
        assert!(!ok, "{args:?}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!out.exists(), "{args:?} wrote a file");
    }
    // --weights is required.
    let (ok, _, stderr) = wgedge(&["quantize", MODEL, "-o", o]);
    assert!(!ok);
    assert!(stderr.contains("--weights"), "{stderr}");
    std::fs::remove_dir_all(&dir).ok();
}

/// The README's table, CPU column: the issue's targets (int8 within 0.3 points and int4-g32
/// within 1 point of f32) hold on the shipped model.
#[test]
fn cli_accuracy_table_meets_the_targets() {
    let (ok, stdout, stderr) = wgedge(&["quantize", "--accuracy-table", "--backend", "cpu"]);
    assert!(ok, "{stderr}");
    let rows: Vec<Vec<String>> = stdout
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| weights"))
        .map(|l| l.split('|').map(|c| c.trim().to_string()).collect())
        .collect();
    assert_eq!(rows.len(), 7, "{stdout}");
    let acc = |row: &[String]| -> f64 { row[4].trim_end_matches('%').parse().unwrap() };
    let base = acc(&rows[0]);
    assert!(base > 97.0, "{stdout}");
    for row in &rows[1..] {
        let bound = if row[2].contains("int4") { 1.0 } else { 0.3 };
        assert!(
            acc(row) >= base - bound,
            "{} loses more than {bound} points:\n{stdout}",
            row[1]
        );
        assert_eq!(row[5], "n/a", "{stdout}");
    }
}
