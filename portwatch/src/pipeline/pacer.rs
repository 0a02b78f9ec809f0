//! The pacer: a trace file as a [`Source`] that releases its inputs as
//! trace time reaches them (`replay`).
//!
//! [`ReplayFeed`] releases the trace's inputs paced by their timestamps:
//! trace time runs at `speed` × wall time from an anchor, and is moved by
//! keys (pause, step, jump to the end). The model is computed at the trace
//! time reached, never at the wall clock, so what is shown is what `top`
//! showed at that moment of the recording. Wall time is tokio's clock, so
//! tests drive the feed with paused time instead of sleeping.

use std::time::Duration;

use crossterm::event::KeyCode;
use tokio::time::Instant;

use super::{Closing, FeedState, Source};
use crate::clock::NS_PER_S;
use crate::engine::Engine;
use crate::input::Input;
use crate::tracefile::{ReadError, Reader};
/// Inputs handed over per call: at `--speed 0` or when jumping to the end,
/// the TUI loop still gets to keys and redraws between batches.
const BATCH: usize = 4096;
/// `>` and `<` stay within these speeds.
const MAX_SPEED: f64 = 1024.0;
const MIN_SPEED: f64 = 1.0 / 64.0;
/// Longest single wait: a wait is re-computed after it anyway.
const MAX_WAIT: Duration = Duration::from_secs(3600);

/// First and last timestamp of a trace (CLOCK_MONOTONIC ns).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub start_ns: u64,
    pub end_ns: u64,
}

/// A trace being replayed: the inputs of `src`, released as trace time
/// reaches them.
pub struct ReplayFeed<I, E> {
    src: I,
    /// Read ahead: the next input, to know when it is due.
    pending: Option<Input>,
    /// `src` has nothing more (its end, or an error).
    drained: bool,
    error: Option<E>,
    span: Span,
    /// Latest timestamp released.
    released_ns: u64,
    released: u64,
    /// Trace time `anchor_ns` was reached at wall time `anchor_at`; while
    /// playing, trace time runs at `speed` × wall time from there, else it
    /// stays at `anchor_ns`.
    anchor_ns: u64,
    anchor_at: Instant,
    /// 0: as fast as possible.
    speed: f64,
    paused: bool,
    /// Stepping (paused) to this trace time.
    step_to: Option<u64>,
    /// Jumping to the end (as fast as possible).
    to_end: bool,
    ended: bool,
}

