//! `portwatch trace` against the real kernel: traffic made by the test in a
//! private network namespace, events read from the tracer's JSON output.
//! Needs root (see tests/common).

mod common;

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);

fn trace_netns(ns: &Netns) -> Tracer {
    Tracer::start(&["trace", "--json", "--netns", &ns.inode.to_string()])
}

fn outbound_closes<'a>(seen: &'a [Value], ns: &Netns, comm: &'a str) -> Vec<&'a Value> {
    of(seen, "close", ns.inode)
        .filter(|v| v["direction"] == "out" && v["thread"] == comm)
        .collect()
}

/// N unpooled connections (client closes first) give exactly N outbound
/// close events attributed to the client, and N inbound ones on the server.
fn churn(bind: &str, comm: &'static str, family: &str) {
    if !kernel_tests_enabled() {
        return;
    }
    const N: usize = 25;
    let ns = Netns::new(comm, &[]);
    let mut tracer = trace_netns(&ns);
    let bind = bind.to_string();
    let server = ns.run(move || start_server_with_connections(&bind, N));
    let ok = tracer.wait_for(WAIT, |seen| {
        outbound_closes(seen, &ns, comm).len() >= N
            && of(seen, "close", ns.inode)
                .filter(|v| v["direction"] == "in")
                .count()
                >= N
    });
    let (exited_ok, stderr, seen) = tracer.stop();
    assert!(ok, "timed out; saw {seen:#?}");
    assert!(exited_ok, "portwatch failed: {stderr:?}");
    assert_no_loss(&stderr);

    let out = outbound_closes(&seen, &ns, comm);
    assert_eq!(out.len(), N, "exactly one close event per connection");
    for v in &out {
        assert_eq!(v["pid"], std::process::id());
        assert_eq!(v["comm"], process_name(), "comm is the process's name");
        assert_eq!(v["family"], family);
        assert_eq!(v["daddr"], server.ip().to_string());
        assert_eq!(v["dport"], server.port());
        assert_eq!(v["local_close"], true, "client closed first: {v}");
        assert_eq!(v["established"], true);
        assert_bytes(v, "bytes_sent", 4);
        assert_bytes(v, "bytes_received", 4);
        assert_eq!(v["errno"], Value::Null);
        let life = v["lifetime_us"].as_u64().unwrap();
        assert!(life > 0 && life < 5_000_000, "lifetime {life} µs");
        let hs = v["handshake_us"].as_u64().unwrap();
        assert!(hs <= life, "handshake {hs} µs within lifetime {life} µs");
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
    }
    let inbound: Vec<&Value> = of(&seen, "close", ns.inode)
        .filter(|v| v["direction"] == "in")
        .collect();
    assert_eq!(inbound.len(), N);
    for v in inbound {
        assert_eq!(
            v["sport"],
            server.port(),
            "inbound local port is the listener's"
        );
        assert_eq!(
            v["pid"],
            Value::Null,
            "no task is honestly known for accepts"
        );
        assert_eq!(v["local_close"], false);
    }
}

#[test]
fn unpooled_ipv4_client_gives_one_close_event_per_connection() {
    churn("127.0.0.1:0", "pwt-churn4", "ipv4");
}

#[test]
fn unpooled_ipv6_client_gives_one_close_event_per_connection() {
    churn("[::1]:0", "pwt-churn6", "ipv6");
}

#[test]
fn pooled_client_gives_one_close_event() {
    if !kernel_tests_enabled() {
        return;
    }
    const REQUESTS: usize = 50;
    let comm = "pwt-pooled";
    let ns = Netns::new(comm, &[]);
    let mut tracer = trace_netns(&ns);
    let server = ns.run(|| {
        let addr = start_server("127.0.0.1:0");
        client_exchange(addr, REQUESTS);
        addr
    });
    let ok = tracer.wait_for(WAIT, |seen| !outbound_closes(seen, &ns, comm).is_empty());
    // The probe drains every 10 ms; make sure nothing else trails in.
    let (exited_ok, stderr, seen) = tracer.stop();
    assert!(ok && exited_ok, "{stderr:?}");
    assert_no_loss(&stderr);
    let out = outbound_closes(&seen, &ns, comm);
    assert_eq!(out.len(), 1, "{out:#?}");
    assert_eq!(out[0]["dport"], server.port());
    assert_bytes(out[0], "bytes_sent", 4 * REQUESTS as u64);
    assert_bytes(out[0], "bytes_received", 4 * REQUESTS as u64);
}

