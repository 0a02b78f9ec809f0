//! The ABI between portwatch's eBPF programs and its userspace.
//!
//! Every type here is `#[repr(C)]`, made of fixed-width integers only (no
//! `bool`, no enums) and has its size asserted, so there is no hidden padding
//! and both sides agree byte for byte. Userspace never transmutes these bytes:
//! it decodes them with length checks (`portwatch::event`).
#![no_std]

/// Name of the ring buffer that carries [`RawEvent`]s.
pub const EVENTS_MAP: &str = "EVENTS";
/// Name of the per-CPU array of `u64` counters indexed by `STAT_*`.
pub const STATS_MAP: &str = "STATS";
/// Name of the hash of sockets being followed (key: socket address).
pub const SOCKS_MAP: &str = "SOCKS";
/// Name of the array of in-flight `connect()` calls (slot: thread id modulo
/// `CONNECTS_SLOTS`).
pub const CONNECTS_MAP: &str = "CONNECTS";
/// Name of the hash of in-flight `bind()` calls (key: thread id).
pub const BINDS_MAP: &str = "BINDS";
/// Name of the LRU hash of sockets whose failed handshake was reported
/// after their (non-blocking) connect() had returned (key: socket address).
pub const FAILED_SOCKS_MAP: &str = "FAILED_SOCKS";
/// Name of the one-slot array counting inbound entries of `SOCKS`.
pub const SOCKS_INBOUND_MAP: &str = "SOCKS_INBOUND";
/// Name of the global (u32) that caps inbound entries of `SOCKS`; userspace
/// sets it to half the map's size before load.
pub const SOCKS_INBOUND_MAX_GLOBAL: &str = "SOCKS_INBOUND_MAX";

/// Ring buffer size in bytes. Userspace drains it every 10 ms; at 30,000
/// connections/s that is ~300 records (~45 KiB). 4 MiB leaves room for a
/// ~250 ms stall of the reader at that rate before anything is lost.
pub const EVENTS_RING_BYTES: u32 = 4 * 1024 * 1024;
/// Sockets followed at once. Each entry is ~80 bytes of value; 65,536 covers
/// far more concurrently open outbound connections than a port range allows
/// per destination, while staying a few MiB of kernel memory. A plain
/// (preallocated) hash with an explicit delete at CLOSE: every TCP socket
/// passes through CLOSE before it is freed, so entries do not leak; when
/// the map is full the new socket is not followed and that is counted.
pub const SOCKS_MAX_ENTRIES: u32 = 65_536;
/// Name of the stack trace map that holds sampled connect() user stacks.
pub const STACKS_MAP: &str = "STACKS";
/// Distinct user stacks held at once. Userspace reads and deletes every id
/// it was sent at the next 10 ms drain, so this only has to cover the
/// samples of one drain interval; each entry is 127 × 8 bytes (~1 MiB in all).
pub const STACKS_MAX_ENTRIES: u32 = 1024;
/// Name of the global (in .rodata) holding the sampling period: one active
/// open in this many captures its user stack; 0 disables sampling, and the
/// verifier then drops the sampling code as dead.
pub const STACK_SAMPLE_GLOBAL: &str = "STACK_SAMPLE_EVERY";
/// Slots of the array of threads inside `connect()` (indexed by
/// `tid % CONNECTS_SLOTS`, 40 bytes each: 2.5 MiB). A power of two.
pub const CONNECTS_SLOTS: u32 = 65_536;
const _: () = assert!(CONNECTS_SLOTS.is_power_of_two());
/// Threads inside `bind()` at once (bind is rare and quick).
pub const BINDS_MAX_ENTRIES: u32 = 4_096;
/// Sockets whose failure was reported while no connect() on them was in
/// flight, remembered so that the application's next connect() on the same
/// socket (which returns that same error) is not a second failure. An LRU:
/// most such sockets are closed without another connect(), and an entry
/// aged out costs at most one duplicate report.
pub const FAILED_SOCKS_MAX_ENTRIES: u32 = 4_096;
/// When this many bytes are waiting in the ring buffer the producer wakes the
/// reader instead of leaving the data for the next timed drain.
pub const WAKEUP_THRESHOLD_BYTES: u64 = (EVENTS_RING_BYTES as u64) / 8;
/// Producers wake the reader only while the pending bytes are within this
/// window above the threshold: a few wake-ups per crossing, not one per
/// record. A reader that lags behind would otherwise be woken for every
/// record (~10 µs of BPF time each), drain a record or two per wake-up and
/// fall further behind.
pub const WAKEUP_WINDOW_BYTES: u64 = 4096;

