//! Memory plan: every activation gets a range of one arena buffer; values whose lifetimes do not
//! overlap may share bytes.
//!
//! Greedy by size for offset calculation (Pisarchyk & Lee, arXiv 2001.03288): values sorted by
//! size, largest first; each is placed at the lowest aligned offset whose range is not used by an
//! already placed value alive at the same time (best-fitting gap first). Offsets are aligned to
//! the device's storage-binding offset alignment (256 bytes on the portable profile), so each
//! value binds as `(arena, offset, size)`. Kernels declare activation bindings `read_write` so
//! one dispatch may bind several ranges of the arena (WebGPU forbids mixing read-only and
//! writable storage usage of one buffer in a dispatch).

use super::order::Interval;

/// Where each value lives in the arena.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryPlan {
    /// Byte offset of each planned value (`None` for values not planned, e.g. weights).
    pub offset_of: Vec<Option<u64>>,
    /// Arena size: the activation memory the plan allocates.
    pub peak_bytes: u64,
    /// Largest total size of values alive at the same step: no plan can use less.
    pub lower_bound_bytes: u64,
    pub alignment: u64,
}

fn align_up(v: u64, a: u64) -> u64 {
    v.div_ceil(a) * a
}

/// Plans offsets for values with the given sizes and intervals (`None` = not planned).
/// With `reuse` off every value gets its own range (a debug switch for hunting aliasing bugs).
pub fn plan(values: &[Option<(u64, Interval)>], reuse: bool, alignment: u64) -> MemoryPlan {
    let alignment = alignment.max(4);
    let mut idx: Vec<usize> = (0..values.len()).filter(|&i| values[i].is_some()).collect();
    let get = |i: usize| values[i].expect("filtered to planned values");
    idx.sort_by_key(|&i| (std::cmp::Reverse(get(i).0), get(i).1.start, i));
    let mut offset_of = vec![None; values.len()];
    // (offset, end) of placed values, and which placed values are alive at each step, so a
    // value only looks at the values alive during its own interval (not at every placed one:
    // that made planning quadratic in the node count).
    let steps = values
        .iter()
        .flatten()
        .map(|(_, iv)| iv.end + 1)
        .max()
        .unwrap_or(0);
    let mut placed: Vec<(u64, u64)> = Vec::new();
    let mut alive: Vec<Vec<usize>> = vec![Vec::new(); if reuse { steps } else { 0 }];
    let mut seen_by: Vec<usize> = Vec::new();
    let mut peak = 0u64;
    for (k, i) in idx.into_iter().enumerate() {
        let (bytes, iv) = get(i);
        let off = if reuse {
            // Ranges used by values alive at the same time, in address order.
            let mut busy: Vec<(u64, u64)> = Vec::new();
            for step in &alive[iv.start..=iv.end] {
                for &p in step {
                    if seen_by[p] != k {
                        seen_by[p] = k;
                        busy.push(placed[p]);
                    }
                }
            }
            busy.sort_unstable();
            let mut best: Option<(u64, u64)> = None; // (gap size, offset)
            let mut cursor = 0u64;
            for (s, e) in busy {
                let start = align_up(cursor, alignment);
                if s >= start && s - start >= bytes && best.is_none_or(|b| s - start < b.0) {
                    best = Some((s - start, start));
                }
                cursor = cursor.max(e);
            }
            best.map(|b| b.1).unwrap_or(align_up(cursor, alignment))
        } else {
            align_up(peak, alignment)
        };
        if reuse {
            for slot in &mut alive[iv.start..=iv.end] {
                slot.push(placed.len());
            }
        }
        placed.push((off, off + bytes));
        seen_by.push(usize::MAX);
        peak = peak.max(off + bytes);
        offset_of[i] = Some(off);
    }
    // The largest sum of sizes alive at one step: a sweep over start/end events.
    let mut events: Vec<(usize, i128)> = values
        .iter()
        .flatten()
        .flat_map(|&(b, iv)| [(iv.start, b as i128), (iv.end + 1, -(b as i128))])
        .collect();
    // At one step, ends (of the previous step) before starts.
    events.sort_unstable_by_key(|&(t, d)| (t, d > 0));
    let (mut live, mut lower) = (0i128, 0i128);
    for (_, d) in events {
        live += d;
        lower = lower.max(live);
    }
    let lower_bound_bytes = lower as u64;
    MemoryPlan {
        offset_of,
        peak_bytes: align_up(peak, alignment),
        lower_bound_bytes,
        alignment,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(start: usize, end: usize) -> Interval {
        Interval { start, end }
    }

    #[test]
    fn chain_reuses_memory() {
        let vals = vec![
            Some((784, iv(0, 0))),
            Some((512, iv(0, 1))),
            Some((512, iv(1, 2))),
            Some((16, iv(2, 2))),
        ];
        let p = plan(&vals, true, 16);
        assert_eq!(p.lower_bound_bytes, 784 + 512);
        assert_eq!(p.peak_bytes, 784 + 512);
        let q = plan(&vals, false, 16);
        assert_eq!(q.peak_bytes, 784 + 512 + 512 + 16);
    }

    #[test]
    fn fills_gaps_between_live_values() {
        // A big value dies early; two later values fit into its hole side by side.
        let vals = vec![
            Some((1024, iv(0, 1))),
            Some((256, iv(0, 3))),
            Some((512, iv(2, 3))),
            Some((512, iv(2, 3))),
        ];
        let p = plan(&vals, true, 256);
        assert_eq!(p.peak_bytes, 1024 + 256);
    }
}
