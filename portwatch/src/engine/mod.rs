//! The churn engine: a pure function of the [`Input`] stream.
//!
//! Inputs in ([`Engine::apply`]), a [`Model`] out ([`Engine::model`]). No I/O,
//! no clock reads: time only advances with input timestamps, so a live run
//! and a replay of its recording give the same model.
//!
//! Bookkeeping is per second (see [`window`]): rates over the last 1/10/60
//! complete seconds, TIME_WAIT held = connections closed locally in the last
//! 60 s (Linux's fixed `TCP_TIMEWAIT_LEN`), ±1 s.

pub mod hash;
pub mod hist;
mod intern;
pub mod model;
pub mod service;
pub mod table;
pub mod verdict;
pub mod window;

use std::net::IpAddr;

use crate::errno;
use crate::event::{Comm, ConnClose, ConnectError, Direction, EADDRNOTAVAIL, Event, Losses, Task};
use crate::input::{HostInfo, Input, KernelCounters, SockState, SocketTable};
use hash::{FxHashMap, FxHashSet, mixed_hash};
use hist::LogHist;
use intern::{Interner, ServiceIdx};
pub use model::*;
use service::{ServiceId, ServiceKind, service_from_cgroup};
use table::{Activity, Table};
use window::SecondRing;

use crate::clock::NS_PER_S;
/// Linux keeps a TIME_WAIT socket for 60 s (TCP_TIMEWAIT_LEN), not tunable.
pub const TIME_WAIT_S: u64 = 60;
/// Idle keys are checked every this many seconds of input time. A fixed grid
/// (not "every tick") so the result does not depend on how often ticks come.
const GC_EVERY_S: u64 = 10;
/// At most this many pids remembered per service or pair.
const MAX_PIDS: usize = 16;
/// At most this many cgroup ids remembered.
const MAX_CGROUPS: usize = 65_536;
/// At most this many (cgroup id, comm) → service resolutions cached; past
/// it the cache starts over (it only saves work, it decides nothing).
const MAX_RESOLVED: usize = 65_536;
/// TCP_LISTEN in include/net/tcp_states.h.
const TCP_LISTEN: u8 = 10;

/// Thresholds of the "lacks_pooling" verdict. Defaults are documented on
/// the CLI flags of `portwatch top`.
#[derive(Clone, Debug, PartialEq)]
pub struct VerdictConfig {
    /// New connections per second (10 s window) a pair must sustain.
    pub min_new_per_s: f64,
    /// Median connection lifetime at or below which connections count as
    /// "one per request".
    pub max_lifetime_p50_ms: f64,
    /// Seconds out of the last 10 with new connections: below this it is a
    /// burst, not a habit.
    pub min_active_s: u32,
}

impl Default for VerdictConfig {
    fn default() -> Self {
        VerdictConfig {
            min_new_per_s: 5.0,
            max_lifetime_p50_ms: 1000.0,
            min_active_s: 5,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Keys per table (processes, services, destinations, pairs, inbound);
    /// beyond it new keys are folded into "others".
    pub max_keys: usize,
    /// Keys without activity for this long are dropped. Longer than
    /// TIME_WAIT so a key is not dropped while it still holds ports.
    pub idle_timeout_s: u64,
    pub verdict: VerdictConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_keys: 4096,
            idle_timeout_s: 300,
            verdict: VerdictConfig::default(),
        }
    }
}

