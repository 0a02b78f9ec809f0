//! `portwatch record`: the live host → the recorder alone (see
//! [`crate::pipeline::recorder`]: flushed every second, fsynced at the end),
//! narrowed by the trace filters when given.

use anyhow::Result;

use crate::cli::RecordArgs;
use crate::engine::Engine;
use crate::pipeline::sinks::record::RecordSink;
use crate::pipeline::{Pipeline, Recorder, StopSignals};

pub fn run(args: RecordArgs) -> Result<()> {
    super::block_on(record(args))
}

async fn record(args: RecordArgs) -> Result<()> {
    // The file first: refusing to overwrite should not wait for the probe.
    let recorder = Recorder::create(&args.output, args.force)?;
    // Nothing was recorded when the probes fail: the file goes too.
    let (source, recorder) = super::start_live(
        &args.runtime.runtime_root,
        args.stack_sample,
        Some(recorder),
    )?;
    super::note_netns_name(&args.filter);
    let sink = RecordSink::new(args.output.display().to_string());
    let engine = Engine::new(crate::engine::Config::default());
    // `record`'s filters narrow what is written: the recording is its
    // output (top's and the exporter's filters narrow their views only).
    Pipeline::new(source, engine, sink, StopSignals::new(args.duration_s)?)
        .record(recorder)
        .filter(super::filter(&args.filter))
        .filter_recording(true)
        .run()
        .await
}
