//! Drawing: lays out a `Screen` for the current `App` state. Pure: reads
//! both, changes neither, so whole screens are snapshot-tested.

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Bar, BarChart, BarGroup, Block, Borders, Cell, Clear, Paragraph, Row, Sparkline, Table,
    TableState, Wrap,
};

use super::app::{App, View};
use super::view::{Detail, Screen};
use crate::engine::model::{PRESSURE_ALERT, PRESSURE_WARN};
use crate::render::fmt::{hms, ms_short as ms, rate, short_netns as short_ns};

/// Styles, or none of them under NO_COLOR.
struct Theme {
    color: bool,
}

impl Theme {
    fn s(&self, s: Style) -> Style {
        if self.color {
            s
        } else {
            // NO_COLOR: keep emphasis that is not colour.
            Style::default().add_modifier(s.add_modifier)
        }
    }
    fn alert(&self) -> Style {
        self.s(Style::default().fg(Color::Red).add_modifier(Modifier::BOLD))
    }
    fn warn(&self) -> Style {
        self.s(Style::default().fg(Color::Yellow))
    }
    fn dim(&self) -> Style {
        self.s(Style::default().fg(Color::DarkGray))
    }
    fn title(&self) -> Style {
        self.s(Style::default()
            .fg(Color::Cyan)
            .add_modifier(Modifier::BOLD))
    }
    fn selected(&self) -> Style {
        self.s(Style::default().add_modifier(Modifier::REVERSED))
    }
}

