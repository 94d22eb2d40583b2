//! ID pools: unique IDs handed out from blocks reserved upstream with one write each.
//!
//! A [`Pool`] holds the block it hands out from and, fetched in the background while that
//! one still has most of its values left, the next (a double buffer). Handing out an ID
//! is one atomic add on the current block; the network is only waited on when both
//! blocks are spent, which in steady state does not happen.

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use counter_function::api::Incremented;
use counter_function::retry::{Backoff, Retry};
use counter_function::validate::MAX_COUNT;
use tokio::sync::Notify;

use crate::client::Client;
use crate::cursor::{Claimed, Cursor};
use crate::error::Error;
use crate::ledger::{Ledger, Overlap};
use crate::ledger_file::LedgerFile;

/// The next block is fetched once this share of the current one is handed out, leaving
/// the rest (80%) to hand out while it comes (tinyid loads at 20%, Leaf at 10%).
const REFILL_SHARE: f64 = 0.2;

/// A block fetch that fails is tried again by this schedule, for as long as the pool
/// lives: the first pauses are short, as most outages are.
const FETCH: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5), Duration::from_secs(3600));

/// What a caller is told to wait before trying again when a pool is dry or its upstream
/// is unavailable: about when the next fetch attempt is due.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);
/// How long a cold pool (one that never had a block) waits for its first fetch while the
/// fetch's attempts fail, at most `max_wait`.
const COLD_WAIT: Duration = Duration::from_secs(1);

/// How a pool sizes its blocks and how long it waits for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolOptions {
    block_duration: Duration,
    min_block: u32,
    max_block: u32,
    max_wait: Duration,
    drop_idle_after: Duration,
}

impl Default for PoolOptions {
    /// Blocks that last about 60 s, of 10 to 1,000,000 IDs; a dry pool waits up to 5 s;
    /// [`Pools`] drops a pool unused for 10 minutes.
    fn default() -> Self {
        Self {
            block_duration: Duration::from_secs(60),
            min_block: 10,
            max_block: MAX_COUNT,
            max_wait: Duration::from_secs(5),
            drop_idle_after: Duration::from_secs(600),
        }
    }
}

impl PoolOptions {
    /// How long a block should last at the rate IDs are taken. Longer blocks mean fewer
    /// upstream writes and a longer outage ridden out; shorter ones a smaller gap when
    /// the process ends.
    pub fn block_duration(mut self, duration: Duration) -> Self {
        self.block_duration = duration.max(Duration::from_millis(1));
        self
    }

    /// The smallest block (the first is this size): at least 1, at most the largest.
    pub fn min_block(mut self, size: u32) -> Self {
        self.min_block = size.clamp(1, MAX_COUNT);
        self.max_block = self.max_block.max(self.min_block);
        self
    }

    /// The largest block: at most the API's `MAX_COUNT`, 1,000,000.
    pub fn max_block(mut self, size: u32) -> Self {
        self.max_block = size.clamp(1, MAX_COUNT);
        self.min_block = self.min_block.min(self.max_block);
        self
    }

    /// How long [`Pool::next`] waits for a block when it holds none and the upstream has
    /// not failed yet (at start, or when IDs are taken faster than blocks arrive).
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }

    /// How long a pool of [`Pools`] may go unused (no [`Pools::get`]) before it is
    /// dropped, with the IDs it still holds: those become a gap. So memory follows the
    /// counters in use, not every counter ever asked for. At least a second.
    pub fn drop_idle_after(mut self, idle: Duration) -> Self {
        self.drop_idle_after = idle.max(Duration::from_secs(1));
        self
    }

    /// The size of the next block, from the one before: what lasts
    /// [`block_duration`](Self::block_duration) at the rate its first IDs were taken,
    /// at most twice the one before (a burst does not reserve a million IDs at once),
    /// between the smallest and the largest.
    fn next_block(&self, previous: u32, handed: u64, elapsed: Duration) -> u32 {
        if previous == 0 {
            return self.min_block;
        }
        let rate = handed as f64 / elapsed.as_secs_f64().max(0.001);
        let wanted = (rate * self.block_duration.as_secs_f64()).ceil().min(f64::from(MAX_COUNT)) as u32;
        let ceiling = previous.saturating_mul(2).clamp(self.min_block, self.max_block);
        wanted.clamp(self.min_block, ceiling)
    }
}

