//! Records inside a frame: how each [`Input`] becomes bytes and back.
//!
//! Both sides keep the same per-frame state: the previous timestamp (times
//! are stored as deltas) and three dictionaries (addresses, tasks,
//! destinations). A dictionary entry is defined by its own record the first
//! time a frame uses it; later records refer to it by index, so a repeated
//! connection from the same process to the same destination costs about 15
//! bytes. State is reset at every frame, so each frame decodes on its own.
//! The layout of every record is in FORMAT.md.

use std::net::IpAddr;

use super::Corruption;
use super::varint::{Cursor, put_addr, put_i64, put_str, put_u64};
use crate::clock::WallClock;
use crate::engine::hash::FxHashMap;
use crate::event::{
    BindError, Cause, Comm, ConnClose, ConnectError, Direction, Event, Losses, Task,
};
use crate::input::{
    CallStack, Conntrack, ConntrackStats, HostInfo, Input, KernelCounters, LocalNetworks,
    MAX_STACK_FRAMES, NetnsInfo, SockState, SocketEntry, SocketOwner, SocketOwners, SocketTable,
    Sysctls, Workload,
};

// Record tags. 0 is never used so that a zero-filled region is an error.
pub(crate) const TAG_CLOSE: u8 = 0x01;
pub(crate) const TAG_CONNECT_ERROR: u8 = 0x02;
pub(crate) const TAG_HOST: u8 = 0x10;
pub(crate) const TAG_TICK: u8 = 0x11;
pub(crate) const TAG_CGROUP: u8 = 0x12;
pub(crate) const TAG_SOCKETS: u8 = 0x13;
pub(crate) const TAG_COUNTERS: u8 = 0x14;
pub(crate) const TAG_LOSSES: u8 = 0x15;
pub(crate) const TAG_DEF_ADDR: u8 = 0x20;
pub(crate) const TAG_DEF_TASK: u8 = 0x21;
pub(crate) const TAG_DEF_DEST: u8 = 0x22;
/// In a task definition, the thread-name length that means "the same as
/// the process name" (lengths are 0..=16).
const THREAD_SAME_AS_COMM: u64 = 17;
/// Tags from here up carry a varint length and are skipped by readers that
/// do not know them: the room for backward-compatible additions.
pub(crate) const TAG_FIRST_SKIPPABLE: u8 = 0x80;
/// Skippable: `uv` kernel_missed of the Losses record that follows. Written
/// only when non-zero, so files without it are what older versions wrote,
/// and older readers skip it.
pub(crate) const TAG_KERNEL_MISSED: u8 = 0x80;
/// Skippable (format 1.1): `uv` probe_errors of the Losses record that
/// follows. Written only when non-zero, like `TAG_KERNEL_MISSED`.
pub(crate) const TAG_PROBE_ERRORS: u8 = 0x81;
/// Skippable (format 1.2): one reading of a network namespace
/// ([`Input::Netns`]). Its time is absolute, not a delta: a reader that
/// skips the record must not lose track of the time chain.
pub(crate) const TAG_NETNS: u8 = 0x82;
/// Skippable (format 1.4): names the container runtime keeps for a
/// container or pod ([`Input::Workload`]); no time of its own.
pub(crate) const TAG_WORKLOAD: u8 = 0x83;
// Workload record flags: which optional names follow.
const W_NAMESPACE: u8 = 1 << 0;
const W_POD: u8 = 1 << 1;
const W_CONTAINER: u8 = 1 << 2;
const W_KNOWN: u8 = 0b111;
/// Skippable (format 1.7): `uv` syn_retrans of the Close record that
/// follows. Written only when non-zero (most connections retransmit no SYN).
pub(crate) const TAG_SYN_RETRANS: u8 = 0x8A;
/// Skippable (format 1.7): the conntrack table of the Counters record, or
/// of the Netns record's counters, that follows. Written only when the
/// kernel has nf_conntrack.
pub(crate) const TAG_CONNTRACK: u8 = 0x8B;
/// Skippable (format 1.7): a namespace's interface networks
/// ([`Input::Networks`]); absolute time, like TAG_NETNS.
pub(crate) const TAG_NETWORKS: u8 = 0x8C;
/// Networks per record a reader accepts.
const MAX_NETWORKS: usize = 65_536;
// Conntrack record presence bits.
const CT_MAX: u8 = 1 << 0;
const CT_STATS: u8 = 1 << 1;
/// Skippable (format 1.6), empty: the close or connect-error record that
/// follows is of a socket whose port was bound before connect(). An older
/// reader skips it and sees a plain close, or an `address_unavailable`
/// connect error instead of `port_in_use`.
pub(crate) const TAG_BOUND_PORT: u8 = 0x84;
/// Skippable (format 1.6): a failed bind() ([`Event::BindError`]), self-
/// contained (absolute time, inline task) so an older reader loses nothing
/// else by skipping it.
pub(crate) const TAG_BIND_ERROR: u8 = 0x85;
/// Skippable (format 1.3): who holds the sockets of the latest socket
/// tables ([`Input::SocketOwners`]). Its time is absolute, like the netns
/// record's.
pub(crate) const TAG_SOCKET_OWNERS: u8 = 0x88;
/// Skippable (format 1.5): one symbolized connect() stack
/// ([`Input::CallStack`]). Self-contained (absolute time, no dictionary
/// references), so a reader that skips it loses nothing else. 0x90 leaves
/// 0x83..0x8F to the records other work adds.
pub(crate) const TAG_CALL_STACK: u8 = 0x90;
/// Skippable (format 1.9): a socket table read without TIME_WAIT sockets
/// (`SocketTable::without_time_wait`): `uv` ts_ns (absolute, like
/// TAG_NETNS), then the fields of a TAG_SOCKETS record from its netns on,
/// addresses referring to the frame's dictionary as there. A reader that
/// skips it sees only the full tables, with TIME_WAIT kept from events
/// between them: what the engine does with it anyway.
pub(crate) const TAG_SOCKETS_NO_TW: u8 = 0x86;
/// Format 1.8: the runtime a connecting process runs on
/// ([`Input::Runtime`]): pid, exe, name, evidence. No time of its own.
pub(crate) const TAG_RUNTIME: u8 = 0x91;
// Netns record flags.
const N_SYSCTLS: u8 = 1 << 0;
const N_COUNTERS: u8 = 1 << 1;
const N_ERROR: u8 = 1 << 2;
const N_STALE: u8 = 1 << 3;
const N_KNOWN: u8 = 0b1111;

