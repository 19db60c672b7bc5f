//! Layer removal: drop nodes whose output can be replaced by one of their own inputs (same
//! dtype and shape), by name or, for residual blocks, by lowest measured importance. What the
//! removed node alone fed (the residual branch of a block, its weights) goes with it.
//!
//! A residual block is an `add` (no fused activation) of two same-typed values where one
//! input's producing subgraph is private to the add (the branch) and the other (the skip) is
//! read elsewhere too or comes first: removing it makes every reader of the sum read the skip
//! instead, so `y = x + f(x)` becomes `y = x`. Its importance is `||f(x)|| / ||x||` over the
//! calibration inputs (or seeded random ones), computed with the CPU reference: a block whose
//! branch barely changes the stream is the cheapest to drop.

use crate::error::{Error, Result};
use crate::graph::{Graph, Origin};
use crate::model::Model;
use crate::ops::{Activation, BinaryKind, Op};
use crate::tensor::{fmt_shape, Tensor};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

/// Which layers [`remove_layers`] drops.
#[derive(Debug, Clone, PartialEq)]
pub enum Removal {
    /// These nodes (by node name or output value name), each replaced by its first input
    /// of the output's dtype and shape (for a residual `add`, the skip input).
    Named(Vec<String>),
    /// The `k` residual blocks of lowest importance (`||branch|| / ||skip||`).
    LowestImportance(usize),
}

/// One removed node.
#[derive(Debug, Clone, PartialEq)]
pub struct RemovedLayer {
    /// The node named or chosen.
    pub node: String,
    /// The value its readers read instead.
    pub kept: String,
    /// Every node that went with it (itself first, then what only it fed).
    pub nodes: Vec<String>,
    /// `||branch|| / ||skip||` for residual blocks ranked by importance.
    pub importance: Option<f64>,
}

/// What [`remove_layers`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct RemovalReport {
    pub removed: Vec<RemovedLayer>,
    /// Every residual block found, with its importance, when ranking was asked for.
    pub blocks: Vec<(String, f64)>,
    pub nodes_before: usize,
    pub nodes_after: usize,
    pub model_bytes_before: usize,
    pub model_bytes_after: usize,
}

impl fmt::Display for RemovalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.blocks.is_empty() {
            writeln!(f, "residual blocks by importance (||branch|| / ||skip||):")?;
            for (name, imp) in &self.blocks {
                writeln!(f, "  {name:<24} {imp:.4}")?;
            }
        }
        for r in &self.removed {
            writeln!(
                f,
                "removed {} (readers now read '{}'){}: {} node(s): {}",
                r.node,
                r.kept,
                r.importance
                    .map(|i| format!(", importance {i:.4}"))
                    .unwrap_or_default(),
                r.nodes.len(),
                r.nodes.join(", ")
            )?;
        }
        writeln!(
            f,
            "nodes {} -> {}, weight bytes {} -> {}",
            self.nodes_before, self.nodes_after, self.model_bytes_before, self.model_bytes_after
        )
    }
}

