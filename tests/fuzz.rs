//! Property tests: random graphs (random ops, attributes — absurd ones included —, dtypes and
//! weights) and corrupted model files go through `Model::from_bytes`, `Session::cpu` and `run`
//! on the CPU backend. Every outcome must be `Ok` or `Err`: a panic fails the test (it is
//! caught only to print the case), a huge allocation is refused by the session's memory
//! budget, and shapes stay small so thousands of cases run in seconds.

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::Value;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use wgedge::graph::{Graph, Node, ValueSpec};
use wgedge::ops::*;
use wgedge::profile::DeviceProfile;
use wgedge::sched::{Plan, PlanOptions};
use wgedge::tensor::TensorData;
use wgedge::{DType, Model, Session, SessionOptions, Tensor, ValueType, WeightFormat};

/// The session budget: a hostile graph (32767 padding, 2^31-wide reshapes) must get a
/// `MemoryBudget` error rather than allocate.
const BUDGET: u64 = 32 << 20;
/// Most operations a run may cost (see [`cost`]); costlier graphs are only planned.
const MAX_OPS: u64 = 20_000_000;
/// A case slower than this is printed (straight to stderr) as a hang candidate.
const SLOW_S: f64 = 0.5;
/// Largest weight the generator makes (elements).
const MAX_WEIGHT: usize = 4096;

// ---------------------------------------------------------------------------------------------
// No huge allocation: any single allocation above this fails, after printing where it came
// from (an allocation failure aborts the process, so the backtrace is the report).

const MAX_ALLOC: usize = 1 << 30;

struct Guarded;

/// Fails an allocation above [`MAX_ALLOC`]: the process then aborts with "memory allocation
/// of N bytes failed" and, under `RUST_BACKTRACE=1`, where it came from.
fn refuse(size: usize) -> *mut u8 {
    use std::io::Write;
    // Straight to stderr: the test harness's capture is lost when the process aborts.
    let _ = writeln!(
        std::io::stderr(),
        "fuzz: refusing an allocation of {size} bytes (more than {MAX_ALLOC})"
    );
    std::ptr::null_mut()
}

