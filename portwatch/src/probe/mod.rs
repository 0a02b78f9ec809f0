//! The only code that touches aya or needs root: preflight checks, loading
//! and attaching the eBPF programs, draining the ring buffer, and reading
//! the kernel-side loss counters.

pub mod btf;
pub mod checks;
pub mod stackids;
pub mod tracefs;

use std::time::Duration;

use anyhow::{Context, Result, bail};
use aya::maps::{MapData, PerCpuArray, RingBuf, StackTraceMap};
use aya::programs::TracePoint;
use aya::{Ebpf, EbpfLoader};
use portwatch_common::{
    EVENTS_MAP, OFFSET_UNKNOWN, OFFSETS_GLOBAL, Offsets, SOCKS_INBOUND_MAX_GLOBAL,
    STACK_SAMPLE_GLOBAL, STACKS_MAP, STAT_CONNECT_MAP_FULL, STAT_PROBE_ERRORS, STAT_RINGBUF_LOST,
    STAT_SOCK_EVICTED, STATS_MAP, tp,
};
use std::sync::atomic::{AtomicU32, Ordering};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::event::{Event, Losses, StackSample};
use crate::system::symbols::RawStack;

/// Default `--stack-sample`: one active open in this many captures its user
/// stack. A flagged pair opens at least a few connections per second, so
/// its call sites show within seconds to a minute, while the stack walk
/// (~1-2 µs) is paid by 1/64 of connections: a few tens of ns each on
/// average (README "What portwatch costs").
pub const DEFAULT_STACK_SAMPLE: u32 = 64;

/// The sampling period the next `Probe::load` uses (0: no stacks). A
/// process-wide setting so the commands set it once from their flags.
static STACK_SAMPLE_EVERY: AtomicU32 = AtomicU32::new(DEFAULT_STACK_SAMPLE);

/// The stack sampling period probes are loaded with.
pub fn stack_sample() -> u32 {
    STACK_SAMPLE_EVERY.load(Ordering::Relaxed)
}

/// Sets the stack sampling period for probes loaded from now on.
pub fn set_stack_sample(every: u32) {
    STACK_SAMPLE_EVERY.store(every, Ordering::Relaxed);
}
use checks::{Finding, Status};

/// The eBPF object built by build.rs, embedded so the binary is self-contained.
/// Aligned because the ELF parser reads it in place.
static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/portwatch.bpf.o"));

/// How often the ring buffer is drained when the kernel did not wake us.
/// Producers submit without wake-ups (see portwatch-ebpf), so this bounds
/// the delay of an event on a quiet host.
pub const DRAIN_INTERVAL: Duration = Duration::from_millis(10);

/// Checks what loading needs and says precisely what is missing.
pub fn preflight() -> Result<()> {
    let mut findings = Vec::new();
    preflight_into(&mut findings)
}

/// [`preflight`], recording each finding (kernel, privileges).
fn preflight_into(findings: &mut Vec<Finding>) -> Result<()> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    findings.push(checks::kernel(release.trim()));
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    findings.push(checks::privileges(checks::effective_caps(&status)));
    if let Some(f) = findings.iter().find(|f| f.status == Status::Fatal) {
        bail!("{}; {}", f.detail, f.fix.as_deref().unwrap_or(""));
    }
    Ok(())
}

pub use checks::parse_kernel_version;

/// How many kernel offsets [`resolve_offsets`] looks up.
pub const OFFSETS_WANTED: usize = 16;

fn resolved(o: &Offsets) -> usize {
    [
        o.tcp_bytes_acked,
        o.tcp_bytes_received,
        o.sock_sk_err,
        o.sock_net,
        o.net_inum,
        o.task_nsproxy,
        o.nsproxy_net_ns,
        o.task_group_leader,
        o.task_comm,
        o.task_files,
        o.files_fdt,
        o.fdtable_fd,
        o.file_private_data,
        o.socket_type,
        o.socket_sk,
        o.sock_protocol,
    ]
    .iter()
    .filter(|&&v| v != OFFSET_UNKNOWN)
    .count()
}

