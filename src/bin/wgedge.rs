//! The `wgedge` command: demo (default), info, run, quantize, prune, bench.
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
use wgedge::compress::{prune, prune_with_progress, Pattern, PruneConfig, PruneReport, Store};
use wgedge::compress::{quantize, quantize_with_progress, Clip, QuantConfig, WeightKind};
use wgedge::compress::{remove_layers, Removal};
use wgedge::format::SparseValues;
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
    /// Import an ONNX model into a wgedge model file (inputs and outputs keep their ONNX
    /// names; shape subgraphs fold for the given input shapes).
    Import {
        /// The .onnx file.
        input: PathBuf,
        /// Where to write the wgedge model (written atomically, never over the input).
        #[arg(short, long)]
        output: PathBuf,
        /// Concrete shape of an input, NAME=d0,d1,... (repeat per input); needed for symbolic
        /// dims other than a leading batch dim (which defaults to 1). Symbolic dims stay
        /// symbolic (the model runs at other sizes) unless `--fixed` is given.
        #[arg(long = "shape", value_name = "NAME=DIMS")]
        shapes: Vec<String>,
        /// Fix the model to the imported shape even where the ONNX file declares symbolic dims.
        #[arg(long)]
        fixed: bool,
    },
    /// Quantize a model's matmul and conv weights (int8, int4, f16, pow2) and write the
    /// compressed model; prints what each layer cost. `--accuracy-table` instead measures the
    /// shipped MNIST CNN in every format (the README's table).
    Quantize {
        /// The model to quantize.
        #[arg(required_unless_present = "accuracy_table")]
        input: Option<PathBuf>,
        /// Where to write the quantized model (written atomically, never over the input).
        #[arg(short, long, required_unless_present = "accuracy_table")]
        output: Option<PathBuf>,
        /// int8 | int4 | f16 | pow2
        #[arg(long, required_unless_present = "accuracy_table")]
        weights: Option<String>,
        /// Values per scale along K; 0 = per output channel (default: 32 for int4, else 0).
        #[arg(long)]
        group: Option<usize>,
        /// Unsigned codes with zero points (int8, int4, pow2).
        #[arg(long)]
        asym: bool,
        /// Outlier clipping: none | mse | pct:P (percentile of |w| per group) | abs:A
        #[arg(long, default_value = "none")]
        clip: String,
        /// Scale dtype: f32 | f16 (default: f16 for int4, else f32).
        #[arg(long)]
        scales: Option<String>,
        /// Weights or nodes to leave dense (comma-separated names).
        #[arg(long, value_delimiter = ',')]
        skip: Vec<String>,
        /// Inputs (safetensors keyed by input name, or MNIST-style `images` [+ `labels`]) to
        /// compare the f32 and quantized models' outputs on.
        #[arg(long)]
        calibrate: Option<PathBuf>,
        /// Backend of the --calibrate runs (default cpu) or of the GPU column of
        /// --accuracy-table (default gpu).
        #[arg(long)]
        backend: Option<String>,
        /// Print the README's accuracy table: the shipped MNIST CNN in every format on its
        /// 1,000 held-out digits, on the CPU and GPU backends.
        #[arg(long, conflicts_with_all = ["input", "output", "weights", "calibrate"])]
        accuracy_table: bool,
    },
    /// Prune a model's matmul and conv weights (unstructured, N:M, blocks or whole channels)
    /// and write the pruned model; prints each layer's sparsity and bytes. `--accuracy-table`
    /// instead measures the shipped MNIST CNN pruned several ways (the README's table).
    Prune {
        /// The model to prune.
        #[arg(required_unless_present = "accuracy_table")]
        input: Option<PathBuf>,
        /// Where to write the pruned model (written atomically, never over the input).
        #[arg(short, long, required_unless_present = "accuracy_table")]
        output: Option<PathBuf>,
        /// Fraction to remove, in [0, 1): of the weights, blocks or output channels (N:M
        /// patterns fix it at 1 - N/M).
        #[arg(long)]
        sparsity: Option<f32>,
        /// unstructured | N:M (2:4, 4:8) | block:RxC (block:1x4, 4x1, 4x4, 8x1) | channel
        #[arg(long, default_value = "unstructured")]
        pattern: String,
        /// layer | global (one threshold over all selected layers; unstructured and block).
        #[arg(long, default_value = "layer")]
        scope: String,
        /// Only these weights or nodes (comma-separated names).
        #[arg(long, value_delimiter = ',')]
        layers: Vec<String>,
        /// dense (zeros in place) | sparse (csr / N:M / bsr formats: a smaller file).
        #[arg(long, default_value = "dense")]
        store: String,
        /// Value type of --store sparse: f32 (exact) | f16 | int8 (one f32 scale per row).
        #[arg(long, default_value = "f32")]
        values: String,
        /// How blocks and channels are ranked: l2 | l1.
        #[arg(long, default_value = "l2")]
        norm: String,
        /// Inputs (safetensors keyed by input name, or MNIST-style `images` [+ `labels`]) to
        /// compare the original and pruned models' outputs on.
        #[arg(long)]
        calibrate: Option<PathBuf>,
        /// Backend of the --calibrate runs.
        #[arg(long, default_value = "cpu")]
        backend: String,
        /// Remove these nodes instead of pruning weights (comma-separated node or value names):
        /// each is replaced by its input of the same shape (a residual add by its skip input),
        /// and what only it fed goes with it.
        #[arg(long, value_delimiter = ',', conflicts_with = "remove_blocks")]
        remove_layers: Vec<String>,
        /// Remove the K residual blocks of lowest importance (||branch|| / ||skip|| on the
        /// --calibrate inputs' first sample, else on seeded random inputs).
        #[arg(long)]
        remove_blocks: Option<usize>,
        /// Print the README's table: the shipped MNIST CNN pruned several ways, its stored
        /// bytes and its accuracy on the 1,000 held-out digits on the CPU backend.
        #[arg(long, conflicts_with_all = ["input", "output", "sparsity", "calibrate", "layers"])]
        accuracy_table: bool,
    },
    /// Benchmark kernels on this machine's GPU and CPU (fast and reference) and print a table.
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
        Cmd::Import {
            input,
            output,
            shapes,
            fixed,
        } => import_cmd(&input, &output, &shapes, fixed),
        Cmd::Quantize {
            accuracy_table: true,
            backend,
            ..
        } => accuracy_table(backend_arg(backend.as_deref().unwrap_or("gpu"))?),
        Cmd::Quantize {
            input,
            output,
            weights,
            group,
            asym,
            clip,
            scales,
            skip,
            calibrate,
            backend,
            accuracy_table: false,
        } => {
            // clap enforces these three unless --accuracy-table is given.
            let missing = |what: &str| Error::Input(format!("quantize needs {what}"));
            let input = input.ok_or_else(|| missing("an input model"))?;
            let output = output.ok_or_else(|| missing("-o OUTPUT"))?;
            let weights = weights.ok_or_else(|| missing("--weights"))?;
            let mut cfg = QuantConfig::new(weights.parse()?);
            cfg.group = group.unwrap_or(cfg.group);
            cfg.asym = asym;
            cfg.clip = clip.parse()?;
            cfg.skip = skip.into_iter().filter(|s| !s.is_empty()).collect();
            cfg.scale_f16 = match scales.as_deref() {
                None => cfg.scale_f16,
                Some("f16") => true,
                Some("f32") => false,
                Some(other) => {
                    return Err(Error::Input(format!(
                        "unknown scale dtype '{other}' (f32 | f16)"
                    )))
                }
            };
            let backend = backend_arg(backend.as_deref().unwrap_or("cpu"))?;
            quantize_cmd(&input, &output, &cfg, calibrate.as_deref(), backend)
        }
        Cmd::Prune {
            accuracy_table: true,
            ..
        } => prune_accuracy_table(),
        Cmd::Prune {
            input,
            output,
            sparsity,
            pattern,
            scope,
            layers,
            store,
            values,
            norm,
            calibrate,
            backend,
            remove_layers,
            remove_blocks,
            accuracy_table: false,
        } => {
            // clap enforces these two unless --accuracy-table is given.
            let missing = |what: &str| Error::Input(format!("prune needs {what}"));
            let input = input.ok_or_else(|| missing("an input model"))?;
            let output = output.ok_or_else(|| missing("-o OUTPUT"))?;
            let names: Vec<String> = remove_layers
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect();
            let removal = match (names.is_empty(), remove_blocks) {
                (false, _) => Some(Removal::Named(names)),
                (true, Some(k)) => Some(Removal::LowestImportance(k)),
                (true, None) => None,
            };
            if let Some(removal) = removal {
                if sparsity.is_some() || pattern != "unstructured" {
                    return Err(Error::Input(
                        "layer removal and weight pruning are separate runs: drop --sparsity / \
                         --pattern, or prune the result in a second run"
                            .into(),
                    ));
                }
                let backend = backend_arg(&backend)?;
                return remove_cmd(&input, &output, &removal, calibrate.as_deref(), backend);
            }
            let pattern: Pattern = pattern.parse()?;
            let sparsity = match (pattern, sparsity) {
                (Pattern::NM { n, m }, s) => {
                    let implied = 1.0 - n as f32 / m as f32;
                    if let Some(s) = s.filter(|s| (s - implied).abs() > 1e-6) {
                        return Err(Error::Input(format!(
                            "--pattern {pattern} removes {implied} of each group of {m}; it \
                             cannot reach --sparsity {s} (leave --sparsity out)"
                        )));
                    }
                    implied
                }
                (_, Some(s)) => s,
                (_, None) => {
                    return Err(missing(&format!(
                        "--sparsity (the fraction to remove, in [0, 1)) for {pattern} pruning"
                    )))
                }
            };
            let cfg = PruneConfig {
                scope: scope.parse()?,
                norm: norm.parse()?,
                layers: layers.into_iter().filter(|s| !s.is_empty()).collect(),
                store: store.parse()?,
                values: match values.trim().to_ascii_lowercase().as_str() {
                    "f32" => SparseValues::F32,
                    "f16" => SparseValues::F16,
                    "int8" | "i8" => SparseValues::I8,
                    v => {
                        return Err(Error::Input(format!(
                            "unknown --values '{v}' (expected f32 | f16 | int8)"
                        )))
                    }
                },
                ..PruneConfig::new(pattern, sparsity)
            };
            let backend = backend_arg(&backend)?;
            prune_cmd(&input, &output, &cfg, calibrate.as_deref(), backend)
        }
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

