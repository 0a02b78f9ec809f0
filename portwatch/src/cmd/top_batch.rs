//! `portwatch top --batch`: the live loop.
//!
//! One owner of state: probe events and collector readings become
//! [`Input`]s, the engine applies them, and every interval the model is
//! printed. The same Input stream is what the recorder will write, so a
//! replay computes the same snapshots.

use std::collections::HashSet;
use std::io::{self, BufWriter, Write};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::signal::unix::{SignalKind, signal};

use crate::cli::TopArgs;
use crate::clock::{WallClock, monotonic_now_ns};
use crate::engine::{Config, Engine, VerdictConfig};
use crate::filter::Filter;
use crate::input::Input;
use crate::probe::Probe;
use crate::render::batch;
use crate::system::cgroup::CgroupResolver;
use crate::system::{procfs, sockdiag};

pub fn run(args: TopArgs) -> Result<()> {
    if !args.batch {
        bail!("the TUI is not built yet; use --batch");
    }
    if !(args.interval.is_finite() && args.interval > 0.0) {
        bail!("--interval must be a positive number of seconds");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(top_batch(args))
}

pub fn engine_config(args: &TopArgs) -> Config {
    Config {
        verdict: VerdictConfig {
            min_new_per_s: args.verdict.min_new_per_s,
            max_lifetime_p50_ms: args.verdict.max_lifetime_ms,
            min_active_s: args.verdict.min_active_s,
        },
        ..Config::default()
    }
}

/// Collectors that feed the engine besides the probe.
struct Collectors {
    cgroups: Option<CgroupResolver>,
    known_cgroups: HashSet<u64>,
    netns: u32,
    warned_sockets: bool,
    warned_counters: bool,
}

impl Collectors {
    fn sockets(&mut self, engine: &mut Engine) {
        match sockdiag::read_socket_table(monotonic_now_ns(), self.netns) {
            Ok(t) => engine.apply(&Input::Sockets(t)),
            Err(e) if !self.warned_sockets => {
                self.warned_sockets = true;
                eprintln!(
                    "portwatch: warning: cannot read the socket table ({e}); held ports count \
                     only connections closed since start"
                );
            }
            Err(_) => {}
        }
    }

    fn counters(&mut self, engine: &mut Engine) {
        match procfs::read_counters(monotonic_now_ns()) {
            Ok(c) => engine.apply(&Input::Counters(c)),
            Err(e) if !self.warned_counters => {
                self.warned_counters = true;
                eprintln!("portwatch: warning: cannot read kernel TCP counters: {e}");
            }
            Err(_) => {}
        }
    }

    /// Tells the engine a cgroup's path before the first event from it.
    fn cgroup(&mut self, engine: &mut Engine, id: u64) {
        if !self.known_cgroups.insert(id) {
            return;
        }
        let path = self.cgroups.as_mut().and_then(|r| r.resolve(id));
        engine.apply(&Input::Cgroup { id, path });
    }
}

async fn top_batch(args: TopArgs) -> Result<()> {
    let mut probe = Probe::load()?;
    for w in &probe.warnings {
        eprintln!("portwatch: warning: {w}");
    }
    let clock = WallClock::now();
    let host = procfs::read_host(clock).context("reading host information and sysctls")?;
    let mut col = Collectors {
        cgroups: match CgroupResolver::new() {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("portwatch: warning: {e}");
                None
            }
        },
        known_cgroups: HashSet::new(),
        netns: host.netns,
        warned_sockets: false,
        warned_counters: false,
    };
    let filter = Filter::new(&args.filter);
    let mut engine = Engine::new(engine_config(&args));
    engine.apply(&Input::Host(host));
    // Start from the truth: what is held already, not zero.
    col.sockets(&mut engine);
    col.counters(&mut engine);

    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let interval = Duration::from_secs_f64(args.interval);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let resync_ns = (args.resync.max(0.5) * 1e9) as u64;
    let mut last_resync_ns = monotonic_now_ns();

    let mut out = BufWriter::new(io::stdout().lock());
    let mut printed = 0u64;
    eprintln!("portwatch: watching TCP connections (Ctrl-C to stop)");
    loop {
        tokio::select! {
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = probe.wait() => {
                probe.drain(|ev| {
                    if !filter.matches(&ev) {
                        return;
                    }
                    if let Some(t) = ev.task() {
                        col.cgroup(&mut engine, t.cgroup_id);
                    }
                    engine.apply(&Input::Event(ev));
                });
            }
            _ = ticker.tick() => {
                probe.drain(|ev| {
                    if !filter.matches(&ev) {
                        return;
                    }
                    if let Some(t) = ev.task() {
                        col.cgroup(&mut engine, t.cgroup_id);
                    }
                    engine.apply(&Input::Event(ev));
                });
                let now_ns = monotonic_now_ns();
                engine.apply(&Input::Losses { ts_ns: now_ns, losses: probe.losses() });
                col.counters(&mut engine);
                if now_ns.saturating_sub(last_resync_ns) >= resync_ns {
                    last_resync_ns = now_ns;
                    col.sockets(&mut engine);
                }
                engine.apply(&Input::Tick { now_ns });
                let model = engine.model(now_ns);
                let r = if args.json {
                    batch::write_json(&mut out, &model, args.interval, args.rows)
                } else {
                    batch::write_text(&mut out, &model, args.rows)
                };
                match r.and_then(|()| out.flush()) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
                    Err(e) => return Err(e).context("writing output"),
                }
                printed += 1;
                if args.iterations.is_some_and(|n| printed >= n) {
                    break;
                }
            }
        }
    }
    Ok(())
}