/// Resolves the kernel struct offsets the programs need from vmlinux BTF.
/// Without BTF the programs still run; they report no bytes, no socket
/// error and no network namespace.
pub fn resolve_offsets() -> (Offsets, Vec<String>) {
    let mut o = Offsets::UNKNOWN;
    let mut warnings = Vec::new();
    let read = if checks::simulated("no-btf") {
        Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "hidden by PORTWATCH_SIMULATE=no-btf",
        ))
    } else {
        std::fs::read("/sys/kernel/btf/vmlinux")
    };
    let data = match read {
        Ok(d) => d,
        Err(e) => {
            warnings.push(format!(
                "no kernel BTF (/sys/kernel/btf/vmlinux: {e}): bytes sent/received, \
                 handshake socket errors and network namespaces will not be reported"
            ));
            return (o, warnings);
        }
    };
    let btf = match btf::Btf::parse(&data) {
        Ok(b) => b,
        Err(e) => {
            warnings.push(format!("cannot parse kernel BTF: {e}"));
            return (o, warnings);
        }
    };
    let mut get = |ty: &str, path: &str| match btf.offset_of(ty, path) {
        Ok(v) => v,
        Err(e) => {
            warnings.push(format!("BTF: {e}"));
            OFFSET_UNKNOWN
        }
    };
    o.tcp_bytes_acked = get("tcp_sock", "bytes_acked");
    o.tcp_bytes_received = get("tcp_sock", "bytes_received");
    o.sock_sk_err = get("sock", "sk_err");
    o.sock_net = get("sock", "__sk_common.skc_net");
    o.net_inum = get("net", "ns.inum");
    o.task_nsproxy = get("task_struct", "nsproxy");
    o.nsproxy_net_ns = get("nsproxy", "net_ns");
    o.task_group_leader = get("task_struct", "group_leader");
    o.task_comm = get("task_struct", "comm");
    o.task_files = get("task_struct", "files");
    o.files_fdt = get("files_struct", "fdt");
    o.fdtable_fd = get("fdtable", "fd");
    o.file_private_data = get("file", "private_data");
    o.socket_type = get("socket", "type");
    o.socket_sk = get("socket", "sk");
    o.sock_protocol = get("sock", "sk_protocol");
    (o, warnings)
}

/// Cumulative cost of one eBPF program (kernel statistics).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramStats {
    pub program: String,
    pub run_time_ns: u64,
    pub run_count: u64,
}

/// Loaded and attached programs plus the maps userspace reads. Dropping it
/// detaches every program.
pub struct Probe {
    ring: AsyncFd<RingBuf<MapData>>,
    stats: PerCpuArray<MapData, u64>,
    // Kept alive: dropping it closes the log map (see shared/toolchain.md).
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    _ebpf: Ebpf,
    decode_errors: u64,
    /// Sampled connect() user stacks (`STACKS`).
    stacks: StackTraceMap<MapData>,
    /// Stack ids read from `stacks`, deleted once unused.
    stack_ids: stackids::StackIds,
    stack_samples: Vec<RawStack>,
    /// fdinfo paths of the loaded programs, for their `recursion_misses`.
    prog_fdinfo: Vec<std::path::PathBuf>,
    /// Warnings worth showing the user once (missing BTF, tracepoints).
    pub warnings: Vec<String>,
}

impl Probe {
    /// Checks the host, loads and attaches. Must run inside a tokio runtime.
    pub fn load() -> Result<Probe> {
        Probe::load_reporting(&mut Vec::new())
    }

