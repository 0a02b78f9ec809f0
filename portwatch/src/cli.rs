//! Command-line interface (clap derive). `main.rs` parses and dispatches.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "portwatch",
    version,
    about = "Find the service that exhausts ephemeral ports by churning short-lived TCP connections",
    long_about = "portwatch attaches eBPF programs to the kernel's TCP state tracepoints and to \
connect() failures, and attributes short-lived outbound connections (and the TIME_WAIT sockets \
they leave behind) to processes and destinations.\n\nNeeds root (or CAP_BPF + CAP_PERFMON) and \
Linux 5.8+.",
    after_help = "Examples:\n  sudo portwatch top                        # the live view during an incident\n  sudo portwatch top --batch --json         # the same model for scripts, every 2 s\n  sudo portwatch trace                      # every closed connection and failed connect\n  sudo portwatch record -o incident.pwt     # record now, understand later\n  portwatch report incident.pwt             # the summary for the postmortem"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print one line per closed TCP connection and per failed connect, as they happen.
    #[command(
        after_help = "Examples:\n  sudo portwatch trace\n  sudo portwatch trace --json | jq 'select(.cause == \"port_exhaustion\")'\n  sudo portwatch trace --pid 1234 --duration 60\n  sudo portwatch trace --daddr 10.0.0.5 --dport 5432\n\nText columns: TIME (local), PID, COMM, DIR (out/in), LOCAL and REMOTE addr:port,\nLIFE_MS (connection lifetime), CLOSED (who sent the first FIN: local means a\nTIME_WAIT socket now holds the local port for 60 s), RESULT (ok, or the errno)."
    )]
    Trace(TraceArgs),
    /// Which services churn short-lived connections, to which destinations,
    /// and how close each destination is to running out of ephemeral ports.
    #[command(
        after_help = "Examples:\n  sudo portwatch top --batch                       # text every 2 s\n  sudo portwatch top --batch --json --interval 5 --iterations 12\n  sudo portwatch top --batch --min-new-per-s 20 --max-lifetime-ms 200\n\nVerdict \"lacks_pooling\" (per service -> destination): at least --min-new-per-s new\nconnections/s over the last 10 s, new connections in at least --min-active-s of\nthose 10 s and in the last 2 s (a burst that stops is not a verdict), and a median\nlifetime of at most --max-lifetime-ms. Inbound churn is shown apart, never as a\nclient verdict.\n\nVerdict \"leaks_sockets\" (per process): at least --leak-min-close-wait of its\nsockets in CLOSE_WAIT held for --leak-min-age-s or more, growing or high. JSON fields: see the README (\"top --batch --json\")."
    )]
    Top(TopArgs),
    /// Record every event and the host context to a trace file, for replay, report or export.
    #[command(
        after_help = "Examples:\n  sudo portwatch record -o incident.pwtrace\n  sudo portwatch record -o /tmp/t.pwtrace --duration 300 --force\n\nThe file is created with mode 0600 (it holds addresses and process names) and is\nflushed every second: if portwatch is killed, all but the last second is readable.\nFormat: FORMAT.md.\n\n--pid, --comm, --daddr, --dport and --netns narrow the events written (the host\ncontext, cgroup paths, counters and losses are always written). `top --record` and\n`exporter --record` record everything whatever their filters."
    )]
    Record(RecordArgs),
    /// Print a trace file's events as JSON Lines or CSV (for jq, pandas, a spreadsheet).
    #[command(
        after_help = "Examples:\n  portwatch export incident.pwtrace | jq 'select(.cause == \"port_exhaustion\")'\n  portwatch export incident.pwtrace --format csv > events.csv\n\nFields are those of `portwatch trace --json`."
    )]
    Export(ExportArgs),
    /// The interactive view of `top`, driven by a trace file instead of the live host.
    #[command(
        after_help = "Examples:\n  portwatch replay incident.pwtrace\n  portwatch replay incident.pwtrace --speed 10\n  portwatch replay incident.pwtrace --speed 0      # as fast as possible\n\nKeys (besides those of `top`, see ?): space pause/resume the replay, n step 1 s\n(pauses), E jump to the end, > and < double or halve the speed. `p` freezes the\ndisplay only. At the end of the file the view stays up with the final state.\nNo root needed."
    )]
    Replay(ReplayArgs),
    /// The incident summary of a trace file, for a postmortem or a ticket.
    #[command(
        after_help = "Examples:\n  portwatch report incident.pwtrace\n  portwatch report incident.pwtrace --json | jq '.verdicts[]'\n\nTime span, peak new-connection rate, top services by churn, destinations by port\npressure (peak share of the port budget), failures per minute (EADDRNOTAVAIL\nfirst), every lacks_pooling verdict seen (evidence and fix at its peak) and lost\nevents. The model is sampled every second of trace time, with the thresholds of\n`top`. JSON verdicts carry the fields of `top --batch --json` verdicts (README).\nNo root needed. The filters count only matching events; a --netns name the trace\ndoes not have is an error (exit 2) that lists the names it has."
    )]
    Report(ReportArgs),
    /// Serve the model as Prometheus/OpenMetrics metrics on /metrics, for a fleet.
    #[command(
        after_help = "Examples:\n  sudo portwatch exporter                           # http://0.0.0.0:9979/metrics\n  sudo portwatch exporter --listen 127.0.0.1:9979 --record /var/tmp/pw.pwtrace\n  curl -s localhost:9979/metrics | grep lacks_pooling\n\nMetrics, labels and their cardinality: README (\"Running on a fleet\"). Alert rules,\na Grafana dashboard and a Kubernetes DaemonSet are in deploy/."
    )]
    Exporter(ExporterArgs),
    /// Check what works on this host (kernel, privileges, tracepoints, BTF, ...) and what to do about the rest.
    #[command(
        after_help = "Examples:\n  sudo portwatch doctor\n  sudo portwatch doctor --json | jq '.checks[] | select(.status != \"ok\")'\n\nIt loads and attaches the eBPF programs for a moment and traces one test\nconnection in a private network namespace, so a check mark means it works.\nOne line per check, with the fix and what is lost without it.\nExit status: 0 when `top` will work fully, 1 when degraded, 2 when it cannot run."
    )]
    Doctor(DoctorArgs),
    /// Writes the man pages and shell completions generated from these
    /// definitions (used by `cargo xtask dist`; hidden from help).
    #[command(hide = true)]
    Assets(AssetsArgs),
}

