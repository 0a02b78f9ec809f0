//! `portwatch report`: a trace file, as fast as it reads → the report.

use std::path::Path;

use anyhow::{Context, Result};

use crate::cli::ReportArgs;
use crate::engine::Engine;
use crate::engine::namer::Namer;
use crate::filter::{Filter, NetnsSel};
use crate::pipeline::sinks::report::ReportSink;
pub use crate::pipeline::sinks::report::summarize;
use crate::pipeline::source::TraceSource;
use crate::pipeline::{Pipeline, StopSignals};
use crate::tracefile::Reader;

pub fn run(args: ReportArgs) -> Result<()> {
    let path = args.file.display().to_string();
    let filter = report_filter(&args, &path)?;
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
        .filter(filter)
        .run()
        .await
    })
}

/// The filter flags; a `--netns` name is resolved over the whole trace
/// first (a finished trace knows every name it will ever have), so the
/// namespace's events count from its first one, and a name the trace does
/// not have is an error (exit 2) that lists those it has.
fn report_filter(args: &ReportArgs, path: &str) -> Result<Filter> {
    let filter = super::filter(&args.filter);
    let Some(NetnsSel::Name(name)) = &args.filter.netns else {
        return Ok(filter);
    };
    let names = trace_names(&args.file).with_context(|| format!("reading {path}"))?;
    let inodes: Vec<u32> = names
        .iter()
        .filter(|(_, n)| n == name)
        .map(|(i, _)| *i)
        .collect();
    if inodes.is_empty() {
        let have: Vec<String> = names
            .iter()
            .map(|(i, n)| {
                if n.starts_with("netns:") {
                    n.clone()
                } else {
                    format!("{n} ({i})")
                }
            })
            .collect();
        return Err(super::UsageError(format!(
            "--netns {name}: {path} has no network namespace of that name; it has: {}",
            if have.is_empty() {
                "none (no host record or events)".to_string()
            } else {
                have.join(", ")
            }
        ))
        .into());
    }
    Ok(filter.with_inodes(inodes))
}

/// Every namespace of a trace with the name it ended with. Reading stops
/// at damage (the report then says where); what came before counts.
fn trace_names(file: &Path) -> Result<Vec<(u32, String)>> {
    let mut namer = Namer::new();
    for input in Reader::open(file)? {
        match input {
            Ok(i) => {
                namer.observe(&i);
            }
            Err(_) => break,
        }
    }
    Ok(namer.names())
}
