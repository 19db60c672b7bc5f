//! `Session`: device -> profile -> plan -> executor, built once; `run` many times.
//! The core is async (wgpu on the web cannot block); native code gets blocking wrappers.

use crate::error::{Error, Result};
use crate::exec::{CpuExecutor, GpuExecutor};
use crate::gpu::{Backend, GpuContext};
use crate::graph::passes;
use crate::model::Model;
use crate::profile::{DeviceProfile, TunedChoices};
use crate::sched::{Plan, PlanOptions};
use crate::tensor::{fmt_shape, Tensor};
use std::sync::Arc;

/// Options that shape how a session is built. `Default` reads nothing from the environment;
/// [`SessionOptions::from_env`] is the one place that does (the CLI uses it).
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Time kernel variants on this adapter once (cached on disk) before planning.
    pub autotune: bool,
    /// Use these kernel choices instead of tuned or default ones (op family -> slot ->
    /// kernel; every entry is checked, a bad one is an error).
    pub kernels: Option<TunedChoices>,
    /// Run every matmul/conv on its naive reference kernel (benchmarks and tests).
    pub naive: bool,
    /// Apply constant folding, BatchNorm folding and epilogue fusion.
    pub optimize: bool,
    /// Matmuls on int8 weights quantise their input rows to int8 at run time (dynamic per-row
    /// scales) and accumulate in integers on the GPU: an approximation of the f32 result
    /// (`WGEDGE_INT8_ACT=1`). The CPU backend always computes in f32.
    pub int8_activations: bool,
    /// Allow f16 arithmetic on the GPU (`WGEDGE_F16=1`; default off: f32 results as without
    /// it). Matmuls and convs may then run kernels that round their operands to f16, multiply
    /// in f16 and sum in f32, where the adapter has `shader-f16` and autotune measured them
    /// faster than the f32 kernels. Each product then carries about 2^-11 relative error (the
    /// sum's error grows like sqrt(K) times that), and values beyond f16's range (65504)
    /// become infinite. The CPU backend always computes in f32.
    pub f16_compute: bool,
    pub plan: PlanOptions,
    /// Run CPU nodes (the CPU backend's, and CPU nodes inside GPU plans) on the reference ops
    /// rather than the fast CPU kernels (tests that compare against the reference bit for bit).
    pub cpu_reference: bool,
    /// Densest sparse weight (percent of its elements stored) the CPU sparse kernel
    /// (`cpu-spmm`) reads as stored; denser ones are decoded once and run the dense kernels.
    /// `None`: the measured defaults (`cpu_fast::spmm_max_pct`: faster than dense there);
    /// `Some(100)` forces the sparse kernel (less memory), `Some(0)` disables it.
    pub cpu_sparse_max_pct: Option<u32>,
    /// Threads for the CPU kernels (`WGEDGE_THREADS`); `None`: all cores.
    pub threads: Option<usize>,
    /// Most bytes the session may hold: planned activations plus weights, on the CPU or the
    /// GPU, checked at plan time (and any single value of the graph, before constants are
    /// folded). `None`: [`default_memory_budget`].
    pub max_memory: Option<u64>,
    /// Plans kept for other input sizes of a model with symbolic dims ([`Graph::dims`]):
    /// the least recently used one goes when a new shape needs room (each holds its own
    /// buffers, weights included). 0 refuses runs at other sizes.
    ///
    /// [`Graph::dims`]: crate::graph::Graph::dims
    pub max_shapes: usize,
}

/// The memory budget of sessions that set none: half the machine's physical memory where it
/// can be read (Linux), else 4 GiB (1 GiB on wasm32, the browser's usual cap on one page).
pub fn default_memory_budget() -> u64 {
    #[cfg(target_os = "linux")]
    if let Some(kib) = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .and_then(|v| v.parse::<u64>().ok())
    {
        return kib.saturating_mul(1024) / 2;
    }
    if cfg!(target_arch = "wasm32") {
        1 << 30
    } else {
        4 << 30
    }
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            autotune: true,
            kernels: None,
            naive: false,
            optimize: true,
            int8_activations: false,
            f16_compute: false,
            plan: PlanOptions::default(),
            cpu_reference: false,
            cpu_sparse_max_pct: None,
            threads: None,
            max_memory: None,
            max_shapes: 4,
        }
    }
}

