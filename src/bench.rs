//! The benchmark suites behind `wgedge bench`: each workload is timed with the tuned kernels,
//! the naive GPU kernels and the CPU reference in the same run, "resident" (data on the device,
//! timed to completion) and "end to end" (upload, run, read back), as JSON-ready records.

use crate::error::Result;
use crate::gpu::GpuContext;
use crate::graph::{single_conv3x3, single_linear, GraphBuilder};
use crate::ops::Activation;
use crate::session::{Session, SessionOptions};
use crate::tensor::Tensor;
use crate::Model;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One measurement. Workloads: `gemm`, `gemv`, `conv3x3`, `dwconv3x3`, `dwconv3x3s2`,
/// `dwconv5x5`, `pwconv`, `convtranspose`, `mbv2block` (kernels `fused`, `unfused`), `mlp`
/// (batch 64), `mlp1` (batch 1); GPU kernel names start with the weight format and say what ran
/// (`f32-tex2-8x8`, `int8-tex-1x2`, `int4-g32-buf-4x2`, ...), except the naive reference kernel
/// (`naive`) and the CPU rows (backend `cpu`: `cpu-ref`, the reference, and the fast kernels
/// as `{format}-{kernel}`, e.g. `f32-cpu-gemm`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub workload: String,
    pub kernel: String,
    pub backend: String,
    /// `resident` or `e2e`.
    pub mode: String,
    pub median_ms: f64,
    pub min_ms: f64,
    pub runs: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gflops: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gbps: Option<f64>,
}

/// How long to measure.
#[derive(Debug, Clone, Copy)]
pub struct BenchConfig {
    /// Stop after this many runs...
    pub max_runs: usize,
    /// ...or once this much time was spent (at least `min_runs` runs either way).
    pub budget: Duration,
    pub min_runs: usize,
    /// Skip the naive GPU kernels and the CPU reference (they take minutes on slow devices).
    pub skip_slow: bool,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            max_runs: 20,
            budget: Duration::from_secs(3),
            min_runs: 3,
            skip_slow: false,
        }
    }
}

