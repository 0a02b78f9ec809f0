//! `cargo xtask faults`: runs the fault suite (portwatch/tests/kernel_faults.rs,
//! root) and prints the README's Reliability table from the figures each
//! test measured.

use std::path::Path;

use anyhow::{Context, Result, bail};

pub fn run(root: &Path) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the fault suite injects faults into real kernel tracing: run it as root");
    }
    let figures =
        std::env::temp_dir().join(format!("portwatch-faults-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&figures);
    let status = crate::cargo()
        .current_dir(root)
        .args(["test", "-p", "portwatch", "--test", "kernel_faults"])
        .env("PORTWATCH_FAULT_FIGURES", &figures)
        // A test that cannot run fails instead of skipping: no blank rows.
        .env("CI", "true")
        .env("INSTA_UPDATE", "no")
        .status()
        .context("running the fault suite")?;
    let text = std::fs::read_to_string(&figures).unwrap_or_default();
    let _ = std::fs::remove_file(&figures);
    println!("{}", table(&text)?);
    if !status.success() {
        bail!("a fault test failed (the table lists the ones that passed)");
    }
    Ok(())
}

/// The markdown table of the figures file (one JSON object per line).
fn table(jsonl: &str) -> Result<String> {
    let mut out = String::from(
        "| fault | injected | delivered | counted lost | missed | peak RSS | exit |\n\
         | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for line in jsonl.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("figures line {line:?}"))?;
        let n = |k: &str| {
            v[k].as_u64()
                .map_or_else(|| "–".to_string(), |n| n.to_string())
        };
        let rss = v["rss_kib"]
            .as_u64()
            .map_or_else(|| "–".to_string(), |k| format!("{} MiB", k.div_ceil(1024)));
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            v["fault"].as_str().unwrap_or("?"),
            v["injected"].as_str().unwrap_or(""),
            n("delivered"),
            n("lost"),
            n("missed"),
            rss,
            v["exit"].as_str().unwrap_or("?"),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_become_table_rows() {
        let t = table(
            r#"{"fault":"reader starved","injected":"SIGSTOP 3 s","delivered":10,"lost":5,"missed":0,"rss_kib":35000,"exit":"0"}
{"fault":"disk full","injected":"tmpfs","delivered":null,"lost":null,"missed":null,"rss_kib":null,"exit":"1"}"#,
        )
        .unwrap();
        assert!(
            t.contains("| reader starved | SIGSTOP 3 s | 10 | 5 | 0 | 35 MiB | 0 |"),
            "{t}"
        );
        assert!(
            t.contains("| disk full | tmpfs | – | – | – | – | 1 |"),
            "{t}"
        );
    }
}
