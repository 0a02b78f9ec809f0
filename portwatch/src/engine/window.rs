//! Per-second counters over a sliding minute.
//!
//! A ring of 64 one-second slots indexed by absolute second (CLOCK_MONOTONIC
//! ns / 1e9). Its state depends only on the set of (second, count) pairs added,
//! not on their order: a slot is cleared only when the ring's own head moves
//! more than 63 s past it, and the head is the largest second ever added. That
//! order independence is what makes chunked and whole replays agree.

/// Number of slots; 64 (not 60) so windows of 60 complete seconds plus the
/// current partial one always fit, and the modulo is a mask.
const SLOTS: u64 = 64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecondRing {
    /// Largest second added so far (`None` while empty).
    head_s: Option<u64>,
    slots: [u32; SLOTS as usize],
}

impl Default for SecondRing {
    fn default() -> Self {
        SecondRing {
            head_s: None,
            slots: [0; SLOTS as usize],
        }
    }
}

impl SecondRing {
    pub fn add(&mut self, sec: u64, n: u32) {
        match self.head_s {
            None => self.head_s = Some(sec),
            Some(head) if sec > head => {
                // Clear the slots the head skips over (at most the whole ring).
                let skip = (sec - head).min(SLOTS);
                for s in (sec + 1 - skip)..=sec {
                    self.slots[(s % SLOTS) as usize] = 0;
                }
                self.head_s = Some(sec);
            }
            Some(head) if head - sec >= SLOTS => return, // too old to keep
            Some(_) => {}
        }
        let slot = &mut self.slots[(sec % SLOTS) as usize];
        *slot = slot.saturating_add(n);
    }

    /// Count in second `sec`, 0 if it is not (or no longer) in the ring.
    pub fn get(&self, sec: u64) -> u32 {
        match self.head_s {
            Some(head) if sec <= head && head - sec < SLOTS => self.slots[(sec % SLOTS) as usize],
            _ => 0,
        }
    }

    /// Sum over the seconds in `from_s..=to_s`.
    pub fn sum(&self, from_s: u64, to_s: u64) -> u64 {
        if from_s > to_s {
            return 0;
        }
        // Never walk more than the ring holds, however wide the range.
        let from_s = from_s.max(to_s.saturating_sub(SLOTS - 1));
        (from_s..=to_s).map(|s| u64::from(self.get(s))).sum()
    }

    /// Seconds in `from_s..=to_s` with a non-zero count.
    pub fn active(&self, from_s: u64, to_s: u64) -> u32 {
        if from_s > to_s {
            return 0;
        }
        let from_s = from_s.max(to_s.saturating_sub(SLOTS - 1));
        (from_s..=to_s).filter(|&s| self.get(s) > 0).count() as u32
    }

    pub fn is_empty(&self) -> bool {
        self.head_s.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_and_forgets_after_64_seconds() {
        let mut r = SecondRing::default();
        r.add(100, 3);
        r.add(101, 2);
        assert_eq!(r.sum(100, 101), 5);
        r.add(164, 1);
        assert_eq!(r.get(100), 0, "slot of second 100 was reused");
        assert_eq!(r.get(101), 2);
        r.add(50, 7); // too old: ignored
        assert_eq!(r.sum(101, 164), 3);
    }

    #[test]
    fn order_does_not_matter() {
        let adds = [(10u64, 1u32), (80, 2), (20, 4), (79, 1), (15, 9)];
        let mut a = SecondRing::default();
        let mut b = SecondRing::default();
        for &(s, n) in &adds {
            a.add(s, n);
        }
        for &(s, n) in adds.iter().rev() {
            b.add(s, n);
        }
        assert_eq!(a, b);
    }
}
