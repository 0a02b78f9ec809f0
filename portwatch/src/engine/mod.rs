//! The churn engine: a pure function of the [`Input`] stream.
//!
//! Inputs in ([`Engine::apply`]), a [`Model`] out ([`Engine::model`]). No I/O,
//! no clock reads: time only advances with input timestamps, so a live run
//! and a replay of its recording give the same model.
//!
//! Bookkeeping is per second (see [`window`]): rates over the last 1/10/60
//! complete seconds, TIME_WAIT held = connections closed locally in the last
//! 60 s (Linux's fixed `TCP_TIMEWAIT_LEN`), ±1 s.

pub mod hist;
pub mod model;
pub mod service;
pub mod table;
pub mod verdict;
pub mod window;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use crate::errno;
use crate::event::{ConnClose, ConnectError, Direction, EADDRNOTAVAIL, Event, Losses, Task};
use crate::input::{HostInfo, Input, KernelCounters, SockState, SocketTable};
use hist::LogHist;
pub use model::*;
use service::{ServiceId, ServiceKind, service_from_cgroup};
use table::{Activity, Table};
use window::SecondRing;

const NS_PER_S: u64 = 1_000_000_000;
/// Linux keeps a TIME_WAIT socket for 60 s (TCP_TIMEWAIT_LEN), not tunable.
pub const TIME_WAIT_S: u64 = 60;
/// Idle keys are checked every this many seconds of input time. A fixed grid
/// (not "every tick") so the result does not depend on how often ticks come.
const GC_EVERY_S: u64 = 10;
/// At most this many pids remembered per service or pair.
const MAX_PIDS: usize = 16;
/// At most this many cgroup ids remembered.
const MAX_CGROUPS: usize = 65_536;
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
    handshake: LogHist,
    /// errno → count; few distinct values, so a short vector.
    errors: Vec<(i32, u64)>,
    last_ns: u64,
    /// Most recent first.
    pids: Vec<u32>,
    last_error_ns: Option<u64>,
}

impl Activity for Acc {
    fn last_ns(&self) -> u64 {
        self.last_ns
    }
}

