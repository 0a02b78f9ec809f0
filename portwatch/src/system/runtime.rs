//! The names people use for containers and pods, from what the node's
//! container runtime keeps on disk.
//!
//! A cgroup path only carries ids (`kubepods-…-pod<uid>.slice`,
//! `cri-containerd-<id>.scope`, `docker-<id>.scope`). The names an on-call
//! engineer knows (`checkout/api-7f9c`, container `api`, docker's `web`)
//! are in the runtime's state:
//!
//! | runtime | file (under `--runtime-root`, default `/`) | what |
//! | --- | --- | --- |
//! | containerd | `run/containerd/io.containerd.runtime.v2.task/<ns>/<id>/config.json` | OCI bundle annotations `io.kubernetes.cri.sandbox-namespace`, `…sandbox-name`, `…container-name` |
//! | CRI-O | `run/containers/storage/overlay-containers/<id>/userdata/config.json` (or under `var/lib/containers`) | annotations `io.kubernetes.pod.namespace`, `…pod.name`, `…container.name` |
//! | docker | `var/lib/docker/containers/<id>/config.v2.json` | `Name` (and dockershim's Kubernetes labels) |
//! | kubelet | `var/log/pods/<namespace>_<name>_<uid>/` | pod namespace and name by uid (no container name) |
//!
//! Looking these up reads files, so it runs in a worker thread of its own,
//! never on the intake path: events are counted under the id at once and
//! the names follow as an [`Input::Workload`](crate::input::Input).
//! A container that exits while it is looked up is simply not found (its
//! directory goes with it); that is never an error.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::input::Workload;
use crate::system::worker;

/// The runtime a cgroup path says a container belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Runtime {
    Docker,
    Containerd,
    Crio,
    /// cgroupfs driver: `/kubepods/…/pod<uid>/<id>` says no runtime.
    Unknown,
}

/// The ids a cgroup path carries, by which names are looked up.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct WorkloadKeys {
    /// Kubernetes pod uid, with dashes.
    pub pod_uid: Option<String>,
    /// Container id (hex, full length) and the runtime the path names.
    pub container: Option<(Runtime, String)>,
}

impl WorkloadKeys {
    pub fn is_empty(&self) -> bool {
        self.pod_uid.is_none() && self.container.is_none()
    }
}

fn is_hex_id(s: &str) -> bool {
    s.len() >= 12 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `kubepods-burstable-pod<uid>.slice` (systemd driver, uid with `_`) or
/// `pod<uid>` (cgroupfs driver) → the pod uid with dashes.
pub fn pod_uid(part: &str) -> Option<String> {
    let part = part.strip_suffix(".slice").unwrap_or(part);
    let at = part.rfind("pod")?;
    let uid = &part[at + 3..];
    let ok = uid.len() >= 8
        && uid
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b'_' || b == b'-');
    ok.then(|| uid.replace('_', "-"))
}

/// The pod uid and container id in a cgroup path (relative to the cgroup
/// root), where it has them.
pub fn keys_from_cgroup(path: &str) -> WorkloadKeys {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let mut keys = WorkloadKeys::default();
    let k8s = parts.iter().any(|p| p.starts_with("kubepods"));
    if k8s {
        keys.pod_uid = parts.iter().find_map(|p| pod_uid(p));
    }
    for (i, p) in parts.iter().enumerate().rev() {
        let scoped = |prefix: &str| {
            p.strip_prefix(prefix)
                .and_then(|rest| rest.strip_suffix(".scope"))
                .filter(|id| is_hex_id(id))
        };
        let found = scoped("docker-")
            .map(|id| (Runtime::Docker, id))
            .or_else(|| scoped("cri-containerd-").map(|id| (Runtime::Containerd, id)))
            .or_else(|| scoped("crio-").map(|id| (Runtime::Crio, id)))
            // cgroupfs driver: a bare id right under the pod, or /docker/<id>.
            .or_else(|| {
                let parent = i.checked_sub(1).map(|j| parts[j]);
                let under_pod = k8s && parent.is_some_and(|q| pod_uid(q).is_some());
                let under_docker = parent == Some("docker");
                (is_hex_id(p) && (under_pod || under_docker)).then(|| {
                    let rt = if under_docker {
                        Runtime::Docker
                    } else {
                        Runtime::Unknown
                    };
                    (rt, *p)
                })
            });
        if let Some((rt, id)) = found {
            keys.container = Some((rt, id.to_string()));
            break;
        }
    }
    keys
}

