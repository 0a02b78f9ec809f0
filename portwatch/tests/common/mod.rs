//! Shared pieces of the kernel tests: a private network namespace per test,
//! loopback servers and clients inside it, and a `portwatch` child process
//! whose JSON output the test reads.
//!
//! Kernel tests need root. Under CI (CI=true) a test that cannot run fails;
//! elsewhere it prints why and returns, so `cargo test` as a user still runs
//! the rest.
#![allow(dead_code, reason = "each test file uses a different subset")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// True when kernel tests can run. Panics under CI when they cannot, so a
/// CI run never counts a skipped kernel test as passed.
pub fn kernel_tests_enabled() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("kernel tests must run under CI but this process is not root");
    }
    eprintln!("note: not root, kernel test not run (run `cargo xtask test` as root)");
    false
}

/// The portwatch binary the tests run: this build's, or the one named by
/// `PORTWATCH_BIN` (CI points it at the installed package's /usr/bin/portwatch).
pub fn portwatch_bin() -> std::path::PathBuf {
    match std::env::var_os("PORTWATCH_BIN") {
        Some(p) if !p.is_empty() => {
            eprintln!("note: testing PORTWATCH_BIN={}", p.to_string_lossy());
            p.into()
        }
        _ => env!("CARGO_BIN_EXE_portwatch").into(),
    }
}

/// A thread that prepared itself (e.g. entered a namespace with `unshare`,
/// which only changes the calling thread) and then runs the closures sent to
/// it, so their sockets and children belong to what it set up.
pub struct NsThread {
    tx: Option<mpsc::Sender<Box<dyn FnOnce() + Send>>>,
    handle: Option<thread::JoinHandle<()>>,
}

impl NsThread {
    /// Spawns the thread named `name` and runs `setup` on it; jobs run only
    /// once it succeeded. Returns what `setup` returned.
    pub fn spawn<R: Send + 'static>(
        name: &str,
        setup: impl FnOnce() -> Result<R, String> + Send + 'static,
    ) -> Result<(NsThread, R), String> {
        let (tx, rx) = mpsc::channel::<Box<dyn FnOnce() + Send>>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<R, String>>();
        let handle = thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let r = setup();
                let ok = r.is_ok();
                let _ = ready_tx.send(r);
                if ok {
                    for job in rx {
                        job();
                    }
                }
            })
            .map_err(|e| format!("spawn {name}: {e}"))?;
        let mut t = NsThread {
            tx: Some(tx),
            handle: Some(handle),
        };
        match ready_rx.recv() {
            Ok(Ok(r)) => Ok((t, r)),
            Ok(Err(e)) => Err(e),
            Err(_) => {
                t.tx.take();
                Err(format!("{name} thread died during setup"))
            }
        }
    }

    /// Runs `f` on the thread and returns its result.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (rtx, rrx) = mpsc::channel();
        self.tx
            .as_ref()
            .expect("thread alive")
            .send(Box::new(move || {
                let _ = rtx.send(f());
            }))
            .expect("thread gone");
        rrx.recv().expect("job panicked")
    }
}

