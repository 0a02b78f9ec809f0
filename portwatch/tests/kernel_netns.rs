//! Kernel tests (root): every network namespace has its own port budget,
//! sysctls, socket table and advice.
//!
//! portwatch runs in the test's own namespace (the "host" here) and the
//! traffic in namespaces the test makes (see `common::Netns`), as with
//! containers and pods: the client's namespace has its own
//! `ip_local_port_range` and `tcp_tw_reuse`, which portwatch must read
//! from inside it. Loopback only, bounded in connections and time.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::{Netns, kernel_tests_enabled, start_server, top_batch_json, top_batch_snapshots};

const PORT: u16 = 7610;
/// Hard bound on one client's traffic.
const MAX_RUN: Duration = Duration::from_secs(25);
const MAX_CONNECTS: u64 = 4_000;

/// Counts of one churning client.
#[derive(Default)]
struct Churn {
    ok: AtomicU64,
    eaddrnotavail: AtomicU64,
}

/// An unpooled client: one exchange per connection at about `per_s`
/// connections/s, closing first (the TIME_WAIT lands here), until `stop`.
/// Failed connects are counted, not fatal. Call on a namespace's thread:
/// the client thread inherits its namespace.
fn churn(
    addr: SocketAddr,
    per_s: u64,
    stop: Arc<AtomicBool>,
    counts: Arc<Churn>,
) -> thread::JoinHandle<()> {
    thread::Builder::new()
        .name("pw-churn".into())
        .spawn(move || {
            let start = Instant::now();
            let pause = Duration::from_micros(1_000_000 / per_s);
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && start.elapsed() < MAX_RUN && n < MAX_CONNECTS {
                n += 1;
                match TcpStream::connect(addr) {
                    Ok(mut s) => {
                        let mut b = [0u8; 4];
                        if s.write_all(b"ping").is_ok() && s.read_exact(&mut b).is_ok() {
                            let _ = s.shutdown(std::net::Shutdown::Write);
                            let mut rest = Vec::new();
                            let _ = s.read_to_end(&mut rest);
                        }
                        counts.ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => {
                        counts.eaddrnotavail.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {}
                }
                thread::sleep(pause);
            }
        })
        .expect("spawn client")
}

/// `portwatch top --batch --json` in the calling thread's namespace, its
/// snapshots sent to the receiver; returns once it is watching.
fn top_batch(args: &[&str]) -> (Child, mpsc::Receiver<Value>) {
    top_batch_json(500, args)
}

/// The destinations 127.0.0.1:PORT seen from namespace `netns`.
fn dests_of(snap: &Value, netns: u32) -> Vec<&Value> {
    snap["destinations"]
        .as_array()
        .expect("destinations")
        .iter()
        .filter(|d| d["netns"] == netns && d["dport"] == PORT && d["daddr"] == "127.0.0.1")
        .collect()
}

fn has_eaddrnotavail(d: &Value) -> bool {
    d["connect_errors_by_errno"]
        .as_array()
        .is_some_and(|v| v.iter().any(|e| e["name"] == "EADDRNOTAVAIL"))
}

/// The namespace's own port range, read inside it.
fn port_range_in(ns: &Netns) -> (u64, u64) {
    ns.run(|| {
        let s =
            std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").expect("read range");
        let mut it = s
            .split_whitespace()
            .map(|x| x.parse::<u64>().expect("number"));
        (it.next().expect("lo"), it.next().expect("hi"))
    })
}

#[test]
fn each_namespace_has_its_own_budget_pressure_advice_and_failures() {
    if !kernel_tests_enabled() {
        return;
    }
    let a = Netns::new(
        "pwt-ns-a",
        &[
            ("ipv4/ip_local_port_range", "40000 40999"),
            ("ipv4/tcp_tw_reuse", "0"),
        ],
    );
    let b = Netns::new("pwt-ns-b", &[]);
    let (b_lo, b_hi) = port_range_in(&b);
    let b_budget = b_hi - b_lo + 1;
    let addr_a = a.run(|| start_server(&format!("127.0.0.1:{PORT}")));
    let addr_b = b.run(|| start_server(&format!("127.0.0.1:{PORT}")));

    let (child, rx) = top_batch(&["--iterations", "16"]);
    let stop = Arc::new(AtomicBool::new(false));
    let (ca, cb) = (Arc::new(Churn::default()), Arc::new(Churn::default()));
    // 150/s: A's 1,000 ports fill in ~7 s, well inside the 60 s TIME_WAIT.
    let ja = {
        let (s, c) = (stop.clone(), ca.clone());
        a.run(move || churn(addr_a, 150, s, c))
    };
    let jb = {
        let (s, c) = (stop.clone(), cb.clone());
        b.run(move || churn(addr_b, 150, s, c))
    };
    let snaps = top_batch_snapshots(child, rx);
    stop.store(true, Ordering::Relaxed);
    ja.join().expect("client A");
    jb.join().expect("client B");
    eprintln!(
        "A: {} ok, {} EADDRNOTAVAIL; B: {} ok, {} EADDRNOTAVAIL",
        ca.ok.load(Ordering::Relaxed),
        ca.eaddrnotavail.load(Ordering::Relaxed),
        cb.ok.load(Ordering::Relaxed),
        cb.eaddrnotavail.load(Ordering::Relaxed)
    );
    assert!(
        ca.eaddrnotavail.load(Ordering::Relaxed) > 0,
        "A's client never ran out of ports"
    );
    assert_eq!(cb.eaddrnotavail.load(Ordering::Relaxed), 0);
    assert_eq!(snaps.len(), 16);

    // One destination per namespace (one local address in each), each
    // with its namespace's own budget.
    let last = snaps.last().expect("a snapshot");
    let (da, db) = (dests_of(last, a.inode), dests_of(last, b.inode));
    assert_eq!(da.len(), 1, "A: {da:#?}");
    assert_eq!(db.len(), 1, "B: {db:#?}");
    let (da, db) = (da[0], db[0]);
    assert_eq!(da["budget"], 1000, "{da}");
    assert_eq!(db["budget"], b_budget, "{db}");
    assert!(
        da["netns_name"].as_str().is_some_and(|n| n != "host"),
        "{da}"
    );
    // No lost_events check: portwatch watches the whole host here (two
    // namespaces, no --netns), and other tests' traffic may overflow it;
    // the namespaces' socket tables correct the held counts regardless.

    // EADDRNOTAVAIL is A's, not B's.
    assert!(has_eaddrnotavail(da), "{da}");
    assert!(!has_eaddrnotavail(db), "{db}");
    assert!(
        db["pressure"].as_f64().is_some_and(|p| p < 0.2),
        "B has its own, wide budget: {db}"
    );

    // A's pressure reached ~100% before its first EADDRNOTAVAIL was shown:
    // the snapshot before it already showed A nearly full.
    let first_err = snaps
        .iter()
        .position(|s| dests_of(s, a.inode).iter().any(|d| has_eaddrnotavail(d)))
        .expect("a snapshot with A's EADDRNOTAVAIL");
    assert!(first_err > 0, "EADDRNOTAVAIL in the very first snapshot");
    let before = dests_of(&snaps[first_err - 1], a.inode);
    let p = before.first().and_then(|d| d["pressure"].as_f64());
    assert!(
        p.is_some_and(|p| p >= 0.75),
        "A's pressure one snapshot before its first EADDRNOTAVAIL: {p:?}"
    );
    assert!(
        da["pressure"].as_f64().is_some_and(|p| p >= 0.95),
        "A at its budget: {da}"
    );

    // The namespaces as read from inside them.
    let ns = last["namespaces"].as_array().expect("namespaces");
    let ns_a = ns
        .iter()
        .find(|n| n["netns"] == a.inode)
        .unwrap_or_else(|| panic!("A not in {ns:#?}"));
    assert_eq!(ns_a["port_range"], serde_json::json!([40000, 40999]));
    assert_eq!(ns_a["tcp_tw_reuse"], 0);
    assert_eq!(ns_a["budget"], 1000);
    assert_eq!(ns_a["stale"], false);
    assert_eq!(ns_a["error"], Value::Null);

    // A's advice quotes A's values, named by A; nothing quotes the host's
    // values for A.
    let advice = last["system"]["advice"].as_array().expect("advice");
    eprintln!("advice: {advice:#?}\nA: {da}\nnamespaces: {ns:#?}");
    let of_a: Vec<&Value> = advice.iter().filter(|x| x["netns"] == a.inode).collect();
    let texts_a: Vec<&str> = of_a.iter().filter_map(|x| x["text"].as_str()).collect();
    assert!(
        of_a.iter().any(|x| x["key"] == "port_range_small"),
        "{advice:#?}"
    );
    assert!(
        of_a.iter().any(|x| x["key"] == "tw_reuse_off"),
        "{advice:#?}"
    );
    let a_name = da["netns_name"].as_str().expect("name");
    for t in &texts_a {
        assert!(t.contains(a_name), "advice for A does not name it: {t}");
        assert!(
            !t.contains("tcp_tw_reuse=2"),
            "host value quoted for A: {t}"
        );
        assert!(!t.contains("32768-60999"), "host range quoted for A: {t}");
    }
    assert!(
        texts_a
            .iter()
            .any(|t| t.contains("40000-40999 (1000 ports)")),
        "{texts_a:#?}"
    );
    assert!(
        texts_a.iter().any(|t| t.contains("tcp_tw_reuse=0")),
        "{texts_a:#?}"
    );
    // The "ports nearly exhausted" warning is A's.
    let exhausted: Vec<&Value> = advice
        .iter()
        .filter(|x| x["key"] == "ports_nearly_exhausted")
        .collect();
    assert!(
        exhausted.iter().any(|x| x["netns"] == a.inode),
        "{advice:#?}"
    );
    assert!(
        exhausted.iter().all(|x| x["netns"] != b.inode),
        "{advice:#?}"
    );
}

/// Snapshots with the time each arrived.
fn timed(rx: mpsc::Receiver<Value>) -> mpsc::Receiver<(Instant, Value)> {
    let (tx, out) = mpsc::channel();
    thread::spawn(move || {
        for v in rx {
            if tx.send((Instant::now(), v)).is_err() {
                break;
            }
        }
    });
    out
}

#[test]
fn a_range_changed_while_top_runs_shows_within_one_resync() {
    if !kernel_tests_enabled() {
        return;
    }
    const RESYNC_S: u64 = 2;
    let a = Netns::new(
        "pwt-ns-resync",
        &[
            ("ipv4/ip_local_port_range", "40000 40999"),
            ("ipv4/tcp_tw_reuse", "0"),
        ],
    );
    let addr = a.run(|| start_server(&format!("127.0.0.1:{PORT}")));
    let (child, rx) = top_batch(&[
        "--iterations",
        "14",
        "--resync",
        &RESYNC_S.to_string(),
        "--netns",
        &a.inode.to_string(),
    ]);
    let rx = timed(rx);
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let (s, c) = (stop.clone(), Arc::new(Churn::default()));
        a.run(move || churn(addr, 20, s, c))
    };
    let budget = |v: &Value| dests_of(v, a.inode).first().map(|d| d["budget"].clone());
    // Wait until the first budget shows, then widen the range.
    let mut seen = Vec::new();
    loop {
        let (t, v) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("a snapshot with A's destination");
        let b = budget(&v);
        seen.push((t, v));
        if b.is_some() {
            assert_eq!(b, Some(Value::from(1000)));
            break;
        }
    }
    a.run(|| {
        std::fs::write("/proc/sys/net/ipv4/ip_local_port_range", "30000 40999")
            .expect("widen the range")
    });
    let changed = Instant::now();
    let out = child.wait_with_output().expect("waiting for portwatch");
    stop.store(true, Ordering::Relaxed);
    client.join().expect("client");
    assert!(out.status.success(), "portwatch failed: {:?}", out.status);
    // Until its output ends, not only what arrived by its exit.
    while let Ok(x) = rx.recv_timeout(Duration::from_secs(5)) {
        seen.push(x);
    }
    let first_new = seen
        .iter()
        .filter(|(t, _)| *t >= changed)
        .find(|(_, v)| budget(v) == Some(Value::from(11000)))
        .map(|(t, _)| t.duration_since(changed))
        .expect("the new budget shown");
    // One resync, plus one interval for the snapshot to be printed, plus
    // slack for a loaded machine.
    assert!(
        first_new <= Duration::from_millis(RESYNC_S * 1000 + 1000 + 1500),
        "new budget shown {first_new:?} after the change"
    );
    // And it stays.
    let last = &seen.last().expect("snapshots").1;
    assert_eq!(budget(last), Some(Value::from(11000)));
    let ns = last["namespaces"].as_array().expect("namespaces");
    assert!(
        ns.iter()
            .any(|n| n["netns"] == a.inode && n["port_range"] == serde_json::json!([30000, 40999])),
        "{ns:#?}"
    );
}

/// IP_BIND_ADDRESS_NO_PORT: bind() takes the address only, the port is
/// chosen at connect() for the whole 4-tuple (socket2 0.6 has no setter).
fn no_port_at_bind(s: &socket2::Socket) {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: a valid socket fd, and a pointer/length to a live c_int.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(
        r,
        0,
        "IP_BIND_ADDRESS_NO_PORT: {}",
        std::io::Error::last_os_error()
    );
}

/// A client bound to `local` (port chosen at connect: IP_BIND_ADDRESS_NO_PORT),
/// one exchange per connection at ~`per_s`/s for `n` connections.
fn bound_churn(local: &'static str, to: SocketAddr, per_s: u64, n: u64) -> thread::JoinHandle<u64> {
    thread::Builder::new()
        .name("pw-bound".into())
        .spawn(move || {
            let pause = Duration::from_micros(1_000_000 / per_s);
            let mut ok = 0;
            for _ in 0..n {
                let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                    .expect("socket");
                no_port_at_bind(&s);
                let bind: SocketAddr = format!("{local}:0").parse().expect("addr");
                s.bind(&bind.into()).expect("bind");
                if s.connect(&to.into()).is_ok() {
                    let mut s: TcpStream = s.into();
                    let mut b = [0u8; 4];
                    if s.write_all(b"ping").is_ok() && s.read_exact(&mut b).is_ok() {
                        let _ = s.shutdown(std::net::Shutdown::Write);
                        let mut rest = Vec::new();
                        let _ = s.read_to_end(&mut rest);
                    }
                    ok += 1;
                }
                thread::sleep(pause);
            }
            ok
        })
        .expect("spawn client")
}

#[test]
fn two_local_addresses_have_two_budgets_each_with_its_own_pressure() {
    if !kernel_tests_enabled() {
        return;
    }
    let c = Netns::new(
        "pwt-ns-laddr",
        &[
            ("ipv4/ip_local_port_range", "40000 40099"),
            ("ipv4/tcp_tw_reuse", "0"),
        ],
    );
    c.run(|| {
        let st = Command::new("ip")
            .args(["addr", "add", "127.0.0.2/8", "dev", "lo"])
            .status()
            .expect("ip addr add");
        assert!(st.success(), "ip addr add 127.0.0.2/8 dev lo failed");
    });
    let addr = c.run(|| start_server(&format!("127.0.0.1:{PORT}")));
    let (child, rx) = top_batch(&["--iterations", "8", "--netns", &c.inode.to_string()]);
    // From .1: 120 connections (more than its 100 ports); from .2: 50.
    let (j1, j2) = c.run(move || {
        (
            bound_churn("127.0.0.1", addr, 40, 120),
            bound_churn("127.0.0.2", addr, 20, 50),
        )
    });
    let (ok1, ok2) = (j1.join().expect("client .1"), j2.join().expect("client .2"));
    // Every snapshot, the last included (not only those read by its exit).
    let snaps = top_batch_snapshots(child, rx);
    eprintln!("connected from .1: {ok1}, from .2: {ok2}");
    assert_eq!((ok1, ok2), (100, 50), "each address has its own 100 ports");
    // Each address's row at its peak. Not the last snapshot's: on a host
    // busy with other namespaces' churn, the socket table read after the
    // churn came back 1-2 TIME_WAIT sockets short of 100 (seen with main's
    // binary too; likely because a sock_diag dump resumes by position in
    // the kernel's shared hash table while others' entries move).
    let peak = |laddr: &str| -> Value {
        snaps
            .iter()
            .flat_map(|s| dests_of(s, c.inode))
            .filter(|d| d["laddr"] == laddr)
            .max_by_key(|d| d["held_ports"].as_u64())
            .unwrap_or_else(|| panic!("no budget from {laddr} in {snaps:?}"))
            .clone()
    };
    let (d1, d2) = (peak("127.0.0.1"), peak("127.0.0.2"));
    assert_eq!(
        (d1["budget"].clone(), d2["budget"].clone()),
        (100.into(), 100.into())
    );
    assert_eq!(d1["held_ports"], 100, "{d1}");
    assert_eq!(d2["held_ports"], 50, "{d2}");
    assert_eq!(d1["pressure"], 1.0, "{d1}");
    assert_eq!(d2["pressure"], 0.5, "{d2}");
}