impl Acc {
    fn record_close(&mut self, c: &ConnClose) {
        self.new.add(c.start_ns / NS_PER_S, 1);
        self.new_total += 1;
        if c.established {
            self.lifetime.record(c.lifetime_ns() / 1000);
        }
        if let Some(h) = c.handshake_ns {
            self.handshake.record(h / 1000);
        }
        if c.local_close {
            self.local_close.add(c.end_ns / NS_PER_S, 1);
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
        if self.pids.first() == Some(&pid) {
            return;
        }
        self.pids.retain(|&p| p != pid);
        self.pids.insert(0, pid);
        self.pids.truncate(MAX_PIDS);
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

type PairKey = (ServiceId, IpAddr, u16);

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
    cgroups: HashMap<u64, CgroupName>,
    processes: Table<(u32, crate::event::Comm), (Acc, Option<ServiceId>)>,
    services: Table<ServiceId, Acc>,
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
    /// Time of the last socket table, if any was read.
    last_table_ns: Option<u64>,
    aged_out: u64,
    /// Network namespaces seen in events, to tell when containers have
    /// their own (and so their own sysctls).
    netns_seen: HashSet<u32>,
}

impl Activity for (Acc, Option<ServiceId>) {
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
            cgroups: HashMap::new(),
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
            last_table_ns: None,
            aged_out: 0,
            netns_seen: HashSet::new(),
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
            Input::Event(Event::Close(c)) => self.on_close(c),
            Input::Event(Event::ConnectError(e)) => self.on_connect_error(e),
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
                    self.cgroups.insert(*id, named);
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
        let epoch = self.now_ns / NS_PER_S / GC_EVERY_S;
        if epoch > self.gc_epoch {
            self.gc_epoch = epoch;
            let cutoff = (epoch * GC_EVERY_S).saturating_sub(self.config.idle_timeout_s) * NS_PER_S;
            self.aged_out += self.processes.age_out(cutoff)
                + self.services.age_out(cutoff)
                + self.destinations.age_out(cutoff)
                + self.pairs.age_out(cutoff)
                + self.inbound.age_out(cutoff);
        }
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
        let c = &ConnClose {
            saddr: canonical(c.saddr),
            daddr: canonical(c.daddr),
            ..*c
        };
        if c.netns != 0 {
            self.netns_seen.insert(c.netns);
        }
        if c.direction == Direction::Inbound {
            self.inbound.entry(&(c.saddr, c.sport)).record_close(c);
            return;
        }
        self.sys.record_close(c);
        if c.errno.is_some() {
            self.sys_errors.add(c.end_ns / NS_PER_S, 1);
        }
        let svc = self.service_of(c.task.as_ref());
        if let Some(t) = &c.task {
            let p = self.processes.entry(&(t.pid, t.comm));
            p.0.record_close(c);
            p.1 = Some(svc.clone());
        }
        self.services.entry(&svc).record_close(c);
        self.pairs.entry(&(svc, c.daddr, c.dport)).record_close(c);
        let d = self.destinations.entry(&(c.daddr, c.dport));
        Self::seed_table(d, self.last_table_ns);
        d.acc.record_close(c);
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
        if e.netns != 0 {
            self.netns_seen.insert(e.netns);
        }
        self.sys.record_error(e);
        self.sys_errors.add(e.ts_ns / NS_PER_S, 1);
        let svc = self.service_of(e.task.as_ref());
        if let Some(t) = &e.task {
            let p = self.processes.entry(&(t.pid, t.comm));
            p.0.record_error(e);
            p.1 = Some(svc.clone());
        }
        self.services.entry(&svc).record_error(e);
        self.pairs.entry(&(svc, e.daddr, e.dport)).record_error(e);
        let d = self.destinations.entry(&(e.daddr, e.dport));
        Self::seed_table(d, self.last_table_ns);
        d.acc.record_error(e);
    }

    /// A destination first seen after a socket table held nothing at the
    /// table's time: it starts from that (empty) truth, not from "unknown".
    fn seed_table(d: &mut DestAcc, last_table_ns: Option<u64>) {
        if d.table.is_none()
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
        // Sockets whose local port a listener owns were accepted here:
        // inbound, not ports this host spent connecting out.
        let listen: HashSet<(Option<IpAddr>, u16)> = t
            .entries
            .iter()
            .filter(|e| e.state == SockState::Other(TCP_LISTEN))
            .map(|e| ((!e.saddr.is_unspecified()).then_some(e.saddr), e.sport))
            .collect();
        let mut fresh: HashMap<(IpAddr, u16), DestTable> = HashMap::new();
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
        // Destinations the table does not mention hold nothing at its time.
        for d in self.destinations.map.values_mut() {
            d.table = Some(DestTable {
                ts_ns: t.ts_ns,
                ..DestTable::default()
            });
        }
        for (key, table) in fresh {
            self.destinations.entry(&key).table = Some(table);
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
                service: svc.clone().unwrap_or(ServiceId {
                    kind: ServiceKind::Comm,
                    name: comm.to_string(),
                }),
                stats: acc.stats(&now),
            })
            .collect();
        sort_rows(&mut processes, |r| &r.stats, |r| (r.pid, r.comm.clone()));

        let mut services: Vec<ServiceRow> = self
            .services
            .map
            .iter()
            .map(|(svc, acc)| ServiceRow {
                service: svc.clone(),
                pids: acc.pids.clone(),
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
            .map(|((svc, daddr, dport), acc)| PairRow {
                service: svc.clone(),
                pids: acc.pids.clone(),
                daddr: *daddr,
                dport: *dport,
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

        let verdicts: Vec<Verdict> = pairs
            .iter()
            .filter(|p| {
                self.pairs
                    .map
                    .get(&(p.service.clone(), p.daddr, p.dport))
                    .is_some_and(|a| a.recent(&now))
            })
            .filter_map(|p| {
                let dest = destinations
                    .iter()
                    .find(|d| d.daddr == p.daddr && d.dport == p.dport);
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
