//! The scheduler: graph + `DeviceProfile` -> `Plan` (order, kernel per node, memory plan).
//! It knows no wgpu; executors run the plan it produces without re-deciding anything.

pub mod memory;
pub mod order;
pub mod plan;
pub mod select;

pub use memory::MemoryPlan;
pub use plan::{Plan, PlanNode, PlanOptions, PlanValue, ValueKind};
