//! `portwatch exporter`: serves the model as Prometheus metrics.
//!
//! The live loop of `top --batch` with a different consumer: every
//! `--interval` the model is folded into the exporter's series, rendered
//! once in both exposition formats and published on a watch channel. The
//! HTTP server runs on the same runtime and only reads what was
//! published, so a scrape never holds up intake.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hyper::body::Bytes;
use tokio::sync::watch;

use super::record::Recorder;
use crate::cli::ExporterArgs;
use crate::clock::monotonic_now_ns;
use crate::engine::{Engine, Model};
use crate::exporter::http::{self, Published};
use crate::exporter::{HostExtras, Limits, Series};
use crate::filter::Filter;
use crate::input::Input;
use crate::live::LiveSource;
use crate::probe::ProgramStats;

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

/// The exporter as a consumer of models: folds each into its series and
/// publishes the rendered text. All it needs from the loop is a model and
/// the host readings the engine does not model.
pub struct ExporterSink {
    series: Series,
    tx: watch::Sender<Option<Arc<Published>>>,
}

impl ExporterSink {
    pub fn new(limits: Limits) -> (ExporterSink, watch::Receiver<Option<Arc<Published>>>) {
        let (tx, rx) = watch::channel(None);
        (
            ExporterSink {
                series: Series::new(limits),
                tx,
            },
            rx,
        )
    }

    pub fn publish(&mut self, model: &Model, programs: Option<Vec<ProgramStats>>) {
        let extras = HostExtras {
            conntrack: crate::exporter::read_conntrack(),
            programs,
        };
        let (om, prom) = crate::exporter::render(&mut self.series, model, &extras);
        self.tx.send_replace(Some(Arc::new(Published {
            openmetrics: Bytes::from(om),
            prometheus: Bytes::from(prom),
            at: Instant::now(),
        })));
    }
}

async fn exporter(args: ExporterArgs, listen: SocketAddr) -> Result<()> {
    // Bind first: a taken port is an error before the probes load.
    let listener = http::bind(listen).await?;
    let mut inputs = Vec::new();
    let mut src = LiveSource::start(&mut inputs)?;
    src.set_resync(Duration::from_secs_f64(args.resync.max(0.5)));
    for w in &src.warnings {
        eprintln!("portwatch: warning: {w}");
    }
    let mut engine = Engine::new(super::engine_config(&args.verdict));
    let mut recorder = match &args.record {
        Some(p) => Some(Recorder::create(p, args.force)?),
        None => None,
    };
    let filter = Filter::new(&args.filter);
    let mut apply = |engine: &mut Engine, inputs: &mut Vec<Input>| {
        for i in inputs.drain(..) {
            // The recording keeps everything; the filter is for the metrics.
            if let Some(r) = recorder.as_mut() {
                r.append(&i);
            }
            if matches!(&i, Input::Event(ev) if !filter.matches(ev)) {
                continue;
            }
            engine.apply(&i);
        }
    };
    apply(&mut engine, &mut inputs);

    let interval = Duration::from_secs_f64(args.interval);
    let (mut sink, rx) = ExporterSink::new(Limits {
        max_destinations: args.max_destinations,
        max_services: args.max_services,
        grace_s: args.grace,
    });
    // Unhealthy once three publications were missed.
    let server = tokio::spawn(http::serve(
        listener,
        rx,
        interval * 3 + Duration::from_secs(1),
    ));
    let publish = |engine: &mut Engine, sink: &mut ExporterSink, probe: &crate::probe::Probe| {
        let now_ns = monotonic_now_ns();
        engine.apply(&Input::Tick { now_ns });
        sink.publish(&engine.model(now_ns), probe.program_stats());
    };
    publish(&mut engine, &mut sink, &src.probe);
    eprintln!("portwatch: serving metrics on http://{listen}/metrics (Ctrl-C to stop)");

    let mut stop_signals = super::StopSignals::new(args.duration)?;
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut published = 1u64;
    loop {
        tokio::select! {
            _ = stop_signals.wait() => break,
            _ = src.next(&mut inputs) => apply(&mut engine, &mut inputs),
            _ = ticker.tick() => {
                publish(&mut engine, &mut sink, &src.probe);
                published += 1;
            }
        }
    }
    server.abort();
    src.finish(&mut inputs);
    apply(&mut engine, &mut inputs);
    let losses = src.probe.losses();
    drop(src); // detaches the probes
    if let Some(r) = recorder {
        match r.finish() {
            Ok(summary) => eprintln!("portwatch: {summary}"),
            Err(e) => eprintln!("portwatch: error: {e:#}"),
        }
    }
    eprintln!("portwatch: stopped: {published} publications, {losses}");
    Ok(())
}
