//! Whole-screen snapshots of `portwatch top` from synthetic screens, drawn
//! on ratatui's TestBackend. CI runs with INSTA_UPDATE=no: a changed screen
//! fails until its .snap file is reviewed and committed.

use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use portwatch::tui::app::{App, View};
use portwatch::tui::draw::draw;
use portwatch::tui::view::*;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn render(app: &App, screen: &Screen, w: u16, h: u16) -> String {
    let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
    term.draw(|f| draw(f, app, screen)).unwrap();
    let buf = term.backend().buffer().clone();
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

fn header(eaddr: f64, lost: u64) -> Header {
    Header {
        host: "web-17".into(),
        kernel: "6.18.44".into(),
        observed_s: 83,
        port_range: (32768, 60999),
        budget: 28232,
        time_wait: 27114,
        open_ports: 312,
        new_per_s: 471.5,
        failures_per_s: 12.0 + eaddr,
        eaddrnotavail_per_s: eaddr,
        lost_events: lost,
        advice: Some("orders-api lacks pooling to 10.0.3.7:5432; tcp_tw_reuse=1 buys time".into()),
        source: None,
    }
}

fn busy_screen() -> Screen {
    Screen {
        header: header(0.0, 0),
        services: vec![
            ServiceRow {
                name: "orders-api.service".into(),
                kind: "unit".into(),
                new_per_s: 452.0,
                spark: vec![400, 420, 450, 460, 452, 455, 449, 470, 452, 452],
                time_wait: 26890,
                lifetime_p50_ms: Some(3.2),
                failures: 0,
                lacks_pooling: true,
                processes: vec![ProcessRow {
                    pid: 4242,
                    comm: "orders-api".into(),
                    new_per_s: 452.0,
                    time_wait: 26890,
                }],
            },
            ServiceRow {
                name: "payments".into(),
                kind: "pod".into(),
                new_per_s: 12.5,
                spark: vec![10, 12, 14, 12, 13],
                time_wait: 210,
                lifetime_p50_ms: Some(48000.0),
                failures: 2,
                lacks_pooling: false,
                processes: vec![],
            },
            ServiceRow {
                name: "curl".into(),
                kind: "process".into(),
                new_per_s: 7.0,
                spark: vec![0, 0, 7, 7],
                time_wait: 14,
                lifetime_p50_ms: Some(11.0),
                failures: 0,
                lacks_pooling: false,
                processes: vec![],
            },
        ],
        destinations: vec![
            DestRow {
                addr: "10.0.3.7:5432".into(),
                held: 26950,
                budget: 28232,
                new_per_s: 452.0,
                time_wait: 26890,
                failures: 0,
                top_talker: "orders-api.service".into(),
                pressure: 26950.0 / 28232.0,
            },
            DestRow {
                addr: "[2001:db8::1]:443".into(),
                held: 240,
                budget: 28232,
                new_per_s: 12.5,
                time_wait: 210,
                failures: 2,
                top_talker: "payments".into(),
                pressure: 240.0 / 28232.0,
            },
        ],
        failures: vec![
            FailureRow {
                errno: "ECONNREFUSED".into(),
                service: "payments".into(),
                dest: "[2001:db8::1]:443".into(),
                count: 2,
                last_seen: "15:32:18".into(),
            },
            FailureRow {
                errno: "EADDRNOTAVAIL".into(),
                service: "orders-api.service".into(),
                dest: "10.0.3.7:5432".into(),
                count: 1,
                last_seen: "15:32:19".into(),
            },
        ],
        detail: Some(Detail {
            title: "orders-api.service (unit)".into(),
            peers_label: "Connects to".into(),
            peers: vec![("10.0.3.7:5432".into(), 452.0, 26890)],
            rate_60s: (0..60).map(|i| 400 + (i % 7) * 10).collect(),
            lifetime_hist: vec![
                ("<1ms".into(), 20),
                ("<10".into(), 400),
                ("<100".into(), 30),
                ("<1s".into(), 2),
                (">1s".into(), 0),
            ],
            verdict: Some(VerdictText {
                headline: "lacks connection pooling → 10.0.3.7:5432".into(),
                evidence: "452 new/s, median lifetime 3.2 ms, this host closes first: 26890 \
                           TIME_WAIT hold 95% of the port budget to this destination"
                    .into(),
                fix: "reuse connections (HTTP keep-alive / a connection pool in the client); \
                      tcp_tw_reuse=1 only buys time"
                    .into(),
            }),
        }),
    }
}

fn app(view: View) -> App {
    App::new(view, Duration::from_secs(1), String::new(), true)
}

fn key(c: KeyCode) -> KeyEvent {
    KeyEvent::new(c, KeyModifiers::NONE)
}

#[test]
fn services_view_at_80x24() {
    insta::assert_snapshot!(render(&app(View::Services), &busy_screen(), 80, 24));
}

#[test]
fn services_view_expanded_and_wide() {
    let mut a = app(View::Services);
    a.toggle_expand("orders-api.service");
    insta::assert_snapshot!(render(&a, &busy_screen(), 120, 20));
}

#[test]
fn destinations_view() {
    insta::assert_snapshot!(render(&app(View::Destinations), &busy_screen(), 80, 24));
}

#[test]
fn failures_view_puts_eaddrnotavail_first() {
    insta::assert_snapshot!(render(&app(View::Failures), &busy_screen(), 80, 24));
}

#[test]
fn detail_pane() {
    let mut a = app(View::Services);
    a.on_key(key(KeyCode::Enter), 3);
    insta::assert_snapshot!(render(&a, &busy_screen(), 100, 30));
}

#[test]
fn help_overlay() {
    let mut a = app(View::Services);
    a.on_key(key(KeyCode::Char('?')), 3);
    insta::assert_snapshot!(render(&a, &busy_screen(), 80, 24));
}

#[test]
fn empty_state() {
    let s = Screen {
        header: Header {
            advice: None,
            new_per_s: 0.0,
            time_wait: 0,
            ..header(0.0, 0)
        },
        ..Screen::default()
    };
    insta::assert_snapshot!(render(&app(View::Services), &s, 80, 24));
}

#[test]
fn header_highlights_eaddrnotavail_and_lost_events() {
    let mut s = busy_screen();
    s.header = header(35.0, 12);
    let mut a = app(View::Services);
    a.no_color = false;
    let mut term = Terminal::new(TestBackend::new(80, 24)).unwrap();
    term.draw(|f| draw(f, &a, &s)).unwrap();
    let buf = term.backend().buffer().clone();
    // Header lines hold only ASCII before these words, so byte = column.
    let line = |y: u16| -> String { (0..80).map(|x| buf[(x, y)].symbol().to_string()).collect() };
    let lost = line(1).find("lost 12").expect("lost count in header") as u16;
    assert_eq!(buf[(lost, 1)].fg, ratatui::style::Color::Red);
    let x = line(2)
        .find("EADDRNOTAVAIL")
        .expect("EADDRNOTAVAIL in header") as u16;
    assert_eq!(buf[(x, 2)].fg, ratatui::style::Color::Red);
    insta::assert_snapshot!(render(&a, &s, 80, 24));
}

#[test]
fn filter_being_typed_is_shown() {
    let mut a = app(View::Services);
    a.on_key(key(KeyCode::Char('/')), 3);
    a.on_key(key(KeyCode::Char('p')), 3);
    a.on_key(key(KeyCode::Char('a')), 3);
    a.on_key(key(KeyCode::Enter), 3);
    insta::assert_snapshot!(render(&a, &busy_screen(), 80, 12));
}
