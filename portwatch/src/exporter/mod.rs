//! `portwatch exporter`: the model as Prometheus metrics.
//!
//! One more reader of the engine's model: the pipeline's exporter sink
//! (`pipeline::sinks::exporter`) folds each model into [`series::Series`]
//! (monotonic counters, a bounded number of series), [`exposition`] turns
//! the series into text with `prometheus-client`, and [`http`] serves the
//! latest text. Scrapes read a published snapshot, never the loop's state.

pub mod exposition;
pub mod http;
pub mod series;

pub use exposition::{Family, Format, HostExtras, encode, families};
pub use series::{Limits, Series};

/// The default `--listen` address. 9979 is free in Prometheus's list of
/// default exporter ports (github.com/prometheus/prometheus/wiki/Default-port-allocations).
pub const DEFAULT_LISTEN: &str = "0.0.0.0:9979";

/// Renders one model: folds it into `series`, then both formats.
pub fn render(
    series: &mut Series,
    model: &crate::engine::Model,
    extras: &HostExtras,
) -> (String, String) {
    series.observe(model);
    let fams = families(series, model, extras);
    (
        encode(fams.clone(), Format::OpenMetrics),
        encode(fams, Format::Prometheus),
    )
}
