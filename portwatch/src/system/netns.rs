//! What one network namespace says about itself: its sysctls, sockstat and
//! netstat counters and its socket table, read from inside it.
//!
//! Ports, these sysctls and sockets all belong to a network namespace, and
//! `/proc/sys/net` shows the namespace of the task that opens it. So a
//! dedicated worker thread enters the namespace (`setns` on the
//! `/proc/PID/task/TID/ns/net` of a task seen in it), reads everything while
//! inside, and only then moves on: it never goes back to the host's
//! namespace in the middle of one reading, and no other thread of portwatch
//! ever changes namespace. A namespace that cannot be entered (its tasks
//! are gone, permission) is reported with the reason, never as an error that
//! stops anything.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::{procfs, read_to_string, sockdiag, worker};
use crate::clock::monotonic_now_ns;
use crate::input::{LocalNetworks, NetnsInfo, SocketTable};

/// A task seen in a namespace: (pid, tid). Threads can sit in a namespace
/// their process is not in, so the thread's own link is the one read.
pub type TaskRef = (u32, u32);

/// What one reading of one namespace gave.
#[derive(Debug)]
pub struct Reading {
    pub info: NetnsInfo,
    /// Its interface networks, when they could be read.
    pub networks: Option<LocalNetworks>,
    /// The namespace's own socket table, when it was asked for and could
    /// be read.
    pub sockets: Option<SocketTable>,
    /// What reading the table cost (none when it was not read).
    pub sockets_cost: Option<sockdiag::DumpCost>,
}

/// Why a namespace could not be entered. `Gone` is the ordinary end of a
/// container: it makes the namespace stale rather than failed.
#[derive(Debug, PartialEq, Eq)]
enum EnterError {
    Gone,
    Other(String),
}

