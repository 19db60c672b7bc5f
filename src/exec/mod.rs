//! Executors: run a `Plan` on the GPU (`gpu`) or with the CPU reference ops (`cpu`), and
//! `autotune`, which times competing kernel variants once per adapter.

pub mod autotune;
pub mod cpu;
pub mod gpu;

pub use cpu::CpuExecutor;
pub use gpu::GpuExecutor;
