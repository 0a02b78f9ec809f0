//! Loopback TCP connection churn in a private network namespace: the ground
//! truth the benchmarks and scenarios compare portwatch against.
//!
//! The calling process moves itself into a new network namespace before any
//! thread starts (so every thread and child inherits it), brings loopback
//! up and sets the namespace's own sysctls. All traffic stays on 127.0.0.1
//! inside that namespace, and every loop is bounded by time.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// A new connection per request, client closes first (the bug).
    Unpooled,
    /// One keep-alive connection per thread carrying every request.
    Pooled,
    /// Unpooled with a 10-port range and tcp_tw_reuse=0: connects fail
    /// with EADDRNOTAVAIL once TIME_WAIT holds every port.
    Exhaust,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub mode: Mode,
    pub threads: usize,
    pub duration: Duration,
    /// Connection attempts per second over all threads; 0 = as fast as possible.
    pub rate: u64,
}

#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// Connections that completed request, reply and close.
    pub connections: u64,
    /// Requests answered (equals connections when unpooled).
    pub requests: u64,
    pub errors: BTreeMap<i32, u64>,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn per_s(&self) -> f64 {
        self.connections as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Moves this process (its calling thread, and so every thread spawned
/// afterwards) into a fresh network namespace with the mode's sysctls.
/// Returns the namespace inode.
pub fn enter_netns(mode: Mode) -> Result<u64> {
    // SAFETY: unshare only changes the calling thread's namespaces.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        bail!(
            "unshare(CLONE_NEWNET) failed: {} (needs root)",
            std::io::Error::last_os_error()
        );
    }
    let st = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()?;
    if !st.success() {
        bail!("ip link set lo up failed");
    }
    let sysctls: &[(&str, &str)] = match mode {
        // Wide range and TIME_WAIT reuse: the baseline must not be port-limited.
        Mode::Unpooled | Mode::Pooled => &[
            ("ipv4/ip_local_port_range", "1024 65000"),
            ("ipv4/tcp_tw_reuse", "1"),
        ],
        Mode::Exhaust => &[
            ("ipv4/ip_local_port_range", "40000 40009"),
            ("ipv4/tcp_tw_reuse", "0"),
        ],
    };
    for (k, v) in sysctls {
        std::fs::write(format!("/proc/sys/net/{k}"), v).with_context(|| format!("sysctl {k}"))?;
    }
    Ok(std::fs::metadata("/proc/thread-self/ns/net")?.ino())
}

/// Starts `threads` server threads on one loopback listener: each answers
/// 4-byte requests with 4 bytes and closes after the client's EOF.
pub fn start_server(threads: usize, stop: Arc<AtomicBool>) -> Result<SocketAddr> {
    // Outside any shrunk ephemeral range.
    let listener = TcpListener::bind("127.0.0.1:80").context("bind 127.0.0.1:80")?;
    let addr = listener.local_addr()?;
    listener.set_nonblocking(false)?;
    let listener = Arc::new(listener);
    for _ in 0..threads {
        let l = listener.clone();
        let stop = stop.clone();
        thread::Builder::new()
            .name("pw-loadsrv".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok((mut s, _)) = l.accept() else { continue };
                    let mut buf = [0u8; 4];
                    while s.read_exact(&mut buf).is_ok() {
                        if s.write_all(b"pong").is_err() {
                            break;
                        }
                    }
                }
            })?;
    }
    Ok(addr)
}

fn one_exchange(s: &mut TcpStream) -> std::io::Result<()> {
    let mut buf = [0u8; 4];
    s.write_all(b"ping")?;
    s.read_exact(&mut buf)
}

/// Runs the client side and returns what it achieved.
pub fn run_clients(addr: SocketAddr, cfg: &Config) -> Outcome {
    let start = Instant::now();
    let deadline = start + cfg.duration;
    let per_thread_interval =
        (cfg.rate > 0).then(|| Duration::from_secs_f64(cfg.threads as f64 / cfg.rate as f64));
    let handles: Vec<_> = (0..cfg.threads)
        .map(|_| {
            let mode = cfg.mode;
            thread::Builder::new()
                .name("pw-loadgen".into())
                .spawn(move || {
                    let mut o = Outcome::default();
                    let mut next = Instant::now();
                    let mut pooled: Option<TcpStream> = None;
                    while Instant::now() < deadline {
                        if let Some(iv) = per_thread_interval {
                            let now = Instant::now();
                            if now < next {
                                thread::sleep(next - now);
                            }
                            next += iv;
                        }
                        if mode == Mode::Pooled {
                            let s = match pooled.as_mut() {
                                Some(s) => s,
                                None => match TcpStream::connect(addr) {
                                    Ok(s) => pooled.insert(s),
                                    Err(e) => {
                                        *o.errors
                                            .entry(e.raw_os_error().unwrap_or(0))
                                            .or_default() += 1;
                                        continue;
                                    }
                                },
                            };
                            if one_exchange(s).is_ok() {
                                o.requests += 1;
                            }
                            continue;
                        }
                        match TcpStream::connect(addr) {
                            Ok(mut s) => {
                                if one_exchange(&mut s).is_ok() {
                                    o.requests += 1;
                                    o.connections += 1;
                                }
                                // Client closes first: TIME_WAIT lands here.
                                drop(s);
                            }
                            Err(e) => {
                                *o.errors.entry(e.raw_os_error().unwrap_or(0)).or_default() += 1;
                                if mode == Mode::Exhaust {
                                    // Don't spin: the range stays dry for 60 s.
                                    thread::sleep(Duration::from_millis(10));
                                }
                            }
                        }
                    }
                    if pooled.take().is_some() {
                        o.connections += 1;
                    }
                    o
                })
                .expect("spawn client")
        })
        .collect();
    let mut total = Outcome::default();
    for h in handles {
        let o = h.join().unwrap_or_default();
        total.connections += o.connections;
        total.requests += o.requests;
        for (e, n) in o.errors {
            *total.errors.entry(e).or_default() += n;
        }
    }
    total.elapsed = start.elapsed();
    total
}

pub fn errno_name(e: i32) -> String {
    match e {
        99 => "EADDRNOTAVAIL".into(),
        111 => "ECONNREFUSED".into(),
        110 => "ETIMEDOUT".into(),
        98 => "EADDRINUSE".into(),
        104 => "ECONNRESET".into(),
        _ => format!("E{e}"),
    }
}

/// Prints an outcome in the bench's format.
pub fn print(label: &str, o: &Outcome) {
    let errs: Vec<String> = o
        .errors
        .iter()
        .map(|(e, n)| format!("{}={n}", errno_name(*e)))
        .collect();
    println!(
        "{label}: {} connections, {} requests in {:.2} s = {:.0} conn/s; connect errors: {}",
        o.connections,
        o.requests,
        o.elapsed.as_secs_f64(),
        o.per_s(),
        if errs.is_empty() {
            "none".into()
        } else {
            errs.join(" ")
        }
    );
}
