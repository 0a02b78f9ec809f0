//! Live input: the probe's events plus what the collectors read from the
//! host, as one stream of [`Input`]s. `top`, `top --batch` and `record` all
//! consume this stream, so they see exactly the same thing (and a recording
//! replays into the same views).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Result;

use crate::clock::{WallClock, monotonic_now_ns};
// FxHash, not SipHash, for what is looked up for every drained event (SipHash
// was ~4% of record's instructions); the keys are ids the kernel hands out
// (netns inodes, cgroup ids), not chosen by peers.
use crate::engine::hash::{FxHashMap, FxHashSet};
use crate::input::{Input, LocalNetworks};
use crate::probe::Probe;
use crate::system::netns::{self, TaskRef};
use crate::system::runtime::{self, RuntimeDirs, WorkloadKeys, keys_from_cgroup};
use crate::system::{cgroup::CgroupResolver, owners, procfs, sockdiag};

/// How often the kernel counters and loss counters are read.
pub const COUNTERS_EVERY: Duration = Duration::from_secs(1);
/// How often the socket table is re-read to correct drift (default).
pub const SOCKETS_EVERY: Duration = Duration::from_secs(5);
/// A socket table is re-read no sooner than this many times the CPU its
/// last reading took (the host's; all other namespaces' of one round
/// together): each of the two reading threads spends at most 0.2% of a
/// core on tables, however many namespaces and TIME_WAIT sockets the host
/// holds. The kernel walks its whole established hash for each reading
/// (~7.5 ms of CPU for the 262,144 empty buckets of a 24 GiB VM, ~90 ns
/// more per socket of any namespace), so at a fixed cadence the cost per
/// connection would grow with the close rate (see `system::sockdiag`).
pub const TABLE_COST_FACTOR: u64 = 500;
/// A reading asks the kernel for TIME_WAIT sockets (a full table) at most
/// this long after the last full one; the readings between ask for every
/// other state. Every local close is an event, so the engine keeps
/// TIME_WAIT from the last full table and the closes since; a full table
/// corrects what events cannot know (TIME_WAIT of sockets closed before
/// portwatch started, sockets tcp_tw_reuse recycled or tcp_max_tw_buckets
/// never made, closes lost on the way). TIME_WAIT lasts 60 s, so such an
/// error would age out by itself within a minute; half of that bounds it
/// to 30 s while sparing the kernel the TIME_WAIT messages of most
/// readings (~40% of a churning namespace's reading). The first reading of
/// every namespace is full, and so is the next one after events were lost.
pub const FULL_TABLE_EVERY: Duration = Duration::from_secs(30);

/// When a socket table (or a round of them) may be read again, and
/// whether with TIME_WAIT.
#[derive(Clone, Copy, Debug, Default)]
pub struct TableCadence {
    /// When the last reading (round) began, monotonic ns; none yet: due.
    pub last_start_ns: Option<u64>,
    /// CPU it has taken so far.
    pub last_cpu_ns: u64,
    /// The last reading (round) asked for TIME_WAIT.
    pub last_full: bool,
    /// When the last full reading (round) began; none yet: the next is.
    pub last_full_ns: Option<u64>,
    /// CPU of the last full reading (round) before the current one.
    pub full_cpu_ns: u64,
    /// Events lost (`Losses::total`) when the last full reading began.
    pub lost_at_full: u64,
}

impl TableCadence {
    /// The gap between two readings: `resync_ns`, or longer when the last
    /// reading was costly ([`TABLE_COST_FACTOR`]). Costly as a full
    /// reading is: readings without TIME_WAIT come no more often than
    /// full ones would, so what they leave out is CPU saved.
    pub fn gap_ns(&self, resync_ns: u64) -> u64 {
        let cpu = if self.last_full {
            self.last_cpu_ns
        } else {
            self.last_cpu_ns.max(self.full_cpu_ns)
        };
        resync_ns.max(cpu.saturating_mul(TABLE_COST_FACTOR))
    }

    pub fn due(&self, now_ns: u64, resync_ns: u64) -> bool {
        self.last_start_ns
            .is_none_or(|t| now_ns.saturating_sub(t) >= self.gap_ns(resync_ns))
    }

