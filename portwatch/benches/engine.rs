//! Engine throughput on one core for realistic event mixes (issue: keep up
//! with the kernel's full churn rate). Run: `cargo bench -p portwatch --bench engine`.
//! Figures are printed by criterion as elements (events) per second.

use std::net::{IpAddr, Ipv4Addr};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use portwatch::engine::{Config, Engine};
use portwatch::event::{ConnClose, Event};
use portwatch::input::Input;
use portwatch::tracefile::synthetic::{bare_host, closed_here, main_thread};

const EVENTS: usize = 200_000;
/// 30,000 connections/s, the loopback churn rate of this machine kind.
const GAP_NS: u64 = 1_000_000_000 / 30_000;

/// A stream in time order with a tick every 10 ms, like the live drain.
fn stream(
    mut dest: impl FnMut(usize) -> (IpAddr, u16),
    mut pid: impl FnMut(usize) -> u32,
) -> Vec<Input> {
    let mut v = Vec::with_capacity(EVENTS + EVENTS / 300 + 1);
    v.push(bare_host());
    let mut next_tick = 10_000_000;
    for i in 0..EVENTS {
        let end_ns = 1_000_000_000 + i as u64 * GAP_NS;
        if end_ns >= next_tick {
            v.push(Input::Tick { now_ns: end_ns });
            next_tick = end_ns + 10_000_000;
        }
        let task = main_thread(pid(i), "client", 1);
        v.push(Input::Event(Event::Close(ConnClose {
            handshake_ns: Some(40_000),
            sport: 40000 + (i % 20000) as u16,
            bytes: Some((4, 4)),
            ..closed_here(Some(task), 1, dest(i), end_ns - 300_000, end_ns)
        })));
    }
    v
}

fn bench(c: &mut Criterion) {
    let hot = stream(
        |_| (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 5432),
        |i| 1000 + (i % 10) as u32,
    );
    let many = stream(
        |i| {
            let n = (i % 100_000) as u32;
            (IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | n)), 443)
        },
        |i| 1000 + (i % 10) as u32,
    );
    let pids = stream(
        |_| (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 80),
        |i| 10_000 + i as u32,
    );
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(EVENTS as u64));
    g.sample_size(10);
    for (name, inputs) in [
        ("one_hot_destination", &hot),
        ("100k_destinations", &many),
        ("short_lived_pids", &pids),
    ] {
        g.bench_function(name, |b| {
            b.iter_batched(
                || Engine::new(Config::default()),
                |mut e| {
                    for i in inputs.iter() {
                        e.apply(i);
                    }
                    e
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
