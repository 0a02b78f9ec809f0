//! Bounded key tables: idle keys age out, and once a table is full new keys
//! are folded into one "others" entry whose distinct keys are estimated.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

/// Something with a last-activity time, so idle entries can age out.
pub trait Activity {
    fn last_ns(&self) -> u64;
}

/// Linear counting (Whang et al. 1990): estimates distinct items from the
/// share of zero bits in a fixed bitmap. 4096 bits = 512 bytes per table,
/// accurate to a few percent up to ~10k distinct keys, then saturating.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DistinctEstimate {
    bits: [u64; 64],
}

impl Default for DistinctEstimate {
    fn default() -> Self {
        DistinctEstimate { bits: [0; 64] }
    }
}

impl DistinctEstimate {
    const M: f64 = 4096.0;

    pub fn insert<K: Hash>(&mut self, key: &K) {
        // DefaultHasher::new() has fixed keys: the estimate is the same on
        // every run, which keeps replays deterministic.
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        let bit = (h.finish() % 4096) as usize;
        self.bits[bit / 64] |= 1 << (bit % 64);
    }

    pub fn estimate(&self) -> u64 {
        let ones: u32 = self.bits.iter().map(|w| w.count_ones()).sum();
        let zeros = (Self::M - f64::from(ones)).max(1.0);
        (-Self::M * (zeros / Self::M).ln()).round() as u64
    }
}

#[derive(Clone, Debug)]
pub struct Table<K, V> {
    pub map: HashMap<K, V>,
    /// Aggregate of everything that did not fit.
    pub others: V,
    pub folded: DistinctEstimate,
    max_keys: usize,
}

impl<K: Hash + Eq + Clone, V: Default + Activity> Table<K, V> {
    pub fn new(max_keys: usize) -> Self {
        Table {
            map: HashMap::new(),
            others: V::default(),
            folded: DistinctEstimate::default(),
            max_keys,
        }
    }

    /// The entry for `key`, or the "others" entry when the table is full.
    pub fn entry(&mut self, key: &K) -> &mut V {
        if !self.map.contains_key(key) {
            if self.map.len() >= self.max_keys {
                self.folded.insert(key);
                return &mut self.others;
            }
            self.map.insert(key.clone(), V::default());
        }
        // The key is present: inserted above or before.
        self.map.entry(key.clone()).or_default()
    }

    /// Drops entries idle since before `cutoff_ns`; returns how many.
    pub fn age_out(&mut self, cutoff_ns: u64) -> u64 {
        let before = self.map.len();
        self.map.retain(|_, v| v.last_ns() >= cutoff_ns);
        (before - self.map.len()) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_estimate_is_close() {
        let mut d = DistinctEstimate::default();
        for i in 0..1000u32 {
            d.insert(&i);
            d.insert(&i);
        }
        let e = d.estimate();
        assert!((900..1100).contains(&e), "{e}");
        assert_eq!(DistinctEstimate::default().estimate(), 0);
    }
}
