//! Builders for synthetic input streams shared by the engine tests.
#![allow(dead_code, reason = "each test file uses a different subset")]

use std::net::IpAddr;

use portwatch::clock::WallClock;
use portwatch::engine::{Advice, Model};
use portwatch::event::{Cause, Comm, ConnClose, ConnectError, Direction, Event, Task};
use portwatch::input::{
    Conntrack, ConntrackStats, HostInfo, Input, KernelCounters, LocalNetworks, SockState,
    SocketEntry, SocketOwner, SocketOwners, Sysctls,
};

pub const S: u64 = 1_000_000_000;
pub const MS: u64 = 1_000_000;

pub fn sysctls(lo: u16, hi: u16) -> Sysctls {
    Sysctls {
        port_range: (lo, hi),
        reserved_ports: vec![],
        tcp_tw_reuse: Some(2),
        tcp_tw_reuse_delay_ms: Some(1000),
        tcp_timestamps: Some(1),
        tcp_max_tw_buckets: Some(262_144),
        tcp_fin_timeout: Some(60),
    }
}

pub fn host(lo: u16, hi: u16) -> Input {
    Input::Host(HostInfo {
        hostname: "testhost".into(),
        kernel: "6.18.0".into(),
        clock: WallClock {
            mono_ns: 0,
            unix_ns: 1_700_000_000_000_000_000,
        },
        netns: 4026531840,
        sysctls: sysctls(lo, hi),
    })
}

pub fn tick(ns: u64) -> Input {
    Input::Tick { now_ns: ns }
}

pub fn cgroup(id: u64, path: &str) -> Input {
    Input::Cgroup {
        id,
        path: Some(path.to_string()),
    }
}

pub fn task(pid: u32, comm: &str, cgroup_id: u64) -> Task {
    portwatch::tracefile::synthetic::main_thread(pid, comm, cgroup_id)
}

/// One outbound connection from `t` to `dst`, started at `start_ns`, living
/// `life_ns`, closed first by this host when `local_close`.
pub fn conn(t: Task, dst: &str, start_ns: u64, life_ns: u64, local_close: bool) -> Input {
    let (daddr, dport) = split(dst);
    Input::Event(Event::Close(ConnClose {
        start_ns,
        end_ns: start_ns + life_ns,
        handshake_ns: Some(50_000),
        task: Some(t),
        netns: 4026531840,
        direction: Direction::Outbound,
        saddr: "127.0.0.1".parse().unwrap(),
        sport: 40000,
        daddr,
        dport,
        bytes: None,
        local_close,
        peer_close: !local_close,
        established: true,
        errno: None,
        syn_retrans: 0,
        bound_port: false,
    }))
}

/// One connection accepted by a local listener on `local`.
pub fn inbound(local: &str, start_ns: u64, life_ns: u64) -> Input {
    let (saddr, sport) = split(local);
    Input::Event(Event::Close(ConnClose {
        start_ns,
        end_ns: start_ns + life_ns,
        handshake_ns: Some(50_000),
        task: None,
        netns: 4026531840,
        direction: Direction::Inbound,
        saddr,
        sport,
        daddr: "10.0.0.9".parse().unwrap(),
        dport: 51000,
        bytes: None,
        local_close: false,
        peer_close: true,
        established: true,
        errno: None,
        syn_retrans: 0,
        bound_port: false,
    }))
}

pub fn connect_error(t: Task, dst: &str, ts_ns: u64, errno: i32) -> Input {
    let (daddr, dport) = split(dst);
    Input::Event(Event::ConnectError(ConnectError {
        ts_ns,
        duration_ns: 1000,
        task: Some(t),
        netns: 4026531840,
        daddr,
        dport,
        errno,
        cause: if errno == 99 {
            Cause::PortExhaustion
        } else {
            Cause::Other
        },
        saw_syn_sent: false,
    }))
}

pub fn split(dst: &str) -> (IpAddr, u16) {
    let (a, p) = dst.rsplit_once(':').expect("addr:port");
    (
        a.trim_matches(['[', ']']).parse().expect("address"),
        p.parse().expect("port"),
    )
}

/// `per_s` connections per second from `from_s` to `to_s` (exclusive),
/// evenly spaced, each living `life_ns`.
pub fn churn(
    t: Task,
    dst: &str,
    from_s: u64,
    to_s: u64,
    per_s: u64,
    life_ns: u64,
    local_close: bool,
) -> Vec<Input> {
    let mut v = Vec::new();
    for s in from_s..to_s {
        for i in 0..per_s {
            v.push(conn(t, dst, s * S + i * (S / per_s), life_ns, local_close));
        }
    }
    v.sort_by_key(|i| i.ts_ns());
    v
}

