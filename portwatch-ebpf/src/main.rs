//! portwatch's kernel side: observe TCP connection lifecycles and failed
//! connects, emit one compact record per connection or failure.
//!
//! Only tracepoints are used (no kprobes, no fentry/fexit): they exist on
//! hardened kernels where the others are compiled out or rejected.
//!
//! * `sock:inet_sock_set_state` follows every TCP socket from its first state
//!   (CLOSE→SYN_SENT for active opens, LISTEN→SYN_RECV for accepted ones) to
//!   CLOSE, keeping what it learns in `SOCKS` keyed by the socket's address,
//!   and emits one `KIND_CLOSE` record at CLOSE. Only CLOSE→SYN_SENT runs in
//!   the connecting task; later transitions run in softirq context, so task
//!   attribution always comes from the map entry.
//! * `tcp:tcp_retransmit_skb` counts the SYNs retransmitted for a followed
//!   socket still in SYN_SENT (into its `SOCKS` entry); it fires only on
//!   retransmissions, off the path of ordinary connections.
//! * `syscalls:sys_{enter,exit}_connect` remember each thread's destination
//!   and emit `KIND_CONNECT_ERROR` when connect() fails on a TCP socket,
//!   unless the failure was already reported as a failed handshake.
//! * `syscalls:sys_{enter,exit}_bind` emit `KIND_BIND_ERROR` when bind()
//!   fails on a TCP socket (EADDRINUSE: a socket bound to port 0 takes its
//!   port at bind(), so that is where such a client runs out of ports).
//!
//! Records go to one ring buffer without waking the reader (it drains on a
//! 10 ms timer); a wake-up costs ~10 µs per event on small VMs, the record
//! itself ~0.1 µs. The reader is woken only when the buffer fills up.
//!
//! Every entry point counts its body's error in `STATS` (`STAT_PROBE_ERRORS`):
//! a failed read loses a record, and a lost record is always counted.
#![no_std]
#![no_main]
// The bpf target's core has no atomic RMW methods; the intrinsic compiles to
// the BPF atomic add instruction. RUSTC_BOOTSTRAP is already required by aya-ebpf.
#![feature(core_intrinsics)]
#![expect(internal_features, reason = "core_intrinsics for BPF atomic add")]

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_ANY, BPF_F_USER_STACK, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_current_task, bpf_get_prandom_u32, bpf_ktime_get_ns, bpf_probe_read_kernel,
        bpf_probe_read_user,
    },
    macros::{map, tracepoint},
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf, StackTrace},
    programs::{TracePointContext, tracing::StackIdContext},
};
use portwatch_common::{
    AF_INET, AF_INET6, BINDS_MAX_ENTRIES, CONNECTS_SLOTS, EVENTS_RING_BYTES,
    FAILED_SOCKS_MAX_ENTRIES, FLAG_BOUND_PORT, FLAG_ESTABLISHED, FLAG_HAS_BYTES, FLAG_HAS_TASK,
    FLAG_INBOUND, FLAG_LOCAL_CLOSE, FLAG_PEER_CLOSE, FLAG_PORT_EXHAUSTED, FLAG_SAW_SYN_SENT,
    KIND_BIND_ERROR, KIND_CLOSE, KIND_CONNECT_ERROR, KIND_CONNECT_STACK, OFFSET_UNKNOWN, Offsets,
    RawEvent, SOCKS_MAX_ENTRIES, STACKS_MAX_ENTRIES, STAT_CONNECT_MAP_FULL, STAT_PROBE_ERRORS,
    STAT_RINGBUF_LOST, STAT_SOCK_EVICTED, STAT_UNTRACKED_CLOSE, STATS_LEN, WAKEUP_THRESHOLD_BYTES,
    WAKEUP_WINDOW_BYTES, tp,
};

const IPPROTO_TCP: u16 = 6;

// TCP states (include/net/tcp_states.h).
const TCP_ESTABLISHED: i32 = 1;
const TCP_SYN_SENT: i32 = 2;
const TCP_SYN_RECV: i32 = 3;
const TCP_FIN_WAIT1: i32 = 4;
const TCP_FIN_WAIT2: i32 = 5;
const TCP_CLOSE: i32 = 7;
const TCP_CLOSE_WAIT: i32 = 8;
const TCP_LAST_ACK: i32 = 9;
const TCP_LISTEN: i32 = 10;
const TCP_CLOSING: i32 = 11;

const EADDRNOTAVAIL: u32 = 99;
const EBADF: i64 = 9;
const EFAULT: i64 = 14;
const ENOTSOCK: i64 = 88;
const ECONNABORTED: u32 = 103;
const SOCK_STREAM: i16 = 1;
const EINPROGRESS: i64 = 115;
const EALREADY: i64 = 114;
const EISCONN: i64 = 106;
const EINTR: i64 = 4;
/// Kernel-internal restart codes (include/linux/errno.h, 512..=516): a
/// signal interrupted a blocking connect(); the syscall's exit sees them
/// before they become EINTR or a restart.
const ERESTARTSYS: i64 = 512;
const ERESTART_RESTARTBLOCK: i64 = 516;

/// `BPF_RB_AVAIL_DATA` for `bpf_ringbuf_query`.
const BPF_RB_AVAIL_DATA: u64 = 0;

