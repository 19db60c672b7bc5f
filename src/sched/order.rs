//! Liveness: for each value, the first and last step (position in the node order) at which
//! it must exist.

/// Inclusive step interval `[start, end]` during which a value must keep its contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    pub start: usize,
    pub end: usize,
}

impl Interval {
    pub fn overlaps(&self, o: &Interval) -> bool {
        self.start <= o.end && o.start <= self.end
    }
}

/// Computes intervals for `n_values` values. `defined_at[v]` is the step that writes value v
/// (`None` for values present from the start, i.e. graph inputs), `uses[step]` lists the values
/// step `step` reads, and `keep` marks values needed after the last step (graph outputs).
pub fn liveness(
    n_values: usize,
    defined_at: &[Option<usize>],
    uses: &[Vec<usize>],
    keep: &[usize],
) -> Vec<Interval> {
    let last = uses.len().saturating_sub(1);
    let mut iv: Vec<Interval> = (0..n_values)
        .map(|v| {
            let s = defined_at[v].unwrap_or(0);
            Interval { start: s, end: s }
        })
        .collect();
    for (step, vs) in uses.iter().enumerate() {
        for &v in vs {
            iv[v].end = iv[v].end.max(step);
        }
    }
    for &v in keep {
        iv[v].end = last.max(iv[v].start);
    }
    iv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_liveness() {
        // x -> a -> b, b is the output; a is read at step 1.
        let iv = liveness(3, &[None, Some(0), Some(1)], &[vec![0], vec![1]], &[2]);
        assert_eq!(iv[0], Interval { start: 0, end: 0 });
        assert_eq!(iv[1], Interval { start: 0, end: 1 });
        assert_eq!(iv[2], Interval { start: 1, end: 1 });
        assert!(iv[0].overlaps(&iv[1]));
        assert!(!iv[0].overlaps(&iv[2]));
    }
}
