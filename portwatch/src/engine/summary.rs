//! The incident summary of a run (`report`): peaks, first and last seen,
//! failures per minute, built from [`Model`]s sampled every second of trace
//! time and the last model. It keeps only per-key aggregates, so memory
//! does not grow with the length of the trace; everything is ordered
//! explicitly, so the same inputs always give the same summary.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::clock::{NS_PER_S, WallClock};
use crate::event::Losses;

use super::model::{Closer, ErrnoCount, MinuteFailures, Model, Verdict};
use super::service::ServiceId;

/// Running total of a per-key counter that restarts from 0 when the engine
/// ages the key out and sees it again.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Total {
    base: u64,
    last: u64,
}

impl Total {
    fn see(&mut self, now: u64) {
        if now < self.last {
            self.base += self.last;
        }
        self.last = now;
    }

    fn get(&self) -> u64 {
        self.base + self.last
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ServiceSummary {
    pub service: ServiceId,
    pub pids: Vec<u32>,
    new_total: Total,
    errors_total: Total,
    pub peak_new_per_s: f64,
    pub lifetime_p50_ms: Option<f64>,
    pub closed_locally_share: Option<f64>,
}

impl ServiceSummary {
    pub fn new_total(&self) -> u64 {
        self.new_total.get()
    }

    pub fn connect_errors(&self) -> u64 {
        self.errors_total.get()
    }
}

/// One port budget over the run: a (network namespace, local address,
/// remote address, remote port), as the model's destinations.
#[derive(Clone, Debug, PartialEq)]
pub struct DestinationSummary {
    pub netns: Option<u32>,
    /// The namespace's name when last sampled (`host`, a pod, container or
    /// unit, `netns:INODE`).
    pub netns_name: Option<String>,
    pub laddr: Option<IpAddr>,
    pub daddr: IpAddr,
    pub dport: u16,
    new_total: Total,
    errors_total: Total,
    syn_retransmits: Total,
    pub peak_new_per_s: f64,
    pub peak_held_ports: u64,
    pub peak_time_wait: u64,
    pub budget: u64,
    pub peak_pressure: f64,
    pub peak_pressure_ns: u64,
    pub closer: Closer,
    /// Highest NAT gateway port demand seen (destinations beyond the
    /// host's own networks only).
    pub peak_nat_port_demand: Option<f64>,
}

impl DestinationSummary {
    pub fn new_total(&self) -> u64 {
        self.new_total.get()
    }

    /// Failed connects and handshakes to it.
    pub fn connect_errors(&self) -> u64 {
        self.errors_total.get()
    }

    /// SYNs retransmitted to it.
    pub fn syn_retransmits(&self) -> u64 {
        self.syn_retransmits.get()
    }
}

/// The conntrack table at its worst moment of the trace.
#[derive(Clone, Debug, PartialEq)]
pub struct ConntrackPeak {
    pub netns_name: String,
    pub count: u64,
    pub max: Option<u64>,
    pub fill: Option<f64>,
    /// drop + early_drop + insert_failed per second.
    pub turned_away_per_s: f64,
    pub at_ns: u64,
}

/// A verdict (`lacks_pooling`, `leaks_sockets`, `binds_before_connect`) over the whole trace.
#[derive(Clone, Debug, PartialEq)]
pub struct VerdictSummary {
    /// As the engine gave it at its peak.
    pub peak: Verdict,
    pub peak_ns: u64,
    pub first_ns: u64,
    pub last_ns: u64,
    /// Samples (seconds of trace time) the verdict held.
    pub flagged_s: u64,
}

/// What [`Summarizer`] makes of a run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    pub hostname: String,
    pub kernel: String,
    pub clock: Option<WallClock>,
    pub port_range: Option<(u16, u16)>,
    pub budget: Option<u64>,
    /// First and last input time (None: no input had a time).
    pub start_ns: Option<u64>,
    pub end_ns: Option<u64>,
    /// Connections seen.
    pub outbound: u64,
    pub inbound: u64,
    /// Peak outbound rate over one complete second (and the second's start).
    pub peak_1s: (f64, u64),
    /// Peak outbound rate over 10 s (and the end of that window).
    pub peak_10s: (f64, u64),
    /// By connections, descending.
    pub services: Vec<ServiceSummary>,
    /// By peak pressure, descending.
    pub destinations: Vec<DestinationSummary>,
    /// EADDRNOTAVAIL first, then by count.
    pub failures: Vec<ErrnoCount>,
    /// Minutes with failures, in order.
    pub failure_minutes: Vec<MinuteFailures>,
    /// SYNs retransmitted (all outbound connections).
    pub syn_retransmits: u64,
    /// The conntrack table at its worst: most entries turned away per
    /// second, then the fullest (`None` without nf_conntrack).
    pub conntrack_peak: Option<ConntrackPeak>,
    pub verdicts: Vec<VerdictSummary>,
    pub losses: Losses,
}

impl Summary {
    pub fn duration_s(&self) -> f64 {
        match (self.start_ns, self.end_ns) {
            (Some(a), Some(b)) => b.saturating_sub(a) as f64 / 1e9,
            _ => 0.0,
        }
    }
}

/// (netns, local address, remote address, remote port).
type DestKey = (Option<u32>, Option<IpAddr>, IpAddr, u16);

/// Builds a [`Summary`] from sampled models.
#[derive(Debug, Default)]
pub struct Summarizer {
    s: Summary,
    services: BTreeMap<ServiceId, ServiceSummary>,
    destinations: BTreeMap<DestKey, DestinationSummary>,
    verdicts: BTreeMap<(&'static str, ServiceId, Option<u32>, IpAddr, u16), VerdictSummary>,
    minutes: BTreeMap<i64, BTreeMap<i32, u64>>,
}

impl Summarizer {
    /// The model at a whole second of trace time (inputs up to it applied).
    pub fn sample(&mut self, m: &Model) {
        self.merge_minutes(&m.system.failure_minutes);
        let now = m.now_ns;
        let sys = &m.system;
        if sys.new_per_s_1s > self.s.peak_1s.0 {
            self.s.peak_1s = (sys.new_per_s_1s, now.saturating_sub(NS_PER_S));
        }
        if sys.new_per_s_10s > self.s.peak_10s.0 {
            self.s.peak_10s = (sys.new_per_s_10s, now);
        }
        if let Some(c) = &sys.conntrack {
            let key = |p: &ConntrackPeak| (p.turned_away_per_s, p.fill.unwrap_or(0.0));
            let cand = ConntrackPeak {
                netns_name: c.netns_name.clone(),
                count: c.count,
                max: c.max,
                fill: c.fill,
                turned_away_per_s: c.failures_per_s(),
                at_ns: now,
            };
            if self
                .s
                .conntrack_peak
                .as_ref()
                .is_none_or(|p| key(&cand) > key(p))
            {
                self.s.conntrack_peak = Some(cand);
            }
        }
        for s in &m.services {
            let e = self
                .services
                .entry(s.service.clone())
                .or_insert_with(|| ServiceSummary {
                    service: s.service.clone(),
                    pids: Vec::new(),
                    new_total: Total::default(),
                    errors_total: Total::default(),
                    peak_new_per_s: 0.0,
                    lifetime_p50_ms: None,
                    closed_locally_share: None,
                });
            e.pids.clone_from(&s.pids);
            e.new_total.see(s.stats.new_total);
            e.errors_total.see(s.stats.connect_errors_total);
            e.peak_new_per_s = e.peak_new_per_s.max(s.stats.new_per_s_10s);
            e.lifetime_p50_ms = s.stats.lifetime_p50_ms.or(e.lifetime_p50_ms);
            e.closed_locally_share = s.stats.closed_locally_share.or(e.closed_locally_share);
        }
        for d in &m.destinations {
            let e = self
                .destinations
                .entry((d.netns, d.laddr, d.daddr, d.dport))
                .or_insert_with(|| DestinationSummary {
                    netns: d.netns,
                    netns_name: None,
                    laddr: d.laddr,
                    daddr: d.daddr,
                    dport: d.dport,
                    new_total: Total::default(),
                    errors_total: Total::default(),
                    syn_retransmits: Total::default(),
                    peak_new_per_s: 0.0,
                    peak_held_ports: 0,
                    peak_time_wait: 0,
                    budget: d.budget,
                    peak_pressure: 0.0,
                    peak_pressure_ns: now,
                    closer: d.closer,
                    peak_nat_port_demand: None,
                });
            if let Some(n) = d.nat_port_demand {
                e.peak_nat_port_demand = Some(e.peak_nat_port_demand.map_or(n, |p| p.max(n)));
            }
            if e.netns_name != d.netns_name {
                e.netns_name.clone_from(&d.netns_name);
            }
            e.new_total.see(d.stats.new_total);
            e.errors_total.see(d.stats.connect_errors_total);
            e.syn_retransmits.see(d.stats.syn_retransmits);
            e.peak_new_per_s = e.peak_new_per_s.max(d.stats.new_per_s_10s);
            e.peak_held_ports = e.peak_held_ports.max(d.held_ports);
            e.peak_time_wait = e.peak_time_wait.max(d.stats.time_wait);
            e.budget = d.budget;
            e.closer = d.closer;
            if d.pressure > e.peak_pressure {
                e.peak_pressure = d.pressure;
                e.peak_pressure_ns = now;
            }
        }
        for v in &m.verdicts {
            let key = (v.verdict, v.service.clone(), v.netns, v.daddr, v.dport);
            match self.verdicts.get_mut(&key) {
                None => {
                    self.verdicts.insert(
                        key,
                        VerdictSummary {
                            peak: v.clone(),
                            peak_ns: now,
                            first_ns: now,
                            last_ns: now,
                            flagged_s: 1,
                        },
                    );
                }
                Some(e) => {
                    e.last_ns = now;
                    e.flagged_s += 1;
                    // The peak: most ports held, then the highest rate (a
                    // pair whose peer closes first holds none here).
                    // A leak's peak: most ports held.
                    let higher = (v.time_wait, v.held_ports, v.new_per_s)
                        > (e.peak.time_wait, e.peak.held_ports, e.peak.new_per_s);
                    // Call sites are counted over the whole run: the
                    // latest list has every sample, whatever the peak.
                    let sites = if v.call_sites.is_empty() {
                        std::mem::take(&mut e.peak.call_sites)
                    } else {
                        v.call_sites.clone()
                    };
                    if higher {
                        e.peak = v.clone();
                        e.peak_ns = now;
                    }
                    e.peak.call_sites = sites;
                }
            }
        }
    }

