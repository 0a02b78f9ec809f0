//! The stack ids the probe has read from the `STACKS` map, kept while they
//! are in use.
//!
//! `bpf_get_stackid` returns the same id for the same stack as long as its
//! bucket holds it, and never changes a bucket in place (no
//! `BPF_F_REUSE_STACKID`). So a stack read once can be remembered by id: a
//! client that connects from the same code path over and over costs one map
//! read, not a read and a delete (two syscalls) at every 10 ms drain. Ids
//! that went unused for a sweep period are deleted from the map, and when
//! many are held (stacks that differ at every call) all are deleted at
//! once, so the map never fills.
//!
//! Hand-written: it is the bookkeeping of one aya map, with no crate for it.

use std::collections::HashMap;

/// Ids not used for this long are deleted from the map.
pub const SWEEP_EVERY_NS: u64 = 1_000_000_000;
/// Held ids beyond which every id is deleted at the end of the drain. A
/// held stack occupies its hash bucket: a different stack hashing there is
/// refused (`EEXIST`, shown as that sample's note), so at most 1/16 of
/// `STACKS_MAX_ENTRIES` buckets are held, a ≤ 6% chance for a new stack.
pub const HELD_MAX: usize = portwatch_common::STACKS_MAX_ENTRIES as usize / 16;

/// A read stack: its user addresses, and the last drain that used it.
struct Held {
    ips: Vec<u64>,
    used: u64,
}

#[derive(Default)]
pub struct StackIds {
    held: HashMap<u32, Held>,
    /// Drains ended so far (the current drain's number).
    drain: u64,
    /// The drain at the last sweep, and when it was.
    swept_drain: u64,
    swept_ns: u64,
}

impl StackIds {
    /// The addresses of stack `id`: remembered, or `read` from the map (a
    /// failed read is not remembered: the next sample tries again).
    pub fn ips(
        &mut self,
        id: u32,
        read: impl FnOnce(u32) -> Result<Vec<u64>, String>,
    ) -> Result<Vec<u64>, String> {
        if let Some(h) = self.held.get_mut(&id) {
            h.used = self.drain;
            return Ok(h.ips.clone());
        }
        let ips = read(id)?;
        self.held.insert(
            id,
            Held {
                ips: ips.clone(),
                used: self.drain,
            },
        );
        Ok(ips)
    }

    /// Ends a drain at `now_ns` (any monotonic clock): deletes, with
    /// `remove`, the ids unused since the previous sweep once a sweep period
    /// passed, or every id when more than [`HELD_MAX`] are held.
    pub fn end_drain(&mut self, now_ns: u64, mut remove: impl FnMut(u32)) {
        let unused_before = if self.held.len() > HELD_MAX {
            u64::MAX
        } else if now_ns.saturating_sub(self.swept_ns) >= SWEEP_EVERY_NS {
            self.swept_drain
        } else {
            self.drain += 1;
            return;
        };
        self.held.retain(|&id, h| {
            let keep = h.used >= unused_before;
            if !keep {
                remove(id);
            }
            keep
        });
        self.swept_drain = self.drain;
        self.swept_ns = now_ns;
        self.drain += 1;
    }

    /// Ids held (read and not yet deleted).
    pub fn held(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = SWEEP_EVERY_NS;

    #[test]
    fn a_repeated_stack_is_read_once_and_kept_while_used() {
        let mut ids = StackIds::default();
        let mut reads = 0;
        let mut removed = Vec::new();
        for drain in 0..300u64 {
            let ips = ids.ips(7, |_| {
                reads += 1;
                Ok(vec![1, 2, 3])
            });
            assert_eq!(ips, Ok(vec![1, 2, 3]));
            // 10 ms drains over 3 s: three sweep periods pass.
            ids.end_drain(drain * S / 100, |id| removed.push(id));
        }
        assert_eq!(reads, 1);
        assert!(removed.is_empty(), "{removed:?}");
        assert_eq!(ids.held(), 1);
    }

    #[test]
    fn an_id_unused_for_a_whole_sweep_period_is_deleted() {
        let mut ids = StackIds::default();
        let mut removed = Vec::new();
        let drain = |ids: &mut StackIds, now: u64, used: &[u32], removed: &mut Vec<u32>| {
            for &id in used {
                ids.ips(id, |id| Ok(vec![id as u64])).unwrap();
            }
            ids.end_drain(now, |id| removed.push(id));
        };
        drain(&mut ids, 0, &[7, 8], &mut removed);
        drain(&mut ids, S / 2, &[8], &mut removed);
        // The first sweep: both were used since the start.
        drain(&mut ids, S, &[], &mut removed);
        assert!(removed.is_empty(), "{removed:?}");
        drain(&mut ids, 3 * S / 2, &[8], &mut removed);
        // The second sweep: 7 went unused since the first, 8 did not.
        drain(&mut ids, 2 * S, &[], &mut removed);
        assert_eq!(removed, vec![7]);
        drain(&mut ids, 3 * S, &[], &mut removed);
        assert_eq!(removed, vec![7, 8]);
        assert_eq!(ids.held(), 0);
        // A deleted id is read again (its bucket may hold another stack).
        assert_eq!(ids.ips(7, |_| Ok(vec![9])), Ok(vec![9]));
    }

    #[test]
    fn too_many_held_ids_are_all_deleted_at_the_end_of_the_drain() {
        let mut ids = StackIds::default();
        let mut removed = 0;
        for id in 0..=HELD_MAX as u32 {
            ids.ips(id, |id| Ok(vec![id as u64])).unwrap();
        }
        ids.end_drain(1, |_| removed += 1);
        assert_eq!(removed, HELD_MAX + 1);
        assert_eq!(ids.held(), 0);
    }

    #[test]
    fn a_failed_read_is_not_remembered() {
        let mut ids = StackIds::default();
        assert!(ids.ips(3, |_| Err("gone".into())).is_err());
        assert_eq!(ids.ips(3, |_| Ok(vec![4])), Ok(vec![4]));
        let mut removed = Vec::new();
        ids.end_drain(S, |id| removed.push(id));
        assert!(removed.is_empty(), "used in this drain: {removed:?}");
    }
}
