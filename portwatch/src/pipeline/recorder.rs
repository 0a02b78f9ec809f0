//! The recorder: every input of a [`super::Pipeline`], ticks included,
//! into a trace file. Frames are flushed every second of trace time, so a
//! SIGKILL or a crash loses at most the last second; `finish` fsyncs.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::input::Input;
use crate::tracefile::{Compression, Writer};

/// How often the frame being built is written out: the most a SIGKILL or
/// a crash can lose.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// zstd level 1 halves a real trace (15 → 7 bytes per event on loopback
/// churn) for little CPU; higher levels gain only a few percent more.
const COMPRESSION: Compression = Compression::Zstd(1);

/// Appends every input and flushes once a second of trace time. The first
/// write error stops recording (kept, and returned by `finish` and
/// `error`) without stopping the pipeline; `record` itself stops on it.
pub struct Recorder {
    path: PathBuf,
    writer: Writer<fs::File>,
    last_flush_ns: u64,
    error: Option<anyhow::Error>,
}

/// What was recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    pub path: PathBuf,
    pub events: u64,
    pub bytes: u64,
}

impl std::fmt::Display for Recorded {
    /// "recorded 12 events to t.pwt (1.2 KiB)".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "recorded {} events to {} ({})",
            self.events,
            self.path.display(),
            crate::render::fmt::bytes(self.bytes)
        )
    }
}

impl Recorder {
    /// Creates `path` (mode 0600, never through a symlink; an existing file
    /// only with `force`).
    pub fn create(path: &Path, force: bool) -> Result<Recorder> {
        let mut writer = Writer::create(path, force).with_context(|| {
            if force {
                format!("creating {}", path.display())
            } else {
                format!("creating {} (use --force to overwrite)", path.display())
            }
        })?;
        writer
            .set_compression(COMPRESSION)
            .context("setting up zstd")?;
        Ok(Recorder {
            path: path.to_path_buf(),
            writer,
            last_flush_ns: 0,
            error: None,
        })
    }

    /// Removes the file: nothing was recorded (the probe did not load).
    pub fn discard(self) {
        let path = self.path.clone();
        drop(self);
        let _ = fs::remove_file(path);
    }

    pub fn append(&mut self, input: &Input) {
        if self.error.is_some() {
            return;
        }
        let mut r = self.writer.append(input);
        let due = |now_ns: u64| {
            now_ns.saturating_sub(self.last_flush_ns) >= FLUSH_INTERVAL.as_nanos() as u64
        };
        if let (Ok(()), Input::Tick { now_ns }) = (&r, input)
            && due(*now_ns)
        {
            self.last_flush_ns = *now_ns;
            r = self.writer.flush();
        }
        if let Err(e) = r {
            self.error = Some(anyhow::Error::new(e).context(format!(
                "writing {}; recording stopped",
                self.path.display()
            )));
        }
    }

    /// The write error recording stopped at, if any.
    pub fn error(&self) -> Option<&anyhow::Error> {
        self.error.as_ref()
    }

    pub fn events(&self) -> u64 {
        self.writer.events()
    }

    pub fn bytes_written(&self) -> u64 {
        self.writer.bytes_written()
    }

    /// Flushes and fsyncs; returns the first error, if any.
    pub fn finish(mut self) -> Result<Recorded> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.writer
            .sync()
            .with_context(|| format!("writing {}", self.path.display()))?;
        Ok(Recorded {
            events: self.writer.events(),
            bytes: self.writer.bytes_written(),
            path: self.path,
        })
    }
}
