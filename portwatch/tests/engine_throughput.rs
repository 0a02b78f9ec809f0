//! Aggregation speed and bounded memory under many distinct keys.
//!
//! The speed test is `#[ignore]`d (timing is meaningless in debug builds):
//! `cargo test --release -p portwatch --test engine_throughput -- --ignored --nocapture`

mod engine_support;

use std::time::Instant;

use engine_support::*;
use portwatch::engine::{Config, Engine};
use portwatch::input::Input;

fn events(n: u64, pids: u32, dsts: u32) -> Vec<Input> {
    (0..n)
        .map(|i| {
            let t = task(
                1000 + (i as u32 % pids),
                "worker",
                1 + u64::from(i as u32 % 7),
            );
            let d = i as u32 % dsts;
            let dst = format!(
                "10.{}.{}.{}:{}",
                (d >> 16) & 255,
                (d >> 8) & 255,
                d & 255,
                80 + d % 3
            );
            conn(t, &dst, i * 3_000, MS, i % 4 != 0)
        })
        .collect()
}

#[test]
#[ignore = "timing; run in release"]
fn aggregation_rate() {
    let inputs = events(1_000_000, 200, 2_000);
    let mut e = Engine::new(Config::default());
    e.apply(&host(32768, 60999));
    for id in 1..8 {
        e.apply(&cgroup(id, &format!("/system.slice/s{id}.service")));
    }
    let t0 = Instant::now();
    for i in &inputs {
        e.apply(i);
    }
    let apply_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let m = e.model(e.now_ns());
    let model_s = t1.elapsed().as_secs_f64();
    println!(
        "apply: {:.0} events/s ({:.0} ns/event); model with {} pairs, {} destinations: {:.1} ms",
        inputs.len() as f64 / apply_s,
        apply_s * 1e9 / inputs.len() as f64,
        m.pairs.len(),
        m.destinations.len(),
        model_s * 1e3
    );
}

#[test]
fn a_hundred_thousand_destinations_stay_within_the_table_bound() {
    let cfg = Config {
        max_keys: 1000,
        ..Config::default()
    };
    let mut e = Engine::new(cfg);
    e.apply(&host(32768, 60999));
    for i in events(100_000, 50_000, 100_000) {
        e.apply(&i);
    }
    let m = e.model(e.now_ns());
    assert_eq!(m.destinations.len(), 1000);
    assert_eq!(m.processes.len(), 1000);
    assert_eq!(m.pairs.len(), 1000);
    // 100,000 distinct destinations, 1000 tracked: the HyperLogLog
    // estimate of the other 99,000 is within a few percent.
    assert!(
        (94_000..104_000).contains(&m.others.destinations),
        "{}",
        m.others.destinations
    );
    // Tracked keys keep exact counts; system-wide rates include folded ones.
    let tracked: u64 = m.destinations.iter().map(|d| d.stats.new_total).sum();
    assert_eq!(tracked, 1000);
    assert!(m.system.new_per_s_60s > 300.0, "{}", m.system.new_per_s_60s);
}
