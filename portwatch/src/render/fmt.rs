//! How every view writes a number: addresses, durations, percentages,
//! bytes, times, and names from the traced host made safe for a terminal.
//! A leaf: it depends on nothing else of portwatch (the engine's verdict
//! text uses it too, so a figure reads the same everywhere).

use std::net::IpAddr;

/// An address as it goes before `:port`: IPv6 in brackets.
pub fn addr(a: IpAddr) -> String {
    match a {
        IpAddr::V6(v6) => format!("[{v6}]"),
        v4 => v4.to_string(),
    }
}

/// `addr:port`, IPv6 in brackets.
pub fn addr_port(a: IpAddr, port: u16) -> String {
    format!("{}:{port}", addr(a))
}

/// Seconds as `HH:MM:SS`.
pub fn hms(s: u64) -> String {
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// Milliseconds for a table column (no unit): "0.42", "12.5", "1300"; "-"
/// when unknown.
pub fn opt_ms(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(x) if x < 10.0 => format!("{x:.2}"),
        Some(x) if x < 1000.0 => format!("{x:.1}"),
        Some(x) => format!("{x:.0}"),
    }
}

/// Milliseconds in a sentence: "0.42 ms", "12 ms"; "?" when unknown.
pub fn ms_text(v: Option<f64>) -> String {
    match v {
        Some(v) if v < 10.0 => format!("{v:.2} ms"),
        Some(v) => format!("{v:.0} ms"),
        None => "?".into(),
    }
}

/// A duration in ms, short, with its unit: "0.4ms", "12ms", "3.5s", "48s".
pub fn ms_short(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.1}ms")
    } else if v < 1000.0 {
        format!("{v:.0}ms")
    } else if v < 10_000.0 {
        format!("{:.1}s", v / 1000.0)
    } else {
        format!("{:.0}s", v / 1000.0)
    }
}

/// A share as a whole percentage: 0.25 → "25%".
/// A conntrack table: "conntrack 20/262144 (0.0%), turned away 0.0/s"
/// (entries, the limit, and drop + early_drop + insert_failed per second
/// when known).
pub fn conntrack(count: u64, max: Option<u64>, turned_away_per_s: Option<f64>) -> String {
    let mut s = format!("conntrack {count}");
    if let Some(m) = max {
        s.push_str(&format!("/{m}"));
        if m > 0 {
            s.push_str(&format!(" ({})", pct(count as f64 / m as f64)));
        }
    }
    if let Some(r) = turned_away_per_s {
        s.push_str(&format!(", turned away {r:.1}/s"));
    }
    s
}

pub fn pct(x: f64) -> String {
    format!("{:.0}%", x * 100.0)
}

/// [`pct`], "-" when unknown.
pub fn opt_pct(v: Option<f64>) -> String {
    v.map_or("-".into(), pct)
}

/// A rate, one decimal below 100: "7.5", "472".
pub fn rate(r: f64) -> String {
    if r >= 100.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.1}")
    }
}

/// Bytes as people write them: "512 B", "1.5 KiB", "3.0 MiB".
pub fn bytes(b: u64) -> String {
    match b {
        0..1024 => format!("{b} B"),
        1024..1_048_576 => format!("{:.1} KiB", b as f64 / 1024.0),
        _ => format!("{:.1} MiB", b as f64 / 1_048_576.0),
    }
}

/// Names come from the traced host (process names, cgroup paths): control
/// characters in them would reach the reader's terminal, so they are
/// escaped.
pub fn clean(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// A network namespace's name cut to `width` characters. `netns:INODE`
/// keeps the end of the inode (inodes share their leading digits: the end
/// tells them apart); other names keep their start, ending in "…".
pub fn short_netns(name: &str, width: usize) -> String {
    if name.chars().count() <= width {
        return name.to_string();
    }
    match name.strip_prefix("netns:") {
        Some(inode) if width > 7 && inode.is_ascii() => {
            let keep = width - 7;
            format!("netns:…{}", &inode[inode.len().saturating_sub(keep)..])
        }
        _ => {
            let mut s: String = name.chars().take(width.saturating_sub(1)).collect();
            s.push('…');
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 * 1_048_576), "3.0 MiB");
    }

    #[test]
    fn ipv6_goes_in_brackets_before_a_port() {
        assert_eq!(addr_port("::1".parse().unwrap(), 80), "[::1]:80");
        assert_eq!(addr_port("10.0.0.1".parse().unwrap(), 80), "10.0.0.1:80");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(clean("a\u{1b}[31mb"), "a\\u{1b}[31mb");
        assert_eq!(clean("plain"), "plain");
    }

    #[test]
    fn a_long_namespace_name_keeps_what_tells_it_apart() {
        assert_eq!(short_netns("host", 12), "host");
        assert_eq!(short_netns("netns:4026532385", 12), "netns:…32385");
        assert_eq!(short_netns("pod:checkout-7f9c8d", 12), "pod:checkou…");
        assert_eq!(short_netns("netns:4026532385", 16), "netns:4026532385");
    }
}