/// A session for `model` on `backend` with the options from the environment. `Auto` measures
/// the model on the GPU and the CPU backend (or reads the cached verdict) and prints that line.
fn session(model: &Model, backend: Backend) -> wgedge::Result<Session> {
    let opts = SessionOptions::from_env()?;
    if backend == Backend::Auto {
        let s = Session::with_options(model, Backend::Auto, opts)?;
        if let Some(n) = s.notices().first().filter(|n| n.starts_with("auto:")) {
            eprintln!("wgedge: {n}");
        }
        return Ok(s);
    }
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
            None => println!("device: cpu"),
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
            let numel = g
                .weights
                .iter()
                .find(|w| &w.name == name)
                .map_or(0, |w| w.shape.iter().product::<usize>());
            println!(
                "  {:<28} {:<16} {:>10} bytes stored ({} as f32)",
                name,
                f.label(),
                f.stored_bytes(name, &model.weights),
                numel * 4
            );
        }
        // Packed weights count as the f32 they decode to; dense ones as they are stored.
        let f32_equivalent: usize = g
            .weights
            .iter()
            .map(|w| match g.format_of(&w.name) {
                f if f.is_dense() => model.weights.get(&w.name).map_or(0, |t| t.bytes().len()),
                _ => w.shape.iter().product::<usize>() * 4,
            })
            .sum();
        println!(
            "stored weight bytes: {} (as dense f32: {}, {:.2}x smaller)",
            model.weight_bytes(),
            f32_equivalent,
            f32_equivalent as f64 / model.weight_bytes().max(1) as f64
        );
    }
    let session = session(&model, backend)?;
    let plan = session.plan();
    println!("device:   {}", session.device_name());
    // The `auto:` line was printed when the session was built.
    for n in session.notices().iter().filter(|n| !n.starts_with("auto:")) {
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
    if session.is_gpu() {
        // Packed weights are held as stored (plus row padding); decoded or dense ones as f32.
        println!(
            "weights:  {} bytes on the device (stored in the model: {} bytes)",
            session.weight_device_bytes(),
            model.weight_bytes()
        );
    }
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

/// Loads `input`, rewrites it with `work` (a compression pass, fed a progress callback drawn as
/// a bar labelled `label` on a terminal) and writes the result to `output` atomically. The
/// output is checked against the input and `calibrate` before any work, so a bad `-o` costs
/// nothing and the input is never touched. Returns the original, the rewritten model, the
/// pass's report and the bytes written.
fn rewrite_model<R>(
    input: &Path,
    output: &Path,
    calibrate: Option<&Path>,
    label: &str,
    work: impl FnOnce(&Model, &mut dyn FnMut(usize, usize, &str)) -> wgedge::Result<(Model, R)>,
) -> wgedge::Result<(Model, Model, R, Vec<u8>)> {
    let mut sources = vec![("input model", input)];
    sources.extend(calibrate.map(|c| ("calibration data", c)));
    let target = output_target(output, &sources)?;
    let model = Model::load(input)?;
    let bar = labelled_progress_bar(label);
    let mut tick = |done: usize, total: usize, layer: &str| {
        if let Some(bar) = &bar {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
            bar.set_message(layer.to_string());
        }
    };
    let result = work(&model, &mut tick);
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let (rewritten, report) = result?;
    let bytes = rewritten.to_bytes()?;
    write_atomically(&target, &bytes)?;
    Ok((model, rewritten, report, bytes))
}

/// Parses `--shape NAME=d0,d1,...` arguments.
fn parse_shapes(args: &[String]) -> wgedge::Result<BTreeMap<String, Vec<usize>>> {
    let mut m = BTreeMap::new();
    for a in args {
        let bad = || {
            Error::Input(format!(
                "--shape '{a}': expected NAME=d0,d1,... with dims >= 1"
            ))
        };
        let (name, dims) = a.rsplit_once('=').ok_or_else(bad)?;
        let dims: Vec<usize> = dims
            .split(',')
            .map(|d| d.trim().parse::<usize>().ok().filter(|&d| d > 0))
            .collect::<Option<_>>()
            .ok_or_else(bad)?;
        if name.is_empty() || m.insert(name.to_string(), dims).is_some() {
            return Err(Error::Input(format!(
                "--shape '{a}': empty or repeated input name"
            )));
        }
    }
    Ok(m)
}

/// `wgedge import`: ONNX -> wgedge model file, with a summary of what import did.
fn import_cmd(input: &Path, output: &Path, shapes: &[String], fixed: bool) -> wgedge::Result<()> {
    let target = output_target(output, &[("input model", input)])?;
    let options = wgedge::onnx::ImportOptions {
        shapes: parse_shapes(shapes)?,
        symbolic: !fixed,
        ..Default::default()
    };
    let bytes = std::fs::read(input).map_err(|e| io_error(input, e))?;
    let bar = labelled_progress_bar("importing");
    let result = wgedge::onnx::import_with_progress(&bytes, &options, &mut |done, total| {
        if let Some(bar) = &bar {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        }
    });
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let (model, report) = result?;
    let out = model.to_bytes()?;
    write_atomically(&target, &out)?;
    println!(
        "imported {} (ONNX opset {}, {} nodes) -> {}",
        input.display(),
        report.opset,
        report.onnx_nodes,
        output.display()
    );
    for i in &report.inputs {
        let declared: Vec<String> = i
            .declared
            .iter()
            .map(|d| match d {
                wgedge::onnx::OnnxDim::Fixed(v) => v.to_string(),
                wgedge::onnx::OnnxDim::Symbolic(s) => s.clone(),
                wgedge::onnx::OnnxDim::Unknown => "?".into(),
            })
            .collect();
        let kept = match report.dims.get(&i.name) {
            Some(d) => {
                let d: Vec<&str> = d.iter().map(|s| s.as_deref().unwrap_or("-")).collect();
                format!("; runs at any [{}]", d.join(", "))
            }
            None => String::new(),
        };
        println!(
            "  input  {} {}{:?} (declared [{}]{}{kept})",
            i.name,
            i.dtype,
            i.shape,
            declared.join(", "),
            if i.defaulted.is_empty() {
                ""
            } else {
                "; symbolic batch set to 1"
            }
        );
    }
    if let Some(why) = &report.fixed {
        println!("  fixed to the imported shape: {why}");
    }
    let types = model.graph.check_types()?.types;
    for o in &report.outputs {
        match types.get(o) {
            Some(t) => println!("  output {o} {t}"),
            None => println!("  output {o}"),
        }
    }
    let rewrites: Vec<String> = report
        .rewrites
        .iter()
        .map(|(k, v)| format!("{k} x{v}"))
        .collect();
    println!(
        "  {} wgedge nodes, {} weights ({} parameters); {} ONNX nodes folded at import, {} dropped{}",
        model.graph.nodes.len(),
        model.graph.weights.len(),
        model.graph.param_count(),
        report.folded,
        report.dropped,
        if rewrites.is_empty() { String::new() } else { format!("; rewrites: {}", rewrites.join(", ")) }
    );
    println!("wrote {} ({} bytes)", output.display(), out.len());
    Ok(())
}

/// `wgedge quantize`: quantizes `input` as `cfg` says, writes it to `output` atomically (never
/// over the input), prints the per-layer report and, with `calibrate`, how much the outputs
/// moved on those inputs.
fn quantize_cmd(
    input: &Path,
    output: &Path,
    cfg: &QuantConfig,
    calibrate: Option<&Path>,
    backend: Backend,
) -> wgedge::Result<()> {
    let (model, quantized, report, bytes) =
        rewrite_model(input, output, calibrate, "quantizing", |m, tick| {
            quantize_with_progress(m, cfg, tick)
        })?;
    println!(
        "quantized {} -> {} ({}{}, clip {})",
        input.display(),
        output.display(),
        cfg.weights,
        match (cfg.weights, cfg.group) {
            (WeightKind::F16, _) => String::new(),
            (_, 0) => " per output channel".into(),
            (_, g) => format!(", groups of {g}"),
        },
        cfg.clip
    );
    print!("{report}");
    println!("wrote {} ({} bytes)", output.display(), bytes.len());
    if let Some(data) = calibrate {
        compare_outputs(&model, &quantized, data, backend)?;
    }
    Ok(())
}

/// `wgedge prune`: prunes `input` as `cfg` says, writes it to `output` atomically (never over
/// the input), prints the per-layer report and, with `calibrate`, how much the outputs moved
/// on those inputs.
fn prune_cmd(
    input: &Path,
    output: &Path,
    cfg: &PruneConfig,
    calibrate: Option<&Path>,
    backend: Backend,
) -> wgedge::Result<()> {
    let (model, pruned, report, bytes) =
        rewrite_model(input, output, calibrate, "pruning", |m, tick| {
            prune_with_progress(m, cfg, tick)
        })?;
    println!(
        "pruned {} -> {} ({})",
        input.display(),
        output.display(),
        describe_prune(cfg)
    );
    print!("{report}");
    println!("wrote {} ({} bytes)", output.display(), bytes.len());
    if let Some(data) = calibrate {
        compare_models(&model, &pruned, data, backend, ["original", "pruned"])?;
    }
    Ok(())
}

/// `wgedge prune --remove-layers/--remove-blocks`: removes layers, writes the model atomically
/// (never over the input), prints what went and, with `calibrate`, how much the outputs moved.
fn remove_cmd(
    input: &Path,
    output: &Path,
    removal: &Removal,
    calibrate: Option<&Path>,
    backend: Backend,
) -> wgedge::Result<()> {
    let sample = match calibrate {
        Some(path) => {
            let model = Model::load(input)?;
            let samples = split_samples(&model.graph, &wgedge::model::load_tensors(path)?)?;
            samples
                .feeds
                .into_iter()
                .next()
                .map(|f| f.into_iter().collect::<BTreeMap<_, _>>())
        }
        None => None,
    };
    let (model, smaller, report, bytes) =
        rewrite_model(input, output, calibrate, "removing layers", |m, _| {
            remove_layers(m, removal, sample.as_ref())
        })?;
    println!("removed layers {} -> {}", input.display(), output.display());
    print!("{report}");
    println!("wrote {} ({} bytes)", output.display(), bytes.len());
    if let Some(data) = calibrate {
        compare_models(&model, &smaller, data, backend, ["original", "smaller"])?;
    }
    Ok(())
}

/// "unstructured, 90% per layer, stored sparse" and the like.
fn describe_prune(cfg: &PruneConfig) -> String {
    let pct = 100.0 * cfg.target();
    match cfg.pattern {
        Pattern::NM { .. } => format!(
            "{}, {pct:.0}% of each group, stored {}",
            cfg.pattern, cfg.store
        ),
        Pattern::Channel => format!(
            "{pct:.0}% of each layer's output channels by {} norm, removed",
            cfg.norm
        ),
        Pattern::Block { .. } => format!(
            "{}, {pct:.0}% of the blocks {} by {} norm, stored {}",
            cfg.pattern,
            match cfg.scope {
                wgedge::compress::Scope::Layer => "per layer",
                wgedge::compress::Scope::Global => "globally",
            },
            cfg.norm,
            cfg.store
        ),
        Pattern::Unstructured => format!(
            "unstructured, {pct:.0}% {}, stored {}",
            match cfg.scope {
                wgedge::compress::Scope::Layer => "per layer",
                wgedge::compress::Scope::Global => "globally",
            },
            cfg.store
        ),
    }
}

/// `wgedge prune --accuracy-table`: the shipped MNIST CNN pruned several ways (one shot, no
/// fine-tuning), with the share of zeros, the weight bytes stored dense and sparse, and the
/// held-out accuracy on the CPU backend, as a markdown table (the README's).
fn prune_accuracy_table() -> wgedge::Result<()> {
    use wgedge::compress::Scope;
    let model = Model::from_bytes(DEFAULT_MODEL)?;
    let (images, labels) = mnist_test_set()?;
    let cfg = |pattern: &str, sparsity: f32, scope: Scope| -> wgedge::Result<PruneConfig> {
        Ok(PruneConfig {
            scope,
            ..PruneConfig::new(pattern.parse()?, sparsity)
        })
    };
    let rows: Vec<(&str, Option<PruneConfig>)> = vec![
        ("none (f32 baseline)", None),
        (
            "unstructured 50%, per layer",
            Some(cfg("unstructured", 0.5, Scope::Layer)?),
        ),
        (
            "unstructured 70%, per layer",
            Some(cfg("unstructured", 0.7, Scope::Layer)?),
        ),
        (
            "unstructured 90%, per layer",
            Some(cfg("unstructured", 0.9, Scope::Layer)?),
        ),
        (
            "unstructured 90%, global",
            Some(cfg("unstructured", 0.9, Scope::Global)?),
        ),
        ("2:4", Some(cfg("2:4", 0.5, Scope::Layer)?)),
        ("4:8", Some(cfg("4:8", 0.5, Scope::Layer)?)),
        ("block 1x4, 50%", Some(cfg("block:1x4", 0.5, Scope::Layer)?)),
        ("channels 50%", Some(cfg("channel", 0.5, Scope::Layer)?)),
    ];
    println!(
        "MNIST CNN ({} params), {} held-out digits, one-shot magnitude pruning (no fine-tuning), \
         CPU backend; CPU: {}",
        model.graph.param_count(),
        images.len(),
        cpu_name()
    );
    println!();
    println!(
        "| pruning | removed (pruned layers) | stored as (`--store sparse`) | weight bytes, dense | weight bytes, sparse | accuracy, CPU backend |"
    );
    println!("|---|---:|---|---:|---:|---:|");
    let cpu_accuracy = |m: &Model| {
        accuracy(
            &Session::cpu(m, SessionOptions::default())?,
            &images,
            &labels,
        )
    };
    let mut notes = Vec::new();
    for (what, cfg) in rows {
        let Some(cfg) = cfg else {
            let acc = cpu_accuracy(&model)?;
            let b = model.weight_bytes();
            println!("| {what} | - | `f32` | {b} | - | {acc:.1}% |");
            continue;
        };
        let (dense, report) = prune(&model, &cfg)?;
        let acc = cpu_accuracy(&dense)?;
        let removed = match report.channels() {
            Some((kept, n)) => format!("{}/{n} channels", n - kept),
            None => format!("{:.1}%", 100.0 * report.sparsity()),
        };
        let (stored, sparse_bytes, acc_cell) = if cfg.pattern == Pattern::Channel {
            (
                "dense, smaller tensors".to_string(),
                "-".to_string(),
                format!("{acc:.1}%"),
            )
        } else {
            let sparse_cfg = PruneConfig {
                store: Store::Sparse,
                ..cfg.clone()
            };
            let (sparse, sreport) = prune(&model, &sparse_cfg)?;
            let sacc = cpu_accuracy(&sparse)?;
            // The sparse formats hold the values exactly, so the two must agree.
            let cell = if (sacc - acc).abs() < 1e-9 {
                format!("{acc:.1}%")
            } else {
                format!("{acc:.1}% (sparse {sacc:.1}%)")
            };
            (
                stored_formats(&sreport),
                sparse.weight_bytes().to_string(),
                cell,
            )
        };
        for s in &report.skipped {
            notes.push(format!("{what}: `{}` not pruned: {}", s.name, s.reason));
        }
        println!(
            "| {what} | {removed} | {stored} | {} | {sparse_bytes} | {acc_cell} |",
            dense.weight_bytes()
        );
    }
    if !notes.is_empty() {
        println!();
        for n in notes {
            println!("- {n}");
        }
    }
    Ok(())
}

/// The formats a report's layers were stored in, each with its layer count ("`csr-f32` x3").
fn stored_formats(report: &PruneReport) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for l in &report.layers {
        match counts.iter_mut().find(|(f, _)| *f == l.format) {
            Some((_, n)) => *n += 1,
            None => counts.push((l.format.clone(), 1)),
        }
    }
    counts
        .iter()
        .map(|(f, n)| format!("`{f}` x{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A progress bar with `label` in front, on a terminal only (none when stderr is not one, so
/// piped output and tests stay clean).
fn labelled_progress_bar(label: &str) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(0);
    if let Ok(style) = indicatif::ProgressStyle::with_template(&format!(
        "{label} {{bar:30}} {{pos}}/{{len}} {{msg}}"
    )) {
        bar.set_style(style);
    }
    Some(bar)
}

/// Calibration samples: one feed list per sample, plus labels when the file has them.
struct Samples {
    feeds: Vec<Vec<(String, Tensor)>>,
    labels: Option<Vec<usize>>,
    /// Where the inputs came from, for the printout.
    source: String,
}

/// Splits the tensors of a calibration file into samples for `graph`'s inputs. Each input is
/// the tensor of its name; a model with one input also takes `images` (the MNIST test set's
/// layout: u8 pixels, scaled to [0, 1] as the demo does) and then `labels`. A tensor of the
/// input's shape is one sample; for an input of shape `[1, ...]`, a tensor `[B, ...]` with B
/// times the elements is B samples, run one at a time.
fn split_samples(
    graph: &wgedge::graph::Graph,
    tensors: &BTreeMap<String, Tensor>,
) -> wgedge::Result<Samples> {
    let mut per_input = Vec::new();
    let mut source = Vec::new();
    let mut mnist = false;
    for spec in &graph.inputs {
        let (key, t) = match tensors.get(&spec.name) {
            Some(t) => (spec.name.as_str(), t.clone()),
            None if graph.inputs.len() == 1 && tensors.contains_key("images") => {
                mnist = true;
                let t = &tensors["images"];
                let f = t.to_f32();
                let scaled = if t.dtype() == wgedge::DType::U8 {
                    let v = f.f32s("images")?.iter().map(|v| v / 255.0).collect();
                    Tensor::new(t.shape(), v)?
                } else {
                    f
                };
                ("images", scaled)
            }
            None => {
                return Err(Error::Input(format!(
                    "the calibration file has no tensor '{}' for the model's input (it holds: {})",
                    spec.name,
                    tensors.keys().cloned().collect::<Vec<_>>().join(", ")
                )))
            }
        };
        source.push(if key == spec.name {
            key.to_string()
        } else {
            format!("{key} -> {}", spec.name)
        });
        let t = t.cast(spec.dtype);
        let per = spec.shape.iter().product::<usize>();
        let n = t.numel();
        let batch = if t.shape() == spec.shape.as_slice() {
            1
        } else if spec.shape.first() == Some(&1)
            && per > 0
            && n % per == 0
            && t.shape().first() == Some(&(n / per))
        {
            n / per
        } else {
            return Err(Error::Input(format!(
                "calibration tensor '{key}' of shape {:?} does not hold samples of input '{}' \
                 {:?} (expected that shape, or [B, ...] with B samples when the input's first \
                 dim is 1)",
                t.shape(),
                spec.name,
                spec.shape
            )));
        };
        let size = t.dtype().size() * per;
        let samples = (0..batch)
            .map(|i| {
                Tensor::from_bytes(t.dtype(), &spec.shape, &t.bytes()[i * size..(i + 1) * size])
            })
            .collect::<wgedge::Result<Vec<_>>>()?;
        per_input.push((spec.name.clone(), samples));
    }
    let batch = per_input.first().map_or(0, |(_, s)| s.len());
    if let Some((name, s)) = per_input.iter().find(|(_, s)| s.len() != batch) {
        return Err(Error::Input(format!(
            "calibration inputs disagree on the number of samples: '{}' has {batch}, '{name}' \
             has {}",
            per_input[0].0,
            s.len()
        )));
    }
    let labels = match tensors.get("labels") {
        Some(l) if mnist || graph.inputs.iter().all(|i| i.name != "labels") => {
            let v = l.to_f32();
            let v = v.f32s("labels")?;
            (v.len() == batch).then(|| v.iter().map(|&x| x as usize).collect())
        }
        _ => None,
    };
    let feeds = (0..batch)
        .map(|i| {
            (per_input.iter())
                .map(|(name, s)| (name.clone(), s[i].clone()))
                .collect()
        })
        .collect();
    Ok(Samples {
        feeds,
        labels,
        source: source.join(", "),
    })
}

/// Index of the largest element (the first of equals).
fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |b, (i, &x)| if x > b.1 { (i, x) } else { b },
        )
        .0
}