    /// Whether the next reading asks for TIME_WAIT: the first one, one
    /// [`FULL_TABLE_EVERY`] after the last full one, or one after events
    /// were lost (`lost`: [`crate::event::Losses::total`] now).
    pub fn full_due(&self, now_ns: u64, lost: u64) -> bool {
        self.last_full_ns
            .is_none_or(|t| now_ns.saturating_sub(t) >= FULL_TABLE_EVERY.as_nanos() as u64)
            || lost > self.lost_at_full
    }

    /// A reading (round) begins; `full`: with TIME_WAIT, `lost` events so
    /// far.
    pub fn start(&mut self, now_ns: u64, full: bool, lost: u64) {
        if self.last_full {
            self.full_cpu_ns = self.last_cpu_ns;
        }
        self.last_start_ns = Some(now_ns);
        self.last_cpu_ns = 0;
        self.last_full = full;
        if full {
            self.last_full_ns = Some(now_ns);
            self.lost_at_full = lost;
        }
    }

    /// The states a reading asks the kernel for.
    pub fn states(full: bool) -> u32 {
        if full {
            sockdiag::STATES_ALL
        } else {
            sockdiag::STATES_WITHOUT_TIME_WAIT
        }
    }
}
/// Unresolved cgroup ids are retried this often (a new container's
/// directory may appear just after its first connection).
const CGROUP_RETRY_EVERY: Duration = Duration::from_secs(5);
/// A container's names not found (its runtime has not written them yet)
/// are asked again this many times, [`CGROUP_RETRY_EVERY`] apart.
const WORKLOAD_TRIES: u8 = 3;
/// At most this many containers and pods asked about are remembered; past
/// it the memory starts over (asking again only costs a lookup).
const MAX_WORKLOADS_ASKED: usize = 65_536;
/// At most this many network namespaces (besides portwatch's own) are
/// read; more are shown from events alone (the engine counts them as
/// folded). A busy Kubernetes node has hundreds of pods.
pub const MAX_NETNS: usize = 4096;
/// Tasks remembered per namespace to enter it through (the most recently
/// first seen).
const TASKS_PER_NETNS: usize = 4;

/// The namespaces seen in events, and tasks to enter each through.
#[derive(Default)]
struct NetnsSeen {
    tasks: FxHashMap<u32, Vec<TaskRef>>,
    /// Seen since the last request: read at once, not at the next resync.
    new: Vec<u32>,
    /// Those whose last reading found no task left: asked again only when
    /// a new task shows up in them.
    stale: FxHashSet<u32>,
    /// The last (namespace, task) noted, which `tasks` lists: a client's
    /// events come in runs, so most events skip the map.
    last: Option<(u32, TaskRef)>,
}

impl NetnsSeen {
    /// Notes a task seen in `netns`.
    fn note(&mut self, netns: u32, task: TaskRef) {
        if self.last == Some((netns, task)) {
            return;
        }
        if self.tasks.len() >= MAX_NETNS && !self.tasks.contains_key(&netns) {
            // Full: a namespace whose tasks are all gone makes room (its
            // last values stay with the engine).
            if let Some(&gone) = self.stale.iter().next() {
                self.stale.remove(&gone);
                self.tasks.remove(&gone);
                self.last = None;
            }
        }
        let n = self.tasks.len();
        let tasks = match self.tasks.get_mut(&netns) {
            Some(t) => t,
            None if n < MAX_NETNS => {
                self.new.push(netns);
                self.tasks.entry(netns).or_default()
            }
            None => return,
        };
        // Any live task will do to enter the namespace: one already listed
        // stays where it is (threads of one client take turns, and this
        // runs for every event).
        self.last = Some((netns, task));
        if tasks.contains(&task) {
            return;
        }
        tasks.insert(0, task);
        tasks.truncate(TASKS_PER_NETNS);
        // Read again at the next resync, not at once: short-lived tasks
        // (a fork per request) must not make every event a re-read.
        self.stale.remove(&netns);
    }

