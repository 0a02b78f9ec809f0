//! TIME_WAIT truth (issue 11, road 5): counts that the socket table and
//! the kernel's counters correct, beyond the RST case.

mod engine_support;
use engine_support::*;

use portwatch::engine::{Config, DestinationRow, Engine, Model};
use portwatch::event::Event;
use portwatch::input::{Input, SocketTable};

const OTHER_NS: u32 = 4026532999;

fn in_ns(i: Input, ns: u32) -> Input {
    match i {
        Input::Event(Event::Close(c)) => {
            Input::Event(Event::Close(portwatch::event::ConnClose { netns: ns, ..c }))
        }
        other => other,
    }
}

/// `i` in another namespace from local port `sport` (each connection has
/// a port of its own, as on a real host).
fn from_port(i: Input, sport: u16) -> Input {
    match in_ns(i, OTHER_NS) {
        Input::Event(Event::Close(c)) => {
            Input::Event(Event::Close(portwatch::event::ConnClose { sport, ..c }))
        }
        other => other,
    }
}

/// An engine that saw ten local closes in [`OTHER_NS`], one every 100 ms
/// from 1.0 s (local ports 40000..40009), then that namespace's socket table
/// read at 1.45 s with the first `in_table` of those ports in TIME_WAIT.
fn ten_closes_then_table_read_at_1_45_s(in_table: u16) -> Engine {
    let mut e = Engine::new(Config::default());
    e.apply(&host(40000, 40999));
    let t = task(9, "client", 0);
    for i in 0..10 {
        e.apply(&from_port(
            conn(t, "127.0.0.1:7000", S + i * 100 * MS, MS, true),
            40000 + i as u16,
        ));
    }
    e.apply(&Input::Sockets(SocketTable {
        ts_ns: S + 450 * MS,
        netns: OTHER_NS,
        entries: (0..in_table)
            .map(|i| time_wait_to_7000(40000 + i, 59_000))
            .collect(),
        without_time_wait: false,
    }));
    e
}

/// The one destination of [`OTHER_NS`] in `m`.
fn other_ns_destination(m: &Model) -> &DestinationRow {
    m.destinations
        .iter()
        .find(|d| d.netns == Some(OTHER_NS))
        .expect("the namespace's destination")
}

#[test]
fn a_namespace_table_that_arrives_after_newer_closes_still_counts_them() {
    // The namespace's table was read at 1.45 s (five TIME_WAIT then) but
    // arrives now, after all ten closes.
    let e = ten_closes_then_table_read_at_1_45_s(5);
    let m = e.model(3 * S);
    let d = other_ns_destination(&m);
    assert!(d.from_socket_table);
    assert_eq!(d.stats.time_wait, 10, "{d:?}");
    assert_eq!(d.held_ports, 10);
}

#[test]
fn a_close_the_table_already_shows_in_time_wait_is_counted_once() {
    // A dump takes time: a socket that closed after the table began to be
    // read (its `ts_ns`) may be in it already, in TIME_WAIT.
    // Read from 1.45 s: the first five closed before, and the dump also
    // reached the sixth and seventh after they closed.
    let e = ten_closes_then_table_read_at_1_45_s(7);
    let m = e.model(3 * S);
    let d = other_ns_destination(&m);
    assert_eq!(d.stats.time_wait, 10, "{d:?}");
    assert_eq!(d.held_ports, 10);
}

fn host_tw_reuse(lo: u16, hi: u16, reuse: i64) -> Input {
    let Input::Host(mut h) = host(lo, hi) else {
        unreachable!()
    };
    h.sysctls.tcp_tw_reuse = Some(reuse);
    Input::Host(h)
}

/// 20 connections/s closed first by this host, for `secs` seconds.
fn churn_to(dst: &str, secs: u64) -> Vec<Input> {
    churn(task(7, "client", 0), dst, 0, secs, 20, MS, true)
}

