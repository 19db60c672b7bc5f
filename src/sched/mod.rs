//! The scheduler: graph + `DeviceProfile` -> `Plan` (order, where each node runs and with which
//! kernel — asked of each node's op —, memory plan). It knows no wgpu and no op internals;
//! executors run the plan it produces without re-deciding anything.

pub mod memory;
pub mod order;
pub mod plan;

pub use memory::MemoryPlan;
pub use plan::{Placement, Plan, PlanNode, PlanOptions, PlanValue, ValueKind, CPU_KERNEL};
