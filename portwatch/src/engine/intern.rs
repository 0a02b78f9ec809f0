//! Services as small indices, so the per-event tables hash and compare a
//! `u32` instead of a string.
//!
//! An index means nothing outside the engine: every output is built and
//! sorted by the [`ServiceId`] it stands for. Indices no table refers to
//! any more are freed on the ageing grid and reused, so the interner is
//! bounded by the tables, not by how many services ever came and went.

use super::hash::{FxHashMap, mixed_hash};
use super::service::ServiceId;

pub type ServiceIdx = u32;

#[derive(Debug, Default)]
pub struct Interner {
    /// By index; `None` when freed. The hash is of the name, for counting
    /// folded keys by name rather than by index.
    names: Vec<Option<(ServiceId, u64)>>,
    index: FxHashMap<ServiceId, ServiceIdx>,
    free: Vec<ServiceIdx>,
}

impl Interner {
    pub fn intern(&mut self, s: ServiceId) -> ServiceIdx {
        if let Some(&i) = self.index.get(&s) {
            return i;
        }
        let h = mixed_hash(&s);
        let i = match self.free.pop() {
            Some(i) => {
                self.names[i as usize] = Some((s.clone(), h));
                i
            }
            None => {
                self.names.push(Some((s.clone(), h)));
                (self.names.len() - 1) as ServiceIdx
            }
        };
        self.index.insert(s, i);
        i
    }

    /// The index of a name already interned.
    pub fn get(&self, s: &ServiceId) -> Option<ServiceIdx> {
        self.index.get(s).copied()
    }

    fn slot(&self, i: ServiceIdx) -> &(ServiceId, u64) {
        match self.names.get(i as usize) {
            Some(Some(s)) => s,
            // Tables only hold live indices (freeing checks them all).
            _ => unreachable!("service index {i} is not interned"),
        }
    }

    pub fn name(&self, i: ServiceIdx) -> &ServiceId {
        &self.slot(i).0
    }

    /// A well-mixed hash of the name (see [`mixed_hash`]).
    pub fn name_hash(&self, i: ServiceIdx) -> u64 {
        self.slot(i).1
    }

    /// Gives the service at `old`'s index the name `new` (its rows keep
    /// their counts). Nothing changes when `new` is already interned (its
    /// own rows go on; the two meet when the old ones age out) or `old` is
    /// not.
    pub fn rename(&mut self, old: &ServiceId, new: ServiceId) -> bool {
        if self.index.contains_key(&new) {
            return false;
        }
        let Some(i) = self.index.remove(old) else {
            return false;
        };
        let h = mixed_hash(&new);
        self.names[i as usize] = Some((new.clone(), h));
        self.index.insert(new, i);
        true
    }

    /// Frees every index for which `live` is false; returns whether any was.
    pub fn retain(&mut self, live: &[bool]) -> bool {
        let mut freed = false;
        for (i, slot) in self.names.iter_mut().enumerate() {
            if slot.is_some() && !live.get(i).copied().unwrap_or(false) {
                if let Some((s, _)) = slot.take() {
                    self.index.remove(&s);
                }
                self.free.push(i as ServiceIdx);
                freed = true;
            }
        }
        freed
    }

    /// Number of index slots (live or free).
    pub fn capacity(&self) -> usize {
        self.names.len()
    }
}
