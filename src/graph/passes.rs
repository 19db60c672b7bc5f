//! Graph rewrites done once at load: BatchNorm folded into the conv before it, and epilogue
//! fusion (bias, residual add, activation) into matmul/conv. Each keeps the graph's outputs
//! and their names; each is checked by tests that compare the rewritten graph's CPU results
//! with the original's.

use super::def::{Graph, ValueSpec};
use crate::error::Result;
use crate::ops::{Activation, BinaryKind, Op};
use crate::tensor::Tensor;
use std::collections::BTreeMap;

/// The single node reading `value`, if exactly one does and the value is not a graph output.
fn sole_consumer(g: &Graph, value: &str) -> Option<usize> {
    if g.outputs.iter().any(|o| o == value) {
        return None;
    }
    let users: Vec<usize> = g
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.inputs.iter().any(|i| i == value))
        .map(|(i, _)| i)
        .collect();
    match users.as_slice() {
        [u] => Some(*u),
        _ => None,
    }
}

/// A dense constant's data (packed formats are not rewritten: that would silently unpack them).
fn weight<'a>(g: &Graph, w: &'a BTreeMap<String, Tensor>, name: &str) -> Option<&'a Tensor> {
    (g.weights.iter().any(|s| s.name == name) && g.format_of(name).is_dense())
        .then(|| w.get(name))
        .flatten()
}

fn set_weight(g: &mut Graph, w: &mut BTreeMap<String, Tensor>, name: &str, t: Tensor) {
    g.weights.retain(|s| s.name != name);
    g.weights.push(ValueSpec {
        name: name.into(),
        dtype: t.dtype(),
        shape: t.shape().to_vec(),
    });
    w.insert(name.into(), t);
}

/// Drops declared weights that no node reads any more.
fn prune_weights(g: &mut Graph, w: &mut BTreeMap<String, Tensor>) {
    let used: std::collections::HashSet<String> = g
        .nodes
        .iter()
        .flat_map(|n| n.inputs.iter().cloned())
        .chain(g.outputs.iter().cloned())
        .collect();
    g.weights.retain(|s| used.contains(&s.name));
    g.formats.retain(|k, _| used.contains(k));
    // A packed weight's data is its parts.
    let stored: std::collections::HashSet<String> = g
        .weights
        .iter()
        .flat_map(|s| g.format_of(&s.name).part_names(&s.name))
        .collect();
    w.retain(|k, _| stored.contains(k));
}

/// Computes at load every node whose value is known without running the model: all inputs
/// constant (dense), or a `Shape` (input shapes are fixed per plan). Its output becomes a
/// constant; what reads only folded values folds in turn, so shape-only subgraphs (Shape ->
/// Cast -> Concat ...) vanish and their integer values never reach a device. Graph outputs are
/// kept as nodes.
pub fn fold_constants(g: &mut Graph, w: &mut BTreeMap<String, Tensor>) -> Result<usize> {
    let checked = g.check_types()?;
    let mut folded = Vec::new();
    for &i in &checked.order {
        let n = &g.nodes[i];
        if g.outputs.contains(&n.output) {
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
            let ins: Option<Vec<&Tensor>> = n.inputs.iter().map(|v| weight(g, w, v)).collect();
            let Some(ins) = ins else { continue };
            n.op.cpu(&ins)?
        };
        // Generated from the value name (unique in the graph), so it cannot collide.
        let name = n.output.clone();
        set_weight(g, w, &name, out);
        folded.push(i);
    }
    folded.sort_unstable();
    for &i in folded.iter().rev() {
        g.nodes.remove(i);
    }
    if !folded.is_empty() {
        prune_weights(g, w);
    }
    Ok(folded.len())
}

