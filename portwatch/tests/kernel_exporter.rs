//! Kernel test (root): `portwatch exporter` scraped by a real Prometheus
//! server (Debian's `prometheus`, installed by `cargo xtask setup`).
//!
//! Everything runs in a network namespace the test creates: two echo
//! servers, an unpooled and a pooled client (copies of bash named
//! `pw-unpooled` and `pw-pooled`, so they are two services), portwatch
//! (told to keep only this namespace's events), Prometheus scraping it
//! every second on loopback, and a scraper that stalls mid-request. The
//! assertions go through Prometheus's HTTP API, as a fleet would.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

mod common;
use common::{Netns, assert_promtool_accepts, kernel_tests_enabled, portwatch_bin, start_server};

/// How long the clients run before the queries (the rate window is 30 s).
const RUN: Duration = Duration::from_secs(40);

/// Kills and reaps a child when dropped (also when an assertion fails).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A plain HTTP/1.0 GET (test-side only: the exporter's server is hyper).
fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let (head, body) = resp.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < timeout, "{what} not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An instant query at `at` (unix seconds) over Prometheus's HTTP API.
fn query(prom: SocketAddr, promql: &str, at: f64) -> Vec<Value> {
    let path = format!("/api/v1/query?query={}&time={at:.3}", urlencode(promql));
    let (status, body) = http_get(prom, &path).expect("Prometheus answers");
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{body}: {e}"));
    assert_eq!(status, 200, "{promql}: {body}");
    assert_eq!(v["status"], "success", "{promql}: {body}");
    v["data"]["result"].as_array().expect("a vector").clone()
}

