//! Accumulators: what is counted per key (process, service, destination,
//! pair, inbound listener), over per-second windows, and the [`Stats`]
//! they give at a time.

use crate::clock::NS_PER_S;
use crate::errno;
use crate::event::{ConnClose, ConnectError, EADDRNOTAVAIL, FailCause};

use super::TIME_WAIT_S;
use super::hist::{self, LogHist};
use super::model::{CauseCount, ErrnoCount, Stats};
use super::pids::RecentPids;
use super::table::Activity;
use super::window::{RingView, SecondRing};

/// Per-key accumulator.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Acc {
    /// Connections by the second they started.
    pub(super) new: SecondRing,
    /// Locally closed connections by the second they closed.
    pub(super) local_close: SecondRing,
    pub(super) new_total: u64,
    pub(super) local_closes: u64,
    pub(super) peer_closes: u64,
    pub(super) lifetime: LogHist,
    /// Sum of the lifetimes in `lifetime` (the exporter's histogram sum).
    pub(super) lifetime_sum_us: u64,
    pub(super) handshake: LogHist,
    /// EADDRNOTAVAIL failures the kernel saw as port exhaustion.
    pub(super) port_exhaustion: u64,
    /// errno → count; few distinct values, so a short vector.
    pub(super) errors: Vec<(i32, u64)>,
    /// Failures by [`FailCause::index`].
    pub(super) causes: [u64; FailCause::ALL.len()],
    /// How long failed handshakes waited before they ended (SYN_SENT to
    /// CLOSE), µs.
    pub(super) failed_handshake: LogHist,
    /// SYNs retransmitted by outbound connections before their handshake
    /// ended.
    pub(super) syn_retrans: u64,
    pub(super) last_ns: u64,
    pub(super) pids: RecentPids,
    pub(super) last_error_ns: Option<u64>,
    /// When the last handshake that got no answer (timed_out, aborted)
    /// ended.
    pub(super) last_unanswered_ns: Option<u64>,
}

impl Activity for Acc {
    fn last_ns(&self) -> u64 {
        self.last_ns
    }
}

/// What every accumulator a closed connection lands in needs from it,
/// computed once per event rather than once per accumulator (an outbound
/// event lands in five).
pub(super) struct CloseFacts<'a> {
    c: &'a ConnClose,
    start_s: u64,
    end_s: u64,
    lifetime_us: u64,
    lifetime_bucket: Option<usize>,
    handshake_bucket: Option<usize>,
    /// Cause and errno (or `ERRNO_ABORTED`) of a handshake that failed,
    /// with its wait's histogram bucket.
    failure: Option<(FailCause, i32, usize)>,
}

impl<'a> CloseFacts<'a> {
    pub(super) fn new(c: &'a ConnClose) -> Self {
        let lifetime_us = c.lifetime_ns() / 1000;
        CloseFacts {
            c,
            start_s: c.start_ns / NS_PER_S,
            end_s: c.end_ns / NS_PER_S,
            lifetime_us,
            lifetime_bucket: c.established.then(|| hist::bucket_of(lifetime_us)),
            handshake_bucket: c.handshake_ns.map(|h| hist::bucket_of(h / 1000)),
            failure: c.failure().map(|f| {
                (
                    f,
                    c.failure_errno().unwrap_or_default(),
                    hist::bucket_of(lifetime_us),
                )
            }),
        }
    }
}

