//! A compact log-bucket histogram of durations in microseconds.
//!
//! Why not `hdrhistogram`: it fits rustc 1.95, but at the precision that is
//! useful here (2 significant digits, 1 µs .. 1 h) one histogram is ~8-16 KiB
//! of counters, and the engine keeps two per key for thousands of keys. This
//! one has 4 buckets per power of two (a reported percentile is a bucket's
//! midpoint, at most 12.5% from the true value), grows only as far as the largest
//! value seen (short-lived connections stay in the first ~70 buckets, under
//! 300 bytes) and caps at 2^40 µs (~12 days).

/// Buckets per doubling.
const SUB: u32 = 4;
/// Values 0..FIRST_LOG get one exact bucket each.
const FIRST_LOG: u64 = 8;
const MAX_BUCKETS: usize = (FIRST_LOG as usize) + 40 * SUB as usize;

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct LogHist {
    counts: Vec<u32>,
    total: u64,
}

/// The bucket a value falls in; see [`LogHist::record_bucket`].
pub fn bucket_of(v_us: u64) -> usize {
    if v_us < FIRST_LOG {
        return v_us as usize;
    }
    let log2 = 63 - v_us.leading_zeros(); // >= 3
    // The two bits below the leading one pick one of the 4 sub-buckets.
    let sub = ((v_us >> (log2 - 2)) & 0b11) as u32;
    let idx = FIRST_LOG as usize + ((log2 - 3) * SUB + sub) as usize;
    idx.min(MAX_BUCKETS - 1)
}

/// Representative value of a bucket: its midpoint.
fn value_of(idx: usize) -> u64 {
    if idx < FIRST_LOG as usize {
        return idx as u64;
    }
    let i = (idx - FIRST_LOG as usize) as u32;
    let log2 = i / SUB + 3;
    let sub = u64::from(i % SUB);
    let width = 1u64 << (log2 - 2);
    let low = (1u64 << log2) + sub * width;
    low + width / 2
}

impl LogHist {
    pub fn record(&mut self, v_us: u64) {
        self.record_bucket(bucket_of(v_us));
    }

    /// Records a value by its bucket ([`bucket_of`]), computed once for
    /// the several histograms one event lands in.
    #[inline]
    pub fn record_bucket(&mut self, b: usize) {
        if self.counts.len() <= b {
            self.counts.resize(b + 1, 0);
        }
        self.counts[b] = self.counts[b].saturating_add(1);
        self.total += 1;
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// Samples whose bucket lies wholly below `limit_us` (limits at powers
    /// of ten fall inside a bucket; that bucket counts above: coarse on
    /// purpose, this feeds a decade histogram).
    pub fn count_below_us(&self, limit_us: u64) -> u64 {
        self.counts
            .iter()
            .enumerate()
            .take_while(|(i, _)| value_of(*i) < limit_us)
            .map(|(_, &c)| u64::from(c))
            .sum()
    }

    /// Counts of the samples whose bucket lies wholly below each of
    /// `limits_us` (ascending), as [`LogHist::count_below_us`] gives them
    /// one by one, in one pass over the buckets.
    pub fn counts_below_us<const N: usize>(&self, limits_us: [u64; N]) -> [u64; N] {
        let mut out = [0u64; N];
        let mut sum = 0u64;
        let mut next = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            let v = value_of(i);
            while next < N && v >= limits_us[next] {
                out[next] = sum;
                next += 1;
            }
            if next == N {
                return out;
            }
            sum += u64::from(c);
        }
        for o in &mut out[next..] {
            *o = sum;
        }
        out
    }

    /// The `qs`-quantiles (ascending), as [`LogHist::quantile_us`] gives
    /// them one by one, in one pass over the buckets.
    pub fn quantiles_us<const N: usize>(&self, qs: [f64; N]) -> [Option<u64>; N] {
        let mut out = [None; N];
        if self.total == 0 {
            return out;
        }
        let ranks = qs.map(|q| ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1));
        let mut seen = 0u64;
        let mut next = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += u64::from(c);
            while next < N && seen >= ranks[next] {
                out[next] = Some(value_of(i));
                next += 1;
            }
            if next == N {
                return out;
            }
        }
        let last = self.counts.len().checked_sub(1).map(value_of);
        for o in &mut out[next..] {
            *o = last;
        }
        out
    }

    /// The q-quantile (0.0..=1.0), `None` when empty.
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        // Rank of the wanted sample, 1-based, like "nearest rank".
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += u64::from(c);
            if seen >= rank {
                return Some(value_of(i));
            }
        }
        self.counts.len().checked_sub(1).map(value_of)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_values_are_exact_and_large_ones_within_ten_percent() {
        for v in 0..8 {
            assert_eq!(value_of(bucket_of(v)), v);
        }
        for v in [9u64, 100, 999, 12_345, 1_000_000, 59_000_000, 3_600_000_000] {
            let r = value_of(bucket_of(v)) as f64;
            let err = (r - v as f64).abs() / v as f64;
            assert!(err <= 0.13, "{v} -> {r} ({err})");
        }
    }

    #[test]
    fn one_pass_answers_like_one_at_a_time() {
        let mut h = LogHist::default();
        assert_eq!(h.quantiles_us([0.5, 0.99]), [None, None]);
        assert_eq!(h.counts_below_us([10, 1000]), [0, 0]);
        let mut x = 7u64;
        for _ in 0..5000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            h.record((x >> 40) % 20_000_000);
        }
        for v in [0, 3, 999, 1000, 1001, 50_000] {
            h.record(v);
        }
        let qs = [0.0, 0.01, 0.5, 0.9, 0.99, 1.0];
        assert_eq!(h.quantiles_us(qs), qs.map(|q| h.quantile_us(q)));
        let limits = [1, 1_000, 10_000, 100_000, 1_000_000, 10_000_000, 1 << 50];
        assert_eq!(
            h.counts_below_us(limits),
            limits.map(|l| h.count_below_us(l))
        );
    }

    #[test]
    fn buckets_are_monotonic() {
        let mut last = 0;
        for v in 0..100_000u64 {
            let b = bucket_of(v);
            assert!(b >= last);
            last = b;
        }
    }
}