    /// The model shows the failures of its last minutes as counted so
    /// far: a later sample of a minute knows at least as much.
    fn merge_minutes(&mut self, minutes: &[MinuteFailures]) {
        for m in minutes {
            self.minutes.insert(m.minute, m.by_errno.clone());
        }
    }

    /// The summary, with the totals of the `last` model (at the end).
    pub fn finish(mut self, last: &Model) -> Summary {
        let sys = &last.system;
        self.merge_minutes(&sys.failure_minutes);
        self.s.hostname.clone_from(&sys.hostname);
        self.s.kernel.clone_from(&sys.kernel);
        self.s.clock = sys.clock;
        self.s.port_range = sys.port_range;
        self.s.budget = sys.budget;
        self.s.start_ns = last.start_ns;
        self.s.end_ns = last.start_ns.map(|_| last.now_ns);
        self.s.outbound = sys.outbound_total;
        self.s.inbound = sys.inbound_total;
        self.s.failures.clone_from(&sys.connect_errors);
        self.s.syn_retransmits = sys.syn_retransmits;
        self.s.losses = sys.losses;
        let mut services: Vec<ServiceSummary> = self.services.into_values().collect();
        services.sort_by(|a, b| {
            b.new_total()
                .cmp(&a.new_total())
                .then(b.peak_new_per_s.total_cmp(&a.peak_new_per_s))
                .then_with(|| a.service.cmp(&b.service))
        });
        let mut destinations: Vec<DestinationSummary> = self.destinations.into_values().collect();
        destinations.sort_by(|a, b| {
            b.peak_pressure
                .total_cmp(&a.peak_pressure)
                .then(b.new_total().cmp(&a.new_total()))
                .then_with(|| {
                    (a.daddr, a.dport, a.netns, a.laddr).cmp(&(b.daddr, b.dport, b.netns, b.laddr))
                })
        });
        let mut verdicts: Vec<VerdictSummary> = self.verdicts.into_values().collect();
        verdicts.sort_by(|a, b| {
            b.peak
                .time_wait
                .cmp(&a.peak.time_wait)
                .then(b.peak.new_per_s.total_cmp(&a.peak.new_per_s))
                .then_with(|| {
                    (&a.peak.service, a.peak.daddr, a.peak.dport, a.peak.netns).cmp(&(
                        &b.peak.service,
                        b.peak.daddr,
                        b.peak.dport,
                        b.peak.netns,
                    ))
                })
        });
        self.s.services = services;
        self.s.destinations = destinations;
        self.s.verdicts = verdicts;
        self.s.failure_minutes = self
            .minutes
            .into_iter()
            .map(|(minute, by_errno)| MinuteFailures { minute, by_errno })
            .collect();
        self.s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Config, Engine};
    use crate::event::{Cause, ConnectError, Event};
    use crate::input::Input;