/// Header, tabs, body and footer: the header has a fifth line, about the
/// selected row's namespace, while several namespaces are seen (so moving
/// the selection never moves the table).
fn areas(area: Rect, s: &Screen) -> [Rect; 4] {
    let header = 4 + u16::from(s.header.ns_note.is_some());
    Layout::vertical([
        Constraint::Length(header),
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(area)
}

pub fn draw(f: &mut Frame, app: &App, screen: &Screen) {
    let theme = Theme {
        color: !app.no_color,
    };
    let [header, tabs, body, footer] = areas(f.area(), screen);
    draw_header(f, header, app, screen, &theme);
    draw_tabs(f, tabs, app, &theme);
    match app.view {
        View::Services => draw_services(f, body, app, screen, &theme),
        View::Destinations => draw_destinations(f, body, app, screen, &theme),
        View::Failures => draw_failures(f, body, app, screen, &theme),
    }
    draw_footer(f, footer, app, &theme);
    if let Some(d) = screen.detail.as_ref().filter(|_| app.detail) {
        draw_detail(f, body, d, &theme);
    }
    if app.advice {
        draw_advice(f, body, app, screen, &theme);
    }
    if app.help {
        draw_help(f, f.area(), &theme);
    }
}

fn draw_header(f: &mut Frame, area: Rect, app: &App, s: &Screen, t: &Theme) {
    let h = &s.header;
    let when = h
        .source
        .clone()
        .unwrap_or_else(|| format!("observed {}", hms(h.observed_s)));
    let mut l1 = vec![
        Span::styled("portwatch ", t.title()),
        Span::raw(format!("{} · {} · {}", h.host, h.kernel, when)),
    ];
    if app.paused {
        l1.push(Span::styled("  [PAUSED]", t.warn()));
    }
    let lost_style = if h.lost_events > 0 {
        t.alert()
    } else {
        Style::default()
    };
    // With other namespaces seen, the range and budget are the host's
    // (each namespace has its own: line 5, the detail pane); TIME_WAIT and
    // open sum them all.
    let whose = if h.ns_note.is_some() { "host " } else { "" };
    let mut l2 = vec![
        Span::raw(format!(
            "{whose}ports {}-{} budget {}/dest  TIME_WAIT {}  open {}  ",
            h.port_range.0, h.port_range.1, h.budget, h.time_wait, h.open_ports,
        )),
        Span::styled(format!("lost {}", h.lost_events), lost_style),
    ];
    if let Some((text, alarming)) = &h.conntrack {
        let style = if *alarming {
            t.alert()
        } else {
            Style::default()
        };
        l2.push(Span::raw("  "));
        l2.push(Span::styled(text.clone(), style));
    }
    // One window for the whole line, said once; failure rates with one
    // decimal (counts over 10 s, so exact) and their parts, which add up.
    let mut l3 = vec![Span::raw(format!(
        "new {}/s  failures {:.1}/s",
        rate(h.new_per_s),
        h.failures_per_s
    ))];
    for (i, (name, per_s)) in h.failures_by_errno.iter().enumerate() {
        l3.push(Span::raw(if i == 0 { " = " } else { " + " }));
        let style = if name == "EADDRNOTAVAIL" {
            t.alert()
        } else {
            Style::default()
        };
        l3.push(Span::styled(format!("{name} {per_s:.1}"), style));
    }
    l3.push(Span::styled(format!("  ({} s)", h.rates_window_s), t.dim()));
    let l4 = match &h.advice {
        Some(a) => {
            let label = format!("advice ({}): ", h.advice_count);
            let more = "  a: all";
            let room = usize::from(area.width)
                .saturating_sub(label.chars().count() + more.chars().count());
            Line::from(vec![
                Span::styled(label, t.warn()),
                Span::raw(ellipsize(a, room)),
                Span::styled(more, t.dim()),
            ])
        }
        None => Line::from(Span::styled("advice: none", t.dim())),
    };
    let mut lines = vec![Line::from(l1), Line::from(l2), Line::from(l3), l4];
    if let Some(n) = &h.ns_note {
        let style = if n.differs { t.warn() } else { t.dim() };
        lines.push(Line::from(Span::styled(
            ellipsize(&n.text, usize::from(area.width)),
            style,
        )));
    }
    f.render_widget(Paragraph::new(lines), area);
}

/// How the NETNS column fits the terminal's width, when several
/// namespaces are seen: wide, narrow (in place of a column the detail
/// pane also shows), or left out.
#[derive(Clone, Copy, PartialEq, Eq)]
enum NsColumn {
    None,
    Narrow,
    Wide,
}

impl NsColumn {
    fn of(s: &Screen, width: u16) -> NsColumn {
        match width {
            _ if !s.several_namespaces() => NsColumn::None,
            96.. => NsColumn::Wide,
            76.. => NsColumn::Narrow,
            _ => NsColumn::None,
        }
    }

    fn width(self) -> usize {
        match self {
            NsColumn::None => 0,
            NsColumn::Narrow => 12,
            NsColumn::Wide => 16,
        }
    }
}

fn draw_tabs(f: &mut Frame, area: Rect, app: &App, t: &Theme) {
    let mut spans = Vec::new();
    for (i, v) in View::ALL.iter().enumerate() {
        let label = format!(" {} {} ", i + 1, v.title());
        if *v == app.view {
            spans.push(Span::styled(label, t.selected()));
        } else {
            spans.push(Span::raw(label));
        }
    }
    let (col, desc) = app.sort_of(app.view);
    spans.push(Span::styled(
        format!(
            "  sort {} {}",
            app.view.sort_columns()[col],
            if desc { "↓" } else { "↑" }
        ),
        t.dim(),
    ));
    match &app.editing {
        Some(text) => spans.push(Span::styled(format!("  filter: {text}▏"), t.warn())),
        None if !app.filter.is_empty() => {
            spans.push(Span::styled(format!("  filter: {}", app.filter), t.warn()))
        }
        None => {}
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn draw_footer(f: &mut Frame, area: Rect, app: &App, t: &Theme) {
    let text = format!(
        "q quit  ? help  / filter  s/S sort  p pause  +/- {:.2}s  Enter detail  e expand",
        app.interval.as_secs_f64()
    );
    f.render_widget(Paragraph::new(Span::styled(text, t.dim())), area);
}

const SPARK: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// A text sparkline of the last `width` values.
pub fn spark_text(values: &[u64], width: usize) -> String {
    let tail = &values[values.len().saturating_sub(width)..];
    let max = tail.iter().copied().max().unwrap_or(0);
    let mut s: String = std::iter::repeat_n(' ', width - tail.len()).collect();
    for &v in tail {
        if max == 0 || v == 0 {
            s.push(' ');
        } else {
            let i = ((v as f64 / max as f64) * 7.0).round() as usize;
            s.push(SPARK[i.min(7)]);
        }
    }
    s
}

fn empty(f: &mut Frame, area: Rect, text: &str, t: &Theme) {
    let block = Block::default().borders(Borders::TOP);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let y = inner.y + inner.height / 2;
    f.render_widget(
        Paragraph::new(Span::styled(text.to_string(), t.dim())).alignment(Alignment::Center),
        Rect::new(
            inner.x,
            y.min(inner.bottom().saturating_sub(1)),
            inner.width,
            1,
        ),
    );
}

fn table_state(app: &App) -> TableState {
    TableState::default().with_selected(Some(app.selected()))
}

fn draw_services(f: &mut Frame, area: Rect, app: &App, s: &Screen, t: &Theme) {
    let rows = app.services(s);
    if rows.is_empty() {
        let msg = if s.services.is_empty() {
            "no outbound connections yet"
        } else {
            "no service matches the filter"
        };
        return empty(f, area, msg, t);
    }
    let ns = NsColumn::of(s, area.width);
    let mut out = Vec::new();
    for r in &rows {
        let p50 = r.lifetime_p50_ms.map_or("-".to_string(), ms);
        let badge = if r.leaks_sockets {
            Cell::from(Span::styled("LEAK", t.alert()))
        } else if r.lacks_pooling {
            Cell::from(Span::styled("NO POOL", t.alert()))
        } else {
            Cell::from("")
        };
        let fail_style = if r.failures > 0 {
            t.warn()
        } else {
            Style::default()
        };
        let mut cells = vec![Cell::from(r.name.clone())];
        match ns {
            NsColumn::None => cells.push(Cell::from(r.kind.clone())),
            NsColumn::Narrow => cells.push(Cell::from(short_ns(&r.netns_name, ns.width()))),
            NsColumn::Wide => {
                cells.push(Cell::from(r.kind.clone()));
                cells.push(Cell::from(short_ns(&r.netns_name, ns.width())));
            }
        }
        cells.extend([
            Cell::from(rate(r.new_per_s)),
            Cell::from(spark_text(&r.spark, 10)),
            Cell::from(r.time_wait.to_string()),
            Cell::from(p50),
            Cell::from(Span::styled(r.failures.to_string(), fail_style)),
            badge,
        ]);
        out.push(Row::new(cells));
        if app.expanded.contains(&r.name) {
            for p in &r.processes {
                let mut cells = vec![Cell::from(format!("  └ {} {}", p.pid, p.comm))];
                cells.extend(std::iter::repeat_n(
                    Cell::from(""),
                    1 + usize::from(ns == NsColumn::Wide),
                ));
                cells.extend([
                    Cell::from(rate(p.new_per_s)),
                    Cell::from(""),
                    Cell::from(p.time_wait.to_string()),
                ]);
                out.push(Row::new(cells).style(t.dim()));
            }
        }
    }
    let mut titles = vec!["SERVICE"];
    let mut widths = vec![Constraint::Min(14)];
    if ns != NsColumn::Narrow {
        titles.push("KIND");
        widths.push(Constraint::Length(9));
    }
    if ns != NsColumn::None {
        titles.push("NETNS");
        widths.push(Constraint::Length(ns.width() as u16));
    }
    titles.extend(["NEW/S", "LAST 10s", "TW", "P50", "FAIL", ""]);
    widths.extend([
        Constraint::Length(7),
        Constraint::Length(10),
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Length(5),
        Constraint::Length(7),
    ]);
    let header = Row::new(titles).style(t.title());
    let table = Table::new(out, widths)
        .header(header)
        .block(Block::default().borders(Borders::TOP))
        .row_highlight_style(t.selected());
    // Selection counts services; expanded process rows shift it.
    let mut state = table_state(app);
    let shift: usize = rows
        .iter()
        .take(app.selected())
        .filter(|r| app.expanded.contains(&r.name))
        .map(|r| r.processes.len())
        .sum();
    state.select(Some(app.selected() + shift));
    f.render_stateful_widget(table, area, &mut state);
}

fn gauge_text(share: f64, width: usize) -> String {
    let filled = ((share.clamp(0.0, 1.0)) * width as f64).round() as usize;
    format!(
        "{}{} {:>3.0}%",
        "█".repeat(filled),
        "░".repeat(width - filled),
        share * 100.0
    )
}

fn draw_destinations(f: &mut Frame, area: Rect, app: &App, s: &Screen, t: &Theme) {
    let rows = app.destinations(s);
    if rows.is_empty() {
        return empty(f, area, "no destinations yet", t);
    }
    // Narrow: the NETNS column takes the place of TW (HELD counts it, the
    // detail pane shows it).
    let ns = NsColumn::of(s, area.width);
    let out: Vec<Row> = rows
        .iter()
        .map(|r| {
            let p = r.pressure;
            let style = if p >= PRESSURE_ALERT {
                t.alert()
            } else if p >= PRESSURE_WARN {
                t.warn()
            } else {
                Style::default()
            };
            // An unknown budget (a namespace not read) is not 0 ports.
            let (gauge, held) = if r.budget > 0 {
                (gauge_text(p, 8), format!("{}/{}", r.held, r.budget))
            } else {
                ("?".to_string(), format!("{}/?", r.held))
            };
            let mut cells = vec![Cell::from(r.addr.clone())];
            if ns != NsColumn::None {
                cells.push(Cell::from(short_ns(&r.netns_name, ns.width())));
            }
            cells.extend([
                Cell::from(Span::styled(gauge, style)),
                Cell::from(held),
                Cell::from(rate(r.new_per_s)),
            ]);
            if ns != NsColumn::Narrow {
                cells.push(Cell::from(r.time_wait.to_string()));
            }
            cells.extend([
                Cell::from(r.failures.to_string()),
                Cell::from(r.top_talker.clone()),
            ]);
            Row::new(cells)
        })
        .collect();
    let mut titles = vec!["DESTINATION"];
    let mut widths = vec![Constraint::Min(16)];
    if ns != NsColumn::None {
        titles.push("NETNS");
        widths.push(Constraint::Length(ns.width() as u16));
    }
    titles.extend(["PRESSURE", "HELD", "NEW/S"]);
    widths.extend([
        Constraint::Length(13),
        Constraint::Length(11),
        Constraint::Length(7),
    ]);
    if ns != NsColumn::Narrow {
        titles.push("TW");
        widths.push(Constraint::Length(6));
    }
    titles.extend(["FAIL", "TOP TALKER"]);
    widths.extend([Constraint::Length(5), Constraint::Min(10)]);
    let header = Row::new(titles).style(t.title());
    let table = Table::new(out, widths)
        .header(header)
        .block(Block::default().borders(Borders::TOP))
        .row_highlight_style(t.selected());
    f.render_stateful_widget(table, area, &mut table_state(app));
}

fn draw_failures(f: &mut Frame, area: Rect, app: &App, s: &Screen, t: &Theme) {
    let rows = app.failures(s);
    if rows.is_empty() {
        return empty(f, area, "no connect failures", t);
    }
    let out: Vec<Row> = rows
        .iter()
        .map(|r| {
            let style = if r.errno == "EADDRNOTAVAIL" {
                t.alert()
            } else {
                Style::default()
            };
            Row::new(vec![
                Cell::from(Span::styled(r.errno.clone(), style)),
                Cell::from(r.cause.clone()),
                Cell::from(r.service.clone()),
                Cell::from(r.dest.clone()),
                Cell::from(r.count.to_string()),
                Cell::from(r.last_seen.clone()),
            ])
        })
        .collect();
    let header =
        Row::new(["ERRNO", "CAUSE", "SERVICE", "DESTINATION", "COUNT", "LAST"]).style(t.title());
    let table = Table::new(
        out,
        [
            // Fits 80 columns: "EADDRNOTAVAIL", "address_unavailable",
            // "[2001:db8::1]:443" whole.
            Constraint::Length(13),
            Constraint::Length(19),
            Constraint::Min(10),
            Constraint::Min(17),
            Constraint::Length(5),
            Constraint::Length(8),
        ],
    )
    .header(header)
    .block(Block::default().borders(Borders::TOP))
    .row_highlight_style(t.selected());
    f.render_stateful_widget(table, area, &mut table_state(app));
}

fn draw_detail(f: &mut Frame, area: Rect, d: &Detail, t: &Theme) {
    f.render_widget(Clear, area);
    let block = Block::default()
        .borders(Borders::ALL)
        .title(Span::styled(format!(" {} ", d.title), t.title()))
        .title_bottom(Span::styled(" Esc back ", t.dim()));
    let inner = block.inner(area);
    f.render_widget(block, area);
    // The verdict's evidence is a few sentences: give it the lines it
    // needs wrapped at this width (leaving the charts 3 lines at least).
    let verdict_h = match &d.verdict {
        Some(v) => {
            let w = usize::from(inner.width).max(8);
            let need = [&v.headline, &v.evidence, &format!("fix: {}", v.fix)]
                .into_iter()
                .chain(&v.call_sites)
                .map(|s| textwrap::wrap(s, w).len())
                .sum::<usize>()
                + usize::from(!v.call_sites.is_empty());
            (need as u16).min(inner.height.saturating_sub(3))
        }
        None => 1,
    };
    let ns_h = d.netns.as_ref().map_or(0, |n| {
        textwrap::wrap(n, usize::from(inner.width).max(8)).len() as u16
    });
    let [ns_area, top, verdict] = Layout::vertical([
        Constraint::Length(ns_h),
        Constraint::Min(3),
        Constraint::Length(verdict_h),
    ])
    .areas(inner);
    if let Some(n) = &d.netns {
        let style = if n.contains("differs from host") || n.contains("not read") {
            t.warn()
        } else {
            Style::default()
        };
        f.render_widget(
            Paragraph::new(Span::styled(n.clone(), style)).wrap(Wrap { trim: true }),
            ns_area,
        );
    }
    let [peers, charts] =
        Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(top);

    let mut lines = Vec::new();
    if let Some(id) = &d.identity {
        lines.push(Line::from(Span::styled(id.clone(), t.dim())));
    }
    lines.push(Line::from(Span::styled(d.peers_label.clone(), t.title())));
    for (peer, new, tw) in &d.peers {
        lines.push(Line::from(format!(
            "{peer:<22} {:>6}/s TW {tw}",
            rate(*new)
        )));
    }
    for fact in &d.facts {
        lines.push(Line::from(Span::styled(fact.clone(), t.warn())));
    }
    f.render_widget(Paragraph::new(lines), peers);

    let [rate_area, hist_area] =
        Layout::vertical([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(charts);
    let spark = Sparkline::default()
        .block(Block::default().title(Span::styled("new/s, last 60 s", t.dim())))
        .data(d.rate_60s.iter().copied())
        .style(t.warn());
    f.render_widget(spark, rate_area);
    let bars: Vec<Bar> = d
        .lifetime_hist
        .iter()
        .map(|(label, v)| Bar::default().label(Line::from(label.clone())).value(*v))
        .collect();
    let chart = BarChart::default()
        .block(Block::default().title(Span::styled("lifetime", t.dim())))
        .data(BarGroup::default().bars(&bars))
        .bar_width(6)
        .bar_gap(1);
    f.render_widget(chart, hist_area);

    let text = match &d.verdict {
        Some(v) => {
            let mut l = vec![
                Line::from(Span::styled(v.headline.clone(), t.alert())),
                Line::from(v.evidence.clone()),
                Line::from(vec![
                    Span::styled("fix: ", t.warn()),
                    Span::raw(v.fix.clone()),
                ]),
            ];
            if !v.call_sites.is_empty() {
                l.push(Line::from(Span::styled(
                    "call sites (sampled connect() stacks, innermost first):",
                    t.title(),
                )));
                l.extend(v.call_sites.iter().map(|c| Line::from(c.clone())));
            }
            l
        }
        None => vec![Line::from(Span::styled(
            "no verdict: looks pooled or quiet",
            t.dim(),
        ))],
    };
    f.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), verdict);
}

/// `text` cut to `room` characters, ending in "…" when it was cut.
fn ellipsize(text: &str, room: usize) -> String {
    if text.chars().count() <= room {
        return text.to_string();
    }
    let mut s: String = text.chars().take(room.saturating_sub(1)).collect();
    s.push('…');
    s
}

/// The pane's inner area on a terminal of `area`: the body, less borders.
fn advice_inner(area: Rect, s: &Screen) -> Rect {
    let [_, _, body, _] = areas(area, s);
    Block::default().borders(Borders::ALL).inner(body)
}

/// How many positions the advice pane scrolls through on a terminal of
/// `area` (the keys' row count while it is open).
pub fn advice_positions(s: &Screen, area: Rect) -> usize {
    let inner = advice_inner(area, s);
    super::advice::max_top(
        &s.advice,
        usize::from(inner.width),
        usize::from(inner.height),
    ) + 1
}

/// The advice pane over the body: every item wrapped in full, scrolled by
/// whole items (`App::advice_top`), saying when more are below.
fn draw_advice(f: &mut Frame, area: Rect, app: &App, s: &Screen, t: &Theme) {
    f.render_widget(Clear, area);
    let n = s.advice.len();
    let block = Block::default()
        .borders(Borders::ALL)
        .title(Span::styled(format!(" advice ({n}) "), t.title()));
    let inner = block.inner(area);
    let top = app.advice_top.min(super::advice::max_top(
        &s.advice,
        usize::from(inner.width),
        usize::from(inner.height),
    ));
    let (lines, more) = super::advice::visible(
        &s.advice,
        top,
        usize::from(inner.width),
        usize::from(inner.height),
    );
    let hint = match (top > 0, more) {
        (_, true) => format!(" {}/{n} · more below ↓ · a/Esc close ", top + 1),
        (true, false) => format!(" {}/{n} · ↑ for earlier · a/Esc close ", top + 1),
        (false, false) => " a/Esc close ".to_string(),
    };
    f.render_widget(block.title_bottom(Span::styled(hint, t.dim())), area);
    if n == 0 {
        f.render_widget(
            Paragraph::new(Span::styled("no advice: nothing to tune now", t.dim())),
            inner,
        );
        return;
    }
    let mut prev = usize::MAX;
    let text: Vec<Line> = lines
        .into_iter()
        .map(|(i, l)| {
            let first = i != prev && !l.is_empty();
            if first {
                prev = i;
            }
            match l.split_once(": ").filter(|_| first) {
                Some((level, rest)) => {
                    let style = match level {
                        "warning" => t.alert(),
                        "suggestion" => t.warn(),
                        _ => t.dim(),
                    };
                    Line::from(vec![
                        Span::styled(format!("{level}:"), style),
                        Span::raw(format!(" {rest}")),
                    ])
                }
                None => Line::from(l),
            }
        })
        .collect();
    f.render_widget(Paragraph::new(text), inner);
}

pub const HELP: &[(&str, &str)] = &[
    ("q, Ctrl-C", "quit"),
    ("?", "this help"),
    ("a", "advice: every item in full (↑ ↓ scroll, a/Esc close)"),
    (
        "Tab, 1 2 3",
        "switch view: services, destinations, failures",
    ),
    ("↑ ↓ j k", "select a row"),
    ("Enter", "details of the selected row"),
    ("e", "expand a service into its processes"),
    ("/", "filter (name, kind, address, port, netns)"),
    ("s / S", "next sort column / reverse order"),
    ("p", "pause the display (tracing continues)"),
    ("+ / -", "slower / faster refresh"),
    ("Esc", "back: close details, clear filter"),
    ("space n E", "replay: pause, step 1 s, jump to end"),
    ("> <", "replay: faster, slower"),
];

fn draw_help(f: &mut Frame, area: Rect, t: &Theme) {
    let w = 60.min(area.width);
    let h = (HELP.len() as u16 + 4).min(area.height);
    let r = Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    );
    f.render_widget(Clear, r);
    let lines: Vec<Line> = HELP
        .iter()
        .map(|(k, v)| {
            Line::from(vec![
                Span::styled(format!("{k:<13}"), t.title()),
                Span::raw(v.to_string()),
            ])
        })
        .collect();
    f.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" keys ")
                .title_bottom(" any key closes "),
        ),
        r,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparkline_text_scales_to_the_maximum() {
        assert_eq!(spark_text(&[0, 1, 2, 4], 4), " ▃▅█");
        assert_eq!(spark_text(&[5], 3), "  █");
        assert_eq!(spark_text(&[], 2), "  ");
    }

    #[test]
    fn gauge_shows_share() {
        assert_eq!(gauge_text(0.5, 4), "██░░  50%");
        assert_eq!(gauge_text(1.5, 2), "██ 150%");
    }
}
