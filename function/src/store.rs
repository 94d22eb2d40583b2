//! What the API needs from a place that keeps counters.

use std::future::Future;

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
}