/// Entries per dictionary and frame. Bounds the reader's memory; the writer
/// starts a new frame before a dictionary would overflow.
pub const MAX_DICT_ENTRIES: usize = 1 << 16;
/// Longest string field (hostname, kernel release, cgroup path).
pub const MAX_STR_BYTES: usize = 64 * 1024;
/// Most sockets in one socket-table record (1M: far beyond 65,536 ports
/// times a handful of local addresses on any real host).
pub const MAX_SOCKETS: usize = 1 << 20;
/// Most reserved-port ranges in a host record.
pub const MAX_RESERVED_RANGES: usize = 1 << 16;

// Close flags.
const C_TASK: u8 = 1 << 0;
const C_INBOUND: u8 = 1 << 1;
const C_ESTABLISHED: u8 = 1 << 2;
const C_LOCAL_CLOSE: u8 = 1 << 3;
const C_PEER_CLOSE: u8 = 1 << 4;
const C_HANDSHAKE: u8 = 1 << 5;
const C_BYTES: u8 = 1 << 6;
const C_ERRNO: u8 = 1 << 7;
// Connect-error flags; bits 2-3 are the cause.
const E_TASK: u8 = 1 << 0;
const E_SAW_SYN_SENT: u8 = 1 << 1;
const E_CAUSE_SHIFT: u8 = 2;
const E_KNOWN: u8 = 0b1111;

/// A destination as the dictionary keys it: the fixed end of a connection
/// in one network namespace. For outbound connections that is the remote
/// (daddr, dport) and the local ephemeral port varies; for inbound ones it
/// is the local listener (saddr, sport) and the client's port varies.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct DestKey {
    netns: u32,
    addr: IpAddr,
    port: u16,
}

#[derive(Clone, Copy, Debug)]
struct DestSlot {
    key: DestKey,
    /// The varying port of the last connection to this destination: ports
    /// are handed out sequentially, so the delta is usually tiny.
    last_port: u16,
}

/// Writer-side state of the current frame. The dictionaries hash with the
/// engine's FxHash: SipHash was ~15% of `record`'s CPU, and each map is
/// capped at `MAX_DICT_ENTRIES` per frame, which bounds colliding keys.
#[derive(Default)]
pub(crate) struct Encoder {
    last_ts_ns: u64,
    addrs: FxHashMap<IpAddr, u32>,
    tasks: FxHashMap<Task, u32>,
    /// Destination → its index; its last varying port is `dest_ports[index]`.
    dests: FxHashMap<DestKey, u32>,
    dest_ports: Vec<u16>,
    // The last entry of each dictionary looked up or defined in this frame,
    // checked before hashing: a churning client's closes repeat one task,
    // one destination and one local address (both ends of a loopback
    // connection share the destination and the client's address), and a
    // hash lookup was ~60-90 instructions, ~40% of the encoder's per close.
    last_addr: Option<(IpAddr, u32)>,
    last_task: Option<(Task, u32)>,
    last_dest: Option<(DestKey, u32)>,
}

impl Encoder {
    pub(crate) fn reset(&mut self) {
        self.last_ts_ns = 0;
        self.addrs.clear();
        self.tasks.clear();
        self.dests.clear();
        self.dest_ports.clear();
        self.last_addr = None;
        self.last_task = None;
        self.last_dest = None;
    }

    /// True when the next record might not find room in a dictionary; the
    /// writer then starts a new frame first. A record adds at most two
    /// addresses, one task and one destination (socket tables fall back to
    /// inline addresses when the dictionary is full).
    pub(crate) fn dicts_nearly_full(&self) -> bool {
        self.addrs.len() + 2 > MAX_DICT_ENTRIES
            || self.tasks.len() + 1 > MAX_DICT_ENTRIES
            || self.dests.len() + 1 > MAX_DICT_ENTRIES
    }

    fn ts(&mut self, buf: &mut Vec<u8>, ts_ns: u64) {
        put_i64(buf, ts_ns.wrapping_sub(self.last_ts_ns) as i64);
        self.last_ts_ns = ts_ns;
    }

    fn addr(&mut self, buf: &mut Vec<u8>, a: IpAddr) -> u32 {
        if let Some((last, i)) = self.last_addr
            && last == a
        {
            return i;
        }
        let n = self.addrs.len() as u32;
        let i = *self.addrs.entry(a).or_insert_with(|| {
            buf.push(TAG_DEF_ADDR);
            put_addr(buf, &a);
            n
        });
        self.last_addr = Some((a, i));
        i
    }

    fn task(&mut self, buf: &mut Vec<u8>, t: &Task) -> u32 {
        if let Some((last, i)) = self.last_task
            && last == *t
        {
            return i;
        }
        let n = self.tasks.len() as u32;
        let i = *self.tasks.entry(*t).or_insert_with(|| {
            buf.push(TAG_DEF_TASK);
            put_u64(buf, t.pid.into());
            put_u64(buf, t.tid.into());
            put_u64(buf, t.cgroup_id);
            // Only the bytes before the first NUL: the kernel NUL-pads.
            put_str(buf, t.comm.as_bytes());
            // Single-threaded processes: the thread's name is the process's.
            if t.thread == t.comm {
                put_u64(buf, THREAD_SAME_AS_COMM);
            } else {
                put_str(buf, t.thread.as_bytes());
            }
            n
        });
        self.last_task = Some((*t, i));
        i
    }

    /// The index of a destination defined in this frame.
    fn dest_idx(&mut self, key: &DestKey) -> Option<u32> {
        if let Some((last, i)) = self.last_dest
            && last == *key
        {
            return Some(i);
        }
        let i = self.dests.get(key).copied()?;
        self.last_dest = Some((*key, i));
        Some(i)
    }

    /// Index of the destination and the port delta to store for `port`.
    fn dest(&mut self, buf: &mut Vec<u8>, key: DestKey, port: u16) -> (u32, i16) {
        if let Some(idx) = self.dest_idx(&key) {
            let last = &mut self.dest_ports[idx as usize];
            let delta = port.wrapping_sub(*last) as i16;
            *last = port;
            return (idx, delta);
        }
        // Definitions precede their first use: the address, then this.
        let addr_idx = self.addr(buf, key.addr);
        let idx = self.dests.len() as u32;
        self.dests.insert(key, idx);
        self.dest_ports.push(port);
        self.last_dest = Some((key, idx));
        buf.push(TAG_DEF_DEST);
        put_u64(buf, key.netns.into());
        put_u64(buf, addr_idx.into());
        put_u64(buf, key.port.into());
        // The decoder's slot starts at port 0.
        (idx, port as i16)
    }

