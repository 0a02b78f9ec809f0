//! Whole-screen snapshots of `portwatch top` from synthetic screens, drawn
//! on ratatui's TestBackend. CI runs with INSTA_UPDATE=no: a changed screen
//! fails until its .snap file is reviewed and committed.

use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use portwatch::tui::app::{App, View};
use portwatch::tui::view::*;

mod tui_support;
use tui_support::{drawn_cells, screen_as_text as render};

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
        rates_window_s: 10,
        failures_by_errno: if eaddr > 0.0 {
            vec![
                ("EADDRNOTAVAIL".into(), eaddr),
                ("ECONNREFUSED".into(), 12.0),
            ]
        } else {
            vec![("ECONNREFUSED".into(), 12.0)]
        },
        advice_count: ADVICE.len(),
        lost_events: lost,
        conntrack: None,
        advice: Some(ADVICE[0].1.into()),
        source: None,
        ns_note: None,
    }
}

/// Advice as the engine words it, most important first.
const ADVICE: &[(&str, &str)] = &[
    (
        "warning",
        "a destination holds 95% of its ephemeral port budget; new connects to it will fail \
         with EADDRNOTAVAIL",
    ),
    (
        "suggestion",
        "net.ipv4.tcp_tw_reuse=2 (the default) reuses TIME_WAIT ports for loopback only; 1 \
         extends it to all destinations (needs TCP timestamps on both ends, helps only the \
         connecting side)",
    ),
    (
        "suggestion",
        "net.ipv4.ip_local_port_range is 32768-60999 (28232 ports); a wider range (e.g. \
         10240-65535) buys time, pooling fixes the cause",
    ),
    (
        "note",
        "tcp_fin_timeout (60 s) only bounds orphaned FIN_WAIT2 sockets; it does not shorten \
         TIME_WAIT, which is fixed at 60 s on Linux",
    ),
    (
        "note",
        "inbound churn on local port 8080: 310.0 accepted connections/s living 2.1ms; the \
         clients of this server lack pooling (fix it in them)",
    ),
    (
        "note",
        "connections from 3 other network namespace(s) (containers) were seen: their sysctls \
         and port budgets are their own, not the ones shown",
    ),
];

