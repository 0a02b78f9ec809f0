//! `cargo xtask faults`: runs the fault suite (portwatch/tests/kernel_faults.rs,
//! root) and prints the README's Reliability table from the figures each
//! test measured. `--soak` instead runs `top --batch` under churn for
//! minutes and prints its memory and CPU per connection over time (a
//! benchmark, not a test: never in CI).

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

#[derive(clap::Args)]
pub struct FaultsArgs {
    /// Instead of the suite: `top --batch` (release build) under churn for
    /// `--minutes`, sampling its RSS and CPU per connection.
    #[arg(long)]
    soak: bool,
    /// Length of the soak run.
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// Connections per second the soak's load generator makes.
    #[arg(long, default_value_t = 5000)]
    rate: u64,
}

pub fn run(root: &Path, args: FaultsArgs) -> Result<()> {
    if args.soak {
        return soak(root, &args);
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the fault suite injects faults into real kernel tracing: run it as root");
    }
    let figures =
        std::env::temp_dir().join(format!("portwatch-faults-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&figures);
    let status = crate::cargo()
        .current_dir(root)
        .args(["test", "-p", "portwatch", "--test", "kernel_faults"])
        .env("PORTWATCH_FAULT_FIGURES", &figures)
        // A test that cannot run fails instead of skipping: no blank rows.
        .env("CI", "true")
        .env("INSTA_UPDATE", "no")
        .status()
        .context("running the fault suite")?;
    let text = std::fs::read_to_string(&figures).unwrap_or_default();
    let _ = std::fs::remove_file(&figures);
    println!("{}", table(&text)?);
    if !status.success() {
        bail!("a fault test failed (the table lists the ones that passed)");
    }
    Ok(())
}

/// `/proc/PID` figures: resident KiB and CPU seconds (user + system).
fn sample(pid: u32) -> Result<(u64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS")?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised comm: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').context("stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok((rss, ticks as f64 / hz))
}

/// The soak: is memory flat after warm-up, and does the cost per
/// connection stay put? Prints one line per sample and a summary row.
fn soak(root: &Path, args: &FaultsArgs) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the soak run traces the kernel: run it as root");
    }
    let bin = crate::build(root, true)?;
    let duration = Duration::from_secs_f64(args.minutes * 60.0);
    let mut top = Command::new(&bin)
        .args(["top", "--batch", "--json", "--interval", "10"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting portwatch top --batch")?;
    let pid = top.id();
    let stdout = top.stdout.take().context("stdout")?;
    // The frames are read (and dropped) so the pipe never blocks portwatch;
    // the last one is kept for its loss count.
    let frames = std::thread::spawn(move || {
        let mut n = 0u64;
        let mut last = String::new();
        for l in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            n += 1;
            last = l;
        }
        (n, last)
    });
    let stderr = top.stderr.take().context("stderr")?;
    let mut lines = std::io::BufReader::new(stderr).lines();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.contains("watching") => break,
            Some(Ok(l)) => eprintln!("{l}"),
            _ => bail!("portwatch top --batch did not start"),
        }
    }
    let me = std::env::current_exe()?;
    let load = Command::new(me)
        .args(["loadgen", "--json", "--mode", "unpooled", "--threads", "2"])
        .args(["--rate", &args.rate.to_string()])
        .args(["--duration", &duration.as_secs_f64().to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the load generator")?;
    let started = Instant::now();
    let every = Duration::from_secs(30).min(duration / 4);
    let mut samples = Vec::new();
    let (_, cpu0) = sample(pid)?;
    let mut prev = (Instant::now(), cpu0);
    println!(
        "   t      RSS   CPU/s  µs CPU per connection (at {} conn/s)",
        args.rate
    );
    while started.elapsed() < duration {
        std::thread::sleep(every);
        let (rss, cpu) = sample(pid)?;
        let now = Instant::now();
        let dt = now.duration_since(prev.0).as_secs_f64();
        let cpu_per_s = (cpu - prev.1) / dt;
        let us_per_conn = cpu_per_s / args.rate as f64 * 1e6;
        prev = (now, cpu);
        let t = started.elapsed().as_secs_f64();
        println!(
            "{:>5.0}s {:>6.1} MiB {:>5.3} {:>8.2}",
            t,
            rss as f64 / 1024.0,
            cpu_per_s,
            us_per_conn
        );
        samples.push((t, rss, us_per_conn));
    }
    let out = load.wait_with_output()?;
    let made: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    let status = top.wait()?;
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let (n_frames, last) = frames
        .join()
        .map_err(|_| anyhow::anyhow!("reader panicked"))?;
    let last: serde_json::Value = serde_json::from_str(&last).unwrap_or_default();
    let lost = last["system"]["lost_events"].as_u64();
    // Warm-up: the first fifth (tables and windows fill during the first
    // 60 s). Compare the rest's first and last thirds.
    let warm: Vec<_> = samples
        .iter()
        .filter(|s| s.0 >= duration.as_secs_f64() / 5.0)
        .collect();
    let third = (warm.len() / 3).max(1);
    let mean = |xs: &[&(f64, u64, f64)], f: fn(&(f64, u64, f64)) -> f64| {
        xs.iter().map(|x| f(x)).sum::<f64>() / xs.len().max(1) as f64
    };
    let (early, late) = (
        &warm[..third.min(warm.len())],
        &warm[warm.len().saturating_sub(third)..],
    );
    let rss_early = mean(early, |s| s.1 as f64);
    let rss_late = mean(late, |s| s.1 as f64);
    let cost_early = mean(early, |s| s.2);
    let cost_late = mean(late, |s| s.2);
    let peak = samples.iter().map(|s| s.1).max().unwrap_or(0);
    println!(
        "\nafter warm-up: RSS {:.1} → {:.1} MiB ({:+.1}%), CPU per connection {:.2} → {:.2} µs \
         ({:+.1}%); {} connections made, {n_frames} frames, lost {}; {}",
        rss_early / 1024.0,
        rss_late / 1024.0,
        (rss_late / rss_early.max(1.0) - 1.0) * 100.0,
        cost_early,
        cost_late,
        (cost_late / cost_early.max(1e-9) - 1.0) * 100.0,
        made["connections"],
        lost.map_or("?".into(), |l| l.to_string()),
        rest.last().map(String::as_str).unwrap_or("")
    );
    println!(
        "| soak | `top --batch` (release) under {} conn/s of churn for {:.0} min | – | {} | – | \
         {} MiB | {}; RSS {:+.1}% and CPU per connection {:+.1}% from warm-up to end |",
        args.rate,
        args.minutes,
        lost.map_or("?".into(), |l| l.to_string()),
        peak.div_ceil(1024),
        status.code().unwrap_or(-1),
        (rss_late / rss_early.max(1.0) - 1.0) * 100.0,
        (cost_late / cost_early.max(1e-9) - 1.0) * 100.0,
    );
    Ok(())
}

/// Row order of the table (by the start of each test's `fault`).
const ORDER: &[&str] = &[
    "tracefs",
    "reader starved",
    "socket map",
    "disk full",
    "record killed",
    "privileges",
    "degraded",
    "bad trace",
    "cardinality",
    "soak",
];

/// The markdown table of the figures file (one JSON object per line).
fn table(jsonl: &str) -> Result<String> {
    let mut out = String::from(
        "| fault | injected | delivered | counted lost | missed | peak RSS | exit |\n\
         | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    let mut rows = jsonl
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .with_context(|| format!("figures line {line:?}"))
        })
        .collect::<Result<Vec<_>>>()?;
    // The tests run in any order; the table keeps one.
    rows.sort_by_key(|v| {
        let f = v["fault"].as_str().unwrap_or("");
        ORDER
            .iter()
            .position(|o| f.starts_with(o))
            .unwrap_or(ORDER.len())
    });
    for v in rows {
        let n = |k: &str| {
            v[k].as_u64()
                .map_or_else(|| "–".to_string(), |n| n.to_string())
        };
        let rss = v["rss_kib"]
            .as_u64()
            .map_or_else(|| "–".to_string(), |k| format!("{} MiB", k.div_ceil(1024)));
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            v["fault"].as_str().unwrap_or("?"),
            v["injected"].as_str().unwrap_or(""),
            n("delivered"),
            n("lost"),
            n("missed"),
            rss,
            v["exit"].as_str().unwrap_or("?"),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_become_table_rows() {
        let t = table(
            r#"{"fault":"disk full","injected":"tmpfs","delivered":null,"lost":null,"missed":null,"rss_kib":null,"exit":"1"}
{"fault":"reader starved","injected":"SIGSTOP 3 s","delivered":10,"lost":5,"missed":0,"rss_kib":35000,"exit":"0"}"#,
        )
        .unwrap();
        assert!(
            t.contains("| reader starved | SIGSTOP 3 s | 10 | 5 | 0 | 35 MiB | 0 |"),
            "{t}"
        );
        assert!(
            t.contains("| disk full | tmpfs | – | – | – | – | 1 |"),
            "{t}"
        );
    }
}
