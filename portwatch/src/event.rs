//! Decoded events: what the kernel reported, in userspace types.
//!
//! Everything downstream (trace output, engine, recorder) works on [`Event`];
//! only [`Event::decode`] looks at the kernel's bytes, with length checks.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use portwatch_common::{
    AF_INET, AF_INET6, FLAG_BOUND_PORT, FLAG_ESTABLISHED, FLAG_HAS_BYTES, FLAG_HAS_TASK,
    FLAG_INBOUND, FLAG_LOCAL_CLOSE, FLAG_PEER_CLOSE, FLAG_PORT_EXHAUSTED, FLAG_SAW_SYN_SENT,
    KIND_BIND_ERROR, KIND_CLOSE, KIND_CONNECT_ERROR, KIND_CONNECT_STACK, RAW_EVENT_SIZE, RawEvent,
};

/// EADDRNOTAVAIL: the errno that port exhaustion produces.
pub const EADDRNOTAVAIL: i32 = 99;

/// A task name as the kernel keeps it: at most 15 bytes, NUL-padded.
/// Kept inline (no allocation) because there is one per event.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Comm([u8; 16]);

impl Comm {
    pub fn from_bytes(raw: [u8; 16]) -> Self {
        Comm(raw)
    }

    /// Builds a comm from a string, truncated to 15 bytes like the kernel does.
    pub fn new(s: &str) -> Self {
        let mut raw = [0u8; 16];
        let n = s.len().min(15);
        raw[..n].copy_from_slice(&s.as_bytes()[..n]);
        Comm(raw)
    }

    pub fn as_bytes(&self) -> &[u8] {
        let end = self.0.iter().position(|&b| b == 0).unwrap_or(16);
        &self.0[..end]
    }

    pub fn is_empty(&self) -> bool {
        self.0[0] == 0
    }
}

impl fmt::Display for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&String::from_utf8_lossy(self.as_bytes()))
    }
}

impl fmt::Debug for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// This host connected out (active open).
    Outbound,
    /// A listener on this host accepted it (passive open).
    Inbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Outbound => "out",
            Direction::Inbound => "in",
        }
    }
}

/// The task an event is attributed to: the one that called connect().
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Task {
    /// Thread group id (the process id users know).
    pub pid: u32,
    pub tid: u32,
    /// Process name (the thread group leader's comm, as `ps` shows it):
    /// what services are named after. The thread's own name when the
    /// kernel's BTF did not let the probe read the leader's.
    pub comm: Comm,
    /// Name of the thread that connected (Java pools, tokio workers...).
    pub thread: Comm,
    /// cgroup v2 id of the task (`bpf_get_current_cgroup_id`).
    pub cgroup_id: u64,
}

/// One TCP connection, reported when it reached CLOSE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnClose {
    /// CLOCK_MONOTONIC ns at the first state change (SYN_SENT or SYN_RECV).
    pub start_ns: u64,
    /// CLOCK_MONOTONIC ns at CLOSE.
    pub end_ns: u64,
    /// SYN_SENT→ESTABLISHED (outbound) or SYN_RECV→ESTABLISHED (inbound);
    /// `None` if it never got established.
    pub handshake_ns: Option<u64>,
    /// Known for outbound connections only; inbound ones are created in
    /// softirq context where no task is meaningfully "current".
    pub task: Option<Task>,
    /// Network namespace inode, 0 if unknown.
    pub netns: u32,
    pub direction: Direction,
    pub saddr: IpAddr,
    pub sport: u16,
    pub daddr: IpAddr,
    pub dport: u16,
    /// (sent, received) payload bytes, if the kernel's BTF let us read them.
    pub bytes: Option<(u64, u64)>,
    /// This host sent the first FIN and the connection ended gracefully: a
    /// TIME_WAIT socket holds `sport` for 60 s. False when an RST ended it.
    pub local_close: bool,
    /// The peer sent the first FIN.
    pub peer_close: bool,
    pub established: bool,
    /// For failed handshakes: the socket error (ECONNREFUSED, ETIMEDOUT...).
    pub errno: Option<i32>,
    /// Outbound: SYNs the kernel retransmitted before the handshake ended
    /// (answered, refused or given up). 0 for inbound connections.
    pub syn_retrans: u32,
    /// Outbound: the source port was chosen by bind() before connect(), so
    /// it was held against every destination, not only this one (and so is
    /// its TIME_WAIT).
    pub bound_port: bool,
}

