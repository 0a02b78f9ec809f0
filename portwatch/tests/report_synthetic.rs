//! `portwatch report` on synthetic traces: what is flagged, what is not,
//! the failures timeline, a damaged file, and snapshots of both outputs
//! (CI runs with INSTA_UPDATE=no: a changed report fails until reviewed).

mod engine_support;

use engine_support::*;
use portwatch::cmd::report::summarize;
use portwatch::engine::Config;
use portwatch::event::Losses;
use portwatch::input::Input;
use portwatch::render::report::{self, Report};
use portwatch::tracefile::{Reader, Writer};

const EADDRNOTAVAIL: i32 = 99;
const ECONNREFUSED: i32 = 111;

/// 90 s of trace: `api` opens 20 connections/s to 10.0.0.1:80 for 60 s,
/// each living 3 ms and closed here first (no pooling); `worker` keeps two
/// connections to 10.0.0.3:5432 for the whole minute and adds one every
/// 10 s (pooled). `api` then runs out of ports (EADDRNOTAVAIL at 61-64 s),
/// and a connect to 10.0.0.9:443 is refused at 30 s. The host clock puts
/// trace time 0 at 2023-11-14T22:13:20Z, so minute 22:14 starts at 40 s.
fn scenario() -> Vec<Input> {
    let api = task(42, "api", 5);
    let worker = task(77, "worker", 6);
    let mut v = churn(api, "10.0.0.1:80", 0, 60, 20, 3 * MS, true);
    v.push(conn(worker, "10.0.0.3:5432", 0, 89 * S, true));
    v.push(conn(worker, "10.0.0.3:5432", 5 * MS, 89 * S, true));
    v.extend((1..9).map(|i| conn(worker, "10.0.0.3:5432", i * 10 * S, 9 * S, true)));
    v.push(connect_error(worker, "10.0.0.9:443", 30 * S, ECONNREFUSED));
    v.extend((61..65).map(|s| connect_error(api, "10.0.0.1:80", s * S, EADDRNOTAVAIL)));
    v.extend((1..=90).map(|s| tick(s * S)));
    v.push(Input::Losses {
        ts_ns: 90 * S,
        losses: Losses {
            ringbuf_lost: 3,
            ..Losses::default()
        },
    });
    v.sort_by_key(|i| i.ts_ns());
    let mut all = vec![
        host(40000, 40999),
        cgroup(5, "/system.slice/api.service"),
        cgroup(6, "/system.slice/worker.service"),
    ];
    all.extend(v);
    all
}

/// The inputs as a trace file, a frame every 200 records.
fn trace(inputs: &[Input]) -> Vec<u8> {
    let mut w = Writer::new(Vec::new()).unwrap();
    for (n, i) in inputs.iter().enumerate() {
        w.append(i).unwrap();
        if n % 200 == 199 {
            w.flush().unwrap();
        }
    }
    w.finish().unwrap()
}

fn report_of(bytes: &[u8]) -> Report {
    summarize(
        Reader::new(bytes).unwrap(),
        "incident.pwtrace",
        Config::default(),
    )
}

fn text(r: &Report) -> String {
    let mut out = Vec::new();
    report::write_text(&mut out, r, 10).unwrap();
    String::from_utf8(out).unwrap()
}

fn json(r: &Report) -> serde_json::Value {
    let mut out = Vec::new();
    report::write_json(&mut out, r, 10).unwrap();
    serde_json::from_slice(&out).unwrap()
}

#[test]
fn unpooled_client_is_flagged_and_pooled_client_is_not() {
    let r = report_of(&trace(&scenario()));
    let flagged: Vec<_> = r
        .verdicts
        .iter()
        .map(|v| {
            (
                v.peak.service.name.as_str(),
                v.peak.daddr.to_string(),
                v.peak.dport,
            )
        })
        .collect();
    assert_eq!(flagged, [("api.service", "10.0.0.1".to_string(), 80)]);
    let v = &r.verdicts[0];
    assert_eq!(v.peak.verdict, "lacks_pooling");
    // Flagged from the 5th active second until the churn stopped (the
    // verdict wants new connections in the last 2 s).
    assert!(
        (50..=58).contains(&v.flagged_s),
        "flagged {} s",
        v.flagged_s
    );
    // At its peak, a minute of churn's TIME_WAIT: ~1180 of 1000 ports.
    assert!(v.peak.time_wait >= 1000, "{:?}", v.peak);
    assert!(v.peak.budget_share >= 1.0);
    assert!(v.peak.fix.contains("keep-alive"));
}

