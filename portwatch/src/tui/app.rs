//! TUI state and key handling, without a terminal: every key is a state
//! transition that tests can drive directly.

use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::view::{DestRow, FailureRow, Screen, ServiceRow};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    Services,
    Destinations,
    Failures,
}

impl View {
    pub const ALL: [View; 3] = [View::Services, View::Destinations, View::Failures];

    pub fn title(self) -> &'static str {
        match self {
            View::Services => "Services",
            View::Destinations => "Destinations",
            View::Failures => "Failures",
        }
    }

    fn index(self) -> usize {
        View::ALL.iter().position(|v| *v == self).unwrap_or(0)
    }

    /// Sortable columns of this view, the default first.
    pub fn sort_columns(self) -> &'static [&'static str] {
        match self {
            View::Services => &["new/s", "TIME_WAIT", "p50", "fail", "name"],
            View::Destinations => &["pressure", "new/s", "TIME_WAIT", "fail", "addr"],
            View::Failures => &["count", "errno", "service", "dest"],
        }
    }
}

/// What a key did, for the main loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    None,
    Redraw,
    Quit,
    /// The refresh interval changed.
    Interval,
}

pub const MIN_INTERVAL: Duration = Duration::from_millis(250);
pub const MAX_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, PartialEq)]
pub struct App {
    pub view: View,
    /// Selected row per view.
    pub selected: [usize; 3],
    /// Sort column index per view and descending flag.
    pub sort: [(usize, bool); 3],
    /// Applied filter (substring over name, address, port).
    pub filter: String,
    /// Filter being typed, while `/` is active.
    pub editing: Option<String>,
    pub paused: bool,
    pub help: bool,
    /// Detail pane open for the selected row.
    pub detail: bool,
    /// Services whose processes are shown.
    pub expanded: Vec<String>,
    pub interval: Duration,
    pub no_color: bool,
    /// The advice pane (`a`) is open, showing items from `advice_top` on.
    pub advice: bool,
    pub advice_top: usize,
}

impl App {
    pub fn new(view: View, interval: Duration, filter: String, no_color: bool) -> App {
        App {
            view,
            selected: [0; 3],
            sort: [(0, true), (0, true), (0, true)],
            filter,
            editing: None,
            paused: false,
            help: false,
            detail: false,
            expanded: Vec::new(),
            interval: interval.clamp(MIN_INTERVAL, MAX_INTERVAL),
            no_color,
            advice: false,
            advice_top: 0,
        }
    }

    pub fn selected(&self) -> usize {
        self.selected[self.view.index()]
    }

    fn set_selected(&mut self, i: usize) {
        self.selected[self.view.index()] = i;
    }

    pub fn sort_of(&self, view: View) -> (usize, bool) {
        self.sort[view.index()]
    }