/// Per-connection state while a socket is followed.
#[repr(C)]
#[derive(Clone, Copy)]
struct SockInfo {
    start_ns: u64,
    handshake_ns: u64,
    cgroup_id: u64,
    pid: u32,
    tid: u32,
    netns: u32,
    /// `FLAG_*` gathered along the way.
    flags: u32,
    /// SYNs retransmitted while in SYN_SENT.
    syn_retrans: u32,
    _pad: u32,
    comm: [u8; 16],
    pcomm: [u8; 16],
}

/// `ConnectInfo::flags`: the failure was already reported by the socket
/// tracepoint (failed handshake), so connect()'s exit must stay silent.
const CONNECT_REPORTED: u32 = 1 << 31;
/// `ConnectInfo::flags`: the socket went SYN_SENT→CLOSE inside this very
/// connect() without a socket error: connect() itself failed after picking
/// its route (a bound port whose 4-tuple is taken, no free port, no
/// buffer). The close stays silent; connect()'s exit reports the real errno.
const CONNECT_FAILED_IN_CALL: u32 = 1 << 30;

/// A thread inside connect(). The destination is not read on entry: most
/// connects succeed (and many are not TCP at all), so the sockaddr is read
/// from `uaddr` at exit, only when connect() failed. The caller's buffer is
/// still there: the syscall has not returned yet.
#[repr(C)]
#[derive(Clone, Copy)]
struct ConnectInfo {
    start_ns: u64,
    /// User address of the `struct sockaddr` passed to connect().
    uaddr: u64,
    /// The socket this connect() put in SYN_SENT (0 until then). A later
    /// state change of another socket of the same thread (a non-blocking
    /// event loop's earlier connect failing now) must not touch this entry.
    sk: u64,
    /// `FLAG_PORT_EXHAUSTED`, `FLAG_SAW_SYN_SENT`, `FLAG_BOUND_PORT`,
    /// `CONNECT_REPORTED`, `CONNECT_FAILED_IN_CALL`.
    flags: u32,
    /// The file descriptor, to find the socket when connect() fails.
    fd: u32,
    /// The thread this slot belongs to; 0 when the slot is free (tid 0 is
    /// the idle task, which never calls connect()).
    tid: u32,
    _pad: u32,
}

/// A thread inside bind(): read further only if bind() fails.
#[repr(C)]
#[derive(Clone, Copy)]
struct BindInfo {
    start_ns: u64,
    /// User address of the `struct sockaddr` passed to bind().
    uaddr: u64,
    fd: u32,
    _pad: u32,
}

/// Filled in by userspace from BTF before load (`EbpfLoader::set_global`).
/// Lives in .rodata, so the verifier sees the values as constants.
#[unsafe(no_mangle)]
static OFFSETS: Offsets = Offsets::UNKNOWN;

/// Inbound sockets may hold at most this many `SOCKS` entries (userspace
/// sets half the map's size); the rest is reserved for outbound ones, which
/// are what portwatch explains. 0 (the default) means no inbound socket is
/// followed, so a loader that forgot it loses inbound rows, never outbound.
#[unsafe(no_mangle)]
static SOCKS_INBOUND_MAX: u32 = 0;

/// One active open in this many captures its user stack (0: never).
/// Written by userspace before load (`--stack-sample`); in .rodata, so with
/// 0 the verifier removes the sampling branch and the hot path is unchanged.
#[unsafe(no_mangle)]
static STACK_SAMPLE_EVERY: u32 = 0;

/// Sampled user stacks (`bpf_get_stackid`); userspace reads and deletes
/// each id it is sent.
#[map]
static STACKS: StackTrace = StackTrace::with_max_entries(STACKS_MAX_ENTRIES, 0);

#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_RING_BYTES, 0);

#[map]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STATS_LEN, 0);

/// Key: the socket's kernel address (`skaddr`). A plain preallocated hash,
/// not an LRU: the entry is deleted at CLOSE, which every TCP socket passes
/// through before it is freed, so nothing ages out; an LRU costs more per
/// update and lookup and needed a second map to count its evictions. When
/// it is full the new socket is not followed, and that is counted.
#[map]
static SOCKS: HashMap<u64, SockInfo> = HashMap::with_max_entries(SOCKS_MAX_ENTRIES, 0);

/// Inbound entries of `SOCKS` now (slot 0), kept with atomic adds: a
/// global count, not per CPU, because a socket opens and closes on
/// different CPUs.
#[map]
static SOCKS_INBOUND: Array<u64> = Array::with_max_entries(1, 0);

/// Threads inside connect(), one slot per `tid % CONNECTS_SLOTS`, the
/// owner's tid kept in the slot. An array, not a hash keyed by tid: the
/// verifier inlines an array lookup into a few instructions, where a hash
/// update or delete is a helper call that takes a bucket lock (measured:
/// sys_enter_connect ~640 → ~250 ns and sys_exit_connect ~330 → ~120 ns
/// per run, on a loaded 2-core VM). A slot is written by its thread, or
/// for it by its socket's tracepoint while it waits inside connect(), so
/// there is no race unless two threads whose tids are equal modulo the
/// size are inside connect() at once; then the later one takes the slot
/// and that is counted (`STAT_CONNECT_MAP_FULL`). What the earlier one can lose is
/// small: a failed handshake and port exhaustion are still reported by
/// the socket's CLOSE, only failures before SYN_SENT (ENETUNREACH, ...) go.
#[map]
static CONNECTS: Array<ConnectInfo> = Array::with_max_entries(CONNECTS_SLOTS, 0);

