//! `portwatch doctor`: what works on this host, and what to do about what
//! does not, before an incident.
//!
//! It runs the probe's own checks ([`crate::probe::checks`], recorded by
//! [`Probe::load_reporting`]), so it really loads and attaches the
//! programs; then it makes one connection and one failing connect() in a
//! private network namespace and waits for their events, so "✔" means
//! events arrive, not that a file exists. Then the collectors `top` uses:
//! cgroup v2 (service names) and sock_diag (the socket table).
//!
//! Exit status: 0 when `top` will work fully, 1 when degraded, 2 when it
//! cannot run.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use anyhow::Result;

use crate::cli::DoctorArgs;
use crate::event::Event;
use crate::probe::Probe;
use crate::probe::checks::{Finding, Status};
use crate::system::{cgroup::CgroupResolver, procfs, sockdiag};

/// How long the self-test waits for its events (they arrive within the
/// probe's 10 ms drain interval on a healthy host).
const EVENT_WAIT: Duration = Duration::from_secs(3);
/// The failing connect() of the self-test: a port on 127.0.0.1 before
/// loopback is up, so it fails with ENETUNREACH without a packet or a
/// socket state change; only the connect() tracepoints see it.
const UNREACHABLE_PORT: u16 = 9;

pub fn run(args: DoctorArgs) -> Result<()> {
    let mut findings = Vec::new();
    super::block_on(async {
        findings = diagnose().await;
        Ok(())
    })?;
    let status = findings
        .iter()
        .map(|f| f.status)
        .max()
        .unwrap_or(Status::Ok);
    let code = match status {
        Status::Ok => 0,
        Status::Degraded => 1,
        Status::Fatal => 2,
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        let v = serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .ok(),
            "status": match status {
                Status::Ok => "ok",
                Status::Degraded => "degraded",
                Status::Fatal => "cannot_run",
            },
            "exit_code": code,
            "checks": findings,
        });
        writeln!(out, "{v}")?;
    } else {
        write_text(&mut out, &findings, status, code)?;
    }
    out.flush()?;
    drop(out);
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}

/// The text report: one line per check, its fix on the same line, and
/// what is lost without it on the next.
pub fn write_text(
    out: &mut impl Write,
    findings: &[Finding],
    status: Status,
    code: i32,
) -> std::io::Result<()> {
    for f in findings {
        let mark = if f.status == Status::Ok { '✔' } else { '✗' };
        write!(out, "{mark} {}: {}", f.check, f.detail)?;
        if let Some(fix) = f.fix.as_deref().filter(|_| f.status != Status::Ok) {
            write!(out, " → fix: {fix}")?;
        }
        writeln!(out)?;
        if !f.degrades.is_empty() {
            writeln!(out, "    without it: {}", f.degrades.join("; "))?;
        }
    }
    let verdict = match status {
        Status::Ok => "portwatch top will work fully",
        Status::Degraded => "portwatch top will run, without what is marked ✗ above",
        Status::Fatal => "portwatch cannot run here until the ✗ above are fixed",
    };
    writeln!(out, "{verdict} (exit {code})")
}

async fn diagnose() -> Vec<Finding> {
    let mut findings = Vec::new();
    match Probe::load_reporting(&mut findings) {
        Ok(mut probe) => self_test(&mut probe, &mut findings).await,
        Err(e) => {
            // load_reporting recorded the fatal finding; an error it did
            // not record (a map missing from the object) is one too.
            if !findings.iter().any(|f| f.status == Status::Fatal) {
                findings.push(Finding::fatal(
                    "load and attach",
                    format!("{e:#}"),
                    "report this to portwatch with the output of `portwatch doctor --json`",
                ));
            }
            findings.push(cgroups(None));
        }
    }
    findings.push(socket_table());
    findings
}

/// What the self-test connection was and where.
struct Traffic {
    netns: u32,
    /// Made in a namespace of its own (else in doctor's, see below).
    private: bool,
    server_port: u16,
    unreachable_errno: Option<i32>,
}

/// In a thread of its own (namespaces belong to threads): a fresh network
/// namespace, a connect() that fails before loopback is up, then loopback
/// up and one client→server connection with a byte each way, closed by the
/// client. Nothing leaves the namespace, which ends with the thread.
///
/// Without CAP_SYS_ADMIN (CAP_BPF + CAP_PERFMON suffice for portwatch) no
/// namespace can be made: the connection is then made on 127.0.0.1 in
/// doctor's own namespace, and the failing connect() is not tried.
fn test_traffic() -> Result<Traffic, String> {
    std::thread::spawn(|| -> Result<Traffic, String> {
        // SAFETY: unshare only affects the calling thread's namespaces.
        let private = unsafe { libc::unshare(libc::CLONE_NEWNET) } == 0;
        let netns = std::fs::metadata("/proc/thread-self/ns/net")
            .map_err(|e| format!("reading the namespace inode: {e}"))?
            .ino() as u32;
        let mut unreachable_errno = None;
        if private {
            unreachable_errno = TcpStream::connect((Ipv4Addr::LOCALHOST, UNREACHABLE_PORT))
                .err()
                .and_then(|e| e.raw_os_error());
            loopback_up()?;
        }
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| format!("binding 127.0.0.1: {e}"))?;
        let server = listener.local_addr().map_err(|e| e.to_string())?;
        exchange(&listener, server).map_err(|e| format!("test connection: {e}"))?;
        Ok(Traffic {
            netns,
            private,
            server_port: server.port(),
            unreachable_errno,
        })
    })
    .join()
    .map_err(|_| "the self-test thread panicked".to_string())?
}

