//! `portwatch trace` output: aligned text columns or JSON Lines.
//!
//! The JSON field names are a stable interface (README, "JSON fields"):
//! every field is always present, `null` where it does not apply.

use std::cell::Cell;
use std::fmt;
use std::io::{self, Write};
use std::net::IpAddr;

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Serialize, Serializer};

use crate::clock::WallClock;
use crate::errno;
use crate::event::{BindError, Cause, Comm, ConnClose, ConnectError, Direction, Event, Task};

/// A value written into the JSON as a string through its `Display`,
/// straight into the output: no `String` per field and event (`trace
/// --json` prints every event, so these allocations were most of its cost).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shown<T>(pub T);

impl<T: fmt::Display> Serialize for Shown<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// RFC 3339, UTC, microseconds (`2026-11-25T16:31:19.123456Z`), the same
/// text as chrono's `to_rfc3339_opts(Micros, true)` without its allocation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rfc3339Micros(pub DateTime<Utc>);

impl fmt::Display for Rfc3339Micros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.0;
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            t.year(),
            t.month(),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            // Times come from a nanosecond count, never a leap second, so
            // the nanosecond is below 10^9.
            (t.nanosecond() % 1_000_000_000) / 1000
        )
    }
}

thread_local! {
    /// `YYYY-MM-DDTHH:MM:SS` of the last second formatted: events come in
    /// time order, thousands per second, so the date is rarely redone.
    static TIME_PREFIX: Cell<(i64, [u8; 19])> = const { Cell::new((i64::MIN, [0; 19])) };
}

