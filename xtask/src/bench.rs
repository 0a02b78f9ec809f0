//! `cargo xtask bench`: what portwatch costs the host it diagnoses, and
//! whether it sees every connection, measured side by side with two anchors.
//!
//! Rounds alternate A/B/A/B over the variants (no tracer, the bpftrace
//! anchors, then each portwatch mode) so drift of the machine spreads over
//! all of them. Each run is the load generator (a child `xtask loadgen` in
//! its own network namespace) with or without one tracer attached.
//!
//! Per run it takes, over the load window only (not start-up or shutdown):
//! the kernel's statistics of each of the tracer's BPF programs
//! (`kernel.bpf_stats_enabled=1`, `run_time_ns`/`run_cnt` from the
//! tracer's `/proc/PID/fdinfo`) and the tracer's own CPU (utime+stime from
//! `/proc/PID/stat`). Throughput moves ±10–30% between rounds on a small
//! shared VM; the CPU figures per connection are the steady ones.
//!
//! The anchors (run only when `bpftrace` is installed; `xtask setup`
//! installs it): `bench/floor.bt` counts state changes in a kernel map (the
//! floor of any tool on this tracepoint), `bench/printing.bt` prints one line
//! per closed connection (what a user would run instead).
//!
//! Prints figures; never fails on speed. `--smoke` is a short run at a
//! modest rate over the portwatch variants that fails only if events were
//! lost or missed (used by CI).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Rounds over all variants (the medians want at least 7).
    #[arg(long, default_value_t = 7)]
    pub rounds: usize,
    /// Seconds of load per run.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Client threads of the load generator (as many server threads).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Only the variants whose name contains one of these comma-separated
    /// words (the baseline always runs).
    #[arg(long)]
    pub only: Option<String>,
    /// Short run at a modest rate; exits non-zero on lost or missed events.
    #[arg(long)]
    pub smoke: bool,
}

/// What runs during the load.
#[derive(Clone, Debug)]
pub enum Tool {
    /// The baseline: the load alone.
    None,
    /// portwatch with these arguments; `{out}` is replaced by an output
    /// file path (else stdout becomes that file).
    Portwatch(&'static [&'static str]),
    /// bpftrace running this script of `xtask/bench/` (stdout to the file).
    Bpftrace(&'static str),
}

/// A way of running a tracer during the load. Adding one is adding an entry
/// to [`variants`] (and a [`Counter`] if its output is new).
#[derive(Clone, Debug)]
pub struct Variant {
    pub name: &'static str,
    pub tool: Tool,
    /// How to count the connections it saw in its output file.
    pub count: Counter,
    /// A side-by-side anchor rather than portwatch (skipped by `--smoke`).
    pub anchor: bool,
}

#[derive(Clone, Copy, Debug)]
pub enum Counter {
    None,
    /// JSON Lines from `trace --json`: close events out of the netns.
    TraceJson,
    /// A trace file from `record`, read back with `portwatch export`.
    TraceFile,
    /// `top --batch --json`: the last snapshot's `new_total` of the load
    /// generator's destination (127.0.0.1:80; nothing else on the host uses
    /// it during a bench).
    BatchJson,
    /// `bench/printing.bt` lines of the load generator's client threads
    /// towards port 80 (the script does not know namespaces).
    PrintingLines,
    /// `exporter`, run in a network namespace of its own (`unshare -n`)
    /// and scraped there every second: the last scrape's
    /// `portwatch_connections_opened_total` to 127.0.0.1:80.
    Scrape,
}

/// The name of the floor variant: costs are also given as multiples of its.
const FLOOR: &str = "bpftrace count";

