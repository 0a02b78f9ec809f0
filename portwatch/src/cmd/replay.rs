//! `portwatch replay`: a trace file, paced by its timestamps → the TUI.

use std::io::IsTerminal;

use anyhow::{Context, Result, bail};

use crate::cli::ReplayArgs;
use crate::engine::Engine;
use crate::pipeline::pacer::{ReplayFeed, scan};
use crate::pipeline::{Pipeline, StopSignals};
use crate::tracefile::Reader;
use crate::tui::run::TuiSink;

pub fn run(args: ReplayArgs) -> Result<()> {
    if !(args.speed.is_finite() && args.speed >= 0.0) {
        bail!("--speed must be 0 (as fast as possible) or a positive number");
    }
    let path = args.file.display().to_string();
    let (span, problems) = scan(&args.file).with_context(|| format!("reading {path}"))?;
    let Some(span) = span else {
        let why = if problems.is_empty() {
            String::new()
        } else {
            format!(" ({})", problems.join("; "))
        };
        bail!("{path}: the trace holds no complete record{why}");
    };
    if !std::io::stdout().is_terminal() {
        bail!(
            "standard output is not a terminal: replay is interactive; use `portwatch report \
             {path}` for a summary, or `portwatch export {path}` for the events"
        );
    }
    let reader = Reader::open(&args.file).with_context(|| format!("reading {path}"))?;
    super::block_on(async {
        let source = ReplayFeed::new(reader, span, args.speed);
        let engine = Engine::new(super::engine_config(&args.verdict));
        let app = super::app(&args.view, args.delay_s, None);
        let sink = TuiSink::new(app, Some(path));
        Pipeline::new(source, engine, sink, StopSignals::new(None)?)
            .run()
            .await
    })
}
