//! Magnitude pruning: unstructured, N:M, block and channel (filter / neuron) sparsity, the
//! rewrite of the model it needs, and the report.

use super::targets::{fmt_ratio, readers, transpose2d, SkippedWeight, Target};
use crate::error::{Error, Result};
use crate::format::{matrix_dims, prune_nm, SparseLayout, SparseSpec, SparseValues, WeightFormat};
use crate::graph::Graph;
use crate::model::Model;
use crate::ops::{BinaryKind, Op};
use crate::tensor::{fmt_shape, DType, Tensor};
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::str::FromStr;

/// Which entries of a weight are removed together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pattern {
    /// Single weights, smallest `|w|` first.
    Unstructured,
    /// At most `n` nonzeros in every group of `m` consecutive values along K (the format's
    /// cols, [`matrix_dims`]), the largest `|w|` of each group kept: 2:4 is what sparse tensor
    /// cores run. The sparsity is `1 - n/m`, whatever [`PruneConfig::sparsity`] says.
    NM { n: usize, m: usize },
    /// `r x c` tiles of the `[rows, cols]` matrix (rows = output channels), ranked by their
    /// norm ([`PruneConfig::norm`]); weights the tile does not fit are left alone.
    Block { r: usize, c: usize },
    /// Whole output channels of convs (filters) and linears (neurons), ranked by the norm of
    /// their weights and removed physically: the layer's weight, its bias, a following batch
    /// norm and the next layer's input channels all shrink.
    Channel,
}

impl Pattern {
    /// Rejects N:M outside `1 <= n < m <= 16` and blocks outside 1..=64 a side
    /// (`Error::Input`).
    pub fn check(&self) -> Result<()> {
        match *self {
            Pattern::NM { n, m } if !(1 <= n && n < m && m <= 16) => Err(Error::Input(format!(
                "{n}:{m} sparsity needs 1 <= n < m <= 16"
            ))),
            Pattern::Block { r, c } if !(1..=64).contains(&r) || !(1..=64).contains(&c) => Err(
                Error::Input(format!("block {r}x{c}: each side must be between 1 and 64")),
            ),
            _ => Ok(()),
        }
    }

    /// The sparse storage that fits the pattern, with `values` as the stored value type
    /// (`None` for channels, which shrink tensors).
    pub fn sparse_format(&self, values: SparseValues) -> Option<WeightFormat> {
        let layout = match *self {
            Pattern::Unstructured => SparseLayout::Csr,
            Pattern::NM { n, m } => SparseLayout::NM { n, m },
            Pattern::Block { r, c } => SparseLayout::Bsr { r, c },
            Pattern::Channel => return None,
        };
        Some(WeightFormat::Sparse(SparseSpec { layout, values }))
    }
}

impl FromStr for Pattern {
    type Err = Error;
    /// `unstructured`, `N:M` (`2:4`, `4:8`), `block:RxC` (`block:4x1`) and `channel` (also
    /// `filter`, `neuron`); the parameters are checked.
    fn from_str(s: &str) -> Result<Self> {
        let lower = s.trim().to_ascii_lowercase();
        let bad = || {
            Error::Input(format!(
                "unknown pruning pattern '{s}' (expected unstructured | N:M such as 2:4 or 4:8 | \
                 block:RxC such as block:4x1 | channel)"
            ))
        };
        let num = |v: &str| v.trim().parse::<usize>().map_err(|_| bad());
        let p = match lower.as_str() {
            "unstructured" | "magnitude" => Pattern::Unstructured,
            "channel" | "channels" | "filter" | "filters" | "neuron" | "neurons" => {
                Pattern::Channel
            }
            _ => {
                if let Some(rest) = lower.strip_prefix("block:") {
                    let (r, c) = rest.split_once('x').ok_or_else(bad)?;
                    Pattern::Block {
                        r: num(r)?,
                        c: num(c)?,
                    }
                } else if let Some((n, m)) = lower.split_once(':') {
                    Pattern::NM {
                        n: num(n)?,
                        m: num(m)?,
                    }
                } else {
                    return Err(bad());
                }
            }
        };
        p.check()?;
        Ok(p)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Unstructured => f.write_str("unstructured"),
            Pattern::NM { n, m } => write!(f, "{n}:{m}"),
            Pattern::Block { r, c } => write!(f, "block:{r}x{c}"),
            Pattern::Channel => f.write_str("channel"),
        }
    }
}

/// Where the threshold of unstructured and block pruning is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Scope {
    /// Every layer loses the same fraction.
    #[default]
    Layer,
    /// One threshold over all selected layers' `|w|` (or block norms): layers with small
    /// weights lose more.
    Global,
}

impl FromStr for Scope {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "layer" | "local" | "per-layer" => Ok(Scope::Layer),
            "global" => Ok(Scope::Global),
            _ => Err(Error::Input(format!(
                "unknown pruning scope '{s}' (expected layer | global)"
            ))),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scope::Layer => "layer",
            Scope::Global => "global",
        })
    }
}

/// How blocks and channels are ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Norm {
    /// Sum of `|w|`.
    L1,
    /// Square root of the sum of `w^2`.
    #[default]
    L2,
}

impl FromStr for Norm {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "l1" => Ok(Norm::L1),
            "l2" => Ok(Norm::L2),
            _ => Err(Error::Input(format!(
                "unknown norm '{s}' (expected l1 | l2)"
            ))),
        }
    }
}

impl fmt::Display for Norm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Norm::L1 => "l1",
            Norm::L2 => "l2",
        })
    }
}

/// How a pruned weight is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Store {
    /// Dense f32 with the zeros in place (the shape and layout are unchanged).
    #[default]
    Dense,
    /// The sparse [`WeightFormat`] that fits the pattern ([`Pattern::sparse_format`]): CSR
    /// for unstructured, N:M, BSR for blocks, values as [`PruneConfig::values`] says.
    Sparse,
}