impl ConnClose {
    pub fn lifetime_ns(&self) -> u64 {
        self.end_ns.saturating_sub(self.start_ns)
    }

    /// Why an outbound connection never reached ESTABLISHED; `None` for
    /// connections that did, and for inbound ones (a half-open accept is
    /// the client's failure, not this host's). A close from SYN_SENT with
    /// no socket error is the application giving up first (a connect
    /// timeout shorter than the kernel's SYN retries): [`FailCause::Aborted`].
    pub fn failure(&self) -> Option<FailCause> {
        if self.established || self.direction == Direction::Inbound {
            return None;
        }
        Some(match self.errno {
            None => FailCause::Aborted,
            Some(e) => FailCause::of_handshake_errno(e),
        })
    }

    /// The errno a failure is counted under: the socket error, or
    /// [`ERRNO_ABORTED`] when the application gave up with none.
    pub fn failure_errno(&self) -> Option<i32> {
        self.failure().map(|_| self.errno.unwrap_or(ERRNO_ABORTED))
    }
}

/// The pseudo-errno under which handshakes the application abandoned are
/// counted next to real errnos (`errno::name` calls it "aborted"): they
/// fail without any, and must still be counted as failures.
pub const ERRNO_ABORTED: i32 = 0;

/// Why a connection failed, in every view (`cause` in JSON, the exporter's
/// `cause` label). Finer than [`Cause`], which is what the kernel's
/// connect() path tells apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailCause {
    /// EADDRNOTAVAIL: no ephemeral port free for the destination.
    PortExhaustion,
    /// EADDRNOTAVAIL for another reason (source address, route).
    AddressUnavailable,
    /// EADDRNOTAVAIL from connect() on a socket whose port was bound before:
    /// that port is already connected to this destination (two sockets
    /// bound to one port with SO_REUSEADDR).
    PortInUse,
    /// The peer answered the SYN with an RST (ECONNREFUSED).
    Refused,
    /// The kernel gave up after its SYN retries (ETIMEDOUT).
    TimedOut,
    /// The application closed the socket before any answer came.
    Aborted,
    /// Reset during the handshake (ECONNRESET).
    Reset,
    /// EHOSTUNREACH / ENETUNREACH.
    Unreachable,
    Other,
}

impl FailCause {
    pub const ALL: [FailCause; 9] = [
        FailCause::PortExhaustion,
        FailCause::AddressUnavailable,
        FailCause::PortInUse,
        FailCause::Refused,
        FailCause::TimedOut,
        FailCause::Aborted,
        FailCause::Reset,
        FailCause::Unreachable,
        FailCause::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailCause::PortExhaustion => "port_exhaustion",
            FailCause::AddressUnavailable => "address_unavailable",
            FailCause::PortInUse => "port_in_use",
            FailCause::Refused => "refused",
            FailCause::TimedOut => "timed_out",
            FailCause::Aborted => "aborted",
            FailCause::Reset => "reset",
            FailCause::Unreachable => "unreachable",
            FailCause::Other => "other",
        }
    }

    /// Index into per-cause arrays (`ALL[i] == self`).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The cause of a failed handshake (or connect) from its errno alone.
    pub fn of_handshake_errno(errno: i32) -> FailCause {
        match errno {
            ERRNO_ABORTED => FailCause::Aborted,
            111 => FailCause::Refused,
            110 => FailCause::TimedOut,
            104 => FailCause::Reset,
            113 | 101 => FailCause::Unreachable,
            _ => FailCause::Other,
        }
    }

    /// SYNs that got no answer: a firewall, a full backlog, a NAT gateway
    /// or conntrack table out of room.
    pub fn is_unanswered(self) -> bool {
        matches!(self, FailCause::TimedOut | FailCause::Aborted)
    }
}

