//! What the probe needs from the host, as findings. `Probe::load` records
//! one per thing it checks or does (kernel, privileges, tracefs, each
//! tracepoint, BTF, loading and attaching), refuses to start on a fatal one
//! and carries on with a warning on a degraded one; `portwatch doctor`
//! prints them all. One list, so the doctor can never claim something the
//! probe does not do.

use serde::Serialize;

/// How a finding affects `portwatch top`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    /// portwatch runs, but some fields are `null` or some events missing.
    Degraded,
    /// portwatch cannot run.
    Fatal,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// What was checked, e.g. "tracepoint sock:inet_sock_set_state".
    pub check: String,
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do about it (for a status other than ok).
    pub fix: Option<String>,
    /// What is lost without it: fields that become `null`, events not seen.
    pub degrades: Vec<String>,
}

impl Finding {
    pub fn ok(check: impl Into<String>, detail: impl Into<String>) -> Finding {
        Finding {
            check: check.into(),
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
            degrades: Vec::new(),
        }
    }

    pub fn fatal(check: impl Into<String>, detail: impl Into<String>, fix: &str) -> Finding {
        Finding {
            check: check.into(),
            status: Status::Fatal,
            detail: detail.into(),
            fix: Some(fix.to_string()),
            degrades: Vec::new(),
        }
    }

