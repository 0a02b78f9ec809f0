//! Model → Screen: picks and formats what the TUI shows from the engine's
//! model. No numbers are computed here: every figure is the engine's (this
//! file only picks, looks up and formats).

use crate::engine::model::{
    DestinationRow, Model, RATE_WINDOW_S, ServiceRow as ModelService, Stats,
};
use crate::engine::netns::NetnsRow;
use crate::engine::service::{ServiceId, ServiceKind};
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

/// The detail pane's title: containers and pods say their kind already.
fn title(s: &ServiceId) -> String {
    match s.kind {
        ServiceKind::Docker | ServiceKind::Containerd | ServiceKind::Crio | ServiceKind::Pod => {
            s.to_string()
        }
        k => format!("{s} ({})", kind(k)),
    }
}

/// What identifies a container or pod besides its name: the Kubernetes
/// container, the pod uid or container id.
fn identity(s: &ServiceId) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(c) = &s.container {
        parts.push(format!("container {c}"));
    }
    if let Some(id) = &s.id {
        let what = if s.kind == ServiceKind::Pod {
            "uid"
        } else {
            "id"
        };
        parts.push(format!("{what} {id}"));
    }
    (!parts.is_empty()).then(|| parts.join("  "))
}

fn dest(addr: std::net::IpAddr, port: u16) -> String {
    fmt::addr_port(addr, port)
}

/// What tells a destination row from the others with the same address:
/// its namespace and local address (each a budget of its own).
fn dest_key(d: &DestinationRow) -> String {
    format!(
        "{}|{}|{}",
        d.netns.unwrap_or(0),
        d.laddr.map_or_else(|| "-".into(), |a| a.to_string()),
        dest(d.daddr, d.dport)
    )
}

fn ns_info(n: &NetnsRow) -> NsInfo {
    NsInfo {
        netns: n.netns,
        name: n.netns_name.clone(),
        host: n.host,
        port_range: n.port_range,
        budget: n.budget,
        tcp_tw_reuse: n.tcp_tw_reuse,
        tcp_timestamps: n.tcp_timestamps,
        stale: n.stale,
        error: n.error.clone(),
        differs_from_host: n.differs_from_host,
    }
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "?".into(), |v| v.to_string())
}

/// A namespace for the detail pane: name, inode, its own range, budget
/// and sysctls, and why they may not be current.
fn ns_text(n: &NsInfo) -> String {
    let mut t = format!("netns {} ({})", n.name, n.netns);
    match n.port_range {
        Some((lo, hi)) => t.push_str(&format!(
            ": range {lo}-{hi}, budget {}, tw_reuse {}, timestamps {}",
            opt(n.budget),
            opt(n.tcp_tw_reuse),
            opt(n.tcp_timestamps)
        )),
        None => t.push_str(&format!(
            ": not read ({}): its range, budget and sysctls are unknown",
            n.error.as_deref().unwrap_or("not yet")
        )),
    }
    if n.differs_from_host {
        t.push_str(" — differs from host");
    }
    if n.stale {
        t.push_str(" · stale: its tasks are gone, these are the last values read");
    } else if let (Some(e), Some(_)) = (&n.error, n.port_range) {
        t.push_str(&format!(" · last reading failed ({e}): values from before"));
    }
    t
}

/// Room for a namespace's name in the header's namespace line (pod names
/// are UIDs: 40 characters).
const NOTE_NAME: usize = 20;

/// The header line about the selected row's namespace (`selected` is its
/// name, None when no row of one namespace is selected).
fn ns_note(namespaces: &[NsInfo], selected: Option<&str>) -> NsNote {
    let differ = namespaces
        .iter()
        .filter(|n| !n.host && (n.differs_from_host || n.port_range.is_none()))
        .count();
    let summary = format!(
        "{} namespaces seen, {differ} differ from host",
        namespaces.len()
    );
    let Some(n) = selected.and_then(|s| namespaces.iter().find(|n| n.name == s)) else {
        return NsNote {
            text: format!("namespaces: {summary}"),
            differs: false,
        };
    };
    if n.host {
        return NsNote {
            text: format!("selected: host · {summary}"),
            differs: false,
        };
    }
    let stale = if n.stale { " (stale)" } else { "" };
    match n.port_range {
        None => NsNote {
            text: format!(
                "selected: {} budget unknown, host's do not apply (not read: {})",
                fmt::short_netns(&n.name, NOTE_NAME),
                n.error.as_deref().unwrap_or("not yet")
            ),
            differs: true,
        },
        // What matters first: a line cut at the terminal's edge loses the
        // values, not the verdict (the detail pane has them all).
        Some((lo, hi)) if n.differs_from_host => NsNote {
            text: format!(
                "selected: {} differs from host: range {lo}-{hi}, tw_reuse {}{stale}",
                fmt::short_netns(&n.name, NOTE_NAME),
                opt(n.tcp_tw_reuse)
            ),
            differs: true,
        },
        Some(_) => NsNote {
            text: format!(
                "selected: {}{stale}: same range and sysctls as host",
                fmt::short_netns(&n.name, NOTE_NAME)
            ),
            differs: false,
        },
    }
}

