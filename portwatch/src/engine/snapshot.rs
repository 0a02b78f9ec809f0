//! The snapshot: the [`Model`] at a time, built from the accumulators.
//! Sorting, verdicts and advice are decided here, once, for every view.

use std::net::IpAddr;

use crate::clock::NS_PER_S;
use crate::event::EADDRNOTAVAIL;
use crate::input::KernelCounters;

use super::Engine;
use super::acc::Now;
use super::destinations::{destination_row, port_budget};
use super::hash::FxHashMap;
use super::model::*;
use super::service::{ServiceId, ServiceKind};
use super::verdict;

impl Engine {
    /// The model at `now_ns` (normally the latest tick).
    pub fn model(&self, now_ns: u64) -> Model {
        let now_ns = now_ns.max(self.now_ns);
        let start = self.start_ns.unwrap_or(now_ns);
        let now = Now {
            sec: now_ns / NS_PER_S,
            observed_s: (now_ns / NS_PER_S).saturating_sub(start / NS_PER_S),
        };
        let budget = self.host.as_ref().map(|h| port_budget(&h.sysctls));

        let mut processes: Vec<ProcessRow> = self
            .processes
            .map
            .iter()
            .map(|((pid, comm), (acc, svc))| ProcessRow {
                pid: *pid,
                comm: comm.to_string(),
                service: svc.map_or_else(
                    || ServiceId {
                        kind: ServiceKind::Comm,
                        name: comm.to_string(),
                    },
                    |i| self.names.name(i).clone(),
                ),
                stats: acc.stats(&now),
            })
            .collect();
        sort_rows(&mut processes, |r| &r.stats, |r| (r.pid, r.comm.clone()));

        let mut services: Vec<ServiceRow> = self
            .services
            .map
            .iter()
            .map(|(&svc, acc)| ServiceRow {
                service: self.names.name(svc).clone(),
                pids: acc.pids.to_vec(),
                stats: acc.stats(&now),
            })
            .collect();
        sort_rows(&mut services, |r| &r.stats, |r| r.service.clone());

        let mut destinations: Vec<DestinationRow> = self
            .destinations
            .map
            .iter()
            .map(|(&(daddr, dport), d)| destination_row(daddr, dport, d, &now, budget))
            .collect();
        sort_rows(&mut destinations, |r| &r.stats, |r| (r.daddr, r.dport));
        // Pressure matters most: a quiet destination can still be full.
        destinations.sort_by(|a, b| b.pressure.total_cmp(&a.pressure));

        let mut pairs: Vec<PairRow> = self
            .pairs
            .map
            .iter()
            .map(|(&(svc, daddr, dport), acc)| PairRow {
                service: self.names.name(svc).clone(),
                pids: acc.pids.to_vec(),
                daddr,
                dport,
                stats: acc.stats(&now),
            })
            .collect();
        sort_rows(
            &mut pairs,
            |r| &r.stats,
            |r| (r.service.clone(), r.daddr, r.dport),
        );

        let mut inbound: Vec<InboundRow> = self
            .inbound
            .map
            .iter()
            .map(|(&(laddr, lport), acc)| InboundRow {
                laddr,
                lport,
                stats: acc.stats(&now),
            })
            .collect();
        sort_rows(&mut inbound, |r| &r.stats, |r| (r.laddr, r.lport));

        // By key, so verdicts cost pairs + destinations, not their product
        // (16M comparisons per model with both tables full).
        let dest_by_key: FxHashMap<(IpAddr, u16), &DestinationRow> = destinations
            .iter()
            .map(|d| ((d.daddr, d.dport), d))
            .collect();
        let verdicts: Vec<Verdict> = pairs
            .iter()
            .filter(|p| {
                self.names
                    .get(&p.service)
                    .and_then(|svc| self.pairs.map.get(&(svc, p.daddr, p.dport)))
                    .is_some_and(|a| a.recent(&now))
            })
            .filter_map(|p| {
                let dest = dest_by_key.get(&(p.daddr, p.dport)).copied();
                verdict::lacks_pooling(&self.config.verdict, p, dest, budget, self.sysctls())
            })
            .collect();

        let sys_stats = self.sys.stats(&now);
        let mut system = SystemModel {
            clock: self.host.as_ref().map(|h| h.clock),
            hostname: self
                .host
                .as_ref()
                .map(|h| h.hostname.clone())
                .unwrap_or_default(),
            kernel: self
                .host
                .as_ref()
                .map(|h| h.kernel.clone())
                .unwrap_or_default(),
            sysctls: self.sysctls().cloned(),
            port_range: self.sysctls().map(|s| s.port_range),
            budget,
            sockstat_tw: self.counters.map(|c| c.tcp_tw),
            sockstat_inuse: self.counters.map(|c| c.tcp_inuse),
            tw_per_s: self.counter_rate(|c| c.tw),
            tw_recycled_per_s: self.counter_rate(|c| c.tw_recycled),
            tw_overflow_per_s: self.counter_rate(|c| c.tw_overflow),
            new_per_s_1s: sys_stats.new_per_s_1s,
            new_per_s_10s: sys_stats.new_per_s_10s,
            new_per_s_60s: sys_stats.new_per_s_60s,
            connect_errors_per_s_10s: now.rate(&self.sys_errors, RATE_WINDOW_S),
            eaddrnotavail_per_s_10s: self
                .sys_errors_by_errno
                .get(&EADDRNOTAVAIL)
                .map_or(0.0, |r| now.rate(r, RATE_WINDOW_S)),
            connect_errors_per_s_10s_by_errno: self.errors_by_errno(&now),
            time_wait: self
                .counters
                .map(|c| c.tcp_tw)
                .unwrap_or_else(|| destinations.iter().map(|d| d.stats.time_wait).sum()),
            open_ports: destinations.iter().map(|d| d.open_ports).sum(),
            connect_errors: sys_stats.connect_errors.clone(),
            connect_errors_total: sys_stats.connect_errors_total,
            connect_errors_by_cause: sys_stats.connect_errors_by_cause.clone(),
            failure_minutes: self
                .failure_minutes
                .iter()
                .map(|(&minute, by_errno)| MinuteFailures {
                    minute,
                    by_errno: by_errno.clone(),
                })
                .collect(),
            outbound_total: sys_stats.new_total,
            inbound_total: self.inbound_total,
            losses: self.losses,
            lost_events: self.losses.total(),
            events_total: self.events,
            counters: self.counters,
            folded_keys: 0,
            aged_out_keys: self.aged_out,
            advice: Vec::new(),
        };
        let others = Others {
            processes: self.processes.folded.estimate(),
            services: self.services.folded.estimate(),
            destinations: self.destinations.folded.estimate(),
            pairs: self.pairs.folded.estimate(),
            inbound: self.inbound.folded.estimate(),
        };
        system.folded_keys = others.processes
            + others.services
            + others.destinations
            + others.pairs
            + others.inbound;
        let host_netns = self.host.as_ref().map_or(0, |h| h.netns);
        let other_netns = self
            .netns_seen
            .iter()
            .filter(|&&n| host_netns != 0 && n != host_netns)
            .count();
        system.advice = verdict::advice(
            &system,
            &destinations,
            &verdicts,
            &inbound,
            &self.config.verdict,
            other_netns,
        );
        // Most important first: the header has room for one (and a count).
        system.advice.sort_by_key(|a| match a.level {
            "warning" => 0,
            "suggestion" => 1,
            _ => 2,
        });

        Model {
            now_ns,
            start_ns: self.start_ns,
            observed_s: now_ns.saturating_sub(start) as f64 / 1e9,
            system,
            processes,
            services,
            destinations,
            pairs,
            inbound,
            verdicts,
            others,
        }
    }

