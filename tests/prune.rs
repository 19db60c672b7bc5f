//! `wgedge::compress` pruning and the `wgedge prune` command.
//!
//! Random weights here have no zeros (a uniform draw is exactly 0 with probability ~0), so
//! every zero after pruning was put there by the pruner, and "kept" means "nonzero".

use std::collections::BTreeMap;
use wgedge::compress::{
    prune, prune_with_progress, Pattern, PruneConfig, PruneReport, Scope, Store,
};
use wgedge::graph::GraphBuilder;
use wgedge::ops::{Activation, Conv2d, MatMul, Op, Pool2d, PoolKind};
use wgedge::{Error, Model, Session, SessionOptions, Tensor};

mod common;
use common::cli::wgedge;

/// A fresh, empty directory for one test.
fn tmp_dir(name: &str) -> std::path::PathBuf {
    common::cli::tmp_dir("prune", name)
}

/// Gaussian-ish weights (mean of four uniform draws), times `scale`, deterministic.
fn gaussian(shape: &[usize], seed: u64, scale: f32) -> Tensor {
    let draws: Vec<Tensor> = (0..4)
        .map(|i| Tensor::random(shape, seed * 8 + i))
        .collect();
    let v: Vec<&[f32]> = draws.iter().map(|t| t.f32s("r").unwrap()).collect();
    let n = v[0].len();
    let x = (0..n)
        .map(|i| v.iter().map(|d| d[i]).sum::<f32>() / 2.0 * scale)
        .collect();
    Tensor::new(shape, x).unwrap()
}

/// conv (`[16, 8, 3, 3]`) -> flatten -> matmul with a `[K, N]` weight (`[576, 48]`, trans_b
/// false) -> linear (`[10, 48]`, 10x smaller weights) -> output.
fn small_model() -> Model {
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[1, 8, 6, 6]);
    let cw = b.weight("conv.weight", gaussian(&[16, 8, 3, 3], 1, 1.0));
    let cb = b.weight("conv.bias", gaussian(&[16], 2, 1.0));
    let conv = Conv2d {
        pad: [1; 4],
        act: Activation::Relu,
        ..Default::default()
    };
    let h = b.conv2d(&x, &cw, Some(&cb), conv);
    let h = b.flatten(&h, 1);
    let kn = b.weight("proj.weight", gaussian(&[576, 48], 3, 1.0));
    let relu = MatMul {
        act: Activation::Relu,
        ..Default::default()
    };
    let h = b.node(Op::MatMul(relu), &[&h, &kn]);
    let fw = b.weight("fc.weight", gaussian(&[10, 48], 4, 0.1));
    let fb = b.weight("fc.bias", gaussian(&[10], 5, 1.0));
    let y = b.linear(&h, &fw, Some(&fb), Activation::None);
    b.output(&y);
    Model::from_builder(b).unwrap()
}

const NAMES: [&str; 3] = ["conv.weight", "proj.weight", "fc.weight"];

/// The model's first output on the CPU backend for a random input of the first input's shape.
fn run_cpu(model: &Model) -> Vec<f32> {
    let spec = &model.graph.inputs[0];
    let x = Tensor::random(&spec.shape, 77);
    let s = Session::cpu(model, reference()).unwrap();
    let out = s.run(&[(spec.name.as_str(), &x)]).unwrap();
    out[0].f32s("out").unwrap().to_vec()
}

/// Largest |a - b|, relative to the largest |a|.
fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = a.iter().fold(1e-12f32, |m, v| m.max(v.abs()));
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// Weight `name` decoded to f32, with its logical shape.
fn decoded(model: &Model, name: &str) -> (Vec<usize>, Vec<f32>) {
    let spec = model.graph.weights.iter().find(|w| w.name == name).unwrap();
    let t = (model.graph.format_of(name))
        .decode(name, &spec.shape, &model.weights)
        .unwrap();
    (spec.shape.clone(), t.f32s(name).unwrap().to_vec())
}

/// `[K, N]` -> `[N, K]`.
fn transpose(x: &[f32], k: usize, n: usize) -> Vec<f32> {
    let mut out = vec![0.0; x.len()];
    for r in 0..k {
        for c in 0..n {
            out[c * k + r] = x[r * n + c];
        }
    }
    out
}

/// Weight `name` as `[rows = output channels, cols = K]`, whichever way the model stores it.
fn view(model: &Model, name: &str) -> (usize, usize, Vec<f32>) {
    let (shape, x) = decoded(model, name);
    let kn = model.graph.nodes.iter().any(|n| {
        n.inputs.get(1).is_some_and(|w| w == name) && matches!(n.op, Op::MatMul(m) if !m.trans_b)
    });
    if kn {
        (shape[1], shape[0], transpose(&x, shape[0], shape[1]))
    } else {
        let rows = shape[0];
        (rows, x.len() / rows, x)
    }
}

/// Every pruned entry was zeroed from a value no larger than any kept one, and kept entries
/// are unchanged.
fn assert_kept_largest(pairs: &[(Vec<f32>, Vec<f32>)], what: &str) {
    let (mut min_kept, mut max_pruned) = (f32::INFINITY, 0f32);
    for (orig, new) in pairs {
        for (&a, &b) in orig.iter().zip(new) {
            if b == 0.0 {
                max_pruned = max_pruned.max(a.abs());
            } else {
                assert_eq!(a, b, "{what}: a kept weight changed");
                min_kept = min_kept.min(a.abs());
            }
        }
    }
    assert!(
        min_kept >= max_pruned,
        "{what}: kept |w| {min_kept} < pruned |w| {max_pruned}"
    );
}

fn zeros(x: &[f32]) -> usize {
    x.iter().filter(|&&v| v == 0.0).count()
}

