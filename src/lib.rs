pub mod error;
pub mod ops;
pub mod tensor;
pub use error::{Error, Result};
pub use tensor::{DType, Tensor};
pub mod graph;
pub mod profile;
pub mod sched;
pub mod gpu;
pub mod exec;
pub mod model;
pub mod session;
pub use gpu::{Backend, GpuContext};
pub use model::Model;
pub use session::{Session, SessionOptions};
#[cfg(not(target_arch = "wasm32"))]
pub mod bench;
