//! Graph rewrites (BatchNorm folding, epilogue fusion, constant folding): generated weight names
//! never collide with the graph's names, the passes stay linear in the node count, and rewritten
//! graphs compute what the original computes.

mod common;
use common::*;
use std::collections::BTreeMap;
use wgedge::graph::{passes, GraphBuilder};
use wgedge::ops::*;
use wgedge::{Model, Session, SessionOptions, Tensor};

fn feeds_for(m: &Model) -> Vec<(String, Tensor)> {
    m.graph
        .inputs
        .iter()
        .enumerate()
        .map(|(i, v)| (v.name.clone(), Tensor::random(&v.shape, 1000 + i as u64)))
        .collect()
}

/// Runs `m` on the CPU with and without rewrites; returns (rewritten session, outputs, plain outputs).
fn both(m: &Model) -> (Session, Vec<Tensor>, Vec<Tensor>) {
    let feeds = feeds_for(m);
    let opt = Session::cpu(m, SessionOptions::default()).unwrap();
    let plain = Session::cpu(
        m,
        SessionOptions {
            optimize: false,
            ..Default::default()
        },
    )
    .unwrap();
    let a = opt.run(&feeds_ref(&feeds)).unwrap();
    let b = plain.run(&feeds_ref(&feeds)).unwrap();
    (opt, a, b)
}

/// BatchNorm statistics with a positive variance.
fn bn_stats(b: &mut GraphBuilder, prefix: &str, c: usize, seed: u64) -> [String; 4] {
    let var: Vec<f32> = Tensor::random(&[c], seed + 3)
        .f32s("var")
        .unwrap()
        .iter()
        .map(|v| v.abs() + 0.5)
        .collect();
    [
        b.weight(&format!("{prefix}.gamma"), Tensor::random(&[c], seed)),
        b.weight(&format!("{prefix}.beta"), Tensor::random(&[c], seed + 1)),
        b.weight(&format!("{prefix}.mean"), Tensor::random(&[c], seed + 2)),
        b.weight(&format!("{prefix}.var"), Tensor::new(&[c], var).unwrap()),
    ]
}

fn pad1() -> Conv2d {
    Conv2d {
        pad: [1; 4],
        ..Default::default()
    }
}

#[test]
fn batchnorm_folding_never_overwrites_a_weight_when_node_names_repeat() {
    // Node names need not be unique (or non-empty); the folded weights must not be named after
    // them. Two conv -> BN pairs share one node name, and the graph already has weights named
    // like the folded weights of either naming scheme (after the node, after the value), read by
    // other convs of the same weight shape, so an overwrite would silently change the result.
    for node_name in ["conv", ""] {
        let mut b = GraphBuilder::new();
        let x = b.input("x", &[1, 4, 6, 6]);
        let mut h = x.clone();
        let mut bn_outs = Vec::new();
        for i in 0..2u64 {
            let w = b.weight(&format!("w{i}"), Tensor::random(&[4, 4, 3, 3], 10 + i));
            let bias = b.weight(&format!("b{i}"), Tensor::random(&[4], 20 + i));
            let c = b.conv2d(&h, &w, Some(&bias), pad1());
            let [g, be, m, v] = bn_stats(&mut b, &format!("bn{i}"), 4, 30 + 10 * i);
            h = b.batch_norm(&c, &g, &be, &m, &v, 1e-5);
            bn_outs.push(h.clone());
        }
        let mut taken = vec![node_name.to_string()];
        taken.extend(bn_outs.iter().cloned());
        let mut y = h;
        for (k, base) in taken.iter().enumerate() {
            let wn = b.weight(
                &format!("{base}.weight_bnfolded"),
                Tensor::random(&[4, 4, 3, 3], 50 + k as u64),
            );
            let bn = b.weight(
                &format!("{base}.bias_bnfolded"),
                Tensor::random(&[4], 60 + k as u64),
            );
            let side = b.conv2d(&x, &wn, Some(&bn), pad1());
            y = b.add(&y, &side);
        }
        b.output(&y);
        let (mut g, w) = b.build().unwrap();
        for n in &mut g.nodes {
            if matches!(n.op, Op::Conv2d(_) | Op::BatchNorm(_)) {
                n.name = node_name.into();
            }
        }
        let m = Model::new(g, w).unwrap();
        let (opt, got, want) = both(&m);
        assert!(
            !opt.plan()
                .nodes
                .iter()
                .any(|n| matches!(n.op, Op::BatchNorm(_))),
            "both BNs folded:\n{}",
            opt.plan().describe()
        );
        // Folding scales the weights before the products instead of the sums after them: the
        // results differ by rounding only (a few ulp of values of order 10 here).
        assert_close(
            &format!("node name '{node_name}': folded vs plain"),
            &got[0],
            &want[0],
            1e-4,
            1e-5,
        );
    }
}

