//! What the engine is told once: table sizes, idle timeout, verdict
//! thresholds.

/// Thresholds of the "lacks_pooling" verdict. Defaults are documented on
/// the CLI flags of `portwatch top`.
#[derive(Clone, Debug, PartialEq)]
pub struct VerdictConfig {
    /// New connections per second (10 s window) a pair must sustain.
    pub min_new_per_s: f64,
    /// Median connection lifetime at or below which connections count as
    /// "one per request".
    pub max_lifetime_p50_ms: f64,
    /// Seconds out of the last 10 with new connections: below this it is a
    /// burst, not a habit.
    pub min_active_s: u32,
    /// Seconds a NAT gateway keeps a port after the connection closed
    /// (NAT port demand, see `engine::nat`).
    pub nat_hold_s: f64,
    /// The gateway's ports per public address and destination: demand at
    /// half of it is "high" (advice `nat_port_demand`).
    pub nat_port_limit: u64,
    /// `leaks_sockets`: CLOSE_WAIT sockets one process must hold, each for
    /// at least `leak_min_age_s`.
    pub leak_min_close_wait: u64,
    pub leak_min_age_s: u64,
}

impl Default for VerdictConfig {
    fn default() -> Self {
        VerdictConfig {
            min_new_per_s: 5.0,
            max_lifetime_p50_ms: 1000.0,
            min_active_s: 5,
            nat_hold_s: super::nat::DEFAULT_NAT_HOLD_S,
            nat_port_limit: super::nat::DEFAULT_NAT_PORT_LIMIT,
            leak_min_close_wait: 10,
            leak_min_age_s: 10,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Keys per table (processes, services, destinations, pairs, inbound);
    /// beyond it new keys are folded into "others".
    pub max_keys: usize,
    /// Keys without activity for this long are dropped. Longer than
    /// TIME_WAIT so a key is not dropped while it still holds ports.
    pub idle_timeout_s: u64,
    pub verdict: VerdictConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_keys: 4096,
            idle_timeout_s: 300,
            verdict: VerdictConfig::default(),
        }
    }
}
