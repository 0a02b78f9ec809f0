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
use crate::event::{Comm, Event, Losses, Task};

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
    /// The symbolized user stack of a sampled active open (`--stack-sample`):
    /// where in its code a service opens connections to a destination.
    CallStack(CallStack),
    /// The names the container runtime keeps for a container or pod id a
    /// cgroup path carries (`system::runtime`).
    Workload(Workload),
    /// Which process holds each socket of interest of the latest socket
    /// tables (found through /proc/PID/fd; see `system::owners`).
    SocketOwners(SocketOwners),
    /// The runtime a connecting process runs on (`system::langrt`), read
    /// once per process off the intake path: the fix is given in its words.
    Runtime(ProcRuntime),
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
            // Symbolized off the intake path, so it arrives after later
            // events: it annotates, it does not advance time.
            Input::CallStack(_) => None,
            Input::Workload(_) => None,
            Input::SocketOwners(o) => Some(o.ts_ns),
            Input::Runtime(_) => None,
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

/// TCP state numbers (include/net/tcp_states.h) of the states sock_diag
/// reports as [`SockState::Other`].
pub const TCP_FIN_WAIT1: u8 = 4;
pub const TCP_FIN_WAIT2: u8 = 5;
pub const TCP_CLOSE_WAIT: u8 = 8;
pub const TCP_LAST_ACK: u8 = 9;
pub const TCP_LISTEN: u8 = 10;
pub const TCP_CLOSING: u8 = 11;

impl SockState {
    /// A live socket (not TIME_WAIT, not a listener) that holds its local
    /// port: ESTABLISHED, SYN_SENT, FIN_WAIT1/2, CLOSE_WAIT, LAST_ACK,
    /// CLOSING.
    pub fn holds_port_open(self) -> bool {
        match self {
            SockState::Established | SockState::SynSent => true,
            SockState::TimeWait => false,
            SockState::Other(n) => matches!(
                n,
                TCP_FIN_WAIT1 | TCP_FIN_WAIT2 | TCP_CLOSE_WAIT | TCP_LAST_ACK | TCP_CLOSING
            ),
        }
    }

    pub fn is_close_wait(self) -> bool {
        self == SockState::Other(TCP_CLOSE_WAIT)
    }
}

/// At most this many sockets of one table are looked up for their owner.
pub const MAX_OWNER_LOOKUPS: usize = 65_536;

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
    /// The kernel was not asked for TIME_WAIT sockets (most readings under
    /// churn, see `live::FULL_TABLE_EVERY`): the table says nothing about
    /// them, and the engine keeps the TIME_WAIT it built from the last
    /// full table and the closes since.
    pub without_time_wait: bool,
}

impl SocketTable {
    /// The sockets this host connected out from: those whose local port
    /// is not a listener's (accepted connections share the listener's).
    pub fn outbound(&self) -> impl Iterator<Item = &SocketEntry> {
        // Walked for every entry of every table, a few times per table (a
        // churning host's table is tens of thousands of TIME_WAIT sockets):
        // FxHash, and no lookups at all in a namespace with no listener.
        let listen: rustc_hash::FxHashSet<(Option<IpAddr>, u16)> = self
            .entries
            .iter()
            .filter(|e| e.state == SockState::Other(TCP_LISTEN))
            .map(|e| ((!e.saddr.is_unspecified()).then_some(e.saddr), e.sport))
            .collect();
        self.entries.iter().filter(move |e| {
            e.state != SockState::Other(TCP_LISTEN)
                && (listen.is_empty()
                    || (!listen.contains(&(None, e.sport))
                        && !listen.contains(&(Some(e.saddr), e.sport))))
        })
    }

    /// The sockets whose owner is worth finding: the live outbound ones
    /// (with a file, so inode ≠ 0: an orphan has none) to every
    /// (local addr, remote addr, remote port) that has a socket in
    /// CLOSE_WAIT. A host with no CLOSE_WAIT asks for none, so churn alone
    /// never makes portwatch walk /proc. At most [`MAX_OWNER_LOOKUPS`].
    pub fn owner_wanted(&self) -> Vec<&SocketEntry> {
        let out: Vec<&SocketEntry> = self.outbound().collect();
        let leaky: rustc_hash::FxHashSet<(IpAddr, IpAddr, u16)> = out
            .iter()
            .filter(|e| e.state.is_close_wait())
            .map(|e| (e.saddr, e.daddr, e.dport))
            .collect();
        if leaky.is_empty() {
            return Vec::new();
        }
        out.into_iter()
            .filter(|e| {
                e.inode != 0
                    && e.state.holds_port_open()
                    && leaky.contains(&(e.saddr, e.daddr, e.dport))
            })
            .take(MAX_OWNER_LOOKUPS)
            .collect()
    }
}

/// The process found holding a socket (by its inode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketOwner {
    pub inode: u32,
    /// The first process found with the socket open (a forked child
    /// sharing it may hold it too).
    pub pid: u32,
    pub comm: Comm,
    /// cgroup v2 id of the process (0 when unknown), as events carry it.
    pub cgroup_id: u64,
}

/// One owner lookup: the owners found for the sockets asked about, and
/// how many could not be attributed.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SocketOwners {
    pub ts_ns: u64,
    pub owners: Vec<SocketOwner>,
    /// Sockets asked about whose owner was not found (closed meanwhile, or
    /// the walk stopped at its bound).
    pub not_found: u64,
    /// /proc/PID/fd directories that could not be read (permission).
    pub failed: u64,
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

/// Names of one container or pod, as its runtime keeps them: looked up by
/// the id in its cgroup path, once, off the intake path.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Workload {
    /// The id it was looked up by: a container id (hex, as in the cgroup
    /// path) or a Kubernetes pod uid.
    pub id: String,
    /// Where the names were found: `containerd`, `crio`, `docker`,
    /// `pod-logs` (`/var/log/pods`).
    pub source: String,
    /// Kubernetes namespace and pod name.
    pub pod_namespace: Option<String>,
    pub pod_name: Option<String>,
    /// The Kubernetes container name, or docker's container name.
    pub container: Option<String>,
}

/// Most frames kept per stack (innermost first): the call site and its
/// callers; deeper frames (main, the runtime's start) tell nothing.
pub const MAX_STACK_FRAMES: usize = 16;

/// One sampled connect()'s user-space call stack, symbolized in userspace
/// (`system::symbols`), attributed to its service → destination pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallStack {
    /// When the connection was opened (CLOCK_MONOTONIC ns).
    pub ts_ns: u64,
    pub task: Task,
    pub netns: u32,
    pub daddr: IpAddr,
    pub dport: u16,
    /// Innermost first, at most [`MAX_STACK_FRAMES`]: `function`,
    /// `function (file:line)` where debug info has it, or `0xADDR (module)`
    /// / `0xADDR` where nothing names the address.
    pub frames: Vec<String>,
    /// What limited the frames, if anything: the process exited before it
    /// was symbolized (raw addresses), the capture failed, an interpreter
    /// or JIT whose own frames are not visible.
    pub note: Option<String>,
}

/// The runtime one process runs on, and why portwatch believes it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ProcRuntime {
    pub pid: u32,
    /// `/proc/PID/exe` as read.
    pub exe: String,
    /// `Python`, `Go`, `Java`, `Node.js`, `Ruby`, `Perl`, `native (glibc)`,
    /// `native (musl)` or `native`.
    pub name: String,
    /// Why: `libpython3.11 mapped`, `executable node`, ...
    pub evidence: String,
}
