//! The fault suite: what portwatch does when something goes wrong around it,
//! on the real kernel (root). Each test injects one fault, asserts what the
//! user sees (nothing lost without being counted, a clear message, a
//! readable trace, no panic) and, when `PORTWATCH_FAULT_FIGURES` names a
//! file, appends its measured figures there as one JSON line:
//! `cargo xtask faults` turns them into the README's Reliability table.
//!
//! Each test makes its own traffic in a private network namespace; the
//! tracefs test also runs portwatch in a private mount namespace, so the
//! host's mounts are never touched.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// The faults run one at a time: the churn of one (made to overflow the
/// ring buffer) would otherwise cost the others events, and their figures
/// would measure each other.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// For a kernel fault test: `None` when kernel tests cannot run here (see
/// [`kernel_tests_enabled`]: under CI that panics instead), else the turn
/// of [`serial`] to hold while the test runs.
fn kernel_fault_turn() -> Option<std::sync::MutexGuard<'static, ()>> {
    kernel_tests_enabled().then(serial)
}

/// One row of the Reliability table.
struct Figure<'a> {
    fault: &'a str,
    injected: String,
    /// Events of the test's own traffic that reached the output.
    delivered: Option<u64>,
    /// Events portwatch counted as lost (its summary line).
    lost: Option<u64>,
    /// Events neither delivered nor counted: must be 0.
    missed: Option<u64>,
    /// Peak RSS of the portwatch process.
    rss_kib: Option<u64>,
    exit: String,
}

fn report(f: Figure) {
    let Some(path) = std::env::var_os("PORTWATCH_FAULT_FIGURES") else {
        return;
    };
    let line = serde_json::json!({
        "fault": f.fault,
        "injected": f.injected,
        "delivered": f.delivered,
        "lost": f.lost,
        "missed": f.missed,
        "rss_kib": f.rss_kib,
        "exit": f.exit,
    });
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open the figures file");
    writeln!(file, "{line}").expect("write the figures file");
}

/// Peak resident memory of a process (VmHWM), in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The number before " lost" in a live command's closing line.
fn lost_in(summary: &str) -> u64 {
    let head = summary
        .split(" lost")
        .next()
        .unwrap_or_else(|| panic!("no loss count in {summary:?}"));
    head.rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no loss count in {summary:?}"))
}

/// Tracepoint runs the kernel skipped (each may have cost an event), from a
/// closing line; 0 when it names none.
fn skipped_in(summary: &str) -> u64 {
    summary
        .split(" tracepoint runs skipped by the kernel")
        .next()
        .filter(|h| h.len() < summary.len())
        .and_then(|h| h.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn summary_line(stderr: &[String]) -> &str {
    stderr
        .iter()
        .find(|l| l.contains("stopped"))
        .unwrap_or_else(|| panic!("no summary line in {stderr:?}"))
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill with the pid of a child this test spawned and still owns.
    let rc = unsafe { libc::kill(pid as i32, sig) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {sig}): {}",
        std::io::Error::last_os_error()
    );
}

// ---------------------------------------------------------------------------
// tracefs absent, several portwatch processes starting at once

/// A thread in a private mount namespace in which tracefs is not mounted.
/// Children it spawns inherit that namespace; the host's mounts are never
/// touched (propagation is made private before anything is unmounted).
struct NoTracefs(NsThread);

const TRACEFS_PATHS: &[&str] = &["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// tracefs mounts seen by the calling thread (its mount namespace).
fn tracefs_mounts() -> Vec<String> {
    std::fs::read_to_string("/proc/thread-self/mountinfo")
        .expect("read mountinfo")
        .lines()
        .filter(|l| l.contains(" - tracefs "))
        .map(str::to_string)
        .collect()
}

impl NoTracefs {
    fn new() -> NoTracefs {
        NoTracefs::with(|| Ok(()))
    }

    /// Also runs `extra` in the namespace before any job (e.g. a mount).
    fn with(extra: impl FnOnce() -> Result<(), String> + Send + 'static) -> NoTracefs {
        let (thread, ()) = NsThread::spawn("pw-no-tracefs", move || -> Result<(), String> {
            // SAFETY: unshare only affects this thread's namespaces
            // (CLONE_NEWNS implies CLONE_FS, which is per thread).
            if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
                return Err(format!("unshare: {}", std::io::Error::last_os_error()));
            }
            // SAFETY: valid NUL-terminated path; the other pointers may be null
            // for a propagation change.
            let rc = unsafe {
                libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                )
            };
            if rc != 0 {
                return Err(format!(
                    "making mounts private: {}",
                    std::io::Error::last_os_error()
                ));
            }
            // debugfs would mount tracefs again on access to
            // debug/tracing (automount): take it away too, here only.
            for p in [
                c"/sys/kernel/debug/tracing",
                c"/sys/kernel/tracing",
                c"/sys/kernel/debug",
            ] {
                // Mounts may be stacked: unmount until nothing is left.
                // SAFETY: valid NUL-terminated path.
                while unsafe { libc::umount2(p.as_ptr(), libc::MNT_DETACH) } == 0 {}
            }
            let left = tracefs_mounts();
            if !left.is_empty() {
                return Err(format!("tracefs still mounted: {left:?}"));
            }
            for p in TRACEFS_PATHS {
                if Path::new(p).join("events").exists() {
                    return Err(format!("{p}/events still exists"));
                }
            }
            extra()
        })
        .unwrap_or_else(|e| panic!("cannot set up a mount namespace without tracefs: {e}"));
        NoTracefs(thread)
    }

    fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.0.run(f)
    }
}

