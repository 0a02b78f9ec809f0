//! The "lacks_pooling" verdict and the system advice.
//!
//! A service → destination pair lacks connection reuse when it opens new
//! connections at a sustained rate and they live briefly: one connection per
//! request. Who closes first does not decide the verdict, only its weight and
//! its words: when this host closes first, TIME_WAIT burns this host's ports
//! to that destination; when the peer does, each request still pays a
//! handshake, and TIME_WAIT piles up on the server instead.

use std::net::IpAddr;

use super::VerdictConfig;
use super::model::{
    Advice, CauseCount, ClientRuntime, DestinationRow, InboundRow, PairRow, SystemModel, Verdict,
};
use super::nat::NAT_DEMAND_HIGH;
use super::service::ServiceId;
use crate::event::FailCause;
use crate::input::Sysctls;

use crate::render::fmt::{addr_port, ms_text as ms, pct};

/// The verdict for one pair, if it lacks pooling. Pairs whose churn stopped
/// are filtered out by the caller (it knows the per-second history).
pub fn lacks_pooling(
    cfg: &VerdictConfig,
    pair: &PairRow,
    dest: Option<&DestinationRow>,
    budget: Option<u64>,
    sysctls: Option<&Sysctls>,
    runtime: Option<&ClientRuntime>,
) -> Option<Verdict> {
    let s = &pair.stats;
    let p50 = s.lifetime_p50_ms?;
    // A pooled client opens few connections and keeps them: its rate stays
    // low however many requests it sends. A burst is active only a few of
    // the last 10 seconds.
    if s.new_per_s_10s < cfg.min_new_per_s
        || s.active_s_10s < cfg.min_active_s
        || p50 > cfg.max_lifetime_p50_ms
    {
        return None;
    }
    let budget = budget.filter(|&b| b > 0);
    let budget_share = budget.map_or(0.0, |b| s.time_wait as f64 / b as f64);
    let local = s.closed_locally_share.unwrap_or(0.0);
    let dst = addr_port(pair.daddr, pair.dport);

    let mut evidence = format!(
        "{:.1} new connections/s to {dst} (new connections in {}/10 of the last seconds), \
         median lifetime {}: about one connection per request.",
        s.new_per_s_10s,
        s.active_s_10s,
        ms(s.lifetime_p50_ms)
    );
    if local >= 0.5 {
        evidence.push_str(&format!(
            " This host closes first ({} of closes), so each connection leaves a TIME_WAIT \
             socket holding a local port for 60 s: {} held now",
            pct(local),
            s.time_wait
        ));
        match budget {
            Some(b) => evidence.push_str(&format!(
                ", {} of the {b}-port budget to this destination.",
                pct(budget_share)
            )),
            None => evidence.push('.'),
        }
        if let Some(d) = dest.filter(|d| d.forecast.exceeds_budget) {
            evidence.push_str(&format!(
                " At this rate TIME_WAIT alone would hold ~{:.0} ports, more than the budget",
                d.forecast.steady_time_wait
            ));
            match d.forecast.exhaustion_in_s {
                Some(t) if t <= 0.0 => evidence.push_str(": the ports are exhausted now."),
                Some(t) => evidence.push_str(&format!(": exhausted in ~{t:.0} s.")),
                None => evidence.push('.'),
            }
        }
    } else {
        evidence.push_str(&format!(
            " The peer closes first ({} of closes by this host; HTTP/1.0 or \
             `Connection: close`?): TIME_WAIT piles up on the server, not here, but every \
             request still pays a handshake.",
            pct(local)
        ));
    }
    if s.connect_errors_total > 0 {
        let n = s.connect_errors_total;
        evidence.push_str(&format!(
            " {n} connect failure{} ({}).",
            if n == 1 { "" } else { "s" },
            failure_causes_text(&s.connect_errors_by_cause)
        ));
    }

    let protocol = protocol_of(pair.dport);
    let mut fix = reuse_text(&pair.service.to_string(), &dst, runtime, protocol);
    if local >= 0.5 {
        fix.push_str(" To buy time meanwhile: widen net.ipv4.ip_local_port_range");
        if let Some(sc) = sysctls {
            fix.push_str(&format!(" (now {}-{})", sc.port_range.0, sc.port_range.1));
        }
        fix.push_str(
            "; net.ipv4.tcp_tw_reuse=1 lets this connecting side reuse TIME_WAIT ports \
             if TCP timestamps are on at both ends; connecting from more local addresses \
             multiplies the budget. tcp_fin_timeout does not shorten TIME_WAIT.",
        );
    } else {
        fix.push_str(" The server's TIME_WAIT load goes away with it.");
    }
    Some(Verdict {
        service: pair.service.clone(),
        pids: pair.pids.clone(),
        netns: pair.netns,
        netns_name: pair.netns_name.clone(),
        daddr: pair.daddr,
        dport: pair.dport,
        verdict: "lacks_pooling",
        new_per_s: s.new_per_s_10s,
        lifetime_p50_ms: s.lifetime_p50_ms,
        time_wait: s.time_wait,
        budget_share,
        closed_locally_share: s.closed_locally_share,
        connect_errors_total: s.connect_errors_total,
        close_wait: None,
        held_ports: None,
        held_for_s: None,
        failures_caused: None,
        evidence,
        fix,
        call_sites: Vec::new(),
        runtime: runtime.cloned(),
        protocol,
    })
}

