//! Whatever is written to a trace reads back identical.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use portwatch::clock::WallClock;
use portwatch::event::{Cause, Comm, ConnClose, ConnectError, Direction, Event, Losses, Task};
use portwatch::input::{
    CallStack, Conntrack, ConntrackStats, HostInfo, Input, KernelCounters, LocalNetworks,
    NetnsInfo, SockState, SocketEntry, SocketOwner, SocketOwners, SocketTable, Sysctls, Workload,
};
use portwatch::tracefile::{Compression, Reader, Writer, synthetic};
use proptest::prelude::*;

fn write_all(inputs: &[Input]) -> Vec<u8> {
    let mut w = Writer::new(Vec::new()).unwrap();
    for i in inputs {
        w.append(i).unwrap();
    }
    w.finish().unwrap()
}

fn read_all(bytes: &[u8]) -> Vec<Input> {
    let mut r = Reader::new(bytes).unwrap();
    let inputs = r.by_ref().collect::<Result<Vec<_>, _>>().unwrap();
    assert_eq!(r.warnings(), &[]);
    inputs
}

/// Writes `inputs`, which must read back exactly; returns the written
/// file's minor format version.
fn round_trip_minor_version(inputs: &[Input]) -> u16 {
    let bytes = write_all(inputs);
    assert_eq!(read_all(&bytes), inputs);
    Reader::new(&bytes[..]).unwrap().minor_version()
}

/// A single-threaded process: the thread has the process's name.
fn task(comm: &str) -> Task {
    task_in_thread(comm, comm)
}

fn task_in_thread(comm: &str, thread: &str) -> Task {
    Task {
        pid: 4242,
        tid: 4250,
        comm: Comm::new(comm),
        thread: Comm::new(thread),
        cgroup_id: 12345,
    }
}

fn close(saddr: IpAddr, daddr: IpAddr, task: Option<Task>) -> ConnClose {
    ConnClose {
        handshake_ns: Some(45_000),
        saddr,
        sport: 40001,
        bytes: Some((517, 4096)),
        ..synthetic::closed_here(task, 4026532000, (daddr, 443), 5_000_000_000, 5_002_500_000)
    }
}

