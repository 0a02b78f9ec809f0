//! Event filters of `trace`, and of the views of `top` (the pipeline lets
//! only matching events reach the engine).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::engine::namer::Namer;
use crate::event::{Comm, Event, canonical_addr as canonical};
use crate::input::Input;

/// `--netns`: a namespace by inode (`4026532385`, or `netns:4026532385` as
/// portwatch writes an unnamed one), or by the name portwatch shows for it
/// (`host`, `pod:UID`, a container or a unit), matched exactly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetnsSel {
    Inode(u32),
    Name(String),
}

impl FromStr for NetnsSel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s.strip_prefix("netns:").unwrap_or(s);
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            return digits
                .parse()
                .map(NetnsSel::Inode)
                .map_err(|_| format!("{s:?}: a namespace inode is a 32-bit number"));
        }
        if s.trim().is_empty() {
            return Err("a namespace inode or name, e.g. host or pod:UID".into());
        }
        Ok(NetnsSel::Name(s.to_string()))
    }
}

impl fmt::Display for NetnsSel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetnsSel::Inode(n) => write!(f, "{n}"),
            NetnsSel::Name(n) => f.write_str(n),
        }
    }
}

/// The namespaces a filter keeps.
#[derive(Clone, Debug)]
enum NetnsMatch {
    /// These inodes (one given, or those a name had in a whole trace).
    Inodes(Vec<u32>),
    /// Whatever has this name when its event happens, named from the
    /// inputs seen so far (all of them, filtered or not).
    Name {
        name: String,
        namer: Box<Namer>,
        matched: bool,
    },
}

#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub pid: Option<u32>,
    pub comm: Option<Comm>,
    pub dport: Option<u16>,
    pub daddr: Option<IpAddr>,
    netns: Option<NetnsMatch>,
}

impl Filter {
    /// Every given criterion must match.
    pub fn new(
        pid: Option<u32>,
        comm: Option<&str>,
        dport: Option<u16>,
        daddr: Option<IpAddr>,
        netns: Option<NetnsSel>,
    ) -> Filter {
        Filter {
            pid,
            comm: comm.map(Comm::new),
            dport,
            daddr: daddr.map(canonical),
            netns: netns.map(|n| match n {
                NetnsSel::Inode(i) => NetnsMatch::Inodes(vec![i]),
                NetnsSel::Name(name) => NetnsMatch::Name {
                    name,
                    namer: Box::default(),
                    matched: false,
                },
            }),
        }
    }

    /// Keeps the namespaces with these inodes (a name resolved over a
    /// whole trace beforehand: `report`).
    pub fn with_inodes(mut self, inodes: Vec<u32>) -> Filter {
        self.netns = Some(NetnsMatch::Inodes(inodes));
        self
    }

    /// Whether a `--netns` name has matched any event yet (always true for
    /// an inode, or without `--netns`).
    pub fn name_matched(&self) -> bool {
        match &self.netns {
            Some(NetnsMatch::Name { matched, .. }) => *matched,
            _ => true,
        }
    }

    /// No criterion given: every input matches.
    fn is_empty(&self) -> bool {
        self.netns.is_none()
            && self.pid.is_none()
            && self.comm.is_none()
            && self.dport.is_none()
            && self.daddr.is_none()
    }

    fn netns_ok(&self, netns: u32) -> bool {
        match &self.netns {
            None => true,
            Some(NetnsMatch::Inodes(v)) => v.contains(&netns),
            Some(NetnsMatch::Name { name, namer, .. }) => namer.name(netns) == Some(name.as_str()),
        }
    }

    /// Events as [`Filter::matches`]; a namespace's socket table and
    /// readings only with `--netns` naming that namespace (or none). A name
    /// is looked up as of this input: every input teaches the names.
    #[inline]
    pub fn matches_input(&mut self, input: &Input) -> bool {
        // No criterion (the usual run): everything passes, and there is
        // nothing to look at (this runs for every input).
        if self.is_empty() {
            return true;
        }
        if let Some(NetnsMatch::Name { namer, .. }) = &mut self.netns {
            namer.observe(input);
        }
        let ns_ok = |n: u32| n == 0 || self.netns_ok(n);
        let ok = match input {
            Input::Event(ev) => self.matches(ev),
            Input::Sockets(t) => ns_ok(t.netns),
            Input::Netns(n) => ns_ok(n.netns),
            Input::Networks(n) => ns_ok(n.netns),
            Input::CallStack(c) => ns_ok(c.netns),
            _ => true,
        };
        if ok
            && matches!(input, Input::Event(_))
            && let Some(NetnsMatch::Name { matched, .. }) = &mut self.netns
        {
            *matched = true;
        }
        ok
    }

