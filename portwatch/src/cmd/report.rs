//! `portwatch report`: a trace file, as fast as it reads → the report.

use anyhow::{Context, Result};

use crate::cli::ReportArgs;
use crate::engine::Engine;
use crate::pipeline::sinks::report::ReportSink;
pub use crate::pipeline::sinks::report::summarize;
use crate::pipeline::source::TraceSource;
use crate::pipeline::{Pipeline, StopSignals};
use crate::tracefile::Reader;

pub fn run(args: ReportArgs) -> Result<()> {
    let path = args.file.display().to_string();
    let reader = Reader::open(&args.file).with_context(|| format!("reading {path}"))?;
    super::block_on(async {
        let engine = Engine::new(super::engine_config(&args.verdict));
        let sink = ReportSink::new(path, args.json, args.rows);
        Pipeline::new(
            TraceSource::new(reader),
            engine,
            sink,
            StopSignals::new(None)?,
        )
        .run()
        .await
    })
}
