//! Fast CPU kernels: the CPU backend's default path, beside the reference every op keeps as the
//! ground truth (`OpFamily::cpu`). Plain slice kernels with no knowledge of ops or graphs: the op
//! families pick one per case (`OpFamily::cpu_kernel`) and call it (`OpFamily::cpu_fast`).
//!
//! Threads: the kernels split their work with rayon over the current pool (the session runs a
//! plan inside a pool of `SessionOptions::threads` threads), and GEMM uses `gemm`'s own rayon
//! threading over the same pool. The wasm32 build has no threads: the same kernels run on one
//! thread, with a plain blocked GEMM in place of `gemm`.

/// Defines `fn $name(args) -> ret` running `$body(args)` (an `#[inline(always)]` fn of plain
/// slice loops) compiled for AVX-512 or AVX2 when the CPU has them (checked at run time; the
/// crate itself targets baseline x86-64, SSE2), else as is. No FMA contraction happens (Rust
/// never fuses `a * b + c`), so every version computes the same roundings.
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $body:ident) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                unsafe fn v512($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn v256($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has the features the function was compiled for.
                    return unsafe { v512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: as above.
                    return unsafe { v256($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

pub mod conv;
pub mod gemm;
pub mod quant;
pub mod sparse;

/// Threads the kernels may use (rayon's current pool; 1 on wasm32).
pub fn threads() -> usize {
    #[cfg(not(target_arch = "wasm32"))]
    {
        rayon::current_num_threads()
    }
    #[cfg(target_arch = "wasm32")]
    {
        1
    }
}

/// Calls `f(i, chunk)` for every `len`-element chunk of `out` (the last may be shorter), in
/// parallel where threads exist. `work` is a rough count of operations per chunk: small jobs
/// are run on the calling thread, since handing them out costs more than they do.
pub fn par_chunks(
    out: &mut [f32],
    len: usize,
    work: usize,
    f: impl Fn(usize, &mut [f32]) + Sync + Send,
) {
    let len = len.max(1);
    let chunks = out.len().div_ceil(len);
    // ~20 µs of work per task at a few GFLOP/s keeps rayon's overhead (~1 µs a task) small.
    const MIN_TASK: usize = 1 << 16;
    #[cfg(not(target_arch = "wasm32"))]
    if threads() > 1 && chunks > 1 && work.saturating_mul(chunks) >= MIN_TASK {
        use rayon::prelude::*;
        let per = MIN_TASK.div_ceil(work.max(1)).max(1);
        out.par_chunks_mut(len)
            .enumerate()
            .with_min_len(per.min(chunks.div_ceil(threads())))
            .for_each(|(i, c)| f(i, c));
        return;
    }
    let _ = (work, chunks, MIN_TASK);
    for (i, c) in out.chunks_mut(len).enumerate() {
        f(i, c);
    }
}

/// A pool of `n` threads for a session (`None` where threads cannot be made: wasm32, or the OS
/// refused), inside which [`install`] runs the kernels.
#[derive(Clone)]
pub struct Pool {
    #[cfg(not(target_arch = "wasm32"))]
    pool: Option<std::sync::Arc<rayon::ThreadPool>>,
}

impl Pool {
    /// `Some(n)`: a private pool of `n` threads; `None`: rayon's global pool (all cores).
    pub fn new(threads: Option<usize>) -> Pool {
        #[cfg(not(target_arch = "wasm32"))]
        {
            let pool = threads.and_then(|n| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n.max(1))
                    .thread_name(|i| format!("wgedge-cpu-{i}"))
                    .build()
                    .ok()
                    .map(std::sync::Arc::new)
            });
            Pool { pool }
        }
        #[cfg(target_arch = "wasm32")]
        {
            let _ = threads;
            Pool {}
        }
    }

    /// Runs `f` with the kernels on this pool's threads.
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(p) = &self.pool {
            return p.install(f);
        }
        f()
    }
}

/// The fused epilogue of matmul/conv in the reference's order: `act(v + bias + residual)`.
/// `bias` is `(values, run)`: element `i` takes `values[(i / run) % values.len()]` (run 1: one
/// per column of a row-major matrix; run H*W: one per channel plane). Same additions in the
/// same order as the reference, so the epilogue adds no difference of its own.
pub fn epilogue(
    out: &mut [f32],
    bias: Option<(&[f32], usize)>,
    residual: Option<&[f32]>,
    act: &(dyn Fn(f32) -> f32 + Sync),
    identity_act: bool,
) {
    if bias.is_none() && residual.is_none() && identity_act {
        return;
    }
    const CH: usize = 1 << 14;
    par_chunks(out, CH, CH * 4, |ci, c| {
        let base = ci * CH;
        for (j, v) in c.iter_mut().enumerate() {
            let o = base + j;
            if let Some((b, run)) = bias {
                *v += b[(o / run) % b.len()];
            }
            if let Some(r) = residual {
                *v += r[o];
            }
            *v = act(*v);
        }
    });
}
