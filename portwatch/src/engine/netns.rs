//! Network namespaces: ports, the sysctls that size and recycle them,
//! sockstat/netstat counters and the socket table all belong to one, and
//! every container and pod has its own. The engine keys everything that
//! depends on them by namespace first; this room keeps what is known of
//! each namespace other than portwatch's own (the "host", whose values come
//! with `Input::Host` and `Input::Counters`) and names it.

use serde::Serialize;

use super::VerdictConfig;
use super::model::{
    Advice, CauseCount, DestinationRow, ErrnoCount, InboundRow, SystemModel, Verdict,
};
use super::service::{ServiceId, ServiceKind};
use super::table::{Activity, Table};
use super::verdict;
use crate::event::EADDRNOTAVAIL;
use crate::input::{KernelCounters, NetnsInfo, Sysctls};

/// What is known of one namespace other than the host's.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct NetnsAcc {
    /// Last known values read inside it (kept when a reading fails).
    pub(crate) sysctls: Option<Sysctls>,
    pub(crate) counters: Option<KernelCounters>,
    pub(crate) prev_counters: Option<KernelCounters>,
    /// Why the last reading failed, if it did.
    pub(crate) error: Option<String>,
    /// Its tasks are all gone: the values are the last known.
    pub(crate) stale: bool,
    /// The best owner seen among the services of its tasks.
    pub(crate) owner: Option<ServiceId>,
    pub(crate) last_ns: u64,
    /// Time of its last socket table.
    pub(crate) last_table_ns: Option<u64>,
}

impl Activity for NetnsAcc {
    fn last_ns(&self) -> u64 {
        self.last_ns
    }
}

/// How well a service names the namespace its tasks live in: a pod's or a
/// container's namespace is theirs; a systemd unit's is a fair guess (units
/// rarely get a namespace of their own); a process name is no owner.
pub(crate) fn owner_rank(s: &ServiceId) -> u8 {
    match s.kind {
        ServiceKind::Pod => 3,
        ServiceKind::Docker | ServiceKind::Containerd | ServiceKind::Crio => 2,
        ServiceKind::Systemd => 1,
        ServiceKind::Comm | ServiceKind::UnknownCgroup => 0,
    }
}

/// Name of a namespace for people: `host` for portwatch's own, else the
/// pod/container/unit whose tasks were seen in it, else `netns:INODE`.
pub fn netns_name(netns: u32, host: u32, owner: Option<&ServiceId>) -> String {
    if netns == host {
        return "host".into();
    }
    match owner.filter(|o| owner_rank(o) > 0) {
        Some(o) => owner_name(o),
        None => format!("netns:{netns}"),
    }
}

/// How an owner names its namespace: `pod:checkout/api-7f9c`, `docker:web`
/// (one word, for `--netns NAME`), a unit by its name.
pub(crate) fn owner_name(o: &ServiceId) -> String {
    match o.kind {
        ServiceKind::Systemd | ServiceKind::Comm | ServiceKind::UnknownCgroup => o.to_string(),
        k => format!("{}:{}", k.as_str(), o.name),
    }
}

/// One namespace in the model (`namespaces` in `top --batch --json`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NetnsRow {
    pub netns: u32,
    pub netns_name: String,
    /// portwatch's own namespace.
    pub host: bool,
    /// Its tasks are all gone; the values are the last known.
    pub stale: bool,
    /// Why it could not be read (task gone, permission), if so.
    pub error: Option<String>,
    #[serde(skip)]
    pub sysctls: Option<Sysctls>,
    pub port_range: Option<(u16, u16)>,
    pub budget: Option<u64>,
    pub tcp_tw_reuse: Option<i64>,
    pub tcp_timestamps: Option<i64>,
    pub tcp_max_tw_buckets: Option<i64>,
    /// Its /proc/net/sockstat.
    pub sockstat_tw: Option<u64>,
    pub sockstat_inuse: Option<u64>,
    pub tw_recycled_per_s: Option<f64>,
    pub tw_overflow_per_s: Option<f64>,
    /// The sysctls the budget and the advice depend on differ from the
    /// host's.
    pub differs_from_host: bool,
    /// Its connection-tracking table; null when the kernel has no
    /// nf_conntrack (or it was not read).
    pub conntrack: Option<ConntrackRow>,
}

