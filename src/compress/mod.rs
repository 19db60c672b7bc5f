//! Compression tools: post-training weight quantization of a [`Model`](crate::Model).
//!
//! [`quantize`] rewrites a model so that the weights of its matmul and conv nodes are stored in a
//! packed [`WeightFormat`](crate::WeightFormat) (int8, int4, power-of-two int8 or f16), optionally
//! clipping outliers first, and reports per layer how much precision (SQNR) and how many bytes
//! that cost. Everything here is plain CPU code over the model's tensors: it runs the same on
//! every target, wasm included, and never needs a device.
//!
//! ```
//! use wgedge::compress::{quantize, QuantConfig, WeightKind};
//! use wgedge::{graph::GraphBuilder, ops::Activation, Model, Tensor};
//! let mut b = GraphBuilder::new();
//! let x = b.input("x", &[1, 64]);
//! let w = b.weight("fc.weight", Tensor::random(&[16, 64], 1));
//! let y = b.linear(&x, &w, None, Activation::None);
//! b.output(&y);
//! let model = Model::from_builder(b)?;
//! let (q, report) = quantize(&model, &QuantConfig::new(WeightKind::Int4))?;
//! assert_eq!(q.graph.format_of("fc.weight").label(), "int4-g32-f16s");
//! assert!(report.layers[0].sqnr_db > 15.0);
//! println!("{report}");
//! # Ok::<(), wgedge::Error>(())
//! ```

mod layers;
pub mod prune;
mod quant;
mod targets;

pub use layers::{remove_layers, Removal, RemovalReport, RemovedLayer};
pub use prune::{
    prune, prune_with_progress, Norm, Pattern, PruneConfig, PruneReport, PrunedLayer, Scope, Store,
};
pub use quant::{
    quantize, quantize_with_progress, Clip, LayerReport, QuantConfig, QuantReport, WeightKind,
};
pub use targets::SkippedWeight;
