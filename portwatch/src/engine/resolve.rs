//! Service resolution: which service a task belongs to (its cgroup's unit,
//! container or pod, else its name), cached per (cgroup id, comm).

use std::net::IpAddr;

use crate::event::{Comm, Task};

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

/// (service, netns, remote addr, remote port).
pub(super) type PairKey = (ServiceIdx, u32, IpAddr, u16);
/// What a service is resolved from: the task's (cgroup id, comm), or
/// `None` for events without a task.
pub(super) type TaskKey = Option<(u64, Comm)>;

/// What a cgroup id says about the service.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum CgroupName {
    /// A unit, container or pod.
    Unit(ServiceId),
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
            Some(p) => service_from_cgroup(p).map_or(CgroupName::NoUnit, CgroupName::Unit),
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
            return ServiceId {
                kind: ServiceKind::UnknownCgroup,
                name: "?".into(),
            };
        };
        match self.cgroups.get(&t.cgroup_id) {
            Some(CgroupName::Unit(s)) => s.clone(),
            Some(CgroupName::NoUnit) => ServiceId {
                kind: ServiceKind::Comm,
                name: t.comm.to_string(),
            },
            // Told it is gone, or never told: shown as unknown, by comm.
            Some(CgroupName::Gone) | None => ServiceId {
                kind: ServiceKind::UnknownCgroup,
                name: t.comm.to_string(),
            },
        }
    }
}
