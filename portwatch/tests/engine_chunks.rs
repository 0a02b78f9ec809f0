//! Property: the model does not depend on how the stream is chunked. Feeding
//! a stream in one piece, or in arbitrary chunks with a Tick between chunks
//! (carrying the latest time seen so far, as the live loop's ticks do),
//! gives the same model.

mod engine_support;

use engine_support::*;
use portwatch::engine::{Config, Engine};
use portwatch::input::Input;
use proptest::prelude::*;

/// (start offset ms, pid index, destination index, lifetime ms, kind)
type Spec = (u64, u8, u8, u64, u8);

fn build(specs: &[Spec]) -> Vec<Input> {
    let mut v = vec![
        host(40000, 40999),
        cgroup(1, "/system.slice/a.service"),
        cgroup(2, "/"),
    ];
    let mut t_ms = 0u64;
    let mut events = Vec::new();
    for &(gap_ms, pid, dst, life_ms, kind) in specs {
        t_ms += gap_ms;
        let tk = task(
            100 + u32::from(pid % 6),
            ["a", "curl"][usize::from(pid % 2)],
            1 + u64::from(pid % 2),
        );
        let d = format!("10.0.0.{}:{}", dst % 3, 80 + u16::from(dst % 2));
        let start = t_ms * MS;
        events.push(match kind % 5 {
            0 => inbound("10.0.0.9:8080", start, life_ms * MS),
            1 => connect_error(tk, &d, start, if dst % 2 == 0 { 99 } else { 111 }),
            2 => conn(tk, &d, start, life_ms * MS, false),
            _ => conn(tk, &d, start, life_ms * MS, true),
        });
    }
    // Events are reported at close: order them by that, as the ring buffer
    // roughly does.
    events.sort_by_key(|i| i.ts_ns());
    v.extend(events);
    v
}

fn small_config() -> Config {
    // Small tables so folding and ageing are exercised too.
    Config {
        max_keys: 8,
        idle_timeout_s: 60,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn chunking_with_ticks_does_not_change_the_model(
        specs in prop::collection::vec((0u64..400, 0u8..12, 0u8..6, 0u64..3000, 0u8..5), 1..300),
        cuts in prop::collection::vec(0usize..300, 0..20),
    ) {
        let stream = build(&specs);
        let mut whole = Engine::new(small_config());
        for i in &stream {
            whole.apply(i);
        }

        let mut chunked = Engine::new(small_config());
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % stream.len()).collect();
        cuts.sort_unstable();
        let mut latest = 0u64;
        for (idx, input) in stream.iter().enumerate() {
            if cuts.binary_search(&idx).is_ok() {
                chunked.apply(&Input::Tick { now_ns: latest });
            }
            chunked.apply(input);
            latest = latest.max(input.ts_ns().unwrap_or(0));
        }
        chunked.apply(&Input::Tick { now_ns: latest });

        let end = latest + 1_500 * MS;
        prop_assert_eq!(whole.model(end), chunked.model(end));
    }
}
