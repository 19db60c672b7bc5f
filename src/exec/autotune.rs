//! Autotune: times the candidates of every op family's tune slots once per adapter and driver,
//! on the small workloads the families name, and caches the winners on disk. Generic over the
//! registry: a family adds a slot or a candidate in its own file and this module never changes.
//! `SessionOptions::kernels` (the CLI fills it from `WGEDGE_KERNELS`) overrides the result.
//!
//! The cache file name carries a checksum of every slot's candidates, so a new or removed
//! variant makes machines that tuned before tune again by themselves.

use crate::error::Result;
use crate::gpu::GpuContext;
use crate::graph::GraphBuilder;
use crate::ops::{Op, TuneSlot};
use crate::profile::TunedChoices;
use crate::tensor::Tensor;
use std::sync::Arc;

#[cfg(not(target_arch = "wasm32"))]
pub use native::tune;

/// Tuned choices plus what was noticed on the way (stale or unknown cache entries, candidates
/// that failed to build); a library reports, the caller decides whether to print.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Tuned {
    pub choices: TunedChoices,
    pub notices: Vec<String>,
}

/// Checks every entry of user-given choices; the first bad one is an error naming it.
pub fn validate_choices(c: &TunedChoices) -> std::result::Result<(), String> {
    for (family, slots) in c {
        for (slot, v) in slots {
            Op::check_choice(family, slot, v)?;
        }
    }
    Ok(())
}

/// FNV-1a over every slot's family, name and candidates: changes whenever a variant is added,
/// removed or re-parameterised.
pub fn candidates_checksum() -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for s in Op::tune_slots() {
        let text = format!(
            "{}/{}:{}:{}",
            s.family,
            s.slot,
            serde_json::json!(s.candidates),
            serde_json::json!(s.formats)
        );
        for b in text.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// Keeps the entries of a cached file that are still candidates of a known slot; says why each
/// other one was dropped.
#[cfg(not(target_arch = "wasm32"))]
fn filter_cached(c: TunedChoices, notices: &mut Vec<String>) -> TunedChoices {
    let slots = Op::tune_slots();
    let mut out = TunedChoices::new();
    for (family, entries) in c {
        for (slot, v) in entries {
            let known = slots
                .iter()
                .find(|s| s.family == family && s.slot == slot)
                .is_some_and(|s| s.candidates.contains(&v));
            match Op::check_choice(&family, &slot, &v) {
                Ok(_) if known => {
                    out.entry(family.clone()).or_default().insert(slot, v);
                }
                Ok(name) => notices.push(format!(
                    "kernel cache: {family}/{slot} = {name} is not a current candidate; ignored"
                )),
                Err(e) => notices.push(format!("kernel cache: {e}; ignored")),
            }
        }
    }
    out
}

/// The kernel choices for this adapter: cached, or measured now (and cached). (User overrides
/// come in through `SessionOptions::kernels`, e.g. from `WGEDGE_KERNELS` via
/// `SessionOptions::from_env`.)
pub async fn choices(ctx: &Arc<GpuContext>) -> Result<Tuned> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        let mut notices = Vec::new();
        let path = cache_path(ctx);
        if let Some(text) = path.as_ref().and_then(|p| std::fs::read_to_string(p).ok()) {
            match serde_json::from_str::<TunedChoices>(&text) {
                Ok(c) => {
                    return Ok(Tuned {
                        choices: filter_cached(c, &mut notices),
                        notices,
                    })
                }
                Err(e) => notices.push(format!("kernel cache unreadable ({e}); tuning again")),
            }
        }
        let mut tuned = tune(ctx)?;
        tuned.notices.splice(0..0, notices);
        if let Some(p) = path {
            // Best effort: a read-only cache dir only costs a re-tune next time.
            if let Some(dir) = p.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let tmp = p.with_extension(format!("tmp{}", std::process::id()));
            let text = serde_json::to_string_pretty(&tuned.choices).unwrap_or_default();
            if std::fs::write(&tmp, text).is_ok() {
                let _ = std::fs::rename(&tmp, &p);
            }
        }
        Ok(tuned)
    }
    #[cfg(target_arch = "wasm32")]
    {
        // No clock to block on in the browser: use the defaults.
        let _ = ctx;
        Ok(Tuned::default())
    }
}

