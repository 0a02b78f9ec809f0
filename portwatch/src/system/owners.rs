//! Socket inode → owning process, through /proc/PID/fd (what `ss -p` and
//! `lsof` do: sock_diag gives a socket's inode, never its process).
//!
//! Walking /proc costs a readlink per open file of every process, so it is
//! done only for the sockets the socket tables ask about (live outbound
//! sockets to destinations with a CLOSE_WAIT socket, see
//! [`crate::input::SocketTable::owner_wanted`]), on a thread of its own
//! (never on the intake path), with one lookup in flight at a time,
//! answers cached by inode (a cached answer costs one readlink to check),
//! and at most [`MAX_FDS_PER_WALK`] descriptors read per walk. What cannot
//! be attributed is counted, never dropped: `not_found` and `failed` in
//! [`SocketOwners`].

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::event::Comm;
use crate::input::{SocketOwner, SocketOwners};
use crate::system::worker;

/// Descriptors read per walk at most: ~100 ms of readlinks on a busy host.
pub const MAX_FDS_PER_WALK: usize = 1_000_000;

/// What the cache keeps per inode: the owner and where it was found.
#[derive(Clone, Copy, Debug)]
struct Found {
    owner: SocketOwner,
    fd: u64,
}

/// `socket:[12345]` → 12345.
pub fn socket_inode(link: &str) -> Option<u32> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The v2 path in `/proc/PID/cgroup` text (`0::/system.slice/x.service`).
pub fn cgroup_v2_path(text: &str) -> Option<&str> {
    text.lines().find_map(|l| l.strip_prefix("0::"))
}

/// The lookup state: the cgroup2 mount (to turn a path into the id events
/// carry) and the cache.
pub struct Lookup {
    proc_root: PathBuf,
    cgroup_mount: Option<PathBuf>,
    cache: HashMap<u32, Found>,
    max_fds: usize,
}

impl Lookup {
    pub fn new(proc_root: impl Into<PathBuf>, cgroup_mount: Option<PathBuf>) -> Lookup {
        Lookup {
            proc_root: proc_root.into(),
            cgroup_mount,
            cache: HashMap::new(),
            max_fds: MAX_FDS_PER_WALK,
        }
    }

    /// Still true: the cached fd of the cached pid is this socket.
    fn still_holds(&self, inode: u32, f: &Found) -> bool {
        let link = self
            .proc_root
            .join(f.owner.pid.to_string())
            .join("fd")
            .join(f.fd.to_string());
        std::fs::read_link(link)
            .ok()
            .and_then(|l| socket_inode(&l.to_string_lossy()))
            == Some(inode)
    }

    fn owner_of(&self, pid: u32, inode: u32) -> SocketOwner {
        let dir = self.proc_root.join(pid.to_string());
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let cgroup_id = std::fs::read_to_string(dir.join("cgroup"))
            .ok()
            .and_then(|t| {
                let path = cgroup_v2_path(&t)?.trim_start_matches('/').to_string();
                let mount = self.cgroup_mount.as_ref()?;
                std::fs::metadata(mount.join(path)).ok().map(|m| m.ino())
            })
            .unwrap_or(0);
        SocketOwner {
            inode,
            pid,
            comm: Comm::new(comm.trim_end_matches('\n')),
            cgroup_id,
        }
    }

    /// The owners of `wanted` at `ts_ns`.
    pub fn lookup(&mut self, ts_ns: u64, wanted: &[u32]) -> SocketOwners {
        let wanted_set: HashSet<u32> = wanted.iter().copied().collect();
        self.cache.retain(|k, _| wanted_set.contains(k));
        let stale: Vec<u32> = self
            .cache
            .iter()
            .filter(|(k, f)| !self.still_holds(**k, f))
            .map(|(k, _)| *k)
            .collect();
        for k in stale {
            self.cache.remove(&k);
        }
        let mut missing: HashSet<u32> = wanted_set
            .iter()
            .copied()
            .filter(|k| !self.cache.contains_key(k))
            .collect();
        let mut failed = 0;
        if !missing.is_empty() {
            failed = self.walk(&mut missing);
        }
        let owners: Vec<SocketOwner> = wanted
            .iter()
            .filter_map(|k| self.cache.get(k).map(|f| f.owner))
            .collect();
        SocketOwners {
            ts_ns,
            not_found: (wanted_set.len() - owners.len()) as u64,
            owners,
            failed,
        }
    }

