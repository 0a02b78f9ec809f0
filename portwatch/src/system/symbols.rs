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
//! Its cost is bounded in two ways, so that sampling stays cheap whatever
//! the clients do. Samples go to the thread in batches at most every
//! [`SEND_EVERY`] rather than at every 10 ms drain: waking a thread costs
//! tens of µs of CPU on a small VM, more than naming a cached stack. And a
//! process gets at most [`NEW_PER_PID_PER_S`] symbolizations of stacks not
//! in the cache per second of samples: a client without frame pointers, or
//! a JIT, can hand the kernel's walk a different chain at every call, and
//! each would cost a `/proc/PID/maps` read and lookups in its binaries.
//! Samples beyond the budget, or dropped because the thread was behind, are
//! still counted: they arrive as call stacks without frames whose note says
//! why, so the shares of the other call sites stay true.
//!
//! Hand-written only where blazesym has no notion: turning its symbols into
//! one line per frame, and saying what is known for interpreters and JITs.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use blazesym::symbolize::{self, Symbolized, Symbolizer};

use crate::event::StackSample;
use crate::input::{CallStack, MAX_STACK_FRAMES};
use crate::system::worker;

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
/// Samples wait in intake at most this long before the worker gets them
/// (call sites are drawn every 0.5 s or more; one wake-up per batch).
pub const SEND_EVERY: Duration = Duration::from_millis(250);
/// ... or until this many wait.
pub const SEND_AT: usize = 1024;
/// New (uncached) stacks symbolized per process per second of samples.
pub const NEW_PER_PID_PER_S: u32 = 16;
/// Processes whose budget is tracked at once; cleared when full.
const BUDGET_PIDS: usize = 4096;

pub struct Worker {
    thread: worker::Worker<Vec<RawStack>, CallStack>,
    /// Samples not yet handed to the thread, and when it last got some.
    pending: Vec<RawStack>,
    sent_at: Instant,
    /// Samples the thread could not take (queue full), as frameless stacks.
    behind: Vec<CallStack>,
}

impl Worker {
    pub fn spawn() -> std::io::Result<Worker> {
        let thread = worker::Worker::spawn("portwatch-symbols", Some(QUEUE_BATCHES), || {
            let mut s = Names::new();
            move |batch: Vec<RawStack>, out: &worker::Answers<CallStack>| {
                for raw in batch {
                    out.send(s.call_stack(&raw))?;
                }
                Ok(())
            }
        })?;
        Ok(Worker {
            thread,
            pending: Vec::new(),
            sent_at: Instant::now(),
            behind: Vec::new(),
        })
    }

    /// Queues samples for symbolization; never blocks. They reach the
    /// thread in one batch per [`SEND_EVERY`] (or [`SEND_AT`] samples).
    pub fn send(&mut self, mut batch: Vec<RawStack>) {
        if batch.is_empty() {
            return;
        }
        self.pending.append(&mut batch);
        if self.pending.len() >= SEND_AT || self.sent_at.elapsed() >= SEND_EVERY {
            self.flush();
        }
    }

    fn flush(&mut self) {
        self.sent_at = Instant::now();
        if self.pending.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.pending);
        if let Err(worker::Refused(batch)) = self.thread.send(batch) {
            self.not_symbolized(&batch, "not symbolized: the symbolizer thread was behind");
        }
    }

    /// Samples the thread could not take, kept as frameless call sites.
    fn not_symbolized(&mut self, batch: &[RawStack], why: &str) {
        self.behind
            .extend(batch.iter().map(|r| unnamed(r, Vec::new(), why.into())));
    }

    /// The stacks symbolized so far; never blocks.
    pub fn try_recv(&mut self) -> Vec<CallStack> {
        let mut out = std::mem::take(&mut self.behind);
        out.extend(self.thread.try_recv());
        out
    }

    /// Waits for everything queued (at the end of a run, so the last
    /// samples reach the recording).
    pub fn finish(&mut self) -> Vec<CallStack> {
        if !self.pending.is_empty() {
            // Waiting: the run is over and these are its last samples.
            let batch = std::mem::take(&mut self.pending);
            if let Err(worker::Refused(batch)) = self.thread.send_waiting(batch) {
                self.not_symbolized(&batch, "not symbolized: the symbolizer thread stopped");
            }
        }
        let done = self.thread.finish();
        let mut out = std::mem::take(&mut self.behind);
        out.extend(done);
        out
    }
}

