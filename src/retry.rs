//! The one retry policy: waiting out AWS's eventual consistency and rate limits with
//! exponential backoff and jitter.
//!
//! The budget of a call is stated here and nowhere else: the SDK makes up to
//! [`SDK_ATTEMPTS`] attempts of each call (its own standard backoff between them), and
//! a [`Backoff`] schedule repeats the whole call for the errors it is given until its
//! `give_up_after`. Each pause is the schedule's plus up to half again at random ("equal
//! jitter" upward, https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/),
//! so installs that share a per-account quota spread out, and never retry sooner than
//! the quota allows.

use std::future::Future;
use std::time::{Duration, Instant};

/// Attempts the SDK makes of each AWS call for throttling and transient errors: its
/// default is 3 (https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html),
/// and API Gateway's per-account quotas need more patience than that.
pub(crate) const SDK_ATTEMPTS: u32 = 5;

/// How long accepting connections pauses after an error such as running out of file
/// descriptors, giving open connections time to close.
pub(crate) const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// A wait that ran out of time.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{what} did not settle within {seconds} s")]
pub(crate) struct TimedOut {
    pub(crate) what: String,
    pub(crate) seconds: u64,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    No,
    /// After the schedule's next pause.
    Backoff,
    /// After this long (what the server asked for).
    After(Duration),
}

/// An exponential backoff schedule that gives up after a total time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    first: Duration,
    longest: Duration,
    give_up_after: Duration,
}

impl Backoff {
    /// For a condition AWS clears within about two minutes (a new role becoming
    /// assumable, point-in-time recovery right after CreateTable). It starts small because the
    /// condition is often gone after a second or two.
    pub(crate) const ABOUT_TWO_MINUTES: Self = Self {
        first: Duration::from_millis(500),
        longest: Duration::from_secs(10),
        give_up_after: Duration::from_secs(120),
    };

    /// API Gateway calls limited per account (https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html):
    /// CreateDeployment, 1 per 5 s.
    pub(crate) const QUOTA_5_SECONDS: Self = Self::quota(Duration::from_secs(5));
    /// UpdateUsagePlan, 1 per 20 s.
    pub(crate) const QUOTA_20_SECONDS: Self = Self::quota(Duration::from_secs(20));
    /// DeleteRestApi, 1 per 30 s ("1 request every 30 seconds per account").
    pub(crate) const QUOTA_30_SECONDS: Self = Self::quota(Duration::from_secs(30));

    /// For a call AWS allows once per `period` per account: other clients of the account
    /// (other installs, CI) share the quota, so it keeps trying for several minutes.
    const fn quota(period: Duration) -> Self {
        Self {
            first: period,
            longest: Duration::from_secs(period.as_secs() * 2),
            give_up_after: Duration::from_secs(300),
        }
    }

    /// Polling a resource until it settles (a table becoming ACTIVE, a function update).
    pub(crate) const POLL: Self = Self {
        first: Duration::from_millis(250),
        longest: Duration::from_secs(2),
        give_up_after: Duration::from_secs(300),
    };

    /// A call to the counter API (`counterctl increment` / `get`): connection errors,
    /// throttling and server errors usually pass within a second or two.
    pub(crate) const CALL: Self = Self {
        first: Duration::from_millis(200),
        longest: Duration::from_secs(2),
        give_up_after: Duration::from_secs(5),
    };

    /// A DynamoDB write throttled (a partition past its rate, an on-demand table scaling
    /// up), after the SDK's own attempts: capacity usually follows within a minute.
    pub(crate) const THROTTLED: Self = Self {
        first: Duration::from_millis(100),
        longest: Duration::from_secs(5),
        give_up_after: Duration::from_secs(120),
    };

    /// Runs `attempt` until it succeeds, fails with an error `retryable` rejects, or
    /// the time is up (then the last error is returned).
    pub(crate) async fn retry<T, E, F, Fut>(&self, attempt: F, retryable: impl Fn(&E) -> bool) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.retry_as(attempt, |error| if retryable(error) { Retry::Backoff } else { Retry::No }).await
    }

    /// As [`retry`](Self::retry), with the error saying how long to wait (a server's
    /// `Retry-After`); the pause is never shorter than the schedule's.
    pub(crate) async fn retry_as<T, E, F, Fut>(&self, mut attempt: F, decide: impl Fn(&E) -> Retry) -> Result<T, E>
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

    /// Calls `check` until it answers true; [`TimedOut`] on `what` when the time is up
    /// first.
    pub(crate) async fn poll<E, F, Fut>(&self, what: &str, mut check: F) -> Result<(), E>
    where
        E: From<TimedOut>,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<bool, E>>,
    {
        let give_up_at = Instant::now() + self.give_up_after;
        let mut pause = self.first;
        loop {
            if check().await? {
                return Ok(());
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
                async { Ok(false) }
            })
            .await;
        let error = result.unwrap_err();
        assert_eq!(error, TimedOut { what: "table t becoming ACTIVE".into(), seconds: 1 });
        assert_eq!(error.to_string(), "table t becoming ACTIVE did not settle within 1 s");
        assert!(checks > 1, "it checked again before giving up");
    }
}
