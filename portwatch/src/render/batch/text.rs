//! `top --batch` as text tables, like `top -b`.

use std::io::{self, Write};

use crate::engine::Model;
use crate::render::fmt::{addr, addr_port, opt_ms, opt_pct};

fn more(out: &mut impl Write, total: usize, shown: usize, folded: u64) -> io::Result<()> {
    if total > shown {
        writeln!(out, "  ... {} more", total - shown)?;
    }
    if folded > 0 {
        writeln!(out, "  +{folded} others (table full, aggregated)")?;
    }
    Ok(())
}

/// Text tables, like `top -b`: a header, verdicts, then the busiest rows.
pub fn write_text(out: &mut impl Write, model: &Model, rows: usize) -> io::Result<()> {
    let sys = &model.system;
    let time = sys.clock.map_or_else(
        || format!("+{:.1}s", model.observed_s),
        |c| c.rfc3339(model.now_ns),
    );
    writeln!(
        out,
        "portwatch top - {time}  host {} ({})  observed {:.0}s",
        sys.hostname, sys.kernel, model.observed_s
    )?;
    let range = sys
        .port_range
        .map_or("?".into(), |(a, b)| format!("{a}-{b}"));
    writeln!(
        out,
        "ports {range} budget {}  TIME_WAIT {} inuse {}  new {:.1}/s (1s {:.1}, 60s {:.1})  \
         failures {:.1}/s ({} total)  lost {}",
        sys.budget.map_or("?".into(), |b| b.to_string()),
        sys.sockstat_tw.map_or("?".into(), |v| v.to_string()),
        sys.sockstat_inuse.map_or("?".into(), |v| v.to_string()),
        sys.new_per_s_10s,
        sys.new_per_s_1s,
        sys.new_per_s_60s,
        sys.connect_errors_per_s_10s,
        sys.connect_errors_total,
        sys.lost_events
    )?;
    if !sys.connect_errors_by_cause.is_empty() {
        let causes: Vec<String> = sys
            .connect_errors_by_cause
            .iter()
            .map(|c| format!("{} {}", c.cause.as_str(), c.count))
            .collect();
        writeln!(
            out,
            "failures by cause: {}  SYN retransmits {}",
            causes.join(", "),
            sys.syn_retransmits
        )?;
    }
    if let Some(ct) = &sys.conntrack {
        writeln!(out, "{}", ct.text())?;
    }
    if let (Some(tw), Some(rec), Some(ovf)) =
        (sys.tw_per_s, sys.tw_recycled_per_s, sys.tw_overflow_per_s)
    {
        writeln!(
            out,
            "kernel: TW {tw:.1}/s  TWRecycled {rec:.1}/s  TCPTimeWaitOverflow {ovf:.1}/s"
        )?;
    }
    writeln!(out)?;
    writeln!(out, "VERDICTS ({})", model.verdicts.len())?;
    for v in &model.verdicts {
        writeln!(
            out,
            "  {} {} -> {}:{}  pids {:?}  {:.1}/s  p50 {} ms  TIME_WAIT {} ({:.1}% of budget)",
            v.verdict,
            v.service,
            addr(v.daddr),
            v.dport,
            v.pids,
            v.new_per_s,
            opt_ms(v.lifetime_p50_ms),
            v.time_wait,
            v.budget_share * 100.0
        )?;
        if let (Some(cw), Some(held)) = (v.close_wait, v.held_ports) {
            writeln!(
                out,
                "    CLOSE_WAIT {cw}  held {held}  for {:.0} s  EADDRNOTAVAIL caused {}",
                v.held_for_s.unwrap_or(0.0),
                v.failures_caused.unwrap_or(0)
            )?;
        }
        writeln!(out, "    evidence: {}", v.evidence)?;
        writeln!(out, "    fix: {}", v.fix)?;
        crate::render::write_call_sites(out, &v.call_sites)?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "SERVICES {:<28} {:<14} {:>8} {:>8} {:>9} {:>9} {:>6} {:>6} {:>6}",
        "", "KIND", "NEW/S", "TOTAL", "LIFE_P50", "LIFE_P99", "LOCAL", "TW", "ERR"
    )?;
    for s in model.services.iter().take(rows) {
        writeln!(
            out,
            "  {:<35} {:<14} {:>8.1} {:>8} {:>9} {:>9} {:>6} {:>6} {:>6}",
            s.service.name,
            s.service.kind.as_str(),
            s.stats.new_per_s_10s,
            s.stats.new_total,
            opt_ms(s.stats.lifetime_p50_ms),
            opt_ms(s.stats.lifetime_p99_ms),
            opt_pct(s.stats.closed_locally_share),
            s.stats.time_wait,
            s.stats.connect_errors_total
        )?;
    }
    more(out, model.services.len(), rows, model.others.services)?;
    writeln!(out)?;
    writeln!(
        out,
        "DESTINATIONS {:<25} {:>8} {:>9} {:>7} {:>6} {:>7} {:>8} {:>12} {:>10}",
        "",
        "NEW/S",
        "LIFE_P50",
        "CLOSER",
        "HELD",
        "BUDGET",
        "PRESSURE",
        "TW_EXP10/30/60",
        "FORECAST"
    )?;
    for d in model.destinations.iter().take(rows) {
        let forecast = match (d.forecast.exceeds_budget, d.forecast.exhaustion_in_s) {
            (true, Some(t)) => format!("full~{t:.0}s"),
            (true, None) => "over".into(),
            (false, _) => format!("{:.0}tw", d.forecast.steady_time_wait),
        };
        writeln!(
            out,
            "  {:<35} {:>8.1} {:>9} {:>7} {:>6} {:>7} {:>7.1}% {:>14} {:>10}{}",
            addr_port(d.daddr, d.dport),
            d.stats.new_per_s_10s,
            opt_ms(d.stats.lifetime_p50_ms),
            format!("{:?}", d.closer).to_lowercase(),
            d.held_ports,
            d.budget,
            d.pressure * 100.0,
            format!(
                "{}/{}/{}",
                d.stats.tw_expiring_10s, d.stats.tw_expiring_30s, d.stats.tw_expiring_60s
            ),
            forecast,
            if d.from_socket_table { "" } else { " *" }
        )?;
    }
    // Destinations beyond the host's own networks: the NAT gateway ports
    // they need (compare with the gateway's limit).
    let nat: Vec<String> = model
        .destinations
        .iter()
        .take(rows)
        .filter_map(|d| {
            d.nat_port_demand
                .map(|n| format!("{} ~{n:.0}", addr_port(d.daddr, d.dport)))
        })
        .collect();
    if !nat.is_empty() {
        writeln!(out, "  NAT port demand: {}", nat.join(", "))?;
    }
    more(
        out,
        model.destinations.len(),
        rows,
        model.others.destinations,
    )?;
    if model.destinations.iter().any(|d| !d.from_socket_table) {
        writeln!(
            out,
            "  * no socket table read yet: HELD counts closes seen since start only"
        )?;
    }
    writeln!(
        out,
        "  (TIME_WAIT has no owning process: the socket table's share is counted per destination only)"
    )?;
    if !model.inbound.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "INBOUND (accepted here) {:<14} {:>8} {:>9} {:>8}",
            "", "NEW/S", "LIFE_P50", "TOTAL"
        )?;
        for i in model.inbound.iter().take(rows) {
            writeln!(
                out,
                "  {:<37} {:>8.1} {:>9} {:>8}",
                addr_port(i.laddr, i.lport),
                i.stats.new_per_s_10s,
                opt_ms(i.stats.lifetime_p50_ms),
                i.stats.new_total
            )?;
        }
        more(out, model.inbound.len(), rows, model.others.inbound)?;
    }
    if !sys.advice.is_empty() {
        writeln!(out)?;
        writeln!(out, "ADVICE")?;
        for a in &sys.advice {
            writeln!(out, "  [{}] {}", a.level, a.text)?;
        }
    }
    writeln!(out)
}
