//! Namespace names from the input stream alone, by the engine's rules
//! (`host` for portwatch's own; else the pod, container or unit whose tasks
//! were seen in it, a pod over a container over a unit; else
//! `netns:INODE`), for what decides before the engine or runs without it:
//! the `--netns NAME` filter, `trace --json`, `record` and `export`.
//!
//! The engine names the namespaces of its model itself (it sees only the
//! events a filter let through); both rank owners with
//! [`super::netns::owner_rank`] and write them with `ServiceId`'s
//! `Display`, so a name the views show is a name this finds.

use std::borrow::Cow;

use super::hash::FxHashMap;
use super::netns::{owner_name, owner_rank};
use super::service::{ServiceId, ServiceKind, service_from_cgroup};
use crate::input::{Input, Workload};
use crate::system::runtime::{WorkloadKeys, keys_from_cgroup};

/// Cgroups and namespaces remembered at most (beyond: a namespace is
/// `netns:INODE`, a cgroup names no owner); as the engine's cgroup cap.
pub const MAX_KEYS: usize = 65_536;

#[derive(Clone, Debug, Default)]
pub struct Namer {
    host: Option<u32>,
    /// Cgroup id → the unit, container or pod it names.
    owners: FxHashMap<u64, Owner>,
    /// Namespace → (rank, cgroup, name) of its best owner so far (rank 0:
    /// `netns:INODE`, no cgroup).
    seen: FxHashMap<u32, (u8, Option<u64>, Box<str>)>,
    /// Names the container runtime gave (`Input::Workload`), by container
    /// id or pod uid, as the engine keeps them.
    workloads: FxHashMap<String, Workload>,
}

/// What one cgroup says about the owner of its tasks' namespace.
#[derive(Clone, Debug)]
struct Owner {
    rank: u8,
    /// As the cgroup path names it (ids), and the ids its runtime's names
    /// are looked up by.
    raw: ServiceId,
    keys: Box<WorkloadKeys>,
    /// With the runtime's names, as the engine writes it.
    name: Box<str>,
}

impl Namer {
    fn owner_name(&self, raw: &ServiceId, keys: &WorkloadKeys) -> Box<str> {
        let by_container = keys
            .container
            .as_ref()
            .and_then(|(_, id)| self.workloads.get(id));
        let by_pod = keys.pod_uid.as_ref().and_then(|u| self.workloads.get(u));
        owner_name(&raw.named(by_container, by_pod)).into_boxed_str()
    }

    /// Runtime names came: the owners they name, and the namespaces named
    /// after those, are renamed (as the engine renames the services).
    fn on_workload(&mut self, w: &Workload) {
        if self.workloads.len() >= MAX_KEYS && !self.workloads.contains_key(&w.id) {
            return;
        }
        self.workloads.insert(w.id.clone(), w.clone());
        let mine = |k: &WorkloadKeys| {
            k.pod_uid.as_deref() == Some(w.id.as_str())
                || k.container.as_ref().is_some_and(|(_, id)| *id == w.id)
        };
        let renamed: Vec<(u64, Box<str>)> = self
            .owners
            .iter()
            .filter(|(_, o)| mine(&o.keys))
            .map(|(&id, o)| (id, self.owner_name(&o.raw, &o.keys)))
            .collect();
        for (id, name) in renamed {
            if let Some(o) = self.owners.get_mut(&id) {
                o.name = name.clone();
            }
            for (_, cgroup, n) in self.seen.values_mut() {
                if *cgroup == Some(id) {
                    *n = name.clone();
                }
            }
        }
    }
}

impl Namer {
    pub fn new() -> Namer {
        Namer::default()
    }

    /// Learns from one input; returns the namespace whose name changed, if
    /// one did (the host's when the host record arrives).
    pub fn observe(&mut self, input: &Input) -> Option<u32> {
        match input {
            Input::Host(h) if h.netns != 0 => {
                self.host = Some(h.netns);
                Some(h.netns)
            }
            Input::Workload(w) => {
                self.on_workload(w);
                None
            }
            Input::Cgroup { id, path } => {
                let owner = path.as_deref().and_then(|p| {
                    let raw = service_from_cgroup(p)?;
                    let rank = owner_rank(&raw);
                    let keys = match raw.kind {
                        ServiceKind::Systemd => WorkloadKeys::default(),
                        _ => keys_from_cgroup(p),
                    };
                    let name = self.owner_name(&raw, &keys);
                    (rank > 0).then(|| Owner {
                        rank,
                        raw,
                        keys: Box::new(keys),
                        name,
                    })
                });
                match owner {
                    Some(o) if self.owners.len() < MAX_KEYS || self.owners.contains_key(id) => {
                        self.owners.insert(*id, o);
                    }
                    // A cgroup gone or naming no unit: the names given
                    // through it stay (ranks only go up, as in the engine).
                    _ => {}
                }
                None
            }
            Input::Event(ev) => {
                let ns = ev.netns();
                if ns == 0 || Some(ns) == self.host {
                    return None;
                }
                let owner = ev.task().and_then(|t| {
                    self.owners
                        .get(&t.cgroup_id)
                        .map(|o| (o.rank, Some(t.cgroup_id), o.name.clone()))
                });
                let room = self.seen.len() < MAX_KEYS;
                match self.seen.get_mut(&ns) {
                    Some(cur) => match owner {
                        Some(o) if o.0 > cur.0 => {
                            *cur = o;
                            Some(ns)
                        }
                        _ => None,
                    },
                    None if room => {
                        let named = owner
                            .unwrap_or_else(|| (0, None, format!("netns:{ns}").into_boxed_str()));
                        self.seen.insert(ns, named);
                        Some(ns)
                    }
                    None => None,
                }
            }
            _ => None,
        }
    }

