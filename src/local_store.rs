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

mod history;

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use counter_function::dynamo::IdempotencyTimings;
use counter_function::store::{self, CounterAdmin, CounterStore, Increment, Raised, StoreError};
use history::{Evidence, Found, Mark, Marker, Registry, Start};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
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
/// Version 2 added `history`.
const SCHEMA_VERSION: i64 = 2;
/// The markers are synced at most this often (and when the committer stops): each commit
/// writes them, and only a power failure can lose what was written since the last sync.
const MARKER_SYNC_EVERY: Duration = Duration::from_secs(1);
/// Failed commits are told on stderr at most this often, with how many failed meanwhile;
/// and the store counts as failing for this long after one, whatever a small write of its
/// own says (a nearly full disk may take a small commit and refuse the next).
const FAILURE_LOG_EVERY: Duration = Duration::from_secs(10);
/// The write-ahead log is checkpointed into the database once it holds this many pages,
/// SQLite's default, set here so that it is a decision: "By default, SQLite does a
/// checkpoint automatically when the WAL file reaches a threshold size of 1000 pages"
/// (https://www.sqlite.org/wal.html#automatic_checkpoint).
const WAL_AUTOCHECKPOINT_PAGES: i64 = 1000;
/// A checkpointed log is reused, not shrunk, unless it passes this size: "In WAL mode, the
/// write-ahead log file is not truncated following a checkpoint ... the WAL file is
/// truncated to [journal_size_limit] after a checkpoint"
/// (https://www.sqlite.org/pragma.html#pragma_journal_size_limit). One checkpoint's worth
/// of 4 KiB pages and some room for a large batch: the log never grows past a few MiB.
const WAL_SIZE_LIMIT_BYTES: i64 = 8 * 1024 * 1024;
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
    CREATE TABLE IF NOT EXISTS history (
        one INTEGER PRIMARY KEY CHECK (one = 1),
        database_id TEXT NOT NULL,
        advance INTEGER NOT NULL,
        floor INTEGER NOT NULL,
        checked_at INTEGER NOT NULL DEFAULT 0,
        clock INTEGER NOT NULL DEFAULT 0
    ) STRICT;
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
    #[error("{refusal}\nhint: {}", refusal.hint())]
    Refused { refusal: history::Refusal },
    #[error(
        "{} is damaged (SQLite's quick_check: {report}); nothing was served from it\nhint: put back a copy (see \
         `counterctl counters backup`), then start serve with --restored; or move the file away and start \
         with --restored for a new database above everything this one handed out",
        path.display()
    )]
    Damaged { path: PathBuf, report: String },
    #[error("could not read or write the history marker {}", path.display())]
    History {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
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
    database_path: PathBuf,
    queue: mpsc::Receiver<Job>,
    markers: Markers,
    clock: KeyClock,
    /// Released only after the database is closed, so that another process can take over.
    lock: File,
}

/// Where the store keeps its history ([`history`]), whether a database that went back is
/// accepted, and the clock.
#[derive(Clone)]
pub(crate) struct StoreOptions {
    /// Holds the markers a data directory restored whole cannot take back.
    pub(crate) state_dir: PathBuf,
    /// `--restored`: accept an older copy of the database, or its loss, and raise every
    /// counter past what was lost.
    pub(crate) restored: bool,
    /// The system's clock (a seam for the tests): what [`KeyClock`] starts from.
    pub(crate) wall_clock: Arc<dyn store::Clock>,
}

impl StoreOptions {
    pub(crate) fn new(state_dir: PathBuf, restored: bool) -> Self {
        Self { state_dir, restored, wall_clock: Arc::new(store::SystemClock) }
    }
}

/// The clock idempotency keys are stamped and forgotten by, in seconds since the epoch. It
/// never goes back: it starts at the later of the system's clock and the last time a
/// commit recorded (`history.clock`), and then follows the monotonic clock, so that the
/// system's clock set back or forward while serve runs changes no key's 24 hours. Only
/// time the system's clock gains while serve is stopped is taken as it says.
struct KeyClock {
    started_at: i64,
    started: Instant,
}

impl KeyClock {
    fn new(wall_clock: &dyn store::Clock, recorded: i64) -> Self {
        let wall = i64::try_from(wall_clock.since_epoch().as_secs()).unwrap_or(i64::MAX);
        Self { started_at: wall.max(recorded), started: Instant::now() }
    }