    /// Walks /proc/*/fd until every missing inode is found or the bound is
    /// reached; returns how many fd directories could not be read.
    fn walk(&mut self, missing: &mut HashSet<u32>) -> u64 {
        let Ok(procs) = std::fs::read_dir(&self.proc_root) else {
            return 1;
        };
        let mut read = 0usize;
        let mut failed = 0;
        for p in procs.flatten() {
            let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let fds = match std::fs::read_dir(p.path().join("fd")) {
                Ok(d) => d,
                // Exited meanwhile: not a failure.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(_) => {
                    failed += 1;
                    continue;
                }
            };
            for fd in fds.flatten() {
                read += 1;
                let Ok(link) = std::fs::read_link(fd.path()) else {
                    continue;
                };
                let Some(inode) = socket_inode(&link.to_string_lossy()) else {
                    continue;
                };
                if missing.remove(&inode) {
                    let fd_num = fd.file_name().to_str().and_then(|s| s.parse().ok());
                    let owner = self.owner_of(pid, inode);
                    self.cache.insert(
                        inode,
                        Found {
                            owner,
                            fd: fd_num.unwrap_or(0),
                        },
                    );
                }
            }
            if missing.is_empty() || read >= self.max_fds {
                break;
            }
        }
        failed
    }
}

/// One request: the time of the tables and the inodes asked about.
type Request = (u64, Vec<u32>);

/// The thread that looks owners up; requests in, answers out, polled
/// without blocking. One request in flight at a time (the caller checks
/// [`Resolver::busy`]), so a slow walk delays answers, never intake.
pub struct Resolver {
    thread: worker::Worker<Request, SocketOwners>,
    busy: bool,
}

impl Resolver {
    pub fn spawn(cgroup_mount: Option<&Path>) -> std::io::Result<Resolver> {
        let mut lookup = Lookup::new("/proc", cgroup_mount.map(Path::to_path_buf));
        let thread = worker::Worker::spawn("pw-owners", None, move || {
            move |(ts_ns, wanted): Request, out: &worker::Answers<SocketOwners>| {
                out.send(lookup.lookup(ts_ns, &wanted))
            }
        })?;
        Ok(Resolver {
            thread,
            busy: false,
        })
    }

    pub fn busy(&self) -> bool {
        self.busy
    }

    pub fn request(&mut self, ts_ns: u64, wanted: Vec<u32>) {
        if self.thread.send((ts_ns, wanted)).is_ok() {
            self.busy = true;
        }
    }

    pub fn try_recv(&mut self) -> Option<SocketOwners> {
        let r = self.thread.try_recv().next();
        if r.is_some() {
            self.busy = false;
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_links_and_cgroup_lines_parse() {
        assert_eq!(socket_inode("socket:[4026]"), Some(4026));
        assert_eq!(socket_inode("pipe:[4026]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
        assert_eq!(
            cgroup_v2_path("1:name=systemd:/x\n0::/system.slice/a.service\n"),
            Some("/system.slice/a.service")
        );
    }

    fn own_socket_inode(s: &std::net::TcpListener) -> u32 {
        use std::os::fd::AsRawFd;
        let link = std::fs::read_link(format!("/proc/self/fd/{}", s.as_raw_fd())).unwrap();
        socket_inode(&link.to_string_lossy()).expect("a socket")
    }

    #[test]
    fn a_socket_of_this_process_is_found_cached_and_forgotten_when_closed() {
        let s = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let inode = own_socket_inode(&s);
        let mut l = Lookup::new("/proc", None);
        let r = l.lookup(1, &[inode]);
        assert_eq!(r.owners.len(), 1, "{r:?}");
        assert_eq!(r.owners[0].pid, std::process::id());
        assert_eq!(r.not_found, 0);
        // Cached: found again without a walk.
        l.max_fds = 0;
        assert_eq!(l.lookup(2, &[inode]).owners.len(), 1);
        drop(s);
        let r = l.lookup(3, &[inode]);
        assert!(r.owners.is_empty());
        assert_eq!(r.not_found, 1, "counted, not dropped");
    }

    #[test]
    fn the_walk_stops_at_its_bound_and_counts_what_it_did_not_find() {
        let mut l = Lookup::new("/proc", None);
        l.max_fds = 1;
        // No socket has inode 1 (the root directory's number).
        let r = l.lookup(1, &[1, 2]);
        assert!(r.owners.is_empty());
        assert_eq!(r.not_found, 2);
    }
}
