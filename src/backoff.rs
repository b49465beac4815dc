//! The one retry-timing policy: capped exponential backoff with jitter.
//!
//! Every retry in kafka-esm (failed invokes, unreachable brokers, failed commits, DynamoDB
//! errors) waits through a [`Backoff`], so no error path can become a busy loop.

use std::time::Duration;

/// Capped exponential backoff with "equal jitter": the n-th delay is uniformly drawn from
/// `[d/2, d]` where `d = min(cap, base * 2^n)`. The lower half-bound keeps a floor under every
/// retry; the jitter keeps many partitions that failed together from retrying in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    pub const fn new(base: Duration, cap: Duration) -> Self {
        Self { base, cap, attempt: 0 }
    }

    /// The delay before the next retry; each call doubles the ceiling up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self
            .base
            .checked_mul(1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX))
            .map_or(self.cap, |d| d.min(self.cap));
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        let jitter_ns = u64::try_from((ceiling - half).as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(fastrand::u64(0..=jitter_ns))
    }

    /// How many delays have been handed out since the last reset.
    pub const fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Back to the base delay, after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_within_jitter_bounds_and_stop_at_the_cap() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(5);
        let mut backoff = Backoff::new(base, cap);
        for n in 0..40u32 {
            let ceiling = (base * 2u32.saturating_pow(n.min(20))).min(cap);
            let d = backoff.next_delay();
            assert!(d >= ceiling / 2 && d <= ceiling, "attempt {n}: {d:?} outside [{:?}, {ceiling:?}]", ceiling / 2);
        }
        assert_eq!(backoff.attempts(), 40);
        backoff.reset();
        assert!(backoff.next_delay() <= base);
    }

    #[test]
    fn jitter_spreads_retries() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(1));
            seen.insert(b.next_delay());
        }
        assert!(seen.len() > 10, "delays are not jittered: {seen:?}");
    }
}
