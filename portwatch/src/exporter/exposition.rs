//! From the series and the model to the exposition text, through
//! `prometheus-client`'s encoders (OpenMetrics and Prometheus text 0.0.4).
//!
//! [`families`] is a pure function: the same series, model and host
//! readings give the same text, so it is tested on synthetic models.

use std::collections::HashMap;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

use super::series::{DestLabels, LIFETIME_BUCKETS_S, Series, ServiceLabels};
use crate::engine::model::Model;
use crate::probe::ProgramStats;

/// Conntrack tables of namespaces other than the host's exposed at most.
const MAX_CONNTRACK_NETNS: usize = 32;

/// Host readings the engine does not model, read by the exporter at each
/// publication.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HostExtras {
    /// Per-program eBPF statistics, when `kernel.bpf_stats_enabled` is 1.
    pub programs: Option<Vec<ProgramStats>>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Counter(u64),
    CounterF(f64),
    Gauge(f64),
    /// Non-cumulative bucket counts (upper bound, count); the last bound
    /// is +Inf.
    Histogram {
        sum: f64,
        count: u64,
        buckets: Vec<(f64, u64)>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub labels: Vec<(&'static str, String)>,
    pub value: Value,
}

/// One metric family. `name` is the base name: the encoder appends the
/// unit and, for counters, `_total` (see [`Family::exposed_name`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub unit: Option<Unit>,
    pub kind: MetricType,
    pub samples: Vec<Sample>,
}

impl Family {
    /// The name as it appears in the exposition (and in PromQL).
    pub fn exposed_name(&self) -> String {
        let mut n = self.name.to_string();
        if let Some(u) = &self.unit {
            n = format!("{n}_{}", u.as_str());
        }
        if matches!(self.kind, MetricType::Counter) {
            n.push_str("_total");
        }
        n
    }

    /// Lines of samples this family adds to the exposition (a histogram
    /// sample is its buckets, `_sum` and `_count`): what Prometheus
    /// stores as series.
    pub fn series_count(&self) -> usize {
        self.samples
            .iter()
            .map(|s| match &s.value {
                Value::Histogram { buckets, .. } => buckets.len() + 2,
                _ => 1,
            })
            .sum()
    }
}

struct Builder(Vec<Family>);

impl Builder {
    fn family(
        &mut self,
        name: &'static str,
        unit: Option<Unit>,
        kind: MetricType,
        help: &'static str,
    ) -> &mut Vec<Sample> {
        self.0.push(Family {
            name,
            help,
            unit,
            kind,
            samples: Vec::new(),
        });
        &mut self.0.last_mut().expect("just pushed").samples
    }
}

fn pair_labels(s: &ServiceLabels, d: &DestLabels) -> Vec<(&'static str, String)> {
    vec![
        ("service", s.service.clone()),
        ("service_kind", s.service_kind.clone()),
        ("daddr", d.daddr.clone()),
        ("dport", d.dport.clone()),
        ("netns_name", d.netns_name.clone()),
    ]
}

