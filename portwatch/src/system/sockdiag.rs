//! The live TCP socket table through netlink sock_diag (what `ss -tan`
//! reads), IPv4 and IPv6: every state that holds a local port (ESTABLISHED,
//! SYN_SENT, FIN_WAIT1/2, CLOSE_WAIT, LAST_ACK, CLOSING and TIME_WAIT) for
//! the held-port counts, LISTEN sockets so accepted connections can be told
//! from outbound ones.
//!
//! What a dump costs, and why this reader is written by hand (measured on
//! the issue-14 bench, loopback churn in a namespace): the kernel answers a
//! dump by walking the whole established hash of the host (every namespace's
//! sockets, TIME_WAIT included) and skipping those of other namespaces,
//! families and states; only the sockets that match are filled into
//! messages. The walk is the larger part and is paid once per request, so:
//! - one request for both families (the `TCPDIAG_GETSOCK` request type,
//!   whose dump asks for `AF_UNSPEC`), not one per family as
//!   `SOCK_DIAG_BY_FAMILY` requires: one walk instead of two. The
//!   `netlink-packet-sock-diag` crate builds only the per-family request.
//! - the replies are `struct inet_diag_msg` (fixed layout, uapi
//!   linux/inet_diag.h) read in place from one reused buffer: no attribute
//!   parsing (none is asked for), no allocation per message or datagram.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Instant;

use super::CollectError;
use crate::event::canonical_addr;
use crate::input::{SockState, SocketEntry, SocketTable};

/// `NETLINK_SOCK_DIAG` (= the old `NETLINK_INET_DIAG`).
const NETLINK_SOCK_DIAG: libc::c_int = 4;
/// The request type whose dump covers IPv4 and IPv6 at once
/// (`inet_diag_rcv_msg_compat`); its replies carry the same type.
const TCPDIAG_GETSOCK: u16 = 18;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
/// Size of the netlink header that precedes `inet_diag_msg`.
const NLMSG_HDR_LEN: usize = 16;
/// `struct inet_diag_msg`: family, state, timer, retrans (4 bytes), the
/// 48-byte `inet_diag_sockid`, then expires, rqueue, wqueue, uid, inode.
const DIAG_MSG_LEN: usize = 72;
/// Offset of `idiag_expires` in `struct inet_diag_msg`.
const EXPIRES_OFFSET: usize = 4 + 48;
/// `struct inet_diag_req` (the request of `TCPDIAG_GETSOCK`): family,
/// src_len, dst_len, ext, the 48-byte sockid, states, dbs.
const DIAG_REQ_LEN: usize = 4 + 48 + 4 + 4;
/// The kernel fills dump datagrams of at most 32 KiB (`netlink_dump`
/// sizes them to the reader's largest buffer, capped there); a buffer
/// this big never truncates one.
const RECV_BUF: usize = 64 * 1024;

/// TCP state bits (`1 << state`) a full reading asks for. A socket whose
/// peer closed and whose owner never calls close() sits in CLOSE_WAIT
/// holding its port for as long as the process lives (issue 11, road 1):
/// every state that holds a port is asked for, and LISTEN to tell
/// accepted connections apart.
pub const STATES_ALL: u32 = 1 << 1 // ESTABLISHED
    | 1 << 2 // SYN_SENT
    | 1 << 4 // FIN_WAIT1
    | 1 << 5 // FIN_WAIT2
    | 1 << 6 // TIME_WAIT
    | 1 << 8 // CLOSE_WAIT
    | 1 << 9 // LAST_ACK
    | 1 << 10 // LISTEN
    | 1 << 11; // CLOSING

/// The TIME_WAIT bit of a states mask.
pub const TIME_WAIT_BIT: u32 = 1 << 6;

