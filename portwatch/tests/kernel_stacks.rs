//! Kernel test (root): sampled connect() stacks name the function that opens
//! the connections of a flagged pair.
//!
//! A small C client, compiled here with frame pointers and debug info,
//! connects from `open_unpooled_connection` in a loop without reuse, inside a
//! network namespace this test creates (loopback only). `portwatch top
//! --batch --json --netns INODE --stack-sample 2` must flag the pair and its
//! top call site must include that function. In CI (CI=true) the test fails
//! when it cannot run; elsewhere it prints a notice and returns.

use std::process::{Command, Stdio};

mod common;
use common::{Netns, kernel_tests_enabled, start_server, top_batch_json, top_batch_snapshots};

const CLIENT_C: &str = r#"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

/* The libc wrapper has no frame of its own, so the kernel's frame-pointer
   walk sees its caller's caller: the function under test calls through
   dial() so that it is on the walked chain. */
__attribute__((noinline)) int dial(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

__attribute__((noinline)) void open_unpooled_connection(int port) {
    char b[4];
    int fd = dial(port);
    if (fd < 0)
        return;
    if (write(fd, "ping", 4) == 4)
        (void)read(fd, b, 4);
    close(fd);
}

int main(int argc, char **argv) {
    int port = atoi(argv[1]), n = atoi(argv[2]);
    for (int i = 0; i < n; i++) {
        open_unpooled_connection(port);
        usleep(20000);
    }
    return 0;
}
"#;

/// Builds the client into `dir`; panics (with gcc's words) if it cannot.
fn build_client(dir: &std::path::Path) -> std::path::PathBuf {
    let src = dir.join("client.c");
    let bin = dir.join("pwclient");
    std::fs::write(&src, CLIENT_C).expect("writing client.c");
    let out = Command::new("gcc")
        .args(["-O1", "-g", "-fno-omit-frame-pointer", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .expect("running gcc (apt-get install gcc)");
    assert!(
        out.status.success(),
        "gcc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

#[test]
fn a_flagged_pairs_top_call_site_names_the_connecting_function() {
    if !kernel_tests_enabled() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = build_client(dir.path());
    let ns = Netns::new("pwt-stacks", &[]);
    let netns = ns.inode;
    let (snaps, port) = ns.run(move || {
        let server = start_server("127.0.0.1:0");
        let (child, rx) = top_batch_json(
            50,
            &[
                "--iterations",
                "9",
                "--netns",
                &netns.to_string(),
                "--stack-sample",
                "2",
            ],
        );
        // ~50 connections/s for at most 12 s: past the verdict's thresholds.
        let mut client = Command::new(&bin)
            .arg(server.port().to_string())
            .arg("600")
            .stdout(Stdio::null())
            .spawn()
            .expect("starting the client");
        let snaps = top_batch_snapshots(child, rx);
        let _ = client.kill();
        let _ = client.wait();
        (snaps, server.port())
    });
    let last = snaps.last().expect("a snapshot");
    let v = last["verdicts"]
        .as_array()
        .expect("verdicts")
        .iter()
        .find(|v| v["dport"] == port)
        .unwrap_or_else(|| panic!("no verdict for :{port} in {last}"));
    assert_eq!(v["service"]["name"], "pwclient", "{v}");
    let sites = v["call_sites"]
        .as_array()
        .unwrap_or_else(|| panic!("no call_sites in {v}"));
    let top = &sites[0];
    let frames: Vec<&str> = top["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .filter_map(|f| f.as_str())
        .collect();
    assert!(
        frames
            .iter()
            .any(|f| f.starts_with("open_unpooled_connection")),
        "top call site {top} lacks open_unpooled_connection"
    );
    // One loop, one call site: it holds every sample.
    assert!(top["share"].as_f64().is_some_and(|s| s > 0.99), "{sites:?}");
    assert!(top["samples"].as_u64().is_some_and(|n| n >= 10), "{top}");
    assert_eq!(last["system"]["lost_events"], 0);
}
