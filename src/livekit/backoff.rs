//! Restart schedule (pure): capped exponential backoff with jitter, and a restart budget.
//!
//! Jitter is a parameter (`0.0..=1.0`) so the schedule is deterministic in tests.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Capped exponential backoff: `min(cap, base·2ⁿ)`, then "equal jitter" (half fixed, half random).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    pub base: Duration,
    pub cap: Duration,
    /// Uptime after which the attempt counter starts again from zero.
    pub reset_after: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(30),
            reset_after: Duration::from_secs(60),
        }
    }
}

impl BackoffPolicy {
    /// Delay before restart number `attempt` (0-based). `jitter` in `0.0..=1.0`.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let exp = 2u32.saturating_pow(attempt.min(31));
        let raw = self.base.saturating_mul(exp).min(self.cap);
        let j = jitter.clamp(0.0, 1.0);
        raw / 2 + raw.mul_f64(j / 2.0)
    }
}

/// At most `max` restarts within `window`; more means something is badly wrong.
#[derive(Debug, Clone)]
pub struct RestartBudget {
    max: u32,
    window: Duration,
    recent: VecDeque<Instant>,
}

impl RestartBudget {
    pub fn new(max: u32, window: Duration) -> Self {
        Self {
            max,
            window,
            recent: VecDeque::new(),
        }
    }

    /// Record a restart at `now`; false when the budget is exhausted.
    pub fn try_spend(&mut self, now: Instant) -> bool {
        while let Some(first) = self.recent.front() {
            if now.duration_since(*first) >= self.window {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        if self.recent.len() >= self.max as usize {
            return false;
        }
        self.recent.push_back(now);
        true
    }

    /// Restarts inside the window right now.
    pub fn used(&self) -> usize {
        self.recent.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_doubles_and_caps() {
        let p = BackoffPolicy::default();
        // jitter 1.0 = the full exponential value
        let full: Vec<u64> = (0..9).map(|n| p.delay(n, 1.0).as_millis() as u64).collect();
        assert_eq!(
            full,
            vec![500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        // jitter 0.0 = half of it
        assert_eq!(p.delay(0, 0.0), Duration::from_millis(250));
        assert_eq!(p.delay(20, 0.0), Duration::from_secs(15));
        assert_eq!(p.delay(u32::MAX, 0.5), Duration::from_millis(22500));
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let p = BackoffPolicy::default();
        for n in 0..10 {
            for j in [0.0, 0.1, 0.5, 0.9, 1.0, 7.0, -3.0] {
                let d = p.delay(n, j);
                let full = p.delay(n, 1.0);
                assert!(d >= full / 2 && d <= full, "attempt {n} jitter {j}: {d:?}");
            }
        }
    }

    #[test]
    fn budget_refuses_then_recovers() {
        let t0 = Instant::now();
        let mut b = RestartBudget::new(3, Duration::from_secs(600));
        assert!(b.try_spend(t0));
        assert!(b.try_spend(t0 + Duration::from_secs(1)));
        assert!(b.try_spend(t0 + Duration::from_secs(2)));
        assert!(!b.try_spend(t0 + Duration::from_secs(3)));
        assert_eq!(b.used(), 3);
        assert!(b.try_spend(t0 + Duration::from_secs(601)));
    }
}