impl<I, E> ReplayFeed<I, E>
where
    I: Iterator<Item = Result<Input, E>>,
{
    /// Starts at `span.start_ns`, playing at `speed` (0: as fast as
    /// possible). Must be called inside a tokio runtime.
    pub fn new(src: I, span: Span, speed: f64) -> Self {
        ReplayFeed {
            src,
            pending: None,
            drained: false,
            error: None,
            span,
            released_ns: span.start_ns,
            released: 0,
            anchor_ns: span.start_ns,
            anchor_at: Instant::now(),
            speed: if speed.is_finite() {
                speed.max(0.0)
            } else {
                0.0
            },
            paused: false,
            step_to: None,
            to_end: false,
            ended: false,
        }
    }

    /// The source, e.g. to read a [`Reader`]'s warnings afterwards.
    pub fn source(&self) -> &I {
        &self.src
    }

    /// The error reading stopped at, if any.
    pub fn error(&self) -> Option<&E> {
        self.error.as_ref()
    }

    /// Inputs released so far.
    pub fn released(&self) -> u64 {
        self.released
    }

    pub fn paused(&self) -> bool {
        self.paused
    }

    pub fn speed(&self) -> f64 {
        self.speed
    }

    pub fn ended(&self) -> bool {
        self.ended
    }

    fn playing(&self) -> bool {
        !self.paused && !self.ended && !self.to_end && self.step_to.is_none() && self.speed > 0.0
    }

    fn fill(&mut self) {
        if self.pending.is_some() || self.drained {
            return;
        }
        match self.src.next() {
            Some(Ok(i)) => self.pending = Some(i),
            Some(Err(e)) => {
                self.error = Some(e);
                self.drained = true;
            }
            None => self.drained = true,
        }
    }

    /// Inputs without a timestamp (a cgroup path) are context for those
    /// that follow: due at once.
    fn due_ns(i: &Input) -> u64 {
        i.ts_ns().unwrap_or(0)
    }

    /// Trace time reached at wall time `now`. While playing it never runs
    /// past an input not released yet, so the model is never computed
    /// at a time whose inputs it lacks.
    pub fn position(&self, now: Instant) -> u64 {
        if !self.playing() {
            return self.anchor_ns;
        }
        let run_ns = now.saturating_duration_since(self.anchor_at).as_secs_f64() * self.speed * 1e9;
        // `as` saturates: a huge product stays u64::MAX.
        let clock = self.anchor_ns.saturating_add(run_ns as u64);
        let cap = self
            .pending
            .as_ref()
            .map_or(self.span.end_ns, Self::due_ns)
            .min(self.span.end_ns);
        clock.min(cap).max(self.anchor_ns)
    }

    fn reanchor(&mut self, now: Instant) {
        self.anchor_ns = self.position(now);
        self.anchor_at = now;
    }

    /// Wall time at which trace time reaches `ns` at the current speed.
    fn instant_of(&self, ns: u64) -> Instant {
        let wait_s = ns.saturating_sub(self.anchor_ns) as f64 / 1e9 / self.speed;
        let wait = Duration::try_from_secs_f64(wait_s).unwrap_or(MAX_WAIT);
        self.anchor_at + wait.min(MAX_WAIT)
    }

    /// Releases up to [`BATCH`] inputs due at or before `limit_ns`.
    fn release(&mut self, limit_ns: u64, out: &mut Vec<Input>) -> usize {
        let mut n = 0;
        while n < BATCH {
            self.fill();
            match &self.pending {
                Some(i) if Self::due_ns(i) <= limit_ns => {}
                _ => break,
            }
            let Some(i) = self.pending.take() else { break };
            if let Some(ts) = i.ts_ns() {
                self.released_ns = self.released_ns.max(ts);
            }
            out.push(i);
            n += 1;
        }
        self.released += n as u64;
        n
    }

    /// Appends the next inputs that are due, waiting (tokio time) until
    /// some are. `Ended` once the source is drained.
    pub async fn next_batch(&mut self, out: &mut Vec<Input>) -> FeedState {
        loop {
            self.fill();
            let Some(due) = self.pending.as_ref().map(Self::due_ns) else {
                if !self.ended {
                    self.ended = true;
                    self.step_to = None;
                    self.to_end = false;
                    self.anchor_ns = self.anchor_ns.max(self.released_ns);
                    self.anchor_at = Instant::now();
                }
                return FeedState::Ended;
            };
            if self.to_end || (self.speed == 0.0 && !self.paused && self.step_to.is_none()) {
                self.release(u64::MAX, out);
                self.anchor_ns = self.anchor_ns.max(self.released_ns);
                return FeedState::More;
            }
            if let Some(target) = self.step_to {
                if due > target {
                    // The step is done: trace time is at its target.
                    self.anchor_ns = self.anchor_ns.max(target.min(self.span.end_ns));
                    self.anchor_at = Instant::now();
                    self.step_to = None;
                    return FeedState::More;
                }
                self.release(target, out);
                return FeedState::More;
            }
            if self.paused {
                // Keys (in the TUI loop's other branches) unpause; this
                // future is dropped and asked again then.
                std::future::pending::<()>().await;
            }
            let now = Instant::now();
            let pos = self.position(now);
            if due > pos {
                tokio::time::sleep_until(self.instant_of(due)).await;
                continue;
            }
            self.release(pos, out);
            return FeedState::More;
        }
    }

    /// Replay keys: space pause/resume, `n` step 1 s (pauses), `E` jump to
    /// the end, `>`/`<` double/halve the speed. None is an App key.
    pub fn key(&mut self, key: KeyCode, now: Instant) -> bool {
        match key {
            KeyCode::Char(' ') => {
                if !self.ended {
                    self.reanchor(now);
                    self.paused = !self.paused;
                }
            }
            KeyCode::Char('n') => {
                if !self.ended && !self.to_end {
                    self.reanchor(now);
                    self.paused = true;
                    let from = self.step_to.unwrap_or(self.anchor_ns);
                    self.step_to = Some(from.saturating_add(NS_PER_S).min(self.span.end_ns));
                }
            }
            KeyCode::Char('E') => {
                if !self.ended {
                    self.reanchor(now);
                    self.to_end = true;
                    self.step_to = None;
                }
            }
            KeyCode::Char('>') => {
                self.reanchor(now);
                if self.speed > 0.0 {
                    self.speed = (self.speed * 2.0).min(MAX_SPEED);
                }
            }
            KeyCode::Char('<') => {
                self.reanchor(now);
                self.speed = if self.speed == 0.0 {
                    MAX_SPEED
                } else {
                    (self.speed / 2.0).max(MIN_SPEED)
                };
            }
            _ => return false,
        }
        true
    }

    /// [`ReplayFeed::key`] now.
    pub fn on_key(&mut self, key: KeyCode) -> bool {
        self.key(key, Instant::now())
    }

    /// "replay 00:01:23 / 00:05:00 ×1", then the state when not playing.
    pub fn label_at(&self, now: Instant) -> String {
        let pos = self.position(now);
        let speed = if self.speed == 0.0 {
            "max".to_string()
        } else {
            format!("{}", self.speed)
        };
        let state = if self.ended {
            " end"
        } else if self.to_end {
            " to end"
        } else if self.step_to.is_some() {
            " step"
        } else if self.paused {
            " paused"
        } else {
            ""
        };
        format!(
            "replay {} / {} ×{speed}{state}",
            hms(pos.saturating_sub(self.span.start_ns)),
            hms(self.span.end_ns.saturating_sub(self.span.start_ns))
        )
    }
}

