//! The sources besides the pacer: the live host and a trace file read as
//! fast as possible.

use std::io::Read;

use super::{Closing, FeedState, Source};
use crate::clock::monotonic_now_ns;
use crate::engine::Engine;
use crate::event::Losses;
use crate::input::Input;
use crate::live::{Cgroups, LiveSource, host_input};
use crate::probe::Probe;
use crate::tracefile::{ReadError, Reader};

impl Source for LiveSource {
    async fn next(&mut self, out: &mut Vec<Input>) -> FeedState {
        self.next_batch(out).await;
        FeedState::More
    }

    fn now_ns(&self, _engine: &Engine) -> u64 {
        monotonic_now_ns()
    }

    fn warnings(&self) -> &[String] {
        &self.warnings
    }

    fn losses(&self) -> Option<Losses> {
        Some(self.probe.losses())
    }

    fn program_stats(&self) -> Option<Vec<crate::probe::ProgramStats>> {
        self.probe.program_stats()
    }

    fn finish(&mut self, out: &mut Vec<Input>) {
        LiveSource::finish(self, out);
    }

    fn close(self) -> Closing {
        let c = Closing {
            losses: Some(self.probe.losses()),
            warnings: self.warnings.clone(),
            ..Closing::default()
        };
        drop(self); // detaches every program
        c
    }
}

/// Inputs handed over per call, so signals are still seen between batches.
const BATCH: usize = 4096;

/// A trace file as fast as it can be read (`report`). Reading stops at the
/// first error, which [`Source::close`] returns.
pub struct TraceSource<R> {
    reader: Reader<R>,
    error: Option<ReadError>,
    done: bool,
    inputs: u64,
}

impl<R: Read> TraceSource<R> {
    pub fn new(reader: Reader<R>) -> Self {
        TraceSource {
            reader,
            error: None,
            done: false,
            inputs: 0,
        }
    }
}

impl<R: Read> Source for TraceSource<R> {
    async fn next(&mut self, out: &mut Vec<Input>) -> FeedState {
        for _ in 0..BATCH {
            match self.reader.next() {
                Some(Ok(i)) => {
                    self.inputs += 1;
                    out.push(i);
                }
                Some(Err(e)) => {
                    self.error = Some(e);
                    self.done = true;
                    break;
                }
                None => {
                    self.done = true;
                    break;
                }
            }
        }
        if self.done {
            FeedState::Ended
        } else {
            // Let the loop see a signal between batches.
            tokio::task::yield_now().await;
            FeedState::More
        }
    }

    /// The trace time the inputs reached.
    fn now_ns(&self, engine: &Engine) -> u64 {
        engine.now_ns()
    }

    fn close(self) -> Closing {
        Closing {
            losses: None,
            warnings: self
                .reader
                .warnings()
                .iter()
                .map(|w| w.to_string())
                .collect(),
            error: self.error.map(|e| e.to_string()),
            inputs: self.inputs,
        }
    }
}

/// The probe's events (`trace`), with what names their namespaces: the
/// host record first and each cgroup's path before its first event (for
/// `netns_name` and `--netns NAME`); no socket tables, no counters.
pub struct ProbeSource {
    probe: Probe,
    host: Option<Input>,
    cgroups: Cgroups,
    warnings: Vec<String>,
}

impl ProbeSource {
    pub fn new(probe: Probe) -> Self {
        let mut warnings = probe.warnings.clone();
        let host = Some(host_input(&mut warnings));
        let cgroups = Cgroups::new(&mut warnings);
        ProbeSource {
            probe,
            host,
            cgroups,
            warnings,
        }
    }

    fn drain(&mut self, out: &mut Vec<Input>) {
        // Straight into `out`, as `LiveSource` does: no copy in between.
        let cgroups = &mut self.cgroups;
        self.probe.drain(|ev| {
            if let Some(t) = ev.task() {
                cgroups.announce(t.cgroup_id, out);
            }
            out.push(Input::Event(ev));
        });
        // `trace` loads the probe without sampling; drop any all the same.
        drop(self.probe.take_stacks());
    }
}

impl Source for ProbeSource {
    async fn next(&mut self, out: &mut Vec<Input>) -> FeedState {
        if let Some(h) = self.host.take() {
            out.push(h);
            return FeedState::More;
        }
        self.probe.wait().await;
        self.drain(out);
        self.cgroups.retry(monotonic_now_ns(), out);
        FeedState::More
    }

    fn now_ns(&self, _engine: &Engine) -> u64 {
        monotonic_now_ns()
    }

    fn warnings(&self) -> &[String] {
        &self.warnings
    }

    fn losses(&self) -> Option<Losses> {
        Some(self.probe.losses())
    }

    fn finish(&mut self, out: &mut Vec<Input>) {
        self.drain(out);
    }

    fn close(self) -> Closing {
        let c = Closing {
            losses: Some(self.probe.losses()),
            warnings: self.warnings.clone(),
            ..Closing::default()
        };
        drop(self); // detaches every program
        c
    }
}