#[test]
fn several_portwatch_started_at_once_without_tracefs_all_start_and_see_events() {
    let Some(_serial) = kernel_fault_turn() else {
        return;
    };
    const STARTS: usize = 4;
    const CONNS: usize = 20;
    let host_before = tracefs_mounts();
    let net = Netns::new("pwf-tracefs", &[]);
    let inode = net.inode;
    let ns = NoTracefs::new();
    // All spawned back to back: they race to mount tracefs.
    let children: Vec<Child> = ns.run(move || {
        let netns = inode.to_string();
        (0..STARTS)
            .map(|_| Tracer::spawn(&["trace", "--json", "--duration", "60", "--netns", &netns]))
            .collect()
    });
    let mut tracers: Vec<Tracer> = children.into_iter().map(Tracer::attach).collect();
    let mounted_inside = ns.run(tracefs_mounts);
    assert!(
        !mounted_inside.is_empty(),
        "portwatch started but no tracefs is mounted in its namespace"
    );
    // Nothing mounted here before is gone (other tests' portwatch may
    // have mounted tracefs here meanwhile, which is theirs to do).
    let here = tracefs_mounts();
    assert!(
        host_before.iter().all(|m| here.contains(m)),
        "a tracefs mount of the test's own namespace went away: {host_before:?} → {here:?}"
    );

    net.run(|| start_server_with_connections("127.0.0.1:0", CONNS));
    let mut worst = usize::MAX;
    let mut rss = 0;
    for t in &mut tracers {
        let ok = t.wait_for(Duration::from_secs(20), |seen| {
            of(seen, "close", inode).count() >= 2 * CONNS
        });
        let got = of(&t.seen, "close", inode).count();
        assert!(
            ok,
            "a portwatch saw {got} of {} close events (netns {inode}): {:?}",
            2 * CONNS,
            t.seen.iter().take(3).collect::<Vec<_>>()
        );
        worst = worst.min(got);
        rss = rss.max(peak_rss_kib(t.pid()).unwrap_or(0));
    }
    let mut lost = 0;
    for t in tracers {
        let (stderr, _) = t.stop_successfully("portwatch");
        lost += lost_in(summary_line(&stderr));
    }
    drop(ns);
    let here = tracefs_mounts();
    assert!(host_before.iter().all(|m| here.contains(m)));
    report(Figure {
        fault: "tracefs not mounted",
        injected: format!(
            "{STARTS} `trace` started at once in a mount namespace without tracefs; \
             {CONNS} connections"
        ),
        delivered: Some((worst * STARTS) as u64),
        lost: Some(lost),
        missed: Some(0),
        rss_kib: Some(rss),
        exit: format!("{STARTS}× 0"),
    });
}

// ---------------------------------------------------------------------------
// Reader starved: the ring buffer fills while portwatch is stopped

/// Connection churn inside a namespace: client threads connect and wait for
/// the server's close (the server closes first, so no client port is held
/// in TIME_WAIT and the churn never exhausts the port range).
struct Churn {
    stop: Arc<AtomicBool>,
    /// Connections completed by the clients (each one outbound close event).
    done: Arc<AtomicU64>,
    clients: Vec<thread::JoinHandle<()>>,
    addr: SocketAddr,
    /// CLOCK_MONOTONIC after each completed connection (paced churn only).
    closed_ns: Arc<std::sync::Mutex<Vec<u64>>>,
}

/// CLOCK_MONOTONIC in ns: the clock of the kernel's event timestamps.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Churn {
    fn start(ns: &Netns, threads: usize) -> Churn {
        Churn::paced(ns, threads, None)
    }

    /// With `pause`, each client sleeps that long between connections and
    /// the time of every completed connection is kept.
    fn paced(ns: &Netns, threads: usize, pause: Option<Duration>) -> Churn {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let closed_ns = Arc::new(std::sync::Mutex::new(Vec::new()));
        let times = closed_ns.clone();
        let (s, d) = (stop.clone(), done.clone());
        let (clients, addr) = ns.run(move || {
            let sock = socket2::Socket::new(
                socket2::Domain::IPV4,
                socket2::Type::STREAM,
                Some(socket2::Protocol::TCP),
            )
            .expect("socket");
            let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
            sock.bind(&bind.into()).expect("bind");
            sock.listen(4096).expect("listen");
            let listener: std::net::TcpListener = sock.into();
            let addr = listener.local_addr().unwrap();
            let ss = s.clone();
            thread::Builder::new()
                .name("pwf-server".into())
                .spawn(move || {
                    for c in listener.incoming() {
                        drop(c);
                        if ss.load(Ordering::Relaxed) {
                            break;
                        }
                    }
                })
                .unwrap();
            let clients = (0..threads)
                .map(|_| {
                    let (s, d, times) = (s.clone(), d.clone(), times.clone());
                    thread::Builder::new()
                        .name("pwf-churn".into())
                        .spawn(move || {
                            while !s.load(Ordering::Relaxed) {
                                if let Ok(mut c) = TcpStream::connect(addr) {
                                    let mut rest = Vec::new();
                                    let _ = std::io::Read::read_to_end(&mut c, &mut rest);
                                    drop(c);
                                    d.fetch_add(1, Ordering::Relaxed);
                                    if let Some(p) = pause {
                                        times.lock().unwrap().push(monotonic_ns());
                                        thread::sleep(p);
                                    }
                                }
                            }
                        })
                        .unwrap()
                })
                .collect::<Vec<_>>();
            (clients, addr)
        });
        Churn {
            stop,
            done,
            clients,
            addr,
            closed_ns,
        }
    }

    fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Stops the clients; returns the connections they completed.
    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        for c in self.clients {
            c.join().unwrap();
        }
        // Wakes the server out of accept() so it sees the stop flag; this
        // connection is not counted and not from a churn thread.
        let _ = TcpStream::connect(self.addr);
        self.done.load(Ordering::Relaxed)
    }
}

/// Waits (bounded) until no TCP socket of the namespace is between open and
/// CLOSE (TIME_WAIT and listeners aside): the CLOSE tracepoint runs before a
/// socket leaves the table, so every close record has been submitted then.
/// Loopback closes finish in softirq, which may lag the closing syscall.
fn quiesce(ns: &Netns) {
    let settled = ns.run(|| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let table = std::fs::read_to_string("/proc/thread-self/net/tcp").unwrap_or_default();
            let open = table
                .lines()
                .skip(1)
                .filter(|l| {
                    let st = l.split_whitespace().nth(3).unwrap_or("");
                    st != "06" && st != "0A"
                })
                .count();
            if open == 0 {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
    });
    assert!(
        settled,
        "sockets of the test namespace did not close within 10 s"
    );
}

/// Records in the 4 MiB ring buffer (144-byte records + 8-byte headers).
const RING_RECORDS: u64 = 4 * 1024 * 1024 / 152;

