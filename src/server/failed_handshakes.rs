//! Failed handshakes per peer address: after `HANDSHAKE_FAILURES_MAX` refused credentials
//! within `HANDSHAKE_FAILURES_WINDOW_MS`, further HELLOs from that address get RATE_LIMITED
//! until the window ends, so credentials cannot be guessed at network speed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use taskforge_protocol::limits::{HANDSHAKE_FAILURES_MAX, HANDSHAKE_FAILURES_WINDOW_MS};

/// Most addresses remembered; beyond it, expired windows are dropped first, then the
/// table is cleared (a flood of distinct addresses must not grow memory without bound).
pub const TRACKED_PEERS_MAX: usize = 100_000;

/// Failure counts per address, each for its current window.
#[derive(Debug, Default)]
pub(crate) struct FailedHandshakes {
    /// Address → (failures, start of the window).
    peers: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

fn window() -> Duration {
    Duration::from_millis(HANDSHAKE_FAILURES_WINDOW_MS)
}

impl FailedHandshakes {
    /// How long `peer` must wait, if it is over the limit now.
    pub(crate) fn wait_for(&self, peer: IpAddr, now: Instant) -> Option<Duration> {
        let peers = self
            .peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (failures, started) = peers.get(&peer)?;
        let ends = *started + window();
        (*failures >= HANDSHAKE_FAILURES_MAX && now < ends).then(|| ends - now)
    }

    /// Counts one refused handshake from `peer`.
    pub(crate) fn record(&self, peer: IpAddr, now: Instant) {
        let mut peers = self
            .peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if peers.len() >= TRACKED_PEERS_MAX {
            peers.retain(|_, (_, started)| now < *started + window());
            if peers.len() >= TRACKED_PEERS_MAX {
                peers.clear();
            }
        }
        let entry = peers.entry(peer).or_insert((0, now));
        if now >= entry.1 + window() {
            *entry = (0, now);
        }
        entry.0 += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_applies_per_address_for_one_window() {
        let limiter = FailedHandshakes::default();
        let attacker: IpAddr = "10.0.0.1".parse().expect("ip");
        let bystander: IpAddr = "10.0.0.2".parse().expect("ip");
        let start = Instant::now();
        for _ in 0..HANDSHAKE_FAILURES_MAX {
            assert!(limiter.wait_for(attacker, start).is_none());
            limiter.record(attacker, start);
        }
        assert!(limiter.wait_for(attacker, start).is_some());
        assert!(limiter.wait_for(bystander, start).is_none());
        assert!(
            limiter.wait_for(attacker, start + window()).is_none(),
            "the window ends"
        );
    }
}
