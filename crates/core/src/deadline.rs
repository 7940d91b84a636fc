//! The invocation's deadline, for every wait and retry below it.
//!
//! Lambda stops a function at its deadline; a caller then gets a bare 502 instead of the
//! contract's error. So the transport runs each request [`within`] the deadline less
//! [`ANSWER_MARGIN`], and everything that waits (GitHub retries and rate-limit waits, DynamoDB
//! batch-write pauses, the rate-limit scanner's work) asks [`remaining`] before it does. Outside
//! an invocation (tests, the CLI) there is no deadline and [`remaining`] is `None`.
//!
//! The deadline is task-local: a task spawned inside a request does not see it unless given it.
//!
//! Also the budget of one AWS call ([`AWS_CALL`], [`AWS_ATTEMPT`], [`AWS_CONNECT`]): the SDK's
//! timeouts (`aws::aws_timeouts`) and what the jobs keep back for a call are the same numbers.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::error::Error;

tokio::task_local! {
    static DEADLINE: Instant;
}

/// Kept back from Lambda's deadline to write the answer and hand it to the runtime API.
pub const ANSWER_MARGIN: Duration = Duration::from_millis(500);

/// The longest one AWS call may take, its retries included (the SDK's operation timeout): what
/// work that must still make AWS calls keeps back from the deadline.
pub const AWS_CALL: Duration = Duration::from_secs(8);
/// The longest one attempt of an AWS call may take (the SDK's attempt timeout).
pub const AWS_ATTEMPT: Duration = Duration::from_secs(3);
/// The longest connecting to an AWS endpoint may take.
pub const AWS_CONNECT: Duration = Duration::from_secs(2);

/// Runs `work` with `deadline` as the deadline [`remaining`] measures from.
pub async fn within<F: Future>(deadline: Instant, work: F) -> F::Output {
    DEADLINE.scope(deadline, work).await
}

/// How an invocation with Lambda's `deadline` gets to its answer: `work` runs [`within`] the
/// deadline less [`ANSWER_MARGIN`] and is stopped there ([`Error::OutOfTime`], the contract's
/// error, not the bare 502 of a function Lambda stopped); then, whatever came of it, `settle` is
/// given until half that margin before the deadline for what must go out before Lambda freezes the
/// process once it has answered.
pub async fn answer_by<T, S>(
    deadline: Instant,
    work: impl Future<Output = Result<T, Error>>,
    settle: impl FnOnce(Instant) -> S,
) -> Result<T, Error>
where
    S: Future<Output = ()>,
{
    let cut = deadline.checked_sub(ANSWER_MARGIN).unwrap_or(deadline);
    let outcome = match tokio::time::timeout_at(cut, within(cut, work)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(Error::OutOfTime),
    };
    settle(deadline.checked_sub(ANSWER_MARGIN / 2).unwrap_or(deadline)).await;
    outcome
}

/// The deadline of the current work, if it has one.
pub fn current() -> Option<Instant> {
    DEADLINE.try_with(|d| *d).ok()
}

/// Time left until the current work's deadline (zero once past it); `None` without a deadline.
pub fn remaining() -> Option<Duration> {
    current().map(|d| d.saturating_duration_since(Instant::now()))
}

/// Whether waiting `wait` and then spending `then` still ends before the deadline.
pub fn allows(wait: Duration, then: Duration) -> bool {
    remaining().is_none_or(|left| wait.saturating_add(then) <= left)
}

/// `limit`, shortened to the time left.
pub fn clamp(limit: Duration) -> Duration {
    remaining().map_or(limit, |left| limit.min(left))
}

/// The longest a Lambda invocation can run.
const LAMBDA_MAX_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Below this, a "deadline" is a duration, not a time (2001-09-09 in Unix milliseconds).
const PLAUSIBLE_EPOCH_MS: u64 = 1_000_000_000_000;

/// Lambda's deadline (milliseconds since the Unix epoch, as the runtime API gives it) as an
/// [`Instant`] of this process. A deadline already past (a late pickup, clock skew) is now: no
/// time left. A value too small to be a time is no deadline (emulators such as `cargo lambda
/// watch` send a duration), and one beyond Lambda's 15-minute limit is cut to it.
pub fn from_epoch_millis(deadline_ms: u64) -> Option<Instant> {
    if deadline_ms < PLAUSIBLE_EPOCH_MS {
        return None;
    }
    let deadline = UNIX_EPOCH + Duration::from_millis(deadline_ms);
    let left = deadline.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO);
    Some(Instant::now() + left.min(LAMBDA_MAX_TIMEOUT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn remaining_time_is_measured_from_the_deadline_in_scope() {
        assert_eq!(remaining(), None, "no deadline outside an invocation");
        assert!(allows(Duration::from_secs(3600), Duration::from_secs(3600)));
        assert_eq!(clamp(Duration::from_secs(9)), Duration::from_secs(9));
        within(Instant::now() + Duration::from_secs(2), async {
            let left = remaining().unwrap();
            assert!(left <= Duration::from_secs(2) && left > Duration::from_millis(1900), "{left:?}");
            assert!(allows(Duration::from_secs(1), Duration::from_millis(500)));
            assert!(!allows(Duration::from_secs(1), Duration::from_secs(1)));
            assert!(clamp(Duration::from_secs(9)) <= Duration::from_secs(2));
        })
        .await;
        within(Instant::now() - Duration::from_secs(1), async {
            assert_eq!(remaining(), Some(Duration::ZERO), "a past deadline leaves nothing");
        })
        .await;
    }

    #[test]
    fn lambda_deadlines_become_instants() {
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        let left = from_epoch_millis(now_ms + 3000).unwrap().saturating_duration_since(Instant::now());
        assert!(left > Duration::from_millis(2900) && left <= Duration::from_secs(3), "{left:?}");
        let at = |ms: u64| from_epoch_millis(ms).map(|d| d.saturating_duration_since(Instant::now()));
        assert!(at(now_ms + 15 * 60 * 1000).unwrap() > Duration::from_secs(899), "Lambda's longest timeout");
        assert!(at(now_ms + 60 * 60 * 1000).unwrap() <= Duration::from_secs(900), "cut to 15 minutes");
        assert_eq!(at(now_ms - 5000), Some(Duration::ZERO), "past: no time left, not no deadline");
        assert_eq!(from_epoch_millis(600_000), None, "cargo lambda watch's duration");
        assert_eq!(from_epoch_millis(0), None);
    }
}
