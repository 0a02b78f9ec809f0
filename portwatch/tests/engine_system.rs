//! Collectors: parsing of /proc text from fixtures, and the sock_diag
//! reader against sockets this test opens (no root needed to read them).

use std::net::{TcpListener, TcpStream};

use portwatch::input::SockState;
use portwatch::system::procfs::*;
use portwatch::system::sockdiag::{
    Reader, STATES_ALL, STATES_WITHOUT_TIME_WAIT, parse_entry, raw_expires_ms, read_socket_table,
};

#[test]
fn parses_port_range_and_reserved_ports() {
    assert_eq!(parse_port_range("32768\t60999\n").unwrap(), (32768, 60999));
    assert!(parse_port_range("60999 32768").is_err());
    assert!(parse_port_range("x").is_err());
    assert_eq!(parse_reserved_ports("\n").unwrap(), vec![]);
    assert_eq!(
        parse_reserved_ports("8080,9000-9010\n").unwrap(),
        vec![(8080, 8080), (9000, 9010)]
    );
    assert!(parse_reserved_ports("80-x").is_err());
}

#[test]
fn reads_sysctls_from_a_directory_and_tolerates_missing_knobs() {
    let dir = std::env::temp_dir().join(format!("pw-sysctl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let w = |n: &str, v: &str| std::fs::write(dir.join(n), v).unwrap();
    w("ip_local_port_range", "40000\t40009\n");
    w("ip_local_reserved_ports", "40005\n");
    w("tcp_tw_reuse", "2\n");
    w("tcp_timestamps", "1\n");
    w("tcp_fin_timeout", "60\n");
    let s = read_sysctls(&dir).unwrap();
    assert_eq!(s.port_range, (40000, 40009));
    assert_eq!(s.reserved_ports, vec![(40005, 40005)]);
    assert_eq!(s.tcp_tw_reuse, Some(2));
    assert_eq!(
        s.tcp_tw_reuse_delay_ms, None,
        "knob absent before Linux 6.6"
    );
    assert_eq!(s.tcp_max_tw_buckets, None);
    assert_eq!(portwatch::engine::port_budget(&s), 9);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn parses_sockstat_and_netstat_fixtures() {
    let sockstat =
        "sockets: used 15\nTCP: inuse 7 orphan 0 tw 1234 alloc 9 mem 422\nUDP: inuse 0 mem 0\n";
    assert_eq!(parse_sockstat(sockstat).unwrap(), (7, 1234));
    assert!(parse_sockstat("UDP: inuse 0\n").is_err());
    let netstat = "TcpExt: SyncookiesSent TW TWRecycled TWKilled TCPTimeWaitOverflow\n\
                   TcpExt: 0 23 5 0 2\n\
                   IpExt: InNoRoutes InOctets\n\
                   IpExt: 0 12345\n";
    let c = counters_from(sockstat, netstat, 42).unwrap();
    assert_eq!((c.ts_ns, c.tcp_inuse, c.tcp_tw), (42, 7, 1234));
    assert_eq!((c.tw, c.tw_recycled, c.tw_overflow), (23, 5, 2));
    assert!(parse_netstat("TcpExt: A B\nIpExt: 1 2\n").is_err());
}

#[test]
fn parses_this_machines_proc_files() {
    let c = counters_from(
        include_str!("data/engine/sockstat.txt"),
        include_str!("data/engine/netstat.txt"),
        1,
    )
    .unwrap();
    assert_eq!(c.tw, 43, "TcpExt TW in the fixture");
    assert_eq!((c.tcp_inuse, c.tcp_tw), (2, 19));
}

#[test]
fn parses_namespace_links() {
    assert_eq!(parse_ns_link("net:[4026531840]"), Some(4026531840));
    assert_eq!(parse_ns_link("mnt:[1]"), None);
}

#[test]
fn reads_idiag_expires_at_its_fixed_offset() {
    let mut msg = vec![0u8; 16 + 72];
    msg[16 + 52..16 + 56].copy_from_slice(&41_500u32.to_ne_bytes());
    assert_eq!(raw_expires_ms(&msg), Some(41_500));
    assert_eq!(raw_expires_ms(&msg[..60]), None);
}

/// A `struct inet_diag_msg` as the kernel lays it out.
fn diag_msg(family: u8, state: u8, src: &[u8], dst: &[u8], ports: (u16, u16)) -> Vec<u8> {
    let mut m = vec![0u8; 72];
    m[0] = family;
    m[1] = state;
    m[4..6].copy_from_slice(&ports.0.to_be_bytes());
    m[6..8].copy_from_slice(&ports.1.to_be_bytes());
    m[8..8 + src.len()].copy_from_slice(src);
    m[24..24 + dst.len()].copy_from_slice(dst);
    m[52..56].copy_from_slice(&41_500u32.to_ne_bytes());
    m[64..68].copy_from_slice(&1000u32.to_ne_bytes());
    m[68..72].copy_from_slice(&4242u32.to_ne_bytes());
    m
}

#[test]
fn parses_inet_diag_msg_of_both_families() {
    let v4 = parse_entry(&diag_msg(
        2,
        6,
        &[127, 0, 0, 1],
        &[10, 0, 0, 7],
        (40_000, 80),
    ))
    .unwrap();
    assert_eq!(v4.state, SockState::TimeWait);
    assert_eq!(v4.saddr.to_string(), "127.0.0.1");
    assert_eq!(v4.daddr.to_string(), "10.0.0.7");
    assert_eq!((v4.sport, v4.dport), (40_000, 80));
    assert_eq!((v4.expires_ms, v4.uid, v4.inode), (41_500, 1000, 4242));
    let one: std::net::Ipv6Addr = "2001:db8::1".parse().unwrap();
    // An IPv4 peer of an IPv6 socket (v4-mapped) is counted as IPv4.
    let mapped: std::net::Ipv6Addr = "::ffff:10.0.0.7".parse().unwrap();
    let v6 = parse_entry(&diag_msg(
        10,
        1,
        &one.octets(),
        &mapped.octets(),
        (443, 51_000),
    ))
    .unwrap();
    assert_eq!(v6.state, SockState::Established);
    assert_eq!(v6.saddr.to_string(), "2001:db8::1");
    assert_eq!(v6.daddr.to_string(), "10.0.0.7");
    assert_eq!(
        parse_entry(&diag_msg(10, 10, &[], &[], (1, 0)))
            .unwrap()
            .state,
        SockState::Other(10)
    );
    // Too short, or a family that is neither.
    assert!(parse_entry(&diag_msg(2, 1, &[], &[], (1, 2))[..71]).is_none());
    assert!(parse_entry(&diag_msg(1, 1, &[], &[], (1, 2))).is_none());
}

#[test]
fn one_sock_diag_reading_has_both_families_and_only_the_states_asked() {
    let l4 = TcpListener::bind("127.0.0.1:0").unwrap();
    let l6 = TcpListener::bind("[::1]:0").unwrap();
    let (p4, p6) = (
        l4.local_addr().unwrap().port(),
        l6.local_addr().unwrap().port(),
    );
    let _c4 = TcpStream::connect(("127.0.0.1", p4)).unwrap();
    let _c6 = TcpStream::connect(("::1", p6)).unwrap();
    let mut r = Reader::new();
    let (t, cost) = r.read(7, 9, STATES_ALL).unwrap();
    assert_eq!((t.ts_ns, t.netns), (7, 9));
    assert_eq!(cost.sockets, t.entries.len());
    assert!(cost.datagrams >= 1 && cost.bytes >= 72 * cost.sockets);
    let has = |t: &portwatch::input::SocketTable, st: SockState, port: u16, v6: bool| {
        t.entries
            .iter()
            .any(|e| e.state == st && e.dport == port && e.daddr.is_ipv6() == v6)
    };
    assert!(
        has(&t, SockState::Established, p4, false),
        "{:?}",
        t.entries
    );
    assert!(has(&t, SockState::Established, p6, true), "{:?}", t.entries);
    assert!(
        t.entries
            .iter()
            .any(|e| e.state == SockState::Other(10) && e.sport == p6)
    );
    // The buffer is reused; a reading of ESTABLISHED only has no listener.
    let (t, _) = r.read(8, 9, 1 << 1).unwrap();
    assert!(has(&t, SockState::Established, p4, false));
    assert!(has(&t, SockState::Established, p6, true));
    assert!(
        t.entries.iter().all(|e| e.state == SockState::Established),
        "{:?}",
        t.entries
    );
}

#[test]
fn sock_diag_sees_a_listener_an_established_pair_and_time_wait() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    // One connection closed by the client first: TIME_WAIT on the client side.
    {
        let c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (s, _) = l.accept().unwrap();
        // No data: a server closing with unread data would send RST, which
        // ends the client's TIME_WAIT at once.
        drop(c);
        std::thread::sleep(std::time::Duration::from_millis(20));
        drop(s);
    }
    let open = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (_srv, _) = l.accept().unwrap();
    let t = read_socket_table(7, 0).unwrap();
    let to_port = |st: SockState| {
        t.entries
            .iter()
            .filter(|e| e.state == st && e.dport == port)
            .count()
    };
    assert!(to_port(SockState::Established) >= 1, "{:?}", t.entries);
    assert!(to_port(SockState::TimeWait) >= 1, "{:?}", t.entries);
    let tw = t
        .entries
        .iter()
        .find(|e| e.state == SockState::TimeWait && e.dport == port)
        .unwrap();
    assert!(
        (50_000..=60_000).contains(&tw.expires_ms),
        "{}",
        tw.expires_ms
    );
    assert!(
        t.entries
            .iter()
            .any(|e| e.state == SockState::Other(10) && e.sport == port)
    );
    assert!(!t.without_time_wait);
    // Without the TIME_WAIT bit: the same open sockets, no TIME_WAIT, and
    // the table says so (the engine then keeps what it knows of them).
    let (p, _) = Reader::new().read(8, 0, STATES_WITHOUT_TIME_WAIT).unwrap();
    assert!(p.without_time_wait);
    assert!(
        p.entries.iter().all(|e| e.state != SockState::TimeWait),
        "{:?}",
        p.entries
    );
    assert!(
        p.entries
            .iter()
            .any(|e| e.state == SockState::Established && e.dport == port),
        "{:?}",
        p.entries
    );
    drop(open);
}
