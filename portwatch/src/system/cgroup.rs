//! cgroup id → path, for service names.
//!
//! `bpf_get_current_cgroup_id()` is the id of the task's cgroup on the v2
//! (unified) hierarchy, which is the inode number of that cgroup's directory
//! in a cgroup2 mount. The v2 hierarchy is mounted at /sys/fs/cgroup on pure
//! v2 hosts and at /sys/fs/cgroup/unified on hybrid ones; /proc/self/mountinfo
//! says where. Resolution walks the tree and caches every directory seen; a
//! miss re-walks it at most once per second, then reports "unknown".

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{CollectError, read_to_string};

/// Limits of one walk, so a pathological tree cannot stall the loop.
const MAX_DEPTH: usize = 32;
const MAX_DIRS: usize = 200_000;
const MIN_RESCAN: Duration = Duration::from_secs(1);

/// The cgroup2 mount point and the cgroup path it shows as its root
/// (not `/` inside a cgroup namespace), from mountinfo text.
pub fn find_cgroup2_mount(mountinfo: &str) -> Option<(PathBuf, String)> {
    mountinfo.lines().find_map(|line| {
        // Fields: id parent major:minor root mountpoint opts... - fstype src opts
        let (pre, post) = line.split_once(" - ")?;
        if post.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        let f: Vec<&str> = pre.split_whitespace().collect();
        Some((PathBuf::from(unescape(f.get(4)?)), unescape(f.get(3)?)))
    })
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

pub struct CgroupResolver {
    mount: PathBuf,
    /// Prefix to add to paths under the mount (cgroup namespaces).
    root: String,
    cache: HashMap<u64, String>,
    last_scan: Option<Instant>,
}

impl CgroupResolver {
    /// Finds the v2 hierarchy; fails (with the reason) when there is none.
    pub fn new() -> Result<CgroupResolver, CollectError> {
        let mi = read_to_string("/proc/self/mountinfo")?;
        let (mount, root) = find_cgroup2_mount(&mi).ok_or_else(|| CollectError::Parse {
            what: "/proc/self/mountinfo".into(),
            detail: "no cgroup2 mount (services will be named by process name)".into(),
        })?;
        Ok(Self::at(mount, root))
    }

    pub fn at(mount: PathBuf, root: String) -> CgroupResolver {
        CgroupResolver {
            mount,
            root,
            cache: HashMap::new(),
            last_scan: None,
        }
    }

    pub fn mount(&self) -> &Path {
        &self.mount
    }

    /// The cgroup path of `id` (e.g. `/system.slice/nginx.service`), or
    /// `None` if no such cgroup exists (any more).
    pub fn resolve(&mut self, id: u64) -> Option<String> {
        if let Some(p) = self.cache.get(&id) {
            return Some(p.clone());
        }
        let due = self.last_scan.is_none_or(|t| t.elapsed() >= MIN_RESCAN);
        if due {
            self.scan();
        }
        self.cache.get(&id).cloned()
    }

    fn scan(&mut self) {
        self.last_scan = Some(Instant::now());
        let mut stack = vec![(self.mount.clone(), 0usize)];
        let mut seen = 0usize;
        while let Some((dir, depth)) = stack.pop() {
            seen += 1;
            if seen > MAX_DIRS {
                log::warn!("cgroup tree larger than {MAX_DIRS} directories; stopped walking");
                break;
            }
            // Cgroups come and go while we walk: skip what vanished.
            let Ok(meta) = std::fs::metadata(&dir) else {
                continue;
            };
            let rel = dir.strip_prefix(&self.mount).unwrap_or(Path::new(""));
            let path = join_root(&self.root, &rel.to_string_lossy());
            self.cache.insert(meta.ino(), path);
            if depth >= MAX_DEPTH {
                continue;
            }
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for ent in rd.flatten() {
                if ent.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push((ent.path(), depth + 1));
                }
            }
        }
    }
}

fn join_root(root: &str, rel: &str) -> String {
    let root = root.trim_end_matches('/');
    if rel.is_empty() {
        if root.is_empty() {
            "/".into()
        } else {
            root.into()
        }
    } else {
        format!("{root}/{rel}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_unified_mount_on_hybrid_and_pure_v2_hosts() {
        let hybrid = "30 25 0:26 / /sys/fs/cgroup/cpu rw,relatime shared:8 - cgroup cgroup rw,cpu\n\
                      38 25 0:34 / /sys/fs/cgroup/unified rw,relatime shared:16 - cgroup2 cgroup2 rw\n";
        assert_eq!(
            find_cgroup2_mount(hybrid),
            Some((PathBuf::from("/sys/fs/cgroup/unified"), "/".into()))
        );
        let pure = "35 24 0:30 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            find_cgroup2_mount(pure),
            Some((PathBuf::from("/sys/fs/cgroup"), "/".into()))
        );
        assert_eq!(
            find_cgroup2_mount("1 2 0:1 / / rw - ext4 /dev/vda rw\n"),
            None
        );
    }

    #[test]
    fn resolves_directories_by_inode_and_unknown_ids_to_none() {
        let dir = std::env::temp_dir().join(format!("pw-cg-{}", std::process::id()));
        let unit = dir.join("system.slice/nginx.service");
        std::fs::create_dir_all(&unit).unwrap();
        let ino = std::fs::metadata(&unit).unwrap().ino();
        let mut r = CgroupResolver::at(dir.clone(), "/".into());
        assert_eq!(
            r.resolve(ino).as_deref(),
            Some("/system.slice/nginx.service")
        );
        assert_eq!(r.resolve(1), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
