//! The fleet pieces in deploy/ checked against the exporter and with the
//! tools that consume them: promtool (rules, rule unit tests, exposition),
//! kubernetes-validate (manifests, offline schemas), and the dashboard's
//! queries against the metric names the exporter exports. No root.
//!
//! The tools are installed by `cargo xtask setup`. Without them a test
//! prints a notice and returns; under CI=true it fails instead.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::assert_promtool_accepts;
use portwatch::engine::Model;
use portwatch::exporter::{HostExtras, Limits, Series, families};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// The tool's path, or `None` (after a notice) when it is not installed.
fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
            panic!("{name} is missing under CI: `cargo xtask setup` installs it");
        }
        eprintln!("note: {name} not installed, test not run (`cargo xtask setup` installs it)");
    }
    found
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Names as they appear in PromQL: every family, with a histogram's
/// `_bucket`, `_sum` and `_count`.
fn exported_names() -> BTreeSet<String> {
    let fams = families(
        &Series::new(Limits::default()),
        &Model::default(),
        &HostExtras::default(),
    );
    let mut names = BTreeSet::new();
    for f in fams {
        let n = f.exposed_name();
        if matches!(f.kind, prometheus_client::metrics::MetricType::Histogram) {
            for s in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{n}{s}"));
            }
        } else {
            names.insert(n);
        }
    }
    names
}

fn rules() -> serde_yaml::Value {
    let text = std::fs::read_to_string(deploy().join("prometheus/portwatch.rules.yml"))
        .expect("reading the rules");
    serde_yaml::from_str(&text).expect("rules are YAML")
}

fn rule_items(rules: &serde_yaml::Value) -> Vec<&serde_yaml::Value> {
    rules["groups"]
        .as_sequence()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_sequence().expect("rules").iter())
        .collect()
}

fn recorded_names() -> BTreeSet<String> {
    rule_items(&rules())
        .iter()
        .filter_map(|r| r["record"].as_str().map(String::from))
        .collect()
}

/// Metric names in a PromQL expression: identifiers that name a portwatch
/// metric or a recording rule (`level:metric:operation`), outside label
/// matchers' quoted values.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_quotes = false;
    let mut word = String::new();
    for c in expr.chars().chain([' ']) {
        if c == '"' {
            in_quotes = !in_quotes;
        }
        if !in_quotes && (c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            word.push(c);
            continue;
        }
        if word.starts_with("portwatch_") || word.contains(":portwatch_") {
            names.push(word.clone());
        }
        word.clear();
    }
    names
}

#[test]
fn metric_names_are_found_in_promql() {
    assert_eq!(
        metric_names(
            r#"sum by (le) (rate(portwatch_x_bucket{service=~"$s", y="portwatch_no"}[5m])) / a:portwatch_y:rate1m"#
        ),
        ["portwatch_x_bucket", "a:portwatch_y:rate1m"]
    );
}

#[test]
fn rules_pass_promtool_check_and_their_unit_tests() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let dir = deploy().join("prometheus");
    let (ok, out) = run(Command::new(&promtool).current_dir(&dir).args([
        "check",
        "rules",
        "portwatch.rules.yml",
    ]));
    assert!(ok, "promtool check rules:\n{out}");
    let (ok, out) = run(Command::new(&promtool).current_dir(&dir).args([
        "test",
        "rules",
        "portwatch.rules.test.yml",
    ]));
    assert!(ok && out.contains("SUCCESS"), "promtool test rules:\n{out}");
}

#[test]
fn every_alert_has_a_runbook_and_a_unit_test() {
    let rules = rules();
    let alerts: BTreeSet<String> = rule_items(&rules)
        .iter()
        .filter_map(|r| {
            let name = r["alert"].as_str()?;
            let runbook = r["annotations"]["runbook"].as_str().unwrap_or_default();
            assert!(
                runbook.len() > 40,
                "{name}: the runbook line says what to do"
            );
            Some(name.to_string())
        })
        .collect();
    assert_eq!(
        alerts,
        BTreeSet::from(
            [
                "PortwatchLacksPooling",
                "PortwatchPortPressureHigh",
                "PortwatchEaddrnotavail",
                "PortwatchEventsLost"
            ]
            .map(String::from)
        )
    );
    let text = std::fs::read_to_string(deploy().join("prometheus/portwatch.rules.test.yml"))
        .expect("reading the rule tests");
    let tests: serde_yaml::Value = serde_yaml::from_str(&text).expect("YAML");
    let tested: BTreeSet<String> = tests["tests"]
        .as_sequence()
        .expect("tests")
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_sequence().into_iter().flatten())
        // Only tests where the alert is expected to fire count.
        .filter(|a| a["exp_alerts"].as_sequence().is_some_and(|e| !e.is_empty()))
        .filter_map(|a| a["alertname"].as_str().map(String::from))
        .collect();
    assert_eq!(tested, alerts, "every alert has a firing unit test");
}

#[test]
fn rules_use_only_exported_metrics() {
    let exported = exported_names();
    let recorded = recorded_names();
    for r in rule_items(&rules()) {
        let expr = r["expr"].as_str().expect("expr");
        for n in metric_names(expr) {
            assert!(
                exported.contains(&n) || recorded.contains(&n),
                "rule {:?} uses {n}, which the exporter does not export",
                r.get("alert").or(r.get("record"))
            );
        }
    }
}