#[test]
fn conv_bias_copy_never_overwrites_an_existing_weight() {
    // A `[C, 1, 1]` add after a conv becomes the conv's bias through a `[C]` copy; a weight
    // already named like that copy (here the bias of a linear layer) must keep its values.
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[1, 4, 5, 5]);
    let w = b.weight("w", Tensor::random(&[4, 4, 1, 1], 1));
    let c = b.conv2d(&x, &w, None, Conv2d::default());
    let bias = b.weight("b", Tensor::random(&[4, 1, 1], 2));
    let y = b.add(&c, &bias);
    b.output(&y);
    // The same bias after a second conv: both fuse.
    let w2 = b.weight("w2", Tensor::random(&[4, 4, 1, 1], 3));
    let c2 = b.conv2d(&y, &w2, None, Conv2d::default());
    let y2 = b.add(&bias, &c2);
    b.output(&y2);
    let x2 = b.input("x2", &[2, 3]);
    let wl = b.weight("wl", Tensor::random(&[4, 3], 4));
    let bl = b.weight("b:as_bias", Tensor::random(&[4], 5));
    let z = b.linear(&x2, &wl, Some(&bl), Activation::None);
    b.output(&z);
    let m = Model::from_builder(b).unwrap();
    let (opt, got, want) = both(&m);
    assert_eq!(opt.rewrites, 2, "{}", opt.plan().describe());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_close(&format!("output {i}"), g, w, 1e-5, 1e-5);
    }
}

/// 2,000 `conv -> batch_norm -> add(block input) -> relu` blocks and 1,000
/// `matmul -> add(bias) -> relu` blocks: 11,000 nodes that rewrite to 3,000.
fn long_chains(conv_blocks: usize, mm_blocks: usize) -> Model {
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[1, 2, 2, 2]);
    let mut h = x;
    for i in 0..conv_blocks {
        let s = 100 * i as u64;
        let wt: Vec<f32> = Tensor::random(&[2, 2, 1, 1], s)
            .f32s("w")
            .unwrap()
            .iter()
            .map(|v| v * 0.05)
            .collect();
        let wt = b.weight(&format!("c{i}.w"), Tensor::new(&[2, 2, 1, 1], wt).unwrap());
        let c = b.conv2d(&h, &wt, None, Conv2d::default());
        let [g, be, m, v] = bn_stats(&mut b, &format!("c{i}.bn"), 2, s + 10);
        let n = b.batch_norm(&c, &g, &be, &m, &v, 1e-5);
        let r = b.add(&n, &h);
        h = b.act(&r, Activation::Relu);
    }
    b.output(&h);
    let y = b.input("y", &[2, 4]);
    let mut h = y;
    for i in 0..mm_blocks {
        let s = 7 + 100 * i as u64;
        let wt: Vec<f32> = Tensor::random(&[4, 4], s)
            .f32s("w")
            .unwrap()
            .iter()
            .map(|v| v * 0.3)
            .collect();
        let wt = b.weight(&format!("m{i}.w"), Tensor::new(&[4, 4], wt).unwrap());
        let m = b.linear(&h, &wt, None, Activation::None);
        let bias = b.weight(&format!("m{i}.b"), Tensor::random(&[4], s + 1));
        let a = b.add(&m, &bias);
        h = b.act(&a, Activation::Relu);
    }
    b.output(&h);
    Model::from_builder(b).unwrap()
}

