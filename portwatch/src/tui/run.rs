//! The TUI as a [`Sink`] of the pipeline: on each refresh the model
//! becomes a Screen that the drawing thread shows; keys change the App (or
//! go to the source: replay's pause, step, jump). Drawing never blocks
//! intake.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use crossterm::event::{Event as TermEvent, EventStream, KeyCode, KeyEventKind};
use futures_util::StreamExt;
use tokio::time::{Interval, MissedTickBehavior};

use crate::engine::Engine;
use crate::engine::model::Model;
use crate::pipeline::{Control, End, Flow, Sink, Stop};

use super::app::{Action, App};
use super::screen::build;
use super::term::Tui;
use super::view::Screen;

/// What woke the TUI.
pub enum Wake {
    Key(Option<std::io::Result<TermEvent>>),
    Refresh,
}

pub struct TuiSink {
    app: App,
    /// Names the trace file in closing warnings (replay), None live.
    file: Option<String>,
    tui: Option<Tui>,
    keys: Option<EventStream>,
    refresh: Interval,
    model: Model,
    screen: Arc<Screen>,
}

fn interval(every: Duration) -> Interval {
    let mut i = tokio::time::interval(every);
    i.set_missed_tick_behavior(MissedTickBehavior::Delay);
    i
}

impl TuiSink {
    /// Must be called inside a tokio runtime.
    pub fn new(app: App, file: Option<String>) -> Self {
        TuiSink {
            refresh: interval(app.interval),
            app,
            file,
            tui: None,
            keys: None,
            model: Model::default(),
            screen: Arc::new(Screen::default()),
        }
    }

    fn show(&mut self, ctl: &dyn Control) {
        self.screen = Arc::new(build(&self.model, &self.app, ctl.label()));
        self.app.clamp_selection(&self.screen);
        if let Some(t) = &self.tui {
            t.show(&self.app, self.screen.clone());
        }
    }

    fn on_key(&mut self, ev: TermEvent, ctl: &mut dyn Control) -> Flow {
        let TermEvent::Key(k) = ev else {
            // Resize and the like: redraw at the new size.
            if let Some(t) = &self.tui {
                t.show(&self.app, self.screen.clone());
            }
            return Flow::Continue;
        };
        if k.kind != KeyEventKind::Press {
            return Flow::Continue;
        }
        // Not while a filter is typed: its letters are text.
        if self.app.editing.is_none() && ctl.source_key(k.code) {
            // The source moved (replay step); show it now.
        } else if k.code == KeyCode::Char('e') && self.app.editing.is_none() {
            if let Some(name) = self.app.selected_key(&self.screen) {
                self.app.toggle_expand(&name);
            }
        } else {
            let rows = if self.app.advice {
                let (w, h) = crossterm::terminal::size().unwrap_or((80, 24));
                super::draw::advice_positions(&self.screen, ratatui::layout::Rect::new(0, 0, w, h))
            } else {
                self.app.row_count(&self.screen)
            };
            match self.app.on_key(k, rows) {
                Action::Quit => return Flow::Stop(Stop::Done),
                Action::Interval => self.refresh = interval(self.app.interval),
                Action::Redraw | Action::None => {}
            }
        }
        self.show(ctl);
        Flow::Continue
    }

    fn on_refresh(&mut self, ctl: &mut dyn Control) {
        if !self.app.paused {
            self.model = ctl.engine().model(ctl.now_ns());
        }
        self.show(ctl);
    }
}

impl Sink for TuiSink {
    type Wake = Wake;

    fn start(&mut self, _ctl: &mut dyn Control) -> Result<()> {
        self.tui = Some(Tui::enter()?);
        self.keys = Some(EventStream::new());
        Ok(())
    }

    async fn wake(&mut self) -> Wake {
        let Some(keys) = self.keys.as_mut() else {
            return std::future::pending().await;
        };
        tokio::select! {
            k = keys.next() => Wake::Key(k),
            _ = self.refresh.tick() => Wake::Refresh,
        }
    }

    fn on_wake(&mut self, wake: Wake, ctl: &mut dyn Control) -> Result<Flow> {
        let flow = match wake {
            Wake::Key(Some(Ok(ev))) => self.on_key(ev, ctl),
            // The terminal's input ended or failed.
            Wake::Key(_) => Flow::Stop(Stop::Done),
            Wake::Refresh => {
                self.on_refresh(ctl);
                Flow::Continue
            }
        };
        if self.tui.as_ref().is_some_and(Tui::failed) {
            return Ok(Flow::Stop(Stop::Failed));
        }
        Ok(flow)
    }

    /// Restores the terminal; a drawing error is returned here.
    fn leave(&mut self) -> Result<()> {
        let Some(tui) = self.tui.take() else {
            return Ok(());
        };
        let err = tui.error.lock().ok().and_then(|mut e| e.take());
        drop(tui); // restores the terminal
        match err {
            Some(e) => Err(e).context("drawing the screen"),
            None => Ok(()),
        }
    }

    /// The terminal is restored by now: what went wrong goes to a
    /// readable stderr.
    fn close(self, _engine: &Engine, end: End) -> Result<()> {
        let at = self.file.map(|f| format!("{f}: ")).unwrap_or_default();
        for w in &end.source.warnings {
            eprintln!("portwatch: warning: {at}{w}");
        }
        if let Some(e) = &end.source.error {
            eprintln!("portwatch: warning: {at}{e}");
        }
        if let Some(losses) = end.source.losses {
            eprintln!("portwatch: stopped: {losses}");
        }
        crate::pipeline::sinks::print_recorded(end.recorded);
        Ok(())
    }
}
