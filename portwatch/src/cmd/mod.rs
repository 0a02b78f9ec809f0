//! Subcommands. Each `run` parses nothing itself: `main.rs` hands it its
//! arguments, and it turns them into one [`crate::pipeline::Pipeline`]
//! (source → recorder → engine → sink) on one current-thread tokio runtime.

pub mod assets;
pub mod doctor;
pub mod export;
pub mod exporter;
pub mod record;
pub mod replay;
pub mod report;
pub mod top;
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

/// Loads and attaches the probes for a live command, sampling one active
/// open in `stack_sample` for call sites (0: none). When they cannot start,
/// the recording that was opened for the run is discarded, so a failed start
/// leaves no empty trace behind.
pub(crate) fn start_live(
    runtime_root: &std::path::Path,
    stack_sample: u32,
    recorder: Option<crate::pipeline::Recorder>,
) -> anyhow::Result<(crate::live::LiveSource, Option<crate::pipeline::Recorder>)> {
    crate::probe::set_stack_sample(stack_sample);
    match crate::live::LiveSource::start(runtime_root) {
        Ok(source) => Ok((source, recorder)),
        Err(e) => {
            if let Some(r) = recorder {
                r.discard();
            }
            Err(e)
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
            nat_hold_s: v.nat_hold_s,
            nat_port_limit: v.nat_port_limit,
            leak_min_close_wait: v.leak_min_close_wait,
            leak_min_age_s: v.leak_min_age_s,
        },
        ..crate::engine::Config::default()
    }
}

/// The trace filters (`--pid`, `--comm`, ...) of `trace`, `top`,
/// `record`, `report` and `exporter`.
pub(crate) fn filter(a: &crate::cli::FilterArgs) -> crate::filter::Filter {
    crate::filter::Filter::new(a.pid, a.comm.as_deref(), a.dport, a.daddr, a.netns.clone())
}

/// Live, a `--netns` name that nothing has yet is no error (the namespace
/// may appear later), but the user hears it once, before any output.
pub(crate) fn note_netns_name(a: &crate::cli::FilterArgs) {
    if let Some(crate::filter::NetnsSel::Name(name)) = &a.netns
        && name != "host"
    {
        eprintln!(
            "portwatch: --netns {name}: no network namespace has that name yet; its events \
             count from the first one a task of it makes (names: see `top --batch --json`, \
             namespaces[].netns_name)"
        );
    }
}

/// A mistake in how portwatch was called, found after parsing (e.g. a
/// `--netns` name that a finished trace does not have): exit status 2, as
/// for the errors clap finds.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The TUI's starting state for `--view`, `--delay` and `--filter` (top
/// and replay).
pub(crate) fn app(
    view: &str,
    delay_s: Option<f64>,
    filter: Option<String>,
) -> crate::tui::app::App {
    use crate::tui::app::{App, View};
    let view = match view {
        "destinations" => View::Destinations,
        "failures" => View::Failures,
        _ => View::Services,
    };
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    App::new(
        view,
        std::time::Duration::from_secs_f64(delay_s.unwrap_or(1.0).clamp(0.1, 3600.0)),
        filter.unwrap_or_default(),
        no_color,
    )
}