/// Why a pool gave no IDs.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PoolError {
    /// The pool holds no IDs of the counter and its upstream cannot give more now (it
    /// failed, or answered what cannot be right). The pool keeps trying by itself.
    #[error("no IDs of counter {counter:?} are held and the upstream cannot give more now: {reason}")]
    Unavailable {
        /// The pool's counter.
        counter: String,
        /// What the upstream's last attempt failed with.
        reason: String,
    },
    /// The upstream refused the request itself (such as an `Idempotency-Key` first used
    /// with another count): trying again will not help.
    #[error(transparent)]
    Refused(Error),
    /// The pool holds no IDs of the counter and the upstream refuses this client (403):
    /// its API key or signature is wrong, or its identity may not invoke the API. The pool
    /// keeps trying, and IDs flow once the key or the grant is right.
    #[error("no IDs of counter {counter:?} are held and the upstream refuses this client: {reason}")]
    Forbidden {
        /// The pool's counter.
        counter: String,
        /// What the upstream answered.
        reason: String,
    },
    /// A `count` outside 1 to [`MAX_COUNT`].
    #[error("count must be a whole number from 1 to {MAX_COUNT}")]
    InvalidCount,
}

impl PoolError {
    /// How long to wait before asking again.
    pub fn retry_after(&self) -> Duration {
        RETRY_AFTER
    }
}

/// Counts kept across the pools of one [`Pools`].
#[derive(Debug, Default)]
struct Stats {
    blocks_fetched: AtomicU64,
    upstream_errors: AtomicU64,
    answers_refused: AtomicU64,
    pools_dropped: AtomicU64,
}

/// Hands out unique IDs of one counter from blocks it reserves upstream.
///
/// What it promises:
/// - **Unique.** No value is handed out twice: not by this pool, nor by any other pool,
///   process or client of the same upstream counter, since each block is reserved there
///   with one atomic write.
/// - **Increasing within the pool.** A [`next`](Pool::next) (or a [`take`](Pool::take)
///   served from the block) that starts after another returned gets a higher value. A
///   `take` too large for the current block is reserved straight from the upstream, so
///   it lies above the pool's blocks and later values from them are lower. Across pools
///   values only trend upward: two pools hand out from their own blocks, so their values
///   interleave.
/// - **Gaps, never repeats.** Values a pool held when its process ended (at most its
///   two blocks) are never handed out by anyone.
/// - **Across restarts**, with a [`LedgerFile`]: the end of every range is recorded there
///   before any value of it is handed out, and a pool made again refuses every range at
///   or below what it records, so an upstream that went back (restored from a backup)
///   gets no value handed out twice.
/// - **No hang.** When the upstream fails, the pool hands out what it holds; once that
///   is spent, calls fail at once with [`PoolError::Unavailable`] until the upstream
///   answers again, which the pool notices by itself.
///
/// Clones share the pool. It must be made inside a Tokio runtime, which runs its fetches;
/// any thread may take IDs.
#[derive(Debug, Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Itself, for the fetches it starts.
    me: Weak<Inner>,
    counter: String,
    client: Client,
    options: PoolOptions,
    runtime: tokio::runtime::Handle,
    /// The block handed out from; replaced whole when spent.
    current: Cursor,
    state: Mutex<State>,
    /// Woken when a fetch ends, well or not.
    fetched: Notify,
    stats: Arc<Stats>,
    /// Where the end of each range received is recorded before it is handed out.
    ledger_file: Option<Arc<LedgerFile>>,
}

#[derive(Debug, Default)]
struct State {
    /// The next block, fetched and waiting for the current one to be spent.
    buffered: Option<RangeInclusive<i64>>,
    fetching: bool,
    /// What calls fail with while the last fetch attempt failed, until one succeeds.
    failure: Option<PoolError>,
    /// Whether the last answer was refused as lying at or below the recorded floor.
    went_back: bool,
    /// The current block's generation, and since when it is current.
    generation: u64,
    since: Option<Instant>,
    ledger: Ledger,
}

