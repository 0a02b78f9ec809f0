//! `portwatch top --batch`: the live loop.
//!
//! One owner of state: probe events and collector readings become
//! [`Input`]s, the engine applies them, and every interval the model is
//! printed. The same Input stream is what the recorder will write, so a
//! replay computes the same snapshots.

use std::io::{self, BufWriter, Write};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::record::Recorder;
use crate::cli::TopArgs;
use crate::clock::monotonic_now_ns;
use crate::engine::Engine;
use crate::filter::Filter;
use crate::input::Input;
use crate::live::LiveSource;
use crate::render::batch;

pub fn run(args: TopArgs) -> Result<()> {
    if !(args.interval.is_finite() && args.interval > 0.0) {
        bail!("--interval must be a positive number of seconds");
    }
    super::block_on(top_batch(args))
}

async fn top_batch(args: TopArgs) -> Result<()> {
    let mut inputs = Vec::new();
    // Starts from the truth (host, socket table, counters), then the probe.
    let mut src = LiveSource::start(&mut inputs)?;
    src.set_resync(Duration::from_secs_f64(args.resync.max(0.5)));
    for w in &src.warnings {
        eprintln!("portwatch: warning: {w}");
    }
    let filter = Filter::new(&args.filter);
    let mut engine = Engine::new(super::engine_config(&args.verdict));
    let mut recorder = match &args.record {
        Some(p) => Some(Recorder::create(p, args.force)?),
        None => None,
    };
    let mut apply = |engine: &mut Engine, inputs: &mut Vec<Input>| {
        for i in inputs.drain(..) {
            // The recording keeps everything; the filter is for the view.
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

    let mut stop_signals = super::StopSignals::new(None)?;
    let interval = Duration::from_secs_f64(args.interval);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let mut out = BufWriter::new(io::stdout().lock());
    let mut printed = 0u64;
    eprintln!("portwatch: watching TCP connections (Ctrl-C to stop)");
    loop {
        tokio::select! {
            _ = stop_signals.wait() => break,
            _ = src.next(&mut inputs) => apply(&mut engine, &mut inputs),
            _ = ticker.tick() => {
                let now_ns = monotonic_now_ns();
                engine.apply(&Input::Tick { now_ns });
                let model = engine.model(now_ns);
                let r = if args.json {
                    batch::write_json(&mut out, &model, args.interval, args.rows)
                } else {
                    batch::write_text(&mut out, &model, args.rows)
                };
                match r.and_then(|()| out.flush()) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
                    Err(e) => return Err(e).context("writing output"),
                }
                printed += 1;
                if args.iterations.is_some_and(|n| printed >= n) {
                    break;
                }
            }
        }
    }
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
    eprintln!("portwatch: stopped: {printed} snapshots, {losses}");
    Ok(())
}
