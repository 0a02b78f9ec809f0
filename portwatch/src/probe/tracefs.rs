//! tracefs: find or mount it, and check tracepoint record layouts against
//! the offsets the eBPF programs were compiled with.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

const CANDIDATES: &[&str] = &["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// Returns the tracefs mount point, mounting tracefs at /sys/kernel/tracing
/// if it is not mounted yet (as bpftrace does). aya looks in the same places.
///
/// Idempotent under concurrency: two portwatch processes (or a test suite's
/// parallel binaries) starting on a host without tracefs both try to mount
/// it; the loser gets an error (EBUSY) although tracefs is now there. So a
/// failed mount is followed by a fresh look, and retried a few times.
pub fn ensure_mounted() -> Result<PathBuf> {
    ensure_mounted_with(find, mount_tracefs, std::thread::sleep)
}

/// How often a failed mount is retried before giving up.
const MOUNT_ATTEMPTS: u32 = 5;

/// [`ensure_mounted`] with its effects passed in, so the race is testable
/// without root.
fn ensure_mounted_with(
    mut find: impl FnMut() -> Option<PathBuf>,
    mut mount: impl FnMut() -> std::io::Result<()>,
    mut sleep: impl FnMut(std::time::Duration),
) -> Result<PathBuf> {
    let mut last_err = None;
    for attempt in 0..MOUNT_ATTEMPTS {
        if let Some(p) = find() {
            return Ok(p);
        }
        match mount() {
            Ok(()) => {
                log::info!("mounted tracefs at /sys/kernel/tracing");
                return find().context("tracefs mounted but /sys/kernel/tracing/events is missing");
            }
            Err(e) => {
                // Another process may have mounted it between our look and
                // our mount: look again before calling this a failure.
                if let Some(p) = find() {
                    return Ok(p);
                }
                let permanent = matches!(
                    e.raw_os_error(),
                    Some(libc::EPERM)
                        | Some(libc::EACCES)
                        | Some(libc::ENODEV)
                        | Some(libc::ENOENT)
                );
                last_err = Some(e);
                if permanent {
                    break;
                }
                sleep(std::time::Duration::from_millis(20 << attempt));
            }
        }
    }
    let err = last_err.map_or_else(|| "unknown error".to_string(), |e| e.to_string());
    bail!(
        "tracefs is not mounted and mounting it failed ({err}); mount it with:\n    \
         mount -t tracefs tracefs /sys/kernel/tracing"
    )
}

fn mount_tracefs() -> std::io::Result<()> {
    let target = c"/sys/kernel/tracing";
    // SAFETY: all pointers are valid NUL-terminated strings; data is null.
    let rc = unsafe {
        libc::mount(
            c"tracefs".as_ptr(),
            target.as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn find() -> Option<PathBuf> {
    CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.join("events").is_dir())
}

/// One `field:` line of a tracepoint format file.
#[derive(Debug, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub offset: usize,
    pub size: usize,
}

/// Parses the `field:` lines of a tracepoint `format` file, e.g.
/// `field:__u16 sport;<TAB>offset:24;<TAB>size:2;<TAB>signed:0;`.
pub fn parse_format(text: &str) -> Vec<Field> {
    let mut fields = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("field:") else {
            continue;
        };
        let mut parts = rest.split(';').map(str::trim);
        let Some(decl) = parts.next() else { continue };
        // The name is the last word of the declaration, minus any [N].
        let name = decl
            .rsplit(|c: char| c.is_whitespace() || c == '*')
            .next()
            .unwrap_or("")
            .split('[')
            .next()
            .unwrap_or("")
            .to_string();
        let mut offset = None;
        let mut size = None;
        for p in parts {
            if let Some(v) = p.strip_prefix("offset:") {
                offset = v.parse().ok();
            } else if let Some(v) = p.strip_prefix("size:") {
                size = v.parse().ok();
            }
        }
        if let (Some(offset), Some(size)) = (offset, size) {
            fields.push(Field { name, offset, size });
        }
    }
    fields
}

/// What the live format files say about the tracepoints portwatch reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Layouts {
    /// Tracepoints that do not exist at all.
    pub missing: Vec<String>,
    /// Optional tracepoints (everything but `sock/`) whose record layout
    /// differs from the one compiled in, with what differs: they are not
    /// attached, as if missing, and the rest of portwatch works.
    pub mismatched: Vec<(String, String)>,
}