/// One namespace's nf_conntrack table: its entries against the host-wide
/// limit, and the rates of its failure counters between the last two
/// readings (`None` without `/proc/net/stat/nf_conntrack`, or before a
/// second reading).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConntrackRow {
    pub netns: u32,
    pub netns_name: String,
    /// The host's namespace.
    pub host: bool,
    /// `nf_conntrack_count`.
    pub count: u64,
    /// `nf_conntrack_max`.
    pub max: Option<u64>,
    /// count / max.
    pub fill: Option<f64>,
    pub insert_failed_per_s: Option<f64>,
    pub drop_per_s: Option<f64>,
    pub early_drop_per_s: Option<f64>,
    /// The cumulative counters as last read (the exporter's).
    #[serde(skip)]
    pub stats: Option<crate::input::ConntrackStats>,
}

impl ConntrackRow {
    /// Entries dropped or refused per second (drop + early_drop +
    /// insert_failed): new connections the table turned away or made
    /// room for by evicting others.
    pub fn failures_per_s(&self) -> f64 {
        [
            self.insert_failed_per_s,
            self.drop_per_s,
            self.early_drop_per_s,
        ]
        .iter()
        .flatten()
        .sum()
    }

    /// [`Self::failures_per_s`], `None` before two readings of the
    /// failure counters.
    pub fn turned_away_per_s(&self) -> Option<f64> {
        self.insert_failed_per_s
            .or(self.drop_per_s)
            .or(self.early_drop_per_s)
            .map(|_| self.failures_per_s())
    }

    /// Full (at least `verdict::CONNTRACK_FULL` of the limit) or turning
    /// entries away: what draws the `conntrack_full` advice.
    pub fn alarming(&self) -> bool {
        self.fill
            .is_some_and(|f| f >= super::verdict::CONNTRACK_FULL)
            || self.failures_per_s() > 0.0
    }

    /// This row as one line of text ("conntrack 20/262144 (0.0%), ...",
    /// with the namespace's name when it is not the host's).
    pub fn text(&self) -> String {
        let mut s = crate::render::fmt::conntrack(self.count, self.max, self.turned_away_per_s());
        if !self.host {
            s.push_str(&format!(" in {}", self.netns_name));
        }
        s
    }

    /// From a namespace's last two counter readings.
    pub(crate) fn of(
        netns: u32,
        netns_name: String,
        host: bool,
        prev: Option<KernelCounters>,
        cur: Option<KernelCounters>,
    ) -> Option<ConntrackRow> {
        let ct = cur?.conntrack?;
        let rate = |f: fn(&crate::input::ConntrackStats) -> u64| -> Option<f64> {
            let a = prev?.conntrack?.stats?;
            let b = ct.stats?;
            let dt_s = cur?.ts_ns.checked_sub(prev?.ts_ns).filter(|&d| d > 0)? as f64 / 1e9;
            Some(f(&b).saturating_sub(f(&a)) as f64 / dt_s)
        };
        Some(ConntrackRow {
            netns,
            netns_name,
            host,
            count: ct.count,
            max: ct.max,
            fill: ct
                .max
                .filter(|&m| m > 0)
                .map(|m| ct.count as f64 / m as f64),
            insert_failed_per_s: rate(|s| s.insert_failed),
            drop_per_s: rate(|s| s.drop),
            early_drop_per_s: rate(|s| s.early_drop),
            stats: ct.stats,
        })
    }
}

/// Rate of a cumulative counter between two readings.
pub(crate) fn counter_rate(
    prev: Option<KernelCounters>,
    cur: Option<KernelCounters>,
    f: impl Fn(&KernelCounters) -> u64,
) -> Option<f64> {
    let (a, b) = (prev?, cur?);
    let dt_s = b.ts_ns.checked_sub(a.ts_ns).filter(|&d| d > 0)? as f64 / 1e9;
    // A counter going backwards means a reset (e.g. namespace change).
    Some(f(&b).saturating_sub(f(&a)) as f64 / dt_s)
}