/// Times `f` (after one warm-up call): (median ms, min ms, runs).
pub fn time_it(cfg: &BenchConfig, mut f: impl FnMut() -> Result<()>) -> Result<(f64, f64, usize)> {
    f()?;
    let start = Instant::now();
    let mut ms = Vec::new();
    while ms.len() < cfg.min_runs || (ms.len() < cfg.max_runs && start.elapsed() < cfg.budget) {
        let t = Instant::now();
        f()?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    Ok((ms[ms.len() / 2], ms[0], ms.len()))
}

/// A benchmark workload: a model, its input, and what its size means.
pub struct Workload {
    pub name: &'static str,
    pub model: Model,
    pub input: Tensor,
    pub flops: f64,
    /// Bytes of weights read per run (for GB/s of GEMV).
    pub weight_bytes: Option<f64>,
    /// Storage format of the matmul weights, the prefix of kernel names: `f32`, `f16`, `int8`,
    /// `int4-g32`, `pow2-int8`, sparse ones as [`sparse_label`] reads them (`csr-90`, `2:4`).
    pub format: &'static str,
}

/// The weight formats benchmarked, by their kernel-name prefix (`int8xint8`: int8 weights run
/// with int8 activations).
pub fn bench_format(label: &str) -> Option<crate::format::WeightFormat> {
    use crate::format::{QuantSpec, WeightFormat};
    let q = |bits, group, pow2, scale_dtype| {
        WeightFormat::Quant(QuantSpec {
            bits,
            group,
            zero_points: false,
            pow2,
            scale_dtype,
        })
    };
    Some(match label {
        "f32" => WeightFormat::Dense,
        "f16" => WeightFormat::Half,
        // int8 x int8: the int8 weights, with int8 activations turned on in the session.
        "int8" | "int8xint8" => q(8, 0, false, crate::DType::F32),
        "int4-g32" => q(4, 32, false, crate::DType::F16),
        "pow2-int8" => q(8, 0, true, crate::DType::F32),
        _ => WeightFormat::Sparse(sparse_label(label)?.0),
    })
}

/// A sparse benchmark label: `csr-90` (CSR, 90 % of entries pruned), `bsr4x4-90` (4x4 blocks),
/// `2:4` / `4:8` (N:M), each optionally followed by the value type when not f32 (`-f16`,
/// `-int8`): the format and the fraction of entries pruned (N:M: 1 - n/m).
pub fn sparse_label(label: &str) -> Option<(crate::format::SparseSpec, f64)> {
    use crate::format::{SparseLayout, SparseSpec, SparseValues};
    let (body, values) = match label.rsplit_once('-') {
        Some((b, "f16")) => (b, SparseValues::F16),
        Some((b, "int8")) => (b, SparseValues::I8),
        _ => (label, SparseValues::F32),
    };
    let pct = |s: &str| -> Option<f64> {
        let p: u32 = s.parse().ok()?;
        (1..100).contains(&p).then_some(p as f64 / 100.0)
    };
    let (layout, sparsity) = if let Some((n, m)) = body.split_once(':') {
        let (n, m): (usize, usize) = (n.parse().ok()?, m.parse().ok()?);
        (SparseLayout::NM { n, m }, 1.0 - n as f64 / m.max(1) as f64)
    } else if let Some(s) = body.strip_prefix("csr-") {
        (SparseLayout::Csr, pct(s)?)
    } else {
        let (dims, s) = body.strip_prefix("bsr")?.split_once('-')?;
        let (r, c) = dims.split_once('x')?;
        let (r, c) = (r.parse().ok()?, c.parse().ok()?);
        (SparseLayout::Bsr { r, c }, pct(s)?)
    };
    let spec = SparseSpec { layout, values };
    spec.check().ok()?;
    Some((spec, sparsity))
}

/// The workload with every Linear (`trans_b` matmul) and conv weight stored in format
/// `label` (see [`bench_format`]); GB/s then counts the stored bytes. Sparse labels prune
/// first, per layer, with `compress::prune` (unstructured by |w| for CSR, blocks by L2 norm for
/// BSR, the n largest of every m for N:M) and store the result in the label's format.
pub fn packed_workload(w: Workload, label: &'static str) -> Result<Workload> {
    let f = bench_format(label)
        .ok_or_else(|| crate::Error::Input(format!("unknown benchmark format '{label}'")))?;
    if f.is_dense() {
        return Ok(Workload { format: label, ..w });
    }
    let dense_total: usize = w.model.weights.values().map(|t| t.bytes().len()).sum();
    if let Some((spec, sparsity)) = sparse_label(label) {
        use crate::compress::{prune, Pattern, PruneConfig, Store};
        use crate::format::SparseLayout;
        let pattern = match spec.layout {
            SparseLayout::Csr => Pattern::Unstructured,
            SparseLayout::Bsr { r, c } => Pattern::Block { r, c },
            SparseLayout::NM { n, m } => Pattern::NM { n, m },
        };
        let cfg = PruneConfig {
            store: Store::Sparse,
            values: spec.values,
            ..PruneConfig::new(pattern, sparsity as f32)
        };
        let (model, _) = prune(&w.model, &cfg)?;
        let stored = model.weight_bytes();
        return Ok(Workload {
            weight_bytes: w
                .weight_bytes
                .map(|b| b - dense_total as f64 + stored as f64),
            model,
            format: label,
            ..w
        });
    }
    let mut graph = w.model.graph.clone();
    let mut weights = (*w.model.weights).clone();
    let (mut dense_bytes, mut stored) = (0usize, 0usize);
    for n in &w.model.graph.nodes {
        let readable = match &n.op {
            crate::ops::Op::MatMul(mm) => mm.trans_b,
            crate::ops::Op::Conv2d(_) => true,
            _ => false,
        };
        let name = &n.inputs[1];
        if !readable || graph.formats.contains_key(name) {
            continue;
        }
        let Some(t) = weights.remove(name) else {
            continue;
        };
        let parts = f.encode(name, &t)?;
        dense_bytes += t.bytes().len();
        stored += f.stored_bytes(name, &parts);
        weights.extend(parts);
        graph.formats.insert(name.clone(), f.clone());
    }
    let weight_bytes = w
        .weight_bytes
        .map(|b| b - dense_bytes as f64 + stored as f64);
    Ok(Workload {
        model: Model::new(graph, weights)?,
        weight_bytes,
        format: label,
        ..w
    })
}

/// The same model and stored weights with the first input's leading dimension set to `m`
/// (a batch of `m` rows through a linear), FLOPs scaled to match.
fn with_batch(w: &Workload, name: &'static str, m: usize) -> Result<Workload> {
    let mut graph = w.model.graph.clone();
    let input = graph
        .inputs
        .first_mut()
        .ok_or_else(|| crate::Error::Input(format!("workload {} has no input", w.name)))?;
    let rows = input.shape[0].max(1);
    input.shape[0] = m;
    let mut shape = w.input.shape().to_vec();
    shape[0] = m;
    Ok(Workload {
        name,
        model: Model::new(graph, (*w.model.weights).clone())?,
        input: Tensor::random(&shape, 8),
        flops: w.flops * m as f64 / rows as f64,
        weight_bytes: None,
        format: w.format,
    })
}

fn one_linear(
    name: &'static str,
    m: usize,
    k: usize,
    n: usize,
    report_gbps: bool,
) -> Result<Workload> {
    Ok(Workload {
        name,
        model: Model::from_builder(single_linear(m, k, n))?,
        input: Tensor::random(&[m, k], 8),
        flops: 2.0 * (m * k * n) as f64,
        weight_bytes: report_gbps.then_some((n * k * 4) as f64),
        format: "f32",
    })
}

fn one_conv(name: &'static str, c: usize, hw: usize, groups: usize) -> Result<Workload> {
    Ok(Workload {
        name,
        model: Model::from_builder(single_conv3x3(c, hw, groups))?,
        input: Tensor::random(&[1, c, hw, hw], 10),
        flops: 2.0 * (c * hw * hw * (c / groups) * 9) as f64,
        weight_bytes: None,
        format: "f32",
    })
}

/// One depthwise `k` x `k` conv (pad k / 2) with stride `stride` over `[1, c, hw, hw]`.
fn one_dwconv(
    name: &'static str,
    c: usize,
    hw: usize,
    k: usize,
    stride: usize,
) -> Result<Workload> {
    use crate::ops::Conv2d;
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[1, c, hw, hw]);
    let w = b.weight("w", Tensor::random(&[c, 1, k, k], 9));
    let conv = Conv2d {
        stride: [stride, stride],
        pad: [k / 2; 4],
        groups: c,
        ..Default::default()
    };
    let out = crate::ops::Op::Conv2d(conv).infer_shape(&[vec![1, c, hw, hw], vec![c, 1, k, k]])?;
    let y = b.conv2d(&x, &w, None, conv);
    b.output(&y);
    Ok(Workload {
        name,
        model: Model::from_builder(b)?,
        input: Tensor::random(&[1, c, hw, hw], 10),
        flops: 2.0 * (crate::tensor::numel(&out) * k * k) as f64,
        weight_bytes: None,
        format: "f32",
    })
}