/// Folds `conv -> batch_norm` into the conv: w' = w * s, b' = (b - mean) * s + beta with
/// s = gamma / sqrt(var + eps). Needs constant BN statistics and a conv with no fused epilogue.
pub fn fold_batchnorm(g: &mut Graph, w: &mut BTreeMap<String, Tensor>) -> Result<usize> {
    let mut folded = 0;
    loop {
        let mut hit = None;
        for (ci, conv) in g.nodes.iter().enumerate() {
            let Op::Conv2d(c) = &conv.op else { continue };
            if c.residual || c.act != Activation::None || weight(g, w, &conv.inputs[1]).is_none() {
                continue;
            }
            let Some(bi) = sole_consumer(g, &conv.output) else {
                continue;
            };
            let Op::BatchNorm(bn) = &g.nodes[bi].op else {
                continue;
            };
            if g.nodes[bi].inputs[0] != conv.output
                || !g.nodes[bi].inputs[1..]
                    .iter()
                    .all(|n| weight(g, w, n).is_some())
            {
                continue;
            }
            hit = Some((ci, bi, *c, *bn));
            break;
        }
        let Some((ci, bi, mut c, bn)) = hit else {
            break;
        };
        let stats: Vec<&[f32]> = g.nodes[bi].inputs[1..]
            .iter()
            .map(|n| w[n].f32s("batch_norm fold"))
            .collect::<Result<_>>()?;
        let (scale, shift) = bn.affine(stats[0], stats[1], stats[2], stats[3]);
        let conv = g.nodes[ci].clone();
        let wt = &w[&conv.inputs[1]];
        let per = wt.numel() / scale.len();
        let new_w: Vec<f32> = wt
            .f32s("conv weight")?
            .iter()
            .enumerate()
            .map(|(i, v)| v * scale[i / per])
            .collect();
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
        let (wname, bname) = (
            format!("{}.weight_bnfolded", conv.name),
            format!("{}.bias_bnfolded", conv.name),
        );
        set_weight(g, w, &wname, Tensor::new(wt.shape(), new_w)?);
        set_weight(g, w, &bname, Tensor::new(&[scale.len()], new_b)?);
        c.bias = true;
        let bn_out = g.nodes[bi].output.clone();
        let node = &mut g.nodes[ci];
        node.op = Op::Conv2d(c);
        node.inputs = vec![node.inputs[0].clone(), wname, bname];
        node.output = bn_out;
        g.nodes.remove(bi);
        prune_weights(g, w);
        folded += 1;
    }
    Ok(folded)
}

/// Fuses into matmul/conv: a following add of a bias-shaped constant (as the bias), a following
/// add of a same-shaped value (as the residual), and a following activation. The kernels apply
/// `act(acc + bias + residual)`, so an add is fused only while no activation has been.
pub fn fuse_epilogues(
    g: &mut Graph,
    w: &mut BTreeMap<String, Tensor>,
    shapes: &std::collections::HashMap<String, Vec<usize>>,
) -> Result<usize> {
    let mut fused = 0;
    'outer: loop {
        for pi in 0..g.nodes.len() {
            let prod = &g.nodes[pi];
            if !matches!(prod.op, Op::MatMul(_) | Op::Conv2d(_)) {
                continue;
            }
            let Some(ci) = sole_consumer(g, &prod.output) else {
                continue;
            };
            let cons = g.nodes[ci].clone();
            let out_shape = &shapes[&prod.output];
            let mut op = prod.op.clone();
            let mut extra = None;
            match &cons.op {
                Op::Unary(u) => {
                    let act = op.epilogue_act().expect("matmul/conv carry an epilogue");
                    if *act != Activation::None {
                        continue;
                    }
                    *act = u.act;
                }
                Op::Binary(b) if b.kind == BinaryKind::Add => {
                    if op.clone().epilogue_act().map(|a| *a) != Some(Activation::None) {
                        continue;
                    }
                    let other = if cons.inputs[0] == prod.output {
                        &cons.inputs[1]
                    } else {
                        &cons.inputs[0]
                    };
                    if *other == prod.output {
                        continue;
                    }
                    let oshape = &shapes[other];
                    let (has_bias, has_res) = match &op {
                        Op::MatMul(m) => (m.bias, m.residual),
                        Op::Conv2d(c) => (c.bias, c.residual),
                        _ => unreachable!("only matmul/conv reach here"),
                    };
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
                    if bias_shape_ok && !has_bias && !has_res && weight(g, w, other).is_some() {
                        let name = match &op {
                            Op::MatMul(_) => other.clone(),
                            _ => {
                                // The kernels take a `[C]` bias: add a reshaped copy.
                                let flat = w[other].clone().reshaped(&[oshape.iter().product()])?;
                                let name = format!("{other}:as_bias");
                                set_weight(g, w, &name, flat);
                                name
                            }
                        };
                        match &mut op {
                            Op::MatMul(m) => m.bias = true,
                            Op::Conv2d(c) => c.bias = true,
                            _ => {}
                        }
                        extra = Some(name);
                    } else if oshape == out_shape && !has_res {
                        match &mut op {
                            Op::MatMul(m) => m.residual = true,
                            Op::Conv2d(c) => c.residual = true,
                            _ => {}
                        }
                        extra = Some(other.clone());
                    } else {
                        continue;
                    }
                    let act = op.epilogue_act().expect("epilogue");
                    *act = b.act;
                }
                _ => continue,
            }
            let node = &mut g.nodes[pi];
            node.op = op;
            node.inputs.extend(extra);
            node.output = cons.output.clone();
            node.name = format!("{}+{}", node.name, cons.name);
            g.nodes.remove(ci);
            fused += 1;
            continue 'outer;
        }
        break;
    }
    prune_weights(g, w);
    Ok(fused)
}
