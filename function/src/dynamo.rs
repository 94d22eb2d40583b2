//! Counters in DynamoDB, in the original service's layout: one item per counter, key `id`
//! (S), value `lastValue` (N), moved with `UpdateItem ADD`. A table written by the
//! original Node.js service is therefore adopted as is and every sequence continues.
//!
//! Idempotency records live in the same table under ids that start with
//! [`RESERVED_PREFIX`](crate::validate::RESERVED_PREFIX), which no counter name may use.
//! Expired records are deleted by DynamoDB's TTL on a one-region table and, on every
//! table, by the function's own sweep: a strongly consistent global table has no TTL.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};

use crate::retry::{Backoff, TimedOut};
use crate::store::{Clock, CounterAdmin, CounterStore, Increment, Raised, StoreError, SystemClock, since_epoch};
use crate::validate::RESERVED_PREFIX;

/// The table the original service used; `TABLE_NAME` overrides it.
pub const DEFAULT_TABLE: &str = "AtomicCounters";
/// The TTL attribute of idempotency records (the table's TTL setting points at it).
pub const EXPIRES_AT: &str = "expires_at";
const ID: &str = "id";
const LAST_VALUE: &str = "lastValue";
const COUNTER: &str = "counter";
const COUNT: &str = "count";
const OWNER: &str = "owner";
const LEASE_UNTIL_MS: &str = "lease_until_ms";
const NEW_VALUE: &str = "new_value";
/// Concurrent writes to one item from two Regions of a multi-Region strongly consistent
/// global table can fail with this code; the write was not applied, so it is safe to
/// send again ("Global tables: How it works", consistency modes,
/// https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/V2globaltables_HowItWorks.html).
const REPLICATED_WRITE_CONFLICT: &str = "ReplicatedWriteConflictException";
/// How a write that conflicted is sent again, past the SDK's own attempts: within 5 s,
/// a third of the function's default 15 s timeout.
const CONFLICTS: Backoff = Backoff::new(Duration::from_millis(20), Duration::from_millis(500), Duration::from_secs(5));
const THROTTLING_CODES: [&str; 3] =
    ["ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"];

/// How idempotency keys behave over time.
#[derive(Debug, Clone, Copy)]
pub struct IdempotencyTimings {
    /// How long a key's answer is kept.
    pub retention: Duration,
    /// How long a request may hold a key before another request with that key may take
    /// over (after a crash; the value the first one reserved then stays unused).
    pub lease: Duration,
    /// How long a request waits for another in-flight request with its key.
    pub wait: Duration,
    /// How many keys are claimed between two pages of the sweep of expired records.
    pub sweep_every: u64,
}

impl Default for IdempotencyTimings {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(24 * 3600),
            lease: Duration::from_secs(5),
            wait: Duration::from_secs(8),
            sweep_every: 64,
        }
    }
}

pub struct DynamoStore {
    client: Client,
    table: String,
    timings: IdempotencyTimings,
    /// Dates records: their `expires_at` and leases.
    clock: Arc<dyn Clock>,
    sweep: Arc<Sweep>,
}

/// Expired idempotency records, deleted by the function: multi-Region strong consistency
/// does not support TTL ("Global tables configured for multi-Region strong consistency
/// (MRSC) do not support configuring Time To Live (TTL) deletion":
/// https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/V2globaltables_HowItWorks.html).
/// Every `sweep_every` keys claimed (64 by default), one page of [`SWEEP_PAGE`] items of
/// the table is scanned in the background (so the sweep keeps up with the keys made,
/// reading about 4 items per key), and the records in it that expired more than
/// [`SWEEP_MARGIN`] ago are deleted, each only while it is still expired.
#[derive(Default)]
struct Sweep {
    claims: AtomicU64,
    /// Where the next page starts; `None` before the first.
    cursor: std::sync::Mutex<Option<SweepCursor>>,
    running: std::sync::atomic::AtomicBool,
}

/// A scan segment, and the key after the last item read in it (`None`: its start).
struct SweepCursor {
    segment: i32,
    start: Option<HashMap<String, AttributeValue>>,
}

const SWEEP_PAGE: i32 = 256;
/// The table is read in this many segments, one after the other from a random one, so
/// short-lived environments do not all read its beginning.
const SWEEP_SEGMENTS: i32 = 16;
/// A record is kept this long past its `expires_at`, for clocks behind the sweeper's.
pub const SWEEP_MARGIN: Duration = Duration::from_secs(3600);