/// The last [`MAX_PIDS`] distinct pids, most recent first. Kept as an LRU
/// set (each slot stamped with when its pid was last noted) rather than an
/// ordered list: with short-lived processes every event brings a new pid to
/// four accumulators, and shifting the list was a third of the engine's
/// instructions. The order is rebuilt only for the model. 100 bytes, about
/// what the Vec took with its heap block.
#[derive(Clone, Debug, Default)]
struct RecentPids {
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
    fn note(&mut self, pid: u32) {
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
    fn order(&self) -> Vec<usize> {
        let mut slots: Vec<usize> = (0..usize::from(self.len)).collect();
        slots.sort_unstable_by_key(|&i| std::cmp::Reverse(self.stamp[i]));
        slots
    }

    fn renumber(&mut self) {
        let order = self.order();
        for (rank, &slot) in order.iter().rev().enumerate() {
            self.stamp[slot] = rank as u16 + 1;
        }
        self.noted = self.len.into();
    }

    fn to_vec(&self) -> Vec<u32> {
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

/// Per-key accumulator.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Acc {
    /// Connections by the second they started.
    new: SecondRing,
    /// Locally closed connections by the second they closed.
    local_close: SecondRing,
    new_total: u64,
    local_closes: u64,
    peer_closes: u64,
    lifetime: LogHist,
    /// Sum of the lifetimes in `lifetime` (the exporter's histogram sum).
    lifetime_sum_us: u64,
    handshake: LogHist,
    /// EADDRNOTAVAIL failures the kernel saw as port exhaustion.
    port_exhaustion: u64,
    /// errno → count; few distinct values, so a short vector.
    errors: Vec<(i32, u64)>,
    last_ns: u64,
    pids: RecentPids,
    last_error_ns: Option<u64>,
}

impl Activity for Acc {
    fn last_ns(&self) -> u64 {
        self.last_ns
    }
}

/// What every accumulator a closed connection lands in needs from it,
/// computed once per event rather than once per accumulator (an outbound
/// event lands in five).
struct CloseFacts<'a> {
    c: &'a ConnClose,
    start_s: u64,
    end_s: u64,
    lifetime_bucket: Option<usize>,
    handshake_bucket: Option<usize>,
}

impl<'a> CloseFacts<'a> {
    fn new(c: &'a ConnClose) -> Self {
        CloseFacts {
            c,
            start_s: c.start_ns / NS_PER_S,
            end_s: c.end_ns / NS_PER_S,
            lifetime_bucket: c
                .established
                .then(|| hist::bucket_of(c.lifetime_ns() / 1000)),
            handshake_bucket: c.handshake_ns.map(|h| hist::bucket_of(h / 1000)),
        }
    }
}

impl Acc {
    #[inline]
    fn record_close(&mut self, f: &CloseFacts) {
        let c = f.c;
        self.new.add(f.start_s, 1);
        self.new_total += 1;
        if let Some(b) = f.lifetime_bucket {
            self.lifetime.record_bucket(b);
            self.lifetime_sum_us += c.lifetime_ns() / 1000;
        }
        if let Some(b) = f.handshake_bucket {
            self.handshake.record_bucket(b);
        }
        if c.local_close {
            self.local_close.add(f.end_s, 1);
            self.local_closes += 1;
        } else if c.peer_close {
            self.peer_closes += 1;
        }
        if let Some(e) = c.errno {
            self.record_errno(e);
            self.last_error_ns = self.last_error_ns.max(Some(c.end_ns));
        }
        self.last_ns = self.last_ns.max(c.end_ns);
        if let Some(t) = &c.task {
            self.note_pid(t.pid);
        }
    }

    fn record_error(&mut self, e: &ConnectError) {
        self.record_errno(e.errno);
        if e.cause == crate::event::Cause::PortExhaustion {
            self.port_exhaustion += 1;
        }
        self.last_error_ns = self.last_error_ns.max(Some(e.ts_ns));
        self.last_ns = self.last_ns.max(e.ts_ns);
        if let Some(t) = &e.task {
            self.note_pid(t.pid);
        }
    }

    fn record_errno(&mut self, errno: i32) {
        match self.errors.iter_mut().find(|(e, _)| *e == errno) {
            Some((_, n)) => *n += 1,
            None => self.errors.push((errno, 1)),
        }
    }

    fn note_pid(&mut self, pid: u32) {
        self.pids.note(pid);
    }

    fn stats(&self, now: &Now) -> Stats {
        let (s1, s10, s60) = now.rates(&self.new);
        let closed = self.local_closes + self.peer_closes;
        let (time_wait, exp) = tw_from_closes(&self.local_close, now.sec);
        let ms = |v: Option<u64>| v.map(|us| us as f64 / 1000.0);
        let errors_total = self.errors.iter().map(|(_, n)| n).sum();
        Stats {
            new_total: self.new_total,
            new_per_s_1s: s1,
            new_per_s_10s: s10,
            new_per_s_60s: s60,
            active_s_10s: self
                .new
                .active(now.sec.saturating_sub(10), now.sec.saturating_sub(1)),
            lifetime_p50_ms: ms(self.lifetime.quantile_us(0.50)),
            lifetime_p90_ms: ms(self.lifetime.quantile_us(0.90)),
            lifetime_p99_ms: ms(self.lifetime.quantile_us(0.99)),
            handshake_p50_ms: ms(self.handshake.quantile_us(0.50)),
            handshake_p99_ms: ms(self.handshake.quantile_us(0.99)),
            closed_locally_share: (closed > 0).then(|| self.local_closes as f64 / closed as f64),
            local_close_per_s_10s: now.rate(&self.local_close, 10),
            time_wait,
            tw_expiring_10s: exp[0],
            tw_expiring_30s: exp[1],
            tw_expiring_60s: exp[2],
            connect_errors: errno_counts(&self.errors),
            connect_errors_total: errors_total,
            port_exhaustion_total: self.port_exhaustion,
            local_closes_total: self.local_closes,
            lifetime_sum_s: self.lifetime_sum_us as f64 / 1e6,
            new_series_60s: (now.sec.saturating_sub(60)..now.sec)
                .map(|s| self.new.get(s))
                .collect(),
            lifetime_buckets: lifetime_decades(&self.lifetime),
            last_error_ns: self.last_error_ns,
        }
    }

