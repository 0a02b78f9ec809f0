//! Kernel test: containers and pods named as their owners know them.
//!
//! Two clients run in cgroups laid out as docker and as a kubelet with
//! containerd lay them out (`…/docker-<id>.scope`,
//! `…/kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope`, made
//! under a cgroup of the test's own), in a network namespace the test made,
//! with the runtimes' state files in a fixture directory given as
//! `--runtime-root`. `top --batch --json` must name them `web` (docker)
//! and `checkout/api-7f9c` (pod, container `api`), with their ids.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

const DOCKER_ID: &str = "d0c4e7a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d";
const POD_CID: &str = "c0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f";
const POD_UID: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, text).expect("write fixture");
}

fn runtime_fixture(root: &Path) {
    let docker = serde_json::json!({"ID": DOCKER_ID, "Name": "/web", "Config": {"Labels": {}}});
    write(
        root,
        &format!("var/lib/docker/containers/{DOCKER_ID}/config.v2.json"),
        &docker.to_string(),
    );
    let bundle = serde_json::json!({"annotations": {
        "io.kubernetes.cri.container-type": "container",
        "io.kubernetes.cri.sandbox-namespace": "checkout",
        "io.kubernetes.cri.sandbox-name": "api-7f9c",
        "io.kubernetes.cri.sandbox-uid": POD_UID,
        "io.kubernetes.cri.container-name": "api",
    }});
    write(
        root,
        &format!("run/containerd/io.containerd.runtime.v2.task/k8s.io/{POD_CID}/config.json"),
        &bundle.to_string(),
    );
}

/// A cgroup tree of the test's own in the v2 hierarchy, removed when dropped
/// (after the clients in it have exited).
struct Cgroups {
    base: PathBuf,
    leaves: Vec<PathBuf>,
}

impl Cgroups {
    fn new() -> Cgroups {
        // The v2 hierarchy: /sys/fs/cgroup, or /sys/fs/cgroup/unified on
        // hybrid hosts (where /sys/fs/cgroup itself is a tmpfs).
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        let (mount, _) =
            portwatch::system::cgroup::find_cgroup2_mount(&mountinfo).expect("a cgroup2 mount");
        let base = mount.join(format!("pw-names-{}", std::process::id()));
        std::fs::create_dir(&base).expect("cgroup base");
        assert!(
            base.join("cgroup.procs").exists(),
            "{} is not a cgroup",
            base.display()
        );
        Cgroups {
            base,
            leaves: Vec::new(),
        }
    }

    fn leaf(&mut self, rel: &str) -> PathBuf {
        let p = self.base.join(rel);
        std::fs::create_dir_all(&p).expect("cgroup leaf");
        self.leaves.push(p.clone());
        p
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        // Leaves first, then their parents up to the base.
        for leaf in &self.leaves {
            let mut p = leaf.clone();
            while p.starts_with(&self.base) {
                let _ = std::fs::remove_dir(&p);
                if !p.pop() {
                    break;
                }
            }
        }
        let _ = std::fs::remove_dir(&self.base);
    }
}

/// `n` connect/close cycles to 127.0.0.1:`port` from a shell that first
/// moves itself into `cgroup` (bash's /dev/tcp: a client with no pool).
fn client_in(cgroup: &Path, port: u16, n: u32) -> std::process::ExitStatus {
    let script = format!(
        "echo $$ > {}/cgroup.procs || exit 3; \
         for i in $(seq {n}); do exec 3<>/dev/tcp/127.0.0.1/{port} || exit 4; \
         printf ping >&3; head -c 4 <&3 >/dev/null; exec 3>&-; done",
        cgroup.display()
    );
    Command::new("bash")
        .args(["-c", &script])
        .status()
        .expect("bash")
}

fn service<'a>(snap: &'a Value, name: &str) -> Option<&'a Value> {
    snap["services"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)
}

#[test]
fn containers_and_pods_are_named_from_the_runtime_state() {
    if !kernel_tests_enabled() {
        return;
    }
    let fixture = tempfile::tempdir().expect("tempdir");
    runtime_fixture(fixture.path());
    let mut cg = Cgroups::new();
    let docker = cg.leaf(&format!("docker-{DOCKER_ID}.scope"));
    let pod = cg.leaf(&format!(
        "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{POD_CID}.scope",
        POD_UID.replace('-', "_")
    ));
    let ns = Netns::new("pw-names", &[]);
    let server = ns.run(|| start_server("127.0.0.1:0"));
    let inode = ns.inode.to_string();
    let root = fixture.path().to_string_lossy().to_string();
    let mut top = Tracer::start(&top_batch_json_args(&[
        "--rows",
        "500",
        "--netns",
        &inode,
        "--runtime-root",
        &root,
    ]));
    let port = server.port();
    for leaf in [&docker, &pod] {
        let dir = leaf.clone();
        let st = ns.run(move || client_in(&dir, port, 30));
        assert!(st.success(), "client in {}: {st}", leaf.display());
    }
    let named = top.wait_for(Duration::from_secs(20), |seen| {
        seen.last().is_some_and(|s| {
            service(s, "web").is_some() && service(s, "checkout/api-7f9c").is_some()
        })
    });
    let (stderr, seen) = top.stop_successfully("portwatch");
    let last = seen.last().expect("a snapshot");
    assert!(named, "services not named in time: {}", last["services"]);
    let web = service(last, "web").expect("web");
    assert_eq!(web["kind"], "docker");
    assert_eq!(web["id"], DOCKER_ID);
    assert_eq!(web["new_total"], 30, "{web}");
    let api = service(last, "checkout/api-7f9c").expect("pod");
    assert_eq!(api["kind"], "pod");
    assert_eq!(api["id"], POD_UID);
    assert_eq!(api["namespace"], "checkout");
    assert_eq!(api["container"], "api");
    assert_eq!(api["new_total"], 30, "{api}");
    // Renamed in place: no row left under the ids.
    let services = last["services"].as_array().expect("services");
    assert_eq!(services.len(), 2, "{services:?}");
    // The namespace is named by the pod (a pod wins over a container).
    assert_eq!(api["netns_name"], "pod:checkout/api-7f9c");
    assert_no_loss(&stderr);
}
