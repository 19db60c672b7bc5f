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

/// Threads the kernels may use: 1 inside [`serial`] (and on wasm32), else rayon's current
/// pool's.
pub fn threads() -> usize {
    #[cfg(not(target_arch = "wasm32"))]
    {
        if SERIAL.with(|s| s.get()) {
            1
        } else {
            rayon::current_num_threads()
        }
    }
    #[cfg(target_arch = "wasm32")]
    {
        1
    }
}

#[cfg(not(target_arch = "wasm32"))]
thread_local! {
    /// Set while [`serial`] runs on this thread.
    static SERIAL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` on the calling thread with every kernel on one thread ([`threads`] is 1, so no
/// kernel hands work to a pool): a one-thread session needs no pool thread, and handing the
/// run to one costs a wake-up per run (~12 µs measured, EPYC, idle).
pub fn serial<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(not(target_arch = "wasm32"))]
    {
        struct Restore(bool);
        impl Drop for Restore {
            fn drop(&mut self) {
                SERIAL.with(|s| s.set(self.0));
            }
        }
        let _restore = Restore(SERIAL.with(|s| s.replace(true)));
        f()
    }
    #[cfg(target_arch = "wasm32")]
    f()
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
    // Measured on the 2-core AMD EPYC (examples timing inside the pool, load 5-8 from other
    // jobs): splitting a job costs 0.2-0.5 µs when the other worker is awake (a 64 Ki-element
    // ReLU: 4.6 µs serial, 4.7-5.0 µs in 8-32 Ki chunks), and a sleeping worker wakes too late
    // to help jobs under ~25 µs (256 Ki elements: 21.5 µs serial and split alike; 1 Mi: 95 ->
    // 51 µs split). 2^17 operations (~5 µs) a task keeps the split's cost under ~10%.
    const MIN_TASK: usize = 1 << 17;
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
    /// One thread asked for: runs on the caller ([`serial`]), no pool.
    #[cfg(not(target_arch = "wasm32"))]
    one: bool,
}

impl Pool {
    /// `Some(n)`: a private pool of `n` threads (`Some(1)`: the calling thread); `None`:
    /// rayon's global pool (all cores).
    pub fn new(threads: Option<usize>) -> Pool {
        #[cfg(not(target_arch = "wasm32"))]
        {
            let one = threads.is_some_and(|n| n <= 1);
            let pool = threads.filter(|_| !one).and_then(|n| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .thread_name(|i| format!("wgedge-cpu-{i}"))
                    .build()
                    .ok()
                    .map(std::sync::Arc::new)
            });
            Pool { pool, one }
        }
        #[cfg(target_arch = "wasm32")]
        {
            let _ = threads;
            Pool {}
        }
    }

    /// Runs `f` with the kernels on this pool's threads: on one of them (the kernels inside
    /// then split work with cheap in-pool joins; from outside the pool every parallel kernel
    /// would pay its own hand-over, ~12 µs each measured); on the caller for one thread.
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        #[cfg(not(target_arch = "wasm32"))]
        {
            if self.one {
                return serial(f);
            }
            if let Some(p) = &self.pool {
                return p.install(f);
            }
            if rayon::current_thread_index().is_none() && rayon::current_num_threads() > 1 {
                // The global pool: `scope` runs its body on one of its workers.
                return rayon::scope(|_| f());
            }
        }
        f()
    }
}

/// An activation over a slice, in place (one call per run of values rather than per value).
pub type Act<'a> = &'a (dyn Fn(&mut [f32]) + Sync);

/// The fused epilogue of matmul/conv in the reference's order: `act(v + bias + residual)`.
/// `bias` is `(values, run)`: element `i` takes `values[(i / run) % values.len()]` (run 1: one
/// per column of a row-major matrix; run H*W: one per channel plane). `act`: `None` is the
/// identity. Same additions in the same order as the reference, so the epilogue adds no
/// difference of its own; it walks runs of one bias value (or rows of columns) so the inner
/// loops have no division and the activation is called once per run.
pub fn epilogue(
    out: &mut [f32],
    bias: Option<(&[f32], usize)>,
    residual: Option<&[f32]>,
    act: Option<Act>,
) {
    if bias.is_none() && residual.is_none() && act.is_none() {
        return;
    }
    const CH: usize = 1 << 14;
    par_chunks(out, CH, CH * 4, |ci, c| {
        let base = ci * CH;
        let mut done = 0;
        while done < c.len() {
            let o = base + done;
            // The segment: up to the end of this bias run (run > 1) or of this row of the
            // bias's columns (run 1), and of the chunk.
            let w = match bias {
                Some((b, 1)) if !b.is_empty() => b.len() - o % b.len(),
                Some((_, run)) => run - o % run,
                None => c.len(),
            }
            .min(c.len() - done);
            let seg = &mut c[done..done + w];
            match bias {
                Some((b, 1)) if !b.is_empty() => {
                    let j = o % b.len();
                    for (v, &bv) in seg.iter_mut().zip(&b[j..j + w]) {
                        *v += bv;
                    }
                }
                Some((b, run)) if !b.is_empty() => {
                    let bv = b[(o / run) % b.len()];
                    for v in seg.iter_mut() {
                        *v += bv;
                    }
                }
                _ => {}
            }
            if let Some(r) = residual {
                for (v, &rv) in seg.iter_mut().zip(&r[o..o + w]) {
                    *v += rv;
                }
            }
            if let Some(act) = act {
                act(seg);
            }
            done += w;
        }
    });
}