    fn refused(ts_ns: u64, errno: i32) -> Input {
        Input::Event(Event::ConnectError(ConnectError {
            ts_ns,
            duration_ns: 1,
            task: None,
            netns: 0,
            daddr: "127.0.0.1".parse().unwrap(),
            dport: 80,
            errno,
            cause: Cause::Other,
            saw_syn_sent: false,
        }))
    }

    /// Failures by minute come from the models alone (the engine keeps
    /// the last minutes), exactly: one at a minute's first nanosecond
    /// belongs to that minute, and minutes long gone are still summed.
    #[test]
    fn failure_minutes_are_summed_from_sampled_models() {
        let mut e = Engine::new(Config::default());
        let mut s = Summarizer::default();
        // No host: minutes of the monotonic clock. Failures at 59.9 s,
        // 60 s exactly, and 5 minutes later.
        let failures = [
            (59_900_000_000, 111),
            (60 * NS_PER_S, 99),
            (60 * NS_PER_S, 99),
            (180 * NS_PER_S, 110),
            (240 * NS_PER_S, 110),
            (360 * NS_PER_S, 99),
        ];
        let mut sec = 1;
        for (ts, errno) in failures {
            while sec * NS_PER_S < ts {
                s.sample(&e.model(sec * NS_PER_S));
                sec += 1;
            }
            e.apply(&refused(ts, errno));
        }
        let last = e.model(e.now_ns());
        assert_eq!(last.system.failure_minutes.len(), 3, "the engine keeps 3");
        let got = s.finish(&last);
        let minutes: Vec<(i64, Vec<(i32, u64)>)> = got
            .failure_minutes
            .iter()
            .map(|m| (m.minute, m.by_errno.clone().into_iter().collect()))
            .collect();
        assert_eq!(
            minutes,
            [
                (0, vec![(111, 1)]),
                (1, vec![(99, 2)]),
                (3, vec![(110, 1)]),
                (4, vec![(110, 1)]),
                (6, vec![(99, 1)])
            ]
        );
        assert_eq!(got.failures.iter().map(|f| f.count).sum::<u64>(), 6);
        assert_eq!(got.start_ns, Some(59_900_000_000));
        assert_eq!(got.end_ns, Some(360 * NS_PER_S));
    }
}
