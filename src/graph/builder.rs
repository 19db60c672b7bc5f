//! A small builder for graphs in code: each call adds a node and returns its output's name.

use super::def::{Graph, Node, ValueSpec};
use crate::error::{Error, Result};
use crate::ops::*;
use crate::tensor::{DType, Tensor};
use std::collections::BTreeMap;

/// Builds a [`Graph`] and its weights.
///
/// ```
/// use wgedge::{graph::GraphBuilder, ops::Activation, Tensor};
/// let mut b = GraphBuilder::new();
/// let x = b.input("x", &[1, 4]);
/// let w = b.weight("fc.weight", Tensor::random(&[3, 4], 1));
/// let bias = b.weight("fc.bias", Tensor::zeros(&[3]));
/// let h = b.linear(&x, &w, Some(&bias), Activation::Relu);
/// b.output(&h);
/// let (graph, weights) = b.build().unwrap();
/// assert_eq!(graph.nodes.len(), 1);
/// assert_eq!(weights.len(), 2);
/// ```
#[derive(Default)]
pub struct GraphBuilder {
    graph: Graph,
    weights: BTreeMap<String, Tensor>,
    counter: usize,
}

impl GraphBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares an f32 graph input.
    pub fn input(&mut self, name: &str, shape: &[usize]) -> String {
        self.graph.inputs.push(ValueSpec {
            name: name.into(),
            dtype: DType::F32,
            shape: shape.to_vec(),
        });
        name.into()
    }

    /// Declares a graph input of any dtype.
    pub fn input_typed(&mut self, name: &str, dtype: DType, shape: &[usize]) -> String {
        self.graph.inputs.push(ValueSpec {
            name: name.into(),
            dtype,
            shape: shape.to_vec(),
        });
        name.into()
    }

    /// Marks dims of input `name` that may change from run to run: one entry per axis, a
    /// symbol (`Some("batch")`) or `None` for a fixed dim (see [`Graph::dims`]).
    pub fn dims(&mut self, name: &str, dims: &[Option<&str>]) {
        self.graph.dims.insert(
            name.into(),
            dims.iter().map(|d| d.map(str::to_string)).collect(),
        );
    }

    /// Adds a constant stored in a packed `format` (quantized, sparse): encodes `dense` into
    /// the format's parts; the graph sees an f32 value of `dense`'s shape.
    pub fn weight_packed(
        &mut self,
        name: &str,
        dense: &Tensor,
        format: crate::format::WeightFormat,
    ) -> Result<String> {
        let parts = format.encode(name, dense)?;
        self.graph.weights.push(ValueSpec {
            name: name.into(),
            dtype: DType::F32,
            shape: dense.shape().to_vec(),
        });
        if !format.is_dense() {
            self.graph.formats.insert(name.into(), format);
        }
        self.weights.extend(parts);
        Ok(name.into())
    }

    /// Adds a constant tensor.
    pub fn weight(&mut self, name: &str, t: Tensor) -> String {
        self.graph.weights.push(ValueSpec {
            name: name.into(),
            dtype: t.dtype(),
            shape: t.shape().to_vec(),
        });
        self.weights.insert(name.into(), t);
        name.into()
    }

    /// Marks a value as a graph output.
    pub fn output(&mut self, v: &str) {
        self.graph.outputs.push(v.into());
    }

    /// Adds a node with any op; returns the output value's name.
    pub fn node(&mut self, op: Op, inputs: &[&str]) -> String {
        self.counter += 1;
        let name = format!("{}_{}", op.name(), self.counter);
        let output = format!("{name}:out");
        self.graph.nodes.push(Node {
            name,
            op,
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            output: output.clone(),
        });
        output
    }

    /// Renames the last node's output (to give outputs stable, readable names).
    pub fn name_last(&mut self, name: &str) -> Result<String> {
        let n = self
            .graph
            .nodes
            .last_mut()
            .ok_or_else(|| Error::graph("name_last on an empty graph"))?;
        n.output = name.into();
        Ok(name.into())
    }

    /// `act(x @ w^T + bias)` with `w` in the PyTorch `[out, in]` layout.
    pub fn linear(&mut self, x: &str, w: &str, bias: Option<&str>, act: Activation) -> String {
        let op = MatMul {
            trans_b: true,
            bias: bias.is_some(),
            act,
            ..Default::default()
        };
        let mut ins = vec![x, w];
        ins.extend(bias);
        self.node(Op::MatMul(op), &ins)
    }

    /// Plain (batched) matrix product.
    pub fn matmul(&mut self, a: &str, b: &str) -> String {
        self.node(Op::MatMul(MatMul::default()), &[a, b])
    }

    /// Convolution with the given attributes (`c.bias` must match whether `bias` is given).
    pub fn conv2d(&mut self, x: &str, w: &str, bias: Option<&str>, mut c: Conv2d) -> String {
        c.bias = bias.is_some();
        let mut ins = vec![x, w];
        ins.extend(bias);
        self.node(Op::Conv2d(c), &ins)
    }

    /// Transposed convolution (ONNX `ConvTranspose`) with weight `[cin, cout / groups, kh, kw]`
    /// (`c.bias` is set from whether `bias` is given).
    pub fn conv_transpose2d(
        &mut self,
        x: &str,
        w: &str,
        bias: Option<&str>,
        mut c: ConvTranspose2d,
    ) -> String {
        c.bias = bias.is_some();
        let mut ins = vec![x, w];
        ins.extend(bias);
        self.node(Op::ConvTranspose2d(c), &ins)
    }

    /// The shape of `x` as an i64 tensor.
    pub fn shape(&mut self, x: &str) -> String {
        self.node(Op::Shape(Shape {}), &[x])
    }

    /// `x` converted to `to`.
    pub fn cast(&mut self, x: &str, to: DType) -> String {
        self.node(Op::Cast(Cast { to }), &[x])
    }

    pub fn act(&mut self, x: &str, act: Activation) -> String {
        self.node(Op::Unary(Unary { act }), &[x])
    }

    pub fn binary(&mut self, kind: BinaryKind, a: &str, b: &str) -> String {
        self.node(
            Op::Binary(Binary {
                kind,
                act: Activation::None,
            }),
            &[a, b],
        )
    }

    pub fn add(&mut self, a: &str, b: &str) -> String {
        self.binary(BinaryKind::Add, a, b)
    }

    pub fn softmax(&mut self, x: &str, axis: i64) -> String {
        self.node(Op::Softmax(Softmax { axis }), &[x])
    }

    pub fn pool(&mut self, x: &str, p: Pool2d) -> String {
        self.node(Op::Pool2d(p), &[x])
    }

    pub fn global_avg_pool(&mut self, x: &str) -> String {
        self.node(Op::GlobalAvgPool(GlobalAvgPool {}), &[x])
    }

    pub fn batch_norm(
        &mut self,
        x: &str,
        gamma: &str,
        beta: &str,
        mean: &str,
        var: &str,
        eps: f32,
    ) -> String {
        self.node(
            Op::BatchNorm(BatchNorm { eps }),
            &[x, gamma, beta, mean, var],
        )
    }

    pub fn layer_norm(&mut self, x: &str, gamma: &str, beta: &str, eps: f32) -> String {
        self.node(
            Op::LayerNorm(LayerNorm { axis: -1, eps }),
            &[x, gamma, beta],
        )
    }

    pub fn flatten(&mut self, x: &str, axis: usize) -> String {
        self.node(Op::Flatten(Flatten { axis }), &[x])
    }

    pub fn reshape(&mut self, x: &str, shape: &[i64]) -> String {
        self.node(
            Op::Reshape(Reshape {
                shape: shape.to_vec(),
            }),
            &[x],
        )
    }

    pub fn transpose(&mut self, x: &str, perm: &[usize]) -> String {
        self.node(
            Op::Transpose(Transpose {
                perm: perm.to_vec(),
            }),
            &[x],
        )
    }

    pub fn concat(&mut self, xs: &[&str], axis: i64) -> String {
        self.node(Op::Concat(Concat { axis }), xs)
    }

    /// ONNX `Slice` with its bounds as attributes (`axes`/`steps` may be empty: all, 1).
    pub fn slice(
        &mut self,
        x: &str,
        starts: &[i64],
        ends: &[i64],
        axes: &[i64],
        steps: &[i64],
    ) -> String {
        let op = crate::ops::Slice {
            starts: starts.to_vec(),
            ends: ends.to_vec(),
            axes: axes.to_vec(),
            steps: steps.to_vec(),
        };
        self.node(op.into(), &[x])
    }

    /// ONNX `Squeeze` (`None`: every size-1 dim).
    pub fn squeeze(&mut self, x: &str, axes: Option<&[i64]>) -> String {
        let op = crate::ops::Squeeze {
            axes: axes.map(|a| a.to_vec()),
        };
        self.node(op.into(), &[x])
    }

    /// ONNX `Unsqueeze`.
    pub fn unsqueeze(&mut self, x: &str, axes: &[i64]) -> String {
        let op = crate::ops::Unsqueeze {
            axes: axes.to_vec(),
        };
        self.node(op.into(), &[x])
    }

    /// ONNX `Gather` of `indices` (i64 or i32) along `axis`.
    pub fn gather(&mut self, x: &str, indices: &str, axis: i64) -> String {
        self.node(crate::ops::Gather { axis }.into(), &[x, indices])
    }

    /// ONNX `Expand` to `shape` (numpy broadcasting).
    pub fn expand(&mut self, x: &str, shape: &[i64]) -> String {
        let op = crate::ops::Expand {
            shape: shape.to_vec(),
        };
        self.node(op.into(), &[x])
    }

    /// ONNX `Tile`.
    pub fn tile(&mut self, x: &str, repeats: &[i64]) -> String {
        let op = crate::ops::Tile {
            repeats: repeats.to_vec(),
        };
        self.node(op.into(), &[x])
    }

    /// ONNX `Pad` of every axis (`pads`: begins, then ends; negative crops).
    pub fn pad(&mut self, x: &str, mode: crate::ops::PadMode, pads: &[i64], value: f32) -> String {
        let op = crate::ops::Pad {
            mode,
            pads: pads.to_vec(),
            value,
            axes: Vec::new(),
        };
        self.node(op.into(), &[x])
    }

    /// ONNX `DepthToSpace` (`crd`: CRD order, else DCR).
    pub fn depth_to_space(&mut self, x: &str, blocksize: usize, crd: bool) -> String {
        let op = crate::ops::DepthToSpace { blocksize, crd };
        self.node(op.into(), &[x])
    }

    /// ONNX `SpaceToDepth`.
    pub fn space_to_depth(&mut self, x: &str, blocksize: usize) -> String {
        self.node(crate::ops::SpaceToDepth { blocksize }.into(), &[x])
    }

    /// ONNX `Resize` with its scales or sizes as attributes.
    pub fn resize(&mut self, x: &str, r: crate::ops::Resize) -> String {
        self.node(r.into(), &[x])
    }

    /// ONNX pooling with every option ([`Pool`]: dilation, ceil mode, auto pad, Lp, global).
    pub fn pool_onnx(&mut self, x: &str, p: crate::ops::Pool) -> String {
        self.node(p.into(), &[x])
    }

    /// `min(max(x, min), max)` with constant bounds (a missing one is unbounded): a fusable
    /// activation (`relu`/`relu6` where exact).
    pub fn clip(&mut self, x: &str, min: Option<f32>, max: Option<f32>) -> String {
        self.act(x, Activation::clip(min, max))
    }

    /// A math function outside the activation table (`log`, `sqrt`, `reciprocal`, ...).
    pub fn math(&mut self, x: &str, kind: MathKind) -> String {
        self.node(Op::Math(Math { kind }), &[x])
    }

    /// A reduction of `kind` over `axes` (all axes when empty).
    pub fn reduce(&mut self, x: &str, kind: ReduceKind, axes: &[i64], keepdims: bool) -> String {
        self.node(Op::Reduce(Reduce::new(kind, axes, keepdims)), &[x])
    }

    /// The index of the largest (`max`) or smallest element along `axis`, as i64.
    pub fn arg_reduce(&mut self, x: &str, max: bool, axis: i64, keepdims: bool) -> String {
        self.node(
            Op::ArgReduce(ArgReduce {
                max,
                axis,
                keepdims,
                select_last_index: false,
            }),
            &[x],
        )
    }

    /// `a (cmp) b` as a bool value.
    pub fn compare(&mut self, kind: CompareKind, a: &str, b: &str) -> String {
        self.node(Op::Compare(Compare { kind }), &[a, b])
    }

    /// `cond ? x : y` elementwise (cond bool).
    pub fn where_(&mut self, cond: &str, x: &str, y: &str) -> String {
        self.node(Op::Where(Where {}), &[cond, x, y])
    }

    pub fn log_softmax(&mut self, x: &str, axis: i64) -> String {
        self.node(Op::LogSoftmax(LogSoftmax { axis }), &[x])
    }

    /// Group normalisation of `[N, C, ...]` with per-channel `scale` and `bias`.
    pub fn group_norm(
        &mut self,
        x: &str,
        scale: &str,
        bias: &str,
        num_groups: usize,
        eps: f32,
    ) -> String {
        self.node(
            Op::GroupNorm(GroupNorm { num_groups, eps }),
            &[x, scale, bias],
        )
    }

    /// RMS normalisation over the last axis.
    pub fn rms_norm(&mut self, x: &str, scale: &str, eps: f32) -> String {
        self.node(Op::RmsNorm(RmsNorm { axis: -1, eps }), &[x, scale])
    }

    /// The graph and its weights (checked when a `Model` is made from them).
    pub fn build(self) -> Result<(Graph, BTreeMap<String, Tensor>)> {
        self.graph.check(&self.weights)?;
        Ok((self.graph, self.weights))
    }
}

/// A one-node graph `y = x @ w^T` with `x: [m, k]` and a random `w: [n, k]` (benchmarks, tuning).
pub fn single_linear(m: usize, k: usize, n: usize) -> GraphBuilder {
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[m, k]);
    let w = b.weight("w", Tensor::random(&[n, k], 7));
    let y = b.linear(&x, &w, None, Activation::None);
    b.output(&y);
    b
}

/// A one-node graph: 3x3 conv, pad 1, `c -> c` channels over `[1, c, hw, hw]`, random weights.
pub fn single_conv3x3(c: usize, hw: usize, groups: usize) -> GraphBuilder {
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[1, c, hw, hw]);
    let w = b.weight("w", Tensor::random(&[c, c / groups, 3, 3], 9));
    let y = b.conv2d(
        &x,
        &w,
        None,
        Conv2d {
            pad: [1; 4],
            groups,
            ..Default::default()
        },
    );
    b.output(&y);
    b
}