#[test]
fn a_stopped_reader_loses_events_that_are_all_counted_and_shown() {
    let Some(_serial) = kernel_fault_turn() else {
        return;
    };
    let ns = Netns::new("pwf-starved", &[("ipv4/ip_local_port_range", "1024 65000")]);
    let inode = ns.inode;
    let netns = inode.to_string();
    let tracer = Tracer::start(&["trace", "--json", "--duration", "120", "--netns", &netns]);
    // The other views starve alongside: the loss must show in each.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("starved.pwt");
    let recorder = Tracer::start(&["record", "-o", file.to_str().unwrap(), "--duration", "120"]);
    let top = Tracer::start(&top_batch_json_args(&["--iterations", "120"]));
    let all = [tracer.pid(), recorder.pid(), top.pid()];
    let churn = Churn::start(&ns, 2);
    // A little churn delivered normally first.
    let started = Instant::now();
    while churn.done() < 500 && started.elapsed() < Duration::from_secs(10) {
        thread::sleep(Duration::from_millis(10));
    }
    for pid in all {
        signal(pid, libc::SIGSTOP);
    }
    let stopped_at = Instant::now();
    let before = churn.done();
    // At least 3 s, and long enough for the churn to overflow the ring
    // twice over (each connection is two records: both ends), bounded.
    while stopped_at.elapsed() < Duration::from_secs(3)
        || (churn.done() - before < RING_RECORDS && stopped_at.elapsed() < Duration::from_secs(20))
    {
        thread::sleep(Duration::from_millis(50));
    }
    let stopped_for = stopped_at.elapsed();
    let during = churn.done() - before;
    for pid in all {
        signal(pid, libc::SIGCONT);
    }
    let resumed = Instant::now();
    while resumed.elapsed() < Duration::from_secs(1) {
        thread::sleep(Duration::from_millis(10));
    }
    let expected = churn.finish();
    quiesce(&ns);
    // Each completed connection is two close events: the client's end and
    // the server's (the server accepted it: it closed it).
    let expected_events = 2 * expected;
    let rss = peak_rss_kib(tracer.pid());
    let (stderr, seen) = tracer.stop_successfully("portwatch");
    let delivered = of(&seen, "close", inode).count() as u64;
    let summary = summary_line(&stderr);
    let lost = lost_in(summary);
    assert!(
        summary.contains("ring buffer full: ") && !summary.contains("ring buffer full: 0,"),
        "the loss is not shown as ring buffer full: {summary}"
    );
    assert!(
        delivered < expected_events,
        "{during} connections while stopped {stopped_for:?} did not overflow the ring: \
         {delivered} of {expected_events} events delivered"
    );
    // Every event is delivered or counted. (The loss counter is global: other
    // traffic on the host adds to it, so it may exceed what this namespace
    // missed, never fall short of it.)
    let skipped = skipped_in(summary);
    let missed = expected_events.saturating_sub(delivered + lost + skipped);
    assert_eq!(
        missed, 0,
        "{expected_events} events: {delivered} delivered, {lost} counted lost, {skipped} \
         tracepoint runs skipped by the kernel: {summary}"
    );
    // top --batch: the frames after the stall carry the loss.
    let (_, frames) = top.stop_successfully("top --batch");
    let top_lost = frames
        .last()
        .and_then(|f| f["system"]["lost_events"].as_u64())
        .expect("top --batch frames with lost_events");
    assert!(top_lost > 0, "top --batch shows no loss after the stall");
    // record: the file carries the loss, and report shows it.
    recorder.stop_successfully("record");
    let out = Command::new(env!("CARGO_BIN_EXE_portwatch"))
        .args(["report", "--json", file.to_str().unwrap()])
        .output()
        .expect("report");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rep: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report JSON");
    let report_lost = rep["lost_events"]["total"]
        .as_u64()
        .expect("lost_events.total");
    assert!(
        report_lost > 0,
        "report of the starved recording shows no loss"
    );
    report(Figure {
        fault: "reader starved",
        injected: format!(
            "SIGSTOP for {:.1} s under churn ({expected} connections, {during} while stopped)",
            stopped_for.as_secs_f64()
        ),
        delivered: Some(delivered),
        lost: Some(lost + skipped),
        missed: Some(missed),
        rss_kib: rss,
        exit: format!(
            "0; {skipped} of the counted were tracepoint runs skipped by the kernel; lost also shown by `top --batch` ({top_lost}) and `report` of a starved \
             `record` ({report_lost})"
        ),
    });
}

// ---------------------------------------------------------------------------
// Disk full while recording

/// Where the small tmpfs is mounted, inside the test's mount namespace only.
const SMALL_FS: &str = "/run/portwatch-fault-small-fs";

#[test]
fn a_full_disk_stops_record_with_a_clear_error_and_the_file_stays_readable() {
    let Some(_serial) = kernel_fault_turn() else {
        return;
    };
    // 512 KiB: filled within a few seconds of churn (~16 bytes a connection).
    let ns = NoTracefs::with(|| {
        std::fs::create_dir_all(SMALL_FS).map_err(|e| format!("mkdir {SMALL_FS}: {e}"))?;
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=512k", "tmpfs", SMALL_FS])
            .status()
            .map_err(|e| format!("mount: {e}"))?;
        if !st.success() {
            return Err("mounting a tmpfs failed".into());
        }
        Ok(())
    });
    let net = Netns::new(
        "pwf-diskfull",
        &[("ipv4/ip_local_port_range", "1024 65000")],
    );
    let inode = net.inode;
    let file = format!("{SMALL_FS}/full.pwt");
    let f = file.clone();
    let mut rec = ns.run(move || Tracer::spawn(&["record", "-o", &f, "--duration", "60"]));
    // Wait until it records (its first stderr line says so).
    let stderr = rec.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for l in std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("record said nothing");
    assert!(first.contains("recording"), "record did not start: {first}");
    let churn = Churn::start(&net, 2);
    // record must stop by itself once the disk is full (bounded).
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = rec.try_wait().expect("wait record") {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "record did not stop on a full disk within 30 s"
        );
        thread::sleep(Duration::from_millis(50));
    };
    let connections = churn.finish();
    let stderr: Vec<String> = rx.try_iter().collect();
    assert_eq!(
        status.code(),
        Some(1),
        "record's exit on a full disk: {status:?} {stderr:?}"
    );
    assert!(
        stderr
            .iter()
            .any(|l| l.contains("No space left on device") && l.contains(&file)),
        "no clear error naming the file: {stderr:?}"
    );
    assert!(
        !stderr.iter().any(|l| l.contains("panicked")),
        "record panicked: {stderr:?}"
    );
    // The file up to the failure is readable: report succeeds and export
    // gives the connections recorded, in valid JSON.
    let f = file.clone();
    let (rep, export) = ns.run(move || {
        let bin = env!("CARGO_BIN_EXE_portwatch");
        let report = Command::new(bin)
            .args(["report", &f])
            .output()
            .expect("report");
        let export = Command::new(bin)
            .args(["export", "--format", "jsonl", &f])
            .output()
            .expect("export");
        (report, export)
    });
    let report_err = String::from_utf8_lossy(&rep.stderr);
    assert!(
        rep.status.success(),
        "report on the file of a full disk failed: {report_err}"
    );
    assert!(
        export.status.success(),
        "export failed: {}",
        String::from_utf8_lossy(&export.stderr)
    );
    // A write cut short by the full disk leaves a partial frame: the
    // warning says so and names both ways a file ends like that.
    let torn = report_err.contains("incomplete last frame");
    if torn {
        assert!(
            report_err.contains("the file ends in a partial frame")
                && report_err.contains("killed or ran out of disk space"),
            "the torn-frame warning does not say what happened: {report_err}"
        );
    }
    let readable = String::from_utf8_lossy(&export.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("export line is JSON"))
        .filter(|v| v["netns"] == inode)
        .count() as u64;
    assert!(
        readable > 0,
        "nothing of the test's traffic is readable in the file"
    );
    drop(ns); // the tmpfs goes with its mount namespace
    let _ = std::fs::remove_dir(SMALL_FS);
    report(Figure {
        fault: "disk full while recording",
        injected: format!("`record` onto a 512 KiB tmpfs under churn ({connections} connections)"),
        delivered: Some(readable),
        lost: None,
        missed: None,
        rss_kib: None,
        exit: format!(
            "{} (\"No space left on device\"); report 0{}",
            status.code().unwrap_or(-1),
            if torn {
                " with a warning (file ends in a partial frame, skipped)"
            } else if report_err.contains("warning") {
                " with a warning"
            } else {
                ""
            }
        ),
    });
}