fn hms(ns: u64) -> String {
    crate::render::fmt::hms(ns / NS_PER_S)
}

impl<R: std::io::Read> Source for ReplayFeed<Reader<R>, ReadError> {
    async fn next(&mut self, out: &mut Vec<Input>) -> FeedState {
        self.next_batch(out).await
    }

    fn now_ns(&self, _engine: &Engine) -> u64 {
        self.position(Instant::now())
    }

    fn label(&self) -> Option<String> {
        Some(self.label_at(Instant::now()))
    }

    fn on_key(&mut self, key: KeyCode) -> bool {
        ReplayFeed::on_key(self, key)
    }

    fn close(self) -> Closing {
        Closing {
            warnings: self.src.warnings().iter().map(|w| w.to_string()).collect(),
            error: self.error.map(|e| {
                format!(
                    "{e}; the replay showed the {} records before it",
                    self.released
                )
            }),
            ..Closing::default()
        }
    }
}

/// First and last timestamp of the readable part of a trace (`None` when
/// it has no records), and why reading stopped early if it did. Errors
/// only when the file is not a readable trace at all: damage further in is
/// the replay's to report, after what precedes it was shown.
pub fn scan(path: &std::path::Path) -> Result<(Option<Span>, Vec<String>), ReadError> {
    let mut span: Option<Span> = None;
    let mut reader = Reader::open(path)?;
    let mut problems = Vec::new();
    for input in reader.by_ref() {
        let input = match input {
            Ok(i) => i,
            Err(e) => {
                problems.push(e.to_string());
                break;
            }
        };
        if let Some(ts) = input.ts_ns() {
            let s = span.get_or_insert(Span {
                start_ns: ts,
                end_ns: ts,
            });
            s.end_ns = s.end_ns.max(ts);
        }
    }
    problems.extend(reader.warnings().iter().map(|w| w.to_string()));
    Ok((span, problems))
}