    fn now(&self) -> i64 {
        let elapsed = i64::try_from(self.started.elapsed().as_secs()).unwrap_or(i64::MAX);
        self.started_at.saturating_add(elapsed)
    }
}

/// How the database was opened, for the message that says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Opened {
    /// In a directory that never held one: its counters start at 1.
    New,
    Existing,
    /// `--restored` in place of a lost database: every counter starts above `floor`.
    Replaced {
        floor: i64,
    },
    /// `--restored` on an older copy: every counter was raised by `by`.
    Raised {
        by: i64,
    },
}

pub(crate) fn database_path(data_dir: &Path) -> PathBuf {
    data_dir.join(DATABASE_FILE)
}

/// serve's data directory when `--data-dir` is not given: `counterctl` in the user's data
/// directory (e.g. `~/.local/share/counterctl`).
pub(crate) fn default_data_dir() -> Option<PathBuf> {
    dirs::data_dir().map(|data| data.join("counterctl"))
}

/// `counterctl` in the user's state directory (e.g. `~/.local/state/counterctl`), else
/// `counterctl-state` in the data directory where a system has no state directory (macOS,
/// Windows): never inside serve's default data directory, which it must outlive.
pub(crate) fn default_state_dir() -> Option<PathBuf> {
    match dirs::state_dir() {
        Some(state) => Some(state.join("counterctl")),
        None => Some(dirs::data_dir()?.join("counterctl-state")),
    }
}