    pub fn matches(&self, ev: &Event) -> bool {
        let task = ev.task();
        let (daddr, dport, netns) = match ev {
            Event::Close(c) => (c.daddr, c.dport, c.netns),
            Event::ConnectError(e) => (e.daddr, e.dport, e.netns),
            // A failed bind() has no destination: it passes only filters
            // that ask for none.
            Event::BindError(b) => {
                return self.daddr.is_none()
                    && self.dport.is_none()
                    && self.pid.is_none_or(|p| task.is_some_and(|t| t.pid == p))
                    && self
                        .comm
                        .is_none_or(|c| task.is_some_and(|t| t.comm == c || t.thread == c))
                    && (self.netns.is_none() || (b.netns != 0 && self.netns_ok(b.netns)));
            }
        };
        self.pid.is_none_or(|p| task.is_some_and(|t| t.pid == p))
            && self
                .comm
                .is_none_or(|c| task.is_some_and(|t| t.comm == c || t.thread == c))
            && self.dport.is_none_or(|p| p == dport)
            && self.daddr.is_none_or(|a| a == canonical(daddr))
            && (self.netns.is_none() || (netns != 0 && self.netns_ok(netns)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Cause, ConnectError, Task};

    fn ev(pid: u32, comm: &str, daddr: &str, dport: u16) -> Event {
        Event::ConnectError(ConnectError {
            ts_ns: 1,
            duration_ns: 1,
            task: Some(Task {
                pid,
                tid: pid,
                comm: Comm::new(comm),
                thread: Comm::new("worker"),
                cgroup_id: 1,
            }),
            netns: 77,
            daddr: daddr.parse().unwrap(),
            dport,
            errno: 111,
            cause: Cause::Other,
            saw_syn_sent: true,
        })
    }

    #[test]
    fn every_given_criterion_must_match() {
        let f = Filter::new(
            Some(10),
            Some("curl"),
            Some(80),
            Some("10.0.0.1".parse().unwrap()),
            Some(NetnsSel::Inode(77)),
        );
        assert!(f.matches(&ev(10, "curl", "10.0.0.1", 80)));
        assert!(f.matches(&ev(10, "curl", "::ffff:10.0.0.1", 80)));
        assert!(!f.matches(&ev(11, "curl", "10.0.0.1", 80)));
        assert!(!f.matches(&ev(10, "wget", "10.0.0.1", 80)));
        assert!(!f.matches(&ev(10, "curl", "10.0.0.2", 80)));
        assert!(!f.matches(&ev(10, "curl", "10.0.0.1", 81)));
    }

    #[test]
    fn empty_filter_matches_everything() {
        assert!(Filter::default().matches(&ev(1, "x", "::1", 1)));
    }

    #[test]
    fn netns_is_an_inode_or_a_name() {
        assert_eq!("4026532385".parse(), Ok(NetnsSel::Inode(4026532385)));
        assert_eq!("netns:4026532385".parse(), Ok(NetnsSel::Inode(4026532385)));
        assert_eq!("host".parse(), Ok(NetnsSel::Name("host".into())));
        assert_eq!(
            "pod:1234-ab".parse(),
            Ok(NetnsSel::Name("pod:1234-ab".into()))
        );
        assert!("99999999999".parse::<NetnsSel>().is_err());
        assert!("".parse::<NetnsSel>().is_err());
    }

    fn host_input(netns: u32) -> Input {
        Input::Host(crate::input::HostInfo {
            hostname: String::new(),
            kernel: String::new(),
            clock: crate::clock::WallClock {
                mono_ns: 0,
                unix_ns: 0,
            },
            netns,
            sysctls: Default::default(),
        })
    }

    fn in_ns(ns: u32, pid: u32, cgroup_id: u64) -> Input {
        let mut e = ev(pid, "c", "10.0.0.1", 80);
        if let Event::ConnectError(c) = &mut e {
            c.netns = ns;
            if let Some(t) = &mut c.task {
                t.cgroup_id = cgroup_id;
            }
        }
        Input::Event(e)
    }

    fn by_name(name: &str) -> Filter {
        Filter::new(None, None, None, None, Some(NetnsSel::Name(name.into())))
    }

    #[test]
    fn host_names_portwatchs_own_namespace_once_the_host_record_is_seen() {
        let mut f = by_name("host");
        assert!(!f.matches_input(&in_ns(1, 1, 0)), "not known yet");
        assert!(f.matches_input(&host_input(1)));
        assert!(f.matches_input(&in_ns(1, 1, 0)));
        assert!(!f.matches_input(&in_ns(2, 1, 0)));
        // An unknown namespace (no BTF) is nobody's.
        assert!(!f.matches_input(&in_ns(0, 1, 0)));
    }

    #[test]
    fn a_pod_name_matches_its_namespace_from_the_first_event_of_its_tasks() {
        let pod =
            "/kubepods.slice/kubepods-pod0123abcd_ef.slice/cri-containerd-0123456789abcdef.scope";
        let mut f = by_name("pod:0123abcd-ef");
        assert!(f.matches_input(&host_input(1)));
        assert!(!f.name_matched());
        assert!(f.matches_input(&Input::Cgroup {
            id: 7,
            path: Some(pod.into())
        }));
        // Another namespace's event, and a task of the pod.
        assert!(!f.matches_input(&in_ns(3, 1, 0)));
        assert!(f.matches_input(&in_ns(9, 2, 7)));
        assert!(f.name_matched());
        // Later events in its namespace match whoever makes them (a
        // sidecar's process in the pod's namespace).
        assert!(f.matches_input(&in_ns(9, 3, 0)));
        // Its socket table and readings pass, another namespace's do not.
        let table = |netns| {
            Input::Sockets(crate::input::SocketTable {
                ts_ns: 1,
                netns,
                entries: vec![],
                without_time_wait: false,
            })
        };
        assert!(f.matches_input(&table(9)));
        assert!(!f.matches_input(&table(3)));
    }

    #[test]
    fn a_name_that_matches_nothing_keeps_nothing_and_says_so() {
        let mut f = by_name("pod:nope");
        f.matches_input(&host_input(1));
        assert!(!f.matches_input(&in_ns(1, 1, 0)));
        assert!(!f.matches_input(&in_ns(3, 1, 0)));
        assert!(!f.name_matched());
    }

    #[test]
    fn unnamed_namespaces_are_matched_by_their_inode_form() {
        let mut f = Filter::new(None, None, None, None, Some("netns:3".parse().unwrap()));
        assert!(f.matches_input(&in_ns(3, 1, 0)));
        assert!(!f.matches_input(&in_ns(4, 1, 0)));
        let mut r = Filter::default().with_inodes(vec![3, 4]);
        assert!(r.matches_input(&in_ns(4, 1, 0)));
        assert!(!r.matches_input(&in_ns(5, 1, 0)));
    }
}