#[test]
fn unstructured_reaches_the_target_and_keeps_the_largest() {
    let model = small_model();
    let before = run_cpu(&model);
    for s in [0.0f32, 0.3, 0.75, 0.9] {
        // Per layer: each layer within one element of round(s * n).
        let (p, report) = prune(&model, &PruneConfig::new(Pattern::Unstructured, s)).unwrap();
        assert_eq!(report.layers.len(), 3, "{report}");
        for name in NAMES {
            let (_, orig) = decoded(&model, name);
            let (shape, new) = decoded(&p, name);
            assert_eq!(
                shape,
                decoded(&model, name).0,
                "dense storage keeps the layout"
            );
            let want = (f64::from(s) * orig.len() as f64).round() as usize;
            assert!(
                zeros(&new).abs_diff(want) <= 1,
                "{name} at {s}: {} zeros, want {want}",
                zeros(&new)
            );
            assert_kept_largest(&[(orig, new)], name);
            let l = report.layers.iter().find(|l| l.name == name).unwrap();
            assert_eq!(l.zeros, zeros(&decoded(&p, name).1));
            assert_eq!(l.format, "dense");
            assert_eq!(l.bytes_before, l.bytes_after);
        }
        let after = run_cpu(&p);
        assert!(after.iter().all(|v| v.is_finite()));
        if s == 0.0 {
            assert_eq!(after, before);
        }

        // Global: one threshold, total within one element per layer, the kept weights the
        // largest over all layers.
        let cfg = PruneConfig {
            scope: Scope::Global,
            ..PruneConfig::new(Pattern::Unstructured, s)
        };
        let (g, report) = prune(&model, &cfg).unwrap();
        let pairs: Vec<(Vec<f32>, Vec<f32>)> = NAMES
            .iter()
            .map(|n| (decoded(&model, n).1, decoded(&g, n).1))
            .collect();
        let n: usize = pairs.iter().map(|p| p.0.len()).sum();
        let z: usize = pairs.iter().map(|p| zeros(&p.1)).sum();
        let want = (f64::from(s) * n as f64).round() as usize;
        assert!(z.abs_diff(want) <= 3, "global {s}: {z} zeros, want {want}");
        assert_kept_largest(&pairs, "global");
        if s >= 0.3 {
            // fc's weights are 10x smaller: a global threshold takes more of them.
            let sp = |name: &str| {
                let l = report.layers.iter().find(|l| l.name == name).unwrap();
                l.sparsity()
            };
            assert!(sp("fc.weight") > sp("proj.weight") + 0.1, "{report}");
        }
    }
}

#[test]
fn ties_are_broken_deterministically() {
    // |w| in {1, 2, 3}, many ties: 50% must prune all the 1s and then the *later* 2s.
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[1, 12]);
    let v: Vec<f32> = (0..24)
        .map(|i| [1.0, -2.0, 3.0, 2.0, -1.0, 3.0][i % 6])
        .collect();
    let w = b.weight("w", Tensor::new(&[2, 12], v.clone()).unwrap());
    let y = b.linear(&x, &w, None, Activation::None);
    b.output(&y);
    let model = Model::from_builder(b).unwrap();
    let cfg = PruneConfig::new(Pattern::Unstructured, 0.5);
    let (p, _) = prune(&model, &cfg).unwrap();
    let got = decoded(&p, "w").1;
    assert_eq!(got, decoded(&prune(&model, &cfg).unwrap().0, "w").1);
    // 8 ones go; 4 of the 8 twos go: those at the highest indices.
    let twos: Vec<usize> = (0..24).filter(|&i| v[i].abs() == 2.0).collect();
    for (k, &i) in twos.iter().enumerate() {
        assert_eq!(got[i] == 0.0, k >= 4, "two at {i}: {got:?}");
    }
    assert_eq!(zeros(&got), 12);
}

#[test]
fn nm_patterns_fit_every_group_and_round_trip_sparse() {
    let model = small_model();
    for (n, m) in [(2usize, 4usize), (4, 8)] {
        let pattern = Pattern::NM { n, m };
        let (p, report) = prune(&model, &PruneConfig::new(pattern, 0.0)).unwrap();
        assert_eq!(report.layers.len(), 3, "{report}");
        for name in NAMES {
            let (rows, cols, x) = view(&p, name);
            let (_, _, orig) = view(&model, name);
            for (g, (group, og)) in x.chunks(m).zip(orig.chunks(m)).enumerate() {
                assert_eq!(cols % m, 0);
                let nz = group.iter().filter(|v| **v != 0.0).count();
                assert!(nz <= n, "{name} {n}:{m}: group {g} holds {nz}");
                // The kept ones are the group's largest.
                assert_kept_largest(&[(og.to_vec(), group.to_vec())], name);
            }
            assert_eq!(zeros(&x), rows * cols / m * (m - n), "{name}");
        }
        // Stored sparse: smaller, and decoding gives the pruned dense weights back exactly.
        let cfg = PruneConfig {
            store: Store::Sparse,
            ..PruneConfig::new(pattern, 0.0)
        };
        let (sp, report) = prune(&model, &cfg).unwrap();
        for name in NAMES {
            assert_eq!(
                sp.graph.format_of(name).label(),
                format!("{n}:{m}-f32"),
                "{name}"
            );
            assert_eq!(view(&sp, name), view(&p, name), "{name} round trip");
            let l = report.layers.iter().find(|l| l.name == name).unwrap();
            assert!(l.bytes_after < l.bytes_before, "{report}");
        }
        // The [K, N] weight is stored as [N, K] with trans_b set, like the packed formats.
        let proj = report.layers.iter().find(|l| l.name == "proj.weight");
        assert!(proj.unwrap().transposed);
        assert_eq!(decoded(&sp, "proj.weight").0, [48, 576]);
        assert!(sp.weight_bytes() < p.weight_bytes());
        assert!(max_rel_diff(&run_cpu(&p), &run_cpu(&sp)) < 1e-5);
        // The file round-trips too.
        let back = Model::from_bytes(&sp.to_bytes().unwrap()).unwrap();
        assert_eq!(view(&back, "conv.weight"), view(&p, "conv.weight"));
    }
}

/// x -> conv `[8, 1, 3, 3]` (K = 9) -> flatten -> linear `[10, 8 * 16]`.
fn odd_k_model() -> Model {
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[1, 1, 4, 4]);
    let cw = b.weight("c.weight", gaussian(&[8, 1, 3, 3], 6, 1.0));
    let h = b.conv2d(
        &x,
        &cw,
        None,
        Conv2d {
            pad: [1; 4],
            ..Default::default()
        },
    );
    let h = b.flatten(&h, 1);
    let fw = b.weight("f.weight", gaussian(&[10, 128], 7, 1.0));
    let y = b.linear(&h, &fw, None, Activation::None);
    b.output(&y);
    Model::from_builder(b).unwrap()
}

