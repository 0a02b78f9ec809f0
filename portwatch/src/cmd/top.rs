//! `portwatch top`: the interactive view (or `--batch` for scripts).

use std::io::IsTerminal;
use std::pin::Pin;
use std::time::Duration;

use anyhow::{Result, bail};

use super::record::Recorder;
use crate::cli::TopArgs;
use crate::clock::monotonic_now_ns;
use crate::engine::Engine;
use crate::input::Input;
use crate::live::LiveSource;
use crate::tui::app::{App, View};
use crate::tui::run::{Feed, FeedState};

pub fn run(args: TopArgs) -> Result<()> {
    if args.batch {
        return super::top_batch::run(args);
    }
    if !std::io::stdout().is_terminal() {
        bail!(
            "standard output is not a terminal; use `portwatch top --batch` for scripts and pipes"
        );
    }
    super::block_on(top(args))
}

struct Live(LiveSource);

impl Feed for Live {
    fn next<'a>(
        &'a mut self,
        out: &'a mut Vec<Input>,
    ) -> Pin<Box<dyn std::future::Future<Output = FeedState> + 'a>> {
        Box::pin(async move {
            self.0.next(out).await;
            FeedState::More
        })
    }

    fn now_ns(&self, _engine: &Engine) -> u64 {
        monotonic_now_ns()
    }
}

pub fn initial_view(name: &str) -> View {
    match name {
        "destinations" => View::Destinations,
        "failures" => View::Failures,
        _ => View::Services,
    }
}

async fn top(args: TopArgs) -> Result<()> {
    let mut engine = Engine::new(super::engine_config(&args.verdict));
    let mut recorder = match &args.record {
        Some(p) => Some(Recorder::create(p, args.force)?),
        None => None,
    };
    let mut inputs = Vec::new();
    // Load the probes before taking over the terminal, so a failure is
    // reported on a normal screen.
    let src = LiveSource::start(&mut inputs)?;
    let warnings = src.warnings.clone();
    for i in inputs.drain(..) {
        if let Some(r) = recorder.as_mut() {
            r.append(&i);
        }
        engine.apply(&i);
    }
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let app = App::new(
        initial_view(&args.view),
        Duration::from_secs_f64(args.delay.unwrap_or(1.0).max(0.1)),
        args.filter_text.clone().unwrap_or_default(),
        no_color,
    );
    let mut feed = Live(src);
    let result = crate::tui::run::run(&mut feed, &mut engine, app, |i| {
        if let Some(r) = recorder.as_mut() {
            r.append(i);
        }
    })
    .await;
    let mut tail = Vec::new();
    feed.0.finish(&mut tail);
    if let Some(r) = recorder.as_mut() {
        tail.iter().for_each(|i| r.append(i));
    }
    let losses = feed.0.probe.losses();
    drop(feed); // detaches the probes
    for w in warnings {
        eprintln!("portwatch: warning: {w}");
    }
    eprintln!("portwatch: stopped: {losses}");
    if let Some(r) = recorder {
        match r.finish() {
            Ok(summary) => eprintln!("portwatch: {summary}"),
            Err(e) => eprintln!("portwatch: error: {e:#}"),
        }
    }
    result
}