/// A 1x1 conv `cin -> cout` over `[1, cin, hw, hw]` (pointwise, run as a conv).
fn one_pwconv(name: &'static str, cin: usize, cout: usize, hw: usize) -> Result<Workload> {
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[1, cin, hw, hw]);
    let w = b.weight("w", Tensor::random(&[cout, cin, 1, 1], 9));
    let y = b.conv2d(&x, &w, None, crate::ops::Conv2d::default());
    b.output(&y);
    Ok(Workload {
        name,
        model: Model::from_builder(b)?,
        input: Tensor::random(&[1, cin, hw, hw], 10),
        flops: 2.0 * (cin * cout * hw * hw) as f64,
        weight_bytes: None,
        format: "f32",
    })
}

/// A `k` x `k` stride-`k` transposed conv `cin -> cout` over `[1, cin, hw, hw]` (a decoder's
/// 2x upsampling for k = 2).
fn one_convtranspose(
    name: &'static str,
    cin: usize,
    cout: usize,
    hw: usize,
    k: usize,
) -> Result<Workload> {
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[1, cin, hw, hw]);
    let w = b.weight("w", Tensor::random(&[cin, cout, k, k], 9));
    let y = b.conv_transpose2d(
        &x,
        &w,
        None,
        crate::ops::ConvTranspose2d {
            stride: [k, k],
            ..Default::default()
        },
    );
    b.output(&y);
    Ok(Workload {
        name,
        model: Model::from_builder(b)?,
        input: Tensor::random(&[1, cin, hw, hw], 10),
        flops: 2.0 * (cin * cout * hw * hw * k * k) as f64,
        weight_bytes: None,
        format: "f32",
    })
}

