//! `cargo xtask dist`: the release tarball and the Debian package, from a
//! clean checkout, into `target/dist/`.
//!
//! The .deb is assembled with `dpkg-deb` (dpkg itself, on every Debian
//! machine) rather than `cargo-deb`: the layout below is all a package of
//! one binary needs, and building cargo-deb from source would cost CI
//! minutes of compilation for a wrapper around the same `dpkg-deb --build`.
//! Dependencies come from `dpkg-shlibdeps` (dpkg-dev), which reads the
//! binary's real dynamic needs and the symbol versions they require (what
//! cargo-deb would call too).
//!
//! The oldest glibc is measured (the highest `GLIBC_x.y` version node among
//! the binary's dynamic symbols); the oldest kernel is what the probe's
//! preflight demands (BPF ring buffer).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::run;

/// The probe's preflight refuses older kernels (portwatch/src/probe/mod.rs,
/// MIN_KERNEL): BPF ring buffer.
const MIN_KERNEL: &str = "5.8";
const MAINTAINER: &str = "portwatch maintainers <portwatch@invalid.invalid>";

const SHELL_FILES: &[(&str, &str)] = &[
    // (generated file, where the shell's loader finds it in the package)
    (
        "portwatch.bash",
        "usr/share/bash-completion/completions/portwatch",
    ),
    ("_portwatch", "usr/share/zsh/vendor-completions/_portwatch"),
    (
        "portwatch.fish",
        "usr/share/fish/vendor_completions.d/portwatch.fish",
    ),
];

