//! The golden trace: 15 s recorded by `portwatch record` from a real
//! scenario (tests/kernel_report.rs, `regenerate_golden_trace`): in a
//! private network namespace, one client opening a connection per request
//! at ~50/s to 127.0.0.1:17101 and one keeping a single connection to
//! 127.0.0.1:17102. `report` must flag exactly the first, and agree with
//! what `top --batch --json` computes from the same inputs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use portwatch::cmd::report::summarize;
use portwatch::engine::{Config, Engine};
use portwatch::render::{batch, report};
use portwatch::tracefile::Reader;
use serde_json::Value;

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/golden/unpooled_pooled.pwtrace")
}

fn report_json() -> Value {
    let r = summarize(
        Reader::open(&golden()).unwrap(),
        "unpooled_pooled.pwtrace",
        Config::default(),
    );
    let mut out = Vec::new();
    report::write_json(&mut out, &r, 10).unwrap();
    serde_json::from_slice(&out).unwrap()
}

/// (service name, kind, daddr, dport, verdict) of JSON verdicts.
fn verdict_set<'a>(verdicts: impl IntoIterator<Item = &'a Value>) -> BTreeSet<String> {
    verdicts
        .into_iter()
        .map(|v| {
            format!(
                "{} ({}) -> {}:{} {}",
                v["service"]["name"], v["service"]["kind"], v["daddr"], v["dport"], v["verdict"]
            )
        })
        .collect()
}

#[test]
fn golden_trace_is_small_and_reads_cleanly() {
    let len = std::fs::metadata(golden()).unwrap().len();
    assert!(len < 200 * 1024, "golden trace is {len} bytes");
    let j = report_json();
    assert_eq!(j["complete"], true);
    assert_eq!(j["warnings"], serde_json::json!([]));
    assert_eq!(j["lost_events"]["total"], 0);
}

#[test]
fn report_flags_only_the_unpooled_pair() {
    let j = report_json();
    let verdicts = j["verdicts"].as_array().unwrap();
    assert_eq!(verdicts.len(), 1, "{verdicts:#?}");
    let v = &verdicts[0];
    assert_eq!(v["verdict"], "lacks_pooling");
    assert_eq!(v["daddr"], "127.0.0.1");
    assert_eq!(v["dport"], 17101);
    let rate = v["new_per_sec"].as_f64().unwrap();
    assert!((40.0..=55.0).contains(&rate), "{v:#}");
    assert!(v["lifetime_p50_ms"].as_f64().unwrap() < 10.0, "{v:#}");
    assert_eq!(v["closed_locally_share"], 1.0);
    // The pooled client was seen (one connection, the whole run) but not
    // flagged.
    let pooled = j["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["dport"] == 17102)
        .expect("the pooled destination");
    assert_eq!(pooled["new_total"], 1);
}

#[test]
fn report_verdicts_are_those_top_batch_computes_from_the_same_file() {
    // top --batch's loop: inputs into the engine, the model every interval
    // (2 s by default) of trace time, verdicts rendered as JSON.
    let mut engine = Engine::new(Config::default());
    let mut next_ns = None;
    let mut live = BTreeSet::new();
    let mut snapshot = |engine: &Engine, now_ns: u64| {
        let model = engine.model(now_ns);
        let j = serde_json::to_value(batch::json(&model, 2.0, 10)).unwrap();
        live.extend(verdict_set(j["verdicts"].as_array().unwrap()));
    };
    for input in Reader::open(&golden()).unwrap() {
        let input = input.unwrap();
        if let Some(ts) = input.ts_ns() {
            let next = next_ns.get_or_insert(ts + 2_000_000_000);
            while *next < ts {
                snapshot(&engine, *next);
                *next += 2_000_000_000;
            }
        }
        engine.apply(&input);
    }
    snapshot(&engine, engine.now_ns());
    let j = report_json();
    let reported = verdict_set(j["verdicts"].as_array().unwrap());
    assert!(!live.is_empty());
    assert_eq!(reported, live);
}

#[test]
fn golden_report_text_snapshot() {
    let r = summarize(
        Reader::open(&golden()).unwrap(),
        "unpooled_pooled.pwtrace",
        Config::default(),
    );
    let mut out = Vec::new();
    report::write_text(&mut out, &r, 10).unwrap();
    insta::assert_snapshot!(String::from_utf8(out).unwrap());
}
