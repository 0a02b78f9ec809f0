//! Symbolization of sampled connect() stacks, on a thread of its own.
//!
//! The probe hands over raw user addresses with the task that connected
//! ([`RawStack`]); this worker names them with `blazesym` (ELF symbols,
//! DWARF where present, the runtime's `/tmp/perf-PID.map` for JITs), reading
//! `/proc/PID/maps` and the mapped binaries, and sends back
//! [`CallStack`]s. Intake never waits for it: `send` and `try_recv` never
//! block, and a full queue drops the batch (counted). blazesym caches each
//! binary it parsed (keyed by the file behind `/proc/PID/map_files`, so by
//! build, not by pid); on top of that a (pid, addresses) cache skips the
//! `/proc/PID/maps` read for the stack a process repeats.
//!
//! Hand-written only where blazesym has no notion: turning its symbols into
//! one line per frame, and saying what is known for interpreters and JITs.

use std::collections::HashMap;
use std::sync::mpsc;
use std::thread::JoinHandle;

use blazesym::symbolize::{self, Symbolized, Symbolizer};

use crate::event::StackSample;
use crate::input::{CallStack, MAX_STACK_FRAMES};

/// A sampled stack as the probe read it: user addresses, innermost first,
/// or why there are none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawStack {
    pub sample: StackSample,
    pub ips: Result<Vec<u64>, String>,
}

/// Batches waiting for the worker; beyond this the newest is dropped.
const QUEUE_BATCHES: usize = 256;
/// Symbolized stacks remembered per (pid, addresses); cleared when full.
const CACHE_ENTRIES: usize = 4096;

pub struct Worker {
    tx: Option<mpsc::SyncSender<Vec<RawStack>>>,
    rx: mpsc::Receiver<CallStack>,
    handle: Option<JoinHandle<()>>,
    /// Samples dropped because the worker was behind.
    pub dropped: u64,
}

impl Worker {
    pub fn spawn() -> std::io::Result<Worker> {
        let (tx, in_rx) = mpsc::sync_channel::<Vec<RawStack>>(QUEUE_BATCHES);
        let (out_tx, rx) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("portwatch-symbols".into())
            .spawn(move || {
                let mut s = Names::new();
                for batch in in_rx {
                    for raw in batch {
                        if out_tx.send(s.call_stack(&raw)).is_err() {
                            return;
                        }
                    }
                }
            })?;
        Ok(Worker {
            tx: Some(tx),
            rx,
            handle: Some(handle),
            dropped: 0,
        })
    }

    /// Queues samples for symbolization; never blocks.
    pub fn send(&mut self, batch: Vec<RawStack>) {
        if batch.is_empty() {
            return;
        }
        let n = batch.len() as u64;
        if let Some(tx) = &self.tx
            && tx.try_send(batch).is_err()
        {
            self.dropped += n;
        }
    }

    /// The stacks symbolized so far; never blocks.
    pub fn try_recv(&self) -> Vec<CallStack> {
        self.rx.try_iter().collect()
    }

    /// Waits for everything queued (at the end of a run, so the last
    /// samples reach the recording).
    pub fn finish(&mut self) -> Vec<CallStack> {
        self.tx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.try_recv()
    }
}

/// Frames and note of one symbolized stack.
type Named = (Vec<String>, Option<String>);

/// The symbolizer and its cache (the worker thread's state).
struct Names {
    symbolizer: Symbolizer,
    cache: HashMap<(u32, Vec<u64>), Named>,
}

impl Names {
    fn new() -> Names {
        Names {
            symbolizer: Symbolizer::new(),
            cache: HashMap::new(),
        }
    }

    fn call_stack(&mut self, raw: &RawStack) -> CallStack {
        let s = &raw.sample;
        let (frames, note) = match &raw.ips {
            Err(why) => (Vec::new(), Some(why.clone())),
            Ok(ips) => {
                let ips: Vec<u64> = ips
                    .iter()
                    .copied()
                    .filter(|&ip| ip != 0)
                    .take(MAX_STACK_FRAMES)
                    .collect();
                let key = (s.task.pid, ips);
                match self.cache.get(&key) {
                    Some(v) => v.clone(),
                    None => {
                        let v = self.symbolize(s.task.pid, &key.1);
                        if self.cache.len() >= CACHE_ENTRIES {
                            self.cache.clear();
                        }
                        self.cache.insert(key, v.clone());
                        v
                    }
                }
            }
        };
        CallStack {
            ts_ns: s.ts_ns,
            task: s.task,
            netns: s.netns,
            daddr: s.daddr,
            dport: s.dport,
            frames,
            note,
        }
    }