/// The one-node graph a slot is timed on (random constants).
pub fn workload(slot: &TuneSlot) -> GraphBuilder {
    let mut b = GraphBuilder::new();
    let names: Vec<String> = slot
        .inputs
        .iter()
        .enumerate()
        .map(|(i, (shape, constant))| {
            let name = format!("x{i}");
            let format = slot.formats.get(i).cloned().unwrap_or_default();
            if *constant && !format.is_dense() {
                let w = Tensor::random(shape, 7 + i as u64);
                b.weight_packed(&name, &w, format)
                    .expect("tune slots name formats their shapes can hold")
            } else if *constant {
                b.weight(&name, Tensor::random(shape, 7 + i as u64))
            } else {
                b.input(&name, shape)
            }
        })
        .collect();
    let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let y = b.node(slot.op.clone(), &refs);
    b.output(&y);
    b
}

/// Where tuned choices for this adapter and driver (and this set of candidates) are cached.
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
    let id: String = format!(
        "{}-{}-{}-{:016x}",
        p.adapter,
        p.backend,
        p.driver,
        candidates_checksum()
    )
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
    use super::workload;
    use super::Tuned;
    use crate::error::Result;
    use crate::exec::GpuExecutor;
    use crate::gpu::GpuContext;
    use crate::graph::GraphBuilder;
    use crate::ops::Op;
    use crate::profile::TunedChoices;
    use crate::sched::{Plan, PlanOptions};
    use std::sync::Arc;

    /// Median seconds per run of a slot's workload planned with `kernels`, and the kernel that
    /// ran (a candidate that does not fit this adapter falls back to another kernel).
    fn time_variant(
        ctx: &Arc<GpuContext>,
        b: GraphBuilder,
        kernels: TunedChoices,
        int8_activations: bool,
    ) -> Result<(f64, String)> {
        let (g, w) = b.build()?;
        let mut profile = ctx.profile.clone();
        profile.kernels = kernels;
        profile.int8_activations = int8_activations;
        let opts = PlanOptions {
            reuse: true,
            cpu_fallback: false,
        };
        let plan = Plan::new(&g, &w, Some(&profile), opts)?;
        let exec = pollster::block_on(GpuExecutor::new(ctx.clone(), &plan, &w))?;
        exec.run_resident(1)?; // warm-up: pipeline compile, first-touch
        let mut times = Vec::new();
        for _ in 0..3 {
            let t = std::time::Instant::now();
            exec.run_resident(1)?;
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        Ok((times[1], plan.nodes[0].kernel.clone()))
    }

    /// Measures every candidate of every slot on its small workload (about a second on
    /// lavapipe). A candidate that fails to build or run is skipped with a notice.
    pub fn tune(ctx: &Arc<GpuContext>) -> Result<Tuned> {
        let mut out = Tuned::default();
        for slot in Op::tune_slots() {
            let mut best: Option<(f64, &serde_json::Value)> = None;
            for (cand, name) in slot.candidates.iter().zip(&slot.names) {
                let mut c = TunedChoices::new();
                c.entry(slot.family.to_string())
                    .or_default()
                    .insert(slot.slot.to_string(), cand.clone());
                match time_variant(ctx, workload(&slot), c, slot.int8_activations) {
                    // Another kernel ran: the candidate does not fit this adapter (a feature
                    // it lacks); timing the stand-in would crown a kernel that never runs.
                    Ok((_, ran)) if &ran != name => {}
                    Ok((t, _)) if best.is_none_or(|(bt, _)| t < bt) => best = Some((t, cand)),
                    Ok(_) => {}
                    Err(e) => out.notices.push(format!(
                        "autotune: {}/{} candidate {name} failed and was skipped: {e}",
                        slot.family, slot.slot
                    )),
                }
            }
            if let Some((_, k)) = best {
                out.choices
                    .entry(slot.family.to_string())
                    .or_default()
                    .insert(slot.slot.to_string(), k.clone());
            }
        }
        Ok(out)
    }
}
