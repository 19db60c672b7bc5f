//! Memory plan: activations share whole buffers ("slots") when their lifetimes do not overlap.
//!
//! Greedy by size over shared objects (Pisarchyk & Lee, arXiv 2001.03288): values sorted by size,
//! largest first, each goes to the smallest existing slot free over its whole lifetime, else to a
//! new slot. Whole buffers rather than offsets into one arena, so every binding starts at offset 0
//! (no 256-byte alignment padding) and read-only and read-write bindings never share a buffer.

use super::order::Interval;

/// Which slot each value uses and how large each slot is.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryPlan {
    /// Slot index of each planned value (`None` for values not planned, e.g. weights).
    pub slot_of: Vec<Option<usize>>,
    pub slot_bytes: Vec<u64>,
    /// Sum of slot sizes: the memory the plan allocates for activations.
    pub peak_bytes: u64,
    /// Largest total size of values alive at the same step: no plan can use less.
    pub lower_bound_bytes: u64,
}

/// Plans slots for values with the given sizes and intervals (`None` = not planned).
/// With `reuse` off every value gets its own slot (a debug switch for hunting aliasing bugs).
pub fn plan(values: &[Option<(u64, Interval)>], reuse: bool) -> MemoryPlan {
    let mut idx: Vec<usize> = (0..values.len()).filter(|&i| values[i].is_some()).collect();
    // Largest first; ties by start step keep the result deterministic.
    idx.sort_by_key(|&i| {
        let (b, iv) = values[i].expect("filtered");
        (std::cmp::Reverse(b), iv.start, i)
    });
    let mut slot_of = vec![None; values.len()];
    let mut slot_bytes: Vec<u64> = Vec::new();
    let mut slot_users: Vec<Vec<Interval>> = Vec::new();
    for i in idx {
        let (bytes, iv) = values[i].expect("filtered");
        let fit = if reuse {
            (0..slot_bytes.len())
                .filter(|&s| slot_users[s].iter().all(|u| !u.overlaps(&iv)))
                .min_by_key(|&s| (slot_bytes[s], s))
        } else {
            None
        };
        let s = fit.unwrap_or_else(|| {
            slot_bytes.push(bytes);
            slot_users.push(Vec::new());
            slot_bytes.len() - 1
        });
        slot_users[s].push(iv);
        slot_of[i] = Some(s);
    }
    let last = values
        .iter()
        .flatten()
        .map(|(_, iv)| iv.end)
        .max()
        .unwrap_or(0);
    let lower_bound_bytes = (0..=last)
        .map(|t| {
            values
                .iter()
                .flatten()
                .filter(|(_, iv)| iv.start <= t && t <= iv.end)
                .map(|(b, _)| *b)
                .sum::<u64>()
        })
        .max()
        .unwrap_or(0);
    MemoryPlan {
        peak_bytes: slot_bytes.iter().sum(),
        slot_of,
        slot_bytes,
        lower_bound_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(start: usize, end: usize) -> Interval {
        Interval { start, end }
    }

    #[test]
    fn chain_reuses_two_slots() {
        let vals = vec![
            Some((784, iv(0, 0))),
            Some((512, iv(0, 1))),
            Some((512, iv(1, 2))),
            Some((10, iv(2, 2))),
        ];
        let p = plan(&vals, true);
        assert_eq!(p.slot_bytes.len(), 2);
        assert_eq!(p.peak_bytes, 784 + 512);
        assert_eq!(p.lower_bound_bytes, 784 + 512);
        let q = plan(&vals, false);
        assert_eq!(q.slot_bytes.len(), 4);
    }
}
