//! Call sites: sampled connect() stacks (`Input::CallStack`) shown on the
//! verdict of their service → destination pair, with their shares.

mod engine_support;

use engine_support::*;
use portwatch::engine::{Config, Engine};
use portwatch::event::Task;
use portwatch::input::{CallStack, Input};

const DST: &str = "10.0.0.1:80";

fn stack(t: Task, dport: u16, ts_ns: u64, frames: &[&str]) -> Input {
    Input::CallStack(CallStack {
        ts_ns,
        task: t,
        netns: 0,
        daddr: "10.0.0.1".parse().unwrap(),
        dport,
        frames: frames.iter().map(|s| s.to_string()).collect(),
        note: None,
    })
}

fn engine_with(inputs: Vec<Input>) -> Engine {
    let mut e = Engine::new(Config::default());
    e.apply(&host(32768, 60999));
    e.apply(&cgroup(5, "/system.slice/api.service"));
    for i in &inputs {
        e.apply(i);
    }
    e
}

#[test]
fn a_flagged_pair_shows_its_sampled_call_sites_by_share() {
    let t = task(42, "api", 5);
    let mut inputs = churn(t, DST, 0, 30, 20, 2 * MS, true);
    for i in 0..6 {
        let frames: &[&str] = if i < 4 {
            &[
                "__libc_connect",
                "fetch_user (users.c:10)",
                "main (main.c:3)",
            ]
        } else {
            &[
                "__libc_connect",
                "fetch_order (orders.c:7)",
                "main (main.c:3)",
            ]
        };
        inputs.push(stack(t, 80, (10 + i) * S, frames));
    }
    let m = engine_with(inputs).model(30 * S);
    assert_eq!(m.verdicts.len(), 1);
    let sites = &m.verdicts[0].call_sites;
    assert_eq!(sites.len(), 2, "{sites:#?}");
    assert_eq!(sites[0].frames[1], "fetch_user (users.c:10)");
    assert_eq!(sites[0].samples, 4);
    assert!((sites[0].share - 4.0 / 6.0).abs() < 1e-9);
    assert_eq!(sites[1].frames[1], "fetch_order (orders.c:7)");
    assert!((sites[1].share - 2.0 / 6.0).abs() < 1e-9);
}

#[test]
fn stacks_of_another_destination_or_service_stay_out() {
    let t = task(42, "api", 5);
    let other = task(43, "batch", 6);
    let mut inputs = churn(t, DST, 0, 30, 20, 2 * MS, true);
    inputs.push(stack(t, 81, 10 * S, &["elsewhere"]));
    inputs.push(stack(other, 80, 10 * S, &["someone_else"]));
    let m = engine_with(inputs).model(30 * S);
    assert_eq!(m.verdicts.len(), 1);
    assert!(
        m.verdicts[0].call_sites.is_empty(),
        "{:?}",
        m.verdicts[0].call_sites
    );
}

#[test]
fn call_sites_appear_in_the_batch_json_only_when_sampled() {
    let t = task(42, "api", 5);
    let mut inputs = churn(t, DST, 0, 30, 20, 2 * MS, true);
    let m = engine_with(inputs.clone()).model(30 * S);
    let j = serde_json::to_value(&m.verdicts[0]).unwrap();
    assert!(j.get("call_sites").is_none(), "{j}");
    inputs.push(stack(t, 80, 10 * S, &["__libc_connect", "fetch_user"]));
    let m = engine_with(inputs).model(30 * S);
    let j = serde_json::to_value(&m.verdicts[0]).unwrap();
    assert_eq!(j["call_sites"][0]["frames"][1], "fetch_user");
    assert_eq!(j["call_sites"][0]["share"], 1.0);
}
