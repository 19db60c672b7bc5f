//! Rewrites of export patterns.
//!
//! Before mapping, on the ONNX nodes (so chains of ops wgedge has no op for still fuse):
//! - `x * Clip(x + 3, 0, 6) / 6` (or `* 1/6`) and `x * HardSigmoid(x)` (alpha 1/6) -> HardSwish;
//! - `x * Sigmoid(x)` -> silu (a private op of this module's [`DOMAIN`]);
//! - ReduceMean / Sub / Pow 2 / ReduceMean / Add eps / Sqrt / Div (then Mul gamma, Add beta)
//!   over the last axes -> LayerNormalization;
//! - `x * (Erf(x / sqrt 2) + 1) * 0.5` in its exported orders -> Gelu (approximate = "none", which
//!   imports as the exact `gelu_erf` activation).
//!
//! After mapping, on the wgedge graph: a Mul and/or Add by a per-channel constant right after a
//! conv (its only reader) folds into the conv's weights and bias.
//!
//! Every rewrite only fires when each intermediate value has a single reader and is not a graph
//! output, so nothing else sees a value that disappears.

use super::proto::{AttributeProto, NodeProto};
use super::Ctx;
use crate::error::Result;
use crate::graph::Graph;
use crate::ops::{BinaryKind, Op};
use crate::tensor::{Tensor, TensorData};
use std::collections::{BTreeMap, HashMap};

/// Domain of the private ops the rewrites produce.
pub(super) const DOMAIN: &str = "wgedge.import";

/// The ONNX graph as the pattern matchers see it.
struct View<'a> {
    nodes: &'a [NodeProto],
    alive: Vec<bool>,
    producer: HashMap<&'a str, usize>,
    readers: HashMap<&'a str, usize>,
    consts: HashMap<&'a str, Tensor>,
}

impl<'a> View<'a> {
    fn new(nodes: &'a [NodeProto], cx: &'a Ctx) -> View<'a> {
        let mut producer = HashMap::new();
        let mut readers: HashMap<&str, usize> = HashMap::new();
        let mut consts = HashMap::new();
        for (i, n) in nodes.iter().enumerate() {
            for o in &n.output {
                producer.insert(o.as_str(), i);
            }
            for inp in &n.input {
                *readers.entry(inp.as_str()).or_default() += 1;
            }
            if n.op_type() == "Constant" && n.output.len() == 1 {
                if let Some(t) = super::attr::Attrs(&n.attribute).tensor("value") {
                    if let Ok(t) = super::tensor::from_proto(t) {
                        consts.insert(n.output[0].as_str(), t);
                    }
                }
            }
        }
        // Graph outputs count as an extra reader (they must survive).
        for o in &cx.graph_outputs {
            *readers.entry(o.as_str()).or_default() += 1;
        }
        View {
            nodes,
            alive: vec![true; nodes.len()],
            producer,
            readers,
            consts,
        }
    }

    /// The live node defining `v` with op type `op`.
    fn def(&self, v: &str, op: &str) -> Option<usize> {
        let &i = self.producer.get(v)?;
        (self.alive[i]
            && self.nodes[i].op_type() == op
            && matches!(self.nodes[i].domain(), "" | "ai.onnx"))
        .then_some(i)
    }

    /// `v` is read by exactly one node and is no graph output.
    fn single(&self, v: &str) -> bool {
        self.readers.get(v) == Some(&1)
    }

    /// The only live reader of `v` with op type `op`.
    fn reader(&self, v: &str, op: &str) -> Option<usize> {
        if !self.single(v) {
            return None;
        }
        (0..self.nodes.len()).find(|&i| {
            self.alive[i]
                && self.nodes[i].op_type() == op
                && self.nodes[i].input.iter().any(|x| x == v)
        })
    }

    /// The scalar value of a constant (initializer or Constant node).
    fn scalar(&self, cx: &Ctx, v: &str) -> Option<f64> {
        let t = self
            .consts
            .get(v)
            .or_else(|| cx.vals.get(v).and_then(|x| x.konst.as_ref()))?;
        (t.numel() == 1).then(|| super::tensor::f64s(t)[0])
    }

    fn is_const(&self, cx: &Ctx, v: &str) -> bool {
        self.consts.contains_key(v) || cx.vals.get(v).is_some_and(|x| x.konst.is_some())
    }

    /// For a binary node, the input other than the one that is `scalar == value` (either
    /// order), when the other side is such a constant.
    fn other_than_scalar(&self, cx: &Ctx, i: usize, value: f64, tol: f64) -> Option<String> {
        let n = &self.nodes[i];
        if n.input.len() != 2 {
            return None;
        }
        for (k, o) in [(0, 1), (1, 0)] {
            if self
                .scalar(cx, &n.input[k])
                .is_some_and(|s| (s - value).abs() <= tol)
            {
                return Some(n.input[o].clone());
            }
        }
        None
    }
}