/// A sample's call stack with the given frames and note.
fn unnamed(raw: &RawStack, frames: Vec<String>, note: String) -> CallStack {
    call_stack(raw, frames, Some(note))
}

/// The call stack of a sample: who connected where, with these frames.
fn call_stack(raw: &RawStack, frames: Vec<String>, note: Option<String>) -> CallStack {
    let s = &raw.sample;
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

/// Frames and note of one symbolized stack.
type Named = (Vec<String>, Option<String>);

/// The symbolizer and its cache (the worker thread's state).
struct Names {
    symbolizer: Symbolizer,
    cache: HashMap<(u32, Vec<u64>), Named>,
    /// Per pid: the second of sample time (`ts_ns / 1e9`) and the new
    /// stacks symbolized in it.
    budget: HashMap<u32, (u64, u32)>,
}

impl Names {
    fn new() -> Names {
        // No separate debug files (`/usr/lib/debug`): glibc's alone (from
        // libc6-dbg) cost ~45 ms of CPU and +15 MiB of memory to load on
        // this project's VM, for names of libc's own frames; a binary's own
        // symbols and DWARF still name the program's frames.
        let no_dirs: &[&std::path::Path] = &[];
        Names {
            symbolizer: Symbolizer::builder().set_debug_dirs(Some(no_dirs)).build(),
            cache: HashMap::new(),
            budget: HashMap::new(),
        }
    }

    /// Takes one new symbolization from `pid`'s budget for the second of
    /// `ts_ns`; false when that second's budget is spent.
    fn within_budget(&mut self, pid: u32, ts_ns: u64) -> bool {
        let second = ts_ns / 1_000_000_000;
        if self.budget.len() >= BUDGET_PIDS && !self.budget.contains_key(&pid) {
            self.budget.clear();
        }
        let b = self.budget.entry(pid).or_insert((second, 0));
        if b.0 != second {
            *b = (second, 0);
        }
        if b.1 >= NEW_PER_PID_PER_S {
            return false;
        }
        b.1 += 1;
        true
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
                if let Some(v) = self.cache.get(&key) {
                    v.clone()
                } else if !self.within_budget(s.task.pid, s.ts_ns) {
                    (
                        Vec::new(),
                        Some(format!(
                            "not symbolized: more than {NEW_PER_PID_PER_S} new stacks a second \
                             from this process (a stack that differs at every call: code \
                             without frame pointers?)"
                        )),
                    )
                } else {
                    let v = self.symbolize(s.task.pid, &key.1);
                    if self.cache.len() >= CACHE_ENTRIES {
                        self.cache.clear();
                    }
                    self.cache.insert(key, v.clone());
                    v
                }
            }
        };
        call_stack(raw, frames, note)
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
        let mut named = Vec::with_capacity(ips.len());
        let mut frames: Vec<String> = syms
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
                    named.push(true);
                    frame_text(&s.name, place.as_deref())
                }
                Symbolized::Unknown(_) => {
                    named.push(false);
                    format!("{ip:#x}")
                }
            })
            .collect();
        let left_out = trim_outer_unnamed(&mut frames, &named);
        let unknown = named[..frames.len()].iter().filter(|n| !**n).count();
        let note = runtime_note(pid, &modules, unknown);
        let note = match (note, left_out) {
            (note, 0) => note,
            (note, n) => {
                let trimmed = format!(
                    "{n} outer frame(s) without symbols left out (a library's thread or \
                     process start, or past the end of the frame-pointer chain)"
                );
                Some(match note {
                    Some(note) => format!("{note}; {trimmed}"),
                    None => trimmed,
                })
            }
        };
        (frames, note)
    }
}

