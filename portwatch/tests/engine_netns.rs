//! The engine keys everything that depends on a network namespace by it:
//! budgets by (netns, local address, remote address, remote port), each
//! namespace's own sysctls, socket table and advice. Synthetic streams, no
//! kernel.

mod engine_support;

use engine_support::*;
use portwatch::engine::{Config, DestinationRow, Engine, Model};
use portwatch::event::{ConnClose, ConnectError, Event};
use portwatch::input::{Input, KernelCounters, NetnsInfo, SockState, SocketEntry, SocketTable};

const HOST: u32 = 4026531840;
const A: u32 = 4026532001;
const B: u32 = 4026532002;

/// `ev` moved to namespace `ns` (and local address `laddr` for closes).
fn in_ns(ev: Input, ns: u32, laddr: Option<&str>) -> Input {
    match ev {
        Input::Event(Event::Close(c)) => Input::Event(Event::Close(ConnClose {
            netns: ns,
            saddr: laddr.map_or(c.saddr, |a| a.parse().expect("addr")),
            ..c
        })),
        Input::Event(Event::ConnectError(e)) => {
            Input::Event(Event::ConnectError(ConnectError { netns: ns, ..e }))
        }
        other => other,
    }
}

/// A reading of namespace `ns` with range lo-hi and tcp_tw_reuse.
fn reading(ns: u32, ts_ns: u64, lo: u16, hi: u16, tw_reuse: i64) -> Input {
    let mut s = sysctls(lo, hi);
    s.tcp_tw_reuse = Some(tw_reuse);
    Input::Netns(NetnsInfo {
        ts_ns,
        netns: ns,
        sysctls: Some(s),
        counters: Some(KernelCounters {
            ts_ns,
            tcp_tw: 900,
            tcp_inuse: 3,
            ..KernelCounters::default()
        }),
        error: None,
        stale: false,
    })
}

fn run(inputs: impl IntoIterator<Item = Input>, at_s: u64) -> Model {
    let mut e = Engine::new(Config::default());
    let mut v: Vec<Input> = inputs.into_iter().collect();
    v.push(tick(at_s * S));
    for i in &v {
        e.apply(i);
    }
    e.model(at_s * S)
}

fn dest<'a>(m: &'a Model, ns: u32, laddr: Option<&str>) -> &'a DestinationRow {
    m.destinations
        .iter()
        .find(|d| d.netns == Some(ns) && laddr.is_none_or(|a| d.laddr == Some(a.parse().unwrap())))
        .unwrap_or_else(|| {
            panic!(
                "no destination in {ns} from {laddr:?}: {:#?}",
                m.destinations
            )
        })
}

/// 10/s for 30 s from a client in `ns` to 10.0.0.1:5432, closing first.
fn client(ns: u32, pid: u32, laddr: Option<&str>) -> Vec<Input> {
    churn(task(pid, "client", 0), "10.0.0.1:5432", 1, 31, 10, MS, true)
        .into_iter()
        .map(|i| in_ns(i, ns, laddr))
        .collect()
}

fn stream(parts: Vec<Vec<Input>>) -> Vec<Input> {
    let mut v: Vec<Input> = parts.into_iter().flatten().collect();
    v.sort_by_key(|i| i.ts_ns());
    v
}

#[test]
fn the_same_destination_from_two_namespaces_has_two_budgets_each_with_its_own_pressure() {
    let m = run(
        [host(32768, 60999), reading(A, 0, 40000, 40999, 0)]
            .into_iter()
            .chain(stream(vec![client(A, 10, None), client(B, 20, None)])),
        31,
    );
    let (a, b) = (dest(&m, A, None), dest(&m, B, None));
    assert_eq!(a.budget, 1000);
    assert_eq!(a.held_ports, 300);
    assert!((a.pressure - 0.3).abs() < 1e-9, "{}", a.pressure);
    // B was never read: its budget is unknown, never the host's.
    assert_eq!(b.budget, 0);
    assert_eq!(b.pressure, 0.0);
    assert_eq!(b.held_ports, 300);
    assert_eq!(a.netns_name.as_deref(), Some(format!("netns:{A}").as_str()));
}

#[test]
fn two_local_addresses_are_two_budgets_to_one_destination() {
    let m = run(
        [host(40000, 40999)].into_iter().chain(stream(vec![
            client(HOST, 10, Some("127.0.0.2")),
            client(HOST, 10, Some("127.0.0.3")),
        ])),
        31,
    );
    let x = dest(&m, HOST, Some("127.0.0.2"));
    let y = dest(&m, HOST, Some("127.0.0.3"));
    assert_eq!((x.held_ports, y.held_ports), (300, 300));
    assert_eq!((x.budget, y.budget), (1000, 1000));
    assert_eq!(x.netns_name.as_deref(), Some("host"));
    assert_eq!(m.destinations.len(), 2);
}