impl SessionOptions {
    /// The defaults, changed by the environment: `WGEDGE_AUTOTUNE=0` (default kernels, no
    /// timing), `WGEDGE_KERNELS` (JSON kernel choices; checked, a bad one is an error),
    /// `WGEDGE_THREADS` (CPU kernel threads), `WGEDGE_CPU_REFERENCE=1` (CPU nodes on the
    /// reference ops) and `WGEDGE_NO_REUSE=1` (every value its own memory, to hunt aliasing bugs). The tune cache
    /// lives in `WGEDGE_CACHE_DIR`, else `$XDG_CACHE_HOME/wgedge`, else `~/.cache/wgedge`.
    pub fn from_env() -> Result<SessionOptions> {
        let mut o = SessionOptions::default();
        if let Ok(v) = std::env::var("WGEDGE_AUTOTUNE") {
            o.autotune = v != "0";
        }
        if let Ok(v) = std::env::var("WGEDGE_INT8_ACT") {
            o.int8_activations = v == "1";
        }
        if let Ok(v) = std::env::var("WGEDGE_F16") {
            o.f16_compute = v == "1";
        }
        if let Ok(v) = std::env::var("WGEDGE_CPU_REFERENCE") {
            o.cpu_reference = v == "1";
        }
        if let Ok(v) = std::env::var("WGEDGE_THREADS") {
            let n: usize = (v.trim().parse().ok().filter(|&n| n > 0)).ok_or_else(|| {
                Error::Input(format!(
                    "WGEDGE_THREADS must be a positive thread count, got '{v}'"
                ))
            })?;
            o.threads = Some(n);
        }
        if let Ok(v) = std::env::var("WGEDGE_NO_REUSE") {
            o.plan.reuse = v.is_empty() || v == "0";
        }
        if let Ok(json) = std::env::var("WGEDGE_KERNELS") {
            let k: TunedChoices = serde_json::from_str(&json).map_err(|e| {
                Error::Input(format!(
                    "WGEDGE_KERNELS is not valid kernel choices JSON: {e}"
                ))
            })?;
            crate::exec::autotune::validate_choices(&k)
                .map_err(|e| Error::Input(format!("WGEDGE_KERNELS: {e}")))?;
            o.kernels = Some(k);
        }
        Ok(o)
    }
}

enum Exec {
    Cpu(CpuExecutor),
    Gpu(Arc<GpuContext>, GpuExecutor),
}

/// What a session of a model with symbolic dims needs to plan other input sizes, and the
/// sessions it planned (most recently used last).
struct Reshapes {
    model: Model,
    opts: SessionOptions,
    ctx: Option<Arc<GpuContext>>,
    cache: std::sync::Mutex<Vec<Planned>>,
}

/// A session planned for other input sizes, keyed by its inputs' shapes in graph order.
type Planned = (Vec<Vec<usize>>, Arc<Session>);

/// A model planned for one device, ready to run.
pub struct Session {
    reshapes: Option<Box<Reshapes>>,
    plan: Plan,
    exec: Exec,
    input_specs: Vec<(String, Vec<usize>)>,
    input_dtypes: Vec<crate::DType>,
    output_names: Vec<String>,
    /// Nodes removed by constant folding, BatchNorm folding and fusion.
    pub rewrites: usize,
    notices: Vec<String>,
}

impl Session {
    /// Plans `model` for `backend` and builds everything a run needs. `Backend::Auto` (native
    /// builds) times the model on the GPU and the CPU backend and keeps the faster, caching the
    /// verdict (`crate::auto`; the first notice says what was measured and chosen).
    pub async fn new_async(
        model: &Model,
        backend: Backend,
        opts: SessionOptions,
    ) -> Result<Session> {
        #[cfg(not(target_arch = "wasm32"))]
        if backend == Backend::Auto {
            return crate::auto::session(model, opts).await;
        }
        match GpuContext::open(backend).await? {
            Some(ctx) => Self::with_context_async(model, Arc::new(ctx), opts).await,
            None => Self::cpu(model, opts),
        }
    }