/// `tid`'s slot in `CONNECTS`, whoever holds it.
#[inline(always)]
fn connect_slot(tid: u32) -> Option<&'static mut ConnectInfo> {
    let p = CONNECTS.get_ptr_mut(tid & (CONNECTS_SLOTS - 1))?;
    // SAFETY: map value pointer from a successful (inlined) array lookup;
    // writers of one slot do not overlap in time (see CONNECTS).
    Some(unsafe { &mut *p })
}

/// `tid`'s connect() in flight, if any.
#[inline(always)]
fn connect_of(tid: u32) -> Option<&'static mut ConnectInfo> {
    connect_slot(tid).filter(|c| c.tid == tid)
}

/// Key: thread id.
#[map]
static BINDS: HashMap<u32, BindInfo> = HashMap::with_max_entries(BINDS_MAX_ENTRIES, 0);

/// Key: socket address; value: the socket error its close reported. See
/// `FAILED_SOCKS_MAX_ENTRIES`.
#[map]
static FAILED_SOCKS: LruHashMap<u64, u32> =
    LruHashMap::with_max_entries(FAILED_SOCKS_MAX_ENTRIES, 0);

#[inline(always)]
fn offsets() -> Offsets {
    // SAFETY: OFFSETS is a plain static; read_volatile keeps the compiler
    // from folding the UNKNOWN default in, since userspace rewrites it.
    unsafe { core::ptr::read_volatile(&raw const OFFSETS) }
}

#[inline(always)]
fn bump(stat: u32) {
    if let Some(p) = STATS.get_ptr_mut(stat) {
        // SAFETY: per-CPU slot, only this CPU writes it while we run.
        unsafe { *p += 1 }
    }
}

/// What every entry point does with its body's result: an error means a
/// record was lost, so it is counted (and shown with the other losses).
#[inline(always)]
fn count_error(r: Result<(), i32>) -> u32 {
    if r.is_err() {
        bump(STAT_PROBE_ERRORS);
    }
    0
}

/// Reads a `T` at `base + off` from kernel memory; `None` when the offset is
/// unknown or the read faults.
#[inline(always)]
fn read_kernel<T>(base: u64, off: u32) -> Option<T> {
    if off == OFFSET_UNKNOWN || base == 0 {
        return None;
    }
    // SAFETY: bpf_probe_read_kernel copes with any address; a bad one
    // returns an error instead of faulting.
    unsafe { bpf_probe_read_kernel((base + off as u64) as *const T).ok() }
}

/// Bytes of `tcp_sock` one read covers when the two byte counters lie close
/// together (they do: 72 bytes apart on 6.18), so a close costs one helper
/// call for both instead of two.
const BYTES_WINDOW_WORDS: usize = 10;

/// `(bytes_acked, bytes_received)` of `sk`, `None` when an offset is unknown
/// or a read faults.
#[inline(always)]
fn sock_bytes(sk: u64, o: &Offsets) -> Option<(u64, u64)> {
    let (acked, received) = (o.tcp_bytes_acked, o.tcp_bytes_received);
    if acked == OFFSET_UNKNOWN || received == OFFSET_UNKNOWN {
        return None;
    }
    let lo = acked.min(received);
    let (ia, ir) = (((acked - lo) / 8) as usize, ((received - lo) / 8) as usize);
    if (acked | received) % 8 == 0 && ia < BYTES_WINDOW_WORDS && ir < BYTES_WINDOW_WORDS {
        let w: [u64; BYTES_WINDOW_WORDS] = read_kernel(sk, lo)?;
        return Some((*w.get(ia)?, *w.get(ir)?));
    }
    Some((read_kernel(sk, acked)?, read_kernel(sk, received)?))
}

fn sock_netns(sk: u64, o: &Offsets) -> u32 {
    let net: u64 = read_kernel(sk, o.sock_net).unwrap_or(0);
    read_kernel(net, o.net_inum).unwrap_or(0)
}

/// The current process's name: `current->group_leader->comm`. A thread
/// that leads its group (every single-threaded process) is its own leader,
/// so its name is `comm` and the two kernel reads are skipped.
#[inline(always)]
fn process_comm(o: &Offsets, pid_tgid: u64, comm: &[u8; 16]) -> [u8; 16] {
    if pid_tgid >> 32 == pid_tgid & 0xffff_ffff && o.task_comm != OFFSET_UNKNOWN {
        return *comm;
    }
    // SAFETY: returns the current task pointer; only dereferenced through
    // bpf_probe_read_kernel.
    let task = unsafe { bpf_get_current_task() };
    let leader: u64 = read_kernel(task, o.task_group_leader).unwrap_or(0);
    read_kernel(leader, o.task_comm).unwrap_or([0; 16])
}