/// Opens the namespace link of the first task still in `netns`.
fn open_ns(netns: u32, tasks: &[TaskRef]) -> Result<File, EnterError> {
    let mut last_err = None;
    for &(pid, tid) in tasks {
        let path = format!("/proc/{pid}/task/{tid}/ns/net");
        match File::open(&path) {
            // The inode check: a reused tid may live somewhere else now.
            Ok(f) => match f.metadata() {
                Ok(m) if m.ino() as u32 == netns => return Ok(f),
                Ok(_) => {}
                Err(e) => last_err = Some(format!("{path}: {e}")),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => last_err = Some(format!("{path}: {e}")),
        }
    }
    Err(last_err.map_or(EnterError::Gone, EnterError::Other))
}

/// Moves the calling thread into the namespace of `ns`.
fn enter(ns: &File) -> std::io::Result<()> {
    // SAFETY: setns with a valid open namespace fd; CLONE_NEWNET only
    // changes the network namespace of the calling thread.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Reads everything about the namespace the calling thread is in now.
/// `/proc/thread-self/net`, not `/proc/net`: the latter is the thread
/// group leader's namespace.
/// `table`: a reader and the states to ask for (see `sockdiag`).
fn read_inside(netns: u32, ts_ns: u64, table: Option<(&mut sockdiag::Reader, u32)>) -> Reading {
    let mut errors = Vec::new();
    let sysctls = procfs::read_sysctls(Path::new("/proc/sys/net/ipv4"))
        .map_err(|e| errors.push(e.to_string()))
        .ok();
    let mut counters = read_to_string("/proc/thread-self/net/sockstat")
        .and_then(|s| {
            let n = read_to_string("/proc/thread-self/net/netstat")?;
            procfs::counters_from(&s, &n, ts_ns)
        })
        .map_err(|e| errors.push(e.to_string()))
        .ok();
    let (sockets, sockets_cost) = match table.map(|(r, states)| r.read(ts_ns, netns, states)) {
        Some(Ok((t, cost))) => (Some(t), Some(cost)),
        Some(Err(e)) => {
            errors.push(format!("socket table: {e}"));
            (None, None)
        }
        None => (None, None),
    };
    // Read after the socket table: the table is stamped with `ts_ns`, and
    // closes after that are counted again on top of it, so nothing may
    // widen the gap between the stamp and the dump.
    if let Some(c) = counters.as_mut() {
        c.conntrack = procfs::read_conntrack(
            Path::new("/proc/sys/net/netfilter"),
            "/proc/thread-self/net",
        );
    }
    let networks = super::ifaddrs::read_networks()
        .map(|nets| LocalNetworks { ts_ns, netns, nets })
        .map_err(|e| errors.push(format!("interface addresses: {e}")))
        .ok();
    Reading {
        networks,
        info: NetnsInfo {
            ts_ns,
            netns,
            sysctls,
            counters,
            error: (!errors.is_empty()).then(|| errors.join("; ")),
            stale: false,
        },
        sockets,
        sockets_cost,
    }
}

/// Reads namespace `netns` through one of `tasks`, its socket table only
/// with a `table` reader. Call only on a thread that is allowed to change
/// namespace (the [`Worker`]'s).
fn read_netns(
    netns: u32,
    tasks: &[TaskRef],
    home: &File,
    table: Option<(&mut sockdiag::Reader, u32)>,
) -> Reading {
    let failed = |ts_ns, error: String, stale| Reading {
        info: NetnsInfo {
            ts_ns,
            netns,
            sysctls: None,
            counters: None,
            error: Some(error),
            stale,
        },
        networks: None,
        sockets: None,
        sockets_cost: None,
    };
    let ns = match open_ns(netns, tasks) {
        Ok(f) => f,
        Err(EnterError::Gone) => {
            return failed(
                monotonic_now_ns(),
                "no task left in it (last known values)".into(),
                true,
            );
        }
        Err(EnterError::Other(e)) => return failed(monotonic_now_ns(), e, false),
    };
    if let Err(e) = enter(&ns) {
        return failed(
            monotonic_now_ns(),
            format!("cannot enter it (setns: {e})"),
            false,
        );
    }
    let reading = read_inside(netns, monotonic_now_ns(), table);
    // Home again, so a failure to enter the next one does not leave this
    // thread reading the previous namespace's values under another name.
    if let Err(e) = enter(home) {
        log::warn!("netns worker: cannot return to its own namespace: {e}");
    }
    reading
}

/// One request to the worker: read these namespaces, each through one of
/// its tasks; their socket tables too when `tables` says which states to
/// ask for (the tables are what costs: see `sockdiag`).
#[derive(Debug, Default)]
pub struct Request {
    pub tables: Option<u32>,
    pub namespaces: Vec<(u32, Vec<TaskRef>)>,
}

/// The thread that enters namespaces. Requests go in, readings come out;
/// the caller polls [`Worker::try_recv`] and is never blocked by a slow
/// namespace.
pub struct Worker {
    thread: worker::Worker<Request, Reading>,
    /// Requests sent whose readings have not all come back.
    pending: usize,
}

impl Worker {
    pub fn spawn() -> std::io::Result<Worker> {
        // The namespace of the thread that spawns the worker: its home.
        let home = File::open("/proc/thread-self/ns/net")?;
        let thread = worker::Worker::spawn("pw-netns", None, move || {
            let mut reader = sockdiag::Reader::new();
            move |req: Request, out: &worker::Answers<Reading>| {
                for (netns, tasks) in req.namespaces {
                    let table = req.tables.map(|states| (&mut reader, states));
                    out.send(read_netns(netns, &tasks, &home, table))?;
                }
                Ok(())
            }
        })?;
        Ok(Worker { thread, pending: 0 })
    }

    /// Queues a request; readings come back in order.
    pub fn request(&mut self, req: Request) {
        if req.namespaces.is_empty() {
            return;
        }
        let n = req.namespaces.len();
        if self.thread.send(req).is_ok() {
            self.pending += n;
        }
    }

    /// Readings still to come.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// The readings done so far, without waiting.
    pub fn try_recv(&mut self) -> Vec<Reading> {
        let out: Vec<Reading> = self.thread.try_recv().collect();
        self.pending = self.pending.saturating_sub(out.len());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_without_tasks_is_stale_not_an_error() {
        let home = File::open("/proc/thread-self/ns/net").expect("own ns");
        // No such pid: the kernel's pid_max is below 2^22.
        let r = read_netns(
            4_026_531_840,
            &[(u32::MAX - 1, u32::MAX - 1)],
            &home,
            Some((&mut sockdiag::Reader::new(), sockdiag::STATES_ALL)),
        );
        assert!(r.info.stale);
        assert!(r.info.sysctls.is_none());
        assert!(r.sockets.is_none());
        assert!(r.info.error.is_some_and(|e| e.contains("no task left")));
    }

    #[test]
    fn a_task_now_in_another_namespace_is_not_used() {
        let home = File::open("/proc/thread-self/ns/net").expect("own ns");
        let pid = std::process::id();
        // Our own task, asked for a namespace it is not in: never read
        // under that namespace's name.
        let r = read_netns(1, &[(pid, pid)], &home, None);
        assert!(r.info.stale, "{:?}", r.info);
        assert!(r.info.sysctls.is_none());
    }

    #[test]
    fn the_worker_reads_its_own_namespace_through_its_own_task() {
        let own = std::fs::metadata("/proc/thread-self/ns/net")
            .expect("own ns")
            .ino() as u32;
        let pid = std::process::id();
        let mut w = Worker::spawn().expect("worker");
        w.request(Request {
            tables: Some(sockdiag::STATES_WITHOUT_TIME_WAIT),
            namespaces: vec![(own, vec![(pid, pid)])],
        });
        let start = std::time::Instant::now();
        let mut got = Vec::new();
        while got.is_empty() && start.elapsed() < std::time::Duration::from_secs(10) {
            got = w.try_recv();
            std::thread::yield_now();
        }
        let r = got.pop().expect("a reading");
        assert_eq!(r.info.netns, own);
        assert!(!r.info.stale);
        // Reading sysctls needs no privilege; setns into one's own
        // namespace needs CAP_SYS_ADMIN, so without it the reason is given.
        match &r.info.sysctls {
            Some(s) => assert!(s.port_range.0 <= s.port_range.1),
            None => assert!(r.info.error.is_some_and(|e| e.contains("setns"))),
        }
        // The states asked for reach the reader: a table without TIME_WAIT
        // is marked so.
        if let Some(t) = &r.sockets {
            assert!(t.without_time_wait);
            assert!(
                t.entries
                    .iter()
                    .all(|e| e.state != crate::input::SockState::TimeWait)
            );
        }
        assert_eq!(w.pending(), 0);
    }
}