#[test]
fn weights_a_pattern_does_not_fit_are_skipped_with_the_reason() {
    let model = odd_k_model();
    let (p, report) = prune(&model, &PruneConfig::new(Pattern::NM { n: 2, m: 4 }, 0.0)).unwrap();
    assert_eq!(report.layers.len(), 1, "{report}");
    assert_eq!(report.skipped.len(), 1, "{report}");
    assert_eq!(report.skipped[0].name, "c.weight");
    assert!(
        report.skipped[0].reason.contains("not a multiple of 4"),
        "{report}"
    );
    assert!(
        report.to_string().contains("not pruned: c.weight"),
        "{report}"
    );
    assert_eq!(decoded(&p, "c.weight"), decoded(&model, "c.weight"));
    // 8x1 blocks tile the conv ([8, 9]) but not the linear ([10, 128]).
    let (_, report) = prune(
        &model,
        &PruneConfig::new(Pattern::Block { r: 8, c: 1 }, 0.5),
    )
    .unwrap();
    assert_eq!(report.layers[0].name, "c.weight", "{report}");
    assert!(
        report.skipped[0].reason.contains("does not tile into 8x1"),
        "{report}"
    );
    // A pattern that fits nothing is an error, not a silent no-op.
    for pattern in [Pattern::Block { r: 64, c: 64 }, Pattern::NM { n: 1, m: 16 }] {
        let model = if pattern == (Pattern::NM { n: 1, m: 16 }) {
            let mut b = GraphBuilder::new();
            let x = b.input("x", &[1, 9]);
            let w = b.weight("w", gaussian(&[3, 9], 1, 1.0));
            let y = b.linear(&x, &w, None, Activation::None);
            b.output(&y);
            Model::from_builder(b).unwrap()
        } else {
            odd_k_model()
        };
        match prune(&model, &PruneConfig::new(pattern, 0.5)) {
            Err(Error::Input(m)) => assert!(m.contains("fits none"), "{m}"),
            other => panic!("{pattern}: {other:?}"),
        }
    }
}

#[test]
fn block_zeros_come_in_whole_blocks() {
    let model = small_model();
    for (r, c) in [(1usize, 4usize), (4, 1), (4, 4), (8, 1)] {
        let pattern = Pattern::Block { r, c };
        let s = 0.6f32;
        let (p, report) = prune(&model, &PruneConfig::new(pattern, s)).unwrap();
        // fc ([10, 48]) has 10 rows: only 1-row blocks tile it.
        assert_eq!(report.layers.len(), if r == 1 { 3 } else { 2 }, "{report}");
        for l in &report.layers {
            let (rows, cols, x) = view(&p, &l.name);
            let (_, _, orig) = view(&model, &l.name);
            let (brows, bcols) = (rows / r, cols / c);
            let (mut pruned, mut max_pruned, mut min_kept) = (0, 0f64, f64::INFINITY);
            for b in 0..brows * bcols {
                let cells: Vec<usize> = (0..r)
                    .flat_map(|i| {
                        (0..c).map(move |j| (b / bcols * r + i) * cols + b % bcols * c + j)
                    })
                    .collect();
                let nz = cells.iter().filter(|&&i| x[i] != 0.0).count();
                assert!(
                    nz == 0 || nz == r * c,
                    "{} {r}x{c}: block {b} is partly zero",
                    l.name
                );
                let norm = cells
                    .iter()
                    .map(|&i| f64::from(orig[i]).powi(2))
                    .sum::<f64>();
                if nz == 0 {
                    pruned += 1;
                    max_pruned = max_pruned.max(norm);
                } else {
                    min_kept = min_kept.min(norm);
                }
            }
            let want = (f64::from(s) * (brows * bcols) as f64).round() as usize;
            assert_eq!(pruned, want, "{} {r}x{c}", l.name);
            assert!(
                min_kept >= max_pruned,
                "{} {r}x{c}: a kept block is weaker",
                l.name
            );
        }
        let cfg = PruneConfig {
            store: Store::Sparse,
            ..PruneConfig::new(pattern, s)
        };
        let (sp, report) = prune(&model, &cfg).unwrap();
        for l in &report.layers {
            assert_eq!(l.format, format!("bsr-{r}x{c}-f32"));
            assert_eq!(
                view(&sp, &l.name),
                view(&p, &l.name),
                "{} round trip",
                l.name
            );
        }
        assert!(max_rel_diff(&run_cpu(&p), &run_cpu(&sp)) < 1e-5);
    }
}

// ---- channel pruning ----

/// Zeroes rows `rows` (along axis `axis`) of a tensor of `shape`.
fn zero_channels(t: Tensor, axis: usize, rows: &[usize]) -> Tensor {
    let shape = t.shape().to_vec();
    let (dim, inner) = (shape[axis], shape[axis + 1..].iter().product::<usize>());
    let mut x = t.f32s("t").unwrap().to_vec();
    for (i, v) in x.iter_mut().enumerate() {
        if rows.contains(&(i / inner % dim)) {
            *v = 0.0;
        }
    }
    Tensor::new(&shape, x).unwrap()
}

/// x [1, 3, 8, 8] -> conv1 [8, 3, 3, 3] + bias -> batch norm -> relu -> conv2 [6, 8, 3, 3] +
/// bias, relu -> maxpool 2 -> flatten -> fc [10, 96] + bias -> y. Channels `dead1` of conv1
/// and `dead2` of conv2 output exactly 0 (zero weights and bias; the norm maps 0 to 0).
fn cnn(dead1: &[usize], dead2: &[usize]) -> Model {
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[1, 3, 8, 8]);
    let w1 = zero_channels(gaussian(&[8, 3, 3, 3], 11, 1.0), 0, dead1);
    let w1 = b.weight("conv1.weight", w1);
    let b1 = b.weight(
        "conv1.bias",
        zero_channels(gaussian(&[8], 12, 1.0), 0, dead1),
    );
    let pad = Conv2d {
        pad: [1; 4],
        ..Default::default()
    };
    let h = b.conv2d(&x, &w1, Some(&b1), pad);
    let pos = |t: Tensor| {
        let v = t.f32s("t").unwrap().iter().map(|v| v.abs() + 0.5).collect();
        Tensor::new(t.shape(), v).unwrap()
    };
    let gamma = b.weight("bn.gamma", pos(gaussian(&[8], 13, 1.0)));
    let beta = b.weight("bn.beta", zero_channels(gaussian(&[8], 14, 0.1), 0, dead1));
    let mean = b.weight("bn.mean", zero_channels(gaussian(&[8], 15, 0.1), 0, dead1));
    let var = b.weight("bn.var", pos(gaussian(&[8], 16, 1.0)));
    let h = b.batch_norm(&h, &gamma, &beta, &mean, &var, 1e-5);
    let h = b.act(&h, Activation::Relu);
    let w2 = zero_channels(gaussian(&[6, 8, 3, 3], 17, 1.0), 0, dead2);
    let w2 = b.weight("conv2.weight", w2);
    let b2 = b.weight(
        "conv2.bias",
        zero_channels(gaussian(&[6], 18, 1.0), 0, dead2),
    );
    let h = b.conv2d(
        &h,
        &w2,
        Some(&b2),
        Conv2d {
            act: Activation::Relu,
            ..pad
        },
    );
    let h = b.pool(
        &h,
        Pool2d {
            kind: PoolKind::Max,
            kernel: [2, 2],
            stride: [2, 2],
            pad: [0; 4],
            count_include_pad: false,
        },
    );
    let h = b.flatten(&h, 1);
    let fw = b.weight("fc.weight", gaussian(&[10, 96], 19, 0.3));
    let fb = b.weight("fc.bias", gaussian(&[10], 20, 1.0));
    let y = b.linear(&h, &fw, Some(&fb), Activation::None);
    b.output(&y);
    Model::from_builder(b).unwrap()
}

