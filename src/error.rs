//! One error type for the whole crate: every failure names what was wrong.

use thiserror::Error;

/// Result alias used across wgedge.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, with enough context to act on it.
#[derive(Debug, Error)]
pub enum Error {
    /// Two shapes that had to agree did not.
    #[error("shape mismatch in {op}: expected {expected}, got {got}")]
    ShapeMismatch {
        op: String,
        expected: String,
        got: String,
    },
    /// A tensor or value had a dtype the op cannot take.
    #[error("dtype mismatch in {op}: expected {expected}, got {got}")]
    DTypeMismatch {
        op: String,
        expected: String,
        got: String,
    },
    /// An op, dtype or format this backend cannot run.
    #[error("unsupported: {what} (op {op}, backend {backend})")]
    Unsupported {
        op: String,
        what: String,
        backend: String,
    },
    /// The graph is malformed (unknown value, cycle, duplicate definition, ...).
    #[error("invalid graph: {0}")]
    Graph(String),
    /// A named input was not given to `run`, or an unknown one was.
    #[error("input error: {0}")]
    Input(String),
    /// A weight the graph refers to is not in the model.
    #[error("missing weight '{0}'")]
    MissingWeight(String),
    /// A model or tensor file is truncated, corrupt or inconsistent.
    #[error("bad model file: {0}")]
    ModelFile(String),
    /// A WGSL shader failed naga validation.
    #[error("shader {shader} failed to compile: {message}")]
    ShaderCompile { shader: String, message: String },
    /// A device limit would be exceeded.
    #[error("device limit exceeded: {what} needs {needed}, the adapter allows {max}")]
    DeviceLimit { what: String, needed: u64, max: u64 },
    /// A session would hold more memory than its budget (`SessionOptions::max_memory`).
    #[error("memory budget exceeded: {what} needs {needed} bytes, the budget (SessionOptions::max_memory) is {budget} bytes")]
    MemoryBudget {
        what: String,
        needed: u64,
        budget: u64,
    },
    /// No adapter for the requested backend, or device creation failed.
    #[error("device error: {0}")]
    Device(String),
    /// Something wgpu reported at run time (validation, out of memory, lost device).
    #[error("gpu error: {0}")]
    Gpu(String),
    /// File system error with the path that failed.
    #[error("i/o error on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn shape(
        op: impl Into<String>,
        expected: impl Into<String>,
        got: impl Into<String>,
    ) -> Self {
        Error::ShapeMismatch {
            op: op.into(),
            expected: expected.into(),
            got: got.into(),
        }
    }
    pub(crate) fn graph(msg: impl Into<String>) -> Self {
        Error::Graph(msg.into())
    }
}
