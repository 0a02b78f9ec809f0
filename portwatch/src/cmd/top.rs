//! `portwatch top`: the live host → the TUI (or `--batch`: text/JSON).

use std::io::{self, BufWriter, IsTerminal};
use std::time::Duration;

use anyhow::{Result, bail};

use crate::cli::TopArgs;
use crate::engine::Engine;
use crate::pipeline::sinks::batch::BatchSink;
use crate::pipeline::{Pipeline, Recorder, StopSignals};
use crate::tui::run::TuiSink;

pub fn run(args: TopArgs) -> Result<()> {
    if args.batch {
        let interval = args.batch_opts.interval_s;
        if !(interval.is_finite() && interval > 0.0) {
            bail!("--interval must be a positive number of seconds");
        }
    } else if !io::stdout().is_terminal() {
        bail!(
            "standard output is not a terminal; use `portwatch top --batch` for scripts and pipes"
        );
    }
    super::block_on(top(args))
}

async fn top(args: TopArgs) -> Result<()> {
    let recorder = (args.record.as_deref())
        .map(|p| Recorder::create(p, args.force))
        .transpose()?;
    // The probes before the terminal, so a failure is reported on a
    // normal screen.
    let (mut source, recorder) =
        super::start_live(&args.runtime.runtime_root, args.stack_sample, recorder)?;
    source.set_resync(Duration::from_secs_f64(args.resync_s.max(0.5)));
    // Before the terminal is taken, so it is read.
    super::note_netns_name(&args.filter);
    let engine = Engine::new(super::engine_config(&args.verdict));
    let stop = StopSignals::new(None)?;
    let filter = super::filter(&args.filter);
    if args.batch {
        let b = &args.batch_opts;
        let out = BufWriter::new(io::stdout().lock());
        let sink = BatchSink::new(out, b.json, b.rows, b.interval_s, b.iterations);
        Pipeline::new(source, engine, sink, stop)
            .record(recorder)
            .filter(filter)
            .run()
            .await
    } else {
        let app = super::app(
            &args.tui.view,
            args.tui.delay_s,
            args.tui.filter_text.clone(),
        );
        let sink = TuiSink::new(app, None);
        Pipeline::new(source, engine, sink, stop)
            .record(recorder)
            .filter(filter)
            .run()
            .await
    }
}