/// config.json files of runtimes are tens of KB; a larger one is not read.
const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// Reads a small JSON file; `None` when it is gone (the container exited),
/// unreadable, too large or not the JSON expected.
fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    let f = std::fs::File::open(path).ok()?;
    let mut text = Vec::new();
    f.take(MAX_CONFIG_BYTES + 1).read_to_end(&mut text).ok()?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        log::debug!("{}: larger than {MAX_CONFIG_BYTES} bytes", path.display());
        return None;
    }
    match serde_json::from_slice(&text) {
        Ok(v) => Some(v),
        Err(e) => {
            // Truncated mid-write, or removed while read: not found.
            log::debug!("{}: {e}", path.display());
            None
        }
    }
}

/// An OCI bundle's config.json, the part read here.
#[derive(Deserialize)]
struct OciConfig {
    #[serde(default)]
    annotations: HashMap<String, String>,
}

/// docker's config.v2.json, the part read here.
#[derive(Deserialize)]
struct DockerConfig {
    #[serde(rename = "Name", default)]
    name: String,
    #[serde(rename = "Config", default)]
    config: Option<DockerInner>,
}

#[derive(Deserialize, Default)]
struct DockerInner {
    #[serde(rename = "Labels", default)]
    labels: Option<HashMap<String, String>>,
}

/// Kubernetes names from annotations or labels: containerd's CRI keys,
/// then CRI-O's (and dockershim's labels), which are the same as CRI-O's.
fn k8s_names(id: &str, source: &str, a: &HashMap<String, String>) -> Option<Workload> {
    let get = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| a.get(*k))
            .filter(|v| !v.is_empty())
            .cloned()
    };
    let namespace = get(&[
        "io.kubernetes.cri.sandbox-namespace",
        "io.kubernetes.pod.namespace",
    ]);
    let pod = get(&["io.kubernetes.cri.sandbox-name", "io.kubernetes.pod.name"]);
    let container = get(&[
        "io.kubernetes.cri.container-name",
        "io.kubernetes.container.name",
    ]);
    (namespace.is_some() || pod.is_some()).then(|| Workload {
        id: id.to_string(),
        source: source.to_string(),
        pod_namespace: namespace,
        pod_name: pod,
        // The sandbox (pause) container has no container name.
        container: container.filter(|c| c != "POD"),
    })
}

/// Where the runtimes keep their state: `/` on an ordinary node.
#[derive(Clone, Debug)]
pub struct RuntimeDirs {
    root: PathBuf,
}

impl RuntimeDirs {
    pub fn new(root: impl Into<PathBuf>) -> RuntimeDirs {
        RuntimeDirs { root: root.into() }
    }

