//! Aggregation speed and bounded memory under many distinct keys.
//!
//! Speed is measured by the criterion bench (`cargo bench -p portwatch
//! --bench engine`), not by a timed test.

mod engine_support;

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
