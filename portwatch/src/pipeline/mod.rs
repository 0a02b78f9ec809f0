//! The one loop every command runs: a [`Source`] of [`Input`]s → the
//! [`Recorder`] (every input, ticks included) → the [`Engine`] → a [`Sink`]
//! that shows or keeps what the engine knows.
//!
//! [`Pipeline::run`] owns the stop signals (SIGINT, SIGTERM, `--duration`),
//! the final drain and the shutdown order, so no command repeats them:
//!
//! 1. the loop stops (a signal, the sink says so, or an error);
//! 2. [`Sink::leave`]: the terminal is given back before anything is printed;
//! 3. [`Source::finish`]: what the kernel submitted before the stop is still
//!    recorded and applied;
//! 4. [`Source::close`]: the probes are detached, the losses read;
//! 5. the recording is flushed and fsynced;
//! 6. [`Sink::close`]: the sink's closing lines (and a report's body).
//!
//! A command only turns its arguments into a `Pipeline` (see `cmd/`).

pub mod pacer;
pub mod recorder;
pub mod sinks;
pub mod source;
pub mod stop;

use std::future::Future;

use anyhow::Result;
use crossterm::event::KeyCode;

use crate::engine::Engine;
use crate::event::Losses;
use crate::filter::Filter;
use crate::input::Input;
pub use recorder::{Recorded, Recorder};
pub use stop::StopSignals;

/// Whether a source has more to give.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedState {
    More,
    /// Nothing more will come (end of a trace file).
    Ended,
}

/// Where inputs come from: the live host ([`crate::live::LiveSource`]), a
/// trace file paced by its timestamps ([`pacer::ReplayFeed`]) or read as
/// fast as possible ([`source::TraceSource`]).
pub trait Source {
    /// Appends the next inputs, waiting as long as needed. Must be
    /// cancel-safe: the loop drops it when a signal or the sink wakes.
    fn next(&mut self, out: &mut Vec<Input>) -> impl Future<Output = FeedState>;
    /// The time the model is computed at (CLOCK_MONOTONIC ns): now when
    /// live, the trace time reached when replaying.
    fn now_ns(&self, engine: &Engine) -> u64;
    /// A label for a view's header ("replay 00:01:00 / 00:05:00"), None live.
    fn label(&self) -> Option<String> {
        None
    }
    /// Keys the source itself understands (replay: pause, step, jump).
    fn on_key(&mut self, _key: KeyCode) -> bool {
        false
    }
    /// Warnings so far (some only appear later, e.g. a failed resync).
    fn warnings(&self) -> &[String] {
        &[]
    }
    /// Events lost so far, where the source can lose any.
    fn losses(&self) -> Option<Losses> {
        None
    }
    /// Per-program eBPF statistics, where the source runs programs and the
    /// kernel keeps them (the exporter's `portwatch_bpf_*`).
    fn program_stats(&self) -> Option<Vec<crate::probe::ProgramStats>> {
        None
    }
    /// Final drain after the loop stopped.
    fn finish(&mut self, _out: &mut Vec<Input>) {}
    /// Releases the source (live: detaches every program).
    fn close(self) -> Closing;
}

/// What a source has to say once released.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Closing {
    pub losses: Option<Losses>,
    pub warnings: Vec<String>,
    /// Why reading stopped early, if it did (a damaged trace).
    pub error: Option<String>,
    /// Records read (a trace file).
    pub inputs: u64,
}

/// Why the loop stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// SIGINT, SIGTERM or "duration reached".
    Signal(&'static str),
    /// The sink is done (quit key, `--iterations`, end of a report).
    Done,
    /// The output went away (`| head`): stop without a word.
    Quiet,
    /// The sink or the loop failed; the error is returned after shutdown.
    Failed,
}

/// What a sink wants after handling a wake-up or an input batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop(Stop),
}