    /// Appends `input` (with any dictionary definitions it needs first).
    pub(crate) fn encode(&mut self, buf: &mut Vec<u8>, input: &Input) {
        match input {
            Input::Event(Event::Close(c)) => self.close(buf, c),
            Input::Event(Event::ConnectError(e)) => self.connect_error(buf, e),
            Input::Event(Event::BindError(b)) => {
                let mut body = Vec::new();
                put_bind_error(&mut body, b);
                buf.push(TAG_BIND_ERROR);
                put_u64(buf, body.len() as u64);
                buf.extend_from_slice(&body);
            }
            Input::Host(h) => self.host(buf, h),
            Input::Tick { now_ns } => {
                buf.push(TAG_TICK);
                self.ts(buf, *now_ns);
            }
            Input::Cgroup { id, path } => {
                buf.push(TAG_CGROUP);
                put_u64(buf, *id);
                match path {
                    None => buf.push(0),
                    Some(p) => {
                        buf.push(1);
                        put_str(buf, p.as_bytes());
                    }
                }
            }
            Input::Sockets(t) => self.sockets(buf, t),
            Input::CallStack(cs) => {
                let mut body = Vec::new();
                put_call_stack(&mut body, cs);
                buf.push(TAG_CALL_STACK);
                put_u64(buf, body.len() as u64);
                buf.extend_from_slice(&body);
            }
            Input::Netns(n) => {
                put_conntrack(buf, n.counters.as_ref().and_then(|c| c.conntrack.as_ref()));
                let mut body = Vec::new();
                put_netns(&mut body, n);
                buf.push(TAG_NETNS);
                put_u64(buf, body.len() as u64);
                buf.extend_from_slice(&body);
            }
            Input::Networks(n) => {
                let mut body = Vec::with_capacity(16 + n.nets.len() * 8);
                put_u64(&mut body, n.ts_ns);
                put_u64(&mut body, n.netns.into());
                put_u64(&mut body, n.nets.len() as u64);
                for (a, len) in &n.nets {
                    put_addr(&mut body, a);
                    body.push(*len);
                }
                buf.push(TAG_NETWORKS);
                put_u64(buf, body.len() as u64);
                buf.extend_from_slice(&body);
            }
            Input::Workload(w) => {
                let mut body = Vec::new();
                put_workload(&mut body, w);
                buf.push(TAG_WORKLOAD);
                put_u64(buf, body.len() as u64);
                buf.extend_from_slice(&body);
            }
            Input::Runtime(r) => {
                let mut body = Vec::new();
                put_u64(&mut body, r.pid.into());
                for t in [&r.exe, &r.name, &r.evidence] {
                    put_str(&mut body, t.as_bytes());
                }
                buf.push(TAG_RUNTIME);
                put_u64(buf, body.len() as u64);
                buf.extend_from_slice(&body);
            }
            Input::SocketOwners(o) => {
                let mut body = Vec::new();
                put_owners(&mut body, o);
                buf.push(TAG_SOCKET_OWNERS);
                put_u64(buf, body.len() as u64);
                buf.extend_from_slice(&body);
            }
            Input::Counters(k) => {
                put_conntrack(buf, k.conntrack.as_ref());
                buf.push(TAG_COUNTERS);
                self.ts(buf, k.ts_ns);
                for v in [k.tcp_inuse, k.tcp_tw, k.tw, k.tw_recycled, k.tw_overflow] {
                    put_u64(buf, v);
                }
            }
            Input::Losses { ts_ns, losses: l } => {
                if l.probe_errors != 0 {
                    let mut ext = Vec::with_capacity(10);
                    put_u64(&mut ext, l.probe_errors);
                    buf.push(TAG_PROBE_ERRORS);
                    put_u64(buf, ext.len() as u64);
                    buf.extend_from_slice(&ext);
                }
                if l.kernel_missed > 0 {
                    let mut body = Vec::new();
                    put_u64(&mut body, l.kernel_missed);
                    buf.push(TAG_KERNEL_MISSED);
                    put_u64(buf, body.len() as u64);
                    buf.extend_from_slice(&body);
                }
                buf.push(TAG_LOSSES);
                self.ts(buf, *ts_ns);
                for v in [
                    l.ringbuf_lost,
                    l.sock_evicted,
                    l.connect_untracked,
                    l.decode_errors,
                ] {
                    put_u64(buf, v);
                }
            }
        }
    }

    fn close(&mut self, buf: &mut Vec<u8>, c: &ConnClose) {
        let task = c.task.map(|t| self.task(buf, &t));
        let (fixed, varying) = match c.direction {
            Direction::Outbound => ((c.daddr, c.dport), (c.saddr, c.sport)),
            Direction::Inbound => ((c.saddr, c.sport), (c.daddr, c.dport)),
        };
        let key = DestKey {
            netns: c.netns,
            addr: fixed.0,
            port: fixed.1,
        };
        let (dest, port_delta) = self.dest(buf, key, varying.1);
        let vaddr = self.addr(buf, varying.0);

        let mut flags = 0;
        let mut set = |bit: u8, on: bool| {
            if on {
                flags |= bit;
            }
        };
        set(C_TASK, task.is_some());
        set(C_INBOUND, c.direction == Direction::Inbound);
        set(C_ESTABLISHED, c.established);
        set(C_LOCAL_CLOSE, c.local_close);
        set(C_PEER_CLOSE, c.peer_close);
        set(C_HANDSHAKE, c.handshake_ns.is_some());
        set(C_BYTES, c.bytes.is_some());
        set(C_ERRNO, c.errno.is_some());
        if c.syn_retrans != 0 {
            let mut ext = Vec::with_capacity(5);
            put_u64(&mut ext, c.syn_retrans.into());
            buf.push(TAG_SYN_RETRANS);
            put_u64(buf, ext.len() as u64);
            buf.extend_from_slice(&ext);
        }
        if c.bound_port {
            buf.extend_from_slice(&[TAG_BOUND_PORT, 0]);
        }
        buf.push(TAG_CLOSE);
        buf.push(flags);
        self.ts(buf, c.end_ns);
        // Wrapping, so that any pair of u64 round-trips; normally small.
        put_u64(buf, c.end_ns.wrapping_sub(c.start_ns));
        if let Some(h) = c.handshake_ns {
            put_u64(buf, h);
        }
        if let Some(t) = task {
            put_u64(buf, t.into());
        }
        put_u64(buf, dest.into());
        put_u64(buf, vaddr.into());
        put_i64(buf, port_delta.into());
        if let Some((sent, received)) = c.bytes {
            put_u64(buf, sent);
            put_u64(buf, received);
        }
        if let Some(e) = c.errno {
            put_i64(buf, e.into());
        }
    }