fn series(s: &Stats) -> Vec<u64> {
    s.new_series_60s.iter().map(|&v| v as u64).collect()
}

/// The namespaces of a service's connections, by name (a service is
/// given one only when all its tasks live in one).
fn service_namespaces<'m>(m: &'m Model, s: &'m ModelService) -> Vec<&'m str> {
    if let Some(n) = &s.netns_name {
        return vec![n.as_str()];
    }
    let mut names: Vec<&str> = m
        .pairs
        .iter()
        .filter(|p| p.service == s.service)
        .filter_map(|p| p.netns_name.as_deref())
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

fn service_row(m: &Model, s: &ModelService) -> ServiceRow {
    let names = service_namespaces(m, s);
    ServiceRow {
        netns: s.netns,
        netns_name: match names.as_slice() {
            [] => "-".into(),
            [one] => one.to_string(),
            _ => "several".into(),
        },
        name: s.service.to_string(),
        kind: kind(s.service.kind).to_string(),
        new_per_s: s.stats.new_per_s_10s,
        spark: series(&s.stats),
        time_wait: s.stats.time_wait,
        lifetime_p50_ms: s.stats.lifetime_p50_ms,
        failures: s.stats.connect_errors_total,
        lacks_pooling: m
            .verdicts
            .iter()
            .any(|v| v.service == s.service && v.verdict == "lacks_pooling"),
        leaks_sockets: m
            .verdicts
            .iter()
            .any(|v| v.service == s.service && v.verdict == "leaks_sockets"),
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
        // The engine orders advice most important first. Its namespace
        // prefix (a pod's UID is 40 characters) shortened: one line has room.
        advice: sys.advice.first().map(|a| {
            let prefix = a.netns_name.as_ref().and_then(|name| {
                let long = match a.netns {
                    Some(ns) if !name.starts_with("netns:") && name != "host" => {
                        format!("{name} (netns {ns}): ")
                    }
                    _ => format!("{name}: "),
                };
                a.text.strip_prefix(&long).map(|rest| (name, rest))
            });
            match prefix {
                Some((name, rest)) => format!("{}: {rest}", fmt::short_netns(name, NOTE_NAME)),
                None => a.text.clone(),
            }
        }),
        source,
        ns_note: None,
    };
    let services: Vec<ServiceRow> = m.services.iter().map(|s| service_row(m, s)).collect();
    let destinations: Vec<DestRow> = m
        .destinations
        .iter()
        .map(|d| DestRow {
            key: dest_key(d),
            addr: dest(d.daddr, d.dport),
            netns: d.netns,
            netns_name: d.netns_name.clone().unwrap_or_else(|| "-".into()),
            laddr: d.laddr.map(|a| a.to_string()),
            held: d.held_ports,
            budget: d.budget,
            new_per_s: d.stats.new_per_s_10s,
            time_wait: d.stats.time_wait,
            failures: d.stats.connect_errors_total,
            pressure: d.pressure,
            pinned: d.pinned,
            // Who holds its ports, when one process holds most of them
            // (a leak's failures point at it); else who churns most.
            top_talker: match &d.held_by {
                Some(h) => format!(
                    "{} {} holds {}{}",
                    h.pid,
                    h.comm,
                    h.ports,
                    if h.leaks_sockets { " LEAK" } else { "" }
                ),
                None => m
                    .pairs
                    .iter()
                    .filter(|p| p.daddr == d.daddr && p.dport == d.dport && p.netns == d.netns)
                    .max_by_key(|p| p.stats.new_total)
                    .map(|p| p.service.to_string())
                    .unwrap_or_default(),
            },
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
            // EADDRNOTAVAIL is three causes; the model counts the kernel's
            // port-exhaustion ones and bound ports' taken 4-tuples apart.
            let parts = if e.errno == crate::event::EADDRNOTAVAIL {
                let exhausted = p.stats.port_exhaustion_total.min(e.count);
                let in_use = p
                    .stats
                    .connect_errors_by_cause
                    .iter()
                    .find(|c| c.cause == FailCause::PortInUse)
                    .map_or(0, |c| c.count)
                    .min(e.count - exhausted);
                vec![
                    (FailCause::PortExhaustion, exhausted),
                    (FailCause::PortInUse, in_use),
                    (FailCause::AddressUnavailable, e.count - exhausted - in_use),
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
        namespaces: m.namespaces.iter().map(ns_info).collect(),
    };
    if screen.several_namespaces() {
        let selected = match app.view {
            View::Services => app
                .services(&screen)
                .get(app.selected())
                .map(|r| r.netns_name.clone()),
            View::Destinations => app
                .destinations(&screen)
                .get(app.selected())
                .map(|r| r.netns_name.clone()),
            View::Failures => None,
        };
        screen.header.ns_note = Some(ns_note(&screen.namespaces, selected.as_deref()));
    }
    if app.detail {
        screen.detail = app
            .selected_key(&screen)
            .and_then(|key| detail(m, &screen.namespaces, app.view, &key));
    }
    screen
}

/// The detail pane's verdict line: named by the service (a destination's
/// pane) or by where it points (a service's pane).
fn verdict_headline(v: &crate::engine::model::Verdict, by_service: bool) -> String {
    let what = match v.verdict {
        "leaks_sockets" => format!(
            "leaks sockets: pid {} holds {} in CLOSE_WAIT",
            v.pids.first().copied().unwrap_or(0),
            v.close_wait.unwrap_or(0)
        ),
        "binds_before_connect" => {
            "binds client sockets before connect(): holds ports of the whole range".to_string()
        }
        _ => "lacks connection pooling".to_string(),
    };
    if by_service {
        format!("{} {what}", v.service)
    } else {
        format!("{what} → {}", dest(v.daddr, v.dport))
    }
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

/// The detail pane's namespace line, when several namespaces were seen.
fn detail_ns(namespaces: &[NsInfo], names: &[&str]) -> Option<String> {
    if !namespaces.iter().any(|n| !n.host) {
        return None;
    }
    match names {
        [] => Some("netns unknown".into()),
        [one] => Some(
            namespaces
                .iter()
                .find(|n| n.name == *one)
                .map_or_else(|| format!("netns {one}"), ns_text),
        ),
        several => Some(format!("netns: several: {}", several.join(", "))),
    }
}

fn detail(m: &Model, namespaces: &[NsInfo], view: View, key: &str) -> Option<Detail> {
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
                    headline: verdict_headline(v, false),
                    evidence: v.evidence.clone(),
                    fix: v.fix.clone(),
                    call_sites: call_site_lines(v),
                });
            Some(Detail {
                title: title(&s.service),
                identity: identity(&s.service),
                netns: detail_ns(namespaces, &service_namespaces(m, s)),
                peers_label: "Connects to".into(),
                peers,
                facts: failure_facts(&s.stats),
                rate_60s: series(&s.stats),
                lifetime_hist: hist(&s.stats),
                verdict,
            })
        }
        View::Destinations => {
            let d = m.destinations.iter().find(|d| dest_key(d) == key)?;
            let pairs: Vec<_> = m
                .pairs
                .iter()
                .filter(|p| p.daddr == d.daddr && p.dport == d.dport && p.netns == d.netns)
                .collect();
            let verdict = m
                .verdicts
                .iter()
                .find(|v| v.daddr == d.daddr && v.dport == d.dport && v.netns == d.netns)
                .map(|v| VerdictText {
                    headline: verdict_headline(v, true),
                    evidence: v.evidence.clone(),
                    fix: v.fix.clone(),
                    call_sites: call_site_lines(v),
                });
            let from = d.laddr.map(|a| format!(" from {a}")).unwrap_or_default();
            let held = if d.budget > 0 {
                format!(
                    "{} of {} ports held ({:.0}%)",
                    d.held_ports,
                    d.budget,
                    d.pressure * 100.0
                )
            } else {
                format!("{} ports held, budget unknown", d.held_ports)
            };
            let names: Vec<&str> = d.netns_name.as_deref().into_iter().collect();
            Some(Detail {
                title: format!("{}{from}  {held}", dest(d.daddr, d.dport)),
                netns: detail_ns(namespaces, &names),
                identity: None,
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

/// The verdict's call sites as the detail pane lists them, with notes.
fn call_site_lines(v: &crate::engine::model::Verdict) -> Vec<String> {
    let mut out = Vec::new();
    for c in &v.call_sites {
        out.push(crate::render::call_site_line(c));
        if let Some(n) = &c.note {
            out.push(format!("       {}", crate::render::fmt::clean(n)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pods_detail_title_says_pod_once_and_its_ids_follow() {
        let pod = ServiceId {
            id: Some("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0".into()),
            namespace: Some("checkout".into()),
            container: Some("api".into()),
            ..ServiceId::new(ServiceKind::Pod, "checkout/api-7f9c")
        };
        assert_eq!(title(&pod), "checkout/api-7f9c (pod)");
        assert_eq!(
            identity(&pod).as_deref(),
            Some("container api  uid 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")
        );
        let unit = ServiceId::new(ServiceKind::Systemd, "nginx.service");
        assert_eq!(title(&unit), "nginx.service (unit)");
        assert_eq!(identity(&unit), None);
    }
}