/// What a sink may reach while the loop runs: the engine (read only), the
/// source's controls, and intake (a tick goes through the recorder too).
pub trait Control {
    fn engine(&self) -> &Engine;
    /// [`Source::now_ns`].
    fn now_ns(&self) -> u64;
    fn label(&self) -> Option<String>;
    /// [`Source::on_key`].
    fn source_key(&mut self, key: KeyCode) -> bool;
    /// Time has passed: an [`Input::Tick`] through the recorder and engine.
    fn tick(&mut self, now_ns: u64);
    fn recorder(&self) -> Option<&Recorder>;
    fn warnings(&self) -> &[String];
    fn losses(&self) -> Option<Losses>;
    /// [`Source::program_stats`].
    fn program_stats(&self) -> Option<Vec<crate::probe::ProgramStats>>;
}

/// Where the model goes: the TUI, batch text/JSON, the report, the
/// recording alone, an exporter. A sink never blocks the loop: it waits
/// in [`Sink::wake`] (a timer, a key), and is handed the engine when woken.
pub trait Sink {
    /// What woke the sink.
    type Wake;
    /// Whether inputs go through the engine (record-only: they need not).
    const ENGINE: bool = true;
    /// Before the first input (the TUI takes the terminal here).
    fn start(&mut self, _ctl: &mut dyn Control) -> Result<()> {
        Ok(())
    }
    /// Resolves when the sink has work (a refresh, a key). Must be
    /// cancel-safe; never resolving is fine.
    fn wake(&mut self) -> impl Future<Output = Self::Wake>;
    fn on_wake(&mut self, wake: Self::Wake, ctl: &mut dyn Control) -> Result<Flow>;
    /// Sees each input (that passed the filter) before the engine applies
    /// it (the report samples the model at whole seconds of trace time
    /// here; `trace` writes events).
    fn on_input(&mut self, _engine: &Engine, _input: &Input) {}
    /// After each batch of inputs (`trace` flushes here).
    fn after_inputs(&mut self, _ctl: &mut dyn Control) -> Result<Flow> {
        Ok(Flow::Continue)
    }
    /// The source has ended.
    fn on_end(&mut self, _ctl: &mut dyn Control) -> Result<Flow> {
        Ok(Flow::Continue)
    }
    /// Right after the loop, before the final drain: give the terminal back.
    fn leave(&mut self) -> Result<()> {
        Ok(())
    }
    /// Last: the source is closed and the recording finished.
    fn close(self, engine: &Engine, end: End) -> Result<()>;
}

/// How a run ended, for [`Sink::close`].
pub struct End {
    pub stop: Stop,
    pub source: Closing,
    /// The recording's summary, when one was made (or why it failed).
    pub recorded: Option<Result<Recorded>>,
}

pub struct Pipeline<S, K> {
    source: S,
    sink: K,
    engine: Engine,
    recorder: Option<Recorder>,
    filter: Filter,
    /// The filter also narrows what is recorded (`record` with filters).
    filter_recording: bool,
    stop: StopSignals,
}

impl<S: Source, K: Sink> Pipeline<S, K> {
    pub fn new(source: S, engine: Engine, sink: K, stop: StopSignals) -> Self {
        Pipeline {
            source,
            sink,
            engine,
            recorder: None,
            filter: Filter::default(),
            filter_recording: false,
            stop,
        }
    }

    /// Records every input (the filter does not apply to the recording).
    pub fn record(mut self, recorder: Option<Recorder>) -> Self {
        self.recorder = recorder;
        self
    }

    /// Only events that match reach the engine (and so every view).
    pub fn filter(mut self, filter: Filter) -> Self {
        self.filter = filter;
        self
    }

    /// The filter narrows the recording too: only for `record`, whose
    /// recording is its output. A view's filter never narrows a recording
    /// made beside it (`top --record`, `exporter --record`).
    pub fn filter_recording(mut self, yes: bool) -> Self {
        self.filter_recording = yes;
        self
    }