/// Removes layers from `model` (see the module docs). `calibration` holds inputs by graph
/// input name for ranking residual blocks (seeded random inputs when `None`). Errors name a
/// node that does not exist, cannot be removed (no input of its output's type), or asks for
/// more blocks than the model has.
pub fn remove_layers(
    model: &Model,
    removal: &Removal,
    calibration: Option<&BTreeMap<String, Tensor>>,
) -> Result<(Model, RemovalReport)> {
    let g = &model.graph;
    let checked = g.check_types()?;
    let by_name = |name: &str| {
        g.nodes
            .iter()
            .position(|n| n.name == name || n.output == name)
    };
    let mut blocks = Vec::new();
    let chosen: Vec<(usize, Option<f64>)> = match removal {
        Removal::Named(names) => {
            if names.is_empty() {
                return Err(Error::Input("no layer named to remove".into()));
            }
            names
                .iter()
                .map(|n| {
                    by_name(n).map(|i| (i, None)).ok_or_else(|| {
                        Error::Input(format!("no node or value named '{n}' to remove"))
                    })
                })
                .collect::<Result<_>>()?
        }
        Removal::LowestImportance(k) => {
            let found = residual_blocks(g, &checked.order)?;
            if *k > found.len() {
                return Err(Error::Input(format!(
                    "asked to remove {k} residual block(s), the model has {}",
                    found.len()
                )));
            }
            let imp = importance(model, &found, calibration)?;
            let mut ranked: Vec<(usize, f64)> = found.iter().map(|b| b.0).zip(imp).collect();
            ranked.sort_by(|a, b| a.1.total_cmp(&b.1));
            blocks = (ranked.iter())
                .map(|&(i, v)| (g.nodes[i].name.clone(), v))
                .collect();
            ranked.truncate(*k);
            ranked.into_iter().map(|(i, v)| (i, Some(v))).collect()
        }
    };
    let order_pos: HashMap<usize, usize> = checked
        .order
        .iter()
        .enumerate()
        .map(|(p, &i)| (i, p))
        .collect();
    let origins = g.origins()?;
    let mut graph = g.clone();
    let mut removed = Vec::new();
    // Readers of a removed node's output read `kept` instead (chains resolved in order).
    let mut rename: HashMap<String, String> = HashMap::new();
    for &(i, imp) in &chosen {
        let node = &g.nodes[i];
        let kept = pass_through(g, i, &checked.types, &origins, &order_pos).ok_or_else(|| {
            Error::Input(format!(
                "node '{}' ({}) cannot be removed: no input of its output's type {} to pass \
                 through",
                node.name,
                node.op.name(),
                checked
                    .types
                    .get(&node.output)
                    .map(|t| fmt_shape(&t.shape))
                    .unwrap_or_default()
            ))
        })?;
        let mut kept = kept.to_string();
        while let Some(k) = rename.get(&kept) {
            kept = k.clone();
        }
        rename.insert(node.output.clone(), kept.clone());
        removed.push(RemovedLayer {
            node: node.name.clone(),
            kept,
            nodes: vec![node.name.clone()],
            importance: imp,
        });
    }
    let resolve = |v: &str| {
        let mut v = v.to_string();
        while let Some(k) = rename.get(&v) {
            v = k.clone();
        }
        v
    };
    let gone: HashSet<usize> = chosen.iter().map(|c| c.0).collect();
    for (i, n) in graph.nodes.iter_mut().enumerate() {
        if !gone.contains(&i) {
            for inp in &mut n.inputs {
                *inp = resolve(inp);
            }
        }
    }
    for o in &mut graph.outputs {
        *o = resolve(o);
    }
    // Keep what the outputs still need; the rest (branches, their weights) goes.
    let live = live_nodes(&graph, &gone);
    let mut owner: HashMap<usize, usize> = HashMap::new();
    for i in 0..g.nodes.len() {
        if !live.contains(&i) && !gone.contains(&i) {
            // Credit a dead node to the removed node it fed, nearest first.
            let mut cur = i;
            let mut seen = HashSet::new();
            while seen.insert(cur) {
                let next = g
                    .nodes
                    .iter()
                    .position(|m| m.inputs.contains(&g.nodes[cur].output));
                match next {
                    Some(j) if gone.contains(&j) => {
                        owner.insert(i, j);
                        break;
                    }
                    Some(j) => cur = j,
                    None => break,
                }
            }
        }
    }
    for (i, r) in chosen.iter().map(|c| c.0).zip(removed.iter_mut()) {
        let mut fed: Vec<usize> = owner
            .iter()
            .filter(|(_, &o)| o == i)
            .map(|(&d, _)| d)
            .collect();
        fed.sort_by_key(|d| std::cmp::Reverse(order_pos[d]));
        r.nodes
            .extend(fed.into_iter().map(|d| g.nodes[d].name.clone()));
    }
    graph.nodes = (graph.nodes.into_iter().enumerate())
        .filter(|(i, _)| live.contains(i))
        .map(|(_, n)| n)
        .collect();
    let used: HashSet<&str> = (graph.nodes.iter())
        .flat_map(|n| n.inputs.iter().map(String::as_str))
        .chain(graph.outputs.iter().map(String::as_str))
        .collect();
    let dropped: Vec<String> = (graph.weights.iter())
        .filter(|w| !used.contains(w.name.as_str()))
        .map(|w| w.name.clone())
        .collect();
    let mut weights = (*model.weights).clone();
    for w in &dropped {
        for part in graph.format_of(w).part_names(w) {
            weights.remove(&part);
        }
        graph.formats.remove(w);
    }
    graph.weights.retain(|w| used.contains(w.name.as_str()));
    let nodes_after = graph.nodes.len();
    let out = Model::new(graph, weights)?;
    let report = RemovalReport {
        removed,
        blocks,
        nodes_before: g.nodes.len(),
        nodes_after,
        model_bytes_before: model.weight_bytes(),
        model_bytes_after: out.weight_bytes(),
    };
    Ok((out, report))
}

