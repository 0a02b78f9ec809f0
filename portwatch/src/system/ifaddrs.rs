//! The networks of the namespace's interfaces (getifaddrs(3)): each
//! address with its prefix. A destination inside one of them is reached
//! without a router, so no NAT gateway stands between (see
//! `engine::nat`). getifaddrs asks netlink, which answers for the calling
//! thread's network namespace: the netns worker calls it from inside.

use std::net::IpAddr;

use nix::ifaddrs::getifaddrs;

use super::CollectError;

/// Prefix length of a netmask (its leading one bits).
fn prefix_len(mask: IpAddr) -> u8 {
    match mask {
        IpAddr::V4(m) => u32::from(m).leading_ones() as u8,
        IpAddr::V6(m) => u128::from(m).leading_ones() as u8,
    }
}

fn ip_of(s: &nix::sys::socket::SockaddrStorage) -> Option<IpAddr> {
    if let Some(v4) = s.as_sockaddr_in() {
        return Some(IpAddr::V4(v4.ip()));
    }
    s.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
}

/// Every IPv4 and IPv6 interface address with its prefix length, sorted
/// and without duplicates.
pub fn read_networks() -> Result<Vec<(IpAddr, u8)>, CollectError> {
    let addrs = getifaddrs().map_err(|e| CollectError::Netlink(format!("getifaddrs: {e}")))?;
    let mut out: Vec<(IpAddr, u8)> = addrs
        .filter_map(|a| {
            let ip = ip_of(a.address.as_ref()?)?;
            // No netmask (point-to-point oddities): the address alone.
            let len = a.netmask.as_ref().and_then(ip_of).map_or(
                match ip {
                    IpAddr::V4(_) => 32,
                    IpAddr::V6(_) => 128,
                },
                prefix_len,
            );
            Some((ip, len))
        })
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netmasks_become_prefix_lengths() {
        assert_eq!(prefix_len("255.255.255.0".parse().unwrap()), 24);
        assert_eq!(prefix_len("255.0.0.0".parse().unwrap()), 8);
        assert_eq!(prefix_len("0.0.0.0".parse().unwrap()), 0);
        assert_eq!(prefix_len("ffff:ffff:ffff:ffff::".parse().unwrap()), 64);
        assert_eq!(prefix_len("::".parse().unwrap()), 0);
    }

    #[test]
    fn loopback_is_among_this_namespaces_networks() {
        let nets = read_networks().expect("getifaddrs");
        assert!(
            nets.iter().any(|(ip, _)| ip.is_loopback()),
            "no loopback address in {nets:?}"
        );
    }
}