#[cfg(test)]
mod tests {
    //! The feed as a state machine on tokio's paused clock: no terminal,
    //! and time only moves when the test (or an awaited timer) moves it.
    use super::*;

    const MS: u64 = 1_000_000;

    fn tick(ns: u64) -> Input {
        Input::Tick { now_ns: ns }
    }

    fn feed(
        ts_ms: &[u64],
        speed: f64,
    ) -> ReplayFeed<std::vec::IntoIter<Result<Input, String>>, String> {
        let inputs: Vec<Result<Input, String>> = ts_ms.iter().map(|&t| Ok(tick(t * MS))).collect();
        let span = Span {
            start_ns: ts_ms[0] * MS,
            end_ns: ts_ms.iter().max().unwrap() * MS,
        };
        ReplayFeed::new(inputs.into_iter(), span, speed)
    }

    fn times(v: &[Input]) -> Vec<u64> {
        v.iter().map(|i| i.ts_ns().unwrap() / MS).collect()
    }

    /// Whether the feed has something to hand over within `wait` (of
    /// paused tokio time, which auto-advances): a paused feed never does.
    async fn releases_within(
        f: &mut ReplayFeed<std::vec::IntoIter<Result<Input, String>>, String>,
        wait: Duration,
    ) -> bool {
        let mut out = Vec::new();
        tokio::time::timeout(wait, f.next_batch(&mut out))
            .await
            .is_ok()
    }

    #[tokio::test(start_paused = true)]
    async fn releases_every_input_in_file_order_as_fast_as_possible() {
        let ts = [10_000, 10_000, 10_400, 10_200, 12_000, 15_000];
        let mut f = feed(&ts, 0.0);
        let t0 = Instant::now();
        let mut out = Vec::new();
        while f.next_batch(&mut out).await == FeedState::More {}
        // Out-of-order timestamps (10_200 after 10_400) keep file order.
        assert_eq!(times(&out), ts);
        assert_eq!(Instant::now(), t0, "speed 0 never waits");
        assert!(f.ended());
        assert_eq!(f.position(Instant::now()), 15_000 * MS);
    }