    /// `tables`: none, or with TIME_WAIT (`Some(true)`) or without.
    fn request(&self, ids: impl IntoIterator<Item = u32>, tables: Option<bool>) -> netns::Request {
        netns::Request {
            tables: tables.map(TableCadence::states),
            namespaces: ids
                .into_iter()
                .filter_map(|n| self.tasks.get(&n).map(|t| (n, t.clone())))
                .collect(),
        }
    }
}

/// Cgroup ids → paths, each announced once (an `Input::Cgroup` before the
/// first event that needs it); the unresolved ones retried now and then.
pub(crate) struct Cgroups {
    resolver: Option<CgroupResolver>,
    announced: FxHashSet<u64>,
    unresolved: Vec<u64>,
    last_retry_ns: u64,
}

impl Cgroups {
    /// The resolver, or a warning saying why there is none.
    pub(crate) fn new(warnings: &mut Vec<String>) -> Cgroups {
        let resolver = match CgroupResolver::new() {
            Ok(r) => Some(r),
            Err(e) => {
                warnings.push(format!("cgroups: {e}"));
                None
            }
        };
        Cgroups {
            resolver,
            announced: FxHashSet::default(),
            unresolved: Vec::new(),
            last_retry_ns: 0,
        }
    }

    /// Where the cgroup2 hierarchy is mounted, when it was found.
    pub(crate) fn mount(&self) -> Option<&std::path::Path> {
        self.resolver.as_ref().map(CgroupResolver::mount)
    }

    pub(crate) fn announce(&mut self, id: u64, out: &mut Vec<Input>) {
        if id == 0 || !self.announced.insert(id) {
            return;
        }
        let path = self.resolver.as_mut().and_then(|r| r.resolve(id));
        if path.is_none() {
            self.unresolved.push(id);
        }
        out.push(Input::Cgroup { id, path });
    }

    /// Unresolved ids again, every [`CGROUP_RETRY_EVERY`].
    pub(crate) fn retry(&mut self, now: u64, out: &mut Vec<Input>) {
        if self.unresolved.is_empty()
            || now.saturating_sub(self.last_retry_ns) < CGROUP_RETRY_EVERY.as_nanos() as u64
        {
            return;
        }
        self.last_retry_ns = now;
        let ids = std::mem::take(&mut self.unresolved);
        for id in ids {
            match self.resolver.as_mut().and_then(|r| r.resolve(id)) {
                Some(path) => out.push(Input::Cgroup {
                    id,
                    path: Some(path),
                }),
                // Gone for good or not there yet: try again later, but
                // not forever (bounded by the ids seen).
                None => self.unresolved.push(id),
            }
        }
    }
}

/// Pod and container names (`system::runtime`): asked for each cgroup path
/// that names a container or pod, looked up by a worker thread, handed
/// over as `Input::Workload` when found.
struct Workloads {
    /// None: the worker could not start (a warning said so).
    worker: Option<runtime::Worker>,
    /// Containers and pods asked about, with the lookups left when not
    /// found.
    asked: HashMap<WorkloadKeys, u8>,
    /// Not found yet: asked again at the next retry.
    missing: Vec<WorkloadKeys>,
    last_retry_ns: u64,
}

impl Workloads {
    fn new(root: &std::path::Path, warnings: &mut Vec<String>) -> Workloads {
        let worker = runtime::Worker::spawn(RuntimeDirs::new(root))
            .map_err(|e| {
                warnings.push(format!(
                    "pod and container names will not be looked up: {e}"
                ))
            })
            .ok();
        Workloads {
            worker,
            asked: HashMap::new(),
            missing: Vec::new(),
            last_retry_ns: 0,
        }
    }

    /// Asks for the containers and pods of the cgroup paths among `inputs`
    /// (those just announced), once each.
    fn ask_new(&mut self, inputs: &[Input]) {
        let Some(w) = &self.worker else {
            return;
        };
        for i in inputs {
            let Input::Cgroup { path: Some(p), .. } = i else {
                continue;
            };
            let keys = keys_from_cgroup(p);
            if keys.is_empty() || self.asked.contains_key(&keys) {
                continue;
            }
            if self.asked.len() >= MAX_WORKLOADS_ASKED {
                self.asked.clear();
            }
            self.asked.insert(keys.clone(), WORKLOAD_TRIES);
            w.request(keys);
        }
    }