fn every_variant() -> Vec<Input> {
    let v4 = |a, b, c, d| IpAddr::V4(Ipv4Addr::new(a, b, c, d));
    let v6: IpAddr = "2001:db8::1".parse().unwrap();
    let mapped: IpAddr = IpAddr::V6("::ffff:10.1.2.3".parse::<Ipv6Addr>().unwrap());
    let mut inbound = close(v4(10, 0, 0, 1), v4(10, 0, 0, 2), None);
    inbound.direction = Direction::Inbound;
    inbound.sport = 80;
    inbound.dport = 51234;
    let mut failed = close(v6, IpAddr::V6(Ipv6Addr::LOCALHOST), Some(task("x")));
    failed.established = false;
    failed.handshake_ns = None;
    failed.bytes = None;
    failed.local_close = false;
    failed.peer_close = true;
    failed.errno = Some(111);
    failed.syn_retrans = 3;
    vec![
        Input::Host(HostInfo {
            hostname: "höst-ünicode".into(),
            kernel: "6.18.44-fc-v669".into(),
            clock: WallClock {
                mono_ns: 4_000_000_000,
                unix_ns: -5,
            },
            netns: 4026531840,
            sysctls: Sysctls {
                port_range: (1024, 65535),
                reserved_ports: vec![(8080, 8080), (40000, 40100)],
                tcp_tw_reuse: Some(2),
                tcp_tw_reuse_delay_ms: Some(1000),
                tcp_timestamps: Some(1),
                tcp_max_tw_buckets: Some(-1),
                tcp_fin_timeout: Some(60),
            },
        }),
        Input::Event(Event::Close(close(
            v4(127, 0, 0, 1),
            v4(127, 0, 0, 1),
            Some(task_in_thread(
                "a-very-long-process-name",
                "a-very-long-thread-name",
            )),
        ))),
        Input::Event(Event::Close(close(mapped, mapped, Some(task("curl"))))),
        Input::Event(Event::Close(inbound)),
        Input::Event(Event::Close(failed)),
        Input::Event(Event::ConnectError(ConnectError {
            ts_ns: 5_100_000_000,
            duration_ns: 7_000,
            task: Some(task("123456789012345")),
            netns: 0,
            daddr: v6,
            dport: 8443,
            errno: 99,
            cause: Cause::PortExhaustion,
            saw_syn_sent: false,
        })),
        Input::Event(Event::ConnectError(ConnectError {
            ts_ns: 5_000_000_000, // earlier than the previous record
            duration_ns: 0,
            task: None,
            netns: 1,
            daddr: v4(10, 9, 8, 7),
            dport: 0,
            errno: -3,
            cause: Cause::Other,
            saw_syn_sent: true,
        })),
        Input::Event(Event::Close(ConnClose {
            bound_port: true,
            ..close(v4(127, 0, 0, 1), v4(127, 0, 0, 2), Some(task("binder")))
        })),
        Input::Event(Event::ConnectError(ConnectError {
            ts_ns: 5_200_000_000,
            duration_ns: 3_000,
            task: Some(task("binder")),
            netns: 0,
            daddr: v4(127, 0, 0, 2),
            dport: 81,
            errno: 99,
            cause: Cause::PortInUse,
            saw_syn_sent: true,
        })),
        Input::Event(Event::BindError(portwatch::event::BindError {
            ts_ns: 5_300_000_000,
            duration_ns: 2_000,
            task: Some(task_in_thread("binder", "worker-1")),
            netns: 4026531840,
            saddr: v6,
            sport: 0,
            errno: 98,
        })),
        Input::Event(Event::BindError(portwatch::event::BindError {
            ts_ns: 5_300_000_001,
            duration_ns: 0,
            task: None,
            netns: 0,
            saddr: v4(127, 0, 0, 1),
            sport: 5555,
            errno: 13,
        })),
        Input::Tick {
            now_ns: 6_000_000_000,
        },
        Input::Cgroup {
            id: 777,
            path: Some("/system.slice/nginx.service".into()),
        },
        Input::Cgroup {
            id: 778,
            path: None,
        },
        Input::Sockets(SocketTable {
            ts_ns: 6_000_000_001,
            netns: 4026531840,
            entries: vec![
                SocketEntry {
                    state: SockState::TimeWait,
                    saddr: v4(127, 0, 0, 1),
                    sport: 40001,
                    daddr: v4(127, 0, 0, 1),
                    dport: 443,
                    expires_ms: 59_000,
                    uid: 0,
                    inode: 0,
                },
                SocketEntry {
                    state: SockState::Other(10),
                    saddr: mapped,
                    sport: 80,
                    daddr: v6,
                    dport: 0,
                    expires_ms: 0,
                    uid: 1000,
                    inode: u32::MAX,
                },
                SocketEntry {
                    state: SockState::Established,
                    saddr: v6,
                    sport: 1,
                    daddr: v6,
                    dport: 2,
                    expires_ms: 1,
                    uid: 2,
                    inode: 3,
                },
                SocketEntry {
                    state: SockState::SynSent,
                    saddr: v4(0, 0, 0, 0),
                    sport: 65535,
                    daddr: v4(255, 255, 255, 255),
                    dport: 65535,
                    expires_ms: u32::MAX,
                    uid: u32::MAX,
                    inode: 1,
                },
            ],
            without_time_wait: false,
        }),
        Input::Sockets(SocketTable::default()),
        Input::Sockets(SocketTable {
            without_time_wait: true,
            ..SocketTable::default()
        }),
        Input::Counters(KernelCounters {
            ts_ns: 6_000_000_002,
            tcp_inuse: 10,
            tcp_tw: 28_000,
            tw: u64::MAX,
            tw_recycled: 0,
            tw_overflow: 3,
            conntrack: Some(Conntrack {
                count: 20,
                max: None,
                stats: None,
            }),
        }),
        Input::Networks(LocalNetworks {
            ts_ns: 6_000_000_003,
            netns: 4026531840,
            nets: vec![
                (v4(10, 0, 1, 5), 24),
                (v6, 64),
                (IpAddr::V6(Ipv6Addr::LOCALHOST), 128),
            ],
        }),
        Input::Losses {
            ts_ns: u64::MAX,
            losses: Losses {
                ringbuf_lost: 1,
                sock_evicted: 2,
                connect_untracked: 3,
                decode_errors: 4,
                probe_errors: 5,
                kernel_missed: 6,
            },
        },
        Input::Tick { now_ns: 0 },
    ]
}

#[test]
fn every_input_variant_round_trips() {
    let inputs = every_variant();
    assert_eq!(read_all(&write_all(&inputs)), inputs);
}

#[test]
fn ipv4_mapped_ipv6_stays_ipv6() {
    let inputs = every_variant();
    let back = read_all(&write_all(&inputs));
    let Input::Event(Event::Close(c)) = &back[2] else {
        panic!("not a close: {:?}", back[2]);
    };
    assert!(c.saddr.is_ipv6(), "{}", c.saddr);
    assert_eq!(c.saddr.to_string(), "::ffff:10.1.2.3");
}