/// A MobileNetV2 inverted residual block over `[1, c, hw, hw]`: 1x1 expand `c -> c * t` + BN +
/// relu6, depthwise 3x3 + BN + relu6, 1x1 project back to `c` + BN, residual add. `format` is
/// `fused` (sessions fold BN and fuse epilogues, the default) or `unfused` (the bench runs it
/// with `SessionOptions::optimize` off: every BN, activation and the add is its own kernel).
pub fn mbv2_block(c: usize, t: usize, hw: usize, format: &'static str) -> Result<Workload> {
    use crate::ops::Conv2d;
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[1, c, hw, hw]);
    let e = c * t;
    let mut seed = 100;
    let mut bn = |b: &mut GraphBuilder, v: &str, ch: usize, name: &str| {
        seed += 4;
        let g = b.weight(&format!("{name}.gamma"), Tensor::random(&[ch], seed));
        let be = b.weight(&format!("{name}.beta"), Tensor::random(&[ch], seed + 1));
        let m = b.weight(&format!("{name}.mean"), Tensor::random(&[ch], seed + 2));
        let var = Tensor::new(&[ch], (0..ch).map(|i| 0.5 + (i % 7) as f32 * 0.1).collect())?;
        let var = b.weight(&format!("{name}.var"), var);
        Ok::<String, crate::Error>(b.batch_norm(v, &g, &be, &m, &var, 1e-5))
    };
    let w1 = b.weight("expand.w", Tensor::random(&[e, c, 1, 1], 1));
    let h = b.conv2d(&x, &w1, None, Conv2d::default());
    let h = bn(&mut b, &h, e, "bn1")?;
    let h = b.act(&h, Activation::Relu6);
    let w2 = b.weight("dw.w", Tensor::random(&[e, 1, 3, 3], 2));
    let dw = Conv2d {
        pad: [1; 4],
        groups: e,
        ..Default::default()
    };
    let h = b.conv2d(&h, &w2, None, dw);
    let h = bn(&mut b, &h, e, "bn2")?;
    let h = b.act(&h, Activation::Relu6);
    let w3 = b.weight("project.w", Tensor::random(&[c, e, 1, 1], 3));
    let h = b.conv2d(&h, &w3, None, Conv2d::default());
    let h = bn(&mut b, &h, c, "bn3")?;
    let y = b.add(&h, &x);
    b.output(&y);
    let flops = 2.0 * (hw * hw) as f64 * (c * e + e * 9 + e * c) as f64;
    Ok(Workload {
        name: "mbv2block",
        model: Model::from_builder(b)?,
        input: Tensor::random(&[1, c, hw, hw], 10),
        flops,
        weight_bytes: None,
        format,
    })
}

/// The MLP 784-512-512-10 (ReLU) with batch `batch`.
pub fn mlp(batch: usize) -> Result<Workload> {
    let mut b = GraphBuilder::new();
    let mut h = b.input("x", &[batch, 784]);
    let dims = [784, 512, 512, 10];
    for i in 0..3 {
        let w = b.weight(
            &format!("fc{i}.weight"),
            Tensor::random(&[dims[i + 1], dims[i]], 20 + i as u64),
        );
        let bias = b.weight(
            &format!("fc{i}.bias"),
            Tensor::random(&[dims[i + 1]], 30 + i as u64),
        );
        let act = if i < 2 {
            Activation::Relu
        } else {
            Activation::None
        };
        h = b.linear(&h, &w, Some(&bias), act);
    }
    b.output(&h);
    let flops = 2.0 * batch as f64 * (784.0 * 512.0 + 512.0 * 512.0 + 512.0 * 10.0);
    Ok(Workload {
        name: if batch == 1 { "mlp1" } else { "mlp" },
        model: Model::from_builder(b)?,
        input: Tensor::random(&[batch, 784], 40),
        flops,
        weight_bytes: None,
        format: "f32",
    })
}

/// A workload for a whole model with a random input (FLOPs from its plan).
pub fn model_workload(name: &'static str, model: Model) -> Result<Workload> {
    let input = model
        .graph
        .inputs
        .first()
        .map(|v| Tensor::random(&v.shape, 1))
        .unwrap_or_else(|| Tensor::zeros(&[1]));
    let flops = Session::cpu(&model, SessionOptions::default())?
        .plan()
        .flops() as f64;
    Ok(Workload {
        name,
        model,
        input,
        flops,
        weight_bytes: None,
        format: "f32",
    })
}

/// The kernels suite's workloads (sizes from the project's targets), each matmul workload
/// also with its weights packed in the formats wgedge runs.
pub fn kernel_workloads() -> Result<Vec<Workload>> {
    let mut v = Vec::new();
    for f in ["f32", "int8", "int4-g32"] {
        v.push(packed_workload(
            one_linear("gemm", 1024, 1024, 1024, false)?,
            f,
        )?);
    }
    // 4096x4096 linear: batch 1 (`gemv`) in every format, and batch 64 (`gemm64`) on the
    // same stored weights for the formats whose kernels have a batched form.
    for f in [
        "f32",
        "f16",
        "int8",
        "int4-g32",
        "pow2-int8",
        "int8xint8",
        "csr-50",
        "csr-70",
        "csr-90",
        "csr-95",
        "csr-90-int8",
        "bsr4x4-90",
        "2:4",
    ] {
        let gemv = packed_workload(one_linear("gemv", 1, 4096, 4096, true)?, f)?;
        if matches!(f, "f32" | "int8" | "csr-50" | "csr-90" | "csr-95" | "2:4") {
            v.push(with_batch(&gemv, "gemm64", 64)?);
        }
        v.push(gemv);
    }
    for f in ["f32", "int8", "int4-g32"] {
        v.push(packed_workload(one_conv("conv3x3", 64, 56, 1)?, f)?);
    }
    for f in ["f32", "int8"] {
        v.push(packed_workload(one_conv("dwconv3x3", 32, 112, 32)?, f)?);
    }
    v.push(one_dwconv("dwconv3x3s2", 144, 56, 3, 2)?);
    // MobileNetV2-like: 5x5 depthwise stages run at 96-240 channels at 28 and 14; 96 @ 56
    // is the heaviest such layer (as in MnasNet / MobileNetV3-large's early 5x5 stage).
    v.push(one_dwconv("dwconv5x5", 96, 56, 5, 1)?);
    v.push(one_pwconv("pwconv", 96, 24, 56)?);
    v.push(one_convtranspose("convtranspose", 64, 32, 40, 2)?);
    for f in ["fused", "unfused"] {
        v.push(mbv2_block(24, 6, 56, f)?);
    }
    for f in ["f32", "int8", "int4-g32", "csr-90"] {
        v.push(packed_workload(mlp(64)?, f)?);
    }
    for f in ["f32", "int8", "int4-g32", "int8xint8", "csr-90"] {
        v.push(packed_workload(mlp(1)?, f)?);
    }
    Ok(v)
}