pub fn run_dist(root: &Path) -> Result<()> {
    crate::run(crate::cargo().current_dir(root).args([
        "build",
        "--release",
        "--locked",
        "-p",
        "portwatch",
    ]))?;
    let built = root.join("target/release/portwatch");
    let dist = root.join("target/dist");
    if dist.exists() {
        std::fs::remove_dir_all(&dist).with_context(|| format!("cleaning {}", dist.display()))?;
    }
    let work = dist.join("work");
    std::fs::create_dir_all(&work)?;

    // The shipped binary: stripped (debug symbols are 3/4 of its size; the
    // eBPF object lives in .rodata and is untouched).
    let bin = work.join("portwatch");
    std::fs::copy(&built, &bin).context("copying the release binary")?;
    run(Command::new("strip").arg("--strip-unneeded").arg(&bin))?;
    let version = binary_version(&bin)?;
    let assets = work.join("assets");
    run(Command::new(&bin)
        .arg("assets")
        .arg("--out-dir")
        .arg(&assets))?;
    let glibc = oldest_glibc(&bin)?;
    let third_party = third_party_licences(root)?;
    let epoch = source_date_epoch(root);

    let (triple, deb_arch) = match std::env::consts::ARCH {
        "x86_64" => ("x86_64-linux-gnu", "amd64"),
        "aarch64" => ("aarch64-linux-gnu", "arm64"),
        other => bail!("no package name for architecture {other}"),
    };

    // --- tarball: portwatch-VERSION-TRIPLE/{portwatch, man/, completions/, docs}
    let name = format!("portwatch-{version}-{triple}");
    let tree = work.join(&name);
    std::fs::create_dir_all(&tree)?;
    std::fs::copy(&bin, tree.join("portwatch"))?;
    copy_dir(&assets.join("man"), &tree.join("man"))?;
    copy_dir(&assets.join("completions"), &tree.join("completions"))?;
    for doc in ["README.md", "FORMAT.md", "LICENSE-MIT", "LICENSE-APACHE"] {
        std::fs::copy(root.join(doc), tree.join(doc)).with_context(|| format!("copying {doc}"))?;
    }
    std::fs::write(tree.join("THIRD-PARTY-LICENSES.md"), &third_party)?;
    std::fs::write(
        tree.join("REQUIREMENTS"),
        format!(
            "portwatch {version} ({triple})\nglibc >= {glibc} (highest GLIBC symbol version \
             the binary needs)\nLinux >= {MIN_KERNEL} (BPF ring buffer); `sudo portwatch doctor` checks a host\n"
        ),
    )?;
    let tarball = dist.join(format!("{name}.tar.gz"));
    run(Command::new("tar")
        .current_dir(&work)
        .args(["--sort=name", "--owner=0", "--group=0", "--numeric-owner"])
        .arg(format!("--mtime=@{epoch}"))
        .args(["--use-compress-program", "gzip -9n", "-cf"])
        .arg(&tarball)
        .arg(&name))?;

    // --- Debian package
    let pkg = work.join("deb");
    let install = |rel: &str, from: &Path, mode: u32| -> Result<()> {
        let to = pkg.join(rel);
        std::fs::create_dir_all(to.parent().expect("a parent"))?;
        std::fs::copy(from, &to).with_context(|| format!("installing {rel}"))?;
        set_mode(&to, mode)
    };
    install("usr/bin/portwatch", &bin, 0o755)?;
    for e in std::fs::read_dir(assets.join("man"))? {
        let page = e?.path();
        let file = page.file_name().expect("a file name").to_string_lossy();
        let rel = format!("usr/share/man/man1/{file}.gz");
        gzip_to(&page, &pkg.join(&rel))?;
    }
    for (file, rel) in SHELL_FILES {
        install(rel, &assets.join("completions").join(file), 0o644)?;
    }
    let doc = pkg.join("usr/share/doc/portwatch");
    std::fs::create_dir_all(&doc)?;
    std::fs::write(doc.join("copyright"), debian_copyright(root)?)?;
    gzip_to(&root.join("README.md"), &doc.join("README.md.gz"))?;
    let third = work.join("THIRD-PARTY-LICENSES.md");
    std::fs::write(&third, &third_party)?;
    gzip_to(&third, &doc.join("THIRD-PARTY-LICENSES.md.gz"))?;

    let depends = shlib_depends(&work, &pkg.join("usr/bin/portwatch"))?;
    let installed_kib = dir_size(&pkg)?.div_ceil(1024);
    let debian = pkg.join("DEBIAN");
    std::fs::create_dir_all(&debian)?;
    std::fs::write(
        debian.join("control"),
        format!(
            "Package: portwatch\n\
             Version: {version}\n\
             Architecture: {deb_arch}\n\
             Maintainer: {MAINTAINER}\n\
             Installed-Size: {installed_kib}\n\
             Depends: {depends}\n\
             Section: net\n\
             Priority: optional\n\
             Description: find the service that exhausts ephemeral ports\n \
             portwatch watches TCP connection lifecycles and failed connects in the\n \
             kernel (eBPF tracepoints) and attributes connection churn and the\n \
             TIME_WAIT sockets it leaves to services and destinations, so on-call\n \
             can tell who lacks connection reuse when connect() fails with\n \
             EADDRNOTAVAIL.\n \
             .\n \
             Needs Linux {MIN_KERNEL} or newer and root (or CAP_BPF and CAP_PERFMON);\n \
             `portwatch doctor` says what works on a host.\n"
        ),
    )?;
    std::fs::write(debian.join("md5sums"), md5sums(&pkg)?)?;
    let deb = dist.join(format!("portwatch_{version}_{deb_arch}.deb"));
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zxz", "--build"])
        .arg(&pkg)
        .arg(&deb)
        .env("SOURCE_DATE_EPOCH", epoch.to_string()))?;

    run(Command::new("sh")
        .current_dir(&dist)
        .args(["-c", "sha256sum *.tar.gz *.deb > SHA256SUMS"]))?;
    std::fs::remove_dir_all(&work)?;
    eprintln!(
        "xtask: dist:\n  {}\n  {}\n  needs glibc >= {glibc} (measured: highest GLIBC_ symbol \
         version), Linux >= {MIN_KERNEL}\n  Depends: {depends}",
        tarball.display(),
        deb.display()
    );
    Ok(())
}

/// `portwatch --version` prints "portwatch X.Y.Z".
fn binary_version(bin: &Path) -> Result<String> {
    let out = Command::new(bin).arg("--version").output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .nth(1)
        .map(str::to_string)
        .with_context(|| format!("unexpected `portwatch --version` output: {text:?}"))
}

