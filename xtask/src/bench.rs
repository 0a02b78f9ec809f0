//! `cargo xtask bench`: what portwatch costs the host it diagnoses, and
//! whether it sees every connection, measured side by side.
//!
//! Rounds alternate A/B/A/B over the variants (no tracer, then each tracer
//! mode) so drift of the machine spreads over all of them. Each run is the
//! load generator (a child `xtask loadgen` in its own network namespace)
//! with or without a portwatch process attached. Prints figures; never fails
//! on speed. `--smoke` is a short run at a modest rate that fails only if
//! events were lost or missed (used by CI).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Rounds over all variants.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Seconds of load per run.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Client threads of the load generator (as many server threads).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Short run at a modest rate; exits non-zero on lost or missed events.
    #[arg(long)]
    pub smoke: bool,
}

/// A way of running portwatch during the load.
#[derive(Clone, Debug)]
pub struct Variant {
    pub name: &'static str,
    /// portwatch arguments; `{out}` is replaced by an output file path.
    /// Empty = no tracer.
    pub args: &'static [&'static str],
    /// How to count the connections it saw in its output file.
    pub count: Counter,
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
    /// `exporter`, run in a network namespace of its own (`unshare -n`)
    /// and scraped there every second: the last scrape's
    /// `portwatch_connections_opened_total` to 127.0.0.1:80.
    Scrape,
}

pub fn variants() -> Vec<Variant> {
    vec![
        Variant {
            name: "no tracer",
            args: &[],
            count: Counter::None,
        },
        Variant {
            name: "trace --json",
            args: &["trace", "--json"],
            count: Counter::TraceJson,
        },
        Variant {
            name: "record",
            args: &["record", "--force", "-o", "{out}"],
            count: Counter::TraceFile,
        },
        Variant {
            name: "top --batch",
            args: &["top", "--batch", "--json", "--interval", "0.5"],
            count: Counter::BatchJson,
        },
        Variant {
            name: "exporter",
            args: &[
                "exporter",
                "--listen",
                crate::scrape::LISTEN,
                "--interval",
                "0.5",
            ],
            count: Counter::Scrape,
        },
    ]
}

#[derive(Debug, Clone, Default)]
struct Run {
    conn_per_s: f64,
    connections: u64,
    seen: Option<u64>,
    lost: Option<u64>,
    cpu_s: Option<f64>,
    max_rss_kib: Option<u64>,
    out_bytes: Option<u64>,
}

struct Tracer {
    child: Child,
    out: PathBuf,
    stderr: std::sync::mpsc::Receiver<String>,
}

fn start_tracer(bin: &Path, v: &Variant, out: &Path) -> Result<Tracer> {
    let args: Vec<String> = v
        .args
        .iter()
        .map(|a| a.replace("{out}", &out.display().to_string()))
        .collect();
    // A variant that names {out} writes the file itself (`record`); the
    // others print to stdout, which becomes the file.
    let writes_itself = v.args.iter().any(|a| a.contains("{out}"));
    let file = std::fs::File::create(if writes_itself {
        out.with_extension("stdout")
    } else {
        out.to_path_buf()
    })?;
    // The exporter listens and is scraped in a namespace of its own, so
    // the scrapes stay off the host's loopback; `sh` execs portwatch, so
    // the child's pid (signals, rusage) is portwatch's.
    let mut cmd = if matches!(v.count, Counter::Scrape) {
        let mut c = Command::new("unshare");
        c.args(["-n", "sh", "-c", "ip link set lo up && exec \"$0\" \"$@\""])
            .arg(bin);
        c
    } else {
        Command::new(bin)
    };
    let mut child = cmd
        .args(&args)
        .stdout(file)
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
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
    loop {
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
    }
    Ok(Tracer {
        child,
        out: out.to_path_buf(),
        stderr: rx,
    })
}

/// SIGINT, then reap with wait4 to get its CPU time and peak RSS.
fn stop_tracer(t: Tracer) -> Result<(f64, u64, Option<u64>)> {
    let pid = t.child.id() as i32;
    // SAFETY: pid is our own live child.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let mut status = 0;
    // SAFETY: rusage is plain data the kernel fills in.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pid of our child, valid out-pointers.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    if r != pid {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    let cpu = ru.ru_utime.tv_sec as f64
        + ru.ru_utime.tv_usec as f64 / 1e6
        + ru.ru_stime.tv_sec as f64
        + ru.ru_stime.tv_usec as f64 / 1e6;
    let mut lost = None;
    while let Ok(l) = t.stderr.recv_timeout(Duration::from_secs(5)) {
        if let Some(n) = parse_lost(&l) {
            lost = Some(n);
        }
    }
    std::mem::forget(t.child); // already reaped
    Ok((cpu, ru.ru_maxrss as u64, lost))
}