    fn connect_error(&mut self, buf: &mut Vec<u8>, e: &ConnectError) {
        let task = e.task.map(|t| self.task(buf, &t));
        let key = DestKey {
            netns: e.netns,
            addr: e.daddr,
            port: e.dport,
        };
        // The port slot of a destination is for connections' varying port;
        // a failed connect has none, so it leaves the slot as it is.
        let dest = match self.dest_idx(&key) {
            Some(idx) => idx,
            None => self.dest(buf, key, 0).0,
        };
        let cause = match e.cause {
            Cause::PortExhaustion => 0,
            // Written as address_unavailable after a bound-port marker.
            Cause::AddressUnavailable | Cause::PortInUse => 1,
            Cause::Other => 2,
        };
        if e.cause == Cause::PortInUse {
            buf.extend_from_slice(&[TAG_BOUND_PORT, 0]);
        }
        let mut flags = cause << E_CAUSE_SHIFT;
        if task.is_some() {
            flags |= E_TASK;
        }
        if e.saw_syn_sent {
            flags |= E_SAW_SYN_SENT;
        }
        buf.push(TAG_CONNECT_ERROR);
        buf.push(flags);
        self.ts(buf, e.ts_ns);
        put_u64(buf, e.duration_ns);
        if let Some(t) = task {
            put_u64(buf, t.into());
        }
        put_u64(buf, dest.into());
        put_i64(buf, e.errno.into());
    }

    fn host(&mut self, buf: &mut Vec<u8>, h: &HostInfo) {
        buf.push(TAG_HOST);
        self.ts(buf, h.clock.mono_ns);
        put_i64(buf, h.clock.unix_ns);
        put_str(buf, h.hostname.as_bytes());
        put_str(buf, h.kernel.as_bytes());
        put_u64(buf, h.netns.into());
        put_sysctls(buf, &h.sysctls);
    }

    fn sockets(&mut self, buf: &mut Vec<u8>, t: &SocketTable) {
        // Intern what fits first (definitions precede the record), then
        // refer by index + 1, or 0 followed by the address inline. A table
        // repeats a few addresses thousands of times (every TIME_WAIT
        // socket of a client to one server): an address equal to the one
        // before is not hashed again.
        let mut prev = None;
        for e in &t.entries {
            for a in [e.saddr, e.daddr] {
                if prev == Some(a) {
                    continue;
                }
                prev = Some(a);
                if self.addrs.len() < MAX_DICT_ENTRIES {
                    self.addr(buf, a);
                }
            }
        }
        if t.without_time_wait {
            let mut body = Vec::with_capacity(16 + t.entries.len() * 12);
            put_u64(&mut body, t.ts_ns);
            self.socket_entries(&mut body, t);
            buf.push(TAG_SOCKETS_NO_TW);
            put_u64(buf, body.len() as u64);
            buf.extend_from_slice(&body);
            return;
        }
        buf.push(TAG_SOCKETS);
        self.ts(buf, t.ts_ns);
        self.socket_entries(buf, t);
    }

    /// A table from its netns on (the same in both socket records).
    fn socket_entries(&self, buf: &mut Vec<u8>, t: &SocketTable) {
        put_u64(buf, t.netns.into());
        put_u64(buf, t.entries.len() as u64);
        // At most ~50 bytes per socket: one reservation, not a growth of
        // the frame every few thousand sockets.
        buf.reserve(t.entries.len() * 24);
        let mut prev: Option<(IpAddr, Option<u32>)> = None;
        for e in &t.entries {
            match e.state {
                SockState::Established => buf.push(0),
                SockState::SynSent => buf.push(1),
                SockState::TimeWait => buf.push(2),
                SockState::Other(n) => {
                    buf.push(3);
                    buf.push(n);
                }
            }
            for (a, port) in [(e.saddr, e.sport), (e.daddr, e.dport)] {
                let idx = match prev {
                    Some((p, i)) if p == a => i,
                    _ => {
                        let i = self.addrs.get(&a).copied();
                        prev = Some((a, i));
                        i
                    }
                };
                match idx {
                    Some(i) => put_u64(buf, u64::from(i) + 1),
                    None => {
                        buf.push(0);
                        put_addr(buf, &a);
                    }
                }
                put_u64(buf, port.into());
            }
            put_u64(buf, e.expires_ms.into());
            put_u64(buf, e.uid.into());
            put_u64(buf, e.inode.into());
        }
    }
}

/// The sysctls of a host or namespace record.
fn put_sysctls(buf: &mut Vec<u8>, s: &Sysctls) {
    put_u64(buf, s.port_range.0.into());
    put_u64(buf, s.port_range.1.into());
    put_u64(buf, s.reserved_ports.len() as u64);
    for (lo, hi) in &s.reserved_ports {
        put_u64(buf, (*lo).into());
        put_u64(buf, (*hi).into());
    }
    let opts = [
        s.tcp_tw_reuse,
        s.tcp_tw_reuse_delay_ms,
        s.tcp_timestamps,
        s.tcp_max_tw_buckets,
        s.tcp_fin_timeout,
    ];
    let present = opts
        .iter()
        .enumerate()
        .fold(0u8, |m, (i, o)| m | (u8::from(o.is_some()) << i));
    buf.push(present);
    for v in opts.into_iter().flatten() {
        put_i64(buf, v);
    }
}

/// The body of a netns record (after its tag and length).
/// A TAG_CONNTRACK record for the counters that follow, if they have one.
fn put_conntrack(buf: &mut Vec<u8>, ct: Option<&Conntrack>) {
    let Some(ct) = ct else { return };
    let mut body = Vec::with_capacity(16);
    put_u64(&mut body, ct.count);
    let mut flags = 0;
    if ct.max.is_some() {
        flags |= CT_MAX;
    }
    if ct.stats.is_some() {
        flags |= CT_STATS;
    }
    body.push(flags);
    if let Some(m) = ct.max {
        put_u64(&mut body, m);
    }
    if let Some(st) = &ct.stats {
        for v in [st.insert_failed, st.drop, st.early_drop] {
            put_u64(&mut body, v);
        }
    }
    buf.push(TAG_CONNTRACK);
    put_u64(buf, body.len() as u64);
    buf.extend_from_slice(&body);
}

fn read_conntrack(c: &mut Cursor) -> Result<Conntrack, Corruption> {
    let count = c.u64()?;
    let flags = c.u8()?;
    if flags & !(CT_MAX | CT_STATS) != 0 {
        return Err(Corruption::OutOfRange("conntrack flags"));
    }
    let max = if flags & CT_MAX != 0 {
        Some(c.u64()?)
    } else {
        None
    };
    let stats = if flags & CT_STATS != 0 {
        Some(ConntrackStats {
            insert_failed: c.u64()?,
            drop: c.u64()?,
            early_drop: c.u64()?,
        })
    } else {
        None
    };
    Ok(Conntrack { count, max, stats })
}