    /// The names found so far; those not found are asked again every
    /// [`CGROUP_RETRY_EVERY`], a few times.
    fn take(&mut self, now: u64, out: &mut Vec<Input>) {
        let Some(w) = &self.worker else {
            return;
        };
        for a in w.try_recv() {
            if a.found.is_empty() {
                self.missing.push(a.keys);
            } else {
                out.extend(a.found.into_iter().map(Input::Workload));
            }
        }
        if self.missing.is_empty()
            || now.saturating_sub(self.last_retry_ns) < CGROUP_RETRY_EVERY.as_nanos() as u64
        {
            return;
        }
        self.last_retry_ns = now;
        for keys in std::mem::take(&mut self.missing) {
            if let Some(left) = self.asked.get_mut(&keys)
                && *left > 0
            {
                *left -= 1;
                w.request(keys);
            }
        }
    }
}

/// Client runtimes (`system::langrt`): a process's runtime is asked for
/// once it has opened [`RUNTIME_AFTER`] connections: a client that churns,
/// the only kind a fix is written for; a process that connects a few times
/// costs nothing.
#[derive(Default)]
struct Runtimes {
    /// None: the worker could not start (a warning said so).
    worker: Option<crate::system::langrt::Worker>,
    /// Events per process (pid, comm) until its runtime is asked for;
    /// cleared when [`RUNTIME_PIDS`] is reached. FxHash: this runs for
    /// every drained event.
    count: FxHashMap<(u32, crate::event::Comm), u32>,
    /// The last process counted that had already reached
    /// [`RUNTIME_AFTER`]: a churning client's events come in runs, so most
    /// events skip the map.
    last_done: Option<(u32, crate::event::Comm)>,
}

impl Runtimes {
    fn count(&mut self, pid: u32, comm: crate::event::Comm) {
        let Some(w) = self.worker.as_mut() else {
            return;
        };
        if self.last_done == Some((pid, comm)) {
            return;
        }
        if self.count.len() >= RUNTIME_PIDS && !self.count.contains_key(&(pid, comm)) {
            self.count.clear();
            self.last_done = None;
        }
        let n = self.count.entry((pid, comm)).or_insert(0);
        *n = n.saturating_add(1);
        if *n == RUNTIME_AFTER {
            w.ask(pid);
        }
        if *n >= RUNTIME_AFTER {
            self.last_done = Some((pid, comm));
        }
    }
}

/// The host record: hostname, kernel, clock anchor, portwatch's namespace
/// and its sysctls (what could be read; a warning says what could not).
pub(crate) fn host_input(warnings: &mut Vec<String>) -> Input {
    let clock = WallClock::now();
    match procfs::read_host(clock) {
        Ok(h) => Input::Host(h),
        Err(e) => {
            warnings.push(format!("host context incomplete: {e}"));
            Input::Host(crate::input::HostInfo {
                hostname: String::new(),
                kernel: String::new(),
                clock,
                netns: procfs::netns_inode(),
                sysctls: Default::default(),
            })
        }
    }
}

/// Connections a process opens before its runtime is read.
const RUNTIME_AFTER: u32 = 8;
/// Processes counted at once for [`RUNTIME_AFTER`].
const RUNTIME_PIDS: usize = 65_536;

