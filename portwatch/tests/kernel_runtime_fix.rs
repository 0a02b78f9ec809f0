//! Kernel test (root): the `lacks_pooling` fix names the client's runtime.
//!
//! An unpooled Python client, an unpooled Perl client and an unpooled
//! Node.js client (each a new TCP connection per request, in a loop)
//! connect to servers on loopback inside a network namespace this test
//! creates. `portwatch top --batch --json --netns INODE` must flag each
//! pair, with `runtime.name` read from the process (Python, Perl, Node.js)
//! and a fix in that runtime's words. In CI (CI=true) the test fails when
//! it cannot run; elsewhere it prints a notice and returns.

use std::process::{Child, Command, Stdio};

mod common;
use common::{Netns, kernel_tests_enabled, start_server, top_batch_json, top_batch_snapshots};

const PYTHON: &str = r#"
import socket, sys, time
port = int(sys.argv[1])
for _ in range(600):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"ping")
    s.recv(4)
    s.close()
    time.sleep(0.02)
"#;

const PERL: &str = r#"
use IO::Socket::INET;
my $port = $ARGV[0];
for (1..600) {
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1", PeerPort => $port, Proto => "tcp") or next;
    print $s "ping";
    my $b; read($s, $b, 4);
    close($s);
    select(undef, undef, undef, 0.02);
}
"#;

const NODE: &str = r#"
const net = require("net");
const port = Number(process.argv[1]);
let n = 0;
function once() {
  if (n++ >= 600) return;
  const s = net.connect(port, "127.0.0.1", () => s.write("ping"));
  s.on("data", () => s.end());
  s.on("error", () => {});
  s.on("close", () => setTimeout(once, 20));
}
once();
"#;

fn spawn(prog: &str, args: &[&str], port: u16) -> Option<Child> {
    Command::new(prog)
        .args(args)
        .arg(port.to_string())
        .stdout(Stdio::null())
        .spawn()
        .ok()
}

#[test]
fn the_fix_names_the_runtime_of_each_unpooled_client() {
    if !kernel_tests_enabled() {
        return;
    }
    // Node.js is optional on a host; Python and Perl are required.
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let ns = Netns::new("pwt-rtfix", &[]);
    let netns = ns.inode;
    let (snaps, ports) = ns.run(move || {
        let servers = [
            start_server("127.0.0.1:0"),
            start_server("127.0.0.1:0"),
            start_server("127.0.0.1:0"),
        ];
        let (child, rx) = top_batch_json(50, &["--iterations", "9", "--netns", &netns.to_string()]);
        let mut clients = vec![
            spawn("python3", &["-c", PYTHON], servers[0].port()).expect("starting python3"),
            spawn("perl", &["-e", PERL], servers[1].port()).expect("starting perl"),
        ];
        if node {
            clients.push(spawn("node", &["-e", NODE], servers[2].port()).expect("starting node"));
        }
        let snaps = top_batch_snapshots(child, rx);
        for c in &mut clients {
            let _ = c.kill();
            let _ = c.wait();
        }
        (snaps, servers.map(|s| s.port()))
    });
    let last = snaps.last().expect("a snapshot");
    let verdict = |port: u16| {
        last["verdicts"]
            .as_array()
            .expect("verdicts")
            .iter()
            .find(|v| v["dport"] == port && v["verdict"] == "lacks_pooling")
            .unwrap_or_else(|| panic!("no lacks_pooling verdict for :{port} in {last}"))
            .clone()
    };
    let mut cases = vec![
        (ports[0], "Python", "requests.Session()"),
        (ports[1], "Perl", "LWP::UserAgent"),
    ];
    if node {
        cases.push((ports[2], "Node.js", "keepAlive: true"));
    } else {
        eprintln!("node not installed: the Node.js client is left out");
    }
    for (port, name, words) in cases {
        let v = verdict(port);
        assert_eq!(v["runtime"]["name"], name, "{v}");
        let evidence = v["runtime"]["evidence"].as_str().expect("evidence");
        assert!(!evidence.is_empty(), "{v}");
        let fix = v["fix"].as_str().expect("fix");
        assert!(
            fix.contains(&format!("a {name} client ({evidence})")),
            "{name}: {fix}"
        );
        assert!(fix.contains(words), "{name}: {fix}");
        eprintln!("{name}: {fix}");
        assert!(v["protocol"].is_null(), "ephemeral test port: {v}");
    }
}
