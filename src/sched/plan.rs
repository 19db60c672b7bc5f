//! `Plan`: the run as data — values with shapes and buffer slots, nodes in order with their
//! kernel and lowered dispatches. Built once per session; executors only follow it.

use super::memory::{self, MemoryPlan};
use super::order::liveness;
use crate::error::{Error, Result};
use crate::format::WeightFormat;
use crate::graph::{Graph, Origin};
use crate::ops::{CpuCtx, Dispatch, LowerCtx, Op, SelectCtx};
use crate::profile::DeviceProfile;
use crate::tensor::{DType, Tensor, ValueType};
use std::collections::{BTreeMap, HashMap};

/// Where a planned value lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// Graph input number i (written by each run).
    Input(usize),
    /// A constant (uploaded once).
    Weight,
    /// Produced by a node.
    Activation,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlanValue {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub kind: ValueKind,
    /// Bytes of the elements (dtype size x element count).
    pub bytes: u64,
    /// The value whose memory this one shares (the output of a reshape or flatten names the
    /// root of its alias chain); its arena range is the root's.
    pub alias_of: Option<usize>,
    /// Storage format (weights only; dense otherwise).
    pub format: WeightFormat,
    /// A packed weight some node reads as f32 (a kernel that does not read its format, or the
    /// CPU): the session decodes it once. Packed weights that stay `false` are never decoded.
    pub decoded: bool,
    /// A sparse weight every reader of which runs the CPU sparse kernel: it stays as stored
    /// (never decoded) and the kernel reads its parts
    /// ([`crate::ops::cpu_fast::sparse_names`]).
    pub cpu_csr: bool,
    /// A quantised or f16 weight every reader of which runs a packed CPU kernel
    /// ([`crate::ops::cpu_fast::reads_packed`]): it stays as stored (never decoded) and the
    /// kernels read its parts ([`crate::ops::cpu_fast::packed_names`]).
    pub cpu_packed: bool,
    /// A sparse weight's stored fraction of its dense elements (`None` for other values); the
    /// CPU kernel choice reads it (the sparse kernel pays off only when sparse enough).
    pub density: Option<f32>,
}

impl PlanValue {
    pub fn value_type(&self) -> ValueType {
        ValueType::new(self.dtype, &self.shape)
    }
}

/// Where a plan node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// GPU dispatches.
    Gpu,
    /// The CPU reference, inside the same run (in a GPU plan: after the GPU work before it is
    /// submitted and its inputs read back; its output is written back for the GPU work after).
    Cpu,
    /// Nothing runs: the output is the input's memory under another shape.
    Alias,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlanNode {
    pub name: String,
    pub op: Op,
    /// Value ids read, in op input order.
    pub inputs: Vec<usize>,
    pub output: usize,
    pub placement: Placement,
    /// Name of the kernel that runs the node (on the CPU: `cpu-ref`, the reference, or a fast
    /// kernel's name such as `cpu-gemm`; `alias` for aliases).
    pub kernel: String,
    /// GPU dispatches (empty unless the node runs on the GPU).
    pub dispatches: Vec<Dispatch>,
    pub flops: u64,
}

/// Options that change planning (not results).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanOptions {
    /// Share buffers between values with disjoint lifetimes (off only to hunt aliasing bugs).
    pub reuse: bool,
    /// A node no GPU kernel takes runs on the CPU inside the plan (else planning fails with
    /// `Unsupported`; the GPU kernel tests turn this off so a kernel cannot silently vanish).
    pub cpu_fallback: bool,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            reuse: true,
            cpu_fallback: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub values: Vec<PlanValue>,
    pub nodes: Vec<PlanNode>,
    /// Value ids of the graph inputs and outputs, in graph order.
    pub inputs: Vec<usize>,
    pub outputs: Vec<usize>,
    pub memory: MemoryPlan,
    /// Lifetime of each value in steps (for invariant checks and reports); an alias root's
    /// covers its aliases' uses.
    pub intervals: Vec<super::order::Interval>,
}

/// The kernel name of nodes that run on the CPU reference.
pub const CPU_KERNEL: &str = crate::ops::CPU_REFERENCE;