// ---------------------------------------------------------------------------
// Privileges

/// `portwatch <args>` under `setpriv <setpriv>`: (exit code, stderr).
fn run_with_privileges(setpriv: &[&str], args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new("setpriv")
        .args(setpriv)
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_portwatch"))
        .args(args)
        .output()
        .expect("run setpriv (util-linux)");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_no_backtrace(stderr: &str) {
    assert!(
        !stderr.contains("panicked") && !stderr.contains("stack backtrace"),
        "a panic instead of a message: {stderr}"
    );
}

#[test]
fn without_privileges_the_missing_capability_is_named_and_with_only_bpf_and_perfmon_it_works() {
    let Some(_serial) = kernel_fault_turn() else {
        return;
    };
    // An unprivileged user.
    let nobody = [
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
    ];
    let (code, err) = run_with_privileges(&nobody, &["trace", "--duration", "1"]);
    assert_no_backtrace(&err);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("missing: CAP_BPF, CAP_PERFMON") && err.contains("sudo"),
        "{err}"
    );
    // Root with CAP_BPF but not CAP_PERFMON: the one missing is named.
    let (code, err) = run_with_privileges(
        &["--bounding-set=-all,+bpf", "--inh-caps=-all"],
        &["trace", "--duration", "1"],
    );
    assert_no_backtrace(&err);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("missing: CAP_PERFMON)"), "{err}");

    // Root with only CAP_BPF + CAP_PERFMON: it works and sees the traffic.
    let net = Netns::new("pwf-caps", &[]);
    let netns = net.inode.to_string();
    let child = Command::new("setpriv")
        .args(["--bounding-set=-all,+bpf,+perfmon", "--inh-caps=-all", "--"])
        .arg(env!("CARGO_BIN_EXE_portwatch"))
        .args(["trace", "--json", "--duration", "60", "--netns", &netns])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn setpriv");
    let mut t = Tracer::attach(child);
    let caps = std::fs::read_to_string(format!("/proc/{}/status", t.pid())).unwrap();
    let eff = caps
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        .unwrap();
    assert_eq!(eff, (1 << 38) | (1 << 39), "CapEff of portwatch: {eff:x}");
    net.run(|| start_server_with_connections("127.0.0.1:0", 5));
    let inode = net.inode;
    let ok = t.wait_for(Duration::from_secs(20), |seen| {
        of(seen, "close", inode).count() >= 10
    });
    assert!(
        ok,
        "with CAP_BPF + CAP_PERFMON only, {} of 10 events",
        of(&t.seen, "close", inode).count()
    );
    let rss = peak_rss_kib(t.pid());
    let (stderr, seen) = t.stop_successfully("portwatch");
    report(Figure {
        fault: "privileges",
        injected: "user nobody; root with CAP_BPF only; root with only CAP_BPF + CAP_PERFMON \
                   (setpriv)"
            .into(),
        delivered: Some(of(&seen, "close", inode).count() as u64),
        lost: Some(lost_in(summary_line(&stderr))),
        missed: Some(0),
        rss_kib: rss,
        exit: "1 \"missing: CAP_BPF, CAP_PERFMON\"; 1 \"missing: CAP_PERFMON\"; 0".into(),
    });
}

// ---------------------------------------------------------------------------
// SIGKILL of `record` at many moments

