//! Engine rules on synthetic input streams: windows, percentiles,
//! TIME_WAIT ageing, budget and forecast.

mod engine_support;

use engine_support::*;
use portwatch::engine::{Config, Engine, Model};
use portwatch::input::{Input, SockState, SocketEntry, SocketTable};

fn run(inputs: &[Input], now_ns: u64) -> Model {
    let mut e = Engine::new(Config::default());
    for i in inputs {
        e.apply(i);
    }
    e.model(now_ns)
}

#[test]
fn rates_use_complete_seconds_over_1_10_and_60_s() {
    let t = task(10, "curl", 1);
    let mut inputs = vec![host(32768, 60999)];
    // 20/s for 30 s, then 5/s for 10 s.
    inputs.extend(churn(t, "10.0.0.1:80", 0, 30, 20, MS, true));
    inputs.extend(churn(t, "10.0.0.1:80", 30, 40, 5, MS, true));
    let m = run(&inputs, 40 * S + 500 * MS);
    let s = &m.destinations[0].stats;
    assert_eq!(s.new_total, 650);
    assert_eq!(s.new_per_s_1s, 5.0);
    assert_eq!(s.new_per_s_10s, 5.0);
    // Observed for 40 s only: the 60 s window divides by 40.
    assert_eq!(s.new_per_s_60s, 650.0 / 40.0);
    assert_eq!(s.active_s_10s, 10);
}

#[test]
fn lifetime_percentiles_come_from_the_histogram() {
    let t = task(10, "curl", 1);
    let mut inputs = vec![host(32768, 60999)];
    // 90 connections of 2 ms, 9 of 100 ms, 1 of 5 s.
    for i in 0..100u64 {
        let life = match i {
            0..90 => 2 * MS,
            90..99 => 100 * MS,
            _ => 5 * S,
        };
        inputs.push(conn(t, "10.0.0.1:80", i * 10 * MS, life, true));
    }
    let m = run(&inputs, 10 * S);
    let s = &m.services[0].stats;
    let near = |got: Option<f64>, want: f64| {
        let g = got.expect("a percentile");
        assert!((g - want).abs() / want <= 0.125, "{g} vs {want}");
    };
    near(s.lifetime_p50_ms, 2.0);
    near(s.lifetime_p90_ms, 2.0);
    near(s.lifetime_p99_ms, 100.0);
    near(s.handshake_p50_ms, 0.05);
    assert_eq!(s.closed_locally_share, Some(1.0));
}

#[test]
fn time_wait_ages_out_after_60_s() {
    let t = task(10, "curl", 1);
    let inputs = vec![
        host(32768, 60999),
        conn(t, "10.0.0.1:80", 10 * S, MS, true),
        conn(t, "10.0.0.1:80", 30 * S, MS, true),
        conn(t, "10.0.0.1:80", 31 * S, MS, false), // peer closed: no TIME_WAIT here
    ];
    let at = |s: u64| run(&inputs, s * S);
    assert_eq!(at(40).destinations[0].stats.time_wait, 2);
    let m = at(69);
    assert_eq!(m.destinations[0].stats.time_wait, 2);
    // The close at 10 s expires at 70 s, within the next 10 s; the one at
    // 30 s within 30 s.
    assert_eq!(m.destinations[0].stats.tw_expiring_10s, 1);
    assert_eq!(m.destinations[0].stats.tw_expiring_30s, 2);
    assert_eq!(at(70).destinations[0].stats.time_wait, 1);
    assert_eq!(at(70).processes[0].stats.time_wait, 1);
    assert_eq!(at(91).destinations[0].stats.time_wait, 0);
}

#[test]
fn nothing_expires_soon_early_in_the_observation() {
    let t = task(10, "curl", 1);
    let inputs = vec![host(32768, 60999), conn(t, "10.0.0.1:80", 0, MS, true)];
    let s = &run(&inputs, 20 * S).destinations[0].stats;
    assert_eq!(s.time_wait, 1);
    assert_eq!(
        (s.tw_expiring_10s, s.tw_expiring_30s, s.tw_expiring_60s),
        (0, 0, 1)
    );
    let s = &run(&inputs, 50 * S).destinations[0].stats;
    assert_eq!((s.tw_expiring_10s, s.tw_expiring_30s), (1, 1));
}