fn value(sample: &Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no value in {sample}"))
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// A copy of bash under `name`, so its processes' comm (and so their
/// service) is `name`.
fn bash_as(dir: &Path, name: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::copy("/bin/bash", &path).expect("copying bash");
    path
}

/// One connection per request, ~35/s, each connect logged with its time
/// (bash's $EPOCHREALTIME: no fork) so the test knows the real rate.
const UNPOOLED: &str = r#"
for ((i = 0; i < 4000; i++)); do
  exec 3<>/dev/tcp/127.0.0.3/$1 || continue
  printf ping >&3
  read -r -N4 reply <&3
  exec 3>&-
  echo "$EPOCHREALTIME" >> "$2"
  sleep 0.025
done
"#;

/// A connection reused for 100 requests (2 s), then replaced: 0.5 new/s.
const POOLED: &str = r#"
for ((c = 0; c < 60; c++)); do
  exec 3<>/dev/tcp/127.0.0.3/$1 || exit 1
  for ((i = 0; i < 100; i++)); do
    printf ping >&3
    read -r -N4 reply <&3
    sleep 0.02
  done
  exec 3>&-
done
"#;

#[test]
fn prometheus_sees_exactly_the_unpooled_service_and_its_rate() {
    if !kernel_tests_enabled() {
        return;
    }
    let prometheus = ["prometheus", "promtool"].map(|t| {
        Command::new(t)
            .arg("--version")
            .output()
            .unwrap_or_else(|e| panic!("{t} missing (`cargo xtask setup` installs it): {e}"))
    });
    assert!(prometheus.iter().all(|o| o.status.success()));
    let dir = tempfile::tempdir().expect("tempdir");
    let dir_path = dir.path().to_path_buf();
    let ns = Netns::new("pwt-exporter", &[]);
    let netns = ns.inode;
    ns.run(move || {
        let dir = dir_path.as_path();
        // Ports below the ephemeral range (the exporter folds ports inside
        // it into dport="ephemeral"), on 127.0.0.3: tracepoints are global,
        // and tests that record without a namespace filter look at
        // 127.0.0.1 only.
        let churn = start_server("127.0.0.3:17201");
        let pool = start_server("127.0.0.3:17202");
        let exporter: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let prom: SocketAddr = ([127, 0, 0, 1], free_port()).into();

        let _portwatch = Reaped(
            Command::new(portwatch_bin())
                .args([
                    "exporter",
                    "--listen",
                    &exporter.to_string(),
                    "--interval",
                    "1",
                ])
                .args(["--netns", &netns.to_string()])
                .stdout(Stdio::null())
                .spawn()
                .expect("spawning portwatch exporter"),
        );
        wait_until("the exporter's /healthz", Duration::from_secs(30), || {
            http_get(exporter, "/healthz").is_some_and(|(s, _)| s == 200)
        });

        std::fs::write(
            dir.join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: portwatch\n    static_configs:\n      \
                 - targets: ['{exporter}']\n"
            ),
        )
        .expect("writing prometheus.yml");
        let _prometheus = Reaped(
            Command::new("prometheus")
                .arg(format!(
                    "--config.file={}",
                    dir.join("prometheus.yml").display()
                ))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("data").display()
                ))
                .arg(format!("--web.listen-address={prom}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawning prometheus"),
        );
        wait_until("Prometheus ready", Duration::from_secs(30), || {
            http_get(prom, "/-/ready").is_some_and(|(s, _)| s == 200)
        });

        // A scraper that sends half a request and then nothing: it must
        // not hold up the exporter's intake or the other scrapes.
        let mut stalled = TcpStream::connect(exporter).expect("stalled scraper");
        stalled
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            .expect("half a request");

        let log = dir.join("unpooled.log");
        let unpooled = Reaped(
            Command::new(bash_as(dir, "pw-unpooled"))
                .args(["-c", UNPOOLED, "pw-unpooled"])
                .arg(churn.port().to_string())
                .arg(&log)
                .spawn()
                .expect("spawning the unpooled client"),
        );
        let pooled = Reaped(
            Command::new(bash_as(dir, "pw-pooled"))
                .args(["-c", POOLED, "pw-pooled"])
                .arg(pool.port().to_string())
                .spawn()
                .expect("spawning the pooled client"),
        );
        std::thread::sleep(RUN);
        let at = unix_now();

        // Exactly the unpooled service and its destination.
        let flagged = query(prom, "portwatch_lacks_pooling == 1", at);
        assert_eq!(flagged.len(), 1, "{flagged:#?}");
        let m = &flagged[0]["metric"];
        assert_eq!(m["service"], "pw-unpooled", "{m}");
        assert_eq!(m["daddr"], "127.0.0.3", "{m}");
        assert_eq!(m["dport"], churn.port().to_string(), "{m}");
        assert_eq!(m["job"], "portwatch", "{m}");
        // The pooled one has its series, at 0.
        let pooled_series = query(prom, r#"portwatch_lacks_pooling{service="pw-pooled"}"#, at);
        assert_eq!(pooled_series.len(), 1, "{pooled_series:#?}");
        assert_eq!(value(&pooled_series[0]), 0.0);
        assert_eq!(pooled_series[0]["metric"]["dport"], pool.port().to_string());

        // The rate Prometheus computes against the client's own log.
        let promql = r#"rate(portwatch_connections_opened_total{service="pw-unpooled"}[30s])"#;
        let rate = query(prom, promql, at);
        assert_eq!(rate.len(), 1, "{rate:#?}");
        let measured = value(&rate[0]);
        let times: Vec<f64> = std::fs::read_to_string(&log)
            .expect("the client's log")
            .lines()
            .filter_map(|l| l.parse().ok())
            .collect();
        let real = times.iter().filter(|&&t| t > at - 30.0 && t <= at).count() as f64 / 30.0;
        eprintln!("client: {real:.2} connections/s; Prometheus rate(): {measured:.2}/s");
        assert!(real > 20.0, "the client ran too slowly to test: {real}/s");
        assert!(
            (measured - real).abs() <= 0.10 * real,
            "rate() {measured:.2}/s vs real {real:.2}/s"
        );

        // The target stayed up through the stalled scrape, nothing was lost.
        let up = query(prom, r#"up{job="portwatch"}"#, at);
        assert_eq!(up.len(), 1);
        assert_eq!(value(&up[0]), 1.0, "{up:#?}");
        let lost = query(prom, "portwatch_events_lost_total", at);
        assert_eq!(lost.len(), 6, "one series per reason: {lost:#?}");
        let under_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        for s in &lost {
            let (reason, n) = (s["metric"]["reason"].as_str().unwrap_or(""), value(s));
            // Losses are counted over every event on the host, not just
            // this namespace's: on a shared machine other tests' full-rate
            // churn and tracers cause some (kernel-skipped runs above all).
            // Under CI, where nothing else runs, every reason must be 0.
            if !under_ci {
                if n > 0.0 {
                    eprintln!("note: {n} events lost ({reason}) to other load on this host");
                }
                continue;
            }
            assert_eq!(n, 0.0, "events lost ({reason}): {lost:#?}");
        }
        let series = query(prom, "portwatch_exporter_series", at);
        eprintln!("series exported by this node: {}", value(&series[0]));

        // promtool accepts a real scrape.
        let (status, text) = http_get(exporter, "/metrics").expect("a scrape");
        assert_eq!(status, 200);
        assert_promtool_accepts("promtool", &text);

        drop(stalled);
        drop((unpooled, pooled));
    });
    drop(dir);
}
