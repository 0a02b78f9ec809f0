//! `portwatch doctor` on the real kernel: all ✔ on this host, and the
//! faults it can be shown without breaking the host: BTF hidden, syscall
//! tracepoints hidden (`PORTWATCH_SIMULATE`, read by the probe itself) and
//! no privileges (run as nobody). Its test traffic stays in a namespace of
//! its own. Runs against `PORTWATCH_BIN` when set (CI: the installed package).

mod common;

use std::process::{Command, Output};

use common::{kernel_tests_enabled, portwatch_bin};
use serde_json::Value;

/// Every check doctor makes on a host where everything works, in order.
const CHECKS: &[&str] = &[
    "kernel",
    "privileges",
    "tracefs",
    "tracepoint sock:inet_sock_set_state",
    "tracepoint syscalls:sys_enter_connect",
    "tracepoint syscalls:sys_exit_connect",
    "tracepoint tcp:tcp_retransmit_skb",
    "tracepoint syscalls:sys_enter_bind",
    "tracepoint syscalls:sys_exit_bind",
    "BTF",
    "load and attach",
    "events",
    "failed connects",
    "network namespaces",
    "cgroup v2",
    "sock_diag",
];

fn doctor(args: &[&str], simulate: Option<&str>) -> Output {
    let mut cmd = Command::new(portwatch_bin());
    cmd.arg("doctor")
        .args(args)
        .env_remove("PORTWATCH_SIMULATE");
    if let Some(s) = simulate {
        cmd.env("PORTWATCH_SIMULATE", s);
    }
    cmd.output().expect("run portwatch doctor")
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor --json printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {report:#}"))
}

#[test]
fn on_this_host_every_check_is_ticked_and_it_exits_0() {
    if !kernel_tests_enabled() {
        return;
    }
    let out = doctor(&[], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), CHECKS.len() + 1, "{text}");
    for (line, name) in lines.iter().zip(CHECKS) {
        assert!(
            line.starts_with(&format!("✔ {name}: ")),
            "expected ✔ {name}: {line}"
        );
    }
    assert_eq!(
        lines.last().copied(),
        Some("portwatch top will work fully (exit 0)")
    );
}

#[test]
fn json_has_every_check_ok_for_fleets() {
    if !kernel_tests_enabled() {
        return;
    }
    let out = doctor(&["--json"], None);
    assert_eq!(out.status.code(), Some(0));
    let r = json(&out);
    assert_eq!(r["status"], "ok");
    assert_eq!(r["exit_code"], 0);
    let names: Vec<&str> = r["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| c["check"].as_str().expect("name"))
        .collect();
    assert_eq!(names, CHECKS);
    for c in r["checks"].as_array().unwrap() {
        assert_eq!(c["status"], "ok", "{c}");
        assert!(
            c["fix"].is_null() && c["degrades"] == serde_json::json!([]),
            "{c}"
        );
    }
    // The self-test really ran in a private namespace and saw its events.
    assert!(
        check(&r, "events")["detail"]
            .as_str()
            .unwrap()
            .contains("private network namespace")
    );
    assert!(
        check(&r, "failed connects")["detail"]
            .as_str()
            .unwrap()
            .contains("ENETUNREACH")
    );
}

#[test]
fn without_btf_it_is_degraded_and_names_the_null_fields() {
    if !kernel_tests_enabled() {
        return;
    }
    let out = doctor(&["--json"], Some("no-btf"));
    assert_eq!(out.status.code(), Some(1));
    let r = json(&out);
    assert_eq!(r["status"], "degraded");
    let btf = check(&r, "BTF");
    assert_eq!(btf["status"], "degraded");
    assert!(
        btf["fix"]
            .as_str()
            .unwrap()
            .contains("CONFIG_DEBUG_INFO_BTF")
    );
    let degrades = btf["degrades"].to_string();
    for field in ["bytes_sent", "bytes_received", "netns"] {
        assert!(degrades.contains(field), "{degrades}");
    }
    // Events still flow, without their namespace.
    assert_eq!(check(&r, "events")["status"], "ok");
    assert_eq!(check(&r, "network namespaces")["status"], "degraded");
    assert_eq!(check(&r, "load and attach")["status"], "ok");
}

#[test]
fn without_syscall_tracepoints_it_is_degraded_and_attaches_the_rest() {
    if !kernel_tests_enabled() {
        return;
    }
    let out = doctor(&["--json"], Some("no-syscall-tracepoints"));
    assert_eq!(out.status.code(), Some(1));
    let r = json(&out);
    for tp in ["sys_enter_connect", "sys_exit_connect"] {
        let c = check(&r, &format!("tracepoint syscalls:{tp}"));
        assert_eq!(c["status"], "degraded", "{c}");
        assert!(
            c["fix"]
                .as_str()
                .unwrap()
                .contains("CONFIG_FTRACE_SYSCALLS")
        );
    }
    let load = check(&r, "load and attach");
    assert_eq!(load["status"], "ok");
    assert!(
        !load["detail"].as_str().unwrap().contains("syscalls"),
        "{load}"
    );
    assert_eq!(check(&r, "events")["status"], "ok");
    assert!(
        r["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["check"] != "failed connects"),
        "failed connects cannot be checked without the connect() tracepoints"
    );
}

#[test]
fn an_optional_tracepoint_with_another_layout_degrades_instead_of_failing() {
    if !kernel_tests_enabled() {
        return;
    }
    let out = doctor(&["--json"], Some("retransmit-layout-differs"));
    assert_eq!(out.status.code(), Some(1), "degraded, not fatal");
    let r = json(&out);
    let c = check(&r, "tracepoint tcp:tcp_retransmit_skb");
    assert_eq!(c["status"], "degraded", "{c}");
    assert!(
        c["detail"]
            .as_str()
            .unwrap()
            .contains("record layout differs"),
        "{c}"
    );
    assert!(
        c["degrades"].to_string().contains("SYN retransmissions"),
        "{c}"
    );
    let load = check(&r, "load and attach");
    assert_eq!(load["status"], "ok", "{load}");
    let detail = load["detail"].as_str().unwrap();
    assert!(!detail.contains("tcp_retransmit_skb"), "{load}");
    assert!(detail.contains("inet_sock_set_state"), "{load}");
    assert_eq!(check(&r, "events")["status"], "ok");
}

#[test]
fn without_privileges_it_cannot_run_and_says_why() {
    if !kernel_tests_enabled() {
        return;
    }
    use std::os::unix::process::CommandExt;
    let out = Command::new(portwatch_bin())
        .arg("doctor")
        .uid(65534) // nobody
        .gid(65534)
        .output()
        .expect("run portwatch doctor as nobody");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("✗ privileges: "))
        .unwrap_or_else(|| panic!("no ✗ privileges line: {text}"));
    assert!(line.contains("missing: CAP_BPF, CAP_PERFMON"), "{line}");
    assert!(line.contains("fix: run it with sudo"), "{line}");
    assert!(text.ends_with("cannot run here until the ✗ above are fixed (exit 2)\n"));
}
