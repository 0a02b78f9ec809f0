//! Trace writer and reader throughput (events per second, one core) on a
//! realistic synthetic stream: one hot destination, ten processes, ticks.
//! Run: `cargo bench -p portwatch --bench tracefile`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use portwatch::tracefile::{Compression, Reader, Writer, synthetic};

const EVENTS: usize = 200_000;

fn write_all(inputs: &[portwatch::input::Input], c: Compression) -> Vec<u8> {
    let mut w = Writer::new(Vec::new()).expect("writer");
    w.set_compression(c).expect("compression");
    for i in inputs {
        w.append(i).expect("append");
    }
    w.finish().expect("finish")
}

fn bench(c: &mut Criterion) {
    let inputs = synthetic::churn(EVENTS, 30_000);
    let mut g = c.benchmark_group("tracefile");
    g.throughput(Throughput::Elements(EVENTS as u64));
    g.sample_size(10);
    for (name, comp) in [
        ("plain", Compression::None),
        ("zstd1", Compression::Zstd(1)),
    ] {
        let bytes = write_all(&inputs, comp);
        println!(
            "tracefile/{name}: {:.1} bytes per input",
            bytes.len() as f64 / inputs.len() as f64
        );
        g.bench_function(format!("write_{name}"), |b| {
            b.iter(|| write_all(&inputs, comp))
        });
        g.bench_function(format!("read_{name}"), |b| {
            b.iter(|| {
                for i in Reader::new(bytes.as_slice()).expect("reader") {
                    std::hint::black_box(i.expect("input"));
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