/// A stored idempotency record. Its `expires_at` is for DynamoDB's TTL alone: a record
/// answers for its key for as long as it exists (see `idempotent_increment`).
struct KeyRecord {
    counter: String,
    count: u32,
    owner: String,
    lease_until_ms: u64,
    new_value: Option<i64>,
}

enum Claim {
    Won,
    Lost,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>, timings: IdempotencyTimings) -> Self {
        Self { client, table: table.into(), timings, clock: Arc::new(SystemClock), sweep: Arc::default() }
    }

    /// The same store, dating its records by `clock` instead of the system's.
    #[must_use]
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> Self {
        Self { clock, ..self }
    }

    async fn add(&self, counter: &str, count: u32) -> Result<i64, StoreError> {
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(ID, AttributeValue::S(counter.to_owned()))
            .update_expression("ADD #value :count")
            .expression_attribute_names("#value", LAST_VALUE)
            .expression_attribute_values(":count", AttributeValue::N(count.to_string()))
            .return_values(ReturnValue::UpdatedNew);
        let output =
            conflicts_retried(|| request.clone().send()).await.map_err(|error| classify("UpdateItem", error))?;
        integer(output.attributes.as_ref(), LAST_VALUE)?
            .ok_or_else(|| StoreError::Database(format!("UpdateItem returned no {LAST_VALUE}")))
    }

    /// A key's record, once it exists, is the key's only answer until DynamoDB's TTL
    /// deletes the row: neither its `expires_at` nor any clock makes it claimable again, so
    /// a clock ahead or behind can never get a key a second value. A completed record
    /// answers its value; one whose holder died is taken over when its lease ends.
    async fn idempotent_increment(&self, request: &Increment<'_>, key: &str) -> Result<i64, StoreError> {
        let record_id = format!("{RESERVED_PREFIX}idempotency#{key}");
        let owner = owner_token();
        // Another request holds the key: its answer is waited for, up to `timings.wait`.
        let waiting = Backoff::new(Duration::from_millis(10), Duration::from_millis(200), self.timings.wait);
        let answered = waiting.poll("the idempotency key's first request", || async {
            let claim = match self.claim_new(&record_id, request, &owner).await? {
                Claim::Won => Claim::Won,
                Claim::Lost => match self.read_record(&record_id).await? {
                    // Gone since (TTL, or a holder released it): the next claim may succeed.
                    None => Claim::Lost,
                    Some(record) if record.counter != request.counter || record.count != request.count => {
                        let reused = StoreError::IdempotencyKeyReused { counter: record.counter, count: record.count };
                        return Err(reused.into());
                    }
                    Some(KeyRecord { new_value: Some(value), .. }) => return Ok(Some(value)),
                    Some(record) if record.lease_until_ms < self.now_millis() => {
                        self.take_over(&record_id, &record.owner, &owner).await?
                    }
                    Some(_) => Claim::Lost,
                },
            };
            match claim {
                Claim::Won => Ok(self.complete(&record_id, request, &owner).await?),
                Claim::Lost => Ok(None),
            }
        });
        answered.await.map_err(|waited| match waited {
            Waited::Store(error) => error,
            Waited::TimedOut => StoreError::IdempotencyKeyInProgress,
        })
    }

    /// Creates the key's record, owned by `owner`, unless one exists. An existing record is
    /// never replaced, however old its `expires_at` looks: DynamoDB's TTL deletes expired
    /// items within a few days, and until then they are still read
    /// (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/howitworks-ttl.html),
    /// so the key keeps its answer at least `retention` by the writer's clock.
    async fn claim_new(&self, record_id: &str, request: &Increment<'_>, owner: &str) -> Result<Claim, StoreError> {
        let expires_at = self.clock.since_epoch().as_secs() + self.timings.retention.as_secs();
        let request = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(ID, AttributeValue::S(record_id.to_owned()))
            .item(COUNTER, AttributeValue::S(request.counter.to_owned()))
            .item(COUNT, AttributeValue::N(request.count.to_string()))
            .item(EXPIRES_AT, AttributeValue::N(expires_at.to_string()))
            .item(OWNER, AttributeValue::S(owner.to_owned()))
            .item(LEASE_UNTIL_MS, AttributeValue::N(self.lease_end().to_string()))
            .condition_expression("attribute_not_exists(#id)")
            .expression_attribute_names("#id", ID);
        let result = conflicts_retried(|| request.clone().send()).await;
        let claim = claim_outcome("PutItem", result)?;
        if matches!(claim, Claim::Won)
            && self.sweep.claims.fetch_add(1, Ordering::Relaxed).is_multiple_of(self.timings.sweep_every.max(1))
        {
            self.sweep_in_background();
        }
        Ok(claim)
    }

    /// One page of the [`Sweep`], unless one is running; its failures are logged only.
    fn sweep_in_background(&self) {
        if self.sweep.running.swap(true, Ordering::AcqRel) {
            return;
        }
        let (client, table, sweep) = (self.client.clone(), self.table.clone(), Arc::clone(&self.sweep));
        let cutoff = self.clock.since_epoch().saturating_sub(SWEEP_MARGIN).as_secs();
        tokio::spawn(async move {
            if let Err(error) = sweep_page(&client, &table, &sweep, cutoff).await {
                tracing::warn!(error, "sweeping expired idempotency records");
            }
            sweep.running.store(false, Ordering::Release);
        });
    }

    /// Takes a key whose owner's lease ran out (it crashed or hung) and never answered.
    async fn take_over(&self, record_id: &str, previous_owner: &str, owner: &str) -> Result<Claim, StoreError> {
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(ID, AttributeValue::S(record_id.to_owned()))
            .update_expression("SET #owner = :owner, #lease = :lease")
            .condition_expression("#owner = :previous AND attribute_not_exists(#new_value)")
            .expression_attribute_names("#owner", OWNER)
            .expression_attribute_names("#lease", LEASE_UNTIL_MS)
            .expression_attribute_names("#new_value", NEW_VALUE)
            .expression_attribute_values(":owner", AttributeValue::S(owner.to_owned()))
            .expression_attribute_values(":previous", AttributeValue::S(previous_owner.to_owned()))
            .expression_attribute_values(":lease", AttributeValue::N(self.lease_end().to_string()));
        let result = conflicts_retried(|| request.clone().send()).await;
        claim_outcome("UpdateItem", result)
    }

    /// Increments for a claimed key and records the answer. `None` when the claim was
    /// taken over meanwhile: the value reserved here is then never handed out.
    async fn complete(&self, record_id: &str, request: &Increment<'_>, owner: &str) -> Result<Option<i64>, StoreError> {
        let value = match self.add(request.counter, request.count).await {
            Ok(value) => value,
            Err(error) => {
                // Let a retry claim the key at once instead of waiting out the lease.
                self.release(record_id, owner).await;
                return Err(error);
            }
        };
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(ID, AttributeValue::S(record_id.to_owned()))
            .update_expression("SET #new_value = :value")
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#new_value", NEW_VALUE)
            .expression_attribute_names("#owner", OWNER)
            .expression_attribute_values(":value", AttributeValue::N(value.to_string()))
            .expression_attribute_values(":owner", AttributeValue::S(owner.to_owned()));
        let result = conflicts_retried(|| request.clone().send()).await;
        Ok(match claim_outcome("UpdateItem", result)? {
            Claim::Won => Some(value),
            Claim::Lost => None,
        })
    }

    async fn release(&self, record_id: &str, owner: &str) {
        let request = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(ID, AttributeValue::S(record_id.to_owned()))
            .condition_expression("#owner = :owner AND attribute_not_exists(#new_value)")
            .expression_attribute_names("#owner", OWNER)
            .expression_attribute_names("#new_value", NEW_VALUE)
            .expression_attribute_values(":owner", AttributeValue::S(owner.to_owned()));
        let result = conflicts_retried(|| request.clone().send()).await;
        if let Err(error) = result {
            tracing::warn!(error = %DisplayErrorContext(&error), "could not release an idempotency key; it frees up when its lease ends");
        }
    }

    async fn read_record(&self, record_id: &str) -> Result<Option<KeyRecord>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(ID, AttributeValue::S(record_id.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| classify("GetItem", error))?;
        let Some(item) = output.item else { return Ok(None) };
        let item = Some(&item);
        let required = |name: &str| {
            integer(item, name)?.ok_or_else(|| StoreError::Database(format!("idempotency record lacks {name}")))
        };
        Ok(Some(KeyRecord {
            counter: string(item, COUNTER)?,
            count: u32::try_from(required(COUNT)?).map_err(|_| StoreError::Database("bad count".into()))?,
            owner: string(item, OWNER)?,
            lease_until_ms: required(LEASE_UNTIL_MS)?.try_into().unwrap_or(0),
            new_value: integer(item, NEW_VALUE)?,
        }))
    }

    /// Leases are dated by the holder's clock and judged by the reader's: a reader whose
    /// clock is ahead of the holder's by more than the lease takes over a live holder's key
    /// (the holder's value then goes unused, a gap); one behind by S takes over a dead
    /// holder's key S later (answering `409 idempotency_key_in_progress` meanwhile). Either
    /// way the key keeps one answer: only the record's owner can store it.
    fn lease_end(&self) -> u64 {
        self.now_millis().saturating_add(u64::try_from(self.timings.lease.as_millis()).unwrap_or(u64::MAX))
    }

    fn now_millis(&self) -> u64 {
        u64::try_from(self.clock.since_epoch().as_millis()).unwrap_or(u64::MAX)
    }
}