fn node(op: &str, domain: &str, inputs: &[&str], output: &str, name: &str) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.to_string()],
        name: Some(name.to_string()),
        op_type: Some(op.to_string()),
        domain: Some(domain.to_string()),
        ..Default::default()
    }
}

fn attr_f(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        f: Some(v),
        r#type: Some(1),
        ..Default::default()
    }
}

fn attr_i(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        i: Some(v),
        r#type: Some(2),
        ..Default::default()
    }
}

fn attr_s(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        s: Some(v.as_bytes().to_vec()),
        r#type: Some(3),
        ..Default::default()
    }
}

/// Applies the ONNX-level patterns; counts what fired in `stats`.
pub(super) fn onnx_patterns(
    nodes: &mut Vec<NodeProto>,
    cx: &Ctx,
    stats: &mut BTreeMap<&'static str, usize>,
) {
    let mut replace: Vec<(usize, NodeProto)> = Vec::new();
    let alive = {
        let mut v = View::new(nodes, cx);
        #[allow(clippy::needless_range_loop)] // `v` borrows `nodes` and marks nodes dead by index
        for i in 0..nodes.len() {
            if !v.alive[i] {
                continue;
            }
            let found = match nodes[i].op_type() {
                "Sqrt" => layer_norm(&mut v, cx, i).map(|n| ("layer_norm", n)),
                "Erf" => gelu(&mut v, cx, i).map(|n| ("gelu", n)),
                "Sigmoid" => silu(&mut v, i).map(|n| ("silu", n)),
                "HardSigmoid" => hardswish_hs(&mut v, i).map(|n| ("hardswish", n)),
                "Add" => hardswish(&mut v, cx, i).map(|n| ("hardswish", n)),
                _ => None,
            };
            if let Some((what, (at, n))) = found {
                *stats.entry(what).or_default() += 1;
                replace.push((at, n));
            }
        }
        v.alive
    };
    for (at, n) in replace {
        nodes[at] = n;
    }
    let mut i = 0;
    nodes.retain(|_| {
        i += 1;
        alive[i - 1]
    });
}

/// Marks `dead` removed and returns (index of `last`, the fused node) — the fused node takes
/// the last node's place, so every reader of its output still comes after it.
fn fuse(v: &mut View, dead: &[usize], last: usize, n: NodeProto) -> Option<(usize, NodeProto)> {
    for &d in dead {
        v.alive[d] = false;
    }
    v.alive[last] = true;
    Some((last, n))
}

fn silu(v: &mut View, s: usize) -> Option<(usize, NodeProto)> {
    let x = v.nodes[s].input.first()?.clone();
    let y = v.nodes[s].output.first()?.clone();
    let m = v.reader(&y, "Mul")?;
    let mi = &v.nodes[m].input;
    if !(mi.len() == 2 && ((mi[0] == x && mi[1] == y) || (mi[1] == x && mi[0] == y))) {
        return None;
    }
    let out = v.nodes[m].output[0].clone();
    let name = format!("{}+silu", v.nodes[m].name());
    fuse(v, &[s, m], m, node("Silu", DOMAIN, &[&x], &out, &name))
}