/// Whether file descriptor `fd` of the current task is a TCP socket (the
/// walk `current->files->fdt->fd[fd]->private_data` to its `struct socket`,
/// then `type` and `sk->sk_protocol`), and its `struct sock`. `None` when
/// an offset is unknown (no BTF) or a read fails. Only called after a
/// failed connect() or bind(), whose errno already says `fd` is a socket,
/// so `private_data` is a `struct socket *`.
fn tcp_sock_of_fd(o: &Offsets, fd: u32) -> Option<(bool, u64)> {
    // SAFETY: returns the current task pointer; only dereferenced through
    // bpf_probe_read_kernel.
    let task = unsafe { bpf_get_current_task() };
    let files: u64 = read_kernel(task, o.task_files)?;
    let fdt: u64 = read_kernel(files, o.files_fdt)?;
    let fds: u64 = read_kernel(fdt, o.fdtable_fd)?;
    let file: u64 = read_kernel(fds, fd.checked_mul(8)?)?;
    let socket: u64 = read_kernel(file, o.file_private_data)?;
    let ty: i16 = read_kernel(socket, o.socket_type)?;
    let sk: u64 = read_kernel(socket, o.socket_sk)?;
    let proto: u16 = read_kernel(sk, o.sock_protocol)?;
    Some((ty == SOCK_STREAM && proto == IPPROTO_TCP, sk))
}

fn task_netns(o: &Offsets) -> u32 {
    // SAFETY: returns the current task pointer; only dereferenced through
    // bpf_probe_read_kernel.
    let task = unsafe { bpf_get_current_task() };
    let nsproxy: u64 = read_kernel(task, o.task_nsproxy).unwrap_or(0);
    let net: u64 = read_kernel(nsproxy, o.nsproxy_net_ns).unwrap_or(0);
    read_kernel(net, o.net_inum).unwrap_or(0)
}