fn advice_items() -> Vec<AdviceItem> {
    ADVICE
        .iter()
        .map(|(level, text)| AdviceItem {
            level: level.to_string(),
            text: text.to_string(),
        })
        .collect()
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
                leaks_sockets: false,
                processes: vec![ProcessRow {
                    pid: 4242,
                    comm: "orders-api".into(),
                    new_per_s: 452.0,
                    time_wait: 26890,
                }],
                ..ServiceRow::default()
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
                leaks_sockets: false,
                processes: vec![],
                ..ServiceRow::default()
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
                leaks_sockets: false,
                processes: vec![],
                ..ServiceRow::default()
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
                pinned: true,
                ..DestRow::default()
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
                pinned: false,
                ..DestRow::default()
            },
        ],
        failures: vec![
            FailureRow {
                errno: "ECONNREFUSED".into(),
                cause: "refused".into(),
                service: "payments".into(),
                dest: "[2001:db8::1]:443".into(),
                count: 2,
                last_seen: "15:32:18".into(),
            },
            FailureRow {
                errno: "EADDRNOTAVAIL".into(),
                cause: "port_exhaustion".into(),
                service: "orders-api.service".into(),
                dest: "10.0.3.7:5432".into(),
                count: 1,
                last_seen: "15:32:19".into(),
            },
            FailureRow {
                errno: "EADDRNOTAVAIL".into(),
                cause: "address_unavailable".into(),
                service: "payments".into(),
                dest: "10.0.9.9:443".into(),
                count: 4,
                last_seen: "15:32:17".into(),
            },
        ],
        detail: Some(Detail {
            title: "orders-api.service (unit)".into(),
            identity: None,
            netns: None,
            peers_label: "Connects to".into(),
            peers: vec![("10.0.3.7:5432".into(), 452.0, 26890)],
            facts: vec![
                "Failed 12: aborted 9, timed_out 3".into(),
                "SYN retransmits 31".into(),
                "NAT port demand ~54240".into(),
            ],
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
                call_sites: vec![
                    "  80%  __libc_connect (connect.c:26) < db_query (db.c:41) < main (main.c:9)"
                        .into(),
                    "  20%  __libc_connect (connect.c:26) < health_check (health.c:12)".into(),
                ],
            }),
        }),
        advice: advice_items(),
        namespaces: vec![],
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
    let buf = drawn_cells(&a, &s, 80, 24);
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
fn header_shows_a_full_conntrack_table_in_red() {
    let mut s = busy_screen();
    s.header = header(0.0, 0);
    s.header.conntrack = Some((
        "conntrack 261900/262144 (99.9%), turned away 41.0/s in payments".into(),
        true,
    ));
    let mut a = app(View::Services);
    a.no_color = false;
    let buf = drawn_cells(&a, &s, 140, 24);
    let line: String = (0..140).map(|x| buf[(x, 1)].symbol().to_string()).collect();
    let x = line
        .find("conntrack 261900/262144")
        .expect("conntrack in header") as u16;
    assert_eq!(buf[(x, 1)].fg, ratatui::style::Color::Red);
    insta::assert_snapshot!(render(&a, &s, 140, 24));
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

#[test]
fn header_says_its_window_and_the_failure_breakdown_adds_up() {
    let mut s = busy_screen();
    s.header = header(35.0, 0);
    let text = render(&app(View::Services), &s, 80, 24);
    let line = text.lines().nth(2).expect("rates line");
    assert_eq!(
        line,
        "new 472/s  failures 47.0/s = EADDRNOTAVAIL 35.0 + ECONNREFUSED 12.0  (10 s)"
    );
    let parts: f64 = s.header.failures_by_errno.iter().map(|p| p.1).sum();
    assert_eq!(parts, s.header.failures_per_s);
    let advice = text.lines().nth(3).expect("advice line");
    assert!(
        advice.starts_with(&format!(
            "advice ({}): a destination holds 95%",
            ADVICE.len()
        )),
        "{advice}"
    );
    assert!(advice.ends_with("…  a: all"), "{advice}");
    assert!(advice.chars().count() <= 80);
    insta::assert_snapshot!(text);
}

/// Every word of every advice item appears on the screen, in order.
fn assert_all_advice_shown(text: &str, items: &[(&str, &str)]) {
    let shown: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c == '│')
        .filter(|w| !w.is_empty())
        .collect();
    let mut at = 0;
    for (level, item) in items {
        for w in format!("{level}: {item}").split_whitespace() {
            let found = shown[at..]
                .iter()
                .position(|s| *s == w)
                .unwrap_or_else(|| panic!("{w:?} of {item:?} not shown:\n{text}"));
            at += found + 1;
        }
    }
}

#[test]
fn advice_pane_at_80x24_shows_whole_items_and_scrolls_to_the_rest() {
    let s = busy_screen();
    let rows = portwatch::tui::draw::advice_positions(&s, ratatui::layout::Rect::new(0, 0, 80, 24));
    assert!(rows > 1, "6 items do not fit 80x24 at once");
    let mut a = app(View::Services);
    a.on_key(key(KeyCode::Char('a')), rows);
    assert!(a.advice);
    let first = render(&a, &s, 80, 24);
    assert!(first.contains("more below ↓"), "{first}");
    insta::assert_snapshot!("advice_pane_80x24_top", first);
    // Scroll to the end: every item is shown in full on one of the screens.
    let mut screens = first.clone();
    for _ in 0..ADVICE.len() {
        a.on_key(key(KeyCode::Down), rows);
        screens.push_str(&render(&a, &s, 80, 24));
    }
    assert_eq!(
        a.advice_top,
        rows - 1,
        "scrolling stops once the last items fill the pane"
    );
    for item in ADVICE {
        let mut found = false;
        for screen in screens.split("portwatch web-17").filter(|x| !x.is_empty()) {
            if std::panic::catch_unwind(|| assert_all_advice_shown(screen, &[*item])).is_ok() {
                found = true;
            }
        }
        assert!(found, "{item:?} never shown in full");
    }
    let end = render(&a, &s, 80, 24);
    assert!(!end.contains("more below"), "{end}");
    insta::assert_snapshot!("advice_pane_80x24_end", end);
    a.on_key(key(KeyCode::Esc), rows);
    assert!(!a.advice);
}

