//! Graph rewrites done once at load: constant folding, BatchNorm folded into the conv before it,
//! and epilogue fusion (bias, residual add, activation) into matmul, conv and transposed conv.
//! Each keeps the graph's
//! outputs and their names; each is checked by tests that compare the rewritten graph's CPU
//! results with the original's.
//!
//! Each pass is one walk over the nodes with a consumer map built once (value -> nodes reading
//! it), marks the nodes it absorbs as removed, compacts the node list once and prunes unused
//! weights once, so it is linear in the graph's size. The weights it makes get names from
//! [`Names`]: derived from a value name and never one the graph already uses.

use super::def::{Graph, ValueSpec};
use crate::error::Result;
use crate::ops::{Activation, BinaryKind, Op};
use crate::tensor::Tensor;
use std::collections::{BTreeMap, HashMap, HashSet};

/// What a pass did, for tests that its work stays linear in the node count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassStats {
    /// Rewrites applied (each removes one node).
    pub rewrites: usize,
    /// Node examinations: each node once as a candidate, plus each consumer looked at.
    pub visits: usize,
}

/// Every name the graph uses: its values (inputs, declared weights, node outputs) and its stored
/// tensors (the weights' data, including the parts of packed weights), so generated names can
/// avoid them all.
struct Names {
    values: HashSet<String>,
    stored: HashSet<String>,
}

impl Names {
    fn of(g: &Graph, w: &BTreeMap<String, Tensor>) -> Names {
        let values = g
            .inputs
            .iter()
            .chain(&g.weights)
            .map(|v| v.name.clone())
            .chain(g.nodes.iter().map(|n| n.output.clone()))
            .chain(g.outputs.iter().cloned())
            .collect();
        let mut stored: HashSet<String> = w.keys().cloned().collect();
        for name in g.formats.keys() {
            stored.extend(g.format_of(name).part_names(name));
        }
        Names { values, stored }
    }

    /// `base` if no value or stored tensor has that name, else `base~1`, `base~2`, ... (the
    /// first free); the result is taken from then on.
    fn fresh(&mut self, base: &str) -> String {
        let free = |n: &String| !self.values.contains(n) && !self.stored.contains(n);
        let name = std::iter::once(base.to_string())
            .chain((1..).map(|k| format!("{base}~{k}")))
            .find(free)
            .expect("some suffix is free");
        self.values.insert(name.clone());
        name
    }

    /// The name under which node output `value` can be stored as a constant: its own (values
    /// are unique) unless a stored tensor already has it, then a fresh one.
    fn for_constant(&mut self, value: &str) -> String {
        if self.stored.contains(value) {
            self.fresh(value)
        } else {
            value.to_string()
        }
    }
}

/// The graph's declared weights by name (membership only: formats are looked up in the graph).
fn declared(g: &Graph) -> HashSet<String> {
    g.weights.iter().map(|s| s.name.clone()).collect()
}

/// A dense constant's data (packed formats are not rewritten: that would silently unpack them).
fn weight<'a>(
    g: &Graph,
    declared: &HashSet<String>,
    w: &'a BTreeMap<String, Tensor>,
    name: &str,
) -> Option<&'a Tensor> {
    (declared.contains(name) && g.format_of(name).is_dense())
        .then(|| w.get(name))
        .flatten()
}

/// Declares a new weight `name` (fresh from [`Names`], so nothing is replaced).
fn add_weight(
    g: &mut Graph,
    declared: &mut HashSet<String>,
    w: &mut BTreeMap<String, Tensor>,
    name: &str,
    t: Tensor,
) {
    debug_assert!(!declared.contains(name) && !w.contains_key(name));
    g.weights.push(ValueSpec {
        name: name.into(),
        dtype: t.dtype(),
        shape: t.shape().to_vec(),
    });
    declared.insert(name.into());
    w.insert(name.into(), t);
}

/// Drops the removed nodes, keeping the others in their order.
fn compact(g: &mut Graph, removed: &[bool]) {
    let nodes = std::mem::take(&mut g.nodes);
    g.nodes = nodes
        .into_iter()
        .zip(removed)
        .filter(|(_, &r)| !r)
        .map(|(n, _)| n)
        .collect();
}