impl Acc {
    #[inline]
    pub(super) fn record_close(&mut self, f: &CloseFacts) {
        let c = f.c;
        self.new.add(f.start_s, 1);
        self.new_total += 1;
        if let Some(b) = f.lifetime_bucket {
            self.lifetime.record_bucket(b);
            self.lifetime_sum_us += f.lifetime_us;
        }
        if let Some(b) = f.handshake_bucket {
            self.handshake.record_bucket(b);
        }
        self.syn_retrans += u64::from(c.syn_retrans);
        if c.local_close {
            self.local_close.add(f.end_s, 1);
            self.local_closes += 1;
        } else if c.peer_close {
            self.peer_closes += 1;
        }
        if let Some((cause, errno, bucket)) = f.failure {
            self.record_errno(errno);
            self.causes[cause.index()] += 1;
            self.failed_handshake.record_bucket(bucket);
            self.last_error_ns = self.last_error_ns.max(Some(c.end_ns));
            if cause.is_unanswered() {
                self.last_unanswered_ns = self.last_unanswered_ns.max(Some(c.end_ns));
            }
        }
        self.last_ns = self.last_ns.max(c.end_ns);
        if let Some(t) = &c.task {
            self.note_pid(t.pid);
        }
    }

    pub(super) fn record_error(&mut self, e: &ConnectError) {
        self.record_errno(e.errno);
        self.causes[e.failure().index()] += 1;
        if e.cause == crate::event::Cause::PortExhaustion {
            self.port_exhaustion += 1;
        }
        self.last_error_ns = self.last_error_ns.max(Some(e.ts_ns));
        self.last_ns = self.last_ns.max(e.ts_ns);
        if let Some(t) = &e.task {
            self.note_pid(t.pid);
        }
    }

    pub(super) fn record_errno(&mut self, errno: i32) {
        match self.errors.iter_mut().find(|(e, _)| *e == errno) {
            Some((_, n)) => *n += 1,
            None => self.errors.push((errno, 1)),
        }
    }

    #[inline]
    pub(super) fn note_pid(&mut self, pid: u32) {
        self.pids.note(pid);
    }

    pub(super) fn stats(&self, now: &Now) -> Stats {
        // One pass over each ring and histogram: a model computes this for
        // every key of every table (4,096 each when full), every frame.
        let new = self.new.view(now.sec);
        let local_close = self.local_close.view(now.sec);
        let (s1, s10, s60) = now.rates_in(&new);
        let closed = self.local_closes + self.peer_closes;
        let (time_wait, exp) = tw_from_closes_in(&local_close, now.sec);
        let ms = |v: Option<u64>| v.map(|us| us as f64 / 1000.0);
        let errors_total = self.errors.iter().map(|(_, n)| n).sum();
        let [l50, l90, l99] = self.lifetime.quantiles_us([0.50, 0.90, 0.99]);
        let [h50, h99] = self.handshake.quantiles_us([0.50, 0.99]);
        let [f50, f99] = self.failed_handshake.quantiles_us([0.50, 0.99]);
        Stats {
            new_total: self.new_total,
            new_per_s_1s: s1,
            new_per_s_10s: s10,
            new_per_s_60s: s60,
            active_s_10s: new.active(now.sec.saturating_sub(10), now.sec.saturating_sub(1)),
            lifetime_p50_ms: ms(l50),
            lifetime_p90_ms: ms(l90),
            lifetime_p99_ms: ms(l99),
            handshake_p50_ms: ms(h50),
            handshake_p99_ms: ms(h99),
            closed_locally_share: (closed > 0).then(|| self.local_closes as f64 / closed as f64),
            local_close_per_s_10s: now.rate_in(&local_close, 10),
            time_wait,
            tw_expiring_10s: exp[0],
            tw_expiring_30s: exp[1],
            tw_expiring_60s: exp[2],
            connect_errors: errno_counts(&self.errors),
            connect_errors_by_cause: FailCause::ALL
                .iter()
                .filter(|c| self.causes[c.index()] > 0)
                .map(|&c| CauseCount {
                    cause: c,
                    count: self.causes[c.index()],
                })
                .collect(),
            failed_handshake_p50_ms: ms(f50),
            failed_handshake_p99_ms: ms(f99),
            syn_retransmits: self.syn_retrans,
            connect_errors_total: errors_total,
            port_exhaustion_total: self.port_exhaustion,
            local_closes_total: self.local_closes,
            lifetime_sum_s: self.lifetime_sum_us as f64 / 1e6,
            new_series_60s: new.series(now.sec.saturating_sub(60), now.sec),
            lifetime_buckets: lifetime_decades(&self.lifetime),
            last_error_ns: self.last_error_ns,
        }
    }

