//! The `lacks_pooling` fix in the words of the client's runtime
//! (`Input::Runtime`) and of the protocol its destination port suggests.

mod engine_support;

use engine_support::*;
use portwatch::engine::{Config, Engine, Verdict};
use portwatch::input::{Input, ProcRuntime};

fn runtime(pid: u32, name: &str, evidence: &str) -> Input {
    Input::Runtime(ProcRuntime {
        pid,
        exe: "/usr/bin/x".into(),
        name: name.into(),
        evidence: evidence.into(),
    })
}

/// The verdict of pid 42 (`api.service`) churning to `dst`, with `rt`
/// applied mid-run (as the live source sends it, after some closes).
fn verdict(dst: &str, rt: Option<Input>) -> Verdict {
    let mut e = Engine::new(Config::default());
    e.apply(&host(32768, 60999));
    e.apply(&cgroup(5, "/system.slice/api.service"));
    let t = task(42, "api", 5);
    let inputs = churn(t, dst, 0, 30, 20, 2 * MS, true);
    let (a, b) = inputs.split_at(inputs.len() / 2);
    a.iter().for_each(|i| e.apply(i));
    if let Some(r) = &rt {
        e.apply(r);
    }
    b.iter().for_each(|i| e.apply(i));
    let m = e.model(30 * S);
    assert_eq!(m.verdicts.len(), 1, "{:#?}", m.verdicts);
    m.verdicts[0].clone()
}

#[test]
fn python_http_client_is_told_to_use_a_requests_session() {
    let v = verdict(
        "10.0.0.1:80",
        Some(runtime(42, "Python", "libpython3.11 mapped")),
    );
    assert!(
        v.fix.starts_with(
            "Reuse connections from api.service to 10.0.0.1:80, a Python client \
             (libpython3.11 mapped): use one requests.Session()"
        ),
        "{}",
        v.fix
    );
    assert!(v.fix.contains("urllib3.PoolManager"), "{}", v.fix);
    assert_eq!(v.runtime.as_ref().unwrap().name, "Python");
    assert_eq!(v.protocol, Some("http"));
    let json = serde_json::to_value(portwatch::render::batch::verdict_json(&v)).unwrap();
    assert_eq!(json["runtime"]["name"], "Python");
    assert_eq!(json["runtime"]["evidence"], "libpython3.11 mapped");
    assert_eq!(json["protocol"], "http");
}

#[test]
fn each_runtime_gets_its_own_words() {
    let cases = [
        (
            "Go",
            "Go build info (.go.buildinfo) in api",
            "MaxIdleConnsPerHost (default 2)",
        ),
        (
            "Java",
            "libjvm mapped",
            "PoolingHttpClientConnectionManager",
        ),
        ("Node.js", "executable node", "keepAlive: true"),
        ("Perl", "executable perl", "LWP::UserAgent with keep_alive"),
        ("Ruby", "libruby-3.1 mapped", "Net::HTTP.start"),
        (
            "native (glibc)",
            "libc mapped",
            "enable HTTP keep-alive or a connection pool",
        ),
    ];
    for (name, evidence, words) in cases {
        let v = verdict("10.0.0.1:8080", Some(runtime(42, name, evidence)));
        assert!(v.fix.contains(words), "{name}: {}", v.fix);
        assert!(
            v.fix.contains(&format!("a {name} client ({evidence})")),
            "{name}: {}",
            v.fix
        );
    }
}

#[test]
fn databases_and_caches_are_told_about_pools_and_poolers() {
    let v = verdict(
        "10.0.0.1:5432",
        Some(runtime(42, "Python", "executable python3.11")),
    );
    assert_eq!(v.protocol, Some("postgres"));
    assert!(v.fix.contains("psycopg_pool"), "{}", v.fix);
    assert!(v.fix.contains("PgBouncer"), "{}", v.fix);
    let v = verdict("10.0.0.1:5432", Some(runtime(42, "Go", "Go build info")));
    assert!(v.fix.contains("pgxpool.Pool"), "{}", v.fix);
    let v = verdict("10.0.0.1:5432", None);
    assert!(
        v.fix.contains("libpq") && v.fix.contains("PgBouncer"),
        "{}",
        v.fix
    );
    let v = verdict(
        "10.0.0.1:6379",
        Some(runtime(42, "Python", "executable python3")),
    );
    assert_eq!(v.protocol, Some("redis"));
    assert!(v.fix.contains("redis.ConnectionPool"), "{}", v.fix);
    let v = verdict("10.0.0.1:3306", None);
    assert_eq!(v.protocol, Some("mysql"));
    let v = verdict("10.0.0.1:11211", None);
    assert_eq!(v.protocol, Some("memcached"));
}

#[test]
fn unknown_runtime_and_port_keep_the_generic_text_and_null_fields() {
    // A runtime of another pid does not apply.
    let v = verdict("10.0.0.1:9000", Some(runtime(7, "Java", "libjvm mapped")));
    assert_eq!(v.runtime, None);
    assert_eq!(v.protocol, None);
    assert!(
        v.fix.starts_with(
            "Reuse connections from api.service to 10.0.0.1:9000: enable HTTP keep-alive or a \
             connection pool in the client."
        ),
        "{}",
        v.fix
    );
    assert!(!v.fix.contains("'s client"), "{}", v.fix);
    let json = serde_json::to_value(portwatch::render::batch::verdict_json(&v)).unwrap();
    assert!(
        json["runtime"].is_null() && json["protocol"].is_null(),
        "{json}"
    );
}
