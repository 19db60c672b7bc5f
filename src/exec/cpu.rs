//! Runs a `Plan` on the CPU: each node with the kernel the plan names for it (a fast kernel of
//! `crate::cpu`, or the reference op), inside the session's thread pool.

use crate::error::Result;
use crate::sched::{Plan, ValueKind};
use crate::tensor::Tensor;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Plans under this many FLOPs run on the calling thread. Handing a run to a pool worker costs
/// ~12 µs (measured on the 2-core AMD EPYC), and a plan this small is done before a second
/// worker helps: the MLP 784-512-512-10 at batch 1 (1.3 MFLOP, a weight-streaming GEMV chain)
/// took 0.056 ms on one thread and 0.063 ms on two (`tools/cpu_vs_numpy.py`, one run, load ~4).
const SERIAL_PLAN_FLOPS: u64 = 2_000_000;

pub struct CpuExecutor {
    weights: Arc<BTreeMap<String, Tensor>>,
    pool: crate::cpu::Pool,
}

impl CpuExecutor {
    /// An executor over the session's weights whose kernels run on `pool`.
    pub fn new(weights: Arc<BTreeMap<String, Tensor>>, pool: crate::cpu::Pool) -> Self {
        CpuExecutor { weights, pool }
    }

    /// Host bytes of the weights the executor holds (packed and sparse weights as stored,
    /// decoded ones as f32): what a CPU session keeps in memory for its weights.
    pub fn weight_bytes(&self) -> u64 {
        self.weights.values().map(|t| t.bytes().len() as u64).sum()
    }

    /// Runs the plan; `inputs` are in graph input order and already checked by the session.
    /// Each activation is dropped after its last reader, following the plan's liveness.
    pub fn run(&self, plan: &Plan, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        if plan.flops() < SERIAL_PLAN_FLOPS {
            return crate::cpu::serial(|| self.run_nodes(plan, inputs));
        }
        self.pool.install(|| self.run_nodes(plan, inputs))
    }

    fn run_nodes(&self, plan: &Plan, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let mut live: Vec<Option<Tensor>> = vec![None; plan.values.len()];
        for (k, &v) in plan.inputs.iter().enumerate() {
            live[v] = Some(inputs[k].clone());
        }
        for (step, node) in plan.nodes.iter().enumerate() {
            let mut ins: Vec<&Tensor> = Vec::with_capacity(node.inputs.len() + 2);
            let mut as_stored = false;
            for &v in &node.inputs {
                let pv = &plan.values[v];
                if pv.cpu_csr {
                    // The sparse CPU kernel reads the weight as stored: descriptor and parts.
                    as_stored = true;
                    for n in crate::ops::cpu_fast::sparse_names(&pv.name, &pv.format) {
                        ins.push(
                            self.weights
                                .get(&n)
                                .ok_or_else(|| crate::Error::MissingWeight(n.clone()))?,
                        );
                    }
                    continue;
                }
                if pv.cpu_packed {
                    // A packed CPU kernel reads the weight as stored: descriptor and parts.
                    for n in crate::ops::cpu_fast::packed_names(&pv.name, &pv.format) {
                        ins.push(
                            self.weights
                                .get(&n)
                                .ok_or_else(|| crate::Error::MissingWeight(n.clone()))?,
                        );
                    }
                    as_stored = true;
                    continue;
                }
                ins.push(match pv.kind {
                    ValueKind::Weight => self
                        .weights
                        .get(&pv.name)
                        .ok_or_else(|| crate::Error::MissingWeight(pv.name.clone()))?,
                    _ => live[v].as_ref().ok_or_else(|| {
                        crate::Error::graph(format!(
                            "value '{}' read before it was computed",
                            pv.name
                        ))
                    })?,
                });
            }
            let out = if as_stored {
                let ty = plan.values[node.output].value_type();
                node.op.run_cpu_as(&node.kernel, &ins, &ty)?
            } else {
                node.op.run_cpu(&node.kernel, &ins)?
            };
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
