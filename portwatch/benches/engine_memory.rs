//! Memory bound: a flood of connections to 1,000,000 distinct destinations
//! (synthetic events into the engine) must keep the process's peak RSS
//! under the documented cap. Prints the figures; exits non-zero only if
//! the cap is exceeded. Run: `cargo bench -p portwatch --bench engine_memory`.

use std::net::{IpAddr, Ipv4Addr};

use portwatch::engine::{Config, Engine};
use portwatch::event::{ConnClose, Event};
use portwatch::input::Input;
use portwatch::tracefile::synthetic::{bare_host, closed_here, main_thread};

const DESTINATIONS: u32 = 1_000_000;
/// The cap documented in the README.
const CAP_MIB: f64 = 100.0;

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    // `cargo bench` passes --bench; nothing else to parse.
    let before = status_kib("VmRSS:");
    let mut e = Engine::new(Config::default());
    e.apply(&bare_host());
    let start = std::time::Instant::now();
    for n in 0..DESTINATIONS {
        let end_ns = 1_000_000_000 + u64::from(n) * 10_000; // 100k/s
        if n % 1000 == 0 {
            e.apply(&Input::Tick { now_ns: end_ns });
        }
        let task = main_thread(1000 + n % 50_000, "flood", u64::from(n % 100));
        let daddr = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | n));
        e.apply(&Input::Event(Event::Close(ConnClose {
            handshake_ns: Some(30_000),
            ..closed_here(Some(task), 1, (daddr, 443), end_ns - 200_000, end_ns)
        })));
    }
    let model = e.model(1_000_000_000 + u64::from(DESTINATIONS) * 10_000);
    let elapsed = start.elapsed();
    let peak_mib = status_kib("VmHWM:") as f64 / 1024.0;
    println!(
        "engine_memory: {DESTINATIONS} distinct destinations in {:.2} s ({:.0} events/s); \
         destinations shown {}, folded into others ~{} (exactly {}, estimated); RSS before {:.1} MiB, peak {:.1} MiB (cap {CAP_MIB} MiB)",
        elapsed.as_secs_f64(),
        f64::from(DESTINATIONS) / elapsed.as_secs_f64(),
        model.destinations.len(),
        model.others.destinations,
        DESTINATIONS as usize - model.destinations.len(),
        before as f64 / 1024.0,
        peak_mib
    );
    if peak_mib > CAP_MIB {
        eprintln!("engine_memory: peak RSS {peak_mib:.1} MiB exceeds the cap of {CAP_MIB} MiB");
        std::process::exit(1);
    }
}
