//! cgroup path → service names, and how the engine groups by them.

mod engine_support;

use engine_support::*;
use portwatch::engine::service::{ServiceKind, service_from_cgroup};
use portwatch::engine::{Config, Engine};
use portwatch::input::Input;

fn named(path: &str) -> Option<(ServiceKind, String)> {
    service_from_cgroup(path).map(|s| (s.kind, s.name))
}

const ID: &str = "4f2b6a1c9d3e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a";

#[test]
fn systemd_units_and_scopes() {
    assert_eq!(
        named("/system.slice/nginx.service"),
        Some((ServiceKind::Systemd, "nginx.service".into()))
    );
    assert_eq!(
        named("/user.slice/user-1000.slice/session-3.scope"),
        Some((ServiceKind::Systemd, "session-3.scope".into()))
    );
    // A unit's own sub-cgroups still belong to the unit.
    assert_eq!(
        named("/system.slice/postgresql.service/worker"),
        Some((ServiceKind::Systemd, "postgresql.service".into()))
    );
}

#[test]
fn docker_with_systemd_and_cgroupfs_drivers() {
    let want = Some((ServiceKind::Docker, ID[..12].to_string()));
    assert_eq!(named(&format!("/system.slice/docker-{ID}.scope")), want);
    assert_eq!(named(&format!("/docker/{ID}")), want);
}

#[test]
fn containerd_and_crio_containers() {
    assert_eq!(
        named(&format!("/system.slice/cri-containerd-{ID}.scope")),
        Some((ServiceKind::Containerd, ID[..12].to_string()))
    );
    assert_eq!(
        named(&format!("/machine.slice/crio-{ID}.scope")),
        Some((ServiceKind::Crio, ID[..12].to_string()))
    );
}

#[test]
fn kubepods_name_the_pod_with_either_driver() {
    let uid = "8d0c1a2b-3c4d-4e5f-a6b7-c8d9e0f1a2b3";
    let systemd = format!(
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{ID}.scope",
        uid.replace('-', "_")
    );
    assert_eq!(named(&systemd), Some((ServiceKind::Pod, uid.into())));
    let cgroupfs = format!("/kubepods/besteffort/pod{uid}/{ID}");
    assert_eq!(named(&cgroupfs), Some((ServiceKind::Pod, uid.into())));
    let guaranteed = format!(
        "/kubepods.slice/kubepods-pod{}.slice/crio-{ID}.scope",
        uid.replace('-', "_")
    );
    assert_eq!(named(&guaranteed), Some((ServiceKind::Pod, uid.into())));
}

#[test]
fn paths_without_a_unit_name_no_service() {
    assert_eq!(named("/"), None);
    assert_eq!(named("/user.slice"), None);
    assert_eq!(named("/docker/not-an-id"), None);
}

#[test]
fn short_lived_processes_group_by_comm_and_units_by_unit() {
    let mut e = Engine::new(Config::default());
    e.apply(&host(32768, 60999));
    e.apply(&cgroup(1, "/"));
    e.apply(&cgroup(2, "/system.slice/api.service"));
    for pid in 0..100u32 {
        e.apply(&conn(
            task(1000 + pid, "curl", 1),
            "10.0.0.1:80",
            u64::from(pid) * MS,
            MS,
            true,
        ));
        e.apply(&conn(
            task(2000 + pid % 3, "api-worker", 2),
            "10.0.0.1:80",
            u64::from(pid) * MS,
            MS,
            true,
        ));
    }
    let m = e.model(S);
    let names: Vec<_> = m
        .services
        .iter()
        .map(|s| (s.service.kind, s.service.name.as_str(), s.stats.new_total))
        .collect();
    assert_eq!(
        names,
        [
            (ServiceKind::Systemd, "api.service", 100),
            (ServiceKind::Comm, "curl", 100)
        ]
    );
    assert_eq!(m.services[0].pids.len(), 3);
    assert_eq!(
        m.services[1].pids.len(),
        16,
        "pids kept per service are capped"
    );
}

#[test]
fn unknown_and_vanished_cgroups_are_shown_as_such() {
    let mut e = Engine::new(Config::default());
    e.apply(&host(32768, 60999));
    e.apply(&Input::Cgroup { id: 9, path: None });
    e.apply(&conn(task(7, "gone", 9), "10.0.0.1:80", 0, MS, true));
    e.apply(&conn(task(8, "never", 77), "10.0.0.1:80", 0, MS, true));
    let m = e.model(S);
    assert!(
        m.services
            .iter()
            .all(|s| s.service.kind == ServiceKind::UnknownCgroup)
    );
    assert_eq!(m.services.len(), 2);
    assert_eq!(m.services[0].service.to_string(), "gone (cgroup ?)");
}