/// Submit flags: no wake-up, unless the reader has fallen behind by the
/// threshold, and then only for the first records past it (see
/// `WAKEUP_WINDOW_BYTES`): the 10 ms timed drain does the rest.
#[inline(always)]
fn wakeup_flags() -> u64 {
    let pending = EVENTS.query(BPF_RB_AVAIL_DATA);
    if pending >= WAKEUP_THRESHOLD_BYTES && pending < WAKEUP_THRESHOLD_BYTES + WAKEUP_WINDOW_BYTES {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

/// Submits without waking the reader unless a lot is pending. One
/// `bpf_ringbuf_output` (reserve, copy and commit in one helper call)
/// rather than reserve + submit: the record is built on the stack anyway.
#[inline(always)]
fn emit(ev: &RawEvent) {
    if EVENTS.output::<RawEvent>(ev, wakeup_flags()).is_err() {
        bump(STAT_RINGBUF_LOST);
    }
}

#[tracepoint]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    count_error(try_inet_sock_set_state(&ctx))
}

/// Reads a tracepoint field straight from the record: the verifier allows
/// direct loads from a tracepoint's context, which costs a load instead of
/// a bpf_probe_read_kernel call per field (measured: the set_state program
/// ran ~500 ns per state change with helper reads).
#[inline(always)]
fn read_ctx<T: Copy>(ctx: &TracePointContext, off: usize) -> Result<T, i32> {
    // SAFETY: `off` is one of the tp:: constants, checked by userspace
    // against the tracepoint's format file before load (so it lies inside
    // the record), and each is aligned for its field's type.
    Ok(unsafe { core::ptr::read(ctx.as_ptr().cast::<u8>().add(off).cast::<T>()) })
}

/// A 16-byte address field as two 8-byte loads: the verifier refuses loads
/// through a pointer derived from ctx, which a byte-wise array copy makes.
#[inline(always)]
fn read_ctx_addr16(ctx: &TracePointContext, off: usize) -> Result<[u8; 16], i32> {
    let lo: u64 = read_ctx(ctx, off)?;
    let hi: u64 = read_ctx(ctx, off + 8)?;
    let mut a = [0u8; 16];
    a[..8].copy_from_slice(&lo.to_ne_bytes());
    a[8..].copy_from_slice(&hi.to_ne_bytes());
    Ok(a)
}

/// A 4-byte address field as one 4-byte load.
#[inline(always)]
fn read_ctx_addr4(ctx: &TracePointContext, off: usize) -> Result<[u8; 4], i32> {
    Ok(read_ctx::<u32>(ctx, off)?.to_ne_bytes())
}

fn try_inet_sock_set_state(ctx: &TracePointContext) -> Result<(), i32> {
    // Half of a connection's ~10 state changes carry nothing portwatch
    // keeps (ESTABLISHED→FIN_WAIT1→FIN_WAIT2, →CLOSE_WAIT→LAST_ACK: who
    // closed first is read from the state CLOSE comes from): leave those
    // after one load, before touching anything else.
    let new: i32 = read_ctx(ctx, tp::NEWSTATE)?;
    if !matches!(
        new,
        TCP_SYN_SENT | TCP_SYN_RECV | TCP_ESTABLISHED | TCP_CLOSE
    ) {
        return Ok(());
    }
    if read_ctx::<u16>(ctx, tp::PROTOCOL)? != IPPROTO_TCP {
        return Ok(());
    }
    let old: i32 = read_ctx(ctx, tp::OLDSTATE)?;
    let sk: u64 = read_ctx(ctx, tp::SKADDR)?;
    match new {
        TCP_SYN_SENT => on_active_open(ctx, sk, read_ctx::<u16>(ctx, tp::SPORT)?),
        TCP_SYN_RECV if old == TCP_LISTEN => on_passive_open(sk),
        TCP_ESTABLISHED => {
            if let Some(info) = SOCKS.get_ptr_mut(sk) {
                // SAFETY: map value pointer from a successful lookup.
                let info = unsafe { &mut *info };
                info.flags |= FLAG_ESTABLISHED;
                info.handshake_ns = bpf_ktime_now().saturating_sub(info.start_ns);
            }
            Ok(())
        }
        TCP_CLOSE => on_close(ctx, sk, old),
        _ => Ok(()),
    }
}

#[inline(always)]
fn bpf_ktime_now() -> u64 {
    // SAFETY: no arguments, no memory access.
    unsafe { bpf_ktime_get_ns() }
}

/// Follows `sk` from now on. BPF_ANY: a stale entry of a reused socket
/// address (one that went CLOSE→SYN_SENT again) is replaced in place.
#[inline(always)]
fn insert_sock(sk: u64, info: &SockInfo) {
    if SOCKS.insert(sk, info, BPF_ANY as u64).is_err() {
        // Full (or out of memory): this connection will not be reported.
        bump(STAT_SOCK_EVICTED);
    }
}

fn on_active_open(ctx: &TracePointContext, sk: u64, sport: u16) -> Result<(), i32> {
    let o = offsets();
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    let comm = bpf_get_current_comm().unwrap_or([0; 16]);
    let info = SockInfo {
        start_ns: bpf_ktime_now(),
        handshake_ns: 0,
        // SAFETY: no arguments; reads the current task's cgroup.
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        pid: (pid_tgid >> 32) as u32,
        tid,
        netns: sock_netns(sk, &o),
        // tcp_v4/v6_connect() set SYN_SENT before they pick a source port:
        // one already there was chosen by bind() (to port 0 without
        // IP_BIND_ADDRESS_NO_PORT, or to a fixed port), and it is held
        // against every destination, not only this one.
        flags: FLAG_HAS_TASK | if sport != 0 { FLAG_BOUND_PORT } else { 0 },
        syn_retrans: 0,
        _pad: 0,
        pcomm: process_comm(&o, pid_tgid, &comm),
        comm,
    };
    insert_sock(sk, &info);
    if let Some(c) = connect_of(tid) {
        c.flags |= FLAG_SAW_SYN_SENT;
        c.sk = sk;
    }
    // SAFETY: a plain static in .rodata, rewritten by userspace before load.
    let every = unsafe { core::ptr::read_volatile(&raw const STACK_SAMPLE_EVERY) };
    // CLOSE→SYN_SENT runs inside the connecting task's connect() (or its
    // io_uring worker), so the user registers are the caller's: its stack
    // is where the connection is opened. One random draw per active open;
    // the stack walk and the record only for the sampled one in `every`.
    // SAFETY: no arguments, no memory access.
    if every != 0 && unsafe { bpf_get_prandom_u32() } % every == 0 {
        sample_stack(ctx, &info)?;
    }
    Ok(())
}

/// Captures the current user stack into `STACKS` and emits its id with the
/// connection's task and destination (`KIND_CONNECT_STACK`).
#[inline(always)]
fn sample_stack(ctx: &TracePointContext, info: &SockInfo) -> Result<(), i32> {
    let id = match ctx.get_stackid(&STACKS, BPF_F_USER_STACK as u64) {
        Ok(id) => id as i32,
        Err(e) => e,
    };
    let mut ev = RawEvent {
        kind: KIND_CONNECT_STACK,
        flags: FLAG_HAS_TASK,
        start_ns: info.start_ns,
        end_ns: info.start_ns,
        cgroup_id: info.cgroup_id,
        netns: info.netns,
        pid: info.pid,
        tid: info.tid,
        errno: id as u32,
        comm: info.comm,
        pcomm: info.pcomm,
        ..RawEvent::default()
    };
    read_addrs(ctx, &mut ev)?;
    emit(&ev);
    Ok(())
}

fn on_passive_open(sk: u64) -> Result<(), i32> {
    let o = offsets();
    let Some(count) = SOCKS_INBOUND.get_ptr_mut(0) else {
        return Err(-1);
    };
    // SAFETY: SOCKS_INBOUND_MAX is a plain static rewritten by userspace
    // before load; read_volatile keeps the default from being folded in.
    let max = unsafe { core::ptr::read_volatile(&raw const SOCKS_INBOUND_MAX) };
    // Check, then add: concurrent opens on other CPUs may overshoot the
    // share by a few entries (one per CPU at most), never fill the map. A
    // fetch-and-add would be exact but needs Linux 5.12.
    // SAFETY: pointer from a successful array lookup.
    if unsafe { core::ptr::read_volatile(count) } >= u64::from(max) {
        bump(STAT_SOCK_EVICTED);
        return Ok(());
    }
    // Softirq context: the current task is unrelated, so no task fields.
    let info = SockInfo {
        start_ns: bpf_ktime_now(),
        handshake_ns: 0,
        cgroup_id: 0,
        pid: 0,
        tid: 0,
        netns: sock_netns(sk, &o),
        flags: FLAG_INBOUND,
        syn_retrans: 0,
        _pad: 0,
        comm: [0; 16],
        pcomm: [0; 16],
    };
    if SOCKS.insert(sk, &info, BPF_ANY as u64).is_err() {
        bump(STAT_SOCK_EVICTED);
    } else {
        // SAFETY: pointer from a successful array lookup; an atomic add
        // whose result is unused compiles to BPF_ATOMIC_ADD without fetch.
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(count, 1) };
    }
    Ok(())
}