#[test]
fn port_exhaustion_is_reported_for_every_failed_connect() {
    if !kernel_tests_enabled() {
        return;
    }
    const PORTS: usize = 10;
    const FAILING: usize = 4;
    let comm = "pwt-exhaust";
    let ns = Netns::new(
        comm,
        &[
            ("ipv4/ip_local_port_range", "40000 40009"),
            ("ipv4/tcp_tw_reuse", "0"),
        ],
    );
    let mut tracer = trace_netns(&ns);
    let (server, errors) = ns.run(|| {
        // A fixed port outside the shrunk range: a listener on an ephemeral
        // port would take one of the ten for itself.
        // Each connection leaves a TIME_WAIT socket holding its port.
        let addr = start_server_with_connections("127.0.0.1:80", PORTS);
        let errors: Vec<Option<i32>> = (0..FAILING)
            .map(|_| {
                TcpStream::connect(addr)
                    .err()
                    .and_then(|e| e.raw_os_error())
            })
            .collect();
        (addr, errors)
    });
    assert_eq!(
        errors,
        vec![Some(libc::EADDRNOTAVAIL); FAILING],
        "the range ran dry"
    );
    let ok = tracer.wait_for(WAIT, |seen| {
        of(seen, "connect_error", ns.inode).count() >= FAILING
            && outbound_closes(seen, &ns, comm).len() >= PORTS
    });
    let (exited_ok, stderr, seen) = tracer.stop();
    assert!(ok && exited_ok, "timed out or failed: {stderr:?} {seen:#?}");
    assert_no_loss(&stderr);
    let fails: Vec<&Value> = of(&seen, "connect_error", ns.inode).collect();
    assert_eq!(
        fails.len(),
        FAILING,
        "each failed attempt reported once: {fails:#?}"
    );
    for v in fails {
        assert_eq!(v["errno"], "EADDRNOTAVAIL");
        assert_eq!(v["cause"], "port_exhaustion");
        assert_eq!(v["pid"], std::process::id());
        assert_eq!(v["thread"], comm);
        assert_eq!(v["comm"], process_name());
        assert_eq!(v["daddr"], "127.0.0.1");
        assert_eq!(v["dport"], server.port());
    }
    let closes = outbound_closes(&seen, &ns, comm);
    assert_eq!(closes.len(), PORTS);
    assert!(closes.iter().all(|v| {
        let p = v["sport"].as_u64().unwrap();
        (40000..=40009).contains(&p)
    }));
}

/// A refused connect is seen by two probes (the socket's SYN_SENT→CLOSE and
/// connect()'s exit); it must be reported exactly once.
fn refused(addr: &'static str, comm: &'static str) {
    if !kernel_tests_enabled() {
        return;
    }
    let ns = Netns::new(comm, &[]);
    let mut tracer = trace_netns(&ns);
    let target: SocketAddr = addr.parse().unwrap();
    let err = ns.run(move || TcpStream::connect(target).unwrap_err().kind());
    assert_eq!(err, ErrorKind::ConnectionRefused);
    let is_report = |v: &&Value| {
        v["netns"] == ns.inode
            && v["thread"] == comm
            && v["errno"] == "ECONNREFUSED"
            && (v["event"] == "connect_error"
                || (v["event"] == "close" && v["established"] == false))
    };
    let ok = tracer.wait_for(WAIT, |seen| seen.iter().any(|v| is_report(&v)));
    let (exited_ok, stderr, seen) = tracer.stop();
    assert!(ok && exited_ok, "{stderr:?} {seen:#?}");
    assert_no_loss(&stderr);
    let reports: Vec<&Value> = seen.iter().filter(is_report).collect();
    assert_eq!(reports.len(), 1, "reported once: {reports:#?}");
    assert_eq!(reports[0]["daddr"], target.ip().to_string());
    assert_eq!(reports[0]["dport"], target.port());
    assert_eq!(reports[0]["pid"], std::process::id());
    assert_eq!(reports[0]["cause"], "refused");
}

#[test]
fn refused_ipv4_connect_is_reported_once() {
    refused("127.0.0.1:9", "pwt-refused4");
}

