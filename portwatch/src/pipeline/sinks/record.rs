//! `record`: the recording is the point; the engine is not run. A status
//! line on a terminal, warnings as they appear, and the closing line the
//! bench and the kernel tests read.

use std::io::{self, IsTerminal};
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::time::Interval;

use super::super::recorder::FLUSH_INTERVAL;
use super::super::{Control, End, Flow, Sink, Stop};
use crate::engine::Engine;
use crate::event::Losses;
use crate::render::fmt;

pub struct RecordSink {
    path: String,
    /// stderr is a terminal: keep a status line there.
    status: bool,
    started: Instant,
    ticker: Option<Interval>,
    warned: usize,
}

impl RecordSink {
    pub fn new(path: String) -> Self {
        RecordSink {
            path,
            status: io::stderr().is_terminal(),
            started: Instant::now(),
            ticker: None,
            warned: 0,
        }
    }

    /// Prints the source's warnings not shown yet (some only appear
    /// later, e.g. when a periodic socket-table read fails).
    fn show_new_warnings(&mut self, warnings: &[String]) {
        for w in warnings.iter().skip(self.warned) {
            eprintln!("portwatch: warning: {w}");
        }
        self.warned = warnings.len();
    }

    fn clear_status(&self) {
        if self.status {
            eprint!("\r\x1b[2K");
        }
    }
}

impl Sink for RecordSink {
    type Wake = ();
    const ENGINE: bool = false;

    fn start(&mut self, ctl: &mut dyn Control) -> Result<()> {
        self.show_new_warnings(ctl.warnings());
        self.ticker = Some(super::ticker(FLUSH_INTERVAL));
        self.started = Instant::now();
        eprintln!("portwatch: recording to {} (Ctrl-C to stop)", self.path);
        Ok(())
    }

    async fn wake(&mut self) {
        super::tick(&mut self.ticker).await
    }

    fn on_wake(&mut self, (): (), ctl: &mut dyn Control) -> Result<Flow> {
        if let Some(e) = ctl.recorder().and_then(|r| r.error()) {
            // Without the file there is nothing to do: stop (the error is
            // returned after the shutdown).
            anyhow::bail!("{e:#}");
        }
        self.clear_status();
        self.show_new_warnings(ctl.warnings());
        if let (true, Some(r)) = (self.status, ctl.recorder()) {
            let losses = ctl.losses().unwrap_or_default();
            eprint!(
                "{}",
                status_line(
                    r.events(),
                    r.bytes_written(),
                    &losses,
                    self.started.elapsed()
                )
            );
        }
        Ok(Flow::Continue)
    }

    fn close(mut self, _engine: &Engine, end: End) -> Result<()> {
        self.clear_status();
        self.show_new_warnings(&end.source.warnings);
        let recorded = end
            .recorded
            .unwrap_or_else(|| Err(anyhow::anyhow!("nothing recorded")))?;
        let losses = end.source.losses.unwrap_or_default();
        let why = match end.stop {
            Stop::Signal(why) => why,
            Stop::Done | Stop::Quiet => "done",
            Stop::Failed => "error",
        };
        // The shape every live command ends with (trace, top --batch),
        // which the bench parses for the lost count.
        eprintln!(
            "portwatch: stopped ({why}): {} events, {losses}; {}",
            recorded.events,
            size_line(recorded.events, recorded.bytes, self.started.elapsed())
        );
        Ok(())
    }
}

/// The live one-liner: events, lost, bytes.
fn status_line(events: u64, bytes: u64, losses: &Losses, elapsed: Duration) -> String {
    format!(
        "{events} events, {} lost, {}",
        losses.total(),
        size_line(events, bytes, elapsed)
    )
}

/// "1.2 MiB in 10 s (7.3 B/event)".
fn size_line(events: u64, bytes: u64, elapsed: Duration) -> String {
    let per_event = if events > 0 {
        format!(" ({:.1} B/event)", bytes as f64 / events as f64)
    } else {
        String::new()
    };
    format!(
        "{} in {:.0} s{per_event}",
        fmt::bytes(bytes),
        elapsed.as_secs_f64()
    )
}