#[derive(Args, Debug, Clone)]
pub struct DoctorArgs {
    /// One JSON object: {version, kernel, status, exit_code, checks: [{check, status, detail, fix, degrades}]}.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct AssetsArgs {
    /// Directory to create `man/` and `completions/` in.
    #[arg(long, value_name = "DIR")]
    pub out_dir: PathBuf,
}

#[derive(Args, Debug, Clone)]
pub struct ExporterArgs {
    /// Address and port to serve /metrics and /healthz on.
    #[arg(long, value_name = "ADDR:PORT", default_value = crate::exporter::DEFAULT_LISTEN)]
    pub listen: String,
    /// Seconds between renderings of the metrics (a scrape gets the latest).
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    pub interval: f64,
    /// Destinations with series of their own per service; the rest are folded into daddr="~other".
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub max_destinations: usize,
    /// Services with series of their own; the rest are folded into service="~other".
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub max_services: usize,
    /// Seconds after which the series of a service or destination that went quiet disappear.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub grace: u64,
    /// Also record the trace to FILE while running (see `portwatch record`).
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// With --record: overwrite FILE if it exists.
    #[arg(long, requires = "record")]
    pub force: bool,
    /// Stop after this many seconds (default: until Ctrl-C or SIGTERM).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Seconds between re-reads of the socket table (corrects drift). At
    /// least: a table is re-read no sooner than 500 times the CPU its last
    /// full reading took (the kernel walks every TCP socket of the host for
    /// it). TIME_WAIT sockets are asked for on the first reading and then
    /// every 30 s (sooner after lost events); between those, TIME_WAIT is
    /// counted from the closes.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub resync: f64,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    #[command(flatten)]
    pub verdict: VerdictArgs,
    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(Args, Debug, Clone)]
