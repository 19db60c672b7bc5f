//! Keeping an ONNX model's symbolic input dims (`dim_param`: batch, image height, text width)
//! in the imported graph, so that a session re-plans for each new input size.
//!
//! Import maps nodes for one concrete shape: shape subgraphs fold into constants, reshapes get
//! concrete targets. Whether the result holds for *other* sizes is decided by importing a
//! second time with every symbolic dim doubled (doubling keeps the divisibility a detector's
//! down- and up-sampling needs) and comparing the two graphs node by node:
//!
//! - identical nodes and weights: the graph does not depend on those sizes;
//! - a `Reshape` whose targets differ in one axis: that axis becomes `-1` (inferred), which
//!   gives both imports' targets;
//! - anything else (a weight computed from the size, another attribute that differs): the
//!   model stays fixed to the imported shape, and the report says which node decided it.
//!
//! The unified graph is then checked to infer, at the probe sizes, exactly the value types the
//! probe import has: a graph is kept symbolic only when both imports agree with it.

use super::{ImportedInput, OnnxDim};
use crate::graph::Graph;
use crate::model::Model;
use crate::ops::Op;
use std::collections::BTreeMap;

/// Symbolic axes per input (a name per symbolic axis, `None` for a fixed one); inputs without
/// symbolic axes are left out. An unnamed dim gets the name `input:axis` (it is free of every
/// other dim).
pub(super) fn symbolic_axes(inputs: &[ImportedInput]) -> BTreeMap<String, Vec<Option<String>>> {
    let mut m = BTreeMap::new();
    for i in inputs {
        if i.declared.len() != i.shape.len() {
            continue;
        }
        let axes: Vec<Option<String>> = i
            .declared
            .iter()
            .enumerate()
            .map(|(a, d)| match d {
                OnnxDim::Fixed(_) => None,
                OnnxDim::Symbolic(p) => Some(p.clone()),
                OnnxDim::Unknown => Some(format!("{}:{a}", i.name)),
            })
            .collect();
        if axes.iter().any(|a| a.is_some()) {
            m.insert(i.name.clone(), axes);
        }
    }
    m
}

/// The distinct symbols of `dims`, in input and axis order.
pub(super) fn symbols(dims: &BTreeMap<String, Vec<Option<String>>>) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for s in dims.values().flatten().flatten() {
        if !v.contains(s) {
            v.push(s.clone());
        }
    }
    v
}

/// `dims` with only the symbols in `keep` (other axes fixed; inputs left with no symbol
/// dropped).
pub(super) fn only(
    dims: &BTreeMap<String, Vec<Option<String>>>,
    keep: &[String],
) -> BTreeMap<String, Vec<Option<String>>> {
    dims.iter()
        .map(|(k, axes)| {
            let a: Vec<Option<String>> = axes
                .iter()
                .map(|s| s.clone().filter(|s| keep.contains(s)))
                .collect();
            (k.clone(), a)
        })
        .filter(|(_, a)| a.iter().any(|s| s.is_some()))
        .collect()
}

/// The probe shapes: every symbolic dim of `inputs` doubled. `None` when two axes that share
/// a symbol were imported with different sizes (the model cannot keep that symbol).
pub(super) fn probe_shapes(
    inputs: &[ImportedInput],
    dims: &BTreeMap<String, Vec<Option<String>>>,
) -> Option<BTreeMap<String, Vec<usize>>> {
    let mut size: BTreeMap<&str, usize> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for i in inputs {
        let Some(axes) = dims.get(&i.name) else {
            continue;
        };
        let mut s = i.shape.clone();
        for (a, sym) in axes.iter().enumerate() {
            if let Some(sym) = sym {
                if *size.entry(sym).or_insert(s[a]) != s[a] {
                    return None;
                }
                s[a] *= 2;
            }
        }
        out.insert(i.name.clone(), s);
    }
    Some(out)
}

/// `Squeeze` or `Unsqueeze` giving `p` from `ia` and `q` from `ib` (the dims kept pair up in
/// order; the dropped or inserted ones are 1 in both), when there is one.
fn squeeze_like(ia: &[usize], p: &[i64], ib: &[usize], q: &[i64]) -> Option<Op> {
    use crate::ops::{Squeeze, Unsqueeze};
    let same = |a: usize, b: usize, x: i64, y: i64| a as i64 == x && b as i64 == y;
    if ia.len() > p.len() {
        let (mut j, mut axes) = (0, Vec::new());
        for i in 0..ia.len() {
            if j < p.len() && same(ia[i], ib[i], p[j], q[j]) {
                j += 1;
            } else if ia[i] == 1 && ib[i] == 1 {
                axes.push(i as i64);
            } else {
                return None;
            }
        }
        (j == p.len()).then_some(Op::Squeeze(Squeeze { axes: Some(axes) }))
    } else if ia.len() < p.len() {
        let (mut i, mut axes) = (0, Vec::new());
        for j in 0..p.len() {
            if i < ia.len() && same(ia[i], ib[i], p[j], q[j]) {
                i += 1;
            } else if p[j] == 1 && q[j] == 1 {
                axes.push(j as i64);
            } else {
                return None;
            }
        }
        (i == ia.len()).then_some(Op::Unsqueeze(Unsqueeze { axes }))
    } else {
        None
    }
}

