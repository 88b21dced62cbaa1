//! Restart schedule (pure): capped exponential backoff with jitter, a restart budget, and
//! [`Restarts`], which combines them the way the supervisor uses them.
//!
//! Jitter and time are parameters (`0.0..=1.0`; `now` on the one clock, `crate::clock`) so the
//! schedule is deterministic in tests, which run it in paused time.

use std::collections::VecDeque;
use std::time::Duration;

use crate::clock::Instant;

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

    /// Give back the last restart spent.
    pub fn refund(&mut self) {
        self.recent.pop_back();
    }
}

/// The supervisor's restart bookkeeping: the attempt counter of the backoff schedule (reset
/// once a child stayed up for `policy.reset_after`) and the budget.
#[derive(Debug, Clone)]
pub struct Restarts {
    policy: BackoffPolicy,
    budget: RestartBudget,
    attempt: u32,
    ready_since: Instant,
}

impl Restarts {
    /// A child became ready at `ready_at`; at most `max` restarts within `window`.
    pub fn new(policy: BackoffPolicy, max: u32, window: Duration, ready_at: Instant) -> Self {
        Self {
            policy,
            budget: RestartBudget::new(max, window),
            attempt: 0,
            ready_since: ready_at,
        }
    }

    /// A ready child failed at `now`: if it had been up for `reset_after`, the schedule starts
    /// again from its shortest delay.
    pub fn child_failed(&mut self, now: Instant) {
        if now.saturating_duration_since(self.ready_since) >= self.policy.reset_after {
            self.attempt = 0;
        }
    }

    /// Spend one restart at `now`: the delay before it (`jitter()` in `0.0..=1.0`, drawn only
    /// when a restart is allowed), or `None` when the budget is exhausted.
    pub fn next_delay(&mut self, now: Instant, jitter: impl FnOnce() -> f64) -> Option<Duration> {
        if !self.budget.try_spend(now) {
            return None;
        }
        let d = self.policy.delay(self.attempt, jitter());
        self.attempt = self.attempt.saturating_add(1);
        Some(d)
    }

    /// Give back the restart last spent, as if it never happened (budget and schedule): it
    /// failed only because Redis was down, which LiveKit cannot start without.
    pub fn refund(&mut self) {
        self.budget.refund();
        self.attempt = self.attempt.saturating_sub(1);
    }

    /// A restarted child became ready at `now`.
    pub fn ready(&mut self, now: Instant) {
        self.ready_since = now;
    }

    /// Restarts inside the budget window right now.
    pub fn used(&self) -> usize {
        self.budget.used()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::{advance, pause};

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

    #[tokio::test(start_paused = true)]
    async fn budget_refuses_then_recovers() {
        let t0 = Instant::now();
        let mut b = RestartBudget::new(3, Duration::from_secs(600));
        assert!(b.try_spend(t0));
        assert!(b.try_spend(t0 + Duration::from_secs(1)));
        assert!(b.try_spend(t0 + Duration::from_secs(2)));
        assert!(!b.try_spend(t0 + Duration::from_secs(3)));
        assert_eq!(b.used(), 3);
        assert!(b.try_spend(t0 + Duration::from_secs(601)));
    }

    /// Paused time: a crash loop with the default policy (500 ms base, 30 s cap, budget 5 per
    /// 10 minutes) sleeps the exact schedule, runs out of budget, and gets it back 10 minutes
    /// after the first restart; a child that stays up 60 s starts the schedule again.
    #[tokio::test]
    async fn crash_loop_schedule_budget_and_reset_in_paused_time() {
        pause();
        let window = Duration::from_secs(600);
        let t0 = Instant::now();
        let mut r = Restarts::new(BackoffPolicy::default(), 5, window, t0);
        let mut slept = Vec::new();
        // every restarted child crashes 100 ms after it became ready
        loop {
            r.child_failed(Instant::now());
            let Some(d) = r.next_delay(Instant::now(), || 1.0) else {
                break;
            };
            tokio::time::sleep(d).await;
            slept.push(d.as_millis());
            r.ready(Instant::now());
            advance(Duration::from_millis(100)).await;
        }
        assert_eq!(slept, vec![500, 1000, 2000, 4000, 8000]);
        assert_eq!(r.used(), 5);
        // 15.5 s of backoff + 0.5 s of uptime have passed on the paused clock (tokio's timer
        // rounds each sleep up to its next millisecond), nothing more
        let took = Instant::now() - t0;
        assert!(
            took >= Duration::from_secs(16) && took < Duration::from_millis(16_010),
            "{took:?}"
        );
        // the first restart (at 0 s) leaves the window at 600 s: one restart is allowed again
        advance(window - Duration::from_millis(16_000)).await;
        assert_eq!(
            r.next_delay(Instant::now(), || 1.0),
            Some(Duration::from_secs(16))
        );
        assert_eq!(
            r.next_delay(Instant::now(), || 1.0),
            None,
            "the second is still inside"
        );
        // a child that stays up reset_after (60 s) starts again at the shortest delay
        r.ready(Instant::now());
        advance(Duration::from_secs(60)).await;
        r.child_failed(Instant::now());
        advance(window).await;
        assert_eq!(
            r.next_delay(Instant::now(), || 0.0),
            Some(Duration::from_millis(250))
        );
    }

    /// Paused time: a LiveKit that crashed during a 10-minute Redis outage, with a budget of 2.
    /// Each start fails while Redis is down and is refunded, so however many there are the
    /// budget is intact when Redis returns and the schedule starts from its shortest delay;
    /// without the refunds the third attempt would be refused (the unit would go down).
    #[tokio::test(start_paused = true)]
    async fn starts_failed_while_redis_is_down_are_refunded() {
        let window = Duration::from_secs(600);
        let mut r = Restarts::new(BackoffPolicy::default(), 2, window, Instant::now());
        r.child_failed(Instant::now());
        for _ in 0..600 {
            let d = r.next_delay(Instant::now(), || 1.0);
            assert_eq!(
                d,
                Some(Duration::from_millis(500)),
                "budget or schedule touched"
            );
            r.refund();
            advance(Duration::from_secs(1)).await;
        }
        assert_eq!(r.used(), 0);
        // Redis is back: the real failures count again, and run out at the budget
        assert_eq!(
            r.next_delay(Instant::now(), || 1.0),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            r.next_delay(Instant::now(), || 1.0),
            Some(Duration::from_millis(1000))
        );
        assert_eq!(r.next_delay(Instant::now(), || 1.0), None);
        // the refund-free control: three attempts inside the window exhaust a budget of 2
        let mut c = Restarts::new(BackoffPolicy::default(), 2, window, Instant::now());
        assert!(c.next_delay(Instant::now(), || 1.0).is_some());
        assert!(c.next_delay(Instant::now(), || 1.0).is_some());
        assert!(c.next_delay(Instant::now(), || 1.0).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_is_only_drawn_for_an_allowed_restart() {
        let mut r = Restarts::new(
            BackoffPolicy::default(),
            1,
            Duration::from_secs(600),
            Instant::now(),
        );
        let mut draws = 0;
        assert!(r
            .next_delay(Instant::now(), || {
                draws += 1;
                0.5
            })
            .is_some());
        assert!(r
            .next_delay(Instant::now(), || {
                draws += 1;
                0.5
            })
            .is_none());
        assert_eq!(draws, 1);
    }
}
