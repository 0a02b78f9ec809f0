//! `report`: the model sampled every second of trace time, summed up for a
//! postmortem (see [`crate::render::report`] for what it says).

use std::io::{self, BufWriter, Read, Write};

use anyhow::Result;

use super::super::{Control, End, Flow, Sink, Stop};
use crate::clock::NS_PER_S;
use crate::engine::{Config, Engine, TIME_WAIT_S};
use crate::input::Input;
use crate::render::report::{self, Report, ReportBuilder};
use crate::tracefile::Reader;

/// Across a gap in the trace, samples stop once every window of the engine
/// (60 s at most) has emptied: later ones would all be the same idle model,
/// and a hostile timestamp must not make us sample for years.
const IDLE_SAMPLES: u64 = TIME_WAIT_S + 5;

/// Samples the model at every whole second of trace time, before the
/// inputs of that second's end are applied.
pub struct Sampler {
    b: ReportBuilder,
    /// Next whole second of trace time to sample the model at.
    next_sample_ns: Option<u64>,
}

impl Sampler {
    /// `file` is how the report names the trace.
    pub fn new(file: &str) -> Self {
        Sampler {
            b: ReportBuilder::new(file),
            next_sample_ns: None,
        }
    }

    /// Before `engine` applies `input`.
    pub fn input(&mut self, engine: &Engine, input: &Input) {
        if let Some(ts) = input.ts_ns() {
            let next = self
                .next_sample_ns
                .get_or_insert((ts / NS_PER_S + 1).saturating_mul(NS_PER_S));
            // Inputs at a second's boundary belong to the sample there.
            sample_until(engine, &mut self.b, next, |t| t < ts);
        }
        self.b.input(input);
    }

    /// The seconds the last inputs completed, and what reading found wrong.
    pub fn finish(mut self, engine: &Engine, warnings: &[String], error: Option<&str>) -> Report {
        if let Some(next) = self.next_sample_ns.as_mut() {
            let end = engine.now_ns();
            sample_until(engine, &mut self.b, next, |t| t <= end);
        }
        for w in warnings {
            self.b.warning(w.clone());
        }
        if let Some(e) = error {
            self.b.stopped_at_error(format!("reading stopped: {e}"));
        }
        self.b.finish()
    }
}

/// Samples every whole second from `*next` while `due(second)` holds,
/// skipping over long idle gaps (see [`IDLE_SAMPLES`]).
fn sample_until(engine: &Engine, b: &mut ReportBuilder, next: &mut u64, due: impl Fn(u64) -> bool) {
    let mut n = 0;
    while due(*next) {
        if n == IDLE_SAMPLES {
            // Jump to the last due second before the gap ends.
            let mut last = *next;
            let mut step = NS_PER_S;
            while due(last.saturating_add(step)) && step < u64::MAX / 4 {
                step *= 2;
            }
            while step >= NS_PER_S {
                if due(last.saturating_add(step)) {
                    last += step;
                }
                step /= 2;
            }
            *next = last;
        }
        b.sample(&engine.model(*next));
        n += 1;
        *next = next.saturating_add(NS_PER_S);
        if *next == u64::MAX {
            break;
        }
    }
}

/// Reads the whole trace (stopping at the first error, which becomes a
/// warning of the report) and builds its report: what [`ReportSink`] does
/// in the pipeline, without one (for tests and benches).
pub fn summarize<R: Read>(mut reader: Reader<R>, file: &str, config: Config) -> Report {
    let mut engine = Engine::new(config);
    let mut s = Sampler::new(file);
    let mut error = None;
    for input in reader.by_ref() {
        match input {
            Ok(i) => {
                s.input(&engine, &i);
                engine.apply(&i);
            }
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
    }
    let warnings: Vec<String> = reader.warnings().iter().map(|w| w.to_string()).collect();
    s.finish(&engine, &warnings, error.as_deref())
}

/// The report of a trace, written once the source has ended.
pub struct ReportSink {
    sampler: Sampler,
    path: String,
    json: bool,
    rows: usize,
}

impl ReportSink {
    pub fn new(path: String, json: bool, rows: usize) -> Self {
        ReportSink {
            sampler: Sampler::new(&path),
            path,
            json,
            rows,
        }
    }
}

impl Sink for ReportSink {
    type Wake = ();

    async fn wake(&mut self) {
        std::future::pending().await
    }

    fn on_wake(&mut self, (): (), _ctl: &mut dyn Control) -> Result<Flow> {
        Ok(Flow::Continue)
    }

    fn on_input(&mut self, engine: &Engine, input: &Input) {
        self.sampler.input(engine, input);
    }

    fn on_end(&mut self, _ctl: &mut dyn Control) -> Result<Flow> {
        Ok(Flow::Stop(Stop::Done))
    }

    fn close(self, engine: &Engine, end: End) -> Result<()> {
        if let Stop::Signal(why) = end.stop {
            anyhow::bail!("stopped ({why}) before the end of {}", self.path);
        }
        let path = &self.path;
        let r = self
            .sampler
            .finish(engine, &end.source.warnings, end.source.error.as_deref());
        for w in &r.warnings {
            eprintln!("portwatch: warning: {path}: {w}");
        }
        let mut out = BufWriter::new(io::stdout().lock());
        let written = if self.json {
            report::write_json(&mut out, &r, self.rows)
        } else {
            report::write_text(&mut out, &r, self.rows)
        };
        super::written(written.and_then(|()| out.flush()), "writing the report")?;
        // A torn last frame (recorder killed) is normal and only warned
        // about; damage before the end means data was lost: the report
        // above covers what was readable, and the exit status says it is
        // incomplete (as `export` does).
        if !r.complete {
            anyhow::bail!(
                "{path} is damaged; the report covers only what was read before the damage"
            );
        }
        Ok(())
    }
}
