//! `top --batch`: the model every interval, as text or one JSON object.

use std::io::Write;
use std::time::Duration;

use anyhow::Result;
use tokio::time::Interval;

use super::super::{Control, End, Flow, Sink, Stop};
use crate::engine::Engine;
use crate::render::batch;

pub struct BatchSink<W> {
    out: W,
    json: bool,
    rows: usize,
    /// Seconds between snapshots, as given (the JSON's `interval_s`).
    interval_s: f64,
    iterations: Option<u64>,
    ticker: Option<Interval>,
    printed: u64,
}

impl<W: Write> BatchSink<W> {
    pub fn new(out: W, json: bool, rows: usize, interval_s: f64, iterations: Option<u64>) -> Self {
        BatchSink {
            out,
            json,
            rows,
            interval_s,
            iterations,
            ticker: None,
            printed: 0,
        }
    }
}

impl<W: Write> Sink for BatchSink<W> {
    type Wake = ();

    fn start(&mut self, ctl: &mut dyn Control) -> Result<()> {
        for w in ctl.warnings() {
            eprintln!("portwatch: warning: {w}");
        }
        self.ticker = Some(super::ticker(Duration::from_secs_f64(self.interval_s)));
        eprintln!("portwatch: watching TCP connections (Ctrl-C to stop)");
        Ok(())
    }

    async fn wake(&mut self) {
        super::tick(&mut self.ticker).await
    }

    fn on_wake(&mut self, (): (), ctl: &mut dyn Control) -> Result<Flow> {
        let now_ns = ctl.now_ns();
        ctl.tick(now_ns);
        // Only the rows printed are built (every total is still whole).
        let model = ctl.engine().model_top(now_ns, self.rows);
        let r = if self.json {
            batch::write_json(&mut self.out, &model, self.interval_s, self.rows)
        } else {
            batch::write_text(&mut self.out, &model, self.rows)
        };
        let flow = super::written(r.and_then(|()| self.out.flush()), "writing output")?;
        if flow != Flow::Continue {
            return Ok(flow);
        }
        self.printed += 1;
        if self.iterations.is_some_and(|n| self.printed >= n) {
            return Ok(Flow::Stop(Stop::Done));
        }
        Ok(Flow::Continue)
    }

    fn close(self, _engine: &Engine, end: End) -> Result<()> {
        super::print_recorded(end.recorded);
        if end.stop != Stop::Quiet {
            let losses = end.source.losses.unwrap_or_default();
            eprintln!("portwatch: stopped: {} snapshots, {losses}", self.printed);
        }
        Ok(())
    }
}
