//! # wgedge
//!
//! Runs neural networks on the GPUs of edge devices through WebGPU (wgpu: Vulkan, Metal, DX12,
//! GL, browser WebGPU), with a CPU reference implementation of every op that is both the ground
//! truth for tests and the fallback when no GPU adapter exists.
//!
//! A model is a graph stored in a safetensors file; a [`Session`] checks it, folds and fuses
//! it, plans its memory and kernels once, then runs it many times with one command buffer per
//! run.
//!
//! ```no_run
//! use wgedge::{Backend, Model, Session, Tensor};
//! let model = Model::load("models/mnist-cnn.safetensors")?;
//! let session = Session::new(&model, Backend::Auto)?; // hardware GPU if any, else CPU
//! let image = Tensor::zeros(&[1, 1, 28, 28]);
//! let probs = session.run(&[("image", &image)])?;
//! println!("{:?}", probs[0].f32s("probs")?);
//! # Ok::<(), wgedge::Error>(())
//! ```
//!
//! Layers, top first (each uses only those below): [`session`] → [`exec`] (GPU and CPU
//! executors, autotune) → [`model`], [`sched`] → [`graph`] → [`ops`] → [`cpu`] (fast CPU kernels), [`gpu`], [`tensor`],
//! [`profile`] → [`error`]. See `ARCHITECTURE.md` for the decisions behind them.
// wasm is single-threaded: wgpu handles there are neither Send nor Sync, and that is fine.
#![cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]

#[cfg(not(target_arch = "wasm32"))]
pub mod auto;
#[cfg(not(target_arch = "wasm32"))]
pub mod bench;
pub mod compress;
pub mod cpu;
pub mod error;
pub mod exec;
pub mod format;
pub mod gpu;
pub mod graph;
pub mod model;
pub mod onnx;
pub mod ops;
pub mod profile;
pub mod sched;
pub mod session;
pub mod tensor;

pub use error::{Error, Result};
pub use format::WeightFormat;
pub use gpu::{Backend, GpuContext};
pub use model::Model;
pub use session::{default_memory_budget, Session, SessionOptions};
pub use tensor::{DType, Tensor, ValueType};
