//! The exporter's series and exposition on synthetic input streams: which
//! series exist, that counters only go up, folding, the grace period and
//! the cardinality cap. No root, no kernel.

mod engine_support;

use std::collections::{BTreeMap, BTreeSet};

use engine_support::*;
use portwatch::engine::{Config, Engine};
use portwatch::event::Losses;
use portwatch::exporter::exposition::Value;
use portwatch::exporter::{Format, HostExtras, Limits, Series, encode, families};
use portwatch::input::{Input, KernelCounters};

/// Feeds `inputs` in time order, folding a model into `series` at every
/// whole second (as the live loop does each interval).
fn run(engine: &mut Engine, series: &mut Series, inputs: Vec<Input>, until_s: u64) {
    let mut inputs = inputs;
    inputs.sort_by_key(|i| i.ts_ns().unwrap_or(0));
    let mut it = inputs.into_iter().peekable();
    let mut s = engine.now_ns() / S + 1;
    while s <= until_s {
        while let Some(i) = it.next_if(|i| i.ts_ns().unwrap_or(0) < s * S) {
            engine.apply(&i);
        }
        engine.apply(&tick(s * S));
        series.observe(&engine.model(s * S));
        s += 1;
    }
}

/// Every sample as "name{labels}" → value, from the families.
fn samples(series: &Series, engine: &Engine) -> BTreeMap<String, f64> {
    let model = engine.model(engine.now_ns());
    let mut out = BTreeMap::new();
    for f in families(series, &model, &HostExtras::default()) {
        for s in &f.samples {
            let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let key = format!("{}{{{}}}", f.exposed_name(), labels.join(","));
            let v = match &s.value {
                Value::Counter(n) => *n as f64,
                Value::CounterF(x) | Value::Gauge(x) => *x,
                Value::Histogram { count, .. } => *count as f64,
            };
            out.insert(key, v);
        }
    }
    out
}

fn series_count(series: &Series, engine: &Engine) -> usize {
    let model = engine.model(engine.now_ns());
    families(series, &model, &HostExtras::default())
        .iter()
        .map(|f| f.series_count())
        .sum()
}

fn unpooled_and_pooled() -> Vec<Input> {
    let a = task(100, "orders-api", 2);
    let b = task(200, "payments", 1);
    let mut v = vec![
        host(32768, 60999),
        cgroup(1, "/"),
        cgroup(2, "/system.slice/orders-api.service"),
    ];
    // 50 new connections/s of 1 ms, closed here: lacks pooling.
    v.extend(churn(a, "10.0.3.7:5432", 0, 20, 50, MS, true));
    // One connection per 2 s living 30 s: pooled.
    for s in (0..20).step_by(2) {
        v.push(conn(b, "10.0.4.1:443", s * S, 30 * S, true));
    }
    v.push(connect_error(a, "10.0.3.7:5432", 15 * S, 99));
    v.push(connect_error(a, "10.0.3.7:5432", 16 * S, 99));
    v.push(connect_error(b, "10.0.4.1:443", 17 * S, 111));
    // 10.0.3.7 is in the host's own subnet; 10.0.4.1 is beyond it (NAT
    // port demand), and one handshake to it went unanswered after one
    // SYN retransmission.
    v.push(networks(0, &[("127.0.0.1", 8), ("10.0.3.20", 24)]));
    v.push(unanswered(b, "10.0.4.1:443", 16 * S, S, 1));
    let conntrack = |failed: (u64, u64, u64)| {
        let Input::Counters(c) = conntrack_counters(0, 950, 262_144, failed) else {
            unreachable!()
        };
        c.conntrack
    };
    for (ts, failed) in [(17, (0, 0, 0)), (18, (1, 4, 2))] {
        v.push(Input::Counters(KernelCounters {
            ts_ns: ts * S,
            tcp_inuse: 12,
            tcp_tw: 900,
            tw: 5,
            tw_recycled: 7,
            tw_overflow: 0,
            conntrack: conntrack(failed),
        }));
    }
    v.push(Input::Losses {
        ts_ns: 18 * S,
        losses: Losses {
            ringbuf_lost: 3,
            ..Losses::default()
        },
    });
    v
}

