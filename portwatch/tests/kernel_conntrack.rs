//! Kernel test (root): the connection-tracking table of a network
//! namespace, as portwatch reads it, and the NAT judgement of a loopback
//! destination on the namespace's real interface networks.
//!
//! In a private network namespace (loopback only), an nftables rule with a
//! `ct state` match makes the kernel track that namespace's connections
//! (nf_conntrack_count is per namespace; the host's table is untouched).
//! 20 loopback connections are opened and kept, and one more is closed
//! (TIME_WAIT: its entry stays too). Two `top --batch --json`
//! watch it: one started inside the namespace (it is then portwatch's own:
//! the header), one in the host's with `--netns` (the namespace read from
//! inside by the netns worker). Both must show exactly 21 entries, the
//! host-wide `nf_conntrack_max`, no entry turned away, and the loopback
//! destination inside the host's own networks (no NAT port demand).
//!
//! Not tested here, because it cannot be done without touching the whole
//! host: a table that fills up (`nf_conntrack_max` is one limit for all
//! namespaces and can only be written in the initial one), and so the
//! drop/early_drop/insert_failed rates and the `conntrack_full` advice on
//! real drops (engine tests cover them on synthetic readings); NAT port
//! demand against a real gateway (no test traffic leaves loopback).

use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

mod common;
use common::{
    Netns, Tracer, client_exchange, kernel_tests_enabled, nft_load, row_where, start_server,
    top_batch_json_args,
};

const CONNECTIONS: u64 = 20;
const ITERATIONS: usize = 12;

/// Makes conntrack track the calling thread's namespace: a counter on new
/// outgoing connections (the rule accepts everything).
fn track_connections() {
    nft_load(
        "table inet pwct {\n  chain output {\n    type filter hook output priority 0;\n    \
         ct state new counter\n  }\n}\n",
    );
}

fn top_args(extra: &[&str]) -> Vec<String> {
    let iterations = ITERATIONS.to_string();
    let mut args = top_batch_json_args(&["--iterations", &iterations, "--resync", "1"]);
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn conntrack_of(snapshot: &Value, netns: u32) -> Option<&Value> {
    snapshot["namespaces"]
        .as_array()?
        .iter()
        .find(|n| n["netns"] == netns)
        .map(|n| &n["conntrack"])
}

fn count_is(v: Option<&Value>, n: u64) -> bool {
    v.is_some_and(|c| c["count"] == n && !c["drop_per_s"].is_null())
}

#[test]
fn a_namespaces_conntrack_table_is_read_in_it_and_loopback_is_no_nat() {
    if !kernel_tests_enabled() {
        return;
    }
    let ns = Netns::new("pwt-conntrack", &[]);
    let inode = ns.inode;
    let netns = inode.to_string();
    let (server, max) = ns.run(|| {
        track_connections();
        let addr = start_server("127.0.0.1:0");
        let max: u64 = std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_max")
            .expect("nf_conntrack_max (kernel without nf_conntrack?)")
            .trim()
            .parse()
            .expect("a number");
        (addr, max)
    });
    let mut inside = ns.start_portwatch(&top_args(&[]));
    let mut outside = Tracer::start(&top_args(&["--netns", &netns]));

    // Before any connection: tracked, and empty.
    assert!(
        inside.wait_for(Duration::from_secs(10), |s| {
            s.last()
                .is_some_and(|v| v["system"]["conntrack"]["count"] == 0)
        }),
        "inside: {:?}",
        inside.seen.last()
    );
    ns.run(move || {
        let mut keep: Vec<TcpStream> = Vec::new();
        for _ in 0..CONNECTIONS {
            keep.push(TcpStream::connect(server).expect("connect"));
        }
        // Kept open for the test's life: 20 established entries.
        std::mem::forget(keep);
        // One exchange closed by the client: its close event tells the
        // outside portwatch about the namespace (kept connections report
        // nothing until they close); its entry stays, in TIME_WAIT.
        client_exchange(server, 1);
    });
    let total = CONNECTIONS + 1;
    assert!(
        inside.wait_for(Duration::from_secs(20), |s| {
            s.last()
                .is_some_and(|v| count_is(Some(&v["system"]["conntrack"]), total))
        }),
        "inside: {:#?}",
        inside.seen.last()
    );
    assert!(
        outside.wait_for(Duration::from_secs(20), |s| {
            s.last()
                .is_some_and(|v| count_is(conntrack_of(v, inode), total))
        }),
        "outside: {:#?}",
        outside.seen.last().map(|v| &v["namespaces"])
    );
    let (_, seen) = inside.stop_successfully("inside");
    let last = seen.last().expect("a snapshot");
    let ct = &last["system"]["conntrack"];
    assert_eq!(ct["count"], total, "{ct}");
    assert_eq!(ct["max"], max, "{ct}");
    assert_eq!(ct["host"], true, "portwatch's own namespace: {ct}");
    for rate in ["drop_per_s", "early_drop_per_s", "insert_failed_per_s"] {
        assert_eq!(ct[rate], 0.0, "{rate}: {ct}");
    }
    let dest = row_where(last, "destinations", |d| d["dport"] == server.port());
    assert_eq!(dest["beyond_local_networks"], false, "{dest}");
    assert!(dest["nat_port_demand"].is_null(), "{dest}");
    let keys: Vec<&str> = last["system"]["advice"]
        .as_array()
        .expect("advice")
        .iter()
        .filter_map(|a| a["key"].as_str())
        .collect();
    for k in ["conntrack_full", "nat_port_demand", "nat_exhaustion_likely"] {
        assert!(!keys.contains(&k), "{k} in {keys:?}");
    }

    let (_, seen) = outside.stop_successfully("outside");
    let last = seen.last().expect("a snapshot");
    let ct = conntrack_of(last, inode).expect("the namespace's row");
    assert_eq!(ct["count"], total, "{ct}");
    assert_eq!(ct["max"], max, "{ct}");
    assert_eq!(ct["host"], false, "{ct}");
    assert_eq!(ct["drop_per_s"], 0.0, "{ct}");
    // Its destination is judged on the namespace's own networks (read in it).
    let dest = row_where(last, "destinations", |d| {
        d["netns"] == inode && d["dport"] == server.port()
    });
    assert_eq!(dest["beyond_local_networks"], false, "{dest}");
}