pub fn variants() -> Vec<Variant> {
    vec![
        Variant {
            name: "no tracer",
            tool: Tool::None,
            count: Counter::None,
            anchor: false,
        },
        Variant {
            name: FLOOR,
            tool: Tool::Bpftrace("floor.bt"),
            count: Counter::None,
            anchor: true,
        },
        Variant {
            name: "bpftrace print",
            tool: Tool::Bpftrace("printing.bt"),
            count: Counter::PrintingLines,
            anchor: true,
        },
        Variant {
            name: "trace --json",
            tool: Tool::Portwatch(&["trace", "--json"]),
            count: Counter::TraceJson,
            anchor: false,
        },
        Variant {
            name: "record",
            tool: Tool::Portwatch(&["record", "--force", "-o", "{out}"]),
            count: Counter::TraceFile,
            anchor: false,
        },
        Variant {
            name: "top --batch",
            tool: Tool::Portwatch(&["top", "--batch", "--json", "--interval", "0.5"]),
            count: Counter::BatchJson,
            anchor: false,
        },
        // The cost of stack sampling (issue 16): `top --batch` above samples
        // one active open in 64 (the default); these two bracket it.
        Variant {
            name: "top --batch, stacks off",
            tool: Tool::Portwatch(&[
                "top",
                "--batch",
                "--json",
                "--interval",
                "0.5",
                "--stack-sample",
                "0",
            ]),
            count: Counter::BatchJson,
            anchor: false,
        },
        Variant {
            name: "top --batch, every stack",
            tool: Tool::Portwatch(&[
                "top",
                "--batch",
                "--json",
                "--interval",
                "0.5",
                "--stack-sample",
                "1",
            ]),
            count: Counter::BatchJson,
            anchor: false,
        },
        Variant {
            name: "exporter",
            tool: Tool::Portwatch(&[
                "exporter",
                "--listen",
                crate::scrape::LISTEN,
                "--interval",
                "0.5",
            ]),
            count: Counter::Scrape,
            anchor: false,
        },
    ]
}

/// One BPF program's statistics, as the kernel keeps them.
#[derive(Debug, Clone, Copy, Default)]
struct ProgStats {
    run_time_ns: u64,
    run_cnt: u64,
}

#[derive(Debug, Clone, Default)]
struct Run {
    conn_per_s: f64,
    connections: u64,
    seen: Option<u64>,
    lost: Option<u64>,
    /// Tracer CPU (user + system) over the load window.
    cpu_s: Option<f64>,
    max_rss_kib: Option<u64>,
    out_bytes: Option<u64>,
    /// Per program name: statistics over the load window.
    bpf: BTreeMap<String, ProgStats>,
}

struct Tracer {
    child: Child,
    out: PathBuf,
    stderr: std::sync::mpsc::Receiver<String>,
    /// Program id → name, for the tracer's BPF programs.
    progs: BTreeMap<u32, String>,
    bpf_start: BTreeMap<u32, ProgStats>,
    cpu_start_s: f64,
}

fn command(root: &Path, bin: &Path, v: &Variant, out: &Path) -> Option<(Command, bool)> {
    match v.tool {
        Tool::None => None,
        Tool::Portwatch(args) => {
            // The exporter listens and is scraped in a namespace of its own,
            // so the scrapes stay off the host's loopback; `sh` execs
            // portwatch, so the child's pid (signals, rusage) is portwatch's.
            let mut c = if matches!(v.count, Counter::Scrape) {
                let mut c = Command::new("unshare");
                c.args(["-n", "sh", "-c", "ip link set lo up && exec \"$0\" \"$@\""])
                    .arg(bin);
                c
            } else {
                Command::new(bin)
            };
            c.args(
                args.iter()
                    .map(|a| a.replace("{out}", &out.display().to_string())),
            );
            // A variant that names {out} writes the file itself (`record`).
            Some((c, args.iter().any(|a| a.contains("{out}"))))
        }
        Tool::Bpftrace(script) => {
            let mut c = Command::new("bpftrace");
            c.arg(root.join("xtask/bench").join(script));
            Some((c, false))
        }
    }
}

fn start_tracer(root: &Path, bin: &Path, v: &Variant, out: &Path) -> Result<Option<Tracer>> {
    let Some((mut cmd, writes_itself)) = command(root, bin, v, out) else {
        return Ok(None);
    };
    let file = std::fs::File::create(if writes_itself {
        out.with_extension("stdout")
    } else {
        out.to_path_buf()
    })?;
    // A tracer must not outlive the bench: if xtask is killed mid-round, a
    // printing tracer left behind keeps writing every event of the host to
    // `out` (one grew to 13 GB and filled the disk).
    // SAFETY: prctl is async-signal-safe and touches only the child.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .stdout(file)
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    let stderr = child.stderr.take().context("stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    match v.tool {
        Tool::Bpftrace(_) => {
            // bpftrace says "Attaching N probes..." on stdout, then attaches.
            loop {
                if let Some(st) = child.try_wait()? {
                    let err: Vec<String> = rx.try_iter().collect();
                    bail!("bpftrace exited ({st}): {}", err.join("; "));
                }
                let text = std::fs::read_to_string(out).unwrap_or_default();
                if text.contains("Attaching") {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("bpftrace did not start within 30 s");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            std::thread::sleep(Duration::from_millis(1000));
        }
        _ => loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l)
                    if l.contains("tracing")
                        || l.contains("recording")
                        || l.contains("watching")
                        || l.contains("serving") =>
                {
                    break;
                }
                Ok(l) if l.contains("error") => bail!("portwatch failed to start: {l}"),
                Ok(_) => {}
                Err(_) => bail!("portwatch did not start within 30 s"),
            }
        },
    }
    let pid = child.id();
    let bpf_start = prog_stats(pid);
    let progs = prog_names(bpf_start.keys().copied().collect());
    Ok(Some(Tracer {
        child,
        out: out.to_path_buf(),
        stderr: rx,
        progs,
        bpf_start,
        cpu_start_s: cpu_seconds(pid).unwrap_or(0.0),
    }))
}