/// An engine and a series (default limits) fed [`unpooled_and_pooled`]
/// for 20 s.
fn unpooled_and_pooled_for_20_s() -> (Engine, Series) {
    let mut e = Engine::new(Config::default());
    let mut s = Series::new(Limits::default());
    run(&mut e, &mut s, unpooled_and_pooled(), 20);
    (e, s)
}

/// The exposition in `format` after [`unpooled_and_pooled_for_20_s`].
fn exposition_of_unpooled_and_pooled(format: Format) -> String {
    let (e, s) = unpooled_and_pooled_for_20_s();
    let model = e.model(e.now_ns());
    encode(families(&s, &model, &HostExtras::default()), format)
}

#[test]
fn exposition_snapshot() {
    let text = exposition_of_unpooled_and_pooled(Format::Prometheus);
    insta::assert_snapshot!("exposition_prometheus_text", text);
}

#[test]
fn openmetrics_text_ends_with_eof_and_names_units() {
    let text = exposition_of_unpooled_and_pooled(Format::OpenMetrics);
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(text.contains("# UNIT portwatch_connection_lifetime_seconds seconds"));
    assert!(text.contains("portwatch_connections_opened_total{"));
}

#[test]
fn lacks_pooling_is_one_for_exactly_the_unpooled_pair() {
    let (e, s) = unpooled_and_pooled_for_20_s();
    let all = samples(&s, &e);
    let flagged: Vec<&String> = all
        .iter()
        .filter(|(k, v)| k.starts_with("portwatch_lacks_pooling{") && **v == 1.0)
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        flagged,
        [
            "portwatch_lacks_pooling{service=orders-api.service,service_kind=systemd,daddr=10.0.3.7,dport=5432,netns_name=host}"
        ]
    );
    let pooled = "portwatch_lacks_pooling{service=payments,service_kind=comm,daddr=10.0.4.1,dport=443,netns_name=host}";
    assert_eq!(all.get(pooled), Some(&0.0));
}

#[test]
fn counters_carry_the_engine_totals_and_errors_their_cause() {
    let (e, s) = unpooled_and_pooled_for_20_s();
    let all = samples(&s, &e);
    let pair =
        "service=orders-api.service,service_kind=systemd,daddr=10.0.3.7,dport=5432,netns_name=host";
    assert_eq!(
        all[&format!("portwatch_connections_opened_total{{{pair}}}")],
        1000.0
    );
    assert_eq!(
        all[&format!("portwatch_connections_closed_locally_total{{{pair}}}")],
        1000.0
    );
    assert_eq!(
        all[&format!(
            "portwatch_connect_errors_total{{{pair},errno=EADDRNOTAVAIL,cause=port_exhaustion}}"
        )],
        2.0
    );
    let refused = "service=payments,service_kind=comm,daddr=10.0.4.1,dport=443,netns_name=host,errno=ECONNREFUSED,cause=refused";
    assert_eq!(
        all[&format!("portwatch_connect_errors_total{{{refused}}}")],
        1.0
    );
    assert_eq!(all["portwatch_events_lost_total{reason=ringbuf_full}"], 3.0);
    assert_eq!(all["portwatch_time_wait_recycled_total{}"], 7.0);
    // 1000 + 3 failed connects + 1 unanswered handshake; the pooled
    // connections are still open.
    assert_eq!(all["portwatch_events_total{}"], 1004.0);
    let payments = "service=payments,service_kind=comm,daddr=10.0.4.1,dport=443,netns_name=host";
    assert_eq!(
        all[&format!("portwatch_syn_retransmits_total{{{payments}}}")],
        1.0
    );
    assert!(
        !all.keys()
            .any(|k| k.starts_with("portwatch_syn_retransmits_total{service=orders-api")),
        "no sample for a pair without retransmissions"
    );
    assert_eq!(
        all["portwatch_conntrack_failures_total{netns_name=host,kind=drop}"],
        4.0
    );
    assert_eq!(all["portwatch_conntrack_entries{netns_name=host}"], 950.0);
    // 0.1 new/s x (0 s: none established yet + 120 s hold).
    assert_eq!(
        all["portwatch_nat_port_demand{daddr=10.0.4.1,dport=443,netns_name=host}"],
        12.0
    );
    assert!(
        !all.contains_key("portwatch_nat_port_demand{daddr=10.0.3.7,dport=5432,netns_name=host}"),
        "10.0.3.7 is in the host's own subnet"
    );
}