/// Runs `reference` and `quantized` on the samples of `data` and prints, per output, the max
/// and mean absolute difference, for classifier outputs (`[1, C]`) the top-1 agreement, and
/// with labels both accuracies.
fn compare_outputs(
    reference: &Model,
    quantized: &Model,
    data: &Path,
    backend: Backend,
) -> wgedge::Result<()> {
    compare_models(reference, quantized, data, backend, ["f32", "quantized"])
}

/// [`compare_outputs`] with the two models' names in the accuracy line (`[reference, other]`).
fn compare_models(
    reference: &Model,
    quantized: &Model,
    data: &Path,
    backend: Backend,
    labels: [&str; 2],
) -> wgedge::Result<()> {
    let tensors = wgedge::model::load_tensors(data)?;
    let samples = split_samples(&reference.graph, &tensors)?;
    let (s32, sq) = match open_device(backend)? {
        Some(ctx) => (
            Session::with_context(reference, ctx.clone(), SessionOptions::from_env()?)?,
            Session::with_context(quantized, ctx, SessionOptions::from_env()?)?,
        ),
        None => (
            Session::cpu(reference, SessionOptions::default())?,
            Session::cpu(quantized, SessionOptions::default())?,
        ),
    };
    let names = s32.output_names().to_vec();
    #[derive(Default, Clone)]
    struct Diff {
        max: f64,
        sum: f64,
        count: usize,
        agree: usize,
        classifier: bool,
        shape: Vec<usize>,
    }
    let mut diffs = vec![Diff::default(); names.len()];
    let (mut right32, mut rightq) = (0usize, 0usize);
    for (i, feed) in samples.feeds.iter().enumerate() {
        let refs: Vec<(&str, &Tensor)> = feed.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let (a, b) = (s32.run(&refs)?, sq.run(&refs)?);
        for (k, (x, y)) in a.iter().zip(&b).enumerate() {
            let (x, y) = (x.to_f32(), y.to_f32());
            let (xs, ys) = (x.f32s(&names[k])?, y.f32s(&names[k])?);
            let d = &mut diffs[k];
            d.shape = x.shape().to_vec();
            for (&p, &q) in xs.iter().zip(ys) {
                let e = (f64::from(p) - f64::from(q)).abs();
                d.max = d.max.max(e);
                d.sum += e;
            }
            d.count += xs.len();
            d.classifier = matches!(x.shape(), [1, c] if *c > 1);
            if d.classifier {
                let (pa, pb) = (argmax(xs), argmax(ys));
                d.agree += usize::from(pa == pb);
                if k == 0 {
                    if let Some(l) = &samples.labels {
                        right32 += usize::from(pa == l[i]);
                        rightq += usize::from(pb == l[i]);
                    }
                }
            }
        }
    }
    let n = samples.feeds.len();
    println!(
        "calibration: {n} samples ({}) from {} on {}",
        samples.source,
        data.display(),
        sq.device_name()
    );
    let pct = |k: usize| 100.0 * k as f64 / n.max(1) as f64;
    for (name, d) in names.iter().zip(&diffs) {
        print!(
            "  output '{name}' {:?}: max |diff| {:.3e}, mean |diff| {:.3e}",
            d.shape,
            d.max,
            d.sum / d.count.max(1) as f64
        );
        if d.classifier {
            print!(", top-1 agreement {:.2}% ({}/{n})", pct(d.agree), d.agree);
        }
        println!();
    }
    if samples.labels.is_some() && diffs.first().is_some_and(|d| d.classifier) {
        println!(
            "  accuracy: {} {:.2}% ({right32}/{n}), {} {:.2}% ({rightq}/{n}), {:+.2} points",
            labels[0],
            pct(right32),
            labels[1],
            pct(rightq),
            pct(rightq) - pct(right32)
        );
    }
    Ok(())
}