impl Layouts {
    /// Missing or mismatched: not to be attached.
    pub fn unusable(&self) -> impl Iterator<Item = &str> {
        self.missing
            .iter()
            .map(String::as_str)
            .chain(self.mismatched.iter().map(|(tp, _)| tp.as_str()))
    }
}

/// Checks `expected` (tracepoint, field, offset, size) against the live
/// format files. A layout that differs on `sock/inet_sock_set_state`, the
/// tracepoint portwatch is built on, is an error; on any other tracepoint
/// it only makes that tracepoint unusable (listed in
/// [`Layouts::mismatched`]): a kernel that reshuffled
/// `tcp:tcp_retransmit_skb` costs the SYN retransmission counts, not the
/// tool.
pub fn check_layouts(tracefs: &Path, expected: &[(&str, &str, usize, usize)]) -> Result<Layouts> {
    let mut out = Layouts::default();
    let mut fatal = Vec::new();
    let mut current: Option<(&str, Vec<Field>)> = None;
    for &(tp, field, offset, size) in expected {
        if current.as_ref().map(|(t, _)| *t) != Some(tp) {
            let path = tracefs.join("events").join(tp).join("format");
            match std::fs::read_to_string(&path) {
                Ok(text) => current = Some((tp, parse_format(&text))),
                Err(_) => {
                    if !out.missing.iter().any(|m| m == tp) {
                        out.missing.push(tp.to_string());
                    }
                    current = Some((tp, Vec::new()));
                    continue;
                }
            }
        }
        let Some((_, fields)) = &current else {
            continue;
        };
        if fields.is_empty() {
            continue;
        }
        let mismatch = match fields.iter().find(|f| f.name == field) {
            Some(f) if f.offset == offset && f.size == size => continue,
            Some(f) => format!(
                "{tp}.{field}: kernel has offset {} size {}, portwatch expects offset {offset} size {size}",
                f.offset, f.size
            ),
            None => format!("{tp}.{field}: field missing in the kernel's format"),
        };
        if tp.starts_with("sock/") {
            fatal.push(mismatch);
        } else if let Some((_, d)) = out.mismatched.iter_mut().find(|(t, _)| t == tp) {
            d.push_str("; ");
            d.push_str(&mismatch);
        } else {
            out.mismatched.push((tp.to_string(), mismatch));
        }
    }
    if !fatal.is_empty() {
        bail!(
            "this kernel's tracepoint layout differs from what portwatch was built for:\n  {}",
            fatal.join("\n  ")
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "name: inet_sock_set_state
ID: 1234
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;
\tfield:int oldstate;\toffset:16;\tsize:4;\tsigned:1;
\tfield:__u8 saddr_v6[16];\toffset:40;\tsize:16;\tsigned:0;

print fmt: \"family=%s\"";

    #[test]
    fn parses_field_names_offsets_and_sizes() {
        let f = parse_format(SAMPLE);
        assert_eq!(f.len(), 4);
        assert_eq!(
            f[1],
            Field {
                name: "skaddr".into(),
                offset: 8,
                size: 8
            }
        );
        assert_eq!(f[3].name, "saddr_v6");
        assert_eq!((f[3].offset, f[3].size), (40, 16));
    }

    #[test]
    fn layout_mismatch_is_an_error_and_missing_tracepoints_are_listed() {
        let dir = std::env::temp_dir().join(format!("pw-tracefs-{}", std::process::id()));
        let tp = dir.join("events/sock/inet_sock_set_state");
        std::fs::create_dir_all(&tp).unwrap();
        std::fs::write(tp.join("format"), SAMPLE).unwrap();
        let ok = check_layouts(
            &dir,
            &[
                ("sock/inet_sock_set_state", "oldstate", 16, 4),
                ("syscalls/sys_enter_connect", "uservaddr", 24, 8),
            ],
        )
        .unwrap();
        assert_eq!(ok.missing, vec!["syscalls/sys_enter_connect".to_string()]);
        assert!(ok.mismatched.is_empty());
        let err = check_layouts(&dir, &[("sock/inet_sock_set_state", "oldstate", 20, 4)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("oldstate"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_optional_tracepoint_with_another_layout_is_unusable_not_fatal() {
        let dir = std::env::temp_dir().join(format!("pw-tracefs-opt-{}", std::process::id()));
        let sock = dir.join("events/sock/inet_sock_set_state");
        let tcp = dir.join("events/tcp/tcp_retransmit_skb");
        std::fs::create_dir_all(&sock).unwrap();
        std::fs::create_dir_all(&tcp).unwrap();
        std::fs::write(sock.join("format"), SAMPLE).unwrap();
        // Same sample: `skaddr` at 8 (as expected below) but no `state`.
        std::fs::write(tcp.join("format"), SAMPLE).unwrap();
        let got = check_layouts(
            &dir,
            &[
                ("sock/inet_sock_set_state", "oldstate", 16, 4),
                ("tcp/tcp_retransmit_skb", "skaddr", 8, 8),
                ("tcp/tcp_retransmit_skb", "state", 20, 4),
                ("tcp/tcp_retransmit_skb", "oldstate", 24, 4),
            ],
        )
        .unwrap();
        assert!(got.missing.is_empty());
        assert_eq!(got.mismatched.len(), 1, "{got:?}");
        let (tp, why) = &got.mismatched[0];
        assert_eq!(tp, "tcp/tcp_retransmit_skb");
        assert!(why.contains("state: field missing"), "{why}");
        assert!(why.contains("oldstate: kernel has offset 16"), "{why}");
        assert_eq!(
            got.unusable().collect::<Vec<_>>(),
            vec!["tcp/tcp_retransmit_skb"]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_mount_lost_to_a_concurrent_mounter_is_not_an_error() {
        // First look: absent. Our mount fails with EBUSY because another
        // process mounted it meanwhile; the second look finds it.
        let mut looks = 0;
        let got = ensure_mounted_with(
            || {
                looks += 1;
                (looks >= 2).then(|| PathBuf::from("/sys/kernel/tracing"))
            },
            || Err(std::io::Error::from_raw_os_error(libc::EBUSY)),
            |_| panic!("no retry needed"),
        )
        .unwrap();
        assert_eq!(got, PathBuf::from("/sys/kernel/tracing"));
    }

    #[test]
    fn a_transient_mount_failure_is_retried() {
        let mounted = std::cell::Cell::new(false);
        let mut mounts = 0;
        let mut sleeps = 0;
        let got = ensure_mounted_with(
            || mounted.get().then(|| PathBuf::from("/sys/kernel/tracing")),
            || {
                mounts += 1;
                if mounts < 3 {
                    Err(std::io::Error::from_raw_os_error(libc::EBUSY))
                } else {
                    mounted.set(true);
                    Ok(())
                }
            },
            |_| sleeps += 1,
        )
        .unwrap();
        assert_eq!(got, PathBuf::from("/sys/kernel/tracing"));
        assert_eq!((mounts, sleeps), (3, 2));
    }

    #[test]
    fn a_permanent_mount_failure_names_the_command() {
        let mut mounts = 0;
        let err = ensure_mounted_with(
            || None,
            || {
                mounts += 1;
                Err(std::io::Error::from_raw_os_error(libc::EPERM))
            },
            |_| {},
        )
        .unwrap_err()
        .to_string();
        assert_eq!(mounts, 1, "EPERM is not retried");
        assert!(
            err.contains("mount -t tracefs tracefs /sys/kernel/tracing"),
            "{err}"
        );
    }
}
