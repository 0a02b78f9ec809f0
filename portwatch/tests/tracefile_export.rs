//! `portwatch export`: trace events as JSON Lines and CSV with the field
//! names of `trace --json`.

use std::process::Command;

use portwatch::cli::ExportFormat;
use portwatch::cmd::export::export;
use portwatch::input::Input;
use portwatch::output::JsonEvent;
use portwatch::tracefile::{Reader, Writer, synthetic};

fn trace(events: usize) -> (Vec<u8>, Vec<Input>) {
    let inputs = synthetic::churn(events, 1_000);
    let mut w = Writer::new(Vec::new()).unwrap();
    for i in &inputs {
        w.append(i).unwrap();
    }
    (w.finish().unwrap(), inputs)
}

fn run(bytes: &[u8], format: ExportFormat) -> String {
    let mut out = Vec::new();
    let warnings = export(Reader::new(bytes).unwrap(), &mut out, format).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    String::from_utf8(out).unwrap()
}

#[test]
fn jsonl_lines_are_trace_json_events() {
    let (bytes, inputs) = trace(20);
    let Input::Host(host) = &inputs[0] else {
        panic!("no host")
    };
    let mut namer = portwatch::engine::namer::Namer::new();
    let expected: Vec<String> = inputs
        .iter()
        .filter_map(|i| {
            namer.observe(i);
            match i {
                Input::Event(e) => {
                    let name = namer.name_or_inode(e.netns());
                    Some(
                        serde_json::to_string(&JsonEvent::new(e, &host.clock, name.as_deref()))
                            .unwrap(),
                    )
                }
                _ => None,
            }
        })
        .collect();
    let text = run(&bytes, ExportFormat::Jsonl);
    assert_eq!(text.lines().collect::<Vec<_>>(), expected);
    let v: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(v["event"], "close");
    assert_eq!(v["dport"], 5432);
    assert!(v["time"].as_str().unwrap().starts_with("2023-11-14T"));
    // Its namespace is the recording host's own.
    assert_eq!(v["netns"], 4026531840u32);
    assert_eq!(v["netns_name"], "host");
}

#[test]
fn csv_has_a_header_row_with_the_json_field_names() {
    let (bytes, _) = trace(20);
    let text = run(&bytes, ExportFormat::Csv);
    let mut rdr = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = rdr.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(&header[..4], ["event", "time", "ts_ns", "pid"]);
    assert!(header.contains(&"lifetime_us".to_string()));
    let rows: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 20);
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    assert_eq!(&rows[0][col("daddr")], "10.0.9.20");
    assert_eq!(&rows[0][col("errno")], "", "None is an empty cell");
    assert_eq!(&rows[0][col("netns_name")], "host");
}

#[test]
fn csv_of_a_trace_without_events_is_just_the_header() {
    let (bytes, _) = trace(0);
    let text = run(&bytes, ExportFormat::Csv);
    assert_eq!(text.lines().count(), 1);
    assert!(text.starts_with("event,time,ts_ns,"), "{text}");
}

#[test]
fn the_command_exports_what_a_torn_trace_holds_and_warns() {
    let (bytes, _) = trace(10);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("torn.pwtrace");
    std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_portwatch"))
        .arg("export")
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning") && stderr.contains("incomplete last frame"),
        "{stderr}"
    );
    // What happened, without guessing which: a kill and a full disk both
    // leave a partial frame at the end.
    assert!(
        stderr.contains("the file ends in a partial frame")
            && stderr.contains("killed or ran out of disk space")
            && !stderr.contains("probably"),
        "{stderr}"
    );
    // One frame only, torn: nothing readable, but no failure.
    assert_eq!(out.stdout.len(), 0);
}

#[test]
fn the_command_fails_with_the_offset_of_a_corrupt_frame() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.pwtrace");
    let mut bytes = portwatch::tracefile::MAGIC.to_vec();
    bytes.extend_from_slice(b"not a real header at all");
    std::fs::write(&path, &bytes).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_portwatch"))
        .args(["export", "--format", "csv"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.pwtrace") && stderr.contains("checksum"),
        "{stderr}"
    );
}