/// The BPF programs `pid` holds open, by program id, with their statistics
/// (`/proc/PID/fdinfo` of its `bpf-prog` fds).
fn prog_stats(pid: u32) -> BTreeMap<u32, ProgStats> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return out;
    };
    for e in dir.flatten() {
        let is_prog =
            std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().contains("bpf-prog"));
        if !is_prog {
            continue;
        }
        let info = std::fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            e.file_name().to_string_lossy()
        ))
        .unwrap_or_default();
        let field = |name: &str| -> Option<u64> {
            info.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim_start_matches(':').trim().parse().ok())
        };
        if let Some(id) = field("prog_id") {
            out.insert(
                id as u32,
                ProgStats {
                    run_time_ns: field("run_time_ns").unwrap_or(0),
                    run_cnt: field("run_cnt").unwrap_or(0),
                },
            );
        }
    }
    out
}

/// Program names (the kernel keeps 15 characters) for these ids.
fn prog_names(ids: Vec<u32>) -> BTreeMap<u32, String> {
    let mut names = BTreeMap::new();
    for info in aya::programs::loaded_programs().flatten() {
        if ids.contains(&info.id()) {
            let name = info.name_as_str().unwrap_or("?").to_string();
            names.insert(info.id(), name);
        }
    }
    names
}

/// utime + stime of every thread of `pid`, in seconds.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised comm; utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(ticks as f64 / hz)
}

struct Stopped {
    cpu_s: f64,
    max_rss_kib: u64,
    lost: Option<u64>,
    bpf: BTreeMap<String, ProgStats>,
}

/// Takes the load-window figures, then SIGINT and reap with wait4 (peak RSS).
fn stop_tracer(t: Tracer) -> Result<Stopped> {
    let pid = t.child.id();
    let cpu_s = (cpu_seconds(pid).unwrap_or(0.0) - t.cpu_start_s).max(0.0);
    let mut bpf: BTreeMap<String, ProgStats> = BTreeMap::new();
    for (id, end) in prog_stats(pid) {
        let start = t.bpf_start.get(&id).copied().unwrap_or_default();
        let name = t
            .progs
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("id{id}"));
        let e = bpf.entry(name).or_default();
        e.run_time_ns += end.run_time_ns.saturating_sub(start.run_time_ns);
        e.run_cnt += end.run_cnt.saturating_sub(start.run_cnt);
    }
    // SAFETY: pid is our own live child.
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    let mut status = 0;
    // SAFETY: rusage is plain data the kernel fills in.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pid of our child, valid out-pointers.
    let r = unsafe { libc::wait4(pid as i32, &mut status, 0, &mut ru) };
    if r != pid as i32 {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    let mut lost = None;
    while let Ok(l) = t.stderr.recv_timeout(Duration::from_secs(5)) {
        if let Some(n) = parse_lost(&l) {
            lost = Some(n);
            if n > 0 {
                // Which kind of loss it was.
                println!("  {l}");
            }
        }
    }
    std::mem::forget(t.child); // already reaped
    Ok(Stopped {
        cpu_s,
        max_rss_kib: ru.ru_maxrss as u64,
        lost,
        bpf,
    })
}

/// "portwatch: stopped (...): N events, M lost (...)" → M;
/// bpftrace's "Lost M events" → M.
fn parse_lost(line: &str) -> Option<u64> {
    if let Some(rest) = line.trim().strip_prefix("Lost ") {
        return rest.split(' ').next()?.parse().ok();
    }
    let idx = line.find(" lost")?;
    line[..idx].rsplit(' ').next()?.parse().ok()
}

