//! Sysctls, /proc/net/sockstat and /proc/net/netstat, host identity.
//!
//! All of these are per network namespace: they describe the namespace
//! portwatch runs in (see [`netns_inode`]).

use std::collections::HashMap;
use std::path::Path;

use super::{CollectError, read_to_string};
use crate::clock::WallClock;
use crate::input::{Conntrack, ConntrackStats, HostInfo, KernelCounters, Sysctls};

fn parse_err(what: &str, detail: impl Into<String>) -> CollectError {
    CollectError::Parse {
        what: what.to_string(),
        detail: detail.into(),
    }
}

/// `ip_local_port_range`: two numbers separated by whitespace.
pub fn parse_port_range(text: &str) -> Result<(u16, u16), CollectError> {
    let mut it = text.split_whitespace().map(str::parse::<u16>);
    match (it.next(), it.next()) {
        (Some(Ok(lo)), Some(Ok(hi))) if lo <= hi => Ok((lo, hi)),
        _ => Err(parse_err("ip_local_port_range", format!("{text:?}"))),
    }
}

/// `ip_local_reserved_ports`: comma-separated ports and ranges, e.g.
/// `8080,9000-9010`; empty when none.
pub fn parse_reserved_ports(text: &str) -> Result<Vec<(u16, u16)>, CollectError> {
    let mut out = Vec::new();
    for part in text
        .trim()
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let bad = || parse_err("ip_local_reserved_ports", format!("{part:?}"));
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let a: u16 = a.trim().parse().map_err(|_| bad())?;
        let b: u16 = b.trim().parse().map_err(|_| bad())?;
        out.push((a.min(b), a.max(b)));
    }
    Ok(out)
}

/// Reads the sysctls under `root` (normally `/proc/sys/net/ipv4`). The port
/// range is required; the others are `None` where the kernel lacks them.
pub fn read_sysctls(root: &Path) -> Result<Sysctls, CollectError> {
    let opt = |name: &str| -> Option<i64> {
        std::fs::read_to_string(root.join(name))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    };
    let port_range = parse_port_range(&read_to_string(root.join("ip_local_port_range"))?)?;
    let reserved_ports = match std::fs::read_to_string(root.join("ip_local_reserved_ports")) {
        Ok(s) => parse_reserved_ports(&s)?,
        Err(_) => Vec::new(),
    };
    Ok(Sysctls {
        port_range,
        reserved_ports,
        tcp_tw_reuse: opt("tcp_tw_reuse"),
        tcp_tw_reuse_delay_ms: opt("tcp_tw_reuse_delay"),
        tcp_timestamps: opt("tcp_timestamps"),
        tcp_max_tw_buckets: opt("tcp_max_tw_buckets"),
        tcp_fin_timeout: opt("tcp_fin_timeout"),
    })
}

/// `/proc/net/sockstat` → (TCP inuse, TCP tw).
pub fn parse_sockstat(text: &str) -> Result<(u64, u64), CollectError> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("TCP:"))
        .ok_or_else(|| parse_err("/proc/net/sockstat", "no TCP line"))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let get = |key: &str| -> Result<u64, CollectError> {
        words
            .chunks(2)
            .find(|kv| kv.first() == Some(&key))
            .and_then(|kv| kv.get(1))
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| parse_err("/proc/net/sockstat", format!("no TCP {key}")))
    };
    Ok((get("inuse")?, get("tw")?))
}

/// `/proc/net/netstat` (or `snmp`): pairs of header/value lines per
/// prefix; returns `Prefix.Name → value` for every counter.
pub fn parse_netstat(text: &str) -> Result<HashMap<String, u64>, CollectError> {
    let mut out = HashMap::new();
    for_each_netstat(text, |prefix, name, v| {
        out.insert(format!("{prefix}.{name}"), v);
    })?;
    Ok(out)
}

/// Calls `f(prefix, name, value)` for every counter of a netstat-style
/// file, checking its shape as [`parse_netstat`] does, without building
/// anything: read every second in every namespace, and a map of ~300
/// formatted keys was ~0.5 M instructions a read.
fn for_each_netstat(text: &str, mut f: impl FnMut(&str, &str, u64)) -> Result<(), CollectError> {
    let mut lines = text.lines();
    while let Some(names) = lines.next() {
        let Some(values) = lines.next() else {
            return Err(parse_err("/proc/net/netstat", "odd number of lines"));
        };
        let (Some((p1, names)), Some((p2, values))) =
            (names.split_once(':'), values.split_once(':'))
        else {
            return Err(parse_err("/proc/net/netstat", format!("line {names:?}")));
        };
        if p1 != p2 {
            return Err(parse_err(
                "/proc/net/netstat",
                format!("{p1} followed by {p2}"),
            ));
        }
        for (n, v) in names.split_whitespace().zip(values.split_whitespace()) {
            // Some counters are signed (e.g. Tcp MaxConn = -1); keep what parses.
            if let Ok(v) = v.parse::<u64>() {
                f(p1, n, v);
            }
        }
    }
    Ok(())
}