#[test]
fn advice_pane_at_200x50_holds_every_item() {
    let mut a = app(View::Services);
    a.on_key(key(KeyCode::Char('a')), ADVICE.len());
    let text = render(&a, &busy_screen(), 200, 50);
    assert_all_advice_shown(&text, ADVICE);
    assert!(!text.contains("more below"), "{text}");
    insta::assert_snapshot!(text);
}

#[test]
fn pressure_bar_turns_yellow_at_50_and_red_at_90_percent_without_no_color() {
    use portwatch::engine::model::{PRESSURE_ALERT, PRESSURE_WARN};
    let row = |addr: &str, pressure: f64| DestRow {
        addr: addr.into(),
        held: (pressure * 1000.0) as u64,
        budget: 1000,
        pressure,
        ..DestRow::default()
    };
    let mut s = busy_screen();
    s.destinations = vec![
        row("127.0.0.1:1", PRESSURE_ALERT),
        row("127.0.0.1:2", PRESSURE_ALERT - 0.01),
        row("127.0.0.1:3", PRESSURE_WARN),
        row("127.0.0.1:4", PRESSURE_WARN - 0.01),
    ];
    let colours = |no_color: bool| -> String {
        let mut a = app(View::Destinations);
        a.no_color = no_color;
        let buf = drawn_cells(&a, &s, 80, 24);
        let mut out = String::new();
        for y in 0..24u16 {
            let line: String = (0..80u16)
                .map(|x| buf[(x, y)].symbol().to_string())
                .collect();
            if let Some(addr) = line
                .split_whitespace()
                .next()
                .filter(|w| w.starts_with("127."))
            {
                // The bar starts after the address column.
                let x = line.find('█').or_else(|| line.find('░')).expect("bar") as u16;
                let x = line[..x as usize].chars().count() as u16;
                out.push_str(&format!("{addr} {:?}\n", buf[(x, y)].fg));
            }
        }
        out
    };
    let coloured = colours(false);
    assert!(coloured.contains("127.0.0.1:1 Red"), "{coloured}");
    assert!(coloured.contains("127.0.0.1:2 Yellow"), "{coloured}");
    assert!(coloured.contains("127.0.0.1:3 Yellow"), "{coloured}");
    assert!(coloured.contains("127.0.0.1:4 Reset"), "{coloured}");
    let plain = colours(true);
    assert!(
        !plain.contains("Red") && !plain.contains("Yellow"),
        "NO_COLOR: {plain}"
    );
    insta::assert_snapshot!(format!("colour:\n{coloured}NO_COLOR:\n{plain}"));
}

#[test]
fn pinned_destinations_stay_on_top_whatever_the_sort() {
    let mut s = busy_screen();
    // A quiet destination that just saw EADDRNOTAVAIL (pinned by the model).
    s.destinations.push(DestRow {
        addr: "10.0.9.9:80".into(),
        held: 3,
        budget: 28232,
        pressure: 3.0 / 28232.0,
        pinned: true,
        ..DestRow::default()
    });
    s.destinations[0].pinned = false;
    let mut a = app(View::Destinations);
    let order =
        |a: &App| -> Vec<String> { a.destinations(&s).iter().map(|r| r.addr.clone()).collect() };
    assert_eq!(order(&a)[0], "10.0.9.9:80");
    a.on_key(key(KeyCode::Char('S')), 3);
    assert_eq!(order(&a)[0], "10.0.9.9:80", "reversed sort keeps it first");
    a.on_key(key(KeyCode::Char('s')), 3);
    assert_eq!(order(&a)[0], "10.0.9.9:80", "other column keeps it first");
    insta::assert_snapshot!(render(&app(View::Destinations), &s, 80, 24));
}