/// "portwatch: stopped (...): N events, M lost (...)" → M.
fn parse_lost(line: &str) -> Option<u64> {
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
    let tmp = std::env::temp_dir().join(format!("pw-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let variants = variants();
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); variants.len()];
    for round in 0..args.rounds {
        for (i, v) in variants.iter().enumerate() {
            let out = tmp.join(format!("{i}.out"));
            let tracer = if v.args.is_empty() {
                None
            } else {
                Some(start_tracer(&bin, v, &out)?)
            };
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
                if matches!(v.count, Counter::BatchJson | Counter::Scrape) {
                    // Let a snapshot after the last close be printed.
                    std::thread::sleep(Duration::from_millis(1500));
                }
                let out_path = t.out.clone();
                let (cpu, rss, lost) = stop_tracer(t)?;
                run.cpu_s = Some(cpu);
                run.max_rss_kib = Some(rss);
                run.lost = lost;
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
            println!(
                "round {}/{} {:<14} {:>8.0} conn/s  {:>8} conns  seen {:>8}  lost {:>4}",
                round + 1,
                args.rounds,
                v.name,
                run.conn_per_s,
                run.connections,
                run.seen.map_or("-".into(), |s| s.to_string()),
                run.lost.map_or("-".into(), |s| s.to_string()),
            );
            runs[i].push(run);
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);

    println!();
    println!(
        "{:<14} {:>9} {:>9} {:>9} {:>7} {:>9} {:>6} {:>12} {:>9} {:>10}",
        "variant",
        "median/s",
        "min/s",
        "max/s",
        "cost%",
        "complete%",
        "lost",
        "cpu_s/100k",
        "rss_MiB",
        "bytes/conn"
    );
    let base = median(runs[0].iter().map(|r| r.conn_per_s).collect());
    let mut failed = Vec::new();
    for (v, rs) in variants.iter().zip(&runs) {
        let rates: Vec<f64> = rs.iter().map(|r| r.conn_per_s).collect();
        let med = median(rates.clone());
        let min = rates.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = rates.iter().cloned().fold(0.0, f64::max);
        let conns: u64 = rs.iter().map(|r| r.connections).sum();
        let seen: Option<u64> = rs.iter().map(|r| r.seen).sum();
        let lost: Option<u64> = rs.iter().map(|r| r.lost).sum();
        let cpu: Option<f64> = rs.iter().map(|r| r.cpu_s).sum();
        let rss = rs.iter().filter_map(|r| r.max_rss_kib).max();
        let bytes: Option<u64> = rs.iter().map(|r| r.out_bytes).sum();
        let complete = seen.map(|s| 100.0 * s as f64 / conns.max(1) as f64);
        println!(
            "{:<14} {:>9.0} {:>9.0} {:>9.0} {:>7} {:>9} {:>6} {:>12} {:>9} {:>10}",
            v.name,
            med,
            min,
            max,
            if v.args.is_empty() {
                "-".into()
            } else {
                format!("{:.1}", 100.0 * (base - med) / base.max(1e-9))
            },
            complete.map_or("-".into(), |c| format!("{c:.2}")),
            lost.map_or("-".into(), |l| l.to_string()),
            cpu.map_or("-".into(), |c| format!(
                "{:.3}",
                c * 100_000.0 / conns.max(1) as f64
            )),
            rss.map_or("-".into(), |r| format!("{:.1}", r as f64 / 1024.0)),
            bytes.map_or("-".into(), |b| format!(
                "{:.1}",
                b as f64 / conns.max(1) as f64
            )),
        );
        if args.smoke && !v.args.is_empty() {
            if lost != Some(0) {
                failed.push(format!("{}: lost {:?}", v.name, lost));
            }
            if let Some(s) = seen.filter(|&s| s != conns) {
                failed.push(format!("{}: saw {s} of {conns} connections", v.name));
            }
        }
    }
    if !failed.is_empty() {
        bail!("bench smoke failed: {}", failed.join("; "));
    }
    Ok(())
}