/// Drops declared weights that no node reads any more.
fn prune_weights(g: &mut Graph, w: &mut BTreeMap<String, Tensor>) {
    let used: HashSet<String> = g
        .nodes
        .iter()
        .flat_map(|n| n.inputs.iter().cloned())
        .chain(g.outputs.iter().cloned())
        .collect();
    g.weights.retain(|s| used.contains(&s.name));
    g.formats.retain(|k, _| used.contains(k));
    // A packed weight's data is its parts.
    let stored: HashSet<String> = g
        .weights
        .iter()
        .flat_map(|s| g.format_of(&s.name).part_names(&s.name))
        .collect();
    w.retain(|k, _| stored.contains(k));
}

/// Which nodes read each value, as (number of distinct reading nodes, sum of their indices):
/// enough to name the single reader, and O(1) to update when a rewrite moves a read from one
/// node to another, however many nodes read the value.
struct Consumers {
    of: HashMap<String, (usize, usize)>,
    outputs: HashSet<String>,
}

impl Consumers {
    fn of(g: &Graph) -> Consumers {
        let mut of: HashMap<String, (usize, usize)> = HashMap::new();
        for (i, n) in g.nodes.iter().enumerate() {
            for (k, v) in n.inputs.iter().enumerate() {
                if !n.inputs[..k].contains(v) {
                    let e = of.entry(v.clone()).or_default();
                    e.0 += 1;
                    e.1 += i;
                }
            }
        }
        Consumers {
            of,
            outputs: g.outputs.iter().cloned().collect(),
        }
    }

    /// The single node reading `value`, if exactly one does and the value is not a graph output.
    fn sole(&self, value: &str) -> Option<usize> {
        if self.outputs.contains(value) {
            return None;
        }
        match self.of.get(value) {
            Some(&(1, i)) => Some(i),
            _ => None,
        }
    }

    /// Node `node`, which read `value`, is removed.
    fn drop_reader(&mut self, value: &str, node: usize) {
        let e = self.of.get_mut(value).expect("the value had readers");
        e.0 -= 1;
        e.1 -= node;
    }

    /// Node `node`, which did not read `value`, now does.
    fn add_reader(&mut self, value: &str, node: usize) {
        let e = self.of.entry(value.to_string()).or_default();
        e.0 += 1;
        e.1 += node;
    }
}

/// Computes at load every node whose value is known without running the model: all inputs
/// constant (dense), or a `Shape` (input shapes are fixed per plan). Its output becomes a
/// constant; what reads only folded values folds in turn, so shape-only subgraphs (Shape ->
/// Cast -> Concat ...) vanish and their integer values never reach a device. Graph outputs are
/// kept as nodes.
pub fn fold_constants(g: &mut Graph, w: &mut BTreeMap<String, Tensor>) -> Result<usize> {
    let checked = g.check_types_with(w)?;
    let outputs: HashSet<String> = g.outputs.iter().cloned().collect();
    let mut declared = declared(g);
    let mut names = Names::of(g, w);
    let mut removed = vec![false; g.nodes.len()];
    // A folded value keeps its name unless a stored tensor has it too (which `check` rejects
    // but `check_types` does not see): then it is renamed and its readers follow.
    let mut renamed: HashMap<String, String> = HashMap::new();
    let mut folded = 0;
    for &i in &checked.order {
        let n = &g.nodes[i];
        if outputs.contains(&n.output) {
            continue;
        }
        let out = if let Op::Shape(_) = n.op {
            let dims: Vec<i64> = checked.types[&n.inputs[0]]
                .shape
                .iter()
                .map(|&d| d as i64)
                .collect();
            Tensor::from_data(&[dims.len()], crate::tensor::TensorData::I64(dims))?
        } else {
            let ins: Option<Vec<&Tensor>> = n
                .inputs
                .iter()
                .map(|v| weight(g, &declared, w, renamed.get(v).unwrap_or(v)))
                .collect();
            let Some(ins) = ins else { continue };
            n.op.cpu(&ins)?
        };
        let value = n.output.clone();
        let name = names.for_constant(&value);
        if name != value {
            renamed.insert(value, name.clone());
        }
        add_weight(g, &mut declared, w, &name, out);
        removed[i] = true;
        folded += 1;
    }
    if folded > 0 {
        compact(g, &removed);
        if !renamed.is_empty() {
            for n in &mut g.nodes {
                for v in &mut n.inputs {
                    if let Some(r) = renamed.get(v) {
                        *v = r.clone();
                    }
                }
            }
        }
        prune_weights(g, w);
    }
    Ok(folded)
}