fn hardswish_hs(v: &mut View, h: usize) -> Option<(usize, NodeProto)> {
    let a = super::attr::Attrs(&v.nodes[h].attribute);
    if (a.float("alpha", 0.2) - 1.0 / 6.0).abs() > 1e-6 || (a.float("beta", 0.5) - 0.5).abs() > 1e-6
    {
        return None;
    }
    let x = v.nodes[h].input.first()?.clone();
    let y = v.nodes[h].output.first()?.clone();
    let m = v.reader(&y, "Mul")?;
    let mi = &v.nodes[m].input;
    if !(mi.len() == 2 && (mi.contains(&x) && mi.contains(&y))) {
        return None;
    }
    let out = v.nodes[m].output[0].clone();
    let name = format!("{}+hardswish", v.nodes[m].name());
    fuse(v, &[h, m], m, node("HardSwish", "", &[&x], &out, &name))
}

/// From `Add(x, 3)`: Clip(0, 6) -> Mul by x -> Div 6 / Mul 1/6.
fn hardswish(v: &mut View, cx: &Ctx, add: usize) -> Option<(usize, NodeProto)> {
    let x = v.other_than_scalar(cx, add, 3.0, 1e-6)?;
    let a_out = v.nodes[add].output[0].clone();
    let c = v.reader(&a_out, "Clip")?;
    let cn = &v.nodes[c];
    let (lo, hi) = if cx.opset < 11 {
        let a = super::attr::Attrs(&cn.attribute);
        (
            a.float("min", f32::MIN) as f64,
            a.float("max", f32::MAX) as f64,
        )
    } else {
        (
            v.scalar(cx, cn.input.get(1)?)?,
            v.scalar(cx, cn.input.get(2)?)?,
        )
    };
    if lo != 0.0 || hi != 6.0 {
        return None;
    }
    let c_out = cn.output[0].clone();
    let m = v.reader(&c_out, "Mul")?;
    if !v.nodes[m].input.contains(&x) {
        return None;
    }
    let m_out = v.nodes[m].output[0].clone();
    let last = v
        .reader(&m_out, "Div")
        .filter(|&d| v.nodes[d].input.get(1).and_then(|s| v.scalar(cx, s)) == Some(6.0))
        .or_else(|| {
            v.reader(&m_out, "Mul")
                .filter(|&d| v.other_than_scalar(cx, d, 1.0 / 6.0, 1e-6).is_some())
        })?;
    let out = v.nodes[last].output[0].clone();
    let name = format!("{}+hardswish", v.nodes[last].name());
    fuse(
        v,
        &[add, c, m, last],
        last,
        node("HardSwish", "", &[&x], &out, &name),
    )
}

