//! `Graph`: inputs, declared weights, nodes and outputs, all referring to values by name.
//! Checking a graph validates every reference, orders it, and infers every value's shape.

use crate::error::{Error, Result};
use crate::format::WeightFormat;
use crate::ops::Op;
use crate::tensor::{fmt_shape, numel, DType, Tensor, ValueType};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// A named value with a dtype and a shape (graph inputs and declared weights).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValueSpec {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
}

/// One operation: reads `inputs` (values by name) and defines `output`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    #[serde(flatten)]
    pub op: Op,
    pub inputs: Vec<String>,
    pub output: String,
}

/// A model's structure (the part stored as JSON in the model file's metadata).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Graph {
    pub inputs: Vec<ValueSpec>,
    pub weights: Vec<ValueSpec>,
    pub nodes: Vec<Node>,
    pub outputs: Vec<String>,
    /// Storage format of each non-dense weight (quantized, sparse), by weight name; a weight
    /// not listed is dense. Its parts are the file's tensors `{name}.{part}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub formats: BTreeMap<String, WeightFormat>,
    /// Input dims that may change from run to run, by input name: one entry per axis, a
    /// symbol (`"batch"`, `"width"`) for a dim that takes any size, `None` for a fixed one.
    /// The input's `shape` is the size a session plans when it is built; a run with other
    /// sizes plans again for them ([`Graph::with_input_shapes`]; sessions keep a bounded
    /// cache of plans by shape). Axes that share a symbol take one size in a run. An input
    /// not listed has a fixed shape.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dims: BTreeMap<String, Vec<Option<String>>>,
}

/// What checking a graph proves and computes.
#[derive(Debug, Clone)]
pub struct Checked {
    /// Node indices in an order where every value is defined before it is read.
    pub order: Vec<usize>,
    /// Shape of every value.
    pub shapes: HashMap<String, Vec<usize>>,
    /// Dtype and shape of every value.
    pub types: HashMap<String, ValueType>,
}

/// Where a value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Input(usize),
    Weight(usize),
    Node(usize),
}

