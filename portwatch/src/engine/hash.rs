//! Hashing for the engine's maps: `rustc-hash`'s FxHash.
//!
//! std's SipHash with a random seed was ~40% of the per-event time; FxHash
//! is a multiply per word. No seed, so any iteration order that reaches the
//! output is the same on every run (replays stay deterministic). Its
//! weakness, keys chosen to collide, is bounded here: every map is capped
//! at `max_keys` entries.

use std::hash::{Hash, Hasher};

pub use rustc_hash::{FxBuildHasher, FxHashMap, FxHashSet, FxHasher};

/// A well-mixed 64-bit hash of `key` (every bit depends on every input
/// bit), for sketches that take bits from the top and the bottom alike.
pub fn mixed_hash<T: Hash + ?Sized>(key: &T) -> u64 {
    let mut h = FxHasher::default();
    key.hash(&mut h);
    fmix64(h.finish())
}

/// MurmurHash3's 64-bit finaliser.
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}