impl Plan {
    /// Plans `graph` (already checked and rewritten) for a device (`None`: the CPU backend,
    /// no lowering). `weights` are the session's (dense or decoded) weights.
    pub fn new(
        graph: &Graph,
        weights: &BTreeMap<String, Tensor>,
        profile: Option<&DeviceProfile>,
        opts: PlanOptions,
    ) -> Result<Plan> {
        let checked = graph.check(weights)?;
        let origins = graph.origins()?;
        let mut ids: HashMap<String, usize> = HashMap::new();
        let mut values: Vec<PlanValue> = Vec::new();
        let mut add = |name: &str, kind: ValueKind, values: &mut Vec<PlanValue>| -> Result<()> {
            let ty = &checked.types[name];
            let bytes = ty.bytes().ok_or_else(|| Error::Unsupported {
                op: format!("value '{name}'"),
                what: format!("{ty} overflows a byte count"),
                backend: "any".into(),
            })?;
            ids.insert(name.to_string(), values.len());
            values.push(PlanValue {
                name: name.into(),
                dtype: ty.dtype,
                shape: ty.shape.clone(),
                kind,
                bytes,
                alias_of: None,
                format: graph.format_of(name).clone(),
                decoded: false,
                cpu_csr: false,
                cpu_packed: false,
                density: crate::ops::sparse::density(
                    graph.format_of(name),
                    name,
                    &ty.shape,
                    weights,
                ),
            });
            Ok(())
        };
        for (i, v) in graph.inputs.iter().enumerate() {
            add(&v.name, ValueKind::Input(i), &mut values)?;
        }
        for v in &graph.weights {
            add(&v.name, ValueKind::Weight, &mut values)?;
        }
        for &i in &checked.order {
            add(&graph.nodes[i].output, ValueKind::Activation, &mut values)?;
        }
        let mut nodes = Vec::with_capacity(checked.order.len());
        for &i in &checked.order {
            let n = &graph.nodes[i];
            let inputs: Vec<usize> = n.inputs.iter().map(|v| ids[v.as_str()]).collect();
            let in_types: Vec<ValueType> = inputs.iter().map(|&v| values[v].value_type()).collect();
            let in_shapes: Vec<Vec<usize>> = in_types.iter().map(|t| t.shape.clone()).collect();
            let formats: Vec<WeightFormat> =
                inputs.iter().map(|&v| values[v].format.clone()).collect();
            let is_const: Vec<bool> = n
                .inputs
                .iter()
                .map(|v| matches!(origins.get(v.as_str()), Some(Origin::Weight(_))))
                .collect();
            // Sparse constants' stored fraction, for kernels that pay off only when sparse
            // (computed once per value when it was added).
            let density: Vec<Option<f32>> = inputs.iter().map(|&v| values[v].density).collect();
            let output = ids[n.output.as_str()];
            let out_type = values[output].value_type();
            let (placement, kernel, dispatches) = if n.op.aliases_input() {
                // Reshape/flatten share the input's memory: root of the chain.
                let root = values[inputs[0]].alias_of.unwrap_or(inputs[0]);
                values[output].alias_of = Some(root);
                (Placement::Alias, "alias".to_string(), Vec::new())
            } else {
                match profile {
                    Some(p) => {
                        let cx = SelectCtx {
                            ins: &in_types,
                            out: &out_type,
                            is_const: &is_const,
                            formats: &formats,
                            device: p,
                            density: &density,
                        };
                        let lcx = LowerCtx {
                            in_shapes: &in_shapes,
                            out_shape: &out_type.shape,
                            is_const: &is_const,
                            formats: &formats,
                            max_workgroups: p.limits.max_compute_workgroups_per_dimension,
                        };
                        let name_node = |e| match e {
                            Error::Unsupported { op, what, backend } => Error::Unsupported {
                                op: format!("{op} (node '{}')", n.name),
                                what,
                                backend,
                            },
                            other => other,
                        };
                        let mut lowered = n.op.plan_gpu(&cx, &lcx).map_err(name_node)?;
                        // No kernel reads a packed input as stored: try the dense kernels on
                        // it decoded to f32 (the plan marks it; the session decodes it).
                        let packed: Vec<usize> = (0..inputs.len())
                            .filter(|&i| is_const[i] && !formats[i].is_dense())
                            .collect();
                        if lowered.is_none() && !packed.is_empty() {
                            let dense = vec![WeightFormat::Dense; formats.len()];
                            let cx = SelectCtx {
                                formats: &dense,
                                ..cx
                            };
                            let lcx = LowerCtx {
                                formats: &dense,
                                ..lcx
                            };
                            lowered = n.op.plan_gpu(&cx, &lcx).map_err(name_node)?;
                            if lowered.is_some() {
                                packed
                                    .iter()
                                    .for_each(|&i| values[inputs[i]].decoded = true);
                            }
                        }
                        match lowered {
                            Some((k, ds)) => (Placement::Gpu, k, ds),
                            None if opts.cpu_fallback => {
                                (Placement::Cpu, CPU_KERNEL.to_string(), Vec::new())
                            }
                            None => {
                                let fmts: Vec<String> = formats
                                    .iter()
                                    .filter(|f| !f.is_dense())
                                    .map(|f| f.label())
                                    .collect();
                                let tys: Vec<String> =
                                    in_types.iter().map(|t| t.to_string()).collect();
                                return Err(Error::Unsupported {
                                    op: format!("{} (node '{}')", n.op.name(), n.name),
                                    what: format!(
                                        "inputs {}{} (no GPU kernel, and CPU fallback is off)",
                                        tys.join(", "),
                                        if fmts.is_empty() {
                                            String::new()
                                        } else {
                                            format!(" in formats {}", fmts.join(", "))
                                        }
                                    ),
                                    backend: p.backend.clone(),
                                });
                            }
                        }
                    }
                    None => (Placement::Cpu, CPU_KERNEL.to_string(), Vec::new()),
                }
            };
            if placement != Placement::Gpu {
                for (i, &v) in inputs.iter().enumerate() {
                    if is_const[i] && !formats[i].is_dense() {
                        values[v].decoded = true;
                    }
                }
            }
            let flops = n.op.flops(&in_types, &out_type);
            nodes.push(PlanNode {
                name: n.name.clone(),
                op: n.op.clone(),
                inputs,
                output,
                placement,
                kernel,
                dispatches,
                flops,
            });
        }
        let inputs = graph.inputs.iter().map(|v| ids[v.name.as_str()]).collect();
        let outputs: Vec<usize> = graph.outputs.iter().map(|o| ids[o.as_str()]).collect();
        for &v in &outputs {
            if !values[v].format.is_dense() {
                values[v].decoded = true;
            }
        }

        // Lifetimes over node steps; weights are not planned (they have their own buffers).
        let mut defined_at = vec![None; values.len()];
        for (step, n) in nodes.iter().enumerate() {
            defined_at[n.output] = Some(step);
        }
        let uses: Vec<Vec<usize>> = nodes.iter().map(|n| n.inputs.clone()).collect();
        let mut intervals = liveness(values.len(), &defined_at, &uses, &outputs);
        // An alias root stays alive while any of its aliases is.
        for v in 0..values.len() {
            if let Some(r) = values[v].alias_of {
                let (s, e) = (intervals[v].start, intervals[v].end);
                intervals[r].start = intervals[r].start.min(s);
                intervals[r].end = intervals[r].end.max(e);
            }
        }
        let sized: Vec<_> = values
            .iter()
            .zip(&intervals)
            .map(|(v, iv)| {
                (v.kind != ValueKind::Weight && v.alias_of.is_none())
                    // Arena ranges are bound as arrays of 32-bit words.
                    .then_some((v.bytes.div_ceil(4) * 4, *iv))
            })
            .collect();
        let align = profile
            .map(|p| p.limits.min_storage_buffer_offset_alignment as u64)
            .unwrap_or(256);
        let mut memory = memory::plan(&sized, opts.reuse, align);
        for (v, pv) in values.iter().enumerate() {
            if let Some(r) = pv.alias_of {
                memory.offset_of[v] = memory.offset_of[r];
            }
        }
        let plan = Plan {
            values,
            nodes,
            inputs,
            outputs,
            memory,
            intervals,
        };
        if let Some(p) = profile {
            plan.check_limits(p)?;
        }
        Ok(plan)
    }

