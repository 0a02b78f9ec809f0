//! Intake: each event into the accumulators it lands in (process,
//! service, pair, destination, or inbound listener, and the system's), and
//! time moving on (idle keys aged out on a fixed grid).

use crate::clock::NS_PER_S;
use crate::event::{
    BindError, ConnClose, ConnectError, Direction, EADDRNOTAVAIL, canonical_addr, is_canonical,
};

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::acc::CloseFacts;
use super::intern::ServiceIdx;
use super::{Engine, FAILURE_MINUTES, MAX_LADDRS};

/// Idle keys are checked every this many seconds of input time. A fixed grid
/// (not "every tick") so the result does not depend on how often ticks come.
const GC_EVERY_S: u64 = 10;
/// Outbound closes remembered for late socket tables: a namespace's table
/// is read on the worker thread and arrives a resync or so after it was
/// read, never later than this.
pub(super) const RECENT_CLOSES_S: u64 = 30;
const MAX_RECENT_CLOSES: usize = 65_536;

impl Engine {
    pub(super) fn advance(&mut self, ts_ns: u64) {
        self.start_ns.get_or_insert(ts_ns);
        self.now_ns = self.now_ns.max(ts_ns);
        // A compare per event; the divisions only when an epoch may have
        // passed.
        if self.now_ns < (self.gc_epoch + 1) * GC_EVERY_S * NS_PER_S {
            return;
        }
        let epoch = self.now_ns / NS_PER_S / GC_EVERY_S;
        if epoch > self.gc_epoch {
            self.gc_epoch = epoch;
            let cutoff = (epoch * GC_EVERY_S).saturating_sub(self.config.idle_timeout_s) * NS_PER_S;
            self.aged_out += self.processes.age_out(cutoff)
                + self.services.age_out(cutoff)
                + self.destinations.age_out(cutoff)
                + self.pairs.age_out(cutoff)
                + self.inbound.age_out(cutoff)
                + self.bound.age_out(cutoff);
            // Namespaces go with their last activity (events or readings);
            // they are not rows, so not counted as aged-out keys.
            self.namespaces.table.age_out(cutoff);
            self.call_sites.age_out(cutoff);
            self.free_unused_services();
        }
    }

    /// A sampled connect()'s stack, counted for its service → destination.
    pub(super) fn on_call_stack(&mut self, c: &crate::input::CallStack) {
        let svc = self.service_idx(Some(&c.task));
        let key = (
            self.names.name(svc).clone(),
            self.ns_key(c.netns),
            canonical_addr(c.daddr),
            c.dport,
        );
        self.call_sites
            .add(key, &c.frames, c.note.as_deref(), c.ts_ns);
    }

    pub(super) fn on_close(&mut self, c: &ConnClose) {
        // Copied only when an address needs rewriting: IPv4 events (most)
        // are used as they are.
        let rewritten;
        let c = if is_canonical(c.saddr) && is_canonical(c.daddr) {
            c
        } else {
            rewritten = ConnClose {
                saddr: canonical_addr(c.saddr),
                daddr: canonical_addr(c.daddr),
                ..*c
            };
            &rewritten
        };
        let ns = self.ns_key(c.netns);
        let f = &CloseFacts::new(c);
        if c.direction == Direction::Inbound {
            self.inbound_total += 1;
            self.inbound.entry((c.saddr, c.sport)).record_close(f);
            return;
        }
        self.sys.record_close(f);
        if let Some(errno) = c.failure_errno() {
            self.count_failure(c.end_ns, errno);
        }
        let svc = self.service_idx(c.task.as_ref());
        if let Some(t) = &c.task {
            let p = self.processes.entry((t.pid, t.comm));
            p.0.record_close(f);
            p.1 = Some(svc);
        }
        self.service_entry(svc).record_close(f);
        self.pair_entry(svc, ns, c.daddr, c.dport).record_close(f);
        let last_table = self.note_netns(ns, c.end_ns, svc);
        self.note_laddr(ns, c.saddr, c.daddr, c.dport);
        if c.bound_port
            && let Some(t) = &c.task
        {
            let b = self.bound.entry((ns, t.pid, t.comm));
            b.service = Some(svc);
            b.record_close(c);
        }
        let key = (ns, c.saddr, c.daddr, c.dport);
        self.note_recent_close(c.end_ns, c.start_ns, key, c.sport, c.local_close);
        let d = self.destinations.entry(key);
        Self::seed_table(d, last_table);
        d.acc.record_close(f);
        if c.bound_port && c.local_close {
            d.bound_local.add(c.end_ns / NS_PER_S, 1);
        }
        if let Some(t) = &mut d.table {
            // Open at the table's time (started before it, closed after it).
            if c.start_ns <= t.ts_ns && c.end_ns > t.ts_ns {
                t.closed_open += 1;
            }
            // Not yet in the last full table: a new TIME_WAIT socket.
            if c.local_close && c.end_ns > t.tw_ts_ns {
                t.local_since.add(c.end_ns / NS_PER_S, 1);
            }
        }
    }