/// The protocol a well-known destination port suggests.
pub fn protocol_of(port: u16) -> Option<&'static str> {
    Some(match port {
        5432 => "postgres",
        6379 => "redis",
        3306 => "mysql",
        11211 => "memcached",
        80 | 443 | 8080 | 8443 => "http",
        _ => return None,
    })
}

/// The first sentence(s) of the `lacks_pooling` fix: how to reuse
/// connections, in the words of the client's runtime and protocol where
/// they are known, and why portwatch believes the runtime.
pub fn reuse_text(
    service: &str,
    dst: &str,
    runtime: Option<&ClientRuntime>,
    protocol: Option<&str>,
) -> String {
    let rt = runtime.map(|r| r.name.as_str());
    let how = match (protocol, rt) {
        (Some("postgres"), Some("Python")) => {
            "open one pool at start-up (psycopg_pool.ConnectionPool, SQLAlchemy's engine pool) \
             and take connections from it instead of psycopg.connect() per query, or put \
             PgBouncer in front of the database"
        }
        (Some("postgres"), Some("Go")) => {
            "share one *sql.DB or pgxpool.Pool for the process instead of opening one per \
             query (sql.Open per request defeats its pool), or put PgBouncer in front of the \
             database"
        }
        (Some("postgres"), Some("Java")) => {
            "take connections from a pool (HikariCP) instead of DriverManager.getConnection() \
             per query, or put PgBouncer in front of the database"
        }
        (Some("postgres"), Some("Node.js")) => {
            "use one pg.Pool for the process instead of a new pg.Client per query, or put \
             PgBouncer in front of the database"
        }
        (Some("postgres"), _) => {
            "keep libpq connections open across queries with the driver's pool (psycopg_pool, \
             pgx pool, HikariCP, pg.Pool) instead of a connect per query, or put PgBouncer in \
             front of the database"
        }
        (Some("redis"), Some("Python")) => {
            "create one redis.Redis (or a redis.ConnectionPool) at start-up and share it; a \
             client per request opens a connection per request"
        }
        (Some("redis"), Some("Go")) => {
            "create one redis.Client (go-redis pools its connections) and share it instead of \
             one per request"
        }
        (Some("redis"), _) => {
            "share one client and its connection pool (redis-py ConnectionPool, go-redis \
             Client, Jedis JedisPool, ioredis) instead of a client per request"
        }
        (Some("mysql"), _) => {
            "keep connections open with the driver's pool (database/sql's DB, HikariCP, \
             SQLAlchemy's pool, mysql2 createPool) instead of a connect per query, or put \
             ProxySQL in front"
        }
        (Some("memcached"), _) => {
            "keep one memcached client (and its connections) for the process instead of one \
             per request"
        }
        (_, Some("Python")) => {
            "use one requests.Session() (it keeps connections alive and pools them) instead of \
             requests.get()/post() per call, or a urllib3.PoolManager shared by the process"
        }
        (_, Some("Go")) => {
            "reuse one http.Client for the process, read each response body to EOF and close \
             it, and raise http.Transport.MaxIdleConnsPerHost (default 2) to the requests in \
             flight to this host"
        }
        (_, Some("Java")) => {
            "let HttpURLConnection keep connections alive (http.keepAlive, read and close each \
             stream, no `Connection: close`) or use Apache HttpClient with a \
             PoolingHttpClientConnectionManager (or one shared java.net.http.HttpClient)"
        }
        (_, Some("Node.js")) => {
            "pass an http.Agent({ keepAlive: true }) (the default agent before Node 19 closes \
             each connection) to the requests, or a keep-alive fetch dispatcher"
        }
        (_, Some("Ruby")) => {
            "keep one Net::HTTP started (Net::HTTP.start with a block for many requests) or use \
             a persistent client (net-http-persistent, Faraday with a persistent adapter)"
        }
        (_, Some("Perl")) => {
            "create LWP::UserAgent with keep_alive => N (a LWP::ConnCache) or reuse one \
             HTTP::Tiny object (keep_alive is on by default) instead of one per request"
        }
        _ => "enable HTTP keep-alive or a connection pool in the client",
    };
    match runtime {
        Some(r) => format!(
            "Reuse connections from {service} to {dst}, a {} client ({}): {how}.",
            r.name, r.evidence
        ),
        None => format!("Reuse connections from {service} to {dst}: {how}."),
    }
}

