//! `portwatch record`: the live input stream, into a trace file.
//!
//! The same [`LiveSource`] as `top` (probe events, host context, socket
//! tables, kernel and loss counters, cgroup paths, ticks) with a
//! [`Writer`] as the sink. Frames are flushed every second, so a SIGKILL
//! loses at most the last second; Ctrl-C / SIGTERM drain, flush and fsync.

use std::fs;
use std::io::{self, IsTerminal};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::time::MissedTickBehavior;

use crate::cli::RecordArgs;
use crate::event::Losses;
use crate::input::Input;
use crate::live::LiveSource;
use crate::tracefile::{Compression, Writer};

/// How often the frame being built is written out (and the status line
/// refreshed): the most a SIGKILL or a crash can lose.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// zstd level 1 halves a real trace (15 → 7 bytes per event on loopback
/// churn) for little CPU; higher levels gain only a few percent more.
const COMPRESSION: Compression = Compression::Zstd(1);

pub fn run(args: RecordArgs) -> Result<()> {
    super::block_on(record(args))
}

async fn record(args: RecordArgs) -> Result<()> {
    let path = args.output.display().to_string();
    // The file first: refusing to overwrite should not wait for the probe.
    let mut writer = Writer::create(&args.output, args.force).with_context(|| {
        if args.force {
            format!("creating {path}")
        } else {
            format!("creating {path} (use --force to overwrite)")
        }
    })?;
    writer
        .set_compression(COMPRESSION)
        .context("setting up zstd")?;
    let mut inputs = Vec::new();
    let mut src = match LiveSource::start(&mut inputs) {
        Ok(s) => s,
        Err(e) => {
            // Nothing was recorded: do not leave an empty trace behind.
            drop(writer);
            let _ = fs::remove_file(&args.output);
            return Err(e);
        }
    };
    let mut warned = 0;
    show_new_warnings(&src, &mut warned);
    let write = |w: &mut Writer<fs::File>, inputs: &mut Vec<Input>| -> Result<()> {
        for i in inputs.drain(..) {
            w.append(&i).with_context(|| format!("writing {path}"))?;
        }
        Ok(())
    };
    write(&mut writer, &mut inputs)?;
    writer.flush().with_context(|| format!("writing {path}"))?;

    let mut stop_signals = super::StopSignals::new(args.duration)?;
    let mut flush = tokio::time::interval(FLUSH_INTERVAL);
    flush.set_missed_tick_behavior(MissedTickBehavior::Delay);
    flush.tick().await; // the first tick is immediate
    let status = io::stderr().is_terminal();
    let started = Instant::now();
    eprintln!("portwatch: recording to {path} (Ctrl-C to stop)");

    let why = loop {
        tokio::select! {
            why = stop_signals.wait() => break why,
            // Cancel-safe: its only await is the probe's wait, before any
            // input is taken.
            _ = src.next(&mut inputs) => write(&mut writer, &mut inputs)?,
            _ = flush.tick() => {
                writer.flush().with_context(|| format!("writing {path}"))?;
                if status {
                    eprint!("\r\x1b[2K");
                }
                show_new_warnings(&src, &mut warned);
                if status {
                    let line = status_line(&writer, &src.probe.losses(), started.elapsed());
                    eprint!("{line}");
                }
            }
        }
    };
    // Whatever the kernel submitted before we stopped is still recorded.
    src.finish(&mut inputs);
    write(&mut writer, &mut inputs)?;
    writer.sync().with_context(|| format!("writing {path}"))?;
    let losses = src.probe.losses();
    if status {
        eprint!("\r\x1b[2K");
    }
    show_new_warnings(&src, &mut warned);
    drop(src); // detaches every program
    // The shape every live command ends with (trace, top --batch), which
    // the bench parses for the lost count.
    eprintln!(
        "portwatch: stopped ({why}): {} events, {losses}; {}",
        writer.events(),
        size_line(&writer, started.elapsed())
    );
    Ok(())
}

/// Records the input stream of another command (`top --record`): appends
/// every input and flushes once a second of trace time, so a crash loses
/// at most a second. The first write error stops recording (kept, and
/// reported by `finish`) without stopping the command.
pub struct Recorder {
    path: PathBuf,
    writer: Writer<fs::File>,
    last_flush_ns: u64,
    error: Option<anyhow::Error>,
}

impl Recorder {
    pub fn create(path: &Path, force: bool) -> Result<Recorder> {
        let mut writer = Writer::create(path, force).with_context(|| {
            if force {
                format!("creating {}", path.display())
            } else {
                format!("creating {} (use --force to overwrite)", path.display())
            }
        })?;
        writer
            .set_compression(COMPRESSION)
            .context("setting up zstd")?;
        Ok(Recorder {
            path: path.to_path_buf(),
            writer,
            last_flush_ns: 0,
            error: None,
        })
    }

    pub fn append(&mut self, input: &Input) {
        if self.error.is_some() {
            return;
        }
        let mut r = self.writer.append(input);
        let due = |now_ns: u64| {
            now_ns.saturating_sub(self.last_flush_ns) >= FLUSH_INTERVAL.as_nanos() as u64
        };
        if let (Ok(()), Input::Tick { now_ns }) = (&r, input)
            && due(*now_ns)
        {
            self.last_flush_ns = *now_ns;
            r = self.writer.flush();
        }
        if let Err(e) = r {
            self.error = Some(anyhow::Error::new(e).context(format!(
                "writing {}; recording stopped",
                self.path.display()
            )));
        }
    }

    /// Flushes and fsyncs; returns the first error, if any, and a summary.
    pub fn finish(mut self) -> Result<String> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.writer
            .sync()
            .with_context(|| format!("writing {}", self.path.display()))?;
        Ok(format!(
            "recorded {} events to {} ({})",
            self.writer.events(),
            self.path.display(),
            human_bytes(self.writer.bytes_written())
        ))
    }
}

/// Prints the source's warnings not shown yet (some only appear later,
/// e.g. when a periodic socket-table read fails).
fn show_new_warnings(src: &LiveSource, shown: &mut usize) {
    for w in src.warnings.iter().skip(*shown) {
        eprintln!("portwatch: warning: {w}");
    }
    *shown = src.warnings.len();
}

/// The live one-liner: events, lost, bytes.
fn status_line(w: &Writer<fs::File>, losses: &Losses, elapsed: Duration) -> String {
    format!(
        "{} events, {} lost, {}",
        w.events(),
        losses.total(),
        size_line(w, elapsed)
    )
}

/// "1.2 MiB in 10 s (7.3 B/event)".
fn size_line(w: &Writer<fs::File>, elapsed: Duration) -> String {
    let events = w.events();
    let bytes = w.bytes_written();
    let per_event = if events > 0 {
        format!(" ({:.1} B/event)", bytes as f64 / events as f64)
    } else {
        String::new()
    };
    format!(
        "{} in {:.0} s{per_event}",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1_048_576), "3.0 MiB");
    }
}