fn put_netns(buf: &mut Vec<u8>, n: &NetnsInfo) {
    put_u64(buf, n.ts_ns);
    put_u64(buf, n.netns.into());
    let mut flags = 0;
    for (bit, on) in [
        (N_SYSCTLS, n.sysctls.is_some()),
        (N_COUNTERS, n.counters.is_some()),
        (N_ERROR, n.error.is_some()),
        (N_STALE, n.stale),
    ] {
        if on {
            flags |= bit;
        }
    }
    buf.push(flags);
    if let Some(s) = &n.sysctls {
        put_sysctls(buf, s);
    }
    if let Some(k) = &n.counters {
        for v in [k.tcp_inuse, k.tcp_tw, k.tw, k.tw_recycled, k.tw_overflow] {
            put_u64(buf, v);
        }
    }
    if let Some(e) = &n.error {
        put_str(buf, e.as_bytes());
    }
}

/// The body of a TAG_BIND_ERROR record: `uv` ts_ns (absolute), `uv`
/// duration_ns, `uv` netns, addr, `uv` sport, `iv` errno, `u8` has_task,
/// [`uv` pid, `uv` tid, `uv` cgroup_id, `str` comm, `str` thread].
fn put_bind_error(buf: &mut Vec<u8>, b: &BindError) {
    put_u64(buf, b.ts_ns);
    put_u64(buf, b.duration_ns);
    put_u64(buf, b.netns.into());
    put_addr(buf, &b.saddr);
    put_u64(buf, b.sport.into());
    put_i64(buf, b.errno.into());
    match &b.task {
        None => buf.push(0),
        Some(t) => {
            buf.push(1);
            put_u64(buf, t.pid.into());
            put_u64(buf, t.tid.into());
            put_u64(buf, t.cgroup_id);
            put_str(buf, t.comm.as_bytes());
            put_str(buf, t.thread.as_bytes());
        }
    }
}

fn read_bind_error(c: &mut Cursor) -> Result<BindError, Corruption> {
    let ts_ns = c.u64()?;
    let duration_ns = c.u64()?;
    let netns = c.u32("netns")?;
    let saddr = c.addr()?;
    let sport = c.u16("port")?;
    let errno = c.i32("errno")?;
    let task = match c.u8()? {
        0 => None,
        1 => {
            let pid = c.u32("pid")?;
            let tid = c.u32("tid")?;
            let cgroup_id = c.u64()?;
            let n = c.len(16, "comm")?;
            let comm = read_comm(c, n)?;
            let n = c.len(16, "thread name")?;
            let thread = read_comm(c, n)?;
            Some(Task {
                pid,
                tid,
                comm,
                thread,
                cgroup_id,
            })
        }
        _ => return Err(Corruption::OutOfRange("bind-error task presence")),
    };
    Ok(BindError {
        ts_ns,
        duration_ns,
        task,
        netns,
        saddr,
        sport,
        errno,
    })
}

/// The body of a socket-owners record.
fn put_owners(buf: &mut Vec<u8>, o: &SocketOwners) {
    put_u64(buf, o.ts_ns);
    put_u64(buf, o.owners.len() as u64);
    for w in &o.owners {
        put_u64(buf, w.inode.into());
        put_u64(buf, w.pid.into());
        put_u64(buf, w.cgroup_id);
        put_str(buf, w.comm.as_bytes());
    }
    put_u64(buf, o.not_found);
    put_u64(buf, o.failed);
}

/// The body of a socket-owners record.
fn read_owners(c: &mut Cursor) -> Result<SocketOwners, Corruption> {
    let ts_ns = c.u64()?;
    let n = c.len(MAX_SOCKETS, "socket owners")?;
    // An owner takes at least 4 bytes.
    let mut owners = Vec::with_capacity(n.min(c.remaining() / 4));
    for _ in 0..n {
        let inode = c.u32("inode")?;
        let pid = c.u32("pid")?;
        let cgroup_id = c.u64()?;
        let len = c.len(16, "comm")?;
        owners.push(SocketOwner {
            inode,
            pid,
            cgroup_id,
            comm: read_comm(c, len)?,
        });
    }
    let not_found = c.u64()?;
    let failed = c.u64()?;
    if c.remaining() != 0 {
        return Err(Corruption::OutOfRange("socket owners record length"));
    }
    Ok(SocketOwners {
        ts_ns,
        owners,
        not_found,
        failed,
    })
}

/// A comm of `n` bytes (at most 16, checked by the caller), NUL-padded.
fn read_comm(c: &mut Cursor, n: usize) -> Result<Comm, Corruption> {
    let bytes = c.bytes(n)?;
    // Writers store a comm up to its first NUL; a NUL inside would decode
    // to a comm that re-encodes differently.
    if bytes.contains(&0) {
        return Err(Corruption::OutOfRange("comm (contains NUL)"));
    }
    let mut raw = [0u8; 16];
    raw[..n].copy_from_slice(bytes);
    Ok(Comm::from_bytes(raw))
}

/// The sysctls of a host or namespace record.
fn read_sysctls(c: &mut Cursor) -> Result<Sysctls, Corruption> {
    let port_range = (c.u16("port range")?, c.u16("port range")?);
    let n = c.len(MAX_RESERVED_RANGES, "reserved port ranges")?;
    // Each range takes at least 2 bytes: never reserve more than the
    // record could hold.
    let mut reserved_ports = Vec::with_capacity(n.min(c.remaining() / 2));
    for _ in 0..n {
        reserved_ports.push((c.u16("reserved port")?, c.u16("reserved port")?));
    }
    let present = c.u8()?;
    if present >> 5 != 0 {
        return Err(Corruption::OutOfRange("sysctl presence bits"));
    }
    let mut opt = |i: u8| -> Result<Option<i64>, Corruption> {
        if present & (1 << i) != 0 {
            c.i64().map(Some)
        } else {
            Ok(None)
        }
    };
    let sysctls = Sysctls {
        port_range,
        reserved_ports,
        tcp_tw_reuse: opt(0)?,
        tcp_tw_reuse_delay_ms: opt(1)?,
        tcp_timestamps: opt(2)?,
        tcp_max_tw_buckets: opt(3)?,
        tcp_fin_timeout: opt(4)?,
    };
    Ok(sysctls)
}