impl Pool {
    /// A pool of `counter`'s IDs from the API `client` calls.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn new(client: Client, counter: impl Into<String>, options: PoolOptions) -> Self {
        Self::with_stats(client, counter.into(), options, Arc::default(), None)
    }

    /// A pool like [`new`](Self::new) that records the end of every range in `ledger`
    /// before handing out any of it, and refuses every range at or below what `ledger`
    /// recorded for the counter before.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn with_ledger_file(
        client: Client,
        counter: impl Into<String>,
        options: PoolOptions,
        ledger: Arc<LedgerFile>,
    ) -> Self {
        Self::with_stats(client, counter.into(), options, Arc::default(), Some(ledger))
    }

    fn with_stats(
        client: Client,
        counter: String,
        options: PoolOptions,
        stats: Arc<Stats>,
        ledger_file: Option<Arc<LedgerFile>>,
    ) -> Self {
        let floor = ledger_file.as_ref().map_or(0, |file| file.high(&counter));
        let inner = |me: &Weak<Inner>| Inner {
            me: me.clone(),
            counter,
            client,
            options,
            runtime: tokio::runtime::Handle::current(),
            current: Cursor::new(),
            state: Mutex::new(State { ledger: Ledger::above(floor), ..State::default() }),
            fetched: Notify::new(),
            stats,
            ledger_file,
        };
        Self { inner: Arc::new_cyclic(inner) }
    }

    /// The counter it hands out IDs of.
    pub fn counter(&self) -> &str {
        &self.inner.counter
    }

    /// The next ID. In steady state it is one atomic add and never waits; it waits for a
    /// block only when the pool holds none and the upstream has not failed (at start, or
    /// when IDs go faster than blocks come), at most the options' `max_wait`.
    pub async fn next(&self) -> Result<i64, PoolError> {
        loop {
            match self.inner.claim_one() {
                Ok(value) => return Ok(value),
                Err(generation) => self.inner.refill(generation).await?,
            }
        }
    }

    /// The next ID if the pool holds one, without waiting (for a caller that is not
    /// async, or that prefers to do something else when the pool is dry).
    pub fn try_next(&self) -> Option<i64> {
        loop {
            match self.inner.claim_one() {
                Ok(value) => return Some(value),
                Err(generation) => {
                    let mut state = self.inner.lock();
                    if !self.inner.switch(&mut state, generation) {
                        self.inner.start_fetch(&mut state);
                        return None;
                    }
                }
            }
        }
    }

    /// `count` consecutive IDs: from the current block when they fit, else reserved
    /// straight from the upstream (so they are above the pool's current block).
    pub async fn take(&self, count: u32) -> Result<RangeInclusive<i64>, PoolError> {
        if !(1..=MAX_COUNT).contains(&count) {
            return Err(PoolError::InvalidCount);
        }
        loop {
            match self.inner.current.claim(count) {
                Claimed::Taken { range, refill } => {
                    if refill {
                        self.inner.start_fetch(&mut self.inner.lock());
                    }
                    return Ok(range);
                }
                Claimed::Spent(generation) => self.inner.refill(generation).await?,
                Claimed::TooFew => return self.inner.reserve(Some(count), None).await.map(|answer| answer.range),
            }
        }
    }

    /// Passes a caller's keyed increment to the upstream unchanged, so the key means the
    /// same there as from any other client: `count` values (one when `None`) the first
    /// time, the same answer on every retry. The answer is checked as blocks are.
    pub async fn increment_with_key(&self, count: Option<u32>, key: &str) -> Result<Incremented<'static>, PoolError> {
        if count.is_some_and(|count| !(1..=MAX_COUNT).contains(&count)) {
            return Err(PoolError::InvalidCount);
        }
        self.inner.reserve(count, Some(key)).await.map(|answer| answer.body)
    }

    /// IDs held: what is left of the current block, and the next block's.
    pub fn buffered(&self) -> u64 {
        let buffered = self.inner.lock().buffered.as_ref().map_or(0, range_len);
        let (current, taken) = self.inner.current.current();
        u64::from(current.size - taken) + buffered
    }

    /// Whether the upstream's last answer to this pool was a failure.
    pub fn failing(&self) -> bool {
        self.inner.lock().failure.is_some()
    }

    /// Whether the upstream's last answer to this pool was refused as lying at or below
    /// what its [`LedgerFile`] recorded before: the upstream went back.
    pub fn went_back(&self) -> bool {
        self.inner.lock().went_back
    }
}

