//! Counters in a SQLite database file on this machine: the store of `counterctl serve`.
//!
//! One task, the [`Committer`], owns the database. Requests queue up on a channel; the
//! committer takes everything queued, applies it in one transaction, commits (one fsync of
//! the write-ahead log) and only then answers. What arrives while a commit is on its way to
//! disk forms the next batch, so throughput grows with concurrency instead of being capped
//! at one fsync per request (group commit). Reads take the same path, so they see exactly
//! what has been acknowledged.
//!
//! The committer runs on the same thread as the HTTP connections and blocks it for each
//! commit, as Redis does with `appendfsync always`: requests that arrive meanwhile wait in
//! the kernel's socket buffers, and no request is handed from one thread to another.
//!
//! Idempotency keys behave as in the DynamoDB store: the same key with the same counter and
//! count gets the first answer again, another counter or count is refused, and a key is
//! forgotten 24 hours after its first use. Requests with one key are applied one after the
//! other by the single committer, so no request ever waits for another one's key.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use counter_function::dynamo::IdempotencyTimings;
use counter_function::store::{self, CounterAdmin, CounterStore, Increment, Raised, StoreError};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

/// The database, inside the data directory.
pub(crate) const DATABASE_FILE: &str = "counters.sqlite3";
/// Held (`flock`) by the one process serving a data directory; the kernel releases it
/// when that process ends, however it ends.
pub(crate) const LOCK_FILE: &str = "serve.lock";
/// How long a stopping serve waits for requests in flight before it lets go of the data
/// directory; a client that never finishes sending its request must not keep it.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Most requests in one transaction: bounds how long the first of them waits.
const MAX_BATCH: usize = 1024;
/// Requests that may wait for the committer; past that, new ones wait to be queued.
const QUEUE_CAPACITY: usize = 4 * MAX_BATCH;
/// Expired idempotency records removed per commit: twice a full batch, so removal keeps
/// up with any rate of new keys without one commit ever doing a large delete.
const MAX_PURGE: i64 = 2 * MAX_BATCH as i64;
/// `PRAGMA user_version` of the schema below; a file with a later one is not touched.
const SCHEMA_VERSION: i64 = 1;
/// STRICT: values stay integers, whatever else writes to the file.
const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS counters (
        name TEXT PRIMARY KEY NOT NULL,
        value INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS idempotency_keys (
        key TEXT PRIMARY KEY NOT NULL,
        counter TEXT NOT NULL,
        count INTEGER NOT NULL,
        new_value INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX IF NOT EXISTS idempotency_keys_by_expiry ON idempotency_keys (expires_at);
";

#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenError {
    #[error("{} is in use by {holder}; wait for it to end or stop it, or pass another --data-dir", data_dir.display())]
    InUse { data_dir: PathBuf, holder: String },
    #[error("could not create or lock {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("could not open the database {}", path.display())]
    Database {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("SQLite cannot keep a write-ahead log for {} (journal mode stayed {journal})", path.display())]
    NoWriteAheadLog { path: PathBuf, journal: String },
    #[error("{} was written by a newer counterctl (schema version {found}); upgrade counterctl", path.display())]
    NewerSchema { path: PathBuf, found: i64 },
}

/// The handle requests go through; cheap to share.
#[derive(Clone)]
pub(crate) struct LocalStore {
    jobs: mpsc::Sender<Job>,
}

/// Owns the database and commits what the [`LocalStore`] handles queue. Its
/// [`run`](Self::run) blocks its thread for each commit, so it belongs on a runtime whose
/// thread does nothing that cannot wait for a commit (serve's single-threaded one).
pub(crate) struct Committer {
    database: Connection,
    queue: mpsc::Receiver<Job>,
    /// Released only after the database is closed, so that another process can take over.
    lock: File,
}

pub(crate) fn database_path(data_dir: &Path) -> PathBuf {
    data_dir.join(DATABASE_FILE)
}

impl LocalStore {
    /// Locks `data_dir` (creating it) and opens or creates its database; `user` (a
    /// command) is named to whoever tries next while this one holds it.
    pub(crate) fn open(data_dir: &Path, user: &str) -> Result<(Self, Committer), OpenError> {
        // Only its user reads the counters (and the lock file names the holder).
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)
            .map_err(|source| OpenError::Io { path: data_dir.to_owned(), source })?;
        let lock = lock_data_dir(data_dir, user)?;
        let database = open_database(&database_path(data_dir))?;
        let (jobs, queue) = mpsc::channel(QUEUE_CAPACITY);
        Ok((Self { jobs }, Committer { database, queue, lock }))
    }

    async fn submit<T>(
        &self,
        job: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Job,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send(job(reply)).await.map_err(|_| committer_stopped())?;
        answer.await.map_err(|_| committer_stopped())?
    }
}