impl Graph {
    /// Map from value name to where it is defined; errors on a name defined twice.
    pub fn origins(&self) -> Result<HashMap<&str, Origin>> {
        let mut m: HashMap<&str, Origin> = HashMap::new();
        let defs = self
            .inputs
            .iter()
            .enumerate()
            .map(|(i, v)| (v.name.as_str(), Origin::Input(i)))
            .chain(
                self.weights
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (v.name.as_str(), Origin::Weight(i))),
            )
            .chain(
                self.nodes
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (n.output.as_str(), Origin::Node(i))),
            );
        for (name, o) in defs {
            if name.is_empty() {
                return Err(Error::graph("a value has an empty name"));
            }
            if m.insert(name, o).is_some() {
                return Err(Error::graph(format!(
                    "value '{name}' is defined more than once"
                )));
            }
        }
        Ok(m)
    }

    /// Topological order of the nodes (Kahn's algorithm, stable: ties keep file order).
    pub fn toposort(&self) -> Result<Vec<usize>> {
        let origins = self.origins()?;
        let n = self.nodes.len();
        let mut indeg = vec![0usize; n];
        let mut users: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, node) in self.nodes.iter().enumerate() {
            for inp in &node.inputs {
                match origins.get(inp.as_str()) {
                    Some(Origin::Node(p)) => {
                        indeg[i] += 1;
                        users[*p].push(i);
                    }
                    Some(_) => {}
                    None => {
                        return Err(Error::graph(format!(
                            "node '{}' reads unknown value '{inp}'",
                            node.name
                        )))
                    }
                }
            }
        }
        let mut ready: std::collections::BTreeSet<usize> =
            (0..n).filter(|&i| indeg[i] == 0).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(i) = ready.pop_first() {
            order.push(i);
            for &u in &users[i] {
                indeg[u] -= 1;
                if indeg[u] == 0 {
                    ready.insert(u);
                }
            }
        }
        if order.len() != n {
            let stuck: Vec<&str> = (0..n)
                .filter(|&i| indeg[i] > 0)
                .map(|i| self.nodes[i].name.as_str())
                .collect();
            return Err(Error::graph(format!(
                "cycle through nodes {}",
                stuck.join(", ")
            )));
        }
        Ok(order)
    }

    /// The storage format of weight `name` (dense unless the graph says otherwise).
    pub fn format_of(&self, name: &str) -> &WeightFormat {
        static DENSE: WeightFormat = WeightFormat::Dense;
        self.formats.get(name).unwrap_or(&DENSE)
    }

    /// Validates the weights' data against their declarations (dense: present with the declared
    /// dtype and shape; other formats: every part present and consistent, or — after a session
    /// decoded it — a dense f32 tensor of the declared shape), then checks the graph.
    pub fn check(&self, weights: &BTreeMap<String, Tensor>) -> Result<Checked> {
        for name in self.formats.keys() {
            if !self.weights.iter().any(|w| &w.name == name) {
                return Err(Error::graph(format!(
                    "a format is given for '{name}', which is not a declared weight"
                )));
            }
        }
        let origins = self.origins()?;
        for (name, format) in &self.formats {
            if let Some(part) = format
                .part_names(name)
                .into_iter()
                .find(|p| origins.contains_key(p.as_str()))
            {
                return Err(Error::graph(format!(
                    "'{part}' is both a value of the graph and a stored part of packed weight '{name}'"
                )));
            }
        }
        for v in &self.weights {
            let format = self.format_of(&v.name);
            let decoded = weights
                .get(&v.name)
                .filter(|t| !format.is_dense() && t.value_type() == ValueType::f32(&v.shape));
            if !format.is_dense() && decoded.is_none() {
                if v.dtype != DType::F32 {
                    return Err(Error::DTypeMismatch {
                        op: format!("weight '{}' ({})", v.name, format.label()),
                        expected: "f32 (the decoded dtype of packed formats)".into(),
                        got: v.dtype.to_string(),
                    });
                }
                format.validate(&v.name, &v.shape, weights)?;
                continue;
            }
            let t = weights
                .get(&v.name)
                .ok_or_else(|| Error::MissingWeight(v.name.clone()))?;
            if t.dtype() != v.dtype {
                return Err(Error::DTypeMismatch {
                    op: format!("weight '{}'", v.name),
                    expected: v.dtype.to_string(),
                    got: t.dtype().to_string(),
                });
            }
            if t.shape() != v.shape.as_slice() {
                return Err(Error::shape(
                    format!("weight '{}'", v.name),
                    fmt_shape(&v.shape),
                    fmt_shape(t.shape()),
                ));
            }
        }
        self.check_types_with(weights)
    }

    /// Validates references, orders the nodes and infers every value's dtype and shape from
    /// the declarations (no weight data needed). An op whose output shape depends on the
    /// value of an input (a reshape target given as an input) fails here unless that value is
    /// computed from shapes alone; [`Graph::check`] also knows the weights.
    pub fn check_types(&self) -> Result<Checked> {
        self.check_types_with(&BTreeMap::new())
    }

    /// [`Graph::check_types`], with the values of the dense weights in `weights` known: small
    /// values computed from weights and shapes only (shape subgraphs: `Shape` -> `Gather` ->
    /// `Concat` -> a reshape's target) are evaluated on the CPU reference as the walk reaches
    /// them, so ops with shape-like inputs infer their output ([`crate::ops::OpFamily::infer_consts`]).
    pub fn check_types_with(&self, weights: &BTreeMap<String, Tensor>) -> Result<Checked> {
        if self.outputs.is_empty() {
            return Err(Error::graph("the graph has no outputs"));
        }
        self.check_dims()?;
        let order = self.toposort()?;
        let origins = self.origins()?;
        let mut types: HashMap<String, ValueType> = HashMap::new();
        let too_big = |what: &str, name: &str, shape: &[usize]| Error::Unsupported {
            op: format!("{what} '{name}'"),
            what: format!("shape {} has more than 2^32 elements", fmt_shape(shape)),
            backend: "any".into(),
        };
        // A dimension beyond 32 bits would be truncated into kernel parameters even when
        // another dimension is 0 (`[2^40, 0]` has no elements).
        let wide_dim = |what: &str, name: &str, shape: &[usize]| {
            shape
                .iter()
                .find(|&&d| d > u32::MAX as usize)
                .map(|d| Error::Unsupported {
                    op: format!("{what} '{name}'"),
                    what: format!(
                        "shape {} has a dimension {d} beyond 2^32 - 1",
                        fmt_shape(shape)
                    ),
                    backend: "any".into(),
                })
        };
        for v in self.inputs.iter().chain(&self.weights) {
            if crate::tensor::checked_numel(&v.shape).is_none() {
                return Err(too_big("value", &v.name, &v.shape));
            }
            if let Some(e) = wide_dim("value", &v.name, &v.shape) {
                return Err(e);
            }
        }
        for v in &self.inputs {
            if v.shape.contains(&0) {
                return Err(Error::shape(
                    format!("input '{}'", v.name),
                    "non-empty shape",
                    fmt_shape(&v.shape),
                ));
            }
        }
        for v in self.inputs.iter().chain(&self.weights) {
            types.insert(v.name.clone(), ValueType::new(v.dtype, &v.shape));
        }
        // Values known without running the model, by name: dense weights (borrowed) and small
        // values computed from them and from shapes (owned).
        let mut computed: HashMap<String, Tensor> = HashMap::new();
        for &i in &order {
            let node = &self.nodes[i];
            let ins: Vec<ValueType> = node.inputs.iter().map(|n| types[n].clone()).collect();
            let consts: Vec<Option<&Tensor>> = node
                .inputs
                .iter()
                .map(|n| {
                    computed.get(n).or_else(|| {
                        weights
                            .get(n)
                            .filter(|t| self.format_of(n).is_dense() && types[n] == t.value_type())
                    })
                })
                .collect();
            let out = node.op.infer_with(&ins, &consts).map_err(|e| match e {
                Error::ShapeMismatch { op, expected, got } => Error::ShapeMismatch {
                    op: format!("{op} (node '{}')", node.name),
                    expected,
                    got,
                },
                Error::DTypeMismatch { op, expected, got } => Error::DTypeMismatch {
                    op: format!("{op} (node '{}')", node.name),
                    expected,
                    got,
                },
                Error::Graph(m) => Error::Graph(format!("node '{}': {m}", node.name)),
                other => other,
            })?;
            if crate::tensor::checked_numel(&out.shape).is_none() {
                return Err(too_big("output of node", &node.name, &out.shape));
            }
            if let Some(e) = wide_dim("output of node", &node.name, &out.shape) {
                return Err(e);
            }
            if let Some(v) = known_value(node, &ins, &consts, &out) {
                computed.insert(node.output.clone(), v);
            }
            types.insert(node.output.clone(), out);
        }
        for o in &self.outputs {
            if !origins.contains_key(o.as_str()) {
                return Err(Error::graph(format!(
                    "output '{o}' is not a value of the graph"
                )));
            }
        }
        let shapes = types
            .iter()
            .map(|(k, v)| (k.clone(), v.shape.clone()))
            .collect();
        Ok(Checked {
            order,
            shapes,
            types,
        })
    }

    /// Checks the symbolic dims: each names an input and gives one entry per axis; every
    /// symbol is non-empty and its axes agree on the planned size.
    fn check_dims(&self) -> Result<()> {
        let mut sizes: HashMap<&str, (usize, &str)> = HashMap::new();
        for (name, dims) in &self.dims {
            let Some(v) = self.inputs.iter().find(|v| &v.name == name) else {
                return Err(Error::graph(format!(
                    "symbolic dims are given for '{name}', which is not a graph input"
                )));
            };
            if dims.len() != v.shape.len() {
                return Err(Error::graph(format!(
                    "input '{name}' has rank {} but {} symbolic dim entries",
                    v.shape.len(),
                    dims.len()
                )));
            }
            for (axis, sym) in dims.iter().enumerate() {
                let Some(sym) = sym else { continue };
                if sym.is_empty() {
                    return Err(Error::graph(format!(
                        "input '{name}' axis {axis}: an empty dim symbol"
                    )));
                }
                let size = v.shape[axis];
                if let Some(&(other, at)) = sizes.get(sym.as_str()) {
                    if other != size {
                        return Err(Error::graph(format!(
                            "dim '{sym}' is {other} in input '{at}' but {size} in input '{name}' \
                             (axes that share a symbol take one size)"
                        )));
                    }
                }
                sizes.insert(sym, (size, name));
            }
        }
        Ok(())
    }

    /// The graph planned for other input sizes: `shapes` gives each input's shape by name
    /// (inputs not given keep theirs). Only dims with a symbol may change, and axes sharing a
    /// symbol must agree; the error names the input and axis otherwise. The result has fixed
    /// shapes (no symbolic dims), ready to plan.
    pub fn with_input_shapes(&self, shapes: &[(&str, &[usize])]) -> Result<Graph> {
        let mut g = self.clone();
        for (name, shape) in shapes {
            let Some(v) = g.inputs.iter_mut().find(|v| v.name == *name) else {
                return Err(Error::Input(format!("unknown input '{name}'")));
            };
            let dims = self.dims.get(*name);
            if shape.len() != v.shape.len() {
                return Err(Error::shape(
                    format!("input '{name}'"),
                    format!("rank {} ({})", v.shape.len(), fmt_shape(&v.shape)),
                    fmt_shape(shape),
                ));
            }
            for (axis, (&want, &got)) in v.shape.iter().zip(shape.iter()).enumerate() {
                let symbolic = dims.and_then(|d| d[axis].as_ref()).is_some();
                if want != got && !symbolic {
                    return Err(Error::shape(
                        format!("input '{name}' axis {axis} (a fixed dim)"),
                        format!("{want} (shape {})", fmt_shape(&v.shape)),
                        fmt_shape(shape),
                    ));
                }
            }
            v.shape = shape.to_vec();
        }
        g.check_dims()?;
        g.dims.clear();
        Ok(g)
    }

    /// Indices of the nodes that read each value.
    pub fn consumers(&self) -> HashMap<&str, Vec<usize>> {
        let mut m: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, n) in self.nodes.iter().enumerate() {
            for v in &n.inputs {
                m.entry(v.as_str()).or_default().push(i);
            }
        }
        m
    }

    /// Number of parameters (elements of all weights).
    pub fn param_count(&self) -> usize {
        self.weights
            .iter()
            .map(|w| crate::tensor::numel(&w.shape))
            .fold(0usize, usize::saturating_add)
    }
}