/// What a reservation answered, checked.
struct Reserved {
    range: RangeInclusive<i64>,
    body: Incremented<'static>,
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("a pool's state is never left half-changed")
    }

    /// One value from the current block: the hot path. `Err` names the spent block.
    fn claim_one(&self) -> Result<i64, u64> {
        let (value, refill) = self.current.claim_one()?;
        if refill {
            self.start_fetch(&mut self.lock());
        }
        Ok(value)
    }

    /// Replaces the spent block of `generation` with the buffered one; `false` when
    /// there is none. `true` too when another caller replaced it already.
    fn switch(&self, state: &mut State, generation: u64) -> bool {
        if state.generation != generation {
            return true;
        }
        let Some(range) = state.buffered.take() else { return false };
        state.generation += 1;
        state.since = Some(Instant::now());
        self.current.install(state.generation, &range, REFILL_SHARE);
        true
    }

    /// Waits until the spent block of `generation` is replaced, fetching one if need be;
    /// fails at once while the upstream is failing, except for a cold pool (one that
    /// never had a block), which waits up to [`COLD_WAIT`] for its first fetch's next
    /// attempt: that first fetch's answer lost is ordinary, and its retry, with the same
    /// key, gets the block.
    async fn refill(&self, generation: u64) -> Result<(), PoolError> {
        let now = tokio::time::Instant::now();
        let deadline = now + self.options.max_wait;
        let cold_deadline = now + COLD_WAIT.min(self.options.max_wait);
        loop {
            let mut fetched = pin!(self.fetched.notified());
            // Registered before the state is read, so no wake-up is missed.
            fetched.as_mut().enable();
            let wait_until = {
                let mut state = self.lock();
                if self.switch(&mut state, generation) {
                    return Ok(());
                }
                match &state.failure {
                    Some(failure) => {
                        let cold = state.since.is_none() && state.fetching;
                        if !cold || tokio::time::Instant::now() >= cold_deadline {
                            return Err(failure.clone());
                        }
                        cold_deadline
                    }
                    None => {
                        self.start_fetch(&mut state);
                        deadline
                    }
                }
            };
            if tokio::time::timeout_at(wait_until, fetched).await.is_err() {
                let state = self.lock();
                if let Some(failure) = &state.failure {
                    return Err(failure.clone());
                }
                let waited = self.options.max_wait.as_secs_f64();
                return Err(self.unavailable(format!("no block arrived within {waited} s")));
            }
        }
    }

    /// Starts fetching the next block unless one is buffered or on its way.
    fn start_fetch(&self, state: &mut State) {
        if state.fetching || state.buffered.is_some() {
            return;
        }
        state.fetching = true;
        let (current, taken) = self.current.current();
        let elapsed = state.since.map_or(Duration::ZERO, |since| since.elapsed());
        let size = self.options.next_block(current.size, u64::from(taken), elapsed);
        // The fetch holds the pool weakly: dropping the last handle ends it.
        self.runtime.spawn(fetch(self.me.clone(), size));
    }

    fn unavailable(&self, reason: String) -> PoolError {
        PoolError::Unavailable { counter: self.counter.clone(), reason }
    }

    /// What a call that failed so makes the pool answer: a refusal of this client's key
    /// or signature is told apart, as a fix of its own.
    fn failed(&self, error: &Error) -> PoolError {
        let reason = error.to_string();
        match error {
            Error::Forbidden { .. } | Error::SignatureRefused { .. } => {
                PoolError::Forbidden { counter: self.counter.clone(), reason }
            }
            _ => self.unavailable(reason),
        }
    }

    /// Reserves `count` values straight from the upstream (with a new key), or passes a
    /// caller's keyed request on; the answer is checked before anything is handed out.
    /// While the upstream is failing it fails at once, and a call takes at most the
    /// options' `max_wait`.
    async fn reserve(&self, count: Option<u32>, key: Option<&str>) -> Result<Reserved, PoolError> {
        let high_when_sent = {
            let state = self.lock();
            if let Some(failure) = &state.failure {
                return Err(failure.clone());
            }
            key.is_none().then(|| state.ledger.high())
        };
        let fresh_key;
        let sent_key = match key {
            Some(key) => key,
            None => {
                fresh_key = new_key();
                &fresh_key
            }
        };
        let call = self.client.increment(&self.counter, count, sent_key);
        let answer = match tokio::time::timeout(self.options.max_wait, call).await {
            Ok(answer) => answer,
            Err(_) => {
                let waited = self.options.max_wait.as_secs_f64();
                return Err(self.unavailable(format!("the upstream did not answer within {waited} s")));
            }
        };
        let answer = answer.map_err(|error| {
            self.stats.upstream_errors.fetch_add(1, Ordering::Relaxed);
            if error.is_refusal() { PoolError::Refused(error) } else { self.failed(&error) }
        })?;
        let range = self.admit(count, &answer, high_when_sent, key);
        let range = match range {
            Ok(range) => self.record(range).await,
            Err(wrong) => Err(wrong),
        };
        let range = range.map_err(|wrong| {
            self.stats.upstream_errors.fetch_add(1, Ordering::Relaxed);
            self.unavailable(wrong)
        })?;
        Ok(Reserved { range, body: answer })
    }

    /// The range `answer` reserved, recorded in the ledger, unless it is not the answer
    /// to what was asked or overlaps what was received before.
    fn admit(
        &self,
        count: Option<u32>,
        answer: &Incremented<'_>,
        high_when_sent: Option<i64>,
        key: Option<&str>,
    ) -> Result<RangeInclusive<i64>, String> {
        let range = check(&self.counter, count, answer).inspect_err(|_| {
            self.stats.answers_refused.fetch_add(1, Ordering::Relaxed);
        })?;
        let mut state = self.lock();
        let admitted = state.ledger.admit(range.clone(), high_when_sent, key);
        state.went_back = matches!(admitted, Err(Overlap::WentBack { .. }));
        drop(state);
        admitted.map_err(|overlap: Overlap| {
            self.stats.answers_refused.fetch_add(1, Ordering::Relaxed);
            let reason = format!("refused the upstream's answer: {overlap}");
            match (&overlap, &self.ledger_file) {
                (Overlap::WentBack { .. }, Some(file)) => {
                    let recorded = file.path().display();
                    tracing::error!(counter = self.counter, %reason, %recorded, "the upstream went back");
                }
                _ => tracing::error!(counter = self.counter, %reason, "wrong upstream answer"),
            }
            reason
        })?;
        Ok(range)
    }

    /// `range` once its end is on disk in the ledger file (when there is one), so that a
    /// process started again refuses it too; nothing of it may be handed out before.
    async fn record(&self, range: RangeInclusive<i64>) -> Result<RangeInclusive<i64>, String> {
        let Some(file) = &self.ledger_file else { return Ok(range) };
        let high = *range.end();
        if file.high(&self.counter) >= high {
            return Ok(range);
        }
        let (file, counter) = (Arc::clone(file), self.counter.clone());
        let recorded = self.runtime.spawn_blocking(move || file.record(&counter, high)).await;
        let failed = match recorded {
            Ok(Ok(())) => return Ok(range),
            Ok(Err(error)) => error.to_string(),
            Err(error) => error.to_string(),
        };
        let reason = format!(
            "could not record the range {}-{high} before handing it out, so none of it is: {failed}",
            range.start()
        );
        tracing::error!(counter = self.counter, %reason, "recording a range failed");
        Err(reason)
    }
}

