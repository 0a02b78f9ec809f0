//! Names of the errnos a TCP connect can fail with. libc has messages
//! (strerror) but no symbolic names, and users grep for the names.

/// Symbolic name of `errno`, e.g. 99 → "EADDRNOTAVAIL"; unknown ones as "E<n>".
pub fn name(errno: i32) -> String {
    let s = match errno {
        // Not an errno: a handshake the application gave up on (see
        // `event::ERRNO_ABORTED`).
        0 => "aborted",
        1 => "EPERM",
        4 => "EINTR",
        9 => "EBADF",
        11 => "EAGAIN",
        12 => "ENOMEM",
        13 => "EACCES",
        14 => "EFAULT",
        22 => "EINVAL",
        24 => "EMFILE",
        88 => "ENOTSOCK",
        93 => "EPROTONOSUPPORT",
        97 => "EAFNOSUPPORT",
        98 => "EADDRINUSE",
        99 => "EADDRNOTAVAIL",
        100 => "ENETDOWN",
        101 => "ENETUNREACH",
        103 => "ECONNABORTED",
        104 => "ECONNRESET",
        105 => "ENOBUFS",
        106 => "EISCONN",
        110 => "ETIMEDOUT",
        111 => "ECONNREFUSED",
        112 => "EHOSTDOWN",
        113 => "EHOSTUNREACH",
        114 => "EALREADY",
        115 => "EINPROGRESS",
        125 => "ECANCELED",
        _ => return format!("E{errno}"),
    };
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_network_errnos() {
        assert_eq!(name(99), "EADDRNOTAVAIL");
        assert_eq!(name(111), "ECONNREFUSED");
        assert_eq!(name(4242), "E4242");
    }
}
