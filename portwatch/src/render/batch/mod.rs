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
//!     count}]`, EADDRNOTAVAIL first (errno 0, named "aborted": handshakes
//!     the application gave up on, with no errno); `connect_errors_by_cause`:
//!     `[{cause, count}]`, cause one of "port_exhaustion",
//!     "address_unavailable", "port_in_use" (connect() of a socket bound to
//!     its port before: that 4-tuple is taken), "refused", "timed_out",
//!     "aborted", "reset", "unreachable", "other".
//!   - `syn_retransmits`: SYNs the kernel retransmitted for outbound
//!     connections that closed since start (`tcp:tcp_retransmit_skb` on a
//!     SYN_SENT socket; 0 when the tracepoint is missing).
//!   - `lost_events`: events lost in the kernel or undecodable (cumulative).
//!   - `advice`: `[{level, key, text}]`, level "warning", "suggestion" or "note".
//! - `services`: `[{name, kind, pids, …stats}]`; `kind` is "systemd",
//!   "docker", "containerd", "crio", "pod", "comm" (no unit in the cgroup
//!   path: named by process) or "unknown_cgroup" (cgroup unknown or gone).
//! - `processes`: `[{pid, comm, service, …stats}]`.
//! - `destinations` (outbound, by remote address and port): `[{daddr,
//!   dport, …stats, closer, held_ports, open_ports, from_socket_table,
//!   bound_elsewhere, budget, pressure, forecast_time_wait,
//!   forecast_exceeds_budget, exhaustion_in_s}]`. `bound_elsewhere`: the
//!   part of `held_ports` that is TIME_WAIT of connections to other
//!   destinations whose port was bound before connect() (the kernel keeps
//!   such a port from every connect() of the namespace). `closer`: who sends the first FIN ("local": the
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
//! - `bound`: processes that bind() client sockets before connect(), or
//!   whose bind() failed: `[{service, pid, comm, netns, netns_name,
//!   bound_connections_total, time_wait, daddr, dport, bind_errors,
//!   bind_errors_total, last_bind_addr}]`; `time_wait`: their TIME_WAIT now,
//!   ports held against every destination.
//! - `verdicts`: `[{service: {name, kind, pids}, daddr, dport, verdict,
//!   new_per_sec, lifetime_p50_ms, time_wait, budget_share,
//!   closed_locally_share, connect_errors, evidence, fix}]`; `verdict` is
//!   "lacks_pooling" or "binds_before_connect" (the process binds client
//!   sockets before connect(); the evidence names the other services whose
//!   connects fail for lack of ports); `budget_share` = this pair's
//!   TIME_WAIT / budget (for binds_before_connect: its bound TIME_WAIT /
//!   the range).
//! - `others`: `{processes, services, destinations, pairs, inbound}`:
//!   estimated distinct keys folded away because a table was full.
//!
//! `…stats` are: `new_per_sec`, `new_per_sec_1s`, `new_per_sec_60s`,
//! `new_total`, `lifetime_p50_ms`, `lifetime_p90_ms`, `lifetime_p99_ms`,
//! `handshake_p50_ms`, `handshake_p99_ms`, `closed_locally_share`,
//! `time_wait` (held now: closed locally within 60 s), `tw_expiring_10s`,
//! `tw_expiring_30s`, `tw_expiring_60s`, `connect_errors` (count),
//! `connect_errors_by_errno`, `connect_errors_by_cause`,
//! `failed_handshake_p50_ms`, `failed_handshake_p99_ms` (how long failed
//! handshakes waited before failing), `syn_retransmits` (SYNs retransmitted
//! by the outbound connections that closed: each one means a SYN waited at
//! least a second unanswered).

mod json;
mod text;

pub use json::*;
pub use text::write_text;
