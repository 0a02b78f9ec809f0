//! Kernel test (root): `portwatch record` during a live scenario in a
//! private network namespace (an unpooled client at ~50 connections/s, a
//! pooled client on one connection), then `portwatch report` on the file
//! flags the unpooled client and not the pooled one. Under CI=true it
//! fails when not root; elsewhere it prints a notice and returns.
//!
//! The same scenario made the golden trace under tests/data/golden/ (see
//! `regenerate_golden_trace`, run by hand: `cargo test --test kernel_report
//! -- --ignored`).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::{Netns, Tracer, client_exchange, kernel_tests_enabled, start_server};
use portwatch::event::Event;
use portwatch::input::Input;
use portwatch::tracefile::{Compression, Reader, Writer};

/// Fixed ports (below the ephemeral range; the namespace is private), so
/// the golden trace's verdict can be asserted exactly.
const UNPOOLED_PORT: u16 = 17101;
const POOLED_PORT: u16 = 17102;
const PER_S: u64 = 50;

/// Runs both clients in `ns` for `secs`: one connection per request to
/// the unpooled server, one connection for all requests to the pooled one.
/// Returns the unpooled connections made.
fn scenario(ns: &Netns, secs: u64) -> usize {
    let (unpooled, pooled) = ns.run(|| {
        (
            start_server(&format!("127.0.0.1:{UNPOOLED_PORT}")),
            start_server(&format!("127.0.0.1:{POOLED_PORT}")),
        )
    });
    let run = Duration::from_secs(secs);
    ns.run(move || {
        // Threads spawned here share the namespace.
        let pool = thread::Builder::new()
            .name("pw-pooled".into())
            .spawn(move || pooled_client(pooled, run))
            .expect("spawn pooled client");
        let n = unpooled_client(unpooled, run);
        pool.join().expect("pooled client");
        n
    })
}

fn unpooled_client(addr: SocketAddr, run: Duration) -> usize {
    let start = Instant::now();
    let period = Duration::from_nanos(1_000_000_000 / PER_S);
    let mut n = 0;
    while start.elapsed() < run {
        client_exchange(addr, 1);
        n += 1;
        // Paced on the start, so slow exchanges do not lower the rate.
        let next = period * n as u32;
        if let Some(wait) = next.checked_sub(start.elapsed()) {
            thread::sleep(wait);
        }
    }
    n
}

fn pooled_client(addr: SocketAddr, run: Duration) {
    let mut s = TcpStream::connect(addr).expect("connect pooled");
    let start = Instant::now();
    let mut buf = [0u8; 4];
    while start.elapsed() < run {
        s.write_all(b"ping").expect("send");
        s.read_exact(&mut buf).expect("recv");
        thread::sleep(Duration::from_millis(20));
    }
}

/// `portwatch record` around the scenario; returns the unpooled count and
/// the scenario's namespace.
fn record(path: &Path, secs: u64) -> (usize, u32) {
    let ns = Netns::new("pw-report", &[]);
    let rec = Tracer::start(&[
        "record",
        "-o",
        path.to_str().expect("utf-8 path"),
        "--force",
        "--duration",
        "120",
    ]);
    let n = scenario(&ns, secs);
    // The last closes reach the ring buffer, then the next flush.
    thread::sleep(Duration::from_millis(1500));
    rec.stop_without_loss("portwatch record");
    (n, ns.inode)
}

fn report_json(path: &Path, args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_portwatch"))
        .args(["report", "--json"])
        .args(args)
        .arg(path)
        .output()
        .expect("run portwatch report");
    assert!(
        out.status.success(),
        "report failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("report JSON")
}

fn flagged_ports(report: &serde_json::Value) -> Vec<u64> {
    report["verdicts"]
        .as_array()
        .expect("verdicts")
        .iter()
        .filter(|v| v["daddr"] == "127.0.0.1")
        .map(|v| v["dport"].as_u64().expect("dport"))
        .collect()
}

#[test]
fn report_flags_the_unpooled_client_of_a_recorded_scenario() {
    if !kernel_tests_enabled() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.pwtrace");
    let (n, netns) = record(&path, 10);
    assert!(n >= 300, "only {n} unpooled connections made");
    // Other traffic on the host is in the file too (tracepoints are
    // global): the report keeps the scenario's namespace only.
    let report = report_json(&path, &["--netns", &format!("netns:{netns}")]);
    for d in report["destinations"].as_array().expect("destinations") {
        assert_eq!(d["netns"], netns, "{d}");
    }
    assert_eq!(
        flagged_ports(&report),
        [u64::from(UNPOOLED_PORT)],
        "{report:#}"
    );
    let v = report["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["dport"] == UNPOOLED_PORT)
        .unwrap();
    assert_eq!(v["verdict"], "lacks_pooling");
    let rate = v["new_per_sec"].as_f64().unwrap();
    // At its peak (the client makes ~50/s).
    assert!(rate >= 30.0, "rate {rate}: {v:#}");
    assert!(v["closed_locally_share"].as_f64().unwrap() > 0.9, "{v:#}");
    assert_eq!(report["complete"], true);
}

/// Records the golden trace again (by hand, as root): the scenario for
/// 15 s, keeping only this namespace's events so that other traffic on the
/// machine does not end up in a file that tests assert on.
#[test]
#[ignore = "writes tests/data/golden/; run by hand as root"]
fn regenerate_golden_trace() {
    assert!(kernel_tests_enabled(), "needs root");
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw.pwtrace");
    let ns = Netns::new("pw-golden", &[]);
    let rec = Tracer::start(&[
        "record",
        "-o",
        raw.to_str().unwrap(),
        "--force",
        "--duration",
        "120",
    ]);
    scenario(&ns, 15);
    thread::sleep(Duration::from_millis(1500));
    rec.stop_without_loss("portwatch record");

    let out =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/golden/unpooled_pooled.pwtrace");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let mut w = Writer::new(Vec::new()).unwrap();
    w.set_compression(Compression::Zstd(19)).unwrap();
    let mut reader = Reader::open(&raw).unwrap();
    for input in reader.by_ref() {
        let input = input.expect("reading the raw trace");
        let keep = match &input {
            Input::Event(Event::Close(c)) => c.netns == ns.inode,
            Input::Event(Event::ConnectError(e)) => e.netns == ns.inode,
            _ => true,
        };
        if keep {
            w.append(&input).unwrap();
        }
        // A frame per second, like `record` writes.
        if matches!(input, Input::Tick { .. }) {
            w.flush().unwrap();
        }
    }
    assert!(reader.warnings().is_empty(), "{:?}", reader.warnings());
    std::fs::write(&out, w.finish().unwrap()).unwrap();
    eprintln!("wrote {}", out.display());
}
