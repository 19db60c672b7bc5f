//! Model files: safetensors with the graph as JSON in the metadata (`wgedge.graph`).
//! Loading checks everything a run would trip over (header, sizes, dtypes, shapes, missing
//! or unused tensors) and says what is wrong instead of panicking.

use crate::error::{Error, Result};
use crate::graph::{Graph, GraphBuilder};
use crate::tensor::{DType, Tensor};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Metadata key holding the graph JSON.
pub const GRAPH_KEY: &str = "wgedge.graph";
/// Metadata key holding the format version.
pub const VERSION_KEY: &str = "wgedge.format";
pub const FORMAT_VERSION: &str = "1";

/// A graph with its weights, checked.
#[derive(Debug, Clone)]
pub struct Model {
    pub graph: Graph,
    pub weights: Arc<BTreeMap<String, Tensor>>,
}

pub(crate) fn dtype_from_st(d: safetensors::Dtype) -> Result<DType> {
    Ok(match d {
        safetensors::Dtype::F32 => DType::F32,
        safetensors::Dtype::F16 => DType::F16,
        safetensors::Dtype::I32 => DType::I32,
        safetensors::Dtype::I64 => DType::I64,
        safetensors::Dtype::BOOL => DType::Bool,
        safetensors::Dtype::I8 => DType::I8,
        safetensors::Dtype::U8 => DType::U8,
        other => {
            return Err(Error::Unsupported {
                op: "safetensors".into(),
                what: format!("tensor dtype {other:?}"),
                backend: "any".into(),
            })
        }
    })
}

fn dtype_to_st(d: DType) -> safetensors::Dtype {
    match d {
        DType::F32 => safetensors::Dtype::F32,
        DType::F16 => safetensors::Dtype::F16,
        DType::I32 => safetensors::Dtype::I32,
        DType::I64 => safetensors::Dtype::I64,
        DType::Bool => safetensors::Dtype::BOOL,
        DType::I8 => safetensors::Dtype::I8,
        DType::U8 => safetensors::Dtype::U8,
    }
}

/// Reads all tensors of a safetensors buffer, plus its metadata.
pub fn read_tensors(bytes: &[u8]) -> Result<(BTreeMap<String, Tensor>, HashMap<String, String>)> {
    if bytes.len() < 8 {
        return Err(Error::ModelFile(format!(
            "file is {} bytes: too short for a safetensors header",
            bytes.len()
        )));
    }
    let st = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| Error::ModelFile(format!("not a valid safetensors file: {e}")))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| Error::ModelFile(format!("bad safetensors header: {e}")))?;
    let mut out = BTreeMap::new();
    for (name, view) in st.iter() {
        let dtype = dtype_from_st(view.dtype())
            .map_err(|e| Error::ModelFile(format!("tensor '{name}': {e}")))?;
        out.insert(
            name.to_string(),
            Tensor::from_bytes(dtype, view.shape(), view.data())
                .map_err(|e| Error::ModelFile(format!("tensor '{name}': {e}")))?,
        );
    }
    Ok((out, meta.metadata().clone().unwrap_or_default()))
}

/// Serialises tensors (and optional metadata) to safetensors bytes.
pub fn write_tensors(
    tensors: &BTreeMap<String, Tensor>,
    meta: Option<HashMap<String, String>>,
) -> Result<Vec<u8>> {
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(k, t)| {
            safetensors::tensor::TensorView::new(
                dtype_to_st(t.dtype()),
                t.shape().to_vec(),
                t.bytes(),
            )
            .map(|v| (k.clone(), v))
            .map_err(|e| Error::ModelFile(format!("tensor '{k}': {e}")))
        })
        .collect::<Result<_>>()?;
    safetensors::serialize(views, meta).map_err(|e| Error::ModelFile(format!("serialising: {e}")))
}

