//! The live TCP socket table through netlink sock_diag (what `ss -tan`
//! reads), IPv4 and IPv6: every state that holds a local port (ESTABLISHED,
//! SYN_SENT, FIN_WAIT1/2, CLOSE_WAIT, LAST_ACK, CLOSING and TIME_WAIT) for
//! the held-port counts, LISTEN sockets so accepted connections can be told
//! from outbound ones.
//!
//! Messages are built and parsed by `netlink-packet-sock-diag`. One field it
//! does not expose: for TIME_WAIT sockets it reports `Timer::TimeWait`
//! without the remaining time, although the kernel sends it in
//! `inet_diag_msg.idiag_expires`. We read that one u32 from the raw message
//! (fixed offset in a fixed-layout struct, length-checked) because the
//! expiry schedule is what tells an on-call how fast ports come free.

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP};
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_sys::protocols::NETLINK_SOCK_DIAG;
use netlink_sys::{Socket, SocketAddr};

use super::CollectError;
use crate::event::canonical_addr;
use crate::input::{SockState, SocketEntry, SocketTable};

/// Size of the netlink header that precedes `inet_diag_msg`.
const NLMSG_HDR_LEN: usize = 16;
/// Offset of `idiag_expires` in `struct inet_diag_msg` (uapi
/// linux/inet_diag.h): 4 bytes of family/state/timer/retrans, then the
/// 48-byte `inet_diag_sockid`.
const EXPIRES_OFFSET: usize = 4 + 48;

fn nl_err(what: &str, e: impl std::fmt::Display) -> CollectError {
    CollectError::Netlink(format!("{what}: {e}"))
}

/// Reads the table of the current network namespace.
pub fn read_socket_table(ts_ns: u64, netns: u32) -> Result<SocketTable, CollectError> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG).map_err(|e| nl_err("opening socket", e))?;
    socket.bind_auto().map_err(|e| nl_err("binding", e))?;
    socket
        .connect(&SocketAddr::new(0, 0))
        .map_err(|e| nl_err("connecting", e))?;
    let mut entries = Vec::new();
    for family in [AF_INET, AF_INET6] {
        dump(&socket, family, &mut entries)?;
    }
    Ok(SocketTable {
        ts_ns,
        netns,
        entries,
    })
}

fn dump(socket: &Socket, family: u8, out: &mut Vec<SocketEntry>) -> Result<(), CollectError> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut packet = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::empty(),
            // A socket whose peer closed and whose owner never calls
            // close() sits in CLOSE_WAIT holding its port for as long as
            // the process lives (issue 11, road 1): every such state is
            // asked for, not only ESTABLISHED/SYN_SENT/TIME_WAIT.
            states: StateFlags::ESTABLISHED
                | StateFlags::SYN_SENT
                | StateFlags::FIN_WAIT1
                | StateFlags::FIN_WAIT2
                | StateFlags::TIME_WAIT
                | StateFlags::CLOSE_WAIT
                | StateFlags::LAST_ACK
                | StateFlags::CLOSING
                | StateFlags::LISTEN,
            socket_id: if family == AF_INET {
                SocketId::new_v4()
            } else {
                SocketId::new_v6()
            },
        })
        .into(),
    );
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    socket
        .send(&buf, 0)
        .map_err(|e| nl_err("sending the dump request", e))?;

    loop {
        let (data, _) = socket
            .recv_from_full()
            .map_err(|e| nl_err("receiving", e))?;
        if data.is_empty() {
            return Err(nl_err("receiving", "empty datagram"));
        }
        let mut off = 0;
        while off < data.len() {
            let bytes = &data[off..];
            let msg = NetlinkMessage::<SockDiagMessage>::deserialize(bytes)
                .map_err(|e| nl_err("decoding a response", e))?;
            let len = msg.header.length as usize;
            match msg.payload {
                NetlinkPayload::Done(_) => return Ok(()),
                NetlinkPayload::Error(e) => return Err(nl_err("dump", e.to_io())),
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) => {
                    let h = &r.header;
                    let state = match h.state {
                        1 => SockState::Established,
                        2 => SockState::SynSent,
                        6 => SockState::TimeWait,
                        s => SockState::Other(s),
                    };
                    let raw = bytes.get(..len).unwrap_or(bytes);
                    out.push(SocketEntry {
                        state,
                        saddr: canonical_addr(h.socket_id.source_address),
                        sport: h.socket_id.source_port,
                        daddr: canonical_addr(h.socket_id.destination_address),
                        dport: h.socket_id.destination_port,
                        expires_ms: raw_expires_ms(raw).unwrap_or(0),
                        uid: h.uid,
                        inode: h.inode,
                    });
                }
                _ => {}
            }
            if len == 0 {
                break; // malformed; do not loop forever
            }
            // Netlink messages are 4-byte aligned.
            off += (len + 3) & !3;
        }
    }
}

/// `idiag_expires` (ms) of one raw netlink message, host byte order.
pub fn raw_expires_ms(msg: &[u8]) -> Option<u32> {
    let at = NLMSG_HDR_LEN + EXPIRES_OFFSET;
    let b = msg.get(at..at + 4)?;
    Some(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}