/// Fetches one block of `size`, trying until it arrives or the pool is dropped. Every
/// attempt of one reservation sends the same `Idempotency-Key`, so an attempt whose
/// answer was lost is answered with its block when tried again, rather than wasting it;
/// a new key is taken only after an answer the same key would get again (refused by the
/// checks, not the API's, or a 4xx refusal).
async fn fetch(pool: Weak<Inner>, size: u32) {
    /// Why an attempt got no block.
    enum Failed {
        Call(Error),
        Wrong(String),
        Dropped,
    }
    let order = Mutex::new(None::<(String, i64)>);
    loop {
        let attempt = || async {
            let pool = pool.upgrade().ok_or(Failed::Dropped)?;
            let (key, high_when_sent) = order
                .lock()
                .expect("never poisoned")
                .get_or_insert_with(|| (new_key(), pool.lock().ledger.high()))
                .clone();
            let answer = pool.client.increment_once(&pool.counter, Some(size), &key).await.map_err(|error| {
                // What the same key would be answered again: a body that is not the
                // API's, or a refusal of the request itself.
                let permanent = matches!(&error, Error::Unexpected { status: 200, .. })
                    || (error.is_refusal() && error.code() != Some("idempotency_key_in_progress"));
                if permanent {
                    *order.lock().expect("never poisoned") = None;
                }
                Failed::Call(error)
            })?;
            let range = match pool.admit(Some(size), &answer, Some(high_when_sent), None) {
                Ok(range) => pool.record(range).await,
                Err(wrong) => Err(wrong),
            };
            let range = range.map_err(|reason| {
                // The same key would be answered the same again (or its range was not
                // recorded, and is given up: a gap).
                *order.lock().expect("never poisoned") = None;
                Failed::Wrong(reason)
            })?;
            Ok::<_, Failed>((pool, range))
        };
        let failed = |failure: &Failed| {
            let Some(pool) = pool.upgrade() else { return Retry::No };
            let (failure, retry) = match failure {
                Failed::Dropped => return Retry::No,
                // Another attempt of this key is still being answered: not a failure.
                Failed::Call(error) if error.code() == Some("idempotency_key_in_progress") => {
                    return error.retry();
                }
                Failed::Call(error) => (pool.failed(error), error.retry()),
                Failed::Wrong(reason) => (pool.unavailable(reason.clone()), Retry::Backoff),
            };
            tracing::warn!(counter = pool.counter, reason = %failure, "fetching a block failed; retrying");
            pool.stats.upstream_errors.fetch_add(1, Ordering::Relaxed);
            pool.lock().failure = Some(failure);
            pool.fetched.notify_waiters();
            // Every failure is tried again: the pool recovers by itself.
            if let Retry::After(after) = retry { Retry::After(after) } else { Retry::Backoff }
        };
        match FETCH.retry_as(attempt, failed).await {
            Ok((pool, range)) => {
                let mut state = pool.lock();
                state.buffered = Some(range);
                state.fetching = false;
                state.failure = None;
                pool.stats.blocks_fetched.fetch_add(1, Ordering::Relaxed);
                drop(state);
                pool.fetched.notify_waiters();
                return;
            }
            Err(Failed::Dropped) => return,
            // The schedule gave up: start it again.
            Err(Failed::Call(_) | Failed::Wrong(_)) => {}
        }
    }
}