/// The body of a call stack record.
fn put_call_stack(buf: &mut Vec<u8>, cs: &CallStack) {
    put_u64(buf, cs.ts_ns);
    put_u64(buf, cs.task.pid.into());
    put_u64(buf, cs.task.tid.into());
    put_u64(buf, cs.task.cgroup_id);
    put_str(buf, cs.task.comm.as_bytes());
    put_str(buf, cs.task.thread.as_bytes());
    put_u64(buf, cs.netns.into());
    put_addr(buf, &cs.daddr);
    put_u64(buf, cs.dport.into());
    let frames = &cs.frames[..cs.frames.len().min(MAX_STACK_FRAMES)];
    put_u64(buf, frames.len() as u64);
    for f in frames {
        put_str(buf, f.as_bytes());
    }
    match &cs.note {
        None => buf.push(0),
        Some(n) => {
            buf.push(1);
            put_str(buf, n.as_bytes());
        }
    }
}

fn read_call_stack(c: &mut Cursor) -> Result<CallStack, Corruption> {
    let ts_ns = c.u64()?;
    let pid = c.u32("pid")?;
    let tid = c.u32("tid")?;
    let cgroup_id = c.u64()?;
    let comm = c.str(15, "comm")?;
    let thread = c.str(15, "thread name")?;
    let netns = c.u32("netns")?;
    let daddr = c.addr()?;
    let dport = c.u16("port")?;
    let n = c.len(MAX_STACK_FRAMES, "stack frames")?;
    let mut frames = Vec::with_capacity(n);
    for _ in 0..n {
        frames.push(c.str(MAX_STR_BYTES, "stack frame")?);
    }
    let note = match c.u8()? {
        0 => None,
        1 => Some(c.str(MAX_STR_BYTES, "stack note")?),
        _ => return Err(Corruption::OutOfRange("stack note flag")),
    };
    // Fields a later minor version appends inside the length are ignored.
    Ok(CallStack {
        ts_ns,
        task: Task {
            pid,
            tid,
            comm: Comm::new(&comm),
            thread: Comm::new(&thread),
            cgroup_id,
        },
        netns,
        daddr,
        dport,
        frames,
        note,
    })
}

/// The body of a netns record.
fn put_workload(buf: &mut Vec<u8>, w: &Workload) {
    put_str(buf, w.id.as_bytes());
    put_str(buf, w.source.as_bytes());
    let opts = [&w.pod_namespace, &w.pod_name, &w.container];
    let flags = [W_NAMESPACE, W_POD, W_CONTAINER]
        .iter()
        .zip(opts)
        .filter(|(_, o)| o.is_some())
        .fold(0, |f, (bit, _)| f | bit);
    buf.push(flags);
    for s in opts.into_iter().flatten() {
        put_str(buf, s.as_bytes());
    }
}

fn read_workload(c: &mut Cursor) -> Result<Workload, Corruption> {
    let id = c.str(MAX_STR_BYTES, "workload id")?;
    let source = c.str(MAX_STR_BYTES, "workload source")?;
    let flags = c.u8()?;
    if flags & !W_KNOWN != 0 {
        return Err(Corruption::OutOfRange("workload record flags"));
    }
    let mut opt = |bit: u8, what| -> Result<Option<String>, Corruption> {
        if flags & bit != 0 {
            c.str(MAX_STR_BYTES, what).map(Some)
        } else {
            Ok(None)
        }
    };
    // Fields a later minor version appends are ignored.
    Ok(Workload {
        id,
        source,
        pod_namespace: opt(W_NAMESPACE, "pod namespace")?,
        pod_name: opt(W_POD, "pod name")?,
        container: opt(W_CONTAINER, "container name")?,
    })
}

fn read_netns(c: &mut Cursor) -> Result<NetnsInfo, Corruption> {
    let ts_ns = c.u64()?;
    let netns = c.u32("netns")?;
    let flags = c.u8()?;
    if flags & !N_KNOWN != 0 {
        return Err(Corruption::OutOfRange("netns record flags"));
    }
    let sysctls = if flags & N_SYSCTLS != 0 {
        Some(read_sysctls(c)?)
    } else {
        None
    };
    let counters = if flags & N_COUNTERS != 0 {
        Some(KernelCounters {
            ts_ns,
            tcp_inuse: c.u64()?,
            tcp_tw: c.u64()?,
            tw: c.u64()?,
            tw_recycled: c.u64()?,
            tw_overflow: c.u64()?,
            conntrack: None,
        })
    } else {
        None
    };
    let error = if flags & N_ERROR != 0 {
        Some(c.str(MAX_STR_BYTES, "netns error")?)
    } else {
        None
    };
    if c.remaining() != 0 {
        return Err(Corruption::OutOfRange("netns record length"));
    }
    Ok(NetnsInfo {
        ts_ns,
        netns,
        sysctls,
        counters,
        error,
        stale: flags & N_STALE != 0,
    })
}

/// Reader-side state of the current frame.
#[derive(Default)]
pub(crate) struct Decoder {
    last_ts_ns: u64,
    /// From a TAG_PROBE_ERRORS record, for the Losses record after it.
    probe_errors: u64,
    addrs: Vec<IpAddr>,
    tasks: Vec<Task>,
    dests: Vec<DestSlot>,
    /// From a TAG_KERNEL_MISSED record, for the Losses record after it.
    kernel_missed: u64,
    /// From a TAG_SYN_RETRANS record, for the Close record after it.
    syn_retrans: u32,
    /// From a TAG_CONNTRACK record, for the Counters or Netns record after it.
    conntrack: Option<Conntrack>,
    /// From a TAG_BOUND_PORT record, for the close or connect error after it.
    bound_port: bool,
}

impl Decoder {
    pub(crate) fn reset(&mut self) {
        self.last_ts_ns = 0;
        self.probe_errors = 0;
        self.addrs.clear();
        self.tasks.clear();
        self.dests.clear();
        self.kernel_missed = 0;
        self.syn_retrans = 0;
        self.conntrack = None;
        self.bound_port = false;
    }

    fn ts(&mut self, c: &mut Cursor) -> Result<u64, Corruption> {
        let ts = self.last_ts_ns.wrapping_add(c.i64()? as u64);
        self.last_ts_ns = ts;
        Ok(ts)
    }

    fn index(c: &mut Cursor, len: usize, dict: &'static str) -> Result<usize, Corruption> {
        let i = c.u64()?;
        if i >= len as u64 {
            return Err(Corruption::BadIndex { dict, index: i });
        }
        Ok(i as usize)
    }

    fn addr_ref(&self, c: &mut Cursor) -> Result<IpAddr, Corruption> {
        Ok(self.addrs[Self::index(c, self.addrs.len(), "address")?])
    }

    fn task_ref(&self, c: &mut Cursor) -> Result<Task, Corruption> {
        Ok(self.tasks[Self::index(c, self.tasks.len(), "task")?])
    }

