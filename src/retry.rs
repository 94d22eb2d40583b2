//! Waiting out AWS's eventual consistency and rate limits with exponential backoff.

use std::future::Future;
use std::time::{Duration, Instant};

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
    pub first: Duration,
    pub longest: Duration,
    pub give_up_after: Duration,
}

impl Backoff {
    /// For a condition AWS clears within about two minutes (a new role becoming
    /// assumable, DeleteRestApi's one call per 30 s). It starts small because the
    /// condition is often gone after a second or two.
    pub const ABOUT_TWO_MINUTES: Self = Self {
        first: Duration::from_millis(500),
        longest: Duration::from_secs(10),
        give_up_after: Duration::from_secs(120),
    };

    /// API Gateway calls limited per account (https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html):
    /// CreateDeployment, 1 per 5 s.
    pub const QUOTA_5_SECONDS: Self = Self::quota(Duration::from_secs(5));
    /// UpdateUsagePlan, 1 per 20 s.
    pub const QUOTA_20_SECONDS: Self = Self::quota(Duration::from_secs(20));
    /// DeleteRestApi, 1 per 30 s.
    pub const QUOTA_30_SECONDS: Self = Self::quota(Duration::from_secs(30));

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
    pub const POLL: Self = Self {
        first: Duration::from_millis(250),
        longest: Duration::from_secs(2),
        give_up_after: Duration::from_secs(300),
    };

    /// A call to the counter API (`counterctl increment` / `get`): connection errors,
    /// throttling and server errors usually pass within a second or two.
    pub const CALL: Self = Self {
        first: Duration::from_millis(200),
        longest: Duration::from_secs(2),
        give_up_after: Duration::from_secs(5),
    };

    /// A DynamoDB write throttled (a partition past its rate, an on-demand table scaling
    /// up), after the SDK's own attempts: capacity usually follows within a minute.
    pub const THROTTLED: Self = Self {
        first: Duration::from_millis(100),
        longest: Duration::from_secs(5),
        give_up_after: Duration::from_secs(120),
    };

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
                    Retry::Backoff => Some(pause),
                    Retry::After(after) => Some(after.max(pause)),
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

    /// Calls `check` until it answers true; `Ok(false)` when the time is up first.
    pub async fn poll<E, F, Fut>(&self, mut check: F) -> Result<bool, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<bool, E>>,
    {
        let give_up_at = Instant::now() + self.give_up_after;
        let mut pause = self.first;
        loop {
            if check().await? {
                return Ok(true);
            }
            if Instant::now() + pause >= give_up_at {
                return Ok(false);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(self.longest);
        }
    }
}