fn shape_of(model: &Model, name: &str) -> Vec<usize> {
    let spec = model.graph.weights.iter().find(|w| w.name == name).unwrap();
    assert_eq!(model.weights[name].shape(), spec.shape.as_slice());
    spec.shape.clone()
}

fn channel_cfg(sparsity: f32, layers: &[&str]) -> PruneConfig {
    PruneConfig {
        layers: layers.iter().map(|s| s.to_string()).collect(),
        ..PruneConfig::new(Pattern::Channel, sparsity)
    }
}

/// `x` without the entries whose index along `axis` (blocks of `block`) is in `dead`.
fn without(t: &Tensor, axis: usize, block: usize, dead: &[usize]) -> Vec<f32> {
    let shape = t.shape();
    let (dim, inner) = (shape[axis], shape[axis + 1..].iter().product::<usize>());
    (t.f32s("t").unwrap().iter().enumerate())
        .filter(|(i, _)| !dead.contains(&(i / inner % dim / block)))
        .map(|(_, &v)| v)
        .collect()
}

#[test]
fn channel_pruning_rewrites_conv_bn_conv_flatten_linear() {
    // conv1 alone: 3 of 8 channels, the dead ones.
    let model = cnn(&[1, 4, 6], &[]);
    let want = run_cpu(&model);
    let (p, report) = prune(&model, &channel_cfg(0.375, &["conv1.weight"])).unwrap();
    assert_eq!(report.layers.len(), 1, "{report}");
    assert_eq!(report.layers[0].channels, Some((5, 8)));
    assert_eq!(shape_of(&p, "conv1.weight"), [5, 3, 3, 3]);
    assert_eq!(shape_of(&p, "conv1.bias"), [5]);
    for bn in ["bn.gamma", "bn.beta", "bn.mean", "bn.var"] {
        assert_eq!(shape_of(&p, bn), [5], "{bn}");
    }
    assert_eq!(shape_of(&p, "conv2.weight"), [6, 5, 3, 3]);
    assert_eq!(shape_of(&p, "fc.weight"), [10, 96]);
    let kept = without(&model.weights["conv1.weight"], 0, 1, &[1, 4, 6]);
    assert_eq!(
        p.weights["conv1.weight"].f32s("w").unwrap(),
        kept.as_slice()
    );
    let kept = without(&model.weights["conv2.weight"], 1, 1, &[1, 4, 6]);
    assert_eq!(
        p.weights["conv2.weight"].f32s("w").unwrap(),
        kept.as_slice()
    );
    assert!(max_rel_diff(&want, &run_cpu(&p)) < 1e-5, "{report}");
    assert!(p.weight_bytes() < model.weight_bytes());
    assert!(
        report.to_string().contains("input channels of conv2d"),
        "{report}"
    );

    // conv2 alone: 2 of 6, so fc loses two blocks of 4 x 4 = 16 inputs.
    let model = cnn(&[], &[0, 3]);
    let want = run_cpu(&model);
    let (p, report) = prune(&model, &channel_cfg(1.0 / 3.0, &["conv2.weight"])).unwrap();
    assert_eq!(report.layers[0].channels, Some((4, 6)), "{report}");
    assert_eq!(shape_of(&p, "conv2.weight"), [4, 8, 3, 3]);
    assert_eq!(shape_of(&p, "conv2.bias"), [4]);
    assert_eq!(shape_of(&p, "fc.weight"), [10, 64]);
    let kept = without(&model.weights["fc.weight"], 1, 16, &[0, 3]);
    assert_eq!(p.weights["fc.weight"].f32s("w").unwrap(), kept.as_slice());
    assert!(max_rel_diff(&want, &run_cpu(&p)) < 1e-5, "{report}");

    // Every layer at once: conv1 loses 3 of 8, conv2 round(0.375 * 6) = 2 of 6, and fc, whose
    // channels are the graph output, is left alone with the reason.
    let model = cnn(&[1, 4, 6], &[0, 3]);
    let want = run_cpu(&model);
    let (p, report) = prune(&model, &channel_cfg(0.375, &[])).unwrap();
    assert_eq!(report.layers.len(), 2, "{report}");
    assert_eq!(report.channels(), Some((9, 14)));
    assert_eq!(shape_of(&p, "conv2.weight"), [4, 5, 3, 3]);
    assert_eq!(shape_of(&p, "fc.weight"), [10, 64]);
    assert_eq!(report.skipped.len(), 1, "{report}");
    assert_eq!(report.skipped[0].name, "fc.weight");
    assert!(
        report.skipped[0].reason.contains("graph output"),
        "{report}"
    );
    assert!(max_rel_diff(&want, &run_cpu(&p)) < 1e-5, "{report}");
    // The graph's inputs and outputs keep their shapes, and the file round-trips.
    let back = Model::from_bytes(&p.to_bytes().unwrap()).unwrap();
    assert_eq!(run_cpu(&back), run_cpu(&p));

    // Live channels: the output moves, but the model is valid and runs.
    let model = cnn(&[], &[]);
    let (p, report) = prune(&model, &channel_cfg(0.5, &[])).unwrap();
    assert_eq!(report.channels(), Some((7, 14)), "{report}");
    let out = run_cpu(&p);
    assert_eq!(out.len(), 10);
    assert!(out.iter().all(|v| v.is_finite()));
}