impl CounterStore for DynamoStore {
    async fn increment(&self, request: &Increment<'_>) -> Result<i64, StoreError> {
        match request.idempotency_key {
            None => self.add(request.counter, request.count).await,
            Some(key) => self.idempotent_increment(request, key).await,
        }
    }

    async fn value(&self, counter: &str) -> Result<Option<i64>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(ID, AttributeValue::S(counter.to_owned()))
            .consistent_read(true)
            .projection_expression("#value")
            .expression_attribute_names("#value", LAST_VALUE)
            .send()
            .await
            .map_err(|error| classify("GetItem", error))?;
        integer(output.item.as_ref(), LAST_VALUE)
    }
}

impl CounterAdmin for DynamoStore {
    async fn list(&self, prefix: &str) -> Result<Vec<(String, i64)>, StoreError> {
        let mut scan = self
            .client
            .scan()
            .table_name(&self.table)
            .consistent_read(true)
            .projection_expression("#id, #value")
            .expression_attribute_names("#id", ID)
            .expression_attribute_names("#value", LAST_VALUE);
        if !prefix.is_empty() {
            scan = scan
                .filter_expression("begins_with(#id, :prefix)")
                .expression_attribute_values(":prefix", AttributeValue::S(prefix.to_owned()));
        }
        let mut pages = scan.into_paginator().send();
        let mut counters = Vec::new();
        while let Some(page) = pages.next().await {
            for item in page.map_err(|error| classify("Scan", error))?.items() {
                let Some(AttributeValue::S(name)) = item.get(ID) else { continue };
                if name.starts_with(RESERVED_PREFIX) {
                    continue;
                }
                // An item without a value was never incremented, as `value` reports it;
                // one whose value is not an integer stops the listing rather than being
                // left out of an export.
                let value = integer(Some(item), LAST_VALUE)
                    .map_err(|error| StoreError::Database(format!("counter {name:?}: {error}")))?;
                if let Some(value) = value {
                    counters.push((name.clone(), value));
                }
            }
        }
        counters.sort_unstable();
        Ok(counters)
    }

