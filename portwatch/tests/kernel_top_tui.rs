//! End to end, as a person would: `portwatch top` in a tmux pane, an
//! unpooled client churning in a private network namespace, the screen read
//! back with capture-pane. Needs root and tmux.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("tmux {args:?}: {e} (install tmux: cargo xtask setup)"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The service name the engine gives this test process: its cgroup's unit
/// or container when the path names one, else the process name.
fn expected_service() -> String {
    let cg = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let path = cg.lines().find_map(|l| l.strip_prefix("0::")).unwrap_or("");
    portwatch::engine::service::service_from_cgroup(path)
        .map(|s| s.to_string())
        .unwrap_or_else(process_name)
}

#[test]
fn top_shows_the_unpooled_client_first_with_the_badge_and_q_restores_the_shell() {
    if !kernel_tests_enabled() {
        return;
    }
    let session = format!("pwtest{}", std::process::id());
    let comm = "pwt-tuichurn";
    let ns = Netns::new(comm, &[]);
    let cmd = format!(
        "{} top -d 0.5; echo PW-EXITED $?; sleep 60",
        env!("CARGO_BIN_EXE_portwatch")
    );
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "100",
        "-y",
        "30",
        &cmd,
    ]);
    let _cleanup = Cleanup(session.clone());

    // Wait for the TUI to be up (its footer) before making traffic.
    let up = wait_screen(&session, Duration::from_secs(30), |s| s.contains("q quit"));
    assert!(up, "portwatch top did not start:\n{}", capture(&session));

    // Unpooled client: ~200 connections/s for up to 20 s, in the namespace.
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let churn = std::thread::spawn(move || {
        ns.run(move || {
            let addr = start_server("127.0.0.1:8080");
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline && !stop2.load(Ordering::Relaxed) {
                client_exchange(addr, 1);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
    });

    let service = expected_service();
    let mut last = String::new();
    let flagged = wait_screen(&session, Duration::from_secs(18), |s| {
        last = s.to_string();
        // First table row after the SERVICE header.
        let first = s
            .lines()
            .skip_while(|l| !l.starts_with("SERVICE"))
            .nth(1)
            .unwrap_or("");
        first.starts_with(&service) && first.contains("NO POOL")
    });
    stop.store(true, Ordering::Relaxed);
    churn.join().expect("churn thread");
    assert!(
        flagged,
        "expected {service} first with NO POOL; screen:\n{last}"
    );

    tmux(&["send-keys", "-t", &session, "q"]);
    let exited = wait_screen(&session, Duration::from_secs(10), |s| {
        s.contains("PW-EXITED 0")
    });
    let screen = capture(&session);
    assert!(exited, "portwatch did not exit cleanly on q:\n{screen}");
    assert!(
        !screen.contains("SERVICE") && !screen.contains("q quit"),
        "the TUI was left on the screen:\n{screen}"
    );
}

fn capture(session: &str) -> String {
    tmux(&["capture-pane", "-p", "-t", session])
}

/// Polls the pane (every 200 ms) until `f` holds or the timeout passes.
fn wait_screen(session: &str, timeout: Duration, mut f: impl FnMut(&str) -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f(&capture(session)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .status();
    }
}
