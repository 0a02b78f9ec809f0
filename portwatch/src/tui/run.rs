//! The TUI's main loop: the single owner of state. Inputs go into the
//! engine; on each refresh the model becomes a Screen that the drawing
//! thread shows; keys change the App. Drawing never blocks intake.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use crossterm::event::{Event as TermEvent, EventStream, KeyCode, KeyEventKind};
use futures_util::StreamExt;

use crate::engine::Engine;
use crate::engine::model::Model;
use crate::input::Input;

use super::app::{Action, App};
use super::screen::{Rates, build, eaddrnotavail_total};
use super::term::Tui;
use super::view::Screen;

/// Where inputs come from: the live host, or a recording being replayed.
pub trait Feed {
    /// Appends the next batch of inputs; waits as long as needed.
    fn next<'a>(
        &'a mut self,
        out: &'a mut Vec<Input>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = FeedState> + 'a>>;
    /// The time the model should be computed at (CLOCK_MONOTONIC ns).
    fn now_ns(&self, engine: &Engine) -> u64;
    /// A label for the header ("replay 00:01:00 / 00:05:00"), None live.
    fn label(&self) -> Option<String> {
        None
    }
    /// Keys the feed itself understands (replay: step, jump to end).
    fn on_key(&mut self, _key: KeyCode) -> bool {
        false
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedState {
    More,
    /// Nothing more will come (end of a recording); the TUI stays up.
    Ended,
}

/// Runs the TUI until the user quits or a signal arrives. `on_input` sees
/// every input before the engine does (the recorder hooks in there).
pub async fn run(
    feed: &mut dyn Feed,
    engine: &mut Engine,
    mut app: App,
    mut on_input: impl FnMut(&Input),
) -> Result<()> {
    let mut stop_signals = crate::cmd::StopSignals::new(None)?;
    let tui = Tui::enter()?;
    let mut keys = EventStream::new();
    let mut refresh = tokio::time::interval(app.interval);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut inputs = Vec::new();
    let mut model = Model::default();
    let mut screen = Arc::new(Screen::default());
    let mut rates = Rates::default();
    let mut last_eaddr: Option<(u64, u64)> = None;
    let mut ended = false;

    loop {
        tokio::select! {
            state = feed.next(&mut inputs), if !ended => {
                for i in inputs.drain(..) {
                    on_input(&i);
                    engine.apply(&i);
                }
                ended = state == FeedState::Ended;
            }
            key = keys.next() => {
                let Some(Ok(ev)) = key else { break };
                let TermEvent::Key(k) = ev else {
                    // Resize and the like: redraw at the new size.
                    tui.show(&app, screen.clone());
                    continue;
                };
                if k.kind != KeyEventKind::Press {
                    continue;
                }
                // Not while a filter is typed: its letters are text.
                if app.editing.is_none() && feed.on_key(k.code) {
                    // The feed moved (replay step); show it now.
                } else if k.code == KeyCode::Char('e') && app.editing.is_none() {
                    if let Some(name) = app.selected_key(&screen) {
                        app.toggle_expand(&name);
                    }
                } else {
                    match app.on_key(k, app.row_count(&screen)) {
                        Action::Quit => break,
                        Action::Interval => {
                            refresh = tokio::time::interval(app.interval);
                            refresh.set_missed_tick_behavior(
                                tokio::time::MissedTickBehavior::Delay,
                            );
                        }
                        Action::Redraw | Action::None => {}
                    }
                }
                screen = Arc::new(build(&model, &app, rates, feed.label()));
                app.clamp_selection(&screen);
                tui.show(&app, screen.clone());
            }
            _ = refresh.tick() => {
                if !app.paused {
                    let now = feed.now_ns(engine);
                    model = engine.model(now);
                    let total = eaddrnotavail_total(&model);
                    if let Some((t0, n0)) = last_eaddr {
                        let dt = now.saturating_sub(t0) as f64 / 1e9;
                        if dt > 0.0 {
                            rates.eaddrnotavail_per_s = total.saturating_sub(n0) as f64 / dt;
                        }
                    }
                    last_eaddr = Some((now, total));
                }
                screen = Arc::new(build(&model, &app, rates, feed.label()));
                app.clamp_selection(&screen);
                tui.show(&app, screen.clone());
            }
            _ = stop_signals.wait() => break,
        }
        if tui.failed() {
            break;
        }
    }
    let err = tui.error.lock().ok().and_then(|mut e| e.take());
    drop(tui); // restores the terminal
    if let Some(e) = err {
        return Err(e).context("drawing the screen");
    }
    Ok(())
}

/// Default refresh interval of `top`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