#[test]
fn passes_visit_each_node_a_bounded_number_of_times() {
    let m = long_chains(2000, 1000);
    let (mut g, mut w) = (m.graph.clone(), (*m.weights).clone());
    let nodes = g.nodes.len();
    assert_eq!(nodes, 11_000);
    let t = std::time::Instant::now();
    let bn = passes::fold_batchnorm_counted(&mut g, &mut w).unwrap();
    assert_eq!(bn.rewrites, 2000);
    assert!(
        bn.visits <= 2 * nodes,
        "fold_batchnorm: {} visits for {nodes} nodes",
        bn.visits
    );
    let checked = g.check(&w).unwrap();
    let n2 = g.nodes.len();
    let fu = passes::fuse_epilogues_counted(&mut g, &mut w, &checked.shapes).unwrap();
    assert_eq!(fu.rewrites, 2 * 2000 + 2 * 1000);
    assert!(
        fu.visits <= 3 * n2,
        "fuse_epilogues: {} visits for {n2} nodes",
        fu.visits
    );
    eprintln!(
        "{nodes} nodes: {} + {} visits, {:?}",
        bn.visits,
        fu.visits,
        t.elapsed()
    );
    assert_eq!(g.nodes.len(), 3000);
    // Every conv took its BN, its residual and its relu; every matmul its bias and relu; only
    // the weights the fused nodes read are left.
    for n in &g.nodes {
        match &n.op {
            Op::Conv2d(c) => assert!(c.bias && c.residual && c.act == Activation::Relu),
            Op::MatMul(mm) => assert!(mm.bias && !mm.residual && mm.act == Activation::Relu),
            op => panic!("unexpected node {op:?}"),
        }
    }
    assert_eq!(g.weights.len(), 2000 * 2 + 1000 * 2);
    assert_eq!(w.len(), g.weights.len());
    g.check(&w).unwrap();
}

#[test]
fn fusion_stays_linear_with_wide_fan_out_and_fan_in() {
    // One value added as the residual of 4,000 matmuls whose sums all feed one concat: the
    // shared value has 4,000 readers and the concat is the sole reader of 4,000 fused nodes.
    let n = 4000;
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[1, 8]);
    let w = b.weight("w", Tensor::random(&[8, 8], 1));
    let sums: Vec<String> = (0..n)
        .map(|_| {
            let m = b.linear(&x, &w, None, Activation::None);
            b.add(&m, &x)
        })
        .collect();
    let refs: Vec<&str> = sums.iter().map(|s| s.as_str()).collect();
    let y = b.concat(&refs, 0);
    b.output(&y);
    let (mut g, mut w) = b.build().unwrap();
    let nodes = g.nodes.len();
    let shapes = g.check(&w).unwrap().shapes;
    let t = std::time::Instant::now();
    let st = passes::fuse_epilogues_counted(&mut g, &mut w, &shapes).unwrap();
    eprintln!("{nodes} nodes: {} visits, {:?}", st.visits, t.elapsed());
    assert_eq!(st.rewrites, n);
    assert!(st.visits <= 3 * nodes, "{} visits", st.visits);
    assert!(g.nodes[..n]
        .iter()
        .all(|n| matches!(&n.op, Op::MatMul(m) if m.residual) && n.inputs[2] == "x"));
    g.check(&w).unwrap();
}

#[test]
fn long_chains_compute_the_same_rewritten() {
    let m = long_chains(1000, 500);
    let (opt, got, want) = both(&m);
    assert_eq!(opt.plan().nodes.len(), 1500);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        // Through 1,000 blocks the folded BNs' rounding accumulates relative to the values.
        assert_close(&format!("chain {i}"), g, w, 1e-4, 1e-4);
    }
}

/// The rewrites as first written (a restart after every rewrite, consumers found by scanning
/// all nodes), with fresh names for what they generate: the reference the one-walk passes must
/// match, node for node, on random graphs.
mod reference {
    use std::collections::{BTreeMap, HashMap};
    use wgedge::graph::{Graph, ValueSpec};
    use wgedge::ops::{Activation, BinaryKind, Op};
    use wgedge::Tensor;

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