    /// A session on the CPU backend: fast CPU kernels where an op has one for the case, the
    /// reference elsewhere (or everywhere with `SessionOptions::cpu_reference`).
    pub fn cpu(model: &Model, opts: SessionOptions) -> Result<Session> {
        let budget = opts.max_memory.unwrap_or_else(default_memory_budget);
        let (graph, mut weights, rewrites) = prepare(model, opts.optimize, budget)?;
        let mut plan = Plan::new(&graph, &weights, None, opts.plan)?;
        plan.select_cpu_kernels(opts.cpu_reference, opts.cpu_sparse_max_pct);
        decode_planned(&plan, &mut weights)?;
        check_budget(&plan, &weights, budget)?;
        let pool = crate::cpu::Pool::new(opts.threads);
        let reshapes = Reshapes::of(model, &opts, None);
        Ok(Self::finish(
            model,
            plan,
            Exec::Cpu(CpuExecutor::new(Arc::new(weights), pool)),
            rewrites,
            Vec::new(),
        )
        .with_reshapes(reshapes))
    }

    /// A session on a GPU context the caller made (or adopted from its app's own device).
    pub async fn with_context_async(
        model: &Model,
        ctx: Arc<GpuContext>,
        opts: SessionOptions,
    ) -> Result<Session> {
        let mut profile: DeviceProfile = ctx.profile.clone();
        let mut notices = Vec::new();
        let reshapes = Reshapes::of(model, &opts, Some(ctx.clone()));
        if let Some(k) = opts.kernels {
            crate::exec::autotune::validate_choices(&k)
                .map_err(|e| Error::Input(format!("SessionOptions::kernels: {e}")))?;
            profile.kernels = k;
        } else if opts.autotune && !opts.naive {
            let tuned = crate::exec::autotune::choices(&ctx).await?;
            profile.kernels = tuned.choices;
            notices = tuned.notices;
        }
        profile.naive_only = opts.naive;
        profile.int8_activations = opts.int8_activations;
        profile.f16_compute = opts.f16_compute;
        let budget = opts.max_memory.unwrap_or_else(default_memory_budget);
        let (graph, mut weights, rewrites) = prepare(model, opts.optimize, budget)?;
        let mut plan = Plan::new(&graph, &weights, Some(&profile), opts.plan)?;
        plan.select_cpu_kernels(opts.cpu_reference, opts.cpu_sparse_max_pct);
        decode_planned(&plan, &mut weights)?;
        check_budget(&plan, &weights, budget)?;
        let decoded: Vec<String> = (plan.values.iter())
            .filter(|v| v.decoded)
            .map(|v| format!("{} ({})", v.name, v.format.label()))
            .collect();
        if !decoded.is_empty() {
            notices.push(format!(
                "{} packed weight(s) decoded to f32 (no GPU kernel reads their format for the \
                 node that uses them, or it runs on the CPU): {}",
                decoded.len(),
                decoded.join(", ")
            ));
        }
        let cpu = plan.cpu_nodes();
        if !cpu.is_empty() {
            notices.push(format!(
                "{} node(s) run on the CPU (no GPU kernel for their op, dtype or weight format): {}",
                cpu.len(),
                cpu.join(", ")
            ));
        }
        let mut exec = GpuExecutor::new(ctx.clone(), &plan, &weights).await?;
        if !cpu.is_empty() {
            // CPU nodes run on the session's threads (`WGEDGE_THREADS`), as on the CPU backend.
            exec.set_cpu_pool(crate::cpu::Pool::new(opts.threads));
        }
        Ok(
            Self::finish(model, plan, Exec::Gpu(ctx, exec), rewrites, notices)
                .with_reshapes(reshapes),
        )
    }

    fn with_reshapes(mut self, r: Option<Box<Reshapes>>) -> Session {
        self.reshapes = r;
        self
    }

    fn finish(
        model: &Model,
        plan: Plan,
        exec: Exec,
        rewrites: usize,
        notices: Vec<String>,
    ) -> Session {
        Session {
            reshapes: None,
            input_specs: model
                .graph
                .inputs
                .iter()
                .map(|v| (v.name.clone(), v.shape.clone()))
                .collect(),
            input_dtypes: model.graph.inputs.iter().map(|v| v.dtype).collect(),
            output_names: model.graph.outputs.clone(),
            plan,
            exec,
            rewrites,
            notices,
        }
    }