    /// Handles one key given how many rows the current view shows.
    pub fn on_key(&mut self, key: KeyEvent, rows: usize) -> Action {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && matches!(key.code, KeyCode::Char('c')) {
            return Action::Quit;
        }
        if let Some(text) = self.editing.as_mut() {
            match key.code {
                KeyCode::Enter => {
                    self.filter = self.editing.take().unwrap_or_default();
                    self.selected = [0; 3];
                }
                KeyCode::Esc => self.editing = None,
                KeyCode::Backspace => {
                    text.pop();
                }
                KeyCode::Char(c) if !ctrl => text.push(c),
                _ => return Action::None,
            }
            return Action::Redraw;
        }
        if self.advice {
            return self.on_advice_key(key.code, rows);
        }
        if self.help {
            // Any key closes help; q still quits.
            self.help = false;
            return if key.code == KeyCode::Char('q') {
                Action::Quit
            } else {
                Action::Redraw
            };
        }
        match key.code {
            KeyCode::Char('q') => return Action::Quit,
            KeyCode::Char('?') | KeyCode::F(1) => self.help = true,
            KeyCode::Char('a') => {
                self.advice = true;
                self.advice_top = 0;
            }
            KeyCode::Char('/') => self.editing = Some(self.filter.clone()),
            KeyCode::Esc => {
                if self.detail {
                    self.detail = false;
                } else if !self.filter.is_empty() {
                    self.filter.clear();
                }
            }
            KeyCode::Tab => self.switch((self.view.index() + 1) % View::ALL.len()),
            KeyCode::BackTab => {
                self.switch((self.view.index() + View::ALL.len() - 1) % View::ALL.len())
            }
            KeyCode::Char(c @ '1'..='3') => self.switch(c as usize - '1' as usize),
            KeyCode::Char('s') => {
                let n = self.view.sort_columns().len();
                let s = &mut self.sort[self.view.index()];
                s.0 = (s.0 + 1) % n;
            }
            KeyCode::Char('S') => {
                let s = &mut self.sort[self.view.index()];
                s.1 = !s.1;
            }
            KeyCode::Char('p') | KeyCode::Char(' ') => self.paused = !self.paused,
            KeyCode::Char('+') | KeyCode::Char('=') => {
                self.interval = (self.interval * 2).min(MAX_INTERVAL);
                return Action::Interval;
            }
            KeyCode::Char('-') => {
                self.interval = (self.interval / 2).max(MIN_INTERVAL);
                return Action::Interval;
            }
            KeyCode::Down | KeyCode::Char('j') => {
                if rows > 0 {
                    self.set_selected((self.selected() + 1).min(rows - 1));
                }
            }
            KeyCode::Up | KeyCode::Char('k') => {
                self.set_selected(self.selected().saturating_sub(1))
            }
            KeyCode::PageDown => {
                if rows > 0 {
                    self.set_selected((self.selected() + 10).min(rows - 1));
                }
            }
            KeyCode::PageUp => self.set_selected(self.selected().saturating_sub(10)),
            KeyCode::Home | KeyCode::Char('g') => self.set_selected(0),
            KeyCode::End | KeyCode::Char('G') => self.set_selected(rows.saturating_sub(1)),
            KeyCode::Enter => self.detail = rows > 0,
            _ => return Action::None,
        }
        Action::Redraw
    }

    /// Keys while the advice pane is open: it scrolls by whole items.
    fn on_advice_key(&mut self, code: KeyCode, items: usize) -> Action {
        let last = items.saturating_sub(1);
        match code {
            KeyCode::Char('q') => return Action::Quit,
            KeyCode::Char('a') | KeyCode::Esc => self.advice = false,
            KeyCode::Down | KeyCode::Char('j') | KeyCode::PageDown => {
                self.advice_top = (self.advice_top + 1).min(last)
            }
            KeyCode::Up | KeyCode::Char('k') | KeyCode::PageUp => {
                self.advice_top = self.advice_top.saturating_sub(1)
            }
            KeyCode::Home | KeyCode::Char('g') => self.advice_top = 0,
            KeyCode::End | KeyCode::Char('G') => self.advice_top = last,
            _ => return Action::None,
        }
        Action::Redraw
    }

    fn switch(&mut self, idx: usize) {
        self.view = View::ALL[idx];
        self.detail = false;
    }

    /// Toggles the process list of a service (the `e` key in the loop,
    /// which knows the selected service's name).
    pub fn toggle_expand(&mut self, name: &str) {
        if let Some(i) = self.expanded.iter().position(|n| n == name) {
            self.expanded.remove(i);
        } else {
            self.expanded.push(name.to_string());
        }
    }

    fn matches(&self, fields: &[&str]) -> bool {
        let f = self.filter.to_lowercase();
        f.is_empty() || fields.iter().any(|s| s.to_lowercase().contains(&f))
    }

