//! TIME_WAIT truth (issue 11, road 5): counts that the socket table and
//! the kernel's counters correct, beyond the RST case.

mod engine_support;
use engine_support::*;

use portwatch::engine::{Config, Engine};
use portwatch::event::Event;
use portwatch::input::{Input, SockState, SocketEntry, SocketTable};

const OTHER_NS: u32 = 4026532999;

fn in_ns(i: Input, ns: u32) -> Input {
    match i {
        Input::Event(Event::Close(c)) => {
            Input::Event(Event::Close(portwatch::event::ConnClose { netns: ns, ..c }))
        }
        other => other,
    }
}

fn tw(sport: u16, expires_ms: u32) -> SocketEntry {
    SocketEntry {
        state: SockState::TimeWait,
        saddr: "127.0.0.1".parse().unwrap(),
        sport,
        daddr: "127.0.0.1".parse().unwrap(),
        dport: 7000,
        expires_ms,
        uid: 0,
        inode: 0,
    }
}

#[test]
fn a_namespace_table_that_arrives_after_newer_closes_still_counts_them() {
    let mut e = Engine::new(Config::default());
    e.apply(&host(40000, 40999));
    let t = task(9, "client", 0);
    // Ten local closes, one every 100 ms from 1.0 s.
    for i in 0..10 {
        e.apply(&in_ns(
            conn(t, "127.0.0.1:7000", S + i * 100 * MS, MS, true),
            OTHER_NS,
        ));
    }
    // The namespace's table was read at 1.45 s (five TIME_WAIT then) but
    // arrives now, after all ten closes.
    e.apply(&Input::Sockets(SocketTable {
        ts_ns: S + 450 * MS,
        netns: OTHER_NS,
        entries: (0..5).map(|i| tw(40000 + i, 59_000)).collect(),
    }));
    let m = e.model(3 * S);
    let d = m
        .destinations
        .iter()
        .find(|d| d.netns == Some(OTHER_NS))
        .expect("the namespace's destination");
    assert!(d.from_socket_table);
    assert_eq!(d.stats.time_wait, 10, "{d:?}");
    assert_eq!(d.held_ports, 10);
}