impl CounterStore for LocalStore {
    async fn increment(&self, request: &Increment<'_>) -> Result<i64, StoreError> {
        self.submit(|reply| Job::Increment {
            counter: request.counter.to_owned(),
            count: request.count,
            idempotency_key: request.idempotency_key.map(str::to_owned),
            reply,
        })
        .await
    }

    async fn value(&self, counter: &str) -> Result<Option<i64>, StoreError> {
        self.submit(|reply| Job::Value { counter: counter.to_owned(), reply }).await
    }
}

impl CounterAdmin for LocalStore {
    async fn list(&self, prefix: &str) -> Result<Vec<(String, i64)>, StoreError> {
        self.submit(|reply| Job::List { prefix: prefix.to_owned(), reply }).await
    }

    async fn raise(&self, counter: &str, at_least: i64) -> Result<Raised, StoreError> {
        self.submit(|reply| Job::Raise { counter: counter.to_owned(), at_least, reply }).await
    }
}

fn committer_stopped() -> StoreError {
    StoreError::Database("the database committer has stopped".into())
}

fn lock_data_dir(data_dir: &Path, user: &str) -> Result<File, OpenError> {
    let path = data_dir.join(LOCK_FILE);
    let io_error = |source| OpenError::Io { path: path.clone(), source };
    let mut file =
        OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io_error)?;
    match file.try_lock() {
        Ok(()) => {
            // Who holds it, for the error message of the next one that tries.
            file.set_len(0).map_err(io_error)?;
            write!(file, "{user} (process {})", std::process::id()).map_err(io_error)?;
            Ok(file)
        }
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            file.read_to_string(&mut holder).map_err(io_error)?;
            Err(OpenError::InUse { data_dir: data_dir.to_owned(), holder })
        }
        Err(TryLockError::Error(source)) => Err(io_error(source)),
    }
}

fn open_database(path: &Path) -> Result<Connection, OpenError> {
    let database_error = |source| OpenError::Database { path: path.to_owned(), source };
    let database = Connection::open(path).map_err(database_error)?;
    // This process is the only user (the data dir is locked): SQLite may keep its locks
    // and the log index to itself instead of taking file locks for every transaction.
    database.pragma_update(None, "locking_mode", "EXCLUSIVE").map_err(database_error)?;
    // Query plans are made once per statement: otherwise binding a new `LIMIT` value
    // re-prepares the statement, which took most of a commit's CPU time.
    database.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true).map_err(database_error)?;
    // Write-ahead log with synchronous=FULL: COMMIT returns once the log is fsync'd.
    let journal: String =
        database.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0)).map_err(database_error)?;
    if !journal.eq_ignore_ascii_case("wal") {
        return Err(OpenError::NoWriteAheadLog { path: path.to_owned(), journal });
    }
    database.pragma_update(None, "synchronous", "FULL").map_err(database_error)?;
    // On macOS a plain fsync leaves the data in the drive's cache; F_FULLFSYNC flushes it.
    // Elsewhere SQLite ignores this.
    database.pragma_update(None, "fullfsync", true).map_err(database_error)?;
    let found: i64 = database.pragma_query_value(None, "user_version", |row| row.get(0)).map_err(database_error)?;
    if found > SCHEMA_VERSION {
        return Err(OpenError::NewerSchema { path: path.to_owned(), found });
    }
    database
        .execute_batch(&format!("BEGIN; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"))
        .map_err(database_error)?;
    Ok(database)
}

/// A request for the committer, with where its answer goes.
enum Job {
    Increment {
        counter: String,
        count: u32,
        idempotency_key: Option<String>,
        reply: oneshot::Sender<Result<i64, StoreError>>,
    },
    Value {
        counter: String,
        reply: oneshot::Sender<Result<Option<i64>, StoreError>>,
    },
    Raise {
        counter: String,
        at_least: i64,
        reply: oneshot::Sender<Result<Raised, StoreError>>,
    },
    List {
        prefix: String,
        reply: oneshot::Sender<Result<Vec<(String, i64)>, StoreError>>,
    },
}

/// A job's result, held back until its transaction is committed.
enum Answer {
    Increment(oneshot::Sender<Result<i64, StoreError>>, Result<i64, StoreError>),
    Value(oneshot::Sender<Result<Option<i64>, StoreError>>, Result<Option<i64>, StoreError>),
    Raise(oneshot::Sender<Result<Raised, StoreError>>, Result<Raised, StoreError>),
    List(oneshot::Sender<Result<Vec<(String, i64)>, StoreError>>, Result<Vec<(String, i64)>, StoreError>),
}

/// Hands a requester its answer; one that has gone away (its client disconnected)
/// needs none.
fn reply<T>(to: oneshot::Sender<Result<T, StoreError>>, result: Result<T, StoreError>) {
    let _ = to.send(result);
}