fn count_seen(bin: &Path, counter: Counter, out: &Path, netns: u64) -> Result<Option<u64>> {
    match counter {
        Counter::None | Counter::Scrape => Ok(None),
        Counter::TraceJson | Counter::TraceFile => {
            let jsonl = if matches!(counter, Counter::TraceFile) {
                let exported = out.with_extension("jsonl");
                let file = std::fs::File::create(&exported)?;
                let st = Command::new(bin)
                    .args(["export", "--format", "jsonl"])
                    .arg(out)
                    .stdout(file)
                    .status()?;
                if !st.success() {
                    bail!("portwatch export {} failed", out.display());
                }
                exported
            } else {
                out.to_path_buf()
            };
            let f = std::fs::File::open(&jsonl)?;
            let mut n = 0;
            for line in BufReader::new(f).lines() {
                let line = line?;
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if v["event"] == "close" && v["direction"] == "out" && v["netns"] == netns {
                    n += 1;
                }
            }
            Ok(Some(n))
        }
        Counter::BatchJson => {
            let text = std::fs::read_to_string(out)?;
            let Some(last) = text.lines().rev().find(|l| !l.trim().is_empty()) else {
                return Ok(Some(0));
            };
            let v: serde_json::Value = serde_json::from_str(last)?;
            let n = v["destinations"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|d| d["daddr"] == "127.0.0.1" && d["dport"] == 80)
                .filter_map(|d| d["new_total"].as_u64())
                .sum();
            Ok(Some(n))
        }
        Counter::PrintingLines => {
            let f = std::fs::File::open(out)?;
            let mut n = 0;
            for line in BufReader::new(f).lines() {
                let line = line?;
                let f: Vec<&str> = line.split(' ').collect();
                if f.len() == 7 && f[1] == "pw-loadgen" && f[4] == "127.0.0.1" && f[5] == "80" {
                    n += 1;
                }
            }
            Ok(Some(n))
        }
    }
}

fn loadgen(args: &BenchArgs, rate: u64) -> Result<(u64, f64, u64)> {
    let me = std::env::current_exe()?;
    let out = Command::new(me)
        .args(["loadgen", "--json", "--mode", "unpooled"])
        .args(["--threads", &args.threads.to_string()])
        .args(["--duration", &args.duration.to_string()])
        .args(["--rate", &rate.to_string()])
        .output()
        .context("running the load generator")?;
    if !out.status.success() {
        bail!(
            "load generator failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "load generator output {:?}",
            String::from_utf8_lossy(&out.stdout)
        )
    })?;
    Ok((
        v["connections"].as_u64().unwrap_or(0),
        v["conn_per_s"].as_f64().unwrap_or(0.0),
        v["netns"].as_u64().unwrap_or(0),
    ))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return 0.0;
    }
    v[v.len() / 2]
}

/// Turns `kernel.bpf_stats_enabled` on for the bench and back as it was.
struct BpfStats {
    before: Option<String>,
}

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStats {
    fn enable() -> BpfStats {
        let before = std::fs::read_to_string(BPF_STATS).ok();
        if std::fs::write(BPF_STATS, "1").is_err() {
            eprintln!("xtask: cannot enable {BPF_STATS}: no BPF time figures");
        }
        BpfStats { before }
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        if let Some(b) = &self.before {
            let _ = std::fs::write(BPF_STATS, b.trim());
        }
    }
}

/// TCP state changes of one loopback connection with both ends on this
/// host: 7→2, 2→1, 1→4, 4→5, 5→7 on the client, 10→3, 3→1, 1→8, 8→9, 9→7
/// on the server.
const STATE_CHANGES_PER_CONN: u64 = 10;

/// Connections the host made during a run, as the tracer's state-change
/// program counted them. Tracepoints are global: on a shared machine other
/// processes' traffic runs the tracer too, so the per-connection figures
/// divide by this rather than by the load generator's count (the two agree
/// on a quiet host). `None` without BPF statistics.
fn host_conns(r: &Run) -> Option<u64> {
    r.bpf
        .iter()
        .find(|(name, _)| name.starts_with("inet_sock_set"))
        .map(|(_, s)| s.run_cnt / STATE_CHANGES_PER_CONN)
        .filter(|&n| n > 0)
}