#[test]
fn destinations_first_seen_after_a_socket_table_start_from_it() {
    let t = task(10, "curl", 1);
    let inputs = vec![
        host(32768, 60999),
        Input::Sockets(SocketTable {
            ts_ns: S,
            netns: 0,
            entries: vec![],
            without_time_wait: false,
        }),
        conn(t, "10.0.0.1:80", 2 * S, MS, true),
    ];
    let d = &run(&inputs, 3 * S).destinations[0];
    assert!(d.from_socket_table);
    assert_eq!(d.held_ports, 1);
}

#[test]
fn budget_is_the_range_minus_reserved_ports() {
    let mut s = sysctls(40000, 40009);
    assert_eq!(portwatch::engine::port_budget(&s), 10);
    s.reserved_ports = vec![(40000, 40001), (50000, 50010)];
    assert_eq!(portwatch::engine::port_budget(&s), 8);
}

#[test]
fn forecast_says_when_time_wait_outgrows_the_budget() {
    let t = task(10, "curl", 1);
    // Budget 1000 ports; 50 local closes/s → 3000 TIME_WAIT in steady state.
    let mut inputs = vec![host(40000, 40999)];
    inputs.extend(churn(t, "10.0.0.1:80", 0, 10, 50, MS, true));
    let m = run(&inputs, 10 * S);
    let d = &m.destinations[0];
    assert_eq!(d.budget, 1000);
    assert_eq!(d.held_ports, 500);
    assert_eq!(d.pressure, 0.5);
    assert_eq!(d.forecast.steady_time_wait, 3000.0);
    assert!(d.forecast.exceeds_budget);
    // 500 free ports, growing at 50/s, nothing expiring within a minute yet
    // at the second granularity... (all 500 expire within 60 s: net 50 - 500/60).
    let growth = 50.0 - 500.0 / 60.0;
    let want = 500.0 / growth;
    let got = d.forecast.exhaustion_in_s.expect("a forecast");
    assert!((got - want).abs() < 0.01, "{got} vs {want}");
}

#[test]
fn forecast_within_budget_has_no_exhaustion_time() {
    let t = task(10, "curl", 1);
    let mut inputs = vec![host(32768, 60999)];
    inputs.extend(churn(t, "10.0.0.1:80", 0, 10, 10, MS, true));
    let d = &run(&inputs, 10 * S).destinations[0];
    assert_eq!(d.forecast.steady_time_wait, 600.0);
    assert!(!d.forecast.exceeds_budget);
    assert_eq!(d.forecast.exhaustion_in_s, None);
}

fn entry(state: SockState, daddr: &str, expires_ms: u32) -> SocketEntry {
    let (d, p) = split(daddr);
    SocketEntry {
        state,
        saddr: "127.0.0.1".parse().unwrap(),
        sport: 41000,
        daddr: d,
        dport: p,
        expires_ms,
        uid: 0,
        inode: 0,
    }
}

#[test]
fn socket_table_seeds_held_ports_and_events_adjust_them() {
    let t = task(10, "curl", 1);
    let mut entries = vec![
        entry(SockState::Established, "10.0.0.1:80", 0),
        entry(SockState::SynSent, "10.0.0.1:80", 0),
        entry(SockState::TimeWait, "10.0.0.1:80", 5_000),
        entry(SockState::TimeWait, "10.0.0.1:80", 40_000),
    ];
    // An accepted connection on a listening port is not an outbound one.
    let mut listener = entry(SockState::Other(10), "0.0.0.0:0", 0);
    listener.sport = 8080;
    listener.saddr = "0.0.0.0".parse().unwrap();
    let mut accepted = entry(SockState::Established, "10.0.0.7:50000", 0);
    accepted.sport = 8080;
    entries.extend([listener, accepted]);
    let inputs = vec![
        host(32768, 60999),
        Input::Sockets(SocketTable {
            ts_ns: 100 * S,
            netns: 0,
            entries,
            without_time_wait: false,
        }),
        // The established one (started before the table) closes locally.
        conn(t, "10.0.0.1:80", 90 * S, 12 * S, true),
    ];
    let m = run(&inputs, 103 * S);
    assert_eq!(m.destinations.len(), 1, "{:?}", m.destinations);
    let d = &m.destinations[0];
    assert!(d.from_socket_table);
    assert_eq!(d.open_ports, 1, "SYN_SENT still open");
    assert_eq!(d.stats.time_wait, 3, "2 from the table, 1 since");
    assert_eq!(d.held_ports, 4);
    assert_eq!(d.stats.tw_expiring_10s, 1);
    let d = &run(&inputs, 106 * S).destinations[0];
    assert_eq!(d.stats.time_wait, 2, "the table's 5 s one expired");
}