    /// Connections started in the last 2 complete seconds: still going.
    pub(super) fn recent(&self, now: &Now) -> bool {
        self.new
            .sum(now.sec.saturating_sub(2), now.sec.saturating_sub(1))
            > 0
    }
}

/// TIME_WAIT held now and expiring within 10/30/60 s, from local closes by
/// second: a close in second `e` holds its port until second `e + 60`.
pub(super) fn tw_from_closes(ring: &SecondRing, now_s: u64) -> (u64, [u64; 3]) {
    tw_from_closes_in(&ring.view(now_s), now_s)
}

/// [`tw_from_closes`] on a view of the ring from `now_s`.
pub(super) fn tw_from_closes_in(ring: &RingView, now_s: u64) -> (u64, [u64; 3]) {
    let first = (now_s + 1).saturating_sub(TIME_WAIT_S);
    let held = ring.sum(first, now_s);
    let exp = [10, 30, 60].map(|x: u64| {
        (now_s + x)
            .checked_sub(TIME_WAIT_S)
            .map_or(0, |last| ring.sum(first, last))
    });
    (held, exp)
}

/// Lifetime counts by decade for the TUI's histogram.
pub(super) fn lifetime_decades(h: &LogHist) -> Vec<(&'static str, u64)> {
    let limits = [
        ("<1ms", 1_000),
        ("<10ms", 10_000),
        ("<100ms", 100_000),
        ("<1s", 1_000_000),
        ("<10s", 10_000_000),
    ];
    let mut out = Vec::with_capacity(limits.len() + 1);
    let mut below_prev = 0;
    let below = h.counts_below_us(limits.map(|(_, l)| l));
    for ((label, _), below) in limits.into_iter().zip(below) {
        out.push((label, below - below_prev));
        below_prev = below;
    }
    out.push((">=10s", h.count() - below_prev));
    out
}

/// EADDRNOTAVAIL first (it is what port exhaustion looks like), then by count.
pub(super) fn errno_counts(errors: &[(i32, u64)]) -> Vec<ErrnoCount> {
    let mut v: Vec<ErrnoCount> = errors
        .iter()
        .map(|&(e, n)| ErrnoCount {
            errno: e,
            name: errno::name(e),
            count: n,
        })
        .collect();
    v.sort_by_key(|c| {
        (
            c.errno != EADDRNOTAVAIL,
            std::cmp::Reverse(c.count),
            c.errno,
        )
    });
    v
}

/// "Now" as the model sees it: the current second and how long we have
/// observed, so windows longer than the observation are not diluted.
pub(super) struct Now {
    pub(super) sec: u64,
    pub(super) observed_s: u64,
}

impl Now {
    /// Rate over the last `w` complete seconds (fewer at start).
    pub(super) fn rate(&self, ring: &SecondRing, w: u64) -> f64 {
        let span = w.min(self.observed_s).max(1);
        ring.sum(self.sec.saturating_sub(w), self.sec.saturating_sub(1)) as f64 / span as f64
    }

    /// [`Now::rate`] on a view of the ring from `self.sec`.
    pub(super) fn rate_in(&self, ring: &RingView, w: u64) -> f64 {
        let span = w.min(self.observed_s).max(1);
        ring.sum(self.sec.saturating_sub(w), self.sec.saturating_sub(1)) as f64 / span as f64
    }

    pub(super) fn rates_in(&self, ring: &RingView) -> (f64, f64, f64) {
        (
            self.rate_in(ring, 1),
            self.rate_in(ring, 10),
            self.rate_in(ring, 60),
        )
    }
}