impl Rfc3339Micros {
    /// The same text as `Display`, appended as bytes.
    pub fn write_bytes(&self, out: &mut Vec<u8>) {
        let secs = self.0.timestamp();
        let (cached, mut prefix) = TIME_PREFIX.get();
        if cached != secs {
            let mut w = &mut prefix[..];
            let t = &self.0;
            // 19 bytes for years 0..=9999; later years keep the slow path.
            if write!(
                w,
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                t.year(),
                t.month(),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
            .is_err()
                || !w.is_empty()
            {
                out.extend_from_slice(self.to_string().as_bytes());
                return;
            }
            TIME_PREFIX.set((secs, prefix));
        }
        out.extend_from_slice(&prefix);
        let micros = (self.0.nanosecond() % 1_000_000_000) / 1000;
        let mut frac = *b".000000Z";
        let mut m = micros;
        for d in frac[1..7].iter_mut().rev() {
            *d = b'0' + (m % 10) as u8;
            m /= 10;
        }
        out.extend_from_slice(&frac);
    }
}

/// One line of `trace --json`. Borrows only its namespace's name and
/// allocates nothing for an event that worked (an errno name is a
/// `String`, failures are rare).
#[derive(Serialize, Debug, PartialEq)]
pub struct JsonEvent<'a> {
    /// "close", "connect_error" or "bind_error".
    pub event: &'static str,
    /// RFC 3339, UTC, microseconds.
    pub time: Shown<Rfc3339Micros>,
    /// The kernel's CLOCK_MONOTONIC timestamp of the event.
    pub ts_ns: u64,
    pub pid: Option<u32>,
    pub tid: Option<u32>,
    /// Process name (as `ps` shows it).
    pub comm: Option<Shown<Comm>>,
    /// Name of the thread that connected.
    pub thread: Option<Shown<Comm>>,
    pub cgroup_id: Option<u64>,
    /// Network namespace inode (as in `ls -l /proc/PID/ns/net`), null if unknown.
    pub netns: Option<u32>,
    /// Its name: `host`, the pod/container/unit whose tasks live in it, or
    /// `netns:INODE`; null if unknown.
    pub netns_name: Option<&'a str>,
    /// "ipv4" or "ipv6".
    pub family: &'static str,
    /// The local address (for a bind_error: the one asked for).
    pub saddr: Option<Shown<IpAddr>>,
    /// The local port (for a bind_error: the one asked for, 0 for any).
    pub sport: Option<u16>,
    /// Null for a bind_error.
    pub daddr: Option<Shown<IpAddr>>,
    pub dport: Option<u16>,
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
    /// "unreachable", "other", "port_in_use" (connect() on a socket bound
    /// to its port before: that 4-tuple is taken); null for connections
    /// that worked and for a bind_error.
    pub cause: Option<&'static str>,
    /// Outbound closes: SYNs the kernel retransmitted before the handshake
    /// ended (answered or not). Null for inbound closes and connect errors.
    pub syn_retransmits: Option<u32>,
    /// The source port was chosen by bind() before connect(): held against
    /// every destination. Null for inbound connections and bind errors.
    pub bound_port: Option<bool>,
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

/// Appends `,"key":` (`{"key":` for the first key of a line): keys are
/// literals that need no escaping, so each is one constant-length copy the
/// compiler inlines (a call per key was a quarter of `trace --json`'s
/// instructions).
macro_rules! key {
    ($out:expr, first $k:literal) => {
        $out.extend_from_slice(concat!("{\"", $k, "\":").as_bytes())
    };
    ($out:expr, $k:literal) => {
        $out.extend_from_slice(concat!(",\"", $k, "\":").as_bytes())
    };
}

fn null(out: &mut Vec<u8>) {
    out.extend_from_slice(b"null");
}

fn num(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn opt_num(out: &mut Vec<u8>, n: Option<impl itoa::Integer>) {
    match n {
        Some(n) => num(out, n),
        None => null(out),
    }
}

fn opt_bool(out: &mut Vec<u8>, b: Option<bool>) {
    match b {
        Some(true) => out.extend_from_slice(b"true"),
        Some(false) => out.extend_from_slice(b"false"),
        None => null(out),
    }
}

/// A string known to need no escaping (field values portwatch chooses).
fn plain(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

/// True when serde_json would write `b` as it is inside a string: printable
/// ASCII other than `"` and `\\`.
fn needs_no_escape(b: &[u8]) -> bool {
    b.iter()
        .all(|&c| (0x20..0x7f).contains(&c) && c != b'"' && c != b'\\')
}

/// Any text, escaped as serde_json escapes it.
fn text(out: &mut Vec<u8>, s: &str) {
    if needs_no_escape(s.as_bytes()) {
        return plain(out, s);
    }
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn comm(out: &mut Vec<u8>, c: Option<Shown<Comm>>) {
    match c {
        // Process names are nearly always plain ASCII: no lossy copy.
        Some(Shown(c)) if needs_no_escape(c.as_bytes()) => {
            out.push(b'"');
            out.extend_from_slice(c.as_bytes());
            out.push(b'"');
        }
        Some(Shown(c)) => text(out, &String::from_utf8_lossy(c.as_bytes())),
        None => null(out),
    }
}

fn addr(out: &mut Vec<u8>, a: &IpAddr) {
    match a {
        IpAddr::V4(v4) => {
            // Quoted dotted quad, at most 17 bytes, built in a local buffer
            // and appended in one copy: a push per character, each checking
            // the line's capacity, was 154 instructions per address (120).
            let mut b = [b'"'; 17];
            let mut n = 1;
            for (i, &o) in v4.octets().iter().enumerate() {
                if i > 0 {
                    b[n] = b'.';
                    n += 1;
                }
                // Up to three digits, without a formatter per octet.
                if o >= 100 {
                    b[n] = b'0' + o / 100;
                    n += 1;
                }
                if o >= 10 {
                    b[n] = b'0' + o / 10 % 10;
                    n += 1;
                }
                b[n] = b'0' + o % 10;
                n += 1;
            }
            out.extend_from_slice(&b[..n + 1]);
        }
        // No character of an IPv6 text needs escaping.
        IpAddr::V6(v6) => {
            out.push(b'"');
            let _ = write!(out, "{v6}");
            out.push(b'"');
        }
    }
}

impl<'a> JsonEvent<'a> {
    /// Appends the line `serde_json::to_writer` writes for this value (the
    /// same bytes: a test holds them equal), without serde's work per field
    /// (escaping each constant key, formatting through `fmt`): ~40% of
    /// `trace --json`'s CPU. Names from the kernel (comm, thread) and the
    /// errno name still go through serde_json's escaping.
    pub fn write_line(&self, out: &mut Vec<u8>) {
        // Room for a whole line (~450 bytes) up front: no growth mid-line.
        out.reserve(768);
        key!(out, first "event");
        plain(out, self.event);
        key!(out, "time");
        out.push(b'"');
        self.time.0.write_bytes(out);
        out.push(b'"');
        key!(out, "ts_ns");
        num(out, self.ts_ns);
        key!(out, "pid");
        opt_num(out, self.pid);
        key!(out, "tid");
        opt_num(out, self.tid);
        key!(out, "comm");
        comm(out, self.comm);
        key!(out, "thread");
        comm(out, self.thread);
        key!(out, "cgroup_id");
        opt_num(out, self.cgroup_id);
        key!(out, "netns");
        opt_num(out, self.netns);
        key!(out, "netns_name");
        match self.netns_name {
            // Names come from cgroup paths: escaped.
            Some(n) => text(out, n),
            None => null(out),
        }
        key!(out, "family");
        plain(out, self.family);
        key!(out, "saddr");
        match &self.saddr {
            Some(Shown(a)) => addr(out, a),
            None => null(out),
        }
        key!(out, "sport");
        opt_num(out, self.sport);
        key!(out, "daddr");
        match &self.daddr {
            Some(Shown(a)) => addr(out, a),
            None => null(out),
        }
        key!(out, "dport");
        opt_num(out, self.dport);
        key!(out, "direction");
        plain(out, self.direction);
        key!(out, "lifetime_us");
        opt_num(out, self.lifetime_us);
        key!(out, "handshake_us");
        opt_num(out, self.handshake_us);
        key!(out, "bytes_sent");
        opt_num(out, self.bytes_sent);
        key!(out, "bytes_received");
        opt_num(out, self.bytes_received);
        key!(out, "local_close");
        opt_bool(out, self.local_close);
        key!(out, "established");
        opt_bool(out, self.established);
        key!(out, "errno");
        match &self.errno {
            Some(e) => text(out, e),
            None => null(out),
        }
        key!(out, "cause");
        match self.cause {
            Some(c) => plain(out, c),
            None => null(out),
        }
        key!(out, "syn_retransmits");
        opt_num(out, self.syn_retransmits);
        key!(out, "bound_port");
        opt_bool(out, self.bound_port);
        out.push(b'}');
    }

    /// `netns_name`: the name of the event's namespace, where known
    /// ([`crate::engine::namer::Namer`]).
    pub fn new(ev: &Event, clock: &WallClock, netns_name: Option<&'a str>) -> JsonEvent<'a> {
        let mut j = match ev {
            Event::Close(c) => Self::close(c, clock),
            Event::ConnectError(e) => Self::connect_error(e, clock),
            Event::BindError(b) => Self::bind_error(b, clock),
        };
        if j.netns.is_some() {
            j.netns_name = netns_name;
        }
        j
    }

    /// The fields every event has (when, who, which namespace); the rest
    /// empty, for each event kind to fill in.
    fn base(
        event: &'static str,
        ts_ns: u64,
        task: Option<Task>,
        netns: u32,
        family: &'static str,
        clock: &WallClock,
    ) -> JsonEvent<'a> {
        JsonEvent {
            event,
            time: Shown(Rfc3339Micros(clock.utc(ts_ns))),
            ts_ns,
            pid: task.map(|t| t.pid),
            tid: task.map(|t| t.tid),
            comm: task.map(|t| Shown(t.comm)),
            thread: task.map(|t| Shown(t.thread)),
            cgroup_id: task.map(|t| t.cgroup_id),
            netns: (netns != 0).then_some(netns),
            netns_name: None,
            family,
            saddr: None,
            sport: None,
            daddr: None,
            dport: None,
            direction: "out",
            lifetime_us: None,
            handshake_us: None,
            bytes_sent: None,
            bytes_received: None,
            local_close: None,
            established: None,
            errno: None,
            cause: None,
            syn_retransmits: None,
            bound_port: None,
        }
    }

    fn bind_error(b: &BindError, clock: &WallClock) -> JsonEvent<'a> {
        JsonEvent {
            saddr: Some(Shown(b.saddr)),
            sport: Some(b.sport),
            errno: Some(errno::name(b.errno)),
            ..Self::base(
                "bind_error",
                b.ts_ns,
                b.task,
                b.netns,
                family(&b.saddr),
                clock,
            )
        }
    }

    fn close(c: &ConnClose, clock: &WallClock) -> JsonEvent<'a> {
        let out = c.direction == Direction::Outbound;
        JsonEvent {
            saddr: Some(Shown(c.saddr)),
            sport: Some(c.sport),
            daddr: Some(Shown(c.daddr)),
            dport: Some(c.dport),
            direction: c.direction.as_str(),
            lifetime_us: Some(c.lifetime_ns() / 1000),
            handshake_us: c.handshake_ns.map(|h| h / 1000),
            bytes_sent: c.bytes.map(|b| b.0),
            bytes_received: c.bytes.map(|b| b.1),
            local_close: Some(c.local_close),
            established: Some(c.established),
            errno: c.errno.map(errno::name),
            cause: c.failure().map(|f| f.as_str()),
            syn_retransmits: out.then_some(c.syn_retrans),
            bound_port: out.then_some(c.bound_port),
            ..Self::base("close", c.end_ns, c.task, c.netns, family(&c.daddr), clock)
        }
    }

    fn connect_error(e: &ConnectError, clock: &WallClock) -> JsonEvent<'a> {
        JsonEvent {
            daddr: Some(Shown(e.daddr)),
            dport: Some(e.dport),
            established: Some(false),
            errno: Some(errno::name(e.errno)),
            cause: Some(e.failure().as_str()),
            bound_port: Some(e.cause == Cause::PortInUse),
            ..Self::base(
                "connect_error",
                e.ts_ns,
                e.task,
                e.netns,
                family(&e.daddr),
                clock,
            )
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
            let mut result = match (c.errno, c.failure()) {
                (Some(e), _) => format!("{} (handshake failed)", errno::name(e)),
                (None, Some(_)) => format!(
                    "aborted after {:.0} ms (no answer to the SYN)",
                    c.lifetime_ns() as f64 / 1e6
                ),
                (None, None) if !c.established => "not established".to_string(),
                (None, None) if c.bound_port => "ok (port bound before connect)".to_string(),
                (None, None) => "ok".to_string(),
            };
            if c.syn_retrans > 0 {
                let s = if c.syn_retrans == 1 { "" } else { "s" };
                result.push_str(&format!(", {} SYN retransmit{s}", c.syn_retrans));
            }
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
                Cause::PortInUse => format!(
                    "{} (port bound before connect() already connected there)",
                    errno::name(e.errno)
                ),
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
        Event::BindError(b) => writeln!(
            w,
            "{time:<12} {pid:<7} {comm:<15} {:<3} {:<28} {:<28} {:>8} {:<7} {} (bind failed{})",
            "out",
            endpoint(&b.saddr, b.sport),
            "-",
            "-",
            "-",
            errno::name(b.errno),
            if b.errno == crate::event::EADDRINUSE && b.sport == 0 {
                ": no free port in the range"
            } else {
                ""
            },
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Comm, Task};
    use crate::tracefile::synthetic;

    const CLOCK: WallClock = WallClock {
        mono_ns: 0,
        unix_ns: 1_700_000_000_000_000_000,
    };

    #[test]
    fn json_time_reads_as_chrono_writes_it() {
        for ns in [
            0,
            1,
            999_999_999,
            1_000_000_000,
            123_456_789_012,
            86_400_000_000_000 * 365 * 30 + 7_654_321,
        ] {
            assert_eq!(
                Rfc3339Micros(CLOCK.utc(ns)).to_string(),
                CLOCK.rfc3339(ns),
                "at {ns} ns"
            );
        }
    }

    #[test]
    fn json_time_bytes_are_its_text() {
        for ns in [
            0,
            999_999_999,
            1_000_000_000,
            1_000_000_001,
            86_400_000_000_123,
        ] {
            let t = Rfc3339Micros(CLOCK.utc(ns));
            let mut b = Vec::new();
            t.write_bytes(&mut b);
            assert_eq!(String::from_utf8(b).unwrap(), t.to_string(), "at {ns} ns");
        }
    }

    /// Every kind of line `write_line` writes, byte for byte what serde
    /// writes for the same value: close v4 and v6, inbound (no task), a
    /// failed handshake, connect errors, names that need escaping or are
    /// not UTF-8.
    #[test]
    fn json_line_writer_writes_what_serde_writes() {
        let mut odd = task();
        odd.comm = Comm::from_bytes(*b"a\"b\\c\x01\xffz\n\0\0\0\0\0\0\0");
        odd.thread = Comm::from_bytes([0; 16]);
        let mut events = vec![close(), exhausted()];
        if let Event::Close(c) = close() {
            events.push(Event::Close(ConnClose {
                task: None,
                direction: Direction::Inbound,
                saddr: "::ffff:10.1.2.3".parse().unwrap(),
                daddr: "2001:db8::1".parse().unwrap(),
                bytes: None,
                handshake_ns: None,
                netns: 0,
                ..c
            }));
            events.push(Event::Close(ConnClose {
                task: Some(odd),
                established: false,
                errno: Some(111),
                syn_retrans: 3,
                saddr: "255.0.10.200".parse().unwrap(),
                ..c
            }));
        }
        if let Event::ConnectError(e) = exhausted() {
            events.push(Event::ConnectError(ConnectError {
                task: None,
                errno: 12345,
                cause: Cause::Other,
                daddr: "0.0.0.0".parse().unwrap(),
                ..e
            }));
        }
        // Names that take the plain path and names that need escaping.
        for name in [
            "pod:\"odd\"\u{7}",
            "pod:checkout/api-7f9c",
            "caf\u{e9}\u{7f}",
        ] {
            for ev in &events {
                let j = JsonEvent::new(ev, &CLOCK, Some(name));
                let mut line = Vec::new();
                j.write_line(&mut line);
                assert_eq!(
                    String::from_utf8_lossy(&line),
                    serde_json::to_string(&j).unwrap(),
                    "{ev:?}"
                );
            }
        }
    }

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
        let daddr = ("127.0.0.1".parse().unwrap(), 8080);
        Event::Close(ConnClose {
            handshake_ns: Some(80_000),
            sport: 40001,
            bytes: Some((100, 2000)),
            ..synthetic::closed_here(Some(task()), 4026532000, daddr, 1_000_000, 3_500_000)
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
        let v = serde_json::to_value(JsonEvent::new(&close(), &CLOCK, Some("pod:a1"))).unwrap();
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
        assert_eq!(v["netns_name"], "pod:a1");
    }

    #[test]
    fn json_connect_error_names_errno_and_cause() {
        // No namespace known (no BTF): no name either, whatever is given.
        let v = serde_json::to_value(JsonEvent::new(&exhausted(), &CLOCK, Some("host"))).unwrap();
        assert_eq!(v["event"], "connect_error");
        assert_eq!(v["family"], "ipv6");
        assert_eq!(v["daddr"], "::1");
        assert_eq!(v["errno"], "EADDRNOTAVAIL");
        assert_eq!(v["cause"], "port_exhaustion");
        assert_eq!(v["saddr"], serde_json::Value::Null);
        assert_eq!(v["netns"], serde_json::Value::Null);
        assert_eq!(v["netns_name"], serde_json::Value::Null);
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