    async fn raise(&self, counter: &str, at_least: i64) -> Result<Raised, StoreError> {
        // One conditional write: it and any `ADD` are serialized by DynamoDB on the item.
        // On a failed condition the item comes back with the error
        // (https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_UpdateItem.html#DDB-UpdateItem-request-ReturnValuesOnConditionCheckFailure).
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(ID, AttributeValue::S(counter.to_owned()))
            .update_expression("SET #value = :target")
            .condition_expression("attribute_not_exists(#value) OR #value < :target")
            .expression_attribute_names("#value", LAST_VALUE)
            .expression_attribute_values(":target", AttributeValue::N(at_least.to_string()))
            .return_values(ReturnValue::UpdatedOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let result = conflicts_retried(|| request.clone().send()).await;
        match result {
            Ok(output) => Ok(Raised { before: integer(output.attributes.as_ref(), LAST_VALUE)?, after: at_least }),
            Err(error) => match error.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(failed)) => {
                    let value = integer(failed.item.as_ref(), LAST_VALUE)?.ok_or_else(|| {
                        StoreError::Database(format!("UpdateItem failed its condition and returned no {LAST_VALUE}"))
                    })?;
                    Ok(Raised { before: Some(value), after: value })
                }
                _ => Err(classify("UpdateItem", error)),
            },
        }
    }
}

/// A write sent until it is not refused with [`REPLICATED_WRITE_CONFLICT`], by the one
/// retry policy ([`CONFLICTS`]); any other outcome, or the last conflict once the time is
/// up, is the answer. A conflicted write was not applied, so no value is skipped or
/// handed out twice by sending it again.
async fn conflicts_retried<T, E, R, Fut>(send: impl FnMut() -> Fut) -> Result<T, SdkError<E, R>>
where
    E: ProvideErrorMetadata,
    Fut: std::future::Future<Output = Result<T, SdkError<E, R>>>,
{
    CONFLICTS.retry(send, |error: &SdkError<E, R>| error.code() == Some(REPLICATED_WRITE_CONFLICT)).await
}

