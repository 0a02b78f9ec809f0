//! Subcommands. Each `run` parses nothing itself: `main.rs` hands it its
//! arguments; live commands run on one current-thread tokio runtime.

pub mod export;
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
