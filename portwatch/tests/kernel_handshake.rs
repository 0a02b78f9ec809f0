//! Kernel test (root): handshakes that never finish are failures, named by
//! cause, per destination, with how long they waited.
//!
//! In a private network namespace (loopback only): an nftables rule drops
//! the SYNs to one listening port, and a second listener has a full accept
//! queue (backlog 0, one connection queued and never accepted), so the
//! kernel drops the SYNs to it too. Clients give up after 1 s (the
//! application's connect timeout: `aborted`) or wait for the kernel's SYN
//! retries (`tcp_syn_retries=1`: ETIMEDOUT after ~3 s, `timed_out`, with
//! one or two SYNs retransmitted). `top --batch --json` and `trace --json`
//! watch the namespace; both must name this process, each destination, each
//! cause and the SYN retransmissions, and lose nothing.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::thread;
use std::time::Duration;

use serde_json::Value;

mod common;
use common::{Netns, Tracer, connect_errno, kernel_tests_enabled, nft_load, of, row_where};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const TOP_ITERATIONS: usize = 7;

/// Drops SYNs to `port` on every interface of the calling thread's
/// namespace (only `lo` exists there).
fn drop_syns_to(port: u16) {
    nft_load(&format!(
        "table inet pwtest {{\n  chain input {{\n    type filter hook input priority 0;\n    \
         tcp dport {port} tcp flags syn drop\n  }}\n}}\n"
    ));
}

/// A listener whose accept queue is full: backlog 0 and one connection
/// queued that nobody accepts. Further SYNs are dropped by the kernel.
/// Returns the listener and the queued connection (keep both alive).
fn full_listener() -> (TcpListener, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    // SAFETY: listen() on a valid, already listening socket only changes
    // its backlog.
    assert_eq!(unsafe { libc::listen(l.as_raw_fd(), 0) }, 0);
    let queued = TcpStream::connect(l.local_addr().expect("addr")).expect("first connect");
    (l, queued)
}

/// `n` connects to `addr`, each abandoned after [`CONNECT_TIMEOUT`], on a
/// thread named `name`.
fn abandon(name: &str, addr: SocketAddr, n: usize) -> thread::JoinHandle<()> {
    thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            for _ in 0..n {
                let r = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT);
                assert!(r.is_err(), "connect to {addr} succeeded");
            }
        })
        .expect("spawn")
}

fn causes(v: &Value) -> Vec<(String, u64)> {
    v["connect_errors_by_cause"]
        .as_array()
        .unwrap_or_else(|| panic!("no connect_errors_by_cause in {v}"))
        .iter()
        .map(|c| {
            (
                c["cause"].as_str().expect("cause").to_string(),
                c["count"].as_u64().expect("count"),
            )
        })
        .collect()
}

fn cause_list(v: &[(&str, u64)]) -> Vec<(String, u64)> {
    v.iter().map(|(c, n)| (c.to_string(), *n)).collect()
}