pub struct LiveSource {
    pub probe: Probe,
    cgroups: Cgroups,
    workloads: Workloads,
    netns: u32,
    last_counters_ns: u64,
    /// Last resync: sysctls and counters of other namespaces, networks,
    /// and the socket tables when their [`TableCadence`] allows.
    last_resync_ns: u64,
    resync_ns: u64,
    /// This namespace's table, read on the main thread.
    host_tables: TableCadence,
    /// Other namespaces' tables, read by the worker, one round at a time.
    netns_tables: TableCadence,
    /// Reuses its buffer between readings.
    table_reader: sockdiag::Reader,
    /// Reads other namespaces from inside them (None: could not start).
    netns_worker: Option<netns::Worker>,
    netns_seen: NetnsSeen,
    /// Names sampled connect() stacks off the intake path (None: sampling
    /// off, or the thread could not start).
    symbols: Option<crate::system::symbols::Worker>,
    /// Looks up the processes holding sockets (None: could not start).
    owners: Option<owners::Resolver>,
    /// Asks for the runtime (Python, Go, ...) of churning clients.
    runtimes: Runtimes,
    /// Per namespace, the inodes its latest socket table asks owners for.
    owner_wanted: HashMap<u32, Vec<u32>>,
    /// `owner_wanted` changed since the last lookup was asked for.
    owner_wanted_dirty: bool,
    /// Warnings for the user, shown once (by the caller).
    pub warnings: Vec<String>,
    /// The starting state read by `start`, handed over by the first
    /// `next_batch`.
    initial: Vec<Input>,
}

impl LiveSource {
    /// Loads the probe and reads the starting state of the host: host
    /// context, socket table, counters. These are the first inputs
    /// `next_batch` hands over.
    /// `runtime_root` is where the container runtimes keep their state
    /// (`/` on an ordinary node; `--runtime-root`).
    pub fn start(runtime_root: &std::path::Path) -> Result<LiveSource> {
        let mut initial = Vec::new();
        let out = &mut initial;
        let probe = Probe::load()?;
        let mut warnings = probe.warnings.clone();
        out.push(host_input(&mut warnings));
        let cgroups = Cgroups::new(&mut warnings);
        let workloads = Workloads::new(runtime_root, &mut warnings);
        let mut src = LiveSource {
            probe,
            cgroups,
            workloads,
            netns: procfs::netns_inode(),
            last_counters_ns: 0,
            last_resync_ns: 0,
            resync_ns: SOCKETS_EVERY.as_nanos() as u64,
            host_tables: TableCadence::default(),
            netns_tables: TableCadence::default(),
            table_reader: sockdiag::Reader::new(),
            netns_worker: None,
            netns_seen: NetnsSeen::default(),
            symbols: None,
            owners: None,
            runtimes: Runtimes::default(),
            owner_wanted: HashMap::new(),
            owner_wanted_dirty: false,
            warnings,
            initial: Vec::new(),
        };
        if crate::probe::stack_sample() != 0 {
            match crate::system::symbols::Worker::spawn() {
                Ok(w) => src.symbols = Some(w),
                Err(e) => src
                    .warnings
                    .push(format!("sampled connect() stacks will not be named: {e}")),
            }
        }
        match crate::system::langrt::Worker::spawn("/proc".into()) {
            Ok(w) => src.runtimes.worker = Some(w),
            Err(e) => src.warnings.push(format!(
                "client runtimes will not be read (generic fix texts): {e}"
            )),
        }
        match netns::Worker::spawn() {
            Ok(w) => src.netns_worker = Some(w),
            Err(e) => src
                .warnings
                .push(format!("other network namespaces will not be read: {e}")),
        }
        let mount = src.cgroups.mount().map(std::path::Path::to_path_buf);
        match owners::Resolver::spawn(mount.as_deref()) {
            Ok(r) => src.owners = Some(r),
            Err(e) => src.warnings.push(format!(
                "socket owners will not be looked up (CLOSE_WAIT leaks unattributed): {e}"
            )),
        }
        let now = monotonic_now_ns();
        src.last_resync_ns = now;
        src.netns_tables.start(now, true, 0);
        src.read_sockets(now, out);
        src.read_counters(now, out);
        src.initial = initial;
        Ok(src)
    }

    /// How often the socket table is re-read.
    pub fn set_resync(&mut self, every: Duration) {
        self.resync_ns = every.as_nanos() as u64;
    }

    /// This namespace's socket table (when its cadence allows) and its
    /// interface networks.
    fn read_sockets(&mut self, now: u64, out: &mut Vec<Input>) {
        if self.host_tables.due(now, self.resync_ns) {
            self.read_host_table(now, out);
        }
        // The interface networks change rarely; read with the table, after
        // it: the table is stamped `now`, and closes after that are counted
        // again on top of it, so nothing may come between the two.
        match crate::system::ifaddrs::read_networks() {
            Ok(nets) => out.push(Input::Networks(LocalNetworks {
                ts_ns: now,
                netns: self.netns,
                nets,
            })),
            Err(e) => log::debug!("interface networks not read: {e}"),
        }
    }