#[test]
fn exposition_passes_promtool_check_metrics() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    // A model with every family populated: the snapshot scenario's text.
    let snap = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/snapshots/exporter_metrics__exposition_prometheus_text.snap"),
    )
    .expect("the exposition snapshot");
    let text = snap.splitn(3, "---\n").nth(2).expect("snapshot body");
    assert_promtool_accepts(promtool, text);
}

fn yaml(file: &str) -> serde_yaml::Value {
    let text = std::fs::read_to_string(deploy().join("kubernetes").join(file))
        .unwrap_or_else(|e| panic!("{file}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
}

#[test]
fn manifests_validate_against_kubernetes_schemas() {
    let Some(validate) = tool("kubernetes-validate") else {
        return;
    };
    let dir = deploy().join("kubernetes");
    // PodMonitor is a CRD of the Prometheus Operator: no schema offline;
    // manifests_agree_with_each_other checks what it refers to.
    let files = [
        "namespace.yaml",
        "serviceaccount.yaml",
        "daemonset.yaml",
        "service.yaml",
    ];
    // The newest schemas the package has, and an older cluster.
    for version in [None, Some("1.28.0")] {
        let mut cmd = Command::new(&validate);
        cmd.current_dir(&dir).arg("--strict");
        if let Some(v) = version {
            cmd.args(["-k", v]);
        }
        let (ok, out) = run(cmd.args(files));
        assert!(ok, "kubernetes-validate {version:?}:\n{out}");
        for f in files {
            assert!(
                out.lines().any(|l| l.contains(f) && l.contains("passed")),
                "{f} not validated ({version:?}):\n{out}"
            );
        }
    }
}

#[test]
fn manifests_agree_with_each_other() {
    let ds = yaml("daemonset.yaml");
    let pod = &ds["spec"]["template"];
    let labels = &pod["metadata"]["labels"];
    let sel_matches = |sel: &serde_yaml::Value| {
        sel.as_mapping()
            .expect("selector")
            .iter()
            .all(|(k, v)| &labels[k.as_str().expect("key")] == v)
    };
    assert!(sel_matches(&ds["spec"]["selector"]["matchLabels"]));
    assert!(sel_matches(&yaml("service.yaml")["spec"]["selector"]));
    let pm = yaml("podmonitor.yaml");
    assert_eq!(pm["apiVersion"], "monitoring.coreos.com/v1");
    assert!(sel_matches(&pm["spec"]["selector"]["matchLabels"]));

    let c = &pod["spec"]["containers"][0];
    let port = portwatch::exporter::DEFAULT_LISTEN
        .rsplit_once(':')
        .expect("port")
        .1;
    assert_eq!(c["ports"][0]["name"], "metrics");
    assert_eq!(
        c["ports"][0]["containerPort"]
            .as_u64()
            .map(|p| p.to_string())
            .as_deref(),
        Some(port)
    );
    assert_eq!(pod["metadata"]["annotations"]["prometheus.io/port"], port);
    assert_eq!(pm["spec"]["podMetricsEndpoints"][0]["port"], "metrics");
    let args: Vec<&str> = c["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert_eq!(args[0], "exporter");
    assert!(
        args.iter().any(|a| a.ends_with(&format!(":{port}"))),
        "{args:?}"
    );
    // Capabilities instead of privileged, and the host's namespaces.
    let sc = &c["securityContext"];
    assert_eq!(sc["privileged"], false);
    let caps: Vec<&str> = sc["capabilities"]["add"]
        .as_sequence()
        .expect("caps")
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert!(
        caps.contains(&"BPF") && caps.contains(&"PERFMON"),
        "{caps:?}"
    );
    assert_eq!(pod["spec"]["hostPID"], true);
    assert_eq!(pod["spec"]["hostNetwork"], true);
    assert!(c["resources"]["limits"]["memory"].is_string());
    let mounts: BTreeSet<&str> = c["volumeMounts"]
        .as_sequence()
        .expect("mounts")
        .iter()
        .filter_map(|m| m["mountPath"].as_str())
        .collect();
    for m in [
        "/sys/kernel/tracing",
        "/sys/fs/cgroup",
        "/sys/kernel/btf",
        "/host/run/containerd",
        "/host/run/containers",
        "/host/var/log/pods",
    ] {
        assert!(mounts.contains(m), "{m} not mounted: {mounts:?}");
    }
}

#[test]
fn dashboard_queries_use_only_exported_metrics() {
    let text = std::fs::read_to_string(deploy().join("grafana/portwatch.json")).expect("dashboard");
    let dash: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let exported = exported_names();
    let recorded = recorded_names();
    let mut exprs = Vec::new();
    fn walk<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v.as_str()) {
                        ("expr" | "definition", Some(s)) => out.push(s),
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    walk(&dash, &mut exprs);
    assert!(exprs.len() >= 20, "only {} queries found", exprs.len());
    let mut used = BTreeSet::new();
    for e in &exprs {
        let names = metric_names(e);
        assert!(!names.is_empty(), "query without a portwatch metric: {e}");
        for n in names {
            assert!(
                exported.contains(&n) || recorded.contains(&n),
                "the dashboard queries {n}, which the exporter does not export: {e}"
            );
            used.insert(n);
        }
    }
    // Every level of the drill-down is there.
    let rows: Vec<&str> = dash["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .filter(|p| p["type"] == "row")
        .filter_map(|p| p["title"].as_str())
        .collect();
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert!(rows[0].starts_with("Fleet") && rows[1].starts_with("Node"));
    assert!(rows[2].starts_with("Service") && rows[3].starts_with("Destination"));
    assert!(used.contains("portwatch_lacks_pooling"));
}
