//! The churn engine: a pure function of the [`Input`] stream.
//!
//! Inputs in ([`Engine::apply`]), a [`Model`] out ([`Engine::model`]). No I/O,
//! no clock reads: time only advances with input timestamps, so a live run
//! and a replay of its recording give the same model.
//!
//! Bookkeeping is per second (see [`window`]): rates over the last 1/10/60
//! complete seconds, TIME_WAIT held = connections closed locally in the last
//! 60 s (Linux's fixed `TCP_TIMEWAIT_LEN`), ±1 s.
//!
//! Rooms, by job: `config` (what the engine is told once), `pids` (recent
//! pids), `acc` (accumulators over per-second windows), `destinations`
//! (held ports, budget, forecast), `resolve` (task → service), `intake`
//! (events into accumulators, ageing), `snapshot` (the [`Model`]). This
//! file keeps [`Engine`] and [`Engine::apply`].

mod acc;
mod bound;
pub mod callsites;
mod config;
mod destinations;
pub mod hash;
pub mod hist;
mod intake;
mod intern;
mod leaks;
pub mod model;
pub mod namer;
pub mod nat;
pub mod netns;
mod pids;
mod resolve;
pub mod service;
mod snapshot;
pub mod summary;
pub mod table;
pub mod verdict;
pub mod window;

use std::net::IpAddr;

use crate::event::{Comm, Event, Losses};
use crate::input::{HostInfo, Input, KernelCounters};
use acc::Acc;
pub use config::{Config, VerdictConfig};
use destinations::DestAcc;
pub use destinations::port_budget;
use hash::{FxHashMap, FxHashSet};
use intern::{Interner, ServiceIdx};
pub use model::*;
use netns::Namespaces;
use resolve::{CgroupName, PairKey, TaskKey};
use table::{Activity, Table};
use window::SecondRing;

/// Minutes of failures the model shows (the report samples them each
/// second, so two would do; one more for events out of order).
const FAILURE_MINUTES: usize = 3;
/// Linux keeps a TIME_WAIT socket for 60 s (TCP_TIMEWAIT_LEN), not tunable.
pub const TIME_WAIT_S: u64 = 60;
/// At most this many (netns, remote addr, remote port) → local address
/// remembered, to give a failed connect (which has no local address) the
/// budget its connections use; past it the map starts over.
const MAX_LADDRS: usize = 65_536;
/// A port budget: (netns, local addr, remote addr, remote port). The local
/// address is unspecified for failed connects to a destination no
/// connection was seen to yet.
type DestKey = (u32, IpAddr, IpAddr, u16);

pub struct Engine {
    config: Config,
    /// Inbound connections seen (outbound: `sys.new_total`).
    inbound_total: u64,
    /// Failures by wall-clock minute, the last [`FAILURE_MINUTES`] minutes
    /// with any.
    failure_minutes: std::collections::BTreeMap<i64, std::collections::BTreeMap<i32, u64>>,
    host: Option<HostInfo>,
    start_ns: Option<u64>,
    now_ns: u64,
    gc_epoch: u64,
    cgroups: FxHashMap<u64, CgroupName>,
    /// Names the container runtime gave, by container id or pod uid.
    workloads: FxHashMap<String, crate::input::Workload>,
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
    destinations: Table<DestKey, DestAcc>,
    /// The local address last used to each (netns, daddr, dport).
    last_laddr: FxHashMap<(u32, IpAddr, u16), IpAddr>,
    /// The last entry noted in `last_laddr` (which holds it: the map is
    /// only changed by noting), so a run of closes costs no lookup.
    laddr_noted: Option<((u32, IpAddr, u16), IpAddr)>,
    pairs: Table<PairKey, Acc>,
    inbound: Table<(IpAddr, u16), Acc>,
    /// Processes binding client sockets before connect() (see `bound`).
    bound: Table<bound::BoundKey, bound::BoundAcc>,
    /// Failed bind() calls on TCP sockets.
    bind_errors_total: u64,
    /// All outbound connections, for the system rates.
    sys: Acc,
    /// Failures (connect errors and failed handshakes) by second.
    sys_errors: SecondRing,
    /// The same by errno (EADDRNOTAVAIL among them): a few distinct
    /// values at most, so the header's breakdown adds up to the total.
    sys_errors_by_errno: FxHashMap<i32, SecondRing>,
    counters: Option<KernelCounters>,
    prev_counters: Option<KernelCounters>,
    losses: Losses,
    /// Events applied (closes and connect errors).
    events: u64,
    /// Time of the host namespace's last socket table, if any was read.
    last_table_ns: Option<u64>,
    aged_out: u64,
    /// Namespaces other than the host's: their sysctls, counters, names.
    namespaces: Namespaces,
    /// Interface networks by namespace (the host's own networks, see
    /// [`nat`]); at most `max_keys` namespaces.
    networks: FxHashMap<u32, Vec<(IpAddr, u8)>>,
    /// Sampled connect() stacks per pair (`Input::CallStack`).
    call_sites: callsites::CallSites,
    /// The runtime of connecting processes (`Input::Runtime`), by pid;
    /// cleared when [`MAX_RUNTIMES`] is reached.
    runtimes: FxHashMap<u32, model::ClientRuntime>,
    /// Live sockets of the last tables and who holds them (CLOSE_WAIT
    /// leaks).
    leaks: leaks::Leaks,
    /// The last outbound closes (end, start, destination, local port,
    /// closed locally),
    /// for a socket table that arrives after events newer than itself (a
    /// namespace's is read on another thread): they are counted again on
    /// top of it, or its TIME_WAIT would miss them.
    recent_closes: std::collections::VecDeque<(u64, u64, DestKey, u16, bool)>,
}

