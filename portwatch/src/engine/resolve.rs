//! Service resolution: which service a task belongs to (its cgroup's unit,
//! container or pod, else its name), cached per (cgroup id, comm).

use std::net::IpAddr;

use crate::event::{Comm, Task};
use crate::input::Workload;
use crate::system::runtime::{WorkloadKeys, keys_from_cgroup};

use super::Engine;
use super::acc::Acc;
use super::hash::mixed_hash;
use super::intern::ServiceIdx;
use super::service::{ServiceId, ServiceKind, service_from_cgroup};

/// At most this many cgroup ids remembered.
const MAX_CGROUPS: usize = 65_536;
/// At most this many (cgroup id, comm) → service resolutions cached; past
/// it the cache starts over (it only saves work, it decides nothing).
const MAX_RESOLVED: usize = 65_536;
/// At most this many runtime names (containers and pods) remembered.
const MAX_WORKLOADS: usize = 65_536;

/// (service, netns, remote addr, remote port).
pub(super) type PairKey = (ServiceIdx, u32, IpAddr, u16);
/// What a service is resolved from: the task's (cgroup id, comm), or
/// `None` for events without a task.
pub(super) type TaskKey = Option<(u64, Comm)>;

/// What a cgroup id says about the service.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum CgroupName {
    /// A unit, container or pod, as the cgroup path names it, with the
    /// ids its runtime names are looked up by (empty for units).
    Unit(ServiceId, Box<WorkloadKeys>),
    /// A cgroup without one (e.g. `/`): name by comm.
    NoUnit,
    /// Unknown or vanished.
    Gone,
}

impl Engine {
    /// A cgroup id named (or found gone): named once here, not per event.
    pub(super) fn on_cgroup(&mut self, id: u64, path: Option<&str>) {
        if self.cgroups.len() >= MAX_CGROUPS && !self.cgroups.contains_key(&id) {
            return;
        }
        let named = match path {
            Some(p) => service_from_cgroup(p).map_or(CgroupName::NoUnit, |s| {
                let keys = match s.kind {
                    ServiceKind::Systemd => WorkloadKeys::default(),
                    _ => keys_from_cgroup(p),
                };
                CgroupName::Unit(s, Box::new(keys))
            }),
            None => CgroupName::Gone,
        };
        if self.cgroups.insert(id, named.clone()) != Some(named)
            && self.resolved_cgroups.remove(&id)
        {
            self.resolved
                .retain(|k, _| k.is_none_or(|(cgroup, _)| cgroup != id));
            self.last_resolved = None;
        }
    }

    /// Names from the container runtime: the services of the cgroups they
    /// belong to are renamed where they stand (rows keep their counts, and
    /// events before the names came are not a row of their own).
    pub(super) fn on_workload(&mut self, w: &Workload) {
        if self.workloads.get(&w.id) == Some(w) {
            return;
        }
        if self.workloads.len() >= MAX_WORKLOADS && !self.workloads.contains_key(&w.id) {
            return;
        }
        let mine = |k: &WorkloadKeys| {
            k.pod_uid.as_deref() == Some(w.id.as_str())
                || k.container.as_ref().is_some_and(|(_, id)| *id == w.id)
        };
        let before: Vec<(u64, ServiceId)> = self
            .cgroups
            .iter()
            .filter_map(|(id, c)| match c {
                CgroupName::Unit(raw, keys) if mine(keys) => Some((*id, self.named(raw, keys))),
                _ => None,
            })
            .collect();
        self.workloads.insert(w.id.clone(), w.clone());
        for (cgroup, old) in before {
            let Some(CgroupName::Unit(raw, keys)) = self.cgroups.get(&cgroup) else {
                continue;
            };
            let new = self.named(raw, keys);
            if new != old {
                self.names.rename(&old, new.clone());
                self.namespaces.rename_owner(&old, &new);
            }
            if self.resolved_cgroups.remove(&cgroup) {
                self.resolved
                    .retain(|k, _| k.is_none_or(|(c, _)| c != cgroup));
                self.last_resolved = None;
            }
        }
    }

