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
struct NoTracefs {
    tx: Option<mpsc::Sender<Box<dyn FnOnce() + Send>>>,
    handle: Option<thread::JoinHandle<()>>,
}

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
        let (tx, rx) = mpsc::channel::<Box<dyn FnOnce() + Send>>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let handle = thread::spawn(move || {
            let setup = || -> Result<(), String> {
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
            };
            let r = setup();
            let ok = r.is_ok();
            let _ = ready_tx.send(r);
            if ok {
                for job in rx {
                    job();
                }
            }
        });
        ready_rx
            .recv()
            .expect("mount namespace thread died")
            .unwrap_or_else(|e| panic!("cannot set up a mount namespace without tracefs: {e}"));
        NoTracefs {
            tx: Some(tx),
            handle: Some(handle),
        }
    }

    fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (rtx, rrx) = mpsc::channel();
        self.tx
            .as_ref()
            .expect("thread alive")
            .send(Box::new(move || {
                let _ = rtx.send(f());
            }))
            .expect("mount namespace thread gone");
        rrx.recv().expect("mount namespace job panicked")
    }
}

impl Drop for NoTracefs {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[test]
fn several_portwatch_started_at_once_without_tracefs_all_start_and_see_events() {
    if !kernel_tests_enabled() {
        return;
    }
    let _serial = serial();
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

    net.run(|| {
        let addr = start_server("127.0.0.1:0");
        for _ in 0..CONNS {
            client_exchange(addr, 1);
        }
    });
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
        let (ok, stderr, _) = t.stop();
        assert!(ok, "portwatch failed: {stderr:?}");
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
}

impl Churn {
    fn start(ns: &Netns, threads: usize) -> Churn {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
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
                    let (s, d) = (s.clone(), d.clone());
                    thread::Builder::new()
                        .name("pwf-churn".into())
                        .spawn(move || {
                            while !s.load(Ordering::Relaxed) {
                                if let Ok(mut c) = TcpStream::connect(addr) {
                                    let mut rest = Vec::new();
                                    let _ = std::io::Read::read_to_end(&mut c, &mut rest);
                                    d.fetch_add(1, Ordering::Relaxed);
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
    if !kernel_tests_enabled() {
        return;
    }
    let _serial = serial();
    let ns = Netns::new("pwf-starved", &[("ipv4/ip_local_port_range", "1024 65000")]);
    let inode = ns.inode;
    let netns = inode.to_string();
    let tracer = Tracer::start(&["trace", "--json", "--duration", "120", "--netns", &netns]);
    let churn = Churn::start(&ns, 2);
    // A little churn delivered normally first.
    let started = Instant::now();
    while churn.done() < 500 && started.elapsed() < Duration::from_secs(10) {
        thread::sleep(Duration::from_millis(10));
    }
    signal(tracer.pid(), libc::SIGSTOP);
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
    signal(tracer.pid(), libc::SIGCONT);
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
    let (ok, stderr, seen) = tracer.stop();
    assert!(ok, "portwatch failed: {stderr:?}");
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
    let missed = expected_events.saturating_sub(delivered + lost);
    assert_eq!(
        missed, 0,
        "{expected_events} events: {delivered} delivered, {lost} counted lost: {summary}"
    );
    report(Figure {
        fault: "reader starved",
        injected: format!(
            "SIGSTOP for {:.1} s under churn ({expected} connections, {during} while stopped)",
            stopped_for.as_secs_f64()
        ),
        delivered: Some(delivered),
        lost: Some(lost),
        missed: Some(missed),
        rss_kib: rss,
        exit: "0".into(),
    });
}

// ---------------------------------------------------------------------------
// Disk full while recording

/// Where the small tmpfs is mounted, inside the test's mount namespace only.
const SMALL_FS: &str = "/run/portwatch-fault-small-fs";

#[test]
fn a_full_disk_stops_record_with_a_clear_error_and_the_file_stays_readable() {
    if !kernel_tests_enabled() {
        return;
    }
    let _serial = serial();
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
            if report_err.contains("warning") {
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
    if !kernel_tests_enabled() {
        return;
    }
    let _serial = serial();
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
    net.run(|| {
        let addr = start_server("127.0.0.1:0");
        for _ in 0..5 {
            client_exchange(addr, 1);
        }
    });
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
    let (ok, stderr, seen) = t.stop();
    assert!(ok, "{stderr:?}");
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