    fn read_host_table(&mut self, now: u64, out: &mut Vec<Input>) {
        let lost = self.probe.losses().total();
        let full = self.host_tables.full_due(now, lost);
        self.host_tables.start(now, full, lost);
        match self
            .table_reader
            .read(now, self.netns, TableCadence::states(full))
        {
            Ok((t, cost)) => {
                self.host_tables.last_cpu_ns = cost.cpu_ns;
                log::debug!(
                    "socket table of netns {}{}: {} sockets, {} datagrams, {:.2} ms ({:.2} ms CPU); next in {:.1} s",
                    self.netns,
                    if full { "" } else { " without TIME_WAIT" },
                    cost.sockets,
                    cost.datagrams,
                    cost.took_ns as f64 / 1e6,
                    cost.cpu_ns as f64 / 1e6,
                    self.host_tables.gap_ns(self.resync_ns) as f64 / 1e9
                );
                self.note_owner_wanted(&t);
                out.push(Input::Sockets(t));
            }
            Err(e) => {
                let w = format!("socket table (sock_diag) not read: {e}");
                if !self.warnings.contains(&w) {
                    log::warn!("{w}");
                    self.warnings.push(w);
                }
            }
        }
    }

    /// Asks the worker for the namespaces seen since the last request
    /// (tables included), and for all of them every resync (tables when
    /// their cadence allows); hands over the readings done.
    fn read_namespaces(&mut self, now: u64, resync: bool, out: &mut Vec<Input>) {
        let Some(readings) = self.netns_worker.as_mut().map(|w| w.try_recv()) else {
            return;
        };
        for r in readings {
            let netns = r.info.netns;
            if r.info.stale {
                self.netns_seen.stale.insert(r.info.netns);
            }
            out.push(Input::Netns(r.info));
            if let Some(n) = r.networks {
                out.push(Input::Networks(n));
            }
            if let Some(c) = r.sockets_cost {
                self.netns_tables.last_cpu_ns += c.cpu_ns;
                let partial = r.sockets.as_ref().is_some_and(|t| t.without_time_wait);
                log::debug!(
                    "socket table of netns {}{}: {} sockets, {} datagrams, {:.2} ms ({:.2} ms CPU)",
                    netns,
                    if partial { " without TIME_WAIT" } else { "" },
                    c.sockets,
                    c.datagrams,
                    c.took_ns as f64 / 1e6,
                    c.cpu_ns as f64 / 1e6
                );
            }
            if let Some(t) = r.sockets {
                self.note_owner_wanted(&t);
                out.push(Input::Sockets(t));
            }
        }
        let Some(w) = self.netns_worker.as_mut() else {
            return;
        };
        let seen = &mut self.netns_seen;
        // A namespace's first reading has its table, TIME_WAIT included:
        // the engine starts its held ports from it.
        let new = std::mem::take(&mut seen.new);
        w.request(seen.request(new, Some(true)));
        // A resync while the last one is still being read is skipped: the
        // worker never falls behind by more than one round.
        if resync && w.pending() == 0 {
            let tables = self.netns_tables.due(now, self.resync_ns);
            let mut full = false;
            if tables {
                let lost = self.probe.losses().total();
                full = self.netns_tables.full_due(now, lost);
                log::debug!(
                    "namespace tables: last round {:.2} ms CPU; this round {}",
                    self.netns_tables.last_cpu_ns as f64 / 1e6,
                    if full {
                        "with TIME_WAIT"
                    } else {
                        "without TIME_WAIT"
                    }
                );
                self.netns_tables.start(now, full, lost);
            }
            let all: Vec<u32> = seen
                .tasks
                .keys()
                .copied()
                .filter(|n| !seen.stale.contains(n))
                .collect();
            w.request(seen.request(all, tables.then_some(full)));
        }
    }