#[test]
fn peaks_services_and_destinations_cover_the_whole_trace() {
    let r = report_of(&trace(&scenario()));
    assert_eq!(r.duration_s(), 90.0);
    assert_eq!(r.outbound, 1200 + 2 + 8);
    assert_eq!(r.peak_1s.0, 20.0);
    let names: Vec<_> = r.services.iter().map(|s| s.service.name.as_str()).collect();
    assert_eq!(names, ["api.service", "worker.service"]);
    assert_eq!(r.services[0].new_total(), 1200);
    let top = &r.destinations[0];
    assert_eq!((top.daddr.to_string(), top.dport), ("10.0.0.1".into(), 80));
    assert_eq!(top.budget, 1000);
    assert!(top.peak_pressure >= 1.0, "{top:?}");
    assert_eq!(r.losses.ringbuf_lost, 3);
    assert!(r.complete && r.warnings.is_empty());
}

#[test]
fn failures_timeline_counts_per_minute_eaddrnotavail_first() {
    let r = report_of(&trace(&scenario()));
    let names: Vec<_> = r
        .failures
        .iter()
        .map(|c| (c.name.as_str(), c.count))
        .collect();
    // EADDRNOTAVAIL leads even where it is rarer than another errno.
    assert_eq!(names, [("EADDRNOTAVAIL", 4), ("ECONNREFUSED", 1)]);
    let j = json(&r);
    let minutes = &j["failures"]["minutes"];
    assert_eq!(minutes[0]["minute"], "2023-11-14T22:13Z");
    assert_eq!(minutes[0]["total"], 1);
    assert_eq!(minutes[0]["by_errno"][0]["name"], "ECONNREFUSED");
    assert_eq!(minutes[1]["minute"], "2023-11-14T22:14Z");
    assert_eq!(minutes[1]["by_errno"][0]["name"], "EADDRNOTAVAIL");
    assert_eq!(minutes[1]["by_errno"][0]["count"], 4);
    assert_eq!(minutes.as_array().unwrap().len(), 2);
}

#[test]
fn json_verdicts_carry_the_fields_of_top_batch_verdicts() {
    let j = json(&report_of(&trace(&scenario())));
    let v = j["verdicts"][0].as_object().unwrap();
    // The report's verdicts also say whose they are and how they closed.
    let report_only = ["service", "closed_locally_share", "connect_errors"];
    for field in VERDICT_JSON_FIELDS.iter().chain(&report_only) {
        assert!(v.contains_key(*field), "verdict lacks {field}: {v:?}");
    }
    assert_eq!(v["service"]["name"], "api.service");
    assert_eq!(v["service"]["kind"], "systemd");
    assert_eq!(v["service"]["pids"], serde_json::json!([42]));
}

#[test]
fn damaged_file_reports_what_was_read_with_the_byte_offset() {
    let mut bytes = trace(&scenario());
    let whole = report_of(&bytes);
    // A byte in the middle of the file: the frame holding it fails its
    // checksum, and it is not the last one.
    let at = bytes.len() / 2;
    bytes[at] ^= 0x55;
    let r = report_of(&bytes);
    assert!(!r.complete);
    assert!(r.inputs > 0 && r.inputs < whole.inputs);
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    assert!(
        r.warnings[0].contains("frame at byte") && r.warnings[0].contains("checksum"),
        "{:?}",
        r.warnings
    );
    let t = text(&r);
    assert!(t.contains("WARNING: the file is damaged"), "{t}");
    assert!(t.contains(&r.warnings[0]), "{t}");
}

#[test]
fn same_file_same_report() {
    let bytes = trace(&scenario());
    assert_eq!(text(&report_of(&bytes)), text(&report_of(&bytes)));
}

#[test]
fn names_with_control_characters_do_not_reach_the_terminal() {
    let mut inputs = vec![host(40000, 40999)];
    inputs.extend(churn(
        task(9, "evil\x1b[2J", 0),
        "10.0.0.1:80",
        0,
        3,
        2,
        MS,
        true,
    ));
    let t = text(&report_of(&trace(&inputs)));
    assert!(!t.contains('\x1b'), "{t}");
    assert!(t.contains("evil\\u{1b}[2J"), "{t}");
}

#[test]
fn report_text_snapshot() {
    insta::assert_snapshot!(text(&report_of(&trace(&scenario()))));
}

#[test]
fn report_json_snapshot() {
    insta::assert_json_snapshot!(json(&report_of(&trace(&scenario()))));
}