/// The input of node `i` that can stand in for its output (same dtype and shape, not a
/// weight): for an `add`, the one computed first (the skip of a residual block); else the
/// first such input.
fn pass_through<'a>(
    g: &'a Graph,
    i: usize,
    types: &HashMap<String, crate::tensor::ValueType>,
    origins: &HashMap<&str, Origin>,
    order_pos: &HashMap<usize, usize>,
) -> Option<&'a str> {
    let node = &g.nodes[i];
    let out = types.get(&node.output)?;
    let mut fits = node.inputs.iter().filter(|v| {
        !matches!(origins.get(v.as_str()), Some(Origin::Weight(_)) | None)
            && types.get(v.as_str()) == Some(out)
    });
    if let Op::Binary(b) = &node.op {
        if b.kind == BinaryKind::Add {
            // Graph inputs come before every node.
            let pos = |v: &str| match origins.get(v) {
                Some(Origin::Node(j)) => order_pos.get(j).map_or(usize::MAX, |p| p + 1),
                _ => 0,
            };
            return fits.min_by_key(|v| pos(v)).map(String::as_str);
        }
    }
    fits.next().map(String::as_str)
}

/// Nodes the graph's outputs still reach, never through a node in `gone`.
fn live_nodes(g: &Graph, gone: &HashSet<usize>) -> HashSet<usize> {
    let producer: HashMap<&str, usize> = (g.nodes.iter().enumerate())
        .filter(|(i, _)| !gone.contains(i))
        .map(|(i, n)| (n.output.as_str(), i))
        .collect();
    let mut live = HashSet::new();
    let mut stack: Vec<&str> = g.outputs.iter().map(String::as_str).collect();
    while let Some(v) = stack.pop() {
        if let Some(&i) = producer.get(v) {
            if live.insert(i) {
                stack.extend(g.nodes[i].inputs.iter().map(String::as_str));
            }
        }
    }
    live
}

/// Residual blocks: `add` nodes (no fused activation) of two values of the output's type,
/// one of them (the branch) produced by a node whose subgraph back to the skip is read by
/// nothing else. Returns (add node, skip value, branch value).
fn residual_blocks(g: &Graph, order: &[usize]) -> Result<Vec<(usize, String, String)>> {
    let types = g.check_types()?.types;
    let origins = g.origins()?;
    let order_pos: HashMap<usize, usize> = order.iter().enumerate().map(|(p, &i)| (i, p)).collect();
    let consumers = g.consumers();
    let mut out = Vec::new();
    for &i in order {
        let n = &g.nodes[i];
        let Op::Binary(b) = &n.op else { continue };
        if b.kind != BinaryKind::Add || b.act != Activation::None || n.inputs.len() != 2 {
            continue;
        }
        let Some(skip) = pass_through(g, i, &types, &origins, &order_pos) else {
            continue;
        };
        let Some(branch) = n.inputs.iter().find(|v| v.as_str() != skip) else {
            continue;
        };
        if types.get(branch) != types.get(&n.output) {
            continue;
        }
        // The branch is a block only when it is private: its producer feeds only this add.
        let private = matches!(origins.get(branch.as_str()), Some(Origin::Node(_)))
            && consumers.get(branch.as_str()).is_some_and(|c| c.len() == 1)
            && !g.outputs.contains(branch);
        if private {
            out.push((i, skip.to_string(), branch.clone()));
        }
    }
    Ok(out)
}

/// `||branch|| / ||skip||` of each block over the calibration inputs (or seeded random ones),
/// with the CPU reference ops on the decoded weights.
fn importance(
    model: &Model,
    blocks: &[(usize, String, String)],
    calibration: Option<&BTreeMap<String, Tensor>>,
) -> Result<Vec<f64>> {
    let g = &model.graph;
    let mut values: HashMap<String, Tensor> = HashMap::new();
    for (k, spec) in g.inputs.iter().enumerate() {
        let t = match calibration.and_then(|c| c.get(&spec.name)) {
            Some(t) => t.clone(),
            None => Tensor::random(&spec.shape, 1000 + k as u64),
        };
        values.insert(spec.name.clone(), t);
    }
    for w in &g.weights {
        let t = g
            .format_of(&w.name)
            .decode(&w.name, &w.shape, &model.weights)?;
        values.insert(w.name.clone(), t);
    }
    for i in g.toposort()? {
        let n = &g.nodes[i];
        let ins: Vec<&Tensor> = n
            .inputs
            .iter()
            .map(|v| {
                values
                    .get(v)
                    .ok_or_else(|| Error::graph(format!("value '{v}' not computed")))
            })
            .collect::<Result<_>>()?;
        let out = n.op.cpu(&ins)?;
        values.insert(n.output.clone(), out);
    }
    let norm = |v: &str| -> Result<f64> {
        let t = values
            .get(v)
            .ok_or_else(|| Error::graph(format!("value '{v}' not computed")))?
            .to_f32();
        Ok(t.f32s(v)?
            .iter()
            .map(|&x| f64::from(x) * f64::from(x))
            .sum::<f64>()
            .sqrt())
    };
    blocks
        .iter()
        .map(|(_, skip, branch)| Ok(norm(branch)? / norm(skip)?.max(f64::MIN_POSITIVE)))
        .collect()
}