const UID: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";

fn pod_path() -> String {
    format!(
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{ID}.scope",
        UID.replace('-', "_")
    )
}

/// A close of `t` in network namespace `netns`.
fn conn_in(netns: u32, t: portwatch::event::Task, start_ns: u64) -> Input {
    let mut i = conn(t, "10.0.0.9:5432", start_ns, MS, true);
    if let Input::Event(portwatch::event::Event::Close(c)) = &mut i {
        c.netns = netns;
    }
    i
}

fn workload(id: &str, ns: Option<&str>, pod: Option<&str>, container: Option<&str>) -> Input {
    Input::Workload(portwatch::input::Workload {
        id: id.into(),
        source: "containerd".into(),
        pod_namespace: ns.map(Into::into),
        pod_name: pod.map(Into::into),
        container: container.map(Into::into),
    })
}

#[test]
fn a_pod_is_renamed_in_place_when_its_runtime_names_come() {
    let mut e = Engine::new(Config::default());
    e.apply(&host(32768, 60999));
    e.apply(&cgroup(5, &pod_path()));
    let pod_ns = 4_026_532_777;
    for i in 0..10u64 {
        e.apply(&conn_in(pod_ns, task(40, "api", 5), i * MS));
    }
    let m = e.model(S);
    assert_eq!(m.services.len(), 1);
    assert_eq!(m.services[0].service.to_string(), format!("{UID} (pod)"));
    assert_eq!(m.services[0].service.id.as_deref(), Some(UID));
    // The names come off the intake path, after the first events.
    e.apply(&workload(
        ID,
        Some("checkout"),
        Some("api-7f9c"),
        Some("api"),
    ));
    for i in 10..15u64 {
        e.apply(&conn_in(pod_ns, task(40, "api", 5), i * MS));
    }
    let m = e.model(S);
    assert_eq!(m.services.len(), 1, "one row, renamed: {:?}", m.services);
    let s = &m.services[0];
    assert_eq!(s.service.to_string(), "checkout/api-7f9c (pod)");
    assert_eq!(s.service.kind, ServiceKind::Pod);
    assert_eq!(s.service.id.as_deref(), Some(UID));
    assert_eq!(s.service.namespace.as_deref(), Some("checkout"));
    assert_eq!(s.service.container.as_deref(), Some("api"));
    assert_eq!(s.stats.new_total, 15, "the counts before the names stay");
    assert_eq!(m.pairs.len(), 1);
    assert_eq!(m.pairs[0].service, s.service);
    // The namespace is named by the same name.
    assert_eq!(
        m.pairs[0].netns_name.as_deref(),
        Some("pod:checkout/api-7f9c")
    );
}

#[test]
fn pod_names_by_uid_alone_leave_the_container_unnamed() {
    let mut e = Engine::new(Config::default());
    e.apply(&host(32768, 60999));
    e.apply(&cgroup(5, &pod_path()));
    e.apply(&workload(UID, Some("checkout"), Some("api-7f9c"), None));
    e.apply(&conn(task(40, "api", 5), "10.0.0.9:5432", 0, MS, true));
    let m = e.model(S);
    let s = &m.services[0].service;
    assert_eq!(s.to_string(), "checkout/api-7f9c (pod)");
    assert_eq!(s.container, None);
}

#[test]
fn a_docker_container_is_named_by_its_name() {
    let mut e = Engine::new(Config::default());
    e.apply(&host(32768, 60999));
    e.apply(&cgroup(6, &format!("/system.slice/docker-{ID}.scope")));
    e.apply(&conn(task(41, "python3", 6), "10.0.0.9:6379", 0, MS, true));
    assert_eq!(
        e.model(S).services[0].service.to_string(),
        format!("{} (docker)", &ID[..12])
    );
    e.apply(&workload(ID, None, None, Some("web")));
    let m = e.model(S);
    assert_eq!(m.services[0].service.to_string(), "web (docker)");
    assert_eq!(m.services[0].service.id.as_deref(), Some(ID));
    // Names for a container no cgroup of this run names change nothing.
    e.apply(&workload(&"ab".repeat(32), None, None, Some("other")));
    assert_eq!(e.model(S).services.len(), 1);
}
