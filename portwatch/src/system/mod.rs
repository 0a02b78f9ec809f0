//! Collectors: the I/O that tells the engine about the host. Everything
//! here reads /proc, /sys or netlink and produces [`crate::input`] values;
//! parsing is split from reading so it is tested on fixture strings.

pub mod cgroup;
pub mod ifaddrs;
pub mod langrt;
pub mod netns;
pub mod owners;
pub mod procfs;
pub mod runtime;
pub mod sockdiag;
pub mod symbols;
pub mod worker;

use std::path::PathBuf;

/// Errors of the collectors; the binary adds context with anyhow.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing {what}: {detail}")]
    Parse { what: String, detail: String },
    #[error("sock_diag netlink: {0}")]
    Netlink(String),
}

pub fn read_to_string(path: impl Into<PathBuf>) -> Result<String, CollectError> {
    let path = path.into();
    std::fs::read_to_string(&path).map_err(|source| CollectError::Read { path, source })
}