/// Processes whose runtime is remembered at once.
const MAX_RUNTIMES: usize = 16_384;

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
            inbound_total: 0,
            failure_minutes: Default::default(),
            host: None,
            start_ns: None,
            now_ns: 0,
            gc_epoch: 0,
            cgroups: FxHashMap::default(),
            workloads: FxHashMap::default(),
            names: Interner::default(),
            resolved: FxHashMap::default(),
            last_resolved: None,
            resolved_cgroups: FxHashSet::default(),
            processes: Table::new(n),
            services: Table::new(n),
            destinations: Table::new(n),
            last_laddr: FxHashMap::default(),
            laddr_noted: None,
            pairs: Table::new(n),
            inbound: Table::new(n),
            bound: Table::new(n),
            bind_errors_total: 0,
            sys: Acc::default(),
            sys_errors: SecondRing::default(),
            sys_errors_by_errno: FxHashMap::default(),
            counters: None,
            prev_counters: None,
            losses: Losses::default(),
            events: 0,
            last_table_ns: None,
            aged_out: 0,
            namespaces: Namespaces::new(n),
            networks: FxHashMap::default(),
            call_sites: Default::default(),
            runtimes: FxHashMap::default(),
            leaks: leaks::Leaks::default(),
            recent_closes: Default::default(),
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
            Input::Event(Event::BindError(b)) => {
                self.events += 1;
                self.on_bind_error(b);
            }
            Input::Tick { .. } => {}
            Input::Cgroup { id, path } => self.on_cgroup(*id, path.as_deref()),
            Input::Workload(w) => self.on_workload(w),
            Input::Sockets(t) => self.on_sockets(t),
            Input::Counters(c) => {
                self.prev_counters = self.counters.replace(*c);
            }
            Input::Losses { losses, .. } => self.losses = *losses,
            Input::Netns(n) => {
                if self.ns_key(n.netns) != self.host_netns() {
                    self.namespaces.on_reading(n);
                }
            }
            Input::Networks(n) => {
                let ns = self.ns_key(n.netns);
                // Namespaces come and go: forget those no longer known
                // before refusing a new one.
                if self.networks.len() >= self.config.max_keys && !self.networks.contains_key(&ns) {
                    let host = self.host_netns();
                    let known = &self.namespaces;
                    self.networks
                        .retain(|&k, _| k == host || known.get(k).is_some());
                }
                if self.networks.len() < self.config.max_keys || self.networks.contains_key(&ns) {
                    self.networks.insert(ns, n.nets.clone());
                }
            }
            Input::CallStack(c) => self.on_call_stack(c),
            Input::SocketOwners(o) => self.leaks.on_owners(o),
            Input::Runtime(r) => {
                if self.runtimes.len() >= MAX_RUNTIMES && !self.runtimes.contains_key(&r.pid) {
                    self.runtimes.clear();
                }
                self.runtimes.insert(
                    r.pid,
                    model::ClientRuntime {
                        name: r.name.clone(),
                        evidence: r.evidence.clone(),
                    },
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::NS_PER_S;
    use crate::event::{ConnClose, Direction, Task};
    use crate::tracefile::synthetic;
    use service::{ServiceId, ServiceKind};

    fn conn(pid: u32, comm: &str, cgroup_id: u64, dport: u16, end_ns: u64) -> Input {
        let task = synthetic::main_thread(pid, comm, cgroup_id);
        let daddr = ("10.0.0.1".parse().unwrap(), dport);
        Input::Event(Event::Close(ConnClose {
            handshake_ns: Some(50_000),
            ..synthetic::closed_here(Some(task), 1, daddr, end_ns - 1_000_000, end_ns)
        }))
    }

    /// An outbound connection that never got established: `errno` None is
    /// the application closing the connecting socket after `wait_ms`.
    fn failed_handshake(errno: Option<i32>, wait_ms: u64, end_ns: u64) -> Input {
        let Input::Event(Event::Close(c)) = conn(7, "client", 5, 7502, end_ns) else {
            unreachable!()
        };
        Input::Event(Event::Close(ConnClose {
            start_ns: end_ns - wait_ms * 1_000_000,
            handshake_ns: None,
            local_close: false,
            established: false,
            errno,
            ..c
        }))
    }

    fn dest_7502(m: &Model) -> &DestinationRow {
        m.destinations
            .iter()
            .find(|d| d.dport == 7502)
            .expect("destination :7502")
    }

    #[test]
    fn an_abandoned_handshake_is_a_failure_with_cause_aborted_and_its_wait() {
        let mut e = Engine::new(Config::default());
        for i in 1..=3 {
            e.apply(&failed_handshake(None, 1000, i * NS_PER_S));
        }
        let m = e.model(4 * NS_PER_S);
        let d = dest_7502(&m);
        assert_eq!(d.stats.connect_errors_total, 3);
        assert_eq!(
            d.stats.connect_errors_by_cause,
            [CauseCount {
                cause: crate::event::FailCause::Aborted,
                count: 3
            }]
        );
        let wait = d.stats.failed_handshake_p50_ms.expect("a wait");
        assert!((900.0..=1100.0).contains(&wait), "{wait}");
        assert_eq!(d.stats.lifetime_p50_ms, None, "never established");
        assert_eq!(m.system.connect_errors_total, 3, "counted in the header");
        assert!(m.system.connect_errors_per_s_10s > 0.0);
        assert_eq!(m.system.connect_errors[0].name, "aborted");
        assert_eq!(m.processes[0].stats.connect_errors_total, 3, "the culprit");
    }

    #[test]
    fn handshake_errnos_map_to_causes() {
        let mut e = Engine::new(Config::default());
        e.apply(&failed_handshake(Some(110), 3000, NS_PER_S * 4));
        e.apply(&failed_handshake(Some(111), 1, NS_PER_S * 5));
        e.apply(&failed_handshake(Some(104), 1, NS_PER_S * 5));
        e.apply(&failed_handshake(Some(113), 1, NS_PER_S * 5));
        let m = e.model(6 * NS_PER_S);
        let causes: Vec<&str> = dest_7502(&m)
            .stats
            .connect_errors_by_cause
            .iter()
            .map(|c| c.cause.as_str())
            .collect();
        assert_eq!(causes, ["refused", "timed_out", "reset", "unreachable"]);
        assert_eq!(m.system.connect_errors_total, 4);
    }

    #[test]
    fn syn_retransmissions_add_up_per_destination_and_host() {
        let mut e = Engine::new(Config::default());
        let with_retrans = |input: Input, n: u32| match input {
            Input::Event(Event::Close(c)) => Input::Event(Event::Close(ConnClose {
                syn_retrans: n,
                ..c
            })),
            other => other,
        };
        e.apply(&with_retrans(
            failed_handshake(Some(110), 3000, 4 * NS_PER_S),
            1,
        ));
        e.apply(&with_retrans(failed_handshake(None, 1000, 4 * NS_PER_S), 2));
        // An established connection whose first SYN went unanswered.
        e.apply(&with_retrans(conn(7, "client", 5, 7502, 4 * NS_PER_S), 1));
        e.apply(&conn(7, "client", 5, 7503, 4 * NS_PER_S));
        let m = e.model(5 * NS_PER_S);
        assert_eq!(dest_7502(&m).stats.syn_retransmits, 4);
        let other = m.destinations.iter().find(|d| d.dport == 7503).unwrap();
        assert_eq!(other.stats.syn_retransmits, 0);
        assert_eq!(m.system.syn_retransmits, 4);
        assert_eq!(m.processes[0].stats.syn_retransmits, 4);
        let a = m
            .system
            .advice
            .iter()
            .find(|a| a.key == "handshakes_unanswered")
            .expect("advice");
        assert!(
            a.text.contains("; 4 SYN retransmission(s); waited"),
            "{}",
            a.text
        );
        assert!(
            !a.text.contains("  "),
            "one space between words: {}",
            a.text
        );
    }

    #[test]
    fn an_inbound_half_open_connection_is_not_a_failure() {
        let mut e = Engine::new(Config::default());
        let Input::Event(Event::Close(c)) = failed_handshake(None, 5, NS_PER_S) else {
            unreachable!()
        };
        e.apply(&Input::Event(Event::Close(ConnClose {
            direction: Direction::Inbound,
            task: None,
            ..c
        })));
        let m = e.model(2 * NS_PER_S);
        assert_eq!(m.system.connect_errors_total, 0);
        assert!(m.system.connect_errors_by_cause.is_empty());
    }

    #[test]
    fn unanswered_syns_get_advice_naming_the_destination() {
        let mut e = Engine::new(Config::default());
        e.apply(&failed_handshake(None, 1000, 4 * NS_PER_S));
        e.apply(&failed_handshake(Some(110), 3000, 5 * NS_PER_S));
        let m = e.model(6 * NS_PER_S);
        let a = m
            .system
            .advice
            .iter()
            .find(|a| a.key == "handshakes_unanswered")
            .expect("advice");
        assert_eq!(a.level, "warning");
        assert!(a.text.contains("10.0.0.1:7502"), "{}", a.text);
        assert!(a.text.contains("1 timed_out, 1 aborted"), "{}", a.text);
    }

    fn eaddrnotavail(cause: crate::event::Cause, ts_ns: u64) -> Input {
        Input::Event(Event::ConnectError(crate::event::ConnectError {
            ts_ns,
            duration_ns: 10_000,
            task: Some(Task {
                pid: 9,
                tid: 9,
                comm: Comm::new("binder"),
                thread: Comm::new("binder"),
                cgroup_id: 5,
            }),
            netns: 1,
            daddr: "10.0.0.1".parse().unwrap(),
            dport: 443,
            errno: 99,
            cause,
            saw_syn_sent: false,
        }))
    }

    #[test]
    fn eaddrnotavail_that_is_not_port_exhaustion_keeps_its_cause_and_gets_its_own_advice() {
        use crate::event::{Cause, FailCause};
        let mut e = Engine::new(Config::default());
        e.apply(&eaddrnotavail(Cause::AddressUnavailable, 4 * NS_PER_S));
        e.apply(&eaddrnotavail(Cause::AddressUnavailable, 4 * NS_PER_S));
        e.apply(&eaddrnotavail(Cause::PortExhaustion, 5 * NS_PER_S));
        let m = e.model(6 * NS_PER_S);
        assert_eq!(
            m.system.connect_errors_by_cause,
            [
                CauseCount {
                    cause: FailCause::PortExhaustion,
                    count: 1
                },
                CauseCount {
                    cause: FailCause::AddressUnavailable,
                    count: 2
                },
            ]
        );
        let a = m
            .system
            .advice
            .iter()
            .find(|a| a.key == "address_unavailable")
            .expect("advice");
        assert!(a.text.starts_with("2 connect() call(s)"), "{}", a.text);
        assert!(a.text.contains("not port exhaustion"), "{}", a.text);
        assert_eq!(
            verdict::failure_causes_text(&m.system.connect_errors_by_cause),
            "1 EADDRNOTAVAIL: no free local port, 2 EADDRNOTAVAIL for an unassigned source \
             address or a route, not ports"
        );
    }

    #[test]
    fn address_unavailable_alone_is_not_time_wait_pressure() {
        let mut e = Engine::new(Config::default());
        // A small range and tw_reuse off: what would draw the TIME_WAIT
        // advice if EADDRNOTAVAIL were taken for port exhaustion.
        e.apply(&Input::Host(HostInfo {
            hostname: "h".into(),
            kernel: "6.18.0".into(),
            clock: crate::clock::WallClock {
                mono_ns: 0,
                unix_ns: 1_700_000_000_000_000_000,
            },
            netns: 1,
            sysctls: crate::input::Sysctls {
                port_range: (40000, 40009),
                reserved_ports: vec![],
                tcp_tw_reuse: Some(0),
                tcp_tw_reuse_delay_ms: None,
                tcp_timestamps: Some(1),
                tcp_max_tw_buckets: None,
                tcp_fin_timeout: None,
            },
        }));
        e.apply(&eaddrnotavail(
            crate::event::Cause::AddressUnavailable,
            4 * NS_PER_S,
        ));
        let m = e.model(6 * NS_PER_S);
        let keys: Vec<&str> = m.system.advice.iter().map(|a| a.key).collect();
        assert!(keys.contains(&"address_unavailable"), "{keys:?}");
        assert!(!keys.contains(&"port_range_small"), "{keys:?}");
        assert!(!keys.contains(&"tw_reuse_off"), "{keys:?}");
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
        let old = ServiceId::new(ServiceKind::Systemd, "old.service");
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
}