#[test]
fn a_failed_connect_counts_against_the_budget_its_namespace_was_using() {
    let t = task(10, "client", 0);
    let err = |ns| in_ns(connect_error(t, "10.0.0.1:5432", 31 * S, 99), ns, None);
    let m = run(
        [host(32768, 60999)]
            .into_iter()
            .chain(stream(vec![client(A, 10, Some("127.0.0.5"))]))
            .chain([err(A), err(B)]),
        32,
    );
    let a = dest(&m, A, Some("127.0.0.5"));
    assert_eq!(a.stats.connect_errors_total, 1);
    assert_eq!(a.stats.connect_errors[0].name, "EADDRNOTAVAIL");
    // B never connected there: its failure has a budget of its own, with
    // no local address.
    let b = dest(&m, B, None);
    assert_eq!((b.laddr, b.stats.connect_errors_total), (None, 1));
}

#[test]
fn a_failed_connect_counts_against_the_local_address_used_last() {
    // The engine skips its (destination -> local address) map when a close
    // repeats the last one noted: switching addresses back and forth must
    // still leave the one used last.
    let t = task(10, "client", 0);
    let err = in_ns(connect_error(t, "10.0.0.1:5432", 31 * S, 99), A, None);
    for (last, other) in [("127.0.0.5", "127.0.0.6"), ("127.0.0.6", "127.0.0.5")] {
        let closes = client(A, 10, None);
        let n = closes.len();
        let seq = closes.into_iter().enumerate().map(|(i, c)| {
            let a = if i + 5 >= n || i % 3 == 0 {
                last
            } else {
                other
            };
            in_ns(c, A, Some(a))
        });
        let m = run(
            [host(32768, 60999)]
                .into_iter()
                .chain(seq)
                .chain([err.clone()]),
            32,
        );
        assert_eq!(dest(&m, A, Some(last)).stats.connect_errors_total, 1);
        assert_eq!(dest(&m, A, Some(other)).stats.connect_errors_total, 0);
    }
}

#[test]
fn a_namespace_socket_table_corrects_only_its_own_destinations() {
    let tw = |sport| SocketEntry {
        state: SockState::TimeWait,
        saddr: "127.0.0.1".parse().unwrap(),
        sport,
        daddr: "10.0.0.1".parse().unwrap(),
        dport: 5432,
        expires_ms: 50_000,
        uid: 0,
        inode: 0,
    };
    // A's table at 31 s holds 7 TIME_WAIT: A's held ports become 7; B's
    // stay what its events say.
    let table = Input::Sockets(SocketTable {
        ts_ns: 31 * S,
        netns: A,
        entries: (0..7).map(|i| tw(40_000 + i)).collect(),
        without_time_wait: false,
    });
    let m = run(
        [host(32768, 60999), reading(A, 0, 40000, 40999, 0)]
            .into_iter()
            .chain(stream(vec![client(A, 10, None), client(B, 20, None)]))
            .chain([table]),
        31,
    );
    let (a, b) = (dest(&m, A, None), dest(&m, B, None));
    assert!(a.from_socket_table && !b.from_socket_table);
    assert_eq!(a.held_ports, 7);
    assert_eq!(b.held_ports, 300);
}

#[test]
fn a_range_changed_during_the_incident_shows_at_the_next_reading() {
    let before = [host(32768, 60999), reading(A, 0, 40000, 40999, 0)];
    let m = run(
        before
            .clone()
            .into_iter()
            .chain(stream(vec![client(A, 10, None)])),
        31,
    );
    assert_eq!(dest(&m, A, None).budget, 1000);
    let m = run(
        before
            .into_iter()
            .chain(stream(vec![client(A, 10, None)]))
            .chain([reading(A, 31 * S, 20000, 60999, 1)]),
        31,
    );
    assert_eq!(dest(&m, A, None).budget, 41000);
    let ns = m.namespaces.iter().find(|n| n.netns == A).expect("A");
    assert_eq!(ns.tcp_tw_reuse, Some(1));
}

#[test]
fn advice_names_each_namespace_and_quotes_only_its_own_values() {
    let m = run(
        [host(32768, 60999), reading(A, 0, 40000, 40999, 0)]
            .into_iter()
            .chain(stream(vec![client(A, 10, None), client(B, 20, None)])),
        31,
    );
    let a: Vec<_> = m
        .system
        .advice
        .iter()
        .filter(|x| x.netns == Some(A))
        .collect();
    assert!(a.iter().any(|x| x.key == "tw_reuse_off"), "{a:#?}");
    assert!(a.iter().any(|x| x.key == "port_range_small"), "{a:#?}");
    for x in &a {
        assert!(x.text.starts_with(&format!("netns:{A}: ")), "{}", x.text);
        assert!(!x.text.contains("32768"), "{}", x.text);
        assert!(!x.text.contains("tcp_tw_reuse=2"), "{}", x.text);
    }
    // B could not be read: said so, and nothing of the host's is quoted
    // for it.
    let b: Vec<_> = m
        .system
        .advice
        .iter()
        .filter(|x| x.netns == Some(B))
        .collect();
    assert_eq!(b.len(), 1, "{b:#?}");
    assert_eq!(b[0].key, "netns_unread");
    // The host has no traffic of its own: none of its sysctl advice.
    assert!(
        m.system
            .advice
            .iter()
            .all(|x| x.key != "tw_reuse_loopback_only"),
        "{:#?}",
        m.system.advice
    );
    // The verdicts carry their namespace and use its budget.
    let v = m
        .verdicts
        .iter()
        .find(|v| v.netns == Some(A))
        .expect("A's verdict");
    assert!(v.evidence.contains("1000-port budget"), "{}", v.evidence);
    assert!(v.fix.contains("now 40000-40999"), "{}", v.fix);
}

