//! Ports taken at bind(): clients that bind() a socket before connect()
//! (to port 0 without `IP_BIND_ADDRESS_NO_PORT`, or to a fixed port).
//!
//! Such a port is chosen without knowing the destination, so the kernel
//! keeps it from every other connect() of the namespace for as long as the
//! socket (and then its TIME_WAIT) lives: one of these connections costs a
//! port of the whole range, not of one destination's budget. The engine
//! counts them per process, charges their TIME_WAIT to every destination
//! of the namespace, and names the process when others run out of ports.

use std::net::IpAddr;

use crate::clock::NS_PER_S;
use crate::event::{BindError, ConnClose};

use super::acc::{Now, tw_from_closes};
use super::intern::ServiceIdx;
use super::table::Activity;
use super::window::SecondRing;

/// Key: (netns, pid, process name).
pub(super) type BoundKey = (u32, u32, crate::event::Comm);

/// Per process: its connections whose port was bound before connect(),
/// and its failed bind() calls.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct BoundAcc {
    pub(super) service: Option<ServiceIdx>,
    /// Connections seen whose port was bound before connect().
    pub(super) connections: u64,
    /// Of those, closed by this host (each leaves a TIME_WAIT that keeps
    /// its port from every destination), by the second they closed.
    pub(super) local_close: SecondRing,
    /// The destination it connected to last.
    pub(super) last_dest: Option<(IpAddr, u16)>,
    /// Failed bind() calls by errno.
    pub(super) bind_errors: Vec<(i32, u64)>,
    /// The address of the last failed bind().
    pub(super) last_bind: Option<(IpAddr, u16)>,
    pub(super) last_ns: u64,
}

impl Activity for BoundAcc {
    fn last_ns(&self) -> u64 {
        self.last_ns
    }
}

impl BoundAcc {
    pub(super) fn record_close(&mut self, c: &ConnClose) {
        self.connections += 1;
        if c.local_close {
            self.local_close.add(c.end_ns / NS_PER_S, 1);
        }
        self.last_dest = Some((c.daddr, c.dport));
        self.last_ns = self.last_ns.max(c.end_ns);
    }

    pub(super) fn record_bind_error(&mut self, b: &BindError) {
        match self.bind_errors.iter_mut().find(|(e, _)| *e == b.errno) {
            Some((_, n)) => *n += 1,
            None => self.bind_errors.push((b.errno, 1)),
        }
        self.last_bind = Some((b.saddr, b.sport));
        self.last_ns = self.last_ns.max(b.ts_ns);
    }

    /// TIME_WAIT sockets of its bound connections now: ports no connect()
    /// of the namespace can use, whatever the destination.
    pub(super) fn time_wait(&self, now: &Now) -> u64 {
        tw_from_closes(&self.local_close, now.sec).0
    }
}

use super::model::{BoundRow, CauseCount, PairRow, Verdict};
use crate::event::FailCause;
use crate::render::fmt::{addr_port, pct};

/// Other services' port-exhaustion failures in one namespace: the victims
/// of a process that holds ports of the whole range.
pub(super) fn victims(pairs: &[PairRow], ns: Option<u32>, holder: &BoundRow) -> (Vec<String>, u64) {
    let mut out: Vec<(String, u64)> = Vec::new();
    for p in pairs
        .iter()
        .filter(|p| p.netns == ns && p.service != holder.service)
    {
        let n = exhaustion(&p.stats.connect_errors_by_cause);
        if n == 0 {
            continue;
        }
        let text = format!(
            "{} ({n} EADDRNOTAVAIL to {})",
            p.service,
            addr_port(p.daddr, p.dport)
        );
        out.push((text, n));
    }
    out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let total = out.iter().map(|(_, n)| n).sum();
    (out.into_iter().map(|(t, _)| t).collect(), total)
}

fn exhaustion(causes: &[CauseCount]) -> u64 {
    causes
        .iter()
        .filter(|c| c.cause == FailCause::PortExhaustion)
        .map(|c| c.count)
        .sum()
}

/// The `binds_before_connect` verdict for a process, when what it holds
/// matters: its own bind() ran out of ports, other services' connects fail
/// for lack of ports, or its TIME_WAIT holds a fifth of the range.
pub(super) fn verdict(
    b: &BoundRow,
    pair: Option<&PairRow>,
    (victims, victim_failures): (&[String], u64),
    budget: Option<u64>,
) -> Option<Verdict> {
    let budget = budget.filter(|&x| x > 0);
    let share = budget.map_or(0.0, |x| b.time_wait as f64 / x as f64);
    let eaddrinuse = b
        .bind_errors
        .iter()
        .filter(|e| e.errno == crate::event::EADDRINUSE)
        .map(|e| e.count)
        .sum::<u64>();
    if eaddrinuse == 0 && victims.is_empty() && share < 0.2 {
        return None;
    }
    let (daddr, dport) = match (b.daddr, b.dport) {
        (Some(a), Some(p)) => (a, p),
        _ => (std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0),
    };
    let mut evidence = format!(
        "{} (pid {}) binds its client sockets to a port before connect() \
         ({} such connections): the kernel keeps each of those ports from every \
         connect() of the namespace, whatever the destination. {} held in TIME_WAIT now",
        b.comm, b.pid, b.bound_connections_total, b.time_wait
    );
    match budget {
        Some(x) => evidence.push_str(&format!(", {} of the {x}-port range.", pct(share))),
        None => evidence.push('.'),
    }
    if eaddrinuse > 0 {
        evidence.push_str(&format!(
            " Its bind() failed {eaddrinuse} time{} with EADDRINUSE: no port of the range \
             was free{}.",
            if eaddrinuse == 1 { "" } else { "s" },
            b.last_bind_addr
                .as_deref()
                .map(|a| format!(" (last: {a})"))
                .unwrap_or_default()
        ));
    }
    if !victims.is_empty() {
        evidence.push_str(&format!(
            " Other services' connects fail for it: {}.",
            victims.join(", ")
        ));
    }
    let fix = format!(
        "Set IP_BIND_ADDRESS_NO_PORT (setsockopt IPPROTO_IP, 24) on {}'s sockets before \
         bind(), or do not bind() client sockets at all: the port is then chosen at \
         connect(), per destination, and no longer held against the whole range.",
        b.comm
    );
    let s = pair.map(|p| &p.stats);
    Some(Verdict {
        service: b.service.clone(),
        pids: vec![b.pid],
        netns: b.netns,
        netns_name: b.netns_name.clone(),
        daddr,
        dport,
        verdict: "binds_before_connect",
        new_per_s: s.map_or(0.0, |s| s.new_per_s_10s),
        lifetime_p50_ms: s.and_then(|s| s.lifetime_p50_ms),
        time_wait: b.time_wait,
        budget_share: share,
        closed_locally_share: s.and_then(|s| s.closed_locally_share),
        connect_errors_total: s.map_or(0, |s| s.connect_errors_total),
        close_wait: None,
        held_ports: Some(b.time_wait),
        held_for_s: None,
        failures_caused: (!victims.is_empty()).then_some(victim_failures),
        call_sites: Vec::new(),
        evidence,
        fix,
    })
}