/// Ports one process holds to one destination: ((remote addr, remote
/// port), (live sockets, of them in CLOSE_WAIT)).
pub type HeldTo = ((IpAddr, u16), (u64, u64));

/// What the `leaks_sockets` verdict is decided on: one process's holding
/// in one namespace (see `engine::leaks`), with its top destination's
/// budget and the failures to the destinations it holds.
pub struct LeakFacts<'a> {
    pub service: &'a ServiceId,
    pub pid: u32,
    pub comm: &'a str,
    pub netns: Option<u32>,
    pub netns_name: Option<String>,
    pub close_wait: u64,
    pub stuck: u64,
    pub grew: u64,
    pub held: u64,
    pub oldest_s: f64,
    /// (remote addr, port, held, close_wait), most held first.
    pub dests: &'a [HeldTo],
    pub budget: Option<u64>,
    /// Failed connects to the destinations it holds most ports of:
    /// (all causes, EADDRNOTAVAIL for want of a port).
    pub failures: (u64, u64),
}

/// CLOSE_WAIT sockets held by one process: a leak when at least
/// `leak_min_close_wait` of them have been held for `leak_min_age_s` or
/// more (a program that reads EOF closes within milliseconds) and they
/// are growing (more appeared at least that long after the oldest) or
/// high (at least ten times the minimum, or half the port budget to a
/// destination). A pool whose idle connections the server closed at once
/// is neither once it settles.
pub fn leaks_sockets(cfg: &VerdictConfig, f: &LeakFacts) -> Option<Verdict> {
    let ((daddr, dport), (top_held, top_cw)) = *f.dests.first()?;
    let budget = f.budget.filter(|&b| b > 0);
    let share = budget.map_or(0.0, |b| top_held as f64 / b as f64);
    let growing = f.grew > 0;
    let high = f.close_wait >= cfg.leak_min_close_wait.saturating_mul(10) || share >= 0.5;
    if f.stuck < cfg.leak_min_close_wait.max(1) || !(growing || high) {
        return None;
    }
    let dst = addr_port(daddr, dport);
    let mut evidence = format!(
        "{} (pid {}) holds {} socket{} in CLOSE_WAIT: the peer closed them and the process \
         never called close(). The oldest has been held for at least {:.0} s",
        f.comm,
        f.pid,
        f.close_wait,
        if f.close_wait == 1 { "" } else { "s" },
        f.oldest_s
    );
    if growing {
        evidence.push_str(&format!(", and {} more appeared since", f.grew));
    }
    evidence.push_str(&format!(
        ". They hold {} local port{} ({top_cw} in CLOSE_WAIT to {dst}",
        f.held,
        if f.held == 1 { "" } else { "s" },
    ));
    match budget {
        Some(b) => evidence.push_str(&format!(
            ", {} of its {b}-port budget), until the process closes them or exits.",
            pct(share)
        )),
        None => evidence.push_str("), until the process closes them or exits."),
    }
    if f.dests.len() > 1 {
        evidence.push_str(&format!(" {} destinations in all.", f.dests.len()));
    }
    let (all, exhausted) = f.failures;
    if exhausted > 0 {
        evidence.push_str(&format!(
            " {exhausted} connect() call{} to there failed with EADDRNOTAVAIL (no free local \
             port): {} held by this leak.",
            if exhausted == 1 { "" } else { "s" },
            if exhausted == 1 {
                "its port is"
            } else {
                "their ports are"
            }
        ));
    }
    let fix = format!(
        "Close sockets in {}: when a read returns 0 (the peer closed) or fails, close the \
         connection; make sure every response body is read to the end and closed, and every \
         connection goes back to its pool or is closed on error paths. The ports come back \
         when it closes them; restarting the process frees them at once. Widening the port \
         range or tcp_tw_reuse does not help: these are not TIME_WAIT.",
        f.service
    );
    Some(Verdict {
        service: f.service.clone(),
        pids: vec![f.pid],
        netns: f.netns,
        netns_name: f.netns_name.clone(),
        daddr,
        dport,
        verdict: "leaks_sockets",
        new_per_s: 0.0,
        lifetime_p50_ms: None,
        time_wait: 0,
        budget_share: share,
        closed_locally_share: None,
        connect_errors_total: all,
        close_wait: Some(f.close_wait),
        held_ports: Some(f.held),
        held_for_s: Some(f.oldest_s),
        failures_caused: Some(exhausted),
        evidence,
        fix,
        call_sites: Vec::new(),
        runtime: None,
        protocol: None,
    })
}

