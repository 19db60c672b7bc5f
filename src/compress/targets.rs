//! What the compression passes share: which matmul/conv weights a pass may rewrite (and why the
//! others are left alone), the `[K, N]` -> `[N, K]` re-layout that makes a matmul weight's rows
//! its output channels, and report formatting.

use crate::error::Error;
use crate::format::matrix_dims;
use crate::graph::Graph;
use crate::ops::Op;
use crate::tensor::{fmt_shape, DType, Tensor};
use std::collections::{BTreeMap, HashMap, HashSet};

/// A matmul/conv weight left alone by a compression pass, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedWeight {
    /// The weight's name.
    pub name: String,
    /// Why it was not rewritten (not selected, layout, shape, dtype, format, or what the pass
    /// refused).
    pub reason: String,
}

/// A weight a pass rewrites: its name, index in `graph.weights`, whether it is a `[K, N]`
/// matmul weight to store transposed (`[N, K]`, with `trans_b` set on its users), and the
/// nodes that read it.
pub(crate) struct Target {
    pub name: String,
    pub index: usize,
    pub transpose: bool,
    pub users: Vec<usize>,
}

/// (node, input index) pairs reading each value.
pub(crate) fn readers(graph: &Graph) -> HashMap<&str, Vec<(usize, usize)>> {
    let mut m: HashMap<&str, Vec<(usize, usize)>> = HashMap::new();
    for (n, node) in graph.nodes.iter().enumerate() {
        for (j, v) in node.inputs.iter().enumerate() {
            m.entry(v.as_str()).or_default().push((n, j));
        }
    }
    m
}

/// A pass's own say on a weight: given its name and its readers' node names, `Err(reason)`
/// leaves it alone (skip and layer lists).
pub(crate) type Chooser<'a> = &'a dyn Fn(&str, &[&str]) -> std::result::Result<(), String>;

/// The weight inputs of matmul and conv nodes, in first-use order, split into those the pass
/// (`verb`: "quantized", "pruned") may rewrite and those left alone with the reason. `chosen`
/// sees the weight's name and its readers' node names and may refuse it (skip or layer lists).
pub(crate) fn select(
    graph: &Graph,
    weights: &BTreeMap<String, Tensor>,
    verb: &str,
    chosen: Chooser,
) -> (Vec<Target>, Vec<SkippedWeight>) {
    let index: HashMap<&str, usize> = (graph.weights.iter().enumerate())
        .map(|(i, w)| (w.name.as_str(), i))
        .collect();
    let readers = readers(graph);
    let (mut targets, mut skipped, mut seen) = (Vec::new(), Vec::new(), HashSet::new());
    for node in &graph.nodes {
        if !matches!(node.op, Op::MatMul(_) | Op::Conv2d(_)) {
            continue;
        }
        let Some(name) = node.inputs.get(1) else {
            continue;
        };
        let Some(&wi) = index.get(name.as_str()) else {
            continue; // an activation, not a constant
        };
        if !seen.insert(name.as_str()) {
            continue;
        }
        let users = &readers[name.as_str()];
        let user_names: Vec<&str> = (users.iter())
            .map(|&(n, _)| graph.nodes[n].name.as_str())
            .collect();
        let result =
            chosen(name, &user_names).and_then(|_| qualify(graph, weights, wi, users, verb));
        match result {
            Ok(transpose) => targets.push(Target {
                name: name.clone(),
                index: wi,
                transpose,
                users: users.iter().map(|&(n, _)| n).collect(),
            }),
            Err(reason) => skipped.push(SkippedWeight {
                name: name.clone(),
                reason,
            }),
        }
    }
    (targets, skipped)
}

/// Whether weight `wi` read by `users` (node, input index) can be rewritten: `Ok(transpose)`
/// (true for a `[K, N]` matmul weight), or the reason it is left alone.
fn qualify(
    graph: &Graph,
    weights: &BTreeMap<String, Tensor>,
    wi: usize,
    users: &[(usize, usize)],
    verb: &str,
) -> std::result::Result<bool, String> {
    let spec = &graph.weights[wi];
    let node = |n: usize| &graph.nodes[n];
    let format = graph.format_of(&spec.name);
    if !format.is_dense() {
        return Err(format!(
            "already stored as {} (only dense f32 weights are {verb})",
            format.label()
        ));
    }
    let data = weights.get(&spec.name);
    if spec.dtype != DType::F32 || data.map(Tensor::dtype) != Some(DType::F32) {
        return Err(format!(
            "dtype {} (only f32 weights are {verb})",
            spec.dtype
        ));
    }
    if let Err(e) = matrix_dims(&spec.shape) {
        let what = match e {
            Error::Unsupported { what, .. } => what,
            other => other.to_string(),
        };
        return Err(format!("shape {}: {what}", fmt_shape(&spec.shape)));
    }
    if let Some(v) =
        (data.and_then(|t| t.f32s("").ok())).and_then(|x| x.iter().find(|v| !v.is_finite()))
    {
        return Err(format!("holds the value {v}"));
    }
    if let Some(&(n, j)) = users
        .iter()
        .find(|&&(n, j)| j != 1 || !matches!(node(n).op, Op::MatMul(_) | Op::Conv2d(_)))
    {
        return Err(format!(
            "also read by node '{}' ({}) as input {j}; only the weight input of matmul and \
             conv is {verb}",
            node(n).name,
            node(n).op.name()
        ));
    }
    let matmuls: Vec<bool> = (users.iter())
        .filter_map(|&(n, _)| match node(n).op {
            Op::MatMul(m) => Some(m.trans_b),
            _ => None,
        })
        .collect();
    if matmuls.is_empty() {
        return Ok(false); // conv weights are OIHW: rows are already output channels
    }
    if spec.shape.len() != 2 {
        return Err(format!(
            "a rank-{} matmul weight {} (batched matmul weights are not {verb})",
            spec.shape.len(),
            fmt_shape(&spec.shape)
        ));
    }
    if matmuls.len() != users.len() {
        return Err("read by both matmul and conv nodes".into());
    }
    if matmuls.iter().all(|&t| t) {
        Ok(false)
    } else if matmuls.iter().all(|&t| !t) {
        Ok(true)
    } else {
        Err("read by matmuls with and without trans_b, so no one layout suits all".into())
    }
}

/// `[K, N]` -> `[N, K]`.
pub(crate) fn transpose2d(x: &[f32], k: usize, n: usize) -> Vec<f32> {
    let mut out = vec![0f32; k * n];
    for r in 0..k {
        for c in 0..n {
            out[c * k + r] = x[r * n + c];
        }
    }
    out
}

/// `before / after` as "3.90x", or "-" when nothing is left.
pub(crate) fn fmt_ratio(before: usize, after: usize) -> String {
    if after == 0 {
        "-".into()
    } else {
        format!("{:.2}x", before as f64 / after as f64)
    }
}
