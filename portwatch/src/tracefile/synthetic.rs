//! Deterministic, realistic input streams for tests and benchmarks of the
//! trace format (no randomness crate: a small LCG keeps it reproducible).

use std::net::{IpAddr, Ipv4Addr};

use crate::clock::WallClock;
use crate::event::{Comm, ConnClose, Direction, Event, Task};
use crate::input::{HostInfo, Input, Sysctls};

/// A bare host record for benchmarks: host namespace 1, the default port
/// range and no other sysctl known.
pub fn bare_host() -> Input {
    Input::Host(HostInfo {
        hostname: "bench".into(),
        kernel: "6.18".into(),
        clock: WallClock {
            mono_ns: 0,
            unix_ns: 1_700_000_000_000_000_000,
        },
        netns: 1,
        sysctls: Sysctls {
            port_range: (32768, 60999),
            ..Sysctls::default()
        },
    })
}

/// The main thread of process `pid`: its thread carries the process's name.
pub fn main_thread(pid: u32, comm: &str, cgroup_id: u64) -> Task {
    Task {
        pid,
        tid: pid,
        comm: Comm::new(comm),
        thread: Comm::new(comm),
        cgroup_id,
    }
}

/// An established outbound connection of `task` in `netns`, from
/// 127.0.0.1:40000 to `daddr`:`dport`, open from `start_ns` to `end_ns`
/// and closed first by this host (so its TIME_WAIT is here); no handshake
/// time or byte counts (set them with `..` where they matter).
pub fn closed_here(
    task: Option<Task>,
    netns: u32,
    (daddr, dport): (IpAddr, u16),
    start_ns: u64,
    end_ns: u64,
) -> ConnClose {
    ConnClose {
        start_ns,
        end_ns,
        handshake_ns: None,
        task,
        netns,
        direction: Direction::Outbound,
        saddr: IpAddr::V4(Ipv4Addr::LOCALHOST),
        sport: 40000,
        daddr,
        dport,
        bytes: None,
        local_close: true,
        peer_close: false,
        established: true,
        errno: None,
        syn_retrans: 0,
        bound_port: false,
    }
}

/// A plausible host record.
pub fn host(mono_ns: u64) -> HostInfo {
    HostInfo {
        hostname: "web-7f9c".into(),
        kernel: "6.18.44-generic".into(),
        clock: WallClock {
            mono_ns,
            unix_ns: 1_700_000_000_000_000_000,
        },
        netns: 4026531840,
        sysctls: Sysctls {
            port_range: (32768, 60999),
            reserved_ports: vec![(40000, 40010)],
            tcp_tw_reuse: Some(2),
            tcp_tw_reuse_delay_ms: None,
            tcp_timestamps: Some(1),
            tcp_max_tw_buckets: Some(262144),
            tcp_fin_timeout: Some(60),
        },
    }
}

/// The churn the tool is for: 10 processes (4 threads each) closing short
/// connections to one hot destination at `rate_per_s`, with a Tick every
/// second. `events` closes in all, after the host record.
pub fn churn(events: usize, rate_per_s: u64) -> Vec<Input> {
    let start_ns = 1_000_000_000_000u64;
    let mut out = Vec::with_capacity(events + events / rate_per_s.max(1) as usize + 2);
    out.push(Input::Host(host(start_ns)));
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rand = move |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    let gap_ns = 1_000_000_000 / rate_per_s.max(1);
    let mut now_ns = start_ns;
    let mut next_tick_ns = start_ns + 1_000_000_000;
    let mut sport = 32768u16;
    for _ in 0..events {
        // Jittered inter-arrival times, like a real event stream.
        now_ns += gap_ns / 2 + rand(gap_ns.max(1));
        if now_ns >= next_tick_ns {
            out.push(Input::Tick {
                now_ns: next_tick_ns,
            });
            next_tick_ns += 1_000_000_000;
        }
        let proc_idx = rand(10) as u32;
        let thread_idx = rand(4) as u32;
        let task = Task {
            pid: 1000 + proc_idx,
            tid: 1000 + proc_idx + 100 * thread_idx,
            comm: Comm::new(&format!("service-{proc_idx}")),
            // The main thread keeps the process name, like real ones do.
            thread: if thread_idx == 0 {
                Comm::new(&format!("service-{proc_idx}"))
            } else {
                Comm::new(&format!("pool-1-thread-{thread_idx}"))
            },
            cgroup_id: 5000 + u64::from(proc_idx),
        };
        sport = if sport >= 60997 { 32768 } else { sport + 2 };
        let lifetime_ns = 200_000 + rand(2_000_000);
        let hot = (IpAddr::V4(Ipv4Addr::new(10, 0, 9, 20)), 5432);
        out.push(Input::Event(Event::Close(ConnClose {
            handshake_ns: Some(30_000 + rand(40_000)),
            saddr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5)),
            sport,
            bytes: Some((80 + rand(400), 200 + rand(4000))),
            ..closed_here(Some(task), 4026531840, hot, now_ns - lifetime_ns, now_ns)
        })));
    }
    out
}
