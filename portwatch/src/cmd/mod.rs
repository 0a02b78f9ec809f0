//! Subcommands. Each `run` parses nothing itself: `main.rs` hands it its
//! arguments; live commands run on one current-thread tokio runtime.

pub mod export;
pub mod exporter;
pub mod record;
pub mod replay;
pub mod report;
pub mod top;
pub mod top_batch;
pub mod trace;

/// Runs a live command on a current-thread tokio runtime: one thread owns
/// all state, which is all the probe's 10 ms drains need.
pub(crate) fn block_on<F: std::future::Future<Output = anyhow::Result<()>>>(
    fut: F,
) -> anyhow::Result<()> {
    use anyhow::Context;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?
        .block_on(fut)
}

/// Why a live command stops: SIGINT, SIGTERM, or its `--duration` ran out.
/// Every live loop waits on this in its `select!`.
pub(crate) struct StopSignals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    deadline: Option<tokio::time::Instant>,
}

impl StopSignals {
    /// Installs the handlers; `duration_s` bounds the run when given.
    pub(crate) fn new(duration_s: Option<f64>) -> anyhow::Result<StopSignals> {
        use anyhow::Context;
        use tokio::signal::unix::{SignalKind, signal};
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
    pub(crate) async fn wait(&mut self) -> &'static str {
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

/// The engine configuration for the verdict flags, the same for top,
/// top --batch, replay and report (so a report agrees with the live view).
pub(crate) fn engine_config(v: &crate::cli::VerdictArgs) -> crate::engine::Config {
    crate::engine::Config {
        verdict: crate::engine::VerdictConfig {
            min_new_per_s: v.min_new_per_s,
            max_lifetime_p50_ms: v.max_lifetime_ms,
            min_active_s: v.min_active_s,
        },
        ..crate::engine::Config::default()
    }
}
