//! Which runtime a client process runs on (Python, Go, Java, Node.js, ...),
//! so the `lacks_pooling` fix can be given in that runtime's words.
//!
//! Read from `/proc/PID/exe` and the files mapped in `/proc/PID/maps`:
//! libpython3.X → Python, libjvm → Java, a `node` executable → Node.js, a
//! Go build-info ELF section → Go, libruby → Ruby, perl → Perl, else native
//! (glibc or musl). Done off the intake path by a [`Worker`] thread, at most
//! once per (pid, executable); a process that is gone is simply not
//! reported (unknown, never an error). Parsing is split from reading so it
//! is tested on fixture maps text.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::input::ProcRuntime;
use crate::system::worker;

/// The runtime read off an executable's name and its mapped files.
/// `go` tells whether the executable has a Go build-info section (checked
/// by the caller, who can read the file).
pub fn classify(exe: &str, maps: &str, go: bool) -> (String, String) {
    let exe_name = base(exe);
    let libs: Vec<&str> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|p| p.starts_with('/'))
        .map(base)
        .collect();
    let lib = |prefix: &str| libs.iter().find(|l| l.starts_with(prefix)).copied();
    let mapped = |l: &str| {
        let l = l.split(".so").next().unwrap_or(l);
        format!("{l} mapped")
    };
    if let Some(l) = lib("libjvm") {
        return ("Java".into(), mapped(l));
    }
    if let Some(l) = lib("libpython") {
        return ("Python".into(), mapped(l));
    }
    if exe_name.starts_with("python") {
        return ("Python".into(), format!("executable {exe_name}"));
    }
    if exe_name == "node" || exe_name == "nodejs" {
        return ("Node.js".into(), format!("executable {exe_name}"));
    }
    if let Some(l) = lib("libnode") {
        return ("Node.js".into(), mapped(l));
    }
    if go {
        return (
            "Go".into(),
            format!("Go build info (.go.buildinfo) in {exe_name}"),
        );
    }
    if let Some(l) = lib("libruby") {
        return ("Ruby".into(), mapped(l));
    }
    if exe_name.starts_with("ruby") {
        return ("Ruby".into(), format!("executable {exe_name}"));
    }
    if let Some(l) = lib("libperl") {
        return ("Perl".into(), mapped(l));
    }
    if exe_name.starts_with("perl") {
        return ("Perl".into(), format!("executable {exe_name}"));
    }
    if let Some(l) = lib("ld-musl").or_else(|| lib("libc.musl")) {
        return ("native (musl)".into(), mapped(l));
    }
    if let Some(l) = lib("libc.so").or_else(|| lib("libc-2.")) {
        return ("native (glibc)".into(), mapped(l));
    }
    (
        "native".into(),
        format!("{exe_name}: no known runtime mapped"),
    )
}

fn base(p: &str) -> &str {
    let p = p.strip_suffix(" (deleted)").unwrap_or(p);
    p.rsplit('/').next().unwrap_or(p)
}

/// Whether the ELF file has a `.go.buildinfo` section (every Go binary
/// since Go 1.13, stripped or not). Reads the headers only.
pub fn has_go_buildinfo(path: &Path) -> bool {
    use object::read::elf::FileHeader;
    let Ok(f) = std::fs::File::open(path) else {
        return false;
    };
    // Only the file header, the section headers and the section name
    // table are read (object::File::parse would read the symbol tables
    // too: megabytes for a binary with debug info).
    let cache = object::ReadCache::new(f);
    let Ok(header) = object::elf::FileHeader64::<object::Endianness>::parse(&cache) else {
        return false;
    };
    let Ok(endian) = header.endian() else {
        return false;
    };
    header
        .sections(endian, &cache)
        .is_ok_and(|t| t.section_by_name(endian, b".go.buildinfo").is_some())
}

/// Reads one process's runtime under `proc_root` (`/proc`); `None` when
/// the process is gone or unreadable.
pub fn detect(proc_root: &Path, pid: u32) -> Option<ProcRuntime> {
    detect_with(proc_root, pid, &mut HashMap::new())
}