/// Moves shape-like inputs whose values are now known (weights, folded shape subgraphs) into
/// their ops' attributes ([`crate::ops::OpFamily::absorb_consts`]) and drops those inputs
/// from the nodes, so kernels see plain attributes. Runs at session build after
/// [`fold_constants`]; returns the number of nodes changed.
pub fn absorb_consts(g: &mut Graph, w: &mut BTreeMap<String, Tensor>) -> Result<usize> {
    let declared = declared(g);
    let mut changed = 0;
    for i in 0..g.nodes.len() {
        let consts: Vec<Option<&Tensor>> = g.nodes[i]
            .inputs
            .iter()
            .map(|v| weight(g, &declared, w, v))
            .collect();
        let mut op = g.nodes[i].op.clone();
        let absorbed = op.absorb_consts(&consts)?;
        if absorbed.is_empty() {
            continue;
        }
        let node = &mut g.nodes[i];
        node.op = op;
        let mut k = 0;
        node.inputs.retain(|_| {
            k += 1;
            !absorbed.contains(&(k - 1))
        });
        changed += 1;
    }
    if changed > 0 {
        prune_weights(g, w);
    }
    Ok(changed)
}

/// Folds `conv -> batch_norm` into the conv: w' = w * s, b' = (b - mean) * s + beta with
/// s = gamma / sqrt(var + eps). Needs constant BN statistics and a conv with no fused epilogue.
pub fn fold_batchnorm(g: &mut Graph, w: &mut BTreeMap<String, Tensor>) -> Result<usize> {
    Ok(fold_batchnorm_counted(g, w)?.rewrites)
}

/// [`fold_batchnorm`], also saying how many node examinations it took.
pub fn fold_batchnorm_counted(
    g: &mut Graph,
    w: &mut BTreeMap<String, Tensor>,
) -> Result<PassStats> {
    let cons = Consumers::of(g);
    let mut declared = declared(g);
    let mut names = Names::of(g, w);
    let mut removed = vec![false; g.nodes.len()];
    let mut stats = PassStats::default();
    // Folding one conv never enables another (a BatchNorm's statistics are constants, so the
    // only value whose reader changes is the conv's own output), so one walk in index order
    // that folds each conv as far as it goes does what repeated first-match restarts did.
    for ci in 0..g.nodes.len() {
        stats.visits += 1;
        if removed[ci] {
            continue;
        }
        loop {
            let conv = &g.nodes[ci];
            let Op::Conv2d(mut c) = conv.op else { break };
            if c.residual
                || c.act != Activation::None
                || weight(g, &declared, w, &conv.inputs[1]).is_none()
                || (c.bias && weight(g, &declared, w, &conv.inputs[2]).is_none())
            {
                break;
            }
            let Some(bi) = cons.sole(&conv.output) else {
                break;
            };
            stats.visits += 1;
            let bn_node = &g.nodes[bi];
            let Op::BatchNorm(bn) = bn_node.op else { break };
            if bn_node.inputs[0] != conv.output
                || !bn_node.inputs[1..]
                    .iter()
                    .all(|n| weight(g, &declared, w, n).is_some())
            {
                break;
            }
            let st: Vec<&[f32]> = bn_node.inputs[1..]
                .iter()
                .map(|n| w[n].f32s("batch_norm fold"))
                .collect::<Result<_>>()?;
            let (scale, shift) = bn.affine(st[0], st[1], st[2], st[3]);
            let wt = &w[&conv.inputs[1]];
            let per = wt.numel() / scale.len();
            let new_w: Vec<f32> = wt
                .f32s("conv weight")?
                .iter()
                .enumerate()
                .map(|(i, v)| v * scale[i / per])
                .collect();
            let new_w = Tensor::new(wt.shape(), new_w)?;
            let old_b: Vec<f32> = if c.bias {
                w[&conv.inputs[2]].f32s("conv bias")?.to_vec()
            } else {
                vec![0.0; scale.len()]
            };
            let new_b: Vec<f32> = old_b
                .iter()
                .zip(&scale)
                .zip(&shift)
                .map(|((b, s), t)| b * s + t)
                .collect();
            let new_b = Tensor::new(&[scale.len()], new_b)?;
            // Named after the value the folded conv now defines (unique in the graph; node
            // names need not be), and never a name already in use.
            let bn_out = bn_node.output.clone();
            let wname = names.fresh(&format!("{bn_out}.weight_bnfolded"));
            let bname = names.fresh(&format!("{bn_out}.bias_bnfolded"));
            add_weight(g, &mut declared, w, &wname, new_w);
            add_weight(g, &mut declared, w, &bname, new_b);
            c.bias = true;
            let node = &mut g.nodes[ci];
            node.op = Op::Conv2d(c);
            node.inputs = vec![node.inputs[0].clone(), wname, bname];
            node.output = bn_out;
            removed[bi] = true;
            stats.rewrites += 1;
        }
    }
    if stats.rewrites > 0 {
        compact(g, &removed);
        prune_weights(g, w);
    }
    Ok(stats)
}