    /// Names the CPU kernel of every node placed on the CPU: the op's fast kernel for the case
    /// ([`Op::cpu_kernel`]), or the reference ([`CPU_KERNEL`]) where it has none or when
    /// `reference` forces it. The CPU reads packed weights decoded, as f32.
    pub fn select_cpu_kernels(&mut self, reference: bool, sparse_max_pct: Option<u32>) {
        for n in &mut self.nodes {
            if n.placement != Placement::Cpu {
                continue;
            }
            n.kernel = CPU_KERNEL.to_string();
            if reference {
                continue;
            }
            let ins: Vec<ValueType> = (n.inputs.iter())
                .map(|&v| {
                    let pv = &self.values[v];
                    let dtype = if pv.format.is_dense() {
                        pv.dtype
                    } else {
                        DType::F32
                    };
                    ValueType::new(dtype, &pv.shape)
                })
                .collect();
            let is_const: Vec<bool> = (n.inputs.iter())
                .map(|&v| {
                    let root = self.values[v].alias_of.unwrap_or(v);
                    self.values[root].kind == ValueKind::Weight
                })
                .collect();
            let out = self.values[n.output].value_type();
            let formats: Vec<WeightFormat> = (n.inputs.iter())
                .map(|&v| self.values[v].format.clone())
                .collect();
            let density: Vec<Option<f32>> =
                (n.inputs.iter()).map(|&v| self.values[v].density).collect();
            let cx = CpuCtx {
                ins: &ins,
                out: &out,
                is_const: &is_const,
                formats: &formats,
                density: &density,
                sparse_max_pct,
            };
            if let Some(k) = n.op.cpu_kernel(&cx) {
                n.kernel = k.to_string();
            }
        }
        // A sparse weight read only by the CPU sparse kernel (as its weight operand) is
        // converted to CSR f32 rather than decoded to dense.
        for v in 0..self.values.len() {
            let pv = &self.values[v];
            if pv.kind != ValueKind::Weight || !matches!(pv.format, WeightFormat::Sparse(_)) {
                continue;
            }
            let mut readers = self
                .nodes
                .iter()
                .filter(|n| n.inputs.contains(&v))
                .peekable();
            let sparse_only = readers.peek().is_some()
                && readers.all(|n| {
                    n.placement == Placement::Cpu
                        && n.kernel == crate::ops::cpu_fast::SPMM
                        && n.inputs.iter().position(|&i| i == v) == Some(1)
                        && n.inputs.iter().filter(|&&i| i == v).count() == 1
                });
            let aliased = self.values.iter().any(|a| a.alias_of == Some(v));
            if sparse_only && !aliased && !self.outputs.contains(&v) {
                self.values[v].decoded = false;
                self.values[v].cpu_csr = true;
            }
        }
        // Likewise a quantised weight whose every reader is a CPU kernel reading it packed
        // (as its weight operand) stays packed. A packed-kernel node whose weight must be
        // decoded anyway (another reader needs it as f32) takes its dense kernel instead.
        let packed_reader = |n: &PlanNode, v: usize| {
            n.placement == Placement::Cpu
                && crate::ops::cpu_fast::reads_packed(&n.kernel)
                && n.inputs.iter().position(|&i| i == v) == Some(1)
                && n.inputs.iter().filter(|&&i| i == v).count() == 1
        };
        for v in 0..self.values.len() {
            let pv = &self.values[v];
            if pv.kind != ValueKind::Weight
                || !matches!(pv.format, WeightFormat::Quant(_) | WeightFormat::Half)
            {
                continue;
            }
            let mut readers = self
                .nodes
                .iter()
                .filter(|n| n.inputs.contains(&v))
                .peekable();
            let packed_only = readers.peek().is_some() && readers.all(|n| packed_reader(n, v));
            let aliased = self.values.iter().any(|a| a.alias_of == Some(v));
            if packed_only && !aliased && !self.outputs.contains(&v) {
                self.values[v].decoded = false;
                self.values[v].cpu_packed = true;
            }
        }
        for i in 0..self.nodes.len() {
            let n = &self.nodes[i];
            if n.placement != Placement::Cpu
                || !crate::ops::cpu_fast::reads_packed(&n.kernel)
                || self.values[n.inputs[1]].cpu_packed
            {
                continue;
            }
            let ins: Vec<ValueType> = (n.inputs.iter())
                .map(|&v| ValueType::new(DType::F32, &self.values[v].shape))
                .collect();
            let is_const: Vec<bool> = n.inputs.iter().map(|&v| v == n.inputs[1]).collect();
            let formats = vec![WeightFormat::Dense; n.inputs.len()];
            let density = vec![None; n.inputs.len()];
            let out = self.values[n.output].value_type();
            let cx = CpuCtx {
                ins: &ins,
                out: &out,
                is_const: &is_const,
                formats: &formats,
                density: &density,
                sparse_max_pct: None,
            };
            let k = n.op.cpu_kernel(&cx).unwrap_or(CPU_KERNEL);
            self.nodes[i].kernel = k.to_string();
        }
    }

