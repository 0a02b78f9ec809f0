//! What one publication of `portwatch exporter` costs beyond `top --batch`:
//! folding a model into the series and rendering both exposition formats.
//! At the cardinality cap (200 services x 50 destinations folded to 1,927
//! series) and on a small node (2 services, 2 destinations).
//! Run: `cargo bench -p portwatch --bench exporter`.

use std::net::{IpAddr, Ipv4Addr};

use criterion::{Criterion, criterion_group, criterion_main};
use portwatch::clock::WallClock;
use portwatch::engine::{Config, Engine, Model};
use portwatch::event::{Comm, ConnClose, Direction, Event, Task};
use portwatch::exporter::{HostExtras, Limits, Series, render};
use portwatch::input::{HostInfo, Input, Sysctls};

const S: u64 = 1_000_000_000;

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

fn conn(pid: u32, comm: &str, daddr: IpAddr, end_ns: u64) -> Input {
    Input::Event(Event::Close(ConnClose {
        start_ns: end_ns - 300_000,
        end_ns,
        handshake_ns: Some(40_000),
        task: Some(Task {
            pid,
            tid: pid,
            comm: Comm::new(comm),
            thread: Comm::new(comm),
            cgroup_id: 0,
        }),
        netns: 1,
        direction: Direction::Outbound,
        saddr: IpAddr::V4(Ipv4Addr::LOCALHOST),
        sport: 40000,
        daddr,
        dport: 443,
        bytes: None,
        local_close: true,
        peer_close: false,
        established: true,
        errno: None,
        syn_retrans: 0,
        bound_port: false,
    }))
}

/// `services` x `dests` pairs, each with connections every second for 5 s.
fn model(services: u32, dests: u32) -> Model {
    let mut e = Engine::new(Config::default());
    e.apply(&host());
    for s in 1..=5u64 {
        for svc in 0..services {
            for d in 0..dests {
                let ip = IpAddr::V4(Ipv4Addr::new(10, 9, (svc & 255) as u8, d as u8));
                let ns = s * S + u64::from(svc * dests + d) * 1000;
                e.apply(&conn(svc + 1, &format!("svc{svc}"), ip, ns));
            }
        }
    }
    e.apply(&Input::Tick { now_ns: 6 * S });
    e.model(6 * S)
}

fn bench(c: &mut Criterion) {
    let extras = HostExtras::default();
    for (name, services, dests) in [("at the cap (1,927 series)", 200, 50), ("small node", 2, 2)] {
        let m = model(services, dests);
        let mut series = Series::new(Limits::default());
        render(&mut series, &m, &extras);
        let (_, text) = render(&mut series, &m, &extras);
        println!("{name}: {} bytes of Prometheus text", text.len());
        if std::env::var_os("PW_SPLIT").is_some() {
            let t = std::time::Instant::now();
            for _ in 0..20 {
                series.observe(&m);
            }
            let observe = t.elapsed() / 20;
            let t = std::time::Instant::now();
            for _ in 0..20 {
                let f = portwatch::exporter::families(&series, &m, &extras);
                portwatch::exporter::encode(f, portwatch::exporter::Format::Prometheus);
            }
            println!(
                "{name}: observe {observe:?}, families + one encoding {:?}",
                t.elapsed() / 20
            );
        }
        c.bench_function(&format!("exporter publication, {name}"), |b| {
            b.iter(|| render(&mut series, &m, &extras))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
