//! `portwatch report`: the incident summary of a trace, as text for people
//! (no escape codes: it goes into tickets) or one JSON object.
//!
//! [`ReportBuilder`] is fed the trace's inputs (for the failures timeline)
//! and the engine's model sampled every second of trace time (for peaks
//! and verdicts); it keeps only per-key aggregates, so memory does not grow
//! with the length of the trace. Everything is ordered explicitly: the same
//! file always gives the same bytes.
//!
//! # JSON fields (`--json`, one object, stable)
//!
//! - `host`: `{hostname, kernel, port_range, budget}`.
//! - `span`: `{start, end}` (RFC 3339 UTC, from the host's wall-clock
//!   anchor), `duration_s`, `inputs` (records read).
//! - `connections`: `{outbound, inbound}`: connections seen.
//! - `peak`: `{new_per_sec_1s, new_per_sec_1s_at, new_per_sec, new_per_sec_at}`:
//!   highest outbound rate over one second and over 10 s, and when (start of
//!   the second, or end of the 10 s window).
//! - `services` (by connections, descending): `[{name, kind, pids, new_total,
//!   peak_new_per_sec, lifetime_p50_ms, closed_locally_share, connect_errors}]`.
//! - `destinations` (by peak pressure, descending): `[{daddr, dport,
//!   new_total, peak_new_per_sec, peak_held_ports, peak_time_wait, budget,
//!   peak_pressure, peak_pressure_at, closer}]`; `peak_pressure` = held ports /
//!   budget at its highest: the peak share of the port budget.
//! - `failures`: `{total, by_errno: [{errno, name, count}], minutes: [{minute,
//!   total, by_errno}]}`, EADDRNOTAVAIL first; only minutes with failures.
//! - `verdicts`: every pair flagged at least once: the fields of `top --batch
//!   --json` verdicts at the pair's peak (most TIME_WAIT, then highest rate),
//!   plus `peak_at`, `first_seen`, `last_seen` and `flagged_s` (seconds of
//!   trace time the verdict held).
//! - `lost_events`: `{total, ringbuf_lost, sock_evicted, connect_untracked,
//!   decode_errors, probe_errors}` (cumulative, as last recorded).
//! - `warnings`: what the reader skipped or where it stopped (with the byte
//!   offset); `complete`: false when reading stopped at an error.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::net::IpAddr;

use serde::Serialize;

use crate::clock::WallClock;
use crate::engine::service::ServiceId;
use crate::engine::verdict::fmt_addr;
use crate::engine::{Closer, ErrnoCount, Model, Verdict};
use crate::errno;
use crate::event::{Direction, EADDRNOTAVAIL, Event, Losses};
use crate::input::Input;
use crate::render::batch::{ServiceRef, VerdictJson, service_ref, verdict_json};

use crate::clock::NS_PER_S;

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

#[derive(Clone, Debug, PartialEq)]
pub struct DestinationSummary {
    pub daddr: IpAddr,
    pub dport: u16,
    new_total: Total,
    pub peak_new_per_s: f64,
    pub peak_held_ports: u64,
    pub peak_time_wait: u64,
    pub budget: u64,
    pub peak_pressure: f64,
    pub peak_pressure_ns: u64,
    pub closer: Closer,
}

impl DestinationSummary {
    pub fn new_total(&self) -> u64 {
        self.new_total.get()
    }
}

/// A lacks-pooling verdict over the whole trace.
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

/// Failures in one wall-clock minute.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MinuteFailures {
    /// Unix minute (seconds / 60).
    pub minute: i64,
    /// errno → count.
    pub by_errno: BTreeMap<i32, u64>,
}