#[test]
fn refused_ipv6_connect_is_reported_once() {
    refused("[::1]:9", "pwt-refused6");
}

#[test]
fn v4_mapped_connection_keeps_the_mapped_address() {
    if !kernel_tests_enabled() {
        return;
    }
    let comm = "pwt-mapped";
    let ns = Netns::new(comm, &[]);
    let mut tracer = trace_netns(&ns);
    let server = ns.run(|| {
        // A dual-stack listener; the client uses an AF_INET6 socket to a
        // v4-mapped address.
        let addr = start_server("[::]:0");
        let mapped: SocketAddr = format!("[::ffff:127.0.0.1]:{}", addr.port())
            .parse()
            .unwrap();
        client_exchange(mapped, 1);
        mapped
    });
    let ok = tracer.wait_for(WAIT, |seen| !outbound_closes(seen, &ns, comm).is_empty());
    let (exited_ok, stderr, seen) = tracer.stop();
    assert!(ok && exited_ok, "{stderr:?}");
    let out = outbound_closes(&seen, &ns, comm);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["family"], "ipv6");
    assert_eq!(out[0]["daddr"], "::ffff:127.0.0.1");
    assert_eq!(out[0]["dport"], server.port());
}

#[test]
fn without_privileges_it_fails_with_a_clear_error() {
    if !kernel_tests_enabled() {
        return;
    }
    use std::os::unix::process::CommandExt;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portwatch"))
        .args(["trace", "--duration", "1"])
        .uid(65534) // nobody
        .gid(65534)
        .output()
        .expect("run portwatch as nobody");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CAP_BPF") && err.contains("sudo"), "{err}");
}

#[test]
fn duration_ends_the_trace_with_a_summary() {
    if !kernel_tests_enabled() {
        return;
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portwatch"))
        .args(["trace", "--duration", "0.5", "--dport", "1"])
        .output()
        .expect("run portwatch");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("stopped (duration reached)"), "{err}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("TIME "),
        "text output starts with its header: {text}"
    );
}

/// A connect submitted through io_uring never enters the connect()
/// syscall; its port allocation failure must still be reported, from the
/// socket tracepoint, as port exhaustion with the submitting task.
#[test]
fn io_uring_connect_port_exhaustion_is_reported() {
    if !kernel_tests_enabled() {
        return;
    }
    use io_uring::{IoUring, opcode, types};
    use std::os::fd::AsRawFd;

    let comm = "pwt-uring";
    let ns = Netns::new(
        comm,
        &[
            ("ipv4/ip_local_port_range", "40000 40009"),
            ("ipv4/tcp_tw_reuse", "0"),
        ],
    );
    let mut tracer = trace_netns(&ns);
    let (server, result) = ns.run(|| {
        let addr = start_server_with_connections("127.0.0.1:80", 10);
        // The range is dry: connect through io_uring.
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        let sa = socket2::SockAddr::from(addr);
        let mut ring = IoUring::new(4).expect("io_uring");
        let op =
            opcode::Connect::new(types::Fd(sock.as_raw_fd()), sa.as_ptr().cast(), sa.len()).build();
        // SAFETY: `sa` and `sock` outlive the submission, which completes
        // before this closure returns.
        unsafe { ring.submission().push(&op).expect("queue") };
        ring.submit_and_wait(1).expect("submit");
        let res = ring.completion().next().expect("completion").result();
        (addr, res)
    });
    assert_eq!(
        result,
        -libc::EADDRNOTAVAIL,
        "the io_uring connect found no port"
    );
    let is_report =
        |v: &Value| v["event"] == "connect_error" && v["netns"] == ns.inode && v["thread"] == comm;
    let ok = tracer.wait_for(WAIT, |seen| seen.iter().any(is_report));
    let (exited_ok, stderr, seen) = tracer.stop();
    assert!(ok && exited_ok, "{stderr:?} {seen:#?}");
    let reports: Vec<&Value> = seen.iter().filter(|v| is_report(v)).collect();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!(reports[0]["errno"], "EADDRNOTAVAIL");
    assert_eq!(reports[0]["cause"], "port_exhaustion");
    assert_eq!(reports[0]["pid"], std::process::id());
    assert_eq!(reports[0]["daddr"], "127.0.0.1");
    assert_eq!(reports[0]["dport"], server.port());
}