/// From the Sqrt of a variance chain back and forward (see the module docs).
fn layer_norm(v: &mut View, cx: &Ctx, sq: usize) -> Option<(usize, NodeProto)> {
    let axes = |i: usize| -> Option<Vec<i64>> {
        let n = &v.nodes[i];
        let a = super::attr::Attrs(&n.attribute);
        if n.input.len() > 1 {
            let name = &n.input[1];
            let t = v
                .consts
                .get(name.as_str())
                .or_else(|| cx.vals.get(name).and_then(|x| x.konst.as_ref()))?;
            Some(super::tensor::i64s(t))
        } else {
            a.ints("axes")
        }
    };
    let add = v.def(&v.nodes[sq].input[0], "Add")?;
    let var_in = v.nodes[add]
        .input
        .iter()
        .find(|s| v.def(s, "ReduceMean").is_some())?
        .clone();
    let eps_name = v.nodes[add].input.iter().find(|s| **s != var_in)?.clone();
    let eps = v.scalar(cx, &eps_name)?;
    let rm2 = v.def(&var_in, "ReduceMean")?;
    let p_out = v.nodes[rm2].input[0].clone();
    let (pw, d_out) = if let Some(p) = v.def(&p_out, "Pow") {
        if v.scalar(cx, v.nodes[p].input.get(1)?)? != 2.0 {
            return None;
        }
        (p, v.nodes[p].input[0].clone())
    } else {
        let p = v.def(&p_out, "Mul")?;
        let i = &v.nodes[p].input;
        if i.len() != 2 || i[0] != i[1] {
            return None;
        }
        (p, i[0].clone())
    };
    let sub = v.def(&d_out, "Sub")?;
    let (x, mean) = (v.nodes[sub].input[0].clone(), v.nodes[sub].input[1].clone());
    let rm1 = v.def(&mean, "ReduceMean")?;
    if v.nodes[rm1].input[0] != x {
        return None;
    }
    let ax = axes(rm1)?;
    if ax != axes(rm2)? || ax.is_empty() || ax.iter().any(|&a| a >= 0) {
        return None;
    }
    let mut sorted = ax.clone();
    sorted.sort_unstable();
    if sorted
        .iter()
        .enumerate()
        .any(|(k, &a)| a != -(sorted.len() as i64) + k as i64)
    {
        return None;
    }
    for i in [rm1, rm2] {
        if super::attr::Attrs(&v.nodes[i].attribute).int("keepdims", 1) == 0 {
            return None;
        }
    }
    // d feeds the Pow/Mul (twice for Mul) and the Div.
    let d_readers = if v.nodes[pw].op_type() == "Mul" { 3 } else { 2 };
    if v.readers.get(d_out.as_str()) != Some(&d_readers)
        || !v.single(&mean)
        || !v.single(&p_out)
        || !v.single(&var_in)
        || !v.single(&v.nodes[add].output[0])
    {
        return None;
    }
    let s_out = v.nodes[sq].output[0].clone();
    let div = v.reader(&s_out, "Div")?;
    if v.nodes[div].input[0] != d_out {
        return None;
    }
    let mut last = div;
    let mut dead = vec![rm1, sub, pw, rm2, add, sq, div];
    let mut inputs = vec![x.clone()];
    let n_out = v.nodes[div].output[0].clone();
    if let Some(m) = v.reader(&n_out, "Mul") {
        let g = v.nodes[m].input.iter().find(|s| **s != n_out)?.clone();
        if v.is_const(cx, &g) {
            last = m;
            dead.push(m);
            inputs.push(g);
            let m_out = v.nodes[m].output[0].clone();
            if let Some(a) = v.reader(&m_out, "Add") {
                let b = v.nodes[a].input.iter().find(|s| **s != m_out)?.clone();
                if v.is_const(cx, &b) {
                    last = a;
                    dead.push(a);
                    inputs.push(b);
                }
            }
        }
    }
    let out = v.nodes[last].output[0].clone();
    let name = format!("{}+layer_norm", v.nodes[last].name());
    let refs: Vec<&str> = inputs.iter().map(|s| s.as_str()).collect();
    let mut n = node("LayerNormalization", "", &refs, &out, &name);
    n.attribute = vec![attr_i("axis", sorted[0]), attr_f("epsilon", eps as f32)];
    fuse(v, &dead, last, n)
}

