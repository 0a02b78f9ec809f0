//! Model → Screen: picks and formats what the TUI shows from the engine's
//! model. No numbers are computed here: every figure is the engine's (this
//! file only picks, looks up and formats).

use crate::engine::model::{Model, RATE_WINDOW_S, ServiceRow as ModelService, Stats};
use crate::engine::service::ServiceKind;
use crate::event::FailCause;
use crate::render::fmt;

use super::app::{App, View};
use super::view::*;

fn kind(k: ServiceKind) -> &'static str {
    match k {
        ServiceKind::Systemd => "unit",
        ServiceKind::Docker | ServiceKind::Containerd | ServiceKind::Crio => "container",
        ServiceKind::Pod => "pod",
        ServiceKind::Comm => "process",
        ServiceKind::UnknownCgroup => "process?",
    }
}

fn dest(addr: std::net::IpAddr, port: u16) -> String {
    fmt::addr_port(addr, port)
}

fn series(s: &Stats) -> Vec<u64> {
    s.new_series_60s.iter().map(|&v| v as u64).collect()
}

fn service_row(m: &Model, s: &ModelService) -> ServiceRow {
    ServiceRow {
        name: s.service.to_string(),
        kind: kind(s.service.kind).to_string(),
        new_per_s: s.stats.new_per_s_10s,
        spark: series(&s.stats),
        time_wait: s.stats.time_wait,
        lifetime_p50_ms: s.stats.lifetime_p50_ms,
        failures: s.stats.connect_errors_total,
        lacks_pooling: m.verdicts.iter().any(|v| v.service == s.service),
        processes: m
            .processes
            .iter()
            .filter(|p| p.service == s.service)
            .map(|p| ProcessRow {
                pid: p.pid,
                comm: p.comm.clone(),
                new_per_s: p.stats.new_per_s_10s,
                time_wait: p.stats.time_wait,
            })
            .collect(),
    }
}

/// Builds everything one refresh shows; the detail pane only for the row
/// `app` has open.
pub fn build(m: &Model, app: &App, source: Option<String>) -> Screen {
    let sys = &m.system;
    let header = Header {
        host: sys.hostname.clone(),
        kernel: sys.kernel.clone(),
        observed_s: m.observed_s as u64,
        port_range: sys.port_range.unwrap_or((0, 0)),
        budget: sys.budget.unwrap_or(0),
        time_wait: sys.time_wait,
        open_ports: sys.open_ports,
        new_per_s: sys.new_per_s_10s,
        failures_per_s: sys.connect_errors_per_s_10s,
        eaddrnotavail_per_s: sys.eaddrnotavail_per_s_10s,
        rates_window_s: RATE_WINDOW_S,
        failures_by_errno: sys
            .connect_errors_per_s_10s_by_errno
            .iter()
            .map(|e| (e.name.clone(), e.per_s))
            .collect(),
        advice_count: sys.advice.len(),
        lost_events: sys.lost_events,
        conntrack: sys.conntrack.as_ref().map(|c| (c.text(), c.alarming())),
        // The engine orders advice most important first.
        advice: sys.advice.first().map(|a| a.text.clone()),
        source,
    };
    let services: Vec<ServiceRow> = m.services.iter().map(|s| service_row(m, s)).collect();
    let destinations: Vec<DestRow> = m
        .destinations
        .iter()
        .map(|d| DestRow {
            addr: dest(d.daddr, d.dport),
            held: d.held_ports,
            budget: d.budget,
            new_per_s: d.stats.new_per_s_10s,
            time_wait: d.stats.time_wait,
            failures: d.stats.connect_errors_total,
            pressure: d.pressure,
            pinned: d.pinned,
            top_talker: m
                .pairs
                .iter()
                .filter(|p| p.daddr == d.daddr && p.dport == d.dport)
                .max_by_key(|p| p.stats.new_total)
                .map(|p| p.service.to_string())
                .unwrap_or_default(),
        })
        .collect();
    let mut failures = Vec::new();
    for p in &m.pairs {
        let last_seen = p
            .stats
            .last_error_ns
            .and_then(|ns| sys.clock.map(|c| c.local_hms(ns)))
            .map(|t| t[..8].to_string())
            .unwrap_or_else(|| "-".into());
        for e in &p.stats.connect_errors {
            // EADDRNOTAVAIL is two causes; the model counts the kernel's
            // port-exhaustion ones apart.
            let parts = if e.errno == crate::event::EADDRNOTAVAIL {
                let exhausted = p.stats.port_exhaustion_total.min(e.count);
                vec![
                    (FailCause::PortExhaustion, exhausted),
                    (FailCause::AddressUnavailable, e.count - exhausted),
                ]
            } else {
                vec![(FailCause::of_handshake_errno(e.errno), e.count)]
            };
            for (cause, count) in parts.into_iter().filter(|&(_, n)| n > 0) {
                failures.push(FailureRow {
                    errno: e.name.clone(),
                    cause: cause.as_str().to_string(),
                    service: p.service.to_string(),
                    dest: dest(p.daddr, p.dport),
                    count,
                    last_seen: last_seen.clone(),
                });
            }
        }
    }
    let mut screen = Screen {
        header,
        services,
        destinations,
        failures,
        detail: None,
        advice: sys
            .advice
            .iter()
            .map(|a| AdviceItem {
                level: a.level.to_string(),
                text: a.text.clone(),
            })
            .collect(),
    };
    if app.detail {
        screen.detail = app
            .selected_key(&screen)
            .and_then(|key| detail(m, app.view, &key));
    }
    screen
}