/// An inbound entry of `SOCKS` was removed.
#[inline(always)]
fn inbound_gone() {
    if let Some(count) = SOCKS_INBOUND.get_ptr_mut(0) {
        // SAFETY: as in on_passive_open; adding 2^64-1 subtracts one.
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(count, u64::MAX) };
    }
}

fn read_addrs(ctx: &TracePointContext, ev: &mut RawEvent) -> Result<(), i32> {
    ev.family = read_ctx(ctx, tp::FAMILY)?;
    ev.sport = read_ctx(ctx, tp::SPORT)?;
    ev.dport = read_ctx(ctx, tp::DPORT)?;
    if ev.family == AF_INET {
        let s = read_ctx_addr4(ctx, tp::SADDR)?;
        let d = read_ctx_addr4(ctx, tp::DADDR)?;
        ev.saddr[..4].copy_from_slice(&s);
        ev.daddr[..4].copy_from_slice(&d);
    } else {
        ev.saddr = read_ctx_addr16(ctx, tp::SADDR_V6)?;
        ev.daddr = read_ctx_addr16(ctx, tp::DADDR_V6)?;
    }
    Ok(())
}

fn on_close(ctx: &TracePointContext, sk: u64, old: i32) -> Result<(), i32> {
    let Some(p) = SOCKS.get_ptr(sk) else {
        bump(STAT_UNTRACKED_CLOSE);
        return Ok(());
    };
    // SAFETY: map value pointer from a successful lookup; copied out before
    // the entry is removed.
    let info = unsafe { *p };
    let _ = SOCKS.remove(sk);
    if info.flags & FLAG_INBOUND != 0 {
        inbound_gone();
    }
    let o = offsets();
    let now = bpf_ktime_now();
    // Who closed first shows in the state CLOSE comes from, so the FIN_WAIT1
    // and CLOSE_WAIT transitions need no map update: FIN_WAIT1/FIN_WAIT2/
    // CLOSING (→ TIME_WAIT) mean this side sent the first FIN; LAST_ACK and
    // CLOSE_WAIT mean the peer did.
    //
    // An RST that ends a FIN_WAIT/CLOSING socket (the peer closed with
    // SO_LINGER 0) leaves no TIME_WAIT behind: tcp_reset() sets sk_err
    // (ECONNRESET) before CLOSE, a graceful end leaves it 0. Such a close
    // is not reported as local, so no TIME_WAIT is counted for it.
    let closed_by = match old {
        TCP_FIN_WAIT1 | TCP_FIN_WAIT2 | TCP_CLOSING => {
            if read_kernel::<i32>(sk, o.sock_sk_err).unwrap_or(0) != 0 {
                0
            } else {
                FLAG_LOCAL_CLOSE
            }
        }
        TCP_CLOSE_WAIT | TCP_LAST_ACK => FLAG_PEER_CLOSE,
        _ => 0,
    };
    let mut ev = RawEvent {
        kind: KIND_CLOSE,
        flags: info.flags | closed_by,
        start_ns: info.start_ns,
        end_ns: now,
        handshake_ns: info.handshake_ns,
        cgroup_id: info.cgroup_id,
        netns: info.netns,
        pid: info.pid,
        tid: info.tid,
        syn_retrans: info.syn_retrans.min(u16::MAX as u32) as u16,
        comm: info.comm,
        pcomm: info.pcomm,
        ..RawEvent::default()
    };
    read_addrs(ctx, &mut ev)?;
    let established = info.flags & FLAG_ESTABLISHED != 0;

    if !established {
        let err: i32 = read_kernel(sk, o.sock_sk_err).unwrap_or(0);
        // tcp_v4/v6_connect() set SYN_SENT before picking the source port;
        // if that fails they go straight back to CLOSE, still inside the
        // caller's connect(), with no socket error: no free port (sport
        // still 0: exhaustion) or, for a port bound before, its 4-tuple
        // taken (EADDRNOTAVAIL too). connect()'s exit reports it once,
        // with its real errno.
        if old == TCP_SYN_SENT && err == 0 && info.flags & FLAG_HAS_TASK != 0 {
            let tid = bpf_get_current_pid_tgid() as u32;
            if tid == info.tid
                && let Some(c) = connect_of(tid)
                && c.sk == sk
            {
                let f = if ev.sport == 0 {
                    FLAG_PORT_EXHAUSTED
                } else {
                    info.flags & FLAG_BOUND_PORT
                };
                c.flags |= CONNECT_FAILED_IN_CALL | f;
                return Ok(());
            }
        }
        if old == TCP_SYN_SENT && ev.sport == 0 {
            // No free port outside any connect() (io_uring, in-kernel
            // users): report it here.
            ev.kind = KIND_CONNECT_ERROR;
            ev.flags = FLAG_PORT_EXHAUSTED | FLAG_SAW_SYN_SENT | (info.flags & FLAG_HAS_TASK);
            ev.errno = EADDRNOTAVAIL;
            emit(&ev);
            return Ok(());
        }
        // Failed handshake (refused, reset, timed out): sk_err says which.
        ev.errno = err.unsigned_abs();
        if info.flags & FLAG_HAS_TASK != 0 {
            if let Some(c) = connect_of(info.tid)
                && c.sk == sk
            {
                // A connect() on this socket is still running: this is its
                // one report. (The thread may be inside a connect() on
                // another socket, a non-blocking event loop's: that one is
                // not touched.)
                c.flags |= CONNECT_REPORTED;
            }
            // The application's next connect() on this socket returns this
            // error again (a non-blocking connect() has returned, or is
            // about to return EINPROGRESS): that is not a second failure.
            // A blocking connect() that returns the error itself removes it.
            if err != 0 {
                let _ = FAILED_SOCKS.insert(sk, &ev.errno, BPF_ANY as u64);
            }
        }
    } else if let Some((acked, received)) = sock_bytes(sk, &o) {
        ev.bytes_sent = acked;
        ev.bytes_received = received;
        ev.flags |= FLAG_HAS_BYTES;
    }
    emit(&ev);
    Ok(())
}