#[test]
fn with_tw_reuse_no_pair_shows_more_time_wait_than_the_range_holds() {
    // 100 ports, tcp_tw_reuse=1, 20 connections/s for 30 s: 600 local
    // closes within TIME_WAIT's 60 s, but connect() recycles the ports.
    let mut e = Engine::new(Config::default());
    e.apply(&host_tw_reuse(40000, 40099, 1));
    for i in churn_to("127.0.0.1:7000", 30) {
        e.apply(&i);
    }
    let m = e.model(30 * S);
    let d = &m.destinations[0];
    assert_eq!(d.stats.time_wait, 100, "capped by the range: {d:?}");
    assert!(d.stats.tw_expiring_60s <= 100);
    assert!(
        m.pairs.iter().all(|p| p.stats.time_wait <= 100),
        "{:?}",
        m.pairs
    );
    assert!(m.services.iter().all(|s| s.stats.time_wait <= 100));
    assert!(m.processes.iter().all(|p| p.stats.time_wait <= 100));
    // Older than the reuse delay: a connect can take them over.
    assert!(d.time_wait_reusable >= 60, "{}", d.time_wait_reusable);
    assert!(d.pressure < 0.5, "{}", d.pressure);
    assert!(!d.forecast.exceeds_budget, "{:?}", d.forecast);
    assert_eq!(d.forecast.exhaustion_in_s, None);
    assert!(
        !m.system
            .advice
            .iter()
            .any(|a| a.key == "ports_nearly_exhausted")
    );
    for v in &m.verdicts {
        assert!(!v.evidence.contains("exhausted"), "{}", v.evidence);
        assert!(v.time_wait <= 100 && v.budget_share <= 1.0, "{v:?}");
    }
}

#[test]
fn without_tw_reuse_the_range_is_exhausted_and_time_wait_is_still_capped() {
    let mut e = Engine::new(Config::default());
    e.apply(&host_tw_reuse(40000, 40099, 0));
    for i in churn_to("127.0.0.1:7000", 30) {
        e.apply(&i);
    }
    let m = e.model(30 * S);
    let d = &m.destinations[0];
    assert_eq!(d.stats.time_wait, 100);
    assert_eq!(d.time_wait_reusable, 0);
    assert!((d.pressure - 1.0).abs() < 1e-9);
    assert_eq!(d.forecast.exhaustion_in_s, Some(0.0));
    assert!(m.pairs.iter().all(|p| p.stats.time_wait <= 100));
}

#[test]
fn tw_reuse_to_another_host_counts_only_while_recycling_shows_it_working() {
    let run = |recycled: u64| {
        let mut e = Engine::new(Config::default());
        e.apply(&host_tw_reuse(40000, 40099, 1));
        for i in churn_to("10.0.0.1:80", 20) {
            e.apply(&i);
        }
        for (ts, rec) in [(19 * S, 0), (20 * S, recycled)] {
            e.apply(&Input::Counters(portwatch::input::KernelCounters {
                ts_ns: ts,
                tw_recycled: rec,
                ..Default::default()
            }));
        }
        e.model(20 * S).destinations[0].time_wait_reusable
    };
    // The peer's TCP timestamps are unknown: without TWRecycled rising,
    // every TIME_WAIT port counts as held.
    assert_eq!(run(0), 0);
    assert!(run(20) > 0);
}

#[test]
fn no_destination_holds_more_time_wait_than_tcp_max_tw_buckets() {
    let Input::Host(mut h) = host(32768, 60999) else {
        unreachable!()
    };
    h.sysctls.tcp_max_tw_buckets = Some(50);
    h.sysctls.tcp_tw_reuse = Some(0);
    let mut e = Engine::new(Config::default());
    e.apply(&Input::Host(h));
    for i in churn_to("10.0.0.1:80", 10) {
        e.apply(&i);
    }
    let m = e.model(10 * S);
    assert_eq!(m.destinations[0].stats.time_wait, 50);
    assert!(m.pairs.iter().all(|p| p.stats.time_wait <= 50));
}