/// The range an answer reserved, if it is the answer to what was asked.
fn check(counter: &str, count: Option<u32>, answer: &Incremented<'_>) -> Result<RangeInclusive<i64>, String> {
    let wrong = |what: String| {
        let reason = format!("refused the upstream's answer: {what}");
        tracing::error!(counter, %reason, "wrong upstream answer");
        reason
    };
    if answer.counter != counter {
        return Err(wrong(format!("it is for counter {:?}, not {counter:?}", answer.counter)));
    }
    if answer.count != count {
        let shown = |count: Option<u32>| count.map_or_else(|| "none".to_owned(), |count| count.to_string());
        return Err(wrong(format!("its count is {}, not {}", shown(answer.count), shown(count))));
    }
    let size = i64::from(count.unwrap_or(1));
    let first = match (count, answer.first_value) {
        (Some(_), Some(first)) => first,
        (None, None) => answer.new_value,
        (_, first) => return Err(wrong(format!("its first_value is {first:?}"))),
    };
    if first < 1 || answer.new_value.checked_sub(first) != Some(size - 1) {
        return Err(wrong(format!("{first}-{} is not {size} values from 1 up", answer.new_value)));
    }
    Ok(first..=answer.new_value)
}

fn range_len(range: &RangeInclusive<i64>) -> u64 {
    u64::try_from(range.end() - range.start() + 1).unwrap_or(0)
}

fn new_key() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The pools of one upstream, one per counter, made on first use and dropped once unused
/// for the options' [`drop_idle_after`](PoolOptions::drop_idle_after).
#[derive(Debug)]
pub struct Pools {
    client: Client,
    options: PoolOptions,
    pools: Arc<RwLock<HashMap<String, Held>>>,
    /// When the pools were made: the origin of [`Held::used`] (Tokio's clock, which tests
    /// can move).
    epoch: tokio::time::Instant,
    stats: Arc<Stats>,
    ledger_file: Option<Arc<LedgerFile>>,
}