/// From the Erf of `x * 0.5 * (1 + erf(x / sqrt 2))` in its exported orders.
fn gelu(v: &mut View, cx: &Ctx, erf: usize) -> Option<(usize, NodeProto)> {
    let e_in = v.nodes[erf].input[0].clone();
    let sqrt2 = std::f64::consts::SQRT_2;
    let d = v
        .def(&e_in, "Div")
        .filter(|&d| {
            v.nodes[d]
                .input
                .get(1)
                .and_then(|s| v.scalar(cx, s))
                .is_some_and(|s| (s - sqrt2).abs() < 1e-4)
        })
        .or_else(|| {
            v.def(&e_in, "Mul")
                .filter(|&d| v.other_than_scalar(cx, d, 1.0 / sqrt2, 1e-4).is_some())
        })?;
    let x = if v.nodes[d].op_type() == "Div" {
        v.nodes[d].input[0].clone()
    } else {
        v.other_than_scalar(cx, d, 1.0 / sqrt2, 1e-4)?
    };
    if !v.single(&e_in) {
        return None;
    }
    let e_out = v.nodes[erf].output[0].clone();
    let add = v.reader(&e_out, "Add")?;
    if v.other_than_scalar(cx, add, 1.0, 0.0)? != e_out {
        return None;
    }
    let a_out = v.nodes[add].output[0].clone();
    let m1 = v.reader(&a_out, "Mul")?;
    let other = v.nodes[m1].input.iter().find(|s| **s != a_out)?.clone();
    let m1_out = v.nodes[m1].output[0].clone();
    let (dead, last) = if other == x {
        // (x * (1 + erf)) * 0.5
        let m2 = v.reader(&m1_out, "Mul")?;
        if v.other_than_scalar(cx, m2, 0.5, 1e-6)? != m1_out {
            return None;
        }
        (vec![d, erf, add, m1, m2], m2)
    } else {
        // (x * 0.5) * (1 + erf)
        let h = v.def(&other, "Mul")?;
        if v.other_than_scalar(cx, h, 0.5, 1e-6)? != x || !v.single(&other) {
            return None;
        }
        (vec![d, erf, add, h, m1], m1)
    };
    let out = v.nodes[last].output[0].clone();
    let name = format!("{}+gelu", v.nodes[last].name());
    let mut n = node("Gelu", "", &[&x], &out, &name);
    n.attribute = vec![attr_s("approximate", "none")];
    fuse(v, &dead, last, n)
}

