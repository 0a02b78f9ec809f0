//! The one loop (source → recorder → engine → sink) on scripted sources
//! and sinks: its shutdown order, that every input is recorded (ticks
//! included), and that a filter narrows what the engine sees. Time is
//! tokio's paused clock: no sleeps, no root.

mod engine_support;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use anyhow::Result;
use engine_support::*;
use portwatch::engine::{Config, Engine, Model};
use portwatch::filter::Filter;
use portwatch::input::Input;
use portwatch::pipeline::sinks::batch::BatchSink;
use portwatch::pipeline::{
    Closing, Control, End, FeedState, Flow, Pipeline, Recorder, Sink, Source, Stop, StopSignals,
};
use portwatch::tracefile::Reader;

type Log = Rc<RefCell<Vec<String>>>;

/// Hands over its batches one per call; then ends, or (like the live
/// host) waits forever.
struct Script {
    batches: VecDeque<Vec<Input>>,
    ends: bool,
    /// Given by the final drain (what the kernel submitted before the stop).
    tail: Vec<Input>,
    now_ns: u64,
    log: Log,
}

impl Source for Script {
    async fn next(&mut self, out: &mut Vec<Input>) -> FeedState {
        match self.batches.pop_front() {
            Some(b) => {
                out.extend(b);
                FeedState::More
            }
            None if self.ends => FeedState::Ended,
            None => std::future::pending().await,
        }
    }

    fn now_ns(&self, _engine: &Engine) -> u64 {
        self.now_ns
    }

    fn finish(&mut self, out: &mut Vec<Input>) {
        self.log.borrow_mut().push("source.finish".into());
        out.append(&mut self.tail);
    }

    fn close(self) -> Closing {
        self.log.borrow_mut().push("source.close".into());
        Closing::default()
    }
}

/// Stops when the source ends, keeping the model of that moment.
struct Probe {
    log: Log,
    model: Rc<RefCell<Option<Model>>>,
    recording: Option<std::path::PathBuf>,
}

impl Sink for Probe {
    type Wake = ();

    fn start(&mut self, _ctl: &mut dyn Control) -> Result<()> {
        self.log.borrow_mut().push("sink.start".into());
        Ok(())
    }

    async fn wake(&mut self) {
        std::future::pending().await
    }

    fn on_wake(&mut self, (): (), _ctl: &mut dyn Control) -> Result<Flow> {
        Ok(Flow::Continue)
    }

    fn on_input(&mut self, _engine: &Engine, input: &Input) {
        if let Input::Event(_) = input {
            self.log.borrow_mut().push("sink.input".into());
        }
    }

    fn on_end(&mut self, ctl: &mut dyn Control) -> Result<Flow> {
        self.log.borrow_mut().push("sink.end".into());
        *self.model.borrow_mut() = Some(ctl.engine().model(ctl.now_ns()));
        Ok(Flow::Stop(Stop::Done))
    }

    fn leave(&mut self) -> Result<()> {
        self.log.borrow_mut().push("sink.leave".into());
        Ok(())
    }

    fn close(self, engine: &Engine, end: End) -> Result<()> {
        // The recording is complete and synced before the sink's last word.
        let recorded = end.recorded.expect("a recording").expect("recorded");
        let path = self.recording.expect("a path");
        let n = Reader::open(&path).unwrap().count();
        self.log.borrow_mut().push(format!(
            "sink.close stop={:?} recorded_events={} inputs_in_file={n} engine_at={}",
            end.stop,
            recorded.events,
            engine.now_ns()
        ));
        Ok(())
    }
}

/// Runs a pipeline recording to `path`, on a fresh engine.
async fn run<S: Source, K: Sink>(source: S, sink: K, path: &std::path::Path, filter: Filter) {
    Pipeline::new(
        source,
        Engine::new(Config::default()),
        sink,
        StopSignals::new(None).unwrap(),
    )
    .record(Some(Recorder::create(path, false).unwrap()))
    .filter(filter)
    .run()
    .await
    .unwrap();
}

