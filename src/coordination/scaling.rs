//! Scale out and in: a pure decision over the lag the pollers report with their heartbeats.
//!
//! - The live poller with the lowest id starts one more poller when the pollers' summed lag has
//!   grown over a whole scale window (never drained in between), and starts pollers at once while
//!   fewer than `MinimumPollers` run — never more than the cap (partitions, the mappings'
//!   `MaximumPollers`, `ESM_MAX_POLLERS`), and at most one start per half window.
//! - The live poller with the highest id stops when there has been no lag for a whole window,
//!   more pollers run than the minimum, and it has run for a window itself. A poller that stops
//!   this way does not start a successor.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// What the scaling rules see at one scan.
#[derive(Debug, Clone)]
pub struct ScaleInput<'a> {
    pub now: Instant,
    pub me: &'a str,
    /// Active (live, not stopping) pollers' ids, this one included.
    pub active: &'a [&'a str],
    /// Their summed lag.
    pub total_lag: u64,
    /// The largest `MinimumPollers` of the consumed mappings (0 when there are none).
    pub minimum: usize,
    /// Most pollers the work can use.
    pub cap: usize,
    /// This poller may start others (a Lambda with `ESM_POLLER_FUNCTION`).
    pub can_spawn: bool,
    /// This poller may stop when idle (a Lambda).
    pub can_scale_in: bool,
    /// Leases this poller holds.
    pub held: usize,
}

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleDecision {
    Stay,
    /// Start `count` more pollers.
    Spawn {
        count: usize,
        reason: &'static str,
    },
    /// Stop this poller: idle beyond the minimum.
    StopIdle,
}

/// The lag history and timing one poller keeps for its decisions.
#[derive(Debug, Clone)]
pub struct Scaling {
    window: Duration,
    started: Instant,
    /// (when, total lag), newest last.
    history: VecDeque<(Instant, u64)>,
    last_spawn: Option<Instant>,
}

impl Scaling {
    pub fn new(window: Duration, started: Instant) -> Self {
        Self { window, started, history: VecDeque::new(), last_spawn: None }
    }

