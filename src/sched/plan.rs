//! `Plan`: the run as data — values with shapes and buffer slots, nodes in order with their
//! kernel and lowered dispatches. Built once per session; executors only follow it.

use super::memory::{self, MemoryPlan};
use super::order::liveness;
use super::select::select;
use crate::error::{Error, Result};
use crate::graph::{Graph, Origin};
use crate::ops::{Dispatch, Kernel, LowerCtx, Op};
use crate::profile::DeviceProfile;
use crate::tensor::{numel, Tensor};
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
    pub shape: Vec<usize>,
    pub kind: ValueKind,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlanNode {
    pub name: String,
    pub op: Op,
    /// Value ids read, in op input order.
    pub inputs: Vec<usize>,
    pub output: usize,
    pub kernel: Kernel,
    /// GPU dispatches (empty for a CPU plan).
    pub dispatches: Vec<Dispatch>,
    pub flops: u64,
}

/// Options that change planning (not results).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanOptions {
    /// Share buffers between values with disjoint lifetimes (off only to hunt aliasing bugs).
    pub reuse: bool,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            reuse: std::env::var("WGEDGE_NO_REUSE")
                .map(|v| v.is_empty() || v == "0")
                .unwrap_or(true),
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
    /// Lifetime of each value in steps (for invariant checks and reports).
    pub intervals: Vec<super::order::Interval>,
}

impl Plan {
    /// Plans `graph` (already checked and rewritten) for a device (`None`: CPU, no lowering).
    pub fn new(
        graph: &Graph,
        weights: &BTreeMap<String, Tensor>,
        profile: Option<&DeviceProfile>,
        opts: PlanOptions,
    ) -> Result<Plan> {
        let checked = graph.check(weights)?;
        let origins = graph.origins()?;
        let mut ids: HashMap<String, usize> = HashMap::new();
        let mut values = Vec::new();
        let mut add = |name: &str, kind: ValueKind, values: &mut Vec<PlanValue>| {
            let shape = checked.shapes[name].clone();
            ids.insert(name.to_string(), values.len());
            values.push(PlanValue {
                name: name.into(),
                bytes: (numel(&shape) * 4) as u64,
                shape,
                kind,
            });
        };
        for (i, v) in graph.inputs.iter().enumerate() {
            add(&v.name, ValueKind::Input(i), &mut values);
        }
        for v in &graph.weights {
            add(&v.name, ValueKind::Weight, &mut values);
        }
        for &i in &checked.order {
            add(&graph.nodes[i].output, ValueKind::Activation, &mut values);
        }
        let mut nodes = Vec::with_capacity(checked.order.len());
        for &i in &checked.order {
            let n = &graph.nodes[i];
            let inputs: Vec<usize> = n.inputs.iter().map(|v| ids[v.as_str()]).collect();
            let in_shapes: Vec<Vec<usize>> =
                inputs.iter().map(|&v| values[v].shape.clone()).collect();
            let is_const: Vec<bool> = n
                .inputs
                .iter()
                .map(|v| matches!(origins.get(v.as_str()), Some(Origin::Weight(_))))
                .collect();
            let output = ids[n.output.as_str()];
            let out_shape = values[output].shape.clone();
            let (kernel, dispatches) = match profile {
                Some(p) => {
                    let kernel = select(&n.op, &in_shapes, &is_const, p);
                    let cx = LowerCtx {
                        in_shapes: &in_shapes,
                        out_shape: &out_shape,
                        is_const: &is_const,
                        kernel,
                        max_workgroups: p.limits.max_compute_workgroups_per_dimension,
                    };
                    let ds = n.op.lower(&cx).map_err(|e| match e {
                        Error::Unsupported { op, what, backend } => Error::Unsupported {
                            op: format!("{op} (node '{}')", n.name),
                            what,
                            backend,
                        },
                        other => other,
                    })?;
                    (kernel, ds)
                }
                None => (Kernel::Standard, Vec::new()),
            };
            let flops = n.op.flops(&in_shapes, &out_shape);
            nodes.push(PlanNode {
                name: n.name.clone(),
                op: n.op.clone(),
                inputs,
                output,
                kernel,
                dispatches,
                flops,
            });
        }
        let inputs = graph.inputs.iter().map(|v| ids[v.name.as_str()]).collect();
        let outputs: Vec<usize> = graph.outputs.iter().map(|o| ids[o.as_str()]).collect();

        // Lifetimes over node steps; weights are not planned (they have their own buffers).
        let mut defined_at = vec![None; values.len()];
        for (step, n) in nodes.iter().enumerate() {
            defined_at[n.output] = Some(step);
        }
        let uses: Vec<Vec<usize>> = nodes.iter().map(|n| n.inputs.clone()).collect();
        let intervals = liveness(values.len(), &defined_at, &uses, &outputs);
        let sized: Vec<_> = values
            .iter()
            .zip(&intervals)
            .map(|(v, iv)| (v.kind != ValueKind::Weight).then_some((v.bytes, *iv)))
            .collect();
        let align = profile
            .map(|p| p.limits.min_storage_buffer_offset_alignment as u64)
            .unwrap_or(256);
        let memory = memory::plan(&sized, opts.reuse, align);
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
                if d.bindings.len() as u32 > l.max_storage_buffers_per_stage {
                    return Err(Error::DeviceLimit {
                        what: format!("storage buffers of node '{}'", n.name),
                        needed: d.bindings.len() as u64,
                        max: l.max_storage_buffers_per_stage as u64,
                    });
                }
            }
        }
        Ok(())
    }

    /// Total FLOPs of one run.
    pub fn flops(&self) -> u64 {
        self.nodes.iter().map(|n| n.flops).sum()
    }

    /// A readable table of the plan: one line per node.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for n in &self.nodes {
            let ins: Vec<&str> = n
                .inputs
                .iter()
                .map(|&i| self.values[i].name.as_str())
                .collect();
            let out = &self.values[n.output];
            s.push_str(&format!(
                "  {:<28} {:<16} {:<14} {:?} <- {}\n",
                n.name,
                n.op.name(),
                n.kernel.name(),
                out.shape,
                ins.join(", ")
            ));
        }
        s
    }
}