impl Drop for NsThread {
    fn drop(&mut self) {
        // Closing the channel ends the thread; a namespace only it held goes with it.
        self.tx.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A thread living in a fresh network namespace with loopback up. Work is
/// sent to it as closures, so every socket they open belongs to that
/// namespace and to a thread whose name (the kernel's comm) we chose.
pub struct Netns {
    thread: NsThread,
    /// Inode of the namespace, as portwatch reports it in `netns`.
    pub inode: u32,
}

impl Netns {
    /// `comm` names the thread (15 bytes at most, as the kernel keeps it).
    /// `sysctls` are (path under /proc/sys/net, value) set inside the namespace.
    pub fn new(comm: &str, sysctls: &[(&str, &str)]) -> Netns {
        assert!(comm.len() <= 15, "comm {comm} longer than the kernel keeps");
        let sysctls: Vec<(String, String)> = sysctls
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (thread, inode) = NsThread::spawn(comm, move || -> Result<u32, String> {
            // SAFETY: unshare only affects this thread's namespaces.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(format!("unshare: {}", std::io::Error::last_os_error()));
            }
            // A child forked by this thread inherits its namespace.
            let st = Command::new("ip")
                .args(["link", "set", "lo", "up"])
                .status()
                .map_err(|e| format!("ip: {e}"))?;
            if !st.success() {
                return Err("ip link set lo up failed".into());
            }
            for (k, v) in &sysctls {
                // /proc/sys/net resolves to the opener's namespace.
                std::fs::write(format!("/proc/sys/net/{k}"), v)
                    .map_err(|e| format!("sysctl {k}: {e}"))?;
            }
            let meta = std::fs::metadata("/proc/thread-self/ns/net")
                .map_err(|e| format!("ns inode: {e}"))?;
            Ok(meta.ino() as u32)
        })
        .unwrap_or_else(|e| panic!("cannot set up a network namespace: {e}"));
        Netns { thread, inode }
    }

    /// Runs `f` on the namespace's thread and returns its result.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.thread.run(f)
    }

    /// `top --batch --json` (a snapshot a second, 50 rows) watching this
    /// namespace, started inside it: ends by itself after `iterations`
    /// snapshots.
    pub fn start_top_watching_it(&self, iterations: usize) -> Tracer {
        let (iterations, netns) = (iterations.to_string(), self.inode.to_string());
        self.start_portwatch(&top_batch_json_args(&[
            "--rows",
            "50",
            "--iterations",
            &iterations,
            "--netns",
            &netns,
        ]))
    }

    /// Starts `portwatch <args>` inside the namespace (a child of its
    /// thread) and waits until it is tracing.
    pub fn start_portwatch(&self, args: &[impl AsRef<str>]) -> Tracer {
        let args: Vec<String> = args.iter().map(|a| a.as_ref().to_string()).collect();
        Tracer::attach(self.run(move || Tracer::spawn(&args)))
    }
}

/// Loads the nftables `ruleset` into the calling thread's network namespace
/// (call from a [`Netns::run`] closure). Write it over several lines: nft
/// 1.0.6 rejects the one-line form.
pub fn nft_load(ruleset: &str) {
    let mut nft = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("nft (install nftables: cargo xtask setup)");
    nft.stdin
        .take()
        .expect("stdin")
        .write_all(ruleset.as_bytes())
        .expect("write ruleset");
    assert!(nft.wait().expect("nft").success(), "nft rejected {ruleset}");
}

/// A loopback echo-style server started inside the namespace (call from a
/// `Netns::run` closure). Each connection: read requests of 4 bytes, answer
/// "pong" to each, and close only after the client closed (EOF), so the
/// client is always the side that closes first.
pub fn start_server(bind: &str) -> SocketAddr {
    let listener = TcpListener::bind(bind).expect("bind server");
    let addr = listener.local_addr().expect("server addr");
    thread::Builder::new()
        .name("pw-server".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut s) = conn else { break };
                thread::spawn(move || {
                    let mut buf = [0u8; 4];
                    while s.read_exact(&mut buf).is_ok() {
                        if s.write_all(b"pong").is_err() {
                            break;
                        }
                    }
                });
            }
        })
        .expect("spawn server");
    addr
}

/// A loopback server started inside the namespace (call from a
/// `Netns::run` closure) that reads each connection to EOF and then closes
/// it: gracefully (its FIN answers the client's), or with SO_LINGER {1, 0}
/// (an RST, no TIME_WAIT anywhere) when `reset`.
pub fn start_draining_server(bind: impl std::net::ToSocketAddrs, reset: bool) -> SocketAddr {
    let l = TcpListener::bind(bind).expect("bind");
    let addr = l.local_addr().expect("addr");
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { break };
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
            if reset {
                let lg = libc::linger {
                    l_onoff: 1,
                    l_linger: 0,
                };
                // SAFETY: a valid socket fd and a linger struct of the size given.
                let r = unsafe {
                    libc::setsockopt(
                        s.as_raw_fd(),
                        libc::SOL_SOCKET,
                        libc::SO_LINGER,
                        (&raw const lg).cast(),
                        size_of::<libc::linger>() as libc::socklen_t,
                    )
                };
                assert_eq!(r, 0, "SO_LINGER");
            }
        }
    });
    addr
}