/// A pool of [`Pools`], and when it was last asked for.
#[derive(Debug)]
struct Held {
    pool: Pool,
    /// Milliseconds from [`Pools::epoch`] to the last [`Pools::get`] of it.
    used: AtomicU64,
}

/// What a [`Pools`] has done, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    /// Blocks reserved upstream.
    pub blocks_fetched: u64,
    /// Upstream calls that failed or answered what could not be right.
    pub upstream_errors: u64,
    /// Upstream answers refused by the checks: not the answer to what was asked, a range
    /// overlapping one received, or at or below what the [`LedgerFile`] recorded.
    pub answers_refused: u64,
    /// IDs held across the pools, ready to hand out.
    pub buffered: u64,
    /// Pools whose last upstream answer was a failure.
    pub failing: usize,
    /// Pools whose last upstream answer lay at or below what the [`LedgerFile`] recorded
    /// before: the upstream went back.
    pub went_back: usize,
    /// Pools held, one per counter asked for within
    /// [`drop_idle_after`](PoolOptions::drop_idle_after).
    pub pools: usize,
    /// Pools dropped for being unused, with the IDs they held.
    pub pools_dropped: u64,
}

impl Pools {
    /// Pools of the API `client` calls, each with `options`.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn new(client: Client, options: PoolOptions) -> Self {
        let pools = Arc::new(RwLock::new(HashMap::new()));
        let (epoch, stats) = (tokio::time::Instant::now(), Arc::new(Stats::default()));
        tokio::spawn(drop_idle(Arc::downgrade(&pools), epoch, options.drop_idle_after, Arc::clone(&stats)));
        Self { client, options, pools, epoch, stats, ledger_file: None }
    }

    /// Pools like [`new`](Self::new) whose ranges are recorded in `ledger` before any of
    /// their values is handed out, each refusing every range at or below what `ledger`
    /// recorded for its counter before (see [`Pool::with_ledger_file`]).
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn with_ledger_file(client: Client, options: PoolOptions, ledger: LedgerFile) -> Self {
        Self { ledger_file: Some(Arc::new(ledger)), ..Self::new(client, options) }
    }

    /// Where the ranges are recorded, if anywhere.
    pub fn ledger_file(&self) -> Option<&LedgerFile> {
        self.ledger_file.as_deref()
    }

    /// The pool of `counter`, made on first use.
    pub fn get(&self, counter: &str) -> Pool {
        let now = millis_since(self.epoch);
        if let Some(held) = self.pools.read().expect("never poisoned").get(counter) {
            held.used.store(now, Ordering::Relaxed);
            return held.pool.clone();
        }
        let mut pools = self.pools.write().expect("never poisoned");
        let held = pools.entry(counter.to_owned()).or_insert_with(|| {
            let ledger_file = self.ledger_file.clone();
            let pool = Pool::with_stats(
                self.client.clone(),
                counter.to_owned(),
                self.options,
                Arc::clone(&self.stats),
                ledger_file,
            );
            Held { pool, used: AtomicU64::new(now) }
        });
        held.used.store(now, Ordering::Relaxed);
        held.pool.clone()
    }

    /// The client the pools reserve blocks with.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// What the pools have done, and hold.
    pub fn stats(&self) -> PoolStats {
        let pools = self.pools.read().expect("never poisoned");
        let pools = || pools.values().map(|held| &held.pool);
        PoolStats {
            blocks_fetched: self.stats.blocks_fetched.load(Ordering::Relaxed),
            upstream_errors: self.stats.upstream_errors.load(Ordering::Relaxed),
            answers_refused: self.stats.answers_refused.load(Ordering::Relaxed),
            buffered: pools().map(Pool::buffered).sum(),
            failing: pools().filter(|pool| pool.failing()).count(),
            went_back: pools().filter(|pool| pool.went_back()).count(),
            pools: pools().count(),
            pools_dropped: self.stats.pools_dropped.load(Ordering::Relaxed),
        }
    }
}