/// `STATS` index: a ring buffer reservation failed; the event was lost.
pub const STAT_RINGBUF_LOST: u32 = 0;
/// `STATS` index: a socket could not be followed because `SOCKS` was full
/// (or, for an inbound socket, because inbound sockets already hold their
/// share of it: half, so that a busy server never crowds out the outbound
/// connections portwatch is about); that connection will never be reported.
pub const STAT_SOCK_EVICTED: u32 = 1;
/// `STATS` index: a connect() lost its `CONNECTS` slot to another thread's
/// (their tids are equal modulo `CONNECTS_SLOTS`) and may go unreported.
/// Also: `BINDS` was full and a bind() could not be followed.
pub const STAT_CONNECT_MAP_FULL: u32 = 2;
/// `STATS` index: a socket closed that was never seen opening (it predates
/// portwatch, or was evicted). Not an error; shown for completeness.
pub const STAT_UNTRACKED_CLOSE: u32 = 3;
// `STATS` index 4 once counted submitted events; nothing read it and the
// bump cost a map lookup per record, so it is left unused.
/// `STATS` index: a program's `try_*` body failed (a read the kernel
/// refused, e.g. a connect() whose address pointer is bad); the record it
/// was building is lost.
pub const STAT_PROBE_ERRORS: u32 = 5;
/// Number of `STATS` slots.
pub const STATS_LEN: u32 = 8;

/// `RawEvent::kind`: a TCP connection reached CLOSE.
pub const KIND_CLOSE: u32 = 1;
/// `RawEvent::kind`: a `connect()` failed (or a port allocation failed
/// outside any `connect()` syscall, e.g. io_uring).
pub const KIND_CONNECT_ERROR: u32 = 2;
/// `RawEvent::kind`: `bind()` failed on a TCP socket (EADDRINUSE: no free
/// port in the range, or the port asked for is taken). `saddr`/`sport` are
/// the address asked for; `daddr`/`dport` are unused.
pub const KIND_BIND_ERROR: u32 = 3;

/// The local side sent the first FIN (passed FIN_WAIT1) and the connection
/// ended gracefully: a TIME_WAIT socket now holds the local port for 60 s.
/// Unset when an RST ended it (no TIME_WAIT follows).
pub const FLAG_LOCAL_CLOSE: u32 = 1 << 0;
/// `RawEvent::kind`: a sampled active open's user stack. Carries the task
/// fields, `netns`, `family`, `daddr`, `dport` (the destination is known at
/// SYN_SENT; the source port is not yet) and, in `errno`, the id of the stack
/// in `STACKS` as `i32` bits: negative is `bpf_get_stackid`'s error (e.g.
/// -EEXIST: the bucket holds another stack), so a lost capture is seen.
/// (16 leaves the small kind numbers to lifecycle records.)
pub const KIND_CONNECT_STACK: u32 = 16;