#[test]
fn fifteen_byte_comm_names_survive_and_longer_ones_are_truncated_like_the_kernel() {
    let back = read_all(&write_all(&every_variant()));
    let comm = |i: usize| match &back[i] {
        Input::Event(e) => e.task().unwrap().comm.to_string(),
        other => panic!("not an event: {other:?}"),
    };
    assert_eq!(comm(1), "a-very-long-pro");
    assert_eq!(comm(5), "123456789012345");
    let thread = |i: usize| match &back[i] {
        Input::Event(e) => e.task().unwrap().thread.to_string(),
        other => panic!("not an event: {other:?}"),
    };
    assert_eq!(thread(1), "a-very-long-thr");
    assert_eq!(thread(5), "123456789012345");
}

#[test]
fn a_stream_spanning_many_frames_round_trips() {
    // Small flushes force many frames: dictionaries and timestamp bases
    // restart in each, and must not leak between them.
    let inputs = synthetic::churn(5_000, 5_000);
    let mut w = Writer::new(Vec::new()).unwrap();
    for (i, input) in inputs.iter().enumerate() {
        w.append(input).unwrap();
        if i % 97 == 0 {
            w.flush().unwrap();
        }
    }
    let bytes = w.finish().unwrap();
    assert_eq!(read_all(&bytes), inputs);
}

#[test]
fn runs_and_alternations_of_tasks_destinations_and_addresses_round_trip() {
    // The encoder checks the entry it used last before its dictionaries:
    // runs of one connection shape (hits), the two ends of a loopback
    // connection in turn (the same destination from both sides), a second
    // task and destination cutting in (misses), connect errors to a
    // destination a close defined, a socket table repeating and then
    // adding addresses, and frames ending in between (the memory must
    // not outlive its frame).
    let v4 = |d| IpAddr::V4(Ipv4Addr::new(10, 0, 0, d));
    let mut inputs = every_variant()[..1].to_vec();
    let (a, b) = (task("client"), task_in_thread("other", "worker"));
    let mut port = 40_000u16;
    for i in 0..400u64 {
        let t = if i % 7 == 3 { b } else { a };
        let server = if i % 11 == 5 { v4(9) } else { v4(2) };
        let mut out = close(v4(1), server, Some(t));
        port = port.wrapping_add(1 + (i % 3) as u16);
        out.sport = port;
        out.end_ns += i * 1_000;
        let mut inb = out;
        inb.direction = Direction::Inbound;
        inb.task = None;
        (inb.saddr, inb.sport, inb.daddr, inb.dport) = (server, 443, v4(1), port);
        inputs.push(Input::Event(Event::Close(out)));
        inputs.push(Input::Event(Event::Close(inb)));
        if i % 13 == 0 {
            inputs.push(Input::Event(Event::ConnectError(ConnectError {
                ts_ns: out.end_ns,
                duration_ns: 10,
                task: Some(t),
                netns: out.netns,
                daddr: server,
                dport: 443,
                errno: 99,
                cause: Cause::AddressUnavailable,
                saw_syn_sent: false,
            })));
        }
        if i % 50 == 0 {
            // Both socket records: with and without TIME_WAIT.
            let without_time_wait = i % 100 == 50;
            let entry = |s, d| SocketEntry {
                state: if without_time_wait {
                    SockState::Established
                } else {
                    SockState::TimeWait
                },
                saddr: s,
                sport: 40_001,
                daddr: d,
                dport: 443,
                expires_ms: 100,
                uid: 0,
                inode: 0,
            };
            inputs.push(Input::Sockets(SocketTable {
                ts_ns: out.end_ns,
                netns: out.netns,
                entries: vec![
                    entry(v4(1), v4(2)),
                    entry(v4(1), v4(2)),
                    entry(v4(3), v4(3)),
                    entry(v4(1), v4(4 + (i / 50) as u8)),
                ],
                without_time_wait,
            }));
        }
    }
    let mut w = Writer::new(Vec::new()).unwrap();
    for (i, input) in inputs.iter().enumerate() {
        w.append(input).unwrap();
        if i % 89 == 0 {
            w.flush().unwrap();
        }
    }
    let bytes = w.finish().unwrap();
    assert_eq!(read_all(&bytes), inputs);
    assert_eq!(read_all(&write_all(&inputs)), inputs);
}

#[test]
fn zstd_frames_round_trip_and_are_smaller() {
    let inputs = synthetic::churn(20_000, 5_000);
    let plain = write_all(&inputs);
    let mut w = Writer::new(Vec::new()).unwrap();
    w.set_compression(Compression::Zstd(1)).unwrap();
    for i in &inputs {
        w.append(i).unwrap();
    }
    let packed = w.finish().unwrap();
    assert!(
        packed.len() < plain.len(),
        "{} vs {}",
        packed.len(),
        plain.len()
    );
    assert_eq!(read_all(&packed), inputs);
}