    /// Services after filter and sort, as the table shows them.
    pub fn services<'a>(&self, s: &'a Screen) -> Vec<&'a ServiceRow> {
        let mut rows: Vec<&ServiceRow> = s
            .services
            .iter()
            .filter(|r| {
                let pids: Vec<String> = r.processes.iter().map(|p| p.pid.to_string()).collect();
                let mut fields = vec![r.name.as_str(), r.kind.as_str(), r.netns_name.as_str()];
                fields.extend(pids.iter().map(String::as_str));
                fields.extend(r.processes.iter().map(|p| p.comm.as_str()));
                self.matches(&fields)
            })
            .collect();
        let (col, desc) = self.sort_of(View::Services);
        rows.sort_by(|a, b| {
            let o = match col {
                0 => a.new_per_s.total_cmp(&b.new_per_s),
                1 => a.time_wait.cmp(&b.time_wait),
                2 => a
                    .lifetime_p50_ms
                    .unwrap_or(f64::MAX)
                    .total_cmp(&b.lifetime_p50_ms.unwrap_or(f64::MAX)),
                3 => a.failures.cmp(&b.failures),
                _ => b.name.cmp(&a.name),
            };
            let o = if desc { o.reverse() } else { o };
            o.then_with(|| a.name.cmp(&b.name))
        });
        rows
    }

    pub fn destinations<'a>(&self, s: &'a Screen) -> Vec<&'a DestRow> {
        let mut rows: Vec<&DestRow> = s
            .destinations
            .iter()
            .filter(|r| self.matches(&[&r.addr, &r.top_talker, &r.netns_name]))
            .collect();
        let (col, desc) = self.sort_of(View::Destinations);
        rows.sort_by(|a, b| {
            let o = match col {
                0 => a.pressure.total_cmp(&b.pressure),
                1 => a.new_per_s.total_cmp(&b.new_per_s),
                2 => a.time_wait.cmp(&b.time_wait),
                3 => a.failures.cmp(&b.failures),
                _ => b.addr.cmp(&a.addr),
            };
            let o = if desc { o.reverse() } else { o };
            // Pinned rows (near exhaustion, or EADDRNOTAVAIL just now) stay
            // on top whatever the sort.
            b.pinned
                .cmp(&a.pinned)
                .then(o)
                .then_with(|| a.addr.cmp(&b.addr))
                .then_with(|| a.key.cmp(&b.key))
        });
        rows
    }

    pub fn failures<'a>(&self, s: &'a Screen) -> Vec<&'a FailureRow> {
        let mut rows: Vec<&FailureRow> = s
            .failures
            .iter()
            .filter(|r| self.matches(&[&r.errno, &r.service, &r.dest]))
            .collect();
        let (col, desc) = self.sort_of(View::Failures);
        rows.sort_by(|a, b| {
            // EADDRNOTAVAIL first whatever the column: it is why we are here.
            let eaddr = |r: &FailureRow| r.errno == "EADDRNOTAVAIL";
            let o = match col {
                0 => a.count.cmp(&b.count),
                1 => b.errno.cmp(&a.errno),
                2 => b.service.cmp(&a.service),
                _ => b.dest.cmp(&a.dest),
            };
            let o = if desc { o.reverse() } else { o };
            eaddr(b).cmp(&eaddr(a)).then(o)
        });
        rows
    }

    /// Rows in the current view (after the filter).
    /// Rows the keys move through (for the advice pane, see
    /// [`super::draw::advice_positions`], which needs the terminal's size).
    pub fn row_count(&self, s: &Screen) -> usize {
        match self.view {
            View::Services => self.services(s).len(),
            View::Destinations => self.destinations(s).len(),
            View::Failures => self.failures(s).len(),
        }
    }

    /// Keeps the selection inside the table after the data changed.
    pub fn clamp_selection(&mut self, s: &Screen) {
        let n = self.row_count(s);
        if self.selected() >= n {
            self.set_selected(n.saturating_sub(1));
        }
        if n == 0 {
            self.detail = false;
        }
    }

    /// Name (service) or key (destination: namespace, local address and
    /// address) of the selected row.
    pub fn selected_key(&self, s: &Screen) -> Option<String> {
        let i = self.selected();
        match self.view {
            View::Services => self.services(s).get(i).map(|r| r.name.clone()),
            View::Destinations => self.destinations(s).get(i).map(|r| r.key.clone()),
            View::Failures => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossterm::event::KeyEventKind;

    fn key(c: KeyCode) -> KeyEvent {
        KeyEvent {
            code: c,
            modifiers: KeyModifiers::NONE,
            kind: KeyEventKind::Press,
            state: crossterm::event::KeyEventState::NONE,
        }
    }

    fn app() -> App {
        App::new(View::Services, Duration::from_secs(1), String::new(), false)
    }

    fn screen() -> Screen {
        let svc = |name: &str, new: f64, tw: u64| ServiceRow {
            name: name.into(),
            kind: "process".into(),
            new_per_s: new,
            time_wait: tw,
            ..ServiceRow::default()
        };
        Screen {
            services: vec![svc("a", 1.0, 30), svc("b", 50.0, 10), svc("c", 5.0, 20)],
            ..Screen::default()
        }
    }

    #[test]
    fn q_and_ctrl_c_quit() {
        assert_eq!(app().on_key(key(KeyCode::Char('q')), 0), Action::Quit);
        let mut k = key(KeyCode::Char('c'));
        k.modifiers = KeyModifiers::CONTROL;
        assert_eq!(app().on_key(k, 0), Action::Quit);
    }

    #[test]
    fn tab_and_numbers_switch_views_and_close_detail() {
        let mut a = app();
        a.detail = true;
        a.on_key(key(KeyCode::Tab), 3);
        assert_eq!(a.view, View::Destinations);
        assert!(!a.detail);
        a.on_key(key(KeyCode::Char('3')), 3);
        assert_eq!(a.view, View::Failures);
        a.on_key(key(KeyCode::Tab), 3);
        assert_eq!(a.view, View::Services);
        a.on_key(key(KeyCode::BackTab), 3);
        assert_eq!(a.view, View::Failures);
    }

    #[test]
    fn filter_is_typed_applied_and_cancelled() {
        let mut a = app();
        a.on_key(key(KeyCode::Char('/')), 3);
        for c in "bx".chars() {
            a.on_key(key(KeyCode::Char(c)), 3);
        }
        a.on_key(key(KeyCode::Backspace), 3);
        assert_eq!(a.filter, "", "not applied while typing");
        // 'q' while typing is text, not quit
        assert_eq!(a.on_key(key(KeyCode::Enter), 3), Action::Redraw);
        assert_eq!(a.filter, "b");
        assert_eq!(a.services(&screen()).len(), 1);
        a.on_key(key(KeyCode::Char('/')), 3);
        assert_eq!(a.on_key(key(KeyCode::Char('q')), 3), Action::Redraw);
        a.on_key(key(KeyCode::Esc), 3);
        assert_eq!(a.filter, "b", "Esc cancels the edit only");
        a.on_key(key(KeyCode::Esc), 3);
        assert_eq!(a.filter, "", "Esc again clears the filter");
    }

    #[test]
    fn sort_cycles_columns_and_order() {
        let mut a = app();
        let names = |a: &App| -> Vec<String> {
            a.services(&screen())
                .iter()
                .map(|r| r.name.clone())
                .collect()
        };
        assert_eq!(names(&a), ["b", "c", "a"], "default: new/s descending");
        a.on_key(key(KeyCode::Char('s')), 3);
        assert_eq!(names(&a), ["a", "c", "b"], "TIME_WAIT descending");
        a.on_key(key(KeyCode::Char('S')), 3);
        assert_eq!(names(&a), ["b", "c", "a"], "TIME_WAIT ascending");
    }

    #[test]
    fn selection_moves_within_rows_and_enter_opens_detail() {
        let mut a = app();
        a.on_key(key(KeyCode::Down), 3);
        a.on_key(key(KeyCode::Down), 3);
        a.on_key(key(KeyCode::Down), 3);
        assert_eq!(a.selected(), 2);
        a.on_key(key(KeyCode::Up), 3);
        assert_eq!(a.selected(), 1);
        assert_eq!(a.selected_key(&screen()), Some("c".into()));
        a.on_key(key(KeyCode::Enter), 3);
        assert!(a.detail);
        a.on_key(key(KeyCode::Esc), 3);
        assert!(!a.detail);
        a.on_key(key(KeyCode::Enter), 0);
        assert!(!a.detail, "nothing to open on an empty table");
    }

    #[test]
    fn pause_help_and_interval() {
        let mut a = app();
        a.on_key(key(KeyCode::Char('p')), 0);
        assert!(a.paused);
        a.on_key(key(KeyCode::Char('?')), 0);
        assert!(a.help);
        assert_eq!(a.on_key(key(KeyCode::Char('x')), 0), Action::Redraw);
        assert!(!a.help, "any key closes help");
        assert_eq!(a.on_key(key(KeyCode::Char('+')), 0), Action::Interval);
        assert_eq!(a.interval, Duration::from_secs(2));
        for _ in 0..10 {
            a.on_key(key(KeyCode::Char('-')), 0);
        }
        assert_eq!(a.interval, MIN_INTERVAL);
    }

    #[test]
    fn eaddrnotavail_failures_sort_first() {
        let f = |errno: &str, count| FailureRow {
            errno: errno.into(),
            count,
            ..FailureRow::default()
        };
        let s = Screen {
            failures: vec![f("ECONNREFUSED", 100), f("EADDRNOTAVAIL", 3)],
            ..Screen::default()
        };
        let a = App::new(View::Failures, Duration::from_secs(1), String::new(), false);
        let rows = a.failures(&s);
        assert_eq!(rows[0].errno, "EADDRNOTAVAIL");
    }
}