/// The connection reached ESTABLISHED at some point.
pub const FLAG_ESTABLISHED: u32 = 1 << 1;
/// Passive open (accepted by a listener on this host).
pub const FLAG_INBOUND: u32 = 1 << 2;
/// `pid`, `tid`, `comm` and `cgroup_id` are those of the task that opened
/// the connection. Unset for inbound connections, which are created in
/// softirq context where the current task is unrelated.
pub const FLAG_HAS_TASK: u32 = 1 << 3;
/// Port allocation failed: SYN_SENT→CLOSE with source port 0 in the
/// caller's context, i.e. the ephemeral range is exhausted for this
/// destination.
pub const FLAG_PORT_EXHAUSTED: u32 = 1 << 4;
/// The peer sent the first FIN (passed CLOSE_WAIT).
pub const FLAG_PEER_CLOSE: u32 = 1 << 5;
/// `bytes_sent`/`bytes_received` were read (BTF offsets were available).
pub const FLAG_HAS_BYTES: u32 = 1 << 6;
/// For KIND_CONNECT_ERROR: a SYN_SENT state was seen during this connect()
/// (the socket is TCP and got as far as choosing a route).
pub const FLAG_SAW_SYN_SENT: u32 = 1 << 7;
/// The socket's source port was chosen by `bind()` before `connect()` (it
/// was already non-zero at CLOSE→SYN_SENT): the port is held against every
/// destination, not one. On KIND_CONNECT_ERROR: connect() on such a socket
/// failed because its 4-tuple was taken (the EADDRNOTAVAIL of two sockets
/// bound to one port with SO_REUSEADDR, connecting to one destination).
pub const FLAG_BOUND_PORT: u32 = 1 << 8;

/// `AF_INET` as carried in `RawEvent::family`.
pub const AF_INET: u16 = 2;
/// `AF_INET6` as carried in `RawEvent::family`.
pub const AF_INET6: u16 = 10;

/// One record in the ring buffer: a closed connection or a failed connect.
///
/// Addresses are 16 bytes; IPv4 uses the first 4 (network byte order).
/// Ports are host byte order. Times are `bpf_ktime_get_ns()` (CLOCK_MONOTONIC).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawEvent {
    /// `KIND_*`.
    pub kind: u32,
    /// `FLAG_*`.
    pub flags: u32,
    /// Connection: CLOSE→SYN_SENT (or first passive state). Connect error:
    /// entry into connect().
    pub start_ns: u64,
    /// Connection: →CLOSE. Connect error: exit from connect().
    pub end_ns: u64,
    /// SYN_SENT→ESTABLISHED, 0 when never established.
    pub handshake_ns: u64,
    pub cgroup_id: u64,
    /// `tcp_sock.bytes_acked`.
    pub bytes_sent: u64,
    /// `tcp_sock.bytes_received`.
    pub bytes_received: u64,
    /// Inode number of the socket's (or task's) network namespace, 0 if unknown.
    pub netns: u32,
    /// Thread group id (the process id users know).
    pub pid: u32,
    pub tid: u32,
    /// Positive errno: `sk_err` of a failed handshake, or `-ret` of connect().
    pub errno: u32,
    pub family: u16,
    pub sport: u16,
    pub dport: u16,
    /// KIND_CLOSE, outbound: SYNs the kernel retransmitted while the
    /// socket was in SYN_SENT (`tcp:tcp_retransmit_skb`), saturating.
    pub syn_retrans: u16,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    /// Name of the thread that connected.
    pub comm: [u8; 16],
    /// Name of its process (the thread group leader), which is what names a
    /// service: threads of one process are often named apart (Java pools).
    /// Zero when `task_struct` offsets are unknown (no BTF).
    pub pcomm: [u8; 16],
}

/// Byte size of [`RawEvent`]; userspace rejects records of any other size.
pub const RAW_EVENT_SIZE: usize = 144;
const _: () = assert!(core::mem::size_of::<RawEvent>() == RAW_EVENT_SIZE);

