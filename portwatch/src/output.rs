//! `portwatch trace` output: aligned text columns or JSON Lines.
//!
//! The JSON field names are a stable interface (README, "JSON fields"):
//! every field is always present, `null` where it does not apply.

use std::io::{self, Write};
use std::net::IpAddr;

use serde::Serialize;

use crate::clock::WallClock;
use crate::errno;
use crate::event::{Cause, ConnClose, ConnectError, Event};

/// One line of `trace --json`.
#[derive(Serialize, Debug, PartialEq)]
pub struct JsonEvent {
    /// "close" or "connect_error".
    pub event: &'static str,
    /// RFC 3339, UTC, microseconds.
    pub time: String,
    /// The kernel's CLOCK_MONOTONIC timestamp of the event.
    pub ts_ns: u64,
    pub pid: Option<u32>,
    pub tid: Option<u32>,
    /// Process name (as `ps` shows it).
    pub comm: Option<String>,
    /// Name of the thread that connected.
    pub thread: Option<String>,
    pub cgroup_id: Option<u64>,
    /// Network namespace inode (as in `ls -l /proc/PID/ns/net`), null if unknown.
    pub netns: Option<u32>,
    /// "ipv4" or "ipv6".
    pub family: &'static str,
    pub saddr: Option<String>,
    pub sport: Option<u16>,
    pub daddr: String,
    pub dport: u16,
    /// "out" or "in".
    pub direction: &'static str,
    pub lifetime_us: Option<u64>,
    pub handshake_us: Option<u64>,
    pub bytes_sent: Option<u64>,
    pub bytes_received: Option<u64>,
    pub local_close: Option<bool>,
    pub established: Option<bool>,
    /// Symbolic errno of a failed connect or failed handshake.
    pub errno: Option<String>,
    /// "port_exhaustion", "address_unavailable", "refused", "timed_out",
    /// "aborted" (the application closed a connecting socket before any
    /// answer; `lifetime_us` is how long it waited), "reset",
    /// "unreachable", "other"; null for connections that worked.
    pub cause: Option<&'static str>,
}

fn family(a: &IpAddr) -> &'static str {
    match a {
        IpAddr::V4(_) => "ipv4",
        IpAddr::V6(_) => "ipv6",
    }
}

pub(crate) fn handshake_cause(errno: i32) -> &'static str {
    crate::event::FailCause::of_handshake_errno(errno).as_str()
}

impl JsonEvent {
    pub fn new(ev: &Event, clock: &WallClock) -> JsonEvent {
        match ev {
            Event::Close(c) => Self::close(c, clock),
            Event::ConnectError(e) => Self::connect_error(e, clock),
        }
    }

    fn close(c: &ConnClose, clock: &WallClock) -> JsonEvent {
        JsonEvent {
            event: "close",
            time: clock.rfc3339(c.end_ns),
            ts_ns: c.end_ns,
            pid: c.task.map(|t| t.pid),
            tid: c.task.map(|t| t.tid),
            comm: c.task.map(|t| t.comm.to_string()),
            thread: c.task.map(|t| t.thread.to_string()),
            cgroup_id: c.task.map(|t| t.cgroup_id),
            netns: (c.netns != 0).then_some(c.netns),
            family: family(&c.daddr),
            saddr: Some(c.saddr.to_string()),
            sport: Some(c.sport),
            daddr: c.daddr.to_string(),
            dport: c.dport,
            direction: c.direction.as_str(),
            lifetime_us: Some(c.lifetime_ns() / 1000),
            handshake_us: c.handshake_ns.map(|h| h / 1000),
            bytes_sent: c.bytes.map(|b| b.0),
            bytes_received: c.bytes.map(|b| b.1),
            local_close: Some(c.local_close),
            established: Some(c.established),
            errno: c.errno.map(errno::name),
            cause: c.failure().map(|f| f.as_str()),
        }
    }

    fn connect_error(e: &ConnectError, clock: &WallClock) -> JsonEvent {
        JsonEvent {
            event: "connect_error",
            time: clock.rfc3339(e.ts_ns),
            ts_ns: e.ts_ns,
            pid: e.task.map(|t| t.pid),
            tid: e.task.map(|t| t.tid),
            comm: e.task.map(|t| t.comm.to_string()),
            thread: e.task.map(|t| t.thread.to_string()),
            cgroup_id: e.task.map(|t| t.cgroup_id),
            netns: (e.netns != 0).then_some(e.netns),
            family: family(&e.daddr),
            saddr: None,
            sport: None,
            daddr: e.daddr.to_string(),
            dport: e.dport,
            direction: "out",
            lifetime_us: None,
            handshake_us: None,
            bytes_sent: None,
            bytes_received: None,
            local_close: None,
            established: Some(false),
            errno: Some(errno::name(e.errno)),
            cause: Some(e.failure().as_str()),
        }
    }
}

/// Header of the text output; columns line up with [`write_text`].
pub const TEXT_HEADER: &str = "TIME         PID     COMM            DIR LOCAL                        REMOTE                       LIFE_MS  CLOSED  RESULT";

