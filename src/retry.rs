//! The CLI's side of the one retry policy ([`counter_function::retry`]): the schedules
//! of its waits and the SDK's attempts. Calls to the counter API are retried by
//! `counterctl-client`, by the same policy.
//!
//! The budget of a call is stated here and nowhere else: the SDK makes up to
//! [`SDK_ATTEMPTS`] attempts of each call (its own standard backoff between them), and
//! a schedule below repeats the whole call for the errors it is given until it gives up.
//! The pauses are jittered, so installs that share a per-account quota spread out, and
//! none retries sooner than the quota allows.

use std::time::Duration;

pub(crate) use counter_function::retry::{Backoff, TimedOut};

/// Attempts the SDK makes of each AWS call for throttling and transient errors: its
/// default is 3 (https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html),
/// and API Gateway's per-account quotas need more patience than that.
pub(crate) const SDK_ATTEMPTS: u32 = 5;

/// How long accepting connections pauses after an error such as running out of file
/// descriptors, giving open connections time to close.
pub(crate) const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// For a condition AWS clears within about two minutes (a new role becoming
/// assumable, point-in-time recovery right after CreateTable). It starts small because the
/// condition is often gone after a second or two.
pub(crate) const ABOUT_TWO_MINUTES: Backoff =
    Backoff::new(Duration::from_millis(500), Duration::from_secs(10), Duration::from_secs(120));

/// API Gateway calls limited per account (https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html):
/// CreateDeployment, 1 per 5 s.
pub(crate) const QUOTA_5_SECONDS: Backoff = quota(Duration::from_secs(5));
/// UpdateUsagePlan, 1 per 20 s.
pub(crate) const QUOTA_20_SECONDS: Backoff = quota(Duration::from_secs(20));
/// DeleteRestApi, 1 per 30 s ("1 request every 30 seconds per account").
pub(crate) const QUOTA_30_SECONDS: Backoff = quota(Duration::from_secs(30));

/// For a call AWS allows once per `period` per account: other clients of the account
/// (other installs, CI) share the quota, so it keeps trying for several minutes.
const fn quota(period: Duration) -> Backoff {
    Backoff::new(period, Duration::from_secs(period.as_secs() * 2), Duration::from_secs(300))
}

/// Polling a resource until it settles (a table becoming ACTIVE, a function update).
pub(crate) const POLL: Backoff =
    Backoff::new(Duration::from_millis(250), Duration::from_secs(2), Duration::from_secs(300));

/// A DynamoDB write throttled (a partition past its rate, an on-demand table scaling
/// up), after the SDK's own attempts: capacity usually follows within a minute.
pub(crate) const THROTTLED: Backoff =
    Backoff::new(Duration::from_millis(100), Duration::from_secs(5), Duration::from_secs(120));
