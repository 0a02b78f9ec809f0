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
    #[inline]
    pub fn add(&mut self, sec: u64, n: u32) {
        // Most adds are to the newest second: straight to its slot.
        if self.head_s == Some(sec) {
            let slot = &mut self.slots[(sec % SLOTS) as usize];
            *slot = slot.saturating_add(n);
            return;
        }
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

    /// The ring as seen from second `to_s`: the 64 seconds up to it, with
    /// prefix sums, so every window a model asks for is read in one pass
    /// over the ring instead of one walk per window (a model reads ~8
    /// windows per key, for every key of every table).
    pub fn view(&self, to_s: u64) -> RingView {
        let base_s = to_s.saturating_sub(SLOTS - 1);
        let mut counts = [0u32; SLOTS as usize];
        if let Some(head) = self.head_s {
            // The seconds of the view the ring still holds (see `get`).
            // Plain loops: debug builds (the tests') pay per iterator call.
            let mut s = base_s.max(head.saturating_sub(SLOTS - 1));
            let last = to_s.min(head);
            while s <= last {
                counts[(s - base_s) as usize] = self.slots[(s % SLOTS) as usize];
                s += 1;
            }
        }
        let mut prefix = [0u64; SLOTS as usize + 1];
        let mut nonzero = [0u32; SLOTS as usize + 1];
        let mut k = 0;
        while k < SLOTS as usize {
            prefix[k + 1] = prefix[k] + u64::from(counts[k]);
            nonzero[k + 1] = nonzero[k] + u32::from(counts[k] > 0);
            k += 1;
        }
        RingView {
            base_s,
            to_s,
            counts,
            prefix,
            nonzero,
        }
    }
}

/// [`SecondRing::view`]: the same answers as the ring's `sum`, `active` and
/// `get` for seconds up to `to_s` and no more than 63 before it.
pub struct RingView {
    base_s: u64,
    to_s: u64,
    /// `counts[k]`: the count of second `base_s + k`.
    counts: [u32; SLOTS as usize],
    /// `prefix[k]`: sum of the seconds `base_s..base_s + k`.
    prefix: [u64; SLOTS as usize + 1],
    /// `nonzero[k]`: seconds in `base_s..base_s + k` with a count.
    nonzero: [u32; SLOTS as usize + 1],
}

impl RingView {
    /// Prefix indices of `from_s..=to_s`, clamped to the view (a second
    /// outside it counts 0, as it does in the ring seen from `to_s`).
    fn span(&self, from_s: u64, to_s: u64) -> Option<(usize, usize)> {
        let to_s = to_s.min(self.to_s);
        let from_s = from_s.max(self.base_s);
        (from_s <= to_s).then(|| {
            (
                (from_s - self.base_s) as usize,
                (to_s - self.base_s) as usize + 1,
            )
        })
    }

    pub fn sum(&self, from_s: u64, to_s: u64) -> u64 {
        self.span(from_s, to_s)
            .map_or(0, |(a, b)| self.prefix[b] - self.prefix[a])
    }

    pub fn active(&self, from_s: u64, to_s: u64) -> u32 {
        self.span(from_s, to_s)
            .map_or(0, |(a, b)| self.nonzero[b] - self.nonzero[a])
    }

    pub fn get(&self, s: u64) -> u32 {
        self.span(s, s).map_or(0, |(a, _)| self.counts[a])
    }

    /// Counts of the seconds `from_s..to_s` (exclusive), one per second.
    pub fn series(&self, from_s: u64, to_s: u64) -> Vec<u32> {
        let mut v = vec![0; to_s.saturating_sub(from_s) as usize];
        if from_s >= to_s {
            return v;
        }
        if let Some((a, b)) = self.span(from_s, to_s - 1) {
            // Seconds before the view count 0: they lead the series.
            let skip = (self.base_s.max(from_s) - from_s) as usize;
            v[skip..skip + (b - a)].copy_from_slice(&self.counts[a..b]);
        }
        v
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
    fn a_view_answers_like_the_ring() {
        let mut r = SecondRing::default();
        for (s, n) in [(3u64, 2u32), (40, 1), (90, 5), (91, 0), (120, 7), (150, 3)] {
            r.add(s, n);
        }
        for to in [0u64, 3, 60, 100, 150, 151, 200, 300] {
            let v = r.view(to);
            for from in to.saturating_sub(70)..=to {
                for end in from..=to {
                    // Within the 64 seconds the view keeps.
                    if to - from < SLOTS {
                        assert_eq!(v.sum(from, end), r.sum(from, end), "{to} {from} {end}");
                        assert_eq!(v.active(from, end), r.active(from, end));
                    }
                }
                assert_eq!(v.get(from), if to - from < SLOTS { r.get(from) } else { 0 });
                if to - from < SLOTS {
                    let want: Vec<u32> = (from..to).map(|s| r.get(s)).collect();
                    assert_eq!(v.series(from, to), want, "{from}..{to}");
                }
            }
        }
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
