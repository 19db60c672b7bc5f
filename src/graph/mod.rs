//! The model graph: named values, nodes that read and write them, and the passes over it.

mod builder;
mod graph;
pub mod passes;

pub use builder::GraphBuilder;
pub use graph::{Checked, Graph, Node, Origin, ValueSpec};
