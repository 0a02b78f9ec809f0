//! The terminal: entered once, always restored (normal exit, error, signal,
//! panic), and drawn from a thread of its own so that a slow terminal (ssh
//! over a bad link) can never hold up event intake.

use std::io::{self, Stdout};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use crossterm::{cursor, execute, terminal};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

use super::app::App;
use super::draw::draw;
use super::view::Screen;

/// Puts the terminal back: leave the alternate screen, show the cursor,
/// cooked mode. Safe to call more than once.
pub fn restore() {
    let _ = terminal::disable_raw_mode();
    let _ = execute!(io::stdout(), terminal::LeaveAlternateScreen, cursor::Show);
}

/// A panic anywhere (draw thread included) restores the terminal before
/// the message is printed, so the message is readable and the shell usable.
fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        previous(info);
    }));
}

type Frame = Box<(App, Arc<Screen>)>;

/// Owns the terminal through a drawing thread.
pub struct Tui {
    frames: Option<SyncSender<Frame>>,
    drawer: Option<JoinHandle<io::Result<()>>>,
    /// Set when drawing failed (terminal gone); the loop then stops.
    pub error: Arc<Mutex<Option<io::Error>>>,
}

impl Tui {
    pub fn enter() -> Result<Tui> {
        install_panic_hook();
        terminal::enable_raw_mode().context("cannot switch the terminal to raw mode")?;
        if let Err(e) = execute!(io::stdout(), terminal::EnterAlternateScreen, cursor::Hide) {
            restore();
            return Err(e).context("cannot enter the alternate screen");
        }
        let term = match Terminal::new(CrosstermBackend::new(io::stdout())) {
            Ok(t) => t,
            Err(e) => {
                restore();
                return Err(e).context("cannot set up the terminal");
            }
        };
        // One frame in flight: if the terminal is slow, newer frames are
        // dropped instead of queueing (the next refresh redraws anyway).
        let (tx, rx) = sync_channel::<Frame>(1);
        let error = Arc::new(Mutex::new(None));
        let err2 = error.clone();
        let drawer = std::thread::Builder::new()
            .name("pw-draw".into())
            .spawn(move || draw_loop(term, rx, err2))
            .context("starting the drawing thread")?;
        Ok(Tui {
            frames: Some(tx),
            drawer: Some(drawer),
            error,
        })
    }

    /// Queues a frame; never blocks. Returns false if it was dropped.
    pub fn show(&self, app: &App, screen: Arc<Screen>) -> bool {
        // Full or disconnected: drop this frame; the next refresh redraws.
        self.frames
            .as_ref()
            .is_some_and(|f| f.try_send(Box::new((app.clone(), screen))).is_ok())
    }

    pub fn failed(&self) -> bool {
        self.error.lock().map(|e| e.is_some()).unwrap_or(true)
    }
}

fn draw_loop(
    mut term: Terminal<CrosstermBackend<Stdout>>,
    rx: Receiver<Frame>,
    error: Arc<Mutex<Option<io::Error>>>,
) -> io::Result<()> {
    for frame in rx {
        let (app, screen) = *frame;
        if let Err(e) = term.draw(|f| draw(f, &app, &screen)) {
            if let Ok(mut slot) = error.lock() {
                *slot = Some(io::Error::new(e.kind(), e.to_string()));
            }
            return Err(e);
        }
    }
    Ok(())
}

impl Drop for Tui {
    fn drop(&mut self) {
        // Closing the channel ends the drawing thread after its frame.
        self.frames.take();
        if let Some(d) = self.drawer.take() {
            let _ = d.join();
        }
        restore();
    }
}
