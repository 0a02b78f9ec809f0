//! End to end, as a person would: `portwatch top` in a tmux pane, an
//! unpooled client churning in a private network namespace, the screen read
//! back with capture-pane. Needs root and tmux.

mod common;

use std::path::Path;
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
    // Only the test's namespace counts: other traffic on the host (other
    // suites) must not outrank the test's client.
    let _cleanup = start_top_in_tmux(
        &session,
        Path::new(env!("CARGO_BIN_EXE_portwatch")),
        ns.inode,
        (100, 30),
    );

    // Wait for the TUI to be up (its footer) before making traffic.
    let up = wait_screen(&session, Duration::from_secs(30), |s| s.contains("q quit"));
    assert!(up, "portwatch top did not start:\n{}", capture(&session));

    // Unpooled client: ~200 connections/s for up to 20 s, in the namespace.
    let stop = Arc::new(AtomicBool::new(false));
    let churn = churn_unpooled(ns, 8080, Duration::from_secs(20), stop.clone());

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

/// Kills the tmux session it names when dropped.
struct Cleanup(String);

/// `BIN top -d 0.5 --netns NETNS` in a new detached tmux session of
/// `size` (columns, rows); the pane then says "PW-EXITED <status>" and
/// stays 60 s. Only the test's namespace counts: other traffic on the
/// host (other suites) must not show. The session goes with the returned
/// guard.
fn start_top_in_tmux(session: &str, bin: &Path, netns: u32, size: (u16, u16)) -> Cleanup {
    let cmd = format!(
        "{} top -d 0.5 --netns {netns}; echo PW-EXITED $?; sleep 60",
        bin.display()
    );
    let (w, h) = (size.0.to_string(), size.1.to_string());
    tmux(&["new-session", "-d", "-s", session, "-x", &w, "-y", &h, &cmd]);
    Cleanup(session.to_string())
}

/// An unpooled client in `ns`, on a thread of its own: a new connection to
/// a server on 127.0.0.1:`port` about every 5 ms (~200/s), one exchange
/// each, for `run_for` or until `stop` is set.
fn churn_unpooled(
    ns: Netns,
    port: u16,
    run_for: Duration,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        ns.run(move || {
            let addr = start_server(&format!("127.0.0.1:{port}"));
            let deadline = Instant::now() + run_for;
            while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                client_exchange(addr, 1);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
    })
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .status();
    }
}

/// The pane once drawn completely: two captures 200 ms apart that agree
/// and show the pane's bottom border (the display is paused, so a screen
/// that changes is one being drawn).
fn settled(session: &str) -> String {
    let mut prev = String::new();
    for _ in 0..50 {
        let now = capture(session);
        if now == prev && now.contains("└") {
            return now;
        }
        prev = now;
        std::thread::sleep(Duration::from_millis(200));
    }
    prev
}

/// The advice items in the pane on a captured screen: the text between the
/// pane's side borders, items separated by blank lines, wrapped lines joined.
fn pane_items(screen: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut cur = String::new();
    for line in screen.lines() {
        let Some(inner) = line
            .strip_prefix('│')
            .and_then(|l| l.trim_end().strip_suffix('│'))
        else {
            continue;
        };
        let inner = inner.trim();
        if inner.is_empty() {
            if !cur.is_empty() {
                items.push(std::mem::take(&mut cur));
            }
        } else {
            if !cur.is_empty() {
                cur.push(' ');
            }
            cur.push_str(inner);
        }
    }
    if !cur.is_empty() {
        items.push(cur);
    }
    items
}

#[test]
fn pressing_a_shows_every_advice_item_in_full_at_80x24() {
    if !kernel_tests_enabled() {
        return;
    }
    let session = format!("pwadvice{}", std::process::id());
    let ns = Netns::new("pwt-advice", &[]);
    // The test's namespace only: other traffic on the host brings advice
    // of its own (other namespaces) that this test is not about.
    let _cleanup = start_top_in_tmux(&session, &portwatch_bin(), ns.inode, (80, 24));
    let up = wait_screen(&session, Duration::from_secs(30), |s| s.contains("q quit"));
    assert!(up, "top did not start:\n{}", capture(&session));

    // An unpooled client: its verdict brings the TIME_WAIT advice with it.
    let stop = Arc::new(AtomicBool::new(false));
    let churn = churn_unpooled(ns, 8081, Duration::from_secs(25), stop.clone());
    let mut header = String::new();
    let advised = wait_screen(&session, Duration::from_secs(20), |s| {
        header = s.lines().nth(3).unwrap_or("").to_string();
        header.starts_with("advice (") && !header.starts_with("advice (1)")
    });
    // Freeze the display (tracing goes on) so the items stay put, then open
    // the pane and scroll through it.
    tmux(&["send-keys", "-t", &session, "p"]);
    stop.store(true, Ordering::Relaxed);
    churn.join().expect("churn thread");
    assert!(
        advised,
        "no advice in the header: {header}\n{}",
        capture(&session)
    );
    assert!(
        header.chars().count() <= 80 && header.ends_with("a: all"),
        "{header}"
    );
    tmux(&["send-keys", "-t", &session, "a"]);
    let opened = wait_screen(&session, Duration::from_secs(5), |s| {
        s.contains("┌ advice (")
    });
    let mut screen = settled(&session);
    assert!(opened, "a did not open the advice pane:\n{screen}");
    let count: usize = screen
        .split("┌ advice (")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .and_then(|n| n.parse().ok())
        .expect("item count in the pane title");
    let mut seen: Vec<String> = Vec::new();
    for _ in 0..20 {
        for item in pane_items(&screen) {
            if !seen.contains(&item) {
                seen.push(item);
            }
        }
        if !screen.contains("more below") {
            break;
        }
        tmux(&["send-keys", "-t", &session, "j"]);
        std::thread::sleep(Duration::from_millis(200));
        screen = settled(&session);
    }
    assert_eq!(seen.len(), count, "items read: {seen:#?}\n{screen}");
    for item in &seen {
        assert!(
            ["warning: ", "suggestion: ", "note: "]
                .iter()
                .any(|l| item.starts_with(l)),
            "{item}"
        );
        assert!(!item.contains('…'), "cut: {item}");
    }
    // The item the issue found cut at 80 columns, read in full.
    if std::fs::read_to_string("/proc/sys/net/ipv4/tcp_tw_reuse").is_ok_and(|v| v.trim() == "2") {
        let full = "net.ipv4.tcp_tw_reuse=2 (the default) reuses TIME_WAIT ports for \
                    loopback only; 1 extends it to all destinations (needs TCP timestamps on \
                    both ends, helps only the connecting side)";
        // Named by the namespace whose value it quotes when the traffic is
        // in another namespace than portwatch's ("netns:…: " or "host: ").
        assert!(
            seen.iter().any(|i| i
                .strip_prefix("suggestion: ")
                .is_some_and(|t| t == full || t.ends_with(&format!(": {full}")))),
            "{seen:#?}"
        );
    }
    tmux(&["send-keys", "-t", &session, "Escape"]);
    let closed = wait_screen(&session, Duration::from_secs(5), |s| {
        !s.contains("┌ advice (")
    });
    assert!(closed, "Esc did not close the pane:\n{}", capture(&session));
    tmux(&["send-keys", "-t", &session, "q"]);
    let exited = wait_screen(&session, Duration::from_secs(10), |s| {
        s.contains("PW-EXITED 0")
    });
    assert!(
        exited,
        "portwatch did not exit cleanly:\n{}",
        capture(&session)
    );
}