    /// Connections started in the last 2 complete seconds: still going.
    fn recent(&self, now: &Now) -> bool {
        self.new
            .sum(now.sec.saturating_sub(2), now.sec.saturating_sub(1))
            > 0
    }
}

/// TIME_WAIT held now and expiring within 10/30/60 s, from local closes by
/// second: a close in second `e` holds its port until second `e + 60`.
fn tw_from_closes(ring: &SecondRing, now_s: u64) -> (u64, [u64; 3]) {
    let first = (now_s + 1).saturating_sub(TIME_WAIT_S);
    let held = ring.sum(first, now_s);
    // Expiring within x s: closed in `first..=now + x - 60` (none when that
    // is before time 0, i.e. early in the observation).
    let exp = [10, 30, 60].map(|x: u64| {
        (now_s + x)
            .checked_sub(TIME_WAIT_S)
            .map_or(0, |last| ring.sum(first, last))
    });
    (held, exp)
}

/// Lifetime counts by decade for the TUI's histogram.
fn lifetime_decades(h: &LogHist) -> Vec<(&'static str, u64)> {
    let limits = [
        ("<1ms", 1_000),
        ("<10ms", 10_000),
        ("<100ms", 100_000),
        ("<1s", 1_000_000),
        ("<10s", 10_000_000),
    ];
    let mut out = Vec::with_capacity(limits.len() + 1);
    let mut below_prev = 0;
    for (label, limit) in limits {
        let below = h.count_below_us(limit);
        out.push((label, below - below_prev));
        below_prev = below;
    }
    out.push((">=10s", h.count() - below_prev));
    out
}

/// EADDRNOTAVAIL first (it is what port exhaustion looks like), then by count.
fn errno_counts(errors: &[(i32, u64)]) -> Vec<ErrnoCount> {
    let mut v: Vec<ErrnoCount> = errors
        .iter()
        .map(|&(e, n)| ErrnoCount {
            errno: e,
            name: errno::name(e),
            count: n,
        })
        .collect();
    v.sort_by_key(|c| {
        (
            c.errno != EADDRNOTAVAIL,
            std::cmp::Reverse(c.count),
            c.errno,
        )
    });
    v
}

/// "Now" as the model sees it: the current second and how long we have
/// observed, so windows longer than the observation are not diluted.
struct Now {
    sec: u64,
    observed_s: u64,
}

impl Now {
    /// Rate over the last `w` complete seconds (fewer at start).
    fn rate(&self, ring: &SecondRing, w: u64) -> f64 {
        let span = w.min(self.observed_s).max(1);
        ring.sum(self.sec.saturating_sub(w), self.sec.saturating_sub(1)) as f64 / span as f64
    }