/// Builds [`KernelCounters`] from the two files' text.
pub fn counters_from(
    sockstat: &str,
    netstat: &str,
    ts_ns: u64,
) -> Result<KernelCounters, CollectError> {
    let (inuse, tw) = parse_sockstat(sockstat)?;
    let (mut tw_count, mut tw_recycled, mut tw_overflow) = (0, 0, 0);
    for_each_netstat(netstat, |prefix, name, v| {
        if prefix != "TcpExt" {
            return;
        }
        match name {
            "TW" => tw_count = v,
            "TWRecycled" => tw_recycled = v,
            "TCPTimeWaitOverflow" => tw_overflow = v,
            _ => {}
        }
    })?;
    Ok(KernelCounters {
        ts_ns,
        tcp_inuse: inuse,
        tcp_tw: tw,
        tw: tw_count,
        tw_recycled,
        tw_overflow,
        conntrack: None,
    })
}

pub fn read_counters(ts_ns: u64) -> Result<KernelCounters, CollectError> {
    let mut c = counters_from(
        &read_to_string("/proc/net/sockstat")?,
        &read_to_string("/proc/net/netstat")?,
        ts_ns,
    )?;
    c.conntrack = read_conntrack(Path::new("/proc/sys/net/netfilter"), "/proc/net");
    Ok(c)
}

/// `/proc/net/stat/nf_conntrack`: a header line of names, then one line of
/// hexadecimal values per CPU. Sums `insert_failed`, `drop` and
/// `early_drop` over the CPUs; `None` when a column is missing or a value
/// does not parse.
pub fn parse_conntrack_stat(text: &str) -> Option<ConntrackStats> {
    let mut lines = text.lines();
    let names: Vec<&str> = lines.next()?.split_whitespace().collect();
    let col = |name: &str| names.iter().position(|n| *n == name);
    let (i, d, e) = (col("insert_failed")?, col("drop")?, col("early_drop")?);
    let mut out = ConntrackStats::default();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let v: Vec<&str> = line.split_whitespace().collect();
        let hex = |k: usize| u64::from_str_radix(v.get(k)?, 16).ok();
        out.insert_failed += hex(i)?;
        out.drop += hex(d)?;
        out.early_drop += hex(e)?;
    }
    Some(out)
}

/// The conntrack table of the namespace the calling thread is in:
/// `sysctl_dir` is `/proc/sys/net/netfilter`, `net_dir` the namespace's
/// `/proc/.../net`. `None` when nf_conntrack is not loaded (no
/// `nf_conntrack_count`): that is no error.
pub fn read_conntrack(sysctl_dir: &Path, net_dir: &str) -> Option<Conntrack> {
    let num = |name: &str| -> Option<u64> {
        std::fs::read_to_string(sysctl_dir.join(name))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    Some(Conntrack {
        count: num("nf_conntrack_count")?,
        max: num("nf_conntrack_max"),
        stats: std::fs::read_to_string(format!("{net_dir}/stat/nf_conntrack"))
            .ok()
            .and_then(|t| parse_conntrack_stat(&t)),
    })
}

/// Inode of a namespace link target such as `net:[4026531840]`.
pub fn parse_ns_link(target: &str) -> Option<u32> {
    target
        .strip_prefix("net:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The network namespace this process is in (0 if unknown).
pub fn netns_inode() -> u32 {
    std::fs::read_link("/proc/self/ns/net")
        .ok()
        .and_then(|t| parse_ns_link(&t.to_string_lossy()))
        .unwrap_or(0)
}

/// Host context: the first input of every stream.
pub fn read_host(clock: WallClock) -> Result<HostInfo, CollectError> {
    let hostname = read_to_string("/proc/sys/kernel/hostname")?;
    let kernel = read_to_string("/proc/sys/kernel/osrelease")?;
    Ok(HostInfo {
        hostname: hostname.trim().to_string(),
        kernel: kernel.trim().to_string(),
        clock,
        netns: netns_inode(),
        sysctls: read_sysctls(Path::new("/proc/sys/net/ipv4"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As read on Linux 6.18 (two CPUs), with made-up failures.
    const STAT: &str = "entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart
00000014  00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 0000000a 00000002 00000010 00000000  00000000 00000000 00000000 00000000
00000014  00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000001 00000000 00000001 00000000  00000000 00000000 00000000 00000000
";

    #[test]
    fn conntrack_stat_sums_hex_columns_over_cpus() {
        assert_eq!(
            parse_conntrack_stat(STAT),
            Some(ConntrackStats {
                insert_failed: 11,
                drop: 2,
                early_drop: 17,
            })
        );
    }

    #[test]
    fn conntrack_stat_without_the_columns_is_none() {
        assert_eq!(
            parse_conntrack_stat("entries searched\n00000001 00000002\n"),
            None
        );
        assert_eq!(parse_conntrack_stat(""), None);
    }

    #[test]
    fn no_conntrack_module_is_none_not_an_error() {
        let dir = std::env::temp_dir().join(format!("pw-no-ct-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(read_conntrack(&dir, dir.to_str().unwrap()), None);
        std::fs::write(dir.join("nf_conntrack_count"), "7\n").unwrap();
        assert_eq!(
            read_conntrack(&dir, dir.to_str().unwrap()),
            Some(Conntrack {
                count: 7,
                max: None,
                stats: None
            })
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