    /// Remembers which sockets of a namespace's latest table want an owner.
    fn note_owner_wanted(&mut self, t: &crate::input::SocketTable) {
        let inodes: Vec<u32> = t.owner_wanted().iter().map(|e| e.inode).collect();
        let old = self.owner_wanted.get(&t.netns);
        if old.map_or(!inodes.is_empty(), |o| *o != inodes) {
            self.owner_wanted_dirty = true;
        }
        if inodes.is_empty() {
            self.owner_wanted.remove(&t.netns);
        } else {
            self.owner_wanted.insert(t.netns, inodes);
        }
    }

    /// Hands over a finished owner lookup (cgroups first, like events) and
    /// asks for the next one when the tables changed and none is running.
    fn read_owners(&mut self, now: u64, out: &mut Vec<Input>) {
        let Some(r) = self.owners.as_mut() else {
            return;
        };
        if let Some(found) = r.try_recv() {
            for o in &found.owners {
                self.cgroups.announce(o.cgroup_id, out);
            }
            out.push(Input::SocketOwners(found));
        }
        let Some(r) = self.owners.as_mut() else {
            return;
        };
        if self.owner_wanted_dirty && !r.busy() {
            self.owner_wanted_dirty = false;
            let mut all: Vec<u32> = self.owner_wanted.values().flatten().copied().collect();
            all.truncate(crate::input::MAX_OWNER_LOOKUPS);
            r.request(now, all);
        }
    }

    fn read_counters(&mut self, now: u64, out: &mut Vec<Input>) {
        self.last_counters_ns = now;
        match procfs::read_counters(now) {
            Ok(c) => out.push(Input::Counters(c)),
            Err(e) => log::debug!("kernel counters not read: {e}"),
        }
        out.push(Input::Losses {
            ts_ns: now,
            losses: self.probe.losses(),
        });
    }

    /// Pending events, each preceded by its cgroup's path the first time.
    /// Decoded straight into `out` (no intermediate vector: an event is
    /// ~200 bytes and was copied twice more on the way).
    fn drain_events(&mut self, out: &mut Vec<Input>) {
        let LiveSource {
            probe,
            cgroups,
            workloads,
            netns,
            netns_seen,
            runtimes,
            ..
        } = self;
        probe.drain(|ev| {
            if let Some(t) = ev.task() {
                let from = out.len();
                cgroups.announce(t.cgroup_id, out);
                if out.len() > from {
                    workloads.ask_new(&out[from..]);
                }
                let ns = ev.netns();
                if ns != 0 && ns != *netns {
                    netns_seen.note(ns, (t.pid, t.tid));
                }
                runtimes.count(t.pid, t.comm);
            }
            out.push(Input::Event(ev));
        });
        if let Some(w) = self.runtimes.worker.as_ref() {
            out.extend(w.try_recv().into_iter().map(Input::Runtime));
        }
        let stacks = self.probe.take_stacks();
        if let Some(w) = self.symbols.as_mut() {
            w.send(stacks);
            let named = w.try_recv();
            self.push_stacks(named, out);
        }
    }

    /// Symbolized stacks, each preceded by its cgroup's path the first time.
    fn push_stacks(&mut self, named: Vec<crate::input::CallStack>, out: &mut Vec<Input>) {
        for cs in named {
            self.cgroups.announce(cs.task.cgroup_id, out);
            out.push(Input::CallStack(cs));
        }
    }

    /// Waits for the next batch (≤ 10 ms, or sooner when the kernel wakes
    /// us) and appends it to `out`: cgroup resolutions before the events
    /// that need them, the events, periodic readings, then a `Tick`.
    pub async fn next_batch(&mut self, out: &mut Vec<Input>) {
        if !self.initial.is_empty() {
            out.append(&mut self.initial);
            return;
        }
        self.probe.wait().await;
        self.drain_events(out);
        let now = monotonic_now_ns();
        if now.saturating_sub(self.last_counters_ns) >= COUNTERS_EVERY.as_nanos() as u64 {
            self.read_counters(now, out);
        }
        let resync = now.saturating_sub(self.last_resync_ns) >= self.resync_ns;
        if resync {
            self.last_resync_ns = now;
            self.read_sockets(now, out);
        }
        self.read_namespaces(now, resync, out);
        let from = out.len();
        self.read_owners(now, out);
        self.cgroups.retry(now, out);
        self.workloads.ask_new(&out[from..]);
        self.workloads.take(now, out);
        out.push(Input::Tick { now_ns: now });
    }