fn record(w: &Workload, kernel: &str, backend: &str, mode: &str, t: (f64, f64, usize)) -> Record {
    let secs = t.0 / 1e3;
    Record {
        workload: w.name.into(),
        kernel: kernel.into(),
        backend: backend.into(),
        mode: mode.into(),
        median_ms: t.0,
        min_ms: t.1,
        runs: t.2,
        gflops: Some(w.flops / secs / 1e9),
        gbps: w.weight_bytes.map(|b| b / secs / 1e9),
    }
}

/// The best storage-buffer-only kernels measured on lavapipe (no textures): the portable path
/// most real GPUs run, kept as a benchmark baseline.
pub fn storage_only() -> crate::profile::TunedChoices {
    serde_json::from_value(serde_json::json!({
        "matmul": {
            "gemm": {"kernel": "bcast", "tm": 8, "tn4": 2},
            "gemv": {"kernel": "bcast", "tm": 1, "tn4": 4},
            "gemm_tiled": {"kernel": "tiled", "tm": 4, "tn": 4},
            "qgemv": {"kernel": "packed", "tm": 1, "r": 2},
            "qgemm": {"kernel": "packed", "tm": 4, "r": 2},
            "qi8": {"kernel": "int8_act", "r": 2, "dot": true},
        },
        "conv2d": {
            "conv": {"kernel": "tiled", "px": 8},
            "pwconv": {"kernel": "tiled", "px": 8},
            "dwconv": {"kernel": "depthwise", "px": 4},
            "qconv": {"kernel": "packed", "px": 4, "r": 4},
            "qdwconv": {"kernel": "packed_depthwise", "px": 4},
        },
    }))
    .expect("static JSON")
}

/// GPU kernels the kernels suite times by name on f32 workloads besides the tuned choice:
/// (family, slot, kernel). GEMM: the two-texture kernel lavapipe favours and the
/// workgroup-tiled one real GPUs favour; conv3x3 and pwconv: the GEMM-shaped conv kernels.
fn pinned_kernels(w: &Workload) -> Vec<(&'static str, &'static str, serde_json::Value)> {
    use serde_json::json;
    if w.format != "f32" {
        return Vec::new();
    }
    match w.name {
        "gemm" => vec![
            (
                "matmul",
                "gemm",
                json!({"kernel": "tex2", "tm": 8, "tn4": 1}),
            ),
            (
                "matmul",
                "gemm",
                json!({"kernel": "tex2", "tm": 8, "tn4": 2}),
            ),
            (
                "matmul",
                "gemm",
                json!({"kernel": "tex2_reg", "tm": 8, "tn4": 2}),
            ),
            (
                "matmul",
                "gemm",
                json!({"kernel": "tex2_reg", "tm": 8, "tn4": 4}),
            ),
            (
                "matmul",
                "gemm",
                json!({"kernel": "tex2_reg", "tm": 16, "tn4": 2}),
            ),
            (
                "matmul",
                "gemm",
                json!({"kernel": "tex2_reg", "tm": 16, "tn4": 4}),
            ),
            (
                "matmul",
                "gemm",
                json!({"kernel": "tex2_reg", "tm": 4, "tn4": 4}),
            ),
            (
                "matmul",
                "gemm",
                json!({"kernel": "wg_tile", "tm": 4, "tn": 4, "wg": 16}),
            ),
        ],
        "conv3x3" => vec![
            ("conv2d", "conv", json!({"kernel": "tex2", "px": 8})),
            ("conv2d", "conv", json!({"kernel": "implicit_tex", "px": 8})),
            ("conv2d", "conv", json!({"kernel": "implicit_tex", "px": 4})),
            (
                "conv2d",
                "conv",
                json!({"kernel": "implicit_tex", "px": 8, "v4": true}),
            ),
            (
                "conv2d",
                "conv",
                json!({"kernel": "implicit_tex", "px": 4, "v4": true}),
            ),
            ("conv2d", "conv", json!({"kernel": "implicit_wg", "wg": 16})),
        ],
        "pwconv" => vec![
            ("conv2d", "pwconv", json!({"kernel": "tiled", "px": 4})),
            (
                "conv2d",
                "pwconv",
                json!({"kernel": "pointwise", "tm": 8, "tn4": 2, "xtex": true}),
            ),
            (
                "conv2d",
                "pwconv",
                json!({"kernel": "pointwise", "tm": 8, "tn4": 2, "xtex": false}),
            ),
            (
                "conv2d",
                "pwconv",
                json!({"kernel": "implicit_wg", "wg": 16}),
            ),
        ],
        _ => Vec::new(),
    }
}