#[test]
fn unanswered_syns_are_failures_named_by_cause_per_destination() {
    if !kernel_tests_enabled() {
        return;
    }
    let ns = Netns::new("pwt-handshake", &[("ipv4/tcp_syn_retries", "1")]);
    let netns = ns.inode.to_string();
    let (dropped, full) = ns.run(|| {
        let dropped = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = dropped.local_addr().expect("addr");
        drop_syns_to(addr.port());
        let (full, queued) = full_listener();
        let full_addr = full.local_addr().expect("addr");
        // Kept for the namespace's life (the test's).
        std::mem::forget((dropped, full, queued));
        (addr, full_addr)
    });
    let mut tracer = Tracer::start(&["trace", "--json", "--netns", &netns]);
    let top = ns.start_top_watching_it(TOP_ITERATIONS);

    ns.run(move || {
        let a = abandon("pw-abort", dropped, 2);
        let b = abandon("pw-backlog", full, 2);
        let blocking = |name: &str, to: SocketAddr| {
            thread::Builder::new()
                .name(name.into())
                .spawn(move || {
                    let e = TcpStream::connect(to).expect_err("connect to a silent port");
                    assert_eq!(e.raw_os_error(), Some(libc::ETIMEDOUT), "{e}");
                })
                .expect("spawn")
        };
        let c = blocking("pw-blocking", dropped);
        let d = blocking("pw-blocking-bl", full);
        for h in [a, b, c, d] {
            h.join().expect("client");
        }
    });

    let pid = std::process::id();
    let inode = ns.inode;
    tracer.wait_until("trace", Duration::from_secs(20), |seen| {
        of(seen, "close", inode)
            .filter(|v| !v["cause"].is_null())
            .count()
            >= 6
    });
    let seen = tracer.stop_without_loss("trace");
    let failed: Vec<&Value> = of(&seen, "close", inode)
        .filter(|v| !v["cause"].is_null())
        .collect();
    assert_eq!(failed.len(), 6, "{failed:#?}");
    for v in &failed {
        assert_eq!(v["pid"], pid, "{v}");
        assert_eq!(v["established"], false, "{v}");
        assert_eq!(v["daddr"], "127.0.0.1", "{v}");
    }
    let count = |port: u16, cause: &str| {
        failed
            .iter()
            .filter(|v| v["dport"] == port && v["cause"] == cause)
            .count()
    };
    assert_eq!(count(dropped.port(), "aborted"), 2);
    assert_eq!(count(dropped.port(), "timed_out"), 1);
    assert_eq!(count(full.port(), "aborted"), 2);
    assert_eq!(count(full.port(), "timed_out"), 1);
    for v in failed.iter().filter(|v| v["cause"] == "aborted") {
        // The application's 1 s timeout is the handshake's wait.
        let waited = v["lifetime_us"].as_u64().expect("lifetime_us");
        assert!((900_000..1_500_000).contains(&waited), "{v}");
        assert_eq!(
            v["thread"].as_str().map(|t| t.starts_with("pw-")),
            Some(true)
        );
    }
    for v in failed.iter().filter(|v| v["cause"] == "timed_out") {
        assert_eq!(v["errno"], "ETIMEDOUT", "{v}");
        let thread = if v["dport"] == dropped.port() {
            "pw-blocking"
        } else {
            "pw-blocking-bl"
        };
        assert_eq!(v["thread"], thread, "{v}");
        // tcp_syn_retries=1: the SYN, a retransmission after the 1 s
        // initial RTO, then ETIMEDOUT at ~3 s. The kernel's limit is a
        // time (3 s), checked on a jiffy clock: seen here as 1 or 2.
        let n = v["syn_retransmits"].as_u64().expect("syn_retransmits");
        assert!((1..=2).contains(&n), "{v}");
    }
    for v in failed.iter().filter(|v| v["cause"] == "aborted") {
        // Given up at 1 s, when the first retransmission is due: 0 or 1.
        let n = v["syn_retransmits"].as_u64().expect("syn_retransmits");
        assert!(n <= 1, "{v}");
    }
    let retransmits = |port: u16| -> u64 {
        failed
            .iter()
            .filter(|v| v["dport"] == port)
            .map(|v| v["syn_retransmits"].as_u64().expect("syn_retransmits"))
            .sum()
    };

    let last = &top.last_of_snapshots(TOP_ITERATIONS);
    let sys = &last["system"];
    assert_eq!(sys["lost_events"], 0, "{sys}");
    assert_eq!(sys["connect_errors"], 6, "counted in the header: {sys}");
    assert_eq!(
        causes(sys),
        cause_list(&[("timed_out", 2), ("aborted", 4)]),
        "{sys}"
    );
    assert_eq!(
        sys["syn_retransmits"],
        retransmits(dropped.port()) + retransmits(full.port()),
        "{sys}"
    );
    let dest = |port: u16| row_where(last, "destinations", |d| d["dport"] == port);
    let d = dest(dropped.port());
    assert_eq!(
        causes(d),
        cause_list(&[("timed_out", 1), ("aborted", 2)]),
        "{d}"
    );
    let wait = d["failed_handshake_p50_ms"].as_f64().expect("wait");
    assert!((900.0..1500.0).contains(&wait), "{d}");
    assert_eq!(d["syn_retransmits"], retransmits(dropped.port()), "{d}");
    // A full accept queue looks like a drop rule from the client's side:
    // unanswered SYNs, retransmitted, then the timeout.
    let d = dest(full.port());
    assert_eq!(
        causes(d),
        cause_list(&[("timed_out", 1), ("aborted", 2)]),
        "{d}"
    );
    let n = d["syn_retransmits"].as_u64().expect("syn_retransmits");
    assert!(n >= 1, "{d}");
    assert_eq!(n, retransmits(full.port()), "{d}");
    // The culprit: this process, with every failure.
    let p = row_where(last, "processes", |p| p["pid"] == pid);
    assert_eq!(p["connect_errors"], 6, "{p}");
    let advice = sys["advice"].as_array().expect("advice");
    for port in [dropped.port(), full.port()] {
        let dst = format!("127.0.0.1:{port}");
        assert!(
            advice.iter().any(|a| a["key"] == "handshakes_unanswered"
                && a["text"].as_str().is_some_and(|t| t.contains(&dst))),
            "no advice for {dst}: {advice:#?}"
        );
    }
}

