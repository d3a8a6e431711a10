//! Exponential backoff with full jitter: the delay before attempt n is uniform in
//! [0, min(cap, base * 2^n)], which spreads retries of many workers apart.

use std::time::Duration;

use rand::RngExt;

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub base: Duration,
    pub cap: Duration,
    /// Attempts before an event is given up on (when the store is otherwise healthy).
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { base: Duration::from_millis(50), cap: Duration::from_secs(5), max_attempts: 8 }
    }
}

impl RetryPolicy {
    /// The ceiling of the delay after `attempt` failed attempts (1-based).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.saturating_sub(1)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_from(attempt, &mut rand::rng())
    }

    /// [`RetryPolicy::delay`] with the jitter drawn from `rng`.
    pub fn delay_from(&self, attempt: u32, rng: &mut impl rand::Rng) -> Duration {
        let ceiling = self.ceiling(attempt).as_micros() as u64;
        Duration::from_micros(rng.random_range(0..=ceiling))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_doubles_then_caps() {
        let p = RetryPolicy { base: Duration::from_millis(10), cap: Duration::from_millis(100), max_attempts: 5 };
        let c: Vec<_> = (1..=6).map(|a| p.ceiling(a).as_millis()).collect();
        assert_eq!(c, [10, 20, 40, 80, 100, 100]);
        assert_eq!(p.ceiling(200), Duration::from_millis(100));
    }

    #[test]
    fn delays_are_jittered_within_the_ceiling() {
        let p = RetryPolicy::default();
        let delays: Vec<_> = (0..200).map(|_| p.delay(3)).collect();
        assert!(delays.iter().all(|d| *d <= p.ceiling(3)));
        let distinct: std::collections::HashSet<_> = delays.iter().collect();
        assert!(distinct.len() > 50, "jitter spreads delays: {} distinct", distinct.len());
    }
}
