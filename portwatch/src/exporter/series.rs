//! The series the exporter publishes, kept from one model to the next.
//!
//! The engine's numbers are cumulative per key, and its keys come and go
//! (idle keys age out, full tables fold). Prometheus wants counters that
//! only go up per series and a bounded number of series. So the exporter
//! keeps its own series: each model is turned into per-key increases since
//! the previous model (a key that vanished and came back starts again from
//! zero), and the increases are added to the series the key maps to now:
//! its own, or the service's `daddr="~other"` series once the service has
//! `max_destinations` of its own. A series idle for `grace_s` is dropped,
//! which frees its slot.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::clock::NS_PER_S;
use crate::engine::hash::{FxHashMap, FxHashSet};
use crate::engine::model::{Model, PairRow, ServiceRow, Stats};
use crate::engine::service::ServiceId;
use crate::event::EADDRNOTAVAIL;

/// The label value of folded services, destinations and ports.
pub const OTHER: &str = "~other";
/// The `dport` of destinations whose port lies in this host's ephemeral
/// range (a peer's ephemeral port says nothing about the service).
pub const EPHEMERAL: &str = "ephemeral";
/// Upper bounds of the lifetime histogram's buckets, in seconds: the
/// engine's decades (`Stats::lifetime_buckets`), then +Inf.
pub const LIFETIME_BUCKETS_S: [f64; 5] = [0.001, 0.01, 0.1, 1.0, 10.0];

/// Cardinality bounds (the `portwatch exporter` flags).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Destinations with series of their own, per service; the rest are
    /// folded into `daddr="~other"`. Also the number of destinations with
    /// per-destination gauges.
    pub max_destinations: usize,
    /// Services with series of their own; the rest are folded into
    /// `service="~other"`.
    pub max_services: usize,
    /// Seconds without any change after which a series is dropped.
    pub grace_s: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_destinations: 20,
            max_services: 20,
            grace_s: 300,
        }
    }
}

/// `service` and `service_kind` label values.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceLabels {
    pub service: String,
    pub service_kind: String,
}

impl ServiceLabels {
    pub(crate) fn of(id: &ServiceId) -> Self {
        ServiceLabels {
            service: id.name.clone(),
            service_kind: id.kind.as_str().to_string(),
        }
    }

    fn other() -> Self {
        ServiceLabels {
            service: OTHER.into(),
            service_kind: OTHER.into(),
        }
    }

    fn is_other(&self) -> bool {
        self.service == OTHER
    }
}

/// `daddr`, `dport` and `netns_name` label values: a destination as seen
/// from one network namespace (each has its own ports and budget).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DestLabels {
    pub daddr: String,
    pub dport: String,
    /// `host`, the pod/container/unit, `netns:INODE`; empty (no label)
    /// where unknown.
    pub netns_name: String,
}

impl DestLabels {
    /// The labels of a destination, its port folded when it lies in the
    /// ephemeral range.
    pub fn of(
        daddr: IpAddr,
        dport: u16,
        range: Option<(u16, u16)>,
        netns_name: Option<&str>,
    ) -> Self {
        let ephemeral = range.is_some_and(|(lo, hi)| (lo..=hi).contains(&dport));
        DestLabels {
            daddr: daddr.to_string(),
            dport: if ephemeral {
                EPHEMERAL.into()
            } else {
                dport.to_string()
            },
            netns_name: netns_name.unwrap_or_default().to_string(),
        }
    }

    pub fn other() -> Self {
        DestLabels {
            daddr: OTHER.into(),
            dport: OTHER.into(),
            netns_name: OTHER.into(),
        }
    }

    fn is_other(&self) -> bool {
        self.daddr == OTHER
    }
}

/// Failed connects of one (errno, cause).
pub type ErrorKey = (String, &'static str);

/// One service → destination series.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PairSeries {
    pub opened: u64,
    pub closed_locally: u64,
    pub errors: BTreeMap<ErrorKey, u64>,
    /// SYNs retransmitted (its sample appears once there was one).
    pub syn_retransmits: u64,
    /// Gauges, set from the latest model.
    pub time_wait: u64,
    pub lacks_pooling: bool,
    last_active_ns: u64,
}

/// One service: its lifetime histogram and its destinations.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServiceSeries {
    /// Counts per bucket of [`LIFETIME_BUCKETS_S`] plus the +Inf one (not
    /// cumulative).
    pub lifetime_buckets: [u64; 6],
    pub lifetime_sum_s: f64,
    pub dests: BTreeMap<DestLabels, PairSeries>,
    last_active_ns: u64,
}