/// The namespaces other than the host's, capped like the other tables.
#[derive(Clone, Debug)]
pub(crate) struct Namespaces {
    pub(crate) table: Table<u32, NetnsAcc>,
}

impl Namespaces {
    pub(crate) fn new(max_keys: usize) -> Self {
        Namespaces {
            table: Table::new(max_keys),
        }
    }

    /// A task of service `owner` was seen in `netns` at `ts_ns`. Returns
    /// when the namespace's socket table was last read (`None` for a
    /// namespace folded into "others"): the event's caller needs both, and
    /// this is the one lookup of the namespace per event.
    pub(crate) fn note(&mut self, netns: u32, ts_ns: u64, owner: &ServiceId) -> Option<u64> {
        let (n, last_table_ns) = match self.table.map.get_mut(&netns) {
            Some(n) => {
                let t = n.last_table_ns;
                (n, t)
            }
            // New (never read yet) or folded: no table of its own.
            None => (self.table.entry(netns), None),
        };
        n.last_ns = n.last_ns.max(ts_ns);
        if owner_rank(owner) > n.owner.as_ref().map_or(0, owner_rank) {
            n.owner = Some(owner.clone());
        }
        last_table_ns
    }

    /// A service renamed (its runtime's names came): the namespaces it
    /// owns are named by the new name.
    pub(crate) fn rename_owner(&mut self, old: &ServiceId, new: &ServiceId) {
        for n in self.table.map.values_mut() {
            if n.owner.as_ref() == Some(old) {
                n.owner = Some(new.clone());
            }
        }
    }

    /// A reading made inside it.
    pub(crate) fn on_reading(&mut self, r: &NetnsInfo) {
        let n = self.table.entry(r.netns);
        n.last_ns = n.last_ns.max(r.ts_ns);
        if let Some(s) = &r.sysctls {
            n.sysctls = Some(s.clone());
        }
        if let Some(c) = r.counters {
            n.prev_counters = n.counters.replace(c);
        }
        n.error = r.error.clone();
        n.stale = r.stale;
    }

    pub(crate) fn get(&self, netns: u32) -> Option<&NetnsAcc> {
        self.table.map.get(&netns)
    }
}

/// The sysctls the budget and the advice quote differ.
pub fn advice_sysctls_differ(a: &Sysctls, b: &Sysctls) -> bool {
    a.port_range != b.port_range
        || a.reserved_ports != b.reserved_ports
        || a.tcp_tw_reuse != b.tcp_tw_reuse
        || a.tcp_timestamps != b.tcp_timestamps
        || a.tcp_max_tw_buckets != b.tcp_max_tw_buckets
}

/// Failures by errno summed over some destinations, EADDRNOTAVAIL first.
fn merged_errors<'a>(dests: impl Iterator<Item = &'a DestinationRow>) -> Vec<ErrnoCount> {
    let mut out: Vec<ErrnoCount> = Vec::new();
    for e in dests.flat_map(|d| &d.stats.connect_errors) {
        match out.iter_mut().find(|x| x.errno == e.errno) {
            Some(x) => x.count += e.count,
            None => out.push(e.clone()),
        }
    }
    out.sort_by_key(|c| {
        (
            c.errno != EADDRNOTAVAIL,
            std::cmp::Reverse(c.count),
            c.errno,
        )
    });
    out
}

/// Failures by cause summed over some destinations, in the engine's order.
fn merged_causes<'a>(dests: impl Iterator<Item = &'a DestinationRow>) -> Vec<CauseCount> {
    let mut out: Vec<CauseCount> = Vec::new();
    for c in dests.flat_map(|d| &d.stats.connect_errors_by_cause) {
        match out.iter_mut().find(|x| x.cause == c.cause) {
            Some(x) => x.count += c.count,
            None => out.push(c.clone()),
        }
    }
    out.sort_by_key(|c| {
        crate::event::FailCause::ALL
            .iter()
            .position(|k| *k == c.cause)
    });
    out
}

fn level_rank(level: &str) -> u8 {
    match level {
        "warning" => 0,
        "suggestion" => 1,
        _ => 2,
    }
}

