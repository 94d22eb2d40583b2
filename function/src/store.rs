//! What the API needs from a place that keeps counters.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// One increment request, already validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Increment<'a> {
    pub counter: &'a str,
    /// How many consecutive values to reserve (1 for a plain increment).
    pub count: u32,
    /// Requests with the same key get the same answer and move the counter once.
    pub idempotency_key: Option<&'a str>,
}

/// Storage for counters. Implementations must never return one value twice for a counter.
pub trait CounterStore: Send + Sync {
    /// Adds `count` to the counter (creating it at 0 first) and returns its new value,
    /// the last of the `count` values reserved.
    fn increment(&self, request: &Increment<'_>) -> impl Future<Output = Result<i64, StoreError>> + Send;

    /// The counter's current value from a strongly consistent read; `None` when it was
    /// never incremented.
    fn value(&self, counter: &str) -> impl Future<Output = Result<Option<i64>, StoreError>> + Send;
}

/// What raising a counter found, and left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Raised {
    /// Its value before; `None` when it did not exist.
    pub before: Option<i64>,
    /// Its value after: the target, or the higher value it already had.
    pub after: i64,
}

/// What `counterctl counters` needs of a store besides the API's calls. Nothing here can
/// lower a counter: that would hand out its values again.
pub trait CounterAdmin: Send + Sync {
    /// Every counter whose name starts with `prefix`, sorted by name (bytewise, as UTF-8);
    /// the store's own records are never among them.
    fn list(&self, prefix: &str) -> impl Future<Output = Result<Vec<(String, i64)>, StoreError>> + Send;

    /// Raises `counter` to `at_least` when it is lower or missing, atomically with respect
    /// to increments: one running at the same moment gets a value above `at_least` or
    /// below the old value.
    fn raise(&self, counter: &str, at_least: i64) -> impl Future<Output = Result<Raised, StoreError>> + Send;
}

/// The time since the epoch, by the clock idempotency records expire by.
pub fn since_epoch() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// The wall clock a store dates idempotency records by; a seam, so that tests can set it
/// ahead or behind.
pub trait Clock: Send + Sync {
    /// The time since the Unix epoch.
    fn since_epoch(&self) -> Duration;
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn since_epoch(&self) -> Duration {
        since_epoch()
    }
}

/// Seconds since the epoch (`expires_at`), in both stores.
pub fn unix_secs() -> u64 {
    since_epoch().as_secs()
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the idempotency key was first used for counter {counter:?} with count {count}")]
    IdempotencyKeyReused { counter: String, count: u32 },
    #[error("another request with this idempotency key is still in progress")]
    IdempotencyKeyInProgress,
    #[error("throttled by the database: {0}")]
    Throttled(String),
    #[error("database error: {0}")]
    Database(String),
    /// A store reached over the network (a sidecar's upstream counter API) cannot hand
    /// out values now; try again after `retry_after`.
    #[error("the upstream counter API is unavailable: {reason}")]
    Unavailable { reason: String, retry_after: Duration },
    /// The upstream counter API refused the request itself: its answer, passed on.
    #[error("the upstream counter API answered {status} {code}")]
    Refused { status: u16, code: String, description: Option<String> },
}
