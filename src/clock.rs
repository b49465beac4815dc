//! Time as a parameter: every rule that depends on time (lease guards, heartbeats, liveness,
//! scaling windows, `LastModified`) reads it from a [`Clock`], so tests drive it.
//!
//! Two kinds of time are kept apart. *Monotonic* time ([`Clock::now`], tokio's `Instant`) decides
//! everything a poller concludes on its own: when its guard lapses, when another poller's
//! heartbeat has been silent long enough. *Wall* time ([`Clock::epoch_ms`]) is only written for
//! people and other tools (`ExpiresAtMs`, `LastModified`) and never compared across machines.
//! Because the monotonic side is tokio's clock, `tokio::time::pause()` and `advance()` move it in
//! tests; [`ManualClock`] ties wall time to it and can skew it.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// Where time comes from.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// Monotonic time (tokio's, so paused tests control it).
    fn now(&self) -> Instant {
        Instant::now()
    }

    /// Milliseconds since the Unix epoch on this machine's wall clock.
    fn epoch_ms(&self) -> i64;

    /// Seconds since the Unix epoch, fractional, as the Lambda API writes timestamps.
    fn epoch_seconds(&self) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let ms = self.epoch_ms() as f64;
        ms / 1000.0
    }
}

/// The machine's clocks.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn epoch_ms(&self) -> i64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// `LastModified` for a write made now: fractional epoch seconds, millisecond precision, as AWS.
pub fn now_epoch_seconds() -> f64 {
    SystemClock.epoch_seconds()
}

/// A clock for tests: wall time advances with tokio's (paused) clock from a fixed start, plus a
/// skew that can be set to simulate a machine whose wall clock is off.
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    start_epoch_ms: i64,
    skew_ms: AtomicI64,
}

impl ManualClock {
    /// Starts at `epoch_ms` now.
    pub fn starting_at(epoch_ms: i64) -> Self {
        Self { start: Instant::now(), start_epoch_ms: epoch_ms, skew_ms: AtomicI64::new(0) }
    }

    /// Shifts this clock's wall time by `ms` (positive: ahead) from now on.
    pub fn set_skew_ms(&self, ms: i64) {
        self.skew_ms.store(ms, Ordering::Relaxed);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::starting_at(1_767_225_600_000) // 2026-01-01T00:00:00Z
    }
}

impl Clock for ManualClock {
    fn epoch_ms(&self) -> i64 {
        let elapsed = i64::try_from(Instant::now().duration_since(self.start).as_millis()).unwrap_or(i64::MAX);
        self.start_epoch_ms.saturating_add(elapsed).saturating_add(self.skew_ms.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn manual_wall_time_follows_paused_tokio_time_and_skews() {
        let clock = ManualClock::starting_at(1_000);
        let before = clock.now();
        tokio::time::advance(Duration::from_millis(2_500)).await;
        assert_eq!(clock.epoch_ms(), 3_500);
        assert_eq!(clock.now().duration_since(before), Duration::from_millis(2_500));
        clock.set_skew_ms(-1_000);
        assert_eq!(clock.epoch_ms(), 2_500);
        assert!((clock.epoch_seconds() - 2.5).abs() < f64::EPSILON);
    }
}