    fn weight<'a>(g: &Graph, w: &'a BTreeMap<String, Tensor>, name: &str) -> Option<&'a Tensor> {
        (g.weights.iter().any(|s| s.name == name) && g.format_of(name).is_dense())
            .then(|| w.get(name))
            .flatten()
    }

    fn set_weight(g: &mut Graph, w: &mut BTreeMap<String, Tensor>, t: Tensor) -> String {
        let name = format!("__reference{}", w.len());
        assert!(!w.contains_key(&name));
        g.weights.push(ValueSpec {
            name: name.clone(),
            dtype: t.dtype(),
            shape: t.shape().to_vec(),
        });
        w.insert(name.clone(), t);
        name
    }

    pub fn fold_batchnorm(g: &mut Graph, w: &mut BTreeMap<String, Tensor>) -> usize {
        let mut folded = 0;
        loop {
            let mut hit = None;
            for (ci, conv) in g.nodes.iter().enumerate() {
                let Op::Conv2d(c) = &conv.op else { continue };
                if c.residual
                    || c.act != Activation::None
                    || weight(g, w, &conv.inputs[1]).is_none()
                {
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
                .map(|n| w[n].f32s("bn").unwrap())
                .collect();
            let (scale, shift) = bn.affine(stats[0], stats[1], stats[2], stats[3]);
            let conv = g.nodes[ci].clone();
            let wt = &w[&conv.inputs[1]];
            let per = wt.numel() / scale.len();
            let new_w: Vec<f32> = wt
                .f32s("w")
                .unwrap()
                .iter()
                .enumerate()
                .map(|(i, v)| v * scale[i / per])
                .collect();
            let old_b: Vec<f32> = if c.bias {
                w[&conv.inputs[2]].f32s("b").unwrap().to_vec()
            } else {
                vec![0.0; scale.len()]
            };
            let new_b: Vec<f32> = old_b
                .iter()
                .zip(&scale)
                .zip(&shift)
                .map(|((b, s), t)| b * s + t)
                .collect();
            let wname = set_weight(g, w, Tensor::new(wt.shape(), new_w).unwrap());
            let bname = set_weight(g, w, Tensor::new(&[scale.len()], new_b).unwrap());
            c.bias = true;
            let bn_out = g.nodes[bi].output.clone();
            let node = &mut g.nodes[ci];
            node.op = Op::Conv2d(c);
            node.inputs = vec![node.inputs[0].clone(), wname, bname];
            node.output = bn_out;
            g.nodes.remove(bi);
            folded += 1;
        }
        folded
    }

    pub fn fuse_epilogues(
        g: &mut Graph,
        w: &mut BTreeMap<String, Tensor>,
        shapes: &HashMap<String, Vec<usize>>,
    ) -> usize {
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
                        let act = op.epilogue_act().unwrap();
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
                            _ => unreachable!(),
                        };
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
                                    let flat = w[other]
                                        .clone()
                                        .reshaped(&[oshape.iter().product()])
                                        .unwrap();
                                    set_weight(g, w, flat)
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
                        *op.epilogue_act().unwrap() = b.act;
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
        fused
    }
}

