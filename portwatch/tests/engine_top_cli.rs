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
