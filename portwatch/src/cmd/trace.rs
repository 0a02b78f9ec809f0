//! `portwatch trace`: stream closed connections and failed connects.

use std::io::{self, BufWriter, Write};

use anyhow::{Context, Result};

use crate::cli::TraceArgs;
use crate::clock::WallClock;
use crate::event::Event;
use crate::filter::Filter;
use crate::output::{JsonEvent, TEXT_HEADER, write_text};
use crate::probe::Probe;

pub fn run(args: TraceArgs) -> Result<()> {
    super::block_on(trace(args))
}

/// Why the loop stopped.
enum Stop {
    /// A signal or `--duration`: the reason.
    Asked(&'static str),
    /// stdout went away (e.g. `| head`): stop quietly.
    BrokenPipe,
}

async fn trace(args: TraceArgs) -> Result<()> {
    let mut probe = Probe::load()?;
    for w in &probe.warnings {
        eprintln!("portwatch: warning: {w}");
    }
    let clock = WallClock::now();
    let filter = super::filter(&args.filter);
    let mut stop_signals = crate::pipeline::StopSignals::new(args.duration_s)?;

    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(64 * 1024, stdout.lock());
    if !args.json {
        writeln!(out, "{TEXT_HEADER}")?;
        out.flush()?;
    }
    eprintln!("portwatch: tracing TCP connections (Ctrl-C to stop)");

    let mut sink = Sink {
        json: args.json,
        filter,
        clock,
        events: 0,
        error: None,
        out,
        line: Vec::with_capacity(512),
    };
    let stop = loop {
        tokio::select! {
            why = stop_signals.wait() => break Stop::Asked(why),
            _ = probe.wait() => {
                probe.drain(|ev| sink.write(&ev));
                sink.flush();
                if let Some(e) = sink.error.take() {
                    if e.kind() == io::ErrorKind::BrokenPipe {
                        break Stop::BrokenPipe;
                    }
                    return Err(e).context("writing output");
                }
            }
        }
    };
    // Whatever the kernel submitted before we stopped is still delivered.
    probe.drain(|ev| sink.write(&ev));
    sink.flush();
    let events = sink.events;
    let losses = probe.losses();
    drop(probe); // detaches every program
    match stop {
        Stop::BrokenPipe => {}
        Stop::Asked(why) => eprintln!("portwatch: stopped ({why}): {events} events, {losses}"),
    }
    Ok(())
}

/// Filters, formats and writes events; remembers the first write error.
struct Sink<W: Write> {
    json: bool,
    filter: Filter,
    clock: WallClock,
    events: u64,
    error: Option<io::Error>,
    out: W,
    /// One JSON line, reused for every event.
    line: Vec<u8>,
}

impl<W: Write> Sink<W> {
    fn write(&mut self, ev: &Event) {
        if self.error.is_some() || !self.filter.matches(ev) {
            return;
        }
        self.events += 1;
        let r = if self.json {
            self.line.clear();
            JsonEvent::new(ev, &self.clock).write_line(&mut self.line);
            self.line.push(b'\n');
            self.out.write_all(&self.line)
        } else {
            write_text(&mut self.out, ev, &self.clock)
        };
        if let Err(e) = r {
            self.error = Some(e);
        }
    }

    fn flush(&mut self) {
        if self.error.is_none()
            && let Err(e) = self.out.flush()
        {
            self.error = Some(e);
        }
    }
}