/// [`detect`], with the Go check remembered per executable path (many
/// processes of one binary read its section headers once).
fn detect_with(
    proc_root: &Path,
    pid: u32,
    go_by_exe: &mut HashMap<PathBuf, bool>,
) -> Option<ProcRuntime> {
    let dir = proc_root.join(pid.to_string());
    let exe = std::fs::read_link(dir.join("exe")).ok()?;
    let maps = std::fs::read_to_string(dir.join("maps")).ok()?;
    let exe_s = exe.to_string_lossy().into_owned();
    // Through /proc/PID/exe: the binary as mapped, even if its path was
    // replaced or is in another mount namespace.
    if go_by_exe.len() >= CACHE_ENTRIES {
        go_by_exe.clear();
    }
    let go = *go_by_exe
        .entry(exe.clone())
        .or_insert_with(|| has_go_buildinfo(&dir.join("exe")));
    let (name, evidence) = classify(&exe_s, &maps, go);
    Some(ProcRuntime {
        pid,
        exe: exe_s,
        name,
        evidence,
    })
}

/// Pids waiting for the worker; beyond this new requests are dropped.
const QUEUE: usize = 1024;
/// (pid, exe) results remembered; cleared when full.
const CACHE_ENTRIES: usize = 8192;

/// Detects runtimes on its own thread; never blocks its caller.
pub struct Worker {
    thread: worker::Worker<u32, ProcRuntime>,
    /// Requests dropped because the worker was behind.
    pub dropped: u64,
}

impl Worker {
    pub fn spawn(proc_root: PathBuf) -> std::io::Result<Worker> {
        let thread = worker::Worker::spawn("portwatch-langrt", Some(QUEUE), move || {
            let mut cache: HashMap<(u32, PathBuf), ProcRuntime> = HashMap::new();
            let mut go_by_exe = HashMap::new();
            move |pid: u32, out: &worker::Answers<ProcRuntime>| {
                let dir = proc_root.join(pid.to_string());
                let Ok(exe) = std::fs::read_link(dir.join("exe")) else {
                    return Ok(());
                };
                let key = (pid, exe);
                let found = match cache.get(&key) {
                    Some(r) => Some(r.clone()),
                    None => detect_with(&proc_root, pid, &mut go_by_exe),
                };
                if let Some(r) = found {
                    if cache.len() >= CACHE_ENTRIES {
                        cache.clear();
                    }
                    cache.insert(key, r.clone());
                    out.send(r)?;
                }
                Ok(())
            }
        })?;
        Ok(Worker { thread, dropped: 0 })
    }

    /// Queues a pid; never blocks.
    pub fn ask(&mut self, pid: u32) {
        if self.thread.send(pid).is_err() {
            self.dropped += 1;
        }
    }

    /// What was detected so far; never blocks.
    pub fn try_recv(&self) -> Vec<ProcRuntime> {
        self.thread.try_recv().collect()
    }

    /// Waits for everything queued (end of a run).
    pub fn finish(&mut self) -> Vec<ProcRuntime> {
        self.thread.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn maps(paths: &[&str]) -> String {
        paths
            .iter()
            .map(|p| format!("7f0000000000-7f0000001000 r-xp 00000000 fe:01 1234  {p}\n"))
            .collect::<String>()
            + "7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0  [stack]\n"
    }

    #[test]
    fn python_by_its_library_or_its_executable() {
        let m = maps(&[
            "/usr/bin/uwsgi",
            "/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0",
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
        ]);
        assert_eq!(
            classify("/usr/bin/uwsgi", &m, false),
            ("Python".into(), "libpython3.11 mapped".into())
        );
        // Debian's python3 links libpython statically.
        let m = maps(&["/usr/bin/python3.11", "/usr/lib/x86_64-linux-gnu/libc.so.6"]);
        assert_eq!(
            classify("/usr/bin/python3.11", &m, false),
            ("Python".into(), "executable python3.11".into())
        );
    }

    #[test]
    fn java_node_ruby_perl_go() {
        let m = maps(&[
            "/usr/lib/jvm/java-17/bin/java",
            "/usr/lib/jvm/java-17/lib/server/libjvm.so",
        ]);
        assert_eq!(
            classify("/usr/lib/jvm/java-17/bin/java", &m, false).0,
            "Java"
        );
        assert_eq!(
            classify("/usr/lib/jvm/java-17/bin/java", &m, false).1,
            "libjvm mapped"
        );
        assert_eq!(
            classify("/usr/bin/node", &maps(&["/usr/bin/node"]), false).0,
            "Node.js"
        );
        assert_eq!(
            classify(
                "/usr/bin/ruby3.1",
                &maps(&["/usr/lib/libruby-3.1.so.3.1"]),
                false
            )
            .1,
            "libruby-3.1 mapped"
        );
        assert_eq!(
            classify(
                "/usr/bin/perl",
                &maps(&["/usr/bin/perl", "/usr/lib/x86_64-linux-gnu/libperl.so.5.36"]),
                false
            ),
            ("Perl".into(), "libperl mapped".into())
        );
        let (name, ev) = classify("/srv/api (deleted)", &maps(&["/srv/api"]), true);
        assert_eq!(name, "Go");
        assert!(ev.contains("api"), "{ev}");
    }

    #[test]
    fn native_glibc_musl_or_nothing_known() {
        assert_eq!(
            classify(
                "/usr/bin/curl",
                &maps(&["/usr/bin/curl", "/usr/lib/x86_64-linux-gnu/libc.so.6"]),
                false
            ),
            ("native (glibc)".into(), "libc mapped".into())
        );
        assert_eq!(
            classify("/bin/busybox", &maps(&["/lib/ld-musl-x86_64.so.1"]), false).0,
            "native (musl)"
        );
        assert_eq!(classify("/static", "", false).0, "native");
    }

    #[test]
    fn this_test_binary_is_native_not_go() {
        let me = std::env::current_exe().unwrap();
        assert!(!has_go_buildinfo(&me));
        let r = detect(Path::new("/proc"), std::process::id()).expect("own process readable");
        assert_eq!(r.name, "native (glibc)", "{r:?}");
        assert_eq!(r.evidence, "libc mapped");
    }

    #[test]
    fn a_tiny_elf_with_a_go_buildinfo_section_is_go() {
        // A minimal ELF64 relocatable with sections: null, .go.buildinfo, .shstrtab.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gobin");
        std::fs::write(&path, tiny_elf(".go.buildinfo")).unwrap();
        assert!(has_go_buildinfo(&path));
        std::fs::write(&path, tiny_elf(".rodata")).unwrap();
        assert!(!has_go_buildinfo(&path));
        std::fs::write(&path, b"not an elf").unwrap();
        assert!(!has_go_buildinfo(&path));
    }

    #[test]
    fn a_vanished_pid_is_unknown() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(detect(dir.path(), 4242), None);
    }