impl ServiceSeries {
    fn own_dests(&self) -> usize {
        self.dests.keys().filter(|d| !d.is_other()).count()
    }
}

/// The cumulative numbers of one engine key at the previous model.
#[derive(Clone, Debug, Default)]
struct PairTotals {
    opened: u64,
    closed_locally: u64,
    errors: Vec<(ErrorKey, u64)>,
    syn_retransmits: u64,
    seen: u64,
}

#[derive(Clone, Debug, Default)]
struct ServiceTotals {
    buckets: [u64; 6],
    sum_s: f64,
    seen: u64,
}

/// Per-destination gauges (host-wide, not per service).
#[derive(Clone, Debug, PartialEq)]
pub struct DestGauges {
    pub labels: DestLabels,
    pub ports_held: u64,
    pub port_budget: u64,
    pub pressure: f64,
    pub exhaustion_forecast_s: Option<f64>,
    /// NAT gateway ports needed (the highest under one label).
    pub nat_port_demand: Option<f64>,
}

/// A service's pair: (netns, remote address, remote port).
type PairKey = (Option<u32>, IpAddr, u16);

/// The exporter's series, fed one model at a time.
#[derive(Debug, Default)]
pub struct Series {
    limits: Limits,
    pub services: BTreeMap<ServiceLabels, ServiceSeries>,
    /// Per-destination gauges of the latest model (at most
    /// `max_destinations` plus `~other`).
    pub destinations: Vec<DestGauges>,
    /// By service, then (netns, destination): looked up by reference, so a
    /// model's thousands of pairs cost no key clones.
    pair_prev: FxHashMap<ServiceId, FxHashMap<PairKey, PairTotals>>,
    service_prev: FxHashMap<ServiceId, ServiceTotals>,
    /// Generation of the current model, to forget keys the engine dropped.
    generation: u64,
}

/// Failed connects of a key by (errno name, cause). EADDRNOTAVAIL is split
/// by what the kernel saw: port exhaustion, or another unavailable address.
fn errors_of(s: &Stats) -> Vec<(ErrorKey, u64)> {
    let mut out = Vec::with_capacity(s.connect_errors.len());
    for e in &s.connect_errors {
        if e.errno == EADDRNOTAVAIL {
            let exhausted = s.port_exhaustion_total.min(e.count);
            if exhausted > 0 {
                out.push(((e.name.clone(), "port_exhaustion"), exhausted));
            }
            if e.count > exhausted {
                out.push(((e.name.clone(), "address_unavailable"), e.count - exhausted));
            }
        } else {
            out.push((
                (e.name.clone(), crate::output::handshake_cause(e.errno)),
                e.count,
            ));
        }
    }
    out
}

/// Increase of a cumulative count since the previous model; a count that
/// went down belongs to a key that was dropped and came back.
fn increase(now: u64, prev: u64) -> u64 {
    if now >= prev { now - prev } else { now }
}