    pub(super) fn sysctls(&self) -> Option<&crate::input::Sysctls> {
        self.host.as_ref().map(|h| &h.sysctls)
    }

    /// Rate of a cumulative kernel counter between the last two readings.
    pub(super) fn counter_rate(&self, f: impl Fn(&KernelCounters) -> u64) -> Option<f64> {
        let (a, b) = (self.prev_counters?, self.counters?);
        let dt_s = b.ts_ns.checked_sub(a.ts_ns).filter(|&d| d > 0)? as f64 / 1e9;
        // A counter going backwards means a reset (e.g. namespace change).
        Some(f(&b).saturating_sub(f(&a)) as f64 / dt_s)
    }
}

/// Busiest first (10 s rate, then total), ties broken by key so the order
/// is deterministic.
fn sort_rows<R, K: Ord>(rows: &mut [R], stats: impl Fn(&R) -> &Stats, key: impl Fn(&R) -> K) {
    rows.sort_by(|a, b| {
        let (sa, sb) = (stats(a), stats(b));
        sb.new_per_s_10s
            .total_cmp(&sa.new_per_s_10s)
            .then(sb.new_total.cmp(&sa.new_total))
            .then_with(|| key(a).cmp(&key(b)))
    });
}

impl Engine {
    /// Failures per errno over the last [`RATE_WINDOW_S`], EADDRNOTAVAIL
    /// first, then by rate; errnos with none in the window are left out;
    /// beyond two, the rest are summed as "other" (errno 0), so the parts
    /// fit a header line and still add up to the total.
    fn errors_by_errno(&self, now: &Now) -> Vec<ErrnoRate> {
        let mut v: Vec<ErrnoRate> = self
            .sys_errors_by_errno
            .iter()
            .map(|(&errno, ring)| ErrnoRate {
                errno,
                name: crate::errno::name(errno),
                per_s: now.rate(ring, RATE_WINDOW_S),
            })
            .filter(|e| e.per_s > 0.0)
            .collect();
        v.sort_by(|a, b| {
            (b.errno == EADDRNOTAVAIL)
                .cmp(&(a.errno == EADDRNOTAVAIL))
                .then(b.per_s.total_cmp(&a.per_s))
                .then(a.errno.cmp(&b.errno))
        });
        if v.len() > 2 {
            let rest: f64 = v.drain(2..).map(|e| e.per_s).sum();
            v.push(ErrnoRate {
                errno: 0,
                name: "other".into(),
                per_s: rest,
            });
        }
        v
    }
}