/// What most readings ask for under churn: every state of [`STATES_ALL`]
/// but TIME_WAIT. Filling the messages of a churning namespace's ~27,000
/// TIME_WAIT sockets was ~40% of its reading, and every local close is an
/// event already: the engine keeps TIME_WAIT from the closes between full
/// readings (see `live::FULL_TABLE_EVERY`). The kernel still walks the
/// whole established hash; it only stops filling messages for them.
pub const STATES_WITHOUT_TIME_WAIT: u32 = STATES_ALL & !TIME_WAIT_BIT;

fn nl_err(what: &str, e: impl std::fmt::Display) -> CollectError {
    CollectError::Netlink(format!("{what}: {e}"))
}

/// What one reading cost: how long it took and what it returned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DumpCost {
    /// Wall time of the whole reading (socket, request, every datagram).
    pub took_ns: u64,
    /// CPU time the reading thread spent on it, the kernel's walk
    /// included (it runs in our recv calls): what the reading costs the
    /// host, whatever else competes for the CPU meanwhile.
    pub cpu_ns: u64,
    /// Sockets returned.
    pub sockets: usize,
    /// Bytes the kernel sent, in this many datagrams.
    pub bytes: usize,
    pub datagrams: usize,
}

/// Reads socket tables; keeps its receive buffer between readings.
/// The netlink socket is opened per reading: it belongs to the namespace
/// it is opened in (the namespace worker moves between them), and an open
/// one would keep a gone container's namespace alive.
pub struct Reader {
    buf: Vec<u8>,
}

impl Default for Reader {
    fn default() -> Self {
        Self::new()
    }
}

impl Reader {
    pub fn new() -> Reader {
        Reader {
            buf: vec![0; RECV_BUF],
        }
    }

    /// Reads the table of the calling thread's network namespace: the
    /// sockets in the states of `states` (bits `1 << state`, see
    /// [`STATES_ALL`]), both families. A mask without [`TIME_WAIT_BIT`]
    /// gives a table marked `without_time_wait`.
    pub fn read(
        &mut self,
        ts_ns: u64,
        netns: u32,
        states: u32,
    ) -> Result<(SocketTable, DumpCost), CollectError> {
        let start = Instant::now();
        let cpu_start = thread_cpu_ns();
        let mut cost = DumpCost::default();
        let fd = open()?;
        send_request(&fd, states)?;
        let mut entries = Vec::new();
        'datagrams: loop {
            let n = recv(&fd, &mut self.buf)?;
            cost.datagrams += 1;
            cost.bytes += n;
            let mut data = &self.buf[..n];
            while data.len() >= NLMSG_HDR_LEN {
                let len = u32_at(data, 0) as usize;
                if len < NLMSG_HDR_LEN || len > data.len() {
                    return Err(nl_err("decoding a response", format!("bad length {len}")));
                }
                let msg = &data[..len];
                match u16::from_ne_bytes([msg[4], msg[5]]) {
                    NLMSG_DONE => break 'datagrams,
                    NLMSG_ERROR => {
                        let errno = msg.get(16..20).map_or(0, |_| u32_at(msg, 16) as i32);
                        return Err(nl_err("dump", io::Error::from_raw_os_error(-errno)));
                    }
                    TCPDIAG_GETSOCK => {
                        if let Some(e) = parse_entry(&msg[NLMSG_HDR_LEN..]) {
                            entries.push(e);
                        }
                    }
                    _ => {}
                }
                // Netlink messages are 4-byte aligned.
                data = data.get((len + 3) & !3..).unwrap_or_default();
            }
        }
        cost.sockets = entries.len();
        cost.took_ns = start.elapsed().as_nanos() as u64;
        cost.cpu_ns = thread_cpu_ns().saturating_sub(cpu_start);
        Ok((
            SocketTable {
                ts_ns,
                netns,
                entries,
                without_time_wait: states & TIME_WAIT_BIT == 0,
            },
            cost,
        ))
    }
}

/// Reads the whole table of the calling thread's network namespace.
pub fn read_socket_table(ts_ns: u64, netns: u32) -> Result<SocketTable, CollectError> {
    Reader::new().read(ts_ns, netns, STATES_ALL).map(|r| r.0)
}