unsafe impl std::alloc::GlobalAlloc for Guarded {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        if layout.size() > MAX_ALLOC {
            return refuse(layout.size());
        }
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        if layout.size() > MAX_ALLOC {
            return refuse(layout.size());
        }
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new: usize) -> *mut u8 {
        if new > MAX_ALLOC {
            return refuse(new);
        }
        unsafe { std::alloc::System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static ALLOC: Guarded = Guarded;

// ---------------------------------------------------------------------------------------------
// Attribute values: mostly small, sometimes absurd.

const ABSURD_U: [usize; 9] = [
    0,
    32767,
    65536,
    i32::MAX as usize,
    u32::MAX as usize,
    u32::MAX as usize + 1,
    (u32::MAX as usize + 1) * 2 + 3,
    1 << 40,
    usize::MAX,
];

const ABSURD_I: [i64; 10] = [
    -1,
    -2,
    -5,
    i64::MIN,
    i64::MAX,
    u32::MAX as i64,
    u32::MAX as i64 + 1,
    u32::MAX as i64 + 5,
    -(1 << 33),
    1 << 31,
];

fn attr_u() -> impl Strategy<Value = usize> {
    prop_oneof![
        24 => 0usize..4,
        2 => prop::sample::select(&ABSURD_U[..]),
        // Fits every check but makes big values: the memory budget's job.
        1 => prop::sample::select(&[32767usize, 65535][..]),
    ]
}

fn attr_i() -> impl Strategy<Value = i64> {
    prop_oneof![
        12 => -3i64..4,
        1 => prop::sample::select(&ABSURD_I[..]),
    ]
}

fn dtype() -> impl Strategy<Value = DType> {
    prop_oneof![
        20 => Just(DType::F32),
        1 => Just(DType::F16),
        1 => Just(DType::I32),
        1 => Just(DType::I64),
        1 => Just(DType::I8),
        1 => Just(DType::U8),
        1 => Just(DType::Bool),
    ]
}

// ---------------------------------------------------------------------------------------------
// Graph recipes: plain data proptest can shrink, interpreted into a graph with weights whose
// shapes usually fit the op (so most graphs get past checking and run).

#[derive(Debug, Clone)]
struct InputRecipe {
    dtype: DType,
    shape: Vec<usize>,
}

#[derive(Debug, Clone)]
struct NodeRecipe {
    kind: u8,
    /// Bits: which operands are fresh (fitting) weights, attribute flags.
    flags: u16,
    /// Which existing values the node reads.
    picks: [u8; 4],
    /// Unsigned attributes (strides, pads, kernel, groups, axes).
    u: [usize; 8],
    /// Signed attributes (reshape dims, axes).
    i: Vec<i64>,
    act: u8,
    eps: f32,
    dtype: DType,
}

#[derive(Debug, Clone)]
struct GraphRecipe {
    inputs: Vec<InputRecipe>,
    nodes: Vec<NodeRecipe>,
    /// Extra outputs (besides the last node's), as picks.
    outputs: Vec<u8>,
    /// Encode a fitting 2-D weight in a packed format (quant/sparse), by index.
    format: Option<u8>,
    seed: u64,
}

fn input_recipe() -> impl Strategy<Value = InputRecipe> {
    let dims = prop_oneof![
        // Rank 4 (conv and pool inputs) half the time.
        10 => prop::collection::vec(1usize..6, 4),
        8 => prop::collection::vec(1usize..6, 0..4),
        // Rarely an empty dimension (refused at check).
        1 => prop::collection::vec(0usize..3, 1..4),
    ];
    (dtype(), dims).prop_map(|(dtype, shape)| InputRecipe { dtype, shape })
}

fn node_recipe() -> impl Strategy<Value = NodeRecipe> {
    let eps = prop_oneof![
        8 => Just(1e-5f32),
        1 => Just(0.0f32),
        1 => Just(-1.0f32),
        1 => Just(f32::NAN),
        1 => Just(f32::INFINITY),
    ];
    (
        0u8..15,
        any::<u16>(),
        any::<[u8; 4]>(),
        prop::array::uniform8(attr_u()),
        prop::collection::vec(attr_i(), 0..5),
        any::<u8>(),
        eps,
        dtype(),
    )
        .prop_map(|(kind, flags, picks, u, i, act, eps, dtype)| NodeRecipe {
            kind,
            flags,
            picks,
            u,
            i,
            act,
            eps,
            dtype,
        })
}

fn graph_recipe() -> impl Strategy<Value = GraphRecipe> {
    (
        prop::collection::vec(input_recipe(), 1..3),
        prop::collection::vec(node_recipe(), 1..8),
        prop::collection::vec(any::<u8>(), 0..2),
        prop::option::weighted(0.15, any::<u8>()),
        any::<u64>(),
    )
        .prop_map(|(inputs, nodes, outputs, format, seed)| GraphRecipe {
            inputs,
            nodes,
            outputs,
            format,
            seed,
        })
}

fn activation(code: u8) -> Activation {
    let all = Activation::all();
    match all[code as usize % all.len()] {
        Activation::LeakyRelu { .. } => Activation::LeakyRelu {
            alpha: [0.1, -3.0, f32::NAN, f32::INFINITY][(code / 16) as usize % 4],
        },
        a => a,
    }
}

/// Deterministic data of any dtype (values small enough for every integer type).
fn data(dtype: DType, shape: &[usize], seed: u64) -> Tensor {
    let f = Tensor::random(shape, seed);
    let v = f.clone().into_f32s("data").unwrap();
    let ints = |k: f32| v.iter().map(move |x| (x * k).round());
    let d = match dtype {
        DType::F32 => return f,
        DType::F16 => TensorData::F16(v.iter().map(|&x| half::f16::from_f32(x)).collect()),
        DType::I32 => TensorData::I32(ints(5.0).map(|x| x as i32).collect()),
        DType::I64 => TensorData::I64(ints(5.0).map(|x| x as i64).collect()),
        DType::I8 => TensorData::I8(ints(100.0).map(|x| x as i8).collect()),
        DType::U8 => TensorData::U8(ints(100.0).map(|x| x.abs() as u8).collect()),
        DType::Bool => TensorData::Bool(v.iter().map(|&x| (x > 0.0) as u8).collect()),
    };
    Tensor::from_data(shape, d).unwrap()
}

struct Builder {
    graph: Graph,
    weights: BTreeMap<String, Tensor>,
    /// Every value with its type when known (inference failed -> None).
    values: Vec<(String, Option<ValueType>)>,
    seed: u64,
}

impl Builder {
    fn pick(&self, p: u8) -> (String, Option<ValueType>) {
        self.values[p as usize % self.values.len()].clone()
    }

    /// A fresh weight: `shape` when small enough, else `[1]`.
    fn weight(&mut self, shape: &[usize], dtype: DType) -> String {
        let ok = wgedge::tensor::checked_numel(shape).is_some_and(|n| n <= MAX_WEIGHT);
        let shape = if ok { shape.to_vec() } else { vec![1] };
        self.seed += 1;
        let name = format!("w{}", self.graph.weights.len());
        self.weights
            .insert(name.clone(), data(dtype, &shape, self.seed));
        self.graph.weights.push(ValueSpec {
            name: name.clone(),
            dtype,
            shape: shape.clone(),
        });
        self.values
            .push((name.clone(), Some(ValueType::new(dtype, &shape))));
        name
    }

    /// Operand `k` of a node: a fresh weight of `shape` (fits) when flag bit `k` is set, else
    /// an existing value.
    fn operand(&mut self, r: &NodeRecipe, k: usize, shape: Option<Vec<usize>>) -> String {
        match shape {
            Some(s) if r.flags & (1 << k) != 0 || self.values.len() < 2 => {
                let dt = if r.flags & (1 << 12) != 0 {
                    r.dtype
                } else {
                    DType::F32
                };
                self.weight(&s, dt)
            }
            _ => self.pick(r.picks[k % 4].wrapping_add(k as u8)).0,
        }
    }

    fn node(&mut self, r: &NodeRecipe) {
        // Mostly a chain: the main operand is the newest value.
        let (x, xt) = if r.picks[0] < 160 {
            self.values.last().unwrap().clone()
        } else {
            self.pick(r.picks[0])
        };
        // Mostly an operand the op can take: rank 4 for conv/pool, f32 for float ops.
        let fits = |t: &Option<ValueType>| {
            t.as_ref().is_some_and(|t| {
                (!matches!(r.kind, 1..=3) || t.shape.len() == 4)
                    && (matches!(r.kind, 9 | 10 | 12..) || t.dtype == DType::F32)
            })
        };
        let (x, xt) = match self.values.iter().rev().find(|(_, t)| fits(t)) {
            Some(v) if !fits(&xt) && r.flags & (1 << 14) == 0 => v.clone(),
            _ => (x, xt),
        };
        let xs: Option<Vec<usize>> = xt.as_ref().map(|t| t.shape.clone());
        let rank4 = xs.as_ref().filter(|s| s.len() == 4).cloned();
        let flag = |b: u16| r.flags & (1 << b) != 0;
        let u = &r.u;
        // Small sizes derived from the attributes (weights are data: keep them small).
        let small = |v: usize| 1 + v % 3;
        let mut ins = vec![x];
        let op: Op = match r.kind {
            0 => {
                let mm = MatMul {
                    trans_a: flag(4),
                    trans_b: flag(5),
                    bias: flag(6),
                    residual: flag(7),
                    act: activation(r.act),
                };
                let k = xs.as_ref().filter(|s| s.len() >= 2).map(|s| mm.k(s));
                let n = small(u[0]);
                let b = k.map(|k| if mm.trans_b { vec![n, k] } else { vec![k, n] });
                ins.push(self.operand(r, 1, b));
                if mm.bias {
                    ins.push(self.operand(r, 2, Some(vec![n])));
                }
                if mm.residual {
                    let out = xs.as_ref().map(|s| {
                        let mut o = s[..s.len().saturating_sub(2)].to_vec();
                        let m = if mm.trans_a {
                            s.last()
                        } else {
                            s.iter().rev().nth(1)
                        };
                        o.extend([m.copied().unwrap_or(1), n]);
                        o
                    });
                    ins.push(self.operand(r, 3, out));
                }
                mm.into()
            }
            1 => {
                let groups = if flag(8) { u[6] } else { 1 };
                let c = Conv2d {
                    stride: [u[0].max(flag(9) as usize), u[1].max(1)],
                    // Hostile but valid padding, often: tall outputs that run, and
                    // 2^30-element ones the memory budget must refuse.
                    pad: match (flag(11), flag(13)) {
                        (true, true) => [32767, 32767, 0, 0],
                        (true, false) => [32767, 0, 0, u[5]],
                        _ => [u[2], u[3], u[4], u[5]],
                    },
                    dilation: [1 + u[7] % 2, if flag(10) { u[7] } else { 1 }],
                    groups,
                    bias: flag(6),
                    residual: flag(7),
                    act: activation(r.act),
                };
                let g = groups.max(1);
                let cout = g.saturating_mul(small(u[0]));
                let w = rank4
                    .as_ref()
                    .map(|s| vec![cout, s[1] / g, small(u[1]), small(u[2])]);
                ins.push(self.operand(r, 1, w));
                if c.bias {
                    ins.push(self.operand(r, 2, Some(vec![cout])));
                }
                if c.residual {
                    // Any value: mostly a shape error; the session decides.
                    ins.push(self.operand(r, 3, None));
                }
                c.into()
            }
            2 => Pool2d {
                kind: if flag(4) {
                    PoolKind::Max
                } else {
                    PoolKind::Avg
                },
                // A window far larger than the input, often.
                kernel: if flag(11) {
                    [40000, 3]
                } else {
                    [u[0].max(1), u[1].max(flag(9) as usize)]
                },
                stride: [u[2].max(1), u[3]],
                pad: if flag(11) {
                    [39999, 1, 39999, 1]
                } else {
                    [u[4] % 2, u[5] % 2, u[6], u[7] % 3]
                },
                count_include_pad: flag(5),
            }
            .into(),
            3 => GlobalAvgPool {}.into(),
            4 => {
                let b = xs.as_ref().map(|s| {
                    let keep = s.len().saturating_sub(u[0] % 3);
                    let mut t = s[keep..].to_vec();
                    if let (true, Some(d)) = (flag(8), t.first_mut()) {
                        *d = 1;
                    }
                    t
                });
                ins.push(self.operand(r, 1, b));
                Binary {
                    kind: [
                        BinaryKind::Add,
                        BinaryKind::Sub,
                        BinaryKind::Mul,
                        BinaryKind::Div,
                    ][u[1] % 4],
                    act: activation(r.act),
                }
                .into()
            }
            5 => Unary {
                act: activation(r.act),
            }
            .into(),
            6 => Softmax {
                axis: r.i.first().copied().unwrap_or(-1),
            }
            .into(),
            7 => {
                let axis = r.i.first().copied().unwrap_or(-1);
                let norm = xs.as_ref().and_then(|s| {
                    let a = if axis < 0 {
                        axis + s.len() as i64
                    } else {
                        axis
                    };
                    (0..s.len() as i64)
                        .contains(&a)
                        .then(|| s[a as usize..].to_vec())
                });
                ins.push(self.operand(r, 1, norm.clone()));
                ins.push(self.operand(r, 2, norm));
                LayerNorm { axis, eps: r.eps }.into()
            }
            8 => {
                let c = xs.as_ref().filter(|s| s.len() >= 2).map(|s| vec![s[1]]);
                for k in 1..5 {
                    ins.push(self.operand(r, k, c.clone()));
                }
                BatchNorm { eps: r.eps }.into()
            }
            9 => {
                let shape = if flag(8) {
                    // A valid reshape: the element count split as [-1, last].
                    let last = xs.as_ref().and_then(|s| s.last().copied()).unwrap_or(1);
                    vec![-1, last as i64]
                } else {
                    r.i.clone()
                };
                Reshape { shape }.into()
            }
            10 => Flatten {
                axis: if flag(8) { u[0] } else { u[0] % 4 },
            }
            .into(),
            11 => {
                let rank = xs.as_ref().map_or(2, |s| s.len());
                let mut perm: Vec<usize> = (0..rank).rev().collect();
                if flag(8) {
                    perm.rotate_left(1.min(rank));
                }
                if flag(9) {
                    if let Some(p) = perm.first_mut() {
                        *p = u[0];
                    }
                }
                Transpose { perm }.into()
            }
            12 => {
                for k in 1..=(u[0] % 3) {
                    ins.push(self.operand(r, k, xs.clone()));
                }
                Concat {
                    axis: r.i.first().copied().unwrap_or(0),
                }
                .into()
            }
            13 => Shape {}.into(),
            _ => Cast { to: r.dtype }.into(),
        };
        let types: Option<Vec<ValueType>> = ins
            .iter()
            .map(|n| {
                self.values
                    .iter()
                    .find(|(v, _)| v == n)
                    .and_then(|(_, t)| t.clone())
            })
            .collect();
        let out_type = types.and_then(|t| op.infer(&t).ok());
        let i = self.graph.nodes.len();
        self.graph.nodes.push(Node {
            name: format!("n{i}"),
            op,
            inputs: ins,
            output: format!("v{i}"),
        });
        self.values.push((format!("v{i}"), out_type));
    }
}

/// Interprets a recipe: the graph and its weights (not yet checked).
fn build(r: &GraphRecipe) -> (Graph, BTreeMap<String, Tensor>) {
    let mut b = Builder {
        graph: Graph::default(),
        weights: BTreeMap::new(),
        values: Vec::new(),
        seed: r.seed,
    };
    for (i, inp) in r.inputs.iter().enumerate() {
        let name = format!("x{i}");
        b.graph.inputs.push(ValueSpec {
            name: name.clone(),
            dtype: inp.dtype,
            shape: inp.shape.clone(),
        });
        b.values
            .push((name, Some(ValueType::new(inp.dtype, &inp.shape))));
    }
    for n in &r.nodes {
        b.node(n);
    }
    let last = b.values.last().unwrap().0.clone();
    b.graph.outputs.push(last);
    for &o in &r.outputs {
        let name = b.pick(o).0;
        if !b.graph.outputs.contains(&name) {
            b.graph.outputs.push(name);
        }
    }
    if let Some(f) = r.format {
        pack_a_weight(&mut b, f);
    }
    (b.graph, b.weights)
}

/// Stores one f32 weight of rank >= 1 in a packed format (its parts replace it in the file).
fn pack_a_weight(b: &mut Builder, f: u8) {
    let formats: [&str; 6] = [
        r#"{"kind":"quant","bits":8}"#,
        r#"{"kind":"quant","bits":4,"group":2,"zero_points":true}"#,
        r#"{"kind":"quant","bits":8,"pow2":true}"#,
        r#"{"kind":"sparse","layout":"csr"}"#,
        r#"{"kind":"sparse","layout":"bsr","r":1,"c":1,"values":"i8"}"#,
        r#"{"kind":"sparse","layout":"nm","n":1,"m":1,"values":"f16"}"#,
    ];
    let fmt: WeightFormat = serde_json::from_str(formats[f as usize % formats.len()]).unwrap();
    let Some(spec) = b
        .graph
        .weights
        .iter()
        .find(|w| w.dtype == DType::F32 && !w.shape.is_empty())
        .cloned()
    else {
        return;
    };
    let Ok(parts) = fmt.encode(&spec.name, &b.weights[&spec.name]) else {
        return;
    };
    b.weights.remove(&spec.name);
    b.weights.extend(parts);
    b.graph.formats.insert(spec.name, fmt);
}

// ---------------------------------------------------------------------------------------------
// Running a case.

fn options() -> SessionOptions {
    SessionOptions {
        max_memory: Some(BUDGET),
        ..Default::default()
    }
}

/// Operations a run costs (saturating), when the graph checks.
fn cost(g: &Graph) -> Option<u64> {
    let c = g.check_types().ok()?;
    Some(c.order.iter().fold(0u64, |acc, &i| {
        let n = &g.nodes[i];
        let ins: Vec<ValueType> = n.inputs.iter().map(|v| c.types[v].clone()).collect();
        acc.saturating_add(n.op.flops(&ins, &c.types[&n.output]))
    }))
}

/// Loads, plans and runs; every step may fail, none may panic. Returns whether it ran.
fn exercise_model(model: &Model) -> bool {
    // GPU planning needs no device: kernel choice and lowering (parameter words, workgroup
    // counts) run against a profile, optimised or naive.
    let mut profile = DeviceProfile::portable();
    for naive in [false, true] {
        profile.naive_only = naive;
        let _ = Plan::new(
            &model.graph,
            &model.weights,
            Some(&profile),
            PlanOptions::default(),
        );
    }
    // Compute is not budgeted (memory is): a legitimately huge amount of work is skipped so
    // the test cannot hang — graphs are small, this only trims the hostile-window cases.
    if cost(&model.graph).is_none_or(|c| c > MAX_OPS) {
        return false;
    }
    // Unoptimised too: the graph as written reaches the planner and the executor.
    let plain = Session::cpu(
        model,
        SessionOptions {
            optimize: false,
            ..options()
        },
    );
    if let Ok(s) = plain {
        run(model, &s);
    }
    let Ok(session) = Session::cpu(model, options()) else {
        return false;
    };
    run(model, &session)
}

fn run(model: &Model, session: &Session) -> bool {
    let feeds: Vec<(String, Tensor)> = model
        .graph
        .inputs
        .iter()
        .enumerate()
        .map(|(i, v)| (v.name.clone(), data(v.dtype, &v.shape, i as u64 + 7)))
        .collect();
    let refs: Vec<(&str, &Tensor)> = feeds.iter().map(|(n, t)| (n.as_str(), t)).collect();
    session.run(&refs).is_ok()
}

fn exercise_bytes(bytes: &[u8]) -> bool {
    match Model::from_bytes(bytes) {
        Ok(m) => exercise_model(&m),
        Err(_) => false,
    }
}

/// Runs `f`, turning a panic into a test failure that shows `what` (the case).
fn no_panic<T>(what: impl Fn() -> String, f: impl FnOnce() -> T) -> Result<T, TestCaseError> {
    let t = std::time::Instant::now();
    let r = catch_unwind(AssertUnwindSafe(f));
    if t.elapsed().as_secs_f64() > SLOW_S {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "fuzz: slow case ({:?}): {}",
            t.elapsed(),
            what()
        );
    }
    r.map_err(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        TestCaseError::fail(format!("panic: {msg}\ncase: {}", what()))
    })
}