/// Why a connect failed, as far as portwatch can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cause {
    /// EADDRNOTAVAIL because no ephemeral port was free for this destination.
    PortExhaustion,
    /// EADDRNOTAVAIL for another reason (source address not assigned, route).
    AddressUnavailable,
    /// EADDRNOTAVAIL on a socket bound to its port before connect(): the
    /// 4-tuple is taken (another socket on that port is connected there).
    PortInUse,
    /// Any other errno; see `errno`.
    Other,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::PortExhaustion => "port_exhaustion",
            Cause::AddressUnavailable => "address_unavailable",
            Cause::PortInUse => "port_in_use",
            Cause::Other => "other",
        }
    }
}

/// A failed connect: connect() returned an error, or a port allocation
/// failed outside any connect() syscall (io_uring).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectError {
    /// CLOCK_MONOTONIC ns when connect() returned.
    pub ts_ns: u64,
    /// connect() duration.
    pub duration_ns: u64,
    pub task: Option<Task>,
    pub netns: u32,
    pub daddr: IpAddr,
    pub dport: u16,
    /// Positive errno.
    pub errno: i32,
    pub cause: Cause,
    /// The kernel got as far as SYN_SENT: this was a TCP socket.
    pub saw_syn_sent: bool,
}

impl ConnectError {
    pub fn failure(&self) -> FailCause {
        match self.cause {
            Cause::PortExhaustion => FailCause::PortExhaustion,
            Cause::AddressUnavailable => FailCause::AddressUnavailable,
            Cause::PortInUse => FailCause::PortInUse,
            Cause::Other => FailCause::of_handshake_errno(self.errno),
        }
    }
}

/// EADDRINUSE: what bind() returns when no port of the range is free (a
/// bind to port 0) or the port asked for is taken.
pub const EADDRINUSE: i32 = 98;

/// A failed bind() on a TCP socket. A client that binds before connecting
/// (to port 0, without `IP_BIND_ADDRESS_NO_PORT`) takes a port from the
/// whole range at bind(): when the range is used up, this is where it fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BindError {
    /// CLOCK_MONOTONIC ns when bind() returned.
    pub ts_ns: u64,
    /// bind() duration.
    pub duration_ns: u64,
    pub task: Option<Task>,
    pub netns: u32,
    /// The address and port asked for (port 0: any free port).
    pub saddr: IpAddr,
    pub sport: u16,
    /// Positive errno (EADDRINUSE, EACCES, EADDRNOTAVAIL...).
    pub errno: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Close(ConnClose),
    ConnectError(ConnectError),
    BindError(BindError),
}

impl Event {
    /// CLOCK_MONOTONIC ns at which the event happened (close or failure).
    pub fn ts_ns(&self) -> u64 {
        match self {
            Event::Close(c) => c.end_ns,
            Event::ConnectError(e) => e.ts_ns,
            Event::BindError(b) => b.ts_ns,
        }
    }

    pub fn task(&self) -> Option<&Task> {
        match self {
            Event::Close(c) => c.task.as_ref(),
            Event::ConnectError(e) => e.task.as_ref(),
            Event::BindError(b) => b.task.as_ref(),
        }
    }

    /// Network namespace inode (0 when unknown).
    pub fn netns(&self) -> u32 {
        match self {
            Event::Close(c) => c.netns,
            Event::ConnectError(e) => e.netns,
            Event::BindError(b) => b.netns,
        }
    }

    /// Decodes one ring-buffer record. Never panics on any input.
    pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
        if bytes.len() < RAW_EVENT_SIZE {
            return Err(DecodeError::Short(bytes.len()));
        }
        let p = bytes.as_ptr().cast::<RawEvent>();
        if p.is_aligned() {
            // SAFETY: the length is checked above, the pointer is aligned,
            // and RawEvent is repr(C) of integers only (every bit pattern
            // valid); the reference lives no longer than `bytes`. Ring
            // buffer records are 8-byte aligned, so this is the live path:
            // read in place, not copied first (144 bytes, ~29 instructions
            // per event).
            return Event::try_from(unsafe { &*p });
        }
        // SAFETY: as above, and read_unaligned makes no alignment
        // assumption.
        let raw: RawEvent = unsafe { std::ptr::read_unaligned(p) };
        Event::try_from(&raw)
    }
}