#[test]
fn channel_pruning_an_mlp() {
    // x [2, 20] -> l1 [32, 20] (trans_b) + bias -> batch norm -> relu -> l2 [32, 24] as
    // [K, N] + bias, relu -> l3 [10, 24] + bias -> y.
    let (dead1, dead2) = (
        [0usize, 3, 5, 9, 17, 22, 30, 31],
        [2usize, 7, 11, 12, 20, 23],
    );
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[2, 20]);
    let w1 = b.weight(
        "l1.weight",
        zero_channels(gaussian(&[32, 20], 31, 1.0), 0, &dead1),
    );
    let b1 = b.weight(
        "l1.bias",
        zero_channels(gaussian(&[32], 32, 1.0), 0, &dead1),
    );
    let h = b.linear(&x, &w1, Some(&b1), Activation::None);
    let ones = b.weight("bn.gamma", Tensor::new(&[32], vec![1.5; 32]).unwrap());
    let beta = b.weight(
        "bn.beta",
        zero_channels(gaussian(&[32], 33, 0.1), 0, &dead1),
    );
    let mean = b.weight("bn.mean", Tensor::zeros(&[32]));
    let var = b.weight("bn.var", Tensor::new(&[32], vec![2.0; 32]).unwrap());
    let h = b.batch_norm(&h, &ones, &beta, &mean, &var, 1e-5);
    let h = b.act(&h, Activation::Relu);
    let w2 = b.weight(
        "l2.weight",
        zero_channels(gaussian(&[32, 24], 34, 1.0), 1, &dead2),
    );
    let b2 = b.weight(
        "l2.bias",
        zero_channels(gaussian(&[24], 35, 1.0), 0, &dead2),
    );
    let kn = MatMul {
        bias: true,
        act: Activation::Relu,
        ..Default::default()
    };
    let h = b.node(Op::MatMul(kn), &[&h, &w2, &b2]);
    let w3 = b.weight("l3.weight", gaussian(&[10, 24], 36, 1.0));
    let b3 = b.weight("l3.bias", gaussian(&[10], 37, 1.0));
    let y = b.linear(&h, &w3, Some(&b3), Activation::None);
    b.output(&y);
    let model = Model::from_builder(b).unwrap();
    let want = run_cpu(&model);
    let (p, report) = prune(&model, &channel_cfg(0.25, &[])).unwrap();
    assert_eq!(report.layers.len(), 2, "{report}");
    assert_eq!(shape_of(&p, "l1.weight"), [24, 20]);
    assert_eq!(shape_of(&p, "l1.bias"), [24]);
    assert_eq!(shape_of(&p, "bn.var"), [24]);
    assert_eq!(shape_of(&p, "l2.weight"), [24, 18]);
    assert_eq!(shape_of(&p, "l2.bias"), [18]);
    assert_eq!(shape_of(&p, "l3.weight"), [10, 18]);
    let kept = without(&model.weights["l3.weight"], 1, 1, &dead2);
    assert_eq!(p.weights["l3.weight"].f32s("w").unwrap(), kept.as_slice());
    assert!(max_rel_diff(&want, &run_cpu(&p)) < 1e-5, "{report}");
    assert!(
        report.skipped.iter().any(|s| s.name == "l3.weight"),
        "{report}"
    );
}

#[test]
fn channel_pruning_through_a_depthwise_conv() {
    // x -> conv1 [8, 4, 1, 1] + bias, relu -> depthwise [8, 1, 3, 3] + bias, relu -> conv3
    // [5, 8, 1, 1] -> y. Channels 2 and 5 of conv1 are dead and the depthwise bias is 0 there.
    let dead = [2usize, 5];
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[1, 4, 6, 6]);
    let w1 = b.weight(
        "conv1.weight",
        zero_channels(gaussian(&[8, 4, 1, 1], 41, 1.0), 0, &dead),
    );
    let b1 = b.weight(
        "conv1.bias",
        zero_channels(gaussian(&[8], 42, 1.0), 0, &dead),
    );
    let relu = Conv2d {
        act: Activation::Relu,
        ..Default::default()
    };
    let h = b.conv2d(&x, &w1, Some(&b1), relu);
    let dw = b.weight("dw.weight", gaussian(&[8, 1, 3, 3], 43, 1.0));
    let db = b.weight("dw.bias", zero_channels(gaussian(&[8], 44, 1.0), 0, &dead));
    let h = b.conv2d(
        &h,
        &dw,
        Some(&db),
        Conv2d {
            pad: [1; 4],
            groups: 8,
            ..relu
        },
    );
    let w3 = b.weight("conv3.weight", gaussian(&[5, 8, 1, 1], 45, 1.0));
    let y = b.conv2d(&h, &w3, None, Conv2d::default());
    b.output(&y);
    let model = Model::from_builder(b).unwrap();
    let want = run_cpu(&model);
    let (p, report) = prune(&model, &channel_cfg(0.25, &["conv1.weight"])).unwrap();
    assert_eq!(shape_of(&p, "conv1.weight"), [6, 4, 1, 1], "{report}");
    assert_eq!(shape_of(&p, "dw.weight"), [6, 1, 3, 3]);
    assert_eq!(shape_of(&p, "dw.bias"), [6]);
    assert_eq!(shape_of(&p, "conv3.weight"), [5, 6, 1, 1]);
    let groups = p.graph.nodes.iter().find_map(|n| match n.op {
        Op::Conv2d(c) if n.inputs[1] == "dw.weight" => Some(c.groups),
        _ => None,
    });
    assert_eq!(groups, Some(6));
    assert!(max_rel_diff(&want, &run_cpu(&p)) < 1e-5, "{report}");
    // A depthwise conv's own channels follow its input: it is not pruned by itself.
    let (_, report) = prune(&model, &channel_cfg(0.25, &["dw.weight"])).unwrap();
    assert!(report.layers.is_empty());
    let dw = report
        .skipped
        .iter()
        .find(|s| s.name == "dw.weight")
        .unwrap();
    assert!(dw.reason.contains("groups = 8"), "{report}");
}

#[test]
fn channel_pruning_refuses_what_it_cannot_rewrite() {
    // Residual: x -> conv1, relu = r -> conv2 -> add(conv2, r) -> conv3 -> y.
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[1, 4, 6, 6]);
    let pad = Conv2d {
        pad: [1; 4],
        ..Default::default()
    };
    let w1 = b.weight("conv1.weight", gaussian(&[8, 4, 3, 3], 51, 1.0));
    let r = b.conv2d(
        &x,
        &w1,
        None,
        Conv2d {
            act: Activation::Relu,
            ..pad
        },
    );
    let w2 = b.weight("conv2.weight", gaussian(&[8, 8, 3, 3], 52, 1.0));
    let h = b.conv2d(&r, &w2, None, pad);
    let h = b.add(&h, &r);
    let w3 = b.weight("conv3.weight", gaussian(&[4, 8, 1, 1], 53, 1.0));
    let y = b.conv2d(&h, &w3, None, Conv2d::default());
    b.output(&y);
    let model = Model::from_builder(b).unwrap();
    let (p, report) = prune(&model, &channel_cfg(0.5, &[])).unwrap();
    assert!(report.layers.is_empty(), "{report}");
    let reason = |name: &str| {
        let s = report.skipped.iter().find(|s| s.name == name);
        s.unwrap_or_else(|| panic!("{name} not in\n{report}"))
            .reason
            .clone()
    };
    assert!(reason("conv1.weight").contains("residual add"), "{report}");
    assert!(reason("conv2.weight").contains("residual add"), "{report}");
    assert!(reason("conv3.weight").contains("graph output"), "{report}");
    assert_eq!(p.weight_bytes(), model.weight_bytes());
    assert_eq!(run_cpu(&p), run_cpu(&model));

    // A grouped (not depthwise) consumer, and a weight shared by two layers.
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[1, 4, 6, 6]);
    let w1 = b.weight("conv1.weight", gaussian(&[8, 4, 1, 1], 54, 1.0));
    let h = b.conv2d(&x, &w1, None, Conv2d::default());
    let w2 = b.weight("grouped.weight", gaussian(&[8, 4, 1, 1], 55, 1.0));
    let grouped = Conv2d {
        groups: 2,
        ..Default::default()
    };
    let h = b.conv2d(&h, &w2, None, grouped);
    let shared = b.weight("shared.weight", gaussian(&[8, 8, 1, 1], 56, 1.0));
    let h = b.conv2d(&h, &shared, None, Conv2d::default());
    let h = b.conv2d(&h, &shared, None, Conv2d::default());
    b.output(&h);
    let model = Model::from_builder(b).unwrap();
    let (_, report) = prune(&model, &channel_cfg(0.5, &[])).unwrap();
    assert!(report.layers.is_empty(), "{report}");
    assert!(report.skipped[0].reason.contains("groups = 2"), "{report}");
    let s = report
        .skipped
        .iter()
        .find(|s| s.name == "shared.weight")
        .unwrap();
    assert!(s.reason.contains("read by 2 nodes"), "{report}");
}

