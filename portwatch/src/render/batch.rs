//! `portwatch top --batch`: the model as text tables or one JSON object per
//! interval.
//!
//! # JSON fields (`--json`, one object per line, stable)
//!
//! Every field is always present; `null` where unknown. Rates are per second
//! over the last 10 complete seconds unless the name says otherwise.
//!
//! - `time`: RFC 3339 UTC time of the snapshot.
//! - `interval_s`: seconds between snapshots.
//! - `observed_s`: seconds since observation started.
//! - `system`:
//!   - `hostname`, `kernel`.
//!   - `port_range`: `[lo, hi]`, `net.ipv4.ip_local_port_range`.
//!   - `budget`: ports in the range minus `ip_local_reserved_ports`; the most
//!     a host can hold at once to one (local addr, remote addr, remote port).
//!   - `time_wait`, `tcp_inuse`: /proc/net/sockstat `TCP: tw`, `inuse`.
//!   - `tw_per_sec`, `tw_recycled_per_sec`, `tw_overflow_per_sec`: rates of
//!     TcpExt `TW`, `TWRecycled` (tcp_tw_reuse at work), `TCPTimeWaitOverflow`
//!     (tcp_max_tw_buckets hit) between the last two readings.
//!   - `new_per_sec` (10 s), `new_per_sec_1s`, `new_per_sec_60s`: outbound
//!     connections of all services.
//!   - `connect_errors`: failed connects and handshakes since start;
//!     `connect_errors_per_sec`; `connect_errors_by_errno`: `[{errno, name,
//!     count}]`, EADDRNOTAVAIL first.
//!   - `lost_events`: events lost in the kernel or undecodable (cumulative).
//!   - `advice`: `[{level, key, text}]`, level "warning", "suggestion" or "note".
//! - `services`: `[{name, kind, pids, …stats}]`; `kind` is "systemd",
//!   "docker", "containerd", "crio", "pod", "comm" (no unit in the cgroup
//!   path: named by process) or "unknown_cgroup" (cgroup unknown or gone).
//! - `processes`: `[{pid, comm, service, …stats}]`.
//! - `destinations` (outbound, by remote address and port): `[{daddr,
//!   dport, …stats, closer, held_ports, open_ports, from_socket_table,
//!   budget, pressure, forecast_time_wait, forecast_exceeds_budget,
//!   exhaustion_in_s}]`. `closer`: who sends the first FIN ("local": the
//!   TIME_WAIT is here; "peer", "mixed", "unknown"). `held_ports` =
//!   ESTABLISHED + SYN_SENT + TIME_WAIT to it (socket table, adjusted by
//!   events since; TIME_WAIT has no owner, so only destinations count the
//!   table's); `pressure` = held_ports / budget; `forecast_time_wait` = local
//!   closes/s × 60 (TIME_WAIT in steady state); `exhaustion_in_s`: rough time
//!   until no port is free when the forecast exceeds the budget.
//! - `pairs` (service → destination): `[{service: {name, kind, pids}, daddr,
//!   dport, …stats}]`: what the verdict is decided on.
//! - `inbound` (accepted by listeners here, by local address and port):
//!   `[{laddr, lport, …stats}]`. Inbound churn is never a client verdict.
//! - `verdicts`: `[{service: {name, kind, pids}, daddr, dport, verdict,
//!   new_per_sec, lifetime_p50_ms, time_wait, budget_share,
//!   closed_locally_share, connect_errors, evidence, fix}]`; `verdict` is
//!   "lacks_pooling"; `budget_share` = this pair's TIME_WAIT / budget.
//! - `others`: `{processes, services, destinations, pairs, inbound}`:
//!   estimated distinct keys folded away because a table was full.
//!
//! `…stats` are: `new_per_sec`, `new_per_sec_1s`, `new_per_sec_60s`,
//! `new_total`, `lifetime_p50_ms`, `lifetime_p90_ms`, `lifetime_p99_ms`,
//! `handshake_p50_ms`, `handshake_p99_ms`, `closed_locally_share`,
//! `time_wait` (held now: closed locally within 60 s), `tw_expiring_10s`,
//! `tw_expiring_30s`, `tw_expiring_60s`, `connect_errors` (count),
//! `connect_errors_by_errno`.

use std::io::{self, Write};