    /// Puts a notice first (the `Auto` verdict).
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn add_notice(&mut self, n: String) {
        self.notices.insert(0, n);
    }

    /// What building the session noticed: CPU fallback nodes, ignored kernel-cache entries,
    /// autotune candidates that failed. The library prints nothing; callers decide.
    pub fn notices(&self) -> &[String] {
        &self.notices
    }

    /// Whether some input is given at another shape than this session planned.
    fn other_sizes(&self, inputs: &[(&str, &Tensor)]) -> bool {
        inputs.iter().any(|(n, t)| {
            self.input_specs
                .iter()
                .any(|(name, shape)| name == n && t.shape() != shape.as_slice())
        })
    }

    /// Input shapes of the plans kept for other sizes, most recently used last.
    pub fn planned_shapes(&self) -> Vec<Vec<Vec<usize>>> {
        match &self.reshapes {
            Some(r) => r.lock().iter().map(|(s, _)| s.clone()).collect(),
            None => Vec::new(),
        }
    }

    /// Checks named inputs against the graph and returns them in graph order.
    fn order_inputs<'a>(&self, inputs: &[(&str, &'a Tensor)]) -> Result<Vec<&'a Tensor>> {
        for (name, _) in inputs {
            if !self.input_specs.iter().any(|(n, _)| n == name) {
                let known: Vec<&str> = self.input_specs.iter().map(|(n, _)| n.as_str()).collect();
                return Err(Error::Input(format!(
                    "unknown input '{name}' (the model takes {})",
                    known.join(", ")
                )));
            }
        }
        self.input_specs
            .iter()
            .zip(&self.input_dtypes)
            .map(|((name, shape), dtype)| {
                let mut given = inputs.iter().filter(|(n, _)| n == name);
                let t = given
                    .next()
                    .ok_or_else(|| {
                        Error::Input(format!(
                            "missing input '{name}' of shape {}",
                            fmt_shape(shape)
                        ))
                    })?
                    .1;
                if given.next().is_some() {
                    return Err(Error::Input(format!("input '{name}' given more than once")));
                }
                if t.dtype() != *dtype {
                    return Err(Error::DTypeMismatch {
                        op: format!("input '{name}'"),
                        expected: dtype.to_string(),
                        got: t.dtype().to_string(),
                    });
                }
                if t.shape() != shape.as_slice() {
                    return Err(Error::shape(
                        format!("input '{name}'"),
                        fmt_shape(shape),
                        fmt_shape(t.shape()),
                    ));
                }
                Ok(t)
            })
            .collect()
    }

    /// Runs the model: inputs by name, outputs in the graph's output order. A model with
    /// symbolic dims ([`crate::graph::Graph::dims`]) runs at any sizes those allow: the first
    /// run at new sizes plans the model for them (pipelines, buffers, bind groups) and the
    /// plan is kept for the next runs at those sizes ([`SessionOptions::max_shapes`], least
    /// recently used out).
    pub async fn run_async(&self, inputs: &[(&str, &Tensor)]) -> Result<Vec<Tensor>> {
        if let Some(r) = &self.reshapes {
            if self.other_sizes(inputs) {
                let session = r.session_for(inputs).await?;
                return Box::pin(session.run_async(inputs)).await;
            }
        }
        let ins = self.order_inputs(inputs)?;
        match &self.exec {
            Exec::Cpu(c) => c.run(&self.plan, &ins),
            Exec::Gpu(_, g) => g.run(&ins).await,
        }
    }

    /// Runs on data already uploaded, `iters` times, waiting for completion (benchmarks).
    pub fn run_resident(&self, iters: usize) -> Result<()> {
        match &self.exec {
            Exec::Cpu(_) => Err(Error::Unsupported {
                op: "run_resident".into(),
                what: "resident runs".into(),
                backend: "cpu".into(),
            }),
            Exec::Gpu(_, g) => g.run_resident(iters),
        }
    }

    /// GPU time per plan node (ms, in plan order) of one run on the last inputs, from
    /// timestamp queries; `Unsupported` on the CPU backend or without timestamp queries.
    pub async fn node_times_async(&self) -> Result<Vec<f64>> {
        match &self.exec {
            Exec::Cpu(_) => Err(Error::Unsupported {
                op: "node_times".into(),
                what: "GPU timestamps".into(),
                backend: "cpu".into(),
            }),
            Exec::Gpu(_, g) => g.node_times(self.plan.nodes.len()).await,
        }
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    pub fn output_names(&self) -> &[String] {
        &self.output_names
    }

    pub fn input_specs(&self) -> &[(String, Vec<usize>)] {
        &self.input_specs
    }

    /// "cpu", or the GPU adapter and backend.
    pub fn device_name(&self) -> String {
        match &self.exec {
            Exec::Cpu(_)
                if self
                    .plan
                    .nodes
                    .iter()
                    .all(|n| n.kernel == crate::sched::CPU_KERNEL || n.kernel == "alias") =>
            {
                "cpu (reference kernels)".into()
            }
            Exec::Cpu(_) => "cpu".into(),
            Exec::Gpu(ctx, _) => format!("{} ({})", ctx.info.name, ctx.profile.backend),
        }
    }

    pub fn is_gpu(&self) -> bool {
        matches!(self.exec, Exec::Gpu(..))
    }

    /// Device memory held by the session (activations, weights, uniforms, staging).
    pub fn device_bytes(&self) -> u64 {
        match &self.exec {
            Exec::Cpu(_) => 0,
            Exec::Gpu(_, g) => g.device_bytes,
        }
    }

    /// Host memory held by the CPU backend's weights: packed ones read by packed CPU kernels
    /// as stored, the others decoded to f32 (plus their stored parts, shared with the model).
    /// 0 on a GPU session.
    pub fn weight_host_bytes(&self) -> u64 {
        match &self.exec {
            Exec::Cpu(c) => c.weight_bytes(),
            Exec::Gpu(..) => 0,
        }
    }

    /// Device memory held by the session's weights: packed ones as stored (plus row padding),
    /// dense or decoded ones as f32 in the layouts their kernels read. 0 on the CPU backend.
    pub fn weight_device_bytes(&self) -> u64 {
        match &self.exec {
            Exec::Cpu(_) => 0,
            Exec::Gpu(_, g) => g.weight_bytes,
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Session {
    /// Blocking [`Session::new_async`] with default options.
    pub fn new(model: &Model, backend: Backend) -> Result<Session> {
        pollster::block_on(Self::new_async(model, backend, SessionOptions::default()))
    }

    /// Blocking [`Session::new_async`].
    pub fn with_options(model: &Model, backend: Backend, opts: SessionOptions) -> Result<Session> {
        pollster::block_on(Self::new_async(model, backend, opts))
    }

    /// Blocking [`Session::with_context_async`].
    pub fn with_context(
        model: &Model,
        ctx: Arc<GpuContext>,
        opts: SessionOptions,
    ) -> Result<Session> {
        pollster::block_on(Self::with_context_async(model, ctx, opts))
    }

    /// Blocking [`Session::node_times_async`].
    pub fn node_times(&self) -> Result<Vec<f64>> {
        pollster::block_on(self.node_times_async())
    }

    /// Blocking [`Session::run_async`].
    pub fn run(&self, inputs: &[(&str, &Tensor)]) -> Result<Vec<Tensor>> {
        pollster::block_on(self.run_async(inputs))
    }
}

impl Reshapes {
    /// Kept only for models with symbolic dims.
    fn of(
        model: &Model,
        opts: &SessionOptions,
        ctx: Option<Arc<GpuContext>>,
    ) -> Option<Box<Reshapes>> {
        (!model.graph.dims.is_empty()).then(|| {
            Box::new(Reshapes {
                model: model.clone(),
                opts: opts.clone(),
                ctx,
                cache: std::sync::Mutex::new(Vec::new()),
            })
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Planned>> {
        // A panic while holding the lock cannot leave the list inconsistent (each change is
        // one push or remove), so a poisoned lock is still usable.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The session planned for these inputs' sizes: from the cache, or planned now.
    async fn session_for(&self, inputs: &[(&str, &Tensor)]) -> Result<Arc<Session>> {
        let graph = &self.model.graph;
        let shapes: Vec<(&str, &[usize])> = inputs.iter().map(|(n, t)| (*n, t.shape())).collect();
        let specialised = graph.with_input_shapes(&shapes)?;
        let key: Vec<Vec<usize>> = specialised.inputs.iter().map(|v| v.shape.clone()).collect();
        {
            let mut cache = self.lock();
            if let Some(i) = cache.iter().position(|(k, _)| *k == key) {
                let hit = cache.remove(i);
                let s = hit.1.clone();
                cache.push(hit);
                return Ok(s);
            }
        }
        if self.opts.max_shapes == 0 {
            return Err(Error::Input(format!(
                "inputs at sizes {key:?} differ from the planned ones and \
                 SessionOptions::max_shapes is 0"
            )));
        }
        let model = Model {
            graph: specialised,
            weights: self.model.weights.clone(),
        };
        let session = Arc::new(match &self.ctx {
            Some(ctx) => {
                Session::with_context_async(&model, ctx.clone(), self.opts.clone()).await?
            }
            None => Session::cpu(&model, self.opts.clone())?,
        });
        let mut cache = self.lock();
        if let Some(i) = cache.iter().position(|(k, _)| *k == key) {
            // Planned meanwhile by a concurrent run: keep one.
            cache.remove(i);
        }
        while cache.len() >= self.opts.max_shapes {
            cache.remove(0);
        }
        cache.push((key, session.clone()));
        Ok(session)
    }
}

/// Folds constants and BatchNorm, fuses epilogues, and returns the rewritten graph and the
/// session's weights (packed weights as their stored parts; [`decode_planned`] adds f32
/// copies of the ones the plan reads as f32).
fn prepare(
    model: &Model,
    optimize: bool,
    budget: u64,
) -> Result<(
    crate::graph::Graph,
    std::collections::BTreeMap<String, Tensor>,
    usize,
)> {
    // Before anything is computed (folding runs ops, decoding allocates): no single value may
    // exceed the budget.
    let checked = model.graph.check_types_with(&model.weights)?;
    for (name, ty) in &checked.types {
        let bytes = ty.bytes().unwrap_or(u64::MAX);
        if bytes > budget {
            return Err(over_budget(format!("value '{name}' ({ty})"), bytes, budget));
        }
    }
    let mut graph = model.graph.clone();
    let mut weights = (*model.weights).clone();
    let mut rewrites = 0;
    if optimize {
        rewrites += passes::fold_constants(&mut graph, &mut weights)?;
    }
    // Not an optimisation: kernels read shape-like inputs (clip bounds, axes, slice bounds)
    // as attributes, so known values move into them in every build.
    rewrites += passes::absorb_consts(&mut graph, &mut weights)?;
    if optimize {
        rewrites += passes::fold_batchnorm(&mut graph, &mut weights)?;
        let checked = graph.check(&weights)?;
        rewrites += passes::fuse_epilogues(&mut graph, &mut weights, &checked.shapes)?;
    }
    Ok((graph, weights, rewrites))
}

/// Decodes to f32 (under the weight's own name) the packed weights the plan reads as f32: on
/// the CPU, or by a kernel that does not read their format. The others stay packed only.
fn decode_planned(
    plan: &Plan,
    weights: &mut std::collections::BTreeMap<String, Tensor>,
) -> Result<()> {
    plan.decode_weights(weights)
}

fn over_budget(what: String, needed: u64, budget: u64) -> Error {
    Error::MemoryBudget {
        what,
        needed,
        budget,
    }
}

/// Planned activations plus the session's weights against the budget.
fn check_budget(
    plan: &Plan,
    weights: &std::collections::BTreeMap<String, Tensor>,
    budget: u64,
) -> Result<()> {
    let w: u64 = weights.values().map(|t| t.bytes().len() as u64).sum();
    let needed = plan.memory.peak_bytes.saturating_add(w);
    if needed > budget {
        return Err(over_budget(
            format!(
                "{} activation bytes planned + {w} weight bytes",
                plan.memory.peak_bytes
            ),
            needed,
            budget,
        ));
    }
    Ok(())
}
