//! Service names from cgroup paths.
//!
//! A service is what an operator would restart or fix: the systemd unit,
//! the container, or the Kubernetes pod the process runs in. Processes whose
//! cgroup says none of these are grouped by executable name (comm), so a
//! thousand short-lived `curl`s spawned by a script are one service.

use std::fmt;

use serde::Serialize;

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
    pub name: String,
}

impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ServiceKind::Systemd | ServiceKind::Comm => f.pad(&self.name),
            ServiceKind::UnknownCgroup => f.pad(&format!("{} (cgroup ?)", self.name)),
            k => f.pad(&format!("{}:{}", k.as_str(), self.name)),
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
                    kind: ServiceKind::Pod,
                    name: uid,
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
                    kind,
                    name: short_id(id),
                })
        };
        if let Some(s) = container("docker-", ServiceKind::Docker)
            .or_else(|| container("cri-containerd-", ServiceKind::Containerd))
            .or_else(|| container("crio-", ServiceKind::Crio))
        {
            return Some(s);
        }
        if p.ends_with(".service") || p.ends_with(".scope") {
            return Some(ServiceId {
                kind: ServiceKind::Systemd,
                name: (*p).to_string(),
            });
        }
    }
    // cgroupfs driver (v1 or v2 without systemd): /docker/<id>.
    if let Some(i) = parts.iter().position(|p| *p == "docker")
        && let Some(id) = parts.get(i + 1).filter(|id| is_hex_id(id))
    {
        return Some(ServiceId {
            kind: ServiceKind::Docker,
            name: short_id(id),
        });
    }
    None
}

/// `kubepods-burstable-pod<uid>.slice` (systemd driver, uid with `_`) or
/// `pod<uid>` (cgroupfs driver) → the pod uid with dashes.
fn pod_uid(part: &str) -> Option<String> {
    let part = part.strip_suffix(".slice").unwrap_or(part);
    let at = part.rfind("pod")?;
    let uid = &part[at + 3..];
    let ok = uid.len() >= 8
        && uid
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b'_' || b == b'-');
    ok.then(|| uid.replace('_', "-"))
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
