//! `Engine::model_top` (what `top --batch` builds each frame) gives the
//! full model's first rows and everything else of the full model, while
//! building only the rows it shows.

mod engine_support;

use engine_support::*;
use portwatch::engine::{Config, Engine, Model};
use portwatch::input::Input;

/// A mix with ties everywhere (hundreds of one-connection processes and
/// destinations, as under a flood), a few busy keys, pairs busy enough for
/// a verdict and a listener busy enough for advice; more keys than a small
/// table keeps, so folding is part of it.
fn engine() -> Engine {
    let mut e = Engine::new(Config {
        max_keys: 300,
        ..Config::default()
    });
    let mut inputs: Vec<Input> = vec![host(40000, 40999), cgroup(1, "/system.slice/api.service")];
    let mut x = 1u64;
    let mut rand = |n: u64| {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 33) % n
    };
    // A flood: 1,000 processes, each one connection to a destination of its own.
    for i in 0..1000u32 {
        let start = (2 + u64::from(i) / 45) * S + rand(S);
        let dst = format!("10.1.{}.{}:443", i / 250, i % 250);
        let comm = ["flood", "curl", "wget"][(i % 3) as usize];
        inputs.push(conn(
            task(20_000 + i, comm, 2),
            &dst,
            start,
            2_000_000,
            true,
        ));
    }
    // Busy keys: verdict-worthy unpooled pairs, a slower one, a listener.
    for (pid, dst, per_s) in [
        (100, "10.0.0.1:5432", 20),
        (101, "10.0.0.2:6379", 8),
        (102, "10.0.0.3:80", 2),
    ] {
        inputs.extend(churn(
            task(pid, "api", 1),
            dst,
            1,
            25,
            per_s,
            1_000_000,
            true,
        ));
    }
    for s in 1..25 {
        for k in 0..6 {
            inputs.push(inbound("127.0.0.1:8080", s * S + k * (S / 6), 3_000_000));
        }
        inputs.push(inbound("127.0.0.1:9090", s * S, 3_000_000));
    }
    inputs.sort_by_key(|i| i.ts_ns());
    for i in &inputs {
        e.apply(i);
    }
    e.apply(&tick(25 * S));
    e
}

fn assert_top_of(full: &Model, top: &Model, rows: usize) {
    let n = |len: usize| rows.min(len);
    assert_eq!(top.processes, full.processes[..n(full.processes.len())]);
    assert_eq!(top.services, full.services[..n(full.services.len())]);
    assert_eq!(
        top.pairs[..n(top.pairs.len())],
        full.pairs[..n(full.pairs.len())]
    );
    assert_eq!(
        top.inbound[..n(top.inbound.len())],
        full.inbound[..n(full.inbound.len())]
    );
    assert_eq!(top.destinations, full.destinations);
    assert_eq!(top.verdicts, full.verdicts);
    assert_eq!(top.system, full.system);
    assert_eq!(top.others, full.others);
    assert_eq!(top.namespaces, full.namespaces);
}

#[test]
fn the_first_rows_and_every_total_are_the_full_models() {
    let e = engine();
    let full = e.model(25 * S);
    assert!(full.processes.len() >= 300, "the process table is full");
    assert!(full.others.processes > 0, "keys were folded");
    assert!(!full.verdicts.is_empty(), "a verdict to keep");
    assert!(!full.system.advice.is_empty(), "advice to keep");
    for rows in [0, 1, 2, 10, 299, 300, 5000] {
        assert_top_of(&full, &e.model_top(25 * S, rows), rows);
    }
}

#[test]
fn only_the_rows_shown_are_built_plus_those_verdicts_and_advice_need() {
    let e = engine();
    let top = e.model_top(25 * S, 2);
    assert_eq!(top.processes.len(), 2);
    assert_eq!(top.services.len(), 2);
    // Pairs at or above the verdict's 5/s stay (for the verdicts): the
    // 20/s and 8/s pairs; the 2/s one and the flood's are not built.
    assert_eq!(top.pairs.len(), 2, "{:?}", top.pairs);
    // The listener at 6/s (advice) is one of the 2 busiest anyway.
    assert_eq!(top.inbound.len(), 2);
    let one = e.model_top(25 * S, 1);
    assert_eq!(one.pairs.len(), 2, "the 8/s pair is kept for its verdict");
    assert_eq!(one.inbound.len(), 1, "the 1/s listener is not");
}