use serde::Serialize;

use crate::engine::netns::NetnsRow;
use crate::engine::service::ServiceId;
use crate::engine::verdict::fmt_addr;
use crate::engine::{Advice, DestinationRow, ErrnoCount, Model, Others, Stats, Verdict};

#[derive(Serialize, Debug, PartialEq)]
pub struct BatchJson<'a> {
    pub time: Option<String>,
    pub interval_s: f64,
    pub observed_s: f64,
    pub system: SystemJson<'a>,
    pub services: Vec<ServiceJson<'a>>,
    pub processes: Vec<ProcessJson<'a>>,
    pub destinations: Vec<DestinationJson<'a>>,
    pub pairs: Vec<PairJson<'a>>,
    pub inbound: Vec<InboundJson<'a>>,
    pub verdicts: Vec<VerdictJson<'a>>,
    pub namespaces: &'a [NetnsRow],
    pub others: &'a Others,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct SystemJson<'a> {
    pub hostname: &'a str,
    pub kernel: &'a str,
    pub port_range: Option<(u16, u16)>,
    pub budget: Option<u64>,
    pub time_wait: Option<u64>,
    pub tcp_inuse: Option<u64>,
    pub tw_per_sec: Option<f64>,
    pub tw_recycled_per_sec: Option<f64>,
    pub tw_overflow_per_sec: Option<f64>,
    pub new_per_sec: f64,
    pub new_per_sec_1s: f64,
    pub new_per_sec_60s: f64,
    pub connect_errors: u64,
    pub connect_errors_per_sec: f64,
    pub connect_errors_by_errno: &'a [ErrnoCount],
    pub lost_events: u64,
    pub advice: &'a [Advice],
}

#[derive(Serialize, Debug, PartialEq)]
pub struct StatsJson<'a> {
    pub new_per_sec: f64,
    pub new_per_sec_1s: f64,
    pub new_per_sec_60s: f64,
    pub new_total: u64,
    pub lifetime_p50_ms: Option<f64>,
    pub lifetime_p90_ms: Option<f64>,
    pub lifetime_p99_ms: Option<f64>,
    pub handshake_p50_ms: Option<f64>,
    pub handshake_p99_ms: Option<f64>,
    pub closed_locally_share: Option<f64>,
    pub time_wait: u64,
    pub tw_expiring_10s: u64,
    pub tw_expiring_30s: u64,
    pub tw_expiring_60s: u64,
    pub connect_errors: u64,
    pub connect_errors_by_errno: &'a [ErrnoCount],
}

impl<'a> From<&'a Stats> for StatsJson<'a> {
    fn from(s: &'a Stats) -> Self {
        StatsJson {
            new_per_sec: s.new_per_s_10s,
            new_per_sec_1s: s.new_per_s_1s,
            new_per_sec_60s: s.new_per_s_60s,
            new_total: s.new_total,
            lifetime_p50_ms: s.lifetime_p50_ms,
            lifetime_p90_ms: s.lifetime_p90_ms,
            lifetime_p99_ms: s.lifetime_p99_ms,
            handshake_p50_ms: s.handshake_p50_ms,
            handshake_p99_ms: s.handshake_p99_ms,
            closed_locally_share: s.closed_locally_share,
            time_wait: s.time_wait,
            tw_expiring_10s: s.tw_expiring_10s,
            tw_expiring_30s: s.tw_expiring_30s,
            tw_expiring_60s: s.tw_expiring_60s,
            connect_errors: s.connect_errors_total,
            connect_errors_by_errno: &s.connect_errors,
        }
    }
}

#[derive(Serialize, Debug, PartialEq)]
pub struct ServiceRef<'a> {
    pub name: &'a str,
    pub kind: &'static str,
    pub pids: &'a [u32],
}

/// A verdict as `top --batch --json` writes it (`report --json` too).
pub fn verdict_json(v: &Verdict) -> VerdictJson<'_> {
    VerdictJson {
        service: service_ref(&v.service, &v.pids),
        netns: v.netns,
        netns_name: v.netns_name.as_deref(),
        daddr: v.daddr.to_string(),
        dport: v.dport,
        verdict: v.verdict,
        new_per_sec: v.new_per_s,
        lifetime_p50_ms: v.lifetime_p50_ms,
        time_wait: v.time_wait,
        budget_share: v.budget_share,
        closed_locally_share: v.closed_locally_share,
        connect_errors: v.connect_errors_total,
        evidence: &v.evidence,
        fix: &v.fix,
    }
}

