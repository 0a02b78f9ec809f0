//! Replays the fuzz target's seed corpus (portwatch/fuzz/corpus/read_trace)
//! through the same check the fuzzer runs, so that `cargo test` covers it
//! on machines without cargo-fuzz. Regenerate the seeds with
//! `cargo test -p portwatch --test tracefile_fuzz_corpus -- --ignored`.

use std::net::{IpAddr, Ipv6Addr};
use std::path::PathBuf;

use portwatch::event::{Cause, Comm, ConnClose, ConnectError, Direction, Event, Losses, Task};
use portwatch::input::{Input, KernelCounters, SockState, SocketEntry, SocketTable};
use portwatch::tracefile::{Writer, fuzz_read, synthetic};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/read_trace")
}

#[test]
fn the_seed_corpus_reads_without_panics_and_round_trips() {
    let mut n = 0;
    for entry in std::fs::read_dir(corpus_dir()).expect("the corpus directory") {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let r = std::panic::catch_unwind(|| fuzz_read(&data));
        assert!(r.is_ok(), "{} fails the fuzz check", path.display());
        n += 1;
    }
    assert!(n >= 5, "only {n} seeds in {}", corpus_dir().display());
}

/// One of everything, in two frames.
fn varied_trace() -> Vec<u8> {
    let v6: IpAddr = "2001:db8::7".parse().unwrap();
    let task = Task {
        pid: 77,
        tid: 78,
        comm: Comm::new("fifteen-chars-x"),
        thread: Comm::new("tokio-runtime-w"),
        cgroup_id: 9,
    };
    let mut w = Writer::new(Vec::new()).unwrap();
    for i in synthetic::churn(6, 1000) {
        w.append(&i).unwrap();
    }
    w.flush().unwrap();
    let inputs = [
        Input::Event(Event::Close(ConnClose {
            start_ns: 10,
            end_ns: 20,
            handshake_ns: None,
            task: None,
            netns: 5,
            direction: Direction::Inbound,
            saddr: IpAddr::V6(Ipv6Addr::LOCALHOST),
            sport: 443,
            daddr: v6,
            dport: 50000,
            bytes: None,
            local_close: false,
            peer_close: true,
            established: false,
            errno: Some(104),
            syn_retrans: 0,
            bound_port: false,
        })),
        Input::Event(Event::ConnectError(ConnectError {
            ts_ns: 30,
            duration_ns: 4,
            task: Some(task),
            netns: 5,
            daddr: v6,
            dport: 8080,
            errno: 99,
            cause: Cause::PortExhaustion,
            saw_syn_sent: false,
        })),
        Input::Cgroup {
            id: 9,
            path: Some("/a/b.service".into()),
        },
        Input::Cgroup { id: 10, path: None },
        Input::Sockets(SocketTable {
            ts_ns: 40,
            netns: 5,
            entries: vec![SocketEntry {
                state: SockState::Other(8),
                saddr: v6,
                sport: 1,
                daddr: IpAddr::V6(Ipv6Addr::LOCALHOST),
                dport: 2,
                expires_ms: 3,
                uid: 4,
                inode: 5,
            }],
            without_time_wait: false,
        }),
        Input::Counters(KernelCounters {
            ts_ns: 50,
            tcp_inuse: 1,
            tcp_tw: 2,
            tw: 3,
            tw_recycled: 4,
            tw_overflow: 5,
            conntrack: None,
        }),
        Input::Losses {
            ts_ns: 60,
            losses: Losses {
                ringbuf_lost: 1,
                sock_evicted: 0,
                connect_untracked: 0,
                decode_errors: 2,
                probe_errors: 0,
                kernel_missed: 0,
            },
        },
        Input::Tick { now_ns: 70 },
    ];
    for i in &inputs {
        w.append(i).unwrap();
    }
    w.finish().unwrap()
}

#[test]
#[ignore = "writes the seed corpus; run by hand after a format change"]
fn write_seed_corpus() {
    let dir = corpus_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let varied = varied_trace();
    let header_only = Writer::new(Vec::new()).unwrap().finish().unwrap();
    let mut host_only = Writer::new(Vec::new()).unwrap();
    host_only.append(&Input::Host(synthetic::host(1))).unwrap();
    let host_only = host_only.finish().unwrap();
    let seeds: [(&str, &[u8]); 6] = [
        ("varied", &varied),
        ("header-only", &header_only),
        ("host-only", &host_only),
        ("torn", &varied[..varied.len() - 5]),
        ("bad-magic", b"PWT\x00garbage"),
        ("churn", &{
            let mut w = Writer::new(Vec::new()).unwrap();
            for i in synthetic::churn(40, 5000) {
                w.append(&i).unwrap();
            }
            w.finish().unwrap()
        }),
    ];
    for (name, bytes) in seeds {
        std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
    }
}
