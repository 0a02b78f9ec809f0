//! Kernel timestamps are CLOCK_MONOTONIC; people want wall-clock time. One
//! anchor, taken once, converts between the two (so a trace replays with the
//! times it was recorded at, and the engine never reads a clock itself).

use chrono::{DateTime, Local, SecondsFormat, Utc};

/// Nanoseconds per second: kernel timestamps are ns.
pub const NS_PER_S: u64 = 1_000_000_000;

/// Pairs a CLOCK_MONOTONIC reading with the CLOCK_REALTIME reading taken
/// at the same moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WallClock {
    pub mono_ns: u64,
    pub unix_ns: i64,
}

fn clock_ns(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid, writable timespec; the clock ids are constants.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// CLOCK_MONOTONIC now, in the kernel's `bpf_ktime_get_ns` units.
pub fn monotonic_now_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC) as u64
}

impl WallClock {
    pub fn now() -> WallClock {
        WallClock {
            mono_ns: monotonic_now_ns(),
            unix_ns: clock_ns(libc::CLOCK_REALTIME),
        }
    }

    /// Unix time (ns) of a CLOCK_MONOTONIC timestamp.
    pub fn unix_ns(&self, mono_ns: u64) -> i64 {
        self.unix_ns + (mono_ns as i64 - self.mono_ns as i64)
    }

    pub fn utc(&self, mono_ns: u64) -> DateTime<Utc> {
        DateTime::from_timestamp_nanos(self.unix_ns(mono_ns))
    }

    /// RFC 3339 with microseconds, UTC: the JSON `time` field.
    pub fn rfc3339(&self, mono_ns: u64) -> String {
        self.utc(mono_ns)
            .to_rfc3339_opts(SecondsFormat::Micros, true)
    }

    /// `HH:MM:SS.mmm` in local time, for aligned text output.
    pub fn local_hms(&self, mono_ns: u64) -> String {
        self.utc(mono_ns)
            .with_timezone(&Local)
            .format("%H:%M:%S%.3f")
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_monotonic_to_wall_clock() {
        let c = WallClock {
            mono_ns: 1_000_000_000,
            unix_ns: 1_700_000_000_000_000_000,
        };
        assert_eq!(c.unix_ns(1_500_000_000), 1_700_000_000_500_000_000);
        assert_eq!(c.unix_ns(500_000_000), 1_699_999_999_500_000_000);
        assert_eq!(c.rfc3339(1_000_250_000), "2023-11-14T22:13:20.000250Z");
    }
}