    fn symbolize(&self, pid: u32, ips: &[u64]) -> Named {
        let raw = || ips.iter().map(|ip| format!("{ip:#x}")).collect::<Vec<_>>();
        if ips.is_empty() {
            return (
                Vec::new(),
                Some("no user frames (a kernel thread, or no frame pointer to walk)".into()),
            );
        }
        let src = symbolize::source::Source::Process(symbolize::source::Process::new(pid.into()));
        let syms = match self
            .symbolizer
            .symbolize(&src, symbolize::Input::AbsAddr(ips))
        {
            Ok(s) => s,
            Err(e) => {
                let why = if std::path::Path::new(&format!("/proc/{pid}")).exists() {
                    format!("not symbolized ({e}): raw addresses")
                } else {
                    format!("process {pid} exited before its stack was symbolized: raw addresses")
                };
                return (raw(), Some(why));
            }
        };
        let mut modules: Vec<String> = Vec::new();
        let mut unknown = 0;
        let frames = syms
            .iter()
            .zip(ips)
            .map(|(sym, ip)| match sym {
                Symbolized::Sym(s) => {
                    if let Some(m) = &s.module {
                        modules.push(m.to_string_lossy().into_owned());
                    }
                    let place = s.code_info.as_ref().map(|c| {
                        let file = std::path::Path::new(&c.file)
                            .file_name()
                            .map(|f| f.to_string_lossy().into_owned())
                            .unwrap_or_default();
                        match c.line {
                            Some(l) => format!("{file}:{l}"),
                            None => file,
                        }
                    });
                    frame_text(&s.name, place.as_deref())
                }
                Symbolized::Unknown(_) => {
                    unknown += 1;
                    format!("{ip:#x}")
                }
            })
            .collect();
        (frames, runtime_note(pid, &modules, unknown))
    }
}

/// One frame as shown and folded: the function, and its file:line where
/// debug info gives it. Offsets are left out so that every connect() from
/// one line of code folds into one call site.
pub fn frame_text(function: &str, place: Option<&str>) -> String {
    match place {
        Some(p) if !p.is_empty() => format!("{function} ({p})"),
        _ => function.to_string(),
    }
}

/// What is known when the frames are a runtime's rather than the
/// program's: an interpreter's own functions (the script's lines are not
/// in the native stack), or JIT code without a perf map.
pub fn runtime_note(pid: u32, modules: &[String], unknown: usize) -> Option<String> {
    const INTERPRETERS: [(&str, &str); 5] = [
        ("libpython", "Python"),
        ("libjvm", "Java"),
        ("libruby", "Ruby"),
        ("/node", "Node.js"),
        ("libperl", "Perl"),
    ];
    for m in modules {
        if let Some((_, rt)) = INTERPRETERS.iter().find(|(k, _)| m.contains(k)) {
            let lib = std::path::Path::new(m)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            return Some(format!(
                "{rt} runtime ({lib} mapped): these are the interpreter's frames; the \
                 script's own call site is not in the native stack"
            ));
        }
    }
    if unknown > 0 {
        let map = format!("/tmp/perf-{pid}.map");
        return Some(if std::path::Path::new(&map).exists() {
            format!("{unknown} frame(s) not in any symbol table nor in {map}")
        } else {
            format!(
                "{unknown} frame(s) unnamed: no symbols, or JIT code without a {map} \
                 (e.g. node --perf-basic-prof, java -XX:+DumpPerfMapAtExit)"
            )
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_is_its_function_and_line_without_offset() {
        assert_eq!(
            frame_text("open_conn", Some("client.c:12")),
            "open_conn (client.c:12)"
        );
        assert_eq!(frame_text("open_conn", None), "open_conn");
    }

    #[test]
    fn an_interpreter_is_named_by_its_mapped_library() {
        let n = runtime_note(1, &["/usr/lib/libpython3.11.so.1.0".into()], 0).unwrap();
        assert!(
            n.starts_with("Python runtime (libpython3.11.so.1.0 mapped)"),
            "{n}"
        );
        assert_eq!(runtime_note(1, &["/usr/bin/client".into()], 0), None);
    }

    #[test]
    fn unnamed_frames_point_at_the_perf_map() {
        let n = runtime_note(999_999_999, &[], 2).unwrap();
        assert!(n.contains("/tmp/perf-999999999.map"), "{n}");
    }

    #[test]
    fn a_vanished_process_gives_raw_addresses_and_a_reason() {
        let mut names = Names::new();
        let raw = RawStack {
            sample: StackSample {
                ts_ns: 1,
                task: crate::event::Task {
                    pid: 999_999_999,
                    tid: 999_999_999,
                    comm: crate::event::Comm::new("gone"),
                    thread: crate::event::Comm::new("gone"),
                    cgroup_id: 0,
                },
                netns: 0,
                daddr: "127.0.0.1".parse().unwrap(),
                dport: 80,
                stack_id: Ok(1),
            },
            ips: Ok(vec![0x401000, 0x402000, 0]),
        };
        let cs = names.call_stack(&raw);
        assert_eq!(cs.frames, vec!["0x401000", "0x402000"]);
        let note = cs.note.unwrap();
        assert!(
            note.contains("999999999") && note.contains("raw addresses"),
            "{note}"
        );
    }
}
