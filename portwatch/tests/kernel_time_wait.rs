//! Kernel test (root): a close that an RST ends leaves no TIME_WAIT, and
//! portwatch does not count one.
//!
//! In a private network namespace (loopback only), a client closes first
//! (shutdown, FIN) to two servers. One answers with its own FIN (a graceful
//! end: the client keeps a TIME_WAIT socket); the other sets SO_LINGER 0
//! and closes, which sends an RST (no TIME_WAIT anywhere). The pair and
//! service TIME_WAIT counts come from the closes alone, so they show the
//! difference whatever the socket table says.

use std::net::SocketAddr;
use std::thread;
use std::time::Duration;

use serde_json::Value;

mod common;
use common::{
    Netns, Tracer, kernel_tests_enabled, of, row_where, send_a_byte_and_close_first,
    start_draining_server,
};

const CONNECTIONS: usize = 20;
const TOP_ITERATIONS: usize = 4;

/// One request per connection, `CONNECTIONS` times; the client sends the
/// first FIN and waits for the server's answer (FIN or RST).
fn client(addr: SocketAddr) {
    for _ in 0..CONNECTIONS {
        send_a_byte_and_close_first(addr).expect("client");
    }
}

#[test]
fn an_rst_ended_close_is_not_counted_as_time_wait() {
    if !kernel_tests_enabled() {
        return;
    }
    let ns = Netns::new("pwt-timewait", &[]);
    let netns = ns.inode.to_string();
    let (graceful, reset) = ns.run(|| {
        (
            start_draining_server("127.0.0.1:0", false),
            start_draining_server("127.0.0.1:0", true),
        )
    });
    let mut tracer = Tracer::start(&["trace", "--json", "--netns", &netns]);
    let top = ns.start_top_watching_it(TOP_ITERATIONS);
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
    tracer.wait_until("trace", Duration::from_secs(20), |seen| {
        outbound(seen, graceful.port()).len() + outbound(seen, reset.port()).len()
            >= 2 * CONNECTIONS
    });
    let seen = tracer.stop_without_loss("trace");
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

    let last = &top.last_of_snapshots(TOP_ITERATIONS);
    assert_eq!(last["system"]["lost_events"], 0);
    let pair = |port: u16| row_where(last, "pairs", |p| p["dport"] == port);
    let (pg, pr) = (pair(graceful.port()), pair(reset.port()));
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
    let dest = row_where(last, "destinations", |d| d["dport"] == reset.port());
    assert_eq!(dest["time_wait"], 0, "{dest}");
}