/// Drops the unnamed frames past the outermost named one; returns how many.
/// They are a library's thread or process start (`start_thread`,
/// `__libc_start_call_main`: named only by separate debug files, not read)
/// or what a frame-pointer walk read past the chain's end. As raw
/// addresses they differ between processes (ASLR) and would split one call
/// site into one per process. A stack with no named frame is kept whole.
pub fn trim_outer_unnamed(frames: &mut Vec<String>, named: &[bool]) -> usize {
    let Some(last) = named.iter().rposition(|n| *n) else {
        return 0;
    };
    let n = frames.len().saturating_sub(last + 1);
    frames.truncate(last + 1);
    n
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
    fn unnamed_frames_past_the_outermost_named_one_are_left_out() {
        let mut frames = vec![
            "connect".into(),
            "0x7f01".into(),
            "main".into(),
            "0x7f02".into(),
        ];
        let n = trim_outer_unnamed(&mut frames, &[true, false, true, false]);
        assert_eq!(n, 1);
        assert_eq!(frames, vec!["connect", "0x7f01", "main"]);
        // Nothing named (JIT code without a perf map): kept as it is.
        let mut frames = vec!["0x1".to_string(), "0x2".to_string()];
        assert_eq!(trim_outer_unnamed(&mut frames, &[false, false]), 0);
        assert_eq!(frames.len(), 2);
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

    /// A sample of a process that does not exist, at `ts_ns`.
    fn sample(ts_ns: u64, ips: Vec<u64>) -> RawStack {
        RawStack {
            sample: StackSample {
                ts_ns,
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
            ips: Ok(ips),
        }
    }

    #[test]
    fn a_process_gets_a_budget_of_new_stacks_per_second() {
        let mut names = Names::new();
        let second = 1_000_000_000;
        let n = NEW_PER_PID_PER_S as u64;
        // Stacks that differ at every call (as without frame pointers).
        let named: Vec<CallStack> = (0..n + 3)
            .map(|i| names.call_stack(&sample(5 * second + i, vec![0x401000 + i])))
            .collect();
        for cs in &named[..n as usize] {
            assert_eq!(cs.frames.len(), 1, "{cs:?}");
        }
        for cs in &named[n as usize..] {
            assert!(cs.frames.is_empty(), "{cs:?}");
            let note = cs.note.as_deref().unwrap();
            assert!(
                note.starts_with("not symbolized: more than 16 new"),
                "{note}"
            );
        }
        // A stack already named costs no budget; the next second has one.
        let again = names.call_stack(&sample(5 * second + n, vec![0x401000]));
        assert_eq!(again.frames, vec!["0x401000"]);
        let next = names.call_stack(&sample(6 * second, vec![0x409000]));
        assert_eq!(next.frames, vec!["0x409000"]);
    }

    #[test]
    fn the_worker_names_every_sample_it_was_sent() {
        let mut w = Worker::spawn().unwrap();
        let mut named = Vec::new();
        // A full batch goes at once; the rest waits for `finish`.
        for i in 0..SEND_AT as u64 + 5 {
            w.send(vec![sample(i, vec![0x401000])]);
            named.extend(w.try_recv());
        }
        named.extend(w.finish());
        assert_eq!(named.len(), SEND_AT + 5);
        assert!(named.iter().all(|cs| cs.frames == vec!["0x401000"]));
    }

    #[test]
    fn a_vanished_process_gives_raw_addresses_and_a_reason() {
        let mut names = Names::new();
        let raw = sample(1, vec![0x401000, 0x402000, 0]);
        let cs = names.call_stack(&raw);
        assert_eq!(cs.frames, vec!["0x401000", "0x402000"]);
        let note = cs.note.unwrap();
        assert!(
            note.contains("999999999") && note.contains("raw addresses"),
            "{note}"
        );
    }
}
