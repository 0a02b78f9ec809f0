//! `portwatch exporter`'s argument errors: clear, and before anything is
//! loaded or bound (no root needed).

use std::process::Command;

fn exporter(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_portwatch"))
        .arg("exporter")
        .args(args)
        .output()
        .expect("running portwatch");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_listen_address_without_a_port_is_refused() {
    let (ok, err) = exporter(&["--listen", "localhost"]);
    assert!(!ok);
    assert!(
        err.contains("--listen") && err.contains("ADDR:PORT"),
        "{err}"
    );
}

#[test]
fn zero_destinations_per_service_is_refused() {
    let (ok, err) = exporter(&["--max-destinations", "0"]);
    assert!(!ok);
    assert!(err.contains("--max-destinations"), "{err}");
}

#[test]
fn a_non_positive_interval_is_refused() {
    let (ok, err) = exporter(&["--interval", "0"]);
    assert!(!ok);
    assert!(err.contains("--interval"), "{err}");
}