fn read_file(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Writes through a temporary file beside `path`, renamed into place: an interrupted write
/// leaves the old file (or none), never a half-written one.
fn write_file(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let io = |source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.wgedge-{}.tmp", std::process::id()));
    let result = std::fs::write(&tmp, bytes).and_then(|_| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

impl Model {
    /// Checks a graph against its weights and makes a model.
    pub fn new(graph: Graph, weights: BTreeMap<String, Tensor>) -> Result<Model> {
        graph.check(&weights)?;
        // Every tensor is a declared weight or a part of a packed one.
        let stored: std::collections::HashSet<String> = graph
            .weights
            .iter()
            .flat_map(|w| graph.format_of(&w.name).part_names(&w.name))
            .collect();
        for name in weights.keys() {
            if !stored.contains(name) {
                return Err(Error::ModelFile(format!(
                    "tensor '{name}' is not declared by the graph"
                )));
            }
        }
        Ok(Model {
            graph,
            weights: Arc::new(weights),
        })
    }

    /// Finishes a builder into a checked model.
    pub fn from_builder(b: GraphBuilder) -> Result<Model> {
        let (g, w) = b.build()?;
        Model::new(g, w)
    }

    /// Loads a model from safetensors bytes (works on wasm: fetch the bytes, then call this).
    pub fn from_bytes(bytes: &[u8]) -> Result<Model> {
        let (tensors, meta) = read_tensors(bytes)?;
        let json = meta.get(GRAPH_KEY).ok_or_else(|| {
            Error::ModelFile(format!(
                "no '{GRAPH_KEY}' metadata: a plain safetensors file, not a wgedge model"
            ))
        })?;
        if let Some(v) = meta.get(VERSION_KEY) {
            if v != FORMAT_VERSION {
                return Err(Error::ModelFile(format!(
                    "format version {v}, this wgedge reads {FORMAT_VERSION}"
                )));
            }
        }
        let graph: Graph = serde_json::from_str(json)
            .map_err(|e| Error::ModelFile(format!("graph metadata is not valid: {e}")))?;
        Model::new(graph, tensors)
    }

    /// Loads a model file. On native targets the file is memory-mapped, so loading holds the
    /// decoded tensors once rather than the file's bytes plus the tensors.
    pub fn load(path: impl AsRef<std::path::Path>) -> Result<Model> {
        let path = path.as_ref();
        #[cfg(not(target_arch = "wasm32"))]
        {
            let io = |source| Error::Io {
                path: path.display().to_string(),
                source,
            };
            let file = std::fs::File::open(path).map_err(io)?;
            if file.metadata().map_err(io)?.len() == 0 {
                return Self::from_bytes(&[]);
            }
            // SAFETY: the map lives only for this load and is only read (copied into typed
            // tensors, every size checked). The usual caveat of mapped files applies: another
            // process truncating the file during the load can fault the process (SIGBUS), and
            // one rewriting it can make the read see a mix — which the checks then reject like
            // any corrupt file.
            let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
            Self::from_bytes(&map)
        }
        #[cfg(target_arch = "wasm32")]
        Self::from_bytes(&read_file(path)?)
    }

    /// Serialises the model to safetensors bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let json = serde_json::to_string(&self.graph)
            .map_err(|e| Error::ModelFile(format!("graph to JSON: {e}")))?;
        let meta = HashMap::from([
            (GRAPH_KEY.to_string(), json),
            (VERSION_KEY.to_string(), FORMAT_VERSION.to_string()),
        ]);
        write_tensors(&self.weights, Some(meta))
    }

    /// Writes the model file.
    pub fn save(&self, path: impl AsRef<std::path::Path>) -> Result<()> {
        write_file(path.as_ref(), &self.to_bytes()?)
    }

    /// Bytes of all weights.
    pub fn weight_bytes(&self) -> usize {
        self.weights.values().map(|t| t.bytes().len()).sum()
    }
}

/// Reads a plain safetensors file of named tensors (e.g. `wgedge run --input`).
pub fn load_tensors(path: impl AsRef<std::path::Path>) -> Result<BTreeMap<String, Tensor>> {
    Ok(read_tensors(&read_file(path.as_ref())?)?.0)
}

/// Writes named tensors as a plain safetensors file.
pub fn save_tensors(
    path: impl AsRef<std::path::Path>,
    tensors: &BTreeMap<String, Tensor>,
) -> Result<()> {
    write_file(path.as_ref(), &write_tensors(tensors, None)?)
}
