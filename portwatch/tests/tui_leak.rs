//! A CLOSE_WAIT leak as `top` draws it, from the engine's model (engine →
//! screen → draw): the LEAK badge, the holder in the Destinations view,
//! the verdict in the detail pane, and the advice.

use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use portwatch::engine::{Config, Engine, Model};
use portwatch::input::{Input, SocketTable};
use portwatch::tui::app::{App, View};
use portwatch::tui::screen::build;

mod engine_support;
use engine_support::*;
mod tui_support;
use tui_support::screen_as_text;

const NS: u32 = 4026531840;

fn render(app: &App, m: &Model, w: u16, h: u16) -> String {
    screen_as_text(app, &build(m, app, None), w, h)
}

/// A client (pid 42) holding the ten ports of 40000-40009 in CLOSE_WAIT
/// for 12 s, after four of its connects failed for want of a port.
fn leaking() -> Model {
    let mut e = Engine::new(Config::default());
    e.apply(&host(40000, 40009));
    e.apply(&cgroup(5, "/"));
    let t = task(42, "leaky", 5);
    for i in 0..4 {
        e.apply(&connect_error(t, "127.0.0.1:7000", S + i * MS, 99));
    }
    let entries = close_wait_sockets("127.0.0.1", "127.0.0.1:7000", 10, 100);
    for s in 2..=14 {
        e.apply(&Input::Sockets(SocketTable {
            ts_ns: s * S,
            netns: NS,
            entries: entries.clone(),
            without_time_wait: false,
        }));
        if s == 2 {
            e.apply(&all_owned_by(2 * S + MS, &entries, 42, "leaky", 5));
        }
    }
    e.apply(&tick(14 * S));
    e.model(14 * S)
}

fn app(view: View) -> App {
    App::new(view, Duration::from_secs(1), String::new(), true)
}

#[test]
fn a_leak_is_badged_in_services_and_its_holder_named_in_destinations() {
    let m = leaking();
    insta::assert_snapshot!(render(&app(View::Services), &m, 80, 24));
    insta::assert_snapshot!(render(&app(View::Destinations), &m, 100, 24));
}

#[test]
fn a_leak_detail_pane_gives_its_evidence_and_fix() {
    let m = leaking();
    let mut a = app(View::Services);
    a.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE), 3);
    insta::assert_snapshot!(render(&a, &m, 100, 34));
}

#[test]
fn a_leak_heads_the_advice() {
    let m = leaking();
    let mut a = app(View::Services);
    a.on_key(KeyEvent::new(KeyCode::Char('a'), KeyModifiers::NONE), 3);
    insta::assert_snapshot!(render(&a, &m, 100, 30));
}