/// The epilogue operand flags (bias, residual) of an op whose kernels apply
/// `act(acc + bias + residual)`: matmul, conv and transposed conv; `None` for other ops.
fn epilogue_flags(op: &mut Op) -> Option<(&mut bool, &mut bool)> {
    match op {
        Op::MatMul(m) => Some((&mut m.bias, &mut m.residual)),
        Op::Conv2d(c) => Some((&mut c.bias, &mut c.residual)),
        Op::ConvTranspose2d(c) => Some((&mut c.bias, &mut c.residual)),
        _ => None,
    }
}

/// Fuses into matmul, conv and transposed conv: a following add of a bias-shaped constant (as
/// the bias), a following add of a same-shaped value (as the residual), and a following
/// activation. The kernels apply `act(acc + bias + residual)`, so an add is fused only while no
/// activation has been.
pub fn fuse_epilogues(
    g: &mut Graph,
    w: &mut BTreeMap<String, Tensor>,
    shapes: &HashMap<String, Vec<usize>>,
) -> Result<usize> {
    Ok(fuse_epilogues_counted(g, w, shapes)?.rewrites)
}

/// [`fuse_epilogues`], also saying how many node examinations it took.
pub fn fuse_epilogues_counted(
    g: &mut Graph,
    w: &mut BTreeMap<String, Tensor>,
    shapes: &HashMap<String, Vec<usize>>,
) -> Result<PassStats> {
    let mut cons = Consumers::of(g);
    let mut declared = declared(g);
    let mut names = Names::of(g, w);
    let mut removed = vec![false; g.nodes.len()];
    // The `[C]` copy of each `[C, 1, 1]` / `[1, C, 1, 1]` constant used as a conv bias.
    let mut flat_bias: HashMap<String, String> = HashMap::new();
    let mut stats = PassStats::default();
    // A fusion never lets an earlier producer fuse (the absorbed node's other input is read by
    // the producer instead, a matmul/conv, which is not fused into anything), so one walk in
    // index order that fuses each producer as far as it goes does what repeated first-match
    // restarts did, in the same order when two producers compete for one add.
    for pi in 0..g.nodes.len() {
        stats.visits += 1;
        if removed[pi]
            || !matches!(
                g.nodes[pi].op,
                Op::MatMul(_) | Op::Conv2d(_) | Op::ConvTranspose2d(_)
            )
        {
            continue;
        }
        loop {
            let prod = &g.nodes[pi];
            let Some(ci) = cons.sole(&prod.output) else {
                break;
            };
            stats.visits += 1;
            // Only a unary or an add is absorbed (cloned below: two inputs at most, so a node
            // that is the sole reader of many producers, a wide concat, is never copied).
            let absorbable = match &g.nodes[ci].op {
                Op::Unary(_) => true,
                Op::Binary(b) => b.kind == BinaryKind::Add,
                _ => false,
            };
            if !absorbable {
                break;
            }
            let cons_node = g.nodes[ci].clone();
            let out_shape = &shapes[&prod.output];
            let mut op = prod.op.clone();
            let mut extra = None;
            match &cons_node.op {
                Op::Unary(u) => {
                    let act = op
                        .epilogue_act()
                        .expect("matmul/conv/convtranspose carry an epilogue");
                    if *act != Activation::None {
                        break;
                    }
                    *act = u.act;
                }
                Op::Binary(b) if b.kind == BinaryKind::Add => {
                    if op.clone().epilogue_act().map(|a| *a) != Some(Activation::None) {
                        break;
                    }
                    let other = if cons_node.inputs[0] == prod.output {
                        &cons_node.inputs[1]
                    } else {
                        &cons_node.inputs[0]
                    };
                    if *other == prod.output {
                        break;
                    }
                    let oshape = &shapes[other];
                    let (has_bias, has_res) = epilogue_flags(&mut op)
                        .map(|(b, r)| (*b, *r))
                        .expect("only matmul/conv/convtranspose reach here");
                    // A bias is a constant that broadcasts along the channel axis: `[N]` after a
                    // matmul (numpy broadcasting aligns it with the last axis), `[C, 1, 1]` or
                    // `[1, C, 1, 1]` after a conv (a `[C]` add after a conv broadcasts along W,
                    // so it is not a bias).
                    let bias_shape_ok = match &op {
                        Op::MatMul(_) => oshape.as_slice() == [out_shape[out_shape.len() - 1]],
                        _ => {
                            let c = out_shape[1];
                            oshape.as_slice() == [c, 1, 1] || oshape.as_slice() == [1, c, 1, 1]
                        }
                    };
                    if bias_shape_ok
                        && !has_bias
                        && !has_res
                        && weight(g, &declared, w, other).is_some()
                    {
                        let name = match &op {
                            Op::MatMul(_) => other.clone(),
                            // The kernels take a `[C]` bias: add a reshaped copy (one per
                            // constant, however many convs it follows).
                            _ => match flat_bias.get(other) {
                                Some(name) => name.clone(),
                                None => {
                                    let flat =
                                        w[other].clone().reshaped(&[oshape.iter().product()])?;
                                    let name = names.fresh(&format!("{other}:as_bias"));
                                    add_weight(g, &mut declared, w, &name, flat);
                                    flat_bias.insert(other.clone(), name.clone());
                                    name
                                }
                            },
                        };
                        if let Some((bias, _)) = epilogue_flags(&mut op) {
                            *bias = true;
                        }
                        extra = Some((other.clone(), name));
                    } else if oshape == out_shape && !has_res {
                        if let Some((_, res)) = epilogue_flags(&mut op) {
                            *res = true;
                        }
                        extra = Some((other.clone(), other.clone()));
                    } else {
                        break;
                    }
                    let act = op.epilogue_act().expect("epilogue");
                    *act = b.act;
                }
                _ => break,
            }
            // The absorbed add's other input is read by the producer now (or, for a conv bias,
            // its `[C]` copy is); the producer's old output is read by no one.
            if let Some((read, input)) = &extra {
                cons.drop_reader(read, ci);
                if !g.nodes[pi].inputs.contains(input) {
                    cons.add_reader(input, pi);
                }
            }
            let node = &mut g.nodes[pi];
            node.op = op;
            node.inputs.extend(extra.map(|(_, input)| input));
            node.output = cons_node.output;
            node.name = format!("{}+{}", node.name, cons_node.name);
            removed[ci] = true;
            stats.rewrites += 1;
        }
    }
    if stats.rewrites > 0 {
        compact(g, &removed);
    }
    prune_weights(g, w);
    Ok(stats)
}
