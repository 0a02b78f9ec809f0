//! What the TUI shows, as plain data: built from the engine's model once per
//! refresh, then drawn. Drawing never computes numbers; it only lays out
//! what is here, so every screen can be tested from a synthetic `Screen`.

/// One refresh worth of data for every view.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Screen {
    pub header: Header,
    pub services: Vec<ServiceRow>,
    pub destinations: Vec<DestRow>,
    pub failures: Vec<FailureRow>,
    /// Detail of the row the user opened, if any (built on request).
    pub detail: Option<Detail>,
    /// Every item of the model's advice, most important first (the `a` pane).
    pub advice: Vec<AdviceItem>,
    /// Every network namespace seen, the host's first (the NETNS column is
    /// shown when there is more than one).
    pub namespaces: Vec<NsInfo>,
}

impl Screen {
    /// More than portwatch's own namespace was seen: the views show a NETNS
    /// column and the header a line for the selected row's namespace.
    pub fn several_namespaces(&self) -> bool {
        self.namespaces.iter().any(|n| !n.host)
    }
}

/// One network namespace, as read inside it (from the model's
/// `namespaces`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NsInfo {
    pub netns: u32,
    /// `host`, the pod/container/unit living in it, or `netns:INODE`.
    pub name: String,
    pub host: bool,
    pub port_range: Option<(u16, u16)>,
    pub budget: Option<u64>,
    pub tcp_tw_reuse: Option<i64>,
    pub tcp_timestamps: Option<i64>,
    /// Its tasks are gone: the values are the last known.
    pub stale: bool,
    /// Why it could not be read, if so.
    pub error: Option<String>,
    pub differs_from_host: bool,
}

/// The header's namespace line: the selected row's namespace, said when it
/// differs from the host's (shown while several namespaces are seen).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NsNote {
    pub text: String,
    /// Its settings differ from the host's, or are unknown: highlighted.
    pub differs: bool,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct AdviceItem {
    /// "warning", "suggestion" or "note".
    pub level: String,
    pub text: String,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Header {
    pub host: String,
    pub kernel: String,
    /// Seconds of observation (not the host's uptime).
    pub observed_s: u64,
    /// `ip_local_port_range` (inclusive).
    pub port_range: (u16, u16),
    /// Ports usable per destination: range size minus reserved ports.
    pub budget: u64,
    pub time_wait: u64,
    /// ESTABLISHED + SYN_SENT to all destinations.
    pub open_ports: u64,
    pub new_per_s: f64,
    pub failures_per_s: f64,
    pub eaddrnotavail_per_s: f64,
    /// The window, in seconds, the rates above share.
    pub rates_window_s: u64,
    /// `failures_per_s` by errno (name, per s), EADDRNOTAVAIL first; the
    /// parts add up to the total.
    pub failures_by_errno: Vec<(String, f64)>,
    /// How many advice items there are (the pane shows them all).
    pub advice_count: usize,
    pub lost_events: u64,
    /// The conntrack table in the worst state ("conntrack 20/262144
    /// (0.0%), turned away 0.0/s [in NAME]") and whether it is full or
    /// turning entries away; `None` without nf_conntrack.
    pub conntrack: Option<(String, bool)>,
    /// The most important line of system advice.
    pub advice: Option<String>,
    /// "replay 00:01:23 / 00:05:00" etc., shown instead of the observed
    /// time when set.
    pub source: Option<String>,
    /// Several namespaces seen: the line about the selected row's
    /// namespace (line 5 of the header).
    pub ns_note: Option<NsNote>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServiceRow {
    pub name: String,
    /// "unit", "container", "pod" or "process".
    pub kind: String,
    pub new_per_s: f64,
    /// New connections per second over the last 60 s, oldest first.
    pub spark: Vec<u64>,
    pub time_wait: u64,
    pub lifetime_p50_ms: Option<f64>,
    pub failures: u64,
    pub lacks_pooling: bool,
    /// A process of it has the `leaks_sockets` verdict (badge LEAK).
    pub leaks_sockets: bool,
    pub processes: Vec<ProcessRow>,
    /// The namespace its tasks live in, when one (None: unknown, or
    /// several: see `netns_name`).
    pub netns: Option<u32>,
    /// Its name, `several` when its tasks live in more than one, `-` when
    /// unknown.
    pub netns_name: String,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProcessRow {
    pub pid: u32,
    pub comm: String,
    pub new_per_s: f64,
    pub time_wait: u64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct DestRow {
    /// Identifies the row among those with the same `addr` (another
    /// namespace, another local address): what selection and detail use.
    pub key: String,
    /// `addr:port` (IPv6 in brackets).
    pub addr: String,
    pub netns: Option<u32>,
    /// `-` when unknown.
    pub netns_name: String,
    /// The local address its connections come from (a budget each).
    pub laddr: Option<String>,
    pub held: u64,
    pub budget: u64,
    pub new_per_s: f64,
    pub time_wait: u64,
    pub failures: u64,
    /// Service opening the most connections to it.
    pub top_talker: String,
    /// held / budget, from the model.
    pub pressure: f64,
    /// Kept at the top of the view: pressure at or above the red threshold,
    /// or an EADDRNOTAVAIL in the last 10 s (the model decides).
    pub pinned: bool,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct FailureRow {
    pub errno: String,
    /// What the failure means (`FailCause::as_str`): EADDRNOTAVAIL rows are
    /// split into "port_exhaustion" and "address_unavailable".
    pub cause: String,
    pub service: String,
    pub dest: String,
    pub count: u64,
    /// Local wall-clock `HH:MM:SS`.
    pub last_seen: String,
}

/// The detail pane of one service or destination.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Detail {
    pub title: String,
    /// A container's or pod's ids (Kubernetes container, uid), if any.
    pub identity: Option<String>,
    /// Its network namespace: name, inode, range, tw_reuse, and why it is
    /// stale or unread (empty when only the host's was seen).
    pub netns: Option<String>,
    /// "Connects to" (service) or "Connected from" (destination) rows:
    /// (peer, new/s, TIME_WAIT).
    pub peers_label: String,
    pub peers: Vec<(String, f64, u64)>,
    /// Lines under the peers: failed handshakes and SYN retransmissions,
    /// NAT port demand (each a figure of the model, formatted).
    pub facts: Vec<String>,
    /// New connections per second over the last 60 s, oldest first.
    pub rate_60s: Vec<u64>,
    /// Lifetime histogram: (bucket label, count).
    pub lifetime_hist: Vec<(String, u64)>,
    pub verdict: Option<VerdictText>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct VerdictText {
    /// e.g. "lacks connection pooling → 10.0.0.5:5432"
    pub headline: String,
    pub evidence: String,
    pub fix: String,
    /// Where the service opens these connections: one line per sampled
    /// call site (`render::call_site_line`), most sampled first.
    pub call_sites: Vec<String>,
}