fn hist(s: &Stats) -> Vec<(String, u64)> {
    s.lifetime_buckets
        .iter()
        .map(|(label, n)| (label.to_string(), *n))
        .collect()
}

/// Failures by cause and SYN retransmissions of a key, a line each; none
/// when there were neither.
fn failure_facts(s: &Stats) -> Vec<String> {
    if s.connect_errors_total == 0 && s.syn_retransmits == 0 {
        return Vec::new();
    }
    let causes: Vec<String> = s
        .connect_errors_by_cause
        .iter()
        .map(|c| format!("{} {}", c.cause.as_str(), c.count))
        .collect();
    let mut line = format!("Failed {}", s.connect_errors_total);
    if !causes.is_empty() {
        line.push_str(&format!(": {}", causes.join(", ")));
    }
    vec![line, format!("SYN retransmits {}", s.syn_retransmits)]
}

fn detail(m: &Model, view: View, key: &str) -> Option<Detail> {
    match view {
        View::Services => {
            let s = m.services.iter().find(|s| s.service.to_string() == key)?;
            let peers = m
                .pairs
                .iter()
                .filter(|p| p.service == s.service)
                .map(|p| {
                    (
                        dest(p.daddr, p.dport),
                        p.stats.new_per_s_10s,
                        p.stats.time_wait,
                    )
                })
                .collect();
            let verdict = m
                .verdicts
                .iter()
                .find(|v| v.service == s.service)
                .map(|v| VerdictText {
                    headline: format!("lacks connection pooling → {}", dest(v.daddr, v.dport)),
                    evidence: v.evidence.clone(),
                    fix: v.fix.clone(),
                });
            Some(Detail {
                title: format!("{} ({})", s.service, kind(s.service.kind)),
                peers_label: "Connects to".into(),
                peers,
                facts: failure_facts(&s.stats),
                rate_60s: series(&s.stats),
                lifetime_hist: hist(&s.stats),
                verdict,
            })
        }
        View::Destinations => {
            let d = m
                .destinations
                .iter()
                .find(|d| dest(d.daddr, d.dport) == key)?;
            let pairs: Vec<_> = m
                .pairs
                .iter()
                .filter(|p| p.daddr == d.daddr && p.dport == d.dport)
                .collect();
            let verdict = m
                .verdicts
                .iter()
                .find(|v| v.daddr == d.daddr && v.dport == d.dport)
                .map(|v| VerdictText {
                    headline: format!("{} lacks connection pooling", v.service),
                    evidence: v.evidence.clone(),
                    fix: v.fix.clone(),
                });
            Some(Detail {
                title: format!(
                    "{}  {} of {} ports held ({:.0}%)",
                    key,
                    d.held_ports,
                    d.budget,
                    d.pressure * 100.0
                ),
                peers_label: "Connected from".into(),
                peers: pairs
                    .iter()
                    .map(|p| {
                        (
                            p.service.to_string(),
                            p.stats.new_per_s_10s,
                            p.stats.time_wait,
                        )
                    })
                    .collect(),
                facts: {
                    let mut f = failure_facts(&d.stats);
                    if let Some(n) = d.nat_port_demand {
                        f.push(format!("NAT port demand ~{n:.0}"));
                    }
                    f
                },
                rate_60s: series(&d.stats),
                lifetime_hist: hist(&d.stats),
                verdict,
            })
        }
        View::Failures => None,
    }
}