    /// Nodes that run on the CPU in a GPU plan (by name, in plan order).
    pub fn cpu_nodes(&self) -> Vec<&str> {
        self.nodes
            .iter()
            .filter(|n| n.placement == Placement::Cpu)
            .map(|n| n.name.as_str())
            .collect()
    }

    /// Decodes to f32 (under the weight's own name) the packed weights this plan reads as f32
    /// (`PlanValue::decoded`); the others stay packed only.
    pub fn decode_weights(&self, weights: &mut BTreeMap<String, Tensor>) -> Result<()> {
        for v in self.values.iter().filter(|v| v.decoded) {
            let dense = v.format.decode(&v.name, &v.shape, weights)?;
            weights.insert(v.name.clone(), dense);
        }
        for v in self.values.iter().filter(|v| v.cpu_csr) {
            let spec = crate::ops::cpu_fast::sparse_spec(&v.format, &v.shape)?;
            let name = crate::ops::cpu_fast::sparse_names(&v.name, &v.format)[0].clone();
            weights.insert(name, spec);
            crate::ops::cpu_fast::check_sparse(&v.name, &v.format, weights)?;
        }
        for v in self.values.iter().filter(|v| v.cpu_packed) {
            let spec = crate::ops::cpu_fast::packed_spec(&v.format, &v.shape)?;
            weights.insert(
                crate::ops::cpu_fast::packed_names(&v.name, &v.format)[0].clone(),
                spec,
            );
        }
        Ok(())
    }

