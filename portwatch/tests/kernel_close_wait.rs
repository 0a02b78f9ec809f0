//! Kernel test (root): a client that never closes the connections its
//! server closed leaks sockets in CLOSE_WAIT, holds every port of a
//! 10-port range, and its next connects fail with EADDRNOTAVAIL: portwatch
//! names the client's pid with `leaks_sockets`, counts the held ports, and
//! points the failures at it.
//!
//! In a private network namespace (loopback only, range 40000-40009), a
//! server accepts and closes at once; a Python client opens 14
//! connections and keeps every socket open after the server's FIN (10
//! succeed, 4 fail for want of a port). portwatch sees no close event for
//! the leaked sockets: only the socket table (every state that holds a
//! port) and the owner lookup (/proc/PID/fd) can tell. `trace --json`
//! shows the client's four failures, and no close.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;

use serde_json::Value;

mod common;
use common::{Netns, Tracer, kernel_tests_enabled, of, top_batch_json_args};

const ATTEMPTS: usize = 14;
const RANGE: u64 = 10;

/// Accepts and closes at once (the client's sockets go to CLOSE_WAIT).
/// A fixed port outside the range: port 0 would take one of its ten.
fn closing_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:7611").expect("bind");
    let addr = l.local_addr().expect("addr");
    thread::spawn(move || {
        for s in l.incoming() {
            drop(s);
        }
    });
    addr
}

/// Connects `ATTEMPTS` times and keeps every socket; prints one line per
/// attempt ("ok" or the errno), then "held" and waits for stdin to close.
const CLIENT: &str = r#"
import socket, sys
port = int(sys.argv[1])
kept = []
for _ in range(int(sys.argv[2])):
    s = socket.socket()
    try:
        s.connect(("127.0.0.1", port))
        kept.append(s)
        print("ok", flush=True)
    except OSError as e:
        print("errno", e.errno, flush=True)
print("held", len(kept), flush=True)
sys.stdin.read()
"#;

/// The client, started inside the namespace (a child of its thread).
fn leaking_client(port: u16) -> Child {
    Command::new("/usr/bin/python3")
        .args(["-c", CLIENT, &port.to_string(), &ATTEMPTS.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn python3")
}

fn verdict(snap: &Value, netns: u32) -> Option<&Value> {
    snap["verdicts"]
        .as_array()?
        .iter()
        .find(|v| v["verdict"] == "leaks_sockets" && v["netns"] == netns)
}

#[test]
fn a_close_wait_leak_is_named_with_its_held_ports_and_its_failures() {
    if !kernel_tests_enabled() {
        return;
    }
    let ns = Netns::new(
        "pwt-closewait",
        &[("ipv4/ip_local_port_range", "40000 40009")],
    );
    let netns = ns.inode;
    let server = ns.run(closing_server);
    let mut top = Tracer::start(&top_batch_json_args(&[
        "--rows",
        "50",
        "--resync",
        "1",
        "--netns",
        &netns.to_string(),
    ]));
    let mut trace = Tracer::start(&["trace", "--json", "--netns", &netns.to_string()]);
    let port = server.port();
    let mut client = ns.run(move || leaking_client(port));
    let pid = client.id();
    let mut out = BufReader::new(client.stdout.take().expect("stdout"));
    let mut lines = Vec::new();
    loop {
        let mut l = String::new();
        if out.read_line(&mut l).expect("client output") == 0 {
            break;
        }
        let done = l.starts_with("held");
        lines.push(l.trim().to_string());
        if done {
            break;
        }
    }
    let ok = lines.iter().filter(|l| *l == "ok").count();
    let failed = lines.iter().filter(|l| *l == "errno 99").count();
    assert_eq!(
        (ok, failed),
        (RANGE as usize, ATTEMPTS - RANGE as usize),
        "{lines:?}"
    );

    // trace: the four failures, the client's, for want of a port; no close
    // (the leaked sockets never close).
    let failures_of = |seen: &[Value]| -> Vec<Value> {
        of(seen, "connect_error", netns)
            .filter(|v| v["dport"] == port)
            .cloned()
            .collect()
    };
    trace.wait_for(Duration::from_secs(10), |seen| {
        failures_of(seen).len() >= ATTEMPTS - RANGE as usize
    });
    let seen = trace.stop_without_loss("trace");
    let f = failures_of(&seen);
    assert_eq!(f.len(), ATTEMPTS - RANGE as usize, "{f:#?}");
    for v in &f {
        assert_eq!(v["pid"], pid, "{v}");
        assert_eq!(v["errno"], "EADDRNOTAVAIL", "{v}");
        assert_eq!(v["cause"], "port_exhaustion", "{v}");
    }
    assert_eq!(
        of(&seen, "close", netns)
            .filter(|v| v["direction"] == "out")
            .count(),
        0,
        "a leaked socket never closes"
    );

    // The verdict needs the sockets held for 10 s (its minimum age).
    let found = top.wait_for(Duration::from_secs(45), |snaps| {
        snaps.last().and_then(|s| verdict(s, netns)).is_some()
    });
    let (ok_exit, stderr, snaps) = top.stop();
    drop(client.stdin.take());
    let _ = client.wait();
    assert!(found, "no leaks_sockets verdict; last: {:#?}", snaps.last());
    assert!(ok_exit, "top failed: {stderr:?}");
    let last = snaps.last().expect("a snapshot");
    let v = verdict(last, netns).expect("verdict");
    assert_eq!(v["service"]["pids"], serde_json::json!([pid]), "{v}");
    assert_eq!(v["daddr"], "127.0.0.1", "{v}");
    assert_eq!(v["dport"], port, "{v}");
    assert_eq!(v["close_wait"], RANGE, "{v}");
    assert_eq!(v["held_ports"], RANGE, "{v}");
    assert_eq!(v["failures_caused"], (ATTEMPTS as u64 - RANGE), "{v}");
    assert!(v["held_for_s"].as_f64().is_some_and(|s| s >= 10.0), "{v}");
    assert!(
        v["evidence"]
            .as_str()
            .is_some_and(|e| e.contains("CLOSE_WAIT") && e.contains("EADDRNOTAVAIL")),
        "{v}"
    );

    // The destination: its ports held, by the client, and the failures
    // (their row has no local address: no connection was seen closing)
    // point at it.
    let rows: Vec<&Value> = last["destinations"]
        .as_array()
        .expect("destinations")
        .iter()
        .filter(|d| d["netns"] == netns && d["dport"] == port)
        .collect();
    let held: u64 = rows.iter().filter_map(|d| d["held_ports"].as_u64()).sum();
    assert_eq!(held, RANGE, "{rows:#?}");
    let cw: u64 = rows.iter().filter_map(|d| d["close_wait"].as_u64()).sum();
    assert_eq!(cw, RANGE, "{rows:#?}");
    let failures: u64 = rows
        .iter()
        .filter_map(|d| d["connect_errors"].as_u64())
        .sum();
    assert_eq!(failures, ATTEMPTS as u64 - RANGE, "{rows:#?}");
    for d in &rows {
        assert_eq!(d["held_by"]["pid"], pid, "{d}");
        assert_eq!(d["held_by"]["leaks_sockets"], true, "{d}");
    }
    assert!(
        last["system"]["advice"]
            .as_array()
            .expect("advice")
            .iter()
            .any(|a| a["key"] == "leaks_sockets" && a["netns"] == netns),
        "{}",
        last["system"]["advice"]
    );
    assert_eq!(
        last["system"]["close_wait_unattributed"], 0,
        "{}",
        last["system"]
    );
    assert_eq!(last["system"]["lost_events"], 0);
}
