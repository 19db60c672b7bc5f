//! `Backend::Auto` by measurement (native builds): when a GPU adapter (hardware or software)
//! opens, both a GPU and a CPU session are built, the model is timed on each (one warm-up run,
//! then a few runs, median), the faster is kept and the verdict is cached per (model, options,
//! adapter, driver) beside the kernel cache, so later sessions build only the chosen one. The
//! session's first notice says what was measured and chosen. A software adapter is not ruled
//! out by its name any more: it loses the measurement (or wins it, on a device where it would).

use crate::error::Result;
use crate::gpu::{Backend, GpuContext};
use crate::model::Model;
use crate::session::{Session, SessionOptions};
use crate::tensor::{DType, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one measurement found (cached by model key).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The GPU was faster.
    pub gpu: bool,
    /// Median ms per run on each backend.
    pub cpu_ms: f64,
    pub gpu_ms: f64,
}

/// Runs after the warm-up at most this many, and stops early past [`BUDGET`].
const RUNS: usize = 5;
const BUDGET: Duration = Duration::from_millis(1500);
/// A GPU this many times slower than the CPU with untuned kernels is not tuned to find out.
const UNTUNED_MARGIN: f64 = 4.0;

/// A session on the faster of the GPU (any adapter) and the CPU backend for `model`.
pub async fn session(model: &Model, opts: SessionOptions) -> Result<Session> {
    let ctx = match GpuContext::open(Backend::AnyGpu).await {
        Ok(Some(c)) => Arc::new(c),
        _ => {
            let mut s = Session::cpu(model, opts)?;
            s.add_notice("auto: no GPU adapter found; using the CPU backend".into());
            return Ok(s);
        }
    };
    let adapter = format!("'{}' ({})", ctx.info.name, ctx.profile.backend);
    let key = model_key(model, &opts);
    let path = verdict_path(&ctx);
    let mut cache: BTreeMap<String, Verdict> = (path.as_ref())
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    if let Some(v) = cache.get(&key).copied() {
        let mut s = if v.gpu {
            Session::with_context_async(model, ctx, opts).await?
        } else {
            Session::cpu(model, opts)?
        };
        s.add_notice(describe(&v, &adapter, "cached measurement"));
        return Ok(s);
    }
    let mut cpu = Session::cpu(model, opts.clone())?;
    let inputs = sample_inputs(model);
    let cpu_ms = time(&cpu, &inputs).await?;
    // Tuning the GPU kernels on an adapter for the first time takes a minute on a slow one:
    // measure with the default kernels first, and tune only when the GPU is within
    // [`UNTUNED_MARGIN`] of the CPU (tuning gains a few times over the defaults, not more).
    let untuned_first = opts.autotune
        && !opts.naive
        && opts.kernels.is_none()
        && !crate::exec::autotune::cache_path(&ctx).is_some_and(|p| p.exists());
    let mut how = "measured";
    if untuned_first {
        let quick = SessionOptions {
            autotune: false,
            ..opts.clone()
        };
        match gpu_time(model, &ctx, quick, &inputs).await {
            Ok((_, ms)) if ms > UNTUNED_MARGIN * cpu_ms => {
                let v = Verdict {
                    gpu: false,
                    cpu_ms,
                    gpu_ms: ms,
                };
                if let Some(p) = path {
                    cache.insert(key, v);
                    store(&p, &cache);
                }
                cpu.add_notice(describe(
                    &v,
                    &adapter,
                    "measured (GPU with untuned kernels)",
                ));
                return Ok(cpu);
            }
            Ok(_) => how = "measured (GPU kernels tuned first)",
            Err(e) => {
                cpu.add_notice(format!(
                    "auto: no GPU run on {adapter} ({e}); using the CPU backend"
                ));
                return Ok(cpu);
            }
        }
    }
    let (gpu, gpu_ms) = match gpu_time(model, &ctx, opts, &inputs).await {
        Ok(g) => g,
        Err(e) => {
            cpu.add_notice(format!(
                "auto: no GPU run on {adapter} ({e}); using the CPU backend"
            ));
            return Ok(cpu);
        }
    };
    let v = Verdict {
        gpu: gpu_ms < cpu_ms,
        cpu_ms,
        gpu_ms,
    };
    if let Some(p) = path {
        cache.insert(key, v);
        store(&p, &cache);
    }
    let mut s = if v.gpu { gpu } else { cpu };
    s.add_notice(describe(&v, &adapter, how));
    Ok(s)
}

