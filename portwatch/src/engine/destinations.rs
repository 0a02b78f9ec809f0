//! Destinations: held ports from the socket table corrected by events
//! since, the port budget, pressure and the exhaustion forecast.

use std::net::IpAddr;

use crate::clock::NS_PER_S;
use crate::input::{SockState, SocketTable};

use super::acc::{Acc, Now, tw_from_closes};
use super::hash::{FxHashMap, FxHashSet};
use super::model::{Closer, DestinationRow, Forecast, PRESSURE_ALERT, RATE_WINDOW_S};
use super::table::Activity;
use super::window::SecondRing;
use super::{Engine, TIME_WAIT_S};

/// What the last socket table said about one destination, and what
/// events have changed since.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct DestTable {
    /// Time of the last table: what `open`, `close_wait` and
    /// `closed_open` count from.
    pub(super) ts_ns: u64,
    /// Time of the last table that had TIME_WAIT sockets (a full one):
    /// what `tw_expiry` and `local_since` count from. Older than `ts_ns`
    /// after a table read without them.
    pub(super) tw_ts_ns: u64,
    /// Live sockets holding a port at `ts_ns`: ESTABLISHED, SYN_SENT,
    /// FIN_WAIT1/2, CLOSE_WAIT, LAST_ACK, CLOSING.
    pub(super) open: u64,
    /// Of those, in CLOSE_WAIT (the peer closed, the owner has not).
    pub(super) close_wait: u64,
    /// Of those, closed since (connections that started before the table
    /// and closed after it).
    pub(super) closed_open: u64,
    /// TIME_WAIT sockets of the last full table by the second they expire.
    pub(super) tw_expiry: SecondRing,
    /// Local closes after the last full table (`tw_ts_ns`), by second.
    pub(super) local_since: SecondRing,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct DestAcc {
    pub(super) acc: Acc,
    pub(super) table: Option<DestTable>,
    /// Second of the last EADDRNOTAVAIL connecting to it (pins it in top).
    pub(super) last_eaddrnotavail_s: Option<u64>,
    /// Local closes of connections whose port was bound before connect(),
    /// by second: the part of its TIME_WAIT that other destinations of the
    /// namespace are charged for too.
    pub(super) bound_local: SecondRing,
}

impl Activity for DestAcc {
    fn last_ns(&self) -> u64 {
        let t = self.table.as_ref().map_or(0, |t| {
            // Held ports keep a destination alive even without events.
            if t.open > t.closed_open || !t.tw_expiry.is_empty() {
                t.ts_ns
            } else {
                0
            }
        });
        self.acc.last_ns.max(t)
    }
}

impl DestTable {
    /// What a table read at `ts_ns` says of a destination it does not
    /// mention: nothing held.
    fn at(ts_ns: u64) -> DestTable {
        DestTable {
            ts_ns,
            tw_ts_ns: ts_ns,
            ..DestTable::default()
        }
    }
}

/// `new`, a destination's table from a table read without TIME_WAIT, keeps
/// the TIME_WAIT of `old` (from the last full table and the local closes
/// since); what `new` counts from its own entries is the open sockets.
fn keep_time_wait(new: &mut DestTable, old: Option<DestTable>) {
    if let Some(old) = old {
        new.tw_ts_ns = old.tw_ts_ns;
        new.local_since = old.local_since;
        // Expiries all past are dropped, as a full table would have: an
        // empty ring lets an idle destination age out.
        let s = new.ts_ns / NS_PER_S;
        if old.tw_expiry.sum(s + 1, s + TIME_WAIT_S + 1) > 0 {
            new.tw_expiry = old.tw_expiry;
        }
    }
}

impl Engine {
    /// A destination first seen after a socket table held nothing at the
    /// table's time: it starts from that (empty) truth, not from "unknown".
    pub(super) fn seed_table(d: &mut DestAcc, last_table_ns: Option<u64>) {
        if d.table.is_none()
            && let Some(ts_ns) = last_table_ns
        {
            d.table = Some(DestTable::at(ts_ns));
        }
    }