    /// [`Probe::load`], recording a [`Finding`] for everything it checks or
    /// does, up to the first fatal one (which is also the error returned).
    pub fn load_reporting(findings: &mut Vec<Finding>) -> Result<Probe> {
        preflight_into(findings)?;
        let tracefs = match tracefs::ensure_mounted() {
            Ok(p) => {
                findings.push(Finding::ok("tracefs", format!("at {}", p.display())));
                p
            }
            Err(e) => {
                findings.push(Finding::fatal(
                    "tracefs",
                    format!("{e:#}"),
                    "mount -t tracefs tracefs /sys/kernel/tracing",
                ));
                return Err(e);
            }
        };
        let layouts = match tracefs::check_layouts(&tracefs, tp::EXPECTED) {
            Ok(l) => l,
            Err(e) => {
                findings.push(Finding::fatal(
                    "tracepoint layouts",
                    format!("{e:#}"),
                    "report this kernel version to portwatch: its tracepoint records differ",
                ));
                return Err(e);
            }
        };
        let mut layouts = layouts;
        if checks::simulated("retransmit-layout-differs") {
            layouts.mismatched.push((
                "tcp/tcp_retransmit_skb".to_string(),
                "tcp/tcp_retransmit_skb.state: hidden by PORTWATCH_SIMULATE".to_string(),
            ));
        }
        // A tracepoint whose layout differs is not attached, as if missing.
        let mut missing: Vec<String> = layouts.unusable().map(str::to_string).collect();
        if checks::simulated("no-syscall-tracepoints") {
            for tp in [
                "syscalls/sys_enter_connect",
                "syscalls/sys_exit_connect",
                "syscalls/sys_enter_bind",
                "syscalls/sys_exit_bind",
            ] {
                if !missing.iter().any(|m| m == tp) {
                    missing.push(tp.to_string());
                }
            }
        }
        let mut names: Vec<&str> = tp::EXPECTED.iter().map(|e| e.0).collect();
        names.dedup();
        for name in names {
            if let Some((_, why)) = layouts.mismatched.iter().find(|(t, _)| t == name) {
                findings.push(checks::tracepoint_layout_differs(name, why));
                continue;
            }
            findings.push(checks::tracepoint(name, !missing.iter().any(|m| m == name)));
        }
        if missing.iter().any(|m| m.starts_with("sock/")) {
            bail!(
                "the kernel has no tracepoint sock:inet_sock_set_state (needs Linux 4.16+ \
                 with CONFIG_TRACEPOINTS)"
            );
        }
        let (offsets, mut warnings) = resolve_offsets();
        for (tp, why) in &layouts.mismatched {
            warnings.push(format!(
                "tracepoint {} has a record layout portwatch was not built for ({why}): \
                 not attached, so {}",
                tp.replace('/', ":"),
                checks::what_it_gives(tp)
            ));
        }
        findings.push(checks::btf(resolved(&offsets), OFFSETS_WANTED, &warnings));
        let syscalls_ok = !missing.iter().any(|m| m.starts_with("syscalls/"));
        let retrans_ok = !missing.iter().any(|m| m.starts_with("tcp/"));
        let mismatched = |tp: &str| layouts.mismatched.iter().any(|(t, _)| t == tp);
        if !retrans_ok && !mismatched("tcp/tcp_retransmit_skb") {
            warnings.push(
                "tracepoint tcp:tcp_retransmit_skb is missing: SYN retransmissions are not counted"
                    .to_string(),
            );
        }
        let absent: Vec<&str> = missing
            .iter()
            .map(String::as_str)
            .filter(|m| m.starts_with("syscalls/") && !mismatched(m))
            .collect();
        if !absent.is_empty() {
            warnings.push(format!(
                "tracepoints {} are missing (CONFIG_FTRACE_SYSCALLS): failed connect() and bind() calls \
                 are reported only when they are port exhaustion or failed handshakes",
                absent.join(", ")
            ));
        }

        let mut attached = Vec::new();
        let mut prog_fdinfo: Vec<std::path::PathBuf> = Vec::new();
        let loaded = (|| -> Result<(Ebpf, Option<aya_log::EbpfLogger<&'static dyn log::Log>>)> {
            let mut loader = EbpfLoader::new();
            loader.override_global(OFFSETS_GLOBAL, &offsets, true);
            let every = STACK_SAMPLE_EVERY.load(Ordering::Relaxed);
            loader.override_global(STACK_SAMPLE_GLOBAL, &every, true);
            let socks_entries =
                test_sock_map_entries().unwrap_or(portwatch_common::SOCKS_MAX_ENTRIES);
            if socks_entries != portwatch_common::SOCKS_MAX_ENTRIES {
                loader.map_max_entries(portwatch_common::SOCKS_MAP, socks_entries);
            }
            // Inbound sockets get half the socket map; the other half is
            // kept for outbound ones (a busy server must not crowd them out).
            let inbound_max: u32 = socks_entries / 2;
            loader.override_global(SOCKS_INBOUND_MAX_GLOBAL, &inbound_max, true);
            let mut ebpf = loader
                .load(EBPF_OBJECT)
                .context("loading the eBPF object into the kernel")?;
            let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
                Ok(l) => Some(l),
                Err(e) => {
                    log::debug!("eBPF logger not initialised: {e}");
                    None
                }
            };
            let mut attach = |prog: &str, category: &str, name: &str| -> Result<()> {
                let p: &mut TracePoint = ebpf
                    .program_mut(prog)
                    .with_context(|| format!("program {prog} missing from the object"))?
                    .try_into()?;
                p.load()
                    .with_context(|| format!("the kernel verifier rejected program {prog}"))?;
                p.attach(category, name)
                    .with_context(|| format!("attaching to tracepoint {category}:{name}"))?;
                let fd = std::os::fd::AsRawFd::as_raw_fd(&std::os::fd::AsFd::as_fd(p.fd()?));
                prog_fdinfo.push(format!("/proc/self/fdinfo/{fd}").into());
                attached.push(format!("{category}:{name}"));
                Ok(())
            };
            attach("inet_sock_set_state", "sock", "inet_sock_set_state")?;
            if syscalls_ok {
                attach("sys_enter_connect", "syscalls", "sys_enter_connect")?;
                attach("sys_exit_connect", "syscalls", "sys_exit_connect")?;
                attach("sys_enter_bind", "syscalls", "sys_enter_bind")?;
                attach("sys_exit_bind", "syscalls", "sys_exit_bind")?;
            }
            if retrans_ok {
                attach("tcp_retransmit_skb", "tcp", "tcp_retransmit_skb")?;
            }
            Ok((ebpf, logger))
        })();
        let (mut ebpf, logger) = match loaded {
            Ok(l) => l,
            Err(e) => {
                findings.push(Finding::fatal(
                    "load and attach",
                    format!("{e:#}"),
                    "check `dmesg` and the kernel's BPF settings (kernel.unprivileged_bpf_disabled \
                     does not matter as root; lockdown=confidentiality forbids it)",
                ));
                return Err(e);
            }
        };
        findings.push(Finding::ok(
            "load and attach",
            format!(
                "eBPF programs verified, loaded and attached to {}",
                attached.join(", ")
            ),
        ));
        let ring = RingBuf::try_from(
            ebpf.take_map(EVENTS_MAP)
                .context("ring buffer map missing")?,
        )?;
        let stats = PerCpuArray::try_from(ebpf.take_map(STATS_MAP).context("stats map missing")?)?;
        let stacks = StackTraceMap::try_from(
            ebpf.take_map(STACKS_MAP)
                .context("stack trace map missing")?,
        )?;
        Ok(Probe {
            // SAFETY: the RingBuf owns its map fd and keeps it open, unchanged,
            // for as long as it lives, which is as long as the AsyncFd.
            ring: unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
                .map_err(|e| anyhow::anyhow!("registering the ring buffer fd: {e}"))?,
            stats,
            logger,
            _ebpf: ebpf,
            decode_errors: 0,
            stacks,
            stack_ids: Default::default(),
            stack_samples: Vec::new(),
            prog_fdinfo,
            warnings,
        })
    }

    /// Waits until the kernel wakes us or `DRAIN_INTERVAL` passes, whichever
    /// comes first. Cancel-safe.
    pub async fn wait(&mut self) {
        tokio::select! {
            guard = self.ring.readable_mut() => {
                if let Ok(mut g) = guard {
                    g.clear_ready();
                }
            }
            _ = tokio::time::sleep(DRAIN_INTERVAL) => {}
        }
    }

    /// Hands every pending record to `f`; returns how many were read.
    /// Stack samples are kept aside with their addresses (see
    /// [`Probe::take_stacks`]).
    pub fn drain(&mut self, mut f: impl FnMut(Event)) -> usize {
        if let Some(l) = self.logger.as_mut() {
            l.flush();
        }
        let ring = self.ring.get_mut();
        let mut n = 0;
        while let Some(item) = ring.next() {
            n += 1;
            match StackSample::decode(&item) {
                Some(Ok(sample)) => {
                    let ips = match sample.stack_id {
                        Ok(id) => {
                            let stacks = &self.stacks;
                            self.stack_ids.ips(id, |id| {
                                stacks
                                    .get(&id, 0)
                                    .map(|t| t.frames().iter().map(|f| f.ip).collect())
                                    // No id in the text: frameless samples are
                                    // told apart by their note.
                                    .map_err(|e| format!("stack not readable: {e}"))
                            })
                        }
                        Err(e) => Err(format!(
                            "the kernel could not capture the stack (bpf_get_stackid: {})",
                            std::io::Error::from_raw_os_error(-e)
                        )),
                    };
                    self.stack_samples.push(RawStack { sample, ips });
                    continue;
                }
                Some(Err(e)) => {
                    self.decode_errors += 1;
                    log::warn!("undecodable stack sample: {e}");
                    continue;
                }
                None => {}
            }
            match Event::decode(&item) {
                Ok(ev) => f(ev),
                Err(e) => {
                    self.decode_errors += 1;
                    log::warn!("undecodable event: {e}");
                }
            }
        }
        // Ids stay while their stack keeps being sampled (no syscall per
        // drain); unused ones are deleted (see `stackids`). A sample of a
        // stack submitted just before its id was deleted finds it gone at
        // the next drain; that sample says so.
        let stacks = &mut self.stacks;
        self.stack_ids
            .end_drain(crate::clock::monotonic_now_ns(), |id| {
                let _ = stacks.remove(&id);
            });
        n
    }

    /// Stack samples read by the drains since the last call.
    pub fn take_stacks(&mut self) -> Vec<RawStack> {
        std::mem::take(&mut self.stack_samples)
    }

    /// Run time and run count per attached program, from the kernel's
    /// per-program statistics. They only advance while
    /// `kernel.bpf_stats_enabled` is 1 (off by default: it costs a little
    /// on every run), so `None` when it is off.
    pub fn program_stats(&self) -> Option<Vec<ProgramStats>> {
        let enabled = std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled")
            .is_ok_and(|v| v.trim() == "1");
        if !enabled {
            return None;
        }
        let stats = self
            ._ebpf
            .programs()
            .filter_map(|(name, p)| {
                let info = p.info().ok()?;
                Some(ProgramStats {
                    program: name.to_string(),
                    run_time_ns: info.run_time().as_nanos() as u64,
                    run_count: info.run_count(),
                })
            })
            .collect();
        Some(stats)
    }

    /// Kernel-side loss counters, summed over CPUs.
    pub fn losses(&self) -> Losses {
        let sum =
            |idx: u32| -> u64 { self.stats.get(&idx, 0).map(|v| v.iter().sum()).unwrap_or(0) };
        Losses {
            ringbuf_lost: sum(STAT_RINGBUF_LOST),
            sock_evicted: sum(STAT_SOCK_EVICTED),
            connect_untracked: sum(STAT_CONNECT_MAP_FULL),
            decode_errors: self.decode_errors,
            probe_errors: sum(STAT_PROBE_ERRORS),
            kernel_missed: self.prog_fdinfo.iter().map(|p| recursion_misses(p)).sum(),
        }
    }
}