    /// portwatch's own namespace, once the host record was seen.
    pub fn host(&self) -> Option<u32> {
        self.host
    }

    /// The name of a namespace seen (None: unknown inode 0, or not seen).
    pub fn name(&self, netns: u32) -> Option<&str> {
        if netns == 0 {
            None
        } else if Some(netns) == self.host {
            Some("host")
        } else {
            self.seen.get(&netns).map(|(_, _, n)| &**n)
        }
    }

    /// As [`Namer::name`], `netns:INODE` for a namespace not remembered
    /// (past the cap); None only for the unknown inode 0.
    pub fn name_or_inode(&self, netns: u32) -> Option<Cow<'_, str>> {
        match self.name(netns) {
            Some(n) => Some(Cow::Borrowed(n)),
            None if netns != 0 => Some(Cow::Owned(format!("netns:{netns}"))),
            None => None,
        }
    }

    /// Every namespace seen with its name, the host's first, then by name.
    pub fn names(&self) -> Vec<(u32, String)> {
        let mut v: Vec<(u32, String)> = self
            .seen
            .iter()
            .map(|(&ns, (_, _, n))| (ns, n.to_string()))
            .collect();
        v.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
        if let Some(h) = self.host {
            v.insert(0, (h, "host".into()));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Cause, Comm, ConnectError, Event, Task};

    const POD: &str = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234abcd_5678.slice/cri-containerd-0123456789abcdef.scope";

    fn ev(ns: u32, cgroup_id: u64) -> Input {
        Input::Event(Event::ConnectError(ConnectError {
            ts_ns: 1,
            duration_ns: 1,
            task: Some(Task {
                pid: 1,
                tid: 1,
                comm: Comm::new("c"),
                thread: Comm::new("c"),
                cgroup_id,
            }),
            netns: ns,
            daddr: "10.0.0.1".parse().unwrap(),
            dport: 80,
            errno: 111,
            cause: Cause::Other,
            saw_syn_sent: true,
        }))
    }

    fn cgroup(id: u64, path: &str) -> Input {
        Input::Cgroup {
            id,
            path: Some(path.into()),
        }
    }

    #[test]
    fn names_follow_the_engines_rules() {
        let mut n = Namer::new();
        n.observe(&crate::input::Input::Host(crate::input::HostInfo {
            hostname: String::new(),
            kernel: String::new(),
            clock: crate::clock::WallClock {
                mono_ns: 0,
                unix_ns: 0,
            },
            netns: 1,
            sysctls: Default::default(),
        }));
        n.observe(&cgroup(5, "/system.slice/ssh.service"));
        n.observe(&cgroup(6, POD));
        n.observe(&cgroup(7, "/user.slice"));
        assert_eq!(n.observe(&ev(9, 7)), Some(9));
        assert_eq!(n.name(9), Some("netns:9"));
        assert_eq!(n.observe(&ev(9, 5)), Some(9));
        assert_eq!(n.name(9), Some("ssh.service"));
        assert_eq!(n.observe(&ev(9, 6)), Some(9));
        assert_eq!(n.name(9), Some("pod:1234abcd-5678"));
        // A unit seen later does not rename a pod's namespace.
        assert_eq!(n.observe(&ev(9, 5)), None);
        assert_eq!(n.name(9), Some("pod:1234abcd-5678"));
        // The host is `host` whatever runs in it; 0 is unknown.
        n.observe(&ev(1, 6));
        assert_eq!(n.name(1), Some("host"));
        assert_eq!(n.name(0), None);
        assert_eq!(
            n.names(),
            vec![
                (1, "host".to_string()),
                (9, "pod:1234abcd-5678".to_string())
            ]
        );
    }

    #[test]
    fn runtime_names_rename_the_namespaces_of_their_pod() {
        let mut n = Namer::new();
        n.observe(&cgroup(6, POD));
        n.observe(&ev(9, 6));
        assert_eq!(n.name(9), Some("pod:1234abcd-5678"));
        n.observe(&Input::Workload(Workload {
            id: "0123456789abcdef".into(),
            source: "containerd".into(),
            pod_namespace: Some("checkout".into()),
            pod_name: Some("api-7f9c".into()),
            container: Some("api".into()),
        }));
        assert_eq!(n.name(9), Some("pod:checkout/api-7f9c"));
        // A cgroup of the same container announced later is named so too.
        n.observe(&cgroup(8, POD));
        n.observe(&ev(10, 8));
        assert_eq!(n.name(10), Some("pod:checkout/api-7f9c"));
    }

    #[test]
    fn past_the_cap_a_namespace_is_its_inode() {
        let mut n = Namer::new();
        for ns in 1..=(MAX_KEYS as u32 + 10) {
            n.observe(&ev(ns, 0));
        }
        assert_eq!(n.names().len(), MAX_KEYS);
        let last = MAX_KEYS as u32 + 10;
        assert_eq!(n.name(last), None);
        assert_eq!(
            n.name_or_inode(last).as_deref(),
            Some(&*format!("netns:{last}"))
        );
    }
}
