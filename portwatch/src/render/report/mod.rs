//! `portwatch report`: the incident summary of a trace, as text for people
//! (no escape codes: it goes into tickets) or one JSON object.
//!
//! What it says is the engine's [`Summary`] of the trace (models sampled
//! every second of trace time, see [`crate::engine::summary`]); this file
//! only writes it. Everything is ordered explicitly: the same file always
//! gives the same bytes.
//!
//! # JSON fields (`--json`, one object, stable)
//!
//! - `host`: `{hostname, kernel, port_range, budget}`.
//! - `span`: `{start, end}` (RFC 3339 UTC, from the host's wall-clock
//!   anchor), `duration_s`, `inputs` (records read).
//! - `connections`: `{outbound, inbound}`: connections seen.
//! - `peak`: `{new_per_sec_1s, new_per_sec_1s_at, new_per_sec, new_per_sec_at}`:
//!   highest outbound rate over one second and over 10 s, and when (start of
//!   the second, or end of the 10 s window).
//! - `services` (by connections, descending): `[{name, kind, pids, new_total,
//!   peak_new_per_sec, lifetime_p50_ms, closed_locally_share, connect_errors}]`.
//! - `destinations` (by peak pressure, descending): `[{daddr, dport,
//!   new_total, peak_new_per_sec, peak_held_ports, peak_time_wait, budget,
//!   peak_pressure, peak_pressure_at, closer, connect_errors, syn_retransmits}]`;
//!   `peak_pressure` = held ports / budget at its highest: the peak share of
//!   the port budget; `connect_errors`: failed connects and handshakes to it;
//!   `syn_retransmits`: SYNs the kernel retransmitted to it;
//!   `peak_nat_port_demand`: the highest NAT gateway port demand (null for
//!   destinations in the host's own networks, or when unknown).
//! - `failures`: `{total, syn_retransmits, by_errno: [{errno, name, count}], minutes: [{minute,
//!   total, by_errno}]}`, EADDRNOTAVAIL first; only minutes with failures.
//! - `conntrack`: the conntrack table at its worst (most entries turned
//!   away per second, then the fullest): `{netns_name, count, max, fill,
//!   turned_away_per_sec, at}`; null without nf_conntrack.
//! - `verdicts`: every pair flagged at least once: the fields of `top --batch
//!   --json` verdicts at the pair's peak (most TIME_WAIT, then highest rate),
//!   plus `peak_at`, `first_seen`, `last_seen` and `flagged_s` (seconds of
//!   trace time the verdict held).
//! - `lost_events`: `{total, ringbuf_lost, sock_evicted, connect_untracked,
//!   decode_errors, probe_errors, kernel_missed}` (cumulative, as last recorded).
//! - `warnings`: what the reader skipped or where it stopped (with the byte
//!   offset); `complete`: false when reading stopped at an error.

mod json;
mod text;

pub use json::write_json;
pub use text::write_text;

use crate::engine::summary::Summary;

/// The report of a trace: the engine's [`Summary`] of it, and what
/// reading it found. Derefs to the summary.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub file: String,
    /// Records read.
    pub inputs: u64,
    pub summary: Summary,
    pub warnings: Vec<String>,
    /// Reading stopped at an error (what was read before it is reported).
    pub complete: bool,
}

impl std::ops::Deref for Report {
    type Target = Summary;

    fn deref(&self) -> &Summary {
        &self.summary
    }
}

impl Report {
    pub(super) fn time(&self, mono_ns: u64) -> String {
        match self.clock {
            Some(c) => c.utc(mono_ns).format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            None => format!("+{:.0}s", mono_ns as f64 / 1e9),
        }
    }

    /// Time of day only: the span line gives the date.
    pub(super) fn hms(&self, mono_ns: u64) -> String {
        match self.clock {
            Some(c) => c.utc(mono_ns).format("%H:%M:%S").to_string(),
            None => self.time(mono_ns),
        }
    }

    /// The errnos of the timeline's columns: those of [`Report::failures`].
    pub(super) fn errno_columns(&self) -> Vec<i32> {
        self.failures.iter().map(|c| c.errno).collect()
    }
}

pub(super) fn minute_utc(minute: i64) -> String {
    chrono::DateTime::from_timestamp(minute * 60, 0).map_or_else(
        || minute.to_string(),
        |t| t.format("%Y-%m-%dT%H:%MZ").to_string(),
    )
}
