//! The "lacks_pooling" verdict: true and false cases.

mod engine_support;

use engine_support::*;
use portwatch::engine::{Config, Engine, Model, VerdictConfig};
use portwatch::input::Input;

const DST: &str = "10.0.0.1:80";

fn model(inputs: &[Input], now_ns: u64, cfg: Config) -> Model {
    let mut e = Engine::new(cfg);
    for i in inputs {
        e.apply(i);
    }
    e.model(now_ns)
}

fn with_host(v: Vec<Input>) -> Vec<Input> {
    let mut all = vec![host(32768, 60999), cgroup(5, "/system.slice/api.service")];
    all.extend(v);
    all
}

#[test]
fn unpooled_client_closing_first_is_flagged_with_evidence_and_fix() {
    let t = task(42, "api", 5);
    let inputs = with_host(churn(t, DST, 0, 30, 20, 2 * MS, true));
    let m = model(&inputs, 30 * S, Config::default());
    assert_eq!(m.verdicts.len(), 1);
    let v = &m.verdicts[0];
    assert_eq!(v.verdict, "lacks_pooling");
    assert_eq!(v.service.name, "api.service");
    assert_eq!(v.pids, vec![42]);
    assert_eq!((v.daddr.to_string().as_str(), v.dport), ("10.0.0.1", 80));
    assert_eq!(v.new_per_s, 20.0);
    assert_eq!(v.time_wait, 600);
    assert!((v.budget_share - 600.0 / 28232.0).abs() < 1e-9);
    assert!(
        v.evidence.contains("This host closes first"),
        "{}",
        v.evidence
    );
    assert!(v.fix.contains("keep-alive"), "{}", v.fix);
    assert!(v.fix.contains("tcp_tw_reuse=1"), "{}", v.fix);
}

#[test]
fn unpooled_client_whose_peer_closes_first_is_flagged_and_says_so() {
    let t = task(42, "api", 5);
    let inputs = with_host(churn(t, DST, 0, 30, 20, 2 * MS, false));
    let m = model(&inputs, 30 * S, Config::default());
    assert_eq!(m.verdicts.len(), 1);
    let v = &m.verdicts[0];
    assert_eq!(v.time_wait, 0);
    assert!(v.evidence.contains("peer closes first"), "{}", v.evidence);
    assert!(
        !v.fix.contains("tcp_tw_reuse"),
        "no local TIME_WAIT to fix: {}",
        v.fix
    );
}

#[test]
fn pooled_client_is_never_flagged_however_long_it_runs() {
    let t = task(42, "api", 5);
    // 4 pooled connections recycled every 30 s (each living 30 s).
    let mut v = Vec::new();
    for round in 0..10u64 {
        for c in 0..4 {
            v.push(conn(t, DST, round * 30 * S + c * MS, 30 * S, true));
        }
    }
    v.sort_by_key(|i| i.ts_ns());
    let m = model(&with_host(v), 330 * S, Config::default());
    assert!(m.verdicts.is_empty(), "{:?}", m.verdicts);
}

#[test]
fn frequent_but_long_lived_connections_are_not_one_per_request() {
    let t = task(42, "api", 5);
    let inputs = with_host(churn(t, DST, 0, 30, 20, 5 * S, true));
    let m = model(&inputs, 36 * S, Config::default());
    assert!(m.verdicts.is_empty());
}

#[test]
fn a_short_burst_is_not_a_verdict() {
    let t = task(42, "api", 5);
    // 500 connections/s for 3 s.
    let inputs = with_host(churn(t, DST, 10, 13, 500, MS, true));
    for now in [12, 13, 14, 20, 30] {
        let m = model(&inputs, now * S, Config::default());
        assert!(m.verdicts.is_empty(), "at {now} s: {:?}", m.verdicts);
    }
}

#[test]
fn sustained_churn_that_stops_is_no_longer_flagged() {
    let t = task(42, "api", 5);
    let inputs = with_host(churn(t, DST, 0, 20, 20, MS, true));
    assert_eq!(model(&inputs, 20 * S, Config::default()).verdicts.len(), 1);
    assert!(
        model(&inputs, 23 * S, Config::default())
            .verdicts
            .is_empty()
    );
}

