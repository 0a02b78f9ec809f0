//! `portwatch exporter`: the live host → the exporter sink (Prometheus
//! metrics on `--listen`).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::cli::ExporterArgs;
use crate::engine::Engine;
use crate::exporter::{Limits, http};
use crate::pipeline::sinks::exporter::ExporterSink;
use crate::pipeline::{Pipeline, Recorder, StopSignals};

pub fn run(args: ExporterArgs) -> Result<()> {
    if !(args.interval.is_finite() && args.interval > 0.0) {
        bail!("--interval must be a positive number of seconds");
    }
    if args.max_destinations == 0 || args.max_services == 0 {
        bail!("--max-destinations and --max-services must be at least 1");
    }
    let listen: SocketAddr = args.listen.parse().with_context(|| {
        format!(
            "--listen {:?}: expected ADDR:PORT, e.g. 0.0.0.0:9979",
            args.listen
        )
    })?;
    super::block_on(exporter(args, listen))
}

async fn exporter(args: ExporterArgs, listen: SocketAddr) -> Result<()> {
    // Bind first: a taken port is an error before the probes load.
    let listener = http::bind(listen).await?;
    super::note_netns_name(&args.filter);
    let recorder = (args.record.as_deref())
        .map(|p| Recorder::create(p, args.force))
        .transpose()?;
    // The exporter exposes no call sites: it does not pay for stacks.
    let (mut source, recorder) = super::start_live(&args.runtime.runtime_root, 0, recorder)?;
    source.set_resync(Duration::from_secs_f64(args.resync.max(0.5)));
    let engine = Engine::new(super::engine_config(&args.verdict));
    let limits = Limits {
        max_destinations: args.max_destinations,
        max_services: args.max_services,
        grace_s: args.grace,
    };
    let sink = ExporterSink::new(listener, limits, Duration::from_secs_f64(args.interval));
    Pipeline::new(source, engine, sink, StopSignals::new(args.duration)?)
        .record(recorder)
        .filter(super::filter(&args.filter))
        .run()
        .await
}