/// A sampled active open (`KIND_CONNECT_STACK`): who connected where, and
/// the id of its user stack in the kernel's `STACKS` map (or why there is
/// none). The probe turns it into addresses; `system::symbols` into names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackSample {
    pub ts_ns: u64,
    pub task: Task,
    pub netns: u32,
    pub daddr: IpAddr,
    pub dport: u16,
    /// `Ok(id)` in `STACKS`, or `bpf_get_stackid`'s negative errno.
    pub stack_id: Result<u32, i32>,
}

impl StackSample {
    /// `Some` when the record is a stack sample (else it is an [`Event`]).
    pub fn decode(bytes: &[u8]) -> Option<Result<StackSample, DecodeError>> {
        if bytes.len() < RAW_EVENT_SIZE {
            return None;
        }
        // The kind first: every record is asked, nearly all are events, and
        // a copy of the whole record just to look at it was one of four
        // copies per event in the drain.
        let at = std::mem::offset_of!(RawEvent, kind);
        let kind = u32::from_ne_bytes(bytes[at..at + 4].try_into().ok()?);
        if kind != KIND_CONNECT_STACK {
            return None;
        }
        // SAFETY: as in `Event::decode`: length checked, integers only.
        let raw: RawEvent = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        let id = raw.errno as i32;
        Some(addr(raw.family, &raw.daddr).map(|daddr| StackSample {
            ts_ns: raw.start_ns,
            task: task_of(&raw),
            netns: raw.netns,
            daddr,
            dport: raw.dport,
            stack_id: if id >= 0 { Ok(id as u32) } else { Err(id) },
        }))
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {0} bytes is shorter than an event ({RAW_EVENT_SIZE} bytes)")]
    Short(usize),
    #[error("unknown event kind {0}")]
    Kind(u32),
    #[error("unknown address family {0}")]
    Family(u16),
}

fn addr(family: u16, raw: &[u8; 16]) -> Result<IpAddr, DecodeError> {
    match family {
        AF_INET => Ok(IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))),
        AF_INET6 => Ok(IpAddr::V6(Ipv6Addr::from(*raw))),
        f => Err(DecodeError::Family(f)),
    }
}

/// The task fields of a record (meaningful when `FLAG_HAS_TASK` is set).
fn task_of(raw: &RawEvent) -> Task {
    let thread = Comm::from_bytes(raw.comm);
    let process = Comm::from_bytes(raw.pcomm);
    Task {
        pid: raw.pid,
        tid: raw.tid,
        comm: if process.is_empty() { thread } else { process },
        thread,
        cgroup_id: raw.cgroup_id,
    }
}

impl TryFrom<&RawEvent> for Event {
    type Error = DecodeError;

    fn try_from(raw: &RawEvent) -> Result<Event, DecodeError> {
        let has = |f: u32| raw.flags & f != 0;
        let task = has(FLAG_HAS_TASK).then(|| task_of(raw));
        let errno = i32::try_from(raw.errno).unwrap_or(i32::MAX);
        match raw.kind {
            KIND_CLOSE => {
                let established = has(FLAG_ESTABLISHED);
                Ok(Event::Close(ConnClose {
                    start_ns: raw.start_ns,
                    end_ns: raw.end_ns,
                    handshake_ns: established.then_some(raw.handshake_ns),
                    task,
                    netns: raw.netns,
                    direction: if has(FLAG_INBOUND) {
                        Direction::Inbound
                    } else {
                        Direction::Outbound
                    },
                    saddr: addr(raw.family, &raw.saddr)?,
                    sport: raw.sport,
                    daddr: addr(raw.family, &raw.daddr)?,
                    dport: raw.dport,
                    bytes: has(FLAG_HAS_BYTES).then_some((raw.bytes_sent, raw.bytes_received)),
                    local_close: has(FLAG_LOCAL_CLOSE),
                    peer_close: has(FLAG_PEER_CLOSE),
                    established,
                    errno: (!established && errno != 0).then_some(errno),
                    syn_retrans: raw.syn_retrans.into(),
                    bound_port: has(FLAG_BOUND_PORT),
                }))
            }
            KIND_CONNECT_ERROR => Ok(Event::ConnectError(ConnectError {
                ts_ns: raw.end_ns,
                duration_ns: raw.end_ns.saturating_sub(raw.start_ns),
                task,
                netns: raw.netns,
                daddr: addr(raw.family, &raw.daddr)?,
                dport: raw.dport,
                errno,
                cause: if has(FLAG_PORT_EXHAUSTED) {
                    Cause::PortExhaustion
                } else if errno == EADDRNOTAVAIL && has(FLAG_BOUND_PORT) {
                    Cause::PortInUse
                } else if errno == EADDRNOTAVAIL {
                    Cause::AddressUnavailable
                } else {
                    Cause::Other
                },
                saw_syn_sent: has(FLAG_SAW_SYN_SENT),
            })),
            KIND_BIND_ERROR => Ok(Event::BindError(BindError {
                ts_ns: raw.end_ns,
                duration_ns: raw.end_ns.saturating_sub(raw.start_ns),
                task,
                netns: raw.netns,
                saddr: addr(raw.family, &raw.saddr)?,
                sport: raw.sport,
                errno,
            })),
            k => Err(DecodeError::Kind(k)),
        }
    }
}

