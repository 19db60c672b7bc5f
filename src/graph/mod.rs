//! The model graph: named values, nodes that read and write them, and the passes over it.

mod builder;
mod def;
pub mod passes;

pub use builder::GraphBuilder;
pub use def::{Checked, Graph, Node, Origin, ValueSpec};