impl Job {
    fn apply(self, batch: &mut Batch<'_>) -> Answer {
        match self {
            Self::Increment { counter, count, idempotency_key, reply } => {
                Answer::Increment(reply, batch.increment(&counter, count, idempotency_key.as_deref()))
            }
            Self::Value { counter, reply } => Answer::Value(reply, batch.value(&counter)),
            Self::Raise { counter, at_least, reply } => Answer::Raise(reply, batch.raise(&counter, at_least)),
            Self::List { prefix, reply } => Answer::List(reply, batch.list(&prefix)),
        }
    }

    fn fail(self, error: &rusqlite::Error) {
        match self {
            Self::Increment { reply: to, .. } => reply(to, Err(database(error))),
            Self::Value { reply: to, .. } => reply(to, Err(database(error))),
            Self::Raise { reply: to, .. } => reply(to, Err(database(error))),
            Self::List { reply: to, .. } => reply(to, Err(database(error))),
        }
    }
}

impl Answer {
    fn send(self) {
        match self {
            Self::Increment(to, result) => reply(to, result),
            Self::Value(to, result) => reply(to, result),
            Self::Raise(to, result) => reply(to, result),
            Self::List(to, result) => reply(to, result),
        }
    }

    /// The transaction did not commit: whatever was computed in it never happened.
    fn fail(self, error: &rusqlite::Error) {
        match self {
            Self::Increment(to, _) => reply(to, Err(database(error))),
            Self::Value(to, _) => reply(to, Err(database(error))),
            Self::Raise(to, _) => reply(to, Err(database(error))),
            Self::List(to, _) => reply(to, Err(database(error))),
        }
    }
}

impl Committer {
    /// Commits batches until every [`LocalStore`] handle is gone and the last batch is
    /// committed; then closes the database and unlocks the data directory. `committed`
    /// hears of each batch: its number of jobs, how long it took (fsync included), and
    /// whether it was committed.
    pub(crate) async fn run(self, mut committed: impl FnMut(usize, Duration, bool)) {
        let Self { database, mut queue, lock } = self;
        let mut jobs = Vec::with_capacity(MAX_BATCH);
        while queue.recv_many(&mut jobs, MAX_BATCH).await > 0 {
            // Let the connections whose requests are already readable queue them too.
            tokio::task::yield_now().await;
            while jobs.len() < MAX_BATCH
                && let Ok(job) = queue.try_recv()
            {
                jobs.push(job);
            }
            let (size, started) = (jobs.len(), Instant::now());
            let succeeded = commit_batch(&database, jobs.drain(..));
            committed(size, started.elapsed(), succeeded);
        }
        drop(database);
        drop(lock);
    }
}

/// Applies `jobs` in one transaction and answers them once it is durable; false when it
/// failed (and they were answered with the error).
fn commit_batch(database: &Connection, jobs: impl Iterator<Item = Job>) -> bool {
    // BEGIN and COMMIT are prepared once, like every statement here, not parsed per batch.
    if let Err(error) = database.prepare_cached("BEGIN IMMEDIATE").and_then(|mut begin| begin.execute([])) {
        jobs.for_each(|job| job.fail(&error));
        return false;
    }
    let now = i64::try_from(store::unix_secs()).unwrap_or(i64::MAX);
    let mut batch = Batch { database, now, counters: HashMap::new() };
    let answers: Vec<Answer> = jobs.map(|job| job.apply(&mut batch)).collect();
    match batch.commit() {
        Ok(()) => {
            answers.into_iter().for_each(Answer::send);
            true
        }
        Err(error) => {
            // A failed COMMIT may have ended the transaction already.
            if !database.is_autocommit() {
                let _ = database.execute_batch("ROLLBACK");
            }
            answers.into_iter().for_each(|answer| answer.fail(&error));
            false
        }
    }
}

/// The jobs of one transaction. A counter is read at most once and written once, at the
/// end, however many increments of the batch it takes: a hot counter costs two statements
/// per batch, not two per request.
struct Batch<'a> {
    /// Inside the batch's transaction.
    database: &'a Connection,
    now: i64,
    counters: HashMap<String, Counter>,
}

#[derive(Clone, Copy)]
struct Counter {
    /// `None` while the counter does not exist.
    value: Option<i64>,
    changed: bool,
}