/// One connection carrying one byte, closed first by the client (its FIN
/// goes first), which then waits for the server's answer (FIN or RST).
pub fn send_a_byte_and_close_first(addr: SocketAddr) -> std::io::Result<()> {
    let mut c = TcpStream::connect(addr)?;
    c.write_all(b"x")?;
    c.shutdown(std::net::Shutdown::Write)?;
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
    Ok(())
}

/// One connection carrying `requests` request/response exchanges, closed by
/// the client. Waits for the server's FIN so the TIME_WAIT lands here.
pub fn client_exchange(addr: SocketAddr, requests: usize) {
    let mut s = TcpStream::connect(addr).expect("connect");
    let mut buf = [0u8; 4];
    for _ in 0..requests {
        s.write_all(b"ping").expect("send");
        s.read_exact(&mut buf).expect("recv");
    }
    s.shutdown(std::net::Shutdown::Write).expect("shutdown");
    // read until the server's FIN
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
}

/// `portwatch trace --json` running as a child, its lines collected by a thread.
pub struct Tracer {
    child: Child,
    lines: mpsc::Receiver<serde_json::Value>,
    stderr: mpsc::Receiver<String>,
    pub seen: Vec<serde_json::Value>,
    /// stderr lines printed before it said it was tracing (warnings).
    pub startup: Vec<String>,
}

impl Tracer {
    /// Starts `portwatch <args>` and waits until it says it is tracing.
    pub fn start(args: &[impl AsRef<str>]) -> Tracer {
        Tracer::attach(Tracer::spawn(args))
    }

    /// Spawns `portwatch <args>` with piped output, without waiting: for
    /// tests that start several at once (see [`Tracer::attach`]).
    pub fn spawn(args: &[impl AsRef<str>]) -> Child {
        Command::new(portwatch_bin())
            .args(args.iter().map(AsRef::as_ref))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn portwatch")
    }

    /// Reads a child from [`Tracer::spawn`] and waits until it is tracing.
    pub fn attach(mut child: Child) -> Tracer {
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let v: serde_json::Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("portwatch printed invalid JSON {line:?}: {e}"));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let (etx, stderr_rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if etx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut t = Tracer {
            child,
            lines,
            stderr: stderr_rx,
            seen: Vec::new(),
            startup: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match t.stderr.recv_timeout(left) {
                Ok(l)
                    if ["tracing", "recording", "watching"]
                        .iter()
                        .any(|w| l.contains(w)) =>
                {
                    break;
                }
                Ok(l) => {
                    eprintln!("portwatch: {l}");
                    t.startup.push(l);
                }
                Err(_) => {
                    let _ = t.child.kill();
                    panic!("portwatch did not start tracing: {:?}", t.child.wait());
                }
            }
        }
        t
    }

    /// Collects lines until `done(seen)` holds or `timeout` passes.
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        done: impl Fn(&[serde_json::Value]) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        while !done(&self.seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            match self.lines.recv_timeout(left) {
                Ok(v) => self.seen.push(v),
                Err(_) => return done(&self.seen),
            }
        }
        true
    }

    /// SIGINT, wait for exit, return (exit success, stderr lines).
    pub fn stop(mut self) -> (bool, Vec<String>, Vec<serde_json::Value>) {
        // SAFETY: kill with a valid pid of our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let status = self.child.wait().expect("wait portwatch");
        // The reader threads end at EOF, which follows the exit: drain both
        // channels until they disconnect (bounded, in case a grandchild
        // kept a pipe open).
        while let Ok(v) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(v);
        }
        let mut stderr = Vec::new();
        while let Ok(l) = self.stderr.recv_timeout(Duration::from_secs(5)) {
            stderr.push(l);
        }
        (status.success(), stderr, std::mem::take(&mut self.seen))
    }
}

