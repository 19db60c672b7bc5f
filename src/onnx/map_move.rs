//! Mapping of ONNX data-movement, indexing, resize and pooling op types (Slice, Gather, Resize, Split, Pad, ...) onto wgedge ops. [`map`] answers `None` for an op type that is not
//! one of this file's, so `super::map::map` tries the next file.

use super::{Ctx, NodeIn, Val};

type R = std::result::Result<Vec<Val>, String>;

/// Maps one node whose op type belongs to this file; `None` when it does not.
pub(super) fn map(cx: &mut Ctx, n: &NodeIn) -> Option<R> {
    let _ = (cx, n);
    None
}
