//! `top --record FILE` keeps the trace while the view runs: the file holds
//! every connection the view counted. Needs root.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn top_batch_with_record_writes_every_connection_to_the_trace() {
    if !kernel_tests_enabled() {
        return;
    }
    const N: u64 = 30;
    let comm = "pwt-toprec";
    let ns = Netns::new(comm, &[]);
    let dir = std::env::temp_dir().join(format!("pw-toprec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("top.pwt");
    let file_arg = file.display().to_string();
    let netns = ns.inode.to_string();
    let mut tracer = Tracer::start(&[
        "top",
        "--batch",
        "--json",
        "--interval",
        "0.5",
        "--netns",
        &netns,
        "--record",
        &file_arg,
    ]);
    let server = ns.run(|| start_server_with_connections("127.0.0.1:0", N as usize));
    // The view has counted them all once a snapshot shows N to the server.
    let counted = tracer.wait_for(Duration::from_secs(20), |seen| {
        seen.iter().any(|s| {
            s["destinations"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|d| d["dport"] == server.port() && d["new_total"].as_u64() == Some(N))
        })
    });
    let (exited_ok, stderr, _) = tracer.stop();
    assert!(counted && exited_ok, "{stderr:?}");
    assert_no_loss(&stderr);
    assert!(stderr.iter().any(|l| l.contains("recorded")), "{stderr:?}");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portwatch"))
        .args(["export", "--format", "jsonl"])
        .arg(&file)
        .output()
        .expect("export");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let closes = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON line"))
        .filter(|v| {
            v["event"] == "close"
                && v["direction"] == "out"
                && v["thread"] == comm
                && v["netns"] == ns.inode
                && v["dport"] == server.port()
        })
        .count() as u64;
    assert_eq!(
        closes, N,
        "the trace holds every connection the view counted"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
