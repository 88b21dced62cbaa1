//! One call at a time, its answer shared (for public GETs that would otherwise each call
//! LiveKit): a caller that arrives while a call is in flight waits for it, then takes an answer
//! only from a call that *started* after it arrived (never an answer older than its request) —
//! or a failure (no answer within the budget) that *ended* after it arrived: a hung LiveKit is
//! asked once, not once per caller. So any number of concurrent callers cost at most two calls
//! in a row, not one each, and one connection at a time. Every wait is bounded by the caller's
//! budget.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{self, Instant};

/// The last call: when it started and ended, and what it gave (`None`: nothing in time).
struct Last<T> {
    started: Instant,
    ended: Instant,
    answer: Option<Arc<T>>,
}

/// A shared call (see the module documentation).
#[derive(Debug)]
pub struct Flight<T> {
    last: tokio::sync::Mutex<Option<Last<T>>>,
}

impl<T> std::fmt::Debug for Last<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Last")
            .field("answered", &self.answer.is_some())
            .finish_non_exhaustive()
    }
}

impl<T> Default for Flight<T> {
    fn default() -> Self {
        Flight {
            last: tokio::sync::Mutex::new(None),
        }
    }
}

impl<T> Flight<T> {
    /// The answer of a call that started no earlier than now: the one in flight if it did, else
    /// a new one; `None` when no answer comes within `budget` (waiting included; a call cut
    /// short by the budget is dropped, and with it its connection), or when a call that ended
    /// after this one arrived got none.
    pub async fn get<F, Fut>(&self, budget: Duration, call: F) -> Option<Arc<T>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let asked = clock::now();
        let deadline = asked + budget;
        let mut last = tokio::time::timeout_at(deadline, self.last.lock())
            .await
            .ok()?;
        if let Some(l) = &*last {
            match &l.answer {
                Some(v) if l.started >= asked => return Some(v.clone()),
                None if l.ended >= asked => return None,
                _ => {}
            }
        }
        let started = clock::now();
        let answer = tokio::time::timeout_at(deadline, call())
            .await
            .ok()
            .map(Arc::new);
        *last = Some(Last {
            started,
            ended: clock::now(),
            answer: answer.clone(),
        });
        answer
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_calls_and_never_get_an_older_answer() {
        let flight = Arc::new(Flight::<usize>::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let call = |calls: Arc<AtomicUsize>| async move {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
            n
        };
        let mut tasks = Vec::new();
        for i in 0..50 {
            let (f, c) = (flight.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                // the first caller starts call 1; the rest arrive while it runs
                if i > 0 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                *f.get(Duration::from_secs(5), || call(c)).await.unwrap()
            }));
        }
        let mut got = Vec::new();
        for t in tasks {
            got.push(t.await.unwrap());
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "one call in flight, one more for the rest"
        );
        assert_eq!(got[0], 1);
        assert!(got[1..].iter().all(|n| *n == 2), "{got:?}");
        // a later caller gets a new call, not the old answer
        let c = calls.clone();
        assert_eq!(
            *flight
                .get(Duration::from_secs(5), || call(c))
                .await
                .unwrap(),
            3
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_call_is_cut_by_the_budget_and_made_once() {
        let flight = Arc::new(Flight::<()>::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let hung = |calls: Arc<AtomicUsize>| async move {
            calls.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<()>().await
        };
        let t0 = clock::now();
        let mut tasks = Vec::new();
        for i in 0..20u64 {
            let (f, c) = (flight.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50 * i)).await;
                let r = f.get(Duration::from_secs(2), || hung(c)).await;
                (r.is_none(), clock::now())
            }));
        }
        for t in tasks {
            let (none, at) = t.await.unwrap();
            assert!(none);
            assert_eq!(
                at - t0,
                Duration::from_secs(2),
                "every caller answered when the call gave up"
            );
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "the hung call was made once"
        );
        // a caller after that failure tries again
        tokio::time::sleep(Duration::from_millis(1)).await;
        let c = calls.clone();
        assert!(flight
            .get(Duration::from_secs(2), || hung(c))
            .await
            .is_none());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
