//! Runs a `Plan` on the CPU: each node with the kernel the plan names for it (a fast kernel of
//! `crate::cpu`, or the reference op), inside the session's thread pool.

use crate::error::Result;
use crate::sched::{Plan, ValueKind};
use crate::tensor::Tensor;
use std::collections::BTreeMap;
use std::sync::Arc;

pub struct CpuExecutor {
    weights: Arc<BTreeMap<String, Tensor>>,
    pool: crate::cpu::Pool,
}

impl CpuExecutor {
    /// An executor over the session's weights whose kernels run on `pool`.
    pub fn new(weights: Arc<BTreeMap<String, Tensor>>, pool: crate::cpu::Pool) -> Self {
        CpuExecutor { weights, pool }
    }

    /// Runs the plan; `inputs` are in graph input order and already checked by the session.
    /// Each activation is dropped after its last reader, following the plan's liveness.
    pub fn run(&self, plan: &Plan, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        self.pool.install(|| self.run_nodes(plan, inputs))
    }

    fn run_nodes(&self, plan: &Plan, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let mut live: Vec<Option<Tensor>> = vec![None; plan.values.len()];
        for (k, &v) in plan.inputs.iter().enumerate() {
            live[v] = Some(inputs[k].clone());
        }
        for (step, node) in plan.nodes.iter().enumerate() {
            let ins: Vec<&Tensor> = node
                .inputs
                .iter()
                .map(|&v| match plan.values[v].kind {
                    ValueKind::Weight => self
                        .weights
                        .get(&plan.values[v].name)
                        .ok_or_else(|| crate::Error::MissingWeight(plan.values[v].name.clone())),
                    _ => live[v].as_ref().ok_or_else(|| {
                        crate::Error::graph(format!(
                            "value '{}' read before it was computed",
                            plan.values[v].name
                        ))
                    }),
                })
                .collect::<Result<_>>()?;
            let out = node.op.run_cpu(&node.kernel, &ins)?;
            live[node.output] = Some(out);
            for &v in &node.inputs {
                if plan.values[v].kind != ValueKind::Weight
                    && plan.intervals[v].end <= step
                    && !plan.outputs.contains(&v)
                {
                    live[v] = None;
                }
            }
        }
        plan.outputs
            .iter()
            .map(|&v| {
                // A graph output may be a weight itself (nothing computes it).
                if plan.values[v].kind == ValueKind::Weight {
                    if let Some(t) = self.weights.get(&plan.values[v].name) {
                        return Ok(t.clone());
                    }
                }
                live[v].clone().ok_or_else(|| {
                    crate::Error::graph(format!(
                        "output '{}' was not computed",
                        plan.values[v].name
                    ))
                })
            })
            .collect()
    }
}