fn exchange(listener: &TcpListener, server: SocketAddr) -> std::io::Result<()> {
    let mut client = TcpStream::connect(server)?;
    let (mut conn, _) = listener.accept()?;
    let mut b = [0u8; 1];
    client.write_all(b"?")?;
    conn.read_exact(&mut b)?;
    conn.write_all(b"!")?;
    client.read_exact(&mut b)?;
    // The client closes first (its side keeps the TIME_WAIT, as in an
    // incident); the server closes after reading EOF.
    client.shutdown(std::net::Shutdown::Write)?;
    let mut rest = Vec::new();
    conn.read_to_end(&mut rest)?;
    drop(conn);
    client.read_to_end(&mut rest)?;
    Ok(())
}

/// `ip link set lo up`, with the SIOCSIFFLAGS ioctl (no iproute2 needed).
fn loopback_up() -> Result<(), String> {
    // SAFETY: a plain socket() call; the fd is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(format!("socket: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *s as libc::c_char;
    }
    // SAFETY: fd is a valid socket and req a valid ifreq naming "lo"; the
    // flags member of the union is the one both ioctls use.
    let rc = unsafe {
        if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) < 0 {
            -1
        } else {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            libc::ioctl(fd, libc::SIOCSIFFLAGS, &req)
        }
    };
    let err = std::io::Error::last_os_error();
    // SAFETY: fd came from socket() above and is closed once.
    unsafe { libc::close(fd) };
    if rc < 0 {
        return Err(format!("bringing loopback up: {err}"));
    }
    Ok(())
}

/// Makes the private traffic and checks what the probe saw of it.
async fn self_test(probe: &mut Probe, findings: &mut Vec<Finding>) {
    let syscalls = !findings
        .iter()
        .any(|f| f.check.starts_with("tracepoint syscalls") && f.status != Status::Ok);
    let traffic = match test_traffic() {
        Ok(t) => t,
        Err(e) => {
            findings.push(Finding::fatal(
                "events",
                format!("the test connection could not be made: {e}"),
                "check that loopback (127.0.0.1) is up",
            ));
            findings.push(cgroups(None));
            return;
        }
    };
    let syscalls = syscalls && traffic.private;
    let place = if traffic.private {
        "in a private network namespace"
    } else {
        "on 127.0.0.1 (no CAP_SYS_ADMIN for a private namespace)"
    };
    let mut close = None;
    let mut failed = None;
    let deadline = tokio::time::Instant::now() + EVENT_WAIT;
    while tokio::time::Instant::now() < deadline
        && (close.is_none() || (syscalls && failed.is_none()))
    {
        probe.wait().await;
        probe.drain(|ev| match ev {
            Event::Close(c)
                if c.dport == traffic.server_port
                    && c.daddr.is_loopback()
                    && c.task.is_some()
                    && (c.netns == traffic.netns || c.netns == 0) =>
            {
                close = Some(c);
            }
            Event::ConnectError(e)
                if e.dport == UNREACHABLE_PORT
                    && Some(e.errno) == traffic.unreachable_errno
                    && (e.netns == traffic.netns || e.netns == 0) =>
            {
                failed = Some(e);
            }
            _ => {}
        });
    }
    let lost = probe.losses().total();
    let cgroup_id = close.and_then(|c| c.task).map(|t| t.cgroup_id);
    match close {
        Some(c) => findings.push(Finding::ok(
            "events",
            format!(
                "a test connection {place} was traced (lifetime {:.2} ms, closed {}){}",
                c.lifetime_ns() as f64 / 1e6,
                if c.local_close {
                    "locally"
                } else {
                    "by the peer"
                },
                if lost > 0 {
                    format!("; {lost} events lost")
                } else {
                    String::new()
                }
            ),
        )),
        None => findings.push(Finding::fatal(
            "events",
            format!(
                "no event for a test connection within {} s ({lost} lost)",
                EVENT_WAIT.as_secs()
            ),
            "report this to portwatch with `portwatch doctor --json` and `uname -a`",
        )),
    }
    if syscalls {
        findings.push(match failed {
            Some(e) => Finding::ok(
                "failed connects",
                format!(
                    "a failing connect() ({}) was reported",
                    crate::errno::name(e.errno)
                ),
            ),
            None => Finding::degraded(
                "failed connects",
                "a failing connect() was not reported",
                "report this to portwatch with `portwatch doctor --json`",
                &["connect_error events other than port exhaustion"],
            ),
        });
    }
    findings.push(match close.map(|c| c.netns) {
        Some(n) if n == traffic.netns => Finding::ok(
            "network namespaces",
            format!("events carry their network namespace (the test's: {n})"),
        ),
        Some(_) => Finding::degraded(
            "network namespaces",
            "events carry no namespace (no BTF)",
            "use a kernel with CONFIG_DEBUG_INFO_BTF=y",
            &["netns (and --netns filtering)"],
        ),
        None => Finding::degraded(
            "network namespaces",
            "not verified (no test event)",
            "see events above",
            &[],
        ),
    });
    findings.push(cgroups(cgroup_id));
}