impl Series {
    pub fn new(limits: Limits) -> Series {
        Series {
            limits,
            ..Series::default()
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Folds one model into the series.
    pub fn observe(&mut self, model: &Model) {
        self.generation += 1;
        let now_ns = model.now_ns;
        let range = model.system.port_range;
        for s in self.services.values_mut() {
            for p in s.dests.values_mut() {
                p.time_wait = 0;
                p.lacks_pooling = false;
            }
        }
        for row in &model.services {
            self.observe_service(row, now_ns);
        }
        let flagged: FxHashSet<(&ServiceId, Option<u32>, IpAddr, u16)> = model
            .verdicts
            .iter()
            .filter(|v| v.verdict == "lacks_pooling")
            .map(|v| (&v.service, v.netns, v.daddr, v.dport))
            .collect();
        // Flagged pairs first, so that a pair that lacks pooling gets a
        // series of its own when a slot is free; then the busiest.
        let mut pairs: Vec<(&PairRow, bool)> = model
            .pairs
            .iter()
            .map(|p| {
                (
                    p,
                    flagged.contains(&(&p.service, p.netns, p.daddr, p.dport)),
                )
            })
            .collect();
        pairs.sort_by_key(|(_, f)| !f);
        // Services found folded into ~other in this model: their pairs
        // skip the label work (most pairs, at the cap).
        let mut folded = FxHashSet::default();
        for (row, flagged) in pairs {
            self.observe_pair(row, flagged, range, now_ns, &mut folded);
        }
        let generation = self.generation;
        self.pair_prev.retain(|_, m| {
            m.retain(|_, t| t.seen == generation);
            !m.is_empty()
        });
        self.service_prev.retain(|_, t| t.seen == generation);
        self.expire(now_ns);
        self.destinations = dest_gauges(model, self.limits.max_destinations);
    }

    /// The service's series, created when a slot is free, else `~other`.
    fn service_slot(&mut self, labels: ServiceLabels, now_ns: u64) -> ServiceLabels {
        if self.services.contains_key(&labels) {
            return labels;
        }
        let own = self.services.keys().filter(|l| !l.is_other()).count();
        let labels = if own < self.limits.max_services {
            labels
        } else {
            ServiceLabels::other()
        };
        self.services
            .entry(labels.clone())
            .or_insert_with(|| ServiceSeries {
                last_active_ns: now_ns,
                ..ServiceSeries::default()
            });
        labels
    }

    fn observe_service(&mut self, row: &ServiceRow, now_ns: u64) {
        let mut buckets = [0u64; 6];
        for (b, (_, n)) in buckets.iter_mut().zip(&row.stats.lifetime_buckets) {
            *b = *n;
        }
        let sum_s = row.stats.lifetime_sum_s;
        let generation = self.generation;
        let prev = self.service_prev.entry(row.service.clone()).or_default();
        let dropped = buckets.iter().zip(&prev.buckets).any(|(n, p)| n < p);
        let base = if dropped {
            ServiceTotals::default()
        } else {
            prev.clone()
        };
        *prev = ServiceTotals {
            buckets,
            sum_s,
            seen: generation,
        };
        let delta: Vec<u64> = buckets
            .iter()
            .zip(&base.buckets)
            .map(|(n, p)| n - p)
            .collect();
        if delta.iter().all(|&d| d == 0) {
            return;
        }
        let labels = self.service_slot(ServiceLabels::of(&row.service), now_ns);
        let s = self.services.get_mut(&labels).expect("slot exists");
        for (b, d) in s.lifetime_buckets.iter_mut().zip(&delta) {
            *b += d;
        }
        s.lifetime_sum_s += (sum_s - base.sum_s).max(0.0);
        s.last_active_ns = now_ns;
    }

    fn observe_pair<'m>(
        &mut self,
        row: &'m PairRow,
        flagged: bool,
        range: Option<(u16, u16)>,
        now_ns: u64,
        folded: &mut FxHashSet<&'m ServiceId>,
    ) {
        let totals = PairTotals {
            opened: row.stats.new_total,
            closed_locally: row.stats.local_closes_total,
            errors: errors_of(&row.stats),
            syn_retransmits: row.stats.syn_retransmits,
            seen: self.generation,
        };
        let per_service = match self.pair_prev.get_mut(&row.service) {
            Some(m) => m,
            None => self.pair_prev.entry(row.service.clone()).or_default(),
        };
        let key = (row.netns, row.daddr, row.dport);
        let prev = per_service.insert(key, totals).unwrap_or_default();
        let totals = &per_service[&key];
        let opened = increase(totals.opened, prev.opened);
        let closed_locally = increase(totals.closed_locally, prev.closed_locally);
        let syn_retransmits = increase(totals.syn_retransmits, prev.syn_retransmits);
        let errors: Vec<(ErrorKey, u64)> = totals
            .errors
            .iter()
            .map(|(k, n)| {
                let p = prev
                    .errors
                    .iter()
                    .find(|(pk, _)| pk == k)
                    .map_or(0, |e| e.1);
                (k.clone(), increase(*n, p))
            })
            .filter(|(_, d)| *d > 0)
            .collect();
        let active = opened > 0
            || closed_locally > 0
            || syn_retransmits > 0
            || !errors.is_empty()
            || row.stats.time_wait > 0
            || flagged;
        let is_folded = folded.contains(&row.service);
        let (svc_labels, own) = if is_folded {
            (ServiceLabels::other(), DestLabels::other())
        } else {
            (
                ServiceLabels::of(&row.service),
                DestLabels::of(row.daddr, row.dport, range, row.netns_name.as_deref()),
            )
        };
        let known = self
            .services
            .get(&svc_labels)
            .is_some_and(|s| s.dests.contains_key(&own));
        if !active && !known {
            // Nothing to say, and no series to keep up to date.
            return;
        }
        let svc_labels = if is_folded {
            svc_labels
        } else {
            self.service_slot(svc_labels, now_ns)
        };
        if svc_labels.is_other() {
            folded.insert(&row.service);
        }
        let max_dests = self.limits.max_destinations;
        let s = self.services.get_mut(&svc_labels).expect("slot exists");
        let dest = if svc_labels.is_other() {
            DestLabels::other()
        } else if s.dests.contains_key(&own) || s.own_dests() < max_dests {
            own
        } else {
            DestLabels::other()
        };
        let p = s.dests.entry(dest).or_insert_with(|| PairSeries {
            last_active_ns: now_ns,
            ..PairSeries::default()
        });
        p.opened += opened;
        p.closed_locally += closed_locally;
        p.syn_retransmits += syn_retransmits;
        for (k, d) in errors {
            *p.errors.entry(k).or_default() += d;
        }
        p.time_wait += row.stats.time_wait;
        p.lacks_pooling |= flagged;
        if active {
            p.last_active_ns = now_ns;
            s.last_active_ns = s.last_active_ns.max(now_ns);
        }
    }

    /// Drops series idle for longer than the grace period.
    fn expire(&mut self, now_ns: u64) {
        let cutoff = now_ns.saturating_sub(self.limits.grace_s * NS_PER_S);
        for s in self.services.values_mut() {
            s.dests.retain(|_, p| p.last_active_ns >= cutoff);
        }
        self.services
            .retain(|_, s| !s.dests.is_empty() || s.last_active_ns >= cutoff);
    }

    /// Service → destination series (each is 4 samples, plus one per
    /// errno and cause seen).
    pub fn pair_count(&self) -> usize {
        self.services.values().map(|s| s.dests.len()).sum()
    }
}

/// Gauges of the destinations under the most pressure, the rest folded
/// into `~other` with the highest values among them (so an alert on
/// pressure still fires for a folded destination).
fn dest_gauges(model: &Model, max: usize) -> Vec<DestGauges> {
    let range = model.system.port_range;
    let mut out: Vec<DestGauges> = Vec::new();
    let mut other: Option<DestGauges> = None;
    // Already sorted by pressure, highest first.
    let ephemeral = |port: u16| range.is_some_and(|(lo, hi)| (lo..=hi).contains(&port));
    for d in &model.destinations {
        // Destinations are distinct: once the slots are full only a folded
        // ephemeral port can share a label, so the rest skip the labels.
        if out.len() >= max && !ephemeral(d.dport) {
            let o = other.get_or_insert_with(|| DestGauges {
                labels: DestLabels::other(),
                ports_held: 0,
                port_budget: d.budget,
                pressure: 0.0,
                exhaustion_forecast_s: None,
                nat_port_demand: None,
            });
            o.ports_held = o.ports_held.max(d.held_ports);
            o.nat_port_demand = max_opt(o.nat_port_demand, d.nat_port_demand);
            o.pressure = o.pressure.max(d.pressure);
            o.exhaustion_forecast_s =
                min_forecast(o.exhaustion_forecast_s, d.forecast.exhaustion_in_s);
            continue;
        }
        let labels = DestLabels::of(d.daddr, d.dport, range, d.netns_name.as_deref());
        let g = DestGauges {
            labels: labels.clone(),
            ports_held: d.held_ports,
            port_budget: d.budget,
            pressure: d.pressure,
            exhaustion_forecast_s: d.forecast.exhaustion_in_s,
            nat_port_demand: d.nat_port_demand,
        };
        let pos = match out.iter().position(|o| o.labels == labels) {
            Some(i) => Some(i),
            None if out.len() < max => {
                out.push(DestGauges {
                    ports_held: 0,
                    pressure: 0.0,
                    exhaustion_forecast_s: None,
                    nat_port_demand: None,
                    ..g.clone()
                });
                Some(out.len() - 1)
            }
            None => None,
        };
        let into = match pos {
            Some(i) => &mut out[i],
            None => other.get_or_insert_with(|| DestGauges {
                labels: DestLabels::other(),
                ports_held: 0,
                port_budget: g.port_budget,
                pressure: 0.0,
                exhaustion_forecast_s: None,
                nat_port_demand: None,
            }),
        };
        // Several destinations under one label (ephemeral ports, ~other):
        // the worst of them.
        into.ports_held = into.ports_held.max(g.ports_held);
        into.pressure = into.pressure.max(g.pressure);
        into.exhaustion_forecast_s =
            min_forecast(into.exhaustion_forecast_s, g.exhaustion_forecast_s);
        into.nat_port_demand = max_opt(into.nat_port_demand, g.nat_port_demand);
    }
    out.extend(other);
    out
}

/// The larger of two figures, either possibly absent.
fn max_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// The sooner of two forecasts (absent: no exhaustion foreseen).
fn min_forecast(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