/// The highest `GLIBC_x.y[.z]` version node among the binary's dynamic
/// symbols: the oldest glibc whose loader will run it.
pub fn oldest_glibc(bin: &Path) -> Result<String> {
    let out = Command::new("readelf")
        .args(["--dyn-syms", "--wide"])
        .arg(bin)
        .output()
        .context("running readelf (binutils)")?;
    if !out.status.success() {
        bail!("readelf failed on {}", bin.display());
    }
    max_glibc_version(&String::from_utf8_lossy(&out.stdout))
        .context("no GLIBC_ symbol versions in the binary")
}

fn max_glibc_version(readelf: &str) -> Option<String> {
    readelf
        .split(|c: char| c.is_whitespace() || c == '@' || c == '(' || c == ')')
        .filter_map(|w| w.strip_prefix("GLIBC_"))
        .filter_map(|v| {
            let parts: Option<Vec<u32>> = v.split('.').map(|p| p.parse().ok()).collect();
            parts.map(|p| (p, v.to_string()))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, v)| v)
}

/// `Depends:` from dpkg-shlibdeps, which wants a `debian/control` to exist
/// in the directory it runs in.
fn shlib_depends(work: &Path, bin: &Path) -> Result<String> {
    let dir = work.join("shlibdeps");
    std::fs::create_dir_all(dir.join("debian"))?;
    std::fs::write(
        dir.join("debian/control"),
        "Source: portwatch\n\nPackage: portwatch\nArchitecture: any\n",
    )?;
    let out = Command::new("dpkg-shlibdeps")
        .current_dir(&dir)
        .arg("-O")
        .arg(format!("-e{}", bin.display()))
        .output()
        .context("running dpkg-shlibdeps (package dpkg-dev)")?;
    if !out.status.success() {
        bail!(
            "dpkg-shlibdeps failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("shlibs:Depends="))
        .map(str::to_string)
        .context("dpkg-shlibdeps printed no shlibs:Depends")
}

/// Crates compiled into the binary (normal dependencies reachable from
/// portwatch on this target), with their declared licences.
fn third_party_licences(root: &Path) -> Result<String> {
    let out = crate::cargo()
        .current_dir(root)
        .args(["metadata", "--format-version", "1", "--locked"])
        .args(["--filter-platform", &host_triple()?])
        .output()
        .context("cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata failed");
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let packages = meta["packages"].as_array().context("packages")?;
    let nodes = meta["resolve"]["nodes"].as_array().context("resolve")?;
    let root_id = packages
        .iter()
        .find(|p| p["name"] == "portwatch")
        .and_then(|p| p["id"].as_str())
        .context("portwatch package")?;
    let mut seen = std::collections::BTreeSet::new();
    let mut todo = vec![root_id.to_string()];
    while let Some(id) = todo.pop() {
        if !seen.insert(id.clone()) {
            continue;
        }
        let node = nodes.iter().find(|n| n["id"] == id.as_str());
        for dep in node
            .and_then(|n| n["deps"].as_array())
            .into_iter()
            .flatten()
        {
            let normal = dep["dep_kinds"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k["kind"].is_null()));
            if normal && let Some(pkg) = dep["pkg"].as_str() {
                todo.push(pkg.to_string());
            }
        }
    }
    let mut rows: Vec<(String, String, String)> = packages
        .iter()
        .filter(|p| p["id"].as_str().is_some_and(|id| seen.contains(id)))
        .filter(|p| p["name"] != "portwatch" && p["name"] != "portwatch-common")
        .map(|p| {
            let s = |k: &str| p[k].as_str().unwrap_or("").to_string();
            (s("name"), s("version"), s("license"))
        })
        .collect();
    rows.sort();
    let mut text = String::from(
        "# Third-party crates in the portwatch binary\n\nEach is used under the licence \
         it declares (SPDX expression, from its Cargo.toml); their full texts are in each \
         crate's source on crates.io.\n\n| crate | version | licence |\n| --- | --- | --- |\n",
    );
    for (name, version, licence) in rows {
        writeln!(text, "| {name} | {version} | {licence} |").expect("write to String");
    }
    Ok(text)
}

fn host_triple() -> Result<String> {
    let out = Command::new("rustc")
        .arg("-vV")
        .output()
        .context("rustc -vV")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_string)
        .context("no host line in rustc -vV")
}