    /// Replaces what each destination's held ports are counted from.
    /// A table corrects the destinations of its own namespace only.
    /// A table read without TIME_WAIT (`without_time_wait`) replaces only
    /// the open sockets: each destination keeps the TIME_WAIT it had.
    pub(super) fn on_sockets(&mut self, t: &SocketTable) {
        let ns = self.ns_key(t.netns);
        let partial = t.without_time_wait;
        if ns == self.host_netns() {
            self.last_table_ns = Some(t.ts_ns);
        } else {
            let n = self.namespaces.table.entry(ns);
            n.last_table_ns = Some(t.ts_ns);
            n.last_ns = n.last_ns.max(t.ts_ns);
        }
        self.leaks.on_table(ns, t);
        // Only as many destinations as the table can keep: a namespace with
        // 100,000 TIME_WAIT sockets to as many peers must not cost a
        // DestTable each (memory stays bounded; the rest are folded).
        let room = self
            .config
            .max_keys
            .saturating_sub(self.destinations.map.len());
        let mut fresh: FxHashMap<super::DestKey, DestTable> = FxHashMap::default();
        let mut added = 0;
        let host_table = ns == self.host_netns();
        // Another namespace's table may add a row for a local address
        // when its events already made a row to that destination (e.g.
        // only failed connects, which have no local address, were seen):
        // that is how a leaking client's held ports show beside its
        // EADDRNOTAVAILs.
        let known: FxHashSet<(IpAddr, u16)> = if host_table {
            FxHashSet::default()
        } else {
            self.destinations
                .map
                .keys()
                .filter(|k| k.0 == ns)
                .map(|k| (k.2, k.3))
                .collect()
        };
        let mut laddrs = Vec::new();
        // Sockets whose local port a listener owns were accepted here:
        // inbound, not ports this host spent connecting out.
        for e in t.outbound() {
            let key = (ns, e.saddr, e.daddr, e.dport);
            let d = match fresh.get_mut(&key) {
                Some(d) => d,
                None => {
                    if !self.destinations.map.contains_key(&key) {
                        // Another namespace's table corrects the rows its
                        // events made; it adds none (a node's pods hold
                        // far more sockets than anyone reads).
                        if added >= room || !(host_table || known.contains(&(e.daddr, e.dport))) {
                            continue;
                        }
                        added += 1;
                        laddrs.push((e.saddr, e.daddr, e.dport));
                    }
                    fresh.entry(key).or_insert_with(|| DestTable::at(t.ts_ns))
                }
            };
            match e.state {
                SockState::TimeWait => {
                    let expiry_ns = t.ts_ns + u64::from(e.expires_ms) * 1_000_000;
                    d.tw_expiry.add(expiry_ns / NS_PER_S, 1);
                }
                s if s.holds_port_open() => {
                    d.open += 1;
                    if s.is_close_wait() {
                        d.close_wait += 1;
                    }
                }
                _ => {}
            }
        }
        // Destinations of this namespace that the table does not mention
        // hold nothing at its time; other namespaces' are out of its sight.
        // A table without TIME_WAIT says nothing of it: they keep theirs.
        for (key, d) in self.destinations.map.iter_mut().filter(|(k, _)| k.0 == ns) {
            let mut new = fresh.remove(key).unwrap_or_else(|| DestTable::at(t.ts_ns));
            if partial {
                keep_time_wait(&mut new, d.table.take());
            }
            d.table = Some(new);
        }
        // The rest are new rows (or folded into "others").
        for (key, table) in fresh {
            let d = self.destinations.entry(key);
            let mut new = table;
            if partial {
                keep_time_wait(&mut new, d.table.take());
            }
            d.table = Some(new);
        }
        // Closes applied before this table arrived but after it began to
        // be read: the table may or may not include them, depending on
        // whether the dump reached the socket before or after it closed.
        // Its own entry says which (by the socket's four-tuple): already
        // in TIME_WAIT (counted, nothing to add), still open (counted as
        // open: closed since), or absent (neither). A destination whose
        // TIME_WAIT was kept from before this table (one read without it)
        // has its late local closes in `local_since` already.
        let late: Vec<_> = self
            .recent_closes
            .iter()
            .filter(|c| c.2.0 == ns && c.0 > t.ts_ns)
            .copied()
            .collect();
        let mut seen: FxHashMap<(IpAddr, u16, IpAddr, u16), bool> = FxHashMap::default();
        if !late.is_empty() {
            let wanted: FxHashSet<(IpAddr, u16, IpAddr, u16)> = late
                .iter()
                .map(|&(_, _, (_, saddr, daddr, dport), sport, _)| (saddr, sport, daddr, dport))
                .collect();
            for e in t.outbound() {
                let k = (e.saddr, e.sport, e.daddr, e.dport);
                if wanted.contains(&k) {
                    seen.insert(k, e.state == SockState::TimeWait);
                }
            }
        }
        for (end_ns, _, key, sport, local) in late {
            let Some(tb) = self
                .destinations
                .map
                .get_mut(&key)
                .and_then(|d| d.table.as_mut())
            else {
                continue;
            };
            let tw_fresh = tb.tw_ts_ns == t.ts_ns;
            match seen.get(&(key.1, sport, key.2, key.3)) {
                Some(true) => {}
                Some(false) => {
                    tb.closed_open += 1;
                    if local && tw_fresh {
                        tb.local_since.add(end_ns / NS_PER_S, 1);
                    }
                }
                None => {
                    if local && tw_fresh {
                        tb.local_since.add(end_ns / NS_PER_S, 1);
                    }
                }
            }
        }
        for (laddr, daddr, dport) in laddrs {
            self.note_laddr(ns, laddr, daddr, dport);
        }
    }
}