impl Tracer {
    /// The portwatch process id (to signal it or read its /proc entries).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Collects lines until `done(seen)` holds; panics after `timeout`
    /// with every line `what` (e.g. "trace") printed.
    pub fn wait_until(
        &mut self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[serde_json::Value]) -> bool,
    ) {
        assert!(self.wait_for(timeout, done), "{what} saw {:#?}", self.seen);
    }

    /// Stops portwatch, which must exit successfully; returns its stderr
    /// lines and every line it printed. `what` names it in the panic.
    pub fn stop_successfully(self, what: &str) -> (Vec<String>, Vec<serde_json::Value>) {
        let (ok, stderr, seen) = self.stop();
        assert!(ok, "{what} failed: {stderr:?}");
        (stderr, seen)
    }

    /// [`Tracer::stop_successfully`], and its summary must count no lost
    /// event; returns every line it printed.
    pub fn stop_without_loss(self, what: &str) -> Vec<serde_json::Value> {
        let (stderr, seen) = self.stop_successfully(what);
        assert_no_loss(&stderr);
        seen
    }

    /// For `top --batch --json`: waits (20 s at most) until it printed
    /// `n` snapshots, stops it (it must exit successfully) and returns the
    /// last snapshot.
    pub fn last_of_snapshots(mut self, n: usize) -> serde_json::Value {
        assert!(
            self.wait_for(Duration::from_secs(20), |s| s.len() >= n),
            "top printed {} snapshots",
            self.seen.len()
        );
        let (_, mut snaps) = self.stop_successfully("top");
        snaps.pop().expect("a snapshot")
    }
}

/// The arguments of `portwatch top --batch --json --interval 1` followed
/// by `extra`: a JSON snapshot a second.
pub fn top_batch_json_args(extra: &[&str]) -> Vec<String> {
    ["top", "--batch", "--json", "--interval", "1"]
        .iter()
        .chain(extra)
        .map(|a| a.to_string())
        .collect()
}

/// The row of `snapshot[table]` for which `matches` holds; panics naming
/// the table and showing the snapshot when there is none.
pub fn row_where<'a>(
    snapshot: &'a serde_json::Value,
    table: &str,
    matches: impl Fn(&serde_json::Value) -> bool,
) -> &'a serde_json::Value {
    snapshot[table]
        .as_array()
        .unwrap_or_else(|| panic!("no {table} in {snapshot}"))
        .iter()
        .find(|r| matches(r))
        .unwrap_or_else(|| panic!("no such row in {table}: {snapshot}"))
}

impl Drop for Tracer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// This process's name as the kernel keeps it (the thread group leader's
/// comm): what portwatch reports as `comm`.
pub fn process_name() -> String {
    std::fs::read_to_string("/proc/self/comm")
        .expect("read /proc/self/comm")
        .trim_end()
        .to_string()
}

/// `bytes_sent`/`bytes_received` come from tcp_sock's bytes_acked and
/// bytes_received (as bcc's tcplife reports them), which count the SYN and
/// FIN sequence numbers too: up to 2 more than the payload.
pub fn assert_bytes(v: &serde_json::Value, field: &str, payload: u64) {
    let got = v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} missing in {v}"));
    assert!(
        (payload..=payload + 2).contains(&got),
        "{field} = {got}, payload {payload}: {v}"
    );
}

/// Events of `kind` ("close"/"connect_error") from the given netns.
pub fn of<'a>(
    seen: &'a [serde_json::Value],
    kind: &'a str,
    netns: u32,
) -> impl Iterator<Item = &'a serde_json::Value> + 'a {
    seen.iter()
        .filter(move |v| v["event"] == kind && v["netns"] == netns)
}