fn sample(labels: Vec<(&'static str, String)>, value: Value) -> Sample {
    Sample { labels, value }
}

/// Every family the exporter publishes, in a fixed order, each listed even
/// when it has no samples yet.
pub fn families(series: &Series, model: &Model, extras: &HostExtras) -> Vec<Family> {
    use MetricType::{Counter, Gauge, Histogram};
    let mut b = Builder(Vec::new());
    let pairs = || {
        series
            .services
            .iter()
            .flat_map(|(s, ss)| ss.dests.iter().map(move |(d, p)| (s, d, p)))
    };

    // Per service -> destination.
    let f = b.family(
        "portwatch_connections_opened",
        None,
        Counter,
        "Outbound TCP connections started (counted when they close or fail), per service and destination.",
    );
    f.extend(pairs().map(|(s, d, p)| sample(pair_labels(s, d), Value::Counter(p.opened))));
    let f = b.family(
        "portwatch_connect_errors",
        None,
        Counter,
        "Failed outbound connects and failed handshakes, by errno and cause (port_exhaustion, address_unavailable, refused, timed_out, aborted, reset, unreachable, other; errno \"aborted\": the application gave up on the handshake, no errno).",
    );
    for (s, d, p) in pairs() {
        for ((errno, cause), n) in &p.errors {
            let mut l = pair_labels(s, d);
            l.push(("errno", errno.clone()));
            l.push(("cause", (*cause).to_string()));
            f.push(sample(l, Value::Counter(*n)));
        }
    }
    let f = b.family(
        "portwatch_syn_retransmits",
        None,
        Counter,
        "SYNs the kernel retransmitted for this service's connections to this destination (each one waited at least 1 s unanswered: drops on the path, a full backlog, NAT or conntrack out of room); a sample appears once there was one.",
    );
    f.extend(
        pairs()
            .filter(|(_, _, p)| p.syn_retransmits > 0)
            .map(|(s, d, p)| sample(pair_labels(s, d), Value::Counter(p.syn_retransmits))),
    );
    let f = b.family(
        "portwatch_connections_closed_locally",
        None,
        Counter,
        "Outbound connections this host closed first: each left a TIME_WAIT socket holding a local port for 60 s.",
    );
    f.extend(pairs().map(|(s, d, p)| sample(pair_labels(s, d), Value::Counter(p.closed_locally))));
    let f = b.family(
        "portwatch_time_wait_sockets",
        None,
        Gauge,
        "TIME_WAIT sockets this service's connections to this destination hold now.",
    );
    f.extend(pairs().map(|(s, d, p)| sample(pair_labels(s, d), Value::Gauge(p.time_wait as f64))));
    let f = b.family(
        "portwatch_lacks_pooling",
        None,
        Gauge,
        "1 when portwatch's verdict is that this service opens a new connection per request to this destination (no connection reuse), else 0.",
    );
    f.extend(pairs().map(|(s, d, p)| {
        sample(
            pair_labels(s, d),
            Value::Gauge(if p.lacks_pooling { 1.0 } else { 0.0 }),
        )
    }));

    // Per leaking service: from the model's verdicts (a few at most), the
    // CLOSE_WAIT sockets its processes hold, by where they hold most.
    let f = b.family(
        "portwatch_leaked_sockets",
        None,
        Gauge,
        "CLOSE_WAIT sockets held by processes of this service with the leaks_sockets verdict (the peer closed, the process never did), by the destination they hold most ports to.",
    );
    let range = model.system.port_range;
    let mut leaks: std::collections::BTreeMap<(ServiceLabels, DestLabels), u64> =
        Default::default();
    for v in model
        .verdicts
        .iter()
        .filter(|v| v.verdict == "leaks_sockets")
    {
        let key = (
            ServiceLabels::of(&v.service),
            DestLabels::of(v.daddr, v.dport, range, v.netns_name.as_deref()),
        );
        *leaks.entry(key).or_default() += v.close_wait.unwrap_or(0);
    }
    f.extend(
        leaks
            .iter()
            .map(|((s, d), n)| sample(pair_labels(s, d), Value::Gauge(*n as f64))),
    );

    // Per service.
    let f = b.family(
        "portwatch_connection_lifetime",
        Some(Unit::Seconds),
        Histogram,
        "Lifetime of established outbound connections, per service (decade buckets).",
    );
    for (s, ss) in &series.services {
        let bounds = LIFETIME_BUCKETS_S.iter().copied().chain([f64::INFINITY]);
        let buckets: Vec<(f64, u64)> = bounds.zip(ss.lifetime_buckets).collect();
        f.push(sample(
            vec![
                ("service", s.service.clone()),
                ("service_kind", s.service_kind.clone()),
            ],
            Value::Histogram {
                sum: ss.lifetime_sum_s,
                count: ss.lifetime_buckets.iter().sum(),
                buckets,
            },
        ));
    }

    // Per destination.
    let dest_labels = |d: &DestLabels| {
        vec![
            ("daddr", d.daddr.clone()),
            ("dport", d.dport.clone()),
            ("netns_name", d.netns_name.clone()),
        ]
    };
    let f = b.family(
        "portwatch_ports_held",
        None,
        Gauge,
        "Local ports held to this destination now from this network namespace (every live state: ESTABLISHED, SYN_SENT, FIN_WAIT, CLOSE_WAIT, LAST_ACK, CLOSING; and TIME_WAIT).",
    );
    f.extend(
        series
            .destinations
            .iter()
            .map(|g| sample(dest_labels(&g.labels), Value::Gauge(g.ports_held as f64))),
    );
    let f = b.family(
        "portwatch_port_budget",
        None,
        Gauge,
        "Ephemeral ports available per (local address, destination): the ephemeral range minus reserved ports of this network namespace (netns_name: each container and pod has its own).",
    );
    f.extend(
        series
            .destinations
            .iter()
            .map(|g| sample(dest_labels(&g.labels), Value::Gauge(g.port_budget as f64))),
    );
    let f = b.family(
        "portwatch_port_pressure_ratio",
        None,
        Gauge,
        "Ports held to this destination / port budget (1 = exhausted).",
    );
    f.extend(
        series
            .destinations
            .iter()
            .map(|g| sample(dest_labels(&g.labels), Value::Gauge(g.pressure))),
    );
    let f = b.family(
        "portwatch_exhaustion_forecast",
        Some(Unit::Seconds),
        Gauge,
        "Rough time until no port to this destination is free at the current close rate; absent when the steady state fits the budget.",
    );
    f.extend(series.destinations.iter().filter_map(|g| {
        g.exhaustion_forecast_s
            .map(|s| sample(dest_labels(&g.labels), Value::Gauge(s)))
    }));
    let f = b.family(
        "portwatch_nat_port_demand",
        None,
        Gauge,
        "NAT gateway ports this destination needs in steady state: new connections/s x (mean lifetime + --nat-hold-s); only for destinations beyond the host's own networks. Compare with the gateway's limit per public address and destination (AWS NAT gateway 55000).",
    );
    f.extend(series.destinations.iter().filter_map(|g| {
        g.nat_port_demand
            .map(|n| sample(dest_labels(&g.labels), Value::Gauge(n)))
    }));

    // Host.
    let sys = &model.system;
    let f = b.family(
        "portwatch_time_wait_recycled",
        None,
        Counter,
        "TIME_WAIT sockets reused for new connections (TcpExt TWRecycled, tcp_tw_reuse).",
    );
    f.extend(
        sys.counters
            .map(|c| sample(vec![], Value::Counter(c.tw_recycled))),
    );
    let f = b.family(
        "portwatch_time_wait_overflow",
        None,
        Counter,
        "TIME_WAIT sockets not created because tcp_max_tw_buckets was reached (TcpExt TCPTimeWaitOverflow).",
    );
    f.extend(
        sys.counters
            .map(|c| sample(vec![], Value::Counter(c.tw_overflow))),
    );
    let f = b.family(
        "portwatch_host_time_wait_sockets",
        None,
        Gauge,
        "TIME_WAIT sockets on the host (/proc/net/sockstat, summed over every network namespace portwatch read).",
    );
    f.extend(
        sys.sockstat_tw
            .map(|n| sample(vec![], Value::Gauge(n as f64))),
    );
    let f = b.family(
        "portwatch_ephemeral_port_range_first",
        None,
        Gauge,
        "First port of net.ipv4.ip_local_port_range (portwatch's own network namespace).",
    );
    f.extend(
        sys.port_range
            .map(|r| sample(vec![], Value::Gauge(r.0.into()))),
    );
    let f = b.family(
        "portwatch_ephemeral_port_range_last",
        None,
        Gauge,
        "Last port of net.ipv4.ip_local_port_range (portwatch's own network namespace).",
    );
    f.extend(
        sys.port_range
            .map(|r| sample(vec![], Value::Gauge(r.1.into()))),
    );
    let f = b.family(
        "portwatch_ephemeral_ports",
        None,
        Gauge,
        "Ports of the ephemeral range not reserved (ip_local_reserved_ports): the budget per destination.",
    );
    f.extend(sys.budget.map(|n| sample(vec![], Value::Gauge(n as f64))));
    // Conntrack tables: the host's, and other namespaces' that are in use
    // (a pod's namespace usually tracks nothing: its traffic is tracked in
    // the host's), at most MAX_CONNTRACK_NETNS of them.
    let tables: Vec<_> = model
        .namespaces
        .iter()
        .filter_map(|n| n.conntrack.as_ref())
        .filter(|c| {
            c.host
                || c.count > 0
                || c.stats
                    .is_some_and(|s| s.drop + s.early_drop + s.insert_failed > 0)
        })
        .take(MAX_CONNTRACK_NETNS)
        .collect();
    let netns_label =
        |c: &crate::engine::netns::ConntrackRow| vec![("netns_name", c.netns_name.clone())];
    let f = b.family(
        "portwatch_conntrack_entries",
        None,
        Gauge,
        "Connection tracking entries (nf_conntrack_count) per network namespace (`host` for portwatch's own), where conntrack is loaded.",
    );
    f.extend(
        tables
            .iter()
            .map(|c| sample(netns_label(c), Value::Gauge(c.count as f64))),
    );
    let f = b.family(
        "portwatch_conntrack_entries_limit",
        None,
        Gauge,
        "Connection tracking limit per namespace (nf_conntrack_max, one value for the whole host), where conntrack is loaded.",
    );
    f.extend(
        tables
            .iter()
            .find_map(|c| c.max)
            .map(|m| sample(vec![], Value::Gauge(m as f64))),
    );
    let f = b.family(
        "portwatch_conntrack_failures",
        None,
        Counter,
        "Connection tracking entries turned away per namespace, by kind (/proc/net/stat/nf_conntrack summed over CPUs): drop (table full, nothing evictable: the packet was dropped), early_drop (an entry evicted to make room), insert_failed.",
    );
    for c in &tables {
        if let Some(st) = c.stats {
            for (kind, n) in [
                ("drop", st.drop),
                ("early_drop", st.early_drop),
                ("insert_failed", st.insert_failed),
            ] {
                let mut l = netns_label(c);
                l.push(("kind", kind.into()));
                f.push(sample(l, Value::Counter(n)));
            }
        }
    }

    // portwatch itself.
    let f = b.family(
        "portwatch_events",
        None,
        Counter,
        "Events (closed connections and failed connects) the engine received.",
    );
    f.push(sample(vec![], Value::Counter(sys.events_total)));
    let f = b.family(
        "portwatch_events_lost",
        None,
        Counter,
        "Events lost, by reason: ringbuf_full, sock_map_evicted, connect_untracked, undecodable, probe_error (a kernel read refused while building a record), kernel_skipped (a tracepoint run the kernel skipped while another BPF program ran on that CPU).",
    );
    // Destructured: a new kind of loss does not compile until it has a reason.
    let crate::event::Losses {
        ringbuf_lost,
        sock_evicted,
        connect_untracked,
        decode_errors,
        probe_errors,
        kernel_missed,
    } = sys.losses;
    for (reason, n) in [
        ("ringbuf_full", ringbuf_lost),
        ("sock_map_evicted", sock_evicted),
        ("connect_untracked", connect_untracked),
        ("undecodable", decode_errors),
        ("probe_error", probe_errors),
        ("kernel_skipped", kernel_missed),
    ] {
        f.push(sample(vec![("reason", reason.into())], Value::Counter(n)));
    }
    let programs = extras.programs.as_deref().unwrap_or_default();
    let f = b.family(
        "portwatch_bpf_run_time",
        Some(Unit::Seconds),
        Counter,
        "CPU time spent in portwatch's eBPF programs (kernel statistics; only while kernel.bpf_stats_enabled=1).",
    );
    f.extend(programs.iter().map(|p| {
        sample(
            vec![("program", p.program.clone())],
            Value::CounterF(p.run_time_ns as f64 / 1e9),
        )
    }));
    let f = b.family(
        "portwatch_bpf_runs",
        None,
        Counter,
        "Runs of portwatch's eBPF programs (kernel statistics; only while kernel.bpf_stats_enabled=1).",
    );
    f.extend(programs.iter().map(|p| {
        sample(
            vec![("program", p.program.clone())],
            Value::Counter(p.run_count),
        )
    }));
    let f = b.family(
        "portwatch_build_info",
        None,
        Gauge,
        "Always 1; the labels say which portwatch this is.",
    );
    f.push(sample(
        vec![("version", env!("CARGO_PKG_VERSION").into())],
        Value::Gauge(1.0),
    ));
    let mut fams = b.0;
    let total: usize = fams.iter().map(Family::series_count).sum::<usize>() + 1;
    fams.push(Family {
        name: "portwatch_exporter_series",
        help: "Series in this exposition, this one included (bounded by --max-services and --max-destinations).",
        unit: None,
        kind: Gauge,
        samples: vec![sample(vec![], Value::Gauge(total as f64))],
    });
    fams
}

/// The exposition formats a scraper can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    /// Prometheus text 0.0.4 (what `promtool check metrics` reads).
    Prometheus,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }
}

