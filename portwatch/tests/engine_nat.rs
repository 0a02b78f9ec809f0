//! Road 4 of issue 11, off-host exhaustion, on synthetic inputs: NAT port
//! demand for destinations beyond the host's own networks, the conntrack
//! table with its rates, and the advice that names NAT or conntrack
//! exhaustion as the likely cause of unanswered handshakes. No traffic is
//! sent anywhere: the addresses only appear in synthetic events.

mod engine_support;

use engine_support::*;
use portwatch::engine::{Config, DestinationRow, Engine, Model, VerdictConfig};
use portwatch::input::{Input, KernelCounters, NetnsInfo};

const GATEWAY_DST: &str = "203.0.113.9:443";
const LOCAL_DST: &str = "10.0.1.7:5432";
const OWN_NETS: &[(&str, u8)] = &[("127.0.0.1", 8), ("10.0.1.5", 24)];

fn model_of(mut inputs: Vec<Input>, at_s: u64, cfg: Config) -> Model {
    inputs.sort_by_key(|i| i.ts_ns().unwrap_or(0));
    let mut e = Engine::new(cfg);
    for i in &inputs {
        e.apply(i);
    }
    e.apply(&tick(at_s * S));
    e.model(at_s * S)
}

fn dest<'m>(m: &'m Model, dst: &str) -> &'m DestinationRow {
    let (a, p) = split(dst);
    m.destinations
        .iter()
        .find(|d| d.daddr == a && d.dport == p)
        .unwrap_or_else(|| panic!("no {dst}"))
}

/// 500 connections/s of 200 ms to each destination for 20 s.
fn busy_client(nets: bool) -> Vec<Input> {
    let t = task(42, "api", 5);
    let mut v = vec![host(32768, 60999), cgroup(5, "/system.slice/api.service")];
    if nets {
        v.push(networks(0, OWN_NETS));
    }
    v.extend(churn(t, GATEWAY_DST, 0, 20, 500, 200 * MS, true));
    v.extend(churn(t, LOCAL_DST, 0, 20, 500, 200 * MS, true));
    v
}

fn advice_keys(m: &Model) -> Vec<&str> {
    m.system.advice.iter().map(|a| a.key).collect()
}

#[test]
fn demand_is_rate_times_lifetime_plus_hold_beyond_the_own_networks_only() {
    let m = model_of(busy_client(true), 20, Config::default());
    let d = dest(&m, GATEWAY_DST);
    assert_eq!(d.beyond_local_networks, Some(true));
    // 500/s × (0.2 s + 120 s).
    let demand = d.nat_port_demand.expect("demand");
    assert!((demand - 60_100.0).abs() < 1.0, "{demand}");
    let l = dest(&m, LOCAL_DST);
    assert_eq!(l.beyond_local_networks, Some(false), "a connected subnet");
    assert_eq!(l.nat_port_demand, None);
}

#[test]
fn the_hold_comes_from_the_config() {
    let cfg = Config {
        verdict: VerdictConfig {
            nat_hold_s: 30.0,
            ..VerdictConfig::default()
        },
        ..Config::default()
    };
    let m = model_of(busy_client(true), 20, cfg);
    let demand = dest(&m, GATEWAY_DST).nat_port_demand.unwrap();
    assert!((demand - 15_100.0).abs() < 1.0, "{demand}");
}

#[test]
fn without_the_networks_nothing_is_judged() {
    let m = model_of(busy_client(false), 20, Config::default());
    let d = dest(&m, GATEWAY_DST);
    assert_eq!(d.beyond_local_networks, None);
    assert_eq!(d.nat_port_demand, None);
    assert!(!advice_keys(&m).iter().any(|k| k.starts_with("nat_")));
}

#[test]
fn high_demand_without_failures_is_a_suggestion() {
    let m = model_of(busy_client(true), 20, Config::default());
    let a = advice_with_key(&m, "nat_port_demand");
    assert_eq!(a.level, "suggestion");
    assert!(a.text.contains("203.0.113.9:443"), "{}", a.text);
    assert!(a.text.contains("~60100 NAT gateway ports"), "{}", a.text);
    assert!(a.text.contains("of the gateway's 55000"), "{}", a.text);
    assert!(!a.text.contains("10.0.1.7"), "{}", a.text);
}

#[test]
fn unanswered_handshakes_under_high_demand_name_nat_exhaustion_and_pooling() {
    let mut v = busy_client(true);
    let t = task(42, "api", 5);
    for i in 0..5 {
        v.push(unanswered(t, GATEWAY_DST, (15 + i) * S, S / 2, 1));
    }
    let m = model_of(v, 20, Config::default());
    let keys = advice_keys(&m);
    assert!(!keys.contains(&"nat_port_demand"), "{keys:?}");
    let a = advice_with_key(&m, "nat_exhaustion_likely");
    assert_eq!(a.level, "warning");
    assert!(a.text.contains("203.0.113.9:443"), "{}", a.text);
    assert!(a.text.contains("likely cause is NAT port"), "{}", a.text);
    assert!(a.text.contains("Pool connections"), "{}", a.text);
    assert_eq!(dest(&m, GATEWAY_DST).stats.syn_retransmits, 5);
}

#[test]
fn old_unanswered_handshakes_do_not_count_as_rising() {
    let mut v = busy_client(true);
    v.push(unanswered(task(42, "api", 5), GATEWAY_DST, S, S / 2, 1));
    let m = model_of(v, 20, Config::default());
    let keys = advice_keys(&m);
    assert!(!keys.contains(&"nat_exhaustion_likely"), "{keys:?}");
    assert!(keys.contains(&"nat_port_demand"), "{keys:?}");
}