impl FromStr for Store {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "dense" => Ok(Store::Dense),
            "sparse" => Ok(Store::Sparse),
            _ => Err(Error::Input(format!(
                "unknown storage '{s}' (expected dense | sparse)"
            ))),
        }
    }
}

impl fmt::Display for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Store::Dense => "dense",
            Store::Sparse => "sparse",
        })
    }
}

/// What [`prune`] does. Start from [`PruneConfig::new`].
#[derive(Debug, Clone, PartialEq)]
pub struct PruneConfig {
    pub pattern: Pattern,
    /// Fraction removed, in `[0, 1)`: of the weights (unstructured), of the blocks (block),
    /// of each layer's output channels (channel; at least one channel is always kept).
    /// Ignored by N:M, whose sparsity is `1 - n/m`.
    pub sparsity: f32,
    /// Per layer or one global threshold (unstructured and block only).
    pub scope: Scope,
    /// The ranking of blocks and channels.
    pub norm: Norm,
    /// Weight names or node names to prune (a weight is taken if it or a node reading it is
    /// named); empty = every matmul and conv weight. A name that is neither is an error.
    pub layers: Vec<String>,
    /// Dense with zeros, or a sparse format. Channel pruning always stores dense.
    pub store: Store,
    /// The stored value type of a sparse format: f32 (exact), f16, or int8 codes with one f32
    /// scale per row (max-abs / 127). Only with [`Store::Sparse`].
    pub values: SparseValues,
}

impl PruneConfig {
    /// Per-layer pruning of `sparsity` with `pattern`, L2 ranking, every layer, stored dense.
    pub fn new(pattern: Pattern, sparsity: f32) -> Self {
        PruneConfig {
            pattern,
            sparsity,
            scope: Scope::Layer,
            norm: Norm::L2,
            layers: Vec::new(),
            store: Store::Dense,
            values: SparseValues::F32,
        }
    }

