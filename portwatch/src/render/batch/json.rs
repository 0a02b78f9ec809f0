//! `top --batch --json`: one object per interval (fields: see the module
//! documentation of [`super`]).

use std::io::{self, Write};

use serde::Serialize;

use crate::engine::netns::{ConntrackRow, NetnsRow};
use crate::engine::service::ServiceId;
use crate::engine::{
    Advice, BoundRow, CauseCount, DestinationRow, ErrnoCount, InboundRow, Model, Others, Stats,
    Verdict,
};

#[derive(Serialize, Debug, PartialEq)]
pub struct BatchJson<'a> {
    pub time: Option<String>,
    pub interval_s: f64,
    pub observed_s: f64,
    pub system: SystemJson<'a>,
    pub services: Vec<ServiceJson<'a>>,
    pub processes: Vec<ProcessJson<'a>>,
    /// Serialized as the model has them (rows with `…stats` flattened).
    pub destinations: &'a [DestinationRow],
    pub pairs: Vec<PairJson<'a>>,
    pub inbound: &'a [InboundRow],
    /// Processes that bind() client sockets before connect() (ports held
    /// against every destination), or whose bind() failed.
    pub bound: &'a [BoundRow],
    pub verdicts: Vec<VerdictJson<'a>>,
    /// Every network namespace seen, the host's first.
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
    pub connect_errors_by_cause: &'a [CauseCount],
    pub syn_retransmits: u64,
    pub conntrack: Option<&'a ConntrackRow>,
    pub lost_events: u64,
    pub close_wait: u64,
    pub close_wait_unattributed: u64,
    pub owner_lookup_failures: u64,
    pub advice: &'a [Advice],
}

#[derive(Serialize, Debug, PartialEq)]
pub struct ServiceRef<'a> {
    pub name: &'a str,
    pub kind: &'static str,
    /// A container's full id or a pod's uid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a str>,
    /// A pod's Kubernetes namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<&'a str>,
    /// The Kubernetes container, when the runtime named it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<&'a str>,
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
        close_wait: v.close_wait,
        held_ports: v.held_ports,
        held_for_s: v.held_for_s,
        failures_caused: v.failures_caused,
        evidence: &v.evidence,
        fix: &v.fix,
        call_sites: &v.call_sites,
        runtime: v.runtime.as_ref(),
        protocol: v.protocol,
    }
}

pub fn service_ref<'a>(s: &'a ServiceId, pids: &'a [u32]) -> ServiceRef<'a> {
    ServiceRef {
        name: &s.name,
        kind: s.kind.as_str(),
        id: s.id.as_deref(),
        namespace: s.namespace.as_deref(),
        container: s.container.as_deref(),
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
    pub stats: &'a Stats,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct ProcessJson<'a> {
    pub pid: u32,
    pub comm: &'a str,
    pub service: &'a str,
    #[serde(flatten)]
    pub stats: &'a Stats,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct PairJson<'a> {
    pub service: ServiceRef<'a>,
    pub netns: Option<u32>,
    pub netns_name: Option<&'a str>,
    pub daddr: String,
    pub dport: u16,
    #[serde(flatten)]
    pub stats: &'a Stats,
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
    pub close_wait: Option<u64>,
    pub held_ports: Option<u64>,
    pub held_for_s: Option<f64>,
    pub failures_caused: Option<u64>,
    pub evidence: &'a str,
    pub fix: &'a str,
    /// Where the service opens these connections (sampled connect()
    /// stacks); absent while none was sampled.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub call_sites: &'a [crate::engine::callsites::CallSite],
    /// `lacks_pooling`: the client's runtime `{name, evidence}`, null while
    /// unknown (and for other verdicts).
    pub runtime: Option<&'a crate::engine::ClientRuntime>,
    /// `lacks_pooling`: the protocol the destination port suggests, or null.
    pub protocol: Option<&'static str>,
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
            connect_errors_by_cause: &sys.connect_errors_by_cause,
            syn_retransmits: sys.syn_retransmits,
            conntrack: sys.conntrack.as_ref(),
            lost_events: sys.lost_events,
            close_wait: sys.close_wait,
            close_wait_unattributed: sys.close_wait_unattributed,
            owner_lookup_failures: sys.owner_lookup_failures,
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
                stats: &s.stats,
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
                stats: &p.stats,
            })
            .collect(),
        destinations: &model.destinations[..rows.min(model.destinations.len())],
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
                stats: &p.stats,
            })
            .collect(),
        inbound: &model.inbound[..rows.min(model.inbound.len())],
        bound: &model.bound[..rows.min(model.bound.len())],
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