    /// Records the scan and decides.
    pub fn decide(&mut self, input: &ScaleInput<'_>) -> ScaleDecision {
        let now = input.now;
        self.history.push_back((now, input.total_lag));
        while self.history.len() > 2
            && self.history.get(1).is_some_and(|(at, _)| now.duration_since(*at) >= self.window)
        {
            self.history.pop_front();
        }
        let window_full = self.history.front().is_some_and(|(at, _)| now.duration_since(*at) >= self.window);
        let active = input.active.len();
        let leader = input.active.iter().min().is_none_or(|lowest| *lowest == input.me);
        let spawn_allowed =
            self.last_spawn.is_none_or(|at| now.duration_since(at) >= self.window.min(Duration::from_secs(30)));
        if input.can_spawn && leader && spawn_allowed {
            // More records waiting now than a whole window ago, and never drained in between.
            let growing = window_full
                && self.history.iter().all(|(_, lag)| *lag > 0)
                && self.history.back().map(|(_, l)| *l) > self.history.front().map(|(_, l)| *l);
            let want = if active < input.minimum {
                input.minimum
            } else if growing {
                active + 1
            } else {
                active
            };
            let count = want.min(input.cap).saturating_sub(active);
            if count > 0 {
                self.last_spawn = Some(now);
                let reason = if growing { "scale-out" } else { "minimum-pollers" };
                return ScaleDecision::Spawn { count, reason };
            }
        }
        let idle = window_full && self.history.iter().all(|(_, lag)| *lag == 0);
        let highest = input.active.iter().max().is_some_and(|h| *h == input.me);
        let settled = now.duration_since(self.started) >= self.window;
        if input.can_scale_in && highest && settled && active > input.minimum.max(1) {
            // No lag for a whole window; or more pollers than the work can use and this one
            // holds nothing (it would only wait for its deadline).
            if idle || (input.held == 0 && active > input.cap.max(1)) {
                return ScaleDecision::StopIdle;
            }
        }
        ScaleDecision::Stay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(60);

    fn input<'a>(now: Instant, me: &'a str, active: &'a [&'a str], lag: u64) -> ScaleInput<'a> {
        ScaleInput { now, me, active, total_lag: lag, minimum: 1, cap: 4, can_spawn: true, can_scale_in: true, held: 1 }
    }

    #[tokio::test(start_paused = true)]
    async fn growing_lag_over_a_window_starts_one_more_then_waits() {
        let t0 = Instant::now();
        let mut s = Scaling::new(WINDOW, t0);
        let active = ["a", "b"];
        for (i, lag) in [100, 200, 300].into_iter().enumerate() {
            let at = t0 + Duration::from_secs(30 * i as u64);
            let d = s.decide(&input(at, "a", &active, lag));
            if i < 2 {
                assert_eq!(d, ScaleDecision::Stay, "window not full at {i}");
            } else {
                assert_eq!(d, ScaleDecision::Spawn { count: 1, reason: "scale-out" });
            }
        }
        // Not again within half a window, and never by a non-leader.
        assert_eq!(s.decide(&input(t0 + Duration::from_secs(70), "a", &active, 400)), ScaleDecision::Stay);
        let mut b = Scaling::new(WINDOW, t0);
        for i in 0..4u64 {
            assert_eq!(
                b.decide(&input(t0 + Duration::from_secs(30 * i), "b", &active, 100 * (i + 1))),
                ScaleDecision::Stay
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn minimum_pollers_start_at_once_within_the_cap() {
        let t0 = Instant::now();
        let mut s = Scaling::new(WINDOW, t0);
        let active = ["a"];
        let d = s.decide(&ScaleInput { minimum: 10, ..input(t0, "a", &active, 0) });
        assert_eq!(d, ScaleDecision::Spawn { count: 3, reason: "minimum-pollers" }, "capped at 4 pollers");
    }

    #[tokio::test(start_paused = true)]
    async fn the_highest_id_stops_after_an_idle_window_beyond_the_minimum() {
        let t0 = Instant::now();
        let active = ["a", "b"];
        let mut b = Scaling::new(WINDOW, t0);
        assert_eq!(b.decide(&input(t0, "b", &active, 0)), ScaleDecision::Stay);
        assert_eq!(b.decide(&input(t0 + WINDOW, "b", &active, 0)), ScaleDecision::StopIdle);
        let mut a = Scaling::new(WINDOW, t0);
        a.decide(&input(t0, "a", &active, 0));
        assert_eq!(a.decide(&input(t0 + WINDOW, "a", &active, 0)), ScaleDecision::Stay, "not the highest id");
        // Any lag in the window keeps it.
        let mut b = Scaling::new(WINDOW, t0);
        b.decide(&input(t0, "b", &active, 0));
        b.decide(&input(t0 + Duration::from_secs(30), "b", &active, 5));
        assert_eq!(b.decide(&input(t0 + WINDOW, "b", &active, 0)), ScaleDecision::Stay);
        // Never below the minimum.
        let mut b = Scaling::new(WINDOW, t0);
        b.decide(&ScaleInput { minimum: 2, ..input(t0, "b", &active, 0) });
        assert_eq!(b.decide(&ScaleInput { minimum: 2, ..input(t0 + WINDOW, "b", &active, 0) }), ScaleDecision::Stay);
    }

    #[tokio::test(start_paused = true)]
    async fn a_surplus_poller_holding_nothing_stops_even_while_others_lag() {
        let t0 = Instant::now();
        let active = ["a", "b", "c"];
        let mut c = Scaling::new(WINDOW, t0);
        let surplus = |at, held| ScaleInput { cap: 2, held, ..input(at, "c", &active, 500) };
        assert_eq!(c.decide(&surplus(t0, 0)), ScaleDecision::Stay, "not before it ran a window");
        assert_eq!(c.decide(&surplus(t0 + WINDOW, 1)), ScaleDecision::Stay, "it holds a partition");
        assert_eq!(c.decide(&surplus(t0 + WINDOW, 0)), ScaleDecision::StopIdle);
    }
}