    /// Checks that the options go together (`Error::Input` otherwise).
    pub fn check(&self) -> Result<()> {
        self.pattern.check()?;
        if !(self.sparsity >= 0.0 && self.sparsity < 1.0) {
            return Err(Error::Input(format!(
                "sparsity {} is outside [0, 1) (0.9 removes 90%)",
                self.sparsity
            )));
        }
        if self.scope == Scope::Global
            && !matches!(self.pattern, Pattern::Unstructured | Pattern::Block { .. })
        {
            return Err(Error::Input(format!(
                "global scope applies to unstructured and block pruning, not {}",
                self.pattern
            )));
        }
        if self.store == Store::Dense && self.values != SparseValues::F32 {
            return Err(Error::Input(
                "sparse value types (f16, int8) apply to --store sparse; dense storage keeps f32"
                    .into(),
            ));
        }
        if self.store == Store::Sparse && self.pattern == Pattern::Channel {
            return Err(Error::Input(
                "channel pruning stores dense (the tensors themselves get smaller); drop \
                 --store sparse"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The fraction this configuration removes: `1 - n/m` for N:M, else `sparsity`.
    pub fn target(&self) -> f64 {
        match self.pattern {
            Pattern::NM { n, m } => 1.0 - n as f64 / m as f64,
            _ => f64::from(self.sparsity),
        }
    }
}

/// What pruning did to one weight.
#[derive(Debug, Clone, PartialEq)]
pub struct PrunedLayer {
    /// The weight's name.
    pub name: String,
    /// Its stored format after pruning ([`WeightFormat::label`]: "dense", "csr-f32", ...).
    pub format: String,
    /// Its shape in the input model.
    pub shape_before: Vec<usize>,
    /// Its shape in the pruned model (smaller after channel pruning; `[N, K]` when transposed).
    pub shape: Vec<usize>,
    /// True when a `[K, N]` matmul weight was stored as `[N, K]` with `trans_b` set (sparse
    /// storage keeps output channels as rows, like every packed format).
    pub transposed: bool,
    /// Zero elements of the pruned weight (as dense).
    pub zeros: usize,
    /// Elements of the pruned weight.
    pub elements: usize,
    /// Channel pruning: (output channels kept, output channels before).
    pub channels: Option<(usize, usize)>,
    /// Channel pruning: the other tensors rewritten to match ("fc.weight: K 784 -> 392").
    pub rewritten: Vec<String>,
    /// Stored bytes of the weight in the input model.
    pub bytes_before: usize,
    /// Stored bytes of the weight in the pruned model.
    pub bytes_after: usize,
}

impl PrunedLayer {
    /// Zeros / elements.
    pub fn sparsity(&self) -> f64 {
        self.zeros as f64 / self.elements.max(1) as f64
    }
}

/// What [`prune`] did: one [`PrunedLayer`] per pruned weight, the weights left alone with the
/// reason, and the model's weight bytes before and after. `Display` prints it as a table.
#[derive(Debug, Clone, PartialEq)]
pub struct PruneReport {
    /// The pattern pruned with.
    pub pattern: Pattern,
    /// The pruned weights, in the order the graph first uses them.
    pub layers: Vec<PrunedLayer>,
    /// Matmul/conv weights left as they were, and why.
    pub skipped: Vec<SkippedWeight>,
    /// All stored weight bytes of the input model.
    pub model_bytes_before: usize,
    /// All stored weight bytes of the pruned model (biases, norms, consumers included).
    pub model_bytes_after: usize,
}

impl PruneReport {
    /// Stored bytes of the pruned weights in the input model.
    pub fn bytes_before(&self) -> usize {
        self.layers.iter().map(|l| l.bytes_before).sum()
    }

    /// Stored bytes of the pruned weights in the pruned model.
    pub fn bytes_after(&self) -> usize {
        self.layers.iter().map(|l| l.bytes_after).sum()
    }

    /// Zeros over elements of all pruned weights (0 without layers).
    pub fn sparsity(&self) -> f64 {
        let zeros: usize = self.layers.iter().map(|l| l.zeros).sum();
        let n: usize = self.layers.iter().map(|l| l.elements).sum();
        zeros as f64 / n.max(1) as f64
    }

    /// Output channels kept and before, over the channel-pruned layers.
    pub fn channels(&self) -> Option<(usize, usize)> {
        let mut it = self.layers.iter().filter_map(|l| l.channels).peekable();
        it.peek()?;
        Some(it.fold((0, 0), |(a, b), (k, n)| (a + k, b + n)))
    }

    /// The report as an aligned text table, one row per layer, then totals, the tensors
    /// channel pruning rewrote and the weights left alone.
    pub fn table(&self) -> String {
        let head = [
            "layer",
            "shape",
            "stored as",
            "zeros",
            "sparsity",
            "bytes",
            "pruned",
            "ratio",
        ];
        let shape = |l: &PrunedLayer| {
            if l.shape == l.shape_before {
                fmt_shape(&l.shape)
            } else {
                format!("{} -> {}", fmt_shape(&l.shape_before), fmt_shape(&l.shape))
            }
        };
        let mut rows: Vec<[String; 8]> = (self.layers.iter())
            .map(|l| {
                [
                    format!("{}{}", l.name, if l.transposed { " (T)" } else { "" }),
                    shape(l),
                    l.format.clone(),
                    format!("{}/{}", l.zeros, l.elements),
                    match l.channels {
                        Some((k, n)) => format!("{}/{n} ch", n - k),
                        None => format!("{:.1}%", 100.0 * l.sparsity()),
                    },
                    l.bytes_before.to_string(),
                    l.bytes_after.to_string(),
                    fmt_ratio(l.bytes_before, l.bytes_after),
                ]
            })
            .collect();
        let (before, after) = (self.bytes_before(), self.bytes_after());
        let zeros: usize = self.layers.iter().map(|l| l.zeros).sum();
        let n: usize = self.layers.iter().map(|l| l.elements).sum();
        rows.push([
            format!("total ({} layers)", self.layers.len()),
            String::new(),
            String::new(),
            format!("{zeros}/{n}"),
            match self.channels() {
                Some((k, n)) => format!("{}/{n} ch", n - k),
                None => format!("{:.1}%", 100.0 * self.sparsity()),
            },
            before.to_string(),
            after.to_string(),
            fmt_ratio(before, after),
        ]);
        let mut width = head.map(str::len);
        for r in &rows {
            for (w, c) in width.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut s = String::new();
            for (i, (c, w)) in cells.iter().zip(width).enumerate() {
                if i < 3 {
                    s += &format!("{c:<w$}  ");
                } else {
                    s += &format!("{c:>w$}  ");
                }
            }
            s.trim_end().to_string() + "\n"
        };
        let mut out = line(&head.map(String::from));
        for (i, r) in rows.iter().enumerate() {
            if i + 1 == rows.len() {
                let total: usize = width.iter().sum::<usize>() + 2 * (width.len() - 1);
                out += &"-".repeat(total);
                out += "\n";
            }
            out += &line(r);
        }
        out += &format!(
            "model weights: {} -> {} bytes ({} smaller)\n",
            self.model_bytes_before,
            self.model_bytes_after,
            fmt_ratio(self.model_bytes_before, self.model_bytes_after)
        );
        if self.layers.iter().any(|l| l.transposed) {
            out += "(T): a [K, N] matmul weight, stored transposed as [N, K] (trans_b set)\n";
        }
        for l in self.layers.iter().filter(|l| !l.rewritten.is_empty()) {
            out += &format!("{} also rewrote: {}\n", l.name, l.rewritten.join("; "));
        }
        for s in &self.skipped {
            out += &format!("not pruned: {}: {}\n", s.name, s.reason);
        }
        out
    }
}

impl fmt::Display for PruneReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.table())
    }
}

/// Prunes the weight input (input 1) of the matmul and conv nodes of `model` as `cfg` says,
/// returning the new model and what it did. See [`prune_with_progress`].
///
/// ```
/// use wgedge::compress::{prune, Pattern, PruneConfig, Store};
/// use wgedge::{graph::GraphBuilder, ops::Activation, Model, Tensor};
/// let mut b = GraphBuilder::new();
/// let x = b.input("x", &[1, 64]);
/// let w = b.weight("fc.weight", Tensor::random(&[16, 64], 1));
/// let y = b.linear(&x, &w, None, Activation::None);
/// b.output(&y);
/// let model = Model::from_builder(b)?;
/// let cfg = PruneConfig {
///     store: Store::Sparse,
///     ..PruneConfig::new(Pattern::Unstructured, 0.9)
/// };
/// let (pruned, report) = prune(&model, &cfg)?;
/// assert_eq!(pruned.graph.format_of("fc.weight").label(), "csr-f32");
/// assert_eq!(report.layers[0].zeros, 922); // round(0.9 * 1024)
/// assert!(pruned.weight_bytes() * 4 < model.weight_bytes());
/// println!("{report}");
/// # Ok::<(), wgedge::Error>(())
/// ```
pub fn prune(model: &Model, cfg: &PruneConfig) -> Result<(Model, PruneReport)> {
    prune_with_progress(model, cfg, &mut |_, _, _| {})
}

/// [`prune`], calling `progress(done, total, weight)` once with `done = 0` before the first
/// weight and after each weight, so a command-line tool can draw a bar.
///
/// A weight is pruned when it is a declared graph weight, dense, f32, finite, non-empty, named
/// by `cfg.layers` (when given) and read only as the weight of matmul and conv nodes (a `[K, N]`
/// matmul weight is pruned in its `[N, K]` view, so N:M groups and blocks run along K).
/// Unstructured and block pruning remove `round(sparsity * count)` weights or blocks per layer
/// (or over all layers with [`Scope::Global`]), the smallest `|w|` (block norms) first; of
/// equal values the one later in the weight (and, globally, in the later layer) goes first, so
/// the result is deterministic. N:M keeps the `n` largest of each group of `m` (ties keep the
/// lower column, as [`prune_nm`]).
///
/// Channel pruning removes `round(sparsity * N)` (at most `N - 1`) output channels of each
/// selected layer, smallest weight norm first, and rewrites every tensor that must agree: the
/// layer's bias, a batch norm's four vectors, the input channels of the next convs (groups = 1,
/// or depthwise convs, whose channels go too) and the K of the next linears (after a flatten,
/// each channel's block of H*W). Elementwise activations, pooling and flatten pass channels
/// through. A layer whose channels reach anything else (a residual add, a graph output, a
/// reshape, a shared weight) is left alone and [`PruneReport::skipped`] says why. Graph inputs
/// and outputs keep their shapes.
///
/// Errors (`Error::Input`): options that do not go together, unknown names in `layers`, an N:M
/// pattern or a block that fits none of the selected weights.
pub fn prune_with_progress(
    model: &Model,
    cfg: &PruneConfig,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<(Model, PruneReport)> {
    cfg.check()?;
    check_layers(&model.graph, &cfg.layers)?;
    let mut graph = model.graph.clone();
    let mut weights: BTreeMap<String, Tensor> = (*model.weights).clone();
    let (layers, skipped) = match cfg.pattern {
        Pattern::Channel => prune_channels(model, &mut graph, &mut weights, cfg, progress)?,
        _ => prune_weights(model, &mut graph, &mut weights, cfg, progress)?,
    };
    let out = Model::new(graph, weights)?;
    let report = PruneReport {
        pattern: cfg.pattern,
        layers,
        skipped,
        model_bytes_before: model.weight_bytes(),
        model_bytes_after: out.weight_bytes(),
    };
    Ok((out, report))
}

/// Every name in `layers` must be the weight (input 1) of a matmul or conv node, or such a
/// node.
fn check_layers(graph: &Graph, layers: &[String]) -> Result<()> {
    let declared: HashSet<&str> = graph.weights.iter().map(|w| w.name.as_str()).collect();
    let mut known: HashSet<&str> = HashSet::new();
    for n in &graph.nodes {
        if let (Op::MatMul(_) | Op::Conv2d(_), Some(w)) = (&n.op, n.inputs.get(1)) {
            if declared.contains(w.as_str()) {
                known.insert(w);
                known.insert(&n.name);
            }
        }
    }
    let exists: HashSet<&str> = declared
        .iter()
        .copied()
        .chain(graph.nodes.iter().map(|n| n.name.as_str()))
        .collect();
    let (mut unknown, mut other) = (Vec::new(), Vec::new());
    for s in layers.iter().filter(|s| !known.contains(s.as_str())) {
        if exists.contains(s.as_str()) {
            other.push(format!("'{s}'"));
        } else {
            unknown.push(format!("'{s}'"));
        }
    }
    let mut msg = Vec::new();
    if !unknown.is_empty() {
        msg.push(format!(
            "unknown layer names (no weight or node of the model): {}",
            unknown.join(", ")
        ));
    }
    if !other.is_empty() {
        msg.push(format!(
            "layer names that are neither a matmul/conv weight nor a matmul/conv node, so \
             there is nothing to prune: {}",
            other.join(", ")
        ));
    }
    if msg.is_empty() {
        return Ok(());
    }
    Err(Error::Input(msg.join("; ")))
}

/// The weights to prune, in first-use order, and the matmul/conv weights left alone (`layers`
/// names weights or nodes; empty = all).
fn select(
    graph: &Graph,
    weights: &BTreeMap<String, Tensor>,
    layers: &[String],
) -> (Vec<Target>, Vec<SkippedWeight>) {
    let named: HashSet<&str> = layers.iter().map(String::as_str).collect();
    super::targets::select(graph, weights, "pruned", &|w, users| {
        if named.is_empty() || named.contains(w) || users.iter().any(|n| named.contains(n)) {
            Ok(())
        } else {
            Err("not named by the layers list".into())
        }
    })
}

/// Marks the `k` units of lowest score over all `scores` lists (one list per layer): every
/// unit below the k-th smallest score, then of the units equal to it the last ones (latest
/// list, highest index) until `k` are marked. Scores must be finite.
fn lowest(scores: &[Vec<f32>], k: usize) -> Vec<Vec<bool>> {
    let total: usize = scores.iter().map(Vec::len).sum();
    let mut masks: Vec<Vec<bool>> = scores.iter().map(|s| vec![false; s.len()]).collect();
    if k == 0 || total == 0 {
        return masks;
    }
    if k >= total {
        masks.iter_mut().for_each(|m| m.fill(true));
        return masks;
    }
    let mut all: Vec<f32> = scores.iter().flatten().copied().collect();
    let t = *all.select_nth_unstable_by(k - 1, f32::total_cmp).1;
    drop(all);
    let mut marked = 0;
    for (s, m) in scores.iter().zip(&mut masks) {
        for (v, b) in s.iter().zip(m.iter_mut()) {
            if *v < t {
                *b = true;
                marked += 1;
            }
        }
    }
    for (s, m) in scores.iter().zip(&mut masks).rev() {
        for (v, b) in s.iter().zip(m.iter_mut()).rev() {
            if marked == k {
                return masks;
            }
            if *v == t {
                *b = true;
                marked += 1;
            }
        }
    }
    masks
}

/// `round(fraction * n)`, at most `n`.
fn count_of(fraction: f64, n: usize) -> usize {
    ((fraction * n as f64).round() as usize).min(n)
}

/// One weight being pruned, in its `[rows = output channels, cols = K]` view.
struct View {
    target: Target,
    x: Vec<f32>,
    rows: usize,
    cols: usize,
}

/// Unstructured, N:M and block pruning: zeros in place, stored dense or sparse.
fn prune_weights(
    model: &Model,
    graph: &mut Graph,
    weights: &mut BTreeMap<String, Tensor>,
    cfg: &PruneConfig,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<(Vec<PrunedLayer>, Vec<SkippedWeight>)> {
    let (targets, mut skipped) = select(graph, weights, &cfg.layers);
    let had_targets = !targets.is_empty();
    let mut views = Vec::with_capacity(targets.len());
    for t in targets {
        let dense = (weights.get(&t.name))
            .ok_or_else(|| Error::MissingWeight(t.name.clone()))?
            .f32s(&t.name)?;
        let shape = &graph.weights[t.index].shape;
        let (rows, cols) = if t.transpose {
            (shape[1], shape[0])
        } else {
            matrix_dims(shape)?
        };
        let x = if t.transpose {
            transpose2d(dense, cols, rows)
        } else {
            dense.to_vec()
        };
        let misfit = match cfg.pattern {
            Pattern::NM { n, m } if !cols.is_multiple_of(m) => Some(format!(
                "K = {cols} is not a multiple of {m}, so {n}:{m} groups do not fit"
            )),
            Pattern::Block { r, c } if !rows.is_multiple_of(r) || !cols.is_multiple_of(c) => {
                Some(format!(
                    "its [{rows}, {cols}] matrix (output channels x K) does not tile into \
                     {r}x{c} blocks"
                ))
            }
            _ => None,
        };
        match misfit {
            Some(reason) => skipped.push(SkippedWeight {
                name: t.name.clone(),
                reason,
            }),
            None => views.push(View {
                target: t,
                x,
                rows,
                cols,
            }),
        }
    }
    if had_targets && views.is_empty() {
        if let Pattern::NM { .. } | Pattern::Block { .. } = cfg.pattern {
            let why: Vec<String> = (skipped.iter())
                .map(|s| format!("{}: {}", s.name, s.reason))
                .collect();
            return Err(Error::Input(format!(
                "{} fits none of the selected weights ({})",
                cfg.pattern,
                why.join("; ")
            )));
        }
    }
    // Which units (elements or blocks) of each view go.
    let (br, bc) = match cfg.pattern {
        Pattern::Block { r, c } => (r, c),
        _ => (1, 1),
    };
    match cfg.pattern {
        Pattern::NM { n, m } => {
            for v in &mut views {
                let t = Tensor::new(&[v.rows, v.cols], std::mem::take(&mut v.x))?;
                v.x = prune_nm(&t, n, m)?.into_f32s(&v.target.name)?;
            }
        }
        Pattern::Unstructured | Pattern::Block { .. } => {
            let scores: Vec<Vec<f32>> = views
                .iter()
                .map(|v| block_scores(&v.x, v.rows, v.cols, br, bc, cfg.norm))
                .collect();
            let masks = match cfg.scope {
                Scope::Global => {
                    let total = scores.iter().map(Vec::len).sum();
                    lowest(&scores, count_of(cfg.target(), total))
                }
                Scope::Layer => (scores.iter())
                    .map(|s| {
                        let k = count_of(cfg.target(), s.len());
                        lowest(std::slice::from_ref(s), k).remove(0)
                    })
                    .collect(),
            };
            for (v, mask) in views.iter_mut().zip(&masks) {
                let bcols = v.cols / bc;
                for (b, _) in mask.iter().enumerate().filter(|(_, &m)| m) {
                    let (r0, c0) = (b / bcols * br, b % bcols * bc);
                    for i in r0..r0 + br {
                        v.x[i * v.cols + c0..i * v.cols + c0 + bc].fill(0.0);
                    }
                }
            }
        }
        Pattern::Channel => unreachable!("channel pruning has its own path"),
    }
    let total = views.len();
    progress(0, total, "");
    let mut layers = Vec::with_capacity(total);
    for (i, v) in views.into_iter().enumerate() {
        let t = &v.target;
        let shape_before = graph.weights[t.index].shape.clone();
        let bytes_before = (model.graph.format_of(&t.name)).stored_bytes(&t.name, &model.weights);
        let zeros = v.x.iter().filter(|&&x| x == 0.0).count();
        let elements = v.x.len();
        let sparse = match cfg.store {
            Store::Sparse => cfg.pattern.sparse_format(cfg.values),
            Store::Dense => None,
        };
        let (format, shape, bytes_after, transposed) = match sparse {
            Some(format) => {
                let view = Tensor::new(&[v.rows, v.cols], v.x)?;
                let view = if t.transpose {
                    view
                } else {
                    view.reshaped(&shape_before)?
                };
                let parts = format.encode(&t.name, &view)?;
                let bytes = format.stored_bytes(&t.name, &parts);
                weights.remove(&t.name);
                weights.extend(parts);
                graph.formats.insert(t.name.clone(), format.clone());
                if t.transpose {
                    graph.weights[t.index].shape = vec![v.rows, v.cols];
                    for &n in &t.users {
                        if let Op::MatMul(m) = &mut graph.nodes[n].op {
                            m.trans_b = true;
                        }
                    }
                }
                let shape = graph.weights[t.index].shape.clone();
                (format.label(), shape, bytes, t.transpose)
            }
            None => {
                let x = if t.transpose {
                    transpose2d(&v.x, v.rows, v.cols)
                } else {
                    v.x
                };
                let w = Tensor::new(&shape_before, x)?;
                let bytes = w.bytes().len();
                weights.insert(t.name.clone(), w);
                ("dense".to_string(), shape_before.clone(), bytes, false)
            }
        };
        layers.push(PrunedLayer {
            name: t.name.clone(),
            format,
            shape_before,
            shape,
            transposed,
            zeros,
            elements,
            channels: None,
            rewritten: Vec::new(),
            bytes_before,
            bytes_after,
        });
        progress(i + 1, total, &t.name);
    }
    Ok((layers, skipped))
}

/// The norm of every `br x bc` block of a `[rows, cols]` matrix, row-major over blocks; with
/// 1x1 blocks, `|w|` (either norm).
fn block_scores(x: &[f32], rows: usize, cols: usize, br: usize, bc: usize, norm: Norm) -> Vec<f32> {
    if br * bc == 1 {
        return x.iter().map(|v| v.abs()).collect();
    }
    let (brows, bcols) = (rows / br, cols / bc);
    let mut out = Vec::with_capacity(brows * bcols);
    for b in 0..brows * bcols {
        let (r0, c0) = (b / bcols * br, b % bcols * bc);
        let mut s = 0f64;
        for i in r0..r0 + br {
            for &v in &x[i * cols + c0..i * cols + c0 + bc] {
                s += match norm {
                    Norm::L1 => f64::from(v.abs()),
                    Norm::L2 => f64::from(v) * f64::from(v),
                };
            }
        }
        out.push(match norm {
            Norm::L1 => s as f32,
            Norm::L2 => s.sqrt() as f32,
        });
    }
    out
}

/// A tensor whose `axis` holds the pruned layer's channels, each `block` consecutive entries.
#[derive(Debug, Clone)]
struct Slice {
    name: String,
    axis: usize,
    block: usize,
    /// What the slice is, for the report ("bias", "input channels of conv 'c2'").
    role: String,
}

/// Everything that changes when one layer loses output channels.
struct ChannelPlan {
    /// The layer's output channels.
    channels: usize,
    /// The layer's weight (axis 0 for OIHW and `[N, K]`, 1 for `[K, N]`) first, then the rest.
    slices: Vec<Slice>,
    /// Depthwise convs on the way, whose groups become the channels kept.
    depthwise: Vec<usize>,
}

/// Channel pruning, one selected layer after another (each rewrite sees the previous ones).
fn prune_channels(
    model: &Model,
    graph: &mut Graph,
    weights: &mut BTreeMap<String, Tensor>,
    cfg: &PruneConfig,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<(Vec<PrunedLayer>, Vec<SkippedWeight>)> {
    let (targets, mut skipped) = select(graph, weights, &cfg.layers);
    let total = targets.len();
    progress(0, total, "");
    let mut layers = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        match plan_channels(graph, &t.name) {
            Err(reason) => skipped.push(SkippedWeight {
                name: t.name.clone(),
                reason,
            }),
            Ok(plan) => {
                let own = &plan.slices[0];
                let w = weights
                    .get(&own.name)
                    .ok_or_else(|| Error::MissingWeight(own.name.clone()))?;
                let norms = channel_norms(w, own.axis, plan.channels, cfg.norm)?;
                let k = count_of(cfg.target(), plan.channels).min(plan.channels - 1);
                let drop = lowest(std::slice::from_ref(&norms), k).remove(0);
                let keep: Vec<usize> = (0..plan.channels).filter(|&c| !drop[c]).collect();
                let mut rewritten = Vec::new();
                if k > 0 {
                    for (si, s) in plan.slices.iter().enumerate() {
                        let spec = (graph.weights.iter_mut())
                            .find(|w| w.name == s.name)
                            .ok_or_else(|| Error::MissingWeight(s.name.clone()))?;
                        let t = weights
                            .get(&s.name)
                            .ok_or_else(|| Error::MissingWeight(s.name.clone()))?;
                        let before = t.shape().to_vec();
                        let sliced = slice_channels(t, s, plan.channels, &keep)?;
                        spec.shape = sliced.shape().to_vec();
                        if si > 0 {
                            rewritten.push(format!(
                                "{} ({}) {} -> {}",
                                s.name,
                                s.role,
                                fmt_shape(&before),
                                fmt_shape(sliced.shape())
                            ));
                        }
                        weights.insert(s.name.clone(), sliced);
                    }
                    for &n in &plan.depthwise {
                        if let Op::Conv2d(c) = &mut graph.nodes[n].op {
                            c.groups = keep.len();
                        }
                    }
                }
                layers.push(PrunedLayer {
                    name: t.name.clone(),
                    format: "dense".into(),
                    shape_before: Vec::new(), // filled in below, from the final model
                    shape: Vec::new(),
                    transposed: false,
                    zeros: 0,
                    elements: 0,
                    channels: Some((keep.len(), plan.channels)),
                    rewritten,
                    bytes_before: 0,
                    bytes_after: 0,
                });
            }
        }
        progress(i + 1, total, &t.name);
    }
    // Shapes and bytes as the input and the final model have them (a layer's input channels
    // shrink too when the layer before it loses channels).
    for l in &mut layers {
        let missing = || Error::MissingWeight(l.name.clone());
        let before = model.weights.get(&l.name).ok_or_else(missing)?;
        let after = weights.get(&l.name).ok_or_else(missing)?;
        l.shape_before = before.shape().to_vec();
        l.shape = after.shape().to_vec();
        l.bytes_before = before.bytes().len();
        l.bytes_after = after.bytes().len();
        let x = after.f32s(&l.name)?;
        l.zeros = x.iter().filter(|&&v| v == 0.0).count();
        l.elements = x.len();
    }
    Ok((layers, skipped))
}

/// The norm of each of `channels` slices along `axis`.
fn channel_norms(w: &Tensor, axis: usize, channels: usize, norm: Norm) -> Result<Vec<f32>> {
    let x = w.f32s("channel norms")?;
    let shape = w.shape();
    let (outer, inner) = (
        shape[..axis].iter().product::<usize>(),
        shape[axis + 1..].iter().product::<usize>(),
    );
    if shape[axis] != channels {
        return Err(Error::shape(
            "channel pruning",
            format!("{channels} channels on axis {axis}"),
            fmt_shape(shape),
        ));
    }
    let mut s = vec![0f64; channels];
    for o in 0..outer {
        for (c, acc) in s.iter_mut().enumerate() {
            for &v in &x[(o * channels + c) * inner..][..inner] {
                *acc += match norm {
                    Norm::L1 => f64::from(v.abs()),
                    Norm::L2 => f64::from(v) * f64::from(v),
                };
            }
        }
    }
    Ok(s.into_iter()
        .map(|v| match norm {
            Norm::L1 => v as f32,
            Norm::L2 => v.sqrt() as f32,
        })
        .collect())
}

/// `t` with only the `keep` channels along `s.axis` (each `s.block` entries wide).
fn slice_channels(t: &Tensor, s: &Slice, channels: usize, keep: &[usize]) -> Result<Tensor> {
    let x = t.f32s(&s.name)?;
    let shape = t.shape();
    let dim = shape.get(s.axis).copied().unwrap_or(0);
    if dim != channels * s.block {
        return Err(Error::shape(
            format!("channel pruning of '{}' ({})", s.name, s.role),
            format!("{channels} x {} on axis {}", s.block, s.axis),
            fmt_shape(shape),
        ));
    }
    let outer: usize = shape[..s.axis].iter().product();
    let inner: usize = shape[s.axis + 1..].iter().product::<usize>() * s.block;
    let mut out = Vec::with_capacity(outer * keep.len() * inner);
    for o in 0..outer {
        for &c in keep {
            out.extend_from_slice(&x[(o * channels + c) * inner..][..inner]);
        }
    }
    let mut new_shape = shape.to_vec();
    new_shape[s.axis] = keep.len() * s.block;
    Tensor::new(&new_shape, out)
}

/// What pruning the output channels of the layer whose weight is `wname` must rewrite, or why
/// it cannot be done safely.
fn plan_channels(graph: &Graph, wname: &str) -> std::result::Result<ChannelPlan, String> {
    let readers = readers(graph);
    let checked = graph.check_types().map_err(|e| e.to_string())?;
    let shapes = &checked.shapes;
    let spec_of = |name: &str| graph.weights.iter().find(|w| w.name == name);
    // A tensor that can be sliced: a dense f32 graph weight read by exactly one node.
    let sliceable = |name: &str, what: &str| -> std::result::Result<(), String> {
        let Some(spec) = spec_of(name) else {
            return Err(format!(
                "the {what} '{name}' is computed, not a stored weight"
            ));
        };
        if !graph.format_of(name).is_dense() || spec.dtype != DType::F32 {
            return Err(format!(
                "the {what} '{name}' is stored as {} {} (only dense f32 tensors are rewritten)",
                spec.dtype,
                graph.format_of(name).label()
            ));
        }
        let n = readers.get(name).map_or(0, Vec::len);
        if n != 1 {
            return Err(format!(
                "the {what} '{name}' is read by {n} nodes; slicing it would change them all"
            ));
        }
        Ok(())
    };
    let users = readers.get(wname).cloned().unwrap_or_default();
    let [(p, _)] = users[..] else {
        return Err(format!(
            "the weight is read by {} nodes; removing its channels would change them all",
            users.len()
        ));
    };
    let node = &graph.nodes[p];
    let mut slices = Vec::new();
    let slice = |name: &str, axis: usize, block: usize, role: String| Slice {
        name: name.to_string(),
        axis,
        block,
        role,
    };
    let (channels, axis, bias, out_axis) = match node.op {
        Op::Conv2d(c) => {
            if c.groups != 1 {
                return Err(format!(
                    "conv '{}' has groups = {}: its output channels follow its input's (only \
                     groups = 1 convs are channel-pruned)",
                    node.name, c.groups
                ));
            }
            if c.residual {
                return Err(format!(
                    "conv '{}' adds a residual input, whose producer would have to drop the \
                     same channels",
                    node.name
                ));
            }
            let n = spec_of(wname).and_then(|s| s.shape.first().copied());
            (n.unwrap_or(0), 0, c.bias, 1)
        }
        Op::MatMul(m) => {
            if m.residual {
                return Err(format!(
                    "matmul '{}' adds a residual input, whose producer would have to drop the \
                     same channels",
                    node.name
                ));
            }
            let shape = spec_of(wname).map_or(&[][..], |s| &s.shape[..]);
            let axis = usize::from(!m.trans_b);
            let n = shape.get(axis).copied().unwrap_or(0);
            let rank = shapes.get(&node.output).map_or(0, Vec::len);
            (n, axis, m.bias, rank.saturating_sub(1))
        }
        _ => return Err("not the weight of a matmul or conv".into()),
    };
    if channels < 2 {
        return Err(format!("{channels} output channel(s): nothing to remove"));
    }
    sliceable(wname, "weight")?;
    slices.push(slice(wname, axis, 1, "output channels".into()));
    if bias {
        let b = &node.inputs[2];
        sliceable(b, "bias")?;
        slices.push(slice(b, 0, 1, "bias".into()));
    }
    let mut depthwise = Vec::new();
    // (value, its channel axis, entries per channel along it)
    let mut work = vec![(node.output.clone(), out_axis, 1usize)];
    while let Some((v, ax, b)) = work.pop() {
        if graph.outputs.contains(&v) {
            return Err(format!(
                "its channels reach the graph output '{v}' (output shapes never change)"
            ));
        }
        let shape = shapes.get(&v).cloned().unwrap_or_default();
        for &(n, j) in readers.get(v.as_str()).map_or(&[][..], |r| &r[..]) {
            let node = &graph.nodes[n];
            let who = format!("{} '{}'", node.op.name(), node.name);
            let out = node.output.clone();
            match node.op {
                Op::Unary(_) => work.push((out, ax, b)),
                Op::BatchNorm(_) => {
                    if j != 0 || ax != 1 || b != 1 {
                        return Err(format!(
                            "its channels reach {who} other than as its normalised channels"
                        ));
                    }
                    for (k, what) in ["gamma", "beta", "mean", "var"].iter().enumerate() {
                        let name = &node.inputs[k + 1];
                        sliceable(name, &format!("{what} of {who}"))?;
                        slices.push(slice(name, 0, 1, format!("{what} of {who}")));
                    }
                    work.push((out, 1, 1));
                }
                Op::Pool2d(_) | Op::GlobalAvgPool(_) if ax == 1 && b == 1 => work.push((out, 1, 1)),
                Op::Flatten(f) if ax == 1 && f.axis == 1 => {
                    let inner: usize = shape.get(2..).map_or(1, |s| s.iter().product());
                    work.push((out, 1, b * inner));
                }
                Op::Conv2d(c) if j == 0 && ax == 1 && b == 1 => {
                    let w = &node.inputs[1];
                    let wshape = spec_of(w).map_or(&[][..], |s| &s.shape[..]);
                    let cin = shape.get(1).copied().unwrap_or(0);
                    if c.groups == 1 {
                        sliceable(w, &format!("weight of {who}"))?;
                        slices.push(slice(w, 1, 1, format!("input channels of {who}")));
                    } else if c.groups == cin
                        && wshape.first() == Some(&cin)
                        && wshape.get(1) == Some(&1)
                    {
                        if c.residual {
                            return Err(format!(
                                "its channels reach the depthwise {who}, which adds a residual"
                            ));
                        }
                        sliceable(w, &format!("weight of {who}"))?;
                        slices.push(slice(w, 0, 1, format!("channels of depthwise {who}")));
                        if c.bias {
                            let bname = &node.inputs[2];
                            sliceable(bname, &format!("bias of {who}"))?;
                            slices.push(slice(bname, 0, 1, format!("bias of {who}")));
                        }
                        depthwise.push(n);
                        work.push((out, 1, 1));
                    } else {
                        return Err(format!(
                            "its channels reach {who} with groups = {} (only groups = 1 and \
                             depthwise consumers are rewritten)",
                            c.groups
                        ));
                    }
                }
                Op::MatMul(m)
                    if j == 0 && !m.trans_a && shape.len() >= 2 && ax == shape.len() - 1 =>
                {
                    let w = &node.inputs[1];
                    sliceable(w, &format!("weight of {who}"))?;
                    if spec_of(w).map(|s| s.shape.len()) != Some(2) {
                        return Err(format!("{who} has a batched weight"));
                    }
                    let (axis, what) = if m.trans_b { (1, "K") } else { (0, "K (rows)") };
                    let role = if b > 1 {
                        format!("{what} of {who}, {b} per channel")
                    } else {
                        format!("{what} of {who}")
                    };
                    slices.push(slice(w, axis, b, role));
                }
                Op::Binary(bin) if bin.kind == BinaryKind::Add => {
                    return Err(format!(
                        "its channels feed the residual add '{}', whose operands must keep the \
                         same channels",
                        node.name
                    ))
                }
                _ => {
                    return Err(format!(
                        "its channels reach {who} (as input {j}), which cannot be rewritten \
                         safely"
                    ))
                }
            }
        }
    }
    Ok(ChannelPlan {
        channels,
        slices,
        depthwise,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_breaks_ties_towards_the_end() {
        let s = vec![vec![1.0, 0.5, 0.5, 2.0], vec![0.5, 3.0]];
        // k = 2: both 0.5s of the last list first... the last 0.5 overall, then the next.
        let m = lowest(&s, 2);
        assert_eq!(m, vec![vec![false, false, true, false], vec![true, false]]);
        let m = lowest(&s, 3);
        assert_eq!(m, vec![vec![false, true, true, false], vec![true, false]]);
        assert_eq!(lowest(&s, 0), vec![vec![false; 4], vec![false; 2]]);
        assert_eq!(lowest(&s, 9), vec![vec![true; 4], vec![true; 2]]);
    }

    #[test]
    fn pattern_parsing() {
        assert_eq!(
            "2:4".parse::<Pattern>().unwrap(),
            Pattern::NM { n: 2, m: 4 }
        );
        assert_eq!(
            "block:4x1".parse::<Pattern>().unwrap(),
            Pattern::Block { r: 4, c: 1 }
        );
        assert_eq!("Channel".parse::<Pattern>().unwrap(), Pattern::Channel);
        for bad in [
            "4:2",
            "0:4",
            "2:32",
            "block:0x4",
            "block:4",
            "blocks:4x4",
            "x",
            "2:x",
        ] {
            assert!(
                matches!(bad.parse::<Pattern>(), Err(Error::Input(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn slicing_keeps_whole_channel_blocks() {
        // [2, 6] with 3 channels of 2 along axis 1: keep channels 0 and 2.
        let t = Tensor::new(&[2, 6], (0..12).map(|v| v as f32).collect()).unwrap();
        let s = Slice {
            name: "w".into(),
            axis: 1,
            block: 2,
            role: String::new(),
        };
        let out = slice_channels(&t, &s, 3, &[0, 2]).unwrap();
        assert_eq!(out.shape(), [2, 4]);
        assert_eq!(
            out.f32s("o").unwrap(),
            [0.0, 1.0, 4.0, 5.0, 6.0, 7.0, 10.0, 11.0]
        );
    }
}