fn t(pid: u32) -> portwatch::event::Task {
    task(pid, &format!("client-{pid}"), 0)
}

fn script(log: &Log, batches: Vec<Vec<Input>>, tail: Vec<Input>, ends: bool) -> Script {
    Script {
        batches: batches.into(),
        ends,
        tail,
        now_ns: 3 * S,
        log: log.clone(),
    }
}

#[tokio::test(start_paused = true)]
async fn shutdown_drains_then_closes_the_source_then_syncs_the_recording_then_closes_the_sink() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.pwt");
    let log: Log = Rc::default();
    let source = script(
        &log,
        vec![
            vec![host(32768, 60999), conn(t(10), "127.0.0.1:80", S, MS, true)],
            vec![tick(2 * S)],
        ],
        // Submitted by the kernel just before the stop.
        vec![conn(t(10), "127.0.0.1:80", 2 * S, MS, true), tick(3 * S)],
        true,
    );
    let sink = Probe {
        log: log.clone(),
        model: Rc::default(),
        recording: Some(path.clone()),
    };
    run(source, sink, &path, Filter::default()).await;
    assert_eq!(
        *log.borrow(),
        [
            "sink.start",
            "sink.input",
            "sink.end",
            "sink.leave",
            "source.finish",
            "sink.input",
            "source.close",
            // 2 events; 5 inputs: host, 2 closes, 2 ticks; the drained
            // tick reached the engine.
            "sink.close stop=Done recorded_events=2 inputs_in_file=5 engine_at=3000000000",
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn the_tick_a_batch_snapshot_is_taken_at_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.pwt");
    let log: Log = Rc::default();
    // Like the live host: inputs, then nothing for a while.
    let mut source = script(
        &log,
        vec![vec![
            host(32768, 60999),
            conn(t(10), "127.0.0.1:80", S, MS, true),
        ]],
        vec![],
        false,
    );
    source.now_ns = 7 * S;
    let mut out = Vec::new();
    let sink = BatchSink::new(&mut out, true, 10, 2.0, Some(1));
    run(source, sink, &path, Filter::default()).await;
    let snapshot: serde_json::Value = serde_json::from_slice(&out).unwrap();
    // One snapshot, of the model at the tick's time.
    assert_eq!(snapshot["services"].as_array().unwrap().len(), 1);
    assert_eq!(snapshot["services"][0]["new_total"], 1);
    let inputs: Vec<Input> = Reader::open(&path).unwrap().map(Result::unwrap).collect();
    assert!(
        inputs.contains(&Input::Tick { now_ns: 7 * S }),
        "the snapshot's tick is in the recording: {inputs:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_filter_narrows_the_model_but_not_the_recording() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.pwt");
    let log: Log = Rc::default();
    let mut batch = vec![host(32768, 60999)];
    for (i, pid) in [10, 11, 10, 12].into_iter().enumerate() {
        batch.push(conn(t(pid), "127.0.0.1:80", S + i as u64 * MS, MS, true));
    }
    batch.push(conn(t(11), "127.0.0.1:443", S + 9 * MS, MS, true));
    let source = script(&log, vec![batch], vec![], true);
    let model = Rc::new(RefCell::new(None));
    let sink = Probe {
        log: log.clone(),
        model: model.clone(),
        recording: Some(path.clone()),
    };
    let filter = Filter::new(Some(10), None, Some(80), None, None);
    run(source, sink, &path, filter).await;
    let m = model.borrow_mut().take().unwrap();
    let pids: Vec<u32> = m.processes.iter().map(|p| p.pid).collect();
    assert_eq!(pids, [10]);
    assert_eq!(m.processes[0].stats.new_total, 2);
    let recorded = Reader::open(&path)
        .unwrap()
        .filter(|i| matches!(i, Ok(Input::Event(_))))
        .count();
    assert_eq!(recorded, 5);
}