/// Ports a connect() can pick from for one (local addr, remote addr, remote
/// port): the ephemeral range minus reserved ports inside it.
pub fn port_budget(s: &crate::input::Sysctls) -> u64 {
    let (lo, hi) = s.port_range;
    if hi < lo {
        return 0;
    }
    let size = u64::from(hi - lo) + 1;
    // The union of the reserved ranges inside the range, without a bitmap:
    // this runs for every destination row of every model.
    let mut r: Vec<(u16, u16)> = s
        .reserved_ports
        .iter()
        .map(|&(a, b)| (a.max(lo), b.min(hi)))
        .filter(|(a, b)| a <= b)
        .collect();
    r.sort_unstable();
    let mut reserved = 0u64;
    let mut covered_to: Option<u16> = None;
    for (a, b) in r {
        let from = match covered_to {
            Some(c) if c >= b => continue,
            Some(c) if c >= a => c + 1,
            _ => a,
        };
        reserved += u64::from(b - from) + 1;
        covered_to = Some(b);
    }
    size - reserved
}

/// When `tcp_tw_reuse` lets connect() take over a TIME_WAIT port to
/// `daddr` in a namespace with these sysctls: the reuse delay in ms, else
/// `None`. It needs TCP timestamps on both ends: on loopback both ends are
/// this namespace (tw_reuse 1 or 2); to another host (tw_reuse 1) the
/// peer's are unknown, so it counts only while `recycling` (TWRecycled
/// rising in the namespace) shows it working.
pub(super) fn tw_reuse_delay_ms(
    s: Option<&crate::input::Sysctls>,
    daddr: IpAddr,
    recycling: bool,
) -> Option<u64> {
    let s = s?;
    if s.tcp_timestamps == Some(0) {
        return None;
    }
    let applies = match s.tcp_tw_reuse {
        Some(1) => daddr.is_loopback() || recycling,
        Some(2) => daddr.is_loopback(),
        _ => false,
    };
    // The kernel's default delay (tcp_tw_reuse_delay, Linux 6.6+) is 1 s,
    // and the older kernels' fixed one.
    applies.then(|| s.tcp_tw_reuse_delay_ms.unwrap_or(1000).max(1) as u64)
}