/// "3 EADDRNOTAVAIL: no free local port, 1 timed_out": each cause in words
/// that say whether ports are the problem.
pub fn failure_causes_text(causes: &[CauseCount]) -> String {
    let parts: Vec<String> = causes
        .iter()
        .map(|c| match c.cause {
            FailCause::PortExhaustion => format!("{} EADDRNOTAVAIL: no free local port", c.count),
            FailCause::AddressUnavailable => format!(
                "{} EADDRNOTAVAIL for an unassigned source address or a route, not ports",
                c.count
            ),
            FailCause::PortInUse => format!(
                "{} EADDRNOTAVAIL: the port bound before connect() is already connected there",
                c.count
            ),
            other => format!("{} {}", c.count, other.as_str()),
        })
        .collect();
    parts.join(", ")
}

fn cause_count(causes: &[CauseCount], cause: FailCause) -> u64 {
    causes
        .iter()
        .find(|c| c.cause == cause)
        .map_or(0, |c| c.count)
}

/// Share of `nf_conntrack_max` at which the table counts as full.
pub const CONNTRACK_FULL: f64 = 0.9;

/// System-wide advice from the sysctls and what was observed. Only says
/// what is true on Linux: tcp_tw_reuse needs timestamps on both ends and
/// only helps the connecting side; tcp_fin_timeout does not shorten
/// TIME_WAIT; tcp_tw_recycle is gone (removed in Linux 4.12).
pub fn advice(
    sys: &SystemModel,
    dests: &[&DestinationRow],
    any_verdict: bool,
    inbound: &[InboundRow],
    cfg: &VerdictConfig,
) -> Vec<Advice> {
    let mut out = Vec::new();
    let mut push = |level, key, text: String| {
        out.push(Advice {
            level,
            key,
            text,
            netns: None,
            netns_name: None,
        })
    };
    let worst = dests.iter().map(|d| d.pressure).fold(0.0, f64::max);
    // Ports a leak holds are not TIME_WAIT: neither they nor the failures
    // for want of them call for the TIME_WAIT advice.
    let leaked = |d: &&&DestinationRow| d.held_by.as_ref().is_some_and(|h| h.leaks_sockets);
    let worst_tw = dests
        .iter()
        .filter(|d| !leaked(d))
        .map(|d| d.pressure)
        .fold(0.0, f64::max);
    let leak_exhaustion: u64 = dests
        .iter()
        .filter(|d| leaked(d))
        .map(|d| d.stats.port_exhaustion_total)
        .sum();
    let tw_pressure = worst_tw >= 0.2
        || any_verdict
        || sys.tw_overflow_per_s.is_some_and(|r| r > 0.0)
        || cause_count(&sys.connect_errors_by_cause, FailCause::PortExhaustion) > leak_exhaustion;

    if worst >= 0.8 {
        push(
            "warning",
            "ports_nearly_exhausted",
            format!(
                "a destination holds {} of its ephemeral port budget; new connects to it \
                 will fail with EADDRNOTAVAIL",
                pct(worst)
            ),
        );
    }
    if let Some(s) = &sys.sysctls {
        let (lo, hi) = s.port_range;
        if let Some(b) = sys.budget
            && !s.reserved_ports.is_empty()
        {
            let size = u64::from(hi.saturating_sub(lo)) + 1;
            if b < size {
                push(
                    "note",
                    "reserved_ports",
                    format!(
                        "ip_local_reserved_ports takes {} ports out of the range {lo}-{hi}",
                        size - b
                    ),
                );
            }
        }
        if tw_pressure {
            if sys.budget.is_some_and(|b| b < 28_232) {
                push(
                    "suggestion",
                    "port_range_small",
                    format!(
                        "net.ipv4.ip_local_port_range is {lo}-{hi} ({} ports); a wider range \
                         (e.g. 10240-65535) buys time, pooling fixes the cause",
                        sys.budget.unwrap_or(0)
                    ),
                );
            }
            match (s.tcp_tw_reuse, s.tcp_timestamps) {
                (_, Some(0)) => push(
                    "suggestion",
                    "timestamps_off",
                    "net.ipv4.tcp_timestamps=0: tcp_tw_reuse cannot work without TCP \
                     timestamps (on both ends)"
                        .into(),
                ),
                (Some(0), _) => push(
                    "suggestion",
                    "tw_reuse_off",
                    "net.ipv4.tcp_tw_reuse=0: setting it to 1 lets connect() reuse a TIME_WAIT \
                     port for a new connection to the same destination when TCP timestamps \
                     are on at both ends; it only helps this connecting side, not a server"
                        .into(),
                ),
                (Some(2), _) => push(
                    "suggestion",
                    "tw_reuse_loopback_only",
                    "net.ipv4.tcp_tw_reuse=2 (the default) reuses TIME_WAIT ports for \
                     loopback only; 1 extends it to all destinations (needs TCP timestamps \
                     on both ends, helps only the connecting side)"
                        .into(),
                ),
                _ => {}
            }
            if let Some(fin) = s.tcp_fin_timeout {
                push(
                    "note",
                    "fin_timeout",
                    format!(
                        "tcp_fin_timeout ({fin} s) only bounds orphaned FIN_WAIT2 sockets; it \
                         does not shorten TIME_WAIT, which is fixed at 60 s on Linux"
                    ),
                );
            }
            push(
                "note",
                "tw_recycle_gone",
                "tcp_tw_recycle no longer exists (removed in Linux 4.12); advice to set it \
                 is obsolete"
                    .into(),
            );
        }
        if let (Some(max), Some(r)) = (s.tcp_max_tw_buckets, sys.tw_overflow_per_s)
            && r > 0.0
        {
            push(
                "warning",
                "tw_buckets_overflow",
                format!(
                    "tcp_max_tw_buckets ({max}) is reached ({r:.1}/s TCPTimeWaitOverflow): the \
                     kernel destroys TIME_WAIT sockets early, which hides the symptom and \
                     risks stray segments hitting new connections"
                ),
            );
        }
    }
    if sys.tw_recycled_per_s.is_some_and(|r| r > 0.0) {
        push(
            "note",
            "tw_reuse_working",
            format!(
                "tcp_tw_reuse is reusing TIME_WAIT ports ({:.1}/s TWRecycled)",
                sys.tw_recycled_per_s.unwrap_or(0.0)
            ),
        );
    }
    for i in inbound {
        let s = &i.stats;
        if s.new_per_s_10s >= cfg.min_new_per_s
            && s.active_s_10s >= cfg.min_active_s
            && s.lifetime_p50_ms
                .is_some_and(|p| p <= cfg.max_lifetime_p50_ms)
        {
            push(
                "note",
                "inbound_churn",
                format!(
                    "inbound churn on local port {}: {:.1} accepted connections/s living {}; \
                     the clients of this server lack pooling (fix it in them)",
                    i.lport,
                    s.new_per_s_10s,
                    ms(s.lifetime_p50_ms)
                ),
            );
        }
    }
    let unavailable = cause_count(&sys.connect_errors_by_cause, FailCause::AddressUnavailable);
    if unavailable > 0 {
        push(
            "warning",
            "address_unavailable",
            format!(
                "{unavailable} connect() call(s) failed with EADDRNOTAVAIL that is not port \
                 exhaustion: the source address they bind to is not assigned on this host, or \
                 no route matches it; widening the port range or pooling will not help (see \
                 the Failures view for the process and destination)"
            ),
        );
    }
    for d in dests {
        let unanswered: u64 = d
            .stats
            .connect_errors_by_cause
            .iter()
            .filter(|c| c.cause.is_unanswered())
            .map(|c| c.count)
            .sum();
        if unanswered == 0 {
            continue;
        }
        let by: Vec<String> = d
            .stats
            .connect_errors_by_cause
            .iter()
            .filter(|c| c.cause.is_unanswered())
            .map(|c| format!("{} {}", c.count, c.cause.as_str()))
            .collect();
        push(
            "warning",
            "handshakes_unanswered",
            format!(
                "{unanswered} connection(s) to {} never got an answer to their SYN ({}{}; \
                 waited {} ms at the median): not port exhaustion on this host. A firewall \
                 dropping SYNs, a full listen backlog at the server, or a NAT gateway or \
                 conntrack table out of room; if the last, pooling connections is the fix",
                addr_port(d.daddr, d.dport),
                by.join(", "),
                match d.stats.syn_retransmits {
                    0 => String::new(),
                    n => format!("; {n} SYN retransmission(s)"),
                },
                d.stats
                    .failed_handshake_p50_ms
                    .map_or("?".into(), |m| format!("{m:.0}")),
            ),
        );
    }
    let unanswered_recently = dests.iter().any(|d| d.unanswered_recently);
    if let Some(ct) = &sys.conntrack {
        let turned_away = ct.failures_per_s();
        if ct.alarming() {
            let rate = |r: Option<f64>| r.map_or("?".into(), |r| format!("{r:.1}"));
            push(
                "warning",
                "conntrack_full",
                format!(
                    "the connection-tracking table holds {} of {} entries{}; {turned_away:.1}/s turned away \
                     (drop {}, early_drop {}, insert_failed {}): {}. Fewer, longer-lived \
                     connections (pooling) need fewer entries; raising \
                     net.netfilter.nf_conntrack_max only buys room",
                    ct.count,
                    ct.max.map_or("?".into(), |m| m.to_string()),
                    ct.fill.map_or(String::new(), |f| format!(" ({})", pct(f))),
                    rate(ct.drop_per_s),
                    rate(ct.early_drop_per_s),
                    rate(ct.insert_failed_per_s),
                    if unanswered_recently {
                        "handshakes here go unanswered at the same time, so the likely cause \
                         of those timeouts is conntrack exhaustion"
                    } else {
                        "a full table drops the first packet of new connections, which \
                         clients see as SYNs without an answer"
                    },
                ),
            );
        }
    }
    for d in dests {
        let Some(demand) = d.nat_port_demand else {
            continue;
        };
        let limit = cfg.nat_port_limit.max(1) as f64;
        if demand < NAT_DEMAND_HIGH * limit {
            continue;
        }
        let figures = format!(
            "~{demand:.0} NAT gateway ports ({:.1} new/s × (lifetime + {:.0} s hold)), {} of \
             the gateway's {} per public address and destination (--nat-port-limit)",
            d.stats.new_per_s_10s,
            cfg.nat_hold_s,
            pct(demand / limit),
            cfg.nat_port_limit,
        );
        if d.unanswered_recently {
            push(
                "warning",
                "nat_exhaustion_likely",
                format!(
                    "connections to {} time out or are abandoned while they need {figures}: \
                     the likely cause is NAT port (or conntrack) exhaustion off this host. \
                     Pool connections to it: a reused connection needs no new gateway port; \
                     more NAT addresses or a shorter gateway hold only buy time",
                    addr_port(d.daddr, d.dport),
                ),
            );
        } else {
            push(
                "suggestion",
                "nat_port_demand",
                format!(
                    "connections to {} need {figures}; if they leave through a NAT gateway, \
                     pool them before its ports run out (failures would show as timeouts, not \
                     EADDRNOTAVAIL)",
                    addr_port(d.daddr, d.dport),
                ),
            );
        }
    }
    if sys.lost_events > 0 {
        push(
            "warning",
            "lost_events",
            format!(
                "{} events were lost: rates are lower bounds (socket table re-reads correct \
                 the held-port counts)",
                sys.lost_events
            ),
        );
    }
    out
}
