//! Call sites: where in its code a service opens its connections to a
//! destination, from sampled connect() stacks (`Input::CallStack`).
//!
//! Each pair keeps a count per distinct stack (frames as symbolized), at
//! most [`MAX_STACKS_PER_PAIR`]; later new stacks fold into one "other"
//! count, so a pair whose stacks all differ (JIT addresses, a recursion)
//! costs bounded memory, and the shares still add up to 1.

use std::net::IpAddr;

use rustc_hash::FxHashMap;
use serde::Serialize;

use super::service::ServiceId;

/// Distinct stacks kept per pair; further ones are counted as "other".
pub const MAX_STACKS_PER_PAIR: usize = 16;
/// Call sites a verdict shows (the most sampled first).
pub const TOP_CALL_SITES: usize = 3;
/// Pairs with call sites kept at once; beyond, new pairs' samples are
/// ignored until idle ones age out (with the engine's other tables).
pub const MAX_PAIRS: usize = 4096;

/// Frames of the folded rest, as views show them.
pub const OTHER_FRAMES: &str = "(other call sites)";

/// (service, netns key, daddr, dport): the pair, by its service's name so
/// a service index reused after aging out never inherits another's stacks.
pub(super) type SiteKey = (ServiceId, u32, IpAddr, u16);

/// One call site of a flagged pair, as views show it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CallSite {
    /// Innermost first: `function (file:line)`, or `0xADDR` where nothing
    /// names it. `["(other call sites)"]` for the folded rest.
    pub frames: Vec<String>,
    /// Share of the pair's sampled connects opened from here.
    pub share: f64,
    /// Samples from here.
    pub samples: u64,
    /// What limited the frames (process gone, interpreter, JIT), if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Default)]
pub(super) struct PairSites {
    stacks: Vec<(Vec<String>, Option<String>, u64)>,
    other: u64,
    total: u64,
    pub(super) last_ns: u64,
}

impl PairSites {
    pub(super) fn add(&mut self, frames: &[String], note: Option<&str>, ts_ns: u64) {
        self.total += 1;
        self.last_ns = self.last_ns.max(ts_ns);
        // Samples without frames are told apart by why they have none
        // (refused by the kernel, over the symbolizer's budget, ...).
        let same = |s: &(Vec<String>, Option<String>, u64)| {
            s.0 == frames && (!frames.is_empty() || s.1.as_deref() == note)
        };
        if let Some(s) = self.stacks.iter_mut().find(|s| same(s)) {
            s.2 += 1;
        } else if self.stacks.len() < MAX_STACKS_PER_PAIR {
            self.stacks
                .push((frames.to_vec(), note.map(str::to_string), 1));
        } else {
            self.other += 1;
        }
    }

    /// The `n` most sampled call sites (ties: the first seen), then the
    /// folded rest if it ranks among them.
    pub(super) fn top(&self, n: usize) -> Vec<CallSite> {
        if self.total == 0 {
            return Vec::new();
        }
        let share = |c: u64| c as f64 / self.total as f64;
        let mut sites: Vec<CallSite> = self
            .stacks
            .iter()
            .map(|(frames, note, c)| CallSite {
                frames: frames.clone(),
                share: share(*c),
                samples: *c,
                note: note.clone(),
            })
            .collect();
        if self.other > 0 {
            sites.push(CallSite {
                frames: vec![OTHER_FRAMES.to_string()],
                share: share(self.other),
                samples: self.other,
                note: None,
            });
        }
        // Stable: equal counts keep their first-seen order.
        sites.sort_by_key(|s| std::cmp::Reverse(s.samples));
        sites.truncate(n);
        sites
    }
}

#[derive(Default)]
pub(super) struct CallSites {
    pub(super) map: FxHashMap<SiteKey, PairSites>,
}

impl CallSites {
    pub(super) fn add(&mut self, key: SiteKey, frames: &[String], note: Option<&str>, ts_ns: u64) {
        if self.map.len() >= MAX_PAIRS && !self.map.contains_key(&key) {
            return;
        }
        self.map.entry(key).or_default().add(frames, note, ts_ns);
    }

    pub(super) fn age_out(&mut self, cutoff_ns: u64) {
        self.map.retain(|_, p| p.last_ns >= cutoff_ns);
    }

    pub(super) fn top(&self, key: &SiteKey) -> Vec<CallSite> {
        self.map
            .get(key)
            .map(|p| p.top(TOP_CALL_SITES))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn shares_are_per_distinct_stack_and_add_up() {
        let mut p = PairSites::default();
        for _ in 0..3 {
            p.add(&f(&["connect", "fetch_user", "main"]), None, 1);
        }
        p.add(&f(&["connect", "fetch_order", "main"]), None, 2);
        let top = p.top(3);
        assert_eq!(top.len(), 2);
        assert_eq!(top[0].frames, f(&["connect", "fetch_user", "main"]));
        assert_eq!(top[0].samples, 3);
        assert!((top[0].share - 0.75).abs() < 1e-9);
        assert!((top[1].share - 0.25).abs() < 1e-9);
    }

    #[test]
    fn stacks_beyond_the_cap_fold_into_other() {
        let mut p = PairSites::default();
        for i in 0..MAX_STACKS_PER_PAIR + 4 {
            p.add(&f(&["connect", &format!("site{i}")]), None, 1);
        }
        // The folded rest (4 samples) outranks every single stack (1 each).
        let top = p.top(3);
        assert_eq!(top[0].frames, f(&[OTHER_FRAMES]));
        assert_eq!(top[0].samples, 4);
        assert_eq!(top[1].frames, f(&["connect", "site0"]));
        let all = p.top(usize::MAX);
        assert_eq!(all.len(), MAX_STACKS_PER_PAIR + 1);
        let sum: f64 = all.iter().map(|s| s.share).sum();
        assert!((sum - 1.0).abs() < 1e-9);
    }

    #[test]
    fn a_stack_keeps_the_note_of_its_first_sample() {
        let mut p = PairSites::default();
        p.add(&f(&["0x401000"]), Some("process 7 exited"), 1);
        p.add(&f(&["0x401000"]), None, 2);
        let top = p.top(1);
        assert_eq!(top[0].note.as_deref(), Some("process 7 exited"));
        assert_eq!(top[0].samples, 2);
    }

    #[test]
    fn frameless_samples_are_kept_apart_by_their_note() {
        let mut p = PairSites::default();
        p.add(&[], Some("not symbolized: over budget"), 1);
        p.add(&[], Some("not symbolized: over budget"), 2);
        p.add(&[], Some("bpf_get_stackid: File exists"), 3);
        let top = p.top(3);
        assert_eq!(top.len(), 2);
        assert_eq!(top[0].note.as_deref(), Some("not symbolized: over budget"));
        assert_eq!(top[0].samples, 2);
        assert_eq!(top[1].note.as_deref(), Some("bpf_get_stackid: File exists"));
    }

    #[test]
    fn idle_pairs_age_out() {
        let mut c = CallSites::default();
        let svc = ServiceId::new(super::super::service::ServiceKind::Comm, "client");
        let key = (svc, 1, "127.0.0.1".parse().unwrap(), 80);
        c.add(key.clone(), &f(&["connect"]), None, 5);
        c.age_out(4);
        assert_eq!(c.top(&key).len(), 1);
        c.age_out(6);
        assert!(c.top(&key).is_empty());
    }
}
