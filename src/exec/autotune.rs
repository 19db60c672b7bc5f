//! Autotune: times the candidates of every op family's tune slots once per adapter and driver,
//! on the small workloads the families name, and caches the winners on disk. Generic over the
//! registry: a family adds a slot or a candidate in its own file and this module never changes.
//! `SessionOptions::kernels` (the CLI fills it from `WGEDGE_KERNELS`) overrides the result.
//!
//! The cache file name carries a checksum of every slot's candidates, so a new or removed
//! variant makes machines that tuned before tune again by themselves.

use crate::error::Result;
use crate::format::{SparseLayout, WeightFormat};
use crate::gpu::GpuContext;
use crate::graph::GraphBuilder;
#[cfg(not(target_arch = "wasm32"))]
use crate::ops::CROSSOVER_FIELD;
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
            "{}/{}:{}:{}:{}",
            s.family,
            s.slot,
            serde_json::json!(s.candidates),
            serde_json::json!(s.formats),
            serde_json::json!(s.crossover)
        );
        for b in text.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// A sparse kernel's serde form without its density threshold.
#[cfg(not(target_arch = "wasm32"))]
fn without_threshold(v: &serde_json::Value) -> serde_json::Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove(CROSSOVER_FIELD);
    }
    v
}

/// The same kernel with density threshold `pct`.
#[cfg(not(target_arch = "wasm32"))]
fn with_threshold(v: &serde_json::Value, pct: u32) -> serde_json::Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.insert(CROSSOVER_FIELD.into(), pct.into());
    }
    v
}

