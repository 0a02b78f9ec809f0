//! `portwatch export`: a trace's events for other tools. The fields are
//! `trace --json`'s ([`JsonEvent`]), in JSON Lines or CSV.

use std::io::{self, BufWriter, Write};
use std::net::{IpAddr, Ipv4Addr};

use anyhow::{Context, Result, bail};

use crate::cli::{ExportArgs, ExportFormat};
use crate::clock::WallClock;
use crate::engine::namer::Namer;
use crate::event::{Cause, ConnectError, Event};
use crate::input::Input;
use crate::output::JsonEvent;
use crate::tracefile::{ReadError, Reader};

pub fn run(args: ExportArgs) -> Result<()> {
    let path = args.file.display().to_string();
    let reader = Reader::open(&args.file).with_context(|| format!("opening {path}"))?;
    let stdout = io::stdout();
    let out = BufWriter::with_capacity(64 * 1024, stdout.lock());
    match export(reader, out, args.format) {
        Ok(warnings) => {
            for w in warnings {
                eprintln!("portwatch: warning: {path}: {w}");
            }
            Ok(())
        }
        Err(ExportError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(ExportError::Output(e)) => Err(e).context("writing output"),
        Err(ExportError::Read(e)) => Err(e).with_context(|| format!("reading {path}")),
        Err(ExportError::NoHost) => bail!("{path}: the trace has events but no host record"),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Output(#[from] io::Error),
    #[error("event before the host record")]
    NoHost,
}

impl From<csv::Error> for ExportError {
    fn from(e: csv::Error) -> Self {
        ExportError::Output(e.into())
    }
}

/// Writes every event of `reader` to `out`; returns the reader's warnings.
/// Events before a read error are written (and flushed) before it is
/// returned, so a damaged trace still exports what it holds.
pub fn export<R: io::Read, W: Write>(
    mut reader: Reader<R>,
    out: W,
    format: ExportFormat,
) -> Result<Vec<String>, ExportError> {
    let mut sink = match format {
        ExportFormat::Jsonl => Sink::Jsonl(out),
        ExportFormat::Csv => {
            let mut w = out;
            w.write_all(csv_header().as_bytes())?;
            Sink::Csv(Box::new(
                csv::WriterBuilder::new().has_headers(false).from_writer(w),
            ))
        }
    };
    let mut clock: Option<WallClock> = None;
    // Each event's namespace as named when it happened (as `trace --json`
    // named it live).
    let mut namer = Namer::new();
    let mut result = Ok(());
    for input in reader.by_ref() {
        if let Ok(i) = &input {
            namer.observe(i);
        }
        match input {
            Ok(Input::Host(h)) => clock = Some(h.clock),
            Ok(Input::Event(ev)) => {
                let Some(clock) = clock.as_ref() else {
                    result = Err(ExportError::NoHost);
                    break;
                };
                let name = namer.name_or_inode(ev.netns());
                sink.write(&JsonEvent::new(&ev, clock, name.as_deref()))?;
            }
            Ok(_) => {}
            Err(e) => {
                result = Err(e.into());
                break;
            }
        }
    }
    sink.flush()?;
    result?;
    Ok(reader.warnings().iter().map(|w| w.to_string()).collect())
}

enum Sink<W: Write> {
    Jsonl(W),
    // Boxed: one per export, and the csv writer is large.
    Csv(Box<csv::Writer<W>>),
}

impl<W: Write> Sink<W> {
    fn write(&mut self, ev: &JsonEvent) -> Result<(), ExportError> {
        match self {
            Sink::Jsonl(w) => {
                serde_json::to_writer(&mut *w, ev).map_err(io::Error::from)?;
                w.write_all(b"\n")?;
            }
            Sink::Csv(w) => w.serialize(ev)?,
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Jsonl(w) => w.flush(),
            Sink::Csv(w) => w.flush(),
        }
    }
}

/// The CSV header row, derived from `JsonEvent`'s serde field names so the
/// two cannot drift apart; written even when the trace has no events.
fn csv_header() -> String {
    let any_event = Event::ConnectError(ConnectError {
        ts_ns: 0,
        duration_ns: 0,
        task: None,
        netns: 0,
        daddr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        dport: 0,
        errno: 0,
        cause: Cause::Other,
        saw_syn_sent: false,
    });
    let clock = WallClock {
        mono_ns: 0,
        unix_ns: 0,
    };
    let sample = JsonEvent::new(&any_event, &clock, None);
    let mut w = csv::Writer::from_writer(Vec::new());
    w.serialize(&sample).expect("in-memory CSV");
    let bytes = w.into_inner().expect("in-memory CSV");
    let text = String::from_utf8(bytes).expect("CSV of UTF-8 fields");
    let header = text.lines().next().expect("a header line");
    format!("{header}\n")
}