fn graph_json(g: &Graph) -> String {
    serde_json::to_string(g).unwrap_or_else(|e| format!("<{e}>"))
}

/// `cases` per property, or `WGEDGE_FUZZ_CASES` when set (long hunts).
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("WGEDGE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        // No files: failures print the case instead.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Byte-level corruption of valid model files.

#[derive(Debug, Clone)]
enum Mutation {
    /// Cut the file to this fraction (per mille) of its length.
    Truncate(u16),
    /// Flip bit `bit` of the byte at this position (modulo the length).
    Flip(u32, u8),
    /// Replace the 8-byte header length.
    HeaderLen(u64),
    /// Edit the safetensors header JSON (tensor dtypes, shapes, offsets) or the graph JSON
    /// inside it: leaf `k` (modulo the leaf count) becomes `v`, or is deleted.
    Header(u16, Edit),
    Graph(u16, Edit),
}

#[derive(Debug, Clone)]
enum Edit {
    Set(Value),
    /// Add to a number (a plausible neighbour of a valid value); other leaves are kept.
    Bump(i8),
    /// Another leaf's value (renames value references, swaps op names...).
    CopyFrom(u16),
    Delete,
}

fn json_value() -> impl Strategy<Value = Value> {
    use serde_json::json;
    prop::sample::select(vec![
        json!(0),
        json!(1),
        json!(2),
        json!(-1),
        json!(3),
        json!(32767),
        json!(65535),
        json!(2147483647u64),
        json!(4294967295u64),
        json!(4294967296u64),
        json!(4294967301u64),
        json!(1u64 << 40),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(1.5),
        json!(1e300),
        json!(null),
        json!(true),
        json!("x0"),
        json!("F32"),
        json!("I64"),
        json!("f32"),
        json!("bool"),
        json!("conv2d"),
        json!("reshape"),
        json!([]),
        json!([0]),
        json!([4294967296u64, 1]),
        json!([1, 1, 1, 1, 1, 1, 1, 1, 1, 1]),
        json!({}),
    ])
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        6 => json_value().prop_map(Edit::Set),
        3 => any::<i8>().prop_map(Edit::Bump),
        2 => any::<u16>().prop_map(Edit::CopyFrom),
        1 => Just(Edit::Delete),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        1 => (0u16..1000).prop_map(Mutation::Truncate),
        2 => (any::<u32>(), 0u8..8).prop_map(|(p, b)| Mutation::Flip(p, b)),
        1 => prop::sample::select(vec![0u64, 1, 7, 8, 100, 1 << 20, u32::MAX as u64, u64::MAX])
            .prop_map(Mutation::HeaderLen),
        3 => (any::<u16>(), edit()).prop_map(|(k, e)| Mutation::Header(k, e)),
        6 => (any::<u16>(), edit()).prop_map(|(k, e)| Mutation::Graph(k, e)),
    ]
}

