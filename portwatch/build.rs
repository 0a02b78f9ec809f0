//! Builds the eBPF object (portwatch-ebpf, target bpfel-unknown-none) so that
//! `cargo build` yields one binary with the object embedded.
//!
//! Two routes, tried in order:
//! 1. Debian's rustc-web (/usr/bin/rustc) with its prebuilt `core` for
//!    bpfel-unknown-none (package libstd-rust-web-dev-bpf): no build-std.
//! 2. A rustup nightly with the rust-src component: `-Z build-std=core`.
//!
//! `PORTWATCH_EBPF_OBJECT=/path/to/object` skips the build and embeds that
//! file instead (useful for a prebuilt object or a machine without either
//! route). Nothing here downloads anything; `cargo xtask setup` installs
//! route 1 on Debian-like machines.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

const SETUP_HINT: &str = "install the eBPF toolchain with `cargo xtask setup` (as root, Debian 12+: \
     apt-get install rustc-web cargo-web libstd-rust-web-dev-bpf llvm-22-dev ... and \
     cargo install bpf-linker; see README.md), or point PORTWATCH_EBPF_OBJECT at a prebuilt object";

fn main() {
    println!("cargo:rerun-if-env-changed=PORTWATCH_EBPF_OBJECT");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let dest = out_dir.join("portwatch.bpf.o");

    if let Some(prebuilt) = env::var_os("PORTWATCH_EBPF_OBJECT") {
        let prebuilt = PathBuf::from(prebuilt);
        println!("cargo:rerun-if-changed={}", prebuilt.display());
        copy(&prebuilt, &dest);
        return;
    }

    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("manifest dir"));
    let root = manifest_dir.parent().expect("workspace root").to_path_buf();
    for p in [
        "portwatch-ebpf/src",
        "portwatch-ebpf/Cargo.toml",
        "portwatch-common/src",
        "portwatch-common/Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }

    // A target dir of its own: the outer cargo holds the lock on target/.
    let target_dir = root.join("target").join("bpf");
    let mut cmd = match pick_toolchain() {
        Some(cmd) => cmd,
        None => fail(&format!(
            "no eBPF toolchain found (neither /usr/bin/rustc with a bpfel-unknown-none core, \
             nor a rustup nightly with rust-src): {SETUP_HINT}"
        )),
    };
    if which("bpf-linker").is_none() {
        fail(&format!("bpf-linker is not on PATH: {SETUP_HINT}"));
    }
    // The outer cargo's settings (clippy's wrapper, host rustflags, its
    // target dir) must not leak into the nested build.
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy();
        if (key.starts_with("CARGO_") && key != "CARGO_HOME")
            || key.starts_with("RUSTC")
            || key == "RUSTFLAGS"
            || key == "RUSTDOCFLAGS"
        {
            cmd.env_remove(key.as_ref());
        }
    }
    cmd.current_dir(&root)
        .args(["build", "--release", "--target", "bpfel-unknown-none"])
        .args(["-p", "portwatch-ebpf", "--target-dir"])
        .arg(&target_dir)
        // BTF lets the kernel show the programs' types (bpftool) and aya check maps.
        .env(
            "CARGO_TARGET_BPFEL_UNKNOWN_NONE_RUSTFLAGS",
            "-C debuginfo=2 -C link-arg=--btf",
        )
        .env("RUSTC_BOOTSTRAP", "1");
    if Path::new(DEBIAN_RUSTC).exists() && debian_has_bpf_core() {
        cmd.env("RUSTC", DEBIAN_RUSTC);
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| fail(&format!("could not run cargo for the eBPF crate: {e}")));
    if !status.success() {
        fail("building portwatch-ebpf failed (see the errors above)");
    }
    copy(
        &target_dir.join("bpfel-unknown-none/release/portwatch"),
        &dest,
    );
}

const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_CARGO: &str = "/usr/bin/cargo";

fn debian_has_bpf_core() -> bool {
    Path::new("/usr/lib/rustlib/bpfel-unknown-none/lib").is_dir()
}

fn pick_toolchain() -> Option<Command> {
    if Path::new(DEBIAN_CARGO).exists() && Path::new(DEBIAN_RUSTC).exists() && debian_has_bpf_core()
    {
        return Some(Command::new(DEBIAN_CARGO));
    }
    // rustup nightly with rust-src: the upstream aya route.
    let sysroot = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    if !sysroot.join("lib/rustlib/src/rust/library/core").is_dir() {
        return None;
    }
    let mut cmd = Command::new("rustup");
    cmd.args(["run", "nightly", "cargo", "-Z", "build-std=core"]);
    Some(cmd)
}

fn which(name: &str) -> Option<PathBuf> {
    env::split_paths(&env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn copy(from: &Path, to: &Path) {
    if let Err(e) = std::fs::copy(from, to) {
        fail(&format!("cannot copy eBPF object {}: {e}", from.display()));
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    println!("cargo:warning={msg}");
    std::process::exit(1);
}