/// Field offsets of the tracepoint records the programs read. These records
/// are ABI-stable in practice, so the programs use them as constants; userspace
/// checks every one against the tracepoint's `format` file before loading and
/// refuses to run on a kernel where they differ.
pub mod tp {
    /// `sock:inet_sock_set_state`: `const void *skaddr`.
    pub const SKADDR: usize = 8;
    /// `int oldstate`.
    pub const OLDSTATE: usize = 16;
    /// `int newstate`.
    pub const NEWSTATE: usize = 20;
    /// `__u16 sport` (host byte order).
    pub const SPORT: usize = 24;
    /// `__u16 dport` (host byte order).
    pub const DPORT: usize = 26;
    /// `__u16 family`.
    pub const FAMILY: usize = 28;
    /// `__u16 protocol`.
    pub const PROTOCOL: usize = 30;
    /// `__u8 saddr[4]`.
    pub const SADDR: usize = 32;
    /// `__u8 daddr[4]`.
    pub const DADDR: usize = 36;
    /// `__u8 saddr_v6[16]`.
    pub const SADDR_V6: usize = 40;
    /// `__u8 daddr_v6[16]`.
    pub const DADDR_V6: usize = 56;
    /// `tcp:tcp_retransmit_skb`: `const void *skaddr`.
    pub const RETRANS_SKADDR: usize = 16;
    /// `tcp:tcp_retransmit_skb`: `int state` (the socket's TCP state).
    pub const RETRANS_STATE: usize = 24;
    /// `syscalls:sys_enter_connect`: `struct sockaddr * uservaddr`.
    pub const CONNECT_USERVADDR: usize = 24;
    /// `syscalls:sys_exit_connect`: `long ret`.
    pub const CONNECT_RET: usize = 16;
    /// `syscalls:sys_enter_connect`: `int fd` (an 8-byte slot).
    pub const CONNECT_FD: usize = 16;
    /// `syscalls:sys_enter_bind`: `int fd` (an 8-byte slot).
    pub const BIND_FD: usize = 16;
    /// `syscalls:sys_enter_bind`: `struct sockaddr * umyaddr`.
    pub const BIND_UMYADDR: usize = 24;
    /// `syscalls:sys_exit_bind`: `long ret`.
    pub const BIND_RET: usize = 16;

    /// (tracepoint, field name, offset, size) for the load-time check.
    pub const EXPECTED: &[(&str, &str, usize, usize)] = &[
        ("sock/inet_sock_set_state", "skaddr", SKADDR, 8),
        ("sock/inet_sock_set_state", "oldstate", OLDSTATE, 4),
        ("sock/inet_sock_set_state", "newstate", NEWSTATE, 4),
        ("sock/inet_sock_set_state", "sport", SPORT, 2),
        ("sock/inet_sock_set_state", "dport", DPORT, 2),
        ("sock/inet_sock_set_state", "family", FAMILY, 2),
        ("sock/inet_sock_set_state", "protocol", PROTOCOL, 2),
        ("sock/inet_sock_set_state", "saddr", SADDR, 4),
        ("sock/inet_sock_set_state", "daddr", DADDR, 4),
        ("sock/inet_sock_set_state", "saddr_v6", SADDR_V6, 16),
        ("sock/inet_sock_set_state", "daddr_v6", DADDR_V6, 16),
        (
            "syscalls/sys_enter_connect",
            "uservaddr",
            CONNECT_USERVADDR,
            8,
        ),
        ("syscalls/sys_enter_connect", "fd", CONNECT_FD, 8),
        ("syscalls/sys_exit_connect", "ret", CONNECT_RET, 8),
        ("tcp/tcp_retransmit_skb", "skaddr", RETRANS_SKADDR, 8),
        ("tcp/tcp_retransmit_skb", "state", RETRANS_STATE, 4),
        ("syscalls/sys_enter_bind", "fd", BIND_FD, 8),
        ("syscalls/sys_enter_bind", "umyaddr", BIND_UMYADDR, 8),
        ("syscalls/sys_exit_bind", "ret", BIND_RET, 8),
    ];
}