impl LocalStore {
    /// Locks `data_dir` (creating it) and opens or creates its database, unless its history
    /// says the database went back ([`history`]); `user` (a command) is named to whoever
    /// tries next while this one holds it.
    pub(crate) fn open(
        data_dir: &Path,
        user: &str,
        options: &StoreOptions,
    ) -> Result<(Self, Committer, Opened), OpenError> {
        // Only its user reads the counters (and the lock file names the holder).
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)
            .map_err(|source| OpenError::Io { path: data_dir.to_owned(), source })?;
        let lock = lock_data_dir(data_dir, user)?;
        // Marks name the directory as the same path however it was given.
        let data_dir =
            std::fs::canonicalize(data_dir).map_err(|source| OpenError::Io { path: data_dir.to_owned(), source })?;
        let database_path = database_path(&data_dir);
        let (found_database, found) = inspect(&database_path)?;
        let registry = Registry::new(&options.state_dir);
        let evidence = evidence(&data_dir, &found, &registry)?;
        let start = history::judge(&database_path, &found, &evidence, options.restored)
            .map_err(|refusal| OpenError::Refused { refusal })?;
        let database = match found_database {
            Some(database) => database,
            None => connect(&database_path, OpenFlags::default())?,
        };
        configure(&database, &database_path)?;
        let (mark, opened, recorded_clock) = prepare(&database, &database_path, &data_dir, &start)?;
        let clock = KeyClock::new(options.wall_clock.as_ref(), recorded_clock);
        let markers = Markers::open(&data_dir, &registry, &mark)?;
        if let Start::New { replaces: Some(replaced), .. } = &start {
            // Its ceiling lives on as the new database's floor.
            registry
                .forget(&replaced.database_id)
                .map_err(|source| OpenError::History { path: registry.path_of(&replaced.database_id), source })?;
        }
        let (jobs, queue) = mpsc::channel(QUEUE_CAPACITY);
        let committer = Committer { database, database_path, queue, markers, clock, lock };
        Ok((Self { jobs }, committer, opened))
    }

    /// Writes a consistent copy of the database to `to`, which must not exist yet: a file
    /// that holds the whole copy or, after a crash, nothing under that name.
    pub(crate) async fn backup(&self, to: &Path) -> Result<(), StoreError> {
        self.submit(|reply| Job::Backup { to: to.to_owned(), reply }).await
    }

    /// Whether the database takes commits: a write of its own, so that a full disk shows.
    pub(crate) async fn check(&self) -> Result<(), StoreError> {
        self.submit(|reply| Job::Check { reply }).await
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

fn connect(path: &Path, flags: OpenFlags) -> Result<Connection, OpenError> {
    let database_error = |source| OpenError::Database { path: path.to_owned(), source };
    let database = Connection::open_with_flags(path, flags).map_err(database_error)?;
    // This process is the only user (the data dir is locked): SQLite may keep its locks
    // and the log index to itself instead of taking file locks for every transaction.
    database.pragma_update(None, "locking_mode", "EXCLUSIVE").map_err(database_error)?;
    Ok(database)
}

/// The database in the file, read without writing to it: its history, or `Nothing` for
/// no file, a zero-length one, or one without counterctl's tables. A damaged one is
/// refused.
fn inspect(path: &Path) -> Result<(Option<Connection>, Found), OpenError> {
    if !path.exists() {
        return Ok((None, Found::Nothing));
    }
    let database_error = |source| OpenError::Database { path: path.to_owned(), source };
    let database = connect(path, OpenFlags::default() - OpenFlags::SQLITE_OPEN_CREATE)?;
    // "PRAGMA quick_check ... does not verify that index content matches table content ...
    // [and] runs in O(N) time": every page of every table is read and its b-tree checked
    // (https://www.sqlite.org/pragma.html#pragma_quick_check), so a damaged file is refused
    // here rather than failing every request later.
    let report: Vec<String> = database
        .prepare("PRAGMA quick_check(5)")
        .and_then(|mut check| check.query_map([], |row| row.get(0))?.collect())
        .map_err(|error| OpenError::Damaged { path: path.to_owned(), report: error.to_string() })?;
    if report != ["ok"] {
        return Err(OpenError::Damaged { path: path.to_owned(), report: report.join("; ") });
    }
    let has_table = |name: &str| {
        database
            .query_row("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1", [name], |_| Ok(()))
            .optional()
            .map(|found| found.is_some())
            .map_err(database_error)
    };
    if !has_table("counters")? {
        return Ok((Some(database), Found::Nothing));
    }
    let version: i64 = database.pragma_query_value(None, "user_version", |row| row.get(0)).map_err(database_error)?;
    if version > SCHEMA_VERSION {
        return Err(OpenError::NewerSchema { path: path.to_owned(), found: version });
    }
    let recorded = if has_table("history")? {
        database
            .query_row("SELECT database_id, advance, floor FROM history", [], |row| {
                Ok((row.get::<_, String>(0)?, row.get(1)?, row.get(2)?))
            })
            .optional()
            .map_err(database_error)?
    } else {
        None
    };
    let found = match recorded {
        Some((database_id, advance, floor)) => Found::Database { database_id: Some(database_id), advance, floor },
        // From before the history: every counter moved up from 0, so their values sum to
        // its advance.
        None => {
            Found::Database { database_id: None, advance: sum_of_values(&database).map_err(database_error)?, floor: 0 }
        }
    };
    Ok((Some(database), found))
}

fn sum_of_values(database: &Connection) -> rusqlite::Result<i64> {
    let mut select = database.prepare("SELECT value FROM counters")?;
    let values = select.query_map([], |row| row.get::<_, i64>(0))?;
    values.collect::<rusqlite::Result<Vec<i64>>>().map(|values| values.into_iter().fold(0, i64::saturating_add))
}

/// What the markers say about the database `found` in `data_dir`.
fn evidence(data_dir: &Path, found: &Found, registry: &Registry) -> Result<Evidence, OpenError> {
    let marker_error = |path: PathBuf| move |source| OpenError::History { path, source };
    let beside_path = data_dir.join(history::MARKER_FILE);
    let beside = history::read_marker(&beside_path).map_err(marker_error(beside_path.clone()))?;
    let found_id = match found {
        Found::Database { database_id, .. } => database_id.clone(),
        Found::Nothing => None,
    };
    let id = beside.as_ref().map(|mark| mark.database_id.clone()).or(found_id.clone());
    let registered = match &id {
        Some(id) => registry.read(id).map_err(marker_error(registry.path_of(id)))?,
        None => None,
    };
    let registered_here = match beside {
        Some(_) => None,
        None => registry
            .naming(data_dir)
            .map_err(marker_error(registry.path_of("*")))?
            .into_iter()
            .max_by_key(|mark| mark.advance),
    };
    // The database last served from another directory that still holds it: a copy.
    let copy_in = registered
        .as_ref()
        .filter(|registered| registered.data_dir != data_dir && found_id.as_ref() == Some(&registered.database_id))
        .filter(|registered| {
            let theirs = history::read_marker(&registered.data_dir.join(history::MARKER_FILE));
            theirs.ok().flatten().is_some_and(|mark| mark.database_id == registered.database_id)
        })
        .map(|registered| registered.data_dir.clone());
    Ok(Evidence { beside, registered, registered_here, copy_in })
}

/// Write-ahead log with synchronous=FULL: COMMIT returns once the log is fsync'd.
fn configure(database: &Connection, path: &Path) -> Result<(), OpenError> {
    let database_error = |source| OpenError::Database { path: path.to_owned(), source };
    // Query plans are made once per statement: otherwise binding a new `LIMIT` value
    // re-prepares the statement, which took most of a commit's CPU time.
    database.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true).map_err(database_error)?;
    let journal: String =
        database.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0)).map_err(database_error)?;
    if !journal.eq_ignore_ascii_case("wal") {
        return Err(OpenError::NoWriteAheadLog { path: path.to_owned(), journal });
    }
    database.pragma_update(None, "synchronous", "FULL").map_err(database_error)?;
    // On macOS a plain fsync leaves the data in the drive's cache; F_FULLFSYNC flushes it.
    // Elsewhere SQLite ignores this.
    database.pragma_update(None, "fullfsync", true).map_err(database_error)?;
    database.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES).map_err(database_error)?;
    database.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT_BYTES).map_err(database_error)?;
    Ok(())
}

