//! Event filters of `trace`, and of the views of `top` (the pipeline lets
//! only matching events reach the engine).

use std::net::IpAddr;

use crate::event::{Comm, Event, canonical_addr as canonical};

#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub pid: Option<u32>,
    pub comm: Option<Comm>,
    pub dport: Option<u16>,
    pub daddr: Option<IpAddr>,
    pub netns: Option<u32>,
}

impl Filter {
    /// Every given criterion must match.
    pub fn new(
        pid: Option<u32>,
        comm: Option<&str>,
        dport: Option<u16>,
        daddr: Option<IpAddr>,
        netns: Option<u32>,
    ) -> Filter {
        Filter {
            pid,
            comm: comm.map(Comm::new),
            dport,
            daddr: daddr.map(canonical),
            netns,
        }
    }

    /// Events as [`Filter::matches`]; a namespace's socket table and
    /// readings only with `--netns` naming that namespace (or none).
    pub fn matches_input(&self, input: &crate::input::Input) -> bool {
        use crate::input::Input;
        let ns_ok = |n: u32| self.netns.is_none_or(|want| want == n || n == 0);
        match input {
            Input::Event(ev) => self.matches(ev),
            Input::Sockets(t) => ns_ok(t.netns),
            Input::Netns(n) => ns_ok(n.netns),
            Input::Networks(n) => ns_ok(n.netns),
            _ => true,
        }
    }

    pub fn matches(&self, ev: &Event) -> bool {
        let task = ev.task();
        let (daddr, dport, netns) = match ev {
            Event::Close(c) => (c.daddr, c.dport, c.netns),
            Event::ConnectError(e) => (e.daddr, e.dport, e.netns),
        };
        self.pid.is_none_or(|p| task.is_some_and(|t| t.pid == p))
            && self
                .comm
                .is_none_or(|c| task.is_some_and(|t| t.comm == c || t.thread == c))
            && self.dport.is_none_or(|p| p == dport)
            && self.daddr.is_none_or(|a| a == canonical(daddr))
            && self.netns.is_none_or(|n| n == netns)
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
            Some(77),
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
}
