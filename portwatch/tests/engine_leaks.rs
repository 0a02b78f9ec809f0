//! Leaked sockets (issue 11, road 1): the socket table counts every state
//! that holds a port, owners come from the owner lookup, and the
//! `leaks_sockets` verdict names a process whose CLOSE_WAIT sockets are
//! stuck and growing or high; failures for want of a port point at it.

mod engine_support;
use engine_support::*;

use portwatch::engine::{Config, Engine, Model};
use portwatch::event::Comm;
use portwatch::input::{Input, SockState, SocketEntry, SocketOwner, SocketOwners, SocketTable};

const NS: u32 = 4026531840;
const DST: &str = "127.0.0.1:7000";

fn sock(state: SockState, sport: u16, dport: u16, inode: u32) -> SocketEntry {
    SocketEntry {
        state,
        saddr: "127.0.0.1".parse().unwrap(),
        sport,
        daddr: "127.0.0.1".parse().unwrap(),
        dport,
        expires_ms: if state == SockState::TimeWait {
            30_000
        } else {
            0
        },
        uid: 0,
        inode,
    }
}

const CLOSE_WAIT: SockState = SockState::Other(8);

/// `n` CLOSE_WAIT sockets to :7000, inodes from `first`.
fn close_wait(first: u32, n: u32) -> Vec<SocketEntry> {
    (0..n)
        .map(|i| {
            sock(
                CLOSE_WAIT,
                40000 + (first + i) as u16 % 60000,
                7000,
                first + i,
            )
        })
        .collect()
}

fn table(ts_ns: u64, entries: Vec<SocketEntry>) -> Input {
    Input::Sockets(SocketTable {
        ts_ns,
        netns: NS,
        entries,
        without_time_wait: false,
    })
}

fn owners(ts_ns: u64, pid: u32, inodes: impl IntoIterator<Item = u32>) -> Input {
    Input::SocketOwners(SocketOwners {
        ts_ns,
        owners: inodes
            .into_iter()
            .map(|inode| SocketOwner {
                inode,
                pid,
                comm: Comm::new("leaky"),
                cgroup_id: 0,
            })
            .collect(),
        not_found: 0,
        failed: 0,
    })
}

fn run(inputs: &[Input], at_ns: u64) -> Model {
    let mut e = Engine::new(Config::default());
    let mut v = inputs.to_vec();
    v.sort_by_key(|i| i.ts_ns());
    for i in &v {
        e.apply(i);
    }
    e.model(at_ns)
}

fn leak(m: &Model) -> Option<&portwatch::engine::Verdict> {
    m.verdicts.iter().find(|v| v.verdict == "leaks_sockets")
}

#[test]
fn every_state_that_holds_a_port_counts_toward_held_ports() {
    let states = [
        SockState::Established,
        SockState::SynSent,
        SockState::Other(4),  // FIN_WAIT1
        SockState::Other(5),  // FIN_WAIT2
        SockState::Other(8),  // CLOSE_WAIT
        SockState::Other(9),  // LAST_ACK
        SockState::Other(11), // CLOSING
        SockState::TimeWait,
    ];
    let entries = states
        .iter()
        .enumerate()
        .map(|(i, &s)| sock(s, 40000 + i as u16, 7000, 100 + i as u32))
        .collect();
    let m = run(&[host(40000, 40009), table(S, entries)], 2 * S);
    let d = &m.destinations[0];
    assert_eq!((d.held_ports, d.open_ports, d.close_wait), (8, 7, 1));
    assert_eq!(d.stats.time_wait, 1);
    // Loopback with tcp_tw_reuse=2: the TIME_WAIT port can be taken over,
    // so it is held but does not count toward the pressure.
    assert_eq!(d.time_wait_reusable, 1);
    assert!((d.pressure - 0.7).abs() < 1e-9, "{}", d.pressure);
}

fn leaky_client(at_s: u64) -> Vec<Input> {
    let t = task(42, "leaky", 0);
    let mut v = vec![host(40000, 40009)];
    for i in 0..4 {
        v.push(connect_error(t, DST, S + i * MS, 99));
    }
    for s in 2..=at_s {
        v.push(table(s * S, close_wait(100, 10)));
    }
    v.push(owners(2 * S + 500 * MS, 42, 100..110));
    v
}