/// Advice per namespace, each quoting its own namespace's values only and
/// named by it. With the host's namespace alone this is the advice as
/// before, marked as the host's.
pub(crate) fn advice_by_namespace(
    sys: &SystemModel,
    namespaces: &[NetnsRow],
    dests: &[DestinationRow],
    verdicts: &[Verdict],
    inbound: &[InboundRow],
    cfg: &VerdictConfig,
) -> Vec<Advice> {
    let host = namespaces.iter().find(|n| n.host);
    let host_ns = host.map(|n| n.netns);
    let mark = |mut v: Vec<Advice>, row: Option<&NetnsRow>, prefix: bool| {
        for a in &mut v {
            a.netns = row.map(|r| r.netns);
            a.netns_name = row.map(|r| r.netns_name.clone());
            if prefix && let Some(r) = row {
                a.text = if r.host || r.netns_name.starts_with("netns:") {
                    format!("{}: {}", r.netns_name, a.text)
                } else {
                    format!("{} (netns {}): {}", r.netns_name, r.netns, a.text)
                };
            }
        }
        v
    };
    // Without the host's namespace (no host record) nothing tells whose
    // values are whose: one advice list, as before namespaces were known.
    let pooling = |v: &&Verdict| v.verdict == "lacks_pooling";
    if host.is_none() || namespaces.iter().all(|n| n.host) {
        let all: Vec<&DestinationRow> = dests.iter().collect();
        let mut v = leak_advice(verdicts.iter());
        v.extend(verdict::advice(
            sys,
            &all,
            verdicts.iter().any(|v| pooling(&v)),
            inbound,
            cfg,
        ));
        return mark(v, host, false);
    }
    let of = |ns: Option<u32>| -> Vec<&DestinationRow> {
        dests
            .iter()
            .filter(|d| d.netns == ns || (ns == host_ns && d.netns.is_none()))
            .collect()
    };
    let mut out = Vec::new();
    // The host's own: its destinations, its failures.
    let host_dests = of(host_ns);
    let host_sys = SystemModel {
        connect_errors: merged_errors(host_dests.iter().copied()),
        connect_errors_by_cause: merged_causes(host_dests.iter().copied()),
        conntrack: host.and_then(|h| h.conntrack.clone()),
        ..sys.clone()
    };
    let host_verdicts = || {
        verdicts
            .iter()
            .filter(|v| v.netns == host_ns || v.netns.is_none())
    };
    let any = host_verdicts().any(|v| pooling(&v));
    // A leak first: it is why the ports are gone.
    let mut v = leak_advice(host_verdicts());
    v.extend(verdict::advice(&host_sys, &host_dests, any, inbound, cfg));
    out.extend(mark(v, host, true));
    for n in namespaces.iter().filter(|n| !n.host) {
        let ds = of(Some(n.netns));
        let mine = || verdicts.iter().filter(|v| v.netns == Some(n.netns));
        if ds.is_empty() && mine().next().is_none() {
            continue;
        }
        let any = mine().any(|v| pooling(&v));
        let mut v = Vec::new();
        let note = |key, text: String| Advice {
            level: "note",
            key,
            text,
            netns: None,
            netns_name: None,
        };
        if n.sysctls.is_none() {
            v.push(note(
                "netns_unread",
                format!(
                    "not read ({}): its port range, budget and sysctls are unknown, so its \
                     pressure is not shown and no sysctl advice is given; its counts come \
                     from events alone",
                    n.error.as_deref().unwrap_or("not yet")
                ),
            ));
        } else if n.stale {
            v.push(note(
                "netns_stale",
                "its tasks are gone: the values shown are the last ones read".into(),
            ));
        }
        // Its own values only: nothing of the host's is passed in.
        let ns_sys = SystemModel {
            sysctls: n.sysctls.clone(),
            port_range: n.port_range,
            budget: n.budget,
            tw_recycled_per_s: n.tw_recycled_per_s,
            tw_overflow_per_s: n.tw_overflow_per_s,
            connect_errors: merged_errors(ds.iter().copied()),
            connect_errors_by_cause: merged_causes(ds.iter().copied()),
            conntrack: n.conntrack.clone(),
            ..SystemModel::default()
        };
        v.extend(leak_advice(mine()));
        v.extend(verdict::advice(&ns_sys, &ds, any, &[], cfg));
        out.extend(mark(v, Some(n), true));
    }
    out.sort_by_key(|a| level_rank(a.level));
    out
}