/// Collects every counter's value after each model; none may go down.
#[test]
fn counters_never_decrease_when_keys_age_out_and_return() {
    // Idle keys are dropped by the engine after 20 s here; the service
    // comes back to the same destination afterwards, its engine totals
    // restarting from zero.
    let cfg = Config {
        idle_timeout_s: 20,
        ..Config::default()
    };
    let mut e = Engine::new(cfg);
    let mut s = Series::new(Limits {
        grace_s: 600,
        ..Limits::default()
    });
    let a = task(1, "batch-job", 1);
    let mut v = vec![host(32768, 60999), cgroup(1, "/")];
    v.extend(churn(a, "10.0.0.1:80", 0, 5, 10, MS, true));
    v.extend(churn(a, "10.0.0.1:80", 100, 103, 10, MS, true));
    let mut prev: BTreeMap<String, f64> = BTreeMap::new();
    let mut inputs = v;
    inputs.sort_by_key(|i| i.ts_ns().unwrap_or(0));
    for sec in 1..=110u64 {
        let now: Vec<Input> = inputs
            .iter()
            .filter(|i| {
                let t = i.ts_ns().unwrap_or(0);
                t < sec * S && t >= (sec - 1) * S
            })
            .cloned()
            .collect();
        run(&mut e, &mut s, now, sec);
        for (k, v) in samples(&s, &e) {
            if k.contains("_total{") || k.starts_with("portwatch_connection_lifetime") {
                if let Some(p) = prev.get(&k) {
                    assert!(v >= *p, "{k} went from {p} to {v} at {sec} s");
                }
                prev.insert(k, v);
            }
        }
    }
    assert_eq!(
        prev["portwatch_connections_opened_total{service=batch-job,service_kind=comm,daddr=10.0.0.1,dport=80,netns_name=host}"],
        80.0,
        "50 before the engine forgot the key, 30 after"
    );
}

#[test]
fn destinations_beyond_the_limit_fold_into_other_and_keep_counting() {
    let mut e = Engine::new(Config::default());
    let mut s = Series::new(Limits {
        max_destinations: 3,
        ..Limits::default()
    });
    let a = task(1, "fanout", 1);
    let mut v = vec![host(32768, 60999), cgroup(1, "/")];
    for d in 0..8u16 {
        v.extend(churn(a, &format!("10.1.0.{d}:80"), 0, 5, 2, MS, true));
    }
    run(&mut e, &mut s, v, 6);
    let all = samples(&s, &e);
    let opened: BTreeMap<&String, &f64> = all
        .iter()
        .filter(|(k, _)| k.starts_with("portwatch_connections_opened_total"))
        .collect();
    assert_eq!(opened.len(), 4, "3 destinations + ~other: {opened:#?}");
    let other = "portwatch_connections_opened_total{service=fanout,service_kind=comm,daddr=~other,dport=~other,netns_name=~other}";
    assert_eq!(all[other], 50.0, "5 folded destinations x 10");
    assert_eq!(opened.values().copied().sum::<f64>(), 80.0, "nothing lost");
}

#[test]
fn services_beyond_the_limit_fold_into_one_other_series() {
    let mut e = Engine::new(Config::default());
    let mut s = Series::new(Limits {
        max_services: 2,
        ..Limits::default()
    });
    let mut v = vec![host(32768, 60999), cgroup(1, "/")];
    for i in 0..5u32 {
        let t = task(i + 1, &format!("svc{i}"), 1);
        v.extend(churn(t, &format!("10.2.0.{i}:80"), 0, 3, 1, MS, true));
    }
    run(&mut e, &mut s, v, 4);
    let services: BTreeSet<&str> = s.services.keys().map(|l| l.service.as_str()).collect();
    assert_eq!(services.len(), 3, "{services:?}");
    assert!(services.contains("~other"));
    let other = &s
        .services
        .iter()
        .find(|(l, _)| l.service == "~other")
        .expect("~other")
        .1;
    assert_eq!(other.dests.len(), 1, "one series for every folded pair");
    assert_eq!(other.dests.values().next().map(|p| p.opened), Some(9));
}