/// The host namespace's interface networks, e.g. `[("10.0.0.5", 24)]`.
pub fn networks(ts_ns: u64, nets: &[(&str, u8)]) -> Input {
    Input::Networks(LocalNetworks {
        ts_ns,
        netns: 4026531840,
        nets: nets
            .iter()
            .map(|(a, len)| (a.parse().unwrap(), *len))
            .collect(),
    })
}

/// Kernel counters with a conntrack table of `count` of `max` entries and
/// cumulative (insert_failed, drop, early_drop).
pub fn conntrack_counters(ts_ns: u64, count: u64, max: u64, failed: (u64, u64, u64)) -> Input {
    Input::Counters(KernelCounters {
        ts_ns,
        conntrack: Some(Conntrack {
            count,
            max: Some(max),
            stats: Some(ConntrackStats {
                insert_failed: failed.0,
                drop: failed.1,
                early_drop: failed.2,
            }),
        }),
        ..KernelCounters::default()
    })
}

/// An outbound handshake to `dst` that got no answer: given up by the
/// application after `wait_ns` (`aborted`), `syn_retrans` SYNs retransmitted.
pub fn unanswered(t: Task, dst: &str, start_ns: u64, wait_ns: u64, syn_retrans: u32) -> Input {
    let Input::Event(Event::Close(c)) = conn(t, dst, start_ns, wait_ns, false) else {
        unreachable!()
    };
    Input::Event(Event::Close(ConnClose {
        handshake_ns: None,
        peer_close: false,
        established: false,
        syn_retrans,
        ..c
    }))
}

/// The model's advice with `key`; panics listing every piece of advice
/// when there is none.
pub fn advice_with_key<'m>(m: &'m Model, key: &str) -> &'m Advice {
    m.system
        .advice
        .iter()
        .find(|a| a.key == key)
        .unwrap_or_else(|| panic!("no advice {key}: {:#?}", m.system.advice))
}

/// The fields every JSON verdict carries, in `top --batch` and `report` alike.
pub const VERDICT_JSON_FIELDS: [&str; 9] = [
    "daddr",
    "dport",
    "verdict",
    "new_per_sec",
    "lifetime_p50_ms",
    "time_wait",
    "budget_share",
    "evidence",
    "fix",
];

/// `n` CLOSE_WAIT sockets from `saddr`, local ports from 40000, to `dst`
/// ("addr:port"), inodes from `first_inode`: what a socket-table read
/// shows of a client that leaks its connections.
pub fn close_wait_sockets(saddr: &str, dst: &str, n: u16, first_inode: u32) -> Vec<SocketEntry> {
    let (daddr, dport) = split(dst);
    (0..n)
        .map(|i| SocketEntry {
            state: SockState::Other(8),
            saddr: saddr.parse().unwrap(),
            sport: 40000 + i,
            daddr,
            dport,
            expires_ms: 0,
            uid: 0,
            inode: first_inode + u32::from(i),
        })
        .collect()
}

/// The owners of `sockets`, all of them process `pid` named `comm` in
/// cgroup `cgroup_id`, as read at `ts_ns`.
pub fn all_owned_by(
    ts_ns: u64,
    sockets: &[SocketEntry],
    pid: u32,
    comm: &str,
    cgroup_id: u64,
) -> Input {
    Input::SocketOwners(SocketOwners {
        ts_ns,
        owners: sockets
            .iter()
            .map(|x| SocketOwner {
                inode: x.inode,
                pid,
                comm: Comm::new(comm),
                cgroup_id,
            })
            .collect(),
        not_found: 0,
        failed: 0,
    })
}

/// A socket from 127.0.0.1:`sport` to 127.0.0.1:7000 in `state`, its timer
/// due in `expires_ms`, inode 0: a row of a socket-table read.
pub fn socket_to_7000(state: SockState, sport: u16, expires_ms: u32) -> SocketEntry {
    SocketEntry {
        state,
        saddr: "127.0.0.1".parse().unwrap(),
        sport,
        daddr: "127.0.0.1".parse().unwrap(),
        dport: 7000,
        expires_ms,
        uid: 0,
        inode: 0,
    }
}

/// [`socket_to_7000`] in TIME_WAIT, which ends in `expires_ms`.
pub fn time_wait_to_7000(sport: u16, expires_ms: u32) -> SocketEntry {
    socket_to_7000(SockState::TimeWait, sport, expires_ms)
}