/// Makes or upgrades the schema and applies `start` in one transaction; the database's
/// mark as it then stands.
/// With the mark, the clock the last commit recorded.
fn prepare(
    database: &Connection,
    path: &Path,
    data_dir: &Path,
    start: &Start,
) -> Result<(Mark, Opened, i64), OpenError> {
    let database_error = |source| OpenError::Database { path: path.to_owned(), source };
    let new_id = || uuid::Uuid::new_v4().to_string();
    let (database_id, advance, floor, raise_by, opened) = match start {
        Start::New { floor, replaces } => {
            let opened = if replaces.is_some() { Opened::Replaced { floor: *floor } } else { Opened::New };
            (new_id(), 0, *floor, 0, opened)
        }
        Start::Existing { database_id, raise_by, advance, floor } => {
            let opened = if *raise_by > 0 { Opened::Raised { by: *raise_by } } else { Opened::Existing };
            (database_id.clone().unwrap_or_else(new_id), *advance, *floor, *raise_by, opened)
        }
    };
    let transaction = || -> rusqlite::Result<i64> {
        database.execute_batch(&format!("BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION};"))?;
        if raise_by > 0 {
            database.execute("UPDATE counters SET value = value + ?1", [raise_by])?;
        }
        database.execute(
            "INSERT INTO history (one, database_id, advance, floor) VALUES (1, ?1, ?2, ?3)
             ON CONFLICT (one) DO UPDATE SET advance = excluded.advance, floor = excluded.floor",
            params![database_id, advance, floor],
        )?;
        let clock = database.query_row("SELECT clock FROM history", [], |row| row.get(0))?;
        database.execute_batch("COMMIT")?;
        Ok(clock)
    };
    let clock = transaction().map_err(|error| {
        if !database.is_autocommit() {
            let _ = database.execute_batch("ROLLBACK");
        }
        database_error(error)
    })?;
    Ok((Mark { database_id, advance, floor, data_dir: data_dir.to_owned() }, opened, clock))
}

/// The two markers of the open database, written after each commit that moved a counter.
struct Markers {
    beside: Marker,
    registered: Marker,
    paths: [PathBuf; 2],
    mark: Mark,
    synced: Instant,
    /// Written since the last sync.
    dirty: bool,
}

impl Markers {
    /// Opens both markers and records `mark` in them, synced: from here on the directory
    /// knows its database.
    fn open(data_dir: &Path, registry: &Registry, mark: &Mark) -> Result<Self, OpenError> {
        let paths = [data_dir.join(history::MARKER_FILE), registry.path_of(&mark.database_id)];
        let marker_error = |path: &Path| {
            let path = path.to_owned();
            move |source| OpenError::History { path, source }
        };
        registry.create_dir().map_err(marker_error(&paths[1]))?;
        let beside = Marker::open(&paths[0]).map_err(marker_error(&paths[0]))?;
        let registered = Marker::open(&paths[1]).map_err(marker_error(&paths[1]))?;
        let mut markers = Self { beside, registered, paths, mark: mark.clone(), synced: Instant::now(), dirty: false };
        markers.write(0).and_then(|()| markers.sync()).map_err(|(path, source)| OpenError::History { path, source })?;
        // A new marker's name must survive a power failure too.
        for path in &markers.paths {
            if let Some(dir) = path.parent() {
                File::open(dir).and_then(|dir| dir.sync_all()).map_err(marker_error(path))?;
            }
        }
        Ok(markers)
    }