/// JSON pointers of every leaf (and every empty container) of `v`.
fn leaves(v: &Value, at: String, out: &mut Vec<String>) {
    let esc = |k: &str| k.replace('~', "~0").replace('/', "~1");
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, c) in m {
                leaves(c, format!("{at}/{}", esc(k)), out);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for (i, c) in a.iter().enumerate() {
                leaves(c, format!("{at}/{i}"), out);
            }
        }
        _ => out.push(at),
    }
}

fn apply_edit(root: &mut Value, k: u16, e: &Edit) {
    let mut ls = Vec::new();
    leaves(root, String::new(), &mut ls);
    if ls.is_empty() {
        return;
    }
    let path = ls[k as usize % ls.len()].clone();
    match e {
        Edit::Set(v) => {
            if let Some(slot) = root.pointer_mut(&path) {
                *slot = v.clone();
            }
        }
        Edit::Bump(d) => {
            if let Some(slot) = root.pointer_mut(&path) {
                if let Some(n) = slot.as_i64() {
                    *slot = Value::from(n.saturating_add(*d as i64));
                }
            }
        }
        Edit::CopyFrom(j) => {
            let v = root.pointer(&ls[*j as usize % ls.len()]).cloned();
            if let (Some(v), Some(slot)) = (v, root.pointer_mut(&path)) {
                *slot = v;
            }
        }
        Edit::Delete => {
            let (parent, key) = path.rsplit_once('/').unwrap_or(("", ""));
            match root.pointer_mut(parent) {
                Some(Value::Object(m)) => {
                    m.remove(&key.replace("~1", "/").replace("~0", "~"));
                }
                Some(Value::Array(a)) => {
                    if let Ok(i) = key.parse::<usize>() {
                        if i < a.len() {
                            a.remove(i);
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

/// The file's header JSON and its data section, when the file still parses that far.
fn split_file(bytes: &[u8]) -> Option<(Value, &[u8])> {
    let n = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?) as usize;
    let header = bytes.get(8..8usize.checked_add(n)?)?;
    Some((serde_json::from_slice(header).ok()?, &bytes[8 + n..]))
}

fn join_file(header: &Value, data: &[u8]) -> Vec<u8> {
    let mut h = serde_json::to_vec(header).unwrap();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend(data);
    out
}

fn mutate(bytes: &mut Vec<u8>, m: &Mutation) {
    match m {
        Mutation::Truncate(f) => bytes.truncate(bytes.len() * *f as usize / 1000),
        Mutation::Flip(p, b) => {
            if !bytes.is_empty() {
                let i = *p as usize % bytes.len();
                bytes[i] ^= 1 << b;
            }
        }
        Mutation::HeaderLen(n) => {
            if bytes.len() >= 8 {
                bytes[..8].copy_from_slice(&n.to_le_bytes());
            }
        }
        Mutation::Header(k, e) => {
            if let Some((mut h, data)) = split_file(bytes) {
                apply_edit(&mut h, *k, e);
                *bytes = join_file(&h, data);
            }
        }
        Mutation::Graph(k, e) => {
            let Some((mut h, data)) = split_file(bytes) else {
                return;
            };
            let key = wgedge::model::GRAPH_KEY;
            let Some(json) = h["__metadata__"][key].as_str() else {
                return;
            };
            let Ok(mut g) = serde_json::from_str::<Value>(json) else {
                return;
            };
            apply_edit(&mut g, *k, e);
            h["__metadata__"][key] = Value::String(g.to_string());
            *bytes = join_file(&h, data);
        }
    }
}

/// Recipes whose attributes are all sane, so most give valid models to corrupt.
fn sane_recipe() -> impl Strategy<Value = GraphRecipe> {
    graph_recipe().prop_map(|mut r| {
        for n in &mut r.nodes {
            for v in &mut n.u {
                *v %= 4;
            }
            for v in &mut n.i {
                *v = (*v).clamp(-3, 3);
            }
            if !n.eps.is_finite() {
                n.eps = 1e-5;
            }
            n.act %= 16;
            n.flags &= !(1 << 11); // no hostile padding or windows
        }
        r
    })
}

// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(10_000))]

    /// Random graphs: building, checking, saving, loading, planning and running return `Ok`
    /// or `Err`, never panic; a model that checks also survives its own file round trip.
    #[test]
    fn random_graphs_never_panic(r in graph_recipe()) {
        let (graph, weights) = build(&r);
        let show = || format!("{r:?}\ngraph: {}", graph_json(&graph));
        let model = no_panic(show, || Model::new(graph.clone(), weights.clone()))?;
        if let Ok(model) = model {
            let bytes = no_panic(show, || model.to_bytes())?;
            let bytes = bytes.map_err(|e| TestCaseError::fail(format!("to_bytes: {e}\n{}", show())))?;
            let back = no_panic(show, || Model::from_bytes(&bytes))?;
            let back = back.map_err(|e| TestCaseError::fail(format!("reload: {e}\n{}", show())))?;
            prop_assert_eq!(&back.graph, &model.graph);
            no_panic(show, || exercise_model(&model))?;
        }
    }

    /// Corrupted model files: truncated, bit-flipped, with edited header lengths, tensor
    /// entries or graph JSON; loading and running return `Ok` or `Err`, never panic.
    #[test]
    fn corrupt_files_never_panic(
        r in sane_recipe(),
        muts in prop::collection::vec(mutation(), 1..4),
    ) {
        let (graph, weights) = build(&r);
        let Ok(model) = Model::new(graph, weights) else { return Ok(()) };
        let mut bytes = model.to_bytes().unwrap();
        for m in &muts {
            mutate(&mut bytes, m);
        }
        let show = || {
            let graph = split_file(&bytes)
                .map(|(h, _)| h.to_string())
                .unwrap_or_else(|| "<header does not parse>".into());
            format!("mutations {muts:?}\nrecipe {r:?}\nheader {graph}")
        };
        no_panic(show, || exercise_bytes(&bytes))?;
    }
}

/// The generators reach the interesting paths: a good share of random graphs check and run,
/// and some corrupted files still load (so edits get past the container).
#[test]
fn generators_reach_running_models() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut ran, mut made, mut loaded, n) = (0, 0, 0, 300);
    for _ in 0..n {
        let r = sane_recipe().new_tree(&mut runner).unwrap().current();
        let (g, w) = build(&r);
        if let Ok(m) = Model::new(g, w) {
            made += 1;
            ran += exercise_model(&m) as usize;
            let mut bytes = m.to_bytes().unwrap();
            let muts = mutation().new_tree(&mut runner).unwrap().current();
            mutate(&mut bytes, &muts);
            loaded += Model::from_bytes(&bytes).is_ok() as usize;
        }
    }
    assert!(ran * 10 >= n, "only {ran} of {n} random graphs ran");
    println!("{made} of {n} sane graphs checked, {ran} ran, {loaded} corrupted files loaded");
    assert!(
        loaded * 10 >= made,
        "only {loaded} of {made} corrupted files loaded"
    );
}

/// Prints why generated graphs fail (run with `--ignored --nocapture` when tuning).
#[test]
#[ignore]
fn generator_stats() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut why: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..5000 {
        let r = graph_recipe().new_tree(&mut runner).unwrap().current();
        let (g, w) = build(&r);
        let e = Model::new(g, w).and_then(|m| {
            let s = Session::cpu(&m, options())?;
            let feeds: Vec<(String, Tensor)> = m
                .graph
                .inputs
                .iter()
                .map(|v| (v.name.clone(), data(v.dtype, &v.shape, 1)))
                .collect();
            let refs: Vec<(&str, &Tensor)> = feeds.iter().map(|(n, t)| (n.as_str(), t)).collect();
            s.run(&refs)
        });
        let (g2, _) = build(&r);
        let biggest = g2
            .check_types()
            .ok()
            .and_then(|c| c.types.values().filter_map(|t| t.bytes()).max())
            .unwrap_or(0);
        let key = match e {
            Ok(_) if biggest > 1 << 20 => "ok, a value over 1 MiB".to_string(),
            Ok(_) => "ok".to_string(),
            Err(e) => e
                .to_string()
                .replace(|c: char| c.is_ascii_digit(), "")
                .chars()
                .take(90)
                .collect(),
        };
        *why.entry(key).or_default() += 1;
    }
    let mut v: Vec<_> = why.into_iter().collect();
    v.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    for (k, n) in v.iter().take(400) {
        println!("{n:5} {k}");
    }
}