#[test]
fn a_frame_that_does_not_compress_is_stored_plain() {
    // One tiny record: zstd's own header would make it bigger.
    let inputs = [Input::Host(synthetic::host(1))];
    let mut w = Writer::new(Vec::new()).unwrap();
    w.set_compression(Compression::Zstd(1)).unwrap();
    w.append(&inputs[0]).unwrap();
    let bytes = w.finish().unwrap();
    let kind = bytes[portwatch::tracefile::HEADER_BYTES + 8];
    assert_eq!(kind, portwatch::tracefile::FRAME_PLAIN);
    assert_eq!(read_all(&bytes), inputs);
}

#[test]
fn a_large_stream_fills_frames_by_itself() {
    let inputs = synthetic::churn(60_000, 5_000);
    let bytes = write_all(&inputs);
    assert!(bytes.len() > 2 * portwatch::tracefile::FRAME_TARGET_BYTES);
    assert_eq!(read_all(&bytes), inputs);
}

#[test]
fn a_hundred_thousand_distinct_destinations_round_trip() {
    // The engine bench's "many destinations" mix, in one unflushed stream.
    let mut inputs = vec![Input::Host(synthetic::host(0))];
    let base = close(
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        Some(task("fanout")),
    );
    for i in 0..100_000u32 {
        let mut c = base;
        c.daddr = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
        c.dport = (i % 50_000) as u16;
        c.end_ns += u64::from(i);
        inputs.push(Input::Event(Event::Close(c)));
    }
    assert_eq!(read_all(&write_all(&inputs)), inputs);
}

#[test]
fn a_socket_table_with_more_addresses_than_a_dictionary_holds_round_trips() {
    // 80k distinct addresses in one record: the first 65,536 are interned,
    // the rest stored inline; the next record needs a new frame for its
    // own definitions.
    let entries: Vec<SocketEntry> = (0..40_000u32)
        .map(|i| SocketEntry {
            state: SockState::TimeWait,
            saddr: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + 2 * i)),
            sport: (i % 60_000) as u16,
            daddr: IpAddr::V6(Ipv6Addr::from(u128::from(2 * i + 1))),
            dport: 443,
            expires_ms: 60_000,
            uid: 0,
            inode: 0,
        })
        .collect();
    let inputs = vec![
        Input::Host(synthetic::host(0)),
        Input::Sockets(SocketTable {
            ts_ns: 1,
            netns: 0,
            entries,
            without_time_wait: false,
        }),
        Input::Event(Event::Close(close(
            IpAddr::V4(Ipv4Addr::new(192, 168, 1, 1)),
            IpAddr::V4(Ipv4Addr::new(192, 168, 1, 2)),
            Some(task("after")),
        ))),
    ];
    assert_eq!(read_all(&write_all(&inputs)), inputs);
}

#[test]
fn a_trace_with_only_a_header_has_no_inputs() {
    let bytes = Writer::new(Vec::new()).unwrap().finish().unwrap();
    assert_eq!(bytes.len(), portwatch::tracefile::HEADER_BYTES);
    assert_eq!(read_all(&bytes), vec![]);
}

#[test]
fn the_first_input_must_be_the_host() {
    let mut w = Writer::new(Vec::new()).unwrap();
    let err = w.append(&Input::Tick { now_ns: 1 }).unwrap_err();
    assert!(err.to_string().contains("host"), "{err}");
}

#[test]
fn the_writer_counts_what_it_wrote() {
    let inputs = every_variant();
    let mut w = Writer::new(Vec::new()).unwrap();
    for i in &inputs {
        w.append(i).unwrap();
    }
    assert_eq!(w.inputs(), inputs.len() as u64);
    assert_eq!(w.events(), 10);
    let pending = w.pending_bytes() as u64;
    assert!(pending > 0);
    w.flush().unwrap();
    assert_eq!(w.pending_bytes(), 0);
    let expected = w.bytes_written();
    assert_eq!(w.finish().unwrap().len() as u64, expected);
}

#[test]
fn created_files_are_private_and_not_overwritten_without_force() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.pwtrace");
    let mut w = Writer::create(&path, false).unwrap();
    w.append(&every_variant()[0]).unwrap();
    w.sync().unwrap();
    drop(w);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let err = Writer::create(&path, false).err().unwrap();
    assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
    // The refused attempt left the file alone.
    assert_eq!(
        Reader::open(&path).unwrap().count(),
        1,
        "the existing trace must be intact"
    );

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let w = Writer::create(&path, true).unwrap();
    drop(w.finish().unwrap());
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.len(), portwatch::tracefile::HEADER_BYTES as u64);
}

