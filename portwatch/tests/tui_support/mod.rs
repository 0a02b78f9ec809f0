//! Drawing `top` screens on ratatui's TestBackend for the TUI tests.
#![allow(dead_code, reason = "each test file uses a different subset")]

use portwatch::tui::app::App;
use portwatch::tui::draw::draw;
use portwatch::tui::view::Screen;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;

/// `screen` drawn for `app` on a `w`×`h` test terminal: its cells.
pub fn drawn_cells(app: &App, screen: &Screen, w: u16, h: u16) -> Buffer {
    let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
    term.draw(|f| draw(f, app, screen)).unwrap();
    term.backend().buffer().clone()
}

/// `screen` drawn for `app` on a `w`×`h` terminal, as text: one line per
/// row, trailing blanks trimmed.
pub fn screen_as_text(app: &App, screen: &Screen, w: u16, h: u16) -> String {
    let buf = drawn_cells(app, screen, w, h);
    let mut out = String::new();
    for y in 0..h {
        let mut line = String::new();
        for x in 0..w {
            line.push_str(buf[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