// ---- Several network namespaces: a screen built from a real model ----

mod engine_support;

use engine_support::{MS, S, cgroup, churn, connect_error, host, sysctls, task, tick};
use portwatch::engine::{Config, Engine, Model};
use portwatch::event::{ConnClose, ConnectError, Event};
use portwatch::input::{Input, KernelCounters, NetnsInfo};

/// A pod's namespace (range 40000-40999, tcp_tw_reuse 0, read inside it).
const POD_NS: u32 = 4026532385;
/// A namespace that could not be entered.
const DENIED_NS: u32 = 4026532454;
const POD_CGROUP: &str = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod8b1c4a2e_3f9d_4c8e_a1b2_0123456789ab.slice/cri-containerd-0123456789abcdef.scope";

fn moved(i: Input, ns: u32) -> Input {
    match i {
        Input::Event(Event::Close(c)) => Input::Event(Event::Close(ConnClose { netns: ns, ..c })),
        Input::Event(Event::ConnectError(e)) => {
            Input::Event(Event::ConnectError(ConnectError { netns: ns, ..e }))
        }
        other => other,
    }
}

/// The host's unpooled client, the same client in a pod whose namespace
/// has a 1000-port range and tcp_tw_reuse 0 (and runs out: EADDRNOTAVAIL),
/// and one in a namespace portwatch was not allowed to enter; all to
/// 10.0.3.7:5432.
fn namespaces_model() -> Model {
    let mut pod = sysctls(40000, 40999);
    pod.tcp_tw_reuse = Some(0);
    let mut inputs = vec![
        host(32768, 60999),
        cgroup(1, "/"),
        cgroup(77, POD_CGROUP),
        Input::Netns(NetnsInfo {
            ts_ns: S / 2,
            netns: POD_NS,
            sysctls: Some(pod),
            counters: Some(KernelCounters {
                ts_ns: S / 2,
                tcp_tw: 1000,
                ..KernelCounters::default()
            }),
            error: None,
            stale: false,
        }),
        Input::Netns(NetnsInfo {
            ts_ns: S / 2,
            netns: DENIED_NS,
            error: Some("entering it: Operation not permitted (os error 1)".into()),
            ..NetnsInfo::default()
        }),
    ];
    let mut events: Vec<Input> = Vec::new();
    events.extend(churn(
        task(10, "orders", 1),
        "10.0.3.7:5432",
        1,
        31,
        20,
        MS,
        true,
    ));
    events.extend(
        churn(
            task(20, "checkout", 77),
            "10.0.3.7:5432",
            1,
            31,
            33,
            MS,
            true,
        )
        .into_iter()
        .map(|i| moved(i, POD_NS)),
    );
    events.extend((25..31).map(|s| {
        moved(
            connect_error(task(20, "checkout", 77), "10.0.3.7:5432", s * S, 99),
            POD_NS,
        )
    }));
    events.extend(
        churn(task(30, "batch", 1), "10.0.3.7:5432", 1, 31, 2, MS, true)
            .into_iter()
            .map(|i| moved(i, DENIED_NS)),
    );
    events.sort_by_key(|i| i.ts_ns());
    inputs.extend(events);
    inputs.push(tick(31 * S));
    let mut e = Engine::new(Config::default());
    for i in &inputs {
        e.apply(i);
    }
    e.model(31 * S)
}

fn screen_of(m: &Model, a: &App) -> Screen {
    portwatch::tui::screen::build(m, a, None)
}

#[test]
fn namespaces_services_view_at_80x24_has_a_netns_column_in_place_of_kind() {
    let m = namespaces_model();
    let a = app(View::Services);
    let text = render(&a, &screen_of(&m, &a), 80, 24);
    assert!(text.contains("NETNS"), "{text}");
    assert!(!text.contains("KIND"), "{text}");
    assert!(text.contains("netns:…32454"), "{text}");
    insta::assert_snapshot!(text);
}

