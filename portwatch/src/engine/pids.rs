//! The most recent pids of a service or pair.

/// At most this many pids remembered per service or pair.
pub(super) const MAX_PIDS: usize = 16;

/// The last [`MAX_PIDS`] distinct pids, most recent first. Kept as an LRU
/// set (each slot stamped with when its pid was last noted) rather than an
/// ordered list: with short-lived processes every event brings a new pid to
/// four accumulators, and shifting the list was a third of the engine's
/// instructions. The order is rebuilt only for the model. 100 bytes, about
/// what the Vec took with its heap block.
#[derive(Clone, Debug, Default)]
pub(super) struct RecentPids {
    pids: [u32; MAX_PIDS],
    /// `noted` at the last note of each slot's pid. 16 bits: when `noted`
    /// runs out the stamps are renumbered 1..=len in the same order.
    stamp: [u16; MAX_PIDS],
    noted: u16,
    len: u8,
    /// Slot of the most recent pid.
    last: u8,
}

impl RecentPids {
    #[inline]
    pub(super) fn note(&mut self, pid: u32) {
        let len = usize::from(self.len);
        if len > 0 && self.pids[usize::from(self.last)] == pid {
            return;
        }
        let slot = match self.pids[..len].iter().position(|&p| p == pid) {
            Some(i) => i,
            None if len < MAX_PIDS => {
                self.len += 1;
                len
            }
            // Full: the least recently noted pid drops out. Selects, not
            // branches: which slot is oldest is unpredictable.
            None => {
                let (mut oldest, mut min) = (0, self.stamp[0]);
                for (i, &t) in self.stamp.iter().enumerate().skip(1) {
                    let older = t < min;
                    oldest = if older { i } else { oldest };
                    min = if older { t } else { min };
                }
                oldest
            }
        };
        if self.noted == u16::MAX {
            self.renumber();
        }
        self.noted += 1;
        self.pids[slot] = pid;
        self.stamp[slot] = self.noted;
        self.last = slot as u8;
    }

    /// Slots from most to least recent.
    pub(super) fn order(&self) -> Vec<usize> {
        let mut slots: Vec<usize> = (0..usize::from(self.len)).collect();
        slots.sort_unstable_by_key(|&i| std::cmp::Reverse(self.stamp[i]));
        slots
    }

    pub(super) fn renumber(&mut self) {
        let order = self.order();
        for (rank, &slot) in order.iter().rev().enumerate() {
            self.stamp[slot] = rank as u16 + 1;
        }
        self.noted = self.len.into();
    }

    pub(super) fn to_vec(&self) -> Vec<u32> {
        self.order().into_iter().map(|i| self.pids[i]).collect()
    }
}

/// Equal when they list the same pids in the same order, wherever the
/// slots are.
impl PartialEq for RecentPids {
    fn eq(&self, other: &Self) -> bool {
        self.to_vec() == other.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference: what `RecentPids` replaced.
    fn note_vec(v: &mut Vec<u32>, pid: u32) {
        v.retain(|&p| p != pid);
        v.insert(0, pid);
        v.truncate(MAX_PIDS);
    }

    #[test]
    fn recent_pids_keep_the_last_distinct_ones_most_recent_first() {
        let mut r = RecentPids::default();
        let mut v = Vec::new();
        // Repeats, returns of old pids, and more distinct pids than fit.
        let mut x = 7u32;
        // Past 65535 notes, so the stamps are renumbered a few times.
        for _ in 0..300_000 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let pid = (x >> 16) % 40;
            r.note(pid);
            note_vec(&mut v, pid);
            assert_eq!(r.to_vec(), v);
        }
    }
}
