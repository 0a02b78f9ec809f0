//! A record the kernel programs could not build is counted, never dropped
//! silently: every `try_*` body's error goes to a per-CPU counter shown as
//! "probe errors" with the other losses. Needs root (see tests/common).

mod common;

use common::*;

/// Bad connect() calls the test makes; the summary must count exactly these.
const BAD_CONNECTS: usize = 3;

/// "..., probe errors: N, ..." of the summary line → N.
fn probe_errors(summary: &str) -> u64 {
    let rest = summary
        .split("probe errors: ")
        .nth(1)
        .unwrap_or_else(|| panic!("no probe errors in {summary}"));
    rest.chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or_else(|e| panic!("probe errors in {summary}: {e}"))
}

#[test]
fn a_connect_whose_address_cannot_be_read_is_counted_as_a_probe_error() {
    if !kernel_tests_enabled() {
        return;
    }
    let ns = Netns::new("pwt-efault", &[]);
    let tracer = Tracer::start(&["trace", "--json", "--netns", &ns.inode.to_string()]);
    let errnos = ns.run(|| {
        (0..BAD_CONNECTS)
            .map(|_| {
                // SAFETY: plain socket syscalls on a descriptor we own and close.
                unsafe {
                    let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
                    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
                    // An address pointer into the unmapped first page: the
                    // kernel refuses it (EFAULT), and so does the probe's
                    // read of the destination when connect() returns.
                    let r = libc::connect(
                        fd,
                        8 as *const libc::sockaddr,
                        size_of::<libc::sockaddr_in>() as libc::socklen_t,
                    );
                    let errno = std::io::Error::last_os_error().raw_os_error();
                    libc::close(fd);
                    assert_eq!(r, -1);
                    errno
                }
            })
            .collect::<Vec<_>>()
    });
    assert_eq!(errnos, vec![Some(libc::EFAULT); BAD_CONNECTS]);
    // The exit tracepoint ran before each connect() returned, and the
    // counters are read when the tracer stops: no waiting needed.
    let (exited_ok, stderr, seen) = tracer.stop();
    assert!(exited_ok, "{stderr:?}");
    let summary = stderr
        .iter()
        .find(|l| l.contains("stopped"))
        .unwrap_or_else(|| panic!("no summary line in {stderr:?}"));
    assert_eq!(probe_errors(summary), BAD_CONNECTS as u64, "{summary}");
    assert!(
        summary.contains(&format!(" {BAD_CONNECTS} lost")),
        "probe errors are losses: {summary}"
    );
    assert!(
        of(&seen, "connect_error", ns.inode).next().is_none(),
        "a connect whose destination is unknown has no event: {seen:#?}"
    );
}
