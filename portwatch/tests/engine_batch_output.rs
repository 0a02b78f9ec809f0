//! Snapshots of `top --batch` text and JSON for a fixed scenario
//! (CI runs with INSTA_UPDATE=no: a changed output fails until reviewed).

mod engine_support;

use engine_support::*;
use portwatch::engine::{Config, Engine, Model};
use portwatch::event::Losses;
use portwatch::input::{Input, KernelCounters, SockState, SocketEntry, SocketTable};
use portwatch::render::batch;

fn scenario() -> Model {
    let mut e = Engine::new(Config::default());
    e.apply(&host(40000, 40999));
    e.apply(&cgroup(5, "/system.slice/api.service"));
    e.apply(&cgroup(6, "/system.slice/docker-4f2b6a1c9d3e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a.scope"));
    e.apply(&Input::Sockets(SocketTable {
        ts_ns: 0,
        netns: 0,
        entries: vec![SocketEntry {
            state: SockState::Established,
            saddr: "10.0.0.5".parse().unwrap(),
            sport: 40500,
            daddr: "10.0.0.2".parse().unwrap(),
            dport: 5432,
            expires_ms: 0,
            uid: 0,
            inode: 1,
        }],
        without_time_wait: false,
    }));
    e.apply(&Input::Counters(KernelCounters {
        ts_ns: 0,
        tcp_inuse: 10,
        tcp_tw: 5,
        tw: 100,
        tw_recycled: 0,
        tw_overflow: 0,
        conntrack: Some(portwatch::input::Conntrack {
            count: 4000,
            max: Some(262_144),
            stats: Some(portwatch::input::ConntrackStats::default()),
        }),
    }));
    let api = task(42, "api", 5);
    let mut v = churn(api, "10.0.0.1:80", 0, 20, 30, 3 * MS, true);
    v.extend(churn(
        task(77, "worker", 6),
        "10.0.0.3:443",
        0,
        20,
        8,
        40 * MS,
        false,
    ));
    v.extend((0..40).map(|i| inbound("10.0.0.5:8080", i * 500 * MS, 2 * MS)));
    v.push(connect_error(api, "10.0.0.1:80", 19 * S, 99));
    // 10.0.0.0/24 is the host's own subnet: only 192.0.2.10 is beyond it.
    v.push(networks(0, &[("127.0.0.1", 8), ("10.0.0.5", 24)]));
    v.push(unanswered(
        task(77, "worker", 6),
        "192.0.2.10:443",
        18 * S,
        S,
        1,
    ));
    v.sort_by_key(|i| i.ts_ns());
    for i in &v {
        e.apply(i);
    }
    e.apply(&Input::Counters(KernelCounters {
        ts_ns: 20 * S,
        tcp_inuse: 12,
        tcp_tw: 605,
        tw: 160,
        tw_recycled: 0,
        tw_overflow: 0,
        conntrack: Some(portwatch::input::Conntrack {
            count: 4100,
            max: Some(262_144),
            stats: Some(portwatch::input::ConntrackStats::default()),
        }),
    }));
    e.apply(&Input::Losses {
        ts_ns: 20 * S,
        losses: Losses {
            ringbuf_lost: 0,
            sock_evicted: 0,
            connect_untracked: 0,
            decode_errors: 0,
            probe_errors: 0,
            kernel_missed: 0,
        },
    });
    e.apply(&tick(20 * S));
    e.model(20 * S)
}

#[test]
fn batch_text_snapshot() {
    let mut out = Vec::new();
    batch::write_text(&mut out, &scenario(), 10).unwrap();
    insta::assert_snapshot!(String::from_utf8(out).unwrap());
}

#[test]
fn batch_json_snapshot() {
    let m = scenario();
    let v = serde_json::to_value(batch::json(&m, 2.0, 10)).unwrap();
    insta::assert_json_snapshot!(v);
}

#[test]
fn batch_json_has_the_stable_fields() {
    let m = scenario();
    let v = serde_json::to_value(batch::json(&m, 2.0, 10)).unwrap();
    for k in [
        "time",
        "interval_s",
        "system",
        "services",
        "destinations",
        "verdicts",
    ] {
        assert!(v.get(k).is_some(), "missing {k}");
    }
    for k in [
        "port_range",
        "budget",
        "time_wait",
        "new_per_sec",
        "connect_errors",
        "lost_events",
        "advice",
    ] {
        assert!(v["system"].get(k).is_some(), "missing system.{k}");
    }
    for table in ["services", "destinations"] {
        for k in [
            "new_per_sec",
            "lifetime_p50_ms",
            "time_wait",
            "connect_errors",
        ] {
            assert!(v[table][0].get(k).is_some(), "missing {table}[].{k}");
        }
    }
    let verdict = &v["verdicts"][0];
    for k in VERDICT_JSON_FIELDS {
        assert!(verdict.get(k).is_some(), "missing verdicts[].{k}");
    }
    for k in ["name", "kind", "pids"] {
        assert!(
            verdict["service"].get(k).is_some(),
            "missing verdicts[].service.{k}"
        );
    }
    assert_eq!(verdict["service"]["name"], "api.service");
    assert_eq!(verdict["service"]["pids"][0], 42);
}