/// A random graph over conv-shaped `[1, 2, 3, 3]` and matmul-shaped `[2, 4]` values: convs and
/// linears (with and without bias and activation), BatchNorms, adds of values (the same one
/// twice included), adds of bias-shaped, channel-shaped and last-axis constants (shared ones
/// included) in either order, adds carrying an activation, activations and muls; repeated and
/// empty node names; the last values and some random ones as outputs.
fn random_graph(seed: u64, steps: usize) -> Model {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut rnd = move |n: usize| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 33) as usize % n
    };
    let mut b = GraphBuilder::new();
    let mut pools = [
        vec![b.input("x", &[1, 2, 3, 3])],
        vec![b.input("y", &[2, 4])],
    ];
    let mut consts: [Vec<(String, Vec<usize>)>; 2] = [Vec::new(), Vec::new()];
    let mut k = 0u64;
    let mut fresh = |b: &mut GraphBuilder, t: Tensor| {
        k += 1;
        b.weight(&format!("k{k}"), t)
    };
    let rand = |shape: &[usize], r: usize| Tensor::random(shape, seed ^ ((r as u64) << 20));
    let acts = [Activation::None, Activation::Relu, Activation::Sigmoid];
    let mut outputs = Vec::new();
    for _ in 0..steps {
        let p = rnd(2);
        let v = {
            let pool = &pools[p];
            pool[pool.len() - 1 - rnd(pool.len().min(3))].clone()
        };
        let u = {
            let pool = &pools[p];
            pool[pool.len() - 1 - rnd(pool.len().min(3))].clone()
        };
        let out = match rnd(9) {
            0 | 1 => {
                let act = acts[rnd(3) * rnd(2)];
                let with_bias = rnd(2) == 0;
                if p == 0 {
                    let k3 = rnd(2);
                    let w = fresh(&mut b, rand(&[2, 2, 1 + 2 * k3, 1 + 2 * k3], rnd(1 << 20)));
                    let bias = with_bias.then(|| fresh(&mut b, rand(&[2], rnd(1 << 20))));
                    let c = Conv2d {
                        pad: [k3; 4],
                        act,
                        ..Default::default()
                    };
                    b.conv2d(&v, &w, bias.as_deref(), c)
                } else {
                    let w = fresh(&mut b, rand(&[4, 4], rnd(1 << 20)));
                    let bias = with_bias.then(|| fresh(&mut b, rand(&[4], rnd(1 << 20))));
                    b.linear(&v, &w, bias.as_deref(), act)
                }
            }
            2 if p == 0 => {
                // Mostly right after a conv of its own (a fold candidate).
                let v = if rnd(4) != 0 {
                    let w = fresh(&mut b, rand(&[2, 2, 1, 1], rnd(1 << 20)));
                    let bias = (rnd(2) == 0).then(|| fresh(&mut b, rand(&[2], rnd(1 << 20))));
                    b.conv2d(&v, &w, bias.as_deref(), Conv2d::default())
                } else {
                    v
                };
                let st: Vec<String> = (0..4)
                    .map(|i| {
                        let t = rand(&[2], rnd(1 << 20));
                        let t = if i == 3 {
                            let v = t.f32s("v").unwrap().iter().map(|v| v.abs() + 0.5);
                            Tensor::new(&[2], v.collect()).unwrap()
                        } else {
                            t
                        };
                        fresh(&mut b, t)
                    })
                    .collect();
                b.batch_norm(&v, &st[0], &st[1], &st[2], &st[3], 1e-5)
            }
            3 if rnd(2) == 0 => b.add(&v, &u),
            3 => b.add(&u, &v),
            4 | 5 => {
                let shapes: &[&[usize]] = if p == 0 {
                    &[&[2, 1, 1], &[1, 2, 1, 1], &[3], &[1, 2, 3, 3]]
                } else {
                    &[&[4], &[2, 4], &[1, 4]]
                };
                let shape = shapes[rnd(shapes.len())];
                // Often right after a conv of its own (a bias candidate).
                let v = if p == 0 && rnd(2) == 0 {
                    let w = fresh(&mut b, rand(&[2, 2, 1, 1], rnd(1 << 20)));
                    b.conv2d(&v, &w, None, Conv2d::default())
                } else {
                    v
                };
                let reuse = consts[p]
                    .iter()
                    .find(|(_, s)| s.as_slice() == shape && rnd(2) == 0)
                    .map(|(c, _)| c.clone());
                let c = match reuse {
                    Some(c) => c,
                    None => {
                        let c = fresh(&mut b, rand(shape, rnd(1 << 20)));
                        consts[p].push((c.clone(), shape.to_vec()));
                        c
                    }
                };
                if rnd(2) == 0 {
                    b.add(&v, &c)
                } else {
                    b.add(&c, &v)
                }
            }
            6 => b.node(
                Op::Binary(Binary {
                    kind: BinaryKind::Add,
                    act: Activation::Relu,
                }),
                &[&v, &u],
            ),
            7 => b.act(&v, acts[1 + rnd(2)]),
            _ => b.binary(BinaryKind::Mul, &v, &u),
        };
        if rnd(6) == 0 {
            outputs.push(out.clone());
        }
        pools[p].push(out);
    }
    for pool in &pools {
        let last = pool.last().unwrap();
        if !outputs.contains(last) {
            outputs.push(last.clone());
        }
    }
    for o in &outputs {
        b.output(o);
    }
    let (mut g, w) = b.build().unwrap();
    let names = ["a", "a", "", "conv"];
    for n in g.nodes.iter_mut() {
        if rnd(2) == 0 {
            n.name = names[rnd(names.len())].into();
        }
    }
    Model::new(g, w).unwrap()
}

/// A node's inputs with weights replaced by their data (generated names differ).
fn described(g: &wgedge::graph::Graph, w: &BTreeMap<String, Tensor>) -> Vec<String> {
    g.nodes
        .iter()
        .map(|n| {
            let ins: Vec<String> = n
                .inputs
                .iter()
                .map(|v| match w.get(v) {
                    Some(t) if g.weights.iter().any(|s| &s.name == v) => format!("{t:?}"),
                    _ => v.clone(),
                })
                .collect();
            format!("{} {:?} {ins:?} -> {}", n.name, n.op, n.output)
        })
        .collect()
}

