//! `report --json`: one object (fields: see the module documentation of
//! [`super`]).

use std::io::{self, Write};

use serde::Serialize;

use super::{Report, minute_utc};
use crate::engine::{Closer, ErrnoCount};
use crate::errno;
use crate::render::batch::{ServiceRef, VerdictJson, service_ref, verdict_json};

#[derive(Serialize)]
struct ReportJson<'a> {
    file: &'a str,
    host: HostJson<'a>,
    span: SpanJson,
    connections: ConnectionsJson,
    peak: PeakJson,
    services: Vec<ServiceSummaryJson<'a>>,
    destinations: Vec<DestinationSummaryJson<'a>>,
    failures: FailuresJson<'a>,
    conntrack: Option<ConntrackJson<'a>>,
    verdicts: Vec<VerdictSummaryJson<'a>>,
    lost_events: LostJson,
    warnings: &'a [String],
    complete: bool,
}

#[derive(Serialize)]
struct ConntrackJson<'a> {
    netns_name: &'a str,
    count: u64,
    max: Option<u64>,
    fill: Option<f64>,
    turned_away_per_sec: f64,
    at: Option<String>,
}

#[derive(Serialize)]
struct HostJson<'a> {
    hostname: &'a str,
    kernel: &'a str,
    port_range: Option<(u16, u16)>,
    budget: Option<u64>,
}

#[derive(Serialize)]
struct SpanJson {
    start: Option<String>,
    end: Option<String>,
    duration_s: f64,
    inputs: u64,
}

#[derive(Serialize)]
struct ConnectionsJson {
    outbound: u64,
    inbound: u64,
}

#[derive(Serialize)]
struct PeakJson {
    new_per_sec_1s: f64,
    new_per_sec_1s_at: Option<String>,
    new_per_sec: f64,
    new_per_sec_at: Option<String>,
}

#[derive(Serialize)]
struct ServiceSummaryJson<'a> {
    #[serde(flatten)]
    service: ServiceRef<'a>,
    new_total: u64,
    peak_new_per_sec: f64,
    lifetime_p50_ms: Option<f64>,
    closed_locally_share: Option<f64>,
    connect_errors: u64,
}

#[derive(Serialize)]
struct DestinationSummaryJson<'a> {
    netns: Option<u32>,
    netns_name: Option<&'a str>,
    laddr: Option<String>,
    daddr: String,
    dport: u16,
    new_total: u64,
    peak_new_per_sec: f64,
    peak_held_ports: u64,
    peak_time_wait: u64,
    budget: u64,
    peak_pressure: f64,
    peak_pressure_at: Option<String>,
    closer: Closer,
    connect_errors: u64,
    syn_retransmits: u64,
    peak_nat_port_demand: Option<f64>,
}

#[derive(Serialize)]
struct FailuresJson<'a> {
    total: u64,
    syn_retransmits: u64,
    by_errno: &'a [ErrnoCount],
    minutes: Vec<MinuteJson>,
}

#[derive(Serialize)]
struct MinuteJson {
    minute: String,
    total: u64,
    by_errno: Vec<ErrnoCount>,
}

#[derive(Serialize)]
struct VerdictSummaryJson<'a> {
    #[serde(flatten)]
    verdict: VerdictJson<'a>,
    peak_at: Option<String>,
    first_seen: Option<String>,
    last_seen: Option<String>,
    flagged_s: u64,
}

#[derive(Serialize)]
struct LostJson {
    total: u64,
    ringbuf_lost: u64,
    sock_evicted: u64,
    connect_untracked: u64,
    decode_errors: u64,
    probe_errors: u64,
    kernel_missed: u64,
}