extern "C" fn ignore_signal(_: libc::c_int) {}

/// A blocking connect() to `addr` on a raw socket (std retries on EINTR),
/// interrupted by SIGUSR1 (handler without SA_RESTART): returns connect()'s
/// errno, then closes the socket, abandoning the handshake.
fn interrupted_connect(addr: SocketAddr) -> i32 {
    let SocketAddr::V4(a) = addr else {
        panic!("IPv4 expected")
    };
    connect_errno(libc::SOCK_STREAM, a)
}

#[test]
fn a_connect_interrupted_by_a_signal_is_not_a_failure_until_abandoned() {
    use std::os::unix::thread::JoinHandleExt;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    if !kernel_tests_enabled() {
        return;
    }
    // SAFETY: installs a handler that does nothing, without SA_RESTART, so
    // a blocking connect() returns EINTR; only this test sends SIGUSR1,
    // to its own thread.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = ignore_signal as *const () as usize;
        sa.sa_flags = 0;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()), 0);
    }
    let ns = Netns::new("pwt-eintr", &[]);
    let netns = ns.inode.to_string();
    let dropped = ns.run(|| {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        drop_syns_to(addr.port());
        std::mem::forget(l);
        addr
    });
    let mut tracer = Tracer::start(&["trace", "--json", "--netns", &netns]);
    let errno = ns.run(move || {
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        let h = thread::Builder::new()
            .name("pw-interrupted".into())
            .spawn(move || {
                let e = interrupted_connect(dropped);
                d.store(true, Ordering::SeqCst);
                e
            })
            .expect("spawn");
        // Signal until the connect returns: a signal that lands before the
        // thread blocks is ignored and the next one interrupts it.
        while !done.load(Ordering::SeqCst) {
            // SAFETY: the thread is alive (not joined yet); SIGUSR1 has a handler.
            unsafe { libc::pthread_kill(h.as_pthread_t(), libc::SIGUSR1) };
            thread::sleep(Duration::from_millis(50));
        }
        h.join().expect("client")
    });
    assert_eq!(errno, libc::EINTR, "connect() was not interrupted");
    let inode = ns.inode;
    let mine = |seen: &[Value]| -> Vec<Value> {
        seen.iter()
            .filter(|v| v["netns"] == inode && v["thread"] == "pw-interrupted")
            .cloned()
            .collect()
    };
    tracer.wait_until("trace", Duration::from_secs(20), |seen| {
        !mine(seen).is_empty()
    });
    let seen = tracer.stop_without_loss("trace");
    let events = mine(&seen);
    assert_eq!(
        events.len(),
        1,
        "one report, the abandoned handshake: {events:#?}"
    );
    let v = &events[0];
    assert_eq!(v["event"], "close", "{v}");
    assert_eq!(v["cause"], "aborted", "{v}");
    assert_eq!(v["pid"], std::process::id(), "{v}");
    assert_eq!(v["dport"], dropped.port(), "{v}");
}
