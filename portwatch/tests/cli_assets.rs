//! The man pages and completions `cargo xtask dist` ships, as written by
//! the hidden `portwatch assets`: one page per command with every option of
//! its `--help`, valid roff, and completions a shell actually completes with.
//! No root needed.

use std::path::{Path, PathBuf};
use std::process::Command;

const COMMANDS: &[&str] = &[
    "trace", "top", "record", "export", "replay", "report", "doctor", "exporter",
];

fn portwatch() -> Command {
    Command::new(env!("CARGO_BIN_EXE_portwatch"))
}

fn assets() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = portwatch()
        .args(["assets", "--out-dir"])
        .arg(dir.path())
        .output()
        .expect("run portwatch assets");
    assert!(out.status.success(), "assets failed: {out:?}");
    let p = dir.path().to_path_buf();
    (dir, p)
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Long options (`--name`) in a help text.
fn long_options(help: &str) -> Vec<String> {
    help.split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']')
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| {
            w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
                .to_string()
        })
        .collect()
}

#[test]
fn every_command_has_a_man_page_with_every_option_of_its_help() {
    let (_keep, dir) = assets();
    let top = read(&dir.join("man/portwatch.1"));
    for cmd in COMMANDS {
        assert!(top.contains(cmd), "portwatch.1 does not list {cmd}");
        let page = read(&dir.join(format!("man/portwatch-{cmd}.1")));
        let help = portwatch().args([cmd, "--help"]).output().expect("help");
        let help = String::from_utf8(help.stdout).expect("utf-8 help");
        let opts = long_options(&help);
        assert!(!opts.is_empty(), "{cmd} --help lists no options: {help}");
        for opt in opts {
            // roff escapes '-' as '\-'.
            let escaped = opt.replace('-', "\\-");
            assert!(
                page.contains(&escaped),
                "portwatch-{cmd}.1 lacks {opt} from `portwatch {cmd} --help`"
            );
        }
    }
}

#[test]
fn hidden_assets_command_is_in_no_man_page_or_completion() {
    let (_keep, dir) = assets();
    let mut files = 0;
    for sub in ["man", "completions"] {
        for e in std::fs::read_dir(dir.join(sub)).expect("read dir") {
            let p = e.expect("entry").path();
            files += 1;
            assert!(
                !read(&p).contains("assets"),
                "{} offers the hidden assets command",
                p.display()
            );
        }
    }
    // A man page for portwatch and each command, and 3 completion scripts.
    assert_eq!(files, 1 + COMMANDS.len() + 3);
}

#[test]
fn man_pages_are_valid_roff() {
    let (_keep, dir) = assets();
    for e in std::fs::read_dir(dir.join("man")).expect("read dir") {
        let p = e.expect("entry").path();
        let out = Command::new("groff")
            .args(["-man", "-ww", "-z"])
            .arg(&p)
            .output()
            .expect("groff (man-db's groff-base; `cargo xtask setup` installs it)");
        assert!(out.status.success(), "groff failed on {}", p.display());
        assert!(
            out.stderr.is_empty(),
            "groff warns about {}: {}",
            p.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Asks bash to complete `words` with the generated script, as the shell
/// does when Tab is pressed.
fn bash_complete(script: &Path, words: &[&str]) -> Vec<String> {
    let cur = words.last().expect("a word to complete");
    let prev = words[words.len().saturating_sub(2)];
    let cmd = format!(
        "source {}; COMP_WORDS=({}); COMP_CWORD={}; _portwatch portwatch {cur:?} {prev:?}; \
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        words
            .iter()
            .map(|w| format!("{w:?}"))
            .collect::<Vec<_>>()
            .join(" "),
        words.len() - 1
    );
    let out = Command::new("bash")
        .args(["--norc", "-c", &cmd])
        .output()
        .expect("bash");
    assert!(out.status.success(), "bash: {out:?}");
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completes_commands_and_options() {
    let (_keep, dir) = assets();
    let script = dir.join("completions/portwatch.bash");
    let mut subs = bash_complete(&script, &["portwatch", "re"]);
    subs.sort();
    assert_eq!(subs, ["record", "replay", "report"]);
    assert_eq!(
        bash_complete(&script, &["portwatch", "top", "--ba"]),
        ["--batch"]
    );
}

#[test]
fn zsh_and_fish_scripts_name_every_command() {
    let (_keep, dir) = assets();
    for file in ["_portwatch", "portwatch.fish"] {
        let text = read(&dir.join("completions").join(file));
        for cmd in COMMANDS {
            assert!(text.contains(cmd), "{file} lacks {cmd}");
        }
    }
    assert!(read(&dir.join("completions/_portwatch")).starts_with("#compdef portwatch"));
}