    #[tokio::test(start_paused = true)]
    async fn paces_inputs_by_their_timestamps_divided_by_speed() {
        let mut f = feed(&[10_000, 11_000, 13_000], 2.0);
        let t0 = Instant::now();
        let mut released_at = Vec::new();
        let mut out = Vec::new();
        while f.next_batch(&mut out).await == FeedState::More {
            released_at.push((times(&out), Instant::now() - t0));
            out.clear();
        }
        assert_eq!(
            released_at,
            [
                (vec![10_000], Duration::ZERO),
                (vec![11_000], Duration::from_millis(500)),
                (vec![13_000], Duration::from_millis(1500)),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn trace_time_follows_wall_time_but_not_past_an_unreleased_input() {
        let mut f = feed(&[10_000, 11_000], 1.0);
        let mut out = Vec::new();
        f.next_batch(&mut out).await;
        tokio::time::advance(Duration::from_millis(250)).await;
        assert_eq!(f.position(Instant::now()), 10_250 * MS);
        // The feed was not asked for 11_000 yet: time waits for it.
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(f.position(Instant::now()), 11_000 * MS);
    }

    #[tokio::test(start_paused = true)]
    async fn space_pauses_and_resumes_trace_time() {
        let mut f = feed(&[10_000, 11_000, 12_000], 1.0);
        let mut out = Vec::new();
        f.next_batch(&mut out).await;
        tokio::time::advance(Duration::from_millis(300)).await;
        assert!(f.on_key(KeyCode::Char(' ')));
        assert!(f.paused());
        assert!(!releases_within(&mut f, Duration::from_secs(3600)).await);
        assert_eq!(f.position(Instant::now()), 10_300 * MS);
        assert!(f.on_key(KeyCode::Char(' ')));
        let t = Instant::now();
        out.clear();
        f.next_batch(&mut out).await;
        assert_eq!(times(&out), [11_000]);
        // The 700 ms left of that second, not a full one.
        assert_eq!(Instant::now() - t, Duration::from_millis(700));
    }

    #[tokio::test(start_paused = true)]
    async fn n_steps_one_second_of_trace_time_and_stays_paused() {
        let mut f = feed(&[10_000, 10_500, 11_000, 11_500, 12_500], 1.0);
        let mut out = Vec::new();
        f.next_batch(&mut out).await;
        assert!(f.on_key(KeyCode::Char('n')));
        out.clear();
        while f.position(Instant::now()) < 11_000 * MS {
            f.next_batch(&mut out).await;
        }
        assert_eq!(times(&out), [10_500, 11_000]);
        assert!(f.paused());
        assert!(!releases_within(&mut f, Duration::from_secs(3600)).await);
        assert_eq!(f.position(Instant::now()), 11_000 * MS);
        f.on_key(KeyCode::Char('n'));
        out.clear();
        while f.position(Instant::now()) < 12_000 * MS {
            f.next_batch(&mut out).await;
        }
        assert_eq!(times(&out), [11_500]);
    }

    #[tokio::test(start_paused = true)]
    async fn capital_e_jumps_to_the_end_and_the_feed_ends() {
        let mut f = feed(&[10_000, 20_000, 30_000, 300_000], 1.0);
        let mut out = Vec::new();
        f.next_batch(&mut out).await;
        let t0 = Instant::now();
        assert!(f.on_key(KeyCode::Char('E')));
        while f.next_batch(&mut out).await == FeedState::More {}
        assert_eq!(times(&out), [10_000, 20_000, 30_000, 300_000]);
        assert_eq!(Instant::now(), t0, "jumping does not wait");
        assert!(f.ended());
        assert_eq!(f.position(Instant::now()), 300_000 * MS);
        assert_eq!(
            f.label_at(Instant::now()),
            "replay 00:04:50 / 00:04:50 ×1 end"
        );
        // At the end, the keys change nothing (and are still the replay's).
        assert!(f.on_key(KeyCode::Char(' ')));
        assert!(!f.paused());
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_error_ends_the_replay_after_what_preceded_it() {
        let inputs = vec![
            Ok(tick(1_000 * MS)),
            Ok(tick(2_000 * MS)),
            Err("corrupt record at byte 99".to_string()),
            Ok(tick(3_000 * MS)),
        ];
        let span = Span {
            start_ns: 1_000 * MS,
            end_ns: 2_000 * MS,
        };
        let mut f = ReplayFeed::new(inputs.into_iter(), span, 0.0);
        let mut out = Vec::new();
        while f.next_batch(&mut out).await == FeedState::More {}
        assert_eq!(times(&out), [1_000, 2_000]);
        assert_eq!(
            f.error().map(String::as_str),
            Some("corrupt record at byte 99")
        );
        assert_eq!(f.released(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn label_shows_position_length_speed_and_state() {
        let mut f = feed(&[0, 83_000, 300_000], 2.0);
        let mut out = Vec::new();
        f.next_batch(&mut out).await;
        f.next_batch(&mut out).await;
        assert_eq!(f.label_at(Instant::now()), "replay 00:01:23 / 00:05:00 ×2");
        f.on_key(KeyCode::Char(' '));
        assert_eq!(
            f.label_at(Instant::now()),
            "replay 00:01:23 / 00:05:00 ×2 paused"
        );
        f.on_key(KeyCode::Char('<'));
        f.on_key(KeyCode::Char('<'));
        assert_eq!(f.speed(), 0.5);
        f.on_key(KeyCode::Char('>'));
        assert_eq!(f.speed(), 1.0);
    }

    #[test]
    fn app_keys_are_not_taken() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let mut f = feed(&[0, 1_000], 1.0);
        for c in "q?/sSpeTjkgG+-123".chars() {
            assert!(!f.on_key(KeyCode::Char(c)), "{c} belongs to the App");
        }
        for k in [KeyCode::Tab, KeyCode::Enter, KeyCode::Esc] {
            assert!(!f.on_key(k));
        }
    }
}