pub fn service_ref<'a>(s: &'a ServiceId, pids: &'a [u32]) -> ServiceRef<'a> {
    ServiceRef {
        name: &s.name,
        kind: s.kind.as_str(),
        pids,
    }
}

#[derive(Serialize, Debug, PartialEq)]
pub struct ServiceJson<'a> {
    #[serde(flatten)]
    pub service: ServiceRef<'a>,
    pub netns: Option<u32>,
    pub netns_name: Option<&'a str>,
    #[serde(flatten)]
    pub stats: StatsJson<'a>,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct ProcessJson<'a> {
    pub pid: u32,
    pub comm: &'a str,
    pub service: &'a str,
    #[serde(flatten)]
    pub stats: StatsJson<'a>,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct DestinationJson<'a> {
    pub netns: Option<u32>,
    pub netns_name: Option<&'a str>,
    pub laddr: Option<String>,
    pub daddr: String,
    pub dport: u16,
    #[serde(flatten)]
    pub stats: StatsJson<'a>,
    pub closer: crate::engine::Closer,
    pub held_ports: u64,
    pub open_ports: u64,
    pub from_socket_table: bool,
    pub budget: Option<u64>,
    pub pressure: f64,
    pub forecast_time_wait: f64,
    pub forecast_exceeds_budget: bool,
    pub exhaustion_in_s: Option<f64>,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct PairJson<'a> {
    pub service: ServiceRef<'a>,
    pub netns: Option<u32>,
    pub netns_name: Option<&'a str>,
    pub daddr: String,
    pub dport: u16,
    #[serde(flatten)]
    pub stats: StatsJson<'a>,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct InboundJson<'a> {
    pub laddr: String,
    pub lport: u16,
    #[serde(flatten)]
    pub stats: StatsJson<'a>,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct VerdictJson<'a> {
    pub service: ServiceRef<'a>,
    pub netns: Option<u32>,
    pub netns_name: Option<&'a str>,
    pub daddr: String,
    pub dport: u16,
    pub verdict: &'static str,
    pub new_per_sec: f64,
    pub lifetime_p50_ms: Option<f64>,
    pub time_wait: u64,
    pub budget_share: f64,
    pub closed_locally_share: Option<f64>,
    pub connect_errors: u64,
    pub evidence: &'a str,
    pub fix: &'a str,
}

fn destination_json(d: &DestinationRow) -> DestinationJson<'_> {
    DestinationJson {
        netns: d.netns,
        netns_name: d.netns_name.as_deref(),
        laddr: d.laddr.map(|a| a.to_string()),
        daddr: d.daddr.to_string(),
        dport: d.dport,
        stats: (&d.stats).into(),
        closer: d.closer,
        held_ports: d.held_ports,
        open_ports: d.open_ports,
        from_socket_table: d.from_socket_table,
        // 0: its namespace's sysctls are unknown.
        budget: (d.budget > 0).then_some(d.budget),
        pressure: d.pressure,
        forecast_time_wait: d.forecast.steady_time_wait,
        forecast_exceeds_budget: d.forecast.exceeds_budget,
        exhaustion_in_s: d.forecast.exhaustion_in_s,
    }
}

/// The JSON object of one interval. `rows` caps each table (verdicts are
/// never cut); what is cut is still counted in the totals.
pub fn json(model: &Model, interval_s: f64, rows: usize) -> BatchJson<'_> {
    let sys = &model.system;
    BatchJson {
        time: sys.clock.map(|c| c.rfc3339(model.now_ns)),
        interval_s,
        observed_s: model.observed_s,
        system: SystemJson {
            hostname: &sys.hostname,
            kernel: &sys.kernel,
            port_range: sys.port_range,
            budget: sys.budget,
            time_wait: sys.sockstat_tw,
            tcp_inuse: sys.sockstat_inuse,
            tw_per_sec: sys.tw_per_s,
            tw_recycled_per_sec: sys.tw_recycled_per_s,
            tw_overflow_per_sec: sys.tw_overflow_per_s,
            new_per_sec: sys.new_per_s_10s,
            new_per_sec_1s: sys.new_per_s_1s,
            new_per_sec_60s: sys.new_per_s_60s,
            connect_errors: sys.connect_errors_total,
            connect_errors_per_sec: sys.connect_errors_per_s_10s,
            connect_errors_by_errno: &sys.connect_errors,
            lost_events: sys.lost_events,
            advice: &sys.advice,
        },
        services: model
            .services
            .iter()
            .take(rows)
            .map(|s| ServiceJson {
                service: service_ref(&s.service, &s.pids),
                netns: s.netns,
                netns_name: s.netns_name.as_deref(),
                stats: (&s.stats).into(),
            })
            .collect(),
        processes: model
            .processes
            .iter()
            .take(rows)
            .map(|p| ProcessJson {
                pid: p.pid,
                comm: &p.comm,
                service: &p.service.name,
                stats: (&p.stats).into(),
            })
            .collect(),
        destinations: model
            .destinations
            .iter()
            .take(rows)
            .map(destination_json)
            .collect(),
        pairs: model
            .pairs
            .iter()
            .take(rows)
            .map(|p| PairJson {
                service: service_ref(&p.service, &p.pids),
                netns: p.netns,
                netns_name: p.netns_name.as_deref(),
                daddr: p.daddr.to_string(),
                dport: p.dport,
                stats: (&p.stats).into(),
            })
            .collect(),
        inbound: model
            .inbound
            .iter()
            .take(rows)
            .map(|i| InboundJson {
                laddr: i.laddr.to_string(),
                lport: i.lport,
                stats: (&i.stats).into(),
            })
            .collect(),
        verdicts: model.verdicts.iter().map(verdict_json).collect(),
        namespaces: &model.namespaces,
        others: &model.others,
    }
}

pub fn write_json(
    out: &mut impl Write,
    model: &Model,
    interval_s: f64,
    rows: usize,
) -> io::Result<()> {
    serde_json::to_writer(&mut *out, &json(model, interval_s, rows))?;
    out.write_all(b"\n")
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

fn more(out: &mut impl Write, total: usize, shown: usize, folded: u64) -> io::Result<()> {
    if total > shown {
        writeln!(out, "  ... {} more", total - shown)?;
    }
    if folded > 0 {
        writeln!(out, "  +{folded} others (table full, aggregated)")?;
    }
    Ok(())
}

/// Text tables, like `top -b`: a header, verdicts, then the busiest rows.
pub fn write_text(out: &mut impl Write, model: &Model, rows: usize) -> io::Result<()> {
    let sys = &model.system;
    let time = sys.clock.map_or_else(
        || format!("+{:.1}s", model.observed_s),
        |c| c.rfc3339(model.now_ns),
    );
    writeln!(
        out,
        "portwatch top - {time}  host {} ({})  observed {:.0}s",
        sys.hostname, sys.kernel, model.observed_s
    )?;
    let range = sys
        .port_range
        .map_or("?".into(), |(a, b)| format!("{a}-{b}"));
    writeln!(
        out,
        "ports {range} budget {}  TIME_WAIT {} inuse {}  new {:.1}/s (1s {:.1}, 60s {:.1})  \
         failures {:.1}/s ({} total)  lost {}",
        sys.budget.map_or("?".into(), |b| b.to_string()),
        sys.sockstat_tw.map_or("?".into(), |v| v.to_string()),
        sys.sockstat_inuse.map_or("?".into(), |v| v.to_string()),
        sys.new_per_s_10s,
        sys.new_per_s_1s,
        sys.new_per_s_60s,
        sys.connect_errors_per_s_10s,
        sys.connect_errors_total,
        sys.lost_events
    )?;
    if let (Some(tw), Some(rec), Some(ovf)) =
        (sys.tw_per_s, sys.tw_recycled_per_s, sys.tw_overflow_per_s)
    {
        writeln!(
            out,
            "kernel: TW {tw:.1}/s  TWRecycled {rec:.1}/s  TCPTimeWaitOverflow {ovf:.1}/s"
        )?;
    }
    writeln!(out)?;
    writeln!(out, "VERDICTS ({})", model.verdicts.len())?;
    for v in &model.verdicts {
        writeln!(
            out,
            "  {} {} -> {}:{}  pids {:?}  {:.1}/s  p50 {} ms  TIME_WAIT {} ({:.1}% of budget)",
            v.verdict,
            v.service,
            fmt_addr(v.daddr),
            v.dport,
            v.pids,
            v.new_per_s,
            opt_ms(v.lifetime_p50_ms),
            v.time_wait,
            v.budget_share * 100.0
        )?;
        writeln!(out, "    evidence: {}", v.evidence)?;
        writeln!(out, "    fix: {}", v.fix)?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "SERVICES {:<28} {:<14} {:>8} {:>8} {:>9} {:>9} {:>6} {:>6} {:>6}",
        "", "KIND", "NEW/S", "TOTAL", "LIFE_P50", "LIFE_P99", "LOCAL", "TW", "ERR"
    )?;
    for s in model.services.iter().take(rows) {
        writeln!(
            out,
            "  {:<35} {:<14} {:>8.1} {:>8} {:>9} {:>9} {:>6} {:>6} {:>6}",
            s.service.name,
            s.service.kind.as_str(),
            s.stats.new_per_s_10s,
            s.stats.new_total,
            opt_ms(s.stats.lifetime_p50_ms),
            opt_ms(s.stats.lifetime_p99_ms),
            opt_pct(s.stats.closed_locally_share),
            s.stats.time_wait,
            s.stats.connect_errors_total
        )?;
    }
    more(out, model.services.len(), rows, model.others.services)?;
    writeln!(out)?;
    writeln!(
        out,
        "DESTINATIONS {:<25} {:>8} {:>9} {:>7} {:>6} {:>7} {:>8} {:>12} {:>10}",
        "",
        "NEW/S",
        "LIFE_P50",
        "CLOSER",
        "HELD",
        "BUDGET",
        "PRESSURE",
        "TW_EXP10/30/60",
        "FORECAST"
    )?;
    for d in model.destinations.iter().take(rows) {
        let forecast = match (d.forecast.exceeds_budget, d.forecast.exhaustion_in_s) {
            (true, Some(t)) => format!("full~{t:.0}s"),
            (true, None) => "over".into(),
            (false, _) => format!("{:.0}tw", d.forecast.steady_time_wait),
        };
        writeln!(
            out,
            "  {:<35} {:>8.1} {:>9} {:>7} {:>6} {:>7} {:>7.1}% {:>14} {:>10}{}",
            format!("{}:{}", fmt_addr(d.daddr), d.dport),
            d.stats.new_per_s_10s,
            opt_ms(d.stats.lifetime_p50_ms),
            format!("{:?}", d.closer).to_lowercase(),
            d.held_ports,
            d.budget,
            d.pressure * 100.0,
            format!(
                "{}/{}/{}",
                d.stats.tw_expiring_10s, d.stats.tw_expiring_30s, d.stats.tw_expiring_60s
            ),
            forecast,
            if d.from_socket_table { "" } else { " *" }
        )?;
    }
    more(
        out,
        model.destinations.len(),
        rows,
        model.others.destinations,
    )?;
    if model.destinations.iter().any(|d| !d.from_socket_table) {
        writeln!(
            out,
            "  * no socket table read yet: HELD counts closes seen since start only"
        )?;
    }
    writeln!(
        out,
        "  (TIME_WAIT has no owning process: the socket table's share is counted per destination only)"
    )?;
    if !model.inbound.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "INBOUND (accepted here) {:<14} {:>8} {:>9} {:>8}",
            "", "NEW/S", "LIFE_P50", "TOTAL"
        )?;
        for i in model.inbound.iter().take(rows) {
            writeln!(
                out,
                "  {:<37} {:>8.1} {:>9} {:>8}",
                format!("{}:{}", fmt_addr(i.laddr), i.lport),
                i.stats.new_per_s_10s,
                opt_ms(i.stats.lifetime_p50_ms),
                i.stats.new_total
            )?;
        }
        more(out, model.inbound.len(), rows, model.others.inbound)?;
    }
    if !sys.advice.is_empty() {
        writeln!(out)?;
        writeln!(out, "ADVICE")?;
        for a in &sys.advice {
            writeln!(out, "  [{}] {}", a.level, a.text)?;
        }
    }
    writeln!(out)
}
