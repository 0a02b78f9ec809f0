//! The sinks besides the TUI (`tui::run::TuiSink`): batch text/JSON, the
//! report, the recording alone.

pub mod batch;
pub mod record;
pub mod report;

use std::io;

use anyhow::{Context, Result};

use super::{Flow, Stop};

/// The outcome of writing to stdout: a closed pipe (`| head`) stops the
/// run quietly, any other error fails it.
pub(crate) fn written(r: io::Result<()>, what: &'static str) -> Result<Flow> {
    match r {
        Ok(()) => Ok(Flow::Continue),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(Flow::Stop(Stop::Quiet)),
        Err(e) => Err(e).context(what),
    }
}

/// Prints the recording's summary (or its error) the way every live
/// command ends.
pub(crate) fn print_recorded(recorded: Option<Result<super::Recorded>>) {
    match recorded {
        Some(Ok(r)) => eprintln!("portwatch: {r}"),
        Some(Err(e)) => eprintln!("portwatch: error: {e:#}"),
        None => {}
    }
}
