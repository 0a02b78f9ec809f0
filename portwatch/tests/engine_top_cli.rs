//! `portwatch top` command line (no root needed).

use std::process::Command;

fn portwatch(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_portwatch"))
        .args(args)
        .output()
        .expect("running portwatch")
}

/// Without a terminal (as here: output is a pipe) only `--batch` can work,
/// and the error says so.
#[test]
fn top_without_batch_and_without_a_terminal_points_to_batch() {
    let out = portwatch(&["top"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--batch"), "{err}");
}

#[test]
fn top_rejects_a_non_positive_interval() {
    let out = portwatch(&["top", "--batch", "--interval", "0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--interval"));
}

#[test]
fn top_help_documents_the_verdict_thresholds_and_their_defaults() {
    let out = portwatch(&["top", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--min-new-per-s",
        "--max-lifetime-ms",
        "--min-active-s",
        "--json",
        "--iterations",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
    assert!(
        help.contains("[default: 5]") && help.contains("[default: 1000]"),
        "{help}"
    );
}

/// A flag `top` accepts does something in the mode it runs in: batch
/// options without `--batch`, and options of the interactive view with
/// it, are usage errors (exit 2) that name the flag.
#[test]
fn top_refuses_flags_that_would_do_nothing_in_its_mode() {
    for args in [
        &["top", "--json"][..],
        &["top", "--iterations", "3"],
        &["top", "--rows", "5"],
        &["top", "--interval", "1"],
        &["top", "--batch", "--delay", "2"],
        &["top", "--batch", "--view", "destinations"],
        &["top", "--batch", "--filter", "curl"],
        &["top", "--force"],
    ] {
        let out = portwatch(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        let flag = args
            .last()
            .filter(|a| a.starts_with("--"))
            .unwrap_or(&args[args.len() - 2]);
        assert!(err.contains(flag), "{args:?}: {err}");
    }
}

/// The trace filters narrow top's view (both modes): they parse, and a
/// bad value is a usage error.
#[test]
fn top_accepts_the_trace_filters_and_checks_their_values() {
    let out = portwatch(&["top", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--pid", "--comm", "--daddr", "--dport", "--netns", "--resync",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
    let out = portwatch(&["top", "--batch", "--daddr", "not-an-address"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--daddr"));
}