/// A GPU session and its median ms per run.
async fn gpu_time(
    model: &Model,
    ctx: &Arc<GpuContext>,
    opts: SessionOptions,
    inputs: &[(String, Tensor)],
) -> Result<(Session, f64)> {
    let s = Session::with_context_async(model, ctx.clone(), opts).await?;
    let ms = time(&s, inputs).await?;
    Ok((s, ms))
}

fn describe(v: &Verdict, adapter: &str, how: &str) -> String {
    let (fast, slow) = if v.gpu {
        (v.gpu_ms, v.cpu_ms)
    } else {
        (v.cpu_ms, v.gpu_ms)
    };
    format!(
        "auto: {how} {:.3} ms per run on the CPU backend, {:.3} ms on {adapter}; using the {} ({:.1}x faster)",
        v.cpu_ms,
        v.gpu_ms,
        if v.gpu { "GPU" } else { "CPU backend" },
        slow / fast.max(1e-9)
    )
}

/// Random f32 inputs (zeros for other dtypes) of the model's input shapes.
fn sample_inputs(model: &Model) -> Vec<(String, Tensor)> {
    (model.graph.inputs.iter().enumerate())
        .map(|(i, v)| {
            let t = if v.dtype == DType::F32 {
                Tensor::random(&v.shape, 1 + i as u64)
            } else {
                Tensor::zeros(&v.shape).cast(v.dtype)
            };
            (v.name.clone(), t)
        })
        .collect()
}

/// Median ms of a few end-to-end runs after one warm-up run.
async fn time(s: &Session, inputs: &[(String, Tensor)]) -> Result<f64> {
    let feeds: Vec<(&str, &Tensor)> = inputs.iter().map(|(n, t)| (n.as_str(), t)).collect();
    s.run_async(&feeds).await?;
    let start = Instant::now();
    let mut ms = Vec::new();
    while ms.len() < RUNS && (ms.is_empty() || start.elapsed() < BUDGET) {
        let t = Instant::now();
        s.run_async(&feeds).await?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    Ok(ms[ms.len() / 2])
}

/// The model's graph and weights, and the options that change what runs.
fn model_key(model: &Model, o: &SessionOptions) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(&model.graph)
        .unwrap_or_default()
        .hash(&mut h);
    for (name, t) in model.weights.iter() {
        name.hash(&mut h);
        t.shape().hash(&mut h);
        t.bytes().hash(&mut h);
    }
    format!(
        "{:016x} threads={:?} int8_act={} f16={} naive={} optimize={} cpu_reference={} cpu_sparse={:?} kernels={}",
        h.finish(),
        o.threads,
        o.int8_activations,
        o.f16_compute,
        o.naive,
        o.optimize,
        o.cpu_reference,
        o.cpu_sparse_max_pct,
        o.kernels
            .as_ref()
            .map(|k| serde_json::to_string(k).unwrap_or_default())
            .unwrap_or_default()
    )
}

/// `auto-<adapter>-<driver>.json` in the kernel cache's directory.
fn verdict_path(ctx: &GpuContext) -> Option<std::path::PathBuf> {
    let kernels = crate::exec::autotune::cache_path(ctx)?;
    let p = &ctx.profile;
    let id: String = format!("{}-{}-{}", p.adapter, p.backend, p.driver)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Some(kernels.parent()?.join(format!("auto-{id}.json")))
}

/// Best effort (a read-only cache dir only costs a measurement next time): written to a
/// temporary file and renamed, so a reader never sees half a file.
fn store(p: &std::path::Path, cache: &BTreeMap<String, Verdict>) {
    if let Some(dir) = p.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let tmp = p.with_extension(format!("tmp{}", std::process::id()));
    let text = serde_json::to_string_pretty(cache).unwrap_or_default();
    if std::fs::write(&tmp, text).is_ok() {
        let _ = std::fs::rename(&tmp, p);
    }
}
