//! Build, run and test orchestration: what build.rs cannot do.
//!
//! * `cargo xtask setup`  installs the eBPF toolchain if it is missing
//!   (Debian's rustc-web with a prebuilt bpfel `core`, and bpf-linker built
//!   against Debian's LLVM 22), or prints the exact commands.
//! * `cargo xtask build [--release]`  one binary with the eBPF object inside.
//! * `cargo xtask run [--debug] -- <portwatch args>`  (release unless --debug)
//! * `cargo xtask test`  every test: unit, snapshot and kernel (root).
//! * `cargo xtask dist`  the tarball and the .deb in target/dist/.
//! * `cargo xtask faults`  the fault suite and its Reliability table (root).

mod bench;
mod dist;
mod faults;
mod loadgen;
mod scrape;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "portwatch build/run/test orchestration")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what building the eBPF programs needs, if missing.
    Setup,
    /// Build portwatch (eBPF object embedded).
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Build in release mode (an incident is no place for a debug build),
    /// then run portwatch with the given arguments.
    Run {
        /// A debug build instead (for developing portwatch).
        #[arg(long)]
        debug: bool,
        /// Accepted for compatibility: release is the default.
        #[arg(long, hide = true)]
        release: bool,
        /// Arguments for portwatch, after `--`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Loopback connection churn in a private network namespace (root).
    Loadgen {
        #[arg(long, value_enum, default_value = "unpooled")]
        mode: loadgen::Mode,
        /// Client threads (and as many server threads).
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Seconds to run.
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        /// Connection attempts per second in all; 0 = as fast as possible.
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// One JSON object on stdout instead of a sentence.
        #[arg(long)]
        json: bool,
    },
    /// Throughput cost and completeness of portwatch under churn (root).
    Bench(bench::BenchArgs),
    /// Run the fault suite and print the Reliability table (root);
    /// `--soak` runs the long `top --batch` benchmark instead.
    Faults(faults::FaultsArgs),
    /// Run every test (kernel tests need root; under CI=true they must run).
    Test {
        /// Extra arguments for `cargo test`, after `--`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Release tarball and Debian package in target/dist/ (see dist.rs).
    Dist,
}

const APT_PACKAGES: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "libstd-rust-web-dev-bpf",
    "llvm-22-dev",
    "libpolly-22-dev",
    "zlib1g-dev",
    "libzstd-dev",
    // used by the kernel tests (ip link) and the TUI end-to-end test
    "iproute2",
    "tmux",
    // the side-by-side anchors of `cargo xtask bench`
    "bpftrace",
    // prometheus + promtool: the exporter's kernel test and the rule tests
    "prometheus",
    // pip, for PIP_PACKAGES where the Python in use has none
    "python3-pip",
    // `xtask dist` (dpkg-shlibdeps, strip, readelf) and the man page checks
    // (groff, `man -w` on the installed package)
    "dpkg-dev",
    "man-db",
    // nft: the kernel tests drop SYNs on `lo` inside their own namespace
    "nftables",
];
/// PyPI package that validates the Kubernetes manifests offline.
const PIP_PACKAGES: &[&str] = &["kubernetes-validate"];
const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    match cli.cmd {
        Cmd::Setup => setup(),
        Cmd::Build { release } => {
            setup()?;
            build(&root, release)?;
            Ok(())
        }
        Cmd::Run {
            debug,
            release: _,
            args,
        } => {
            setup()?;
            let bin = build(&root, !debug)?;
            let status = Command::new(&bin)
                .args(&args)
                .status()
                .with_context(|| format!("running {}", bin.display()))?;
            std::process::exit(status.code().unwrap_or(1));
        }
        Cmd::Loadgen {
            mode,
            threads,
            duration,
            rate,
            json,
        } => {
            let netns = loadgen::enter_netns(mode)?;
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let addr = loadgen::start_server(threads, stop.clone())?;
            let cfg = loadgen::Config {
                mode,
                threads,
                duration: Duration::from_secs_f64(duration),
                rate,
            };
            let o = loadgen::run_clients(addr, &cfg);
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            if json {
                let errors: serde_json::Map<String, serde_json::Value> = o
                    .errors
                    .iter()
                    .map(|(e, n)| (loadgen::errno_name(*e), (*n).into()))
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({
                        "netns": netns,
                        "mode": format!("{mode:?}").to_lowercase(),
                        "connections": o.connections,
                        "requests": o.requests,
                        "elapsed_s": o.elapsed.as_secs_f64(),
                        "conn_per_s": o.per_s(),
                        "errors": errors,
                    })
                );
            } else {
                loadgen::print(&format!("{mode:?} (netns {netns})"), &o);
            }
            // Server threads are parked in accept(); leave without joining them.
            std::process::exit(0);
        }
        Cmd::Bench(args) => bench::run(&root, args),
        Cmd::Faults(args) => {
            setup()?;
            faults::run(&root, args)
        }
        Cmd::Test { args } => {
            setup()?;
            test(&root, &args)
        }
        Cmd::Dist => {
            setup()?;
            dist::run_dist(&root)
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: {cmd:?}");
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

pub(crate) fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// What is missing for the Debian route of building the eBPF crate.
fn missing_toolchain() -> Vec<&'static str> {
    let mut missing = Vec::new();
    if !Path::new("/usr/bin/rustc").exists() || !Path::new("/usr/bin/cargo").exists() {
        missing.push("Debian rustc-web/cargo-web (/usr/bin/rustc, /usr/bin/cargo)");
    }
    if !Path::new("/usr/lib/rustlib/bpfel-unknown-none/lib").is_dir() {
        missing.push("the prebuilt core for bpfel-unknown-none (libstd-rust-web-dev-bpf)");
    }
    if which("bpf-linker").is_none() {
        missing.push("bpf-linker");
    }
    if which("ip").is_none() {
        missing.push("iproute2 (ip, used by the kernel tests)");
    }
    if which("tmux").is_none() {
        missing.push("tmux (used by the TUI end-to-end test)");
    }
    if which("nft").is_none() {
        missing.push("nftables (nft: the handshake-failure kernel tests drop SYNs)");
    }
    if which("bpftrace").is_none() {
        missing.push("bpftrace (the anchors of cargo xtask bench)");
    }
    if which("prometheus").is_none() || which("promtool").is_none() {
        missing.push("prometheus and promtool (exporter and rule tests)");
    }
    if which("kubernetes-validate").is_none() {
        missing.push("kubernetes-validate (PyPI; manifest tests)");
    }
    if which("dpkg-shlibdeps").is_none() {
        missing.push("dpkg-dev (dpkg-shlibdeps, used by `xtask dist`)");
    }
    if which("groff").is_none() || which("man").is_none() {
        missing.push("man-db (man, groff: man page checks)");
    }
    missing
}