/// Values the checker computes on the way, so shape-like inputs are known: a `Shape`'s
/// output, and any node whose inputs are all known when inputs and output are small (shape
/// arithmetic, not layers: at most [`KNOWN_MAX`] elements each, so checking stays cheap).
const KNOWN_MAX: usize = 4096;

fn known_value(
    node: &Node,
    ins: &[ValueType],
    consts: &[Option<&Tensor>],
    out: &ValueType,
) -> Option<Tensor> {
    if let Op::Shape(_) = node.op {
        let dims: Vec<i64> = ins[0].shape.iter().map(|&d| d as i64).collect();
        return Tensor::from_data(&[dims.len()], crate::tensor::TensorData::I64(dims)).ok();
    }
    // A bound on work too: a small output may still come from a huge window (a hostile
    // pooling over padded extents).
    if node.inputs.is_empty()
        || numel(&out.shape) > KNOWN_MAX
        || node.op.flops(ins, out) > 64 * KNOWN_MAX as u64
    {
        return None;
    }
    let vals: Option<Vec<&Tensor>> = consts.iter().copied().collect();
    let vals = vals?;
    if vals.iter().any(|t| numel(t.shape()) > KNOWN_MAX) {
        return None;
    }
    // An op that fails here fails again where it runs, with its own error; the checker
    // only loses a known value.
    node.op.cpu(&vals).ok()
}
