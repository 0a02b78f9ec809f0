//! `portwatch exporter`: every interval the model is folded into the
//! exporter's series, rendered once in both exposition formats and
//! published on a watch channel. The HTTP server (a task on the same
//! runtime) only reads what was published, so a scrape never holds up
//! intake and a stalled scraper costs a connection task, nothing more.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use hyper::body::Bytes;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Interval;

use super::super::{Control, End, Flow, Sink, Stop};
use crate::engine::{Engine, Model};
use crate::exporter::http::{self, Published};
use crate::exporter::{HostExtras, Limits, Series};
use crate::probe::ProgramStats;

pub struct ExporterSink {
    series: Series,
    interval: Duration,
    listener: Option<TcpListener>,
    tx: watch::Sender<Option<Arc<Published>>>,
    server: Option<JoinHandle<()>>,
    ticker: Option<Interval>,
    published: u64,
}

impl ExporterSink {
    /// `listener` is bound by the caller, so that a taken port is an error
    /// before the probes load.
    pub fn new(listener: TcpListener, limits: Limits, interval: Duration) -> Self {
        ExporterSink {
            series: Series::new(limits),
            interval,
            listener: Some(listener),
            tx: watch::channel(None).0,
            server: None,
            ticker: None,
            published: 0,
        }
    }

    fn publish(&mut self, model: &Model, programs: Option<Vec<ProgramStats>>) {
        let extras = HostExtras { programs };
        let (om, prom) = crate::exporter::render(&mut self.series, model, &extras);
        self.tx.send_replace(Some(Arc::new(Published {
            openmetrics: Bytes::from(om),
            prometheus: Bytes::from(prom),
            at: Instant::now(),
        })));
        self.published += 1;
    }

    fn refresh(&mut self, ctl: &mut dyn Control) {
        let now_ns = ctl.now_ns();
        ctl.tick(now_ns);
        let model = ctl.engine().model(now_ns);
        self.publish(&model, ctl.program_stats());
    }
}

impl Sink for ExporterSink {
    type Wake = ();

    fn start(&mut self, ctl: &mut dyn Control) -> Result<()> {
        for w in ctl.warnings() {
            eprintln!("portwatch: warning: {w}");
        }
        let listener = self.listener.take().expect("started once");
        let addr = listener.local_addr()?;
        // Unhealthy once three publications were missed.
        let stale_after = self.interval * 3 + Duration::from_secs(1);
        self.server = Some(tokio::spawn(http::serve(
            listener,
            self.tx.subscribe(),
            stale_after,
        )));
        // The host's starting state (socket table, counters) is in already.
        self.refresh(ctl);
        self.ticker = Some(super::ticker(self.interval));
        eprintln!("portwatch: serving metrics on http://{addr}/metrics (Ctrl-C to stop)");
        Ok(())
    }

    async fn wake(&mut self) {
        super::tick(&mut self.ticker).await
    }

    fn on_wake(&mut self, (): (), ctl: &mut dyn Control) -> Result<Flow> {
        self.refresh(ctl);
        Ok(Flow::Continue)
    }

    fn close(self, _engine: &Engine, end: End) -> Result<()> {
        if let Some(s) = self.server {
            s.abort();
        }
        super::print_recorded(end.recorded);
        if end.stop != Stop::Quiet {
            let losses = end.source.losses.unwrap_or_default();
            eprintln!(
                "portwatch: stopped: {} publications, {losses}",
                self.published
            );
        }
        Ok(())
    }
}