#[test]
fn destination_ports_inside_the_ephemeral_range_are_folded() {
    let mut e = Engine::new(Config::default());
    let mut s = Series::new(Limits::default());
    let a = task(1, "p2p", 1);
    let mut v = vec![host(32768, 60999), cgroup(1, "/")];
    for port in [40001u16, 40002, 50000, 8080] {
        v.extend(churn(a, &format!("10.3.0.1:{port}"), 0, 2, 1, MS, true));
    }
    run(&mut e, &mut s, v, 3);
    let ports: BTreeSet<String> = s
        .services
        .values()
        .flat_map(|x| x.dests.keys())
        .map(|d| d.dport.clone())
        .collect();
    assert_eq!(
        ports,
        BTreeSet::from(["8080".to_string(), "ephemeral".to_string()])
    );
    let all = samples(&s, &e);
    assert_eq!(
        all["portwatch_connections_opened_total{service=p2p,service_kind=comm,daddr=10.3.0.1,dport=ephemeral,netns_name=host}"],
        6.0
    );
}

#[test]
fn series_of_a_gone_service_disappear_after_the_grace_period() {
    let mut e = Engine::new(Config::default());
    let mut s = Series::new(Limits {
        grace_s: 120,
        ..Limits::default()
    });
    let a = task(1, "cronjob", 1);
    let b = task(2, "daemon", 1);
    let mut v = vec![host(32768, 60999), cgroup(1, "/")];
    // Closed by the peer: no TIME_WAIT here, so the pair is quiet at once.
    v.extend(churn(a, "10.4.0.1:80", 0, 5, 5, MS, false));
    v.extend(churn(b, "10.4.0.2:80", 0, 200, 1, MS, false));
    run(&mut e, &mut s, v.clone(), 100);
    let has = |s: &Series, name: &str| s.services.keys().any(|l| l.service == name);
    assert!(has(&s, "cronjob"), "within the grace period");
    run(&mut e, &mut s, vec![], 126);
    assert!(!has(&s, "cronjob"), "gone 120 s after its last connection");
    assert!(has(&s, "daemon"));
}

/// The documented cap at the defaults: every pair series has 4 samples
/// (opened, closed locally, TIME_WAIT, lacks_pooling) plus one per
/// (errno, cause) seen; every service a histogram of 8; every destination
/// up to 4 gauges; host 8 and self 9 + 2 per eBPF program at most.
#[test]
fn ten_thousand_destinations_stay_at_the_cap() {
    let limits = Limits::default();
    let mut e = Engine::new(Config::default());
    let mut s = Series::new(limits.clone());
    let a = task(1, "crawler", 1);
    let mut v = vec![host(32768, 60999), cgroup(1, "/")];
    for d in 0..10_000u32 {
        let ip = format!("10.{}.{}.{}", d >> 16, (d >> 8) & 255, d & 255);
        v.push(conn(
            a,
            &format!("{ip}:443"),
            u64::from(d) * 500_000,
            MS,
            true,
        ));
    }
    run(&mut e, &mut s, v, 6);
    let n = series_count(&s, &e);
    let pairs = s.pair_count();
    assert_eq!(
        pairs,
        limits.max_destinations + 1,
        "20 destinations + ~other"
    );
    assert_eq!(s.destinations.len(), limits.max_destinations + 1);
    // 21 pairs x 4 + 1 histogram x 8 + 21 destinations x 3 (no forecast:
    // far from the budget) + host 3 (the port range; no kernel counters or
    // conntrack here) + self 9 (no eBPF statistics here).
    let expected = 21 * 4 + 8 + 21 * 3 + 3 + 9;
    println!("10,000 destinations from one service: {n} series");
    assert_eq!(n, expected);

    // And across many services: 200 services x 50 destinations.
    let mut e = Engine::new(Config::default());
    let mut s = Series::new(limits.clone());
    let mut v = vec![host(32768, 60999), cgroup(1, "/")];
    for svc in 0..200u32 {
        let t = task(svc + 1, &format!("svc{svc}"), 1);
        for d in 0..50u32 {
            let ts = u64::from(svc * 50 + d) * 500_000;
            v.push(conn(t, &format!("10.9.{svc}.{d}:443"), ts, MS, true));
        }
    }
    run(&mut e, &mut s, v, 6);
    let n = series_count(&s, &e);
    // 20 services x (20 + ~other) + the ~other service's one pair.
    assert_eq!(s.pair_count(), 20 * 21 + 1);
    let expected = (20 * 21 + 1) * 4 + 21 * 8 + 21 * 3 + 3 + 9;
    println!("10,000 destinations from 200 services: {n} series (cap without errors: {expected})");
    assert_eq!(n, expected);
}