#[test]
fn force_does_not_write_through_a_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let link = dir.path().join("t.pwtrace");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    assert!(Writer::create(&link, true).is_err());
    assert!(Writer::create(&link, false).is_err());
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
}

// ---- property test: arbitrary streams ----

fn arb_addr() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        // A few fixed ones so that dictionaries get reused.
        Just(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        Just(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        any::<[u8; 4]>().prop_map(|b| IpAddr::V4(b.into())),
        any::<[u8; 16]>().prop_map(|b| IpAddr::V6(b.into())),
        any::<[u8; 4]>().prop_map(|b| IpAddr::V6(Ipv4Addr::from(b).to_ipv6_mapped())),
    ]
}

fn arb_task() -> impl Strategy<Value = Task> {
    (
        0u32..4,
        any::<u32>(),
        "[a-z0-9 ./:-]{0,20}",
        // None: a single-threaded process, the thread named like it.
        proptest::option::of("[a-z0-9 ./:-]{0,20}"),
        any::<u64>(),
    )
        .prop_map(|(pid, tid, comm, thread, cgroup_id)| Task {
            pid,
            tid: tid % 3,
            comm: Comm::new(&comm),
            thread: Comm::new(thread.as_deref().unwrap_or(&comm)),
            cgroup_id: cgroup_id % 2,
        })
}

fn arb_close() -> impl Strategy<Value = ConnClose> {
    (
        (any::<u64>(), any::<u64>(), any::<Option<u64>>()),
        proptest::option::of(arb_task()),
        (any::<u32>(), any::<bool>(), arb_addr(), any::<u16>()),
        (arb_addr(), any::<u16>(), any::<Option<(u64, u64)>>()),
        (any::<[bool; 3]>(), any::<Option<i32>>(), any::<u32>()),
    )
        .prop_map(
            |(
                (start_ns, end_ns, handshake_ns),
                task,
                (netns, inbound, saddr, sport),
                (daddr, dport, bytes),
                ([local_close, peer_close, established], errno, syn_retrans),
            )| ConnClose {
                start_ns,
                end_ns,
                handshake_ns,
                task,
                netns: netns % 3,
                direction: if inbound {
                    Direction::Inbound
                } else {
                    Direction::Outbound
                },
                saddr,
                sport,
                daddr,
                dport: dport % 4,
                bytes,
                local_close,
                peer_close,
                established,
                errno,
                // Mostly 0 (no record written), sometimes any count.
                syn_retrans: if syn_retrans % 4 == 0 { syn_retrans } else { 0 },
                bound_port: false,
            },
        )
}

fn arb_connect_error() -> impl Strategy<Value = ConnectError> {
    (
        (any::<u64>(), any::<u64>(), proptest::option::of(arb_task())),
        (any::<u32>(), arb_addr(), any::<u16>(), any::<i32>()),
        (0u8..3, any::<bool>()),
    )
        .prop_map(
            |((ts_ns, duration_ns, task), (netns, daddr, dport, errno), (cause, saw_syn_sent))| {
                ConnectError {
                    ts_ns,
                    duration_ns,
                    task,
                    netns,
                    daddr,
                    dport,
                    errno,
                    cause: [
                        Cause::PortExhaustion,
                        Cause::AddressUnavailable,
                        Cause::Other,
                    ][cause as usize],
                    saw_syn_sent,
                }
            },
        )
}

fn arb_sock_state() -> impl Strategy<Value = SockState> {
    prop_oneof![
        Just(SockState::Established),
        Just(SockState::SynSent),
        Just(SockState::TimeWait),
        any::<u8>().prop_map(SockState::Other),
    ]
}

fn arb_socket_entry() -> impl Strategy<Value = SocketEntry> {
    (
        arb_sock_state(),
        (arb_addr(), any::<u16>(), arb_addr(), any::<u16>()),
        (any::<u32>(), any::<u32>(), any::<u32>()),
    )
        .prop_map(
            |(state, (saddr, sport, daddr, dport), (expires_ms, uid, inode))| SocketEntry {
                state,
                saddr,
                sport,
                daddr,
                dport,
                expires_ms,
                uid,
                inode,
            },
        )
}