pub struct ReplayArgs {
    /// Trace file written by `portwatch record`.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Playback speed: 1 = as recorded, 10 = ten times faster, 0 = as fast as possible.
    #[arg(long, value_name = "X", default_value_t = 1.0)]
    pub speed: f64,
    /// Refresh interval of the view, in seconds of wall time (default 1).
    #[arg(short = 'd', long = "delay", value_name = "SECS")]
    pub delay_s: Option<f64>,
    /// View to open: services, destinations or failures.
    #[arg(long, value_name = "VIEW", default_value = "services",
          value_parser = ["services", "destinations", "failures"])]
    pub view: String,
    #[command(flatten)]
    pub verdict: VerdictArgs,
}

#[derive(Args, Debug, Clone)]
pub struct ReportArgs {
    /// Trace file written by `portwatch record`.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// One JSON object (fields: README, "report --json").
    #[arg(long)]
    pub json: bool,
    /// Rows of the services and destinations tables (verdicts are never cut).
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub rows: usize,
    #[command(flatten)]
    pub verdict: VerdictArgs,
    /// Only these events count in the report.
    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(Args, Debug, Clone)]
pub struct RecordArgs {
    /// Trace file to create.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Stop after this many seconds (default: until Ctrl-C).
    #[arg(long = "duration", value_name = "SECS")]
    pub duration_s: Option<f64>,
    /// Overwrite FILE if it exists.
    #[arg(long)]
    pub force: bool,
    /// Capture the user-space stack of one active open in N (drawn at
    /// random) to show where in the code a flagged pair connects
    /// ("call sites"); 0 turns sampling off.
    #[arg(long = "stack-sample", value_name = "N", default_value_t = crate::probe::DEFAULT_STACK_SAMPLE)]
    pub stack_sample: u32,
    /// Only these events are written (host context, counters and losses always are).
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

#[derive(Args, Debug, Clone)]
pub struct ExportArgs {
    /// Trace file written by `portwatch record`.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
    pub format: ExportFormat,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// One JSON object per line, the fields of `trace --json`.
    Jsonl,
    /// Comma-separated values with a header row, the same fields.
    Csv,
}

/// Where the container runtimes keep their state (pod and container names).
#[derive(Args, Debug, Clone)]
pub struct RuntimeArgs {
    /// Root under which run/containerd, run/containers, var/lib/docker and var/log/pods
    /// are read for pod and container names (for tests and unusual installs).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub runtime_root: PathBuf,
}

#[derive(Args, Debug, Clone)]
pub struct TopArgs {
    /// Print snapshots to stdout instead of the interactive view (like `top -b`).
    #[arg(long)]
    pub batch: bool,
    #[command(flatten)]
    pub tui: TuiArgs,
    #[command(flatten)]
    pub batch_opts: BatchArgs,
    /// Also record the trace to FILE while running (see `portwatch record`).
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// With --record: overwrite FILE if it exists.
    #[arg(long, requires = "record")]
    pub force: bool,
    /// Seconds between re-reads of the socket table (corrects drift). At
    /// least: a table is re-read no sooner than 500 times the CPU its last
    /// full reading took (the kernel walks every TCP socket of the host for
    /// it). TIME_WAIT sockets are asked for on the first reading and then
    /// every 30 s (sooner after lost events); between those, TIME_WAIT is
    /// counted from the closes.
    #[arg(long = "resync", value_name = "SECS", default_value_t = 5.0)]
    pub resync_s: f64,
    /// Capture the user-space stack of one active open in N (drawn at
    /// random) to show where in the code a flagged pair connects
    /// ("call sites"); 0 turns sampling off.
    #[arg(long = "stack-sample", value_name = "N", default_value_t = crate::probe::DEFAULT_STACK_SAMPLE)]
    pub stack_sample: u32,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    #[command(flatten)]
    pub verdict: VerdictArgs,
    /// Only these events count in the view (the recording keeps all).
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// Options of the interactive view; refused with `--batch`.
#[derive(Args, Debug, Clone)]
#[group(id = "interactive", multiple = true, conflicts_with = "batch")]
pub struct TuiArgs {
    /// Refresh interval of the interactive view, in seconds (default 1).
    #[arg(short = 'd', long = "delay", value_name = "SECS")]
    pub delay_s: Option<f64>,
    /// View to open: services, destinations or failures.
    #[arg(long, value_name = "VIEW", default_value = "services",
          value_parser = ["services", "destinations", "failures"])]
    pub view: String,
    /// Start with this filter (substring of name, address or port).
    #[arg(long = "filter", value_name = "TEXT")]
    pub filter_text: Option<String>,
}