    fn at(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// containerd: the bundle is under a containerd namespace (`k8s.io`
    /// for Kubernetes, `moby` for docker), which the cgroup path does not
    /// say: each is tried.
    fn containerd(&self, id: &str) -> Option<Workload> {
        for base in [
            "run/containerd/io.containerd.runtime.v2.task",
            "run/containerd/io.containerd.runtime.v1.linux",
        ] {
            let Ok(namespaces) = std::fs::read_dir(self.at(base)) else {
                continue;
            };
            for ns in namespaces.flatten() {
                let config = ns.path().join(id).join("config.json");
                if let Some(c) = read_json::<OciConfig>(&config) {
                    return k8s_names(id, "containerd", &c.annotations);
                }
            }
        }
        None
    }

    fn crio(&self, id: &str) -> Option<Workload> {
        ["run/containers/storage", "var/lib/containers/storage"]
            .iter()
            .find_map(|base| {
                let p = self
                    .at(base)
                    .join("overlay-containers")
                    .join(id)
                    .join("userdata/config.json");
                read_json::<OciConfig>(&p)
            })
            .and_then(|c| k8s_names(id, "crio", &c.annotations))
    }

    fn docker(&self, id: &str) -> Option<Workload> {
        let p = self
            .at("var/lib/docker/containers")
            .join(id)
            .join("config.v2.json");
        let c = read_json::<DockerConfig>(&p)?;
        let labels = c.config.unwrap_or_default().labels.unwrap_or_default();
        if let Some(w) = k8s_names(id, "docker", &labels) {
            return Some(w);
        }
        let name = c.name.trim_start_matches('/');
        (!name.is_empty()).then(|| Workload {
            id: id.to_string(),
            source: "docker".into(),
            pod_namespace: None,
            pod_name: None,
            container: Some(name.to_string()),
        })
    }

    /// kubelet's log directory `<namespace>_<name>_<uid>`: namespaces and
    /// pod names are DNS labels/subdomains, so they hold no `_`.
    fn pod_logs(&self, uid: &str) -> Option<Workload> {
        let suffix = format!("_{uid}");
        std::fs::read_dir(self.at("var/log/pods"))
            .ok()?
            .flatten()
            .find_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let rest = name.strip_suffix(&suffix)?;
                let (ns, pod) = rest.split_once('_')?;
                (!ns.is_empty() && !pod.is_empty() && !pod.contains('_')).then(|| Workload {
                    id: uid.to_string(),
                    source: "pod-logs".into(),
                    pod_namespace: Some(ns.to_string()),
                    pod_name: Some(pod.to_string()),
                    container: None,
                })
            })
    }

    /// The names of one container, trying the runtime its cgroup names
    /// first and the others after (docker on containerd, odd setups).
    pub fn container(&self, rt: Runtime, id: &str) -> Option<Workload> {
        let order: [Runtime; 3] = match rt {
            Runtime::Docker => [Runtime::Docker, Runtime::Containerd, Runtime::Crio],
            Runtime::Crio => [Runtime::Crio, Runtime::Containerd, Runtime::Docker],
            Runtime::Containerd | Runtime::Unknown => {
                [Runtime::Containerd, Runtime::Crio, Runtime::Docker]
            }
        };
        order.iter().find_map(|r| match r {
            Runtime::Docker => self.docker(id),
            Runtime::Containerd => self.containerd(id),
            Runtime::Crio => self.crio(id),
            Runtime::Unknown => None,
        })
    }

    /// Everything known for the keys: the container's names (with its
    /// pod's), and the pod's by uid when the container's are not found.
    pub fn lookup(&self, keys: &WorkloadKeys) -> Vec<Workload> {
        let mut out = Vec::new();
        let by_container = keys
            .container
            .as_ref()
            .and_then(|(rt, id)| self.container(*rt, id));
        let pod_named = by_container.as_ref().is_some_and(|w| w.pod_name.is_some());
        out.extend(by_container);
        if !pod_named && let Some(uid) = &keys.pod_uid {
            out.extend(self.pod_logs(uid));
        }
        out
    }
}

/// What the worker answers for one request.
#[derive(Debug)]
pub struct Answer {
    pub keys: WorkloadKeys,
    /// Empty when nothing was found (not there yet, or already gone).
    pub found: Vec<Workload>,
}

/// Looks names up in a thread of its own; the caller polls
/// [`Worker::try_recv`] and is never blocked by a slow disk.
pub struct Worker {
    thread: worker::Worker<WorkloadKeys, Answer>,
}

impl Worker {
    pub fn spawn(dirs: RuntimeDirs) -> std::io::Result<Worker> {
        let thread = worker::Worker::spawn("pw-runtime", None, move || {
            move |keys: WorkloadKeys, out: &worker::Answers<Answer>| {
                let found = dirs.lookup(&keys);
                out.send(Answer { keys, found })
            }
        })?;
        Ok(Worker { thread })
    }

    pub fn request(&self, keys: WorkloadKeys) {
        if self.thread.send(keys).is_err() {
            log::debug!("runtime worker gone");
        }
    }