#[test]
fn connect_errors_list_eaddrnotavail_first() {
    let t = task(10, "curl", 1);
    let inputs = vec![
        host(32768, 60999),
        connect_error(t, "10.0.0.1:80", S, 111),
        connect_error(t, "10.0.0.1:80", S, 111),
        connect_error(t, "10.0.0.1:80", S, 111),
        connect_error(t, "10.0.0.1:80", 2 * S, 99),
    ];
    let m = run(&inputs, 3 * S);
    let names: Vec<_> = m.services[0]
        .stats
        .connect_errors
        .iter()
        .map(|e| (e.name.as_str(), e.count))
        .collect();
    assert_eq!(names, [("EADDRNOTAVAIL", 1), ("ECONNREFUSED", 3)]);
    assert_eq!(m.system.connect_errors_total, 4);
}

/// The header's figures are the engine's: EADDRNOTAVAIL per second over
/// 10 s, TIME_WAIT (destinations' sum without sockstat) and open ports.
#[test]
fn the_model_gives_eaddrnotavail_rate_time_wait_and_open_ports() {
    let t = task(10, "curl", 1);
    let mut inputs = vec![host(32768, 60999)];
    for s in 1..=5 {
        inputs.push(connect_error(t, "10.0.0.1:80", s * S, 99));
        inputs.push(connect_error(t, "10.0.0.1:80", s * S, 111));
    }
    inputs.push(conn(t, "10.0.0.2:80", 2 * S, MS, true));
    inputs.push(conn(t, "10.0.0.3:80", 3 * S, MS, true));
    let m = run(&inputs, 11 * S);
    assert_eq!(m.system.eaddrnotavail_per_s_10s, 0.5);
    assert_eq!(m.system.connect_errors_per_s_10s, 1.0);
    assert_eq!(m.system.time_wait, 2);
    assert_eq!(m.system.open_ports, 0);
}

#[test]
fn inbound_connections_are_kept_apart_from_outbound() {
    let mut inputs = vec![host(32768, 60999)];
    for i in 0..100 {
        inputs.push(inbound("10.0.0.2:8080", i * 100 * MS, MS));
    }
    let m = run(&inputs, 10 * S);
    assert!(m.destinations.is_empty() && m.services.is_empty() && m.verdicts.is_empty());
    assert_eq!(m.inbound.len(), 1);
    assert_eq!(m.inbound[0].lport, 8080);
    assert_eq!(m.inbound[0].stats.new_per_s_10s, 10.0);
    assert!(m.system.advice.iter().any(|a| a.key == "inbound_churn"));
}

#[test]
fn idle_keys_age_out_and_full_tables_fold_into_others() {
    let cfg = Config {
        max_keys: 4,
        idle_timeout_s: 60,
        ..Config::default()
    };
    let mut e = Engine::new(cfg);
    e.apply(&host(32768, 60999));
    for port in 0..10u16 {
        let t = task(100 + u32::from(port), "w", 1);
        e.apply(&conn(t, &format!("10.0.0.1:{}", 1000 + port), S, MS, true));
    }
    let m = e.model(2 * S);
    assert_eq!(m.destinations.len(), 4);
    assert!(
        (5..=7).contains(&m.others.destinations),
        "{}",
        m.others.destinations
    );
    e.apply(&tick(200 * S));
    let m = e.model(200 * S);
    assert!(m.destinations.is_empty());
    // 4 processes + 1 service (all "w") + 4 destinations + 4 pairs.
    assert_eq!(m.system.aged_out_keys, 13);
}