    /// Records `advanced` more movement; failures name the marker.
    fn write(&mut self, advanced: i64) -> Result<(), (PathBuf, std::io::Error)> {
        self.mark.advance = self.mark.advance.saturating_add(advanced);
        self.dirty = true;
        self.beside.write(&self.mark).map_err(|error| (self.paths[0].clone(), error))?;
        self.registered.write(&self.mark).map_err(|error| (self.paths[1].clone(), error))
    }

    fn sync(&mut self) -> Result<(), (PathBuf, std::io::Error)> {
        self.beside.sync().map_err(|error| (self.paths[0].clone(), error))?;
        self.registered.sync().map_err(|error| (self.paths[1].clone(), error))?;
        self.synced = Instant::now();
        self.dirty = false;
        Ok(())
    }

    fn sync_if_due(&mut self) -> Result<(), (PathBuf, std::io::Error)> {
        if self.dirty && self.synced.elapsed() >= MARKER_SYNC_EVERY { self.sync() } else { Ok(()) }
    }
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
    /// A write of its own (`history.checked_at`), answered once committed and recorded.
    Check {
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Run between batches: a snapshot cannot be taken inside a transaction.
    Backup {
        to: PathBuf,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

/// A job's result, held back until its transaction is committed.
enum Answer {
    Increment(oneshot::Sender<Result<i64, StoreError>>, Result<i64, StoreError>),
    Value(oneshot::Sender<Result<Option<i64>, StoreError>>, Result<Option<i64>, StoreError>),
    Raise(oneshot::Sender<Result<Raised, StoreError>>, Result<Raised, StoreError>),
    List(oneshot::Sender<Result<Vec<(String, i64)>, StoreError>>, Result<Vec<(String, i64)>, StoreError>),
    Check(oneshot::Sender<Result<(), StoreError>>),
    /// Answered already.
    None,
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
            Self::Check { reply } => {
                batch.checked = true;
                Answer::Check(reply)
            }
            Self::Backup { reply: to, .. } => {
                reply(to, Err(StoreError::Database("a backup runs outside a batch".to_owned())));
                Answer::None
            }
        }
    }

    fn fail(self, error: &rusqlite::Error) {
        match self {
            Self::Increment { reply: to, .. } => reply(to, Err(database(error))),
            Self::Value { reply: to, .. } => reply(to, Err(database(error))),
            Self::Raise { reply: to, .. } => reply(to, Err(database(error))),
            Self::List { reply: to, .. } => reply(to, Err(database(error))),
            Self::Check { reply: to } | Self::Backup { reply: to, .. } => reply(to, Err(database(error))),
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
            Self::Check(to) => reply(to, Ok(())),
            Self::None => {}
        }
    }

    /// The transaction did not commit: whatever was computed in it never happened.
    fn fail(self, error: &rusqlite::Error) {
        match self {
            Self::Increment(to, _) => reply(to, Err(database(error))),
            Self::Value(to, _) => reply(to, Err(database(error))),
            Self::Raise(to, _) => reply(to, Err(database(error))),
            Self::List(to, _) => reply(to, Err(database(error))),
            Self::Check(to) => reply(to, Err(database(error))),
            Self::None => {}
        }
    }

    /// Committed while the store is failing (a commit failed a moment ago, or what this one
    /// moved is not recorded in the markers): a check fails, the others have their answers
    /// (the database holds them).
    fn send_failing_checks(self, failure: &str) {
        match self {
            Self::Check(to) => reply(to, Err(StoreError::Database(failure.to_owned()))),
            answer => answer.send(),
        }
    }
}

impl Committer {
    /// Commits batches until every [`LocalStore`] handle is gone and the last batch is
    /// committed; then closes the database and unlocks the data directory. `committed`
    /// hears of each batch: its number of jobs, how long it took (fsync included), and
    /// whether it was committed.
    pub(crate) async fn run(self, mut committed: impl FnMut(usize, Duration, bool)) {
        let Self { database, database_path, mut queue, mut markers, clock, lock } = self;
        let mut failures = FailureLog::new(database_path);
        let mut jobs = Vec::with_capacity(MAX_BATCH);
        while queue.recv_many(&mut jobs, MAX_BATCH).await > 0 {
            // Let the connections whose requests are already readable queue them too.
            tokio::task::yield_now().await;
            while jobs.len() < MAX_BATCH
                && let Ok(job) = queue.try_recv()
            {
                jobs.push(job);
            }
            let (backups, batch): (Vec<Job>, Vec<Job>) =
                jobs.drain(..).partition(|job| matches!(job, Job::Backup { .. }));
            let (size, started) = (batch.len(), Instant::now());
            let succeeded = match commit_batch(&database, clock.now(), markers.mark.floor, batch.into_iter()) {
                Ok((advanced, answers)) => {
                    // Recorded before anything is answered, so the markers cover every
                    // value handed out.
                    let recorded = if advanced > 0 { markers.write(advanced) } else { Ok(()) };
                    let failing = match recorded.and_then(|()| markers.sync_if_due()) {
                        Ok(()) => failures.recent(),
                        Err((path, error)) => {
                            let failure =
                                format!("could not record the database's history in {}: {error}", path.display());
                            failures.failed(size, &failure);
                            Some(failure)
                        }
                    };
                    match failing {
                        None => answers.into_iter().for_each(Answer::send),
                        Some(failure) => answers.into_iter().for_each(|answer| answer.send_failing_checks(&failure)),
                    }
                    true
                }
                Err(error) => {
                    failures.failed(size, &error.to_string());
                    false
                }
            };
            committed(size, started.elapsed(), succeeded);
            for job in backups {
                if let Job::Backup { to, reply: to_reply } = job {
                    reply(to_reply, backup(&database, &to));
                }
            }
        }
        if let Err((path, error)) = markers.sync() {
            eprintln!("counterctl: could not sync the history marker {} ({error})", path.display());
        }
        drop(database);
        drop(lock);
    }
}

/// `VACUUM INTO` a file beside `to`, synced, then renamed to `to`. "The VACUUM INTO command
/// is transactional in the sense that the generated output database is a consistent
/// snapshot of the original database. However, if the VACUUM INTO command is interrupted
/// by an unplanned shutdown or power lose, then the generated output database might be
/// incomplete and corrupt" (https://www.sqlite.org/lang_vacuum.html#vacuuminto): hence
/// the name it gets only once whole and on disk.
fn backup(database: &Connection, to: &Path) -> Result<(), StoreError> {
    let failed = |what: &str, error: &dyn std::fmt::Display| StoreError::Database(format!("{what}: {error}"));
    if to.exists() {
        return Err(StoreError::Database(format!("{} exists already; name a new file", to.display())));
    }
    let mut partial = to.as_os_str().to_owned();
    partial.push(format!(".partial-{}", std::process::id()));
    let partial = PathBuf::from(partial);
    let _ = std::fs::remove_file(&partial);
    let written = database
        .execute("VACUUM INTO ?1", [partial.to_string_lossy()])
        .map_err(|error| failed("copying the database", &error))
        .and_then(|_| {
            File::open(&partial).and_then(|file| file.sync_all()).map_err(|error| failed("syncing the copy", &error))
        })
        .and_then(|()| std::fs::rename(&partial, to).map_err(|error| failed("naming the copy", &error)));
    if written.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    written?;
    let directory = to.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."));
    File::open(directory)
        .and_then(|directory| directory.sync_all())
        .map_err(|error| failed("syncing its directory", &error))
}

/// Tells stderr of failing commits, at most once per [`FAILURE_LOG_EVERY`], with how many
/// requests failed since the last line: a full disk must show without `--access-log`,
/// without a line per request.
struct FailureLog {
    database: PathBuf,
    told: Option<Instant>,
    untold: usize,
    last: Option<(Instant, String)>,
}

impl FailureLog {
    fn new(database: PathBuf) -> Self {
        Self { database, told: None, untold: 0, last: None }
    }