    /// A cgroup's service with the names its runtime gave.
    fn named(&self, raw: &ServiceId, keys: &WorkloadKeys) -> ServiceId {
        if keys.is_empty() {
            return raw.clone();
        }
        let by_container = keys
            .container
            .as_ref()
            .and_then(|(_, id)| self.workloads.get(id));
        let by_pod = keys.pod_uid.as_ref().and_then(|u| self.workloads.get(u));
        raw.named(by_container, by_pod)
    }

    /// Frees the indices of services no table refers to any more, and
    /// forgets the resolutions to them.
    pub(super) fn free_unused_services(&mut self) {
        let mut live = vec![false; self.names.capacity()];
        let processes = self.processes.map.values().filter_map(|(_, s)| *s);
        let services = self.services.map.keys().copied();
        let pairs = self.pairs.map.keys().map(|k| k.0);
        let bound = self.bound.map.values().filter_map(|b| b.service);
        for i in processes.chain(services).chain(pairs).chain(bound) {
            live[i as usize] = true;
        }
        if self.names.retain(&live) {
            self.resolved.retain(|_, i| live[*i as usize]);
            self.resolved_cgroups = self.resolved.keys().flatten().map(|k| k.0).collect();
            self.last_resolved = None;
        }
    }

    /// The service index of a task, resolved once per (cgroup id, comm).
    pub(super) fn service_idx(&mut self, task: Option<&Task>) -> ServiceIdx {
        let key = task.map(|t| (t.cgroup_id, t.comm));
        if let Some((k, i)) = self.last_resolved
            && k == key
        {
            return i;
        }
        let i = match self.resolved.get(&key) {
            Some(&i) => i,
            None => {
                let i = self.names.intern(self.service_of(task));
                if self.resolved.len() >= MAX_RESOLVED {
                    self.resolved.clear();
                    self.resolved_cgroups.clear();
                }
                self.resolved.insert(key, i);
                if let Some((cgroup, _)) = key {
                    self.resolved_cgroups.insert(cgroup);
                }
                i
            }
        };
        self.last_resolved = Some((key, i));
        i
    }

    /// Counts a service into the estimate by name, like [`Self::pair_entry`].
    pub(super) fn service_entry(&mut self, svc: ServiceIdx) -> &mut Acc {
        let name_hash = self.names.name_hash(svc);
        self.services
            .entry_or_fold(svc, |d| d.insert_hash(name_hash))
    }

    /// Counts a pair into the pairs table's estimate by service name, not
    /// index (indices are reused).
    pub(super) fn pair_entry(
        &mut self,
        svc: ServiceIdx,
        netns: u32,
        daddr: IpAddr,
        dport: u16,
    ) -> &mut Acc {
        let name_hash = self.names.name_hash(svc);
        self.pairs.entry_or_fold((svc, netns, daddr, dport), |d| {
            d.insert_hash(mixed_hash(&(name_hash, netns, daddr, dport)));
        })
    }

    /// The service a task belongs to (see [`service`]).
    pub(super) fn service_of(&self, task: Option<&Task>) -> ServiceId {
        let Some(t) = task else {
            return ServiceId::new(ServiceKind::UnknownCgroup, "?");
        };
        match self.cgroups.get(&t.cgroup_id) {
            Some(CgroupName::Unit(s, keys)) => self.named(s, keys),
            Some(CgroupName::NoUnit) => ServiceId::new(ServiceKind::Comm, t.comm.to_string()),
            // Told it is gone, or never told: shown as unknown, by comm.
            Some(CgroupName::Gone) | None => {
                ServiceId::new(ServiceKind::UnknownCgroup, t.comm.to_string())
            }
        }
    }
}