fn json(r: &Report, rows: usize) -> ReportJson<'_> {
    let at = |ns: u64| r.clock.map(|_| r.time(ns));
    let columns = r.errno_columns();
    ReportJson {
        file: &r.file,
        host: HostJson {
            hostname: &r.hostname,
            kernel: &r.kernel,
            port_range: r.port_range,
            budget: r.budget,
        },
        span: SpanJson {
            start: r.start_ns.and_then(at),
            end: r.end_ns.and_then(at),
            duration_s: r.duration_s(),
            inputs: r.inputs,
        },
        connections: ConnectionsJson {
            outbound: r.outbound,
            inbound: r.inbound,
        },
        peak: PeakJson {
            new_per_sec_1s: r.peak_1s.0,
            new_per_sec_1s_at: (r.peak_1s.0 > 0.0).then(|| at(r.peak_1s.1)).flatten(),
            new_per_sec: r.peak_10s.0,
            new_per_sec_at: (r.peak_10s.0 > 0.0).then(|| at(r.peak_10s.1)).flatten(),
        },
        services: r
            .services
            .iter()
            .take(rows)
            .map(|s| ServiceSummaryJson {
                service: service_ref(&s.service, &s.pids),
                new_total: s.new_total(),
                peak_new_per_sec: s.peak_new_per_s,
                lifetime_p50_ms: s.lifetime_p50_ms,
                closed_locally_share: s.closed_locally_share,
                connect_errors: s.connect_errors(),
            })
            .collect(),
        destinations: r
            .destinations
            .iter()
            .take(rows)
            .map(|d| DestinationSummaryJson {
                netns: d.netns,
                netns_name: d.netns_name.as_deref(),
                laddr: d.laddr.map(|a| a.to_string()),
                daddr: d.daddr.to_string(),
                dport: d.dport,
                new_total: d.new_total(),
                peak_new_per_sec: d.peak_new_per_s,
                peak_held_ports: d.peak_held_ports,
                peak_time_wait: d.peak_time_wait,
                budget: d.budget,
                peak_pressure: d.peak_pressure,
                peak_pressure_at: (d.peak_pressure > 0.0)
                    .then(|| at(d.peak_pressure_ns))
                    .flatten(),
                closer: d.closer,
                connect_errors: d.connect_errors(),
                syn_retransmits: d.syn_retransmits(),
                peak_nat_port_demand: d.peak_nat_port_demand,
            })
            .collect(),
        conntrack: r.conntrack_peak.as_ref().map(|c| ConntrackJson {
            netns_name: &c.netns_name,
            count: c.count,
            max: c.max,
            fill: c.fill,
            turned_away_per_sec: c.turned_away_per_s,
            at: at(c.at_ns),
        }),
        failures: FailuresJson {
            total: r.failures.iter().map(|c| c.count).sum(),
            syn_retransmits: r.syn_retransmits,
            by_errno: &r.failures,
            minutes: r
                .failure_minutes
                .iter()
                .map(|m| MinuteJson {
                    minute: minute_utc(m.minute),
                    total: m.by_errno.values().sum(),
                    by_errno: columns
                        .iter()
                        .filter_map(|e| {
                            m.by_errno.get(e).map(|&n| ErrnoCount {
                                errno: *e,
                                name: errno::name(*e),
                                count: n,
                            })
                        })
                        .collect(),
                })
                .collect(),
        },
        verdicts: r
            .verdicts
            .iter()
            .map(|v| VerdictSummaryJson {
                verdict: verdict_json(&v.peak),
                peak_at: at(v.peak_ns),
                first_seen: at(v.first_ns),
                last_seen: at(v.last_ns),
                flagged_s: v.flagged_s,
            })
            .collect(),
        lost_events: LostJson {
            total: r.losses.total(),
            ringbuf_lost: r.losses.ringbuf_lost,
            sock_evicted: r.losses.sock_evicted,
            connect_untracked: r.losses.connect_untracked,
            decode_errors: r.losses.decode_errors,
            probe_errors: r.losses.probe_errors,
            kernel_missed: r.losses.kernel_missed,
        },
        warnings: &r.warnings,
        complete: r.complete,
    }
}

/// One JSON object, pretty-printed (one report per run: meant to be read
/// and diffed as well as parsed), then a newline.
pub fn write_json(out: &mut impl Write, r: &Report, rows: usize) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, &json(r, rows))?;
    out.write_all(b"\n")
}