/// The summary, built by [`ReportBuilder`] and written by
/// [`write_text`] / [`write_json`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub file: String,
    pub hostname: String,
    pub kernel: String,
    pub clock: Option<WallClock>,
    pub port_range: Option<(u16, u16)>,
    pub budget: Option<u64>,
    pub start_ns: Option<u64>,
    pub end_ns: Option<u64>,
    pub inputs: u64,
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
    pub failure_minutes: Vec<MinuteFailures>,
    pub verdicts: Vec<VerdictSummary>,
    pub losses: Losses,
    pub warnings: Vec<String>,
    /// Reading stopped at an error (what was read before it is reported).
    pub complete: bool,
}

/// Collects a report from inputs and sampled models.
#[derive(Debug, Default)]
pub struct ReportBuilder {
    r: Report,
    services: BTreeMap<ServiceId, ServiceSummary>,
    destinations: BTreeMap<(IpAddr, u16), DestinationSummary>,
    verdicts: BTreeMap<(ServiceId, IpAddr, u16), VerdictSummary>,
    minutes: BTreeMap<i64, BTreeMap<i32, u64>>,
    errnos: BTreeMap<i32, u64>,
}

impl ReportBuilder {
    pub fn new(file: &str) -> ReportBuilder {
        ReportBuilder {
            r: Report {
                file: file.to_string(),
                complete: true,
                ..Report::default()
            },
            ..ReportBuilder::default()
        }
    }

    /// Every input of the trace, in file order.
    pub fn input(&mut self, input: &Input) {
        self.r.inputs += 1;
        if let Some(ts) = input.ts_ns() {
            self.r.start_ns.get_or_insert(ts);
            self.r.end_ns = Some(self.r.end_ns.map_or(ts, |e| e.max(ts)));
        }
        let failure = match input {
            Input::Host(h) => {
                if self.r.clock.is_none() {
                    self.r.clock = Some(h.clock);
                    self.r.hostname = h.hostname.clone();
                    self.r.kernel = h.kernel.clone();
                    self.r.port_range = Some(h.sysctls.port_range);
                    self.r.budget = Some(crate::engine::port_budget(&h.sysctls));
                }
                None
            }
            Input::Event(Event::Close(c)) if c.direction == Direction::Inbound => {
                self.r.inbound += 1;
                None
            }
            Input::Event(Event::Close(c)) => {
                self.r.outbound += 1;
                c.errno.map(|e| (c.end_ns, e))
            }
            // Failed connect() calls never became connections: counted as
            // failures only, like the engine does.
            Input::Event(Event::ConnectError(e)) => Some((e.ts_ns, e.errno)),
            Input::Losses { losses, .. } => {
                self.r.losses = *losses;
                None
            }
            _ => None,
        };
        if let Some((ts, e)) = failure {
            *self.errnos.entry(e).or_default() += 1;
            let minute = self.unix_ns(ts).div_euclid(60 * NS_PER_S as i64);
            *self
                .minutes
                .entry(minute)
                .or_default()
                .entry(e)
                .or_default() += 1;
        }
    }

    fn unix_ns(&self, mono_ns: u64) -> i64 {
        self.r.clock.map_or(mono_ns as i64, |c| c.unix_ns(mono_ns))
    }

