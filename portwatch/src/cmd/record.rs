//! `portwatch record`: the engine's input stream, live, into a trace file.
//!
//! The loop is `trace`'s (probe wait → drain) with a writer as the sink and
//! a one-second tick that adds `Tick` and `Losses` inputs and flushes the
//! frame, so a SIGKILL loses at most the last second.

use std::fs;
use std::io::{self, IsTerminal};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::MissedTickBehavior;

use crate::cli::RecordArgs;
use crate::clock::{WallClock, monotonic_now_ns};
use crate::event::Losses;
use crate::input::{HostInfo, Input, Sysctls};
use crate::probe::Probe;
use crate::tracefile::{Compression, WriteError, Writer};

/// How often the file gets a `Tick`, the loss counters, and a flush.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// zstd level 1 halves a real trace (15 → 7 bytes per event on loopback
/// churn) for little CPU; higher levels gain only a few percent more.
const COMPRESSION: Compression = Compression::Zstd(1);

pub fn run(args: RecordArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(record(args))
}

async fn record(args: RecordArgs) -> Result<()> {
    let path = args.output.as_path();
    // The file first: refusing to overwrite should not wait for the probe.
    let mut writer = Writer::create(path, args.force).with_context(|| {
        if args.force {
            format!("creating {}", path.display())
        } else {
            format!("creating {} (use --force to overwrite)", path.display())
        }
    })?;
    writer
        .set_compression(COMPRESSION)
        .context("setting up zstd")?;
    let probe = match Probe::load() {
        Ok(p) => p,
        Err(e) => {
            // Nothing was recorded: do not leave an empty trace behind.
            drop(writer);
            let _ = fs::remove_file(path);
            return Err(e);
        }
    };
    record_with(probe, writer, &args).await
}

enum Stop {
    Signal(&'static str),
    Duration,
}

async fn record_with(mut probe: Probe, writer: Writer<fs::File>, args: &RecordArgs) -> Result<()> {
    for w in &probe.warnings {
        eprintln!("portwatch: warning: {w}");
    }
    let path = args.output.display().to_string();
    let mut sink = Sink {
        writer,
        error: None,
    };
    sink.append(&Input::Host(host_info()));
    sink.checkpoint(&probe)
        .with_context(|| format!("writing {path}"))?;

    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let deadline = args
        .duration
        .map(|s| tokio::time::Instant::now() + Duration::from_secs_f64(s.max(0.0)));
    let mut tick = tokio::time::interval(FLUSH_INTERVAL);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate
    let status = io::stderr().is_terminal();
    let started = Instant::now();
    eprintln!("portwatch: recording to {path} (Ctrl-C to stop)");

    let stop = loop {
        tokio::select! {
            _ = sigint.recv() => break Stop::Signal("SIGINT"),
            _ = sigterm.recv() => break Stop::Signal("SIGTERM"),
            _ = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => break Stop::Duration,
            _ = tick.tick() => {
                probe.drain(|ev| sink.append(&Input::Event(ev)));
                sink.checkpoint(&probe).with_context(|| format!("writing {path}"))?;
                if status {
                    let line = status_line(&sink.writer, &probe.losses(), started.elapsed());
                    eprint!("\r\x1b[2K{line}");
                }
            }
            _ = probe.wait() => {
                probe.drain(|ev| sink.append(&Input::Event(ev)));
                if let Some(e) = sink.error.take() {
                    return Err(e).with_context(|| format!("writing {path}"));
                }
            }
        }
    };
    // Whatever the kernel submitted before we stopped is still recorded.
    probe.drain(|ev| sink.append(&Input::Event(ev)));
    sink.checkpoint(&probe)
        .and_then(|()| sink.writer.sync())
        .with_context(|| format!("writing {path}"))?;
    let losses = probe.losses();
    drop(probe); // detaches every program
    if status {
        eprint!("\r\x1b[2K");
    }
    let why = match stop {
        Stop::Signal(s) => s,
        Stop::Duration => "duration reached",
    };
    eprintln!(
        "portwatch: stopped ({why}): {}",
        status_line(&sink.writer, &losses, started.elapsed())
    );
    Ok(())
}

/// Appends inputs and keeps the first error: the probe's drain callback
/// cannot return one.
struct Sink {
    writer: Writer<fs::File>,
    error: Option<WriteError>,
}

impl Sink {
    fn append(&mut self, input: &Input) {
        if self.error.is_none()
            && let Err(e) = self.writer.append(input)
        {
            self.error = Some(e);
        }
    }