fn arb_host() -> impl Strategy<Value = HostInfo> {
    (
        (
            ".{0,30}",
            ".{0,30}",
            any::<u64>(),
            any::<i64>(),
            any::<u32>(),
        ),
        (
            any::<(u16, u16)>(),
            proptest::collection::vec(any::<(u16, u16)>(), 0..4),
            any::<[Option<i64>; 5]>(),
        ),
    )
        .prop_map(
            |((hostname, kernel, mono_ns, unix_ns, netns), (port_range, reserved_ports, o))| {
                HostInfo {
                    hostname,
                    kernel,
                    clock: WallClock { mono_ns, unix_ns },
                    netns,
                    sysctls: Sysctls {
                        port_range,
                        reserved_ports,
                        tcp_tw_reuse: o[0],
                        tcp_tw_reuse_delay_ms: o[1],
                        tcp_timestamps: o[2],
                        tcp_max_tw_buckets: o[3],
                        tcp_fin_timeout: o[4],
                    },
                }
            },
        )
}

fn arb_netns() -> impl Strategy<Value = NetnsInfo> {
    (
        (any::<u64>(), any::<u32>(), any::<bool>()),
        proptest::option::of(arb_host().prop_map(|h| h.sysctls)),
        proptest::option::of(any::<[u64; 5]>()),
        proptest::option::of(".{0,40}"),
    )
        .prop_map(
            |((ts_ns, netns, stale), sysctls, counters, error)| NetnsInfo {
                ts_ns,
                netns,
                sysctls,
                // A reading's counters carry the reading's time.
                counters: counters.map(|v| KernelCounters {
                    ts_ns,
                    tcp_inuse: v[0],
                    tcp_tw: v[1],
                    tw: v[2],
                    tw_recycled: v[3],
                    tw_overflow: v[4],
                    conntrack: None,
                }),
                error,
                stale,
            },
        )
}

fn arb_conntrack() -> impl Strategy<Value = Option<Conntrack>> {
    proptest::option::of(
        (
            any::<u64>(),
            any::<Option<u64>>(),
            any::<Option<(u64, u64, u64)>>(),
        )
            .prop_map(|(count, max, stats)| Conntrack {
                count,
                max,
                stats: stats.map(|(insert_failed, drop, early_drop)| ConntrackStats {
                    insert_failed,
                    drop,
                    early_drop,
                }),
            }),
    )
}

fn arb_workload() -> impl Strategy<Value = Workload> {
    (
        "[0-9a-f-]{0,64}",
        "[a-z-]{0,12}",
        proptest::option::of(".{0,20}"),
        proptest::option::of(".{0,40}"),
        proptest::option::of(".{0,20}"),
    )
        .prop_map(
            |(id, source, pod_namespace, pod_name, container)| Workload {
                id,
                source,
                pod_namespace,
                pod_name,
                container,
            },
        )
}

fn arb_input() -> impl Strategy<Value = Input> {
    prop_oneof![
        6 => arb_close().prop_map(|c| Input::Event(Event::Close(c))),
        2 => arb_connect_error().prop_map(|e| Input::Event(Event::ConnectError(e))),
        1 => arb_host().prop_map(Input::Host),
        1 => any::<u64>().prop_map(|now_ns| Input::Tick { now_ns }),
        1 => (any::<u64>(), proptest::option::of(".{0,40}"))
            .prop_map(|(id, path)| Input::Cgroup { id, path }),
        1 => (any::<u64>(), any::<u32>(), proptest::collection::vec(arb_socket_entry(), 0..6), any::<bool>())
            .prop_map(|(ts_ns, netns, entries, without_time_wait)| Input::Sockets(SocketTable { ts_ns, netns, entries, without_time_wait })),
        1 => (any::<[u64; 6]>(), arb_conntrack()).prop_map(|(v, conntrack)| Input::Counters(KernelCounters {
            ts_ns: v[0], tcp_inuse: v[1], tcp_tw: v[2], tw: v[3], tw_recycled: v[4], tw_overflow: v[5],
            conntrack,
        })),
        1 => (any::<u64>(), any::<u32>(), proptest::collection::vec((arb_addr(), any::<u8>()), 0..5))
            .prop_map(|(ts_ns, netns, nets)| Input::Networks(LocalNetworks {
                ts_ns,
                netns,
                nets: nets
                    .into_iter()
                    .map(|(a, len)| (a, len % if a.is_ipv4() { 33 } else { 129 }))
                    .collect(),
            })),
        1 => any::<[u64; 7]>().prop_map(|v| Input::Losses {
            ts_ns: v[0],
            losses: Losses { ringbuf_lost: v[1], sock_evicted: v[2], connect_untracked: v[3], decode_errors: v[4], probe_errors: v[5], kernel_missed: v[6] },
        }),
        1 => arb_netns().prop_map(Input::Netns),
        1 => arb_workload().prop_map(Input::Workload),
    ]
}