    /// The model at a whole second of trace time (inputs up to it applied).
    pub fn sample(&mut self, m: &Model) {
        let now = m.now_ns;
        let sys = &m.system;
        if sys.new_per_s_1s > self.r.peak_1s.0 {
            self.r.peak_1s = (sys.new_per_s_1s, now.saturating_sub(NS_PER_S));
        }
        if sys.new_per_s_10s > self.r.peak_10s.0 {
            self.r.peak_10s = (sys.new_per_s_10s, now);
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
                .entry((d.daddr, d.dport))
                .or_insert_with(|| DestinationSummary {
                    daddr: d.daddr,
                    dport: d.dport,
                    new_total: Total::default(),
                    peak_new_per_s: 0.0,
                    peak_held_ports: 0,
                    peak_time_wait: 0,
                    budget: d.budget,
                    peak_pressure: 0.0,
                    peak_pressure_ns: now,
                    closer: d.closer,
                });
            e.new_total.see(d.stats.new_total);
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
            let key = (v.service.clone(), v.daddr, v.dport);
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
                    let higher = (v.time_wait, v.new_per_s) > (e.peak.time_wait, e.peak.new_per_s);
                    if higher {
                        e.peak = v.clone();
                        e.peak_ns = now;
                    }
                }
            }
        }
    }

    /// A warning from the reader, or the error reading stopped at.
    pub fn warning(&mut self, w: String) {
        self.r.warnings.push(w);
    }

    pub fn stopped_at_error(&mut self, e: String) {
        self.r.complete = false;
        self.r.warnings.push(e);
    }

    pub fn finish(mut self) -> Report {
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
                .then_with(|| (a.daddr, a.dport).cmp(&(b.daddr, b.dport)))
        });
        let mut verdicts: Vec<VerdictSummary> = self.verdicts.into_values().collect();
        verdicts.sort_by(|a, b| {
            b.peak
                .time_wait
                .cmp(&a.peak.time_wait)
                .then(b.peak.new_per_s.total_cmp(&a.peak.new_per_s))
                .then_with(|| {
                    (&a.peak.service, a.peak.daddr, a.peak.dport).cmp(&(
                        &b.peak.service,
                        b.peak.daddr,
                        b.peak.dport,
                    ))
                })
        });
        let mut failures: Vec<ErrnoCount> = self
            .errnos
            .iter()
            .map(|(&e, &n)| ErrnoCount {
                errno: e,
                name: errno::name(e),
                count: n,
            })
            .collect();
        failures.sort_by_key(|c| {
            (
                c.errno != EADDRNOTAVAIL,
                std::cmp::Reverse(c.count),
                c.errno,
            )
        });
        self.r.services = services;
        self.r.destinations = destinations;
        self.r.verdicts = verdicts;
        self.r.failures = failures;
        self.r.failure_minutes = self
            .minutes
            .into_iter()
            .map(|(minute, by_errno)| MinuteFailures { minute, by_errno })
            .collect();
        self.r
    }
}

impl Report {
    fn time(&self, mono_ns: u64) -> String {
        match self.clock {
            Some(c) => c.utc(mono_ns).format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            None => format!("+{:.0}s", mono_ns as f64 / 1e9),
        }
    }

    /// Time of day only: the span line gives the date.
    fn hms(&self, mono_ns: u64) -> String {
        match self.clock {
            Some(c) => c.utc(mono_ns).format("%H:%M:%S").to_string(),
            None => self.time(mono_ns),
        }
    }

    pub fn duration_s(&self) -> f64 {
        match (self.start_ns, self.end_ns) {
            (Some(a), Some(b)) => b.saturating_sub(a) as f64 / 1e9,
            _ => 0.0,
        }
    }

    /// The errnos of the timeline's columns: those of [`Report::failures`].
    fn errno_columns(&self) -> Vec<i32> {
        self.failures.iter().map(|c| c.errno).collect()
    }
}

fn minute_utc(minute: i64) -> String {
    chrono::DateTime::from_timestamp(minute * 60, 0).map_or_else(
        || minute.to_string(),
        |t| t.format("%Y-%m-%dT%H:%MZ").to_string(),
    )
}

#[derive(Serialize)]
struct ReportJson<'a> {
    file: &'a str,
    host: HostJson<'a>,
    span: SpanJson,
    connections: ConnectionsJson,
    peak: PeakJson,
    services: Vec<ServiceSummaryJson<'a>>,
    destinations: Vec<DestinationSummaryJson>,
    failures: FailuresJson<'a>,
    verdicts: Vec<VerdictSummaryJson<'a>>,
    lost_events: LostJson,
    warnings: &'a [String],
    complete: bool,
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
struct DestinationSummaryJson {
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
}