impl Batch<'_> {
    fn increment(&mut self, counter: &str, count: u32, idempotency_key: Option<&str>) -> Result<i64, StoreError> {
        let Some(key) = idempotency_key else {
            return self.add(counter, count);
        };
        let first_use = self
            .database
            .prepare_cached(
                "SELECT counter, count, new_value FROM idempotency_keys WHERE key = ?1 AND expires_at >= ?2",
            )
            .and_then(|mut select| {
                select
                    .query_row(params![key, self.now], |row| {
                        Ok((row.get::<_, String>(0)?, row.get::<_, u32>(1)?, row.get(2)?))
                    })
                    .optional()
            })
            .map_err(|error| database(&error))?;
        match first_use {
            Some((first_counter, first_count, new_value)) if first_counter == counter && first_count == count => {
                Ok(new_value)
            }
            Some((first_counter, first_count, _)) => {
                Err(StoreError::IdempotencyKeyReused { counter: first_counter, count: first_count })
            }
            None => {
                let new_value = self.add(counter, count)?;
                let expires_at = self.now + retention_secs();
                self.database
                    .prepare_cached(
                        "INSERT OR REPLACE INTO idempotency_keys (key, counter, count, new_value, expires_at)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                    )
                    .and_then(|mut insert| insert.execute(params![key, counter, count, new_value, expires_at]))
                    .map_err(|error| database(&error))?;
                Ok(new_value)
            }
        }
    }

    fn add(&mut self, counter: &str, count: u32) -> Result<i64, StoreError> {
        let current = self.counter(counter)?;
        let new_value = current
            .value
            .unwrap_or(0)
            .checked_add(i64::from(count))
            .ok_or_else(|| StoreError::Database(format!("counter {counter:?} would pass {}", i64::MAX)))?;
        self.counters.insert(counter.to_owned(), Counter { value: Some(new_value), changed: true });
        Ok(new_value)
    }

    fn value(&mut self, counter: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.counter(counter)?.value)
    }

    /// Between this batch's increments, so one before it is below `at_least` (it is
    /// raised past) and one after it is above.
    fn raise(&mut self, counter: &str, at_least: i64) -> Result<Raised, StoreError> {
        let before = self.counter(counter)?.value;
        match before {
            Some(value) if value >= at_least => Ok(Raised { before, after: value }),
            _ => {
                self.counters.insert(counter.to_owned(), Counter { value: Some(at_least), changed: true });
                Ok(Raised { before, after: at_least })
            }
        }
    }

    /// The counters as committed, with what this batch changed so far.
    fn list(&mut self, prefix: &str) -> Result<Vec<(String, i64)>, StoreError> {
        // A range of the primary key: names sort bytewise (BINARY), so those with the
        // prefix are the run of names from it on that start with it.
        let mut listed: BTreeMap<String, i64> = self
            .database
            .prepare_cached("SELECT name, value FROM counters WHERE name >= ?1 ORDER BY name")
            .and_then(|mut select| {
                let rows = select.query_map([prefix], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)))?;
                let mut listed = BTreeMap::new();
                for row in rows {
                    let (name, value) = row?;
                    if !name.starts_with(prefix) {
                        break;
                    }
                    listed.insert(name, value);
                }
                Ok(listed)
            })
            .map_err(|error| database(&error))?;
        for (name, counter) in &self.counters {
            if let Counter { value: Some(value), changed: true } = counter
                && name.starts_with(prefix)
            {
                listed.insert(name.clone(), *value);
            }
        }
        Ok(listed.into_iter().collect())
    }

    fn counter(&mut self, name: &str) -> Result<Counter, StoreError> {
        if let Some(counter) = self.counters.get(name) {
            return Ok(*counter);
        }
        let value = self
            .database
            .prepare_cached("SELECT value FROM counters WHERE name = ?1")
            .and_then(|mut select| select.query_row([name], |row| row.get(0)).optional())
            .map_err(|error| database(&error))?;
        let counter = Counter { value, changed: false };
        self.counters.insert(name.to_owned(), counter);
        Ok(counter)
    }

    /// Writes the counters that moved, sweeps expired keys, and commits: durable on return.
    fn commit(self) -> rusqlite::Result<()> {
        let mut upsert = self.database.prepare_cached(
            "INSERT INTO counters (name, value) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        )?;
        for (name, counter) in &self.counters {
            if let Counter { value: Some(value), changed: true } = counter {
                upsert.execute(params![name, value])?;
            }
        }
        drop(upsert);
        purge_expired_keys(self.database, self.now)?;
        self.database.prepare_cached("COMMIT")?.execute([]).map(drop)
    }
}

fn purge_expired_keys(database: &Connection, now: i64) -> rusqlite::Result<()> {
    database
        .prepare_cached(
            "DELETE FROM idempotency_keys WHERE key IN
             (SELECT key FROM idempotency_keys WHERE expires_at < ?1 ORDER BY expires_at LIMIT ?2)",
        )?
        .execute(params![now, MAX_PURGE])
        .map(drop)
}

fn database(error: &rusqlite::Error) -> StoreError {
    StoreError::Database(error.to_string())
}

/// How long an idempotency key is remembered: the same as on AWS.
fn retention_secs() -> i64 {
    i64::try_from(IdempotencyTimings::default().retention.as_secs()).unwrap_or(i64::MAX)
}