/// Options of `--batch`; refused without it.
#[derive(Args, Debug, Clone)]
#[group(id = "batch_options", multiple = true, requires = "batch")]
pub struct BatchArgs {
    /// With --batch: seconds between snapshots.
    #[arg(long = "interval", value_name = "SECS", default_value_t = 2.0)]
    pub interval_s: f64,
    /// With --batch: stop after this many snapshots (default: until Ctrl-C).
    #[arg(long, value_name = "N")]
    pub iterations: Option<u64>,
    /// With --batch: one JSON object per snapshot (stable fields, see README).
    #[arg(long)]
    pub json: bool,
    /// With --batch: rows per table.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub rows: usize,
}

/// Thresholds of the "lacks_pooling" and "leaks_sockets" verdicts.
#[derive(Args, Debug, Clone)]
pub struct VerdictArgs {
    /// New connections per second (over 10 s) a service -> destination pair must sustain.
    #[arg(long, value_name = "RATE", default_value_t = 5.0)]
    pub min_new_per_s: f64,
    /// Median connection lifetime at or below which connections are "one per request".
    #[arg(long, value_name = "MS", default_value_t = 1000.0)]
    pub max_lifetime_ms: f64,
    /// Seconds out of the last 10 that must see new connections (else: a burst).
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    pub min_active_s: u32,
    /// Seconds a NAT gateway keeps a port after the connection closed: NAT port
    /// demand = new/s * (mean lifetime + this), for destinations beyond the host's
    /// own networks.
    #[arg(long, value_name = "SECS", default_value_t = crate::engine::nat::DEFAULT_NAT_HOLD_S,
          value_parser = non_negative)]
    pub nat_hold_s: f64,
    /// The NAT gateway's ports per public address and destination (AWS NAT
    /// gateway: 55000; GCP Cloud NAT: --min-ports-per-vm, 64 by default); demand
    /// at half of it draws advice.
    #[arg(long, value_name = "PORTS", default_value_t = crate::engine::nat::DEFAULT_NAT_PORT_LIMIT,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub nat_port_limit: u64,
    /// leaks_sockets: CLOSE_WAIT sockets one process must hold (each for --leak-min-age-s).
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub leak_min_close_wait: u64,
    /// leaks_sockets: seconds a CLOSE_WAIT socket must be held to count as stuck.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub leak_min_age_s: u64,
}

fn non_negative(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds >= 0")),
    }
}

#[derive(Args, Debug, Clone, Default)]
pub struct TraceArgs {
    /// JSON Lines output with stable field names (see README).
    #[arg(long)]
    pub json: bool,
    /// Stop after this many seconds (default: until Ctrl-C).
    #[arg(long = "duration", value_name = "SECS")]
    pub duration_s: Option<f64>,
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// Event filters; all given ones must match.
#[derive(Args, Debug, Clone, Default)]
pub struct FilterArgs {
    /// Only this process id (thread group id).
    #[arg(long)]
    pub pid: Option<u32>,
    /// Only tasks whose name (comm) is exactly this (15 characters at most).
    #[arg(long)]
    pub comm: Option<String>,
    /// Only this remote port.
    #[arg(long)]
    pub dport: Option<u16>,
    /// Only this remote address (IPv4 or IPv6).
    #[arg(long)]
    pub daddr: Option<IpAddr>,
    /// Only this network namespace: its inode (as in `readlink /proc/PID/ns/net`) or
    /// the name portwatch shows for it (`host`, `pod:UID`, a container or unit, `netns:INODE`).
    #[arg(long, value_name = "INODE|NAME")]
    pub netns: Option<crate::filter::NetnsSel>,
}