fn arb_stream() -> impl Strategy<Value = (Vec<Input>, Vec<usize>)> {
    (
        arb_host(),
        proptest::collection::vec(arb_input(), 0..60),
        proptest::collection::vec(0usize..60, 0..4),
    )
        .prop_map(|(h, rest, flushes)| {
            let mut v = vec![Input::Host(h)];
            v.extend(rest);
            (v, flushes)
        })
}

fn arb_compression() -> impl Strategy<Value = Compression> {
    prop_oneof![
        Just(Compression::None),
        (1i32..4).prop_map(Compression::Zstd)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn arbitrary_streams_round_trip(
        (inputs, flush_after) in arb_stream(),
        compression in arb_compression(),
    ) {
        let mut w = Writer::new(Vec::new()).unwrap();
        w.set_compression(compression).unwrap();
        for (i, input) in inputs.iter().enumerate() {
            w.append(input).unwrap();
            if flush_after.contains(&i) {
                w.flush().unwrap();
            }
        }
        let bytes = w.finish().unwrap();
        prop_assert_eq!(read_all(&bytes), inputs);
    }
}

/// A namespace's readings, a failed one and a stale one, between events:
/// read back as written, and the time chain of the records after them
/// intact (netns records carry absolute times).
#[test]
fn namespace_readings_round_trip_between_events() {
    let host = synthetic::host(1_000);
    let ns_sysctls = Sysctls {
        port_range: (40_000, 40_999),
        reserved_ports: vec![(40_100, 40_109)],
        tcp_tw_reuse: Some(0),
        tcp_timestamps: Some(1),
        ..Sysctls::default()
    };
    let reading = NetnsInfo {
        ts_ns: 5_000,
        netns: 4_026_532_999,
        sysctls: Some(ns_sysctls),
        counters: Some(KernelCounters {
            ts_ns: 5_000,
            tcp_inuse: 3,
            tcp_tw: 998,
            tw: 10,
            tw_recycled: 0,
            tw_overflow: 0,
            conntrack: Some(Conntrack {
                count: 20,
                max: Some(262_144),
                stats: Some(ConntrackStats {
                    insert_failed: 1,
                    drop: 2,
                    early_drop: 3,
                }),
            }),
        }),
        error: None,
        stale: false,
    };
    let failed = NetnsInfo {
        ts_ns: 9_000,
        netns: 4_026_533_000,
        error: Some("cannot enter it (setns: Operation not permitted)".into()),
        ..NetnsInfo::default()
    };
    let stale = NetnsInfo {
        ts_ns: 12_000,
        netns: reading.netns,
        stale: true,
        error: Some("no task left in it (last known values)".into()),
        ..NetnsInfo::default()
    };
    let inputs = vec![
        Input::Host(host),
        Input::Tick { now_ns: 4_000 },
        Input::Netns(reading),
        Input::Tick { now_ns: 6_000 },
        Input::Netns(failed),
        Input::Netns(stale),
        Input::Tick { now_ns: 13_000 },
    ];
    assert_eq!(
        round_trip_minor_version(&inputs),
        portwatch::tracefile::MINOR_VERSION
    );
}

/// Runtime names (format 1.4) between events: read back as written, and
/// the time chain of the records after them intact.
#[test]
fn workload_names_round_trip_between_events() {
    let names = Workload {
        id: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0".into(),
        source: "pod-logs".into(),
        pod_namespace: Some("checkout".into()),
        pod_name: Some("api-7f9c".into()),
        container: None,
    };
    let docker = Workload {
        id: "4f2b6a1c9d3e".repeat(5),
        source: "docker".into(),
        container: Some("web".into()),
        ..Workload::default()
    };
    let inputs = vec![
        Input::Host(synthetic::host(1_000)),
        Input::Tick { now_ns: 4_000 },
        Input::Workload(names),
        Input::Tick { now_ns: 6_000 },
        Input::Workload(docker),
        Input::Tick { now_ns: 13_000 },
    ];
    assert!(round_trip_minor_version(&inputs) >= 4);
}

#[test]
fn socket_owners_round_trip_and_keep_the_time_chain() {
    let host = synthetic::host(1_000);
    let owners = SocketOwners {
        ts_ns: 7_000,
        owners: vec![
            SocketOwner {
                inode: 41_234,
                pid: 4242,
                comm: Comm::new("leaky-client"),
                cgroup_id: 9_876,
            },
            SocketOwner {
                inode: 41_235,
                pid: 4242,
                comm: Comm::new(""),
                cgroup_id: 0,
            },
        ],
        not_found: 3,
        failed: 1,
    };
    let inputs = vec![
        Input::Host(host),
        Input::Tick { now_ns: 6_000 },
        Input::SocketOwners(owners),
        Input::SocketOwners(SocketOwners {
            ts_ns: 9_000,
            ..SocketOwners::default()
        }),
        Input::Tick { now_ns: 10_000 },
    ];
    assert!(round_trip_minor_version(&inputs) >= 3);
}

/// Symbolized connect() stacks (format 1.4, record 0x90): read back as
/// written, between events whose time chain stays intact, IPv4 and IPv6,
/// with and without a note, and an empty stack (capture failed).
#[test]
fn call_stacks_round_trip_between_events() {
    let host = synthetic::host(1_000);
    let t = task("client");
    let close = |end_ns: u64| {
        let to = (IpAddr::V4(Ipv4Addr::LOCALHOST), 80);
        Input::Event(Event::Close(ConnClose {
            handshake_ns: Some(100),
            ..synthetic::closed_here(Some(t), 7, to, end_ns - 500, end_ns)
        }))
    };
    let stack = |ts_ns: u64, daddr: IpAddr, frames: &[&str], note: Option<&str>| {
        Input::CallStack(CallStack {
            ts_ns,
            task: t,
            netns: 7,
            daddr,
            dport: 80,
            frames: frames.iter().map(|s| s.to_string()).collect(),
            note: note.map(str::to_string),
        })
    };
    let inputs = vec![
        Input::Host(host),
        close(5_000),
        stack(
            4_500,
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            &[
                "__libc_connect (connect.c:26)",
                "open_unpooled_connection (client.c:27)",
            ],
            None,
        ),
        close(6_000),
        stack(
            5_500,
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            &["0x7f00dead", "0x401000"],
            Some("process 9 exited before its stack was symbolized: raw addresses"),
        ),
        stack(
            5_600,
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            &[],
            Some("bpf_get_stackid: EEXIST"),
        ),
        Input::Tick { now_ns: 7_000 },
    ];
    assert!(round_trip_minor_version(&inputs) >= 5);
}

/// Format 1.8: the client runtime record (0x91) reads back as written, so
/// replay and report tailor the same fix as the live run did.
#[test]
fn client_runtimes_round_trip() {
    let rt = |pid: u32, exe: &str, name: &str, evidence: &str| {
        Input::Runtime(portwatch::input::ProcRuntime {
            pid,
            exe: exe.into(),
            name: name.into(),
            evidence: evidence.into(),
        })
    };
    let inputs = vec![
        Input::Host(synthetic::host(0)),
        Input::Tick { now_ns: 1_000 },
        rt(42, "/usr/bin/python3.11", "Python", "executable python3.11"),
        rt(
            43,
            "/srv/api (deleted)",
            "Go",
            "Go build info (.go.buildinfo) in api",
        ),
        rt(44, "", "native", ""),
        Input::Tick { now_ns: 2_000 },
    ];
    assert_eq!(
        round_trip_minor_version(&inputs),
        portwatch::tracefile::MINOR_VERSION
    );
}

/// A table read without TIME_WAIT (format 1.9, record 0x86): read back
/// marked as such, beside full ones, its addresses shared with the frame's
/// dictionary, and the time chain of the records around it intact (a
/// namespace's table may be older than the events before it).
#[test]
fn socket_tables_without_time_wait_round_trip_and_keep_the_time_chain() {
    let v4 = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));
    let v6: IpAddr = "2001:db8::7".parse().unwrap();
    let entry = |state, saddr, daddr, sport| SocketEntry {
        state,
        saddr,
        sport,
        daddr,
        dport: 443,
        expires_ms: 0,
        uid: 1000,
        inode: 77,
    };
    let full = SocketTable {
        ts_ns: 5_000,
        netns: 4_026_531_840,
        entries: vec![
            SocketEntry {
                expires_ms: 59_000,
                uid: 0,
                inode: 0,
                ..entry(SockState::TimeWait, v4, v4, 40_001)
            },
            entry(SockState::Established, v4, v4, 40_002),
        ],
        without_time_wait: false,
    };
    let partial = SocketTable {
        ts_ns: 6_500,
        netns: 4_026_532_999,
        entries: vec![
            entry(SockState::Established, v4, v4, 40_003),
            entry(SockState::Other(8), v6, v6, 40_004),
        ],
        without_time_wait: true,
    };
    let inputs = vec![
        Input::Host(synthetic::host(1_000)),
        Input::Event(Event::Close(close(v4, v4, Some(task("curl"))))),
        Input::Sockets(full),
        Input::Tick { now_ns: 7_000 },
        Input::Sockets(partial.clone()),
        Input::Tick { now_ns: 8_000 },
        Input::Sockets(SocketTable {
            ts_ns: 9_000,
            ..partial
        }),
        Input::Event(Event::Close(close(v6, v6, None))),
    ];
    assert!(round_trip_minor_version(&inputs) >= 9);
}