#[test]
fn bad_options_are_input_errors() {
    let model = small_model();
    let input_err = |cfg: PruneConfig, needle: &str| match prune(&model, &cfg) {
        Err(Error::Input(m)) => assert!(m.contains(needle), "{needle}: {m}"),
        other => panic!("{needle}: {other:?}"),
    };
    for s in [1.0, 1.5, -0.1, f32::NAN] {
        input_err(PruneConfig::new(Pattern::Unstructured, s), "outside [0, 1)");
    }
    input_err(
        PruneConfig {
            layers: vec!["conv.weight".into(), "bogus".into(), "fc.bias".into()],
            ..PruneConfig::new(Pattern::Unstructured, 0.5)
        },
        "'bogus'",
    );
    input_err(
        PruneConfig {
            layers: vec!["fc.bias".into()],
            ..PruneConfig::new(Pattern::Unstructured, 0.5)
        },
        "'fc.bias'",
    );
    input_err(
        PruneConfig {
            scope: Scope::Global,
            ..PruneConfig::new(Pattern::Channel, 0.5)
        },
        "global",
    );
    input_err(
        PruneConfig {
            store: Store::Sparse,
            ..PruneConfig::new(Pattern::Channel, 0.5)
        },
        "stores dense",
    );
    input_err(PruneConfig::new(Pattern::NM { n: 4, m: 2 }, 0.5), "n < m");
    input_err(
        PruneConfig::new(Pattern::Block { r: 0, c: 4 }, 0.5),
        "block 0x4",
    );
    for bad in [
        "bogus",
        "3:2",
        "2:x",
        "block:4",
        "block:0x1",
        "block:4y4",
        "",
    ] {
        assert!(
            matches!(bad.parse::<Pattern>(), Err(Error::Input(_))),
            "{bad}"
        );
    }
    for (text, want) in [
        ("unstructured", Pattern::Unstructured),
        ("2:4", Pattern::NM { n: 2, m: 4 }),
        ("block:8x1", Pattern::Block { r: 8, c: 1 }),
        ("filter", Pattern::Channel),
    ] {
        assert_eq!(text.parse::<Pattern>().unwrap(), want);
    }
    // Naming layers restricts pruning to them.
    let cfg = PruneConfig {
        layers: vec!["conv.weight".into()],
        ..PruneConfig::new(Pattern::Unstructured, 0.5)
    };
    let (p, report) = prune(&model, &cfg).unwrap();
    assert_eq!(report.layers.len(), 1);
    assert_eq!(decoded(&p, "fc.weight"), decoded(&model, "fc.weight"));
}

#[test]
fn progress_counts_every_layer() {
    let mut calls = Vec::new();
    let cfg = PruneConfig::new(Pattern::Unstructured, 0.5);
    let (_, report): (_, PruneReport) =
        prune_with_progress(&small_model(), &cfg, &mut |d, t, n| {
            calls.push((d, t, n.to_string()))
        })
        .unwrap();
    let done: Vec<(usize, usize)> = calls.iter().map(|c| (c.0, c.1)).collect();
    assert_eq!(done, [(0, 3), (1, 3), (2, 3), (3, 3)]);
    assert_eq!(calls[1].2, report.layers[0].name);
}

// ---- the command line ----

const MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/mnist-cnn.safetensors");
const TEST_SET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/mnist-test.safetensors");

