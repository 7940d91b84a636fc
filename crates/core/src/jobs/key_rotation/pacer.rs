//! Pacing of the rotator's GitHub writes, under GitHub's secondary rate limits for
//! content-creating requests.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use super::{END_RESERVE, PAIR_RESERVE};
use crate::deadline;
use crate::error::Error;

/// Spaces content-creating GitHub requests (GitHub's secondary rate limits): at most
/// `per_minute` a minute, evenly, and `per_hour` in any hour; shared by every run of the process.
pub(super) struct Pacer {
    interval: Duration,
    per_hour: usize,
    state: Mutex<PacerState>,
}

struct PacerState {
    next: Instant,
    sent: VecDeque<Instant>,
}

impl Pacer {
    pub(super) fn new(per_minute: u32, per_hour: usize) -> Self {
        Pacer {
            interval: Duration::from_secs(60) / per_minute.max(1),
            per_hour,
            state: Mutex::new(PacerState { next: Instant::now(), sent: VecDeque::new() }),
        }
    }

    /// Waits for room for `n` writes; the wait, or why there is none in this run.
    pub(super) async fn permit(&self, n: usize) -> Result<Duration, Error> {
        let wait = {
            let mut s = self.state.lock().await;
            let now = Instant::now();
            while s.sent.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(3600)) {
                s.sent.pop_front();
            }
            if s.sent.len() + n > self.per_hour {
                let free_at =
                    s.sent.front().map_or(Duration::ZERO, |t| Duration::from_secs(3600) - now.duration_since(*t));
                return Err(Error::Throttled {
                    service: "GitHub (writes this hour)",
                    retry_after_seconds: free_at.as_secs().max(1),
                });
            }
            let start = s.next.max(now);
            let wait = start - now;
            if !deadline::allows(wait, END_RESERVE + PAIR_RESERVE) {
                return Err(Error::OutOfTime);
            }
            s.next = start + self.interval * n as u32;
            s.sent.extend(std::iter::repeat_n(start, n));
            wait
        };
        tokio::time::sleep(wait).await;
        Ok(wait)
    }

    /// Counts `n` writes that go now whatever the budget (a key ID put back, a second secret sent
    /// again: the pair must match), so that the writes after them are spaced and counted as GitHub
    /// counts them.
    pub(super) async fn record(&self, n: usize) {
        let mut s = self.state.lock().await;
        let now = Instant::now();
        s.next = s.next.max(now) + self.interval * n as u32;
        s.sent.extend(std::iter::repeat_n(now, n));
    }

    /// GitHub asked to wait: nothing more is written before then.
    pub(super) fn hold_off_now(&self, secs: u64) {
        if let Ok(mut s) = self.state.try_lock() {
            s.next = s.next.max(Instant::now() + Duration::from_secs(secs));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_that_must_go_are_counted_and_spaced_like_the_others() {
        // 60 a minute: one a second.
        let pacer = Pacer::new(60, 4);
        assert_eq!(pacer.permit(2).await.unwrap(), Duration::ZERO);
        // A key ID put back goes at once, and the next write waits for the three before it
        // (3 s from the first, less the moments these lines took).
        pacer.record(1).await;
        let waited = pacer.permit(1).await.unwrap();
        assert!(waited > Duration::from_secs(2) && waited <= Duration::from_secs(3), "{waited:?}");
        // Four writes this hour, one of them recorded: no room for a fifth.
        match pacer.permit(1).await {
            Err(Error::Throttled { retry_after_seconds, .. }) => assert!(retry_after_seconds > 3500),
            other => panic!("{other:?}"),
        }
        // A write that must go still goes, and is counted.
        pacer.record(1).await;
        assert_eq!(pacer.state.lock().await.sent.len(), 5);
    }
}
