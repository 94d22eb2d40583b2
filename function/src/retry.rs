//! The one retry policy of counterctl and its function: exponential backoff with jitter,
//! for a call that fails for a while (`retry`) or a state that takes a while (`poll`).
//!
//! Each pause is the schedule's plus up to half again at random ("equal jitter" upward,
//! https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/), so clients
//! that share a limit (installs on one account's quotas, requests waiting on one
//! idempotency key) spread out, and none retries sooner than its schedule says. The
//! schedules themselves live with their callers: the CLI's in its `retry` module, the
//! function's idempotency wait in [`crate::dynamo`].

use std::future::Future;
use std::time::{Duration, Instant};

/// A wait that ran out of time.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{what} did not settle within {seconds} s")]
pub struct TimedOut {
    pub what: String,
    pub seconds: u64,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    No,
    /// After the schedule's next pause.
    Backoff,
    /// After this long (what the server asked for).
    After(Duration),
}

/// An exponential backoff schedule that gives up after a total time.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    first: Duration,
    longest: Duration,
    give_up_after: Duration,
}

impl Backoff {
    /// A schedule: the first pause, the longest, and when to give up.
    pub const fn new(first: Duration, longest: Duration, give_up_after: Duration) -> Self {
        Self { first, longest, give_up_after }
    }

    /// Runs `attempt` until it succeeds, fails with an error `retryable` rejects, or
    /// the time is up (then the last error is returned).
    pub async fn retry<T, E, F, Fut>(&self, attempt: F, retryable: impl Fn(&E) -> bool) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.retry_as(attempt, |error| if retryable(error) { Retry::Backoff } else { Retry::No }).await
    }

    /// As [`retry`](Self::retry), with the error saying how long to wait (a server's
    /// `Retry-After`); the pause is never shorter than the schedule's.
    pub async fn retry_as<T, E, F, Fut>(&self, mut attempt: F, decide: impl Fn(&E) -> Retry) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let give_up_at = Instant::now() + self.give_up_after;
        let mut pause = self.first;
        loop {
            let outcome = attempt().await;
            let wait = match &outcome {
                Err(error) => match decide(error) {
                    Retry::No => None,
                    Retry::Backoff => Some(jittered(pause)),
                    Retry::After(after) => Some(after.max(jittered(pause))),
                },
                Ok(_) => None,
            };
            match wait {
                Some(wait) if Instant::now() + wait < give_up_at => {
                    tokio::time::sleep(wait).await;
                    pause = (pause * 2).min(self.longest);
                }
                _ => return outcome,
            }
        }
    }

    /// Calls `check` until it answers `Some`; [`TimedOut`] on `what` when the time is up
    /// first.
    pub async fn poll<T, E, F, Fut>(&self, what: &str, mut check: F) -> Result<T, E>
    where
        E: From<TimedOut>,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
    {
        let give_up_at = Instant::now() + self.give_up_after;
        let mut pause = self.first;
        loop {
            if let Some(settled) = check().await? {
                return Ok(settled);
            }
            let wait = jittered(pause);
            if Instant::now() + wait >= give_up_at {
                return Err(TimedOut { what: what.to_owned(), seconds: self.give_up_after.as_secs() }.into());
            }
            tokio::time::sleep(wait).await;
            pause = (pause * 2).min(self.longest);
        }
    }
}

/// `pause` plus up to half again, at random.
fn jittered(pause: Duration) -> Duration {
    pause + pause.mul_f64(fastrand::f64() / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jittered_pause_is_never_shorter_than_the_schedule_nor_half_again_longer() {
        let pause = Duration::from_secs(5);
        let pauses: Vec<Duration> = (0..1000).map(|_| jittered(pause)).collect();
        assert!(pauses.iter().all(|wait| *wait >= pause && *wait <= pause.mul_f64(1.5)), "{pauses:?}");
        assert!(pauses.iter().any(|wait| *wait != pauses[0]), "the pauses differ");
    }

    #[tokio::test]
    async fn a_poll_that_never_settles_fails_with_what_it_waited_for() {
        let backoff = Backoff {
            first: Duration::from_millis(1),
            longest: Duration::from_millis(2),
            give_up_after: Duration::from_secs(1),
        };
        let mut checks = 0;
        let result: Result<(), TimedOut> = backoff
            .poll("table t becoming ACTIVE", || {
                checks += 1;
                async { Ok(None::<()>) }
            })
            .await;
        let error = result.unwrap_err();
        assert_eq!(error, TimedOut { what: "table t becoming ACTIVE".into(), seconds: 1 });
        assert_eq!(error.to_string(), "table t becoming ACTIVE did not settle within 1 s");
        assert!(checks > 1, "it checked again before giving up");
    }
}