/// The families as a `prometheus-client` collector.
#[derive(Debug)]
struct Collect(Vec<Family>);

impl prometheus_client::collector::Collector for Collect {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for fam in &self.0 {
            let mut m =
                encoder.encode_descriptor(fam.name, fam.help, fam.unit.as_ref(), fam.kind)?;
            for s in &fam.samples {
                let e = m.encode_family(&s.labels)?;
                match &s.value {
                    Value::Counter(v) => ConstCounter::new(*v).encode(e)?,
                    Value::CounterF(v) => ConstCounter::new(*v).encode(e)?,
                    Value::Gauge(v) => ConstGauge::new(*v).encode(e)?,
                    Value::Histogram {
                        sum,
                        count,
                        buckets,
                    } => {
                        let mut e = e;
                        e.encode_histogram::<NoLabelSet>(
                            *sum,
                            *count,
                            buckets,
                            None::<&HashMap<usize, _>>,
                        )?
                    }
                }
            }
        }
        Ok(())
    }
}

/// The exposition text of `families` in `format`.
pub fn encode(families: Vec<Family>, format: Format) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Collect(families)));
    let mut out = String::new();
    let r = match format {
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry),
        Format::Prometheus => {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
        }
    };
    // Writing to a String cannot fail; an error would be an encoder bug
    // (e.g. an invalid name), which the tests would catch.
    r.expect("encoding to a String");
    out
}