/// The shipped MNIST test set: 1,000 images `[1, 1, 28, 28]` scaled to [0, 1], and labels.
fn mnist_test_set() -> wgedge::Result<(Vec<Tensor>, Vec<usize>)> {
    let (data, _) = wgedge::model::read_tensors(DEFAULT_TEST_SET)?;
    let get = |k: &str| {
        data.get(k)
            .map(Tensor::to_f32)
            .ok_or_else(|| Error::MissingWeight(k.into()))
    };
    let (images, labels) = (get("images")?, get("labels")?);
    let pixels = images.f32s("images")?;
    let images = pixels
        .chunks_exact(784)
        .map(|c| Tensor::new(&[1, 1, 28, 28], c.iter().map(|v| v / 255.0).collect()))
        .collect::<wgedge::Result<Vec<_>>>()?;
    let labels = labels.f32s("labels")?.iter().map(|&l| l as usize).collect();
    Ok((images, labels))
}

/// Share of `images` that `session` classifies as `labels` say, in percent.
fn accuracy(session: &Session, images: &[Tensor], labels: &[usize]) -> wgedge::Result<f64> {
    let mut right = 0;
    for (img, &label) in images.iter().zip(labels) {
        let out = session.run(&[("image", img)])?;
        right += usize::from(argmax(out[0].f32s("probs")?) == label);
    }
    Ok(100.0 * right as f64 / images.len().max(1) as f64)
}