/// `ev` moved to network namespace `ns`.
fn in_ns(ev: Input, ns: u32) -> Input {
    use portwatch::event::{ConnClose, Event};
    match ev {
        Input::Event(Event::Close(c)) => Input::Event(Event::Close(ConnClose { netns: ns, ..c })),
        other => other,
    }
}

/// A service whose tasks run in two namespaces (a process name seen on the
/// host and in a container) to one destination: a series per namespace,
/// each counting its own connections (one key per namespace, so neither
/// resets the other's counter), and a pressure gauge per namespace.
#[test]
fn one_service_in_two_namespaces_has_a_series_per_namespace() {
    const POD: u32 = 4026532999;
    let t = task(100, "worker", 1);
    let mut v = vec![host(32768, 60999), cgroup(1, "/")];
    v.extend(churn(t, "10.0.3.7:5432", 0, 10, 10, MS, true));
    v.extend(
        churn(t, "10.0.3.7:5432", 0, 10, 5, MS, true)
            .into_iter()
            .map(|i| in_ns(i, POD)),
    );
    let mut e = Engine::new(Config::default());
    let mut s = Series::new(Limits::default());
    run(&mut e, &mut s, v, 12);
    let all = samples(&s, &e);
    let opened = |ns: &str| {
        all[&format!(
            "portwatch_connections_opened_total{{service=worker,service_kind=comm,daddr=10.0.3.7,dport=5432,netns_name={ns}}}"
        )]
    };
    assert_eq!(opened("host"), 100.0);
    assert_eq!(opened(&format!("netns:{POD}")), 50.0);
    let pressure: Vec<&String> = all
        .keys()
        .filter(|k| k.starts_with("portwatch_port_pressure_ratio{daddr=10.0.3.7,dport=5432,"))
        .collect();
    assert_eq!(pressure.len(), 2, "{pressure:?}");
}

#[test]
fn a_leaking_service_has_its_close_wait_sockets_and_no_lacks_pooling() {
    use portwatch::input::SocketTable;
    let mut e = Engine::new(Config::default());
    let mut s = Series::new(Limits::default());
    let entries = close_wait_sockets("10.0.0.2", "10.0.3.7:5432", 12, 500);
    let mut inputs = vec![
        host(40000, 40019),
        cgroup(3, "/system.slice/orders-api.service"),
    ];
    for t in 1..=20 {
        inputs.push(Input::Sockets(SocketTable {
            ts_ns: t * S,
            netns: 4026531840,
            entries: entries.clone(),
            without_time_wait: false,
        }));
    }
    inputs.push(all_owned_by(S + MS, &entries, 77, "orders-api", 3));
    run(&mut e, &mut s, inputs, 20);
    let all = samples(&s, &e);
    let leaked: Vec<(&String, &f64)> = all
        .iter()
        .filter(|(k, _)| k.starts_with("portwatch_leaked_sockets{"))
        .collect();
    assert_eq!(
        leaked,
        [(
            &"portwatch_leaked_sockets{service=orders-api.service,service_kind=systemd,daddr=10.0.3.7,dport=5432,netns_name=host}".to_string(),
            &12.0
        )]
    );
    assert!(
        !all.iter()
            .any(|(k, v)| k.starts_with("portwatch_lacks_pooling{") && *v == 1.0)
    );
}
