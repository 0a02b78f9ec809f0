//! `trace`: every event as a line of text or JSON, as it comes. The engine
//! is not run.

use std::io::Write;

use anyhow::Result;

use super::super::{Control, End, Flow, Sink, Stop};
use crate::clock::WallClock;
use crate::engine::Engine;
use crate::engine::namer::Namer;
use crate::input::Input;
use crate::output::{JsonEvent, TEXT_HEADER, write_text};

pub struct TraceSink<W> {
    out: W,
    json: bool,
    /// For the events' wall-clock times.
    clock: WallClock,
    events: u64,
    /// The first write error; the loop stops on it after the batch.
    error: Option<std::io::Error>,
    /// One JSON line, reused for every event.
    line: Vec<u8>,
    /// Names the events' namespaces (`netns_name`), from the inputs the
    /// filter let through (host record and cgroup paths always pass).
    namer: Namer,
}

impl<W: Write> TraceSink<W> {
    pub fn new(out: W, json: bool) -> Self {
        TraceSink {
            out,
            json,
            clock: WallClock::now(),
            events: 0,
            error: None,
            line: Vec::with_capacity(512),
            namer: Namer::new(),
        }
    }
}

impl<W: Write> Sink for TraceSink<W> {
    type Wake = ();
    const ENGINE: bool = false;

    fn start(&mut self, ctl: &mut dyn Control) -> Result<()> {
        for w in ctl.warnings() {
            eprintln!("portwatch: warning: {w}");
        }
        if !self.json {
            writeln!(self.out, "{TEXT_HEADER}")?;
            self.out.flush()?;
        }
        eprintln!("portwatch: tracing TCP connections (Ctrl-C to stop)");
        Ok(())
    }

    async fn wake(&mut self) {
        std::future::pending().await
    }

    fn on_wake(&mut self, (): (), _ctl: &mut dyn Control) -> Result<Flow> {
        Ok(Flow::Continue)
    }

    fn on_input(&mut self, _engine: &Engine, input: &Input) {
        if self.json {
            self.namer.observe(input);
        }
        let Input::Event(ev) = input else { return };
        if self.error.is_some() {
            return;
        }
        self.events += 1;
        let r = if self.json {
            self.line.clear();
            let name = self.namer.name_or_inode(ev.netns());
            JsonEvent::new(ev, &self.clock, name.as_deref()).write_line(&mut self.line);
            self.line.push(b'\n');
            self.out.write_all(&self.line)
        } else {
            write_text(&mut self.out, ev, &self.clock)
        };
        if let Err(e) = r {
            self.error = Some(e);
        }
    }

    fn after_inputs(&mut self, _ctl: &mut dyn Control) -> Result<Flow> {
        let r = match self.error.take() {
            Some(e) => Err(e),
            None => self.out.flush(),
        };
        super::written(r, "writing output")
    }

    fn close(mut self, _engine: &Engine, end: End) -> Result<()> {
        // What the final drain wrote; stdout may be gone by now.
        let _ = self.out.flush();
        if let Stop::Signal(why) = end.stop {
            let losses = end.source.losses.unwrap_or_default();
            eprintln!(
                "portwatch: stopped ({why}): {} events, {losses}",
                self.events
            );
        }
        Ok(())
    }
}