/// Figures of one variant over all its rounds.
struct Summary {
    med: f64,
    min: f64,
    max: f64,
    conns: u64,
    /// Connections the host made while the tracer ran (see [`host_conns`]).
    host_conns: u64,
    seen: Option<u64>,
    lost: Option<u64>,
    /// BPF ns per connection, per program and in all.
    bpf_per_conn: BTreeMap<String, (f64, f64)>,
    bpf_ns_per_conn: Option<f64>,
    cpu_us_per_conn: Option<f64>,
    rss_kib: Option<u64>,
    bytes: Option<u64>,
}

fn summarise(rs: &[Run]) -> Summary {
    let rates: Vec<f64> = rs.iter().map(|r| r.conn_per_s).collect();
    let conns: u64 = rs.iter().map(|r| r.connections).sum();
    let mut bpf: BTreeMap<String, ProgStats> = BTreeMap::new();
    for r in rs {
        for (name, s) in &r.bpf {
            let e = bpf.entry(name.clone()).or_default();
            e.run_time_ns += s.run_time_ns;
            e.run_cnt += s.run_cnt;
        }
    }
    let host: u64 = rs
        .iter()
        .map(|r| host_conns(r).unwrap_or(r.connections))
        .sum();
    let per_conn = |x: u64| x as f64 / host.max(1) as f64;
    let bpf_per_conn: BTreeMap<String, (f64, f64)> = bpf
        .iter()
        .map(|(n, s)| {
            (
                n.clone(),
                (
                    per_conn(s.run_time_ns),
                    s.run_time_ns as f64 / s.run_cnt.max(1) as f64,
                ),
            )
        })
        .collect();
    let cpu: Option<f64> = rs.iter().map(|r| r.cpu_s).sum();
    Summary {
        med: median(rates.clone()),
        min: rates.iter().cloned().fold(f64::INFINITY, f64::min),
        max: rates.iter().cloned().fold(0.0, f64::max),
        conns,
        seen: rs.iter().map(|r| r.seen).sum(),
        lost: rs.iter().map(|r| r.lost).sum(),
        bpf_ns_per_conn: (!bpf.is_empty())
            .then(|| per_conn(bpf.values().map(|s| s.run_time_ns).sum())),
        bpf_per_conn,
        cpu_us_per_conn: cpu.map(|c| c * 1e6 / host.max(1) as f64),
        host_conns: host,
        rss_kib: rs.iter().filter_map(|r| r.max_rss_kib).max(),
        bytes: rs.iter().map(|r| r.out_bytes).sum(),
    }
}