/// Maps an SDK error to the store's, keeping the operation, error code and message.
fn classify<E, R>(operation: &str, error: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let detail = format!("{operation}: {}", DisplayErrorContext(&error));
    match error.code() {
        // Contention that outlasted its retries: the caller may try again, as after a
        // throttle; nothing was written.
        Some(code) if THROTTLING_CODES.contains(&code) || code == REPLICATED_WRITE_CONFLICT => {
            StoreError::Throttled(detail)
        }
        _ => StoreError::Database(detail),
    }
}

/// A conditional write's outcome: a failed condition means another request holds the key.
fn claim_outcome<T, E, R>(operation: &str, result: Result<T, SdkError<E, R>>) -> Result<Claim, StoreError>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match result {
        Ok(_) => Ok(Claim::Won),
        Err(error) if error.code() == Some("ConditionalCheckFailedException") => Ok(Claim::Lost),
        Err(error) => Err(classify(operation, error)),
    }
}

fn integer(item: Option<&HashMap<String, AttributeValue>>, name: &str) -> Result<Option<i64>, StoreError> {
    match item.and_then(|item| item.get(name)) {
        None => Ok(None),
        Some(AttributeValue::N(number)) => number
            .parse()
            .map(Some)
            .map_err(|_| StoreError::Database(format!("{name} is {number}, not a 64-bit integer"))),
        Some(other) => Err(StoreError::Database(format!("{name} is not a number: {other:?}"))),
    }
}

fn string(item: Option<&HashMap<String, AttributeValue>>, name: &str) -> Result<String, StoreError> {
    match item.and_then(|item| item.get(name)) {
        Some(AttributeValue::S(value)) => Ok(value.clone()),
        _ => Err(StoreError::Database(format!("idempotency record lacks string {name}"))),
    }
}

/// Why waiting for an idempotency key's answer ended without it.
enum Waited {
    Store(StoreError),
    /// The request holding the key did not answer in time.
    TimedOut,
}

impl From<StoreError> for Waited {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

impl From<TimedOut> for Waited {
    fn from(_: TimedOut) -> Self {
        Self::TimedOut
    }
}

/// Scans one page of the sweep and deletes the records in it that expired before
/// `cutoff` (seconds since the epoch).
async fn sweep_page(client: &Client, table: &str, sweep: &Sweep, cutoff: u64) -> Result<(), String> {
    let SweepCursor { segment, start } = sweep.cursor.lock().expect("not poisoned").take().unwrap_or_else(|| {
        let random = RandomState::new().hash_one(since_epoch());
        SweepCursor {
            segment: i32::try_from(random % u64::from(SWEEP_SEGMENTS.unsigned_abs())).unwrap_or(0),
            start: None,
        }
    });
    let page = client
        .scan()
        .table_name(table)
        .segment(segment)
        .total_segments(SWEEP_SEGMENTS)
        .limit(SWEEP_PAGE)
        .set_exclusive_start_key(start)
        .filter_expression("begins_with(#id, :prefix) AND #expires < :cutoff")
        .projection_expression("#id")
        .expression_attribute_names("#id", ID)
        .expression_attribute_names("#expires", EXPIRES_AT)
        .expression_attribute_values(":prefix", AttributeValue::S(format!("{RESERVED_PREFIX}idempotency#")))
        .expression_attribute_values(":cutoff", AttributeValue::N(cutoff.to_string()))
        .send()
        .await
        .map_err(|error| format!("Scan: {}", DisplayErrorContext(&error)))?;
    // The next page, or at the end of this segment the next segment's first.
    let next = match page.last_evaluated_key.clone() {
        Some(key) => SweepCursor { segment, start: Some(key) },
        None => SweepCursor { segment: (segment + 1) % SWEEP_SEGMENTS, start: None },
    };
    *sweep.cursor.lock().expect("not poisoned") = Some(next);
    for item in page.items() {
        let Some(id) = item.get(ID) else { continue };
        let delete = client
            .delete_item()
            .table_name(table)
            .key(ID, id.clone())
            .condition_expression("#expires < :cutoff")
            .expression_attribute_names("#expires", EXPIRES_AT)
            .expression_attribute_values(":cutoff", AttributeValue::N(cutoff.to_string()));
        if let Err(error) = delete.send().await
            && error.as_service_error().is_none_or(|error| !error.is_conditional_check_failed_exception())
        {
            return Err(format!("DeleteItem: {}", DisplayErrorContext(&error)));
        }
    }
    Ok(())
}

/// A token no other request, in this or any other process, will hold.
fn owner_token() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let process_salt = RandomState::new().hash_one(std::process::id());
    format!("{process_salt:016x}-{}-{}", since_epoch().as_millis(), NEXT.fetch_add(1, Ordering::Relaxed))
}
