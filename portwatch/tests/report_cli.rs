//! `portwatch report` and `portwatch replay` as a user runs them: exit
//! codes and messages for good, damaged and unreadable files (no root).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/golden/unpooled_pooled.pwtrace")
}

fn portwatch(args: &[&str], file: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_portwatch"))
        .args(args)
        .arg(file)
        .stdin(Stdio::null())
        .output()
        .expect("run portwatch")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn report_prints_plain_text_without_escape_codes() {
    let out = portwatch(&["report"], &golden());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.contains("VERDICTS (1)"), "{s}");
    assert!(s.contains("127.0.0.1:17101"), "{s}");
    assert!(!s.bytes().any(|b| b == 0x1b), "escape code in {s}");
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
}

#[test]
fn report_json_is_one_object() {
    let out = portwatch(&["report", "--json"], &golden());
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["verdicts"][0]["verdict"], "lacks_pooling");
}

#[test]
fn truncated_file_is_reported_up_to_the_damage_with_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.pwtrace");
    let bytes = std::fs::read(golden()).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let out = portwatch(&["report"], &path);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("warning") && err.contains("at byte"), "{err}");
    let s = text(&out.stdout);
    assert!(s.contains("WARNINGS"), "{s}");
    // What was read before the cut still convicts the unpooled client.
    assert!(s.contains("VERDICTS (1)"), "{s}");
}

#[test]
fn unreadable_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "not a trace at all\n").unwrap();
    let out = portwatch(&["report"], &path);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("not a portwatch trace"), "{err}");
    assert!(out.stdout.is_empty());

    let out = portwatch(&["report"], &dir.path().join("missing.pwtrace"));
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("missing.pwtrace"));
}

#[test]
fn replay_without_a_terminal_says_what_to_use_instead() {
    let out = portwatch(&["replay"], &golden());
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("not a terminal"), "{err}");
    assert!(err.contains("portwatch report"), "{err}");
}

#[test]
fn replay_refuses_a_negative_speed() {
    let out = portwatch(&["replay", "--speed=-1"], &golden());
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("--speed"));
}

#[test]
fn damage_before_the_end_still_reports_but_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flipped.pwtrace");
    let mut bytes = std::fs::read(golden()).unwrap();
    // Flip a byte in the middle: a checksum catches it; frames after it are lost.
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let out = portwatch(&["report"], &path);
    assert!(!out.status.success(), "damage must show in the exit status");
    let err = text(&out.stderr);
    assert!(err.contains("damaged"), "{err}");
    assert!(
        text(&out.stdout).contains("WARNINGS"),
        "the readable part is still reported"
    );
}

/// The golden trace's traffic ran in a namespace of the test's: named
/// `netns:INODE` (no pod, container or unit in its cgroups).
const GOLDEN_NS: &str = "netns:4026532177";

#[test]
fn report_netns_by_name_keeps_that_namespace_only() {
    let out = portwatch(&["report", "--json", "--netns", GOLDEN_NS], &golden());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let dests = v["destinations"].as_array().expect("destinations");
    assert!(!dests.is_empty());
    for d in dests {
        assert_eq!(d["netns_name"], GOLDEN_NS, "{d}");
        assert_eq!(d["netns"], 4026532177u32, "{d}");
    }
    assert_eq!(v["verdicts"][0]["netns_name"], GOLDEN_NS);
    // The host's namespace had none of the test's traffic.
    let out = portwatch(&["report", "--json", "--netns", "host"], &golden());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["verdicts"].as_array().map(Vec::len), Some(0), "{v}");
}

#[test]
fn report_with_a_netns_name_the_trace_lacks_exits_2_naming_those_it_has() {
    let out = portwatch(&["report", "--netns", "pod:nope"], &golden());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("--netns pod:nope"), "{err}");
    assert!(err.contains("host (") && err.contains(GOLDEN_NS), "{err}");
    assert!(out.stdout.is_empty());
}