#[test]
fn close_wait_held_by_one_process_is_a_leak_and_the_failures_point_at_it() {
    let m = run(&leaky_client(14), 14 * S);
    let v = leak(&m).expect("leaks_sockets");
    assert_eq!(v.pids, [42]);
    assert_eq!(v.service.name, "leaky");
    assert_eq!((v.daddr.to_string(), v.dport), ("127.0.0.1".into(), 7000));
    assert_eq!(v.close_wait, Some(10));
    assert_eq!(v.held_ports, Some(10));
    assert_eq!(v.failures_caused, Some(4));
    assert_eq!(v.held_for_s, Some(12.0));
    assert!((v.budget_share - 1.0).abs() < 1e-9);
    assert!(
        v.evidence.contains("10 sockets in CLOSE_WAIT"),
        "{}",
        v.evidence
    );
    assert!(v.evidence.contains("4 connect() calls"), "{}", v.evidence);
    assert!(v.fix.contains("does not help"), "{}", v.fix);
    // Both rows to the destination (the failures' has no local address)
    // point at the holder.
    assert_eq!(m.destinations.len(), 2);
    for d in &m.destinations {
        let h = d.held_by.as_ref().expect("held_by");
        assert_eq!(
            (h.pid, h.ports, h.close_wait, h.leaks_sockets),
            (42, 10, 10, true)
        );
    }
    let held: u64 = m.destinations.iter().map(|d| d.held_ports).sum();
    assert_eq!(held, 10);
    assert_eq!(m.system.close_wait, 10);
    assert_eq!(m.system.close_wait_unattributed, 0);
    let a = advice_with_key(&m, "leaks_sockets");
    assert!(a.text.contains("pid 42"), "{}", a.text);
    // A leak is not TIME_WAIT: no tw_reuse advice for it.
    assert!(
        !m.system
            .advice
            .iter()
            .any(|a| a.key.starts_with("tw_reuse"))
    );
    assert!(!m.verdicts.iter().any(|v| v.verdict == "lacks_pooling"));
}

#[test]
fn close_wait_younger_than_the_minimum_age_is_not_yet_a_leak() {
    let m = run(&leaky_client(9), 9 * S);
    assert!(leak(&m).is_none(), "{:?}", m.verdicts);
    // The holder is named already.
    assert!(m.destinations.iter().any(|d| d.held_by.is_some()));
}

#[test]
fn a_pool_whose_idle_connections_the_server_closed_is_no_leak() {
    // Twelve stuck CLOSE_WAIT in a wide range, all from one moment: not
    // growing, not high.
    let mut v = vec![host(32768, 60999)];
    for s in 2..=100 {
        v.push(table(s * S, close_wait(100, 12)));
    }
    v.push(owners(2 * S + MS, 7, 100..112));
    let m = run(&v, 100 * S);
    assert!(leak(&m).is_none(), "{:?}", m.verdicts);
}

#[test]
fn close_wait_that_keeps_growing_is_a_leak_in_a_wide_range() {
    let mut v = vec![host(32768, 60999)];
    for s in 1..=30u64 {
        let n = 2 * s as u32;
        v.push(table(s * S, close_wait(100, n)));
        v.push(owners(s * S + MS, 7, 100..100 + n));
    }
    let m = run(&v, 30 * S);
    let l = leak(&m).expect("growing CLOSE_WAIT");
    assert_eq!(l.close_wait, Some(60));
    assert!(l.budget_share < 0.01);
    assert!(l.evidence.contains("more appeared since"), "{}", l.evidence);
}

#[test]
fn close_wait_whose_owner_is_unknown_is_counted_not_attributed() {
    let m = run(
        &[
            host(40000, 40009),
            table(2 * S, close_wait(100, 5)),
            Input::SocketOwners(SocketOwners {
                ts_ns: 3 * S,
                owners: vec![],
                not_found: 5,
                failed: 2,
            }),
        ],
        20 * S,
    );
    assert_eq!(m.system.close_wait, 5);
    assert_eq!(m.system.close_wait_unattributed, 5);
    assert_eq!(m.system.owner_lookup_failures, 7);
    assert!(m.verdicts.is_empty());
    assert!(m.destinations.iter().all(|d| d.held_by.is_none()));
}
