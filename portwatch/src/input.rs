//! Everything the engine is told, as one stream of [`Input`]s.
//!
//! Live mode builds this stream from the probe (events, losses) and from
//! collectors that read /proc, /sys and netlink (host context, socket table,
//! kernel counters, cgroup paths). The recorder writes the same stream to a
//! file and replay reads it back, so live and replayed views are computed by
//! the same engine from the same inputs. The engine itself never does I/O
//! and never reads a clock: time only advances through `Tick` and event
//! timestamps (CLOCK_MONOTONIC ns, the kernel's `bpf_ktime_get_ns`).

use std::net::IpAddr;

use crate::clock::WallClock;
use crate::event::{Event, Losses};

#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// Host context; the first input of every stream.
    Host(HostInfo),
    /// A connection closed or a connect failed.
    Event(Event),
    /// Time has passed; `now_ns` is CLOCK_MONOTONIC.
    Tick { now_ns: u64 },
    /// A cgroup id resolved to its path relative to the cgroup root
    /// (e.g. `/system.slice/nginx.service`), or `None` when it could not be
    /// resolved (unknown id, cgroup gone).
    Cgroup { id: u64, path: Option<String> },
    /// The live socket table (netlink sock_diag), read at start and then
    /// periodically to correct drift from missed or lost events.
    Sockets(SocketTable),
    /// Kernel counters from /proc/net/sockstat and /proc/net/netstat.
    Counters(KernelCounters),
    /// Cumulative kernel-side loss counters.
    Losses { ts_ns: u64, losses: Losses },
    /// What was read inside a network namespace other than portwatch's own
    /// (a container's, a pod's): its sysctls and counters, or why they
    /// could not be read. Its socket table comes as `Sockets` with its
    /// `netns`.
    Netns(NetnsInfo),
    /// The networks of a namespace's interfaces (address and prefix): what
    /// counts as this host's own network when judging whether a
    /// destination sits behind a NAT gateway.
    Networks(LocalNetworks),
}

impl Input {
    /// CLOCK_MONOTONIC time this input describes, if it has one.
    pub fn ts_ns(&self) -> Option<u64> {
        match self {
            Input::Host(h) => Some(h.clock.mono_ns),
            Input::Event(e) => Some(e.ts_ns()),
            Input::Tick { now_ns } => Some(*now_ns),
            Input::Cgroup { .. } => None,
            Input::Sockets(t) => Some(t.ts_ns),
            Input::Counters(c) => Some(c.ts_ns),
            Input::Losses { ts_ns, .. } => Some(*ts_ns),
            Input::Netns(n) => Some(n.ts_ns),
            Input::Networks(n) => Some(n.ts_ns),
        }
    }
}

/// What is known about the host when observation starts.
#[derive(Clone, Debug, PartialEq)]
pub struct HostInfo {
    pub hostname: String,
    /// `uname -r`.
    pub kernel: String,
    /// Monotonic → wall-clock anchor for display.
    pub clock: WallClock,
    /// Network namespace the sysctls were read in (inode), 0 if unknown.
    pub netns: u32,
    pub sysctls: Sysctls,
}

/// The sysctls the port budget and the advice depend on (net.ipv4.*).
/// `None` where the kernel does not have the knob.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Sysctls {
    /// `ip_local_port_range` (inclusive).
    pub port_range: (u16, u16),
    /// `ip_local_reserved_ports`, as inclusive ranges.
    pub reserved_ports: Vec<(u16, u16)>,
    pub tcp_tw_reuse: Option<i64>,
    /// `tcp_tw_reuse_delay` (ms), Linux 6.6+.
    pub tcp_tw_reuse_delay_ms: Option<i64>,
    pub tcp_timestamps: Option<i64>,
    pub tcp_max_tw_buckets: Option<i64>,
    pub tcp_fin_timeout: Option<i64>,
}

/// TCP states as sock_diag reports them (include/net/tcp_states.h numbers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SockState {
    Established,
    SynSent,
    TimeWait,
    /// Any other state (FIN_WAIT*, CLOSE_WAIT, LISTEN, ...), with its number.
    Other(u8),
}

/// One socket of the live table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketEntry {
    pub state: SockState,
    pub saddr: IpAddr,
    pub sport: u16,
    pub daddr: IpAddr,
    pub dport: u16,
    /// For TIME_WAIT: ms until the kernel frees it; else the socket's
    /// timer, 0 if none.
    pub expires_ms: u32,
    /// Owning uid and inode (0 for TIME_WAIT, which has no owner).
    pub uid: u32,
    pub inode: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SocketTable {
    pub ts_ns: u64,
    /// Network namespace the table was read in (inode), 0 if unknown.
    pub netns: u32,
    pub entries: Vec<SocketEntry>,
}

/// Cumulative kernel counters; the engine turns them into rates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct KernelCounters {
    pub ts_ns: u64,
    /// /proc/net/sockstat `TCP: inuse`.
    pub tcp_inuse: u64,
    /// /proc/net/sockstat `TCP: tw`.
    pub tcp_tw: u64,
    /// /proc/net/netstat TcpExt `TW` (TIME_WAIT sockets finished normally).
    pub tw: u64,
    /// TcpExt `TWRecycled` (TIME_WAIT reused by tcp_tw_reuse).
    pub tw_recycled: u64,
    /// TcpExt `TCPTimeWaitOverflow` (tcp_max_tw_buckets hit).
    pub tw_overflow: u64,
    /// The namespace's connection-tracking table; `None` when the kernel
    /// has no nf_conntrack (module not loaded).
    pub conntrack: Option<Conntrack>,
}

/// nf_conntrack's table as one namespace sees it. `nf_conntrack_count` and
/// `/proc/net/stat/nf_conntrack` are per network namespace; the limit
/// `nf_conntrack_max` is one for the whole host (each namespace's count is
/// checked against it). Cumulative counters are summed over CPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Conntrack {
    /// `net.netfilter.nf_conntrack_count`: entries now.
    pub count: u64,
    /// `net.netfilter.nf_conntrack_max`, if readable.
    pub max: Option<u64>,
    /// `/proc/net/stat/nf_conntrack` `insert_failed`, `drop`, `early_drop`
    /// (`None` without CONFIG_NF_CONNTRACK_PROCFS).
    pub stats: Option<ConntrackStats>,
}

/// Cumulative nf_conntrack failure counters (summed over CPUs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ConntrackStats {
    /// An entry could not be inserted (a race, or a clash it could not resolve).
    pub insert_failed: u64,
    /// A packet was dropped because the table was full and no entry could
    /// be evicted.
    pub drop: u64,
    /// An entry was evicted early to make room (the table was full).
    pub early_drop: u64,
}

/// The interface networks of one namespace (`system::ifaddrs`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct LocalNetworks {
    pub ts_ns: u64,
    /// The namespace (inode) they were read in.
    pub netns: u32,
    /// Interface address and prefix length, e.g. (10.0.1.5, 24).
    pub nets: Vec<(IpAddr, u8)>,
}

/// One reading of one network namespace (see `system::netns`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct NetnsInfo {
    pub ts_ns: u64,
    /// Its inode, as events carry it.
    pub netns: u32,
    /// Read inside it; `None` when not read this time (the last known
    /// values stay).
    pub sysctls: Option<Sysctls>,
    /// Its /proc/net/sockstat and netstat counters (`ts_ns` is this
    /// reading's).
    pub counters: Option<KernelCounters>,
    /// Why (part of) it could not be read: task gone, permission.
    pub error: Option<String>,
    /// Every task seen in it has exited: what is known is its last reading.
    pub stale: bool,
}