    fn push<T>(dict: &mut Vec<T>, v: T, name: &'static str) -> Result<(), Corruption> {
        if dict.len() >= MAX_DICT_ENTRIES {
            return Err(Corruption::DictFull(name));
        }
        dict.push(v);
        Ok(())
    }

    /// Decodes the next record. `Ok(None)` for dictionary definitions and
    /// skipped unknown records, which produce no input.
    pub(crate) fn decode(&mut self, c: &mut Cursor) -> Result<Option<Input>, Corruption> {
        let tag = c.u8()?;
        let input = match tag {
            TAG_CLOSE => Input::Event(Event::Close(self.close(c)?)),
            TAG_CONNECT_ERROR => Input::Event(Event::ConnectError(self.connect_error(c)?)),
            TAG_HOST => Input::Host(self.host(c)?),
            TAG_TICK => Input::Tick {
                now_ns: self.ts(c)?,
            },
            TAG_CGROUP => {
                let id = c.u64()?;
                let path = match c.u8()? {
                    0 => None,
                    1 => Some(c.str(MAX_STR_BYTES, "cgroup path")?),
                    _ => return Err(Corruption::OutOfRange("cgroup path presence")),
                };
                Input::Cgroup { id, path }
            }
            TAG_SOCKETS => {
                let ts_ns = self.ts(c)?;
                Input::Sockets(self.sockets(c, ts_ns, false)?)
            }
            TAG_SOCKETS_NO_TW => {
                let n = c.len(usize::MAX, "skippable record")?;
                let mut inner = Cursor::new(c.bytes(n)?);
                let ts_ns = inner.u64()?;
                Input::Sockets(self.sockets(&mut inner, ts_ns, true)?)
            }
            TAG_COUNTERS => Input::Counters(KernelCounters {
                ts_ns: self.ts(c)?,
                tcp_inuse: c.u64()?,
                tcp_tw: c.u64()?,
                tw: c.u64()?,
                tw_recycled: c.u64()?,
                tw_overflow: c.u64()?,
                conntrack: self.conntrack.take(),
            }),
            TAG_LOSSES => Input::Losses {
                ts_ns: self.ts(c)?,
                losses: Losses {
                    ringbuf_lost: c.u64()?,
                    sock_evicted: c.u64()?,
                    connect_untracked: c.u64()?,
                    decode_errors: c.u64()?,
                    probe_errors: std::mem::take(&mut self.probe_errors),
                    kernel_missed: std::mem::take(&mut self.kernel_missed),
                },
            },
            TAG_DEF_ADDR => {
                let a = c.addr()?;
                Self::push(&mut self.addrs, a, "address")?;
                return Ok(None);
            }
            TAG_DEF_TASK => {
                let pid = c.u32("pid")?;
                let tid = c.u32("tid")?;
                let cgroup_id = c.u64()?;
                let n = c.len(16, "comm")?;
                let comm = read_comm(c, n)?;
                let thread = match c.u64()? {
                    THREAD_SAME_AS_COMM => comm,
                    n if n <= 16 => read_comm(c, n as usize)?,
                    n => {
                        return Err(Corruption::TooLong {
                            what: "thread name",
                            len: n,
                            max: 16,
                        });
                    }
                };
                let t = Task {
                    pid,
                    tid,
                    comm,
                    thread,
                    cgroup_id,
                };
                Self::push(&mut self.tasks, t, "task")?;
                return Ok(None);
            }
            TAG_DEF_DEST => {
                let netns = c.u32("netns")?;
                let addr = self.addr_ref(c)?;
                let port = c.u16("port")?;
                let slot = DestSlot {
                    key: DestKey { netns, addr, port },
                    last_port: 0,
                };
                Self::push(&mut self.dests, slot, "destination")?;
                return Ok(None);
            }
            TAG_PROBE_ERRORS => {
                let n = c.len(usize::MAX, "skippable record")?;
                let mut ext = Cursor::new(c.bytes(n)?);
                // Fields a later minor version appends are ignored.
                self.probe_errors = ext.u64()?;
                return Ok(None);
            }
            TAG_CALL_STACK => {
                let n = c.len(usize::MAX, "skippable record")?;
                let mut inner = Cursor::new(c.bytes(n)?);
                Input::CallStack(read_call_stack(&mut inner)?)
            }
            TAG_RUNTIME => {
                let n = c.len(usize::MAX, "skippable record")?;
                let mut inner = Cursor::new(c.bytes(n)?);
                // Fields a later minor version appends are ignored.
                Input::Runtime(crate::input::ProcRuntime {
                    pid: inner.u32("pid")?,
                    exe: inner.str(MAX_STR_BYTES, "runtime exe")?,
                    name: inner.str(MAX_STR_BYTES, "runtime name")?,
                    evidence: inner.str(MAX_STR_BYTES, "runtime evidence")?,
                })
            }
            TAG_NETNS => {
                let n = c.len(usize::MAX, "skippable record")?;
                let mut inner = Cursor::new(c.bytes(n)?);
                let mut info = read_netns(&mut inner)?;
                let ct = self.conntrack.take();
                if let Some(k) = info.counters.as_mut() {
                    k.conntrack = ct;
                }
                Input::Netns(info)
            }
            TAG_NETWORKS => {
                let n = c.len(usize::MAX, "skippable record")?;
                let mut inner = Cursor::new(c.bytes(n)?);
                let ts_ns = inner.u64()?;
                let netns = inner.u32("netns")?;
                let count = inner.len(MAX_NETWORKS, "networks")?;
                let mut nets = Vec::with_capacity(count.min(1024));
                for _ in 0..count {
                    let a = inner.addr()?;
                    let len = inner.u8()?;
                    let max = if a.is_ipv4() { 32 } else { 128 };
                    if len > max {
                        return Err(Corruption::OutOfRange("network prefix length"));
                    }
                    nets.push((a, len));
                }
                Input::Networks(LocalNetworks { ts_ns, netns, nets })
            }
            TAG_CONNTRACK => {
                let n = c.len(usize::MAX, "skippable record")?;
                let mut inner = Cursor::new(c.bytes(n)?);
                // Fields a later minor version appends are ignored.
                self.conntrack = Some(read_conntrack(&mut inner)?);
                return Ok(None);
            }
            TAG_SYN_RETRANS => {
                let n = c.len(usize::MAX, "skippable record")?;
                let mut ext = Cursor::new(c.bytes(n)?);
                self.syn_retrans = ext.u32("syn_retrans")?;
                return Ok(None);
            }
            TAG_BOUND_PORT => {
                let n = c.len(usize::MAX, "skippable record")?;
                c.bytes(n)?;
                self.bound_port = true;
                return Ok(None);
            }
            TAG_BIND_ERROR => {
                let n = c.len(usize::MAX, "skippable record")?;
                let mut inner = Cursor::new(c.bytes(n)?);
                Input::Event(Event::BindError(read_bind_error(&mut inner)?))
            }
            TAG_WORKLOAD => {
                let n = c.len(usize::MAX, "skippable record")?;
                let mut inner = Cursor::new(c.bytes(n)?);
                Input::Workload(read_workload(&mut inner)?)
            }
            TAG_SOCKET_OWNERS => {
                let n = c.len(usize::MAX, "skippable record")?;
                let mut inner = Cursor::new(c.bytes(n)?);
                Input::SocketOwners(read_owners(&mut inner)?)
            }
            TAG_KERNEL_MISSED => {
                let n = c.len(usize::MAX, "skippable record")?;
                let body = c.bytes(n)?;
                let mut inner = Cursor::new(body);
                self.kernel_missed = inner.u64()?;
                return Ok(None);
            }
            t if t >= TAG_FIRST_SKIPPABLE => {
                let n = c.len(usize::MAX, "skippable record")?;
                c.bytes(n)?;
                return Ok(None);
            }
            t => return Err(Corruption::UnknownTag(t)),
        };
        Ok(Some(input))
    }