/// Test-only: `PORTWATCH_TEST_SOCK_MAP_ENTRIES` sizes the socket map down
/// so the fault suite can fill it with a few thousand connections instead
/// of 65,536. Not documented for users: a smaller map only loses more.
fn test_sock_map_entries() -> Option<u32> {
    std::env::var("PORTWATCH_TEST_SOCK_MAP_ENTRIES")
        .ok()?
        .parse()
        .ok()
        .filter(|&n| n > 0)
}

/// A program's `recursion_misses` from its fdinfo: runs the kernel skipped
/// because a BPF program was already running on that CPU (a tracepoint hit
/// in a softirq that interrupted one of ours). Each may have cost an event,
/// so they are counted with the losses. 0 where the kernel does not say.
fn recursion_misses(fdinfo: &std::path::Path) -> u64 {
    std::fs::read_to_string(fdinfo)
        .ok()
        .as_deref()
        .and_then(parse_recursion_misses)
        .unwrap_or(0)
}

fn parse_recursion_misses(fdinfo: &str) -> Option<u64> {
    fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("recursion_misses:"))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_recursion_misses_from_fdinfo() {
        let text = "prog_type:\t5\nrun_cnt:\t13759\nrecursion_misses:\t2\nverified_insns:\t1321\n";
        assert_eq!(parse_recursion_misses(text), Some(2));
        assert_eq!(parse_recursion_misses("prog_type:\t5\n"), None);
    }
}