    /// Final drain after the loop stopped: whatever the kernel submitted.
    pub fn finish(&mut self, out: &mut Vec<Input>) {
        self.drain_events(out);
        if let Some(mut w) = self.symbols.take() {
            let named = w.finish();
            self.push_stacks(named, out);
        }
        if let Some(mut w) = self.runtimes.worker.take() {
            out.extend(w.finish().into_iter().map(Input::Runtime));
        }
        let now = monotonic_now_ns();
        self.workloads.take(now, out);
        out.push(Input::Losses {
            ts_ns: now,
            losses: self.probe.losses(),
        });
        out.push(Input::Tick { now_ns: now });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn a_cheap_table_is_read_every_resync() {
        let mut c = TableCadence::default();
        c.start(10 * S, true, 0);
        c.last_cpu_ns = 2_000_000; // 2 ms: 500× is 1 s, under the resync
        assert_eq!(c.gap_ns(5 * S), 5 * S);
        assert!(!c.due(14 * S, 5 * S));
        assert!(c.due(15 * S, 5 * S));
    }

    #[test]
    fn a_costly_table_waits_in_proportion_to_its_cost() {
        let mut c = TableCadence::default();
        c.start(10 * S, true, 0);
        c.last_cpu_ns = 40_000_000; // 40 ms of CPU: next no sooner than 20 s
        assert_eq!(c.gap_ns(5 * S), 20 * S);
        assert!(!c.due(29 * S, 5 * S));
        assert!(c.due(30 * S, 5 * S));
        // A round's cost is what its readings add up to; a new round
        // starts from nothing.
        c.start(30 * S, true, 0);
        assert_eq!(c.last_cpu_ns, 0);
        assert!(c.due(35 * S, 5 * S));
    }

    #[test]
    fn the_first_reading_is_always_due() {
        assert!(TableCadence::default().due(1, 5 * S));
        assert!(TableCadence::default().full_due(1, 0));
    }

    #[test]
    fn time_wait_is_asked_for_every_full_table_period_and_after_losses() {
        let full_every = FULL_TABLE_EVERY.as_nanos() as u64;
        let mut c = TableCadence::default();
        assert!(c.full_due(10 * S, 0));
        c.start(10 * S, true, 0);
        c.last_cpu_ns = 1_000_000;
        assert!(!c.full_due(15 * S, 0));
        c.start(15 * S, false, 0);
        assert!(!c.full_due(10 * S + full_every - 1, 0));
        assert!(c.full_due(10 * S + full_every, 0));
        // Events lost since the last full reading: the next one is full.
        assert!(c.full_due(20 * S, 3));
        c.start(20 * S, true, 3);
        assert!(!c.full_due(25 * S, 3));
        assert_eq!(TableCadence::states(true), sockdiag::STATES_ALL);
        assert_eq!(
            TableCadence::states(false) & sockdiag::TIME_WAIT_BIT,
            0,
            "no TIME_WAIT"
        );
    }

    #[test]
    fn a_cheap_reading_without_time_wait_waits_as_long_as_a_full_one() {
        let mut c = TableCadence::default();
        c.start(0, true, 0);
        c.last_cpu_ns = 20_000_000; // a full reading: 20 ms, gap 10 s
        c.start(10 * S, false, 0);
        c.last_cpu_ns = 12_000_000; // without TIME_WAIT: 12 ms
        // Not 6 s: the CPU the partial reading saves stays saved.
        assert_eq!(c.gap_ns(5 * S), 10 * S);
        // The next full one sets the pace again.
        c.start(20 * S, true, 0);
        c.last_cpu_ns = 4_000_000;
        c.start(25 * S, false, 0);
        c.last_cpu_ns = 2_000_000;
        assert_eq!(c.gap_ns(5 * S), 5 * S);
    }
}