/// `bound_in_ns`: TIME_WAIT of bound-port connections in the namespace,
/// all destinations together (this one's included).
#[expect(
    clippy::too_many_arguments,
    reason = "one row from one accumulator and the namespace's facts, each a plain value"
)]
pub(super) fn destination_row(
    daddr: IpAddr,
    dport: u16,
    d: &DestAcc,
    now: &Now,
    budget: Option<u64>,
    bound_in_ns: u64,
    reuse_delay_ms: Option<u64>,
    max_tw_buckets: Option<u64>,
) -> DestinationRow {
    let mut stats = d.acc.stats(now);
    let (open, from_table) = match &d.table {
        Some(t) => {
            // Table TIME_WAIT still pending, plus local closes since.
            let (since, exp) = tw_from_closes(&t.local_since, now.sec);
            let pending = |x: u64| t.tw_expiry.sum(now.sec + 1, now.sec + x);
            stats.time_wait = pending(TIME_WAIT_S) + since;
            stats.tw_expiring_10s = pending(10) + exp[0];
            stats.tw_expiring_30s = pending(30) + exp[1];
            stats.tw_expiring_60s = pending(60) + exp[2];
            (t.open.saturating_sub(t.closed_open), true)
        }
        None => (0, false),
    };
    let close_wait = d.table.as_ref().map_or(0, |t| t.close_wait);
    let bound_here = tw_from_closes(&d.bound_local, now.sec).0;
    let bound_elsewhere = bound_in_ns.saturating_sub(bound_here);
    let budget = budget.unwrap_or(0);
    // A destination cannot hold more TIME_WAIT than its ports: counts from
    // closes overshoot when tcp_tw_reuse recycles ports or
    // tcp_max_tw_buckets drops TIME_WAIT sockets early.
    // tcp_max_tw_buckets bounds the namespace's TIME_WAIT sockets (past
    // it the kernel closes without one and counts TCPTimeWaitOverflow).
    let room = match (budget > 0, max_tw_buckets) {
        (true, m) => Some(budget.saturating_sub(open).min(m.unwrap_or(u64::MAX))),
        (false, m) => m,
    };
    if let Some(room) = room {
        stats.time_wait = stats.time_wait.min(room);
        stats.tw_expiring_10s = stats.tw_expiring_10s.min(stats.time_wait);
        stats.tw_expiring_30s = stats.tw_expiring_30s.min(stats.time_wait);
        stats.tw_expiring_60s = stats.tw_expiring_60s.min(stats.time_wait);
    }
    // Bound ports of other destinations: never more than the range's rest.
    let bound_elsewhere = if budget > 0 {
        bound_elsewhere.min(budget.saturating_sub(open + stats.time_wait))
    } else {
        bound_elsewhere
    };
    let held = open + stats.time_wait + bound_elsewhere;
    // TIME_WAIT ports a connect can take over (tcp_tw_reuse): those older
    // than the reuse delay. They are held, but they do not run the
    // destination out of ports.
    let reuse_s = reuse_delay_ms.map(|ms| ms.div_ceil(1000));
    let reusable = reuse_s.map_or(0, |s| {
        let young = d.acc.local_close.sum(now.sec.saturating_sub(s), now.sec);
        stats.time_wait.saturating_sub(young)
    });
    let blocking = held - reusable;
    let pressure = if budget > 0 {
        blocking as f64 / budget as f64
    } else {
        0.0
    };
    let r = stats.local_close_per_s_10s;
    let tw_hold_s = reuse_s.unwrap_or(TIME_WAIT_S);
    let steady = r * tw_hold_s as f64;
    let exceeds = budget > 0 && steady + (open + bound_elsewhere) as f64 > budget as f64;
    // Held ports grow at r and shrink as current TIME_WAIT expires (spread
    // over the next minute); when that net growth is positive the free
    // ports last (budget - held) / growth seconds. Rough by design.
    let exhaustion_in_s = exceeds.then(|| {
        let growth = r - stats.tw_expiring_60s as f64 / TIME_WAIT_S as f64;
        let free = budget.saturating_sub(blocking) as f64;
        if free == 0.0 {
            0.0
        } else if growth > 0.0 {
            free / growth
        } else {
            // Expiring TIME_WAIT keeps up for now; it runs out once it is
            // all replaced by new TIME_WAIT, within about a minute.
            TIME_WAIT_S as f64
        }
    });
    let closer = match stats.closed_locally_share {
        None => Closer::Unknown,
        Some(s) if s >= 0.9 => Closer::Local,
        Some(s) if s <= 0.1 => Closer::Peer,
        Some(_) => Closer::Mixed,
    };
    let eaddrnotavail_recently = d
        .last_eaddrnotavail_s
        .is_some_and(|s| s + RATE_WINDOW_S >= now.sec);
    let unanswered_recently = d
        .acc
        .last_unanswered_ns
        .is_some_and(|t| t / NS_PER_S + RATE_WINDOW_S >= now.sec);
    DestinationRow {
        netns: None,
        netns_name: None,
        laddr: None,
        // Set by the snapshot, which knows the namespaces' networks.
        beyond_local_networks: None,
        nat_port_demand: None,
        unanswered_recently,
        pinned: pressure >= PRESSURE_ALERT || eaddrnotavail_recently,
        eaddrnotavail_recently,
        daddr,
        dport,
        stats,
        closer,
        held_ports: held,
        open_ports: open,
        time_wait_reusable: reusable,
        close_wait,
        held_by: None,
        from_socket_table: from_table,
        bound_elsewhere,
        budget,
        pressure,
        forecast: Forecast {
            steady_time_wait: steady,
            exceeds_budget: exceeds,
            exhaustion_in_s,
        },
    }
}