    /// Time and losses as of now, then everything onto the disk's way.
    fn checkpoint(&mut self, probe: &Probe) -> Result<(), WriteError> {
        let now_ns = monotonic_now_ns();
        self.append(&Input::Tick { now_ns });
        self.append(&Input::Losses {
            ts_ns: now_ns,
            losses: probe.losses(),
        });
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.writer.flush()
    }
}

fn status_line(w: &Writer<fs::File>, losses: &Losses, elapsed: Duration) -> String {
    let events = w.events();
    let bytes = w.bytes_written();
    let per_event = if events > 0 {
        format!(" ({:.1} B/event)", bytes as f64 / events as f64)
    } else {
        String::new()
    };
    format!(
        "{events} events, {} lost, {} in {:.0} s{per_event}",
        losses.total(),
        human_bytes(bytes),
        elapsed.as_secs_f64()
    )
}

fn human_bytes(b: u64) -> String {
    match b {
        0..1024 => format!("{b} B"),
        1024..1_048_576 => format!("{:.1} KiB", b as f64 / 1024.0),
        _ => format!("{:.1} MiB", b as f64 / 1_048_576.0),
    }
}

// ---- host context ----
//
// Deliberately minimal and self-contained: the engine's collector reads
// the full context; swapping this for it changes one call in `record_with`.

/// What `record` knows about the host when it starts.
pub fn host_info() -> HostInfo {
    let read = |p: &str| {
        fs::read_to_string(p)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    HostInfo {
        hostname: read("/proc/sys/kernel/hostname"),
        kernel: read("/proc/sys/kernel/osrelease"),
        clock: WallClock::now(),
        // The namespace's nsfs inode, as `readlink /proc/self/ns/net` shows.
        netns: fs::metadata("/proc/self/ns/net")
            .map(|m| m.ino() as u32)
            .unwrap_or(0),
        sysctls: read_sysctls(Path::new("/proc/sys/net/ipv4")),
    }
}

/// Reads the port budget sysctls from `dir` (normally /proc/sys/net/ipv4);
/// a knob the kernel lacks, or cannot be parsed, is `None`.
pub fn read_sysctls(dir: &Path) -> Sysctls {
    let read = |name: &str| fs::read_to_string(dir.join(name)).ok();
    let int = |name: &str| read(name).and_then(|s| s.trim().parse::<i64>().ok());
    Sysctls {
        port_range: read("ip_local_port_range")
            .and_then(|s| parse_port_range(&s))
            // The kernel's default since 2.6.
            .unwrap_or((32768, 60999)),
        reserved_ports: read("ip_local_reserved_ports")
            .map(|s| parse_reserved_ports(&s))
            .unwrap_or_default(),
        tcp_tw_reuse: int("tcp_tw_reuse"),
        tcp_tw_reuse_delay_ms: int("tcp_tw_reuse_delay"),
        tcp_timestamps: int("tcp_timestamps"),
        tcp_max_tw_buckets: int("tcp_max_tw_buckets"),
        tcp_fin_timeout: int("tcp_fin_timeout"),
    }
}

/// `32768\t60999` → (32768, 60999).
fn parse_port_range(s: &str) -> Option<(u16, u16)> {
    let mut it = s.split_whitespace().map(|p| p.parse::<u16>().ok());
    Some((it.next()??, it.next()??))
}

/// `8080,40000-40010` → [(8080, 8080), (40000, 40010)]; bad items skipped.
fn parse_reserved_ports(s: &str) -> Vec<(u16, u16)> {
    s.trim()
        .split(',')
        .filter_map(|item| {
            let item = item.trim();
            match item.split_once('-') {
                Some((lo, hi)) => Some((lo.trim().parse().ok()?, hi.trim().parse().ok()?)),
                None => {
                    let p = item.parse().ok()?;
                    Some((p, p))
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_port_range_file() {
        assert_eq!(parse_port_range("32768\t60999\n"), Some((32768, 60999)));
        assert_eq!(parse_port_range("1024 65535"), Some((1024, 65535)));
        assert_eq!(parse_port_range("1024"), None);
        assert_eq!(parse_port_range("a b"), None);
    }

    #[test]
    fn parses_reserved_port_lists() {
        assert_eq!(parse_reserved_ports("\n"), vec![]);
        assert_eq!(
            parse_reserved_ports("8080,40000-40010\n"),
            vec![(8080, 8080), (40000, 40010)]
        );
        assert_eq!(parse_reserved_ports("x,9-"), vec![]);
    }

    #[test]
    fn reads_sysctls_from_a_directory_and_leaves_missing_knobs_unset() {
        let dir = tempfile::tempdir().unwrap();
        let put = |n: &str, v: &str| fs::write(dir.path().join(n), v).unwrap();
        put("ip_local_port_range", "40000\t40009\n");
        put("ip_local_reserved_ports", "40005\n");
        put("tcp_tw_reuse", "2\n");
        put("tcp_max_tw_buckets", "garbage\n");
        let s = read_sysctls(dir.path());
        assert_eq!(s.port_range, (40000, 40009));
        assert_eq!(s.reserved_ports, vec![(40005, 40005)]);
        assert_eq!(s.tcp_tw_reuse, Some(2));
        assert_eq!(s.tcp_max_tw_buckets, None);
        assert_eq!(s.tcp_tw_reuse_delay_ms, None);
    }

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1_048_576), "3.0 MiB");
    }
}