#[tracepoint]
pub fn tcp_retransmit_skb(ctx: TracePointContext) -> u32 {
    count_error(try_tcp_retransmit_skb(&ctx))
}

/// A retransmission. Only a SYN_SENT socket's count is kept (the SYN is
/// the only segment such a socket sends): one load decides, and data
/// retransmissions of established connections leave at once. The count
/// travels with the connection's close record, so a handshake that never
/// finished says how many SYNs went unanswered. Fires also for a
/// retransmission the kernel could not send (the `err` field of newer
/// kernels): these are attempts.
fn try_tcp_retransmit_skb(ctx: &TracePointContext) -> Result<(), i32> {
    if read_ctx::<i32>(ctx, tp::RETRANS_STATE)? != TCP_SYN_SENT {
        return Ok(());
    }
    let sk: u64 = read_ctx(ctx, tp::RETRANS_SKADDR)?;
    if let Some(info) = SOCKS.get_ptr_mut(sk) {
        // SAFETY: map value pointer from a successful lookup. Retransmits
        // of one socket run under its lock, so no two bumps race.
        unsafe { (*info).syn_retrans += 1 };
    }
    Ok(())
}

#[tracepoint]
pub fn sys_enter_connect(ctx: TracePointContext) -> u32 {
    count_error(try_sys_enter_connect(&ctx))
}

/// Remembers the thread's connect(): when it started and where its
/// sockaddr is. Two loads, two helpers and a write to the thread's slot;
/// the sockaddr itself is read only if connect() fails.
fn try_sys_enter_connect(ctx: &TracePointContext) -> Result<(), i32> {
    let tid = bpf_get_current_pid_tgid() as u32;
    let Some(c) = connect_slot(tid) else {
        return Ok(());
    };
    if c.tid != 0 && c.tid != tid {
        // Another thread (same slot) is inside connect(): it loses its slot.
        bump(STAT_CONNECT_MAP_FULL);
    }
    *c = ConnectInfo {
        start_ns: bpf_ktime_now(),
        uaddr: read_ctx(ctx, tp::CONNECT_USERVADDR)?,
        sk: 0,
        flags: 0,
        fd: read_ctx::<u64>(ctx, tp::CONNECT_FD)? as u32,
        tid,
        _pad: 0,
    };
    Ok(())
}

#[tracepoint]
pub fn sys_exit_connect(ctx: TracePointContext) -> u32 {
    count_error(try_sys_exit_connect(&ctx))
}

fn try_sys_exit_connect(ctx: &TracePointContext) -> Result<(), i32> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    let Some(c) = connect_of(tid) else {
        return Ok(());
    };
    let ret: i64 = read_ctx(ctx, tp::CONNECT_RET)?;
    // Success, a non-blocking connect under way, or a repeated connect() on a
    // socket that is connecting/connected: none of these is a failure, and
    // the slot only has to be freed.
    //
    // A signal that interrupted a blocking connect() (EINTR, or a restart
    // code) is no failure either: the handshake goes on, and if the
    // application abandons it, the socket's close reports that.
    if ret >= 0
        || ret == -EINPROGRESS
        || ret == -EALREADY
        || ret == -EISCONN
        || ret == -EINTR
        || (-ERESTART_RESTARTBLOCK..=-ERESTARTSYS).contains(&ret)
    {
        c.tid = 0;
        return Ok(());
    }
    let info = *c;
    c.tid = 0;
    if info.flags & CONNECT_REPORTED != 0 {
        // This call returned the error its socket's close reported: no
        // later connect() will return it again.
        let _ = FAILED_SOCKS.remove(&info.sk);
        return Ok(());
    }
    if ret == -EBADF || ret == -ENOTSOCK {
        return Ok(());
    }
    let o = offsets();
    let errno = (-ret) as u32;
    // Without a SYN_SENT in this call the socket may not be TCP at all (a
    // resolver's UDP socket, getaddrinfo's probes): look at its type. A
    // TCP socket may be one whose failure its close already reported: the
    // application's connect() after a failed non-blocking one returns that
    // error again (or ECONNABORTED once SO_ERROR has read it).
    if info.flags & FLAG_SAW_SYN_SENT == 0
        && let Some((tcp, sk)) = tcp_sock_of_fd(&o, info.fd)
    {
        if !tcp {
            return Ok(());
        }
        // SAFETY: the value is copied out at once; a concurrent delete of
        // this LRU entry can at worst give a stale errno, which is compared.
        if let Some(&reported) = unsafe { FAILED_SOCKS.get(&sk) }
            && (reported == errno || errno == ECONNABORTED)
        {
            let _ = FAILED_SOCKS.remove(&sk);
            return Ok(());
        }
    }
    // sockaddr_in and sockaddr_in6 start alike: family (2 bytes), port
    // (network order), then the IPv4 address or the IPv6 flowinfo. One read
    // of those 8 bytes; IPv6 needs a second for the address at 8. A bad
    // pointer (connect() failed with EFAULT) is an error, counted.
    // SAFETY: bpf_probe_read_user copes with any user address.
    let head: [u8; 8] = unsafe { bpf_probe_read_user(info.uaddr as *const [u8; 8])? };
    let family = u16::from_ne_bytes([head[0], head[1]]);
    let mut daddr = [0u8; 16];
    match family {
        AF_INET => daddr[..4].copy_from_slice(&head[4..8]),
        AF_INET6 => {
            // SAFETY: as above.
            daddr = unsafe { bpf_probe_read_user((info.uaddr + 8) as *const [u8; 16])? };
        }
        // Unix, netlink, ...: not portwatch's business.
        _ => return Ok(()),
    }
    let mut flags = FLAG_HAS_TASK | (info.flags & FLAG_SAW_SYN_SENT);
    if errno == EADDRNOTAVAIL && info.flags & FLAG_PORT_EXHAUSTED != 0 {
        flags |= FLAG_PORT_EXHAUSTED;
    }
    if info.flags & CONNECT_FAILED_IN_CALL != 0 {
        flags |= info.flags & FLAG_BOUND_PORT;
    }
    let comm = bpf_get_current_comm().unwrap_or([0; 16]);
    let ev = RawEvent {
        kind: KIND_CONNECT_ERROR,
        flags,
        start_ns: info.start_ns,
        end_ns: bpf_ktime_now(),
        // SAFETY: no arguments; reads the current task's cgroup.
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        netns: task_netns(&o),
        pid: (pid_tgid >> 32) as u32,
        tid,
        errno,
        family,
        dport: u16::from_be_bytes([head[2], head[3]]),
        daddr,
        pcomm: process_comm(&o, pid_tgid, &comm),
        comm,
        ..RawEvent::default()
    };
    emit(&ev);
    Ok(())
}

