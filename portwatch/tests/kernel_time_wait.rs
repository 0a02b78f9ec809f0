//! Kernel test (root): a close that an RST ends leaves no TIME_WAIT, and
//! portwatch does not count one.
//!
//! In a private network namespace (loopback only), a client closes first
//! (shutdown, FIN) to two servers. One answers with its own FIN (a graceful
//! end: the client keeps a TIME_WAIT socket); the other sets SO_LINGER 0
//! and closes, which sends an RST (no TIME_WAIT anywhere). The pair and
//! service TIME_WAIT counts come from the closes alone, so they show the
//! difference whatever the socket table says.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::thread;
use std::time::Duration;

use serde_json::Value;

mod common;
use common::{Netns, Tracer, assert_no_loss, kernel_tests_enabled, of};

const CONNECTIONS: usize = 20;
const TOP_ITERATIONS: usize = 4;

/// Reads to EOF on each accepted connection, then closes: gracefully, or
/// with SO_LINGER {1, 0} (an RST) when `linger0`.
fn server(linger0: bool) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { break };
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
            if linger0 {
                let lg = libc::linger {
                    l_onoff: 1,
                    l_linger: 0,
                };
                // SAFETY: a valid socket fd and a linger struct of the size given.
                let r = unsafe {
                    libc::setsockopt(
                        s.as_raw_fd(),
                        libc::SOL_SOCKET,
                        libc::SO_LINGER,
                        (&raw const lg).cast(),
                        size_of::<libc::linger>() as libc::socklen_t,
                    )
                };
                assert_eq!(r, 0, "SO_LINGER");
            }
        }
    });
    addr
}

/// One request per connection; the client sends the first FIN and waits
/// for the server's answer (FIN or RST).
fn client(addr: SocketAddr) {
    for _ in 0..CONNECTIONS {
        let mut c = TcpStream::connect(addr).expect("connect");
        c.write_all(b"x").expect("send");
        c.shutdown(std::net::Shutdown::Write).expect("shutdown");
        let mut rest = Vec::new();
        let _ = c.read_to_end(&mut rest);
    }
}

fn pair(snap: &Value, port: u16) -> &Value {
    snap["pairs"]
        .as_array()
        .expect("pairs")
        .iter()
        .find(|p| p["dport"] == port)
        .unwrap_or_else(|| panic!("no pair to :{port} in {snap}"))
}

#[test]
fn an_rst_ended_close_is_not_counted_as_time_wait() {
    if !kernel_tests_enabled() {
        return;
    }
    let ns = Netns::new("pwt-timewait", &[]);
    let netns = ns.inode.to_string();
    let (graceful, reset) = ns.run(|| (server(false), server(true)));
    let mut tracer = Tracer::start(&["trace", "--json", "--netns", &netns]);
    let top_args = [
        "top",
        "--batch",
        "--json",
        "--interval",
        "1",
        "--rows",
        "50",
        "--iterations",
        &TOP_ITERATIONS.to_string(),
        "--netns",
        &netns,
    ]
    .map(String::from);
    let mut top = Tracer::attach(ns.run(move || {
        let args: Vec<&str> = top_args.iter().map(String::as_str).collect();
        Tracer::spawn(&args)
    }));
    ns.run(move || {
        let t = thread::Builder::new()
            .name("pw-closer".into())
            .spawn(move || {
                client(graceful);
                client(reset);
            })
            .expect("spawn");
        t.join().expect("client");
    });

    let inode = ns.inode;
    let outbound = |seen: &[Value], port: u16| -> Vec<Value> {
        of(seen, "close", inode)
            .filter(|v| v["direction"] == "out" && v["dport"] == port)
            .cloned()
            .collect()
    };
    assert!(
        tracer.wait_for(Duration::from_secs(20), |seen| {
            outbound(seen, graceful.port()).len() + outbound(seen, reset.port()).len()
                >= 2 * CONNECTIONS
        }),
        "trace saw {:?}",
        tracer.seen
    );
    let (ok, stderr, seen) = tracer.stop();
    assert!(ok, "trace failed: {stderr:?}");
    assert_no_loss(&stderr);
    let pid = std::process::id();
    let g = outbound(&seen, graceful.port());
    let r = outbound(&seen, reset.port());
    assert_eq!((g.len(), r.len()), (CONNECTIONS, CONNECTIONS));
    for v in g.iter().chain(&r) {
        assert_eq!(v["pid"], pid, "{v}");
        assert_eq!(v["established"], true, "{v}");
        assert!(v["cause"].is_null(), "not a failure: {v}");
    }
    assert!(g.iter().all(|v| v["local_close"] == true), "{g:#?}");
    assert!(
        r.iter().all(|v| v["local_close"] == false),
        "an RST-ended close was taken for a TIME_WAIT: {r:#?}"
    );

    assert!(
        top.wait_for(Duration::from_secs(20), |s| s.len() >= TOP_ITERATIONS),
        "top printed {} snapshots",
        top.seen.len()
    );
    let (ok, stderr, snaps) = top.stop();
    assert!(ok, "top failed: {stderr:?}");
    let last = snaps.last().expect("a snapshot");
    assert_eq!(last["system"]["lost_events"], 0);
    let (pg, pr) = (pair(last, graceful.port()), pair(last, reset.port()));
    assert!(
        pg["service"]["pids"]
            .as_array()
            .is_some_and(|p| p.iter().any(|x| x == pid)),
        "{pg}"
    );
    assert_eq!(pg["new_total"], CONNECTIONS as u64, "{pg}");
    assert_eq!(pg["time_wait"], CONNECTIONS as u64, "{pg}");
    assert_eq!(pr["new_total"], CONNECTIONS as u64, "{pr}");
    assert_eq!(pr["time_wait"], 0, "RST-ended closes hold no port: {pr}");
    let dest = last["destinations"]
        .as_array()
        .expect("destinations")
        .iter()
        .find(|d| d["dport"] == reset.port())
        .unwrap_or_else(|| panic!("no destination :{} in {last}", reset.port()));
    assert_eq!(dest["time_wait"], 0, "{dest}");
}