#[test]
fn inbound_churn_is_not_a_client_verdict() {
    let mut v = Vec::new();
    for i in 0..600 {
        v.push(inbound("10.0.0.2:8080", i * 50 * MS, MS));
    }
    let m = model(&with_host(v), 30 * S, Config::default());
    assert!(m.verdicts.is_empty());
    assert_eq!(m.inbound[0].stats.new_per_s_10s, 20.0);
}

#[test]
fn thresholds_come_from_the_config() {
    let t = task(42, "api", 5);
    let inputs = with_host(churn(t, DST, 0, 30, 20, 2 * MS, true));
    let strict = Config {
        verdict: VerdictConfig {
            min_new_per_s: 50.0,
            ..VerdictConfig::default()
        },
        ..Config::default()
    };
    assert!(model(&inputs, 30 * S, strict).verdicts.is_empty());
    let short = Config {
        verdict: VerdictConfig {
            max_lifetime_p50_ms: 1.0,
            ..VerdictConfig::default()
        },
        ..Config::default()
    };
    assert!(model(&inputs, 30 * S, short).verdicts.is_empty());
}

#[test]
fn only_the_unpooled_pair_of_two_is_flagged() {
    let churner = task(42, "api", 5);
    let pooled = task(43, "api", 5);
    let mut v = churn(churner, DST, 0, 30, 20, 2 * MS, true);
    v.push(conn(pooled, "10.0.0.2:5432", 0, 29 * S, true));
    v.sort_by_key(|i| i.ts_ns());
    let m = model(&with_host(v), 30 * S, Config::default());
    assert_eq!(m.verdicts.len(), 1);
    assert_eq!(m.verdicts[0].dport, 80);
    assert_eq!(m.pairs.len(), 2);
}

#[test]
fn exhausted_budget_shows_failures_and_a_full_share() {
    let t = task(42, "api", 5);
    // Range of 10 ports; 10 locally closed connections/s for 10 s, then
    // EADDRNOTAVAIL for the connects that found no port.
    let mut v = Vec::new();
    for s in 0..10u64 {
        v.push(conn(t, DST, s * S, MS, true));
        for k in 0..5 {
            v.push(connect_error(t, DST, s * S + 500 * MS + k, 99));
        }
    }
    let mut all = vec![host(40000, 40009), cgroup(5, "/system.slice/api.service")];
    all.extend(v);
    let cfg = Config {
        verdict: VerdictConfig {
            min_new_per_s: 1.0,
            ..VerdictConfig::default()
        },
        ..Config::default()
    };
    let m = model(&all, 10 * S, cfg);
    let v = &m.verdicts[0];
    assert_eq!(v.budget_share, 1.0);
    assert!(v.evidence.contains("50 EADDRNOTAVAIL"), "{}", v.evidence);
    assert_eq!(m.destinations[0].pressure, 1.0);
    assert_eq!(m.destinations[0].forecast.exhaustion_in_s, Some(0.0));
    assert!(
        m.system
            .advice
            .iter()
            .any(|a| a.key == "ports_nearly_exhausted")
    );
    assert_eq!(m.system.connect_errors[0].name, "EADDRNOTAVAIL");
}

#[test]
fn advice_is_correct_about_reuse_fin_timeout_and_recycle() {
    let t = task(42, "api", 5);
    let mut inputs = vec![Input::Host({
        let Input::Host(mut h) = host(32768, 60999) else {
            unreachable!()
        };
        h.sysctls.tcp_tw_reuse = Some(0);
        h
    })];
    inputs.extend(churn(t, DST, 0, 30, 20, 2 * MS, true));
    let m = model(&inputs, 30 * S, Config::default());
    let text = |k: &str| advice_with_key(&m, k).text.clone();
    let reuse = text("tw_reuse_off");
    assert!(
        reuse.contains("timestamps") && reuse.contains("connecting side"),
        "{reuse}"
    );
    assert!(text("fin_timeout").contains("does not shorten TIME_WAIT"));
    assert!(text("tw_recycle_gone").contains("no longer exists"));
}