/// Folds `conv -> Mul(per-channel const)` and `conv -> Add(per-channel const)` into the conv.
pub(super) fn fold_conv_affine(
    g: &mut Graph,
    weights: &mut BTreeMap<String, Tensor>,
    stats: &mut BTreeMap<&'static str, usize>,
) -> Result<()> {
    loop {
        let mut changed = false;
        let readers = {
            let mut m: HashMap<String, usize> = HashMap::new();
            for n in &g.nodes {
                for i in &n.inputs {
                    *m.entry(i.clone()).or_default() += 1;
                }
            }
            for o in &g.outputs {
                *m.entry(o.clone()).or_default() += 1;
            }
            m
        };
        for ci in 0..g.nodes.len() {
            let Op::Conv2d(conv) = g.nodes[ci].op else {
                continue;
            };
            if conv.residual || conv.act != crate::ops::Activation::None {
                continue;
            }
            let y = g.nodes[ci].output.clone();
            if readers.get(&y) != Some(&1) {
                continue;
            }
            let Some(bi) = g.nodes.iter().position(|n| n.inputs.contains(&y)) else {
                continue;
            };
            let Op::Binary(b) = g.nodes[bi].op else {
                continue;
            };
            if b.act != crate::ops::Activation::None
                || !matches!(b.kind, BinaryKind::Mul | BinaryKind::Add)
            {
                continue;
            }
            let other = g.nodes[bi].inputs.iter().find(|s| **s != y).cloned();
            let Some(k) = other.as_ref().and_then(|o| weights.get(o)) else {
                continue;
            };
            let w_name = g.nodes[ci].inputs[1].clone();
            let Some(w) = weights.get(&w_name) else {
                continue;
            };
            let cout = w.shape()[0];
            // Per-channel: [C,1,1], [1,C,1,1], [C] is not per-channel in NCHW broadcasting.
            let ks = k.shape();
            let per_channel = k.numel() == 1
                || (k.numel() == cout
                    && ks.len() >= 3
                    && ks[ks.len() - 3] == cout
                    && ks[ks.len() - 2..] == [1, 1]
                    && ks.len() <= 4);
            if !per_channel || k.dtype() != crate::DType::F32 || w.dtype() != crate::DType::F32 {
                continue;
            }
            let kv: Vec<f32> = {
                let v = k.f32s("k")?;
                if v.len() == 1 {
                    vec![v[0]; cout]
                } else {
                    v.to_vec()
                }
            };
            // Weights used elsewhere (shared) are not changed in place: new names.
            let used_elsewhere = |name: &str| {
                g.nodes
                    .iter()
                    .enumerate()
                    .any(|(j, n)| j != ci && n.inputs.iter().any(|i| i == name))
            };
            let bias_name = conv.bias.then(|| g.nodes[ci].inputs[2].clone());
            if bias_name.as_ref().is_some_and(|b| !weights.contains_key(b)) {
                continue;
            }
            let mut bias: Vec<f32> = match &bias_name {
                Some(b) => weights[b].f32s("bias")?.to_vec(),
                None => vec![0.0; cout],
            };
            let w_shared = used_elsewhere(&w_name);
            let b_shared = bias_name.as_deref().is_some_and(used_elsewhere);
            let mut new_w = None;
            if b.kind == BinaryKind::Mul {
                let per = w.numel() / cout;
                let mut wv = w.f32s("w")?.to_vec();
                for (c, chunk) in wv.chunks_mut(per).enumerate() {
                    chunk.iter_mut().for_each(|x| *x *= kv[c]);
                }
                bias.iter_mut().zip(&kv).for_each(|(b, k)| *b *= k);
                new_w = Some(Tensor::new(w.shape(), wv)?);
            } else {
                bias.iter_mut().zip(&kv).for_each(|(b, k)| *b += k);
            }
            let fresh = |base: &str, g: &Graph, w: &BTreeMap<String, Tensor>| {
                let mut i = 0;
                loop {
                    i += 1;
                    let n = format!("{base}/folded{i}");
                    if !w.contains_key(&n)
                        && g.origins()
                            .map(|o| !o.contains_key(n.as_str()))
                            .unwrap_or(false)
                    {
                        return n;
                    }
                }
            };
            if let Some(nw) = new_w {
                let name = if w_shared {
                    fresh(&w_name, g, weights)
                } else {
                    w_name.clone()
                };
                replace_weight(g, weights, &name, nw);
                g.nodes[ci].inputs[1] = name;
            }
            let bt = Tensor::from_data(&[cout], TensorData::F32(bias))?;
            let bname = match &bias_name {
                Some(b) if !b_shared => b.clone(),
                _ => fresh(&y, g, weights),
            };
            replace_weight(g, weights, &bname, bt);
            if conv.bias {
                g.nodes[ci].inputs[2] = bname;
            } else {
                g.nodes[ci].inputs.push(bname);
                if let Op::Conv2d(c) = &mut g.nodes[ci].op {
                    c.bias = true;
                }
            }
            // The conv now defines the binary's output; the binary goes.
            g.nodes[ci].output = g.nodes[bi].output.clone();
            g.nodes.remove(bi);
            *stats
                .entry(if b.kind == BinaryKind::Mul {
                    "conv_mul"
                } else {
                    "conv_add"
                })
                .or_default() += 1;
            changed = true;
            break;
        }
        if !changed {
            break;
        }
    }
    // Drop weights no node reads any more.
    let read: std::collections::HashSet<String> = g
        .nodes
        .iter()
        .flat_map(|n| n.inputs.iter().cloned())
        .chain(g.outputs.iter().cloned())
        .collect();
    g.weights.retain(|w| read.contains(&w.name));
    weights.retain(|k, _| read.contains(k));
    Ok(())
}

fn replace_weight(g: &mut Graph, weights: &mut BTreeMap<String, Tensor>, name: &str, t: Tensor) {
    let spec = crate::graph::ValueSpec {
        name: name.to_string(),
        dtype: t.dtype(),
        shape: t.shape().to_vec(),
    };
    match g.weights.iter_mut().find(|w| w.name == name) {
        Some(w) => *w = spec,
        None => g.weights.push(spec),
    }
    weights.insert(name.to_string(), t);
}