pub fn run(root: &Path, args: BenchArgs) -> Result<()> {
    let mut args = args;
    let rate = if args.smoke {
        args.rounds = 1;
        args.duration = args.duration.min(3.0);
        2000
    } else {
        0
    };
    crate::run(
        crate::cargo()
            .current_dir(root)
            .args(["build", "--release", "-p", "portwatch"]),
    )?;
    let bin = root.join("target/release/portwatch");
    let have_bpftrace = crate::which("bpftrace").is_some();
    if !have_bpftrace && !args.smoke {
        eprintln!("xtask: bpftrace not installed (`cargo xtask setup`): no anchors");
    }
    let variants: Vec<Variant> = variants()
        .into_iter()
        .enumerate()
        .filter(|(i, v)| {
            *i == 0
                || (!(v.anchor && (args.smoke || !have_bpftrace))
                    && args
                        .only
                        .as_ref()
                        .is_none_or(|o| o.split(',').any(|w| v.name.contains(w))))
        })
        .map(|(_, v)| v)
        .collect();
    let _stats = (!args.smoke).then(BpfStats::enable);
    let tmp = std::env::temp_dir().join(format!("pw-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); variants.len()];
    for round in 0..args.rounds {
        for (i, v) in variants.iter().enumerate() {
            let out = tmp.join(format!("{i}.out"));
            let tracer = start_tracer(root, &bin, v, &out)?;
            let scraper = match (&tracer, v.count) {
                (Some(t), Counter::Scrape) => Some(crate::scrape::Scraper::start(t.child.id())?),
                _ => None,
            };
            let (connections, conn_per_s, netns) = loadgen(&args, rate)?;
            let mut run = Run {
                conn_per_s,
                connections,
                ..Run::default()
            };
            if let Some(t) = tracer {
                // Let the last records be drained (and, for top --batch, a
                // snapshot after the last close be printed).
                std::thread::sleep(if matches!(v.count, Counter::BatchJson | Counter::Scrape) {
                    Duration::from_millis(1500)
                } else {
                    Duration::from_millis(300)
                });
                let out_path = t.out.clone();
                let s = stop_tracer(t)?;
                run.cpu_s = Some(s.cpu_s);
                run.max_rss_kib = Some(s.max_rss_kib);
                run.lost = match v.tool {
                    // bpftrace reports "Lost N events" on stdout.
                    Tool::Bpftrace(_) => Some(
                        std::fs::read_to_string(&out_path)
                            .unwrap_or_default()
                            .lines()
                            .filter_map(parse_lost)
                            .sum(),
                    ),
                    _ => s.lost,
                };
                run.bpf = s.bpf;
                run.seen = match scraper {
                    Some(s) => s.finish(),
                    None => count_seen(&bin, v.count, &out_path, netns)?,
                };
                // The exporter writes no output file; its figure is the scrapes.
                run.out_bytes = std::fs::metadata(&out_path)
                    .ok()
                    .map(|m| m.len())
                    .filter(|_| !matches!(v.count, Counter::Scrape));
            }
            let bpf_ns: u64 = run.bpf.values().map(|s| s.run_time_ns).sum();
            let host = host_conns(&run).unwrap_or(run.connections).max(1) as f64;
            println!(
                "round {}/{} {:<15} {:>8.0} conn/s {:>8} conns (host {:>8})  seen {:>8}  \
                 lost {:>4}  bpf {:>6.0} ns/conn  cpu {:>5} us/conn",
                round + 1,
                args.rounds,
                v.name,
                run.conn_per_s,
                run.connections,
                host_conns(&run).map_or("-".into(), |h| h.to_string()),
                run.seen.map_or("-".into(), |s| s.to_string()),
                run.lost.map_or("-".into(), |s| s.to_string()),
                bpf_ns as f64 / host,
                run.cpu_s
                    .map_or("-".into(), |c| format!("{:.2}", c * 1e6 / host)),
            );
            runs[i].push(run);
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);

    let sums: Vec<Summary> = runs.iter().map(|r| summarise(r)).collect();
    let base = sums[0].med;
    let cost = |s: &Summary| 100.0 * (base - s.med) / base.max(1e-9);
    let floor = variants
        .iter()
        .position(|v| v.name == FLOOR)
        .map(|i| &sums[i]);
    // The floor's cost per connection in CPU: BPF time (its userspace is idle).
    let floor_cpu_ns = floor.and_then(|f| f.bpf_ns_per_conn);
    println!();
    println!(
        "Per variant, {} rounds of {} s, {} client threads; CPU figures over the load window.",
        args.rounds, args.duration, args.threads
    );
    println!(
        "{:<15} {:>8} {:>8} {:>8} {:>6} {:>7} {:>9} {:>9} {:>8} {:>6} {:>6} {:>7} {:>7}",
        "variant",
        "median/s",
        "min/s",
        "max/s",
        "cost%",
        "×floor",
        "bpf_ns/c",
        "cpu_us/c",
        "cpu×flr",
        "compl%",
        "lost",
        "rss_MiB",
        "B/conn"
    );
    let mut failed = Vec::new();
    for (v, s) in variants.iter().zip(&sums) {
        let tracer = !matches!(v.tool, Tool::None);
        let floor_cost = floor.map(cost).filter(|c| *c > 0.0);
        let total_ns =
            s.bpf_ns_per_conn.unwrap_or(0.0) + s.cpu_us_per_conn.map_or(0.0, |c| c * 1e3);
        let complete = s.seen.map(|n| 100.0 * n as f64 / s.conns.max(1) as f64);
        println!(
            "{:<15} {:>8.0} {:>8.0} {:>8.0} {:>6} {:>7} {:>9} {:>9} {:>8} {:>6} {:>6} {:>7} {:>7}",
            v.name,
            s.med,
            s.min,
            s.max,
            if tracer {
                format!("{:.1}", cost(s))
            } else {
                "-".into()
            },
            match floor_cost {
                Some(fc) if tracer => format!("{:.1}", cost(s) / fc),
                _ => "-".into(),
            },
            s.bpf_ns_per_conn.map_or("-".into(), |b| format!("{b:.0}")),
            s.cpu_us_per_conn.map_or("-".into(), |c| format!("{c:.2}")),
            match floor_cpu_ns {
                Some(f) if tracer && f > 0.0 => format!("{:.1}", total_ns / f),
                _ => "-".into(),
            },
            complete.map_or("-".into(), |c| format!("{c:.2}")),
            s.lost.map_or("-".into(), |l| l.to_string()),
            s.rss_kib
                .map_or("-".into(), |r| format!("{:.1}", r as f64 / 1024.0)),
            s.bytes.map_or("-".into(), |b| format!(
                "{:.1}",
                b as f64 / s.conns.max(1) as f64
            )),
        );
        if args.smoke && tracer {
            if s.lost != Some(0) {
                failed.push(format!("{}: lost {:?}", v.name, s.lost));
            }
            if let Some(n) = s.seen.filter(|&n| n != s.conns) {
                failed.push(format!("{}: saw {n} of {} connections", v.name, s.conns));
            }
        }
    }
    if let (false, Some(f)) = (args.smoke, floor_cpu_ns.filter(|f| *f > 0.0)) {
        print_targets(&variants, &sums, f, floor.map(cost));
    }
    if !args.smoke {
        println!();
        println!(
            "BPF time per program: ns per connection (ns per run × runs per connection). \
             Per connection = per {STATE_CHANGES_PER_CONN} TCP state changes the tracer saw \
             (other traffic on the host runs the tracers too)."
        );
        for (v, s) in variants.iter().zip(&sums) {
            if !s.bpf_per_conn.is_empty() {
                println!(
                    "  {:<15} host connections {} (load generator {})",
                    v.name, s.host_conns, s.conns
                );
            }
            for (prog, (per_conn, per_run)) in &s.bpf_per_conn {
                println!(
                    "  {:<15} {:<36} {:>7.0} ({:>5.0} ns × {:>5.2})",
                    v.name,
                    prog,
                    per_conn,
                    per_run,
                    per_conn / per_run.max(1e-9)
                );
            }
        }
    }
    if !failed.is_empty() {
        bail!("bench smoke failed: {}", failed.join("; "));
    }
    Ok(())
}

/// The floor's BPF time per connection where issue 14 set its targets.
const ISSUE_FLOOR_NS: f64 = 1_100.0;

/// Issue 14's targets, checked against this run: BPF time ≤ 2× the floor,
/// throughput cost ≤ 2× the floor's, and tracer CPU ≤ 0.6 µs (`trace
/// --json` 1.5 µs) per connection where the floor costs 1.1 µs. This VM's
/// speed moves by 3× from day to day, so the CPU targets are also scaled by
/// the floor measured in the same run; both are printed.
fn print_targets(variants: &[Variant], sums: &[Summary], floor_ns: f64, floor_cost: Option<f64>) {
    let scale = floor_ns / ISSUE_FLOOR_NS;
    let base = sums[0].med;
    println!();
    println!(
        "Issue 14 targets; CPU targets scaled by this run's floor ({floor_ns:.0} ns of BPF \
         per connection, {scale:.2}× the 1,100 ns where the issue set them):"
    );
    let mark = |ok: bool| if ok { "met" } else { "NOT met" };
    for (v, s) in variants.iter().zip(sums) {
        let Tool::Portwatch(args) = v.tool else {
            continue;
        };
        let (Some(bpf), Some(cpu)) = (s.bpf_ns_per_conn, s.cpu_us_per_conn) else {
            continue;
        };
        let cpu_target = if args.first() == Some(&"trace") {
            1.5
        } else {
            0.6
        };
        let cost = 100.0 * (base - s.med) / base.max(1e-9);
        let cost_part = match floor_cost.filter(|c| *c > 0.0) {
            Some(fc) => format!(
                "throughput cost {:.1}× the floor's (≤ 2: {})",
                cost / fc,
                mark(cost / fc <= 2.0)
            ),
            None => "throughput cost: the floor's is within noise of 0, no ratio".to_string(),
        };
        println!(
            "  {:<26} BPF {:.2}× floor (≤ 2: {}); CPU {:.2} µs (≤ {:.2} scaled: {}; ≤ {} as \
             written: {}); {}",
            v.name,
            bpf / floor_ns,
            mark(bpf / floor_ns <= 2.0),
            cpu,
            cpu_target * scale,
            mark(cpu <= cpu_target * scale),
            cpu_target,
            mark(cpu <= cpu_target),
            cost_part
        );
    }
}