/// Feature-gated kernels the kernels suite times by name: (family, slot, kernel, f16 compute
/// on). The f16-product kernels (`f16c-*`: GEMM, GEMV, f16 weights multiplied in f16, the
/// pointwise, implicit-GEMM and depthwise convs) where the adapter has `shader-f16`, the
/// subgroup f32 GEMV where it has subgroups.
fn pinned_feature_kernels(
    w: &Workload,
    features: &crate::profile::DeviceFeatures,
) -> Vec<(&'static str, &'static str, serde_json::Value, bool)> {
    use serde_json::json;
    let mut v = Vec::new();
    let f16 = features.shader_f16;
    match (w.name, w.format) {
        ("gemm", "f32") if f16 => {
            for tex in [true, false] {
                let k = json!({"kernel": "f16_block", "tm": 8, "tn4": 2, "tex": tex});
                v.push(("matmul", "gemm_f16c", k, true));
            }
        }
        ("gemv", "f32") => {
            if f16 {
                for tex in [true, false] {
                    let k = json!({"kernel": "f16_block", "tm": 1, "tn4": 4, "tex": tex});
                    v.push(("matmul", "gemv_f16c", k, true));
                }
            }
            if features.subgroups {
                v.push(("matmul", "gemv", json!({"kernel": "sg_gemv"}), false));
            }
        }
        ("gemv", "f16") if f16 => {
            for xtex in [false, true] {
                let k = json!({"kernel": "packed_f16c", "tn4": 4, "xtex": xtex});
                v.push(("matmul", "qgemv_f16c", k, true));
            }
        }
        ("pwconv", "f32") if f16 => {
            for xtex in [true, false] {
                let k = json!({"kernel": "pointwise_f16", "tm": 8, "tn4": 2, "xtex": xtex});
                v.push(("conv2d", "pwconv_f16c", k, true));
            }
        }
        ("conv3x3", "f32") if f16 => {
            for (px, v4) in [(8, false), (8, true), (4, true)] {
                let k = json!({"kernel": "implicit_tex_f16", "px": px, "v4": v4});
                v.push(("conv2d", "conv_f16c", k, true));
            }
        }
        ("dwconv3x3", "f32") if f16 => {
            for (px, py) in [(8, 2), (8, 4), (16, 2), (16, 4)] {
                let k = json!({"kernel": "dw_vec4_f16", "px": px, "py": py});
                v.push(("conv2d", "dwconv_f16c", k, true));
            }
        }
        _ => {}
    }
    v
}

/// Names the distinct matmul/conv kernels a plan uses, e.g. `tex2-8x8+tex-1x16` (`standard` kernels of the other ops are left out).
fn kernel_label(s: &Session) -> String {
    let mut names: Vec<String> = Vec::new();
    for n in &s.plan().nodes {
        let k = &n.kernel;
        if k != "standard" && k != "alias" && !names.contains(k) {
            names.push(k.clone());
        }
    }
    if names.is_empty() {
        "standard".into()
    } else {
        names.join("+")
    }
}

