//! The model: what every view (top, top --batch, report) reads.
//!
//! A plain value computed by [`super::Engine::model`] at a given time; views
//! never change it. Units are in the field names.

use std::net::IpAddr;

use serde::Serialize;

use super::service::ServiceId;
use crate::clock::WallClock;
use crate::event::Losses;
use crate::input::Sysctls;

/// Statistics kept for every key (process, service, destination, pair,
/// inbound port). Serialized as the `…stats` of `top --batch --json` (the
/// names there predate the units-in-names rule and are kept: `new_per_sec`
/// is the 10 s rate).
#[derive(Clone, Debug, PartialEq, Serialize, Default)]
pub struct Stats {
    /// New connections per second over the last 10, 1 and 60 complete
    /// seconds (over fewer when observation started more recently).
    #[serde(rename = "new_per_sec")]
    pub new_per_s_10s: f64,
    #[serde(rename = "new_per_sec_1s")]
    pub new_per_s_1s: f64,
    #[serde(rename = "new_per_sec_60s")]
    pub new_per_s_60s: f64,
    /// Connections reported (closed) since observation started, including
    /// failed handshakes. Counted in the second they started.
    pub new_total: u64,
    /// Seconds among the last 10 complete ones with at least one new
    /// connection: tells sustained churn from a burst.
    #[serde(skip)]
    pub active_s_10s: u32,
    /// Connection lifetime percentiles (established connections), in ms.
    pub lifetime_p50_ms: Option<f64>,
    pub lifetime_p90_ms: Option<f64>,
    pub lifetime_p99_ms: Option<f64>,
    /// Handshake (SYN → ESTABLISHED) percentiles, in ms.
    pub handshake_p50_ms: Option<f64>,
    pub handshake_p99_ms: Option<f64>,
    /// Share of closed connections where this host sent the first FIN.
    pub closed_locally_share: Option<f64>,
    /// Locally closed connections per second over the last 10 s: the rate at
    /// which TIME_WAIT sockets are created.
    #[serde(skip)]
    pub local_close_per_s_10s: f64,
    /// TIME_WAIT sockets held now: connections closed locally within the last
    /// 60 s (Linux's fixed TIME_WAIT length). For destinations, from the
    /// socket table when one was read, plus local closes since.
    pub time_wait: u64,
    /// Of those, how many expire within the next 10, 30, 60 s.
    pub tw_expiring_10s: u64,
    pub tw_expiring_30s: u64,
    pub tw_expiring_60s: u64,
    #[serde(rename = "connect_errors")]
    pub connect_errors_total: u64,
    /// Failed connects and failed handshakes by errno, EADDRNOTAVAIL first,
    /// then by count.
    #[serde(rename = "connect_errors_by_errno")]
    pub connect_errors: Vec<ErrnoCount>,
    /// Failures by cause (port_exhaustion, address_unavailable, refused,
    /// timed_out, aborted, reset, unreachable, other), in that order, only
    /// causes seen. Sums to `connect_errors`.
    pub connect_errors_by_cause: Vec<CauseCount>,
    /// How long failed handshakes waited before they failed (SYN_SENT to
    /// CLOSE: an application's connect timeout, the kernel's SYN retries,
    /// or the round trip of a refusal), in ms.
    pub failed_handshake_p50_ms: Option<f64>,
    pub failed_handshake_p99_ms: Option<f64>,
    /// SYNs the kernel retransmitted (`tcp:tcp_retransmit_skb` in SYN_SENT)
    /// for outbound connections that closed since the key appeared,
    /// established or not: a SYN that needed a retransmission waited at
    /// least 1 s for an answer (a drop on the path, a full backlog, a NAT
    /// or conntrack table out of room).
    pub syn_retransmits: u64,
    /// Of the EADDRNOTAVAIL failures, those the kernel saw as port
    /// exhaustion (the rest: address unavailable). For the exporter.
    #[serde(skip)]
    pub port_exhaustion_total: u64,
    /// Connections this host closed first since the key appeared.
    #[serde(skip)]
    pub local_closes_total: u64,
    /// Sum of the established connections' lifetimes, in seconds (with
    /// `lifetime_buckets`, a Prometheus histogram).
    #[serde(skip)]
    pub lifetime_sum_s: f64,
    /// New connections in each of the last 60 complete seconds, oldest
    /// first (the TUI's sparklines and rate chart).
    #[serde(skip)]
    pub new_series_60s: Vec<u32>,
    /// Lifetime counts by decade: "<1ms", "<10ms", "<100ms", "<1s", "<10s", ">=10s".
    #[serde(skip)]
    pub lifetime_buckets: Vec<(&'static str, u64)>,
    /// When the last failed connect or handshake happened (CLOCK_MONOTONIC).
    #[serde(skip)]
    pub last_error_ns: Option<u64>,
}

/// The window, in seconds, of every `*_per_s_10s` rate: the rates `top`
/// shows on one header line share it, and the header says so.
pub const RATE_WINDOW_S: u64 = 10;

/// Port pressure (held / budget) at which `top` draws a destination's bar
/// yellow, and red. At the red one the destination is pinned to the top of
/// the Destinations view, as is one with an EADDRNOTAVAIL in the last
/// [`RATE_WINDOW_S`].
pub const PRESSURE_WARN: f64 = 0.5;
pub const PRESSURE_ALERT: f64 = 0.9;

/// Failures of one errno per second over the last [`RATE_WINDOW_S`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ErrnoRate {
    pub errno: i32,
    /// Symbolic name, e.g. "EADDRNOTAVAIL".
    pub name: String,
    pub per_s: f64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CauseCount {
    pub cause: crate::event::FailCause,
    pub count: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ErrnoCount {
    pub errno: i32,
    /// Symbolic name, e.g. "EADDRNOTAVAIL".
    pub name: String,
    pub count: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProcessRow {
    pub pid: u32,
    pub comm: String,
    pub service: ServiceId,
    pub stats: Stats,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServiceRow {
    pub service: ServiceId,
    /// Network namespace (inode) and its name (`host`, the pod, container
    /// or unit whose tasks live in it, or `netns:INODE`); `None` where
    /// unknown.
    /// (when all its tasks are in one).
    pub netns: Option<u32>,
    pub netns_name: Option<String>,

    /// Some of the pids seen (most recent first, at most 16).
    pub pids: Vec<u32>,
    pub stats: Stats,
}

/// Who sends the first FIN on connections to a destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Closer {
    /// This host: TIME_WAIT lands here and holds this host's ports.
    Local,
    /// The peer: TIME_WAIT lands on the peer.
    Peer,
    Mixed,
    Unknown,
}

/// 0 meaning "unknown", written as `null`.
fn zero_as_null<S: serde::Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
    if *v == 0 {
        s.serialize_none()
    } else {
        s.serialize_u64(*v)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DestinationRow {
    /// Network namespace (inode) and its name (`host`, the pod, container
    /// or unit whose tasks live in it, or `netns:INODE`); `None` where
    /// unknown.
    pub netns: Option<u32>,
    pub netns_name: Option<String>,
    /// Local address the connections come from (a budget each); `None`
    /// when only failed connects were seen.
    pub laddr: Option<IpAddr>,
    pub daddr: IpAddr,
    pub dport: u16,
    #[serde(flatten)]
    pub stats: Stats,
    pub closer: Closer,
    /// Ports held to this destination now: ESTABLISHED + SYN_SENT +
    /// TIME_WAIT (socket table when read, adjusted by events since).
    pub held_ports: u64,
    /// Open part of `held_ports`: live sockets (ESTABLISHED, SYN_SENT,
    /// FIN_WAIT1/2, CLOSE_WAIT, LAST_ACK, CLOSING).
    pub open_ports: u64,
    /// Of its TIME_WAIT, the sockets a connect can take over because
    /// tcp_tw_reuse applies to this destination (older than the reuse
    /// delay): held, but not counted in `pressure` nor the forecast.
    pub time_wait_reusable: u64,
    /// Of `open_ports`, sockets in CLOSE_WAIT at the last socket table:
    /// the peer closed, the owning process has not.
    pub close_wait: u64,
    /// The process holding most of the ports to this destination (in its
    /// namespace), when it holds at least half of them: a connect that
    /// fails here for want of a port points at it.
    pub held_by: Option<Holder>,
    /// Whether a socket table has been read: without it, only connections
    /// closed since start are known and `held_ports` is a lower bound.
    pub from_socket_table: bool,
    /// Ephemeral ports available per (local addr, this destination), from
    /// its namespace's sysctls; 0 when they are unknown (`null` in JSON).
    #[serde(serialize_with = "zero_as_null")]
    pub budget: u64,
    /// Of `held_ports`: TIME_WAIT of connections to other destinations
    /// of the namespace whose port was bound before connect(). The kernel
    /// keeps such a port from every connect(), so it takes from this
    /// destination's budget too.
    pub bound_elsewhere: u64,
    /// (held_ports - time_wait_reusable) / budget: the share of the ports
    /// a connect cannot take.
    pub pressure: f64,
    /// Outside the host's own networks (see `engine::nat`): it may sit
    /// behind a NAT gateway. `None` when its namespace's networks are
    /// unknown.
    pub beyond_local_networks: Option<bool>,
    /// For a destination beyond them: gateway ports it needs in steady
    /// state, new/s × (mean lifetime + `--nat-hold-s`).
    pub nat_port_demand: Option<f64>,
    /// An unanswered handshake (timed_out, aborted) to it within the last
    /// [`RATE_WINDOW_S`].
    #[serde(skip)]
    pub unanswered_recently: bool,
    /// An EADDRNOTAVAIL connecting to it within the last [`RATE_WINDOW_S`].
    #[serde(skip)]
    pub eaddrnotavail_recently: bool,
    /// Pressure at or above [`PRESSURE_ALERT`], or `eaddrnotavail_recently`:
    /// `top` keeps it at the top of the Destinations view.
    #[serde(skip)]
    pub pinned: bool,
    #[serde(flatten)]
    pub forecast: Forecast,
}

/// A process holding ports (found through /proc/PID/fd from the socket
/// table's inodes).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Holder {
    pub pid: u32,
    pub comm: String,
    pub service: ServiceId,
    /// Live sockets (ports) it holds to the destination.
    pub ports: u64,
    /// Of those, in CLOSE_WAIT.
    pub close_wait: u64,
    /// It has the `leaks_sockets` verdict.
    pub leaks_sockets: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Forecast {
    /// TIME_WAIT sockets held in steady state at the current local-close
    /// rate r: r × 60, or r × the reuse delay where tcp_tw_reuse applies.
    #[serde(rename = "forecast_time_wait")]
    pub steady_time_wait: f64,
    /// steady_time_wait + open ports exceeds the budget.
    #[serde(rename = "forecast_exceeds_budget")]
    pub exceeds_budget: bool,
    /// Rough seconds until no port is free, when exceeding.
    pub exhaustion_in_s: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PairRow {
    pub service: ServiceId,
    pub pids: Vec<u32>,
    /// Network namespace (inode) and its name (`host`, the pod, container
    /// or unit whose tasks live in it, or `netns:INODE`); `None` where
    /// unknown.
    pub netns: Option<u32>,
    pub netns_name: Option<String>,

    pub daddr: IpAddr,
    pub dport: u16,
    pub stats: Stats,
}

/// Connections accepted by a listener on this host (inbound churn): keyed by
/// the local address and port, never a client verdict.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InboundRow {
    pub laddr: IpAddr,
    pub lport: u16,
    #[serde(flatten)]
    pub stats: Stats,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    pub service: ServiceId,
    pub pids: Vec<u32>,
    /// Network namespace (inode) and its name (`host`, the pod, container
    /// or unit whose tasks live in it, or `netns:INODE`); `None` where
    /// unknown.
    pub netns: Option<u32>,
    pub netns_name: Option<String>,

    pub daddr: IpAddr,
    pub dport: u16,
    /// "lacks_pooling".
    pub verdict: &'static str,
    pub new_per_s: f64,
    pub lifetime_p50_ms: Option<f64>,
    pub time_wait: u64,
    /// Share of the destination's port budget this pair's TIME_WAIT holds.
    pub budget_share: f64,
    pub closed_locally_share: Option<f64>,
    pub connect_errors_total: u64,
    /// `leaks_sockets` only (`None` for the others): CLOSE_WAIT sockets
    /// the process holds, the ports (live sockets) it holds, how long its
    /// oldest CLOSE_WAIT has been seen, and the connects that failed with
    /// EADDRNOTAVAIL (no free port) to destinations whose ports it holds.
    /// `binds_before_connect` sets `held_ports` (its bound TIME_WAIT, held
    /// against every destination) and `failures_caused` (other services'
    /// port-exhaustion failures in its namespace).
    pub close_wait: Option<u64>,
    pub held_ports: Option<u64>,
    pub held_for_s: Option<f64>,
    pub failures_caused: Option<u64>,
    pub evidence: String,
    pub fix: String,
    /// Where in the service's code these connections are opened: the most
    /// sampled user stacks at connect() (`--stack-sample`), with their share
    /// of the samples. Absent (empty) while no stack was sampled.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub call_sites: Vec<super::callsites::CallSite>,
    /// `lacks_pooling`: the runtime the client runs on (read from its
    /// process, `system::langrt`), `None` while unknown.
    pub runtime: Option<ClientRuntime>,
    /// `lacks_pooling`: the protocol the destination port suggests
    /// (`postgres`, `redis`, `mysql`, `memcached`, `http`), if any.
    pub protocol: Option<&'static str>,
}

/// The runtime a client runs on and why portwatch believes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClientRuntime {
    /// `Python`, `Go`, `Java`, `Node.js`, `Ruby`, `Perl`, `native (glibc)`, ...
    pub name: String,
    /// `libpython3.11 mapped`, `executable node`, ...
    pub evidence: String,
}

/// A process that binds its client sockets to a port before connect():
/// each such port is held against every destination of its namespace.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BoundRow {
    pub service: ServiceId,
    pub pid: u32,
    pub comm: String,
    pub netns: Option<u32>,
    pub netns_name: Option<String>,
    /// Connections seen whose port was bound before connect().
    pub bound_connections_total: u64,
    /// Their TIME_WAIT sockets now: ports no connect() of the namespace
    /// can use, whatever its destination.
    pub time_wait: u64,
    /// The destination it connected to last.
    pub daddr: Option<IpAddr>,
    pub dport: Option<u16>,
    /// Failed bind() calls (EADDRINUSE: the range is used up).
    pub bind_errors: Vec<ErrnoCount>,
    pub bind_errors_total: u64,
    /// The address and port the last failed bind() asked for.
    pub last_bind_addr: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Advice {
    /// "warning", "suggestion" or "note".
    pub level: &'static str,
    /// Short key for tooling, e.g. "tw_reuse_off".
    pub key: &'static str,
    pub text: String,
    /// The namespace whose values it quotes.
    pub netns: Option<u32>,
    pub netns_name: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Default)]
pub struct SystemModel {
    pub hostname: String,
    /// Monotonic → wall-clock anchor of the host input, for display.
    #[serde(skip)]
    pub clock: Option<WallClock>,
    pub kernel: String,
    #[serde(skip)]
    pub sysctls: Option<Sysctls>,
    /// `ip_local_port_range`, inclusive.
    pub port_range: Option<(u16, u16)>,
    /// Size of the range minus reserved ports in it.
    pub budget: Option<u64>,
    /// /proc/net/sockstat (latest): TIME_WAIT and in-use TCP sockets.
    pub sockstat_tw: Option<u64>,
    pub sockstat_inuse: Option<u64>,
    /// /proc/net/netstat rates between the last two readings.
    pub tw_per_s: Option<f64>,
    pub tw_recycled_per_s: Option<f64>,
    pub tw_overflow_per_s: Option<f64>,
    /// Outbound connections (all services), per second.
    pub new_per_s_1s: f64,
    pub new_per_s_10s: f64,
    pub new_per_s_60s: f64,
    pub connect_errors_per_s_10s: f64,
    /// EADDRNOTAVAIL (port exhaustion, among other causes) per second over
    /// the last 10 s.
    pub eaddrnotavail_per_s_10s: f64,
    /// `connect_errors_per_s_10s` by errno, EADDRNOTAVAIL first, then by
    /// rate: the parts add up to the total (same seconds, same window).
    #[serde(skip)]
    pub connect_errors_per_s_10s_by_errno: Vec<ErrnoRate>,
    /// TIME_WAIT sockets held: /proc/net/sockstat's count when read, else
    /// the sum over destinations.
    pub time_wait: u64,
    /// Live sockets to all destinations (ports in use besides TIME_WAIT).
    pub open_ports: u64,
    /// Outbound sockets in CLOSE_WAIT in the latest socket tables, and of
    /// them those whose owning process is not known.
    pub close_wait: u64,
    pub close_wait_unattributed: u64,
    /// Owner lookups that failed: /proc/PID/fd directories that could not
    /// be read since start, plus sockets of the latest lookup whose owner
    /// was not found.
    pub owner_lookup_failures: u64,
    pub connect_errors: Vec<ErrnoCount>,
    pub connect_errors_total: u64,
    /// Failures by cause, as in [`Stats::connect_errors_by_cause`].
    pub connect_errors_by_cause: Vec<CauseCount>,
    /// SYNs retransmitted by outbound connections (all services), as in
    /// [`Stats::syn_retransmits`].
    pub syn_retransmits: u64,
    /// The connection-tracking table in the worst state among the
    /// namespaces read (most entries turned away per second, then the
    /// fullest; the host's on a tie); `None` without nf_conntrack.
    pub conntrack: Option<super::netns::ConntrackRow>,
    /// Failures (as `connect_errors`) in the last wall-clock minutes that
    /// had any, as counted so far; older minutes are forgotten.
    #[serde(skip)]
    pub failure_minutes: Vec<MinuteFailures>,
    /// Connections seen since the start (outbound: all services).
    #[serde(skip)]
    pub outbound_total: u64,
    #[serde(skip)]
    pub inbound_total: u64,
    /// Kernel-side and decode losses (cumulative).
    #[serde(skip)]
    pub losses: Losses,
    pub lost_events: u64,
    /// Events applied (closes and connect errors), for the exporter.
    #[serde(skip)]
    pub events_total: u64,
    /// The latest kernel counters as read (cumulative), for the exporter.
    #[serde(skip)]
    pub counters: Option<crate::input::KernelCounters>,
    /// Keys folded into "others" because a table was full, per table (an
    /// estimate of distinct keys), and keys aged out for being idle.
    pub folded_keys: u64,
    pub aged_out_keys: u64,
    pub advice: Vec<Advice>,
}

/// Failures in one wall-clock minute.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MinuteFailures {
    /// Unix minute (seconds / 60).
    pub minute: i64,
    /// errno → count.
    pub by_errno: std::collections::BTreeMap<i32, u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Default)]
pub struct Model {
    pub now_ns: u64,
    /// Time of the first input (None before any).
    #[serde(skip)]
    pub start_ns: Option<u64>,
    /// Seconds of observation (first input to now).
    pub observed_s: f64,
    pub system: SystemModel,
    /// Sorted by new_per_s_10s, then total, descending; ties by key.
    pub processes: Vec<ProcessRow>,
    pub services: Vec<ServiceRow>,
    pub destinations: Vec<DestinationRow>,
    pub pairs: Vec<PairRow>,
    pub inbound: Vec<InboundRow>,
    /// Processes that bind() client sockets before connect(), or whose
    /// bind() failed; most ports held first.
    pub bound: Vec<BoundRow>,
    pub verdicts: Vec<Verdict>,
    /// Network namespaces seen (the host's first), each with its own
    /// sysctls and counters as read inside it.
    pub namespaces: Vec<super::netns::NetnsRow>,
    /// Rows folded into "others" per table, when a table was full.
    pub others: Others,
}

#[derive(Clone, Debug, PartialEq, Serialize, Default)]
pub struct Others {
    pub processes: u64,
    pub services: u64,
    pub destinations: u64,
    pub pairs: u64,
    pub inbound: u64,
    pub namespaces: u64,
}
