//! `report`: the model sampled every second of trace time, summed up for a
//! postmortem (see [`crate::render::report`] for what it says).

use std::io::{self, BufWriter, Read, Write};

use anyhow::Result;

use super::super::{Control, End, Flow, Sink, Stop};
use crate::clock::NS_PER_S;
use crate::engine::summary::Summarizer;
use crate::engine::{Config, Engine, TIME_WAIT_S};
use crate::input::Input;
use crate::render::report::{self, Report};
use crate::tracefile::Reader;

/// Across a gap in the trace, samples stop once every window of the engine
/// (60 s at most) has emptied: later ones would all be the same idle model,
/// and a hostile timestamp must not make us sample for years.
const IDLE_SAMPLES: u64 = TIME_WAIT_S + 5;

/// Samples the model at every whole second of trace time, before the
/// inputs after that second are applied, into the engine's [`Summarizer`].
pub struct Sampler {
    summarizer: Summarizer,
    /// Next whole second of trace time to sample the model at.
    next_sample_ns: Option<u64>,
}

impl Sampler {
    pub fn new() -> Self {
        Sampler {
            summarizer: Summarizer::default(),
            next_sample_ns: None,
        }
    }

    /// Before `engine` applies `input`: the seconds that ended before it.
    pub fn input(&mut self, engine: &Engine, input: &Input) {
        if let Some(ts) = input.ts_ns() {
            let next = self
                .next_sample_ns
                .get_or_insert((ts / NS_PER_S + 1).saturating_mul(NS_PER_S));
            // Inputs at a second's boundary belong to the sample there.
            sample_until(engine, &mut self.summarizer, next, |t| t < ts);
        }
    }

    /// The seconds the last inputs completed, then the report of `file`
    /// (`inputs` records read; what reading found wrong).
    pub fn finish(
        mut self,
        engine: &Engine,
        file: &str,
        inputs: u64,
        warnings: &[String],
        error: Option<&str>,
    ) -> Report {
        if let Some(next) = self.next_sample_ns.as_mut() {
            let end = engine.now_ns();
            sample_until(engine, &mut self.summarizer, next, |t| t <= end);
        }
        let mut warnings = warnings.to_vec();
        warnings.extend(error.map(|e| format!("reading stopped: {e}")));
        Report {
            file: file.to_string(),
            inputs,
            summary: self.summarizer.finish(&engine.model(engine.now_ns())),
            warnings,
            complete: error.is_none(),
        }
    }
}

impl Default for Sampler {
    fn default() -> Self {
        Sampler::new()
    }
}

/// Samples every whole second from `*next` while `due(second)` holds,
/// skipping over long idle gaps (see [`IDLE_SAMPLES`]).
fn sample_until(engine: &Engine, b: &mut Summarizer, next: &mut u64, due: impl Fn(u64) -> bool) {
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
    let mut s = Sampler::new();
    let mut error = None;
    let mut inputs = 0;
    for input in reader.by_ref() {
        match input {
            Ok(i) => {
                inputs += 1;
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
    s.finish(&engine, file, inputs, &warnings, error.as_deref())
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
            sampler: Sampler::new(),
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
        let r = self.sampler.finish(
            engine,
            path,
            end.source.inputs,
            &end.source.warnings,
            end.source.error.as_deref(),
        );
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