/// cgroup v2, which names services; with the test connection's cgroup id,
/// also that resolving ids to paths works.
fn cgroups(test_cgroup: Option<u64>) -> Finding {
    const CHECK: &str = "cgroup v2";
    match CgroupResolver::new() {
        Ok(mut r) => {
            let mount = r.mount().display().to_string();
            match test_cgroup
                .filter(|&id| id != 0)
                .map(|id| (id, r.resolve(id)))
            {
                Some((_, Some(path))) => Finding::ok(
                    CHECK,
                    format!(
                        "at {mount}: the test connection's cgroup resolved to {path}; services \
                         are named by systemd unit, container or pod"
                    ),
                ),
                Some((id, None)) => Finding::degraded(
                    CHECK,
                    format!("at {mount}, but cgroup id {id} of the test connection was not found"),
                    "check that /sys/fs/cgroup is the host's cgroup2 mount",
                    &["service names (connections are grouped by process name)"],
                ),
                None => Finding::ok(
                    CHECK,
                    format!("at {mount}: services are named by systemd unit, container or pod"),
                ),
            }
        }
        Err(e) => Finding::degraded(
            CHECK,
            e.to_string(),
            "boot with cgroup v2 (systemd.unified_cgroup_hierarchy=1)",
            &["service names (connections are grouped by process name)"],
        ),
    }
}

/// sock_diag, which gives the ports already held when portwatch starts.
fn socket_table() -> Finding {
    const CHECK: &str = "sock_diag";
    let now = crate::clock::monotonic_now_ns();
    let mut reader = sockdiag::Reader::new();
    match reader.read(now, procfs::netns_inode(), sockdiag::STATES_ALL) {
        Ok((t, cost)) => {
            // What the readings between full ones cost (no TIME_WAIT asked).
            let partial = reader
                .read(
                    now,
                    procfs::netns_inode(),
                    sockdiag::STATES_WITHOUT_TIME_WAIT,
                )
                .map_or(String::new(), |(_, c)| {
                    format!(", {:.1} ms without TIME_WAIT", c.cpu_ns as f64 / 1e6)
                });
            let cadence = crate::live::TableCadence {
                last_start_ns: Some(now),
                last_cpu_ns: cost.cpu_ns,
                ..Default::default()
            };
            let every_s = cadence.gap_ns(crate::live::SOCKETS_EVERY.as_nanos() as u64) as f64 / 1e9;
            Finding::ok(
                CHECK,
                format!(
                    "socket table read over netlink ({} TCP sockets, {:.1} ms of CPU{partial}; \
                     re-read every {every_s:.0} s at the default --resync, with TIME_WAIT \
                     every {} s)",
                    t.entries.len(),
                    cost.cpu_ns as f64 / 1e6,
                    crate::live::FULL_TABLE_EVERY.as_secs(),
                ),
            )
        }
        Err(e) => Finding::degraded(
            CHECK,
            e.to_string(),
            "load the inet_diag and tcp_diag modules (modprobe tcp_diag)",
            &[
                "held_ports, pressure and time_wait count only connections opened since \
                 portwatch started",
            ],
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_puts_the_fix_on_the_line_and_the_loss_under_it() {
        let findings = [
            Finding::ok("kernel", "Linux 6.1"),
            Finding::degraded(
                "BTF",
                "no kernel BTF",
                "enable BTF",
                &["bytes_sent", "netns"],
            ),
        ];
        let mut out = Vec::new();
        write_text(&mut out, &findings, Status::Degraded, 1).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "✔ kernel: Linux 6.1\n\
             ✗ BTF: no kernel BTF → fix: enable BTF\n\
             \x20   without it: bytes_sent; netns\n\
             portwatch top will run, without what is marked ✗ above (exit 1)\n"
        );
    }
}
