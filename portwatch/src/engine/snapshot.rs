//! The snapshot: the [`Model`] at a time, built from the accumulators.
//! Sorting, verdicts and advice are decided here, once, for every view.

use std::net::IpAddr;

use crate::clock::NS_PER_S;
use crate::event::EADDRNOTAVAIL;
use crate::input::KernelCounters;

use super::Engine;
use super::acc::{Now, tw_from_closes};
use super::destinations::{destination_row, port_budget};
use super::hash::FxHashMap;
use super::intern::ServiceIdx;
use super::model::*;
use super::netns::{self, NetnsRow, netns_name};
use super::service::{ServiceId, ServiceKind};
use super::verdict;

impl Engine {
    /// The model at `now_ns` (normally the latest tick).
    pub fn model(&self, now_ns: u64) -> Model {
        self.model_rows(now_ns, None)
    }

    /// The model for a view that shows only the first `rows` rows of each
    /// table (`top --batch --rows`): the processes, services, pairs and
    /// inbound listeners are cut to the `rows` busiest (plus every pair
    /// and listener busy enough for a verdict or advice); everything else
    /// (destinations, verdicts, advice, totals, "others") is the full
    /// model's. Those first rows are the full model's first rows.
    ///
    /// Why: a row costs every window and histogram of its key, and a full
    /// table is 4,096 keys. Under a flood of short-lived processes and
    /// distinct destinations, building every row every frame was what kept
    /// `top --batch` from printing a frame a second.
    pub fn model_top(&self, now_ns: u64, rows: usize) -> Model {
        self.model_rows(now_ns, Some(rows))
    }