/// Lost and dropped counts, summed over CPUs. Shown, never hidden.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Losses {
    /// Ring buffer full: events that never reached userspace.
    pub ringbuf_lost: u64,
    /// Sockets that could not be followed because the socket map was full:
    /// connections that will never be reported.
    pub sock_evicted: u64,
    /// connect() calls that could not be followed (map full).
    pub connect_untracked: u64,
    /// Userspace could not decode a record.
    pub decode_errors: u64,
    /// A kernel program failed while building a record (a read the kernel
    /// refused): that record is lost.
    pub probe_errors: u64,
    /// Tracepoint runs the kernel skipped because a BPF program was already
    /// running on that CPU (a softirq interrupting one of ours, or another
    /// tool's program): each may have cost one event. The programs'
    /// `recursion_misses`. Not part of [`Losses::total`]: an upper bound.
    pub kernel_missed: u64,
}

impl Losses {
    pub fn total(&self) -> u64 {
        self.ringbuf_lost
            + self.sock_evicted
            + self.connect_untracked
            + self.decode_errors
            + self.probe_errors
    }
}

impl fmt::Display for Losses {
    /// "N lost (ring buffer full: .., ...)": the tail of every live
    /// command's closing line (the bench parses the number before "lost").
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} lost (ring buffer full: {}, socket map full: {}, connect() untracked: {}, \
             undecodable: {}, probe errors: {}",
            self.total(),
            self.ringbuf_lost,
            self.sock_evicted,
            self.connect_untracked,
            self.decode_errors,
            self.probe_errors
        )?;
        write!(f, ")")?;
        // Not in the total: most tracepoint runs carry no event (only the
        // open and the close of a connection do), so each skipped run may,
        // not must, have cost one. Shown only when it happened.
        if self.kernel_missed > 0 {
            write!(
                f,
                "; {} tracepoint runs skipped by the kernel (each may have cost an event)",
                self.kernel_missed
            )?;
        }
        Ok(())
    }
}

/// `::ffff:a.b.c.d` (a dual-stack socket) and `a.b.c.d` are the same peer
/// and share the same ports: one key, one filter match, one table row.
pub fn canonical_addr(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a, IpAddr::V4),
        v4 => v4,
    }
}