/// The graph of `a` with `dims` kept, when the import `b` at the probe sizes agrees with it;
/// otherwise why not (naming the node or weight that depends on the size).
pub(super) fn unify(
    a: &Model,
    b: &Model,
    dims: &BTreeMap<String, Vec<Option<String>>>,
    probe: &BTreeMap<String, Vec<usize>>,
) -> std::result::Result<Graph, String> {
    let (ga, gb) = (&a.graph, &b.graph);
    if ga.weights != gb.weights || ga.formats != gb.formats {
        let which = ga
            .weights
            .iter()
            .zip(&gb.weights)
            .find(|(x, y)| x != y)
            .map_or_else(
                || "the set of weights".to_string(),
                |(x, _)| format!("weight '{}'", x.name),
            );
        return Err(format!("{which} is computed from the input size"));
    }
    if let Some((name, _)) = a
        .weights
        .iter()
        .find(|(k, t)| b.weights.get(*k) != Some(*t))
    {
        return Err(format!("weight '{name}' is computed from the input size"));
    }
    if ga.nodes.len() != gb.nodes.len() || ga.outputs != gb.outputs {
        return Err("the graph's structure depends on the input size".into());
    }
    let ta = ga.check_types().map_err(|e| e.to_string())?.types;
    let tb = gb.check_types().map_err(|e| e.to_string())?.types;
    let mut g = ga.clone();
    for (n, (x, y)) in g.nodes.iter_mut().zip(ga.nodes.iter().zip(&gb.nodes)) {
        if x.name != y.name || x.inputs != y.inputs || x.output != y.output {
            return Err(format!(
                "node '{}' is imported differently at another input size",
                x.name
            ));
        }
        if x.op == y.op {
            continue;
        }
        match (&x.op, &y.op) {
            (Op::Reshape(p), Op::Reshape(q)) if p.shape.len() == q.shape.len() => {
                // An axis that is the input's own dim at the same position in both imports
                // copies it (0); one other axis that changes is inferred (-1).
                let (ia, ib) = match (ta.get(&x.inputs[0]), tb.get(&y.inputs[0])) {
                    (Some(a), Some(b)) => (&a.shape, &b.shape),
                    _ => return Err(format!("node '{}': input types unknown", x.name)),
                };
                // A reshape that only drops or inserts size-1 axes (in both imports) is a
                // squeeze or unsqueeze, which holds at any size.
                if let Some(op) = squeeze_like(ia, &p.shape, ib, &q.shape) {
                    n.op = op;
                    continue;
                }
                let mut target = p.shape.clone();
                let mut inferred = Vec::new();
                for i in (0..p.shape.len()).filter(|&i| p.shape[i] != q.shape[i]) {
                    let copies = |s: &[usize], v: i64| s.get(i).is_some_and(|&d| d as i64 == v);
                    if copies(ia, p.shape[i]) && copies(ib, q.shape[i]) {
                        target[i] = 0;
                    } else {
                        inferred.push(i);
                    }
                }
                if inferred.len() > 1 || p.shape.iter().any(|&d| d <= 0) {
                    return Err(format!(
                        "node '{}' reshapes {ia:?} to {:?} and {ib:?} to {:?} \
                         (more than one axis changes)",
                        x.name, p.shape, q.shape
                    ));
                }
                if let Some(&i) = inferred.first() {
                    target[i] = -1;
                }
                if let Op::Reshape(r) = &mut n.op {
                    r.shape = target;
                }
            }
            _ => {
                return Err(format!(
                    "node '{}' ({}) has attributes that depend on the input size",
                    x.name,
                    x.op.name()
                ))
            }
        }
    }
    g.dims = dims.clone();
    // The unified graph must reproduce both imports: at the imported sizes (a's types) and
    // at the probe sizes (b's types).
    let check = |g: &Graph, want: &Graph| -> std::result::Result<(), String> {
        let got = g.check_types().map_err(|e| e.to_string())?;
        let exp = want.check_types().map_err(|e| e.to_string())?;
        for (v, t) in &exp.types {
            if got.types.get(v) != Some(t) {
                return Err(format!(
                    "value '{v}' would be {:?} instead of {t:?} at another input size",
                    got.types.get(v)
                ));
            }
        }
        Ok(())
    };
    check(&g, ga)?;
    let shapes: Vec<(&str, &[usize])> = probe
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    let at_probe = g.with_input_shapes(&shapes).map_err(|e| e.to_string())?;
    check(&at_probe, gb)?;
    Ok(g)
}