#[test]
fn kernel_counters_become_rates_and_overflow_is_a_warning() {
    use portwatch::input::KernelCounters;
    let c = |ts_s: u64, tw: u64, rec: u64, ovf: u64| {
        Input::Counters(KernelCounters {
            ts_ns: ts_s * S,
            tcp_inuse: 3,
            tcp_tw: 40,
            tw,
            tw_recycled: rec,
            tw_overflow: ovf,
            conntrack: None,
        })
    };
    let m = run(
        &[host(32768, 60999), c(10, 100, 0, 0), c(12, 160, 10, 4)],
        12 * S,
    );
    assert_eq!(m.system.tw_per_s, Some(30.0));
    assert_eq!(m.system.tw_recycled_per_s, Some(5.0));
    assert_eq!(m.system.tw_overflow_per_s, Some(2.0));
    assert_eq!(
        (m.system.sockstat_tw, m.system.sockstat_inuse),
        (Some(40), Some(3))
    );
    let keys: Vec<_> = m.system.advice.iter().map(|a| a.key).collect();
    assert!(keys.contains(&"tw_buckets_overflow"), "{keys:?}");
    assert!(keys.contains(&"tw_reuse_working"), "{keys:?}");
    // A single reading has no rate yet.
    let m = run(&[host(32768, 60999), c(10, 100, 0, 0)], 12 * S);
    assert_eq!(m.system.tw_per_s, None);
}

#[test]
fn losses_are_shown_and_warned_about() {
    use portwatch::event::Losses;
    let m = run(
        &[
            host(32768, 60999),
            Input::Losses {
                ts_ns: S,
                losses: Losses {
                    ringbuf_lost: 3,
                    sock_evicted: 1,
                    connect_untracked: 0,
                    decode_errors: 0,
                    probe_errors: 2,
                    kernel_missed: 2,
                },
            },
        ],
        2 * S,
    );
    // Probe errors are losses too: each one is a record that never came.
    // Runs the kernel skipped are an upper bound, shown apart, not counted.
    assert_eq!(m.system.lost_events, 6);
    assert!(m.system.advice.iter().any(|a| a.key == "lost_events"));
}

#[test]
fn ipv4_mapped_and_plain_ipv4_are_one_destination() {
    let t = task(10, "curl", 1);
    let mut inputs = vec![host(32768, 60999), conn(t, "10.0.0.1:80", 0, MS, true)];
    inputs.push(conn(t, "[::ffff:10.0.0.1]:80", S, MS, true));
    let m = run(&inputs, 2 * S);
    assert_eq!(m.destinations.len(), 1);
    assert_eq!(m.destinations[0].stats.new_total, 2);
}

/// A container's sockets live in its own network namespace, out of sight
/// of a socket table read in the host's: its destination's held ports come
/// from events and are not reset to zero by each table.
#[test]
fn socket_tables_do_not_reset_destinations_used_from_other_namespaces() {
    let t = task(10, "client", 1);
    let from_container = |start_ns: u64| -> Input {
        let Input::Event(portwatch::event::Event::Close(mut c)) =
            conn(t, "10.0.0.9:443", start_ns, MS, true)
        else {
            unreachable!("conn builds a close event")
        };
        c.netns = 4026532999; // not the host's 4026531840
        Input::Event(portwatch::event::Event::Close(c))
    };
    let table = |ts_ns: u64| {
        Input::Sockets(SocketTable {
            ts_ns,
            netns: 4026531840,
            entries: vec![],
            without_time_wait: false,
        })
    };
    let mut inputs = vec![host(32768, 60999), table(S)];
    for i in 0..20 {
        inputs.push(from_container(2 * S + i * 10 * MS));
    }
    inputs.push(table(5 * S));
    let m = run(&inputs, 6 * S);
    let d = &m.destinations[0];
    assert_eq!(
        d.stats.time_wait, 20,
        "TIME_WAIT from the container's closes"
    );
    assert_eq!(
        d.held_ports, 20,
        "not reset by a table that cannot see them"
    );
    assert!(!d.from_socket_table);
}