/// A small deterministic generator for the kill points (the seed is printed,
/// and `PORTWATCH_FAULT_SEED` replays a run).
fn next_rand(state: &mut u64) -> u64 {
    // splitmix64
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[test]
fn record_killed_at_any_moment_leaves_a_file_readable_up_to_its_last_flushed_frame() {
    let Some(_serial) = kernel_fault_turn() else {
        return;
    };
    const KILLS: usize = 10;
    /// Frames are flushed every second of trace time; what closed longer
    /// ago than this before the kill must be on disk.
    const FLUSHED_BY_NS: u64 = 1_500_000_000;
    let mut seed = std::env::var("PORTWATCH_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(monotonic_ns);
    eprintln!("kill points from PORTWATCH_FAULT_SEED={seed}");
    let ns = Netns::new("pwf-killed", &[]);
    let inode = ns.inode;
    // ~1,000 connections/s: a load the recorder keeps up with, so every
    // connection is either in a flushed frame or after the last one.
    let churn = Churn::paced(&ns, 2, Some(Duration::from_millis(2)));
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    let mut readable_total = 0u64;
    let mut torn = 0;
    let mut worst_rss = 0;
    for k in 0..KILLS {
        // 0.05 s .. 4 s after recording started: before, at and between
        // the once-a-second flushes.
        let delay = Duration::from_millis(50 + next_rand(&mut seed) % 3950);
        let path = dir.path().join(format!("kill{k}.pwt"));
        let p = path.to_str().unwrap().to_string();
        let mut child = Tracer::spawn(&["record", "-o", &p, "--duration", "60"]);
        let mut stderr = std::io::BufReader::new(child.stderr.take().expect("stderr"));
        let mut line = String::new();
        loop {
            line.clear();
            let n = std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
            assert!(n > 0, "record exited before recording");
            if line.contains("recording") {
                break;
            }
        }
        let started_ns = monotonic_ns();
        thread::sleep(delay);
        worst_rss = worst_rss.max(peak_rss_kib(child.id()).unwrap_or(0));
        child.kill().unwrap(); // SIGKILL
        let killed_ns = monotonic_ns();
        let st = child.wait().unwrap();
        assert!(!st.success());

        let mut r = portwatch::tracefile::Reader::open(&path)
            .unwrap_or_else(|e| panic!("kill {k} after {delay:?}: file unreadable: {e}"));
        let inputs = r
            .by_ref()
            .collect::<Result<Vec<_>, _>>()
            .unwrap_or_else(|e| panic!("kill {k} after {delay:?}: read error: {e}"));
        assert!(
            r.warnings().len() <= 1,
            "kill {k} after {delay:?}: more than a torn last frame: {:?}",
            r.warnings()
        );
        torn += r.warnings().len();
        if let Some(first) = inputs.first() {
            assert!(
                matches!(first, portwatch::input::Input::Host(_)),
                "kill {k}: the file does not start with the host record"
            );
        }
        let ours: Vec<u64> = inputs
            .iter()
            .filter_map(|i| match i {
                portwatch::input::Input::Event(portwatch::event::Event::Close(c))
                    if c.netns == inode && c.direction == portwatch::event::Direction::Outbound =>
                {
                    Some(c.end_ns)
                }
                _ => None,
            })
            .collect();
        readable_total += ours.len() as u64;
        // Connections that closed after recording began and long enough
        // before the kill are all in the file.
        let window = (started_ns + 200_000_000)..killed_ns.saturating_sub(FLUSHED_BY_NS);
        if !window.is_empty() {
            let made = churn
                .closed_ns
                .lock()
                .unwrap()
                .iter()
                .filter(|t| window.contains(t))
                .count();
            let in_file = ours.iter().filter(|&&t| t >= started_ns).count();
            assert!(
                in_file >= made,
                "kill {k} after {delay:?}: {made} connections closed more than 1.5 s before \
                 the kill, only {in_file} in the file"
            );
            checked += 1;
        }
    }
    churn.finish();
    assert!(
        checked >= 2,
        "too few kill points late enough to check content ({checked})"
    );
    report(Figure {
        fault: "record killed (SIGKILL)",
        injected: format!(
            "{KILLS} kills at random moments 0.05–4 s into a recording under churn \
             ({checked} late enough to check content)"
        ),
        delivered: Some(readable_total),
        lost: None,
        missed: Some(0),
        rss_kib: Some(worst_rss),
        exit: format!("SIGKILL; all {KILLS} files readable ({torn} torn last frames skipped)"),
    });
}

// ---------------------------------------------------------------------------
// Degraded kernels, simulated in a private mount namespace

/// Mounts `fstype` at `target` (in the calling thread's mount namespace).
fn mount(fstype: &str, target: &str) -> Result<(), String> {
    let st = Command::new("mount")
        .args(["-t", fstype, fstype, target])
        .status()
        .map_err(|e| format!("mount: {e}"))?;
    if !st.success() {
        return Err(format!("mount -t {fstype} {target} failed"));
    }
    Ok(())
}

/// Outbound closes to `port` and a refused connect to `refused`, made in
/// `ns` once `t` is tracing.
fn traffic(ns: &Netns, conns: usize) -> (u16, u16) {
    ns.run(move || {
        let addr = start_server_with_connections("127.0.0.1:0", conns);
        // A port nobody listens on: the connect is refused.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let refused = closed.local_addr().unwrap().port();
        drop(closed);
        assert!(TcpStream::connect(("127.0.0.1", refused)).is_err());
        (addr.port(), refused)
    })
}

#[test]
fn degraded_kernels_give_the_documented_warnings_and_null_fields() {
    let Some(_serial) = kernel_fault_turn() else {
        return;
    };
    const CONNS: usize = 5;

    // 1. No kernel BTF: /sys/kernel/btf hidden under an empty tmpfs.
    let ns = NoTracefs::with(|| {
        mount("tracefs", "/sys/kernel/tracing")?;
        mount("tmpfs", "/sys/kernel/btf")
    });
    let net = Netns::new("pwf-nobtf", &[]);
    // Without BTF events carry no netns: filter by process name instead.
    let t =
        ns.run(|| Tracer::spawn(&["trace", "--json", "--duration", "60", "--comm", "pwf-nobtf"]));
    let mut t = Tracer::attach(t);
    let (port, refused) = traffic(&net, CONNS);
    let ours = |seen: &[serde_json::Value]| {
        seen.iter()
            .filter(|v| v["event"] == "close" && v["dport"] == port && v["direction"] == "out")
            .count()
    };
    assert!(
        t.wait_for(Duration::from_secs(20), |seen| ours(seen) >= CONNS),
        "without BTF: {} of {CONNS} connections",
        ours(&t.seen)
    );
    let rss = peak_rss_kib(t.pid());
    let warnings = std::mem::take(&mut t.startup);
    let (_, seen) = t.stop_successfully("portwatch");
    assert!(
        warnings
            .iter()
            .any(|l| l.contains("warning: no kernel BTF")),
        "no BTF warning: {warnings:?}"
    );
    for v in seen
        .iter()
        .filter(|v| v["dport"] == port && v["direction"] == "out")
    {
        for f in ["bytes_sent", "bytes_received", "netns"] {
            assert!(v[f].is_null(), "{f} should be null without BTF: {v}");
        }
        assert_eq!(v["comm"], v["thread"], "thread is comm without BTF: {v}");
        assert!(v["pid"].is_u64() && v["lifetime_us"].is_u64(), "{v}");
    }
    let refusals: Vec<_> = seen.iter().filter(|v| v["dport"] == refused).collect();
    assert_eq!(refusals.len(), 1, "the refused connect once: {refusals:?}");
    drop(ns);
    let nobtf_delivered = ours(&seen) as u64;

    // 2. No syscall tracepoints: events/syscalls hidden under an empty tmpfs.
    let ns = NoTracefs::with(|| {
        mount("tracefs", "/sys/kernel/tracing")?;
        mount("tmpfs", "/sys/kernel/tracing/events/syscalls")
    });
    let net = Netns::new("pwf-nosys", &[]);
    let netns = net.inode.to_string();
    let t =
        ns.run(move || Tracer::spawn(&["trace", "--json", "--duration", "60", "--netns", &netns]));
    let mut t = Tracer::attach(t);
    let (port, refused) = traffic(&net, CONNS);
    let inode = net.inode;
    let done = |seen: &[serde_json::Value]| {
        of(seen, "close", inode)
            .filter(|v| v["dport"] == port)
            .count()
            >= CONNS
            && of(seen, "close", inode).any(|v| v["dport"] == refused)
    };
    assert!(
        t.wait_for(Duration::from_secs(20), done),
        "without syscall tracepoints: {:?}",
        t.seen
    );
    let warnings = std::mem::take(&mut t.startup);
    let (_, seen) = t.stop_successfully("portwatch");
    assert!(
        warnings
            .iter()
            .any(|l| l.contains("warning: tracepoints syscalls/") && l.contains("missing")),
        "no warning about the syscall tracepoints: {warnings:?}"
    );
    // The refused connect is still reported, as a failed handshake, once.
    let refusals: Vec<_> = seen.iter().filter(|v| v["dport"] == refused).collect();
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert_eq!(refusals[0]["errno"], "ECONNREFUSED", "{}", refusals[0]);
    assert_eq!(refusals[0]["established"], false);
    drop(ns);

    // 3. No right to mount tracefs: only CAP_BPF + CAP_PERFMON, no tracefs.
    let ns = NoTracefs::new();
    let out = ns.run(|| {
        Command::new("setpriv")
            .args(["--bounding-set=-all,+bpf,+perfmon", "--inh-caps=-all", "--"])
            .arg(env!("CARGO_BIN_EXE_portwatch"))
            .args(["trace", "--duration", "1"])
            .output()
            .expect("setpriv")
    });
    let err = String::from_utf8_lossy(&out.stderr);
    assert_no_backtrace(&err);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("tracefs is not mounted and mounting it failed")
            && err.contains("mount -t tracefs tracefs /sys/kernel/tracing"),
        "{err}"
    );

    report(Figure {
        fault: "degraded kernel",
        injected: "no BTF (/sys/kernel/btf hidden); no syscall tracepoints \
                   (events/syscalls hidden); no right to mount tracefs"
            .into(),
        delivered: Some(nobtf_delivered),
        lost: None,
        missed: Some(0),
        rss_kib: rss,
        exit: "0 with a warning, bytes/netns null; 0 with a warning, refusals still reported; \
               1 naming the mount command"
            .into(),
    });
}

// ---------------------------------------------------------------------------
// Bad trace input: 1 GiB files of zeros and garbage

/// The address-space limit the trace readers run under: an allocation
/// without bound fails there instead of passing unnoticed.
const READER_AS_LIMIT: u64 = 1 << 30;

/// Runs `portwatch <args>` to completion (bounded) under
/// [`READER_AS_LIMIT`]: (exit code, stderr, peak RSS in KiB as sampled from
/// /proc every 2 ms, seconds). (wait4's ru_maxrss would include the test
/// process's own memory, inherited at fork.)
fn run_measured(args: &[&str], limit: Duration) -> (Option<i32>, String, u64, f64) {
    use std::os::unix::process::CommandExt;
    let started = Instant::now();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portwatch"));
    cmd.args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe; the closure touches nothing else.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: READER_AS_LIMIT,
                rlim_max: READER_AS_LIMIT,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    let mut child = cmd.spawn().expect("spawn portwatch");
    let mut err = child.stderr.take().unwrap();
    let reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    let mut rss = 0;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        rss = rss.max(peak_rss_kib(child.id()).unwrap_or(0));
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("portwatch {args:?} did not finish within {limit:?}");
        }
        thread::sleep(Duration::from_millis(2));
    };
    let secs = started.elapsed().as_secs_f64();
    (status.code(), reader.join().unwrap(), rss, secs)
}

