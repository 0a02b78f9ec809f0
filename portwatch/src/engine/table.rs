//! Bounded key tables: idle keys age out, and once a table is full new keys
//! are folded into one "others" entry whose distinct keys are estimated.

use std::collections::hash_map::Entry;
use std::hash::Hash;

use super::hash::{FxHashMap, mixed_hash};

/// Something with a last-activity time, so idle entries can age out.
pub trait Activity {
    fn last_ns(&self) -> u64;
}

/// Register index bits: 2^12 one-byte registers = 4 KiB per table,
/// standard error 1.04 / sqrt(4096) ≈ 1.6%, from 0 to billions of keys.
const P: u32 = 12;
const M: usize = 1 << P;
/// Bits of the hash left for the rank once the index is taken.
const Q: u32 = 64 - P;

/// A HyperLogLog sketch of distinct keys, with Ertl's improved estimator
/// ("New cardinality estimation algorithms for HyperLogLog sketches", 2017),
/// which needs neither bias tables nor a switch to linear counting to stay
/// within a few percent at every cardinality. Written here rather than
/// taken from a crate: it is 60 lines, and the maintained HLL crates either
/// seed their hashers per process (estimates would differ between a run
/// and its replay) or pull in more than this needs. Registers are
/// allocated on the first insert: most tables never fold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DistinctEstimate {
    registers: Vec<u8>,
}

impl DistinctEstimate {
    pub fn insert<K: Hash + ?Sized>(&mut self, key: &K) {
        self.insert_hash(mixed_hash(key));
    }

    /// Inserts a key by its 64-bit hash, which must be well mixed and
    /// the same on every run (see [`mixed_hash`]).
    pub fn insert_hash(&mut self, h: u64) {
        if self.registers.is_empty() {
            self.registers = vec![0; M];
        }
        let idx = (h >> Q) as usize;
        // Rank: position of the first one bit in the remaining Q bits,
        // Q + 1 when they are all zero.
        let rest = h << P;
        let rank = (rest.leading_zeros() + 1).min(Q + 1) as u8;
        let r = &mut self.registers[idx];
        *r = (*r).max(rank);
    }

    pub fn estimate(&self) -> u64 {
        if self.registers.is_empty() {
            return 0;
        }
        let mut counts = [0u32; Q as usize + 2];
        for &r in &self.registers {
            counts[usize::from(r)] += 1;
        }
        let m = M as f64;
        if counts[0] as usize == M {
            return 0;
        }
        let mut z = m * tau(1.0 - f64::from(counts[Q as usize + 1]) / m);
        for k in (1..=Q as usize).rev() {
            z = 0.5 * (z + f64::from(counts[k]));
        }
        z += m * sigma(f64::from(counts[0]) / m);
        let alpha_inf = 0.5 / std::f64::consts::LN_2;
        (alpha_inf * m * m / z).round() as u64
    }
}

/// Ertl's σ(x) = x + Σ_{k≥1} x^(2^k) 2^(k-1), for the registers still zero.
fn sigma(mut x: f64) -> f64 {
    if x >= 1.0 {
        return f64::INFINITY;
    }
    let mut y = 1.0;
    let mut z = x;
    loop {
        x *= x;
        let z_prev = z;
        z += x * y;
        y += y;
        if z == z_prev {
            return z;
        }
    }
}

/// Ertl's τ(x), for the registers at the maximum rank.
fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let mut y = 1.0;
    let mut z = 1.0 - x;
    loop {
        x = x.sqrt();
        let z_prev = z;
        y *= 0.5;
        z -= (1.0 - x).powi(2) * y;
        if z == z_prev {
            return z / 3.0;
        }
    }
}

#[derive(Clone, Debug)]
pub struct Table<K, V> {
    pub map: FxHashMap<K, V>,
    /// Aggregate of everything that did not fit.
    pub others: V,
    pub folded: DistinctEstimate,
    max_keys: usize,
}

impl<K: Hash + Eq + Copy, V: Default + Activity> Table<K, V> {
    pub fn new(max_keys: usize) -> Self {
        Table {
            map: FxHashMap::default(),
            others: V::default(),
            folded: DistinctEstimate::default(),
            max_keys,
        }
    }

    /// The entry for `key`, or the "others" entry when the table is full.
    pub fn entry(&mut self, key: K) -> &mut V {
        self.entry_or_fold(key, |d| d.insert(&key))
    }

    /// Like [`Table::entry`], with `fold` counting the key into the
    /// estimate when the table is full (for keys whose identity for
    /// counting is not their bits, e.g. an interned index). One hash
    /// lookup and no key clone: this is the per-event path.
    pub fn entry_or_fold(&mut self, key: K, fold: impl FnOnce(&mut DistinctEstimate)) -> &mut V {
        let full = self.map.len() >= self.max_keys;
        match self.map.entry(key) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(_) if full => {
                fold(&mut self.folded);
                &mut self.others
            }
            Entry::Vacant(v) => v.insert(V::default()),
        }
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

    fn estimate_of(n: u32) -> u64 {
        let mut d = DistinctEstimate::default();
        for i in 0..n {
            d.insert(&i);
            d.insert(&i);
        }
        d.estimate()
    }

    #[test]
    fn distinct_estimate_is_close() {
        let e = estimate_of(1000);
        assert!((900..1100).contains(&e), "{e}");
        assert_eq!(DistinctEstimate::default().estimate(), 0);
    }

    #[test]
    fn distinct_estimate_is_exact_enough_for_a_few_keys() {
        for n in [1, 2, 5, 10, 50] {
            let e = estimate_of(n);
            assert!(
                e.abs_diff(u64::from(n)) <= 1 + u64::from(n) / 20,
                "{n} -> {e}"
            );
        }
    }

    #[test]
    fn distinct_estimate_stays_within_five_percent_at_a_million_keys() {
        // Keys shaped like the flood's: (address, port) destinations.
        let mut d = DistinctEstimate::default();
        for n in 0..1_000_000u32 {
            let a = std::net::IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 | n));
            d.insert(&(a, 443u16));
        }
        let e = d.estimate();
        assert!((950_000..1_050_000).contains(&e), "{e}");
        // And at the cardinalities in between, where raw HLL is biased.
        for n in [3_000, 10_000, 30_000, 100_000] {
            let e = estimate_of(n) as f64;
            let err = (e - f64::from(n)).abs() / f64::from(n);
            assert!(err < 0.05, "{n} -> {e}");
        }
    }
}
