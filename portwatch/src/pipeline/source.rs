//! The sources besides the pacer: the live host and a trace file read as
//! fast as possible.

use std::io::Read;

use super::{Closing, FeedState, Source};
use crate::clock::monotonic_now_ns;
use crate::engine::Engine;
use crate::event::Losses;
use crate::input::Input;
use crate::live::LiveSource;
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

/// The probe's events alone (`trace`): no host collectors, no socket
/// tables, no cgroup paths; only what the kernel reports.
pub struct ProbeSource {
    probe: Probe,
}

impl ProbeSource {
    pub fn new(probe: Probe) -> Self {
        ProbeSource { probe }
    }

    fn drain(&mut self, out: &mut Vec<Input>) {
        self.probe.drain(|ev| out.push(Input::Event(ev)));
    }
}

impl Source for ProbeSource {
    async fn next(&mut self, out: &mut Vec<Input>) -> FeedState {
        self.probe.wait().await;
        self.drain(out);
        FeedState::More
    }

    fn now_ns(&self, _engine: &Engine) -> u64 {
        monotonic_now_ns()
    }

    fn warnings(&self) -> &[String] {
        &self.probe.warnings
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
            warnings: self.probe.warnings.clone(),
            ..Closing::default()
        };
        drop(self); // detaches every program
        c
    }
}
