//! Kernel test (root): `portwatch top --batch --json` in a private network
//! namespace flags exactly the unpooled client, and a tiny port range shows
//! EADDRNOTAVAIL and a full budget for that destination.
//!
//! Each test runs its traffic in a network namespace of its own, made by a
//! dedicated thread with unshare(CLONE_NEWNET); threads and children spawned
//! from it (servers, clients, portwatch) live in that namespace, and
//! portwatch is told to keep only events from it (--netns), because the
//! tracepoints are global. Loopback only; bounded in connections and time.
//! In CI (CI=true) these tests fail when they cannot run; elsewhere they
//! print a notice and return.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::{Netns, kernel_tests_enabled, top_batch_json, top_batch_snapshots as snapshots};

/// Hard bound on one test's traffic.
const MAX_RUN: Duration = Duration::from_secs(25);
const MAX_CONNECTS: usize = 2_000;

/// Runs `f` on a thread in a fresh network namespace with `lo` up,
/// giving it the namespace's inode.
fn in_netns<T: Send + 'static>(f: impl FnOnce(u32) -> T + Send + 'static) -> T {
    let ns = Netns::new("pwt-topbatch", &[]);
    let inode = ns.inode;
    ns.run(move || f(inode))
}

/// Writes a sysctl of the calling thread's network namespace.
fn sysctl(name: &str, value: &str) {
    let path = format!("/proc/sys/net/ipv4/{name}");
    std::fs::write(&path, value).unwrap_or_else(|e| panic!("writing {path}: {e}"));
}

/// Echo server: answers each byte, closes after the client does (so the
/// client closes first and holds the TIME_WAIT).
fn server(stop: Arc<AtomicBool>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("local addr").port();
    l.set_nonblocking(true).expect("nonblocking");
    thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((mut s, _)) => {
                    s.set_nonblocking(false).ok();
                    thread::spawn(move || {
                        let mut b = [0u8; 64];
                        while let Ok(n) = s.read(&mut b) {
                            if n == 0 || s.write_all(&b[..n]).is_err() {
                                break;
                            }
                        }
                    });
                }
                Err(_) => thread::sleep(Duration::from_millis(2)),
            }
        }
    });
    port
}

/// One request per connection, ~`per_s` connections/s, errors ignored.
fn unpooled(port: u16, per_s: u64, stop: Arc<AtomicBool>) -> thread::JoinHandle<usize> {
    thread::Builder::new()
        .name("unpooled".into())
        .spawn(move || {
            let start = Instant::now();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && start.elapsed() < MAX_RUN && n < MAX_CONNECTS {
                n += 1;
                if let Ok(mut c) = TcpStream::connect(("127.0.0.1", port)) {
                    let mut b = [0u8; 1];
                    if c.write_all(b"x").is_ok() {
                        let _ = c.read(&mut b);
                    }
                    let _ = c.shutdown(Shutdown::Both);
                }
                thread::sleep(Duration::from_millis(1000 / per_s));
            }
            n
        })
        .expect("spawn")
}

/// Many requests over one long-lived connection.
fn pooled(port: u16, stop: Arc<AtomicBool>) -> thread::JoinHandle<usize> {
    thread::Builder::new()
        .name("pooled".into())
        .spawn(move || {
            let start = Instant::now();
            let mut c = TcpStream::connect(("127.0.0.1", port)).expect("pooled connect");
            let mut n = 0;
            let mut b = [0u8; 1];
            while !stop.load(Ordering::Relaxed) && start.elapsed() < MAX_RUN {
                c.write_all(b"x").expect("pooled write");
                c.read_exact(&mut b).expect("pooled read");
                n += 1;
                thread::sleep(Duration::from_millis(2));
            }
            n
        })
        .expect("spawn")
}

/// Starts `portwatch top --batch --json` in the calling thread's namespace
/// and waits until it is tracing.
fn portwatch(netns: u32, iterations: u32) -> (std::process::Child, mpsc::Receiver<Value>) {
    top_batch_json(
        50,
        &[
            "--iterations",
            &iterations.to_string(),
            "--netns",
            &netns.to_string(),
        ],
    )
}

#[test]
fn top_batch_flags_exactly_the_unpooled_client() {
    if !kernel_tests_enabled() {
        return;
    }
    let (snaps, churn_port, pool_port) = in_netns(|netns| {
        let stop = Arc::new(AtomicBool::new(false));
        let churn_port = server(stop.clone());
        let pool_port = server(stop.clone());
        let (child, rx) = portwatch(netns, 9);
        let a = unpooled(churn_port, 50, stop.clone());
        let b = pooled(pool_port, stop.clone());
        let snaps = snapshots(child, rx);
        stop.store(true, Ordering::Relaxed);
        let (na, nb) = (a.join().expect("unpooled"), b.join().expect("pooled"));
        eprintln!("unpooled connections: {na}, pooled requests: {nb}");
        (snaps, churn_port, pool_port)
    });
    assert_eq!(snaps.len(), 9);
    let last = snaps.last().expect("a snapshot");
    let verdicts = last["verdicts"].as_array().expect("verdicts");
    assert_eq!(verdicts.len(), 1, "{verdicts:#?}");
    let v = &verdicts[0];
    assert_eq!(v["verdict"], "lacks_pooling");
    assert_eq!(v["daddr"], "127.0.0.1");
    assert_eq!(v["dport"], churn_port);
    let pid = std::process::id();
    assert!(
        v["service"]["pids"]
            .as_array()
            .is_some_and(|p| p.iter().any(|x| x == pid)),
        "pid {pid} not in {v}"
    );
    // The pooled destination is never flagged, in any snapshot.
    for s in &snaps {
        for v in s["verdicts"].as_array().expect("verdicts") {
            assert_ne!(v["dport"], pool_port, "pooled client flagged: {v}");
        }
    }
    assert_eq!(last["system"]["lost_events"], 0);
}

#[test]
fn tiny_port_range_shows_eaddrnotavail_and_a_full_budget() {
    if !kernel_tests_enabled() {
        return;
    }
    let (snaps, port) = in_netns(|netns| {
        sysctl("ip_local_port_range", "40000 40009");
        sysctl("tcp_tw_reuse", "0");
        let stop = Arc::new(AtomicBool::new(false));
        let port = server(stop.clone());
        let (child, rx) = portwatch(netns, 5);
        let a = unpooled(port, 20, stop.clone());
        let snaps = snapshots(child, rx);
        stop.store(true, Ordering::Relaxed);
        a.join().expect("unpooled");
        (snaps, port)
    });
    let last = snaps.last().expect("a snapshot");
    assert_eq!(last["system"]["budget"], 10);
    let dest = last["destinations"]
        .as_array()
        .expect("destinations")
        .iter()
        .find(|d| d["dport"] == port)
        .unwrap_or_else(|| panic!("no destination :{port} in {last}"));
    assert!(
        dest["pressure"].as_f64().is_some_and(|p| p >= 0.9),
        "{dest}"
    );
    assert_eq!(
        dest["connect_errors_by_errno"][0]["name"], "EADDRNOTAVAIL",
        "{dest}"
    );
    assert!(
        dest["connect_errors"].as_u64().is_some_and(|n| n > 0),
        "{dest}"
    );
}