/// The CPU's model name (Linux `/proc/cpuinfo`), for labelling measurements.
fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// `wgedge quantize --accuracy-table`: the shipped MNIST CNN quantized every way, with its
/// weight bytes, held-out accuracy on the CPU and GPU backends and the layers' SQNR range, as
/// a markdown table (the README's).
fn accuracy_table(gpu: Backend) -> wgedge::Result<()> {
    let model = Model::from_bytes(DEFAULT_MODEL)?;
    let (images, labels) = mnist_test_set()?;
    let ctx = match gpu {
        Backend::Cpu => None,
        b => open_device(b)?,
    };
    let with = |kind, clip| QuantConfig {
        clip,
        ..QuantConfig::new(kind)
    };
    let rows: [(&str, Option<QuantConfig>); 7] = [
        ("f32 (baseline)", None),
        (
            "int8, per channel",
            Some(with(WeightKind::Int8, Clip::None)),
        ),
        (
            "int8, per channel, mse clip",
            Some(with(WeightKind::Int8, Clip::Mse)),
        ),
        (
            "int4, groups of 32",
            Some(with(WeightKind::Int4, Clip::None)),
        ),
        (
            "int4, groups of 32, mse clip",
            Some(with(WeightKind::Int4, Clip::Mse)),
        ),
        (
            "pow2 int8, per channel",
            Some(with(WeightKind::Pow2, Clip::None)),
        ),
        ("f16", Some(with(WeightKind::F16, Clip::None))),
    ];
    let gpu_name = match (&ctx, gpu) {
        (Some(c), _) => c.profile.adapter.clone(),
        (None, Backend::Cpu) => "not measured (--backend cpu)".into(),
        (None, _) => "no adapter".into(),
    };
    println!(
        "MNIST CNN ({} params), {} held-out digits; CPU: {}; GPU: {gpu_name}",
        model.graph.param_count(),
        images.len(),
        cpu_name()
    );
    println!();
    println!(
        "| weights | stored as | weight bytes | accuracy, CPU backend | accuracy, GPU backend | SQNR (dB), min..max over layers |"
    );
    println!("|---|---|---:|---:|---:|---:|");
    let base_bytes = model.weight_bytes();
    for (what, cfg) in rows {
        let (m, report) = match &cfg {
            Some(cfg) => {
                let (m, r) = quantize(&model, cfg)?;
                (m, Some(r))
            }
            None => (model.clone(), None),
        };
        let cpu = accuracy(
            &Session::cpu(&m, SessionOptions::default())?,
            &images,
            &labels,
        )?;
        let gpu = match &ctx {
            // One format failing on the GPU should not hide the other rows: the cell says so
            // and the error goes to stderr.
            Some(ctx) => match Session::with_context(&m, ctx.clone(), SessionOptions::from_env()?)
                .and_then(|s| accuracy(&s, &images, &labels))
            {
                Ok(acc) => format!("{acc:.1}%"),
                Err(e) => {
                    eprintln!("wgedge: {what} on the GPU: {e}");
                    "failed".into()
                }
            },
            None => "n/a".into(),
        };
        let label = report
            .as_ref()
            .and_then(|r| r.layers.first())
            .map_or("f32".to_string(), |l| l.format.clone());
        let sqnr = report
            .as_ref()
            .and_then(|r| r.sqnr_range())
            .map_or("-".to_string(), |(lo, hi)| format!("{lo:.1}..{hi:.1}"));
        println!(
            "| {what} | `{label}` | {} ({:.2}x smaller) | {cpu:.1}% | {gpu} | {sqnr} |",
            m.weight_bytes(),
            base_bytes as f64 / m.weight_bytes() as f64
        );
    }
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
        None => println!("device: none (CPU backend only)"),
    }
    let workloads = match suite {
        "kernels" => kernel_workloads()?,
        "models" => {
            // The shipped CNN, and the same with half of every layer's output channels
            // removed (one shot, L2 norm): the dense kernels on smaller tensors.
            let model = Model::from_bytes(DEFAULT_MODEL)?;
            let (ch50, _) = prune(&model, &PruneConfig::new(Pattern::Channel, 0.5))?;
            vec![
                model_workload("mnist-cnn", model)?,
                model_workload("mnist-cnn-ch50", ch50)?,
            ]
        }
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
