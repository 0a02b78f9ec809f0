//! `portwatch top` command line (no root needed).

use std::process::Command;

fn portwatch(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_portwatch"))
        .args(args)
        .output()
        .expect("running portwatch")
}

#[test]
fn top_without_batch_says_to_use_batch() {
    let out = portwatch(&["top"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the TUI is not built yet; use --batch"),
        "{err}"
    );
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