    fn tiny_elf(section: &str) -> Vec<u8> {
        let mut strtab = vec![0u8];
        let name_off = strtab.len() as u32;
        strtab.extend_from_slice(section.as_bytes());
        strtab.push(0);
        let shstr_off = strtab.len() as u32;
        strtab.extend_from_slice(b".shstrtab\0");
        let data_off = 64u64;
        let str_off = data_off + 8;
        let sh_off = (str_off + strtab.len() as u64).next_multiple_of(8);
        let mut f = Vec::new();
        f.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
        f.extend_from_slice(&[0; 8]);
        f.extend_from_slice(&1u16.to_le_bytes()); // ET_REL
        f.extend_from_slice(&62u16.to_le_bytes()); // x86-64
        f.extend_from_slice(&1u32.to_le_bytes());
        f.extend_from_slice(&0u64.to_le_bytes()); // entry
        f.extend_from_slice(&0u64.to_le_bytes()); // phoff
        f.extend_from_slice(&sh_off.to_le_bytes());
        f.extend_from_slice(&0u32.to_le_bytes()); // flags
        f.extend_from_slice(&64u16.to_le_bytes()); // ehsize
        f.extend_from_slice(&0u16.to_le_bytes()); // phentsize
        f.extend_from_slice(&0u16.to_le_bytes()); // phnum
        f.extend_from_slice(&64u16.to_le_bytes()); // shentsize
        f.extend_from_slice(&3u16.to_le_bytes()); // shnum
        f.extend_from_slice(&2u16.to_le_bytes()); // shstrndx
        f.extend_from_slice(&[0; 8]); // section data
        f.extend_from_slice(&strtab);
        f.resize(sh_off as usize, 0);
        let sh = |f: &mut Vec<u8>, name: u32, kind: u32, off: u64, size: u64| {
            f.extend_from_slice(&name.to_le_bytes());
            f.extend_from_slice(&kind.to_le_bytes());
            f.extend_from_slice(&0u64.to_le_bytes()); // flags
            f.extend_from_slice(&0u64.to_le_bytes()); // addr
            f.extend_from_slice(&off.to_le_bytes());
            f.extend_from_slice(&size.to_le_bytes());
            f.extend_from_slice(&0u32.to_le_bytes()); // link
            f.extend_from_slice(&0u32.to_le_bytes()); // info
            f.extend_from_slice(&1u64.to_le_bytes()); // align
            f.extend_from_slice(&0u64.to_le_bytes()); // entsize
        };
        sh(&mut f, 0, 0, 0, 0);
        sh(&mut f, name_off, 1, data_off, 8); // PROGBITS
        sh(&mut f, shstr_off, 3, str_off, strtab.len() as u64); // STRTAB
        f
    }
}