/// Runs one workload on the GPU (tuned and naive), the CPU reference and the fast CPU kernels.
pub fn bench_workload(
    ctx: Option<&Arc<GpuContext>>,
    w: &Workload,
    cfg: &BenchConfig,
    log: &mut dyn FnMut(&Record),
    notes: &mut Vec<String>,
) -> Result<Vec<Record>> {
    let mut out = Vec::new();
    let input_name = w
        .model
        .graph
        .inputs
        .first()
        .map(|v| v.name.clone())
        .unwrap_or_default();
    let feeds = [(input_name.as_str(), &w.input)];
    let mut push = |r: Record, out: &mut Vec<Record>| {
        log(&r);
        out.push(r);
    };
    if let Some(ctx) = ctx {
        let backend = ctx.profile.backend.clone();
        // Tuned kernels, the storage-buffer-only kernels, then the naive reference kernels.
        let i8a = w.format == "int8xint8";
        // `unfused` workloads run the graph as written (no BN folding, no epilogue fusion).
        let optimize = w.format != "unfused";
        let tuned = SessionOptions {
            int8_activations: i8a,
            optimize,
            ..Default::default()
        };
        let mut variants = vec![("tuned", tuned)];
        let storage = SessionOptions {
            kernels: Some(storage_only()),
            int8_activations: i8a,
            optimize,
            ..Default::default()
        };
        variants.push(("storage", storage));
        // Named GPU kernels timed beside the tuned one, so one run compares them (the tuned
        // choice was measured on a smaller tuning shape and may differ).
        for (family, slot, k) in pinned_kernels(w) {
            let mut c = crate::profile::TunedChoices::new();
            c.entry(family.into()).or_default().insert(slot.into(), k);
            variants.push((
                "pinned",
                SessionOptions {
                    kernels: Some(c),
                    int8_activations: i8a,
                    optimize,
                    ..Default::default()
                },
            ));
        }
        // The f16-product kernels (f16 compute allowed) and the subgroup GEMV, by name beside
        // the f32 ones, where the adapter has the feature.
        for (family, slot, k, f16) in pinned_feature_kernels(w, &ctx.profile.features) {
            let mut c = crate::profile::TunedChoices::new();
            c.entry(family.into()).or_default().insert(slot.into(), k);
            variants.push((
                "pinned",
                SessionOptions {
                    kernels: Some(c),
                    f16_compute: f16,
                    optimize,
                    ..Default::default()
                },
            ));
        }
        // The naive kernel and the CPU reference run packed weights decoded, the same
        // arithmetic as the f32 workload's: measured once, there.
        if !cfg.skip_slow && w.format == "f32" {
            variants.push((
                "naive",
                SessionOptions {
                    naive: true,
                    ..Default::default()
                },
            ));
        }
        for (which, opts) in variants {
            let s = Session::with_context(&w.model, ctx.clone(), opts)?;
            let label = match kernel_label(&s) {
                k if k == "naive" => k,
                // A whole block: the kernel name says fused or not, not the kernels it ran.
                _ if matches!(w.format, "fused" | "unfused") => w.format.to_string(),
                k => format!("{}-{k}", w.format),
            };
            if out
                .iter()
                .any(|r: &Record| r.kernel == label && r.backend == backend)
            {
                continue; // the tuned choice may already be the storage kernel
            }
            s.run(&feeds)?; // uploads the input for the resident runs
            push(
                record(
                    w,
                    &label,
                    &backend,
                    "resident",
                    time_it(cfg, || s.run_resident(1))?,
                ),
                &mut out,
            );
            let e2e = time_it(cfg, || s.run(&feeds).map(|_| ()))?;
            push(record(w, &label, &backend, "e2e", e2e), &mut out);
            if which == "tuned" && ctx.profile.features.timestamp_query {
                // Run overhead = end to end minus the sum of the kernels' GPU times.
                let mut sums = Vec::new();
                for _ in 0..5 {
                    sums.push(s.node_times()?.iter().sum::<f64>());
                }
                sums.sort_by(f64::total_cmp);
                let k = sums[sums.len() / 2];
                notes.push(format!(
                    "{:<10} {label}: sum of kernel times {k:.3} ms (timestamp queries), end to end {:.3} ms, difference {:.3} ms",
                    w.name,
                    e2e.0,
                    e2e.0 - k
                ));
            }
        }
    }
    // The CPU rows run on `WGEDGE_THREADS` threads when it is set (all cores otherwise): a
    // per-thread-count comparison (`tools/cpu_vs_numpy.py --threads 1,2`) must really change
    // the thread count, as `wgedge run` does.
    let cpu_threads = SessionOptions::from_env()?.threads;
    if (!cfg.skip_slow || ctx.is_none()) && w.format == "f32" {
        let reference = SessionOptions {
            cpu_reference: true,
            threads: cpu_threads,
            ..Default::default()
        };
        let s = Session::cpu(&w.model, reference)?;
        push(
            record(
                w,
                "cpu-ref",
                "cpu",
                "e2e",
                time_it(cfg, || s.run(&feeds).map(|_| ()))?,
            ),
            &mut out,
        );
    }
    // The fast CPU kernels (the session's threads: `WGEDGE_THREADS`, else all cores), for
    // every format: quantised (int8, int4, pow2) Linear weights stay packed and run the packed
    // kernels (`cpu-q8gemv`, `cpu-q4gemv`, `cpu-qgemm`); other packed weights are decoded to
    // f32 at session build and run the f32 kernels (int8 x int8 computes in f32 on the CPU:
    // the int8 row already covers it).
    if w.format != "int8xint8" {
        let fast = SessionOptions {
            threads: cpu_threads,
            ..Default::default()
        };
        let s = Session::cpu(&w.model, fast)?;
        let label = format!("{}-{}", w.format, kernel_label(&s));
        if !matches!(w.format, "f32" | "fused" | "unfused") {
            // What keeping weights packed saves: the same model with every weight decoded
            // (the reference decodes them all; the stored parts are the model's, shared).
            let decoded = SessionOptions {
                cpu_reference: true,
                ..Default::default()
            };
            let all = Session::cpu(&w.model, decoded)?.weight_host_bytes();
            notes.push(format!(
                "{:<10} {label}: the CPU session holds {:.1} MB of weights ({:.1} MB with them decoded to f32 as well)",
                w.name,
                s.weight_host_bytes() as f64 / 1e6,
                all as f64 / 1e6
            ));
        }
        push(
            record(
                w,
                &label,
                "cpu",
                "e2e",
                time_it(cfg, || s.run(&feeds).map(|_| ()))?,
            ),
            &mut out,
        );
    }
    Ok(out)
}

