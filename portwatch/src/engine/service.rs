//! Service names from cgroup paths.
//!
//! A service is what an operator would restart or fix: the systemd unit,
//! the container, or the Kubernetes pod the process runs in. Processes whose
//! cgroup says none of these are grouped by executable name (comm), so a
//! thousand short-lived `curl`s spawned by a script are one service.

use std::fmt;

use serde::Serialize;

use crate::input::Workload;
use crate::system::runtime::pod_uid;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceKind {
    /// A systemd unit (`*.service`, `*.scope`).
    Systemd,
    /// A Docker container (`docker-<id>.scope`, `/docker/<id>`).
    Docker,
    /// A containerd (CRI) container (`cri-containerd-<id>.scope`).
    Containerd,
    /// A CRI-O container (`crio-<id>.scope`).
    Crio,
    /// A Kubernetes pod (`kubepods*/…pod<uid>…`).
    Pod,
    /// No unit or container in the cgroup path: grouped by process name.
    Comm,
    /// The cgroup id could not be resolved (unknown, or the cgroup is gone):
    /// grouped by process name, and shown as such.
    UnknownCgroup,
}

impl ServiceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceKind::Systemd => "systemd",
            ServiceKind::Docker => "docker",
            ServiceKind::Containerd => "containerd",
            ServiceKind::Crio => "crio",
            ServiceKind::Pod => "pod",
            ServiceKind::Comm => "comm",
            ServiceKind::UnknownCgroup => "unknown_cgroup",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ServiceId {
    pub kind: ServiceKind,
    /// What people call it: the unit, `namespace/pod` for a pod whose
    /// names the runtime gave (else its uid), docker's container name
    /// (else the short id), the process name.
    pub name: String,
    /// A container's full id or a pod's uid (`None` for units and
    /// processes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// A pod's Kubernetes namespace, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The Kubernetes container the tasks run in, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

impl ServiceId {
    /// A service known by kind and name alone.
    pub fn new(kind: ServiceKind, name: impl Into<String>) -> ServiceId {
        ServiceId {
            kind,
            name: name.into(),
            id: None,
            namespace: None,
            container: None,
        }
    }

    /// The same service with the names the runtime keeps for it: those of
    /// its container (`by_container`, which may name its pod too) and of
    /// its pod by uid (`by_pod`, from `/var/log/pods`).
    pub fn named(&self, by_container: Option<&Workload>, by_pod: Option<&Workload>) -> ServiceId {
        let mut s = self.clone();
        let pod_of = |w: &&Workload| w.pod_name.is_some();
        let pod = by_container.filter(pod_of).or(by_pod.filter(pod_of));
        if let Some(p) = pod {
            s.namespace = p.pod_namespace.clone();
            let pod_name = p.pod_name.clone().unwrap_or_default();
            s.name = match &p.pod_namespace {
                Some(ns) => format!("{ns}/{pod_name}"),
                None => pod_name,
            };
            s.container = by_container.and_then(|w| w.container.clone());
        } else if self.kind != ServiceKind::Pod
            && let Some(name) = by_container.and_then(|w| w.container.clone())
        {
            // A plain (docker) container: its name is the service's.
            s.name = name;
        }
        s
    }
}

impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ServiceKind::Systemd | ServiceKind::Comm => f.pad(&self.name),
            ServiceKind::UnknownCgroup => f.pad(&format!("{} (cgroup ?)", self.name)),
            k => f.pad(&format!("{} ({})", self.name, k.as_str())),
        }
    }
}

/// Container ids are 64 hex digits; 12 is what `docker ps` shows.
fn short_id(id: &str) -> String {
    id.chars().take(12).collect()
}

fn is_hex_id(s: &str) -> bool {
    s.len() >= 12 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The service a cgroup path names, or `None` when it names none (then the
/// caller falls back to comm). `path` is relative to the cgroup root, e.g.
/// `/system.slice/nginx.service`.
pub fn service_from_cgroup(path: &str) -> Option<ServiceId> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    // Kubernetes first: a pod's containers are also cri-containerd/crio/docker
    // scopes, and the pod is the unit people reason about.
    if parts.iter().any(|p| p.starts_with("kubepods")) {
        for p in &parts {
            if let Some(uid) = pod_uid(p) {
                return Some(ServiceId {
                    id: Some(uid.clone()),
                    ..ServiceId::new(ServiceKind::Pod, uid)
                });
            }
        }
    }
    // The innermost component that names a container or a unit wins.
    for p in parts.iter().rev() {
        let container = |prefix: &str, kind| {
            p.strip_prefix(prefix)
                .and_then(|rest| rest.strip_suffix(".scope"))
                .filter(|id| is_hex_id(id))
                .map(|id| ServiceId {
                    id: Some(id.to_string()),
                    ..ServiceId::new(kind, short_id(id))
                })
        };
        if let Some(s) = container("docker-", ServiceKind::Docker)
            .or_else(|| container("cri-containerd-", ServiceKind::Containerd))
            .or_else(|| container("crio-", ServiceKind::Crio))
        {
            return Some(s);
        }
        if p.ends_with(".service") || p.ends_with(".scope") {
            return Some(ServiceId::new(ServiceKind::Systemd, *p));
        }
    }
    // cgroupfs driver (v1 or v2 without systemd): /docker/<id>.
    if let Some(i) = parts.iter().position(|p| *p == "docker")
        && let Some(id) = parts.get(i + 1).filter(|id| is_hex_id(id))
    {
        return Some(ServiceId {
            id: Some(id.to_string()),
            ..ServiceId::new(ServiceKind::Docker, short_id(id))
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_plain_slices_name_no_service() {
        assert_eq!(service_from_cgroup("/"), None);
        assert_eq!(service_from_cgroup("/user.slice/user-1000.slice"), None);
    }
}