    fn model_rows(&self, now_ns: u64, rows: Option<usize>) -> Model {
        let now_ns = now_ns.max(self.now_ns);
        let start = self.start_ns.unwrap_or(now_ns);
        let now = Now {
            sec: now_ns / NS_PER_S,
            observed_s: (now_ns / NS_PER_S).saturating_sub(start / NS_PER_S),
        };
        let budget = self.host.as_ref().map(|h| port_budget(&h.sysctls));

        // Busy enough to be a verdict's pair or an advice's listener.
        let min_rate = self.config.verdict.min_new_per_s;
        let processes = busiest(
            self.processes.map.iter(),
            rows,
            |(acc, _)| (now.rate(&acc.new, 10), acc.new_total),
            |(pid, comm)| (*pid, comm.to_string()),
            |_| false,
        );
        let mut processes: Vec<ProcessRow> = processes
            .into_iter()
            .map(|((pid, comm), (acc, svc))| ProcessRow {
                pid: *pid,
                comm: comm.to_string(),
                service: svc.map_or_else(
                    || ServiceId::new(ServiceKind::Comm, comm.to_string()),
                    |i| self.names.name(i).clone(),
                ),
                stats: acc.stats(&now),
            })
            .collect();
        sort_rows(
            &mut processes,
            |r| &r.stats,
            |a, b| (a.pid, &a.comm).cmp(&(b.pid, &b.comm)),
        );

        // A service's namespace: the one of all its pairs, if one.
        let mut svc_netns: FxHashMap<ServiceIdx, Option<u32>> = FxHashMap::default();
        for &(svc, ns, _, _) in self.pairs.map.keys() {
            svc_netns
                .entry(svc)
                .and_modify(|n| {
                    if *n != Some(ns) {
                        *n = None;
                    }
                })
                .or_insert(Some(ns));
        }
        let services = busiest(
            self.services.map.iter(),
            rows,
            |acc| (now.rate(&acc.new, 10), acc.new_total),
            |&svc| self.names.name(svc).clone(),
            |_| false,
        );
        let mut services: Vec<ServiceRow> = services
            .into_iter()
            .map(|(&svc, acc)| {
                let netns = svc_netns.get(&svc).copied().flatten().filter(|&n| n != 0);
                ServiceRow {
                    service: self.names.name(svc).clone(),
                    netns,
                    netns_name: netns.map(|n| self.netns_name(n)),
                    pids: acc.pids.to_vec(),
                    stats: acc.stats(&now),
                }
            })
            .collect();
        sort_rows(
            &mut services,
            |r| &r.stats,
            |a, b| a.service.cmp(&b.service),
        );

        // TIME_WAIT of bound-port connections per namespace: charged to
        // every destination there (see `bound`).
        let mut bound_tw: FxHashMap<u32, u64> = FxHashMap::default();
        for (&(ns, _, _), b) in &self.bound.map {
            *bound_tw.entry(ns).or_default() += b.time_wait(&now);
        }
        let mut destinations: Vec<DestinationRow> = self
            .destinations
            .map
            .iter()
            .map(|(&(ns, laddr, daddr, dport), d)| {
                let bound = bound_tw.get(&ns).copied().unwrap_or(0);
                let reuse = super::destinations::tw_reuse_delay_ms(
                    self.sysctls_of(ns),
                    daddr,
                    self.recycling(ns),
                );
                let max_tw = self
                    .sysctls_of(ns)
                    .and_then(|s| s.tcp_max_tw_buckets)
                    .and_then(|m| u64::try_from(m).ok());
                let mut row = destination_row(
                    daddr,
                    dport,
                    d,
                    &now,
                    self.budget_of(ns),
                    bound,
                    reuse,
                    max_tw,
                );
                self.judge_nat(&mut row, ns);
                row.netns = (ns != 0).then_some(ns);
                row.netns_name = row.netns.map(|n| self.netns_name(n));
                row.laddr = (!laddr.is_unspecified()).then_some(laddr);
                row
            })
            .collect();
        sort_rows(
            &mut destinations,
            |r| &r.stats,
            |a, b| (a.daddr, a.dport, a.netns, a.laddr).cmp(&(b.daddr, b.dport, b.netns, b.laddr)),
        );
        // Pressure matters most: a quiet destination can still be full.
        destinations.sort_by(|a, b| b.pressure.total_cmp(&a.pressure));

        let pairs = busiest(
            self.pairs.map.iter(),
            rows,
            |acc| (now.rate(&acc.new, 10), acc.new_total),
            |&(svc, ns, daddr, dport)| {
                (
                    self.names.name(svc).clone(),
                    daddr,
                    dport,
                    (ns != 0).then_some(ns),
                )
            },
            |rate| rate >= min_rate,
        );
        let mut pairs: Vec<PairRow> = pairs
            .into_iter()
            .map(|(&(svc, ns, daddr, dport), acc)| PairRow {
                service: self.names.name(svc).clone(),
                pids: acc.pids.to_vec(),
                netns: (ns != 0).then_some(ns),
                netns_name: (ns != 0).then(|| self.netns_name(ns)),
                daddr,
                dport,
                stats: acc.stats(&now),
            })
            .collect();
        sort_rows(
            &mut pairs,
            |r| &r.stats,
            |a, b| {
                (&a.service, a.daddr, a.dport, a.netns)
                    .cmp(&(&b.service, b.daddr, b.dport, b.netns))
            },
        );

        let dest_tw = time_wait_by_destination(&destinations);
        let svc_tw = self.service_time_wait(&dest_tw, &now);
        cap_time_wait(&dest_tw, &svc_tw, &mut pairs, &mut services, &mut processes);

        let inbound = busiest(
            self.inbound.map.iter(),
            rows,
            |acc| (now.rate(&acc.new, 10), acc.new_total),
            |&(laddr, lport)| (laddr, lport),
            |rate| rate >= min_rate,
        );
        let mut inbound: Vec<InboundRow> = inbound
            .into_iter()
            .map(|(&(laddr, lport), acc)| InboundRow {
                laddr,
                lport,
                stats: acc.stats(&now),
            })
            .collect();
        sort_rows(
            &mut inbound,
            |r| &r.stats,
            |a, b| (a.laddr, a.lport).cmp(&(b.laddr, b.lport)),
        );

        // By key, so verdicts cost pairs + destinations, not their product
        // (16M comparisons per model with both tables full). Of the budgets
        // of several local addresses, the fullest speaks for the pair.
        let mut dest_by_key: FxHashMap<(u32, IpAddr, u16), &DestinationRow> = FxHashMap::default();
        for d in &destinations {
            dest_by_key
                .entry((d.netns.unwrap_or(0), d.daddr, d.dport))
                .or_insert(d);
        }
        let mut bound: Vec<BoundRow> = self
            .bound
            .map
            .iter()
            .map(|(&(ns, pid, comm), b)| {
                let netns = (ns != 0).then_some(ns);
                BoundRow {
                    service: b.service.map_or_else(
                        || ServiceId::new(ServiceKind::Comm, comm.to_string()),
                        |i| self.names.name(i).clone(),
                    ),
                    pid,
                    comm: comm.to_string(),
                    netns,
                    netns_name: netns.map(|n| self.netns_name(n)),
                    bound_connections_total: b.connections,
                    time_wait: b.time_wait(&now),
                    daddr: b.last_dest.map(|d| d.0),
                    dport: b.last_dest.map(|d| d.1),
                    bind_errors: super::acc::errno_counts(&b.bind_errors),
                    bind_errors_total: b.bind_errors.iter().map(|(_, n)| n).sum(),
                    last_bind_addr: b
                        .last_bind
                        .map(|(a, p)| crate::render::fmt::addr_port(a, p)),
                }
            })
            .collect();
        bound.sort_by(|a, b| {
            (b.time_wait, b.bind_errors_total, b.bound_connections_total)
                .cmp(&(a.time_wait, a.bind_errors_total, a.bound_connections_total))
                .then_with(|| (a.pid, &a.comm).cmp(&(b.pid, &b.comm)))
        });

        let verdicts: Vec<Verdict> = pairs
            .iter()
            .filter(|p| {
                self.names
                    .get(&p.service)
                    .and_then(|svc| {
                        self.pairs
                            .map
                            .get(&(svc, p.netns.unwrap_or(0), p.daddr, p.dport))
                    })
                    .is_some_and(|a| a.recent(&now))
            })
            .filter_map(|p| {
                let ns = p.netns.unwrap_or(0);
                let dest = dest_by_key.get(&(ns, p.daddr, p.dport)).copied();
                verdict::lacks_pooling(
                    &self.config.verdict,
                    p,
                    dest,
                    self.budget_of(ns),
                    self.sysctls_of(ns),
                    p.pids.iter().find_map(|pid| self.runtimes.get(pid)),
                )
                .map(|mut v| {
                    v.call_sites = self
                        .call_sites
                        .top(&(p.service.clone(), ns, p.daddr, p.dport));
                    v
                })
            })
            .collect();
        let mut verdicts = verdicts;
        self.attribute_holdings(now_ns, &mut destinations, &mut verdicts);
        for b in &bound {
            let ns = b.netns.unwrap_or(0);
            let victims = super::bound::victims(&pairs, b.netns, b);
            let pair = pairs.iter().find(|p| {
                p.service == b.service
                    && p.netns == b.netns
                    && Some(p.daddr) == b.daddr
                    && Some(p.dport) == b.dport
            });
            verdicts.extend(super::bound::verdict(
                b,
                pair,
                (&victims.0, victims.1),
                self.budget_of(ns),
            ));
        }
        let namespaces = self.namespace_rows();
        // The header sums every namespace's sockstat.
        let sum = |f: fn(&NetnsRow) -> Option<u64>| {
            namespaces
                .iter()
                .filter_map(f)
                .fold(None, |acc: Option<u64>, v| Some(acc.unwrap_or(0) + v))
        };

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
            sockstat_tw: sum(|n| n.sockstat_tw).or(self.counters.map(|c| c.tcp_tw)),
            sockstat_inuse: sum(|n| n.sockstat_inuse).or(self.counters.map(|c| c.tcp_inuse)),
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
            time_wait: sum(|n| n.sockstat_tw)
                .or(self.counters.map(|c| c.tcp_tw))
                .unwrap_or_else(|| destinations.iter().map(|d| d.stats.time_wait).sum()),
            open_ports: destinations.iter().map(|d| d.open_ports).sum(),
            close_wait: self.leaks.close_wait().0,
            close_wait_unattributed: self.leaks.close_wait().1,
            owner_lookup_failures: self.leaks.failed_total + self.leaks.not_found,
            connect_errors: sys_stats.connect_errors.clone(),
            connect_errors_total: sys_stats.connect_errors_total,
            connect_errors_by_cause: sys_stats.connect_errors_by_cause.clone(),
            syn_retransmits: sys_stats.syn_retransmits,
            conntrack: worst_conntrack(&namespaces),
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
            namespaces: self.namespaces.table.folded.estimate(),
        };
        system.folded_keys = others.processes
            + others.services
            + others.destinations
            + others.pairs
            + others.inbound
            + others.namespaces;
        system.advice = netns::advice_by_namespace(
            &system,
            &namespaces,
            &destinations,
            &verdicts,
            &inbound,
            &self.config.verdict,
        );
        for v in verdicts
            .iter()
            .filter(|v| v.verdict == "binds_before_connect")
        {
            system.advice.push(Advice {
                level: "warning",
                key: "bind_address_no_port",
                text: format!(
                    "{} (pid {}) binds client sockets before connect(), holding {} ports                      against every destination: set IP_BIND_ADDRESS_NO_PORT before bind(),                      or do not bind()",
                    v.service,
                    v.pids.first().copied().unwrap_or(0),
                    v.time_wait
                ),
                netns: v.netns,
                netns_name: v.netns_name.clone(),
            });
        }
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
            bound,
            verdicts,
            namespaces,
            others,
        }
    }

    /// Who holds the ports of each destination (from the owner lookups of
    /// the last socket tables), and the `leaks_sockets` verdicts: a
    /// destination whose ports are held mostly by one process names it in
    /// `held_by`, so its failed connects point at the holder.
    fn attribute_holdings(
        &self,
        now_ns: u64,
        destinations: &mut [DestinationRow],
        verdicts: &mut Vec<Verdict>,
    ) {
        let holdings = self
            .leaks
            .holdings(now_ns, self.config.verdict.leak_min_age_s);
        if holdings.is_empty() {
            return;
        }
        type Key = (u32, IpAddr, u16);
        let key = |d: &DestinationRow| (d.netns.unwrap_or(0), d.daddr, d.dport);
        let mut held_to: FxHashMap<Key, u64> = FxHashMap::default();
        for d in destinations.iter() {
            *held_to.entry(key(d)).or_default() += d.held_ports;
        }
        // Per destination, the holding with most ports to it.
        let mut best: FxHashMap<Key, (usize, u64, u64)> = FxHashMap::default();
        for (i, h) in holdings.iter().enumerate() {
            for &((daddr, dport), (held, cw)) in &h.by_dest {
                let e = best.entry((h.netns, daddr, dport)).or_insert((i, 0, 0));
                if held > e.1 {
                    *e = (i, held, cw);
                }
            }
        }
        // Named as an event of the same process is.
        let service = |h: &super::leaks::Holding| {
            self.service_of(Some(&crate::event::Task {
                pid: h.owner.pid,
                tid: h.owner.pid,
                comm: h.owner.comm,
                thread: h.owner.comm,
                cgroup_id: h.owner.cgroup_id,
            }))
        };
        // Failures (all, for want of a port) to what each holding holds.
        let mut failures = vec![(0u64, 0u64); holdings.len()];
        for d in destinations.iter_mut() {
            let k = key(d);
            let Some(&(i, held, cw)) = best.get(&k) else {
                continue;
            };
            if held == 0 || held * 2 < held_to.get(&k).copied().unwrap_or(0) {
                continue;
            }
            let h = &holdings[i];
            failures[i].0 += d.stats.connect_errors_total;
            failures[i].1 += d.stats.port_exhaustion_total;
            d.held_by = Some(Holder {
                pid: h.owner.pid,
                comm: h.owner.comm.to_string(),
                service: service(h),
                ports: held,
                close_wait: cw,
                leaks_sockets: false,
            });
        }
        let mut leaking = Vec::new();
        for (i, h) in holdings.iter().enumerate() {
            let service = service(h);
            let comm = h.owner.comm.to_string();
            let netns = (h.netns != 0).then_some(h.netns);
            let facts = verdict::LeakFacts {
                service: &service,
                pid: h.owner.pid,
                comm: &comm,
                netns,
                netns_name: netns.map(|n| self.netns_name(n)),
                close_wait: h.close_wait,
                stuck: h.stuck,
                grew: h.grew,
                held: h.held,
                oldest_s: h.oldest_s,
                dests: &h.by_dest,
                budget: self.budget_of(h.netns),
                failures: failures[i],
            };
            if let Some(v) = verdict::leaks_sockets(&self.config.verdict, &facts) {
                leaking.push((h.netns, h.owner.pid));
                verdicts.push(v);
            }
        }
        for d in destinations.iter_mut() {
            let ns = d.netns.unwrap_or(0);
            if let Some(h) = &mut d.held_by {
                h.leaks_sockets = leaking.contains(&(ns, h.pid));
            }
        }
    }

    /// `host`, the pod/container/unit living in it, or `netns:INODE`.
    fn netns_name(&self, ns: u32) -> String {
        netns_name(
            ns,
            self.host_netns(),
            self.namespaces.get(ns).and_then(|n| n.owner.as_ref()),
        )
    }

    /// The sysctls of a namespace: the host's for the host, else its own
    /// as read inside it (`None` when it could not be: never the host's).
    fn sysctls_of(&self, ns: u32) -> Option<&crate::input::Sysctls> {
        if ns == self.host_netns() {
            self.sysctls()
        } else {
            self.namespaces.get(ns).and_then(|n| n.sysctls.as_ref())
        }
    }

    /// TWRecycled rose between the namespace's last two readings.
    fn recycling(&self, ns: u32) -> bool {
        let rate = if ns == self.host_netns() {
            self.counter_rate(|c| c.tw_recycled)
        } else {
            self.namespaces
                .get(ns)
                .and_then(|n| netns::counter_rate(n.prev_counters, n.counters, |c| c.tw_recycled))
        };
        rate.is_some_and(|r| r > 0.0)
    }

    fn budget_of(&self, ns: u32) -> Option<u64> {
        self.sysctls_of(ns).map(port_budget)
    }

    /// Whether the destination lies beyond its namespace's and the host's
    /// own networks and, if so, the NAT gateway ports it needs.
    fn judge_nat(&self, row: &mut DestinationRow, ns: u32) {
        let host = self.host_netns();
        let own = self.networks.get(&ns);
        let host_nets = (ns != host).then(|| self.networks.get(&host)).flatten();
        let nets = own.into_iter().chain(host_nets).flatten();
        row.beyond_local_networks = if own.is_some() {
            super::nat::beyond_local_networks(row.daddr, nets)
        } else {
            None
        };
        if row.beyond_local_networks == Some(true) {
            let s = &row.stats;
            let established: u64 = s.lifetime_buckets.iter().map(|(_, n)| n).sum();
            let mean_lifetime_s = if established > 0 {
                s.lifetime_sum_s / established as f64
            } else {
                0.0
            };
            row.nat_port_demand = Some(super::nat::port_demand(
                s.new_per_s_10s,
                mean_lifetime_s,
                self.config.verdict.nat_hold_s,
            ));
        }
    }

    /// Every namespace known, the host's first, then by inode.
    fn namespace_rows(&self) -> Vec<NetnsRow> {
        let host = self.host_netns();
        let host_sysctls = self.sysctls();
        let row = |ns: u32,
                   sysctls: Option<&crate::input::Sysctls>,
                   counters: (Option<KernelCounters>, Option<KernelCounters>)| {
            let rate =
                |f: fn(&KernelCounters) -> u64| netns::counter_rate(counters.0, counters.1, f);
            NetnsRow {
                netns: ns,
                netns_name: self.netns_name(ns),
                host: ns == host,
                stale: false,
                error: None,
                sysctls: sysctls.cloned(),
                port_range: sysctls.map(|s| s.port_range),
                budget: sysctls.map(port_budget),
                tcp_tw_reuse: sysctls.and_then(|s| s.tcp_tw_reuse),
                tcp_timestamps: sysctls.and_then(|s| s.tcp_timestamps),
                tcp_max_tw_buckets: sysctls.and_then(|s| s.tcp_max_tw_buckets),
                sockstat_tw: counters.1.map(|c| c.tcp_tw),
                sockstat_inuse: counters.1.map(|c| c.tcp_inuse),
                tw_recycled_per_s: rate(|c| c.tw_recycled),
                tw_overflow_per_s: rate(|c| c.tw_overflow),
                differs_from_host: ns != host
                    && match (sysctls, host_sysctls) {
                        (Some(a), Some(b)) => netns::advice_sysctls_differ(a, b),
                        _ => false,
                    },
                conntrack: netns::ConntrackRow::of(
                    ns,
                    self.netns_name(ns),
                    ns == host,
                    counters.0,
                    counters.1,
                ),
            }
        };
        let mut rows = Vec::new();
        if self.host.is_some() {
            rows.push(row(host, host_sysctls, (self.prev_counters, self.counters)));
        }
        let mut others: Vec<_> = self.namespaces.table.map.iter().collect();
        others.sort_by_key(|(ns, _)| **ns);
        for (&ns, n) in others {
            let mut r = row(ns, n.sysctls.as_ref(), (n.prev_counters, n.counters));
            r.stale = n.stale;
            r.error = n.error.clone();
            rows.push(r);
        }
        rows
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

/// The conntrack table in the worst state among the namespaces: the most
/// entries turned away per second, then the fullest; the host's on a tie.
fn worst_conntrack(rows: &[NetnsRow]) -> Option<netns::ConntrackRow> {
    rows.iter()
        .filter_map(|r| r.conntrack.as_ref())
        .fold(None, |best: Option<&netns::ConntrackRow>, c| match best {
            Some(b)
                if (b.failures_per_s(), b.fill.unwrap_or(0.0))
                    >= (c.failures_per_s(), c.fill.unwrap_or(0.0)) =>
            {
                Some(b)
            }
            _ => Some(c),
        })
        .cloned()
}

/// TIME_WAIT by destination (its local addresses summed): what a pair to
/// it can hold at most.
fn time_wait_by_destination(
    dests: &[DestinationRow],
) -> FxHashMap<(Option<u32>, IpAddr, u16), u64> {
    let mut dest_tw: FxHashMap<(Option<u32>, IpAddr, u16), u64> = FxHashMap::default();
    for d in dests {
        *dest_tw.entry((d.netns, d.daddr, d.dport)).or_default() += d.stats.time_wait;
    }
    dest_tw
}

impl Engine {
    /// Each service's TIME_WAIT as [`cap_time_wait`] leaves it: its own,
    /// capped by the sum of its pairs' (each capped by its destination).
    /// From every pair and service, not only the rows a model builds
    /// ([`Engine::model_top`]): one window per key.
    fn service_time_wait(
        &self,
        dest_tw: &FxHashMap<(Option<u32>, IpAddr, u16), u64>,
        now: &Now,
    ) -> FxHashMap<ServiceId, u64> {
        let mut by_pairs: FxHashMap<ServiceIdx, u64> = FxHashMap::default();
        for (&(svc, ns, daddr, dport), acc) in &self.pairs.map {
            let tw = tw_from_closes(&acc.local_close, now.sec).0;
            let tw = dest_tw
                .get(&((ns != 0).then_some(ns), daddr, dport))
                .map_or(tw, |&max| tw.min(max));
            *by_pairs.entry(svc).or_default() += tw;
        }
        self.services
            .map
            .iter()
            .map(|(&svc, acc)| {
                let own = tw_from_closes(&acc.local_close, now.sec).0;
                let tw = by_pairs.get(&svc).map_or(own, |&sum| own.min(sum));
                (self.names.name(svc).clone(), tw)
            })
            .collect()
    }
}

/// A pair, service or process cannot hold more TIME_WAIT than the
/// destinations it connects to do (capped by their ports, corrected by the
/// socket table): counts from closes overshoot when tcp_tw_reuse recycles
/// ports or tcp_max_tw_buckets drops TIME_WAIT sockets. `dest_tw` is
/// [`time_wait_by_destination`], `svc_tw` [`Engine::service_time_wait`].
fn cap_time_wait(
    dest_tw: &FxHashMap<(Option<u32>, IpAddr, u16), u64>,
    svc_tw: &FxHashMap<ServiceId, u64>,
    pairs: &mut [PairRow],
    services: &mut [ServiceRow],
    processes: &mut [ProcessRow],
) {
    let cap = |s: &mut Stats, max: u64| {
        s.time_wait = s.time_wait.min(max);
        s.tw_expiring_10s = s.tw_expiring_10s.min(s.time_wait);
        s.tw_expiring_30s = s.tw_expiring_30s.min(s.time_wait);
        s.tw_expiring_60s = s.tw_expiring_60s.min(s.time_wait);
    };
    for p in pairs.iter_mut() {
        if let Some(&max) = dest_tw.get(&(p.netns, p.daddr, p.dport)) {
            cap(&mut p.stats, max);
        }
    }
    for s in services.iter_mut() {
        if let Some(&max) = svc_tw.get(&s.service) {
            cap(&mut s.stats, max);
        }
    }
    for p in processes.iter_mut() {
        if let Some(&max) = svc_tw.get(&p.service) {
            cap(&mut p.stats, max);
        }
    }
}

/// The entries of a table whose rows a model with `rows` rows per table
/// builds: the `rows` first in [`sort_rows`]' order (ranked by `rank`,
/// the 10 s rate and total of the key, then by `tie`, the key as its row
/// sorts it), and every other one whose rate `also` keeps; all of them
/// when `rows` is `None`. Ranking reads one 10 s window per key; the rows
/// left out are never built.
fn busiest<'a, K, V, T: Ord>(
    entries: impl ExactSizeIterator<Item = (&'a K, &'a V)>,
    rows: Option<usize>,
    rank: impl Fn(&V) -> (f64, u64),
    tie: impl Fn(&K) -> T,
    also: impl Fn(f64) -> bool,
) -> Vec<(&'a K, &'a V)> {
    let Some(rows) = rows.filter(|&r| r < entries.len()) else {
        return entries.collect();
    };
    let mut ranked: Vec<(f64, u64, &K, &V)> = entries
        .map(|(k, v)| {
            let (rate, total) = rank(v);
            (rate, total, k, v)
        })
        .collect();
    if rows > 0 {
        ranked.select_nth_unstable_by(rows - 1, |a, b| {
            b.0.total_cmp(&a.0)
                .then(b.1.cmp(&a.1))
                .then_with(|| tie(a.2).cmp(&tie(b.2)))
        });
    }
    let (top, rest) = ranked.split_at(rows);
    top.iter()
        .chain(rest.iter().filter(|e| also(e.0)))
        .map(|e| (e.2, e.3))
        .collect()
}

/// Busiest first (10 s rate, then total), ties broken by key (`by_key`)
/// so the order is deterministic. The key is compared in place, never
/// cloned: under a flood of one-connection keys nearly every comparison
/// is a tie.
fn sort_rows<R>(
    rows: &mut [R],
    stats: impl Fn(&R) -> &Stats,
    by_key: impl Fn(&R, &R) -> std::cmp::Ordering,
) {
    rows.sort_by(|a, b| {
        let (sa, sb) = (stats(a), stats(b));
        sb.new_per_s_10s
            .total_cmp(&sa.new_per_s_10s)
            .then(sb.new_total.cmp(&sa.new_total))
            .then_with(|| by_key(a, b))
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
