//! Off-host exhaustion: which destinations sit behind a NAT gateway, and
//! how many of its ports they need.
//!
//! A NAT gateway (cloud NAT, a masquerading router) maps each connection to
//! one of its own ports, per public address and destination, and keeps the
//! mapping for a while after the connection closes (its own TIME_WAIT-like
//! hold). So what a destination needs there is
//!
//! ```text
//! NAT port demand = new connections/s × (mean lifetime + NAT hold)
//! ```
//!
//! which the user compares with the gateway's limit (AWS NAT gateway:
//! 55,000 connections per public address and destination; GCP Cloud NAT:
//! 64,512 ports per NAT address, of which a VM gets `min-ports-per-vm`,
//! 64 by default; Azure NAT gateway: 64,512 per public address).
//!
//! **Which destinations count.** Everything except the host's own
//! networks: loopback, link-local (169.254/16, fe80::/10), multicast,
//! unspecified, and any address inside the network of an interface of the
//! destination's namespace or of the host's (address and prefix as
//! getifaddrs gives them: the host's own addresses, directly connected
//! subnets such as the VPC subnet or a node's pod bridge). A destination
//! in a directly connected subnet is reached without a router, so no
//! gateway translates it. Anything else may be routed through a NAT; the
//! figure is shown for it, and it is the user who knows whether a NAT is
//! on the way. Without the networks of the namespace (a trace recorded
//! before format 1.3) nothing is judged: the fields are null.

use std::net::IpAddr;

/// Default seconds a NAT gateway keeps a mapping after the connection
/// closed (`--nat-hold-s`).
pub const DEFAULT_NAT_HOLD_S: f64 = 120.0;
/// Default gateway ports per public address and destination
/// (`--nat-port-limit`): AWS NAT gateway's 55,000.
pub const DEFAULT_NAT_PORT_LIMIT: u64 = 55_000;
/// Share of the limit at which the demand is "high".
pub const NAT_DEMAND_HIGH: f64 = 0.5;

/// `addr` is in `net/len`.
fn in_net(addr: IpAddr, net: IpAddr, len: u8) -> bool {
    match (addr, net.to_canonical()) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let len = u32::from(len.min(32));
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let len = u32::from(len.min(128));
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

fn link_local(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(v) => v.is_link_local(),
        IpAddr::V6(v) => v.segments()[0] & 0xffc0 == 0xfe80,
    }
}

/// Whether `addr` lies beyond the host's own networks (see the module
/// docs): `None` when no networks are known to judge by.
pub fn beyond_local_networks<'a>(
    addr: IpAddr,
    nets: impl IntoIterator<Item = &'a (IpAddr, u8)>,
) -> Option<bool> {
    let a = addr.to_canonical();
    let mut nets = nets.into_iter().peekable();
    nets.peek()?;
    if a.is_loopback() || a.is_multicast() || a.is_unspecified() || link_local(a) {
        return Some(false);
    }
    Some(!nets.any(|&(n, len)| in_net(a, n, len)))
}

/// Gateway ports a destination needs in steady state: every connection
/// holds one for its lifetime plus the gateway's hold.
pub fn port_demand(new_per_s: f64, mean_lifetime_s: f64, hold_s: f64) -> f64 {
    new_per_s * (mean_lifetime_s + hold_s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets() -> Vec<(IpAddr, u8)> {
        vec![
            ("127.0.0.1".parse().unwrap(), 8),
            ("10.0.1.5".parse().unwrap(), 24),
            ("fd00:1::5".parse().unwrap(), 64),
        ]
    }

    fn beyond(a: &str) -> Option<bool> {
        beyond_local_networks(a.parse().unwrap(), &nets())
    }

    #[test]
    fn the_hosts_own_networks_are_not_behind_a_nat() {
        assert_eq!(beyond("10.0.1.200"), Some(false), "connected subnet");
        assert_eq!(beyond("10.0.1.5"), Some(false), "own address");
        assert_eq!(beyond("127.0.0.1"), Some(false));
        assert_eq!(beyond("::1"), Some(false));
        assert_eq!(beyond("169.254.169.254"), Some(false), "link-local");
        assert_eq!(beyond("fe80::1"), Some(false));
        assert_eq!(beyond("fd00:1::99"), Some(false));
        assert_eq!(beyond("::ffff:10.0.1.7"), Some(false), "v4-mapped");
    }

    #[test]
    fn other_addresses_are_beyond_them() {
        assert_eq!(beyond("10.0.2.1"), Some(true), "another subnet");
        assert_eq!(beyond("203.0.113.9"), Some(true));
        assert_eq!(beyond("::ffff:203.0.113.9"), Some(true));
        assert_eq!(beyond("2001:db8::1"), Some(true));
    }

    #[test]
    fn without_networks_nothing_is_judged() {
        assert_eq!(
            beyond_local_networks("203.0.113.9".parse().unwrap(), &[]),
            None
        );
    }

    #[test]
    fn a_default_route_prefix_covers_everything() {
        let all = [("0.0.0.0".parse().unwrap(), 0u8)];
        assert_eq!(
            beyond_local_networks("203.0.113.9".parse().unwrap(), &all),
            Some(false)
        );
    }

    #[test]
    fn demand_is_rate_times_lifetime_plus_hold() {
        assert_eq!(port_demand(500.0, 0.2, 120.0), 60_100.0);
        assert_eq!(port_demand(0.0, 5.0, 120.0), 0.0);
    }
}
