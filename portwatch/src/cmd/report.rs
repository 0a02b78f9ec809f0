//! `portwatch report`: a trace file through the engine, sampled every
//! second of trace time, summed up for a postmortem (see
//! [`crate::render::report`] for what it says and its JSON fields).

use std::io::{self, BufWriter, Read, Write};

use anyhow::{Context, Result};

use crate::cli::ReportArgs;
use crate::engine::{Config, Engine, TIME_WAIT_S};
use crate::render::report::{self, Report, ReportBuilder};
use crate::tracefile::Reader;

const NS_PER_S: u64 = 1_000_000_000;
/// Across a gap in the trace, samples stop once every window of the engine
/// (60 s at most) has emptied: later ones would all be the same idle model,
/// and a hostile timestamp must not make us sample for years.
const IDLE_SAMPLES: u64 = TIME_WAIT_S + 5;

pub fn run(args: ReportArgs) -> Result<()> {
    let path = args.file.display().to_string();
    let reader = Reader::open(&args.file).with_context(|| format!("reading {path}"))?;
    let r = summarize(reader, &path, super::engine_config(&args.verdict));
    for w in &r.warnings {
        eprintln!("portwatch: warning: {path}: {w}");
    }
    let mut out = BufWriter::new(io::stdout().lock());
    let written = if args.json {
        report::write_json(&mut out, &r, args.rows)
    } else {
        report::write_text(&mut out, &r, args.rows)
    };
    match written.and_then(|()| out.flush()) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
        Err(e) => return Err(e).context("writing the report"),
    }
    // A torn last frame (recorder killed) is normal and only warned about;
    // damage before the end means data was lost: the report above covers
    // what was readable, and the exit status says it is incomplete (as
    // `export` does).
    if !r.complete {
        anyhow::bail!("{path} is damaged; the report covers only what was read before the damage");
    }
    Ok(())
}

/// Reads the whole trace (stopping at the first error, which becomes a
/// warning of the report) and builds its report. `file` is how the report
/// names the trace.
pub fn summarize<R: Read>(mut reader: Reader<R>, file: &str, config: Config) -> Report {
    let mut engine = Engine::new(config);
    let mut b = ReportBuilder::new(file);
    // Next whole second of trace time to sample the model at.
    let mut next_sample_ns: Option<u64> = None;
    let mut error = None;
    for input in reader.by_ref() {
        let input = match input {
            Ok(i) => i,
            Err(e) => {
                error = Some(e);
                break;
            }
        };
        if let Some(ts) = input.ts_ns() {
            let next = next_sample_ns.get_or_insert((ts / NS_PER_S + 1).saturating_mul(NS_PER_S));
            // Inputs at a second's boundary belong to the sample there.
            sample_until(&engine, &mut b, next, |t| t < ts);
        }
        b.input(&input);
        engine.apply(&input);
    }
    // The seconds the last inputs completed.
    if let Some(next) = next_sample_ns.as_mut() {
        let end = engine.now_ns();
        sample_until(&engine, &mut b, next, |t| t <= end);
    }
    for w in reader.warnings() {
        b.warning(w.to_string());
    }
    if let Some(e) = error {
        b.stopped_at_error(format!("reading stopped: {e}"));
    }
    b.finish()
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
