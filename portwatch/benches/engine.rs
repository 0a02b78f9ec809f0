//! Engine throughput on one core for realistic event mixes (issue: keep up
//! with the kernel's full churn rate). Run: `cargo bench -p portwatch --bench engine`.
//! Figures are printed by criterion as elements (events) per second.

use std::net::{IpAddr, Ipv4Addr};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use portwatch::clock::WallClock;
use portwatch::engine::{Config, Engine};
use portwatch::event::{Comm, ConnClose, Direction, Event, Task};
use portwatch::input::{HostInfo, Input, Sysctls};

const EVENTS: usize = 200_000;
/// 30,000 connections/s, the loopback churn rate of this machine kind.
const GAP_NS: u64 = 1_000_000_000 / 30_000;

fn host() -> Input {
    Input::Host(HostInfo {
        hostname: "bench".into(),
        kernel: "6.18".into(),
        clock: WallClock {
            mono_ns: 0,
            unix_ns: 1_700_000_000_000_000_000,
        },
        netns: 1,
        sysctls: Sysctls {
            port_range: (32768, 60999),
            ..Sysctls::default()
        },
    })
}

/// A stream in time order with a tick every 10 ms, like the live drain.
fn stream(
    mut dest: impl FnMut(usize) -> (IpAddr, u16),
    mut pid: impl FnMut(usize) -> u32,
) -> Vec<Input> {
    let mut v = Vec::with_capacity(EVENTS + EVENTS / 300 + 1);
    v.push(host());
    let mut next_tick = 10_000_000;
    for i in 0..EVENTS {
        let end_ns = 1_000_000_000 + i as u64 * GAP_NS;
        if end_ns >= next_tick {
            v.push(Input::Tick { now_ns: end_ns });
            next_tick = end_ns + 10_000_000;
        }
        let (daddr, dport) = dest(i);
        let p = pid(i);
        v.push(Input::Event(Event::Close(ConnClose {
            start_ns: end_ns - 300_000,
            end_ns,
            handshake_ns: Some(40_000),
            task: Some(Task {
                pid: p,
                tid: p,
                comm: Comm::new("client"),
                thread: Comm::new("client"),
                cgroup_id: 1,
            }),
            netns: 1,
            direction: Direction::Outbound,
            saddr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            sport: 40000 + (i % 20000) as u16,
            daddr,
            dport,
            bytes: Some((4, 4)),
            local_close: true,
            peer_close: false,
            established: true,
            errno: None,
            syn_retrans: 0,
            bound_port: false,
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