    /// The last failure, if it is recent.
    fn recent(&self) -> Option<String> {
        let (at, error) = self.last.as_ref()?;
        let ago = at.elapsed();
        (ago < FAILURE_LOG_EVERY).then(|| format!("a commit failed {} s ago: {error}", ago.as_secs()))
    }

    fn failed(&mut self, requests: usize, error: &str) {
        self.last = Some((Instant::now(), error.to_owned()));
        self.untold += requests;
        if self.told.is_some_and(|told| told.elapsed() < FAILURE_LOG_EVERY) {
            return;
        }
        eprintln!(
            "counterctl: a commit to {} failed ({error}); {} request(s) got an error since the last such line",
            self.database.display(),
            self.untold
        );
        self.told = Some(Instant::now());
        self.untold = 0;
    }
}

/// Applies `jobs` in one transaction: how much it moved the counters, and the answers to
/// send once that is recorded; on failure the jobs are answered with the error.
fn commit_batch(
    database: &Connection,
    now: i64,
    floor: i64,
    jobs: impl Iterator<Item = Job>,
) -> Result<(i64, Vec<Answer>), rusqlite::Error> {
    // BEGIN and COMMIT are prepared once, like every statement here, not parsed per batch.
    // Expired keys go first, so that a key found below is one still remembered.
    let begun = database
        .prepare_cached("BEGIN IMMEDIATE")
        .and_then(|mut begin| begin.execute([]))
        .and_then(|_| purge_expired_keys(database, now));
    if let Err(error) = begun {
        if !database.is_autocommit() {
            let _ = database.execute_batch("ROLLBACK");
        }
        jobs.for_each(|job| job.fail(&error));
        return Err(error);
    }
    let mut batch = Batch { database, now, floor, counters: HashMap::new(), checked: false };
    let answers: Vec<Answer> = jobs.map(|job| job.apply(&mut batch)).collect();
    match batch.commit() {
        Ok(advanced) => Ok((advanced, answers)),
        Err(error) => {
            // A failed COMMIT may have ended the transaction already.
            if !database.is_autocommit() {
                let _ = database.execute_batch("ROLLBACK");
            }
            answers.into_iter().for_each(|answer| answer.fail(&error));
            Err(error)
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
    /// Where a counter the database does not hold starts ([`history`]).
    floor: i64,
    counters: HashMap<String, Counter>,
    /// A [`Job::Check`] is in the batch: it writes even if nothing else does.
    checked: bool,
}

#[derive(Clone, Copy)]
struct Counter {
    /// `None` while the counter does not exist.
    value: Option<i64>,
    /// As committed before the batch.
    before: Option<i64>,
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
                // Whether or not it has expired: a key is never answered with a second value
                // while its row exists.
                "SELECT counter, count, new_value FROM idempotency_keys WHERE key = ?1",
            )
            .and_then(|mut select| {
                select
                    .query_row(params![key], |row| Ok((row.get::<_, String>(0)?, row.get::<_, u32>(1)?, row.get(2)?)))
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
            .unwrap_or(self.floor)
            .checked_add(i64::from(count))
            .ok_or_else(|| StoreError::Database(format!("counter {counter:?} would pass {}", i64::MAX)))?;
        self.counters.insert(counter.to_owned(), Counter { value: Some(new_value), changed: true, ..current });
        Ok(new_value)
    }

    fn value(&mut self, counter: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.counter(counter)?.value)
    }

    /// Between this batch's increments, so one before it is below `at_least` (it is
    /// raised past) and one after it is above.
    /// A counter the database does not hold is at the floor: raised to it at least.
    fn raise(&mut self, counter: &str, at_least: i64) -> Result<Raised, StoreError> {
        let current = self.counter(counter)?;
        let before = current.value;
        match before {
            Some(value) if value >= at_least => Ok(Raised { before, after: value }),
            _ => {
                let after = at_least.max(self.floor);
                self.counters.insert(counter.to_owned(), Counter { value: Some(after), changed: true, ..current });
                Ok(Raised { before, after })
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
            if let Counter { value: Some(value), changed: true, .. } = counter
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
        let counter = Counter { value, before: value, changed: false };
        self.counters.insert(name.to_owned(), counter);
        Ok(counter)
    }

    /// Writes the counters that moved and how far they moved in all, and commits: durable
    /// on return, with how far the counters moved.
    fn commit(self) -> rusqlite::Result<i64> {
        let mut upsert = self.database.prepare_cached(
            "INSERT INTO counters (name, value) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        )?;
        let mut advanced = 0i64;
        for (name, counter) in &self.counters {
            if let Counter { value: Some(value), before, changed: true } = counter {
                upsert.execute(params![name, value])?;
                advanced = advanced.saturating_add(value - before.unwrap_or(self.floor));
            }
        }
        drop(upsert);
        // The clock is recorded with every write, so that a restart never starts it
        // earlier than a key's stamp. The advance saturates as the markers' does: SQLite
        // turns an integer sum that overflows into a float
        // (https://www.sqlite.org/datatype3.html, "Storage Classes and Datatypes").
        if advanced > 0 {
            self.database
                .prepare_cached(
                    "UPDATE history SET clock = max(clock, ?2), advance = CASE
                        WHEN advance > 9223372036854775807 - ?1 THEN 9223372036854775807
                        ELSE advance + ?1 END",
                )?
                .execute([advanced, self.now])?;
        }
        if self.checked {
            self.database
                .prepare_cached("UPDATE history SET checked_at = ?1, clock = max(clock, ?1)")?
                .execute([self.now])?;
        }
        self.database.prepare_cached("COMMIT")?.execute([]).map(|_| advanced)
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    /// The system's clock, at the second the test sets.
    struct Wall(AtomicU64);

    impl store::Clock for Wall {
        fn since_epoch(&self) -> Duration {
            Duration::from_secs(self.0.load(Ordering::SeqCst))
        }
    }

    struct Opened {
        store: LocalStore,
        committer: tokio::task::JoinHandle<()>,
        wall: Arc<Wall>,
    }

    impl Opened {
        fn at(data_dir: &Path, state_dir: &Path, clock: u64) -> Self {
            let wall = Arc::new(Wall(AtomicU64::new(clock)));
            let options = StoreOptions { wall_clock: wall.clone(), ..StoreOptions::new(state_dir.to_owned(), false) };
            let (store, committer, _) = LocalStore::open(data_dir, "a test", &options).unwrap();
            Self { store, committer: tokio::spawn(committer.run(|_, _, _| {})), wall }
        }

        fn set_wall(&self, clock: u64) {
            self.wall.0.store(clock, Ordering::SeqCst);
        }

        async fn keyed(&self, key: &str) -> i64 {
            let request = Increment { counter: "keyed", count: 1, idempotency_key: Some(key) };
            self.store.increment(&request).await.unwrap()
        }

        async fn close(self) {
            drop(self.store);
            self.committer.await.unwrap();
        }
    }

    #[tokio::test]
    async fn idempotency_keys_keep_their_24_hours_whichever_way_the_clock_jumps() {
        let root = std::env::temp_dir().join(format!("counterctl-clock-{}", uuid::Uuid::new_v4()));
        let (data_dir, state_dir) = (root.join("data"), root.join("state"));
        const HOUR: u64 = 3600;
        let now = 2_000_000_000;

        // A run with the right time records it.
        let right = Opened::at(&data_dir, &state_dir, now);
        assert_eq!(right.keyed("first").await, 1);
        right.close().await;

        // A clock 2 days behind stamps keys from the recorded time, not its own.
        let behind = Opened::at(&data_dir, &state_dir, now - 48 * HOUR);
        assert_eq!(behind.keyed("written-behind").await, 2);
        // The system's clock set 25 hours ahead while it runs changes nothing.
        behind.set_wall(now + 25 * HOUR);
        assert_eq!(behind.keyed("written-behind").await, 2);
        behind.close().await;

        // Back to the right time an hour later: the key is remembered.
        let later = Opened::at(&data_dir, &state_dir, now + HOUR);
        assert_eq!(later.keyed("written-behind").await, 2);
        assert_eq!(later.keyed("first").await, 1);
        later.close().await;
        // A day and more after its use, it is forgotten: a new request.
        let day_after = Opened::at(&data_dir, &state_dir, now + 26 * HOUR);
        assert_eq!(day_after.keyed("written-behind").await, 3);
        day_after.close().await;
        std::fs::remove_dir_all(&root).unwrap();
    }
}
