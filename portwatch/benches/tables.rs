//! What the engine spends applying one socket table of a churning
//! namespace (issue 14): ~27,000 TIME_WAIT sockets to one service, its
//! listener and a few open connections, read with TIME_WAIT (a full table)
//! or without it (most readings; see `live::FULL_TABLE_EVERY`).
//!
//! `cargo bench -p portwatch --bench tables` prints the time per table.
//! Instruction counts, steadier on a shared VM: build it
//! (`cargo bench -p portwatch --bench tables --no-run`), then
//! `valgrind --tool=callgrind --collect-atstart=no
//! --toggle-collect='*Engine*on_sockets*' BENCH_BINARY full` (or `partial`)
//! and divide the total by the tables applied (printed).

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use portwatch::engine::{Config, Engine};
use portwatch::event::{ConnClose, Event};
use portwatch::input::{Input, SockState, SocketEntry, SocketTable};
use portwatch::tracefile::synthetic::{bare_host, closed_here, main_thread};

const NS: u32 = 4_026_532_500;
const S: u64 = 1_000_000_000;
const TIME_WAIT: u16 = 27_000;
const TABLES: u64 = 20;
const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn sock(state: SockState, sport: u16, dport: u16) -> SocketEntry {
    SocketEntry {
        state,
        saddr: LO,
        sport,
        daddr: LO,
        dport,
        expires_ms: if state == SockState::TimeWait {
            45_000
        } else {
            0
        },
        uid: 0,
        inode: if state == SockState::TimeWait {
            0
        } else {
            u32::from(sport)
        },
    }
}

/// The namespace's table at `ts_ns`: the listener on 8080, 20 connections
/// to it (both ends), and, when full, the TIME_WAIT sockets of the churn.
fn table(ts_ns: u64, full: bool) -> Input {
    let mut entries = vec![sock(SockState::Other(10), 8080, 0)];
    for p in 0..20 {
        entries.push(sock(SockState::Established, 32768 + p, 8080));
        entries.push(sock(SockState::Established, 8080, 32768 + p));
    }
    if full {
        entries.extend((0..TIME_WAIT).map(|p| sock(SockState::TimeWait, 33000 + p, 8080)));
    }
    Input::Sockets(SocketTable {
        ts_ns,
        netns: NS,
        entries,
        without_time_wait: !full,
    })
}

fn close(end_ns: u64, sport: u16) -> Input {
    let task = main_thread(100, "client", 1);
    Input::Event(Event::Close(ConnClose {
        handshake_ns: Some(40_000),
        sport,
        ..closed_here(Some(task), NS, (LO, 8080), end_ns - 300_000, end_ns)
    }))
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let kinds: Vec<bool> = match mode.as_str() {
        "full" => vec![true],
        "partial" => vec![false],
        _ => vec![true, false],
    };
    for full in kinds {
        let mut e = Engine::new(Config::default());
        e.apply(&bare_host());
        // The namespace's row exists (its events made it), and its first
        // table is full.
        e.apply(&close(S / 2, 60000));
        e.apply(&table(S, true));
        let tables: Vec<Input> = (0..TABLES).map(|i| table((2 + i) * S, full)).collect();
        let start = Instant::now();
        for t in &tables {
            e.apply(t);
        }
        let took = start.elapsed();
        println!(
            "{} table: {} applied, {:.0} µs each",
            if full { "full" } else { "without TIME_WAIT" },
            TABLES,
            took.as_secs_f64() * 1e6 / TABLES as f64
        );
    }
}
