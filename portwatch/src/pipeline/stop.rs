//! Why a live command stops: SIGINT, SIGTERM, or its `--duration` ran out.

use anyhow::{Context, Result};
use tokio::signal::unix::{Signal, SignalKind, signal};

/// The stop signals the [`super::Pipeline`] loop waits on.
pub struct StopSignals {
    int: Signal,
    term: Signal,
    deadline: Option<tokio::time::Instant>,
}

impl StopSignals {
    /// Installs the handlers; `duration_s` bounds the run when given.
    /// Must be called inside a tokio runtime.
    pub fn new(duration_s: Option<f64>) -> Result<StopSignals> {
        Ok(StopSignals {
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            deadline: duration_s.map(|s| {
                tokio::time::Instant::now() + std::time::Duration::from_secs_f64(s.max(0.0))
            }),
        })
    }

    /// Resolves with the reason to stop ("SIGINT", "SIGTERM" or
    /// "duration reached"). Cancel-safe.
    pub async fn wait(&mut self) -> &'static str {
        let deadline = self.deadline;
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
            _ = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => "duration reached",
        }
    }
}