/// Debian's machine-readable copyright file.
fn debian_copyright(root: &Path) -> Result<String> {
    let mit = std::fs::read_to_string(root.join("LICENSE-MIT")).context("LICENSE-MIT")?;
    let mit: String = mit
        .lines()
        .map(|l| {
            if l.trim().is_empty() {
                " .\n".to_string()
            } else {
                format!(" {l}\n")
            }
        })
        .collect();
    Ok(format!(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
         Upstream-Name: portwatch\n\n\
         Files: *\n\
         Copyright: the portwatch authors\n\
         License: MIT or Apache-2.0\n \
         The binary also contains the third-party crates listed, with their licences,\n \
         in /usr/share/doc/portwatch/THIRD-PARTY-LICENSES.md.gz.\n\n\
         License: MIT\n{mit}\n\
         License: Apache-2.0\n \
         On Debian systems, the complete text of the Apache License 2.0 is in\n \
         /usr/share/common-licenses/Apache-2.0.\n"
    ))
}

/// Commit time of HEAD (reproducible timestamps), or 0 outside git.
fn source_date_epoch(root: &Path) -> u64 {
    Command::new("git")
        .current_dir(root)
        .args(["log", "-1", "--format=%ct"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(0)
}

fn gzip_to(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to.parent().expect("a parent"))?;
    let out = std::fs::File::create(to)?;
    let status = Command::new("gzip")
        .args(["-9", "-n", "-c"])
        .arg(from)
        .stdout(out)
        .status()
        .context("running gzip")?;
    if !status.success() {
        bail!("gzip {} failed", from.display());
    }
    set_mode(to, 0o644)
}

fn set_mode(p: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", p.display()))
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let p = e?.path();
        std::fs::copy(&p, to.join(p.file_name().expect("a file name")))?;
    }
    Ok(())
}

fn files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            out.extend(files(&p)?);
        } else {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

fn dir_size(dir: &Path) -> Result<u64> {
    let mut n = 0;
    for f in files(dir)? {
        n += std::fs::metadata(&f)?.len();
    }
    Ok(n)
}

/// DEBIAN/md5sums: what `dpkg --verify` checks installed files against.
fn md5sums(pkg: &Path) -> Result<String> {
    let rels: Vec<String> = files(pkg)?
        .iter()
        .map(|f| {
            f.strip_prefix(pkg)
                .expect("under pkg")
                .to_string_lossy()
                .into_owned()
        })
        .filter(|r| !r.starts_with("DEBIAN/"))
        .collect();
    let out = Command::new("md5sum")
        .current_dir(pkg)
        .args(&rels)
        .output()
        .context("md5sum")?;
    if !out.status.success() {
        bail!("md5sum failed");
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highest_glibc_version_wins_numerically() {
        let readelf = "\
     1: 0000000000000000     0 FUNC    GLOBAL DEFAULT  UND memcpy@GLIBC_2.14 (2)
     2: 0000000000000000     0 FUNC    GLOBAL DEFAULT  UND gettid@GLIBC_2.30 (3)
     3: 0000000000000000     0 FUNC    GLOBAL DEFAULT  UND read@GLIBC_2.2.5 (4)
     4: 0000000000000000     0 FUNC    GLOBAL DEFAULT  UND _Unwind_Resume@GCC_3.0 (5)
     5: 0000000000000000     0 FUNC    GLOBAL DEFAULT  UND stat@GLIBC_2.4 (6)";
        assert_eq!(max_glibc_version(readelf).as_deref(), Some("2.30"));
        assert_eq!(max_glibc_version("no versions"), None);
    }
}