/// Keeps the entries of a cached file that are still candidates of a known slot; says why each
/// other one was dropped.
#[cfg(not(target_arch = "wasm32"))]
fn filter_cached(c: TunedChoices, notices: &mut Vec<String>) -> TunedChoices {
    let slots = Op::tune_slots();
    let mut out = TunedChoices::new();
    for (family, entries) in c {
        for (slot, v) in entries {
            // A crossover slot's entry is a candidate with its measured threshold.
            let known = slots
                .iter()
                .find(|s| s.family == family && s.slot == slot)
                .is_some_and(|s| {
                    if s.crossover.is_empty() {
                        s.candidates.contains(&v)
                    } else {
                        let bare = without_threshold(&v);
                        s.candidates.iter().any(|c| without_threshold(c) == bare)
                    }
                });
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

/// The one-node graph a slot is timed on (random constants; for a crossover slot, its first
/// point's density and format).
pub fn workload(slot: &TuneSlot) -> GraphBuilder {
    match slot.crossover.first() {
        Some((d, f)) => workload_at(slot, *d, f),
        None => workload_with(slot, &slot.formats, 1.0),
    }
}

/// The slot's graph with its constants pruned to about `density` (by the format's blocks: an
/// entry for CSR, an r x c block for BSR, n of every m for N:M) and stored in `format`.
pub fn workload_at(slot: &TuneSlot, density: f32, format: &WeightFormat) -> GraphBuilder {
    let formats: Vec<WeightFormat> = (slot.inputs.iter())
        .map(|(_, c)| {
            if *c {
                format.clone()
            } else {
                WeightFormat::Dense
            }
        })
        .collect();
    workload_with(slot, &formats, density)
}

/// Zeroes all but about `density` of `w`'s `[rows, cols]` entries, whole blocks of the sparse
/// `format` at a time, chosen at random (seeded); N:M keeps the n largest of every m.
fn prune_for(w: Tensor, density: f32, format: &WeightFormat) -> Tensor {
    let WeightFormat::Sparse(s) = format else {
        return w;
    };
    let shape = w.shape().to_vec();
    let (r, c) = match s.layout {
        SparseLayout::NM { n, m } => {
            return crate::format::prune_nm(&w, n, m).unwrap_or(w);
        }
        SparseLayout::Csr => (1, 1),
        SparseLayout::Bsr { r, c } => (r, c),
    };
    let Ok((rows, cols)) = crate::format::matrix_dims(&shape) else {
        return w;
    };
    let Ok(v) = w.f32s("tune weight") else {
        return w;
    };
    let keep = Tensor::random(&[rows.div_ceil(r) * cols.div_ceil(c)], 99);
    let Ok(k) = keep.f32s("mask") else {
        return w;
    };
    let bcols = cols.div_ceil(c);
    let out: Vec<f32> = (0..rows * cols)
        .map(|i| {
            let b = i / cols / r * bcols + i % cols / c;
            // Tensor::random is uniform in [-1, 1).
            if (k[b] + 1.0) / 2.0 < density {
                v[i]
            } else {
                0.0
            }
        })
        .collect();
    Tensor::new(&shape, out).unwrap_or(w)
}

fn workload_with(slot: &TuneSlot, formats: &[WeightFormat], density: f32) -> GraphBuilder {
    let mut b = GraphBuilder::new();
    let names: Vec<String> = slot
        .inputs
        .iter()
        .enumerate()
        .map(|(i, (shape, constant))| {
            let name = format!("x{i}");
            let format = formats.get(i).cloned().unwrap_or_default();
            if *constant && !format.is_dense() {
                let w = prune_for(Tensor::random(shape, 7 + i as u64), density, &format);
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
    use super::{with_threshold, workload, workload_at, Tuned};
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
        f16_compute: bool,
    ) -> Result<(f64, String)> {
        let (g, mut w) = b.build()?;
        let mut profile = ctx.profile.clone();
        profile.kernels = kernels;
        profile.int8_activations = int8_activations;
        profile.f16_compute = f16_compute;
        let opts = PlanOptions {
            reuse: true,
            cpu_fallback: false,
        };
        let plan = Plan::new(&g, &w, Some(&profile), opts)?;
        plan.decode_weights(&mut w)?;
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

    /// A kernel name's variant (`csrtex-1x1-d100` -> `csrtex`): which kernel ran,
    /// whatever its threshold.
    fn kind_of(name: &str) -> &str {
        name.split_once('-').map_or(name, |(k, _)| k)
    }

    /// Measures every candidate of every slot on its small workload (about a second on
    /// lavapipe). A candidate that fails to build or run is skipped with a notice.
    pub fn tune(ctx: &Arc<GpuContext>) -> Result<Tuned> {
        let mut out = Tuned::default();
        for slot in Op::tune_slots() {
            let mut best: Option<(f64, &serde_json::Value)> = None;
            // Crossover slots time against the dense kernels tuned so far.
            let base = if slot.crossover.is_empty() {
                TunedChoices::new()
            } else {
                out.choices.clone()
            };
            let choose = |v: &serde_json::Value| {
                let mut c = base.clone();
                c.entry(slot.family.to_string())
                    .or_default()
                    .insert(slot.slot.to_string(), v.clone());
                c
            };
            for (cand, name) in slot.candidates.iter().zip(&slot.names) {
                let c = choose(cand);
                match time_variant(
                    ctx,
                    workload(&slot),
                    c,
                    slot.int8_activations,
                    slot.f16_compute,
                ) {
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
            let Some((_, k)) = best else { continue };
            let mut k = k.clone();
            let k_name = slot
                .candidates
                .iter()
                .zip(&slot.names)
                .find(|(c, _)| **c == k)
                .map(|(_, n)| n.clone())
                .unwrap_or_default();
            if !slot.crossover.is_empty() {
                // Sparse (threshold 100) against dense (threshold 0: the weight decoded) on the
                // same weight at each density, sparsest first; the threshold is the last
                // density where sparse still won by 10%.
                let mut points = slot.crossover.clone();
                points.sort_by(|a, b| a.0.total_cmp(&b.0));
                let mut pct = 0u32;
                for (d, f) in &points {
                    let b = || workload_at(&slot, *d, f);
                    let sparse =
                        time_variant(ctx, b(), choose(&with_threshold(&k, 100)), false, false);
                    let dense =
                        time_variant(ctx, b(), choose(&with_threshold(&k, 0)), false, false);
                    match (sparse, dense) {
                        // The candidate does not read this point's format (an N:M kernel for
                        // n:4 only): the point says nothing about it.
                        (Ok((_, ran)), Ok(_)) if kind_of(&ran) != kind_of(&k_name) => continue,
                        // A 10% margin: a tie measured on this one layer size must not
                        // send larger layers to a kernel that then loses (timings on shared
                        // machines move by more than the difference).
                        (Ok((ts, _)), Ok((td, _))) if ts < 0.9 * td => {
                            pct = (d * 100.0).floor() as u32
                        }
                        (Ok(_), Ok(_)) => break,
                        (Err(e), _) | (_, Err(e)) => {
                            out.notices.push(format!(
                                "autotune: {}/{} crossover at density {d} failed: {e}",
                                slot.family, slot.slot
                            ));
                            break;
                        }
                    }
                }
                k = with_threshold(&k, pct);
            }
            out.choices
                .entry(slot.family.to_string())
                .or_default()
                .insert(slot.slot.to_string(), k);
        }
        Ok(out)
    }
}