#[test]
fn namespaces_services_view_wide_has_kind_and_netns() {
    let m = namespaces_model();
    let a = app(View::Services);
    let text = render(&a, &screen_of(&m, &a), 120, 20);
    assert!(text.contains("KIND") && text.contains("NETNS"), "{text}");
    assert!(text.contains("netns:4026532454"), "{text}");
    insta::assert_snapshot!(text);
}

#[test]
fn namespaces_destinations_view_says_the_selected_pod_differs_from_host() {
    let m = namespaces_model();
    let a = app(View::Destinations);
    let s = screen_of(&m, &a);
    let text = render(&a, &s, 80, 24);
    // The same address three times, one budget per namespace.
    assert_eq!(text.matches("10.0.3.7:5432").count(), 3, "{text}");
    let note = text.lines().nth(4).expect("namespace line");
    assert!(
        note.starts_with("selected: pod:8b1c4a2e")
            && note.ends_with("range 40000-40999, tw_reuse 0"),
        "{note}"
    );
    assert!(note.contains("differs from host"), "{note}");
    assert!(
        text.lines()
            .nth(1)
            .unwrap()
            .starts_with("host ports 32768-60999")
    );
    insta::assert_snapshot!(text);
}

#[test]
fn namespaces_destinations_view_wide_keeps_every_column() {
    let m = namespaces_model();
    let a = app(View::Destinations);
    let text = render(&a, &screen_of(&m, &a), 120, 20);
    assert!(text.contains(" TW ") && text.contains("NETNS"), "{text}");
    insta::assert_snapshot!(text);
}

#[test]
fn namespaces_column_is_left_out_on_a_narrow_terminal() {
    let m = namespaces_model();
    let a = app(View::Destinations);
    let text = render(&a, &screen_of(&m, &a), 74, 20);
    assert!(!text.contains("NETNS"), "{text}");
    // The header still names the selected row's namespace.
    assert!(
        text.lines().nth(4).unwrap().starts_with("selected: pod:"),
        "{text}"
    );
    insta::assert_snapshot!(text);
}

#[test]
fn namespaces_detail_pane_shows_the_pods_own_range_and_reuse() {
    let m = namespaces_model();
    let mut a = app(View::Destinations);
    let rows = screen_of(&m, &a).destinations.len();
    a.on_key(key(KeyCode::Enter), rows);
    let s = screen_of(&m, &a);
    let d = s.detail.as_ref().expect("detail");
    let ns = d.netns.as_deref().expect("namespace line");
    assert!(ns.contains(&format!("({POD_NS})")), "{ns}");
    assert!(
        ns.contains("range 40000-40999, budget 1000, tw_reuse 0"),
        "{ns}"
    );
    insta::assert_snapshot!(render(&a, &s, 100, 30));
}

#[test]
fn a_namespace_that_could_not_be_entered_shows_why_and_the_view_goes_on() {
    let m = namespaces_model();
    let mut a = app(View::Destinations);
    let s = screen_of(&m, &a);
    let rows = s.destinations.len();
    let at = a
        .destinations(&s)
        .iter()
        .position(|r| r.netns == Some(DENIED_NS))
        .expect("its destination is shown, from events alone");
    for _ in 0..at {
        a.on_key(key(KeyCode::Down), rows);
    }
    let list = render(&a, &screen_of(&m, &a), 80, 24);
    let note = list.lines().nth(4).expect("namespace line");
    assert!(
        note.starts_with(&format!(
            "selected: netns:{DENIED_NS} budget unknown, host's do not apply (not read: "
        )),
        "{note}"
    );
    // Its budget is unknown, never the host's.
    let row = list
        .lines()
        .find(|l| l.contains("netns:…32454"))
        .expect("its row");
    assert!(row.contains("/?"), "{row}");
    a.on_key(key(KeyCode::Enter), rows);
    let s = screen_of(&m, &a);
    let ns = s
        .detail
        .as_ref()
        .and_then(|d| d.netns.clone())
        .expect("namespace line");
    assert!(
        ns.contains("not read (entering it: Operation not permitted"),
        "{ns}"
    );
    insta::assert_snapshot!(format!("{list}\n{}", render(&a, &s, 100, 30)));
}