#[test]
fn cli_prunes_and_info_reads_the_result() {
    let dir = tmp_dir("prune");
    let out = dir.join("mnist-50.safetensors");
    let o = out.to_str().unwrap();
    let (ok, stdout, stderr) = wgedge(&["prune", MODEL, "-o", o, "--sparsity", "0.5"]);
    assert!(ok, "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    for needle in [
        "conv1.weight",
        "fc.weight",
        "total (3 layers)",
        "50.0%",
        "wrote",
    ] {
        assert!(stdout.contains(needle), "{needle}: {stdout}");
    }
    let p = Model::load(&out).unwrap();
    let (_, fc) = decoded(&p, "fc.weight");
    assert_eq!(zeros(&fc), 3920);
    let (ok, info, stderr) = wgedge(&["info", o, "--backend", "cpu"]);
    assert!(ok, "{stderr}");
    assert!(info.contains("params: 9098"), "{info}");

    // Sparse storage makes the file smaller, and info shows the formats.
    let (ok, stdout, stderr) = wgedge(&[
        "prune",
        MODEL,
        "-o",
        o,
        "--sparsity",
        "0.9",
        "--store",
        "sparse",
        "--calibrate",
        TEST_SET,
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("csr-f32"), "{stdout}");
    let acc = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("accuracy:"))
        .expect(&stdout);
    assert!(
        acc.contains("original 98.10%") && acc.contains("pruned"),
        "{acc}"
    );
    let (ok, info, stderr) = wgedge(&["info", o, "--backend", "cpu"]);
    assert!(ok, "{stderr}");
    let line = info.lines().find(|l| l.contains("fc.weight")).expect(&info);
    assert!(line.contains("csr-f32"), "{line}");
    assert!(std::fs::metadata(&out).unwrap().len() * 3 < std::fs::metadata(MODEL).unwrap().len());

    // Channels, with the N:M and block patterns parsed from the command line.
    for args in [
        &["--pattern", "channel", "--sparsity", "0.5"][..],
        &["--pattern", "2:4", "--store", "sparse"],
        &[
            "--pattern",
            "block:4x1",
            "--sparsity",
            "0.5",
            "--norm",
            "l1",
        ],
        &[
            "--pattern",
            "unstructured",
            "--sparsity",
            "0.7",
            "--scope",
            "global",
        ],
        &["--sparsity", "0.5", "--layers", "conv2,fc.weight"],
    ] {
        let all = [&["prune", MODEL, "-o", o][..], args].concat();
        let (ok, stdout, stderr) = wgedge(&all);
        assert!(ok, "{args:?}: {stderr}");
        assert!(stdout.contains("wrote"), "{args:?}: {stdout}");
        let (ok, _, stderr) = wgedge(&["info", o, "--backend", "cpu"]);
        assert!(ok, "{args:?}: {stderr}");
    }
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
        let c = copy.to_str().unwrap();
        let (ok, _, stderr) = wgedge(&["prune", c, "-o", o.to_str().unwrap(), "--sparsity", "0.5"]);
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
    for (args, needle) in [
        (&[][..], "--sparsity"),
        (&["--sparsity", "1.5"], "outside [0, 1)"),
        (&["--sparsity", "lots"], "invalid value"),
        (&["--sparsity", "0.5", "--pattern", "3:2"], "n < m"),
        (
            &["--sparsity", "0.5", "--pattern", "diagonal"],
            "unknown pruning pattern",
        ),
        (
            &["--sparsity", "0.5", "--pattern", "block:64x64"],
            "fits none",
        ),
        (&["--pattern", "2:4", "--sparsity", "0.9"], "cannot reach"),
        (&["--sparsity", "0.5", "--layers", "fc,bogus"], "'bogus'"),
        (
            &["--sparsity", "0.5", "--scope", "wide"],
            "unknown pruning scope",
        ),
        (&["--sparsity", "0.5", "--store", "zip"], "unknown storage"),
        (&["--sparsity", "0.5", "--norm", "l3"], "unknown norm"),
        (
            &[
                "--sparsity",
                "0.5",
                "--pattern",
                "channel",
                "--store",
                "sparse",
            ],
            "stores dense",
        ),
    ] {
        let all = [&["prune", MODEL, "-o", o][..], args].concat();
        let (ok, _, stderr) = wgedge(&all);
        assert!(!ok, "{args:?}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!out.exists(), "{args:?} wrote a file");
    }
    let missing = dir.join("no-such-model.safetensors");
    let m = missing.to_str().unwrap();
    let (ok, _, stderr) = wgedge(&["prune", m, "-o", o, "--sparsity", "0.5"]);
    assert!(!ok);
    assert!(stderr.contains("no-such-model.safetensors"), "{stderr}");
    assert!(!out.exists());
    std::fs::remove_dir_all(&dir).ok();
}

/// The README's table: every row measured, the sparse models as accurate as the dense ones
/// (the formats hold the values exactly) and smaller where the pattern pays.
#[test]
fn cli_accuracy_table() {
    let (ok, stdout, stderr) = wgedge(&["prune", "--accuracy-table"]);
    assert!(ok, "{stderr}");
    let rows: Vec<Vec<String>> = stdout
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| pruning"))
        .map(|l| l.split('|').map(|c| c.trim().to_string()).collect())
        .collect();
    assert_eq!(rows.len(), 9, "{stdout}");
    let acc = |row: &[String]| -> f64 { row[6].trim_end_matches('%').parse().expect(&stdout) };
    assert_eq!(acc(&rows[0]), 98.1, "{stdout}");
    let row = |what: &str| rows.iter().find(|r| r[1] == what).expect(&stdout);
    // One-shot 50% unstructured and 2:4 stay within 3 points of f32 on this model.
    for what in ["unstructured 50%, per layer", "2:4"] {
        assert!(acc(row(what)) >= 95.0, "{what}:\n{stdout}");
    }
    let bytes = |r: &[String], i: usize| -> usize { r[i].parse().expect(&stdout) };
    let r90 = row("unstructured 90%, per layer");
    assert!(bytes(r90, 5) * 4 < bytes(r90, 4), "{stdout}");
    assert!(
        bytes(row("channels 50%"), 4) < bytes(&rows[0], 4),
        "{stdout}"
    );
    assert!(
        acc(r90) < acc(row("unstructured 70%, per layer")),
        "{stdout}"
    );
}

/// `--calibrate` with a file keyed by the input's name (no labels), on a channel-pruned model.
#[test]
fn cli_calibration_with_named_inputs() {
    let dir = tmp_dir("calibrate");
    let out = dir.join("p.safetensors");
    let data = dir.join("inputs.safetensors");
    let t = BTreeMap::from([("image".to_string(), Tensor::random(&[3, 1, 28, 28], 2))]);
    wgedge::model::save_tensors(&data, &t).unwrap();
    let (ok, stdout, stderr) = wgedge(&[
        "prune",
        MODEL,
        "-o",
        out.to_str().unwrap(),
        "--pattern",
        "channel",
        "--sparsity",
        "0.25",
        "--calibrate",
        data.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("3 samples (image)"), "{stdout}");
    assert!(stdout.contains("top-1 agreement"), "{stdout}");
    assert!(stdout.contains("also rewrote"), "{stdout}");
    std::fs::remove_dir_all(&dir).ok();
}

/// A global threshold can empty a whole layer: stored sparse it has no entries at all, and the
/// model still saves, loads and runs.
#[test]
fn a_layer_pruned_empty_stores_and_runs() {
    let model = small_model();
    let cfg = PruneConfig {
        scope: Scope::Global,
        store: Store::Sparse,
        ..PruneConfig::new(Pattern::Unstructured, 0.97)
    };
    let (p, report) = prune(&model, &cfg).unwrap();
    let fc = report
        .layers
        .iter()
        .find(|l| l.name == "fc.weight")
        .unwrap();
    assert_eq!(fc.zeros, fc.elements, "{report}");
    assert_eq!(p.weights["fc.weight.values"].numel(), 0);
    let back = Model::from_bytes(&p.to_bytes().unwrap()).unwrap();
    assert_eq!(run_cpu(&back), run_cpu(&p));
    assert!(decoded(&back, "fc.weight").1.iter().all(|&v| v == 0.0));
}

/// A residual CNN: stem conv, blocks `x + conv(relu(conv(x)))` whose branch weights are scaled
/// by `scales[i]`, then global pooling and a linear head. `skip` lists the blocks to leave
/// out (the graph a removal of those blocks must equal).
fn resnet(scales: &[f32], skip: &[usize]) -> Model {
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[1, 4, 6, 6]);
    let pad = Conv2d {
        pad: [1; 4],
        ..Default::default()
    };
    let sw = b.weight("stem.weight", gaussian(&[8, 4, 3, 3], 40, 0.5));
    let mut h = b.conv2d(&x, &sw, None, pad);
    for (i, &s) in scales.iter().enumerate() {
        if skip.contains(&i) {
            continue;
        }
        let w1 = b.weight(
            &format!("b{i}.conv1"),
            gaussian(&[8, 8, 3, 3], 41 + i as u64, s),
        );
        let w2 = b.weight(
            &format!("b{i}.conv2"),
            gaussian(&[8, 8, 3, 3], 51 + i as u64, s),
        );
        let relu = Conv2d {
            act: Activation::Relu,
            ..pad
        };
        let r = b.conv2d(&h, &w1, None, relu);
        let r = b.conv2d(&r, &w2, None, pad);
        b.add(&h, &r);
        h = b.name_last(&format!("block{i}")).unwrap();
    }
    let p = b.global_avg_pool(&h);
    let p = b.flatten(&p, 1);
    let fw = b.weight("fc.weight", gaussian(&[3, 8], 60, 1.0));
    let y = b.linear(&p, &fw, None, Activation::None);
    b.output(&y);
    Model::from_builder(b).unwrap()
}

#[test]
fn layer_removal_drops_the_least_important_residual_block_and_its_weights() {
    use wgedge::compress::{remove_layers, Removal};
    // Block 1's branch is 100x weaker than the others': it is ranked lowest and removed.
    let model = resnet(&[0.5, 0.005, 0.5], &[]);
    let (smaller, report) = remove_layers(&model, &Removal::LowestImportance(1), None).unwrap();
    assert_eq!(report.blocks.len(), 3, "{report}");
    assert_eq!(report.blocks[0].0, model.graph.nodes[6].name, "{report}");
    assert_eq!(report.removed.len(), 1);
    assert_eq!(
        report.removed[0].nodes.len(),
        3,
        "the add and its two convs: {report}"
    );
    assert_eq!(report.nodes_after, report.nodes_before - 3);
    let names: Vec<&str> = smaller
        .graph
        .weights
        .iter()
        .map(|w| w.name.as_str())
        .collect();
    assert!(
        !names.contains(&"b1.conv1") && !names.contains(&"b1.conv2"),
        "{names:?}"
    );
    assert!(report.model_bytes_after < report.model_bytes_before);
    // The result computes exactly what the model built without that block computes.
    let want = run_cpu(&resnet(&[0.5, 0.005, 0.5], &[1]));
    assert_eq!(run_cpu(&smaller), want);
    // And it survives a save/load round trip.
    let again = Model::from_bytes(&smaller.to_bytes().unwrap()).unwrap();
    assert_eq!(run_cpu(&again), want);

    // By name: the block's add (its output name works too), and a plain activation.
    let (named, r) = remove_layers(&model, &Removal::Named(vec!["block2".into()]), None).unwrap();
    assert_eq!(r.removed[0].kept, "block1");
    assert_eq!(run_cpu(&named), run_cpu(&resnet(&[0.5, 0.005, 0.5], &[2])));
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[2, 5]);
    let w = b.weight("w", Tensor::random(&[5, 5], 3));
    let h = b.linear(&x, &w, None, Activation::None);
    let h = b.act(&h, Activation::Sigmoid);
    let y = b.linear(&h, &w, None, Activation::None);
    b.output(&y);
    let m = Model::from_builder(b).unwrap();
    let act = m.graph.nodes[1].name.clone();
    let (m2, _) = remove_layers(&m, &Removal::Named(vec![act]), None).unwrap();
    assert_eq!(m2.graph.nodes.len(), 2);
    assert_eq!(m2.graph.nodes[1].inputs[0], m.graph.nodes[0].output);

    // Refusals name what is wrong.
    let err = |r: Removal| remove_layers(&model, &r, None).unwrap_err().to_string();
    let e = err(Removal::Named(vec!["nope".into()]));
    assert!(e.contains("'nope'"), "{e}");
    // Global pooling changes the shape: nothing can stand in for it.
    let pool = model.graph.nodes[model.graph.nodes.len() - 3].name.clone();
    let e = err(Removal::Named(vec![pool.clone()]));
    assert!(e.contains(&pool) && e.contains("cannot be removed"), "{e}");
    let e = err(Removal::LowestImportance(4));
    assert!(e.contains("4") && e.contains("3"), "{e}");
}

