//! Retry delays: exponential growth with a cap and random spread.

use taskforge_protocol::Backoff;

/// The delay before the retry that follows attempt `attempt` (1-based), given a uniform
/// random `spread` in [-1, 1]:
/// `min(max_ms, initial_ms × (factor_percent/100)^(attempt-1)) × (1 + spread × jitter)`.
pub fn retry_delay_ms(backoff: &Backoff, attempt: u32, spread: f64) -> u64 {
    let growth = f64::from(backoff.factor_percent) / 100.0;
    let exponent = attempt.saturating_sub(1).min(1_000) as i32;
    let base_ms =
        (f64::from(backoff.initial_ms) * growth.powi(exponent)).min(f64::from(backoff.max_ms));
    let jitter = f64::from(backoff.jitter_percent.min(100)) / 100.0;
    let spread = spread.clamp(-1.0, 1.0);
    (base_ms * (1.0 + spread * jitter)).max(0.0).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKOFF: Backoff = Backoff {
        initial_ms: 1_000,
        factor_percent: 200,
        max_ms: 10_000,
        jitter_percent: 20,
    };

    #[test]
    fn grows_exponentially_up_to_the_cap() {
        let delays: Vec<u64> = (1..=6)
            .map(|attempt| retry_delay_ms(&BACKOFF, attempt, 0.0))
            .collect();
        assert_eq!(delays, vec![1_000, 2_000, 4_000, 8_000, 10_000, 10_000]);
    }

    #[test]
    fn jitter_stays_within_its_percentage() {
        assert_eq!(retry_delay_ms(&BACKOFF, 1, 1.0), 1_200);
        assert_eq!(retry_delay_ms(&BACKOFF, 1, -1.0), 800);
        assert_eq!(retry_delay_ms(&BACKOFF, u32::MAX, 0.0), 10_000);
    }
}
