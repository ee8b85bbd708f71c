//! How a [`crate::client::Client`] connects: identity, timeouts and the reconnect policy.

use std::time::Duration;

use taskforge_protocol::{Credentials, ProjectId};

/// Client name sent in the hello, for the broker's logs.
pub const CLIENT_NAME_DEFAULT: &str = "taskforge-rust";

/// Client version sent in the hello: this crate's version.
pub const CLIENT_VERSION_DEFAULT: &str = env!("CARGO_PKG_VERSION");

/// How long a request may wait for its answer. Generous, because a request queued behind a
/// slow group commit is still healthy; FETCH adds its own long-poll wait on top.
pub const REQUEST_TIMEOUT_MS_DEFAULT: u64 = 30_000;

/// How long the TCP connect plus the handshake may take. The broker's own handshake
/// deadline is about 2 s, so a slower handshake is failing anyway.
pub const CONNECT_TIMEOUT_MS_DEFAULT: u64 = 5_000;

/// Connection attempts one reconnect makes before giving up. With the default backoff the
/// attempts span about 20 s, long enough for a broker restart.
pub const RECONNECT_ATTEMPTS_MAX_DEFAULT: u32 = 10;

/// Pause before the second reconnect attempt; it doubles per attempt.
pub const RECONNECT_BACKOFF_INITIAL_MS_DEFAULT: u64 = 100;

/// Cap on one pause between reconnect attempts.
pub const RECONNECT_BACKOFF_MAX_MS_DEFAULT: u64 = 5_000;

/// Upper bound on any configured attempt count, so a misconfiguration cannot make a call
/// retry for days.
pub const RECONNECT_ATTEMPTS_CEILING: u32 = 1_000;

/// When and how often the client reconnects after losing its connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconnectOptions {
    /// Connection attempts per reconnect (at least 1, at most [`RECONNECT_ATTEMPTS_CEILING`]).
    /// When all fail, the call that needed the connection gets the last attempt's error.
    pub attempts_max: u32,
    /// Pause after the first failed attempt; doubled after each further failure.
    pub backoff_initial: Duration,
    /// Cap on one pause, so a long outage is still probed regularly.
    pub backoff_max: Duration,
}

impl Default for ReconnectOptions {
    fn default() -> ReconnectOptions {
        ReconnectOptions {
            attempts_max: RECONNECT_ATTEMPTS_MAX_DEFAULT,
            backoff_initial: Duration::from_millis(RECONNECT_BACKOFF_INITIAL_MS_DEFAULT),
            backoff_max: Duration::from_millis(RECONNECT_BACKOFF_MAX_MS_DEFAULT),
        }
    }
}

impl ReconnectOptions {
    /// The pause after failed attempt number `attempt` (1-based), before jitter: the
    /// initial pause doubled per earlier failure, capped at `backoff_max`.
    pub fn backoff_for_attempt(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.backoff_initial
            .saturating_mul(1 << doublings)
            .min(self.backoff_max)
    }
}

/// Everything [`crate::client::Client::connect`] needs besides the address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// Who the client is; sent in every hello, including after a reconnect.
    pub credentials: Credentials,
    /// The project to work in (users must name one; API keys may leave it `None`).
    pub project_id: Option<ProjectId>,
    /// Name sent in the hello, for the broker's logs.
    pub client_name: String,
    /// Version sent in the hello, for the broker's logs.
    pub client_version: String,
    /// How long one request waits for its answer; FETCH waits its `wait_ms` plus this.
    pub request_timeout: Duration,
    /// How long one connection attempt (TCP connect plus handshake) may take.
    pub connect_timeout: Duration,
    /// What happens after the connection is lost.
    pub reconnect: ReconnectOptions,
}

impl ClientOptions {
    /// Options with these credentials and every other setting at its default.
    pub fn new(credentials: Credentials) -> ClientOptions {
        ClientOptions {
            credentials,
            project_id: None,
            client_name: CLIENT_NAME_DEFAULT.to_string(),
            client_version: CLIENT_VERSION_DEFAULT.to_string(),
            request_timeout: Duration::from_millis(REQUEST_TIMEOUT_MS_DEFAULT),
            connect_timeout: Duration::from_millis(CONNECT_TIMEOUT_MS_DEFAULT),
            reconnect: ReconnectOptions::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let reconnect = ReconnectOptions {
            attempts_max: 5,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_millis(500),
        };
        let pauses_ms: Vec<u128> = (1..=5)
            .map(|attempt| reconnect.backoff_for_attempt(attempt).as_millis())
            .collect();
        assert_eq!(pauses_ms, [100, 200, 400, 500, 500]);
        assert_eq!(
            reconnect.backoff_for_attempt(u32::MAX),
            Duration::from_millis(500)
        );
    }
}