fn endpoint(addr: &IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// Writes one aligned text line for `ev`.
pub fn write_text(w: &mut impl Write, ev: &Event, clock: &WallClock) -> io::Result<()> {
    let time = clock.local_hms(ev.ts_ns());
    let (pid, comm) = match ev.task() {
        Some(t) => (t.pid.to_string(), t.comm.to_string()),
        None => ("-".to_string(), "-".to_string()),
    };
    match ev {
        Event::Close(c) => {
            let closed = if c.local_close {
                "local"
            } else if c.peer_close {
                "peer"
            } else {
                "-"
            };
            let result = match (c.errno, c.failure()) {
                (Some(e), _) => format!("{} (handshake failed)", errno::name(e)),
                (None, Some(_)) => format!(
                    "aborted after {:.0} ms (no answer to the SYN)",
                    c.lifetime_ns() as f64 / 1e6
                ),
                (None, None) if !c.established => "not established".to_string(),
                (None, None) => "ok".to_string(),
            };
            writeln!(
                w,
                "{time:<12} {pid:<7} {comm:<15} {:<3} {:<28} {:<28} {:>8.3} {closed:<7} {result}",
                c.direction.as_str(),
                endpoint(&c.saddr, c.sport),
                endpoint(&c.daddr, c.dport),
                c.lifetime_ns() as f64 / 1e6,
            )
        }
        Event::ConnectError(e) => {
            let result = match e.cause {
                Cause::PortExhaustion => format!("{} (port exhaustion)", errno::name(e.errno)),
                Cause::AddressUnavailable => {
                    format!("{} (address/route, not ports)", errno::name(e.errno))
                }
                Cause::Other => format!("{} (connect failed)", errno::name(e.errno)),
            };
            writeln!(
                w,
                "{time:<12} {pid:<7} {comm:<15} {:<3} {:<28} {:<28} {:>8} {:<7} {result}",
                "out",
                "-",
                endpoint(&e.daddr, e.dport),
                "-",
                "-",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Comm, Direction, Task};

    const CLOCK: WallClock = WallClock {
        mono_ns: 0,
        unix_ns: 1_700_000_000_000_000_000,
    };

    fn task() -> Task {
        Task {
            pid: 4242,
            tid: 4243,
            comm: Comm::new("curl"),
            thread: Comm::new("curl-worker"),
            cgroup_id: 9,
        }
    }

    fn close() -> Event {
        Event::Close(ConnClose {
            start_ns: 1_000_000,
            end_ns: 3_500_000,
            handshake_ns: Some(80_000),
            task: Some(task()),
            netns: 4026532000,
            direction: Direction::Outbound,
            saddr: "127.0.0.1".parse().unwrap(),
            sport: 40001,
            daddr: "127.0.0.1".parse().unwrap(),
            dport: 8080,
            bytes: Some((100, 2000)),
            local_close: true,
            peer_close: false,
            established: true,
            errno: None,
        })
    }

    fn exhausted() -> Event {
        Event::ConnectError(ConnectError {
            ts_ns: 5_000_000,
            duration_ns: 10_000,
            task: Some(task()),
            netns: 0,
            daddr: "::1".parse().unwrap(),
            dport: 443,
            errno: 99,
            cause: Cause::PortExhaustion,
            saw_syn_sent: true,
        })
    }

    #[test]
    fn json_close_has_every_documented_field() {
        let v = serde_json::to_value(JsonEvent::new(&close(), &CLOCK)).unwrap();
        assert_eq!(v["event"], "close");
        assert_eq!(v["time"], "2023-11-14T22:13:20.003500Z");
        assert_eq!(v["pid"], 4242);
        assert_eq!(v["comm"], "curl");
        assert_eq!(v["thread"], "curl-worker");
        assert_eq!(v["family"], "ipv4");
        assert_eq!(v["saddr"], "127.0.0.1");
        assert_eq!(v["sport"], 40001);
        assert_eq!(v["dport"], 8080);
        assert_eq!(v["lifetime_us"], 2500);
        assert_eq!(v["handshake_us"], 80);
        assert_eq!(v["bytes_sent"], 100);
        assert_eq!(v["bytes_received"], 2000);
        assert_eq!(v["local_close"], true);
        assert_eq!(v["established"], true);
        assert_eq!(v["errno"], serde_json::Value::Null);
        assert_eq!(v["cause"], serde_json::Value::Null);
        assert_eq!(v["direction"], "out");
        assert_eq!(v["netns"], 4026532000u32);
    }

    #[test]
    fn json_connect_error_names_errno_and_cause() {
        let v = serde_json::to_value(JsonEvent::new(&exhausted(), &CLOCK)).unwrap();
        assert_eq!(v["event"], "connect_error");
        assert_eq!(v["family"], "ipv6");
        assert_eq!(v["daddr"], "::1");
        assert_eq!(v["errno"], "EADDRNOTAVAIL");
        assert_eq!(v["cause"], "port_exhaustion");
        assert_eq!(v["saddr"], serde_json::Value::Null);
        assert_eq!(v["netns"], serde_json::Value::Null);
    }

    #[test]
    fn text_lines_align_with_the_header() {
        let mut out = Vec::new();
        write_text(&mut out, &close(), &CLOCK).unwrap();
        write_text(&mut out, &exhausted(), &CLOCK).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let col = |s: &str, name: &str| s.find(name).unwrap();
        // The remote column starts where the header says it does.
        let remote = col(TEXT_HEADER, "REMOTE");
        assert_eq!(&lines[0][remote..remote + 14], "127.0.0.1:8080");
        assert_eq!(&lines[1][remote..remote + 9], "[::1]:443");
        assert!(lines[0].contains(" local "), "{}", lines[0]);
        assert!(lines[0].ends_with("ok"));
        assert!(lines[1].ends_with("EADDRNOTAVAIL (port exhaustion)"));
        assert!(lines[0].contains("   2.500 "), "{}", lines[0]);
    }
}