#[test]
fn gigabyte_files_of_zeros_and_garbage_are_read_in_bounded_memory_with_a_clear_message() {
    let _serial = serial();
    use std::io::{Seek, SeekFrom};
    const GIB: u64 = 1 << 30;
    let dir = tempfile::tempdir().unwrap();
    // A real trace (synthetic churn) to put in front of the damage.
    let valid = |path: &Path| {
        let mut w = portwatch::tracefile::Writer::create(path, true).unwrap();
        for i in portwatch::tracefile::synthetic::churn(20_000, 1_000) {
            w.append(&i).unwrap();
        }
        w.finish().unwrap();
    };
    let mut seed = 0x5eed_u64;
    let mut garbage = |f: &mut std::fs::File, at: u64, len: usize| {
        let bytes: Vec<u8> = (0..len).map(|_| next_rand(&mut seed) as u8).collect();
        f.seek(SeekFrom::Start(at)).unwrap();
        f.write_all(&bytes).unwrap();
    };
    let cases: Vec<(&str, std::path::PathBuf)> = {
        // a) a valid trace, then zeros up to 1 GiB (sparse)
        let a = dir.path().join("zeros-after.pwt");
        valid(&a);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&a)
            .unwrap()
            .set_len(GIB)
            .unwrap();
        // b) garbage from the first byte: 4 KiB every 128 MiB of a sparse GiB
        let b = dir.path().join("garbage.pwt");
        let mut f = std::fs::File::create(&b).unwrap();
        f.set_len(GIB).unwrap();
        for k in 0..8 {
            garbage(&mut f, k * (128 << 20), 4096);
        }
        // c) a valid trace, then 64 KiB of garbage, then zeros to 1 GiB
        let c = dir.path().join("garbage-after.pwt");
        valid(&c);
        let mut f = std::fs::OpenOptions::new().write(true).open(&c).unwrap();
        let end = f.metadata().unwrap().len();
        garbage(&mut f, end, 64 << 10);
        f.set_len(GIB).unwrap();
        vec![
            ("valid trace + zeros to 1 GiB", a),
            ("1 GiB of garbage, no header", b),
            ("valid trace + garbage + zeros to 1 GiB", c),
        ]
    };
    let mut worst_rss = 0;
    let mut worst_s = 0f64;
    let mut exits = Vec::new();
    for (what, path) in &cases {
        let p = path.to_str().unwrap();
        for cmd in ["report", "export"] {
            let (code, stderr, rss, secs) = run_measured(&[cmd, p], Duration::from_secs(120));
            assert_no_backtrace(&stderr);
            assert!(
                matches!(code, Some(0) | Some(1)),
                "{cmd} on {what}: exit {code:?}: {stderr}"
            );
            assert!(
                stderr.contains("byte") || stderr.contains("not a portwatch trace"),
                "{cmd} on {what}: the message names no offset: {stderr}"
            );
            // The reader caps what it allocates (frames, dictionaries,
            // zstd window): a GiB of input must not become a GiB of memory
            // (an allocation past READER_AS_LIMIT would have killed it).
            worst_rss = worst_rss.max(rss);
            worst_s = worst_s.max(secs);
            eprintln!(
                "{cmd} on {what}: exit {code:?}, {rss} KiB, {secs:.2} s: {}",
                stderr.trim()
            );
            exits.push(code.unwrap_or(-1));
        }
    }
    report(Figure {
        fault: "bad trace input",
        injected: format!(
            "`report` and `export` on 1 GiB sparse files: {}; slowest {worst_s:.1} s",
            cases.iter().map(|c| c.0).collect::<Vec<_>>().join("; ")
        ),
        delivered: None,
        lost: None,
        missed: None,
        rss_kib: Some(worst_rss),
        exit: format!("{exits:?} with the byte offset named"),
    });
}

// ---------------------------------------------------------------------------
// Cardinality flood

