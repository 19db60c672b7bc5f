//! GPU plumbing: adapter and device (or the app's own), limits and features, pipeline cache,
//! buffer helpers. Knows nothing of graphs.

pub mod device;
pub mod kernel;
pub mod shader;

pub use device::{AutoChoice, Backend, GpuContext};
pub use shader::{Overrides, ShaderKey, ShaderSource, TexFormat};