#[test]
fn a_namespace_is_named_after_the_pod_whose_tasks_live_in_it() {
    let pod = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234_5678.slice/cri-containerd-abc.scope";
    let t = task(10, "client", 77);
    let conns: Vec<Input> = churn(t, "10.0.0.1:5432", 1, 3, 5, MS, true)
        .into_iter()
        .map(|i| in_ns(i, A, None))
        .collect();
    let m = run(
        [host(32768, 60999), cgroup(77, pod)]
            .into_iter()
            .chain(conns),
        3,
    );
    let name = dest(&m, A, None).netns_name.clone().expect("named");
    assert_eq!(name, "pod:1234-5678");
    let svc = m.services.iter().find(|s| s.netns == Some(A)).expect("svc");
    assert_eq!(svc.netns_name.as_deref(), Some(name.as_str()));
    assert_eq!(m.namespaces[0].netns_name, "host");
}

#[test]
fn a_stale_namespace_keeps_its_last_values_and_says_so() {
    let gone = Input::Netns(NetnsInfo {
        ts_ns: 20 * S,
        netns: A,
        error: Some("no task left in it (last known values)".into()),
        stale: true,
        ..NetnsInfo::default()
    });
    let m = run(
        [host(32768, 60999), reading(A, 0, 40000, 40999, 0)]
            .into_iter()
            .chain(stream(vec![client(A, 10, None), vec![gone]])),
        31,
    );
    assert_eq!(dest(&m, A, None).budget, 1000);
    let ns = m.namespaces.iter().find(|n| n.netns == A).expect("A");
    assert!(ns.stale);
    assert_eq!(ns.port_range, Some((40000, 40999)));
    assert!(m.system.advice.iter().any(|x| x.key == "netns_stale"));
}

#[test]
fn namespaces_past_the_table_cap_are_folded_and_counted() {
    let cfg = Config {
        max_keys: 50,
        ..Config::default()
    };
    let mut e = Engine::new(cfg);
    e.apply(&host(32768, 60999));
    for i in 0..500u32 {
        let ev = conn(task(i, "c", 0), "10.0.0.1:80", S + u64::from(i), MS, true);
        e.apply(&in_ns(ev, 5_000_000 + i, None));
        e.apply(&reading(5_000_000 + i, S + u64::from(i), 40000, 40999, 0));
    }
    let m = e.model(2 * S);
    // The host and 50 others.
    assert_eq!(m.namespaces.len(), 51);
    assert!(
        (400..=500).contains(&m.others.namespaces),
        "{}",
        m.others.namespaces
    );
    // The header sums the namespaces' sockstat (900 TIME_WAIT each).
    assert_eq!(m.system.sockstat_tw, Some(50 * 900));
}

/// The budget is computed for every destination of every model, so without
/// a bitmap; it must agree with one, overlapping and outside ranges too.
#[test]
fn the_port_budget_counts_reserved_ports_once_each() {
    let brute = |lo: u16, hi: u16, r: &[(u16, u16)]| {
        (lo..=hi)
            .filter(|p| !r.iter().any(|&(a, b)| (a..=b).contains(p)))
            .count() as u64
    };
    type Case<'a> = (u16, u16, &'a [(u16, u16)]);
    let cases: &[Case] = &[
        (40000, 40999, &[]),
        (
            40000,
            40999,
            &[(40100, 40109), (40105, 40200), (39000, 40001)],
        ),
        (
            40000,
            40999,
            &[(40500, 40500), (40500, 40500), (40999, 41500)],
        ),
        (40000, 40999, &[(30000, 50000)]),
        (
            1024,
            65535,
            &[(1, 1023), (8080, 8090), (8085, 8086), (65535, 65535)],
        ),
    ];
    for &(lo, hi, r) in cases {
        let mut s = sysctls(lo, hi);
        s.reserved_ports = r.to_vec();
        assert_eq!(
            portwatch::engine::port_budget(&s),
            brute(lo, hi, r),
            "{lo}-{hi} {r:?}"
        );
    }
}
