//! The bench's scraper for the `exporter` variant: a thread that enters
//! the exporter's private network namespace and fetches /metrics every
//! second, as Prometheus would, keeping the last body. Loopback only, in a
//! namespace the bench made (`unshare -n`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Where the exporter listens inside its namespace.
pub const LISTEN: &str = "127.0.0.1:9979";

pub struct Scraper {
    stop: Arc<AtomicBool>,
    last: Arc<Mutex<Option<String>>>,
    handle: JoinHandle<()>,
}

fn get(addr: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

impl Scraper {
    /// Scrapes the exporter running as `pid` (in its own network namespace).
    pub fn start(pid: u32) -> anyhow::Result<Scraper> {
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let last = Arc::new(Mutex::new(None));
        let (s, l) = (stop.clone(), last.clone());
        let handle = std::thread::spawn(move || {
            // SAFETY: setns on this thread only, with a namespace fd we own.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                eprintln!("xtask: setns: {}", std::io::Error::last_os_error());
                return;
            }
            while !s.load(Ordering::Relaxed) {
                if let Some(body) = get(LISTEN) {
                    *l.lock().expect("scrape lock") = Some(body);
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            // One more after the load, for the final counts.
            if let Some(body) = get(LISTEN) {
                *l.lock().expect("scrape lock") = Some(body);
            }
        });
        Ok(Scraper { stop, last, handle })
    }

    /// Stops and returns the connections to 127.0.0.1:80 (the load
    /// generator's destination) the last scrape counted.
    pub fn finish(self) -> Option<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().ok()?;
        let body = self.last.lock().ok()?.clone()?;
        let seen = body
            .lines()
            .filter(|l| l.starts_with("portwatch_connections_opened_total{"))
            .filter(|l| l.contains("daddr=\"127.0.0.1\"") && l.contains("dport=\"80\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        Some(seen)
    }
}