/// The summary line must report zero lost events.
pub fn assert_no_loss(stderr: &[String]) {
    let summary = stderr
        .iter()
        .find(|l| l.contains("stopped"))
        .unwrap_or_else(|| panic!("no summary line in {stderr:?}"));
    assert!(summary.contains(" 0 lost"), "events were lost: {summary}");
}

/// `portwatch top --batch --json --interval 1 --rows ROWS ARGS` in the
/// calling thread's network namespace (kernel_top_batch, kernel_netns):
/// returns once it is watching, with its snapshots as they come (stderr is
/// echoed, prefixed).
pub fn top_batch_json(rows: u32, args: &[&str]) -> (Child, mpsc::Receiver<serde_json::Value>) {
    let mut child = Command::new(portwatch_bin())
        .args(top_batch_json_args(&["--rows", &rows.to_string()]))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning portwatch");
    let stderr = child.stderr.take().expect("stderr");
    let (ready_tx, ready_rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("portwatch stderr: {line}");
            if line.contains("watching TCP connections") {
                let _ = ready_tx.send(());
            }
        }
    });
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let v = serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad JSON {line}: {e}"));
            if tx.send(v).is_err() {
                break;
            }
        }
    });
    if ready_rx.recv_timeout(Duration::from_secs(30)).is_err() {
        let _ = child.kill();
        panic!("portwatch did not start within 30 s");
    }
    (child, rx)
}

/// Waits for a [`top_batch_json`] child to exit (successfully) and returns
/// every snapshot it printed, the last ones included (read until its
/// output ends, not just what had arrived at its exit).
pub fn top_batch_snapshots(
    child: Child,
    rx: mpsc::Receiver<serde_json::Value>,
) -> Vec<serde_json::Value> {
    let out = child.wait_with_output().expect("waiting for portwatch");
    assert!(out.status.success(), "portwatch failed: {:?}", out.status);
    let mut v = Vec::new();
    while let Ok(s) = rx.recv_timeout(Duration::from_secs(5)) {
        v.push(s);
    }
    v
}

/// `addr` as the `sockaddr_in` that raw socket calls take.
pub fn sockaddr_in_of(addr: std::net::SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// Starts a [`start_server`] on `bind` (call from a `Netns::run` closure)
/// and makes `connections` connections of one exchange each to it, one
/// after the other; returns the server's address.
pub fn start_server_with_connections(bind: &str, connections: usize) -> SocketAddr {
    let addr = start_server(bind);
    for _ in 0..connections {
        client_exchange(addr, 1);
    }
    addr
}

/// `promtool check metrics` (the `promtool` given) must accept the
/// exposition `text` without a word of complaint.
pub fn assert_promtool_accepts(promtool: impl AsRef<std::ffi::OsStr>, text: &str) {
    let mut check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    check
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("piping the exposition to promtool");
    let out = check.wait_with_output().expect("promtool");
    let msg =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && msg.trim().is_empty(),
        "promtool check metrics:\n{msg}"
    );
}

/// connect() on a fresh socket of type `ty` (blocking; no retry on EINTR,
/// unlike std) to `to`: its errno, 0 on success. The socket is closed
/// then (a handshake still under way is abandoned).
pub fn connect_errno(ty: libc::c_int, to: std::net::SocketAddrV4) -> i32 {
    let sin = sockaddr_in_of(to);
    // SAFETY: plain socket calls on a socket this function owns; the
    // sockaddr_in is fully initialised and outlives the call.
    unsafe {
        let fd = libc::socket(libc::AF_INET, ty, 0);
        assert!(fd >= 0, "socket");
        let r = libc::connect(
            fd,
            (&raw const sin).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        let errno = if r == 0 {
            0
        } else {
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
        };
        libc::close(fd);
        errno
    }
}