    /// The answers so far, without waiting.
    pub fn try_recv(&self) -> Vec<Answer> {
        self.thread.try_recv().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CID: &str = "4f2b6a1c9d3e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a";
    const UID: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";

    /// A runtime root of fixture files, removed when dropped.
    struct Root(tempfile::TempDir);

    impl Root {
        fn new() -> Root {
            Root(tempfile::tempdir().expect("tempdir"))
        }
        fn write(&self, rel: &str, text: &str) -> &Self {
            let p = self.0.path().join(rel);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, text).expect("write");
            self
        }
        fn mkdir(&self, rel: &str) -> &Self {
            std::fs::create_dir_all(self.0.path().join(rel)).expect("mkdir");
            self
        }
        fn dirs(&self) -> RuntimeDirs {
            RuntimeDirs::new(self.0.path())
        }
    }

    fn pod_cgroup(runtime_scope: &str) -> String {
        format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/{runtime_scope}",
            UID.replace('-', "_")
        )
    }

    fn containerd_config(ns: &str, pod: &str, container: &str) -> String {
        serde_json::json!({
            "ociVersion": "1.1.0",
            "process": {"args": ["/app"]},
            "annotations": {
                "io.kubernetes.cri.container-type": "container",
                "io.kubernetes.cri.sandbox-namespace": ns,
                "io.kubernetes.cri.sandbox-name": pod,
                "io.kubernetes.cri.sandbox-uid": UID,
                "io.kubernetes.cri.container-name": container,
            }
        })
        .to_string()
    }

    fn names(w: &Workload) -> (&str, Option<&str>, Option<&str>, Option<&str>) {
        (
            w.source.as_str(),
            w.pod_namespace.as_deref(),
            w.pod_name.as_deref(),
            w.container.as_deref(),
        )
    }

    #[test]
    fn cgroup_paths_give_pod_uid_and_container_id() {
        let k = keys_from_cgroup(&pod_cgroup(&format!("cri-containerd-{CID}.scope")));
        assert_eq!(k.pod_uid.as_deref(), Some(UID));
        assert_eq!(k.container, Some((Runtime::Containerd, CID.into())));
        let k = keys_from_cgroup(&format!("/kubepods/besteffort/pod{UID}/{CID}"));
        assert_eq!(k.pod_uid.as_deref(), Some(UID));
        assert_eq!(k.container, Some((Runtime::Unknown, CID.into())));
        let k = keys_from_cgroup(&format!("/system.slice/docker-{CID}.scope"));
        assert_eq!(
            (k.pod_uid, k.container),
            (None, Some((Runtime::Docker, CID.into())))
        );
        let k = keys_from_cgroup(&format!("/docker/{CID}"));
        assert_eq!(k.container, Some((Runtime::Docker, CID.into())));
        let k = keys_from_cgroup(&format!("/machine.slice/crio-{CID}.scope"));
        assert_eq!(k.container, Some((Runtime::Crio, CID.into())));
        assert!(keys_from_cgroup("/system.slice/nginx.service").is_empty());
        assert!(keys_from_cgroup("/").is_empty());
    }

    #[test]
    fn containerd_bundle_annotations_name_pod_and_container() {
        let root = Root::new();
        root.write(
            &format!("run/containerd/io.containerd.runtime.v2.task/k8s.io/{CID}/config.json"),
            &containerd_config("checkout", "api-7f9c", "api"),
        );
        // Another containerd namespace without this container is skipped.
        root.mkdir("run/containerd/io.containerd.runtime.v2.task/moby");
        let keys = keys_from_cgroup(&pod_cgroup(&format!("cri-containerd-{CID}.scope")));
        let found = root.dirs().lookup(&keys);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].id, CID);
        assert_eq!(
            names(&found[0]),
            (
                "containerd",
                Some("checkout"),
                Some("api-7f9c"),
                Some("api")
            )
        );
    }

    #[test]
    fn crio_userdata_annotations_name_pod_and_container() {
        let root = Root::new();
        let config = serde_json::json!({
            "annotations": {
                "io.kubernetes.pod.namespace": "payments",
                "io.kubernetes.pod.name": "ledger-5d6f8",
                "io.kubernetes.pod.uid": UID,
                "io.kubernetes.container.name": "ledger",
                "io.kubernetes.cri-o.ContainerType": "container",
            }
        });
        root.write(
            &format!("run/containers/storage/overlay-containers/{CID}/userdata/config.json"),
            &config.to_string(),
        );
        let keys = keys_from_cgroup(&pod_cgroup(&format!("crio-{CID}.scope")));
        let found = root.dirs().lookup(&keys);
        assert_eq!(
            found.iter().map(names).collect::<Vec<_>>(),
            [(
                "crio",
                Some("payments"),
                Some("ledger-5d6f8"),
                Some("ledger")
            )]
        );
    }

    #[test]
    fn docker_config_v2_names_the_container() {
        let root = Root::new();
        let config = serde_json::json!({
            "ID": CID,
            "Name": "/web",
            "Config": {"Image": "nginx", "Labels": {"maintainer": "x"}}
        });
        root.write(
            &format!("var/lib/docker/containers/{CID}/config.v2.json"),
            &config.to_string(),
        );
        let keys = keys_from_cgroup(&format!("/system.slice/docker-{CID}.scope"));
        let found = root.dirs().lookup(&keys);
        assert_eq!(
            found.iter().map(names).collect::<Vec<_>>(),
            [("docker", None, None, Some("web"))]
        );
    }

    #[test]
    fn pod_log_directories_name_the_pod_by_uid() {
        let root = Root::new();
        root.mkdir(&format!("var/log/pods/checkout_api-7f9c_{UID}/api"));
        root.mkdir("var/log/pods/kube-system_coredns-5d78c_11111111-2222-3333-4444-555555555555");
        // A container id no runtime knows: the pod's names still come.
        let keys = keys_from_cgroup(&pod_cgroup(&format!("cri-containerd-{CID}.scope")));
        let found = root.dirs().lookup(&keys);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].id, UID);
        assert_eq!(
            names(&found[0]),
            ("pod-logs", Some("checkout"), Some("api-7f9c"), None)
        );
    }

    #[test]
    fn a_container_that_disappears_mid_resolution_is_not_found_not_an_error() {
        let root = Root::new();
        // Its bundle directory is still listed but config.json is gone
        // (removed between the listing and the read), and another
        // container's config.json is cut off mid-write.
        root.mkdir(&format!(
            "run/containerd/io.containerd.runtime.v2.task/k8s.io/{CID}"
        ));
        let other = CID.replace('4', "5");
        let full = containerd_config("checkout", "api-7f9c", "api");
        root.write(
            &format!("run/containerd/io.containerd.runtime.v2.task/k8s.io/{other}/config.json"),
            &full[..full.len() / 2],
        );
        let dirs = root.dirs();
        for id in [CID, other.as_str()] {
            let keys = WorkloadKeys {
                pod_uid: None,
                container: Some((Runtime::Containerd, id.to_string())),
            };
            assert!(dirs.lookup(&keys).is_empty(), "{id}");
        }
        // With the pod's log directory still there, the pod is named.
        root.mkdir(&format!("var/log/pods/checkout_api-7f9c_{UID}"));
        let keys = keys_from_cgroup(&pod_cgroup(&format!("cri-containerd-{CID}.scope")));
        let found = dirs.lookup(&keys);
        assert_eq!(
            found.iter().map(|w| w.source.as_str()).collect::<Vec<_>>(),
            ["pod-logs"]
        );
        // The whole root gone (the node's runtime removed everything).
        let gone = RuntimeDirs::new(root.0.path().join("nonexistent"));
        assert!(gone.lookup(&keys).is_empty());
    }

    #[test]
    fn the_worker_answers_off_the_calling_thread() {
        let root = Root::new();
        root.write(
            &format!("run/containerd/io.containerd.runtime.v2.task/k8s.io/{CID}/config.json"),
            &containerd_config("checkout", "api-7f9c", "api"),
        );
        let w = Worker::spawn(root.dirs()).expect("worker");
        let keys = keys_from_cgroup(&pod_cgroup(&format!("cri-containerd-{CID}.scope")));
        let missing = keys_from_cgroup(&format!("/system.slice/docker-{}.scope", "ab".repeat(32)));
        w.request(keys.clone());
        w.request(missing.clone());
        let mut got = Vec::new();
        let start = std::time::Instant::now();
        while got.len() < 2 && start.elapsed() < std::time::Duration::from_secs(10) {
            got.extend(w.try_recv());
            std::thread::yield_now();
        }
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].keys, keys);
        assert_eq!(got[0].found.len(), 1);
        assert_eq!(got[1].keys, missing);
        assert!(got[1].found.is_empty());
    }
}
