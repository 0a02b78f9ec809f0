//! Kernel test (root): with tcp_tw_reuse=1, connect() takes over TIME_WAIT
//! ports, so a 100-port range serves 20 connections/s (1,200 TIME_WAIT a
//! minute without reuse): portwatch never shows a pair or a destination
//! with more TIME_WAIT than the range holds, and never calls the range
//! exhausted while every connect succeeds.
//!
//! In a private network namespace (loopback only, range 40000-40099,
//! tcp_tw_reuse=1), a client closes first (so TIME_WAIT lands on it) 20
//! times a second for 12 s: 240 connections, more than twice the range.
//!
//! And tcp_max_tw_buckets: with 50 buckets the kernel keeps at most 50
//! TIME_WAIT sockets (the others close at once, counted as
//! TCPTimeWaitOverflow): portwatch shows no more than 50.

use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::{
    Netns, Tracer, kernel_tests_enabled, send_a_byte_and_close_first, start_draining_server,
    top_batch_json_args,
};

const RANGE: u64 = 100;
const CONNECTIONS: usize = 240;

/// 20 connections/s; returns how many connects failed.
fn client(addr: SocketAddr, n: usize) -> usize {
    let start = Instant::now();
    let mut failed = 0;
    for i in 0..n {
        let due = start + Duration::from_millis(50 * i as u64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        if send_a_byte_and_close_first(addr).is_err() {
            failed += 1;
        }
    }
    failed
}

/// A server on 127.0.0.1:`port` in `ns` and, started after it, `top
/// --batch --json` (50 rows, socket tables re-read every second) watching
/// `ns` from the host's namespace.
fn server_on_and_top_watching(ns: &Netns, port: u16) -> (SocketAddr, Tracer) {
    // A fixed port outside the range: port 0 would take one of its ports.
    let addr = ns.run(move || start_draining_server(("127.0.0.1", port), false));
    let netns = ns.inode.to_string();
    let top = Tracer::start(&top_batch_json_args(&[
        "--rows", "50", "--resync", "1", "--netns", &netns,
    ]));
    (addr, top)
}

/// Waits until `top`'s latest snapshot counts all `n` connections of the
/// pair to :`port` in `netns` (20 s at most; it must get there), stops
/// `top` (it must exit successfully) and returns every snapshot it printed.
fn snapshots_until_all_seen(mut top: Tracer, netns: u32, port: u16, n: usize) -> Vec<Value> {
    let all_seen = top.wait_for(Duration::from_secs(20), |snaps| {
        snaps.last().is_some_and(|s| {
            of_ns(s, "pairs", netns)
                .iter()
                .any(|p| p["dport"] == port && p["new_total"] == n as u64)
        })
    });
    let (_, snaps) = top.stop_successfully("top");
    assert!(all_seen, "not every connection was seen");
    snaps
}

fn of_ns<'a>(snap: &'a Value, table: &str, netns: u32) -> Vec<&'a Value> {
    snap[table]
        .as_array()
        .map(|a| a.iter().filter(|r| r["netns"] == netns).collect())
        .unwrap_or_default()
}