#[derive(Serialize)]
struct FailuresJson<'a> {
    total: u64,
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
            })
            .collect(),
        failures: FailuresJson {
            total: r.failures.iter().map(|c| c.count).sum(),
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

/// Names come from the traced host (process names, cgroup paths): control
/// characters in them would reach the reader's terminal, so they are escaped.
fn clean(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn opt_ms(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(x) if x < 10.0 => format!("{x:.2}"),
        Some(x) if x < 1000.0 => format!("{x:.1}"),
        Some(x) => format!("{x:.0}"),
    }
}

fn opt_pct(v: Option<f64>) -> String {
    v.map_or("-".into(), |x| format!("{:.0}%", x * 100.0))
}

fn pids(p: &[u32]) -> String {
    let v: Vec<String> = p.iter().map(u32::to_string).collect();
    v.join(",")
}

/// Plain text, sections in the order a postmortem reads them.
pub fn write_text(out: &mut impl Write, r: &Report, rows: usize) -> io::Result<()> {
    writeln!(out, "portwatch report: {}", clean(&r.file))?;
    let range = r.port_range.map_or("?".into(), |(a, b)| format!("{a}-{b}"));
    writeln!(
        out,
        "host {} ({})  ports {range}, budget {} per destination",
        clean(&r.hostname),
        clean(&r.kernel),
        r.budget.map_or("?".into(), |b| b.to_string())
    )?;
    match (r.start_ns, r.end_ns) {
        (Some(a), Some(b)) => writeln!(
            out,
            "span {} .. {} UTC ({:.1} s, {} records)",
            r.time(a),
            r.hms(b),
            r.duration_s(),
            r.inputs
        )?,
        _ => writeln!(out, "span: no records")?,
    }
    let total_failures: u64 = r.failures.iter().map(|c| c.count).sum();
    writeln!(
        out,
        "connections {} outbound, {} inbound; peak {:.0} new/s in one second{}, {:.1}/s over 10 s{}",
        r.outbound,
        r.inbound,
        r.peak_1s.0,
        if r.peak_1s.0 > 0.0 {
            format!(" (at {})", r.hms(r.peak_1s.1))
        } else {
            String::new()
        },
        r.peak_10s.0,
        if r.peak_10s.0 > 0.0 {
            format!(" (to {})", r.hms(r.peak_10s.1))
        } else {
            String::new()
        },
    )?;
    let by: Vec<String> = r
        .failures
        .iter()
        .map(|c| format!("{} {}", c.name, c.count))
        .collect();
    writeln!(
        out,
        "failures {total_failures}{}; lost events {}",
        if by.is_empty() {
            String::new()
        } else {
            format!(" ({})", by.join(", "))
        },
        r.losses.total()
    )?;
    if !r.complete || !r.warnings.is_empty() {
        writeln!(
            out,
            "WARNING: {}",
            if r.complete {
                "parts of the file were skipped (see WARNINGS)"
            } else {
                "the file is damaged; this reports what was read before the damage (see WARNINGS)"
            }
        )?;
    }

    writeln!(out)?;
    writeln!(out, "VERDICTS ({})", r.verdicts.len())?;
    if r.verdicts.is_empty() {
        writeln!(out, "  none: no service -> destination pair lacked pooling")?;
    }
    for v in &r.verdicts {
        let p = &v.peak;
        writeln!(
            out,
            "  {} {} -> {}:{}  pids {}",
            p.verdict,
            clean(&p.service.to_string()),
            fmt_addr(p.daddr),
            p.dport,
            pids(&p.pids)
        )?;
        writeln!(
            out,
            "    flagged {} s, {} .. {}; at its peak ({}): {:.1} new/s, p50 {} ms, \
             TIME_WAIT {} ({:.1}% of budget)",
            v.flagged_s,
            r.hms(v.first_ns),
            r.hms(v.last_ns),
            r.hms(v.peak_ns),
            p.new_per_s,
            opt_ms(p.lifetime_p50_ms),
            p.time_wait,
            p.budget_share * 100.0
        )?;
        writeln!(out, "    evidence: {}", clean(&p.evidence))?;
        writeln!(out, "    fix: {}", clean(&p.fix))?;
    }

    writeln!(out)?;
    writeln!(out, "TOP SERVICES BY CHURN")?;
    writeln!(
        out,
        "  {:<34} {:<14} {:>9} {:>10} {:>9} {:>6} {:>6}  PIDS",
        "SERVICE", "KIND", "CONNS", "PEAK_NEW/S", "LIFE_P50", "LOCAL", "ERR"
    )?;
    for s in r.services.iter().take(rows) {
        writeln!(
            out,
            "  {:<34} {:<14} {:>9} {:>10.1} {:>9} {:>6} {:>6}  {}",
            clean(&s.service.name),
            s.service.kind.as_str(),
            s.new_total(),
            s.peak_new_per_s,
            opt_ms(s.lifetime_p50_ms),
            opt_pct(s.closed_locally_share),
            s.connect_errors(),
            pids(&s.pids)
        )?;
    }
    if r.services.len() > rows {
        writeln!(out, "  ... {} more", r.services.len() - rows)?;
    }

    writeln!(out)?;
    writeln!(out, "DESTINATIONS BY PORT PRESSURE")?;
    writeln!(
        out,
        "  {:<34} {:>9} {:>10} {:>9} {:>8} {:>7} {:>10} {:>8}  CLOSER",
        "DESTINATION", "CONNS", "PEAK_NEW/S", "PEAK_HELD", "PEAK_TW", "BUDGET", "PEAK_SHARE", "AT"
    )?;
    for d in r.destinations.iter().take(rows) {
        writeln!(
            out,
            "  {:<34} {:>9} {:>10.1} {:>9} {:>8} {:>7} {:>9.1}% {:>8}  {}",
            format!("{}:{}", fmt_addr(d.daddr), d.dport),
            d.new_total(),
            d.peak_new_per_s,
            d.peak_held_ports,
            d.peak_time_wait,
            d.budget,
            d.peak_pressure * 100.0,
            if d.peak_pressure > 0.0 {
                r.hms(d.peak_pressure_ns)
            } else {
                "-".into()
            },
            format!("{:?}", d.closer).to_lowercase()
        )?;
    }
    if r.destinations.len() > rows {
        writeln!(out, "  ... {} more", r.destinations.len() - rows)?;
    }

    writeln!(out)?;
    writeln!(out, "FAILURES BY MINUTE (UTC)")?;
    if r.failure_minutes.is_empty() {
        writeln!(out, "  none")?;
    } else {
        let columns = r.errno_columns();
        let mut header = format!("  {:<18} {:>7}", "MINUTE", "TOTAL");
        for e in &columns {
            header.push_str(&format!(" {:>14}", errno::name(*e)));
        }
        writeln!(out, "{header}")?;
        for m in &r.failure_minutes {
            let mut line = format!(
                "  {:<18} {:>7}",
                minute_utc(m.minute),
                m.by_errno.values().sum::<u64>()
            );
            for e in &columns {
                line.push_str(&format!(" {:>14}", m.by_errno.get(e).copied().unwrap_or(0)));
            }
            writeln!(out, "{line}")?;
        }
    }

    writeln!(out)?;
    let l = &r.losses;
    write!(
        out,
        "LOST EVENTS {} (ring buffer full {}, socket map full {}, connect() untracked {}, \
         undecodable {}, probe errors {}",
        l.total(),
        l.ringbuf_lost,
        l.sock_evicted,
        l.connect_untracked,
        l.decode_errors,
        l.probe_errors
    )?;
    if l.kernel_missed > 0 {
        write!(out, ", skipped by the kernel {}", l.kernel_missed)?;
    }
    writeln!(out, ")")?;
    if l.total() > 0 {
        writeln!(out, "  rates and counts above are lower bounds")?;
    }
    if !r.warnings.is_empty() {
        writeln!(out)?;
        writeln!(out, "WARNINGS")?;
        for w in &r.warnings {
            writeln!(out, "  {}", clean(w))?;
        }
    }
    Ok(())
}
