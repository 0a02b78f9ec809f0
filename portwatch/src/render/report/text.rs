//! `report`: the summary as text for people (no escape codes: it goes
//! into tickets).

use std::io::{self, Write};

use super::{Report, minute_utc};
use crate::errno;
use crate::render::fmt::{addr, addr_port, clean, opt_ms, opt_pct};

fn pids(p: &[u32]) -> String {
    let v: Vec<String> = p.iter().map(u32::to_string).collect();
    v.join(",")
}

/// Plain text, sections in the order a postmortem reads them.
pub fn write_text(out: &mut impl Write, r: &Report, rows: usize) -> io::Result<()> {
    writeln!(out, "portwatch report: {}", clean(&r.file))?;
    let range = r.port_range.map_or("?".into(), |(a, b)| format!("{a}-{b}"));
    writeln!(
        out,
        "host {} ({})  ports {range}, budget {} per destination",
        clean(&r.hostname),
        clean(&r.kernel),
        r.budget.map_or("?".into(), |b| b.to_string())
    )?;
    match (r.start_ns, r.end_ns) {
        (Some(a), Some(b)) => writeln!(
            out,
            "span {} .. {} UTC ({:.1} s, {} records)",
            r.time(a),
            r.hms(b),
            r.duration_s(),
            r.inputs
        )?,
        _ => writeln!(out, "span: no records")?,
    }
    let total_failures: u64 = r.failures.iter().map(|c| c.count).sum();
    writeln!(
        out,
        "connections {} outbound, {} inbound; peak {:.0} new/s in one second{}, {:.1}/s over 10 s{}",
        r.outbound,
        r.inbound,
        r.peak_1s.0,
        if r.peak_1s.0 > 0.0 {
            format!(" (at {})", r.hms(r.peak_1s.1))
        } else {
            String::new()
        },
        r.peak_10s.0,
        if r.peak_10s.0 > 0.0 {
            format!(" (to {})", r.hms(r.peak_10s.1))
        } else {
            String::new()
        },
    )?;
    let by: Vec<String> = r
        .failures
        .iter()
        .map(|c| format!("{} {}", c.name, c.count))
        .collect();
    writeln!(
        out,
        "failures {total_failures}{}; lost events {}",
        if by.is_empty() {
            String::new()
        } else {
            format!(" ({})", by.join(", "))
        },
        r.losses.total()
    )?;
    if !r.complete || !r.warnings.is_empty() {
        writeln!(
            out,
            "WARNING: {}",
            if r.complete {
                "parts of the file were skipped (see WARNINGS)"
            } else {
                "the file is damaged; this reports what was read before the damage (see WARNINGS)"
            }
        )?;
    }

    writeln!(out)?;
    writeln!(out, "VERDICTS ({})", r.verdicts.len())?;
    if r.verdicts.is_empty() {
        writeln!(
            out,
            "  none: no service -> destination pair lacked pooling, no process leaked sockets"
        )?;
    }
    for v in &r.verdicts {
        let p = &v.peak;
        writeln!(
            out,
            "  {} {} -> {}:{}  pids {}",
            p.verdict,
            clean(&p.service.to_string()),
            addr(p.daddr),
            p.dport,
            pids(&p.pids)
        )?;
        if let (Some(cw), Some(held)) = (p.close_wait, p.held_ports) {
            writeln!(
                out,
                "    flagged {} s, {} .. {}; at its peak ({}): {cw} CLOSE_WAIT, {held} ports \
                 held ({:.1}% of budget), {} EADDRNOTAVAIL for want of them",
                v.flagged_s,
                r.hms(v.first_ns),
                r.hms(v.last_ns),
                r.hms(v.peak_ns),
                p.budget_share * 100.0,
                p.failures_caused.unwrap_or(0)
            )?;
        } else {
            writeln!(
                out,
                "    flagged {} s, {} .. {}; at its peak ({}): {:.1} new/s, p50 {} ms, \
                 TIME_WAIT {} ({:.1}% of budget)",
                v.flagged_s,
                r.hms(v.first_ns),
                r.hms(v.last_ns),
                r.hms(v.peak_ns),
                p.new_per_s,
                opt_ms(p.lifetime_p50_ms),
                p.time_wait,
                p.budget_share * 100.0
            )?;
        }
        writeln!(out, "    evidence: {}", clean(&p.evidence))?;
        writeln!(out, "    fix: {}", clean(&p.fix))?;
        crate::render::write_call_sites(out, &p.call_sites)?;
    }

    writeln!(out)?;
    writeln!(out, "TOP SERVICES BY CHURN")?;
    writeln!(
        out,
        "  {:<34} {:<14} {:>9} {:>10} {:>9} {:>6} {:>6}  PIDS",
        "SERVICE", "KIND", "CONNS", "PEAK_NEW/S", "LIFE_P50", "LOCAL", "ERR"
    )?;
    for s in r.services.iter().take(rows) {
        writeln!(
            out,
            "  {:<34} {:<14} {:>9} {:>10.1} {:>9} {:>6} {:>6}  {}",
            clean(&s.service.name),
            s.service.kind.as_str(),
            s.new_total(),
            s.peak_new_per_s,
            opt_ms(s.lifetime_p50_ms),
            opt_pct(s.closed_locally_share),
            s.connect_errors(),
            pids(&s.pids)
        )?;
    }
    if r.services.len() > rows {
        writeln!(out, "  ... {} more", r.services.len() - rows)?;
    }

    writeln!(out)?;
    writeln!(out, "DESTINATIONS BY PORT PRESSURE")?;
    writeln!(
        out,
        "  {:<34} {:<20} {:>9} {:>10} {:>9} {:>8} {:>7} {:>10} {:>8} {:>7} {:>7}  CLOSER",
        "DESTINATION",
        "NETNS",
        "CONNS",
        "PEAK_NEW/S",
        "PEAK_HELD",
        "PEAK_TW",
        "BUDGET",
        "PEAK_SHARE",
        "AT",
        "FAILED",
        "SYN_RTX"
    )?;
    for d in r.destinations.iter().take(rows) {
        writeln!(
            out,
            "  {:<34} {:<20} {:>9} {:>10.1} {:>9} {:>8} {:>7} {:>9.1}% {:>8} {:>7} {:>7}  {}",
            addr_port(d.daddr, d.dport),
            clean(d.netns_name.as_deref().unwrap_or("-")),
            d.new_total(),
            d.peak_new_per_s,
            d.peak_held_ports,
            d.peak_time_wait,
            d.budget,
            d.peak_pressure * 100.0,
            if d.peak_pressure > 0.0 {
                r.hms(d.peak_pressure_ns)
            } else {
                "-".into()
            },
            d.connect_errors(),
            d.syn_retransmits(),
            format!("{:?}", d.closer).to_lowercase()
        )?;
    }
    if r.destinations.len() > rows {
        writeln!(out, "  ... {} more", r.destinations.len() - rows)?;
    }

    writeln!(out)?;
    writeln!(out, "FAILURES BY MINUTE (UTC)")?;
    if r.failure_minutes.is_empty() {
        writeln!(out, "  none")?;
    } else {
        let columns = r.errno_columns();
        let mut header = format!("  {:<18} {:>7}", "MINUTE", "TOTAL");
        for e in &columns {
            header.push_str(&format!(" {:>14}", errno::name(*e)));
        }
        writeln!(out, "{header}")?;
        for m in &r.failure_minutes {
            let mut line = format!(
                "  {:<18} {:>7}",
                minute_utc(m.minute),
                m.by_errno.values().sum::<u64>()
            );
            for e in &columns {
                line.push_str(&format!(" {:>14}", m.by_errno.get(e).copied().unwrap_or(0)));
            }
            writeln!(out, "{line}")?;
        }
    }
    if r.syn_retransmits > 0 {
        writeln!(
            out,
            "  SYN retransmits: {} (SYNs that waited at least 1 s unanswered)",
            r.syn_retransmits
        )?;
    }
    if let Some(c) = &r.conntrack_peak {
        writeln!(
            out,
            "  at its worst ({}, {}): {}",
            c.netns_name,
            r.hms(c.at_ns),
            crate::render::fmt::conntrack(c.count, c.max, Some(c.turned_away_per_s))
        )?;
    }
    let nat: Vec<String> = r
        .destinations
        .iter()
        .filter_map(|d| {
            d.peak_nat_port_demand
                .map(|n| format!("{} ~{n:.0}", addr_port(d.daddr, d.dport)))
        })
        .take(rows)
        .collect();
    if !nat.is_empty() {
        writeln!(out, "  NAT port demand at peak: {}", nat.join(", "))?;
    }

    writeln!(out)?;
    let l = &r.losses;
    write!(
        out,
        "LOST EVENTS {} (ring buffer full {}, socket map full {}, connect() untracked {}, \
         undecodable {}, probe errors {}",
        l.total(),
        l.ringbuf_lost,
        l.sock_evicted,
        l.connect_untracked,
        l.decode_errors,
        l.probe_errors
    )?;
    writeln!(out, ")")?;
    if l.kernel_missed > 0 {
        writeln!(
            out,
            "  and {} tracepoint runs skipped by the kernel (each may have cost an event)",
            l.kernel_missed
        )?;
    }
    if l.total() > 0 {
        writeln!(out, "  rates and counts above are lower bounds")?;
    }
    if !r.warnings.is_empty() {
        writeln!(out)?;
        writeln!(out, "WARNINGS")?;
        for w in &r.warnings {
            writeln!(out, "  {}", clean(w))?;
        }
    }
    Ok(())
}
