//! The sinks besides the TUI (`tui::run::TuiSink`): batch text/JSON, the
//! report, the recording alone, the event stream of `trace`.

pub mod batch;
pub mod exporter;
pub mod record;
pub mod report;
pub mod trace;

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

/// A timer whose first tick is one period from now (not at once), and
/// that does not rush to catch up after a stall.
pub(crate) fn ticker(every: std::time::Duration) -> tokio::time::Interval {
    let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    t
}

/// The next tick of `t`, never if there is no timer (yet).
pub(crate) async fn tick(t: &mut Option<tokio::time::Interval>) {
    match t.as_mut() {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}