/// Formats records as an aligned table.
pub fn table(records: &[Record]) -> String {
    let mut s = format!(
        "{:<10} {:<22} {:<8} {:<9} {:>11} {:>11} {:>5} {:>9} {:>7}\n",
        "workload", "kernel", "backend", "mode", "median ms", "min ms", "runs", "GFLOP/s", "GB/s"
    );
    for r in records {
        s.push_str(&format!(
            "{:<10} {:<22} {:<8} {:<9} {:>11.3} {:>11.3} {:>5} {:>9.3} {:>7}\n",
            r.workload,
            r.kernel,
            r.backend,
            r.mode,
            r.median_ms,
            r.min_ms,
            r.runs,
            r.gflops.unwrap_or(0.0),
            r.gbps.map(|g| format!("{g:.3}")).unwrap_or_default()
        ));
    }
    s
}

/// Speed-ups measured in this run, per workload and mode: the tuned GPU kernel and the best
/// storage-buffer-only kernel against the naive GPU kernel, and the tuned kernel against the CPU
/// reference; plus the run overhead (end to end minus resident) of the tuned kernel.
pub fn ratios(records: &[Record]) -> String {
    let mut s = String::new();
    let mut names: Vec<&str> = Vec::new();
    for r in records {
        if !names.contains(&r.workload.as_str()) {
            names.push(r.workload.as_str());
        }
    }
    for w in names {
        let gpu: Vec<&Record> = records
            .iter()
            .filter(|r| r.workload == w && r.backend != "cpu")
            .collect();
        let kernels: Vec<&str> = {
            let mut k: Vec<&str> = Vec::new();
            for r in &gpu {
                if !k.contains(&r.kernel.as_str()) {
                    k.push(r.kernel.as_str());
                }
            }
            k
        };
        let find = |kernel: &str, mode: &str| {
            gpu.iter()
                .find(|r| r.kernel == kernel && r.mode == mode)
                .copied()
        };
        let cpu = records
            .iter()
            .find(|r| r.workload == w && r.kernel == "cpu-ref");
        for mode in ["resident", "e2e"] {
            let naive = find("naive", mode);
            for k in kernels.iter().filter(|k| **k != "naive") {
                let Some(t) = find(k, mode) else { continue };
                let mut line = format!("{w:<10} {mode:<9} {k:<22}");
                if let Some(n) = naive {
                    line.push_str(&format!(
                        " {:>7.1}x vs naive GPU",
                        n.median_ms / t.median_ms
                    ));
                }
                if let Some(c) = cpu {
                    line.push_str(&format!(" {:>7.2}x vs cpu-ref", c.median_ms / t.median_ms));
                }
                // Packed weights against the fastest f32 kernel of the same workload.
                let best_f32 = (gpu.iter())
                    .filter(|r| r.mode == mode && r.kernel.starts_with("f32-"))
                    .map(|r| r.median_ms)
                    .min_by(f64::total_cmp);
                if let (false, Some(f)) = (k.starts_with("f32-"), best_f32) {
                    line.push_str(&format!(" {:>6.2}x vs best f32", f / t.median_ms));
                }
                s.push_str(&line);
                s.push('\n');
            }
        }
        if let Some(k) = kernels.first() {
            if let (Some(r), Some(e)) = (find(k, "resident"), find(k, "e2e")) {
                s.push_str(&format!(
                    "{w:<10} overhead  {k}: end to end minus resident {:.3} ms\n",
                    e.median_ms - r.median_ms
                ));
            }
        }
    }
    s
}
