//! What one publication of `portwatch exporter` costs beyond `top --batch`:
//! folding a model into the series and rendering both exposition formats.
//! At the cardinality cap (200 services x 50 destinations folded to 1,927
//! series) and on a small node (2 services, 2 destinations).
//! Run: `cargo bench -p portwatch --bench exporter`.

use std::net::{IpAddr, Ipv4Addr};

use criterion::{Criterion, criterion_group, criterion_main};
use portwatch::engine::{Config, Engine, Model};
use portwatch::event::{ConnClose, Event};
use portwatch::exporter::{HostExtras, Limits, Series, render};
use portwatch::input::Input;
use portwatch::tracefile::synthetic::{bare_host, closed_here, main_thread};

const S: u64 = 1_000_000_000;

/// `services` x `dests` pairs, each with connections every second for 5 s.
fn model(services: u32, dests: u32) -> Model {
    let mut e = Engine::new(Config::default());
    e.apply(&bare_host());
    for s in 1..=5u64 {
        for svc in 0..services {
            for d in 0..dests {
                let ip = IpAddr::V4(Ipv4Addr::new(10, 9, (svc & 255) as u8, d as u8));
                let ns = s * S + u64::from(svc * dests + d) * 1000;
                let task = main_thread(svc + 1, &format!("svc{svc}"), 0);
                let close = ConnClose {
                    handshake_ns: Some(40_000),
                    ..closed_here(Some(task), 1, (ip, 443), ns - 300_000, ns)
                };
                e.apply(&Input::Event(Event::Close(close)));
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