    fn close(&mut self, c: &mut Cursor) -> Result<ConnClose, Corruption> {
        let flags = c.u8()?;
        let has = |bit: u8| flags & bit != 0;
        let end_ns = self.ts(c)?;
        let start_ns = end_ns.wrapping_sub(c.u64()?);
        let handshake_ns = if has(C_HANDSHAKE) {
            Some(c.u64()?)
        } else {
            None
        };
        let task = if has(C_TASK) {
            Some(self.task_ref(c)?)
        } else {
            None
        };
        let di = Self::index(c, self.dests.len(), "destination")?;
        let varying_addr = self.addr_ref(c)?;
        let delta = i16::try_from(c.i64()?).map_err(|_| Corruption::OutOfRange("port delta"))?;
        let slot = &mut self.dests[di];
        let varying_port = slot.last_port.wrapping_add(delta as u16);
        slot.last_port = varying_port;
        let key = slot.key;
        let bytes = if has(C_BYTES) {
            Some((c.u64()?, c.u64()?))
        } else {
            None
        };
        let errno = if has(C_ERRNO) {
            Some(c.i32("errno")?)
        } else {
            None
        };
        let (direction, (saddr, sport), (daddr, dport)) = if has(C_INBOUND) {
            (
                Direction::Inbound,
                (key.addr, key.port),
                (varying_addr, varying_port),
            )
        } else {
            (
                Direction::Outbound,
                (varying_addr, varying_port),
                (key.addr, key.port),
            )
        };
        Ok(ConnClose {
            start_ns,
            end_ns,
            handshake_ns,
            task,
            netns: key.netns,
            direction,
            saddr,
            sport,
            daddr,
            dport,
            bytes,
            local_close: has(C_LOCAL_CLOSE),
            peer_close: has(C_PEER_CLOSE),
            established: has(C_ESTABLISHED),
            errno,
            syn_retrans: std::mem::take(&mut self.syn_retrans),
            bound_port: std::mem::take(&mut self.bound_port),
        })
    }

    fn connect_error(&mut self, c: &mut Cursor) -> Result<ConnectError, Corruption> {
        let flags = c.u8()?;
        if flags & !E_KNOWN != 0 {
            return Err(Corruption::OutOfRange("connect-error flags"));
        }
        let bound = std::mem::take(&mut self.bound_port);
        let cause = match (flags >> E_CAUSE_SHIFT) & 0b11 {
            0 => Cause::PortExhaustion,
            1 if bound => Cause::PortInUse,
            1 => Cause::AddressUnavailable,
            2 => Cause::Other,
            _ => return Err(Corruption::OutOfRange("connect-error cause")),
        };
        let ts_ns = self.ts(c)?;
        let duration_ns = c.u64()?;
        let task = if flags & E_TASK != 0 {
            Some(self.task_ref(c)?)
        } else {
            None
        };
        let key = self.dests[Self::index(c, self.dests.len(), "destination")?].key;
        Ok(ConnectError {
            ts_ns,
            duration_ns,
            task,
            netns: key.netns,
            daddr: key.addr,
            dport: key.port,
            errno: c.i32("errno")?,
            cause,
            saw_syn_sent: flags & E_SAW_SYN_SENT != 0,
        })
    }

    fn host(&mut self, c: &mut Cursor) -> Result<HostInfo, Corruption> {
        let mono_ns = self.ts(c)?;
        let unix_ns = c.i64()?;
        let hostname = c.str(MAX_STR_BYTES, "hostname")?;
        let kernel = c.str(MAX_STR_BYTES, "kernel release")?;
        let netns = c.u32("netns")?;
        let sysctls = read_sysctls(c)?;
        Ok(HostInfo {
            hostname,
            kernel,
            clock: WallClock { mono_ns, unix_ns },
            netns,
            sysctls,
        })
    }

    fn sockets(
        &mut self,
        c: &mut Cursor,
        ts_ns: u64,
        without_time_wait: bool,
    ) -> Result<SocketTable, Corruption> {
        let netns = c.u32("netns")?;
        let n = c.len(MAX_SOCKETS, "socket table")?;
        // An entry takes at least 9 bytes.
        let mut entries = Vec::with_capacity(n.min(c.remaining() / 9));
        for _ in 0..n {
            let state = match c.u8()? {
                0 => SockState::Established,
                1 => SockState::SynSent,
                2 => SockState::TimeWait,
                3 => SockState::Other(c.u8()?),
                _ => return Err(Corruption::OutOfRange("socket state")),
            };
            let mut end = || -> Result<(IpAddr, u16), Corruption> {
                let a = match c.u64()? {
                    0 => c.addr()?,
                    i => *self
                        .addrs
                        .get((i - 1) as usize)
                        .ok_or(Corruption::BadIndex {
                            dict: "address",
                            index: i - 1,
                        })?,
                };
                Ok((a, c.u16("port")?))
            };
            let (saddr, sport) = end()?;
            let (daddr, dport) = end()?;
            entries.push(SocketEntry {
                state,
                saddr,
                sport,
                daddr,
                dport,
                expires_ms: c.u32("expires_ms")?,
                uid: c.u32("uid")?,
                inode: c.u32("inode")?,
            });
        }
        Ok(SocketTable {
            ts_ns,
            netns,
            entries,
            without_time_wait,
        })
    }
}