#[tracepoint]
pub fn sys_enter_bind(ctx: TracePointContext) -> u32 {
    count_error(try_sys_enter_bind(&ctx))
}

/// Remembers the thread's bind(). bind() is rare (not per connection for
/// most clients), so this is off the hot path; the socket's type is looked
/// at only if bind() fails.
fn try_sys_enter_bind(ctx: &TracePointContext) -> Result<(), i32> {
    let info = BindInfo {
        start_ns: bpf_ktime_now(),
        uaddr: read_ctx(ctx, tp::BIND_UMYADDR)?,
        fd: read_ctx::<u64>(ctx, tp::BIND_FD)? as u32,
        _pad: 0,
    };
    let tid = bpf_get_current_pid_tgid() as u32;
    if BINDS.insert(tid, &info, BPF_ANY as u64).is_err() {
        bump(STAT_CONNECT_MAP_FULL);
    }
    Ok(())
}

#[tracepoint]
pub fn sys_exit_bind(ctx: TracePointContext) -> u32 {
    count_error(try_sys_exit_bind(&ctx))
}

fn try_sys_exit_bind(ctx: &TracePointContext) -> Result<(), i32> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    let ret: i64 = read_ctx(ctx, tp::BIND_RET)?;
    if ret >= 0 || ret == -EBADF || ret == -ENOTSOCK || ret == -EFAULT {
        let _ = BINDS.remove(tid);
        return Ok(());
    }
    let Some(p) = BINDS.get_ptr(tid) else {
        return Ok(());
    };
    // SAFETY: map value pointer from a successful lookup; copied before removal.
    let info = unsafe { *p };
    let _ = BINDS.remove(tid);
    let o = offsets();
    // Only TCP sockets' ports are portwatch's business; without BTF the
    // type is unknown and nothing is reported (UDP binds fail too).
    match tcp_sock_of_fd(&o, info.fd) {
        Some((true, _)) => {}
        _ => return Ok(()),
    }
    // As in connect(): family, port, then the IPv4 address; IPv6 at 8.
    // SAFETY: bpf_probe_read_user copes with any user address.
    let head: [u8; 8] = unsafe { bpf_probe_read_user(info.uaddr as *const [u8; 8])? };
    let family = u16::from_ne_bytes([head[0], head[1]]);
    let mut saddr = [0u8; 16];
    match family {
        AF_INET => saddr[..4].copy_from_slice(&head[4..8]),
        AF_INET6 => {
            // SAFETY: as above.
            saddr = unsafe { bpf_probe_read_user((info.uaddr + 8) as *const [u8; 16])? };
        }
        _ => return Ok(()),
    }
    let comm = bpf_get_current_comm().unwrap_or([0; 16]);
    let ev = RawEvent {
        kind: KIND_BIND_ERROR,
        flags: FLAG_HAS_TASK,
        start_ns: info.start_ns,
        end_ns: bpf_ktime_now(),
        // SAFETY: no arguments; reads the current task's cgroup.
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        netns: task_netns(&o),
        pid: (pid_tgid >> 32) as u32,
        tid,
        errno: (-ret) as u32,
        family,
        sport: u16::from_be_bytes([head[2], head[3]]),
        saddr,
        pcomm: process_comm(&o, pid_tgid, &comm),
        comm,
        ..RawEvent::default()
    };
    emit(&ev);
    Ok(())
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// GPL-compatible licence: bpf_probe_read_kernel and friends require it.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
