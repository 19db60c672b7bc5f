//! The `wgedge` command: demo (default), info, run, bench.
//!
//! The environment is read here, not in the library: `WGEDGE_BACKEND` through
//! [`Backend::resolve_env`] and the session settings through [`SessionOptions::from_env`].
//! What `Backend::Auto` decided is printed here as one line on stderr.

use clap::{Parser, Subcommand};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use wgedge::gpu::device::AutoChoice;
use wgedge::{Backend, Error, GpuContext, Model, Session, SessionOptions, Tensor};

const DEFAULT_MODEL: &[u8] = include_bytes!("../../models/mnist-cnn.safetensors");
const DEFAULT_TEST_SET: &[u8] = include_bytes!("../../models/mnist-test.safetensors");

#[derive(Parser)]
#[command(
    name = "wgedge",
    version,
    about = "Run compressed neural networks on edge GPUs through WebGPU"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Classify the 1,000 held-out MNIST digits with the shipped CNN (the default command).
    Demo {
        /// auto | gpu | cpu | vulkan | metal | dx12 | gl
        #[arg(long, default_value = "auto")]
        backend: String,
    },
    /// Describe a model (nodes, parameters, planned memory) or, with --device, the adapter.
    Info {
        model: Option<PathBuf>,
        /// Show the adapter: backend, features, limits, tuned kernels.
        #[arg(long)]
        device: bool,
        #[arg(long, default_value = "auto")]
        backend: String,
    },
    /// Run a model on tensors from a safetensors file, keyed by the graph's input names.
    Run {
        model: PathBuf,
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        output: PathBuf,
        #[arg(long, default_value = "auto")]
        backend: String,
    },
    /// Benchmark kernels on this machine's GPU (and the CPU reference) and print a table.
    Bench {
        /// kernels | models
        #[arg(long, default_value = "kernels")]
        suite: String,
        /// Also write the records as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
        /// gpu (best adapter, software included) | vulkan | metal | dx12 | gl | cpu
        #[arg(long, default_value = "gpu")]
        backend: String,
        /// Skip the naive GPU kernels and the CPU reference, measure fewer runs.
        #[arg(long)]
        quick: bool,
        /// Only these workloads (comma-separated names, e.g. gemm,gemv).
        #[arg(long)]
        only: Option<String>,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wgedge: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> wgedge::Result<()> {
    match cli.cmd.unwrap_or(Cmd::Demo {
        backend: "auto".into(),
    }) {
        Cmd::Demo { backend } => demo(backend_arg(&backend)?),
        Cmd::Info {
            model,
            device,
            backend,
        } => info(model, device, backend_arg(&backend)?),
        Cmd::Run {
            model,
            input,
            output,
            backend,
        } => run_model(&model, &input, &output, backend_arg(&backend)?),
        Cmd::Bench {
            suite,
            json,
            backend,
            quick,
            only,
        } => bench(&suite, json, backend_arg(&backend)?, quick, only),
    }
}

/// `--backend`, with `auto` resolved against `WGEDGE_BACKEND`.
fn backend_arg(arg: &str) -> wgedge::Result<Backend> {
    arg.parse::<Backend>()?.resolve_env()
}

/// Opens the device for `backend` and prints what `Auto` decided (one line on stderr).
fn open_device(backend: Backend) -> wgedge::Result<Option<Arc<GpuContext>>> {
    let (ctx, choice) = pollster::block_on(GpuContext::open_with_choice(backend))?;
    match choice {
        Some(AutoChoice::SoftwareOnly { adapter, backend }) => eprintln!(
            "wgedge: only a software adapter ('{adapter}' on {backend}), which runs slower than \
             the CPU backend; set WGEDGE_BACKEND={} to use it anyway; using the CPU backend",
            backend.to_lowercase()
        ),
        Some(c) => eprintln!("wgedge: {c}"),
        None => {}
    }
    Ok(ctx.map(Arc::new))
}

/// A session for `model` on `backend` with the options from the environment.
fn session(model: &Model, backend: Backend) -> wgedge::Result<Session> {
    let opts = SessionOptions::from_env()?;
    match open_device(backend)? {
        Some(ctx) => Session::with_context(model, ctx, opts),
        None => Session::cpu(model, opts),
    }
}

fn demo(backend: Backend) -> wgedge::Result<()> {
    let model = Model::from_bytes(DEFAULT_MODEL)?;
    let (data, _) = wgedge::model::read_tensors(DEFAULT_TEST_SET)?;
    let images = data
        .get("images")
        .ok_or_else(|| wgedge::Error::MissingWeight("images".into()))?
        .to_f32();
    let labels = data
        .get("labels")
        .ok_or_else(|| wgedge::Error::MissingWeight("labels".into()))?
        .to_f32();
    let n = images.shape()[0];
    let pixels = images.f32s("images")?;
    let labels = labels.f32s("labels")?;
    let t0 = std::time::Instant::now();
    let session = session(&model, backend)?;
    let build_ms = t0.elapsed().as_secs_f64() * 1e3;
    println!(
        "wgedge demo: MNIST CNN ({} params, {} KiB of weights) on {}",
        model.graph.param_count(),
        model.weight_bytes() / 1024,
        session.device_name()
    );
    let mut correct = 0;
    let mut times = Vec::with_capacity(n);
    let mut first = String::new();
    for i in 0..n {
        let img = Tensor::new(
            &[1, 1, 28, 28],
            pixels[i * 784..(i + 1) * 784]
                .iter()
                .map(|v| v / 255.0)
                .collect(),
        )?;
        let t = std::time::Instant::now();
        let out = session.run(&[("image", &img)])?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        let probs = out[0].f32s("probs")?;
        let (pred, p) =
            probs
                .iter()
                .enumerate()
                .fold((0, f32::MIN), |b, (k, &v)| if v > b.1 { (k, v) } else { b });
        if pred == labels[i] as usize {
            correct += 1;
        }
        if i == 0 {
            first = format!(
                "first digit: label {}, predicted {pred} (p = {p:.3})",
                labels[i]
            );
        }
    }
    times.sort_by(f64::total_cmp);
    println!("{first}");
    println!(
        "held-out accuracy: {correct}/{n} = {:.2}%",
        100.0 * correct as f64 / n as f64
    );
    println!(
        "latency per image (batch 1, end to end): median {:.3} ms, min {:.3} ms; session build {build_ms:.1} ms",
        times[n / 2],
        times[0]
    );
    Ok(())
}

fn info(model: Option<PathBuf>, device: bool, backend: Backend) -> wgedge::Result<()> {
    if device {
        let backend = if backend == Backend::Auto {
            Backend::AnyGpu
        } else {
            backend
        };
        match open_device(backend)? {
            None => println!("device: cpu (reference backend)"),
            Some(ctx) => {
                let p = &ctx.profile;
                println!("adapter:  {}", p.adapter);
                println!(
                    "backend:  {}  kind: {:?}  driver: {}",
                    p.backend, p.kind, p.driver
                );
                println!(
                    "features: shader-f16 {}  subgroups {}  timestamp-query {}",
                    p.features.shader_f16, p.features.subgroups, p.features.timestamp_query
                );
                println!("limits:   {:#?}", p.limits);
                let k = pollster::block_on(wgedge::exec::autotune::choices(&ctx))?;
                for n in &k.notices {
                    eprintln!("wgedge: {n}");
                }
                println!(
                    "kernels:  {}",
                    serde_json::to_string(&k.choices).unwrap_or_default()
                );
                if let Some(path) = wgedge::exec::autotune::cache_path(&ctx) {
                    println!("cache:    {}", path.display());
                }
            }
        }
    }
    let Some(path) = model else {
        if !device {
            println!("usage: wgedge info MODEL | wgedge info --device");
        }
        return Ok(());
    };
    let model = Model::load(&path)?;
    let g = &model.graph;
    println!("model:    {}", path.display());
    println!(
        "inputs:   {}",
        g.inputs
            .iter()
            .map(|v| format!("{} {}{:?}", v.name, v.dtype, v.shape))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("outputs:  {}", g.outputs.join(", "));
    println!(
        "nodes:    {}   params: {}   weight bytes: {}",
        g.nodes.len(),
        g.param_count(),
        model.weight_bytes()
    );
    if !g.formats.is_empty() {
        println!("formats:");
        for (name, f) in &g.formats {
            println!(
                "  {:<28} {:<16} {} bytes stored",
                name,
                f.label(),
                f.stored_bytes(name, &model.weights)
            );
        }
    }
    let session = session(&model, backend)?;
    let plan = session.plan();
    println!("device:   {}", session.device_name());
    for n in session.notices() {
        eprintln!("wgedge: {n}");
    }
    let cpu = plan.cpu_nodes();
    if session.is_gpu() && !cpu.is_empty() {
        println!(
            "CPU FALLBACK: {} of {} nodes run on the CPU inside the GPU plan: {}",
            cpu.len(),
            plan.nodes.len(),
            cpu.join(", ")
        );
    }
    println!(
        "plan:     {} nodes after folding/fusion ({} removed), {:.1} MFLOP per run",
        plan.nodes.len(),
        session.rewrites,
        plan.flops() as f64 / 1e6
    );
    println!(
        "memory:   {} activation bytes planned in one arena ({}-byte aligned offsets; lower bound {}, ratio {:.3})",
        plan.memory.peak_bytes,
        plan.memory.alignment,
        plan.memory.lower_bound_bytes,
        plan.memory.peak_bytes as f64 / plan.memory.lower_bound_bytes.max(1) as f64
    );
    print!("{}", plan.describe());
    if session.is_gpu() && session.node_times().is_ok() {
        let feeds: Vec<(String, Tensor)> = session
            .input_specs()
            .iter()
            .map(|(n, s)| (n.clone(), Tensor::random(s, 1)))
            .collect();
        let refs: Vec<(&str, &Tensor)> = feeds.iter().map(|(n, t)| (n.as_str(), t)).collect();
        session.run(&refs)?;
        let times = session.node_times()?;
        println!("GPU time per node (one run, random inputs, timestamp queries):");
        for (n, t) in plan.nodes.iter().zip(&times) {
            println!("  {:<28} {:>9.3} ms", n.name, t);
        }
        println!("  {:<28} {:>9.3} ms", "total", times.iter().sum::<f64>());
    }
    Ok(())
}

fn run_model(model: &Path, input: &Path, output: &Path, backend: Backend) -> wgedge::Result<()> {
    let target = output_target(output, &[("model", model), ("input", input)])?;
    let model = Model::load(model)?;
    let tensors = wgedge::model::load_tensors(input)?;
    let session = session(&model, backend)?;
    let feeds: Vec<(&str, &Tensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t = std::time::Instant::now();
    let outs = session.run(&feeds)?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    let named: BTreeMap<String, Tensor> =
        session.output_names().iter().cloned().zip(outs).collect();
    write_atomically(&target, &wgedge::model::write_tensors(&named, None)?)?;
    println!(
        "ran on {} in {ms:.3} ms; wrote {} to {}",
        session.device_name(),
        named.keys().cloned().collect::<Vec<_>>().join(", "),
        output.display()
    );
    Ok(())
}

fn io_error(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The file a write to `output` would replace, checked against the files the command reads:
/// an error naming both paths if it is one of them (same path once canonical, or the same file
/// through a symbolic or hard link). A symbolic link is followed (its target is replaced, the
/// link kept); a file that does not exist yet is its canonical directory joined with its name.
fn output_target(output: &Path, sources: &[(&str, &Path)]) -> wgedge::Result<PathBuf> {
    let target = match std::fs::canonicalize(output) {
        Ok(p) => p,
        Err(_) => {
            let name = output.file_name().ok_or_else(|| {
                Error::Input(format!(
                    "output '{}' does not name a file",
                    output.display()
                ))
            })?;
            let dir = match output.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            std::fs::canonicalize(dir)
                .map_err(|e| io_error(dir, e))?
                .join(name)
        }
    };
    if target.is_dir() {
        return Err(Error::Input(format!(
            "output '{}' is a directory",
            output.display()
        )));
    }
    for (what, src) in sources {
        // A source that cannot be resolved does not exist: reading it fails with its own error.
        let Ok(canon) = std::fs::canonicalize(src) else {
            continue;
        };
        if same_file(&target, &canon) {
            return Err(Error::Input(format!(
                "refusing to write the output '{}' over the {what} '{}': they are the same file \
                 ({}); choose another --output",
                output.display(),
                src.display(),
                canon.display()
            )));
        }
    }
    Ok(target)
}

/// Same canonical path, or (on Unix) the same device and inode: a hard link.
fn same_file(a: &Path, b: &Path) -> bool {
    if a == b {
        return true;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(x), Ok(y)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            return x.dev() == y.dev() && x.ino() == y.ino();
        }
    }
    false
}

/// Writes `bytes` to a new temporary file beside `target` and renames it over `target`, so that
/// `target` is either untouched or complete, never half-written. The temporary file is removed
/// if any step fails; an existing `target`'s permissions are kept.
fn write_atomically(target: &Path, bytes: &[u8]) -> wgedge::Result<()> {
    let dir = target.parent().unwrap_or(Path::new("."));
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tmp = dir.join(format!(
        ".{name}.wgedge-{}-{nanos:08x}.tmp",
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        if let Ok(m) = std::fs::metadata(target) {
            if m.is_file() {
                f.set_permissions(m.permissions())?;
            }
        }
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, target)
    };
    write().map_err(|e| {
        std::fs::remove_file(&tmp).ok();
        io_error(target, e)
    })
}

fn bench(
    suite: &str,
    json: Option<PathBuf>,
    backend: Backend,
    quick: bool,
    only: Option<String>,
) -> wgedge::Result<()> {
    use wgedge::bench::*;
    let ctx = open_device(backend)?;
    let mut cfg = BenchConfig::default();
    if quick {
        cfg = BenchConfig {
            max_runs: 5,
            budget: std::time::Duration::from_millis(500),
            min_runs: 2,
            skip_slow: true,
        };
    }
    match &ctx {
        Some(c) => println!(
            "device: {} ({}, {:?}, driver {})",
            c.profile.adapter, c.profile.backend, c.profile.kind, c.profile.driver
        ),
        None => println!("device: none (CPU reference only)"),
    }
    let workloads = match suite {
        "kernels" => kernel_workloads()?,
        "models" => vec![model_workload(
            "mnist-cnn",
            Model::from_bytes(DEFAULT_MODEL)?,
        )?],
        other => {
            return Err(wgedge::Error::Input(format!(
                "unknown suite '{other}' (kernels | models)"
            )))
        }
    };
    let keep = |name: &str| {
        only.as_ref()
            .is_none_or(|o| o.split(',').any(|x| x == name))
    };
    let mut records = Vec::new();
    let mut notes = Vec::new();
    for w in workloads.iter().filter(|w| keep(w.name)) {
        let mut log = |r: &Record| {
            eprintln!(
                "  {} {} {} {:.3} ms",
                r.workload, r.kernel, r.mode, r.median_ms
            )
        };
        records.extend(bench_workload(ctx.as_ref(), w, &cfg, &mut log, &mut notes)?);
    }
    print!("{}", table(&records));
    println!();
    print!("{}", ratios(&records));
    if !notes.is_empty() {
        println!();
        notes.iter().for_each(|n| println!("{n}"));
    }
    if let Some(path) = json {
        let s = serde_json::to_string_pretty(&records)
            .map_err(|e| wgedge::Error::Input(e.to_string()))?;
        write_atomically(&output_target(&path, &[])?, s.as_bytes())?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