fn install_commands() -> String {
    format!(
        "apt-get update\n  apt-get install -y --no-install-recommends {}\n  \
         LLVM_PREFIX={LLVM_PREFIX} LLVM_SYS_221_PREFIX={LLVM_PREFIX} cargo install bpf-linker \
         --version {BPF_LINKER_VERSION} --locked --no-default-features --features llvm-22",
        APT_PACKAGES.join(" ")
    )
}

fn setup() -> Result<()> {
    let missing = missing_toolchain();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: missing: {}", missing.join("; "));
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root || which("apt-get").is_none() {
        bail!(
            "the eBPF toolchain is incomplete (missing: {}).\nInstall it as root on a \
             Debian-like system with:\n  {}\nor use a rustup nightly with rust-src \
             (the upstream aya route: -Z build-std=core) and bpf-linker.",
            missing.join("; "),
            install_commands()
        );
    }
    run(Command::new("apt-get").arg("update").arg("-q"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(APT_PACKAGES)
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    if which("kubernetes-validate").is_none() {
        pip_install()?;
    }
    if which("bpf-linker").is_none() {
        // LLVM_PREFIX: bpf-linker's build script otherwise follows the first
        // llvm-config on PATH, which may be an older LLVM (seen: llvm-14).
        run(cargo()
            .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
            .args(["--locked", "--no-default-features", "--features", "llvm-22"])
            .env("LLVM_PREFIX", LLVM_PREFIX)
            .env("LLVM_SYS_221_PREFIX", LLVM_PREFIX))?;
    }
    let still = missing_toolchain();
    if !still.is_empty() {
        bail!("setup finished but still missing: {}", still.join("; "));
    }
    Ok(())
}

/// Installs the PyPI packages with the machine's pip; a Debian-managed
/// Python (PEP 668) needs --break-system-packages.
fn pip_install() -> Result<()> {
    let pip = || {
        let mut c = Command::new("python3");
        c.args(["-m", "pip", "install", "-q"]).args(PIP_PACKAGES);
        c
    };
    if run(&mut pip()).is_ok() {
        return Ok(());
    }
    run(pip().arg("--break-system-packages"))
}

fn build(root: &Path, release: bool) -> Result<PathBuf> {
    let mut cmd = cargo();
    cmd.current_dir(root).args(["build", "-p", "portwatch"]);
    if release {
        cmd.arg("--release");
    }
    run(&mut cmd)?;
    let bin = root
        .join("target")
        .join(if release { "release" } else { "debug" })
        .join("portwatch");
    eprintln!("xtask: built {}", bin.display());
    Ok(bin)
}

fn test(root: &Path, extra: &[String]) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "xtask: not root: kernel tests will report themselves as not run \
             (they fail under CI=true). Run `sudo cargo xtask test` for all of them."
        );
    }
    let mut cmd = cargo();
    cmd.current_dir(root)
        // Default members: the eBPF crate only builds for the BPF target.
        .args(["test"])
        // Snapshot tests compare against the committed files; never rewrite them here.
        .env("INSTA_UPDATE", "no")
        .args(extra);
    run(&mut cmd)
}