/// Whether [`canonical_addr`] leaves `a` as it is (no copy needed).
#[inline]
pub fn is_canonical(a: IpAddr) -> bool {
    match a {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().is_none(),
        IpAddr::V4(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw_close_v4() -> RawEvent {
        let mut r = RawEvent {
            kind: KIND_CLOSE,
            flags: FLAG_HAS_TASK | FLAG_ESTABLISHED | FLAG_LOCAL_CLOSE | FLAG_HAS_BYTES,
            start_ns: 1_000,
            end_ns: 5_000_000,
            handshake_ns: 40_000,
            cgroup_id: 7,
            bytes_sent: 10,
            bytes_received: 20,
            netns: 4026531840,
            pid: 42,
            tid: 43,
            errno: 0,
            family: AF_INET,
            sport: 40001,
            dport: 8080,
            ..RawEvent::default()
        };
        r.saddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        r.daddr[..4].copy_from_slice(&[127, 0, 0, 2]);
        r.comm[..4].copy_from_slice(b"curl");
        r.pcomm[..4].copy_from_slice(b"bash");
        r
    }

    fn bytes_of(r: &RawEvent) -> Vec<u8> {
        // SAFETY: RawEvent is repr(C) integers only, no padding (size asserted).
        unsafe { std::slice::from_raw_parts((r as *const RawEvent).cast::<u8>(), RAW_EVENT_SIZE) }
            .to_vec()
    }

    #[test]
    fn a_record_decodes_the_same_at_an_aligned_and_an_unaligned_address() {
        let bytes = bytes_of(&raw_close_v4());
        // A buffer of u64s is 8-byte aligned: the record at offset 0 is
        // read in place, at offset 1 copied first.
        let mut words = vec![0u64; RAW_EVENT_SIZE / 8 + 2];
        // SAFETY: u64s as bytes: any byte pattern is valid, length in range.
        let buf = unsafe {
            std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), words.len() * 8)
        };
        buf[..RAW_EVENT_SIZE].copy_from_slice(&bytes);
        let aligned = Event::decode(&buf[..RAW_EVENT_SIZE]).unwrap();
        buf.copy_within(..RAW_EVENT_SIZE, 1);
        let unaligned = Event::decode(&buf[1..=RAW_EVENT_SIZE]).unwrap();
        assert_eq!(aligned, unaligned);
        assert_eq!(aligned, Event::decode(&bytes).unwrap());
    }

    #[test]
    fn decodes_an_established_ipv4_close() {
        let Event::Close(c) = Event::decode(&bytes_of(&raw_close_v4())).unwrap() else {
            panic!("not a close");
        };
        assert_eq!(c.saddr, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(c.daddr, "127.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!((c.sport, c.dport), (40001, 8080));
        assert_eq!(c.lifetime_ns(), 4_999_000);
        assert_eq!(c.handshake_ns, Some(40_000));
        assert_eq!(c.bytes, Some((10, 20)));
        assert!(c.local_close && c.established && !c.peer_close);
        assert_eq!(c.direction, Direction::Outbound);
        let t = c.task.unwrap();
        assert_eq!((t.pid, t.tid, t.cgroup_id), (42, 43, 7));
        assert_eq!(t.comm.to_string(), "bash", "the process names the task");
        assert_eq!(t.thread.to_string(), "curl");
        assert_eq!(c.errno, None);
    }

    #[test]
    fn thread_name_stands_in_when_the_process_name_is_unknown() {
        let mut r = raw_close_v4();
        r.pcomm = [0; 16];
        let Event::Close(c) = Event::decode(&bytes_of(&r)).unwrap() else {
            panic!("not a close");
        };
        assert_eq!(c.task.unwrap().comm.to_string(), "curl");
    }

    #[test]
    fn decodes_ipv6_and_inbound_without_task() {
        let mut r = raw_close_v4();
        r.family = AF_INET6;
        r.flags = FLAG_INBOUND | FLAG_ESTABLISHED;
        r.saddr = Ipv6Addr::LOCALHOST.octets();
        r.daddr = "::ffff:10.0.0.1".parse::<Ipv6Addr>().unwrap().octets();
        let Event::Close(c) = Event::decode(&bytes_of(&r)).unwrap() else {
            panic!("not a close");
        };
        assert_eq!(c.saddr, IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(c.daddr.to_string(), "::ffff:10.0.0.1");
        assert_eq!(c.direction, Direction::Inbound);
        assert_eq!(c.task, None);
        assert_eq!(c.bytes, None);
    }

    #[test]
    fn failed_handshake_carries_the_socket_error() {
        let mut r = raw_close_v4();
        r.flags = FLAG_HAS_TASK;
        r.errno = 111;
        let Event::Close(c) = Event::decode(&bytes_of(&r)).unwrap() else {
            panic!("not a close");
        };
        assert!(!c.established);
        assert_eq!(c.errno, Some(111));
        assert_eq!(c.handshake_ns, None);
    }

    #[test]
    fn connect_error_causes() {
        let mut r = raw_close_v4();
        r.kind = KIND_CONNECT_ERROR;
        r.errno = 99;
        r.flags = FLAG_HAS_TASK | FLAG_PORT_EXHAUSTED;
        let Event::ConnectError(e) = Event::decode(&bytes_of(&r)).unwrap() else {
            panic!("not a connect error");
        };
        assert_eq!(e.cause, Cause::PortExhaustion);
        assert_eq!(e.ts_ns, 5_000_000);
        r.flags = FLAG_HAS_TASK;
        let Event::ConnectError(e) = Event::decode(&bytes_of(&r)).unwrap() else {
            panic!("not a connect error");
        };
        assert_eq!(e.cause, Cause::AddressUnavailable);
        r.errno = 111;
        let Event::ConnectError(e) = Event::decode(&bytes_of(&r)).unwrap() else {
            panic!("not a connect error");
        };
        assert_eq!(e.cause, Cause::Other);
    }

    #[test]
    fn bound_ports_and_bind_errors() {
        let mut r = raw_close_v4();
        r.flags |= FLAG_BOUND_PORT;
        let Event::Close(c) = Event::decode(&bytes_of(&r)).unwrap() else {
            panic!("not a close");
        };
        assert!(c.bound_port);
        r.kind = KIND_CONNECT_ERROR;
        r.errno = 99;
        r.flags = FLAG_HAS_TASK | FLAG_BOUND_PORT;
        let Event::ConnectError(e) = Event::decode(&bytes_of(&r)).unwrap() else {
            panic!("not a connect error");
        };
        assert_eq!(e.cause, Cause::PortInUse);
        assert_eq!(e.failure(), FailCause::PortInUse);
        r.kind = KIND_BIND_ERROR;
        r.errno = 98;
        r.sport = 0;
        r.flags = FLAG_HAS_TASK;
        let Event::BindError(b) = Event::decode(&bytes_of(&r)).unwrap() else {
            panic!("not a bind error");
        };
        assert_eq!(b.errno, EADDRINUSE);
        assert_eq!(b.saddr, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!((b.sport, b.task.unwrap().pid), (0, 42));
    }

    #[test]
    fn stack_samples_are_told_from_events_by_their_kind() {
        let close = bytes_of(&raw_close_v4());
        assert_eq!(StackSample::decode(&close), None, "an event is no sample");
        assert_eq!(StackSample::decode(&close[..10]), None);
        let mut raw = raw_close_v4();
        raw.kind = KIND_CONNECT_STACK;
        raw.errno = 7;
        let s = StackSample::decode(&bytes_of(&raw)).unwrap().unwrap();
        assert_eq!(
            (s.stack_id, s.dport, s.task.pid),
            (Ok(7), raw.dport, raw.pid)
        );
        raw.errno = (-17i32) as u32 as _;
        let s = StackSample::decode(&bytes_of(&raw)).unwrap().unwrap();
        assert_eq!(s.stack_id, Err(-17), "bpf_get_stackid's error is kept");
    }

    #[test]
    fn rejects_short_records_unknown_kinds_and_families() {
        let b = bytes_of(&raw_close_v4());
        assert_eq!(Event::decode(&b[..100]), Err(DecodeError::Short(100)));
        let mut r = raw_close_v4();
        r.kind = 9;
        assert_eq!(Event::decode(&bytes_of(&r)), Err(DecodeError::Kind(9)));
        let mut r = raw_close_v4();
        r.family = 1;
        assert_eq!(Event::decode(&bytes_of(&r)), Err(DecodeError::Family(1)));
    }

    #[test]
    fn comm_truncates_like_the_kernel() {
        let c = Comm::new("a-very-long-process-name");
        assert_eq!(c.to_string(), "a-very-long-pro");
        assert_eq!(Comm::new("").to_string(), "");
        assert!(Comm::new("").is_empty());
    }
}