#[test]
fn tw_reuse_keeps_every_count_within_the_range_and_nothing_is_called_exhausted() {
    if !kernel_tests_enabled() {
        return;
    }
    let ns = Netns::new(
        "pwt-twreuse",
        &[
            ("ipv4/ip_local_port_range", "40000 40099"),
            ("ipv4/tcp_tw_reuse", "1"),
            ("ipv4/tcp_timestamps", "1"),
        ],
    );
    let netns = ns.inode;
    let (addr, top) = server_on_and_top_watching(&ns, 7613);
    let failed = ns.run(move || client(addr, CONNECTIONS));
    assert_eq!(failed, 0, "tcp_tw_reuse should let every connect succeed");
    // Until a frame has seen every connection.
    let snaps = snapshots_until_all_seen(top, netns, addr.port(), CONNECTIONS);
    assert!(snaps.len() >= 10, "{} snapshots", snaps.len());

    let mut peak_pair_tw = 0;
    let mut recycled = false;
    for s in &snaps {
        for p in of_ns(s, "pairs", netns) {
            let tw = p["time_wait"].as_u64().expect("time_wait");
            peak_pair_tw = peak_pair_tw.max(tw);
            assert!(tw <= RANGE, "pair above the range: {p}");
        }
        for d in of_ns(s, "destinations", netns) {
            assert!(d["time_wait"].as_u64().is_some_and(|t| t <= RANGE), "{d}");
            assert!(d["held_ports"].as_u64().is_some_and(|t| t <= RANGE), "{d}");
            assert!(
                d["exhaustion_in_s"].as_f64().is_none_or(|t| t > 0.0),
                "called exhausted: {d}"
            );
            assert!(d["pressure"].as_f64().is_some_and(|p| p < 0.8), "{d}");
        }
        for a in s["system"]["advice"].as_array().expect("advice") {
            assert!(
                !(a["netns"] == netns && a["key"] == "ports_nearly_exhausted"),
                "false exhaustion advice: {a}"
            );
        }
        for v in of_ns(s, "verdicts", netns) {
            assert!(
                !v["evidence"].as_str().unwrap_or("").contains("exhausted"),
                "{v}"
            );
        }
        recycled |= of_ns(s, "namespaces", netns)
            .iter()
            .any(|n| n["tw_recycled_per_s"].as_f64().is_some_and(|r| r > 0.0));
    }
    assert!(recycled, "the kernel never recycled a TIME_WAIT port");
    // Every close was seen: counted from closes alone, TIME_WAIT would be
    // more than twice the range.
    let last = snaps.last().expect("a snapshot");
    let pair = of_ns(last, "pairs", netns)
        .into_iter()
        .find(|p| p["dport"] == addr.port())
        .unwrap_or_else(|| panic!("no pair in {last}"));
    assert_eq!(pair["new_total"], CONNECTIONS as u64, "{pair}");
    assert!(peak_pair_tw > 0 && peak_pair_tw <= RANGE, "{peak_pair_tw}");
    eprintln!("peak pair TIME_WAIT {peak_pair_tw} for {CONNECTIONS} local closes");
    assert_eq!(last["system"]["lost_events"], 0);
}

#[test]
fn tw_buckets_overflow_keeps_time_wait_at_the_bucket_limit() {
    if !kernel_tests_enabled() {
        return;
    }
    const BUCKETS: u64 = 50;
    const N: usize = 160;
    let ns = Netns::new(
        "pwt-twbuckets",
        &[
            ("ipv4/tcp_max_tw_buckets", "50"),
            ("ipv4/tcp_tw_reuse", "0"),
        ],
    );
    let netns = ns.inode;
    let (addr, top) = server_on_and_top_watching(&ns, 7614);
    let failed = ns.run(move || client(addr, N));
    assert_eq!(failed, 0);
    let snaps = snapshots_until_all_seen(top, netns, addr.port(), N);
    let mut overflow = false;
    let mut peak = 0;
    for s in &snaps {
        for r in of_ns(s, "pairs", netns)
            .into_iter()
            .chain(of_ns(s, "destinations", netns))
        {
            let tw = r["time_wait"].as_u64().expect("time_wait");
            peak = peak.max(tw);
            assert!(tw <= BUCKETS, "above tcp_max_tw_buckets: {r}");
        }
        overflow |= of_ns(s, "namespaces", netns)
            .iter()
            .any(|n| n["tw_overflow_per_s"].as_f64().is_some_and(|r| r > 0.0));
    }
    assert!(
        overflow,
        "the kernel never overflowed its TIME_WAIT buckets"
    );
    eprintln!("peak TIME_WAIT {peak} for {N} local closes, {BUCKETS} buckets");
    assert!(peak > 0);
    assert_eq!(
        snaps.last().expect("a snapshot")["system"]["lost_events"],
        0
    );
}