fn millis_since(epoch: tokio::time::Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Drops the pools unused for `idle`, looking four times per `idle`, until the
/// [`Pools`] is dropped. A caller still holding a dropped pool keeps using it; the next
/// [`Pools::get`] makes a new one, whose blocks are new reservations (never a value
/// twice: only the IDs the dropped one held are lost, a gap).
async fn drop_idle(
    pools: Weak<RwLock<HashMap<String, Held>>>,
    epoch: tokio::time::Instant,
    idle: Duration,
    stats: Arc<Stats>,
) {
    let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
    let mut ticks = tokio::time::interval(idle / 4);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(pools) = pools.upgrade() else { return };
        let now = millis_since(epoch);
        let mut pools = pools.write().expect("never poisoned");
        let before = pools.len();
        pools.retain(|_, held| now.saturating_sub(held.used.load(Ordering::Relaxed)) < idle_ms);
        stats.pools_dropped.fetch_add((before - pools.len()) as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn pools_unused_past_the_bound_are_dropped_and_those_in_use_kept() {
        let endpoint = crate::Endpoint::new("http://127.0.0.1:9", crate::Auth::None).unwrap();
        let pools = Pools::new(Client::new(endpoint), PoolOptions::default().drop_idle_after(Duration::from_secs(60)));
        pools.get("idle");
        pools.get("busy");
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_secs(15)).await;
            pools.get("busy");
        }
        // 90 s on: "idle" unused for 90 s, "busy" for none.
        let stats = pools.stats();
        assert_eq!((stats.pools, stats.pools_dropped), (1, 1));
        assert!(pools.pools.read().unwrap().contains_key("busy"));
        // Asked for again, it is made again.
        pools.get("idle");
        assert_eq!(pools.stats().pools, 2);
    }

    #[test]
    fn a_block_lasts_the_target_time_at_the_rate_ids_are_taken() {
        let options = PoolOptions::default();
        // 1,000 IDs a second for 60 s, from a block big enough to allow it.
        assert_eq!(options.next_block(40_000, 1_000, Duration::from_secs(1)), 60_000);
        // Slower: a smaller block, never below the smallest.
        assert_eq!(options.next_block(40_000, 10, Duration::from_secs(1)), 600);
        assert_eq!(options.next_block(40_000, 1, Duration::from_secs(100)), 10);
        // The first block has nothing to go by.
        assert_eq!(options.next_block(0, 0, Duration::ZERO), 10);
    }

    #[test]
    fn a_block_at_most_doubles_and_never_passes_the_largest() {
        let options = PoolOptions::default();
        assert_eq!(options.next_block(100, 1_000_000, Duration::from_millis(1)), 200);
        assert_eq!(options.next_block(900_000, 1_000_000, Duration::from_millis(1)), MAX_COUNT);
        let capped = PoolOptions::default().max_block(500);
        assert_eq!(capped.next_block(400, 1_000_000, Duration::from_millis(1)), 500);
    }

    #[test]
    fn options_keep_the_smallest_block_within_the_largest() {
        let options = PoolOptions::default().max_block(5).min_block(50);
        assert_eq!((options.min_block, options.max_block), (50, 50));
        let options = PoolOptions::default().min_block(0).max_block(u32::MAX);
        assert_eq!((options.min_block, options.max_block), (1, MAX_COUNT));
    }

    #[test]
    fn only_the_answer_to_what_was_asked_is_taken() {
        let answer = |counter: &str, new_value, first_value, count| Incremented {
            counter: counter.to_owned().into(),
            new_value,
            first_value,
            count,
        };
        assert_eq!(check("a", Some(10), &answer("a", 20, Some(11), Some(10))), Ok(11..=20));
        assert_eq!(check("a", None, &answer("a", 5, None, None)), Ok(5..=5));
        assert!(check("a", Some(10), &answer("b", 20, Some(11), Some(10))).is_err(), "another counter");
        assert!(check("a", Some(10), &answer("a", 20, Some(16), Some(5))).is_err(), "another count");
        assert!(check("a", Some(10), &answer("a", 20, Some(12), Some(10))).is_err(), "a range of another size");
        assert!(check("a", Some(10), &answer("a", 20, None, Some(10))).is_err(), "no first value");
        assert!(check("a", Some(10), &answer("a", 5, Some(-4), Some(10))).is_err(), "values below 1");
    }
}