/// One warning per `leaks_sockets` verdict: the header shows the most
/// important advice, and a leak is why connects fail.
fn leak_advice<'a>(verdicts: impl Iterator<Item = &'a Verdict>) -> Vec<Advice> {
    verdicts
        .filter(|v| v.verdict == "leaks_sockets")
        .map(|v| Advice {
            level: "warning",
            key: "leaks_sockets",
            text: format!(
                "{} (pid {}) leaks sockets: {} in CLOSE_WAIT hold {} ports (to {} most); it \
                 never closes connections the peer closed{}",
                v.service,
                v.pids.first().copied().unwrap_or(0),
                v.close_wait.unwrap_or(0),
                v.held_ports.unwrap_or(0),
                crate::render::fmt::addr_port(v.daddr, v.dport),
                match v.failures_caused {
                    Some(n) if n > 0 => format!(
                        "; {n} EADDRNOTAVAIL failure(s) are for want of the ports it holds"
                    ),
                    _ => String::new(),
                }
            ),
            netns: None,
            netns_name: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(kind: ServiceKind, name: &str) -> ServiceId {
        ServiceId::new(kind, name)
    }

    #[test]
    fn a_namespace_is_named_by_its_pod_over_its_processes() {
        let mut ns = Namespaces::new(16);
        ns.note(7, 1, &svc(ServiceKind::Comm, "curl"));
        let name = |ns: &Namespaces| netns_name(7, 1, ns.get(7).and_then(|n| n.owner.as_ref()));
        assert_eq!(name(&ns), "netns:7");
        ns.note(7, 2, &svc(ServiceKind::Systemd, "ssh.service"));
        assert_eq!(name(&ns), "ssh.service");
        ns.note(7, 3, &svc(ServiceKind::Pod, "checkout-7f9"));
        assert_eq!(name(&ns), "pod:checkout-7f9");
        // A sidecar's process or a unit seen later does not rename it.
        ns.note(7, 4, &svc(ServiceKind::Docker, "abc"));
        ns.note(7, 5, &svc(ServiceKind::Comm, "envoy"));
        assert_eq!(name(&ns), "pod:checkout-7f9");
    }

    #[test]
    fn the_host_namespace_is_host_whatever_runs_in_it() {
        let pod = svc(ServiceKind::Pod, "p");
        assert_eq!(netns_name(1, 1, Some(&pod)), "host");
        assert_eq!(netns_name(2, 1, None), "netns:2");
    }

    #[test]
    fn a_failed_reading_keeps_the_last_known_values_and_says_why() {
        let mut ns = Namespaces::new(16);
        let sysctls = Sysctls {
            port_range: (40_000, 40_999),
            tcp_tw_reuse: Some(0),
            ..Sysctls::default()
        };
        ns.on_reading(&NetnsInfo {
            ts_ns: 1,
            netns: 9,
            sysctls: Some(sysctls.clone()),
            ..NetnsInfo::default()
        });
        ns.on_reading(&NetnsInfo {
            ts_ns: 2,
            netns: 9,
            error: Some("no task left in it (last known values)".into()),
            stale: true,
            ..NetnsInfo::default()
        });
        let n = ns.get(9).expect("kept");
        assert_eq!(n.sysctls.as_ref(), Some(&sysctls));
        assert!(n.stale);
        assert!(n.error.as_deref().is_some_and(|e| e.contains("no task")));
    }

    #[test]
    fn namespaces_past_the_cap_are_folded_and_counted() {
        let mut ns = Namespaces::new(100);
        let owner = svc(ServiceKind::Pod, "p");
        for i in 0..1_000 {
            ns.note(10_000 + i, 1, &owner);
        }
        assert_eq!(ns.table.map.len(), 100);
        let folded = ns.table.folded.estimate();
        assert!((850..=950).contains(&folded), "{folded}");
    }
}
