//! `portwatch trace`: the probe's events → the filter → one line each.

use std::io::{self, BufWriter};

use anyhow::Result;

use crate::cli::TraceArgs;
use crate::engine::{Config, Engine};
use crate::pipeline::sinks::trace::TraceSink;
use crate::pipeline::source::ProbeSource;
use crate::pipeline::{Pipeline, StopSignals};
use crate::probe::Probe;

pub fn run(args: TraceArgs) -> Result<()> {
    super::block_on(trace(args))
}

async fn trace(args: TraceArgs) -> Result<()> {
    // Stacks are for the verdicts' call sites (top, record); trace prints
    // events only, so it does not pay for sampling.
    crate::probe::set_stack_sample(0);
    let source = ProbeSource::new(Probe::load()?);
    super::note_netns_name(&args.filter);
    let out = BufWriter::with_capacity(64 * 1024, io::stdout().lock());
    let sink = TraceSink::new(out, args.json);
    Pipeline::new(
        source,
        Engine::new(Config::default()),
        sink,
        StopSignals::new(args.duration_s)?,
    )
    .filter(super::filter(&args.filter))
    .run()
    .await
}