    /// Runs until a signal, the sink or the end of the source stops it,
    /// then shuts down in the order of the module documentation. The
    /// loop's error, if any, is returned after shutdown.
    pub async fn run(self) -> Result<()> {
        let Pipeline {
            mut source,
            mut sink,
            mut engine,
            mut recorder,
            mut filter,
            filter_recording,
            mut stop,
        } = self;
        let mut inputs = Vec::new();
        let mut intake = Intake {
            engine: &mut engine,
            recorder: &mut recorder,
            filter: &mut filter,
            filter_recording,
        };
        let mut ended = false;
        let started = sink.start(&mut Ctx {
            source: &mut source,
            intake: intake.reborrow(),
        });
        let stopped: Result<Stop> = match started {
            Err(e) => Err(e),
            Ok(()) => loop {
                let flow = tokio::select! {
                    why = stop.wait() => Ok(Flow::Stop(Stop::Signal(why))),
                    state = source.next(&mut inputs), if !ended => {
                        intake.feed(&mut inputs, &mut sink);
                        ended = state == FeedState::Ended;
                        let mut ctx = Ctx { source: &mut source, intake: intake.reborrow() };
                        match sink.after_inputs(&mut ctx) {
                            Ok(Flow::Continue) if ended => sink.on_end(&mut ctx),
                            flow => flow,
                        }
                    }
                    wake = sink.wake() => {
                        sink.on_wake(wake, &mut Ctx { source: &mut source, intake: intake.reborrow() })
                    }
                };
                match flow {
                    Ok(Flow::Continue) => {}
                    Ok(Flow::Stop(s)) => break Ok(s),
                    Err(e) => break Err(e),
                }
            },
        };
        let left = sink.leave();
        source.finish(&mut inputs);
        intake.feed(&mut inputs, &mut sink);
        let closing = source.close();
        let recorded = recorder.take().map(Recorder::finish);
        let end = End {
            stop: *stopped.as_ref().unwrap_or(&Stop::Failed),
            source: closing,
            recorded,
        };
        let closed = sink.close(&engine, end);
        stopped?;
        left?;
        closed
    }
}

/// Inputs into the recorder, then (filtered) into the engine.
struct Intake<'a> {
    engine: &'a mut Engine,
    recorder: &'a mut Option<Recorder>,
    filter: &'a mut Filter,
    filter_recording: bool,
}

impl Intake<'_> {
    fn reborrow(&mut self) -> Intake<'_> {
        Intake {
            engine: self.engine,
            recorder: self.recorder,
            filter: self.filter,
            filter_recording: self.filter_recording,
        }
    }

    fn feed<K: Sink>(&mut self, inputs: &mut Vec<Input>, sink: &mut K) {
        // By reference, then cleared: moving each ~250-byte input out of
        // the vector was a copy per input that nothing needed.
        for i in inputs.iter() {
            // The filter sees every input (a `--netns` name is learnt from
            // them all).
            let keep = self.filter.matches_input(i);
            // The recording keeps everything; the filter is for the views
            // (unless the recording is the output: `record`).
            if let Some(r) = self.recorder.as_mut()
                && (keep || !self.filter_recording)
            {
                r.append(i);
            }
            if !keep {
                continue;
            }
            sink.on_input(self.engine, i);
            if K::ENGINE {
                self.engine.apply(i);
            }
        }
        inputs.clear();
    }
}

struct Ctx<'a, S> {
    source: &'a mut S,
    intake: Intake<'a>,
}

impl<S: Source> Control for Ctx<'_, S> {
    fn engine(&self) -> &Engine {
        self.intake.engine
    }

    fn now_ns(&self) -> u64 {
        self.source.now_ns(self.intake.engine)
    }

    fn label(&self) -> Option<String> {
        self.source.label()
    }

    fn source_key(&mut self, key: KeyCode) -> bool {
        self.source.on_key(key)
    }

    fn tick(&mut self, now_ns: u64) {
        let tick = Input::Tick { now_ns };
        if let Some(r) = self.intake.recorder.as_mut() {
            r.append(&tick);
        }
        self.intake.engine.apply(&tick);
    }

    fn recorder(&self) -> Option<&Recorder> {
        self.intake.recorder.as_ref()
    }

    fn warnings(&self) -> &[String] {
        self.source.warnings()
    }

    fn losses(&self) -> Option<Losses> {
        self.source.losses()
    }

    fn program_stats(&self) -> Option<Vec<crate::probe::ProgramStats>> {
        self.source.program_stats()
    }
}