/// The body of one short-lived process of the flood: one connection to the
/// `sockaddr_in` at `arg`, then exit (0 when it was made).
///
/// It runs in the parent's memory (see [`spawn_flood`]), so it makes raw
/// system calls only: no allocation, no locks, nothing of the parent's
/// libc state but errno.
extern "C" fn flood_child(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` points at a sockaddr_in the parent keeps alive (and
    // unchanged) until it has reaped this process; plain system calls.
    unsafe {
        let fd = libc::syscall(libc::SYS_socket, libc::AF_INET, libc::SOCK_STREAM, 0);
        if fd < 0 {
            return 2;
        }
        let rc = libc::syscall(
            libc::SYS_connect,
            fd,
            arg.cast_const(),
            std::mem::size_of::<libc::sockaddr_in>(),
        );
        libc::syscall(libc::SYS_close, fd);
        i32::from(rc != 0)
    }
}

/// Starts `n` short-lived processes from the calling thread (so they share
/// its network namespace and comm), at most `window` alive at once: process
/// `i` connects once to `127.1.0.0 + i` on `port` and exits. Returns
/// (connections made, the processes' pids).
///
/// Each is a process of its own to the kernel (its own pid and thread
/// group) made by `clone(CLONE_VM)`, what vfork and posix_spawn use: it
/// shares the parent's memory instead of copying its page tables, and
/// needs no exec. A fork of this test process cost ~0.3 ms of CPU, too
/// slow for 100,000 in a minute next to portwatch on 2 shared cores.
fn spawn_flood(n: u32, window: usize, port: u16) -> (u32, Vec<u32>) {
    const STACK_BYTES: usize = 64 * 1024;
    // One stack and one address per slot; a slot is reused only once the
    // process that used it has been reaped.
    let mut stacks = vec![vec![0u8; STACK_BYTES]; window];
    let mut addrs = vec![
        libc::sockaddr_in {
            sin_family: libc::AF_INET as u16,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr { s_addr: 0 },
            sin_zero: [0; 8],
        };
        window
    ];
    let mut alive: std::collections::VecDeque<(libc::pid_t, usize)> = Default::default();
    let mut free: Vec<usize> = (0..window).collect();
    let mut pids = Vec::with_capacity(n as usize);
    let mut made = 0u32;
    let reap = |pid: libc::pid_t, made: &mut u32| {
        let mut status = 0;
        // SAFETY: reaping our own child by its pid (never -1: the portwatch
        // child of this test must not be reaped here).
        let rc = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
        assert_eq!(rc, pid, "waitpid: {}", std::io::Error::last_os_error());
        if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
            *made += 1;
        }
    };
    for i in 0..n {
        if free.is_empty() {
            let (pid, slot) = alive.pop_front().expect("a process alive");
            reap(pid, &mut made);
            free.push(slot);
        }
        let slot = free.pop().expect("a free slot");
        addrs[slot].sin_addr.s_addr = (0x7f01_0000u32 + i).to_be();
        // The stack grows down from the end of the slot's buffer (16-byte
        // aligned, as the ABI wants).
        let top = stacks[slot].as_mut_ptr_range().end as usize & !15;
        // SAFETY: the child runs `flood_child` on its own stack and touches
        // only its argument, which stays valid until it is reaped; SIGCHLD
        // makes it a child we wait for like a forked one.
        let pid = unsafe {
            libc::clone(
                flood_child,
                top as *mut libc::c_void,
                libc::CLONE_VM | libc::SIGCHLD,
                (&raw mut addrs[slot]).cast(),
            )
        };
        assert!(pid > 0, "clone: {}", std::io::Error::last_os_error());
        pids.push(pid as u32);
        alive.push_back((pid, slot));
    }
    while let Some((pid, _)) = alive.pop_front() {
        reap(pid, &mut made);
    }
    (made, pids)
}

/// A TCP listener on `bind` (IPv4) with an accept queue of 4,096 (std's
/// is 128): floods of connects are queued, not refused.
fn listener_with_backlog_4096(bind: &str) -> std::net::TcpListener {
    let sock = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .unwrap();
    let bind: SocketAddr = bind.parse().unwrap();
    sock.bind(&bind.into()).unwrap();
    sock.listen(4096).unwrap();
    sock.into()
}

#[test]
fn a_flood_of_destinations_and_processes_keeps_memory_bounded_and_frames_coming() {
    let Some(_serial) = kernel_fault_turn() else {
        return;
    };
    // What the issue asks for: 100,000 short-lived processes, each making
    // one connection to a destination of its own (100,000 distinct), within
    // a minute.
    const PROCESSES: u32 = 100_000;
    const WITHIN: Duration = Duration::from_secs(60);
    /// The documented cap (README, Memory bound).
    const RSS_CAP_KIB: u64 = 100 * 1024;
    /// "The view stays responsive": a frame at least this often (frames
    /// are asked for every second).
    const FRAME_BOUND: Duration = Duration::from_secs(2);
    let ns = Netns::new("pwf-flood", &[("ipv4/ip_local_port_range", "1024 65000")]);
    let mut t = Tracer::start(&top_batch_json_args(&["--iterations", "600"]));
    let stop = Arc::new(AtomicBool::new(false));
    let flood = {
        let stop = stop.clone();
        ns.run(move || {
            let listener = listener_with_backlog_4096("0.0.0.0:0");
            let port = listener.local_addr().unwrap().port();
            let s = stop.clone();
            thread::spawn(move || {
                for c in listener.incoming() {
                    drop(c);
                    if s.load(Ordering::Relaxed) {
                        break;
                    }
                }
            });
            // Forked from a thread of this namespace, named like it: the
            // children inherit both.
            thread::Builder::new()
                .name("pwf-flood".into())
                .spawn(move || {
                    let started = Instant::now();
                    let (made, pids) = spawn_flood(PROCESSES, 64, port);
                    (made, pids, started.elapsed())
                })
                .unwrap()
        })
    };
    // Frames keep coming while the flood runs: the longest gap between two.
    let mut last = Instant::now();
    let mut gaps = Vec::new();
    while !flood.is_finished() {
        let n = t.seen.len();
        assert!(
            t.wait_for(Duration::from_secs(30), |s| s.len() > n),
            "no frame for 30 s during the flood"
        );
        gaps.push(last.elapsed());
        last = Instant::now();
    }
    let (made, pids, took) = flood.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    // Two more frames, so the last counts everything.
    let n = t.seen.len();
    assert!(t.wait_for(Duration::from_secs(10), |s| s.len() >= n + 2));
    let rss = peak_rss_kib(t.pid()).unwrap();
    // Resident pages mapped from files: mostly the binary's own code,
    // ~20 MiB for this debug build (~4 MiB for a release build).
    let file_kib = std::fs::read_to_string(format!("/proc/{}/status", t.pid()))
        .ok()
        .and_then(|st| {
            st.lines()
                .find_map(|l| l.strip_prefix("RssFile:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0);
    let (_, seen) = t.stop_successfully("portwatch");
    let last = seen.last().expect("frames");
    let others = &last["others"];
    let lost = last["system"]["lost_events"].as_u64().unwrap();
    // pid_max (32,768 by default) makes the kernel reuse pids: the
    // processes table can only tell apart the distinct ones.
    let distinct_pids = pids.iter().collect::<std::collections::HashSet<_>>().len() as u64;
    let worst_gap = gaps.iter().max().copied().unwrap_or_default();
    let mut sorted = gaps.clone();
    sorted.sort();
    let median_gap = sorted.get(sorted.len() / 2).copied().unwrap_or_default();
    eprintln!(
        "{made} connections from {} processes ({distinct_pids} distinct pids) in {took:?}; \
         {} frames, gap median {median_gap:?}, worst {worst_gap:?}; RSS {rss} KiB; \
         others {others}; lost {lost}",
        pids.len(),
        gaps.len()
    );
    assert_eq!(pids.len() as u32, PROCESSES);
    assert!(made >= PROCESSES * 99 / 100, "{made} connections made");
    assert!(
        took <= WITHIN,
        "the flood took {took:?}, more than the {WITHIN:?} the fault asks for"
    );
    // The cap bounds the memory portwatch uses, not the size of the build
    // under test: the debug binary's mapped code is left out.
    assert!(
        rss.saturating_sub(file_kib) < RSS_CAP_KIB,
        "peak RSS {rss} KiB ({file_kib} KiB of it mapped files) over the {RSS_CAP_KIB} KiB cap"
    );
    // Tables keep 4,096 keys; the rest is folded and counted (HyperLogLog,
    // ~2% error; losses lower it too).
    let folded_dests = others["destinations"].as_u64().unwrap();
    let folded_procs = others["processes"].as_u64().unwrap();
    let want_dests = u64::from(made).saturating_sub(4096 + lost) * 9 / 10;
    let want_procs = distinct_pids.saturating_sub(4096 + lost) * 9 / 10;
    assert!(
        folded_dests >= want_dests,
        "destinations folded {folded_dests}, want ≥ {want_dests}"
    );
    assert!(
        folded_procs >= want_procs,
        "processes folded {folded_procs}, want ≥ {want_procs}"
    );
    assert!(
        worst_gap < FRAME_BOUND,
        "a frame took {worst_gap:?} (interval 1 s, bound {FRAME_BOUND:?}); gaps {gaps:?}"
    );
    report(Figure {
        fault: "cardinality flood",
        injected: format!(
            "{} short-lived processes ({distinct_pids} distinct pids), each connecting once \
             to a destination of its own ({made} distinct), in {:.0} s",
            pids.len(),
            took.as_secs_f64()
        ),
        delivered: None,
        lost: Some(lost),
        missed: None,
        rss_kib: Some(rss),
        exit: format!(
            "0; {} MiB of the RSS file-backed (the debug binary's code); \
             folded: {folded_dests} destinations, {folded_procs} processes; \
             {} frames 1 s apart asked: gap median {:.2} s, longest {:.2} s",
            file_kib.div_ceil(1024),
            gaps.len(),
            median_gap.as_secs_f64(),
            worst_gap.as_secs_f64()
        ),
    });
}

// ---------------------------------------------------------------------------
// Socket map full

/// The last number after `label` in a summary line.
fn count_after(summary: &str, label: &str) -> u64 {
    summary
        .split(label)
        .nth(1)
        .and_then(|r| {
            r.trim_start()
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no {label:?} in {summary:?}"))
}

#[test]
fn a_full_socket_map_counts_every_connection_it_cannot_follow() {
    let Some(_serial) = kernel_fault_turn() else {
        return;
    };
    /// The socket map sized down (test-only knob) …
    const MAP: u32 = 1024;
    /// … and more connections held open at once than it can follow (each
    /// is two sockets: the client's and the server's).
    const CONNS: usize = 1500;
    let ns = Netns::new("pwf-sockmap", &[]);
    let inode = ns.inode;
    let netns = inode.to_string();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_portwatch"))
        .args(["trace", "--json", "--duration", "60", "--netns", &netns])
        .env("PORTWATCH_TEST_SOCK_MAP_ENTRIES", MAP.to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn portwatch");
    let mut t = Tracer::attach(child);
    ns.run(|| {
        let listener = listener_with_backlog_4096("127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        // All open at once, then all closed.
        let clients: Vec<TcpStream> = (0..CONNS)
            .map(|_| TcpStream::connect(addr).expect("connect"))
            .collect();
        let servers: Vec<_> = (0..CONNS)
            .map(|_| listener.accept().expect("accept").0)
            .collect();
        drop(clients);
        drop(servers);
    });
    quiesce(&ns);
    let expected = 2 * CONNS as u64;
    t.wait_for(Duration::from_secs(3), |seen| {
        of(seen, "close", inode).count() as u64 >= expected
    });
    let rss = peak_rss_kib(t.pid());
    let (stderr, seen) = t.stop_successfully("portwatch");
    let summary = summary_line(&stderr);
    let delivered = of(&seen, "close", inode).count() as u64;
    // The label has been "socket map evictions" (an LRU map) and is
    // "socket map full" (a plain hash that refuses inserts when full).
    let evicted = ["socket map full:", "socket map evictions:"]
        .iter()
        .find(|l| summary.contains(*l))
        .map(|l| count_after(summary, l))
        .unwrap_or_else(|| panic!("no socket map count in {summary:?}"));
    let lost = lost_in(summary);
    assert!(
        delivered <= u64::from(MAP),
        "{delivered} delivered through a {MAP}-entry map"
    );
    assert!(evicted > 0, "the full map is not shown: {summary}");
    // Every socket is followed (one close event) or counted once when the
    // map refused it. (Other traffic on the host can add to the count.)
    let missed = expected.saturating_sub(delivered + evicted + skipped_in(summary));
    assert_eq!(
        missed, 0,
        "{expected} sockets: {delivered} delivered, {evicted} counted as not followed: {summary}"
    );
    report(Figure {
        fault: "socket map full",
        injected: format!(
            "{CONNS} connections held open at once ({expected} sockets), socket map sized \
             down to {MAP} entries"
        ),
        delivered: Some(delivered),
        lost: Some(lost),
        missed: Some(missed),
        rss_kib: rss,
        exit: format!("0; the summary counts {evicted} sockets not followed (map full)"),
    });
}

#[test]
fn summary_counts_are_parsed() {
    let s = "portwatch: stopped (SIGINT): 10 events, 7 lost (ring buffer full: 5, socket map \
             full: 2, connect() untracked: 0, undecodable: 0, probe errors: 0); 3 tracepoint \
             runs skipped by the kernel (each may have cost an event)";
    assert_eq!((lost_in(s), skipped_in(s)), (7, 3));
    assert_eq!(count_after(s, "socket map full:"), 2);
    assert_eq!(
        skipped_in("portwatch: stopped: 10 events, 0 lost (ring buffer full: 0)"),
        0
    );
}
