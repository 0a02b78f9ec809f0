//! Leaked sockets (issue 11, road 1): a socket whose peer closed sits in
//! CLOSE_WAIT, holding its local port, until its process calls close().
//! An application that never does holds the port for as long as it lives,
//! and portwatch's events (one per connection, at CLOSE) never see it: only
//! the socket table does.
//!
//! This room keeps, per namespace, the live outbound sockets of the last
//! socket table that the owner lookup asks about
//! ([`crate::input::SocketTable::owner_wanted`]), when each CLOSE_WAIT
//! socket was first seen, and the latest owners found
//! ([`crate::input::Input::SocketOwners`]); the snapshot groups them by
//! owning process into [`Holding`]s, from which the `leaks_sockets`
//! verdict and the "held by" of a destination are decided.

use std::net::IpAddr;

use crate::clock::NS_PER_S;
use crate::input::{SocketOwner, SocketOwners, SocketTable};

use super::hash::FxHashMap;

/// Most sockets kept over all namespaces (memory stays bounded; a table
/// beyond it is kept in part and `truncated` counts the rest).
const MAX_KEPT: usize = 262_144;

#[derive(Clone, Copy, Debug, PartialEq)]
struct LiveSock {
    inode: u32,
    close_wait: bool,
    daddr: IpAddr,
    dport: u16,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct NsSockets {
    socks: Vec<LiveSock>,
    /// CLOSE_WAIT inode → when it was first seen in a table.
    first_seen: FxHashMap<u32, u64>,
    /// Outbound CLOSE_WAIT sockets of the table, owned or not.
    close_wait: u64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Leaks {
    tables: FxHashMap<u32, NsSockets>,
    owners: FxHashMap<u32, SocketOwner>,
    /// Sockets of the latest lookup whose owner was not found.
    pub(crate) not_found: u64,
    /// /proc/PID/fd directories that could not be read, since start.
    pub(crate) failed_total: u64,
    /// Sockets not kept because of [`MAX_KEPT`].
    pub(crate) truncated: u64,
}

/// What one process holds in one namespace, at the last tables.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Holding {
    pub(crate) netns: u32,
    pub(crate) owner: SocketOwner,
    /// Live sockets (ports) it holds among those looked up.
    pub(crate) held: u64,
    pub(crate) close_wait: u64,
    /// CLOSE_WAIT sockets held for at least the verdict's minimum age.
    pub(crate) stuck: u64,
    /// CLOSE_WAIT sockets first seen at least the minimum age after its
    /// oldest one: it keeps adding to them.
    pub(crate) grew: u64,
    /// Seconds its oldest CLOSE_WAIT socket has been seen (a lower bound:
    /// it may predate portwatch).
    pub(crate) oldest_s: f64,
    /// (remote addr, remote port) → (held, close_wait), most held first.
    pub(crate) by_dest: Vec<super::verdict::HeldTo>,
}

impl Leaks {
    /// A namespace's socket table (`ns` already resolved to the engine's
    /// key): what it says replaces what the last one said.
    pub(crate) fn on_table(&mut self, ns: u32, t: &SocketTable) {
        let close_wait = t.outbound().filter(|e| e.state.is_close_wait()).count() as u64;
        let wanted = t.owner_wanted();
        if close_wait == 0 && wanted.is_empty() {
            self.tables.remove(&ns);
            return;
        }
        let kept_elsewhere: usize = self
            .tables
            .iter()
            .filter(|(k, _)| **k != ns)
            .map(|(_, v)| v.socks.len())
            .sum();
        let room = MAX_KEPT.saturating_sub(kept_elsewhere);
        let entry = self.tables.entry(ns).or_default();
        let old_seen = std::mem::take(&mut entry.first_seen);
        entry.socks.clear();
        entry.close_wait = close_wait;
        for e in wanted.iter().take(room) {
            let cw = e.state.is_close_wait();
            if cw {
                let first = old_seen.get(&e.inode).copied().unwrap_or(t.ts_ns);
                entry.first_seen.insert(e.inode, first);
            }
            entry.socks.push(LiveSock {
                inode: e.inode,
                close_wait: cw,
                daddr: e.daddr,
                dport: e.dport,
            });
        }
        self.truncated = wanted.len().saturating_sub(room) as u64;
    }

    /// An owner lookup: the latest says who holds what.
    pub(crate) fn on_owners(&mut self, o: &SocketOwners) {
        self.owners = o.owners.iter().map(|w| (w.inode, *w)).collect();
        self.not_found = o.not_found;
        self.failed_total += o.failed;
    }

    /// Outbound CLOSE_WAIT sockets in the latest tables, and of them those
    /// whose owner is not known.
    pub(crate) fn close_wait(&self) -> (u64, u64) {
        let total = self.tables.values().map(|n| n.close_wait).sum();
        let owned = self
            .tables
            .values()
            .flat_map(|n| &n.socks)
            .filter(|s| s.close_wait && self.owners.contains_key(&s.inode))
            .count() as u64;
        (total, total.saturating_sub(owned))
    }

    /// What each process holds, per namespace, at `now_ns`.
    pub(crate) fn holdings(&self, now_ns: u64, min_age_s: u64) -> Vec<Holding> {
        let min_age_ns = min_age_s * NS_PER_S;
        let mut out: FxHashMap<(u32, u32), (Holding, Vec<u64>)> = FxHashMap::default();
        for (&ns, t) in &self.tables {
            for s in &t.socks {
                let Some(owner) = self.owners.get(&s.inode) else {
                    continue;
                };
                let (h, seen) = out.entry((ns, owner.pid)).or_insert_with(|| {
                    (
                        Holding {
                            netns: ns,
                            owner: *owner,
                            held: 0,
                            close_wait: 0,
                            stuck: 0,
                            grew: 0,
                            oldest_s: 0.0,
                            by_dest: Vec::new(),
                        },
                        Vec::new(),
                    )
                });
                h.held += 1;
                let key = (s.daddr, s.dport);
                let slot = match h.by_dest.iter_mut().position(|(k, _)| *k == key) {
                    Some(i) => &mut h.by_dest[i].1,
                    None => {
                        h.by_dest.push((key, (0, 0)));
                        &mut h.by_dest.last_mut().expect("just pushed").1
                    }
                };
                slot.0 += 1;
                if s.close_wait {
                    slot.1 += 1;
                    h.close_wait += 1;
                    if let Some(&first) = t.first_seen.get(&s.inode) {
                        seen.push(first);
                    }
                }
            }
        }
        let mut v: Vec<Holding> = out
            .into_values()
            .map(|(mut h, seen)| {
                if let Some(&oldest) = seen.iter().min() {
                    h.oldest_s = now_ns.saturating_sub(oldest) as f64 / 1e9;
                    h.stuck = seen
                        .iter()
                        .filter(|&&f| now_ns.saturating_sub(f) >= min_age_ns)
                        .count() as u64;
                    h.grew = seen.iter().filter(|&&f| f >= oldest + min_age_ns).count() as u64;
                }
                h.by_dest
                    .sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                h
            })
            .collect();
        v.sort_by(|a, b| {
            b.close_wait
                .cmp(&a.close_wait)
                .then(a.netns.cmp(&b.netns))
                .then(a.owner.pid.cmp(&b.owner.pid))
        });
        v
    }
}