#[test]
fn low_demand_draws_no_nat_advice() {
    let t = task(42, "api", 5);
    let mut v = vec![host(32768, 60999), networks(0, OWN_NETS)];
    v.extend(churn(t, GATEWAY_DST, 0, 20, 5, 200 * MS, true));
    v.push(unanswered(t, GATEWAY_DST, 19 * S, S / 2, 1));
    let m = model_of(v, 20, Config::default());
    let demand = dest(&m, GATEWAY_DST).nat_port_demand.unwrap();
    assert!(demand < 1000.0, "{demand}");
    assert!(!advice_keys(&m).iter().any(|k| k.starts_with("nat_")));
}

#[test]
fn conntrack_counts_fill_and_rates_of_turned_away_entries() {
    let mut v = busy_client(true);
    v.push(conntrack_counters(10 * S, 200_000, 262_144, (0, 0, 0)));
    v.push(conntrack_counters(20 * S, 262_000, 262_144, (10, 300, 40)));
    let m = model_of(v, 20, Config::default());
    let ct = m.system.conntrack.as_ref().expect("conntrack");
    assert_eq!(ct.count, 262_000);
    assert_eq!(ct.max, Some(262_144));
    assert!((ct.fill.unwrap() - 262_000.0 / 262_144.0).abs() < 1e-9);
    assert_eq!(ct.insert_failed_per_s, Some(1.0));
    assert_eq!(ct.drop_per_s, Some(30.0));
    assert_eq!(ct.early_drop_per_s, Some(4.0));
    assert_eq!(ct.netns_name, "host");
    let a = advice_with_key(&m, "conntrack_full");
    assert!(a.text.contains("262000 of 262144 entries"), "{}", a.text);
    assert!(a.text.contains("35.0/s turned away"), "{}", a.text);
    let json = serde_json::to_value(portwatch::render::batch::json(&m, 1.0, 10)).unwrap();
    assert_eq!(json["system"]["conntrack"]["drop_per_s"], 30.0);
    assert_eq!(json["namespaces"][0]["conntrack"]["count"], 262_000);
}

#[test]
fn a_full_conntrack_table_while_handshakes_go_unanswered_is_the_likely_cause() {
    let t = task(42, "api", 5);
    let mut v = vec![host(32768, 60999), networks(0, OWN_NETS)];
    v.push(conntrack_counters(10 * S, 262_144, 262_144, (0, 0, 0)));
    v.push(conntrack_counters(20 * S, 262_144, 262_144, (0, 50, 0)));
    v.push(unanswered(t, LOCAL_DST, 19 * S, S / 2, 1));
    let m = model_of(v, 20, Config::default());
    let a = advice_with_key(&m, "conntrack_full");
    assert_eq!(a.level, "warning");
    assert!(a.text.contains("likely cause"), "{}", a.text);
    assert!(a.text.contains("pooling"), "{}", a.text);
}

#[test]
fn a_roomy_conntrack_table_draws_no_advice_and_no_module_means_null() {
    let mut v = busy_client(true);
    v.push(conntrack_counters(10 * S, 100, 262_144, (0, 0, 0)));
    v.push(conntrack_counters(20 * S, 120, 262_144, (0, 0, 0)));
    let m = model_of(v, 20, Config::default());
    assert!(m.system.conntrack.is_some());
    assert!(!advice_keys(&m).contains(&"conntrack_full"));

    let m = model_of(busy_client(true), 20, Config::default());
    assert_eq!(m.system.conntrack, None);
    let json = serde_json::to_value(portwatch::render::batch::json(&m, 1.0, 10)).unwrap();
    assert!(json["system"]["conntrack"].is_null());
}

#[test]
fn the_namespace_turning_entries_away_is_the_one_in_the_header() {
    let pod_ns = 4026532777;
    let t = task(42, "api", 5);
    let mut v = vec![host(32768, 60999), networks(0, OWN_NETS)];
    v.push(conntrack_counters(10 * S, 100, 262_144, (0, 0, 0)));
    v.push(conntrack_counters(20 * S, 100, 262_144, (0, 0, 0)));
    // A task in the pod's namespace, so that the engine knows it.
    let Input::Event(portwatch::event::Event::Close(c)) = conn(t, LOCAL_DST, S, MS, true) else {
        unreachable!()
    };
    v.push(Input::Event(portwatch::event::Event::Close(
        portwatch::event::ConnClose { netns: pod_ns, ..c },
    )));
    for (ts, drop) in [(10, 0), (20, 20)] {
        let Input::Counters(k) = conntrack_counters(ts * S, 5000, 262_144, (0, drop, 0)) else {
            unreachable!()
        };
        v.push(Input::Netns(NetnsInfo {
            ts_ns: ts * S,
            netns: pod_ns,
            sysctls: Some(sysctls(32768, 60999)),
            counters: Some(KernelCounters { ts_ns: ts * S, ..k }),
            error: None,
            stale: false,
        }));
    }
    let m = model_of(v, 20, Config::default());
    let ct = m.system.conntrack.as_ref().expect("conntrack");
    assert_eq!(ct.netns, pod_ns);
    assert!(!ct.host);
    assert_eq!(ct.drop_per_s, Some(2.0));
    assert!(ct.text().contains(" in "), "{}", ct.text());
    let host = m.namespaces.iter().find(|n| n.host).unwrap();
    assert_eq!(host.conntrack.as_ref().unwrap().count, 100);
}
