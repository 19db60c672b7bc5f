//! The model graph: named values, nodes that read and write them, and the passes over it.

mod builder;
mod def;
pub mod passes;

pub use builder::{single_conv3x3, single_linear, GraphBuilder};
pub use def::{Checked, Graph, Node, Origin, ValueSpec};