    pub(super) fn on_connect_error(&mut self, e: &ConnectError) {
        let e = &ConnectError {
            daddr: canonical_addr(e.daddr),
            ..*e
        };
        let ns = self.ns_key(e.netns);
        self.sys.record_error(e);
        self.count_failure(e.ts_ns, e.errno);
        let svc = self.service_idx(e.task.as_ref());
        if let Some(t) = &e.task {
            let p = self.processes.entry((t.pid, t.comm));
            p.0.record_error(e);
            p.1 = Some(svc);
        }
        self.service_entry(svc).record_error(e);
        self.pair_entry(svc, ns, e.daddr, e.dport).record_error(e);
        let last_table = self.note_netns(ns, e.ts_ns, svc);
        // A failed connect has no local address: it counts against the
        // budget its namespace's connections to there were using.
        let laddr = match self.last_laddr.get(&(ns, e.daddr, e.dport)) {
            Some(a) => *a,
            None if e.daddr.is_ipv4() => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            None => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        let d = self.destinations.entry((ns, laddr, e.daddr, e.dport));
        Self::seed_table(d, last_table);
        d.acc.record_error(e);
        if e.errno == EADDRNOTAVAIL {
            d.last_eaddrnotavail_s = Some(e.ts_ns / NS_PER_S);
        }
    }

    /// A failed bind(): counted per process with the ports it binds, not
    /// as a connect failure (no connect() was made).
    pub(super) fn on_bind_error(&mut self, b: &BindError) {
        self.bind_errors_total += 1;
        let ns = self.ns_key(b.netns);
        let Some(t) = &b.task else {
            return;
        };
        let svc = self.service_idx(Some(t));
        let _ = self.note_netns(ns, b.ts_ns, svc);
        let e = self.bound.entry((ns, t.pid, t.comm));
        e.service = Some(svc);
        e.record_bind_error(b);
    }

    /// Keeps the last [`RECENT_CLOSES_S`] seconds of outbound closes (at
    /// most [`MAX_RECENT_CLOSES`]).
    #[inline]
    fn note_recent_close(
        &mut self,
        end_ns: u64,
        start_ns: u64,
        key: super::DestKey,
        sport: u16,
        local: bool,
    ) {
        let r = &mut self.recent_closes;
        while r.len() >= MAX_RECENT_CLOSES
            || r.front()
                .is_some_and(|f| f.0 + RECENT_CLOSES_S * NS_PER_S < end_ns)
        {
            r.pop_front();
        }
        r.push_back((end_ns, start_ns, key, sport, local));
    }

    #[inline]
    pub(super) fn note_laddr(&mut self, ns: u32, laddr: IpAddr, daddr: IpAddr, dport: u16) {
        let key = (ns, daddr, dport);
        // Closes come in runs to one destination from one address: the
        // last one noted is checked before the map is hashed.
        if self.laddr_noted == Some((key, laddr)) {
            return;
        }
        self.laddr_noted = Some((key, laddr));
        if self.last_laddr.get(&key) == Some(&laddr) {
            return;
        }
        if self.last_laddr.len() >= MAX_LADDRS {
            self.last_laddr.clear();
        }
        self.last_laddr.insert(key, laddr);
    }

    /// portwatch's own namespace (0 when unknown).
    pub(super) fn host_netns(&self) -> u32 {
        self.host.as_ref().map_or(0, |h| h.netns)
    }

    /// The namespace an input belongs to: unknown (no BTF) is the host's.
    #[inline]
    pub(super) fn ns_key(&self, netns: u32) -> u32 {
        if netns == 0 { self.host_netns() } else { netns }
    }

    /// Notes a task of service `svc` seen in namespace `ns`; returns when
    /// that namespace's socket table was last read (see
    /// [`Self::last_table_of`]), from the same lookup.
    #[inline]
    fn note_netns(&mut self, ns: u32, ts_ns: u64, svc: ServiceIdx) -> Option<u64> {
        if ns != 0 && ns != self.host_netns() {
            self.namespaces.note(ns, ts_ns, self.names.name(svc))
        } else {
            self.last_table_of(ns)
        }
    }

    /// When the socket table of namespace `ns` was last read.
    pub(super) fn last_table_of(&self, ns: u32) -> Option<u64> {
        if ns == self.host_netns() {
            self.last_table_ns
        } else {
            self.namespaces.get(ns).and_then(|n| n.last_table_ns)
        }
    }

    /// A failed connect or handshake: by second (the rates), and by the
    /// wall-clock minute it happened in (the report's timeline; only the
    /// last few minutes are kept).
    fn count_failure(&mut self, ts_ns: u64, errno: i32) {
        self.sys_errors.add(ts_ns / NS_PER_S, 1);
        self.sys_errors_by_errno
            .entry(errno)
            .or_default()
            .add(ts_ns / NS_PER_S, 1);
        let unix_ns = self
            .host
            .as_ref()
            .map_or(ts_ns as i64, |h| h.clock.unix_ns(ts_ns));
        let minute = unix_ns.div_euclid(60 * NS_PER_S as i64);
        *self
            .failure_minutes
            .entry(minute)
            .or_default()
            .entry(errno)
            .or_default() += 1;
        while self.failure_minutes.len() > FAILURE_MINUTES {
            self.failure_minutes.pop_first();
        }
    }
}