#[test]
fn one_walk_passes_rewrite_random_graphs_as_the_restarting_ones_did() {
    let (mut total_bn, mut total_fused) = (0, 0);
    // Fused: conv residual, conv bias (a copy), conv act, matmul residual, bias, act.
    let mut seen = [0usize; 6];
    for seed in 0..300u64 {
        let m = random_graph(seed, 4 + seed as usize % 40);
        let (mut g, mut w) = (m.graph.clone(), (*m.weights).clone());
        let (mut rg, mut rw) = (m.graph.clone(), (*m.weights).clone());
        let bn = passes::fold_batchnorm(&mut g, &mut w).unwrap();
        let rbn = reference::fold_batchnorm(&mut rg, &mut rw);
        assert_eq!(bn, rbn, "seed {seed}: BN folds");
        let shapes = g.check(&w).unwrap().shapes;
        let rshapes = rg.check_types().unwrap().shapes;
        let fused = passes::fuse_epilogues(&mut g, &mut w, &shapes).unwrap();
        let rfused = reference::fuse_epilogues(&mut rg, &mut rw, &rshapes);
        assert_eq!(fused, rfused, "seed {seed}: fusions");
        assert_eq!(
            described(&g, &w),
            described(&rg, &rw),
            "seed {seed}: rewritten graphs"
        );
        total_bn += bn;
        total_fused += fused;
        for n in &g.nodes {
            match &n.op {
                Op::Conv2d(c) => {
                    seen[0] += c.residual as usize;
                    seen[1] += n.inputs.iter().any(|i| i.contains(":as_bias")) as usize;
                    seen[2] += (c.act != Activation::None && n.name.contains('+')) as usize;
                }
                Op::MatMul(mm) => {
                    seen[3] += mm.residual as usize;
                    seen[4] += (mm.bias && n.name.contains('+')) as usize;
                    seen[5] += (mm.act != Activation::None && n.name.contains('+')) as usize;
                }
                _ => {}
            }
        }
        // And the rewritten graph computes what the original does.
        let rewritten = Model::new(g, w).unwrap();
        let plain = SessionOptions {
            optimize: false,
            ..Default::default()
        };
        let feeds = feeds_for(&m);
        let want = Session::cpu(&m, plain.clone())
            .unwrap()
            .run(&feeds_ref(&feeds))
            .unwrap();
        let got = Session::cpu(&rewritten, plain)
            .unwrap()
            .run(&feeds_ref(&feeds))
            .unwrap();
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert_close(&format!("seed {seed} output {i}"), a, b, 1e-5, 1e-4);
        }
    }
    // The generator reaches both passes often.
    eprintln!("{total_bn} folds, {total_fused} fusions, {seen:?}");
    assert!(
        total_bn > 100 && total_fused > 150,
        "{total_bn} folds, {total_fused} fusions"
    );
    assert!(seen.iter().all(|&n| n >= 10), "{seen:?}");
}

#[test]
fn a_folded_constant_never_replaces_a_stored_part_of_a_packed_weight() {
    // `fold_constants` needs only `check_types`, which does not look at stored tensors: a value
    // named like a packed weight's part must not be stored over that part when it folds.
    use wgedge::format::{QuantSpec, WeightFormat};
    let int8 = WeightFormat::Quant(QuantSpec {
        bits: 8,
        group: 0,
        zero_points: false,
        pow2: false,
        scale_dtype: wgedge::DType::F32,
    });
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[2, 3]);
    let q = b
        .weight_packed("q", &Tensor::random(&[4, 3], 1), int8)
        .unwrap();
    let y = b.linear(&x, &q, None, Activation::None);
    let k = b.weight("k", Tensor::random(&[4], 2));
    let c = b.act(&k, Activation::Relu);
    let z = b.add(&y, &c);
    b.output(&z);
    let (mut g, mut w) = b.build().unwrap();
    let part = w["q.qweight"].clone();
    g.nodes[1].output = "q.qweight".into();
    g.nodes[2].inputs[1] = "q.qweight".into();
    assert_eq!(passes::fold_constants(&mut g, &mut w).unwrap(), 1);
    assert_eq!(w["q.qweight"], part, "the packed part is intact");
    let folded = &g.nodes.last().unwrap().inputs[1];
    assert_ne!(folded, "q.qweight");
    assert_eq!(
        w[folded].f32s("c").unwrap(),
        &Tensor::random(&[4], 2)
            .f32s("k")
            .unwrap()
            .iter()
            .map(|v| v.max(0.0))
            .collect::<Vec<_>>()[..]
    );
    g.check(&w).unwrap();
}