    pub fn degraded(
        check: impl Into<String>,
        detail: impl Into<String>,
        fix: &str,
        degrades: &[&str],
    ) -> Finding {
        Finding {
            check: check.into(),
            status: Status::Degraded,
            detail: detail.into(),
            fix: Some(fix.to_string()),
            degrades: degrades.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// Faults a test can simulate on a healthy host, named in the environment
/// variable `PORTWATCH_SIMULATE` (comma-separated):
///
/// * `no-btf`: behave as if /sys/kernel/btf/vmlinux did not exist;
/// * `no-syscall-tracepoints`: behave as if `syscalls:sys_{enter,exit}_connect`
///   did not exist (a kernel without CONFIG_FTRACE_SYSCALLS).
///
/// Every command honours them (the probe is shared), so a test sees the
/// same degradation `top` would. Not for production use.
pub fn simulated(fault: &str) -> bool {
    std::env::var("PORTWATCH_SIMULATE").is_ok_and(|v| v.split(',').any(|f| f.trim() == fault))
}

/// Minimum kernel: BPF ring buffer (5.8).
pub const MIN_KERNEL: (u32, u32) = (5, 8);

pub fn parse_kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

/// The running kernel (`/proc/sys/kernel/osrelease`) against [`MIN_KERNEL`].
pub fn kernel(release: &str) -> Finding {
    const CHECK: &str = "kernel";
    match parse_kernel_version(release) {
        Some(v) if v < MIN_KERNEL => Finding::fatal(
            CHECK,
            format!(
                "kernel {release} is too old: portwatch needs Linux {}.{} or newer (BPF ring \
                 buffer)",
                MIN_KERNEL.0, MIN_KERNEL.1
            ),
            "run portwatch on a host with Linux 5.8 or newer",
        ),
        Some(_) => Finding::ok(
            CHECK,
            format!(
                "Linux {release} (BPF ring buffer needs {}.{}+)",
                MIN_KERNEL.0, MIN_KERNEL.1
            ),
        ),
        // Unknown format: let loading decide (it fails clearly if too old).
        None => Finding::ok(CHECK, format!("Linux {release} (version not parsed)")),
    }
}

pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_PERFMON: u32 = 38;
pub const CAP_BPF: u32 = 39;

/// Effective capabilities (`CapEff:` of /proc/self/status, hex).
pub fn effective_caps(status: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0)
}

/// Loading and attaching needs CAP_SYS_ADMIN, or CAP_BPF with CAP_PERFMON.
pub fn privileges(caps: u64) -> Finding {
    const CHECK: &str = "privileges";
    let has = |c: u32| caps & (1u64 << c) != 0;
    if has(CAP_SYS_ADMIN) {
        return Finding::ok(CHECK, "CAP_SYS_ADMIN (root)");
    }
    if has(CAP_BPF) && has(CAP_PERFMON) {
        return Finding::ok(CHECK, "CAP_BPF and CAP_PERFMON");
    }
    let missing: Vec<&str> = [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")]
        .iter()
        .filter(|(c, _)| !has(*c))
        .map(|(_, n)| *n)
        .collect();
    Finding::fatal(
        CHECK,
        format!(
            "portwatch needs root, or the capabilities CAP_BPF and CAP_PERFMON (missing: {})",
            missing.join(", ")
        ),
        "run it with sudo (or grant CAP_BPF and CAP_PERFMON)",
    )
}

/// `sock:inet_sock_set_state` is the heart of portwatch; the connect()
/// syscall tracepoints add every failed connect.
/// What is lost without the optional tracepoint `name` (for warnings).
pub fn what_it_gives(name: &str) -> &'static str {
    if name.starts_with("tcp/") {
        "SYN retransmissions are not counted"
    } else {
        "failed connect() and bind() calls are reported only when they are port exhaustion \
         or failed handshakes"
    }
}

/// An optional tracepoint exists but its record layout differs from the
/// one compiled in: it is left unattached (`why` says which field).
pub fn tracepoint_layout_differs(name: &str, why: &str) -> Finding {
    Finding::degraded(
        format!("tracepoint {}", name.replace('/', ":")),
        format!("record layout differs from the one portwatch was built for: {why}"),
        "report this kernel version to portwatch",
        &[what_it_gives(name)],
    )
}

pub fn tracepoint(name: &str, present: bool) -> Finding {
    let check = format!("tracepoint {}", name.replace('/', ":"));
    match (present, name.starts_with("sock/")) {
        (true, _) => Finding::ok(check, "present, record layout as compiled"),
        (false, _) if name.starts_with("tcp/") => Finding::degraded(
            check,
            "missing",
            "use a kernel with the tcp tracepoints (Linux 4.16+)",
            &["SYN retransmission counts"],
        ),
        (false, true) => Finding::fatal(
            check,
            "the kernel has no tracepoint sock:inet_sock_set_state (needs Linux 4.16+ with \
             CONFIG_TRACEPOINTS)",
            "run portwatch on a kernel built with CONFIG_TRACEPOINTS (every distribution kernel)",
        ),
        (false, false) => Finding::degraded(
            check,
            "missing (kernel without CONFIG_FTRACE_SYSCALLS)",
            "use a kernel with CONFIG_FTRACE_SYSCALLS=y (distribution kernels have it)",
            &[
                "connect_error events other than port exhaustion (a refused or timed-out \
                 handshake still shows as a close with its errno)",
            ],
        ),
    }
}

/// What the BTF-derived offsets give; `warnings` are those of
/// `resolve_offsets` (empty when every offset was found).
pub fn btf(resolved: usize, total: usize, warnings: &[String]) -> Finding {
    const CHECK: &str = "BTF";
    if warnings.is_empty() {
        return Finding::ok(
            CHECK,
            format!("/sys/kernel/btf/vmlinux: {resolved} of {total} kernel offsets resolved"),
        );
    }
    Finding::degraded(
        CHECK,
        warnings.join("; "),
        "use a kernel with CONFIG_DEBUG_INFO_BTF=y (most distributions since 2020)",
        &[
            "bytes_sent, bytes_received",
            "errno and cause of failed handshakes",
            "netns (and --netns filtering)",
            "thread (reported as comm)",
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kernel_releases() {
        assert_eq!(parse_kernel_version("6.18.44-fc-v669"), Some((6, 18)));
        assert_eq!(parse_kernel_version("5.4.0-150-generic"), Some((5, 4)));
        assert_eq!(parse_kernel_version("garbage"), None);
    }

    #[test]
    fn kernels_before_5_8_cannot_run() {
        assert_eq!(kernel("5.4.0-150-generic").status, Status::Fatal);
        assert_eq!(kernel("5.8.0").status, Status::Ok);
        assert_eq!(kernel("6.18.44").status, Status::Ok);
    }

    #[test]
    fn privileges_name_the_missing_capability() {
        let bpf_only = 1u64 << CAP_BPF;
        let f = privileges(bpf_only);
        assert_eq!(f.status, Status::Fatal);
        assert!(f.detail.contains("missing: CAP_PERFMON"), "{}", f.detail);
        assert!(!f.detail.contains("CAP_BPF,"), "{}", f.detail);
        assert_eq!(privileges(0).status, Status::Fatal);
        assert!(privileges(0).detail.contains("CAP_BPF, CAP_PERFMON"));
        assert_eq!(privileges(1 << CAP_SYS_ADMIN).status, Status::Ok);
        assert_eq!(
            privileges((1 << CAP_BPF) | (1 << CAP_PERFMON)).status,
            Status::Ok
        );
    }

    #[test]
    fn reads_effective_caps_from_proc_status() {
        let status = "Name:\tx\nCapPrm:\t0000000000000000\nCapEff:\t000000c000000000\n";
        assert_eq!(effective_caps(status), (1 << CAP_BPF) | (1 << CAP_PERFMON));
        assert_eq!(effective_caps("garbage"), 0);
    }

    #[test]
    fn missing_set_state_is_fatal_missing_syscalls_degrade() {
        assert_eq!(
            tracepoint("sock/inet_sock_set_state", false).status,
            Status::Fatal
        );
        let f = tracepoint("syscalls/sys_exit_connect", false);
        assert_eq!(f.status, Status::Degraded);
        assert_eq!(f.check, "tracepoint syscalls:sys_exit_connect");
        assert!(!f.degrades.is_empty());
        assert_eq!(
            tracepoint("syscalls/sys_exit_connect", true).status,
            Status::Ok
        );
    }

    #[test]
    fn btf_warnings_degrade_and_name_the_null_fields() {
        assert_eq!(btf(9, 9, &[]).status, Status::Ok);
        let f = btf(0, 9, &["no kernel BTF".to_string()]);
        assert_eq!(f.status, Status::Degraded);
        assert!(f.degrades.iter().any(|d| d.contains("bytes_sent")));
        assert!(f.degrades.iter().any(|d| d.contains("netns")));
    }
}