#[test]
fn prune_command_removes_blocks_and_refuses_mixing_with_weight_pruning() {
    let dir = std::env::temp_dir().join(format!("wgedge-remove-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("res.safetensors");
    let output = dir.join("res-1.safetensors");
    resnet(&[0.5, 0.005], &[]).save(&input).unwrap();
    let (ok, out, err) = wgedge(&[
        "prune",
        input.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
        "--remove-blocks",
        "1",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("removed") && out.contains("importance"),
        "{out}"
    );
    let smaller = Model::load(&output).unwrap();
    assert_eq!(run_cpu(&smaller), run_cpu(&resnet(&[0.5, 0.005], &[1])));
    let (ok, _, err) = wgedge(&[
        "prune",
        input.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
        "--remove-blocks",
        "1",
        "--sparsity",
        "0.5",
    ]);
    assert!(!ok && err.contains("separate runs"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn sparse_storage_takes_f16_and_int8_values() {
    use wgedge::format::SparseValues;
    let model = small_model();
    let dense_cfg = PruneConfig::new(Pattern::Unstructured, 0.8);
    let (dense, _) = prune(&model, &dense_cfg).unwrap();
    let want = run_cpu(&dense);
    for (values, label, tol) in [
        (SparseValues::F16, "csr-f16", 2e-3),
        (SparseValues::I8, "csr-i8", 3e-2),
    ] {
        let cfg = PruneConfig {
            store: Store::Sparse,
            values,
            ..dense_cfg.clone()
        };
        let (sp, report) = prune(&model, &cfg).unwrap();
        assert_eq!(sp.graph.format_of("conv.weight").label(), label);
        assert!(report.layers.iter().all(|l| l.format == label), "{report}");
        // f16 rounds each value (rel. 2^-11), int8 to 1/254 of the row's largest: the output
        // moves by that order, well within these bounds on this small model.
        let d = max_rel_diff(&want, &run_cpu(&sp));
        assert!(d < tol, "{label}: {d}");
        assert!(
            sp.weight_bytes()
                < prune(
                    &model,
                    &PruneConfig {
                        store: Store::Sparse,
                        ..dense_cfg.clone()
                    }
                )
                .unwrap()
                .0
                .weight_bytes()
        );
    }
    let bad = PruneConfig {
        values: SparseValues::I8,
        ..dense_cfg
    };
    let e = prune(&model, &bad).unwrap_err().to_string();
    assert!(e.contains("--store sparse"), "{e}");
}

/// The CPU reference kernels (the ground truth; the fast CPU kernels sum in other orders).
fn reference() -> SessionOptions {
    SessionOptions {
        cpu_reference: true,
        ..Default::default()
    }
}