    /// Checks buffer and binding sizes against the device before anything is allocated.
    pub fn check_limits(&self, p: &DeviceProfile) -> Result<()> {
        let l = &p.limits;
        let max_bind = l.max_storage_buffer_binding_size.min(l.max_buffer_size);
        for v in &self.values {
            if v.bytes > max_bind {
                return Err(Error::DeviceLimit {
                    what: format!("storage binding for value '{}' {:?}", v.name, v.shape),
                    needed: v.bytes,
                    max: max_bind,
                });
            }
        }
        if self.memory.peak_bytes > l.max_buffer_size {
            return Err(Error::DeviceLimit {
                what: "activation arena buffer".into(),
                needed: self.memory.peak_bytes,
                max: l.max_buffer_size,
            });
        }
        for n in &self.nodes {
            for d in &n.dispatches {
                let buffers = d.bindings.iter().filter(|b| b.is_buffer()).count();
                if buffers as u32 > l.max_storage_buffers_per_stage {
                    return Err(Error::DeviceLimit {
                        what: format!("storage buffers of node '{}'", n.name),
                        needed: buffers as u64,
                        max: l.max_storage_buffers_per_stage as u64,
                    });
                }
            }
        }
        Ok(())
    }

    /// Total FLOPs of one run.
    pub fn flops(&self) -> u64 {
        self.nodes
            .iter()
            .fold(0u64, |a, n| a.saturating_add(n.flops))
    }

    /// A readable table of the plan: one line per node.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for n in &self.nodes {
            let ins: Vec<String> = n
                .inputs
                .iter()
                .map(|&i| {
                    let v = &self.values[i];
                    match (v.format.is_dense(), v.decoded) {
                        (true, _) => v.name.clone(),
                        (false, false) if v.cpu_packed => {
                            format!("{} ({}, packed on the CPU)", v.name, v.format.label())
                        }
                        (false, false) => format!("{} ({})", v.name, v.format.label()),
                        (false, true) => {
                            format!("{} ({}, DECODED to f32)", v.name, v.format.label())
                        }
                    }
                })
                .collect();
            let out = &self.values[n.output];
            let on = match n.placement {
                Placement::Gpu => "gpu",
                Placement::Cpu => "CPU",
                Placement::Alias => "-",
            };
            s.push_str(&format!(
                "  {:<28} {:<16} {:<3} {:<14} {}{:?} <- {}\n",
                n.name,
                n.op.name(),
                on,
                n.kernel,
                if out.dtype == DType::F32 {
                    String::new()
                } else {
                    out.dtype.to_string()
                },
                out.shape,
                ins.join(", ")
            ));
        }
        s
    }
}