    fn rates(&self, ring: &SecondRing) -> (f64, f64, f64) {
        (self.rate(ring, 1), self.rate(ring, 10), self.rate(ring, 60))
    }
}

/// What the last socket table said about one destination, and what
/// events have changed since.
#[derive(Clone, Debug, Default, PartialEq)]
struct DestTable {
    ts_ns: u64,
    /// ESTABLISHED + SYN_SENT at `ts_ns`.
    open: u64,
    /// Of those, closed since (connections that started before the table
    /// and closed after it).
    closed_open: u64,
    /// TIME_WAIT sockets of the table by the second they expire.
    tw_expiry: SecondRing,
    /// Local closes after the table, by second.
    local_since: SecondRing,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct DestAcc {
    acc: Acc,
    table: Option<DestTable>,
    /// Connections to it were seen from a network namespace other than the
    /// one the socket table is read in (containers): the table cannot see
    /// those sockets, so this destination's held ports are counted from
    /// events alone, never reset by a table.
    foreign: bool,
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

type PairKey = (ServiceIdx, IpAddr, u16);
/// What a service is resolved from: the task's (cgroup id, comm), or
/// `None` for events without a task.
type TaskKey = Option<(u64, Comm)>;

/// What a cgroup id says about the service.
#[derive(Clone, Debug, PartialEq)]
enum CgroupName {
    /// A unit, container or pod.
    Unit(ServiceId),
    /// A cgroup without one (e.g. `/`): name by comm.
    NoUnit,
    /// Unknown or vanished.
    Gone,
}

pub struct Engine {
    config: Config,
    host: Option<HostInfo>,
    start_ns: Option<u64>,
    now_ns: u64,
    gc_epoch: u64,
    cgroups: FxHashMap<u64, CgroupName>,
    /// Service names by index; the tables below hold indices.
    names: Interner,
    /// Service of each (cgroup id, comm) seen, so an event costs one
    /// lookup, not a cgroup lookup, a string and an intern. Entries of a
    /// cgroup are dropped when an `Input::Cgroup` renames it.
    resolved: FxHashMap<TaskKey, ServiceIdx>,
    /// The last resolution, checked before `resolved`: events come in runs
    /// from one task. Cleared whenever `resolved` loses entries.
    last_resolved: Option<(TaskKey, ServiceIdx)>,
    /// Cgroup ids that may have entries in `resolved`, so that naming a
    /// new cgroup (the usual `Input::Cgroup`) does not scan it.
    resolved_cgroups: FxHashSet<u64>,
    processes: Table<(u32, Comm), (Acc, Option<ServiceIdx>)>,
    services: Table<ServiceIdx, Acc>,
    destinations: Table<(IpAddr, u16), DestAcc>,
    pairs: Table<PairKey, Acc>,
    inbound: Table<(IpAddr, u16), Acc>,
    /// All outbound connections, for the system rates.
    sys: Acc,
    /// Failures (connect errors and failed handshakes) by second.
    sys_errors: SecondRing,
    counters: Option<KernelCounters>,
    prev_counters: Option<KernelCounters>,
    losses: Losses,
    /// Events applied (closes and connect errors).
    events: u64,
    /// Time of the last socket table, if any was read.
    last_table_ns: Option<u64>,
    aged_out: u64,
    /// Network namespaces seen in events, to tell when containers have
    /// their own (and so their own sysctls).
    netns_seen: FxHashSet<u32>,
    /// Namespace the socket tables are read in (0: unknown or none yet).
    table_netns: u32,
    /// The last namespace put in `netns_seen` (0: none yet).
    last_netns: u32,
}

impl Activity for (Acc, Option<ServiceIdx>) {
    fn last_ns(&self) -> u64 {
        self.0.last_ns
    }
}

impl Engine {
    pub fn new(config: Config) -> Engine {
        let n = config.max_keys;
        Engine {
            config,
            host: None,
            start_ns: None,
            now_ns: 0,
            gc_epoch: 0,
            cgroups: FxHashMap::default(),
            names: Interner::default(),
            resolved: FxHashMap::default(),
            last_resolved: None,
            resolved_cgroups: FxHashSet::default(),
            processes: Table::new(n),
            services: Table::new(n),
            destinations: Table::new(n),
            pairs: Table::new(n),
            inbound: Table::new(n),
            sys: Acc::default(),
            sys_errors: SecondRing::default(),
            counters: None,
            prev_counters: None,
            losses: Losses::default(),
            events: 0,
            last_table_ns: None,
            aged_out: 0,
            netns_seen: FxHashSet::default(),
            table_netns: 0,
            last_netns: 0,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Latest time any input said it is.
    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }

    pub fn apply(&mut self, input: &Input) {
        if let Some(ts) = input.ts_ns() {
            self.advance(ts);
        }
        match input {
            Input::Host(h) => self.host = Some(h.clone()),
            Input::Event(Event::Close(c)) => {
                self.events += 1;
                self.on_close(c);
            }
            Input::Event(Event::ConnectError(e)) => {
                self.events += 1;
                self.on_connect_error(e);
            }
            Input::Tick { .. } => {}
            Input::Cgroup { id, path } => {
                if self.cgroups.len() < MAX_CGROUPS || self.cgroups.contains_key(id) {
                    // Named once here, not per event: events are many.
                    let named = match path {
                        Some(p) => {
                            service_from_cgroup(p).map_or(CgroupName::NoUnit, CgroupName::Unit)
                        }
                        None => CgroupName::Gone,
                    };
                    if self.cgroups.insert(*id, named.clone()) != Some(named)
                        && self.resolved_cgroups.remove(id)
                    {
                        self.resolved
                            .retain(|k, _| k.is_none_or(|(cgroup, _)| cgroup != *id));
                        self.last_resolved = None;
                    }
                }
            }
            Input::Sockets(t) => self.on_sockets(t),
            Input::Counters(c) => {
                self.prev_counters = self.counters.replace(*c);
            }
            Input::Losses { losses, .. } => self.losses = *losses,
        }
    }

    fn advance(&mut self, ts_ns: u64) {
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
                + self.inbound.age_out(cutoff);
            self.free_unused_services();
        }
    }

    /// Frees the indices of services no table refers to any more, and
    /// forgets the resolutions to them.
    fn free_unused_services(&mut self) {
        let mut live = vec![false; self.names.capacity()];
        let processes = self.processes.map.values().filter_map(|(_, s)| *s);
        let services = self.services.map.keys().copied();
        let pairs = self.pairs.map.keys().map(|k| k.0);
        for i in processes.chain(services).chain(pairs) {
            live[i as usize] = true;
        }
        if self.names.retain(&live) {
            self.resolved.retain(|_, i| live[*i as usize]);
            self.resolved_cgroups = self.resolved.keys().flatten().map(|k| k.0).collect();
            self.last_resolved = None;
        }
    }

    /// The service index of a task, resolved once per (cgroup id, comm).
    fn service_idx(&mut self, task: Option<&Task>) -> ServiceIdx {
        let key = task.map(|t| (t.cgroup_id, t.comm));
        if let Some((k, i)) = self.last_resolved
            && k == key
        {
            return i;
        }
        let i = match self.resolved.get(&key) {
            Some(&i) => i,
            None => {
                let i = self.names.intern(self.service_of(task));
                if self.resolved.len() >= MAX_RESOLVED {
                    self.resolved.clear();
                    self.resolved_cgroups.clear();
                }
                self.resolved.insert(key, i);
                if let Some((cgroup, _)) = key {
                    self.resolved_cgroups.insert(cgroup);
                }
                i
            }
        };
        self.last_resolved = Some((key, i));
        i
    }

    /// Counts a service into the estimate by name, like [`Self::pair_entry`].
    fn service_entry(&mut self, svc: ServiceIdx) -> &mut Acc {
        let name_hash = self.names.name_hash(svc);
        self.services
            .entry_or_fold(svc, |d| d.insert_hash(name_hash))
    }

    /// Counts a pair into the pairs table's estimate by service name, not
    /// index (indices are reused).
    fn pair_entry(&mut self, svc: ServiceIdx, daddr: IpAddr, dport: u16) -> &mut Acc {
        let name_hash = self.names.name_hash(svc);
        self.pairs.entry_or_fold((svc, daddr, dport), |d| {
            d.insert_hash(mixed_hash(&(name_hash, daddr, dport)));
        })
    }

    /// The service a task belongs to (see [`service`]).
    fn service_of(&self, task: Option<&Task>) -> ServiceId {
        let Some(t) = task else {
            return ServiceId {
                kind: ServiceKind::UnknownCgroup,
                name: "?".into(),
            };
        };
        match self.cgroups.get(&t.cgroup_id) {
            Some(CgroupName::Unit(s)) => s.clone(),
            Some(CgroupName::NoUnit) => ServiceId {
                kind: ServiceKind::Comm,
                name: t.comm.to_string(),
            },
            // Told it is gone, or never told: shown as unknown, by comm.
            Some(CgroupName::Gone) | None => ServiceId {
                kind: ServiceKind::UnknownCgroup,
                name: t.comm.to_string(),
            },
        }
    }

    fn on_close(&mut self, c: &ConnClose) {
        // Copied only when an address needs rewriting: IPv4 events (most)
        // are used as they are.
        let rewritten;
        let c = if is_canonical(c.saddr) && is_canonical(c.daddr) {
            c
        } else {
            rewritten = ConnClose {
                saddr: canonical(c.saddr),
                daddr: canonical(c.daddr),
                ..*c
            };
            &rewritten
        };
        self.note_netns(c.netns);
        let f = &CloseFacts::new(c);
        if c.direction == Direction::Inbound {
            self.inbound.entry((c.saddr, c.sport)).record_close(f);
            return;
        }
        self.sys.record_close(f);
        if c.errno.is_some() {
            self.sys_errors.add(c.end_ns / NS_PER_S, 1);
        }
        let svc = self.service_idx(c.task.as_ref());
        if let Some(t) = &c.task {
            let p = self.processes.entry((t.pid, t.comm));
            p.0.record_close(f);
            p.1 = Some(svc);
        }
        self.service_entry(svc).record_close(f);
        self.pair_entry(svc, c.daddr, c.dport).record_close(f);
        let foreign = self.is_foreign(c.netns);
        let d = self.destinations.entry((c.daddr, c.dport));
        Self::mark_foreign(d, foreign);
        Self::seed_table(d, self.last_table_ns);
        d.acc.record_close(f);
        if let Some(t) = &mut d.table {
            // Open at the table's time (started before it, closed after it).
            if c.start_ns <= t.ts_ns && c.end_ns > t.ts_ns {
                t.closed_open += 1;
            }
            // Not yet in the table: a new TIME_WAIT socket.
            if c.local_close && c.end_ns > t.ts_ns {
                t.local_since.add(c.end_ns / NS_PER_S, 1);
            }
        }
    }

    fn on_connect_error(&mut self, e: &ConnectError) {
        let e = &ConnectError {
            daddr: canonical(e.daddr),
            ..*e
        };
        self.note_netns(e.netns);
        self.sys.record_error(e);
        self.sys_errors.add(e.ts_ns / NS_PER_S, 1);
        let svc = self.service_idx(e.task.as_ref());
        if let Some(t) = &e.task {
            let p = self.processes.entry((t.pid, t.comm));
            p.0.record_error(e);
            p.1 = Some(svc);
        }
        self.service_entry(svc).record_error(e);
        self.pair_entry(svc, e.daddr, e.dport).record_error(e);
        let foreign = self.is_foreign(e.netns);
        let d = self.destinations.entry((e.daddr, e.dport));
        Self::mark_foreign(d, foreign);
        Self::seed_table(d, self.last_table_ns);
        d.acc.record_error(e);
    }

    /// A lookup, not an insert, for the namespace seen last time: most
    /// events come from the same one.
    #[inline]
    fn note_netns(&mut self, netns: u32) {
        if netns != 0 && netns != self.last_netns {
            self.netns_seen.insert(netns);
            self.last_netns = netns;
        }
    }

    /// An event from a namespace the socket table is not read in.
    #[inline]
    fn is_foreign(&self, netns: u32) -> bool {
        netns != 0 && self.table_netns != 0 && netns != self.table_netns
    }

    #[inline]
    fn mark_foreign(d: &mut DestAcc, foreign: bool) {
        if foreign && !d.foreign {
            d.foreign = true;
            d.table = None;
        }
    }

    /// A destination first seen after a socket table held nothing at the
    /// table's time: it starts from that (empty) truth, not from "unknown".
    fn seed_table(d: &mut DestAcc, last_table_ns: Option<u64>) {
        if d.table.is_none()
            && !d.foreign
            && let Some(ts_ns) = last_table_ns
        {
            d.table = Some(DestTable {
                ts_ns,
                ..DestTable::default()
            });
        }
    }

    /// Replaces what each destination's held ports are counted from.
    fn on_sockets(&mut self, t: &SocketTable) {
        self.last_table_ns = Some(t.ts_ns);
        self.table_netns = t.netns;
        // Sockets whose local port a listener owns were accepted here:
        // inbound, not ports this host spent connecting out.
        let listen: FxHashSet<(Option<IpAddr>, u16)> = t
            .entries
            .iter()
            .filter(|e| e.state == SockState::Other(TCP_LISTEN))
            .map(|e| ((!e.saddr.is_unspecified()).then_some(e.saddr), e.sport))
            .collect();
        let mut fresh: FxHashMap<(IpAddr, u16), DestTable> = FxHashMap::default();
        for e in &t.entries {
            if listen.contains(&(None, e.sport)) || listen.contains(&(Some(e.saddr), e.sport)) {
                continue;
            }
            let d = fresh
                .entry((e.daddr, e.dport))
                .or_insert_with(|| DestTable {
                    ts_ns: t.ts_ns,
                    ..DestTable::default()
                });
            match e.state {
                SockState::Established | SockState::SynSent => d.open += 1,
                SockState::TimeWait => {
                    let expiry_ns = t.ts_ns + u64::from(e.expires_ms) * 1_000_000;
                    d.tw_expiry.add(expiry_ns / NS_PER_S, 1);
                }
                SockState::Other(_) => {}
            }
        }
        // Destinations the table does not mention hold nothing at its time
        // (unless their sockets live in another namespace, out of its sight).
        for d in self.destinations.map.values_mut().filter(|d| !d.foreign) {
            d.table = Some(DestTable {
                ts_ns: t.ts_ns,
                ..DestTable::default()
            });
        }
        for (key, table) in fresh {
            let d = self.destinations.entry(key);
            if !d.foreign {
                d.table = Some(table);
            }
        }
    }

    /// The model at `now_ns` (normally the latest tick).
    pub fn model(&self, now_ns: u64) -> Model {
        let now_ns = now_ns.max(self.now_ns);
        let start = self.start_ns.unwrap_or(now_ns);
        let now = Now {
            sec: now_ns / NS_PER_S,
            observed_s: (now_ns / NS_PER_S).saturating_sub(start / NS_PER_S),
        };
        let budget = self.host.as_ref().map(|h| port_budget(&h.sysctls));

        let mut processes: Vec<ProcessRow> = self
            .processes
            .map
            .iter()
            .map(|((pid, comm), (acc, svc))| ProcessRow {
                pid: *pid,
                comm: comm.to_string(),
                service: svc.map_or_else(
                    || ServiceId {
                        kind: ServiceKind::Comm,
                        name: comm.to_string(),
                    },
                    |i| self.names.name(i).clone(),
                ),
                stats: acc.stats(&now),
            })
            .collect();
        sort_rows(&mut processes, |r| &r.stats, |r| (r.pid, r.comm.clone()));

        let mut services: Vec<ServiceRow> = self
            .services
            .map
            .iter()
            .map(|(&svc, acc)| ServiceRow {
                service: self.names.name(svc).clone(),
                pids: acc.pids.to_vec(),
                stats: acc.stats(&now),
            })
            .collect();
        sort_rows(&mut services, |r| &r.stats, |r| r.service.clone());

        let mut destinations: Vec<DestinationRow> = self
            .destinations
            .map
            .iter()
            .map(|(&(daddr, dport), d)| destination_row(daddr, dport, d, &now, budget))
            .collect();
        sort_rows(&mut destinations, |r| &r.stats, |r| (r.daddr, r.dport));
        // Pressure matters most: a quiet destination can still be full.
        destinations.sort_by(|a, b| b.pressure.total_cmp(&a.pressure));

        let mut pairs: Vec<PairRow> = self
            .pairs
            .map
            .iter()
            .map(|(&(svc, daddr, dport), acc)| PairRow {
                service: self.names.name(svc).clone(),
                pids: acc.pids.to_vec(),
                daddr,
                dport,
                stats: acc.stats(&now),
            })
            .collect();
        sort_rows(
            &mut pairs,
            |r| &r.stats,
            |r| (r.service.clone(), r.daddr, r.dport),
        );

        let mut inbound: Vec<InboundRow> = self
            .inbound
            .map
            .iter()
            .map(|(&(laddr, lport), acc)| InboundRow {
                laddr,
                lport,
                stats: acc.stats(&now),
            })
            .collect();
        sort_rows(&mut inbound, |r| &r.stats, |r| (r.laddr, r.lport));

        // By key, so verdicts cost pairs + destinations, not their product
        // (16M comparisons per model with both tables full).
        let dest_by_key: FxHashMap<(IpAddr, u16), &DestinationRow> = destinations
            .iter()
            .map(|d| ((d.daddr, d.dport), d))
            .collect();
        let verdicts: Vec<Verdict> = pairs
            .iter()
            .filter(|p| {
                self.names
                    .get(&p.service)
                    .and_then(|svc| self.pairs.map.get(&(svc, p.daddr, p.dport)))
                    .is_some_and(|a| a.recent(&now))
            })
            .filter_map(|p| {
                let dest = dest_by_key.get(&(p.daddr, p.dport)).copied();
                verdict::lacks_pooling(&self.config.verdict, p, dest, budget, self.sysctls())
            })
            .collect();

        let sys_stats = self.sys.stats(&now);
        let mut system = SystemModel {
            clock: self.host.as_ref().map(|h| h.clock),
            hostname: self
                .host
                .as_ref()
                .map(|h| h.hostname.clone())
                .unwrap_or_default(),
            kernel: self
                .host
                .as_ref()
                .map(|h| h.kernel.clone())
                .unwrap_or_default(),
            sysctls: self.sysctls().cloned(),
            port_range: self.sysctls().map(|s| s.port_range),
            budget,
            sockstat_tw: self.counters.map(|c| c.tcp_tw),
            sockstat_inuse: self.counters.map(|c| c.tcp_inuse),
            tw_per_s: self.counter_rate(|c| c.tw),
            tw_recycled_per_s: self.counter_rate(|c| c.tw_recycled),
            tw_overflow_per_s: self.counter_rate(|c| c.tw_overflow),
            new_per_s_1s: sys_stats.new_per_s_1s,
            new_per_s_10s: sys_stats.new_per_s_10s,
            new_per_s_60s: sys_stats.new_per_s_60s,
            connect_errors_per_s_10s: 0.0,
            connect_errors: sys_stats.connect_errors.clone(),
            connect_errors_total: sys_stats.connect_errors_total,
            losses: self.losses,
            lost_events: self.losses.total(),
            events_total: self.events,
            counters: self.counters,
            folded_keys: 0,
            aged_out_keys: self.aged_out,
            advice: Vec::new(),
        };
        let others = Others {
            processes: self.processes.folded.estimate(),
            services: self.services.folded.estimate(),
            destinations: self.destinations.folded.estimate(),
            pairs: self.pairs.folded.estimate(),
            inbound: self.inbound.folded.estimate(),
        };
        system.folded_keys = others.processes
            + others.services
            + others.destinations
            + others.pairs
            + others.inbound;
        system.connect_errors_per_s_10s = self.error_rate(&now);
        let host_netns = self.host.as_ref().map_or(0, |h| h.netns);
        let other_netns = self
            .netns_seen
            .iter()
            .filter(|&&n| host_netns != 0 && n != host_netns)
            .count();
        system.advice = verdict::advice(
            &system,
            &destinations,
            &verdicts,
            &inbound,
            &self.config.verdict,
            other_netns,
        );

        Model {
            now_ns,
            observed_s: now_ns.saturating_sub(start) as f64 / 1e9,
            system,
            processes,
            services,
            destinations,
            pairs,
            inbound,
            verdicts,
            others,
        }
    }

    fn sysctls(&self) -> Option<&crate::input::Sysctls> {
        self.host.as_ref().map(|h| &h.sysctls)
    }

    /// Rate of a cumulative kernel counter between the last two readings.
    fn counter_rate(&self, f: impl Fn(&KernelCounters) -> u64) -> Option<f64> {
        let (a, b) = (self.prev_counters?, self.counters?);
        let dt_s = b.ts_ns.checked_sub(a.ts_ns).filter(|&d| d > 0)? as f64 / 1e9;
        // A counter going backwards means a reset (e.g. namespace change).
        Some(f(&b).saturating_sub(f(&a)) as f64 / dt_s)
    }

    /// Connect failures (and failed handshakes) per second over the last
    /// 10 s. Per key only totals are kept; this one rate is system-wide.
    fn error_rate(&self, now: &Now) -> f64 {
        now.rate(&self.sys_errors, 10)
    }
}

/// `::ffff:a.b.c.d` (a dual-stack socket) and `a.b.c.d` are the same peer
/// and share the same ports: one key.
fn is_canonical(a: IpAddr) -> bool {
    match a {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().is_none(),
        IpAddr::V4(_) => true,
    }
}

fn canonical(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a, IpAddr::V4),
        v4 => v4,
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
    let mut reserved = vec![false; size as usize];
    for &(a, b) in &s.reserved_ports {
        for p in a.max(lo)..=b.min(hi) {
            reserved[usize::from(p - lo)] = true;
        }
    }
    size - reserved.iter().filter(|&&r| r).count() as u64
}

fn destination_row(
    daddr: IpAddr,
    dport: u16,
    d: &DestAcc,
    now: &Now,
    budget: Option<u64>,
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
    let held = open + stats.time_wait;
    let budget = budget.unwrap_or(0);
    let pressure = if budget > 0 {
        held as f64 / budget as f64
    } else {
        0.0
    };
    let r = stats.local_close_per_s_10s;
    let steady = r * TIME_WAIT_S as f64;
    let exceeds = budget > 0 && steady + open as f64 > budget as f64;
    // Held ports grow at r and shrink as current TIME_WAIT expires (spread
    // over the next minute); when that net growth is positive the free
    // ports last (budget - held) / growth seconds. Rough by design.
    let exhaustion_in_s = exceeds.then(|| {
        let growth = r - stats.tw_expiring_60s as f64 / TIME_WAIT_S as f64;
        let free = budget.saturating_sub(held) as f64;
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
    DestinationRow {
        daddr,
        dport,
        stats,
        closer,
        held_ports: held,
        open_ports: open,
        from_socket_table: from_table,
        budget,
        pressure,
        forecast: Forecast {
            steady_time_wait: steady,
            exceeds_budget: exceeds,
            exhaustion_in_s,
        },
    }
}

/// Busiest first (10 s rate, then total), ties broken by key so the order
/// is deterministic.
fn sort_rows<R, K: Ord>(rows: &mut [R], stats: impl Fn(&R) -> &Stats, key: impl Fn(&R) -> K) {
    rows.sort_by(|a, b| {
        let (sa, sb) = (stats(a), stats(b));
        sb.new_per_s_10s
            .total_cmp(&sa.new_per_s_10s)
            .then(sb.new_total.cmp(&sa.new_total))
            .then_with(|| key(a).cmp(&key(b)))
    });
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

    fn conn(pid: u32, comm: &str, cgroup_id: u64, dport: u16, end_ns: u64) -> Input {
        Input::Event(Event::Close(ConnClose {
            start_ns: end_ns - 1_000_000,
            end_ns,
            handshake_ns: Some(50_000),
            task: Some(Task {
                pid,
                tid: pid,
                comm: Comm::new(comm),
                thread: Comm::new(comm),
                cgroup_id,
            }),
            netns: 1,
            direction: Direction::Outbound,
            saddr: "127.0.0.1".parse().unwrap(),
            sport: 40000,
            daddr: "10.0.0.1".parse().unwrap(),
            dport,
            bytes: None,
            local_close: true,
            peer_close: false,
            established: true,
            errno: None,
        }))
    }

    fn cgroup(id: u64, path: &str) -> Input {
        Input::Cgroup {
            id,
            path: Some(path.into()),
        }
    }

    fn service_names(m: &Model) -> Vec<String> {
        let mut v: Vec<String> = m.services.iter().map(|s| s.service.to_string()).collect();
        v.sort();
        v
    }

    #[test]
    fn a_cgroup_named_after_its_first_events_names_the_later_ones() {
        let mut e = Engine::new(Config::default());
        e.apply(&conn(1, "curl", 5, 80, NS_PER_S));
        e.apply(&cgroup(5, "/system.slice/api.service"));
        e.apply(&conn(1, "curl", 5, 80, 2 * NS_PER_S));
        // And renamed again (cgroup ids are not reused, but a path read
        // can fail and be corrected).
        e.apply(&cgroup(5, "/system.slice/web.service"));
        e.apply(&conn(1, "curl", 5, 80, 3 * NS_PER_S));
        let m = e.model(4 * NS_PER_S);
        assert_eq!(
            service_names(&m),
            ["api.service", "curl (cgroup ?)", "web.service"]
        );
        assert!(m.services.iter().all(|s| s.stats.new_total == 1));
        assert_eq!(m.processes[0].service.to_string(), "web.service");
    }

    #[test]
    fn services_that_age_out_free_their_index_for_new_ones() {
        let cfg = Config {
            idle_timeout_s: 20,
            ..Config::default()
        };
        let mut e = Engine::new(cfg);
        e.apply(&cgroup(1, "/system.slice/old.service"));
        e.apply(&cgroup(2, "/system.slice/new.service"));
        e.apply(&conn(1, "a", 1, 80, NS_PER_S));
        // Past the idle timeout and a GC epoch: old.service goes.
        e.apply(&conn(2, "b", 2, 81, 45 * NS_PER_S));
        let old = ServiceId {
            kind: ServiceKind::Systemd,
            name: "old.service".into(),
        };
        assert_eq!(e.names.get(&old), None, "freed");
        e.apply(&conn(3, "c", 1, 82, 46 * NS_PER_S));
        let m = e.model(47 * NS_PER_S);
        assert_eq!(service_names(&m), ["new.service", "old.service"]);
        let old = m.services.iter().find(|s| s.service.name == "old.service");
        assert_eq!(old.map(|s| s.stats.new_total), Some(1), "counted afresh");
        assert_eq!(
            m.system.aged_out_keys, 4,
            "process, service, pair, destination"
        );
        assert_eq!(e.names.capacity(), 2, "the freed index was reused");
        let mut pairs: Vec<(String, u16)> = m
            .pairs
            .iter()
            .map(|p| (p.service.to_string(), p.dport))
            .collect();
        pairs.sort();
        assert_eq!(
            pairs,
            [("new.service".into(), 81), ("old.service".into(), 82)]
        );
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