fn open() -> Result<OwnedFd, CollectError> {
    // SAFETY: plain socket(2); the fd is owned by the OwnedFd at once.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(nl_err("opening socket", io::Error::last_os_error()));
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn send_request(fd: &OwnedFd, states: u32) -> Result<(), CollectError> {
    let mut req = [0u8; NLMSG_HDR_LEN + DIAG_REQ_LEN];
    req[0..4].copy_from_slice(&((NLMSG_HDR_LEN + DIAG_REQ_LEN) as u32).to_ne_bytes());
    req[4..6].copy_from_slice(&TCPDIAG_GETSOCK.to_ne_bytes());
    req[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    // seq 0, pid 0 (the kernel's). Body: family 0 (both; the compat dump
    // asks for AF_UNSPEC whatever it says), no source/destination
    // lengths, no extensions, a zero sockid (any port, any interface),
    // then the states.
    let states_at = NLMSG_HDR_LEN + 4 + 48;
    req[states_at..states_at + 4].copy_from_slice(&states.to_ne_bytes());
    // SAFETY: a zeroed sockaddr_nl with only the family set is the kernel.
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: req and kernel are valid for the lengths given.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            req.as_ptr().cast(),
            req.len(),
            0,
            (&raw const kernel).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if n != req.len() as isize {
        return Err(nl_err(
            "sending the dump request",
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// One datagram into `buf`; its length.
fn recv(fd: &OwnedFd, buf: &mut [u8]) -> Result<usize, CollectError> {
    loop {
        // SAFETY: buf is valid for writes of buf.len() bytes.
        let n = unsafe {
            libc::recv(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_TRUNC,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(nl_err("receiving", e));
        }
        let n = n as usize;
        if n == 0 {
            return Err(nl_err("receiving", "empty datagram"));
        }
        if n > buf.len() {
            return Err(nl_err(
                "receiving",
                format!("datagram of {n} bytes truncated"),
            ));
        }
        return Ok(n);
    }
}

/// CPU time of the calling thread (CLOCK_THREAD_CPUTIME_ID), 0 if unknown.
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// One `struct inet_diag_msg` (without the netlink header); `None` when
/// too short or of a family other than IPv4/IPv6.
pub fn parse_entry(m: &[u8]) -> Option<SocketEntry> {
    if m.len() < DIAG_MSG_LEN {
        return None;
    }
    // inet_diag_sockid: sport, dport (network order), src[16], dst[16],
    // if, cookie[2].
    let addr = |at: usize| -> Option<IpAddr> {
        match i32::from(m[0]) {
            libc::AF_INET => Some(IpAddr::V4(Ipv4Addr::new(
                m[at],
                m[at + 1],
                m[at + 2],
                m[at + 3],
            ))),
            libc::AF_INET6 => {
                let b: [u8; 16] = m[at..at + 16].try_into().ok()?;
                Some(canonical_addr(IpAddr::V6(Ipv6Addr::from(b))))
            }
            _ => None,
        }
    };
    let state = match m[1] {
        1 => SockState::Established,
        2 => SockState::SynSent,
        6 => SockState::TimeWait,
        s => SockState::Other(s),
    };
    Some(SocketEntry {
        state,
        sport: u16::from_be_bytes([m[4], m[5]]),
        dport: u16::from_be_bytes([m[6], m[7]]),
        saddr: addr(8)?,
        daddr: addr(24)?,
        expires_ms: u32_at(m, EXPIRES_OFFSET),
        uid: u32_at(m, EXPIRES_OFFSET + 12),
        inode: u32_at(m, EXPIRES_OFFSET + 16),
    })
}

/// `idiag_expires` (ms) of one raw netlink message, host byte order.
pub fn raw_expires_ms(msg: &[u8]) -> Option<u32> {
    let at = NLMSG_HDR_LEN + EXPIRES_OFFSET;
    let b = msg.get(at..at + 4)?;
    Some(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}
