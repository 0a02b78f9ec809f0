//! Engine: clients that bind() before connect() hold their ports against
//! the whole range (issue 11, road 2), on synthetic inputs.

use portwatch::engine::{Config, Engine, Model};
use portwatch::event::{BindError, Cause, ConnClose, ConnectError, Event, FailCause};
use portwatch::input::Input;

mod engine_support;
use engine_support::*;

fn model(inputs: &[Input], now_ns: u64) -> Model {
    let mut e = Engine::new(Config::default());
    for i in inputs {
        e.apply(i);
    }
    e.model(now_ns)
}

/// `conn` with its port chosen by bind() before connect().
fn bound_conn(t: portwatch::event::Task, dst: &str, start_ns: u64, sport: u16) -> Input {
    let Input::Event(Event::Close(c)) = conn(t, dst, start_ns, 5 * MS, true) else {
        unreachable!()
    };
    Input::Event(Event::Close(ConnClose {
        bound_port: true,
        sport,
        ..c
    }))
}

fn bind_error(t: portwatch::event::Task, ts_ns: u64) -> Input {
    Input::Event(Event::BindError(BindError {
        ts_ns,
        duration_ns: 1000,
        task: Some(t),
        netns: 4026531840,
        saddr: "127.0.0.1".parse().unwrap(),
        sport: 0,
        errno: 98,
    }))
}

/// A (binder) holds 20 ports of a 20-port range in TIME_WAIT through :81;
/// B's plain connects to :82 fail.
fn scenario() -> Vec<Input> {
    let a = task(100, "binder", 1);
    let b = task(200, "plain", 1);
    let mut v = vec![host(40000, 40019)];
    for i in 0..20 {
        v.push(bound_conn(
            a,
            "10.0.0.1:81",
            S + i * 10 * MS,
            40000 + i as u16,
        ));
    }
    v.push(bind_error(a, 2 * S));
    for i in 0..3 {
        v.push(connect_error(b, "10.0.0.2:82", 3 * S + i * MS, 99));
    }
    v.push(tick(4 * S));
    v
}

#[test]
fn bound_ports_count_against_every_destination_of_the_namespace() {
    let m = model(&scenario(), 4 * S);
    let d82 = m.destinations.iter().find(|d| d.dport == 82).unwrap();
    assert_eq!(d82.bound_elsewhere, 20);
    assert_eq!(d82.held_ports, 20);
    assert_eq!(d82.pressure, 1.0);
    // Its own TIME_WAIT is not counted twice.
    let d81 = m.destinations.iter().find(|d| d.dport == 81).unwrap();
    assert_eq!((d81.bound_elsewhere, d81.held_ports), (0, 20));
}

#[test]
fn the_binder_is_listed_with_its_ports_and_failed_binds() {
    let m = model(&scenario(), 4 * S);
    assert_eq!(m.bound.len(), 1, "{:#?}", m.bound);
    let b = &m.bound[0];
    assert_eq!((b.pid, b.comm.as_str()), (100, "binder"));
    assert_eq!(b.bound_connections_total, 20);
    assert_eq!(b.time_wait, 20);
    assert_eq!(b.bind_errors_total, 1);
    assert_eq!(b.bind_errors[0].name, "EADDRINUSE");
    assert_eq!(b.last_bind_addr.as_deref(), Some("127.0.0.1:0"));
}

#[test]
fn the_verdict_names_the_binder_and_points_the_victims_at_it() {
    let m = model(&scenario(), 4 * S);
    let v = m
        .verdicts
        .iter()
        .find(|v| v.verdict == "binds_before_connect")
        .unwrap_or_else(|| panic!("{:#?}", m.verdicts));
    assert_eq!(v.service.name, "binder");
    assert_eq!(v.pids, vec![100]);
    // "plain (cgroup ?)": no cgroup path was given for these tasks.
    assert!(
        v.evidence
            .contains("Other services' connects fail for it: plain")
            && v.evidence.contains("(3 EADDRNOTAVAIL to 10.0.0.2:82)"),
        "{}",
        v.evidence
    );
    assert!(v.evidence.contains("EADDRINUSE"), "{}", v.evidence);
    assert!(
        v.evidence.contains("100% of the 20-port range"),
        "{}",
        v.evidence
    );
    assert!(v.fix.contains("IP_BIND_ADDRESS_NO_PORT"), "{}", v.fix);
    let a = advice_with_key(&m, "bind_address_no_port");
    assert!(a.text.contains("pid 100"), "{}", a.text);
}

#[test]
fn a_few_bound_connections_that_hurt_nobody_draw_no_verdict() {
    let a = task(100, "binder", 1);
    let mut v = vec![host(40000, 40999)];
    for i in 0..5 {
        v.push(bound_conn(
            a,
            "10.0.0.1:81",
            S + i * 10 * MS,
            40000 + i as u16,
        ));
    }
    v.push(tick(3 * S));
    let m = model(&v, 3 * S);
    assert_eq!(m.bound.len(), 1);
    assert!(
        !m.verdicts
            .iter()
            .any(|v| v.verdict == "binds_before_connect"),
        "{:#?}",
        m.verdicts
    );
    assert!(
        !m.system
            .advice
            .iter()
            .any(|a| a.key == "bind_address_no_port")
    );
}

#[test]
fn a_taken_four_tuple_is_its_own_cause() {
    let t = task(7, "client", 1);
    let mut v = vec![host(40000, 40999)];
    v.push(Input::Event(Event::ConnectError(ConnectError {
        ts_ns: S,
        duration_ns: 1000,
        task: Some(t),
        netns: 4026531840,
        daddr: "10.0.0.1".parse().unwrap(),
        dport: 81,
        errno: 99,
        cause: Cause::PortInUse,
        saw_syn_sent: true,
    })));
    v.push(tick(2 * S));
    let m = model(&v, 2 * S);
    let causes = &m.system.connect_errors_by_cause;
    assert_eq!(causes.len(), 1, "{causes:#?}");
    assert_eq!(
        (causes[0].cause, causes[0].count),
        (FailCause::PortInUse, 1)
    );
}