/// Kernel struct field offsets that differ between kernels and builds. aya's
/// Rust eBPF side has no CO-RE relocation, so userspace resolves them from
/// /sys/kernel/btf/vmlinux and writes them into the program's `OFFSETS`
/// global before load. `OFFSET_UNKNOWN` means "not resolved; do not read":
/// the programs then report 0 for what depends on it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offsets {
    /// `tcp_sock.bytes_acked` (u64).
    pub tcp_bytes_acked: u32,
    /// `tcp_sock.bytes_received` (u64).
    pub tcp_bytes_received: u32,
    /// `sock.sk_err` (int).
    pub sock_sk_err: u32,
    /// `sock.__sk_common.skc_net` (a `possible_net_t`, i.e. `struct net *`).
    pub sock_net: u32,
    /// `net.ns.inum` (unsigned int).
    pub net_inum: u32,
    /// `task_struct.nsproxy` (pointer).
    pub task_nsproxy: u32,
    /// `nsproxy.net_ns` (pointer).
    pub nsproxy_net_ns: u32,
    /// `task_struct.group_leader` (pointer).
    pub task_group_leader: u32,
    /// `task_struct.comm` (char[16]).
    pub task_comm: u32,
    // The walk from a file descriptor to its socket (fd → file → socket →
    // sock), taken only when connect() or bind() failed: is it TCP?
    /// `task_struct.files` (pointer).
    pub task_files: u32,
    /// `files_struct.fdt` (pointer).
    pub files_fdt: u32,
    /// `fdtable.fd` (pointer to an array of `struct file *`).
    pub fdtable_fd: u32,
    /// `file.private_data` (a socket file's `struct socket *`).
    pub file_private_data: u32,
    /// `socket.type` (short: SOCK_STREAM, SOCK_DGRAM...).
    pub socket_type: u32,
    /// `socket.sk` (pointer).
    pub socket_sk: u32,
    /// `sock.sk_protocol` (u16 since Linux 5.6; a bitfield before, then unknown).
    pub sock_protocol: u32,
}

/// Marks an offset that could not be resolved.
pub const OFFSET_UNKNOWN: u32 = u32::MAX;

impl Offsets {
    /// Every offset unknown: what the object holds until userspace fills it in.
    pub const UNKNOWN: Offsets = Offsets {
        tcp_bytes_acked: OFFSET_UNKNOWN,
        tcp_bytes_received: OFFSET_UNKNOWN,
        sock_sk_err: OFFSET_UNKNOWN,
        sock_net: OFFSET_UNKNOWN,
        net_inum: OFFSET_UNKNOWN,
        task_nsproxy: OFFSET_UNKNOWN,
        nsproxy_net_ns: OFFSET_UNKNOWN,
        task_group_leader: OFFSET_UNKNOWN,
        task_comm: OFFSET_UNKNOWN,
        task_files: OFFSET_UNKNOWN,
        files_fdt: OFFSET_UNKNOWN,
        fdtable_fd: OFFSET_UNKNOWN,
        file_private_data: OFFSET_UNKNOWN,
        socket_type: OFFSET_UNKNOWN,
        socket_sk: OFFSET_UNKNOWN,
        sock_protocol: OFFSET_UNKNOWN,
    };
}

const _: () = assert!(core::mem::size_of::<Offsets>() == 16 * 4);

/// Name of the global in the eBPF object that holds [`Offsets`].
pub const OFFSETS_GLOBAL: &str = "OFFSETS";

#[cfg(feature = "user")]
// SAFETY: RawEvent is repr(C), all fields are integers or integer arrays, and
// its size is asserted above, so every bit pattern is valid and there is no padding.
unsafe impl aya::Pod for RawEvent {}

#[cfg(feature = "user")]
// SAFETY: as for RawEvent: repr(C), integers only, size asserted.
unsafe impl aya::Pod for Offsets {}
