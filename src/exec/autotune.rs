//! Autotune: times the competing kernel variants of each choice once per adapter and driver,
//! on small representative shapes, and caches the winners on disk. `WGEDGE_KERNELS` (a JSON
//! `KernelChoices`) or `SessionOptions::kernels` overrides the result.

use crate::error::Result;
use crate::gpu::GpuContext;
use crate::profile::KernelChoices;
use std::sync::Arc;

#[cfg(not(target_arch = "wasm32"))]
pub use native::tune;

/// The kernel choices for this adapter: override, cached, or measured now (and cached).
pub async fn choices(ctx: &Arc<GpuContext>) -> Result<KernelChoices> {
    if let Ok(json) = std::env::var("WGEDGE_KERNELS") {
        return serde_json::from_str(&json).map_err(|e| {
            crate::Error::Device(format!(
                "WGEDGE_KERNELS is not valid kernel choices JSON: {e}"
            ))
        });
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let path = cache_path(ctx);
        if let Some(c) = path
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|s| serde_json::from_str(&s).ok())
        {
            return Ok(c);
        }
        let c = tune(ctx)?;
        if let Some(p) = path {
            // Best effort: a read-only cache dir only costs a re-tune next time.
            if let Some(dir) = p.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let tmp = p.with_extension(format!("tmp{}", std::process::id()));
            if std::fs::write(&tmp, serde_json::to_string_pretty(&c).unwrap_or_default()).is_ok() {
                let _ = std::fs::rename(&tmp, &p);
            }
        }
        Ok(c)
    }
    #[cfg(target_arch = "wasm32")]
    {
        // No clock to block on in the browser: use the defaults.
        let _ = ctx;
        Ok(KernelChoices::default())
    }
}

/// Where tuned choices for this adapter and driver are cached.
#[cfg(not(target_arch = "wasm32"))]
pub fn cache_path(ctx: &GpuContext) -> Option<std::path::PathBuf> {
    let dir = std::env::var_os("WGEDGE_CACHE_DIR")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME").map(|d| std::path::PathBuf::from(d).join("wgedge"))
        })
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|d| std::path::PathBuf::from(d).join(".cache").join("wgedge"))
        })?;
    let p = &ctx.profile;
    let id: String = format!("{}-{}-{}-v1", p.adapter, p.backend, p.driver)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Some(dir.join(format!("kernels-{id}.json")))
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use crate::error::Result;
    use crate::exec::GpuExecutor;
    use crate::gpu::GpuContext;
    use crate::graph::{single_conv3x3, single_linear, GraphBuilder};
    use crate::ops::Kernel;
    use crate::profile::KernelChoices;
    use crate::sched::{select, Plan, PlanOptions};
    use std::sync::Arc;

    /// Median seconds per run of a one-node graph planned with `kernels`.
    fn time_variant(ctx: &Arc<GpuContext>, b: GraphBuilder, kernels: KernelChoices) -> Result<f64> {
        let (g, w) = b.build()?;
        let mut profile = ctx.profile.clone();
        profile.kernels = kernels;
        let plan = Plan::new(&g, &w, Some(&profile), PlanOptions { reuse: true })?;
        let exec = pollster::block_on(GpuExecutor::new(ctx.clone(), &plan, &w))?;
        exec.run_resident(1)?; // warm-up: pipeline compile, first-touch
        let mut times = Vec::new();
        for _ in 0..3 {
            let t = std::time::Instant::now();
            exec.run_resident(1)?;
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        Ok(times[1])
    }

    fn best(
        ctx: &Arc<GpuContext>,
        cands: Vec<Kernel>,
        make: impl Fn() -> GraphBuilder,
        set: impl Fn(&mut KernelChoices, Kernel),
    ) -> Result<Kernel> {
        let mut best: Option<(f64, Kernel)> = None;
        for k in cands {
            let mut c = KernelChoices::default();
            set(&mut c, k);
            let t = time_variant(ctx, make(), c)?;
            if best.is_none_or(|(bt, _)| t < bt) {
                best = Some((t, k));
            }
        }
        Ok(best.map(|b| b.1).unwrap_or(Kernel::Standard))
    }

    fn transposed_a(m: usize, k: usize, n: usize) -> GraphBuilder {
        let mut b = GraphBuilder::new();
        let x = b.input("x", &[k, m]);
        let w = b.input("w", &[k, n]);
        let op = crate::ops::MatMul {
            trans_a: true,
            ..Default::default()
        };
        let y = b.node(crate::ops::Op::MatMul(op), &[&x, &w]);
        b.output(&y);
        b
    }

    /// Measures every candidate on small shapes (about a second on lavapipe).
    pub fn tune(ctx: &Arc<GpuContext>) -> Result<KernelChoices> {
        Ok(KernelChoices {
            gemm: best(
                ctx,
                select::gemm_candidates(),
                || single_linear(128, 256, 512),
                |c, k| c.gemm = k,
            )?,
            gemv: best(
                ctx,
                select::gemv_candidates(),
                || single_linear(1, 1024, 1024),
                |c, k| c.gemv = k,
            )?,
            gemm_tiled: best(
                ctx,
                select::gemm_tiled_candidates(),
                || transposed_a(96, 127, 96),
                |c, k| c.gemm_tiled = k,
            )?,
            conv: best(
                ctx,
                select::conv_candidates(),
                || single_conv3x3(32, 28, 1),
                |c, k| c.conv = k,
            )?,
            dwconv: best(
                ctx,
                select::dwconv_candidates(),
                || single_conv3x3(32, 56, 32),
                |c, k| c.dwconv = k,
            )?,
        })
    }
}
